/*
 * The VM object: build-up in an explicit order that unwinds on failure,
 * run-state transitions with their QMP events, the I/O thread with its
 * event loop, and the handling of reset/shutdown/failure requests.
 *
 * Threads: the public API runs on the daemon's control thread and holds
 * ctl_lock across a transition; requests raised by any VM thread
 * (vm_request) are handled on the VM's I/O thread under the same lock.
 * vCPUs are parked/released under run_lock (see vm-int.h).
 */
#include "config.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/thread.h"
#include "common/util.h"
#include "hw/announce.h"
#include "hw/devices.h"
#include "hw/hotplug.h"
#include "hw/core/iobus.h"
#include "hw/core/memory.h"
#include "hw/core/vcpu.h"
#include "hw/core/vm-int.h"

/* ctl_lock held where the VM starts running. */
static void set_state(struct vm *vm, enum vm_run_state s)
{
	atomic_store(&vm->state, s);
	if (s == VM_STATE_RUNNING) {
		announce_resumed(vm->announce);
	}
}

enum vm_run_state vm_get_state(struct vm *vm)
{
	return atomic_load(&vm->state);
}

const char *vm_name(struct vm *vm)
{
	return vm->cfg->name;
}

struct iobus *vm_iobus(struct vm *vm)
{
	return vm->iobus;
}

void vm_set_pci_host(struct vm *vm, struct pci_host *host)
{
	vm->pci = host;
}

struct pci_host *vm_pci_host(struct vm *vm)
{
	return vm->pci;
}

struct guest_mem *vm_guest_mem(struct vm *vm)
{
	return vm->mem;
}

const struct vm_config *vm_get_config(struct vm *vm)
{
	return vm->cfg;
}

const struct vm_host *vm_get_host(struct vm *vm)
{
	return &vm->host;
}

struct event_base *vm_io_base(struct vm *vm)
{
	return vm->io_base;
}

/* Published by the console device (hw/isa/serial.c) in realize. */
const char *vm_console_socket(struct vm *vm)
{
	return vm->console_socket;
}

int vm_ringbuf_read(struct vm *vm, uint8_t *buf, size_t max, size_t *ret_len)
{
	if (!vm->ringbuf.read) {
		return -ENODEV;
	}
	*ret_len = vm->ringbuf.read(vm->ringbuf.opaque, buf, max);
	return 0;
}

int vm_ringbuf_write(struct vm *vm, const uint8_t *buf, size_t len)
{
	if (!vm->ringbuf.write) {
		return -ENODEV;
	}
	vm->ringbuf.write(vm->ringbuf.opaque, buf, len);
	return 0;
}

void vm_set_ringbuf(struct vm *vm, const struct vm_ringbuf *rb)
{
	vm->ringbuf = rb ? *rb : (struct vm_ringbuf){0};
}

void vm_set_console_socket(struct vm *vm, const char *path)
{
	free(vm->console_socket);
	vm->console_socket = path ? strdup(path) : NULL;
}

void vm_set_powerdown_handler(struct vm *vm, int (*fn)(void *opaque), void *opaque)
{
	vm->powerdown = fn;
	vm->powerdown_opaque = opaque;
}

void *vm_device_state(struct vm *vm, const struct device_class *cls)
{
	for (unsigned i = 0; i < vm->n_devices; i++) {
		if (vm->devices[i].cls == cls) {
			return vm->devices[i].state;
		}
	}
	return NULL;
}

int vm_map_rom(struct vm *vm, uint64_t gpa, void *host, uint64_t len, struct error **errp)
{
	struct kvm_userspace_memory_region slot = {
		.flags = KVM_MEM_READONLY,
		.guest_phys_addr = gpa,
		.memory_size = len,
		.userspace_addr = (uintptr_t)host,
	};
	int free_slot = -1;

	if (!IS_ALIGNED(gpa, 4096) || !IS_ALIGNED(len, 4096) || len == 0 ||
	    !IS_ALIGNED((uintptr_t)host, 4096)) {
		return error_set(errp, EINVAL,
				 "ROM at 0x%" PRIx64 "+0x%" PRIx64 " is not page-aligned", gpa,
				 len);
	}
	if (guest_mem_ptr(vm->mem, gpa, 1) || guest_mem_ptr(vm->mem, gpa + len - 1, 1)) {
		return error_set(errp, EEXIST, "ROM at 0x%" PRIx64 " overlaps guest RAM", gpa);
	}
	if (ioctl(vm->kvm.sys_fd, KVM_CHECK_EXTENSION, KVM_CAP_READONLY_MEM) <= 0) {
		return error_set_class(errp, ERROR_CLASS_KVM_MISSING_CAP, ENOTSUP,
				       "this host's KVM lacks KVM_CAP_READONLY_MEM, needed for "
				       "firmware");
	}
	for (int i = 0; i < VM_MAX_ROMS; i++) {
		if (vm->roms[i].len == 0) {
			free_slot = i;
			break;
		}
	}
	if (free_slot < 0) {
		return error_set(errp, ENOSPC, "more than %d ROMs", VM_MAX_ROMS);
	}
	slot.slot = VM_ROM_SLOT_BASE + (uint32_t)free_slot;
	if (ioctl(vm->kvm.vm_fd, KVM_SET_USER_MEMORY_REGION, &slot) < 0) {
		return error_set_errno(errp, errno, "cannot map a ROM at 0x%" PRIx64, gpa);
	}
	vm->roms[free_slot].gpa = gpa;
	vm->roms[free_slot].len = len;
	return 0;
}

void vm_unmap_rom(struct vm *vm, uint64_t gpa)
{
	for (int i = 0; i < VM_MAX_ROMS; i++) {
		if (vm->roms[i].len && vm->roms[i].gpa == gpa) {
			struct kvm_userspace_memory_region slot = {
				.slot = VM_ROM_SLOT_BASE + (uint32_t)i,
				.guest_phys_addr = gpa,
			};

			ioctl(vm->kvm.vm_fd, KVM_SET_USER_MEMORY_REGION, &slot);
			vm->roms[i].len = 0;
		}
	}
}

uint64_t vm_get_exit_count(struct vm *vm)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < vm->n_vcpus; i++) {
		n += atomic_load(&vm->vcpus[i]->exits);
	}
	return n;
}

