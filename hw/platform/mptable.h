/*
 * Intel MultiProcessor Specification 1.4 tables (floating pointer and
 * configuration table) for guests booted with acpi=off: one processor entry
 * per vCPU, buses PCI 0 and ISA 1, the IOAPIC, ISA IRQs 0..15 (IRQ0 on pin
 * 2), PCI INTx routes when given, and the local interrupt wiring.
 *
 * Placed at MPTABLE_BASE, inside the 0xF0000-0xFFFFF BIOS area an OS scans
 * for "_MP_" (the e820 map reserves it, see hw/platform/acpi.h).
 *
 * Threads: pure functions; mptable_build() runs on the control thread in
 * vm_new() before any vCPU exists.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

struct guest_mem;
struct acpi_pci_info;

#define MPTABLE_BASE 0xF0000ULL
#define MPTABLE_SIZE 0x2000ULL
#define MPTABLE_BUS_PCI 0
#define MPTABLE_BUS_ISA 1

struct mptable_config {
	unsigned n_cpus; /* 1..64; APIC IDs 0..n_cpus-1, the IOAPIC's ID is n_cpus */
	/* PCI INTx routes (the prt[] of the PCI host bridge); NULL for none. */
	const struct acpi_pci_info *pci;
};

/*
 * Write the floating pointer (at offset 0) and the configuration table into
 * @buf, mapped at guest physical @gpa. Returns bytes used or -errno with
 * *errp set (-ENOSPC if @len is too small, -EINVAL for a bad config).
 */
int64_t mptable_build_tables(void *buf, size_t len, uint64_t gpa, const struct mptable_config *cfg,
			     struct error **errp);

/* Build the tables into guest RAM at MPTABLE_BASE. 0 or -errno with *errp set. */
int mptable_build(struct guest_mem *mem, const struct mptable_config *cfg, struct error **errp);
