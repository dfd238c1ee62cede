/*
 * QED format driver (QEMU's docs/interop/qed_spec.txt): a header cluster,
 * an L1 table and L2 tables of little-endian 64-bit cluster offsets (0:
 * unallocated, 1: zero cluster). Clusters and L2 tables are appended at the
 * end of the file; nothing is ever freed, so there are no refcounts.
 *
 * Consistency: an allocating write sets the header's need-check bit (and
 * syncs) before its first metadata update, writes data, then the L2 table,
 * then the L1 entry; flush and close sync and clear the bit. An image found
 * with the bit set is checked and repaired when opened writable (entries
 * that point outside the file or into metadata are dropped), as QEMU does.
 *
 * Backing files: unallocated clusters read from the backing image (raw
 * when the header says "no probe", else probed; raw, qcow2 or qed), and an
 * allocating write copies the rest of its clusters from it.
 *
 * Refused: unknown feature bits, tables larger than 32 MiB, backing names
 * over 1023 bytes or outside the header, chains deeper than 16 images.
 *
 * Threads: block worker threads, concurrently. s->lock protects the header
 * copy, the L1 table, the L2 cache and the allocation point. Reads and
 * in-place writes look up under the lock and transfer without it (clusters
 * never move or get freed); allocating writes run under the lock.
 */
#include "config.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/block-int.h"
#include "common/bytes.h"
#include "block/table-cache.h"
#include "common/iov.h"
#include "common/parse.h"

#define QED_MAGIC 0x00444551u /* "QED\0" little-endian */
#define QED_HEADER_LEN 64
#define QED_MIN_CLUSTER (4u << 10)
#define QED_MAX_CLUSTER (64u << 20)
#define QED_DEFAULT_CLUSTER (64u << 10)
#define QED_MAX_TABLE_SIZE 16
#define QED_DEFAULT_TABLE_SIZE 4
/* Our bound on one table (QEMU allows up to 1 GiB): L1 stays in memory. */
#define QED_MAX_TABLE_BYTES (32u << 20)
#define QED_L2_CACHE_BYTES (8u << 20)
#define QED_MAX_BACKING_NAME 1023
#define QED_MAX_BACKING_DEPTH 16

#define QED_F_BACKING_FILE (UINT64_C(1) << 0)
#define QED_F_NEED_CHECK (UINT64_C(1) << 1)
#define QED_F_BACKING_FORMAT_NO_PROBE (UINT64_C(1) << 2)
#define QED_F_KNOWN (QED_F_BACKING_FILE | QED_F_NEED_CHECK | QED_F_BACKING_FORMAT_NO_PROBE)

#define QED_UNALLOCATED 0
#define QED_ZERO_CLUSTER 1

struct qed_state {
	struct block_node *bs;
	pthread_mutex_t lock;
	uint8_t header[QED_HEADER_LEN]; /* as on disk */
	uint32_t cluster_size, cluster_bits;
	uint32_t table_size, header_size; /* in clusters */
	uint64_t features, compat, autoclear;
	uint64_t l1_offset, image_size;
	uint64_t table_bytes;
	uint32_t table_entries, table_bits;
	uint64_t *l1; /* host order */
	struct table_cache *l2_cache;
	uint64_t file_end; /* allocation point, cluster aligned */
	uint64_t meta_end; /* end of header and L1: no data before this */
	bool writable;
	bool need_check_on; /* we set the need-check bit and have not cleared it */
	char *backing_file; /* as recorded, or NULL */
};

static __thread unsigned backing_depth;

enum qed_kind {
	QED_KIND_UNALLOC,
	QED_KIND_ZERO,
	QED_KIND_DATA
};

static bool is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

static uint64_t max_image_size(uint32_t cluster_size, uint32_t table_size)
{
	uint64_t entries = (uint64_t)table_size * cluster_size / 8;

	return (uint64_t)cluster_size * entries * entries;
}

static int qed_probe(const uint8_t *buf, size_t len, const char *filename)
{
	(void)filename;
	return len >= QED_HEADER_LEN && le32(buf) == QED_MAGIC ? 100 : 0;
}

