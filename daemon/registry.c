/*
 * The VM registry: see registry.h.
 *
 * Threads: everything runs on the control thread except on_vm_event(),
 * which VM threads call; it only appends to the event queue (protected by
 * queue_lock, bounded) and writes the eventfd that wakes the control thread.
 * Queued events carry the VM's name and instance generation, never a
 * pointer, so an event that outlives its VM object is harmless.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/pathpol.h"
#include "common/thread.h"
#include "common/util.h"
#include "daemon/jobs.h"
#include "daemon/migration.h"
#include "daemon/nbd-server.h"
#include "vmmd/block.h"
#include "daemon/registry.h"
#include "daemon/sandbox.h"
#include "daemon/worker.h"

/* Events a VM may have queued before the control thread catches up. */
#define REGISTRY_MAX_QUEUED_EVENTS 4096

struct registry_instance {
	struct vm_host host;
	struct registry *reg;
	uint64_t gen;
	int violated; /* set by the SIGSYS handler: the forbidden syscall's number */
	/* getfd fds the definition names, taken on the control thread for vm_new. */
	unsigned n_fds;
	char **fd_names;
	int *fds;
	/* Tap fds a local migration handed over, by NIC id (migration worker). */
	unsigned n_nic_fds;
	char *nic_ids[REGISTRY_MAX_NIC_FDS];
	int nic_fds[REGISTRY_MAX_NIC_FDS];
	/* the VM's early nodes (borrowed: none comes or goes while it migrates) */
	struct registry_early_node *early;
	unsigned n_early;
	char name[];
};

struct registry_early_node {
	char *id;
	struct block_node *bs;
};

/* A start or a destroy running on a worker thread (worker.h). */
struct registry_op {
	struct registry *reg;
	struct registry_vm *rv;
	registry_done_fn done; /* NULL: nobody waits, or already answered */
	void *opaque;
	struct registry_instance *inst;
	struct vm *vm;
	int r;
	struct error *err;
	struct event *deadline;
	/* start: when asked, when a worker took it, when the VM was built (setup log) */
	uint64_t t_req, t_run, t_built;
	int sock_fd; /* start: the per-VM socket the worker made (hooks->vm_bind), or -1 */
	/* destroy */
	const char *reason;
	bool emit_shutdown;
	bool then_delete;
	struct nbd_server *nbd; /* stopped before the VM goes */
};

struct queued_event {
	struct list_head link;
	struct registry *reg; /* a held one: for events_resume */
	uint64_t gen;
	char *vm;
	char *name;
	json_t *data;
};

struct registry {
	struct event_base *base;
	char *state_dir, *vms_dir, *run_dir, *run_vms_dir;
	unsigned max_vms;
	mode_t socket_mode;
	gid_t socket_gid;
	uint64_t populate_rate;
	unsigned start_timeout; /* vmmd.conf start-timeout, seconds */
	const struct registry_hooks *hooks;
	struct workers *workers;
	int violation_efd; /* written by the SIGSYS handler of a VM thread */
	struct event *violation_ev;
	int vm_nice; /* the nice value VM threads run at (the control thread may be above) */
	bool shutting_down;
	struct list_head vms;
	unsigned n_vms;
	uint64_t next_gen;

	pthread_mutex_t queue_lock;
	struct list_head queue;
	unsigned queued;
	unsigned dropped;
	int efd;
	struct event *ev;
	/*
	 * DEVICE_DELETED events waiting for their VM's definition file, and
	 * the later events of those VMs, parked in order behind them (other
	 * VMs' events go on); at most REGISTRY_MAX_QUEUED_EVENTS parked.
	 */
	struct list_head held, parked;
	unsigned n_parked;

	struct jobs *jobs;
};

static struct ratelimit event_rl = RATELIMIT_INIT(5 * 1000000, 10);

bool registry_name_valid(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > 64) {
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		bool alnum =
			(c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');

		if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-'))) {
			return false;
		}
	}
	return true;
}

static int mkdir_p(const char *dir, mode_t mode, struct error **errp)
{
	char tmp[PATH_MAX];
	size_t n = strlen(dir);

	if (n == 0 || n >= sizeof(tmp)) {
		return error_set(errp, ENAMETOOLONG, "bad directory name '%s'", dir);
	}
	memcpy(tmp, dir, n + 1);
	for (char *p = tmp + 1; *p; p++) {
		if (*p == '/') {
			*p = '\0';
			if (mkdir(tmp, mode) < 0 && errno != EEXIST) {
				return error_set_errno(errp, errno, "cannot create %s", tmp);
			}
			*p = '/';
		}
	}
	if (mkdir(tmp, mode) < 0 && errno != EEXIST) {
		return error_set_errno(errp, errno, "cannot create %s", tmp);
	}
	return 0;
}

/* Runs on VM threads. */
static void queue_event(struct registry *reg, uint64_t gen, const char *vm, const char *name,
			json_t *data)
{
	struct queued_event *qe;
	uint64_t one = 1;
	bool ok = false;

	qe = calloc(1, sizeof(*qe));
	if (qe) {
		qe->gen = gen;
		qe->vm = strdup(vm);
		qe->name = strdup(name);
		qe->data = data;
		data = NULL;
	}
	pthread_mutex_lock(&reg->queue_lock);
	if (qe && qe->vm && qe->name && reg->queued < REGISTRY_MAX_QUEUED_EVENTS) {
		list_add_tail(&qe->link, &reg->queue);
		reg->queued++;
		ok = true;
	} else {
		reg->dropped++;
	}
	pthread_mutex_unlock(&reg->queue_lock);
	if (!ok && qe) {
		json_decref(qe->data);
		free(qe->vm);
		free(qe->name);
		free(qe);
	}
	json_decref(data);
	if (write(reg->efd, &one, sizeof(one)) < 0) {
		/* The counter is saturated: the control thread is awake anyway. */
	}
}

static int destroy_async(struct registry_vm *rv, const char *reason, bool emit_shutdown,
			 bool then_delete, registry_done_fn done, void *opaque,
			 struct error **errp);

/* Runs first on each VM thread: its seccomp filter (sandbox.h). */
static void on_thread_start(void *opaque, const char *kind)
{
	struct registry_instance *inst = opaque;
	bool vcpu = strcmp(kind, "vcpu") == 0;
	bool helper = strcmp(kind, "helper") == 0;
	bool uffd = strcmp(kind, "uffd") == 0;
	struct error *err = NULL;
	const char *test;

	if (sandbox_enter(vcpu	   ? SANDBOX_VCPU
			  : helper ? SANDBOX_IO_HELPER
			  : uffd   ? SANDBOX_UFFD
				   : SANDBOX_IO,
			  &inst->violated, &err) < 0) {
		log_full(LOG_ERR, inst->name, NULL, "%s", err->msg);
		error_free(err);
	}
	if (uffd) {
		return;
	}
	/*
	 * Tests only (test-security-seccomp.py): a forbidden call in this VM's
	 * vCPU thread (NAME), I/O thread (io:NAME) or a block-layer helper
	 * thread of its disks (helper:NAME).
	 */
	test = getenv("VMMD_SECCOMP_SELFTEST");
	if (helper) {
		if (test && strncmp(test, "helper:", 7) == 0 && strcmp(test + 7, inst->name) == 0 &&
		    mkdir("/vmmd-seccomp-selftest", 0700) == 0) {
			rmdir("/vmmd-seccomp-selftest"); /* the filter failed: the test says so */
		}
		return;
	}
	if (vcpu && test && strcmp(test, inst->name) == 0) {
		close(socket(AF_INET, SOCK_STREAM, 0));
	}
	if (!vcpu && test && strncmp(test, "io:", 3) == 0 && strcmp(test + 3, inst->name) == 0) {
		if (mkdir("/vmmd-seccomp-selftest", 0700) == 0) {
			rmdir("/vmmd-seccomp-selftest"); /* the filter failed: the test says so */
		}
	}
}

/*
 * If a thread of @rv's VM (its vCPUs, I/O thread, disk helpers, or a job,
 * migration or worker thread while it works for it) made a forbidden
 * system call: log it by name and end that VM. A save or restore in
 * progress finishes first (save_done, restore_done check again); a
 * migration is cancelled first (its end checks again, migration.c).
 */
static void check_violation(struct registry_vm *rv)
{
	int nr = rv->inst ? __atomic_load_n(&rv->inst->violated, __ATOMIC_ACQUIRE) : 0;
	char name[64];

	if (!nr || !rv->vm || rv->destroy_pending || rv->busy == REGISTRY_SAVING ||
	    rv->busy == REGISTRY_RESTORING) {
		return;
	}
	if (migration_active(rv)) {
		/* An incoming one, adopted already, is about to end: its end checks again. */
		if (migration_outgoing(rv)) {
			log_full(LOG_ERR, rv->name, NULL,
				 "seccomp: a thread of this VM made a forbidden system call; "
				 "cancelling its migration to stop it");
			migration_cancel(rv, NULL);
		}
		return;
	}
	log_full(LOG_ERR, rv->name, NULL,
		 "seccomp: a thread of this VM made the forbidden system call %d (%s); "
		 "stopping the VM",
		 nr, sandbox_syscall_name(nr, name, sizeof(name)));
	destroy_async(rv, "host-error", true, false, NULL, NULL, NULL);
}

/*
 * The SIGSYS handler's wake-up. A VM still being built is not in the list
 * yet (its I/O thread runs during vm_new): start_done checks it then.
 */
static void on_violation(evutil_socket_t fd, short what, void *opaque)
{
	struct registry *reg = opaque;
	struct list_head *p, *n;
	uint64_t v;

	if (read(fd, &v, sizeof(v)) < 0) {
		/* Nothing pending. */
	}
	list_for_each_safe (p, n, &reg->vms) {
		check_violation(list_entry(p, struct registry_vm, link));
	}
}

static void on_vm_event(void *opaque, struct vm *vm, const char *name, json_t *data)
{
	struct registry_instance *inst = opaque;

	queue_event(inst->reg, inst->gen, inst->name, name, data);
}

void registry_queue_event(struct registry *reg, const char *vm, const char *name, json_t *data)
{
	queue_event(reg, 0, vm, name, data);
}

struct event_base *registry_base(struct registry *reg)
{
	return reg->base;
}

/* Runs on VM threads: an empty name asks the control thread for vm_hotplug_poll(). */
static void on_vm_hotplug(void *opaque, struct vm *vm)
{
	on_vm_event(opaque, vm, "", NULL);
}

/* vm_host.offload: blocking VM work (a hot-unplugged disk's drain) on a worker. */
struct offload_job {
	struct registry *reg;
	char name[72]; /* VM names have at most 64 characters */
	uint64_t gen;
	void (*work)(void *arg);
	void (*done)(void *arg);
	void *arg;
};

static void offload_work(void *p)
{
	struct offload_job *j = p;

	j->work(j->arg);
}

static void offload_done(void *p)
{
	struct offload_job *j = p;
	struct registry_vm *rv = registry_find(j->reg, j->name);

	if (rv && rv->vm && rv->inst && rv->inst->gen == j->gen) {
		j->done(j->arg);
	} else {
		free(j->arg); /* the VM is gone: its teardown waited for the work */
	}
	free(j);
}

static int on_offload(void *opaque, void (*work)(void *arg), void (*done)(void *arg), void *arg)
{
	struct registry_instance *inst = opaque;
	struct offload_job *j = calloc(1, sizeof(*j));
	int r;

	if (!j) {
		return -ENOMEM;
	}
	j->reg = inst->reg;
	snprintf(j->name, sizeof(j->name), "%s", inst->name);
	j->gen = inst->gen;
	j->work = work;
	j->done = done;
	j->arg = arg;
	r = worker_run_for(inst->reg->workers, &inst->violated, offload_work, offload_done, j,
			   NULL);
	if (r < 0) {
		free(j);
	}
	return r;
}

/* Runs on the worker building the VM: the fds were taken before it started. */
static int on_get_fd(void *opaque, const char *name)
{
	struct registry_instance *inst = opaque;

	for (unsigned i = 0; i < inst->n_fds; i++) {
		if (inst->fd_names[i] && strcmp(inst->fd_names[i], name) == 0) {
			int fd = fcntl(inst->fds[i], F_DUPFD_CLOEXEC, 3);

			return fd < 0 ? -errno : fd;
		}
	}
	return -ENOENT;
}

static int on_nic_fd(void *opaque, const char *nic_id)
{
	struct registry_instance *inst = opaque;

	for (unsigned i = 0; i < inst->n_nic_fds; i++) {
		if (strcmp(inst->nic_ids[i], nic_id) == 0) {
			int fd = fcntl(inst->nic_fds[i], F_DUPFD_CLOEXEC, 3);

			return fd < 0 ? -errno : fd;
		}
	}
	return -ENOENT;
}

int registry_instance_add_nic_fd(struct registry_instance *inst, const char *nic_id, int fd,
				 struct error **errp)
{
	char *id;

