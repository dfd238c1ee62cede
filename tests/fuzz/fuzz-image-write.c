/*
 * libFuzzer target: sequences of writes, discards, zero writes, flushes,
 * snapshots (qcow2), growth (qcow2, QED) and reopens on a fresh image of
 * any format vmmd writes (block/qcow2*.c, qed.c, vhdx.c, vmdk.c, vpc.c),
 * checked three ways: every read through our driver matches a shadow copy
 * of what was written (bytes a discard left undefined excepted); at the end
 * `qemu-img check` must find no corruption and no leak (VHD has no check);
 * and `qemu-img convert` to raw must show the same bytes, so QEMU reads
 * what we wrote. The input's first byte picks the format (bits 5-7: qcow2,
 * QED, VHDX, VMDK, VHD), its cluster or block size (bits 0-1) and options
 * (bits 2-4); the rest is a stream of operations (see the switch below).
 */
#define _GNU_SOURCE
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "tests/fuzz/fuzz-input.h"
#include "vmmd/block.h"

#define SIZE (4u << 20) /* virtual size at creation */
#define MAX_SIZE (6u << 20)
#define MAX_IO (256u << 10)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* tmpfs: the driver flushes often and fsync on a disk would dominate */
static char dir[] = "/dev/shm/fuzz-image-write-XXXXXX";
static char img[64], raw[64];
static uint8_t shadow[MAX_SIZE];
static uint8_t known[MAX_SIZE]; /* 0: a discard left the byte undefined */
static uint8_t buf[MAX_IO];
static const char *const formats[] = {"qcow2", "qed", "vhdx", "vmdk", "vpc"};
static unsigned format; /* index in formats[] */

static void cleanup(void)
{
	unlink(img);
	unlink(raw);
	rmdir(dir);
}

/* posix_spawn, not fork: copying a sanitized process's page tables is slow. */
static int run(char *const argv[])
{
	posix_spawn_file_actions_t fa;
	pid_t pid;
	int st, r;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
	if (posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ) != 0) {
		abort();
	}
	/* libFuzzer's -timeout alarm (SIGALRM, no SA_RESTART) interrupts the wait */
	while ((r = waitpid(pid, &st, 0)) < 0 && errno == EINTR) {
	}
	if (r < 0) {
		abort();
	}
	posix_spawn_file_actions_destroy(&fa);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void fail(const char *what, uint64_t off)
{
	char *const check[] = {"qemu-img", "check", "-f", (char *)formats[format], img, NULL};

	fprintf(stderr, "fuzz-image-write: %s at %llu\n", what, (unsigned long long)off);
	execvp(check[0], check); /* the image's state, for the report */
	abort();
}

static void verify(struct block_node *bs, uint64_t off, uint64_t len)
{
	if (block_pread(bs, off, buf, len) < 0) {
		fail("read failed", off);
	}
	for (uint64_t i = 0; i < len; i++) {
		if (known[off + i] && buf[i] != shadow[off + i]) {
			fail("read back differs", off + i);
		}
	}
}

/* The creation options bits 0-4 of @mode pick for the format. */
static json_t *create_opts(uint8_t mode)
{
	static const char *const qcow2_clusters[] = {"512", "4096", "65536", "2097152"};
	static const char *const qed_clusters[] = {"4096", "16384", "65536", "1048576"};
	static const char *const vhdx_blocks[] = {"1048576", "1048576", "2097152", "8388608"};
	json_t *opts = json_object();

	switch (format) {
	case 0:
		json_object_set_new(opts, "cluster_size", json_string(qcow2_clusters[mode % 4]));
		if (mode & 4) {
			json_object_set_new(opts, "lazy_refcounts", json_string("on"));
		}
		if (mode & 8) {
			json_object_set_new(opts, "refcount_bits",
					    json_string(mode & 16 ? "1" : "64"));
		}
		break;
	case 1:
		json_object_set_new(opts, "cluster_size", json_string(qed_clusters[mode % 4]));
		/* not 1: QEMU 7.2 creates but cannot open such images ("QED table offset is invalid") */
		json_object_set_new(opts, "table_size", json_string(mode & 4 ? "2" : "4"));
		break;
	case 2:
		json_object_set_new(opts, "block_size", json_string(vhdx_blocks[mode % 4]));
		json_object_set_new(opts, "block_state_zero", json_string(mode & 4 ? "on" : "off"));
		json_object_set_new(opts, "subformat", json_string(mode & 8 ? "fixed" : "dynamic"));
		break;
	case 3:
		json_object_set_new(opts, "subformat",
				    json_string(mode & 8 ? "streamOptimized" : "monolithicSparse"));
		break;
	case 4:
		json_object_set_new(opts, "subformat", json_string(mode & 8 ? "fixed" : "dynamic"));
		json_object_set_new(opts, "force_size", json_string(mode & 4 ? "on" : "off"));
		break;
	}
	return opts;
}

static struct block_node *open_img(void)
{
	struct block_node *bs = NULL;

