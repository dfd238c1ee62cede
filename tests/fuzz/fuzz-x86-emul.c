/*
 * libFuzzer target: the work-arounds for instructions this host's KVM
 * emulator rejects (hw/core/x86-emul.c), which decode guest instruction
 * bytes and memory operands on a vCPU thread: a fake CPU whose registers,
 * segments (long mode or not, CPL, FS/GS bases), CR0/CR4 bits, FPU state,
 * pending events, failing accessors, instruction bytes and 64 KiB of
 * operand memory all come from the input, then x86_emul_try() once, and
 * the operand decoder on its own. Besides memory safety it checks what a
 * handled instruction may change: RIP moves forward by one instruction
 * (1 to 15 bytes, wrapping at the code segment's width and never beyond
 * it), or stays where a #GP was injected; a #BP moves it by one; memory is
 * written only as a 4-byte store inside the operand memory.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "hw/core/x86-emul.h"
#include "tests/fuzz/fuzz-input.h"
#include "tests/unit/fake-cpu.h"

#define RAM FAKE_CPU_RAM

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct ratelimit rl = RATELIMIT_INIT(60 * 1000000, 1);

/* A register value: small, near the operand memory's end, or any 64 bits. */
static uint64_t fz_reg(struct fz *f)
{
	uint8_t kind = fz_u8(f);
	uint64_t lo = fz_u32(f);

	switch (kind % 4) {
	case 0:
		return lo % RAM;
	case 1:
		return RAM - 8 + lo % 16;
	case 2:
		return (uint64_t)0 - lo % RAM;
	default:
		return lo | (uint64_t)fz_u32(f) << 32;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fake_cpu c;
	struct fz f = {data, size};
	__u64 *gprs[] = {&c.regs.rax, &c.regs.rcx, &c.regs.rdx, &c.regs.rbx,
			 &c.regs.rsp, &c.regs.rbp, &c.regs.rsi, &c.regs.rdi,
			 &c.regs.r8,  &c.regs.r9,  &c.regs.r10, &c.regs.r11,
			 &c.regs.r12, &c.regs.r13, &c.regs.r14, &c.regs.r15};
	struct fake_cpu before;
	uint8_t mode, evs, b[16];
	uint64_t la, rip, width;
	size_t n, len;

	memset(&c, 0, sizeof(c));
	mode = fz_u8(&f);
	c.sregs.cs.l = mode & 1;
	c.sregs.cs.db = (mode >> 1) & 1;
	c.sregs.cs.dpl = (mode >> 2) & 3;
	c.sregs.cr4 = mode & 16 ? 1u << 9 : 0;			 /* OSFXSR */
	c.sregs.cr0 = (mode & 32 ? 8 : 0) | (mode & 64 ? 2 : 0); /* TS, MP */
	c.fpu.fsw = mode & 128 ? 0x80 : 0;			 /* ES */
	c.fail = fz_u8(&f); /* FAKE_FAIL_*: one bit per accessor */
	evs = fz_u8(&f);
	c.events.exception.injected = evs & 1;
	c.events.exception.pending = (evs >> 1) & 1;
	for (unsigned i = 0; i < 16; i++) {
		*gprs[i] = fz_reg(&f);
	}
	c.regs.rip = fz_reg(&f);
	c.regs.rflags = fz_u32(&f) | 2;
	c.sregs.fs.base = fz_reg(&f);
	c.sregs.gs.base = fz_reg(&f);
	c.fpu.mxcsr = fz_u32(&f);
	c.insn_len = fz_u8(&f) % (sizeof(c.insn) + 1);
	c.insn_len = fz_bytes(&f, c.insn, c.insn_len);
	n = fz_u8(&f) % (c.insn_len + 1);
	fz_bytes(&f, c.ram, RAM); /* the rest of the input */

	/* the operand decoder alone, on the instruction bytes after @n */
	len = x86_emul_decode_mem(c.insn + n, c.insn_len - n, evs >> 4, c.sregs.fs.base, evs & 4,
				  &c.regs, c.regs.rip + n, evs & 8 ? 4 : 0, &la);
	if (len > c.insn_len - n || len > 6) {
		abort(); /* ModRM, SIB and a 32-bit displacement at most */
	}

	before = c;
	memcpy(b, c.insn, sizeof(b));
	if (!fake_cpu_try(&c, &rl)) {
		return 0;
	}
	width = c.sregs.cs.l ? UINT64_MAX : c.sregs.cs.db ? 0xffffffffull : 0xffffull;
	rip = (c.regs.rip - before.regs.rip) & width;
	if (c.events.exception.injected && !before.events.exception.injected) {
		/* #BP after the int3, #GP(0) at the instruction */
		if (!((c.events.exception.nr == 3 && rip == 1 && b[0] == 0xcc) ||
		      (c.events.exception.nr == 13 && rip == 0))) {
			abort();
		}
	} else if (rip < 1 || rip > 15 || rip > before.insn_len || c.regs.rip > width) {
		abort(); /* one whole instruction, all of it read, RIP in the mode's width */
	}
	if (c.writes > 1 || (c.writes && c.last_write_len != 4)) {
		abort(); /* one stmxcsr at most */
	}
	return 0;
}
