/*
 * Block layer internals shared by the core (block.c) and the drivers
 * (file.c, nbd.c, rbd.c, raw.c, qcow2*.c, qed.c, vhdx.c, vmdk.c, vpc.c). Not for
 * use outside block/ (vmm-img's tool verbs use the tool-level operations
 * at the end).
 *
 * The driver contract: ops are synchronous and may block; the core calls
 * them from I/O worker threads (and from the caller's thread for the
 * synchronous API), possibly concurrently for the same node, so a driver
 * with mutable shared state (qcow2 metadata) serializes with its own lock.
 * The core validates every request before a driver sees it: offsets and
 * lengths are inside the node's length and aligned to bs->alignment, writes
 * never reach a read-only node, iov covers exactly @len bytes.
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include <jansson.h>

#include "common/error.h"
#include "vmmd/block.h"

/* Allocation status for block_status (map, convert, compare). */
enum {
	BLOCK_STATUS_DATA = 1u << 0,	  /* reads return data stored at this layer or below */
	BLOCK_STATUS_ZERO = 1u << 1,	  /* reads return zeroes */
	BLOCK_STATUS_ALLOCATED = 1u << 2, /* allocated at this layer (not from backing) */
};

struct block_check_result {
	uint64_t corruptions, leaks, corruptions_fixed, leaks_fixed;
	uint64_t allocated_clusters, total_clusters, fragmented_clusters;
	uint64_t image_end_offset;
	int check_errors;
	uint64_t compressed_clusters; /* for the "% compressed" line of vmm-img check */
	/*
	 * Set by the caller (kept across the check): receives qemu-img's
	 * per-cluster lines ("Leaked cluster 4 refcount=1 reference=0",
	 * "ERROR cluster ...", "Repairing cluster ..."), one call each, without
	 * the newline. NULL: not reported. At most BLOCK_CHECK_MAX_LINES calls.
	 */
	void (*report)(void *opaque, const char *line);
	void *report_opaque;
};

#define BLOCK_CHECK_MAX_LINES 100000

/*
 * A driver: a protocol (file, nbd: reaches bytes somewhere) or a format
 * (raw, qcow2, qed, vhdx, vmdk, vpc: interprets a protocol node's bytes).
 * Members marked "may be NULL" are optional; the core answers -ENOTSUP (or
 * the stated default) without them. Unless a member says otherwise, it runs
 * on a block worker thread or the synchronous caller's thread, possibly
 * concurrently with other requests on the same node.
 */
/* qemu-img bitmap's actions, applied one at a time in command-line order. */
enum block_bitmap_action {
	BLOCK_BITMAP_ADD,
	BLOCK_BITMAP_REMOVE,
	BLOCK_BITMAP_CLEAR,
	BLOCK_BITMAP_ENABLE,
	BLOCK_BITMAP_DISABLE,
	BLOCK_BITMAP_MERGE,
};

struct block_bitmap_req {
	enum block_bitmap_action action;
	const char *name;	/* the bitmap acted on */
	uint64_t granularity;	/* ADD: bytes per bit; 0: the format's default */
	struct block_node *src; /* MERGE: the node holding the source bitmap */
	const char *src_name;	/* MERGE: the source bitmap, ORed into @name */
};

/*
 * One bitmap's contents: bit i (bit i % 8 of byte i / 8) covers the bytes
 * [i * granularity, (i + 1) * granularity) of a disk of @size bytes.
 */
struct block_bitmap_data {
	uint8_t *bits; /* malloc'd, ceil(ceil(size / granularity) / 8) bytes */
	uint64_t granularity;
	uint64_t size;
};

enum {
	BLOCK_VMSTATE_READ,
	BLOCK_VMSTATE_WRITE,
	BLOCK_VMSTATE_DISCARD
};