	for (unsigned i = 0; i < inst->n_nic_fds; i++) {
		if (strcmp(inst->nic_ids[i], nic_id) == 0) {
			close(fd);
			return error_set(errp, EPROTO, "nic %s: a second tap fd", nic_id);
		}
	}
	id = inst->n_nic_fds < REGISTRY_MAX_NIC_FDS ? strdup(nic_id) : NULL;
	if (!id) {
		close(fd);
		return error_set(errp, inst->n_nic_fds < REGISTRY_MAX_NIC_FDS ? ENOMEM : EPROTO,
				 "nic %s: cannot keep its tap fd (%u already)", nic_id,
				 inst->n_nic_fds);
	}
	inst->nic_ids[inst->n_nic_fds] = id;
	inst->nic_fds[inst->n_nic_fds++] = fd;
	return 0;
}

void registry_instance_drop_nic_fds(struct registry_instance *inst)
{
	for (unsigned i = 0; i < inst->n_nic_fds; i++) {
		close(inst->nic_fds[i]);
		free(inst->nic_ids[i]);
	}
	inst->n_nic_fds = 0;
}

static void instance_drop_fds(struct registry_instance *inst)
{
	registry_instance_drop_nic_fds(inst);
	for (unsigned i = 0; i < inst->n_fds; i++) {
		if (inst->fds[i] >= 0) {
			close(inst->fds[i]);
		}
		free(inst->fd_names[i]);
	}
	free(inst->fds);
	free(inst->fd_names);
	inst->fds = NULL;
	inst->fd_names = NULL;
	inst->n_fds = 0;
}

static void instance_free(struct registry_instance *inst)
{
	if (inst) {
		instance_drop_fds(inst);
		free(inst);
	}
}

/*
 * Give the memory of a torn-down VM back to the kernel. Building a VM
 * allocates a few hundred KiB on the control thread's heap; freed, it stays
 * in glibc's main arena behind longer-lived allocations, and over many
 * lifecycles (16 clients x 250 create/start/destroy/delete) RSS rose ~3.5 MiB
 * and stayed there although nothing leaked (malloc_trim() returned it all).
 * malloc_trim(0) also releases free pages inside the heap; it costs well
 * under a millisecond for a heap of this size.
 *
 * Not in an ASan build: there every allocation is ASan's, glibc's arenas
 * are set up only by the first malloc_trim(), and glibc (2.36) marks them
 * set up before it fills them in, so two workers tearing VMs down at once
 * had the second walk empty bins: a SEGV in mtrim() (the sanitizer suite's
 * daemon deaths during VM create/destroy bursts). Nothing to trim there.
 */
static void release_memory(void)
{
#ifndef __SANITIZE_ADDRESS__
	malloc_trim(0);
#endif
}

static void changed(struct registry *reg)
{
	if (reg->hooks->changed) {
		reg->hooks->changed(reg->hooks->opaque);
	}
}

static void emit(struct registry *reg, const char *vm, const char *name, json_t *data)
{
	reg->hooks->event(reg->hooks->opaque, vm, name, data);
}

struct done_later {
	registry_done_fn done;
	void *opaque;
	struct registry_vm *rv;
};

static void done_later_cb(evutil_socket_t fd, short what, void *arg)
{
	struct done_later *d = arg;

	d->done(d->opaque, d->rv, 0, NULL);
	free(d);
}

/* Report success through @done from the control loop, as a worker's end would. */
static int done_later(struct registry *reg, struct registry_vm *rv, registry_done_fn done,
		      void *opaque, struct error **errp)
{
	struct timeval now = {0, 0};
	struct done_later *d;

	if (!done) {
		return 0;
	}
	d = calloc(1, sizeof(*d));
	if (!d) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	*d = (struct done_later){done, opaque, rv};
	if (event_base_once(reg->base, -1, EV_TIMEOUT, done_later_cb, d, &now) < 0) {
		free(d);
		return error_set(errp, ENOMEM, "out of memory");
	}
	return 0;
}

static int destroy_async(struct registry_vm *rv, const char *reason, bool emit_shutdown,
			 bool then_delete, registry_done_fn done, void *opaque,
			 struct error **errp);

static void emit_job_event(void *opaque, const char *vm, const char *name, json_t *data)
{
	struct registry *reg = opaque;

	emit(reg, vm && vm[0] ? vm : NULL, name, data);
}

static void job_gone(void *opaque, const char *vm);

struct jobs *registry_jobs(struct registry *reg)
{
	return reg->jobs;
}

static void free_event(struct queued_event *qe)
{
	json_decref(qe->data);
	free(qe->vm);
	free(qe->name);
	free(qe);
}

static void drain_events(evutil_socket_t fd, short what, void *opaque);

static bool vm_held(struct registry *reg, const char *vm)
{
	struct list_head *p;

	list_for_each (p, &reg->held) {
		if (strcmp(list_entry(p, struct queued_event, link)->vm, vm) == 0) {
			return true;
		}
	}
	return false;
}

/*
 * A held DEVICE_DELETED's definition file is written: it goes out, then its
 * VM's parked events go back to the head of the queue, in order (they came
 * before anything of that VM still queued), and the queue drains.
 */
static void events_resume(void *opaque)
{
	struct queued_event *qe = opaque;
	struct registry *reg = qe->reg;
	struct list_head mine, *p, *t;

	list_del(&qe->link);
	emit(reg, qe->vm, qe->name, TAKE_PTR(qe->data));
	changed(reg);
	list_init(&mine);
	if (!vm_held(reg, qe->vm)) {
		list_for_each_safe (p, t, &reg->parked) {
			if (strcmp(list_entry(p, struct queued_event, link)->vm, qe->vm) == 0) {
				list_del(p);
				list_add_tail(p, &mine);
				reg->n_parked--;
			}
		}
	}
	free_event(qe);
	pthread_mutex_lock(&reg->queue_lock);
	while (!list_empty(&mine)) {
		p = mine.prev;
		list_del(p);
		list_add(p, &reg->queue);
		reg->queued++;
	}
	pthread_mutex_unlock(&reg->queue_lock);
	drain_events(-1, 0, reg);
}

static void drain_events(evutil_socket_t fd, short what, void *opaque)
{
	struct registry *reg = opaque;
	struct list_head batch;
	unsigned dropped;
	uint64_t v;

	if (read(reg->efd, &v, sizeof(v)) < 0) {
		/* Nothing pending. */
	}
	list_init(&batch);
	pthread_mutex_lock(&reg->queue_lock);
	while (!list_empty(&reg->queue)) {
		struct list_head *p = reg->queue.next;

		list_del(p);
		list_add_tail(p, &batch);
	}
	reg->queued = 0;
	dropped = reg->dropped;
	reg->dropped = 0;
	pthread_mutex_unlock(&reg->queue_lock);
	if (dropped) {
		log_ratelimited(&event_rl, LOG_WARNING, NULL, NULL,
				"%u VM events dropped: more than %u queued", dropped,
				REGISTRY_MAX_QUEUED_EVENTS);
	}
	while (!list_empty(&batch)) {
		struct queued_event *qe = list_first_entry(&batch, struct queued_event, link);
		struct registry_vm *rv = registry_find(reg, qe->vm);
		bool live = rv && rv->inst && rv->inst->gen == qe->gen;

		list_del(&qe->link);
		if (vm_held(reg, qe->vm)) {
			/* behind its VM's held DEVICE_DELETED (events_resume) */
			if (reg->n_parked < REGISTRY_MAX_QUEUED_EVENTS) {
				list_add_tail(&qe->link, &reg->parked);
				reg->n_parked++;
				continue;
			}
			log_ratelimited(&event_rl, LOG_WARNING, qe->vm, NULL,
					"event %s dropped: more than %u wait for definition files",
					qe->name, REGISTRY_MAX_QUEUED_EVENTS);
		} else if (qe->name[0] == '\0') {
			if (live) {
				vm_hotplug_poll(rv->vm);
			}
		} else if (strcmp(qe->name, "SHUTDOWN") == 0) {
			/* The guest is off: like a QEMU process exiting, the VM object goes. */
			if (live) {
				log_info("VM %s shut down", qe->vm);
				/* A migration of a guest that powered off ends (cancel, join). */
				migration_free(rv);
				emit(reg, qe->vm, qe->name, TAKE_PTR(qe->data));
				destroy_async(rv, "guest-shutdown", false, false, NULL, NULL, NULL);
			}
		} else {
			const char *dev = json_string_value(json_object_get(qe->data, "device"));

			qe->reg = reg;
			if (live && dev && strcmp(qe->name, "DEVICE_DELETED") == 0 &&
			    registry_device_removed(rv, dev, events_resume, qe)) {
				/*
				 * A client that sees the event finds the definition without
				 * the device: the event (and its VM's after it) wait for the
				 * file; other VMs' events go on.
				 */
				list_add_tail(&qe->link, &reg->held);
				continue;
			}
			emit(reg, qe->vm, qe->name, TAKE_PTR(qe->data));
			if (live) {
				changed(reg);
			}
		}
		free_event(qe);
	}
}

void registry_flush_events(void *reg)
{
	drain_events(-1, 0, reg);
}

static char *path_join(const char *a, const char *b)
{
	char *p = NULL;

	if (asprintf(&p, "%s/%s", a, b) < 0) {
		return NULL;
	}
	return p;
}

int registry_set_limits(struct registry *reg, const struct registry_limits *limits,
			struct error **errp)
{
	/* The roots are the process-wide path policy (common/pathpol.c). */
	int r = pathpol_set_roots(limits->image_roots, errp);

	if (r < 0) {
		return r;
	}
	reg->max_vms = limits->max_vms;
	reg->socket_mode = limits->socket_mode;
	reg->socket_gid = limits->socket_gid;
	reg->populate_rate = limits->populate_rate;
	reg->start_timeout = limits->start_timeout ? limits->start_timeout : 60; /* default */
	if (reg->workers) {
		workers_set_job_nice(reg->workers, limits->job_nice);
	}
	return 0;
}

int registry_new(struct event_base *base, const char *state_dir, const char *run_dir,
		 const struct registry_limits *limits, const struct registry_hooks *hooks,
		 struct registry **ret, struct error **errp)
{
	pthread_mutexattr_t pi;
	struct registry *reg;
	int r;

	reg = calloc(1, sizeof(*reg));
	if (!reg) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	reg->base = base;
	reg->hooks = hooks;
	reg->efd = -1;
	reg->violation_efd = -1;
	list_init(&reg->vms);
	list_init(&reg->queue);
	list_init(&reg->held);
	list_init(&reg->parked);
	/* Priority inheritance: a VM thread holding it while it waits for a
	 * time slice must not hold up the (real-time) control thread. */
	pthread_mutexattr_init(&pi);
	pthread_mutexattr_setprotocol(&pi, PTHREAD_PRIO_INHERIT);
	pthread_mutex_init(&reg->queue_lock, &pi);
	pthread_mutexattr_destroy(&pi);
	reg->state_dir = strdup(state_dir);
	reg->run_dir = strdup(run_dir);
	reg->vms_dir = path_join(state_dir, "vms");
	reg->run_vms_dir = path_join(run_dir, "vms");
	if (!reg->state_dir || !reg->run_dir || !reg->vms_dir || !reg->run_vms_dir) {
		r = error_set(errp, ENOMEM, "out of memory");
		goto err_free;
	}
	r = mkdir_p(reg->vms_dir, 0700, errp);
	if (r == 0) {
		r = mkdir_p(reg->run_vms_dir, 0700, errp);
	}
	if (r == 0) {
		/*
		 * VM names are nobody else's business: the socket group may reach
		 * the sockets inside (search) but no one else may list them.
		 */
		bool grp = limits->socket_gid != (gid_t)-1;

		if (chmod(reg->run_vms_dir, grp ? 0710 : 0700) < 0 ||
		    (grp && chown(reg->run_vms_dir, (uid_t)-1, limits->socket_gid) < 0)) {
			r = error_set_errno(errp, errno, "cannot set the mode of %s",
					    reg->run_vms_dir);
		}
	}
	if (r == 0) {
		r = registry_set_limits(reg, limits, errp);
	}
	if (r < 0) {
		goto err_free;
	}
	reg->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (reg->efd < 0) {
		r = error_set_errno(errp, errno, "eventfd");
		goto err_free;
	}
	reg->ev = event_new(base, reg->efd, EV_READ | EV_PERSIST, drain_events, reg);
	if (!reg->ev || event_add(reg->ev, NULL) < 0) {
		r = error_set(errp, ENOMEM, "out of memory");
		goto err_free;
	}
	errno = 0;
	reg->vm_nice = getpriority(PRIO_PROCESS, 0);
	if (errno) {
		reg->vm_nice = 0;
	}
	/*
	 * This is the control thread (main.c raises it later): VM threads it
	 * creates (vm_start's, hot-plugged vCPUs, block helpers of device_add)
	 * start at the VMs' priority, not at its own.
	 */
	thread_set_child_nice(reg->vm_nice);
	reg->violation_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	reg->violation_ev = reg->violation_efd < 0
				    ? NULL
				    : event_new(base, reg->violation_efd, EV_READ | EV_PERSIST,
						on_violation, reg);
	if (!reg->violation_ev || event_add(reg->violation_ev, NULL) < 0) {
		r = error_set(errp, ENOMEM, "cannot watch for seccomp violations");
		goto err_free;
	}
	if (sandbox_enabled()) {
		r = sandbox_init(reg->violation_efd, errp);
		if (r < 0) {
			goto err_free;
		}
	}
	r = workers_new(base, &reg->workers, errp);
	if (r < 0) {
		goto err_free;
	}
	workers_set_job_nice(reg->workers, limits->job_nice);
	r = jobs_new(base, emit_job_event, reg, &reg->jobs, errp);
	if (r < 0) {
		goto err_free;
	}
	jobs_set_gone_hook(reg->jobs, job_gone, reg);
	*ret = reg;
	return 0;

err_free:
	registry_free(reg);
	return r;
}

