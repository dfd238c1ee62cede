/*
 * The job core: see jobs.h. QEMU's state machine (job.c: JobSTT and the
 * verb table), its verbs and errors, its event sequence, with the work on
 * one worker thread per job.
 *
 * Threads and locks: the job list, the status, user_paused and the
 * control-side bookkeeping belong to the control thread. job->lock protects
 * what the worker and the control thread share: the pause count, cancel and
 * complete requests, the speed, progress, the note the worker posts and the
 * command the control thread sends back. The worker posts one note at a
 * time (paused, resumed, ready, I/O error, done, prepared, finalized),
 * wakes the control thread through jobs->efd and waits until the note has
 * been handled; so state changes and events happen in the worker's order,
 * on the control thread. After run() the worker waits for a command
 * (finalize, commit, abort) from the control thread.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/cleanup.h"
#include "common/list.h"
#include "common/log.h"
#include "common/parse.h"
#include "daemon/jobs.h"
#include "daemon/sandbox.h"

/* Longest job id accepted (QEMU has no limit; a client-controlled value needs one). */
#define JOB_ID_MAX 128
/* The rate limiter's time slice (QEMU's block jobs use 100 ms). */
#define JOB_SLICE_NS 100000000ull

enum job_note {
	NOTE_NONE,
	NOTE_PAUSED,
	NOTE_RESUMED,
	NOTE_READY,
	NOTE_IO_ERROR,
	NOTE_DONE,
	NOTE_PREPARED,
	NOTE_FINALIZED,
};

enum job_cmd {
	CMD_NONE,
	CMD_FINALIZE,
	CMD_COMMIT,
	CMD_ABORT,
};

struct job {
	struct list_head link;
	struct jobs *jobs;
	const struct job_driver *drv;
	void *opaque;
	char *id;
	char *vm;
	int *vm_flag; /* the VM's seccomp violation flag (job_options) */
	bool auto_finalize, auto_dismiss;
	bool internal; /* no events, not listed, not found by the verbs */
	enum job_on_error on_error;
	enum job_on_error on_target_error; /* mirror: of writes to the target */

	/* control thread */
	enum job_status status;
	bool started;
	bool orphaned; /* its VM is going away: dismissed as soon as it concludes */
	bool user_paused;
	bool io_failed;	 /* stopped by an I/O error (on-error stop): io-status "failed" */
	bool finalizing; /* a finalize/abort command is on its way */
	bool thread_running;
	pthread_t thread;
	int ret;
	char *err;

	pthread_mutex_t lock;
	pthread_cond_t cond; /* CLOCK_MONOTONIC */
	int pause_count;
	bool cancelled, force_cancel;
	bool complete_requested;
	bool deferred; /* run() has returned */
	bool worker_paused;
	bool worker_exited;
	bool kick;     /* wake a sleeping worker (speed change) */
	bool sleeping; /* in job_sleep_ns(): not busy, as QEMU's sleeping coroutine */
	uint64_t speed;
	uint64_t cur, total;
	enum job_note note;
	int note_ret;
	char *note_err;
	bool note_read;
	enum job_on_error note_action;
	enum job_cmd cmd;

	/* worker only: the rate limiter */
	uint64_t slice_end, slice_start, slice_bytes;
};

struct jobs {
	struct event_base *base;
	job_emit_fn *emit;
	void *opaque;
	void (*gone)(void *opaque, const char *vm);
	void *gone_opaque;
	struct list_head list;
	int efd;
	struct event *ev;
};

static const char *const status_names[JOB_STATUS__MAX] = {
	"undefined", "created", "running",  "paused",	 "ready", "standby",
	"waiting",   "pending", "aborting", "concluded", "null",
};

static const char *const verb_names[JOB_VERB__MAX] = {
	"cancel", "pause", "resume", "set-speed", "complete", "finalize", "dismiss", "change",
};

/* QEMU's JobSTT: [from][to]. */
static const bool job_stt[JOB_STATUS__MAX][JOB_STATUS__MAX] = {
	/*                         U, C, R, P, Y, S, W, D, X, E, N */
	[JOB_STATUS_UNDEFINED] = {0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0},
	[JOB_STATUS_CREATED] = {0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1},
	[JOB_STATUS_RUNNING] = {0, 0, 0, 1, 1, 0, 1, 0, 1, 0, 0},
	[JOB_STATUS_PAUSED] = {0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0},
	[JOB_STATUS_READY] = {0, 0, 0, 0, 0, 1, 1, 0, 1, 0, 0},
	[JOB_STATUS_STANDBY] = {0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0},
	[JOB_STATUS_WAITING] = {0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0},
	[JOB_STATUS_PENDING] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0},
	[JOB_STATUS_ABORTING] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0},
	[JOB_STATUS_CONCLUDED] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1},
	[JOB_STATUS_NULL] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
};

