/*
 * Removable media with QEMU's commands, arguments and errors: eject,
 * blockdev-open-tray, blockdev-close-tray, blockdev-remove-medium,
 * blockdev-insert-medium, blockdev-change-medium. A drive is named by
 * "device" or "id" (exactly one; in vmmd both are the disk's id), except
 * in remove/insert-medium, which take "id" as QEMU's do. The work is in
 * hw/media.c; blockdev-change-medium opens its image on a worker thread.
 * When a drive's medium changes, the persisted definition follows (the
 * disk's "file" and "format", or none for an empty drive) and the answer
 * waits for it to be written. Refused while an external snapshot
 * switches the VM's disks, vm-save writes it or it migrates. Control
 * thread only.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/qmp.h"
#include "common/log.h"
#include "daemon/migration.h"
#include "daemon/registry.h"
#include "hw/device.h"
#include "vmmd/block.h"

/*
 * Whether @rv's media may change now: not while an external snapshot
 * switches its disks, nor while vm-save or a migration carries the
 * definition and the drives' state separately (a medium changed between
 * the two would not be the one the copy's definition names).
 */
static int media_check(struct registry_vm *rv, struct error **errp)
{
	if (rv->busy == REGISTRY_SAVING) {
		return error_set(errp, EBUSY,
				 "VM '%s' is being saved; change its media when that is done",
				 rv->name);
	}
	if (migration_active(rv)) {
		return error_set(errp, EBUSY,
				 "VM '%s' is migrating; change its media when that is done",
				 rv->name);
	}
	return registry_disks_check(rv, errp);
}

/* The live VM, when its media may change. */
static struct vm *media_vm(struct monitor_request *req, struct error **errp)
{
	struct registry_vm *rv = req->vm;

	if (!rv->vm) {
		error_set_class(errp, ERROR_CLASS_DEVICE_NOT_ACTIVE, ENODEV,
				"VM '%s' is not running; start it with vm-start", rv->name);
		return NULL;
	}
	return media_check(rv, errp) == 0 ? rv->vm : NULL;
}

const char *qmp_drive_name(json_t *args, struct error **errp)
{
	const char *device = json_string_value(json_object_get(args, "device"));
	const char *id = json_string_value(json_object_get(args, "id"));

	if (!device == !id) {
		error_set(errp, EINVAL, "Need exactly one of 'device' and 'id'");
		return NULL;
	}
	return device ? device : id;
}

static void written(void *opaque)
{
	monitor_deferred_done(opaque, 0, NULL, NULL);
}

/*
 * The medium of drive @id is now what the running VM has: the definition
 * follows, and the answer goes once it is on disk (MONITOR_DEFERRED), or
 * at once (0) if it cannot be written (logged, as for a snapshot).
 */
static int persist(struct monitor_request *req, struct registry_vm *rv, const char *id,
		   struct error **errp)
{
	struct vm_tray st;
	struct error *err = NULL;
	const char *file = NULL, *format = NULL;

	if (vm_media_state(rv->vm, id, &st, NULL) == 0 && st.bs) {
		file = block_filename(st.bs);
		format = file ? block_format(st.bs) : NULL;
	}
	if (registry_set_disk(rv, id, file, format, &err) < 0) {
		log_full(LOG_WARNING, rv->name, id,
			 "the definition does not follow the new medium: %s", err->msg);
		error_free(err);
		return 0;
	}
	return qmp_answer_when_written(req, rv);
}

int qmp_answer_when_written(struct monitor_request *req, struct registry_vm *rv)
{
	struct monitor_deferred *d = monitor_defer(req);

	/* out of memory: written all the same, answered now */
	if (registry_write_definition(rv, d ? written : NULL, d) < 0 || !d) {
		if (d) {
			monitor_deferred_cancel(d);
		}
		return 0;
	}
	return MONITOR_DEFERRED;
}

int qmp_eject(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct vm *vm = media_vm(req, errp);
	const char *name = vm ? qmp_drive_name(args, errp) : NULL;
	struct vm_tray st;
	int r;

	if (!name) {
		return -EINVAL;
	}
	r = vm_media_open_tray(vm, name, json_is_true(json_object_get(args, "force")), errp);
	if (r == 0 && vm_media_state(vm, name, &st, NULL) == 0 && st.bs) {
		r = vm_media_remove(vm, name, errp);
		return r < 0 ? r : persist(req, req->vm, name, errp);
	}
	return r;
}

int qmp_blockdev_open_tray(struct monitor_request *req, json_t *args, json_t **ret,
			   struct error **errp)
{
	struct vm *vm = media_vm(req, errp);
	const char *name = vm ? qmp_drive_name(args, errp) : NULL;
	struct error *err = NULL;
	int r;

	if (!name) {
		return -EINVAL;
	}
	r = vm_media_open_tray(vm, name, json_is_true(json_object_get(args, "force")), &err);
	if (r == -EINPROGRESS) {
		/* as QEMU: the guest was asked to open its locked tray; not an error */
		error_free(err);
		return 0;
	}
	error_propagate(errp, err);
	return r;
}

int qmp_blockdev_close_tray(struct monitor_request *req, json_t *args, json_t **ret,
			    struct error **errp)
{
	struct vm *vm = media_vm(req, errp);
	const char *name = vm ? qmp_drive_name(args, errp) : NULL;

	return name ? vm_media_close_tray(vm, name, errp) : -EINVAL;
}

int qmp_blockdev_remove_medium(struct monitor_request *req, json_t *args, json_t **ret,
			       struct error **errp)
{
	struct vm *vm = media_vm(req, errp);
	const char *id = json_string_value(json_object_get(args, "id"));
	struct vm_tray st;
	int r;

