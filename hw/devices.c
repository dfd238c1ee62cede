/*
 * The device registry: the order here is the realize order. Each helper
 * adds its device classes with one line (and, for a class instantiated per
 * disk or NIC, a wanted() filter on the driver name).
 *
 * Threads: constant data.
 */
#include "config.h"

#include <string.h>

#include "hw/platform/acpi.h"
#include "hw/devices.h"
#include "hw/pci/e1000.h"
#include "hw/platform/firmware.h"
#include "hw/pci/ide.h"
#include "hw/pci/pci.h"
#include "hw/platform/platform.h"
#include "hw/platform/acpi-hotplug.h"
#include "hw/isa/serial.h"
#include "hw/virtio/virtio-pci.h"

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

static bool want_virtio_blk(const struct vm_config *cfg, const void *item)
{
	const struct vm_disk_config *d = item;

	(void)cfg;
	return !d->driver || !strcmp(d->driver, "virtio-blk");
}

static bool want_virtio_net(const struct vm_config *cfg, const void *item)
{
	const struct vm_nic_config *n = item;

	(void)cfg;
	return !n->driver || !strcmp(n->driver, "virtio-net");
}

static bool want_virtio_rng(const struct vm_config *cfg, const void *item)
{
	(void)item;
	return cfg->rng;
}

static bool want_ide(const struct vm_config *cfg, const void *item)
{
	(void)item;
	for (unsigned i = 0; i < cfg->n_disks; i++) {
		if (ide_disk_driver(cfg->disks[i].driver)) {
			return true;
		}
	}
	return false;
}

static bool want_e1000(const struct vm_config *cfg, const void *item)
{
	const struct vm_nic_config *n = item;

	(void)cfg;
	return n->driver && !strcmp(n->driver, "e1000");
}

static bool want_firmware(const struct vm_config *cfg, const void *item)
{
	(void)item;
	return cfg->boot.firmware != NULL;
}

const struct device_entry device_table[] = {
	{&serial_class, DEVICE_ONCE, NULL},
	{&rtc_class, DEVICE_ONCE, NULL},
	{&i8042_class, DEVICE_ONCE, NULL},
	{&acpi_pm_class, DEVICE_ONCE, want_acpi},
	{&acpi_pcihp_class, DEVICE_ONCE, want_acpi},
	{&platform_tables_class, DEVICE_ONCE, NULL},
	{&debugcon_device, DEVICE_ONCE, want_debugcon},
	/* PCI: the host bridge first, then the devices on it */
	{&pci_host_class, DEVICE_ONCE, NULL},
	{&virtio_blk_class, DEVICE_PER_DISK, want_virtio_blk},
	{&virtio_net_class, DEVICE_PER_NIC, want_virtio_net},
	{&virtio_rng_class, DEVICE_ONCE, want_virtio_rng},
	{&ide_class, DEVICE_ONCE, want_ide},
	{&e1000_class, DEVICE_PER_NIC, want_e1000},
	/* Last: it describes the PCI devices above to the firmware (boot order, ROMs). */
	{&firmware_class, DEVICE_ONCE, want_firmware},
};

const unsigned device_table_size = ARRAY_SIZE(device_table);
