/*
 * A test double of the VM object (include/vmmd/vm.h) for the daemon's unit
 * tests: no KVM, just the run-state machine and its events, so the registry
 * and the command handlers can be exercised anywhere. Definitions are
 * checked for the top-level keys of DESIGN.md §5.1 only; the real parser is
 * hw/'s. Events are raised synchronously on the calling thread.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/parse.h"
#include "hw/device.h"
#include "vmmd/vm.h"

struct vm {
	struct vm_config *cfg;
	const struct vm_host *host;
	enum vm_run_state state;
};

/* Count of live fake VMs, for leak checks in the tests. */
int vm_double_live;

static const char *const state_names[] = {
	"prelaunch",	  "running",	    "paused",	"shutdown",
	"internal-error", "guest-panicked", "io-error",
};

const char *vm_run_state_name(enum vm_run_state s)
{
	return (unsigned)s < sizeof(state_names) / sizeof(state_names[0]) ? state_names[s]
									  : "unknown";
}

static char *dup_str(json_t *v)
{
	return json_is_string(v) ? strdup(json_string_value(v)) : NULL;
}

int vm_config_from_json(json_t *def, bool allow_start, struct vm_config **ret, struct error **errp)
{
	static const char *const keys[] = {
		"name", "vcpus",  "memory",    "cpu",	    "boot", "disks",	   "nics",
		"rng",	"serial", "on_reboot", "autostart", "acpi", "mem_backend",
	};
	struct vm_config *cfg;
	const char *key;
	json_t *v;

	if (!json_is_object(def)) {
		return error_set(errp, EINVAL, "a VM definition must be an object");
	}
	json_object_foreach (def, key, v) {
		bool known = allow_start && strcmp(key, "start") == 0;

		for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
			known = known || strcmp(keys[i], key) == 0;
		}
		if (!known) {
			return error_set(errp, EINVAL, "unknown key '%s' in the VM definition",
					 key);
		}
	}
	if (!json_is_string(json_object_get(def, "name"))) {
		return error_set(errp, EINVAL, "'name' is required and must be a string");
	}
	cfg = calloc(1, sizeof(*cfg));
	cfg->name = dup_str(json_object_get(def, "name"));
	cfg->vcpus = 1;
	cfg->memory = 128u << 20;
	v = json_object_get(def, "vcpus");
	if (v) {
		if (!json_is_integer(v) || json_integer_value(v) < 1 ||
		    json_integer_value(v) > 64) {
			vm_config_free(cfg);
			return error_set(errp, ERANGE, "'vcpus' must be 1..64");
		}
		cfg->vcpus = (unsigned)json_integer_value(v);
	}
	v = json_object_get(def, "memory");
	if (json_is_string(v) && parse_size(json_string_value(v), &cfg->memory) < 0) {
		vm_config_free(cfg);
		return error_set(errp, EINVAL, "bad 'memory'");
	} else if (json_is_integer(v)) {
		cfg->memory = (uint64_t)json_integer_value(v);
	}
	cfg->boot.kernel = dup_str(json_object_get(json_object_get(def, "boot"), "kernel"));
	cfg->serial_log = dup_str(json_object_get(json_object_get(def, "serial"), "log"));
	cfg->autostart = json_is_true(json_object_get(def, "autostart"));
	*ret = cfg;
	return 0;
}

json_t *vm_config_to_json(const struct vm_config *cfg)
{
	json_t *j = json_pack("{s:s, s:i, s:I, s:b}", "name", cfg->name, "vcpus", (int)cfg->vcpus,
			      "memory", (json_int_t)cfg->memory, "autostart", cfg->autostart);

	if (cfg->boot.kernel) {
		json_object_set_new(j, "boot", json_pack("{s:s}", "kernel", cfg->boot.kernel));
	}
	if (cfg->serial_log) {
		json_object_set_new(j, "serial", json_pack("{s:s}", "log", cfg->serial_log));
	}
	return j;
}

void vm_config_free(struct vm_config *cfg)
{
	if (!cfg) {
		return;
	}
	free(cfg->name);
	free(cfg->boot.kernel);
	free(cfg->serial_log);
	free(cfg);
}

uint64_t vm_config_memory_total(const struct vm_config *cfg)
{
	return cfg->memory; /* the double's VMs have no memory devices */
}

static struct vm_config *config_copy(const struct vm_config *cfg)
{
	struct vm_config *c = calloc(1, sizeof(*c));

	*c = *cfg;
	c->name = strdup(cfg->name);
	c->boot.kernel = cfg->boot.kernel ? strdup(cfg->boot.kernel) : NULL;
	c->serial_log = cfg->serial_log ? strdup(cfg->serial_log) : NULL;
	return c;
}

