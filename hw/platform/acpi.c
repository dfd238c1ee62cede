/*
 * ACPI table builder (see hw/platform/acpi.h): RSDP v2 -> XSDT (and RSDT) -> FADT,
 * MADT, MCFG; FADT -> FACS, DSDT. All multi-byte fields are little endian and
 * written byte by byte, so the layout does not depend on host structs.
 *
 * Threads: pure functions; acpi_build() runs on the control thread in
 * vm_new() before any vCPU exists.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"
#include "hw/platform/acpi.h"
#include "hw/platform/aml.h"
#include "hw/device.h"

#define ACPI_OEM_ID "VMMD  "
#define ACPI_OEM_REVISION 1
#define ACPI_CREATOR_ID "VMMD"
#define ACPI_CREATOR_REVISION 1
#define ACPI_HDR_LEN 36

struct acpi_builder {
	uint8_t *buf;
	size_t size, used;
	uint64_t gpa;
	int err;
};

uint8_t acpi_checksum(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint8_t sum = 0;

	for (size_t i = 0; i < len; i++) {
		sum = (uint8_t)(sum + b[i]);
	}
	return (uint8_t)(0 - sum);
}

static void wr(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		p[i] = (uint8_t)(v >> (8 * i));
	}
}

/* Reserve @len zeroed bytes aligned to @align; returns the offset or SIZE_MAX. */
static size_t acpi_alloc(struct acpi_builder *b, size_t len, size_t align)
{
	size_t off = ALIGN_UP(b->used, align);

	if (b->err || off > b->size || len > b->size - off) {
		b->err = -ENOSPC;
		return SIZE_MAX;
	}
	memset(b->buf + off, 0, len);
	b->used = off + len;
	return off;
}

static void acpi_header(uint8_t *t, const char *sig, uint32_t len, uint8_t rev,
			const char *table_id)
{
	char id[9];

	memcpy(t, sig, 4);
	wr(t + 4, len, 4);
	t[8] = rev;
	memcpy(t + 10, ACPI_OEM_ID, 6);
	snprintf(id, sizeof(id), "VMMD%-4.4s", table_id);
	memcpy(t + 16, id, 8);
	wr(t + 24, ACPI_OEM_REVISION, 4);
	memcpy(t + 28, ACPI_CREATOR_ID, 4);
	wr(t + 32, ACPI_CREATOR_REVISION, 4);
	t[9] = acpi_checksum(t, len);
}

/* Possible vCPUs: the present ones and those that may be hot-plugged. */
static unsigned acpi_max_cpus(const struct acpi_config *cfg)
{
	return cfg->max_cpus > cfg->n_cpus ? cfg->max_cpus : cfg->n_cpus;
}

/* Generic Address Structure for a System I/O block. */
static void acpi_gas_io(uint8_t *p, uint16_t port, unsigned bytes)
{
	p[0] = 1; /* system I/O */
	p[1] = (uint8_t)(bytes * 8);
	p[2] = 0;
	p[3] = 0; /* access size: legacy */
	wr(p + 4, port, 8);
}

/*
 * QEMU's AML for ACPI PCI hotplug on bus 0 (hw/i386/acpi-build.c,
 * hw/acpi/pcihp.c in QEMU 7.2), inside Device(\_SB.PCI0): the guest's OSPM
 * runs \_GPE._E01 -> PCNT on GPE0 bit 1, which notifies Device Check (1)
 * for the slots in PCIU and Eject Request (3) for those in PCID; the OS
 * then calls the slot's _EJ0, whose PCEJ writes the slot bit to B0EJ.
 */
