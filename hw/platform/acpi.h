/*
 * ACPI tables for a PC without firmware: RSDP (v2), XSDT, FADT, FACS, MADT,
 * DSDT (AML built by hw/platform/aml.c) and, when the PCI code asks for it, MCFG.
 * The builder is a pure function over a byte buffer (unit-tested, checksums
 * and iasl disassembly); acpi_build() places the result in guest RAM.
 *
 * Guest layout (the e820 map must mark [ACPI_BIOS_AREA_BASE, 1 MiB) as
 * reserved): the ACPI tables, RSDP first, start at ACPI_TABLES_BASE, inside
 * the 0xE0000-0xFFFFF range an OS scans for the RSDP; the MP table
 * (hw/platform/mptable.h) lives at MPTABLE_BASE above them.
 *
 * The fixed-port devices the FADT describes are hw/isa/acpi-pm.c (PM1a event
 * and control blocks, PM timer, GPE0 block) and hw/isa/i8042.c (the reset
 * register is the keyboard controller's pulse-reset command).
 *
 * Threads: acpi_build() runs on the control thread in vm_new(), before any
 * vCPU runs. acpi_pm_* functions are thread-safe (see hw/isa/acpi-pm.c).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

struct guest_mem;
struct aml;

#define ACPI_BIOS_AREA_BASE 0xE0000ULL
#define ACPI_TABLES_BASE 0xE0000ULL
#define ACPI_TABLES_SIZE 0x10000ULL /* [0xE0000, 0xF0000) */

/* Fixed I/O ports described by the FADT and served by hw/isa/acpi-pm.c. */
#define ACPI_PM_BASE 0x600
#define ACPI_PM1_EVT_BLK (ACPI_PM_BASE + 0x00) /* PM1a_STS (2) + PM1a_EN (2) */
#define ACPI_PM1_EVT_LEN 4
#define ACPI_PM1_CNT_BLK (ACPI_PM_BASE + 0x04) /* PM1a_CNT (2) */
#define ACPI_PM1_CNT_LEN 2
#define ACPI_PM_TMR_BLK (ACPI_PM_BASE + 0x08) /* 24-bit timer, 3.579545 MHz */
#define ACPI_PM_TMR_LEN 4
#define ACPI_PM_REGION_LEN 0x0C /* ports [ACPI_PM_BASE, +0x0C) */
/* GPE0 where QEMU's PIIX4 PM has it (docs/specs/acpi_pci_hotplug.rst), byte access. */
#define ACPI_GPE0_BLK 0xAFE0 /* GPE0_STS (2) + GPE0_EN (2) */
#define ACPI_GPE0_BLK_LEN 4
/* GPE0 status bits, as QEMU numbers them. */
#define ACPI_GPE_PCI_HOTPLUG 1
#define ACPI_GPE_CPU_HOTPLUG 2
#define ACPI_SCI_IRQ 9
/* SLP_TYP the DSDT's \_S5 package announces; PM1a_CNT writes with it power off. */
#define ACPI_SLP_TYP_S5 5

/*
 * QEMU's PCI hotplug register block (hw/acpi/pcihp.c, i440fx): 32-bit
 * registers, one bit per slot of the bus selected by BNUM.
 */
#define ACPI_PCIHP_BASE 0xAE00
#define ACPI_PCIHP_LEN 0x18
#define ACPI_PCIHP_UP 0x00    /* PCIU: slots with a pending insert (clear on read) */
#define ACPI_PCIHP_DOWN 0x04  /* PCID: slots with a pending removal request */
#define ACPI_PCIHP_EJECT 0x08 /* B0EJ: write a slot bit to eject it; reads 0 */
#define ACPI_PCIHP_RMV 0x0C   /* slots whose device can be removed */
#define ACPI_PCIHP_SEL 0x10   /* BNUM: bus selector */
#define ACPI_PCIHP_AIDX 0x14  /* PIDX: acpi-index of a slot (write the slot bit) */

#define ACPI_IOAPIC_ADDR 0xFEC00000U
#define ACPI_LAPIC_ADDR 0xFEE00000U
#define ACPI_IOAPIC_ID 0
#define ACPI_MAX_CPUS 64

/* One _PRT entry: PCI INTx of a device routed to a GSI. */
struct acpi_prt_entry {
	uint8_t slot; /* PCI device number 0..31 */
	uint8_t pin;  /* 0 = INTA .. 3 = INTD */
	uint32_t gsi;
};

#define ACPI_PRT_MAX 128

/*
 * The PCI host bridge as the DSDT and MCFG describe it. Filled by the PCI
 * code (vm_new passes it in acpi_config.pci). Zero lengths omit a window.
 */
