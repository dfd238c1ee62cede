/*
 * vCPU threads: creation with the CPU model's CPUID, the power-on and boot
 * register state, and the KVM_RUN loop with exit decoding.
 *
 * Threads: vcpu_new/vcpu_free/vcpu_reset on the control thread or the VM's
 * I/O thread with this vCPU parked; vcpu_thread() on the vCPU's own thread.
 * Parking is coordinated under vm->run_lock (see vm-int.h). Everything the
 * guest can trigger here is logged rate-limited, and a fatal exit stops this
 * VM (vm_request), never the process.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/log.h"
#include "hw/core/iobus.h"
#include "hw/core/memory.h"
#include "hw/core/vcpu.h"
#include "hw/core/vm-int.h"

#define MSR_IA32_TSC 0x10
#define MSR_IA32_SYSENTER_CS 0x174
#define MSR_IA32_SYSENTER_ESP 0x175
#define MSR_IA32_SYSENTER_EIP 0x176
#define MSR_IA32_MISC_ENABLE 0x1a0
#define MSR_MTRR_DEF_TYPE 0x2ff
#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_CSTAR 0xc0000083
#define MSR_SYSCALL_MASK 0xc0000084
#define MSR_KERNEL_GS_BASE 0xc0000102

#define CR0_PE 0x1ull
#define CR0_ET 0x10ull
#define CR0_PG 0x80000000ull
#define CR4_PAE 0x20ull
#define EFER_LME 0x100ull
#define EFER_LMA 0x400ull

static struct ratelimit exit_rl = RATELIMIT_INIT(5 * 1000000, 20);

static void kick_handler(int sig)
{
	(void)sig;
}

static void install_kick_handler(void)
{
	struct sigaction sa = {.sa_handler = kick_handler};

	sigemptyset(&sa.sa_mask);
	sigaction(VCPU_KICK_SIGNAL, &sa, NULL);
}

void vcpu_init_signals(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, install_kick_handler);
}

static int set_cpuid(struct vcpu *vcpu, struct error **errp)
{
	struct vm *vm = vcpu->vm;
	_cleanup_free_ struct kvm_cpuid2 *c = NULL;
	unsigned n;
	int r;

	c = calloc(1, sizeof(*c) + CPUID_MAX_ENTRIES * sizeof(c->entries[0]));
	if (!c) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	r = cpuid_build(&vm->cpu_model, vm->kvm.supported->entries, vm->kvm.supported->nent,
			vcpu->index, vm->cfg->vcpus, c->entries, CPUID_MAX_ENTRIES, &n, errp);
	if (r < 0) {
		return r;
	}
	c->nent = n;
	if (ioctl(vcpu->fd, KVM_SET_CPUID2, c) < 0) {
		return error_set_errno(errp, errno, "KVM_SET_CPUID2 failed for vCPU %u",
				       vcpu->index);
	}
	return 0;
}

void vcpu_free(struct vcpu *vcpu)
{
	if (!vcpu) {
		return;
	}
	if (vcpu->run) {
		munmap(vcpu->run, (size_t)vcpu->vm->kvm.run_size);
	}
	if (vcpu->fd >= 0) {
		close(vcpu->fd);
	}
	free(vcpu);
}

int vcpu_new(struct vm *vm, unsigned index, struct vcpu **ret, struct error **errp)
{
	struct vcpu *vcpu;
	void *run;
	int r;

	vcpu = calloc(1, sizeof(*vcpu));
	if (!vcpu) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	vcpu->vm = vm;
	vcpu->index = index;
	vcpu->fd = ioctl(vm->kvm.vm_fd, KVM_CREATE_VCPU, (unsigned long)index);
	if (vcpu->fd < 0) {
		r = error_set_errno(errp, errno, "KVM_CREATE_VCPU %u failed", index);
		goto err_free;
	}
	run = mmap(NULL, (size_t)vm->kvm.run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu->fd, 0);
	if (run == MAP_FAILED) {
		r = error_set_errno(errp, errno, "cannot map the kvm_run page of vCPU %u", index);
		goto err_free;
	}
	vcpu->run = run;
	r = set_cpuid(vcpu, errp);
	if (r < 0) {
		goto err_free;
	}
	if (ioctl(vcpu->fd, KVM_GET_REGS, &vcpu->init_regs) < 0 ||
	    ioctl(vcpu->fd, KVM_GET_SREGS, &vcpu->init_sregs) < 0 ||
	    ioctl(vcpu->fd, KVM_GET_FPU, &vcpu->init_fpu) < 0 ||
	    ioctl(vcpu->fd, KVM_GET_LAPIC, &vcpu->init_lapic) < 0 ||
	    ioctl(vcpu->fd, KVM_GET_MP_STATE, &vcpu->init_mp) < 0) {
		r = error_set_errno(errp, errno, "cannot read the power-on state of vCPU %u",
				    index);
		goto err_free;
	}
	*ret = vcpu;
	return 0;

err_free:
	vcpu_free(vcpu);
	return r;
}

static void seg_flat(struct kvm_segment *s, uint16_t sel, uint8_t type, bool code64)
{
	*s = (struct kvm_segment){
		.base = 0,
		.limit = 0xffffffff,
		.selector = sel,
		.type = type,
		.present = 1,
		.dpl = 0,
		.db = code64 ? 0 : 1,
		.s = 1,
		.l = code64 ? 1 : 0,
		.g = 1,
	};
}

static int set_msrs(struct vcpu *vcpu)
{
	static const uint32_t zero_msrs[] = {
		MSR_IA32_SYSENTER_CS,
		MSR_IA32_SYSENTER_ESP,
		MSR_IA32_SYSENTER_EIP,
		MSR_STAR,
		MSR_LSTAR,
		MSR_CSTAR,
		MSR_SYSCALL_MASK,
		MSR_KERNEL_GS_BASE,
		MSR_IA32_TSC,
	};
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[16];
	} m = {0};
	unsigned n = 0;
	int r;

	for (size_t i = 0; i < ARRAY_SIZE(zero_msrs); i++) {
		m.e[n++] = (struct kvm_msr_entry){.index = zero_msrs[i], .data = 0};
	}
	/* Fast strings; MTRRs enabled with write-back as the default type. */
	m.e[n++] = (struct kvm_msr_entry){.index = MSR_IA32_MISC_ENABLE, .data = 1};
	m.e[n++] = (struct kvm_msr_entry){.index = MSR_MTRR_DEF_TYPE, .data = (1u << 11) | 6};
	m.hdr.nmsrs = n;
	r = ioctl(vcpu->fd, KVM_SET_MSRS, &m);
	if (r < 0) {
		return -errno;
	}
	return r == (int)n ? 0 : -EIO;
}

