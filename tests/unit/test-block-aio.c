/*
 * Unit tests for asynchronous block requests (block/aio.c): many
 * concurrent requests on the io_uring, Linux AIO and thread-pool engines,
 * completion on the loop thread, rejection, and freeing the context; the
 * ring's restrictions (docs/security.md): any request or register
 * operation the block layer does not use fails with -EACCES.
 */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "block/block-int.h"
#include "tests/unit/scratch-dir.h"

#define NREQ 256
#define REQ_SIZE 4096
#define LARGE_SIZE (64 * 1024)

static char path[256];

struct tctx {
	struct event_base *base;
	struct block_aio_ctx *ctx;
	unsigned done, failed;
	pthread_t loop_thread;
	bool wrong_thread, in_submit;
};

struct treq {
	struct tctx *t;
	struct iovec iov;
	int ret;
	int calls;
};

static void scratch_setup(void)
{
	scratch_make("test-block-aio");
}

static void setup(void)
{
	int fd;

	snprintf(path, sizeof(path), "%s/disk.XXXXXX", scratch);
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, NREQ * REQ_SIZE * 2), 0);
	close(fd);
}

static void teardown(void)
{
	unlink(path);
}

/*
 * @img (300 bytes): a new qcow2 image of @size next to the test file, then
 * the qemu-io commands @io run on it. ./run installs qemu-utils: without
 * qemu-img the test fails rather than pass having checked nothing.
 */
static void make_qcow2(char *img, const char *size, const char *io)
{
	char cmd[1200];

	snprintf(img, 300, "%s.qcow2", path);
	snprintf(cmd, sizeof(cmd),
		 "qemu-img create -q -f qcow2 %s %s && qemu-io -f qcow2 %s %s >/dev/null 2>&1", img,
		 size, io, img);
	ck_assert_msg(system(cmd) == 0, "could not make %s with qemu-img and qemu-io", img);
}

/* qemu-img check finds @img consistent; then it is removed. */
static void check_qcow2(const char *img)
{
	char cmd[400];

	snprintf(cmd, sizeof(cmd), "qemu-img check -q %s", img);
	ck_assert_int_eq(system(cmd), 0);
	unlink(img);
}

static void on_done(void *opaque, int ret)
{
	struct treq *r = opaque;

	if (!pthread_equal(pthread_self(), r->t->loop_thread)) {
		r->t->wrong_thread = true;
	}
	if (r->t->in_submit) {
		r->t->wrong_thread = true;
	}
	r->ret = ret;
	r->calls++;
	r->t->done++;
	if (ret < 0) {
		r->t->failed++;
	}
	if (r->t->done == NREQ) {
		event_base_loopbreak(r->t->base);
	}
}

static void run_many(unsigned flags, unsigned misalign, bool expect_ring)
{
	/* aio=native: every aligned read and write through Linux AIO */
	uint64_t native = (flags & BLOCK_O_AIO_NATIVE) && !misalign ? 2 * NREQ : 0;
	struct block_node *bs = NULL;
	struct error *err = NULL;
	struct tctx t = {0};
	static struct treq reqs[NREQ];
	char *bufs;
	int r;

	r = block_open(&bs, path, "raw", BLOCK_O_RDWR | flags, &err);
	ck_assert_msg(r == 0, "%s", err ? err->msg : "");
	t.base = event_base_new();
	t.loop_thread = pthread_self();
	ck_assert_int_eq(block_aio_ctx_new(t.base, &t.ctx, &err), 0);
	ck_assert_int_eq(block_aio_ctx_uses_io_uring(t.ctx), expect_ring);
	ck_assert_int_eq(posix_memalign((void **)&bufs, 4096, NREQ * (REQ_SIZE + 4096)), 0);

	/* NREQ concurrent writes, each a distinct pattern at a distinct place */
	for (unsigned i = 0; i < NREQ; i++) {
		char *b = bufs + i * (REQ_SIZE + 4096) + misalign;

		memset(b, (int)(i & 0xff) ^ 0x5a, REQ_SIZE);
		reqs[i] = (struct treq){.t = &t, .iov = {b, REQ_SIZE}};
		t.in_submit = true;
		r = block_aio_submit(bs, t.ctx, BLOCK_OP_WRITE,
				     (uint64_t)i * REQ_SIZE * 2 + misalign, &reqs[i].iov, 1, 0, 0,
				     on_done, &reqs[i]);
		t.in_submit = false;
		ck_assert_int_eq(r, 0);
	}
	event_base_dispatch(t.base);
	ck_assert_uint_eq(t.done, NREQ);
	ck_assert_uint_eq(t.failed, 0);
	ck_assert(!t.wrong_thread);
	/*
	 * Every engine counts the highest write on the node and on its file
	 * (there padded to the file's alignment, as QEMU counts it).
	 */
	for (struct block_node *n = bs; n; n = n->file) {
		uint64_t end = (uint64_t)(NREQ - 1) * REQ_SIZE * 2 + misalign + REQ_SIZE;
		struct block_stats st;

		block_get_stats(n, &st);
		ck_assert_uint_eq(st.wr_highest_offset,
				  n == bs ? end : ALIGN_UP(end, n->alignment));
	}

	/* read back concurrently into cleared buffers */
	memset(bufs, 0, NREQ * (REQ_SIZE + 4096));
	t.done = 0;
	for (unsigned i = 0; i < NREQ; i++) {
		reqs[i].calls = 0;
		t.in_submit = true;
		r = block_aio_submit(bs, t.ctx, BLOCK_OP_READ,
				     (uint64_t)i * REQ_SIZE * 2 + misalign, &reqs[i].iov, 1, 0, 0,
				     on_done, &reqs[i]);
		t.in_submit = false;
		ck_assert_int_eq(r, 0);
	}
	event_base_dispatch(t.base);
	ck_assert_uint_eq(t.done, NREQ);
	ck_assert(!t.wrong_thread);
	for (unsigned i = 0; i < NREQ; i++) {
		unsigned char *b = reqs[i].iov.iov_base;

		ck_assert_int_eq(reqs[i].calls, 1);
		ck_assert_int_eq(reqs[i].ret, 0);
		ck_assert_int_eq(b[0], (i & 0xff) ^ 0x5a);
		ck_assert_int_eq(b[REQ_SIZE - 1], (i & 0xff) ^ 0x5a);
	}
	/* the data is really in the file: read it synchronously too */
	{
		unsigned char one;

		ck_assert_int_eq(block_pread(bs, 7 * REQ_SIZE * 2 + misalign + 100, &one, 1), 0);
		ck_assert_int_eq(one, 7 ^ 0x5a);
	}
	ck_assert_uint_eq(block_aio_ctx_native_requests(t.ctx), native);
	/* the context is freed after everything completed */
	block_aio_ctx_free(t.ctx);
	event_base_free(t.base);
	free(bufs);
	block_unref(bs);
}

