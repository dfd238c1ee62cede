/*
 * img-io: a test driver that writes images of any format through the block
 * layer, for the tests/block format scripts (qed, vhdx, vmdk, vpc).
 * Single-threaded.
 *
 *   img-io FMT FILE w:OFF:LEN:BYTE ...   write LEN bytes of BYTE at OFF (sizes take K/M/G)
 *   img-io FMT FILE z:OFF:LEN ...        write zeroes
 *   img-io FMT FILE r:OFF:LEN:BYTE ...   read and check that every byte is BYTE (exit 2 if not)
 *   img-io random FMT FILE MIRROR SEED COUNT
 *        COUNT random writes (any offset and length up to 256 KiB, some
 *        unaligned) applied to FILE in format FMT and to the raw MIRROR
 *   img-io check FMT FILE                print the check counts; exit 2 on corruption
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/block-int.h"
#include "common/parse.h"

static int die(struct error *err, int ret)
{
	fprintf(stderr, "img-io: %s\n", err ? err->msg : strerror(-ret));
	error_free(err);
	return 1;
}

static int parse_op(const char *arg, char *op, uint64_t *off, uint64_t *len, unsigned *byte)
{
	char buf[256], *a, *b, *c;

	snprintf(buf, sizeof(buf), "%s", arg);
	*op = buf[0];
	if (buf[1] != ':') {
		return -EINVAL;
	}
	a = buf + 2;
	b = strchr(a, ':');
	if (!b) {
		return -EINVAL;
	}
	*b++ = 0;
	c = strchr(b, ':');
	if (c) {
		*c++ = 0;
		*byte = (unsigned)strtoul(c, NULL, 0);
	}
	if (parse_size(a, off) < 0 || parse_size(b, len) < 0) {
		return -EINVAL;
	}
	return 0;
}

static int run_ops(const char *fmt, const char *file, int argc, char **argv)
{
	struct block_node *bs = NULL;
	struct error *err = NULL;
	int r;

	r = block_open(&bs, file, fmt, BLOCK_O_RDWR, &err);
	if (r < 0) {
		return die(err, r);
	}
	for (int i = 0; i < argc; i++) {
		uint64_t off, len;
		unsigned byte = 0;
		char op;
		uint8_t *buf;

		if (parse_op(argv[i], &op, &off, &len, &byte) < 0) {
			fprintf(stderr, "img-io: bad op '%s'\n", argv[i]);
			return 1;
		}
		buf = malloc(len ? len : 1);
		if (!buf) {
			return 1;
		}
		if (op == 'w') {
			memset(buf, (int)byte, len);
			r = block_pwrite(bs, off, buf, len);
		} else if (op == 'z') {
			r = block_write_zeroes(bs, off, len, 0);
		} else if (op == 'r') {
			r = block_pread(bs, off, buf, len);
			for (uint64_t k = 0; r == 0 && k < len; k++) {
				if (buf[k] != byte) {
					fprintf(stderr,
						"img-io: byte %" PRIu64 " is %#x, not %#x\n",
						off + k, buf[k], byte);
					free(buf);
					block_unref(bs);
					return 2;
				}
			}
		} else {
			r = -EINVAL;
		}
		free(buf);
		if (r < 0) {
			fprintf(stderr, "img-io: %s: %s\n", argv[i], strerror(-r));
			block_unref(bs);
			return 1;
		}
	}
	r = block_flush(bs);
	block_unref(bs);
	return r < 0 ? die(NULL, r) : 0;
}

static int run_random(const char *fmt, const char *file, const char *mirror, unsigned seed,
		      unsigned count)
{
	struct block_node *bs = NULL, *m = NULL;
	struct error *err = NULL;
	uint64_t size;
	uint8_t *buf = malloc(256 << 10);
	int r;

	if (!buf) {
		return 1;
	}
	r = block_open(&bs, file, fmt, BLOCK_O_RDWR, &err);
	if (r == 0) {
		r = block_open(&m, mirror, "raw", BLOCK_O_RDWR, &err);
	}
	if (r < 0) {
		return die(err, r);
	}
	size = block_length(bs);
	srand(seed);
	for (unsigned i = 0; i < count && r == 0; i++) {
		uint64_t len = 1 + (uint64_t)rand() % (256 << 10);
		uint64_t off = ((uint64_t)rand() << 16 ^ (uint64_t)rand()) % size;

		if (rand() % 4) { /* mostly sector aligned, as guests write */
			off &= ~(uint64_t)511;
			len = ALIGN_UP(len, 512);
		}
		len = MIN(len, size - off);
		memset(buf, 1 + (int)(i % 255), len);
		r = block_pwrite(bs, off, buf, len);
		if (r == 0) {
			r = block_pwrite(m, off, buf, len);
		}
	}
	if (r == 0) {
		r = block_flush(bs);
	}
	block_unref(bs);
	block_unref(m);
	free(buf);
	return r < 0 ? die(NULL, r) : 0;
}

static int run_check(const char *fmt, const char *file)
{
	struct block_node *bs = NULL;
	struct error *err = NULL;
	struct block_check_result res = {0};
	int r;

	r = block_open(&bs, file, fmt, 0, &err);
	if (r < 0) {
		return die(err, r);
	}
	r = block_check(bs, &res, 0, &err);
	block_unref(bs);
	if (r < 0) {
		return die(err, r);
	}
	printf("corruptions=%" PRIu64 " leaks=%" PRIu64 " allocated=%" PRIu64 "\n", res.corruptions,
	       res.leaks, res.allocated_clusters);
	return res.corruptions ? 2 : 0;
}

int main(int argc, char **argv)
{
	if (argc >= 7 && strcmp(argv[1], "random") == 0) {
		return run_random(argv[2], argv[3], argv[4], (unsigned)atoi(argv[5]),
				  (unsigned)atoi(argv[6]));
	}
	if (argc == 4 && strcmp(argv[1], "check") == 0) {
		return run_check(argv[2], argv[3]);
	}
	if (argc >= 4) {
		return run_ops(argv[1], argv[2], argc - 3, argv + 3);
	}
	fprintf(stderr, "usage: see tests/block/img-io.c\n");
	return 1;
}
