/*
 * qcow2 format driver: shared definitions of the on-disk layout (QEMU's
 * docs/interop/qcow2.txt), the per-image state and the functions the
 * qcow2-*.c files export to each other. Everything except qcow2_create()
 * and the pure helpers is internal to block/.
 *
 * Threads: a struct qcow2_state is used from the block layer's worker
 * threads. s->lock (a mutex) protects every metadata structure: the header
 * copy, L1 table, both table caches, the refcount table, the snapshot list
 * and the allocator. s->io_lock (a rwlock) is held shared by guest reads and
 * writes for their whole duration (their data I/O runs with s->lock
 * released) and exclusively by operations that free or re-map clusters
 * (discard, write-zeroes, snapshots, resize, check), so data I/O never
 * lands in a cluster that was freed under it; it prefers writers, so those
 * operations do not starve. Allocating writes reserve their guest range in
 * s->inflight while their data goes out unlocked; other allocating or
 * compressed writes of the same clusters wait on s->alloc_cond.
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "block/block-int.h"
#include "common/error.h"

#define QCOW2_MAGIC 0x514649fbu /* "QFI\xfb" */
#define QCOW2_HEADER_V2_LEN 72
#define QCOW2_HEADER_V3_LEN 112

#define QCOW2_MIN_CLUSTER_BITS 9
#define QCOW2_MAX_CLUSTER_BITS 21
#define QCOW2_DEFAULT_CLUSTER_BITS 16

/* Implementation limits, as QEMU's (sizes in bytes). */
#define QCOW2_MAX_L1_BYTES (32u << 20)
#define QCOW2_MAX_REFTABLE_BYTES (8u << 20)
#define QCOW2_MAX_SNAPSHOTS 65536
#define QCOW2_MAX_SNAPSHOT_EXTRA 1024
#define QCOW2_MAX_SNAPSHOT_TABLE_BYTES (64u << 20)
/* The VM state one snapshot may hold (guest RAM plus device state) */
#define QCOW2_MAX_VMSTATE (1ull << 40)
#define QCOW2_MAX_BACKING_NAME 1023
#define QCOW2_MAX_BACKING_DEPTH 16
#define QCOW2_MAX_HEADER_EXTS 64

/* Header feature bits. */
#define QCOW2_INCOMPAT_DIRTY (1ull << 0)
#define QCOW2_INCOMPAT_CORRUPT (1ull << 1)
#define QCOW2_INCOMPAT_DATA_FILE (1ull << 2)
#define QCOW2_INCOMPAT_COMPRESSION (1ull << 3)
#define QCOW2_INCOMPAT_EXTL2 (1ull << 4)
#define QCOW2_INCOMPAT_SUPPORTED \
	(QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT | QCOW2_INCOMPAT_COMPRESSION)
#define QCOW2_COMPAT_LAZY_REFCOUNTS (1ull << 0)
#define QCOW2_AUTOCLEAR_BITMAPS (1ull << 0)

/* Header extension types. */
#define QCOW2_EXT_END 0x00000000u
#define QCOW2_EXT_BACKING_FORMAT 0xe2792acau
#define QCOW2_EXT_FEATURE_TABLE 0x6803f857u
#define QCOW2_EXT_BITMAPS 0x23852875u
#define QCOW2_EXT_CRYPTO 0x0537be77u
#define QCOW2_EXT_DATA_FILE 0x44415441u

/* L1/L2/refcount-table entry bits. */
#define QCOW2_OFLAG_COPIED (1ull << 63)
#define QCOW2_OFLAG_COMPRESSED (1ull << 62)
#define QCOW2_OFLAG_ZERO (1ull << 0)
#define QCOW2_OFFSET_MASK UINT64_C(0x00fffffffffffe00)
#define QCOW2_L1_RESERVED UINT64_C(0x7f000000000001ff)
#define QCOW2_L2_RESERVED UINT64_C(0x3f000000000001fe)
#define QCOW2_REFT_RESERVED UINT64_C(0x1ff)

