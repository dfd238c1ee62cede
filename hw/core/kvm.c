/*
 * KVM core: see kvm.h.
 *
 * Threads: the thread that builds or tears down a VM (vm_new, vm_restore,
 * vm_destroy: a worker or a migration thread).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "common/parse.h"
#include "hw/core/cpuid.h"
#include "hw/core/kvm.h"
#include "hw/core/memory.h"

static const struct {
	int cap;
	const char *name;
} required_caps[] = {
	{KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"},
	{KVM_CAP_HLT, "KVM_CAP_HLT"},
	{KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
	{KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR"},
	{KVM_CAP_SET_IDENTITY_MAP_ADDR, "KVM_CAP_SET_IDENTITY_MAP_ADDR"},
	{KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},
	{KVM_CAP_MP_STATE, "KVM_CAP_MP_STATE"},
	{KVM_CAP_PIT2, "KVM_CAP_PIT2"},
	{KVM_CAP_PIT_STATE2, "KVM_CAP_PIT_STATE2"},
	{KVM_CAP_IRQ_ROUTING, "KVM_CAP_IRQ_ROUTING"},
	{KVM_CAP_IRQ_INJECT_STATUS, "KVM_CAP_IRQ_INJECT_STATUS"},
	{KVM_CAP_IRQFD, "KVM_CAP_IRQFD"},
	{KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD"},
	{KVM_CAP_SIGNAL_MSI, "KVM_CAP_SIGNAL_MSI"},
	{KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"},
	{KVM_CAP_VCPU_EVENTS, "KVM_CAP_VCPU_EVENTS"},
	{KVM_CAP_NR_MEMSLOTS, "KVM_CAP_NR_MEMSLOTS"},
};

/*
 * KVM_GET_SUPPORTED_CPUID answers the same for the life of the process (it
 * depends on the host CPU and the loaded kvm module), and it is not cheap:
 * the kernel executes CPUID for every leaf, which traps to the hypervisor
 * when this host is itself a guest (5% of a VM build's CPU time here). It is
 * asked once; each VM gets a copy. The first failure is not kept: the next
 * VM asks again.
 */
static pthread_mutex_t supported_lock = PTHREAD_MUTEX_INITIALIZER;
static struct kvm_cpuid2 *supported_cache;

static size_t cpuid2_size(unsigned nent)
{
	return sizeof(struct kvm_cpuid2) + nent * sizeof(struct kvm_cpuid_entry2);
}

static int get_supported_cpuid(struct kvm *kvm, struct error **errp)
{
	struct kvm_cpuid2 *c;
	int r = 0;

	pthread_mutex_lock(&supported_lock);
	if (!supported_cache) {
		c = calloc(1, cpuid2_size(CPUID_MAX_ENTRIES));
		if (!c) {
			r = error_set(errp, ENOMEM, "out of memory");
			goto out;
		}
		c->nent = CPUID_MAX_ENTRIES;
		if (ioctl(kvm->sys_fd, KVM_GET_SUPPORTED_CPUID, c) < 0) {
			r = error_set_errno(errp, errno, "KVM_GET_SUPPORTED_CPUID failed");
			free(c);
			goto out;
		}
		supported_cache = c;
	}
	kvm->supported = malloc(cpuid2_size(supported_cache->nent));
	if (!kvm->supported) {
		r = error_set(errp, ENOMEM, "out of memory");
		goto out;
	}
	memcpy(kvm->supported, supported_cache, cpuid2_size(supported_cache->nent));
out:
	pthread_mutex_unlock(&supported_lock);
	return r;
}

void kvm_close(struct kvm *kvm)
{
	if (kvm->vm_fd > 0) {
		close(kvm->vm_fd);
	}
	if (kvm->sys_fd > 0) {
		close(kvm->sys_fd);
	}
	free(kvm->supported);
	memset(kvm, 0, sizeof(*kvm));
	kvm->vm_fd = -1;
	kvm->sys_fd = -1;
}

