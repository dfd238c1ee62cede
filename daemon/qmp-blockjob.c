/*
 * External snapshots and block jobs with QEMU's commands:
 * blockdev-snapshot-sync, transaction, block-stream, block-commit. The work
 * is in daemon/blockjob.c; req->vm is the VM. Control thread.
 */
#include "config.h"

#include "daemon/blockjob.h"
#include "daemon/qmp.h"
#include "daemon/registry.h"

int qmp_blockdev_snapshot_sync(struct monitor_request *req, json_t *args, json_t **ret,
			       struct error **errp)
{
	return blockjob_snapshot_sync((struct registry_vm *)req->vm, args, errp);
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
