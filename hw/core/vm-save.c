/*
 * Whole-VM save and restore to a directory (docs/vmstate.md):
 *
 *   DIR/manifest.json  format and vmmd versions, CPU model and TSC
 *                      frequency, the VM definition, the memory layout and
 *                      an index of the state sections with a CRC-32 each
 *   DIR/state          the sections, back to back
 *   DIR/memory         guest RAM, regions back to back, page-aligned, with
 *                      holes where pages are zero
 *
 * A save is written into DIR.tmp-XXXXXX and renamed to DIR at the end; a
 * restore maps the memory file MAP_PRIVATE over the new VM's RAM, so it
 * costs the same for any RAM size and pages are read on first touch.
 * Shared (memfd, hugetlb) RAM is filled from the file by a userfaultfd
 * handler thread (uffd.h), lazily too.
 *
 * Threads: vm_save runs on a worker thread between vm_save_begin and
 * vm_save_end (vm.c) with the vCPUs parked; it holds the VM's I/O thread
 * while it reads device state and RAM. vm_snapshot_* and vm_restore run
 * on the thread that builds the VM (a worker; they read the manifest and
 * the small state file; RAM is mapped or registered, not read).
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/pathpol.h"
#include "hw/core/vcpu-state.h"
#include "common/vmstate.h"
#include "hw/core/memory.h"
#include "hw/core/uffd.h"
#include "hw/core/vcpu.h"
#include "hw/hotplug.h"
#include "hw/core/vm-int.h"

#define VMSTATE_FORMAT "vmmd-vm-state"
#define VMSTATE_FORMAT_VERSION 1
#define VMSTATE_MAX_STATE (256u << 20)	 /* bytes of the state file we read */
#define VMSTATE_MAX_MANIFEST (16u << 20) /* and of the manifest */
#define VMSTATE_MAX_SECTIONS 4096
#define VMSTATE_NAME_MAX 64
#define VMSTATE_DRAIN_TIMEOUT_MS 30000
#define PAGE 4096u

/* ---- writing ------------------------------------------------------------ */

struct section {
	char name[VMSTATE_NAME_MAX];
	unsigned instance;
	unsigned version;
	uint64_t offset, size;
	uint32_t crc;
	bool used; /* restore: consumed by a device */
};

struct save_ctx {
	struct vmstate_buf state; /* the whole state file */
	json_t *sections;	  /* manifest index */
};

static int add_section(struct save_ctx *c, const char *name, unsigned instance, unsigned version,
		       struct vmstate_buf *data, struct error **errp)
{
	uint64_t off = c->state.len;
	uint32_t crc = vmstate_crc32(data->data, data->len);

	if (data->failed) {
		return error_set(errp, ENOMEM, "out of memory saving %s", name);
	}
	vmstate_put_bytes(&c->state, data->data, data->len);
	if (c->state.failed) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	json_array_append_new(c->sections,
			      json_pack("{s:s, s:i, s:i, s:I, s:I, s:I}", "name", name, "instance",
					(int)instance, "version", (int)version, "offset",
					(json_int_t)off, "size", (json_int_t)data->len, "crc32",
					(json_int_t)crc));
	return 0;
}

static unsigned devices_busy(struct vm *vm, const char **ret_name)
{
	unsigned n = 0;

	for (unsigned i = 0; i < vm->n_devices; i++) {
		const struct device_class *c = vm->devices[i].cls;
		unsigned b = c->busy ? c->busy(vm->devices[i].state) : 0;

		if (b) {
			*ret_name = c->name;
		}
		n += b;
	}
	return n;
}

/*
 * Wait for device requests in flight to complete (the I/O thread runs),
 * then hold the I/O thread. Requests started between the two (a queue
 * kicked before the pause) make it try again.
 */
static int quiesce(struct vm *vm, struct error **errp)
{
	const char *who = NULL;
	unsigned waited = 0;

	for (;;) {
		unsigned n = devices_busy(vm, &who);

		if (n == 0) {
			vm_io_hold(vm);
			if (devices_busy(vm, &who) == 0) {
				return 0;
			}
			vm_io_release(vm);
		}
		if (waited >= VMSTATE_DRAIN_TIMEOUT_MS) {
			return error_set(errp, EBUSY,
					 "device %s still has requests in flight after %u s; "
					 "cannot save",
					 who ? who : "?", VMSTATE_DRAIN_TIMEOUT_MS / 1000);
		}
		usleep(1000);
		waited++;
	}
}

static int save_devices(struct vm *vm, struct save_ctx *c, struct error **errp)
{
	for (unsigned i = 0; i < vm->n_devices; i++) {
		const struct device_class *cls = vm->devices[i].cls;
		struct vmstate_buf b;
		unsigned inst = 0;
		int r;

		if (cls->stateless) {
			continue;
		}
		if (!cls->save) {
			return error_set(errp, ENOTSUP,
					 "device %s cannot be saved yet (no state support); "
					 "remove it from the VM to use vm-save",
					 cls->name);
		}
		for (unsigned j = 0; j < i; j++) {
			inst += vm->devices[j].cls == cls;
		}
		vmstate_buf_init(&b);
		r = cls->save(vm->devices[i].state, &b, errp);
		if (r == 0) {
			r = add_section(c, cls->name, inst, cls->state_version, &b, errp);
		}
		vmstate_buf_free(&b);
		if (r < 0) {
			error_prefix(errp, "%s", cls->name);
			return r;
		}
	}
	return 0;
}

/* Present vCPUs: the cold-plugged and the hot-plugged ones (not the parked). */
static unsigned present_vcpus(struct vm *vm)
{
	unsigned n = 0;

	for (unsigned i = 0; i < vm->n_vcpus; i++) {
		n += !vm->vcpus[i]->unplugged;
	}
	return n;
}

