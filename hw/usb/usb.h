/*
 * The USB device layer: what a host controller (hw/usb/xhci.c) sees of a
 * USB device, and the helpers device models share (standard requests,
 * descriptors). A device answers control requests on endpoint 0 and moves
 * data on its other endpoints one packet (one transfer descriptor) at a
 * time; it never touches guest memory itself: the controller hands it host
 * iovecs it has already translated and bounded.
 *
 * Threads: every call into a device is made by its controller with the
 * controller's lock held (vCPU threads for doorbells, the VM's I/O thread
 * for wakeups). A device's own input (HID events from the monitor) is
 * queued under the device's lock and announced with usb_device_wakeup().
 */
#pragma once

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "common/error.h"

struct block_node;
struct vmstate_buf;

enum usb_speed {
	USB_SPEED_FULL = 1, /* values are the xHCI protocol speed IDs */
	USB_SPEED_LOW = 2,
	USB_SPEED_HIGH = 3,
	USB_SPEED_SUPER = 4,
};

/* Results of usb_device_ops.data and usb_device_control (besides >= 0). */
#define USB_RET_NAK (-EAGAIN)  /* no data now (interrupt IN): retry after a wakeup */
#define USB_RET_STALL (-EPIPE) /* the endpoint halts / the request is refused */
#define USB_RET_IOERR (-EIO)   /* transaction error */

/* Standard request codes and descriptor types (USB 2.0 §9.4). */
#define USB_REQ_GET_STATUS 0
#define USB_REQ_CLEAR_FEATURE 1
#define USB_REQ_SET_FEATURE 3
#define USB_REQ_SET_ADDRESS 5
#define USB_REQ_GET_DESCRIPTOR 6
#define USB_REQ_SET_DESCRIPTOR 7
#define USB_REQ_GET_CONFIGURATION 8
#define USB_REQ_SET_CONFIGURATION 9
#define USB_REQ_GET_INTERFACE 10
#define USB_REQ_SET_INTERFACE 11
#define USB_DT_DEVICE 1
#define USB_DT_CONFIG 2
#define USB_DT_STRING 3
#define USB_DT_INTERFACE 4
#define USB_DT_ENDPOINT 5
#define USB_DT_DEVICE_QUALIFIER 6
#define USB_DT_HID 0x21
#define USB_DT_REPORT 0x22
#define USB_DIR_IN 0x80
#define USB_TYPE_MASK 0x60
#define USB_TYPE_STANDARD 0x00
#define USB_TYPE_CLASS 0x20
#define USB_RECIP_MASK 0x1f
#define USB_RECIP_DEVICE 0
#define USB_RECIP_INTERFACE 1
#define USB_RECIP_ENDPOINT 2
#define USB_FEATURE_ENDPOINT_HALT 0
#define USB_FEATURE_REMOTE_WAKEUP 1

#define USB_MAX_CONTROL_DATA 4096 /* longer control data stages are stalled */
#define USB_MAX_STRINGS 8

struct usb_setup {
	uint8_t request_type;
	uint8_t request;
	uint16_t value;
	uint16_t index;
	uint16_t length;
};

/* One transfer on a non-control endpoint: host memory already bounded. */
struct usb_packet {
	bool in;		 /* device to host */
	uint8_t ep;		 /* endpoint number 1..15 */
	const struct iovec *iov; /* the whole transfer descriptor's buffers */
	unsigned niov;
	size_t len;    /* sum of iov */
	size_t actual; /* bytes the device consumed or produced (set by it) */
};

struct usb_device;

struct usb_device_ops {
	/* Bus reset (port reset, controller reset): back to the default state. */
	void (*reset)(struct usb_device *dev);
	/*
	 * A class or vendor request (standard ones are handled by
	 * usb_device_control). @data holds s->length bytes (OUT: the host's
	 * data; IN: to fill). Returns the bytes produced (IN), 0 (OUT), or
	 * USB_RET_STALL. May be NULL (every such request stalls).
	 */
	int (*control)(struct usb_device *dev, const struct usb_setup *s, uint8_t *data);
	/*
	 * Data for endpoint p->ep in direction p->in. Sets p->actual and
	 * returns 0, or returns USB_RET_NAK (nothing to send now),
	 * USB_RET_STALL (the endpoint halted) or USB_RET_IOERR.
	 */
	int (*data)(struct usb_device *dev, struct usb_packet *p);
	/* CLEAR_FEATURE(ENDPOINT_HALT) for endpoint address @ep_addr (may be NULL). */
	void (*clear_halt)(struct usb_device *dev, uint8_t ep_addr);
	/* Release the device (the controller owns it once attached). */
	void (*free)(struct usb_device *dev);
	/*
	 * Save/restore of the model's own state (docs/vmstate.md; the common
	 * fields are usb_device_save's). load reads what save wrote, checks it
	 * and changes the device only when @apply (the controller reads every
	 * section once without applying first). 0 or -EINVAL.
	 */
	void (*save)(struct usb_device *dev, struct vmstate_buf *out);
	int (*load)(struct usb_device *dev, struct vmstate_buf *in, bool apply);
};