static void writer_unref(struct def_writer *w);

/* ---- an incoming VM's disks opened early, and its NBD server ---- */

struct release_op {
	struct nbd_server *nbd;
	struct registry_early_node *early;
	unsigned n_early;
};

static void release_fn(void *arg)
{
	struct release_op *op = arg;

	nbd_server_free(op->nbd);
	for (unsigned i = 0; i < op->n_early; i++) {
		block_unref(op->early[i].bs);
		free(op->early[i].id);
	}
	free(op->early);
}

static void release_done(void *arg)
{
	free(arg);
}

/* Stop @s and drop @rv's early nodes: on a worker, or here with @now. */
static void release(struct registry_vm *rv, struct nbd_server *s, bool now)
{
	struct release_op op = {.nbd = s, .early = TAKE_PTR(rv->early), .n_early = rv->n_early};
	struct release_op *p;
	struct error *err = NULL;

	rv->n_early = 0;
	if (!op.nbd && !op.n_early) {
		return;
	}
	p = now ? NULL : malloc(sizeof(*p));
	if (p) {
		*p = op;
		if (registry_run(rv->reg, release_fn, release_done, p, &err) == 0) {
			return;
		}
		log_full(LOG_WARNING, rv->name, NULL, "closing its exported disks here: %s",
			 err->msg);
		error_free(err);
		free(p);
	}
	release_fn(&op);
}

void registry_nbd_release(struct registry_vm *rv, struct nbd_server *s)
{
	release(rv, s, false);
}

int registry_early_node_add(struct registry_vm *rv, const char *id, struct block_node *bs,
			    struct error **errp)
{
	struct registry_early_node *n, *one;
	struct release_op *op;
	int r = 0;

	if (rv->vm || !rv->inmigrate || migration_active(rv)) {
		r = error_set(errp, EBUSY, "VM '%s' no longer waits for its migration to start",
			      rv->name);
	} else if (!(n = realloc(rv->early, (rv->n_early + 1) * sizeof(*n)))) {
		r = error_set(errp, ENOMEM, "out of memory");
	} else {
		rv->early = n;
		n[rv->n_early].id = strdup(id);
		n[rv->n_early].bs = bs;
		if (n[rv->n_early].id) {
			rv->n_early++;
			return 0;
		}
		r = error_set(errp, ENOMEM, "out of memory");
	}
	/* dropped on a worker: it may be the last reference */
	one = malloc(sizeof(*one));
	op = one ? calloc(1, sizeof(*op)) : NULL;
	if (op) {
		one->id = NULL;
		one->bs = bs;
		op->early = one;
		op->n_early = 1;
		if (registry_run(rv->reg, release_fn, release_done, op, NULL) == 0) {
			return r;
		}
		free(op);
	}
	free(one);
	block_unref(bs); /* no worker left: here */
	return r;
}

struct block_node *registry_early_node(struct registry_vm *rv, const char *id)
{
	for (unsigned i = 0; i < rv->n_early; i++) {
		if (strcmp(rv->early[i].id, id) == 0) {
			return rv->early[i].bs;
		}
	}
	return NULL;
}

/* vm_host.disk_node of an incoming VM's build (the migration's worker). */
static struct block_node *on_disk_node(void *opaque, const char *disk_id)
{
	struct registry_instance *inst = opaque;

	for (unsigned i = 0; i < inst->n_early; i++) {
		if (strcmp(inst->early[i].id, disk_id) == 0) {
			return block_ref(inst->early[i].bs);
		}
	}
	return NULL;
}

static void vm_entry_free(struct registry_vm *rv)
{
	/* (a VM that waited for its migration; the daemon's exit) */
	release(rv, TAKE_PTR(rv->nbd), true);
	migration_free(rv);
	list_del(&rv->link);
	rv->reg->n_vms--;
	json_decref(rv->def);
	vm_config_free(rv->cfg);
	free(rv->mig_tls_creds);
	free(rv->mig_tls_hostname);
	free(rv->mig_tls_authz);
	writer_unref(rv->writer);
	free(rv->name);
	free(rv);
}

void registry_free(struct registry *reg)
{
	struct list_head *p, *t;

	if (!reg) {
		return;
	}
	registry_shutdown(reg);
	workers_free(reg->workers);
	jobs_free(reg->jobs);
	list_for_each_safe (p, t, &reg->vms) {
		vm_entry_free(list_entry(p, struct registry_vm, link));
	}
	if (reg->ev) {
		event_free(reg->ev);
	}
	/* Events nobody will deliver any more. */
	list_for_each_safe (p, t, &reg->queue) {
		free_event(list_entry(p, struct queued_event, link));
	}
	list_for_each_safe (p, t, &reg->held) {
		free_event(list_entry(p, struct queued_event, link));
	}
	list_for_each_safe (p, t, &reg->parked) {
		free_event(list_entry(p, struct queued_event, link));
	}
	if (reg->efd >= 0) {
		close(reg->efd);
	}
	if (reg->violation_ev) {
		event_free(reg->violation_ev);
	}
	if (reg->violation_efd >= 0 && !sandbox_enabled()) {
		/* With filters on, a late SIGSYS handler may still write it: kept open. */
		close(reg->violation_efd);
	}
	pthread_mutex_destroy(&reg->queue_lock);
	free(reg->state_dir);
	free(reg->run_dir);
	free(reg->vms_dir);
	free(reg->run_vms_dir);
	free(reg);
}

struct registry_vm *registry_find(struct registry *reg, const char *name)
{
	struct list_head *p;

	if (!name) {
		return NULL;
	}
	list_for_each (p, &reg->vms) {
		struct registry_vm *rv = list_entry(p, struct registry_vm, link);

		if (strcmp(rv->name, name) == 0) {
			return rv;
		}
	}
	return NULL;
}

/* A path a definition references must lie under one of the image roots. */
static int check_path(struct registry *reg, const char *what, const char *path, struct error **errp)
{
	const char *sock;

	if (!path || !path[0] || strncmp(path, "rbd:", 4) == 0) {
		return 0; /* rbd: not a host path (the rbd driver checks its conf and keyring) */
	}
	if (!strstr(path, "://")) {
		return pathpol_check(what, path, errp);
	}
	/* nbd+unix://...?socket=PATH names a host socket: it too must be under a root. */
	sock = strstr(path, "?socket=");
	if (!sock) {
		sock = strstr(path, "&socket=");
	}
	if (sock && strncmp(path, "nbd", 3) == 0) {
		_cleanup_free_ char *sp = strndup(sock + 8, strcspn(sock + 8, "&#"));

		return sp ? pathpol_check("NBD socket", sp, errp)
			  : error_set(errp, ENOMEM, "out of memory");
	}
	return 0;
}

static int check_paths(struct registry *reg, const struct vm_config *cfg, struct error **errp)
{
	int r;

	r = check_path(reg, "kernel", cfg->boot.kernel, errp);
	if (r == 0) {
		r = check_path(reg, "initrd", cfg->boot.initrd, errp);
	}
	if (r == 0) {
		r = check_path(reg, "firmware", cfg->boot.firmware, errp);
	}
	if (r == 0) {
		r = check_path(reg, "serial log", cfg->serial_log, errp);
	}
	if (r == 0) {
		r = check_path(reg, "debugcon file", cfg->debugcon, errp);
	}
	for (unsigned i = 0; r == 0 && i < cfg->n_disks; i++) {
		r = check_path(reg, "disk image", cfg->disks[i].file, errp);
	}
	for (unsigned i = 0; r == 0 && i < cfg->n_nics; i++) {
		r = check_path(reg, "option ROM", cfg->nics[i].rom, errp);
	}
	return r;
}

static int fsync_dir(const char *dir)
{
	_cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0 || fsync(fd) < 0) {
		return -errno;
	}
	return 0;
}

/* Write DIR/NAME.json atomically: temporary file, fsync, rename, fsync the directory. */
static int persist_in(const char *dir, const char *name, json_t *def, struct error **errp)
{
	_cleanup_free_ char *tmp = NULL, *dst = NULL;
	_cleanup_close_ int fd = -1;
	int r;

	if (asprintf(&tmp, "%s/.%s.json.tmp", dir, name) < 0 ||
	    asprintf(&dst, "%s/%s.json", dir, name) < 0) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		return error_set_errno(errp, errno, "cannot write %s", tmp);
	}
	if (json_dumpfd(def, fd, JSON_INDENT(2) | JSON_PRESERVE_ORDER) < 0 ||
	    write(fd, "\n", 1) != 1 || fsync(fd) < 0) {
		r = error_set_errno(errp, errno ? errno : EIO, "cannot write %s", tmp);
		unlink(tmp);
		return r;
	}
	close(TAKE_FD(fd));
	if (rename(tmp, dst) < 0) {
		r = error_set_errno(errp, errno, "cannot rename %s to %s", tmp, dst);
		unlink(tmp);
		return r;
	}
	r = fsync_dir(dir);
	if (r < 0) {
		return error_set_errno(errp, r, "cannot sync %s", dir);
	}
	return 0;
}

static int persist(struct registry *reg, const char *name, json_t *def, struct error **errp)
{
	return persist_in(reg->vms_dir, name, def, errp);
}

/*
 * A defined VM's definition rewritten after a change (hotplug, a disk's new
 * image, an arrived migration): the new one is in memory at once and its
 * file is written on a worker (write, fsync), so the control thread never
 * waits for the disk; a command that changed it answers when the file is
 * written. Each change is one write of the whole definition, numbered;
 * writes of one VM take turns (io), and one that finds a later one done
 * already has nothing to add and skips. Once the file is removed
 * (unlink_definition) nothing more is written. Freed by the last of the VM
 * entry and its writes.
 */
struct def_writer {
	pthread_mutex_t io; /* the file, written and gone: one write or removal at a time */
	uint64_t seq;	    /* control thread: the last write asked for */
	uint64_t written;   /* the newest write done */
	bool gone;	    /* the file was removed */
	int refs;	    /* atomic */
	char *dir;
	char name[72]; /* VM names have at most 64 characters */
};

struct def_write {
	struct def_writer *w;
	json_t *def; /* the write's own copy */
	uint64_t seq;
	void (*done)(void *opaque);
	void *opaque;
	int r;
	struct error *err;
};

static struct def_writer *writer_new(struct registry *reg, const char *name)
{
	struct def_writer *w = calloc(1, sizeof(*w));

	if (!w || !(w->dir = strdup(reg->vms_dir))) {
		free(w);
		return NULL;
	}
	pthread_mutex_init(&w->io, NULL);
	w->refs = 1;
	snprintf(w->name, sizeof(w->name), "%s", name);
	return w;
}

static void writer_unref(struct def_writer *w)
{
	if (__atomic_sub_fetch(&w->refs, 1, __ATOMIC_ACQ_REL) > 0) {
		return;
	}
	pthread_mutex_destroy(&w->io);
	free(w->dir);
	free(w);
}

/* Worker: write @def as write number @seq of @w (nothing if a later one is done). */
static int writer_persist(struct def_writer *w, uint64_t seq, json_t *def, struct error **errp)
{
	int r = 0;

	pthread_mutex_lock(&w->io);
	if (!w->gone && seq > w->written) {
		r = persist_in(w->dir, w->name, def, errp);
		if (r == 0) {
			w->written = seq;
		}
	}
	pthread_mutex_unlock(&w->io);
	return r;
}

static void write_job(void *arg)
{
	struct def_write *d = arg;

	d->r = writer_persist(d->w, d->seq, d->def, &d->err);
}

static void write_done(void *arg)
{
	struct def_write *d = arg;

	if (d->r < 0) {
		log_full(LOG_WARNING, d->w->name, NULL, "definition file not updated: %s",
			 d->err->msg);
		error_free(d->err);
	}
	if (d->done) {
		d->done(d->opaque);
	}
	registry_def_write_free(d);
}

/* Control thread: the next write of @rv's definition file, of @def (taken); NULL: no memory. */
static struct def_write *write_new(struct registry_vm *rv, json_t *def)
{
	struct def_write *d = def ? calloc(1, sizeof(*d)) : NULL;

