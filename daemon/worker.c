/*
 * Worker threads: see worker.h.
 *
 * A job never queues behind another (a slow NBD server must delay only its
 * own VM): it goes to an idle thread if one waits, else to a new detached
 * thread. A thread that finished its job waits for the next one, up to
 * WORKERS_IDLE_MAX idle threads; the others exit. So creating threads
 * (stacks are mmap()ed under the process's mmap lock, which VM setup and
 * teardown on other threads hold for long stretches) is rare on the control
 * thread once the daemon is warm. Idle threads sleep on a semaphore: they
 * cost no CPU.
 *
 * The control thread never takes a lock a worker holds: it may run at a
 * real-time priority (main.c) while a worker holding a lock waits for a time
 * slice behind busy guests, and a condition variable's signal can wait for
 * its woken waiters too. Both hand-overs are lock-free stacks with one
 * consumer each: idle threads push themselves, the control thread pops one
 * and posts its semaphore; finished jobs are pushed by the workers and
 * taken all at once by the control thread (an eventfd wakes it), which runs
 * the done callbacks in completion order. One consumer per stack means a
 * popped node cannot come back during the pop: no ABA.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/log.h"
#include "common/thread.h"
#include "daemon/sandbox.h"
#include "daemon/worker.h"

struct worker_job {
	struct worker_job *next; /* on the done stack */
	void (*fn)(void *arg);
	void (*done)(void *arg);
	void *arg;
	int *vm_flag; /* the VM it works for (sandbox_work_for), or NULL */
};

/* A thread waiting for its next job. */
struct worker_idle {
	struct worker_idle *next; /* on the idle stack */
	sem_t sem;
	struct worker_job *job; /* set before the post; NULL: exit */
};

/*
 * Threads kept waiting for work when the jobs run out: as many as the 16
 * clients of the lifecycle benchmark keep busy (tests/bench/README), each an
 * idle stack and a sleeping task.
 */
#define WORKERS_IDLE_MAX 16

struct workers {
	int nice;	      /* the VMs' nice value: the threads jobs create start at it */
	_Atomic int job_nice; /* how much lower jobs run (vmmd.conf job-nice) */
	int efd;
	struct event *ev;
	_Atomic(struct worker_job *) done_top; /* finished jobs, newest first */
	_Atomic(struct worker_idle *) idle_top;
	atomic_uint n_idle;  /* threads on the idle stack, or about to be */
	atomic_uint threads; /* live threads */
	unsigned running;    /* control thread: jobs whose done has not run */
};

static void drain(evutil_socket_t fd, short what, void *opaque)
{
	struct workers *w = opaque;
	struct worker_job *j, *batch = NULL;
	uint64_t v;

	if (read(w->efd, &v, sizeof(v)) < 0) {
		/* Nothing pending. */
	}
	/* Newest first on the stack: reversed, they run in completion order. */
	j = atomic_exchange(&w->done_top, NULL);
	while (j) {
		struct worker_job *next = j->next;

		j->next = batch;
		batch = j;
		j = next;
	}
	while (batch) {
		j = batch;
		batch = j->next;
		w->running--;
		j->done(j->arg);
		free(j);
	}
}

void workers_set_job_nice(struct workers *w, int job_nice)
{
	atomic_store(&w->job_nice, job_nice);
}

int workers_new(struct event_base *base, struct workers **ret, struct error **errp)
{
	struct workers *w = calloc(1, sizeof(*w));

	if (!w) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	errno = 0;
	w->nice = getpriority(PRIO_PROCESS, 0);
	if (errno) {
		w->nice = 0;
	}
	w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->efd < 0) {
		int r = error_set_errno(errp, errno, "eventfd");

		free(w);
		return r;
	}
	w->ev = event_new(base, w->efd, EV_READ | EV_PERSIST, drain, w);
	if (!w->ev || event_add(w->ev, NULL) < 0) {
		if (w->ev) {
			event_free(w->ev);
		}
		close(w->efd);
		free(w);
		return error_set(errp, ENOMEM, "out of memory");
	}
	*ret = w;
	return 0;
}

void workers_wait(struct workers *w, unsigned timeout_ms)
{
	struct timespec pause = {.tv_nsec = 10 * 1000 * 1000};

	if (!w) {
		return;
	}
	for (unsigned waited = 0; w->running && waited < timeout_ms; waited += 10) {
		drain(w->efd, EV_READ, w);
		if (w->running) {
			nanosleep(&pause, NULL);
		}
	}
	drain(w->efd, EV_READ, w);
}

/* Control thread only (the one consumer). */
static struct worker_idle *pop_idle(struct workers *w)
{
	struct worker_idle *top = atomic_load(&w->idle_top);

	while (top && !atomic_compare_exchange_weak(&w->idle_top, &top, top->next)) {
	}
	return top;
}

void workers_free(struct workers *w)
{
	struct timespec pause = {.tv_nsec = 1000 * 1000};
	struct worker_idle *idle;

	if (!w) {
		return;
	}
	drain(w->efd, EV_READ, w);
	if (w->running) {
		/* A job is stuck (a backend that never answers): leave it to exit(). */
		return;
	}
	/* Wake the idle threads with no job: they exit. One that is on its way
	 * to the idle stack is caught by the next pass (a second at most). */
	for (unsigned i = 0; atomic_load(&w->threads) && i < 1000; i++) {
		while ((idle = pop_idle(w))) {
			idle->job = NULL;
			sem_post(&idle->sem);
		}
		nanosleep(&pause, NULL);
	}
	if (atomic_load(&w->threads)) {
		return; /* leave it to exit() */
	}
	event_free(w->ev);
	close(w->efd);
	free(w);
}

