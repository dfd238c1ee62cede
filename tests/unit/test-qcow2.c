/*
 * Unit tests for the qcow2 driver: the pure math (refcount entry packing,
 * L1 sizing, compressed descriptors, compression round trips), header
 * validation of crafted images (each must fail with its own message and
 * without allocating what the header claims), and a create/open/write/
 * snapshot/check round trip through the block layer on a temporary file.
 */
#include "config.h"

#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/qcow2.h"

START_TEST(refcount_entries)
{
	uint8_t rb[64];

	for (unsigned order = 0; order <= 6; order++) {
		uint64_t max = order == 6 ? UINT64_MAX : (1ull << (1u << order)) - 1;

		memset(rb, 0, sizeof(rb));
		qcow2_set_refcount_entry(rb, 3, order, max);
		ck_assert_uint_eq(qcow2_get_refcount_entry(rb, 3, order), max);
		ck_assert_uint_eq(qcow2_get_refcount_entry(rb, 2, order), 0);
		ck_assert_uint_eq(qcow2_get_refcount_entry(rb, 4, order), 0);
		qcow2_set_refcount_entry(rb, 3, order, 1);
		ck_assert_uint_eq(qcow2_get_refcount_entry(rb, 3, order), 1);
	}
	/* on-disk layout: 16-bit big endian, 1-bit LSB first */
	memset(rb, 0, sizeof(rb));
	qcow2_set_refcount_entry(rb, 1, 4, 0x1234);
	ck_assert_uint_eq(rb[2], 0x12);
	ck_assert_uint_eq(rb[3], 0x34);
	memset(rb, 0, sizeof(rb));
	qcow2_set_refcount_entry(rb, 9, 0, 1);
	ck_assert_uint_eq(rb[1], 0x02);
}
END_TEST

START_TEST(l1_sizing)
{
	/* 64 KiB clusters: one L2 table maps 512 MiB */
	ck_assert_uint_eq(qcow2_l1_size_for(16, 0), 0);
	ck_assert_uint_eq(qcow2_l1_size_for(16, 1), 1);
	ck_assert_uint_eq(qcow2_l1_size_for(16, 512ull << 20), 1);
	ck_assert_uint_eq(qcow2_l1_size_for(16, (512ull << 20) + 1), 2);
	/* 512 B clusters: 64 entries per L2 table, 32 KiB per L1 entry */
	ck_assert_uint_eq(qcow2_l1_size_for(9, 1ull << 30), 32768);
	/* 2 MiB clusters */
	ck_assert_uint_eq(qcow2_l1_size_for(21, 1ull << 40), 2);
}
END_TEST

START_TEST(compressed_descriptor)
{
	struct qcow2_state s = {0};
	uint64_t off, len, entry;

	s.cluster_bits = 16;
	s.csize_shift = 62 - (16 - 8);
	s.csize_mask = (1ull << (16 - 8)) - 1;
	s.coffset_mask = (1ull << s.csize_shift) - 1;
	/* data at 0x10100, 3 additional sectors */
	entry = QCOW2_OFLAG_COMPRESSED | (3ull << s.csize_shift) | 0x10100;
	ck_assert_int_eq(qcow2_l2_entry_type(&s, entry), QCOW2_CLUSTER_COMPRESSED);
	qcow2_compressed_range(&s, entry, &off, &len);
	ck_assert_uint_eq(off, 0x10100);
	ck_assert_uint_eq(len, 4 * 512 - 0x100);
	ck_assert_int_eq(qcow2_l2_entry_type(&s, 0), QCOW2_CLUSTER_UNALLOCATED);
	ck_assert_int_eq(qcow2_l2_entry_type(&s, QCOW2_OFLAG_ZERO), QCOW2_CLUSTER_ZERO_PLAIN);
	ck_assert_int_eq(qcow2_l2_entry_type(&s, 0x20000 | QCOW2_OFLAG_ZERO),
			 QCOW2_CLUSTER_ZERO_ALLOC);
	ck_assert_int_eq(qcow2_l2_entry_type(&s, 0x20000 | QCOW2_OFLAG_COPIED),
			 QCOW2_CLUSTER_NORMAL);
}
END_TEST

