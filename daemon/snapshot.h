/*
 * Internal snapshots of a running VM (QEMU's snapshot-save, snapshot-load,
 * snapshot-delete and HMP savevm/loadvm/delvm; docs/vmstate.md): the VM
 * state goes into the VM-state area of one qcow2 disk, every listed disk
 * gets an internal snapshot of the same name while the VM is paused.
 *
 * Threads: the entry points on the control thread; the work on the job's
 * worker thread.
 */
#pragma once

#include <jansson.h>

#include "common/error.h"

struct registry_vm;
struct job;

/*
 * The QMP commands, with QEMU 7.2's arguments (@args checked against
 * schema.json, borrowed). The job is created and started (its errors come
 * through the job, as QEMU's); *ret_job (may be NULL) is the job.
 */
int snapshot_save(struct registry_vm *rv, json_t *args, struct job **ret_job, struct error **errp);
int snapshot_load(struct registry_vm *rv, json_t *args, struct job **ret_job, struct error **errp);
int snapshot_delete(struct registry_vm *rv, json_t *args, struct job **ret_job,
		    struct error **errp);

/*
 * HMP savevm [@tag] / loadvm @tag / delvm @tag (@cmd), as QEMU's: every disk
 * of the VM, the VM state on the first writable qcow2 disk, savevm replaces
 * a snapshot of the same name and makes up a name when @tag is NULL. Runs
 * as an internal job (no events); @done is called on the control thread
 * with NULL or the error message, unless this returns an error.
 */
int snapshot_hmp(struct registry_vm *rv, const char *cmd, const char *tag,
		 void (*done)(void *opaque, const char *err), void *opaque, struct error **errp);
