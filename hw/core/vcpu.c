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
#include "common/thread.h"
#include "common/util.h"
#include "hw/core/iobus.h"
#include "hw/core/memory.h"
#include "hw/core/vcpu.h"
#include "hw/core/vm-int.h"
#include "hw/core/x86-emul.h"

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

static void kick_handler(int sig)
{
	(void)sig;
}

static void install_kick_handler(void)
{
	struct sigaction sa = {.sa_handler = kick_handler};

	sigemptyset(&sa.sa_mask);
	sigaction(VCPU_KICK_SIGNAL, &sa, NULL);
	/*
	 * The throttle's tick comes at any time, also during a device model's
	 * system call on this thread: those restart (KVM_RUN still returns EINTR).
	 */
	sa.sa_flags = SA_RESTART;
	sigaction(VCPU_THROTTLE_SIGNAL, &sa, NULL);
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
			vcpu->index, vm->cfg->maxcpus, c->entries, CPUID_MAX_ENTRIES, &n, errp);
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
	if (vcpu->throttle_timer_set) {
		timer_delete(vcpu->throttle_timer);
	}
	if (vcpu->run) {
		munmap(vcpu->run, (size_t)vcpu->vm->kvm.run_size);
	}
	if (vcpu->fd >= 0) {
		close(vcpu->fd);
	}
	free(vcpu->qom_path);
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
	/* no exception, interrupt or NMI pending or injected, as at power-on */
	struct kvm_vcpu_events ev = {.flags = KVM_VCPUEVENT_VALID_NMI_PENDING};
	int r;

	atomic_store(&vcpu->nmi_pending, false);
	if (ioctl(vcpu->fd, KVM_SET_LAPIC, &lapic) < 0 ||
	    ioctl(vcpu->fd, KVM_SET_VCPU_EVENTS, &ev) < 0 ||
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

/* struct x86_emul_ops over this vCPU's KVM fd (hw/core/x86-emul.c). */
static int emul_get_regs(void *opaque, struct kvm_regs *regs)
{
	return ioctl(((struct vcpu *)opaque)->fd, KVM_GET_REGS, regs);
}

static int emul_set_regs(void *opaque, const struct kvm_regs *regs)
{
	return ioctl(((struct vcpu *)opaque)->fd, KVM_SET_REGS, regs);
}

static int emul_get_sregs(void *opaque, struct kvm_sregs *sregs)
{
	return ioctl(((struct vcpu *)opaque)->fd, KVM_GET_SREGS, sregs);
}

static int emul_get_fpu(void *opaque, struct kvm_fpu *fpu)
{
	return ioctl(((struct vcpu *)opaque)->fd, KVM_GET_FPU, fpu);
}

static int emul_set_fpu(void *opaque, const struct kvm_fpu *fpu)
{
	return ioctl(((struct vcpu *)opaque)->fd, KVM_SET_FPU, fpu);
}

/* A guest-RAM pointer for @len bytes at linear @la (within one page), or NULL. */
static uint8_t *emul_map(struct vcpu *vcpu, uint64_t la, size_t len)
{
	struct kvm_translation tr = {.linear_address = la};

	if (ioctl(vcpu->fd, KVM_TRANSLATE, &tr) < 0 || !tr.valid) {
		return NULL;
	}
	return guest_mem_ptr(vcpu->vm->mem, tr.physical_address, len);
}

/* Copy between @buf and guest linear memory, page by page (a page may be anywhere). */
static int emul_access(struct vcpu *vcpu, uint64_t la, uint8_t *buf, size_t len, bool write)
{
	while (len) {
		size_t chunk = MIN(len, 4096 - (la & 4095));
		uint8_t *p = emul_map(vcpu, la, chunk);

		if (!p) {
			return -EFAULT;
		}
		if (write) {
			memcpy(p, buf, chunk);
		} else {
			memcpy(buf, p, chunk);
		}
		la += chunk;
		buf += chunk;
		len -= chunk;
	}
	return 0;
}

static int emul_read_mem(void *opaque, uint64_t la, void *buf, size_t len)
{
	return emul_access(opaque, la, buf, len, false);
}

static int emul_write_mem(void *opaque, uint64_t la, const void *buf, size_t len)
{
	return emul_access(opaque, la, (uint8_t *)buf, len, true);
}

static int emul_get_events(void *opaque, struct kvm_vcpu_events *events)
{
	return ioctl(((struct vcpu *)opaque)->fd, KVM_GET_VCPU_EVENTS, events);
}

static int emul_set_events(void *opaque, const struct kvm_vcpu_events *events)
{
	return ioctl(((struct vcpu *)opaque)->fd, KVM_SET_VCPU_EVENTS, events);
}

static size_t emul_read_insn(void *opaque, const struct kvm_regs *regs,
			     const struct kvm_sregs *sregs, uint8_t *buf, size_t max)
{
	return read_insn_bytes(opaque, regs, sregs, buf, max);
}

static const struct x86_emul_ops emul_ops = {
	.get_regs = emul_get_regs,
	.set_regs = emul_set_regs,
	.get_sregs = emul_get_sregs,
	.get_fpu = emul_get_fpu,
	.set_fpu = emul_set_fpu,
	.get_events = emul_get_events,
	.set_events = emul_set_events,
	.read_insn = emul_read_insn,
	.read_mem = emul_read_mem,
	.write_mem = emul_write_mem,
};

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
	const struct x86_emul_cpu cpu = {
		.ops = &emul_ops,
		.opaque = vcpu,
		.vm_name = vcpu->vm->cfg->name,
		.index = vcpu->index,
		.rl = &vcpu->vm->exit_rl,
	};
	char what[96];

	if (run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION && x86_emul_try(&cpu)) {
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

/*
 * QEMU's cpu_throttle on this thread (vm_set_cpu_throttle): once the guest
 * has run VCPU_THROTTLE_SLICE_NS, keep it out for pct/(100-pct) of the time
 * it ran (at most four slices' worth), waiting on run_cond so that a pause,
 * a stop or the end of the throttle cuts the sleep short. The tick
 * (VCPU_THROTTLE_SIGNAL) makes KVM_RUN return for this check.
 */
static void throttle(struct vcpu *vcpu)
{
	struct vm *vm = vcpu->vm;
	unsigned pct = atomic_load(&vm->throttle_pct);
	uint64_t now, ran, until;
	struct timespec ts;

	if (!pct) {
		vcpu->throttle_from = 0;
		return;
	}
	now = mono_ns();
	if (!vcpu->throttle_from) {
		vcpu->throttle_from = now;
		return;
	}
	ran = now - vcpu->throttle_from;
	if (ran < VCPU_THROTTLE_SLICE_NS) {
		return;
	}
	until = now + MIN(ran, 4 * VCPU_THROTTLE_SLICE_NS) * pct / (100 - pct);
	ts.tv_sec = (time_t)(until / 1000000000ull);
	ts.tv_nsec = (long)(until % 1000000000ull);
	pthread_mutex_lock(&vm->run_lock);
	while (vm->vcpu_cmd == VCPU_CMD_RUN && !vcpu->unplugged && atomic_load(&vm->throttle_pct) &&
	       mono_ns() < until) {
		pthread_cond_clockwait(&vm->run_cond, &vm->run_lock, CLOCK_MONOTONIC, &ts);
	}
	pthread_mutex_unlock(&vm->run_lock);
	vcpu->throttle_from = mono_ns();
}

int vcpu_throttle_timer(struct vcpu *vcpu, bool on)
{
	struct sigevent sev = {.sigev_notify = SIGEV_THREAD_ID,
			       .sigev_signo = VCPU_THROTTLE_SIGNAL};
	struct itimerspec its = {.it_interval = {0, (long)VCPU_THROTTLE_SLICE_NS},
				 .it_value = {0, (long)VCPU_THROTTLE_SLICE_NS}};
	int tid = atomic_load(&vcpu->tid);

	if (!on || vcpu->throttle_timer_set) {
		if (!on && vcpu->throttle_timer_set) {
			timer_delete(vcpu->throttle_timer);
			vcpu->throttle_timer_set = false;
		}
		return 0;
	}
	if (!vcpu->ticked) {
		return 0; /* no thread to tick: it arms the timer itself when it starts */
	}
	sev._sigev_un._tid = tid; /* sigev_notify_thread_id, which older glibc lacks */
	if (timer_create(CLOCK_MONOTONIC, &sev, &vcpu->throttle_timer) < 0) {
		return -errno;
	}
	if (timer_settime(vcpu->throttle_timer, 0, &its, NULL) < 0) {
		int e = errno;

		timer_delete(vcpu->throttle_timer);
		return -e;
	}
	vcpu->throttle_timer_set = true;
	return 0;
}

/* vCPU thread, out of KVM_RUN: an NMI inject-nmi left for it goes to KVM. */
static void take_nmi(struct vcpu *vcpu)
{
	if (atomic_exchange(&vcpu->nmi_pending, false) && ioctl(vcpu->fd, KVM_NMI) < 0) {
		log_full(LOG_WARNING, vcpu->vm->cfg->name, NULL, "vCPU %u: KVM_NMI failed: %s",
			 vcpu->index, strerror(errno));
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
	/*
	 * A throttle set before this thread ran (a vCPU plugged or re-plugged
	 * during a throttled migration) ticks it too. The timer of an earlier
	 * thread of this vCPU (unplugged while throttled) signalled that
	 * thread: replaced. Both before the thread's seccomp filter, which
	 * has no timer calls.
	 */
	pthread_mutex_lock(&vm->run_lock);
	atomic_store(&vcpu->tid, (int)gettid());
	vcpu->ticked = true;
	vcpu_throttle_timer(vcpu, false);
	if (atomic_load(&vm->throttle_pct)) {
		int r = vcpu_throttle_timer(vcpu, true);

		if (r < 0) {
			log_full(LOG_WARNING, vm->cfg->name, NULL,
				 "vCPU %u: no throttle timer (%s): throttled on its exits only",
				 vcpu->index, strerror(-r));
		}
	}
	pthread_mutex_unlock(&vm->run_lock);
	if (vm_get_host(vm)->thread_start) {
		vm_get_host(vm)->thread_start(vm_get_host(vm)->opaque, "vcpu");
	}
	sigemptyset(&set);
	sigaddset(&set, VCPU_KICK_SIGNAL);
	sigaddset(&set, VCPU_THROTTLE_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);

	for (;;) {
		int r;

		take_nmi(vcpu); /* before it may park: a save then finds it in KVM */
		pthread_mutex_lock(&vm->run_lock);
		if ((vm->vcpu_cmd != VCPU_CMD_RUN || vcpu->stalled || vcpu->unplugged) &&
		    vcpu->io_pending) {
			/*
			 * Finish the port or MMIO access just handled (KVM
			 * completes it on the next KVM_RUN, which returns at once
			 * with immediate_exit set) so the parked state is whole:
			 * a save must not catch an instruction half done.
			 */
			vcpu->run->immediate_exit = 1;
			ioctl(vcpu->fd, KVM_RUN, 0);
			vcpu->io_pending = false;
		}
		while (vm->vcpu_cmd != VCPU_CMD_RUN || vcpu->stalled || vcpu->unplugged) {
			if (!vcpu->parked) {
				vcpu->parked = true;
				vm->n_parked++;
				pthread_cond_broadcast(&vm->run_cond);
			}
			if (vm->vcpu_cmd == VCPU_CMD_STOP || vcpu->unplugged) {
				/* its timer, if any, stays until replaced or freed */
				vcpu->ticked = false;
				pthread_mutex_unlock(&vm->run_lock);
				return NULL;
			}
			pthread_cond_wait(&vm->run_cond, &vm->run_lock);
		}
		if (vcpu->parked) {
			vcpu->parked = false;
			vm->n_parked--;
			vcpu->throttle_from = 0; /* time parked is not time run */
		}
		vcpu->run->immediate_exit = 0;
		pthread_mutex_unlock(&vm->run_lock);
		/* after clearing immediate_exit: a kick for a later NMI still ends KVM_RUN */
		take_nmi(vcpu);

		r = ioctl(vcpu->fd, KVM_RUN, 0);
		atomic_fetch_add(&vcpu->exits, 1);
		if (r < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				throttle(vcpu);
				continue;
			}
			log_full(LOG_ERR, vm->cfg->name, NULL, "vCPU %u: KVM_RUN failed: %s",
				 vcpu->index, strerror(errno));
			vcpu_fail(vcpu, VM_CAUSE_HOST_ERROR);
			continue;
		}
		vcpu->io_pending = vcpu->run->exit_reason == KVM_EXIT_IO ||
				   vcpu->run->exit_reason == KVM_EXIT_MMIO;
		handle_exit(vcpu);
		throttle(vcpu);
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
	r = thread_create(&vcpu->thread, NULL, vcpu_thread, vcpu);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0) {
		return error_set_errno(errp, r, "cannot start the thread of vCPU %u", vcpu->index);
	}
	vcpu->thread_started = true;
	return 0;
}

void vcpu_inject_nmi(struct vcpu *vcpu)
{
	if (!vcpu->thread_started || vcpu->parked) {
		/* not in KVM_RUN and cannot enter it while we hold run_lock */
		if (ioctl(vcpu->fd, KVM_NMI) < 0) {
			log_full(LOG_WARNING, vcpu->vm->cfg->name, NULL,
				 "vCPU %u: KVM_NMI failed: %s", vcpu->index, strerror(errno));
		}
		return;
	}
	atomic_store(&vcpu->nmi_pending, true);
	vcpu_kick(vcpu);
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