/*
 * One "cpu" section per present vCPU, its instance the vCPU's index (APIC
 * ID); a hot-plugged one also gets a "cpu-plugged" section with its
 * qom-path, so the restore plugs it again under the same id.
 */
static int save_cpus(struct vm *vm, struct save_ctx *c, uint32_t *ret_khz, struct error **errp)
{
	struct vmstate_buf b;
	int r;

	vmstate_buf_init(&b);
	r = vm_kvm_state_save(vm, &b, errp);
	if (r == 0) {
		r = add_section(c, "kvm", 0, VM_KVM_STATE_VERSION, &b, errp);
	}
	vmstate_buf_free(&b);
	for (unsigned i = 0; r == 0 && i < vm->n_vcpus; i++) {
		struct vcpu *v = vm->vcpus[i];

		if (v->unplugged) {
			continue;
		}
		vmstate_buf_init(&b);
		r = vcpu_state_save(v, &b, errp);
		if (r == 0) {
			r = add_section(c, "cpu", v->index, VCPU_STATE_VERSION, &b, errp);
		}
		vmstate_buf_free(&b);
		if (r == 0 && v->index >= vm->cfg->vcpus) {
			const char *path = v->qom_path ? v->qom_path : "";

			vmstate_buf_init(&b);
			vmstate_put_blob(&b, path, (uint32_t)strlen(path));
			r = add_section(c, "cpu-plugged", v->index, 1, &b, errp);
			vmstate_buf_free(&b);
		}
	}
	if (r == 0) {
		int khz = ioctl(vm->vcpus[0]->fd, KVM_GET_TSC_KHZ, 0);

		*ret_khz = khz > 0 ? (uint32_t)khz : 0;
	}
	return r;
}

static bool page_is_zero(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)p;

	for (unsigned i = 0; i < PAGE / 8; i++) {
		if (w[i]) {
			return false;
		}
	}
	return true;
}

static int write_all(int fd, const void *buf, size_t len, off_t off)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = pwrite(fd, p, MIN(len, (size_t)1 << 30), off);

		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			return -errno;
		}
		p += n;
		off += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Non-zero pages of every region, in runs; zero pages stay holes. */
static int save_memory(struct vm *vm, int fd, json_t *regions, uint64_t *ret_bytes,
		       struct error **errp)
{
	uint64_t file_off = 0, written = 0;

	for (unsigned i = 0; i < guest_mem_region_count(vm->mem); i++) {
		const struct guest_mem_region *reg = guest_mem_region(vm->mem, i);
		uint64_t run_start = 0, run_len = 0;

		for (uint64_t off = 0; off <= reg->size; off += PAGE) {
			bool data = off < reg->size && !page_is_zero(reg->host + off);

			if (data && run_len == 0) {
				run_start = off;
			}
			if (data) {
				run_len += PAGE;
				continue;
			}
			if (run_len) {
				int r = write_all(fd, reg->host + run_start, run_len,
						  (off_t)(file_off + run_start));

				if (r < 0) {
					return error_set_errno(errp, -r,
							       "cannot write the memory file");
				}
				written += run_len;
				run_len = 0;
			}
		}
		json_array_append_new(
			regions, json_pack("{s:I, s:I, s:I}", "gpa", (json_int_t)reg->gpa, "size",
					   (json_int_t)reg->size, "offset", (json_int_t)file_off));
		file_off += reg->size;
	}
	if (ftruncate(fd, (off_t)file_off) < 0) {
		return error_set_errno(errp, errno, "cannot size the memory file");
	}
	*ret_bytes = written;
	return 0;
}

static int write_file(const char *dir, const char *name, const void *data, size_t len,
		      struct error **errp)
{
	_cleanup_free_ char *path = NULL;
	_cleanup_close_ int fd = -1;
	int r;

	if (asprintf(&path, "%s/%s", dir, name) < 0) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	fd = pathpol_open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (fd < 0) {
		return error_set_errno(errp, -fd, "cannot create %s", path);
	}
	r = write_all(fd, data, len, 0);
	if (r == 0 && fsync(fd) < 0) {
		r = -errno;
	}
	if (r < 0) {
		return error_set_errno(errp, -r, "cannot write %s", path);
	}
	return 0;
}

static void remove_tree(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	if (d) {
		while ((de = readdir(d))) {
			char *p = NULL;

			if (de->d_name[0] == '.' &&
			    (de->d_name[1] == '\0' || (de->d_name[1] == '.' && !de->d_name[2]))) {
				continue;
			}
			if (asprintf(&p, "%s/%s", dir, de->d_name) >= 0) {
				unlink(p);
				free(p);
			}
		}
		closedir(d);
	}
	rmdir(dir);
}

static int fsync_path(const char *path)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	return fd >= 0 && fsync(fd) == 0 ? 0 : -errno;
}

static char *parent_dir(const char *path)
{
	char *p = strdup(path);
	char *slash = p ? strrchr(p, '/') : NULL;

	if (!p) {
		return NULL;
	}
	if (!slash) {
		strcpy(p, ".");
	} else if (slash == p) {
		p[1] = '\0';
	} else {
		*slash = '\0';
	}
	return p;
}