/* Validate a header against the file length (everything an open relies on). */
static int parse_header(struct qed_state *s, const char *fn, uint64_t file_len, struct error **errp)
{
	const uint8_t *h = s->header;

	if (le32(h) != QED_MAGIC) {
		return error_set(errp, EINVAL, "'%s' is not a QED image (bad magic)", fn);
	}
	s->cluster_size = le32(h + 4);
	s->table_size = le32(h + 8);
	s->header_size = le32(h + 12);
	s->features = le64(h + 16);
	s->compat = le64(h + 24);
	s->autoclear = le64(h + 32);
	s->l1_offset = le64(h + 40);
	s->image_size = le64(h + 48);
	if (!is_pow2(s->cluster_size) || s->cluster_size < QED_MIN_CLUSTER ||
	    s->cluster_size > QED_MAX_CLUSTER) {
		return error_set(errp, EINVAL,
				 "QED image '%s': cluster size %" PRIu32
				 " is not a power of two in [4096, 67108864]",
				 fn, s->cluster_size);
	}
	if (!is_pow2(s->table_size) || s->table_size > QED_MAX_TABLE_SIZE) {
		return error_set(errp, EINVAL,
				 "QED image '%s': table size %" PRIu32
				 " is not a power of two in [1, 16]",
				 fn, s->table_size);
	}
	s->table_bytes = (uint64_t)s->table_size * s->cluster_size;
	if (s->table_bytes > QED_MAX_TABLE_BYTES) {
		return error_set(errp, EFBIG,
				 "QED image '%s': tables of %" PRIu64
				 " bytes exceed the 32 MiB this driver supports",
				 fn, s->table_bytes);
	}
	if (s->header_size == 0 || s->header_size > 16) {
		return error_set(errp, EINVAL,
				 "QED image '%s': header size %" PRIu32 " clusters is invalid", fn,
				 s->header_size);
	}
	if (s->features & ~QED_F_KNOWN) {
		return error_set(errp, ENOTSUP, "QED image '%s' has unsupported features %#" PRIx64,
				 fn, s->features & ~QED_F_KNOWN);
	}
	if (s->image_size % 512 || s->image_size > max_image_size(s->cluster_size, s->table_size)) {
		return error_set(errp, EINVAL,
				 "QED image '%s': virtual size %" PRIu64
				 " is not a multiple of 512 or exceeds what the tables map",
				 fn, s->image_size);
	}
	if (s->l1_offset % s->cluster_size ||
	    s->l1_offset < (uint64_t)s->header_size * s->cluster_size || s->l1_offset > file_len ||
	    s->table_bytes > file_len - s->l1_offset) {
		return error_set(errp, EINVAL,
				 "QED image '%s': L1 table offset %#" PRIx64
				 " is unaligned, inside the header or past the end of the file",
				 fn, s->l1_offset);
	}
	if (s->features & QED_F_BACKING_FILE) {
		uint32_t off = le32(h + 56), len = le32(h + 60);
		uint64_t hdr_bytes = (uint64_t)s->header_size * s->cluster_size;
		int r;

		if (len == 0 || len > QED_MAX_BACKING_NAME || off < QED_HEADER_LEN ||
		    (uint64_t)off + len > hdr_bytes || (uint64_t)off + len > file_len) {
			return error_set(errp, EINVAL,
					 "QED image '%s': backing file name at %" PRIu32
					 " (%" PRIu32
					 " bytes) is empty, over 1023 bytes or outside the header",
					 fn, off, len);
		}
		s->backing_file = calloc(1, len + 1);
		if (!s->backing_file) {
			return error_set(errp, ENOMEM, "out of memory");
		}
		r = block_pread(s->bs->file, off, s->backing_file, len);
		if (r < 0) {
			return error_set_errno(errp, r,
					       "could not read the backing file name of '%s'", fn);
		}
		if (memchr(s->backing_file, 0, len)) {
			return error_set(errp, EINVAL,
					 "QED image '%s': the backing file name has a NUL", fn);
		}
	}
	s->cluster_bits = (uint32_t)__builtin_ctz(s->cluster_size);
	s->table_entries = (uint32_t)(s->table_bytes / 8);
	s->table_bits = (uint32_t)__builtin_ctz(s->table_entries);
	s->meta_end = s->l1_offset + s->table_bytes;
	return 0;
}

/* A table or data offset from an entry is usable: aligned, past the header, inside the file. */
static bool offset_valid(struct qed_state *s, uint64_t off)
{
	return off % s->cluster_size == 0 && off >= (uint64_t)s->header_size * s->cluster_size &&
	       !(off >= s->l1_offset && off < s->meta_end) && off < s->file_end;
}

static int write_header(struct qed_state *s)
{
	put_le64(s->header + 16, s->features);
	put_le64(s->header + 32, s->autoclear);
	put_le64(s->header + 48, s->image_size);
	return block_pwrite(s->bs->file, 0, s->header, QED_HEADER_LEN);
}

/* Before the first metadata update since the last flush: set need-check, durably. */
static int need_check_set(struct qed_state *s)
{
	int r;

	if (s->need_check_on) {
		return 0;
	}
	s->features |= QED_F_NEED_CHECK;
	r = write_header(s);
	if (r == 0) {
		r = block_flush(s->bs->file);
	}
	if (r < 0) {
		s->features &= ~QED_F_NEED_CHECK;
		return r;
	}
	s->need_check_on = true;
	return 0;
}

