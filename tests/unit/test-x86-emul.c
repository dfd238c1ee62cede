/*
 * Unit tests for hw/core/x86-emul.c: each work-around for this host's
 * instruction emulator, run over a fake CPU (registers, segments, FPU,
 * pending events and the instruction bytes at RIP) without KVM.
 */
#include "config.h"

#include <check.h>
#include <string.h>

#include "common/log.h"
#include "hw/core/x86-emul.h"

#define RFLAGS_ZF 0x40ull
#define RFLAGS_CF 0x1ull
#define RFLAGS_AC (1ull << 18)

struct fake_cpu {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_fpu fpu;
	struct kvm_vcpu_events events;
	uint8_t insn[16];
	size_t insn_len;
	bool fail_get; /* every getter fails */
	unsigned set_regs_calls, set_events_calls;
};

static int get_regs(void *o, struct kvm_regs *r)
{
	struct fake_cpu *c = o;

	*r = c->regs;
	return c->fail_get ? -1 : 0;
}

static int set_regs(void *o, const struct kvm_regs *r)
{
	struct fake_cpu *c = o;

	c->regs = *r;
	c->set_regs_calls++;
	return 0;
}

static int get_sregs(void *o, struct kvm_sregs *s)
{
	struct fake_cpu *c = o;

	*s = c->sregs;
	return c->fail_get ? -1 : 0;
}

static int get_fpu(void *o, struct kvm_fpu *f)
{
	struct fake_cpu *c = o;

	*f = c->fpu;
	return c->fail_get ? -1 : 0;
}

static int get_events(void *o, struct kvm_vcpu_events *e)
{
	struct fake_cpu *c = o;

	*e = c->events;
	return c->fail_get ? -1 : 0;
}

static int set_events(void *o, const struct kvm_vcpu_events *e)
{
	struct fake_cpu *c = o;

	c->events = *e;
	c->set_events_calls++;
	return 0;
}

static size_t read_insn(void *o, const struct kvm_regs *r, const struct kvm_sregs *s, uint8_t *buf,
			size_t max)
{
	struct fake_cpu *c = o;
	size_t n = c->insn_len < max ? c->insn_len : max;

	memcpy(buf, c->insn, n);
	return n;
}

static const struct x86_emul_ops ops = {
	.get_regs = get_regs,
	.set_regs = set_regs,
	.get_sregs = get_sregs,
	.get_fpu = get_fpu,
	.get_events = get_events,
	.set_events = set_events,
	.read_insn = read_insn,
};

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
	const struct x86_emul_cpu cpu = {
		.ops = &ops,
		.opaque = c,
		.vm_name = "t",
		.index = 0,
		.rl = &rl,
	};

	return x86_emul_try(&cpu);
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
	c.fail_get = true; /* the CPU state cannot be read */
	ck_assert(!try(&c));
	ck_assert_uint_eq(c.set_regs_calls, 0);
	ck_assert_uint_eq(c.set_events_calls, 0);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("x86-emul");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, int3_injects_bp_after_the_instruction);
	tcase_add_test(tc, popcnt_register_forms);
	tcase_add_test(tc, popcnt_memory_form_declined);
	tcase_add_test(tc, clac_stac_at_cpl0_only);
	tcase_add_test(tc, fwait_is_a_noop_unless_an_exception_is_due);
	tcase_add_test(tc, anything_else_stays_a_failure);
	suite_add_tcase(s, tc);
	return s;
}

#include "check-main.h"
