/*
 * Unit tests for changing the block graph under I/O (block/graph.c and the
 * drain gate of block.c/aio.c): a drained node holds asynchronous requests
 * and releases them, write tracking, reopening with the image lock handed
 * over, inserting an overlay, setting a backing node, the allocation query
 * and the active-commit pivot, all on real qcow2 files.
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/block-int.h"
#include "strdup-fail.h"
#include "tests/unit/scratch-dir.h"

#define SIZE (1u << 20)

static char dir[256];

static void scratch_setup(void)
{
	scratch_make("test-block-graph");
}

static void setup(void)
{
	snprintf(dir, sizeof(dir), "%s/t.XXXXXX", scratch);
	ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
}

static const char *img(const char *name)
{
	static char p[4][320];
	static unsigned n;
	char *r = p[n++ % 4];

	snprintf(r, 320, "%s/%s", dir, name);
	return r;
}

static struct block_node *new_qcow2(const char *name, unsigned flags, uint8_t fill)
{
	struct block_node *bs = NULL;
	struct error *err = NULL;
	static uint8_t buf[65536];

	ck_assert_int_eq(block_create("qcow2", img(name), SIZE, NULL, &err), 0);
	ck_assert_int_eq(block_open(&bs, img(name), "qcow2", BLOCK_O_RDWR, &err), 0);
	if (fill) {
		memset(buf, fill, sizeof(buf));
		ck_assert_int_eq(block_pwrite(bs, 0, buf, sizeof(buf)), 0);
	}
	if (!(flags & BLOCK_O_RDWR)) {
		ck_assert_int_eq(block_reopen(bs, false, &err), 0);
	}
	return bs;
}

static uint8_t byte_at(struct block_node *bs, uint64_t off)
{
	uint8_t b[512];

	ck_assert_int_eq(block_pread(bs, off & ~511ull, b, sizeof(b)), 0);
	return b[off & 511];
}

/* ---- drain: an asynchronous request waits for block_drain_end() ---- */

struct drain_test {
	struct block_node *bs;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int stage; /* 1: drained; 2: release now; 3: released */
};

static void *drainer(void *arg)
{
	struct drain_test *t = arg;

	block_drain_begin(t->bs);
	pthread_mutex_lock(&t->lock);
	t->stage = 1;
	pthread_cond_broadcast(&t->cond);
	while (t->stage < 2) {
		pthread_cond_wait(&t->cond, &t->lock);
	}
	pthread_mutex_unlock(&t->lock);
	/* the drainer's own I/O passes */
	ck_assert_int_eq(byte_at(t->bs, 0), 0xaa);
	block_drain_end(t->bs);
	return NULL;
}

static void on_done(void *opaque, int ret)
{
	int *r = opaque;

	*r = ret == 0 ? 1 : ret;
}

START_TEST(drain_holds_async_requests)
{
	struct event_base *base = event_base_new();
	struct block_aio_ctx *ctx = NULL;
	struct drain_test t = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
	static uint8_t data[4096] __attribute__((aligned(4096)));
	struct iovec iov = {data, sizeof(data)};
	pthread_t th;
	int done = 0;

	t.bs = new_qcow2("a.qcow2", BLOCK_O_RDWR, 0xaa);
	ck_assert_int_eq(block_aio_ctx_new(base, &ctx, NULL), 0);
	ck_assert_int_eq(pthread_create(&th, NULL, drainer, &t), 0);
	pthread_mutex_lock(&t.lock);
	while (t.stage < 1) {
		pthread_cond_wait(&t.cond, &t.lock);
	}
	pthread_mutex_unlock(&t.lock);

	memset(data, 0x55, sizeof(data));
	ck_assert_int_eq(
		block_aio_submit(t.bs, ctx, BLOCK_OP_WRITE, 8192, &iov, 1, 0, 0, on_done, &done),
		0);
	for (int i = 0; i < 50; i++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		usleep(2000);
	}
	ck_assert_int_eq(done, 0); /* held while drained */

	pthread_mutex_lock(&t.lock);
	t.stage = 2;
	pthread_cond_broadcast(&t.cond);
	pthread_mutex_unlock(&t.lock);
	pthread_join(th, NULL);
	for (int i = 0; i < 5000 && !done; i++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		usleep(1000);
	}
	ck_assert_int_eq(done, 1);
	ck_assert_int_eq(byte_at(t.bs, 8192), 0x55);
	block_aio_ctx_free(ctx);
	block_unref(t.bs);
	event_base_free(base);
}
END_TEST

