/*
 * Unit tests of the qed, vhdx, vmdk and vpc drivers through the block
 * layer: probing scores, create/open/write/read round trips, and crafted
 * images: each malformed header, descriptor or table must be refused with
 * an error naming the file and the fault (never a crash, never an
 * allocation sized by the bad field), and a table entry pointing outside
 * the file must give -EIO on access rather than garbage.
 */
#include "config.h"

#include <check.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/block-int.h"

static char path[64];

static void setup(void)
{
	int fd;

	snprintf(path, sizeof(path), "/tmp/test-formats.XXXXXX");
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	close(fd);
}

static void teardown(void)
{
	unlink(path);
}

static void create(const char *fmt, uint64_t size, const char *k, const char *v)
{
	struct error *err = NULL;
	json_t *o = k ? json_pack("{s:s}", k, v) : NULL;
	int r = block_create(fmt, path, size, o, &err);

	if (r < 0) {
		ck_abort_msg("create %s: %s", fmt, err->msg);
	}
	json_decref(o);
}

static void patch(uint64_t off, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, data, len, (off_t)off), (ssize_t)len);
	close(fd);
}

static void patch_le32(uint64_t off, uint32_t v)
{
	v = htole32(v);
	patch(off, &v, 4);
}

static void patch_le64(uint64_t off, uint64_t v)
{
	v = htole64(v);
	patch(off, &v, 8);
}

static void patch_be32(uint64_t off, uint32_t v)
{
	v = htobe32(v);
	patch(off, &v, 4);
}

static void patch_be64(uint64_t off, uint64_t v)
{
	v = htobe64(v);
	patch(off, &v, 8);
}

/* Opening must fail, with a message naming the file and containing @what. */
static void expect_refused(const char *fmt, const char *what)
{
	struct block_node *bs = NULL;
	struct error *err = NULL;
	int r = block_open(&bs, path, fmt, BLOCK_O_RDWR, &err);

	ck_assert_msg(r < 0, "%s image with '%s' was accepted", fmt, what);
	ck_assert_ptr_nonnull(err);
	ck_assert_msg(strstr(err->msg, path), "error does not name the file: %s", err->msg);
	ck_assert_msg(strstr(err->msg, what), "error '%s' does not say '%s'", err->msg, what);
	error_free(err);
}

static struct block_node *open_ok(const char *fmt, unsigned flags)
{
	struct block_node *bs = NULL;
	struct error *err = NULL;

	if (block_open(&bs, path, fmt, flags, &err) < 0) {
		ck_abort_msg("open %s: %s", fmt, err->msg);
	}
	return bs;
}

static const char *probe(void)
{
	const char *fmt = NULL;

	ck_assert_int_eq(block_probe_format(path, &fmt, NULL), 0);
	return fmt;
}

/* Write a pattern at a few places, read it back, reopen, read again. */
static void roundtrip(const char *fmt, uint64_t size)
{
	static const uint64_t offs[] = {0, 16384, 65536 + 512, 3 << 20};
	struct block_node *bs = open_ok(fmt, BLOCK_O_RDWR);
	uint8_t buf[8192], got[8192];

	ck_assert_uint_eq(block_length(bs), size);
	for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
		memset(buf, 0x40 + (int)i, sizeof(buf));
		ck_assert_int_eq(block_pwrite(bs, offs[i], buf, sizeof(buf)), 0);
	}
	block_unref(bs);
	bs = open_ok(fmt, 0);
	for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
		memset(buf, 0x40 + (int)i, sizeof(buf));
		ck_assert_int_eq(block_pread(bs, offs[i], got, sizeof(got)), 0);
		ck_assert_mem_eq(got, buf, sizeof(buf));
	}
	memset(buf, 0, sizeof(buf));
	ck_assert_int_eq(block_pread(bs, 8 << 20, got, sizeof(got)), 0);
	ck_assert_mem_eq(got, buf, sizeof(buf));
	block_unref(bs);
}

/* ---- qed ---- */

START_TEST(qed_roundtrip_and_probe)
{
	create("qed", 10 << 20, NULL, NULL);
	ck_assert_str_eq(probe(), "qed");
	roundtrip("qed", 10 << 20);
	create("qed", 1000, NULL, NULL); /* rounded up to a sector, as qemu-img */
	struct block_node *bs = open_ok("qed", 0);
	ck_assert_uint_eq(block_length(bs), 1024);
	block_unref(bs);
}
END_TEST

