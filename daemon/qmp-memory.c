/*
 * QEMU's memory-device and QOM commands: qom-get, qom-set (virtio-mem's
 * requested-size, the balloon's statistics), query-memory-devices and
 * query-memory-size-summary. The work is in hw/qom.c and the device
 * models; this file finds the live VM and keeps the persisted definition
 * in step with a new requested-size (a restart asks for the same size).
 * And pmemsave and memsave: guest-physical or a vCPU's virtual memory into
 * a file, on a worker thread while the VM is held. Control thread only.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/pathpol.h"
#include "daemon/qmp.h"
#include "daemon/registry.h"

static struct vm *live_vm(struct monitor_request *req, struct error **errp)
{
	struct registry_vm *rv = req->vm;

	if (!rv->vm) {
		error_set_class(errp, ERROR_CLASS_DEVICE_NOT_ACTIVE, ENODEV,
				"VM '%s' is not running; start it with vm-start", rv->name);
		return NULL;
	}
	return rv->vm;
}

int qmp_qom_get(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct vm *vm = live_vm(req, errp);

	if (!vm) {
		return -ENODEV;
	}
	*ret = vm_qom_get(vm, json_string_value(json_object_get(args, "path")),
			  json_string_value(json_object_get(args, "property")), errp);
	return *ret ? 0 : -ENOENT;
}

/* The id of a memory device of @rv's definition that @path names, or NULL. */
static const char *memdev_id(struct registry_vm *rv, const char *path)
{
	static const char prefix[] = "/machine/peripheral/";

	if (strncmp(path, prefix, strlen(prefix)) == 0) {
		path += strlen(prefix);
	}
	for (unsigned i = 0; i < rv->cfg->n_memdevs; i++) {
		if (strcmp(rv->cfg->memdevs[i].id, path) == 0) {
			return rv->cfg->memdevs[i].id;
		}
	}
	return NULL;
}

static void memdev_written(void *opaque)
{
	monitor_deferred_done(opaque, 0, NULL, NULL);
}

/* A memory device's new requested-size: answered once the definition has it. */
int qmp_qom_set(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct vm *vm = live_vm(req, errp);
	const char *path = json_string_value(json_object_get(args, "path"));
	const char *prop = json_string_value(json_object_get(args, "property"));
	json_t *value = json_object_get(args, "value");
	struct monitor_deferred *d;
	const char *id;
	int r;

	if (!vm) {
		return -ENODEV;
	}
	r = vm_qom_set(vm, path, prop, value, errp);
	if (r < 0 || strcmp(prop, "requested-size") != 0 || !(id = memdev_id(req->vm, path))) {
		return r;
	}
	d = monitor_defer(req);
	if (d && registry_memdev_resized(req->vm, id, (uint64_t)json_integer_value(value),
					 memdev_written, d)) {
		return MONITOR_DEFERRED;
	}
	monitor_deferred_cancel(d);
	return 0;
}

int qmp_query_memory_devices(struct monitor_request *req, json_t *args, json_t **ret,
			     struct error **errp)
{
	struct vm *vm = live_vm(req, errp);

	if (!vm) {
		return -ENODEV;
	}
	*ret = vm_query_memory_devices(vm);
	return *ret ? 0 : error_set(errp, ENOMEM, "out of memory");
}

int qmp_query_memory_size_summary(struct monitor_request *req, json_t *args, json_t **ret,
				  struct error **errp)
{
	struct vm *vm = live_vm(req, errp);

	if (!vm) {
		return -ENODEV;
	}
	*ret = vm_query_memory_size_summary(vm);
	return *ret ? 0 : error_set(errp, ENOMEM, "out of memory");
}

/*
 * pmemsave and memsave: the file opens and fills on a worker, the VM held
 * meanwhile. memsave first checks every page is mapped (no file on a bad
 * address).
 */
