/*
 * dump-guest-memory, query-dump and query-dump-guest-memory-capability as
 * QEMU 7.2's, for the ELF format, with paging or without (hw/core/vm-dump.c).
 *
 * A dump goes in two steps off the control thread: a worker opens the file
 * (through the image roots), then the VM stops as for a save (STOP, run
 * state save-vm) and a worker working for the VM writes the core while the
 * VM is held (a destroy waits). At the end: DUMP_COMPLETED, the VM runs
 * again if it ran (RESUME), and the answer (or at once with "detach").
 * Meanwhile stop, cont, migrate and another dump get QEMU's refusals.
 * Control thread only, but for the two worker functions.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/pathpol.h"
#include "daemon/migration.h"
#include "daemon/qmp.h"
#include "daemon/registry.h"

struct dump_job {
	struct registry *reg;
	char *name;
	uint64_t generation; /* the VM instance that was asked for */
	struct vm *vm;	     /* once stopped: held until dump_done */
	char *filename;	     /* file:PATH, or NULL for fd:NAME */
	int fd;
	bool paging, filter, detach;
	enum vm_run_state before; /* the VM's run state before it stopped */
	uint64_t begin, length, total;
	atomic_uint_fast64_t completed;
	int r;
	struct error *err;
	struct monitor_deferred *d; /* NULL once answered (detach) */
};

bool qmp_dump_active(struct registry_vm *rv)
{
	return rv->dump != NULL;
}

static json_t *result(const char *status, uint64_t total, uint64_t completed)
{
	return json_pack("{s:I, s:s, s:I}", "total", (json_int_t)total, "status", status,
			 "completed", (json_int_t)completed);
}

int qmp_query_dump(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct registry_vm *rv = req->vm;

	if (rv->dump) {
		*ret = result("active", rv->dump->total, atomic_load(&rv->dump->completed));
	} else {
		*ret = result(rv->dump_last.status ? rv->dump_last.status : "none",
			      rv->dump_last.total, rv->dump_last.completed);
	}
	return *ret ? 0 : error_set(errp, ENOMEM, "out of memory");
}

int qmp_query_dump_guest_memory_capability(struct monitor_request *req, json_t *args, json_t **ret,
					   struct error **errp)
{
	*ret = json_pack("{s:[s]}", "formats", "elf");
	return *ret ? 0 : error_set(errp, ENOMEM, "out of memory");
}

static void job_free(struct dump_job *j)
{
	if (j->fd >= 0) {
		close(j->fd);
	}
	error_free(j->err);
	free(j->name);
	free(j->filename);
	free(j);
}

/* Out of save-vm; running again (RESUME) if it ran. */
static void resume(struct dump_job *j)
{
	vm_set_migrate_state(j->vm, j->before == VM_STATE_RUNNING ? VM_STATE_PAUSED : j->before);
	vm_save_end(j->vm, true);
}

/* The end, on the control thread: the event, the VM runs again, the answer. */
static void dump_done(void *arg)
{
	struct dump_job *j = arg;
	struct registry_vm *rv = registry_find(j->reg, j->name);
	uint64_t completed = atomic_load(&j->completed);
	const char *status = j->r == 0 ? "completed" : "failed";
	json_t *data = json_pack("{s:o}", "result", result(status, j->total, completed));

	if (j->r < 0 && data) {
		json_object_set_new(data, "error", json_string(j->err->msg));
	}
	log_full(j->r == 0 ? LOG_INFO : LOG_ERR, j->name, NULL, "dump-guest-memory %s%s%s", status,
		 j->r < 0 ? ": " : "", j->r < 0 ? j->err->msg : "");
	registry_queue_event(j->reg, j->name, "DUMP_COMPLETED", data);
	/* (the VM is held until registry_disks_end: a destroy waits for it) */
	resume(j);
	if (rv) {
		rv->dump = NULL;
		rv->dump_last.status = status;
		rv->dump_last.total = j->total;
		rv->dump_last.completed = completed;
		registry_disks_end(rv);
	}
	if (j->d) {
		monitor_deferred_done(j->d, j->r, NULL, j->err);
		j->err = NULL;
	}
	job_free(j);
}

/* Worker, the VM stopped and held: the core into the file. */
static void dump_run(void *arg)
{
	struct dump_job *j = arg;

	j->r = vm_dump_elf(j->vm, j->fd, j->paging, j->filter, j->begin, j->length, &j->completed,
			   &j->err);
	if (close(j->fd) < 0 && j->r == 0) {
		j->r = error_set_errno(&j->err, errno, "dump: failed to save memory");
	}
	j->fd = -1;
}

/* A failure before the VM stopped: the answer (no event, as QEMU's). */
static void fail_early(struct registry_vm *rv, struct dump_job *j, int r)
{
	if (rv && rv->dump == j) {
		rv->dump = NULL;
	}
	monitor_deferred_done(j->d, r, NULL, j->err);
	j->err = NULL;
	job_free(j);
}

