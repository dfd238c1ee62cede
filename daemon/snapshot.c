/*
 * Internal snapshots of a running VM: see snapshot.h and docs/vmstate.md.
 *
 * snapshot-save (QEMU's save_snapshot): check the disks (each writable one
 * must have internal snapshots), that no disk has the tag yet and that the
 * vmstate disk is one of them; pause the VM (STOP), drain and hold its
 * I/O thread, capture the vCPU and device state, write the VM-state stream
 * (below) into the vmstate disk's VM-state area, then create the snapshot
 * on every disk with the same date and guest clock. A failure removes the
 * snapshots already made and the VM state written: nothing is left. The
 * VM resumes (RESUME) if it ran.
 *
 * snapshot-load (QEMU's load_snapshot): pause the VM; every disk must have
 * the tag and the vmstate disk's snapshot must hold VM state; revert every
 * disk, read the stream, check it against the VM, write guest RAM, reset
 * and load the devices and vCPUs. As in QEMU, the VM stays paused when
 * the load fails, and resumes when it succeeds and ran before.
 *
 * snapshot-delete removes the tag from every disk that has it.
 *
 * The VM-state stream, at the start of the VM-state area (little-endian):
 *   0  "VMMDVMST"          8  format version (u32, 1)
 *   12 manifest bytes (u32) 16 state bytes (u64)
 *   24 RAM offset (u64)     32 RAM bytes (u64)
 *   40 CRC-32 of the manifest (u32), 44 CRC-32 of bytes 0-43 (u32)
 *   48 the manifest (vm-save's manifest.json), then the state sections
 *   RAM offset (64 KiB aligned): guest RAM, regions back to back as in
 *   vm-save's memory file; zero runs are not written (they read as zero)
 * The snapshot's vm_state_size is the RAM offset plus the RAM bytes.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/bytes.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/vmstate.h"
#include "daemon/blockjob.h"
#include "daemon/jobs.h"
#include "daemon/registry.h"
#include "daemon/snapshot.h"
#include "vmmd/block.h"
#include "vmmd/vm.h"

#define SNAP_MAX_DISKS 64
#define SNAP_MAX_TAG 1024
#define STREAM_MAGIC "VMMDVMST"
#define STREAM_VERSION 1
#define STREAM_HEADER 48
#define STREAM_RAM_ALIGN (64u << 10)
#define STREAM_MAX_MANIFEST (16u << 20)
#define STREAM_MAX_STATE (256u << 20) /* as vm-save's state file */
/* RAM is written and read in chunks of this size; zero runs of ZERO_GRAIN are skipped. */
#define RAM_CHUNK (1u << 20)
#define ZERO_GRAIN (64u << 10)

enum snap_kind {
	SNAP_SAVE,
	SNAP_LOAD,
	SNAP_DELETE
};

struct snapjob {
	enum snap_kind kind;
	struct vm *vm;
	char *tag;
	char *pre_err; /* an argument error QEMU reports through the job */
	unsigned n;
	struct block_node *disks[SNAP_MAX_DISKS];
	char *names[SNAP_MAX_DISKS]; /* as given */
	int vmstate;		     /* index in disks, -1 when not one of them */
	char *vmstate_name;	     /* NULL: HMP's "the first disk that can take it" */
	bool overwrite;		     /* HMP savevm: an existing tag is replaced */
	void (*done)(void *opaque, const char *err); /* HMP: the answer */
	void *done_opaque;
};

static void snapjob_free(void *opaque)
{
	struct snapjob *s = opaque;

	if (!s) {
		return;
	}
	for (unsigned i = 0; i < s->n; i++) {
		block_unref(s->disks[i]);
		free(s->names[i]);
	}
	free(s->tag);
	free(s->pre_err);
	free(s->vmstate_name);
	free(s);
}

/* ---- finding the nodes ---- */

struct lookup {
	const char *name;
	struct block_node *bs;
	const char *id;
};

static void lookup_cb(void *opaque, const char *id, struct block_node *bs)
{
	struct lookup *l = opaque;

	if (l->bs) {
		return;
	}
	/* a disk's id or its top node's node-name */
	if (!strcmp(id, l->name) ||
	    (block_node_name(bs) && !strcmp(block_node_name(bs), l->name))) {
		l->bs = bs;
		l->id = id;
	}
}

