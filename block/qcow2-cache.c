/*
 * qcow2 metadata cache: a fixed number of cluster-sized tables (L2 tables
 * or refcount blocks) kept in their on-disk byte order, evicted least
 * recently used. Dirty tables are written back on eviction and on flush;
 * a cache with a dependency (L2 -> refcounts) first flushes the cache it
 * depends on and syncs the protocol, so new references never reach the disk
 * before the refcounts that account for them. After the L2 cache has been
 * written and synced, deferred refcount decrements are applied.
 *
 * The one cycle between qcow2 files is here and is inherent to that order:
 * the cache calls the allocator (qcow2_apply_pending_frees, and
 * qcow2_overlaps_metadata before writing a table) and the allocator keeps
 * its refcount blocks in this cache.
 *
 * Threads: called with s->lock held.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2.h"

int qcow2_cache_init(struct qcow2_cache *c, unsigned n, bool is_l2)
{
	memset(c, 0, sizeof(*c));
	c->entries = calloc(n, sizeof(*c->entries));
	if (!c->entries) {
		return -ENOMEM;
	}
	c->n = n;
	c->is_l2 = is_l2;
	return 0;
}

void qcow2_cache_destroy(struct qcow2_cache *c)
{
	if (!c->entries) {
		return;
	}
	for (unsigned i = 0; i < c->n; i++) {
		free(c->entries[i].data);
	}
	free(c->entries);
	c->entries = NULL;
}

static int write_entry(struct qcow2_state *s, struct qcow2_cache *c, struct qcow2_cache_entry *e)
{
	int ret;

	if (!e->dirty) {
		return 0;
	}
	if (c->depends && !s->lazy_active) {
		ret = qcow2_cache_flush(s, c->depends);
		if (ret < 0) {
			return ret;
		}
	}
	if (qcow2_overlaps_metadata(s, e->offset, s->cluster_size, false) && c->is_l2) {
		/* an L2 table must never be written over refcount or L1 metadata */
		return qcow2_signal_corruption(s, "L2 table at %#llx overlaps other metadata",
					       (unsigned long long)e->offset);
	}
	ret = qcow2_file_pwrite(s, e->offset, e->data, s->cluster_size);
	if (ret < 0) {
		return ret;
	}
	e->dirty = false;
	return 0;
}

int qcow2_cache_write(struct qcow2_state *s, struct qcow2_cache *c)
{
	bool any = false;
	int ret;

	for (unsigned i = 0; i < c->n; i++) {
		if (c->entries[i].offset && c->entries[i].dirty) {
			any = true;
			break;
		}
	}
	if (!any) {
		return 0;
	}
	if (c->depends && !s->lazy_active) {
		ret = qcow2_cache_flush(s, c->depends);
		if (ret < 0) {
			return ret;
		}
	}
	for (unsigned i = 0; i < c->n; i++) {
		if (c->entries[i].offset) {
			ret = write_entry(s, c, &c->entries[i]);
			if (ret < 0) {
				return ret;
			}
		}
	}
	return 0;
}

int qcow2_cache_flush(struct qcow2_state *s, struct qcow2_cache *c)
{
	bool any = false;
	int ret;

	for (unsigned i = 0; i < c->n; i++) {
		if (c->entries[i].offset && c->entries[i].dirty) {
			any = true;
		}
	}
	if (!any && !(c->is_l2 && s->n_pending)) {
		return 0;
	}
	ret = qcow2_cache_write(s, c);
	if (ret < 0) {
		return ret;
	}
	ret = qcow2_file_flush(s);
	if (ret < 0) {
		return ret;
	}
	if (c->is_l2 && s->n_pending) {
		/* the tables that dropped these references are now durable */
		ret = qcow2_apply_pending_frees(s);
	}
	return ret;
}

static struct qcow2_cache_entry *find(struct qcow2_cache *c, uint64_t offset)
{
	for (unsigned i = 0; i < c->n; i++) {
		if (c->entries[i].offset == offset) {
			return &c->entries[i];
		}
	}
	return NULL;
}