START_TEST(qed_bad_headers)
{
	create("qed", 10 << 20, NULL, NULL);
	patch_le32(0, 0x12345678);
	ck_assert_str_eq(probe(), "raw");
	expect_refused("qed", "bad magic");

	create("qed", 10 << 20, NULL, NULL);
	patch_le32(4, 3000);
	expect_refused("qed", "cluster size 3000");
	patch_le32(4, 1u << 31);
	expect_refused("qed", "cluster size");

	create("qed", 10 << 20, NULL, NULL);
	patch_le32(8, 3);
	expect_refused("qed", "table size 3");
	patch_le32(8, 16); /* 16 x 64 KiB is fine; with 64 MiB clusters it is 1 GiB */
	patch_le32(4, 64u << 20);
	expect_refused("qed", "exceed the 32 MiB");

	create("qed", 10 << 20, NULL, NULL);
	patch_le64(16, 1ull << 40);
	expect_refused("qed", "unsupported features");
	patch_le64(16, 1); /* a backing file whose name is empty */
	expect_refused("qed", "backing file name");
	patch_le32(56, 65530); /* a name that runs past the header cluster */
	patch_le32(60, 100);
	expect_refused("qed", "backing file name");
	patch_le32(56, 64);
	patch_le32(60, 5000);
	expect_refused("qed", "backing file name");
	patch_le32(60, 4); /* four NULs */
	expect_refused("qed", "NUL");
	patch(64, "nope", 4); /* a missing backing file */
	expect_refused("qed", "backing file");

	create("qed", 10 << 20, NULL, NULL);
	patch_le64(40, 1ull << 50);
	expect_refused("qed", "L1 table offset");
	patch_le64(40, 4096);
	expect_refused("qed", "L1 table offset");

	create("qed", 10 << 20, NULL, NULL);
	patch_le64(48, UINT64_MAX - 511);
	expect_refused("qed", "virtual size");
	patch_le64(48, 1001);
	expect_refused("qed", "virtual size");

	create("qed", 10 << 20, NULL, NULL);
	ck_assert_int_eq(truncate(path, 40), 0);
	expect_refused("qed", "too short");
}
END_TEST

START_TEST(qed_bad_tables)
{
	struct block_node *bs;
	uint8_t buf[4096];
	struct block_check_result res = {0};

	/* an L1 entry past the end of the file: reads fail, nothing crashes */
	create("qed", 10 << 20, NULL, NULL);
	patch_le64(65536, 1ull << 40);
	bs = open_ok("qed", 0);
	ck_assert_int_eq(block_pread(bs, 0, buf, sizeof(buf)), -EIO);
	ck_assert_int_eq(block_check(bs, &res, 0, NULL), 0);
	ck_assert_uint_eq(res.corruptions, 1);
	block_unref(bs);

	/* an L2 entry pointing into the L1 table */
	create("qed", 10 << 20, NULL, NULL);
	bs = open_ok("qed", BLOCK_O_RDWR);
	memset(buf, 7, sizeof(buf));
	ck_assert_int_eq(block_pwrite(bs, 0, buf, sizeof(buf)), 0);
	block_unref(bs);
	/* L2 at 327680 (after header and L1... data first): find it from L1 */
	{
		int fd = open(path, O_RDONLY);
		uint64_t l2;

		ck_assert_int_eq(pread(fd, &l2, 8, 65536), 8);
		close(fd);
		patch_le64(le64toh(l2), 65536);
	}
	bs = open_ok("qed", 0);
	ck_assert_int_eq(block_pread(bs, 0, buf, sizeof(buf)), -EIO);
	block_unref(bs);

	/* need-check set and a bad entry: a writable open repairs it (as QEMU) */
	patch_le64(16, 2);
	bs = open_ok("qed", BLOCK_O_RDWR);
	ck_assert_int_eq(block_pread(bs, 0, buf, sizeof(buf)), 0);
	ck_assert_uint_eq(buf[0], 0);
	memset(&res, 0, sizeof(res));
	ck_assert_int_eq(block_check(bs, &res, 0, NULL), 0);
	ck_assert_uint_eq(res.corruptions, 0);
	block_unref(bs);
}
END_TEST

/* ---- vpc ---- */

/* Recompute a VHD checksum (one's complement byte sum) of @len bytes at @off, field at @at. */
static void vpc_fix_checksum(uint64_t off, size_t len, size_t at)
{
	uint8_t buf[1024];
	uint32_t sum = 0;
	int fd = open(path, O_RDWR);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	memset(buf + at, 0, 4);
	for (size_t i = 0; i < len; i++) {
		sum += buf[i];
	}
	close(fd);
	patch_be32(off + at, ~sum);
}

