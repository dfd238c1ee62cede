/*
 * The VM definition (DESIGN.md §5.1): strict parsing from JSON into struct
 * vm_config with defaults and validation, and the canonical JSON form.
 * Every key is documented in man/vmmd-vm.5.
 *
 * Threads: pure functions over their arguments; any thread.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/parse.h"
#include "common/util.h"
#include "hw/core/cpuid.h"
#include "hw/core/vm-config-mem.h"
#include "hw/devices.h"
#include "vmmd/vm.h"

#define VM_MEMORY_MIN (16ull << 20)
#define VM_MEMORY_MAX (256ull << 30)
#define VM_VCPUS_MAX 64
#define VM_DISKS_MAX 32
#define VM_NICS_MAX 32
#define VM_INPUTS_MAX 4 /* USB ports for HID devices */
#define VM_HOSTFWD_MAX 64
#define VM_BOOT_ORDER_MAX 16
#define VM_PATH_MAX 4096
#define VM_CMDLINE_MAX 65535
#define VM_DISK_SERIAL_MAX 20

static const char *const state_names[] = {
	[VM_STATE_PRELAUNCH] = "prelaunch",
	[VM_STATE_RUNNING] = "running",
	[VM_STATE_PAUSED] = "paused",
	[VM_STATE_SHUTDOWN] = "shutdown",
	[VM_STATE_INTERNAL_ERROR] = "internal-error",
	[VM_STATE_GUEST_PANICKED] = "guest-panicked",
	[VM_STATE_IO_ERROR] = "io-error",
	[VM_STATE_INMIGRATE] = "inmigrate",
	[VM_STATE_FINISH_MIGRATE] = "finish-migrate",
	[VM_STATE_POSTMIGRATE] = "postmigrate",
	[VM_STATE_SAVE_VM] = "save-vm",
	[VM_STATE_RESTORE_VM] = "restore-vm",
};

const char *vm_run_state_name(enum vm_run_state s)
{
	if ((unsigned)s >= ARRAY_SIZE(state_names)) {
		return "unknown";
	}
	return state_names[s];
}

static bool valid_name(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n == 0 || n > max) {
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-')) {
			return false;
		}
	}
	return true;
}

/*
 * Object key checking: every key of @obj must be in @allowed (NULL-
 * terminated). @where names the object in messages ("disks[1]").
 */
static int check_keys(json_t *obj, const char *const *allowed, const char *where,
		      struct error **errp)
{
	const char *key;
	json_t *v;

	json_object_foreach (obj, key, v) {
		bool ok = false;

		for (size_t i = 0; allowed[i]; i++) {
			if (strcmp(key, allowed[i]) == 0) {
				ok = true;
				break;
			}
		}
		if (!ok) {
			return error_set(errp, EINVAL, "%s%sunknown key \"%s\"", where,
					 *where ? ": " : "", key);
		}
	}
	return 0;
}

/* Optional string member; *ret untouched when absent. Copies. */
static int get_string(json_t *obj, const char *key, const char *where, size_t max, char **ret,
		      struct error **errp)
{
	json_t *v = json_object_get(obj, key);
	char *s;

	if (!v) {
		return 0;
	}
	if (!json_is_string(v)) {
		return error_set(errp, EINVAL, "%s%s\"%s\" must be a string", where,
				 *where ? ": " : "", key);
	}
	if (strlen(json_string_value(v)) != json_string_length(v)) {
		return error_set(errp, EINVAL, "%s%s\"%s\" must not contain NUL bytes", where,
				 *where ? ": " : "", key);
	}
	if (json_string_length(v) > max) {
		return error_set(errp, EINVAL, "%s%s\"%s\" is longer than %zu bytes", where,
				 *where ? ": " : "", key, max);
	}
	s = strdup(json_string_value(v));
	if (!s) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	free(*ret);
	*ret = s;
	return 0;
}

static int get_bool(json_t *obj, const char *key, const char *where, bool *ret, struct error **errp)
{
	json_t *v = json_object_get(obj, key);

	if (!v) {
		return 0;
	}
	if (!json_is_boolean(v)) {
		return error_set(errp, EINVAL, "%s%s\"%s\" must be true or false", where,
				 *where ? ": " : "", key);
	}
	*ret = json_is_true(v);
	return 0;
}

static int get_uint(json_t *obj, const char *key, const char *where, unsigned min, unsigned max,
		    unsigned *ret, struct error **errp)
{
	json_t *v = json_object_get(obj, key);
	json_int_t i;

	if (!v) {
		return 0;
	}
	if (!json_is_integer(v)) {
		return error_set(errp, EINVAL, "%s%s\"%s\" must be an integer", where,
				 *where ? ": " : "", key);
	}
	i = json_integer_value(v);
	if (i < (json_int_t)min || i > (json_int_t)max) {
		return error_set(errp, ERANGE,
				 "%s%s\"%s\" is %" JSON_INTEGER_FORMAT
				 ", must be between %u and %u",
				 where, *where ? ": " : "", key, i, min, max);
	}
	*ret = (unsigned)i;
	return 0;
}