	if (!d) {
		json_decref(def);
		return NULL;
	}
	d->def = def;
	d->w = rv->writer;
	d->seq = ++rv->writer->seq;
	__atomic_add_fetch(&d->w->refs, 1, __ATOMIC_RELAXED);
	return d;
}

void registry_def_write_free(struct def_write *d)
{
	if (d) {
		writer_unref(d->w);
		json_decref(d->def);
		free(d);
	}
}

int registry_write_definition(struct registry_vm *rv, void (*done)(void *opaque), void *opaque)
{
	struct def_write *d = write_new(rv, json_deep_copy(rv->def));
	struct error *err = NULL;
	int r;

	if (!d) {
		r = error_set(&err, ENOMEM, "out of memory");
	} else {
		d->done = done;
		d->opaque = opaque;
		r = worker_run(rv->reg->workers, write_job, write_done, d, &err);
		if (r < 0) {
			registry_def_write_free(d);
		}
	}
	if (r < 0) {
		/* (the next change writes the whole definition again) */
		log_full(LOG_WARNING, rv->name, NULL, "definition file not updated: %s", err->msg);
		error_free(err);
	}
	return r;
}

static struct registry_vm *entry_new(struct registry *reg, struct vm_config *cfg, json_t *def)
{
	struct registry_vm *rv = calloc(1, sizeof(*rv));

	if (!rv || !(rv->name = strdup(cfg->name)) || !(rv->writer = writer_new(reg, cfg->name))) {
		if (rv) {
			free(rv->name);
		}
		free(rv);
		return NULL;
	}
	rv->reg = reg;
	rv->cfg = cfg;
	rv->def = def;
	list_add_tail(&rv->link, &reg->vms);
	reg->n_vms++;
	return rv;
}

static int worker_op(struct registry_vm *rv, int busy, void (*fn)(void *), void (*fin)(void *),
		     registry_done_fn done, void *opaque, struct error **errp);
static void persist_job(void *arg);
static void persist_done(void *arg);

int registry_create(struct registry *reg, json_t *def, registry_done_fn done, void *opaque,
		    struct registry_vm **ret, struct error **errp)
{
	_cleanup_(vm_config_freep) struct vm_config *cfg = NULL;
	json_auto_t *canon = NULL;
	struct registry_vm *rv;
	const char *name;
	int r;

	name = json_string_value(json_object_get(def, "name"));
	if (name && registry_find(reg, name)) {
		return error_set(errp, EEXIST, "VM '%s' already exists", name);
	}
	r = vm_config_from_json(def, true, &cfg, errp);
	if (r < 0) {
		return r;
	}
	if (!registry_name_valid(cfg->name)) {
		return error_set(errp, EINVAL,
				 "VM name '%s' is invalid: use letters, digits, '.', '_' and '-' "
				 "(at most 64, starting with a letter or digit)",
				 cfg->name);
	}
	if (registry_find(reg, cfg->name)) {
		return error_set(errp, EEXIST, "VM '%s' already exists", cfg->name);
	}
	if (reg->n_vms >= reg->max_vms) {
		return error_set(errp, ENOSPC,
				 "vmmd already has %u VMs defined (max-vms in vmmd.conf)",
				 reg->max_vms);
	}
	r = check_paths(reg, cfg, errp);
	if (r < 0) {
		return r;
	}
	canon = vm_config_to_json(cfg);
	if (!canon) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	rv = entry_new(reg, cfg, canon);
	if (!rv) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	TAKE_PTR(cfg);
	TAKE_PTR(canon);
	rv->define_ns = mono_ns();
	/* The name is taken now; the file is written (fsync) on a worker. */
	r = worker_op(rv, REGISTRY_DEFINING, persist_job, persist_done, done, opaque, errp);
	if (r < 0) {
		vm_entry_free(rv);
		return r;
	}
	*ret = rv;
	return 0;
}

static const char *busy_name(struct registry_vm *rv)
{
	switch (rv->busy) {
	case REGISTRY_STARTING:
		return "starting";
	case REGISTRY_DEFINING:
		return "being defined";
	case REGISTRY_DELETING:
		return "being deleted";
	case REGISTRY_SAVING:
		return "being saved (wait for VM_SAVE_COMPLETED)";
	case REGISTRY_RESTORING:
		return "being restored";
	case REGISTRY_PAUSING:
		return "being paused";
	default:
		return "stopping";
	}
}

/* A new operation (zeroed, no socket yet), or NULL when out of memory. */
static struct registry_op *op_new(void)
{
	struct registry_op *op = calloc(1, sizeof(*op));

	if (op) {
		op->sock_fd = -1;
	}
	return op;
}

static void op_free(struct registry_op *op)
{
	if (op->sock_fd >= 0) {
		close(op->sock_fd);
	}
	if (op->deadline) {
		event_free(op->deadline);
	}
	error_free(op->err);
	free(op);
}

/* Answer the waiting client (if any, and only once). */
static void op_answer(struct registry_op *op, int r, struct error *err)
{
	registry_done_fn done = op->done;

	op->done = NULL;
	if (done) {
		done(op->opaque, op->then_delete ? NULL : op->rv, r, err);
	} else {
		error_free(err);
	}
}

/* ---- defining and deleting: the definition's file I/O on a worker ---- */

static int unlink_definition(struct registry *reg, struct registry_vm *rv, struct error **errp);

static int worker_op(struct registry_vm *rv, int busy, void (*fn)(void *), void (*fin)(void *),
		     registry_done_fn done, void *opaque, struct error **errp)
{
	struct registry_op *op = op_new();
	int r;

	if (!op) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	op->reg = rv->reg;
	op->rv = rv;
	op->done = done;
	op->opaque = opaque;
	r = worker_run(rv->reg->workers, fn, fin, op, errp);
	if (r < 0) {
		free(op);
		return r;
	}
	rv->busy = busy;
	return 0;
}

static void persist_job(void *arg)
{
	struct registry_op *op = arg;

	op->r = persist(op->reg, op->rv->name, op->rv->def, &op->err);
}

static void persist_done(void *arg)
{
	struct registry_op *op = arg;
	struct registry_vm *rv = op->rv;

	rv->busy = REGISTRY_IDLE;
	if (op->r < 0) {
		vm_entry_free(rv);
		op->then_delete = true; /* answer with no VM */
		op_answer(op, op->r, TAKE_PTR(op->err));
	} else {
		rv->define_ns = mono_ns() - rv->define_ns;
		log_full(LOG_INFO, rv->name, NULL, "VM defined");
		op_answer(op, 0, NULL);
	}
	op_free(op);
}

static void delete_job(void *arg)
{
	struct registry_op *op = arg;

	op->r = unlink_definition(op->reg, op->rv, &op->err);
}

static void delete_done(void *arg)
{
	struct registry_op *op = arg;
	struct registry_vm *rv = op->rv;

	rv->busy = REGISTRY_IDLE;
	if (op->r < 0) {
		rv->deleting = false;
		op_answer(op, op->r, TAKE_PTR(op->err));
	} else {
		log_full(LOG_INFO, rv->name, NULL, "VM deleted");
		vm_entry_free(rv);
		changed(op->reg);
		op->then_delete = true;
		op_answer(op, 0, NULL);
	}
	op_free(op);
}

/* ---- start: vm_new on a worker, then the sockets and vCPUs here ---- */

static void start_job(void *arg)
{
	struct registry_op *op = arg;

	const char *test = getenv("VMMD_SECCOMP_SELFTEST");

	op->t_run = mono_ns();
	/* Tests only (test-security-seccomp.py): a forbidden call while setting up VM NAME. */
	if (test && strncmp(test, "setup:", 6) == 0 && strcmp(test + 6, op->rv->name) == 0 &&
	    chdir("/") == 0) {
		log_error("seccomp self-test: chdir passed the job thread's filter");
	}
	op->r = vm_new(op->rv->cfg, &op->inst->host, &op->vm, &op->err);
	/*
	 * Here rather than on the control thread: the vCPU threads (parked
	 * until vm_start) and the per-VM socket file.
	 */
	if (op->r == 0) {
		op->r = vm_spawn_vcpus(op->vm, &op->err);
	}
	if (op->r == 0 && op->reg->hooks->vm_bind) {
		int fd = op->reg->hooks->vm_bind(op->reg->hooks->opaque, op->rv->name,
						 op->inst->host.socket_mode,
						 op->inst->host.socket_gid, &op->err);

		op->r = fd < 0 ? fd : 0;
		op->sock_fd = fd < 0 ? -1 : fd;
	}
	if (op->r < 0 && op->vm) {
		vm_destroy(op->vm);
		op->vm = NULL;
	}
	op->t_built = mono_ns();
}

/*
 * The debug log's breakdown of a VM's start (tests/bench/README, "Where VM
 * creation spends its time"): the definition file (vm-create), the wait for
 * a worker, vm_new and its phases, the wait for the control thread, the
 * per-VM socket, vm_start (vCPU threads).
 */
static void log_setup(struct registry_op *op, uint64_t t_done, uint64_t t_sock, uint64_t t_end)
{
	_cleanup_free_ char *phases = NULL;
	char define[48] = "";

	if (log_get_level() < LOG_DEBUG) {
		return;
	}
	phases = vm_setup_phases(op->vm);
	if (op->rv->define_ns) {
		snprintf(define, sizeof(define), "define %.2f, ", op->rv->define_ns / 1e6);
		op->rv->define_ns = 0;
	}
	log_full(LOG_DEBUG, op->rv->name, NULL,
		 "setup ms: %sworker %.2f, build %.2f [%s], control %.2f, socket %.2f, "
		 "start %.2f; total %.2f",
		 define, (op->t_run - op->t_req) / 1e6, (op->t_built - op->t_run) / 1e6,
		 phases ? phases : "?", (t_done - op->t_built) / 1e6, (t_sock - t_done) / 1e6,
		 (t_end - t_sock) / 1e6, (t_end - op->t_req) / 1e6);
}

static void start_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct registry_op *op = arg;
	struct error *err = NULL;

	error_set(&err, ETIMEDOUT,
		  "VM '%s' did not start within %u s (a disk, NBD server or file that does "
		  "not answer?); it is stopped as soon as its setup returns",
		  op->rv->name, op->reg->start_timeout);
	log_full(LOG_WARNING, op->rv->name, NULL, "%s", err->msg);
	op_answer(op, -ETIMEDOUT, err);
}

static void start_done(void *arg)
{
	struct registry_op *op = arg;
	struct registry_vm *rv = op->rv;
	struct registry *reg = op->reg;
	struct registry_instance *inst = op->inst;
	struct error *err = TAKE_PTR(op->err);
	bool late = !op->done && op->deadline && !event_pending(op->deadline, EV_TIMEOUT, NULL);
	uint64_t t_done = mono_ns(), t_sock = 0;
	int r = op->r;

	instance_drop_fds(inst);
	rv->busy = REGISTRY_IDLE;
	if (r == 0 && (reg->shutting_down || late)) {
		/* Nobody wants it any more: undo the setup. */
		log_full(LOG_WARNING, rv->name, NULL, "VM setup finished too late; stopping it");
		if (op->sock_fd >= 0 && reg->hooks->vm_up(reg->hooks->opaque, rv->name,
							  TAKE_FD(op->sock_fd), NULL) == 0) {
			reg->hooks->vm_down(reg->hooks->opaque, rv->name); /* removes its file */
		}
		if (reg->shutting_down) {
			vm_destroy(op->vm); /* blocking is fine at exit */
			instance_free(inst);
		} else {
			/*
			 * Late because a disk or server answers slowly: closing it
			 * (a flush) may be as slow, so not on this thread.
			 */
			rv->vm = op->vm;
			rv->inst = inst;
			destroy_async(rv, "host-error", false, false, NULL, NULL, NULL);
		}
		error_free(err);
		op_free(op);
		return;
	}
	if (r == 0) {
		r = reg->hooks->vm_up(reg->hooks->opaque, rv->name, TAKE_FD(op->sock_fd), &err);
		t_sock = mono_ns();
		if (r == 0) {
			r = vm_start(op->vm, &err);
			if (r < 0) {
				reg->hooks->vm_down(reg->hooks->opaque, rv->name);
			}
		}
		if (r < 0) {
			/* Built but not started: tear it down on a worker, answer now. */
			rv->vm = op->vm;
			rv->inst = inst;
			error_prefix(&err, "cannot start VM '%s'", rv->name);
			op_answer(op, r, TAKE_PTR(err));
			destroy_async(rv, "host-error", false, false, NULL, NULL, NULL);
			op_free(op);
			return;
		}
		rv->vm = op->vm;
		rv->inst = inst;
		log_full(LOG_INFO, rv->name, NULL, "VM started");
		log_setup(op, t_done, t_sock, mono_ns());
		changed(reg);
		op_answer(op, 0, NULL);
		op_free(op);
		/* A violation while it was being built found no VM to stop then. */
		check_violation(rv);
		return;
	}
	instance_free(inst);
	error_prefix(&err, "cannot start VM '%s'", rv->name);
	if (!op->done) {
		log_full(LOG_ERR, rv->name, NULL, "%s", err ? err->msg : "start failed");
	}
	op_answer(op, r, TAKE_PTR(err));
	release_memory();
	op_free(op);
}

