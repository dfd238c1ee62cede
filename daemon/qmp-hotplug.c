/*
 * Hotplug commands with QEMU's names and argument shapes: blockdev-add,
 * blockdev-del, block_resize, netdev_add, netdev_del, device_add,
 * device_del, balloon, query-balloon; and set_link, a NIC's link. The work
 * is in hw/hotplug.c (vm_device_add and friends); this file finds the live
 * VM, resolves getfd names, keeps the persisted definition in step with
 * device_add (device removals are followed when DEVICE_DELETED arrives,
 * daemon/registry.c), and answers; blockdev-add opens its image,
 * blockdev-del closes it and block_resize truncates it on a worker thread,
 * and answer later. blockdev-add, blockdev-del, block_resize, device_add
 * and device_del are refused (EBUSY) while an external snapshot switches
 * the VM's disks.
 * Control thread only; device_del returns before the guest has ejected.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "daemon/blockjob.h"
#include "daemon/nbd-server.h"
#include "daemon/qmp.h"
#include "daemon/registry.h"
#include "hw/device.h"
#include "vmmd/block.h"

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

/* The live VM, when no external snapshot is switching its disks. */
static struct vm *disks_vm(struct monitor_request *req, struct error **errp)
{
	struct vm *vm = live_vm(req, errp);

	return vm && registry_disks_check(req->vm, errp) == 0 ? vm : NULL;
}

/* blockdev-add: the image is opened on a worker thread, the answer deferred. */
struct blockdev_job {
	struct registry *reg;
	char *vm;
	uint64_t gen;
	struct vm_blockdev_op *op;
	struct monitor_deferred *d;
};

static void blockdev_open(void *arg)
{
	struct blockdev_job *j = arg;

	vm_blockdev_add_open(j->op);
}

static void blockdev_opened(void *arg)
{
	struct blockdev_job *j = arg;
	struct registry_vm *rv = registry_find(j->reg, j->vm);
	struct error *err = NULL;
	int r;

	if (rv && rv->vm && registry_vm_generation(rv) == j->gen) {
		r = vm_blockdev_add_finish(rv->vm, j->op, &err);
	} else {
		vm_blockdev_add_abandon(j->op);
		r = error_set_class(&err, ERROR_CLASS_DEVICE_NOT_ACTIVE, ENODEV,
				    "VM '%s' stopped while its node was being opened", j->vm);
	}
	monitor_deferred_done(j->d, r, NULL, err);
	free(j->vm);
	free(j);
}

int qmp_blockdev_add(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct registry_vm *rv = req->vm;
	struct vm *vm = disks_vm(req, errp);
	struct blockdev_job *j;
	const char *name;
	int r;

	if (!vm) {
		return -ENODEV;
	}
	j = calloc(1, sizeof(*j));
	if (!j || !(j->vm = strdup(rv->name))) {
		free(j);
		return error_set(errp, ENOMEM, "out of memory");
	}
	j->reg = req->ctx;
	j->gen = registry_vm_generation(rv);
	name = json_string_value(json_object_get(args, "node-name"));
	if (name && blockjob_target_named(rv, name)) {
		/* a drive-mirror's target, the disk's node after the switch */
		r = error_set(errp, EEXIST, "Duplicate nodes with node-name='%s'", name);
	} else {
		r = vm_blockdev_add_prepare(vm, args, &j->op, errp);
	}
	if (r == 0) {
		j->d = monitor_defer(req);
		r = j->d ? 0 : error_set(errp, ENOMEM, "out of memory");
	}
	if (r == 0) {
		r = registry_run(j->reg, blockdev_open, blockdev_opened, j, errp);
		if (r < 0) {
			monitor_deferred_cancel(j->d);
		}
	}
	if (r < 0) {
		if (j->op) {
			/* give the reservation back */
			vm_blockdev_add_finish(vm, j->op, NULL);
		}
		free(j->vm);
		free(j);
		return r;
	}
	return MONITOR_DEFERRED;
}