void vm_emit_event(struct vm *vm, const char *name, json_t *data)
{
	if (!data) {
		data = json_object();
	}
	if (vm->host.event) {
		vm->host.event(vm->host.opaque, vm, name, data);
	} else {
		json_decref(data);
	}
}

static json_t *collect(struct vm *vm, bool stats)
{
	json_t *a = json_array();

	for (unsigned i = 0; i < vm->n_devices; i++) {
		const struct device_class *c = vm->devices[i].cls;
		json_t *(*fn)(void *) = stats ? c->query_blockstats : c->query_block;
		json_t *j = fn ? fn(vm->devices[i].state) : NULL;

		if (j && json_is_array(j)) {
			json_array_extend(a, j); /* a controller's drives */
			json_decref(j);
		} else if (j) {
			json_array_append_new(a, j);
		}
	}
	return a;
}

json_t *vm_query_cpus_fast(struct vm *vm)
{
	json_t *a = json_array();

	pthread_mutex_lock(&vm->run_lock);
	for (unsigned i = 0; a && i < vm->n_vcpus; i++) {
		const struct vcpu *v = vm->vcpus[i];
		char path[48];

		if (v->unplugged) {
			continue;
		}
		/* vmmd has no QOM tree: a path of the same shape naming the vCPU */
		snprintf(path, sizeof(path), "/machine/cpu[%u]", v->index);
		json_array_append_new(a, json_pack("{s:i, s:{s:i, s:i, s:i}, s:s, s:i, s:s}",
						   "thread-id", atomic_load(&v->tid), "props",
						   "core-id", (int)v->index, "thread-id", 0,
						   "socket-id", 0, "qom-path",
						   v->qom_path ? v->qom_path : path, "cpu-index",
						   (int)v->index, "target", "x86_64"));
	}
	pthread_mutex_unlock(&vm->run_lock);
	return a;
}

/* --- vCPU hotplug ---------------------------------------------------------- */

static struct vcpu *vcpu_by_index(struct vm *vm, unsigned index)
{
	for (unsigned i = 0; i < vm->n_vcpus; i++) {
		if (vm->vcpus[i]->index == index) {
			return vm->vcpus[i];
		}
	}
	return NULL;
}

bool vm_vcpu_present(struct vm *vm, unsigned index)
{
	struct vcpu *v = vcpu_by_index(vm, index);

	return v && !v->unplugged;
}

int vm_vcpu_plug(struct vm *vm, unsigned index, const char *qom_path, struct error **errp)
{
	struct vcpu *v = vcpu_by_index(vm, index);
	char *path = qom_path ? strdup(qom_path) : NULL;
	bool fresh = !v;
	int r;

	if (index >= vm->cfg->maxcpus) {
		free(path);
		return error_set(errp, ERANGE, "vCPU %u is beyond maxcpus %u", index,
				 vm->cfg->maxcpus);
	}
	if (v && !v->unplugged) {
		free(path);
		return error_set(errp, EEXIST, "vCPU %u is already present", index);
	}
	if (qom_path && !path) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	if (fresh) {
		r = vcpu_new(vm, index, &v, errp);
		if (r < 0) {
			free(path);
			return r;
		}
	}
	/* A re-plugged vCPU starts over, as a new CPU would: wait-for-SIPI. */
	r = vcpu_reset(v, NULL);
	if (r < 0) {
		if (fresh) {
			vcpu_free(v);
		}
		free(path);
		return error_set_errno(errp, r, "cannot reset vCPU %u", index);
	}
	pthread_mutex_lock(&vm->run_lock);
	free(v->qom_path);
	v->qom_path = path;
	v->stalled = false;
	if (fresh) {
		/* parked until its thread runs, as a cold vCPU that was never started */
		v->unplugged = true;
		v->parked = true;
		vm->n_parked++;
		vm->vcpus[vm->n_vcpus++] = v;
	}
	v->unplugged = false;
	pthread_mutex_unlock(&vm->run_lock);
	if (!vm->started) {
		return 0; /* vm_start starts its thread */
	}
	r = vcpu_start_thread(v, errp);
	if (r < 0) {
		pthread_mutex_lock(&vm->run_lock);
		v->unplugged = true;
		pthread_mutex_unlock(&vm->run_lock);
	}
	return r;
}

void vm_vcpu_unplug(struct vm *vm, unsigned index)
{
	struct vcpu *v = vcpu_by_index(vm, index);

	if (!v || v->unplugged || index == 0) {
		return;
	}
	pthread_mutex_lock(&vm->run_lock);
	v->unplugged = true;
	if (!v->thread_started && !v->parked) {
		v->parked = true;
		vm->n_parked++;
	}
	vcpu_kick(v);
	pthread_cond_broadcast(&vm->run_cond);
	pthread_mutex_unlock(&vm->run_lock);
	/* The thread leaves at once: it parks, sees the flag and returns. */
	vcpu_join(v);
}

const char *vm_vcpu_qom_path(struct vm *vm, unsigned index)
{
	struct vcpu *v = vcpu_by_index(vm, index);

	return v && !v->unplugged ? v->qom_path : NULL;
}

json_t *vm_query_pci(struct vm *vm)
{
	json_t *a = json_array();

	for (unsigned i = 0; i < vm->n_devices; i++) {
		const struct device_class *c = vm->devices[i].cls;
		json_t *j = c->query_pci ? c->query_pci(vm->devices[i].state) : NULL;

		if (j) {
			json_array_extend(a, j);
			json_decref(j);
		}
	}
	return a;
}

void vm_for_each_disk(struct vm *vm,
		      void (*fn)(void *opaque, const char *id, struct block_node *bs), void *opaque)
{
	for (unsigned i = 0; i < vm->n_devices; i++) {
		const struct device_class *c = vm->devices[i].cls;

		if (c->for_each_disk) {
			c->for_each_disk(vm->devices[i].state, fn, opaque);
		}
	}
}

struct disk_lookup {
	const char *id;
	struct block_node *bs;
};

static void match_disk(void *opaque, const char *id, struct block_node *bs)
{
	struct disk_lookup *l = opaque;

	if (!l->bs && strcmp(id, l->id) == 0) {
		l->bs = bs;
	}
}

