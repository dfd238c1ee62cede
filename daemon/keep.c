/*
 * Running VMs across a restart through systemd's fd store: see keep.h and
 * docs/upgrade.md.
 *
 * Per VM, the store holds (FDNAME=vmmd-keep/NAME/...):
 *   ram      guest RAM, regions back to back (a memfd: the VM's own, or a copy)
 *   tap/N    the open tap of the N-th entry of the record's "nics"
 *   state    the record: "VMMDKEEP", u32 version, u32 0, u64 JSON length,
 *            u64 state length (little-endian), then the JSON {"vm": the
 *            definition, "manifest", "paused", "ram": "own"|"copy",
 *            "memory-size", "nics": [ids], "kept-ms": wall clock} and
 *            vmstate's sections
 * The record goes last: a VM whose record is missing is not restored.
 */
#include "config.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "common/vmstate.h"
#include "daemon/keep.h"
#include "daemon/systemd.h"

#define KEEP_MAGIC "VMMDKEEP"
#define KEEP_VERSION 1u
#define KEEP_MAX_JSON (16u << 20)
#define KEEP_MAX_STATE (256u << 20)
#define KEEP_MAX_TAPS 16u
#define PAGE 4096u

struct keep_header {
	char magic[8];
	uint32_t version, zero;
	uint64_t json_len, state_len;
};

struct taps {
	unsigned n;
	int fds[KEEP_MAX_TAPS];
	json_t *ids;
};

static bool stored_any;

/* Wall-clock ms: the next process tells how long the guests waited. */
static uint64_t realtime_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_REALTIME, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static int add_tap(void *opaque, const char *nic_id, int fd)
{
	struct taps *t = opaque;

	if (t->n == KEEP_MAX_TAPS) {
		return -E2BIG;
	}
	t->fds[t->n] = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (t->fds[t->n] < 0) {
		return -errno;
	}
	t->n++;
	json_array_append_new(t->ids, json_string(nic_id));
	return 0;
}

static bool page_is_zero(const uint8_t *p)
{
	static const uint8_t zero[PAGE];

	return memcmp(p, zero, PAGE) == 0;
}

/*
 * Guest RAM as one fd: the VM's own memfd when its RAM is one fd-backed
 * region (*@own), else a new memfd with every non-zero page copied.
 */
static int ram_fd(struct vm *vm, bool *own, uint64_t *ret_size, struct error **errp)
{
	uint64_t total = 0, off = 0;
	int fd;

	*own = vm_ram_region_count(vm) == 1 && vm_ram_region_fd(vm, 0) >= 0;
	for (unsigned i = 0; i < vm_ram_region_count(vm); i++) {
		uint64_t gpa, size;

		vm_ram_region(vm, i, &gpa, &size);
		total += size;
	}
	*ret_size = total;
	if (*own) {
		/*
		 * A restore may still be filling it (the next daemon would read
		 * zeros). This runs at SIGTERM on the control thread, which no
		 * longer serves clients; copying anonymous RAM below blocks too.
		 */
		if (vm_ram_populate_wait(vm, errp) < 0) {
			return -EIO;
		}
		fd = fcntl(vm_ram_region_fd(vm, 0), F_DUPFD_CLOEXEC, 3);
		return fd < 0 ? error_set_errno(errp, errno, "cannot duplicate the RAM's fd") : fd;
	}
	fd = memfd_create("vmmd-keep-ram", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, (off_t)total) < 0) {
		error_set_errno(errp, errno, "cannot allocate a memfd of %" PRIu64 " bytes", total);
		goto fail;
	}
	for (unsigned i = 0; i < vm_ram_region_count(vm); i++) {
		uint64_t gpa, size;
		const uint8_t *p = vm_ram_region(vm, i, &gpa, &size);

		for (uint64_t o = 0; o < size; o += PAGE) {
			if (!page_is_zero(p + o) &&
			    pwrite(fd, p + o, PAGE, (off_t)(off + o)) != (ssize_t)PAGE) {
				error_set_errno(errp, errno, "cannot copy guest RAM");
				goto fail;
			}
		}
		off += size;
	}
	return fd;
fail:
	if (fd >= 0) {
		close(fd);
	}
	return -EIO;
}

static int write_all(int fd, const void *p, size_t len)
{
	const uint8_t *b = p;

	while (len) {
		ssize_t n = write(fd, b, len);

		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			return -errno;
		}
		b += n;
		len -= (size_t)n;
	}
	return 0;
}