int vm_save(struct vm *vm, const char *dir, uint64_t *ret_bytes, struct error **errp)
{
	struct save_ctx c = {0};
	_cleanup_free_ char *tmp = NULL, *parent = NULL, *mem_path = NULL;
	_cleanup_close_ int mem_fd = -1;
	json_auto_t *manifest = NULL, *regions = NULL;
	_cleanup_free_ char *text = NULL;
	uint64_t mem_bytes = 0;
	uint32_t tsc_khz = 0;
	struct stat st;
	bool held = false;
	int r;

	if (!dir || !dir[0]) {
		return error_set(errp, EINVAL, "no directory to save into");
	}
	if (stat(dir, &st) == 0 || errno != ENOENT) {
		return error_set(errp, EEXIST, "%s already exists; vm-save writes a new directory",
				 dir);
	}
	/* RAM of a restore still arriving: all of it first (its handler works on). */
	r = vm_ram_populate_wait(vm, errp);
	if (r < 0) {
		return r;
	}
	if (asprintf(&tmp, "%s.tmp-XXXXXX", dir) < 0) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	if (!mkdtemp(tmp)) {
		return error_set_errno(errp, errno, "cannot create a directory beside %s", dir);
	}
	vmstate_buf_init(&c.state);
	c.sections = json_array();
	regions = json_array();
	if (asprintf(&mem_path, "%s/memory", tmp) < 0 || !c.sections || !regions) {
		r = error_set(errp, ENOMEM, "out of memory");
		goto err;
	}
	mem_fd = pathpol_open(mem_path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (mem_fd < 0) {
		r = error_set_errno(errp, -mem_fd, "cannot create %s", mem_path);
		goto err;
	}

	r = quiesce(vm, errp);
	if (r < 0) {
		goto err;
	}
	held = true;
	r = save_cpus(vm, &c, &tsc_khz, errp);
	if (r == 0) {
		r = save_devices(vm, &c, errp);
	}
	if (r == 0) {
		r = save_memory(vm, mem_fd, regions, &mem_bytes, errp);
	}
	vm_io_release(vm);
	held = false;
	if (r < 0) {
		goto err;
	}
	if (fsync(mem_fd) < 0) {
		r = error_set_errno(errp, errno, "cannot write %s", mem_path);
		goto err;
	}
	r = write_file(tmp, "state", c.state.data, c.state.len, errp);
	if (r < 0) {
		goto err;
	}
	manifest =
		json_pack("{s:s, s:i, s:s, s:I, s:o, s:{s:s, s:i, s:i}, s:{s:s, s:I, s:O}, "
			  "s:{s:s, s:I}, s:O}",
			  "format", VMSTATE_FORMAT, "format-version", VMSTATE_FORMAT_VERSION,
			  "vmmd-version", PACKAGE_VERSION, "created", (json_int_t)time(NULL), "vm",
			  vm_config_to_json(vm->cfg), "cpu", "model", vm->cfg->cpu, "tsc-khz",
			  (int)tsc_khz, "vcpus", (int)present_vcpus(vm), "memory", "file", "memory",
			  "size", (json_int_t)guest_mem_size(vm->mem), "regions", regions, "state",
			  "file", "state", "size", (json_int_t)c.state.len, "sections", c.sections);
	text = manifest ? json_dumps(manifest, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
	if (!text) {
		r = error_set(errp, ENOMEM, "out of memory");
		goto err;
	}
	r = write_file(tmp, "manifest.json", text, strlen(text), errp);
	if (r < 0) {
		goto err;
	}
	r = fsync_path(tmp);
	if (r < 0) {
		r = error_set_errno(errp, -r, "cannot sync %s", tmp);
		goto err;
	}
	if (rename(tmp, dir) < 0) {
		r = error_set_errno(errp, errno, "cannot rename %s to %s", tmp, dir);
		goto err;
	}
	parent = parent_dir(dir);
	if (parent) {
		fsync_path(parent);
	}
	vmstate_buf_free(&c.state);
	json_decref(c.sections);
	if (ret_bytes) {
		*ret_bytes = mem_bytes;
	}
	return 0;

err:
	if (held) {
		vm_io_release(vm);
	}
	vmstate_buf_free(&c.state);
	json_decref(c.sections);
	remove_tree(tmp);
	return r;
}

/* The memory layout as the manifest lists it: regions back to back. */
static json_t *memory_regions(struct vm *vm)
{
	json_t *regions = json_array();
	uint64_t off = 0;

	for (unsigned i = 0; regions && i < guest_mem_region_count(vm->mem); i++) {
		const struct guest_mem_region *reg = guest_mem_region(vm->mem, i);

		json_array_append_new(
			regions, json_pack("{s:I, s:I, s:I}", "gpa", (json_int_t)reg->gpa, "size",
					   (json_int_t)reg->size, "offset", (json_int_t)off));
		off += reg->size;
	}
	return regions;
}

int vm_state_capture(struct vm *vm, struct vmstate_buf *state, json_t **ret_manifest,
		     struct error **errp)
{
	struct save_ctx c = {0};
	json_t *manifest;
	uint32_t tsc_khz = 0;
	int r;

	vmstate_buf_init(&c.state);
	c.sections = json_array();
	if (!c.sections) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	r = quiesce(vm, errp);
	if (r < 0) {
		json_decref(c.sections);
		return r;
	}
	r = save_cpus(vm, &c, &tsc_khz, errp);
	if (r == 0) {
		r = save_devices(vm, &c, errp);
	}
	manifest = r < 0 ? NULL
			 : json_pack("{s:s, s:i, s:s, s:I, s:o, s:{s:s, s:i, s:i}, "
				     "s:{s:s, s:I, s:o}, s:{s:s, s:I}, s:O}",
				     "format", VMSTATE_FORMAT, "format-version",
				     VMSTATE_FORMAT_VERSION, "vmmd-version", PACKAGE_VERSION,
				     "created", (json_int_t)time(NULL), "vm",
				     vm_config_to_json(vm->cfg), "cpu", "model", vm->cfg->cpu,
				     "tsc-khz", (int)tsc_khz, "vcpus", (int)present_vcpus(vm),
				     "memory", "file", "memory", "size",
				     (json_int_t)guest_mem_size(vm->mem), "regions",
				     memory_regions(vm), "state", "file", "state", "size",
				     (json_int_t)c.state.len, "sections", c.sections);
	json_decref(c.sections);
	if (r == 0 && !manifest) {
		r = error_set(errp, ENOMEM, "out of memory");
	}
	if (r < 0) {
		vm_io_release(vm);
		vmstate_buf_free(&c.state);
		return r;
	}
	*state = c.state;
	*ret_manifest = manifest;
	return 0;
}

void vm_state_release(struct vm *vm)
{
	vm_io_release(vm);
}

/* ---- reading ------------------------------------------------------------ */

struct vm_snapshot {
	char *dir;
	json_t *manifest;
	json_t *def; /* borrowed from manifest */
	uint8_t *state;
	size_t state_len;
	struct section *sections;
	unsigned n_sections;
	int mem_fd;
	uint64_t mem_size;
	uint32_t tsc_khz;
	unsigned vcpus;
	struct {
		uint64_t gpa, size, offset;
	} regions[VM_RAM_REGIONS_MAX];
	unsigned n_regions;
	bool share_memory; /* mem_fd may become the VM's RAM (vm_snapshot_share_memory) */
};

void vm_snapshot_close(struct vm_snapshot *s)
{
	if (!s) {
		return;
	}
	if (s->mem_fd >= 0) {
		close(s->mem_fd);
	}
	json_decref(s->manifest);
	free(s->state);
	free(s->sections);
	free(s->dir);
	free(s);
}

json_t *vm_snapshot_definition(struct vm_snapshot *s)
{
	return s->def;
}

static bool get_u64(json_t *o, const char *key, uint64_t *ret)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_integer(v) || json_integer_value(v) < 0) {
		return false;
	}
	*ret = (uint64_t)json_integer_value(v);
	return true;
}

