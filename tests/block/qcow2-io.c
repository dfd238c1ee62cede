/*
 * qcow2-io: a test driver for the qcow2 format through the block layer,
 * used by the tests/block qcow2 scripts. Single-threaded.
 *
 *   qcow2-io create FILE SIZE [cluster_size=N] [compat=0.10|1.1] [refcount_bits=N]
 *                   [backing_file=F] [backing_fmt=F] [compression_type=zlib|zstd]
 *                   [lazy_refcounts=on] [preallocation=off|metadata|full]
 *   qcow2-io dump FILE FORMAT OUT          read the whole image into the raw file OUT
 *   qcow2-io ops FILE MIRROR SEED COUNT    random writes/zero writes/discards/compressed
 *                                          writes applied to FILE (qcow2) and MIRROR (raw)
 *   qcow2-io writer FILE SEED              allocating writes until killed
 *   qcow2-io snapshot FILE -c|-a|-d|-l [NAME]
 *   qcow2-io resize FILE SIZE
 *   qcow2-io check FILE [leaks|all]        prints the counts; exit 2 on corruption
 *   qcow2-io write FILE OFFSET LEN BYTE    write LEN bytes of BYTE at OFFSET
 *   qcow2-io zero FILE OFFSET LEN [unmap]  write zeroes (keeping allocations unless unmap)
 *   qcow2-io stress FILE THREADS OPS      threads writing, zeroing, discarding and reading
 *                                          back their own interleaved stripes concurrently
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/qcow2.h"
#include "common/parse.h"

static int die(struct error *err, int ret)
{
	fprintf(stderr, "qcow2-io: %s\n", err ? err->msg : strerror(-ret));
	error_free(err);
	return 1;
}

static int cmd_create(int argc, char **argv)
{
	struct qcow2_create_opts o = {0};
	struct error *err = NULL;
	uint64_t size;
	int ret;

	if (argc < 2 || parse_size(argv[1], &size) < 0) {
		fprintf(stderr, "usage: create FILE SIZE [opts]\n");
		return 2;
	}
	for (int i = 2; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		const char *v;
		uint64_t n;

		if (!eq) {
			return 2;
		}
		*eq = 0;
		v = eq + 1;
		if (!strcmp(argv[i], "cluster_size") && parse_size(v, &n) == 0) {
			o.cluster_size = (uint32_t)n;
		} else if (!strcmp(argv[i], "compat")) {
			o.version = !strcmp(v, "0.10") ? 2 : 3;
		} else if (!strcmp(argv[i], "refcount_bits") && parse_size(v, &n) == 0) {
			o.refcount_bits = (unsigned)n;
		} else if (!strcmp(argv[i], "backing_file")) {
			o.backing_file = v;
		} else if (!strcmp(argv[i], "backing_fmt")) {
			o.backing_fmt = v;
		} else if (!strcmp(argv[i], "compression_type")) {
			if (qcow2_compression_from_string(v, &o.compression_type) < 0) {
				return 2;
			}
		} else if (!strcmp(argv[i], "lazy_refcounts")) {
			o.lazy_refcounts = !strcmp(v, "on");
		} else if (!strcmp(argv[i], "preallocation")) {
			if (qcow2_prealloc_from_string(v, &o.prealloc) < 0) {
				return 2;
			}
		} else {
			fprintf(stderr, "unknown option %s\n", argv[i]);
			return 2;
		}
	}
	ret = qcow2_create(argv[0], size, &o, &err);
	return ret < 0 ? die(err, ret) : 0;
}

static int open_rw(const char *file, struct block_node **bs)
{
	struct error *err = NULL;
	unsigned flags = BLOCK_O_RDWR | BLOCK_O_UNMAP;
	int ret;

	/* QCOW2_IO_NOCACHE=1: cache=none (O_DIRECT) on the image file */
	if (getenv("QCOW2_IO_NOCACHE")) {
		flags |= BLOCK_O_NOCACHE;
	}
	ret = block_open(bs, file, "qcow2", flags, &err);

	if (ret < 0) {
		die(err, ret);
	}
	return ret;
}

