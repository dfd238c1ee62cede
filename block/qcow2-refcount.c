/*
 * qcow2 host cluster management: the refcount table and blocks (any
 * refcount width), the cluster allocator, deferred frees, the refcount
 * table's growth, the consistency check and the rebuild that repairs it.
 *
 * Ordering rules that keep an interrupted image consistent (leaks at most):
 *  - a new refcount block is written and synced before the table entry that
 *    points to it; a new refcount table before the header that points to it;
 *  - increments are flushed before any L2/L1 entry that uses the cluster
 *    (the L2 cache depends on this cache; L1 writers flush explicitly);
 *  - decrements are queued and applied only after the L2 tables that
 *    dropped the reference are written and synced.
 *
 * Threads: everything here runs with s->lock held.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2.h"

#define MAX_PENDING 4096

int qcow2_refcount_load(struct qcow2_state *s, struct error **errp)
{
	uint64_t bytes = (uint64_t)s->reftable_clusters << s->cluster_bits;
	uint8_t *buf;
	int ret;

	s->reftable_size = bytes / 8;
	s->reftable = calloc(s->reftable_size, sizeof(uint64_t));
	buf = qcow2_alloc_buf(s, bytes);
	if (!s->reftable || !buf) {
		free(buf);
		return error_set(errp, ENOMEM, "out of memory for the refcount table");
	}
	ret = qcow2_file_pread(s, s->reftable_offset, buf, bytes);
	if (ret < 0) {
		free(buf);
		return error_set_errno(errp, -ret, "cannot read the refcount table");
	}
	for (uint64_t i = 0; i < s->reftable_size; i++) {
		s->reftable[i] = qcow2_be64(buf + 8 * i);
		if (s->reftable[i]) {
			s->reftable_used = i + 1;
		}
	}
	free(buf);
	return 0;
}

static uint64_t refcount_max(struct qcow2_state *s)
{
	return s->refcount_bits == 64 ? UINT64_MAX : (1ull << s->refcount_bits) - 1;
}

/* Offset of the refcount block for table index @i, 0 if none; -EIO if invalid. */
static int64_t block_offset(struct qcow2_state *s, uint64_t i)
{
	uint64_t off;

	if (i >= s->reftable_size) {
		return 0;
	}
	off = s->reftable[i] & ~QCOW2_REFT_RESERVED;
	if (!off) {
		return 0;
	}
	if (s->reftable[i] & QCOW2_REFT_RESERVED || off & (s->cluster_size - 1)) {
		return qcow2_signal_corruption(
			s, "refcount block offset %#" PRIx64 " is not cluster aligned",
			s->reftable[i]);
	}
	if (off >> 56 || off < s->cluster_size) {
		return qcow2_signal_corruption(s, "refcount block offset %#" PRIx64 " is invalid",
					       off);
	}
	if (qcow2_past_eof(s, off, s->cluster_size)) {
		/* counting from zeroes would hand out clusters in use */
		return qcow2_signal_corruption(
			s, "refcount block at %#" PRIx64 " is beyond the end of the image", off);
	}
	return (int64_t)off;
}

int qcow2_get_refcount(struct qcow2_state *s, uint64_t cluster_index, uint64_t *ret)
{
	uint64_t i = cluster_index >> s->rb_bits;
	int64_t off = block_offset(s, i);
	void *rb;
	int r;

	if (off <= 0) {
		*ret = 0;
		return (int)off;
	}
	r = qcow2_cache_get(s, &s->rb_cache, (uint64_t)off, &rb);
	if (r < 0) {
		return r;
	}
	*ret = qcow2_get_refcount_entry(rb, cluster_index & (s->rb_entries - 1), s->refcount_order);
	qcow2_cache_put(&s->rb_cache, &rb);
	return 0;
}

/* Lowest index >= hint of a run of @n clusters with refcount 0. */
static int64_t find_free(struct qcow2_state *s, uint64_t n)
{
	uint64_t i = s->free_cluster_hint, run_start = i, run = 0;
	bool hint_set = false;
	int r;

	while (run < n) {
		uint64_t rt = i >> s->rb_bits;
		int64_t off = block_offset(s, rt);

		if (off < 0) {
			return off;
		}
		if (off == 0) {
			/* a whole block's worth of free clusters */
			uint64_t end = (rt + 1) << s->rb_bits;

			if (!hint_set) {
				s->free_cluster_hint = i;
				hint_set = true;
			}
			if (run == 0) {
				run_start = i;
			}
			run += end - i;
			i = end;
			continue;
		}
		void *rb;

		r = qcow2_cache_get(s, &s->rb_cache, (uint64_t)off, &rb);
		if (r < 0) {
			return r;
		}
		uint64_t end = (rt + 1) << s->rb_bits;

		for (; i < end && run < n; i++) {
			if (qcow2_get_refcount_entry(rb, i & (s->rb_entries - 1),
						     s->refcount_order) == 0) {
				if (!hint_set) {
					s->free_cluster_hint = i;
					hint_set = true;
				}
				if (run == 0) {
					run_start = i;
				}
				run++;
			} else {
				run = 0;
			}
		}
		qcow2_cache_put(&s->rb_cache, &rb);
		if ((i >> s->cluster_bits) > (1ull << (56 - 2 * 9))) {
			return -ENOSPC;
		}
	}
	return (int64_t)run_start;
}

