/*
 * The device contract: everything a device model sees of its machine.
 * A device model is one file exporting one const struct device_class
 * (declared in hw/devices.h, listed once in the table in hw/devices.c);
 * vm_new() realizes the table in order, vm_destroy() unrealizes it in
 * reverse. Below the class is the complete list of machine services a
 * device may call, implemented by hw/core/ (and by the fake machine of
 * the device unit tests). A device includes this header, its own group's
 * headers (hw/pci/pci.h, hw/virtio/virtio.h, ...) and backends
 * (include/vmmd/, net/); never hw/core/vm-int.h.
 *
 * Threads: realize/unrealize run on the thread calling vm_new/vm_destroy
 * (the control thread) with the vCPUs stopped; reset runs with the vCPUs
 * paused. Each service below says which threads may call it.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/error.h"
#include "vmmd/block.h"
#include "vmmd/vm.h"

struct iobus;
struct guest_mem;
struct event_base;
struct vmstate_buf;

struct block_node;

/* A removable drive's tray (device_class.tray). */
struct vm_tray {
	bool open, locked;
	struct block_node *bs; /* the medium in the tray, borrowed; NULL: none */
};

/* For for_each_disk: one disk's id and top node. */
typedef void vm_disk_fn(void *opaque, const char *id, struct block_node *bs);

/* ---- The device class ---- */

/* How many instances a class has on one VM, and what realize's @item is. */
enum device_instances {
	DEVICE_ONCE,	       /* at most one; @item NULL */
	DEVICE_PER_DISK,       /* one per disk it serves; @item: const struct vm_disk_config * */
	DEVICE_PER_NIC,	       /* one per NIC it serves; @item: const struct vm_nic_config * */
	DEVICE_ONCE_FOR_DISKS, /* one for all the disks it serves (a controller); @item NULL */
	DEVICE_PER_MEMDEV, /* one per "memory_devices" entry; @item: const struct vm_memdev_config * */
};

struct device_class {
	const char *name;
	enum device_instances each;
	/*
	 * For a class serving disks or NICs: the "driver" values of the VM
	 * definition it answers to (NULL-terminated); NULL means just @name.
	 * The first disk/NIC class in the table is the default driver. These
	 * lists are the only place driver names are spelled (vm-config.c asks
	 * device_class_drivers()).
	 */
	const char *const *drivers;
	/*
	 * Whether this VM gets the instance (@item as for realize). NULL: a
	 * DEVICE_ONCE class always; a per-disk/per-NIC class when the item's
	 * driver is one of @drivers; DEVICE_ONCE_FOR_DISKS when some disk's is.
	 */
	bool (*wanted)(const struct vm_config *cfg, const void *item);
	/*
	 * Create the device on @vm. @item is the disk or NIC (see enum
	 * device_instances). On success *ret_state is what the other ops
	 * receive. On failure nothing is left registered.
	 */
	int (*realize)(struct vm *vm, const void *item, void **ret_state, struct error **errp);
	/* Undo realize. Called with the vCPUs stopped. */
	void (*unrealize)(void *state);
	/*
	 * Optional, for hot-unplug (hw/hotplug.c): stop taking new requests
	 * and wait, bounded, until those in flight have completed, so that
	 * unrealize afterwards is quick. Runs on a worker thread with the VM
	 * running, before unrealize; returns false if it gave up waiting.
	 */
	bool (*drain)(void *state);
	/* Return to power-on state (system_reset). May be NULL. */
	void (*reset)(void *state);
	/*
	 * Optional (disks): this device's entry for query-block /
	 * query-blockstats, a new reference (an array: one entry per drive
	 * of a controller); NULL to contribute nothing.
	 */
	json_t *(*query_block)(void *state);
	json_t *(*query_blockstats)(void *state);

	/*
	 * Optional: QEMU's QOM properties of the device, for qom-get/qom-set
	 * on "/machine/peripheral/<id>" (the id of the VM definition, or
	 * @qom_id for a DEVICE_ONCE device). get: a new reference, or NULL
	 * with *errp set (QEMU's message); set: 0 or -errno with QEMU's
	 * message. Control thread; the device takes its own lock.
	 */
	const char *qom_id;
	json_t *(*qom_get)(void *state, const char *property, struct error **errp);
	int (*qom_set)(void *state, const char *property, json_t *value, struct error **errp);
	/*
	 * Optional (memory devices): QEMU's MemoryDeviceInfo for
	 * query-memory-devices (new reference) and the bytes plugged, for
	 * query-memory-size-summary. Control thread.
	 */
	json_t *(*query_memory)(void *state);
	uint64_t (*plugged_memory)(void *state);