static struct block_node *find_node(struct vm *vm, const char *name, const char **ret_id)
{
	struct lookup l = {.name = name};

	vm_for_each_disk(vm, lookup_cb, &l);
	if (ret_id) {
		*ret_id = l.id;
	}
	return l.bs;
}

/* QEMU fails the job, not the command, for these: the job reports @msg. */
static void set_pre_err(struct snapjob *s, const char *msg)
{
	if (!s->pre_err) {
		s->pre_err = strdup(msg);
	}
}

/* ---- the stream ---- */

static bool all_zero(const uint8_t *p, size_t n)
{
	const uint64_t *q = (const uint64_t *)p;

	for (size_t i = 0; i < n / 8; i++) {
		if (q[i]) {
			return false;
		}
	}
	return true;
}

static int write_ram(struct vm *vm, struct block_node *bs, uint64_t pos, struct error **errp)
{
	for (unsigned i = 0; i < vm_ram_region_count(vm); i++) {
		uint64_t gpa, size, off = 0;
		uint8_t *host = vm_ram_region(vm, i, &gpa, &size);

		while (off < size) {
			uint64_t start, end;
			int r;

			/* the next non-zero run, at most RAM_CHUNK long */
			while (off < size && all_zero(host + off, MIN(ZERO_GRAIN, size - off))) {
				off += MIN(ZERO_GRAIN, size - off);
			}
			if (off >= size) {
				break;
			}
			start = off;
			end = start;
			while (end < size && end - start < RAM_CHUNK &&
			       !all_zero(host + end, MIN(ZERO_GRAIN, size - end))) {
				end += MIN(ZERO_GRAIN, size - end);
			}
			r = block_vmstate_write(bs, pos + start, host + start, end - start);
			if (r < 0) {
				return error_set_errno(errp, -r, "Error while writing VM state");
			}
			off = end;
		}
		pos += size;
	}
	return 0;
}

/* Write the stream; *ret_size: the VM-state size for the snapshot table. */
static int write_stream(struct vm *vm, struct block_node *bs, const struct vmstate_buf *state,
			json_t *manifest, uint64_t *ret_size, struct error **errp)
{
	_cleanup_free_ char *text = json_dumps(manifest, JSON_COMPACT | JSON_PRESERVE_ORDER);
	_cleanup_free_ uint8_t *head = NULL;
	uint64_t mlen, hlen, ram_off, ram = 0;
	int r;

	if (!text) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	for (unsigned i = 0; i < vm_ram_region_count(vm); i++) {
		uint64_t gpa, size;

		vm_ram_region(vm, i, &gpa, &size);
		ram += size;
	}
	mlen = strlen(text);
	hlen = STREAM_HEADER + mlen + state->len;
	ram_off = ALIGN_UP(hlen, STREAM_RAM_ALIGN);
	head = calloc(1, ram_off);
	if (!head) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	memcpy(head, STREAM_MAGIC, 8);
	put_le32(head + 8, STREAM_VERSION);
	put_le32(head + 12, (uint32_t)mlen);
	put_le64(head + 16, state->len);
	put_le64(head + 24, ram_off);
	put_le64(head + 32, ram);
	put_le32(head + 40, vmstate_crc32(text, mlen));
	put_le32(head + 44, vmstate_crc32(head, 44));
	memcpy(head + STREAM_HEADER, text, mlen);
	memcpy(head + STREAM_HEADER + mlen, state->data, state->len);
	r = block_vmstate_write(bs, 0, head, ram_off);
	if (r < 0) {
		return error_set_errno(errp, -r, "Error while writing VM state");
	}
	r = write_ram(vm, bs, ram_off, errp);
	if (r < 0) {
		return r;
	}
	r = block_flush(bs);
	if (r < 0) {
		return error_set_errno(errp, -r, "Error while writing VM state");
	}
	*ret_size = ram_off + ram;
	return 0;
}

