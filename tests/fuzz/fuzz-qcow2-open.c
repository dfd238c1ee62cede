/*
 * libFuzzer target: opening a crafted qcow2 image (block/qcow2*.c) and
 * reading from it, read-only and without backing files: header, extensions,
 * L1/refcount tables, snapshots, compressed clusters. The image lives in a
 * memfd opened by its /proc path.
 */
#define _GNU_SOURCE
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "vmmd/block.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char buf[65536];
	struct block_node *bs = NULL;
	char path[64];
	int fd = memfd_create("fuzz-qcow2", MFD_CLOEXEC);

	if (fd < 0) {
		abort();
	}
	if (write(fd, data, size) != (ssize_t)size) {
		abort();
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	if (block_open(&bs, path, "qcow2", BLOCK_O_NO_LOCK | BLOCK_O_NO_BACKING, NULL) == 0) {
		uint64_t len = block_length(bs);
		struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};

		for (uint64_t off = 0; off < len && off < (64u << 20); off += len / 8 + 65536) {
			iov.iov_len = sizeof(buf) < len - off ? sizeof(buf) : len - off;
			block_preadv(bs, off, &iov, 1);
		}
		block_unref(bs);
	}
	close(fd);
	return 0;
}