static int need_check_clear(struct qed_state *s)
{
	int r;

	if (!s->need_check_on) {
		return 0;
	}
	r = block_flush(s->bs->file);
	if (r < 0) {
		return r;
	}
	s->features &= ~QED_F_NEED_CHECK;
	r = write_header(s);
	if (r < 0) {
		return r;
	}
	s->need_check_on = false;
	return 0;
}

static int get_l2(struct qed_state *s, uint64_t l2_off, uint8_t **ret)
{
	return table_cache_get(s->l2_cache, s->bs->file, l2_off, (void **)ret);
}

/*
 * Map guest @offset: *ret_kind, *ret_host (data only) and *ret_n, the bytes
 * from @offset (at most @len) that map the same way contiguously. s->lock held.
 */
static int lookup(struct qed_state *s, uint64_t offset, uint64_t len, enum qed_kind *ret_kind,
		  uint64_t *ret_host, uint64_t *ret_n)
{
	uint64_t cl = offset >> s->cluster_bits;
	uint64_t l1i = cl >> s->table_bits, l2i = cl & (s->table_entries - 1);
	uint64_t in = offset & (s->cluster_size - 1);
	uint64_t l2_off = s->l1[l1i], first, n;
	uint8_t *t;
	int r;

	if (l2_off == 0) {
		*ret_kind = QED_KIND_UNALLOC;
		n = ((s->table_entries - l2i) << s->cluster_bits) - in;
		*ret_n = MIN(n, len);
		return 0;
	}
	if (!offset_valid(s, l2_off) || s->table_bytes > s->file_end - l2_off) {
		return -EIO;
	}
	r = get_l2(s, l2_off, &t);
	if (r < 0) {
		return r;
	}
	first = le64(t + 8 * l2i);
	if (first == QED_UNALLOCATED) {
		*ret_kind = QED_KIND_UNALLOC;
	} else if (first == QED_ZERO_CLUSTER) {
		*ret_kind = QED_KIND_ZERO;
	} else if (offset_valid(s, first)) {
		*ret_kind = QED_KIND_DATA;
		*ret_host = first + in;
	} else {
		return -EIO;
	}
	n = s->cluster_size - in;
	for (uint64_t k = l2i + 1; n < len && k < s->table_entries; k++) {
		uint64_t e = le64(t + 8 * k);

		if (*ret_kind == QED_KIND_DATA ? e != first + ((k - l2i) << s->cluster_bits)
					       : (e == QED_UNALLOCATED || e == QED_ZERO_CLUSTER
							  ? QED_KIND_UNALLOC + (e == 1)
							  : QED_KIND_DATA) != *ret_kind) {
			break;
		}
		n += s->cluster_size;
	}
	*ret_n = MIN(n, len);
	return 0;
}

/* Read [offset, offset+n) of the backing image into @iov at @iov_off; zeroes past its end. */
static int read_backing(struct block_node *bs, uint64_t offset, const struct iovec *iov,
			unsigned cnt, uint64_t iov_off, uint64_t n)
{
	uint64_t blen = block_length(bs->backing), in = 0;

	if (offset < blen) {
		int r;

		in = MIN(n, blen - offset);
		r = block_io_slice(bs->backing, false, offset, iov, cnt, iov_off, in);
		if (r < 0) {
			return r;
		}
	}
	iov_memset(iov, cnt, iov_off + in, 0, n - in);
	return 0;
}

/* Copy [from, to) of the backing image to the file at @host (copy-on-write padding). */
static int copy_backing(struct qed_state *s, uint64_t from, uint64_t to, uint64_t host)
{
	_cleanup_free_ uint8_t *buf = NULL;
	struct iovec v;
	int r;

	if (from >= to) {
		return 0;
	}
	buf = malloc(to - from);
	if (!buf) {
		return -ENOMEM;
	}
	v = (struct iovec){buf, to - from};
	r = read_backing(s->bs, from, &v, 1, 0, to - from);
	return r < 0 ? r : block_pwrite(s->bs->file, host, buf, to - from);
}

