/*
 * Job commands with QEMU's names, arguments and errors (qapi/job.json,
 * qapi/block-core.json): query-jobs, job-pause, job-resume, job-cancel,
 * job-complete, job-finalize, job-dismiss, and the block-job-* variants
 * that find a block job by its "device" (the job id). The job core is
 * daemon/jobs.c. req->ctx is the registry, req->vm the VM. Control thread
 * only; no handler waits for a job.
 */
#include "config.h"

#include <errno.h>

#include "daemon/jobs.h"
#include "daemon/qmp.h"
#include "daemon/registry.h"

static struct jobs *jobs_of(struct monitor_request *req)
{
	return registry_jobs(req->ctx);
}

static const char *vm_name_of(struct monitor_request *req)
{
	return ((struct registry_vm *)req->vm)->name;
}

/* QEMU's find_job(): any job of this VM. */
static struct job *find_job(struct monitor_request *req, json_t *args, struct error **errp)
{
	const char *id = json_string_value(json_object_get(args, "id"));
	struct job *job = jobs_find(jobs_of(req), vm_name_of(req), id);

	if (!job) {
		error_set(errp, ENOENT, "Job not found");
	}
	return job;
}

/* QEMU's find_block_job(): a block job by "device" (its id). */
static struct job *find_block_job(struct monitor_request *req, const char *key, json_t *args,
				  struct error **errp)
{
	const char *id = json_string_value(json_object_get(args, key));
	struct job *job = jobs_find(jobs_of(req), vm_name_of(req), id);

	if (!job || !job_driver(job)->block) {
		error_set_class(errp, ERROR_CLASS_DEVICE_NOT_ACTIVE, ENOENT,
				"Block job '%s' not found", id);
		return NULL;
	}
	return job;
}

int qmp_query_jobs(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	*ret = jobs_query(jobs_of(req), vm_name_of(req));
	return 0;
}

int qmp_query_block_jobs(struct monitor_request *req, json_t *args, json_t **ret,
			 struct error **errp)
{
	*ret = jobs_query_block(jobs_of(req), vm_name_of(req));
	return 0;
}

int qmp_job_pause(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct job *job = find_job(req, args, errp);

	return job ? job_user_pause(job, errp) : -ENOENT;
}

int qmp_job_resume(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct job *job = find_job(req, args, errp);

	return job ? job_user_resume(job, errp) : -ENOENT;
}

int qmp_job_cancel(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct job *job = find_job(req, args, errp);

	return job ? job_user_cancel(job, true, errp) : -ENOENT;
}

int qmp_job_complete(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct job *job = find_job(req, args, errp);

	return job ? job_user_complete(job, errp) : -ENOENT;
}

int qmp_job_finalize(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct job *job = find_job(req, args, errp);

	return job ? job_user_finalize(job, errp) : -ENOENT;
}

int qmp_job_dismiss(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct job *job = find_job(req, args, errp);

	return job ? job_user_dismiss(job, errp) : -ENOENT;
}

int qmp_block_job_set_speed(struct monitor_request *req, json_t *args, json_t **ret,
			    struct error **errp)
{
	struct job *job = find_block_job(req, "device", args, errp);

	if (!job) {
		return -ENOENT;
	}
	return job_set_speed(job, json_integer_value(json_object_get(args, "speed")), errp);
}

int qmp_block_job_cancel(struct monitor_request *req, json_t *args, json_t **ret,
			 struct error **errp)
{
	struct job *job = find_block_job(req, "device", args, errp);
	bool force = json_is_true(json_object_get(args, "force"));

	if (!job) {
		return -ENOENT;
	}
	if (job_user_paused(job) && !force) {
		return error_set(errp, EBUSY, "The block job for device '%s' is currently paused",
				 job_id(job));
	}
	return job_user_cancel(job, force, errp);
}

int qmp_block_job_pause(struct monitor_request *req, json_t *args, json_t **ret,
			struct error **errp)
{
	struct job *job = find_block_job(req, "device", args, errp);

	return job ? job_user_pause(job, errp) : -ENOENT;
}

int qmp_block_job_resume(struct monitor_request *req, json_t *args, json_t **ret,
			 struct error **errp)
{
	struct job *job = find_block_job(req, "device", args, errp);

	return job ? job_user_resume(job, errp) : -ENOENT;
}

int qmp_block_job_complete(struct monitor_request *req, json_t *args, json_t **ret,
			   struct error **errp)
{
	struct job *job = find_block_job(req, "device", args, errp);

	return job ? job_user_complete(job, errp) : -ENOENT;
}

int qmp_block_job_finalize(struct monitor_request *req, json_t *args, json_t **ret,
			   struct error **errp)
{
	struct job *job = find_block_job(req, "id", args, errp);

	return job ? job_user_finalize(job, errp) : -ENOENT;
}

int qmp_block_job_dismiss(struct monitor_request *req, json_t *args, json_t **ret,
			  struct error **errp)
{
	struct job *job = find_block_job(req, "id", args, errp);

	return job ? job_user_dismiss(job, errp) : -ENOENT;
}