struct acpi_pci_info {
	uint8_t bus_start, bus_end;	  /* bus number range decoded, usually 0..255 */
	uint64_t mmio32_base, mmio32_len; /* the 32-bit PCI hole for BARs */
	uint64_t mmio64_base, mmio64_len; /* 64-bit BAR window, may be empty */
	uint16_t io_base, io_len;	  /* I/O BAR window (e.g. 0xC000, 0x4000) */
	uint64_t ecam_base;		  /* MMCONFIG base; 0 = no MCFG table */
	struct acpi_prt_entry prt[ACPI_PRT_MAX];
	unsigned n_prt; /* 0: no _PRT method */
	/*
	 * Hook for extra AML inside Device(\_SB.PCI0) (hotplug slots,
	 * methods): called with the emitter positioned in the device's body.
	 * May be NULL. Must only use hw/platform/aml.h; errors are latched in @aml.
	 */
	void (*dsdt_hook)(struct aml *aml, void *opaque);
	void *hook_opaque;
	/*
	 * Describe QEMU's ACPI PCI hotplug interface for bus 0 (the register
	 * block at ACPI_PCIHP_BASE, served by hw/platform/acpi-hotplug.c): one
	 * Device(Sxx) per slot 1..31 with _ADR, _SUN and _EJ0, the PCEJ/DVNT/
	 * PCNT methods, the PHPR resource device and \_GPE._E01.
	 */
	bool hotplug;
};

/*
 * The SRAT of a machine with memory hotplug (hw/platform/acpi-srat.c): one
 * NUMA node with all RAM and the device memory region as hotpluggable.
 */
struct acpi_srat_info {
	uint64_t ram_below_4g, ram_above_4g;
	uint64_t hotplug_base, hotplug_len;
};

struct vm_config;
/* Fill @s for @cfg; false when it has no device memory (maxmem): then no SRAT. */
bool acpi_srat_from_config(const struct vm_config *cfg, struct acpi_srat_info *s);
/*
 * Write the SRAT's body at @t (the header is the caller's; bytes 36.. are
 * filled) and return the table's length; @t NULL: only the length.
 */
size_t acpi_srat_fill(uint8_t *t, unsigned n_cpus, const struct acpi_srat_info *s);

struct acpi_config {
	unsigned n_cpus; /* 1..ACPI_MAX_CPUS; APIC IDs 0..n_cpus-1 */
	/*
	 * Possible vCPUs, n_cpus..ACPI_MAX_CPUS (0: n_cpus). Above n_cpus the
	 * MADT lists the absent ones disabled and the DSDT describes QEMU's CPU
	 * hotplug interface (hw/platform/acpi-cpuhp-aml.c).
	 */
	unsigned max_cpus;
	/* The host bridge; NULL: a stub bridge for bus 0 with the default hole. */
	const struct acpi_pci_info *pci;
	/* Defaults used for the stub bridge's 32-bit window when pci is NULL. */
	uint64_t pci_hole_base, pci_hole_len; /* e.g. 0xC0000000, 0x3EC00000 */
	/* Memory hotplug's SRAT; NULL: none (QEMU builds one only with NUMA or maxmem). */
	const struct acpi_srat_info *srat;
	bool pvpanic; /* QEMU's pvpanic device at port 0x505 (Device PEVT) */
};

/*
 * Build every table into @buf, which will be mapped at guest physical
 * address @gpa. The RSDP is at offset 0 (@gpa must be 16-byte aligned and
 * below 1 MiB for the OS to find it). Returns the number of bytes used, or
 * -ENOSPC (buffer too small) / -EINVAL (bad config) with *errp set.
 */
int64_t acpi_build_tables(void *buf, size_t len, uint64_t gpa, const struct acpi_config *cfg,
			  struct error **errp);

/*
 * Build the tables and write them to guest RAM at ACPI_TABLES_BASE.
 * Called from vm_new() after guest RAM exists. 0 or -errno with *errp set.
 */
int acpi_build(struct guest_mem *mem, const struct acpi_config *cfg, struct error **errp);

/*
 * hw/platform/acpi-cpuhp-aml.c: inside Scope(\_SB), the CPU hotplug
 * resource device PRES and Device(CPUS) with one Device(Cxxx) per possible
 * vCPU; and, at the root, \_GPE._E02 calling its scan method.
 */
void acpi_dsdt_cpu_hotplug(struct aml *a, unsigned max_cpus);
void acpi_dsdt_cpu_hotplug_gpe(struct aml *a);

/* ACPI checksum: the byte that makes @len bytes at @p sum to zero. */
uint8_t acpi_checksum(const void *p, size_t len);

/*
 * The fixed-feature power button (vm_powerdown): sets PWRBTN_STS in PM1a
 * and raises the SCI if the guest enabled PWRBTN_EN. @pm_state is the
 * realized state of acpi_pm_class. Any thread.
 */
void acpi_pm_press_power_button(void *pm_state);
/* Raise general-purpose event @gpe (0..15) in GPE0 (ACPI_GPE_*). Any thread. */
void acpi_pm_raise_gpe(void *pm_state, unsigned gpe);
