/*
 * vCPU hotplug (hw/cpu-hotplug.h). The topology is QEMU's for
 * -smp vcpus,sockets=1,cores=maxcpus,threads=1: vCPU n is socket 0, core
 * n, thread 0, APIC ID n (as CPUID reports it, hw/core/cpuid.c).
 *
 * Plug: device_add creates the vCPU (or reuses the one parked by an
 * earlier unplug: KVM cannot destroy a vCPU) in wait-for-SIPI, starts its
 * thread and sets its insert event (GPE0 bit 2); the guest's OS brings it
 * up with INIT-SIPI-SIPI. Unplug: device_del sets the remove event and
 * returns; the guest offlines the CPU and ejects it (control bit 3), or
 * reports a failure with _OST (ACPI_DEVICE_OST as QEMU, and
 * DEVICE_UNPLUG_GUEST_ERROR, which QEMU 7.2 does not send for CPUs). The
 * eject emits DEVICE_DELETED at once (QEMU's order of events); the vCPU
 * thread is stopped and joined on the control thread right after
 * (cpu_hotplug_poll), and every command that looks at vCPUs finishes that
 * first, so the id is free again as QEMU documents. A repeated device_del
 * re-raises the request. A reset does not complete a
 * removal (QEMU's CPU hotplug has no reset hook either).
 *
 * Threads: see the header. c->lock protects ids[] against the _OST
 * callback on vCPU threads; the bit masks are atomics.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/parse.h"
#include "common/util.h"
#include "hw/core/vm-devices.h"
#include "hw/cpu-hotplug.h"
#include "hw/devices.h"
#include "hw/platform/acpi-cpuhp.h"
#include "hw/platform/acpi.h"

#define CPU_TYPE_SUFFIX "-x86_64-cpu"
#define CPU_ID_MAX 63

struct cpu_hotplug {
	struct vm *vm;
	struct acpi_cpuhp *regs;
	unsigned max, cold;
	char type[80]; /* QEMU's type name of this VM's CPU model */
	pthread_mutex_t lock;
	char *ids[ACPI_MAX_CPUS];  /* id of a hot-plugged vCPU (under lock) */
	char *gone[ACPI_MAX_CPUS]; /* id of an ejected vCPU not yet stopped (under lock) */
	bool pending[ACPI_MAX_CPUS];
	atomic_uint_fast64_t ejected; /* bit per vCPU the guest ejected */
};

/* "host,+x2apic" -> "host-x86_64-cpu" */
static void type_name(const char *model, char *buf, size_t len)
{
	size_t n = strcspn(model, ",");

	snprintf(buf, len, "%.*s%s", (int)MIN(n, 32), model, CPU_TYPE_SUFFIX);
}

bool cpu_hotplug_is_cpu_driver(const char *driver)
{
	size_t n = strlen(driver), s = strlen(CPU_TYPE_SUFFIX);

	return n > s && strcmp(driver + n - s, CPU_TYPE_SUFFIX) == 0;
}

static void path_of(struct cpu_hotplug *c, unsigned cpu, char *buf, size_t len)
{
	if (c && c->ids[cpu]) {
		snprintf(buf, len, "/machine/peripheral/%s", c->ids[cpu]);
	} else {
		snprintf(buf, len, "/machine/cpu[%u]", cpu); /* as query-cpus-fast names it */
	}
}

/* --- register callbacks: vCPU threads ------------------------------------------- */

/*
 * The guest ejected @cpu: for it the CPU is gone, and QEMU's events follow
 * at once, in QEMU's order (the lapic child, then the CPU), before any
 * later _OST report of the guest. The id moves to gone[] and is free for
 * device_add, which first finishes the removal (cpu_hotplug_poll: the
 * vCPU thread stops); the control thread is poked to do that anyway.
 */