static int cmd_dump(int argc, char **argv)
{
	struct block_node *bs = NULL;
	struct error *err = NULL;
	uint64_t len, off;
	const uint64_t chunk = 1 << 20;
	_cleanup_free_ char *buf = malloc(chunk);
	_cleanup_close_ int fd = -1;
	int ret;

	if (argc != 3) {
		return 2;
	}
	ret = block_open(&bs, argv[0], argv[1], 0, &err);
	if (ret < 0) {
		return die(err, ret);
	}
	fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || !buf) {
		block_unref(bs);
		return die(NULL, -errno);
	}
	len = block_length(bs);
	for (off = 0; off < len; off += chunk) {
		uint64_t n = MIN(chunk, len - off);

		ret = block_pread(bs, off, buf, n);
		if (ret < 0) {
			fprintf(stderr, "read at %" PRIu64 " failed: %s\n", off, strerror(-ret));
			block_unref(bs);
			return 1;
		}
		if (pwrite(fd, buf, n, (off_t)off) != (ssize_t)n) {
			block_unref(bs);
			return die(NULL, -errno);
		}
	}
	if (ftruncate(fd, (off_t)len) < 0) {
		return die(NULL, -errno);
	}
	block_unref(bs);
	return 0;
}

static uint64_t rnd(uint64_t *st)
{
	*st ^= *st << 13;
	*st ^= *st >> 7;
	*st ^= *st << 17;
	return *st;
}

static int cmd_ops(int argc, char **argv)
{
	struct block_node *bs = NULL;
	uint64_t seed, count, len, cs = 65536;
	_cleanup_close_ int fd = -1;
	_cleanup_free_ uint8_t *buf = NULL;
	int ret;

	if (argc != 4 || parse_u64(argv[2], &seed) < 0 || parse_u64(argv[3], &count) < 0) {
		return 2;
	}
	seed = seed * 2654435761u + 1;
	if (open_rw(argv[0], &bs) < 0) {
		return 1;
	}
	cs = ((struct qcow2_state *)bs->opaque)->cluster_size;
	fd = open(argv[1], O_RDWR);
	len = block_length(bs);
	buf = malloc(4 * cs + 65536);
	if (fd < 0 || !buf) {
		return die(NULL, -errno);
	}
	for (uint64_t i = 0; i < count; i++) {
		unsigned kind = rnd(&seed) % 10;
		uint64_t off = rnd(&seed) % len, n, r2 = rnd(&seed);

		if (kind < 6) {
			/* plain write, any 512-aligned size up to ~2 clusters */
			off = ALIGN_DOWN(off, 512);
			n = MIN(len - off, 512 * (1 + (r2 % (2 * cs / 512 + 8))));
			for (uint64_t k = 0; k < n; k++) {
				buf[k] = (uint8_t)(rnd(&seed) % 7 + i);
			}
			ret = block_pwrite(bs, off, buf, n);
			if (pwrite(fd, buf, n, (off_t)off) != (ssize_t)n) {
				return die(NULL, -errno);
			}
		} else if (kind < 8) {
			off = ALIGN_DOWN(off, 512);
			n = MIN(len - off, 512 * (1 + (r2 % (3 * cs / 512))));
			ret = block_write_zeroes(bs, off, n, BLOCK_ZERO_MAY_UNMAP);
			memset(buf, 0, n);
			if (pwrite(fd, buf, n, (off_t)off) != (ssize_t)n) {
				return die(NULL, -errno);
			}
		} else if (kind < 9) {
			/* discard whole clusters: they then read as zeroes (no backing) */
			off = ALIGN_DOWN(off, cs);
			n = MIN(len - off, cs * (1 + (r2 % 3)));
			n = off + n == len ? n : ALIGN_DOWN(n, cs);
			ret = block_discard(bs, off, n);
			memset(buf, 0, n);
			if (pwrite(fd, buf, n, (off_t)off) != (ssize_t)n) {
				return die(NULL, -errno);
			}
		} else {
			off = ALIGN_DOWN(off, cs);
			n = MIN(cs, len - off);
			for (uint64_t k = 0; k < n; k++) {
				buf[k] = (uint8_t)((k / 100) % 3 ? 0 : i);
			}
			ret = bs->drv->pwrite_compressed(bs, off, buf, n);
			if (pwrite(fd, buf, n, (off_t)off) != (ssize_t)n) {
				return die(NULL, -errno);
			}
		}
		if (getenv("QCOW2_IO_TRACE")) {
			fprintf(stderr,
				"op %" PRIu64 " kind %u off %#" PRIx64 " len %#" PRIx64 "\n", i,
				kind, off, n);
		}
		if (ret < 0) {
			fprintf(stderr, "op %" PRIu64 " kind %u at %" PRIu64 " failed: %s\n", i,
				kind, off, strerror(-ret));
			block_unref(bs);
			return 1;
		}
	}
	block_unref(bs);
	return 0;
}