/*
 * One of a snapshot's files, for reading: opened without waiting (a FIFO
 * in its place would block the open until a writer came) and refused
 * unless it is a regular file.
 */
static int open_snapshot_file(const char *what, const char *path, struct error **errp)
{
	struct stat st;
	int fd = pathpol_open_err(what, path, O_RDONLY | O_NONBLOCK, 0, errp);

	if (fd < 0) {
		return fd;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return error_set(errp, EINVAL, "%s %s is not a regular file", what, path);
	}
	return fd;
}

static int read_state(struct vm_snapshot *s, uint64_t size, struct error **errp)
{
	_cleanup_free_ char *path = NULL;
	_cleanup_close_ int fd = -1;
	struct stat st;
	size_t got = 0;

	if (asprintf(&path, "%s/state", s->dir) < 0) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	fd = open_snapshot_file("snapshot state", path, errp);
	if (fd < 0) {
		return fd;
	}
	if (fstat(fd, &st) < 0) {
		return error_set_errno(errp, errno, "cannot open %s", path);
	}
	if (size > VMSTATE_MAX_STATE) {
		return error_set(errp, EFBIG,
				 "%s: state of %" PRIu64 " bytes is over the limit (%u)", path,
				 size, VMSTATE_MAX_STATE);
	}
	if ((uint64_t)st.st_size != size) {
		return error_set(errp, EINVAL,
				 "%s is %lld bytes, the manifest says %" PRIu64
				 ": the snapshot is truncated or damaged",
				 path, (long long)st.st_size, size);
	}
	s->state = malloc(size ? size : 1);
	if (!s->state) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	while (got < size) {
		ssize_t n = pread(fd, s->state + got, size - got, (off_t)got);

		if (n <= 0) {
			return error_set_errno(errp, n < 0 ? errno : EIO, "cannot read %s", path);
		}
		got += (size_t)n;
	}
	s->state_len = size;
	return 0;
}

static int parse_sections(struct vm_snapshot *s, json_t *list, struct error **errp)
{
	size_t i;
	json_t *e;

	if (!json_is_array(list) || json_array_size(list) > VMSTATE_MAX_SECTIONS) {
		return error_set(errp, EINVAL, "manifest: \"sections\" is not a list of sections");
	}
	s->sections = calloc(json_array_size(list) + 1, sizeof(*s->sections));
	if (!s->sections) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	json_array_foreach (list, i, e) {
		struct section *sec = &s->sections[s->n_sections];
		const char *name = json_string_value(json_object_get(e, "name"));
		uint64_t inst, ver, crc;

		if (!name || strlen(name) >= VMSTATE_NAME_MAX || !get_u64(e, "instance", &inst) ||
		    !get_u64(e, "version", &ver) || !get_u64(e, "offset", &sec->offset) ||
		    !get_u64(e, "size", &sec->size) || !get_u64(e, "crc32", &crc) ||
		    inst > UINT32_MAX || ver > UINT32_MAX || crc > UINT32_MAX) {
			return error_set(errp, EINVAL, "manifest: section %zu is malformed", i);
		}
		if (!range_within(sec->offset, sec->size, s->state_len)) {
			return error_set(errp, EINVAL,
					 "manifest: section %s %u lies outside the state file "
					 "(truncated?)",
					 name, (unsigned)inst);
		}
		strcpy(sec->name, name);
		sec->instance = (unsigned)inst;
		sec->version = (unsigned)ver;
		sec->crc = (uint32_t)crc;
		if (vmstate_crc32(s->state + sec->offset, sec->size) != sec->crc) {
			return error_set(errp, EINVAL,
					 "checksum mismatch in section %s %u of %s/state: the "
					 "snapshot is damaged",
					 sec->name, sec->instance, s->dir);
		}
		s->n_sections++;
	}
	return 0;
}

/*
 * Check the manifest @m (owned by @s from now on) and fill in @s from it;
 * @label names it in messages. Returns the state size in *ret_state_size.
 */