enum qcow2_compression {
	QCOW2_COMPRESSION_ZLIB = 0,
	QCOW2_COMPRESSION_ZSTD = 1,
};

/* Kind of an L2 entry. */
enum qcow2_cluster_type {
	QCOW2_CLUSTER_UNALLOCATED, /* read from backing (or zeroes) */
	QCOW2_CLUSTER_ZERO_PLAIN,  /* zero flag, no host cluster */
	QCOW2_CLUSTER_ZERO_ALLOC,  /* zero flag, host cluster preallocated */
	QCOW2_CLUSTER_NORMAL,	   /* data at a host cluster */
	QCOW2_CLUSTER_COMPRESSED,  /* compressed data at a byte offset */
};

/* Options for qcow2_create() (vmm-img create -f qcow2 -o ...). */
enum qcow2_prealloc {
	QCOW2_PREALLOC_OFF = 0,
	QCOW2_PREALLOC_METADATA,
	QCOW2_PREALLOC_FULL,
};

struct qcow2_create_opts {
	uint32_t cluster_size;	  /* 0: 65536; power of two, 512..2M */
	int version;		  /* 0: 3; 2 (compat=0.10) or 3 (compat=1.1) */
	const char *backing_file; /* NULL: none; stored as given */
	const char *backing_fmt;  /* NULL: not recorded (probed when opened) */
	int compression_type;	  /* enum qcow2_compression */
	bool lazy_refcounts;	  /* version 3 only */
	unsigned refcount_bits;	  /* 0: 16; 1, 2, 4, ..., 64 (version 2: 16 only) */
	enum qcow2_prealloc prealloc;
};

/*
 * Create (or truncate) @filename as an empty qcow2 image of virtual size
 * @size. With @size 0 and a backing file, the backing file's size is used.
 * Returns 0 or -errno with *errp naming the file and the bad option.
 */
int qcow2_create(const char *filename, uint64_t size, const struct qcow2_create_opts *opts,
		 struct error **errp);

/* Parse "zlib"/"zstd" and "off"/"metadata"/"full"; -EINVAL if unknown. */
int qcow2_compression_from_string(const char *s, int *ret);
int qcow2_prealloc_from_string(const char *s, enum qcow2_prealloc *ret);

extern const struct block_driver qcow2_driver;

/* ---- internals ---- */

/* A bounded cache of cluster-sized metadata tables (L2 tables, refcount blocks). */
struct qcow2_cache_entry {
	uint64_t offset; /* 0: empty slot */
	void *data;
	uint64_t lru;
	unsigned ref;
	bool dirty;
};

struct qcow2_cache {
	struct qcow2_cache_entry *entries;
	unsigned n;
	uint64_t lru_clock;
	/* Flushed (and the protocol synced) before any dirty table here is written. */
	struct qcow2_cache *depends;
	bool is_l2;
};

struct qcow2_snapshot {
	uint64_t l1_table_offset;
	uint32_t l1_size;
	char *id;
	char *name;
	uint32_t date_sec, date_nsec;
	uint64_t vm_clock_nsec;
	uint64_t vm_state_size;
	uint64_t disk_size;
	uint32_t extra_size; /* as found; we write at least 16 */
	void *extra;	     /* extra data beyond the two known fields (icount first) */
};

/* A header extension we do not interpret, kept to be written back. */
struct qcow2_unknown_ext {
	uint32_t type, len;
	void *data;
};

/* One entry of the bitmap directory (the "Bitmaps" extension). */
struct qcow2_bitmap {
	char *name;
	uint64_t table_offset;
	uint32_t table_size; /* entries */
	uint32_t flags;	     /* QCOW2_BME_* */
	uint32_t granularity_bits;
	uint32_t extra_size;
	uint8_t *extra; /* kept verbatim (only with QCOW2_BME_EXTRA_COMPAT) */
};

#define QCOW2_BME_IN_USE (1u << 0)
#define QCOW2_BME_AUTO (1u << 1)
#define QCOW2_BME_EXTRA_COMPAT (1u << 2)