struct block_node *vm_disk_node(struct vm *vm, const char *id)
{
	struct disk_lookup l = {.id = id};

	vm_for_each_disk(vm, match_disk, &l);
	return l.bs;
}

json_t *vm_query_block(struct vm *vm)
{
	return collect(vm, false);
}

json_t *vm_query_blockstats(struct vm *vm)
{
	return collect(vm, true);
}

void vm_request(struct vm *vm, enum vm_shutdown_cause cause)
{
	uint64_t one = 1;

	atomic_fetch_or(&vm->req_pending, 1u << cause);
	if (write(vm->req_fd, &one, sizeof(one)) < 0) {
		/* The counter cannot overflow with one writer per pending bit. */
	}
}

/* --- vCPU parking ------------------------------------------------------- */

void vm_vcpus_pause(struct vm *vm)
{
	pthread_mutex_lock(&vm->run_lock);
	if (vm->vcpu_cmd != VCPU_CMD_STOP) {
		vm->vcpu_cmd = VCPU_CMD_PAUSE;
	}
	for (unsigned i = 0; i < vm->n_vcpus; i++) {
		vcpu_kick(vm->vcpus[i]);
	}
	pthread_cond_broadcast(&vm->run_cond); /* a throttled vCPU's sleep (vcpu.c) */
	while (vm->started && vm->n_parked < vm->n_vcpus) {
		pthread_cond_wait(&vm->run_cond, &vm->run_lock);
	}
	pthread_mutex_unlock(&vm->run_lock);
}

void vm_vcpus_resume(struct vm *vm)
{
	pthread_mutex_lock(&vm->run_lock);
	if (vm->vcpu_cmd != VCPU_CMD_STOP) {
		vm->vcpu_cmd = VCPU_CMD_RUN;
		pthread_cond_broadcast(&vm->run_cond);
	}
	pthread_mutex_unlock(&vm->run_lock);
}

static void vcpus_stop(struct vm *vm)
{
	pthread_mutex_lock(&vm->run_lock);
	vm->vcpu_cmd = VCPU_CMD_STOP;
	for (unsigned i = 0; i < vm->n_vcpus; i++) {
		vcpu_kick(vm->vcpus[i]);
	}
	pthread_cond_broadcast(&vm->run_cond);
	pthread_mutex_unlock(&vm->run_lock);
	for (unsigned i = 0; i < vm->n_vcpus; i++) {
		vcpu_join(vm->vcpus[i]);
	}
	vm->started = false;
	vm->spawned = false;
}

/* --- machine reset ------------------------------------------------------- */

static int save_irqchip(struct vm *vm, struct error **errp)
{
	for (unsigned i = 0; i < 3; i++) {
		vm->init_chips[i].chip_id = i;
		if (ioctl(vm->kvm.vm_fd, KVM_GET_IRQCHIP, &vm->init_chips[i]) < 0) {
			return error_set_errno(errp, errno, "KVM_GET_IRQCHIP %u failed", i);
		}
	}
	if (ioctl(vm->kvm.vm_fd, KVM_GET_PIT2, &vm->init_pit) < 0) {
		return error_set_errno(errp, errno, "KVM_GET_PIT2 failed");
	}
	return 0;
}

/*
 * Power-on state for everything, vCPUs parked: devices, in-kernel irqchip,
 * the kernel image reloaded into RAM, vCPU registers.
 */
static int machine_reset(struct vm *vm, bool load_boot, struct error **errp)
{
	int r;

	for (unsigned i = 0; i < vm->n_devices; i++) {
		if (vm->devices[i].cls->reset) {
			vm->devices[i].cls->reset(vm->devices[i].state);
		}
	}
	for (unsigned i = 0; i < 3; i++) {
		if (ioctl(vm->kvm.vm_fd, KVM_SET_IRQCHIP, &vm->init_chips[i]) < 0) {
			return error_set_errno(errp, errno, "KVM_SET_IRQCHIP failed");
		}
	}
	if (ioctl(vm->kvm.vm_fd, KVM_SET_PIT2, &vm->init_pit) < 0) {
		return error_set_errno(errp, errno, "KVM_SET_PIT2 failed");
	}
	if (load_boot) {
		r = boot_load(vm->mem, vm->cfg, &vm->boot, errp);
		if (r < 0) {
			return r;
		}
	}
	for (unsigned i = 0; i < vm->n_vcpus; i++) {
		r = vcpu_reset(vm->vcpus[i], i == 0 ? &vm->boot : NULL);
		if (r < 0) {
			return error_set_errno(errp, r, "cannot reset vCPU %u", i);
		}
	}
	pthread_mutex_lock(&vm->run_lock);
	for (unsigned i = 0; i < vm->n_vcpus; i++) {
		vcpu_unstall(vm->vcpus[i]);
	}
	pthread_mutex_unlock(&vm->run_lock);
	return 0;
}

int vm_machine_reset_for_load(struct vm *vm, struct error **errp)
{
	return machine_reset(vm, false, errp);
}

/* Stop the vCPUs in state @s with event @name (data taken). ctl_lock held. */
static void stop_with(struct vm *vm, enum vm_run_state s, const char *name, json_t *data)
{
	vm_vcpus_pause(vm);
	set_state(vm, s);
	vm_emit_event(vm, name, data);
}

static void guest_reset(struct vm *vm)
{
	struct error *err = NULL;

	vm_vcpus_pause(vm);
	if (machine_reset(vm, true, &err) < 0) {
		log_full(LOG_ERR, vm->cfg->name, NULL, "reset failed: %s", err->msg);
		error_free(err);
		set_state(vm, VM_STATE_INTERNAL_ERROR);
		vm_emit_event(vm, "STOP", json_pack("{s:s}", "reason", "internal-error"));
		return;
	}
	vm_emit_event(vm, "RESET", json_pack("{s:b,s:s}", "guest", 1, "reason", "guest-reset"));
	vm_vcpus_resume(vm);
}