/* Read and check the stream's header, manifest and state: a snapshot without RAM. */
static int read_stream(struct block_node *bs, uint64_t vm_state_size, struct vm_snapshot **ret,
		       uint64_t *ret_ram_off, struct error **errp)
{
	uint8_t h[STREAM_HEADER];
	uint64_t slen, ram_off, ram;
	uint32_t mlen;
	_cleanup_free_ char *text = NULL;
	_cleanup_free_ uint8_t *state = NULL;
	json_error_t jerr;
	json_t *m;
	int r;

	r = block_vmstate_read(bs, 0, h, sizeof(h));
	if (r < 0) {
		return error_set_errno(errp, -r, "Error while reading VM state");
	}
	if (memcmp(h, STREAM_MAGIC, 8) != 0 || le32(h + 44) != vmstate_crc32(h, 44)) {
		return error_set(errp, EINVAL,
				 "the snapshot's VM state is not vmmd's (or is damaged)");
	}
	if (le32(h + 8) != STREAM_VERSION) {
		return error_set(errp, ENOTSUP,
				 "the snapshot's VM state has format version %u; this vmmd (%s) "
				 "reads %d",
				 le32(h + 8), PACKAGE_VERSION, STREAM_VERSION);
	}
	mlen = le32(h + 12);
	slen = le64(h + 16);
	ram_off = le64(h + 24);
	ram = le64(h + 32);
	if (mlen > STREAM_MAX_MANIFEST || slen > STREAM_MAX_STATE ||
	    ram_off < STREAM_HEADER + mlen + slen || ram_off > vm_state_size ||
	    ram != vm_state_size - ram_off) {
		return error_set(errp, EINVAL, "the snapshot's VM state header is inconsistent");
	}
	text = malloc(mlen + 1);
	state = malloc(slen ? slen : 1);
	if (!text || !state) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	r = block_vmstate_read(bs, STREAM_HEADER, text, mlen);
	if (r == 0) {
		r = block_vmstate_read(bs, STREAM_HEADER + mlen, state, slen);
	}
	if (r < 0) {
		return error_set_errno(errp, -r, "Error while reading VM state");
	}
	text[mlen] = '\0';
	if (vmstate_crc32(text, mlen) != le32(h + 40)) {
		return error_set(errp, EINVAL,
				 "checksum mismatch in the snapshot's manifest: the VM state is "
				 "damaged");
	}
	m = json_loadb(text, mlen, JSON_REJECT_DUPLICATES, &jerr);
	if (!m) {
		return error_set(errp, EINVAL, "the snapshot's manifest: %s", jerr.text);
	}
	r = vm_snapshot_from_stream(m, TAKE_PTR(state), slen, -1, ret, errp);
	if (r < 0) {
		return r;
	}
	*ret_ram_off = ram_off;
	return 0;
}

/*
 * Guest RAM from the stream, through a bounce buffer: a grain the stream
 * has as zeroes is only written where the guest's page is not zero already,
 * so RAM the guest never touched is read (the shared zero page), not
 * allocated and cleared (4 GiB of untouched RAM: seconds instead of half a
 * minute here).
 */
static int read_ram(struct vm *vm, struct block_node *bs, uint64_t pos, struct error **errp)
{
	_cleanup_free_ uint8_t *buf = NULL;

	if (posix_memalign((void **)&buf, 4096, RAM_CHUNK) != 0) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	for (unsigned i = 0; i < vm_ram_region_count(vm); i++) {
		uint64_t gpa, size;
		uint8_t *host = vm_ram_region(vm, i, &gpa, &size);

		for (uint64_t off = 0; off < size; off += RAM_CHUNK) {
			uint64_t n = MIN(RAM_CHUNK, size - off);
			int r = block_vmstate_read(bs, pos + off, buf, n);

			if (r < 0) {
				return error_set_errno(errp, -r, "Error while reading VM state");
			}
			for (uint64_t g = 0; g < n; g += ZERO_GRAIN) {
				uint64_t k = MIN(ZERO_GRAIN, n - g);

				if (!all_zero(buf + g, k)) {
					memcpy(host + off + g, buf + g, k);
				} else if (!all_zero(host + off + g, k)) {
					memset(host + off + g, 0, k);
				}
			}
		}
		pos += size;
	}
	return 0;
}

/* ---- the jobs ---- */