static void acpi_dsdt_pcihp(struct aml *a)
{
	struct aml_res r;
	char name[8];

	aml_name(a, "BSEL");
	aml_integer(a, 0);
	aml_opregion_io(a, "PCST", ACPI_PCIHP_BASE + ACPI_PCIHP_UP, 8);
	aml_field_begin(a, "PCST");
	aml_field_unit(a, "PCIU", 32);
	aml_field_unit(a, "PCID", 32);
	aml_end(a);
	aml_opregion_io(a, "SEJ", ACPI_PCIHP_BASE + ACPI_PCIHP_EJECT, 4);
	aml_field_begin(a, "SEJ");
	aml_field_unit(a, "B0EJ", 32);
	aml_end(a);
	aml_opregion_io(a, "BNMR", ACPI_PCIHP_BASE + ACPI_PCIHP_SEL, 8);
	aml_field_begin(a, "BNMR");
	aml_field_unit(a, "BNUM", 32);
	aml_field_unit(a, "PIDX", 32);
	aml_end(a);
	aml_mutex(a, "BLCK");

	/* PCEJ(bsel, slot): B0EJ = 1 << slot on bus bsel */
	aml_method_begin(a, "PCEJ", 2, 0);
	aml_acquire(a, "BLCK");
	aml_op(a, AML_OP_STORE);
	aml_op(a, AML_OP_ARG0);
	aml_name_string(a, "BNUM");
	aml_op(a, AML_OP_STORE);
	aml_op(a, AML_OP_SHIFT_LEFT);
	aml_integer(a, 1);
	aml_op(a, AML_OP_ARG0 + 1);
	aml_name_string(a, "");
	aml_name_string(a, "B0EJ");
	aml_release(a, "BLCK");
	aml_return(a);
	aml_integer(a, 0);
	aml_end(a);

	/* DVNT(slots, event): Notify(Sxx, event) for every slot bit set */
	aml_method_begin(a, "DVNT", 2, 0);
	for (unsigned slot = 1; slot < 32; slot++) {
		snprintf(name, sizeof(name), "S%02X", slot << 3);
		aml_if_begin(a);
		aml_op(a, AML_OP_AND);
		aml_op(a, AML_OP_ARG0);
		aml_integer(a, 1ull << slot);
		aml_name_string(a, "");
		aml_op(a, AML_OP_NOTIFY);
		aml_name_string(a, name);
		aml_op(a, AML_OP_ARG0 + 1);
		aml_end(a);
	}
	aml_end(a);

	/* PCNT: bus 0's Device Check and Eject Request notifications */
	aml_method_begin(a, "PCNT", 0, 0);
	aml_op(a, AML_OP_STORE);
	aml_integer(a, 0);
	aml_name_string(a, "BNUM");
	aml_name_string(a, "DVNT");
	aml_name_string(a, "PCIU");
	aml_integer(a, 1);
	aml_name_string(a, "DVNT");
	aml_name_string(a, "PCID");
	aml_integer(a, 3);
	aml_end(a);

	for (unsigned slot = 1; slot < 32; slot++) {
		snprintf(name, sizeof(name), "S%02X", slot << 3);
		aml_device_begin(a, name);
		aml_name(a, "_SUN");
		aml_integer(a, slot);
		aml_name(a, "_ADR");
		aml_integer(a, (uint64_t)slot << 16);
		aml_method_begin(a, "_EJ0", 1, 0);
		aml_name_string(a, "PCEJ");
		aml_name_string(a, "BSEL");
		aml_name_string(a, "_SUN");
		aml_end(a);
		aml_end(a);
	}

	/* The register block is a motherboard resource the OS must not hand out. */
	aml_device_begin(a, "PHPR");
	aml_name(a, "_HID");
	aml_string(a, "PNP0A06");
	aml_name(a, "_UID");
	aml_string(a, "PCI Hotplug resources");
	aml_name(a, "_STA");
	aml_integer(a, 0x0B);
	aml_res_init(&r);
	aml_res_io(&r, ACPI_PCIHP_BASE, ACPI_PCIHP_LEN);
	aml_name(a, "_CRS");
	aml_resource_template(a, &r);
	aml_end(a);
}