/* blockdev-del: the node closes (a flush, for a written image) on a worker; then the answer. */
struct close_job {
	struct block_node *bs;
	struct monitor_deferred *d;
};

static void close_run(void *arg)
{
	struct close_job *j = arg;

	block_unref(j->bs);
}

static void close_done(void *arg)
{
	struct close_job *j = arg;

	monitor_deferred_done(j->d, 0, NULL, NULL);
	free(j);
}

int qmp_blockdev_del(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct vm *vm = disks_vm(req, errp);
	struct registry_vm *rv = req->vm;
	const char *name = json_string_value(json_object_get(args, "node-name"));
	struct close_job *j;
	int r;

	if (!vm) {
		return -ENODEV;
	}
	r = blockjob_check_target(rv, name, errp);
	if (r < 0) {
		return r;
	}
	if (rv->nbd) {
		/* an NBD export serves it (its reference: not the last while the table's stays) */
		struct block_node *bs = vm_block_node_get(vm, name, NULL);
		bool used = bs && nbd_server_uses_node(rv->nbd, bs);

		block_unref(bs);
		if (used) {
			return error_set(errp, EBUSY, "Node %s is in use", name);
		}
	}
	j = calloc(1, sizeof(*j));
	if (!j || !(j->d = monitor_defer(req))) {
		free(j);
		return error_set(errp, ENOMEM, "out of memory");
	}
	r = vm_blockdev_del(vm, name, &j->bs, errp);
	if (r == 0 && registry_run(req->ctx, close_run, close_done, j, NULL) == 0) {
		return MONITOR_DEFERRED;
	}
	/* no worker: the node is out of the table all the same */
	block_unref(j->bs);
	monitor_deferred_cancel(j->d);
	free(j);
	return r;
}

/* block_resize: the truncation runs on a worker thread, the answer deferred. */
struct resize_job {
	struct registry *reg;
	char *vm;
	uint64_t gen;
	struct vm_resize_op *op;
	struct monitor_deferred *d;
};

static void resize_run(void *arg)
{
	struct resize_job *j = arg;

	vm_block_resize_run(j->op);
}

static void resize_done(void *arg)
{
	struct resize_job *j = arg;
	struct registry_vm *rv = registry_find(j->reg, j->vm);
	bool live = rv && rv->vm && registry_vm_generation(rv) == j->gen;
	struct error *err = NULL;
	int r = vm_block_resize_finish(live ? rv->vm : NULL, j->op, &err);

	monitor_deferred_done(j->d, r, NULL, err);
	free(j->vm);
	free(j);
}

/*
 * block_set_io_throttle: at once on the running VM, answered once the
 * definition is written (QEMU's "group" only as the disk's own: vmmd has
 * no groups shared between disks).
 */
int qmp_block_set_io_throttle(struct monitor_request *req, json_t *args, json_t **ret,
			      struct error **errp)
{
	struct vm *vm = live_vm(req, errp);
	const char *name = vm ? qmp_drive_name(args, errp) : NULL;
	const char *group = json_string_value(json_object_get(args, "group"));
	struct block_throttle_limits l;
	struct error *err = NULL;

	if (!name) {
		return -EINVAL;
	}
	if (block_throttle_from_json(args, false, &l, errp) < 0) {
		return -EINVAL;
	}
	if (group && strcmp(group, name) != 0) {
		return error_set(
			errp, ENOTSUP,
			"Throttle group '%s': vmmd's I/O limits are per disk (the group is "
			"the disk's own name)",
			group);
	}
	if (vm_set_io_throttle(vm, name, &l, errp) < 0) {
		return -EINVAL;
	}
	/* the definition follows: the limits hold after a restart or a migration too */
	if (registry_set_disk_throttle(req->vm, name, &l, &err) < 0) {
		log_full(LOG_WARNING, vm_name(vm), name,
			 "the definition does not follow the new I/O limits: %s", err->msg);
		error_free(err);
		return 0;
	}
	return qmp_answer_when_written(req, req->vm);
}

