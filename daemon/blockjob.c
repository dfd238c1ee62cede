/*
 * External snapshots and block jobs: see blockjob.h.
 *
 * A disk is named by its id ("device") or by the node name of a node of
 * its chain. Every change of the graph happens with the disk's top node
 * drained (block_drain_begin()): guest requests wait (or are held) until
 * the change is done, then go to the new graph.
 *
 * Stream copies, chunk by chunk with the top drained (so no guest write
 * lands between the copy's read and write), what the layers between the
 * top and the base hold and the top does not; at finalize the top's
 * backing becomes the base. Intermediate commit copies what the layers
 * from top down to the base hold into the base (reopened read-write; the
 * guest never reads those ranges of the base, the layers above shadow
 * them); at finalize the node above the top gets the base as backing.
 * Active commit tracks the guest's writes to the top (block_dirty_*),
 * copies until nothing is dirty, goes ready, keeps mirroring, and on
 * job-complete drains the top, copies what is left and pivots the disk
 * to the base. Mirror (blockdev-mirror) is active commit into a node
 * outside the chain, a blockdev-add node claimed for the job: what its
 * sync mode names is dirty to begin with (the whole disk, what the layers
 * above the backing hold, or nothing), and the pivot swaps the target
 * into the disk's node.
 *
 * Threads: the commands on the control thread; run/prepare/commit/abort of
 * the jobs on the job's worker thread; finished() on the control thread.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/parse.h"
#include "common/thread.h"
#include "daemon/blockjob.h"
#include "daemon/jobs.h"
#include "daemon/registry.h"
#include "hw/device.h"
#include "vmmd/block.h"

/* QEMU's STREAM_CHUNK and the commit buffer: bytes per copy step. */
#define BLOCKJOB_CHUNK (512u << 10)
/* Active commit: dirty tracking granularity, and how often it looks for new writes. */
#define BLOCKJOB_DIRTY_GRANULARITY (64u << 10)
/* blockdev-mirror's granularity: QEMU's bounds */
#define MIRROR_GRANULARITY_MIN 512u
#define MIRROR_GRANULARITY_MAX (64u << 20)
#define BLOCKJOB_MIRROR_POLL_NS 50000000ull
/* A node name a client gives: blockdev-add's bound (hw/hotplug.c) */
#define BLOCKJOB_NODE_NAME_MAX 63

static struct vm *live_vm(struct registry_vm *rv, struct error **errp)
{
	if (!rv->vm) {
		error_set_class(errp, ERROR_CLASS_DEVICE_NOT_ACTIVE, ENODEV,
				"VM '%s' is not running; start it with vm-start", rv->name);
	}
	return rv->vm;
}

/* A disk and a node of its chain, found by disk id or node name. */
struct disk_node {
	const char *id;		 /* the disk */
	struct block_node *root; /* its top node */
	struct block_node *node; /* the node asked for */
	const char *device;	 /* lookup keys */
	const char *node_name;
};

static void match(void *opaque, const char *id, struct block_node *bs)
{
	struct disk_node *d = opaque;

	if (d->node) {
		return;
	}
	if (d->device && strcmp(id, d->device) == 0) {
		d->id = id;
		d->root = d->node = bs;
	} else if (d->node_name) {
		struct block_node *n = block_chain_find(bs, NULL, d->node_name);

		if (n) {
			d->id = id;
			d->root = bs;
			d->node = n;
		}
	}
}

static bool find_disk(struct vm *vm, const char *device, const char *node_name,
		      struct disk_node *ret)
{
	memset(ret, 0, sizeof(*ret));
	ret->device = device;
	ret->node_name = node_name;
	vm_for_each_disk(vm, match, ret);
	return ret->node != NULL;
}

/* The running VM and its disk @device (an id or a node name of its chain). */
static int live_disk(struct registry_vm *rv, const char *device, struct vm **ret_vm,
		     struct disk_node *d, struct error **errp)
{
	*ret_vm = live_vm(rv, errp);
	if (!*ret_vm) {
		return -ENODEV;
	}
	if (!find_disk(*ret_vm, device, device, d)) {
		return error_set(errp, ENOENT, "Cannot find device='%s' nor node-name='%s'", device,
				 device);
	}
	return 0;
}

static void name_used(void *opaque, const char *id, struct block_node *bs)
{
	const char **name = opaque;

	if (*name && block_chain_find(bs, NULL, *name)) {
		*name = NULL;
	}
}

static bool node_name_in_use(struct vm *vm, const char *name)
{
	const char *n = name;

	vm_for_each_disk(vm, name_used, &n);
	return n == NULL;
}

/* ---- the block jobs ---- */

struct bjob {
	struct registry *reg;
	char *vm;
	char *disk;
	struct block_node *root; /* the disk's top node: drains */
	struct block_node *top;	 /* stream: target; commit: top of what is committed */
	struct block_node *base; /* stream: the node kept below (NULL: none); commit: target */
	char *backing_file;	 /* the name to record, or NULL */
	bool commit, active;
	/* blockdev-mirror: base is the target, outside the chain */
	bool mirror;
	enum {
		MIRROR_FULL,
		MIRROR_TOP,
		MIRROR_NONE
	} sync;
	uint64_t granularity; /* of the write tracking */
	struct vm *vmp;	      /* outlives its jobs: a destroy waits for them */
	char *target;	      /* the target's node name (drive-mirror: if given) */
	bool claimed;	      /* ... claimed in the VM's blockdev-add table */
	bool target_zeroed;   /* a new image: what no layer holds needs no copy */
	bool drained;	      /* the worker holds a drain of root */
	bool base_rw;	      /* base reopened read-write by us */
	bool pivoted;	      /* active commit switched the disk to the base */
	char *new_file;	      /* after a pivot: the disk's image */
	char *new_format;
	struct def_write *def_write; /* active commit: the definition after the pivot */
	/*
	 * backup: base is the target. The disk's writes wait for the copy of
	 * what they overwrite (block_cbw_*, started with the disk drained by
	 * the transaction's worker); the copier thread copies what a write
	 * waits for, the job's thread the rest in order, one at a time.
	 */
	bool backup;
	bool cbw; /* root's copy-before-write tracker is ours */
	bool copier_running;
	pthread_t copier;
	pthread_mutex_t copy_lock; /* one copy at a time; backup only */
	bool copier_stop;	   /* under copy_lock */
	int copier_err;		   /* the copier's failed copy (under copy_lock) */
	struct job *job;
	/* a dirty bitmap it copies (sync incremental, bitmap) or keeps up to date */
	char *bitmap;
	bool bitmap_sync;
	enum {
		BITMAP_ON_SUCCESS,
		BITMAP_NEVER,
		BITMAP_ALWAYS
	} bitmap_mode;
	bool bitmap_taken;
};

static void bjob_free(void *opaque)
{
	struct bjob *j = opaque;

	if (!j) {
		return;
	}
	if (j->bitmap_taken) {
		block_dirty_bitmap_end_backup(j->root, j->bitmap, j->bitmap_mode != BITMAP_NEVER,
					      false);
	}
	if (j->cbw) {
		block_cbw_stop(j->root); /* a backup that never ran: the disk's writes go on */
	}
	free(j->bitmap);
	if (j->backup) {
		pthread_mutex_destroy(&j->copy_lock);
	}
	if (j->claimed) {
		/* a job that never ran: the table keeps its reference, nothing closes here */
		vm_blockdev_unclaim(j->vmp, j->target, false);
	}
	free(j->target);
	block_unref(j->root);
	block_unref(j->top);
	block_unref(j->base);
	free(j->backing_file);
	free(j->vm);
	free(j->disk);
	registry_def_write_free(j->def_write);
	free(j->new_file);
	free(j->new_format);
	free(j);
}

static void drain(struct bjob *j)
{
	if (!j->drained) {
		block_drain_begin(j->root);
		j->drained = true;
	}
}

static void undrain(struct bjob *j)
{
	if (j->drained) {
		block_drain_end(j->root);
		j->drained = false;
	}
}

/*
 * Copy [off, off+len) as the chain above @to shows it, from @from into
 * @to. Returns 0, or -errno with *ret_read telling which side failed.
 */
static int copy_range(struct block_node *from, struct block_node *to, void *buf, uint64_t off,
		      uint64_t len, bool *ret_read)
{
	int r = block_pread(from, off, buf, len);

	*ret_read = true;
	if (r < 0) {
		return r;
	}
	*ret_read = false;
	return block_pwrite(to, off, buf, len);
}

/*
 * An I/O error of the job's copy: the on-error policy says whether to fail
 * (returns the error), go on (returns 0) or retry after a pause (1).
 */
static int io_error(struct job *job, bool is_read, int err, struct error **errp)
{
	switch (job_block_io_error(job, is_read, err)) {
	case JOB_ON_ERROR_IGNORE:
		return 0;
	case JOB_ON_ERROR_STOP:
		return 1;
	default:
		/* QEMU's job error is the errno text alone */
		return error_set(errp, -err, "%s", strerror(-err));
	}
}

static int stream_run(struct job *job, struct error **errp)
{
	struct bjob *j = job_opaque(job);
	uint64_t len = block_length(j->top), off = 0;
	_cleanup_free_ void *buf = NULL;

	if (posix_memalign(&buf, 4096, BLOCKJOB_CHUNK) != 0) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	job_progress_set_total(job, len);
	while (off < len) {
		uint64_t n = MIN((uint64_t)BLOCKJOB_CHUNK, len - off), pnum;
		bool in_top, below = false, is_read = false;
		int r;

		if (job_pause_point(job)) {
			return -ECANCELED;
		}
		drain(j);
		r = block_is_allocated_above(j->top, block_backing(j->top), off, n, &pnum, &in_top);
		if (r == 0 && !in_top) {
			n = pnum;
			r = block_is_allocated_above(block_backing(j->top), j->base, off, n, &pnum,
						     &below);
		}
		if (r == 0) {
			n = pnum;
			if (below) {
				r = copy_range(j->top, j->top, buf, off, n, &is_read);
			}
		}
		undrain(j);
		if (r < 0) {
			r = io_error(job, is_read, r, errp);
			if (r < 0) {
				return r;
			}
			if (r > 0) {
				continue; /* stopped: retry this chunk after job-resume */
			}
		}
		off += n;
		job_progress_update(job, n);
		if (below && job_rate_limit(job, n)) {
			return -ECANCELED;
		}
	}
	return 0;
}

static int stream_prepare(struct job *job, struct error **errp)
{
	struct bjob *j = job_opaque(job);
	int r;

	drain(j);
	r = block_set_backing(j->top, j->base, j->backing_file, errp);
	undrain(j);
	return r;
}

/* Intermediate commit and the first pass of active commit: the data of [top, base). */
static int commit_copy(struct job *job, struct bjob *j, void *buf, struct error **errp)
{
	uint64_t len = block_length(j->top), off = 0;

	while (off < len) {
		uint64_t n = MIN((uint64_t)BLOCKJOB_CHUNK, len - off), pnum;
		bool alloc = false, is_read = false;
		int r;

		if (job_pause_point(job)) {
			return -ECANCELED;
		}
		r = block_is_allocated_above(j->top, j->base, off, n, &pnum, &alloc);
		if (r == 0) {
			n = pnum;
			if (alloc) {
				r = copy_range(j->top, j->base, buf, off, n, &is_read);
			}
		}
		if (r < 0) {
			r = io_error(job, is_read, r, errp);
			if (r < 0) {
				return r;
			}
			if (r > 0) {
				continue;
			}
		}
		off += n;
		job_progress_update(job, n);
		if (alloc && job_rate_limit(job, n)) {
			return -ECANCELED;
		}
	}
	return 0;
}

/*
 * A dirty run of the disk into the base (the target). A full mirror writes
 * zeroes where no layer of the chain holds data, as QEMU's.
 */
static int mirror_copy(struct bjob *j, void *buf, uint64_t off, uint64_t len, bool *is_read)
{
	while (len) {
		uint64_t pnum = len;
		bool alloc = true;
		int r = 0;

		if (j->mirror && j->sync == MIRROR_FULL && !j->target_zeroed) {
			*is_read = true;
			r = block_is_allocated_above(j->root, NULL, off, len, &pnum, &alloc);
		}
		if (r == 0 && alloc) {
			r = copy_range(j->root, j->base, buf, off, pnum, is_read);
		} else if (r == 0) {
			*is_read = false;
			r = block_write_zeroes(j->base, off, pnum, 0);
		}
		if (r < 0) {
			return r;
		}
		off += pnum;
		len -= pnum;
	}
	return 0;
}

/* Active commit and mirror: copy the dirty ranges of the top into the base. */
static int mirror_dirty(struct job *job, struct bjob *j, void *buf, bool limit, struct error **errp)
{
	uint64_t off, n;

	while (block_dirty_take(j->root, BLOCKJOB_CHUNK, &off, &n)) {
		bool is_read = false;
		int r;

		/* as QEMU's: what is left counts what was written since (len >= offset) */
		job_progress_set_remaining(job, n + block_dirty_bytes(j->root));
		r = mirror_copy(j, buf, off, n, &is_read);

		if (r < 0) {
			block_dirty_mark(j->root, off, n);
			r = io_error(job, is_read, r, errp);
			if (r < 0) {
				return r;
			}
			if (r > 0 && job_pause_point(job)) {
				return -ECANCELED;
			}
			continue;
		}
		job_progress_update(job, n);
		if (limit && job_rate_limit(job, n)) {
			return -ECANCELED;
		}
	}
	return 0;
}