int vcpu_reset(struct vcpu *vcpu, const struct boot_entry *entry)
{
	struct kvm_regs regs = vcpu->init_regs;
	struct kvm_sregs sregs = vcpu->init_sregs;
	struct kvm_lapic_state lapic = vcpu->init_lapic;
	struct kvm_mp_state mp = vcpu->init_mp;
	int r;

	if (ioctl(vcpu->fd, KVM_SET_LAPIC, &lapic) < 0 ||
	    ioctl(vcpu->fd, KVM_SET_FPU, &vcpu->init_fpu) < 0) {
		return -errno;
	}
	r = set_msrs(vcpu);
	if (r < 0) {
		return r;
	}
	switch (entry ? entry->mode : BOOT_MODE_NONE) {
	case BOOT_MODE_LONG64:
		seg_flat(&sregs.cs, BOOT_CS, 0xb, true);
		seg_flat(&sregs.ds, BOOT_DS, 0x3, false);
		sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
		sregs.gdt.base = BOOT_GDT_ADDR;
		sregs.gdt.limit = 5 * 8 - 1;
		sregs.idt.base = 0;
		sregs.idt.limit = 0;
		sregs.cr0 = CR0_PE | CR0_ET | CR0_PG;
		sregs.cr3 = BOOT_PML4_ADDR;
		sregs.cr4 = CR4_PAE;
		sregs.efer = EFER_LME | EFER_LMA;
		sregs.tr.selector = 0x20;
		sregs.tr.type = 0xb;
		sregs.tr.present = 1;
		sregs.tr.s = 0;
		sregs.tr.base = 0;
		sregs.tr.limit = 0x67;
		memset(&regs, 0, sizeof(regs));
		regs.rflags = 2;
		regs.rip = entry->rip;
		regs.rsi = entry->rsi;
		regs.rsp = entry->rsp;
		mp.mp_state = KVM_MP_STATE_RUNNABLE;
		break;
	case BOOT_MODE_PVH32:
		seg_flat(&sregs.cs, BOOT_CS, 0xb, false);
		seg_flat(&sregs.ds, BOOT_DS, 0x3, false);
		sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
		sregs.gdt.base = BOOT_GDT_ADDR;
		sregs.gdt.limit = 5 * 8 - 1;
		sregs.cr0 = CR0_PE | CR0_ET;
		sregs.cr3 = 0;
		sregs.cr4 = 0;
		sregs.efer = 0;
		sregs.tr.selector = 0x20;
		sregs.tr.type = 0xb;
		sregs.tr.present = 1;
		sregs.tr.s = 0;
		sregs.tr.base = 0;
		sregs.tr.limit = 0x67;
		memset(&regs, 0, sizeof(regs));
		regs.rflags = 2;
		regs.rip = entry->rip;
		regs.rbx = entry->rbx;
		regs.rsp = entry->rsp;
		mp.mp_state = KVM_MP_STATE_RUNNABLE;
		break;
	case BOOT_MODE_RESET:
	case BOOT_MODE_NONE:
		/* The state KVM created the vCPU in: reset vector (BSP) or wait-for-SIPI. */
		break;
	}
	if (ioctl(vcpu->fd, KVM_SET_SREGS, &sregs) < 0 ||
	    ioctl(vcpu->fd, KVM_SET_REGS, &regs) < 0 ||
	    ioctl(vcpu->fd, KVM_SET_MP_STATE, &mp) < 0) {
		return -errno;
	}
	return 0;
}