struct block_driver {
	/* The name in the registry, blockdev-add's "driver" and vmm-img's -f. */
	const char *name;
	/* file, nbd: opened by filename; formats sit on bs->file. */
	bool is_protocol;
	/*
	 * Score how likely @buf, the first @len bytes of the image @filename
	 * (@len is at most BLOCK_PROBE_BUF and less only for a shorter file),
	 * is an image of this format: 0 = no, 100 = certain (magic and
	 * version match), as QEMU's bdrv_probe. Pure function, any thread.
	 * NULL: never probed. raw has none: it is what a probe falls back to
	 * when no format scores above 0, never a match.
	 */
	int (*probe)(const uint8_t *buf, size_t len, const char *filename);
	/*
	 * Create (or truncate) @filename as a new, empty image of @size bytes
	 * (vmm-img create/convert). @opts is a JSON object of qemu-img -o
	 * options with string values ("cluster_size": "65536"); "size" is
	 * ignored, any key the format does not take is an error naming it.
	 * With @size 0 and a backing file a format with backing files uses
	 * the backing file's size. On the caller's thread, never the daemon's
	 * control thread. Returns 0 or -errno with *errp naming the file and
	 * the bad option. NULL: the format cannot be created.
	 */
	int (*create)(const char *filename, uint64_t size, json_t *opts, struct error **errp);
	/*
	 * Open: for protocols @filename is the path or URI; for formats the
	 * core has already opened bs->file. @opts is the blockdev-add tree for
	 * this node (driver-specific keys; the core removed the generic ones),
	 * may be NULL. bs->read_only and bs->flags are set. A format must
	 * validate every header field and table it will use before trusting
	 * it (the image may be hostile) and bound every allocation sized by
	 * the image; errors name the file and what is wrong.
	 */
	int (*open)(struct block_node *bs, const char *filename, json_t *opts, struct error **errp);
	/* Release everything open() acquired; flush first if writable. Never fails. */
	void (*close)(struct block_node *bs);
	/* The virtual size in bytes. Cheap (no I/O); may change only through truncate. */
	uint64_t (*get_length)(struct block_node *bs);
	/*
	 * Read @len bytes at @offset into @iov (@cnt elements covering exactly
	 * @len bytes). @offset and @len are multiples of bs->alignment and
	 * inside the node (or below 2^63 for a growable node, where reads past
	 * the end return zeroes). Returns 0 (all @len bytes read) or -errno.
	 */
	int (*preadv)(struct block_node *bs, uint64_t offset, const struct iovec *iov, unsigned cnt,
		      uint64_t len);
	/*
	 * Write @len bytes at @offset from @iov; the same guarantees as
	 * preadv, and the node is writable. Returns 0 or -errno; after an
	 * error the range's contents are undefined but metadata stays
	 * consistent. NULL for read-only formats.
	 */
	int (*pwritev)(struct block_node *bs, uint64_t offset, const struct iovec *iov,
		       unsigned cnt, uint64_t len);
	/*
	 * Make every completed write stable as far as this driver is
	 * concerned (write back cached metadata); the core then flushes
	 * bs->file. Returns 0 or -errno.
	 */
	int (*flush)(struct block_node *bs);
	/*
	 * Advisory: the range's data is no longer needed (reads may return
	 * anything the format defines for unallocated data). Only called with
	 * BLOCK_O_UNMAP. May be NULL (a no-op).
	 */
	int (*discard)(struct block_node *bs, uint64_t offset, uint64_t len);
	/*
	 * Make the range read zeroes; with BLOCK_ZERO_MAY_UNMAP in @flags the
	 * range may be deallocated. May be NULL: the core writes a zero
	 * buffer; -ENOTSUP also makes the core fall back.
	 */
	int (*write_zeroes)(struct block_node *bs, uint64_t offset, uint64_t len, unsigned flags);
	/*
	 * Change the virtual size to @len (control path, no request in
	 * flight). Formats may refuse shrinking (-ENOTSUP with a message).
	 * May be NULL (-ENOTSUP).
	 */
	int (*truncate)(struct block_node *bs, uint64_t len, struct error **errp);
	/*
	 * Status of [offset, offset+len): *ret_pnum (at least 1, at most @len)
	 * bytes from @offset share *ret_status (BLOCK_STATUS_*); for formats,
	 * *ret_file_offset (may be NULL) receives the host offset in bs->file
	 * of contiguous uncompressed data when known, else UINT64_MAX. NULL:
	 * everything is data.
	 */
	int (*block_status)(struct block_node *bs, uint64_t offset, uint64_t len,
			    uint64_t *ret_pnum, unsigned *ret_status, uint64_t *ret_file_offset);
	/*
	 * An asynchronous write that may go straight to bs->file (aio.c, on
	 * the event loop thread): true if writing [@offset, @offset+@len)
	 * changes no metadata because it lands in one host extent the node
	 * alone owns (qcow2: normal, COPIED clusters), with the extent's
	 * offset in *@ret_file_offset; the extent then stays this range's
	 * until write_direct_end (no discard, snapshot or truncate frees or
	 * shares it meanwhile). false: the pool writes it through pwritev.
	 * Must not wait for a worker. May be NULL (never direct).
	 */
	bool (*write_direct_begin)(struct block_node *bs, uint64_t offset, uint64_t len,
				   uint64_t *ret_file_offset);
	void (*write_direct_end)(struct block_node *bs);
	/*
	 * Write one whole compressed cluster (vmm-img convert -c): @offset is
	 * cluster aligned, @len one cluster (or the image's last, partial
	 * one). May be NULL.
	 */
	int (*pwrite_compressed)(struct block_node *bs, uint64_t offset, const void *buf,
				 uint64_t len);
	/*
	 * Consistency check and optional repair (@fix: 0, or BLOCK_FIX_LEAKS
	 * | BLOCK_FIX_ERRORS, only on a writable node); fills @res as
	 * qemu-img check reports it, keeping @res->report (NULL or the hook
	 * for per-cluster lines). May be NULL (-ENOTSUP).
	 */
	int (*check)(struct block_node *bs, struct block_check_result *res, unsigned fix);
	/* Add format-specific fields to an info object ("format-specific" in qemu-img). */
	void (*info)(struct block_node *bs, json_t *info);
	/* Internal snapshots (qcow2). Control path, no request in flight. May be NULL. */
	int (*snapshot_create)(struct block_node *bs, const char *name,
			       const struct block_snapshot_vm *vm, struct error **errp);
	int (*snapshot_apply)(struct block_node *bs, const char *name, struct error **errp);
	/* @id NULL: the snapshot named, or else numbered, @name; else id @id (and @name if set) */
	int (*snapshot_delete)(struct block_node *bs, const char *id, const char *name,
			       struct error **errp);
	json_t *(*snapshot_list)(struct block_node *bs, struct error **errp);
	/* The VM-state area (see block_vmstate_write); @op BLOCK_VMSTATE_*. May be NULL. */
	int (*vmstate_rw)(struct block_node *bs, uint64_t pos, void *buf, size_t len, int op);
	/* Change the backing file name recorded in the image (rebase -u). May be NULL. */
	int (*change_backing)(struct block_node *bs, const char *file, const char *fmt,
			      struct error **errp);
	/*
	 * Change the image's format options in place (amend -o: the options
	 * other than backing_file/backing_fmt/size, as strings). May be NULL.
	 */
	int (*amend)(struct block_node *bs, json_t *opts, struct error **errp);
	/*
	 * The node's contents moved to another struct block_node (the core
	 * swaps nodes when it reopens one or inserts an overlay): update any
	 * pointer the driver state keeps to its node. May be NULL.
	 */
	void (*rebind)(struct block_node *bs);
	/*
	 * Live migration's hand-over of a protocol node (block_set_active):
	 * false = release what keeps other hosts out (the node is flushed
	 * already), true = take it back. Control path, no request in flight.
	 * May be NULL (nothing to hand over).
	 */
	int (*set_active)(struct block_node *bs, bool active, struct error **errp);
	/*
	 * Persistent dirty bitmaps (vmm-img bitmap; see struct
	 * block_bitmap_req). bitmap_op changes the image's bitmaps on disk
	 * (node opened with BLOCK_O_RDWR | BLOCK_O_BITMAPS); bitmap_read
	 * returns one bitmap's bits. Control path, no guest I/O on the node.
	 * NULL: the format stores no bitmaps (the core answers as QEMU does).
	 */
	int (*bitmap_op)(struct block_node *bs, const struct block_bitmap_req *req,
			 struct error **errp);
	int (*bitmap_read)(struct block_node *bs, const char *name, struct block_bitmap_data *ret,
			   struct error **errp);
};

