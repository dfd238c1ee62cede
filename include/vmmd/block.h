/*
 * The block layer's public interface: what virtio-blk, the monitor and
 * vmm-img use. A block node is a format driver (raw, qcow2) layered over a
 * protocol driver (file, nbd); callers hold references to the top node.
 *
 * Threads: synchronous calls may be made from any thread except the
 * daemon's control thread (which must never block on I/O) and except
 * concurrently with block_close() of the same node. Asynchronous requests
 * are submitted on, and complete on, the thread that runs the given
 * struct block_aio_ctx's event loop (a VM's I/O thread). A node's
 * statistics are updated atomically and may be read from any thread.
 *
 * Errors: data-path calls return 0 or -errno; control-path calls also fill
 * struct error **errp with a message naming the image.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include <jansson.h>

#include "common/error.h"

struct block_node;
struct block_aio_ctx;
struct event_base;

enum {
	BLOCK_O_RDWR = 1u << 0,	      /* open read-write (default read-only) */
	BLOCK_O_NOCACHE = 1u << 1,    /* cache=none: O_DIRECT on the file protocol */
	BLOCK_O_NO_BACKING = 1u << 2, /* do not open a qcow2 backing file */
	BLOCK_O_NO_LOCK = 1u << 3,    /* do not take the OFD image lock (tools only) */
	BLOCK_O_UNMAP = 1u << 4,      /* pass discards down to the protocol */
	/*
	 * The format was probed, not given (vmm-img without -f): a raw node
	 * then refuses writes to its first sector that would make the image
	 * probe as another format, as QEMU does for probed raw images.
	 */
	BLOCK_O_PROBED = 1u << 5,
	/*
	 * cache=unsafe (QEMU's BDRV_O_NO_FLUSH; qemu-img convert's default for
	 * its target): a flush still writes a format's cached metadata to its
	 * file, but the protocol never waits for the disk (no fdatasync, not
	 * at close either).
	 */
	BLOCK_O_NO_FLUSH = 1u << 6,
	/*
	 * The opener writes no guest data, only bitmaps or refcounts
	 * (vmm-img bitmap, check -r): a read-write qcow2 open keeps the bitmaps valid
	 * (autoclear bit 0). Without it a read-write open clears the bit, so
	 * programs that track bitmaps see them as stale, as the qcow2 spec
	 * requires of a writer that does not update them.
	 */
	BLOCK_O_BITMAPS = 1u << 7,
	/*
	 * The file protocol's engine, as its "aio" option (QEMU's aio=):
	 * native (Linux AIO; needs BLOCK_O_NOCACHE) or threads (the worker
	 * pool only). Neither: io_uring. The "aio" option of a file node
	 * overrides them.
	 */
	BLOCK_O_AIO_NATIVE = 1u << 8,
	BLOCK_O_AIO_THREADS = 1u << 9,
	/* what a node passes on with its cache mode (reopen, backing, overlay) */
	BLOCK_O_AIO_MASK = BLOCK_O_AIO_NATIVE | BLOCK_O_AIO_THREADS,
};

/*
 * Open @filename with format @format ("raw" or "qcow2"; never probed).
 * @filename is a path, or an NBD URI ("nbd://host[:port]/export",
 * "nbd+unix:///export?socket=PATH"). On success *ret holds one reference.
 */
int block_open(struct block_node **ret, const char *filename, const char *format, unsigned flags,
	       struct error **errp);

/*
 * Open from a QMP blockdev-add style option tree, e.g.
 *   {"driver": "qcow2", "node-name": "d1", "read-only": false, "cache": {"direct": true},
 *    "file": {"driver": "file", "filename": "/x.qcow2"}}
 * Unknown keys are errors. @opts is borrowed.
 */
int block_open_json(struct block_node **ret, json_t *opts, struct error **errp);

/*
 * Detect the format of an image from its first bytes, as qemu-img does:
 * every format driver scores them and the highest score wins; "raw" when
 * none matches (raw is only ever the fallback). For tools (vmm-img); a VM
 * definition always names its format. *ret_format is a static string.
 */
int block_probe_format(const char *filename, const char **ret_format, struct error **errp);

/*
 * Create (or truncate) @filename as a new image of format @format and
 * virtual size @size through the format's driver. @opts (may be NULL) is a
 * JSON object of qemu-img -o style options with string values
 * ({"cluster_size": "65536", "backing_file": "base.qcow2"}); "size" is
 * ignored. Errors name the file and the bad option. Blocks: never on the
 * daemon's control thread.
 */
