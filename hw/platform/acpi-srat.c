/*
 * The SRAT (ACPI 6.x §5.2.16) as QEMU 7.2's pc machine builds it when
 * memory hotplug is enabled (-m maxmem=, which makes QEMU create NUMA node
 * 0 on its own): a processor affinity entry per vCPU, memory affinity
 * entries for the RAM (the 640 KiB hole and the PCI hole cut out), padding
 * entries up to two more than the nodes, and the hotpluggable range of the
 * device memory region (enabled | hotpluggable) in the last node. Guests
 * learn from it where memory may appear (Linux sizes its direct map and
 * SWIOTLB by it; Windows enables memory hotplug only with it).
 *
 * Threads: pure functions; any thread.
 */
#include "config.h"

#include <string.h>

#include "hw/device.h" /* the guest-physical map */
#include "hw/platform/acpi.h"

#define HOLE_640K_START 0xA0000ull
#define HOLE_640K_END 0x100000ull
#define MEM_ENABLED 1u
#define MEM_HOTPLUGGABLE 2u

static void put(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		p[i] = (uint8_t)(v >> (8 * i));
	}
}

/* One memory affinity structure (40 bytes). */
static uint8_t *mem_entry(uint8_t *e, uint64_t base, uint64_t len, uint32_t node, uint32_t flags)
{
	if (e) {
		e[0] = 1;
		e[1] = 40;
		put(e + 2, node, 4);
		put(e + 8, base, 8);
		put(e + 16, len, 8);
		put(e + 28, flags, 4);
		return e + 40;
	}
	return NULL;
}

size_t acpi_srat_fill(uint8_t *t, unsigned n_cpus, const struct acpi_srat_info *s)
{
	/* header, reserved; CPUs; 640K, low RAM, high RAM or padding, padding, hotplug */
	size_t len = 48 + 16 * (size_t)n_cpus + 40 * 4;
	uint8_t *e;
	unsigned n_mem = 0;

	if (s->ram_above_4g) {
		len += 40;
	}
	if (!t) {
		return len;
	}
	put(t + 36, 1, 4); /* reserved, 1 for backward compatibility */
	e = t + 48;
	for (unsigned i = 0; i < n_cpus; i++, e += 16) {
		e[0] = 0; /* processor local APIC/SAPIC affinity */
		e[1] = 16;
		e[2] = 0;	   /* proximity domain [7:0] */
		e[3] = (uint8_t)i; /* APIC ID */
		put(e + 4, 1, 4);  /* enabled */
	}
	/* node 0 holds all RAM: below 640K, 1M up to the PCI hole, from 4G up */
	e = mem_entry(e, 0, HOLE_640K_START, 0, MEM_ENABLED);
	n_mem++;
	if (s->ram_below_4g > HOLE_640K_END) {
		e = mem_entry(e, HOLE_640K_END, s->ram_below_4g - HOLE_640K_END, 0, MEM_ENABLED);
		n_mem++;
	}
	if (s->ram_above_4g) {
		e = mem_entry(e, GUEST_MEM_HIGH_START, s->ram_above_4g, 0, MEM_ENABLED);
		n_mem++;
	}
	/* QEMU pads to (nodes + 2) memory entries with empty ones */
	for (; n_mem < 1 + 2; n_mem++) {
		e = mem_entry(e, 0, 0, 0, 0);
	}
	e = mem_entry(e, s->hotplug_base, s->hotplug_len, 0, MEM_ENABLED | MEM_HOTPLUGGABLE);
	return (size_t)(e - t);
}