/* Up to @max instruction bytes at the guest's RIP, through its page tables. */
static size_t read_insn_bytes(struct vcpu *vcpu, const struct kvm_regs *regs,
			      const struct kvm_sregs *sregs, uint8_t *buf, size_t max)
{
	struct kvm_translation tr = {.linear_address = sregs->cs.base + regs->rip};
	const uint8_t *p;
	size_t n;

	if (!(sregs->cr0 & CR0_PG)) {
		tr.physical_address = tr.linear_address & 0xffffffffull;
		tr.valid = 1;
	} else if (ioctl(vcpu->fd, KVM_TRANSLATE, &tr) < 0) {
		return 0;
	}
	if (!tr.valid) {
		return 0;
	}
	/* Stay within the page: the next one may not be mapped contiguously. */
	n = MIN(max, 4096 - (tr.physical_address & 4095));
	p = guest_mem_ptr(vcpu->vm->mem, tr.physical_address, n);
	if (!p) {
		return 0;
	}
	memcpy(buf, p, n);
	return n;
}

static void log_cpu_state(struct vcpu *vcpu, int level, const char *what)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	uint8_t insn[16];
	char hex[16 * 3 + 1] = "";
	size_t n;

	if (ioctl(vcpu->fd, KVM_GET_REGS, &r) < 0 || ioctl(vcpu->fd, KVM_GET_SREGS, &s) < 0) {
		log_full(level, vcpu->vm->cfg->name, NULL, "vCPU %u: %s (registers unavailable)",
			 vcpu->index, what);
		return;
	}
	n = read_insn_bytes(vcpu, &r, &s, insn, sizeof(insn));
	for (size_t i = 0; i < n; i++) {
		snprintf(hex + 3 * i, 4, "%02x ", insn[i]);
	}
	log_full(level, vcpu->vm->cfg->name, NULL,
		 "vCPU %u: %s at rip=0x%016" PRIx64 " code: %s\n"
		 "  rax=%016llx rbx=%016llx rcx=%016llx rdx=%016llx\n"
		 "  rsi=%016llx rdi=%016llx rsp=%016llx rbp=%016llx\n"
		 "  r8 =%016llx r9 =%016llx r10=%016llx r11=%016llx\n"
		 "  r12=%016llx r13=%016llx r14=%016llx r15=%016llx\n"
		 "  rflags=%08llx cs=%04x cr0=%llx cr2=%llx cr3=%llx cr4=%llx efer=%llx",
		 vcpu->index, what, (uint64_t)r.rip, n ? hex : "(unreadable)", r.rax, r.rbx, r.rcx,
		 r.rdx, r.rsi, r.rdi, r.rsp, r.rbp, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14,
		 r.r15, r.rflags, s.cs.selector, s.cr0, s.cr2, s.cr3, s.cr4, s.efer);
}