static int write_reftable_entry(struct qcow2_state *s, uint64_t i)
{
	uint64_t align = MAX(512u, s->file_align);
	uint64_t first = ALIGN_DOWN(i * 8, align);
	uint64_t len = MIN(align, s->reftable_size * 8 - first);
	_cleanup_free_ uint8_t *buf = qcow2_alloc_buf(s, align);

	if (!buf) {
		return -ENOMEM;
	}
	for (uint64_t k = 0; k < len / 8; k++) {
		qcow2_put_be64(buf + 8 * k, s->reftable[first / 8 + k]);
	}
	return qcow2_file_pwrite(s, s->reftable_offset + first, buf, len);
}

static bool block_needed(struct qcow2_state *s, uint64_t i, uint64_t start, uint64_t end,
			 const uint32_t *refs, uint64_t nrefs)
{
	uint64_t base = i << s->rb_bits, lim = base + s->rb_entries;

	if (base < end && start < lim) {
		return true;
	}
	if (!refs) {
		return false;
	}
	for (uint64_t c = base; c < MIN(lim, nrefs); c++) {
		if (refs[c]) {
			return true;
		}
	}
	return false;
}

/*
 * Lay out a new refcount area at cluster index @start: the refcount blocks
 * it needs (for its own clusters and, on a rebuild, for every counted
 * cluster), then the table with at least @min_entries entries.
 */
static void layout_new_area(struct qcow2_state *s, uint64_t start, uint64_t min_entries,
			    const uint32_t *refs, uint64_t nrefs, uint64_t *ret_nb,
			    uint64_t *ret_nt, uint64_t *ret_entries)
{
	uint64_t nb = 0, nt = 0, entries = 0;

	for (;;) {
		uint64_t end = MAX(start + nb + nt, start + 1);
		uint64_t last = (end - 1) >> s->rb_bits;
		uint64_t want = MAX(last + 1, min_entries);
		uint64_t nnt, nnb = 0;

		want = ALIGN_UP(want, s->cluster_size / 8);
		nnt = want * 8 / s->cluster_size;
		for (uint64_t i = refs ? 0 : start >> s->rb_bits; i <= last; i++) {
			if (block_needed(s, i, start, end, refs, nrefs)) {
				nnb++;
			}
		}
		entries = want;
		if (nnt == nt && nnb == nb) {
			break;
		}
		nt = nnt;
		nb = nnb;
	}
	*ret_nb = nb;
	*ret_nt = nt;
	*ret_entries = entries;
}

/*
 * Write a new refcount table at cluster @start (after its new blocks) and
 * switch the header to it. Growing (@refs NULL): old entries are kept and
 * only the new area gets new blocks. Rebuilding: every block is new, filled
 * from @refs. The old structure stays valid until the header switch.
 */
static int install_reftable(struct qcow2_state *s, uint64_t start, uint64_t min_entries,
			    const uint32_t *refs, uint64_t nrefs)
{
	uint64_t nb, nt, entries, next, end;
	_cleanup_free_ uint64_t *table = NULL;
	_cleanup_free_ uint8_t *buf = NULL;
	_cleanup_free_ uint8_t *tb = NULL;
	uint64_t old_off = s->reftable_offset, old_clusters = s->reftable_clusters;
	int ret;

	layout_new_area(s, start, min_entries, refs, nrefs, &nb, &nt, &entries);
	if (entries * 8 > QCOW2_MAX_REFTABLE_BYTES) {
		return -EFBIG;
	}
	end = start + nb + nt;
	table = calloc(entries, sizeof(uint64_t));
	buf = qcow2_alloc_buf(s, s->cluster_size);
	tb = qcow2_alloc_buf(s, nt << s->cluster_bits);
	if (!table || !buf || !tb) {
		return -ENOMEM;
	}
	if (!refs) {
		memcpy(table, s->reftable, MIN(s->reftable_size, entries) * 8);
	}
	next = start;
	for (uint64_t bi = refs ? 0 : start >> s->rb_bits; bi < entries && next < start + nb;
	     bi++) {
		uint64_t base = bi << s->rb_bits;

		if (!block_needed(s, bi, start, end, refs, nrefs)) {
			continue;
		}
		memset(buf, 0, s->cluster_size);
		for (uint64_t k = 0; k < s->rb_entries; k++) {
			uint64_t c = base + k, v = 0;

			if (c >= start && c < end) {
				v = 1;
			} else if (refs && c < nrefs) {
				v = refs[c];
			}
			if (v > refcount_max(s)) {
				return -ERANGE;
			}
			if (v) {
				qcow2_set_refcount_entry(buf, k, s->refcount_order, v);
			}
		}
		table[bi] = next << s->cluster_bits;
		ret = qcow2_file_pwrite(s, table[bi], buf, s->cluster_size);
		if (ret < 0) {
			return ret;
		}
		next++;
	}
	for (uint64_t k = 0; k < entries; k++) {
		qcow2_put_be64(tb + 8 * k, table[k]);
	}
	ret = qcow2_file_pwrite(s, (start + nb) << s->cluster_bits, tb, nt << s->cluster_bits);
	if (ret < 0) {
		return ret;
	}
	ret = qcow2_file_flush(s);
	if (ret < 0) {
		return ret;
	}
	free(s->reftable);
	s->reftable = TAKE_PTR(table);
	s->reftable_size = entries;
	s->reftable_used = 0;
	for (uint64_t i = 0; i < entries; i++) {
		if (s->reftable[i]) {
			s->reftable_used = i + 1;
		}
	}
	s->reftable_offset = (start + nb) << s->cluster_bits;
	s->reftable_clusters = (uint32_t)nt;
	ret = qcow2_update_header(s);
	if (ret < 0) {
		return ret;
	}
	ret = qcow2_file_flush(s);
	if (ret < 0) {
		return ret;
	}
	if (!refs && old_off) {
		/* the old table is no longer referenced by the (synced) header */
		ret = qcow2_update_refcount(s, old_off, old_clusters << s->cluster_bits, -1);
	}
	return ret;
}

