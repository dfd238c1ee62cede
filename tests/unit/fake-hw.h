/*
 * A fake machine for device-model unit tests: guest RAM as one malloc'ed
 * buffer behind the real guest_mem_* interface, an I/O bus that records
 * registered ranges and dispatches accesses to them, and IRQ lines whose
 * levels the test can inspect. Single-threaded.
 */
#pragma once

#include <stdint.h>

#include "hw/core/iobus.h"
#include "hw/core/memory.h"

struct guest_mem {
	uint8_t *ram;
	uint64_t size;
};

struct guest_mem *fake_mem_new(uint64_t size);
void fake_mem_free(struct guest_mem *mem);

struct iobus *fake_iobus_new(void);
void fake_iobus_free(struct iobus *bus);
unsigned fake_iobus_count(struct iobus *bus);

/* Level of GSI @gsi as last set through vm_irq_set_level(), and its number of rising edges. */
int fake_irq_level(unsigned gsi);
unsigned fake_irq_raises(unsigned gsi);
void fake_irq_clear(void);
