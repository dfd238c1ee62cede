/*
 * The device registry: the order here is the realize order. Each helper
 * adds its device classes with one line (and, for a class instantiated per
 * disk or NIC, a wanted() filter on the driver name).
 *
 * Threads: constant data.
 */
#include "config.h"

#include <string.h>

#include "hw/acpi.h"
#include "hw/devices.h"
#include "hw/platform.h"
#include "hw/serial.h"

static bool want_acpi(const struct vm_config *cfg, const void *item)
{
	(void)item;
	return cfg->acpi;
}

static bool want_debugcon(const struct vm_config *cfg, const void *item)
{
	(void)item;
	return cfg->debugcon != NULL;
}

const struct device_entry device_table[] = {
	{&serial_class, DEVICE_ONCE, NULL},	     {&rtc_class, DEVICE_ONCE, NULL},
	{&i8042_class, DEVICE_ONCE, NULL},	     {&acpi_pm_class, DEVICE_ONCE, want_acpi},
	{&platform_tables_class, DEVICE_ONCE, NULL}, {&debugcon_device, DEVICE_ONCE, want_debugcon},
};

const unsigned device_table_size = ARRAY_SIZE(device_table);