static int grow_reftable(struct qcow2_state *s, uint64_t needed_index)
{
	uint64_t file_clusters = qcow2_size_to_clusters(s, qcow2_file_length(s));
	uint64_t start = MAX(file_clusters, s->reftable_size << s->rb_bits);
	uint64_t min_entries = MAX(needed_index + 1, s->reftable_size + s->reftable_size / 2);
	int ret;

	/* writes to blocks of the old table must land before the table is copied */
	ret = qcow2_cache_flush(s, &s->rb_cache);
	if (ret < 0) {
		return ret;
	}
	return install_reftable(s, start, min_entries, NULL, 0);
}

static int set_refcount_in_block(struct qcow2_state *s, uint64_t c, int64_t delta, bool absolute,
				 uint64_t value);

/* Make sure the refcount block for table index @i exists. */
static int ensure_block(struct qcow2_state *s, uint64_t i)
{
	for (int tries = 0; tries < 64; tries++) {
		int64_t off, c;
		uint64_t j;
		void *rb;
		int ret;

		if (i >= s->reftable_size) {
			ret = grow_reftable(s, i);
			if (ret < 0) {
				return ret;
			}
			continue;
		}
		off = block_offset(s, i);
		if (off != 0) {
			return off < 0 ? (int)off : 0;
		}
		c = find_free(s, 1);
		if (c < 0) {
			return (int)c;
		}
		j = (uint64_t)c >> s->rb_bits;
		if (j != i) {
			if (j >= s->reftable_size || block_offset(s, j) == 0) {
				ret = ensure_block(s, j);
				if (ret < 0) {
					return ret;
				}
				continue; /* c may have been taken by that block */
			}
			ret = set_refcount_in_block(s, (uint64_t)c, 1, false, 0);
			if (ret < 0) {
				return ret;
			}
		}
		ret = qcow2_cache_get_empty(s, &s->rb_cache, (uint64_t)c << s->cluster_bits, &rb);
		if (ret < 0) {
			return ret;
		}
		if (j == i) {
			qcow2_set_refcount_entry(rb, (uint64_t)c & (s->rb_entries - 1),
						 s->refcount_order, 1);
		}
		qcow2_cache_mark_dirty(&s->rb_cache, rb);
		qcow2_cache_put(&s->rb_cache, &rb);
		ret = qcow2_cache_flush(s, &s->rb_cache);
		if (ret < 0) {
			return ret;
		}
		s->reftable[i] = (uint64_t)c << s->cluster_bits;
		ret = write_reftable_entry(s, i);
		if (ret < 0) {
			s->reftable[i] = 0;
			return ret;
		}
		s->reftable_used = MAX(s->reftable_used, i + 1);
		return 0;
	}
	return -EIO;
}

static void cluster_freed(struct qcow2_state *s, uint64_t c)
{
	uint64_t off = c << s->cluster_bits;

	if (c < s->free_cluster_hint) {
		s->free_cluster_hint = c;
	}
	qcow2_cache_drop(&s->l2_cache, off);
	qcow2_cache_drop(&s->rb_cache, off);
	if (s->free_byte_offset && ALIGN_DOWN(s->free_byte_offset, s->cluster_size) == off) {
		s->free_byte_offset = 0;
	}
	if (s->bs->flags & BLOCK_O_UNMAP) {
		block_discard(s->bs->file, off, s->cluster_size);
	}
}

static int set_refcount_in_block(struct qcow2_state *s, uint64_t c, int64_t delta, bool absolute,
				 uint64_t value)
{
	uint64_t i = c >> s->rb_bits, old, nv;
	int64_t off;
	void *rb;
	int ret;

	ret = ensure_block(s, i);
	if (ret < 0) {
		return ret;
	}
	off = block_offset(s, i);
	if (off <= 0) {
		return off < 0 ? (int)off : -EIO;
	}
	ret = qcow2_cache_get(s, &s->rb_cache, (uint64_t)off, &rb);
	if (ret < 0) {
		return ret;
	}
	old = qcow2_get_refcount_entry(rb, c & (s->rb_entries - 1), s->refcount_order);
	if (absolute) {
		nv = value;
	} else if (delta < 0 && old < (uint64_t)-delta) {
		qcow2_cache_put(&s->rb_cache, &rb);
		return qcow2_signal_corruption(
			s, "refcount of cluster %#" PRIx64 " would drop below 0",
			c << s->cluster_bits);
	} else if (delta > 0 && refcount_max(s) - old < (uint64_t)delta) {
		qcow2_cache_put(&s->rb_cache, &rb);
		return -ERANGE;
	} else {
		nv = old + (uint64_t)delta;
	}
	if (nv > refcount_max(s)) {
		qcow2_cache_put(&s->rb_cache, &rb);
		return -ERANGE;
	}
	qcow2_set_refcount_entry(rb, c & (s->rb_entries - 1), s->refcount_order, nv);
	qcow2_cache_mark_dirty(&s->rb_cache, rb);
	qcow2_cache_put(&s->rb_cache, &rb);
	if (nv == 0 && old != 0) {
		cluster_freed(s, c);
	}
	return 0;
}