/* Take the getfd fds the definition's NICs name, while their client's command runs. */
static int take_fds(struct registry *reg, const struct vm_config *cfg,
		    struct registry_instance *inst, struct error **errp)
{
	unsigned n = 0;

	if (!reg->hooks->get_fd || cfg->n_nics == 0) {
		return 0;
	}
	inst->fds = calloc(cfg->n_nics, sizeof(*inst->fds));
	inst->fd_names = calloc(cfg->n_nics, sizeof(*inst->fd_names));
	if (!inst->fds || !inst->fd_names) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	for (unsigned i = 0; i < cfg->n_nics; i++) {
		int fd;

		if (!cfg->nics[i].fd) {
			continue;
		}
		fd = reg->hooks->get_fd(reg->hooks->opaque, cfg->nics[i].fd);
		if (fd < 0) {
			/* The device reports it (with the NIC's id) when it asks. */
			continue;
		}
		inst->fds[n] = fd;
		inst->fd_names[n] = strdup(cfg->nics[i].fd);
		inst->n_fds = ++n;
		if (!inst->fd_names[n - 1]) {
			return error_set(errp, ENOMEM, "out of memory");
		}
	}
	return 0;
}

int registry_start_async(struct registry_vm *rv, registry_done_fn done, void *opaque,
			 struct error **errp)
{
	struct registry *reg = rv->reg;
	struct registry_instance *inst;
	struct registry_op *op;
	int r;

	if (rv->vm) {
		return error_set(errp, EBUSY, "VM '%s' is already running (state %s)", rv->name,
				 vm_run_state_name(vm_get_state(rv->vm)));
	}
	if (rv->deleting) {
		return error_set_class(errp, ERROR_CLASS_DEVICE_NOT_FOUND, ENOENT,
				       "VM '%s' is being deleted", rv->name);
	}
	if (rv->busy == REGISTRY_STOPPING && !rv->start_pending) {
		/* A guest that just powered off, started again at once: after the teardown. */
		rv->start_pending = true;
		rv->pending_done = done;
		rv->pending_opaque = opaque;
		return 0;
	}
	if (rv->busy) {
		return error_set(errp, EBUSY, "VM '%s' is %s; try again when that is done",
				 rv->name, busy_name(rv));
	}
	r = check_paths(reg, rv->cfg, errp);
	if (r < 0) {
		return r;
	}
	if (rv->cfg->incoming) {
		/* QEMU's -incoming defer: nothing runs until migrate-incoming brings the state. */
		rv->inmigrate = true;
		log_full(LOG_INFO, rv->name, NULL, "VM waits for an incoming migration");
		changed(reg);
		return done_later(reg, rv, done, opaque, errp);
	}
	inst = calloc(1, sizeof(*inst) + strlen(rv->name) + 1);
	op = op_new();
	if (!inst || !op) {
		free(inst);
		free(op);
		return error_set(errp, ENOMEM, "out of memory");
	}
	strcpy(inst->name, rv->name);
	inst->reg = reg;
	inst->gen = ++reg->next_gen;
	inst->host.run_dir = reg->run_dir;
	inst->host.socket_mode = reg->socket_mode;
	inst->host.socket_gid = reg->socket_gid;
	inst->host.populate_rate = reg->populate_rate;
	inst->host.event = on_vm_event;
	inst->host.get_fd = on_get_fd;
	inst->host.thread_start = on_thread_start;
	inst->host.hotplug_pending = on_vm_hotplug;
	inst->host.offload = on_offload;
	inst->host.opaque = inst;
	op->reg = reg;
	op->rv = rv;
	op->inst = inst;
	op->done = done;
	op->opaque = opaque;
	r = take_fds(reg, rv->cfg, inst, errp);
	if (r == 0) {
		op->deadline = evtimer_new(reg->base, start_deadline, op);
		if (!op->deadline) {
			r = error_set(errp, ENOMEM, "out of memory");
		}
	}
	if (r == 0) {
		op->t_req = mono_ns();
		r = worker_run_for(reg->workers, &inst->violated, start_job, start_done, op, errp);
	}
	if (r < 0) {
		instance_free(inst);
		op_free(op);
		return r;
	}
	evtimer_add(op->deadline, &(struct timeval){.tv_sec = reg->start_timeout});
	rv->busy = REGISTRY_STARTING;
	return 0;
}

/* ---- destroy: vm_destroy (joins threads, closes backends) on a worker ---- */

static void destroy_job(void *arg)
{
	struct registry_op *op = arg;
	struct error *err = NULL;

	/* its clients go first: an export holds the VM's disks */
	nbd_server_free(op->nbd);
	vm_destroy(op->vm);
	if (op->then_delete && unlink_definition(op->reg, op->rv, &err) < 0) {
		log_full(LOG_ERR, op->rv->name, NULL, "%s", err->msg);
		error_free(err);
	}
	release_memory();
}

static void destroy_done(void *arg)
{
	struct registry_op *op = arg;
	struct registry_vm *rv = op->rv;
	struct registry *reg = op->reg;
	bool then_delete = op->then_delete;

	instance_free(op->inst);
	rv->busy = REGISTRY_IDLE;
	if (op->emit_shutdown) {
		/* SHUTDOWN first, so clients of the per-VM socket see it before it closes. */
		emit(reg, rv->name, "SHUTDOWN",
		     json_pack("{s:b, s:s}", "guest", 0, "reason", op->reason));
	}
	reg->hooks->vm_down(reg->hooks->opaque, rv->name);
	if (op->then_delete) {
		log_full(LOG_INFO, rv->name, NULL, "VM deleted");
		vm_entry_free(rv);
	}
	changed(reg);
	op_answer(op, 0, NULL);
	op_free(op);
	if (!then_delete && rv->start_pending && !reg->shutting_down) {
		registry_done_fn pdone = rv->pending_done;
		void *popaque = rv->pending_opaque;
		struct error *err = NULL;
		int r;

		rv->start_pending = false;
		r = registry_start_async(rv, pdone, popaque, &err);
		if (r < 0 && pdone) {
			pdone(popaque, rv, r, err);
		} else if (r < 0) {
			log_full(LOG_ERR, rv->name, NULL, "start failed: %s", err->msg);
			error_free(err);
		}
	}
}

/* Hand the VM object to a worker for vm_destroy(); its jobs are gone already. */
static int destroy_start(struct registry_op *op, struct error **errp)
{
	struct registry_vm *rv = op->rv;
	int r;

	op->nbd = rv->nbd;
	r = worker_run_for(op->reg->workers, &op->inst->violated, destroy_job, destroy_done, op,
			   errp);
	if (r < 0) {
		op->nbd = NULL;
		return r;
	}
	rv->nbd = NULL;
	rv->vm = NULL;
	rv->inst = NULL;
	rv->busy = REGISTRY_STOPPING;
	log_full(LOG_INFO, rv->name, NULL, "VM destroyed (%s)", op->reason);
	return 0;
}

/*
 * A job ended (control thread): a VM whose destroy waits for its jobs goes
 * on once the last one is gone.
 */
static void job_gone(void *opaque, const char *vm)
{
	struct registry *reg = opaque;
	struct registry_vm *rv = registry_find(reg, vm);
	struct registry_op *op;
	struct error *err = NULL;

	if (!rv || !rv->destroy_pending || reg->shutting_down || rv->busy == REGISTRY_PAUSING ||
	    rv->disks_busy || jobs_count(reg->jobs, vm) > 0) {
		return;
	}
	op = TAKE_PTR(rv->destroy_pending);
	if (destroy_start(op, &err) < 0) {
		log_full(LOG_ERR, rv->name, NULL, "cannot destroy the VM: %s", err->msg);
		rv->busy = REGISTRY_IDLE;
		op_answer(op, -EIO, err);
		op_free(op);
	}
}

static int destroy_async(struct registry_vm *rv, const char *reason, bool emit_shutdown,
			 bool then_delete, registry_done_fn done, void *opaque, struct error **errp)
{
	struct registry *reg = rv->reg;
	struct registry_op *op;
	int r;

	if (!rv->vm && rv->inmigrate && !migration_active(rv)) {
		release(rv, TAKE_PTR(rv->nbd), false);
		rv->inmigrate = false;
		log_full(LOG_INFO, rv->name, NULL, "VM no longer waits for a migration (%s)",
			 reason);
		changed(reg);
		return done_later(reg, rv, done, opaque, errp);
	}
	if (!rv->vm) {
		return error_set_class(errp, ERROR_CLASS_DEVICE_NOT_ACTIVE, ENODEV,
				       "VM '%s' is not running", rv->name);
	}
	if (rv->destroy_pending) {
		return 0; /* on its way already (the guest powered off meanwhile) */
	}
	if (migration_active(rv)) {
		return error_set(errp, EBUSY,
				 "VM '%s' is migrating; cancel with migrate_cancel or wait for the "
				 "MIGRATION event",
				 rv->name);
	}
	op = op_new();
	if (!op) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	op->reg = reg;
	op->rv = rv;
	op->vm = rv->vm;
	op->inst = rv->inst;
	op->reason = reason;
	op->emit_shutdown = emit_shutdown;
	op->then_delete = then_delete;
	op->done = done;
	op->opaque = opaque;
	/*
	 * A VM's jobs end with it (QEMU's end with its process): cancel them;
	 * the VM object goes once the last one has (job_gone()).
	 */
	if (jobs_cancel_vm(reg->jobs, rv->name) > 0 || rv->busy == REGISTRY_PAUSING ||
	    rv->disks_busy) {
		/* ... and not while a worker pauses it: pause_done() goes on. */
		rv->destroy_pending = op;
		if (rv->busy != REGISTRY_PAUSING) {
			rv->busy = REGISTRY_STOPPING;
		}
		return 0;
	}
	r = destroy_start(op, errp);
	if (r < 0) {
		op_free(op);
	}
	return r;
}

/* ---- stop: vm_pause (waits for the vCPUs to park) on a worker ---- */

static void pause_job(void *arg)
{
	struct registry_op *op = arg;

	op->r = vm_pause(op->vm, &op->err);
}

static void pause_done(void *arg)
{
	struct registry_op *op = arg;
	struct registry_vm *rv = op->rv;
	struct registry *reg = op->reg;

	rv->busy = REGISTRY_IDLE;
	op_answer(op, op->r, TAKE_PTR(op->err));
	op_free(op);
	if (rv->destroy_pending) {
		/* A destroy came meanwhile (a client, the guest powering off): now. */
		rv->busy = REGISTRY_STOPPING;
		job_gone(reg, rv->name);
	}
}

int registry_pause_async(struct registry_vm *rv, registry_done_fn done, void *opaque,
			 struct error **errp)
{
	struct registry_op *op;
	int r;

	if (!rv->vm) {
		return error_set_class(errp, ERROR_CLASS_DEVICE_NOT_ACTIVE, ENODEV,
				       "VM '%s' is not running", rv->name);
	}
	if (rv->busy || rv->destroy_pending || migration_active(rv)) {
		/*
		 * Rare (a save, a migration or another stop holds the VM): here, as
		 * QEMU would. A stop behind another stop finds the VM paused, which
		 * is no error.
		 */
		struct error *err = NULL;

		r = vm_pause(rv->vm, &err);
		if (r < 0 && vm_get_state(rv->vm) == VM_STATE_PAUSED) {
			error_free(err);
			r = 0;
		} else if (r < 0) {
			error_propagate(errp, err);
			return r;
		}
		return done_later(rv->reg, rv, done, opaque, errp);
	}
	op = op_new();
	if (!op) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	op->reg = rv->reg;
	op->rv = rv;
	op->vm = rv->vm;
	op->done = done;
	op->opaque = opaque;
	r = worker_run_for(rv->reg->workers, &rv->inst->violated, pause_job, pause_done, op, errp);
	if (r < 0) {
		free(op);
		return r;
	}
	rv->busy = REGISTRY_PAUSING;
	return 0;
}

int registry_destroy_async(struct registry_vm *rv, const char *reason, registry_done_fn done,
			   void *opaque, struct error **errp)
{
	if (rv->busy == REGISTRY_PAUSING && !rv->destroy_pending) {
		/* Right after its stop (another client's): once the vCPUs are parked. */
		return destroy_async(rv, reason, true, false, done, opaque, errp);
	}
	if (rv->busy) {
		return error_set(errp, EBUSY, "VM '%s' is %s; try again when that is done",
				 rv->name, busy_name(rv));
	}
	return destroy_async(rv, reason, true, false, done, opaque, errp);
}

