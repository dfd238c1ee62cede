/*
 * QEMU's memory-device and QOM commands: qom-get, qom-set (virtio-mem's
 * requested-size, the balloon's statistics), query-memory-devices and
 * query-memory-size-summary. The work is in hw/qom.c and the device
 * models; this file finds the live VM and keeps the persisted definition
 * in step with a new requested-size (a restart asks for the same size).
 * Control thread only.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "daemon/qmp.h"
#include "daemon/registry.h"

static struct vm *live_vm(struct monitor_request *req, struct error **errp)
{
	struct registry_vm *rv = req->vm;

	if (!rv->vm) {
		error_set_class(errp, ERROR_CLASS_DEVICE_NOT_ACTIVE, ENODEV,
				"VM '%s' is not running; start it with vm-start", rv->name);
		return NULL;
	}
	return rv->vm;
}

int qmp_qom_get(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct vm *vm = live_vm(req, errp);

	if (!vm) {
		return -ENODEV;
	}
	*ret = vm_qom_get(vm, json_string_value(json_object_get(args, "path")),
			  json_string_value(json_object_get(args, "property")), errp);
	return *ret ? 0 : -ENOENT;
}

/* The id of a memory device of @rv's definition that @path names, or NULL. */
static const char *memdev_id(struct registry_vm *rv, const char *path)
{
	static const char prefix[] = "/machine/peripheral/";

	if (strncmp(path, prefix, strlen(prefix)) == 0) {
		path += strlen(prefix);
	}
	for (unsigned i = 0; i < rv->cfg->n_memdevs; i++) {
		if (strcmp(rv->cfg->memdevs[i].id, path) == 0) {
			return rv->cfg->memdevs[i].id;
		}
	}
	return NULL;
}

static void memdev_written(void *opaque)
{
	monitor_deferred_done(opaque, 0, NULL, NULL);
}

/* A memory device's new requested-size: answered once the definition has it. */
int qmp_qom_set(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct vm *vm = live_vm(req, errp);
	const char *path = json_string_value(json_object_get(args, "path"));
	const char *prop = json_string_value(json_object_get(args, "property"));
	json_t *value = json_object_get(args, "value");
	struct monitor_deferred *d;
	const char *id;
	int r;

	if (!vm) {
		return -ENODEV;
	}
	r = vm_qom_set(vm, path, prop, value, errp);
	if (r < 0 || strcmp(prop, "requested-size") != 0 || !(id = memdev_id(req->vm, path))) {
		return r;
	}
	d = monitor_defer(req);
	if (d && registry_memdev_resized(req->vm, id, (uint64_t)json_integer_value(value),
					 memdev_written, d)) {
		return MONITOR_DEFERRED;
	}
	monitor_deferred_cancel(d);
	return 0;
}

int qmp_query_memory_devices(struct monitor_request *req, json_t *args, json_t **ret,
			     struct error **errp)
{
	struct vm *vm = live_vm(req, errp);

	if (!vm) {
		return -ENODEV;
	}
	*ret = vm_query_memory_devices(vm);
	return *ret ? 0 : error_set(errp, ENOMEM, "out of memory");
}

int qmp_query_memory_size_summary(struct monitor_request *req, json_t *args, json_t **ret,
				  struct error **errp)
{
	struct vm *vm = live_vm(req, errp);

	if (!vm) {
		return -ENODEV;
	}
	*ret = vm_query_memory_size_summary(vm);
	return *ret ? 0 : error_set(errp, ENOMEM, "out of memory");
}