START_TEST(many_uring)
{
	unsetenv("VMMD_NO_IO_URING");
	run_many(0, 0, true);
}
END_TEST

START_TEST(many_uring_direct)
{
	unsetenv("VMMD_NO_IO_URING");
	run_many(BLOCK_O_NOCACHE, 0, true);
}
END_TEST

START_TEST(many_direct_unaligned)
{
	/* misaligned buffers and offsets on O_DIRECT go through the pool's padding */
	unsetenv("VMMD_NO_IO_URING");
	run_many(BLOCK_O_NOCACHE, 100, true);
}
END_TEST

START_TEST(many_native)
{
	unsetenv("VMMD_NO_IO_URING");
	run_many(BLOCK_O_NOCACHE | BLOCK_O_AIO_NATIVE, 0, true);
	/* Linux AIO does not need a ring; misaligned requests take the pool */
	setenv("VMMD_NO_IO_URING", "1", 1);
	run_many(BLOCK_O_NOCACHE | BLOCK_O_AIO_NATIVE, 0, false);
	run_many(BLOCK_O_NOCACHE | BLOCK_O_AIO_NATIVE, 100, false);
	unsetenv("VMMD_NO_IO_URING");
}
END_TEST

START_TEST(native_needs_direct)
{
	struct block_node *bs = NULL;
	struct error *err = NULL;

	/* QEMU's refusal, word for word */
	ck_assert_int_eq(block_open(&bs, path, "raw", BLOCK_O_RDWR | BLOCK_O_AIO_NATIVE, &err),
			 -EINVAL);
	ck_assert_str_eq(err->msg, "aio=native was specified, but it requires cache.direct=on, "
				   "which was not specified.");
	error_free(err);
	ck_assert_ptr_null(bs);
}
END_TEST

START_TEST(many_pool)
{
	setenv("VMMD_NO_IO_URING", "1", 1);
	run_many(0, 0, false);
	unsetenv("VMMD_NO_IO_URING");
}
END_TEST

/* The threads of this process (/proc/self/task). */
static unsigned task_count(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	unsigned n = 0;

	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d))) {
		n += e->d_name[0] != '.';
	}
	closedir(d);
	return n;
}

/*
 * Holds each new pool worker before it takes its first request, until
 * opened: how many workers a burst starts then depends on the pool's caps
 * alone, not on how fast the disk answers the first requests.
 */
struct gate {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool open;
};

static struct gate gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, true};

static void gate_wait(void *opaque, const char *kind)
{
	struct gate *g = opaque;

	ck_assert_str_eq(kind, "helper");
	pthread_mutex_lock(&g->lock);
	while (!g->open) {
		pthread_cond_wait(&g->cond, &g->lock);
	}
	pthread_mutex_unlock(&g->lock);
}

static void gate_set(struct gate *g, bool open)
{
	pthread_mutex_lock(&g->lock);
	g->open = open;
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
}

/*
 * The pool's workers beyond @base threads, after NREQ reads of @size bytes
 * (every other block of the file's first 2 * NREQ * @size) through @t's
 * context, all submitted while the workers' gate is shut.
 */
static unsigned pool_burst(struct block_node *bs, struct tctx *t, struct treq *reqs, char *bufs,
			   unsigned base, size_t size)
{
	t->done = 0;
	block_aio_ctx_set_thread_start(t->ctx, gate_wait, &gate);
	gate_set(&gate, false);
	for (unsigned i = 0; i < NREQ; i++) {
		reqs[i] = (struct treq){.t = t, .iov = {bufs + (size_t)i * size, size}};
		ck_assert_int_eq(block_aio_submit(bs, t->ctx, BLOCK_OP_READ, (uint64_t)i * size * 2,
						  &reqs[i].iov, 1, 0, 0, on_done, &reqs[i]),
				 0);
	}
	gate_set(&gate, true);
	event_base_dispatch(t->base);
	ck_assert_uint_eq(t->done, NREQ);
	ck_assert_uint_eq(t->failed, 0);
	return task_count() - base;
}

/* Free @t's context (which joins its workers: none left after) and loop, and @bs. */
static void pool_close(struct block_node *bs, struct tctx *t, unsigned base)
{
	block_aio_ctx_free(t->ctx);
	ck_assert_uint_eq(task_count(), base);
	event_base_free(t->base);
	block_unref(bs);
}

