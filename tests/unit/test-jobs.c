/*
 * Unit tests for daemon/jobs.c: QEMU's tables, and the event sequences and
 * verb errors of jobs driven by fake drivers on worker threads, with the
 * control thread played by this test's libevent loop. The sequences are
 * the ones tests/jobs/golden/ recorded from QEMU 7.2.
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "daemon/jobs.h"

static struct event_base *base;
static struct jobs *jobs;
static char trace[8192];

static void record(void *opaque, const char *vm, const char *name, json_t *data)
{
	char item[256];

	(void)opaque;
	ck_assert_str_eq(vm, "vm1");
	if (strcmp(name, "JOB_STATUS_CHANGE") == 0) {
		snprintf(item, sizeof(item), "%s ",
			 json_string_value(json_object_get(data, "status")));
	} else if (json_object_get(data, "error")) {
		snprintf(item, sizeof(item), "%s(%s) ", name,
			 json_string_value(json_object_get(data, "error")));
	} else {
		snprintf(item, sizeof(item), "%s ", name);
	}
	strncat(trace, item, sizeof(trace) - strlen(trace) - 1);
	json_decref(data);
}

static void setup(void)
{
	struct error *err = NULL;

	trace[0] = '\0';
	base = event_base_new();
	ck_assert_ptr_nonnull(base);
	ck_assert_int_eq(jobs_new(base, record, NULL, &jobs, &err), 0);
}

static void teardown(void)
{
	jobs_free(jobs);
	event_base_free(base);
}

/* Run the loop until @trace ends with @suffix (10 s at most). */
static void run_until(const char *suffix)
{
	time_t end = time(NULL) + 10;

	while (time(NULL) < end) {
		size_t n = strlen(trace), m = strlen(suffix);

		if (n >= m && strcmp(trace + n - m, suffix) == 0) {
			return;
		}
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		usleep(1000);
	}
	ck_abort_msg("timed out waiting for '%s'; trace: %s", suffix, trace);
}

/* ---- fake drivers ---- */

struct fake {
	int ret;	 /* what run returns */
	int prepare_ret; /* what prepare returns */
	bool loop;	 /* run until cancelled (sleeping in small steps) */
	bool ready;	 /* go ready and wait for complete */
	uint64_t bytes;	 /* rate-limited bytes to "copy" */
	bool committed, aborted;
};

static int fake_run(struct job *job, struct error **errp)
{
	struct fake *f = job_opaque(job);

	job_progress_set_total(job, 100);
	if (f->bytes) {
		for (uint64_t done = 0; done < f->bytes; done += 65536) {
			if (job_rate_limit(job, 65536)) {
				return -ECANCELED;
			}
		}
	}
	while (f->loop) {
		if (job_sleep_ns(job, 5000000)) {
			return -ECANCELED;
		}
	}
	if (f->ready) {
		job_progress_update(job, 100);
		job_transition_to_ready(job);
		while (!job_complete_requested(job)) {
			if (job_sleep_ns(job, 5000000)) {
				return -ECANCELED;
			}
		}
	} else {
		job_progress_update(job, 100);
	}
	if (f->ret < 0) {
		return error_set(errp, -f->ret, "fake failure");
	}
	return 0;
}

static int fake_prepare(struct job *job, struct error **errp)
{
	struct fake *f = job_opaque(job);

	return f->prepare_ret < 0 ? error_set(errp, -f->prepare_ret, "prepare failed") : 0;
}

static void fake_commit(struct job *job)
{
	((struct fake *)job_opaque(job))->committed = true;
}

static void fake_abort(struct job *job)
{
	((struct fake *)job_opaque(job))->aborted = true;
}

static const struct job_driver fake_driver = {
	.type = "stream",
	.block = true,
	.run = fake_run,
	.prepare = fake_prepare,
	.commit = fake_commit,
	.abort = fake_abort,
	.can_complete = true,
};

