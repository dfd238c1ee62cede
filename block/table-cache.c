/*
 * The format drivers' table cache (see table-cache.h). A handful of slots
 * scanned linearly: the drivers keep at most a few dozen tables.
 *
 * Threads: the owning driver's lock.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block/block-int.h"
#include "block/table-cache.h"

struct table_slot {
	uint64_t offset; /* UINT64_MAX: empty */
	uint64_t lru;
	void *data;
};

struct table_cache {
	unsigned n;
	size_t table_bytes;
	uint64_t clock;
	struct table_slot *slots;
};

int table_cache_new(struct table_cache **ret, unsigned n, size_t table_bytes)
{
	struct table_cache *c = calloc(1, sizeof(*c));

	if (!c || n == 0) {
		free(c);
		return -ENOMEM;
	}
	c->n = n;
	c->table_bytes = table_bytes;
	c->slots = calloc(n, sizeof(*c->slots));
	if (!c->slots) {
		free(c);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < n; i++) {
		c->slots[i].offset = UINT64_MAX;
		/* 4 KiB aligned: the file node may be O_DIRECT */
		if (posix_memalign(&c->slots[i].data, 4096, ALIGN_UP(table_bytes, 512))) {
			c->slots[i].data = NULL;
			table_cache_free(c);
			return -ENOMEM;
		}
	}
	*ret = c;
	return 0;
}

void table_cache_free(struct table_cache *c)
{
	if (!c) {
		return;
	}
	for (unsigned i = 0; i < c->n; i++) {
		free(c->slots[i].data);
	}
	free(c->slots);
	free(c);
}

static struct table_slot *victim(struct table_cache *c)
{
	struct table_slot *v = &c->slots[0];

	for (unsigned i = 1; i < c->n; i++) {
		if (c->slots[i].offset == UINT64_MAX) {
			return &c->slots[i];
		}
		if (c->slots[i].lru < v->lru) {
			v = &c->slots[i];
		}
	}
	return v;
}

int table_cache_get(struct table_cache *c, struct block_node *file, uint64_t offset, void **ret)
{
	struct table_slot *v;
	int r;

	for (unsigned i = 0; i < c->n; i++) {
		if (c->slots[i].offset == offset) {
			c->slots[i].lru = ++c->clock;
			*ret = c->slots[i].data;
			return 0;
		}
	}
	v = victim(c);
	v->offset = UINT64_MAX;
	r = block_pread(file, offset, v->data, c->table_bytes);
	if (r < 0) {
		return r;
	}
	v->offset = offset;
	v->lru = ++c->clock;
	*ret = v->data;
	return 0;
}

void *table_cache_new_table(struct table_cache *c, uint64_t offset)
{
	struct table_slot *v = NULL;

	for (unsigned i = 0; i < c->n && !v; i++) {
		if (c->slots[i].offset == offset) {
			v = &c->slots[i];
		}
	}
	if (!v) {
		v = victim(c);
	}
	memset(v->data, 0, c->table_bytes);
	v->offset = offset;
	v->lru = ++c->clock;
	return v->data;
}

void table_cache_clear(struct table_cache *c)
{
	for (unsigned i = 0; i < c->n; i++) {
		c->slots[i].offset = UINT64_MAX;
	}
}
