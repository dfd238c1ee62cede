/* Unit tests for the block core (block/block.c), file protocol and raw format. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/block-int.h"

static char path[256];

static void make_image(uint64_t size)
{
	const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/var/tmp";
	int fd;

	snprintf(path, sizeof(path), "%s/test-block.XXXXXX", dir);
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, (off_t)size), 0);
	close(fd);
}

static void setup(void)
{
	make_image(1 << 20);
}

static void teardown(void)
{
	unlink(path);
}

static struct block_node *open_raw(unsigned flags)
{
	struct block_node *bs = NULL;
	struct error *err = NULL;

	if (block_open(&bs, path, "raw", flags, &err) < 0) {
		ck_abort_msg("open %s: %s", path, err->msg);
	}
	return bs;
}

START_TEST(read_write_roundtrip)
{
	struct block_node *bs = open_raw(BLOCK_O_RDWR);
	char buf[4096], out[4096];
	struct block_stats st;

	ck_assert_uint_eq(block_length(bs), 1 << 20);
	ck_assert_str_eq(block_format(bs), "raw");
	memset(buf, 0xab, sizeof(buf));
	ck_assert_int_eq(block_pwrite(bs, 8192, buf, sizeof(buf)), 0);
	ck_assert_int_eq(block_pread(bs, 8192, out, sizeof(out)), 0);
	ck_assert_int_eq(memcmp(buf, out, sizeof(buf)), 0);
	/* unwritten areas read as zeroes */
	ck_assert_int_eq(block_pread(bs, 0, out, 512), 0);
	ck_assert_int_eq(out[0], 0);
	ck_assert_int_eq(block_flush(bs), 0);
	block_get_stats(bs, &st);
	ck_assert_uint_eq(st.rd_ops, 2);
	ck_assert_uint_eq(st.wr_ops, 1);
	ck_assert_uint_eq(st.rd_bytes, 4096 + 512);
	ck_assert_uint_eq(st.wr_bytes, 4096);
	ck_assert_uint_eq(st.flush_ops, 1);
	block_unref(bs);
}
END_TEST

START_TEST(bounds_and_read_only)
{
	struct block_node *bs = open_raw(BLOCK_O_RDWR);
	char buf[512] = {0};
	struct block_stats st;

	ck_assert_int_eq(block_pread(bs, (1 << 20) - 256, buf, 512), -EINVAL);
	ck_assert_int_eq(block_pwrite(bs, 1 << 20, buf, 1), -EINVAL);
	ck_assert_int_eq(block_pread(bs, UINT64_MAX - 10, buf, 512), -EINVAL);
	ck_assert_int_eq(block_pread(bs, (1 << 20) - 512, buf, 512), 0);
	ck_assert_int_eq(block_write_zeroes(bs, (1 << 20) - 512, 1024, 0), -EINVAL);
	block_get_stats(bs, &st);
	ck_assert_uint_eq(st.rd_ops, 1);
	block_unref(bs);

	bs = open_raw(0);
	ck_assert(block_is_read_only(bs));
	ck_assert_int_eq(block_pwrite(bs, 0, buf, 512), -EPERM);
	ck_assert_int_eq(block_write_zeroes(bs, 0, 512, 0), -EPERM);
	ck_assert_int_eq(block_discard(bs, 0, 512), -EPERM);
	ck_assert_int_eq(block_pread(bs, 0, buf, 512), 0);
	block_unref(bs);
}
END_TEST

START_TEST(too_many_iovecs)
{
	struct block_node *bs = open_raw(BLOCK_O_RDWR);
	static struct iovec iov[1025];
	static char byte[1025];

	for (unsigned i = 0; i < 1025; i++) {
		iov[i] = (struct iovec){&byte[i], 1};
	}
	ck_assert_int_eq(block_preadv(bs, 0, iov, 1025), -EINVAL);
	ck_assert_int_eq(block_preadv(bs, 0, iov, 1024), 0);
	block_unref(bs);
}
END_TEST