static struct job *start(const char *id, struct fake *f, bool auto_finalize, bool auto_dismiss)
{
	struct job_options o = {.id = id,
				.vm = "vm1",
				.auto_finalize = auto_finalize,
				.auto_dismiss = auto_dismiss};
	struct error *err = NULL;
	struct job *job;

	ck_assert_int_eq(jobs_create(jobs, &fake_driver, &o, f, &job, &err), 0);
	ck_assert_int_eq(job_start(job, &err), 0);
	return job;
}

static const char *verb_error(int (*fn)(struct job *, struct error **), struct job *job)
{
	static char msg[256];
	struct error *err = NULL;

	if (fn(job, &err) == 0) {
		return "ok";
	}
	snprintf(msg, sizeof(msg), "%s", err->msg);
	error_free(err);
	return msg;
}

START_TEST(tables)
{
	/* spot checks of QEMU's JobSTT and verb table */
	ck_assert(job_transition_allowed(JOB_STATUS_UNDEFINED, JOB_STATUS_CREATED));
	ck_assert(job_transition_allowed(JOB_STATUS_READY, JOB_STATUS_STANDBY));
	ck_assert(job_transition_allowed(JOB_STATUS_PENDING, JOB_STATUS_ABORTING));
	ck_assert(!job_transition_allowed(JOB_STATUS_PAUSED, JOB_STATUS_ABORTING));
	ck_assert(!job_transition_allowed(JOB_STATUS_CONCLUDED, JOB_STATUS_RUNNING));
	ck_assert(!job_transition_allowed(JOB_STATUS_NULL, JOB_STATUS_CREATED));
	ck_assert(job_verb_allowed(JOB_VERB_COMPLETE, JOB_STATUS_READY));
	ck_assert(!job_verb_allowed(JOB_VERB_COMPLETE, JOB_STATUS_RUNNING));
	ck_assert(job_verb_allowed(JOB_VERB_FINALIZE, JOB_STATUS_PENDING));
	ck_assert(job_verb_allowed(JOB_VERB_DISMISS, JOB_STATUS_CONCLUDED));
	ck_assert(!job_verb_allowed(JOB_VERB_CANCEL, JOB_STATUS_CONCLUDED));
	ck_assert(job_verb_allowed(JOB_VERB_CANCEL, JOB_STATUS_PENDING));
	ck_assert_str_eq(job_status_name(JOB_STATUS_STANDBY), "standby");
	ck_assert_str_eq(job_verb_name(JOB_VERB_SET_SPEED), "set-speed");
}
END_TEST

START_TEST(auto_success)
{
	struct fake f = {0};

	start("s1", &f, true, true);
	run_until("null ");
	ck_assert_str_eq(trace, "created running waiting pending BLOCK_JOB_COMPLETED concluded "
				"null ");
	ck_assert(f.committed && !f.aborted);
	ck_assert_uint_eq(jobs_count(jobs, NULL), 0);
}
END_TEST

START_TEST(manual_finalize_dismiss)
{
	struct fake f = {0};
	struct job *job = start("s1", &f, false, false);
	struct error *err = NULL;

	run_until("BLOCK_JOB_PENDING ");
	ck_assert_str_eq(verb_error(job_user_complete, job),
			 "Job 's1' in state 'pending' cannot accept command verb 'complete'");
	ck_assert_str_eq(verb_error(job_user_dismiss, job),
			 "Job 's1' in state 'pending' cannot accept command verb 'dismiss'");
	ck_assert_str_eq(verb_error(job_user_pause, job),
			 "Job 's1' in state 'pending' cannot accept command verb 'pause'");
	ck_assert_int_eq(jobs_create(jobs, &fake_driver,
				     &(struct job_options){.id = "s1", .vm = "vm1"}, NULL, &job,
				     &err),
			 -EEXIST);
	ck_assert_str_eq(err->msg, "Job ID 's1' already in use");
	error_free(err);
	job = jobs_find(jobs, "vm1", "s1");
	ck_assert_str_eq(verb_error(job_user_finalize, job), "ok");
	run_until("concluded ");
	ck_assert_str_eq(verb_error(job_user_finalize, job),
			 "Job 's1' in state 'concluded' cannot accept command verb 'finalize'");
	ck_assert_str_eq(verb_error(job_user_dismiss, job), "ok");
	ck_assert_str_eq(trace, "created running waiting pending BLOCK_JOB_PENDING "
				"BLOCK_JOB_COMPLETED concluded null ");
	ck_assert_uint_eq(jobs_count(jobs, "vm1"), 0);
}
END_TEST