int vm_new(const struct vm_config *cfg, const struct vm_host *host, struct vm **ret,
	   struct error **errp)
{
	struct vm *vm;

	if (cfg->boot.kernel && strcmp(cfg->boot.kernel, "/nonexistent") == 0) {
		return error_set(errp, ENOENT, "cannot open kernel /nonexistent");
	}
	vm = calloc(1, sizeof(*vm));
	vm->cfg = config_copy(cfg);
	vm->host = host;
	vm->state = VM_STATE_PRELAUNCH;
	vm_double_live++;
	*ret = vm;
	return 0;
}

static void event(struct vm *vm, const char *name, json_t *data)
{
	vm->host->event(vm->host->opaque, vm, name, data);
}

int vm_spawn_vcpus(struct vm *vm, struct error **errp)
{
	return 0; /* the double has no threads */
}

int vm_start(struct vm *vm, struct error **errp)
{
	if (vm->state != VM_STATE_PRELAUNCH) {
		return error_set(errp, EINVAL, "not in prelaunch");
	}
	vm->state = VM_STATE_RUNNING;
	return 0;
}

int vm_pause(struct vm *vm, struct error **errp)
{
	if (vm->state != VM_STATE_RUNNING) {
		return error_set(errp, EINVAL, "not running");
	}
	vm->state = VM_STATE_PAUSED;
	event(vm, "STOP", NULL);
	return 0;
}

int vm_resume(struct vm *vm, struct error **errp)
{
	if (vm->state != VM_STATE_PAUSED) {
		return error_set(errp, EINVAL, "not paused");
	}
	vm->state = VM_STATE_RUNNING;
	event(vm, "RESUME", NULL);
	return 0;
}

int vm_reset(struct vm *vm, struct error **errp)
{
	event(vm, "RESET", json_pack("{s:b, s:s}", "guest", 0, "reason", "host-qmp-system-reset"));
	if (vm->state != VM_STATE_RUNNING) {
		vm->state = VM_STATE_PRELAUNCH; /* as hw/core/vm.c and QEMU 7.2 */
	}
	return 0;
}

int vm_powerdown(struct vm *vm, struct error **errp)
{
	/* The fake guest obeys the power button at once. */
	event(vm, "POWERDOWN", NULL);
	vm->state = VM_STATE_SHUTDOWN;
	event(vm, "SHUTDOWN", json_pack("{s:b, s:s}", "guest", 1, "reason", "guest-shutdown"));
	return 0;
}

void vm_destroy(struct vm *vm)
{
	if (!vm) {
		return;
	}
	vm_config_free(vm->cfg);
	free(vm);
	vm_double_live--;
}

enum vm_run_state vm_get_state(struct vm *vm)
{
	return vm->state;
}

const char *vm_name(struct vm *vm)
{
	return vm->cfg->name;
}

const char *vm_console_socket(struct vm *vm)
{
	return NULL;
}

json_t *vm_query_block(struct vm *vm)
{
	return json_array();
}

json_t *vm_query_blockstats(struct vm *vm)
{
	return json_array();
}

char *vm_setup_phases(struct vm *vm)
{
	return strdup("double 0.00; total 0.00");
}

int vm_input_qcode(const char *name)
{
	return strcmp(name, "a") == 0 ? 1 : -1;
}

int vm_input_qcode_from_number(int64_t number)
{
	return 0;
}

int vm_input_send(struct vm *vm, const char *device, const struct vm_input_event *ev, unsigned n,
		  struct error **errp)
{
	return 0;
}

int vm_query_usb(struct vm *vm, char **ret, struct error **errp)
{
	return error_set(errp, ENODEV, "USB support not enabled");
}

/* Save/restore are exercised end to end (tests/functional/test-vm-save.py). */
int vm_save_begin(struct vm *vm, struct error **errp)
{
	return error_set(errp, ENOTSUP, "the VM double cannot be saved");
}

int vm_save(struct vm *vm, const char *dir, uint64_t *ret_bytes, struct error **errp)
{
	return error_set(errp, ENOTSUP, "the VM double cannot be saved");
}

void vm_save_end(struct vm *vm, bool resume)
{
}

int vm_snapshot_open(const char *dir, struct vm_snapshot **ret, struct error **errp)
{
	return error_set(errp, ENOTSUP, "the VM double cannot restore");
}

json_t *vm_snapshot_definition(struct vm_snapshot *snap)
{
	return NULL;
}

