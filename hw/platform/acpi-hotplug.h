/*
 * QEMU's ACPI PCI hotplug register block for bus 0 (docs/specs/
 * acpi_pci_hotplug.rst, hw/acpi/pcihp.c), at ACPI_PCIHP_BASE; the DSDT's
 * slot objects and methods that drive it are written by hw/platform/acpi.c. The
 * hotplug side (device_add/device_del) tells the guest through this block;
 * the guest's eject comes back through the eject handler.
 *
 * Threads: register accesses on vCPU threads; the other functions on any
 * thread. hp->lock protects the registers; the eject handler is called
 * without it.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct acpi_pcihp;

/*
 * Called when the guest ejects @slot (a B0EJ write), or for each slot with
 * a pending removal when the VM resets (QEMU completes them then). Runs on
 * a vCPU thread (eject) or in the device's reset (vCPUs paused); it must
 * not call back into this block's register accessors.
 */
typedef void acpi_pcihp_eject_fn(void *opaque, unsigned slot);
void acpi_pcihp_set_eject_handler(struct acpi_pcihp *hp, acpi_pcihp_eject_fn *fn, void *opaque);

/* A device was hot-added at @slot: PCIU bit, GPE0 bit 1 (SCI if enabled). */
void acpi_pcihp_plug(struct acpi_pcihp *hp, unsigned slot);
/*
 * Ask the guest to remove @slot: PCID bit, GPE0 bit 1. Repeating it
 * re-raises the GPE (the guest may have missed the first one).
 */
void acpi_pcihp_unplug_request(struct acpi_pcihp *hp, unsigned slot);
/* Whether @slot's device may be removed (the RMV register); default: yes, but slot 0. */
void acpi_pcihp_set_removable(struct acpi_pcihp *hp, unsigned slot, bool removable);
/* The PCID bits: slots with a removal request the guest has not ejected. */
uint32_t acpi_pcihp_pending_removals(struct acpi_pcihp *hp);
