/*
 * The I/O bus: sorted range maps for port I/O and MMIO (see iobus.h).
 *
 * Threads: lookups take the map's read lock only long enough to find the
 * range and take a reference on it; handlers run without bus locks, so a
 * handler may itself register or unregister ranges (PCI BAR moves).
 * iobus_unregister() unlinks the range under the write lock and then waits
 * (bus->idle_lock/idle_cond) until no other thread is inside the range's
 * handlers; a thread that unregisters the very range it is dispatching
 * does not wait for itself. A range is freed by its last reference.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "hw/core/iobus.h"

struct iobus_range {
	uint64_t base;
	uint64_t len;
	const struct iobus_ops *ops;
	void *opaque;
	char *name;
	atomic_uint refs; /* the map's reference + one per dispatch in flight */
	atomic_bool removed;
};

struct iobus_map {
	struct iobus_range **ranges; /* sorted by base, non-overlapping */
	size_t n;
};

struct iobus {
	char *vm_name;
	pthread_rwlock_t lock; /* protects maps[] */
	struct iobus_map maps[2];
	pthread_mutex_t idle_lock;
	pthread_cond_t idle_cond;
	struct ratelimit unclaimed_rl;
};

/* The range this thread is dispatching to (innermost), for self-unregistration. */
static _Thread_local struct iobus_range *tls_current;

static const char *space_name(enum iobus_space space)
{
	return space == IOBUS_PIO ? "port" : "MMIO";
}

struct iobus *iobus_new(const char *vm_name)
{
	struct iobus *bus = calloc(1, sizeof(*bus));

	if (!bus) {
		return NULL;
	}
	bus->vm_name = strdup(vm_name ? vm_name : "");
	if (!bus->vm_name) {
		free(bus);
		return NULL;
	}
	pthread_rwlock_init(&bus->lock, NULL);
	pthread_mutex_init(&bus->idle_lock, NULL);
	pthread_cond_init(&bus->idle_cond, NULL);
	bus->unclaimed_rl = (struct ratelimit)RATELIMIT_INIT(5 * 1000000, 10);
	return bus;
}

static void range_unref(struct iobus *bus, struct iobus_range *r)
{
	unsigned left;

	/*
	 * Dropped under idle_lock so that a waiting unregister cannot miss the
	 * wake-up nor free the range between the decrement and the wake-up.
	 */
	pthread_mutex_lock(&bus->idle_lock);
	left = atomic_fetch_sub(&r->refs, 1) - 1;
	if (left > 0 && atomic_load(&r->removed)) {
		pthread_cond_broadcast(&bus->idle_cond);
	}
	pthread_mutex_unlock(&bus->idle_lock);
	if (left == 0) {
		free(r->name);
		free(r);
	}
}

void iobus_free(struct iobus *bus)
{
	if (!bus) {
		return;
	}
	for (int s = 0; s < 2; s++) {
		for (size_t i = 0; i < bus->maps[s].n; i++) {
			range_unref(bus, bus->maps[s].ranges[i]);
		}
		free(bus->maps[s].ranges);
	}
	pthread_rwlock_destroy(&bus->lock);
	pthread_mutex_destroy(&bus->idle_lock);
	pthread_cond_destroy(&bus->idle_cond);
	pthread_mutex_destroy(&bus->unclaimed_rl.lock);
	free(bus->vm_name);
	free(bus);
}

unsigned iobus_count(struct iobus *bus)
{
	unsigned n;

	pthread_rwlock_rdlock(&bus->lock);
	n = (unsigned)(bus->maps[0].n + bus->maps[1].n);
	pthread_rwlock_unlock(&bus->lock);
	return n;
}

/* Index of the first range whose base is > addr. */
static size_t upper_bound(const struct iobus_map *m, uint64_t addr)
{
	size_t lo = 0, hi = m->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (m->ranges[mid]->base <= addr) {
			lo = mid + 1;
		} else {
			hi = mid;
		}
	}
	return lo;
}

int iobus_register(struct iobus *bus, enum iobus_space space, uint64_t base, uint64_t len,
		   const struct iobus_ops *ops, void *opaque, const char *name, struct error **errp)
{
	struct iobus_map *m = &bus->maps[space == IOBUS_MMIO];
	uint64_t limit = space == IOBUS_PIO ? 0x10000 : UINT64_MAX;
	struct iobus_range *r, **grown;
	size_t pos;

	if ((unsigned)space > IOBUS_MMIO || len == 0 || base > limit || len - 1 > limit - base) {
		return error_set(errp, EINVAL, "%s: invalid %s range 0x%" PRIx64 "+0x%" PRIx64,
				 name, space_name(space), base, len);
	}
	r = calloc(1, sizeof(*r));
	if (!r || !(r->name = strdup(name))) {
		free(r);
		return error_set(errp, ENOMEM, "out of memory");
	}
	r->base = base;
	r->len = len;
	r->ops = ops;
	r->opaque = opaque;
	atomic_init(&r->refs, 1);
	atomic_init(&r->removed, false);

	pthread_rwlock_wrlock(&bus->lock);
	pos = upper_bound(m, base);
	/* Overlap with the predecessor (base <= new base) or the successor. */
	if (pos > 0 && m->ranges[pos - 1]->base + (m->ranges[pos - 1]->len - 1) >= base) {
		struct iobus_range *o = m->ranges[pos - 1];
		int e = error_set(errp, EEXIST,
				  "%s: %s range 0x%" PRIx64 "+0x%" PRIx64
				  " overlaps %s at 0x%" PRIx64 "+0x%" PRIx64,
				  name, space_name(space), base, len, o->name, o->base, o->len);

		pthread_rwlock_unlock(&bus->lock);
		free(r->name);
		free(r);
		return e;
	}
	if (pos < m->n && m->ranges[pos]->base <= base + (len - 1)) {
		struct iobus_range *o = m->ranges[pos];
		int e = error_set(errp, EEXIST,
				  "%s: %s range 0x%" PRIx64 "+0x%" PRIx64
				  " overlaps %s at 0x%" PRIx64 "+0x%" PRIx64,
				  name, space_name(space), base, len, o->name, o->base, o->len);

		pthread_rwlock_unlock(&bus->lock);
		free(r->name);
		free(r);
		return e;
	}
	grown = realloc(m->ranges, (m->n + 1) * sizeof(*m->ranges));
	if (!grown) {
		pthread_rwlock_unlock(&bus->lock);
		free(r->name);
		free(r);
		return error_set(errp, ENOMEM, "out of memory");
	}
	m->ranges = grown;
	memmove(&m->ranges[pos + 1], &m->ranges[pos], (m->n - pos) * sizeof(*m->ranges));
	m->ranges[pos] = r;
	m->n++;
	pthread_rwlock_unlock(&bus->lock);
	return 0;
}

