/*
 * Events and the greeting: timestamps, the "vm" selector, fan-out to every
 * negotiated client concerned. Control thread only (VM threads reach here
 * through the registry's queue).
 */
#include "config.h"

#include <string.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "monitor/monitor-int.h"

void monitor_default_version(struct monitor_version *v)
{
	v->major = MONITOR_DEFAULT_QEMU_MAJOR;
	v->minor = MONITOR_DEFAULT_QEMU_MINOR;
	v->micro = MONITOR_DEFAULT_QEMU_MICRO;
	snprintf(v->package, sizeof(v->package), "vmmd-%s", PACKAGE_VERSION);
}

void monitor_set_version(struct monitor *mon, const struct monitor_version *v)
{
	mon->version = *v;
}

json_t *monitor_version_info(struct monitor *mon)
{
	const struct monitor_version *v = &mon->version;

	return json_pack("{s:{s:i, s:i, s:i}, s:s}", "qemu", "micro", v->micro, "minor", v->minor,
			 "major", v->major, "package", v->package);
}

json_t *monitor_greeting(struct monitor *mon)
{
	const struct monitor_version *v = &mon->version;

	return json_pack("{s:{s:{s:{s:i, s:i, s:i}, s:s}, s:[]}}", "QMP", "version", "qemu",
			 "micro", v->micro, "minor", v->minor, "major", v->major, "package",
			 v->package, "capabilities");
}

void monitor_emit_event(struct monitor *mon, const char *vm, const char *name, json_t *data)
{
	json_auto_t *ev = NULL, *ev_vm = NULL;
	_cleanup_free_ char *text = NULL, *text_vm = NULL;
	json_t *ts = monitor_timestamp();
	struct list_head *p;

	if (!data) {
		data = json_object();
	}
	if (!data || !json_is_object(data) || !ts) {
		json_decref(data);
		json_decref(ts);
		return;
	}
	/* a VM's own socket: QEMU's shape, {"timestamp", "event"[, "data"]} */
	ev_vm = json_pack("{s:O, s:s}", "timestamp", ts, "event", name);
	if (ev_vm && json_object_size(data) > 0) {
		json_object_set_new(ev_vm, "data", json_deep_copy(data));
	}
	if (vm) {
		json_object_set_new(data, "vm", json_string(vm));
	}
	ev = json_pack("{s:s, s:o, s:o}", "event", name, "data", data, "timestamp", ts);
	if (!ev || !ev_vm) {
		return;
	}
	/* Dumped once for all the clients of each shape. */
	text = monitor_dump(ev);
	text_vm = monitor_dump(ev_vm);
	if (!text || !text_vm) {
		return;
	}
	list_for_each (p, &mon->clients) {
		struct monitor_client *c = list_entry(p, struct monitor_client, link);

		if (!c->negotiated || c->dead || c->closing) {
			continue;
		}
		if (c->vm && (!vm || strcmp(c->vm, vm) != 0)) {
			continue;
		}
		monitor_client_send_text(c, c->vm ? text_vm : text, false);
	}
}
