/*
 * libFuzzer target: crafted images of the four formats besides qcow2
 * (block/qed.c, vhdx.c, vmdk.c, vpc.c), opened read-only or read-write
 * without backing files, then driven by a stream of reads, writes, zero
 * writes, discards, flushes, status queries, checks (with repairs when
 * writable) and reopens: header and table parsing, VHDX log replay, grain,
 * block and cluster allocation, streamOptimized compression. Nothing is
 * compared: a crafted image may map two guest blocks to one place; what
 * must hold is memory safety, no hang and no abort.
 *
 * Images are mostly zeroes, so the input describes one sparsely:
 *   u8  mode: bits 0-1 the format (qed, vhdx, vmdk, vpc), bit 2 read-write,
 *       bit 3 make the checksums right (VHDX headers, region tables and
 *       log entries; VHD footers and dynamic header) after patching
 *   u32 file size (below 64 MiB)
 *   patches, each u16 length (0 ends them), u32 offset, the bytes
 *   operations (see the switch below), at most 32
 * The image lives in a memfd opened by its /proc path.
 */
#define _GNU_SOURCE
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "block/block-int.h"
#include "common/bytes.h"
#include "common/crc32c.h"
#include "tests/fuzz/fuzz-input.h"
#include "vmmd/block.h"

#define MAX_FILE (64u << 20)
#define MAX_GROWN (256u << 20) /* writes stop once allocation took the file past this */
#define MAX_IO (256u << 10)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t buf[MAX_IO];

static void fix_vhdx_log(int fd, uint64_t fsize, const uint8_t *h)
{
	uint64_t log_off = le64(h + 72), log_len = le32(h + 68);

	for (uint64_t at = 0; at < log_len && log_off + at + 4096 <= fsize; at += 4096) {
		uint8_t e[4096];
		uint32_t len;
		uint8_t *whole;

		if (pread(fd, e, 16, (off_t)(log_off + at)) != 16 || memcmp(e, "loge", 4) != 0) {
			continue;
		}
		len = le32(e + 8);
		if (len < 64 || len > log_len - at || log_off + at + len > fsize) {
			continue;
		}
		whole = malloc(len);
		if (!whole) {
			abort();
		}
		if (pread(fd, whole, len, (off_t)(log_off + at)) == (ssize_t)len) {
			put_le32(whole + 4, crc32c_field(whole, len, 4));
			if (pwrite(fd, whole + 4, 4, (off_t)(log_off + at + 4)) != 4) {
				abort();
			}
		}
		free(whole);
	}
}

/* Make a VHDX's checksums right: log entries, region tables, then headers. */
static void fix_vhdx(int fd, uint64_t fsize)
{
	static uint8_t t[64 << 10];
	static const uint64_t regions[] = {192 << 10, 256 << 10}, headers[] = {64 << 10, 128 << 10};

	for (int i = 0; i < 2; i++) {
		if (pread(fd, t, 4096, (off_t)headers[i]) == 4096 && memcmp(t, "head", 4) == 0) {
			fix_vhdx_log(fd, fsize, t);
		}
	}
	for (int i = 0; i < 2; i++) {
		if (pread(fd, t, sizeof(t), (off_t)regions[i]) == sizeof(t) &&
		    memcmp(t, "regi", 4) == 0) {
			put_le32(t + 4, crc32c_field(t, sizeof(t), 4));
			if (pwrite(fd, t + 4, 4, (off_t)(regions[i] + 4)) != 4) {
				abort();
			}
		}
	}
	for (int i = 0; i < 2; i++) {
		if (pread(fd, t, 4096, (off_t)headers[i]) == 4096 && memcmp(t, "head", 4) == 0) {
			put_le32(t + 4, crc32c_field(t, 4096, 4));
			if (pwrite(fd, t + 4, 4, (off_t)(headers[i] + 4)) != 4) {
				abort();
			}
		}
	}
}

/* VHD's checksum: the one's complement of the byte sum, the field at @at read as zero. */
static void fix_vhd_sum(int fd, uint64_t off, size_t len, size_t at, const char *sig)
{
	uint8_t b[1024];
	uint32_t sum = 0;

	if (pread(fd, b, len, (off_t)off) != (ssize_t)len || memcmp(b, sig, 8) != 0) {
		return;
	}
	for (size_t i = 0; i < len; i++) {
		sum += i >= at && i < at + 4 ? 0 : b[i];
	}
	put_be32(b + at, ~sum);
	if (pwrite(fd, b + at, 4, (off_t)(off + at)) != 4) {
		abort();
	}
}

