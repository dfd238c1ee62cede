/*
 * Work-arounds for this host's in-kernel instruction emulator: instructions
 * it rejects with KVM_INTERNAL_ERROR_EMULATION that a guest may still run
 * (int3 at CPL 0, popcnt, clac/stac, fwait). Each try_* decodes the bytes at
 * RIP and either completes the instruction in the registers or declines.
 * A new work-around is one try_* function here and one line in x86_emul_try().
 *
 * Threads: the vCPU's own thread, with that vCPU out of KVM_RUN. The CPU is
 * reached only through struct x86_emul_ops, so the work-arounds can be run
 * over a fake CPU without KVM.
 */
#include "config.h"

#include <inttypes.h>
#include <stdint.h>

#include "common/log.h"
#include "hw/core/x86-emul.h"

/*
 * This host's instruction emulator cannot run int3 at CPL 0; deliver the
 * #BP it would have raised (a trap: RIP after the instruction). True if
 * the exit was handled that way.
 */
static bool try_inject_bp(const struct x86_emul_cpu *cpu)
{
	struct kvm_vcpu_events ev;
	struct kvm_regs r;
	struct kvm_sregs s;
	uint8_t b;

	if (cpu->ops->get_regs(cpu->opaque, &r) < 0 || cpu->ops->get_sregs(cpu->opaque, &s) < 0 ||
	    cpu->ops->read_insn(cpu->opaque, &r, &s, &b, 1) != 1 || b != 0xcc) {
		return false;
	}
	if (cpu->ops->get_events(cpu->opaque, &ev) < 0 || ev.exception.injected ||
	    ev.exception.pending) {
		return false;
	}
	r.rip += 1;
	ev.exception.injected = 1;
	ev.exception.nr = 3;
	ev.exception.has_error_code = 0;
	ev.exception.error_code = 0;
	if (cpu->ops->set_regs(cpu->opaque, &r) < 0 || cpu->ops->set_events(cpu->opaque, &ev) < 0) {
		return false;
	}
	log_ratelimited(cpu->rl, LOG_INFO, cpu->vm_name, NULL,
			"vCPU %u: injected #BP for an int3 at 0x%" PRIx64
			" that the host's emulator rejected",
			cpu->index, (uint64_t)r.rip - 1);
	return true;
}

static uint64_t *gpr(struct kvm_regs *r, unsigned n)
{
	/* Encoding order: rax rcx rdx rbx rsp rbp rsi rdi r8..r15. */
	uint64_t *const map[16] = {
		(uint64_t *)&r->rax, (uint64_t *)&r->rcx, (uint64_t *)&r->rdx, (uint64_t *)&r->rbx,
		(uint64_t *)&r->rsp, (uint64_t *)&r->rbp, (uint64_t *)&r->rsi, (uint64_t *)&r->rdi,
		(uint64_t *)&r->r8,  (uint64_t *)&r->r9,  (uint64_t *)&r->r10, (uint64_t *)&r->r11,
		(uint64_t *)&r->r12, (uint64_t *)&r->r13, (uint64_t *)&r->r14, (uint64_t *)&r->r15,
	};

	return map[n & 15];
}

#define RFLAGS_ARITH 0x8d5ull /* CF PF AF ZF SF OF */
#define RFLAGS_ZF 0x40ull

/*
 * The host's emulator also rejects popcnt, which a guest may use whatever
 * CPUID says. Register-to-register forms only ([66|F3]* [REX] 0F B8 /r,
 * mod 3); anything else stays an emulation failure. True if emulated.
 */
