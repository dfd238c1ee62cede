/*
 * One vCPU: its KVM fd, the kvm_run page and the thread that loops on
 * KVM_RUN, dispatching port and MMIO exits to the I/O bus.
 *
 * Threads: created and freed on the control thread; the loop runs on the
 * vCPU's own thread and is parked/released through struct vm's run_lock
 * (see vm-int.h). A thread is interrupted by VCPU_KICK_SIGNAL plus
 * kvm_run->immediate_exit, never cancelled. While the VM is throttled
 * (vm_set_cpu_throttle), a timer of its own sends it VCPU_THROTTLE_SIGNAL
 * every VCPU_THROTTLE_SLICE_NS so that KVM_RUN returns even when the guest
 * makes no exits; that handler restarts any other interrupted system call.
 */
#pragma once

#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <signal.h>
#include <time.h>

#define VCPU_KICK_SIGNAL (SIGRTMIN + 1)
#define VCPU_THROTTLE_SIGNAL (SIGRTMIN + 2)
/* QEMU's CPU_THROTTLE_TIMESLICE_NS: the guest runs this long between sleeps. */
#define VCPU_THROTTLE_SLICE_NS 10000000ull

struct vm;

struct vcpu {
	struct vm *vm;
	unsigned index;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool thread_started;
	bool parked;  /* under vm->run_lock */
	bool stalled; /* a fatal exit: stays parked until reset (under run_lock) */
	/*
	 * Hot-unplugged (under run_lock): the thread leaves its loop and is
	 * joined, the fd and kvm_run page stay for the next plug (KVM cannot
	 * destroy a vCPU). Counted in vm->n_parked while set.
	 */
	bool unplugged;
	char *qom_path;		    /* query-cpus-fast's qom-path of a hot-plugged vCPU, or NULL */
	atomic_uint_fast64_t exits; /* exits to user space */
	bool io_pending;	    /* vCPU thread: an I/O exit KVM has yet to complete */
	atomic_bool nmi_pending;    /* inject-nmi: KVM_NMI before the thread next enters KVM_RUN */
	_Atomic int tid;	    /* the thread's kernel id once it runs, else 0 */
	/* Throttling (vm_set_cpu_throttle): the timer, under vm->run_lock ... */
	timer_t throttle_timer;
	bool throttle_timer_set;
	bool ticked; /* (run_lock) the thread runs and may get the timer's signal */
	/* ... and when the guest last began to run unthrottled (vCPU thread; 0: not yet). */
	uint64_t throttle_from;

	/* Power-on state captured right after creation. */
	struct kvm_regs init_regs;
	struct kvm_sregs init_sregs;
	struct kvm_fpu init_fpu;
	struct kvm_lapic_state init_lapic;
	struct kvm_mp_state init_mp;
};
