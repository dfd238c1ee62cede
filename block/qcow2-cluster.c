/*
 * qcow2 guest-to-host mapping: L1/L2 lookup, L2 table allocation and
 * copy-on-write of shared L2 tables, L1 writes and growth, and the
 * discard/zero operations that rewrite L2 entries.
 *
 * Threads: everything here runs with s->lock held.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2.h"

static int l2_offset_checked(struct qcow2_state *s, uint64_t l1e, uint64_t *ret)
{
	uint64_t off = l1e & QCOW2_OFFSET_MASK;

	if (off && (off & (s->cluster_size - 1) || l1e & QCOW2_L1_RESERVED)) {
		return qcow2_signal_corruption(s, "L2 table offset %#" PRIx64 " is not aligned",
					       l1e);
	}
	if (off && qcow2_past_eof(s, off, s->cluster_size)) {
		return qcow2_signal_corruption(
			s, "L2 table at %#" PRIx64 " is beyond the end of the image", off);
	}
	if (off && off < s->cluster_size) {
		return qcow2_signal_corruption(s, "L2 table at %#" PRIx64 " overlaps the header",
					       off);
	}
	*ret = off;
	return 0;
}

int qcow2_get_cluster(struct qcow2_state *s, uint64_t offset, uint64_t len, uint64_t *ret_entry,
		      uint64_t *ret_n)
{
	uint64_t l1i = qcow2_l1_index(s, offset), l2i = qcow2_l2_index(s, offset);
	uint64_t in_cluster = qcow2_offset_into_cluster(s, offset);
	uint64_t max = MIN(len, ((s->l2_entries - l2i) << s->cluster_bits) - in_cluster);
	uint64_t l2_off, first, n;
	enum qcow2_cluster_type type;
	uint64_t *t;
	int ret;

	if (l1i >= s->l1_size) {
		*ret_entry = 0;
		*ret_n = max;
		return 0;
	}
	ret = l2_offset_checked(s, s->l1_table[l1i], &l2_off);
	if (ret < 0) {
		return ret;
	}
	if (!l2_off) {
		*ret_entry = 0;
		*ret_n = max;
		return 0;
	}
	ret = qcow2_cache_get(s, &s->l2_cache, l2_off, (void **)&t);
	if (ret < 0) {
		return ret;
	}
	first = qcow2_be64(&t[l2i]);
	type = qcow2_l2_entry_type(s, first);
	if (type == QCOW2_CLUSTER_NORMAL || type == QCOW2_CLUSTER_ZERO_ALLOC) {
		uint64_t host = first & QCOW2_OFFSET_MASK;

		if (host & (s->cluster_size - 1) || first & QCOW2_L2_RESERVED) {
			qcow2_cache_put(&s->l2_cache, (void **)&t);
			return qcow2_signal_corruption(s,
						       "data cluster offset %#" PRIx64
						       " is not aligned (guest offset %#" PRIx64
						       ")",
						       first, offset);
		}
	}
	n = s->cluster_size - in_cluster;
	for (uint64_t k = l2i + 1; n < max && k < s->l2_entries; k++) {
		uint64_t e = qcow2_be64(&t[k]);

		if (qcow2_l2_entry_type(s, e) != type) {
			break;
		}
		if (type == QCOW2_CLUSTER_NORMAL &&
		    ((e & QCOW2_OFFSET_MASK) !=
			     (first & QCOW2_OFFSET_MASK) + ((k - l2i) << s->cluster_bits) ||
		     (e & QCOW2_OFLAG_COPIED) != (first & QCOW2_OFLAG_COPIED) ||
		     e & QCOW2_L2_RESERVED)) {
			break;
		}
		if (type == QCOW2_CLUSTER_COMPRESSED) {
			break;
		}
		n += s->cluster_size;
	}
	qcow2_cache_put(&s->l2_cache, (void **)&t);
	*ret_entry = first;
	*ret_n = MIN(n, max);
	return 0;
}

int qcow2_get_l2_for_write(struct qcow2_state *s, uint64_t offset, uint64_t **ret_l2,
			   uint64_t *ret_index)
{
	uint64_t l1i = qcow2_l1_index(s, offset);
	uint64_t l1e, old_off, new_off;
	uint64_t *old = NULL, *t = NULL;
	int64_t alloc;
	int ret;

	if (l1i >= s->l1_size) {
		ret = qcow2_grow_l1(s, l1i + 1);
		if (ret < 0) {
			return ret;
		}
	}
	l1e = s->l1_table[l1i];
	ret = l2_offset_checked(s, l1e, &old_off);
	if (ret < 0) {
		return ret;
	}
	if (old_off && l1e & QCOW2_OFLAG_COPIED) {
		ret = qcow2_cache_get(s, &s->l2_cache, old_off, (void **)&t);
		if (ret < 0) {
			return ret;
		}
		*ret_l2 = t;
		*ret_index = qcow2_l2_index(s, offset);
		return 0;
	}
	/* new table, or copy-on-write of a table shared with a snapshot */
	alloc = qcow2_alloc_clusters(s, 1);
	if (alloc < 0) {
		return (int)alloc;
	}
	new_off = (uint64_t)alloc;
	if (old_off) {
		ret = qcow2_cache_get(s, &s->l2_cache, old_off, (void **)&old);
		if (ret < 0) {
			return ret;
		}
	}
	ret = qcow2_cache_get_empty(s, &s->l2_cache, new_off, (void **)&t);
	if (ret < 0) {
		qcow2_cache_put(&s->l2_cache, (void **)&old);
		return ret;
	}
	if (old) {
		for (uint64_t k = 0; k < s->l2_entries; k++) {
			/* the copy's clusters are still shared with the snapshot: no COPIED */
			qcow2_put_be64(&t[k], qcow2_be64(&old[k]) & ~QCOW2_OFLAG_COPIED);
		}
		qcow2_cache_put(&s->l2_cache, (void **)&old);
	}
	qcow2_cache_mark_dirty(&s->l2_cache, t);
	/* refcounts, then the table, then (synced) the L1 entry that points to it */
	ret = qcow2_cache_flush(s, &s->l2_cache);
	if (ret < 0) {
		goto err;
	}
	s->l1_table[l1i] = new_off | QCOW2_OFLAG_COPIED;
	ret = qcow2_write_l1_entry(s, (uint32_t)l1i);
	if (ret < 0) {
		s->l1_table[l1i] = l1e;
		goto err;
	}
	if (old_off) {
		ret = qcow2_free_clusters_deferred(s, old_off, 1);
		if (ret < 0) {
			goto err;
		}
	}
	*ret_l2 = t;
	*ret_index = qcow2_l2_index(s, offset);
	return 0;