static int commit_start(struct bjob *j, struct error **errp)
{
	struct block_node *below;
	int r;

	drain(j);
	/* what is "dirty" to begin with: what the layers above this one hold */
	below = j->mirror ? block_backing(j->root) : j->base;
	if (j->mirror) {
		r = block_length(j->base) == block_length(j->root)
			    ? 0
			    : error_set(errp, EINVAL,
					"Source and target image have different sizes");
	} else {
		r = block_reopen(j->base, true, errp);
		j->base_rw = r == 0;
	}
	if (r == 0 && j->active) {
		r = block_dirty_start(j->root, j->granularity, errp);
	}
	if (j->mirror && j->sync == MIRROR_FULL && j->target_zeroed) {
		below = NULL; /* what any layer holds */
	}
	if (r == 0 && j->mirror && j->sync == MIRROR_FULL && !j->target_zeroed) {
		block_dirty_mark(j->root, 0, block_length(j->root));
	} else if (r == 0 && j->active && !(j->mirror && j->sync == MIRROR_NONE)) {
		uint64_t len = block_length(j->top), off = 0;

		while (off < len && r == 0) {
			uint64_t pnum;
			bool alloc;

			r = block_is_allocated_above(j->top, below, off, len - off, &pnum, &alloc);
			if (r < 0) {
				error_set_errno(errp, -r, "cannot read the allocation map");
			} else {
				if (alloc) {
					block_dirty_mark(j->root, off, pnum);
				}
				off += pnum;
			}
		}
	}
	undrain(j);
	return r;
}

static int commit_run(struct job *job, struct error **errp)
{
	struct bjob *j = job_opaque(job);
	_cleanup_free_ void *buf = NULL;
	bool ready = false;
	int r;

	if (posix_memalign(&buf, 4096, BLOCKJOB_CHUNK) != 0) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	r = commit_start(j, errp);
	if (r < 0) {
		return r;
	}
	if (!j->active) {
		job_progress_set_total(job, block_length(j->top));
		return commit_copy(job, j, buf, errp);
	}
	job_progress_set_total(job, block_dirty_bytes(j->root));
	for (;;) {
		r = mirror_dirty(job, j, buf, true, errp);
		if (r < 0) {
			return r;
		}
		if (!ready) {
			/* what the target holds is on its disk before anyone is told */
			r = j->mirror ? block_flush(j->base) : 0;
			if (r < 0) {
				return error_set(errp, -r, "%s", strerror(-r));
			}
			job_transition_to_ready(job);
			ready = true;
		}
		if (job_complete_requested(job) || job_cancel_requested(job)) {
			if (job_is_cancelled(job)) {
				return -ECANCELED;
			}
			/* the last pass with the guest held: nothing can be dirtied after it */
			drain(j);
			return mirror_dirty(job, j, buf, false, errp);
		}
		if (job_sleep_ns(job, BLOCKJOB_MIRROR_POLL_NS)) {
			return -ECANCELED;
		}
		job_progress_increase_remaining(job, block_dirty_bytes(j->root));
	}
}

/* The node whose backing node is @child, in @root's chain. */
static struct block_node *parent_of(struct block_node *root, struct block_node *child)
{
	for (struct block_node *b = root; b; b = block_backing(b)) {
		if (block_backing(b) == child) {
			return b;
		}
	}
	return NULL;
}

/* Control thread, before prepare: an active commit's definition after the pivot. */
static void commit_finalizing(struct job *job)
{
	struct bjob *j = job_opaque(job);
	struct registry_vm *rv = registry_find(j->reg, j->vm);
	struct error *err = NULL;

	if (!j->active || !rv || job_cancel_requested(job)) {
		return;
	}
	registry_def_write_free(TAKE_PTR(j->def_write));
	j->def_write = registry_disk_write_prepare(rv, j->disk, block_filename(j->base),
						   block_format(j->base), &err);
	if (!j->def_write) {
		log_full(LOG_WARNING, j->vm, j->disk, "definition file not updated: %s", err->msg);
		error_free(err);
	}
}

static int commit_prepare(struct job *job, struct error **errp)
{
	struct bjob *j = job_opaque(job);
	struct block_node *above;
	struct error *err = NULL;
	int r;

	drain(j);
	if (j->active) {
		/* the disk's image after the switch, for its definition: no switch without it */
		j->new_file = strdup(block_filename(j->base));
		j->new_format = strdup(block_format(j->base));
		if (!j->new_file || !j->new_format) {
			return error_set(errp, ENOMEM, "out of memory");
		}
		block_dirty_stop(j->root);
		if (job_cancel_requested(job)) {
			/* a soft cancel of a ready job: done, without the switch */
			return 0;
		}
		if (j->mirror && j->sync == MIRROR_TOP && !block_backing(j->base) &&
		    block_backing(j->root)) {
			/*
			 * The top alone was copied: the disk needs the rest of its chain
			 * below the target (QEMU 7.2 switches to the target alone, and the
			 * guest would read zeroes where the backing file has data).
			 */
			r = block_set_backing(j->base, block_backing(j->root), NULL, errp);
			if (r < 0) {
				return r;
			}
		}
		r = j->mirror ? block_flush(j->base) : 0;
		if (r < 0) {
			return error_set(errp, -r, "cannot flush the target: %s", strerror(-r));
		}
		if (j->mirror && j->sync == MIRROR_NONE && !block_backing(j->base)) {
			/*
			 * The target holds only what the guest wrote since: it goes on
			 * top of the disk's image (QEMU's drive-mirror; its
			 * blockdev-mirror would switch to the target alone).
			 */
			block_insert_overlay(j->root, TAKE_PTR(j->base));
			if (block_set_backing(j->root, block_backing(j->root), NULL, &err) < 0) {
				log_full(LOG_ERR, j->vm, j->disk,
					 "cannot record the backing file in %s: %s", j->new_file,
					 err->msg);
				error_free(TAKE_PTR(err));
			}
		} else {
			block_pivot(j->root, j->base);
		}
		j->pivoted = true;
		j->base_rw = false;
		/* the definition names the base before anyone hears of the pivot */
		if (j->def_write && registry_def_write_run(j->def_write, &err) < 0) {
			log_full(LOG_WARNING, j->vm, j->disk, "definition file not updated: %s",
				 err->msg);
			error_free(err);
		}
		return 0;
	}
	above = parent_of(j->root, j->top);
	if (!above) {
		return error_set(errp, EIO, "the image above '%s' is gone", block_filename(j->top));
	}
	r = block_set_backing(above, j->base, j->backing_file, errp);
	return r;
}

/* After prepare (or instead of it): the base back to read-only, the guest let go. */
static void commit_clean(struct job *job)
{
	struct bjob *j = job_opaque(job);

	if (j->pivoted && j->base) {
		/* @base holds the layers that were above it: close them here, not on the control thread */
		block_unref(j->base);
		j->base = NULL;
	}
	if (j->claimed) {
		/* pivoted, the target's name is the disk's: its blockdev-add entry goes */
		block_unref(vm_blockdev_unclaim(j->vmp, j->target, j->pivoted));
		j->claimed = false;
	}
	if (j->active && !j->pivoted) {
		drain(j);
		block_dirty_stop(j->root);
	}
	if (j->base_rw) {
		drain(j);
		block_reopen(j->base, false, NULL);
		j->base_rw = false;
	}
	undrain(j);
	/* images dropped from the chain close here, on the worker */
	block_unref(TAKE_PTR(j->top));
	block_unref(TAKE_PTR(j->base));
}

static void bjob_finished(struct job *job, int ret)
{
	struct bjob *j = job_opaque(job);
	struct registry_vm *rv = registry_find(j->reg, j->vm);
	struct error *err = NULL;

	if (ret == 0 && j->pivoted && rv) {
		if (registry_set_disk(rv, j->disk, j->new_file, j->new_format, &err) < 0) {
			log_full(LOG_ERR, j->vm, j->disk, "cannot record the new image: %s",
				 err->msg);
			error_free(err);
		} else {
			/*
			 * commit_prepare wrote the file right after the pivot; again,
			 * in case a hotplug rewrote it from the old definition since
			 */
			registry_write_definition(rv, NULL, NULL);
		}
	}
}

/* QEMU's mirror: a soft cancel of a ready active commit completes it without the pivot. */
static bool commit_cancel(struct job *job, bool force)
{
	struct bjob *j = job_opaque(job);

	return force || !j->active || job_get_status(job) != JOB_STATUS_READY;
}

static void stream_clean(struct job *job)
{
	struct bjob *j = job_opaque(job);

	undrain(j);
	/* images dropped from the chain close here, on the worker */
	block_unref(TAKE_PTR(j->top));
	block_unref(TAKE_PTR(j->base));
}

static const struct job_driver stream_driver = {
	.type = "stream",
	.block = true,
	.run = stream_run,
	.prepare = stream_prepare,
	.commit = stream_clean,
	.abort = stream_clean,
	.free = bjob_free,
};

/* Commit and mirror: one driver but for the type their events and lists show. */
#define ACTIVE_COPY_DRIVER(name)                                                                \
	{                                                                                       \
		.type = (name), .block = true, .run = commit_run, .prepare = commit_prepare,    \
		.finalizing = commit_finalizing, .commit = commit_clean, .abort = commit_clean, \
		.finished = bjob_finished, .cancel = commit_cancel, .can_complete = true,       \
		.free = bjob_free,                                                              \
	}

static const struct job_driver commit_driver = ACTIVE_COPY_DRIVER("commit");
static const struct job_driver mirror_driver = ACTIVE_COPY_DRIVER("mirror");

/* ---- backup ---- */

/* How long the copier waits for a write before it looks for its stop again. */
#define BACKUP_COPIER_POLL_NS 100000000ull

/*
 * Copy what is still marked in [off, off+len) into the target and unmark
 * it, under copy_lock. A full backup writes zeroes where no layer holds
 * data (nothing where the target is a new image), as QEMU's. Returns the
 * bytes copied, or -errno with *is_read telling which side failed.
 */
static int64_t backup_copy(struct bjob *j, void *buf, uint64_t off, uint64_t len, bool *is_read)
{
	uint64_t end = off + len, o, n, done = 0;
	int r = 0;

	while (r == 0 && block_cbw_next(j->root, off, end, BLOCKJOB_CHUNK, &o, &n)) {
		uint64_t pnum = n;
		bool alloc = true;

		if (j->sync == MIRROR_FULL) {
			*is_read = true;
			r = block_is_allocated_above(j->root, NULL, o, n, &pnum, &alloc);
		}
		if (r == 0 && alloc) {
			r = copy_range(j->root, j->base, buf, o, pnum, is_read);
		} else if (r == 0 && !j->target_zeroed) {
			*is_read = false;
			r = block_write_zeroes(j->base, o, pnum, 0);
		}
		if (r == 0) {
			block_cbw_unmark(j->root, o, pnum);
			done += pnum;
			off = o + pnum;
		}
	}
	return r < 0 ? r : (int64_t)done;
}

/* The copier thread: copies first what the disk's writes wait for. */
static void *backup_copier(void *arg)
{
	struct bjob *j = arg;
	void *buf = NULL;
	uint64_t off, len;
	bool stop = false, is_read;

	if (posix_memalign(&buf, 4096, BLOCKJOB_CHUNK) != 0) {
		pthread_mutex_lock(&j->copy_lock);
		j->copier_err = -ENOMEM;
		pthread_mutex_unlock(&j->copy_lock);
		return NULL;
	}
	while (!stop) {
		bool found =
			block_cbw_wait(j->root, BACKUP_COPIER_POLL_NS, BLOCKJOB_CHUNK, &off, &len);
		int64_t n = 0;

		pthread_mutex_lock(&j->copy_lock);
		stop = j->copier_stop;
		if (found && !stop) {
			n = backup_copy(j, buf, off, len, &is_read);
		}
		if (n < 0) {
			/*
			 * The copy before a write failed: the backup is broken, not the
			 * write (the tracker stops, the writes go on; the job fails).
			 */
			j->copier_err = (int)n;
			stop = true;
		}
		pthread_mutex_unlock(&j->copy_lock);
		if (n < 0) {
			block_cbw_stop(j->root);
		} else if (n > 0) {
			job_progress_update(j->job, (uint64_t)n);
		}
	}
	free(buf);
	return NULL;
}

static void backup_stop_copier(struct bjob *j)
{
	if (!j->copier_running) {
		return;
	}
	pthread_mutex_lock(&j->copy_lock);
	j->copier_stop = true;
	pthread_mutex_unlock(&j->copy_lock);
	block_cbw_kick(j->root);
	pthread_join(j->copier, NULL);
	j->copier_running = false;
}

static int backup_copier_error(struct bjob *j, struct error **errp)
{
	int err;

	pthread_mutex_lock(&j->copy_lock);
	err = j->copier_err;
	pthread_mutex_unlock(&j->copy_lock);
	if (err == 0) {
		return 0;
	}
	/* whatever the policy: a copy missed before a write cannot be made again */
	return error_set(errp, -err, "%s", strerror(-err));
}

/* The copy in order of what is still marked; sync none copies only before writes. */
static int backup_loop(struct job *job, struct bjob *j, void *buf, struct error **errp)
{
	uint64_t len = block_length(j->root), off = 0, o, n;

	if (j->sync == MIRROR_NONE) {
		while (!job_sleep_ns(job, BLOCKJOB_MIRROR_POLL_NS)) {
			if (backup_copier_error(j, errp) < 0) {
				return -EIO;
			}
		}
		return -ECANCELED;
	}
	while (block_cbw_next(j->root, off, len, BLOCKJOB_CHUNK, &o, &n)) {
		bool is_read = false;
		int64_t done;
		int r;

		/* the speed is applied before each copy: at speed 1 nothing is copied yet */
		if (job_rate_limit(job, n)) {
			return -ECANCELED;
		}
		r = backup_copier_error(j, errp);
		if (r < 0) {
			return r;
		}
		pthread_mutex_lock(&j->copy_lock);
		done = backup_copy(j, buf, o, n, &is_read);
		pthread_mutex_unlock(&j->copy_lock);
		if (done < 0) {
			r = io_error(job, is_read, (int)done, errp);
			if (r < 0) {
				return r;
			}
			if (r > 0 && job_pause_point(job)) {
				return -ECANCELED;
			}
			if (r == 0) {
				off = o + n; /* ignored: what is left there stays uncopied */
				block_cbw_unmark(j->root, o, n);
			}
			continue;
		}
		job_progress_update(job, (uint64_t)done);
		off = o + n;
	}
	return backup_copier_error(j, errp);
}