START_TEST(compress_roundtrip)
{
	static uint8_t in[65536], out[65536], back[65536 + 512];

	for (size_t i = 0; i < sizeof(in); i++) {
		in[i] = (uint8_t)((i / 1000) % 5 == 0 ? i * 7 : 0);
	}
	for (int type = 0; type <= 1; type++) {
		int64_t n = qcow2_compress(type, out, sizeof(in) - 1, in, sizeof(in));

		ck_assert_int_gt(n, 0);
		ck_assert_int_lt(n, (int64_t)sizeof(in));
		/* trailing garbage after the stream (another cluster's data) is ignored */
		memset(out + n, 0xa5, sizeof(out) - (size_t)n);
		ck_assert_int_eq(qcow2_decompress(type, back, sizeof(in), out, sizeof(out)), 0);
		ck_assert_int_eq(memcmp(in, back, sizeof(in)), 0);
		/* truncated input cannot fill the cluster */
		ck_assert_int_lt(qcow2_decompress(type, back, sizeof(in), out, (size_t)n / 2), 0);
	}
	/* random data does not fit: the writer stores it uncompressed */
	for (size_t i = 0; i < sizeof(in); i++) {
		in[i] = (uint8_t)(rand() >> 3);
	}
	ck_assert_int_eq(qcow2_compress(0, out, sizeof(in) - 1, in, sizeof(in)), -ENOSPC);
	ck_assert_int_eq(qcow2_compress(1, out, sizeof(in) - 1, in, sizeof(in)), -ENOSPC);
}
END_TEST

/* ---- crafted headers ---- */

#define FILE_LEN (1ull << 20)

/* A valid v3 header: 64 KiB clusters, refcount table at 64K, L1 at 192K. */
static void good_header(uint8_t *h)
{
	memset(h, 0, 65536);
	qcow2_put_be32(h, QCOW2_MAGIC);
	qcow2_put_be32(h + 4, 3);
	qcow2_put_be32(h + 20, 16);
	qcow2_put_be64(h + 24, 1ull << 30);
	qcow2_put_be32(h + 36, 2);
	qcow2_put_be64(h + 40, 3 * 65536);
	qcow2_put_be64(h + 48, 65536);
	qcow2_put_be32(h + 56, 1);
	qcow2_put_be32(h + 96, 4);
	qcow2_put_be32(h + 100, 112);
}

static void free_state(struct qcow2_state *s)
{
	for (unsigned i = 0; i < s->n_unknown_exts; i++) {
		free(s->unknown_exts[i].data);
	}
	free(s->unknown_exts);
	free(s->hdr_tail);
	free(s->backing_file);
	free(s->backing_format);
}

static void expect_error(const uint8_t *h, size_t len, const char *msg)
{
	struct qcow2_state s = {0};
	struct error *err = NULL;
	int ret = qcow2_parse_header(&s, h, len, FILE_LEN, &err);

	ck_assert_int_lt(ret, 0);
	ck_assert_ptr_nonnull(err);
	if (!strstr(err->msg, msg)) {
		ck_abort_msg("expected '%s' in '%s'", msg, err->msg);
	}
	error_free(err);
	free_state(&s);
}

static uint8_t hdr[65536];

START_TEST(header_valid)
{
	struct qcow2_state s = {0};
	struct error *err = NULL;

	good_header(hdr);
	ck_assert_int_eq(qcow2_parse_header(&s, hdr, sizeof(hdr), FILE_LEN, &err), 0);
	ck_assert_uint_eq(s.cluster_size, 65536);
	ck_assert_uint_eq(s.refcount_bits, 16);
	ck_assert_uint_eq(s.rb_entries, 32768);
	ck_assert_uint_eq(s.l2_entries, 8192);
	free_state(&s);
}
END_TEST

