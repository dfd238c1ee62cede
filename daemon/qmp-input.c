/*
 * send-key, input-send-event and x-query-usb, with QEMU 7.2's argument shapes and error
 * messages (tests/functional/golden/qmp-input.json records QEMU's). The
 * schema checks the top-level arguments; the KeyValue and InputEvent
 * unions inside the arrays are checked here, member by member in QEMU's
 * visiting order, before any event is sent.
 *
 * Differences from QEMU: there are no display consoles, so "device" names
 * the input device itself (an "input" id of the VM definition) and "head"
 * is accepted and ignored; events reach USB HID devices only (the PS/2
 * keyboard is not fed), and a command whose events no device takes fails
 * with QEMU's "Input handler not found for event type ..." — send-key too.
 *
 * Threads: control thread; the events are queued in the devices.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "daemon/qmp.h"
#include "daemon/registry.h"

#define SEND_KEY_MAX 64	     /* keys in one send-key: presses and releases fit one batch */
#define HOLD_TIME_DEFAULT 10 /* ms: QEMU 7.2's kbd_default_delay_ms */
#define HOLD_TIME_MAX 60000

static const char *const key_types[] = {"number", "qcode", NULL};
static const char *const event_types[] = {"key", "btn", "rel", "abs", NULL};
static const char *const buttons[] = {"left", "middle", "right",      "wheel-up",    "wheel-down",
				      "side", "extra",	"wheel-left", "wheel-right", NULL};
static const char *const axes[] = {"x", "y", NULL};

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

static const char *type_name(int t)
{
	switch (t) {
	case JSON_OBJECT:
		return "object";
	case JSON_STRING:
		return "string";
	case JSON_INTEGER:
		return "integer";
	case JSON_TRUE:
	case JSON_FALSE:
		return "boolean";
	default:
		return "value";
	}
}

static bool is_type(json_t *v, int t)
{
	if (t == JSON_TRUE) {
		return json_is_boolean(v);
	}
	return json_typeof(v) == (json_type)t;
}

/* Member @name of object @obj at @path: missing (if required) or of the wrong type fail. */
static int member(json_t *obj, const char *path, const char *name, int type, bool required,
		  json_t **ret, struct error **errp)
{
	json_t *v = json_object_get(obj, name);

	*ret = v;
	if (!v) {
		return required
			       ? error_set(errp, EINVAL, "Parameter '%s.%s' is missing", path, name)
			       : 0;
	}
	if (!is_type(v, type)) {
		return error_set(errp, EINVAL, "Invalid parameter type for '%s.%s', expected: %s",
				 path, name, type_name(type));
	}
	return 0;
}

/* An enum value: QEMU names the bare member in this message. */
static int enum_value(json_t *v, const char *name, const char *const *values, int *ret,
		      struct error **errp)
{
	const char *s = json_string_value(v);

	for (int i = 0; values[i]; i++) {
		if (strcmp(values[i], s) == 0) {
			*ret = i;
			return 0;
		}
	}
	return error_set(errp, EINVAL, "Parameter '%s' does not accept value '%s'", name, s);
}

/* Members of @obj other than @known are errors (QEMU checks them last). */
static int no_extra(json_t *obj, const char *path, const char *const *known, struct error **errp)
{
	const char *key;
	json_t *v;

	json_object_foreach (obj, key, v) {
		bool ok = false;

		for (unsigned i = 0; known[i]; i++) {
			ok |= strcmp(known[i], key) == 0;
		}
		if (!ok) {
			return error_set(errp, EINVAL, "Parameter '%s.%s' is unexpected", path,
					 key);
		}
	}
	return 0;
}

static int object_at(json_t *v, const char *path, struct error **errp)
{
	return json_is_object(v)
		       ? 0
		       : error_set(errp, EINVAL,
				   "Invalid parameter type for '%s', expected: object", path);
}

/* A KeyValue {"type": "qcode"|"number", "data": ...} as a QKeyCode index. */
static int key_value(json_t *kv, const char *path, int *ret_qcode, struct error **errp)
{
	static const char *const known[] = {"type", "data", NULL};
	json_t *type, *data;
	int t, r;

	if ((r = object_at(kv, path, errp)) < 0 ||
	    (r = member(kv, path, "type", JSON_STRING, true, &type, errp)) < 0 ||
	    (r = enum_value(type, "type", key_types, &t, errp)) < 0 ||
	    (r = member(kv, path, "data", t == 0 ? JSON_INTEGER : JSON_STRING, true, &data, errp)) <
		    0) {
		return r;
	}
	if (t == 0) {
		*ret_qcode = vm_input_qcode_from_number(json_integer_value(data));
	} else {
		*ret_qcode = vm_input_qcode(json_string_value(data));
		if (*ret_qcode < 0) {
			return error_set(errp, EINVAL,
					 "Parameter 'data' does not accept value '%s'",
					 json_string_value(data));
		}
	}
	return no_extra(kv, path, known, errp);
}