/* The dynamic header first: the footers do not cover it. */
static void fix_vpc(int fd, uint64_t fsize)
{
	uint8_t f[512];

	for (int i = 0; i < 2; i++) {
		uint64_t at = i ? fsize - 512 : 0;

		if (fsize >= 512 && pread(fd, f, 512, (off_t)at) == 512 &&
		    memcmp(f, "conectix", 8) == 0 && be64(f + 16) < fsize) {
			fix_vhd_sum(fd, be64(f + 16), 1024, 36, "cxsparse");
		}
	}
	if (fsize >= 512) {
		fix_vhd_sum(fd, 0, 512, 64, "conectix");
		fix_vhd_sum(fd, fsize - 512, 512, 64, "conectix");
	}
}

static uint64_t file_size(int fd)
{
	struct stat st;

	if (fstat(fd, &st) < 0) {
		abort();
	}
	return (uint64_t)st.st_size;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const formats[] = {"qed", "vhdx", "vmdk", "vpc"};
	struct fz f = {data, size};
	uint8_t mode = fz_u8(&f);
	uint64_t fsize = fz_u32(&f) % MAX_FILE;
	unsigned flags = BLOCK_O_NO_LOCK | BLOCK_O_NO_BACKING, ops = 0;
	struct block_node *bs = NULL;
	char path[64];
	int fd = memfd_create("fuzz-image", MFD_CLOEXEC);
	ssize_t plen;

	if (fd < 0 || ftruncate(fd, (off_t)fsize) < 0) {
		abort();
	}
	while ((plen = fz_u16(&f)) != 0) {
		uint64_t off = fsize ? fz_u32(&f) % fsize : 0;
		size_t n = fz_bytes(&f, buf, plen);

		n = n < fsize - off ? n : fsize - off;
		if (pwrite(fd, buf, n, (off_t)off) != (ssize_t)n) {
			abort();
		}
	}
	if ((mode & 8) && (mode & 3) == 1) {
		fix_vhdx(fd, fsize);
	} else if ((mode & 8) && (mode & 3) == 3) {
		fix_vpc(fd, fsize);
	}
	if (mode & 4) {
		flags |= BLOCK_O_RDWR | BLOCK_O_UNMAP;
	}
	plen = pread(fd, buf, 4096, 0);
	(void)block_probe_buf(buf, plen > 0 ? (size_t)plen : 0, "image");
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	if (block_open(&bs, path, formats[mode & 3], flags, NULL) < 0) {
		close(fd);
		return 0;
	}
	json_decref(block_info_json(bs));
	while (bs && fz_more(&f) && ops++ < 32) {
		uint8_t op = fz_u8(&f);
		uint64_t vsize = block_length(bs);
		/* offsets and lengths: often 512-aligned, sometimes not */
		uint64_t off = (op & 0x80) ? (uint64_t)fz_u16(&f) * 512 : fz_u32(&f);
		uint64_t len = (op & 0x40) ? (uint64_t)(fz_u8(&f) + 1) * 512 : fz_u16(&f) + 1u;
		bool grown = file_size(fd) > MAX_GROWN;

		if (!vsize) {
			break;
		}
		off %= vsize;
		len = len > MAX_IO ? MAX_IO : len;
		len = off + len > vsize ? vsize - off : len;
		switch (op % 8) {
		case 0:
			(void)block_pread(bs, off, buf, len);
			break;
		case 1: { /* write a pattern */
			uint8_t pat = fz_u8(&f);

			for (uint64_t i = 0; i < len; i++) {
				buf[i] = (uint8_t)(pat + i * 7);
			}
			if (!grown) {
				(void)block_pwrite(bs, off, buf, len);
			}
			break;
		}
		case 2: {
			unsigned zflags = fz_u8(&f) & 1 ? BLOCK_ZERO_MAY_UNMAP : 0;

			if (!grown) {
				(void)block_write_zeroes(bs, off, len, zflags);
			}
			break;
		}
		case 3:
			(void)block_discard(bs, off, len);
			break;
		case 4:
			(void)block_flush(bs);
			break;
		case 5: /* status of the range, extent by extent */
			for (int i = 0; i < 64 && len; i++) {
				uint64_t pnum = 0, foff;
				unsigned st;

				if (block_get_status(bs, off, len, &pnum, &st, &foff) < 0 ||
				    !pnum || pnum > len) {
					break;
				}
				off += pnum;
				len -= pnum;
			}
			break;
		case 6: { /* check, repairing what it can when writable */
			struct block_check_result res = {0};
			bool fix = (flags & BLOCK_O_RDWR) && (op & 0x20) && !grown;

			(void)block_check(bs, &res, fix ? BLOCK_FIX_LEAKS | BLOCK_FIX_ERRORS : 0,
					  NULL);
			json_decref(block_info_json(bs));
			break;
		}
		case 7: /* close (streamOptimized rewrites its end marker) and open again */
			block_unref(bs);
			bs = NULL;
			(void)block_open(&bs, path, formats[mode & 3], flags, NULL);
			break;
		}
	}
	if (bs) {
		block_unref(bs);
	}
	close(fd);
	return 0;
}