/* QEMU's JobVerbTable: [verb][status]. */
static const bool job_verbs[JOB_VERB__MAX][JOB_STATUS__MAX] = {
	/*                        U, C, R, P, Y, S, W, D, X, E, N */
	[JOB_VERB_CANCEL] = {0, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0},
	[JOB_VERB_PAUSE] = {0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0},
	[JOB_VERB_RESUME] = {0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0},
	[JOB_VERB_SET_SPEED] = {0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0},
	[JOB_VERB_COMPLETE] = {0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0},
	[JOB_VERB_FINALIZE] = {0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0},
	[JOB_VERB_DISMISS] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0},
	[JOB_VERB_CHANGE] = {0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0},
};

const char *job_status_name(enum job_status s)
{
	return (unsigned)s < JOB_STATUS__MAX ? status_names[s] : "undefined";
}

const char *job_verb_name(enum job_verb v)
{
	return (unsigned)v < JOB_VERB__MAX ? verb_names[v] : "?";
}

bool job_transition_allowed(enum job_status from, enum job_status to)
{
	return (unsigned)from < JOB_STATUS__MAX && (unsigned)to < JOB_STATUS__MAX &&
	       job_stt[from][to];
}

bool job_verb_allowed(enum job_verb verb, enum job_status s)
{
	return (unsigned)verb < JOB_VERB__MAX && (unsigned)s < JOB_STATUS__MAX &&
	       job_verbs[verb][s];
}