static void on_eject(void *opaque, unsigned cpu)
{
	struct cpu_hotplug *c = opaque;
	const struct vm_host *host = vm_get_host(c->vm);
	char path[128], child[160];
	char *id;

	pthread_mutex_lock(&c->lock);
	path_of(c, cpu, path, sizeof(path));
	id = c->ids[cpu];
	c->ids[cpu] = NULL;
	c->pending[cpu] = false;
	free(c->gone[cpu]);
	c->gone[cpu] = id;
	atomic_fetch_or(&c->ejected, 1ull << cpu);
	/* emitted under the lock: a concurrent _OST report cannot overtake them */
	snprintf(child, sizeof(child), "%s/lapic", path);
	vm_emit_event(c->vm, "DEVICE_DELETED", json_pack("{s:s}", "path", child));
	vm_emit_event(c->vm, "DEVICE_DELETED",
		      id ? json_pack("{s:s, s:s}", "device", id, "path", path)
			 : json_pack("{s:s}", "path", path));
	/* under the lock too: the control thread frees gone[] once the vCPU is stopped */
	log_full(LOG_INFO, vm_name(c->vm), id, "vCPU %u ejected by the guest", cpu);
	pthread_mutex_unlock(&c->lock);
	if (host->hotplug_pending) {
		host->hotplug_pending(host->opaque, c->vm);
	}
}

/*
 * QEMU's ACPI_DEVICE_OST for every _OST status write, and, when the guest
 * reports that it could not eject (the eject request or the ejection
 * failed), DEVICE_UNPLUG_GUEST_ERROR for the pending removal.
 */
static void on_ost(void *opaque, unsigned cpu, uint32_t event, uint32_t status)
{
	struct cpu_hotplug *c = opaque;
	char slot[16], path[128];
	json_t *info, *err = NULL;

	snprintf(slot, sizeof(slot), "%u", cpu);
	info = json_pack("{s:s, s:s, s:I, s:I}", "slot", slot, "slot-type", "CPU", "source",
			 (json_int_t)event, "status", (json_int_t)status);
	pthread_mutex_lock(&c->lock);
	if (info && c->ids[cpu]) {
		json_object_set_new(info, "device", json_string(c->ids[cpu]));
	}
	if (c->pending[cpu] &&
	    (event == ACPI_OST_EJECT_REQUEST || event == ACPI_OST_EJECT_PROCESSING) &&
	    status != ACPI_OST_SUCCESS && status != ACPI_OST_IN_PROGRESS) {
		path_of(c, cpu, path, sizeof(path));
		err = json_pack("{s:s}", "path", path);
		if (err && c->ids[cpu]) {
			json_object_set_new(err, "device", json_string(c->ids[cpu]));
		}
	}
	if (info) {
		vm_emit_event(c->vm, "ACPI_DEVICE_OST", json_pack("{s:o}", "info", info));
	}
	if (err) {
		vm_emit_event(c->vm, "DEVICE_UNPLUG_GUEST_ERROR", err);
	}
	pthread_mutex_unlock(&c->lock);
}

static const struct acpi_cpuhp_handlers handlers = {
	.eject = on_eject,
	.ost = on_ost,
};

/* --- life cycle -------------------------------------------------------------------- */

int cpu_hotplug_new(struct vm *vm, struct cpu_hotplug **ret, struct error **errp)
{
	const struct vm_config *cfg = vm_get_config(vm);
	struct acpi_cpuhp *regs = vm_device_state(vm, &acpi_cpuhp_class);
	struct cpu_hotplug *c;

	*ret = NULL;
	if (!regs) {
		return 0;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	c->vm = vm;
	c->regs = regs;
	c->max = MIN(cfg->maxcpus, ACPI_MAX_CPUS);
	c->cold = cfg->vcpus;
	type_name(cfg->cpu, c->type, sizeof(c->type));
	pthread_mutex_init(&c->lock, NULL);
	acpi_cpuhp_set_handlers(regs, &handlers, c);
	*ret = c;
	return 0;
}

void cpu_hotplug_free(struct cpu_hotplug *c)
{
	if (!c) {
		return;
	}
	/* the register block is gone already (devices are unrealized first) */
	for (unsigned i = 0; i < ACPI_MAX_CPUS; i++) {
		free(c->ids[i]);
		free(c->gone[i]);
	}
	pthread_mutex_destroy(&c->lock);
	free(c);
}

/* The vCPU whose id is @id, or -1. */
static int cpu_by_id(struct cpu_hotplug *c, const char *id)
{
	int cpu = -1;

	if (!c) {
		return -1;
	}
	pthread_mutex_lock(&c->lock);
	for (unsigned i = 0; i < c->max; i++) {
		if (c->ids[i] && strcmp(c->ids[i], id) == 0) {
			cpu = (int)i;
			break;
		}
	}
	pthread_mutex_unlock(&c->lock);
	return cpu;
}

bool cpu_hotplug_has_id(struct cpu_hotplug *c, const char *id)
{
	return cpu_by_id(c, id) >= 0;
}

/* --- device_add ------------------------------------------------------------------------ */

/* One topology property: -1 when absent; its QEMU error when out of range. */
static int get_topo(json_t *args, const char *key, unsigned limit, json_int_t *ret,
		    struct error **errp)
{
	json_t *v = json_object_get(args, key);

	*ret = -1;
	if (!v) {
		return 0;
	}
	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX) {
		return error_set(errp, EINVAL, "Parameter '%s' expects int32", key);
	}
	*ret = json_integer_value(v);
	if (*ret > (json_int_t)limit - 1) {
		return error_set(errp, ERANGE,
				 "Invalid CPU %s: %" JSON_INTEGER_FORMAT " must be in range 0:%u",
				 key, *ret, limit - 1);
	}
	return 0;
}

