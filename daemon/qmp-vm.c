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

int qmp_vm_create(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct registry_vm *rv;
	int r;

	r = registry_create(req->ctx, args, &rv, errp);
	if (r < 0) {
		return r;
	}
	*ret = registry_vm_info(rv);
	return 0;
}

int qmp_vm_start(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct registry_vm *rv = find(req, args, errp);

	return rv ? registry_start(rv, errp) : -ENOENT;
}

int qmp_vm_destroy(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct registry_vm *rv = find(req, args, errp);

	return rv ? registry_destroy(rv, "host-qmp-quit", errp) : -ENOENT;
}

int qmp_vm_delete(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct registry_vm *rv = find(req, args, errp);

	return rv ? registry_delete(rv, json_is_true(json_object_get(args, "force")), errp)
		  : -ENOENT;
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
	{"vm-create", qmp_vm_create},
	{"vm-start", qmp_vm_start},
	{"vm-destroy", qmp_vm_destroy},
	{"vm-delete", qmp_vm_delete},
	{"query-vms", qmp_query_vms},
};
const size_t qmp_n_commands = ARRAY_SIZE(qmp_commands);
