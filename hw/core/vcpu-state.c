/*
 * Save and restore of one vCPU's KVM state (docs/vmstate.md, "vCPU
 * section"). The order of the ioctls is part of the contract:
 *
 *   save:    MP_STATE (first: it makes KVM accept pending INIT/SIPI, which
 *            may change registers and the LAPIC), REGS, SREGS, XSAVE (or FPU
 *            where KVM has no XSAVE), XCRS, DEBUGREGS, LAPIC, TSC_KHZ,
 *            CPUID2, MSRS, VCPU_EVENTS (last).
 *   restore: CPUID is checked against what this host builds (never set from
 *            the file), then MP_STATE, REGS, SREGS, XSAVE/FPU, XCRS,
 *            DEBUGREGS, LAPIC (after SREGS, which restores the APIC base),
 *            MSRS (after the LAPIC: the TSC deadline only sticks on a
 *            configured LAPIC), VCPU_EVENTS (after REGS, which clears
 *            pending exceptions), then KVMCLOCK_CTRL.
 *
 * Threads: any thread, with every vCPU of the VM parked (vCPU events are
 * not safe to read while other vCPUs run).
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "common/cleanup.h"
#include "hw/core/vcpu-state.h"
#include "hw/core/vcpu.h"
#include "hw/core/vm-int.h"

#define VCPU_MAX_MSRS 512
#define VCPU_MAX_XSAVE (64 * 1024)

/* MSRs worth carrying (Firecracker's serializable ranges, less the x2APIC ones). */
static const struct {
	uint32_t first, count;
} msr_ranges[] = {
	{0x10, 1},	     /* TSC (first: KVM_SET_MSRS applies in order) */
	{0x11, 2},	     /* KVM wall clock, system time (old numbers) */
	{0x1b, 1},	     /* APIC base */
	{0x3a, 2},	     /* feature control, TSC adjust */
	{0x48, 1},	     /* SPEC_CTRL */
	{0x122, 1},	     /* TSX_CTRL */
	{0x174, 3},	     /* SYSENTER */
	{0x179, 3},	     /* MCG_CAP/STATUS/CTL */
	{0x1a0, 1},	     /* MISC_ENABLE */
	{0x1d9, 1},	     /* DEBUGCTL */
	{0x200, 0x100},	     /* MTRRs and PAT */
	{0x400, 0x80},	     /* MCE banks */
	{0x6e0, 1},	     /* TSC deadline */
	{0xda0, 1},	     /* XSS */
	{0xc0000081, 4},     /* STAR, LSTAR, CSTAR, SYSCALL_MASK */
	{0xc0000100, 4},     /* FS/GS/KERNEL_GS base, TSC_AUX */
	{0x4b564d00, 0x100}, /* KVM paravirtual MSRs */
};