/*
 * This host's instruction emulator cannot run int3 at CPL 0; deliver the
 * #BP it would have raised (a trap: RIP after the instruction). True if
 * the exit was handled that way.
 */
static bool try_inject_bp(struct vcpu *vcpu)
{
	struct kvm_vcpu_events ev;
	struct kvm_regs r;
	struct kvm_sregs s;
	uint8_t b;

	if (ioctl(vcpu->fd, KVM_GET_REGS, &r) < 0 || ioctl(vcpu->fd, KVM_GET_SREGS, &s) < 0 ||
	    read_insn_bytes(vcpu, &r, &s, &b, 1) != 1 || b != 0xcc) {
		return false;
	}
	if (ioctl(vcpu->fd, KVM_GET_VCPU_EVENTS, &ev) < 0 || ev.exception.injected ||
	    ev.exception.pending) {
		return false;
	}
	r.rip += 1;
	ev.exception.injected = 1;
	ev.exception.nr = 3;
	ev.exception.has_error_code = 0;
	ev.exception.error_code = 0;
	if (ioctl(vcpu->fd, KVM_SET_REGS, &r) < 0 ||
	    ioctl(vcpu->fd, KVM_SET_VCPU_EVENTS, &ev) < 0) {
		return false;
	}
	log_ratelimited(&exit_rl, LOG_INFO, vcpu->vm->cfg->name, NULL,
			"vCPU %u: injected #BP for an int3 at 0x%" PRIx64
			" that the host's emulator rejected",
			vcpu->index, (uint64_t)r.rip - 1);
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
static bool try_emulate_popcnt(struct vcpu *vcpu)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	uint8_t b[8];
	size_t n, i = 0;
	bool f3 = false, opsize16 = false;
	unsigned rex = 0, bits, reg, rm;
	uint64_t src, mask, cnt;

	if (ioctl(vcpu->fd, KVM_GET_REGS, &r) < 0 || ioctl(vcpu->fd, KVM_GET_SREGS, &s) < 0) {
		return false;
	}
	n = read_insn_bytes(vcpu, &r, &s, b, sizeof(b));
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
	if (ioctl(vcpu->fd, KVM_SET_REGS, &r) < 0) {
		return false;
	}
	log_ratelimited(&exit_rl, LOG_INFO, vcpu->vm->cfg->name, NULL,
			"vCPU %u: emulated a popcnt at 0x%" PRIx64
			" that the host's emulator rejected",
			vcpu->index, (uint64_t)r.rip - (i + 3));
	return true;
}

#define RFLAGS_AC (1ull << 18)

/*
 * CLAC / STAC (0F 01 CA / CB), in the kernel's exception entry when SMAP is
 * on: also beyond this host's emulator. True if emulated.
 */
static bool try_emulate_clac_stac(struct vcpu *vcpu)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	uint8_t b[3];

	if (ioctl(vcpu->fd, KVM_GET_REGS, &r) < 0 || ioctl(vcpu->fd, KVM_GET_SREGS, &s) < 0 ||
	    read_insn_bytes(vcpu, &r, &s, b, sizeof(b)) != sizeof(b) || b[0] != 0x0f ||
	    b[1] != 0x01 || (b[2] != 0xca && b[2] != 0xcb) || (s.cs.dpl != 0)) {
		return false;
	}
	r.rflags = b[2] == 0xca ? r.rflags & ~RFLAGS_AC : r.rflags | RFLAGS_AC;
	r.rip += 3;
	if (ioctl(vcpu->fd, KVM_SET_REGS, &r) < 0) {
		return false;
	}
	log_ratelimited(&exit_rl, LOG_INFO, vcpu->vm->cfg->name, NULL,
			"vCPU %u: emulated a %s at 0x%" PRIx64 " that the host's emulator rejected",
			vcpu->index, b[2] == 0xca ? "clac" : "stac", (uint64_t)r.rip - 3);
	return true;
}