int job_on_error_parse(const char *s, const char *param, enum job_on_error *ret,
		       struct error **errp)
{
	if (!s || strcmp(s, "report") == 0) {
		*ret = JOB_ON_ERROR_REPORT;
	} else if (strcmp(s, "ignore") == 0) {
		*ret = JOB_ON_ERROR_IGNORE;
	} else if (strcmp(s, "stop") == 0) {
		*ret = JOB_ON_ERROR_STOP;
	} else if (strcmp(s, "enospc") == 0) {
		return error_set(errp, ENOTSUP, "%s 'enospc' is not supported by vmmd", param);
	} else {
		return error_set(errp, EINVAL, "Parameter '%s' does not accept value '%s'", param,
				 s);
	}
	return 0;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- control thread: events and transitions ---- */

static void emit(struct job *job, const char *name, json_t *data)
{
	if (job->internal) {
		json_decref(data);
		return;
	}
	job->jobs->emit(job->jobs->opaque, job->vm, name, data);
}

static void transition(struct job *job, enum job_status to)
{
	if (!job_transition_allowed(job->status, to)) {
		/* A bug in this file, never the client's doing. */
		log_error("job %s: invalid transition %s -> %s", job->id,
			  job_status_name(job->status), job_status_name(to));
	}
	job->status = to;
	emit(job, "JOB_STATUS_CHANGE",
	     json_pack("{s:s, s:s}", "id", job->id, "status", job_status_name(to)));
}

static int apply_verb(struct job *job, enum job_verb verb, struct error **errp)
{
	if (job_verb_allowed(verb, job->status)) {
		return 0;
	}
	return error_set(errp, EBUSY, "Job '%s' in state '%s' cannot accept command verb '%s'",
			 job->id, job_status_name(job->status), job_verb_name(verb));
}

/* The len/offset/speed trio of BLOCK_JOB_* events. */
static json_t *block_event_data(struct job *job)
{
	uint64_t cur, total, speed;

	pthread_mutex_lock(&job->lock);
	cur = job->cur;
	total = job->total;
	speed = job->speed;
	pthread_mutex_unlock(&job->lock);
	return json_pack("{s:s, s:s, s:I, s:I, s:I}", "type", job->drv->type, "device", job->id,
			 "len", (json_int_t)total, "offset", (json_int_t)cur, "speed",
			 (json_int_t)speed);
}

static bool is_cancelled_locked(struct job *job)
{
	return job->cancelled && job->force_cancel;
}

bool job_is_cancelled(struct job *job)
{
	bool c;

	pthread_mutex_lock(&job->lock);
	c = is_cancelled_locked(job);
	pthread_mutex_unlock(&job->lock);
	return c;
}

bool job_cancel_requested(struct job *job)
{
	bool c;

	pthread_mutex_lock(&job->lock);
	c = job->cancelled;
	pthread_mutex_unlock(&job->lock);
	return c;
}

static void send_cmd(struct job *job, enum job_cmd cmd)
{
	pthread_mutex_lock(&job->lock);
	job->cmd = cmd;
	pthread_cond_broadcast(&job->cond);
	pthread_mutex_unlock(&job->lock);
}

static void job_free(struct job *job)
{
	if (job->thread_running) {
		pthread_join(job->thread, NULL);
	}
	if (job->drv->free) {
		job->drv->free(job->opaque);
	}
	pthread_cond_destroy(&job->cond);
	pthread_mutex_destroy(&job->lock);
	free(job->note_err);
	free(job->err);
	free(job->id);
	free(job->vm);
	free(job);
}

static void do_dismiss(struct job *job)
{
	struct jobs *jobs = job->jobs;
	char *vm = job->vm;

	transition(job, JOB_STATUS_NULL);
	list_del(&job->link);
	job->vm = NULL;
	job_free(job);
	if (jobs->gone) {
		jobs->gone(jobs->gone_opaque, vm);
	}
	free(vm);
}

/* Record the outcome (QEMU's job_update_rc); true if the job failed or was cancelled. */
static bool update_rc(struct job *job, int ret, const char *msg)
{
	if (ret == 0 && job_is_cancelled(job)) {
		ret = -ECANCELED;
	}
	if (ret == 0 || job->ret != 0) {
		return job->ret != 0;
	}
	job->ret = ret;
	free(job->err);
	job->err = strdup(msg ? msg : strerror(-ret));
	if (job->status != JOB_STATUS_ABORTING) {
		transition(job, JOB_STATUS_ABORTING);
	}
	return true;
}

/* Start the abort path: the worker runs driver->abort, then posts "finalized". */
static void start_abort(struct job *job, int ret, const char *msg)
{
	job->finalizing = true;
	update_rc(job, ret ? ret : -ECANCELED, msg);
	send_cmd(job, CMD_ABORT);
}

static void do_finalize(struct job *job)
{
	job->finalizing = true;
	if (job->drv->finalizing) {
		job->drv->finalizing(job);
	}
	send_cmd(job, CMD_FINALIZE);
}

static void handle_done(struct job *job, int ret, const char *msg)
{
	if (update_rc(job, ret, msg)) {
		start_abort(job, job->ret, NULL);
		return;
	}
	transition(job, JOB_STATUS_WAITING);
	transition(job, JOB_STATUS_PENDING);
	if (!job->auto_finalize && job->drv->block) {
		emit(job, "BLOCK_JOB_PENDING",
		     json_pack("{s:s, s:s}", "type", job->drv->type, "id", job->id));
	}
	if (job->auto_finalize) {
		do_finalize(job);
	}
}

/* Returns false if the job was dismissed (and freed). */
static bool handle_finalized(struct job *job)
{
	if (job->drv->finished) {
		job->drv->finished(job, job->ret);
	}
	if (job->started && job->drv->block) {
		if (job_is_cancelled(job)) {
			emit(job, "BLOCK_JOB_CANCELLED", block_event_data(job));
		} else {
			json_t *data = block_event_data(job);

			if (job->err && data) {
				json_object_set_new(data, "error", json_string(job->err));
			}
			emit(job, "BLOCK_JOB_COMPLETED", data);
		}
	}
	transition(job, JOB_STATUS_CONCLUDED);
	if (job->auto_dismiss || !job->started || job->orphaned) {
		do_dismiss(job);
		return false;
	}
	return true;
}

/*
 * Take the worker's note, act on it, and let the worker go on. Returns
 * false if the job was freed.
 */
static bool handle_note(struct job *job)
{
	enum job_note note;
	_cleanup_free_ char *msg = NULL;
	int ret;

	pthread_mutex_lock(&job->lock);
	note = job->note;
	ret = job->note_ret;
	msg = TAKE_PTR(job->note_err);
	pthread_mutex_unlock(&job->lock);

	switch (note) {
	case NOTE_NONE:
		return true;
	case NOTE_PAUSED:
		transition(job, job->status == JOB_STATUS_READY ? JOB_STATUS_STANDBY
								: JOB_STATUS_PAUSED);
		break;
	case NOTE_RESUMED:
		transition(job, job->status == JOB_STATUS_STANDBY ? JOB_STATUS_READY
								  : JOB_STATUS_RUNNING);
		break;
	case NOTE_READY:
		transition(job, JOB_STATUS_READY);
		if (job->drv->block) {
			emit(job, "BLOCK_JOB_READY", block_event_data(job));
		}
		break;
	case NOTE_IO_ERROR:
		emit(job, "BLOCK_JOB_ERROR",
		     json_pack("{s:s, s:s, s:s}", "device", job->id, "operation",
			       job->note_read ? "read" : "write", "action",
			       job->note_action == JOB_ON_ERROR_STOP	 ? "stop"
			       : job->note_action == JOB_ON_ERROR_IGNORE ? "ignore"
									 : "report"));
		if (job->note_action == JOB_ON_ERROR_STOP) {
			job->io_failed = true;
			job->user_paused = true;
			pthread_mutex_lock(&job->lock);
			job->pause_count++;
			pthread_mutex_unlock(&job->lock);
		}
		break;
	case NOTE_DONE:
		handle_done(job, ret, msg);
		break;
	case NOTE_PREPARED:
		if (ret < 0) {
			update_rc(job, ret, msg);
			send_cmd(job, CMD_ABORT);
		} else {
			send_cmd(job, CMD_COMMIT);
		}
		break;
	case NOTE_FINALIZED:
		pthread_mutex_lock(&job->lock);
		job->note = NOTE_NONE;
		pthread_cond_broadcast(&job->cond);
		pthread_mutex_unlock(&job->lock);
		pthread_join(job->thread, NULL);
		job->thread_running = false;
		/* not job->status afterwards: a dismissed job is freed */
		return handle_finalized(job);
	}
	pthread_mutex_lock(&job->lock);
	job->note = NOTE_NONE;
	pthread_cond_broadcast(&job->cond);
	pthread_mutex_unlock(&job->lock);
	return true;
}

static void on_event(evutil_socket_t fd, short what, void *opaque)
{
	struct jobs *jobs = opaque;
	struct list_head *p, *t;
	uint64_t v;

	(void)fd;
	(void)what;
	if (read(jobs->efd, &v, sizeof(v)) < 0) {
		/* spurious wake-up */
	}
	list_for_each_safe (p, t, &jobs->list) {
		handle_note(list_entry(p, struct job, link));
	}
}

int jobs_new(struct event_base *base, job_emit_fn *emit_fn, void *opaque, struct jobs **ret,
	     struct error **errp)
{
	struct jobs *jobs = calloc(1, sizeof(*jobs));