static int record_fd(const char *json, const struct vmstate_buf *state, struct error **errp)
{
	struct keep_header h = {.magic = KEEP_MAGIC};
	int fd = memfd_create("vmmd-keep-state", MFD_CLOEXEC);

	if (fd < 0) {
		return error_set_errno(errp, errno, "memfd_create");
	}
	h.version = htole32(KEEP_VERSION);
	h.json_len = htole64(strlen(json));
	h.state_len = htole64(state->len);
	if (write_all(fd, &h, sizeof(h)) < 0 || write_all(fd, json, strlen(json)) < 0 ||
	    write_all(fd, state->data, state->len) < 0) {
		close(fd);
		return error_set_errno(errp, errno, "cannot write the state record");
	}
	return fd;
}

static int store(int fd, const char *vm, const char *what, struct error **errp)
{
	char name[256];
	int r;

	snprintf(name, sizeof(name), SYSTEMD_KEEP_PREFIX "%s/%s", vm, what);
	r = systemd_store_fd(fd, name);
	return r < 0 ? error_set_errno(errp, r, "cannot hand %s to systemd's fd store", name) : 0;
}

int keep_vm(struct registry_vm *rv, bool ran, struct error **errp)
{
	struct vm *vm = rv->vm;
	struct vmstate_buf state;
	struct taps taps = {.ids = json_array()};
	json_t *manifest = NULL, *rec = NULL;
	char *text = NULL;
	bool own = false, held = false;
	uint64_t size = 0;
	int ram = -1, recfd = -1, r;

	vmstate_buf_init(&state);
	if (!taps.ids) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	r = vm_save_begin(vm, errp);
	if (r < 0) {
		json_decref(taps.ids);
		return r;
	}
	r = vm_state_capture(vm, &state, &manifest, errp);
	if (r < 0) {
		goto out;
	}
	held = true;
	ram = ram_fd(vm, &own, &size, errp);
	if (ram < 0) {
		r = ram;
		goto out;
	}
	r = vm_for_each_nic_fd(vm, add_tap, &taps);
	if (r < 0) {
		r = error_set_errno(errp, -r, "cannot keep the VM's taps");
		goto out;
	}
	/* Flushed and unlocked: the next daemon opens the images again. */
	r = vm_disks_set_active(vm, false, errp);
	if (r < 0) {
		goto out;
	}
	rec = json_pack("{s:O, s:O, s:b, s:s, s:I, s:O, s:I}", "vm", rv->def, "manifest", manifest,
			"paused", !ran, "ram", own ? "own" : "copy", "memory-size",
			(json_int_t)size, "nics", taps.ids, "kept-ms", (json_int_t)realtime_ms());
	text = rec ? json_dumps(rec, JSON_COMPACT) : NULL;
	if (!text) {
		r = error_set(errp, ENOMEM, "out of memory");
		goto out;
	}
	recfd = record_fd(text, &state, errp);
	if (recfd < 0) {
		r = recfd;
		goto out;
	}
	r = store(ram, rv->name, "ram", errp);
	for (unsigned i = 0; r == 0 && i < taps.n; i++) {
		char what[16];

		snprintf(what, sizeof(what), "tap/%u", i);
		r = store(taps.fds[i], rv->name, what, errp);
	}
	if (r == 0) {
		r = store(recfd, rv->name, "state", errp);
	}
	if (r == 0) {
		/*
		 * The next daemon owns the guest's RAM and reads the taps from
		 * here on: a frame delivered after the capture (the I/O thread
		 * runs again once released) would be in RAM the saved ring
		 * state does not know about, and lost (or a ring confused).
		 */
		vm_nic_fds_release(vm);
		stored_any = true;
		log_full(LOG_NOTICE, rv->name, NULL,
			 "VM kept for the next vmmd (%s, RAM %s, %u tap%s)",
			 ran ? "running" : "paused", own ? "by fd" : "copied", taps.n,
			 taps.n == 1 ? "" : "s");
	}
out:
	if (held) {
		vm_state_release(vm);
	}
	vm_save_end(vm, false);
	for (unsigned i = 0; i < taps.n; i++) {
		close(taps.fds[i]);
	}
	if (ram >= 0) {
		close(ram);
	}
	if (recfd >= 0) {
		close(recfd);
	}
	free(text);
	json_decref(rec);
	json_decref(manifest);
	json_decref(taps.ids);
	vmstate_buf_free(&state);
	return r;
}

void keep_flush(void)
{
	if (stored_any && systemd_notify_barrier() < 0) {
		log_warning("systemd did not confirm it took the kept VMs' fds");
	}
}