/* QEMU's bdrv_all_can_snapshot: each writable disk must have internal snapshots. */
static int check_can_snapshot(struct snapjob *s, struct error **errp)
{
	for (unsigned i = 0; i < s->n; i++) {
		if (!block_is_read_only(s->disks[i]) && !block_can_snapshot(s->disks[i])) {
			return error_set(errp, ENOTSUP,
					 "Device '%s' is writable but does not support snapshots",
					 s->names[i]);
		}
	}
	return 0;
}

static bool takes_snapshot(struct snapjob *s, unsigned i)
{
	return (int)i == s->vmstate || block_can_snapshot(s->disks[i]);
}

static int vmstate_disk(struct snapjob *s, struct error **errp)
{
	if (s->vmstate < 0 && !s->vmstate_name) {
		return error_set(errp, ENOENT, "No block device can accept snapshots");
	}
	if (s->vmstate < 0) {
		return error_set(errp, ENOENT, "vmstate block device '%s' does not exist",
				 s->vmstate_name);
	}
	if (!block_can_snapshot(s->disks[s->vmstate]) || block_is_read_only(s->disks[s->vmstate])) {
		return error_set(errp, ENOTSUP, "Device '%s' does not support VM state snapshots",
				 s->vmstate_name);
	}
	return 0;
}

static void delete_made(struct snapjob *s, unsigned upto)
{
	for (unsigned i = 0; i < upto; i++) {
		struct error *err = NULL;

		if (takes_snapshot(s, i) && block_snapshot_delete(s->disks[i], s->tag, &err) < 0) {
			log_full(LOG_ERR, NULL, NULL, "cannot remove snapshot '%s' from '%s': %s",
				 s->tag, s->names[i], err->msg);
			error_free(err);
		}
	}
}

static int do_save(struct snapjob *s, struct error **errp)
{
	struct vmstate_buf state;
	json_t *manifest = NULL;
	struct block_snapshot_vm info = {0};
	enum vm_run_state before;
	struct block_node *vbs;
	struct timespec ts;
	unsigned made = 0;
	int r;

	if (s->pre_err) {
		return error_set(errp, ENOENT, "%s", s->pre_err);
	}
	r = check_can_snapshot(s, errp);
	if (r < 0) {
		return r;
	}
	for (unsigned i = 0; i < s->n; i++) {
		if (!takes_snapshot(s, i) || block_snapshot_find(s->disks[i], s->tag, NULL) <= 0) {
			continue;
		}
		if (!s->overwrite) {
			return error_set(errp, EEXIST,
					 "Snapshot '%s' already exists in one or more devices",
					 s->tag);
		}
		/* HMP savevm replaces it, as QEMU's */
		r = block_snapshot_delete(s->disks[i], s->tag, errp);
		if (r < 0) {
			error_prefix(errp, "Could not delete snapshot '%s' on '%s'", s->tag,
				     s->names[i]);
			return r;
		}
	}
	r = vmstate_disk(s, errp);
	if (r < 0) {
		return r;
	}
	vbs = s->disks[s->vmstate];
	before = vm_get_state(s->vm);
	r = vm_save_begin(s->vm, errp);
	if (r < 0) {
		return r;
	}
	/* QEMU's vm_stop(RUN_STATE_SAVE_VM): a VM that was not running keeps its state */
	if (before == VM_STATE_RUNNING) {
		vm_set_migrate_state(s->vm, VM_STATE_SAVE_VM);
	}
	r = vm_state_capture(s->vm, &state, &manifest, errp);
	if (r < 0) {
		vm_set_migrate_state(s->vm, before == VM_STATE_RUNNING ? VM_STATE_PAUSED : before);
		vm_save_end(s->vm, true);
		return r;
	}
	r = write_stream(s->vm, vbs, &state, manifest, &info.vm_state_size, errp);
	vmstate_buf_free(&state);
	json_decref(manifest);
	clock_gettime(CLOCK_REALTIME, &ts);
	info.date_sec = (uint32_t)ts.tv_sec;
	info.date_nsec = (uint32_t)ts.tv_nsec;
	info.vm_clock_ns = vm_guest_clock_ns(s->vm);
	for (; r == 0 && made < s->n; made++) {
		struct block_snapshot_vm disk_only = info;

		if (!takes_snapshot(s, made)) {
			continue;
		}
		if ((int)made != s->vmstate) {
			disk_only.vm_state_size = 0;
		}
		r = block_snapshot_create_vm(s->disks[made], s->tag, &disk_only, errp);
		if (r < 0) {
			error_prefix(errp, "Could not create snapshot '%s' on '%s'", s->tag,
				     s->names[made]);
			break;
		}
	}
	if (r < 0) {
		/* all or nothing: the snapshots made so far and the VM state go */
		delete_made(s, made);
		block_vmstate_discard(vbs,
				      info.vm_state_size ? info.vm_state_size : STREAM_RAM_ALIGN);
	}
	vm_state_release(s->vm);
	vm_set_migrate_state(s->vm, before == VM_STATE_RUNNING ? VM_STATE_PAUSED : before);
	vm_save_end(s->vm, true);
	return r;
}