/*
 * The pool grows to 8 workers for page-cache requests and to 16 for
 * O_DIRECT ones (they wait on the device), and a worker idle for the
 * context's idle time exits; the pool grows again after.
 */
START_TEST(pool_workers_grow_and_retire)
{
	static struct treq reqs[NREQ];
	unsigned base = task_count();
	char *bufs;

	setenv("VMMD_NO_IO_URING", "1", 1);
	ck_assert_int_eq(posix_memalign((void **)&bufs, 4096, NREQ * REQ_SIZE), 0);
	ck_assert_int_eq(truncate(path, 2 * NREQ * REQ_SIZE), 0);
	for (int direct = 0; direct < 2; direct++) {
		struct block_node *bs = NULL;
		struct error *err = NULL;
		struct tctx t = {0};
		unsigned n;

		ck_assert_int_eq(block_open(&bs, path, "raw", direct ? BLOCK_O_NOCACHE : 0, &err),
				 0);
		t.base = event_base_new();
		t.loop_thread = pthread_self();
		ck_assert_int_eq(block_aio_ctx_new(t.base, &t.ctx, &err), 0);
		block_aio_ctx_set_worker_idle(t.ctx, 300);
		n = pool_burst(bs, &t, reqs, bufs, base, REQ_SIZE);
		printf("pool workers after %u %s reads: %u\n", NREQ,
		       direct ? "O_DIRECT" : "page-cache", n);
		/* no worker idle while the burst was queued: each request started one, to the cap */
		ck_assert_uint_eq(n, direct ? 16 : 8);
		for (int i = 0; i < 100 && task_count() > base; i++) {
			usleep(50000);
		}
		ck_assert_uint_eq(task_count(), base);
		/* joined at the next submission; the pool grows again */
		ck_assert_uint_eq(pool_burst(bs, &t, reqs, bufs, base, REQ_SIZE), direct ? 16 : 8);
		pool_close(bs, &t, base);
	}
	free(bufs);
	unsetenv("VMMD_NO_IO_URING");
}
END_TEST

/*
 * O_DIRECT reads of 64 KiB let the pool grow past the 16 workers that 4 KiB
 * ones stop at (above), to 32: the device's time bounds them, not the CPU.
 */
START_TEST(pool_grows_further_for_large_direct)
{
	static struct treq reqs[NREQ];
	size_t len = (size_t)NREQ * LARGE_SIZE;
	unsigned base = task_count(), n;
	struct block_node *bs = NULL;
	struct error *err = NULL;
	struct tctx t = {0};
	char *bufs;

	setenv("VMMD_NO_IO_URING", "1", 1);
	ck_assert_int_eq(posix_memalign((void **)&bufs, 4096, len), 0);
	ck_assert_int_eq(truncate(path, (off_t)(2 * len)), 0);
	ck_assert_int_eq(block_open(&bs, path, "raw", BLOCK_O_NOCACHE, &err), 0);
	t.base = event_base_new();
	t.loop_thread = pthread_self();
	ck_assert_int_eq(block_aio_ctx_new(t.base, &t.ctx, &err), 0);
	n = pool_burst(bs, &t, reqs, bufs, base, LARGE_SIZE);
	printf("pool workers after %u O_DIRECT reads of 64 KiB: %u\n", NREQ, n);
	ck_assert_uint_eq(n, 32);
	pool_close(bs, &t, base);
	free(bufs);
	unsetenv("VMMD_NO_IO_URING");
}
END_TEST

struct one {
	int calls, ret;
	struct event_base *base;
};

static void on_one(void *opaque, int ret)
{
	struct one *o = opaque;

	o->calls++;
	o->ret = ret;
	event_base_loopbreak(o->base);
}

/* One read or write of @iov at @off on @ctx, waited for: it must succeed. */
static void one_request(struct block_node *bs, struct block_aio_ctx *ctx, struct event_base *base,
			enum block_op op, uint64_t off, struct iovec *iov)
{
	struct one o = {.base = base};

	ck_assert_int_eq(block_aio_submit(bs, ctx, op, off, iov, 1, 0, 0, on_one, &o), 0);
	event_base_dispatch(base);
	ck_assert_int_eq(o.calls, 1);
	ck_assert_int_eq(o.ret, 0);
}

