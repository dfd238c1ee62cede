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

/* The nice value of the threads this thread creates from now on. */
void thread_set_child_nice(int nice);
/* pthread_create, the new thread at the child nice value if one is set. */
int thread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*fn)(void *), void *arg);

#endif
