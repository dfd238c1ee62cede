/*
 * Events and the greeting: timestamps, the "vm" selector, fan-out to every
 * negotiated client concerned. Control thread only (VM threads reach here
 * through the registry's queue).
 */
#include "config.h"

#include <string.h>

#include "common/log.h"
#include "monitor/monitor-int.h"

json_t *monitor_greeting(void)
{
	unsigned major = 0, minor = 0, micro = 0;

	sscanf(PACKAGE_VERSION, "%u.%u.%u", &major, &minor, &micro);
	return json_pack("{s:{s:{s:{s:i, s:i, s:i}, s:s}, s:[]}}", "QMP", "version", "qemu",
			 "major", major, "minor", minor, "micro", micro, "package",
			 "vmmd-" PACKAGE_VERSION, "capabilities");
}

void monitor_emit_event(struct monitor *mon, const char *vm, const char *name, json_t *data)
{
	json_auto_t *ev = NULL;
	struct list_head *p;

	if (!data) {
		data = json_object();
	}
	if (!data || !json_is_object(data)) {
		json_decref(data);
		return;
	}
	if (vm) {
		json_object_set_new(data, "vm", json_string(vm));
	}
	ev = json_pack("{s:s, s:o, s:o}", "event", name, "data", data, "timestamp",
		       monitor_timestamp());
	if (!ev) {
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
		monitor_client_send(c, ev);
	}
}
