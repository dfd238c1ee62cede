/*
 * Block layer core: the driver registry, opening nodes (format over
 * protocol), reference counting, request validation and alignment padding,
 * the synchronous I/O API, statistics, block status and info objects.
 *
 * Threads: the synchronous API runs on the caller's thread (any thread but
 * the daemon's control thread) and may run concurrently on one node from
 * several threads; drivers serialize their own mutable state. The only
 * core-owned mutable state of a node is its reference count and statistics
 * (atomics), rmw_lock, which serializes read-modify-write cycles of
 * unaligned writes on nodes that require alignment (O_DIRECT), and the
 * drain gate (gate_lock): block jobs and snapshots drain a node (any thread
 * but the one that completes its asynchronous requests) to change the graph
 * under it or to copy data without a guest write in between.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "block/block-int.h"
#include "block/file.h"
#include "common/iov.h"

/* The drivers, in lookup order. A new driver is one line here. */
static const struct block_driver *const block_drivers[] = {
	&file_driver,  /* protocol: files and block devices */
	&nbd_driver,   /* protocol: NBD exports */
	&rbd_driver,   /* protocol: Ceph RBD images (librbd) */
	&raw_driver,   /* format: the protocol's bytes (a window of them) */
	&qcow2_driver, /* format: QEMU's qcow2 (block/qcow2*.c) */
	&qed_driver,   /* format: QEMU's QED */
	&vhdx_driver,  /* format: Microsoft VHDX */
	&vmdk_driver,  /* format: VMware monolithicSparse and streamOptimized */
	&vpc_driver,   /* format: Microsoft VHD (QEMU's vpc), fixed and dynamic */
};

/* Largest iovec count accepted in one request (the kernel's IOV_MAX). */
#define BLOCK_MAX_IOV 1024
/* Largest offset+length a growable protocol node accepts. */
#define BLOCK_MAX_GROWABLE ((uint64_t)INT64_MAX)
/* Bounce buffers are aligned to this (covers every O_DIRECT requirement). */
#define BLOCK_BOUNCE_ALIGN 4096
/* Chunk size when write_zeroes falls back to writing a zero buffer. */
#define BLOCK_ZERO_CHUNK (1u << 20)

static const struct block_driver *find_driver(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(block_drivers); i++) {
		if (strcmp(block_drivers[i]->name, name) == 0) {
			return block_drivers[i];
		}
	}
	return NULL;
}