static int cmd_writer(int argc, char **argv)
{
	struct block_node *bs = NULL;
	uint64_t seed, len, cs;
	uint8_t buf[65536];
	int ret;

	if (argc != 2 || parse_u64(argv[1], &seed) < 0) {
		return 2;
	}
	seed = seed * 2654435761u + 1;
	if (open_rw(argv[0], &bs) < 0) {
		return 1;
	}
	len = block_length(bs);
	cs = ((struct qcow2_state *)bs->opaque)->cluster_size;
	for (uint64_t i = 0;; i++) {
		uint64_t off = ALIGN_DOWN(rnd(&seed) % len, 512), r2 = rnd(&seed);
		uint64_t n = MIN(len - off, 512 * (1 + (r2 % 128)));

		memset(buf, (int)(i & 0xff), n);
		ret = block_pwrite(bs, off, buf, n);
		if (ret == 0 && i % 7 == 0) {
			ret = block_discard(bs, ALIGN_DOWN(off, 65536), 65536);
		}
		if (ret == 0 && i % 11 == 0) {
			ret = block_write_zeroes(bs, off, n, i % 22 ? BLOCK_ZERO_MAY_UNMAP : 0);
		}
		if (ret == 0 && i % 13 == 0 && cs <= sizeof(buf) && off + cs <= len) {
			memset(buf + cs / 2, 0, cs / 2);
			ret = bs->drv->pwrite_compressed(bs, ALIGN_DOWN(off, cs), buf, cs);
		}
		if (ret == 0 && i % 50 == 0) {
			ret = block_flush(bs);
		}
		if (ret < 0) {
			fprintf(stderr, "writer: %s\n", strerror(-ret));
			return 1;
		}
		if (i == 20) {
			/* tell the test the image is open and being written */
			fprintf(stdout, "running\n");
			fflush(stdout);
		}
	}
}

static int cmd_snapshot(int argc, char **argv)
{
	struct block_node *bs = NULL;
	struct error *err = NULL;
	int ret = 0;

	if (argc < 2) {
		return 2;
	}
	if (open_rw(argv[0], &bs) < 0) {
		return 1;
	}
	if (!strcmp(argv[1], "-l")) {
		json_t *l = block_snapshot_list(bs, &err);
		size_t i;
		json_t *v;

		json_array_foreach (l, i, v) {
			printf("%s %s\n", json_string_value(json_object_get(v, "id")),
			       json_string_value(json_object_get(v, "name")));
		}
		json_decref(l);
	} else if (argc == 3 && !strcmp(argv[1], "-c")) {
		ret = block_snapshot_create(bs, argv[2], &err);
	} else if (argc == 3 && !strcmp(argv[1], "-a")) {
		ret = block_snapshot_apply(bs, argv[2], &err);
	} else if (argc == 3 && !strcmp(argv[1], "-d")) {
		ret = block_snapshot_delete(bs, argv[2], &err);
	} else {
		ret = -EINVAL;
	}
	block_unref(bs);
	return ret < 0 ? die(err, ret) : 0;
}

static int cmd_resize(int argc, char **argv)
{
	struct block_node *bs = NULL;
	struct error *err = NULL;
	uint64_t size;
	int ret;

	if (argc != 2 || parse_size(argv[1], &size) < 0) {
		return 2;
	}
	if (open_rw(argv[0], &bs) < 0) {
		return 1;
	}
	ret = block_truncate(bs, size, &err);
	block_unref(bs);
	return ret < 0 ? die(err, ret) : 0;
}