/* A string that must be one of @choices (NULL-terminated); default kept when absent. */
static int get_choice(json_t *obj, const char *key, const char *where, const char *const *choices,
		      char **ret, struct error **errp)
{
	_cleanup_free_ char *s = NULL;
	int r;

	r = get_string(obj, key, where, 64, &s, errp);
	if (r < 0 || !s) {
		return r;
	}
	for (size_t i = 0; choices[i]; i++) {
		if (strcmp(s, choices[i]) == 0) {
			free(*ret);
			*ret = TAKE_PTR(s);
			return 0;
		}
	}
	return error_set(errp, EINVAL, "%s%s\"%s\" is \"%s\", must be one of: %s%s%s%s%s%s", where,
			 *where ? ": " : "", key, s, choices[0], choices[1] ? ", " : "",
			 choices[1] ? choices[1] : "", choices[1] && choices[2] ? ", " : "",
			 choices[1] && choices[2] ? choices[2] : "",
			 choices[1] && choices[2] && choices[3] ? ", ..." : "");
}

static int set_default(char **field, const char *value, struct error **errp)
{
	if (*field) {
		return 0;
	}
	*field = strdup(value);
	return *field ? 0 : error_set(errp, ENOMEM, "out of memory");
}

static void string_list_free(char **list)
{
	if (!list) {
		return;
	}
	for (size_t i = 0; list[i]; i++) {
		free(list[i]);
	}
	free(list);
}

/* NULL-terminated array of strings from a JSON array of strings. */
static int get_string_list(json_t *obj, const char *key, const char *where, size_t max_items,
			   size_t max_len, char ***ret, struct error **errp)
{
	json_t *v = json_object_get(obj, key);
	char **list;
	size_t n, i;
	json_t *item;

	if (!v) {
		return 0;
	}
	if (!json_is_array(v)) {
		return error_set(errp, EINVAL, "%s%s\"%s\" must be an array of strings", where,
				 *where ? ": " : "", key);
	}
	n = json_array_size(v);
	if (n > max_items) {
		return error_set(errp, E2BIG, "%s%s\"%s\" has %zu entries, at most %zu allowed",
				 where, *where ? ": " : "", key, n, max_items);
	}
	list = calloc(n + 1, sizeof(*list));
	if (!list) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	json_array_foreach (v, i, item) {
		if (!json_is_string(item) || json_string_length(item) == 0 ||
		    json_string_length(item) > max_len ||
		    strlen(json_string_value(item)) != json_string_length(item)) {
			string_list_free(list); /* NULL-terminated at i */
			return error_set(errp, EINVAL,
					 "%s%s\"%s\"[%zu] must be a non-empty string of at most "
					 "%zu bytes",
					 where, *where ? ": " : "", key, i, max_len);
		}
		list[i] = strdup(json_string_value(item));
		if (!list[i]) {
			string_list_free(list);
			return error_set(errp, ENOMEM, "out of memory");
		}
	}
	*ret = list;
	return 0;
}

static json_t *string_list_to_json(char **list)
{
	json_t *a = json_array();

	for (size_t i = 0; list && list[i]; i++) {
		json_array_append_new(a, json_string(list[i]));
	}
	return a;
}

static bool valid_mac(const char *s)
{
	unsigned b[6];
	char tail;

	if (strlen(s) != 17) {
		return false;
	}
	for (int i = 0; i < 17; i++) {
		char c = s[i];

		if (i % 3 == 2) {
			if (c != ':') {
				return false;
			}
		} else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
			     (c >= 'A' && c <= 'F'))) {
			return false;
		}
	}
	if (sscanf(s, "%x:%x:%x:%x:%x:%x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &tail) !=
	    6) {
		return false;
	}
	/* A NIC address is unicast: bit 0 of the first byte clear. */
	return (b[0] & 1) == 0;
}

/* "tcp:[hostaddr]:hostport-[guestaddr]:guestport" (QEMU's hostfwd syntax). */
static bool valid_hostfwd(const char *s)
{
	const char *p = s;
	const char *dash;
	unsigned long port;
	char *end;

	if (strncmp(p, "tcp:", 4) == 0 || strncmp(p, "udp:", 4) == 0) {
		p += 4;
	} else if (*p == ':') {
		p++;
	} else {
		return false;
	}
	dash = strchr(p, '-');
	if (!dash || strchr(dash + 1, '-')) {
		return false;
	}
	for (int side = 0; side < 2; side++) {
		const char *colon = strchr(p, ':');

		if (!colon || (side == 0 && colon > dash)) {
			return false;
		}
		p = colon + 1;
		port = strtoul(p, &end, 10);
		if (end == p || port == 0 || port > 65535 ||
		    (side == 0 ? end != dash : *end != '\0')) {
			return false;
		}
		p = dash + 1;
	}
	return true;
}

