/*
 * The daemon's protocol commands: the handler table the daemon gives
 * monitor_new() (monitor/ is the protocol library and knows nothing of the
 * registry). Adding a command: schema.json, a handler in qmp-*.c, a line in
 * qmp_commands[] (qmp-vm.c). Control thread only.
 */
#pragma once

#include "monitor/monitor.h"

extern const struct monitor_command qmp_commands[];
extern const size_t qmp_n_commands;

/* monitor_handlers.find_vm over the registry @reg: a struct registry_vm *. */
void *qmp_find_vm(void *reg, const char *name);

/* qmp-run.c: run-state and block commands of one VM. */
int qmp_query_status(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_stop(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
/* stop that waits for the vCPUs to park before returning (for HMP, which answers at once) */
int qmp_stop_now(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_cont(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_system_reset(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_set_link(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_pmemsave(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_memsave(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
/* daemon/qmp-dump.c */
struct registry_vm;
/* A dump-guest-memory of @rv under way: stop, cont and migrate refuse, as QEMU's. */
bool qmp_dump_active(struct registry_vm *rv);
int qmp_dump_guest_memory(struct monitor_request *req, json_t *args, json_t **ret,
			  struct error **errp);
int qmp_query_dump(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_query_dump_guest_memory_capability(struct monitor_request *req, json_t *args, json_t **ret,
					   struct error **errp);
/* daemon/qmp-media.c */
/* The disk named by exactly one of "device" and "id" (QEMU's words otherwise). */
const char *qmp_drive_name(json_t *args, struct error **errp);
/*
 * The answer of a command that changed @rv's definition in memory: once
 * the file is written (MONITOR_DEFERRED), or now (0) if no write could
 * start (logged).
 */
struct registry_vm;
int qmp_answer_when_written(struct monitor_request *req, struct registry_vm *rv);
int qmp_block_set_io_throttle(struct monitor_request *req, json_t *args, json_t **ret,
			      struct error **errp);
int qmp_eject(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_blockdev_open_tray(struct monitor_request *req, json_t *args, json_t **ret,
			   struct error **errp);
int qmp_blockdev_close_tray(struct monitor_request *req, json_t *args, json_t **ret,
			    struct error **errp);
int qmp_blockdev_remove_medium(struct monitor_request *req, json_t *args, json_t **ret,
			       struct error **errp);
int qmp_blockdev_insert_medium(struct monitor_request *req, json_t *args, json_t **ret,
			       struct error **errp);
int qmp_blockdev_change_medium(struct monitor_request *req, json_t *args, json_t **ret,
			       struct error **errp);
int qmp_inject_nmi(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_system_powerdown(struct monitor_request *req, json_t *args, json_t **ret,
			 struct error **errp);
int qmp_quit(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_query_block(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_query_blockstats(struct monitor_request *req, json_t *args, json_t **ret,
			 struct error **errp);
/* qmp-input.c: send-key, input-send-event, x-query-usb. */
int qmp_x_query_usb(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_send_key(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_input_send_event(struct monitor_request *req, json_t *args, json_t **ret,
			 struct error **errp);
/* qmp-info.c: QEMU's informational queries. */
int qmp_query_name(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_query_uuid(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_query_kvm(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_query_target(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_query_machines(struct monitor_request *req, json_t *args, json_t **ret,
		       struct error **errp);
int qmp_query_memdev(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_query_iothreads(struct monitor_request *req, json_t *args, json_t **ret,
			struct error **errp);
int qmp_query_chardev(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_query_cpus_fast(struct monitor_request *req, json_t *args, json_t **ret,
			struct error **errp);
int qmp_query_hotpluggable_cpus(struct monitor_request *req, json_t *args, json_t **ret,
				struct error **errp);
int qmp_query_pci(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_ringbuf_read(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_ringbuf_write(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
/* qmp-hmp.c: human-monitor-command. */
int qmp_human_monitor_command(struct monitor_request *req, json_t *args, json_t **ret,
			      struct error **errp);
/* qmp-hotplug.c: hotplug commands of one VM. */
int qmp_blockdev_add(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_blockdev_del(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_block_resize(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_netdev_add(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_netdev_del(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_device_add(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_device_del(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_balloon(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_query_balloon(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_qom_get(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_qom_set(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_query_memory_devices(struct monitor_request *req, json_t *args, json_t **ret,
			     struct error **errp);
int qmp_query_memory_size_summary(struct monitor_request *req, json_t *args, json_t **ret,
				  struct error **errp);
/* qmp-vm.c: the daemon's VM lifecycle commands. */
int qmp_vm_create(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_vm_start(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_vm_destroy(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_vm_delete(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_query_vms(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
/* qmp-vmstate.c: whole-VM save and restore (docs/vmstate.md). */
/*
 * QEMU's objects for migration: TLS credentials (daemon/tls.c, tls-creds-x509
 * and tls-creds-psk) and authorization (daemon/authz.c, authz-simple and
 * authz-list).
 */
int qmp_object_add(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_object_del(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
/* Live upgrade (daemon/upgrade.c, docs/upgrade.md). */
int qmp_daemon_upgrade(struct monitor_request *req, json_t *args, json_t **ret,
		       struct error **errp);
int qmp_x_daemon_upgrade_finish(struct monitor_request *req, json_t *args, json_t **ret,
				struct error **errp);
int qmp_x_daemon_upgrade_return(struct monitor_request *req, json_t *args, json_t **ret,
				struct error **errp);
int qmp_migrate(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_migrate_incoming(struct monitor_request *req, json_t *args, json_t **ret,
			 struct error **errp);
int qmp_migrate_cancel(struct monitor_request *req, json_t *args, json_t **ret,
		       struct error **errp);
int qmp_query_migrate(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_migrate_set_parameters(struct monitor_request *req, json_t *args, json_t **ret,
			       struct error **errp);
int qmp_announce_self(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_query_migrate_parameters(struct monitor_request *req, json_t *args, json_t **ret,
				 struct error **errp);
int qmp_migrate_set_capabilities(struct monitor_request *req, json_t *args, json_t **ret,
				 struct error **errp);
int qmp_query_migrate_capabilities(struct monitor_request *req, json_t *args, json_t **ret,
				   struct error **errp);
int qmp_vm_save(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_vm_restore(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
/* qmp-job.c: jobs (daemon/jobs.c). */
int qmp_query_jobs(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_query_block_jobs(struct monitor_request *req, json_t *args, json_t **ret,
			 struct error **errp);
int qmp_job_pause(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_job_resume(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_job_cancel(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_job_complete(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_job_finalize(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_job_dismiss(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_block_job_set_speed(struct monitor_request *req, json_t *args, json_t **ret,
			    struct error **errp);
int qmp_block_job_cancel(struct monitor_request *req, json_t *args, json_t **ret,
			 struct error **errp);
int qmp_block_job_pause(struct monitor_request *req, json_t *args, json_t **ret,
			struct error **errp);
int qmp_block_job_resume(struct monitor_request *req, json_t *args, json_t **ret,
			 struct error **errp);
int qmp_block_job_complete(struct monitor_request *req, json_t *args, json_t **ret,
			   struct error **errp);
int qmp_block_job_finalize(struct monitor_request *req, json_t *args, json_t **ret,
			   struct error **errp);
int qmp_block_job_dismiss(struct monitor_request *req, json_t *args, json_t **ret,
			  struct error **errp);
/* qmp-blockjob.c: external snapshots and block jobs (daemon/blockjob.c). */
int qmp_blockdev_snapshot(struct monitor_request *req, json_t *args, json_t **ret,
			  struct error **errp);
int qmp_blockdev_snapshot_sync(struct monitor_request *req, json_t *args, json_t **ret,
			       struct error **errp);
int qmp_transaction(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_snapshot_save(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_snapshot_load(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_snapshot_delete(struct monitor_request *req, json_t *args, json_t **ret,
			struct error **errp);
int qmp_block_stream(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_block_commit(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_blockdev_mirror(struct monitor_request *req, json_t *args, json_t **ret,
			struct error **errp);
int qmp_drive_mirror(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_blockdev_backup(struct monitor_request *req, json_t *args, json_t **ret,
			struct error **errp);
int qmp_drive_backup(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int qmp_block_dirty_bitmap_add(struct monitor_request *req, json_t *args, json_t **ret,
			       struct error **errp);
int qmp_block_dirty_bitmap_remove(struct monitor_request *req, json_t *args, json_t **ret,
				  struct error **errp);
int qmp_block_dirty_bitmap_clear(struct monitor_request *req, json_t *args, json_t **ret,
				 struct error **errp);
int qmp_block_dirty_bitmap_enable(struct monitor_request *req, json_t *args, json_t **ret,
				  struct error **errp);
int qmp_block_dirty_bitmap_disable(struct monitor_request *req, json_t *args, json_t **ret,
				   struct error **errp);
int qmp_block_dirty_bitmap_merge(struct monitor_request *req, json_t *args, json_t **ret,
				 struct error **errp);
int qmp_nbd_server_start(struct monitor_request *req, json_t *args, json_t **ret,
			 struct error **errp);
int qmp_nbd_server_stop(struct monitor_request *req, json_t *args, json_t **ret,
			struct error **errp);
int qmp_nbd_server_add(struct monitor_request *req, json_t *args, json_t **ret,
		       struct error **errp);
int qmp_nbd_server_remove(struct monitor_request *req, json_t *args, json_t **ret,
			  struct error **errp);
int qmp_block_export_add(struct monitor_request *req, json_t *args, json_t **ret,
			 struct error **errp);
int qmp_block_export_del(struct monitor_request *req, json_t *args, json_t **ret,
			 struct error **errp);
int qmp_query_block_exports(struct monitor_request *req, json_t *args, json_t **ret,
			    struct error **errp);
int qmp_blockdev_snapshot_internal_sync(struct monitor_request *req, json_t *args, json_t **ret,
					struct error **errp);
int qmp_blockdev_snapshot_delete_internal_sync(struct monitor_request *req, json_t *args,
					       json_t **ret, struct error **errp);
int qmp_query_current_machine(struct monitor_request *req, json_t *args, json_t **ret,
			      struct error **errp);
int qmp_system_wakeup(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