#define QCOW2_MAX_INFLIGHT 64

/* A guest range whose allocating write is in flight with s->lock dropped. */
struct qcow2_inflight {
	uint64_t start, end; /* end 0: free slot */
};

struct qcow2_pending_free {
	uint64_t offset, count; /* clusters: decrement once each */
};

struct qcow2_state {
	struct block_node *bs;
	pthread_mutex_t lock;
	pthread_rwlock_t io_lock;
	pthread_cond_t alloc_cond; /* signalled when an in-flight allocation ends */
	/*
	 * Writes in place submitted straight to the file's ring (aio.c,
	 * qcow2_write_direct_begin): how many are in flight, and how many
	 * threads keep new ones out while they free or share clusters
	 * (qcow2_lock_exclusive). Under s->lock; direct_cond is signalled
	 * when the last one ends.
	 */
	unsigned direct_writes, direct_blocked;
	pthread_cond_t direct_cond;
	struct qcow2_inflight inflight[QCOW2_MAX_INFLIGHT];
	unsigned n_inflight;

	/* header */
	uint32_t version;
	uint32_t cluster_bits;
	uint64_t cluster_size;
	uint32_t l2_bits;    /* log2(entries per L2 table) */
	uint64_t l2_entries; /* entries per L2 table */
	uint64_t size;	     /* virtual size */
	uint64_t incompat, compat, autoclear;
	uint32_t refcount_order, refcount_bits;
	uint32_t rb_bits;    /* log2(entries per refcount block) */
	uint64_t rb_entries; /* entries per refcount block */
	uint32_t header_length;
	int compression_type;
	uint32_t csize_shift; /* compressed descriptor: sector count position */
	uint64_t csize_mask, coffset_mask;

	/* backing */
	char *backing_file;   /* as stored in the image, or NULL */
	char *backing_format; /* from the extension, or NULL */
	struct qcow2_unknown_ext *unknown_exts;
	unsigned n_unknown_exts;
	uint8_t *hdr_tail; /* header bytes past the fields we know (v3), kept */
	uint32_t hdr_tail_len;

	/* L1 */
	uint64_t *l1_table; /* host order */
	uint32_t l1_size;
	uint64_t l1_table_offset;

	/* refcounts */
	uint64_t *reftable;	/* host order */
	uint64_t reftable_size; /* entries */
	uint64_t reftable_used; /* entries up to the last non-zero one */
	uint64_t reftable_offset;
	uint32_t reftable_clusters;
	uint64_t free_cluster_hint; /* no free cluster below this index */
	uint64_t free_byte_offset;  /* tail of the last compressed-write cluster, 0: none */

	/* snapshots */
	struct qcow2_snapshot *snapshots;
	uint32_t nb_snapshots;
	uint64_t snapshots_offset;
	uint64_t snapshots_size; /* bytes on disk */

	/* persistent dirty bitmaps (loaded while autoclear bit 0 is set) */
	struct qcow2_bitmap *bitmaps;
	uint32_t nb_bitmaps;
	uint64_t bitmap_dir_offset, bitmap_dir_size;

	struct qcow2_cache l2_cache;
	struct qcow2_cache rb_cache;

	struct qcow2_pending_free *pending;
	unsigned n_pending;

	/* last decompressed cluster, keyed by its L2 entry */
	uint64_t dc_entry;
	uint8_t *dc_buf;

	char *corrupt_msg; /* first corruption found, for info */
	bool writable;
	bool lazy_active; /* dirty bit set by us: refcount ordering relaxed */
	bool corrupt;
	uint32_t file_align; /* I/O alignment and buffer alignment for the protocol */
	uint64_t file_len;   /* last known length of the image file */
};

/*
 * qcow2-io.c: the bottom layer (calls no other qcow2 file). s->lock held
 * where the header copy or s->file_len is used.
 */