/* \_GPE: GPE0 bit 1 (level, QEMU's _E01) runs the PCI hotplug notifications. */
static void acpi_dsdt_gpe(struct aml *a)
{
	aml_scope_begin(a, "\\_GPE");
	aml_name(a, "_HID");
	aml_string(a, "ACPI0006");
	aml_method_begin(a, "_E01", 0, 0);
	aml_acquire(a, "\\_SB.PCI0.BLCK");
	aml_name_string(a, "\\_SB.PCI0.PCNT");
	aml_release(a, "\\_SB.PCI0.BLCK");
	aml_end(a);
	aml_end(a);
}

static void acpi_dsdt_pci(struct aml *a, const struct acpi_config *cfg)
{
	const struct acpi_pci_info *pci = cfg->pci;
	struct aml_res r;
	uint8_t bus_start = pci ? pci->bus_start : 0;
	uint8_t bus_end = pci ? pci->bus_end : 0xFF;
	uint64_t m32_base = pci ? pci->mmio32_base : cfg->pci_hole_base;
	uint64_t m32_len = pci ? pci->mmio32_len : cfg->pci_hole_len;

	aml_device_begin(a, "PCI0");
	if (pci && pci->ecam_base) {
		aml_name(a, "_HID");
		aml_eisaid(a, "PNP0A08");
		aml_name(a, "_CID");
		aml_eisaid(a, "PNP0A03");
	} else {
		aml_name(a, "_HID");
		aml_eisaid(a, "PNP0A03");
	}
	aml_name(a, "_UID");
	aml_integer(a, 0);
	aml_name(a, "_SEG");
	aml_integer(a, 0);
	aml_name(a, "_BBN");
	aml_integer(a, bus_start);

	aml_res_init(&r);
	aml_res_word_bus(&r, bus_start, bus_end);
	aml_res_io(&r, 0xCF8, 8);
	aml_res_word_io(&r, 0x0000, 0x0CF7);
	aml_res_word_io(&r, 0x0D00, 0xFFFF);
	aml_res_dword_mem(&r, 0x000A0000, 0x000BFFFF, 1); /* legacy VGA window */
	if (m32_len) {
		if (m32_base + m32_len > 0x100000000ULL) {
			a->err = a->err ? a->err : -EINVAL;
		} else {
			aml_res_dword_mem(&r, (uint32_t)m32_base,
					  (uint32_t)(m32_base + m32_len - 1), 0);
		}
	}
	if (pci && pci->mmio64_len) {
		aml_res_qword_mem(&r, pci->mmio64_base, pci->mmio64_base + pci->mmio64_len - 1, 0);
	}
	aml_name(a, "_CRS");
	aml_resource_template(a, &r);

	if (pci && pci->n_prt) {
		unsigned n = MIN(pci->n_prt, ACPI_PRT_MAX);

		aml_name(a, "_PRT");
		aml_package_begin(a, n);
		for (unsigned i = 0; i < n; i++) {
			const struct acpi_prt_entry *e = &pci->prt[i];

			if (e->slot > 31 || e->pin > 3) {
				a->err = a->err ? a->err : -EINVAL;
				break;
			}
			aml_package_begin(a, 4);
			aml_integer(a, ((uint64_t)e->slot << 16) | 0xFFFF);
			aml_integer(a, e->pin);
			aml_integer(a, 0); /* no link device: GSI in the last field */
			aml_integer(a, e->gsi);
			aml_end(a);
		}
		aml_end(a);
	}
	if (pci && pci->hotplug) {
		acpi_dsdt_pcihp(a);
	}
	if (pci && pci->dsdt_hook) {
		pci->dsdt_hook(a, pci->hook_opaque);
	}
	aml_end(a);

	/* The ECAM window is a motherboard resource: Linux uses MCFG only if it is reserved. */
	if (pci && pci->ecam_base) {
		uint64_t len = ((uint64_t)pci->bus_end - pci->bus_start + 1) << 20;

		aml_device_begin(a, "MRES");
		aml_name(a, "_HID");
		aml_eisaid(a, "PNP0C02");
		aml_name(a, "_UID");
		aml_integer(a, 0);
		aml_res_init(&r);
		aml_res_mem32_fixed(&r,
				    (uint32_t)(pci->ecam_base + ((uint64_t)pci->bus_start << 20)),
				    (uint32_t)len);
		aml_name(a, "_CRS");
		aml_resource_template(a, &r);
		aml_end(a);
	}
}