static int parse_manifest(struct vm_snapshot *s, json_t *m, const char *label,
			  uint64_t *ret_state_size, struct error **errp)
{
	json_t *mem, *regions, *e;
	const char *fmt, *mem_file;
	uint64_t fv, total = 0, khz, vcpus;
	size_t i;

	s->manifest = m;
	fmt = json_string_value(json_object_get(m, "format"));
	if (!fmt || strcmp(fmt, VMSTATE_FORMAT) != 0 || !get_u64(m, "format-version", &fv)) {
		return error_set(errp, EINVAL, "%s is not a vmmd VM state manifest", label);
	}
	if (fv > VMSTATE_FORMAT_VERSION || fv == 0) {
		return error_set(errp, ENOTSUP,
				 "snapshot format version %" PRIu64
				 " is newer than this vmmd (%s) supports (%d); restore it with the "
				 "vmmd that saved it (%s) or a newer one",
				 fv, PACKAGE_VERSION, VMSTATE_FORMAT_VERSION,
				 json_string_value(json_object_get(m, "vmmd-version"))
					 ?: "unknown");
	}
	s->def = json_object_get(m, "vm");
	mem = json_object_get(m, "memory");
	regions = json_object_get(mem, "regions");
	mem_file = json_string_value(json_object_get(mem, "file"));
	if (!json_is_object(s->def) ||
	    !get_u64(json_object_get(m, "state"), "size", ret_state_size) ||
	    !get_u64(mem, "size", &s->mem_size) || !json_is_array(regions) ||
	    json_array_size(regions) == 0 || json_array_size(regions) > VM_RAM_REGIONS_MAX ||
	    !mem_file || strcmp(mem_file, "memory") != 0 ||
	    !get_u64(json_object_get(m, "cpu"), "tsc-khz", &khz) || khz > UINT32_MAX ||
	    !get_u64(json_object_get(m, "cpu"), "vcpus", &vcpus) || vcpus == 0 || vcpus > 1024) {
		return error_set(errp, EINVAL, "%s: missing or malformed members", label);
	}
	s->tsc_khz = (uint32_t)khz;
	s->vcpus = (unsigned)vcpus;
	json_array_foreach (regions, i, e) {
		if (!get_u64(e, "gpa", &s->regions[i].gpa) ||
		    !get_u64(e, "size", &s->regions[i].size) ||
		    !get_u64(e, "offset", &s->regions[i].offset) || s->regions[i].offset != total ||
		    s->regions[i].size % PAGE) {
			return error_set(errp, EINVAL, "%s: malformed memory region %zu", label, i);
		}
		total += s->regions[i].size;
		s->n_regions++;
	}
	if (total != s->mem_size) {
		return error_set(errp, EINVAL,
				 "%s: memory regions do not add up to the memory size", label);
	}
	return 0;
}

/* The whole manifest file, at most VMSTATE_MAX_MANIFEST bytes. */
static int read_manifest(int fd, char **ret, size_t *ret_len)
{
	struct stat st;
	size_t got = 0;
	char *buf;

	if (fstat(fd, &st) < 0) {
		return -errno;
	}
	if (st.st_size > VMSTATE_MAX_MANIFEST) {
		return -EFBIG;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		return -ENOMEM;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = pread(fd, buf + got, (size_t)st.st_size - got, (off_t)got);

		if (n <= 0) {
			free(buf);
			return n < 0 ? -errno : -EIO;
		}
		got += (size_t)n;
	}
	*ret = buf;
	*ret_len = got;
	return 0;
}

int vm_snapshot_open(const char *dir, struct vm_snapshot **ret, struct error **errp)
{
	struct vm_snapshot *s;
	_cleanup_free_ char *path = NULL, *mem_path = NULL, *text = NULL;
	size_t len = 0;
	json_error_t jerr;
	json_t *m;
	uint64_t state_size;
	struct stat st;
	int fd, r;

	s = calloc(1, sizeof(*s));
	if (!s) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	s->mem_fd = -1;
	s->dir = strdup(dir);
	if (!s->dir || asprintf(&path, "%s/manifest.json", dir) < 0) {
		r = error_set(errp, ENOMEM, "out of memory");
		goto err;
	}
	fd = open_snapshot_file("snapshot manifest", path, errp);
	if (fd < 0) {
		r = fd;
		goto err;
	}
	/* one read: json_loadfd() reads byte by byte (thousands of syscalls per restore) */
	r = read_manifest(fd, &text, &len);
	close(fd);
	if (r == -EFBIG) {
		r = error_set(errp, EFBIG, "%s is over the limit (%u bytes)", path,
			      VMSTATE_MAX_MANIFEST);
		goto err;
	}
	if (r < 0) {
		r = error_set_errno(errp, -r, "cannot read %s", path);
		goto err;
	}
	m = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!m) {
		r = error_set(errp, EINVAL, "%s: %s", path, jerr.text);
		goto err;
	}
	r = parse_manifest(s, m, path, &state_size, errp);
	if (r < 0) {
		goto err;
	}
	r = read_state(s, state_size, errp);
	if (r < 0) {
		goto err;
	}
	r = parse_sections(s, json_object_get(m, "sections"), errp);
	if (r < 0) {
		goto err;
	}
	if (asprintf(&mem_path, "%s/memory", dir) < 0) {
		r = error_set(errp, ENOMEM, "out of memory");
		goto err;
	}
	s->mem_fd = open_snapshot_file("snapshot memory file", mem_path, errp);
	if (s->mem_fd < 0) {
		r = s->mem_fd;
		goto err;
	}
	if (fstat(s->mem_fd, &st) < 0) {
		r = error_set_errno(errp, errno, "cannot open %s", mem_path);
		goto err;
	}
	if ((uint64_t)st.st_size != s->mem_size) {
		r = error_set(errp, EINVAL,
			      "memory file %s is %lld bytes, the snapshot needs %" PRIu64
			      ": it is truncated or damaged",
			      mem_path, (long long)st.st_size, s->mem_size);
		goto err;
	}
	*ret = s;
	return 0;

