/*
 * Hotplug inside hw/ (hw/hotplug.c, beside the device registry it uses): the per-VM table of block nodes (blockdev-add) and
 * network backends (netdev_add), and the completion of guest ejects. The
 * commands themselves are in include/vmmd/vm.h (vm_device_add, ...).
 *
 * Threads: control thread, except hotplug_eject_cb (see acpi-hotplug.h).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"

struct vm;
struct hotplug;

/* Called by vm_new after the devices are realized, and by vm_teardown after they are gone. */
int hotplug_new(struct vm *vm, struct hotplug **ret, struct error **errp);
void hotplug_free(struct hotplug *hp);
/*
 * Wait for the drains of ejected disks still running on workers (they
 * use the device and the VM's I/O thread): vm_teardown calls it before
 * unrealizing the devices.
 */
void hotplug_wait_drains(struct hotplug *hp);
/*
 * After vm_restore plugged the saved vCPUs again: take their ids back
 * (control thread); fails only out of memory, and the restore with it.
 */
int hotplug_restored(struct hotplug *hp, struct error **errp);
struct vm_device;
/* Free what hotplug keeps in a struct vm_device (its id, node and netdev names). */
void hotplug_device_forget(struct vm_device *d);
/*
 * blockdev-insert-medium's node (hw/media.c), with vm_devices_lock() held:
 * the open node @name that nothing uses, as a new reference in *ret, now
 * used by drive @user; QEMU's "Node '...' not found" / "is already in
 * use" otherwise. hotplug_node_release: the node whose image is @bs (if
 * there is one) is unused again.
 */
struct block_node;
int hotplug_node_claim(struct vm *vm, const char *name, const char *user, struct block_node **ret,
		       struct error **errp);
void hotplug_node_release(struct vm *vm, struct block_node *bs);