	if (!jobs) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	jobs->base = base;
	jobs->emit = emit_fn;
	jobs->opaque = opaque;
	list_init(&jobs->list);
	jobs->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (jobs->efd < 0) {
		int r = error_set_errno(errp, errno, "eventfd");

		free(jobs);
		return r;
	}
	jobs->ev = event_new(base, jobs->efd, EV_READ | EV_PERSIST, on_event, jobs);
	if (!jobs->ev || event_add(jobs->ev, NULL) < 0) {
		if (jobs->ev) {
			event_free(jobs->ev);
		}
		close(jobs->efd);
		free(jobs);
		return error_set(errp, ENOMEM, "out of memory");
	}
	*ret = jobs;
	return 0;
}

/* Cancel @job and wait until it is gone (or concluded and then dropped). */
static void job_cancel_and_wait(struct job *job)
{
	struct error *err = NULL;
	bool started = job->started;

	if (job_verb_allowed(JOB_VERB_CANCEL, job->status)) {
		job_user_cancel(job, true, &err);
		error_free(err);
		if (!started) {
			return; /* never ran: freed by the cancel */
		}
	}
	for (;;) {
		bool exited, noted;

		pthread_mutex_lock(&job->lock);
		while (job->note == NOTE_NONE && !job->worker_exited && job->thread_running) {
			pthread_cond_wait(&job->cond, &job->lock);
		}
		exited = job->worker_exited || !job->thread_running;
		noted = job->note != NOTE_NONE;
		pthread_mutex_unlock(&job->lock);
		if (noted) {
			if (!handle_note(job)) {
				return; /* dismissed and freed */
			}
			continue;
		}
		if (exited) {
			break;
		}
	}
	/* Concluded, but kept for job-dismiss: nobody will ask any more. */
	if (job->status == JOB_STATUS_CONCLUDED || job->status == JOB_STATUS_CREATED) {
		do_dismiss(job);
	} else {
		log_error("job %s: left in state %s at teardown", job->id,
			  job_status_name(job->status));
		list_del(&job->link);
		job_free(job);
	}
}

void jobs_vm_gone(struct jobs *jobs, const char *vm)
{
	for (;;) {
		struct list_head *p;
		struct job *found = NULL;

		list_for_each (p, &jobs->list) {
			struct job *job = list_entry(p, struct job, link);

			if (!vm || strcmp(job->vm, vm) == 0) {
				found = job;
				break;
			}
		}
		if (!found) {
			return;
		}
		/* removes the job from the list */
		job_cancel_and_wait(found);
	}
}

void jobs_set_gone_hook(struct jobs *jobs, void (*gone)(void *opaque, const char *vm), void *opaque)
{
	jobs->gone = gone;
	jobs->gone_opaque = opaque;
}

unsigned jobs_cancel_vm(struct jobs *jobs, const char *vm)
{
	struct list_head *p, *t;

	list_for_each_safe (p, t, &jobs->list) {
		struct job *job = list_entry(p, struct job, link);

		if (strcmp(job->vm, vm) != 0) {
			continue;
		}
		job->orphaned = true;
		if (job->status == JOB_STATUS_CONCLUDED) {
			do_dismiss(job);
		} else if (job_verb_allowed(JOB_VERB_CANCEL, job->status)) {
			struct error *err = NULL;

			job_user_cancel(job, true, &err);
			error_free(err);
		}
	}
	return jobs_count(jobs, vm);
}

void jobs_free(struct jobs *jobs)
{
	if (!jobs) {
		return;
	}
	jobs_vm_gone(jobs, NULL);
	event_free(jobs->ev);
	close(jobs->efd);
	free(jobs);
}

struct job *jobs_find(struct jobs *jobs, const char *vm, const char *id)
{
	struct list_head *p;

	list_for_each (p, &jobs->list) {
		struct job *job = list_entry(p, struct job, link);

		if (!job->internal && strcmp(job->id, id) == 0 &&
		    (!vm || strcmp(job->vm, vm) == 0)) {
			return job;
		}
	}
	return NULL;
}

/* Any job with that id, internal ones too. */
static struct job *find_any(struct jobs *jobs, const char *vm, const char *id)
{
	struct list_head *p;