int cpu_hotplug_add(struct vm *vm, struct cpu_hotplug *c, json_t *args, struct error **errp)
{
	const char *driver = json_string_value(json_object_get(args, "driver"));
	const char *id = json_string_value(json_object_get(args, "id"));
	json_int_t socket, core, thread;
	char path[128], *dup;
	const char *key;
	json_t *v;
	int r;

	json_object_foreach (args, key, v) {
		if (strcmp(key, "driver") && strcmp(key, "id") && strcmp(key, "socket-id") &&
		    strcmp(key, "core-id") && strcmp(key, "thread-id")) {
			return error_set(errp, EINVAL, "Property '%s.%s' not found", driver, key);
		}
	}
	if (json_object_get(args, "id") && !id) {
		return error_set(errp, EINVAL, "Parameter 'id' expects a string");
	}
	if (!c) {
		/* QEMU with maxcpus == vcpus: no free slot at all */
		return error_set(
			errp, ENOTSUP,
			"VM \"%s\" has no vCPU to hot-plug (set \"maxcpus\" above \"vcpus\")",
			vm_name(vm));
	}
	if (strcmp(driver, c->type) != 0) {
		return error_set(errp, EINVAL, "Invalid CPU type, expected cpu type: '%s'",
				 c->type);
	}
	if (!id) {
		/* QEMU allows no id; without one device_del could never name it. */
		return error_set(errp, EINVAL, "Parameter 'id' is missing (vmmd needs it)");
	}
	if (!parse_id_ok(id, CPU_ID_MAX)) {
		return error_set(errp, EINVAL, "Parameter 'id' expects an identifier");
	}
	/* QEMU's order of checks (pc_cpu_pre_plug): socket, core, thread; then the slot */
	if ((r = get_topo(args, "socket-id", 1, &socket, errp)) < 0) {
		return r;
	}
	if (socket < 0) {
		return error_set(errp, EINVAL, "CPU socket-id is not set");
	}
	if ((r = get_topo(args, "core-id", c->max, &core, errp)) < 0) {
		return r;
	}
	if (core < 0) {
		return error_set(errp, EINVAL, "CPU core-id is not set");
	}
	if ((r = get_topo(args, "thread-id", 1, &thread, errp)) < 0) {
		return r;
	}
	if (thread < 0) {
		return error_set(errp, EINVAL, "CPU thread-id is not set");
	}
	if (cpu_hotplug_has_id(c, id)) {
		return error_set(errp, EEXIST, "Duplicate device ID '%s'", id);
	}
	if (vm_vcpu_present(vm, (unsigned)core)) {
		return error_set(errp, EEXIST, "CPU[%u] with APIC ID %u exists", (unsigned)core,
				 (unsigned)core);
	}
	dup = strdup(id);
	if (!dup) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	snprintf(path, sizeof(path), "/machine/peripheral/%s", id);
	r = vm_vcpu_plug(vm, (unsigned)core, path, errp);
	if (r < 0) {
		free(dup);
		return r;
	}
	pthread_mutex_lock(&c->lock);
	c->ids[core] = dup;
	c->pending[core] = false;
	pthread_mutex_unlock(&c->lock);
	acpi_cpuhp_plug(c->regs, (unsigned)core);
	log_full(LOG_INFO, vm_name(vm), id, "vCPU %u hot-plugged", (unsigned)core);
	return 0;
}