	/* Optional (a PCI host): QEMU's PciInfo of its bus for query-pci; new reference. */
	json_t *(*query_pci)(void *state);
	/*
	 * Optional (disks): call @fn with the id and top block node of each of
	 * this device's disks (the node is borrowed and stays valid, as the
	 * same pointer, while the device exists: snapshots and block jobs
	 * change what it holds, never the pointer). Control thread.
	 */
	void (*for_each_disk)(void *state, vm_disk_fn *fn, void *opaque);
	/*
	 * Save/restore (docs/vmstate.md). A device either has no
	 * guest-visible state of its own (stateless: what it shows the guest
	 * is rebuilt from the configuration or lives in guest RAM) or
	 * implements save and load; a VM with a device that does neither
	 * cannot be saved. state_version is written with each section.
	 *
	 * save: write the device's state into @out. Called on a worker
	 * thread with the vCPUs parked and the VM's I/O thread held, after
	 * busy() returned 0; takes the device's own locks.
	 *
	 * load: restore what save wrote (with version @version: refuse
	 * versions it does not know) into a device just realized and reset
	 * from the same configuration, before any vCPU runs; the I/O thread
	 * runs. Parse and check everything before changing anything.
	 *
	 * busy: requests in flight that a save must wait for (they complete
	 * on the I/O thread). NULL: never busy. Any thread.
	 *
	 * set_active: live migration's hand-over of the device's images
	 * (block_set_active): false = flush and release them for the
	 * destination, true = take them back after a failed hand-over. On a
	 * worker thread with the vCPUs parked and the I/O thread held. NULL:
	 * the device has no image.
	 */
	bool stateless;
	unsigned state_version;
	int (*save)(void *state, struct vmstate_buf *out, struct error **errp);
	int (*load)(void *state, struct vmstate_buf *in, unsigned version, struct error **errp);
	unsigned (*busy)(void *state);
	int (*set_active)(void *state, bool active, struct error **errp);
	/*
	 * Optional (NICs): tap NICs by fd on a local migration
	 * (docs/migration.md). host_fd: the open fd of the device's backend
	 * that the destination may adopt (borrowed; -1: none) and the NIC's
	 * id in *ret_id. host_fd_release: the destination runs the VM now;
	 * close that fd here for good, and deliver no frame of any backend
	 * into guest RAM again (net_backend_detach). Both on the migration's
	 * (or the restart's) thread with the vCPUs parked and the I/O thread
	 * held.
	 */
	int (*host_fd)(void *state, const char **ret_id);
	void (*host_fd_release)(void *state);
	/*
	 * Optional (NICs): send the NIC's self-announcement now (a RARP of
	 * its configured MAC, net_rarp_frame) through its backend, as if the
	 * guest had sent it. On the VM's I/O thread (hw/announce.c).
	 */
	void (*announce)(void *state);
	/*
	 * Optional (NICs): QEMU's set_link. Down: the guest sees the link
	 * down (and an interrupt saying so) and frames are dropped both ways;
	 * up: as before. Control thread (and load); the device takes its lock.
	 */
	int (*set_link)(void *state, bool up);
	/*
	 * Optional (disks): QEMU's block_set_io_throttle on this device's disk
	 * @id: its I/O limits (checked, none set: unlimited) from now on;
	 * -ENOENT when it has no disk @id. Control thread; the device takes
	 * its lock (and query_block shows the limits).
	 */
	int (*set_io_throttle)(void *state, const char *id, const struct block_throttle_limits *l);
	/*
	 * Optional (drives with removable media, ide-cd): QEMU's tray and
	 * medium of this device's drive @id (hw/media.c). tray: its state;
	 * -ENOENT when the device has no removable drive @id (the others
	 * then are not called for it). tray_open: 0 when open (or already),
	 * -EBUSY when the guest locked it and @force is false (the guest is
	 * asked to open it). set_medium: @bs (a reference taken over; NULL:
	 * none) replaces the medium of the open tray. Control thread; the
	 * device takes its own lock and emits DEVICE_TRAY_MOVED whenever a
	 * tray moves (the guest may move it too).
	 */
	int (*tray)(void *state, const char *id, struct vm_tray *st);
	int (*tray_open)(void *state, const char *id, bool force, struct error **errp);
	void (*tray_close)(void *state, const char *id);
	int (*set_medium)(void *state, const char *id, struct block_node *bs, struct error **errp);
};