	list_for_each (p, &jobs->list) {
		struct job *job = list_entry(p, struct job, link);

		if (strcmp(job->id, id) == 0 && strcmp(job->vm, vm ? vm : "") == 0) {
			return job;
		}
	}
	return NULL;
}

struct job *jobs_find_if(struct jobs *jobs, const char *vm, bool (*match)(struct job *, void *),
			 void *arg)
{
	struct list_head *p;

	list_for_each (p, &jobs->list) {
		struct job *job = list_entry(p, struct job, link);

		if ((!vm || strcmp(job->vm, vm) == 0) && (!match || match(job, arg))) {
			return job;
		}
	}
	return NULL;
}

unsigned jobs_count(struct jobs *jobs, const char *vm)
{
	struct list_head *p;
	unsigned n = 0;

	list_for_each (p, &jobs->list) {
		struct job *job = list_entry(p, struct job, link);

		n += !vm || strcmp(job->vm, vm) == 0;
	}
	return n;
}

int jobs_check_id(struct jobs *jobs, const struct job_options *opt, struct error **errp)
{
	if (!opt->id) {
		return error_set(errp, EINVAL, "An explicit job ID is required");
	}
	if (!opt->internal && !parse_id_ok(opt->id, JOB_ID_MAX)) {
		return error_set(errp, EINVAL, "Invalid job ID '%s'", opt->id);
	}
	if (find_any(jobs, opt->vm, opt->id)) {
		return error_set(errp, EEXIST, "Job ID '%s' already in use", opt->id);
	}
	return 0;
}

int jobs_create(struct jobs *jobs, const struct job_driver *drv, const struct job_options *opt,
		void *opaque, struct job **ret, struct error **errp)
{
	int r = jobs_check_id(jobs, opt, errp);
	pthread_condattr_t ca;
	struct job *job;

	if (r < 0) {
		if (drv->free) {
			drv->free(opaque);
		}
		return r;
	}
	job = calloc(1, sizeof(*job));
	if (!job || !(job->id = strdup(opt->id)) || !(job->vm = strdup(opt->vm ? opt->vm : ""))) {
		if (job) {
			free(job->id);
			free(job);
		}
		if (drv->free) {
			drv->free(opaque);
		}
		return error_set(errp, ENOMEM, "out of memory");
	}
	job->jobs = jobs;
	job->drv = drv;
	job->opaque = opaque;
	job->auto_finalize = opt->auto_finalize;
	job->auto_dismiss = opt->auto_dismiss;
	job->internal = opt->internal;
	job->on_error = opt->on_error;
	job->on_target_error = opt->target_error_set ? opt->on_target_error : opt->on_error;
	job->vm_flag = opt->vm_flag;
	job->speed = opt->speed;
	job->status = JOB_STATUS_UNDEFINED;
	pthread_mutex_init(&job->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&job->cond, &ca);
	pthread_condattr_destroy(&ca);
	/* newest first, as QEMU lists them (query-jobs, query-block-jobs) */
	list_add(&job->link, &jobs->list);
	transition(job, JOB_STATUS_CREATED);
	*ret = job;
	return 0;
}

/* ---- the worker ---- */

/* Post @note and wait until the control thread has handled it. */
static void post_note(struct job *job, enum job_note note)
{
	uint64_t one = 1;

	pthread_mutex_lock(&job->lock);
	while (job->note != NOTE_NONE) {
		pthread_cond_wait(&job->cond, &job->lock);
	}
	job->note = note;
	if (write(job->jobs->efd, &one, sizeof(one)) < 0) {
		/* saturated: the control thread is awake anyway */
	}
	pthread_cond_broadcast(&job->cond); /* job_cancel_and_wait() waits here too */
	while (job->note == note) {
		pthread_cond_wait(&job->cond, &job->lock);
	}
	pthread_mutex_unlock(&job->lock);
}

static enum job_cmd wait_cmd(struct job *job)
{
	enum job_cmd cmd;