void vm_config_free(struct vm_config *cfg)
{
	if (!cfg) {
		return;
	}
	free(cfg->name);
	free(cfg->cpu);
	free(cfg->boot.kernel);
	free(cfg->boot.initrd);
	free(cfg->boot.cmdline);
	free(cfg->boot.firmware);
	string_list_free(cfg->boot.order);
	for (unsigned i = 0; i < cfg->n_disks; i++) {
		struct vm_disk_config *d = &cfg->disks[i];

		free(d->id);
		free(d->driver);
		free(d->file);
		free(d->format);
		free(d->node);
		free(d->cache);
		free(d->aio);
		free(d->serial);
		free(d->werror);
		free(d->rerror);
	}
	free(cfg->disks);
	for (unsigned i = 0; i < cfg->n_nics; i++) {
		struct vm_nic_config *n = &cfg->nics[i];

		free(n->id);
		free(n->driver);
		free(n->backend);
		free(n->ifname);
		free(n->fd);
		free(n->mac);
		string_list_free(n->hostfwd);
		free(n->rom);
	}
	free(cfg->nics);
	for (unsigned i = 0; i < cfg->n_inputs; i++) {
		free(cfg->inputs[i].id);
		free(cfg->inputs[i].driver);
	}
	free(cfg->inputs);
	free(cfg->serial_log);
	free(cfg->on_reboot);
	free(cfg->mem_backend);
	free(cfg->debugcon);
	vm_config_memory_free(cfg);
	free(cfg);
}

/* A disk's "throttle": its I/O limits (virtio-blk), QEMU's names and checks. */
static int parse_throttle(json_t *obj, const char *where, struct vm_disk_config *d,
			  struct error **errp)
{
	json_t *t = json_object_get(obj, "throttle");
	int r;

	block_throttle_limits_init(&d->throttle);
	if (!t) {
		return 0;
	}
	if (!json_is_object(t)) {
		return error_set(errp, EINVAL, "%s: \"throttle\" must be an object", where);
	}
	if (strcmp(d->driver, "virtio-blk") != 0) {
		return error_set(errp, EINVAL, "%s: \"throttle\" applies to \"virtio-blk\" only",
				 where);
	}
	r = block_throttle_from_json(t, true, &d->throttle, errp);
	if (r < 0) {
		error_prefix(errp, "%s.throttle", where);
	}
	return r;
}

static int parse_disk(json_t *obj, unsigned idx, struct vm_disk_config *d, struct error **errp)
{
	static const char *const keys[] = {"id",       "driver",    "file",   "format",	  "node",
					   "readonly", "cache",	    "serial", "werror",	  "rerror",
					   "queues",   "removable", "aio",    "throttle", NULL};
	static const char *const formats[] = {"raw", "qcow2", "qed", "vhdx", "vmdk", "vpc", NULL};
	static const char *const caches[] = {"writeback", "none", NULL};
	static const char *const aios[] = {"io_uring", "native", "threads", NULL};
	static const char *const policies[] = {"report", "stop", NULL};
	const char *drivers[16];
	char where[32];
	int r;

	device_class_drivers(DEVICE_PER_DISK, drivers, ARRAY_SIZE(drivers));
	snprintf(where, sizeof(where), "disks[%u]", idx);
	if (!json_is_object(obj)) {
		return error_set(errp, EINVAL, "%s must be an object", where);
	}
	r = check_keys(obj, keys, where, errp);
	if (r < 0) {
		return r;
	}
	if ((r = get_string(obj, "id", where, 64, &d->id, errp)) < 0 ||
	    (r = get_choice(obj, "driver", where, drivers, &d->driver, errp)) < 0 ||
	    (r = get_string(obj, "file", where, VM_PATH_MAX, &d->file, errp)) < 0 ||
	    (r = get_choice(obj, "format", where, formats, &d->format, errp)) < 0 ||
	    (r = get_string(obj, "node", where, 64, &d->node, errp)) < 0 ||
	    (r = get_bool(obj, "readonly", where, &d->readonly, errp)) < 0 ||
	    (r = get_bool(obj, "removable", where, &d->removable, errp)) < 0 ||
	    (r = get_choice(obj, "cache", where, caches, &d->cache, errp)) < 0 ||
	    (r = get_choice(obj, "aio", where, aios, &d->aio, errp)) < 0 ||
	    (r = get_string(obj, "serial", where, VM_DISK_SERIAL_MAX, &d->serial, errp)) < 0 ||
	    (r = get_choice(obj, "werror", where, policies, &d->werror, errp)) < 0 ||
	    (r = get_choice(obj, "rerror", where, policies, &d->rerror, errp)) < 0 ||
	    (r = get_uint(obj, "queues", where, 0, VM_VCPUS_MAX, &d->queues, errp)) < 0) {
		return r;
	}
	if (!d->id) {
		return error_set(errp, EINVAL, "%s: \"id\" is required", where);
	}
	if (!valid_name(d->id, 64)) {
		return error_set(errp, EINVAL,
				 "%s: \"id\" \"%s\" must be 1 to 64 characters of [A-Za-z0-9_.-]",
				 where, d->id);
	}
	if (d->file && d->node) {
		return error_set(errp, EINVAL, "%s: \"file\" and \"node\" exclude each other",
				 where);
	}
	if (d->node && (json_object_get(obj, "format") || json_object_get(obj, "aio"))) {
		return error_set(errp, EINVAL, "%s: \"%s\" applies to \"file\", not \"node\"",
				 where, json_object_get(obj, "format") ? "format" : "aio");
	}
	if (d->file && d->file[0] == '\0') {
		return error_set(errp, EINVAL, "%s: \"file\" must not be empty", where);
	}
	if (d->node && !valid_name(d->node, 64)) {
		return error_set(errp, EINVAL, "%s: \"node\" \"%s\" is not a valid node name",
				 where, d->node);
	}
	if ((r = set_default(&d->driver, drivers[0], errp)) < 0) {
		return r;
	}
	if (!d->file && !d->node && strcmp(d->driver, "ide-cd") != 0) {
		return error_set(errp, EINVAL, "%s: one of \"file\" or \"node\" is required",
				 where);
	}
	if ((r = set_default(&d->format, "raw", errp)) < 0 ||
	    (r = set_default(&d->cache, "writeback", errp)) < 0 ||
	    (r = set_default(&d->werror, "report", errp)) < 0 ||
	    (r = set_default(&d->rerror, "report", errp)) < 0) {
		return r;
	}
	if (d->aio && strcmp(d->aio, "native") == 0 && strcmp(d->cache, "none") != 0) {
		/* QEMU: "aio=native was specified, but it requires cache.direct=on" */
		return error_set(errp, EINVAL,
				 "%s: \"aio\": \"native\" needs \"cache\": \"none\" (Linux AIO "
				 "waits for the page cache otherwise)",
				 where);
	}
	if (strcmp(d->driver, "ide-cd") == 0) {
		d->readonly = true;
	}
	if (d->removable && strcmp(d->driver, "usb-storage") != 0) {
		return error_set(errp, EINVAL, "%s: \"removable\" applies to \"usb-storage\" only",
				 where);
	}
	return parse_throttle(obj, where, d, errp);
}