/*
 * ---- Machine services a device may use: the complete list ----
 * Besides these, a device may call vm_name() and vm_get_state() of
 * include/vmmd/vm.h. tests/unit/fake-machine.c implements exactly this list.
 */

struct iobus *vm_iobus(struct vm *vm);
struct guest_mem *vm_guest_mem(struct vm *vm);
const struct vm_config *vm_get_config(struct vm *vm);
const struct vm_host *vm_get_host(struct vm *vm);
/*
 * Open disk @d's image with @flags: the host's node for it where it has
 * one (vm_host.disk_node), else the definition's file and format.
 */
static inline int vm_disk_open(struct vm *vm, const struct vm_disk_config *d, unsigned flags,
			       struct block_node **ret, struct error **errp)
{
	const struct vm_host *h = vm_get_host(vm);

	if (h->disk_node && (*ret = h->disk_node(h->opaque, d->id))) {
		return 0;
	}
	return block_open(ret, d->file, d->format ? d->format : "raw", flags, errp);
}
/* The VM's I/O thread event loop (backends and virtqueues run there). */
struct event_base *vm_io_base(struct vm *vm);

/*
 * The I/O bus: port-I/O and MMIO ranges. A device registers a range with
 * an ops table; a vCPU exit is dispatched to the handler with the offset
 * inside the range. Dispatch runs on vCPU threads; register/unregister on
 * any thread. iobus_unregister() returns only once no vCPU is inside that
 * range's handlers, so the caller may free @opaque afterwards.
 */
enum iobus_space {
	IOBUS_PIO,
	IOBUS_MMIO,
};

struct iobus_ops {
	/* @size is 1, 2, 4 or 8; @offset is relative to the registered base. */
	uint64_t (*read)(void *opaque, uint64_t offset, unsigned size);
	void (*write)(void *opaque, uint64_t offset, uint64_t value, unsigned size);
};

/* -EEXIST (with a message naming both owners) if the range overlaps another. */
int iobus_register(struct iobus *bus, enum iobus_space space, uint64_t base, uint64_t len,
		   const struct iobus_ops *ops, void *opaque, const char *name,
		   struct error **errp);
/* Remove the range registered at @base; waits for in-flight dispatch. */
void iobus_unregister(struct iobus *bus, enum iobus_space space, uint64_t base);

/*
 * Guest memory. Every guest-supplied address reaches host memory through
 * guest_mem_ptr(), the one bounds-checked way. Lock-free from any thread.
 */

/*
 * Host pointer for guest range [gpa, gpa+len), or NULL if any byte of it is
 * outside guest RAM, the range wraps, or it spans two RAM regions. len may
 * be 0 (then gpa itself must be inside RAM or at its end).
 */
void *guest_mem_ptr(struct guest_mem *mem, uint64_t gpa, uint64_t len);
/* Copy to/from guest RAM; -EFAULT if the range is not wholly RAM. */
int guest_mem_read(struct guest_mem *mem, uint64_t gpa, void *buf, size_t len);
int guest_mem_write(struct guest_mem *mem, uint64_t gpa, const void *buf, size_t len);
/*
 * Bytes of guest memory: the RAM and the memory devices' regions (the RAM
 * alone is the definition's "memory", vm_get_config()).
 */
uint64_t guest_mem_size(struct guest_mem *mem);
/*
 * Give the host pages of guest range [gpa, gpa+len) back (page-aligned,
 * wholly inside one region): MADV_REMOVE for shared memory, MADV_DONTNEED
 * otherwise; the guest reads zeroes there afterwards (after a vm-restore
 * of a private mapping: the snapshot's data). -EFAULT outside guest memory.
 */
int guest_mem_discard(struct guest_mem *mem, uint64_t gpa, uint64_t len);
/*
 * Tell live migration that the device wrote [@host, @host+@len) of guest
 * RAM through a pointer it translated earlier (virtqueue rings and
 * buffers): KVM's dirty log sees only vCPU writes. Pointers outside RAM
 * are ignored. guest_mem_write and guest_mem_ptr mark their range
 * themselves. Lock-free, any thread; a no-op unless a migration tracks.
 */
void guest_mem_mark_dirty(struct guest_mem *mem, const void *host, size_t len);