/* Bytes of an image's start handed to block_driver.probe. */
#define BLOCK_PROBE_BUF 4096

/*
 * The format whose probe scores @buf (an image's first @len bytes) highest;
 * "raw" when none matches. A static string; any thread.
 */
const char *block_probe_buf(const uint8_t *buf, size_t len, const char *filename);

struct aio_req;

enum {
	BLOCK_FIX_LEAKS = 1u << 0,
	BLOCK_FIX_ERRORS = 1u << 1,
};

/*
 * The graph's structure (block/graph.c swaps what two nodes hold and
 * changes backing pointers on worker threads) against readers on other
 * threads that walk a chain or describe a node (query-block on the control
 * thread). Writers hold it only around the in-memory change, never across
 * I/O, so a reader never waits for long.
 */
extern pthread_rwlock_t block_graph_lock;

struct block_node {
	int refcnt; /* atomic */
	const struct block_driver *drv;
	void *opaque;		    /* driver state */
	struct block_node *file;    /* protocol under a format, or NULL */
	struct block_node *backing; /* backing image (read-only), or NULL */
	char *filename;
	char *node_name;
	unsigned flags; /* BLOCK_O_* */
	bool read_only;
	uint32_t alignment; /* request alignment in bytes, power of two */
	/*
	 * A protocol node opened under a format (qcow2's image file): writes
	 * and reads may go past its current length (the file grows; reads
	 * there return zeroes). Set by the core before the driver's open.
	 */
	bool growable;
	pthread_mutex_t rmw_lock; /* core: serializes read-modify-write of unaligned writes */
	struct block_stats stats; /* updated with atomics */