START_TEST(header_crafted)
{
	good_header(hdr);
	expect_error(hdr, 40, "too small");
	hdr[0] = 'X';
	expect_error(hdr, sizeof(hdr), "bad magic");

	good_header(hdr);
	qcow2_put_be32(hdr + 4, 4);
	expect_error(hdr, sizeof(hdr), "unsupported qcow2 version 4");

	good_header(hdr);
	qcow2_put_be32(hdr + 20, 8);
	expect_error(hdr, sizeof(hdr), "cluster_bits 8 out of range");
	qcow2_put_be32(hdr + 20, 22);
	expect_error(hdr, sizeof(hdr), "cluster_bits 22 out of range");

	good_header(hdr);
	qcow2_put_be32(hdr + 96, 7);
	expect_error(hdr, sizeof(hdr), "refcount_order 7 out of range");

	/* a huge L1 table is refused before anything is allocated for it */
	good_header(hdr);
	qcow2_put_be32(hdr + 36, 0xffffffffu);
	expect_error(hdr, sizeof(hdr), "L1 table too large");

	good_header(hdr);
	qcow2_put_be64(hdr + 24, 1ull << 40);
	expect_error(hdr, sizeof(hdr), "L1 table too small for the virtual size");

	good_header(hdr);
	qcow2_put_be64(hdr + 40, FILE_LEN);
	expect_error(hdr, sizeof(hdr), "L1 table");
	qcow2_put_be64(hdr + 40, 3 * 65536 + 8);
	expect_error(hdr, sizeof(hdr), "not cluster aligned");

	good_header(hdr);
	qcow2_put_be32(hdr + 56, 0x10000000);
	expect_error(hdr, sizeof(hdr), "refcount table too large");
	qcow2_put_be32(hdr + 56, 4);
	qcow2_put_be64(hdr + 48, FILE_LEN - 65536);
	expect_error(hdr, sizeof(hdr), "refcount table");
	qcow2_put_be32(hdr + 56, 0);
	expect_error(hdr, sizeof(hdr), "no refcount table");

	good_header(hdr);
	qcow2_put_be32(hdr + 60, 0x7fffffff);
	qcow2_put_be64(hdr + 64, 4 * 65536);
	expect_error(hdr, sizeof(hdr), "too many snapshots");
	qcow2_put_be32(hdr + 60, 60000);
	expect_error(hdr, sizeof(hdr), "snapshot table");

	good_header(hdr);
	qcow2_put_be64(hdr + 72, 1ull << 4);
	expect_error(hdr, sizeof(hdr), "extended L2 entries");
	qcow2_put_be64(hdr + 72, 1ull << 40);
	expect_error(hdr, sizeof(hdr), "bit 40");

	good_header(hdr);
	qcow2_put_be32(hdr + 32, 2);
	expect_error(hdr, sizeof(hdr), "encrypted");

	good_header(hdr);
	hdr[104] = 1; /* zstd without the incompatible bit */
	expect_error(hdr, sizeof(hdr), "does not match");
	qcow2_put_be64(hdr + 72, QCOW2_INCOMPAT_COMPRESSION);
	hdr[104] = 9;
	expect_error(hdr, sizeof(hdr), "unknown compression type 9");

	good_header(hdr);
	qcow2_put_be32(hdr + 100, 100);
	expect_error(hdr, sizeof(hdr), "invalid header_length");

	/* backing file name: too long, outside the cluster */
	good_header(hdr);
	qcow2_put_be64(hdr + 8, 1024);
	qcow2_put_be32(hdr + 16, 5000);
	expect_error(hdr, sizeof(hdr), "backing file name too long");
	qcow2_put_be64(hdr + 8, 65530);
	qcow2_put_be32(hdr + 16, 100);
	expect_error(hdr, sizeof(hdr), "outside the header cluster");

	/* an extension whose length runs past the cluster */
	good_header(hdr);
	qcow2_put_be32(hdr + 112, 0x12345678);
	qcow2_put_be32(hdr + 116, 0x7fffffff);
	expect_error(hdr, sizeof(hdr), "runs past the header cluster");
}
END_TEST

START_TEST(header_extensions_kept)
{
	struct qcow2_state s = {0};
	struct error *err = NULL;

	good_header(hdr);
	qcow2_put_be32(hdr + 112, QCOW2_EXT_BACKING_FORMAT);
	qcow2_put_be32(hdr + 116, 3);
	memcpy(hdr + 120, "raw", 3);
	qcow2_put_be32(hdr + 128, 0xabcdef01);
	qcow2_put_be32(hdr + 132, 4);
	memcpy(hdr + 136, "abcd", 4);
	memcpy(hdr + 200, "base.img", 8);
	qcow2_put_be64(hdr + 8, 200);
	qcow2_put_be32(hdr + 16, 8);
	ck_assert_int_eq(qcow2_parse_header(&s, hdr, sizeof(hdr), FILE_LEN, &err), 0);
	ck_assert_str_eq(s.backing_format, "raw");
	ck_assert_str_eq(s.backing_file, "base.img");
	ck_assert_uint_eq(s.n_unknown_exts, 1);
	ck_assert_uint_eq(s.unknown_exts[0].type, 0xabcdef01);
	ck_assert_int_eq(memcmp(s.unknown_exts[0].data, "abcd", 4), 0);
	free_state(&s);
}
END_TEST

/* ---- through the block layer ---- */

static char tmpl[64];

static void make_tmp(void)
{
	int fd;

	strcpy(tmpl, "/tmp/test-qcow2.XXXXXX");
	fd = mkstemp(tmpl);
	ck_assert_int_ge(fd, 0);
	close(fd);
}

