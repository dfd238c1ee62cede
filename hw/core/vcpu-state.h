/*
 * KVM state of one vCPU and of the VM's in-kernel devices (PIT, kvmclock,
 * PIC and IOAPIC), as sections of the VM state stream. See vcpu-state.c
 * for the ioctl order and docs/vmstate.md for the format.
 *
 * Threads: any thread, with every vCPU of the VM parked.
 */
#pragma once

#include "common/error.h"
#include "common/vmstate.h"

struct vcpu;
struct vm;

#define VCPU_STATE_VERSION 1
#define VM_KVM_STATE_VERSION 1

int vcpu_state_save(struct vcpu *vcpu, struct vmstate_buf *out, struct error **errp);
/*
 * Check the saved CPUID and TSC frequency against this host (a clear error
 * naming the leaf, register or frequency) and load the registers.
 */
int vcpu_state_load(struct vcpu *vcpu, struct vmstate_buf *in, struct error **errp);

int vm_kvm_state_save(struct vm *vm, struct vmstate_buf *out, struct error **errp);
int vm_kvm_state_load(struct vm *vm, struct vmstate_buf *in, struct error **errp);
