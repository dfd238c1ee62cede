/*
 * The guest's physical memory map as firmware would report it (BIOS e820,
 * also the PVH memory map): RAM below the EBDA, the EBDA and the BIOS area
 * (0xe0000-0xfffff, where the MP and ACPI tables live) reserved, RAM from
 * 1 MiB to the PCI hole and from 4 GiB up.
 *
 * Threads: pure; any thread.
 */
#pragma once

#include <stdint.h>

#include "common/util.h"

#define E820_RAM 1
#define E820_RESERVED 2
#define E820_ACPI 3

#define E820_MAX_ENTRIES 128

struct e820_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
} _packed_;

struct guest_mem;

/* Fill @out (at most @max entries, sorted); returns the number written. */
unsigned e820_build(struct guest_mem *mem, struct e820_entry *out, unsigned max);
