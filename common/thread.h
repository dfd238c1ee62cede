/*
 * Thread creation with a chosen nice value for the new thread.
 *
 * A new thread inherits its creator's nice value. The daemon's VM workers
 * run at a lower priority than the VMs they build (daemon/worker.c), so the
 * threads they create for a VM (its I/O thread, vCPUs, block-layer helpers,
 * a restore's userfaultfd handler) must not inherit it: a worker sets the
 * nice value its children start at, and thread_create switches to it around
 * pthread_create. Other threads set nothing and create threads as
 * pthread_create does (no extra system call: a thread whose seccomp filter
 * forbids setpriority may call thread_create).
 *
 * Threads: any; the setting is the calling thread's own.
 */
#ifndef VMMD_COMMON_THREAD_H
#define VMMD_COMMON_THREAD_H

#include <pthread.h>
#include <signal.h>

/* The nice value of the threads this thread creates from now on. */
void thread_set_child_nice(int nice);
/* pthread_create, the new thread at the child nice value if one is set. */
int thread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*fn)(void *), void *arg);
/*
 * Block in this thread every signal sent to the process (the daemon's
 * signals belong to the control thread), the old mask in @old: call it
 * around creating a thread, which inherits the mask. The signals of a
 * fault (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGABRT) stay
 * unblocked: the kernel sends them to the thread at fault, and one it
 * finds blocked kills the whole process without running any handler (no
 * sanitizer report, no seccomp message, no line in the log).
 */
void thread_block_signals(sigset_t *old);

#endif