int qcow2_update_refcount(struct qcow2_state *s, uint64_t offset, uint64_t len, int64_t delta)
{
	uint64_t first, last;

	if (!len) {
		return 0;
	}
	first = offset >> s->cluster_bits;
	last = (offset + len - 1) >> s->cluster_bits;
	for (uint64_t c = first; c <= last; c++) {
		int ret = set_refcount_in_block(s, c, delta, false, 0);

		if (ret < 0) {
			return ret;
		}
	}
	return 0;
}

int64_t qcow2_alloc_clusters(struct qcow2_state *s, uint64_t n)
{
	for (int tries = 0; tries < 64; tries++) {
		int64_t c = find_free(s, n);
		bool again = false;
		int ret;

		if (c < 0) {
			return c;
		}
		/* create missing refcount blocks first: they may take clusters of the run */
		for (uint64_t k = 0; k < n; k++) {
			uint64_t i = ((uint64_t)c + k) >> s->rb_bits;

			if (i >= s->reftable_size || block_offset(s, i) == 0) {
				ret = ensure_block(s, i);
				if (ret < 0) {
					return ret;
				}
				again = true;
				break;
			}
		}
		if (again) {
			continue;
		}
		for (uint64_t k = 0; k < n; k++) {
			ret = set_refcount_in_block(s, (uint64_t)c + k, 1, false, 0);
			if (ret < 0) {
				return ret;
			}
		}
		if ((uint64_t)c == s->free_cluster_hint) {
			s->free_cluster_hint = (uint64_t)c + n;
		}
		return c << s->cluster_bits;
	}
	return -EIO;
}

int64_t qcow2_alloc_bytes(struct qcow2_state *s, uint64_t len)
{
	uint64_t fbo = s->free_byte_offset;
	int64_t off;
	int ret;

	if (fbo && s->cluster_size - (fbo & (s->cluster_size - 1)) >= len) {
		uint64_t rc;

		ret = qcow2_get_refcount(s, fbo >> s->cluster_bits, &rc);
		if (ret < 0) {
			return ret;
		}
		/* a narrow refcount cannot count more sharers: start a new cluster */
		if (rc >= refcount_max(s)) {
			s->free_byte_offset = 0;
			return qcow2_alloc_bytes(s, len);
		}
		ret = qcow2_update_refcount(s, fbo, 1, 1);
		if (ret < 0) {
			return ret;
		}
		s->free_byte_offset = fbo + len;
		if (!(s->free_byte_offset & (s->cluster_size - 1))) {
			s->free_byte_offset = 0;
		}
		return (int64_t)fbo;
	}
	off = qcow2_alloc_clusters(s, DIV_ROUND_UP(len, s->cluster_size));
	if (off < 0) {
		return off;
	}
	s->free_byte_offset = (uint64_t)off + len;
	if (!(s->free_byte_offset & (s->cluster_size - 1))) {
		s->free_byte_offset = 0;
	}
	return off;
}

int qcow2_free_clusters_deferred(struct qcow2_state *s, uint64_t offset, uint64_t n)
{
	struct qcow2_pending_free *p;
	int ret;

	if (!n) {
		return 0;
	}
	if (s->n_pending) {
		p = &s->pending[s->n_pending - 1];
		if (p->offset + (p->count << s->cluster_bits) == offset) {
			p->count += n;
			return 0;
		}
	}
	if (s->n_pending == MAX_PENDING) {
		ret = qcow2_cache_flush(s, &s->l2_cache);
		if (ret < 0) {
			return ret;
		}
	}
	if (!s->pending) {
		s->pending = calloc(MAX_PENDING, sizeof(*s->pending));
		if (!s->pending) {
			return -ENOMEM;
		}
	}
	s->pending[s->n_pending++] = (struct qcow2_pending_free){offset, n};
	return 0;
}

int qcow2_apply_pending_frees(struct qcow2_state *s)
{
	while (s->n_pending) {
		struct qcow2_pending_free p = s->pending[--s->n_pending];
		int ret = qcow2_update_refcount(s, p.offset, p.count << s->cluster_bits, -1);

		if (ret < 0) {
			return ret;
		}
	}
	return 0;
}

int qcow2_free_l2_entry_deferred(struct qcow2_state *s, uint64_t entry)
{
	uint64_t off, len;

	switch (qcow2_l2_entry_type(s, entry)) {
	case QCOW2_CLUSTER_NORMAL:
	case QCOW2_CLUSTER_ZERO_ALLOC:
		return qcow2_free_clusters_deferred(s, entry & QCOW2_OFFSET_MASK, 1);
	case QCOW2_CLUSTER_COMPRESSED: {
		uint64_t first, last;

		s->dc_entry = 0;
		qcow2_compressed_range(s, entry, &off, &len);
		first = ALIGN_DOWN(off, s->cluster_size);
		last = ALIGN_DOWN(off + len - 1, s->cluster_size);
		return qcow2_free_clusters_deferred(s, first,
						    ((last - first) >> s->cluster_bits) + 1);
	}
	default:
		return 0;
	}
}

