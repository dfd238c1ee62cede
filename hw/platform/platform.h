/*
 * What hw/platform/ offers the rest of hw/ beyond its headers' own topics
 * (the device classes are in hw/devices.h).
 *
 * Threads: any.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct acpi_pci_info;

/* The PCI host bridge as ACPI (MCFG, _CRS, _PRT) and the MP table describe it. */
void pci_acpi_info(struct acpi_pci_info *ret);

/* Whether register A's UIP bit reads 1 @nsec into a second, given register B (test hook). */
bool rtc_update_in_progress(long nsec, uint8_t reg_b);