int block_create(const char *format, const char *filename, uint64_t size, json_t *opts,
		 struct error **errp);

struct block_node *block_ref(struct block_node *bs);
/* Drop a reference; the last one flushes and closes the chain. NULL is fine. */
void block_unref(struct block_node *bs);

uint64_t block_length(struct block_node *bs); /* virtual size in bytes */
bool block_is_read_only(struct block_node *bs);
bool block_is_direct(struct block_node *bs); /* cache=none: O_DIRECT */
/* The engine of the file under @bs: "native", "threads", or NULL for io_uring. */
const char *block_aio_engine(struct block_node *bs);
uint32_t block_alignment(struct block_node *bs); /* required request alignment (1, 512, 4096) */
const char *block_format(struct block_node *bs); /* "raw", "qcow2" */
const char *block_filename(struct block_node *bs);
const char *block_node_name(struct block_node *bs); /* may be NULL */

/* Synchronous I/O. Ranges are validated by the core (bounds, read-only). */
int block_preadv(struct block_node *bs, uint64_t offset, const struct iovec *iov, unsigned cnt);
int block_pwritev(struct block_node *bs, uint64_t offset, const struct iovec *iov, unsigned cnt);
int block_pread(struct block_node *bs, uint64_t offset, void *buf, size_t len);
int block_pwrite(struct block_node *bs, uint64_t offset, const void *buf, size_t len);
int block_flush(struct block_node *bs);
/*
 * Live migration's image hand-over: inactive = flushed and the image locks
 * of its file nodes released, so another process may open it for writing;
 * active again = the locks taken back (EBUSY naming the holder if another
 * process took them). No I/O may be in flight; none may be issued while
 * inactive. Backing files keep their shared read locks.
 */
int block_set_active(struct block_node *bs, bool active, struct error **errp);
int block_discard(struct block_node *bs, uint64_t offset, uint64_t len);
enum {
	BLOCK_ZERO_MAY_UNMAP = 1u << 0, /* the range may be deallocated */
};
int block_write_zeroes(struct block_node *bs, uint64_t offset, uint64_t len, unsigned flags);
/* Grow (or, for raw, shrink) the virtual size. */
int block_truncate(struct block_node *bs, uint64_t len, struct error **errp);

/* Asynchronous I/O, completed on the context's event loop thread. */
enum block_op {
	BLOCK_OP_READ,
	BLOCK_OP_WRITE,
	BLOCK_OP_FLUSH,
	BLOCK_OP_DISCARD,
	BLOCK_OP_WRITE_ZEROES,
};

/* Called once per request, on the aio context's thread; @ret is 0 or -errno. */
typedef void block_complete_fn(void *opaque, int ret);

/* An I/O thread's context; @base is that thread's libevent loop. */
int block_aio_ctx_new(struct event_base *base, struct block_aio_ctx **ret, struct error **errp);
/*
 * Call @fn(@opaque, "helper") first on each worker thread the context
 * starts from now on (a VM's vm_host.thread_start: the daemon loads the
 * I/O thread's seccomp filter there and ties the thread to its VM). Call
 * before submitting requests.
 */
void block_aio_ctx_set_thread_start(struct block_aio_ctx *ctx,
				    void (*fn)(void *opaque, const char *kind), void *opaque);
/*
 * How long a worker of the context's pool stays idle before it exits
 * (default 10 s; tests shorten it). Workers already waiting keep the old
 * value until they next wake.
 */
void block_aio_ctx_set_worker_idle(struct block_aio_ctx *ctx, unsigned ms);
/* True if the context's file I/O goes through io_uring (else a thread pool). */
bool block_aio_ctx_uses_io_uring(struct block_aio_ctx *ctx);
/* Reads and writes submitted with Linux AIO (aio=native files) so far; loop thread. */
uint64_t block_aio_ctx_native_requests(struct block_aio_ctx *ctx);
/*
 * Whether contexts get an io_uring ring: 0, or -errno with @errp saying why
 * not (the kernel cannot restrict a ring's requests, or VMMD_NO_IO_URING).
 * Rings are always restricted to the requests the block layer submits
 * (docs/security.md); without that, block I/O uses worker threads only.
 */
int block_aio_probe_io_uring(struct error **errp);
/*
 * All requests submitted on it must have completed. May be called from a
 * completion callback (the last one); NULL is fine.
 */
