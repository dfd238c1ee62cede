/*
 * seccomp filters per thread kind (libseccomp), DESIGN.md §2.1, issue 14.
 *
 * The control thread loads the daemon's allow-list before any other thread
 * exists, so every thread inherits it ("Seccomp: 2" everywhere). Each kind
 * then adds its own, narrower list on top (filters stack: a call must pass
 * every one): vCPU threads may not open files, create sockets or issue
 * non-KVM ioctls; no thread may exec, fork or trace. The lists are what each
 * kind was seen to call over the test suite (strace -f, tests/seccomp/) plus
 * a reviewed margin.
 *
 * A forbidden call traps (SIGSYS): the handler fails the call with EPERM,
 * writes a line naming the thread kind and the syscall number to stderr
 * (async-signal-safe), and, on a thread that works for one VM (its vCPU,
 * I/O and disk helper threads; a job, block-job or migration thread while
 * it works for it: sandbox_enter's @flag, sandbox_work_for), flags that
 * VM: the daemon then logs the syscall's name and ends that VM. On a
 * daemon-wide thread the call only fails and is logged. Never a silent
 * pass.
 *
 * Threads: sandbox_init and sandbox_enter(SANDBOX_CONTROL) on the control
 * thread at start-up; sandbox_enter for other kinds on the thread itself.
 */
#pragma once

#include <stdbool.h>

#include "common/error.h"

enum sandbox_kind {
	SANDBOX_CONTROL,
	SANDBOX_JOB,
	SANDBOX_IO,
	SANDBOX_VCPU,
	/*
	 * A block-layer worker of a VM's disks: no filter of its own, it runs
	 * its creator's (the I/O thread's list; a worker started when a drain
	 * ends, on a job or the control thread, runs that thread's), but a
	 * violation is the VM's.
	 */
	SANDBOX_IO_HELPER,
	/*
	 * A restored VM's userfaultfd handler (hw/core/uffd.c): started by a job
	 * thread, it reads the snapshot's memory file and issues userfaultfd
	 * ioctls; nothing else.
	 */
	SANDBOX_UFFD,
};

/* Whether filters are loaded at all (vmmd.conf seccomp = off turns them off). */
void sandbox_set_enabled(bool on);
bool sandbox_enabled(void);

/* Install the SIGSYS handler; @violation_fd is written when a VM thread violates. */
int sandbox_init(int violation_fd, struct error **errp);

/*
 * Load the filter of @kind on the calling thread. @flag (threads that work
 * for one VM) is set to the offending syscall number by the SIGSYS handler,
 * which then wakes the control thread: the daemon ends that VM. NULL: a
 * daemon-wide thread, whose violations fail with EPERM and are logged.
 * No filter is loaded when disabled; @flag is recorded anyway.
 */
int sandbox_enter(enum sandbox_kind kind, int *flag, struct error **errp);

/*
 * The calling thread works for the VM of @flag (NULL: for the daemon) from
 * now on, with its filter unchanged: a worker thread that takes one VM's
 * job at a time. Returns the previous flag.
 */
int *sandbox_work_for(int *flag);

/* The name of syscall @nr (for the log), or "?". */
const char *sandbox_syscall_name(int nr, char *buf, unsigned len);

/* Tests: the thread-kind name of @kind. */
const char *sandbox_kind_name(enum sandbox_kind kind);