bool qcow2_overlaps_metadata(struct qcow2_state *s, uint64_t off, uint64_t len, bool data)
{
	uint64_t cs = s->cluster_size;
	uint64_t a = ALIGN_DOWN(off, cs), b = ALIGN_UP(off + len, cs);

#define OVERLAP(o, l) ((l) != 0 && (o) < b && a < ALIGN_UP((o) + (l), cs))
	if (a < cs) {
		return true; /* header */
	}
	if (OVERLAP(s->l1_table_offset, (uint64_t)s->l1_size * 8)) {
		return true;
	}
	if (OVERLAP(s->reftable_offset, (uint64_t)s->reftable_clusters << s->cluster_bits)) {
		return true;
	}
	if (OVERLAP(s->snapshots_offset, s->snapshots_size)) {
		return true;
	}
	for (uint64_t i = 0; i < s->reftable_used; i++) {
		uint64_t rb = s->reftable[i] & ~QCOW2_REFT_RESERVED;

		if (OVERLAP(rb, cs)) {
			return true;
		}
	}
	for (uint32_t i = 0; i < s->nb_snapshots; i++) {
		if (OVERLAP(s->snapshots[i].l1_table_offset,
			    (uint64_t)s->snapshots[i].l1_size * 8)) {
			return true;
		}
	}
	/* the active L2 tables, unless the L1 table is too large to scan per write */
	if (data && s->l1_size <= 65536) {
		for (uint32_t i = 0; i < s->l1_size; i++) {
			if (OVERLAP(s->l1_table[i] & QCOW2_OFFSET_MASK, cs)) {
				return true;
			}
		}
	}
#undef OVERLAP
	return false;
}

/* ---- consistency check and rebuild ---- */

struct check_ctx {
	struct qcow2_state *s;
	uint32_t *refs;
	uint64_t nb;
	struct block_check_result *res;
	uint64_t beyond_end; /* references past the end of the file */
	uint64_t bad_meta;   /* unaligned or invalid metadata pointers */
	uint64_t highest;    /* clusters up to the last one referenced or refcounted */
	uint64_t lines;	     /* per-cluster lines reported */
	bool quiet;	     /* a trial comparison: report nothing */
};

static void inc_range(struct check_ctx *cx, uint64_t off, uint64_t len)
{
	uint64_t first = off >> cx->s->cluster_bits;
	uint64_t last = (off + len - 1) >> cx->s->cluster_bits;

	for (uint64_t c = first; c <= last; c++) {
		if (c >= cx->nb) {
			cx->beyond_end++;
			return;
		}
		if (cx->refs[c] != UINT32_MAX) {
			cx->refs[c]++;
		}
	}
}

static int check_l2(struct check_ctx *cx, uint64_t l2_off, uint8_t *buf, bool active,
		    uint64_t *last_host)
{
	struct qcow2_state *s = cx->s;
	int ret = qcow2_file_pread(s, l2_off, buf, s->cluster_size);

	if (ret < 0) {
		return ret;
	}
	for (uint64_t k = 0; k < s->l2_entries; k++) {
		uint64_t e = qcow2_be64(buf + 8 * k), off, len;

		switch (qcow2_l2_entry_type(s, e)) {
		case QCOW2_CLUSTER_COMPRESSED:
			qcow2_compressed_range(s, e, &off, &len);
			inc_range(cx, off, len);
			if (active) {
				cx->res->allocated_clusters++;
			}
			break;
		case QCOW2_CLUSTER_NORMAL:
		case QCOW2_CLUSTER_ZERO_ALLOC:
			off = e & QCOW2_OFFSET_MASK;
			if (off & (s->cluster_size - 1) || e & 0x1feull) {
				cx->bad_meta++;
				break;
			}
			inc_range(cx, off, s->cluster_size);
			if (active) {
				cx->res->allocated_clusters++;
				if (*last_host && off != *last_host + s->cluster_size) {
					cx->res->fragmented_clusters++;
				}
				*last_host = off;
			}
			break;
		default:
			break;
		}
	}
	return 0;
}

static int check_l1(struct check_ctx *cx, uint64_t l1_off, uint32_t l1_size, const uint64_t *mem)
{
	struct qcow2_state *s = cx->s;
	_cleanup_free_ uint64_t *l1 = NULL;
	_cleanup_free_ uint8_t *buf = qcow2_alloc_buf(s, s->cluster_size);
	uint64_t last_host = 0;
	int ret;

	if (!buf) {
		return -ENOMEM;
	}
	if (!l1_size) {
		return 0;
	}
	if (l1_off & (s->cluster_size - 1)) {
		cx->bad_meta++;
		return 0;
	}
	inc_range(cx, l1_off, (uint64_t)l1_size * 8);
	if (!mem) {
		_cleanup_free_ uint8_t *raw = qcow2_alloc_buf(s, (uint64_t)l1_size * 8);

		l1 = calloc(l1_size, 8);
		if (!raw || !l1) {
			return -ENOMEM;
		}
		ret = qcow2_file_pread(s, l1_off, raw, (uint64_t)l1_size * 8);
		if (ret < 0) {
			return ret;
		}
		for (uint32_t i = 0; i < l1_size; i++) {
			l1[i] = qcow2_be64(raw + 8 * i);
		}
		mem = l1;
	}
	for (uint32_t i = 0; i < l1_size; i++) {
		uint64_t l2 = mem[i] & QCOW2_OFFSET_MASK;

		if (!l2) {
			continue;
		}
		if (mem[i] & 0x1ffull || l2 & (s->cluster_size - 1)) {
			cx->bad_meta++;
			continue;
		}
		if ((l2 >> s->cluster_bits) >= cx->nb) {
			cx->beyond_end++;
			continue;
		}
		inc_range(cx, l2, s->cluster_size);
		ret = check_l2(cx, l2, buf, mem == s->l1_table, &last_host);
		if (ret < 0) {
			return ret;
		}
	}
	return 0;
}

