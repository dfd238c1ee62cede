/*
 * Blocking work off the control thread (DESIGN.md §2.1): building and
 * tearing down VMs (opening disks, NBD connects, reading kernels and
 * firmware, creating and destroying KVM objects, joining threads) runs on a
 * worker thread of its own; its completion runs back on the control thread.
 *
 * Threads: worker_new, worker_run and every done callback on the control
 * thread; each job's fn on a worker thread of its own while it runs (an idle
 * worker from an earlier job, or a new one: jobs never wait for each other),
 * with all signals blocked.
 */
#pragma once

#include <stdbool.h>

#include "common/error.h"

struct event_base;
struct workers;

/* Jobs that may run at once; one more is refused (EAGAIN). */
#define WORKERS_MAX_JOBS 256

int workers_new(struct event_base *base, struct workers **ret, struct error **errp);
/* Jobs from now on run @job_nice (0..19) nice levels below the VMs' threads. */
void workers_set_job_nice(struct workers *w, int job_nice);
/* Wait up to @timeout_ms for running jobs; their done callbacks run here. */
void workers_wait(struct workers *w, unsigned timeout_ms);
/* Free @w, unless a job still runs (stuck backend): then leave it to exit(). */
void workers_free(struct workers *w);

/*
 * Run fn(arg) on an idle worker thread or a new one, then done(arg) on the
 * control thread. done always runs later, from the event loop, never inside
 * worker_run. fn must leave the thread as it found it (nice value excepted).
 */
int worker_run(struct workers *w, void (*fn)(void *arg), void (*done)(void *arg), void *arg,
	       struct error **errp);
/*
 * As worker_run, for one VM: while fn runs the thread works for the VM
 * whose seccomp violation flag is @vm_flag (sandbox_work_for): a forbidden
 * call then ends that VM. @vm_flag must outlive the job.
 */
int worker_run_for(struct workers *w, int *vm_flag, void (*fn)(void *arg), void (*done)(void *arg),
		   void *arg, struct error **errp);
/* Jobs started and not yet done. */
unsigned workers_running(struct workers *w);