	pthread_mutex_lock(&job->lock);
	while (job->cmd == CMD_NONE) {
		pthread_cond_wait(&job->cond, &job->lock);
	}
	cmd = job->cmd;
	job->cmd = CMD_NONE;
	pthread_mutex_unlock(&job->lock);
	return cmd;
}

static void post_result(struct job *job, enum job_note note, int ret, struct error *err)
{
	pthread_mutex_lock(&job->lock);
	job->note_ret = ret;
	free(job->note_err);
	job->note_err = err ? strdup(err->msg) : NULL;
	pthread_mutex_unlock(&job->lock);
	error_free(err);
	post_note(job, note);
}

static void *worker_main(void *arg)
{
	struct job *job = arg;
	struct error *err = NULL;
	enum job_cmd cmd;
	char name[16];
	int ret;

	snprintf(name, sizeof(name), "job-%s", job->id);
	pthread_setname_np(pthread_self(), name);
	/* A job thread's own seccomp list on top of the control thread's (sandbox.h). */
	sandbox_enter(SANDBOX_JOB, job->vm_flag, NULL);
	/* Tests only (test-security-seccomp.py): a call job threads may not make. */
	if (getenv("VMMD_SECCOMP_SELFTEST") &&
	    strncmp(getenv("VMMD_SECCOMP_SELFTEST"), "job:", 4) == 0 &&
	    strcmp(getenv("VMMD_SECCOMP_SELFTEST") + 4, job->vm) == 0 && chdir("/") == 0) {
		log_error("seccomp self-test: chdir passed the job thread's filter");
	}

	ret = job->drv->run(job, &err);
	if (ret < 0 && !err && ret != -ECANCELED) {
		error_set_errno(&err, ret, "%s job failed", job->drv->type);
	}
	pthread_mutex_lock(&job->lock);
	job->deferred = true;
	pthread_mutex_unlock(&job->lock);
	post_result(job, NOTE_DONE, ret < 0 ? ret : 0, err);

	cmd = wait_cmd(job);
	if (cmd == CMD_FINALIZE) {
		err = NULL;
		ret = job->drv->prepare ? job->drv->prepare(job, &err) : 0;
		if (ret < 0 && !err) {
			error_set_errno(&err, ret, "%s job failed", job->drv->type);
		}
		post_result(job, NOTE_PREPARED, ret < 0 ? ret : 0, err);
		cmd = wait_cmd(job);
	}
	if (cmd == CMD_COMMIT) {
		if (job->drv->commit) {
			job->drv->commit(job);
		}
	} else if (job->drv->abort) {
		job->drv->abort(job);
	}
	post_note(job, NOTE_FINALIZED);
	pthread_mutex_lock(&job->lock);
	job->worker_exited = true;
	pthread_cond_broadcast(&job->cond);
	pthread_mutex_unlock(&job->lock);
	return NULL;
}

int job_start(struct job *job, struct error **errp)
{
	int r;

	job->started = true;
	transition(job, JOB_STATUS_RUNNING);
	r = pthread_create(&job->thread, NULL, worker_main, job);
	if (r != 0) {
		job->started = false;
		r = error_set_errno(errp, r, "cannot start a thread for job '%s'", job->id);
		transition(job, JOB_STATUS_ABORTING);
		transition(job, JOB_STATUS_CONCLUDED);
		do_dismiss(job);
		return r;
	}
	job->thread_running = true;
	return 0;
}

void job_discard(struct job *job)
{
	do_dismiss(job);
}

void job_abort_unstarted(struct job *job)
{
	transition(job, JOB_STATUS_ABORTING);
	transition(job, JOB_STATUS_CONCLUDED);
	do_dismiss(job);
}

bool job_pause_point(struct job *job)
{
	bool cancelled;

	pthread_mutex_lock(&job->lock);
	if (job->pause_count > 0 && !is_cancelled_locked(job)) {
		/*
		 * Quiescent from here on: say so before the note, or a client that
		 * sees the PAUSED status could still read busy=true.
		 */
		job->worker_paused = true;
		pthread_mutex_unlock(&job->lock);
		post_note(job, NOTE_PAUSED);
		pthread_mutex_lock(&job->lock);
		while (job->pause_count > 0 && !is_cancelled_locked(job)) {
			pthread_cond_wait(&job->cond, &job->lock);
		}
		job->worker_paused = false;
		pthread_mutex_unlock(&job->lock);
		post_note(job, NOTE_RESUMED);
		pthread_mutex_lock(&job->lock);
	}
	cancelled = is_cancelled_locked(job);
	pthread_mutex_unlock(&job->lock);
	return cancelled;
}

bool job_sleep_ns(struct job *job, uint64_t ns)
{
	uint64_t deadline = now_ns() + ns;
	struct timespec ts = {.tv_sec = deadline / 1000000000ull,
			      .tv_nsec = deadline % 1000000000ull};

	pthread_mutex_lock(&job->lock);
	job->kick = false;
	job->sleeping = true;
	while (!job->cancelled && !job->complete_requested && job->pause_count == 0 && !job->kick &&
	       now_ns() < deadline) {
		if (pthread_cond_timedwait(&job->cond, &job->lock, &ts) == ETIMEDOUT) {
			break;
		}
	}
	job->sleeping = false;
	pthread_mutex_unlock(&job->lock);
	return job_pause_point(job);
}

bool job_rate_limit(struct job *job, uint64_t bytes)
{
	uint64_t speed, now = now_ns(), quota, delay;

	pthread_mutex_lock(&job->lock);
	speed = job->speed;
	pthread_mutex_unlock(&job->lock);
	if (speed == 0) {
		job->slice_end = 0;
		return job_pause_point(job);
	}
	if (now >= job->slice_end) {
		job->slice_start = now;
		job->slice_end = now + JOB_SLICE_NS;
		job->slice_bytes = 0;
	}
	job->slice_bytes += bytes;
	quota = speed / (1000000000ull / JOB_SLICE_NS);
	if (quota == 0) {
		quota = 1;
	}
	if (job->slice_bytes <= quota) {
		return job_pause_point(job);
	}
	/* Over the quota: wait until the slices these bytes need have passed. */
	delay = (uint64_t)((double)job->slice_bytes / (double)quota * JOB_SLICE_NS);
	if (job->slice_start + delay > now) {
		delay = job->slice_start + delay - now;
		job->slice_start += (job->slice_bytes / quota) * JOB_SLICE_NS;
		job->slice_bytes %= quota;
		job->slice_end = job->slice_start + JOB_SLICE_NS;
		return job_sleep_ns(job, delay);
	}
	return job_pause_point(job);
}

void job_progress_set_total(struct job *job, uint64_t total)
{
	pthread_mutex_lock(&job->lock);
	job->total = total;
	pthread_mutex_unlock(&job->lock);
}

void job_progress_update(struct job *job, uint64_t done)
{
	pthread_mutex_lock(&job->lock);
	job->cur += done;
	pthread_mutex_unlock(&job->lock);
}

void job_progress_increase_remaining(struct job *job, uint64_t delta)
{
	pthread_mutex_lock(&job->lock);
	job->total += delta;
	pthread_mutex_unlock(&job->lock);
}

void job_progress_set_remaining(struct job *job, uint64_t remaining)
{
	pthread_mutex_lock(&job->lock);
	job->total = job->cur + remaining;
	pthread_mutex_unlock(&job->lock);
}

void job_transition_to_ready(struct job *job)
{
	/*
	 * Not busy from here, before anyone hears of it: QEMU's job coroutine
	 * yields before its monitor answers query-block-jobs; job_sleep_ns()
	 * says when the worker is busy again.
	 */
	pthread_mutex_lock(&job->lock);
	job->sleeping = true;
	pthread_mutex_unlock(&job->lock);
	post_note(job, NOTE_READY);
}

bool job_complete_requested(struct job *job)
{
	bool c;

	pthread_mutex_lock(&job->lock);
	c = job->complete_requested;
	pthread_mutex_unlock(&job->lock);
	return c;
}

enum job_on_error job_block_io_error(struct job *job, bool is_read, int err)
{
	enum job_on_error action = is_read ? job->on_error : job->on_target_error;