static int qed_preadv(struct block_node *bs, uint64_t offset, const struct iovec *iov, unsigned cnt,
		      uint64_t len)
{
	struct qed_state *s = bs->opaque;
	uint64_t done = 0;

	while (done < len) {
		enum qed_kind kind;
		uint64_t host = 0, n;
		int r;

		pthread_mutex_lock(&s->lock);
		r = lookup(s, offset + done, len - done, &kind, &host, &n);
		pthread_mutex_unlock(&s->lock);
		if (r < 0) {
			return r;
		}
		if (kind == QED_KIND_DATA) {
			r = block_io_slice(bs->file, false, host, iov, cnt, done, n);
		} else if (kind == QED_KIND_UNALLOC && bs->backing) {
			r = read_backing(bs, offset + done, iov, cnt, done, n);
		} else {
			iov_memset(iov, cnt, done, 0, n);
		}
		if (r < 0) {
			return r;
		}
		done += n;
	}
	return 0;
}

/*
 * Allocating write of [offset, offset+n) (inside one L2 table, unallocated
 * or zero clusters): the data goes to new clusters at the end of the file
 * (s->file_end is never below the file's length, so their head padding
 * is a hole that reads as zeroes; the tail is written so that the file
 * ends on a cluster boundary, which QEMU's check expects), then the L2 table (new or cached) and the L1
 * entry are updated. s->lock held.
 */
static int write_alloc(struct qed_state *s, uint64_t offset, const struct iovec *iov, unsigned cnt,
		       uint64_t iov_off, uint64_t n, enum qed_kind kind)
{
	struct block_node *file = s->bs->file;
	uint64_t start = ALIGN_DOWN(offset, (uint64_t)s->cluster_size);
	uint64_t end = ALIGN_UP(offset + n, (uint64_t)s->cluster_size);
	uint64_t nclusters = (end - start) >> s->cluster_bits;
	uint64_t cl = start >> s->cluster_bits;
	uint64_t l1i = cl >> s->table_bits, l2i = cl & (s->table_entries - 1);
	uint64_t host = s->file_end, l2_off = s->l1[l1i];
	uint8_t *t;
	int r;

	r = need_check_set(s);
	if (r < 0) {
		return r;
	}
	if (kind == QED_KIND_UNALLOC && s->bs->backing) {
		/* the rest of the new clusters comes from the backing image */
		r = copy_backing(s, start, offset, host);
		if (r == 0) {
			r = copy_backing(s, offset + n, end, host + (offset + n - start));
		}
	} else {
		r = 0;
	}
	if (r == 0) {
		r = block_io_slice(file, true, host + (offset - start), iov, cnt, iov_off, n);
	}
	if (r == 0 && end > offset + n && !(kind == QED_KIND_UNALLOC && s->bs->backing)) {
		/* QEMU rounds the file length down to a cluster: the last one must be whole */
		r = block_write_zeroes(file, host + (offset + n - start), end - (offset + n), 0);
	}
	if (r < 0) {
		return r;
	}
	s->file_end = host + (end - start);
	if (l2_off == 0) {
		l2_off = s->file_end;
		t = table_cache_new_table(s->l2_cache, l2_off);
		for (uint64_t k = 0; k < nclusters; k++) {
			put_le64(t + 8 * (l2i + k), host + (k << s->cluster_bits));
		}
		r = block_pwrite(file, l2_off, t, s->table_bytes);
		if (r < 0) {
			table_cache_clear(s->l2_cache);
			return r;
		}
		s->file_end += s->table_bytes;
		s->l1[l1i] = l2_off;
		{
			uint8_t e[8];

			put_le64(e, l2_off);
			r = block_pwrite(file, s->l1_offset + 8 * l1i, e, 8);
		}
		return r;
	}
	r = get_l2(s, l2_off, &t);
	if (r < 0) {
		return r;
	}
	for (uint64_t k = 0; k < nclusters; k++) {
		put_le64(t + 8 * (l2i + k), host + (k << s->cluster_bits));
	}
	r = block_pwrite(file, l2_off + 8 * l2i, t + 8 * l2i, 8 * nclusters);
	if (r < 0) {
		table_cache_clear(s->l2_cache);
	}
	return r;
}