int qcow2_file_pread(struct qcow2_state *s, uint64_t off, void *buf, uint64_t len);
int qcow2_file_pwrite(struct qcow2_state *s, uint64_t off, const void *buf, uint64_t len);
int qcow2_file_flush(struct qcow2_state *s);
uint64_t qcow2_file_length(struct qcow2_state *s);
/* True if [off, off+len) ends past the image file (length cached, refreshed on doubt). */
bool qcow2_past_eof(struct qcow2_state *s, uint64_t off, uint64_t len);
void *qcow2_alloc_buf(struct qcow2_state *s, size_t len); /* aligned, zeroed; free() */
/*
 * Serialize the header cluster into @buf (zeroed first); *ret_used is the
 * number of meaningful bytes. The feature name table is left out when it
 * would not fit (512-byte clusters). -ENOSPC if even that does not fit.
 */
int qcow2_build_header(struct qcow2_state *s, uint8_t *buf, size_t buf_len, size_t *ret_used);
/* Rewrite the header cluster from the in-memory copy (no sync). */
int qcow2_update_header(struct qcow2_state *s);
/* Set the corrupt bit (version 3), refuse further writes; always returns -EIO. */
int qcow2_signal_corruption(struct qcow2_state *s, const char *fmt, ...) _printf_(2, 3);
/* With lazy refcounts: set the dirty bit on disk before the first metadata write. */
/*
 * Take s->io_lock exclusively and s->lock for an operation that may free
 * data clusters or share them (discard, zeroes, truncate, snapshots,
 * check): first keep new direct writes out and wait for those in flight,
 * holding no lock meanwhile (their ends need s->lock, and the loop thread
 * that ends them may wait for s->lock itself). qcow2_unlock_exclusive
 * undoes it. qcow2_direct_writes_block/_unblock: the same wait alone,
 * for a caller about to take the locks shared.
 */
void qcow2_lock_exclusive(struct qcow2_state *s);
void qcow2_unlock_exclusive(struct qcow2_state *s);
void qcow2_direct_writes_block(struct qcow2_state *s);
void qcow2_direct_writes_unblock(struct qcow2_state *s);
int qcow2_mark_dirty(struct qcow2_state *s);
/* Write the aligned block of the L1 table that holds entry @index (no sync). */
int qcow2_write_l1_entry(struct qcow2_state *s, uint32_t index);
/* Name of feature @bit of table @type (0 incompatible, 1 compatible, 2 autoclear), or NULL. */
const char *qcow2_feature_name(unsigned type, unsigned bit);

/* qcow2-cache.c */
int qcow2_cache_init(struct qcow2_cache *c, unsigned n, bool is_l2);
void qcow2_cache_destroy(struct qcow2_cache *c);
int qcow2_cache_get(struct qcow2_state *s, struct qcow2_cache *c, uint64_t offset, void **ret);
int qcow2_cache_get_empty(struct qcow2_state *s, struct qcow2_cache *c, uint64_t offset,
			  void **ret);
void qcow2_cache_put(struct qcow2_cache *c, void **table);
void qcow2_cache_mark_dirty(struct qcow2_cache *c, void *table);
int qcow2_cache_write(struct qcow2_state *s, struct qcow2_cache *c); /* dirty out, no sync */
int qcow2_cache_flush(struct qcow2_state *s, struct qcow2_cache *c); /* + protocol sync */
void qcow2_cache_drop(struct qcow2_cache *c, uint64_t offset);	     /* forget, even if dirty */
void qcow2_cache_drop_all(struct qcow2_cache *c);
int qcow2_flush_all(struct qcow2_state *s); /* both caches, pending frees, protocol sync */