err:
	qcow2_cache_put(&s->l2_cache, (void **)&t);
	return ret;
}

int qcow2_grow_l1(struct qcow2_state *s, uint64_t min_size)
{
	uint64_t new_size, bytes;
	_cleanup_free_ uint64_t *nl1 = NULL;
	_cleanup_free_ uint8_t *buf = NULL;
	uint64_t old_off = s->l1_table_offset, old_size = s->l1_size;
	int64_t off;
	int ret;

	if (min_size <= s->l1_size) {
		return 0;
	}
	new_size = MAX(min_size, (uint64_t)s->l1_size + s->l1_size / 2);
	if (new_size * 8 > QCOW2_MAX_L1_BYTES) {
		new_size = min_size;
	}
	if (new_size * 8 > QCOW2_MAX_L1_BYTES) {
		return -EFBIG;
	}
	bytes = ALIGN_UP(new_size * 8, s->cluster_size);
	new_size = MIN(bytes / 8, QCOW2_MAX_L1_BYTES / 8);
	nl1 = calloc(new_size, sizeof(uint64_t));
	buf = qcow2_alloc_buf(s, bytes);
	if (!nl1 || !buf) {
		return -ENOMEM;
	}
	memcpy(nl1, s->l1_table, (uint64_t)s->l1_size * 8);
	/* the new table must not be counted before every L2 write is settled */
	ret = qcow2_cache_flush(s, &s->l2_cache);
	if (ret < 0) {
		return ret;
	}
	off = qcow2_alloc_clusters(s, bytes >> s->cluster_bits);
	if (off < 0) {
		return (int)off;
	}
	for (uint64_t k = 0; k < new_size; k++) {
		qcow2_put_be64(buf + 8 * k, nl1[k]);
	}
	ret = qcow2_cache_flush(s, &s->rb_cache);
	if (ret < 0) {
		return ret;
	}
	ret = qcow2_file_pwrite(s, (uint64_t)off, buf, bytes);
	if (ret < 0) {
		return ret;
	}
	ret = qcow2_file_flush(s);
	if (ret < 0) {
		return ret;
	}
	free(s->l1_table);
	s->l1_table = TAKE_PTR(nl1);
	s->l1_size = (uint32_t)new_size;
	s->l1_table_offset = (uint64_t)off;
	ret = qcow2_update_header(s);
	if (ret < 0) {
		return ret;
	}
	ret = qcow2_file_flush(s);
	if (ret < 0) {
		return ret;
	}
	return qcow2_update_refcount(s, old_off, ALIGN_UP(old_size * 8, s->cluster_size), -1);
}

