/*
 * The VM's table of realized devices, opened to the hotplug code
 * (hw/hotplug.c) without the rest of struct vm: entries carry an id for
 * disks and NICs and what hotplug tracks about them. Changing the table
 * (reserve/commit, remove) needs vm_devices_lock() (the VM's ctl_lock,
 * which also serializes guest resets on the I/O thread) and the vCPUs
 * quiesced.
 *
 * Threads: control thread.
 */
#pragma once

#include <stdbool.h>

#include <jansson.h>

struct vm;
struct device_class;
struct hotplug;
struct error;

struct vm_device {
	const struct device_class *cls;
	void *state;
	/* Hotplug (hw/hotplug.c): disks and NICs have an id. */
	char *id;
	bool hotplugged;     /* added by device_add */
	bool unplug_pending; /* device_del asked the guest; the id stays taken */
	bool draining;	     /* ejected; its drain runs on a worker (hw/hotplug.c) */
	char *node;	     /* blockdev-add node it uses (device_add "drive"), or NULL */
	char *netdev;	     /* netdev_add backend it uses (device_add "netdev"), or NULL */
	json_t *definition;  /* VM definition entry of a hot-added device */
};

/* Room in the table for hot-added devices beyond the configured ones. */
#define VM_MAX_HOTPLUG_DEVICES 31

void vm_devices_lock(struct vm *vm);
void vm_devices_unlock(struct vm *vm);
unsigned vm_devices_count(struct vm *vm);
struct vm_device *vm_devices_at(struct vm *vm, unsigned i);
/* The zeroed entry past the last, to fill and realize; NULL when the table is full. */
struct vm_device *vm_devices_reserve(struct vm *vm);
/* The reserved entry becomes part of the table. */
void vm_devices_commit(struct vm *vm);
/* Drop entry @i (already unrealized and forgotten); later entries move down. */
void vm_devices_remove(struct vm *vm, unsigned i);
/* Park the vCPUs if they run; returns whether vm_unquiesce() must release them. */
bool vm_quiesce(struct vm *vm);
void vm_unquiesce(struct vm *vm, bool resume);
/*
 * vCPU hotplug (hw/cpu-hotplug.c), with vm_devices_lock() held. @index is
 * the vCPU's APIC ID, below maxcpus. vm_vcpu_plug creates the vCPU, or
 * reuses the one parked by an earlier unplug, resets it to wait-for-SIPI
 * and starts its thread if the VM has started; @qom_path (may be NULL) is
 * what query-cpus-fast reports. vm_vcpu_unplug stops and joins the thread
 * and keeps the fd (KVM cannot destroy a vCPU); vCPU 0 stays.
 */
int vm_vcpu_plug(struct vm *vm, unsigned index, const char *qom_path, struct error **errp);
void vm_vcpu_unplug(struct vm *vm, unsigned index);
bool vm_vcpu_present(struct vm *vm, unsigned index);
/* The qom-path vm_vcpu_plug was given for a present vCPU, else NULL. */
const char *vm_vcpu_qom_path(struct vm *vm, unsigned index);
/* The hotplug state hw/hotplug.c created for this VM (hotplug_new). */
struct hotplug *vm_hotplug_state(struct vm *vm);
