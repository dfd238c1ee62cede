/*
 * The job core (DESIGN.md §2.1): long work of a VM (block jobs, snapshot
 * save/load, later migration) runs as a job with QEMU's job state machine
 * and verbs (qapi/job.json, job.c), on a worker thread of its own, and
 * reports by events (JOB_STATUS_CHANGE, BLOCK_JOB_*).
 *
 * A job kind is a struct job_driver. Its life:
 *
 *   control thread            worker thread (one per job)
 *   jobs_create()  created
 *   job_start()    running -> driver->run(): the work; calls job_pause_point()
 *                             and job_rate_limit() often, job_progress_*(),
 *                             job_transition_to_ready() if it waits for
 *                             job-complete (then job_ready_wait() in a loop
 *                             until job_complete_requested())
 *                  waiting/pending (or aborting when run failed or was cancelled)
 *   auto-finalize or job-finalize:
 *                             driver->prepare() (may fail the job)
 *                             driver->commit() on success, driver->abort() else
 *                  concluded  driver->finished() (control thread)
 *   auto-dismiss or job-dismiss: null, the job is freed
 *
 * Every state change is made on the control thread (the worker posts a
 * note and waits until the control thread has taken it, so events come in
 * the order QEMU sends them). A VM's jobs are cancelled when the VM object
 * goes away, and the VM is destroyed once they have ended (jobs_cancel_vm()).
 *
 * Threads: jobs_*() and the verbs are control-thread only; the functions
 * marked "worker" are for the driver's run/prepare/commit/abort; the
 * progress and cancel getters may be called from any thread.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "common/error.h"

struct event_base;
struct jobs;
struct job;

/* QEMU's JobStatus, in its order. */
enum job_status {
	JOB_STATUS_UNDEFINED,
	JOB_STATUS_CREATED,
	JOB_STATUS_RUNNING,
	JOB_STATUS_PAUSED,
	JOB_STATUS_READY,
	JOB_STATUS_STANDBY,
	JOB_STATUS_WAITING,
	JOB_STATUS_PENDING,
	JOB_STATUS_ABORTING,
	JOB_STATUS_CONCLUDED,
	JOB_STATUS_NULL,
	JOB_STATUS__MAX,
};

/* QEMU's JobVerb. */
enum job_verb {
	JOB_VERB_CANCEL,
	JOB_VERB_PAUSE,
	JOB_VERB_RESUME,
	JOB_VERB_SET_SPEED,
	JOB_VERB_COMPLETE,
	JOB_VERB_FINALIZE,
	JOB_VERB_DISMISS,
	JOB_VERB_CHANGE,
	JOB_VERB__MAX,
};

const char *job_status_name(enum job_status s);
const char *job_verb_name(enum job_verb v);
/* QEMU's transition table (JobSTT) and verb table. */
bool job_transition_allowed(enum job_status from, enum job_status to);
bool job_verb_allowed(enum job_verb verb, enum job_status s);

/* QEMU's BlockdevOnError for block jobs' I/O errors. */
enum job_on_error {
	JOB_ON_ERROR_REPORT, /* fail the job (default) */
	JOB_ON_ERROR_IGNORE, /* go on */
	JOB_ON_ERROR_STOP,   /* pause the job; job-resume retries */
};
/* Parse "report", "ignore", "stop" (NULL = report); QEMU's message on others. */
/* QMP's BlockdevOnError value @s (NULL: report) of the parameter @param. */
int job_on_error_parse(const char *s, const char *param, enum job_on_error *ret,
		       struct error **errp);