START_TEST(pause_resume_cancel)
{
	struct fake f = {.loop = true};
	struct job *job = start("s2", &f, true, true);

	ck_assert_str_eq(verb_error(job_user_resume, job),
			 "Can't resume a job that was not paused");
	ck_assert_str_eq(verb_error(job_user_pause, job), "ok");
	run_until("paused ");
	ck_assert_str_eq(verb_error(job_user_pause, job), "Job is already paused");
	ck_assert_str_eq(verb_error(job_user_complete, job),
			 "Job 's2' in state 'paused' cannot accept command verb 'complete'");
	ck_assert_str_eq(verb_error(job_user_resume, job), "ok");
	run_until("running ");
	ck_assert_str_eq(verb_error(job_user_pause, job), "ok");
	run_until("paused ");
	/* cancelling a paused job resumes it first, as QEMU does */
	ck_assert_int_eq(job_user_cancel(job, true, NULL), 0);
	run_until("null ");
	ck_assert_str_eq(trace, "created running paused running paused running aborting "
				"BLOCK_JOB_CANCELLED concluded null ");
	ck_assert(f.aborted && !f.committed);
}
END_TEST

START_TEST(ready_complete)
{
	struct fake f = {.ready = true};
	struct job *job = start("a1", &f, true, true);

	run_until("BLOCK_JOB_READY ");
	ck_assert_str_eq(verb_error(job_user_finalize, job),
			 "Job 'a1' in state 'ready' cannot accept command verb 'finalize'");
	ck_assert_str_eq(verb_error(job_user_pause, job), "ok");
	run_until("standby ");
	ck_assert_str_eq(verb_error(job_user_resume, job), "ok");
	run_until("ready ");
	ck_assert_str_eq(verb_error(job_user_complete, job), "ok");
	run_until("null ");
	ck_assert_str_eq(trace, "created running ready BLOCK_JOB_READY standby ready waiting "
				"pending BLOCK_JOB_COMPLETED concluded null ");
}
END_TEST

START_TEST(ready_cancel)
{
	struct fake f = {.ready = true};
	struct job *job = start("a2", &f, true, true);

	run_until("BLOCK_JOB_READY ");
	ck_assert_int_eq(job_user_cancel(job, true, NULL), 0);
	run_until("null ");
	ck_assert_str_eq(trace, "created running ready BLOCK_JOB_READY aborting "
				"BLOCK_JOB_CANCELLED concluded null ");
}
END_TEST

START_TEST(run_fails)
{
	struct fake f = {.ret = -EIO};

	start("e1", &f, true, true);
	run_until("null ");
	ck_assert_str_eq(trace, "created running aborting BLOCK_JOB_COMPLETED(fake failure) "
				"concluded null ");
	ck_assert(f.aborted && !f.committed);
}
END_TEST

START_TEST(prepare_fails)
{
	struct fake f = {.prepare_ret = -ENOSPC};
	struct job *job = start("e2", &f, true, false);

	run_until("concluded ");
	ck_assert_str_eq(trace, "created running waiting pending aborting "
				"BLOCK_JOB_COMPLETED(prepare failed) concluded ");
	ck_assert_str_eq(job_error(job), "prepare failed");
	ck_assert(f.aborted && !f.committed);
	ck_assert_int_eq(job_user_dismiss(job, NULL), 0);
}
END_TEST