#define CR0_MP 0x2ull
#define CR0_TS 0x8ull
#define FSW_ES 0x80

/*
 * FWAIT (9B): a no-op unless an unmasked x87 exception is pending or
 * CR0.MP and CR0.TS are both set; those cases stay failures. True if done.
 */
static bool try_emulate_fwait(struct vcpu *vcpu)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	struct kvm_fpu fpu;
	uint8_t b;

	if (ioctl(vcpu->fd, KVM_GET_REGS, &r) < 0 || ioctl(vcpu->fd, KVM_GET_SREGS, &s) < 0 ||
	    read_insn_bytes(vcpu, &r, &s, &b, 1) != 1 || b != 0x9b ||
	    (s.cr0 & (CR0_MP | CR0_TS)) == (CR0_MP | CR0_TS) ||
	    ioctl(vcpu->fd, KVM_GET_FPU, &fpu) < 0 || (fpu.fsw & FSW_ES)) {
		return false;
	}
	r.rip += 1;
	if (ioctl(vcpu->fd, KVM_SET_REGS, &r) < 0) {
		return false;
	}
	log_ratelimited(&exit_rl, LOG_INFO, vcpu->vm->cfg->name, NULL,
			"vCPU %u: emulated an fwait at 0x%" PRIx64
			" that the host's emulator rejected",
			vcpu->index, (uint64_t)r.rip - 1);
	return true;
}

/* A fatal exit: leave this vCPU parked and ask the I/O thread to stop the VM. */
static void vcpu_fail(struct vcpu *vcpu, enum vm_shutdown_cause cause)
{
	pthread_mutex_lock(&vcpu->vm->run_lock);
	vcpu->stalled = true;
	pthread_mutex_unlock(&vcpu->vm->run_lock);
	vm_request(vcpu->vm, cause);
}

static void handle_io(struct vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	unsigned size = run->io.size;
	uint64_t off = run->io.data_offset;
	uint64_t total = (uint64_t)run->io.count * size;
	uint8_t *data;

	if ((size != 1 && size != 2 && size != 4) || off > (uint64_t)vcpu->vm->kvm.run_size ||
	    total > (uint64_t)vcpu->vm->kvm.run_size - off) {
		return;
	}
	data = (uint8_t *)run + off;
	for (uint32_t i = 0; i < run->io.count; i++, data += size) {
		uint64_t v = 0;

		if (run->io.direction == KVM_EXIT_IO_OUT) {
			memcpy(&v, data, size);
			iobus_write(vcpu->vm->iobus, IOBUS_PIO, run->io.port, size, v);
		} else {
			iobus_read(vcpu->vm->iobus, IOBUS_PIO, run->io.port, size, &v);
			memcpy(data, &v, size);
		}
	}
}

static void handle_mmio(struct vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	unsigned len = run->mmio.len;
	uint64_t v = 0;

	if (len != 1 && len != 2 && len != 4 && len != 8) {
		return;
	}
	if (run->mmio.is_write) {
		memcpy(&v, run->mmio.data, len);
		iobus_write(vcpu->vm->iobus, IOBUS_MMIO, run->mmio.phys_addr, len, v);
	} else {
		iobus_read(vcpu->vm->iobus, IOBUS_MMIO, run->mmio.phys_addr, len, &v);
		memcpy(run->mmio.data, &v, len);
	}
}

static void handle_internal_error(struct vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	char what[96];

	if (run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION &&
	    (try_inject_bp(vcpu) || try_emulate_popcnt(vcpu) || try_emulate_clac_stac(vcpu) ||
	     try_emulate_fwait(vcpu))) {
		return;
	}
	snprintf(what, sizeof(what), "KVM internal error (suberror %u%s)", run->internal.suberror,
		 run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION ? ": emulation failure"
									: "");
	log_cpu_state(vcpu, LOG_ERR, what);
	vcpu_fail(vcpu, VM_CAUSE_HOST_ERROR);
}