struct job_driver {
	/* QEMU's JobType: "stream", "commit", "snapshot-save", ... */
	const char *type;
	/* A block job: BLOCK_JOB_* events and query-block-jobs. */
	bool block;
	/*
	 * Worker. The work itself. Returns 0 on success, -ECANCELED when it
	 * stopped because job_pause_point() (or job_rate_limit()) said the job
	 * is cancelled, or -errno with *errp set. Required.
	 */
	int (*run)(struct job *job, struct error **errp);
	/*
	 * Worker, when a successful job finalizes: the last step that may fail
	 * (QEMU's .prepare: graph changes of block jobs). NULL: nothing to do.
	 */
	int (*prepare)(struct job *job, struct error **errp);
	/* Control thread, just before prepare is asked for (the worker waits). NULL is fine. */
	void (*finalizing)(struct job *job);
	/* Worker: after a successful prepare (commit) or when the job fails or is cancelled. */
	void (*commit)(struct job *job);
	void (*abort)(struct job *job);
	/*
	 * Control thread, once, when the job concludes; @ret is 0, -ECANCELED
	 * or the error (the job's error string is job_error()). NULL is fine.
	 */
	void (*finished)(struct job *job, int ret);
	/*
	 * Control thread: a soft cancel (block-job-cancel without force) of a
	 * READY job. Return true to cancel for real, false to let the job
	 * complete without its final step (QEMU's mirror/active commit). NULL
	 * means every cancel is a real one.
	 */
	bool (*cancel)(struct job *job, bool force);
	/* The job accepts job-complete in READY. */
	bool can_complete;
	/* Control thread: release the driver's opaque (after the worker is joined). */
	void (*free)(void *opaque);
};

struct job_options {
	const char *id; /* required; QEMU's id rules: a letter, then [A-Za-z0-9._-] */
	const char *vm; /* the VM the job belongs to; events carry it */
	/*
	 * That VM's seccomp violation flag (registry_violation_flag): a
	 * forbidden call on the job's thread ends the VM. NULL: only logged.
	 * Must outlive the job (a VM is destroyed after its jobs).
	 */
	int *vm_flag;
	bool auto_finalize;
	bool auto_dismiss;
	uint64_t speed; /* bytes per second, 0 = unlimited (block jobs) */
	enum job_on_error on_error;
	/* a write error's policy, when set apart (mirror's on-target-error); else on_error's */
	bool target_error_set;
	enum job_on_error on_target_error;
	/*
	 * vmmd's own use of a job kind (HMP savevm runs snapshot-save's
	 * driver): any id (use one clients cannot give, "#..."), no events,
	 * not listed by query-jobs, not found by jobs_find() and the verbs.
	 */
	bool internal;
};

/*
 * @emit is called on the control thread for every event (name, data: a new
 * reference the callee takes, the VM).
 */
typedef void job_emit_fn(void *opaque, const char *vm, const char *name, json_t *data);
int jobs_new(struct event_base *base, job_emit_fn *emit, void *opaque, struct jobs **ret,
	     struct error **errp);
/* Cancel and join every job, then free. NULL is fine. */
void jobs_free(struct jobs *jobs);

/*
 * Create a job (status created, JOB_STATUS_CHANGE sent). @opaque belongs
 * to the job from here on (drv->free releases it, also on failure).
 * Errors as QEMU's: "Invalid job ID 'x'", "Job ID 'x' already in use".
 */
int jobs_create(struct jobs *jobs, const struct job_driver *drv, const struct job_options *opt,
		void *opaque, struct job **ret, struct error **errp);
/* Whether jobs_create() would take @opt's id (QEMU's errors if not). */
int jobs_check_id(struct jobs *jobs, const struct job_options *opt, struct error **errp);
/* created -> running: start the worker thread. On failure the job is gone. */
int job_start(struct job *job, struct error **errp);
/* created -> null: a job that will not start goes (QEMU's failed job creation). */
void job_discard(struct job *job);
/*
 * created -> aborting -> concluded -> null: a job created by a transaction
 * that failed afterwards (QEMU's transaction abort).
 */
void job_abort_unstarted(struct job *job);

/* Look up a job of @vm; NULL if none. */
struct job *jobs_find(struct jobs *jobs, const char *vm, const char *id);
/* Any job of @vm whose driver is @drv and opaque satisfies @match (NULL: any). */
struct job *jobs_find_if(struct jobs *jobs, const char *vm, bool (*match)(struct job *, void *),
			 void *arg);