/* Blocking, for the daemon's exit only. */
static void destroy_now(struct registry_vm *rv, const char *reason)
{
	struct registry *reg = rv->reg;

	log_full(LOG_INFO, rv->name, NULL, "VM destroyed (%s)", reason);
	if (rv->destroy_pending) {
		/* a destroy that waited for the VM's jobs: this one does it */
		struct registry_op *op = TAKE_PTR(rv->destroy_pending);

		op_answer(op, 0, NULL);
		op_free(op);
		rv->busy = REGISTRY_IDLE;
	}
	jobs_vm_gone(reg->jobs, rv->name);
	nbd_server_free(TAKE_PTR(rv->nbd));
	vm_destroy(rv->vm);
	rv->vm = NULL;
	instance_free(rv->inst);
	rv->inst = NULL;
	emit(reg, rv->name, "SHUTDOWN", json_pack("{s:b, s:s}", "guest", 0, "reason", reason));
	reg->hooks->vm_down(reg->hooks->opaque, rv->name);
	changed(reg);
}

int registry_await_takeover(struct registry_vm *rv, struct error **errp)
{
	if (rv->vm || rv->busy || rv->inmigrate || rv->deleting) {
		return error_set(errp, EBUSY, "VM '%s' is not idle in this daemon", rv->name);
	}
	rv->inmigrate = true;
	log_full(LOG_INFO, rv->name, NULL, "VM waits to be taken over from the old daemon");
	changed(rv->reg);
	return 0;
}

int registry_rearm_incoming(struct registry_vm *rv, struct error **errp)
{
	if (!rv->vm || vm_get_state(rv->vm) != VM_STATE_POSTMIGRATE || migration_active(rv) ||
	    rv->busy) {
		return error_set(errp, EINVAL, "VM '%s' is not in postmigrate here", rv->name);
	}
	destroy_now(rv, "migrated");
	migration_free(rv);
	rv->inmigrate = true;
	changed(rv->reg);
	return 0;
}

/* @rv's definition with disk @id on @file/@format: *ret and *ret_cfg (new). */
/*
 * A copy of @rv's definition with disk @id changed by @edit(@disk, @arg),
 * and its parsed configuration: what the VM runs once it is in place.
 */
static int def_edit_disk(struct registry_vm *rv, const char *id,
			 void (*edit)(json_t *disk, const void *arg), const void *arg, json_t **ret,
			 struct vm_config **ret_cfg, struct error **errp)
{
	json_auto_t *def = json_deep_copy(rv->def);
	json_t *disks = def ? json_object_get(def, "disks") : NULL;
	json_t *d = NULL, *v;
	size_t i;
	int r;

	if (!def) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	json_array_foreach (disks, i, v) {
		if (json_is_string(json_object_get(v, "id")) &&
		    strcmp(json_string_value(json_object_get(v, "id")), id) == 0) {
			d = v;
			break;
		}
	}
	if (!d) {
		return error_set(errp, ENOENT, "VM '%s' has no disk '%s' in its definition",
				 rv->name, id);
	}
	edit(d, arg);
	r = vm_config_from_json(def, false, ret_cfg, errp);
	if (r < 0) {
		return r;
	}
	*ret = TAKE_PTR(def);
	return 0;
}

struct disk_image {
	const char *file, *format;
};

/* The disk's image, or none (an empty drive: a removed CD-ROM medium). */
static void edit_image(json_t *d, const void *arg)
{
	const struct disk_image *im = arg;

	if (im->file) {
		json_object_set_new(d, "file", json_string(im->file));
		json_object_set_new(d, "format", json_string(im->format));
	} else {
		json_object_del(d, "file");
		json_object_del(d, "format");
	}
}

static int def_with_disk(struct registry_vm *rv, const char *id, const char *file,
			 const char *format, json_t **ret, struct vm_config **ret_cfg,
			 struct error **errp)
{
	struct disk_image im = {file, format};

	return def_edit_disk(rv, id, edit_image, &im, ret, ret_cfg, errp);
}

/* Put the edited definition in place (in memory). */
static void def_replace(struct registry_vm *rv, json_t *def, struct vm_config *cfg)
{
	json_decref(rv->def);
	rv->def = def;
	vm_config_free(rv->cfg);
	rv->cfg = cfg;
}

/* The disk's I/O limits, or none. */
static void edit_throttle(json_t *d, const void *arg)
{
	const struct block_throttle_limits *l = arg;

	if (block_throttle_enabled(l)) {
		json_object_set_new(d, "throttle", block_throttle_to_json(l));
	} else {
		json_object_del(d, "throttle");
	}
}

int registry_set_disk_throttle(struct registry_vm *rv, const char *id,
			       const struct block_throttle_limits *l, struct error **errp)
{
	struct vm_config *cfg = NULL;
	json_t *def = NULL;
	int r = def_edit_disk(rv, id, edit_throttle, l, &def, &cfg, errp);

	if (r == 0) {
		def_replace(rv, def, cfg);
	}
	return r;
}

int registry_set_disk(struct registry_vm *rv, const char *id, const char *file, const char *format,
		      struct error **errp)
{
	struct vm_config *cfg = NULL;
	json_t *def = NULL;
	int r = def_with_disk(rv, id, file, format, &def, &cfg, errp);

	if (r < 0) {
		return r;
	}
	def_replace(rv, def, cfg);
	log_full(LOG_INFO, rv->name, id, "disk now %s (%s)", file ? file : "empty",
		 format ? format : "no medium");
	return 0;
}

struct def_write *registry_disk_write_prepare(struct registry_vm *rv, const char *id,
					      const char *file, const char *format,
					      struct error **errp)
{
	struct vm_config *cfg = NULL;
	json_t *def = NULL;
	struct def_write *d;

	if (def_with_disk(rv, id, file, format, &def, &cfg, errp) < 0) {
		return NULL;
	}
	vm_config_free(cfg);
	d = write_new(rv, def);
	if (!d) {
		error_set(errp, ENOMEM, "out of memory");
	}
	return d;
}

int registry_def_write_run(struct def_write *d, struct error **errp)
{
	return writer_persist(d->w, d->seq, d->def, errp);
}

/*
 * Worker thread: remove NAME.json (and the console log vmmd chose); no
 * rewrite of the definition comes after (def_writer).
 */
static int unlink_definition(struct registry *reg, struct registry_vm *rv, struct error **errp)
{
	_cleanup_free_ char *path = NULL;
	const char *name = rv->name, *serial_log = rv->cfg->serial_log;
	struct def_writer *w = rv->writer;
	int r = 0;

	if (asprintf(&path, "%s/%s.json", reg->vms_dir, name) < 0) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	pthread_mutex_lock(&w->io);
	if (unlink(path) < 0 && errno != ENOENT) {
		r = error_set_errno(errp, errno, "cannot remove %s", path);
	}
	w->gone = r == 0;
	pthread_mutex_unlock(&w->io);
	if (r < 0) {
		return r;
	}
	fsync_dir(reg->vms_dir);
	if (!serial_log) {
		/* The console log vmmd chose goes with the VM (one the definition named stays). */
		_cleanup_free_ char *log = NULL;

		if (asprintf(&log, "%s/%s.console", reg->run_vms_dir, name) >= 0 &&
		    unlink(log) < 0 && errno != ENOENT) {
			log_full(LOG_WARNING, name, NULL, "cannot remove %s: %s", log,
				 strerror(errno));
		}
	}
	return 0;
}

int registry_delete(struct registry_vm *rv, bool force, registry_done_fn done, void *opaque,
		    struct error **errp)
{
	int r;

	if (rv->busy) {
		return error_set(errp, EBUSY, "VM '%s' is %s; try again when that is done",
				 rv->name, busy_name(rv));
	}
	if (rv->vm && !force) {
		return error_set(errp, EBUSY,
				 "VM '%s' is running; destroy it first or pass \"force\": true",
				 rv->name);
	}
	if (rv->vm) {
		/* Destroyed, then its files removed, on the worker; done answers then. */
		r = destroy_async(rv, "host-qmp-quit", true, true, done, opaque, errp);
	} else {
		r = worker_op(rv, REGISTRY_DELETING, delete_job, delete_done, done, opaque, errp);
	}
	if (r == 0) {
		rv->deleting = true;
	}
	return r;
}

int registry_run(struct registry *reg, void (*fn)(void *arg), void (*done)(void *arg), void *arg,
		 struct error **errp)
{
	return worker_run(reg->workers, fn, done, arg, errp);
}

int registry_disks_check(struct registry_vm *rv, struct error **errp)
{
	if (rv->disks_busy) {
		return error_set(errp, EBUSY, "VM '%s' is %s; try again when that is done",
				 rv->name,
				 rv->disks_busy_what ? rv->disks_busy_what
						     : "switching disks to a snapshot");
	}
	return 0;
}

int registry_vm_work_begin(struct registry_vm *rv, const char *what, void (*fn)(void *arg),
			   void (*done)(void *arg), void *arg, struct error **errp)
{
	int r = registry_disks_begin(rv, fn, done, arg, errp);

	if (r == 0) {
		rv->disks_busy_what = what;
	}
	return r;
}

int registry_disks_begin(struct registry_vm *rv, void (*fn)(void *arg), void (*done)(void *arg),
			 void *arg, struct error **errp)
{
	int r;

	if (!rv->vm || !rv->inst) {
		return error_set_class(errp, ERROR_CLASS_DEVICE_NOT_ACTIVE, ENODEV,
				       "VM '%s' is not running", rv->name);
	}
	r = registry_disks_check(rv, errp);
	if (r == 0 && rv->destroy_pending) {
		r = error_set(errp, EBUSY, "VM '%s' is being destroyed", rv->name);
	}
	if (r == 0) {
		r = worker_run_for(rv->reg->workers, &rv->inst->violated, fn, done, arg, errp);
	}
	if (r == 0) {
		rv->disks_busy = true;
	}
	return r;
}

void registry_disks_end(struct registry_vm *rv)
{
	rv->disks_busy = false;
	rv->disks_busy_what = NULL;
	if (rv->destroy_pending) {
		/* a destroy came meanwhile: it goes on now */
		job_gone(rv->reg, rv->name);
	}
}

uint64_t registry_vm_generation(struct registry_vm *rv)
{
	return rv->vm && rv->inst ? rv->inst->gen : 0;
}

/*
 * Replace @rv's definition by @def (borrowed) after parsing it; its file
 * follows: 0 and @done (if not NULL) when it is written, 1 if no write
 * could start (logged; no @done), < 0 if @def is refused (nothing changed).
 */
static int redefine(struct registry_vm *rv, json_t *def, void (*done)(void *opaque), void *opaque,
		    struct error **errp)
{
	_cleanup_(vm_config_freep) struct vm_config *cfg = NULL;
	json_t *canon;
	int r;

	r = vm_config_from_json(def, false, &cfg, errp);
	if (r < 0) {
		return r;
	}
	canon = vm_config_to_json(cfg);
	if (!canon) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	json_decref(rv->def);
	vm_config_free(rv->cfg);
	rv->def = canon;
	rv->cfg = TAKE_PTR(cfg);
	return registry_write_definition(rv, done, opaque) < 0 ? 1 : 0;
}

bool registry_device_added(struct registry_vm *rv, const char *id, void (*done)(void *opaque),
			   void *opaque)
{
	json_auto_t *ent = rv->vm ? vm_device_definition(rv->vm, id) : NULL;
	json_auto_t *def = json_deep_copy(rv->def);
	const char *kind = ent ? json_string_value(json_object_get(ent, "kind")) : NULL;
	struct error *err = NULL;
	json_t *list;
	int r;

	if (!kind || !def) {
		log_full(LOG_NOTICE, rv->name, id,
			 "hot-added device cannot be described in the definition; it will be "
			 "gone after a restart");
		return false;
	}
	list = json_object_get(def, kind);
	if (!list) {
		list = json_array();
		json_object_set_new(def, kind, list);
	}
	json_array_append(list, json_object_get(ent, "entry"));
	r = redefine(rv, def, done, opaque, &err);
	if (r < 0) {
		log_full(LOG_WARNING, rv->name, id, "definition not updated: %s", err->msg);
		error_free(err);
	}
	return r == 0;
}

bool registry_memdev_resized(struct registry_vm *rv, const char *id, uint64_t requested,
			     void (*done)(void *opaque), void *opaque)
{
	json_auto_t *def = json_deep_copy(rv->def);
	json_t *list = def ? json_object_get(def, "memory_devices") : NULL;
	struct error *err = NULL;
	size_t i;
	json_t *e;
	int r;

	json_array_foreach (list, i, e) {
		const char *eid = json_string_value(json_object_get(e, "id"));

		if (eid && strcmp(eid, id) == 0) {
			json_object_set_new(e, "requested_size",
					    json_integer((json_int_t)requested));
			r = redefine(rv, def, done, opaque, &err);
			if (r < 0) {
				log_full(LOG_WARNING, rv->name, id, "definition not updated: %s",
					 err->msg);
				error_free(err);
			}
			return r == 0;
		}
	}
	return false;
}