START_TEST(refcount)
{
	struct block_node *bs = open_raw(BLOCK_O_RDWR);
	char buf[16];

	ck_assert_ptr_eq(block_ref(bs), bs);
	block_unref(bs);
	/* still open: one reference left */
	ck_assert_int_eq(block_pread(bs, 0, buf, sizeof(buf)), 0);
	block_unref(bs);
	block_unref(NULL);
}
END_TEST

START_TEST(direct_io_unaligned)
{
	struct block_node *bs = NULL;
	struct error *err = NULL;
	char buf[1000], out[3000];
	int r;

	r = block_open(&bs, path, "raw", BLOCK_O_RDWR | BLOCK_O_NOCACHE, &err);
	if (r == -EINVAL) {
		error_free(err);
		return; /* filesystem without O_DIRECT (tmpfs on old kernels) */
	}
	ck_assert_int_eq(r, 0);
	ck_assert_uint_ge(block_alignment(bs), 512);
	memset(out, 0x11, sizeof(out));
	ck_assert_int_eq(block_pwrite(bs, 0, out, sizeof(out)), 0);
	memset(buf, 0x77, sizeof(buf));
	/* unaligned offset, length and buffer: padded by the core */
	ck_assert_int_eq(block_pwrite(bs, 700, buf + 1, 999), 0);
	ck_assert_int_eq(block_pread(bs, 1, out + 1, 2500), 0);
	for (int i = 1; i < 2501; i++) {
		int want = (i >= 700 && i < 1699) ? 0x77 : 0x11;

		ck_assert_msg((unsigned char)out[i] == want, "byte %d is %x", i,
			      (unsigned char)out[i]);
	}
	block_unref(bs);
}
END_TEST

START_TEST(locking)
{
	struct block_node *a = NULL, *b = NULL;
	struct error *err = NULL;
	char pid[32];

	a = open_raw(BLOCK_O_RDWR);
	ck_assert_int_eq(block_open(&b, path, "raw", BLOCK_O_RDWR, &err), -EBUSY);
	snprintf(pid, sizeof(pid), "process %d", (int)getpid());
	ck_assert_msg(strstr(err->msg, path) && strstr(err->msg, pid), "%s", err->msg);
	error_free(err);
	err = NULL;
	/* a reader is refused while a writer holds it */
	ck_assert_int_eq(block_open(&b, path, "raw", 0, &err), -EBUSY);
	error_free(err);
	err = NULL;
	/* tools may opt out */
	ck_assert_int_eq(block_open(&b, path, "raw", BLOCK_O_NO_LOCK, &err), 0);
	block_unref(b);
	block_unref(a);
	/* readers share */
	a = open_raw(0);
	b = open_raw(0);
	ck_assert_int_eq(block_open(&b, path, "raw", BLOCK_O_RDWR, &err), -EBUSY);
	error_free(err);
	block_unref(a);
	block_unref(b);
	/* released on close */
	a = open_raw(BLOCK_O_RDWR);
	block_unref(a);
}
END_TEST