static int do_load(struct snapjob *s, struct error **errp)
{
	struct block_snapshot_vm info;
	enum vm_run_state before;
	struct vm_snapshot *snap = NULL;
	struct block_node *vbs;
	uint64_t ram_off = 0;
	bool held = false, ok = false;
	int r;

	/* as QEMU: the VM is paused first (restore-vm if it ran), a failure leaves it so */
	before = vm_get_state(s->vm);
	r = vm_save_begin(s->vm, errp);
	if (r < 0) {
		return r;
	}
	if (before == VM_STATE_RUNNING) {
		vm_set_migrate_state(s->vm, VM_STATE_RESTORE_VM);
	}
	r = s->pre_err ? error_set(errp, ENOENT, "%s", s->pre_err) : check_can_snapshot(s, errp);
	for (unsigned i = 0; r == 0 && i < s->n; i++) {
		if (takes_snapshot(s, i) && block_snapshot_find(s->disks[i], s->tag, NULL) <= 0) {
			r = error_set(errp, ENOENT,
				      "Snapshot '%s' does not exist in one or more devices",
				      s->tag);
		}
	}
	if (r == 0) {
		r = vmstate_disk(s, errp);
	}
	if (r == 0) {
		vbs = s->disks[s->vmstate];
		if (block_snapshot_find(vbs, s->tag, &info) <= 0 || info.vm_state_size == 0) {
			r = error_set(errp, EINVAL,
				      "This is a disk-only snapshot. Revert to it offline using "
				      "qemu-img");
		}
	}
	if (r == 0) {
		r = vm_state_hold(s->vm, errp);
		held = r == 0;
	}
	for (unsigned i = 0; r == 0 && i < s->n; i++) {
		if (takes_snapshot(s, i)) {
			r = block_snapshot_apply(s->disks[i], s->tag, errp);
		}
	}
	if (r == 0) {
		r = read_stream(vbs, info.vm_state_size, &snap, &ram_off, errp);
	}
	if (r == 0) {
		r = vm_state_load_check(s->vm, snap, errp);
	}
	if (r == 0) {
		r = read_ram(s->vm, vbs, ram_off, errp);
	}
	if (r == 0) {
		r = vm_state_load(s->vm, snap, errp);
	}
	if (r == 0) {
		/* the active image need not keep a copy of the state (QEMU's does, unused) */
		block_vmstate_discard(vbs, info.vm_state_size);
		ok = true;
	} else if (held) {
		error_prefix(errp, "Error while loading VM state");
	}
	vm_snapshot_close(snap);
	if (held) {
		vm_state_release(s->vm);
	}
	/* as QEMU: a failed load leaves the VM paused (restore-vm); cont resumes it */
	if (ok) {
		vm_set_migrate_state(s->vm, before == VM_STATE_RUNNING ? VM_STATE_PAUSED : before);
	}
	vm_save_end(s->vm, ok);
	return r;
}

static int do_delete(struct snapjob *s, struct error **errp)
{
	int r = s->pre_err ? error_set(errp, ENOENT, "%s", s->pre_err)
			   : check_can_snapshot(s, errp);

	for (unsigned i = 0; r == 0 && i < s->n; i++) {
		if (!block_can_snapshot(s->disks[i]) ||
		    block_snapshot_find(s->disks[i], s->tag, NULL) <= 0) {
			continue;
		}
		r = block_snapshot_delete(s->disks[i], s->tag, errp);
		if (r < 0) {
			error_prefix(errp, "Could not delete snapshot '%s' on '%s'", s->tag,
				     s->names[i]);
		}
	}
	return r;
}

