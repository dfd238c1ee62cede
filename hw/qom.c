/*
 * QEMU's QOM view of a VM's devices, as far as vmmd has one: qom-get and
 * qom-set on "/machine/peripheral/<id>" (or the bare id, as QEMU resolves
 * a partial path) reach the device's qom_get/qom_set hooks (virtio-mem's
 * requested-size, the balloon's guest-stats); query-memory-devices and
 * query-memory-size-summary collect the memory devices' answers. Shapes,
 * error classes and messages are QEMU 7.2's (recorded in
 * tests/functional/memory/).
 *
 * Threads: control thread, under vm_devices_lock() (the device table does
 * not change underneath).
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "hw/core/vm-devices.h"
#include "hw/device.h"
#include "hw/devices.h"
#include "vmmd/vm.h"

#define PERIPHERAL "/machine/peripheral/"

/* The device a QOM path names, or NULL with QEMU's DeviceNotFound. */
static struct vm_device *resolve(struct vm *vm, const char *path, struct error **errp)
{
	const char *id = path;

	if (strncmp(path, PERIPHERAL, strlen(PERIPHERAL)) == 0) {
		id = path + strlen(PERIPHERAL);
	} else if (path[0] == '/') {
		id = NULL; /* other absolute paths: nothing vmmd models */
	}
	for (unsigned i = 0; id && id[0] && !strchr(id, '/') && i < vm_devices_count(vm); i++) {
		struct vm_device *d = vm_devices_at(vm, i);
		const char *did = d->id ? d->id : d->cls->qom_id;

		if (did && strcmp(did, id) == 0 && !d->unplug_pending) {
			return d;
		}
	}
	error_set_class(errp, ERROR_CLASS_DEVICE_NOT_FOUND, ENOENT, "Device '%s' not found", path);
	return NULL;
}

json_t *vm_qom_get(struct vm *vm, const char *path, const char *property, struct error **errp)
{
	struct vm_device *d;
	json_t *v = NULL;

	vm_devices_lock(vm);
	d = resolve(vm, path, errp);
	if (d && d->cls->qom_get) {
		v = d->cls->qom_get(d->state, property, errp);
	} else if (d) {
		error_set(errp, ENOENT, "Property '%s.%s' not found", d->cls->name, property);
	}
	vm_devices_unlock(vm);
	return v;
}

int vm_qom_set(struct vm *vm, const char *path, const char *property, json_t *value,
	       struct error **errp)
{
	struct vm_device *d;
	int r = -ENOENT;

	vm_devices_lock(vm);
	d = resolve(vm, path, errp);
	if (d && d->cls->qom_set) {
		r = d->cls->qom_set(d->state, property, value, errp);
	} else if (d) {
		error_set(errp, ENOENT, "Property '%s.%s' not found", d->cls->name, property);
	}
	vm_devices_unlock(vm);
	return r;
}

json_t *vm_query_memory_devices(struct vm *vm)
{
	json_t *list = json_array();

	vm_devices_lock(vm);
	for (unsigned i = 0; list && i < vm_devices_count(vm); i++) {
		struct vm_device *d = vm_devices_at(vm, i);

		if (d->cls->query_memory) {
			json_array_append_new(list, d->cls->query_memory(d->state));
		}
	}
	vm_devices_unlock(vm);
	return list;
}

json_t *vm_query_memory_size_summary(struct vm *vm)
{
	uint64_t plugged = 0;

	vm_devices_lock(vm);
	for (unsigned i = 0; i < vm_devices_count(vm); i++) {
		struct vm_device *d = vm_devices_at(vm, i);

		if (d->cls->plugged_memory) {
			plugged += d->cls->plugged_memory(d->state);
		}
	}
	vm_devices_unlock(vm);
	/* QEMU 7.2's pc machine reports plugged-memory with or without maxmem */
	return json_pack("{s:I, s:I}", "base-memory", (json_int_t)vm_get_config(vm)->memory,
			 "plugged-memory", (json_int_t)plugged);
}