static bool msr_wanted(uint32_t idx)
{
	for (size_t i = 0; i < ARRAY_SIZE(msr_ranges); i++) {
		if (idx >= msr_ranges[i].first && idx - msr_ranges[i].first < msr_ranges[i].count) {
			return true;
		}
	}
	return false;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* KVM's MSR list filtered by msr_ranges, TSC first. */
static int msr_index_list(struct vm *vm, uint32_t *out, unsigned max, unsigned *ret_n,
			  struct error **errp)
{
	_cleanup_free_ struct kvm_msr_list *l = NULL;
	unsigned n = 0;

	l = calloc(1, sizeof(*l) + 4096 * sizeof(uint32_t));
	if (!l) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	l->nmsrs = 4096;
	if (ioctl(vm->kvm.sys_fd, KVM_GET_MSR_INDEX_LIST, l) < 0) {
		return error_set_errno(errp, errno, "KVM_GET_MSR_INDEX_LIST failed");
	}
	for (uint32_t i = 0; i < l->nmsrs && n < max; i++) {
		if (msr_wanted(l->indices[i])) {
			out[n++] = l->indices[i];
		}
	}
	qsort(out, n, sizeof(*out), cmp_u32);
	*ret_n = n;
	return 0;
}

struct msrs_buf {
	struct kvm_msrs hdr;
	struct kvm_msr_entry e[VCPU_MAX_MSRS];
};

/*
 * Read every listed MSR KVM will give us: GET_MSRS stops at the first one
 * it refuses (features CPUID hides), which is dropped.
 */
static int get_msrs(struct vcpu *vcpu, struct msrs_buf *m, struct error **errp)
{
	uint32_t idx[VCPU_MAX_MSRS];
	unsigned n = 0, done = 0;
	int r;

	r = msr_index_list(vcpu->vm, idx, VCPU_MAX_MSRS, &n, errp);
	if (r < 0) {
		return r;
	}
	while (done < n) {
		struct msrs_buf tmp;
		unsigned want = n - done;
		int got;

		memset(&tmp, 0, sizeof(tmp));
		for (unsigned i = 0; i < want; i++) {
			tmp.e[i].index = idx[done + i];
		}
		tmp.hdr.nmsrs = want;
		got = ioctl(vcpu->fd, KVM_GET_MSRS, &tmp);
		if (got < 0) {
			return error_set_errno(errp, errno, "KVM_GET_MSRS failed on vCPU %u",
					       vcpu->index);
		}
		for (int i = 0; i < got; i++) {
			m->e[m->hdr.nmsrs++] = tmp.e[i];
		}
		done += (unsigned)got;
		if ((unsigned)got < want) {
			done++; /* idx[done] is not readable here: skip it */
		}
	}
	return 0;
}

static int xsave_size(struct vm *vm)
{
	int n = ioctl(vm->kvm.sys_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);

	if (n > 0) {
		return MAX(n, (int)sizeof(struct kvm_xsave));
	}
	if (ioctl(vm->kvm.sys_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE) > 0) {
		return (int)sizeof(struct kvm_xsave);
	}
	return 0;
}

#define GET(req, arg, what)                                                               \
	do {                                                                              \
		if (ioctl(vcpu->fd, req, arg) < 0) {                                      \
			return error_set_errno(errp, errno, "%s failed on vCPU %u", what, \
					       vcpu->index);                              \
		}                                                                         \
	} while (0)

int vcpu_state_save(struct vcpu *vcpu, struct vmstate_buf *out, struct error **errp)
{
	struct kvm_mp_state mp;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_xcrs xcrs;
	struct kvm_debugregs dbg;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	_cleanup_free_ struct kvm_cpuid2 *cpuid = NULL;
	_cleanup_free_ struct msrs_buf *msrs = NULL;
	_cleanup_free_ void *xsave = NULL;
	int xs = xsave_size(vcpu->vm);
	int khz;
	int r;

	GET(KVM_GET_MP_STATE, &mp, "KVM_GET_MP_STATE");
	GET(KVM_GET_REGS, &regs, "KVM_GET_REGS");
	GET(KVM_GET_SREGS, &sregs, "KVM_GET_SREGS");
	vmstate_put_u32(out, mp.mp_state);
	vmstate_put_blob(out, &regs, sizeof(regs));
	vmstate_put_blob(out, &sregs, sizeof(sregs));
	vmstate_put_bool(out, xs > 0);
	if (xs > 0) {
		xsave = calloc(1, (size_t)xs);
		if (!xsave) {
			return error_set(errp, ENOMEM, "out of memory");
		}
		if (xs > (int)sizeof(struct kvm_xsave)) {
			GET(KVM_GET_XSAVE2, xsave, "KVM_GET_XSAVE2");
		} else {
			GET(KVM_GET_XSAVE, xsave, "KVM_GET_XSAVE");
		}
		vmstate_put_blob(out, xsave, (uint32_t)xs);
	} else {
		struct kvm_fpu fpu;

		GET(KVM_GET_FPU, &fpu, "KVM_GET_FPU");
		vmstate_put_blob(out, &fpu, sizeof(fpu));
	}
	memset(&xcrs, 0, sizeof(xcrs));
	if (ioctl(vcpu->vm->kvm.sys_fd, KVM_CHECK_EXTENSION, KVM_CAP_XCRS) > 0) {
		GET(KVM_GET_XCRS, &xcrs, "KVM_GET_XCRS");
		vmstate_put_bool(out, true);
		vmstate_put_blob(out, &xcrs, sizeof(xcrs));
	} else {
		vmstate_put_bool(out, false);
	}
	GET(KVM_GET_DEBUGREGS, &dbg, "KVM_GET_DEBUGREGS");
	vmstate_put_blob(out, &dbg, sizeof(dbg));
	GET(KVM_GET_LAPIC, &lapic, "KVM_GET_LAPIC");
	vmstate_put_blob(out, &lapic, sizeof(lapic));
	khz = ioctl(vcpu->fd, KVM_GET_TSC_KHZ, 0);
	if (khz <= 0) {
		return error_set_errno(errp, khz < 0 ? errno : EIO,
				       "KVM_GET_TSC_KHZ failed on vCPU %u", vcpu->index);
	}
	vmstate_put_u32(out, (uint32_t)khz);
	cpuid = calloc(1, sizeof(*cpuid) + CPUID_MAX_ENTRIES * sizeof(cpuid->entries[0]));
	msrs = calloc(1, sizeof(*msrs));
	if (!cpuid || !msrs) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	cpuid->nent = CPUID_MAX_ENTRIES;
	GET(KVM_GET_CPUID2, cpuid, "KVM_GET_CPUID2");
	vmstate_put_blob(out, cpuid->entries, cpuid->nent * (uint32_t)sizeof(cpuid->entries[0]));
	r = get_msrs(vcpu, msrs, errp);
	if (r < 0) {
		return r;
	}
	vmstate_put_u32(out, msrs->hdr.nmsrs);
	for (unsigned i = 0; i < msrs->hdr.nmsrs; i++) {
		vmstate_put_u32(out, msrs->e[i].index);
		vmstate_put_u64(out, msrs->e[i].data);
	}
	GET(KVM_GET_VCPU_EVENTS, &events, "KVM_GET_VCPU_EVENTS");
	vmstate_put_blob(out, &events, sizeof(events));
	if (out->failed) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	return 0;
}

/*
 * Bits KVM rewrites while the guest runs (from CR4, XCR0 and the APIC base
 * MSR): they are not part of the CPU model and come back with the
 * registers.
 */
static uint32_t runtime_mask(const struct kvm_cpuid_entry2 *e, unsigned reg)
{
	if (e->function == 1 && reg == 2) {
		return (1u << 27) | (1u << 3); /* OSXSAVE, MONITOR (MISC_ENABLE) */
	}
	if (e->function == 1 && reg == 3) {
		return 1u << 9; /* APIC (APIC base enable) */
	}
	if (e->function == 7 && e->index == 0 && reg == 2) {
		return 1u << 4; /* OSPKE */
	}
	if (e->function == 0xd && (e->index == 0 || e->index == 1) && reg == 1) {
		return ~0u; /* XSAVE area size for the current XCR0/XSS */
	}
	return 0;
}

static const char *reg_name(unsigned i)
{
	static const char *const n[] = {"eax", "ebx", "ecx", "edx"};

	return n[i];
}

/*
 * The saved CPUID must be what this VM's CPU model gives on this host:
 * anything else means the guest saw features this host may not provide.
 */
static int check_cpuid(struct vcpu *vcpu, const struct kvm_cpuid_entry2 *saved, unsigned n,
		       struct error **errp)
{
	_cleanup_free_ struct kvm_cpuid2 *c = NULL;

	c = calloc(1, sizeof(*c) + CPUID_MAX_ENTRIES * sizeof(c->entries[0]));
	if (!c) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	c->nent = CPUID_MAX_ENTRIES;
	GET(KVM_GET_CPUID2, c, "KVM_GET_CPUID2");
	for (unsigned i = 0; i < n; i++) {
		const struct kvm_cpuid_entry2 *s = &saved[i];
		const struct kvm_cpuid_entry2 *h = NULL;

		for (unsigned j = 0; j < c->nent; j++) {
			if (c->entries[j].function == s->function &&
			    (!(s->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) ||
			     c->entries[j].index == s->index)) {
				h = &c->entries[j];
				break;
			}
		}
		if (!h) {
			return error_set_class(
				errp, ERROR_CLASS_GENERIC, ENOTSUP,
				"the saved CPU model has CPUID leaf 0x%x.%u, which CPU model '%s' "
				"does not have on this host",
				s->function, s->index, vcpu->vm->cfg->cpu);
		}
		const uint32_t sv[4] = {s->eax, s->ebx, s->ecx, s->edx};
		const uint32_t hv[4] = {h->eax, h->ebx, h->ecx, h->edx};

		for (unsigned k = 0; k < 4; k++) {
			if ((sv[k] ^ hv[k]) & ~runtime_mask(s, k)) {
				return error_set_class(
					errp, ERROR_CLASS_GENERIC, ENOTSUP,
					"CPU model mismatch: the snapshot's vCPU %u had CPUID leaf "
					"0x%x.%u %s=0x%08x, CPU model '%s' on this host gives "
					"0x%08x; "
					"this host cannot provide the saved CPU",
					vcpu->index, s->function, s->index, reg_name(k), sv[k],
					vcpu->vm->cfg->cpu, hv[k]);
			}
		}
	}
	if (n != c->nent) {
		return error_set_class(errp, ERROR_CLASS_GENERIC, ENOTSUP,
				       "CPU model mismatch: the snapshot has %u CPUID leaves, CPU "
				       "model '%s' on this host has %u",
				       n, vcpu->vm->cfg->cpu, c->nent);
	}
	return 0;
}

/* 250 ppm, as Firecracker: within that, guests do not notice. */
static bool tsc_close(uint32_t a, uint32_t b)
{
	uint64_t d = a > b ? a - b : b - a;

	return d * 1000000 <= (uint64_t)a * 250;
}

static int check_tsc(struct vcpu *vcpu, uint32_t saved, struct error **errp)
{
	int khz = ioctl(vcpu->fd, KVM_GET_TSC_KHZ, 0);

	if (khz <= 0) {
		return error_set_errno(errp, khz < 0 ? errno : EIO, "KVM_GET_TSC_KHZ failed");
	}
	if (tsc_close(saved, (uint32_t)khz)) {
		return 0;
	}
	if (ioctl(vcpu->vm->kvm.sys_fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_CONTROL) <= 0) {
		return error_set_class(errp, ERROR_CLASS_GENERIC, ENOTSUP,
				       "TSC frequency mismatch: the snapshot was taken at %u kHz, "
				       "this host runs at %d kHz and its KVM cannot scale the TSC "
				       "(no KVM_CAP_TSC_CONTROL)",
				       saved, khz);
	}
	if (ioctl(vcpu->fd, KVM_SET_TSC_KHZ, (unsigned long)saved) < 0) {
		return error_set_errno(errp, errno,
				       "cannot set the TSC of vCPU %u to the saved %u kHz",
				       vcpu->index, saved);
	}
	return 0;
}

#define SET(req, arg, what)                                                               \
	do {                                                                              \
		if (ioctl(vcpu->fd, req, arg) < 0) {                                      \
			return error_set_errno(errp, errno, "%s failed on vCPU %u", what, \
					       vcpu->index);                              \
		}                                                                         \
	} while (0)

int vcpu_state_load(struct vcpu *vcpu, struct vmstate_buf *in, struct error **errp)
{
	struct kvm_mp_state mp;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_xcrs xcrs;
	struct kvm_debugregs dbg;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	struct kvm_fpu fpu;
	_cleanup_free_ void *xsave = NULL;
	_cleanup_free_ struct kvm_cpuid_entry2 *cpuid = NULL;
	_cleanup_free_ struct msrs_buf *msrs = NULL;
	uint32_t xsave_len = 0, cpuid_len = 0, tsc_khz;
	bool has_xsave, has_xcrs;
	char what[32];
	int r;

	/* Parse everything first: a bad section changes nothing. */
	mp.mp_state = vmstate_get_u32(in);
	vmstate_get_blob(in, &regs, sizeof(regs));
	vmstate_get_blob(in, &sregs, sizeof(sregs));
	has_xsave = vmstate_get_bool(in);
	if (has_xsave) {
		xsave = vmstate_get_blob_alloc(in, VCPU_MAX_XSAVE, &xsave_len);
	} else {
		vmstate_get_blob(in, &fpu, sizeof(fpu));
	}
	has_xcrs = vmstate_get_bool(in);
	if (has_xcrs) {
		vmstate_get_blob(in, &xcrs, sizeof(xcrs));
	}
	vmstate_get_blob(in, &dbg, sizeof(dbg));
	vmstate_get_blob(in, &lapic, sizeof(lapic));
	tsc_khz = vmstate_get_u32(in);
	cpuid = vmstate_get_blob_alloc(in, CPUID_MAX_ENTRIES * sizeof(*cpuid), &cpuid_len);
	msrs = calloc(1, sizeof(*msrs));
	if (!msrs) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	msrs->hdr.nmsrs = vmstate_get_u32(in);
	if (msrs->hdr.nmsrs > VCPU_MAX_MSRS) {
		in->failed = true;
		msrs->hdr.nmsrs = 0;
	}
	for (unsigned i = 0; i < msrs->hdr.nmsrs; i++) {
		msrs->e[i].index = vmstate_get_u32(in);
		msrs->e[i].data = vmstate_get_u64(in);
	}
	vmstate_get_blob(in, &events, sizeof(events));
	snprintf(what, sizeof(what), "vCPU %u", vcpu->index);
	r = vmstate_check_end(in, what, errp);
	if (r < 0) {
		return r;
	}
	if (cpuid_len % sizeof(*cpuid) != 0) {
		return error_set(errp, EINVAL, "state of %s: bad CPUID table", what);
	}
	if (has_xsave && xsave_size(vcpu->vm) == 0) {
		return error_set(errp, ENOTSUP,
				 "the snapshot has XSAVE state, this host's KVM has no XSAVE");
	}
	r = check_cpuid(vcpu, cpuid, cpuid_len / sizeof(*cpuid), errp);
	if (r == 0) {
		r = check_tsc(vcpu, tsc_khz, errp);
	}
	if (r < 0) {
		return r;
	}

	SET(KVM_SET_MP_STATE, &mp, "KVM_SET_MP_STATE");
	SET(KVM_SET_REGS, &regs, "KVM_SET_REGS");
	SET(KVM_SET_SREGS, &sregs, "KVM_SET_SREGS");
	if (has_xsave) {
		_cleanup_free_ void *buf = calloc(1, MAX(xsave_len, sizeof(struct kvm_xsave)));

		if (!buf) {
			return error_set(errp, ENOMEM, "out of memory");
		}
		memcpy(buf, xsave, xsave_len);
		SET(KVM_SET_XSAVE, buf, "KVM_SET_XSAVE");
	} else {
		SET(KVM_SET_FPU, &fpu, "KVM_SET_FPU");
	}
	if (has_xcrs) {
		SET(KVM_SET_XCRS, &xcrs, "KVM_SET_XCRS");
	}
	SET(KVM_SET_DEBUGREGS, &dbg, "KVM_SET_DEBUGREGS");
	SET(KVM_SET_LAPIC, &lapic, "KVM_SET_LAPIC");
	r = ioctl(vcpu->fd, KVM_SET_MSRS, msrs);
	if (r < 0) {
		return error_set_errno(errp, errno, "KVM_SET_MSRS failed on vCPU %u", vcpu->index);
	}
	if ((unsigned)r < msrs->hdr.nmsrs) {
		return error_set(
			errp, ENOTSUP, "this host's KVM refused MSR 0x%x of vCPU %u (value 0x%llx)",
			msrs->e[r].index, vcpu->index, (unsigned long long)msrs->e[r].data);
	}
	events.flags |= KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR;
	SET(KVM_SET_VCPU_EVENTS, &events, "KVM_SET_VCPU_EVENTS");
	/* Tell a kvmclock guest it was paused (no soft-lockup splat); optional. */
	ioctl(vcpu->fd, KVM_KVMCLOCK_CTRL, 0);
	return 0;
}

int vm_kvm_state_save(struct vm *vm, struct vmstate_buf *out, struct error **errp)
{
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock = {0};

	if (ioctl(vm->kvm.vm_fd, KVM_GET_PIT2, &pit) < 0) {
		return error_set_errno(errp, errno, "KVM_GET_PIT2 failed");
	}
	if (ioctl(vm->kvm.vm_fd, KVM_GET_CLOCK, &clock) < 0) {
		return error_set_errno(errp, errno, "KVM_GET_CLOCK failed");
	}
	vmstate_put_blob(out, &pit, sizeof(pit));
	vmstate_put_u64(out, clock.clock);
	for (unsigned i = 0; i < 3; i++) {
		struct kvm_irqchip chip = {.chip_id = i};

		if (ioctl(vm->kvm.vm_fd, KVM_GET_IRQCHIP, &chip) < 0) {
			return error_set_errno(errp, errno, "KVM_GET_IRQCHIP %u failed", i);
		}
		vmstate_put_blob(out, &chip, sizeof(chip));
	}
	return out->failed ? error_set(errp, ENOMEM, "out of memory") : 0;
}

int vm_kvm_state_load(struct vm *vm, struct vmstate_buf *in, struct error **errp)
{
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock = {0};
	struct kvm_irqchip chips[3];
	int r;

	vmstate_get_blob(in, &pit, sizeof(pit));
	clock.clock = vmstate_get_u64(in);
	for (unsigned i = 0; i < 3; i++) {
		vmstate_get_blob(in, &chips[i], sizeof(chips[i]));
		if (chips[i].chip_id != i) {
			in->failed = true;
		}
	}
	r = vmstate_check_end(in, "the in-kernel PIT, clock and irqchip", errp);
	if (r < 0) {
		return r;
	}
	/* PIT, clock, irqchip: Firecracker's order. */
	if (ioctl(vm->kvm.vm_fd, KVM_SET_PIT2, &pit) < 0) {
		return error_set_errno(errp, errno, "KVM_SET_PIT2 failed");
	}
	if (ioctl(vm->kvm.vm_fd, KVM_SET_CLOCK, &clock) < 0) {
		return error_set_errno(errp, errno, "KVM_SET_CLOCK failed");
	}
	for (unsigned i = 0; i < 3; i++) {
		if (ioctl(vm->kvm.vm_fd, KVM_SET_IRQCHIP, &chips[i]) < 0) {
			return error_set_errno(errp, errno, "KVM_SET_IRQCHIP %u failed", i);
		}
	}
	return 0;
}

uint64_t vm_guest_clock_ns(struct vm *vm)
{
	struct kvm_clock_data clock = {0};

	if (ioctl(vm->kvm.vm_fd, KVM_GET_CLOCK, &clock) < 0) {
		return 0;
	}
	return clock.clock;
}
