/*
 * QEMU's "modern" ACPI CPU hotplug register block (docs/specs/
 * acpi_cpu_hotplug.rst, hw/acpi/cpu.c) at ACPI_CPUHP_BASE, one slot per
 * possible vCPU (selector = APIC ID, below maxcpus); GPE0 bit 2 tells the
 * guest. The DSDT's \_SB.CPUS objects that drive it are written by
 * hw/platform/acpi-cpuhp-aml.c. The hotplug side (hw/cpu-hotplug.c) reports
 * plugs and removal requests here; the guest's eject and its _OST reports
 * come back through the handlers.
 *
 * Threads: register accesses on vCPU threads; the other functions on any
 * thread. c->lock protects the registers; the handlers are called without it.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct acpi_cpuhp;

#define ACPI_CPUHP_BASE 0xAF00
#define ACPI_CPUHP_LEN 12    /* the legacy bitmap QEMU also decodes here is 32 bytes */
#define ACPI_CPUHP_SEL 0x0   /* write: CPU selector (DWORD); read: command data 2 */
#define ACPI_CPUHP_FLAGS 0x4 /* status (read) / control (write), one byte */
#define ACPI_CPUHP_CMD 0x5   /* command (write, one byte) */
#define ACPI_CPUHP_DATA 0x8  /* command data (DWORD) */

/* Status/control bits of ACPI_CPUHP_FLAGS. */
#define ACPI_CPUHP_ENABLED 0x01
#define ACPI_CPUHP_INSERT 0x02
#define ACPI_CPUHP_REMOVE 0x04
#define ACPI_CPUHP_EJECT 0x08

/* Commands. */
#define ACPI_CPUHP_CMD_NEXT_EVENT 0
#define ACPI_CPUHP_CMD_OST_EVENT 1
#define ACPI_CPUHP_CMD_OST_STATUS 2
#define ACPI_CPUHP_CMD_GET_ID 3

/* _OST source events and status codes (ACPI 6.x §6.3.5) the hotplug side checks. */
#define ACPI_OST_EJECT_REQUEST 0x03
#define ACPI_OST_EJECT_PROCESSING 0x103
#define ACPI_OST_SUCCESS 0
#define ACPI_OST_FAILURE 1
#define ACPI_OST_IN_PROGRESS 0x80

/*
 * The guest ejected vCPU @cpu (control bit 3), or reported with _OST
 * (@event, @status); called on the vCPU thread that wrote the register.
 */
struct acpi_cpuhp_handlers {
	void (*eject)(void *opaque, unsigned cpu);
	void (*ost)(void *opaque, unsigned cpu, uint32_t event, uint32_t status);
};
void acpi_cpuhp_set_handlers(struct acpi_cpuhp *c, const struct acpi_cpuhp_handlers *h,
			     void *opaque);

/* vCPU @cpu was hot-added: enabled, insert event, GPE0 bit 2. */
void acpi_cpuhp_plug(struct acpi_cpuhp *c, unsigned cpu);
/* Ask the guest to remove @cpu: remove event, GPE0 bit 2 (again if repeated). */
void acpi_cpuhp_unplug_request(struct acpi_cpuhp *c, unsigned cpu);
/* The guest switched to this interface from QEMU's legacy one (removals need it). */
bool acpi_cpuhp_modern(struct acpi_cpuhp *c);
/* @cpu is gone (after its eject): no longer enabled, no events. */
void acpi_cpuhp_unplugged(struct acpi_cpuhp *c, unsigned cpu);
