/*
 * The KVM handle of one VM: /dev/kvm, the VM fd with its in-kernel irqchip
 * and PIT, memslots, and KVM's supported CPUID.
 *
 * Threads: set up and torn down on the control thread; the fds are then
 * used read-only from any VM thread.
 */
#pragma once

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"

struct guest_mem;

/* KVM's private pages in the PCI hole, below the IOAPIC and LAPIC. */
#define KVM_IDENTITY_MAP_ADDR 0xfeffc000ull
#define KVM_TSS_ADDR 0xfeffd000ull

struct kvm {
	int sys_fd;
	int vm_fd;
	int run_size;		      /* mmap size of struct kvm_run */
	unsigned max_vcpus;	      /* KVM_CAP_MAX_VCPUS */
	unsigned max_routes;	      /* KVM_CAP_IRQ_ROUTING */
	struct kvm_cpuid2 *supported; /* KVM_GET_SUPPORTED_CPUID */
	uint32_t n_slots;
};

/*
 * Open /dev/kvm, check the API version and every capability vmmd uses
 * (naming the missing one), create the VM, its TSS and identity-map pages,
 * the in-kernel irqchip and the PIT. On failure nothing is left open.
 */
int kvm_open(struct kvm *kvm, unsigned n_vcpus, struct error **errp);
/* Register every RAM region of @mem as a memslot. */
int kvm_add_memory(struct kvm *kvm, struct guest_mem *mem, struct error **errp);
/*
 * Turn KVM's dirty log on or off for every RAM memslot of @mem (re-registers
 * them with or without KVM_MEM_LOG_DIRTY_PAGES; the log starts empty).
 */
int kvm_set_dirty_log(struct kvm *kvm, struct guest_mem *mem, bool on, struct error **errp);
/*
 * OR into @bitmap the pages of RAM region @i the vCPUs wrote since the last
 * call (KVM_GET_DIRTY_LOG, which also clears and re-protects them).
 */
int kvm_get_dirty_log(struct kvm *kvm, struct guest_mem *mem, unsigned i, uint64_t *bitmap);
/* Close the VM (frees memslots, irqchip, vCPUs already closed). Zeroed struct is fine. */
void kvm_close(struct kvm *kvm);