START_TEST(zeroes_discard_status)
{
	struct block_node *bs = open_raw(BLOCK_O_RDWR | BLOCK_O_UNMAP);
	static char buf[65536], out[65536];
	uint64_t pnum, foff;
	unsigned status;

	memset(buf, 0x5a, sizeof(buf));
	ck_assert_int_eq(block_pwrite(bs, 0, buf, sizeof(buf)), 0);
	ck_assert_int_eq(block_flush(bs), 0);
	ck_assert_int_eq(block_get_status(bs, 0, 1 << 20, &pnum, &status, &foff), 0);
	ck_assert(status & BLOCK_STATUS_DATA);
	ck_assert_uint_ge(pnum, 4096);
	ck_assert_uint_eq(foff, 0);
	ck_assert_int_eq(block_write_zeroes(bs, 4096, 8192, 0), 0);
	ck_assert_int_eq(block_pread(bs, 0, out, sizeof(out)), 0);
	ck_assert_int_eq(out[4095], 0x5a);
	ck_assert_int_eq(out[4096], 0);
	ck_assert_int_eq(out[12287], 0);
	ck_assert_int_eq(out[12288], 0x5a);
	ck_assert_int_eq(block_discard(bs, 16384, 16384), 0);
	ck_assert_int_eq(block_write_zeroes(bs, 32768, 4096, BLOCK_ZERO_MAY_UNMAP), 0);
	ck_assert_int_eq(block_pread(bs, 0, out, sizeof(out)), 0);
	ck_assert_int_eq(out[16384], 0);
	ck_assert_int_eq(out[32768], 0);
	ck_assert_int_eq(out[36864], 0x5a);
	/* the tail past the written data is a hole */
	ck_assert_int_eq(block_get_status(bs, 65536, 65536, &pnum, &status, NULL), 0);
	ck_assert(status & BLOCK_STATUS_ZERO);
	ck_assert_uint_eq(pnum, 65536);
	ck_assert_int_eq(block_get_status(bs, 1 << 20, 1, &pnum, &status, NULL), -EINVAL);
	block_unref(bs);
}
END_TEST

START_TEST(resize)
{
	struct block_node *bs = open_raw(BLOCK_O_RDWR);
	struct error *err = NULL;

	ck_assert_int_eq(block_truncate(bs, 2 << 20, &err), 0);
	ck_assert_uint_eq(block_length(bs), 2 << 20);
	block_unref(bs);
	bs = open_raw(0);
	ck_assert_int_eq(block_truncate(bs, 4 << 20, &err), -EPERM);
	ck_assert_ptr_nonnull(strstr(err->msg, "read-only"));
	error_free(err);
	block_unref(bs);
}
END_TEST

START_TEST(json_open_window)
{
	struct block_node *bs = NULL, *whole;
	struct error *err = NULL;
	json_t *opts;
	char buf[16], out[16];

	whole = open_raw(BLOCK_O_RDWR | BLOCK_O_NO_LOCK);
	memcpy(buf, "0123456789abcdef", 16);
	ck_assert_int_eq(block_pwrite(whole, 4096, buf, 16), 0);
	opts = json_pack("{s:s, s:s, s:I, s:I, s:b, s:{s:s, s:s, s:s}}", "driver", "raw",
			 "node-name", "win", "offset", (json_int_t)4096, "size", (json_int_t)8192,
			 "read-only", 1, "file", "driver", "file", "filename", path, "locking",
			 "off");
	if (block_open_json(&bs, opts, &err) < 0) {
		ck_abort_msg("%s", err->msg);
	}
	json_decref(opts);
	ck_assert_uint_eq(block_length(bs), 8192);
	ck_assert_str_eq(block_node_name(bs), "win");
	ck_assert_int_eq(block_pread(bs, 0, out, 16), 0);
	ck_assert_int_eq(memcmp(out, buf, 16), 0);
	ck_assert_int_eq(block_pread(bs, 8192 - 8, out, 16), -EINVAL);
	ck_assert_int_eq(block_pwrite(bs, 0, out, 16), -EPERM);
	block_unref(bs);

	/* unknown keys, bad windows and missing drivers are refused */
	opts = json_pack("{s:s, s:s, s:b}", "driver", "raw", "file", path, "bogus", 1);
	ck_assert_int_eq(block_open_json(&bs, opts, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err->msg, "bogus"));
	error_free(err);
	err = NULL;
	json_decref(opts);
	opts = json_pack("{s:s, s:s, s:I}", "driver", "raw", "file", path, "offset",
			 (json_int_t)(2 << 20));
	ck_assert_int_eq(block_open_json(&bs, opts, &err), -EINVAL);
	error_free(err);
	err = NULL;
	json_decref(opts);
	opts = json_pack("{s:s, s:s}", "driver", "vvfat", "file", path);
	ck_assert_int_eq(block_open_json(&bs, opts, &err), -EINVAL);
	error_free(err);
	json_decref(opts);
	block_unref(whole);
}
END_TEST

