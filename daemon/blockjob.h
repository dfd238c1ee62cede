/*
 * External snapshots and block jobs of a running VM's disks, with QEMU's
 * commands and errors: blockdev-snapshot-sync, transaction (of
 * blockdev-snapshot-sync actions), block-stream, block-commit (intermediate
 * and active). The jobs run on the job core (daemon/jobs.h); the disk's
 * persisted definition follows a change of its top image.
 *
 * Threads: the entry points run on the control thread. The snapshot
 * commands check their arguments there, then create and open the overlay
 * files, drain the disks and switch them on a worker thread working for
 * the VM (registry_disks_begin()); @done answers on the control thread.
 * The jobs' copying runs on their worker threads.
 */
#pragma once

#include <jansson.h>

#include "common/error.h"
#include "daemon/registry.h"

/*
 * The snapshot commands; @args is checked against schema.json (borrowed).
 * 0: done(opaque, rv, r, err) comes later; < 0: an error now, no done.
 */
int blockjob_snapshot_sync(struct registry_vm *rv, json_t *args, registry_done_fn done,
			   void *opaque, struct error **errp);
int blockjob_snapshot(struct registry_vm *rv, json_t *args, registry_done_fn done, void *opaque,
		      struct error **errp);
/*
 * blockdev-snapshot-internal-sync: an internal snapshot of a qcow2 disk
 * (no VM state), as one action of transaction's path. _delete_internal:
 * blockdev-snapshot-delete-internal-sync, the deleted snapshot's
 * SnapshotInfo to @done. Both work on a worker with the disk drained.
 */
typedef void blockjob_ret_fn(void *opaque, int r, json_t *ret, struct error *err);
int blockjob_snapshot_internal(struct registry_vm *rv, json_t *args, registry_done_fn done,
			       void *opaque, struct error **errp);
int blockjob_snapshot_delete_internal(struct registry_vm *rv, json_t *args, blockjob_ret_fn *done,
				      void *opaque, struct error **errp);
int blockjob_transaction(struct registry_vm *rv, json_t *args, registry_done_fn done, void *opaque,
			 struct error **errp);
/*
 * blockdev-backup (@drive false: into a node blockdev-add opened) and
 * drive-backup (into an image it creates, or opens with "mode":
 * "existing"): a point-in-time copy of the disk as it is when the command
 * runs, sync full, top or none, while the guest writes on; a write waits
 * for the copy of what it overwrites. A one-action transaction; @done
 * answers once the job started.
 */
int blockjob_backup(struct registry_vm *rv, json_t *args, bool drive, registry_done_fn done,
		    void *opaque, struct error **errp);
/* QEMU's "Node '@shown' is busy: block device is in use by block job: TYPE" if @disk has a job. */
int blockjob_check_idle(struct registry_vm *rv, const char *disk, const char *shown,
			struct error **errp);
int blockjob_stream(struct registry_vm *rv, json_t *args, struct error **errp);
int blockjob_commit(struct registry_vm *rv, json_t *args, struct error **errp);
/*
 * blockdev-mirror: the disk's writes mirrored into a node blockdev-add
 * opened, sync full, top or none; ready, then job-complete pivots the disk
 * to the target (block-job-cancel of a ready job ends it without).
 */
int blockjob_mirror(struct registry_vm *rv, json_t *args, struct error **errp);
/*
 * drive-mirror: as blockdev-mirror into an image it creates ("mode":
 * "absolute-paths") or opens ("existing") on a worker; @done is called on
 * the control thread once the job started or the command failed.
 */
/* QEMU's "Node '@name' is busy: ... block job: backup" if a backup writes into it. */
int blockjob_check_target(struct registry_vm *rv, const char *name, struct error **errp);
/* Whether a running mirror's target has (or will have) the node name @name. */
bool blockjob_target_named(struct registry_vm *rv, const char *name);
int blockjob_drive_mirror(struct registry_vm *rv, json_t *args, registry_done_fn done, void *opaque,
			  struct error **errp);
/*
 * block-dirty-bitmap-add, -remove, -clear, -enable, -disable and -merge
 * (@cmd) on the node @args names (a disk, a node of its chain, a
 * blockdev-add node); in memory, so on the control thread.
 */
int blockjob_bitmap(struct registry_vm *rv, const char *cmd, json_t *args, struct error **errp);
