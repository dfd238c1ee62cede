/* Fake guest memory, I/O bus and IRQ lines for device-model unit tests (see fake-hw.h). */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hw/device.h"
#include "tests/unit/fake-hw.h"

struct guest_mem *fake_mem_new(uint64_t size)
{
	struct guest_mem *mem = calloc(1, sizeof(*mem));

	mem->ram = calloc(1, size);
	mem->size = size;
	return mem;
}

void fake_mem_free(struct guest_mem *mem)
{
	if (mem) {
		free(mem->ram);
		free(mem);
	}
}

void *guest_mem_ptr(struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	if (gpa > mem->size || len > mem->size - gpa) {
		return NULL;
	}
	return mem->ram + gpa;
}

int guest_mem_read(struct guest_mem *mem, uint64_t gpa, void *buf, size_t len)
{
	void *p = guest_mem_ptr(mem, gpa, len);

	if (!p) {
		return -EFAULT;
	}
	memcpy(buf, p, len);
	return 0;
}

int guest_mem_write(struct guest_mem *mem, uint64_t gpa, const void *buf, size_t len)
{
	void *p = guest_mem_ptr(mem, gpa, len);

	if (!p) {
		return -EFAULT;
	}
	memcpy(p, buf, len);
	return 0;
}

uint64_t guest_mem_size(struct guest_mem *mem)
{
	return mem->size;
}

#define FAKE_MAX_RANGES 32

struct fake_range {
	enum iobus_space space;
	uint64_t base, len;
	const struct iobus_ops *ops;
	void *opaque;
};

struct iobus {
	struct fake_range r[FAKE_MAX_RANGES];
	unsigned n;
};

struct iobus *fake_iobus_new(void)
{
	return calloc(1, sizeof(struct iobus));
}

void fake_iobus_free(struct iobus *bus)
{
	free(bus);
}

unsigned fake_iobus_count(struct iobus *bus)
{
	return bus->n;
}

int iobus_register(struct iobus *bus, enum iobus_space space, uint64_t base, uint64_t len,
		   const struct iobus_ops *ops, void *opaque, const char *name, struct error **errp)
{
	for (unsigned i = 0; i < bus->n; i++) {
		struct fake_range *r = &bus->r[i];

		if (r->space == space && base < r->base + r->len && r->base < base + len) {
			return error_set(errp, EEXIST, "%s overlaps", name);
		}
	}
	if (bus->n == FAKE_MAX_RANGES) {
		return error_set(errp, ENOSPC, "too many ranges");
	}
	bus->r[bus->n++] = (struct fake_range){space, base, len, ops, opaque};
	return 0;
}

void iobus_unregister(struct iobus *bus, enum iobus_space space, uint64_t base)
{
	for (unsigned i = 0; i < bus->n; i++) {
		if (bus->r[i].space == space && bus->r[i].base == base) {
			bus->r[i] = bus->r[--bus->n];
			return;
		}
	}
}

static struct fake_range *fake_find(struct iobus *bus, enum iobus_space space, uint64_t addr)
{
	for (unsigned i = 0; i < bus->n; i++) {
		struct fake_range *r = &bus->r[i];

		if (r->space == space && addr >= r->base && addr < r->base + r->len) {
			return r;
		}
	}
	return NULL;
}

int iobus_read(struct iobus *bus, enum iobus_space space, uint64_t addr, unsigned size,
	       uint64_t *ret_value)
{
	struct fake_range *r = fake_find(bus, space, addr);

	if (!r) {
		*ret_value = ~0ull >> (64 - 8 * size);
		return -ENOENT;
	}
	*ret_value = r->ops->read(r->opaque, addr - r->base, size);
	return 0;
}

int iobus_write(struct iobus *bus, enum iobus_space space, uint64_t addr, unsigned size,
		uint64_t value)
{
	struct fake_range *r = fake_find(bus, space, addr);

	if (!r) {
		return -ENOENT;
	}
	r->ops->write(r->opaque, addr - r->base, value, size);
	return 0;
}

static int irq_levels[256];
static unsigned irq_raises[256];

int vm_irq_set_level(struct vm *vm, unsigned gsi, int level)
{
	(void)vm;
	if (gsi >= 256) {
		return -EINVAL;
	}
	if (level && !irq_levels[gsi]) {
		irq_raises[gsi]++;
	}
	irq_levels[gsi] = level;
	return 0;
}

int fake_irq_level(unsigned gsi)
{
	return irq_levels[gsi];
}

unsigned fake_irq_raises(unsigned gsi)
{
	return irq_raises[gsi];
}

void fake_irq_clear(void)
{
	memset(irq_levels, 0, sizeof(irq_levels));
	memset(irq_raises, 0, sizeof(irq_raises));
}
