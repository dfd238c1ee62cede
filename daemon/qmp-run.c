/*
 * The VM commands of the protocol, with QEMU's names and semantics:
 * query-status, stop, cont, system_reset, system_powerdown, quit; and the
 * block queries. req->vm is the struct registry_vm the monitor selected
 * (qmp_find_vm). Control thread only; none of them waits on guest I/O, and
 * stop's wait for the vCPUs to park runs on a worker (registry_pause_async).
 */
#include "config.h"

#include <errno.h>

#include "daemon/qmp.h"
#include "daemon/registry.h"

/* The live VM object, or DeviceNotActive (QEMU has no "defined but not running"). */
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

/* A VM waiting for migrate-incoming (QEMU's -incoming): no VM object yet. */
static bool waits_incoming(struct monitor_request *req)
{
	struct registry_vm *rv = req->vm;

	return !rv->vm && registry_vm_state(rv) == VM_STATE_INMIGRATE;
}

/* QEMU's autostart of a VM waiting for migrate-incoming: stop clears it, cont sets it. */
static void set_autostart(struct monitor_request *req, bool on)
{
	struct registry_vm *rv = req->vm;

	rv->incoming_stopped = !on;
}

int qmp_query_status(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	enum vm_run_state st = registry_vm_state(req->vm);

	*ret = json_pack("{s:b, s:b, s:s}", "running", st == VM_STATE_RUNNING, "singlestep", 0,
			 "status", vm_run_state_name(st));
	return 0;
}

/* QEMU's refusal of stop and cont while a dump runs. */
static int dumping(struct monitor_request *req, struct error **errp)
{
	if (qmp_dump_active(req->vm)) {
		return error_set(errp, EBUSY, "There is a dump in process, please wait.");
	}
	return 0;
}

/* HMP's stop: answered in the same call, so the pause is waited for here. */
int qmp_stop_now(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct vm *vm;

	if (waits_incoming(req)) {
		set_autostart(req, false);
		return 0;
	}
	if (dumping(req, errp) < 0) {
		return -EBUSY;
	}
	vm = live_vm(req, errp);
	if (!vm) {
		return -ENODEV;
	}
	if (vm_get_state(vm) == VM_STATE_PAUSED || vm_get_state(vm) == VM_STATE_PRELAUNCH) {
		return 0;
	}
	return vm_pause(vm, errp);
}

static void stopped(void *opaque, struct registry_vm *rv, int r, struct error *err)
{
	monitor_deferred_done(opaque, r, NULL, err);
}

int qmp_stop(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct monitor_deferred *d;
	struct vm *vm;
	int r;

	if (waits_incoming(req)) {
		/* QEMU clears autostart: the VM arrives paused, with no event now */
		set_autostart(req, false);
		return 0;
	}
	if (dumping(req, errp) < 0) {
		return -EBUSY;
	}
	vm = live_vm(req, errp);
	if (!vm) {
		return -ENODEV;
	}
	/*
	 * Like QEMU, stopping a stopped VM is not an error; in prelaunch (after
	 * a reset) it changes nothing: the VM stays in prelaunch.
	 */
	if (vm_get_state(vm) == VM_STATE_PAUSED || vm_get_state(vm) == VM_STATE_PRELAUNCH) {
		return 0;
	}
	/* The vCPUs park on their own time: answered when they have, from a worker. */
	d = monitor_defer(req);
	if (!d) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	r = registry_pause_async(req->vm, stopped, d, errp);
	if (r < 0) {
		monitor_deferred_cancel(d);
		return r;
	}
	return MONITOR_DEFERRED;
}

int qmp_cont(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct vm *vm;

	if (waits_incoming(req)) {
		/* QEMU sets autostart: the VM runs once migrated (if the source ran) */
		set_autostart(req, true);
		return 0;
	}
	if (dumping(req, errp) < 0) {
		return -EBUSY;
	}
	vm = live_vm(req, errp);
	if (!vm) {
		return -ENODEV;
	}
	switch (vm_get_state(vm)) {
	case VM_STATE_RUNNING:
		return 0;
	case VM_STATE_PRELAUNCH:
		return vm_start(vm, errp);
	case VM_STATE_PAUSED:
	case VM_STATE_IO_ERROR:	      /* QEMU retries the failed requests on cont */
	case VM_STATE_RESTORE_VM:     /* a failed snapshot-load */
	case VM_STATE_GUEST_PANICKED: /* QEMU 7.2 runs a panicked guest on */
		return vm_resume(vm, errp);
	case VM_STATE_INTERNAL_ERROR:
	case VM_STATE_SHUTDOWN:
		/* QEMU's runstate_needs_reset() */
		return error_set(errp, EINVAL, "Resetting the Virtual Machine is required");
	default:
		return error_set(errp, EINVAL, "VM '%s' is in state %s; reset or destroy it first",
				 vm_name(vm), vm_run_state_name(vm_get_state(vm)));
	}
}

int qmp_system_reset(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct registry_vm *rv = req->vm;
	struct vm *vm;

	if (waits_incoming(req)) {
		/* QEMU 7.2 resets the machine it has not loaded yet: RESET, still inmigrate */
		registry_queue_event(
			req->ctx, rv->name, "RESET",
			json_pack("{s:b, s:s}", "guest", 0, "reason", "host-qmp-system-reset"));
		return 0;
	}
	vm = live_vm(req, errp);
	return vm ? vm_reset(vm, errp) : -ENODEV;
}

int qmp_system_powerdown(struct monitor_request *req, json_t *args, json_t **ret,
			 struct error **errp)
{
	struct vm *vm = live_vm(req, errp);

	return vm ? vm_powerdown(vm, errp) : -ENODEV;
}

int qmp_inject_nmi(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct vm *vm = live_vm(req, errp);

	return vm ? vm_inject_nmi(vm, errp) : -ENODEV;
}

static void quit_after(struct monitor_request *req)
{
	registry_destroy_async(req->vm, "host-qmp-quit", NULL, NULL, NULL);
}

int qmp_quit(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	if (!live_vm(req, errp)) {
		return -ENODEV;
	}
	/* As QEMU: answer first, then end the VM (SHUTDOWN, the per-VM socket closes). */
	req->after = quit_after;
	return 0;
}

int qmp_query_block(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct vm *vm = live_vm(req, errp);

	if (!vm) {
		return -ENODEV;
	}
	*ret = vm_query_block(vm);
	return *ret ? 0 : error_set(errp, EIO, "query-block failed");
}

int qmp_query_blockstats(struct monitor_request *req, json_t *args, json_t **ret,
			 struct error **errp)
{
	struct vm *vm = live_vm(req, errp);

	if (!vm) {
		return -ENODEV;
	}
	*ret = vm_query_blockstats(vm);
	return *ret ? 0 : error_set(errp, EIO, "query-blockstats failed");
}