START_TEST(open_errors)
{
	struct block_node *bs = NULL;
	struct error *err = NULL;

	ck_assert_int_eq(block_open(&bs, "/nonexistent/x.img", "raw", 0, &err), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err->msg, "/nonexistent/x.img"));
	error_free(err);
	err = NULL;
	ck_assert_int_lt(block_open(&bs, path, NULL, 0, &err), 0);
	error_free(err);
	err = NULL;
	ck_assert_int_eq(block_open(&bs, "/dev/null", "raw", 0, &err), -EINVAL);
	error_free(err);
}
END_TEST

START_TEST(info_and_probe)
{
	struct block_node *bs = open_raw(BLOCK_O_RDWR);
	const char *fmt = NULL;
	json_t *info, *img;
	int fd;

	info = block_info_json(bs);
	ck_assert_str_eq(json_string_value(json_object_get(info, "drv")), "raw");
	ck_assert(json_is_false(json_object_get(info, "ro")));
	img = json_object_get(info, "image");
	ck_assert_int_eq(json_integer_value(json_object_get(img, "virtual-size")), 1 << 20);
	ck_assert_str_eq(json_string_value(json_object_get(img, "filename")), path);
	json_decref(info);
	block_unref(bs);

	ck_assert_int_eq(block_probe_format(path, &fmt, NULL), 0);
	ck_assert_str_eq(fmt, "raw");
	fd = open(path, O_WRONLY);
	/* the magic alone (version 0) is no qcow2 image, as in QEMU's probe */
	ck_assert_int_eq(pwrite(fd, "QFI\xfb", 4, 0), 4);
	ck_assert_int_eq(block_probe_format(path, &fmt, NULL), 0);
	ck_assert_str_eq(fmt, "raw");
	ck_assert_int_eq(pwrite(fd, "QFI\xfb\0\0\0\3", 8, 0), 8);
	close(fd);
	ck_assert_int_eq(block_probe_format(path, &fmt, NULL), 0);
	ck_assert_str_eq(fmt, "qcow2");
}
END_TEST

START_TEST(create_through_driver)
{
	struct error *err = NULL;
	struct block_node *bs = NULL;
	const char *fmt = NULL;
	json_t *o = json_pack("{s:s}", "cluster_size", "4096");

	ck_assert_int_eq(block_create("qcow2", path, 3 << 20, o, &err), 0);
	ck_assert_int_eq(block_probe_format(path, &fmt, NULL), 0);
	ck_assert_str_eq(fmt, "qcow2");
	ck_assert_int_eq(block_open(&bs, path, "qcow2", 0, &err), 0);
	ck_assert_int_eq(block_length(bs), 3 << 20);
	block_unref(bs);
	json_decref(o);

	o = json_pack("{s:s}", "bogus", "1");
	ck_assert_int_eq(block_create("qcow2", path, 1 << 20, o, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err->msg, "bogus"));
	error_free(err);
	err = NULL;
	ck_assert_int_eq(block_create("raw", path, 1 << 20, o, &err), -EINVAL);
	error_free(err);
	err = NULL;
	json_decref(o);
	/* protocols and unknown names are no formats to create */
	ck_assert_int_eq(block_create("file", path, 1 << 20, NULL, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err->msg, "unknown format 'file'"));
	error_free(err);
	err = NULL;
	ck_assert_int_eq(block_create("raw", path, 5 << 20, NULL, &err), 0);
	ck_assert_int_eq(block_probe_format(path, &fmt, NULL), 0);
	ck_assert_str_eq(fmt, "raw");
	ck_assert_int_eq(block_open(&bs, path, "raw", 0, &err), 0);
	ck_assert_int_eq(block_length(bs), 5 << 20);
	block_unref(bs);
}
END_TEST

