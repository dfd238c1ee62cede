/*
 * The registry of named VMs: definitions persisted atomically under
 * <state-dir>/vms/NAME.json, the live VM object of each one that runs, and
 * the hand-over of VM events (raised on VM threads) to the control thread.
 *
 * Threads: every function here runs on the control thread. The only entry
 * from other threads is the vm_host.event callback, which queues the event
 * and wakes the control thread through an eventfd.
 */
#pragma once

#include <stdbool.h>

#include <jansson.h>

#include "common/error.h"
#include "common/list.h"
#include "vmmd/vm.h"

struct event_base;
struct registry;
struct registry_op;

/* What the registry tells the rest of the daemon (the monitor, systemd). */
struct registry_hooks {
	/* A VM event (data is a new reference the callee takes, without "vm"). */
	void (*event)(void *opaque, const char *vm, const char *name, json_t *data);
	/*
	 * A VM object came to life (serve its per-VM socket: @fd, taken, made by
	 * vm_bind; or -1, open one now) or went away.
	 */
	int (*vm_up)(void *opaque, const char *vm, int fd, struct error **errp);
	/*
	 * On the worker building a VM: create its per-VM socket file (file-system
	 * calls stay off the control thread); a listening fd. May be NULL.
	 */
	int (*vm_bind)(void *opaque, const char *vm, mode_t mode, gid_t gid, struct error **errp);
	void (*vm_down)(void *opaque, const char *vm);
	/* The number of running VMs changed (STATUS=). May be NULL. */
	void (*changed)(void *opaque);
	/* Resolve a getfd name for the VM being built; a new fd or -ENOENT. May be NULL. */
	int (*get_fd)(void *opaque, const char *name);
	void *opaque;
};

struct registry_limits {
	unsigned max_vms;
	char **image_roots;	/* NULL-terminated, NULL or empty = no restriction; copied */
	mode_t socket_mode;	/* of VM sockets (console), 0 = 0600 */
	gid_t socket_gid;	/* (gid_t)-1 = the daemon's group */
	uint64_t populate_rate; /* vm_host.populate_rate of VMs restored from now on */
	int job_nice;		/* VM setup and teardown run this much below the VMs (0..19) */
	unsigned start_timeout; /* seconds a start's setup may take before it is answered (0: 60) */
};