START_TEST(roundtrip)
{
	struct qcow2_create_opts o = {.cluster_size = 4096};
	struct block_node *bs = NULL;
	struct block_check_result r = {0};
	struct error *err = NULL;
	static uint8_t buf[3 * 4096], back[3 * 4096];

	make_tmp();
	ck_assert_int_eq(qcow2_create(tmpl, 1 << 20, &o, &err), 0);
	ck_assert_int_eq(block_open(&bs, tmpl, "qcow2", BLOCK_O_RDWR | BLOCK_O_UNMAP, &err), 0);
	ck_assert_uint_eq(block_length(bs), 1 << 20);
	memset(buf, 0x5a, sizeof(buf));
	/* unaligned, spanning three clusters: COW of the partial ones */
	ck_assert_int_eq(block_pwrite(bs, 1536, buf, 2 * 4096), 0);
	ck_assert_int_eq(block_pread(bs, 0, back, sizeof(back)), 0);
	for (size_t i = 0; i < sizeof(back); i++) {
		ck_assert_uint_eq(back[i], i >= 1536 && i < 1536 + 8192 ? 0x5a : 0);
	}
	ck_assert_int_eq(block_snapshot_create(bs, "s1", &err), 0);
	memset(buf, 0x33, 4096);
	ck_assert_int_eq(block_pwrite(bs, 4096, buf, 4096), 0);
	ck_assert_int_eq(block_write_zeroes(bs, 8192, 4096, BLOCK_ZERO_MAY_UNMAP), 0);
	ck_assert_int_eq(bs->drv->check(bs, &r, 0), 0);
	ck_assert_uint_eq(r.corruptions, 0);
	ck_assert_uint_eq(r.leaks, 0);
	ck_assert_int_eq(block_snapshot_apply(bs, "s1", &err), 0);
	ck_assert_int_eq(block_pread(bs, 4096, back, 4096), 0);
	ck_assert_uint_eq(back[0], 0x5a);
	ck_assert_int_eq(block_snapshot_delete(bs, "s1", &err), 0);
	ck_assert_int_eq(block_snapshot_delete(bs, "s1", &err), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err->msg, "not found"));
	error_free(err);
	err = NULL;
	ck_assert_int_eq(bs->drv->check(bs, &r, 0), 0);
	ck_assert_uint_eq(r.corruptions + r.leaks, 0);
	/* grow */
	ck_assert_int_eq(block_truncate(bs, 64 << 20, &err), 0);
	ck_assert_int_eq(block_pwrite(bs, (64 << 20) - 4096, buf, 4096), 0);
	block_unref(bs);
	unlink(tmpl);
}
END_TEST

/* Patch @len bytes at @off of the image file. */
static void patch(uint64_t off, const void *data, size_t len)
{
	int fd = open(tmpl, O_WRONLY);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, data, len, (off_t)off), (ssize_t)len);
	close(fd);
}

START_TEST(open_crafted)
{
	struct qcow2_create_opts o = {.cluster_size = 65536};
	struct block_node *bs = NULL;
	struct error *err = NULL;
	uint8_t v[8];

	make_tmp();
	ck_assert_int_eq(qcow2_create(tmpl, 1 << 30, &o, &err), 0);
	/* L1 size past the end of the file */
	qcow2_put_be32(v, 1u << 20);
	patch(36, v, 4);
	ck_assert_int_lt(block_open(&bs, tmpl, "qcow2", 0, &err), 0);
	ck_assert_ptr_nonnull(strstr(err->msg, "L1 table"));
	error_free(err);
	err = NULL;

	/* a snapshot entry claiming a huge extra data area */
	ck_assert_int_eq(qcow2_create(tmpl, 1 << 30, &o, &err), 0);
	{
		uint8_t sn[40] = {0};

		qcow2_put_be32(sn + 36, 0x7fffffff);
		patch(4 * 65536, sn, sizeof(sn));
		qcow2_put_be32(v, 1);
		patch(60, v, 4);
		qcow2_put_be64(v, 4 * 65536);
		patch(64, v, 8);
	}
	ck_assert_int_lt(block_open(&bs, tmpl, "qcow2", 0, &err), 0);
	ck_assert_ptr_nonnull(strstr(err->msg, "extra data"));
	error_free(err);
	err = NULL;

	/* an L1 entry pointing past the end of the image marks it corrupt, refuses I/O */
	ck_assert_int_eq(qcow2_create(tmpl, 1 << 30, &o, &err), 0);
	qcow2_put_be64(v, (1ull << 40) | QCOW2_OFLAG_COPIED);
	patch(3 * 65536, v, 8);
	ck_assert_int_eq(block_open(&bs, tmpl, "qcow2", BLOCK_O_RDWR, &err), 0);
	{
		uint8_t b[512];

		ck_assert_int_eq(block_pwrite(bs, 0, b, sizeof(b)), -EIO);
		ck_assert_int_eq(block_pread(bs, 0, b, sizeof(b)), -EIO);
		/* later writes elsewhere are refused too */
		ck_assert_int_eq(block_pwrite(bs, 900 << 20, b, sizeof(b)), -EIO);
	}
	block_unref(bs);
	bs = NULL;
	{
		uint8_t h[80];
		int fd = open(tmpl, O_RDONLY);

		ck_assert_int_eq(pread(fd, h, sizeof(h), 0), (ssize_t)sizeof(h));
		close(fd);
		ck_assert(qcow2_be64(h + 72) & QCOW2_INCOMPAT_CORRUPT);
	}

	/* a refcount block past the end of the image: counting from it would hand
	 * out clusters that are in use, so allocating writes are refused */
	ck_assert_int_eq(qcow2_create(tmpl, 1 << 30, &o, &err), 0);
	qcow2_put_be64(v, 1ull << 30);
	patch(65536, v, 8);
	ck_assert_int_eq(block_open(&bs, tmpl, "qcow2", BLOCK_O_RDWR, &err), 0);
	{
		uint8_t b[512] = {0};

		ck_assert_int_eq(block_pwrite(bs, 0, b, sizeof(b)), -EIO);
		ck_assert_int_eq(block_pread(bs, 0, b, sizeof(b)), 0);
	}
	block_unref(bs);
	bs = NULL;
	unlink(tmpl);
}
END_TEST