/* qcow2-refcount.c */
static inline uint64_t qcow2_get_refcount_entry(const void *rb, uint64_t i, unsigned order)
{
	const uint8_t *p = rb;

	switch (order) {
	case 0:
		return (p[i / 8] >> (i % 8)) & 1;
	case 1:
		return (p[i / 4] >> (2 * (i % 4))) & 3;
	case 2:
		return (p[i / 2] >> (4 * (i % 2))) & 15;
	case 3:
		return p[i];
	case 4:
		return (uint64_t)p[2 * i] << 8 | p[2 * i + 1];
	case 5:
		return (uint64_t)p[4 * i] << 24 | (uint64_t)p[4 * i + 1] << 16 |
		       (uint64_t)p[4 * i + 2] << 8 | p[4 * i + 3];
	default: {
		uint64_t v = 0;

		for (int k = 0; k < 8; k++) {
			v = v << 8 | p[8 * i + k];
		}
		return v;
	}
	}
}

static inline void qcow2_set_refcount_entry(void *rb, uint64_t i, unsigned order, uint64_t v)
{
	uint8_t *p = rb;

	switch (order) {
	case 0:
		p[i / 8] = (uint8_t)((p[i / 8] & ~(1u << (i % 8))) | (v & 1) << (i % 8));
		break;
	case 1:
		p[i / 4] =
			(uint8_t)((p[i / 4] & ~(3u << (2 * (i % 4)))) | (v & 3) << (2 * (i % 4)));
		break;
	case 2:
		p[i / 2] =
			(uint8_t)((p[i / 2] & ~(15u << (4 * (i % 2)))) | (v & 15) << (4 * (i % 2)));
		break;
	case 3:
		p[i] = (uint8_t)v;
		break;
	case 4:
		p[2 * i] = (uint8_t)(v >> 8);
		p[2 * i + 1] = (uint8_t)v;
		break;
	case 5:
		for (int k = 0; k < 4; k++) {
			p[4 * i + k] = (uint8_t)(v >> (24 - 8 * k));
		}
		break;
	default:
		for (int k = 0; k < 8; k++) {
			p[8 * i + k] = (uint8_t)(v >> (56 - 8 * k));
		}
		break;
	}
}

int qcow2_refcount_load(struct qcow2_state *s, struct error **errp);
int qcow2_get_refcount(struct qcow2_state *s, uint64_t cluster_index, uint64_t *ret);
/* Add @delta to the refcount of each cluster in [offset, offset + len) (byte range). */
int qcow2_update_refcount(struct qcow2_state *s, uint64_t offset, uint64_t len, int64_t delta);
/* Allocate @n contiguous clusters (refcount 1); returns the byte offset or -errno. */
int64_t qcow2_alloc_clusters(struct qcow2_state *s, uint64_t n);
/* Allocate @len bytes for compressed data (packed into shared clusters). */
int64_t qcow2_alloc_bytes(struct qcow2_state *s, uint64_t len);
/*
 * Drop one reference from each cluster of [offset, offset + n clusters)
 * after the L2/L1 tables that referenced them are on disk (deferred).
 */
int qcow2_free_clusters_deferred(struct qcow2_state *s, uint64_t offset, uint64_t n);
int qcow2_apply_pending_frees(struct qcow2_state *s);
/* Free the references an L2 entry holds (deferred), whatever its type. */
int qcow2_free_l2_entry_deferred(struct qcow2_state *s, uint64_t entry);
int qcow2_check(struct qcow2_state *s, struct block_check_result *res, unsigned fix);
/* Recompute refcounts from the mapping and write a fresh refcount structure. */
int qcow2_rebuild_refcounts(struct qcow2_state *s);
/*
 * Rewrite the refcount structure with entries of 2^@order bits (amend
 * refcount_bits): -ERANGE and *ret_bad the cluster index if a refcount does
 * not fit; the old structure becomes free space. s->lock held, caches flushed.
 */
int qcow2_change_refcount_order(struct qcow2_state *s, uint32_t order, uint64_t *ret_bad);
/* Write the snapshot table again (as v3 wants it: 16 bytes of extra data at least). */
int qcow2_snapshots_rewrite(struct qcow2_state *s);
/*
 * True if the clusters of [off, off+len) overlap the header, L1 tables,
 * refcount structures or snapshot table; with @data (a guest data write)
 * also the active L2 tables.
 */
