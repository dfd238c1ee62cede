/*
 * Unit tests for hw/core/x86-emul.c: each work-around for this host's
 * instruction emulator, run over a fake CPU (tests/unit/fake-cpu.h:
 * registers, segments, FPU, pending events, the instruction bytes at RIP
 * and a little RAM for memory operands) without KVM; the ModRM/SIB/
 * RIP-relative operand decoder.
 */
#include "config.h"

#include <check.h>
#include <string.h>

#include "common/log.h"
#include "hw/core/x86-emul.h"
#include "tests/unit/fake-cpu.h"

#define RFLAGS_ZF 0x40ull
#define RFLAGS_CF 0x1ull
#define RFLAGS_AC (1ull << 18)
#define CR4_OSFXSR (1ull << 9)
#define CR0_TS 0x8ull

static struct ratelimit rl = RATELIMIT_INIT(5 * 1000000, 100);

/* A CPU at CPL 0 in 64-bit mode, RIP 0x1000, with @bytes at RIP. */
static void cpu_init(struct fake_cpu *c, const uint8_t *bytes, size_t n)
{
	memset(c, 0, sizeof(*c));
	c->regs.rip = 0x1000;
	c->regs.rflags = 0x2;
	c->sregs.cs.l = 1;
	c->sregs.cs.dpl = 0;
	memcpy(c->insn, bytes, n);
	c->insn_len = n;
}

static bool try(struct fake_cpu *c)
{
	return fake_cpu_try(c, &rl);
}

START_TEST(int3_injects_bp_after_the_instruction)
{
	static const uint8_t b[] = {0xcc};
	struct fake_cpu c;

	cpu_init(&c, b, sizeof(b));
	ck_assert(try(&c));
	ck_assert_uint_eq(c.regs.rip, 0x1001);
	ck_assert_uint_eq(c.events.exception.injected, 1);
	ck_assert_uint_eq(c.events.exception.nr, 3);
	ck_assert_uint_eq(c.events.exception.has_error_code, 0);

	/* An exception already pending: left to KVM. */
	cpu_init(&c, b, sizeof(b));
	c.events.exception.pending = 1;
	ck_assert(!try(&c));
	ck_assert_uint_eq(c.set_regs_calls, 0);
}
END_TEST

START_TEST(popcnt_register_forms)
{
	/* popcnt eax, ecx: F3 0F B8 C1 */
	static const uint8_t p32[] = {0xf3, 0x0f, 0xb8, 0xc1};
	/* popcnt r9, rax: F3 4C 0F B8 C8 (REX.W + REX.R) */
	static const uint8_t p64[] = {0xf3, 0x4c, 0x0f, 0xb8, 0xc8};
	/* popcnt ax, dx: 66 F3 0F B8 C2 */
	static const uint8_t p16[] = {0x66, 0xf3, 0x0f, 0xb8, 0xc2};
	struct fake_cpu c;

	cpu_init(&c, p32, sizeof(p32));
	c.regs.rcx = 0xffffffff000000f0ull; /* only the low 32 bits count */
	c.regs.rax = 0xdeadbeefdeadbeefull;
	c.regs.rflags |= RFLAGS_ZF | RFLAGS_CF;
	ck_assert(try(&c));
	ck_assert_uint_eq(c.regs.rax, 4); /* 32-bit result zero-extends */
	ck_assert_uint_eq(c.regs.rflags & (RFLAGS_ZF | RFLAGS_CF), 0);
	ck_assert_uint_eq(c.regs.rip, 0x1004);

	cpu_init(&c, p64, sizeof(p64));
	c.regs.rax = 0x8000000000000001ull;
	ck_assert(try(&c));
	ck_assert_uint_eq(c.regs.r9, 2);
	ck_assert_uint_eq(c.regs.rip, 0x1005);

	cpu_init(&c, p16, sizeof(p16));
	c.regs.rdx = 0xffff0000ull; /* low 16 bits are zero */
	c.regs.rax = 0x12345678ull;
	ck_assert(try(&c));
	ck_assert_uint_eq(c.regs.rax, 0x12340000ull); /* upper bits kept */
	ck_assert_uint_eq(c.regs.rflags & RFLAGS_ZF, RFLAGS_ZF);
	ck_assert_uint_eq(c.regs.rip, 0x1005);
}
END_TEST

/*
 * In a 16-bit code segment (real mode, or CS.D clear) popcnt without 66 is
 * the 16-bit form: it writes AX only; with 66 it is the 32-bit one.
 */