static void acpi_dsdt_isa_device(struct aml *a, const char *name, const char *hid, unsigned uid,
				 const uint16_t *ports, const uint8_t *lens, unsigned n_ports,
				 int irq)
{
	struct aml_res r;

	aml_device_begin(a, name);
	aml_name(a, "_HID");
	aml_eisaid(a, hid);
	aml_name(a, "_UID");
	aml_integer(a, uid);
	aml_res_init(&r);
	for (unsigned i = 0; i < n_ports; i++) {
		aml_res_io(&r, ports[i], lens[i]);
	}
	if (irq >= 0) {
		aml_res_irq(&r, (unsigned)irq);
	}
	aml_name(a, "_CRS");
	aml_resource_template(a, &r);
	aml_end(a);
}

/* QEMU's pvpanic-isa description: Device PEVT, _HID "QEMU0001", one port, present. */
static void acpi_dsdt_pvpanic(struct aml *a)
{
	struct aml_res r;

	aml_device_begin(a, "PEVT");
	aml_name(a, "_HID");
	aml_string(a, "QEMU0001");
	aml_res_init(&r);
	aml_res_io(&r, 0x505, 1);
	aml_name(a, "_CRS");
	aml_resource_template(a, &r);
	aml_name(a, "_STA");
	aml_integer(a, 0xF);
	aml_end(a);
}

static int acpi_build_dsdt(struct aml *a, const struct acpi_config *cfg)
{
	static const uint16_t com1_port[] = {0x3F8}, kbd_ports[] = {0x60, 0x64},
			      rtc_port[] = {0x70};
	static const uint8_t com1_len[] = {8}, kbd_lens[] = {1, 1}, rtc_len[] = {2};
	unsigned max_cpus = acpi_max_cpus(cfg);

	aml_scope_begin(a, "\\_SB");
	acpi_dsdt_pci(a, cfg);
	acpi_dsdt_isa_device(a, "COM1", "PNP0501", 1, com1_port, com1_len, 1, 4);
	acpi_dsdt_isa_device(a, "KBD", "PNP0303", 0, kbd_ports, kbd_lens, 2, 1);
	acpi_dsdt_isa_device(a, "RTC", "PNP0B00", 0, rtc_port, rtc_len, 1, 8);
	if (cfg->pvpanic) {
		acpi_dsdt_pvpanic(a);
	}
	for (unsigned i = 0; max_cpus == cfg->n_cpus && i < cfg->n_cpus; i++) {
		char name[16];

		snprintf(name, sizeof(name), "C%03X", i);
		aml_device_begin(a, name);
		aml_name(a, "_HID");
		aml_string(a, "ACPI0007");
		aml_name(a, "_UID");
		aml_integer(a, i);
		aml_end(a);
	}
	if (max_cpus > cfg->n_cpus) {
		acpi_dsdt_cpu_hotplug(a, max_cpus);
	}
	aml_end(a);
	if (cfg->pci && cfg->pci->hotplug) {
		acpi_dsdt_gpe(a);
	}
	if (max_cpus > cfg->n_cpus) {
		acpi_dsdt_cpu_hotplug_gpe(a);
	}

	/* \_S5: SLP_TYPa, SLP_TYPb, reserved, reserved */
	aml_name(a, "\\_S5");
	aml_package_begin(a, 4);
	aml_integer(a, ACPI_SLP_TYP_S5);
	aml_integer(a, ACPI_SLP_TYP_S5);
	aml_integer(a, 0);
	aml_integer(a, 0);
	aml_end(a);
	if (a->depth) {
		return -EINVAL;
	}
	return a->err;
}

static uint64_t acpi_table_dsdt(struct acpi_builder *b, const struct acpi_config *cfg,
				struct error **errp)
{
	struct aml a;
	size_t off;
	int r;