/*
 * The guest-physical map: RAM from 0 up to the 32-bit PCI hole, the rest
 * from 4 GiB up. The hole [GUEST_MEM_HOLE_START, 4 GiB) holds device MMIO
 * (PCI BARs, IOAPIC at 0xFEC00000, LAPIC at 0xFEE00000) and KVM's
 * TSS/identity pages.
 */
#define GUEST_MEM_HOLE_START 0xC0000000ull
#define GUEST_MEM_HIGH_START 0x100000000ull

/*
 * Interrupts into the in-kernel irqchip: GSI lines (IOAPIC/PIC), MSI
 * messages, and the eventfd plumbing (irqfd for interrupts raised from an
 * I/O thread, ioeventfd for guest notifications that skip the vCPU exit).
 * Any thread of the VM; routing updates are serialized inside.
 */
/* Drive GSI @gsi to @level (edge devices pulse 1 then 0). */
int vm_irq_set_level(struct vm *vm, unsigned gsi, int level);
/* Deliver one MSI message now. */
int vm_msi_signal(struct vm *vm, uint64_t addr, uint32_t data);

/*
 * Allocate a GSI routed to an MSI message and bind @fd to it as an irqfd:
 * writing 1 to @fd raises the interrupt without any user-space hop.
 * Returns the GSI (>= 0) or -errno. vm_msi_route_update() changes the
 * message (MSI-X table writes); vm_msi_route_release() unbinds and frees.
 */
int vm_msi_route_add(struct vm *vm, int fd, uint64_t addr, uint32_t data);
int vm_msi_route_update(struct vm *vm, int gsi, uint64_t addr, uint32_t data);
void vm_msi_route_release(struct vm *vm, int gsi, int fd);

/* Bind @fd as an irqfd to a plain GSI line (INTx); @resample_fd may be -1. */
int vm_irqfd_gsi(struct vm *vm, int fd, unsigned gsi, bool assign);

/*
 * Guest writes of @len bytes to @addr (MMIO, or PIO when @pio) signal @fd
 * instead of exiting to user space. @datamatch < 0 matches any value.
 */
int vm_ioeventfd(struct vm *vm, int fd, uint64_t addr, unsigned len, bool pio, int64_t datamatch,
		 bool assign);

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

/*
 * The blockdev-add node called @node_name, a new reference, for a disk
 * being realized with "node" (device_add's "drive"); NULL with *errp set
 * if there is none. Control thread (hw/hotplug.c).
 */
struct block_node;
struct block_node *vm_block_node_get(struct vm *vm, const char *node_name, struct error **errp);

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
 * Input devices (HID): register under the definition's @id the event kinds
 * (mask of 1 << enum vm_input_type) @fn takes; vm_input_send() calls @fn on
 * the control thread, and it must queue and return. Realize/unrealize.
 */
typedef void vm_input_fn(void *opaque, const struct vm_input_event *ev, unsigned n);
int vm_input_register(struct vm *vm, const char *id, unsigned kinds, vm_input_fn *fn, void *opaque);
void vm_input_unregister(struct vm *vm, void *opaque);
/* The USB HID usage (keyboard page) of QKeyCode index @q; 0 if it has none. */
unsigned vm_input_qcode_hid(int q);
/*
 * The USB controller's "info usb" text for x-query-usb (a malloc'ed string
 * from @fn, control thread); set in realize, cleared (fn NULL) in unrealize.
 */
void vm_set_usb_info_handler(struct vm *vm, char *(*fn)(void *opaque), void *opaque);

/*
 * ringbuf-read / ringbuf-write on "serial0" (vm_ringbuf_read/_write),
 * provided by the COM1 UART: set in realize, cleared (NULL) in unrealize.
 * Both run on the control thread; the device takes its own lock.
 */
struct vm_ringbuf {
	size_t (*read)(void *opaque, uint8_t *buf, size_t max);
	void (*write)(void *opaque, const uint8_t *buf, size_t len);
	void *opaque;
};
void vm_set_ringbuf(struct vm *vm, const struct vm_ringbuf *rb);

/*
 * The VM's PCI host bridge (hw/pci/pci-host.c sets it in realize, clears it in
 * unrealize); NULL when the VM has none. PCI devices find it through
 * pci_host_of().
 */
struct pci_host;
void vm_set_pci_host(struct vm *vm, struct pci_host *host);
struct pci_host *vm_pci_host(struct vm *vm);