static int cmd_check(int argc, char **argv)
{
	struct block_node *bs = NULL;
	struct block_check_result r = {0};
	struct error *err = NULL;
	unsigned fix = 0;
	int ret;

	if (argc < 1) {
		return 2;
	}
	if (argc == 2) {
		fix = !strcmp(argv[1], "all") ? BLOCK_FIX_LEAKS | BLOCK_FIX_ERRORS
					      : BLOCK_FIX_LEAKS;
	}
	ret = block_open(&bs, argv[0], "qcow2", fix ? BLOCK_O_RDWR : 0, &err);
	if (ret < 0) {
		return die(err, ret);
	}
	ret = bs->drv->check(bs, &r, fix);
	block_unref(bs);
	printf("corruptions=%" PRIu64 " leaks=%" PRIu64 " corruptions_fixed=%" PRIu64
	       " leaks_fixed=%" PRIu64 " image_end=%" PRIu64 "\n",
	       r.corruptions, r.leaks, r.corruptions_fixed, r.leaks_fixed, r.image_end_offset);
	if (ret < 0) {
		return die(NULL, ret);
	}
	return r.corruptions ? 2 : r.leaks ? 3 : 0;
}

static int cmd_write(int argc, char **argv)
{
	struct block_node *bs = NULL;
	uint64_t off, len, byte;
	_cleanup_free_ uint8_t *buf = NULL;
	int ret;

	if (argc != 4 || parse_size(argv[1], &off) < 0 || parse_size(argv[2], &len) < 0 ||
	    parse_u64(argv[3], &byte) < 0) {
		return 2;
	}
	buf = malloc(len ? len : 1);
	if (!buf || open_rw(argv[0], &bs) < 0) {
		return 1;
	}
	memset(buf, (int)byte, len);
	ret = block_pwrite(bs, off, buf, len);
	block_unref(bs);
	return ret < 0 ? die(NULL, ret) : 0;
}

static int cmd_zero(int argc, char **argv)
{
	struct block_node *bs = NULL;
	struct error *err = NULL;
	uint64_t off, len;
	bool unmap;
	int ret;

	if (argc < 3 || parse_size(argv[1], &off) < 0 || parse_size(argv[2], &len) < 0) {
		return 2;
	}
	unmap = argc == 4 && !strcmp(argv[3], "unmap");
	ret = block_open(&bs, argv[0], "qcow2", BLOCK_O_RDWR | (unmap ? BLOCK_O_UNMAP : 0), &err);
	if (ret < 0) {
		return die(err, ret);
	}
	ret = block_write_zeroes(bs, off, len, unmap ? BLOCK_ZERO_MAY_UNMAP : 0);
	block_unref(bs);
	return ret < 0 ? die(NULL, ret) : 0;
}

struct stress {
	struct block_node *bs;
	uint8_t *mirror; /* expected content of the whole image */
	uint64_t len, stripe, ops;
	unsigned id, nthreads;
	int failed;
};