	aml_init(&a);
	r = acpi_build_dsdt(&a, cfg);
	if (r < 0) {
		aml_fini(&a);
		b->err = error_set(errp, r, "cannot encode the DSDT");
		return 0;
	}
	off = acpi_alloc(b, ACPI_HDR_LEN + a.len, 16);
	if (off != SIZE_MAX) {
		memcpy(b->buf + off + ACPI_HDR_LEN, a.buf, a.len);
		acpi_header(b->buf + off, "DSDT", (uint32_t)(ACPI_HDR_LEN + a.len), 2, "DSDT");
	}
	aml_fini(&a);
	return b->gpa + off;
}

static uint64_t acpi_table_facs(struct acpi_builder *b)
{
	size_t off = acpi_alloc(b, 64, 64);
	uint8_t *t;

	if (off == SIZE_MAX) {
		return 0;
	}
	t = b->buf + off;
	memcpy(t, "FACS", 4);
	wr(t + 4, 64, 4);
	t[32] = 2; /* version */
	return b->gpa + off;
}

static uint64_t acpi_table_fadt(struct acpi_builder *b, uint64_t facs, uint64_t dsdt)
{
	const uint32_t len = 276;
	size_t off = acpi_alloc(b, len, 16);
	uint8_t *t;

	if (off == SIZE_MAX) {
		return 0;
	}
	t = b->buf + off;
	wr(t + 36, facs, 4);
	wr(t + 40, dsdt, 4);
	t[45] = 0; /* preferred PM profile: unspecified */
	wr(t + 46, ACPI_SCI_IRQ, 2);
	/* SMI_CMD (48) = 0: the hardware is always in ACPI mode, SCI_EN reads 1. */
	wr(t + 56, ACPI_PM1_EVT_BLK, 4);
	wr(t + 64, ACPI_PM1_CNT_BLK, 4);
	wr(t + 76, ACPI_PM_TMR_BLK, 4);
	wr(t + 80, ACPI_GPE0_BLK, 4);
	t[88] = ACPI_PM1_EVT_LEN;
	t[89] = ACPI_PM1_CNT_LEN;
	t[91] = ACPI_PM_TMR_LEN;
	t[92] = ACPI_GPE0_BLK_LEN;
	wr(t + 96, 101, 2);  /* P_LVL2_LAT > 100: C2 not supported */
	wr(t + 98, 1001, 2); /* P_LVL3_LAT > 1000: C3 not supported */
	t[108] = 0x32;	     /* CMOS century register */
	/* IAPC_BOOT_ARCH: legacy devices, 8042, no VGA */
	wr(t + 109, (1u << 0) | (1u << 1) | (1u << 2), 2);
	/* Flags: WBINVD, PROC_C1, SLP_BUTTON (none), FIX_RTC, RESET_REG_SUP */
	wr(t + 112, (1u << 0) | (1u << 2) | (1u << 5) | (1u << 6) | (1u << 10), 4);
	/* Reset register: the keyboard controller's pulse-reset command. */
	acpi_gas_io(t + 116, 0x64, 1);
	t[128] = 0xFE;
	t[131] = 0; /* FADT minor version */
	/* X_FIRMWARE_CTRL stays 0: with both set, OSes install the FACS twice. */
	wr(t + 140, dsdt, 8);
	acpi_gas_io(t + 148, ACPI_PM1_EVT_BLK, ACPI_PM1_EVT_LEN);
	acpi_gas_io(t + 172, ACPI_PM1_CNT_BLK, ACPI_PM1_CNT_LEN);
	acpi_gas_io(t + 208, ACPI_PM_TMR_BLK, ACPI_PM_TMR_LEN);
	acpi_gas_io(t + 220, ACPI_GPE0_BLK, ACPI_GPE0_BLK_LEN);
	memcpy(t + 268, "VMMD    ", 8); /* hypervisor vendor identity */
	acpi_header(t, "FACP", len, 6, "FACP");
	return b->gpa + off;
}