static int backup_run(struct job *job, struct error **errp)
{
	struct bjob *j = job_opaque(job);
	_cleanup_free_ void *buf = NULL;
	int r;

	if (posix_memalign(&buf, 4096, BLOCKJOB_CHUNK) != 0) {
		r = error_set(errp, ENOMEM, "out of memory");
	} else {
		r = -thread_create(&j->copier, NULL, backup_copier, j);
		if (r < 0) {
			error_set_errno(errp, -r, "cannot start the backup's copier");
		}
	}
	j->copier_running = r == 0;
	if (r == 0) {
		r = backup_loop(job, j, buf, errp);
	}
	backup_stop_copier(j);
	if (j->bitmap_taken) {
		/* on-success: what it held goes back unless done; always: what was not copied */
		block_dirty_bitmap_end_backup(j->root, j->bitmap,
					      j->bitmap_mode == BITMAP_ON_SUCCESS && r < 0,
					      j->bitmap_mode == BITMAP_ALWAYS);
		j->bitmap_taken = false;
	}
	/* done or not, the disk's writes no longer wait */
	block_cbw_stop(j->root);
	j->cbw = false;
	if (r == 0) {
		r = block_flush(j->base);
		if (r < 0) {
			r = error_set(errp, -r, "%s", strerror(-r));
		}
	}
	return r;
}

/* The target goes back to its blockdev-add entry, or closes here (drive-backup's). */
static void backup_clean(struct job *job)
{
	struct bjob *j = job_opaque(job);

	if (j->claimed) {
		block_unref(vm_blockdev_unclaim(j->vmp, j->target, false));
		j->claimed = false;
	}
	block_unref(TAKE_PTR(j->base));
}

static const struct job_driver backup_driver = {
	.type = "backup",
	.block = true,
	.run = backup_run,
	.commit = backup_clean,
	.abort = backup_clean,
	.free = bjob_free,
};

static bool is_bjob(struct job *job)
{
	const struct job_driver *d = job_driver(job);

	return d == &stream_driver || d == &commit_driver || d == &mirror_driver ||
	       d == &backup_driver;
}

static bool job_on_disk(struct job *job, void *arg)
{
	return is_bjob(job) && strcmp(((struct bjob *)job_opaque(job))->disk, arg) == 0;
}

static bool job_on_target(struct job *job, void *arg)
{
	struct bjob *j = job_opaque(job);

	return is_bjob(job) && j->target && strcmp(j->target, arg) == 0;
}

static bool job_running_on_target(struct job *job, void *arg)
{
	return job_on_target(job, arg) && job_get_status(job) != JOB_STATUS_CONCLUDED;
}

static bool backup_on_target(struct job *job, void *arg)
{
	return job_driver(job) == &backup_driver && job_on_target(job, arg);
}

int blockjob_check_target(struct registry_vm *rv, const char *name, struct error **errp)
{
	if (name &&
	    jobs_find_if(registry_jobs(rv->reg), rv->name, backup_on_target, (void *)name)) {
		return error_set(errp, EBUSY,
				 "Node '%s' is busy: block device is in use by block job: backup",
				 name);
	}
	return 0;
}

bool blockjob_target_named(struct registry_vm *rv, const char *name)
{
	return jobs_find_if(registry_jobs(rv->reg), rv->name, job_running_on_target,
			    (void *)name) != NULL;
}

/*
 * QEMU's "Node 'x' is busy: block device is in use by block job: TYPE".
 * For a commit or mirror (@root: they put a filter node on the disk) of a
 * disk under a stream, mirror or active commit (which have put one there),
 * QEMU 7.2 says "Need a root block node".
 */
static int check_idle_as(struct registry_vm *rv, const char *disk, const char *shown, bool root,
			 struct error **errp)
{
	struct job *job = jobs_find_if(registry_jobs(rv->reg), rv->name, job_on_disk, (void *)disk);
	int r = registry_disks_check(rv, errp); /* an external snapshot switches disks */

	if (r < 0) {
		return r;
	}
	if (job && root &&
	    (job_driver(job) != &commit_driver || ((struct bjob *)job_opaque(job))->active)) {
		return error_set(errp, EBUSY, "Need a root block node");
	}
	if (job) {
		return error_set(errp, EBUSY,
				 "Node '%s' is busy: block device is in use by block "
				 "job: %s",
				 shown, job_driver(job)->type);
	}
	return 0;
}

static int check_idle(struct registry_vm *rv, const char *disk, const char *shown,
		      struct error **errp)
{
	return check_idle_as(rv, disk, shown, false, errp);
}

int blockjob_check_idle(struct registry_vm *rv, const char *disk, const char *shown,
			struct error **errp)
{
	return check_idle(rv, disk, shown, errp);
}

static const char *str_arg(json_t *args, const char *key)
{
	return json_string_value(json_object_get(args, key));
}

static bool bool_arg(json_t *args, const char *key, bool dflt)
{
	json_t *v = json_object_get(args, key);

	return v ? json_is_true(v) : dflt;
}

/* A block job's options from its command's arguments, checked (QEMU's errors). */
static int bjob_options(struct registry_vm *rv, const struct job_driver *drv, json_t *args,
			const char *default_id, struct job_options *o, struct error **errp)
{
	json_t *speed = json_object_get(args, "speed");
	int r;

	*o = (struct job_options){
		.id = str_arg(args, "job-id") ? str_arg(args, "job-id") : default_id,
		.vm = rv->name,
		.auto_finalize = bool_arg(args, "auto-finalize", true),
		.auto_dismiss = bool_arg(args, "auto-dismiss", true),
		.vm_flag = registry_violation_flag(rv),
	};
	if (speed && json_integer_value(speed) < 0 && drv != &mirror_driver &&
	    drv != &backup_driver) {
		return error_set(errp, EINVAL, "Invalid parameter 'speed'");
	}
	o->speed = speed && json_integer_value(speed) > 0 ? (uint64_t)json_integer_value(speed) : 0;
	if (drv == &mirror_driver || drv == &backup_driver) {
		r = job_on_error_parse(str_arg(args, "on-source-error"), "on-source-error",
				       &o->on_error, errp);
		if (r == 0) {
			r = job_on_error_parse(str_arg(args, "on-target-error"), "on-target-error",
					       &o->on_target_error, errp);
		}
		o->target_error_set = true;
	} else {
		r = job_on_error_parse(str_arg(args, "on-error"), "on-error", &o->on_error, errp);
	}
	if (r == 0 && json_object_get(args, "filter-node-name")) {
		r = error_set(errp, ENOTSUP, "'filter-node-name' is not supported by vmmd");
	}
	return r;
}

static int start_job(struct registry_vm *rv, const struct job_driver *drv, struct bjob *j,
		     json_t *args, const char *default_id, struct error **errp)
{
	json_t *speed = json_object_get(args, "speed");
	struct job_options o;
	struct job *job;
	int r = bjob_options(rv, drv, args, default_id, &o, errp);

	if (r < 0) {
		bjob_free(j);
		return r;
	}
	r = jobs_create(registry_jobs(rv->reg), drv, &o, j, &job, errp);
	if (r < 0) {
		return r;
	}
	if (speed && json_integer_value(speed) < 0) {
		/* QEMU's mirror creates its job, then finds the speed wrong */
		job_discard(job);
		return error_set(errp, EINVAL, "Parameter 'speed' expects a non-negative value");
	}
	return job_start(job, errp);
}

static struct bjob *bjob_new(struct registry_vm *rv, const struct disk_node *d)
{
	struct bjob *j = calloc(1, sizeof(*j));

	if (!j || !(j->vm = strdup(rv->name)) || !(j->disk = strdup(d->id))) {
		bjob_free(j);
		return NULL;
	}
	j->reg = rv->reg;
	j->root = block_ref(d->root);
	return j;
}

int blockjob_stream(struct registry_vm *rv, json_t *args, struct error **errp)
{
	const char *device = str_arg(args, "device");
	const char *base = str_arg(args, "base"), *base_node = str_arg(args, "base-node");
	struct block_node *b = NULL;
	struct disk_node d;
	struct bjob *j;
	struct vm *vm;
	int r = live_disk(rv, device, &vm, &d, errp);

	if (r < 0) {
		return r;
	}
	if (json_object_get(args, "bottom")) {
		return error_set(errp, ENOTSUP, "'bottom' is not supported by vmmd; use 'base'");
	}
	if (base && base_node) {
		return error_set(errp, EINVAL,
				 "'base' and 'base-node' cannot be specified at the same time");
	}
	if (d.node != d.root) {
		return error_set(errp, ENOTSUP,
				 "vmmd streams into a disk's active layer only, not into '%s'",
				 device);
	}
	if (base) {
		b = block_chain_find(block_backing(d.node), base, NULL);
		if (!b) {
			return error_set(errp, ENOENT, "Can't find '%s' in the backing chain",
					 base);
		}
	} else if (base_node) {
		b = block_chain_find(block_backing(d.node), NULL, base_node);
		if (!b) {
			return error_set(errp, ENOENT, "Node '%s' is not a backing image of '%s'",
					 base_node, device);
		}
	}
	r = check_idle(rv, d.id, device, errp);
	if (r < 0) {
		return r;
	}
	j = bjob_new(rv, &d);
	if (!j) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	j->top = block_ref(d.node);
	j->base = block_ref(b);
	if (str_arg(args, "backing-file") &&
	    !(j->backing_file = strdup(str_arg(args, "backing-file")))) {
		bjob_free(j);
		return error_set(errp, ENOMEM, "out of memory");
	}
	return start_job(rv, &stream_driver, j, args, device, errp);
}

int blockjob_commit(struct registry_vm *rv, json_t *args, struct error **errp)
{
	const char *device = str_arg(args, "device");
	const char *top = str_arg(args, "top"), *top_node = str_arg(args, "top-node");
	const char *base = str_arg(args, "base"), *base_node = str_arg(args, "base-node");
	struct vm *vm = live_vm(rv, errp);
	struct block_node *t, *b;
	struct disk_node d;
	struct bjob *j;
	int r;

	if (!vm) {
		return -ENODEV;
	}
	if (!find_disk(vm, device, device, &d)) {
		return error_set_class(errp, ERROR_CLASS_DEVICE_NOT_FOUND, ENOENT,
				       "Device '%s' not found", device);
	}
	if ((top && top_node) || (base && base_node)) {
		return error_set(errp, EINVAL, "'%s' and '%s' cannot be specified at the same time",
				 top && top_node ? "top" : "base",
				 top && top_node ? "top-node" : "base-node");
	}
	t = d.root;
	if (top_node) {
		t = block_chain_find(d.root, NULL, top_node);
		if (!t) {
			return error_set(errp, ENOENT, "Cannot find device='' nor node-name='%s'",
					 top_node);
		}
	} else if (top) {
		t = block_chain_find(d.root, top, NULL);
		if (!t) {
			return error_set(errp, ENOENT, "Top image file %s not found", top);
		}
	}
	if (base_node) {
		b = block_chain_find(block_backing(t), NULL, base_node);
		if (!b) {
			return error_set(errp, ENOENT, "Node '%s' is not a backing image of '%s'",
					 base_node, block_filename(t));
		}
	} else if (base) {
		b = block_chain_find(block_backing(t), base, NULL);
		if (!b) {
			return error_set(errp, ENOENT, "Base '%s' not found", base);
		}
	} else {
		b = t;
		while (block_backing(b)) {
			b = block_backing(b);
		}
	}
	if (b == t) {
		return error_set(errp, EINVAL, "cannot commit an image into itself");
	}
	r = check_idle_as(rv, d.id, device, true, errp);
	if (r < 0) {
		return r;
	}
	j = bjob_new(rv, &d);
	if (!j) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	j->commit = true;
	j->granularity = BLOCKJOB_DIRTY_GRANULARITY;
	j->active = t == d.root;
	j->top = block_ref(t);
	j->base = block_ref(b);
	if (str_arg(args, "backing-file")) {
		if (j->active) {
			bjob_free(j);
			return error_set(errp, EINVAL,
					 "'backing-file' specified, but 'top' is the active layer");
		}
		j->backing_file = strdup(str_arg(args, "backing-file"));
		if (!j->backing_file) {
			bjob_free(j);
			return error_set(errp, ENOMEM, "out of memory");
		}
	}
	return start_job(rv, &commit_driver, j, args, device, errp);
}

/* QMP's MirrorSyncMode, of which vmmd mirrors full, top and none. */
static int mirror_sync_parse(const char *s, struct bjob *j, struct error **errp)
{
	if (strcmp(s, "full") == 0) {
		j->sync = MIRROR_FULL;
	} else if (strcmp(s, "top") == 0) {
		j->sync = MIRROR_TOP;
	} else if (strcmp(s, "none") == 0) {
		j->sync = MIRROR_NONE;
	} else if (strcmp(s, "incremental") == 0 || strcmp(s, "bitmap") == 0) {
		return error_set(errp, ENOTSUP, "Sync mode '%s' not supported", s);
	} else {
		return error_set(errp, EINVAL, "Parameter 'sync' does not accept value '%s'", s);
	}
	return 0;
}