int qmp_send_key(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	json_t *keys = json_object_get(args, "keys"), *hold = json_object_get(args, "hold-time");
	struct vm_input_event ev[2 * SEND_KEY_MAX];
	int64_t hold_ms = hold ? json_integer_value(hold) : 0;
	size_t n = json_array_size(keys);
	struct vm *vm;
	int r;

	(void)ret;
	if (n > SEND_KEY_MAX) {
		return error_set(errp, E2BIG, "send-key takes at most %d keys", SEND_KEY_MAX);
	}
	if (hold_ms <= 0) {
		hold_ms = HOLD_TIME_DEFAULT;
	}
	hold_ms = MIN(hold_ms, (int64_t)HOLD_TIME_MAX);
	for (size_t i = 0; i < n; i++) {
		char path[32];
		int q;

		snprintf(path, sizeof(path), "keys[%zu]", i);
		r = key_value(json_array_get(keys, i), path, &q, errp);
		if (r < 0) {
			return r;
		}
		/*
		 * As QEMU 7.2's qmp_send_key: the presses in order, then the
		 * releases in reverse order, each event hold-time after the one
		 * before it.
		 */
		ev[i] = (struct vm_input_event){.type = VM_INPUT_KEY,
						.code = q,
						.down = true,
						.delay_ms = (uint32_t)(i * hold_ms)};
		ev[2 * n - 1 - i] =
			(struct vm_input_event){.type = VM_INPUT_KEY,
						.code = q,
						.down = false,
						.delay_ms = (uint32_t)((2 * n - 1 - i) * hold_ms)};
	}
	vm = live_vm(req, errp);
	if (!vm) {
		return -ENODEV;
	}
	if (n == 0) {
		return 0;
	}
	return vm_input_send(vm, NULL, ev, (unsigned)(2 * n), errp);
}

/* One InputEvent of input-send-event. */
static int input_event(json_t *e, const char *path, struct vm_input_event *ret, struct error **errp)
{
	static const char *const known[] = {"type", "data", NULL};
	static const char *const key_known[] = {"key", "down", NULL};
	static const char *const btn_known[] = {"button", "down", NULL};
	static const char *const move_known[] = {"axis", "value", NULL};
	char dpath[64], kpath[80];
	json_t *type, *data, *v, *down;
	int t, r;

	memset(ret, 0, sizeof(*ret));
	if ((r = object_at(e, path, errp)) < 0 ||
	    (r = member(e, path, "type", JSON_STRING, true, &type, errp)) < 0 ||
	    (r = enum_value(type, "type", event_types, &t, errp)) < 0 ||
	    (r = member(e, path, "data", JSON_OBJECT, true, &data, errp)) < 0) {
		return r;
	}
	snprintf(dpath, sizeof(dpath), "%s.data", path);
	ret->type = (enum vm_input_type)t;
	switch (ret->type) {
	case VM_INPUT_KEY:
		snprintf(kpath, sizeof(kpath), "%s.key", dpath);
		if ((r = member(data, dpath, "key", JSON_OBJECT, true, &v, errp)) < 0 ||
		    (r = key_value(v, kpath, &ret->code, errp)) < 0 ||
		    (r = member(data, dpath, "down", JSON_TRUE, true, &down, errp)) < 0 ||
		    (r = no_extra(data, dpath, key_known, errp)) < 0) {
			return r;
		}
		ret->down = json_is_true(down);
		break;
	case VM_INPUT_BTN:
		if ((r = member(data, dpath, "button", JSON_STRING, true, &v, errp)) < 0 ||
		    (r = enum_value(v, "button", buttons, &ret->code, errp)) < 0 ||
		    (r = member(data, dpath, "down", JSON_TRUE, true, &down, errp)) < 0 ||
		    (r = no_extra(data, dpath, btn_known, errp)) < 0) {
			return r;
		}
		ret->down = json_is_true(down);
		break;
	default:
		if ((r = member(data, dpath, "axis", JSON_STRING, true, &v, errp)) < 0 ||
		    (r = enum_value(v, "axis", axes, &ret->code, errp)) < 0 ||
		    (r = member(data, dpath, "value", JSON_INTEGER, true, &v, errp)) < 0 ||
		    (r = no_extra(data, dpath, move_known, errp)) < 0) {
			return r;
		}
		ret->value = json_integer_value(v);
		break;
	}
	return no_extra(e, path, known, errp);
}

int qmp_input_send_event(struct monitor_request *req, json_t *args, json_t **ret,
			 struct error **errp)
{
	json_t *events = json_object_get(args, "events");
	json_t *device = json_object_get(args, "device");
	struct vm_input_event ev[VM_INPUT_MAX_EVENTS];
	size_t n = json_array_size(events);
	struct vm *vm;
	int r;

	(void)ret;
	if (n > VM_INPUT_MAX_EVENTS) {
		return error_set(errp, E2BIG, "input-send-event takes at most %d events",
				 VM_INPUT_MAX_EVENTS);
	}
	for (size_t i = 0; i < n; i++) {
		char path[32];

		snprintf(path, sizeof(path), "events[%zu]", i);
		r = input_event(json_array_get(events, i), path, &ev[i], errp);
		if (r < 0) {
			return r;
		}
	}
	vm = live_vm(req, errp);
	if (!vm) {
		return -ENODEV;
	}
	if (vm_get_state(vm) != VM_STATE_RUNNING) {
		return error_set(errp, EAGAIN, "VM not running");
	}
	return vm_input_send(vm, device ? json_string_value(device) : NULL, ev, (unsigned)n, errp);
}

int qmp_x_query_usb(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct vm *vm = live_vm(req, errp);
	char *text = NULL;
	int r;

	(void)args;
	if (!vm) {
		return -ENODEV;
	}
	r = vm_query_usb(vm, &text, errp);
	if (r < 0) {
		return r;
	}
	*ret = json_pack("{s:s}", "human-readable-text", text);
	free(text);
	return *ret ? 0 : error_set(errp, ENOMEM, "out of memory");
}