/* --- device_del and the removal ------------------------------------------------------ */

int cpu_hotplug_del(struct vm *vm, struct cpu_hotplug *c, const char *id, struct error **errp)
{
	int cpu = cpu_by_id(c, id);

	if (cpu < 0) {
		return error_set_class(errp, ERROR_CLASS_DEVICE_NOT_FOUND, ENOENT,
				       "Device '%s' not found", id);
	}
	if (!acpi_cpuhp_modern(c->regs)) {
		/* QEMU's PIIX4 before the guest switched from the legacy interface */
		return error_set(errp, ENOTSUP,
				 "acpi: device unplug request for not supported device type: %s",
				 c->type);
	}
	/* Repeating the request re-raises it (the guest may have missed the first). */
	pthread_mutex_lock(&c->lock);
	c->pending[cpu] = true;
	pthread_mutex_unlock(&c->lock);
	acpi_cpuhp_unplug_request(c->regs, (unsigned)cpu);
	log_full(LOG_INFO, vm_name(vm), id, "removal of vCPU %d requested from the guest", cpu);
	return 0;
}

void cpu_hotplug_poll(struct vm *vm, struct cpu_hotplug *c)
{
	uint64_t ejected;

	if (!c) {
		return;
	}
	ejected = atomic_exchange(&c->ejected, 0);
	if (!ejected) {
		return;
	}
	vm_devices_lock(vm);
	for (unsigned i = 1; i < c->max; i++) {
		if (!(ejected & (1ull << i))) {
			continue;
		}
		/* The thread stops and is joined; the fd stays parked for a later plug. */
		vm_vcpu_unplug(vm, i);
		acpi_cpuhp_unplugged(c->regs, i);
		pthread_mutex_lock(&c->lock);
		free(c->gone[i]);
		c->gone[i] = NULL;
		pthread_mutex_unlock(&c->lock);
	}
	vm_devices_unlock(vm);
}

int cpu_hotplug_adopt(struct vm *vm, struct cpu_hotplug *c, struct error **errp)
{
	const size_t n = strlen("/machine/peripheral/");

	for (unsigned i = 0; c && i < c->max; i++) {
		const char *path = vm_vcpu_qom_path(vm, i);
		char *id;

		if (!path || strncmp(path, "/machine/peripheral/", n) != 0 ||
		    !parse_id_ok(path + n, CPU_ID_MAX)) {
			continue;
		}
		/* without its id the vCPU could not be named to device_del: fail the restore */
		id = strdup(path + n);
		if (!id) {
			return error_set(errp, ENOMEM, "out of memory");
		}
		pthread_mutex_lock(&c->lock);
		free(c->ids[i]);
		c->ids[i] = id;
		pthread_mutex_unlock(&c->lock);
	}
	return 0;
}

/* --- query-hotpluggable-cpus --------------------------------------------------------- */

json_t *cpu_hotplug_query(struct vm *vm, struct cpu_hotplug *c)
{
	const struct vm_config *cfg = vm_get_config(vm);
	unsigned max = c ? c->max : cfg->vcpus;
	char type[80], path[128];
	json_t *a = json_array();

	type_name(cfg->cpu, type, sizeof(type));
	for (unsigned i = max; a && i-- > 0;) {
		json_t *e =
			json_pack("{s:{s:i, s:i, s:i}, s:i, s:s}", "props", "core-id", (int)i,
				  "thread-id", 0, "socket-id", 0, "vcpus-count", 1, "type", type);

		if (e && vm_vcpu_present(vm, i)) {
			path_of(c, i, path, sizeof(path));
			json_object_set_new(e, "qom-path", json_string(path));
		}
		json_array_append_new(a, e);
	}
	return a;
}
