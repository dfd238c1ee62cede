/*
 * vCPU hotplug (hw/cpu-hotplug.c) with QEMU's command shapes: device_add
 * and device_del of a CPU ("<model>-x86_64-cpu" with socket-id, core-id,
 * thread-id and id), query-hotpluggable-cpus, DEVICE_DELETED after the
 * guest's eject, ACPI_DEVICE_OST and DEVICE_UNPLUG_GUEST_ERROR from its
 * _OST reports. The guest is told through QEMU's ACPI CPU hotplug
 * registers (hw/platform/acpi-cpuhp.c); hw/hotplug.c routes the generic
 * commands here.
 *
 * Threads: control thread under vm_devices_lock(), except the register
 * callbacks (vCPU threads), which only record and poke the control thread.
 */
#pragma once

#include <stdbool.h>

#include <jansson.h>

#include "common/error.h"

struct vm;
struct cpu_hotplug;

/* NULL (and no error) when the VM has no CPU hotplug (maxcpus == vcpus or no ACPI). */
int cpu_hotplug_new(struct vm *vm, struct cpu_hotplug **ret, struct error **errp);
void cpu_hotplug_free(struct cpu_hotplug *c);
/* Whether @driver names a CPU type ("...-x86_64-cpu"); works with @c NULL. */
bool cpu_hotplug_is_cpu_driver(const char *driver);
/* Whether @id is taken by a vCPU (plugged, or with a removal pending). */
bool cpu_hotplug_has_id(struct cpu_hotplug *c, const char *id);
/* device_add / device_del of a CPU; the caller checked @id against the other devices. */
int cpu_hotplug_add(struct vm *vm, struct cpu_hotplug *c, json_t *args, struct error **errp);
int cpu_hotplug_del(struct vm *vm, struct cpu_hotplug *c, const char *id, struct error **errp);
/* Finish the ejects the guest made: stop the vCPUs, emit DEVICE_DELETED (lock not held). */
void cpu_hotplug_poll(struct vm *vm, struct cpu_hotplug *c);
/* After a restore plugged vCPUs again: their ids from their qom-paths. */
int cpu_hotplug_adopt(struct vm *vm, struct cpu_hotplug *c, struct error **errp);
/* QEMU's HotpluggableCPU list, highest vCPU first; works with @c NULL (cold vCPUs only). */
json_t *cpu_hotplug_query(struct vm *vm, struct cpu_hotplug *c);