/* The protocol that serves @filename: "nbd" for NBD URIs, "rbd" for rbd:, else "file". */
static const char *protocol_for(const char *filename)
{
	static const char *const nbd_prefixes[] = {"nbd://", "nbd+unix://", "nbd+tcp://", "nbds://",
						   "nbds+unix://"};

	for (size_t i = 0; i < ARRAY_SIZE(nbd_prefixes); i++) {
		if (strncmp(filename, nbd_prefixes[i], strlen(nbd_prefixes[i])) == 0) {
			return "nbd";
		}
	}
	if (strncmp(filename, "rbd:", 4) == 0) {
		return "rbd";
	}
	return "file";
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void stat_add(uint64_t *p, uint64_t v)
{
	__atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}

static void stat_max(uint64_t *p, uint64_t v)
{
	uint64_t cur = __atomic_load_n(p, __ATOMIC_RELAXED);

	while (cur < v &&
	       !__atomic_compare_exchange_n(p, &cur, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
	}
}

static void stat_set(uint64_t *p, uint64_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELAXED);
}

static void cbw_free(struct block_cbw *c);
struct dirty_bitmap;
static void bitmaps_free(struct dirty_bitmap *list);
static void bitmaps_resize(struct block_node *bs);

static void node_free(struct block_node *bs)
{
	if (!bs) {
		return;
	}
	pthread_mutex_destroy(&bs->rmw_lock);
	pthread_mutex_destroy(&bs->gate_lock);
	pthread_cond_destroy(&bs->gate_cond);
	free(bs->dirty);
	cbw_free(bs->cbw);
	bitmaps_free(bs->bitmaps);
	free(bs->filename);
	free(bs->node_name);
	free(bs);
}

/*
 * Create a node of driver @drv and open it. @child (a protocol node for a
 * format; reference taken over, also on failure) becomes bs->file.
 */
static int node_open(struct block_node **ret, const struct block_driver *drv, const char *filename,
		     json_t *opts, unsigned flags, const char *node_name, struct block_node *child,
		     bool growable, struct error **errp)
{
	struct block_node *bs;
	int r;

	bs = calloc(1, sizeof(*bs));
	if (!bs) {
		block_unref(child);
		return error_set(errp, ENOMEM, "out of memory opening '%s'", filename);
	}
	bs->refcnt = 1;
	bs->drv = drv;
	bs->file = child;
	bs->flags = flags;
	bs->read_only = !(flags & BLOCK_O_RDWR);
	bs->alignment = 1;
	bs->growable = growable;
	pthread_mutex_init(&bs->rmw_lock, NULL);
	pthread_mutex_init(&bs->gate_lock, NULL);
	pthread_cond_init(&bs->gate_cond, NULL);
	bs->filename = strdup(filename);
	bs->node_name = node_name ? strdup(node_name) : NULL;
	if (!bs->filename || (node_name && !bs->node_name)) {
		r = error_set(errp, ENOMEM, "out of memory opening '%s'", filename);
		goto err_free;
	}
	r = drv->open(bs, filename, opts, errp);
	if (r < 0) {
		goto err_free;
	}
	if (!IS_POWER_OF_2(bs->alignment)) {
		bs->alignment = 1;
	}
	*ret = bs;
	return 0;

err_free:
	block_unref(bs->file);
	node_free(bs);
	return r < 0 ? r : -EIO;
}

int block_open_driver(struct block_node **ret, const char *driver, const char *filename,
		      json_t *opts, unsigned flags, struct error **errp)
{
	const struct block_driver *drv, *pdrv;
	struct block_node *child = NULL;
	int r;

	if (!filename || !*filename) {
		return error_set(errp, EINVAL, "no image file name given");
	}
	drv = find_driver(driver);
	if (!drv) {
		return error_set(errp, EINVAL, "unknown block driver '%s' for '%s'", driver,
				 filename);
	}
	if (drv->is_protocol) {
		return node_open(ret, drv, filename, opts, flags, NULL, NULL, false, errp);
	}
	pdrv = find_driver(protocol_for(filename));
	if (!pdrv) {
		return error_set(errp, ENOTSUP, "no protocol driver for '%s' (built without %s)",
				 filename, protocol_for(filename));
	}
	r = node_open(&child, pdrv, filename, NULL, flags, NULL, NULL, true, errp);
	if (r < 0) {
		return r;
	}
	return node_open(ret, drv, filename, opts, flags, NULL, child, false, errp);
}

int block_open(struct block_node **ret, const char *filename, const char *format, unsigned flags,
	       struct error **errp)
{
	if (!format || !*format) {
		return error_set(errp, EINVAL,
				 "no format given for '%s' (formats are never probed)",
				 filename ? filename : "");
	}
	return block_open_driver(ret, format, filename, NULL, flags, errp);
}

static int json_get_bool(json_t *opts, const char *key, bool *val, struct error **errp)
{
	json_t *v = json_object_get(opts, key);

	if (!v) {
		return 0;
	}
	if (!json_is_boolean(v)) {
		return error_set(errp, EINVAL, "blockdev option '%s' must be a boolean", key);
	}
	*val = json_is_true(v);
	return 0;
}

static int json_get_string(json_t *opts, const char *key, const char **val, struct error **errp)
{
	json_t *v = json_object_get(opts, key);

	if (!v) {
		return 0;
	}
	if (!json_is_string(v)) {
		return error_set(errp, EINVAL, "blockdev option '%s' must be a string", key);
	}
	*val = json_string_value(v);
	return 0;
}

/*
 * Open one blockdev-add tree. @inherit is set for a child ("file") whose
 * parent's flags apply unless the child says otherwise.
 */
static int open_json(struct block_node **ret, json_t *opts, const unsigned *inherit, bool growable,
		     struct error **errp)
{
	const struct block_driver *drv;
	const char *driver = NULL, *node_name = NULL, *filename = NULL, *discard = NULL;
	struct block_node *child = NULL;
	json_t *drv_opts = NULL, *cache, *file;
	bool read_only = false, direct = false, no_flush = false;
	unsigned flags;
	int r;

	if (!json_is_object(opts)) {
		return error_set(errp, EINVAL, "blockdev options must be an object");
	}
	if (inherit) {
		read_only = !(*inherit & BLOCK_O_RDWR);
		direct = *inherit & BLOCK_O_NOCACHE;
	}
	if ((r = json_get_string(opts, "driver", &driver, errp)) < 0 ||
	    (r = json_get_string(opts, "node-name", &node_name, errp)) < 0 ||
	    (r = json_get_string(opts, "filename", &filename, errp)) < 0 ||
	    (r = json_get_string(opts, "discard", &discard, errp)) < 0 ||
	    (r = json_get_bool(opts, "read-only", &read_only, errp)) < 0) {
		return r;
	}
	if (!driver) {
		return error_set(errp, EINVAL, "blockdev option 'driver' is missing");
	}
	drv = find_driver(driver);
	if (!drv) {
		return error_set(errp, EINVAL, "unknown block driver '%s'", driver);
	}
	cache = json_object_get(opts, "cache");
	if (cache) {
		const char *key;
		json_t *v;

		if (!json_is_object(cache)) {
			return error_set(errp, EINVAL, "blockdev option 'cache' must be an object");
		}
		json_object_foreach (cache, key, v) {
			if (strcmp(key, "direct") != 0 && strcmp(key, "no-flush") != 0) {
				return error_set(errp, EINVAL, "unknown cache option '%s'", key);
			}
		}
		if ((r = json_get_bool(cache, "direct", &direct, errp)) < 0 ||
		    (r = json_get_bool(cache, "no-flush", &no_flush, errp)) < 0) {
			return r;
		}
		if (no_flush) {
			return error_set(errp, ENOTSUP, "cache.no-flush is not supported");
		}
	}
	flags = (read_only ? 0 : BLOCK_O_RDWR) | (direct ? BLOCK_O_NOCACHE : 0);
	if (inherit) {
		flags |= *inherit & (BLOCK_O_NO_LOCK | BLOCK_O_NO_BACKING | BLOCK_O_UNMAP);
	}
	if (discard) {
		if (strcmp(discard, "unmap") == 0 || strcmp(discard, "on") == 0) {
			flags |= BLOCK_O_UNMAP;
		} else if (strcmp(discard, "ignore") == 0 || strcmp(discard, "off") == 0) {
			flags &= ~BLOCK_O_UNMAP;
		} else {
			return error_set(errp, EINVAL,
					 "blockdev option 'discard' must be 'ignore' or 'unmap'");
		}
	}

	drv_opts = json_deep_copy(opts);
	if (!drv_opts) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	json_object_del(drv_opts, "driver");
	json_object_del(drv_opts, "node-name");
	json_object_del(drv_opts, "read-only");
	json_object_del(drv_opts, "cache");
	json_object_del(drv_opts, "discard");
	json_object_del(drv_opts, "filename");
	json_object_del(drv_opts, "file");

	file = json_object_get(opts, "file");
	if (drv->is_protocol) {
		if (file) {
			r = error_set(errp, EINVAL, "protocol driver '%s' takes no 'file'", driver);
			goto out;
		}
		r = node_open(ret, drv, filename ? filename : "", drv_opts, flags, node_name, NULL,
			      growable, errp);
		goto out;
	}
	if (filename) {
		r = error_set(errp, EINVAL, "format driver '%s' takes 'file', not 'filename'",
			      driver);
		goto out;
	}
	if (json_is_string(file)) {
		const char *fname = json_string_value(file);

		r = node_open(&child, find_driver(protocol_for(fname)) ?: &file_driver, fname, NULL,
			      flags, NULL, NULL, true, errp);
	} else if (json_is_object(file)) {
		r = open_json(&child, file, &flags, true, errp);
	} else {
		r = error_set(errp, EINVAL, "format driver '%s' needs 'file' (a string or object)",
			      driver);
	}
	if (r < 0) {
		goto out;
	}
	/* the file's engine ("aio" in its options) is the node's: reopens and backings keep it */
	flags = (flags & ~BLOCK_O_AIO_MASK) | (child->flags & BLOCK_O_AIO_MASK);
	r = node_open(ret, drv, child->filename, drv_opts, flags, node_name, child, growable, errp);
out:
	json_decref(drv_opts);
	return r;
}

int block_open_json(struct block_node **ret, json_t *opts, struct error **errp)
{
	return open_json(ret, opts, NULL, false, errp);
}

const char *block_probe_buf(const uint8_t *buf, size_t len, const char *filename)
{
	const char *format = "raw";
	int best = 0;

	for (size_t i = 0; i < ARRAY_SIZE(block_drivers); i++) {
		const struct block_driver *drv = block_drivers[i];
		int score;

		if (!drv->probe) {
			continue;
		}
		score = drv->probe(buf, len, filename);
		if (score > best) {
			best = score;
			format = drv->name;
		}
	}
	return format;
}

int block_io_slice(struct block_node *node, bool write, uint64_t offset, const struct iovec *iov,
		   unsigned cnt, uint64_t iov_off, uint64_t len)
{
	struct iovec small[16], *sub = small;
	size_t got;
	unsigned n;
	int r;

	if (cnt > ARRAY_SIZE(small)) {
		sub = malloc(cnt * sizeof(*sub));
		if (!sub) {
			return -ENOMEM;
		}
	}
	n = iov_slice(iov, cnt, iov_off, len, sub, cnt, &got);
	if (got != len) {
		r = -EINVAL;
	} else if (write) {
		r = block_pwritev(node, offset, sub, n);
	} else {
		r = block_preadv(node, offset, sub, n);
	}
	if (sub != small) {
		free(sub);
	}
	return r;
}

int block_probe_format(const char *filename, const char **ret_format, struct error **errp)
{
	struct block_node *bs = NULL;
	_cleanup_free_ uint8_t *buf = NULL;
	uint64_t len;
	int r;

	r = block_open_driver(&bs, protocol_for(filename), filename, NULL, BLOCK_O_NO_LOCK, errp);
	if (r < 0) {
		return r;
	}
	*ret_format = "raw";
	len = MIN(block_length(bs), BLOCK_PROBE_BUF);
	buf = calloc(1, BLOCK_PROBE_BUF);
	if (!buf) {
		block_unref(bs);
		return error_set(errp, ENOMEM, "out of memory");
	}
	if (len) {
		/* whole sectors when there are any (O_DIRECT-safe), else the few bytes */
		r = block_pread(bs, 0, buf, len >= 512 ? len & ~(uint64_t)511 : len);
		if (r < 0) {
			block_unref(bs);
			return error_set_errno(errp, r, "could not read '%s'", filename);
		}
		len = len >= 512 ? len & ~(uint64_t)511 : len;
	}
	*ret_format = block_probe_buf(buf, (size_t)len, filename);
	block_unref(bs);
	return 0;
}

int block_create(const char *format, const char *filename, uint64_t size, json_t *opts,
		 struct error **errp)
{
	const struct block_driver *drv = find_driver(format);
	json_t *empty = NULL;
	int r;

	if (!drv || drv->is_protocol) {
		char names[256] = "";
		size_t p = 0;

		for (size_t i = 0; i < ARRAY_SIZE(block_drivers); i++) {
			if (block_drivers[i]->create && !block_drivers[i]->is_protocol &&
			    p < sizeof(names)) {
				p += (size_t)snprintf(names + p, sizeof(names) - p, "%s%s",
						      p ? ", " : "", block_drivers[i]->name);
			}
		}
		return error_set(errp, EINVAL, "unknown format '%s' (%s)", format, names);
	}
	if (!drv->create) {
		return error_set(errp, ENOTSUP, "format '%s' does not support image creation",
				 format);
	}
	if (strcmp(protocol_for(filename), "file") != 0) {
		/* Not a local file: a raw image is the protocol's own creation. */
		const struct block_driver *pdrv = find_driver(protocol_for(filename));

		if (strcmp(format, "raw") != 0 || !pdrv || !pdrv->create) {
			return error_set(errp, ENOTSUP,
					 "cannot create a %s image on '%s': the %s protocol "
					 "creates raw images only",
					 format, filename, protocol_for(filename));
		}
		drv = pdrv;
	}
	if (!opts) {
		opts = empty = json_object();
	}
	if (!json_is_object(opts)) {
		json_decref(empty);
		return error_set(errp, EINVAL, "creation options for '%s' must be an object",
				 filename);
	}
	r = drv->create(filename, size, opts, errp);
	json_decref(empty);
	return r;
}

struct block_node *block_ref(struct block_node *bs)
{
	if (bs) {
		__atomic_fetch_add(&bs->refcnt, 1, __ATOMIC_RELAXED);
	}
	return bs;
}

void block_unref(struct block_node *bs)
{
	if (!bs || __atomic_sub_fetch(&bs->refcnt, 1, __ATOMIC_ACQ_REL) > 0) {
		return;
	}
	if (bs->drv) {
		bs->drv->close(bs);
	}
	block_unref(bs->backing);
	block_unref(bs->file);
	node_free(bs);
}

uint64_t block_length(struct block_node *bs)
{
	return bs->drv->get_length(bs);
}

bool block_is_read_only(struct block_node *bs)
{
	return bs->read_only;
}

bool block_is_direct(struct block_node *bs)
{
	return bs->flags & BLOCK_O_NOCACHE;
}

const char *block_aio_engine(struct block_node *bs)
{
	struct file_state *s;

	while (bs->file && bs->drv != &file_driver) {
		bs = bs->file;
	}
	if (bs->drv != &file_driver) {
		return NULL;
	}
	s = bs->opaque;
	return s->native_aio ? "native" : s->use_threads ? "threads" : NULL;
}

uint32_t block_alignment(struct block_node *bs)
{
	return bs->alignment;
}

const char *block_format(struct block_node *bs)
{
	return bs->drv->name;
}

const char *block_filename(struct block_node *bs)
{
	return bs->filename;
}

const char *block_node_name(struct block_node *bs)
{
	return bs->node_name;
}

/* ---- the drain gate ---- */

static bool gate_passes(struct block_node *bs)
{
	return bs->gate_drained == 0 || pthread_equal(bs->gate_owner, pthread_self());
}

/*
 * A bitmap of a node's granules (@granularity bytes each), under
 * gate_lock: the write tracking of active commit and mirror, and what a
 * backup has still to copy.
 */
struct granules {
	uint64_t granularity;
	uint64_t nbits;
	uint64_t count; /* granules set */
	uint64_t bits[];
};

static int granules_new(struct block_node *bs, uint64_t granularity, struct granules **ret,
			struct error **errp)
{
	uint64_t nbits = (block_length(bs) + granularity - 1) / granularity;
	struct granules *g;

	if (!granularity || !IS_POWER_OF_2(granularity) || nbits > (1ull << 32)) {
		return error_set(errp, EINVAL, "bad granularity %" PRIu64, granularity);
	}
	g = calloc(1, sizeof(*g) + (nbits + 63) / 64 * sizeof(uint64_t));
	if (!g) {
		return error_set(errp, ENOMEM, "out of memory for a bitmap of '%s'", bs->filename);
	}
	g->granularity = granularity;
	g->nbits = nbits;
	*ret = g;
	return 0;
}

static bool granule_test(const struct granules *g, uint64_t i)
{
	return g->bits[i / 64] & (1ull << (i % 64));
}

/* Set (@set) or clear the granules [@offset, @offset+@len) touches. */
static void granules_change(struct granules *g, uint64_t offset, uint64_t len, bool set)
{
	uint64_t last;

	if (!len) {
		return;
	}
	last = MIN((offset + len - 1) / g->granularity, g->nbits - 1);
	for (uint64_t i = offset / g->granularity; i <= last; i++) {
		if (granule_test(g, i) != set) {
			g->bits[i / 64] ^= 1ull << (i % 64);
			g->count += set ? 1 : -1;
		}
	}
}

static bool granules_any(const struct granules *g, uint64_t offset, uint64_t len)
{
	uint64_t last;

	if (!len || !g->count) {
		return false;
	}
	last = MIN((offset + len - 1) / g->granularity, g->nbits - 1);
	for (uint64_t i = offset / g->granularity; i <= last; i++) {
		if (granule_test(g, i)) {
			return true;
		}
	}
	return false;
}

/*
 * The first run of set granules in [@from, @end), at most @max bytes (one
 * granule at least), its end cut at the node's length @node_len.
 */
static bool granules_run(const struct granules *g, uint64_t from, uint64_t end, uint64_t max,
			 uint64_t node_len, uint64_t *ret_offset, uint64_t *ret_len)
{
	uint64_t i, n = 0, last;

	if (!g->count || from >= end) {
		return false;
	}
	last = MIN((end - 1) / g->granularity, g->nbits - 1);
	for (i = from / g->granularity; i <= last; i++) {
		if (g->bits[i / 64] == 0 && i % 64 == 0) {
			i += 63;
			continue;
		}
		if (granule_test(g, i)) {
			break;
		}
	}
	while (i + n <= last && (n + 1) * g->granularity <= MAX(max, g->granularity) &&
	       granule_test(g, i + n)) {
		n++;
	}
	if (!n) {
		return false;
	}
	*ret_offset = i * g->granularity;
	*ret_len = MIN(n * g->granularity, node_len - *ret_offset);
	return true;
}

/* A synchronous request waiting for a copy before its write (struct block_cbw). */
struct cbw_waiter {
	struct cbw_waiter *next;
	uint64_t offset, len;
};

/*
 * Under gate_lock. A write, write-zeroes or discard that touches a granule
 * still to copy waits: a synchronous one on gate_cond (listed in waiters),
 * an asynchronous one in held (a list through the requests' next field)
 * until the copier has copied what it touches and unmarked it. Only the
 * copier unmarks, after its copy, so a write never lands before the copy
 * of what it overwrites.
 */
struct block_cbw {
	struct granules *todo;
	struct cbw_waiter *waiters;
	struct aio_req *held;
	bool kicked; /* block_cbw_kick(): the copier returns */
};

/* A dirty bitmap (QEMU's BdrvDirtyBitmap, in memory), under gate_lock. */
struct dirty_bitmap {
	struct dirty_bitmap *next;
	char *name;
	bool recording;
	bool busy; /* a backup uses it */
	struct granules *g;
	struct granules *taken; /* what it held when its backup began (busy) */
};

static void cbw_free(struct block_cbw *c)
{
	if (c) {
		free(c->todo);
		free(c);
	}
}

static bool cbw_blocks(struct block_cbw *c, enum block_op op, uint64_t offset, uint64_t len)
{
	return c &&
	       (op == BLOCK_OP_WRITE || op == BLOCK_OP_WRITE_ZEROES || op == BLOCK_OP_DISCARD) &&
	       granules_any(c->todo, offset, len);
}

void block_gate_enter(struct block_node *bs, enum block_op op, uint64_t offset, uint64_t len)
{
	struct cbw_waiter w = {.offset = offset, .len = len};
	bool listed = false;

	pthread_mutex_lock(&bs->gate_lock);
	for (;;) {
		if (!gate_passes(bs)) {
			pthread_cond_wait(&bs->gate_cond, &bs->gate_lock);
			continue;
		}
		if (!cbw_blocks(bs->cbw, op, offset, len)) {
			break;
		}
		if (!listed) {
			w.next = bs->cbw->waiters;
			bs->cbw->waiters = &w;
			listed = true;
			pthread_cond_broadcast(&bs->gate_cond); /* the copier */
		}
		pthread_cond_wait(&bs->gate_cond, &bs->gate_lock);
	}
	if (listed && bs->cbw) {
		for (struct cbw_waiter **pp = &bs->cbw->waiters; *pp; pp = &(*pp)->next) {
			if (*pp == &w) {
				*pp = w.next;
				break;
			}
		}
	}
	bs->gate_inflight++;
	pthread_mutex_unlock(&bs->gate_lock);
}

bool block_gate_hold(struct block_node *bs, struct aio_req *r)
{
	enum block_op op;
	uint64_t offset, len;
	bool entered;

	block_aio_req_range(r, &op, &offset, &len);
	pthread_mutex_lock(&bs->gate_lock);
	entered = gate_passes(bs) && !cbw_blocks(bs->cbw, op, offset, len);
	if (entered) {
		bs->gate_inflight++;
	} else if (gate_passes(bs)) {
		/* its range is to be copied first: block_cbw_unmark() resubmits it */
		struct aio_req **pp = &bs->cbw->held;

		while (*pp) {
			pp = block_aio_req_next(*pp);
		}
		*pp = r;
		*block_aio_req_next(r) = NULL;
		pthread_cond_broadcast(&bs->gate_cond); /* the copier */
	} else {
		struct aio_req **pp = &bs->gate_held;

		while (*pp) {
			pp = block_aio_req_next(*pp);
		}
		*pp = r;
		*block_aio_req_next(r) = NULL;
	}
	pthread_mutex_unlock(&bs->gate_lock);
	return entered;
}

void block_gate_exit(struct block_node *bs, enum block_op op, uint64_t offset, uint64_t len)
{
	pthread_mutex_lock(&bs->gate_lock);
	if (op == BLOCK_OP_WRITE || op == BLOCK_OP_WRITE_ZEROES || op == BLOCK_OP_DISCARD) {
		if (bs->dirty) {
			granules_change(bs->dirty, offset, len, true);
		}
		for (struct dirty_bitmap *b = bs->bitmaps; b; b = b->next) {
			if (b->recording) {
				granules_change(b->g, offset, len, true);
			}
		}
	}
	if (--bs->gate_inflight == 0 && bs->gate_drained) {
		pthread_cond_broadcast(&bs->gate_cond);
	}
	pthread_mutex_unlock(&bs->gate_lock);
}

void block_drain_begin(struct block_node *bs)
{
	pthread_mutex_lock(&bs->gate_lock);
	/* one drainer at a time; a nested drain by the owner just counts */
	while (bs->gate_drained && !pthread_equal(bs->gate_owner, pthread_self())) {
		pthread_cond_wait(&bs->gate_cond, &bs->gate_lock);
	}
	bs->gate_drained++;
	bs->gate_owner = pthread_self();
	while (bs->gate_inflight > 0) {
		pthread_cond_wait(&bs->gate_cond, &bs->gate_lock);
	}
	pthread_mutex_unlock(&bs->gate_lock);
}

void block_drain_end(struct block_node *bs)
{
	struct aio_req *held = NULL;

	pthread_mutex_lock(&bs->gate_lock);
	if (--bs->gate_drained == 0) {
		held = bs->gate_held;
		bs->gate_held = NULL;
		pthread_cond_broadcast(&bs->gate_cond);
	}
	pthread_mutex_unlock(&bs->gate_lock);
	if (held) {
		block_aio_resubmit(held);
	}
}

/* ---- write tracking (active commit) ---- */

int block_dirty_start(struct block_node *bs, uint64_t granularity, struct error **errp)
{
	struct granules *d;
	int r = granules_new(bs, granularity, &d, errp);

	if (r < 0) {
		return r;
	}
	pthread_mutex_lock(&bs->gate_lock);
	if (bs->dirty) {
		pthread_mutex_unlock(&bs->gate_lock);
		free(d);
		return error_set(errp, EBUSY, "'%s' is already tracked", bs->filename);
	}
	bs->dirty = d;
	pthread_mutex_unlock(&bs->gate_lock);
	return 0;
}

void block_dirty_stop(struct block_node *bs)
{
	struct granules *d;

	pthread_mutex_lock(&bs->gate_lock);
	d = bs->dirty;
	bs->dirty = NULL;
	pthread_mutex_unlock(&bs->gate_lock);
	free(d);
}

void block_dirty_mark(struct block_node *bs, uint64_t offset, uint64_t len)
{
	pthread_mutex_lock(&bs->gate_lock);
	if (bs->dirty) {
		granules_change(bs->dirty, offset, len, true);
	}
	pthread_mutex_unlock(&bs->gate_lock);
}

bool block_dirty_take(struct block_node *bs, uint64_t max, uint64_t *ret_offset, uint64_t *ret_len)
{
	uint64_t len = block_length(bs);
	bool found;

	pthread_mutex_lock(&bs->gate_lock);
	found = bs->dirty && granules_run(bs->dirty, 0, len, max, len, ret_offset, ret_len);
	if (found) {
		granules_change(bs->dirty, *ret_offset, *ret_len, false);
	}
	pthread_mutex_unlock(&bs->gate_lock);
	return found;
}

uint64_t block_dirty_bytes(struct block_node *bs)
{
	uint64_t n;

	pthread_mutex_lock(&bs->gate_lock);
	n = bs->dirty ? bs->dirty->count * bs->dirty->granularity : 0;
	pthread_mutex_unlock(&bs->gate_lock);
	return n;
}

/* ---- copy before write (backup jobs) ---- */

int block_cbw_start(struct block_node *bs, uint64_t granularity, struct error **errp)
{
	struct block_cbw *c = calloc(1, sizeof(*c));
	int r = c ? granules_new(bs, granularity, &c->todo, errp)
		  : error_set(errp, ENOMEM, "out of memory");

	if (r < 0) {
		free(c);
		return r;
	}
	pthread_mutex_lock(&bs->gate_lock);
	if (bs->cbw) {
		pthread_mutex_unlock(&bs->gate_lock);
		cbw_free(c);
		return error_set(errp, EBUSY, "'%s' is already being copied", bs->filename);
	}
	bs->cbw = c;
	pthread_mutex_unlock(&bs->gate_lock);
	return 0;
}

void block_cbw_mark(struct block_node *bs, uint64_t offset, uint64_t len)
{
	pthread_mutex_lock(&bs->gate_lock);
	if (bs->cbw) {
		granules_change(bs->cbw->todo, offset, len, true);
	}
	pthread_mutex_unlock(&bs->gate_lock);
}

bool block_cbw_next(struct block_node *bs, uint64_t from, uint64_t end, uint64_t max,
		    uint64_t *ret_offset, uint64_t *ret_len)
{
	bool found;

	pthread_mutex_lock(&bs->gate_lock);
	found = bs->cbw && granules_run(bs->cbw->todo, from, MIN(end, block_length(bs)), max,
					block_length(bs), ret_offset, ret_len);
	pthread_mutex_unlock(&bs->gate_lock);
	return found;
}

/* A marked run that a waiting request needs, under gate_lock. */
static bool cbw_wanted(struct block_node *bs, uint64_t max, uint64_t *ret_offset, uint64_t *ret_len)
{
	struct block_cbw *c = bs->cbw;
	uint64_t len = block_length(bs);

	for (struct cbw_waiter *w = c->waiters; w; w = w->next) {
		if (granules_run(c->todo, w->offset, w->offset + w->len, max, len, ret_offset,
				 ret_len)) {
			return true;
		}
	}
	for (struct aio_req *r = c->held; r; r = *block_aio_req_next(r)) {
		enum block_op op;
		uint64_t off, n;

		block_aio_req_range(r, &op, &off, &n);
		if (granules_run(c->todo, off, off + n, max, len, ret_offset, ret_len)) {
			return true;
		}
	}
	return false;
}

bool block_cbw_wait(struct block_node *bs, uint64_t ns, uint64_t max, uint64_t *ret_offset,
		    uint64_t *ret_len)
{
	struct timespec ts;
	bool found = false;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += (time_t)(ns / 1000000000u);
	ts.tv_nsec += (long)(ns % 1000000000u);
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&bs->gate_lock);
	while (bs->cbw && !bs->cbw->kicked) {
		found = cbw_wanted(bs, max, ret_offset, ret_len);
		if (found ||
		    pthread_cond_timedwait(&bs->gate_cond, &bs->gate_lock, &ts) == ETIMEDOUT) {
			break;
		}
	}
	if (bs->cbw) {
		bs->cbw->kicked = false;
	}
	pthread_mutex_unlock(&bs->gate_lock);
	return found;
}