/* A probed raw image keeps probing as raw (QEMU's protection of block 0). */
START_TEST(probed_raw_sector0)
{
	struct block_node *bs = open_raw(BLOCK_O_RDWR | BLOCK_O_PROBED);
	static char buf[1024];

	memcpy(buf, "QFI\xfb\0\0\0\3", 8); /* qcow2 magic, version 3 */
	ck_assert_int_eq(block_pwrite(bs, 0, buf, 512), -EPERM);
	ck_assert_int_eq(block_pwrite(bs, 0, buf, 1024), -EPERM);
	/* partial writes to the first sector are refused: the probe could not be judged */
	ck_assert_int_eq(block_pwrite(bs, 0, buf + 512, 100), -EINVAL);
	ck_assert_int_eq(block_pwrite(bs, 4, buf, 512), -EINVAL);
	/* the magic elsewhere, or anything else in sector 0, is fine */
	ck_assert_int_eq(block_pwrite(bs, 512, buf, 512), 0);
	ck_assert_int_eq(block_pwrite(bs, 0, buf + 512, 512), 0);
	block_unref(bs);
	/* the same write without the flag: the user named the format */
	bs = open_raw(BLOCK_O_RDWR);
	ck_assert_int_eq(block_pwrite(bs, 0, buf, 512), 0);
	block_unref(bs);
}
END_TEST

/* QEMU's checks, in its words (golden/io-throttle.json has QEMU 7.2's answers). */
START_TEST(throttle_checks)
{
	struct block_throttle_limits l;
	struct error *err = NULL;

	block_throttle_limits_init(&l);
	ck_assert(!block_throttle_enabled(&l));
	ck_assert_int_eq(block_throttle_check(&l, NULL), 0);
	l.bps[0] = 1000;
	l.bps[1] = 5;
	ck_assert_int_eq(block_throttle_check(&l, &err), -EINVAL);
	ck_assert_str_eq(err->msg, "bps/iops/max total values and read/write values cannot be "
				   "used at the same time");
	error_free(TAKE_PTR(err));
	l.bps[1] = 0;
	l.bps[0] = BLOCK_THROTTLE_VALUE_MAX + 1;
	ck_assert_int_eq(block_throttle_check(&l, &err), -EINVAL);
	ck_assert_str_eq(err->msg, "bps/iops/max values must be within [0, 1000000000000000]");
	error_free(TAKE_PTR(err));
	l.bps[0] = 1000;
	l.bps_max[0] = 500;
	ck_assert_int_eq(block_throttle_check(&l, &err), -EINVAL);
	ck_assert_str_eq(err->msg, "bps_max/iops_max cannot be lower than bps/iops");
	error_free(TAKE_PTR(err));
	l.bps_max[0] = 0;
	l.bps_max_length[0] = 5;
	ck_assert_int_eq(block_throttle_check(&l, &err), -EINVAL);
	ck_assert_str_eq(err->msg, "burst length set without burst rate");
	error_free(TAKE_PTR(err));
	l.bps_max[0] = 5000;
	l.bps_max_length[0] = 0;
	ck_assert_int_eq(block_throttle_check(&l, &err), -EINVAL);
	ck_assert_str_eq(err->msg, "the burst length cannot be 0");
	error_free(TAKE_PTR(err));
	l.bps_max[0] = 0;
	l.bps_max_length[0] = 1;
	l.iops_size = 512;
	ck_assert_int_eq(block_throttle_check(&l, &err), -EINVAL);
	ck_assert_str_eq(err->msg, "iops size requires an iops value to be set");
	error_free(TAKE_PTR(err));
	l.iops[2] = 10;
	l.iops_max[0] = 20;
	ck_assert_int_eq(block_throttle_check(&l, &err), -EINVAL);
	ck_assert_str_eq(err->msg, "bps_max/iops_max require corresponding bps/iops values");
	error_free(TAKE_PTR(err));
	l.iops_max[0] = 0;
	ck_assert_int_eq(block_throttle_check(&l, NULL), 0);
	ck_assert(block_throttle_enabled(&l));
}
END_TEST