START_TEST(dirty_tracking)
{
	struct block_node *bs = new_qcow2("d.qcow2", BLOCK_O_RDWR, 0);
	static uint8_t buf[65536] = {1};
	uint64_t off, len;

	ck_assert_int_eq(block_dirty_start(bs, 65536, NULL), 0);
	ck_assert(!block_dirty_take(bs, 1 << 20, &off, &len));
	ck_assert_int_eq(block_pwrite(bs, 70000, buf, 100), 0);
	ck_assert_int_eq(block_pwrite(bs, 3 * 65536 + 10, buf, 65536), 0);
	ck_assert_int_eq(block_pread(bs, 10 * 65536, buf, 512), 0); /* reads do not count */
	ck_assert_uint_eq(block_dirty_bytes(bs), 3 * 65536);
	ck_assert(block_dirty_take(bs, 1 << 20, &off, &len));
	ck_assert_uint_eq(off, 65536);
	ck_assert_uint_eq(len, 65536);
	ck_assert(block_dirty_take(bs, 65536, &off, &len)); /* at most @max */
	ck_assert_uint_eq(off, 3 * 65536);
	ck_assert_uint_eq(len, 65536);
	ck_assert(block_dirty_take(bs, 1 << 20, &off, &len));
	ck_assert_uint_eq(off, 4 * 65536);
	ck_assert(!block_dirty_take(bs, 1 << 20, &off, &len));
	block_dirty_stop(bs);
	block_unref(bs);
}
END_TEST

START_TEST(reopen_hands_the_lock_over)
{
	struct block_node *bs = new_qcow2("r.qcow2", 0, 0x11), *other = NULL;
	struct error *err = NULL;

	ck_assert(block_is_read_only(bs));
	/* a second reader may share it */
	ck_assert_int_eq(block_open(&other, img("r.qcow2"), "qcow2", 0, &err), 0);
	/* ... so we cannot become its writer */
	ck_assert_int_lt(block_reopen(bs, true, &err), 0);
	ck_assert_ptr_nonnull(strstr(err->msg, "Failed to get \"write\" lock"));
	error_free(err);
	err = NULL;
	ck_assert(block_is_read_only(bs));
	ck_assert_int_eq(byte_at(bs, 100), 0x11);
	block_unref(other);
	ck_assert_int_eq(block_reopen(bs, true, &err), 0);
	ck_assert(!block_is_read_only(bs));
	ck_assert_int_eq(block_pwrite(bs, 0, (uint8_t[512]){0x22}, 512), 0);
	/* now nobody else may open it */
	ck_assert_int_lt(block_open(&other, img("r.qcow2"), "qcow2", 0, &err), 0);
	error_free(err);
	err = NULL;
	ck_assert_int_eq(block_reopen(bs, false, &err), 0);
	ck_assert_int_eq(byte_at(bs, 0), 0x22);
	ck_assert_int_eq(block_open(&other, img("r.qcow2"), "qcow2", 0, &err), 0);
	block_unref(other);
	block_unref(bs);
}
END_TEST

START_TEST(reopen_keeps_the_node_name)
{
	struct block_node *top = new_qcow2("n.qcow2", BLOCK_O_RDWR, 0x55), *ov = NULL;
	struct error *err = NULL;

	ck_assert_int_eq(block_create_overlay(img("nov.qcow2"), "qcow2", top, &err), 0);
	ck_assert_int_eq(block_open_overlay(&ov, img("nov.qcow2"), "qcow2", top, "named1", &err),
			 0);
	block_drain_begin(top);
	block_insert_overlay(top, ov);
	block_drain_end(top);
	/* out of memory copying the name: the reopen fails, the node stays as it was */
	strdup_fail_on = "named1";
	ck_assert_int_lt(block_reopen(top, false, &err), 0);
	strdup_fail_on = NULL;
	ck_assert_str_eq(err->msg, "out of memory");
	error_free(err);
	err = NULL;
	ck_assert_str_eq(block_node_name(top), "named1");
	ck_assert(!block_is_read_only(top));
	ck_assert_int_eq(block_reopen(top, false, &err), 0);
	ck_assert_str_eq(block_node_name(top), "named1");
	ck_assert(block_is_read_only(top));
	block_unref(top);
}
END_TEST