void block_cbw_kick(struct block_node *bs)
{
	pthread_mutex_lock(&bs->gate_lock);
	if (bs->cbw) {
		bs->cbw->kicked = true;
		pthread_cond_broadcast(&bs->gate_cond);
	}
	pthread_mutex_unlock(&bs->gate_lock);
}

/* Take the held requests that no marked granule blocks any more, under gate_lock. */
static struct aio_req *cbw_release(struct block_cbw *c, bool all)
{
	struct aio_req *go = NULL, **tail = &go, **pp = &c->held;

	while (*pp) {
		struct aio_req *r = *pp;
		enum block_op op;
		uint64_t off, n;

		block_aio_req_range(r, &op, &off, &n);
		if (all || !granules_any(c->todo, off, n)) {
			/* in the order they came */
			*pp = *block_aio_req_next(r);
			*block_aio_req_next(r) = NULL;
			*tail = r;
			tail = block_aio_req_next(r);
		} else {
			pp = block_aio_req_next(r);
		}
	}
	return go;
}

void block_cbw_unmark(struct block_node *bs, uint64_t offset, uint64_t len)
{
	struct aio_req *go = NULL;
	struct block_cbw *c;

	pthread_mutex_lock(&bs->gate_lock);
	c = bs->cbw;
	if (c && len) {
		granules_change(c->todo, offset, len, false);
		go = cbw_release(c, false);
		if (c->waiters) {
			pthread_cond_broadcast(&bs->gate_cond);
		}
	}
	pthread_mutex_unlock(&bs->gate_lock);
	if (go) {
		block_aio_resubmit(go);
	}
}