struct memsave_job {
	struct registry *reg;
	struct vm *vm; /* held: registry_vm_work_begin until memsave_done */
	char *name, *filename;
	int cpu; /* memsave's vCPU; -1: pmemsave (guest-physical) */
	uint64_t addr, size;
	int r;
	struct error *err;
	struct monitor_deferred *d;
};

static int save_range(struct memsave_job *j, int fd)
{
	if (j->cpu < 0) {
		return vm_pmemsave(j->vm, j->addr, j->size, fd, j->filename, &j->err);
	}
	return vm_memsave(j->vm, (unsigned)j->cpu, j->addr, j->size, fd, j->filename, &j->err);
}

static void memsave_run(void *arg)
{
	struct memsave_job *j = arg;
	int fd;

	if (j->cpu >= 0) {
		j->r = save_range(j, -1);
		if (j->r < 0) {
			return;
		}
	}
	fd = pathpol_open(j->filename, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd == -PATHPOL_DENIED) {
		j->r = pathpol_denied("memory file", j->filename, &j->err);
		return;
	}
	if (fd < 0) {
		j->r = error_set_errno(&j->err, fd, "Could not open '%s'", j->filename);
		return;
	}
	j->r = save_range(j, fd);
	if (close(fd) < 0 && j->r == 0) {
		j->r = error_set_errno(&j->err, errno, "writing memory to '%s'", j->filename);
	}
}

static void memsave_done(void *arg)
{
	struct memsave_job *j = arg;
	struct registry_vm *rv = registry_find(j->reg, j->name);

	if (rv) {
		registry_disks_end(rv);
	}
	monitor_deferred_done(j->d, j->r, NULL, j->err);
	free(j->name);
	free(j->filename);
	free(j);
}

static int memsave_start(struct monitor_request *req, json_t *args, int cpu, struct error **errp)
{
	struct registry_vm *rv = req->vm;
	struct vm *vm = live_vm(req, errp);
	struct memsave_job *j;
	int r;

	if (!vm) {
		return -ENODEV;
	}
	/* QEMU's val and size are unsigned: val -1 is the top of the address space */
	r = vm_pmemsave_check(vm, (uint64_t)json_integer_value(json_object_get(args, "size")),
			      errp);
	if (r < 0) {
		return r;
	}
	j = calloc(1, sizeof(*j));
	if (!j || !(j->name = strdup(rv->name)) ||
	    !(j->filename = strdup(json_string_value(json_object_get(args, "filename"))))) {
		if (j) {
			free(j->name);
		}
		free(j);
		return error_set(errp, ENOMEM, "out of memory");
	}
	j->reg = req->ctx;
	j->vm = vm;
	j->cpu = cpu;
	j->addr = (uint64_t)json_integer_value(json_object_get(args, "val"));
	j->size = (uint64_t)json_integer_value(json_object_get(args, "size"));
	j->d = monitor_defer(req);
	r = j->d ? registry_vm_work_begin(rv,
					  cpu < 0 ? "writing its memory to a file (pmemsave)"
						  : "writing its memory to a file (memsave)",
					  memsave_run, memsave_done, j, errp)
		 : error_set(errp, ENOMEM, "out of memory");
	if (r < 0) {
		if (j->d) {
			monitor_deferred_cancel(j->d);
		}
		free(j->name);
		free(j->filename);
		free(j);
		return r;
	}
	return MONITOR_DEFERRED;
}

int qmp_pmemsave(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	return memsave_start(req, args, -1, errp);
}

/* memsave: cpu-index, else the first vCPU (QEMU's monitor's CPU unless HMP's cpu moved it). */
int qmp_memsave(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	json_t *cpu = json_object_get(args, "cpu-index");
	json_int_t i = cpu ? json_integer_value(cpu) : 0;

	if (i < 0 || i > INT_MAX) {
		return error_set(errp, EINVAL, "Parameter 'cpu-index' expects a CPU number");
	}
	return memsave_start(req, args, (int)i, errp);
}