void vm_snapshot_close(struct vm_snapshot *snap)
{
}

int vm_restore(const struct vm_config *cfg, const struct vm_host *host, struct vm_snapshot *snap,
	       bool paused, struct vm **ret, struct error **errp)
{
	return error_set(errp, ENOTSUP, "the VM double cannot restore");
}

int vm_restore_prepare(const struct vm_config *cfg, const struct vm_host *host, struct vm **ret,
		       struct error **errp)
{
	return error_set(errp, ENOTSUP, "the VM double cannot restore");
}

int vm_restore_into(struct vm *pre, struct vm_snapshot *snap, bool paused, struct vm **ret,
		    struct error **errp)
{
	return error_set(errp, ENOTSUP, "the VM double cannot restore");
}

json_t *vm_query_cpus_fast(struct vm *vm)
{
	json_t *a = json_array();

	for (unsigned i = 0; i < vm->cfg->vcpus; i++) {
		json_array_append_new(a,
				      json_pack("{s:i, s:i}", "cpu-index", (int)i, "thread-id", 0));
	}
	return a;
}

json_t *vm_query_hotpluggable_cpus(struct vm *vm)
{
	json_t *a = json_array();

	for (unsigned i = vm->cfg->vcpus; i-- > 0;) {
		json_array_append_new(a, json_pack("{s:s, s:i, s:{s:i}}", "type", "host-x86_64-cpu",
						   "vcpus-count", 1, "props", "core-id", (int)i));
	}
	return a;
}

/* The ring of ringbuf-read/-write: a fixed buffer, oldest dropped. */
static uint8_t ring[64];
static size_t ring_len;

int vm_ringbuf_read(struct vm *vm, uint8_t *buf, size_t max, size_t *ret_len)
{
	size_t n = max < ring_len ? max : ring_len;

	memcpy(buf, ring, n);
	memmove(ring, ring + n, ring_len - n);
	ring_len -= n;
	*ret_len = n;
	return 0;
}

int vm_ringbuf_write(struct vm *vm, const uint8_t *buf, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (ring_len == sizeof(ring)) {
			memmove(ring, ring + 1, --ring_len);
		}
		ring[ring_len++] = buf[i];
	}
	return 0;
}

void vm_nic_default_mac(const char *vm_name, const char *nic_id, char buf[18])
{
	snprintf(buf, 18, "52:54:00:00:00:01");
}

/* Hotplug: the double has no devices; every command fails as on a VM without ACPI. */
static int no_hotplug(struct error **errp)
{
	return error_set(errp, ENOTSUP, "Bus 'pci.0' does not support hotplugging");
}

int vm_blockdev_add_prepare(struct vm *vm, json_t *args, struct vm_blockdev_op **ret,
			    struct error **errp)
{
	return no_hotplug(errp);
}

void vm_blockdev_add_open(struct vm_blockdev_op *op)
{
}

int vm_blockdev_add_finish(struct vm *vm, struct vm_blockdev_op *op, struct error **errp)
{
	return no_hotplug(errp);
}

void vm_blockdev_add_abandon(struct vm_blockdev_op *op)
{
}

struct block_node *vm_block_node_get(struct vm *vm, const char *node_name, struct error **errp)
{
	no_hotplug(errp);
	return NULL;
}

int vm_blockdev_del(struct vm *vm, const char *node_name, struct block_node **ret,
		    struct error **errp)
{
	return no_hotplug(errp);
}

int vm_blockdev_overlay(struct vm *vm, const char *name, struct block_node **ret)
{
	return -ENOENT;
}

void vm_blockdev_forget(struct vm *vm, const char *name)
{
}

int vm_blockdev_claim(struct vm *vm, const char *name, struct block_node **ret)
{
	return -ENOENT;
}

struct block_node *vm_blockdev_unclaim(struct vm *vm, const char *name, bool drop)
{
	return NULL;
}

int vm_netdev_add(struct vm *vm, json_t *args, int fd, struct error **errp)
{
	if (fd >= 0) {
		close(fd);
	}
	return no_hotplug(errp);
}

int vm_netdev_del(struct vm *vm, const char *id, struct error **errp)
{
	return no_hotplug(errp);
}

int vm_set_link(struct vm *vm, const char *name, bool up, struct error **errp)
{
	return error_set_class(errp, ERROR_CLASS_DEVICE_NOT_FOUND, ENOENT, "Device '%s' not found",
			       name);
}

int vm_set_io_throttle(struct vm *vm, const char *id, const struct block_throttle_limits *l,
		       struct error **errp)
{
	return error_set_class(errp, ERROR_CLASS_DEVICE_NOT_FOUND, ENOENT, "Device '%s' not found",
			       id);
}