/*
 * What blockdev-mirror and drive-mirror check alike, in QEMU 7.2's order
 * after the disk and the target: into @j (granularity, sync).
 */
static int mirror_check(struct registry_vm *rv, struct bjob *j, const struct disk_node *d,
			const char *device, json_t *args, struct error **errp)
{
	const char *mode = str_arg(args, "copy-mode");
	json_t *gran = json_object_get(args, "granularity");
	json_t *buf_size = json_object_get(args, "buf-size");
	int r;

	j->granularity = gran ? (uint64_t)json_integer_value(gran) : BLOCKJOB_DIRTY_GRANULARITY;
	if (gran && (json_integer_value(gran) < MIRROR_GRANULARITY_MIN ||
		     json_integer_value(gran) > MIRROR_GRANULARITY_MAX)) {
		r = error_set(errp, EINVAL,
			      "Parameter 'granularity' expects a value in range [512B, 64MB]");
	} else if (j->granularity & (j->granularity - 1)) {
		r = error_set(errp, EINVAL, "Parameter 'granularity' expects a power of 2");
	} else if (str_arg(args, "replaces")) {
		r = error_set(errp, ENOTSUP, "'replaces' is not supported by vmmd");
	} else if (mode && strcmp(mode, "background") != 0) {
		r = strcmp(mode, "write-blocking") == 0
			    ? error_set(errp, ENOTSUP,
					"copy-mode 'write-blocking' is not supported by vmmd")
			    : error_set(errp, EINVAL,
					"Parameter 'copy-mode' does not accept value '%s'", mode);
	} else {
		r = mirror_sync_parse(str_arg(args, "sync"), j, errp);
	}
	if (r == 0 && buf_size && json_integer_value(buf_size) < 0) {
		r = error_set(errp, EINVAL, "Invalid parameter 'buf-size'");
	} else if (r == 0 && d->node != d->root) {
		r = error_set(errp, ENOTSUP, "vmmd mirrors a disk's active layer only, not '%s'",
			      device);
	} else if (r == 0) {
		r = check_idle_as(rv, d->id, device, true, errp);
	}
	return r;
}

/*
 * blockdev-mirror, checked as QEMU 7.2 checks it, in its order; the target
 * is a node blockdev-add opened, claimed for the job.
 */
int blockjob_mirror(struct registry_vm *rv, json_t *args, struct error **errp)
{
	const char *device = str_arg(args, "device"), *target = str_arg(args, "target");
	struct block_node *t = NULL;
	struct disk_node d, td;
	struct bjob *j;
	struct vm *vm;
	int r = live_disk(rv, device, &vm, &d, errp);

	if (r < 0) {
		return r;
	}
	j = bjob_new(rv, &d);
	if (!j || !(j->target = strdup(target))) {
		bjob_free(j);
		return error_set(errp, ENOMEM, "out of memory");
	}
	j->commit = j->active = j->mirror = true;
	j->vmp = vm;
	if (find_disk(vm, target, target, &td)) {
		/* a node of a disk: QEMU finds it, then a conflict of its users */
		r = td.root == d.root && td.node == d.node
			    ? error_set(errp, EINVAL, "Can't mirror node into itself")
			    : error_set(errp, EBUSY,
					"Node '%s' is in use by disk '%s'; mirror to a node of "
					"its own",
					target, td.id);
		goto fail;
	}
	r = vm_blockdev_claim(vm, target, &t);
	if (r == -ENOENT) {
		r = error_set(errp, ENOENT, "Cannot find device='%s' nor node-name='%s'", target,
			      target);
	} else if (r < 0 &&
		   jobs_find_if(registry_jobs(rv->reg), rv->name, job_on_target, (void *)target)) {
		r = error_set(errp, EBUSY,
			      "Node '%s' is busy: block device is in use by block job: mirror",
			      target);
	} else if (r < 0) {
		r = error_set(errp, EBUSY, "Node '%s' is in use by a device", target);
	}
	if (r < 0) {
		goto fail;
	}
	j->base = t;
	j->claimed = true; /* bjob_free() gives it back */
	r = mirror_check(rv, j, &d, device, args, errp);
	if (r == 0 && block_is_read_only(t)) {
		r = error_set(errp, EROFS, "The target '%s' is read-only", target);
	}
	if (r < 0) {
		goto fail;
	}
	j->top = block_ref(d.root);
	return start_job(rv, &mirror_driver, j, args, device, errp);
fail:
	bjob_free(j);
	return r;
}

/*
 * drive-mirror: QEMU's mirror that makes its own target. The control
 * thread checks everything a job would (so a refused command creates no
 * file); a worker then creates the image (QEMU's "absolute-paths": the
 * disk's format and size, backed by the disk's backing file for sync top,
 * by the disk's image for sync none) or finds it ("existing", with its own
 * backing chain) and opens it; the job starts on the control thread.
 */
struct dm_op {
	struct registry_vm *rv; /* stays: a destroy waits for the op */
	struct bjob *j;		/* the job, its target opened by the worker */
	json_t *args;		/* the strings below point into it */
	const char *device, *file, *format, *node_name;
	bool existing, created;
	struct block_node *backing; /* a new image's backing file, in j->root's chain */
	registry_done_fn done;
	void *opaque;
	int r;
	struct error *err;
};

static void dm_work(void *arg)
{
	struct dm_op *op = arg;
	struct bjob *j = op->j;

	if (!op->existing) {
		op->r = block_create_target(op->file, op->format, block_length(j->root),
					    op->backing, &op->err);
		op->created = op->r == 0;
	}
	if (op->r == 0) {
		op->r = block_open_target(&j->base, op->file, op->format, j->root, op->node_name,
					  op->existing, &op->err);
	}
	if (op->r < 0 && op->created) {
		unlink(op->file);
		op->created = false;
	}
}

static void dm_done(void *arg)
{
	struct dm_op *op = arg;
	struct error *err = TAKE_PTR(op->err);
	int r = op->r;

	registry_disks_end(op->rv);
	if (r == 0) {
		r = start_job(op->rv, &mirror_driver, TAKE_PTR(op->j), op->args, op->device, &err);
		if (r < 0 && op->created) {
			log_full(LOG_WARNING, op->rv->name, op->device,
				 "the mirror did not start; %s stays", op->file);
		}
	}
	op->done(op->opaque, op->rv, r, err);
	bjob_free(op->j);
	json_decref(op->args);
	free(op);
}

int blockjob_drive_mirror(struct registry_vm *rv, json_t *args, registry_done_fn done, void *opaque,
			  struct error **errp)
{
	const char *device = str_arg(args, "device"), *mode = str_arg(args, "mode");
	const char *node_name = str_arg(args, "node-name");
	struct job_options o;
	struct block_node *n = NULL;
	struct dm_op *op = NULL;
	struct disk_node d;
	struct bjob *j;
	struct vm *vm;
	int r = live_disk(rv, device, &vm, &d, errp);

	if (r < 0) {
		return r;
	}
	if (mode && strcmp(mode, "existing") != 0 && strcmp(mode, "absolute-paths") != 0) {
		return error_set(errp, EINVAL, "Parameter 'mode' does not accept value '%s'", mode);
	}
	j = bjob_new(rv, &d);
	op = calloc(1, sizeof(*op));
	if (!j || !op) {
		bjob_free(j);
		free(op);
		return error_set(errp, ENOMEM, "out of memory");
	}
	j->commit = j->active = j->mirror = true;
	op->j = j;
	op->existing = mode && strcmp(mode, "existing") == 0;
	r = mirror_check(rv, j, &d, device, args, errp);
	if (r == 0 && node_name && !parse_id_ok(node_name, BLOCKJOB_NODE_NAME_MAX)) {
		r = error_set(errp, EINVAL, "Invalid node-name: '%s'", node_name);
	}
	if (r == 0 && node_name &&
	    (node_name_in_use(vm, node_name) || vm_blockdev_overlay(vm, node_name, &n) != -ENOENT ||
	     jobs_find_if(registry_jobs(rv->reg), rv->name, job_on_target, (void *)node_name))) {
		r = error_set(errp, EEXIST, "Duplicate nodes with node-name='%s'", node_name);
	}
	block_unref(n); /* the table's node, not its last reference */
	if (r == 0 && node_name && !(j->target = strdup(node_name))) {
		r = error_set(errp, ENOMEM, "out of memory");
	}
	if (r == 0) {
		r = bjob_options(rv, &mirror_driver, args, device, &o, errp);
	}
	if (r == 0) {
		r = jobs_check_id(registry_jobs(rv->reg), &o, errp);
	}
	if (r == 0 && json_integer_value(json_object_get(args, "speed")) < 0) {
		r = error_set(errp, EINVAL, "Parameter 'speed' expects a non-negative value");
	}
	if (r == 0 && op->existing && !str_arg(args, "format")) {
		r = error_set(errp, EINVAL,
			      "drive-mirror with mode 'existing' needs 'format' (vmmd never "
			      "probes an image's format)");
	}
	if (r < 0) {
		bjob_free(j);
		free(op);
		return r;
	}
	if (j->sync == MIRROR_TOP && !block_backing(d.root)) {
		j->sync = MIRROR_FULL; /* as QEMU: no backing file to leave below */
	}
	/* a new image reads as zeroes: a full mirror copies only what the chain holds */
	j->target_zeroed = !op->existing;
	op->backing = j->sync == MIRROR_TOP			? block_backing(d.root)
		      : j->sync == MIRROR_NONE && !op->existing ? d.root
								: NULL;
	op->rv = rv;
	op->args = json_incref(args);
	op->device = device;
	op->file = str_arg(args, "target");
	op->format = str_arg(args, "format") ? str_arg(args, "format") : block_format(d.root);
	op->node_name = node_name;
	op->done = done;
	op->opaque = opaque;
	j->top = block_ref(d.root);
	r = registry_disks_begin(rv, dm_work, dm_done, op, errp);
	if (r < 0) {
		bjob_free(j);
		json_decref(op->args);
		free(op);
	}
	return r;
}

/* ---- dirty bitmaps ---- */

/*
 * The node QEMU's "node" argument names: a disk (its top node), a node of
 * a disk's chain, or a blockdev-add node. A new reference, or NULL with
 * QEMU's error. @ret_disk (may be NULL): the disk, all NULL for a
 * blockdev-add node.
 */
static struct block_node *bitmap_node(struct registry_vm *rv, const char *name, bool add,
				      struct disk_node *ret_disk, struct error **errp)
{
	struct vm *vm = live_vm(rv, errp);
	struct block_node *bs;
	struct disk_node d;

	if (!vm) {
		return NULL;
	}
	if (find_disk(vm, name, name, &d)) {
		if (ret_disk) {
			*ret_disk = d;
		}
		return block_ref(d.node);
	}
	if (ret_disk) {
		memset(ret_disk, 0, sizeof(*ret_disk));
	}
	bs = vm_block_node_get(vm, name, NULL);
	if (!bs && add) {
		error_set(errp, ENOENT, "Cannot find device='%s' nor node-name='%s'", name, name);
	} else if (!bs) {
		error_set(errp, ENOENT, "Node '%s' not found", name); /* QEMU's other lookup */
	}
	return bs;
}

/* A bitmap a merge takes from: QEMU's BlockDirtyBitmapOrStr, its node found. */
struct merge_src {
	struct block_node *bs; /* a reference */
	const char *name;      /* in the command's arguments */
};

static void merge_srcs_free(struct merge_src *srcs, size_t n)
{
	for (size_t i = 0; srcs && i < n; i++) {
		block_unref(srcs[i].bs);
	}
	free(srcs);
}

/* Control thread: the sources of a merge into @bs, nodes found (QEMU's errors). */
static int merge_srcs(struct registry_vm *rv, struct block_node *bs, json_t *list,
		      struct merge_src **ret, size_t *ret_n, struct error **errp)
{
	size_t n = json_array_size(list), i;
	struct merge_src *srcs = calloc(n ? n : 1, sizeof(*srcs));
	json_t *src;

	if (!srcs) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	json_array_foreach (list, i, src) {
		struct merge_src *m = &srcs[i];
		const char *node = str_arg(src, "node");
		int r = 0;

		if (json_is_string(src)) {
			m->name = json_string_value(src);
			m->bs = block_ref(bs);
		} else if (!json_is_object(src)) {
			r = error_set(errp, EINVAL,
				      "Invalid parameter type for 'bitmaps[%zu]', expected: "
				      "BlockDirtyBitmapOrStr",
				      i);
		} else if (!node || !(m->name = str_arg(src, "name"))) {
			r = error_set(errp, EINVAL, "Parameter '%s' is missing",
				      node ? "name" : "node");
		} else if (!(m->bs = bitmap_node(rv, node, false, NULL, errp))) {
			r = -ENOENT;
		}
		if (r < 0) {
			merge_srcs_free(srcs, n);
			return r;
		}
	}
	*ret = srcs;
	*ret_n = n;
	return 0;
}

/*
 * Merge @srcs into @target of @bs, all or nothing: @ret_saved (NULL: none
 * kept) gets what @target held, for block_dirty_bitmap_restore() if what
 * follows is undone, and @ret_bytes its size.
 */
static int bitmap_merge(struct block_node *bs, const char *target, const struct merge_src *srcs,
			size_t n, struct block_dirty_bitmap_state **ret_saved, uint64_t *ret_bytes,
			struct error **errp)
{
	uint64_t bytes = 0;
	struct block_dirty_bitmap_state *st =
		block_dirty_bitmap_save(bs, target, true, &bytes, errp);
	int r = st ? 0 : -ENOENT;