uint64_t block_cbw_bytes(struct block_node *bs)
{
	uint64_t n;

	pthread_mutex_lock(&bs->gate_lock);
	n = bs->cbw ? MIN(bs->cbw->todo->count * bs->cbw->todo->granularity, block_length(bs)) : 0;
	pthread_mutex_unlock(&bs->gate_lock);
	return n;
}

void block_cbw_stop(struct block_node *bs)
{
	struct aio_req *go = NULL;
	struct block_cbw *c;

	pthread_mutex_lock(&bs->gate_lock);
	c = bs->cbw;
	bs->cbw = NULL;
	if (c) {
		go = cbw_release(c, true);
		pthread_cond_broadcast(&bs->gate_cond);
	}
	pthread_mutex_unlock(&bs->gate_lock);
	cbw_free(c);
	if (go) {
		block_aio_resubmit(go);
	}
}

/* ---- dirty bitmaps ---- */

/* @dst gets every granule of @src's set granules (granularities may differ). */
static void granules_or(struct granules *dst, const struct granules *src)
{
	for (uint64_t i = 0; i < src->nbits; i++) {
		if (src->bits[i / 64] == 0 && i % 64 == 0) {
			i += 63;
			continue;
		}
		if (granule_test(src, i)) {
			granules_change(dst, i * src->granularity, src->granularity, true);
		}
	}
}

/*
 * The node was resized: each dirty bitmap covers its new length, keeping
 * its marks below. A bitmap whose new size cannot be allocated keeps its
 * old one, all marked (writes past it go unrecorded).
 */
static void bitmaps_resize(struct block_node *bs)
{
	pthread_mutex_lock(&bs->gate_lock);
	for (struct dirty_bitmap *b = bs->bitmaps; b; b = b->next) {
		struct granules *g = NULL;

		if (granules_new(bs, b->g->granularity, &g, NULL) < 0) {
			granules_change(b->g, 0, b->g->nbits * b->g->granularity, true);
			continue;
		}
		for (uint64_t i = 0; i < MIN(g->nbits, b->g->nbits); i++) {
			if (granule_test(b->g, i)) {
				granules_change(g, i * g->granularity, g->granularity, true);
			}
		}
		free(b->g);
		b->g = g;
	}
	pthread_mutex_unlock(&bs->gate_lock);
}

static struct dirty_bitmap *bitmap_find(struct block_node *bs, const char *name)
{
	for (struct dirty_bitmap *b = bs->bitmaps; b; b = b->next) {
		if (strcmp(b->name, name) == 0) {
			return b;
		}
	}
	return NULL;
}

static void bitmap_free(struct dirty_bitmap *b)
{
	if (b) {
		free(b->name);
		free(b->g);
		free(b->taken);
		free(b);
	}
}

static void bitmaps_free(struct dirty_bitmap *list)
{
	while (list) {
		struct dirty_bitmap *b = list;

		list = b->next;
		bitmap_free(b);
	}
}

/* Under gate_lock: @name, not busy (QEMU's bdrv_dirty_bitmap_check). */
static struct dirty_bitmap *bitmap_usable(struct block_node *bs, const char *name,
					  struct error **errp)
{
	struct dirty_bitmap *b = bitmap_find(bs, name);

	if (!b) {
		error_set(errp, ENOENT, "Dirty bitmap '%s' not found", name);
	} else if (b->busy) {
		error_set(errp, EBUSY,
			  "Bitmap '%s' is currently in use by another operation and cannot be used",
			  name);
		b = NULL;
	}
	return b;
}

int block_dirty_bitmap_check_add(struct block_node *bs, const char *name, uint64_t granularity,
				 struct error **errp)
{
	uint64_t bytes;

	if (!granularity) {
		granularity = BLOCK_DIRTY_BITMAP_GRANULARITY;
	}
	if (!*name) {
		return error_set(errp, EINVAL, "Bitmap name cannot be empty");
	}
	if (strlen(name) > BLOCK_DIRTY_BITMAP_MAX_NAME) {
		return error_set(errp, EINVAL, "Bitmap name too long: %s", name);
	}
	if (granularity < 512 || !IS_POWER_OF_2(granularity)) {
		return error_set(errp, EINVAL, "Granularity must be power of 2 and at least 512");
	}
	bytes = (block_length(bs) / granularity + 64) / 64 * sizeof(uint64_t);
	if (bytes > BLOCK_MAX_DIRTY_BITMAP_BYTES) {
		return error_set(
			errp, ENOSPC,
			"Bitmap '%s' would take %" PRIu64
			" MiB (a node's bitmaps at most %u MiB): choose a larger granularity",
			name, bytes >> 20, BLOCK_MAX_DIRTY_BITMAP_BYTES >> 20);
	}
	return 0;
}

int block_dirty_bitmap_add(struct block_node *bs, const char *name, uint64_t granularity,
			   bool disabled, struct error **errp)
{
	struct dirty_bitmap *b;
	uint64_t bytes;
	unsigned n = 0;
	int r = block_dirty_bitmap_check_add(bs, name, granularity, errp);

	if (r < 0) {
		return r;
	}
	if (!granularity) {
		granularity = BLOCK_DIRTY_BITMAP_GRANULARITY;
	}
	b = calloc(1, sizeof(*b));
	if (!b || !(b->name = strdup(name))) {
		bitmap_free(b);
		return error_set(errp, ENOMEM, "out of memory");
	}
	r = granules_new(bs, granularity, &b->g, errp);
	if (r < 0) {
		bitmap_free(b);
		return r;
	}
	b->recording = !disabled;
	bytes = (b->g->nbits + 63) / 64 * sizeof(uint64_t);
	pthread_mutex_lock(&bs->gate_lock);
	for (struct dirty_bitmap *o = bs->bitmaps; o; o = o->next) {
		n++;
		bytes += (o->g->nbits + 63) / 64 * sizeof(uint64_t);
	}
	if (bitmap_find(bs, name)) {
		r = error_set(errp, EEXIST, "Bitmap already exists: %s", name);
	} else if (n >= BLOCK_MAX_DIRTY_BITMAPS) {
		r = error_set(errp, ENOSPC, "A node has at most %d dirty bitmaps",
			      BLOCK_MAX_DIRTY_BITMAPS);
	} else if (bytes > BLOCK_MAX_DIRTY_BITMAP_BYTES) {
		/* a client-chosen size: bounded per node */
		r = error_set(errp, ENOSPC,
			      "Bitmap '%s' would bring the node's bitmaps to %" PRIu64
			      " MiB (at most %u MiB): choose a larger granularity",
			      name, bytes >> 20, BLOCK_MAX_DIRTY_BITMAP_BYTES >> 20);
	} else {
		b->next = bs->bitmaps;
		bs->bitmaps = TAKE_PTR(b);
	}
	pthread_mutex_unlock(&bs->gate_lock);
	bitmap_free(b);
	return r;
}

