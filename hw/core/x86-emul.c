/*
 * Work-arounds for this host's in-kernel instruction emulator: instructions
 * it rejects with KVM_INTERNAL_ERROR_EMULATION that a guest may still run
 * (int3 at CPL 0, popcnt, clac/stac, fwait, ldmxcsr/stmxcsr). Each try_* decodes the bytes at
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
 * RIP after an instruction of @len bytes at @r->rip: the instruction
 * pointer is as wide as the code segment (RIP in 64-bit mode, EIP in a
 * 32-bit segment, IP in a 16-bit one) and wraps at that width, as QEMU's
 * translator does. Without the mask a guest running at the top of its
 * 4 GiB would get a RIP over 32 bits, which VM entry refuses outside
 * 64-bit mode. Returns where the instruction began, for the log.
 */
static uint64_t advance_rip(const struct kvm_sregs *s, struct kvm_regs *r, size_t len)
{
	uint64_t at = r->rip;

	r->rip += len;
	if (!s->cs.l) {
		r->rip &= s->cs.db ? 0xffffffffull : 0xffffull;
	}
	return at;
}

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
	uint64_t at;
	uint8_t b;

	if (cpu->ops->get_regs(cpu->opaque, &r) < 0 || cpu->ops->get_sregs(cpu->opaque, &s) < 0 ||
	    cpu->ops->read_insn(cpu->opaque, &r, &s, &b, 1) != 1 || b != 0xcc) {
		return false;
	}
	if (cpu->ops->get_events(cpu->opaque, &ev) < 0 || ev.exception.injected ||
	    ev.exception.pending) {
		return false;
	}
	at = advance_rip(&s, &r, 1);
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
			cpu->index, at);
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
	uint64_t src, mask, cnt, at;

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
	/* a 16-bit code segment (CS.D clear outside long mode) swaps 16 and 32 */
	bits = (rex & 8) ? 64 : opsize16 == (s.cs.l || s.cs.db) ? 16 : 32;
	mask = bits == 64 ? UINT64_MAX : (1ull << bits) - 1;
	src = *gpr(&r, rm) & mask;
	cnt = (uint64_t)__builtin_popcountll(src);
	if (bits == 16) {
		*gpr(&r, reg) = (*gpr(&r, reg) & ~0xffffull) | cnt;
	} else {
		*gpr(&r, reg) = cnt; /* 32-bit results zero-extend */
	}
	r.rflags = (r.rflags & ~RFLAGS_ARITH) | (src == 0 ? RFLAGS_ZF : 0);
	at = advance_rip(&s, &r, i + 3);
	if (cpu->ops->set_regs(cpu->opaque, &r) < 0) {
		return false;
	}
	log_ratelimited(cpu->rl, LOG_INFO, cpu->vm_name, NULL,
			"vCPU %u: emulated a popcnt at 0x%" PRIx64
			" that the host's emulator rejected",
			cpu->index, at);
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
	uint64_t at;
	uint8_t b[3];

	if (cpu->ops->get_regs(cpu->opaque, &r) < 0 || cpu->ops->get_sregs(cpu->opaque, &s) < 0 ||
	    cpu->ops->read_insn(cpu->opaque, &r, &s, b, sizeof(b)) != sizeof(b) || b[0] != 0x0f ||
	    b[1] != 0x01 || (b[2] != 0xca && b[2] != 0xcb) || (s.cs.dpl != 0)) {
		return false;
	}
	r.rflags = b[2] == 0xca ? r.rflags & ~RFLAGS_AC : r.rflags | RFLAGS_AC;
	at = advance_rip(&s, &r, 3);
	if (cpu->ops->set_regs(cpu->opaque, &r) < 0) {
		return false;
	}
	log_ratelimited(cpu->rl, LOG_INFO, cpu->vm_name, NULL,
			"vCPU %u: emulated a %s at 0x%" PRIx64 " that the host's emulator rejected",
			cpu->index, b[2] == 0xca ? "clac" : "stac", at);
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
	uint64_t at;
	uint8_t b;

	if (cpu->ops->get_regs(cpu->opaque, &r) < 0 || cpu->ops->get_sregs(cpu->opaque, &s) < 0 ||
	    cpu->ops->read_insn(cpu->opaque, &r, &s, &b, 1) != 1 || b != 0x9b ||
	    (s.cr0 & (CR0_MP | CR0_TS)) == (CR0_MP | CR0_TS) ||
	    cpu->ops->get_fpu(cpu->opaque, &fpu) < 0 || (fpu.fsw & FSW_ES)) {
		return false;
	}
	at = advance_rip(&s, &r, 1);
	if (cpu->ops->set_regs(cpu->opaque, &r) < 0) {
		return false;
	}
	log_ratelimited(cpu->rl, LOG_INFO, cpu->vm_name, NULL,
			"vCPU %u: emulated an fwait at 0x%" PRIx64
			" that the host's emulator rejected",
			cpu->index, at);
	return true;
}