START_TEST(rejects_and_other_ops)
{
	struct block_node *bs = NULL, *ro = NULL;
	struct block_aio_ctx *ctx = NULL;
	struct event_base *base = event_base_new();
	struct one o = {.base = base};
	struct block_stats st;
	char buf[512];
	struct iovec iov = {buf, sizeof(buf)};

	ck_assert_int_eq(block_open(&bs, path, "raw", BLOCK_O_RDWR | BLOCK_O_UNMAP, NULL), 0);
	ck_assert_int_eq(block_aio_ctx_new(base, &ctx, NULL), 0);
	/* out of range and read-only: rejected at once, no callback */
	ck_assert_int_eq(block_aio_submit(bs, ctx, BLOCK_OP_READ, NREQ * REQ_SIZE * 2, &iov, 1, 0,
					  0, on_one, &o),
			 -EINVAL);
	ck_assert_int_eq(block_open(&ro, path, "raw", BLOCK_O_NO_LOCK, NULL), 0);
	ck_assert_int_eq(block_aio_submit(ro, ctx, BLOCK_OP_WRITE, 0, &iov, 1, 0, 0, on_one, &o),
			 -EPERM);
	ck_assert_int_eq(block_aio_submit(bs, ctx, BLOCK_OP_DISCARD, 0, NULL, 0,
					  NREQ * REQ_SIZE * 4, 0, on_one, &o),
			 -EINVAL);
	ck_assert_int_eq(o.calls, 0);

	memset(buf, 0xee, sizeof(buf));
	ck_assert_int_eq(block_pwrite(bs, 0, buf, sizeof(buf)), 0);
	ck_assert_int_eq(
		block_aio_submit(bs, ctx, BLOCK_OP_WRITE_ZEROES, 0, NULL, 0, 512, 0, on_one, &o),
		0);
	ck_assert_int_eq(o.calls, 0);
	event_base_dispatch(base);
	ck_assert_int_eq(o.calls, 1);
	ck_assert_int_eq(o.ret, 0);
	ck_assert_int_eq(block_pread(bs, 0, buf, sizeof(buf)), 0);
	ck_assert_int_eq(buf[0], 0);
	ck_assert_int_eq(block_aio_submit(bs, ctx, BLOCK_OP_FLUSH, 0, NULL, 0, 0, 0, on_one, &o),
			 0);
	event_base_dispatch(base);
	ck_assert_int_eq(o.calls, 2);
	ck_assert_int_eq(o.ret, 0);
	ck_assert_int_eq(
		block_aio_submit(bs, ctx, BLOCK_OP_DISCARD, 0, NULL, 0, 4096, 0, on_one, &o), 0);
	event_base_dispatch(base);
	ck_assert_int_eq(o.calls, 3);
	ck_assert_int_eq(o.ret, 0);
	block_get_stats(bs, &st);
	ck_assert_uint_eq(st.flush_ops, 1);
	ck_assert_uint_eq(st.zero_ops, 1);
	ck_assert_uint_eq(st.discard_ops, 1);

	block_aio_ctx_free(ctx);
	block_aio_ctx_free(NULL);
	event_base_free(base);
	block_unref(ro);
	block_unref(bs);
}
END_TEST

struct cmp_req {
	struct iovec iov;
	int ret, calls;
	unsigned *left;
	struct event_base *base;
};

static void on_cmp(void *opaque, int ret)
{
	struct cmp_req *c = opaque;

	c->ret = ret;
	c->calls++;
	if (--*c->left == 0) {
		event_base_loopbreak(c->base);
	}
}

/*
 * Asynchronous reads of a qcow2 image (mapped clusters through the ring,
 * zero and unallocated ones filled in, compressed ones through the pool)
 * return what synchronous reads return.
 */
START_TEST(format_reads_match_sync)
{
	enum {
		N = 64,
		SZ = 16384
	};
	char img[300];
	struct block_node *bs = NULL;
	struct block_aio_ctx *ctx = NULL;
	struct event_base *base;
	static struct cmp_req reqs[N];
	unsigned left = N;
	char *abuf, *sbuf;

	make_qcow2(img, "4M",
		   "-c 'write -P 0x61 0 1M' -c 'write -z 256k 64k' -c 'write -P 0x62 2M 4k'");
	ck_assert_int_eq(block_open(&bs, img, "qcow2", BLOCK_O_NOCACHE, NULL), 0);
	unsetenv("VMMD_NO_IO_URING");
	base = event_base_new();
	ck_assert_int_eq(block_aio_ctx_new(base, &ctx, NULL), 0);
	ck_assert_int_eq(posix_memalign((void **)&abuf, 4096, N * SZ), 0);
	sbuf = malloc(SZ);
	memset(abuf, 0xee, N * SZ);
	for (unsigned i = 0; i < N; i++) {
		/* 16 KiB pieces scattered over data, zeroes, holes and the tail */
		uint64_t off = (uint64_t)i * 61440 % (4 << 20) / 4096 * 4096;

		if (off + SZ > 4 << 20) {
			off = (4 << 20) - SZ;
		}
		reqs[i] = (struct cmp_req){.iov = {abuf + i * SZ, SZ}, .left = &left, .base = base};
		ck_assert_int_eq(block_aio_submit(bs, ctx, BLOCK_OP_READ, off, &reqs[i].iov, 1, 0,
						  0, on_cmp, &reqs[i]),
				 0);
	}
	event_base_dispatch(base);
	ck_assert_uint_eq(left, 0);
	for (unsigned i = 0; i < N; i++) {
		uint64_t off = (uint64_t)i * 61440 % (4 << 20) / 4096 * 4096;

		if (off + SZ > 4 << 20) {
			off = (4 << 20) - SZ;
		}
		ck_assert_int_eq(reqs[i].calls, 1);
		ck_assert_int_eq(reqs[i].ret, 0);
		ck_assert_int_eq(block_pread(bs, off, sbuf, SZ), 0);
		ck_assert_msg(memcmp(sbuf, abuf + i * SZ, SZ) == 0, "read %u at %llu differs", i,
			      (unsigned long long)off);
	}
	block_aio_ctx_free(ctx);
	event_base_free(base);
	free(abuf);
	free(sbuf);
	block_unref(bs);
	unlink(img);
}
END_TEST

/*
 * qcow2 writes in place go straight to the ring (write_direct_begin) while
 * another thread discards clusters and writes elsewhere, so freed clusters
 * are reused at once: a direct write still in flight to a freed cluster
 * would land in another guest offset's data. Every 4 KiB block written
 * carries its own offset; at the end each block holds zeroes or its own
 * offset, and the image passes qemu-img check. (Whether a stale write
 * lands late enough to be seen is luck: with the wait below removed, 1 run
 * in 3 failed here; direct_write_holds_off_discard tests the wait itself.)
 */