	if (block_open(&bs, img, formats[format], BLOCK_O_RDWR | BLOCK_O_UNMAP, NULL) < 0) {
		fail("cannot open", 0);
	}
	return bs;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz f = {data, size};
	uint8_t mode = fz_u8(&f);
	json_t *opts;
	struct block_node *bs;
	uint64_t vsize;
	unsigned ops = 0, snaps = 0;

	if (!img[0]) {
		if (!mkdtemp(dir)) {
			abort();
		}
		snprintf(img, sizeof(img), "%s/t.img", dir);
		snprintf(raw, sizeof(raw), "%s/t.raw", dir);
		atexit(cleanup);
	}
	format = (unsigned)(mode >> 5) % 5;
	opts = create_opts(mode);
	if (block_create(formats[format], img, SIZE, opts, NULL) < 0) {
		abort();
	}
	json_decref(opts);
	memset(shadow, 0, sizeof(shadow));
	memset(known, 1, sizeof(known));
	bs = open_img();
	vsize = block_length(bs); /* VHD may round the size to its geometry */
	if (vsize > MAX_SIZE) {
		abort();
	}
	while (fz_more(&f) && ops++ < 64) {
		uint8_t op = fz_u8(&f);
		/* offsets and lengths: often cluster-aligned, sometimes not */
		uint64_t off = (op & 0x80) ? (uint64_t)fz_u16(&f) * 512 % vsize
					   : (uint64_t)fz_u32(&f) % vsize;
		uint64_t len = (op & 0x40) ? (uint64_t)(fz_u8(&f) + 1) * 512 : fz_u16(&f) + 1u;

		len = len > MAX_IO ? MAX_IO : len;
		len = off + len > vsize ? vsize - off : len;
		switch (op % 8) {
		case 0:
		case 1: { /* write a pattern */
			uint8_t pat = fz_u8(&f);

			for (uint64_t i = 0; i < len; i++) {
				buf[i] = (uint8_t)(pat + i * 7 + (off + i) / 512);
			}
			if (block_pwrite(bs, off, buf, len) < 0) {
				fail("write failed", off);
			}
			memcpy(shadow + off, buf, len);
			memset(known + off, 1, len);
			break;
		}
		case 2: /* discard: the range may read as old data or zeroes */
			if (block_discard(bs, off, len) < 0) {
				fail("discard failed", off);
			}
			memset(known + off, 0, len);
			break;
		case 3: /* zero writes, unmapping or not */
			if (block_write_zeroes(bs, off, len,
					       fz_u8(&f) & 1 ? BLOCK_ZERO_MAY_UNMAP : 0) < 0) {
				fail("write zeroes failed", off);
			}
			memset(shadow + off, 0, len);
			memset(known + off, 1, len);
			break;
		case 4:
			if (block_flush(bs) < 0) {
				fail("flush failed", 0);
			}
			break;
		case 5:
			verify(bs, off, len);
			break;
		case 6: /* close and reopen: everything written must persist */
			block_unref(bs);
			bs = open_img();
			verify(bs, off, len);
			break;
		case 7:
			if (fz_u8(&f) & 1 && vsize < MAX_SIZE && format <= 1) { /* grow */
				uint64_t n = vsize + 512 * (1 + fz_u8(&f));

				n = n > MAX_SIZE ? MAX_SIZE : n;
				if (block_truncate(bs, n, NULL) < 0) {
					fail("truncate failed", n);
				}
				memset(shadow + vsize, 0, n - vsize);
				memset(known + vsize, 1, n - vsize);
				vsize = n;
			} else if (snaps < 3 && format == 0) {
				/* an internal snapshot: later writes copy */
				char name[16];

				snprintf(name, sizeof(name), "s%u", snaps++);
				/* 1-bit refcounts cannot share a cluster: refused */
				if (block_snapshot_create(bs, name, NULL) < 0 &&
				    (mode & 24) != 24) {
					fail("snapshot failed", 0);
				}
			}
			break;
		}
	}
	block_unref(bs);
	{
		char *fmt = (char *)formats[format];
		char *const check[] = {"qemu-img", "check", "-q", "-f", fmt, img, NULL};
		char *const conv[] = {"qemu-img", "convert", "-f", fmt, "-O",
				      "raw",	  img,	     raw,  NULL};
		int fd, r = format == 4 ? 0 : run(check); /* QEMU cannot check VHD */

		if (r != 0) {
			fail(r == 3 ? "qemu-img check: leaked clusters" : "qemu-img check: corrupt",
			     0);
		}
		if (run(conv) != 0) {
			fail("qemu-img convert failed", 0);
		}
		fd = open(raw, O_RDONLY);
		if (fd < 0) {
			abort();
		}
		for (uint64_t off = 0; off < vsize; off += MAX_IO) {
			uint64_t len = vsize - off < MAX_IO ? vsize - off : MAX_IO;

			if (pread(fd, buf, len, (off_t)off) != (ssize_t)len) {
				fail("qemu-img convert: short image", off);
			}
			for (uint64_t i = 0; i < len; i++) {
				if (known[off + i] && buf[i] != shadow[off + i]) {
					fail("QEMU reads other bytes", off + i);
				}
			}
		}
		close(fd);
	}
	return 0;
}
