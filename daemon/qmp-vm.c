/*
 * The daemon's commands for the monitor (monitor/ is the protocol library;
 * it calls these through the table below): vm-create, vm-start, vm-destroy,
 * vm-delete and query-vms (main socket only) here, the VM commands in
 * qmp-run.c. req->ctx is the registry. Control thread only.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>

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

/* vm-create: defined (file written), then started if asked, else undone. */
struct create_ctx {
	struct monitor_deferred *d;
	bool start;
	int r;
	struct error *err;
};

static void create_undone(void *opaque, struct registry_vm *rv, int r, struct error *err)
{
	struct create_ctx *ctx = opaque;

	error_free(err);
	monitor_deferred_done(ctx->d, ctx->r, NULL, ctx->err);
	free(ctx);
}

static void create_started(void *opaque, struct registry_vm *rv, int r, struct error *err)
{
	struct create_ctx *ctx = opaque;
	struct error *e = NULL;

	if (r >= 0) {
		monitor_deferred_done(ctx->d, 0, registry_vm_info(rv), NULL);
		free(ctx);
		return;
	}
	/* vm-create with "start" is all or nothing: answer once it is gone. */
	ctx->r = r;
	ctx->err = err;
	if (registry_delete(rv, true, create_undone, ctx, &e) < 0) {
		create_undone(ctx, NULL, 0, e);
	}
}

static void create_defined(void *opaque, struct registry_vm *rv, int r, struct error *err)
{
	struct create_ctx *ctx = opaque;
	struct error *e = NULL;

	if (r < 0 || !ctx->start) {
		monitor_deferred_done(ctx->d, r, r < 0 ? NULL : registry_vm_info(rv), err);
		free(ctx);
		return;
	}
	/* The start takes the getfd fds of the client that asked. */
	monitor_deferred_act(ctx->d, true);
	r = registry_start_async(rv, create_started, ctx, &e);
	monitor_deferred_act(ctx->d, false);
	if (r < 0) {
		create_started(ctx, rv, r, e);
	}
}

/* Defer the answer and run @op; an immediate failure is answered now. */
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

static int delete_op(struct registry_vm *rv, registry_done_fn done, void *opaque,
		     struct error **errp)
{
	return registry_delete(rv, false, done, opaque, errp);
}

static int force_delete_op(struct registry_vm *rv, registry_done_fn done, void *opaque,
			   struct error **errp)
{
	return registry_delete(rv, true, done, opaque, errp);
}

/*
 * The lifecycle commands answer when their work is done, but that work
 * (writing and removing definitions, opening disks, KVM setup, joining
 * threads) runs on worker threads: other clients are served meanwhile
 * (issue 14).
 */