bool qcow2_overlaps_metadata(struct qcow2_state *s, uint64_t off, uint64_t len, bool data);

/* qcow2-cluster.c (the L2 entry decoders are inline below) */
/*
 * Look up guest @offset: *ret_entry is the L2 entry (0 if no L2 table);
 * *ret_n the number of bytes from @offset (at most @len) that map
 * contiguously with the same type.
 */
int qcow2_get_cluster(struct qcow2_state *s, uint64_t offset, uint64_t len, uint64_t *ret_entry,
		      uint64_t *ret_n);
/* Get the L2 table for guest @offset for modification (allocating/COWing it). */
int qcow2_get_l2_for_write(struct qcow2_state *s, uint64_t offset, uint64_t **ret_l2,
			   uint64_t *ret_index);
int qcow2_grow_l1(struct qcow2_state *s, uint64_t min_size);
enum qcow2_discard_mode {
	QCOW2_DISCARD,	  /* free; reads zeroes, or the backing file on version 2 */
	QCOW2_ZERO_UNMAP, /* free; reads zeroes */
	QCOW2_ZERO_KEEP,  /* reads zeroes; a cluster owned alone stays allocated */
};
/* Rewrite the L2 entries of the whole clusters of [offset, offset+len). */
int qcow2_discard_range(struct qcow2_state *s, uint64_t offset, uint64_t len,
			enum qcow2_discard_mode mode);

/* qcow2-snapshot.c */
int qcow2_snapshots_load(struct qcow2_state *s, struct error **errp);
void qcow2_snapshots_free(struct qcow2_state *s);
/* Add @delta to the refcounts of everything an L1 table references (0: only fix COPIED). */
int qcow2_update_l1_refcounts(struct qcow2_state *s, const uint64_t *l1, uint32_t l1_size,
			      int delta, bool active);
int qcow2_snapshot_create(struct block_node *bs, const char *name,
			  const struct block_snapshot_vm *vm, struct error **errp);
/* Where the VM-state area starts: QEMU's qcow2_vm_state_offset(), the first L1 slot past the disk. */
uint64_t qcow2_vm_state_offset(struct qcow2_state *s);
int qcow2_snapshot_apply(struct block_node *bs, const char *name, struct error **errp);
int qcow2_snapshot_delete(struct block_node *bs, const char *id, const char *name,
			  struct error **errp);
json_t *qcow2_snapshot_list(struct block_node *bs, struct error **errp);
/* The snapshot table as QEMU's SnapshotInfo array; s->lock held. */
json_t *qcow2_snapshots_json(struct qcow2_state *s);

/*
 * qcow2-bitmap.c: persistent dirty bitmaps (QEMU's docs/interop/qcow2.txt,
 * "Bitmaps extension"). The extension's 24 bytes stay in s->unknown_exts
 * and are rewritten there. qcow2_bitmaps_load: parse and bound-check the
 * directory at open (only while autoclear bit 0 is set). bitmaps_json:
 * QEMU's Qcow2BitmapInfo list, NULL if none; s->lock held.
 */
int qcow2_bitmaps_load(struct qcow2_state *s, struct error **errp);
void qcow2_bitmaps_free(struct qcow2_state *s);
json_t *qcow2_bitmaps_json(struct qcow2_state *s);
int qcow2_bitmap_op(struct block_node *bs, const struct block_bitmap_req *req, struct error **errp);
int qcow2_bitmap_read(struct block_node *bs, const char *name, struct block_bitmap_data *ret,
		      struct error **errp);

/* qcow2-compress.c: pure functions, any thread. */
/* Returns the compressed length, or -ENOSPC if it does not fit in @out_len. */
int64_t qcow2_compress(int type, void *out, size_t out_len, const void *in, size_t in_len);
/* Fill exactly @out_len bytes; trailing input is ignored. -EIO on bad data. */
int qcow2_decompress(int type, void *out, size_t out_len, const void *in, size_t in_len);

