/*
 * img-io: a test driver that writes images of any format through the block
 * layer, for the tests/block format scripts (qed, vhdx, vmdk, vpc).
 * Single-threaded.
 *
 *   img-io FMT FILE w:OFF:LEN:BYTE ...   write LEN bytes of BYTE at OFF (sizes take K/M/G)
 *   img-io FMT FILE z:OFF:LEN ...        write zeroes
 *   img-io FMT FILE d:OFF:LEN ...        discard (the image is opened with BLOCK_O_UNMAP)
 *   img-io FMT FILE r:OFF:LEN:BYTE ...   read and check that every byte is BYTE (exit 2 if not)
 *   img-io random FMT FILE MIRROR SEED COUNT
 *        COUNT random writes (any offset and length up to 256 KiB, some
 *        unaligned) applied to FILE in format FMT and to the raw MIRROR
 *   img-io check FMT FILE                print the check counts; exit 2 on corruption
 *   img-io stress FMT FILE THREADS OPS   THREADS threads write random parts of their own
 *        64 KiB stripes (stripe i belongs to thread i % THREADS) concurrently,
 *        each reading back what it wrote; at the end everything is checked
 *        again (exit 2 on a mismatch)
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
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
	unsigned flags = BLOCK_O_RDWR;
	int r;

	for (int i = 0; i < argc; i++) {
		if (argv[i][0] == 'd') {
			flags |= BLOCK_O_UNMAP;
		}
	}
	r = block_open(&bs, file, fmt, flags, &err);
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
		} else if (op == 'd') {
			r = block_discard(bs, off, len);
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

struct stress {
	struct block_node *bs;
	unsigned threads, ops, id;
	uint64_t nsec;	 /* sectors in the image */
	uint8_t *expect; /* per sector: the byte last written (0: never) */
	int failed;
};

#define STRIPE_SECTORS 128

static void *stress_thread(void *opaque)
{
	struct stress *st = opaque;
	unsigned seed = 1234 + st->id;
	uint8_t *buf = malloc(STRIPE_SECTORS * 512);
	int r;

	for (unsigned i = 0; i < st->ops && buf && !st->failed; i++) {
		uint64_t stripes = DIV_ROUND_UP(st->nsec, STRIPE_SECTORS);
		uint64_t s = (uint64_t)rand_r(&seed) % stripes;
		uint64_t first, n;
		uint8_t v = (uint8_t)(1 + rand_r(&seed) % 255);

		s = s - s % st->threads + st->id;
		if (s >= stripes) {
			continue;
		}
		first = s * STRIPE_SECTORS + (uint64_t)rand_r(&seed) % STRIPE_SECTORS;
		if (first >= st->nsec) {
			continue;
		}
		n = 1 + (uint64_t)rand_r(&seed) % (STRIPE_SECTORS - first % STRIPE_SECTORS);
		n = MIN(n, st->nsec - first);
		memset(buf, v, n * 512);
		r = block_pwrite(st->bs, first * 512, buf, n * 512);
		if (r < 0) {
			fprintf(stderr, "img-io: thread %u: write %" PRIu64 "+%" PRIu64 ": %s\n",
				st->id, first * 512, n * 512, strerror(-r));
			st->failed = 1;
			break;
		}
		memset(st->expect + first, v, n);
		r = block_pread(st->bs, first * 512, buf, n * 512);
		if (r < 0) {
			fprintf(stderr, "img-io: thread %u: read %" PRIu64 "+%" PRIu64 ": %s\n",
				st->id, first * 512, n * 512, strerror(-r));
			st->failed = 1;
			break;
		}
		for (uint64_t k = 0; k < n * 512; k++) {
			if (buf[k] != v) {
				fprintf(stderr,
					"img-io: thread %u: byte %" PRIu64 " is %#x, not %#x\n",
					st->id, first * 512 + k, buf[k], v);
				st->failed = 2;
				break;
			}
		}
	}
	free(buf);
	return NULL;
}

static int run_stress(const char *fmt, const char *file, unsigned threads, unsigned ops)
{
	struct block_node *bs = NULL;
	struct error *err = NULL;
	struct stress st[16];
	pthread_t tid[16];
	uint8_t *expect, sec[512];
	uint64_t nsec;
	int r, ret = 0;

	if (threads == 0 || threads > 16) {
		return 1;
	}
	r = block_open(&bs, file, fmt, BLOCK_O_RDWR, &err);
	if (r < 0) {
		return die(err, r);
	}
	nsec = block_length(bs) / 512;
	expect = calloc(nsec, 1);
	if (!expect) {
		return 1;
	}
	for (unsigned t = 0; t < threads; t++) {
		st[t] = (struct stress){bs, threads, ops, t, nsec, expect, 0};
		pthread_create(&tid[t], NULL, stress_thread, &st[t]);
	}
	for (unsigned t = 0; t < threads; t++) {
		pthread_join(tid[t], NULL);
		ret = MAX(ret, st[t].failed);
	}
	for (uint64_t s = 0; s < nsec && ret == 0; s++) {
		if (!expect[s]) {
			continue;
		}
		if (block_pread(bs, s * 512, sec, 512) < 0) {
			ret = 1;
			break;
		}
		for (int k = 0; k < 512; k++) {
			if (sec[k] != expect[s]) {
				fprintf(stderr, "img-io: sector %" PRIu64 " holds %#x, not %#x\n",
					s, sec[k], expect[s]);
				ret = 2;
				break;
			}
		}
	}
	if (block_flush(bs) < 0) {
		ret = 1;
	}
	block_unref(bs);
	free(expect);
	return ret;
}

int main(int argc, char **argv)
{
	if (argc == 6 && strcmp(argv[1], "stress") == 0) {
		return run_stress(argv[2], argv[3], (unsigned)atoi(argv[4]),
				  (unsigned)atoi(argv[5]));
	}
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