int qmp_block_resize(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct registry_vm *rv = req->vm;
	struct vm *vm = disks_vm(req, errp);
	json_int_t size = json_integer_value(json_object_get(args, "size"));
	struct resize_job *j;
	int r;

	if (!vm) {
		return -ENODEV;
	}
	if (size < 0) {
		return error_set(errp, EINVAL, "New size cannot be negative");
	}
	j = calloc(1, sizeof(*j));
	if (!j || !(j->vm = strdup(rv->name))) {
		free(j);
		return error_set(errp, ENOMEM, "out of memory");
	}
	j->reg = req->ctx;
	j->gen = registry_vm_generation(rv);
	r = vm_block_resize_prepare(vm, json_string_value(json_object_get(args, "device")),
				    json_string_value(json_object_get(args, "node-name")),
				    (uint64_t)size, &j->op, errp);
	if (r == 0) {
		j->d = monitor_defer(req);
		r = j->d ? 0 : error_set(errp, ENOMEM, "out of memory");
	}
	if (r == 0) {
		r = registry_run(j->reg, resize_run, resize_done, j, errp);
		if (r < 0) {
			monitor_deferred_cancel(j->d);
		}
	}
	if (r < 0) {
		if (j->op) {
			/* never run: this only gives the node's reference back */
			vm_block_resize_finish(NULL, j->op, NULL);
		}
		free(j->vm);
		free(j);
		return r;
	}
	return MONITOR_DEFERRED;
}

int qmp_netdev_add(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct vm *vm = live_vm(req, errp);
	const char *fdname = json_string_value(json_object_get(args, "fd"));
	int fd = -1;

	if (!vm) {
		return -ENODEV;
	}
	if (fdname) {
		/* QEMU takes the fd at netdev_add: the backend keeps its own copy */
		fd = monitor_get_fd(req->mon, fdname);
		if (fd < 0) {
			return error_set(errp, ENOENT, "File descriptor named '%s' not found",
					 fdname);
		}
	}
	return vm_netdev_add(vm, args, fd, errp);
}

int qmp_netdev_del(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct vm *vm = live_vm(req, errp);

	return vm ? vm_netdev_del(vm, json_string_value(json_object_get(args, "id")), errp)
		  : -ENODEV;
}

static void device_added(void *opaque)
{
	monitor_deferred_done(opaque, 0, NULL, NULL);
}

/* set_link: at once; the link state is the running VM's, not its definition's (as QEMU's). */
int qmp_set_link(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct vm *vm = live_vm(req, errp);

	return vm ? vm_set_link(vm, json_string_value(json_object_get(args, "name")),
				json_is_true(json_object_get(args, "up")), errp)
		  : -ENODEV;
}

/* device_add: answered once the definition naming the device is written. */
int qmp_device_add(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct vm *vm = disks_vm(req, errp);
	struct monitor_deferred *d;
	int r;

	if (!vm) {
		return -ENODEV;
	}
	d = monitor_defer(req);
	if (!d) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	r = vm_device_add(vm, args, errp);
	if (r == 0 && registry_device_added(req->vm, json_string_value(json_object_get(args, "id")),
					    device_added, d)) {
		return MONITOR_DEFERRED;
	}
	monitor_deferred_cancel(d);
	return r;
}

int qmp_device_del(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct vm *vm = disks_vm(req, errp);

	return vm ? vm_device_del(vm, json_string_value(json_object_get(args, "id")), errp)
		  : -ENODEV;
}

int qmp_balloon(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct vm *vm = live_vm(req, errp);

	return vm ? vm_balloon(vm, json_integer_value(json_object_get(args, "value")), errp)
		  : -ENODEV;
}

int qmp_query_balloon(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct vm *vm = live_vm(req, errp);

	if (!vm) {
		return -ENODEV;
	}
	*ret = vm_query_balloon(vm, errp);
	return *ret ? 0 : -ENODEV;
}