START_TEST(popcnt_16bit_code_segment)
{
	static const uint8_t p16[] = {0xf3, 0x0f, 0xb8, 0xc2};
	static const uint8_t p32[] = {0x66, 0xf3, 0x0f, 0xb8, 0xc2};
	struct fake_cpu c;

	cpu_init(&c, p16, sizeof(p16));
	c.sregs.cs.l = 0;
	c.sregs.cs.db = 0;
	c.regs.rdx = 0xffff00ff;
	c.regs.rax = 0x12345678;
	ck_assert(try(&c));
	ck_assert_uint_eq(c.regs.rax, 0x12340008);
	ck_assert_uint_eq(c.regs.rip, 0x1004);

	cpu_init(&c, p32, sizeof(p32));
	c.sregs.cs.l = 0;
	c.sregs.cs.db = 0;
	c.regs.rdx = 0xffff00ff;
	ck_assert(try(&c));
	ck_assert_uint_eq(c.regs.rax, 24);

	/* a 32-bit code segment outside long mode: as in long mode */
	cpu_init(&c, p16, sizeof(p16));
	c.sregs.cs.l = 0;
	c.sregs.cs.db = 1;
	c.regs.rdx = 0xffff00ff;
	ck_assert(try(&c));
	ck_assert_uint_eq(c.regs.rax, 24);
}
END_TEST

/*
 * The instruction pointer is as wide as the code segment: EIP wraps at
 * 4 GiB in a 32-bit segment, IP at 64 KiB in a 16-bit one; only 64-bit
 * code carries into bit 32 (VM entry refuses a RIP over 32 bits outside
 * 64-bit mode).
 */
START_TEST(rip_wraps_at_the_code_segment_width)
{
	static const uint8_t popcnt[] = {0xf3, 0x0f, 0xb8, 0xc2};
	static const uint8_t int3[] = {0xcc};
	static const uint8_t fwait[] = {0x9b};
	static const uint8_t clac[] = {0x0f, 0x01, 0xca};
	struct fake_cpu c;

	cpu_init(&c, popcnt, sizeof(popcnt));
	c.sregs.cs.l = 0;
	c.sregs.cs.db = 1;
	c.regs.rip = 0xfffffffe;
	ck_assert(try(&c));
	ck_assert_uint_eq(c.regs.rip, 2);

	cpu_init(&c, int3, sizeof(int3));
	c.sregs.cs.l = 0;
	c.sregs.cs.db = 1;
	c.regs.rip = 0xffffffff;
	ck_assert(try(&c));
	ck_assert_uint_eq(c.regs.rip, 0);
	ck_assert_uint_eq(c.events.exception.nr, 3);

	cpu_init(&c, fwait, sizeof(fwait));
	c.sregs.cs.l = 0;
	c.sregs.cs.db = 0;
	c.regs.rip = 0xffff;
	ck_assert(try(&c));
	ck_assert_uint_eq(c.regs.rip, 0);

	cpu_init(&c, clac, sizeof(clac));
	c.sregs.cs.l = 0;
	c.sregs.cs.db = 0;
	c.regs.rip = 0xfffe;
	ck_assert(try(&c));
	ck_assert_uint_eq(c.regs.rip, 1);

	/* 64-bit code: no wrap at 4 GiB */
	cpu_init(&c, popcnt, sizeof(popcnt));
	c.regs.rip = 0xfffffffe;
	ck_assert(try(&c));
	ck_assert_uint_eq(c.regs.rip, 0x100000002ull);
}
END_TEST

START_TEST(popcnt_memory_form_declined)
{
	/* popcnt eax, [rcx]: mod 0 */
	static const uint8_t b[] = {0xf3, 0x0f, 0xb8, 0x01};
	/* 0F B8 without F3 is JMPE, not popcnt */
	static const uint8_t nof3[] = {0x0f, 0xb8, 0xc1};
	struct fake_cpu c;

	cpu_init(&c, b, sizeof(b));
	ck_assert(!try(&c));
	ck_assert_uint_eq(c.regs.rip, 0x1000);
	cpu_init(&c, nof3, sizeof(nof3));
	ck_assert(!try(&c));
	ck_assert_uint_eq(c.set_regs_calls, 0);
}
END_TEST

