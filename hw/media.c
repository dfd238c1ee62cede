/*
 * Removable media of a running VM with QEMU's commands and words (see
 * include/vmmd/vm.h): the tray of a drive is opened (the guest's lock
 * honoured unless forced), its medium removed or replaced, the tray
 * closed. The drives are the device table's (device_class.tray and the
 * hooks after it: ide-cd); a disk that is not removable gets QEMU's "not
 * removable", an unknown name DeviceNotFound.
 *
 * Threads: control thread, under vm_devices_lock(), which also keeps
 * blockdev-add's node table (hw/hotplug.c) still.
 */
#include "config.h"

#include <errno.h>

#include "hw/core/vm-devices.h"
#include "hw/device.h"
#include "hw/hotplug.h"
#include "vmmd/block.h"
#include "vmmd/vm.h"

/* The device with removable drive @id, its tray in *st; NULL with QEMU's error. */
static struct vm_device *find_drive(struct vm *vm, const char *id, struct vm_tray *st,
				    struct error **errp)
{
	for (unsigned i = 0; i < vm_devices_count(vm); i++) {
		struct vm_device *d = vm_devices_at(vm, i);

		if (d->cls->tray && d->cls->tray(d->state, id, st) == 0) {
			return d;
		}
	}
	if (vm_disk_node(vm, id)) {
		error_set(errp, ENOTSUP, "Device '%s' is not removable", id);
	} else {
		error_set_class(errp, ERROR_CLASS_DEVICE_NOT_FOUND, ENOENT, "Device '%s' not found",
				id);
	}
	return NULL;
}

int vm_media_state(struct vm *vm, const char *id, struct vm_tray *st, struct error **errp)
{
	int r;

	vm_devices_lock(vm);
	r = find_drive(vm, id, st, errp) ? 0 : -ENOENT;
	vm_devices_unlock(vm);
	return r;
}

int vm_media_open_tray(struct vm *vm, const char *id, bool force, struct error **errp)
{
	struct vm_tray st;
	struct vm_device *d;
	int r;

	vm_devices_lock(vm);
	d = find_drive(vm, id, &st, errp);
	r = d ? d->cls->tray_open(d->state, id, force, NULL) : -ENOENT;
	if (r == -EBUSY) {
		r = error_set(errp, EINPROGRESS,
			      "Device '%s' is locked and force was not specified, wait for tray to "
			      "open and try again",
			      id);
	}
	vm_devices_unlock(vm);
	return r;
}

int vm_media_close_tray(struct vm *vm, const char *id, struct error **errp)
{
	struct vm_tray st;
	struct vm_device *d;

	vm_devices_lock(vm);
	d = find_drive(vm, id, &st, errp);
	if (d) {
		d->cls->tray_close(d->state, id);
	}
	vm_devices_unlock(vm);
	return d ? 0 : -ENOENT;
}

int vm_media_remove(struct vm *vm, const char *id, struct error **errp)
{
	struct vm_tray st;
	struct vm_device *d;
	int r = 0;

	vm_devices_lock(vm);
	d = find_drive(vm, id, &st, errp);
	if (!d) {
		r = -ENOENT;
	} else if (!st.open) {
		r = error_set(errp, EBUSY, "Tray of device '%s' is not open", id);
	} else if (st.bs) {
		r = d->cls->set_medium(d->state, id, NULL, errp);
		if (r == 0) {
			hotplug_node_release(vm, st.bs); /* a blockdev-add node is free again */
		}
	}
	vm_devices_unlock(vm);
	return r;
}

/* Put @bs (a reference taken over) or node @node_name into the open tray of @id. */
static int insert(struct vm *vm, const char *id, struct block_node *bs, const char *node_name,
		  struct error **errp)
{
	struct block_node *claimed = NULL;
	struct vm_tray st;
	struct vm_device *d = NULL;
	int r = 0;

	vm_devices_lock(vm);
	if (node_name) {
		/* QEMU looks for the node first */
		r = hotplug_node_claim(vm, node_name, id, &bs, errp);
		claimed = bs;
	}
	if (r == 0) {
		d = find_drive(vm, id, &st, errp);
		r = d ? 0 : -ENOENT;
	}
	if (r == 0 && !st.open) {
		r = error_set(errp, EBUSY, "Tray of the device is not open");
	} else if (r == 0 && st.bs) {
		r = error_set(errp, EEXIST, "There already is a medium in the device");
	}
	if (r == 0) {
		r = d->cls->set_medium(d->state, id, TAKE_PTR(bs), errp);
	}
	if (r < 0 && claimed) {
		hotplug_node_release(vm, claimed);
	}
	vm_devices_unlock(vm);
	block_unref(bs);
	return r;
}

int vm_media_insert_node(struct vm *vm, const char *id, const char *node_name, struct error **errp)
{
	return insert(vm, id, NULL, node_name, errp);
}

int vm_media_insert(struct vm *vm, const char *id, struct block_node *bs, struct error **errp)
{
	return insert(vm, id, bs, NULL, errp);
}