/* ---- persistent dirty bitmaps ---- */

static int bitmap_do(struct block_node *bs, enum block_bitmap_action a, const char *name,
		     const char *src, struct error **err)
{
	struct block_bitmap_req r = {.action = a, .name = name, .src = bs, .src_name = src};

	return block_bitmap(bs, &r, err);
}

/* Offsets of the bitmaps extension's data and of the directory in the image. */
static void bitmap_locations(uint64_t *ext_off, uint64_t *dir_off)
{
	uint8_t h[65536];
	int fd = open(tmpl, O_RDONLY);

	ck_assert_int_eq(pread(fd, h, sizeof(h), 0), (ssize_t)sizeof(h));
	close(fd);
	for (size_t p = qcow2_be32(h + 100); p + 8 <= sizeof(h);
	     p += 8 + ((qcow2_be32(h + p + 4) + 7) & ~7u)) {
		if (qcow2_be32(h + p) == QCOW2_EXT_BITMAPS) {
			*ext_off = p + 8;
			*dir_off = qcow2_be64(h + p + 8 + 16);
			return;
		}
		ck_assert_uint_ne(qcow2_be32(h + p), 0);
	}
	ck_abort_msg("no bitmaps extension");
}

/* A 1 GiB image with bitmaps "a" (64 KiB granularity) and "b". */
static void bitmap_image(void)
{
	struct qcow2_create_opts o = {.cluster_size = 65536};
	struct block_node *bs = NULL;
	struct error *err = NULL;

	ck_assert_int_eq(qcow2_create(tmpl, 1 << 30, &o, &err), 0);
	ck_assert_int_eq(block_open(&bs, tmpl, "qcow2", BLOCK_O_RDWR | BLOCK_O_BITMAPS, &err), 0);
	ck_assert_int_eq(bitmap_do(bs, BLOCK_BITMAP_ADD, "a", NULL, &err), 0);
	ck_assert_int_eq(bitmap_do(bs, BLOCK_BITMAP_ADD, "b", NULL, &err), 0);
	block_unref(bs);
}

/* Opening read-only must fail with @msg in the error. */
static void bitmap_open_fails(const char *msg)
{
	struct block_node *bs = NULL;
	struct error *err = NULL;

	ck_assert_int_lt(block_open(&bs, tmpl, "qcow2", 0, &err), 0);
	if (!strstr(err->msg, msg)) {
		ck_abort_msg("expected '%s' in '%s'", msg, err->msg);
	}
	error_free(err);
}