bool registry_device_removed(struct registry_vm *rv, const char *id, void (*done)(void *opaque),
			     void *opaque)
{
	json_auto_t *def = json_deep_copy(rv->def);
	static const char *const kinds[] = {"disks", "nics", "input"};
	struct error *err = NULL;
	bool found = false;
	int r;

	for (size_t k = 0; def && k < ARRAY_SIZE(kinds); k++) {
		json_t *list = json_object_get(def, kinds[k]);
		size_t i;
		json_t *e;

		json_array_foreach (list, i, e) {
			const char *eid = json_string_value(json_object_get(e, "id"));

			if (eid && strcmp(eid, id) == 0) {
				json_array_remove(list, i);
				found = true;
				break;
			}
		}
	}
	if (!found) {
		return false;
	}
	r = redefine(rv, def, done, opaque, &err);
	if (r < 0) {
		log_full(LOG_WARNING, rv->name, id, "definition not updated: %s", err->msg);
		error_free(err);
	}
	return r == 0;
}

enum vm_run_state registry_vm_state(struct registry_vm *rv)
{
	if (!rv->vm && rv->inmigrate && rv->mig) {
		/*
		 * An incoming migration that failed (its MIGRATION event may
		 * already be out) whose wake-up is still queued: it ends
		 * inmigrate now, as the event said.
		 */
		migration_active(rv);
	}
	if (!rv->vm && rv->inmigrate) {
		return VM_STATE_INMIGRATE;
	}
	if (!rv->vm) {
		/* Being built: not running yet (QEMU's state before "cont"). */
		return rv->busy == REGISTRY_STARTING ? VM_STATE_PRELAUNCH : VM_STATE_SHUTDOWN;
	}
	return vm_get_state(rv->vm);
}

json_t *registry_vm_info(struct registry_vm *rv)
{
	enum vm_run_state st = registry_vm_state(rv);
	json_t *info;

	info = json_pack("{s:s, s:s, s:b, s:b, s:i, s:I}", "name", rv->name, "status",
			 vm_run_state_name(st), "running", st == VM_STATE_RUNNING, "autostart",
			 rv->cfg->autostart, "vcpus", (int)rv->cfg->vcpus, "memory",
			 (json_int_t)rv->cfg->memory);
	if (!info) {
		return NULL;
	}
	if (rv->vm) {
		char *qmp = NULL;
		const char *console = vm_console_socket(rv->vm);

		if (asprintf(&qmp, "%s/%s.qmp", rv->reg->run_vms_dir, rv->name) >= 0) {
			json_object_set_new(info, "qmp-socket", json_string(qmp));
			free(qmp);
		}
		if (console) {
			json_object_set_new(info, "console-socket", json_string(console));
		}
	}
	if (rv->cfg->serial_log) {
		json_object_set_new(info, "console-log", json_string(rv->cfg->serial_log));
	} else {
		char *log = NULL;

		if (asprintf(&log, "%s/%s.console", rv->reg->run_vms_dir, rv->name) >= 0) {
			json_object_set_new(info, "console-log", json_string(log));
			free(log);
		}
	}
	return info;
}

json_t *registry_query(struct registry *reg)
{
	json_t *list = json_array();
	struct list_head *p;

	list_for_each (p, &reg->vms) {
		json_array_append_new(list,
				      registry_vm_info(list_entry(p, struct registry_vm, link)));
	}
	return list;
}

unsigned registry_count(struct registry *reg)
{
	return reg->n_vms;
}

unsigned registry_running(struct registry *reg)
{
	struct list_head *p;
	unsigned n = 0;

	list_for_each (p, &reg->vms) {
		if (registry_vm_state(list_entry(p, struct registry_vm, link)) ==
		    VM_STATE_RUNNING) {
			n++;
		}
	}
	return n;
}

const char *registry_run_dir(struct registry *reg)
{
	return reg->run_vms_dir;
}

static bool has_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && strcmp(s + n - m, suffix) == 0;
}

int registry_load(struct registry *reg)
{
	DIR *d = opendir(reg->vms_dir);
	struct dirent *de;
	int n = 0;

	if (!d) {
		log_error("cannot read %s: %s", reg->vms_dir, strerror(errno));
		return 0;
	}
	while ((de = readdir(d))) {
		_cleanup_free_ char *path = NULL;
		_cleanup_(vm_config_freep) struct vm_config *cfg = NULL;
		struct error *err = NULL;
		json_auto_t *def = NULL;
		json_error_t jerr;
		size_t len = strlen(de->d_name);

		if (de->d_name[0] == '.' || !has_suffix(de->d_name, ".json")) {
			continue;
		}
		if (asprintf(&path, "%s/%s", reg->vms_dir, de->d_name) < 0) {
			break;
		}
		def = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
		if (!def) {
			log_error("skipping %s: line %d: %s", path, jerr.line, jerr.text);
			continue;
		}
		if (vm_config_from_json(def, false, &cfg, &err) < 0) {
			log_error("skipping %s: %s", path, err->msg);
			error_free(err);
			continue;
		}
		if (strlen(cfg->name) != len - 5 || strncmp(cfg->name, de->d_name, len - 5) != 0 ||
		    !registry_name_valid(cfg->name) || registry_find(reg, cfg->name)) {
			log_error("skipping %s: it defines VM '%s', not the one its name says",
				  path, cfg->name);
			continue;
		}
		if (!entry_new(reg, cfg, def)) {
			break;
		}
		TAKE_PTR(cfg);
		TAKE_PTR(def);
		n++;
	}
	closedir(d);
	return n;
}

void registry_autostart(struct registry *reg)
{
	struct list_head *p;

	list_for_each (p, &reg->vms) {
		struct registry_vm *rv = list_entry(p, struct registry_vm, link);
		struct error *err = NULL;

		if (!rv->cfg->autostart || rv->vm || rv->busy) {
			continue;
		}
		if (registry_start_async(rv, NULL, NULL, &err) < 0) {
			log_full(LOG_ERR, rv->name, NULL, "autostart failed: %s", err->msg);
			error_free(err);
		}
	}
}

void registry_shutdown(struct registry *reg)
{
	registry_shutdown_keep(reg, NULL);
}

void registry_shutdown_keep(struct registry *reg, registry_keep_fn *keep)
{
	struct list_head *p;

	/* Starts and destroys in flight finish first (a hung backend: 30 s at most). */
	reg->shutting_down = true;
	workers_wait(reg->workers, 30000);
	/* Migrations end first: cancelled, their workers joined (the VMs resume here). */
	list_for_each (p, &reg->vms) {
		migration_free(list_entry(p, struct registry_vm, link));
	}
	/* Pause every vCPU first, so no VM runs while the others are torn down. */
	list_for_each (p, &reg->vms) {
		struct registry_vm *rv = list_entry(p, struct registry_vm, link);

		rv->ran_at_shutdown = rv->vm && vm_get_state(rv->vm) == VM_STATE_RUNNING;
		if (rv->ran_at_shutdown) {
			vm_pause(rv->vm, NULL);
		}
	}
	list_for_each (p, &reg->vms) {
		struct registry_vm *rv = list_entry(p, struct registry_vm, link);
		struct error *err = NULL;

		if (rv->vm && keep && !rv->busy && keep(rv, rv->ran_at_shutdown, &err) < 0) {
			log_full(LOG_ERR, rv->name, NULL,
				 "cannot keep the VM across the restart: %s", err ? err->msg : "?");
			error_free(err);
		}
		if (rv->vm && !rv->disks_busy) {
			/* (a snapshot's worker still stuck after 30 s keeps it: left to exit) */
			destroy_now(rv, "host-signal");
		}
	}
	/* The definitions' last rewrites reach their files (a restart reads them). */
	workers_wait(reg->workers, 5000);
}

/* --- vm-save / vm-restore (docs/vmstate.md) ------------------------------ */

struct registry_save {
	struct registry *reg;
	struct registry_vm *rv;
	char name[72]; /* the VM's, for the report */
	char *dir;
	bool stop;
	struct timespec t0;
	/* written by the worker, read in save_done */
	int result;
	struct error *err;
	uint64_t bytes;
};

static void save_job(void *arg)
{
	struct registry_save *s = arg;

	s->result = vm_save(s->rv->vm, s->dir, &s->bytes, &s->err);
}

static uint64_t ms_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)(t.tv_sec - t0->tv_sec) * 1000 +
	       (uint64_t)((t.tv_nsec - t0->tv_nsec) / 1000000);
}

static void save_report(struct registry_save *s, struct registry *reg, const char *name)
{
	json_t *data = json_pack("{s:s, s:s, s:I}", "path", s->dir, "status",
				 s->result == 0 ? "completed" : "failed", "duration-ms",
				 (json_int_t)ms_since(&s->t0));

	if (s->result == 0) {
		json_object_set_new(data, "memory-bytes", json_integer((json_int_t)s->bytes));
		log_full(LOG_INFO, name, NULL, "VM saved to %s", s->dir);
	} else {
		json_object_set_new(data, "error", json_string(s->err ? s->err->msg : "failed"));
		log_full(LOG_ERR, name, NULL, "saving to %s failed: %s", s->dir,
			 s->err ? s->err->msg : "?");
	}
	emit(reg, name, "VM_SAVE_COMPLETED", data);
	error_free(s->err);
	free(s->dir);
	free(s);
}

/* vm-save with stop: the VM is down (SHUTDOWN sent), now the save is complete. */
static void save_stopped(void *opaque, struct registry_vm *rv, int r, struct error *err)
{
	struct registry_save *s = opaque;

	error_free(err);
	save_report(s, s->reg, rv ? rv->name : s->name);
}

/* Control thread: resume or stop the VM, report. */
static void save_done(void *arg)
{
	struct registry_save *s = arg;
	struct registry_vm *rv = s->rv;
	struct registry *reg = rv->reg;
	bool stop = s->stop && s->result == 0 && !reg->shutting_down;

	rv->busy = REGISTRY_IDLE;
	vm_save_end(rv->vm, !stop);
	if (stop && destroy_async(rv, "host-qmp-quit", true, false, save_stopped, s, NULL) == 0) {
		return;
	}
	save_report(s, reg, rv->name);
	/* A forbidden call while it was being saved: the VM ends now. */
	check_violation(rv);
}

int registry_save(struct registry_vm *rv, const char *dir, bool stop, struct error **errp)
{
	struct registry *reg = rv->reg;
	struct registry_save *s;
	int r;

	if (rv->busy) {
		return error_set(errp, EBUSY, "VM '%s' is %s; try again when that is done",
				 rv->name, busy_name(rv));
	}
	r = registry_disks_check(rv, errp);
	if (r < 0) {
		return r;
	}
	if (!rv->vm) {
		return error_set_class(errp, ERROR_CLASS_DEVICE_NOT_ACTIVE, ENODEV,
				       "VM '%s' is not running", rv->name);
	}
	r = check_path(reg, "snapshot directory", dir, errp);
	if (r < 0) {
		return r;
	}
	s = calloc(1, sizeof(*s));
	if (!s || !(s->dir = strdup(dir))) {
		free(s);
		return error_set(errp, ENOMEM, "out of memory");
	}
	s->reg = reg;
	s->rv = rv;
	snprintf(s->name, sizeof(s->name), "%s", rv->name);
	s->stop = stop;
	clock_gettime(CLOCK_MONOTONIC, &s->t0);
	r = vm_save_begin(rv->vm, errp);
	if (r == 0) {
		r = worker_run_for(reg->workers, &rv->inst->violated, save_job, save_done, s, errp);
		if (r < 0) {
			vm_save_end(rv->vm, true);
		}
	}
	if (r < 0) {
		free(s->dir);
		free(s);
		return r;
	}
	rv->busy = REGISTRY_SAVING;
	log_full(LOG_INFO, rv->name, NULL, "saving to %s", dir);
	return 0;
}

/* Apply {id, key...} overrides to the definition's @list ("disks" or "nics"). */
static int apply_overrides(json_t *def, const char *list, json_t *over, const char *const *keys,
			   struct error **errp)
{
	json_t *items = json_object_get(def, list);
	size_t i;
	json_t *o;

	if (!over) {
		return 0;
	}
	json_array_foreach (over, i, o) {
		const char *id = json_string_value(json_object_get(o, "id"));
		json_t *target = NULL;
		size_t j;
		json_t *it;

		json_array_foreach (items, j, it) {
			const char *tid = json_string_value(json_object_get(it, "id"));

			if (id && tid && strcmp(id, tid) == 0) {
				target = it;
			}
		}
		if (!target) {
			return error_set_class(errp, ERROR_CLASS_DEVICE_NOT_FOUND, ENOENT,
					       "the saved VM has no %s with id '%s'",
					       strcmp(list, "disks") == 0 ? "disk" : "NIC",
					       id ? id : "");
		}
		for (const char *const *k = keys; *k; k++) {
			json_t *v = json_object_get(o, *k);

			if (v) {
				json_object_set(target, *k, v);
				/* a tap is named or passed, never both */
				if (!strcmp(*k, "ifname")) {
					json_object_del(target, "fd");
				} else if (!strcmp(*k, "fd")) {
					json_object_del(target, "ifname");
				}
			}
		}
	}
	return 0;
}

/*
 * A restore in two steps on workers: the snapshot opened (its manifest
 * read: a client's path, which may be slow or never answer), then, after
 * the checks here, the VM built.
 */