size_t x86_emul_decode_mem(const uint8_t *b, size_t n, unsigned rex, uint64_t seg_base, bool addr32,
			   const struct kvm_regs *regs, uint64_t modrm_rip, unsigned imm_len,
			   uint64_t *ret_la)
{
	struct kvm_regs r = *regs;
	unsigned mod, rm, i = 1;
	uint64_t ea = 0;
	bool rip_rel = false;

	if (n < 1) {
		return 0;
	}
	mod = b[0] >> 6;
	rm = b[0] & 7;
	if (mod == 3) {
		return 0;
	}
	if (rm == 4) { /* SIB */
		unsigned scale, index, base;

		if (n < 2) {
			return 0;
		}
		scale = b[1] >> 6;
		index = ((rex >> 1) & 1) << 3 | ((b[1] >> 3) & 7);
		base = (rex & 1) << 3 | (b[1] & 7);
		i = 2;
		if (index != 4) { /* rsp as index means none; r12 is an index */
			ea += *gpr(&r, index) << scale;
		}
		if ((base & 7) == 5 && mod == 0) {
			mod = 2; /* no base: a disp32 follows (counted below) */
		} else {
			ea += *gpr(&r, base);
		}
	} else if (rm == 5 && mod == 0) {
		rip_rel = true;
		mod = 2;
	} else {
		ea += *gpr(&r, (rex & 1) << 3 | rm);
	}
	if (mod == 1) {
		if (n < i + 1) {
			return 0;
		}
		ea += (uint64_t)(int64_t)(int8_t)b[i];
		i += 1;
	} else if (mod == 2) {
		int32_t d;

		if (n < i + 4) {
			return 0;
		}
		d = (int32_t)((uint32_t)b[i] | (uint32_t)b[i + 1] << 8 | (uint32_t)b[i + 2] << 16 |
			      (uint32_t)b[i + 3] << 24);
		ea += (uint64_t)(int64_t)d;
		i += 4;
	}
	if (rip_rel) {
		ea += modrm_rip + i + imm_len;
	}
	if (addr32) {
		ea &= 0xffffffffull;
	}
	*ret_la = seg_base + ea;
	return i;
}

#define CR4_OSFXSR (1ull << 9)
#define MXCSR_RESERVED 0xffff0000u

/* Raise #GP(0) in the guest instead of completing the instruction. */
static bool inject_gp(const struct x86_emul_cpu *cpu)
{
	struct kvm_vcpu_events ev;

	if (cpu->ops->get_events(cpu->opaque, &ev) < 0 || ev.exception.injected ||
	    ev.exception.pending) {
		return false;
	}
	ev.exception.injected = 1;
	ev.exception.nr = 13;
	ev.exception.has_error_code = 1;
	ev.exception.error_code = 0;
	return cpu->ops->set_events(cpu->opaque, &ev) == 0;
}