static void handle_requests(struct vm *vm, unsigned pending)
{
	enum vm_run_state s = vm_get_state(vm);

	/* A reset left a started VM in prelaunch: parked, as when paused. */
	bool parked = s == VM_STATE_PAUSED || (s == VM_STATE_PRELAUNCH && vm->started);

	if (pending & (1u << VM_CAUSE_HOST_ERROR)) {
		if (s == VM_STATE_RUNNING || parked) {
			stop_with(vm, VM_STATE_INTERNAL_ERROR, "STOP",
				  json_pack("{s:s}", "reason", "internal-error"));
		}
		return;
	}
	if (s != VM_STATE_RUNNING && !parked) {
		return; /* already stopped for good: late guest requests are moot */
	}
	if (pending & (1u << VM_CAUSE_IO_ERROR)) {
		stop_with(vm, VM_STATE_IO_ERROR, "STOP", json_pack("{s:s}", "reason", "io-error"));
	} else if (pending & (1u << VM_CAUSE_GUEST_PANIC)) {
		/* QEMU 7.2's panic action "pause": GUEST_PANICKED, then its vm_stop's STOP */
		stop_with(vm, VM_STATE_GUEST_PANICKED, "GUEST_PANICKED",
			  json_pack("{s:s}", "action", "pause"));
		vm_emit_event(vm, "STOP", NULL);
	} else if (pending & (1u << VM_CAUSE_GUEST_SHUTDOWN)) {
		stop_with(vm, VM_STATE_SHUTDOWN, "SHUTDOWN",
			  json_pack("{s:b,s:s}", "guest", 1, "reason", "guest-shutdown"));
	} else if (pending & ((1u << VM_CAUSE_GUEST_RESET) | (1u << VM_CAUSE_TRIPLE_FAULT))) {
		const char *reason = "guest-reset"; /* QEMU's name for triple faults too */

		if (strcmp(vm->cfg->on_reboot, "shutdown") == 0) {
			stop_with(vm, VM_STATE_SHUTDOWN, "SHUTDOWN",
				  json_pack("{s:b,s:s}", "guest", 1, "reason", reason));
		} else if (s == VM_STATE_RUNNING) {
			guest_reset(vm);
		} else {
			/* Paused: reset now; as QEMU, the VM is then in prelaunch. */
			struct error *err = NULL;

			if (machine_reset(vm, true, &err) < 0) {
				log_full(LOG_ERR, vm->cfg->name, NULL, "reset failed: %s",
					 err->msg);
				error_free(err);
				set_state(vm, VM_STATE_INTERNAL_ERROR);
			} else {
				set_state(vm, VM_STATE_PRELAUNCH);
			}
			vm_emit_event(vm, "RESET",
				      json_pack("{s:b,s:s}", "guest", 1, "reason", reason));
		}
	}
}

static void request_cb(evutil_socket_t fd, short what, void *arg)
{
	struct vm *vm = arg;
	uint64_t v;
	unsigned pending;

	if (read(vm->req_fd, &v, sizeof(v)) < 0) {
		/* Spurious wake-up; the pending bits decide. */
	}
	pthread_mutex_lock(&vm->ctl_lock);
	if (vm->saving) {
		/* Left pending: vm_save_end pokes the eventfd again. */
		pthread_mutex_unlock(&vm->ctl_lock);
		return;
	}
	pending = atomic_exchange(&vm->req_pending, 0);
	if (!vm->dying && pending) {
		handle_requests(vm, pending);
	}
	pthread_mutex_unlock(&vm->ctl_lock);
}

/* --- the I/O thread ------------------------------------------------------ */

/* Runs inside the loop, so the break cannot be lost before the loop starts. */
static void io_stop_cb(evutil_socket_t fd, short what, void *arg)
{
	struct vm *vm = arg;

	event_base_loopbreak(vm->io_base);
}

static void *io_thread(void *arg)
{
	struct vm *vm = arg;

	pthread_setname_np(pthread_self(), "vm-io");
	if (vm->host.thread_start) {
		vm->host.thread_start(vm->host.opaque, "io");
	}
	event_base_loop(vm->io_base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

static void io_evthread_init(void)
{
	evthread_use_pthreads();
}

static int io_start(struct vm *vm, struct error **errp)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	sigset_t old;
	int r;

	pthread_once(&once, io_evthread_init);
	vm->req_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->req_fd < 0) {
		return error_set_errno(errp, errno, "cannot create an eventfd");
	}
	vm->io_base = event_base_new();
	if (!vm->io_base) {
		return error_set(errp, ENOMEM, "cannot create the VM's event loop");
	}
	vm->req_event = event_new(vm->io_base, vm->req_fd, EV_READ | EV_PERSIST, request_cb, vm);
	if (!vm->req_event || event_add(vm->req_event, NULL) < 0) {
		return error_set(errp, ENOMEM, "cannot watch the VM's request eventfd");
	}
	vm->stop_event = event_new(vm->io_base, -1, 0, io_stop_cb, vm);
	if (!vm->stop_event) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	/* VM threads leave signals to the control thread. */
	thread_block_signals(&old);
	r = thread_create(&vm->io_thread, NULL, io_thread, vm);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0) {
		return error_set_errno(errp, r, "cannot start the VM's I/O thread");
	}
	vm->io_started = true;
	return 0;
}

static void io_stop(struct vm *vm)
{
	if (vm->io_started) {
		event_active(vm->stop_event, EV_READ, 0);
		pthread_join(vm->io_thread, NULL);
		vm->io_started = false;
	}
	if (vm->req_event) {
		event_free(vm->req_event);
		vm->req_event = NULL;
	}
	if (vm->stop_event) {
		event_free(vm->stop_event);
		vm->stop_event = NULL;
	}
	if (vm->io_base) {
		event_base_free(vm->io_base);
		vm->io_base = NULL;
	}
	if (vm->req_fd >= 0) {
		close(vm->req_fd);
		vm->req_fd = -1;
	}
}

/* --- setup phases (vm_setup_phases) ---------------------------------------- */

/* The phase @name (a static string) ended now. */
static void phase(struct vm *vm, const char *name)
{
	uint64_t now = mono_ns();

	if (vm->n_phases < VM_MAX_PHASES) {
		uint64_t us = (now - vm->phase_ns) / 1000;

		vm->phases[vm->n_phases++] =
			(struct vm_phase){name, us > UINT32_MAX ? UINT32_MAX : us};
	}
	vm->phase_ns = now;
}

