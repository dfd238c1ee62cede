/*
 * MP table builder (see hw/platform/mptable.h), after the MultiProcessor Specification
 * 1.4, chapter 4. Fields are written byte by byte in little endian.
 *
 * Threads: pure functions; mptable_build() runs on the control thread.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "common/util.h"
#include "hw/platform/acpi.h"
#include "hw/device.h"
#include "hw/platform/mptable.h"

#define MP_SPEC_REV 4
#define MP_LAPIC_VERSION 0x14
#define MP_IOAPIC_VERSION 0x11
#define MP_CPU_SIGNATURE 0x600 /* family 6 */
#define MP_CPU_FEATURES 0x201  /* FPU, APIC */

enum {
	MP_ENTRY_CPU = 0,
	MP_ENTRY_BUS = 1,
	MP_ENTRY_IOAPIC = 2,
	MP_ENTRY_IOINT = 3,
	MP_ENTRY_LINT = 4,
};

enum {
	MP_INT = 0,
	MP_NMI = 1,
	MP_EXTINT = 3,
};

static void wr(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		p[i] = (uint8_t)(v >> (8 * i));
	}
}

static uint8_t *mp_intsrc(uint8_t *e, uint8_t type, uint16_t flags, uint8_t bus, uint8_t bus_irq,
			  uint8_t apic, uint8_t pin, unsigned *count)
{
	e[0] = MP_ENTRY_IOINT;
	e[1] = type;
	wr(e + 2, flags, 2);
	e[4] = bus;
	e[5] = bus_irq;
	e[6] = apic;
	e[7] = pin;
	(*count)++;
	return e + 8;
}

int64_t mptable_build_tables(void *buf, size_t len, uint64_t gpa, const struct mptable_config *cfg,
			     struct error **errp)
{
	unsigned n_prt = cfg->pci ? MIN(cfg->pci->n_prt, ACPI_PRT_MAX) : 0;
	uint8_t ioapic_id = (uint8_t)cfg->n_cpus;
	size_t need, cfg_len;
	unsigned count = 0;
	uint8_t *fp = buf, *ct, *e;

	if (cfg->n_cpus < 1 || cfg->n_cpus > ACPI_MAX_CPUS) {
		return error_set(errp, EINVAL, "MP table: %u vCPUs is outside 1..%u", cfg->n_cpus,
				 ACPI_MAX_CPUS);
	}
	if (!IS_ALIGNED(gpa, 16) || gpa + len > 0x100000000ULL) {
		return error_set(errp, EINVAL, "MP table: address 0x%" PRIx64 " is unusable", gpa);
	}
	cfg_len = 44 + 20 * cfg->n_cpus + 8 * 2 + 8 + 8 * (16 + n_prt) + 8 * 2;
	need = 16 + cfg_len;
	if (need > len || cfg_len > 0xFFFF) {
		return error_set(errp, ENOSPC, "MP table: %zu bytes needed, %zu available", need,
				 len);
	}
	memset(buf, 0, need);

	ct = fp + 16;
	e = ct + 44;
	for (unsigned i = 0; i < cfg->n_cpus; i++, e += 20) {
		e[0] = MP_ENTRY_CPU;
		e[1] = (uint8_t)i;
		e[2] = MP_LAPIC_VERSION;
		e[3] = 0x01 | (i == 0 ? 0x02 : 0); /* enabled, BSP */
		wr(e + 4, MP_CPU_SIGNATURE, 4);
		wr(e + 8, MP_CPU_FEATURES, 4);
		count++;
	}
	e[0] = MP_ENTRY_BUS;
	e[1] = MPTABLE_BUS_PCI;
	memcpy(e + 2, "PCI   ", 6);
	e += 8;
	e[0] = MP_ENTRY_BUS;
	e[1] = MPTABLE_BUS_ISA;
	memcpy(e + 2, "ISA   ", 6);
	e += 8;
	count += 2;
	e[0] = MP_ENTRY_IOAPIC;
	e[1] = ioapic_id;
	e[2] = MP_IOAPIC_VERSION;
	e[3] = 0x01; /* usable */
	wr(e + 4, ACPI_IOAPIC_ADDR, 4);
	e += 8;
	count++;
	/* The 8259 cascade on pin 0, then ISA IRQs; IRQ0 (PIT) is on pin 2. */
	e = mp_intsrc(e, MP_EXTINT, 0, MPTABLE_BUS_ISA, 0, ioapic_id, 0, &count);
	for (unsigned irq = 0; irq < 16; irq++) {
		if (irq == 2) {
			continue;
		}
		e = mp_intsrc(e, MP_INT, 0, MPTABLE_BUS_ISA, (uint8_t)irq, ioapic_id,
			      (uint8_t)(irq == 0 ? 2 : irq), &count);
	}
	for (unsigned i = 0; i < n_prt; i++) {
		const struct acpi_prt_entry *p = &cfg->pci->prt[i];

		if (p->slot > 31 || p->pin > 3 || p->gsi > 23) {
			return error_set(errp, EINVAL,
					 "MP table: bad PCI route slot %u pin %u gsi %u", p->slot,
					 p->pin, p->gsi);
		}
		/* PCI: level-triggered, active-low */
		e = mp_intsrc(e, MP_INT, 0x0F, MPTABLE_BUS_PCI, (uint8_t)((p->slot << 2) | p->pin),
			      ioapic_id, (uint8_t)p->gsi, &count);
	}
	/* Local interrupts: ExtINT on LINT0, NMI on LINT1, all processors. */
	e[0] = MP_ENTRY_LINT;
	e[1] = MP_EXTINT;
	e[4] = MPTABLE_BUS_ISA;
	e[6] = 0xFF;
	e[7] = 0;
	e += 8;
	e[0] = MP_ENTRY_LINT;
	e[1] = MP_NMI;
	e[4] = MPTABLE_BUS_ISA;
	e[6] = 0xFF;
	e[7] = 1;
	e += 8;
	count += 2;
	cfg_len = (size_t)(e - ct);

	memcpy(ct, "PCMP", 4);
	wr(ct + 4, cfg_len, 2);
	ct[6] = MP_SPEC_REV;
	memcpy(ct + 8, "VMMD    ", 8);
	memcpy(ct + 16, "VMMD PC     ", 12);
	wr(ct + 34, count, 2);
	wr(ct + 36, ACPI_LAPIC_ADDR, 4);
	ct[7] = acpi_checksum(ct, cfg_len);

	memcpy(fp, "_MP_", 4);
	wr(fp + 4, gpa + 16, 4);
	fp[8] = 1; /* length in 16-byte units */
	fp[9] = MP_SPEC_REV;
	fp[10] = acpi_checksum(fp, 16);
	return (int64_t)(16 + cfg_len);
}

int mptable_build(struct guest_mem *mem, const struct mptable_config *cfg, struct error **errp)
{
	void *p = guest_mem_ptr(mem, MPTABLE_BASE, MPTABLE_SIZE);
	int64_t r;

	if (!p) {
		return error_set(errp, ENOSPC,
				 "MP table: guest RAM does not cover 0x%llx-0x%llx for the table",
				 MPTABLE_BASE, MPTABLE_BASE + MPTABLE_SIZE - 1);
	}
	r = mptable_build_tables(p, MPTABLE_SIZE, MPTABLE_BASE, cfg, errp);
	return r < 0 ? (int)r : 0;
}
