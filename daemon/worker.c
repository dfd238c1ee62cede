/*
 * Worker threads: see worker.h.
 *
 * Each job gets a detached thread (setup and teardown are rare and long;
 * a pool would only add queueing behind a slow NBD server). A finished job
 * is put on the done list under the lock and the eventfd wakes the control
 * thread, which runs the done callbacks in completion order.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/list.h"
#include "daemon/sandbox.h"
#include "daemon/worker.h"

struct worker_job {
	struct list_head link;
	struct workers *w;
	void (*fn)(void *arg);
	void (*done)(void *arg);
	void *arg;
};

struct workers {
	int nice; /* jobs (and the VM threads they create) run at this nice value */
	int efd;
	struct event *ev;
	pthread_mutex_t lock;
	struct list_head done;
	unsigned running; /* control thread */
};

static void drain(evutil_socket_t fd, short what, void *opaque)
{
	struct workers *w = opaque;
	struct list_head batch;
	uint64_t v;

	if (read(w->efd, &v, sizeof(v)) < 0) {
		/* Nothing pending. */
	}
	list_init(&batch);
	pthread_mutex_lock(&w->lock);
	while (!list_empty(&w->done)) {
		struct list_head *p = w->done.next;

		list_del(p);
		list_add_tail(p, &batch);
	}
	pthread_mutex_unlock(&w->lock);
	while (!list_empty(&batch)) {
		struct worker_job *j = list_first_entry(&batch, struct worker_job, link);

		list_del(&j->link);
		w->running--;
		j->done(j->arg);
		free(j);
	}
}

int workers_new(struct event_base *base, struct workers **ret, struct error **errp)
{
	struct workers *w = calloc(1, sizeof(*w));

	if (!w) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	pthread_mutex_init(&w->lock, NULL);
	list_init(&w->done);
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

void workers_free(struct workers *w)
{
	if (!w) {
		return;
	}
	drain(w->efd, EV_READ, w);
	if (w->running) {
		/* A job is stuck (a backend that never answers): leave it to exit(). */
		return;
	}
	event_free(w->ev);
	close(w->efd);
	pthread_mutex_destroy(&w->lock);
	free(w);
}

unsigned workers_running(struct workers *w)
{
	return w->running;
}

static void *job_thread(void *opaque)
{
	struct worker_job *j = opaque;
	struct workers *w = j->w;
	uint64_t one = 1;

	pthread_setname_np(pthread_self(), "vmmd-job");
	/* Not the control thread's priority: the VM's I/O thread is created here. */
	setpriority(PRIO_PROCESS, 0, w->nice);
	sandbox_enter(SANDBOX_JOB, NULL, NULL);
	j->fn(j->arg);
	pthread_mutex_lock(&w->lock);
	list_add_tail(&j->link, &w->done);
	pthread_mutex_unlock(&w->lock);
	if (write(w->efd, &one, sizeof(one)) < 0) {
		/* Saturated counter: the control thread is awake anyway. */
	}
	return NULL;
}

int worker_run(struct workers *w, void (*fn)(void *arg), void (*done)(void *arg), void *arg,
	       struct error **errp)
{
	struct worker_job *j;
	pthread_attr_t attr;
	pthread_t t;
	sigset_t all, old;
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
	j->w = w;
	j->fn = fn;
	j->done = done;
	j->arg = arg;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	/* Signals stay with the control thread. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	r = pthread_create(&t, &attr, job_thread, j);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (r != 0) {
		free(j);
		return error_set_errno(errp, r, "cannot start a worker thread");
	}
	w->running++;
	return 0;
}