/*
 * Persistent dirty bitmaps own clusters too: count them while the extension
 * is marked consistent (autoclear bit 0), as qemu-img does. A read-write
 * open without BLOCK_O_BITMAPS drops the bit (qcow2.c); qcow2-bitmap.c
 * validates the directory and tables, this count only bounds what it reads.
 */
static int count_bitmaps(struct check_ctx *cx)
{
	struct qcow2_state *s = cx->s;
	const uint8_t *ext = NULL;
	uint64_t dir_size, dir_off, file_len = qcow2_file_length(s);
	_cleanup_free_ uint8_t *dir = NULL;
	uint32_t nb;
	int ret;

	if (!(s->autoclear & 1)) {
		return 0;
	}
	for (unsigned i = 0; i < s->n_unknown_exts; i++) {
		if (s->unknown_exts[i].type == QCOW2_EXT_BITMAPS && s->unknown_exts[i].len >= 24) {
			ext = s->unknown_exts[i].data;
		}
	}
	if (!ext) {
		return 0;
	}
	nb = qcow2_be32(ext);
	dir_size = qcow2_be64(ext + 8);
	dir_off = qcow2_be64(ext + 16);
	if (!dir_size || dir_size > (64u << 20) || !range_within(dir_off, dir_size, file_len) ||
	    dir_off & (s->cluster_size - 1)) {
		cx->bad_meta++;
		return 0;
	}
	inc_range(cx, dir_off, dir_size);
	dir = qcow2_alloc_buf(s, dir_size);
	if (!dir) {
		return -ENOMEM;
	}
	ret = qcow2_file_pread(s, dir_off, dir, dir_size);
	if (ret < 0) {
		return ret;
	}
	for (uint64_t p = 0, i = 0; i < nb && p + 24 <= dir_size; i++) {
		uint64_t toff = qcow2_be64(dir + p), tbytes = (uint64_t)qcow2_be32(dir + p + 8) * 8;
		uint64_t ent = 24 + (uint64_t)qcow2_be32(dir + p + 20) + qcow2_be16(dir + p + 18);
		_cleanup_free_ uint8_t *tab = NULL;

		p += ALIGN_UP(ent, 8);
		if (!tbytes) {
			continue;
		}
		if (toff & (s->cluster_size - 1) || !range_within(toff, tbytes, file_len)) {
			cx->bad_meta++;
			continue;
		}
		inc_range(cx, toff, tbytes);
		tab = qcow2_alloc_buf(s, tbytes);
		if (!tab) {
			return -ENOMEM;
		}
		ret = qcow2_file_pread(s, toff, tab, tbytes);
		if (ret < 0) {
			return ret;
		}
		for (uint64_t k = 0; k < tbytes / 8; k++) {
			uint64_t off = qcow2_be64(tab + 8 * k) & QCOW2_OFFSET_MASK;

			if (off) {
				inc_range(cx, off, s->cluster_size);
			}
		}
	}
	return 0;
}

/* Count every reference except the refcount structure's own clusters. */
static int compute_refs(struct check_ctx *cx)
{
	struct qcow2_state *s = cx->s;
	int ret;

	cx->nb = qcow2_size_to_clusters(s, qcow2_file_length(s));
	if (cx->nb > (1ull << 28)) {
		return -EFBIG;
	}
	cx->refs = calloc(MAX(cx->nb, 1), sizeof(uint32_t));
	if (!cx->refs) {
		return -ENOMEM;
	}
	inc_range(cx, 0, s->cluster_size);
	ret = check_l1(cx, s->l1_table_offset, s->l1_size, s->l1_table);
	if (ret < 0) {
		return ret;
	}
	if (s->nb_snapshots) {
		inc_range(cx, s->snapshots_offset, s->snapshots_size);
	}
	for (uint32_t i = 0; i < s->nb_snapshots; i++) {
		ret = check_l1(cx, s->snapshots[i].l1_table_offset, s->snapshots[i].l1_size, NULL);
		if (ret < 0) {
			return ret;
		}
	}
	return count_bitmaps(cx);
}

/* Add the refcount table and blocks; returns the number of invalid block pointers. */
static uint64_t count_refcount_structure(struct check_ctx *cx)
{
	struct qcow2_state *s = cx->s;
	uint64_t bad = 0;

	inc_range(cx, s->reftable_offset, (uint64_t)s->reftable_clusters << s->cluster_bits);
	for (uint64_t i = 0; i < s->reftable_size; i++) {
		uint64_t off = s->reftable[i] & ~QCOW2_REFT_RESERVED;

		if (!off) {
			continue;
		}
		if (s->reftable[i] & QCOW2_REFT_RESERVED || off & (s->cluster_size - 1) ||
		    (off >> s->cluster_bits) >= cx->nb) {
			bad++;
			continue;
		}
		inc_range(cx, off, s->cluster_size);
	}
	return bad;
}