static int snap_run(struct job *job, struct error **errp)
{
	struct snapjob *s = job_opaque(job);
	int r;

	job_progress_set_total(job, 1);
	if (s->kind == SNAP_SAVE) {
		r = do_save(s, errp);
	} else if (s->kind == SNAP_LOAD) {
		r = do_load(s, errp);
	} else {
		r = do_delete(s, errp);
	}
	job_progress_update(job, 1);
	return r;
}

/* Control thread: HMP's answer. */
static void snap_finished(struct job *job, int ret)
{
	struct snapjob *s = job_opaque(job);

	if (s->done) {
		s->done(s->done_opaque, ret == 0 ? NULL : job_error(job) ?: "cancelled");
	}
}

static const struct job_driver save_driver = {
	.type = "snapshot-save",
	.run = snap_run,
	.finished = snap_finished,
	.free = snapjob_free,
};
static const struct job_driver load_driver = {
	.type = "snapshot-load",
	.run = snap_run,
	.finished = snap_finished,
	.free = snapjob_free,
};
static const struct job_driver delete_driver = {
	.type = "snapshot-delete",
	.run = snap_run,
	.finished = snap_finished,
	.free = snapjob_free,
};

static int start(struct registry_vm *rv, enum snap_kind kind, json_t *args, struct job **ret_job,
		 struct error **errp)
{
	const char *id = json_string_value(json_object_get(args, "job-id"));
	const char *tag = json_string_value(json_object_get(args, "tag"));
	const char *vmstate = json_string_value(json_object_get(args, "vmstate"));
	json_t *devices = json_object_get(args, "devices"), *d;
	struct job_options o = {.id = id, .vm = rv->name, .auto_finalize = true};
	const struct job_driver *drv = kind == SNAP_SAVE   ? &save_driver
				       : kind == SNAP_LOAD ? &load_driver
							   : &delete_driver;
	struct snapjob *s;
	struct job *job;
	size_t i;
	int r;

	if (!rv->vm) {
		return error_set_class(errp, ERROR_CLASS_DEVICE_NOT_ACTIVE, ENODEV,
				       "VM '%s' is not running; start it with vm-start", rv->name);
	}
	if (!tag || strlen(tag) > SNAP_MAX_TAG) {
		return error_set(errp, EINVAL, "Parameter 'tag' is too long (limit %d bytes)",
				 SNAP_MAX_TAG);
	}
	if (json_array_size(devices) > SNAP_MAX_DISKS) {
		return error_set(errp, E2BIG, "Parameter 'devices' lists more than %d nodes",
				 SNAP_MAX_DISKS);
	}
	s = calloc(1, sizeof(*s));
	if (!s || !(s->tag = strdup(tag)) || (vmstate && !(s->vmstate_name = strdup(vmstate)))) {
		snapjob_free(s);
		return error_set(errp, ENOMEM, "out of memory");
	}
	s->kind = kind;
	s->vm = rv->vm;
	s->vmstate = -1;
	json_array_foreach (devices, i, d) {
		const char *name = json_string_value(d), *disk = NULL;
		struct block_node *bs = find_node(rv->vm, name, &disk);
		struct error *busy = NULL;

		if (!bs) {
			_cleanup_free_ char *msg = NULL;

			if (asprintf(&msg, "No block device node '%s'", name) >= 0) {
				set_pre_err(s, msg);
			}
			break;
		}
		/* QEMU's BLOCK_OP_TYPE_INTERNAL_SNAPSHOT blocker of a block job */
		if (blockjob_check_idle(rv, disk, name, &busy) < 0) {
			set_pre_err(s, busy->msg);
			error_free(busy);
			break;
		}
		s->disks[s->n] = block_ref(bs);
		s->names[s->n] = strdup(name);
		if (!s->names[s->n++]) {
			snapjob_free(s);
			return error_set(errp, ENOMEM, "out of memory");
		}
	}
	for (unsigned k = 0; vmstate && k < s->n; k++) {
		if (s->vmstate < 0 && find_node(rv->vm, vmstate, NULL) == s->disks[k]) {
			s->vmstate = (int)k;
		}
	}
	o.vm_flag = registry_violation_flag(rv);
	r = jobs_create(registry_jobs(rv->reg), drv, &o, s, &job, errp);
	if (r < 0) {
		return r;
	}
	if (ret_job) {
		*ret_job = job;
	}
	return job_start(job, errp);
}

