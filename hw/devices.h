/*
 * The static, ordered registry of device classes a VM is built from
 * (hw/devices.c). vm_new() realizes the entries in table order (one
 * instance, or one per configured disk or NIC the entry accepts) and
 * vm_destroy() unrealizes them in reverse.
 *
 * Threads: the table is constant; read from any thread.
 */
#pragma once

#include <stdbool.h>

#include "hw/machine.h"

enum device_instances {
	DEVICE_ONCE,	 /* cfg passed to realize: NULL */
	DEVICE_PER_DISK, /* cfg: const struct vm_disk_config * */
	DEVICE_PER_NIC,	 /* cfg: const struct vm_nic_config * */
};

struct device_entry {
	const struct device_class *cls;
	enum device_instances each;
	/*
	 * Whether this VM gets the device (for DEVICE_ONCE, @item is NULL;
	 * otherwise the disk or NIC). NULL means always.
	 */
	bool (*wanted)(const struct vm_config *cfg, const void *item);
};

extern const struct device_entry device_table[];
extern const unsigned device_table_size;

/* The device classes, one per device model file. */
extern const struct device_class debugcon_device;