static int parse_nic(json_t *obj, unsigned idx, struct vm_nic_config *n, struct error **errp)
{
	static const char *const keys[] = {"id",  "driver",  "backend", "ifname", "fd",
					   "mac", "hostfwd", "rom",	NULL};
	static const char *const backends[] = {"user", "tap", NULL};
	const char *drivers[16];
	char where[32];
	int r;

	device_class_drivers(DEVICE_PER_NIC, drivers, ARRAY_SIZE(drivers));
	snprintf(where, sizeof(where), "nics[%u]", idx);
	if (!json_is_object(obj)) {
		return error_set(errp, EINVAL, "%s must be an object", where);
	}
	r = check_keys(obj, keys, where, errp);
	if (r < 0) {
		return r;
	}
	if ((r = get_string(obj, "id", where, 64, &n->id, errp)) < 0 ||
	    (r = get_choice(obj, "driver", where, drivers, &n->driver, errp)) < 0 ||
	    (r = get_choice(obj, "backend", where, backends, &n->backend, errp)) < 0 ||
	    (r = get_string(obj, "ifname", where, 15, &n->ifname, errp)) < 0 ||
	    (r = get_string(obj, "fd", where, 64, &n->fd, errp)) < 0 ||
	    (r = get_string(obj, "mac", where, 17, &n->mac, errp)) < 0 ||
	    (r = get_string_list(obj, "hostfwd", where, VM_HOSTFWD_MAX, 128, &n->hostfwd, errp)) <
		    0 ||
	    (r = get_string(obj, "rom", where, VM_PATH_MAX, &n->rom, errp)) < 0) {
		return r;
	}
	if (!n->id) {
		return error_set(errp, EINVAL, "%s: \"id\" is required", where);
	}
	if (!valid_name(n->id, 64)) {
		return error_set(errp, EINVAL,
				 "%s: \"id\" \"%s\" must be 1 to 64 characters of [A-Za-z0-9_.-]",
				 where, n->id);
	}
	if ((r = set_default(&n->driver, drivers[0], errp)) < 0 ||
	    (r = set_default(&n->backend, "user", errp)) < 0) {
		return r;
	}
	if (n->mac && !valid_mac(n->mac)) {
		return error_set(
			errp, EINVAL,
			"%s: \"mac\" \"%s\" is not a unicast address like 52:54:00:12:34:56", where,
			n->mac);
	}
	if (strcmp(n->backend, "tap") == 0) {
		if (n->hostfwd) {
			return error_set(errp, EINVAL, "%s: \"hostfwd\" needs backend \"user\"",
					 where);
		}
		if (!!n->ifname == !!n->fd) {
			return error_set(errp, EINVAL,
					 "%s: backend \"tap\" needs exactly one of \"ifname\" or "
					 "\"fd\"",
					 where);
		}
		if (n->ifname && !valid_name(n->ifname, 15)) {
			return error_set(errp, EINVAL,
					 "%s: \"ifname\" \"%s\" is not an interface name", where,
					 n->ifname);
		}
	} else {
		if (n->ifname || n->fd) {
			return error_set(errp, EINVAL,
					 "%s: \"ifname\" and \"fd\" need backend \"tap\"", where);
		}
		for (size_t i = 0; n->hostfwd && n->hostfwd[i]; i++) {
			if (!valid_hostfwd(n->hostfwd[i])) {
				return error_set(errp, EINVAL,
						 "%s: \"hostfwd\"[%zu] \"%s\" is not "
						 "\"tcp|udp:[hostaddr]:port-[guestaddr]:port\"",
						 where, i, n->hostfwd[i]);
			}
		}
	}
	return 0;
}