void iobus_unregister(struct iobus *bus, enum iobus_space space, uint64_t base)
{
	struct iobus_map *m = &bus->maps[space == IOBUS_MMIO];
	struct iobus_range *r = NULL;
	unsigned self = 0;
	size_t pos;

	pthread_rwlock_wrlock(&bus->lock);
	pos = upper_bound(m, base);
	if (pos > 0 && m->ranges[pos - 1]->base == base) {
		r = m->ranges[pos - 1];
		memmove(&m->ranges[pos - 1], &m->ranges[pos], (m->n - pos) * sizeof(*m->ranges));
		m->n--;
		atomic_store(&r->removed, true);
		/* Keep it alive while we wait; the map's reference becomes ours. */
	}
	pthread_rwlock_unlock(&bus->lock);
	if (!r) {
		return;
	}
	if (tls_current == r) {
		self = 1;
	}
	pthread_mutex_lock(&bus->idle_lock);
	while (atomic_load(&r->refs) > 1 + self) {
		pthread_cond_wait(&bus->idle_cond, &bus->idle_lock);
	}
	pthread_mutex_unlock(&bus->idle_lock);
	range_unref(bus, r);
}

static struct iobus_range *lookup_get(struct iobus *bus, enum iobus_space space, uint64_t addr,
				      unsigned size)
{
	struct iobus_map *m = &bus->maps[space == IOBUS_MMIO];
	struct iobus_range *r = NULL;
	size_t pos;

	pthread_rwlock_rdlock(&bus->lock);
	pos = upper_bound(m, addr);
	if (pos > 0) {
		struct iobus_range *c = m->ranges[pos - 1];

		if (range_within(addr - c->base, size, c->len)) {
			r = c;
			atomic_fetch_add(&r->refs, 1);
		}
	}
	pthread_rwlock_unlock(&bus->lock);
	return r;
}

static void log_unclaimed(struct iobus *bus, enum iobus_space space, const char *what,
			  uint64_t addr, unsigned size, uint64_t value)
{
	unsigned missed;

	if (!ratelimit_allow(&bus->unclaimed_rl, &missed)) {
		return;
	}
	log_full(LOG_DEBUG, bus->vm_name, NULL,
		 "unclaimed %s %s at 0x%" PRIx64 " size %u value 0x%" PRIx64 "%s",
		 space_name(space), what, addr, size, value,
		 missed ? " (further messages were suppressed)" : "");
}

static bool valid_size(unsigned size)
{
	return size == 1 || size == 2 || size == 4 || size == 8;
}

int iobus_read(struct iobus *bus, enum iobus_space space, uint64_t addr, unsigned size,
	       uint64_t *ret_value)
{
	uint64_t ones = size >= 8 ? UINT64_MAX : (1ull << (size * 8)) - 1;
	struct iobus_range *r, *saved;

	if (!valid_size(size)) {
		*ret_value = UINT64_MAX;
		return -EINVAL;
	}
	r = lookup_get(bus, space, addr, size);
	if (!r || !r->ops->read) {
		if (r) {
			range_unref(bus, r);
		}
		log_unclaimed(bus, space, "read", addr, size, ones);
		*ret_value = ones;
		return -ENOENT;
	}
	saved = tls_current;
	tls_current = r;
	*ret_value = r->ops->read(r->opaque, addr - r->base, size) & ones;
	tls_current = saved;
	range_unref(bus, r);
	return 0;
}

int iobus_write(struct iobus *bus, enum iobus_space space, uint64_t addr, unsigned size,
		uint64_t value)
{
	struct iobus_range *r, *saved;

	if (!valid_size(size)) {
		return -EINVAL;
	}
	if (size < 8) {
		value &= (1ull << (size * 8)) - 1;
	}
	r = lookup_get(bus, space, addr, size);
	if (!r || !r->ops->write) {
		if (r) {
			range_unref(bus, r);
		}
		log_unclaimed(bus, space, "write", addr, size, value);
		return -ENOENT;
	}
	saved = tls_current;
	tls_current = r;
	r->ops->write(r->opaque, addr - r->base, value, size);
	tls_current = saved;
	range_unref(bus, r);
	return 0;
}