char *vm_setup_phases(struct vm *vm)
{
	uint64_t other = 0, total = 0;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (!f) {
		return NULL;
	}
	for (unsigned i = 0; i < vm->n_phases; i++) {
		total += vm->phases[i].us;
		if (vm->phases[i].us < 50) {
			other += vm->phases[i].us;
			continue;
		}
		fprintf(f, "%s %.2f, ", vm->phases[i].name, vm->phases[i].us / 1000.0);
	}
	fprintf(f, "other %.2f; total %.2f", other / 1000.0, total / 1000.0);
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* --- devices ------------------------------------------------------------- */

static int realize_one(struct vm *vm, const struct device_class *cls, const void *item,
		       struct error **errp)
{
	struct vm_device *d = &vm->devices[vm->n_devices];
	int r;

	if (!device_wanted(cls, vm->cfg, item)) {
		return 0;
	}
	memset(d, 0, sizeof(*d));
	d->cls = cls;
	if (cls->each == DEVICE_PER_DISK || cls->each == DEVICE_PER_NIC ||
	    cls->each == DEVICE_PER_MEMDEV) {
		const char *id =
			cls->each == DEVICE_PER_DISK  ? ((const struct vm_disk_config *)item)->id
			: cls->each == DEVICE_PER_NIC ? ((const struct vm_nic_config *)item)->id
						      : ((const struct vm_memdev_config *)item)->id;

		if (id && !(d->id = strdup(id))) {
			return error_set(errp, ENOMEM, "out of memory");
		}
	}
	r = cls->realize(vm, item, &d->state, errp);
	if (r < 0) {
		free(d->id);
		d->id = NULL;
		error_prefix(errp, "%s", cls->name);
		return r;
	}
	vm->n_devices++;
	phase(vm, cls->name);
	return 0;
}

static int devices_realize(struct vm *vm, struct error **errp)
{
	size_t max = 0;
	int r;

	for (unsigned i = 0; i < device_table_size; i++) {
		max += device_table[i]->each == DEVICE_PER_DISK	    ? vm->cfg->n_disks
		       : device_table[i]->each == DEVICE_PER_NIC    ? vm->cfg->n_nics
		       : device_table[i]->each == DEVICE_PER_MEMDEV ? vm->cfg->n_memdevs
								    : 1;
	}
	max += 1 + VM_MAX_HOTPLUG_DEVICES;
	vm->devices = calloc(max, sizeof(*vm->devices));
	if (!vm->devices) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	vm->max_devices = (unsigned)max;
	for (unsigned i = 0; i < device_table_size; i++) {
		const struct device_class *cls = device_table[i];

		if (cls->each == DEVICE_PER_DISK) {
			r = 0;
			for (unsigned j = 0; r == 0 && j < vm->cfg->n_disks; j++) {
				r = realize_one(vm, cls, &vm->cfg->disks[j], errp);
			}
		} else if (cls->each == DEVICE_PER_NIC) {
			r = 0;
			for (unsigned j = 0; r == 0 && j < vm->cfg->n_nics; j++) {
				r = realize_one(vm, cls, &vm->cfg->nics[j], errp);
			}
		} else if (cls->each == DEVICE_PER_MEMDEV) {
			r = 0;
			for (unsigned j = 0; r == 0 && j < vm->cfg->n_memdevs; j++) {
				r = realize_one(vm, cls, &vm->cfg->memdevs[j], errp);
			}
		} else {
			r = realize_one(vm, cls, NULL, errp);
		}
		if (r < 0) {
			return r;
		}
	}
	return 0;
}

static void devices_unrealize(struct vm *vm)
{
	while (vm->n_devices > 0) {
		struct vm_device *d = &vm->devices[--vm->n_devices];

		d->cls->unrealize(d->state);
		hotplug_device_forget(d);
	}
	free(vm->devices);
	vm->devices = NULL;
}

/* --- the device table, for hotplug (hw/core/vm-devices.h) ------------------- */

void vm_devices_lock(struct vm *vm)
{
	pthread_mutex_lock(&vm->ctl_lock);
}

void vm_devices_unlock(struct vm *vm)
{
	pthread_mutex_unlock(&vm->ctl_lock);
}

unsigned vm_devices_count(struct vm *vm)
{
	return vm->n_devices;
}

struct vm_device *vm_devices_at(struct vm *vm, unsigned i)
{
	return i < vm->n_devices ? &vm->devices[i] : NULL;
}

struct vm_device *vm_devices_reserve(struct vm *vm)
{
	struct vm_device *d;

	if (vm->n_devices >= vm->max_devices) {
		return NULL;
	}
	d = &vm->devices[vm->n_devices];
	memset(d, 0, sizeof(*d));
	return d;
}

void vm_devices_commit(struct vm *vm)
{
	vm->n_devices++;
}

void vm_devices_remove(struct vm *vm, unsigned i)
{
	if (i >= vm->n_devices) {
		return;
	}
	memmove(&vm->devices[i], &vm->devices[i + 1],
		(vm->n_devices - i - 1) * sizeof(vm->devices[0]));
	vm->n_devices--;
	memset(&vm->devices[vm->n_devices], 0, sizeof(vm->devices[0]));
}

bool vm_quiesce(struct vm *vm)
{
	if (vm_get_state(vm) != VM_STATE_RUNNING) {
		return false; /* parked already (prelaunch, paused, stopped) */
	}
	vm_vcpus_pause(vm);
	return true;
}

void vm_unquiesce(struct vm *vm, bool resume)
{
	if (resume) {
		vm_vcpus_resume(vm);
	}
}

struct hotplug *vm_hotplug_state(struct vm *vm)
{
	return vm->hotplug;
}

struct announce **vm_announce_ptr(struct vm *vm)
{
	return &vm->announce;
}

/* --- life cycle ---------------------------------------------------------- */

/* Undo vm_new in reverse, for whatever part of it was done. */
void vm_teardown(struct vm *vm)
{
	if (vm->started || vm->spawned) {
		vcpus_stop(vm);
	}
	hotplug_wait_drains(vm->hotplug);
	announce_free(vm->announce); /* its rounds walk the devices */
	vm->announce = NULL;
	devices_unrealize(vm);
	/* Backends (blockdev-add nodes) only after every device using them. */
	hotplug_free(vm->hotplug);
	vm->hotplug = NULL;
	io_stop(vm);
	for (unsigned i = 0; i < vm->n_vcpus; i++) {
		vcpu_free(vm->vcpus[i]);
	}
	free(vm->vcpus);
	vm_irq_fini(vm);
	iobus_free(vm->iobus);
	kvm_close(&vm->kvm);
	guest_mem_free(vm->mem);
	pthread_mutex_destroy(&vm->ctl_lock);
	pthread_mutex_destroy(&vm->run_lock);
	pthread_cond_destroy(&vm->run_cond);
	pthread_mutex_destroy(&vm->hold_lock);
	pthread_cond_destroy(&vm->hold_cond);
	free(vm->console_socket);
	vm_config_free(vm->cfg);
	free(vm);
}

int vm_new(const struct vm_config *cfg, const struct vm_host *host, struct vm **ret,
	   struct error **errp)
{
	return vm_build(cfg, host, false, ret, errp);
}

int vm_build_kernel(const struct vm_config *cfg, const struct vm_host *host, struct vm **ret,
		    struct error **errp)
{
	struct vm *vm;
	int r;

	vm = calloc(1, sizeof(*vm));
	if (!vm) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	vm->phase_ns = mono_ns();
	vm->req_fd = -1;
	vm->kvm.sys_fd = vm->kvm.vm_fd = -1;
	pthread_mutex_init(&vm->ctl_lock, NULL);
	vm->exit_rl = (struct ratelimit)RATELIMIT_INIT(5 * 1000000, 20);
	pthread_mutex_init(&vm->run_lock, NULL);
	pthread_cond_init(&vm->run_cond, NULL);
	pthread_mutex_init(&vm->hold_lock, NULL);
	pthread_cond_init(&vm->hold_cond, NULL);
	set_state(vm, VM_STATE_PRELAUNCH);
	if (host) {
		vm->host = *host;
	}
	r = vm_config_copy(cfg, &vm->cfg, errp);
	if (r < 0) {
		goto err_teardown;
	}
	r = cpuid_model_parse(vm->cfg->cpu, &vm->cpu_model, errp);
	if (r < 0) {
		goto err_teardown;
	}
	phase(vm, "config");
	r = kvm_open(&vm->kvm, vm->cfg->maxcpus, errp);
	if (r < 0) {
		goto err_teardown;
	}
	phase(vm, "kvm-vm");
	r = save_irqchip(vm, errp);
	if (r < 0) {
		goto err_teardown;
	}
	phase(vm, "irqchip");
	r = guest_mem_new(vm->cfg->memory, vm->cfg->mem_backend, &vm->mem, errp);
	if (r < 0) {
		goto err_teardown;
	}
	guest_mem_set_thp(vm->mem, vm->cfg->mem_thp);
	phase(vm, "guest-ram");
	for (unsigned i = 0; i < vm->cfg->n_memdevs; i++) {
		r = guest_mem_add_device_region(vm->mem, vm->cfg->memdevs[i].addr,
						vm->cfg->memdevs[i].size, errp);
		if (r < 0) {
			goto err_teardown;
		}
	}
	r = kvm_add_memory(&vm->kvm, vm->mem, errp);
	if (r < 0) {
		goto err_teardown;
	}
	phase(vm, "memslots");
	vm->iobus = iobus_new(vm->cfg->name);
	if (!vm->iobus) {
		r = error_set(errp, ENOMEM, "out of memory");
		goto err_teardown;
	}
	r = vm_irq_init(vm, errp);
	if (r < 0) {
		goto err_teardown;
	}
	phase(vm, "irq-routing");
	*ret = vm;
	return 0;

err_teardown:
	vm_teardown(vm);
	return r;
}

int vm_build_rest(struct vm *vm, bool restoring, struct error **errp)
{
	int r;

	vm->phase_ns = mono_ns(); /* not the time since vm_build_kernel, if it ran ahead */
	/* Room for every possible vCPU: hot-plugged ones are appended (vm_vcpu_plug). */
	vm->vcpus = calloc(vm->cfg->maxcpus, sizeof(*vm->vcpus));
	if (!vm->vcpus) {
		r = error_set(errp, ENOMEM, "out of memory");
		goto err_teardown;
	}
	for (unsigned i = 0; i < vm->cfg->vcpus; i++) {
		struct vcpu *v;

		r = vcpu_new(vm, i, &v, errp);
		if (r < 0) {
			goto err_teardown;
		}
		vm->vcpus[vm->n_vcpus++] = v;
	}
	phase(vm, "vcpus");
	r = io_start(vm, errp);
	if (r < 0) {
		goto err_teardown;
	}
	phase(vm, "io-thread");
	r = devices_realize(vm, errp);
	if (r < 0) {
		goto err_teardown;
	}
	r = hotplug_new(vm, &vm->hotplug, errp);
	if (r < 0) {
		goto err_teardown;
	}
	phase(vm, "hotplug");
	if (vm->cfg->boot.firmware && vm->roms[0].len == 0) {
		r = error_set(errp, ENOTSUP,
			      "firmware %s: no device of this build maps firmware images",
			      vm->cfg->boot.firmware);
		goto err_teardown;
	}
	r = machine_reset(vm, !restoring, errp);
	if (r < 0) {
		goto err_teardown;
	}
	phase(vm, "reset");
	return 0;

err_teardown:
	vm_teardown(vm);
	return r;
}

int vm_build(const struct vm_config *cfg, const struct vm_host *host, bool restoring,
	     struct vm **ret, struct error **errp)
{
	struct vm *vm;
	int r = vm_build_kernel(cfg, host, &vm, errp);

	if (r == 0) {
		r = vm_build_rest(vm, restoring, errp);
	}
	if (r == 0) {
		*ret = vm;
	}
	return r;
}

static int saving_error(struct vm *vm, const char *what, struct error **errp)
{
	return error_set(errp, EBUSY, "cannot %s VM \"%s\": it is being saved (vm-save)", what,
			 vm->cfg->name);
}

static int bad_state(struct vm *vm, const char *what, struct error **errp)
{
	return error_set(errp, EBUSY, "cannot %s VM \"%s\": it is %s", what, vm->cfg->name,
			 vm_run_state_name(vm_get_state(vm)));
}

/*
 * The threads of the vCPUs that have none yet (all of them, unless
 * vm_spawn_vcpus ran): how many it started. On failure every thread is
 * stopped again.
 */
static int start_missing_threads(struct vm *vm, struct error **errp)
{
	int n = 0;

	for (unsigned i = 0; i < vm->n_vcpus; i++) {
		/* an unplugged one counts as parked since its unplug */
		if (vm->vcpus[i]->unplugged || vm->vcpus[i]->thread_started) {
			continue;
		}
		int r = vcpu_start_thread(vm->vcpus[i], errp);

		if (r < 0) {
			/* Threads not started count as parked for the stop. */
			pthread_mutex_lock(&vm->run_lock);
			for (unsigned j = i; j < vm->n_vcpus; j++) {
				if (!vm->vcpus[j]->unplugged && !vm->vcpus[j]->thread_started) {
					vm->n_parked++;
				}
			}
			pthread_mutex_unlock(&vm->run_lock);
			vcpus_stop(vm);
			return r;
		}
		n++;
	}
	return n;
}

int vm_spawn_vcpus(struct vm *vm, struct error **errp)
{
	int r = 0;

	pthread_mutex_lock(&vm->ctl_lock);
	if (vm_get_state(vm) == VM_STATE_PRELAUNCH && !vm->started && !vm->spawned) {
		pthread_mutex_lock(&vm->run_lock);
		vm->vcpu_cmd = VCPU_CMD_PAUSE;
		pthread_mutex_unlock(&vm->run_lock);
		vm->spawned = true;
		r = start_missing_threads(vm, errp);
		if (r >= 0) {
			phase(vm, "vcpu-threads");
		}
	}
	pthread_mutex_unlock(&vm->ctl_lock);
	return r < 0 ? r : 0;
}

int vm_start(struct vm *vm, struct error **errp)
{
	int r = 0;

	pthread_mutex_lock(&vm->ctl_lock);
	vm->phase_ns = mono_ns();
	if (vm_get_state(vm) != VM_STATE_PRELAUNCH) {
		r = bad_state(vm, "start", errp);
		goto out;
	}
	if (vm->saving) {
		r = saving_error(vm, "start", errp);
		goto out;
	}
	if (vm->started) {
		/* Prelaunch after a reset: the vCPU threads are parked, not gone. */
		set_state(vm, VM_STATE_RUNNING);
		vm_vcpus_resume(vm);
		vm_emit_event(vm, "RESUME", NULL);
		goto out;
	}
	pthread_mutex_lock(&vm->run_lock);
	vm->vcpu_cmd = VCPU_CMD_RUN;
	pthread_cond_broadcast(&vm->run_cond); /* the threads vm_spawn_vcpus parked */
	pthread_mutex_unlock(&vm->run_lock);
	vm->started = true;
	r = start_missing_threads(vm, errp);
	if (r < 0) {
		goto out;
	}
	if (r > 0) {
		phase(vm, "vcpu-threads");
	}
	r = 0;
	set_state(vm, VM_STATE_RUNNING);
	vm_emit_event(vm, "RESUME", NULL);
out:
	pthread_mutex_unlock(&vm->ctl_lock);
	return r;
}

int vm_pause(struct vm *vm, struct error **errp)
{
	int r = 0;

	pthread_mutex_lock(&vm->ctl_lock);
	if (vm_get_state(vm) != VM_STATE_RUNNING) {
		r = bad_state(vm, "pause", errp);
	} else {
		stop_with(vm, VM_STATE_PAUSED, "STOP", NULL);
	}
	pthread_mutex_unlock(&vm->ctl_lock);
	return r;
}

int vm_resume(struct vm *vm, struct error **errp)
{
	int r = 0;

	pthread_mutex_lock(&vm->ctl_lock);
	/*
	 * io-error resumes too, as QEMU's cont: held requests are retried
	 * (werror=stop); restore-vm, where a failed snapshot-load left it; and
	 * guest-panicked (QEMU 7.2 runs a panicked guest on, as recorded in
	 * tests/functional/golden/runstate-reset.json).
	 */
	if (vm_get_state(vm) != VM_STATE_PAUSED && vm_get_state(vm) != VM_STATE_IO_ERROR &&
	    vm_get_state(vm) != VM_STATE_RESTORE_VM &&
	    vm_get_state(vm) != VM_STATE_GUEST_PANICKED) {
		r = bad_state(vm, "resume", errp);
	} else if (vm->saving) {
		r = saving_error(vm, "resume", errp);
	} else {
		set_state(vm, VM_STATE_RUNNING);
		vm_vcpus_resume(vm);
		vm_emit_event(vm, "RESUME", NULL);
	}
	pthread_mutex_unlock(&vm->ctl_lock);
	return r;
}

int vm_reset(struct vm *vm, struct error **errp)
{
	enum vm_run_state s;
	int r;

	pthread_mutex_lock(&vm->ctl_lock);
	if (vm->saving) {
		r = saving_error(vm, "reset", errp);
		pthread_mutex_unlock(&vm->ctl_lock);
		return r;
	}
	s = vm_get_state(vm);
	vm_vcpus_pause(vm);
	r = machine_reset(vm, true, errp);
	if (r < 0) {
		set_state(vm, VM_STATE_INTERNAL_ERROR);
		vm_emit_event(vm, "STOP", json_pack("{s:s}", "reason", "internal-error"));
		goto out;
	}
	vm_emit_event(vm, "RESET",
		      json_pack("{s:b,s:s}", "guest", 0, "reason", "host-qmp-system-reset"));
	if (s == VM_STATE_RUNNING) {
		vm_vcpus_resume(vm);
	} else {
		/*
		 * As QEMU 7.2 (main_loop_should_exit): a VM that was not running
		 * (paused, shutdown, guest-panicked, internal-error, io-error,
		 * postmigrate, restore-vm) is in prelaunch after the reset, and
		 * cont runs it. No STOP or RESUME: it was stopped and stays so.
		 */
		set_state(vm, VM_STATE_PRELAUNCH);
	}
out:
	pthread_mutex_unlock(&vm->ctl_lock);
	return r;
}

int vm_inject_nmi(struct vm *vm, struct error **errp)
{
	(void)errp;
	pthread_mutex_lock(&vm->ctl_lock);
	pthread_mutex_lock(&vm->run_lock);
	for (unsigned i = 0; i < vm->n_vcpus; i++) {
		if (!vm->vcpus[i]->unplugged) {
			vcpu_inject_nmi(vm->vcpus[i]);
		}
	}
	pthread_mutex_unlock(&vm->run_lock);
	pthread_mutex_unlock(&vm->ctl_lock);
	return 0;
}

int vm_powerdown(struct vm *vm, struct error **errp)
{
	enum vm_run_state s;
	int r;

	pthread_mutex_lock(&vm->ctl_lock);
	s = vm_get_state(vm);
	/* As QEMU's, the button also works in prelaunch (after a reset). */
	if (s != VM_STATE_RUNNING && s != VM_STATE_PAUSED &&
	    !(s == VM_STATE_PRELAUNCH && vm->started)) {
		r = bad_state(vm, "power down", errp);
	} else if (!vm->powerdown) {
		r = error_set(errp, ENOTSUP, "VM \"%s\" has no ACPI power button", vm->cfg->name);
	} else {
		r = vm->powerdown(vm->powerdown_opaque);
		if (r < 0) {
			error_set_errno(errp, r, "cannot press the power button of VM \"%s\"",
					vm->cfg->name);
		} else {
			vm_emit_event(vm, "POWERDOWN", NULL);
		}
	}
	pthread_mutex_unlock(&vm->ctl_lock);
	return r;
}

void vm_destroy(struct vm *vm)
{
	if (!vm) {
		return;
	}
	pthread_mutex_lock(&vm->ctl_lock);
	vm->dying = true;
	pthread_mutex_unlock(&vm->ctl_lock);
	vm_teardown(vm);
}

/* --- save/restore support (the rest is in core/vm-save.c) ---------------- */

int vm_save_begin(struct vm *vm, struct error **errp)
{
	enum vm_run_state s;
	int r = 0;

	pthread_mutex_lock(&vm->ctl_lock);
	s = vm_get_state(vm);
	if (vm->saving) {
		r = error_set(errp, EBUSY, "VM \"%s\" is already being saved", vm->cfg->name);
	} else if (s != VM_STATE_RUNNING && s != VM_STATE_PAUSED && s != VM_STATE_RESTORE_VM &&
		   !(s == VM_STATE_PRELAUNCH && vm->started)) {
		r = bad_state(vm, "save", errp);
	} else {
		vm->saving = true;
		vm->was_running = s == VM_STATE_RUNNING;
		if (vm->was_running) {
			stop_with(vm, VM_STATE_PAUSED, "STOP", NULL);
		}
	}
	pthread_mutex_unlock(&vm->ctl_lock);
	return r;
}

void vm_save_end(struct vm *vm, bool resume)
{
	pthread_mutex_lock(&vm->ctl_lock);
	vm->saving = false;
	if (resume && vm->was_running && vm_get_state(vm) == VM_STATE_PAUSED) {
		set_state(vm, VM_STATE_RUNNING);
		vm_vcpus_resume(vm);
		vm_emit_event(vm, "RESUME", NULL);
	}
	pthread_mutex_unlock(&vm->ctl_lock);
	if (atomic_load(&vm->req_pending)) {
		uint64_t one = 1;

		if (write(vm->req_fd, &one, sizeof(one)) < 0) {
			/* Already signalled. */
		}
	}
}

int vm_start_restored(struct vm *vm, bool paused, struct error **errp)
{
	int r = 0;

	pthread_mutex_lock(&vm->ctl_lock);
	pthread_mutex_lock(&vm->run_lock);
	vm->vcpu_cmd = paused ? VCPU_CMD_PAUSE : VCPU_CMD_RUN;
	pthread_mutex_unlock(&vm->run_lock);
	vm->started = true;
	for (unsigned i = 0; i < vm->n_vcpus; i++) {
		if (vm->vcpus[i]->unplugged) {
			continue; /* counted as parked since its unplug */
		}
		r = vcpu_start_thread(vm->vcpus[i], errp);
		if (r < 0) {
			pthread_mutex_lock(&vm->run_lock);
			vm->n_parked += vm->n_vcpus - i;
			pthread_mutex_unlock(&vm->run_lock);
			vcpus_stop(vm);
			goto out;
		}
	}
	if (paused) {
		set_state(vm, VM_STATE_PAUSED);
	} else {
		set_state(vm, VM_STATE_RUNNING);
		vm_emit_event(vm, "RESUME", NULL);
	}
out:
	pthread_mutex_unlock(&vm->ctl_lock);
	return r;
}

void vm_mark_prelaunch(struct vm *vm)
{
	pthread_mutex_lock(&vm->ctl_lock);
	if (vm->started && !vm->saving && vm_get_state(vm) == VM_STATE_PAUSED) {
		set_state(vm, VM_STATE_PRELAUNCH);
	}
	pthread_mutex_unlock(&vm->ctl_lock);
}

static void hold_cb(evutil_socket_t fd, short what, void *arg)
{
	struct vm *vm = arg;

	pthread_mutex_lock(&vm->hold_lock);
	vm->held = true;
	pthread_cond_broadcast(&vm->hold_cond);
	while (!vm->release) {
		pthread_cond_wait(&vm->hold_cond, &vm->hold_lock);
	}
	vm->held = false;
	vm->release = false;
	pthread_cond_broadcast(&vm->hold_cond);
	pthread_mutex_unlock(&vm->hold_lock);
}

void vm_io_hold(struct vm *vm)
{
	struct timeval now = {0, 0};

	pthread_mutex_lock(&vm->hold_lock);
	vm->release = false;
	if (event_base_once(vm->io_base, -1, EV_TIMEOUT, hold_cb, vm, &now) == 0) {
		while (!vm->held) {
			pthread_cond_wait(&vm->hold_cond, &vm->hold_lock);
		}
	}
	pthread_mutex_unlock(&vm->hold_lock);
}

void vm_io_release(struct vm *vm)
{
	pthread_mutex_lock(&vm->hold_lock);
	if (vm->held) {
		vm->release = true;
		pthread_cond_broadcast(&vm->hold_cond);
		while (vm->held) {
			pthread_cond_wait(&vm->hold_cond, &vm->hold_lock);
		}
	}
	pthread_mutex_unlock(&vm->hold_lock);
}