/* Check (and with @fix, repair) the COPIED flags of the active tables. */
static int check_copied(struct check_ctx *cx, unsigned fix, uint64_t *ret_bad, uint64_t *ret_fixed)
{
	struct qcow2_state *s = cx->s;
	int ret;

	for (uint32_t i = 0; i < s->l1_size; i++) {
		uint64_t l2 = s->l1_table[i] & QCOW2_OFFSET_MASK, c, rc;
		bool want;
		uint64_t *t;
		bool dirty = false;

		if (!l2 || l2 & (s->cluster_size - 1) || (l2 >> s->cluster_bits) >= cx->nb) {
			continue;
		}
		c = l2 >> s->cluster_bits;
		/* as qemu-img: the flag must agree with the refcount on disk */
		ret = qcow2_get_refcount(s, c, &rc);
		if (ret < 0) {
			return ret;
		}
		want = rc == 1;
		if (want != !!(s->l1_table[i] & QCOW2_OFLAG_COPIED)) {
			(*ret_bad)++;
			if (fix & BLOCK_FIX_ERRORS) {
				s->l1_table[i] ^= QCOW2_OFLAG_COPIED;
				ret = qcow2_write_l1_entry(s, i);
				if (ret < 0) {
					return ret;
				}
				(*ret_fixed)++;
			}
		}
		ret = qcow2_cache_get(s, &s->l2_cache, l2, (void **)&t);
		if (ret < 0) {
			return ret;
		}
		for (uint64_t k = 0; k < s->l2_entries; k++) {
			uint64_t e = qcow2_be64(&t[k]), d;
			enum qcow2_cluster_type ty = qcow2_l2_entry_type(s, e);

			if (ty != QCOW2_CLUSTER_NORMAL && ty != QCOW2_CLUSTER_ZERO_ALLOC) {
				continue;
			}
			d = (e & QCOW2_OFFSET_MASK) >> s->cluster_bits;
			if (d >= cx->nb) {
				continue;
			}
			ret = qcow2_get_refcount(s, d, &rc);
			if (ret < 0) {
				qcow2_cache_put(&s->l2_cache, (void **)&t);
				return ret;
			}
			want = rc == 1;
			if (want != !!(e & QCOW2_OFLAG_COPIED)) {
				(*ret_bad)++;
				if (fix & BLOCK_FIX_ERRORS) {
					qcow2_put_be64(&t[k], e ^ QCOW2_OFLAG_COPIED);
					dirty = true;
					(*ret_fixed)++;
				}
			}
		}
		if (dirty) {
			qcow2_cache_mark_dirty(&s->l2_cache, t);
		}
		qcow2_cache_put(&s->l2_cache, (void **)&t);
	}
	if (fix & BLOCK_FIX_ERRORS) {
		return qcow2_cache_flush(s, &s->l2_cache);
	}
	return 0;
}

/* One of qemu-img check's per-cluster lines, to the caller's report hook. */
static void report_cluster(struct check_ctx *cx, const char *what, uint64_t c, uint64_t disk,
			   uint64_t want)
{
	char line[128];

	if (!cx->res->report || cx->quiet || cx->lines >= BLOCK_CHECK_MAX_LINES) {
		return;
	}
	cx->lines++;
	snprintf(line, sizeof(line),
		 "%s cluster %" PRIu64 " refcount=%" PRIu64 " reference=%" PRIu64, what, c, disk,
		 want);
	cx->res->report(cx->res->report_opaque, line);
}

static int compare_refs(struct check_ctx *cx, uint64_t *ret_leaks, uint64_t *ret_errors,
			bool fix_leaks)
{
	struct qcow2_state *s = cx->s;
	uint64_t leaks = 0, errors = 0;

	/* as qemu-img, clusters past the end of the file are not compared */
	for (uint64_t c = 0; c < cx->nb; c++) {
		uint64_t disk, want = cx->refs[c];
		int ret;

		if (block_offset(s, c >> s->rb_bits) == 0 && !want) {
			c = (((c >> s->rb_bits) + 1) << s->rb_bits) - 1;
			continue;
		}
		ret = qcow2_get_refcount(s, c, &disk);
		if (ret < 0) {
			return ret;
		}
		if (disk || want) {
			cx->highest = c + 1; /* qemu-img's image end counts leaked clusters too */
		}
		if (disk == want) {
			continue;
		}
		if (disk > want) {
			leaks++;
			report_cluster(cx, fix_leaks ? "Repairing" : "Leaked", c, disk, want);
			if (fix_leaks) {
				ret = set_refcount_in_block(s, c, 0, true, want);
				if (ret < 0) {
					return ret;
				}
			}
		} else {
			errors++;
			report_cluster(cx, "ERROR", c, disk, want);
		}
	}
	*ret_leaks = leaks;
	*ret_errors = errors;
	return 0;
}

static int rebuild(struct qcow2_state *s, struct check_ctx *cx)
{
	uint64_t start = cx->nb;
	int ret;

	/* refcount blocks of the new structure must cover every used cluster */
	ret = install_reftable(s, start, 0, cx->refs, cx->nb);
	if (ret < 0) {
		return ret;
	}
	qcow2_cache_drop_all(&s->rb_cache);
	s->free_cluster_hint = 0;
	s->free_byte_offset = 0;
	return 0;
}

int qcow2_change_refcount_order(struct qcow2_state *s, uint32_t order, uint64_t *ret_bad)
{
	uint32_t old_order = s->refcount_order;
	struct check_ctx cx = {.s = s};
	struct block_check_result res = {0};
	uint64_t max = order >= 5 ? UINT32_MAX : (1ull << (1u << order)) - 1;
	int ret;

	cx.res = &res;
	ret = compute_refs(&cx);
	for (uint64_t c = 0; ret == 0 && c < cx.nb; c++) {
		if (cx.refs[c] > max) {
			*ret_bad = c;
			ret = -ERANGE;
		}
	}
	if (ret == 0) {
		s->refcount_order = order;
		s->refcount_bits = 1u << order;
		s->rb_bits = s->cluster_bits + 3 - order;
		s->rb_entries = 1ull << s->rb_bits;
		qcow2_cache_drop_all(&s->rb_cache);
		ret = rebuild(s, &cx);
		if (ret < 0) {
			s->refcount_order = old_order;
			s->refcount_bits = 1u << old_order;
			s->rb_bits = s->cluster_bits + 3 - old_order;
			s->rb_entries = 1ull << s->rb_bits;
		}
	}
	free(cx.refs);
	return ret;
}