static uint64_t acpi_table_madt(struct acpi_builder *b, const struct acpi_config *cfg)
{
	unsigned max_cpus = acpi_max_cpus(cfg);
	uint32_t len = 44 + 8 * max_cpus + 12 + 10 * 2 + 6;
	size_t off = acpi_alloc(b, len, 16);
	uint8_t *t, *e;

	if (off == SIZE_MAX) {
		return 0;
	}
	t = b->buf + off;
	wr(t + 36, ACPI_LAPIC_ADDR, 4);
	wr(t + 40, 1, 4); /* PCAT_COMPAT: dual 8259 present */
	e = t + 44;
	/* Every possible vCPU; the absent ones (hot-pluggable) not enabled, as QEMU. */
	for (unsigned i = 0; i < max_cpus; i++, e += 8) {
		e[0] = 0; /* processor local APIC */
		e[1] = 8;
		e[2] = (uint8_t)i;	       /* ACPI processor UID, matches the DSDT's _UID */
		e[3] = (uint8_t)i;	       /* APIC ID */
		wr(e + 4, i < cfg->n_cpus, 4); /* enabled */
	}
	e[0] = 1; /* I/O APIC */
	e[1] = 12;
	e[2] = ACPI_IOAPIC_ID;
	wr(e + 4, ACPI_IOAPIC_ADDR, 4);
	wr(e + 8, 0, 4); /* GSI base */
	e += 12;
	/* ISA IRQ 0 (PIT) is wired to IOAPIC pin 2; bus defaults otherwise. */
	e[0] = 2;
	e[1] = 10;
	e[2] = 0; /* ISA */
	e[3] = 0;
	wr(e + 4, 2, 4);
	wr(e + 8, 0, 2);
	e += 10;
	/* SCI: level-triggered, active-high */
	e[0] = 2;
	e[1] = 10;
	e[2] = 0;
	e[3] = ACPI_SCI_IRQ;
	wr(e + 4, ACPI_SCI_IRQ, 4);
	wr(e + 8, 0x1 | (0x3 << 2), 2);
	e += 10;
	/* Local APIC NMI on LINT1 of every processor */
	e[0] = 4;
	e[1] = 6;
	e[2] = 0xFF;
	wr(e + 3, 0, 2);
	e[5] = 1;
	acpi_header(t, "APIC", len, 5, "APIC");
	return b->gpa + off;
}

static uint64_t acpi_table_mcfg(struct acpi_builder *b, const struct acpi_pci_info *pci)
{
	uint32_t len = 44 + 16;
	size_t off = acpi_alloc(b, len, 16);
	uint8_t *t;

	if (off == SIZE_MAX) {
		return 0;
	}
	t = b->buf + off;
	wr(t + 44, pci->ecam_base, 8);
	wr(t + 52, 0, 2); /* segment */
	t[54] = pci->bus_start;
	t[55] = pci->bus_end;
	acpi_header(t, "MCFG", len, 1, "MCFG");
	return b->gpa + off;
}

static uint64_t acpi_table_srat(struct acpi_builder *b, const struct acpi_config *cfg)
{
	uint32_t len = (uint32_t)acpi_srat_fill(NULL, acpi_max_cpus(cfg), cfg->srat);
	size_t off = acpi_alloc(b, len, 16);

	if (off == SIZE_MAX) {
		return 0;
	}
	acpi_srat_fill(b->buf + off, acpi_max_cpus(cfg), cfg->srat);
	acpi_header(b->buf + off, "SRAT", len, 1, "SRAT");
	return b->gpa + off;
}

static uint64_t acpi_table_xsdt(struct acpi_builder *b, const uint64_t *tables, unsigned n,
				int wide)
{
	unsigned esz = wide ? 8 : 4;
	uint32_t len = ACPI_HDR_LEN + esz * n;
	size_t off = acpi_alloc(b, len, 16);
	uint8_t *t;

	if (off == SIZE_MAX) {
		return 0;
	}
	t = b->buf + off;
	for (unsigned i = 0; i < n; i++) {
		wr(t + ACPI_HDR_LEN + esz * i, tables[i], esz);
	}
	acpi_header(t, wide ? "XSDT" : "RSDT", len, 1, wide ? "XSDT" : "RSDT");
	return b->gpa + off;
}