int vm_pmemsave_check(struct vm *vm, uint64_t size, struct error **errp)
{
	return 0;
}

int vm_pmemsave(struct vm *vm, uint64_t addr, uint64_t size, int fd, const char *name,
		struct error **errp)
{
	return error_set(errp, ENOTSUP, "the VM double has no memory");
}

/* 1 MiB of "RAM" at 0, so a dump gets as far as its file and the stop. */
uint64_t vm_dump_size(struct vm *vm, bool filter, uint64_t begin, uint64_t length)
{
	uint64_t end = begin + length < begin ? UINT64_MAX : begin + length;

	if (!filter) {
		return 1 << 20;
	}
	return begin < (1 << 20) ? MIN(end, (uint64_t)1 << 20) - begin : 0;
}

int vm_dump_elf(struct vm *vm, int fd, bool paging, bool filter, uint64_t begin, uint64_t length,
		atomic_uint_fast64_t *done, struct error **errp)
{
	return error_set(errp, ENOTSUP, "the VM double has no memory");
}

/* Paging off, and no memory to read. */
int vm_vcpu_paging(struct vm *vm, unsigned cpu, struct vm_paging *ret, struct error **errp)
{
	*ret = (struct vm_paging){0};
	return 0;
}

int vm_translate(struct vm *vm, const struct vm_paging *p, uint64_t la, uint64_t *ret_gpa)
{
	*ret_gpa = la;
	return 0;
}

int vm_read_memory(struct vm *vm, const struct vm_paging *p, uint64_t addr, void *buf, size_t len)
{
	return -EFAULT;
}

int vm_walk_pages(struct vm *vm, const struct vm_paging *p, vm_page_fn *fn, void *opaque)
{
	return -ENOENT;
}

int vm_memsave(struct vm *vm, unsigned cpu, uint64_t addr, uint64_t size, int fd, const char *name,
	       struct error **errp)
{
	return error_set(errp, EINVAL, "Parameter 'cpu-index' expects a CPU number");
}

/* The double has no removable drive: every name is unknown. */
static int no_drive(const char *id, struct error **errp)
{
	return error_set_class(errp, ERROR_CLASS_DEVICE_NOT_FOUND, ENOENT, "Device '%s' not found",
			       id);
}

int vm_media_state(struct vm *vm, const char *id, struct vm_tray *st, struct error **errp)
{
	return no_drive(id, errp);
}

int vm_media_open_tray(struct vm *vm, const char *id, bool force, struct error **errp)
{
	return no_drive(id, errp);
}

int vm_media_close_tray(struct vm *vm, const char *id, struct error **errp)
{
	return no_drive(id, errp);
}

int vm_media_remove(struct vm *vm, const char *id, struct error **errp)
{
	return no_drive(id, errp);
}

int vm_media_insert_node(struct vm *vm, const char *id, const char *node_name, struct error **errp)
{
	return no_drive(id, errp);
}

int vm_media_insert(struct vm *vm, const char *id, struct block_node *bs, struct error **errp)
{
	block_unref(bs);
	return no_drive(id, errp);
}

int vm_device_add(struct vm *vm, json_t *args, struct error **errp)
{
	return no_hotplug(errp);
}

int vm_device_del(struct vm *vm, const char *id, struct error **errp)
{
	return error_set_class(errp, ERROR_CLASS_DEVICE_NOT_FOUND, ENOENT, "Device '%s' not found",
			       id);
}

int vm_block_resize_prepare(struct vm *vm, const char *device, const char *node_name, uint64_t size,
			    struct vm_resize_op **ret, struct error **errp)
{
	return no_hotplug(errp);
}

void vm_block_resize_run(struct vm_resize_op *op)
{
}

int vm_block_resize_finish(struct vm *vm, struct vm_resize_op *op, struct error **errp)
{
	return 0;
}

json_t *vm_query_pci(struct vm *vm)
{
	return json_pack("[{s:i, s:[]}]", "bus", 0, "devices");
}

/* The double has no disks. */
struct block_node *vm_disk_node(struct vm *vm, const char *id)
{
	(void)vm;
	(void)id;
	return NULL;
}

void vm_for_each_disk(struct vm *vm,
		      void (*fn)(void *opaque, const char *id, struct block_node *bs), void *opaque)
{
	(void)vm;
	(void)fn;
	(void)opaque;
}

void vm_hotplug_poll(struct vm *vm)
{
}

json_t *vm_device_definition(struct vm *vm, const char *id)
{
	return NULL;
}

