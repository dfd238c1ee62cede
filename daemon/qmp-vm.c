/*
 * The daemon's commands for the monitor (monitor/ is the protocol library;
 * it calls these through the table below): vm-create, vm-start, vm-destroy,
 * vm-delete and query-vms (main socket only) here, the VM commands in
 * qmp-run.c. req->ctx is the registry. Control thread only.
 */
#include "config.h"

#include <errno.h>

#include "daemon/qmp.h"
#include "daemon/registry.h"

static struct registry_vm *find(struct monitor_request *req, json_t *args, struct error **errp)
{
	const char *name = json_string_value(json_object_get(args, "vm"));
	struct registry_vm *rv = registry_find(req->ctx, name);

	if (!rv) {
		error_set_class(errp, ERROR_CLASS_DEVICE_NOT_FOUND, ENOENT,
				"VM '%s' does not exist", name);
	}
	return rv;
}

/* A worker-thread operation ended: answer the client that asked for it. */
static void answer(void *opaque, struct registry_vm *rv, int r, struct error *err)
{
	monitor_deferred_done(opaque, r, NULL, err);
}

/* vm-create with "start": answer with the VmInfo, or delete the definition. */
static void create_started(void *opaque, struct registry_vm *rv, int r, struct error *err)
{
	json_t *info = NULL;

	if (r < 0) {
		/* vm-create with "start" is all or nothing. */
		registry_delete(rv, true, NULL, NULL, NULL);
	} else {
		info = registry_vm_info(rv);
	}
	monitor_deferred_done(opaque, r, info, err);
}

/* Defer the answer and run @start; an immediate failure is answered now. */
static int deferred(struct monitor_request *req, struct registry_vm *rv, registry_done_fn done,
		    int (*op)(struct registry_vm *rv, registry_done_fn done, void *opaque,
			      struct error **errp),
		    struct error **errp)
{
	struct monitor_deferred *d = monitor_defer(req);
	int r;

	if (!d) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	r = op(rv, done, d, errp);
	if (r < 0) {
		monitor_deferred_cancel(d);
		return r;
	}
	return MONITOR_DEFERRED;
}

static int start_op(struct registry_vm *rv, registry_done_fn done, void *opaque,
		    struct error **errp)
{
	return registry_start_async(rv, done, opaque, errp);
}

static int destroy_op(struct registry_vm *rv, registry_done_fn done, void *opaque,
		      struct error **errp)
{
	return registry_destroy_async(rv, "host-qmp-quit", done, opaque, errp);
}

static int force_delete_op(struct registry_vm *rv, registry_done_fn done, void *opaque,
			   struct error **errp)
{
	/* Only called for a running VM: 1 (done answers) or an error. */
	int r = registry_delete(rv, true, done, opaque, errp);

	return r < 0 ? r : 0;
}

/*
 * The lifecycle commands answer when their work is done, but that work
 * (opening disks, KVM setup, joining threads) runs on a worker thread:
 * other clients are served meanwhile (issue 14).
 */
int qmp_vm_create(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct registry_vm *rv;
	int r;

	r = registry_create(req->ctx, args, &rv, errp);
	if (r < 0) {
		return r;
	}
	if (json_is_true(json_object_get(args, "start"))) {
		r = deferred(req, rv, create_started, start_op, errp);
		if (r < 0) {
			registry_delete(rv, true, NULL, NULL, NULL);
		}
		return r;
	}
	*ret = registry_vm_info(rv);
	return 0;
}

int qmp_vm_start(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct registry_vm *rv = find(req, args, errp);

	return rv ? deferred(req, rv, answer, start_op, errp) : -ENOENT;
}

int qmp_vm_destroy(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct registry_vm *rv = find(req, args, errp);

	return rv ? deferred(req, rv, answer, destroy_op, errp) : -ENOENT;
}

int qmp_vm_delete(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct registry_vm *rv = find(req, args, errp);

	if (!rv) {
		return -ENOENT;
	}
	if (rv->vm && json_is_true(json_object_get(args, "force"))) {
		return deferred(req, rv, answer, force_delete_op, errp);
	}
	return registry_delete(rv, false, NULL, NULL, errp);
}

int qmp_query_vms(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	json_t *name = json_object_get(args, "vm");
	struct registry_vm *rv;

	if (!name) {
		*ret = registry_query(req->ctx);
		return 0;
	}
	rv = find(req, args, errp);
	if (!rv) {
		return -ENOENT;
	}
	*ret = json_pack("[o]", registry_vm_info(rv));
	return 0;
}

void *qmp_find_vm(void *reg, const char *name)
{
	return registry_find(reg, name);
}

/* After the monitor's own commands (query-commands order). */
const struct monitor_command qmp_commands[] = {
	{"query-status", qmp_query_status},
	{"stop", qmp_stop},
	{"cont", qmp_cont},
	{"system_reset", qmp_system_reset},
	{"system_powerdown", qmp_system_powerdown},
	{"quit", qmp_quit},
	{"query-block", qmp_query_block},
	{"query-blockstats", qmp_query_blockstats},
	{"send-key", qmp_send_key},
	{"x-query-usb", qmp_x_query_usb},
	{"input-send-event", qmp_input_send_event},
	{"vm-create", qmp_vm_create},
	{"vm-start", qmp_vm_start},
	{"vm-destroy", qmp_vm_destroy},
	{"vm-delete", qmp_vm_delete},
	{"query-vms", qmp_query_vms},
};
const size_t qmp_n_commands = ARRAY_SIZE(qmp_commands);