void block_aio_ctx_free(struct block_aio_ctx *ctx);

/*
 * Submit a request. For READ/WRITE the data is @iov/@cnt (borrowed until
 * completion) and @len is ignored; for DISCARD/WRITE_ZEROES @len is the
 * length. Returns 0 if submitted (the callback will run exactly once, never
 * from inside this call), or -errno if rejected (the callback will not run).
 */
int block_aio_submit(struct block_node *bs, struct block_aio_ctx *ctx, enum block_op op,
		     uint64_t offset, const struct iovec *iov, unsigned cnt, uint64_t len,
		     unsigned flags, block_complete_fn *cb, void *opaque);

/*
 * Per-node statistics, for query-blockstats (all uint64_t: read member by
 * member with atomics). Operations count requests that succeeded, *_failed
 * those that did not; bytes count successful ones; times are the sum of
 * each request's latency (CLOCK_MONOTONIC). Write-zeroes requests are
 * counted apart (zero_*); QEMU counts them as writes, query-blockstats
 * adds them there.
 */
struct block_stats {
	uint64_t rd_ops, wr_ops, flush_ops, discard_ops, zero_ops;
	uint64_t rd_bytes, wr_bytes;
	uint64_t rd_failed, wr_failed, flush_failed;
	uint64_t rd_total_ns, wr_total_ns, flush_total_ns;
	uint64_t discard_bytes, zero_bytes, discard_failed, zero_failed;
	uint64_t discard_total_ns, zero_total_ns;
	/* device-level: guest requests merged into others, refused as invalid */
	uint64_t rd_merged, wr_merged;
	uint64_t rd_invalid, wr_invalid, flush_invalid, discard_invalid;
	/* highest offset + length written (writes, write-zeroes), as QEMU */
	uint64_t wr_highest_offset;
	/* CLOCK_MONOTONIC time of the last accounted request, 0: none yet */
	uint64_t last_ns;
};
void block_get_stats(struct block_node *bs, struct block_stats *ret);
/*
 * Device-level accounting (QEMU's block_acct_merge_done/block_acct_invalid):
 * @n more guest requests of @op were merged into one the block layer ran
 * (they count as operations of that request's result @ret, each with its
 * latency since @start_ns); a guest request of @op was refused as invalid
 * (outside the disk). Any thread.
 */
void block_account_merged(struct block_node *bs, enum block_op op, unsigned n, int ret,
			  uint64_t start_ns);
void block_account_invalid(struct block_node *bs, enum block_op op);
/* The clock of the statistics (CLOCK_MONOTONIC, ns). */
uint64_t block_stats_now_ns(void);

/* query-block style description of the node and its chain; new reference. */
json_t *block_info_json(struct block_node *bs);
/*
 * QEMU's BlockStats for @bs as a device's disk (query-blockstats): "stats"
 * from the counters above (device-level: both accounting flags true),
 * "node-name" if the node has one, and "parent" for the protocol node
 * under a format (as QEMU: its counters are kept by the device only, so
 * zero but for wr_highest_offset; "driver-specific" for the file driver's
 * discards). The caller adds "device" and "qdev". New reference.
 */
json_t *block_stats_json(struct block_node *bs);

/* Internal snapshots (qcow2); -ENOTSUP on formats without them. */
bool block_can_snapshot(struct block_node *bs);
int block_snapshot_create(struct block_node *bs, const char *name, struct error **errp);
/*
 * What a snapshot of a running VM records beside the disk (QEMU's
 * QEMUSnapshotInfo): the size of the VM state written into the image's
 * VM-state area before the snapshot (0: a disk-only snapshot), the
 * guest's clock and the date (the same on every disk of one snapshot).
 */
struct block_snapshot_vm {
	uint64_t vm_state_size;
	uint64_t vm_clock_ns;
	uint32_t date_sec, date_nsec;
};
/*
 * Create with @vm's fields; the VM-state area's clusters go into the
 * snapshot and are dropped from the active image (as QEMU does).
 */
int block_snapshot_create_vm(struct block_node *bs, const char *name,
			     const struct block_snapshot_vm *vm, struct error **errp);
/* 1 (and *ret filled, may be NULL) if @bs has a snapshot named or numbered @name, 0 if not. */
int block_snapshot_find(struct block_node *bs, const char *name, struct block_snapshot_vm *ret);
/*
 * The VM-state area of the active image (qcow2: QEMU's, the L1 range after
 * the virtual disk's end): bytes [pos, pos+len). Synchronous; the VM's
 * disks are quiet (its I/O thread held). discard drops [0, len).
 */