static int get_slot(struct qcow2_state *s, struct qcow2_cache *c, struct qcow2_cache_entry **ret)
{
	struct qcow2_cache_entry *victim = NULL;
	int r;

	for (unsigned i = 0; i < c->n; i++) {
		struct qcow2_cache_entry *e = &c->entries[i];

		if (e->ref) {
			continue;
		}
		if (!e->offset) {
			victim = e;
			break;
		}
		if (!victim || e->lru < victim->lru) {
			victim = e;
		}
	}
	if (!victim) {
		return -ENOSPC; /* every table pinned: a bug in nesting depth */
	}
	if (victim->offset && victim->dirty) {
		r = write_entry(s, c, victim);
		if (r < 0) {
			return r;
		}
	}
	if (!victim->data) {
		victim->data = qcow2_alloc_buf(s, s->cluster_size);
		if (!victim->data) {
			return -ENOMEM;
		}
	}
	victim->offset = 0;
	victim->dirty = false;
	*ret = victim;
	return 0;
}

static int get_common(struct qcow2_state *s, struct qcow2_cache *c, uint64_t offset, bool read,
		      void **ret)
{
	struct qcow2_cache_entry *e = find(c, offset);
	int r;

	if (!offset || offset & (s->cluster_size - 1)) {
		return -EINVAL;
	}
	if (!e) {
		r = get_slot(s, c, &e);
		if (r < 0) {
			return r;
		}
		if (read) {
			r = qcow2_file_pread(s, offset, e->data, s->cluster_size);
			if (r < 0) {
				return r;
			}
		} else {
			memset(e->data, 0, s->cluster_size);
		}
		e->offset = offset;
	} else if (!read) {
		memset(e->data, 0, s->cluster_size);
	}
	e->ref++;
	e->lru = ++c->lru_clock;
	*ret = e->data;
	return 0;
}

int qcow2_cache_get(struct qcow2_state *s, struct qcow2_cache *c, uint64_t offset, void **ret)
{
	return get_common(s, c, offset, true, ret);
}

int qcow2_cache_get_empty(struct qcow2_state *s, struct qcow2_cache *c, uint64_t offset, void **ret)
{
	return get_common(s, c, offset, false, ret);
}

static struct qcow2_cache_entry *by_data(struct qcow2_cache *c, void *table)
{
	for (unsigned i = 0; i < c->n; i++) {
		if (c->entries[i].data == table && c->entries[i].offset) {
			return &c->entries[i];
		}
	}
	return NULL;
}

void qcow2_cache_put(struct qcow2_cache *c, void **table)
{
	struct qcow2_cache_entry *e;

	if (!*table) {
		return;
	}
	e = by_data(c, *table);
	if (e && e->ref) {
		e->ref--;
	}
	*table = NULL;
}

void qcow2_cache_mark_dirty(struct qcow2_cache *c, void *table)
{
	struct qcow2_cache_entry *e = by_data(c, table);

	if (e) {
		e->dirty = true;
	}
}

void qcow2_cache_drop(struct qcow2_cache *c, uint64_t offset)
{
	struct qcow2_cache_entry *e = find(c, offset);

	if (e && offset) {
		e->offset = 0;
		e->dirty = false;
		e->ref = 0;
	}
}

void qcow2_cache_drop_all(struct qcow2_cache *c)
{
	for (unsigned i = 0; i < c->n; i++) {
		c->entries[i].offset = 0;
		c->entries[i].dirty = false;
		c->entries[i].ref = 0;
	}
}

/* Write both caches out (refcounts after L2, as the dependency says), then sync. */
int qcow2_flush_all(struct qcow2_state *s)
{
	int ret;

	if (!s->writable) {
		return 0;
	}
	ret = qcow2_cache_flush(s, &s->l2_cache);
	if (ret == 0) {
		ret = qcow2_cache_flush(s, &s->rb_cache);
	}
	if (ret == 0) {
		ret = qcow2_file_flush(s);
	}
	return ret;
}