/* ---- the next daemon ------------------------------------------------------------ */

struct kept {
	struct registry_vm *rv;
	struct registry_instance *inst;
	struct vm_snapshot *snap;
	bool paused;
	struct vm *vm;
	uint64_t kept_ms;
	int r;
	struct error *err;
};

static void kept_job(void *arg)
{
	struct kept *k = arg;

	k->r = vm_restore(k->rv->cfg, registry_instance_host(k->inst), k->snap, true, &k->vm,
			  &k->err);
	vm_snapshot_close(k->snap);
	k->snap = NULL;
}

static void kept_done(void *arg)
{
	struct kept *k = arg;
	struct registry_vm *rv = k->rv;

	rv->busy = REGISTRY_IDLE;
	if (k->r == 0) {
		k->r = registry_adopt(rv, k->inst, k->vm, k->paused, "the previous vmmd", &k->err);
	} else {
		registry_instance_free(k->inst);
	}
	if (k->r < 0) {
		log_full(LOG_ERR, rv->name, NULL, "the VM kept across the restart is lost: %s",
			 k->err ? k->err->msg : "?");
	} else {
		uint64_t now = realtime_ms();

		log_full(LOG_NOTICE, rv->name, NULL,
			 "VM back after the restart (%s; kept %" PRIu64 " ms before)",
			 k->paused ? "paused" : "running", now > k->kept_ms ? now - k->kept_ms : 0);
	}
	error_free(k->err);
	free(k);
}

/* The record in @fd: header, JSON and state (malloc'ed) checked for size. */
static int read_record(int fd, json_t **ret_json, void **ret_state, size_t *ret_len,
		       struct error **errp)
{
	struct keep_header h;
	struct stat st;
	uint64_t jl, sl;
	char *json = NULL;
	void *state = NULL;

	if (fstat(fd, &st) < 0 || pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h) ||
	    memcmp(h.magic, KEEP_MAGIC, 8) != 0) {
		return error_set(errp, EPROTO, "the state record is not vmmd's");
	}
	if (le32toh(h.version) != KEEP_VERSION) {
		return error_set(errp, EPROTONOSUPPORT,
				 "the state record has version %u; this vmmd reads %u",
				 le32toh(h.version), KEEP_VERSION);
	}
	jl = le64toh(h.json_len);
	sl = le64toh(h.state_len);
	if (jl > KEEP_MAX_JSON || sl > KEEP_MAX_STATE ||
	    (uint64_t)st.st_size != sizeof(h) + jl + sl) {
		return error_set(errp, EPROTO, "the state record is truncated or too large");
	}
	json = malloc(jl + 1);
	state = malloc(sl ? sl : 1);
	if (!json || !state || pread(fd, json, jl, sizeof(h)) != (ssize_t)jl ||
	    pread(fd, state, sl, (off_t)(sizeof(h) + jl)) != (ssize_t)sl) {
		free(json);
		free(state);
		return error_set(errp, EIO, "cannot read the state record");
	}
	json[jl] = '\0';
	*ret_json = json_loads(json, JSON_REJECT_DUPLICATES, NULL);
	free(json);
	if (!*ret_json) {
		free(state);
		return error_set(errp, EPROTO, "the state record's JSON is malformed");
	}
	*ret_state = state;
	*ret_len = sl;
	return 0;
}

/* The fd stored as vmmd-keep/@vm/@what, taken out of the list; -1 if none. */
static int take(char **names, int *fds, unsigned n, const char *vm, const char *what)
{
	char name[256];

	snprintf(name, sizeof(name), SYSTEMD_KEEP_PREFIX "%s/%s", vm, what);
	for (unsigned i = 0; i < n; i++) {
		if (fds[i] >= 0 && strcmp(names[i], name) == 0) {
			int fd = fds[i];

			fds[i] = -1;
			return fd;
		}
	}
	return -1;
}

static int restore_one(struct registry *reg, const char *name, char **names, int *fds, unsigned n,
		       struct error **errp)
{
	struct registry_vm *rv = registry_find(reg, name);
	json_t *rec = NULL, *ids;
	void *state = NULL;
	size_t state_len = 0;
	struct kept *k = NULL;
	struct vm_snapshot *snap = NULL;
	const char *ram_kind = NULL;
	json_int_t size = 0, kept_ms = 0;
	int paused = 0, fd = take(names, fds, n, name, "state"), ram = -1, r;