int block_dirty_bitmap_remove(struct block_node *bs, const char *name, struct error **errp)
{
	struct dirty_bitmap *b;

	pthread_mutex_lock(&bs->gate_lock);
	b = bitmap_usable(bs, name, errp);
	if (b) {
		struct dirty_bitmap **pp = &bs->bitmaps;

		while (*pp != b) {
			pp = &(*pp)->next;
		}
		*pp = b->next;
	}
	pthread_mutex_unlock(&bs->gate_lock);
	bitmap_free(b);
	return b ? 0 : -ENOENT;
}

int block_dirty_bitmap_change(struct block_node *bs, const char *name,
			      enum block_dirty_bitmap_op op, struct error **errp)
{
	struct dirty_bitmap *b;

	pthread_mutex_lock(&bs->gate_lock);
	b = op == BLOCK_DIRTY_BITMAP_RELEASE ? bitmap_find(bs, name)
					     : bitmap_usable(bs, name, errp);
	if (b && op == BLOCK_DIRTY_BITMAP_CLEAR) {
		memset(b->g->bits, 0, (b->g->nbits + 63) / 64 * sizeof(uint64_t));
		b->g->count = 0;
	} else if (b && (op == BLOCK_DIRTY_BITMAP_HOLD || op == BLOCK_DIRTY_BITMAP_RELEASE)) {
		b->busy = op == BLOCK_DIRTY_BITMAP_HOLD;
	} else if (b) {
		b->recording = op == BLOCK_DIRTY_BITMAP_ENABLE;
	}
	pthread_mutex_unlock(&bs->gate_lock);
	return b ? 0 : -ENOENT;
}

/* What block_dirty_bitmap_save() keeps of a bitmap. */
struct block_dirty_bitmap_state {
	char *name;
	bool recording;
	struct granules *g; /* NULL: the recording state only */
};

struct block_dirty_bitmap_state *block_dirty_bitmap_save(struct block_node *bs, const char *name,
							 bool marks, uint64_t *ret_bytes,
							 struct error **errp)
{
	struct block_dirty_bitmap_state *st = calloc(1, sizeof(*st));
	struct dirty_bitmap *b;
	size_t size = 0;

	if (!st || !(st->name = strdup(name))) {
		block_dirty_bitmap_state_free(st);
		error_set(errp, ENOMEM, "out of memory");
		return NULL;
	}
	pthread_mutex_lock(&bs->gate_lock);
	b = bitmap_usable(bs, name, errp);
	if (b) {
		st->recording = b->recording;
		size = sizeof(*b->g) + (b->g->nbits + 63) / 64 * sizeof(uint64_t);
	}
	if (b && marks && (st->g = malloc(size))) {
		memcpy(st->g, b->g, size);
	} else if (b && marks) {
		error_set(errp, ENOMEM, "out of memory");
		b = NULL;
	}
	pthread_mutex_unlock(&bs->gate_lock);
	if (!b) {
		block_dirty_bitmap_state_free(st);
		return NULL;
	}
	*ret_bytes = marks ? size : 0;
	return st;
}

void block_dirty_bitmap_restore(struct block_node *bs, struct block_dirty_bitmap_state *st)
{
	struct dirty_bitmap *b;

	pthread_mutex_lock(&bs->gate_lock);
	b = bitmap_find(bs, st->name);
	if (b) {
		b->recording = st->recording;
	}
	if (b && st->g && st->g->nbits == b->g->nbits) {
		memcpy(b->g->bits, st->g->bits, (st->g->nbits + 63) / 64 * sizeof(uint64_t));
		b->g->count = st->g->count;
	} else if (b && st->g) {
		granules_or(b->g, st->g); /* resized meanwhile: no mark lost */
	}
	pthread_mutex_unlock(&bs->gate_lock);
	block_dirty_bitmap_state_free(st);
}

void block_dirty_bitmap_state_free(struct block_dirty_bitmap_state *st)
{
	if (st) {
		free(st->name);
		free(st->g);
		free(st);
	}
}

/* Both nodes' gate locks, in address order (a merge may read another node's bitmap). */
static void lock_two(struct block_node *a, struct block_node *b)
{
	pthread_mutex_lock(a < b ? &a->gate_lock : &b->gate_lock);
	if (a != b) {
		pthread_mutex_lock(a < b ? &b->gate_lock : &a->gate_lock);
	}
}

static void unlock_two(struct block_node *a, struct block_node *b)
{
	pthread_mutex_unlock(&a->gate_lock);
	if (a != b) {
		pthread_mutex_unlock(&b->gate_lock);
	}
}

int block_dirty_bitmap_merge(struct block_node *bs, const char *target, struct block_node *src_bs,
			     const char *src, struct error **errp)
{
	struct dirty_bitmap *t, *s;
	int r = 0;

	lock_two(bs, src_bs);
	t = bitmap_usable(bs, target, errp);
	s = t ? bitmap_usable(src_bs, src, errp) : NULL; /* as QEMU 7.2, not from a busy one */
	if (!t || !s) {
		r = -ENOENT;
	} else if (block_length(bs) != block_length(src_bs)) {
		r = error_set(errp, EINVAL,
			      "Bitmaps are of different sizes (destination size is %" PRIu64
			      ", source size is %" PRIu64 ") and can't be merged",
			      block_length(bs), block_length(src_bs));
	} else {
		granules_or(t->g, s->g);
	}
	unlock_two(bs, src_bs);
	return r;
}

json_t *block_dirty_bitmap_info(struct block_node *bs)
{
	json_t *list = json_array();

	pthread_mutex_lock(&bs->gate_lock);
	for (struct dirty_bitmap *b = bs->bitmaps; b && list; b = b->next) {
		json_array_append_new(
			list, json_pack("{s:s, s:b, s:b, s:b, s:I, s:I}", "name", b->name,
					"recording", b->recording, "persistent", 0, "busy", b->busy,
					"granularity", (json_int_t)b->g->granularity, "count",
					(json_int_t)MIN(b->g->count * b->g->granularity,
							block_length(bs))));
	}
	pthread_mutex_unlock(&bs->gate_lock);
	return list;
}

int block_dirty_bitmap_check(struct block_node *bs, const char *name, struct error **errp)
{
	struct dirty_bitmap *b;

	pthread_mutex_lock(&bs->gate_lock);
	b = bitmap_usable(bs, name, errp);
	pthread_mutex_unlock(&bs->gate_lock);
	return b ? 0 : -ENOENT;
}

bool block_dirty_bitmap_exists(struct block_node *bs, const char *name, bool *ret_busy)
{
	struct dirty_bitmap *b;

	pthread_mutex_lock(&bs->gate_lock);
	b = bitmap_find(bs, name);
	*ret_busy = b && b->busy;
	pthread_mutex_unlock(&bs->gate_lock);
	return b != NULL;
}

int block_dirty_bitmap_begin_backup(struct block_node *bs, const char *name, bool copy, bool clear,
				    struct error **errp)
{
	struct dirty_bitmap *b;
	struct granules *taken = NULL;
	int r = 0;

	pthread_mutex_lock(&bs->gate_lock);
	b = bitmap_usable(bs, name, errp);
	if (!b) {
		r = -ENOENT;
	} else if (!bs->cbw) {
		r = error_set(errp, EINVAL, "no copy tracker on '%s'", bs->filename);
	} else if (clear &&
		   !(taken = malloc(sizeof(*taken) + (b->g->nbits + 63) / 64 * sizeof(uint64_t)))) {
		r = error_set(errp, ENOMEM, "out of memory");
	} else {
		if (copy) {
			/* the backup copies what the bitmap has recorded, nothing else */
			memset(bs->cbw->todo->bits, 0,
			       (bs->cbw->todo->nbits + 63) / 64 * sizeof(uint64_t));
			bs->cbw->todo->count = 0;
			granules_or(bs->cbw->todo, b->g);
		}
		if (clear) {
			/* from here on it records what the backup does not hold */
			memcpy(taken, b->g,
			       sizeof(*taken) + (b->g->nbits + 63) / 64 * sizeof(uint64_t));
			memset(b->g->bits, 0, (b->g->nbits + 63) / 64 * sizeof(uint64_t));
			b->g->count = 0;
			b->taken = taken;
		}
		b->busy = true;
	}
	pthread_mutex_unlock(&bs->gate_lock);
	return r;
}

void block_dirty_bitmap_end_backup(struct block_node *bs, const char *name, bool restore,
				   bool add_uncopied)
{
	struct dirty_bitmap *b;

	pthread_mutex_lock(&bs->gate_lock);
	b = bitmap_find(bs, name);
	if (b) {
		if (restore && b->taken) {
			granules_or(b->g, b->taken);
		} else if (add_uncopied && b->taken && bs->cbw) {
			granules_or(b->g, bs->cbw->todo);
		}
		free(TAKE_PTR(b->taken));
		b->busy = false;
	}
	pthread_mutex_unlock(&bs->gate_lock);
}

int block_check_request(struct block_node *bs, uint64_t offset, uint64_t len, bool write)
{
	if (write && bs->read_only) {
		return -EPERM;
	}
	if (bs->growable) {
		return range_within(offset, len, BLOCK_MAX_GROWABLE) ? 0 : -EINVAL;
	}
	return range_within(offset, len, block_length(bs)) ? 0 : -EINVAL;
}

static bool iov_aligned(const struct iovec *iov, unsigned cnt, uint32_t align)
{
	for (unsigned i = 0; i < cnt; i++) {
		if (!IS_ALIGNED((uintptr_t)iov[i].iov_base, align) ||
		    !IS_ALIGNED(iov[i].iov_len, align)) {
			return false;
		}
	}
	return true;
}