struct registry_vm {
	struct list_head link;
	struct registry *reg;
	char *name;
	json_t *def;	       /* canonical definition, as persisted */
	struct vm_config *cfg; /* parsed from def */
	struct vm *vm;	       /* NULL when not instantiated (state "shutdown") */
	struct registry_instance *inst;
	enum {
		REGISTRY_IDLE,
		REGISTRY_STARTING,
		REGISTRY_STOPPING,
		REGISTRY_DEFINING,  /* its definition is being written */
		REGISTRY_DELETING,  /* its files are being removed */
		REGISTRY_SAVING,    /* vm-save writes it on a worker */
		REGISTRY_RESTORING, /* vm-restore builds it on a worker */
		REGISTRY_PAUSING,   /* stop waits for its vCPUs on a worker */
	} busy;			    /* on a worker */
	uint64_t define_ns;	    /* registry_create: when asked, then how long the file took */
	/* A vm-start that came while stopping: run once the VM is down. */
	bool start_pending;
	bool deleting;	      /* destroyed and then deleted (vm-delete with force) */
	bool ran_at_shutdown; /* registry_shutdown_keep: running before the daemon paused it */
	void (*pending_done)(void *opaque, struct registry_vm *rv, int r, struct error *err);
	void *pending_opaque;
	/* A destroy waiting for the VM's jobs to end (they were cancelled). */
	struct registry_op *destroy_pending;
	struct def_writer *writer; /* rewrites of its definition file (registry.c) */
	/* An external snapshot switches its disks on a worker (registry_disks_begin). */
	bool disks_busy;
	const char *disks_busy_what; /* what holds them (NULL: a snapshot) */
	/* HMP x and xp: the last format and size (QEMU's defaults: 0 = 'x', 4) */
	char hmp_format;
	uint8_t hmp_size;
	/* dump-guest-memory (daemon/qmp-dump.c): the one under way, or NULL */
	struct dump_job *dump;
	struct {
		const char *status; /* "completed" or "failed"; NULL: none yet */
		uint64_t total, completed;
	} dump_last; /* the last one that ended (query-dump) */
	/* Live migration (daemon/migration.c). */
	struct migration *mig; /* the last or current migration, or NULL */
	bool inmigrate;	       /* started with "incoming": waits for migrate-incoming */
	/*
	 * QEMU's autostart while it waits: stop clears it, cont sets it; a VM
	 * whose source ran runs on arrival only with it (reset on arrival).
	 */
	bool incoming_stopped;
	uint64_t mig_max_bandwidth; /* migrate-set-parameters; 0 = default */
	uint64_t mig_downtime_limit;
	uint64_t mig_xbzrle_cache_size; /* 0 = default */
	/* announce-* (migrate-set-parameters): the destination's, after it runs the VM */
	struct vm_announce_params mig_announce;
	bool mig_announce_set; /* false: QEMU's defaults */
	char *mig_tls_creds;   /* an object-add id, or NULL/"": no TLS */
	char *mig_tls_hostname;
	char *mig_tls_authz; /* an authorization object's id, or NULL/"": none */
	/* migrate-set-capabilities: auto-converge; xbzrle; events (vmmd's default: on) */
	bool mig_auto_converge;
	bool mig_xbzrle;
	bool mig_no_events;
	/* auto-converge's parameters (migrate-set-parameters); 0 = QEMU's default */
	uint8_t mig_throttle_threshold, mig_throttle_initial, mig_throttle_increment,
		mig_max_throttle;
	bool mig_throttle_tailslow;
	/* nbd-server-start (daemon/qmp-nbd.c); busy while one starts or stops */
	struct nbd_server *nbd;
	bool nbd_busy;
	/* An incoming VM's disks opened before it came (registry_early_node_add). */
	struct registry_early_node *early;
	unsigned n_early;
};

/*
 * How an operation that ran on a worker thread ended (control thread): @rv is
 * NULL when the VM was deleted; @err (taken) is set when r < 0.
 */
typedef void (*registry_done_fn)(void *opaque, struct registry_vm *rv, int r, struct error *err);

/* Names a VM may have: [A-Za-z0-9][A-Za-z0-9._-]*, at most 64 bytes. */
bool registry_name_valid(const char *name);

/*
 * Create the registry over @state_dir and @run_dir (both created if missing,
 * with <dir>/vms below them). @hooks is borrowed for the registry's lifetime.
 */
int registry_new(struct event_base *base, const char *state_dir, const char *run_dir,
		 const struct registry_limits *limits, const struct registry_hooks *hooks,
		 struct registry **ret, struct error **errp);
void registry_free(struct registry *reg);
int registry_set_limits(struct registry *reg, const struct registry_limits *limits,
			struct error **errp);

/*
 * Load every definition under <state-dir>/vms. A definition that fails to
 * parse is logged and skipped (the file is left alone). Returns the count.
 */
int registry_load(struct registry *reg);
/* Start every loaded VM with "autostart": true; failures are logged. */
void registry_autostart(struct registry *reg);

struct registry_vm *registry_find(struct registry *reg, const char *name);

/*
 * Define a VM from @def (borrowed; "start" is the daemon's own key, left to
 * the caller: registry_start_async): checked now, *ret reserved at once,
 * persisted (fsync) on a worker thread; done reports the end (@rv NULL and
 * nothing kept on failure). An error now returns < 0 and done is not called.
 */
int registry_create(struct registry *reg, json_t *def, registry_done_fn done, void *opaque,
		    struct registry_vm **ret, struct error **errp);