static bool try_emulate_popcnt(const struct x86_emul_cpu *cpu)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	uint8_t b[8];
	size_t n, i = 0;
	bool f3 = false, opsize16 = false;
	unsigned rex = 0, bits, reg, rm;
	uint64_t src, mask, cnt;

	if (cpu->ops->get_regs(cpu->opaque, &r) < 0 || cpu->ops->get_sregs(cpu->opaque, &s) < 0) {
		return false;
	}
	n = cpu->ops->read_insn(cpu->opaque, &r, &s, b, sizeof(b));
	for (; i < n && (b[i] == 0xf3 || b[i] == 0x66); i++) {
		f3 |= b[i] == 0xf3;
		opsize16 |= b[i] == 0x66;
	}
	if (s.cs.l && i < n && (b[i] & 0xf0) == 0x40) {
		rex = b[i++];
	}
	if (!f3 || i + 3 > n || b[i] != 0x0f || b[i + 1] != 0xb8 || (b[i + 2] >> 6) != 3) {
		return false;
	}
	reg = ((rex >> 2) & 1) << 3 | ((b[i + 2] >> 3) & 7);
	rm = (rex & 1) << 3 | (b[i + 2] & 7);
	bits = (rex & 8) ? 64 : opsize16 ? 16 : 32;
	mask = bits == 64 ? UINT64_MAX : (1ull << bits) - 1;
	src = *gpr(&r, rm) & mask;
	cnt = (uint64_t)__builtin_popcountll(src);
	if (bits == 16) {
		*gpr(&r, reg) = (*gpr(&r, reg) & ~0xffffull) | cnt;
	} else {
		*gpr(&r, reg) = cnt; /* 32-bit results zero-extend */
	}
	r.rflags = (r.rflags & ~RFLAGS_ARITH) | (src == 0 ? RFLAGS_ZF : 0);
	r.rip += i + 3;
	if (cpu->ops->set_regs(cpu->opaque, &r) < 0) {
		return false;
	}
	log_ratelimited(cpu->rl, LOG_INFO, cpu->vm_name, NULL,
			"vCPU %u: emulated a popcnt at 0x%" PRIx64
			" that the host's emulator rejected",
			cpu->index, (uint64_t)r.rip - (i + 3));
	return true;
}

#define RFLAGS_AC (1ull << 18)

/*
 * CLAC / STAC (0F 01 CA / CB), in the kernel's exception entry when SMAP is
 * on: also beyond this host's emulator. True if emulated.
 */
static bool try_emulate_clac_stac(const struct x86_emul_cpu *cpu)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	uint8_t b[3];

	if (cpu->ops->get_regs(cpu->opaque, &r) < 0 || cpu->ops->get_sregs(cpu->opaque, &s) < 0 ||
	    cpu->ops->read_insn(cpu->opaque, &r, &s, b, sizeof(b)) != sizeof(b) || b[0] != 0x0f ||
	    b[1] != 0x01 || (b[2] != 0xca && b[2] != 0xcb) || (s.cs.dpl != 0)) {
		return false;
	}
	r.rflags = b[2] == 0xca ? r.rflags & ~RFLAGS_AC : r.rflags | RFLAGS_AC;
	r.rip += 3;
	if (cpu->ops->set_regs(cpu->opaque, &r) < 0) {
		return false;
	}
	log_ratelimited(cpu->rl, LOG_INFO, cpu->vm_name, NULL,
			"vCPU %u: emulated a %s at 0x%" PRIx64 " that the host's emulator rejected",
			cpu->index, b[2] == 0xca ? "clac" : "stac", (uint64_t)r.rip - 3);
	return true;
}

#define CR0_MP 0x2ull
#define CR0_TS 0x8ull
#define FSW_ES 0x80

/*
 * FWAIT (9B): a no-op unless an unmasked x87 exception is pending or
 * CR0.MP and CR0.TS are both set; those cases stay failures. True if done.
 */
static bool try_emulate_fwait(const struct x86_emul_cpu *cpu)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	struct kvm_fpu fpu;
	uint8_t b;

	if (cpu->ops->get_regs(cpu->opaque, &r) < 0 || cpu->ops->get_sregs(cpu->opaque, &s) < 0 ||
	    cpu->ops->read_insn(cpu->opaque, &r, &s, &b, 1) != 1 || b != 0x9b ||
	    (s.cr0 & (CR0_MP | CR0_TS)) == (CR0_MP | CR0_TS) ||
	    cpu->ops->get_fpu(cpu->opaque, &fpu) < 0 || (fpu.fsw & FSW_ES)) {
		return false;
	}
	r.rip += 1;
	if (cpu->ops->set_regs(cpu->opaque, &r) < 0) {
		return false;
	}
	log_ratelimited(cpu->rl, LOG_INFO, cpu->vm_name, NULL,
			"vCPU %u: emulated an fwait at 0x%" PRIx64
			" that the host's emulator rejected",
			cpu->index, (uint64_t)r.rip - 1);
	return true;
}

bool x86_emul_try(const struct x86_emul_cpu *cpu)
{
	return try_inject_bp(cpu) || try_emulate_popcnt(cpu) || try_emulate_clac_stac(cpu) ||
	       try_emulate_fwait(cpu);
}