/* The double's vCPUs take NMIs without a trace. */
int vm_inject_nmi(struct vm *vm, struct error **errp)
{
	return 0;
}

/* The double has no NIC: an announcement sends nothing. */
int vm_announce(struct vm *vm, const struct vm_announce_params *p, const char *const *interfaces,
		const char *id, struct error **errp)
{
	return 0;
}

int vm_balloon(struct vm *vm, int64_t value, struct error **errp)
{
	return error_set_class(errp, ERROR_CLASS_DEVICE_NOT_ACTIVE, ENODEV,
			       "No balloon device has been activated");
}

json_t *vm_query_balloon(struct vm *vm, struct error **errp)
{
	vm_balloon(vm, 0, errp);
	return NULL;
}

/* Memory devices and QOM: the double has none (test-virtio-mem.py runs them). */
json_t *vm_qom_get(struct vm *vm, const char *path, const char *property, struct error **errp)
{
	error_set_class(errp, ERROR_CLASS_DEVICE_NOT_FOUND, ENOENT, "Device '%s' not found", path);
	return NULL;
}

int vm_qom_set(struct vm *vm, const char *path, const char *property, json_t *value,
	       struct error **errp)
{
	return error_set_class(errp, ERROR_CLASS_DEVICE_NOT_FOUND, ENOENT, "Device '%s' not found",
			       path);
}

json_t *vm_query_memory_devices(struct vm *vm)
{
	return json_array();
}

json_t *vm_query_memory_size_summary(struct vm *vm)
{
	return json_pack("{s:I, s:I}", "base-memory", (json_int_t)0, "plugged-memory",
			 (json_int_t)0);
}

/* Live migration is exercised end to end (tests/functional/test-migration.py). */
int vm_dirty_log_start(struct vm *vm, struct error **errp)
{
	return error_set(errp, ENOTSUP, "the VM double cannot migrate");
}

int vm_dirty_log_sync(struct vm *vm, unsigned i, uint64_t *bitmap, struct error **errp)
{
	return error_set(errp, ENOTSUP, "the VM double cannot migrate");
}

void vm_dirty_log_stop(struct vm *vm)
{
}

int vm_set_cpu_throttle(struct vm *vm, unsigned pct, struct error **errp)
{
	return pct ? error_set(errp, ENOTSUP, "the VM double cannot migrate") : 0;
}

unsigned vm_cpu_throttle(struct vm *vm)
{
	return 0;
}

unsigned vm_ram_region_count(struct vm *vm)
{
	return 0;
}

uint8_t *vm_ram_region(struct vm *vm, unsigned i, uint64_t *ret_gpa, uint64_t *ret_size)
{
	return NULL;
}

int vm_ram_region_fd(struct vm *vm, unsigned i)
{
	return -1;
}

int vm_ram_populate_wait(struct vm *vm, struct error **errp)
{
	return 0;
}

void vm_snapshot_share_memory(struct vm_snapshot *snap)
{
}

void vm_set_migrate_state(struct vm *vm, enum vm_run_state s)
{
}

void vm_mark_prelaunch(struct vm *vm)
{
}

int vm_state_capture(struct vm *vm, struct vmstate_buf *state, json_t **ret_manifest,
		     struct error **errp)
{
	return error_set(errp, ENOTSUP, "the VM double cannot migrate");
}

void vm_state_release(struct vm *vm)
{
}

int vm_snapshot_from_stream(json_t *manifest, void *state, size_t state_len, int mem_fd,
			    struct vm_snapshot **ret, struct error **errp)
{
	return error_set(errp, ENOTSUP, "the VM double cannot restore");
}

int vm_state_hold(struct vm *vm, struct error **errp)
{
	return error_set(errp, ENOTSUP, "the VM double has no state");
}

int vm_state_load_check(struct vm *vm, struct vm_snapshot *snap, struct error **errp)
{
	return error_set(errp, ENOTSUP, "the VM double has no state");
}

int vm_state_load(struct vm *vm, struct vm_snapshot *snap, struct error **errp)
{
	return error_set(errp, ENOTSUP, "the VM double has no state");
}

uint64_t vm_guest_clock_ns(struct vm *vm)
{
	return 0;
}

int vm_disks_set_active(struct vm *vm, bool active, struct error **errp)
{
	return 0;
}

int vm_for_each_nic_fd(struct vm *vm, vm_nic_fd_fn *fn, void *opaque)
{
	return 0;
}

void vm_nic_fds_release(struct vm *vm)
{
}

int vm_migration_blocker(struct vm *vm, struct error **errp)
{
	return 0;
}