	for (size_t i = 0; i < n && r == 0; i++) {
		r = block_dirty_bitmap_merge(bs, target, srcs[i].bs, srcs[i].name, errp);
	}
	if (r < 0 && st) {
		block_dirty_bitmap_restore(bs, TAKE_PTR(st));
	}
	if (ret_saved) {
		*ret_saved = TAKE_PTR(st);
		*ret_bytes = bytes;
	}
	block_dirty_bitmap_state_free(st);
	return r;
}

/* block-dirty-bitmap-add's granularity and persistent, checked (alone or in a transaction). */
static int bitmap_add_args(json_t *args, struct error **errp)
{
	json_t *gran = json_object_get(args, "granularity");

	if (gran && (json_integer_value(gran) < 0 || json_integer_value(gran) > UINT32_MAX)) {
		return error_set(errp, EINVAL, "Parameter 'granularity' expects uint32_t");
	}
	if (bool_arg(args, "persistent", false)) {
		return error_set(
			errp, ENOTSUP,
			"Can't store persistent bitmaps to %s: vmmd keeps dirty bitmaps in "
			"memory only",
			str_arg(args, "node"));
	}
	return 0;
}

int blockjob_bitmap(struct registry_vm *rv, const char *cmd, json_t *args, struct error **errp)
{
	const char *name = str_arg(args, "name");
	json_t *gran = json_object_get(args, "granularity");
	struct block_node *bs;
	struct merge_src *srcs = NULL;
	size_t n = 0;
	int r = registry_disks_check(rv, errp); /* (a transaction may change them meanwhile) */

	if (r < 0) {
		return r;
	}
	bs = bitmap_node(rv, str_arg(args, "node"), strcmp(cmd, "block-dirty-bitmap-add") == 0,
			 NULL, errp);
	if (!bs) {
		return -ENOENT;
	}
	if (strcmp(cmd, "block-dirty-bitmap-add") == 0) {
		r = bitmap_add_args(args, errp);
		if (r == 0) {
			r = block_dirty_bitmap_add(bs, name,
						   gran ? (uint64_t)json_integer_value(gran) : 0,
						   bool_arg(args, "disabled", false), errp);
		}
	} else if (strcmp(cmd, "block-dirty-bitmap-remove") == 0) {
		r = block_dirty_bitmap_remove(bs, name, errp);
	} else if (strcmp(cmd, "block-dirty-bitmap-clear") == 0) {
		r = block_dirty_bitmap_change(bs, name, BLOCK_DIRTY_BITMAP_CLEAR, errp);
	} else if (strcmp(cmd, "block-dirty-bitmap-enable") == 0) {
		r = block_dirty_bitmap_change(bs, name, BLOCK_DIRTY_BITMAP_ENABLE, errp);
	} else if (strcmp(cmd, "block-dirty-bitmap-disable") == 0) {
		r = block_dirty_bitmap_change(bs, name, BLOCK_DIRTY_BITMAP_DISABLE, errp);
	} else {
		/* merge: the target first, as QEMU's, then each source */
		const char *target = str_arg(args, "target");

		r = block_dirty_bitmap_check(bs, target, errp);
		if (r == 0) {
			r = merge_srcs(rv, bs, json_object_get(args, "bitmaps"), &srcs, &n, errp);
		}
		if (r == 0) {
			r = bitmap_merge(bs, target, srcs, n, NULL, NULL, errp);
		}
		merge_srcs_free(srcs, n);
	}
	block_unref(bs);
	return r;
}

/* ---- external snapshots ---- */

/*
 * blockdev-snapshot-sync, blockdev-snapshot and transaction take one path,
 * a list of actions. The control thread checks them all (arguments, disks,
 * jobs, node names) and takes the blockdev-add overlays from the VM's
 * table; a worker thread working for the VM then creates and opens the
 * new overlay files, drains every disk of the list (waiting for the
 * requests in flight: on an NBD disk whose server stopped answering, up to
 * its request timeout), puts each overlay on top and records backing file
 * names; the answer comes after, on the control thread, with the VM's
 * definitions following. Until then registry_disks_check() refuses what
 * would change the same disks and a destroy of the VM waits. A failure
 * before the switch undoes every action, files and all.
 */
struct snap {
	/* blockdev-snapshot-internal-sync: an internal snapshot @name of the disk */
	bool internal;
	const char *name;
	bool made; /* taken: deleted again if a later action fails */
	/* blockdev-snapshot, else blockdev-snapshot-sync with these three */
	bool overlay_action;
	const char *file, *format, *node_name;
	bool existing;
	char *disk;		 /* the disk's id */
	struct block_node *root; /* its top node (a reference) */
	struct block_node *overlay;
	bool created; /* the file is ours: remove it on abort */
	/* blockdev-snapshot: the overlay's blockdev-add node name, its file, its header */
	const char *overlay_name;
	char *overlay_file;
	bool overlay_named; /* its image records a backing file */
	/*
	 * blockdev-backup, drive-backup (file, format, existing, created are
	 * drive-backup's target): the job once created (blockdev-backup's when
	 * checked, drive-backup's when done), its state until then
	 */
	bool backup;
	struct bjob *bj;
	struct job *job;
	/*
	 * block-dirty-bitmap-*: @bitmap of node @bs (of disk @disk, whose top
	 * @root drains; all NULL for a blockdev-add node), a merge's sources,
	 * and what undoes the action once applied
	 */
	enum bitmap_act {
		BITMAP_ACT_NONE,
		BITMAP_ACT_ADD,
		BITMAP_ACT_REMOVE,
		BITMAP_ACT_CLEAR,
		BITMAP_ACT_ENABLE,
		BITMAP_ACT_DISABLE,
		BITMAP_ACT_MERGE,
	} bitmap_act;
	const char *bitmap;
	struct block_node *bs;
	struct merge_src *srcs;
	size_t n_srcs;
	struct block_dirty_bitmap_state *saved;
	bool applied;
};

struct snap_op {
	struct registry_vm *rv; /* stays: a destroy waits for the op */
	json_t *actions;	/* the snaps' strings point into it */
	struct snap *snaps;
	size_t n;
	registry_done_fn done;
	void *opaque;
	int r; /* the worker's result */
	struct error *err;
};

/* Control thread: take the disk found (a reference to its top, a copy of its id). */
static int snap_take_disk(struct snap *s, struct disk_node *d, struct error **errp)
{
	s->disk = strdup(d->id);
	if (!s->disk) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	s->root = block_ref(d->root);
	return 0;
}

/* blockdev-snapshot-sync: QEMU's checks, on the control thread. */
static int snap_check(struct registry_vm *rv, struct vm *vm, json_t *args, struct snap *s,
		      struct error **errp)
{
	const char *device = str_arg(args, "device"), *node = str_arg(args, "node-name");
	const char *mode = str_arg(args, "mode");
	struct disk_node d;
	int r;

	s->file = str_arg(args, "snapshot-file");
	s->format = str_arg(args, "format") ? str_arg(args, "format") : "qcow2";
	s->node_name = str_arg(args, "snapshot-node-name");
	if (!s->file) {
		return error_set(errp, EINVAL, "Parameter 'snapshot-file' is missing");
	}
	if (mode && strcmp(mode, "existing") && strcmp(mode, "absolute-paths")) {
		return error_set(errp, EINVAL, "Parameter 'mode' does not accept value '%s'", mode);
	}
	s->existing = mode && strcmp(mode, "existing") == 0;
	if (!find_disk(vm, device, node, &d)) {
		return error_set(errp, ENOENT, "Cannot find device='%s' nor node-name='%s'",
				 device ? device : "", node ? node : "");
	}
	if (d.node != d.root) {
		return error_set(errp, EBUSY,
				 "The node '%s' has an overlay already; snapshot "
				 "the disk's top",
				 node);
	}
	if (s->node_name && !parse_id_ok(s->node_name, BLOCKJOB_NODE_NAME_MAX)) {
		return error_set(errp, EINVAL, "Invalid node-name: '%s'", s->node_name);
	}
	if (s->node_name && node_name_in_use(vm, s->node_name)) {
		return error_set(errp, EEXIST, "New overlay node-name already in use");
	}
	r = check_idle(rv, d.id, device ? device : node, errp);
	return r < 0 ? r : snap_take_disk(s, &d, errp);
}

/* blockdev-snapshot-sync, on the worker: create (unless "existing") and open the overlay. */
static int snap_open(struct snap *s, struct error **errp)
{
	struct stat st;
	int r;

	if (s->existing) {
		if (stat(s->file, &st) < 0) {
			return error_set_errno(errp, errno, "Could not open '%s'", s->file);
		}
	} else {
		r = block_create_overlay(s->file, s->format, s->root, errp);
		if (r < 0) {
			return r;
		}
		s->created = true;
	}
	return block_open_overlay(&s->overlay, s->file, s->format, s->root, s->node_name, errp);
}

/*
 * blockdev-snapshot, on the control thread: the overlay is a node
 * blockdev-add opened (without a backing node); it goes on top of the disk
 * as with blockdev-snapshot-sync. If its image names no backing file, the
 * disk's image is recorded in it, so the definition that now names the
 * overlay opens the same chain next time (QEMU leaves the header as it is).
 */
static int overlay_check(struct registry_vm *rv, struct vm *vm, json_t *args, struct snap *s,
			 struct error **errp)
{
	const char *node = str_arg(args, "node"), *name = str_arg(args, "overlay");
	json_auto_t *info = NULL;
	struct disk_node d;
	int r;

	if (!node || !name) {
		return error_set(errp, EINVAL, "Parameter '%s' is missing",
				 node ? "overlay" : "node");
	}
	if (!find_disk(vm, node, node, &d)) {
		return error_set(errp, ENOENT, "Cannot find device='%s' nor node-name='%s'", node,
				 node);
	}
	r = vm_blockdev_overlay(vm, name, &s->overlay);
	if (r == -ENOENT && find_disk(vm, name, name, &(struct disk_node){0})) {
		r = -EBUSY; /* a disk (QEMU: a node with a block backend) */
	}
	if (r == -EBUSY) {
		return error_set(errp, EBUSY, "The overlay is already in use");
	}
	if (r < 0) {
		return error_set(errp, ENOENT, "Cannot find device='%s' nor node-name='%s'", name,
				 name);
	}
	if (strcmp(block_format(s->overlay), "qcow2") != 0) {
		r = error_set(errp, ENOTSUP, "The overlay does not support backing images");
	} else if (block_backing(s->overlay)) {
		r = error_set(errp, EEXIST, "The overlay already has a backing image");
	} else if (block_is_read_only(s->overlay)) {
		r = error_set(errp, EROFS, "The overlay '%s' is read-only", name);
	} else if (d.node != d.root) {
		r = error_set(errp, EBUSY,
			      "The node '%s' has an overlay already; snapshot the disk's top",
			      node);
	} else {
		r = check_idle(rv, d.id, node, errp);
	}
	if (r == 0 && !(s->overlay_file = strdup(block_filename(s->overlay)))) {
		r = error_set(errp, ENOMEM, "out of memory");
	}
	if (r == 0) {
		r = snap_take_disk(s, &d, errp);
	}
	if (r < 0) {
		return r; /* snap_free() gives the node back */
	}
	info = block_info_json(s->overlay);
	s->overlay_named =
		json_object_get(json_object_get(info, "image"), "backing-filename") != NULL;
	s->overlay_name = name;
	return 0;
}

/* QEMU's bdrv_snapshot_find_by_id_and_name: both match where both are given. */
static json_t *find_snapshot_by(struct block_node *bs, const char *id, const char *name)
{
	json_auto_t *list = block_snapshot_list(bs, NULL);
	size_t i;
	json_t *e;

	json_array_foreach (list, i, e) {
		if ((!id || strcmp(str_arg(e, "id") ?: "", id) == 0) &&
		    (!name || strcmp(str_arg(e, "name") ?: "", name) == 0)) {
			return json_incref(e);
		}
	}
	return NULL;
}

/*
 * blockdev-snapshot-internal-sync: QEMU's checks in its order, on the
 * control thread (the snapshot list is in memory). @before: the actions
 * before this one, whose names are taken by the time this one runs.
 */
static int internal_check(struct registry_vm *rv, struct vm *vm, json_t *args, struct snap *s,
			  const struct snap *before, size_t n_before, struct error **errp)
{
	const char *device = str_arg(args, "device");
	json_auto_t *info = NULL;
	struct disk_node d;
	int r;

	s->name = str_arg(args, "name");
	if (!device || !s->name) {
		return error_set(errp, EINVAL, "Parameter '%s' is missing",
				 device ? "name" : "device");
	}
	if (!find_disk(vm, device, device, &d)) {
		return error_set(errp, ENOENT, "Cannot find device='%s' nor node-name='%s'", device,
				 device);
	}
	if (d.node != d.root) {
		return error_set(errp, EINVAL, "Need a root block node");
	}
	r = check_idle(rv, d.id, device, errp);
	if (r < 0) {
		return r;
	}
	if (block_is_read_only(d.root)) {
		return error_set(errp, EROFS, "Device '%s' is read only", device);
	}
	if (!block_can_snapshot(d.root)) {
		return error_set(errp, ENOTSUP,
				 "Block format '%s' used by device '%s' does not support internal "
				 "snapshots",
				 block_format(d.root), device);
	}
	if (!s->name[0]) {
		return error_set(errp, EINVAL, "Name is empty");
	}
	for (size_t k = 0; k < n_before; k++) {
		if (before[k].internal && strcmp(before[k].disk, d.id) == 0 &&
		    strcmp(before[k].name, s->name) == 0) {
			return error_set(errp, EEXIST,
					 "Snapshot with name '%s' already exists on device '%s'",
					 s->name, device);
		}
	}
	info = find_snapshot_by(d.root, NULL, s->name); /* names only: ids are apart */
	if (info) {
		return error_set(errp, EEXIST,
				 "Snapshot with name '%s' already exists on device '%s'", s->name,
				 device);
	}
	return snap_take_disk(s, &d, errp);
}

