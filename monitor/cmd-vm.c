/*
 * The daemon's own commands: vm-create, vm-start, vm-destroy, vm-delete and
 * query-vms (main socket only). Control thread only.
 */
#include "config.h"

#include <errno.h>

#include "daemon/registry.h"
#include "monitor/monitor-int.h"

static struct registry_vm *find(struct monitor_request *req, json_t *args, struct error **errp)
{
	const char *name = json_string_value(json_object_get(args, "vm"));
	struct registry_vm *rv = registry_find(req->mon->reg, name);

	if (!rv) {
		error_set_class(errp, ERROR_CLASS_DEVICE_NOT_FOUND, ENOENT,
				"VM '%s' does not exist", name);
	}
	return rv;
}

int cmd_vm_create(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct registry_vm *rv;
	int r;

	r = registry_create(req->mon->reg, args, &rv, errp);
	if (r < 0) {
		return r;
	}
	*ret = registry_vm_info(rv);
	return 0;
}

int cmd_vm_start(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct registry_vm *rv = find(req, args, errp);

	return rv ? registry_start(rv, errp) : -ENOENT;
}

int cmd_vm_destroy(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct registry_vm *rv = find(req, args, errp);

	return rv ? registry_destroy(rv, "host-qmp-quit", errp) : -ENOENT;
}

int cmd_vm_delete(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct registry_vm *rv = find(req, args, errp);

	return rv ? registry_delete(rv, json_is_true(json_object_get(args, "force")), errp)
		  : -ENOENT;
}

int cmd_query_vms(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	json_t *name = json_object_get(args, "vm");
	struct registry_vm *rv;

	if (!name) {
		*ret = registry_query(req->mon->reg);
		return 0;
	}
	rv = find(req, args, errp);
	if (!rv) {
		return -ENOENT;
	}
	*ret = json_pack("[o]", registry_vm_info(rv));
	return 0;
}