int snapshot_save(struct registry_vm *rv, json_t *args, struct job **ret_job, struct error **errp)
{
	return start(rv, SNAP_SAVE, args, ret_job, errp);
}

int snapshot_load(struct registry_vm *rv, json_t *args, struct job **ret_job, struct error **errp)
{
	return start(rv, SNAP_LOAD, args, ret_job, errp);
}

int snapshot_delete(struct registry_vm *rv, json_t *args, struct job **ret_job, struct error **errp)
{
	return start(rv, SNAP_DELETE, args, ret_job, errp);
}

/* ---- HMP ---- */

struct all_disks {
	struct snapjob *s;
	bool failed;
};

static void add_disk(void *opaque, const char *id, struct block_node *bs)
{
	struct all_disks *a = opaque;
	struct snapjob *s = a->s;

	if (a->failed || s->n == SNAP_MAX_DISKS) {
		return;
	}
	s->names[s->n] = strdup(id);
	if (!s->names[s->n]) {
		a->failed = true;
		return;
	}
	s->disks[s->n] = block_ref(bs);
	/* QEMU's bdrv_all_find_vmstate_bs(NULL): the first disk that can take it */
	if (s->vmstate < 0 && !block_is_read_only(bs) && block_can_snapshot(bs)) {
		s->vmstate = (int)s->n;
	}
	s->n++;
}

int snapshot_hmp(struct registry_vm *rv, const char *cmd, const char *tag,
		 void (*done)(void *opaque, const char *err), void *opaque, struct error **errp)
{
	static unsigned seq;
	enum snap_kind kind = !strcmp(cmd, "savevm")   ? SNAP_SAVE
			      : !strcmp(cmd, "loadvm") ? SNAP_LOAD
						       : SNAP_DELETE;
	const struct job_driver *drv = kind == SNAP_SAVE   ? &save_driver
				       : kind == SNAP_LOAD ? &load_driver
							   : &delete_driver;
	struct job_options o = {
		.vm = rv->name, .auto_finalize = true, .auto_dismiss = true, .internal = true};
	struct all_disks a = {0};
	char id[64], name[32];
	struct snapjob *s;
	struct job *job;
	int r;

	if (!rv->vm) {
		return error_set_class(errp, ERROR_CLASS_DEVICE_NOT_ACTIVE, ENODEV,
				       "VM '%s' is not running; start it with vm-start", rv->name);
	}
	if (!tag) {
		/* QEMU's name for a savevm without one: the local date and time */
		time_t now = time(NULL);
		struct tm tm;

		localtime_r(&now, &tm);
		strftime(name, sizeof(name), "vm-%Y%m%d%H%M%S", &tm);
		tag = name;
	}
	if (strlen(tag) > SNAP_MAX_TAG) {
		return error_set(errp, EINVAL, "the snapshot name is too long (limit %d bytes)",
				 SNAP_MAX_TAG);
	}
	s = calloc(1, sizeof(*s));
	if (!s || !(s->tag = strdup(tag))) {
		snapjob_free(s);
		return error_set(errp, ENOMEM, "out of memory");
	}
	s->kind = kind;
	s->vm = rv->vm;
	s->vmstate = -1;
	s->overwrite = true;
	s->done = done;
	s->done_opaque = opaque;
	a.s = s;
	vm_for_each_disk(rv->vm, add_disk, &a);
	if (a.failed) {
		snapjob_free(s);
		return error_set(errp, ENOMEM, "out of memory");
	}
	snprintf(id, sizeof(id), "#hmp-%s-%u", cmd, ++seq);
	o.id = id;
	o.vm_flag = registry_violation_flag(rv);
	r = jobs_create(registry_jobs(rv->reg), drv, &o, s, &job, errp);
	if (r < 0) {
		return r;
	}
	return job_start(job, errp);
}