/* Worker, @s->root drained: take the internal snapshot (no VM state, as QEMU's). */
static int internal_take(struct registry_vm *rv, struct snap *s, struct error **errp)
{
	struct block_snapshot_vm info = {0};
	struct timespec ts;
	int r;

	clock_gettime(CLOCK_REALTIME, &ts);
	info.date_sec = (uint32_t)ts.tv_sec;
	info.date_nsec = (uint32_t)ts.tv_nsec;
	info.vm_clock_ns = vm_guest_clock_ns(rv->vm);
	r = block_snapshot_create_vm(s->root, s->name, &info, errp);
	s->made = r == 0;
	return r;
}

/*
 * block-dirty-bitmap-* as transaction actions, QEMU's: the control thread
 * checks each as the actions before it leave the bitmaps (an added one is
 * there, a removed one busy until the end, as is a backup's); the worker
 * applies them in their order, with the disks drained, at the instant of
 * the transaction's snapshots and backups, and undoes them if a later
 * action fails. Meanwhile the bitmap commands are refused with EBUSY
 * (registry_disks_check).
 */
static const char *const bitmap_acts[] = {
	[BITMAP_ACT_ADD] = "block-dirty-bitmap-add",
	[BITMAP_ACT_REMOVE] = "block-dirty-bitmap-remove",
	[BITMAP_ACT_CLEAR] = "block-dirty-bitmap-clear",
	[BITMAP_ACT_ENABLE] = "block-dirty-bitmap-enable",
	[BITMAP_ACT_DISABLE] = "block-dirty-bitmap-disable",
	[BITMAP_ACT_MERGE] = "block-dirty-bitmap-merge",
};

static enum bitmap_act bitmap_act_parse(const char *type)
{
	for (size_t i = 1; i < ARRAY_SIZE(bitmap_acts); i++) {
		if (strcmp(type, bitmap_acts[i]) == 0) {
			return (enum bitmap_act)i;
		}
	}
	return BITMAP_ACT_NONE;
}

/*
 * What the actions before (@before, @n) leave of bitmap @name of @bs: 0
 * as the node has it, 1 there (added), 2 busy (removed, or a backup's).
 */
static int bitmap_pending(const struct snap *before, size_t n, const struct block_node *bs,
			  const char *name)
{
	while (n-- > 0) {
		const struct snap *b = &before[n];
		const struct bjob *j = b->job ? job_opaque(b->job) : b->bj;

		if (b->backup && j && j->bitmap && j->root == bs && strcmp(j->bitmap, name) == 0) {
			return 2;
		}
		if (b->bs == bs && b->bitmap && strcmp(b->bitmap, name) == 0 &&
		    (b->bitmap_act == BITMAP_ACT_ADD || b->bitmap_act == BITMAP_ACT_REMOVE)) {
			return b->bitmap_act == BITMAP_ACT_ADD ? 1 : 2;
		}
	}
	return 0;
}

/* @name of @bs usable once the actions before have run, or QEMU's error. */
static int bitmap_usable_after(const struct snap *before, size_t n, struct block_node *bs,
			       const char *name, struct error **errp)
{
	switch (bitmap_pending(before, n, bs, name)) {
	case 1:
		return 0;
	case 2:
		return error_set(errp, EBUSY,
				 "Bitmap '%s' is currently in use by another operation and cannot "
				 "be used",
				 name);
	}
	return block_dirty_bitmap_check(bs, name, errp);
}

/* Control thread: a bitmap action, checked in QEMU 7.2's order. */
static int bitmap_check(struct registry_vm *rv, enum bitmap_act act, json_t *args, struct snap *s,
			const struct snap *before, size_t n_before, struct error **errp)
{
	json_t *gran = json_object_get(args, "granularity");
	const char *node = str_arg(args, "node");
	struct disk_node d;
	bool busy;
	int r;

	s->bitmap_act = act;
	s->bitmap = str_arg(args, act == BITMAP_ACT_MERGE ? "target" : "name");
	if (!node || !s->bitmap ||
	    (act == BITMAP_ACT_MERGE && !json_is_array(json_object_get(args, "bitmaps")))) {
		return error_set(errp, EINVAL, "Parameter 'actions[%zu].data.%s' is missing",
				 n_before,
				 !node	      ? "node"
				 : !s->bitmap ? (act == BITMAP_ACT_MERGE ? "target" : "name")
					      : "bitmaps");
	}
	s->bs = bitmap_node(rv, node, act == BITMAP_ACT_ADD, &d, errp);
	if (!s->bs) {
		return -ENOENT;
	}
	if (d.id && (r = snap_take_disk(s, &d, errp)) < 0) {
		return r;
	}
	if (act == BITMAP_ACT_ADD) {
		r = bitmap_add_args(args, errp);
		if (r < 0) {
			return r;
		}
		r = block_dirty_bitmap_check_add(
			s->bs, s->bitmap, gran ? (uint64_t)json_integer_value(gran) : 0, errp);
		if (r == 0 && (bitmap_pending(before, n_before, s->bs, s->bitmap) ||
			       block_dirty_bitmap_exists(s->bs, s->bitmap, &busy))) {
			r = error_set(errp, EEXIST, "Bitmap already exists: %s", s->bitmap);
		}
		return r;
	}
	r = bitmap_usable_after(before, n_before, s->bs, s->bitmap, errp);
	if (r < 0 || act != BITMAP_ACT_MERGE) {
		return r;
	}
	r = merge_srcs(rv, s->bs, json_object_get(args, "bitmaps"), &s->srcs, &s->n_srcs, errp);
	for (size_t i = 0; r == 0 && i < s->n_srcs; i++) {
		const struct merge_src *m = &s->srcs[i];

		r = bitmap_usable_after(before, n_before, m->bs, m->name, errp);
		if (r == 0 && block_length(s->bs) != block_length(m->bs)) {
			r = error_set(errp, EINVAL,
				      "Bitmaps are of different sizes (destination size is %" PRIu64
				      ", source size is %" PRIu64 ") and can't be merged",
				      block_length(s->bs), block_length(m->bs));
		}
	}
	return r;
}

/*
 * Worker, the disks drained: the action, with what undoes it kept; a
 * transaction keeps at most BLOCK_MAX_DIRTY_BITMAP_BYTES of marks so
 * (@kept: so far).
 */
static int bitmap_apply(struct snap *s, json_t *args, uint64_t *kept, struct error **errp)
{
	json_t *gran = json_object_get(args, "granularity");
	enum block_dirty_bitmap_op op;
	uint64_t bytes = 0;
	int r;

	switch (s->bitmap_act) {
	case BITMAP_ACT_ADD:
		r = block_dirty_bitmap_add(s->bs, s->bitmap,
					   gran ? (uint64_t)json_integer_value(gran) : 0,
					   bool_arg(args, "disabled", false), errp);
		break;
	case BITMAP_ACT_REMOVE:
		/* busy until the transaction is done, as QEMU's */
		r = block_dirty_bitmap_change(s->bs, s->bitmap, BLOCK_DIRTY_BITMAP_HOLD, errp);
		break;
	case BITMAP_ACT_MERGE:
		r = bitmap_merge(s->bs, s->bitmap, s->srcs, s->n_srcs, &s->saved, &bytes, errp);
		break;
	default:
		op = s->bitmap_act == BITMAP_ACT_CLEAR	  ? BLOCK_DIRTY_BITMAP_CLEAR
		     : s->bitmap_act == BITMAP_ACT_ENABLE ? BLOCK_DIRTY_BITMAP_ENABLE
							  : BLOCK_DIRTY_BITMAP_DISABLE;
		/* its recording state, and for a clear its marks */
		s->saved = block_dirty_bitmap_save(s->bs, s->bitmap, op == BLOCK_DIRTY_BITMAP_CLEAR,
						   &bytes, errp);
		r = s->saved ? block_dirty_bitmap_change(s->bs, s->bitmap, op, errp) : -ENOENT;
	}
	s->applied = r == 0;
	*kept += bytes;
	if (r == 0 && *kept > BLOCK_MAX_DIRTY_BITMAP_BYTES) {
		r = error_set(errp, ENOSPC,
			      "A transaction keeps at most %u MiB of bitmaps to undo its actions "
			      "with",
			      BLOCK_MAX_DIRTY_BITMAP_BYTES >> 20);
	}
	return r;
}

/* Worker, the disks still drained: an applied action undone (a later one failed). */
static void bitmap_undo(struct snap *s)
{
	if (!s->applied) {
		return;
	}
	s->applied = false;
	if (s->bitmap_act == BITMAP_ACT_ADD) {
		block_dirty_bitmap_remove(s->bs, s->bitmap, NULL);
	} else if (s->bitmap_act == BITMAP_ACT_REMOVE) {
		block_dirty_bitmap_change(s->bs, s->bitmap, BLOCK_DIRTY_BITMAP_RELEASE, NULL);
	} else {
		block_dirty_bitmap_restore(s->bs, TAKE_PTR(s->saved));
	}
}

/* Worker: every action done; a removed bitmap goes now. */
static void bitmap_commit(struct snap *s)
{
	if (s->applied && s->bitmap_act == BITMAP_ACT_REMOVE) {
		block_dirty_bitmap_change(s->bs, s->bitmap, BLOCK_DIRTY_BITMAP_RELEASE, NULL);
		block_dirty_bitmap_remove(s->bs, s->bitmap, NULL);
	}
	block_dirty_bitmap_state_free(TAKE_PTR(s->saved));
}

/*
 * blockdev-backup and drive-backup as transaction actions (the commands
 * alone are one-action transactions, as QEMU's). The control thread checks
 * the action in QEMU 7.2's order and claims blockdev-backup's target; that
 * one's job is created here (QEMU's events when a later action fails). The
 * worker creates and opens drive-backup's target, then, with every disk of
 * the transaction drained, marks what the backup copies; the job starts on
 * the control thread once every action is done.
 */
static int backup_sync_parse(const char *sync, struct bjob *j, struct error **errp)
{
	if (sync && (strcmp(sync, "incremental") == 0 || strcmp(sync, "bitmap") == 0)) {
		return 1; /* refused below, where QEMU looks for the bitmap */
	}
	return mirror_sync_parse(sync ? sync : "", j, errp);
}

/* The bitmap a backup names, checked as QEMU 7.2's do_backup_common(). */
static int backup_bitmap_check(struct bjob *j, const struct disk_node *d, const char *sync,
			       json_t *args, const struct snap *before, size_t n_before,
			       struct error **errp)
{
	const char *bitmap = str_arg(args, "bitmap"), *mode = str_arg(args, "bitmap-mode");
	/* as the transaction's actions before it leave the bitmap */
	int pending = bitmap_pending(before, n_before, d->node, bitmap);
	bool busy = pending == 2;

	if (!pending && !block_dirty_bitmap_exists(d->node, bitmap, &busy)) {
		return error_set(errp, ENOENT, "Bitmap '%s' could not be found", bitmap);
	}
	if (!mode && strcmp(sync, "incremental") != 0) {
		return error_set(errp, EINVAL,
				 "Bitmap sync mode must be given when providing a bitmap");
	}
	mode = mode ? mode : "on-success";
	j->bitmap_mode = strcmp(mode, "never") == 0    ? BITMAP_NEVER
			 : strcmp(mode, "always") == 0 ? BITMAP_ALWAYS
						       : BITMAP_ON_SUCCESS;
	if (strcmp(sync, "incremental") == 0 && j->bitmap_mode != BITMAP_ON_SUCCESS) {
		return error_set(errp, EINVAL,
				 "Bitmap sync mode must be 'on-success' when using sync mode "
				 "'incremental'");
	}
	if (strcmp(sync, "none") == 0) {
		return error_set(errp, EINVAL,
				 "sync mode '%s' does not produce meaningful bitmap outputs", sync);
	}
	if (j->bitmap_mode == BITMAP_NEVER && strcmp(sync, "bitmap") != 0) {
		return error_set(
			errp, EINVAL,
			"Bitmap sync mode '%s' has no meaningful effect when combined with "
			"sync mode '%s'",
			mode, sync);
	}
	if (busy) {
		return error_set(errp, EBUSY,
				 "Bitmap '%s' is currently in use by another operation and cannot "
				 "be used",
				 bitmap);
	}
	j->bitmap = strdup(bitmap);
	return j->bitmap ? 0 : error_set(errp, ENOMEM, "out of memory");
}

