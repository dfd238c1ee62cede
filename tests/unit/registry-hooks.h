/*
 * The registry's hooks wired to the monitor as the daemon's main wires them
 * (events, a per-VM socket at <run_dir>/vms/<vm>.qmp, getfd names), for the
 * programs that run the registry and the monitor without main:
 * test-monitor-dispatch and the qmp fuzz target. The includer sets mon and
 * run_dir before VMs start.
 */
#pragma once

#include <stdio.h>

#include "daemon/registry.h"
#include "monitor/monitor.h"

static struct monitor *mon;
static char run_dir[128];

static void hook_event(void *o, const char *vm, const char *name, json_t *data)
{
	monitor_emit_event(mon, vm, name, data);
}

static int hook_vm_up(void *o, const char *vm, int fd, struct error **errp)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/vms/%s.qmp", run_dir, vm);
	if (fd >= 0) {
		return monitor_listen_bound(mon, fd, path, vm, errp);
	}
	return monitor_listen_path(mon, path, 0600, (gid_t)-1, vm, errp);
}

static int hook_vm_bind(void *o, const char *vm, mode_t mode, gid_t gid, struct error **errp)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/vms/%s.qmp", run_dir, vm);
	return monitor_bind_path(path, mode, gid, errp);
}

static void hook_vm_down(void *o, const char *vm)
{
	monitor_vm_gone(mon, vm);
}

static int hook_get_fd(void *o, const char *name)
{
	return monitor_get_fd(mon, name);
}

static const struct registry_hooks hooks = {
	.event = hook_event,
	.vm_up = hook_vm_up,
	.vm_bind = hook_vm_bind,
	.vm_down = hook_vm_down,
	.get_fd = hook_get_fd,
};