bool block_request_aligned(struct block_node *bs, uint64_t offset, const struct iovec *iov,
			   unsigned cnt, uint64_t len)
{
	uint32_t a = bs->alignment;

	return a <= 1 || (IS_ALIGNED(offset, a) && IS_ALIGNED(len, a) && iov_aligned(iov, cnt, a));
}

/* Read [offset, offset+len) of a node needing alignment through a bounce buffer. */
static int bounce_preadv(struct block_node *bs, uint64_t offset, const struct iovec *iov,
			 unsigned cnt, uint64_t len)
{
	uint32_t a = bs->alignment;
	uint64_t start = ALIGN_DOWN(offset, (uint64_t)a);
	uint64_t end = ALIGN_UP(offset + len, (uint64_t)a);
	struct iovec biov;
	void *buf;
	int r;

	if (end - start > SIZE_MAX / 2 ||
	    posix_memalign(&buf, MAX(a, BLOCK_BOUNCE_ALIGN), end - start) != 0) {
		return -ENOMEM;
	}
	biov.iov_base = buf;
	biov.iov_len = end - start;
	r = bs->drv->preadv(bs, start, &biov, 1, end - start);
	if (r >= 0) {
		iov_from_buf(iov, cnt, 0, (char *)buf + (offset - start), len);
	}
	free(buf);
	return r;
}

/* Write through a bounce buffer: read the partial head and tail, merge, write. */
static int bounce_pwritev(struct block_node *bs, uint64_t offset, const struct iovec *iov,
			  unsigned cnt, uint64_t len)
{
	uint32_t a = bs->alignment;
	uint64_t start = ALIGN_DOWN(offset, (uint64_t)a);
	uint64_t end = ALIGN_UP(offset + len, (uint64_t)a);
	struct iovec biov;
	char *buf;
	int r = 0;

	if (end - start > SIZE_MAX / 2 ||
	    posix_memalign((void **)&buf, MAX(a, BLOCK_BOUNCE_ALIGN), end - start) != 0) {
		return -ENOMEM;
	}
	pthread_mutex_lock(&bs->rmw_lock);
	if (start != offset) {
		biov = (struct iovec){buf, a};
		r = bs->drv->preadv(bs, start, &biov, 1, a);
	}
	if (r >= 0 && end != offset + len && (end - a > start || start == offset)) {
		biov = (struct iovec){buf + (end - a - start), a};
		r = bs->drv->preadv(bs, end - a, &biov, 1, a);
	}
	if (r >= 0) {
		iov_to_buf(iov, cnt, 0, buf + (offset - start), len);
		biov = (struct iovec){buf, end - start};
		r = bs->drv->pwritev(bs, start, &biov, 1, end - start);
	}
	pthread_mutex_unlock(&bs->rmw_lock);
	free(buf);
	return r;
}

int block_do_preadv(struct block_node *bs, uint64_t offset, const struct iovec *iov, unsigned cnt,
		    uint64_t len)
{
	if (len == 0) {
		return 0;
	}
	if (!block_request_aligned(bs, offset, iov, cnt, len)) {
		return bounce_preadv(bs, offset, iov, cnt, len);
	}
	return bs->drv->preadv(bs, offset, iov, cnt, len);
}

int block_do_pwritev(struct block_node *bs, uint64_t offset, const struct iovec *iov, unsigned cnt,
		     uint64_t len)
{
	if (len == 0) {
		return 0;
	}
	stat_max(&bs->stats.wr_highest_offset, offset + len);
	if (!block_request_aligned(bs, offset, iov, cnt, len)) {
		return bounce_pwritev(bs, offset, iov, cnt, len);
	}
	return bs->drv->pwritev(bs, offset, iov, cnt, len);
}

void block_note_write_end(struct block_node *bs, uint64_t end)
{
	stat_max(&bs->stats.wr_highest_offset, end);
}

void block_account(struct block_node *bs, enum block_op op, uint64_t bytes, int ret,
		   uint64_t start_ns)
{
	uint64_t now = now_ns(), dt = now - start_ns;
	struct block_stats *st = &bs->stats;

	switch (op) {
	case BLOCK_OP_READ:
		stat_add(ret < 0 ? &st->rd_failed : &st->rd_ops, 1);
		if (ret >= 0) {
			stat_add(&st->rd_bytes, bytes);
		}
		stat_add(&st->rd_total_ns, dt);
		break;
	case BLOCK_OP_WRITE:
		stat_add(ret < 0 ? &st->wr_failed : &st->wr_ops, 1);
		if (ret >= 0) {
			stat_add(&st->wr_bytes, bytes);
		}
		stat_add(&st->wr_total_ns, dt);
		break;
	case BLOCK_OP_FLUSH:
		stat_add(ret < 0 ? &st->flush_failed : &st->flush_ops, 1);
		stat_add(&st->flush_total_ns, dt);
		break;
	case BLOCK_OP_DISCARD:
		stat_add(ret < 0 ? &st->discard_failed : &st->discard_ops, 1);
		if (ret >= 0) {
			stat_add(&st->discard_bytes, bytes);
		}
		stat_add(&st->discard_total_ns, dt);
		break;
	case BLOCK_OP_WRITE_ZEROES:
		stat_add(ret < 0 ? &st->zero_failed : &st->zero_ops, 1);
		if (ret >= 0) {
			stat_add(&st->zero_bytes, bytes);
		}
		stat_add(&st->zero_total_ns, dt);
		break;
	}
	stat_set(&st->last_ns, now);
}

void block_account_merged(struct block_node *bs, enum block_op op, unsigned n, int ret,
			  uint64_t start_ns)
{
	struct block_stats *st = &bs->stats;
	uint64_t now = now_ns(), dt = (now - start_ns) * n;

	if (op == BLOCK_OP_READ) {
		stat_add(&st->rd_merged, n);
		stat_add(ret < 0 ? &st->rd_failed : &st->rd_ops, n);
		stat_add(&st->rd_total_ns, dt);
	} else if (op == BLOCK_OP_WRITE) {
		stat_add(&st->wr_merged, n);
		stat_add(ret < 0 ? &st->wr_failed : &st->wr_ops, n);
		stat_add(&st->wr_total_ns, dt);
	}
}

void block_account_invalid(struct block_node *bs, enum block_op op)
{
	struct block_stats *st = &bs->stats;

	switch (op) {
	case BLOCK_OP_READ:
		stat_add(&st->rd_invalid, 1);
		break;
	case BLOCK_OP_WRITE:
	case BLOCK_OP_WRITE_ZEROES:
		stat_add(&st->wr_invalid, 1);
		break;
	case BLOCK_OP_FLUSH:
		stat_add(&st->flush_invalid, 1);
		break;
	case BLOCK_OP_DISCARD:
		stat_add(&st->discard_invalid, 1);
		break;
	}
	stat_set(&st->last_ns, now_ns());
}

uint64_t block_stats_now_ns(void)
{
	return now_ns();
}

uint64_t block_now_ns(void)
{
	return now_ns();
}

int block_preadv(struct block_node *bs, uint64_t offset, const struct iovec *iov, unsigned cnt)
{
	uint64_t len, t0;
	int r;

	if (cnt > BLOCK_MAX_IOV) {
		return -EINVAL;
	}
	len = iov_size(iov, cnt);
	r = block_check_request(bs, offset, len, false);
	if (r < 0) {
		return r;
	}
	block_gate_enter(bs, BLOCK_OP_READ, offset, len);
	t0 = now_ns();
	r = block_do_preadv(bs, offset, iov, cnt, len);
	block_account(bs, BLOCK_OP_READ, len, r, t0);
	block_gate_exit(bs, BLOCK_OP_READ, offset, len);
	return r < 0 ? r : 0;
}

int block_pwritev(struct block_node *bs, uint64_t offset, const struct iovec *iov, unsigned cnt)
{
	uint64_t len, t0;
	int r;

	if (cnt > BLOCK_MAX_IOV) {
		return -EINVAL;
	}
	len = iov_size(iov, cnt);
	r = block_check_request(bs, offset, len, true);
	if (r < 0) {
		return r;
	}
	block_gate_enter(bs, BLOCK_OP_WRITE, offset, len);
	t0 = now_ns();
	r = block_do_pwritev(bs, offset, iov, cnt, len);
	block_account(bs, BLOCK_OP_WRITE, len, r, t0);
	block_gate_exit(bs, BLOCK_OP_WRITE, offset, len);
	return r < 0 ? r : 0;
}

int block_pread(struct block_node *bs, uint64_t offset, void *buf, size_t len)
{
	struct iovec iov = {buf, len};

	return block_preadv(bs, offset, &iov, 1);
}

int block_pwrite(struct block_node *bs, uint64_t offset, const void *buf, size_t len)
{
	struct iovec iov = {(void *)buf, len};

	return block_pwritev(bs, offset, &iov, 1);
}

int block_do_flush(struct block_node *bs)
{
	int r = 0;

	if (bs->read_only) {
		return 0;
	}
	if (bs->drv->flush && !(!bs->file && (bs->flags & BLOCK_O_NO_FLUSH))) {
		r = bs->drv->flush(bs);
	}
	if (r >= 0 && bs->file) {
		r = block_do_flush(bs->file);
	}
	return r;
}

int block_set_active(struct block_node *bs, bool active, struct error **errp)
{
	if (!active && !bs->read_only) {
		int r = block_flush(bs);

		if (r < 0) {
			return error_set_errno(errp, -r, "could not flush '%s'", bs->filename);
		}
	}
	for (struct block_node *n = bs; n; n = n->file) {
		if (n->drv == &file_driver) {
			const struct file_state *fs = n->opaque;
			int r = !fs->locked ? 0 /* opened with locking=off */
					    : file_set_lock(n,
							    !active	   ? F_UNLCK
							    : n->read_only ? F_RDLCK
									   : F_WRLCK,
							    errp);

			if (r < 0) {
				return r;
			}
		} else if (n->drv->set_active) {
			int r = n->drv->set_active(n, active, errp);

			if (r < 0) {
				return r;
			}
		}
	}
	return 0;
}