/* Header parsing (qcow2.c), exposed for the unit tests of crafted headers. */
int qcow2_parse_header(struct qcow2_state *s, const uint8_t *buf, size_t buf_len, uint64_t file_len,
		       struct error **errp);

static inline uint64_t qcow2_be64(const void *p)
{
	const uint8_t *b = p;

	return (uint64_t)b[0] << 56 | (uint64_t)b[1] << 48 | (uint64_t)b[2] << 40 |
	       (uint64_t)b[3] << 32 | (uint64_t)b[4] << 24 | (uint64_t)b[5] << 16 |
	       (uint64_t)b[6] << 8 | b[7];
}

static inline uint32_t qcow2_be32(const void *p)
{
	const uint8_t *b = p;

	return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static inline uint16_t qcow2_be16(const void *p)
{
	const uint8_t *b = p;

	return (uint16_t)(b[0] << 8 | b[1]);
}

static inline void qcow2_put_be64(void *p, uint64_t v)
{
	uint8_t *b = p;

	for (int i = 0; i < 8; i++) {
		b[i] = (uint8_t)(v >> (56 - 8 * i));
	}
}

static inline void qcow2_put_be32(void *p, uint32_t v)
{
	uint8_t *b = p;

	for (int i = 0; i < 4; i++) {
		b[i] = (uint8_t)(v >> (24 - 8 * i));
	}
}

static inline void qcow2_put_be16(void *p, uint16_t v)
{
	uint8_t *b = p;

	b[0] = (uint8_t)(v >> 8);
	b[1] = (uint8_t)v;
}

static inline uint64_t qcow2_offset_into_cluster(const struct qcow2_state *s, uint64_t off)
{
	return off & (s->cluster_size - 1);
}

static inline uint64_t qcow2_size_to_clusters(const struct qcow2_state *s, uint64_t size)
{
	return (size + s->cluster_size - 1) >> s->cluster_bits;
}

static inline uint64_t qcow2_l1_index(const struct qcow2_state *s, uint64_t off)
{
	return off >> (s->cluster_bits + s->l2_bits);
}

static inline uint64_t qcow2_l2_index(const struct qcow2_state *s, uint64_t off)
{
	return (off >> s->cluster_bits) & (s->l2_entries - 1);
}

/* L1 entries needed for a virtual size; 0 on overflow past 2^64. */
static inline uint64_t qcow2_l1_size_for(uint32_t cluster_bits, uint64_t size)
{
	unsigned shift = cluster_bits + (cluster_bits - 3);

	return (size >> shift) + ((size & ((1ull << shift) - 1)) ? 1 : 0);
}

/*
 * L2 entry decoders, inline (as QEMU's qcow2_get_cluster_type()) because
 * the mapping, the refcounts and the check all read entries: out of line
 * they tied qcow2-refcount.c to qcow2-cluster.c in a cycle.
 */
static inline enum qcow2_cluster_type qcow2_l2_entry_type(const struct qcow2_state *s,
							  uint64_t entry)
{
	(void)s;
	if (entry & QCOW2_OFLAG_COMPRESSED) {
		return QCOW2_CLUSTER_COMPRESSED;
	}
	if (entry & QCOW2_OFLAG_ZERO) {
		return entry & QCOW2_OFFSET_MASK ? QCOW2_CLUSTER_ZERO_ALLOC
						 : QCOW2_CLUSTER_ZERO_PLAIN;
	}
	if (!(entry & QCOW2_OFFSET_MASK)) {
		return QCOW2_CLUSTER_UNALLOCATED;
	}
	return QCOW2_CLUSTER_NORMAL;
}

/* Host byte offset and size of a compressed cluster's data. */
static inline void qcow2_compressed_range(const struct qcow2_state *s, uint64_t entry,
					  uint64_t *ret_off, uint64_t *ret_len)
{
	uint64_t off = entry & s->coffset_mask;
	uint64_t sectors = ((entry >> s->csize_shift) & s->csize_mask) + 1;

	*ret_off = off;
	*ret_len = sectors * 512 - (off & 511);
}