START_TEST(vpc_roundtrip_and_probe)
{
	create("vpc", 10 << 20, NULL, NULL);
	ck_assert_str_eq(probe(), "vpc");
	roundtrip("vpc", 10514432); /* CHS-rounded, as qemu-img */
	create("vpc", 10 << 20, "subformat", "fixed");
	ck_assert_str_eq(probe(), "raw"); /* as QEMU: no header at the start */
	roundtrip("vpc", 10514432);
}
END_TEST

START_TEST(vpc_bad_images)
{
	struct block_node *bs;
	uint8_t buf[512];

	create("vpc", 10 << 20, NULL, NULL);
	{
		uint8_t b = 0x55;

		patch(80, &b, 1); /* inside the UUID: the checksum no longer matches */
	}
	expect_refused("vpc", "footer checksum");

	create("vpc", 10 << 20, NULL, NULL);
	patch_be32(60, 4);
	vpc_fix_checksum(0, 512, 64);
	expect_refused("vpc", "differencing");
	patch_be32(60, 9);
	vpc_fix_checksum(0, 512, 64);
	expect_refused("vpc", "unknown disk type");

	create("vpc", 10 << 20, NULL, NULL);
	patch(28, "qem2", 4);
	patch_be64(48, 3ull << 40);
	vpc_fix_checksum(0, 512, 64);
	expect_refused("vpc", "exceeds 2040 GiB");

	create("vpc", 10 << 20, NULL, NULL);
	patch_be32(512 + 32, 3000);
	vpc_fix_checksum(512, 1024, 36);
	expect_refused("vpc", "block size 3000");

	create("vpc", 10 << 20, NULL, NULL);
	patch_be32(512 + 28, 0x10000000); /* a 1 GiB BAT */
	vpc_fix_checksum(512, 1024, 36);
	expect_refused("vpc", "exceed 64 MiB");

	create("vpc", 10 << 20, NULL, NULL);
	patch_be64(512 + 16, 1ull << 40);
	vpc_fix_checksum(512, 1024, 36);
	expect_refused("vpc", "BAT offset");

	create("vpc", 10 << 20, NULL, NULL);
	patch_be64(16, 1ull << 40);
	vpc_fix_checksum(0, 512, 64);
	expect_refused("vpc", "dynamic header offset");

	create("vpc", 10 << 20, NULL, NULL);
	patch_be32(1536, 0x100000); /* block 0 at 512 MiB */
	expect_refused("vpc", "past the end of the file");

	create("vpc", 10 << 20, NULL, NULL);
	patch_be32(1536, 3); /* block 0 over the BAT */
	expect_refused("vpc", "overlaps the BAT");

	create("vpc", 10 << 20, NULL, NULL);
	ck_assert_int_eq(truncate(path, 100), 0);
	expect_refused("vpc", "too short");

	/* a fixed image whose footer claims more than the file holds */
	create("vpc", 1 << 20, "subformat", "fixed");
	bs = open_ok("vpc", 0);
	ck_assert_int_eq(block_pread(bs, 0, buf, sizeof(buf)), 0);
	block_unref(bs);
	{
		int fd = open(path, O_RDONLY);
		off_t end = lseek(fd, 0, SEEK_END);

		close(fd);
		patch_be32((uint64_t)end - 512 + 56, 0xffff1010u); /* 65535 x 16 x 16 sectors */
		vpc_fix_checksum((uint64_t)end - 512, 512, 64);
	}
	expect_refused("vpc", "does not fit");
}
END_TEST

/* ---- vhdx ---- */

static uint32_t crc32c(const uint8_t *p, size_t len)
{
	uint32_t crc = 0xffffffffu;

	for (size_t i = 0; i < len; i++) {
		crc ^= p[i];
		for (int k = 0; k < 8; k++) {
			crc = crc & 1 ? (crc >> 1) ^ 0x82f63b78u : crc >> 1;
		}
	}
	return ~crc;
}

static void vhdx_fix_crc(uint64_t off, size_t len)
{
	uint8_t *buf = malloc(len);
	int fd = open(path, O_RDWR);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	memset(buf + 4, 0, 4);
	close(fd);
	patch_le32(off + 4, crc32c(buf, len));
	free(buf);
}

/* Offsets of the metadata and BAT regions of an image vhdx_create made (1 MiB log). */
#define VHDX_BAT (2u << 20)
#define VHDX_META (3u << 20)

