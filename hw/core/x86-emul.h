/*
 * Work-arounds for instructions this host's in-kernel emulator rejects
 * (KVM_INTERNAL_ERROR_EMULATION). vcpu.c calls x86_emul_try() on such an
 * exit; the CPU state is reached through struct x86_emul_ops so a test can
 * supply a fake CPU.
 *
 * Threads: the vCPU's own thread, with the vCPU out of KVM_RUN.
 */
#pragma once

#include <linux/kvm.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ratelimit;

/* The CPU as the work-arounds see it. Each returns < 0 on failure. */
struct x86_emul_ops {
	int (*get_regs)(void *opaque, struct kvm_regs *regs);
	int (*set_regs)(void *opaque, const struct kvm_regs *regs);
	int (*get_sregs)(void *opaque, struct kvm_sregs *sregs);
	int (*get_fpu)(void *opaque, struct kvm_fpu *fpu);
	int (*get_events)(void *opaque, struct kvm_vcpu_events *events);
	int (*set_events)(void *opaque, const struct kvm_vcpu_events *events);
	/* Up to @max instruction bytes at CS:RIP (0 if unreadable). */
	size_t (*read_insn)(void *opaque, const struct kvm_regs *regs,
			    const struct kvm_sregs *sregs, uint8_t *buf, size_t max);
};

struct x86_emul_cpu {
	const struct x86_emul_ops *ops;
	void *opaque;
	const char *vm_name; /* for the log */
	unsigned index;	     /* vCPU index, for the log */
	struct ratelimit *rl;
};

/*
 * Try every work-around on the instruction at RIP. True if one completed it
 * (registers and pending events updated; the vCPU can resume), false if the
 * exit stays an emulation failure.
 */
bool x86_emul_try(const struct x86_emul_cpu *cpu);