static int parse_boot(json_t *obj, struct vm_config *cfg, struct error **errp)
{
	static const char *const keys[] = {"kernel",   "initrd", "cmdline",
					   "firmware", "order",	 NULL};
	int r;

	if (!obj) {
		return error_set(errp, EINVAL,
				 "\"boot\" is required, with \"kernel\" or \"firmware\"");
	}
	if (!json_is_object(obj)) {
		return error_set(errp, EINVAL, "\"boot\" must be an object");
	}
	if ((r = check_keys(obj, keys, "boot", errp)) < 0 ||
	    (r = get_string(obj, "kernel", "boot", VM_PATH_MAX, &cfg->boot.kernel, errp)) < 0 ||
	    (r = get_string(obj, "initrd", "boot", VM_PATH_MAX, &cfg->boot.initrd, errp)) < 0 ||
	    (r = get_string(obj, "cmdline", "boot", VM_CMDLINE_MAX, &cfg->boot.cmdline, errp)) <
		    0 ||
	    (r = get_string(obj, "firmware", "boot", VM_PATH_MAX, &cfg->boot.firmware, errp)) < 0 ||
	    (r = get_string_list(obj, "order", "boot", VM_BOOT_ORDER_MAX, 64, &cfg->boot.order,
				 errp)) < 0) {
		return r;
	}
	if (!cfg->boot.kernel == !cfg->boot.firmware) {
		return error_set(errp, EINVAL,
				 "boot: exactly one of \"kernel\" or \"firmware\" is required");
	}
	if (cfg->boot.kernel && !cfg->boot.kernel[0]) {
		return error_set(errp, EINVAL, "boot: \"kernel\" must not be empty");
	}
	if (cfg->boot.firmware && !cfg->boot.firmware[0]) {
		return error_set(errp, EINVAL, "boot: \"firmware\" must not be empty");
	}
	if (!cfg->boot.kernel && (cfg->boot.initrd || cfg->boot.cmdline)) {
		return error_set(errp, EINVAL, "boot: \"initrd\" and \"cmdline\" need \"kernel\"");
	}
	if (cfg->boot.order && !cfg->boot.firmware) {
		return error_set(errp, EINVAL, "boot: \"order\" needs \"firmware\"");
	}
	return 0;
}

static int parse_memory(json_t *v, uint64_t *ret, struct error **errp)
{
	char buf[32], buf2[32];
	uint64_t size;

	if (json_is_integer(v)) {
		if (json_integer_value(v) < 0) {
			return error_set(errp, EINVAL, "\"memory\" must not be negative");
		}
		size = (uint64_t)json_integer_value(v);
	} else if (json_is_string(v)) {
		int r = parse_size(json_string_value(v), &size);

		if (r < 0) {
			return error_set(errp, r,
					 "\"memory\" \"%s\" is not a size (bytes, or with a "
					 "suffix like \"512M\", \"2G\")",
					 json_string_value(v));
		}
	} else {
		return error_set(errp, EINVAL, "\"memory\" must be an integer or a size string");
	}
	if (size < VM_MEMORY_MIN || size > VM_MEMORY_MAX) {
		return error_set(errp, ERANGE, "\"memory\" %" PRIu64 " must be between %s and %s",
				 size, format_size(VM_MEMORY_MIN, buf, sizeof(buf)),
				 format_size(VM_MEMORY_MAX, buf2, sizeof(buf2)));
	}
	if (!IS_ALIGNED(size, 1ull << 20)) {
		return error_set(errp, EINVAL, "\"memory\" %" PRIu64 " must be a multiple of 1M",
				 size);
	}
	*ret = size;
	return 0;
}

static int parse_input(json_t *obj, unsigned idx, struct vm_input_config *in, struct error **errp)
{
	static const char *const keys[] = {"id", "driver", NULL};
	static const char *const drivers[] = {"usb-kbd", "usb-tablet", NULL};
	char where[32];
	int r;

	snprintf(where, sizeof(where), "input[%u]", idx);
	if (!json_is_object(obj)) {
		return error_set(errp, EINVAL, "%s must be an object", where);
	}
	if ((r = check_keys(obj, keys, where, errp)) < 0 ||
	    (r = get_string(obj, "id", where, 64, &in->id, errp)) < 0 ||
	    (r = get_choice(obj, "driver", where, drivers, &in->driver, errp)) < 0) {
		return r;
	}
	if (!in->id || !in->driver) {
		return error_set(errp, EINVAL, "%s: \"id\" and \"driver\" are required", where);
	}
	if (!valid_name(in->id, 64)) {
		return error_set(errp, EINVAL,
				 "%s: \"id\" \"%s\" must be 1 to 64 characters of [A-Za-z0-9_.-]",
				 where, in->id);
	}
	return 0;
}

