/*
 * A small write-through cache of fixed-size metadata tables read from a
 * format's image file (QED L2 tables, VMDK grain tables), least recently
 * used out. Tables are kept in their on-disk byte order; a driver that
 * changes an entry changes it here and writes it to the file itself, so the
 * cache never holds dirty data and eviction never does I/O.
 *
 * Threads: not thread-safe; the owning driver calls it under its own lock.
 * A pointer from table_cache_get() is valid until the next call on the
 * cache.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct block_node;
struct table_cache;

/* A cache of @n tables of @table_bytes each (allocated now: n * table_bytes). */
int table_cache_new(struct table_cache **ret, unsigned n, size_t table_bytes);
void table_cache_free(struct table_cache *c);

/* The table at @offset of @file, read on a miss. 0 or -errno (read error, ENOMEM). */
int table_cache_get(struct table_cache *c, struct block_node *file, uint64_t offset, void **ret);

/* A zeroed table for @offset (a table just allocated in the file), without reading. */
void *table_cache_new_table(struct table_cache *c, uint64_t offset);

/* Forget everything (after a repair rewrote tables behind the cache). */
void table_cache_clear(struct table_cache *c);