	/*
	 * The drain gate (block.c): every request from outside the block layer
	 * enters it and leaves when the driver is done. While drained, requests
	 * of other threads wait (synchronous ones) or are held (asynchronous
	 * ones, resubmitted by block_drain_end()); the draining thread passes.
	 * The refcount, rmw_lock, stats and the gate stay with the struct when
	 * the core swaps a node's contents (block_swap_contents()).
	 */
	pthread_mutex_t gate_lock;
	pthread_cond_t gate_cond;
	unsigned gate_inflight;
	unsigned gate_drained;
	pthread_t gate_owner;
	struct aio_req *gate_held;    /* held asynchronous requests, a list through ->next */
	struct granules *dirty;	      /* write tracking (active commit), under gate_lock */
	struct block_cbw *cbw;	      /* copy before write (backup), under gate_lock */
	struct dirty_bitmap *bitmaps; /* QEMU's dirty bitmaps, newest first, under gate_lock */
};

/*
 * The drivers, listed in block.c's registry table (no constructor
 * registration: the table is the list).
 */
extern const struct block_driver file_driver;
extern const struct block_driver nbd_driver;
extern const struct block_driver rbd_driver;
extern const struct block_driver raw_driver;
extern const struct block_driver qcow2_driver;
extern const struct block_driver qed_driver;
extern const struct block_driver vhdx_driver;
extern const struct block_driver vmdk_driver;
extern const struct block_driver vpc_driver;

/* Open a protocol or format node by driver name (core; used by drivers for backing files). */
int block_open_driver(struct block_node **ret, const char *driver, const char *filename,
		      json_t *opts, unsigned flags, struct error **errp);

/*
 * For format drivers: transfer the sub-range [@iov_off, @iov_off+@len) of
 * @iov to or from @node at @offset (block_preadv/pwritev of a slice).
 */
int block_io_slice(struct block_node *node, bool write, uint64_t offset, const struct iovec *iov,
		   unsigned cnt, uint64_t iov_off, uint64_t len);

/* Status query through the core (bounds-checked). */
int block_get_status(struct block_node *bs, uint64_t offset, uint64_t len, uint64_t *ret_pnum,
		     unsigned *ret_status, uint64_t *ret_file_offset);