START_TEST(clac_stac_at_cpl0_only)
{
	static const uint8_t clac[] = {0x0f, 0x01, 0xca};
	static const uint8_t stac[] = {0x0f, 0x01, 0xcb};
	struct fake_cpu c;

	cpu_init(&c, stac, sizeof(stac));
	ck_assert(try(&c));
	ck_assert_uint_eq(c.regs.rflags & RFLAGS_AC, RFLAGS_AC);
	ck_assert_uint_eq(c.regs.rip, 0x1003);

	cpu_init(&c, clac, sizeof(clac));
	c.regs.rflags |= RFLAGS_AC;
	ck_assert(try(&c));
	ck_assert_uint_eq(c.regs.rflags & RFLAGS_AC, 0);

	cpu_init(&c, stac, sizeof(stac));
	c.sregs.cs.dpl = 3; /* #UD at CPL 3: not ours to complete */
	ck_assert(!try(&c));
	ck_assert_uint_eq(c.regs.rflags & RFLAGS_AC, 0);
}
END_TEST

START_TEST(fwait_is_a_noop_unless_an_exception_is_due)
{
	static const uint8_t b[] = {0x9b};
	struct fake_cpu c;

	cpu_init(&c, b, sizeof(b));
	ck_assert(try(&c));
	ck_assert_uint_eq(c.regs.rip, 0x1001);

	cpu_init(&c, b, sizeof(b));
	c.fpu.fsw = 0x80; /* ES: an unmasked x87 exception is pending */
	ck_assert(!try(&c));

	cpu_init(&c, b, sizeof(b));
	c.sregs.cr0 = 0x2 | 0x8; /* MP and TS: #NM */
	ck_assert(!try(&c));
	ck_assert_uint_eq(c.set_regs_calls, 0);
}
END_TEST

START_TEST(anything_else_stays_a_failure)
{
	static const uint8_t nop[] = {0x90};
	struct fake_cpu c;

	cpu_init(&c, nop, sizeof(nop));
	ck_assert(!try(&c));
	cpu_init(&c, nop, 0); /* unreadable RIP */
	ck_assert(!try(&c));
	cpu_init(&c, (const uint8_t[]){0x9b}, 1);
	c.fail = FAKE_FAIL_GETTERS; /* the CPU state cannot be read */
	ck_assert(!try(&c));
	ck_assert_uint_eq(c.set_regs_calls, 0);
	ck_assert_uint_eq(c.set_events_calls, 0);
}
END_TEST

/* cpu_init() with SSE on (CR4.OSFXSR), paging, and MXCSR at its reset value. */
static struct fake_cpu *sse_cpu(struct fake_cpu *c, const uint8_t *bytes, size_t n)
{
	cpu_init(c, bytes, n);
	c->sregs.cr0 = 0x80050033;
	c->sregs.cr4 = CR4_OSFXSR;
	c->fpu.mxcsr = 0x1f80;
	return c;
}

static uint32_t ram32(struct fake_cpu *c, uint64_t a)
{
	uint32_t v;

	memcpy(&v, c->ram + a, 4);
	return v;
}

static void put32(struct fake_cpu *c, uint64_t a, uint32_t v)
{
	memcpy(c->ram + a, &v, 4);
}

