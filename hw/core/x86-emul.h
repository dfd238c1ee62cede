/*
 * Work-arounds for instructions this host's in-kernel emulator rejects
 * (KVM_INTERNAL_ERROR_EMULATION): int3 at CPL 0, popcnt, clac/stac, fwait,
 * ldmxcsr/stmxcsr. vcpu.c calls x86_emul_try() on such an
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
	int (*set_fpu)(void *opaque, const struct kvm_fpu *fpu);
	int (*get_events)(void *opaque, struct kvm_vcpu_events *events);
	int (*set_events)(void *opaque, const struct kvm_vcpu_events *events);
	/* Up to @max instruction bytes at CS:RIP (0 if unreadable). */
	size_t (*read_insn)(void *opaque, const struct kvm_regs *regs,
			    const struct kvm_sregs *sregs, uint8_t *buf, size_t max);
	/*
	 * Read or write @len bytes at linear address @la through the guest's
	 * page tables (the access may cross a page). < 0 if any byte is not
	 * mapped to guest RAM.
	 */
	int (*read_mem)(void *opaque, uint64_t la, void *buf, size_t len);
	int (*write_mem)(void *opaque, uint64_t la, const void *buf, size_t len);
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

/*
 * Decode the memory operand of a 64-bit-mode instruction. @b (@n bytes) starts
 * at its ModRM byte, which lies at address @modrm_rip; @imm_len immediate
 * bytes follow the operand (for RIP-relative addressing, which counts from
 * the end of the instruction). @rex is the REX prefix (0 if none),
 * @seg_base the base of an FS/GS override (0 otherwise), @addr32 whether an
 * address-size prefix (67) was given. Returns the number of ModRM, SIB and
 * displacement bytes and stores the linear address in *ret_la, or 0 when
 * @b is too short or the operand is a register (mod 3).
 */
size_t x86_emul_decode_mem(const uint8_t *b, size_t n, unsigned rex, uint64_t seg_base, bool addr32,
			   const struct kvm_regs *regs, uint64_t modrm_rip, unsigned imm_len,
			   uint64_t *ret_la);