START_TEST(cancel_pending)
{
	struct fake f = {0};
	struct job *job = start("p1", &f, false, true);

	run_until("BLOCK_JOB_PENDING ");
	ck_assert_int_eq(job_user_cancel(job, true, NULL), 0);
	run_until("null ");
	ck_assert_str_eq(trace, "created running waiting pending BLOCK_JOB_PENDING aborting "
				"BLOCK_JOB_CANCELLED concluded null ");
}
END_TEST

START_TEST(bad_ids)
{
	struct error *err = NULL;
	struct job *job;

	ck_assert_int_eq(jobs_create(jobs, &fake_driver,
				     &(struct job_options){.id = "9bad", .vm = "vm1"}, NULL, &job,
				     &err),
			 -EINVAL);
	ck_assert_str_eq(err->msg, "Invalid job ID '9bad'");
	error_free(err);
	err = NULL;
	ck_assert_int_eq(jobs_create(jobs, &fake_driver, &(struct job_options){.vm = "vm1"}, NULL,
				     &job, &err),
			 -EINVAL);
	error_free(err);
	ck_assert_str_eq(trace, "");
}
END_TEST

START_TEST(vm_gone_cancels)
{
	struct fake f = {.loop = true}, g = {.loop = true};

	start("l1", &f, true, true);
	start("l2", &g, false, false);
	run_until("created running created running ");
	jobs_vm_gone(jobs, "vm1");
	ck_assert_uint_eq(jobs_count(jobs, NULL), 0);
	ck_assert(f.aborted && g.aborted);
}
END_TEST

static unsigned gone_calls;

static void on_gone(void *opaque, const char *vm)
{
	(void)opaque;
	ck_assert_str_eq(vm, "vm1");
	gone_calls++;
}

START_TEST(cancel_vm_async)
{
	struct fake f = {.loop = true}, g = {.loop = true}, h = {0};
	time_t end = time(NULL) + 10;

	gone_calls = 0;
	jobs_set_gone_hook(jobs, on_gone, NULL);
	start("k1", &f, true, true);
	start("k2", &g, false, false);
	start("k3", &h, true, false);
	run_until("concluded ");
	/* k3 is concluded and kept: dismissed at once; k1, k2 are cancelled */
	ck_assert_uint_eq(jobs_cancel_vm(jobs, "vm1"), 2);
	ck_assert_uint_eq(gone_calls, 1);
	while (jobs_count(jobs, "vm1") > 0 && time(NULL) < end) {
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		usleep(1000);
	}
	ck_assert_uint_eq(jobs_count(jobs, "vm1"), 0);
	ck_assert_uint_eq(gone_calls, 3);
	ck_assert(f.aborted && g.aborted && h.committed);
}
END_TEST

START_TEST(rate_limit)
{
	struct fake f = {.bytes = 8 * 65536};
	struct timespec t0, t1;
	struct job *job;
	double secs;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	ck_assert_int_eq(jobs_create(jobs, &fake_driver,
				     &(struct job_options){.id = "r1",
							   .vm = "vm1",
							   .auto_finalize = true,
							   .auto_dismiss = true,
							   .speed = 2 * 1024 * 1024},
				     &f, &job, NULL),
			 0);
	ck_assert_int_eq(job_start(job, NULL), 0);
	run_until("null ");
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	/* 512 KiB at 2 MiB/s: at least 0.2 s (the first slice's quota is free) */
	ck_assert_msg(secs >= 0.15, "rate limit not applied: %.3f s", secs);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("jobs");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, tables);
	tcase_add_test(tc, auto_success);
	tcase_add_test(tc, manual_finalize_dismiss);
	tcase_add_test(tc, pause_resume_cancel);
	tcase_add_test(tc, ready_complete);
	tcase_add_test(tc, ready_cancel);
	tcase_add_test(tc, run_fails);
	tcase_add_test(tc, prepare_fails);
	tcase_add_test(tc, cancel_pending);
	tcase_add_test(tc, bad_ids);
	tcase_add_test(tc, vm_gone_cancels);
	tcase_add_test(tc, cancel_vm_async);
	tcase_add_test(tc, rate_limit);
	suite_add_tcase(s, tc);
	return s;
}

#include "tests/unit/check-main.h"