int block_vmstate_write(struct block_node *bs, uint64_t pos, const void *buf, size_t len);
int block_vmstate_read(struct block_node *bs, uint64_t pos, void *buf, size_t len);
int block_vmstate_discard(struct block_node *bs, uint64_t len);
int block_snapshot_apply(struct block_node *bs, const char *name, struct error **errp);
int block_snapshot_delete(struct block_node *bs, const char *name, struct error **errp);
/* The snapshot with id @id exactly, and name @name unless NULL (QEMU's bdrv_snapshot_delete). */
int block_snapshot_delete_id(struct block_node *bs, const char *id, const char *name,
			     struct error **errp);
/* Array of {"id","name","vm-state-size","date-sec","date-nsec","vm-clock-nsec"...}. */
json_t *block_snapshot_list(struct block_node *bs, struct error **errp);

/*
 * Draining (block jobs, external snapshots). While @bs is drained, no
 * request is inside it: synchronous requests of other threads wait,
 * asynchronous ones are held and resubmitted by block_drain_end(); the
 * draining thread's own requests pass. block_drain_begin() waits for the
 * requests in flight. Any thread but the control thread and the threads
 * that complete @bs's asynchronous requests. Nested drains by the same
 * thread count.
 */
void block_drain_begin(struct block_node *bs);
void block_drain_end(struct block_node *bs);

/*
 * Write tracking (active commit): from block_dirty_start() on, every write,
 * write-zeroes or discard that completes on @bs marks its range (in
 * @granularity units) dirty. block_dirty_take() finds the first dirty run
 * (at most @max bytes), clears it and returns it; false when clean.
 */
int block_dirty_start(struct block_node *bs, uint64_t granularity, struct error **errp);
void block_dirty_stop(struct block_node *bs);
void block_dirty_mark(struct block_node *bs, uint64_t offset, uint64_t len);
bool block_dirty_take(struct block_node *bs, uint64_t max, uint64_t *ret_offset, uint64_t *ret_len);
uint64_t block_dirty_bytes(struct block_node *bs);

/*
 * Copy before write (backup jobs): from block_cbw_start() on, a write,
 * write-zeroes or discard of @bs that touches a marked granule waits (a
 * synchronous request) or is held (an asynchronous one, so the thread
 * that submitted it goes on) until block_cbw_unmark() has unmarked every
 * granule it touches. The copier marks what is to be copied before any
 * write may enter (with @bs drained), copies each marked run and then
 * unmarks it. block_cbw_next(): the first marked run in [@from, @end), at
 * most @max bytes. block_cbw_wait(): up to @ns for a marked run that a
 * waiting request needs; false on timeout, block_cbw_kick() or stop.
 * block_cbw_stop() lets every waiting request go. Reads never wait. One
 * tracker per node; any thread but the control thread.
 */
int block_cbw_start(struct block_node *bs, uint64_t granularity, struct error **errp);
void block_cbw_mark(struct block_node *bs, uint64_t offset, uint64_t len);
bool block_cbw_next(struct block_node *bs, uint64_t from, uint64_t end, uint64_t max,
		    uint64_t *ret_offset, uint64_t *ret_len);
bool block_cbw_wait(struct block_node *bs, uint64_t ns, uint64_t max, uint64_t *ret_offset,
		    uint64_t *ret_len);
void block_cbw_kick(struct block_node *bs);
void block_cbw_unmark(struct block_node *bs, uint64_t offset, uint64_t len);
uint64_t block_cbw_bytes(struct block_node *bs);
void block_cbw_stop(struct block_node *bs);

/*
 * Dirty bitmaps, QEMU's block-dirty-bitmap-* (kept in memory, not in the
 * image): each one, while it records, marks the granules that every
 * write, write-zeroes or discard of @bs touches. Errors are QEMU 7.2's.
 * A bitmap that a backup uses is busy: it cannot be changed or removed.
 * block_dirty_bitmap_begin_backup(), with the backup's copy tracker
 * started: @copy, the backup copies what the bitmap has marked (sync
 * incremental and bitmap); @clear, the bitmap starts over (what it held
 * is kept). _end_backup(): @restore puts back what it held (a failed
 * on-success backup), @add_uncopied adds what the backup did not copy
 * (bitmap-mode always); call it before block_cbw_stop(). Any thread.
 */