/* The id of device @i in the order disks, NICs, input devices. */
static const char *device_id(const struct vm_config *cfg, unsigned i)
{
	if (i < cfg->n_disks) {
		return cfg->disks[i].id;
	}
	i -= cfg->n_disks;
	if (i < cfg->n_nics) {
		return cfg->nics[i].id;
	}
	i -= cfg->n_nics;
	if (i < cfg->n_inputs) {
		return cfg->inputs[i].id;
	}
	return cfg->memdevs[i - cfg->n_inputs].id;
}

static int check_unique_ids(const struct vm_config *cfg, struct error **errp)
{
	unsigned n = cfg->n_disks + cfg->n_nics + cfg->n_inputs + cfg->n_memdevs;

	for (unsigned i = 0; i < n; i++) {
		const char *a = device_id(cfg, i);

		for (unsigned j = i + 1; j < n; j++) {
			const char *b = device_id(cfg, j);

			if (strcmp(a, b) == 0) {
				return error_set(errp, EEXIST, "device id \"%s\" is used twice", a);
			}
		}
	}
	return 0;
}

int vm_config_from_json(json_t *def, bool allow_start, struct vm_config **ret, struct error **errp)
{
	static const char *const keys[] = {
		"name",	       "vcpus",	   "memory",  "cpu",	   "boot",	"disks",
		"nics",	       "rng",	   "serial",  "on_reboot", "autostart", "acpi",
		"mem_backend", "debugcon", "start",   "input",	   "balloon",	"incoming",
		"usb",	       "maxcpus",  "pvpanic", "mem_thp",   NULL,
	};
	static const char *const reboot_choices[] = {"reset", "shutdown", NULL};
	static const char *const backends[] = {"anonymous", "memfd", "hugepages", NULL};
	_cleanup_(vm_config_freep) struct vm_config *cfg = NULL;
	json_auto_t *rest = NULL;
	struct error *cpu_err = NULL;
	json_t *v;
	int r;

	if (!json_is_object(def)) {
		return error_set(errp, EINVAL, "the VM definition must be a JSON object");
	}
	/* "maxmem" and "memory_devices" are vm-config-mem.c's */
	if ((r = check_keys(vm_config_memory_keys_removed(def, &rest), keys, "", errp)) < 0) {
		return r;
	}
	if (!allow_start && json_object_get(def, "start")) {
		return error_set(errp, EINVAL, "unknown key \"start\"");
	}
	if ((v = json_object_get(def, "start")) && !json_is_boolean(v)) {
		return error_set(errp, EINVAL, "\"start\" must be true or false");
	}

	cfg = calloc(1, sizeof(*cfg));
	if (!cfg) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	cfg->vcpus = 1;
	cfg->memory = 256ull << 20;
	cfg->acpi = true;
	cfg->mem_thp = true;

	if ((r = get_string(def, "name", "", 64, &cfg->name, errp)) < 0) {
		return r;
	}
	if (!cfg->name) {
		return error_set(errp, EINVAL, "\"name\" is required");
	}
	if (!valid_name(cfg->name, 64)) {
		return error_set(errp, EINVAL,
				 "\"name\" \"%s\" must be 1 to 64 characters of [A-Za-z0-9_.-]",
				 cfg->name);
	}
	if (strcmp(cfg->name, ".") == 0 || strcmp(cfg->name, "..") == 0) {
		return error_set(errp, EINVAL, "\"name\" must not be \".\" or \"..\"");
	}
	if ((r = get_uint(def, "vcpus", "", 1, VM_VCPUS_MAX, &cfg->vcpus, errp)) < 0) {
		return r;
	}
	cfg->maxcpus = cfg->vcpus;
	if ((r = get_uint(def, "maxcpus", "", 1, VM_VCPUS_MAX, &cfg->maxcpus, errp)) < 0) {
		return r;
	}
	if (cfg->maxcpus < cfg->vcpus) {
		return error_set(errp, EINVAL, "\"maxcpus\" %u is less than \"vcpus\" %u",
				 cfg->maxcpus, cfg->vcpus);
	}
	if ((v = json_object_get(def, "memory")) && (r = parse_memory(v, &cfg->memory, errp)) < 0) {
		return r;
	}
	if ((r = get_string(def, "cpu", "", 1024, &cfg->cpu, errp)) < 0 ||
	    (r = set_default(&cfg->cpu, "host", errp)) < 0) {
		return r;
	}
	r = cpuid_model_parse(cfg->cpu, NULL, &cpu_err);
	if (r < 0) {
		error_prefix(&cpu_err, "\"cpu\"");
		error_propagate(errp, cpu_err);
		return r;
	}
	if ((r = parse_boot(json_object_get(def, "boot"), cfg, errp)) < 0) {
		return r;
	}

	if ((v = json_object_get(def, "disks"))) {
		size_t i;
		json_t *item;

		if (!json_is_array(v)) {
			return error_set(errp, EINVAL, "\"disks\" must be an array");
		}
		if (json_array_size(v) > VM_DISKS_MAX) {
			return error_set(errp, E2BIG,
					 "\"disks\" has %zu entries, at most %d allowed",
					 json_array_size(v), VM_DISKS_MAX);
		}
		cfg->disks = calloc(json_array_size(v) + 1, sizeof(*cfg->disks));
		if (!cfg->disks) {
			return error_set(errp, ENOMEM, "out of memory");
		}
		json_array_foreach (v, i, item) {
			cfg->n_disks++;
			if ((r = parse_disk(item, (unsigned)i, &cfg->disks[i], errp)) < 0) {
				return r;
			}
		}
	}
	if ((v = json_object_get(def, "nics"))) {
		size_t i;
		json_t *item;

		if (!json_is_array(v)) {
			return error_set(errp, EINVAL, "\"nics\" must be an array");
		}
		if (json_array_size(v) > VM_NICS_MAX) {
			return error_set(errp, E2BIG,
					 "\"nics\" has %zu entries, at most %d allowed",
					 json_array_size(v), VM_NICS_MAX);
		}
		cfg->nics = calloc(json_array_size(v) + 1, sizeof(*cfg->nics));
		if (!cfg->nics) {
			return error_set(errp, ENOMEM, "out of memory");
		}
		json_array_foreach (v, i, item) {
			cfg->n_nics++;
			if ((r = parse_nic(item, (unsigned)i, &cfg->nics[i], errp)) < 0) {
				return r;
			}
		}
	}
	if ((v = json_object_get(def, "input"))) {
		size_t i;
		json_t *item;

		if (!json_is_array(v)) {
			return error_set(errp, EINVAL, "\"input\" must be an array");
		}
		if (json_array_size(v) > VM_INPUTS_MAX) {
			return error_set(errp, E2BIG,
					 "\"input\" has %zu entries, at most %d allowed",
					 json_array_size(v), VM_INPUTS_MAX);
		}
		cfg->inputs = calloc(json_array_size(v) + 1, sizeof(*cfg->inputs));
		if (!cfg->inputs) {
			return error_set(errp, ENOMEM, "out of memory");
		}
		json_array_foreach (v, i, item) {
			cfg->n_inputs++;
			if ((r = parse_input(item, (unsigned)i, &cfg->inputs[i], errp)) < 0) {
				return r;
			}
		}
	}
	if ((r = vm_config_parse_memory(def, cfg, errp)) < 0 ||
	    (r = check_unique_ids(cfg, errp)) < 0) {
		return r;
	}
	if ((r = get_bool(def, "rng", "", &cfg->rng, errp)) < 0) {
		return r;
	}
	if ((r = get_bool(def, "balloon", "", &cfg->balloon, errp)) < 0) {
		return r;
	}
	if ((r = get_bool(def, "usb", "", &cfg->usb, errp)) < 0) {
		return r;
	}
	if ((v = json_object_get(def, "serial"))) {
		static const char *const serial_keys[] = {"log", NULL};

		if (!json_is_object(v)) {
			return error_set(errp, EINVAL, "\"serial\" must be an object");
		}
		if ((r = check_keys(v, serial_keys, "serial", errp)) < 0 ||
		    (r = get_string(v, "log", "serial", VM_PATH_MAX, &cfg->serial_log, errp)) < 0) {
			return r;
		}
		if (cfg->serial_log && !cfg->serial_log[0]) {
			return error_set(errp, EINVAL, "serial: \"log\" must not be empty");
		}
	}
	if ((r = get_choice(def, "on_reboot", "", reboot_choices, &cfg->on_reboot, errp)) < 0 ||
	    (r = set_default(&cfg->on_reboot, "reset", errp)) < 0 ||
	    (r = get_bool(def, "autostart", "", &cfg->autostart, errp)) < 0 ||
	    (r = get_bool(def, "incoming", "", &cfg->incoming, errp)) < 0 ||
	    (r = get_bool(def, "acpi", "", &cfg->acpi, errp)) < 0 ||
	    (r = get_bool(def, "pvpanic", "", &cfg->pvpanic, errp)) < 0 ||
	    (r = get_choice(def, "mem_backend", "", backends, &cfg->mem_backend, errp)) < 0 ||
	    (r = set_default(&cfg->mem_backend, "anonymous", errp)) < 0 ||
	    (r = get_bool(def, "mem_thp", "", &cfg->mem_thp, errp)) < 0 ||
	    (r = get_string(def, "debugcon", "", VM_PATH_MAX, &cfg->debugcon, errp)) < 0) {
		return r;
	}
	if (cfg->debugcon && !cfg->debugcon[0]) {
		return error_set(errp, EINVAL, "\"debugcon\" must not be empty");
	}
	if (strcmp(cfg->mem_backend, "hugepages") == 0 && !IS_ALIGNED(cfg->memory, 2ull << 20)) {
		return error_set(errp, EINVAL,
				 "\"memory\" %" PRIu64 " must be a multiple of 2M with "
				 "\"mem_backend\" \"hugepages\"",
				 cfg->memory);
	}
	*ret = TAKE_PTR(cfg);
	return 0;
}