START_TEST(decode_forms)
{
	struct kvm_regs r = {0};
	uint64_t la;

	r.rax = 0x100;
	r.rbx = 0x2000;
	r.rsp = 0x8000;
	r.rbp = 0x3000;
	r.r12 = 0x40;
	r.r13 = 0x5000;
	/* [rax] */
	ck_assert_uint_eq(
		x86_emul_decode_mem((const uint8_t[]){0x10}, 1, 0, 0, false, &r, 0, 0, &la), 1);
	ck_assert_uint_eq(la, 0x100);
	/* [rbx + disp8 -8] */
	ck_assert_uint_eq(
		x86_emul_decode_mem((const uint8_t[]){0x53, 0xf8}, 2, 0, 0, false, &r, 0, 0, &la),
		2);
	ck_assert_uint_eq(la, 0x2000 - 8);
	/* [rsp + 0x10] needs a SIB (base rsp, no index) */
	ck_assert_uint_eq(x86_emul_decode_mem((const uint8_t[]){0x54, 0x24, 0x10}, 3, 0, 0, false,
					      &r, 0, 0, &la),
			  3);
	ck_assert_uint_eq(la, 0x8010);
	/* [rbx + r12*4 + disp32] with REX.X */
	ck_assert_uint_eq(x86_emul_decode_mem((const uint8_t[]){0x94, 0xa3, 0x00, 0x01, 0, 0}, 6,
					      0x42, 0, false, &r, 0, 0, &la),
			  6);
	ck_assert_uint_eq(la, 0x2000 + 0x40 * 4 + 0x100);
	/* mod 0, base 5 in SIB: no base, disp32 */
	ck_assert_uint_eq(x86_emul_decode_mem((const uint8_t[]){0x14, 0x25, 0x78, 0x56, 0x34, 0x12},
					      6, 0, 0, false, &r, 0, 0, &la),
			  6);
	ck_assert_uint_eq(la, 0x12345678);
	/* [r13] is mod 1 disp8 0 (r13 as base needs a displacement) */
	ck_assert_uint_eq(x86_emul_decode_mem((const uint8_t[]){0x55, 0x00}, 2, 0x41, 0, false, &r,
					      0, 0, &la),
			  2);
	ck_assert_uint_eq(la, 0x5000);
	/* RIP-relative: from the end of the instruction (ModRM at 0x1003, 1 imm byte) */
	ck_assert_uint_eq(x86_emul_decode_mem((const uint8_t[]){0x15, 0x10, 0, 0, 0}, 5, 0, 0,
					      false, &r, 0x1003, 1, &la),
			  5);
	ck_assert_uint_eq(la, 0x1003 + 5 + 1 + 0x10);
	/* negative disp32, segment base, 32-bit addressing */
	ck_assert_uint_eq(x86_emul_decode_mem((const uint8_t[]){0x90, 0xf0, 0xff, 0xff, 0xff}, 5, 0,
					      0x700000, false, &r, 0, 0, &la),
			  5);
	ck_assert_uint_eq(la, 0x700000 + 0x100 - 16);
	r.rax = 0x1ffffff00ull;
	ck_assert_uint_eq(
		x86_emul_decode_mem((const uint8_t[]){0x10}, 1, 0, 0, true, &r, 0, 0, &la), 1);
	ck_assert_uint_eq(la, 0xffffff00ull);
	/* register operand and truncated bytes: not a memory operand */
	ck_assert_uint_eq(
		x86_emul_decode_mem((const uint8_t[]){0xc0}, 1, 0, 0, false, &r, 0, 0, &la), 0);
	ck_assert_uint_eq(x86_emul_decode_mem((const uint8_t[]){0x94, 0xa3, 0x00}, 3, 0, 0, false,
					      &r, 0, 0, &la),
			  0);
}
END_TEST

START_TEST(ldmxcsr_loads)
{
	/* ldmxcsr 0x10(%rsp): 0f ae 54 24 10 */
	static struct fake_cpu cs;
	struct fake_cpu *c = sse_cpu(&cs, (const uint8_t[]){0x0f, 0xae, 0x54, 0x24, 0x10}, 5);

	c->regs.rsp = 0x4000;
	put32(c, 0x4010, 0x9fc0);
	ck_assert(try(c));
	ck_assert_uint_eq(c->fpu.mxcsr, 0x9fc0);
	ck_assert_uint_eq(c->regs.rip, 0x1005);
	ck_assert_uint_eq(c->set_fpu_calls, 1);
}
END_TEST

START_TEST(ldmxcsr_rip_relative_with_rex)
{
	/* ldmxcsr 0x20(%rip) with a (meaningless) REX.W: 48 0f ae 15 20 00 00 00 */
	static struct fake_cpu cs;
	struct fake_cpu *c =
		sse_cpu(&cs, (const uint8_t[]){0x48, 0x0f, 0xae, 0x15, 0x20, 0x00, 0x00, 0x00}, 8);

	put32(c, 0x1008 + 0x20, 0x1f80 | 0x8000);
	c->fpu.mxcsr = 0;
	ck_assert(try(c));
	ck_assert_uint_eq(c->fpu.mxcsr, 0x9f80);
	ck_assert_uint_eq(c->regs.rip, 0x1008);
}
END_TEST

START_TEST(stmxcsr_stores)
{
	/* stmxcsr -4(%rbp): 0f ae 5d fc */
	static struct fake_cpu cs;
	struct fake_cpu *c = sse_cpu(&cs, (const uint8_t[]){0x0f, 0xae, 0x5d, 0xfc}, 4);

	c->regs.rbp = 0x3000;
	c->fpu.mxcsr = 0x1fa0;
	ck_assert(try(c));
	ck_assert_uint_eq(ram32(c, 0x3000 - 4), 0x1fa0);
	ck_assert_uint_eq(c->regs.rip, 0x1004);
	ck_assert_uint_eq(c->set_fpu_calls, 0);
}
END_TEST