/*
 * Core helpers for drivers and the asynchronous path (block.c).
 *
 * block_check_request: 0 if [offset, offset+len) may be accessed (inside
 * the node, or below 2^63 for a growable node; never a write to a
 * read-only node), else -EINVAL / -EPERM.
 * block_do_*: run an already validated request on @bs without statistics;
 * preadv/pwritev pad requests that are not aligned to bs->alignment (offset,
 * length, buffer addresses) through a bounce buffer; flush also flushes
 * bs->file after the driver; discard is a no-op without BLOCK_O_UNMAP;
 * write_zeroes falls back to writing zero buffers when the driver cannot.
 */
int block_check_request(struct block_node *bs, uint64_t offset, uint64_t len, bool write);
bool block_request_aligned(struct block_node *bs, uint64_t offset, const struct iovec *iov,
			   unsigned cnt, uint64_t len);
int block_do_preadv(struct block_node *bs, uint64_t offset, const struct iovec *iov, unsigned cnt,
		    uint64_t len);
int block_do_pwritev(struct block_node *bs, uint64_t offset, const struct iovec *iov, unsigned cnt,
		     uint64_t len);
int block_do_flush(struct block_node *bs);
int block_do_discard(struct block_node *bs, uint64_t offset, uint64_t len);
int block_do_write_zeroes(struct block_node *bs, uint64_t offset, uint64_t len, unsigned flags);
/*
 * A write up to @end reached @bs without block_do_pwritev() (the ring):
 * raise its wr_highest_offset as that would have.
 */
void block_note_write_end(struct block_node *bs, uint64_t end);
/* Account one finished request started at @start_ns (block_now_ns()). */
void block_account(struct block_node *bs, enum block_op op, uint64_t bytes, int ret,
		   uint64_t start_ns);
uint64_t block_now_ns(void);

/*
 * Tool-level operations (vmm-img), validated by the core. -ENOTSUP when
 * the driver lacks the op. block_check: @fix is 0 or BLOCK_FIX_*; writable
 * node needed to fix. block_pwrite_compressed: one whole cluster (or the
 * image's last, partial one) at a cluster-aligned offset.
 */
int block_check(struct block_node *bs, struct block_check_result *res, unsigned fix,
		struct error **errp);
int block_pwrite_compressed(struct block_node *bs, uint64_t offset, const void *buf, uint64_t len);
int block_change_backing(struct block_node *bs, const char *file, const char *fmt,
			 struct error **errp);
int block_amend(struct block_node *bs, json_t *opts, struct error **errp);
/*
 * block_bitmap: one action of vmm-img bitmap on @bs (opened read-write
 * with BLOCK_O_BITMAPS); errors are QEMU's messages without the
 * "Operation ... failed: " prefix. block_bitmap_read: the bits of bitmap
 * @name of @bs (any open mode); free ret->bits.
 */
int block_bitmap(struct block_node *bs, const struct block_bitmap_req *req, struct error **errp);
int block_bitmap_read(struct block_node *bs, const char *name, struct block_bitmap_data *ret,
		      struct error **errp);

/*
 * The gate (see struct block_node). block_gate_enter: for a synchronous
 * request (@op on [@offset, @offset+@len)); waits while another thread
 * drains the node, and a write while what it overwrites is still to be
 * copied (block_cbw_*). block_gate_hold: for an asynchronous request:
 * returns false and keeps @r (to be resubmitted by block_aio_resubmit())
 * if the node is drained by another thread or @r must wait for a copy,
 * else enters and returns true. block_gate_exit: the request is done;
 * writes (@op) mark the dirty tracker.
 */
void block_gate_enter(struct block_node *bs, enum block_op op, uint64_t offset, uint64_t len);
bool block_gate_hold(struct block_node *bs, struct aio_req *r);
void block_gate_exit(struct block_node *bs, enum block_op op, uint64_t offset, uint64_t len);
/* aio.c: the link field of a request (the held lists), and what it asks for. */
struct aio_req **block_aio_req_next(struct aio_req *r);
void block_aio_req_range(struct aio_req *r, enum block_op *ret_op, uint64_t *ret_offset,
			 uint64_t *ret_len);
/* aio.c: send held requests (a list through ->next) to their contexts' pools. */
void block_aio_resubmit(struct aio_req *list);
/* aio.c, tests: the context's (restricted) io_uring ring, or NULL without one. */
struct io_uring;
struct io_uring *block_aio_ctx_ring(struct block_aio_ctx *ctx);
