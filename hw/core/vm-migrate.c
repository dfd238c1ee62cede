/*
 * The machine's side of live migration (docs/migration.md): dirty tracking
 * of guest RAM (KVM's dirty log for vCPU writes, guest_mem's bitmap for
 * the writes of vmmd's device models) and the migration run states. The
 * protocol is daemon/migration.c. vm_set_cpu_throttle (auto-converge)
 * arms a timer per vCPU thread; the sleeping is done by vcpu.c's throttle()
 * on the vCPU threads themselves.
 *
 * Threads: the migration worker thread calls these between vm_save_begin
 * and vm_save_end or, for the dirty log, while the VM runs; the
 * memslot updates and KVM_GET_DIRTY_LOG are safe against running vCPUs.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>

#include "hw/core/kvm.h"
#include "hw/device.h"
#include "hw/core/memory.h"
#include "hw/core/vcpu.h"
#include "hw/core/vm-int.h"

int vm_dirty_log_start(struct vm *vm, struct error **errp)
{
	int r = guest_mem_track_start(vm->mem);

	if (r < 0) {
		return error_set_errno(errp, -r, "cannot allocate the dirty page bitmap");
	}
	r = kvm_set_dirty_log(&vm->kvm, vm->mem, true, errp);
	if (r < 0) {
		guest_mem_track_stop(vm->mem);
	}
	return r;
}

int vm_dirty_log_sync(struct vm *vm, unsigned i, uint64_t *bitmap, struct error **errp)
{
	int r = kvm_get_dirty_log(&vm->kvm, vm->mem, i, bitmap);

	if (r < 0) {
		return error_set_errno(errp, -r, "cannot read KVM's dirty log of memslot %u", i);
	}
	guest_mem_track_collect(vm->mem, i, bitmap);
	return 0;
}

void vm_dirty_log_stop(struct vm *vm)
{
	guest_mem_track_stop(vm->mem);
	kvm_set_dirty_log(&vm->kvm, vm->mem, false, NULL);
}

int vm_set_cpu_throttle(struct vm *vm, unsigned pct, struct error **errp)
{
	int r = 0;

	if (pct > VM_CPU_THROTTLE_MAX) {
		return error_set(errp, EINVAL, "CPU throttle %u%% is over %u%%", pct,
				 VM_CPU_THROTTLE_MAX);
	}
	pthread_mutex_lock(&vm->run_lock);
	atomic_store(&vm->throttle_pct, pct);
	for (unsigned i = 0; i < vm->n_vcpus && r == 0; i++) {
		r = vcpu_throttle_timer(vm->vcpus[i], pct != 0);
	}
	if (r < 0) {
		atomic_store(&vm->throttle_pct, 0);
		for (unsigned i = 0; i < vm->n_vcpus; i++) {
			vcpu_throttle_timer(vm->vcpus[i], false);
		}
	}
	/* A sleeping vCPU looks at the new percentage (0: it runs again at once). */
	pthread_cond_broadcast(&vm->run_cond);
	pthread_mutex_unlock(&vm->run_lock);
	return r < 0 ? error_set_errno(errp, -r, "cannot start the vCPUs' throttle timers") : 0;
}

unsigned vm_cpu_throttle(struct vm *vm)
{
	return atomic_load(&vm->throttle_pct);
}

unsigned vm_ram_region_count(struct vm *vm)
{
	return guest_mem_region_count(vm->mem);
}

uint8_t *vm_ram_region(struct vm *vm, unsigned i, uint64_t *ret_gpa, uint64_t *ret_size)
{
	const struct guest_mem_region *reg = guest_mem_region(vm->mem, i);

	if (!reg) {
		return NULL;
	}
	*ret_gpa = reg->gpa;
	*ret_size = reg->size;
	return reg->host;
}

int vm_ram_region_fd(struct vm *vm, unsigned i)
{
	const struct guest_mem_region *reg = guest_mem_region(vm->mem, i);

	return reg ? reg->fd : -1;
}

int vm_ram_populate_wait(struct vm *vm, struct error **errp)
{
	int r = guest_mem_populate_wait(vm->mem);

	return r < 0 ? error_set_errno(errp, -r,
				       "the VM's RAM was not restored completely from its snapshot")
		     : 0;
}

void vm_set_migrate_state(struct vm *vm, enum vm_run_state s)
{
	pthread_mutex_lock(&vm->ctl_lock);
	if (vm->saving) {
		atomic_store(&vm->state, s);
	}
	pthread_mutex_unlock(&vm->ctl_lock);
}

int vm_disks_set_active(struct vm *vm, bool active, struct error **errp)
{
	int r = 0;

	for (unsigned i = 0; i < vm->n_devices; i++) {
		const struct device_class *c = vm->devices[i].cls;

		if (c->set_active) {
			r = c->set_active(vm->devices[i].state, active, errp);
			if (r < 0) {
				error_prefix(errp, "%s", c->name);
				/* Inactivating: take back what was released so far. */
				for (unsigned j = 0; !active && j < i; j++) {
					c = vm->devices[j].cls;
					if (c->set_active) {
						c->set_active(vm->devices[j].state, true, NULL);
					}
				}
				return r;
			}
		}
	}
	return 0;
}

int vm_for_each_nic_fd(struct vm *vm, vm_nic_fd_fn *fn, void *opaque)
{
	for (unsigned i = 0; i < vm->n_devices; i++) {
		const struct device_class *c = vm->devices[i].cls;
		const char *id = NULL;
		int fd, r;

		if (!c->host_fd) {
			continue;
		}
		fd = c->host_fd(vm->devices[i].state, &id);
		if (fd >= 0 && id) {
			r = fn(opaque, id, fd);
			if (r < 0) {
				return r;
			}
		}
	}
	return 0;
}

void vm_nic_fds_release(struct vm *vm)
{
	for (unsigned i = 0; i < vm->n_devices; i++) {
		const struct device_class *c = vm->devices[i].cls;

		if (c->host_fd_release) {
			c->host_fd_release(vm->devices[i].state);
		}
	}
}

int vm_migration_blocker(struct vm *vm, struct error **errp)
{
	for (unsigned i = 0; i < vm->n_devices; i++) {
		const struct device_class *c = vm->devices[i].cls;

		if (!c->stateless && !c->save) {
			return error_set(errp, ENOTSUP,
					 "device %s cannot be migrated yet (no state support)",
					 c->name);
		}
	}
	return 0;
}