START_TEST(bitmaps_roundtrip)
{
	struct block_node *bs = NULL;
	struct block_check_result r = {0};
	struct block_bitmap_data d = {0};
	struct error *err = NULL;

	make_tmp();
	bitmap_image();
	ck_assert_int_eq(block_open(&bs, tmpl, "qcow2", BLOCK_O_RDWR | BLOCK_O_BITMAPS, &err), 0);
	ck_assert_int_eq(bitmap_do(bs, BLOCK_BITMAP_ADD, "a", NULL, &err), -EEXIST);
	ck_assert_str_eq(err->msg, "Bitmap already exists: a");
	error_free(err);
	err = NULL;
	ck_assert_int_eq(bitmap_do(bs, BLOCK_BITMAP_DISABLE, "a", NULL, &err), 0);
	ck_assert_int_eq(bitmap_do(bs, BLOCK_BITMAP_MERGE, "a", "b", &err), 0);
	ck_assert_int_eq(bitmap_do(bs, BLOCK_BITMAP_CLEAR, "b", NULL, &err), 0);
	ck_assert_int_eq(bitmap_do(bs, BLOCK_BITMAP_REMOVE, "b", NULL, &err), 0);
	ck_assert_int_eq(bitmap_do(bs, BLOCK_BITMAP_REMOVE, "b", NULL, &err), -ENOENT);
	ck_assert_str_eq(err->msg, "Dirty bitmap 'b' not found");
	error_free(err);
	err = NULL;
	ck_assert_int_eq(block_bitmap_read(bs, "a", &d, &err), 0);
	ck_assert_uint_eq(d.granularity, 65536);
	ck_assert_uint_eq(d.size, 1 << 30);
	for (size_t i = 0; i < (1u << 30) / 65536 / 8; i++) {
		ck_assert_uint_eq(d.bits[i], 0);
	}
	free(d.bits);
	ck_assert_int_eq(bs->drv->check(bs, &r, 0), 0);
	ck_assert_uint_eq(r.corruptions + r.leaks, 0);
	ck_assert_int_eq(bitmap_do(bs, BLOCK_BITMAP_REMOVE, "a", NULL, &err), 0);
	ck_assert_int_eq(bs->drv->check(bs, &r, 0), 0);
	ck_assert_uint_eq(r.corruptions + r.leaks, 0);
	block_unref(bs);
	unlink(tmpl);
}
END_TEST