err:
	vm_snapshot_close(s);
	return r;
}

void vm_snapshot_share_memory(struct vm_snapshot *s)
{
	s->share_memory = true;
}

int vm_snapshot_from_stream(json_t *manifest, void *state, size_t state_len, int mem_fd,
			    struct vm_snapshot **ret, struct error **errp)
{
	struct vm_snapshot *s = calloc(1, sizeof(*s));
	uint64_t state_size;
	struct stat st;
	int r;

	if (!s || !(s->dir = strdup("migration stream"))) {
		free(s);
		json_decref(manifest);
		free(state);
		close(mem_fd);
		return error_set(errp, ENOMEM, "out of memory");
	}
	s->mem_fd = mem_fd;
	s->state = state;
	s->state_len = state_len;
	r = parse_manifest(s, manifest, "the migration stream's manifest", &state_size, errp);
	if (r == 0 && state_size != state_len) {
		r = error_set(
			errp, EINVAL,
			"the migration stream's state is %zu bytes, its manifest says %" PRIu64,
			state_len, state_size);
	}
	if (r == 0) {
		r = parse_sections(s, json_object_get(manifest, "sections"), errp);
	}
	if (r == 0 && mem_fd >= 0 &&
	    (fstat(mem_fd, &st) < 0 || (uint64_t)st.st_size != s->mem_size)) {
		r = error_set(errp, EINVAL, "the migrated RAM does not have the manifest's size");
	}
	if (r < 0) {
		vm_snapshot_close(s);
		return r;
	}
	*ret = s;
	return 0;
}

/* ---- restoring ---------------------------------------------------------- */

static struct section *find_section(struct vm_snapshot *s, const char *name, unsigned inst)
{
	for (unsigned i = 0; i < s->n_sections; i++) {
		if (strcmp(s->sections[i].name, name) == 0 && s->sections[i].instance == inst) {
			return &s->sections[i];
		}
	}
	return NULL;
}

static void wrap(struct vm_snapshot *s, struct section *sec, struct vmstate_buf *b)
{
	vmstate_buf_wrap(b, s->state + sec->offset, sec->size);
	sec->used = true;
}

/* Copy the file's data extents into a mapping that must stay shared (memfd). */
static int copy_region(int fd, uint8_t *host, uint64_t size, uint64_t off)
{
	uint64_t pos = 0;

	while (pos < size) {
		off_t data = lseek(fd, (off_t)(off + pos), SEEK_DATA);
		off_t hole;

		if (data < 0 || (uint64_t)data >= off + size) {
			break; /* the rest is a hole: zero already */
		}
		hole = lseek(fd, data, SEEK_HOLE);
		if (hole < 0) {
			return -errno;
		}
		pos = (uint64_t)data - off;
		while (pos < MIN((uint64_t)hole - off, size)) {
			ssize_t n = pread(fd, host + pos, MIN((uint64_t)hole - off, size) - pos,
					  (off_t)(off + pos));

			if (n <= 0) {
				return n < 0 ? -errno : -EIO;
			}
			pos += (uint64_t)n;
		}
	}
	return 0;
}

static int check_memory(struct vm *vm, struct vm_snapshot *s, struct error **errp)
{
	if (guest_mem_size(vm->mem) != s->mem_size ||
	    guest_mem_region_count(vm->mem) != s->n_regions) {
		return error_set(errp, EINVAL,
				 "the snapshot's RAM (%" PRIu64 " bytes) does not match the VM's",
				 s->mem_size);
	}
	for (unsigned i = 0; i < s->n_regions; i++) {
		const struct guest_mem_region *reg = guest_mem_region(vm->mem, i);

		if (reg->gpa != s->regions[i].gpa || reg->size != s->regions[i].size) {
			return error_set(errp, EINVAL,
					 "RAM region %u of the snapshot does not match", i);
		}
	}
	return 0;
}

/*
 * Shared RAM (memfd, hugetlb) cannot be a private mapping of the file: it is
 * populated from the file by a userfaultfd handler (uffd.h), lazily; where
 * no userfaultfd can be had, copied now.
 */
static int map_shared(struct vm *vm, struct vm_snapshot *s, const struct uffd_range *lazy,
		      unsigned n, struct error **errp)
{
	struct uffd_config cfg = {.file_fd = s->mem_fd,
				  .hugetlb = strcmp(vm->cfg->mem_backend, "hugepages") == 0,
				  .rate = vm->host.populate_rate,
				  .vm = vm->cfg->name,
				  .thread_start = vm->host.thread_start,
				  .opaque = vm->host.opaque};
	struct error *err = NULL;
	struct uffd *u;
	int r;

	/*
	 * The build may have touched a page (a hugetlb one is then 2 MiB of
	 * zeros): the file is all that counts, so nothing may be there before.
	 */
	for (unsigned i = 0; i < n; i++) {
		if (madvise(lazy[i].host, lazy[i].size, MADV_REMOVE) < 0) {
			return error_set_errno(errp, errno, "cannot empty the new VM's RAM");
		}
	}
	r = uffd_new(&cfg, lazy, n, &u, &err);
	if (r == 0) {
		guest_mem_set_lazy(vm->mem, u);
		return 0;
	}
	log_full(LOG_NOTICE, vm->cfg->name, NULL,
		 "restoring shared RAM by copying it (restore time grows with RAM size): %s",
		 err->msg);
	error_free(err);
	for (unsigned i = 0; i < n; i++) {
		r = copy_region(s->mem_fd, lazy[i].host, lazy[i].size, lazy[i].file_off);
		if (r < 0) {
			return error_set_errno(errp, -r, "cannot read the snapshot's memory file");
		}
	}
	return 0;
}