#define RACE_CLUSTERS 64
#define RACE_CS 65536
#define RACE_BLOCKS (RACE_CLUSTERS * RACE_CS / 4096)

struct race {
	struct block_node *bs;
	struct block_aio_ctx *ctx;
	struct event_base *base;
	_Atomic bool stop;
	unsigned long submitted, failed;
	unsigned inflight;
	uint32_t seed;
};

struct race_req {
	struct race *rc;
	struct iovec iov;
	uint64_t off;
};

static uint32_t race_rand(uint32_t *s)
{
	*s = *s * 1103515245u + 12345u;
	return *s >> 8;
}

static void race_fill(uint8_t *b, uint64_t off)
{
	for (unsigned i = 0; i < 4096; i += 8) {
		memcpy(b + i, &off, 8);
	}
}

static void race_submit(struct race *rc, struct race_req *q);

static void on_race(void *opaque, int ret)
{
	struct race_req *q = opaque;
	struct race *rc = q->rc;

	if (ret < 0) {
		rc->failed++;
	}
	rc->inflight--;
	if (!rc->stop) {
		race_submit(rc, q);
	} else if (rc->inflight == 0) {
		event_base_loopbreak(rc->base);
	}
}

static void race_submit(struct race *rc, struct race_req *q)
{
	q->off = (uint64_t)(race_rand(&rc->seed) % RACE_BLOCKS) * 4096;
	race_fill(q->iov.iov_base, q->off);
	rc->inflight++;
	rc->submitted++;
	ck_assert_int_eq(block_aio_submit(rc->bs, rc->ctx, BLOCK_OP_WRITE, q->off, &q->iov, 1, 0, 0,
					  on_race, q),
			 0);
}

static void *race_discarder(void *arg)
{
	struct race *rc = arg;
	uint32_t seed = 7;
	time_t end = time(NULL) + 5;
	uint8_t *b;

	ck_assert_int_eq(posix_memalign((void **)&b, 4096, RACE_CS), 0);
	for (unsigned n = 0; n < 3000 && time(NULL) < end; n++) {
		uint64_t c = race_rand(&seed) % RACE_CLUSTERS, d = race_rand(&seed) % RACE_CLUSTERS;

		/* free one cluster, then allocate another (it may take the freed one) */
		if (n % 3 == 0) {
			ck_assert_int_eq(block_write_zeroes(rc->bs, c * RACE_CS, RACE_CS,
							    BLOCK_ZERO_MAY_UNMAP),
					 0);
		} else {
			ck_assert_int_eq(block_discard(rc->bs, c * RACE_CS, RACE_CS), 0);
		}
		/* frees take effect once the L2 tables are written back */
		ck_assert_int_eq(block_flush(rc->bs), 0);
		block_discard(rc->bs, d * RACE_CS, RACE_CS);
		ck_assert_int_eq(block_flush(rc->bs), 0);
		for (unsigned i = 0; i < RACE_CS; i += 4096) {
			race_fill(b + i, d * RACE_CS + i);
		}
		ck_assert_int_eq(block_pwrite(rc->bs, d * RACE_CS, b, RACE_CS), 0);
	}
	free(b);
	rc->stop = true;
	return NULL;
}

START_TEST(format_direct_writes_race_discards)
{
	enum {
		DEPTH = 32
	};
	char img[300], size[16], io[64];
	struct race rc = {.seed = 1};
	static struct race_req reqs[DEPTH];
	pthread_t th;
	uint8_t *bufs, *b;

	snprintf(size, sizeof(size), "%u", RACE_CLUSTERS * RACE_CS);
	snprintf(io, sizeof(io), "-c 'write -P 0 0 %u'", RACE_CLUSTERS * RACE_CS);
	make_qcow2(img, size, io);
	ck_assert_int_eq(block_open(&rc.bs, img, "qcow2",
				    BLOCK_O_RDWR | BLOCK_O_NOCACHE | BLOCK_O_UNMAP, NULL),
			 0);
	unsetenv("VMMD_NO_IO_URING");
	rc.base = event_base_new();
	ck_assert_int_eq(block_aio_ctx_new(rc.base, &rc.ctx, NULL), 0);
	ck_assert_int_eq(posix_memalign((void **)&bufs, 4096, DEPTH * 4096), 0);
	for (unsigned i = 0; i < DEPTH; i++) {
		reqs[i] = (struct race_req){.rc = &rc, .iov = {bufs + i * 4096, 4096}};
		race_submit(&rc, &reqs[i]);
	}
	ck_assert_int_eq(pthread_create(&th, NULL, race_discarder, &rc), 0);
	event_base_dispatch(rc.base);
	pthread_join(th, NULL);
	ck_assert_uint_eq(rc.failed, 0);
	ck_assert_uint_gt(rc.submitted, 1000);

	b = bufs;
	for (uint64_t blk = 0; blk < RACE_BLOCKS; blk++) {
		uint64_t off = blk * 4096, first;
		static const uint8_t zero[4096];

		ck_assert_int_eq(block_pread(rc.bs, off, b, 4096), 0);
		if (memcmp(b, zero, 4096) == 0) {
			continue;
		}
		memcpy(&first, b, 8);
		ck_assert_msg(first == off, "block at %#llx holds the data of %#llx",
			      (unsigned long long)off, (unsigned long long)first);
		for (unsigned i = 8; i < 4096; i += 8) {
			ck_assert_msg(memcmp(b + i, b, 8) == 0, "block at %#llx is torn",
				      (unsigned long long)off);
		}
	}
	block_aio_ctx_free(rc.ctx);
	event_base_free(rc.base);
	block_unref(rc.bs);
	free(bufs);
	check_qcow2(img);
}
END_TEST