static int backup_check(struct registry_vm *rv, struct vm *vm, json_t *args, struct snap *s,
			bool drive, const struct snap *before, size_t n_before, struct error **errp)
{
	const char *device = str_arg(args, "device"), *target = str_arg(args, "target");
	const char *sync = str_arg(args, "sync"), *bitmap = str_arg(args, "bitmap");
	const char *mode = str_arg(args, "mode");
	json_t *speed = json_object_get(args, "speed");
	enum job_on_error on_err;
	struct block_node *t = NULL;
	struct job_options o;
	struct disk_node d, td;
	struct bjob *j;
	int r, incremental;

	s->backup = true;
	j = s->bj = calloc(1, sizeof(*j));
	if (!j || !(j->vm = strdup(rv->name))) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	j->reg = rv->reg;
	j->backup = true;
	j->vmp = vm;
	pthread_mutex_init(&j->copy_lock, NULL);
	/* what QEMU's argument parsing refuses first */
	incremental = backup_sync_parse(sync, j, errp);
	if (incremental < 0) {
		return incremental;
	}
	j->bitmap_sync = incremental;
	if (str_arg(args, "bitmap-mode") && strcmp(str_arg(args, "bitmap-mode"), "on-success") &&
	    strcmp(str_arg(args, "bitmap-mode"), "never") &&
	    strcmp(str_arg(args, "bitmap-mode"), "always")) {
		return error_set(errp, EINVAL, "Parameter 'bitmap-mode' does not accept value '%s'",
				 str_arg(args, "bitmap-mode"));
	}
	r = job_on_error_parse(str_arg(args, "on-source-error"), "on-source-error", &on_err, errp);
	if (r == 0) {
		r = job_on_error_parse(str_arg(args, "on-target-error"), "on-target-error", &on_err,
				       errp);
	}
	if (r == 0 && drive && mode && strcmp(mode, "existing") != 0 &&
	    strcmp(mode, "absolute-paths") != 0) {
		r = error_set(errp, EINVAL, "Parameter 'mode' does not accept value '%s'", mode);
	}
	if (r == 0) {
		r = live_disk(rv, device, &vm, &d, errp);
	}
	if (r < 0) {
		return r;
	}
	if (!drive && find_disk(vm, target, target, &td)) {
		/* a node of a disk: QEMU finds it, then a conflict of its users */
		return td.node == d.node
			       ? error_set(errp, EINVAL, "Source and target cannot be the same")
			       : error_set(errp, EBUSY,
					   "Node '%s' is in use by disk '%s'; back up to a node of "
					   "its own",
					   target, td.id);
	}
	if (!drive) {
		r = vm_blockdev_claim(vm, target, &t);
		if (r == -ENOENT) {
			return error_set(errp, ENOENT, "Cannot find device='%s' nor node-name='%s'",
					 target, target);
		}
		if (r < 0 && check_idle(rv, d.id, device, errp) < 0) {
			return -EBUSY; /* QEMU finds the disk busy first */
		}
		if (r < 0) {
			struct job *busy = jobs_find_if(registry_jobs(rv->reg), rv->name,
							job_on_target, (void *)target);

			return busy ? error_set(errp, EBUSY,
						"Node '%s' is busy: block device is in use by "
						"block job: %s",
						target, job_driver(busy)->type)
				    : error_set(errp, EBUSY, "Node '%s' is in use by a device",
						target);
		}
		j->base = t;
		j->claimed = true; /* bjob_free() gives it back */
		if (!(j->target = strdup(target))) {
			return error_set(errp, ENOMEM, "out of memory");
		}
	}
	if (incremental && !bitmap) {
		return error_set(errp, EINVAL,
				 "must provide a valid bitmap name for '%s' sync mode", sync);
	}
	r = bitmap ? backup_bitmap_check(j, &d, sync, args, before, n_before, errp)
	    : str_arg(args, "bitmap-mode")
		    ? error_set(errp, EINVAL, "Cannot specify bitmap sync mode without a bitmap")
		    : 0;
	if (r < 0) {
		return r;
	}
	if (speed && json_integer_value(speed) < 0) {
		return error_set(errp, EINVAL, "Parameter 'speed' expects a non-negative value");
	}
	if (bool_arg(args, "compress", false)) {
		return error_set(errp, ENOTSUP, "'compress' is not supported by vmmd's backup");
	}
	if (d.node != d.root) {
		return error_set(errp, ENOTSUP,
				 "vmmd backs up a disk's active layer only, not '%s'", device);
	}
	r = check_idle(rv, d.id, device, errp);
	if (r < 0) {
		return r;
	}
	if (!(j->disk = strdup(d.id))) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	j->root = block_ref(d.root);
	r = snap_take_disk(s, &d, errp);
	if (r == 0 && !drive && block_length(t) != block_length(d.root)) {
		r = error_set(errp, EINVAL, "Source and target image have different sizes");
	}
	if (r == 0) {
		r = bjob_options(rv, &backup_driver, args, device, &o, errp);
	}
	if (r == 0 && drive) {
		/* the job is created once the target is open, as QEMU's */
		s->file = target;
		s->existing = mode && strcmp(mode, "existing") == 0;
		s->format =
			str_arg(args, "format") ? str_arg(args, "format") : block_format(d.root);
		if (s->existing && !str_arg(args, "format")) {
			return error_set(errp, EINVAL,
					 "drive-backup with mode 'existing' needs 'format' (vmmd "
					 "never probes an image's format)");
		}
		if (j->sync == MIRROR_TOP && !block_backing(d.root)) {
			j->sync = MIRROR_FULL; /* as QEMU: no backing file to leave below */
		}
		return jobs_check_id(registry_jobs(rv->reg), &o, errp);
	}
	if (r == 0) {
		r = jobs_create(registry_jobs(rv->reg), &backup_driver, &o, TAKE_PTR(s->bj),
				&s->job, errp);
	}
	if (r == 0 && block_is_read_only(t)) {
		/* QEMU creates the job, then finds the target read-only */
		job_discard(TAKE_PTR(s->job));
		r = error_set(errp, EROFS, "Could not create node: Block node is read-only");
	}
	return r;
}

/* Worker: drive-backup's target, created (unless "existing") and opened. */
static int backup_open(struct snap *s, struct error **errp)
{
	struct bjob *j = s->bj;
	struct block_node *backing = j->sync == MIRROR_TOP    ? block_backing(j->root)
				     : j->sync == MIRROR_NONE ? j->root
							      : NULL;
	int r = 0;

	if (!s->existing) {
		r = block_create_target(s->file, s->format, block_length(j->root), backing, errp);
		s->created = r == 0;
		/* a new image reads as zeroes: a full backup writes only what the chain holds */
		j->target_zeroed = true;
	}
	if (r == 0) {
		r = block_open_target(&j->base, s->file, s->format, j->root, NULL, s->existing,
				      errp);
	}
	if (r == 0 && block_length(j->base) != block_length(j->root)) {
		r = error_set(errp, EINVAL, "Source and target image have different sizes");
	}
	return r;
}

/* Worker, the disk drained: what the backup copies, before any write may land. */
static int backup_begin(struct snap *s, struct error **errp)
{
	struct bjob *j = s->job ? job_opaque(s->job) : s->bj;
	uint64_t len = block_length(j->root), off = 0;
	int r = block_cbw_start(j->root, BLOCKJOB_DIRTY_GRANULARITY, errp);

	if (r < 0) {
		return r;
	}
	j->cbw = true;
	if (j->sync != MIRROR_TOP) {
		block_cbw_mark(j->root, 0, len);
	}
	if (j->bitmap) {
		/* incremental, bitmap: what it recorded is what is copied */
		r = block_dirty_bitmap_begin_backup(j->root, j->bitmap, j->bitmap_sync,
						    j->bitmap_mode != BITMAP_NEVER, errp);
		j->bitmap_taken = r == 0;
	}
	if (r < 0 || j->sync != MIRROR_TOP || j->bitmap_sync) {
		return r;
	}
	while (off < len && r == 0) {
		uint64_t pnum;
		bool alloc;

		r = block_is_allocated_above(j->root, block_backing(j->root), off, len - off, &pnum,
					     &alloc);
		if (r < 0) {
			error_set_errno(errp, -r, "cannot read the allocation map");
		} else {
			if (alloc) {
				block_cbw_mark(j->root, off, pnum);
			}
			off += pnum;
		}
	}
	return r;
}

/* Worker: a backup that will not happen lets the disk's writes go. */
static void backup_abort(struct snap *s)
{
	struct bjob *j = s->job ? job_opaque(s->job) : s->bj;

	if (j && j->bitmap_taken) {
		/* what it held, back before the transaction's bitmap actions are undone */
		block_dirty_bitmap_end_backup(j->root, j->bitmap, j->bitmap_mode != BITMAP_NEVER,
					      false);
		j->bitmap_taken = false;
	}
	if (j && j->cbw) {
		block_cbw_stop(j->root);
		j->cbw = false;
	}
	if (j && s->file) {
		/* drive-backup's image closes here, on the worker */
		block_unref(TAKE_PTR(j->base));
	}
	if (s->created) {
		unlink(s->file);
		s->created = false;
	}
}

/* Control thread, the transaction done (@r) or refused: the job starts or goes. */
static int backup_finish(struct registry_vm *rv, struct snap *s, json_t *args, int r,
			 struct error **errp)
{
	struct job_options o;

	if (r == 0 && !s->job) {
		r = bjob_options(rv, &backup_driver, args, str_arg(args, "device"), &o, errp);
		if (r == 0) {
			r = jobs_create(registry_jobs(rv->reg), &backup_driver, &o, TAKE_PTR(s->bj),
					&s->job, errp);
		}
	}
	if (r == 0) {
		struct bjob *j = job_opaque(s->job);

		j->job = s->job;
		job_progress_set_total(s->job, block_cbw_bytes(j->root));
		return job_start(TAKE_PTR(s->job), errp);
	}
	if (s->job) {
		job_abort_unstarted(TAKE_PTR(s->job));
	}
	bjob_free(TAKE_PTR(s->bj));
	return r;
}

/* Worker: an action that will not happen. */
static void snap_abort(struct snap *s)
{
	if (s->backup) {
		backup_abort(s);
		return;
	}
	block_unref(TAKE_PTR(s->overlay));
	if (s->created) {
		unlink(s->file);
		s->created = false;
	}
}

/* Worker, @s->root drained: the overlay goes on top; the drain ends. */
static void snap_switch(struct registry_vm *rv, struct snap *s)
{
	struct error *err = NULL;

	block_insert_overlay(s->root, TAKE_PTR(s->overlay));
	if (s->overlay_action && !s->overlay_named &&
	    block_set_backing(s->root, block_backing(s->root), NULL, &err) < 0) {
		log_full(LOG_ERR, rv->name, s->disk, "cannot record the backing file in %s: %s",
			 s->overlay_file, err->msg);
		error_free(err);
	}
	block_drain_end(s->root);
}

static void snap_free(struct snap *s)
{
	block_unref(s->bs);
	merge_srcs_free(s->srcs, s->n_srcs);
	block_dirty_bitmap_state_free(s->saved);
	if (s->job) {
		job_abort_unstarted(TAKE_PTR(s->job)); /* its bjob goes with it */
	}
	bjob_free(TAKE_PTR(s->bj));
	block_unref(s->overlay);
	block_unref(s->root);
	free(s->disk);
	free(s->overlay_file);
}

static void snap_work(void *arg)
{
	struct snap_op *op = arg;
	uint64_t kept = 0;
	size_t i;
	int r = 0;

	for (i = 0; i < op->n && r == 0; i++) {
		struct snap *s = &op->snaps[i];

		if (s->backup && s->file) {
			r = backup_open(s, &op->err);
		} else if (!s->overlay_action && !s->internal && !s->backup && !s->bitmap_act) {
			r = snap_open(s, &op->err);
		}
	}
	if (r == 0) {
		/* All opened: every disk held; internal snapshots, then the switches. */
		for (i = 0; i < op->n; i++) {
			if (op->snaps[i].root) { /* (not a blockdev-add node's bitmap) */
				block_drain_begin(op->snaps[i].root);
			}
		}
		for (i = 0; i < op->n && r == 0; i++) {
			if (op->snaps[i].internal) {
				r = internal_take(op->rv, &op->snaps[i], &op->err);
			}
		}
		/*
		 * after the snapshots, before any write: a backup's point in time
		 * is theirs, and the bitmaps change at it, in the actions' order
		 */
		for (i = 0; i < op->n && r == 0; i++) {
			struct snap *s = &op->snaps[i];

			if (s->backup) {
				r = backup_begin(s, &op->err);
			} else if (s->bitmap_act) {
				r = bitmap_apply(
					s, json_object_get(json_array_get(op->actions, i), "data"),
					&kept, &op->err);
			}
		}
		for (i = op->n; r < 0 && i-- > 0;) {
			struct snap *s = &op->snaps[i];

			if (s->backup) {
				backup_abort(s); /* (a bitmap it took, back before their undo) */
			}
			bitmap_undo(s);

			/* undone, as QEMU's transaction aborts: the snapshots taken go again */
			if (s->made &&
			    block_snapshot_delete_id(s->root, NULL, s->name, NULL) == 0) {
				s->made = false;
			} else if (s->made) {
				log_full(
					LOG_ERR, op->rv->name, s->disk,
					"internal snapshot '%s' stays after the transaction failed",
					s->name);
			}
		}
		for (i = 0; i < op->n; i++) {
			struct snap *s = &op->snaps[i];

			if (r == 0) {
				bitmap_commit(s);
			}
			if (r == 0 && !s->internal && !s->backup && !s->bitmap_act) {
				snap_switch(op->rv, s);
			} else if (s->root) {
				block_drain_end(s->root);
			}
		}
	}
	if (r < 0) {
		for (i = 0; i < op->n; i++) {
			snap_abort(&op->snaps[i]);
		}
		op->r = r;
	}
	/* (here: the last reference of a disk unplugged meanwhile closes it) */
	for (i = 0; i < op->n; i++) {
		block_unref(TAKE_PTR(op->snaps[i].root));
	}
}

/* The op ends: the answer, with the disks and the definition's file done. */
static void snap_answer(void *arg)
{
	struct snap_op *op = arg;

	registry_disks_end(op->rv);
	op->done(op->opaque, op->rv, op->r, TAKE_PTR(op->err));
	json_decref(op->actions);
	free(op->snaps);
	free(op);
}