int kvm_open(struct kvm *kvm, unsigned n_vcpus, struct error **errp)
{
	struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
	uint64_t identity = KVM_IDENTITY_MAP_ADDR;
	int r, v;

	memset(kvm, 0, sizeof(*kvm));
	kvm->vm_fd = -1;
	kvm->sys_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm->sys_fd < 0) {
		r = error_set_errno(errp, errno, "cannot open /dev/kvm");
		goto err_close;
	}
	v = ioctl(kvm->sys_fd, KVM_GET_API_VERSION, 0);
	if (v != KVM_API_VERSION) {
		r = error_set(errp, ENOTSUP, "/dev/kvm speaks KVM API version %d, vmmd needs %d", v,
			      KVM_API_VERSION);
		goto err_close;
	}
	for (size_t i = 0; i < ARRAY_SIZE(required_caps); i++) {
		if (ioctl(kvm->sys_fd, KVM_CHECK_EXTENSION, required_caps[i].cap) <= 0) {
			r = error_set_class(errp, ERROR_CLASS_KVM_MISSING_CAP, ENOTSUP,
					    "this host's KVM lacks %s, which vmmd needs",
					    required_caps[i].name);
			goto err_close;
		}
	}
	v = ioctl(kvm->sys_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	kvm->max_vcpus = v > 0 ? (unsigned)v : 4;
	if (n_vcpus > kvm->max_vcpus) {
		r = error_set(errp, EINVAL, "%u vCPUs requested, this host's KVM allows %u",
			      n_vcpus, kvm->max_vcpus);
		goto err_close;
	}
	v = ioctl(kvm->sys_fd, KVM_CHECK_EXTENSION, KVM_CAP_IRQ_ROUTING);
	kvm->max_routes = v > 0 ? (unsigned)v : 1024;
	v = ioctl(kvm->sys_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_MEMSLOTS);
	kvm->n_slots = v > 0 ? (uint32_t)v : 32;
	kvm->run_size = ioctl(kvm->sys_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (kvm->run_size < (int)sizeof(struct kvm_run)) {
		r = error_set(errp, EIO, "KVM_GET_VCPU_MMAP_SIZE returned %d", kvm->run_size);
		goto err_close;
	}
	r = get_supported_cpuid(kvm, errp);
	if (r < 0) {
		goto err_close;
	}
	do {
		kvm->vm_fd = ioctl(kvm->sys_fd, KVM_CREATE_VM, 0);
	} while (kvm->vm_fd < 0 && errno == EINTR);
	if (kvm->vm_fd < 0) {
		r = error_set_errno(errp, errno, "KVM_CREATE_VM failed");
		goto err_close;
	}
	fcntl(kvm->vm_fd, F_SETFD, FD_CLOEXEC);
	if (ioctl(kvm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &identity) < 0) {
		r = error_set_errno(errp, errno, "KVM_SET_IDENTITY_MAP_ADDR failed");
		goto err_close;
	}
	if (ioctl(kvm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)KVM_TSS_ADDR) < 0) {
		r = error_set_errno(errp, errno, "KVM_SET_TSS_ADDR failed");
		goto err_close;
	}
	if (ioctl(kvm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
		r = error_set_errno(errp, errno, "KVM_CREATE_IRQCHIP failed");
		goto err_close;
	}
	if (ioctl(kvm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
		r = error_set_errno(errp, errno, "KVM_CREATE_PIT2 failed");
		goto err_close;
	}
	return 0;

err_close:
	kvm_close(kvm);
	return r;
}

int kvm_add_memory(struct kvm *kvm, struct guest_mem *mem, struct error **errp)
{
	char buf[32];

	for (unsigned i = 0; i < guest_mem_region_count(mem); i++) {
		const struct guest_mem_region *reg = guest_mem_region(mem, i);
		struct kvm_userspace_memory_region slot = {
			.slot = i,
			.guest_phys_addr = reg->gpa,
			.memory_size = reg->size,
			.userspace_addr = (uintptr_t)reg->host,
		};

		if (i >= kvm->n_slots) {
			return error_set(errp, ENOSPC, "KVM allows only %u memory slots",
					 kvm->n_slots);
		}
		if (ioctl(kvm->vm_fd, KVM_SET_USER_MEMORY_REGION, &slot) < 0) {
			return error_set_errno(errp, errno,
					       "cannot register %s of guest RAM at 0x%" PRIx64
					       " with KVM",
					       format_size(reg->size, buf, sizeof(buf)), reg->gpa);
		}
	}
	return 0;
}

int kvm_set_dirty_log(struct kvm *kvm, struct guest_mem *mem, bool on, struct error **errp)
{
	for (unsigned i = 0; i < guest_mem_region_count(mem); i++) {
		const struct guest_mem_region *reg = guest_mem_region(mem, i);
		struct kvm_userspace_memory_region slot = {
			.slot = i,
			.flags = on ? KVM_MEM_LOG_DIRTY_PAGES : 0,
			.guest_phys_addr = reg->gpa,
			.memory_size = reg->size,
			.userspace_addr = (uintptr_t)reg->host,
		};

		if (ioctl(kvm->vm_fd, KVM_SET_USER_MEMORY_REGION, &slot) < 0) {
			return error_set_errno(errp, errno,
					       "cannot %s KVM's dirty log on memslot %u",
					       on ? "enable" : "disable", i);
		}
	}
	return 0;
}

int kvm_get_dirty_log(struct kvm *kvm, struct guest_mem *mem, unsigned i, uint64_t *bitmap)
{
	const struct guest_mem_region *reg = guest_mem_region(mem, i);
	size_t words = reg ? (reg->size / 4096 + 63) / 64 : 0;
	uint64_t *log;
	struct kvm_dirty_log d = {.slot = i};

	if (!reg) {
		return -EINVAL;
	}
	log = calloc(words, sizeof(uint64_t));
	if (!log) {
		return -ENOMEM;
	}
	d.dirty_bitmap = log;
	if (ioctl(kvm->vm_fd, KVM_GET_DIRTY_LOG, &d) < 0) {
		int r = -errno;

		free(log);
		return r;
	}
	for (size_t w = 0; w < words; w++) {
		bitmap[w] |= log[w];
	}
	free(log);
	return 0;
}
