/*
 * External snapshots and block jobs with QEMU's commands:
 * blockdev-snapshot-sync, transaction, block-stream, block-commit,
 * blockdev-mirror, drive-mirror, and the internal snapshots
 * snapshot-save/-load/-delete. The work is in
 * daemon/blockjob.c and daemon/snapshot.c; req->vm is the VM. Control thread;
 * the external snapshots answer when their worker is done.
 */
#include "config.h"

#include <errno.h>

#include "daemon/blockjob.h"
#include "daemon/qmp.h"
#include "daemon/registry.h"
#include "daemon/snapshot.h"

/* A snapshot's (or drive-mirror's) worker ended: answer the client. */
static void snap_answer(void *opaque, struct registry_vm *rv, int r, struct error *err)
{
	monitor_deferred_done(opaque, r, NULL, err);
}

static int snap_deferred(struct monitor_request *req, json_t *args,
			 int (*run)(struct registry_vm *rv, json_t *args, registry_done_fn done,
				    void *opaque, struct error **errp),
			 struct error **errp)
{
	struct monitor_deferred *d = monitor_defer(req);
	int r;

	if (!d) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	r = run((struct registry_vm *)req->vm, args, snap_answer, d, errp);
	if (r < 0) {
		monitor_deferred_cancel(d);
		return r;
	}
	return MONITOR_DEFERRED;
}

int qmp_blockdev_snapshot_sync(struct monitor_request *req, json_t *args, json_t **ret,
			       struct error **errp)
{
	return snap_deferred(req, args, blockjob_snapshot_sync, errp);
}

int qmp_blockdev_snapshot(struct monitor_request *req, json_t *args, json_t **ret,
			  struct error **errp)
{
	return snap_deferred(req, args, blockjob_snapshot, errp);
}

int qmp_transaction(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	return snap_deferred(req, args, blockjob_transaction, errp);
}

static int blockdev_backup(struct registry_vm *rv, json_t *args, registry_done_fn done,
			   void *opaque, struct error **errp)
{
	return blockjob_backup(rv, args, false, done, opaque, errp);
}

static int drive_backup(struct registry_vm *rv, json_t *args, registry_done_fn done, void *opaque,
			struct error **errp)
{
	return blockjob_backup(rv, args, true, done, opaque, errp);
}

int qmp_blockdev_backup(struct monitor_request *req, json_t *args, json_t **ret,
			struct error **errp)
{
	return snap_deferred(req, args, blockdev_backup, errp);
}

int qmp_drive_backup(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	return snap_deferred(req, args, drive_backup, errp);
}

int qmp_blockdev_snapshot_internal_sync(struct monitor_request *req, json_t *args, json_t **ret,
					struct error **errp)
{
	return snap_deferred(req, args, blockjob_snapshot_internal, errp);
}

static void del_answer(void *opaque, int r, json_t *ret, struct error *err)
{
	monitor_deferred_done(opaque, r, ret, err);
}

int qmp_blockdev_snapshot_delete_internal_sync(struct monitor_request *req, json_t *args,
					       json_t **ret, struct error **errp)
{
	struct monitor_deferred *d = monitor_defer(req);
	int r;

	if (!d) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	r = blockjob_snapshot_delete_internal((struct registry_vm *)req->vm, args, del_answer, d,
					      errp);
	if (r < 0) {
		monitor_deferred_cancel(d);
		return r;
	}
	return MONITOR_DEFERRED;
}

int qmp_block_stream(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	return blockjob_stream((struct registry_vm *)req->vm, args, errp);
}

int qmp_block_commit(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	return blockjob_commit((struct registry_vm *)req->vm, args, errp);
}

int qmp_blockdev_mirror(struct monitor_request *req, json_t *args, json_t **ret,
			struct error **errp)
{
	return blockjob_mirror((struct registry_vm *)req->vm, args, errp);
}

int qmp_drive_mirror(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	return snap_deferred(req, args, blockjob_drive_mirror, errp);
}

int qmp_snapshot_save(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	return snapshot_save((struct registry_vm *)req->vm, args, NULL, errp);
}

int qmp_snapshot_load(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	return snapshot_load((struct registry_vm *)req->vm, args, NULL, errp);
}

int qmp_snapshot_delete(struct monitor_request *req, json_t *args, json_t **ret,
			struct error **errp)
{
	return snapshot_delete((struct registry_vm *)req->vm, args, NULL, errp);
}

int qmp_block_dirty_bitmap_add(struct monitor_request *req, json_t *args, json_t **ret,
			       struct error **errp)
{
	return blockjob_bitmap((struct registry_vm *)req->vm, "block-dirty-bitmap-add", args, errp);
}

int qmp_block_dirty_bitmap_remove(struct monitor_request *req, json_t *args, json_t **ret,
				  struct error **errp)
{
	return blockjob_bitmap((struct registry_vm *)req->vm, "block-dirty-bitmap-remove", args,
			       errp);
}

int qmp_block_dirty_bitmap_clear(struct monitor_request *req, json_t *args, json_t **ret,
				 struct error **errp)
{
	return blockjob_bitmap((struct registry_vm *)req->vm, "block-dirty-bitmap-clear", args,
			       errp);
}

int qmp_block_dirty_bitmap_enable(struct monitor_request *req, json_t *args, json_t **ret,
				  struct error **errp)
{
	return blockjob_bitmap((struct registry_vm *)req->vm, "block-dirty-bitmap-enable", args,
			       errp);
}

int qmp_block_dirty_bitmap_disable(struct monitor_request *req, json_t *args, json_t **ret,
				   struct error **errp)
{
	return blockjob_bitmap((struct registry_vm *)req->vm, "block-dirty-bitmap-disable", args,
			       errp);
}

int qmp_block_dirty_bitmap_merge(struct monitor_request *req, json_t *args, json_t **ret,
				 struct error **errp)
{
	return blockjob_bitmap((struct registry_vm *)req->vm, "block-dirty-bitmap-merge", args,
			       errp);
}