/*
 * LDMXCSR / STMXCSR m32 (0F AE /2, /3) in 64-bit mode: beyond this host's
 * emulator, and the first SSE instruction a stock kernel runs (kernel_fpu
 * begin at initramfs unpack). MXCSR moves through the FPU state (KVM_GET/
 * SET_FPU); the operand through the guest's page tables. Faults the real
 * instruction would take and this cannot reproduce (CR4.OSFXSR clear: #UD;
 * CR0.TS: #NM; an unmapped operand: #PF) stay emulation failures; reserved
 * MXCSR bits give #GP(0) as on hardware. True if handled.
 */
static bool try_emulate_mxcsr(const struct x86_emul_cpu *cpu)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	struct kvm_fpu fpu;
	uint8_t b[15];
	size_t n, i = 0, len;
	unsigned rex = 0;
	uint64_t seg_base = 0, la, at;
	bool addr32 = false, store;
	uint32_t v;

	if (cpu->ops->get_regs(cpu->opaque, &r) < 0 || cpu->ops->get_sregs(cpu->opaque, &s) < 0 ||
	    !s.cs.l || !cpu->ops->read_mem) {
		return false;
	}
	n = cpu->ops->read_insn(cpu->opaque, &r, &s, b, sizeof(b));
	for (; i < n; i++) { /* legacy prefixes that may precede it */
		if (b[i] == 0x64) {
			seg_base = s.fs.base;
		} else if (b[i] == 0x65) {
			seg_base = s.gs.base;
		} else if (b[i] == 0x67) {
			addr32 = true;
		} else if (b[i] != 0x26 && b[i] != 0x2e && b[i] != 0x36 && b[i] != 0x3e) {
			break;
		}
	}
	if (i < n && (b[i] & 0xf0) == 0x40) {
		rex = b[i++];
	}
	if (i + 3 > n || b[i] != 0x0f || b[i + 1] != 0xae || (b[i + 2] >> 6) == 3 ||
	    ((b[i + 2] >> 3) & 7) < 2 || ((b[i + 2] >> 3) & 7) > 3) {
		return false;
	}
	store = ((b[i + 2] >> 3) & 7) == 3;
	i += 2;
	len = x86_emul_decode_mem(b + i, n - i, rex, seg_base, addr32, &r, r.rip + i, 0, &la);
	if (!len || !(s.cr4 & CR4_OSFXSR) || (s.cr0 & CR0_TS) ||
	    cpu->ops->get_fpu(cpu->opaque, &fpu) < 0) {
		return false;
	}
	if (store) {
		v = fpu.mxcsr;
		if (!cpu->ops->write_mem || cpu->ops->write_mem(cpu->opaque, la, &v, 4) < 0) {
			return false;
		}
	} else {
		if (cpu->ops->read_mem(cpu->opaque, la, &v, 4) < 0) {
			return false;
		}
		if (v & MXCSR_RESERVED) {
			return inject_gp(cpu);
		}
		fpu.mxcsr = v;
		if (!cpu->ops->set_fpu || cpu->ops->set_fpu(cpu->opaque, &fpu) < 0) {
			return false;
		}
	}
	at = advance_rip(&s, &r, i + len);
	if (cpu->ops->set_regs(cpu->opaque, &r) < 0) {
		return false;
	}
	log_ratelimited(cpu->rl, LOG_INFO, cpu->vm_name, NULL,
			"vCPU %u: emulated an %s at 0x%" PRIx64
			" that the host's emulator rejected",
			cpu->index, store ? "stmxcsr" : "ldmxcsr", at);
	return true;
}

bool x86_emul_try(const struct x86_emul_cpu *cpu)
{
	return try_inject_bp(cpu) || try_emulate_popcnt(cpu) || try_emulate_clac_stac(cpu) ||
	       try_emulate_fwait(cpu) || try_emulate_mxcsr(cpu);
}