static int qed_pwritev(struct block_node *bs, uint64_t offset, const struct iovec *iov,
		       unsigned cnt, uint64_t len)
{
	struct qed_state *s = bs->opaque;
	uint64_t done = 0;
	int r = 0;

	pthread_mutex_lock(&s->lock);
	while (done < len && r == 0) {
		enum qed_kind kind;
		uint64_t host = 0, n;

		r = lookup(s, offset + done, len - done, &kind, &host, &n);
		if (r < 0) {
			break;
		}
		if (kind == QED_KIND_DATA) {
			r = block_io_slice(bs->file, true, host, iov, cnt, done, n);
		} else {
			r = write_alloc(s, offset + done, iov, cnt, done, n, kind);
		}
		done += n;
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

static int qed_flush(struct block_node *bs)
{
	struct qed_state *s = bs->opaque;
	int r;

	pthread_mutex_lock(&s->lock);
	r = need_check_clear(s);
	pthread_mutex_unlock(&s->lock);
	return r;
}

static int qed_block_status(struct block_node *bs, uint64_t offset, uint64_t len,
			    uint64_t *ret_pnum, unsigned *ret_status, uint64_t *ret_file_offset)
{
	struct qed_state *s = bs->opaque;
	enum qed_kind kind;
	uint64_t host = 0;
	int r;

	pthread_mutex_lock(&s->lock);
	r = lookup(s, offset, len, &kind, &host, ret_pnum);
	pthread_mutex_unlock(&s->lock);
	if (r < 0) {
		return r;
	}
	*ret_file_offset = UINT64_MAX;
	if (kind == QED_KIND_DATA) {
		*ret_status = BLOCK_STATUS_DATA | BLOCK_STATUS_ALLOCATED;
		*ret_file_offset = host;
	} else if (kind == QED_KIND_ZERO) {
		*ret_status = BLOCK_STATUS_ZERO | BLOCK_STATUS_ALLOCATED;
	} else if (bs->backing && offset < block_length(bs->backing)) {
		unsigned bst;
		uint64_t pn;

		r = block_get_status(bs->backing, offset,
				     MIN(*ret_pnum, block_length(bs->backing) - offset), &pn, &bst,
				     NULL);
		if (r < 0) {
			return r;
		}
		*ret_pnum = pn;
		*ret_status = bst & ~BLOCK_STATUS_ALLOCATED;
	} else {
		*ret_status = BLOCK_STATUS_ZERO;
	}
	return 0;
}

/*
 * Walk every table: count (and with @fix drop) entries that point outside
 * the file, into metadata or at a cluster already referenced; count the
 * clusters no table references as leaks. s->lock held.
 */
static int check_tables(struct qed_state *s, struct block_check_result *res, bool fix)
{
	uint64_t nclusters = DIV_ROUND_UP(s->file_end, s->cluster_size);
	uint64_t first_data = s->meta_end >> s->cluster_bits;
	_cleanup_free_ uint8_t *used = calloc(DIV_ROUND_UP(nclusters, 8), 1);
	_cleanup_free_ uint8_t *t = NULL;
	bool l1_dirty = false;
	uint64_t last = 0;
	int r;

#define USED(c) (used[(c) / 8] & (1u << ((c) % 8)))
#define MARK(c) (used[(c) / 8] |= (uint8_t)(1u << ((c) % 8)))
	if (!used || posix_memalign((void **)&t, 4096, s->table_bytes)) {
		return -ENOMEM;
	}
	for (uint64_t i = 0; i < s->table_entries; i++) {
		uint64_t l2 = s->l1[i];
		bool l2_dirty = false, bad;

		if (!l2) {
			continue;
		}
		bad = !offset_valid(s, l2) || s->table_bytes > s->file_end - l2;
		for (uint64_t c = l2 >> s->cluster_bits;
		     !bad && c < (l2 + s->table_bytes) >> s->cluster_bits; c++) {
			bad = USED(c);
		}
		if (bad) {
			res->corruptions++;
			if (fix) {
				s->l1[i] = 0;
				l1_dirty = true;
				res->corruptions_fixed++;
			}
			continue;
		}
		for (uint64_t c = l2 >> s->cluster_bits;
		     c < (l2 + s->table_bytes) >> s->cluster_bits; c++) {
			MARK(c);
		}
		r = block_pread(s->bs->file, l2, t, s->table_bytes);
		if (r < 0) {
			res->check_errors++;
			return r;
		}
		for (uint64_t k = 0; k < s->table_entries; k++) {
			uint64_t e = le64(t + 8 * k);

			if (e == QED_UNALLOCATED || e == QED_ZERO_CLUSTER) {
				continue;
			}
			if (!offset_valid(s, e) || USED(e >> s->cluster_bits)) {
				res->corruptions++;
				if (fix) {
					put_le64(t + 8 * k, 0);
					l2_dirty = true;
					res->corruptions_fixed++;
				}
				continue;
			}
			MARK(e >> s->cluster_bits);
			res->allocated_clusters++;
			if (last && e != last + s->cluster_size) {
				res->fragmented_clusters++;
			}
			last = e;
		}
		if (l2_dirty) {
			r = block_pwrite(s->bs->file, l2, t, s->table_bytes);
			if (r < 0) {
				return r;
			}
		}
	}
	if (l1_dirty) {
		for (uint64_t i = 0; i < s->table_entries; i++) {
			put_le64(t + 8 * i, s->l1[i]);
		}
		r = block_pwrite(s->bs->file, s->l1_offset, t, s->table_bytes);
		if (r < 0) {
			return r;
		}
	}
	if (fix) {
		table_cache_clear(s->l2_cache);
	}
	for (uint64_t c = first_data; c < nclusters; c++) {
		if (!USED(c)) {
			res->leaks++;
		}
	}
#undef USED
#undef MARK
	res->total_clusters = DIV_ROUND_UP(s->image_size, s->cluster_size);
	res->image_end_offset = s->file_end;
	return 0;
}

static int qed_check(struct block_node *bs, struct block_check_result *res, unsigned fix)
{
	struct qed_state *s = bs->opaque;
	int r;

	pthread_mutex_lock(&s->lock);
	r = check_tables(s, res, fix & BLOCK_FIX_ERRORS);
	if (r == 0 && (fix & BLOCK_FIX_ERRORS) && s->writable) {
		r = need_check_clear(s);
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

static void qed_close(struct block_node *bs)
{
	struct qed_state *s = bs->opaque;

	if (!s) {
		return;
	}
	if (s->writable) {
		need_check_clear(s);
		block_flush(bs->file);
	}
	table_cache_free(s->l2_cache);
	free(s->l1);
	free(s->backing_file);
	block_unref(bs->backing);
	bs->backing = NULL;
	pthread_mutex_destroy(&s->lock);
	free(s);
	bs->opaque = NULL;
}

/* A backing name is relative to the image's directory. */
static char *backing_path(const char *image, const char *name)
{
	const char *slash;
	char *out;

	if (name[0] == '/' || strstr(name, "://") || !image || !(slash = strrchr(image, '/'))) {
		return strdup(name);
	}
	if (asprintf(&out, "%.*s/%s", (int)(slash - image), image, name) < 0) {
		return NULL;
	}
	return out;
}

/* Open the backing image read-only: raw with the no-probe bit, else probed. */
static int open_backing(struct block_node *bs, struct qed_state *s, struct error **errp)
{
	const char *image = bs->file && bs->file->filename ? bs->file->filename : bs->filename;
	_cleanup_free_ char *path = backing_path(image, s->backing_file);
	const char *fmt = "raw";
	unsigned flags = bs->flags & (BLOCK_O_NOCACHE | BLOCK_O_AIO_MASK | BLOCK_O_NO_LOCK);
	int r;

	if (!path) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	if (backing_depth >= QED_MAX_BACKING_DEPTH) {
		return error_set(errp, ELOOP, "backing chain is deeper than %d images at '%s'",
				 QED_MAX_BACKING_DEPTH, path);
	}
	if (!(s->features & QED_F_BACKING_FORMAT_NO_PROBE)) {
		r = block_probe_format(path, &fmt, errp);
		if (r < 0) {
			error_prefix(errp, "backing file '%s' of '%s'", path, image);
			return r;
		}
	}
	if (strcmp(fmt, "raw") && strcmp(fmt, "qcow2") && strcmp(fmt, "qed")) {
		return error_set(errp, ENOTSUP,
				 "backing file '%s' of '%s' has unsupported format '%s'", path,
				 image, fmt);
	}
	backing_depth++;
	r = block_open_driver(&bs->backing, fmt, path, NULL, flags, errp);
	backing_depth--;
	if (r < 0) {
		error_prefix(errp, "backing file '%s' of '%s'", path, image);
	}
	return r;
}

static int qed_open(struct block_node *bs, const char *filename, json_t *opts, struct error **errp)
{
	struct qed_state *s;
	uint64_t file_len = block_length(bs->file);
	_cleanup_free_ uint8_t *buf = NULL;
	unsigned n_cache;
	int r;

	if (json_object_size(opts)) {
		return error_set(errp, EINVAL, "invalid option '%s' for QED image '%s'",
				 json_object_iter_key(json_object_iter(opts)), filename);
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	bs->opaque = s;
	s->bs = bs;
	pthread_mutex_init(&s->lock, NULL);
	s->writable = !bs->read_only;
	if (file_len < QED_HEADER_LEN) {
		r = error_set(errp, EINVAL, "'%s' is too short for a QED image", filename);
		goto fail;
	}
	r = block_pread(bs->file, 0, s->header, QED_HEADER_LEN);
	if (r < 0) {
		error_set_errno(errp, r, "could not read the QED header of '%s'", filename);
		goto fail;
	}
	r = parse_header(s, filename, file_len, errp);
	if (r < 0) {
		goto fail;
	}
	s->file_end = ALIGN_UP(file_len, (uint64_t)s->cluster_size);
	s->l1 = calloc(s->table_entries, sizeof(*s->l1));
	if (!s->l1 || posix_memalign((void **)&buf, 4096, s->table_bytes)) {
		r = error_set(errp, ENOMEM, "out of memory for the QED L1 table of '%s'", filename);
		goto fail;
	}
	r = block_pread(bs->file, s->l1_offset, buf, s->table_bytes);
	if (r < 0) {
		error_set_errno(errp, r, "could not read the QED L1 table of '%s'", filename);
		goto fail;
	}
	for (uint32_t i = 0; i < s->table_entries; i++) {
		s->l1[i] = le64(buf + 8 * i);
	}
	n_cache = (unsigned)MAX(2, MIN(64, QED_L2_CACHE_BYTES / s->table_bytes));
	r = table_cache_new(&s->l2_cache, n_cache, s->table_bytes);
	if (r < 0) {
		error_set(errp, r, "out of memory for the QED L2 cache of '%s'", filename);
		goto fail;
	}
	if (s->backing_file && !(bs->flags & BLOCK_O_NO_BACKING)) {
		r = open_backing(bs, s, errp);
		if (r < 0) {
			goto fail;
		}
	}
	if (s->writable && s->autoclear) {
		s->autoclear = 0;
		r = write_header(s);
		if (r < 0) {
			error_set_errno(errp, r, "could not update the QED header of '%s'",
					filename);
			goto fail;
		}
	}
	if (s->writable && (s->features & QED_F_NEED_CHECK)) {
		struct block_check_result res = {0};

		/* as QEMU: an image not closed cleanly is checked and repaired on open */
		s->need_check_on = true;
		r = check_tables(s, &res, true);
		if (r == 0) {
			r = need_check_clear(s);
		}
		if (r < 0) {
			error_set_errno(errp, r, "could not repair QED image '%s'", filename);
			goto fail;
		}
	}
	return 0;
fail:
	s->writable = false;
	qed_close(bs);
	return r;
}

static uint64_t qed_get_length(struct block_node *bs)
{
	struct qed_state *s = bs->opaque;

	return __atomic_load_n(&s->image_size, __ATOMIC_RELAXED);
}

static int qed_truncate(struct block_node *bs, uint64_t len, struct error **errp)
{
	struct qed_state *s = bs->opaque;
	int r;

	pthread_mutex_lock(&s->lock);
	if (len < s->image_size) {
		r = error_set(errp, ENOTSUP, "QED image '%s' cannot shrink", bs->filename);
	} else if (len % 512 || len > max_image_size(s->cluster_size, s->table_size)) {
		r = error_set(errp, EINVAL,
			      "QED image '%s': size %" PRIu64
			      " is not a multiple of 512 or exceeds %" PRIu64 " bytes",
			      bs->filename, len, max_image_size(s->cluster_size, s->table_size));
	} else {
		uint64_t old = s->image_size;

		__atomic_store_n(&s->image_size, len, __ATOMIC_RELAXED);
		r = write_header(s);
		if (r == 0) {
			r = block_flush(bs->file);
		}
		if (r < 0) {
			__atomic_store_n(&s->image_size, old, __ATOMIC_RELAXED);
			error_set_errno(errp, r, "could not resize QED image '%s'", bs->filename);
		}
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

static void qed_info(struct block_node *bs, json_t *info)
{
	struct qed_state *s = bs->opaque;

	json_object_set_new(info, "cluster-size", json_integer(s->cluster_size));
	json_object_set_new(info, "dirty-flag", json_boolean(s->features & QED_F_NEED_CHECK));
	if (s->backing_file) {
		json_object_set_new(info, "backing-filename", json_string(s->backing_file));
		if (s->features & QED_F_BACKING_FORMAT_NO_PROBE) {
			json_object_set_new(info, "backing-filename-format", json_string("raw"));
		}
	}
}

static int qed_create(const char *filename, uint64_t size, json_t *opts, struct error **errp)
{
	uint64_t cluster_size = QED_DEFAULT_CLUSTER, table_size = QED_DEFAULT_TABLE_SIZE;
	const char *backing = NULL, *backing_fmt = NULL;
	struct block_node *file = NULL;
	_cleanup_free_ uint8_t *buf = NULL;
	const char *key;
	json_t *v;
	int r;

	json_object_foreach (opts, key, v) {
		const char *val = json_string_value(v);

		if (strcmp(key, "size") == 0) {
			continue;
		}
		if (!val) {
			return error_set(errp, EINVAL, "QED option '%s' must be a string", key);
		}
		if (strcmp(key, "cluster_size") == 0) {
			if (parse_size(val, &cluster_size) < 0) {
				return error_set(errp, EINVAL, "invalid cluster_size '%s'", val);
			}
		} else if (strcmp(key, "table_size") == 0) {
			if (parse_u64(val, &table_size) < 0) {
				return error_set(errp, EINVAL, "invalid table_size '%s'", val);
			}
			if (table_size == 0) {
				table_size = QED_DEFAULT_TABLE_SIZE;
			}
		} else if (strcmp(key, "preallocation") == 0 && strcmp(val, "off") == 0) {
			continue;
		} else if (strcmp(key, "backing_file") == 0) {
			backing = val;
		} else if (strcmp(key, "backing_fmt") == 0) {
			backing_fmt = val;
		} else {
			return error_set(errp, EINVAL, "invalid option '%s' for format 'qed'", key);
		}
	}
	if (!is_pow2(cluster_size) || cluster_size < QED_MIN_CLUSTER ||
	    cluster_size > QED_MAX_CLUSTER) {
		return error_set(
			errp, EINVAL,
			"QED cluster size must be within range [4096, 67108864] and power of 2");
	}
	if (!is_pow2(table_size) || table_size > QED_MAX_TABLE_SIZE) {
		return error_set(errp, EINVAL,
				 "QED table size must be within range [1, 16] and power of 2");
	}
	if (cluster_size * table_size > QED_MAX_TABLE_BYTES) {
		return error_set(errp, EINVAL,
				 "QED tables of cluster_size * table_size = %" PRIu64
				 " bytes exceed the 32 MiB this driver supports",
				 cluster_size * table_size);
	}
	if (backing && (strlen(backing) == 0 || strlen(backing) > QED_MAX_BACKING_NAME ||
			QED_HEADER_LEN + strlen(backing) > cluster_size)) {
		return error_set(errp, EINVAL, "QED backing file name '%s' is empty or too long",
				 backing);
	}
	if (backing && size == 0) {
		/* as qemu-img: the backing file's size */
		struct block_node *b = NULL;
		_cleanup_free_ char *path = backing_path(filename, backing);
		const char *fmt = backing_fmt;

		if (!path) {
			return error_set(errp, ENOMEM, "out of memory");
		}
		r = fmt ? 0 : block_probe_format(path, &fmt, errp);
		if (r == 0) {
			r = block_open(&b, path, fmt, BLOCK_O_NO_BACKING, errp);
		}
		if (r < 0) {
			return r;
		}
		size = block_length(b);
		block_unref(b);
	}
	size = ALIGN_UP(size, 512);
	if (size == 0 || size > max_image_size((uint32_t)cluster_size, (uint32_t)table_size)) {
		return error_set(
			errp, EINVAL,
			"QED image size must be a non-zero multiple of cluster size and less "
			"than %" PRIu64 " bytes",
			max_image_size((uint32_t)cluster_size, (uint32_t)table_size));
	}
	/* the header cluster and a zeroed L1 table */
	r = block_create("raw", filename, cluster_size * (1 + table_size), NULL, errp);
	if (r < 0) {
		return r;
	}
	r = block_open(&file, filename, "raw", BLOCK_O_RDWR, errp);
	if (r < 0) {
		return r;
	}
	buf = calloc(1, cluster_size);
	if (!buf) {
		block_unref(file);
		return error_set(errp, ENOMEM, "out of memory");
	}
	put_le32(buf, QED_MAGIC);
	put_le32(buf + 4, (uint32_t)cluster_size);
	put_le32(buf + 8, (uint32_t)table_size);
	put_le32(buf + 12, 1);
	put_le64(buf + 40, cluster_size);
	put_le64(buf + 48, size);
	if (backing) {
		uint64_t features = QED_F_BACKING_FILE;

		/* QED records no format: only that a raw backing file must not be probed */
		if (backing_fmt && strcmp(backing_fmt, "raw") == 0) {
			features |= QED_F_BACKING_FORMAT_NO_PROBE;
		}
		put_le64(buf + 16, features);
		put_le32(buf + 56, QED_HEADER_LEN);
		put_le32(buf + 60, (uint32_t)strlen(backing));
		memcpy(buf + QED_HEADER_LEN, backing, strlen(backing));
	}
	r = block_pwrite(file, 0, buf, cluster_size);
	if (r == 0) {
		r = block_flush(file);
	}
	block_unref(file);
	if (r < 0) {
		return error_set_errno(errp, r, "could not write QED image '%s'", filename);
	}
	return 0;
}

const struct block_driver qed_driver = {
	.name = "qed",
	.probe = qed_probe,
	.create = qed_create,
	.open = qed_open,
	.close = qed_close,
	.get_length = qed_get_length,
	.preadv = qed_preadv,
	.pwritev = qed_pwritev,
	.flush = qed_flush,
	.truncate = qed_truncate,
	.block_status = qed_block_status,
	.check = qed_check,
	.info = qed_info,
};