/*
 * Bytes of @len-byte requests (@write) a throttle admits in @secs of
 * simulated time, each request sent as soon as it may go.
 */
static uint64_t admitted(struct block_throttle *t, bool write, uint64_t len, double secs)
{
	uint64_t now = 1000000000, end = now + (uint64_t)(secs * 1e9), bytes = 0;

	block_throttle_set(t, &t->limits, now);
	for (;;) {
		uint64_t w = block_throttle_wait(t, write, now);

		if (now + w > end) {
			return bytes;
		}
		now += w;
		block_throttle_account(t, write, len);
		bytes += len;
	}
}

/* The rates hold over time; a burst goes at its own rate for its length. */
START_TEST(throttle_rates)
{
	struct block_throttle t = {0};
	const uint64_t mib = 1 << 20;
	uint64_t b;

	/* 1 MiB/s: ten seconds let 10 MiB through, and the first tenth of a second's worth */
	t.limits.bps[0] = mib;
	b = admitted(&t, false, 64 << 10, 10);
	ck_assert_uint_ge(b, 10 * mib);
	ck_assert_uint_le(b, 10 * mib + mib / 10 + (64 << 10));
	/* a write limit leaves reads alone */
	t.limits = (struct block_throttle_limits){.bps = {0, 0, mib}};
	ck_assert_uint_le(admitted(&t, true, 64 << 10, 1), mib + mib / 10 + (64 << 10));
	for (unsigned i = 0; i < 1000; i++) {
		ck_assert_uint_eq(block_throttle_wait(&t, false, t.last_ns), 0);
		block_throttle_account(&t, false, mib);
	}
	/* 100 operations/s, of 8 KiB: a 64 KiB request counts as 8 */
	t.limits = (struct block_throttle_limits){.iops = {100}, .iops_size = 8192};
	b = admitted(&t, true, 4096, 10);
	ck_assert_uint_ge(b / 4096, 1000);
	ck_assert_uint_le(b / 4096, 1011);
	b = admitted(&t, true, 65536, 10);
	ck_assert_uint_ge(b / 65536, 125);
	ck_assert_uint_le(b / 65536, 127);
	/* 1 MiB/s with bursts of 4 MiB/s for 2 s: 8 MiB in the first 2 s, then 1 MiB/s */
	t.limits = (struct block_throttle_limits){
		.bps = {mib}, .bps_max = {4 * mib}, .bps_max_length = {2}};
	b = admitted(&t, false, 64 << 10, 1);
	ck_assert_uint_ge(b, 4 * mib);
	ck_assert_uint_le(b, 4 * mib + mib / 2);
	b = admitted(&t, false, 64 << 10, 12);
	ck_assert_uint_ge(b, 8 * mib + 10 * mib);
	ck_assert_uint_le(b, 8 * mib + 12 * mib + mib / 2);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("block");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, read_write_roundtrip);
	tcase_add_test(tc, bounds_and_read_only);
	tcase_add_test(tc, too_many_iovecs);
	tcase_add_test(tc, refcount);
	tcase_add_test(tc, direct_io_unaligned);
	tcase_add_test(tc, locking);
	tcase_add_test(tc, zeroes_discard_status);
	tcase_add_test(tc, resize);
	tcase_add_test(tc, json_open_window);
	tcase_add_test(tc, open_errors);
	tcase_add_test(tc, info_and_probe);
	tcase_add_test(tc, create_through_driver);
	tcase_add_test(tc, probed_raw_sector0);
	tcase_add_test(tc, throttle_checks);
	tcase_add_test(tc, throttle_rates);
	suite_add_tcase(s, tc);
	return s;
}

#include "check-main.h"
