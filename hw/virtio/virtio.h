/*
 * The model-facing virtio API, transport-neutral: a device model (blk.c,
 * net.c, rng.c) implements struct virtio_device_ops and drives its queues
 * through a struct virtio_dev; it includes hw/device.h and this header and
 * never sees the transport. The one transport today is virtio-pci.c
 * (virtio 1.x §4.1, see virtio-pci.h); a virtio-mmio transport would
 * implement the same functions.
 *
 * Notifications: each queue's kick is read on the VM's I/O thread, which
 * calls queue_notify; virtio_notify() sends the used-buffer interrupt.
 *
 * Threads and locking: register accesses arrive on vCPU threads, queue
 * processing and backend completions run on the VM's I/O thread. One
 * mutex per device (virtio_lock) covers the transport state, the queues
 * and the device model's state; the device ops below are called with it
 * held, and a device's own I/O-thread callbacks (completions) take it with
 * virtio_lock()/virtio_unlock().
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"
#include "hw/virtio/virtqueue.h"

struct vm;
/* One virtio device on its transport (opaque; virtio-pci.c defines it). */
struct virtio_dev;

/* Feature bits (virtio 1.x §6). */
#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX 29
#define VIRTIO_F_VERSION_1 32

/* Device status bits (§2.1). */
#define VIRTIO_STATUS_ACKNOWLEDGE 1u
#define VIRTIO_STATUS_DRIVER 2u
#define VIRTIO_STATUS_DRIVER_OK 4u
#define VIRTIO_STATUS_FEATURES_OK 8u
#define VIRTIO_STATUS_NEEDS_RESET 64u
#define VIRTIO_STATUS_FAILED 128u

#define VIRTIO_MSI_NO_VECTOR 0xffffu
#define VIRTIO_MAX_QUEUES 65

struct virtio_device_ops {
	const char *name;     /* "virtio-blk" */
	uint16_t device_id;   /* virtio device id: 1 net... (PCI id = 0x1040 + id) */
	uint32_t pci_class;   /* class code, for a transport that has one (PCI) */
	unsigned config_size; /* bytes of device-specific config */
	/* Read/write device config bytes [off, off+len), bounds already checked. */
	void (*config_read)(void *dev, unsigned off, void *buf, unsigned len);
	void (*config_write)(void *dev, unsigned off, const void *buf, unsigned len);
	/*
	 * The driver set FEATURES_OK with @features (a subset of what was
	 * offered, VERSION_1 included). Return -EINVAL to refuse them.
	 */
	int (*set_features)(void *dev, uint64_t features);
	/* DRIVER_OK was set: queues are live. May be NULL. */
	void (*start)(void *dev);
	/* Queue @q was kicked (I/O thread). */
	void (*queue_notify)(void *dev, unsigned q);
	/*
	 * Device reset (status 0, or system reset): forget every request in
	 * flight — completions arriving later must not touch the rings.
	 */
	void (*reset)(void *dev);
};

struct virtio_dev_config {
	const struct virtio_device_ops *ops;
	void *dev;
	const char *id;	    /* device id for messages, e.g. "vda" */
	uint64_t features;  /* device-specific features offered */
	unsigned nqueues;   /* 1..VIRTIO_MAX_QUEUES-1 */
	uint16_t queue_max; /* per-queue maximum size (power of two <= VIRTQ_MAX_SIZE) */
};

/*
 * Create the device on the VM's transport (virtio-pci: a PCI function in
 * the first free slot of the VM's PCI host) and set up one kick eventfd
 * per queue on the I/O thread. On failure nothing is left registered.
 */
int virtio_dev_new(struct vm *vm, const struct virtio_dev_config *cfg, struct virtio_dev **ret,
		   struct error **errp);
/* Unregister and free; vCPUs stopped, I/O thread not running this device. NULL is fine. */
void virtio_dev_free(struct virtio_dev *vp);
/* System reset: as if the driver wrote 0 to device_status, plus the transport's reset. */
void virtio_dev_reset(struct virtio_dev *vp);

void virtio_lock(struct virtio_dev *vp);
void virtio_unlock(struct virtio_dev *vp);

/* The queues and the negotiated features (lock held). */
struct virtq *virtio_queue(struct virtio_dev *vp, unsigned q);
uint64_t virtio_features(struct virtio_dev *vp);
bool virtio_driver_ok(struct virtio_dev *vp);
/* A counter that changes on every reset: completions compare it to drop stale work. */
uint64_t virtio_generation(struct virtio_dev *vp);

/* Send the used-buffer interrupt for queue @q if the driver wants one (lock held). */
void virtio_notify(struct virtio_dev *vp, unsigned q);
/* Make the I/O thread process queue @q again soon (budgeted work). Any thread. */
void virtio_kick(struct virtio_dev *vp, unsigned q);
/* Device config changed: bump config_generation and interrupt (lock held). */
void virtio_config_changed(struct virtio_dev *vp);
/*
 * The device saw something it cannot recover from (a malformed ring): set
 * DEVICE_NEEDS_RESET, stop processing, tell the driver. Logs rate-limited
 * with @why. Lock held.
 */
void virtio_set_needs_reset(struct virtio_dev *vp, const char *why);

struct vm *virtio_vm(struct virtio_dev *vp);

/*
 * Save/restore of the transport's state (docs/vmstate.md), for the
 * model's device_class save/load: for virtio-pci the PCI state, feature
 * and status registers, and per queue its size, vector, ring addresses,
 * enable and the device's ring indices (last_avail, used_idx, the
 * EVENT_IDX shadow). A save refuses a queue with chains popped and not yet
 * used (the model must be drained: its busy hook). Load runs the model's
 * set_features and start as the driver's writes did, and kicks every
 * enabled queue so requests the guest queued before the save are seen.
 * Lock not held by the caller.
 */
struct vmstate_buf;
int virtio_save(struct virtio_dev *vp, struct vmstate_buf *out, struct error **errp);
int virtio_load(struct virtio_dev *vp, struct vmstate_buf *in, struct error **errp);