START_TEST(overlay_stream_pivot)
{
	struct block_node *top = new_qcow2("base.qcow2", BLOCK_O_RDWR, 0x33), *ov = NULL, *base;
	struct error *err = NULL;
	uint64_t pnum;
	bool alloc;

	/* an existing file is never overwritten */
	ck_assert_int_lt(block_create_overlay(img("base.qcow2"), "qcow2", top, &err), 0);
	ck_assert_ptr_nonnull(strstr(err->msg, "File exists"));
	error_free(err);
	err = NULL;
	ck_assert_int_lt(block_create_overlay(img("x.vmdk"), "vmdk9", top, &err), 0);
	ck_assert_str_eq(err->msg, "Unknown file format 'vmdk9'");
	error_free(err);
	err = NULL;
	ck_assert_int_eq(access(img("x.vmdk"), F_OK), -1);

	ck_assert_int_eq(block_create_overlay(img("ov.qcow2"), "qcow2", top, &err), 0);
	ck_assert_int_eq(block_open_overlay(&ov, img("ov.qcow2"), "qcow2", top, "snap1", &err), 0);
	block_drain_begin(top);
	block_insert_overlay(top, ov);
	block_drain_end(top);
	/* @top designates the overlay now, reading through to the old image */
	ck_assert_str_eq(block_filename(top), img("ov.qcow2"));
	ck_assert_str_eq(block_node_name(top), "snap1");
	base = block_backing(top);
	ck_assert_str_eq(block_filename(base), img("base.qcow2"));
	ck_assert(block_is_read_only(base));
	ck_assert_int_eq(byte_at(top, 10), 0x33);
	ck_assert_int_eq(block_pwrite(top, 0, (uint8_t[512]){0x44}, 512), 0);
	ck_assert_int_eq(byte_at(base, 0), 0x33);
	ck_assert_ptr_eq(block_chain_find(top, img("base.qcow2"), NULL), base);
	ck_assert_ptr_eq(block_chain_find(top, NULL, "snap1"), top);

	ck_assert_int_eq(block_is_allocated_above(top, NULL, 0, SIZE, &pnum, &alloc), 0);
	ck_assert(alloc);
	ck_assert_int_eq(block_is_allocated_above(top, base, 65536, SIZE - 65536, &pnum, &alloc),
			 0);
	ck_assert(!alloc);
	ck_assert_uint_eq(pnum, SIZE - 65536);

	/* active commit's pivot: @top becomes the base */
	block_ref(base);
	ck_assert_int_eq(block_reopen(base, true, &err), 0);
	ck_assert_int_eq(block_pwrite(base, 0, (uint8_t[512]){0x44}, 512), 0);
	block_drain_begin(top);
	block_pivot(top, base);
	block_drain_end(top);
	block_unref(base); /* closes the overlay */
	ck_assert_str_eq(block_filename(top), img("base.qcow2"));
	ck_assert_ptr_null(block_backing(top));
	ck_assert(!block_is_read_only(top));
	ck_assert_int_eq(byte_at(top, 0), 0x44);
	ck_assert_int_eq(byte_at(top, 1000), 0x33);

	/* a backing node set and recorded */
	ov = NULL;
	ck_assert_int_eq(block_create_overlay(img("ov2.qcow2"), NULL, top, &err), 0);
	ck_assert_int_eq(block_open_overlay(&ov, img("ov2.qcow2"), NULL, top, NULL, &err), 0);
	ck_assert_int_eq(block_set_backing(ov, NULL, NULL, &err), 0);
	ck_assert_int_eq(byte_at(ov, 1000), 0);
	ck_assert_int_eq(block_set_backing(ov, top, NULL, &err), 0);
	ck_assert_int_eq(byte_at(ov, 1000), 0x33);
	block_unref(ov);
	block_unref(top);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("block-graph");
	TCase *tc = tcase_create("graph");

	tcase_add_unchecked_fixture(tc, scratch_setup, scratch_remove);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, drain_holds_async_requests);
	tcase_add_test(tc, dirty_tracking);
	tcase_add_test(tc, reopen_hands_the_lock_over);
	tcase_add_test(tc, reopen_keeps_the_node_name);
	tcase_add_test(tc, overlay_stream_pivot);
	suite_add_tcase(s, tc);
	return s;
}

#include "check-main.h"
