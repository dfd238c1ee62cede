/*
 * QEMU's informational queries: query-name, query-uuid, query-kvm,
 * query-target, query-machines, query-current-machine, query-memdev,
 * query-iothreads, query-chardev and query-cpus-fast (and system_wakeup,
 * which query-current-machine says is not there), answered with QEMU
 * 7.2's shapes for
 * what vmmd has (one 440FX machine type, RAM as one "pc.ram" backend, COM1
 * as "serial0"). req->vm is the struct registry_vm (VM-scoped commands).
 * Control thread only; nothing here waits on a VM.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/util.h"
#include "daemon/qmp.h"
#include "daemon/registry.h"

int qmp_query_name(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct registry_vm *rv = req->vm;

	*ret = json_pack("{s:s}", "name", rv->name);
	return 0;
}

int qmp_query_uuid(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	/* A definition has no UUID: QEMU's answer when -uuid is not given. */
	*ret = json_pack("{s:s}", "UUID", "00000000-0000-0000-0000-000000000000");
	return 0;
}

int qmp_query_kvm(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	/* vmmd runs every VM with KVM, and refuses to start without it. */
	*ret = json_pack("{s:b, s:b}", "enabled", 1, "present", 1);
	return 0;
}

int qmp_query_target(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	*ret = json_pack("{s:s}", "arch", "x86_64");
	return 0;
}

int qmp_query_machines(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	/* The one machine: a 440FX pc, no CPU hotplug, at most 64 vCPUs. */
	*ret = json_pack("[{s:b, s:s, s:b, s:s, s:b, s:i, s:b, s:s, s:s}]", "hotpluggable-cpus", 1,
			 "name", "pc-i440fx-7.2", "numa-mem-supported", 0, "default-cpu-type",
			 "host-x86_64-cpu", "is-default", 1, "cpu-max", 64, "deprecated", 0,
			 "default-ram-id", "pc.ram", "alias", "pc");
	return 0;
}

/*
 * vmmd's ACPI tables offer no sleep state but S5 (off): a guest cannot
 * suspend to RAM, so there is nothing to wake (QEMU's answers for a
 * machine without it, as -M none).
 */
int qmp_query_current_machine(struct monitor_request *req, json_t *args, json_t **ret,
			      struct error **errp)
{
	*ret = json_pack("{s:b}", "wakeup-suspend-support", 0);
	return 0;
}

int qmp_system_wakeup(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	return error_set(errp, ENOTSUP, "wake-up from suspend is not supported by this guest");
}

int qmp_query_memdev(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct registry_vm *rv = req->vm;
	const char *backend = rv->cfg->mem_backend ? rv->cfg->mem_backend : "anonymous";

	/*
	 * Guest RAM is one backend, as QEMU's implicit "pc.ram" for -m; each
	 * memory device's backend follows (QEMU's memory-backend-ram objects).
	 */
	*ret = json_array();
	for (unsigned i = 0; *ret && i <= rv->cfg->n_memdevs; i++) {
		const char *id = i == 0 ? "pc.ram" : rv->cfg->memdevs[i - 1].memdev;
		uint64_t size = i == 0 ? rv->cfg->memory : rv->cfg->memdevs[i - 1].size;

		json_array_append_new(
			*ret, json_pack("{s:b, s:b, s:b, s:[], s:I, s:b, s:b, s:s, s:s}", "share",
					strcmp(backend, "anonymous") != 0, "reserve", 0, "prealloc",
					0, "host-nodes", "size", (json_int_t)size, "merge", 1,
					"dump", 1, "policy", "default", "id", id));
	}
	return *ret ? 0 : error_set(errp, ENOMEM, "out of memory");
}

int qmp_query_iothreads(struct monitor_request *req, json_t *args, json_t **ret,
			struct error **errp)
{
	/*
	 * QEMU lists its -object iothread objects; vmmd has none (each VM's I/O
	 * thread is internal, like QEMU's main loop).
	 */
	*ret = json_array();
	return 0;
}

int qmp_query_chardev(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct registry_vm *rv = req->vm;
	json_t *info = registry_vm_info(rv), *list = json_array();
	const char *qmp = json_string_value(json_object_get(info, "qmp-socket"));
	const char *console = json_string_value(json_object_get(info, "console-socket"));
	char buf[4200];

	if (qmp) {
		snprintf(buf, sizeof(buf), "unix:%s,server=on", qmp);
		json_array_append_new(list, json_pack("{s:b, s:s, s:s}", "frontend-open", 1,
						      "filename", buf, "label", "compat_monitor0"));
	}
	if (console) {
		snprintf(buf, sizeof(buf), "unix:%s,server=on", console);
		json_array_append_new(list, json_pack("{s:b, s:s, s:s}", "frontend-open", 1,
						      "filename", buf, "label", "serial0"));
	}
	json_decref(info);
	*ret = list;
	return 0;
}

int qmp_query_cpus_fast(struct monitor_request *req, json_t *args, json_t **ret,
			struct error **errp)
{
	struct registry_vm *rv = req->vm;

	if (!rv->vm) {
		return error_set_class(errp, ERROR_CLASS_DEVICE_NOT_ACTIVE, ENODEV,
				       "VM '%s' is not running; start it with vm-start", rv->name);
	}
	vm_hotplug_poll(rv->vm); /* vCPUs the guest ejected are gone first */
	*ret = vm_query_cpus_fast(rv->vm);
	return *ret ? 0 : error_set(errp, ENOMEM, "out of memory");
}

int qmp_query_hotpluggable_cpus(struct monitor_request *req, json_t *args, json_t **ret,
				struct error **errp)
{
	struct registry_vm *rv = req->vm;

