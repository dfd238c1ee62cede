/*
 * The PCI host bridge as the ACPI tables (MCFG, _CRS, _PRT) and the MP
 * table describe it: the platform reads hw/pci/'s constants, so hw/pci/
 * needs nothing of hw/platform/.
 *
 * Threads: any (pure).
 */
#include "config.h"

#include <string.h>

#include "hw/pci/pci.h"
#include "hw/platform/acpi.h"
#include "hw/platform/platform.h"

void pci_acpi_info(struct acpi_pci_info *ret)
{
	unsigned slot, pin;

	memset(ret, 0, sizeof(*ret));
	ret->bus_start = 0;
	ret->bus_end = 255;
	ret->mmio32_base = PCI_MMIO32_BASE;
	ret->mmio32_len = PCI_MMIO32_END - PCI_MMIO32_BASE;
	ret->io_base = PCI_IO_BASE;
	ret->io_len = PCI_IO_END - PCI_IO_BASE;
	ret->ecam_base = PCI_ECAM_BASE;
	ret->hotplug = true; /* hw/platform/acpi-hotplug.c serves bus 0's slots */
	for (slot = 0; slot < PCI_SLOTS; slot++) {
		for (pin = 0; pin < 4 && ret->n_prt < ACPI_PRT_MAX; pin++) {
			struct acpi_prt_entry *e = &ret->prt[ret->n_prt++];

			e->slot = slot;
			e->pin = pin;
			e->gsi = pci_intx_gsi(slot, pin);
		}
	}
}
