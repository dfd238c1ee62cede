/*
 * The VM's I/O bus, the machine's side (devices see hw/device.h): port-I/O
 * and MMIO range maps. A device registers a range with an ops table; a vCPU
 * exit is dispatched to the handler with the offset inside the range. Unclaimed reads return all ones, unclaimed
 * writes are dropped (both logged rate-limited).
 *
 * Threads: dispatch runs on vCPU threads; register/unregister on any thread.
 * iobus_unregister() returns only once no vCPU is inside that range's
 * handlers, so the caller may free @opaque afterwards.
 */
#pragma once

#include <stdint.h>

#include "common/error.h"
/* What devices see: enum iobus_space, struct iobus_ops, iobus_register/unregister. */
#include "hw/device.h"

/* Dispatch an access (vCPU threads; tests). Returns 0, or -ENOENT if unclaimed. */
int iobus_read(struct iobus *bus, enum iobus_space space, uint64_t addr, unsigned size,
	       uint64_t *ret_value);
int iobus_write(struct iobus *bus, enum iobus_space space, uint64_t addr, unsigned size,
		uint64_t value);

/* Ranges registered, both spaces (leak checks in tests). */
unsigned iobus_count(struct iobus *bus);

/* A bus for the VM named @vm_name (used in log messages; copied). NULL on ENOMEM. */
struct iobus *iobus_new(const char *vm_name);
/* All ranges must have been unregistered (leftovers are dropped). NULL is fine. */
void iobus_free(struct iobus *bus);