/*
 * Instantiate and boot a defined VM: vm_new (disks, NBD connects, kernel,
 * KVM objects) on a worker thread, then its socket and vCPUs here; done
 * (may be NULL) reports the end. An error now returns < 0 and done is not
 * called. A start that takes over a minute gets an ETIMEDOUT answer; the
 * VM is then stopped when its setup returns.
 */
int registry_start_async(struct registry_vm *rv, registry_done_fn done, void *opaque,
			 struct error **errp);
/*
 * QMP stop: vm_pause, which waits until every vCPU thread has parked (on a
 * loaded host, until each gets a time slice), on a worker thread; done
 * reports the end. A destroy that comes meanwhile runs after it. An error
 * now returns < 0 and done is not called.
 */
int registry_pause_async(struct registry_vm *rv, registry_done_fn done, void *opaque,
			 struct error **errp);
/*
 * Hard stop: vm_destroy on a worker thread (a backend that does not answer
 * delays only this VM), then event SHUTDOWN, state "shutdown", done.
 */
int registry_destroy_async(struct registry_vm *rv, const char *reason, registry_done_fn done,
			   void *opaque, struct error **errp);
/*
 * Remove the definition, its file and the console log vmmd chose, on a
 * worker thread; refused while running unless @force (then it is destroyed
 * first). done reports the end, after which @rv is gone.
 */
int registry_delete(struct registry_vm *rv, bool force, registry_done_fn done, void *opaque,
		    struct error **errp);

/*
 * The persisted definition follows hotplug: device @id (just hot-added to
 * the running VM) joins "disks" or "nics"; a removed device leaves them.
 * In memory at once; the file is written on a worker. True if
 * @done(@opaque) will run (control thread) once the file is written, false
 * if not. Failures are logged (the running VM has changed either way).
 */
bool registry_device_added(struct registry_vm *rv, const char *id, void (*done)(void *opaque),
			   void *opaque);
bool registry_device_removed(struct registry_vm *rv, const char *id, void (*done)(void *opaque),
			     void *opaque);
/* The definition follows qom-set of a memory device's requested-size (@done as above). */
bool registry_memdev_resized(struct registry_vm *rv, const char *id, uint64_t requested,
			     void (*done)(void *opaque), void *opaque);

/*
 * Run fn(arg) on a worker thread, then done(arg) on the control thread
 * (blocking work of a command, e.g. blockdev-add's open).
 */
int registry_run(struct registry *reg, void (*fn)(void *arg), void (*done)(void *arg), void *arg,
		 struct error **errp);
/*
 * A change of a running VM's disks (an external snapshot: creating and
 * opening overlays, draining, switching) runs fn on a worker thread working
 * for the VM, then done on the control thread. From registry_disks_begin()
 * until registry_disks_end(): registry_disks_check() refuses what would
 * change the same disks (block jobs, hot-unplug, resize, media changes,
 * vm-save, migration), and a destroy of the VM waits for the end.
 */
int registry_disks_begin(struct registry_vm *rv, void (*fn)(void *arg), void (*done)(void *arg),
			 void *arg, struct error **errp);
void registry_disks_end(struct registry_vm *rv);
/*
 * registry_disks_begin for other work that needs the VM to stay (pmemsave
 * reading its memory on a worker): @what names it in the refusals
 * ("VM 'NAME' is WHAT; try again when that is done").
 */
int registry_vm_work_begin(struct registry_vm *rv, const char *what, void (*fn)(void *arg),
			   void (*done)(void *arg), void *arg, struct error **errp);
/* EBUSY "VM '...' is switching disks to a snapshot; try again when that is done". */
int registry_disks_check(struct registry_vm *rv, struct error **errp);
/* Which instance of the VM runs (0: none): a VM restarted since differs. */
uint64_t registry_vm_generation(struct registry_vm *rv);

