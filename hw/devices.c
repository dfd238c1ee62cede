/*
 * The device registry: the order here is the realize order. A new device
 * model adds its class with one line here (and its extern in devices.h);
 * which VMs get it is said by the class itself (.each, .drivers, .wanted).
 *
 * Threads: constant data.
 */
#include "config.h"

#include <string.h>

#include "hw/devices.h"

const struct device_class *const device_table[] = {
	&serial_class,
	&rtc_class,
	&i8042_class,
	&acpi_pm_class,
	&acpi_pcihp_class,
	&acpi_cpuhp_class,
	&platform_tables_class,
	&debugcon_class,
	&pvpanic_class,
	/* PCI: the host bridge first, then the devices on it */
	&pci_host_class,
	&virtio_blk_class,
	&virtio_net_class,
	&virtio_rng_class,
	&virtio_balloon_class,
	&virtio_mem_class,
	&ide_class,
	&e1000_class,
	&xhci_class, /* for usb-storage disks and input devices */
	/* Last: it describes the PCI devices above to the firmware (boot order, ROMs). */
	&firmware_class,
};

const unsigned device_table_size = ARRAY_SIZE(device_table);

/* The disk or NIC kind a class serves, or DEVICE_ONCE for none. */
static enum device_instances serves(const struct device_class *cls)
{
	return cls->each == DEVICE_ONCE_FOR_DISKS ? DEVICE_PER_DISK : cls->each;
}

unsigned device_class_drivers(enum device_instances kind, const char **out, unsigned max)
{
	unsigned n = 0;

	for (unsigned i = 0; i < device_table_size; i++) {
		const struct device_class *cls = device_table[i];

		if (kind == DEVICE_ONCE || serves(cls) != kind) {
			continue;
		}
		if (!cls->drivers) {
			if (n + 1 < max) {
				out[n++] = cls->name;
			}
			continue;
		}
		for (const char *const *d = cls->drivers; *d; d++) {
			if (n + 1 < max) {
				out[n++] = *d;
			}
		}
	}
	if (max) {
		out[n] = NULL;
	}
	return n;
}

bool device_class_serves(const struct device_class *cls, const char *driver)
{
	const char *dflt[2];

	if (serves(cls) == DEVICE_ONCE) {
		return false;
	}
	if (!driver) {
		device_class_drivers(serves(cls), dflt, 2);
		driver = dflt[0];
		if (!driver) {
			return false;
		}
	}
	if (!cls->drivers) {
		return strcmp(cls->name, driver) == 0;
	}
	for (const char *const *d = cls->drivers; *d; d++) {
		if (strcmp(*d, driver) == 0) {
			return true;
		}
	}
	return false;
}

bool device_wanted(const struct device_class *cls, const struct vm_config *cfg, const void *item)
{
	if (cls->wanted) {
		return cls->wanted(cfg, item);
	}
	switch (cls->each) {
	case DEVICE_PER_DISK:
		return device_class_serves(cls, ((const struct vm_disk_config *)item)->driver);
	case DEVICE_PER_NIC:
		return device_class_serves(cls, ((const struct vm_nic_config *)item)->driver);
	case DEVICE_ONCE_FOR_DISKS:
		for (unsigned i = 0; i < cfg->n_disks; i++) {
			if (cfg->disks[i].driver &&
			    device_class_serves(cls, cfg->disks[i].driver)) {
				return true;
			}
		}
		return false;
	case DEVICE_ONCE:
	default:
		return true;
	}
}