int block_flush(struct block_node *bs)
{
	uint64_t t0;
	int r;

	block_gate_enter(bs, BLOCK_OP_FLUSH, 0, 0);
	t0 = now_ns();
	r = block_do_flush(bs);
	block_account(bs, BLOCK_OP_FLUSH, 0, r, t0);
	block_gate_exit(bs, BLOCK_OP_FLUSH, 0, 0);
	return r;
}

int block_do_discard(struct block_node *bs, uint64_t offset, uint64_t len)
{
	int r;

	if (!(bs->flags & BLOCK_O_UNMAP) || !bs->drv->discard || len == 0) {
		return 0;
	}
	r = bs->drv->discard(bs, offset, len);
	/* A discard is advisory: a protocol that cannot do it has done nothing wrong. */
	return r == -ENOTSUP || r == -EOPNOTSUPP ? 0 : r;
}

int block_discard(struct block_node *bs, uint64_t offset, uint64_t len)
{
	int r = block_check_request(bs, offset, len, true);

	if (r < 0) {
		return r;
	}
	block_gate_enter(bs, BLOCK_OP_DISCARD, offset, len);
	r = block_do_discard(bs, offset, len);
	block_account(bs, BLOCK_OP_DISCARD, len, r, now_ns());
	block_gate_exit(bs, BLOCK_OP_DISCARD, offset, len);
	return r;
}

int block_do_write_zeroes(struct block_node *bs, uint64_t offset, uint64_t len, unsigned flags)
{
	size_t chunk;
	void *buf;
	int r = -ENOTSUP;

	if (len == 0) {
		return 0;
	}
	if (!(bs->flags & BLOCK_O_UNMAP)) {
		flags &= ~BLOCK_ZERO_MAY_UNMAP;
	}
	stat_max(&bs->stats.wr_highest_offset, offset + len);
	if (bs->drv->write_zeroes) {
		r = bs->drv->write_zeroes(bs, offset, len, flags);
		if (r != -ENOTSUP && r != -EOPNOTSUPP) {
			return r;
		}
	}
	chunk = MIN(len, BLOCK_ZERO_CHUNK);
	if (posix_memalign(&buf, BLOCK_BOUNCE_ALIGN, chunk) != 0) {
		return -ENOMEM;
	}
	memset(buf, 0, chunk);
	r = 0;
	while (len > 0 && r >= 0) {
		size_t n = MIN(len, chunk);
		struct iovec iov = {buf, n};

		r = block_do_pwritev(bs, offset, &iov, 1, n);
		offset += n;
		len -= n;
	}
	free(buf);
	return r;
}

int block_write_zeroes(struct block_node *bs, uint64_t offset, uint64_t len, unsigned flags)
{
	int r = block_check_request(bs, offset, len, true);
	uint64_t t0;

	if (r < 0) {
		return r;
	}
	block_gate_enter(bs, BLOCK_OP_WRITE_ZEROES, offset, len);
	t0 = now_ns();
	r = block_do_write_zeroes(bs, offset, len, flags);
	block_account(bs, BLOCK_OP_WRITE_ZEROES, len, r, t0);
	block_gate_exit(bs, BLOCK_OP_WRITE_ZEROES, offset, len);
	return r;
}

int block_truncate(struct block_node *bs, uint64_t len, struct error **errp)
{
	int r;

	if (bs->read_only) {
		return error_set(errp, EPERM, "cannot resize '%s': opened read-only", bs->filename);
	}
	if (!bs->drv->truncate) {
		return error_set(errp, ENOTSUP, "format '%s' of '%s' cannot be resized",
				 bs->drv->name, bs->filename);
	}
	if (len > BLOCK_MAX_GROWABLE) {
		return error_set(errp, EINVAL, "size %" PRIu64 " of '%s' exceeds %" PRIu64, len,
				 bs->filename, BLOCK_MAX_GROWABLE);
	}
	r = bs->drv->truncate(bs, len, errp);
	if (r == 0) {
		bitmaps_resize(bs);
	}
	return r;
}

int block_get_status(struct block_node *bs, uint64_t offset, uint64_t len, uint64_t *ret_pnum,
		     unsigned *ret_status, uint64_t *ret_file_offset)
{
	uint64_t pnum = len, file_off = UINT64_MAX;
	unsigned status = BLOCK_STATUS_DATA | BLOCK_STATUS_ALLOCATED;
	int r;

	if (len == 0 || block_check_request(bs, offset, len, false) < 0) {
		return -EINVAL;
	}
	if (bs->drv->block_status) {
		r = bs->drv->block_status(bs, offset, len, &pnum, &status, &file_off);
		if (r < 0) {
			return r;
		}
		if (pnum == 0 || pnum > len) {
			return -EIO;
		}
	} else if (bs->drv->is_protocol) {
		file_off = offset;
	}
	*ret_pnum = pnum;
	*ret_status = status;
	if (ret_file_offset) {
		*ret_file_offset = file_off;
	}
	return 0;
}

void block_get_stats(struct block_node *bs, struct block_stats *ret)
{
	const uint64_t *src = (const uint64_t *)&bs->stats;
	uint64_t *dst = (uint64_t *)ret;

	for (size_t i = 0; i < sizeof(*ret) / sizeof(uint64_t); i++) {
		dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
	}
}

/* QEMU's ImageInfo for one node and, recursively, its backing chain. */
static json_t *image_info(struct block_node *bs, unsigned depth)
{
	json_t *img = json_object();
	struct block_node *data = bs->file ? bs->file : bs;

	json_object_set_new(img, "filename", json_string(bs->filename));
	json_object_set_new(img, "format", json_string(bs->drv->name));
	json_object_set_new(img, "virtual-size", json_integer((json_int_t)block_length(bs)));
	if (data->drv->is_protocol && strcmp(data->drv->name, "file") == 0) {
		json_object_set_new(img, "actual-size",
				    json_integer((json_int_t)file_actual_size(data)));
	}
	if (bs->drv->info) {
		bs->drv->info(bs, img);
	}
	if (bs->backing && depth < 64) {
		/* the driver names the backing file as recorded; add the resolved path */
		if (!json_object_get(img, "backing-filename")) {
			json_object_set_new(img, "backing-filename",
					    json_string(bs->backing->filename));
		}
		if (!json_object_get(img, "backing-filename-format")) {
			json_object_set_new(img, "backing-filename-format",
					    json_string(bs->backing->drv->name));
		}
		json_object_set_new(img, "full-backing-filename",
				    json_string(bs->backing->filename));
		json_object_set_new(img, "backing-image", image_info(bs->backing, depth + 1));
	}
	return img;
}

/* QEMU's BlockDeviceStats from @st; @device: the accounting of a device's disk. */
static json_t *device_stats_json(const struct block_stats *st, bool device)
{
	uint64_t now = now_ns();
	json_t *o = json_object();

#define SET(key, v) json_object_set_new(o, key, json_integer((json_int_t)(v)))
	SET("rd_bytes", st->rd_bytes);
	SET("wr_bytes", st->wr_bytes + st->zero_bytes);
	SET("unmap_bytes", st->discard_bytes);
	SET("rd_operations", st->rd_ops);
	SET("wr_operations", st->wr_ops + st->zero_ops);
	SET("flush_operations", st->flush_ops);
	SET("unmap_operations", st->discard_ops);
	SET("rd_total_time_ns", st->rd_total_ns);
	SET("wr_total_time_ns", st->wr_total_ns + st->zero_total_ns);
	SET("flush_total_time_ns", st->flush_total_ns);
	SET("unmap_total_time_ns", st->discard_total_ns);
	SET("wr_highest_offset", st->wr_highest_offset);
	SET("rd_merged", st->rd_merged);
	SET("wr_merged", st->wr_merged);
	SET("unmap_merged", 0); /* vmmd merges reads and writes only */
	if (st->last_ns && now >= st->last_ns) {
		SET("idle_time_ns", now - st->last_ns);
	}
	SET("failed_rd_operations", st->rd_failed);
	SET("failed_wr_operations", st->wr_failed + st->zero_failed);
	SET("failed_flush_operations", st->flush_failed);
	SET("failed_unmap_operations", st->discard_failed);
	SET("invalid_rd_operations", st->rd_invalid);
	SET("invalid_wr_operations", st->wr_invalid);
	SET("invalid_flush_operations", st->flush_invalid);
	SET("invalid_unmap_operations", st->discard_invalid);
#undef SET
	json_object_set_new(o, "account_invalid", json_boolean(device));
	json_object_set_new(o, "account_failed", json_boolean(device));
	json_object_set_new(o, "timed_stats", json_array()); /* no stats-intervals */
	return o;
}

static json_t *stats_json_locked(struct block_node *bs)
{
	struct block_stats st;
	json_t *o = json_object();

	block_get_stats(bs, &st);
	json_object_set_new(o, "stats", device_stats_json(&st, true));
	if (bs->node_name) {
		json_object_set_new(o, "node-name", json_string(bs->node_name));
	}
	if (bs->file) {
		struct block_stats fst, zero = {0};
		json_t *parent = json_object();

		block_get_stats(bs->file, &fst);
		zero.wr_highest_offset = fst.wr_highest_offset;
		json_object_set_new(parent, "stats", device_stats_json(&zero, false));
		if (bs->file->node_name) {
			json_object_set_new(parent, "node-name", json_string(bs->file->node_name));
		}
		if (!strcmp(bs->file->drv->name, "file")) {
			json_object_set_new(
				parent, "driver-specific",
				json_pack("{s:s, s:I, s:I, s:I}", "driver", "file", "discard-nb-ok",
					  (json_int_t)fst.discard_ops, "discard-nb-failed",
					  (json_int_t)fst.discard_failed, "discard-bytes-ok",
					  (json_int_t)fst.discard_bytes));
		}
		json_object_set_new(o, "parent", parent);
	}
	return o;
}

pthread_rwlock_t block_graph_lock = PTHREAD_RWLOCK_INITIALIZER;

/* @describe(@bs) with the graph held still. */
static json_t *graph_read(json_t *(*describe)(struct block_node *bs), struct block_node *bs)
{
	json_t *o;

	pthread_rwlock_rdlock(&block_graph_lock);
	o = describe(bs);
	pthread_rwlock_unlock(&block_graph_lock);
	return o;
}