enum vm_run_state registry_vm_state(struct registry_vm *rv);
/* VmInfo of one VM / all VMs (schema.json); new references. */
json_t *registry_vm_info(struct registry_vm *rv);
json_t *registry_query(struct registry *reg);
unsigned registry_count(struct registry *reg);
unsigned registry_running(struct registry *reg);
/* The per-VM QMP socket path (valid while the VM object exists). */
const char *registry_run_dir(struct registry *reg);

/*
 * A disk's image changed under the running VM (external snapshot, active
 * commit): the definition follows in memory, so the next start opens the
 * new top image; registry_write_definition() then writes the file.
 * @file NULL: an empty drive (a removed CD-ROM medium). Control thread.
 */
int registry_set_disk(struct registry_vm *rv, const char *id, const char *file, const char *format,
		      struct error **errp);
/*
 * block_set_io_throttle changed disk @id's I/O limits: the definition
 * follows in memory ("throttle", none when @l sets no limit); then
 * registry_write_definition(). Control thread.
 */
struct block_throttle_limits;
int registry_set_disk_throttle(struct registry_vm *rv, const char *id,
			       const struct block_throttle_limits *l, struct error **errp);
/*
 * Write @rv's definition as it is now to its file, on a worker thread;
 * then @done(@opaque) (may be NULL) on the control thread, written or not
 * (a failure is logged: the file keeps an older definition). < 0: no write
 * could start (logged), and no @done.
 */
int registry_write_definition(struct registry_vm *rv, void (*done)(void *opaque), void *opaque);
/*
 * A write of @rv's definition with disk @id on @file/@format, prepared on
 * the control thread and run on a worker (registry_def_write_run()) right
 * after the switch it records, before the control thread hears of it: an
 * active commit's pivot. It takes its turn when prepared: a change made
 * after that is never overwritten by it. Free with
 * registry_def_write_free() (any thread).
 */
struct def_write;
struct def_write *registry_disk_write_prepare(struct registry_vm *rv, const char *id,
					      const char *file, const char *format,
					      struct error **errp);
int registry_def_write_run(struct def_write *d, struct error **errp);
void registry_def_write_free(struct def_write *d);

/* The daemon's job table (daemon/jobs.h); jobs of a VM end when its VM object goes. */
struct jobs *registry_jobs(struct registry *reg);

/*
 * vm-save (docs/vmstate.md): pause the VM and write its state into the new
 * directory @dir on a worker thread; returns at once and the event
 * VM_SAVE_COMPLETED {path, status: "completed"|"failed", error?,
 * memory-bytes?, duration-ms} tells the outcome. Before it the VM runs
 * again if it ran, or, if @stop and the save succeeded, is destroyed
 * (SHUTDOWN comes first). While it runs the VM is busy ("saving"): vm-destroy,
 * vm-delete, cont and system_reset are refused.
 */
int registry_save(struct registry_vm *rv, const char *dir, bool stop, struct error **errp);
/*
 * vm-restore: define (or redefine, if defined and not running) the VM
 * saved in @dir under @name (NULL: the saved name) with the disk and NIC
 * overrides in @disks / @nics (arrays of {id, file[, format]} and {id,
 * ifname|fd}; borrowed, may be NULL), and build it from the saved state on
 * a worker thread: running, or paused if @paused. done reports the end (as
 * registry_start_async). All or nothing: on failure no VM, file or
 * definition is left behind (an existing definition stays as it was).
 */
int registry_restore_async(struct registry *reg, const char *dir, const char *name, json_t *disks,
			   json_t *nics, bool paused, registry_done_fn done, void *opaque,
			   struct error **errp);

/*
 * Live upgrade (daemon/upgrade.c, docs/upgrade.md). registry_await_takeover:
 * the new daemon's loaded, idle VM waits in inmigrate for the old daemon's
 * running copy (as if created with "incoming", without changing its
 * definition). registry_rearm_incoming: a rolled-back upgrade brings a VM
 * back; the old daemon drops its postmigrate VM object (SHUTDOWN "migrated")
 * and the VM waits in inmigrate again.
 */