/*
 * A qcow2 write in place on the ring counts its highest offset on the
 * qcow2 node (guest offset) and on the file (host offset), as the pool's
 * path does.
 */
START_TEST(format_direct_write_highest_offset)
{
	char img[300];
	struct block_node *bs = NULL;
	struct block_aio_ctx *ctx = NULL;
	struct event_base *base;
	struct block_stats st;
	uint64_t pnum, foff;
	unsigned status;
	void *buf;
	struct iovec iov;

	make_qcow2(img, "4M", "-c 'write 0 4M'");
	unsetenv("VMMD_NO_IO_URING");
	ck_assert_int_eq(posix_memalign(&buf, 4096, 4096), 0);
	iov = (struct iovec){buf, 4096};
	/* on the ring, then with aio=native on Linux AIO: the same counts */
	for (unsigned native = 0; native < 2; native++) {
		ck_assert_int_eq(block_open(&bs, img, "qcow2",
					    BLOCK_O_RDWR | BLOCK_O_NOCACHE |
						    (native ? BLOCK_O_AIO_NATIVE : 0),
					    NULL),
				 0);
		ck_assert_int_eq(block_get_status(bs, 1 << 20, 4096, &pnum, &status, &foff), 0);
		ck_assert(status & BLOCK_STATUS_DATA);
		base = event_base_new();
		ck_assert_int_eq(block_aio_ctx_new(base, &ctx, NULL), 0);
		ck_assert(block_aio_ctx_uses_io_uring(ctx));
		memset(buf, 0x33 + native, 4096);
		one_request(bs, ctx, base, BLOCK_OP_WRITE, 1 << 20, &iov);
		block_get_stats(bs, &st);
		ck_assert_uint_eq(st.wr_highest_offset, (1 << 20) + 4096);
		ck_assert_uint_eq(st.wr_ops, 1);
		block_get_stats(bs->file, &st);
		ck_assert_uint_eq(st.wr_highest_offset, foff + 4096);
		/* and read back through the format's fast path */
		memset(buf, 0, 4096);
		one_request(bs, ctx, base, BLOCK_OP_READ, 1 << 20, &iov);
		ck_assert_uint_eq(((unsigned char *)buf)[4095], 0x33 + native);
		ck_assert_uint_eq(block_aio_ctx_native_requests(ctx), native ? 2 : 0);
		block_aio_ctx_free(ctx);
		event_base_free(base);
		block_unref(bs);
	}
	free(buf);
	unlink(img);
}
END_TEST

/*
 * The engine goes with the cache mode: a node reopened read-write (as a
 * block-commit base is) stays on Linux AIO, and so does a qcow2's backing.
 */
START_TEST(native_survives_reopen)
{
	struct block_node *bs = NULL;
	struct block_aio_ctx *ctx = NULL;
	struct event_base *base = event_base_new();
	struct iovec iov;
	char img[300], cmd[700];
	void *buf;

	unsetenv("VMMD_NO_IO_URING");
	ck_assert_int_eq(posix_memalign(&buf, 4096, 4096), 0);
	memset(buf, 0x5c, 4096);
	iov = (struct iovec){buf, 4096};
	ck_assert_int_eq(block_open(&bs, path, "raw", BLOCK_O_NOCACHE | BLOCK_O_AIO_NATIVE, NULL),
			 0);
	ck_assert_int_eq(block_reopen(bs, true, NULL), 0);
	ck_assert_int_eq(block_aio_ctx_new(base, &ctx, NULL), 0);
	one_request(bs, ctx, base, BLOCK_OP_WRITE, 0, &iov);
	ck_assert_uint_eq(block_aio_ctx_native_requests(ctx), 1);
	block_unref(bs);
	snprintf(img, sizeof(img), "%s.qcow2", path);
	snprintf(cmd, sizeof(cmd), "qemu-img create -q -f qcow2 -b %s -F raw %s", path, img);
	ck_assert_int_eq(system(cmd), 0);
	ck_assert_int_eq(block_open(&bs, img, "qcow2", BLOCK_O_NOCACHE | BLOCK_O_AIO_NATIVE, NULL),
			 0);
	ck_assert_ptr_nonnull(bs->backing);
	ck_assert_uint_eq(bs->backing->flags & BLOCK_O_AIO_MASK, BLOCK_O_AIO_NATIVE);
	block_unref(bs);
	/* blockdev-add trees naming the engine in their file's options: the same */
	for (unsigned qcow2 = 0; qcow2 < 2; qcow2++) {
		json_t *opts = json_pack("{s:s, s:{s:b}, s:b, s:{s:s, s:s, s:s}}", "driver",
					 qcow2 ? "qcow2" : "raw", "cache", "direct", 1, "read-only",
					 1, "file", "driver", "file", "filename",
					 qcow2 ? img : path, "aio", "native");

		ck_assert_int_eq(block_open_json(&bs, opts, NULL), 0);
		json_decref(opts);
		ck_assert_uint_eq(bs->flags & BLOCK_O_AIO_MASK, BLOCK_O_AIO_NATIVE);
		if (qcow2) {
			ck_assert_uint_eq(bs->backing->flags & BLOCK_O_AIO_MASK,
					  BLOCK_O_AIO_NATIVE);
		} else {
			ck_assert_int_eq(block_reopen(bs, true, NULL), 0);
			one_request(bs, ctx, base, BLOCK_OP_WRITE, 0, &iov);
			ck_assert_uint_eq(block_aio_ctx_native_requests(ctx), 2);
		}
		block_unref(bs);
	}
	block_aio_ctx_free(ctx);
	event_base_free(base);
	free(buf);
	unlink(img);
}
END_TEST