json_t *block_stats_json(struct block_node *bs)
{
	return graph_read(stats_json_locked, bs);
}

static json_t *info_json_locked(struct block_node *bs)
{
	json_t *info = json_object();
	unsigned depth = 0;

	for (struct block_node *b = bs->backing; b && depth < 64; b = b->backing) {
		depth++;
	}
	json_object_set_new(info, "file", json_string(bs->filename));
	if (bs->node_name) {
		json_object_set_new(info, "node-name", json_string(bs->node_name));
	}
	json_object_set_new(info, "ro", json_boolean(bs->read_only));
	json_object_set_new(info, "drv", json_string(bs->drv->name));
	if (bs->backing) {
		json_object_set_new(info, "backing_file", json_string(bs->backing->filename));
	}
	json_object_set_new(info, "backing_file_depth", json_integer(depth));
	json_object_set_new(info, "encrypted", json_false());
	json_object_set_new(info, "detect_zeroes", json_string("off"));
	/* QEMU's throttle members: 0 is "no limit", and vmmd throttles nothing */
	for (const char *const *k = (const char *const[]){"bps", "bps_rd", "bps_wr", "iops",
							  "iops_rd", "iops_wr", NULL};
	     *k; k++) {
		json_object_set_new(info, *k, json_integer(0));
	}
	json_object_set_new(info, "write_threshold", json_integer(0)); /* none set */
	if (bs->bitmaps) {
		json_object_set_new(info, "dirty-bitmaps", block_dirty_bitmap_info(bs));
	}
	json_object_set_new(info, "cache",
			    json_pack("{s:b, s:b, s:b}", "writeback", 1, "direct",
				      (bs->flags & BLOCK_O_NOCACHE) != 0, "no-flush", 0));
	json_object_set_new(info, "image", image_info(bs, 0));
	return info;
}

json_t *block_info_json(struct block_node *bs)
{
	return graph_read(info_json_locked, bs);
}

bool block_can_snapshot(struct block_node *bs)
{
	return bs->drv->snapshot_create != NULL;
}

int block_snapshot_create(struct block_node *bs, const char *name, struct error **errp)
{
	return block_snapshot_create_vm(bs, name, NULL, errp);
}

int block_snapshot_create_vm(struct block_node *bs, const char *name,
			     const struct block_snapshot_vm *vm, struct error **errp)
{
	if (!bs->drv->snapshot_create) {
		return error_set(errp, ENOTSUP, "format '%s' of '%s' has no internal snapshots",
				 bs->drv->name, bs->filename);
	}
	if (bs->read_only) {
		return error_set(errp, EPERM, "cannot create a snapshot: '%s' is read-only",
				 bs->filename);
	}
	return bs->drv->snapshot_create(bs, name, vm, errp);
}

int block_snapshot_apply(struct block_node *bs, const char *name, struct error **errp)
{
	if (!bs->drv->snapshot_apply) {
		return error_set(errp, ENOTSUP, "format '%s' of '%s' has no internal snapshots",
				 bs->drv->name, bs->filename);
	}
	if (bs->read_only) {
		return error_set(errp, EPERM, "cannot apply a snapshot: '%s' is read-only",
				 bs->filename);
	}
	return bs->drv->snapshot_apply(bs, name, errp);
}

int block_snapshot_delete_id(struct block_node *bs, const char *id, const char *name,
			     struct error **errp)
{
	if (!bs->drv->snapshot_delete) {
		return error_set(errp, ENOTSUP, "format '%s' of '%s' has no internal snapshots",
				 bs->drv->name, bs->filename);
	}
	if (bs->read_only) {
		return error_set(errp, EPERM, "cannot delete a snapshot: '%s' is read-only",
				 bs->filename);
	}
	return bs->drv->snapshot_delete(bs, id, name, errp);
}

int block_snapshot_delete(struct block_node *bs, const char *name, struct error **errp)
{
	return block_snapshot_delete_id(bs, NULL, name, errp);
}

json_t *block_snapshot_list(struct block_node *bs, struct error **errp)
{
	if (!bs->drv->snapshot_list) {
		return json_array();
	}
	return bs->drv->snapshot_list(bs, errp);
}

int block_snapshot_find(struct block_node *bs, const char *name, struct block_snapshot_vm *ret)
{
	json_auto_t *list = block_snapshot_list(bs, NULL);
	json_t *e, *hit = NULL;
	size_t i;

	if (!list) {
		return -ENOMEM;
	}
	/* by name first, then by id, as QEMU's bdrv_snapshot_find */
	json_array_foreach (list, i, e) {
		if (!hit && !strcmp(json_string_value(json_object_get(e, "name")) ?: "", name)) {
			hit = e;
		}
	}
	json_array_foreach (list, i, e) {
		if (!hit && !strcmp(json_string_value(json_object_get(e, "id")) ?: "", name)) {
			hit = e;
		}
	}
	if (!hit) {
		return 0;
	}
	if (ret) {
		ret->vm_state_size =
			(uint64_t)json_integer_value(json_object_get(hit, "vm-state-size"));
		ret->vm_clock_ns =
			(uint64_t)json_integer_value(json_object_get(hit, "vm-clock-sec")) *
				1000000000ull +
			(uint64_t)json_integer_value(json_object_get(hit, "vm-clock-nsec"));
		ret->date_sec = (uint32_t)json_integer_value(json_object_get(hit, "date-sec"));
		ret->date_nsec = (uint32_t)json_integer_value(json_object_get(hit, "date-nsec"));
	}
	return 1;
}

static int vmstate_rw(struct block_node *bs, uint64_t pos, void *buf, size_t len, int op)
{
	if (!bs->drv->vmstate_rw) {
		return -ENOTSUP;
	}
	if (op != BLOCK_VMSTATE_READ && bs->read_only) {
		return -EROFS;
	}
	return bs->drv->vmstate_rw(bs, pos, buf, len, op);
}

int block_vmstate_write(struct block_node *bs, uint64_t pos, const void *buf, size_t len)
{
	return vmstate_rw(bs, pos, (void *)buf, len, BLOCK_VMSTATE_WRITE);
}

int block_vmstate_read(struct block_node *bs, uint64_t pos, void *buf, size_t len)
{
	return vmstate_rw(bs, pos, buf, len, BLOCK_VMSTATE_READ);
}

int block_vmstate_discard(struct block_node *bs, uint64_t len)
{
	return vmstate_rw(bs, 0, NULL, len, BLOCK_VMSTATE_DISCARD);
}

int block_check(struct block_node *bs, struct block_check_result *res, unsigned fix,
		struct error **errp)
{
	void (*report)(void *, const char *) = res->report;
	void *opaque = res->report_opaque;

	memset(res, 0, sizeof(*res));
	res->report = report;
	res->report_opaque = opaque;
	if (!bs->drv->check) {
		return error_set(errp, ENOTSUP, "format '%s' of '%s' does not support checks",
				 bs->drv->name, bs->filename);
	}
	if (fix && bs->read_only) {
		return error_set(errp, EPERM, "cannot repair '%s': opened read-only", bs->filename);
	}
	return bs->drv->check(bs, res, fix);
}

int block_pwrite_compressed(struct block_node *bs, uint64_t offset, const void *buf, uint64_t len)
{
	uint64_t t0;
	int r;

	if (!bs->drv->pwrite_compressed) {
		return -ENOTSUP;
	}
	r = block_check_request(bs, offset, len, true);
	if (r < 0) {
		return r;
	}
	block_gate_enter(bs, BLOCK_OP_WRITE, offset, len);
	t0 = now_ns();
	r = bs->drv->pwrite_compressed(bs, offset, buf, len);
	block_account(bs, BLOCK_OP_WRITE, len, r, t0);
	block_gate_exit(bs, BLOCK_OP_WRITE, offset, len);
	return r;
}

int block_amend(struct block_node *bs, json_t *opts, struct error **errp)
{
	if (!bs->drv->amend) {
		return error_set(errp, ENOTSUP,
				 "Format driver '%s' does not support option amendment",
				 bs->drv->name);
	}
	if (bs->read_only) {
		return error_set(errp, EPERM, "cannot amend '%s': it is read-only", bs->filename);
	}
	return bs->drv->amend(bs, opts, errp);
}

int block_bitmap(struct block_node *bs, const struct block_bitmap_req *req, struct error **errp)
{
	if (req->action == BLOCK_BITMAP_ADD && !req->name[0]) {
		return error_set(errp, EINVAL, "Bitmap name cannot be empty");
	}
	if (!bs->drv->bitmap_op) {
		/* QEMU's answers for a format without persistent bitmaps */
		if (req->action == BLOCK_BITMAP_ADD) {
			return error_set(
				errp, ENOTSUP,
				"Can't store persistent bitmaps to %s: Operation not supported",
				bs->node_name ? bs->node_name : bs->filename);
		}
		return error_set(errp, ENOENT, "Dirty bitmap '%s' not found", req->name);
	}
	if (bs->read_only) {
		return error_set(errp, EPERM, "cannot change the bitmaps of '%s': it is read-only",
				 bs->filename);
	}
	return bs->drv->bitmap_op(bs, req, errp);
}

int block_bitmap_read(struct block_node *bs, const char *name, struct block_bitmap_data *ret,
		      struct error **errp)
{
	if (!bs->drv->bitmap_read) {
		return error_set(errp, ENOENT, "Dirty bitmap '%s' not found", name);
	}
	return bs->drv->bitmap_read(bs, name, ret, errp);
}

int block_change_backing(struct block_node *bs, const char *file, const char *fmt,
			 struct error **errp)
{
	if (!bs->drv->change_backing) {
		return error_set(errp, ENOTSUP, "format '%s' of '%s' has no backing file",
				 bs->drv->name, bs->filename);
	}
	if (bs->read_only) {
		return error_set(errp, EPERM, "cannot change the backing file: '%s' is read-only",
				 bs->filename);
	}
	return bs->drv->change_backing(bs, file, fmt, errp);
}