int qcow2_discard_range(struct qcow2_state *s, uint64_t offset, uint64_t len,
			enum qcow2_discard_mode mode)
{
	uint64_t end = offset + len;
	bool has_zero = s->version >= 3;

	offset = ALIGN_UP(offset, s->cluster_size);
	if (end != s->size) {
		end = ALIGN_DOWN(end, s->cluster_size);
	}
	while (offset < end) {
		uint64_t *t, idx, old, nw;
		uint64_t l1i = qcow2_l1_index(s, offset);
		int ret;

		if (l1i >= s->l1_size || !(s->l1_table[l1i] & QCOW2_OFFSET_MASK)) {
			if (mode == QCOW2_DISCARD || !s->bs->backing) {
				/* nothing allocated here and nothing below to hide */
				offset = (l1i + 1) << (s->cluster_bits + s->l2_bits);
				continue;
			}
		}
		ret = qcow2_get_l2_for_write(s, offset, &t, &idx);
		if (ret < 0) {
			return ret;
		}
		for (; idx < s->l2_entries && offset < end; idx++, offset += s->cluster_size) {
			enum qcow2_cluster_type type;

			old = qcow2_be64(&t[idx]);
			type = qcow2_l2_entry_type(s, old);
			/* zero flag where a backing file would show through, else unallocated */
			nw = has_zero && (s->bs->backing || mode != QCOW2_DISCARD)
				     ? QCOW2_OFLAG_ZERO
				     : 0;
			if (mode == QCOW2_ZERO_KEEP && has_zero &&
			    (type == QCOW2_CLUSTER_NORMAL || type == QCOW2_CLUSTER_ZERO_ALLOC) &&
			    old & QCOW2_OFLAG_COPIED) {
				/* keep the allocation, read zeroes */
				nw = (old & (QCOW2_OFFSET_MASK | QCOW2_OFLAG_COPIED)) |
				     QCOW2_OFLAG_ZERO;
			}
			if (old == nw) {
				continue;
			}
			qcow2_put_be64(&t[idx], nw);
			qcow2_cache_mark_dirty(&s->l2_cache, t);
			if ((old & QCOW2_OFFSET_MASK) == (nw & QCOW2_OFFSET_MASK) &&
			    type != QCOW2_CLUSTER_COMPRESSED) {
				continue; /* same host cluster still referenced */
			}
			ret = qcow2_free_l2_entry_deferred(s, old);
			if (ret < 0) {
				qcow2_cache_put(&s->l2_cache, (void **)&t);
				return ret;
			}
		}
		qcow2_cache_put(&s->l2_cache, (void **)&t);
	}
	return 0;
}