unsigned workers_running(struct workers *w)
{
	return w->running;
}

/*
 * An idle thread gives back the stack pages its last job touched below the
 * current frame (building a VM runs deep), so that idle threads cost little
 * memory: glibc does the same for the stacks it caches.
 */
static void trim_stack(void *lo)
{
	char here;
	uintptr_t top = ((uintptr_t)&here - 16384) & ~(uintptr_t)4095;

	if (lo && top > (uintptr_t)lo) {
		madvise(lo, top - (uintptr_t)lo, MADV_DONTNEED);
	}
}

struct job_start {
	struct workers *w;
	struct worker_job *job;
};

static void *job_thread(void *opaque)
{
	struct job_start *start = opaque;
	struct workers *w = start->w;
	struct worker_job *j = start->job;
	struct worker_idle idle;
	pthread_attr_t attr;
	void *stack_lo = NULL;
	size_t stack_size;
	uint64_t one = 1;

	free(start);
	if (pthread_getattr_np(pthread_self(), &attr) == 0) {
		if (pthread_attr_getstack(&attr, &stack_lo, &stack_size) != 0) {
			stack_lo = NULL;
		}
		pthread_attr_destroy(&attr);
	}
	pthread_setname_np(pthread_self(), "vmmd-job");
	sandbox_enter(SANDBOX_JOB, NULL, NULL);
	/* Tests only (test-security-seccomp.py): a call job threads may not make. */
	if (getenv("VMMD_SECCOMP_SELFTEST") &&
	    strcmp(getenv("VMMD_SECCOMP_SELFTEST"), "job") == 0 && chdir("/") == 0) {
		log_error("seccomp self-test: chdir passed the job thread's filter");
	}
	sem_init(&idle.sem, 0, 0);
	while (j) {
		/*
		 * Below the VMs' own priority: setting VMs up and tearing them
		 * down yields to guests, clients and the control thread. The
		 * threads a job creates for a VM start at the VMs' nice value.
		 */
		setpriority(PRIO_PROCESS, 0, MIN(w->nice + atomic_load(&w->job_nice), 19));
		thread_set_child_nice(w->nice);
		sandbox_work_for(j->vm_flag);
		j->fn(j->arg);
		sandbox_work_for(NULL); /* between jobs it works for the daemon */
		j->next = atomic_load(&w->done_top);
		while (!atomic_compare_exchange_weak(&w->done_top, &j->next, j)) {
		}
		/* The job is the control thread's from here on. */
		if (atomic_fetch_add(&w->n_idle, 1) >= WORKERS_IDLE_MAX) {
			atomic_fetch_sub(&w->n_idle, 1);
			j = NULL;
		} else {
			idle.job = NULL;
			idle.next = atomic_load(&w->idle_top);
			while (!atomic_compare_exchange_weak(&w->idle_top, &idle.next, &idle)) {
			}
		}
		if (write(w->efd, &one, sizeof(one)) < 0) {
			/* Saturated counter: the control thread is awake anyway. */
		}
		if (!j) {
			break;
		}
		trim_stack(stack_lo);
		while (sem_wait(&idle.sem) < 0 && errno == EINTR) {
		}
		atomic_fetch_sub(&w->n_idle, 1);
		j = idle.job;
	}
	sem_destroy(&idle.sem);
	atomic_fetch_sub(&w->threads, 1); /* the last touch of w */
	return NULL;
}

int worker_run(struct workers *w, void (*fn)(void *arg), void (*done)(void *arg), void *arg,
	       struct error **errp)
{
	return worker_run_for(w, NULL, fn, done, arg, errp);
}

int worker_run_for(struct workers *w, int *vm_flag, void (*fn)(void *arg), void (*done)(void *arg),
		   void *arg, struct error **errp)
{
	struct worker_idle *idle;
	struct job_start *start;
	struct worker_job *j;
	pthread_attr_t attr;
	pthread_t t;
	sigset_t old;
	int r;

	if (w->running >= WORKERS_MAX_JOBS) {
		return error_set(errp, EAGAIN,
				 "too many VM operations in progress (%u); try again later",
				 WORKERS_MAX_JOBS);
	}
	j = calloc(1, sizeof(*j));
	if (!j) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	j->fn = fn;
	j->done = done;
	j->arg = arg;
	j->vm_flag = vm_flag;
	idle = pop_idle(w);
	if (idle) {
		/* An idle thread takes it: no thread to create here. */
		idle->job = j;
		sem_post(&idle->sem);
		w->running++;
		return 0;
	}
	start = calloc(1, sizeof(*start));
	if (!start) {
		free(j);
		return error_set(errp, ENOMEM, "out of memory");
	}
	start->w = w;
	start->job = j;
	atomic_fetch_add(&w->threads, 1);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	/* Signals stay with the control thread. */
	thread_block_signals(&old);
	r = pthread_create(&t, &attr, job_thread, start);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (r != 0) {
		atomic_fetch_sub(&w->threads, 1);
		free(start);
		free(j);
		return error_set_errno(errp, r, "cannot start a worker thread");
	}
	w->running++;
	return 0;
}