static int map_memory(struct vm *vm, struct vm_snapshot *s, struct error **errp)
{
	struct uffd_range lazy[UFFD_MAX_RANGES];
	unsigned n_lazy = 0;
	int r = check_memory(vm, s, errp);

	if (r < 0) {
		return r;
	}
	for (unsigned i = 0; i < s->n_regions; i++) {
		const struct guest_mem_region *reg = guest_mem_region(vm->mem, i);

		if (reg->fd >= 0 && s->share_memory && s->n_regions == 1 &&
		    s->regions[i].offset == 0) {
			/* The source's own memfd: it becomes this VM's RAM, nothing copied. */
			int fd = fcntl(s->mem_fd, F_DUPFD_CLOEXEC, 3);

			if (fd < 0) {
				return error_set_errno(errp, errno, "dup");
			}
			r = guest_mem_adopt_fd(vm->mem, i, fd, errp);
			if (r < 0) {
				return r;
			}
			continue;
		}
		if (reg->fd < 0) {
			void *p = mmap(reg->host, reg->size, PROT_READ | PROT_WRITE,
				       MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE, s->mem_fd,
				       (off_t)s->regions[i].offset);

			if (p == MAP_FAILED) {
				return error_set_errno(errp, errno,
						       "cannot map the snapshot's memory file");
			}
			madvise(p, reg->size, MADV_DONTDUMP);
			continue;
		}
		if (n_lazy == UFFD_MAX_RANGES) {
			return error_set(errp, E2BIG, "more than %d shared RAM regions",
					 UFFD_MAX_RANGES);
		}
		lazy[n_lazy++] = (struct uffd_range){
			.host = reg->host, .size = reg->size, .file_off = s->regions[i].offset};
	}
	return n_lazy ? map_shared(vm, s, lazy, n_lazy, errp) : 0;
}

static int load_devices(struct vm *vm, struct vm_snapshot *s, struct error **errp)
{
	for (unsigned i = 0; i < vm->n_devices; i++) {
		const struct device_class *cls = vm->devices[i].cls;
		struct section *sec;
		struct vmstate_buf b;
		unsigned inst = 0;
		int r;

		if (cls->stateless) {
			continue;
		}
		for (unsigned j = 0; j < i; j++) {
			inst += vm->devices[j].cls == cls;
		}
		sec = find_section(s, cls->name, inst);
		if (!sec || !cls->load) {
			return error_set(errp, EINVAL,
					 "the snapshot has no state for device %s %u of this VM",
					 cls->name, inst);
		}
		if (sec->version > cls->state_version || sec->version == 0) {
			return error_set(errp, ENOTSUP,
					 "the snapshot's state of device %s is version %u; this "
					 "vmmd reads up to %u",
					 cls->name, sec->version, cls->state_version);
		}
		wrap(s, sec, &b);
		r = cls->load(vm->devices[i].state, &b, sec->version, errp);
		if (r < 0) {
			error_prefix(errp, "%s", cls->name);
			return r;
		}
	}
	return 0;
}

/*
 * The snapshot's vCPUs: the cold-plugged ones must all be there; the
 * hot-plugged ones ("cpu-plugged" sections) are plugged again first.
 */
static int load_cpus(struct vm *vm, struct vm_snapshot *s, struct error **errp)
{
	struct section *sec = find_section(s, "kvm", 0);
	struct vmstate_buf b;
	unsigned n = 0;
	int r;

	if (!sec || sec->version != VM_KVM_STATE_VERSION) {
		return error_set(errp, EINVAL, "the snapshot has no usable in-kernel device state");
	}
	/* CPU and TSC first: the checks that a host may fail come before any change. */
	for (unsigned i = 0; i < vm->cfg->maxcpus; i++) {
		struct section *c = find_section(s, "cpu", i);
		struct section *p = find_section(s, "cpu-plugged", i);

		if ((i < vm->cfg->vcpus && !c) || (c && c->version != VCPU_STATE_VERSION) ||
		    (i >= vm->cfg->vcpus && !c != !p)) {
			return error_set(errp, EINVAL,
					 "the snapshot has no usable state for vCPU %u", i);
		}
		n += c != NULL;
	}
	if (s->vcpus != n) {
		return error_set(errp, EINVAL, "the snapshot has %u vCPUs, the VM %u", s->vcpus, n);
	}
	for (unsigned i = vm->cfg->vcpus; i < vm->cfg->maxcpus; i++) {
		struct section *p = find_section(s, "cpu-plugged", i);
		_cleanup_free_ char *blob = NULL;
		char path[128];
		uint32_t len = 0;

		if (!p) {
			continue;
		}
		wrap(s, p, &b);
		blob = vmstate_get_blob_alloc(&b, sizeof(path) - 1, &len);
		if (!blob || b.failed) {
			return error_set(errp, EINVAL, "the snapshot's vCPU %u has a bad qom-path",
					 i);
		}
		memcpy(path, blob, len);
		path[len] = 0;
		r = vm_vcpu_plug(vm, i, path[0] ? path : NULL, errp);
		if (r < 0) {
			return r;
		}
	}
	wrap(s, sec, &b);
	r = vm_kvm_state_load(vm, &b, errp);
	for (unsigned i = 0; r == 0 && i < vm->n_vcpus; i++) {
		struct vcpu *v = vm->vcpus[i];

		if (v->unplugged) {
			continue;
		}
		wrap(s, find_section(s, "cpu", v->index), &b);
		r = vcpu_state_load(v, &b, errp);
	}
	return r;
}