/* The file is open (control thread): stop the VM and write on its worker. */
static void opened(void *arg)
{
	struct dump_job *j = arg;
	struct registry_vm *rv = registry_find(j->reg, j->name);
	int r = j->r;

	if (r == 0 && (!rv || !rv->vm || registry_vm_generation(rv) != j->generation)) {
		r = error_set(&j->err, ENODEV, "VM '%s' stopped before its dump began", j->name);
	}
	if (r == 0) {
		j->vm = rv->vm;
		j->before = vm_get_state(j->vm);
		r = vm_save_begin(j->vm, &j->err);
	}
	if (r < 0) {
		fail_early(rv, j, r);
		return;
	}
	/* QEMU's vm_stop(RUN_STATE_SAVE_VM): a VM that was not running keeps its state */
	if (j->before == VM_STATE_RUNNING) {
		vm_set_migrate_state(j->vm, VM_STATE_SAVE_VM);
	}
	r = registry_vm_work_begin(rv, "dumping its memory (dump-guest-memory)", dump_run,
				   dump_done, j, &j->err);
	if (r < 0) {
		resume(j);
		fail_early(rv, j, r);
		return;
	}
	log_full(LOG_INFO, j->name, NULL, "dump-guest-memory: %" PRIu64 " bytes of memory",
		 j->total);
	if (j->detach) {
		monitor_deferred_done(j->d, 0, NULL, NULL);
		j->d = NULL;
	}
}

/* Worker: open file:PATH (0600) through the image roots. */
static void open_run(void *arg)
{
	struct dump_job *j = arg;
	int fd;

	if (!j->filename) {
		return;
	}
	fd = pathpol_open(j->filename, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd == -PATHPOL_DENIED) {
		j->r = pathpol_denied("dump file", j->filename, &j->err);
	} else if (fd < 0) {
		j->r = error_set_errno(&j->err, -fd, "Could not open '%s'", j->filename);
	} else {
		j->fd = fd;
	}
}

/* QEMU's checks of the arguments, in its order, before anything opens. */
static int check_args(json_t *args, bool *ret_filter, struct error **errp)
{
	bool paging = json_is_true(json_object_get(args, "paging"));
	json_t *begin = json_object_get(args, "begin"), *length = json_object_get(args, "length");
	const char *format = json_string_value(json_object_get(args, "format"));
	const char *protocol = json_string_value(json_object_get(args, "protocol"));

	if (begin && !length) {
		return error_set(errp, EINVAL, "Parameter 'length' is missing");
	}
	if (!begin && length) {
		return error_set(errp, EINVAL, "Parameter 'begin' is missing");
	}
	if (format && strncmp(format, "kdump-", 6) == 0 && (paging || begin)) {
		return error_set(errp, EINVAL,
				 "kdump-compressed format doesn't support paging or filter");
	}
	if (strncmp(protocol, "fd:", 3) != 0 && strncmp(protocol, "file:", 5) != 0) {
		return error_set(errp, EINVAL, "Invalid parameter 'protocol'");
	}
	if (format && strcmp(format, "elf") != 0) {
		/* (QEMU 7.2 writes kdump-zlib and win-dmp; vmmd does not yet) */
		return error_set(errp, ENOTSUP, "%s is not available now", format);
	}
	if (begin && json_integer_value(begin) < 0) {
		return error_set(errp, EINVAL, "Invalid parameter 'begin'");
	}
	if (length && json_integer_value(length) <= 0) {
		return error_set(errp, EINVAL, "Invalid parameter 'length'");
	}
	*ret_filter = begin != NULL;
	return 0;
}

int qmp_dump_guest_memory(struct monitor_request *req, json_t *args, json_t **ret,
			  struct error **errp)
{
	struct registry_vm *rv = req->vm;
	const char *protocol = json_string_value(json_object_get(args, "protocol"));
	struct dump_job *j;
	bool filter = false;
	int r;

	if (rv->dump) {
		return error_set(errp, EBUSY, "There is a dump in process, please wait.");
	}
	r = check_args(args, &filter, errp);
	if (r < 0) {
		return r;
	}
	if (!rv->vm) {
		return error_set_class(errp, ERROR_CLASS_DEVICE_NOT_ACTIVE, ENODEV,
				       "VM '%s' is not running; start it with vm-start", rv->name);
	}
	j = calloc(1, sizeof(*j));
	if (!j || !(j->name = strdup(rv->name))) {
		free(j);
		return error_set(errp, ENOMEM, "out of memory");
	}
	j->fd = -1;
	j->reg = req->ctx;
	j->generation = registry_vm_generation(rv);
	j->paging = json_is_true(json_object_get(args, "paging"));
	j->filter = filter;
	j->detach = json_is_true(json_object_get(args, "detach"));
	j->begin = (uint64_t)json_integer_value(json_object_get(args, "begin"));
	j->length = (uint64_t)json_integer_value(json_object_get(args, "length"));
	j->total = vm_dump_size(rv->vm, filter, j->begin, j->length);
	if (j->total == 0) {
		r = error_set(errp, EINVAL, "dump: no guest memory to dump");
	} else if (strncmp(protocol, "fd:", 3) == 0) {
		j->fd = monitor_take_fd(req->mon, protocol + 3);
		if (j->fd < 0) {
			r = error_set(errp, ENOENT, "File descriptor named '%s' has not been found",
				      protocol + 3);
		}
	} else if (!(j->filename = strdup(protocol + 5))) {
		r = error_set(errp, ENOMEM, "out of memory");
	}
	/* (a migration, a disk switch, pmemsave: refused before a file opens) */
	if (r == 0 && migration_active(rv)) {
		r = error_set(errp, EBUSY,
			      "disallowing migration blocker (migration/snapshot in progress) "
			      "for: Live migration disabled: dump-guest-memory in progress");
	}
	if (r == 0) {
		r = registry_disks_check(rv, errp);
	}
	if (r == 0 && (j->d = monitor_defer(req)) == NULL) {
		r = error_set(errp, ENOMEM, "out of memory");
	}
	if (r == 0) {
		r = registry_run(req->ctx, open_run, opened, j, errp);
		if (r < 0) {
			monitor_deferred_cancel(j->d);
		}
	}
	if (r < 0) {
		job_free(j);
		return r;
	}
	rv->dump = j;
	return MONITOR_DEFERRED;
}