int qcow2_rebuild_refcounts(struct qcow2_state *s)
{
	struct check_ctx cx = {.s = s};
	struct block_check_result res = {0};
	int ret;

	cx.res = &res;
	ret = compute_refs(&cx);
	if (ret == 0) {
		ret = rebuild(s, &cx);
	}
	free(cx.refs);
	return ret;
}

static int check_once(struct qcow2_state *s, struct block_check_result *res, unsigned fix,
		      bool *ret_rebuilt)
{
	struct check_ctx cx = {.s = s, .res = res};
	uint64_t bad_blocks, leaks = 0, errors = 0, copied_bad = 0, copied_fixed = 0;
	void (*report)(void *, const char *) = res->report;
	void *report_opaque = res->report_opaque;
	int ret;

	memset(res, 0, sizeof(*res));
	res->report = report;
	res->report_opaque = report_opaque;
	ret = compute_refs(&cx);
	if (ret < 0) {
		goto out;
	}
	if (fix & BLOCK_FIX_ERRORS && !*ret_rebuilt) {
		/* decide on a rebuild before counting the old structure */
		struct check_ctx probe = cx;
		uint32_t *copy = malloc(MAX(cx.nb, 1) * sizeof(uint32_t));

		if (!copy) {
			ret = -ENOMEM;
			goto out;
		}
		memcpy(copy, cx.refs, cx.nb * sizeof(uint32_t));
		probe.refs = copy;
		probe.quiet = true;
		bad_blocks = count_refcount_structure(&probe);
		ret = bad_blocks ? 0 : compare_refs(&probe, &leaks, &errors, false);
		free(copy);
		if (ret < 0) {
			goto out;
		}
		if (bad_blocks || errors || probe.beyond_end) {
			if (res->report) {
				res->report(res->report_opaque, "Rebuilding refcount structure");
			}
			ret = rebuild(s, &cx);
			if (ret < 0) {
				goto out;
			}
			*ret_rebuilt = true;
			res->corruptions_fixed = bad_blocks + errors;
			res->leaks_fixed = leaks;
			free(cx.refs);
			cx.refs = NULL;
			memset(&cx, 0, sizeof(cx));
			cx.s = s;
			cx.res = res;
			ret = compute_refs(&cx);
			if (ret < 0) {
				goto out;
			}
		}
	}
	bad_blocks = count_refcount_structure(&cx);
	ret = compare_refs(&cx, &leaks, &errors, fix & BLOCK_FIX_LEAKS);
	if (ret < 0) {
		goto out;
	}
	if (fix & BLOCK_FIX_LEAKS) {
		res->leaks_fixed += leaks;
		leaks = 0;
		ret = qcow2_cache_flush(s, &s->rb_cache);
		if (ret < 0) {
			goto out;
		}
	}
	ret = check_copied(&cx, fix, &copied_bad, &copied_fixed);
	if (ret < 0) {
		goto out;
	}
	res->corruptions_fixed += copied_fixed;
	res->leaks = leaks;
	res->corruptions =
		errors + bad_blocks + cx.beyond_end + cx.bad_meta + copied_bad - copied_fixed;
	res->total_clusters = qcow2_size_to_clusters(s, s->size);
	res->image_end_offset = cx.highest << s->cluster_bits;
	for (uint64_t c = cx.nb; c > cx.highest; c--) {
		if (cx.refs[c - 1]) {
			res->image_end_offset = c << s->cluster_bits;
			break;
		}
	}
out:
	free(cx.refs);
	return ret;
}

int qcow2_check(struct qcow2_state *s, struct block_check_result *res, unsigned fix)
{
	struct block_check_result before = {.report = res->report,
					    .report_opaque = res->report_opaque};
	struct block_check_result during = before;
	bool rebuilt = false;
	int ret = check_once(s, &before, 0, &rebuilt);

	if (ret < 0 || !fix) {
		*res = before;
		res->check_errors += ret < 0;
		return ret;
	}
	if (before.corruptions || before.leaks) {
		ret = check_once(s, &during, fix, &rebuilt);
		if (ret == 0) {
			ret = check_once(s, res, 0, &rebuilt);
		}
		if (ret < 0) {
			*res = before;
			res->check_errors++;
			return ret;
		}
	} else {
		*res = before;
	}
	/* what the repair removed; what is left stays reported */
	res->corruptions_fixed =
		before.corruptions > res->corruptions ? before.corruptions - res->corruptions : 0;
	res->leaks_fixed = before.leaks > res->leaks ? before.leaks - res->leaks : 0;
	if (!res->corruptions && s->corrupt && fix & BLOCK_FIX_ERRORS) {
		s->corrupt = false;
		s->incompat &= ~QCOW2_INCOMPAT_CORRUPT;
		free(s->corrupt_msg);
		s->corrupt_msg = NULL;
		ret = qcow2_update_header(s);
	}
	return ret;
}