int64_t acpi_build_tables(void *buf, size_t len, uint64_t gpa, const struct acpi_config *cfg,
			  struct error **errp)
{
	struct acpi_builder b = {.buf = buf, .size = len, .gpa = gpa};
	uint64_t tables[5], facs, dsdt, rsdt, xsdt;
	unsigned n = 0;
	size_t rsdp;
	uint8_t *p;

	if (cfg->n_cpus < 1 || cfg->n_cpus > ACPI_MAX_CPUS) {
		return error_set(errp, EINVAL, "ACPI: %u vCPUs is outside 1..%u", cfg->n_cpus,
				 ACPI_MAX_CPUS);
	}
	if (cfg->max_cpus > ACPI_MAX_CPUS) {
		return error_set(errp, EINVAL, "ACPI: %u possible vCPUs is above %u", cfg->max_cpus,
				 ACPI_MAX_CPUS);
	}
	if (!IS_ALIGNED(gpa, 16) || gpa + len > 0x100000000ULL) {
		return error_set(errp, EINVAL, "ACPI: table address 0x%" PRIx64 " is unusable",
				 gpa);
	}
	if (cfg->pci && cfg->pci->ecam_base + 0x10000000ULL > 0x100000000ULL) {
		return error_set(errp, EINVAL, "ACPI: ECAM base 0x%" PRIx64 " is not below 4 GiB",
				 cfg->pci->ecam_base);
	}
	if (cfg->pci && cfg->pci->bus_end < cfg->pci->bus_start) {
		return error_set(errp, EINVAL, "ACPI: PCI bus range %u..%u is empty",
				 cfg->pci->bus_start, cfg->pci->bus_end);
	}

	rsdp = acpi_alloc(&b, 36, 16);
	dsdt = acpi_table_dsdt(&b, cfg, errp);
	facs = acpi_table_facs(&b);
	tables[n++] = acpi_table_fadt(&b, facs, dsdt);
	tables[n++] = acpi_table_madt(&b, cfg);
	if (cfg->pci && cfg->pci->ecam_base) {
		tables[n++] = acpi_table_mcfg(&b, cfg->pci);
	}
	if (cfg->srat) {
		tables[n++] = acpi_table_srat(&b, cfg);
	}
	rsdt = acpi_table_xsdt(&b, tables, n, 0);
	xsdt = acpi_table_xsdt(&b, tables, n, 1);
	if (b.err) {
		return error_set(errp, b.err, "ACPI: tables do not fit in %zu bytes at 0x%" PRIx64,
				 len, gpa);
	}

	p = b.buf + rsdp;
	memcpy(p, "RSD PTR ", 8);
	memcpy(p + 9, ACPI_OEM_ID, 6);
	p[15] = 2; /* revision: ACPI 2.0+ */
	wr(p + 16, rsdt, 4);
	wr(p + 20, 36, 4);
	wr(p + 24, xsdt, 8);
	p[8] = acpi_checksum(p, 20);
	p[32] = acpi_checksum(p, 36);
	return (int64_t)b.used;
}

int acpi_build(struct guest_mem *mem, const struct acpi_config *cfg, struct error **errp)
{
	void *p = guest_mem_ptr(mem, ACPI_TABLES_BASE, ACPI_TABLES_SIZE);
	int64_t r;

	if (!p) {
		return error_set(errp, ENOSPC,
				 "ACPI: guest RAM does not cover 0x%llx-0x%llx for the tables",
				 ACPI_TABLES_BASE, ACPI_TABLES_BASE + ACPI_TABLES_SIZE - 1);
	}
	r = acpi_build_tables(p, ACPI_TABLES_SIZE, ACPI_TABLES_BASE, cfg, errp);
	return r < 0 ? (int)r : 0;
}
