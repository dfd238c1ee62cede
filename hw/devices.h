/*
 * The device registry: every device class, and the static, ordered table a
 * VM is built from (hw/devices.c, the only file that knows them all).
 * vm_new() realizes the entries in table order (one instance, or one per
 * disk or NIC the class serves: see struct device_class in hw/device.h)
 * and vm_destroy() unrealizes them in reverse.
 *
 * Threads: the table is constant; read from any thread.
 */
#pragma once

#include <stdbool.h>

#include "hw/device.h"

/* hw/isa/: fixed-port devices. */
extern const struct device_class serial_class;	 /* COM1 */
extern const struct device_class rtc_class;	 /* CMOS RTC */
extern const struct device_class i8042_class;	 /* keyboard controller (reset line) */
extern const struct device_class acpi_pm_class;	 /* ACPI PM block, unless acpi is off */
extern const struct device_class pvpanic_class;	 /* port 0x505, when pvpanic is set */
extern const struct device_class debugcon_class; /* port 0xE9, when debugcon is set */

/* hw/platform/: what firmware and the guest read. */
/* ACPI PCI hotplug controller (QEMU's i440fx interface at 0xae00), unless acpi is off. */
extern const struct device_class acpi_pcihp_class;
/* ACPI CPU hotplug controller (QEMU's interface at 0xaf00), when maxcpus > vcpus. */
extern const struct device_class acpi_cpuhp_class;
/* Writes the MP table, and the ACPI tables unless vm_config.acpi is false. */
extern const struct device_class platform_tables_class;
/*
 * Listed after every PCI device: does nothing unless cfg->boot.firmware is
 * set. The vCPUs of a firmware VM start from the architectural reset state
 * (CS:IP F000:FFF0, CS base 0xFFFF0000).
 */
extern const struct device_class firmware_class;

/* hw/pci/: the host bridge (before every PCI device) and plain PCI devices. */
extern const struct device_class pci_host_class;
/* One controller for all the IDE disks of the VM definition (none: not created). */
extern const struct device_class ide_class;
extern const struct device_class e1000_class; /* one per "e1000" NIC */

/* hw/virtio/: virtio devices (on the virtio-pci transport). */
extern const struct device_class virtio_blk_class; /* one per "virtio-blk" disk */
/* virtio-blk's hooks for block_resize (hw/hotplug.c): its node, and "its length changed". */
struct block_node;
struct block_node *virtio_blk_node(void *state);
void virtio_blk_resized(void *state);
extern const struct device_class virtio_net_class;     /* one per "virtio-net" NIC */
extern const struct device_class virtio_rng_class;     /* when rng is set */
extern const struct device_class virtio_balloon_class; /* when balloon is set */
extern const struct device_class virtio_mem_class;     /* one per "memory_devices" entry */
/*
 * The balloon's target: the guest should keep @bytes of its RAM (clamped to
 * its size); -EINVAL for 0. And what the guest reports it keeps. Control thread.
 */
int virtio_balloon_set_target(void *state, uint64_t bytes);
uint64_t virtio_balloon_actual(void *state);

/* hw/usb/: the xHCI controller with the USB devices (usb-storage disks, input devices). */
extern const struct device_class xhci_class;
/*
 * USB hotplug on the controller's bus "xhci.0" (hw/hotplug.c; control
 * thread, vCPUs quiesced, @state the xhci_class state). add: attach a new
 * device to @port (from xhci_hotplug_claim, which reads QEMU's "port":
 * "1".."4" or an integer; NULL: the next free port in QEMU's order),
 * announced to the guest with a Port Status Change; @bs (usb-storage) is a
 * reference the call takes over, also on failure. del: detach and free the device @id (-ENOENT if the
 * controller has none): the port reports the disconnect, transfers still
 * queued for it end with USB Transaction Error, its backend is released.
 */
struct usb_hotplug {
	const char *driver; /* "usb-storage", "usb-kbd" or "usb-tablet" */
	const char *id;
	struct block_node *bs;
	bool removable;
	const char *serial;
};
/*
 * The port a device_add takes (QEMU checks it before the device itself):
 * claim chooses it (errors as QEMU's); release puts a port whose device
 * failed to come up at the end of the free order, as QEMU does.
 */
int xhci_hotplug_claim(void *state, json_t *port, unsigned *ret_port, struct error **errp);
void xhci_hotplug_release(void *state, unsigned port);
int xhci_hotplug_add(void *state, const struct usb_hotplug *h, unsigned port, struct error **errp);
int xhci_hotplug_del(void *state, const char *id, bool *ret_storage);
bool xhci_has_device(void *state, const char *id);

/* The table, in realize order. */
extern const struct device_class *const device_table[];
extern const unsigned device_table_size;

/*
 * The "driver" values the VM definition accepts for disks (@kind
 * DEVICE_PER_DISK) or NICs (DEVICE_PER_NIC), in table order (the first is
 * the default), from the classes that serve them. Fills @out with at most
 * @max - 1 names and a NULL; returns the count.
 */
unsigned device_class_drivers(enum device_instances kind, const char **out, unsigned max);
/* Whether a VM with @cfg gets an instance of @cls for @item (see device_class.wanted). */
bool device_wanted(const struct device_class *cls, const struct vm_config *cfg, const void *item);
/* Whether @cls answers to @driver (NULL: the default driver of its kind). */
bool device_class_serves(const struct device_class *cls, const char *driver);