	r = read_record(fd, &rec, &state, &state_len, errp);
	close(fd);
	if (r < 0) {
		return r;
	}
	ram = take(names, fds, n, name, "ram");
	if (json_unpack(rec, "{s:b, s:s, s:I, s:o, s:I}", "paused", &paused, "ram", &ram_kind,
			"memory-size", &size, "nics", &ids, "kept-ms", &kept_ms) < 0 ||
	    !json_is_array(ids) || json_array_size(ids) > KEEP_MAX_TAPS ||
	    !json_is_object(json_object_get(rec, "manifest"))) {
		r = error_set(errp, EPROTO, "the state record's JSON is malformed");
		goto fail;
	}
	if (!rv || rv->vm || rv->busy) {
		r = error_set(errp, ENOENT, "%s", rv ? "the VM is busy" : "it is not defined here");
		goto fail;
	}
	if (!json_equal(json_object_get(rec, "vm"), rv->def)) {
		r = error_set(errp, EINVAL, "its definition on disk changed since it was kept");
		goto fail;
	}
	if (ram < 0 || (uint64_t)size != vm_config_memory_total(rv->cfg)) {
		r = error_set(errp, EPROTO, "its RAM was not kept or has another size");
		goto fail;
	}
	k = calloc(1, sizeof(*k));
	if (!k) {
		r = error_set(errp, ENOMEM, "out of memory");
		goto fail;
	}
	k->rv = rv;
	k->paused = paused;
	k->kept_ms = (uint64_t)kept_ms;
	r = vm_snapshot_from_stream(json_incref(json_object_get(rec, "manifest")), state, state_len,
				    ram, &snap, errp);
	state = NULL;
	ram = -1;
	if (r < 0) {
		goto fail;
	}
	if (strcmp(ram_kind, "own") == 0) {
		vm_snapshot_share_memory(snap);
	}
	k->inst = registry_adopt_prepare(rv, errp);
	if (!k->inst) {
		r = -EINVAL;
		goto fail;
	}
	for (size_t i = 0; i < json_array_size(ids); i++) {
		char what[32];
		const char *id = json_string_value(json_array_get(ids, i));

		snprintf(what, sizeof(what), "tap/%zu", i);
		fd = take(names, fds, n, name, what);
		if (!id || fd < 0) {
			if (fd >= 0) {
				close(fd);
			}
			r = error_set(errp, EPROTO, "a tap of the VM was not kept");
			goto fail;
		}
		r = registry_instance_add_nic_fd(k->inst, id, fd, errp);
		if (r < 0) {
			goto fail;
		}
	}
	k->snap = TAKE_PTR(snap);
	r = registry_run(reg, kept_job, kept_done, k, errp);
	if (r < 0) {
		snap = TAKE_PTR(k->snap);
		goto fail;
	}
	rv->busy = REGISTRY_RESTORING;
	json_decref(rec);
	return 0;
fail:
	if (k && k->inst) {
		registry_instance_free(k->inst);
	}
	free(k);
	vm_snapshot_close(snap);
	if (ram >= 0) {
		close(ram);
	}
	free(state);
	json_decref(rec);
	return r;
}

unsigned keep_restore(struct registry *reg)
{
	char **names = NULL;
	int *fds = NULL;
	unsigned n = systemd_kept_fds(&names, &fds), started = 0;
	const size_t plen = strlen(SYSTEMD_KEEP_PREFIX);

	/*
	 * systemd keeps passed fds in the store until the service stops: out
	 * with them, or the next restart would find these beside the new ones
	 * (and they would pin the RAM copies).
	 */
	for (unsigned i = 0; i < n; i++) {
		systemd_unstore_fds(names[i]);
	}

	for (unsigned i = 0; i < n; i++) {
		const char *vm = names[i] + plen;
		const char *slash = strchr(vm, '/');
		struct error *err = NULL;
		char name[72];

		if (fds[i] < 0 || !slash || strcmp(slash, "/state") != 0 ||
		    (size_t)(slash - vm) >= sizeof(name)) {
			continue;
		}
		snprintf(name, sizeof(name), "%.*s", (int)(slash - vm), vm);
		if (restore_one(reg, name, names, fds, n, &err) == 0) {
			started++;
		} else {
			log_full(LOG_ERR, name, NULL,
				 "the VM kept across the restart cannot be resumed: %s; it stays "
				 "off",
				 err ? err->msg : "?");
			error_free(err);
		}
	}
	for (unsigned i = 0; i < n; i++) {
		if (fds[i] >= 0) {
			log_warning("systemd passed %s, which belongs to no kept VM: closed",
				    names[i]);
			close(fds[i]);
		}
		free(names[i]);
	}
	free(names);
	free(fds);
	return started;
}