	if (!rv->vm) {
		return error_set_class(errp, ERROR_CLASS_DEVICE_NOT_ACTIVE, ENODEV,
				       "VM '%s' is not running; start it with vm-start", rv->name);
	}
	*ret = vm_query_hotpluggable_cpus(rv->vm);
	return *ret ? 0 : error_set(errp, ENOMEM, "out of memory");
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *base64_encode(const uint8_t *p, size_t n)
{
	char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;

	for (size_t i = 0; out && i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
			     (i + 2 < n ? p[i + 2] : 0);

		*o++ = b64[v >> 18 & 63];
		*o++ = b64[v >> 12 & 63];
		*o++ = i + 1 < n ? b64[v >> 6 & 63] : '=';
		*o++ = i + 2 < n ? b64[v & 63] : '=';
	}
	if (out) {
		*o = '\0';
	}
	return out;
}

/* Strict base64 (padding required, no whitespace), as QEMU's qbase64_decode. */
static int base64_decode(const char *s, uint8_t **ret, size_t *ret_len)
{
	size_t n = strlen(s), len = 0;
	uint8_t *out;

	if (n % 4) {
		return -EINVAL;
	}
	out = malloc(n / 4 * 3 + 1);
	if (!out) {
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i += 4) {
		uint32_t v = 0;
		int pad = 0;

		for (int k = 0; k < 4; k++) {
			const char *c = strchr(b64, s[i + k]);

			if (s[i + k] == '=' && i + 4 == n && k >= 2) {
				pad++;
				v <<= 6;
				continue;
			}
			if (!s[i + k] || !c || pad) {
				free(out);
				return -EINVAL;
			}
			v = v << 6 | (uint32_t)(c - b64);
		}
		out[len++] = (uint8_t)(v >> 16);
		if (pad < 2) {
			out[len++] = (uint8_t)(v >> 8);
		}
		if (pad < 1) {
			out[len++] = (uint8_t)v;
		}
	}
	*ret = out;
	*ret_len = len;
	return 0;
}

/* The chardev a ringbuf command names: vmmd's COM1 is "serial0". */
static struct vm *ringbuf_vm(struct monitor_request *req, json_t *args, struct error **errp)
{
	struct registry_vm *rv = req->vm;
	const char *dev = json_string_value(json_object_get(args, "device"));

	if (strcmp(dev, "serial0") != 0) {
		error_set(errp, ENODEV, "Device '%s' not found", dev);
		return NULL;
	}
	if (!rv->vm) {
		error_set_class(errp, ERROR_CLASS_DEVICE_NOT_ACTIVE, ENODEV,
				"VM '%s' is not running; start it with vm-start", rv->name);
		return NULL;
	}
	return rv->vm;
}

static bool base64_format(json_t *args, struct error **errp, bool *ret)
{
	const char *f = json_string_value(json_object_get(args, "format"));

	*ret = f && strcmp(f, "base64") == 0;
	if (f && !*ret && strcmp(f, "utf8") != 0) {
		error_set(errp, EINVAL, "Parameter 'format' does not accept value '%s'", f);
		return false;
	}
	return true;
}

int qmp_ringbuf_read(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	json_int_t size = json_integer_value(json_object_get(args, "size"));
	_cleanup_free_ uint8_t *buf = NULL;
	struct vm *vm = ringbuf_vm(req, args, errp);
	bool b64fmt;
	size_t n;

	if (!vm || !base64_format(args, errp, &b64fmt)) {
		return -EINVAL;
	}
	if (size <= 0) {
		return error_set(errp, EINVAL, "size must be greater than zero");
	}
	size = MIN(size, (json_int_t)(1 << 20)); /* more than the ring holds */
	buf = malloc((size_t)size);
	if (!buf || vm_ringbuf_read(vm, buf, (size_t)size, &n) < 0) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	if (b64fmt) {
		char *enc = base64_encode(buf, n);

		*ret = enc ? json_string(enc) : NULL;
		free(enc);
	} else {
		/* QEMU hands the bytes over as they are; JSON needs valid UTF-8 */
		*ret = json_stringn((const char *)buf, n);
		if (!*ret) {
			/* not UTF-8 (or cut inside a character): the non-ASCII bytes become '?' */
			for (size_t i = 0; i < n; i++) {
				buf[i] = buf[i] >= 0x80 ? '?' : buf[i];
			}
			*ret = json_stringn((const char *)buf, n);
		}
	}
	return *ret ? 0 : error_set(errp, ENOMEM, "out of memory");
}

int qmp_ringbuf_write(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	json_t *data = json_object_get(args, "data");
	struct vm *vm = ringbuf_vm(req, args, errp);
	bool b64fmt;
	int r;

	if (!vm || !base64_format(args, errp, &b64fmt)) {
		return -EINVAL;
	}
	if (b64fmt) {
		_cleanup_free_ uint8_t *bytes = NULL;
		size_t n;

		r = base64_decode(json_string_value(data), &bytes, &n);
		if (r < 0) {
			return error_set(errp, -r, "Invalid Base64 data");
		}
		r = vm_ringbuf_write(vm, bytes, n);
	} else {
		r = vm_ringbuf_write(vm, (const uint8_t *)json_string_value(data),
				     json_string_length(data));
	}
	return r < 0 ? error_set(errp, -r, "Device 'serial0' not found") : 0;
}

int qmp_query_pci(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct registry_vm *rv = req->vm;

	if (!rv->vm) {
		return error_set_class(errp, ERROR_CLASS_DEVICE_NOT_ACTIVE, ENODEV,
				       "VM '%s' is not running; start it with vm-start", rv->name);
	}
	*ret = vm_query_pci(rv->vm);
	return *ret ? 0 : error_set(errp, ENOMEM, "out of memory");
}