int registry_await_takeover(struct registry_vm *rv, struct error **errp);
int registry_rearm_incoming(struct registry_vm *rv, struct error **errp);

/*
 * Daemon shutdown: pause every running VM, then destroy every VM object.
 * Definitions stay on disk.
 */
void registry_shutdown(struct registry *reg);
/*
 * The same, but first @keep(rv, ran, errp) for every VM that exists and is
 * not busy (@ran: it was running before the pause); the VM is destroyed
 * after it whatever it returns (daemon/keep.h).
 */
typedef int registry_keep_fn(struct registry_vm *rv, bool ran, struct error **errp);
void registry_shutdown_keep(struct registry *reg, registry_keep_fn *keep);

/*
 * Live migration's hooks (daemon/migration.c). registry_queue_event may be
 * called from any thread: the event is emitted on the control thread.
 * An incoming VM is built in three steps: registry_adopt_prepare (control
 * thread: the VM's instance, with the fds its definition names), then
 * vm_restore with registry_instance_host() on the migration's worker, then
 * registry_adopt (control thread: takes @inst and @vm, opens the VM's
 * socket, resumes it unless @paused; on failure destroys both).
 * registry_instance_free drops an instance that was never adopted.
 */
struct registry_instance;
/*
 * An incoming VM's disk opened while it waits for its migration (an NBD
 * export of it fills it from the source): registry_early_node_add keeps
 * @bs (the caller's reference, taken in every case) for disk @id, and the
 * VM's build uses it instead of opening the image again. Until the VM is
 * here or stops waiting; never once its migration started (EBUSY; the
 * node is then dropped on a worker). registry_early_node:
 * the node kept for @id (borrowed), or NULL. Control thread.
 */
int registry_early_node_add(struct registry_vm *rv, const char *id, struct block_node *bs,
			    struct error **errp);
struct block_node *registry_early_node(struct registry_vm *rv, const char *id);
/*
 * Stop @s (may be NULL) and drop the early nodes of @rv on a worker, as
 * the VM no longer needs them (control thread).
 */
void registry_nbd_release(struct registry_vm *rv, struct nbd_server *s);
void registry_queue_event(struct registry *reg, const char *vm, const char *name, json_t *data);
/* Emit the queued events now (control thread; the monitor's flush_events). */
void registry_flush_events(void *reg);
struct registry_instance *registry_adopt_prepare(struct registry_vm *rv, struct error **errp);
const struct vm_host *registry_instance_host(struct registry_instance *inst);
/* The instance's seccomp violation flag, for the thread that builds it (sandbox.h). */
int *registry_instance_violation_flag(struct registry_instance *inst);
void registry_instance_free(struct registry_instance *inst);
int registry_adopt(struct registry_vm *rv, struct registry_instance *inst, struct vm *vm,
		   bool paused, const char *from, struct error **errp);
/*
 * A tap fd the source handed over for NIC @nic_id (taken, closed on
 * failure: a second fd for the same NIC, more than REGISTRY_MAX_NIC_FDS):
 * the VM built with registry_instance_host() adopts it instead of opening
 * its tap. On the migration's worker, before vm_restore.
 */
#define REGISTRY_MAX_NIC_FDS 64
int registry_instance_add_nic_fd(struct registry_instance *inst, const char *nic_id, int fd,
				 struct error **errp);
/* Close the tap fds added so far (a failed incoming migration). */
void registry_instance_drop_nic_fds(struct registry_instance *inst);
struct event_base *registry_base(struct registry *reg);
/*
 * seccomp (sandbox.h): the violation flag of @rv's running instance, for
 * threads that work for it (block jobs, migration), or NULL; and the check
 * that ends the VM if it is set (after a migration, which defers it).
 * Control thread.
 */
int *registry_violation_flag(struct registry_vm *rv);
void registry_check_violation(struct registry_vm *rv);