struct discarding {
	struct block_node *bs;
	uint64_t off;
	_Atomic bool done;
};

static void *discard_thread(void *arg)
{
	struct discarding *d = arg;

	ck_assert_int_eq(block_discard(d->bs, d->off, RACE_CS), 0);
	d->done = true;
	return NULL;
}

/*
 * The wait itself: while a direct write holds a qcow2 cluster, a discard
 * of it waits and no new direct write starts; the write's end lets the
 * discard go, and the discarded cluster is then not written in place.
 */
START_TEST(direct_write_holds_off_discard)
{
	char img[300];
	struct block_node *bs = NULL;
	struct discarding d = {.off = RACE_CS};
	pthread_t th;
	uint64_t foff, foff2;

	make_qcow2(img, "1M", "-c 'write -P 1 0 1M'");
	ck_assert_int_eq(block_open(&bs, img, "qcow2", BLOCK_O_RDWR | BLOCK_O_UNMAP, NULL), 0);
	ck_assert_ptr_nonnull(bs->drv->write_direct_begin);
	ck_assert(bs->drv->write_direct_begin(bs, RACE_CS + 4096, 4096, &foff));
	ck_assert_uint_eq(foff % RACE_CS, 4096);
	d.bs = bs;
	ck_assert_int_eq(pthread_create(&th, NULL, discard_thread, &d), 0);
	usleep(300 * 1000);
	ck_assert_msg(!d.done, "the discard did not wait for the direct write");
	/* meanwhile no new direct write starts: it goes to the pool */
	ck_assert(!bs->drv->write_direct_begin(bs, 3 * RACE_CS, 4096, &foff2));
	bs->drv->write_direct_end(bs);
	pthread_join(th, NULL);
	ck_assert(d.done);
	/* discarded: no longer a cluster to write in place; others are again */
	ck_assert(!bs->drv->write_direct_begin(bs, RACE_CS, 4096, &foff2));
	ck_assert(bs->drv->write_direct_begin(bs, 3 * RACE_CS, 4096, &foff2));
	bs->drv->write_direct_end(bs);
	block_unref(bs);
	check_qcow2(img);
}
END_TEST

struct freeing {
	struct block_aio_ctx *ctx;
	struct event_base *base;
	unsigned left;
	struct iovec iov[4];
};

static void on_free_last(void *opaque, int ret)
{
	struct freeing *f = opaque;

	ck_assert_int_eq(ret, 0);
	if (--f->left == 0) {
		block_aio_ctx_free(f->ctx); /* from inside the last callback */
		f->ctx = NULL;
		event_base_loopbreak(f->base);
	}
}

START_TEST(free_from_last_callback)
{
	struct freeing f = {.left = 4};
	struct block_node *bs = NULL;
	static char buf[4][4096];

	ck_assert_int_eq(block_open(&bs, path, "raw", 0, NULL), 0);
	f.base = event_base_new();
	ck_assert_int_eq(block_aio_ctx_new(f.base, &f.ctx, NULL), 0);
	for (unsigned i = 0; i < 4; i++) {
		f.iov[i] = (struct iovec){buf[i], 4096};
		ck_assert_int_eq(block_aio_submit(bs, f.ctx, BLOCK_OP_READ, i * 4096, &f.iov[i], 1,
						  0, 0, on_free_last, &f),
				 0);
	}
	event_base_dispatch(f.base);
	ck_assert_ptr_null(f.ctx);
	ck_assert_uint_eq(f.left, 0);
	event_base_free(f.base);
	block_unref(bs);
}
END_TEST

/* Submit what is prepared on @ring and return the first completion's result. */
static int ring_run(struct io_uring *ring)
{
	struct io_uring_cqe *cqe;
	int res;

	ck_assert_int_eq(io_uring_submit(ring), 1);
	ck_assert_int_eq(io_uring_wait_cqe(ring, &cqe), 0);
	res = cqe->res;
	io_uring_cqe_seen(ring, cqe);
	return res;
}

/*
 * The ring of a context accepts readv, writev and fsync only: opening a
 * file or connecting a socket through it (which no seccomp filter would
 * see) fails with -EACCES and does not happen; so do other flags and any
 * register operation. Block I/O through the same context still works.
 */
