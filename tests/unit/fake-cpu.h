/*
 * A fake CPU for hw/core/x86-emul.c (its struct x86_emul_ops) without KVM:
 * registers, segments, FPU, pending events, the instruction bytes at RIP
 * and FAKE_CPU_RAM bytes of memory for operands (linear addresses are
 * offsets into it). Accessors fail where the fail mask says; calls that
 * change state are counted. Shared by test-x86-emul and the x86-emul fuzz
 * target.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "common/log.h"
#include "hw/core/x86-emul.h"

#define FAKE_CPU_RAM 0x10000

/* Accessors a test or an input can make fail. */
enum {
	FAKE_FAIL_GET_REGS = 1 << 0,
	FAKE_FAIL_SET_REGS = 1 << 1,
	FAKE_FAIL_GET_SREGS = 1 << 2,
	FAKE_FAIL_GET_FPU = 1 << 3,
	FAKE_FAIL_SET_FPU = 1 << 4,
	FAKE_FAIL_GET_EVENTS = 1 << 5,
	FAKE_FAIL_SET_EVENTS = 1 << 6,
	FAKE_FAIL_WRITE_MEM = 1 << 7,
	FAKE_FAIL_GETTERS =
		FAKE_FAIL_GET_REGS | FAKE_FAIL_GET_SREGS | FAKE_FAIL_GET_FPU | FAKE_FAIL_GET_EVENTS,
};

struct fake_cpu {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_fpu fpu;
	struct kvm_vcpu_events events;
	uint8_t insn[16];
	size_t insn_len;
	unsigned fail; /* FAKE_FAIL_* */
	unsigned set_regs_calls, set_events_calls, set_fpu_calls, writes;
	size_t last_write_len;
	uint8_t ram[FAKE_CPU_RAM];
};

static int fake_get_regs(void *o, struct kvm_regs *r)
{
	struct fake_cpu *c = o;

	*r = c->regs;
	return c->fail & FAKE_FAIL_GET_REGS ? -1 : 0;
}

static int fake_set_regs(void *o, const struct kvm_regs *r)
{
	struct fake_cpu *c = o;

	if (c->fail & FAKE_FAIL_SET_REGS) {
		return -1;
	}
	c->regs = *r;
	c->set_regs_calls++;
	return 0;
}

static int fake_get_sregs(void *o, struct kvm_sregs *s)
{
	struct fake_cpu *c = o;

	*s = c->sregs;
	return c->fail & FAKE_FAIL_GET_SREGS ? -1 : 0;
}

static int fake_get_fpu(void *o, struct kvm_fpu *f)
{
	struct fake_cpu *c = o;

	*f = c->fpu;
	return c->fail & FAKE_FAIL_GET_FPU ? -1 : 0;
}

static int fake_set_fpu(void *o, const struct kvm_fpu *f)
{
	struct fake_cpu *c = o;

	if (c->fail & FAKE_FAIL_SET_FPU) {
		return -1;
	}
	c->fpu = *f;
	c->set_fpu_calls++;
	return 0;
}

static int fake_get_events(void *o, struct kvm_vcpu_events *e)
{
	struct fake_cpu *c = o;

	*e = c->events;
	return c->fail & FAKE_FAIL_GET_EVENTS ? -1 : 0;
}

static int fake_set_events(void *o, const struct kvm_vcpu_events *e)
{
	struct fake_cpu *c = o;

	if (c->fail & FAKE_FAIL_SET_EVENTS) {
		return -1;
	}
	c->events = *e;
	c->set_events_calls++;
	return 0;
}

static size_t fake_read_insn(void *o, const struct kvm_regs *r, const struct kvm_sregs *s,
			     uint8_t *buf, size_t max)
{
	struct fake_cpu *c = o;
	size_t n = c->insn_len < max ? c->insn_len : max;

	(void)r;
	(void)s;
	memcpy(buf, c->insn, n);
	return n;
}

static int fake_read_mem(void *o, uint64_t la, void *buf, size_t len)
{
	struct fake_cpu *c = o;

	if (la >= FAKE_CPU_RAM || len > FAKE_CPU_RAM - la) {
		return -14;
	}
	memcpy(buf, c->ram + la, len);
	return 0;
}

static int fake_write_mem(void *o, uint64_t la, const void *buf, size_t len)
{
	struct fake_cpu *c = o;

	if (c->fail & FAKE_FAIL_WRITE_MEM || la >= FAKE_CPU_RAM || len > FAKE_CPU_RAM - la) {
		return -14;
	}
	memcpy(c->ram + la, buf, len);
	c->writes++;
	c->last_write_len = len;
	return 0;
}

static const struct x86_emul_ops fake_cpu_ops = {
	.get_regs = fake_get_regs,
	.set_regs = fake_set_regs,
	.get_sregs = fake_get_sregs,
	.get_fpu = fake_get_fpu,
	.set_fpu = fake_set_fpu,
	.get_events = fake_get_events,
	.set_events = fake_set_events,
	.read_insn = fake_read_insn,
	.read_mem = fake_read_mem,
	.write_mem = fake_write_mem,
};

/* x86_emul_try() on @c, logging through @rl. */
static inline bool fake_cpu_try(struct fake_cpu *c, struct ratelimit *rl)
{
	const struct x86_emul_cpu cpu = {
		.ops = &fake_cpu_ops, .opaque = c, .vm_name = "t", .index = 0, .rl = rl};

	return x86_emul_try(&cpu);
}