int qmp_vm_create(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct create_ctx *ctx = calloc(1, sizeof(*ctx));
	struct registry_vm *rv;
	int r;

	if (!ctx || !(ctx->d = monitor_defer(req))) {
		free(ctx);
		return error_set(errp, ENOMEM, "out of memory");
	}
	ctx->start = json_is_true(json_object_get(args, "start"));
	r = registry_create(req->ctx, args, create_defined, ctx, &rv, errp);
	if (r < 0) {
		monitor_deferred_cancel(ctx->d);
		free(ctx);
		return r;
	}
	return MONITOR_DEFERRED;
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
	return deferred(req, rv, answer,
			json_is_true(json_object_get(args, "force")) ? force_delete_op : delete_op,
			errp);
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
	{"inject-nmi", qmp_inject_nmi},
	{"set_link", qmp_set_link},
	{"eject", qmp_eject},
	{"blockdev-open-tray", qmp_blockdev_open_tray},
	{"blockdev-close-tray", qmp_blockdev_close_tray},
	{"blockdev-remove-medium", qmp_blockdev_remove_medium},
	{"blockdev-insert-medium", qmp_blockdev_insert_medium},
	{"blockdev-change-medium", qmp_blockdev_change_medium},
	{"quit", qmp_quit},
	{"query-block", qmp_query_block},
	{"query-blockstats", qmp_query_blockstats},
	{"send-key", qmp_send_key},
	{"x-query-usb", qmp_x_query_usb},
	{"input-send-event", qmp_input_send_event},
	{"query-name", qmp_query_name},
	{"query-uuid", qmp_query_uuid},
	{"query-kvm", qmp_query_kvm},
	{"query-current-machine", qmp_query_current_machine},
	{"system_wakeup", qmp_system_wakeup},
	{"query-target", qmp_query_target},
	{"query-machines", qmp_query_machines},
	{"query-memdev", qmp_query_memdev},
	{"query-iothreads", qmp_query_iothreads},
	{"query-chardev", qmp_query_chardev},
	{"query-cpus-fast", qmp_query_cpus_fast},
	{"query-hotpluggable-cpus", qmp_query_hotpluggable_cpus},
	{"query-pci", qmp_query_pci},
	{"human-monitor-command", qmp_human_monitor_command},
	{"ringbuf-read", qmp_ringbuf_read},
	{"ringbuf-write", qmp_ringbuf_write},
	{"blockdev-add", qmp_blockdev_add},
	{"blockdev-del", qmp_blockdev_del},
	{"block_resize", qmp_block_resize},
	{"block_set_io_throttle", qmp_block_set_io_throttle},
	{"netdev_add", qmp_netdev_add},
	{"netdev_del", qmp_netdev_del},
	{"device_add", qmp_device_add},
	{"device_del", qmp_device_del},
	{"balloon", qmp_balloon},
	{"query-balloon", qmp_query_balloon},
	{"qom-get", qmp_qom_get},
	{"qom-set", qmp_qom_set},
	{"query-memory-devices", qmp_query_memory_devices},
	{"query-memory-size-summary", qmp_query_memory_size_summary},
	{"pmemsave", qmp_pmemsave},
	{"memsave", qmp_memsave},
	{"dump-guest-memory", qmp_dump_guest_memory},
	{"query-dump", qmp_query_dump},
	{"query-dump-guest-memory-capability", qmp_query_dump_guest_memory_capability},
	{"vm-create", qmp_vm_create},
	{"vm-start", qmp_vm_start},
	{"vm-destroy", qmp_vm_destroy},
	{"vm-delete", qmp_vm_delete},
	{"query-vms", qmp_query_vms},
	{"vm-save", qmp_vm_save},
	{"vm-restore", qmp_vm_restore},
	{"query-jobs", qmp_query_jobs},
	{"query-block-jobs", qmp_query_block_jobs},
	{"job-pause", qmp_job_pause},
	{"job-resume", qmp_job_resume},
	{"job-cancel", qmp_job_cancel},
	{"job-complete", qmp_job_complete},
	{"job-finalize", qmp_job_finalize},
	{"job-dismiss", qmp_job_dismiss},
	{"block-job-set-speed", qmp_block_job_set_speed},
	{"block-job-cancel", qmp_block_job_cancel},
	{"block-job-pause", qmp_block_job_pause},
	{"block-job-resume", qmp_block_job_resume},
	{"block-job-complete", qmp_block_job_complete},
	{"block-job-finalize", qmp_block_job_finalize},
	{"block-job-dismiss", qmp_block_job_dismiss},
	{"blockdev-snapshot-sync", qmp_blockdev_snapshot_sync},
	{"blockdev-snapshot", qmp_blockdev_snapshot},
	{"transaction", qmp_transaction},
	{"block-stream", qmp_block_stream},
	{"snapshot-save", qmp_snapshot_save},
	{"snapshot-load", qmp_snapshot_load},
	{"snapshot-delete", qmp_snapshot_delete},
	{"block-commit", qmp_block_commit},
	{"blockdev-mirror", qmp_blockdev_mirror},
	{"drive-mirror", qmp_drive_mirror},
	{"blockdev-backup", qmp_blockdev_backup},
	{"drive-backup", qmp_drive_backup},
	{"block-dirty-bitmap-add", qmp_block_dirty_bitmap_add},
	{"block-dirty-bitmap-remove", qmp_block_dirty_bitmap_remove},
	{"block-dirty-bitmap-clear", qmp_block_dirty_bitmap_clear},
	{"block-dirty-bitmap-enable", qmp_block_dirty_bitmap_enable},
	{"block-dirty-bitmap-disable", qmp_block_dirty_bitmap_disable},
	{"block-dirty-bitmap-merge", qmp_block_dirty_bitmap_merge},
	{"blockdev-snapshot-internal-sync", qmp_blockdev_snapshot_internal_sync},
	{"blockdev-snapshot-delete-internal-sync", qmp_blockdev_snapshot_delete_internal_sync},
	{"nbd-server-start", qmp_nbd_server_start},
	{"nbd-server-stop", qmp_nbd_server_stop},
	{"nbd-server-add", qmp_nbd_server_add},
	{"nbd-server-remove", qmp_nbd_server_remove},
	{"block-export-add", qmp_block_export_add},
	{"block-export-del", qmp_block_export_del},
	{"query-block-exports", qmp_query_block_exports},
	{"migrate", qmp_migrate},
	{"migrate-incoming", qmp_migrate_incoming},
	{"migrate_cancel", qmp_migrate_cancel},
	{"query-migrate", qmp_query_migrate},
	{"migrate-set-parameters", qmp_migrate_set_parameters},
	{"query-migrate-parameters", qmp_query_migrate_parameters},
	{"announce-self", qmp_announce_self},
	{"migrate-set-capabilities", qmp_migrate_set_capabilities},
	{"query-migrate-capabilities", qmp_query_migrate_capabilities},
	{"object-add", qmp_object_add},
	{"object-del", qmp_object_del},
	{"daemon-upgrade", qmp_daemon_upgrade},
	{"x-daemon-upgrade-finish", qmp_x_daemon_upgrade_finish},
	{"x-daemon-upgrade-return", qmp_x_daemon_upgrade_return},
};
const size_t qmp_n_commands = ARRAY_SIZE(qmp_commands);