static void snap_done(void *arg)
{
	struct snap_op *op = arg;
	struct registry_vm *rv = op->rv;
	struct error *err = NULL;
	bool changed = false;

	for (size_t i = 0; i < op->n; i++) {
		struct snap *s = &op->snaps[i];
		const char *file = s->overlay_action ? s->overlay_file : s->file;

		if (s->backup) {
			json_t *data = json_object_get(json_array_get(op->actions, i), "data");
			int r = backup_finish(rv, s, data, op->r, op->r == 0 ? &op->err : NULL);

			if (r < 0 && op->r == 0) {
				op->r = r; /* (drive-backup's job could not be created) */
			}
		} else if (s->bitmap_act) {
			/* (done on the worker) */
		} else if (op->r == 0 && s->internal) {
			log_full(LOG_INFO, rv->name, s->disk, "internal snapshot '%s' taken",
				 s->name);
		} else if (op->r == 0) {
			if (s->overlay_action) {
				/* the blockdev-add entry goes; the disk's chain holds the node now */
				vm_blockdev_forget(rv->vm, s->overlay_name);
			}
			if (registry_set_disk(rv, s->disk, file,
					      s->overlay_action ? "qcow2" : s->format, &err) < 0) {
				log_full(LOG_ERR, rv->name, s->disk,
					 "cannot record the overlay: %s", err->msg);
				error_free(TAKE_PTR(err));
			} else {
				changed = true;
			}
			log_full(LOG_INFO, rv->name, s->disk, "external snapshot: now on %s", file);
		}
		snap_free(s);
	}
	/* the answer once the definition naming the overlays is on disk too */
	if (!changed || registry_write_definition(rv, snap_answer, op) < 0) {
		snap_answer(op);
	}
}

/* QEMU 7.2's TransactionAction types, every one of which vmmd takes. */
static bool qemu_action(const char *type)
{
	static const char *const types[] = {
		"abort",
		"block-dirty-bitmap-add",
		"block-dirty-bitmap-remove",
		"block-dirty-bitmap-clear",
		"block-dirty-bitmap-enable",
		"block-dirty-bitmap-disable",
		"block-dirty-bitmap-merge",
		"blockdev-backup",
		"blockdev-snapshot",
		"blockdev-snapshot-internal-sync",
		"blockdev-snapshot-sync",
		"drive-backup",
	};

	for (size_t i = 0; i < ARRAY_SIZE(types); i++) {
		if (strcmp(type, types[i]) == 0) {
			return true;
		}
	}
	return false;
}

/* At most this many actions in one transaction (a client-controlled count). */
#define BLOCKJOB_MAX_ACTIONS 64

static int snap_run(struct registry_vm *rv, json_t *actions, bool grouped, registry_done_fn done,
		    void *opaque, struct error **errp)
{
	struct vm *vm = live_vm(rv, errp);
	struct snap_op *op;
	size_t n = json_array_size(actions), i, k;
	unsigned jobs = 0;
	json_t *a;
	int r = 0;

	if (!vm) {
		return -ENODEV;
	}
	r = registry_disks_check(rv, errp);
	if (r < 0) {
		return r;
	}
	if (n > BLOCKJOB_MAX_ACTIONS) {
		return error_set(errp, E2BIG, "a transaction has at most %d actions",
				 BLOCKJOB_MAX_ACTIONS);
	}
	json_array_foreach (actions, i, a) {
		const char *type = str_arg(a, "type");

		if (!json_is_object(a) || !type || !json_is_object(json_object_get(a, "data"))) {
			return error_set(errp, EINVAL,
					 "transaction action %zu needs \"type\" and \"data\"", i);
		}
		if (!qemu_action(type)) {
			return error_set(errp, EINVAL,
					 "Parameter 'type' does not accept value '%s'", type);
		}
		if (strcmp(type, "blockdev-backup") == 0 || strcmp(type, "drive-backup") == 0) {
			if (grouped && ++jobs > 1) {
				/* one job alone completes as its group would */
				return error_set(errp, ENOTSUP,
						 "completion-mode 'grouped' with more than one "
						 "job is not supported by vmmd");
			}
			continue;
		}
		if (grouped &&
		    strcmp(type, "abort") != 0) { /* QEMU: only jobs complete as a group */
			return error_set(errp, ENOTSUP,
					 "Action '%s' does not support Transaction property "
					 "completion-mode = grouped",
					 type);
		}
	}
	op = calloc(1, sizeof(*op));
	if (!op || !(op->snaps = calloc(n ? n : 1, sizeof(*op->snaps)))) {
		free(op);
		return error_set(errp, ENOMEM, "out of memory");
	}
	op->rv = rv;
	op->actions = json_incref(actions);
	op->n = n;
	op->done = done;
	op->opaque = opaque;
	/* Check every action; the second use of a disk or a name is refused. */
	for (i = 0; i < n && r == 0; i++) {
		json_t *act = json_array_get(actions, i), *data = json_object_get(act, "data");
		struct snap *s = &op->snaps[i];

		s->overlay_action = strcmp(str_arg(act, "type"), "blockdev-snapshot") == 0;
		s->internal = strcmp(str_arg(act, "type"), "blockdev-snapshot-internal-sync") == 0;
		if (strcmp(str_arg(act, "type"), "abort") == 0) {
			r = error_set(errp, ECANCELED, "Transaction aborted using Abort action");
			continue;
		}
		if (bitmap_act_parse(str_arg(act, "type"))) {
			/* (beside any other action on its disk) */
			r = bitmap_check(rv, bitmap_act_parse(str_arg(act, "type")), data, s,
					 op->snaps, i, errp);
			continue;
		}
		if (strcmp(str_arg(act, "type"), "blockdev-backup") == 0 ||
		    strcmp(str_arg(act, "type"), "drive-backup") == 0) {
			/* (with internal snapshots of its disk: the backup is of their moment) */
			r = backup_check(rv, vm, data, s,
					 strcmp(str_arg(act, "type"), "drive-backup") == 0,
					 op->snaps, i, errp);
			for (k = 0; r == 0 && k < i; k++) {
				if (!op->snaps[k].internal && !op->snaps[k].bitmap_act &&
				    strcmp(s->disk, op->snaps[k].disk) == 0) {
					r = error_set(errp, EINVAL,
						      "disk '%s' appears twice in the transaction",
						      s->disk);
				}
			}
			continue;
		}
		if (s->internal) {
			/* (a disk may have several, as QEMU's, and a backup; not with an overlay) */
			r = internal_check(rv, vm, data, s, op->snaps, i, errp);
			for (k = 0; r == 0 && k < i; k++) {
				if (!op->snaps[k].internal && !op->snaps[k].backup &&
				    !op->snaps[k].bitmap_act &&
				    strcmp(s->disk, op->snaps[k].disk) == 0) {
					r = error_set(errp, EINVAL,
						      "disk '%s' appears twice in the transaction",
						      s->disk);
				}
			}
			continue;
		}
		for (k = 0; k < i && r == 0; k++) {
			const char *dev = str_arg(data, s->overlay_action ? "node" : "device");
			const char *ov = s->overlay_action ? str_arg(data, "overlay") : NULL;

			if (op->snaps[k].bitmap_act) {
				continue;
			}
			if (dev && strcmp(dev, op->snaps[k].disk) == 0) {
				r = error_set(errp, EINVAL,
					      "disk '%s' appears twice in the transaction", dev);
			} else if (ov && op->snaps[k].overlay_name &&
				   strcmp(ov, op->snaps[k].overlay_name) == 0) {
				r = error_set(errp, EBUSY, "The overlay is already in use");
			}
		}
		if (r == 0) {
			r = s->overlay_action ? overlay_check(rv, vm, data, s, errp)
					      : snap_check(rv, vm, data, s, errp);
		}
		for (k = 0; r == 0 && k < i; k++) {
			if (op->snaps[k].bitmap_act) {
				continue;
			}
			if (strcmp(s->disk, op->snaps[k].disk) == 0) {
				r = error_set(errp, EINVAL,
					      "disk '%s' appears twice in the transaction",
					      s->disk);
			} else if (s->node_name && op->snaps[k].node_name &&
				   strcmp(s->node_name, op->snaps[k].node_name) == 0) {
				r = error_set(errp, EEXIST, "New overlay node-name already in use");
			}
		}
	}
	if (r == 0) {
		r = registry_disks_begin(rv, snap_work, snap_done, op, errp);
	}
	if (r < 0) {
		for (i = 0; i < n; i++) {
			snap_free(&op->snaps[i]);
		}
		json_decref(op->actions);
		free(op->snaps);
		free(op);
	}
	return r;
}

int blockjob_snapshot_sync(struct registry_vm *rv, json_t *args, registry_done_fn done,
			   void *opaque, struct error **errp)
{
	json_auto_t *actions =
		json_pack("[{s:s, s:O}]", "type", "blockdev-snapshot-sync", "data", args);

	return actions ? snap_run(rv, actions, false, done, opaque, errp)
		       : error_set(errp, ENOMEM, "out of memory");
}

int blockjob_snapshot(struct registry_vm *rv, json_t *args, registry_done_fn done, void *opaque,
		      struct error **errp)
{
	json_auto_t *actions = json_pack("[{s:s, s:O}]", "type", "blockdev-snapshot", "data", args);

	return actions ? snap_run(rv, actions, false, done, opaque, errp)
		       : error_set(errp, ENOMEM, "out of memory");
}

int blockjob_transaction(struct registry_vm *rv, json_t *args, registry_done_fn done, void *opaque,
			 struct error **errp)
{
	const char *mode = str_arg(json_object_get(args, "properties"), "completion-mode");

	if (mode && strcmp(mode, "individual") != 0 && strcmp(mode, "grouped") != 0) {
		return error_set(errp, EINVAL,
				 "Parameter 'completion-mode' does not accept value '%s'", mode);
	}
	return snap_run(rv, json_object_get(args, "actions"), mode && !strcmp(mode, "grouped"),
			done, opaque, errp);
}

int blockjob_backup(struct registry_vm *rv, json_t *args, bool drive, registry_done_fn done,
		    void *opaque, struct error **errp)
{
	json_auto_t *actions = json_pack("[{s:s, s:O}]", "type",
					 drive ? "drive-backup" : "blockdev-backup", "data", args);

	return actions ? snap_run(rv, actions, false, done, opaque, errp)
		       : error_set(errp, ENOMEM, "out of memory");
}

int blockjob_snapshot_internal(struct registry_vm *rv, json_t *args, registry_done_fn done,
			       void *opaque, struct error **errp)
{
	json_auto_t *actions =
		json_pack("[{s:s, s:O}]", "type", "blockdev-snapshot-internal-sync", "data", args);

	return actions ? snap_run(rv, actions, false, done, opaque, errp)
		       : error_set(errp, ENOMEM, "out of memory");
}

/* ---- blockdev-snapshot-delete-internal-sync ---- */

struct del_op {
	struct registry_vm *rv;
	struct block_node *root;
	char *disk, *id, *name;
	json_t *info; /* the snapshot's SnapshotInfo, the answer */
	blockjob_ret_fn *done;
	void *opaque;
	int r;
	struct error *err;
};

static void del_work(void *arg)
{
	struct del_op *op = arg;

	block_drain_begin(op->root);
	op->r = block_snapshot_delete_id(op->root, op->id, op->name, &op->err);
	block_drain_end(op->root);
	block_unref(TAKE_PTR(op->root));
}

static void del_done(void *arg)
{
	struct del_op *op = arg;

	registry_disks_end(op->rv);
	if (op->r == 0) {
		log_full(LOG_INFO, op->rv->name, op->disk, "internal snapshot '%s' deleted",
			 op->name);
	}
	op->done(op->opaque, op->r, op->r == 0 ? TAKE_PTR(op->info) : NULL, TAKE_PTR(op->err));
	json_decref(op->info);
	free(op->disk);
	free(op->id);
	free(op->name);
	free(op);
}

int blockjob_snapshot_delete_internal(struct registry_vm *rv, json_t *args, blockjob_ret_fn *done,
				      void *opaque, struct error **errp)
{
	const char *device = str_arg(args, "device"), *id = str_arg(args, "id");
	const char *name = str_arg(args, "name");
	struct vm *vm = live_vm(rv, errp);
	json_auto_t *info = NULL;
	struct disk_node d;
	struct del_op *op;
	int r;

	if (!vm) {
		return -ENODEV;
	}
	if (!find_disk(vm, device, device, &d)) {
		return error_set(errp, ENOENT, "Cannot find device='%s' nor node-name='%s'", device,
				 device);
	}
	if (d.node != d.root) {
		return error_set(errp, EINVAL, "Need a root block node");
	}
	if (!id && !name) {
		return error_set(errp, EINVAL, "Name or id must be provided");
	}
	r = check_idle(rv, d.id, device, errp);
	if (r < 0) {
		return r;
	}
	if (!block_can_snapshot(d.root)) {
		return error_set(errp, ENOTSUP,
				 "Failed to get a snapshot list: Operation not supported");
	}
	info = find_snapshot_by(d.root, id, name);
	if (!info) {
		return error_set(
			errp, ENOENT,
			"Snapshot with id '%s' and name '%s' does not exist on device '%s'",
			id ? id : "null", name ? name : "null", device);
	}
	if (block_is_read_only(d.root)) {
		/* (QEMU 7.2 forgets the snapshot in memory all the same; vmmd changes nothing) */
		return error_set(errp, EPERM,
				 "Failed to remove snapshot from snapshot list: Operation not "
				 "permitted");
	}
	op = calloc(1, sizeof(*op));
	if (!op || !(op->disk = strdup(d.id)) || !(op->id = strdup(str_arg(info, "id"))) ||
	    !(op->name = strdup(str_arg(info, "name")))) {
		if (op) {
			free(op->disk);
			free(op->id);
		}
		free(op);
		return error_set(errp, ENOMEM, "out of memory");
	}
	op->rv = rv;
	op->root = block_ref(d.root);
	op->info = TAKE_PTR(info);
	op->done = done;
	op->opaque = opaque;
	r = registry_disks_begin(rv, del_work, del_done, op, errp);
	if (r < 0) {
		block_unref(op->root); /* the disk's: not the last reference */
		json_decref(op->info);
		free(op->disk);
		free(op->id);
		free(op->name);
		free(op);
	}
	return r;
}
