/*
 * What device models see of their VM (hw/ internal). Devices are created in
 * vm_new() from a static, ordered table of device classes (hw/devices.c);
 * each device model is one file exporting one const struct device_class.
 *
 * Threads: realize/unrealize run on the thread calling vm_new/vm_destroy
 * (the control thread) with the vCPUs stopped; reset runs with the vCPUs
 * paused. Requests (reset, shutdown) may be raised from any VM thread.
 */
#pragma once

#include <stdint.h>

#include <jansson.h>

#include "common/error.h"
#include "vmmd/vm.h"

struct iobus;
struct guest_mem;
struct event_base;

struct device_class {
	const char *name;
	/*
	 * Create the device on @vm. @cfg is class-specific (a struct
	 * vm_disk_config for disks, ...; NULL for singletons). On success
	 * *ret_state is what the other ops receive. On failure nothing is left
	 * registered.
	 */
	int (*realize)(struct vm *vm, const void *cfg, void **ret_state, struct error **errp);
	/* Undo realize. Called with the vCPUs stopped. */
	void (*unrealize)(void *state);
	/* Return to power-on state (system_reset). May be NULL. */
	void (*reset)(void *state);
	/*
	 * Optional (disks): this device's entry for query-block /
	 * query-blockstats, a new reference; NULL to contribute nothing.
	 */
	json_t *(*query_block)(void *state);
	json_t *(*query_blockstats)(void *state);
};

struct iobus *vm_iobus(struct vm *vm);
struct guest_mem *vm_guest_mem(struct vm *vm);
const struct vm_config *vm_get_config(struct vm *vm);
const struct vm_host *vm_get_host(struct vm *vm);
/* The VM's I/O thread event loop (backends and virtqueues run there). */
struct event_base *vm_io_base(struct vm *vm);

/*
 * Map @len bytes at @host (page-aligned, kept by the caller until
 * vm_unmap_rom) at guest address @gpa as read-only memory: reads and
 * instruction fetches see @host, guest writes are dropped. For firmware
 * images (hw/platform/firmware.c). Control thread, before the vCPUs run.
 */
int vm_map_rom(struct vm *vm, uint64_t gpa, void *host, uint64_t len, struct error **errp);
void vm_unmap_rom(struct vm *vm, uint64_t gpa);

/*
 * The realized state of the first device of class @cls on @vm (for
 * singletons other devices depend on, e.g. the PCI host); NULL if none.
 * Valid between that device's realize and unrealize.
 */
void *vm_device_state(struct vm *vm, const struct device_class *cls);

/* Ask for a reset / shutdown / failure; processed asynchronously. Any VM thread. */
enum vm_shutdown_cause {
	VM_CAUSE_GUEST_RESET,	 /* i8042 pulse, 0xCF9, ACPI reset */
	VM_CAUSE_GUEST_SHUTDOWN, /* ACPI S5 */
	VM_CAUSE_GUEST_PANIC,	 /* pvpanic */
	VM_CAUSE_TRIPLE_FAULT,	 /* KVM_EXIT_SHUTDOWN */
	VM_CAUSE_HOST_ERROR,	 /* emulation failure, backend error: internal-error */
	VM_CAUSE_IO_ERROR,	 /* werror/rerror=stop: io-error */
};
void vm_request(struct vm *vm, enum vm_shutdown_cause cause);

/* Emit a QMP event for this VM (takes @data, may be NULL). Any VM thread. */
void vm_emit_event(struct vm *vm, const char *name, json_t *data);

/*
 * The ACPI power button (vm_powerdown) and the live console socket
 * (vm_console_socket), provided by the devices that implement them; set in
 * realize, cleared (fn/path NULL) in unrealize. The path is copied.
 */
void vm_set_powerdown_handler(struct vm *vm, int (*fn)(void *opaque), void *opaque);
void vm_set_console_socket(struct vm *vm, const char *path);

/*
 * The VM's PCI host bridge (hw/pci/pci-host.c sets it in realize, clears it in
 * unrealize); NULL when the VM has none. PCI devices find it through
 * pci_host_of().
 */
struct pci_host;
void vm_set_pci_host(struct vm *vm, struct pci_host *host);
struct pci_host *vm_pci_host(struct vm *vm);