int vm_restore_prepare(const struct vm_config *cfg, const struct vm_host *host, struct vm **ret,
		       struct error **errp)
{
	return vm_build_kernel(cfg, host, ret, errp);
}

int vm_restore(const struct vm_config *cfg, const struct vm_host *host, struct vm_snapshot *snap,
	       bool paused, struct vm **ret, struct error **errp)
{
	struct vm *vm = NULL;
	int r = vm_build_kernel(cfg, host, &vm, errp);

	return r < 0 ? r : vm_restore_into(vm, snap, paused, ret, errp);
}

int vm_restore_into(struct vm *vm, struct vm_snapshot *snap, bool paused, struct vm **ret,
		    struct error **errp)
{
	int r;

	for (unsigned i = 0; i < snap->n_sections; i++) {
		snap->sections[i].used = false;
	}
	r = vm_build_rest(vm, true, errp);
	if (r < 0) {
		return r;
	}
	/* Any failure below (CPUID, TSC, a device) tears the whole new VM down. */
	r = map_memory(vm, snap, errp);
	if (r == 0) {
		r = load_devices(vm, snap, errp);
	}
	if (r == 0) {
		r = load_cpus(vm, snap, errp);
	}
	if (r == 0) {
		r = hotplug_restored(vm->hotplug, errp); /* the ids of the vCPUs plugged again */
	}
	for (unsigned i = 0; r == 0 && i < snap->n_sections; i++) {
		if (!snap->sections[i].used) {
			r = error_set(errp, EINVAL,
				      "the snapshot has state for %s %u, which this VM does not "
				      "have",
				      snap->sections[i].name, snap->sections[i].instance);
		}
	}
	if (r == 0) {
		r = vm_start_restored(vm, paused, errp);
	}
	if (r < 0) {
		vm_teardown(vm);
		return r;
	}
	*ret = vm;
	return 0;
}

/* ---- loading into the VM it came from (snapshot-load) ------------------- */

int vm_state_hold(struct vm *vm, struct error **errp)
{
	return quiesce(vm, errp);
}

int vm_state_load_check(struct vm *vm, struct vm_snapshot *snap, struct error **errp)
{
	int r = check_memory(vm, snap, errp);

	if (r < 0) {
		return r;
	}
	if (snap->vcpus != vm->n_vcpus) {
		return error_set(errp, EINVAL, "the snapshot has %u vCPUs, the VM %u", snap->vcpus,
				 vm->n_vcpus);
	}
	if (!find_section(snap, "kvm", 0)) {
		return error_set(errp, EINVAL, "the snapshot has no in-kernel device state");
	}
	for (unsigned i = 0; i < vm->n_vcpus; i++) {
		if (!find_section(snap, "cpu", i)) {
			return error_set(errp, EINVAL, "the snapshot has no state for vCPU %u", i);
		}
	}
	for (unsigned i = 0; i < vm->n_devices; i++) {
		const struct device_class *cls = vm->devices[i].cls;
		unsigned inst = 0;

		if (cls->stateless) {
			continue;
		}
		for (unsigned j = 0; j < i; j++) {
			inst += vm->devices[j].cls == cls;
		}
		if (!find_section(snap, cls->name, inst) || !cls->load) {
			return error_set(errp, EINVAL,
					 "the snapshot has no state for device %s %u of this VM",
					 cls->name, inst);
		}
	}
	return 0;
}

int vm_state_load(struct vm *vm, struct vm_snapshot *snap, struct error **errp)
{
	int r;

	for (unsigned i = 0; i < snap->n_sections; i++) {
		snap->sections[i].used = false;
	}
	r = vm_machine_reset_for_load(vm, errp);
	if (r == 0) {
		r = load_devices(vm, snap, errp);
	}
	if (r == 0) {
		r = load_cpus(vm, snap, errp);
	}
	for (unsigned i = 0; r == 0 && i < snap->n_sections; i++) {
		if (!snap->sections[i].used) {
			r = error_set(errp, EINVAL,
				      "the snapshot has state for %s %u, which this VM does not "
				      "have",
				      snap->sections[i].name, snap->sections[i].instance);
		}
	}
	return r;
}

int vm_pmemsave_check(struct vm *vm, uint64_t size, struct error **errp)
{
	uint64_t max = guest_mem_size(vm->mem) + GUEST_MEM_HIGH_START;

	if (size > max) {
		return error_set(errp, EINVAL,
				 "%" PRIu64 " bytes: pmemsave writes at most %" PRIu64
				 " (the guest's memory and the 4 GiB below it)",
				 size, max);
	}
	return 0;
}

int vm_pmemsave(struct vm *vm, uint64_t addr, uint64_t size, int fd, const char *name,
		struct error **errp)
{
	static const uint8_t zeroes[4096];
	uint64_t done = 0;
	int r = vm_pmemsave_check(vm, size, errp);

	while (r == 0 && done < size) {
		/* (addresses wrap at 2^64, as QEMU's) */
		uint64_t gpa = addr + done, n = MIN(size - done, (uint64_t)1 << 20);
		const void *p = guest_mem_ptr(vm->mem, gpa, n);

		if (!p) {
			/* across a region's end or outside RAM: a page at a time, zeroes outside */
			n = MIN(n, 4096 - (gpa & 4095));
			p = guest_mem_ptr(vm->mem, gpa, n);
		}
		r = write_all(fd, p ? p : zeroes, n, (off_t)done);
		if (r < 0) {
			return error_set_errno(errp, r, "writing memory to '%s'", name);
		}
		done += n;
	}
	return r;
}