/* Thread @id owns stripes id, id + n, id + 2n, ... of @stripe bytes each. */
static void *stress_thread(void *opaque)
{
	struct stress *st = opaque;
	uint64_t seed = st->id * 7919 + 17, nstripes = st->len / st->stripe;
	_cleanup_free_ uint8_t *buf = malloc(st->stripe);

	for (uint64_t i = 0; i < st->ops && buf && !st->failed; i++) {
		uint64_t si = (rnd(&seed) % (nstripes / st->nthreads)) * st->nthreads + st->id;
		uint64_t base = si * st->stripe;
		uint64_t off = base + ALIGN_DOWN(rnd(&seed) % st->stripe, 512);
		uint64_t want = 512 * (1 + rnd(&seed) % 64);
		uint64_t n = MIN(base + st->stripe - off, want);
		unsigned kind = rnd(&seed) % 10;
		int ret;

		if (kind < 6) {
			memset(buf, (int)(i * 13 + st->id), n);
			ret = block_pwrite(st->bs, off, buf, n);
			memcpy(st->mirror + off, buf, n);
		} else if (kind < 7) {
			ret = block_write_zeroes(st->bs, off, n, BLOCK_ZERO_MAY_UNMAP);
			memset(st->mirror + off, 0, n);
		} else if (kind < 8) {
			/* a discard of part of a cluster does nothing: zero those instead */
			if (((struct qcow2_state *)st->bs->opaque)->cluster_size <= st->stripe) {
				ret = block_discard(st->bs, base, st->stripe);
			} else {
				ret = block_write_zeroes(st->bs, base, st->stripe,
							 BLOCK_ZERO_MAY_UNMAP);
			}
			memset(st->mirror + base, 0, st->stripe);
		} else if (kind < 9) {
			ret = block_flush(st->bs);
		} else {
			ret = block_pread(st->bs, base, buf, st->stripe);
			if (ret == 0 && memcmp(buf, st->mirror + base, st->stripe)) {
				fprintf(stderr, "thread %u: stripe %" PRIu64 " reads wrong\n",
					st->id, si);
				st->failed = 1;
			}
		}
		if (ret < 0) {
			fprintf(stderr, "thread %u op %" PRIu64 ": %s\n", st->id, i,
				strerror(-ret));
			st->failed = 1;
		}
	}
	return NULL;
}

static int cmd_stress(int argc, char **argv)
{
	struct block_node *bs = NULL;
	uint64_t nthreads, ops;
	struct stress st[16];
	pthread_t tid[16];
	_cleanup_free_ uint8_t *mirror = NULL, *buf = NULL;
	uint64_t len;
	int failed = 0;

	if (argc != 3 || parse_u64(argv[1], &nthreads) < 0 || parse_u64(argv[2], &ops) < 0 ||
	    nthreads < 1 || nthreads > 16) {
		return 2;
	}
	if (open_rw(argv[0], &bs) < 0) {
		return 1;
	}
	len = block_length(bs);
	mirror = calloc(1, len);
	buf = malloc(len);
	if (!mirror || !buf || block_pread(bs, 0, mirror, len) < 0) {
		block_unref(bs);
		return 1;
	}
	for (unsigned i = 0; i < nthreads; i++) {
		/* 64 KiB stripes: with larger clusters, threads share clusters */
		st[i] = (struct stress){bs, mirror, len, 65536, ops, i, (unsigned)nthreads, 0};
		pthread_create(&tid[i], NULL, stress_thread, &st[i]);
	}
	for (unsigned i = 0; i < nthreads; i++) {
		pthread_join(tid[i], NULL);
		failed |= st[i].failed;
	}
	if (!failed && (block_pread(bs, 0, buf, len) < 0 || memcmp(buf, mirror, len))) {
		fprintf(stderr, "final content differs\n");
		failed = 1;
	}
	block_unref(bs);
	return failed;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: qcow2-io COMMAND FILE ...\n");
		return 2;
	}
	if (!strcmp(argv[1], "create")) {
		return cmd_create(argc - 2, argv + 2);
	} else if (!strcmp(argv[1], "dump")) {
		return cmd_dump(argc - 2, argv + 2);
	} else if (!strcmp(argv[1], "ops")) {
		return cmd_ops(argc - 2, argv + 2);
	} else if (!strcmp(argv[1], "writer")) {
		return cmd_writer(argc - 2, argv + 2);
	} else if (!strcmp(argv[1], "snapshot")) {
		return cmd_snapshot(argc - 2, argv + 2);
	} else if (!strcmp(argv[1], "resize")) {
		return cmd_resize(argc - 2, argv + 2);
	} else if (!strcmp(argv[1], "check")) {
		return cmd_check(argc - 2, argv + 2);
	} else if (!strcmp(argv[1], "write")) {
		return cmd_write(argc - 2, argv + 2);
	} else if (!strcmp(argv[1], "zero")) {
		return cmd_zero(argc - 2, argv + 2);
	} else if (!strcmp(argv[1], "stress")) {
		return cmd_stress(argc - 2, argv + 2);
	}
	fprintf(stderr, "qcow2-io: unknown command %s\n", argv[1]);
	return 2;
}