	if (!vm) {
		return -ENODEV;
	}
	r = vm_media_state(vm, id, &st, errp);
	if (r < 0 || (st.open && !st.bs)) {
		return r; /* an empty open tray: nothing to remove, as QEMU */
	}
	r = vm_media_remove(vm, id, errp);
	return r < 0 ? r : persist(req, req->vm, id, errp);
}

int qmp_blockdev_insert_medium(struct monitor_request *req, json_t *args, json_t **ret,
			       struct error **errp)
{
	struct vm *vm = media_vm(req, errp);
	const char *id = json_string_value(json_object_get(args, "id"));
	int r;

	if (!vm) {
		return -ENODEV;
	}
	r = vm_media_insert_node(vm, id, json_string_value(json_object_get(args, "node-name")),
				 errp);
	return r < 0 ? r : persist(req, req->vm, id, errp);
}

/* blockdev-change-medium: the image opens on a worker, the rest follows here. */
struct change_job {
	struct registry *reg;
	char *vm, *name, *filename, *format;
	uint64_t gen;
	bool force;
	struct block_node *bs;
	struct error *err;
	int r;
	struct monitor_deferred *d;
};

static void change_free(struct change_job *j)
{
	block_unref(j->bs);
	error_free(j->err);
	free(j->vm);
	free(j->name);
	free(j->filename);
	free(j->format);
	free(j);
}

static void change_open(void *arg)
{
	struct change_job *j = arg;

	/* read-only whatever read-only-mode says: the drive cannot write */
	j->r = block_open(&j->bs, j->filename, j->format, 0, &j->err);
}

static void change_written(void *opaque)
{
	struct change_job *j = opaque;

	monitor_deferred_done(j->d, 0, NULL, NULL);
	change_free(j);
}

static void change_opened(void *arg)
{
	struct change_job *j = arg;
	struct registry_vm *rv = registry_find(j->reg, j->vm);
	struct vm *vm = rv && registry_vm_generation(rv) == j->gen ? rv->vm : NULL;
	struct error *err = NULL;
	int r = j->r;

	if (r < 0) {
		err = TAKE_PTR(j->err);
	} else if (!vm) {
		r = error_set_class(&err, ERROR_CLASS_DEVICE_NOT_ACTIVE, ENODEV,
				    "VM '%s' stopped while the medium was being opened", j->vm);
	} else if (media_check(rv, &err) < 0) {
		r = -EBUSY;
	} else {
		/* QEMU's steps: open the tray, remove the medium, insert the new one, close */
		r = vm_media_open_tray(vm, j->name, j->force, &err);
		r = r < 0 ? r : vm_media_remove(vm, j->name, &err);
		r = r < 0 ? r : vm_media_insert(vm, j->name, TAKE_PTR(j->bs), &err);
		r = r < 0 ? r : vm_media_close_tray(vm, j->name, &err);
	}
	if (r == 0 && registry_set_disk(rv, j->name, j->filename, j->format, &err) < 0) {
		log_full(LOG_WARNING, j->vm, j->name,
			 "the definition does not follow the new medium: %s", err->msg);
		error_free(TAKE_PTR(err));
	} else if (r == 0 && registry_write_definition(rv, change_written, j) == 0) {
		return; /* answered once written */
	}
	monitor_deferred_done(j->d, r, NULL, err);
	change_free(j);
}

int qmp_blockdev_change_medium(struct monitor_request *req, json_t *args, json_t **ret,
			       struct error **errp)
{
	struct registry_vm *rv = req->vm;
	struct vm *vm = media_vm(req, errp);
	const char *name = vm ? qmp_drive_name(args, errp) : NULL;
	const char *mode = json_string_value(json_object_get(args, "read-only-mode"));
	const char *format = json_string_value(json_object_get(args, "format"));
	struct error *err = NULL;
	struct change_job *j;
	struct vm_tray st;
	int r;

	if (!name) {
		return -EINVAL;
	}
	if (mode && strcmp(mode, "retain") != 0 && strcmp(mode, "read-only") != 0 &&
	    strcmp(mode, "read-write") != 0) {
		return error_set(errp, EINVAL,
				 "Parameter 'read-only-mode' does not accept value '%s'", mode);
	}
	/* an unknown drive first; "not removable" comes after the open, as QEMU's */
	r = vm_media_state(vm, name, &st, &err);
	if (r < 0 && err && err->cls == ERROR_CLASS_DEVICE_NOT_FOUND) {
		error_propagate(errp, err);
		return r;
	}
	error_free(err);
	j = calloc(1, sizeof(*j));
	if (!j || !(j->vm = strdup(rv->name)) || !(j->name = strdup(name)) ||
	    !(j->filename = strdup(json_string_value(json_object_get(args, "filename")))) ||
	    !(j->format = strdup(format ? format : "raw"))) {
		if (j) {
			change_free(j);
		}
		return error_set(errp, ENOMEM, "out of memory");
	}
	j->reg = req->ctx;
	j->gen = registry_vm_generation(rv);
	j->force = json_is_true(json_object_get(args, "force"));
	j->d = monitor_defer(req);
	r = j->d ? registry_run(j->reg, change_open, change_opened, j, errp)
		 : error_set(errp, ENOMEM, "out of memory");
	if (r < 0) {
		if (j->d) {
			monitor_deferred_cancel(j->d);
		}
		change_free(j);
		return r;
	}
	return MONITOR_DEFERRED;
}
