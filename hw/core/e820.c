/*
 * The e820 memory map: see e820.h.
 *
 * Threads: pure; any thread.
 */
#include "config.h"

#include "hw/core/boot.h"
#include "hw/core/e820.h"
#include "hw/core/memory.h"

static void add(struct e820_entry *out, unsigned max, unsigned *n, uint64_t addr, uint64_t size,
		uint32_t type)
{
	if (size == 0 || *n >= max) {
		return;
	}
	out[*n] = (struct e820_entry){.addr = addr, .size = size, .type = type};
	(*n)++;
}

unsigned e820_build(struct guest_mem *mem, struct e820_entry *out, unsigned max)
{
	uint64_t low = guest_mem_low_size(mem);
	unsigned n = 0;

	add(out, max, &n, 0, MIN(low, BOOT_EBDA_START), E820_RAM);
	add(out, max, &n, BOOT_EBDA_START, 0xa0000 - BOOT_EBDA_START, E820_RESERVED);
	add(out, max, &n, 0xe0000, 0x20000, E820_RESERVED);
	if (low > BOOT_HIGH_START) {
		add(out, max, &n, BOOT_HIGH_START, low - BOOT_HIGH_START, E820_RAM);
	}
	for (unsigned i = 1; i < guest_mem_region_count(mem); i++) {
		const struct guest_mem_region *r = guest_mem_region(mem, i);

		if (r->device) {
			continue; /* a memory device's region: its driver finds it */
		}
		add(out, max, &n, r->gpa, r->size, E820_RAM);
	}
	return n;
}
