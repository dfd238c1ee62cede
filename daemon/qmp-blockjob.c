/*
 * External snapshots and block jobs with QEMU's commands:
 * blockdev-snapshot-sync, transaction, block-stream, block-commit, and the
 * internal snapshots snapshot-save/-load/-delete. The work is in
 * daemon/blockjob.c and daemon/snapshot.c; req->vm is the VM. Control thread.
 */
#include "config.h"

#include "daemon/blockjob.h"
#include "daemon/qmp.h"
#include "daemon/registry.h"
#include "daemon/snapshot.h"

int qmp_blockdev_snapshot_sync(struct monitor_request *req, json_t *args, json_t **ret,
			       struct error **errp)
{
	return blockjob_snapshot_sync((struct registry_vm *)req->vm, args, errp);
}

int qmp_blockdev_snapshot(struct monitor_request *req, json_t *args, json_t **ret,
			  struct error **errp)
{
	return blockjob_snapshot((struct registry_vm *)req->vm, args, errp);
}

int qmp_transaction(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	return blockjob_transaction((struct registry_vm *)req->vm, args, errp);
}

int qmp_block_stream(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	return blockjob_stream((struct registry_vm *)req->vm, args, errp);
}

int qmp_block_commit(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	return blockjob_commit((struct registry_vm *)req->vm, args, errp);
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