/* Returns false when the vCPU must park (fatal exit). */
static bool handle_exit(struct vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	char what[96];

	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		handle_io(vcpu);
		return true;
	case KVM_EXIT_MMIO:
		handle_mmio(vcpu);
		return true;
	case KVM_EXIT_INTR:
	case KVM_EXIT_IRQ_WINDOW_OPEN:
	case KVM_EXIT_HLT:
		return true;
	case KVM_EXIT_SHUTDOWN:
		log_cpu_state(vcpu, LOG_NOTICE, "triple fault");
		vcpu_fail(vcpu, VM_CAUSE_TRIPLE_FAULT);
		return false;
	case KVM_EXIT_SYSTEM_EVENT:
		switch (run->system_event.type) {
		case KVM_SYSTEM_EVENT_RESET:
			vcpu_fail(vcpu, VM_CAUSE_GUEST_RESET);
			return false;
		case KVM_SYSTEM_EVENT_SHUTDOWN:
			vcpu_fail(vcpu, VM_CAUSE_GUEST_SHUTDOWN);
			return false;
		default:
			vcpu_fail(vcpu, VM_CAUSE_GUEST_PANIC);
			return false;
		}
	case KVM_EXIT_INTERNAL_ERROR:
		handle_internal_error(vcpu);
		return !vcpu->stalled;
	case KVM_EXIT_FAIL_ENTRY:
		snprintf(what, sizeof(what), "VM entry failed (hardware reason 0x%llx)",
			 (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		log_cpu_state(vcpu, LOG_ERR, what);
		vcpu_fail(vcpu, VM_CAUSE_HOST_ERROR);
		return false;
	default:
		snprintf(what, sizeof(what), "unexpected KVM exit reason %u", run->exit_reason);
		log_cpu_state(vcpu, LOG_ERR, what);
		vcpu_fail(vcpu, VM_CAUSE_HOST_ERROR);
		return false;
	}
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *vcpu = arg;
	struct vm *vm = vcpu->vm;
	sigset_t set;
	char name[16];

	snprintf(name, sizeof(name), "vcpu%u", vcpu->index);
	pthread_setname_np(pthread_self(), name);
	sigemptyset(&set);
	sigaddset(&set, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);

	for (;;) {
		int r;

		pthread_mutex_lock(&vm->run_lock);
		while (vm->vcpu_cmd != VCPU_CMD_RUN || vcpu->stalled) {
			if (!vcpu->parked) {
				vcpu->parked = true;
				vm->n_parked++;
				pthread_cond_broadcast(&vm->run_cond);
			}
			if (vm->vcpu_cmd == VCPU_CMD_STOP) {
				pthread_mutex_unlock(&vm->run_lock);
				return NULL;
			}
			pthread_cond_wait(&vm->run_cond, &vm->run_lock);
		}
		if (vcpu->parked) {
			vcpu->parked = false;
			vm->n_parked--;
		}
		vcpu->run->immediate_exit = 0;
		pthread_mutex_unlock(&vm->run_lock);

		r = ioctl(vcpu->fd, KVM_RUN, 0);
		atomic_fetch_add(&vcpu->exits, 1);
		if (r < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				continue;
			}
			log_full(LOG_ERR, vm->cfg->name, NULL, "vCPU %u: KVM_RUN failed: %s",
				 vcpu->index, strerror(errno));
			vcpu_fail(vcpu, VM_CAUSE_HOST_ERROR);
			continue;
		}
		handle_exit(vcpu);
	}
}

int vcpu_start_thread(struct vcpu *vcpu, struct error **errp)
{
	sigset_t block, old;
	int r;

	vcpu_init_signals();
	/* The thread starts with the kick blocked and unblocks it itself. */
	sigemptyset(&block);
	sigaddset(&block, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	r = pthread_create(&vcpu->thread, NULL, vcpu_thread, vcpu);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0) {
		return error_set_errno(errp, r, "cannot start the thread of vCPU %u", vcpu->index);
	}
	vcpu->thread_started = true;
	return 0;
}

void vcpu_kick(struct vcpu *vcpu)
{
	vcpu->run->immediate_exit = 1;
	if (vcpu->thread_started) {
		pthread_kill(vcpu->thread, VCPU_KICK_SIGNAL);
	}
}

void vcpu_unstall(struct vcpu *vcpu)
{
	vcpu->stalled = false;
}

void vcpu_join(struct vcpu *vcpu)
{
	if (vcpu->thread_started) {
		pthread_join(vcpu->thread, NULL);
		vcpu->thread_started = false;
	}
}
