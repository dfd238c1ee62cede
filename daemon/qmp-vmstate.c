/*
 * vm-save and vm-restore (main socket only; docs/vmstate.md). vm-save
 * replies at once: the save runs on a worker thread (daemon/registry.c)
 * and ends with VM_SAVE_COMPLETED. vm-restore builds the VM on a worker
 * and answers when it stands (a deferred reply). req->ctx is the
 * registry. Control thread only.
 */
#include "config.h"

#include <errno.h>

#include "daemon/qmp.h"
#include "daemon/registry.h"

int qmp_vm_save(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	const char *name = json_string_value(json_object_get(args, "vm"));
	struct registry_vm *rv = registry_find(req->ctx, name);

	if (!rv) {
		return error_set_class(errp, ERROR_CLASS_DEVICE_NOT_FOUND, ENOENT,
				       "VM '%s' does not exist", name);
	}
	return registry_save(rv, json_string_value(json_object_get(args, "path")),
			     json_is_true(json_object_get(args, "stop")), errp);
}

/* The restore ran on a worker: answer with the VmInfo. */
static void restored(void *opaque, struct registry_vm *rv, int r, struct error *err)
{
	monitor_deferred_done(opaque, r, r < 0 ? NULL : registry_vm_info(rv), err);
}

int qmp_vm_restore(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct monitor_deferred *d = monitor_defer(req);
	int r;

	if (!d) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	r = registry_restore_async(req->ctx, json_string_value(json_object_get(args, "path")),
				   json_string_value(json_object_get(args, "name")),
				   json_object_get(args, "disks"), json_object_get(args, "nics"),
				   json_is_true(json_object_get(args, "paused")), restored, d,
				   errp);
	if (r < 0) {
		monitor_deferred_cancel(d);
		return r;
	}
	return MONITOR_DEFERRED;
}