	(void)err;
	pthread_mutex_lock(&job->lock);
	job->note_read = is_read;
	job->note_action = action;
	pthread_mutex_unlock(&job->lock);
	post_note(job, NOTE_IO_ERROR);
	return action;
}

/* ---- the verbs (control thread) ---- */

static void wake(struct job *job)
{
	pthread_mutex_lock(&job->lock);
	job->kick = true;
	pthread_cond_broadcast(&job->cond);
	pthread_mutex_unlock(&job->lock);
}

int job_user_pause(struct job *job, struct error **errp)
{
	int r = apply_verb(job, JOB_VERB_PAUSE, errp);

	if (r < 0) {
		return r;
	}
	if (job->user_paused) {
		return error_set(errp, EBUSY, "Job is already paused");
	}
	job->user_paused = true;
	pthread_mutex_lock(&job->lock);
	job->pause_count++;
	pthread_cond_broadcast(&job->cond);
	pthread_mutex_unlock(&job->lock);
	return 0;
}

int job_user_resume(struct job *job, struct error **errp)
{
	int r;

	if (!job->user_paused) {
		return error_set(errp, EINVAL, "Can't resume a job that was not paused");
	}
	r = apply_verb(job, JOB_VERB_RESUME, errp);
	if (r < 0) {
		return r;
	}
	job->user_paused = false;
	job->io_failed = false;
	pthread_mutex_lock(&job->lock);
	if (job->pause_count > 0) {
		job->pause_count--;
	}
	pthread_cond_broadcast(&job->cond);
	pthread_mutex_unlock(&job->lock);
	return 0;
}

int job_user_cancel(struct job *job, bool force, struct error **errp)
{
	int r = apply_verb(job, JOB_VERB_CANCEL, errp);
	bool deferred;

	if (r < 0) {
		return r;
	}
	if (job->drv->cancel) {
		force = job->drv->cancel(job, force);
	} else {
		force = true;
	}
	pthread_mutex_lock(&job->lock);
	if (job->user_paused) {
		job->user_paused = false;
		if (job->pause_count > 0) {
			job->pause_count--;
		}
	}
	deferred = job->deferred;
	if (force || !deferred) {
		job->cancelled = true;
		job->force_cancel |= force;
	}
	pthread_cond_broadcast(&job->cond);
	pthread_mutex_unlock(&job->lock);

	if (!job->started) {
		/* never ran: straight to the end */
		update_rc(job, -ECANCELED, NULL);
		transition(job, JOB_STATUS_CONCLUDED);
		do_dismiss(job);
		return 0;
	}
	/*
	 * Done already and waiting to be finalized: a real cancel aborts it.
	 * (While a finalize is under way the job just completes.)
	 */
	if (deferred && job_is_cancelled(job) && !job->finalizing &&
	    (job->status == JOB_STATUS_PENDING || job->status == JOB_STATUS_WAITING)) {
		start_abort(job, -ECANCELED, NULL);
	}
	return 0;
}

int job_user_complete(struct job *job, struct error **errp)
{
	int r = apply_verb(job, JOB_VERB_COMPLETE, errp);

	if (r < 0) {
		return r;
	}
	if (job_cancel_requested(job) || !job->drv->can_complete) {
		return error_set(errp, EINVAL, "The active block job '%s' cannot be completed",
				 job->id);
	}
	pthread_mutex_lock(&job->lock);
	job->complete_requested = true;
	pthread_cond_broadcast(&job->cond);
	pthread_mutex_unlock(&job->lock);
	return 0;
}

int job_user_finalize(struct job *job, struct error **errp)
{
	int r = apply_verb(job, JOB_VERB_FINALIZE, errp);

	if (r < 0) {
		return r;
	}
	if (!job->finalizing) {
		do_finalize(job);
	}
	return 0;
}

int job_user_dismiss(struct job *job, struct error **errp)
{
	int r = apply_verb(job, JOB_VERB_DISMISS, errp);

	if (r < 0) {
		return r;
	}
	do_dismiss(job);
	return 0;
}

int job_set_speed(struct job *job, int64_t speed, struct error **errp)
{
	int r = apply_verb(job, JOB_VERB_SET_SPEED, errp);

	if (r < 0) {
		return r;
	}
	if (speed < 0) {
		return error_set(errp, EINVAL, "Parameter 'speed' expects a non-negative value");
	}
	pthread_mutex_lock(&job->lock);
	job->speed = (uint64_t)speed;
	pthread_mutex_unlock(&job->lock);
	wake(job);
	return 0;
}

/* ---- queries and getters ---- */

const char *job_id(struct job *job)
{
	return job->id;
}

const char *job_vm(struct job *job)
{
	return job->vm;
}

const struct job_driver *job_driver(struct job *job)
{
	return job->drv;
}

void *job_opaque(struct job *job)
{
	return job->opaque;
}

enum job_status job_get_status(struct job *job)
{
	return job->status;
}

bool job_user_paused(struct job *job)
{
	return job->user_paused;
}

const char *job_error(struct job *job)
{
	return job->err;
}

json_t *jobs_query(struct jobs *jobs, const char *vm)
{
	json_t *a = json_array();
	struct list_head *p;

	list_for_each (p, &jobs->list) {
		struct job *job = list_entry(p, struct job, link);
		uint64_t cur, total;
		json_t *o;

		if (job->internal || (vm && strcmp(job->vm, vm) != 0)) {
			continue;
		}
		pthread_mutex_lock(&job->lock);
		cur = job->cur;
		total = job->total;
		pthread_mutex_unlock(&job->lock);
		o = json_pack("{s:s, s:s, s:s, s:I, s:I}", "id", job->id, "type", job->drv->type,
			      "status", job_status_name(job->status), "current-progress",
			      (json_int_t)cur, "total-progress", (json_int_t)total);
		if (o && job->err) {
			json_object_set_new(o, "error", json_string(job->err));
		}
		json_array_append_new(a, o);
	}
	return a;
}

json_t *jobs_query_block(struct jobs *jobs, const char *vm)
{
	json_t *a = json_array();
	struct list_head *p;

	list_for_each (p, &jobs->list) {
		struct job *job = list_entry(p, struct job, link);
		uint64_t cur, total, speed;
		bool paused, busy;
		json_t *o;

		if (!job->drv->block || job->internal || (vm && strcmp(job->vm, vm) != 0)) {
			continue;
		}
		pthread_mutex_lock(&job->lock);
		cur = job->cur;
		total = job->total;
		speed = job->speed;
		paused = job->pause_count > 0;
		busy = !job->worker_paused && !job->deferred && !job->sleeping;
		pthread_mutex_unlock(&job->lock);
		o = json_pack("{s:s, s:s, s:I, s:I, s:b, s:b, s:I, s:s, s:b, s:s, s:b, s:b}",
			      "type", job->drv->type, "device", job->id, "len", (json_int_t)total,
			      "offset", (json_int_t)cur, "busy", busy, "paused", paused, "speed",
			      (json_int_t)speed, "io-status", job->io_failed ? "failed" : "ok",
			      "ready",
			      job->status == JOB_STATUS_READY || job->status == JOB_STATUS_STANDBY,
			      "status", job_status_name(job->status), "auto-finalize",
			      job->auto_finalize, "auto-dismiss", job->auto_dismiss);
		if (o && job->err) {
			json_object_set_new(o, "error", json_string(job->err));
		}
		json_array_append_new(a, o);
	}
	return a;
}
