/*
 * The VM's I/O bus: port-I/O and MMIO range maps. A device registers a
 * range with an ops table; a vCPU exit is dispatched to the handler with the
 * offset inside the range. Unclaimed reads return all ones, unclaimed
 * writes are dropped (both logged rate-limited).
 *
 * Threads: dispatch runs on vCPU threads; register/unregister on any thread.
 * iobus_unregister() returns only once no vCPU is inside that range's
 * handlers, so the caller may free @opaque afterwards.
 */
#pragma once

#include <stdint.h>

#include "common/error.h"

struct iobus;

enum iobus_space {
	IOBUS_PIO,
	IOBUS_MMIO,
};

struct iobus_ops {
	/* @size is 1, 2, 4 or 8; @offset is relative to the registered base. */
	uint64_t (*read)(void *opaque, uint64_t offset, unsigned size);
	void (*write)(void *opaque, uint64_t offset, uint64_t value, unsigned size);
};

/* -EEXIST (with a message naming both owners) if the range overlaps another. */
int iobus_register(struct iobus *bus, enum iobus_space space, uint64_t base, uint64_t len,
		   const struct iobus_ops *ops, void *opaque, const char *name,
		   struct error **errp);
/* Remove the range registered at @base; waits for in-flight dispatch. */
void iobus_unregister(struct iobus *bus, enum iobus_space space, uint64_t base);

/* Dispatch an access (vCPU threads; tests). Returns 0, or -ENOENT if unclaimed. */
int iobus_read(struct iobus *bus, enum iobus_space space, uint64_t addr, unsigned size,
	       uint64_t *ret_value);
int iobus_write(struct iobus *bus, enum iobus_space space, uint64_t addr, unsigned size,
		uint64_t value);

/* A bus for the VM named @vm_name (used in log messages; copied). NULL on ENOMEM. */
struct iobus *iobus_new(const char *vm_name);
/* All ranges must have been unregistered (leftovers are dropped). NULL is fine. */
void iobus_free(struct iobus *bus);