START_TEST(ring_restricted)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct block_node *bs = NULL;
	struct error *err = NULL;
	struct tctx t = {0};
	struct one req = {0};
	struct io_uring_sqe *sqe;
	struct io_uring *ring;
	char buf[512];
	struct iovec iov = {buf, sizeof(buf)};
	int fd, lfd, cfd, before, r;

	unsetenv("VMMD_NO_IO_URING");
	r = block_aio_probe_io_uring(&err);
	ck_assert_msg(r == 0, "%s", err ? err->msg : "");
	ck_assert_int_eq(block_open(&bs, path, "raw", BLOCK_O_RDWR, &err), 0);
	t.base = event_base_new();
	req.base = t.base;
	ck_assert_int_eq(block_aio_ctx_new(t.base, &t.ctx, &err), 0);
	ring = block_aio_ctx_ring(t.ctx);
	ck_assert_ptr_nonnull(ring);
	/* cooperative task running wherever the kernel has it */
	{
		struct io_uring probe;

		if (io_uring_queue_init(2, &probe, IORING_SETUP_COOP_TASKRUN) == 0) {
			io_uring_queue_exit(&probe);
			ck_assert(ring->flags & IORING_SETUP_COOP_TASKRUN);
		}
	}

	/* IORING_OP_OPENAT: refused, and no file was opened */
	before = dup(0);
	ck_assert_int_ge(before, 0);
	close(before);
	sqe = io_uring_get_sqe(ring);
	io_uring_prep_openat(sqe, AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0);
	ck_assert_int_eq(ring_run(ring), -EACCES);
	fd = dup(0);
	ck_assert_int_eq(fd, before); /* the lowest free descriptor is still free */
	close(fd);

	/* IORING_OP_CONNECT to a listening socket: refused, nothing connected */
	/* an abstract address: nothing in the file system */
	snprintf(sa.sun_path + 1, sizeof(sa.sun_path) - 1, "vmmd-test-ring-%d", (int)getpid());
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	ck_assert_int_ge(lfd, 0);
	ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(lfd, 4), 0);
	cfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(cfd, 0);
	sqe = io_uring_get_sqe(ring);
	io_uring_prep_connect(sqe, cfd, (struct sockaddr *)&sa, sizeof(sa));
	ck_assert_int_eq(ring_run(ring), -EACCES);
	ck_assert_int_lt(accept(lfd, NULL, NULL), 0);
	ck_assert_int_eq(errno, EAGAIN);
	close(cfd);
	close(lfd);

	/* other opcodes the block layer does not use */
	fd = open(path, O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	sqe = io_uring_get_sqe(ring);
	io_uring_prep_read(sqe, fd, buf, sizeof(buf), 0);
	ck_assert_int_eq(ring_run(ring), -EACCES);
	sqe = io_uring_get_sqe(ring);
	io_uring_prep_nop(sqe);
	ck_assert_int_eq(ring_run(ring), -EACCES);

	/* an allowed opcode, with a flag the block layer does not set */
	sqe = io_uring_get_sqe(ring);
	io_uring_prep_readv(sqe, fd, &iov, 1, 0);
	io_uring_sqe_set_flags(sqe, IOSQE_IO_DRAIN);
	ck_assert_int_eq(ring_run(ring), -EACCES);
	/* the same without it, and with the one it sets, work */
	sqe = io_uring_get_sqe(ring);
	io_uring_prep_readv(sqe, fd, &iov, 1, 0);
	ck_assert_int_eq(ring_run(ring), (int)sizeof(buf));
	sqe = io_uring_get_sqe(ring);
	io_uring_prep_readv(sqe, fd, &iov, 1, 0);
	io_uring_sqe_set_flags(sqe, IOSQE_ASYNC);
	ck_assert_int_eq(ring_run(ring), (int)sizeof(buf));

	/* register operations: none once the ring is enabled */
	ck_assert_int_eq(io_uring_register_files(ring, &fd, 1), -EACCES);
	ck_assert_int_eq(io_uring_unregister_eventfd(ring), -EACCES);
	close(fd);

	/* block I/O through the context still goes through the ring and works */
	memset(buf, 0xa5, sizeof(buf));
	ck_assert_int_eq(
		block_aio_submit(bs, t.ctx, BLOCK_OP_WRITE, 4096, &iov, 1, 0, 0, on_one, &req), 0);
	event_base_dispatch(t.base);
	ck_assert_int_eq(req.calls, 1);
	ck_assert_int_eq(req.ret, 0);
	ck_assert_int_eq(
		block_aio_submit(bs, t.ctx, BLOCK_OP_FLUSH, 0, NULL, 0, 0, 0, on_one, &req), 0);
	event_base_dispatch(t.base);
	ck_assert_int_eq(req.calls, 2);
	ck_assert_int_eq(req.ret, 0);
	memset(buf, 0, sizeof(buf));
	ck_assert_int_eq(
		block_aio_submit(bs, t.ctx, BLOCK_OP_READ, 4096, &iov, 1, 0, 0, on_one, &req), 0);
	event_base_dispatch(t.base);
	ck_assert_int_eq(req.calls, 3);
	ck_assert_int_eq(req.ret, 0);
	ck_assert_int_eq((unsigned char)buf[0], 0xa5);
	ck_assert_int_eq((unsigned char)buf[sizeof(buf) - 1], 0xa5);
	ck_assert(block_aio_ctx_uses_io_uring(t.ctx));

	block_aio_ctx_free(t.ctx);
	event_base_free(t.base);
	block_unref(bs);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("block-aio");
	TCase *tc = tcase_create("core");

	tcase_add_unchecked_fixture(tc, scratch_setup, scratch_remove);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, many_uring);
	tcase_add_test(tc, many_uring_direct);
	tcase_add_test(tc, many_direct_unaligned);
	tcase_add_test(tc, many_native);
	tcase_add_test(tc, native_needs_direct);
	tcase_add_test(tc, native_survives_reopen);
	tcase_add_test(tc, many_pool);
	tcase_add_test(tc, pool_workers_grow_and_retire);
	tcase_add_test(tc, pool_grows_further_for_large_direct);
	tcase_add_test(tc, rejects_and_other_ops);
	tcase_add_test(tc, format_reads_match_sync);
	tcase_add_test(tc, format_direct_writes_race_discards);
	tcase_add_test(tc, format_direct_write_highest_offset);
	tcase_add_test(tc, direct_write_holds_off_discard);
	tcase_add_test(tc, free_from_last_callback);
	tcase_add_test(tc, ring_restricted);
	suite_add_tcase(s, tc);
	return s;
}

#include "check-main.h"