START_TEST(fs_override)
{
	/* stmxcsr %fs:0x8(%rax): 64 0f ae 58 08 */
	static struct fake_cpu cs;
	struct fake_cpu *c = sse_cpu(&cs, (const uint8_t[]){0x64, 0x0f, 0xae, 0x58, 0x08}, 5);

	c->sregs.fs.base = 0x6000;
	c->regs.rax = 0x10;
	ck_assert(try(c));
	ck_assert_uint_eq(ram32(c, 0x6018), 0x1f80);
	ck_assert_uint_eq(c->regs.rip, 0x1005);
}
END_TEST

START_TEST(reserved_bits_raise_gp)
{
	static struct fake_cpu cs;
	struct fake_cpu *c =
		sse_cpu(&cs, (const uint8_t[]){0x0f, 0xae, 0x10}, 3); /* ldmxcsr (%rax) */

	c->regs.rax = 0x2000;
	put32(c, 0x2000, 0x10000);
	ck_assert(try(c));
	ck_assert_uint_eq(c->fpu.mxcsr, 0x1f80); /* unchanged */
	ck_assert_uint_eq(c->regs.rip, 0x1000);	 /* a fault: RIP stays */
	ck_assert(c->events.exception.injected);
	ck_assert_uint_eq(c->events.exception.nr, 13);
	ck_assert(c->events.exception.has_error_code);
	ck_assert_uint_eq(c->events.exception.error_code, 0);
}
END_TEST

START_TEST(declines_what_it_cannot_reproduce)
{
	static struct fake_cpu cs;
	struct fake_cpu *c;

	/* CR4.OSFXSR clear (#UD on hardware) */
	c = sse_cpu(&cs, (const uint8_t[]){0x0f, 0xae, 0x10}, 3);
	c->sregs.cr4 = 0;
	ck_assert(!try(c));
	/* CR0.TS set (#NM) */
	c = sse_cpu(&cs, (const uint8_t[]){0x0f, 0xae, 0x10}, 3);
	c->sregs.cr0 |= CR0_TS;
	ck_assert(!try(c));
	/* an operand outside memory (#PF) */
	c = sse_cpu(&cs, (const uint8_t[]){0x0f, 0xae, 0x10}, 3);
	c->regs.rax = FAKE_CPU_RAM + 0x100;
	ck_assert(!try(c));
	ck_assert_uint_eq(c->regs.rip, 0x1000);
	/* register form (0f ae /2 mod 3 is not ldmxcsr), other /reg (fxsave) */
	c = sse_cpu(&cs, (const uint8_t[]){0x0f, 0xae, 0xd0}, 3);
	ck_assert(!try(c));
	c = sse_cpu(&cs, (const uint8_t[]){0x0f, 0xae, 0x00}, 3);
	ck_assert(!try(c));
	/* not in 64-bit mode */
	c = sse_cpu(&cs, (const uint8_t[]){0x0f, 0xae, 0x10}, 3);
	c->sregs.cs.l = 0;
	ck_assert(!try(c));
	/* a truncated instruction (SIB byte missing) */
	c = sse_cpu(&cs, (const uint8_t[]){0x0f, 0xae, 0x94}, 3);
	ck_assert(!try(c));
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("x86-emul");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, int3_injects_bp_after_the_instruction);
	tcase_add_test(tc, popcnt_register_forms);
	tcase_add_test(tc, popcnt_16bit_code_segment);
	tcase_add_test(tc, popcnt_memory_form_declined);
	tcase_add_test(tc, rip_wraps_at_the_code_segment_width);
	tcase_add_test(tc, clac_stac_at_cpl0_only);
	tcase_add_test(tc, fwait_is_a_noop_unless_an_exception_is_due);
	tcase_add_test(tc, anything_else_stays_a_failure);
	suite_add_tcase(s, tc);
	tc = tcase_create("mxcsr");
	tcase_add_test(tc, decode_forms);
	tcase_add_test(tc, ldmxcsr_loads);
	tcase_add_test(tc, ldmxcsr_rip_relative_with_rex);
	tcase_add_test(tc, stmxcsr_stores);
	tcase_add_test(tc, fs_override);
	tcase_add_test(tc, reserved_bits_raise_gp);
	tcase_add_test(tc, declines_what_it_cannot_reproduce);
	suite_add_tcase(s, tc);
	return s;
}

#include "check-main.h"