#define BLOCK_DIRTY_BITMAP_GRANULARITY (64u << 10)
#define BLOCK_DIRTY_BITMAP_MAX_NAME 1023
#define BLOCK_MAX_DIRTY_BITMAPS 64
/* what a node's bitmaps may take in all (1 TiB of disk at 512-byte granules) */
#define BLOCK_MAX_DIRTY_BITMAP_BYTES (256u << 20)
enum block_dirty_bitmap_op {
	BLOCK_DIRTY_BITMAP_CLEAR,
	BLOCK_DIRTY_BITMAP_ENABLE,
	BLOCK_DIRTY_BITMAP_DISABLE,
	BLOCK_DIRTY_BITMAP_HOLD,    /* busy, as a transaction's remove leaves it until done */
	BLOCK_DIRTY_BITMAP_RELEASE, /* no longer (busy or not) */
};
/* block_dirty_bitmap_add()'s checks of its arguments, without adding. */
int block_dirty_bitmap_check_add(struct block_node *bs, const char *name, uint64_t granularity,
				 struct error **errp);
int block_dirty_bitmap_add(struct block_node *bs, const char *name, uint64_t granularity,
			   bool disabled, struct error **errp);
int block_dirty_bitmap_remove(struct block_node *bs, const char *name, struct error **errp);
int block_dirty_bitmap_change(struct block_node *bs, const char *name,
			      enum block_dirty_bitmap_op op, struct error **errp);
int block_dirty_bitmap_merge(struct block_node *bs, const char *target, struct block_node *src_bs,
			     const char *src, struct error **errp);
/* QEMU's BlockDirtyInfo list, newest first (a new reference). */
/*
 * A usable bitmap as it is (its recording state, with @marks its marks
 * too, @ret_bytes their size), for block_dirty_bitmap_restore() to put
 * back (which frees it) if what changes it next is undone.
 */
struct block_dirty_bitmap_state;
struct block_dirty_bitmap_state *block_dirty_bitmap_save(struct block_node *bs, const char *name,
							 bool marks, uint64_t *ret_bytes,
							 struct error **errp);
void block_dirty_bitmap_restore(struct block_node *bs, struct block_dirty_bitmap_state *st);
void block_dirty_bitmap_state_free(struct block_dirty_bitmap_state *st);
json_t *block_dirty_bitmap_info(struct block_node *bs);
bool block_dirty_bitmap_exists(struct block_node *bs, const char *name, bool *ret_busy);
/* 0 if @name exists and is not busy, else QEMU's error. */
int block_dirty_bitmap_check(struct block_node *bs, const char *name, struct error **errp);
int block_dirty_bitmap_begin_backup(struct block_node *bs, const char *name, bool copy, bool clear,
				    struct error **errp);
void block_dirty_bitmap_end_backup(struct block_node *bs, const char *name, bool restore,
				   bool add_uncopied);

/*
 * The graph (block/graph.c). A disk's device keeps a pointer to its top
 * node; these functions change what the nodes hold, so the pointer stays
 * valid and designates the new top. The caller drains the disk's top node
 * around each change. Not on the control thread (they open and flush).
 */
struct block_node *block_backing(struct block_node *bs); /* borrowed, or NULL */
/* The node of @top's chain with that file name or node name (borrowed), or NULL. */
struct block_node *block_chain_find(struct block_node *top, const char *filename,
				    const char *node_name);
/*
 * Reopen @bs read-write or read-only in place (new file descriptor, the
 * image lock handed over: "Failed to get "write" lock" when another user
 * has the image). The backing chain is kept.
 */
int block_reopen(struct block_node *bs, bool rw, struct error **errp);
/*
 * Create a new image @file of format @format (NULL: qcow2; only qcow2 can
 * have a backing file) with @backing's file as its backing file and its
 * size. An existing file is never overwritten: "Could not create '@file':
 * File exists".
 */
int block_create_overlay(const char *file, const char *format, struct block_node *backing,
			 struct error **errp);
/*
 * drive-mirror's target: a new image @file of @format ("qcow2" or "raw")
 * and @size, with @backing's file as its backing file if not NULL (qcow2
 * only). Never overwrites a file, as block_create_overlay.
 */
int block_create_target(const char *file, const char *format, uint64_t size,
			struct block_node *backing, struct error **errp);