START_TEST(vhdx_roundtrip_and_probe)
{
	create("vhdx", 10 << 20, NULL, NULL);
	ck_assert_str_eq(probe(), "vhdx");
	roundtrip("vhdx", 10 << 20);
	create("vhdx", 10 << 20, "block_size", "1M");
	roundtrip("vhdx", 10 << 20);
}
END_TEST

START_TEST(vhdx_bad_images)
{
	create("vhdx", 10 << 20, NULL, NULL);
	patch(0, "vhdxfilX", 8);
	ck_assert_str_eq(probe(), "raw");
	expect_refused("vhdx", "not a VHDX image");

	create("vhdx", 10 << 20, NULL, NULL);
	patch_le32(65536 + 12, 7);
	patch_le32(131072 + 12, 7);
	expect_refused("vhdx", "no valid header");

	create("vhdx", 10 << 20, NULL, NULL);
	for (uint64_t h = 65536; h <= 131072; h += 65536) {
		patch_le64(h + 72, (1u << 20) + 4096);
		vhdx_fix_crc(h, 4096);
	}
	expect_refused("vhdx", "log at");

	create("vhdx", 10 << 20, NULL, NULL);
	for (uint64_t r = 192 * 1024; r <= 256 * 1024; r += 65536) {
		patch_le32(r + 8, 5000);
		vhdx_fix_crc(r, 65536);
	}
	expect_refused("vhdx", "region table entries");

	create("vhdx", 10 << 20, NULL, NULL);
	for (uint64_t r = 192 * 1024; r <= 256 * 1024; r += 65536) {
		patch_le64(r + 32, 1ull << 40); /* the BAT region past the end */
		vhdx_fix_crc(r, 65536);
	}
	expect_refused("vhdx", "outside the file");

	create("vhdx", 10 << 20, NULL, NULL);
	patch_le32(VHDX_META + 65536, 3u << 20);
	expect_refused("vhdx", "block size");
	patch_le32(VHDX_META + 65536, 8u << 20);
	patch_le32(VHDX_META + 65540, 2);
	expect_refused("vhdx", "differencing");

	create("vhdx", 10 << 20, NULL, NULL);
	patch_le64(VHDX_META + 65544, 0);
	expect_refused("vhdx", "virtual size");
	patch_le64(VHDX_META + 65544, 1ull << 50);
	expect_refused("vhdx", "virtual size");

	create("vhdx", 10 << 20, NULL, NULL);
	patch_le32(VHDX_META + 65568, 1024);
	expect_refused("vhdx", "sector sizes");

	create("vhdx", 10 << 20, NULL, NULL);
	patch_le32(VHDX_META + 32 + 16, 1u << 30); /* the first item's offset */
	expect_refused("vhdx", "outside the metadata region");

	create("vhdx", 10 << 20, NULL, NULL);
	patch_le64(VHDX_BAT, (1ull << 40) | 6); /* block 0 at 1 TiB */
	expect_refused("vhdx", "outside the file");
	patch_le64(VHDX_BAT, 7);
	expect_refused("vhdx", "invalid state");

	/* 1 MiB blocks over 64 TiB: a BAT over 64 MiB, refused before allocating it */
	create("vhdx", 10 << 20, "block_size", "1M");
	patch_le64(VHDX_META + 65544, 60ull << 40);
	expect_refused("vhdx", "exceeds the 64 MiB");
}
END_TEST

/* ---- vmdk ---- */

/* Replace @find by @repl (same length) in the embedded descriptor (sector 1). */
static void patch_desc(const char *find, const char *repl)
{
	char d[1025] = {0};
	int fd = open(path, O_RDONLY);
	char *p;

	ck_assert_int_eq(pread(fd, d, 1024, 512), 1024);
	close(fd);
	p = strstr(d, find);
	ck_assert_ptr_nonnull(p);
	ck_assert_uint_eq(strlen(find), strlen(repl));
	patch(512 + (uint64_t)(p - d), repl, strlen(repl));
}

START_TEST(vmdk_roundtrip_and_probe)
{
	create("vmdk", 10 << 20, NULL, NULL);
	ck_assert_str_eq(probe(), "vmdk");
	roundtrip("vmdk", 10 << 20);
	create("vmdk", 10 << 20, "subformat", "streamOptimized");
	ck_assert_str_eq(probe(), "vmdk");
	roundtrip("vmdk", 10 << 20);
}
END_TEST

