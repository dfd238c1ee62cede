/*
 * xHCI host controller compatible with QEMU's qemu-xhci (PCI 1b36:000d,
 * class 0c0330, programming interface xHCI 1.0): 64 device slots, 16
 * interrupters, 8 root ports (1-4 USB 2.0, 5-8 USB 3.0), one 16 KiB memory
 * BAR holding capability (0x0), operational (0x40), port (0x440), runtime
 * (0x1000) and doorbell (0x2000) registers and the MSI-X table (0x3000)
 * and PBA (0x3800).
 *
 * The model is transport-free, like hw/e1000.c: the owner delivers
 * interrupts and wakes the I/O thread through struct xhci_host_ops; the
 * device class (PCI glue) is in xhci-pci.c.
 *
 * Threads: register accesses arrive on vCPU threads and run the rings
 * synchronously under x->lock (transfers to usb-storage do their block I/O
 * there, as IDE does). Device wakeups (HID input) are queued and processed
 * by xhci_process_wakeups() on the VM's I/O thread, also under x->lock.
 * Attach/detach take the lock from any thread.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

struct xhci;
struct guest_mem;
struct usb_device;
struct vmstate_buf;
struct error;
struct block_node;

#define XHCI_MMIO_SIZE 0x4000
#define XHCI_MSIX_TABLE 0x3000
#define XHCI_MSIX_PBA 0x3800
#define XHCI_VENDOR_ID 0x1b36
#define XHCI_DEVICE_ID 0x000d
#define XHCI_MAX_SLOTS 64
#define XHCI_MAX_INTRS 16
#define XHCI_PORTS_USB2 4
#define XHCI_PORTS 8

struct xhci_host_ops {
	/* Whether MSI-X is enabled (then INTx stays idle). Lock held. */
	bool (*msix_enabled)(void *opaque);
	/* Send interrupter @intr's MSI-X message. Lock held. */
	void (*msix_notify)(void *opaque, unsigned intr);
	/* Drive INTx. Lock held. */
	void (*set_intx)(void *opaque, bool level);
	/* A device has data: call xhci_process_wakeups() soon on the I/O thread. */
	void (*wake)(void *opaque);
	/* A device will have data at @ns (CLOCK_MONOTONIC): call xhci_wake_all() then. */
	void (*wake_at)(void *opaque, uint64_t ns);
};

/* NULL on ENOMEM. @ops/@opaque borrowed for the controller's lifetime. */
struct xhci *xhci_new(struct guest_mem *mem, const struct xhci_host_ops *ops, void *opaque);
/* Frees the attached devices too. NULL is fine. */
void xhci_free(struct xhci *x);
/* Hardware reset (power-on / system_reset): as HCRST, devices stay connected. */
void xhci_reset(struct xhci *x);

/* Registers: @offset within XHCI_MMIO_SIZE, except the MSI-X range (the owner's). */
uint64_t xhci_mmio_read(struct xhci *x, uint64_t offset, unsigned size);
void xhci_mmio_write(struct xhci *x, uint64_t offset, uint64_t value, unsigned size);

/*
 * Connect @dev to root port @port (1-based; 0: the first free USB 2.0
 * port). The controller owns @dev from then on. -EBUSY if taken, -ENOSPC
 * if no port is free, -EINVAL for a bad port number.
 */
int xhci_attach(struct xhci *x, unsigned port, struct usb_device *dev);
/* Disconnect and return the device of @port (the caller frees it); NULL if none. */
struct usb_device *xhci_detach(struct xhci *x, unsigned port);
/* The device attached as @id, or NULL. Stable until it is detached. */
struct usb_device *xhci_find(struct xhci *x, const char *id);
/*
 * Save/restore: controller registers, interrupters and event ring producer
 * state, slots and endpoints (ring dequeue pointers and cycle states), ports
 * and each attached device's state (identity checked on load: the same
 * model and id on each port). Taken between TDs, so nothing is half-done;
 * load checks the whole section before changing anything.
 */
void xhci_save(struct xhci *x, struct vmstate_buf *out);
int xhci_load(struct xhci *x, struct vmstate_buf *in, struct error **errp);
/* The block node of the usb-storage on @port (borrowed), or NULL. */
struct block_node *xhci_port_node(struct xhci *x, unsigned port);
/* Whether root port @port has a device (true for numbers outside 1..XHCI_PORTS). */
bool xhci_find_port_taken(struct xhci *x, unsigned port);
/* Retry endpoints that were waiting for device data (I/O thread). */
void xhci_process_wakeups(struct xhci *x);
/* Retry every waiting endpoint (a wake_at time has come; I/O thread). */
void xhci_wake_all(struct xhci *x);
/* [{"port": N, "id": ..., "device": "usb-storage", "speed": "high", "product": ...}] */
json_t *xhci_query(struct xhci *x);
/*
 * QEMU's "info usb" lines ("  Device 0.1, Port 1, Speed 480 Mb/s, Product
 * QEMU USB MSD, ID: usb0\n"), malloc'ed; NULL on ENOMEM.
 */
char *xhci_info_text(struct xhci *x);