struct usb_device {
	const struct usb_device_ops *ops;
	char id[65];	     /* the id in the VM definition */
	const char *product; /* human-readable model name ("QEMU USB Keyboard") */
	const char *model;   /* QEMU device name ("usb-kbd") */
	enum usb_speed speed;
	const uint8_t *dev_desc; /* 18 bytes */
	const uint8_t *config_desc;
	unsigned config_len;
	const char *strings[USB_MAX_STRINGS]; /* string descriptor i is strings[i - 1] */
	const uint8_t *qualifier_desc;	      /* 10 bytes; NULL for full speed only */
	/* State the standard requests change. */
	uint8_t addr;
	uint8_t config; /* bConfigurationValue, 0 when unconfigured */
	bool remote_wakeup;
	uint32_t halted; /* bit n: IN endpoint n, bit 16+n: OUT endpoint n */
	/* Set by the controller on attach: data became available on IN endpoint @ep. */
	void (*wakeup)(void *opaque, struct usb_device *dev, uint8_t ep);
	void *wakeup_opaque;
	unsigned port; /* root port number (1-based) when attached, else 0 */
	/*
	 * Set by ops->data when it answers NAK because its data becomes due
	 * later (CLOCK_MONOTONIC ns): the controller retries then. 0: none.
	 */
	uint64_t wake_at_ns;
	int bootindex;
};

/*
 * Run a control request: standard requests here (descriptors, address,
 * configuration, status, features), the rest through ops->control.
 * @data has room for s->length bytes (at most USB_MAX_CONTROL_DATA).
 * Returns bytes produced for IN, 0 for OUT, or USB_RET_STALL.
 */
int usb_device_control(struct usb_device *dev, const struct usb_setup *s, uint8_t *data);
/* A packet for a non-control endpoint: stalls a halted endpoint, else ops->data. */
int usb_device_data(struct usb_device *dev, struct usb_packet *p);
/* Bus reset: address 0, unconfigured, halts cleared, then ops->reset. */
void usb_device_reset(struct usb_device *dev);
/* Tell the controller that IN endpoint @ep has data (any thread; no locks of the device held). */
void usb_device_wakeup(struct usb_device *dev, uint8_t ep);
void usb_device_free(struct usb_device *dev);
/* The device's state (common fields, then the model's): controller lock held. */
void usb_device_save(struct usb_device *dev, struct vmstate_buf *out);
/* Check (and with @apply, restore) what usb_device_save wrote; -EINVAL if malformed. */
int usb_device_load(struct usb_device *dev, struct vmstate_buf *in, bool apply);
/* usb-storage's block node (borrowed), NULL for other devices. */
struct block_node *usb_storage_node(struct usb_device *dev);

/* The endpoint halt bit of @dev for endpoint address @ep_addr (bit 7 = IN). */
static inline uint32_t usb_halt_bit(uint8_t ep_addr)
{
	return 1u << ((ep_addr & 0xf) + (ep_addr & USB_DIR_IN ? 0 : 16));
}

/*
 * Device models. Each returns a device the caller owns (usb_device_free)
 * or -errno with a message.
 */
struct usb_storage_config {
	const char *id;
	struct block_node *bs; /* a reference the device takes over */
	bool readonly;
	bool removable;
	const char *serial; /* NULL: derived from the id */
};
int usb_storage_new(const struct usb_storage_config *cfg, struct usb_device **ret,
		    struct error **errp);

enum usb_hid_kind {
	USB_HID_KEYBOARD,
	USB_HID_TABLET,
};
int usb_hid_new(enum usb_hid_kind kind, const char *id, struct usb_device **ret,
		struct error **errp);

/* Input for HID devices (QEMU's InputEvent kinds). */
enum usb_input_type {
	USB_INPUT_KEY, /* code: HID usage (keyboard page 7, 0: ignored), down */
	USB_INPUT_BTN, /* code: 0 left, 1 middle, 2 right, 3 wheel-up, 4 wheel-down; down */
	USB_INPUT_ABS, /* code: axis 0 x, 1 y; value 0..0x7fff */
	USB_INPUT_REL, /* code: axis 0 x, 1 y; value */
};
struct usb_input_event {
	enum usb_input_type type;
	unsigned code;
	bool down;
	int64_t value;
	uint32_t delay_ms; /* not before this long after the call */
};
/*
 * Feed events to a HID device; events it does not handle (a button on a
 * keyboard) are ignored. Returns the number consumed. Any thread.
 */
unsigned usb_hid_input(struct usb_device *dev, const struct usb_input_event *ev, unsigned n);
bool usb_hid_is_keyboard(struct usb_device *dev);
bool usb_hid_is_pointer(struct usb_device *dev);
/* The LED state the guest set (bit 0 num, 1 caps, 2 scroll); keyboards only. */
unsigned usb_hid_leds(struct usb_device *dev);