START_TEST(vmdk_bad_images)
{
	struct block_node *bs;
	uint8_t buf[4096];

	create("vmdk", 10 << 20, NULL, NULL);
	patch_le32(0, 0x44574f43); /* "COWD" */
	expect_refused("vmdk", "VMDK3");
	patch_le32(0, 0x12345678);
	expect_refused("vmdk", "not a VMDK sparse extent");

	create("vmdk", 10 << 20, NULL, NULL);
	patch_le32(44, 1024);
	expect_refused("vmdk", "entries per grain table");

	create("vmdk", 10 << 20, NULL, NULL);
	patch_le64(20, 3);
	expect_refused("vmdk", "grain size 3");
	patch_le64(20, 1u << 20);
	expect_refused("vmdk", "grain size");

	create("vmdk", 10 << 20, NULL, NULL);
	patch_le64(12, 1ull << 41);
	expect_refused("vmdk", "capacity");
	patch_le64(12, 1ull << 40); /* 512 TiB with 64 KiB grains: a 64 MiB GD */
	expect_refused("vmdk", "grain directory of");

	create("vmdk", 10 << 20, NULL, NULL);
	patch_le64(56, 1ull << 30);
	expect_refused("vmdk", "grain directory at sector");

	create("vmdk", 10 << 20, NULL, NULL);
	patch_le64(36, 1ull << 20); /* a 512 MiB descriptor */
	expect_refused("vmdk", "descriptor at");

	create("vmdk", 10 << 20, NULL, NULL);
	patch_desc("\"monolithicSparse\"", "\"vmfs\"            ");
	expect_refused("vmdk", "createType");

	create("vmdk", 10 << 20, NULL, NULL);
	patch_desc("parentCID=ffffffff", "parentCID=12345678");
	expect_refused("vmdk", "parent");

	/* a grain table outside the file */
	create("vmdk", 10 << 20, NULL, NULL);
	{
		int fd = open(path, O_RDONLY);
		uint64_t gd;

		ck_assert_int_eq(pread(fd, &gd, 8, 56), 8);
		close(fd);
		patch_le32(le64toh(gd) * 512, 1u << 30);
	}
	expect_refused("vmdk", "grain table 0");

	/* a grain outside the file: -EIO on access */
	create("vmdk", 10 << 20, NULL, NULL);
	{
		int fd = open(path, O_RDONLY);
		uint64_t gd;
		uint32_t gt;

		ck_assert_int_eq(pread(fd, &gd, 8, 56), 8);
		ck_assert_int_eq(pread(fd, &gt, 4, (off_t)(le64toh(gd) * 512)), 4);
		close(fd);
		patch_le32((uint64_t)le32toh(gt) * 512, 1u << 30);
	}
	bs = open_ok("vmdk", 0);
	ck_assert_int_eq(block_pread(bs, 0, buf, sizeof(buf)), -EIO);
	block_unref(bs);

	/* a compressed grain whose marker or data is garbage: -EIO */
	create("vmdk", 10 << 20, "subformat", "streamOptimized");
	bs = open_ok("vmdk", BLOCK_O_RDWR);
	memset(buf, 0x5a, sizeof(buf));
	ck_assert_int_eq(block_pwrite(bs, 0, buf, sizeof(buf)), 0);
	block_unref(bs);
	patch_le64(128 * 512, 77); /* the first grain's marker names another LBA */
	bs = open_ok("vmdk", 0);
	ck_assert_int_eq(block_pread(bs, 0, buf, sizeof(buf)), -EIO);
	block_unref(bs);
	patch_le64(128 * 512, 0);
	patch_le32(128 * 512 + 8, 1u << 30); /* a 1 GiB compressed size */
	bs = open_ok("vmdk", 0);
	ck_assert_int_eq(block_pread(bs, 0, buf, sizeof(buf)), -EIO);
	block_unref(bs);
	patch_le32(128 * 512 + 8, 100);
	patch(128 * 512 + 12, "garbagegarbage", 14);
	bs = open_ok("vmdk", 0);
	ck_assert_int_eq(block_pread(bs, 0, buf, sizeof(buf)), -EIO);
	block_unref(bs);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("formats");
	TCase *tc = tcase_create("formats");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, qed_roundtrip_and_probe);
	tcase_add_test(tc, qed_bad_headers);
	tcase_add_test(tc, qed_bad_tables);
	tcase_add_test(tc, vpc_roundtrip_and_probe);
	tcase_add_test(tc, vpc_bad_images);
	tcase_add_test(tc, vhdx_roundtrip_and_probe);
	tcase_add_test(tc, vhdx_bad_images);
	tcase_add_test(tc, vmdk_roundtrip_and_probe);
	tcase_add_test(tc, vmdk_bad_images);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);
	return s;
}

#include "tests/unit/check-main.h"