/* Hostile bitmap directories and tables: errors, never a crash or a huge allocation. */
START_TEST(bitmaps_crafted)
{
	struct block_node *bs = NULL;
	struct error *err = NULL;
	uint64_t ext, dir;
	uint8_t v[8];

	make_tmp();
	static const struct {
		int where; /* 0: extension data, 1: first directory entry */
		unsigned off, len;
		uint64_t val;
		const char *msg;
	} cases[] = {
		{0, 0, 4, 0, "zero bitmaps"},
		{0, 0, 4, 70000, "exceeding"},
		{0, 4, 4, 1, "Reserved field"},
		{0, 8, 8, 1ull << 40, "directory size"},
		{0, 8, 8, 8, "directory size"},
		{0, 16, 8, 1ull << 40, "directory offset"},
		{0, 16, 8, 65536 + 8, "directory offset"},
		{0, 0, 4, 3, "directory size"},
		{1, 0, 8, 1ull << 40, "constraints"},
		{1, 0, 8, 0, "constraints"},
		{1, 8, 4, 0x7fffffff, "constraints"},
		{1, 12, 4, 0x80, "constraints"},
		{1, 16, 1, 2, "constraints"},
		{1, 17, 1, 40, "constraints"},
		{1, 17, 1, 8, "constraints"},
		{1, 18, 2, 0xffff, "invalid name"},
		{1, 18, 2, 48, "truncated"},
		{1, 18, 2, 40, "NUL in the name"},
		{1, 20, 4, 0xffffffff, "extra data"},
		{1, 20, 4, 8, "extra data is not supported"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bitmap_image();
		bitmap_locations(&ext, &dir);
		for (unsigned k = 0; k < cases[i].len; k++) {
			v[k] = (uint8_t)(cases[i].val >> (8 * (cases[i].len - 1 - k)));
		}
		patch((cases[i].where ? dir : ext) + cases[i].off, v, cases[i].len);
		bitmap_open_fails(cases[i].msg);
	}

	/* a table entry past the end of the file: the merge fails, the remove works */
	bitmap_image();
	bitmap_locations(&ext, &dir);
	{
		uint8_t e[8];
		uint64_t table;
		int fd = open(tmpl, O_RDONLY);

		ck_assert_int_eq(pread(fd, e, 8, (off_t)dir), 8);
		close(fd);
		table = qcow2_be64(e);
		qcow2_put_be64(v, 1ull << 40);
		patch(table, v, 8);
	}
	ck_assert_int_eq(block_open(&bs, tmpl, "qcow2", BLOCK_O_RDWR | BLOCK_O_BITMAPS, &err), 0);
	ck_assert_int_lt(bitmap_do(bs, BLOCK_BITMAP_MERGE, "b", "a", &err), 0);
	error_free(err);
	err = NULL;
	ck_assert_int_lt(bitmap_do(bs, BLOCK_BITMAP_CLEAR, "a", NULL, &err), 0);
	error_free(err);
	err = NULL;
	ck_assert_int_eq(bitmap_do(bs, BLOCK_BITMAP_REMOVE, "a", NULL, &err), 0);
	ck_assert_int_eq(bitmap_do(bs, BLOCK_BITMAP_MERGE, "b", "b", &err), 0);
	block_unref(bs);

	/* in use (left by a crashed writer): not usable, but removable */
	bitmap_image();
	bitmap_locations(&ext, &dir);
	qcow2_put_be32(v, QCOW2_BME_IN_USE | QCOW2_BME_AUTO);
	patch(dir + 12, v, 4);
	ck_assert_int_eq(block_open(&bs, tmpl, "qcow2", BLOCK_O_RDWR | BLOCK_O_BITMAPS, &err), 0);
	ck_assert_int_eq(bitmap_do(bs, BLOCK_BITMAP_ENABLE, "a", NULL, &err), -EBUSY);
	ck_assert_ptr_nonnull(strstr(err->msg, "inconsistent"));
	error_free(err);
	err = NULL;
	ck_assert_int_eq(bitmap_do(bs, BLOCK_BITMAP_REMOVE, "a", NULL, &err), 0);
	block_unref(bs);

	/* a stale extension (bit 0 clear) of another length is replaced by a new one */
	{
		struct qcow2_create_opts o = {.cluster_size = 65536};
		struct block_bitmap_data d = {0};
		uint8_t x[24] = {0};

		ck_assert_int_eq(qcow2_create(tmpl, 1 << 20, &o, &err), 0);
		qcow2_put_be32(x, QCOW2_EXT_BITMAPS);
		qcow2_put_be32(x + 4, 8);
		memset(x + 8, 0xee, 8);
		patch(112, x, sizeof(x)); /* then the end marker */
		ck_assert_int_eq(
			block_open(&bs, tmpl, "qcow2", BLOCK_O_RDWR | BLOCK_O_BITMAPS, &err), 0);
		ck_assert_int_eq(bitmap_do(bs, BLOCK_BITMAP_ADD, "x", NULL, &err), 0);
		block_unref(bs);
		ck_assert_int_eq(block_open(&bs, tmpl, "qcow2", 0, &err), 0);
		ck_assert_int_eq(block_bitmap_read(bs, "x", &d, &err), 0);
		free(d.bits);
		block_unref(bs);
	}

	/* a read-write open without BLOCK_O_BITMAPS marks the bitmaps stale */
	bitmap_image();
	ck_assert_int_eq(block_open(&bs, tmpl, "qcow2", BLOCK_O_RDWR, &err), 0);
	block_unref(bs);
	{
		uint8_t h[96];
		int fd = open(tmpl, O_RDONLY);

		ck_assert_int_eq(pread(fd, h, sizeof(h), 0), (ssize_t)sizeof(h));
		close(fd);
		ck_assert_uint_eq(qcow2_be64(h + 88) & QCOW2_AUTOCLEAR_BITMAPS, 0);
	}
	unlink(tmpl);
}
END_TEST

/* An extension we do not know survives a header rewrite (here: a resize). */
START_TEST(unknown_extension_kept)
{
	struct qcow2_create_opts o = {.cluster_size = 65536, .backing_file = NULL};
	struct block_node *bs = NULL;
	struct error *err = NULL;
	uint8_t ext[24] = {0}, h[4096];
	int fd;
	bool found = false;

	make_tmp();
	ck_assert_int_eq(qcow2_create(tmpl, 1 << 20, &o, &err), 0);
	qcow2_put_be32(ext, 0x12345678);
	qcow2_put_be32(ext + 4, 5);
	memcpy(ext + 8, "abcde", 5);
	/* ext + 16..24: the end marker */
	patch(112, ext, sizeof(ext));
	ck_assert_int_eq(block_open(&bs, tmpl, "qcow2", BLOCK_O_RDWR, &err), 0);
	ck_assert_int_eq(block_truncate(bs, 2 << 20, &err), 0);
	block_unref(bs);
	fd = open(tmpl, O_RDONLY);
	ck_assert_int_eq(pread(fd, h, sizeof(h), 0), (ssize_t)sizeof(h));
	close(fd);
	ck_assert_uint_eq(qcow2_be64(h + 24), 2 << 20);
	for (size_t p = 112; p + 13 <= sizeof(h); p += 8) {
		if (qcow2_be32(h + p) == 0x12345678 && qcow2_be32(h + p + 4) == 5 &&
		    !memcmp(h + p + 8, "abcde", 5)) {
			found = true;
		}
	}
	ck_assert(found);
	unlink(tmpl);
}
END_TEST

START_TEST(create_options)
{
	struct qcow2_create_opts o = {0};
	struct error *err = NULL;

	make_tmp();
	o.cluster_size = 1000;
	ck_assert_int_eq(qcow2_create(tmpl, 1 << 20, &o, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err->msg, "cluster size 1000"));
	error_free(err);
	err = NULL;
	o.cluster_size = 0;
	o.version = 2;
	o.lazy_refcounts = true;
	ck_assert_int_eq(qcow2_create(tmpl, 1 << 20, &o, &err), -EINVAL);
	error_free(err);
	err = NULL;
	o.lazy_refcounts = false;
	o.refcount_bits = 3;
	ck_assert_int_eq(qcow2_create(tmpl, 1 << 20, &o, &err), -EINVAL);
	error_free(err);
	err = NULL;
	o = (struct qcow2_create_opts){.cluster_size = 512};
	ck_assert_int_eq(qcow2_create(tmpl, 1ull << 60, &o, &err), -EFBIG);
	error_free(err);
	unlink(tmpl);
}
END_TEST

/*
 * Random damage to the metadata of a small image (header, refcount table
 * and block, L1 and L2 tables, snapshot table): opening, reading, writing,
 * snapshotting and checking must fail cleanly or succeed, never crash or
 * hang. Under ASan this also catches out-of-bounds use of hostile values.
 */
START_TEST(mutated_metadata)
{
	struct qcow2_create_opts o = {.cluster_size = 4096};
	struct block_node *bs = NULL;
	struct error *err = NULL;
	static uint8_t pristine[64 * 1024], img[64 * 1024], buf[16384];
	uint64_t seed = 12345, len;
	int fd;

	make_tmp();
	ck_assert_int_eq(qcow2_create(tmpl, 1 << 20, &o, &err), 0);
	ck_assert_int_eq(block_open(&bs, tmpl, "qcow2", BLOCK_O_RDWR, &err), 0);
	memset(buf, 0x6b, sizeof(buf));
	ck_assert_int_eq(block_pwrite(bs, 0, buf, sizeof(buf)), 0);
	ck_assert_int_eq(block_snapshot_create(bs, "s", &err), 0);
	ck_assert_int_eq(block_pwrite(bs, 8192, buf, 4096), 0);
	block_unref(bs);
	bs = NULL;
	fd = open(tmpl, O_RDONLY);
	len = (uint64_t)pread(fd, pristine, sizeof(pristine), 0);
	close(fd);
	ck_assert_uint_gt(len, 8 * 4096);

	for (int iter = 0; iter < 300; iter++) {
		struct block_check_result r = {0};
		int nflips = 1 + (int)(seed % 4);

		memcpy(img, pristine, len);
		for (int f = 0; f < nflips; f++) {
			uint64_t pos;

			seed = seed * 6364136223846793005ull + 1442695040888963407ull;
			/* mostly the header and the first metadata clusters */
			pos = (seed >> 33) % (seed & 1 ? 128 : len);
			img[pos] ^= (uint8_t)(1u << ((seed >> 20) % 8));
			if ((seed >> 40) % 5 == 0) {
				img[pos] = 0xff;
			}
		}
		fd = open(tmpl, O_WRONLY | O_TRUNC);
		ck_assert_int_eq(pwrite(fd, img, len, 0), (ssize_t)len);
		close(fd);
		if (block_open(&bs, tmpl, "qcow2", BLOCK_O_RDWR | BLOCK_O_NO_BACKING, &err) < 0) {
			error_free(err);
			err = NULL;
			continue;
		}
		for (uint64_t off = 0; off < block_length(bs) && off < (1 << 20); off += 16384) {
			block_pread(bs, off, buf, MIN(sizeof(buf), block_length(bs) - off));
		}
		if (block_length(bs) >= 65536) {
			block_pwrite(bs, 4096, buf, 4096);
			block_write_zeroes(bs, 0, 4096, 0);
		}
		bs->drv->check(bs, &r, 0);
		if (block_snapshot_apply(bs, "s", &err) < 0) {
			error_free(err);
			err = NULL;
		}
		block_unref(bs);
		bs = NULL;
	}
	unlink(tmpl);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("qcow2");
	TCase *tc = tcase_create("math");

	tcase_add_test(tc, refcount_entries);
	tcase_add_test(tc, l1_sizing);
	tcase_add_test(tc, compressed_descriptor);
	tcase_add_test(tc, compress_roundtrip);
	suite_add_tcase(s, tc);
	tc = tcase_create("header");
	tcase_add_test(tc, header_valid);
	tcase_add_test(tc, header_crafted);
	tcase_add_test(tc, header_extensions_kept);
	suite_add_tcase(s, tc);
	tc = tcase_create("image");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, roundtrip);
	tcase_add_test(tc, open_crafted);
	tcase_add_test(tc, create_options);
	tcase_add_test(tc, unknown_extension_kept);
	tcase_add_test(tc, mutated_metadata);
	tcase_add_test(tc, bitmaps_roundtrip);
	tcase_add_test(tc, bitmaps_crafted);
	suite_add_tcase(s, tc);
	return s;
}

#include "check-main.h"