struct registry_restore {
	struct registry *reg;
	char *dir;
	char *name;		  /* the name asked for, or NULL */
	json_t *disks, *nics;	  /* the overrides asked for, or NULL */
	struct vm_snapshot *snap; /* open_job's, until restore_job is done with it */
	bool paused;
	struct vm_config *cfg;
	json_t *def;		/* canonical form of cfg */
	struct registry_vm *rv; /* the VM's entry, reserved before the build */
	bool created;		/* rv is new, for this restore (else it was defined) */
	bool persisted;		/* restore_job wrote def to the VM's definition file */
	uint64_t seq;		/* as write number seq of rv->writer */
	struct registry_instance *inst;
	registry_done_fn done;
	void *opaque;
	struct vm *vm;
	int r;
	struct error *err;
};

static void restore_free(struct registry_restore *rs)
{
	vm_snapshot_close(rs->snap);
	vm_config_free(rs->cfg);
	json_decref(rs->def);
	json_decref(rs->disks);
	json_decref(rs->nics);
	free(rs->name);
	free(rs->dir);
	error_free(rs->err);
	free(rs);
}

static void restore_job(void *arg)
{
	struct registry_restore *rs = arg;

	rs->r = vm_restore(rs->cfg, &rs->inst->host, rs->snap, true, &rs->vm, &rs->err);
	vm_snapshot_close(TAKE_PTR(rs->snap));
	if (rs->r == 0) {
		/* The definition file too (write, fsync): not on the control thread. */
		rs->r = writer_persist(rs->rv->writer, rs->seq, rs->def, &rs->err);
		rs->persisted = rs->r == 0;
		if (rs->r < 0) {
			vm_destroy(TAKE_PTR(rs->vm));
		}
	}
}

/*
 * After a failure (worker): the VM built, if any, destroyed and the
 * definition file the restore wrote for a new VM removed.
 */
static void restore_undo_job(void *arg)
{
	struct registry_restore *rs = arg;
	struct error *err = NULL;

	if (rs->vm) {
		vm_destroy(TAKE_PTR(rs->vm));
	}
	if (rs->persisted && rs->created && unlink_definition(rs->reg, rs->rv, &err) < 0) {
		log_full(LOG_ERR, rs->rv->name, NULL,
			 "the definition file of the failed restore stays: %s", err->msg);
		error_free(err);
	}
}

/* The failure's answer, once restore_undo_job is done. */
static void restore_undone(void *arg)
{
	struct registry_restore *rs = arg;
	struct registry_vm *rv = rs->rv;
	struct error *err = TAKE_PTR(rs->err);

	rv->busy = REGISTRY_IDLE;
	if (rs->persisted && !rs->created) {
		registry_write_definition(rv, NULL, NULL); /* as before the restore */
	}
	if (rs->created) {
		vm_entry_free(rv);
	}
	instance_free(rs->inst);
	error_prefix(&err, "cannot restore from %s", rs->dir);
	if (rs->done) {
		rs->done(rs->opaque, NULL, rs->r, err);
	} else {
		error_free(err);
	}
	release_memory();
	restore_free(rs);
}

static void restore_done(void *arg)
{
	struct registry_restore *rs = arg;
	struct registry *reg = rs->reg;
	struct registry_vm *rv = rs->rv;
	struct error *err = TAKE_PTR(rs->err);
	int r = rs->r;

	instance_drop_fds(rs->inst);
	if (r == 0 && reg->shutting_down) {
		r = error_set(&err, ECANCELED, "vmmd is stopping");
	}
	if (r == 0) {
		r = reg->hooks->vm_up(reg->hooks->opaque, rs->cfg->name, -1, &err);
	}
	if (r < 0) {
		/* undone on a worker (vm_destroy, the file), the name still reserved */
		rs->r = r;
		rs->err = err;
		if (worker_run_for(reg->workers, &rs->inst->violated, restore_undo_job,
				   restore_undone, rs, NULL) < 0) {
			restore_undo_job(rs);
			restore_undone(rs);
		}
		return;
	}
	rv->busy = REGISTRY_IDLE;
	if (!rs->created) {
		vm_config_free(rv->cfg);
		json_decref(rv->def);
		rv->cfg = TAKE_PTR(rs->cfg);
		rv->def = TAKE_PTR(rs->def);
	}
	rv->vm = rs->vm;
	rv->inst = rs->inst;
	if (!rs->paused) {
		vm_resume(rv->vm, NULL);
	}
	log_full(LOG_INFO, rv->name, NULL, "VM restored from %s", rs->dir);
	changed(reg);
	if (rs->done) {
		rs->done(rs->opaque, rv, 0, NULL);
	}
	restore_free(rs);
	/* A violation while it was being restored found no VM to stop then. */
	check_violation(rv);
}

void registry_check_violation(struct registry_vm *rv)
{
	check_violation(rv);
}

int *registry_violation_flag(struct registry_vm *rv)
{
	return rv->inst ? &rv->inst->violated : NULL;
}

/* After open_job: the definition from the snapshot, checked here, and the build queued. */
static int restore_queue(struct registry_restore *rs, struct error **errp)
{
	static const char *const disk_keys[] = {"file", "format", NULL};
	static const char *const nic_keys[] = {"ifname", "fd", NULL};
	struct registry *reg = rs->reg;
	json_auto_t *def = json_deep_copy(vm_snapshot_definition(rs->snap));
	int r;

	if (!def) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	if (reg->shutting_down) {
		return error_set(errp, ECANCELED, "vmmd is stopping");
	}
	if (rs->name) {
		json_object_set_new(def, "name", json_string(rs->name));
	}
	r = apply_overrides(def, "disks", rs->disks, disk_keys, errp);
	if (r == 0) {
		r = apply_overrides(def, "nics", rs->nics, nic_keys, errp);
	}
	if (r == 0) {
		r = vm_config_from_json(def, false, &rs->cfg, errp);
	}
	if (r < 0) {
		return r;
	}
	if (!registry_name_valid(rs->cfg->name)) {
		return error_set(errp, EINVAL, "VM name '%s' is invalid", rs->cfg->name);
	}
	rs->rv = registry_find(reg, rs->cfg->name);
	if (rs->rv && (rs->rv->vm || rs->rv->busy || rs->rv->deleting)) {
		return error_set(errp, EBUSY,
				 "VM '%s' is running or busy; destroy it first or restore under "
				 "another name",
				 rs->cfg->name);
	}
	if (!rs->rv && reg->n_vms >= reg->max_vms) {
		return error_set(errp, ENOSPC,
				 "vmmd already has %u VMs defined (max-vms in vmmd.conf)",
				 reg->max_vms);
	}
	r = check_paths(reg, rs->cfg, errp);
	if (r < 0) {
		return r;
	}
	rs->def = vm_config_to_json(rs->cfg);
	rs->inst = calloc(1, sizeof(*rs->inst) + strlen(rs->cfg->name) + 1);
	if (!rs->def || !rs->inst) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	strcpy(rs->inst->name, rs->cfg->name);
	rs->inst->reg = reg;
	rs->inst->gen = ++reg->next_gen;
	rs->inst->host.run_dir = reg->run_dir;
	rs->inst->host.socket_mode = reg->socket_mode;
	rs->inst->host.socket_gid = reg->socket_gid;
	rs->inst->host.populate_rate = reg->populate_rate;
	rs->inst->host.event = on_vm_event;
	rs->inst->host.get_fd = on_get_fd;
	rs->inst->host.thread_start = on_thread_start;
	rs->inst->host.opaque = rs->inst;
	r = take_fds(reg, rs->cfg, rs->inst, errp);
	if (r < 0) {
		return r;
	}
	if (!rs->rv) {
		/*
		 * The name is taken from now on (a vm-create of it is refused):
		 * the job writes its definition file. Undone if the restore fails.
		 */
		struct vm_config *cfg = NULL;
		json_t *copy = json_deep_copy(rs->def);

		if (!copy || vm_config_from_json(copy, false, &cfg, NULL) < 0 ||
		    !(rs->rv = entry_new(reg, cfg, copy))) {
			vm_config_free(cfg);
			json_decref(copy);
			return error_set(errp, ENOMEM, "out of memory");
		}
		rs->created = true;
	}
	rs->seq = ++rs->rv->writer->seq;
	r = worker_run_for(reg->workers, &rs->inst->violated, restore_job, restore_done, rs, errp);
	if (r < 0) {
		if (rs->created) {
			vm_entry_free(TAKE_PTR(rs->rv));
			rs->created = false;
		}
		return r;
	}
	rs->rv->busy = REGISTRY_RESTORING;
	return 0;
}

static void open_job(void *arg)
{
	struct registry_restore *rs = arg;

	rs->r = vm_snapshot_open(rs->dir, &rs->snap, &rs->err);
}

static void open_done(void *arg)
{
	struct registry_restore *rs = arg;
	struct error *err = TAKE_PTR(rs->err);
	int r = rs->r;

	if (r == 0) {
		r = restore_queue(rs, &err);
	}
	if (r == 0) {
		return; /* restore_done goes on */
	}
	if (rs->inst) {
		instance_free(rs->inst);
	}
	if (rs->done) {
		rs->done(rs->opaque, NULL, r, err);
	} else {
		error_free(err);
	}
	restore_free(rs);
}

int registry_restore_async(struct registry *reg, const char *dir, const char *name, json_t *disks,
			   json_t *nics, bool paused, registry_done_fn done, void *opaque,
			   struct error **errp)
{
	struct registry_restore *rs;
	int r;

	r = check_path(reg, "snapshot directory", dir, errp);
	if (r < 0) {
		return r;
	}
	rs = calloc(1, sizeof(*rs));
	if (!rs || !(rs->dir = strdup(dir)) || (name && !(rs->name = strdup(name)))) {
		if (rs) {
			restore_free(rs);
		}
		return error_set(errp, ENOMEM, "out of memory");
	}
	rs->reg = reg;
	rs->paused = paused;
	rs->done = done;
	rs->opaque = opaque;
	rs->disks = json_incref(disks);
	rs->nics = json_incref(nics);
	r = worker_run(reg->workers, open_job, open_done, rs, errp);
	if (r < 0) {
		restore_free(rs);
	}
	return r;
}

struct registry_instance *registry_adopt_prepare(struct registry_vm *rv, struct error **errp)
{
	struct registry *reg = rv->reg;
	struct registry_instance *inst;

	inst = calloc(1, sizeof(*inst) + strlen(rv->name) + 1);
	if (!inst) {
		error_set(errp, ENOMEM, "out of memory");
		return NULL;
	}
	strcpy(inst->name, rv->name);
	inst->reg = reg;
	inst->gen = ++reg->next_gen;
	inst->host.run_dir = reg->run_dir;
	inst->host.socket_mode = reg->socket_mode;
	inst->host.socket_gid = reg->socket_gid;
	inst->host.populate_rate = reg->populate_rate;
	inst->host.event = on_vm_event;
	inst->host.get_fd = on_get_fd;
	inst->host.nic_fd = on_nic_fd;
	inst->host.disk_node = on_disk_node;
	inst->early = rv->early;
	inst->n_early = rv->n_early;
	inst->host.thread_start = on_thread_start;
	inst->host.keep_console_log = true;
	inst->host.opaque = inst;
	if (take_fds(reg, rv->cfg, inst, errp) < 0) {
		instance_free(inst);
		return NULL;
	}
	return inst;
}

const struct vm_host *registry_instance_host(struct registry_instance *inst)
{
	return &inst->host;
}

int *registry_instance_violation_flag(struct registry_instance *inst)
{
	return &inst->violated;
}

void registry_instance_free(struct registry_instance *inst)
{
	instance_free(inst);
}

int registry_adopt(struct registry_vm *rv, struct registry_instance *inst, struct vm *vm,
		   bool paused, const char *from, struct error **errp)
{
	struct registry *reg = rv->reg;
	int r;

	instance_drop_fds(inst);
	r = reg->shutting_down ? error_set(errp, ECANCELED, "vmmd is stopping")
			       : reg->hooks->vm_up(reg->hooks->opaque, rv->name, -1, errp);
	if (r < 0) {
		vm_destroy(vm);
		instance_free(inst);
		return r;
	}
	rv->vm = vm;
	rv->inst = inst;
	rv->inmigrate = false;
	/* its disks hold the early nodes now (and an export of them its own) */
	inst->early = NULL;
	inst->n_early = 0;
	release(rv, NULL, false);
	if (!paused) {
		vm_resume(vm, NULL);
	}
	log_full(LOG_INFO, rv->name, NULL, "VM taken over from %s", from);
	if (rv->cfg->incoming) {
		/* The VM is here now: a restart of this daemon starts it instead of waiting again. */
		json_auto_t *def = json_deep_copy(rv->def);
		struct error *err = NULL;

		if (def) {
			json_object_del(def, "incoming");
		}
		if (!def || redefine(rv, def, NULL, NULL, &err) < 0) {
			log_full(LOG_WARNING, rv->name, NULL,
				 "definition still says \"incoming\": %s",
				 err ? err->msg : "out of memory");
			error_free(err);
		}
	}
	changed(reg);
	return 0;
}