/*
 * The VM object is going away. jobs_cancel_vm() cancels every job of @vm
 * without waiting (each is dismissed as soon as it concludes) and returns
 * how many are still alive; the gone hook (jobs_set_gone_hook) is called on
 * the control thread each time a job is freed, so the caller continues when
 * jobs_count() of the VM is 0. jobs_vm_gone() does the same and waits (the
 * daemon's exit only).
 */
unsigned jobs_cancel_vm(struct jobs *jobs, const char *vm);
void jobs_set_gone_hook(struct jobs *jobs, void (*gone)(void *opaque, const char *vm),
			void *opaque);
void jobs_vm_gone(struct jobs *jobs, const char *vm);
/* Number of jobs of @vm (all when NULL) not yet dismissed. */
unsigned jobs_count(struct jobs *jobs, const char *vm);

/* query-jobs (JobInfo) and query-block-jobs (BlockJobInfo) for @vm; new references. */
json_t *jobs_query(struct jobs *jobs, const char *vm);
json_t *jobs_query_block(struct jobs *jobs, const char *vm);

/* The verbs (control thread), with QEMU's errors. */
int job_user_pause(struct job *job, struct error **errp);
int job_user_resume(struct job *job, struct error **errp);
int job_user_cancel(struct job *job, bool force, struct error **errp);
int job_user_complete(struct job *job, struct error **errp);
int job_user_finalize(struct job *job, struct error **errp);
int job_user_dismiss(struct job *job, struct error **errp);
int job_set_speed(struct job *job, int64_t speed, struct error **errp);

/* Getters (any thread for the atomics). */
const char *job_id(struct job *job);
const char *job_vm(struct job *job);
const struct job_driver *job_driver(struct job *job);
void *job_opaque(struct job *job);
enum job_status job_get_status(struct job *job); /* control thread */
bool job_user_paused(struct job *job);		 /* control thread */
const char *job_error(struct job *job);		 /* after conclusion; NULL if none */

/*
 * Worker: where the job may pause or stop. Blocks while the job is paused
 * (the status goes to paused/standby and back). Returns true if the job is
 * cancelled: the run function should then return -ECANCELED.
 */
bool job_pause_point(struct job *job);
/* Any thread: a cancel was requested (a real one, not a soft cancel of a READY job). */
bool job_is_cancelled(struct job *job);
/* A soft cancel of a READY job: finish without the final step. */
bool job_cancel_requested(struct job *job);
/* Worker: sleep up to @ns, waking early for cancel, pause or complete. Returns cancelled. */
bool job_sleep_ns(struct job *job, uint64_t ns);
/*
 * Worker: account @bytes just done against the speed limit, sleeping as
 * needed (a pause point too). Returns cancelled.
 */
bool job_rate_limit(struct job *job, uint64_t bytes);
/* Worker: progress (current-progress / total-progress of query-jobs). */
void job_progress_set_total(struct job *job, uint64_t total);
void job_progress_update(struct job *job, uint64_t done);
void job_progress_increase_remaining(struct job *job, uint64_t delta);
/* QEMU's job_progress_set_remaining: total = what is done + @remaining. */
void job_progress_set_remaining(struct job *job, uint64_t remaining);
/*
 * Worker: running -> ready (BLOCK_JOB_READY); then wait for job-complete.
 * Not busy (query-block-jobs) until the next job_sleep_ns() returns.
 */
void job_transition_to_ready(struct job *job);
/* Worker: job-complete was given (the driver must then finish and return 0). */
bool job_complete_requested(struct job *job);
/*
 * Worker, block jobs: an I/O error of the job's work. Sends BLOCK_JOB_ERROR
 * with the action the job's on-error policy picks and returns it: REPORT
 * (fail the job with @err), IGNORE (go on), or STOP (the job was paused;
 * job_pause_point() then waits for job-resume and the work retries).
 */
enum job_on_error job_block_io_error(struct job *job, bool is_read, int err);