/* Open @file read-write, with @like's cache flags, with its backing chain or without. */
int block_open_target(struct block_node **ret, const char *file, const char *format,
		      struct block_node *like, const char *node_name, bool backing,
		      struct error **errp);
/* Open @file as an overlay for @active (same cache flags, read-write, no backing yet). */
int block_open_overlay(struct block_node **ret, const char *file, const char *format,
		       struct block_node *active, const char *node_name, struct error **errp);
/*
 * Put @overlay (from block_open_overlay(); the reference is taken over)
 * on top of @active: @active now designates the overlay, whose backing
 * node holds what @active held, reopened read-only.
 */
void block_insert_overlay(struct block_node *active, struct block_node *overlay);
/*
 * Make @backing (a reference is taken; may be NULL) the backing node of
 * @bs and record it in @bs's image (as @name, default its file name), the
 * old backing chain is released. A read-only @bs is reopened read-write
 * for the header update and back.
 */
int block_set_backing(struct block_node *bs, struct block_node *backing, const char *name,
		      struct error **errp);
/*
 * Whether [offset, offset+*ret_pnum) is allocated in a node of the chain
 * from @top down to, not including, @base (NULL: the whole chain).
 */
int block_is_allocated_above(struct block_node *top, struct block_node *base, uint64_t offset,
			     uint64_t len, uint64_t *ret_pnum, bool *ret_allocated);
/*
 * Active commit's switch: @active (the disk's top) now designates @base
 * (a node of its chain, on which the caller holds a reference), and the
 * layers above @base are released when the caller drops that reference.
 */
void block_pivot(struct block_node *active, struct block_node *base);

/*
 * I/O limits of a disk (QEMU's block_set_io_throttle), as leaky buckets:
 * one per limit that is set, for bytes and for operations, of all
 * requests (TOTAL) or of reads or writes only. A bucket fills with each
 * request it admits and drains at its rate; a request waits while a
 * bucket it fills is over its size: a tenth of a second at the rate, or,
 * with a burst rate (max), max_length seconds at that rate, then the
 * rate itself (and within a burst, no faster than max). An operation
 * larger than iops_size counts as several. The caller keeps the clock
 * (block_stats_now_ns) and the lock.
 */
enum {
	BLOCK_THROTTLE_TOTAL,
	BLOCK_THROTTLE_READ,
	BLOCK_THROTTLE_WRITE
};

struct block_throttle_limits {
	/* per kind (TOTAL, READ, WRITE); 0 = no limit */
	uint64_t bps[3], iops[3];
	uint64_t bps_max[3], iops_max[3];
	uint64_t bps_max_length[3], iops_max_length[3]; /* seconds, at least 1 */
	uint64_t iops_size;
};

/* No limit, bursts of 1 s (QEMU's defaults). */
void block_throttle_limits_init(struct block_throttle_limits *l);

/* The highest rate QEMU takes (THROTTLE_VALUE_MAX). */
#define BLOCK_THROTTLE_VALUE_MAX 1000000000000000ull

/*
 * Limits from an object with QEMU's block_set_io_throttle names (bps,
 * bps_rd_max, iops_wr_max_length, iops_size...), checked; other keys are
 * refused when @strict, ignored otherwise. block_throttle_to_json: the
 * members that differ from no limit (a new object).
 */
int block_throttle_from_json(json_t *o, bool strict, struct block_throttle_limits *l,
			     struct error **errp);
json_t *block_throttle_to_json(const struct block_throttle_limits *l);
/* QEMU's checks and words ("bps/iops/max values must be within ..."). */
int block_throttle_check(const struct block_throttle_limits *l, struct error **errp);
/* Whether any limit is set. */
bool block_throttle_enabled(const struct block_throttle_limits *l);

struct block_throttle {
	struct block_throttle_limits limits;
	double level[6], burst_level[6]; /* bps TOTAL/READ/WRITE, then iops */
	uint64_t last_ns;
};

/* Empty buckets with @l's limits (already checked). */
void block_throttle_set(struct block_throttle *t, const struct block_throttle_limits *l,
			uint64_t now_ns);
/* Nanoseconds a read (or @write) must wait before it may go; 0: now. */
uint64_t block_throttle_wait(struct block_throttle *t, bool write, uint64_t now_ns);
/* A request of @bytes went: its buckets fill. */
void block_throttle_account(struct block_throttle *t, bool write, uint64_t bytes);