static void set_str(json_t *obj, const char *key, const char *value)
{
	if (value) {
		json_object_set_new(obj, key, json_string(value));
	}
}

json_t *vm_config_to_json(const struct vm_config *cfg)
{
	json_t *o = json_object();
	json_t *boot = json_object();
	json_t *disks = json_array();
	json_t *nics = json_array();

	json_object_set_new(o, "name", json_string(cfg->name));
	json_object_set_new(o, "vcpus", json_integer(cfg->vcpus));
	if (cfg->maxcpus > cfg->vcpus) {
		json_object_set_new(o, "maxcpus", json_integer(cfg->maxcpus));
	}
	json_object_set_new(o, "memory", json_integer((json_int_t)cfg->memory));
	json_object_set_new(o, "cpu", json_string(cfg->cpu));
	set_str(boot, "kernel", cfg->boot.kernel);
	set_str(boot, "initrd", cfg->boot.initrd);
	set_str(boot, "cmdline", cfg->boot.cmdline);
	set_str(boot, "firmware", cfg->boot.firmware);
	if (cfg->boot.order) {
		json_object_set_new(boot, "order", string_list_to_json(cfg->boot.order));
	}
	json_object_set_new(o, "boot", boot);
	for (unsigned i = 0; i < cfg->n_disks; i++) {
		const struct vm_disk_config *d = &cfg->disks[i];
		json_t *j = json_object();

		set_str(j, "id", d->id);
		set_str(j, "driver", d->driver);
		set_str(j, "file", d->file);
		if (!d->node) {
			set_str(j, "format", d->format);
		}
		set_str(j, "node", d->node);
		json_object_set_new(j, "readonly", json_boolean(d->readonly));
		if (d->removable) {
			json_object_set_new(j, "removable", json_true());
		}
		set_str(j, "cache", d->cache);
		set_str(j, "aio", d->aio);
		set_str(j, "serial", d->serial);
		set_str(j, "werror", d->werror);
		set_str(j, "rerror", d->rerror);
		json_object_set_new(j, "queues", json_integer(d->queues));
		if (block_throttle_enabled(&d->throttle)) {
			json_object_set_new(j, "throttle", block_throttle_to_json(&d->throttle));
		}
		json_array_append_new(disks, j);
	}
	json_object_set_new(o, "disks", disks);
	for (unsigned i = 0; i < cfg->n_nics; i++) {
		const struct vm_nic_config *n = &cfg->nics[i];
		json_t *j = json_object();

		set_str(j, "id", n->id);
		set_str(j, "driver", n->driver);
		set_str(j, "backend", n->backend);
		set_str(j, "ifname", n->ifname);
		set_str(j, "fd", n->fd);
		set_str(j, "mac", n->mac);
		if (n->hostfwd) {
			json_object_set_new(j, "hostfwd", string_list_to_json(n->hostfwd));
		}
		set_str(j, "rom", n->rom);
		json_array_append_new(nics, j);
	}
	json_object_set_new(o, "nics", nics);
	if (cfg->n_inputs) {
		json_t *inputs = json_array();

		for (unsigned i = 0; i < cfg->n_inputs; i++) {
			json_array_append_new(inputs,
					      json_pack("{s:s, s:s}", "id", cfg->inputs[i].id,
							"driver", cfg->inputs[i].driver));
		}
		json_object_set_new(o, "input", inputs);
	}
	json_object_set_new(o, "rng", json_boolean(cfg->rng));
	json_object_set_new(o, "balloon", json_boolean(cfg->balloon));
	if (cfg->usb) {
		json_object_set_new(o, "usb", json_true());
	}
	if (cfg->serial_log) {
		json_object_set_new(o, "serial", json_pack("{s:s}", "log", cfg->serial_log));
	}
	json_object_set_new(o, "on_reboot", json_string(cfg->on_reboot));
	json_object_set_new(o, "autostart", json_boolean(cfg->autostart));
	if (cfg->incoming) {
		json_object_set_new(o, "incoming", json_true());
	}
	json_object_set_new(o, "acpi", json_boolean(cfg->acpi));
	json_object_set_new(o, "mem_backend", json_string(cfg->mem_backend));
	if (!cfg->mem_thp) {
		/* Only when not the default: older daemons read the definition. */
		json_object_set_new(o, "mem_thp", json_false());
	}
	set_str(o, "debugcon", cfg->debugcon);
	if (cfg->pvpanic) {
		json_object_set_new(o, "pvpanic", json_true());
	}
	vm_config_memory_to_json(cfg, o);
	return o;
}

int vm_config_copy(const struct vm_config *cfg, struct vm_config **ret, struct error **errp)
{
	json_t *j = vm_config_to_json(cfg);
	int r;

	if (!j) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	r = vm_config_from_json(j, false, ret, errp);
	json_decref(j);
	return r;
}

void vm_nic_default_mac(const char *vm_name, const char *nic_id, char buf[18])
{
	/* the derivation of hw/virtio/net.c and hw/pci/e1000.c (FNV-1a of "VM/NIC") */
	uint32_t h = 2166136261u;

	for (const char *s = vm_name; *s; s++) {
		h = (h ^ (uint8_t)*s) * 16777619u;
	}
	h = (h ^ '/') * 16777619u;
	for (const char *s = nic_id; *s; s++) {
		h = (h ^ (uint8_t)*s) * 16777619u;
	}
	snprintf(buf, 18, "52:54:00:%02x:%02x:%02x", (h >> 16) & 0xff, (h >> 8) & 0xff, h & 0xff);
}
