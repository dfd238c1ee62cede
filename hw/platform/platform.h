/*
 * The PC platform's device classes (hw/devices.c lists them): the ACPI and
 * MP tables, the i8042 keyboard controller and the CMOS RTC. The UART is
 * in hw/isa/serial.h and the ACPI PM block in hw/platform/acpi.h.
 *
 * Threads: constant data.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct device_class;

/* Writes the MP table, and the ACPI tables unless vm_config.acpi is false. */
extern const struct device_class platform_tables_class;
extern const struct device_class i8042_class;
extern const struct device_class rtc_class;

/* Whether register A's UIP bit reads 1 @nsec into a second, given register B (test hook). */
bool rtc_update_in_progress(long nsec, uint8_t reg_b);
