/*
 * usb-kbd and usb-tablet: USB HID devices (HID 1.11) as QEMU presents them
 * (0627:0001, "QEMU USB Keyboard" / "QEMU USB Tablet"): one interface with
 * an interrupt IN endpoint 1 of 8 bytes, the boot keyboard report (modifiers,
 * reserved, six keys) and an absolute pointer report (buttons, X and Y in
 * 0..0x7fff, wheel). GET/SET_REPORT, GET/SET_IDLE, GET/SET_PROTOCOL; in
 * boot protocol the tablet sends the 3-byte boot mouse report with the
 * movement since its last report.
 *
 * Input arrives from the monitor (usb_hid_input) and is queued as reports,
 * one per key event (so a press and release between two polls are both
 * seen) and one per pointer batch; a report may carry a time before which it
 * is not sent (send-key's hold time). A full queue drops new events, as
 * QEMU's does.
 *
 * Threads: usb_hid_input on the control thread, the device ops with the
 * controller lock held; h->lock protects the state and the queue (taken
 * after the controller lock, never before it). The wakeup is raised with
 * h->lock released.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/iov.h"
#include "common/util.h"
#include "common/vmstate.h"
#include "hw/usb/usb.h"

#define HID_QUEUE 32
#define REPORT_MAX 8
#define HID_GET_REPORT 0x01
#define HID_GET_IDLE 0x02
#define HID_GET_PROTOCOL 0x03
#define HID_SET_REPORT 0x09
#define HID_SET_IDLE 0x0a
#define HID_SET_PROTOCOL 0x0b

struct hid_report {
	uint8_t data[REPORT_MAX];
	uint8_t len;
	uint64_t not_before_ns;
};

struct usb_hid {
	struct usb_device dev;
	enum usb_hid_kind kind;
	pthread_mutex_t lock;
	uint8_t config_desc[34];
	/* keyboard */
	uint8_t modifiers;
	uint8_t keys[6];
	unsigned nkeys;
	unsigned leds;
	/* pointer */
	uint8_t buttons;
	int32_t x, y, last_x, last_y;
	int wheel;
	/* protocol */
	uint8_t protocol; /* 0 boot, 1 report */
	uint8_t idle;
	struct hid_report queue[HID_QUEUE];
	unsigned head, count;
	struct hid_report last; /* what GET_REPORT returns */
};

static const uint8_t kbd_report_desc[] = {
	0x05, 0x01, /* Usage Page (Generic Desktop) */
	0x09, 0x06, /* Usage (Keyboard) */
	0xa1, 0x01, /* Collection (Application) */
	0x05, 0x07, /*   Usage Page (Keyboard/Keypad) */
	0x19, 0xe0, /*   Usage Minimum (Left Control) */
	0x29, 0xe7, /*   Usage Maximum (Right GUI) */
	0x15, 0x00, /*   Logical Minimum (0) */
	0x25, 0x01, /*   Logical Maximum (1) */
	0x75, 0x01, /*   Report Size (1) */
	0x95, 0x08, /*   Report Count (8) */
	0x81, 0x02, /*   Input (Data, Variable, Absolute): modifiers */
	0x95, 0x01, /*   Report Count (1) */
	0x75, 0x08, /*   Report Size (8) */
	0x81, 0x01, /*   Input (Constant): reserved */
	0x95, 0x05, /*   Report Count (5) */
	0x75, 0x01, /*   Report Size (1) */
	0x05, 0x08, /*   Usage Page (LEDs) */
	0x19, 0x01, /*   Usage Minimum (Num Lock) */
	0x29, 0x05, /*   Usage Maximum (Kana) */
	0x91, 0x02, /*   Output (Data, Variable, Absolute): LEDs */
	0x95, 0x01, /*   Report Count (1) */
	0x75, 0x03, /*   Report Size (3) */
	0x91, 0x01, /*   Output (Constant): padding */
	0x95, 0x06, /*   Report Count (6) */
	0x75, 0x08, /*   Report Size (8) */
	0x15, 0x00, /*   Logical Minimum (0) */
	0x25, 0xff, /*   Logical Maximum (255) */
	0x05, 0x07, /*   Usage Page (Keyboard/Keypad) */
	0x19, 0x00, /*   Usage Minimum (0) */
	0x29, 0xff, /*   Usage Maximum (255) */
	0x81, 0x00, /*   Input (Data, Array): keys */
	0xc0,	    /* End Collection */
};

static const uint8_t tablet_report_desc[] = {
	0x05, 0x01,	  /* Usage Page (Generic Desktop) */
	0x09, 0x02,	  /* Usage (Mouse) */
	0xa1, 0x01,	  /* Collection (Application) */
	0x09, 0x01,	  /*   Usage (Pointer) */
	0xa1, 0x00,	  /*   Collection (Physical) */
	0x05, 0x09,	  /*     Usage Page (Button) */
	0x19, 0x01,	  /*     Usage Minimum (1) */
	0x29, 0x03,	  /*     Usage Maximum (3) */
	0x15, 0x00,	  /*     Logical Minimum (0) */
	0x25, 0x01,	  /*     Logical Maximum (1) */
	0x95, 0x03,	  /*     Report Count (3) */
	0x75, 0x01,	  /*     Report Size (1) */
	0x81, 0x02,	  /*     Input (Data, Variable, Absolute): buttons */
	0x95, 0x01,	  /*     Report Count (1) */
	0x75, 0x05,	  /*     Report Size (5) */
	0x81, 0x01,	  /*     Input (Constant): padding */
	0x05, 0x01,	  /*     Usage Page (Generic Desktop) */
	0x09, 0x30,	  /*     Usage (X) */
	0x09, 0x31,	  /*     Usage (Y) */
	0x15, 0x00,	  /*     Logical Minimum (0) */
	0x26, 0xff, 0x7f, /*     Logical Maximum (32767) */
	0x35, 0x00,	  /*     Physical Minimum (0) */
	0x46, 0xff, 0x7f, /*     Physical Maximum (32767) */
	0x75, 0x10,	  /*     Report Size (16) */
	0x95, 0x02,	  /*     Report Count (2) */
	0x81, 0x02,	  /*     Input (Data, Variable, Absolute): X, Y */
	0x05, 0x01,	  /*     Usage Page (Generic Desktop) */
	0x09, 0x38,	  /*     Usage (Wheel) */
	0x15, 0x81,	  /*     Logical Minimum (-127) */
	0x25, 0x7f,	  /*     Logical Maximum (127) */
	0x35, 0x00,	  /*     Physical Minimum (same as logical) */
	0x45, 0x00,	  /*     Physical Maximum (same as logical) */
	0x75, 0x08,	  /*     Report Size (8) */
	0x95, 0x01,	  /*     Report Count (1) */
	0x81, 0x06,	  /*     Input (Data, Variable, Relative): wheel */
	0xc0,		  /*   End Collection */
	0xc0,		  /* End Collection */
};

static const uint8_t hid_dev_desc[18] = {
	18,   USB_DT_DEVICE,
	0x00, 0x02, /* USB 2.0 */
	0,    0,
	0,    64, /* class per interface, EP0 64 bytes */
	0x27, 0x06,
	0x01, 0x00, /* 0627:0001 */
	0x00, 0x00,
	1,    2,
	3,    1, /* bcdDevice, strings, one configuration */
};

static const uint8_t hid_qualifier[10] = {10, USB_DT_DEVICE_QUALIFIER, 0x00, 0x02, 0, 0, 0, 64, 1,
					  0};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The current state as a report in the current protocol. h->lock held. */
static void build_report(struct usb_hid *h, struct hid_report *r)
{
	memset(r, 0, sizeof(*r));
	if (h->kind == USB_HID_KEYBOARD) {
		r->data[0] = h->modifiers;
		if (h->nkeys > 6) {
			memset(r->data + 2, 0x01, 6); /* ErrorRollOver */
		} else {
			memcpy(r->data + 2, h->keys, h->nkeys);
		}
		r->len = 8;
		return;
	}
	if (h->protocol == 0) { /* boot mouse: relative */
		int dx = MAX(-127, MIN(127, (h->x - h->last_x) / 64));
		int dy = MAX(-127, MIN(127, (h->y - h->last_y) / 64));

		r->data[0] = h->buttons;
		r->data[1] = (uint8_t)(int8_t)dx;
		r->data[2] = (uint8_t)(int8_t)dy;
		r->len = 3;
		h->last_x += dx * 64;
		h->last_y += dy * 64;
		return;
	}
	r->data[0] = h->buttons;
	r->data[1] = (uint8_t)h->x;
	r->data[2] = (uint8_t)(h->x >> 8);
	r->data[3] = (uint8_t)h->y;
	r->data[4] = (uint8_t)(h->y >> 8);
	r->data[5] = (uint8_t)(int8_t)MAX(-127, MIN(127, h->wheel));
	r->len = 6;
	h->wheel = 0;
}

/* Queue the current state, to be sent no earlier than @not_before. h->lock held. */
static bool push_report(struct usb_hid *h, uint64_t not_before)
{
	struct hid_report *r;

	if (h->count == HID_QUEUE) {
		return false;
	}
	r = &h->queue[(h->head + h->count) % HID_QUEUE];
	build_report(h, r);
	r->not_before_ns = not_before;
	h->count++;
	return true;
}

static void key_event(struct usb_hid *h, unsigned usage, bool down)
{
	if (usage >= 0xe0 && usage <= 0xe7) {
		uint8_t bit = (uint8_t)(1u << (usage - 0xe0));

		h->modifiers = down ? h->modifiers | bit : h->modifiers & ~bit;
		return;
	}
	for (unsigned i = 0; i < h->nkeys && i < 6; i++) {
		if (h->keys[i] == usage) {
			if (!down) {
				memmove(h->keys + i, h->keys + i + 1, 5 - i);
				h->nkeys--;
			}
			return;
		}
	}
	if (!down) {
		if (h->nkeys > 6) {
			h->nkeys--; /* one of the keys past six was let go */
		}
		return;
	}
	if (h->nkeys < 6) {
		h->keys[h->nkeys] = (uint8_t)usage;
	}
	h->nkeys++;
}

unsigned usb_hid_input(struct usb_device *dev, const struct usb_input_event *ev, unsigned n)
{
	struct usb_hid *h = container_of(dev, struct usb_hid, dev);
	uint64_t now = now_ns();
	bool pointer_changed = false, queued = false;
	unsigned used = 0;

	pthread_mutex_lock(&h->lock);
	for (unsigned i = 0; i < n; i++) {
		const struct usb_input_event *e = &ev[i];
		uint64_t at = now + (uint64_t)e->delay_ms * 1000000ull;

		if (h->kind == USB_HID_KEYBOARD) {
			if (e->type != USB_INPUT_KEY || e->code == 0) {
				continue;
			}
			key_event(h, e->code, e->down);
			queued |= push_report(h, at);
			used++;
			continue;
		}
		switch (e->type) {
		case USB_INPUT_BTN:
			if (e->code <= 2) {
				static const uint8_t bits[3] = {1, 4, 2}; /* left, middle, right */

				h->buttons = e->down ? h->buttons | bits[e->code]
						     : h->buttons & ~bits[e->code];
			} else if (e->code <= 4 && e->down) {
				h->wheel += e->code == 3 ? 1 : -1;
			}
			break;
		case USB_INPUT_ABS:
			if (e->code == 0) {
				h->x = (int32_t)MAX(0, MIN(0x7fff, e->value));
			} else if (e->code == 1) {
				h->y = (int32_t)MAX(0, MIN(0x7fff, e->value));
			}
			break;
		case USB_INPUT_REL:
			if (e->code == 0) {
				h->x = (int32_t)MAX(0, MIN(0x7fff, h->x + e->value));
			} else if (e->code == 1) {
				h->y = (int32_t)MAX(0, MIN(0x7fff, h->y + e->value));
			}
			break;
		default:
			continue;
		}
		pointer_changed = true;
		used++;
	}
	if (pointer_changed) {
		queued |= push_report(h, now);
	}
	pthread_mutex_unlock(&h->lock);
	if (queued) {
		usb_device_wakeup(dev, 1);
	}
	return used;
}

/* Interrupt IN: the oldest due report, or NAK. */
static int hid_data(struct usb_device *dev, struct usb_packet *p)
{
	struct usb_hid *h = container_of(dev, struct usb_hid, dev);
	struct hid_report *r;
	int ret = 0;

	if (!p->in || p->ep != 1) {
		return USB_RET_STALL;
	}
	pthread_mutex_lock(&h->lock);
	if (h->count == 0) {
		ret = USB_RET_NAK;
		goto out;
	}
	r = &h->queue[h->head];
	if (r->not_before_ns > now_ns()) {
		/* send-key's release: the controller polls again at that time */
		dev->wake_at_ns = r->not_before_ns;
		ret = USB_RET_NAK;
		goto out;
	}
	p->actual = iov_from_buf(p->iov, p->niov, 0, r->data, MIN((size_t)r->len, p->len));
	h->last = *r;
	h->head = (h->head + 1) % HID_QUEUE;
	h->count--;
out:
	pthread_mutex_unlock(&h->lock);
	return ret;
}

static int hid_control(struct usb_device *dev, const struct usb_setup *s, uint8_t *data)
{
	struct usb_hid *h = container_of(dev, struct usb_hid, dev);
	int ret = USB_RET_STALL;

	pthread_mutex_lock(&h->lock);
	if (s->request_type == 0x81 && s->request == USB_REQ_GET_DESCRIPTOR) {
		const uint8_t *d = NULL;
		unsigned len = 0;

		if ((s->value >> 8) == USB_DT_REPORT) {
			d = h->kind == USB_HID_KEYBOARD ? kbd_report_desc : tablet_report_desc;
			len = h->kind == USB_HID_KEYBOARD ? sizeof(kbd_report_desc)
							  : sizeof(tablet_report_desc);
		} else if ((s->value >> 8) == USB_DT_HID) {
			d = h->config_desc + 18;
			len = 9;
		}
		if (d) {
			len = MIN(len, (unsigned)s->length);
			memcpy(data, d, len);
			ret = (int)len;
		}
		goto out;
	}
	switch (s->request_type << 8 | s->request) {
	case 0xa100 | HID_GET_REPORT: {
		struct hid_report r;

		build_report(h, &r);
		ret = (int)MIN((unsigned)r.len, (unsigned)s->length);
		memcpy(data, r.data, (size_t)ret);
		break;
	}
	case 0x2100 | HID_SET_REPORT:
		if (h->kind == USB_HID_KEYBOARD && s->length >= 1) {
			h->leds = data[0] & 0x1f;
		}
		ret = 0;
		break;
	case 0xa100 | HID_GET_IDLE:
		if (s->length >= 1) {
			data[0] = h->idle;
			ret = 1;
		} else {
			ret = 0;
		}
		break;
	case 0x2100 | HID_SET_IDLE:
		h->idle = (uint8_t)(s->value >> 8);
		ret = 0;
		break;
	case 0xa100 | HID_GET_PROTOCOL:
		if (s->length >= 1) {
			data[0] = h->protocol;
			ret = 1;
		} else {
			ret = 0;
		}
		break;
	case 0x2100 | HID_SET_PROTOCOL:
		h->protocol = s->value ? 1 : 0;
		h->last_x = h->x;
		h->last_y = h->y;
		ret = 0;
		break;
	default:
		break;
	}
out:
	pthread_mutex_unlock(&h->lock);
	return ret;
}

static void hid_reset(struct usb_device *dev)
{
	struct usb_hid *h = container_of(dev, struct usb_hid, dev);

	pthread_mutex_lock(&h->lock);
	h->protocol = 1; /* HID 1.11 §7.2.6: report protocol after reset */
	h->idle = 0;
	h->count = 0;
	h->head = 0;
	h->modifiers = 0;
	h->nkeys = 0;
	h->leds = 0;
	h->buttons = 0;
	h->wheel = 0;
	pthread_mutex_unlock(&h->lock);
}

static void hid_free(struct usb_device *dev)
{
	struct usb_hid *h = container_of(dev, struct usb_hid, dev);

	pthread_mutex_destroy(&h->lock);
	free(h);
}

static void report_save(struct vmstate_buf *out, const struct hid_report *r, uint64_t now)
{
	vmstate_put_u8(out, r->len);
	vmstate_put_bytes(out, r->data, REPORT_MAX);
	/* the time still to wait, not the host clock */
	vmstate_put_u64(out, r->not_before_ns > now ? r->not_before_ns - now : 0);
}

static void report_load(struct vmstate_buf *in, struct hid_report *r, uint64_t now)
{
	uint64_t wait;

	r->len = vmstate_get_u8(in);
	vmstate_get_bytes(in, r->data, REPORT_MAX);
	wait = vmstate_get_u64(in);
	r->not_before_ns = now + MIN(wait, 10000000000ull);
	if (r->len > REPORT_MAX) {
		in->failed = true;
	}
}

/* Keys and buttons held, LEDs, protocol, and the reports queued for the guest. */
static void hid_save(struct usb_device *dev, struct vmstate_buf *out)
{
	struct usb_hid *h = container_of(dev, struct usb_hid, dev);
	uint64_t now = now_ns();

	pthread_mutex_lock(&h->lock);
	vmstate_put_u8(out, h->modifiers);
	vmstate_put_bytes(out, h->keys, sizeof(h->keys));
	vmstate_put_u8(out, (uint8_t)h->nkeys);
	vmstate_put_u8(out, (uint8_t)h->leds);
	vmstate_put_u8(out, h->buttons);
	vmstate_put_u32(out, (uint32_t)h->x);
	vmstate_put_u32(out, (uint32_t)h->y);
	vmstate_put_u32(out, (uint32_t)h->last_x);
	vmstate_put_u32(out, (uint32_t)h->last_y);
	vmstate_put_u32(out, (uint32_t)h->wheel);
	vmstate_put_u8(out, h->protocol);
	vmstate_put_u8(out, h->idle);
	vmstate_put_u8(out, (uint8_t)h->count);
	for (unsigned i = 0; i < h->count; i++) {
		report_save(out, &h->queue[(h->head + i) % HID_QUEUE], now);
	}
	report_save(out, &h->last, now);
	pthread_mutex_unlock(&h->lock);
}

static int hid_load(struct usb_device *dev, struct vmstate_buf *in, bool apply)
{
	struct usb_hid *h = container_of(dev, struct usb_hid, dev);
	struct usb_hid t = {0};
	uint64_t now = now_ns();

	t.modifiers = vmstate_get_u8(in);
	vmstate_get_bytes(in, t.keys, sizeof(t.keys));
	t.nkeys = vmstate_get_u8(in);
	t.leds = vmstate_get_u8(in);
	t.buttons = vmstate_get_u8(in);
	t.x = (int32_t)vmstate_get_u32(in);
	t.y = (int32_t)vmstate_get_u32(in);
	t.last_x = (int32_t)vmstate_get_u32(in);
	t.last_y = (int32_t)vmstate_get_u32(in);
	t.wheel = (int32_t)vmstate_get_u32(in);
	t.protocol = vmstate_get_u8(in);
	t.idle = vmstate_get_u8(in);
	t.count = vmstate_get_u8(in);
	if (t.count > HID_QUEUE) {
		return -EINVAL;
	}
	for (unsigned i = 0; i < t.count; i++) {
		report_load(in, &t.queue[i], now);
	}
	report_load(in, &t.last, now);
	if (in->failed || t.nkeys > sizeof(t.keys) || t.protocol > 1 || t.x < 0 || t.x > 0x7fff ||
	    t.y < 0 || t.y > 0x7fff) {
		return -EINVAL;
	}
	if (apply) {
		pthread_mutex_lock(&h->lock);
		h->modifiers = t.modifiers;
		memcpy(h->keys, t.keys, sizeof(h->keys));
		h->nkeys = t.nkeys;
		h->leds = t.leds;
		h->buttons = t.buttons;
		h->x = t.x;
		h->y = t.y;
		h->last_x = t.last_x;
		h->last_y = t.last_y;
		h->wheel = t.wheel;
		h->protocol = t.protocol;
		h->idle = t.idle;
		memcpy(h->queue, t.queue, sizeof(h->queue));
		h->head = 0;
		h->count = t.count;
		h->last = t.last;
		pthread_mutex_unlock(&h->lock);
	}
	return 0;
}

static const struct usb_device_ops hid_ops = {
	.reset = hid_reset,
	.control = hid_control,
	.data = hid_data,
	.free = hid_free,
	.save = hid_save,
	.load = hid_load,
};

int usb_hid_new(enum usb_hid_kind kind, const char *id, struct usb_device **ret,
		struct error **errp)
{
	struct usb_hid *h = calloc(1, sizeof(*h));
	bool kbd = kind == USB_HID_KEYBOARD;
	unsigned rlen = kbd ? sizeof(kbd_report_desc) : sizeof(tablet_report_desc);
	uint8_t cfg[34] = {/* configuration: one interface, value 1, remote wakeup, 100 mA */
			   9, USB_DT_CONFIG, 34, 0, 1, 1, 0, 0xa0, 50,
			   /* interface 0: HID, boot interface subclass, keyboard / none */
			   9, USB_DT_INTERFACE, 0, 0, 1, 3, kbd ? 1 : 0, kbd ? 1 : 0, 0,
			   /* HID 1.11, one report descriptor */
			   9, USB_DT_HID, 0x11, 0x01, 0, 1, USB_DT_REPORT, (uint8_t)rlen, 0,
			   /* endpoint 1 IN, interrupt, 8 bytes, every 2^(7-1) microframes (8 ms) */
			   7, USB_DT_ENDPOINT, USB_DIR_IN | 1, 0x03, 8, 0, kbd ? 7 : 4};

	if (!h) {
		return error_set(errp, ENOMEM, "%s: out of memory", kbd ? "usb-kbd" : "usb-tablet");
	}
	pthread_mutex_init(&h->lock, NULL);
	h->kind = kind;
	memcpy(h->config_desc, cfg, sizeof(cfg));
	h->protocol = 1;
	h->dev.ops = &hid_ops;
	snprintf(h->dev.id, sizeof(h->dev.id), "%s", id);
	h->dev.product = kbd ? "QEMU USB Keyboard" : "QEMU USB Tablet";
	h->dev.model = kbd ? "usb-kbd" : "usb-tablet";
	h->dev.speed = USB_SPEED_HIGH;
	h->dev.dev_desc = hid_dev_desc;
	h->dev.qualifier_desc = hid_qualifier;
	h->dev.config_desc = h->config_desc;
	h->dev.config_len = sizeof(h->config_desc);
	h->dev.strings[0] = "QEMU";
	h->dev.strings[1] = h->dev.product;
	h->dev.strings[2] = kbd ? "68284" : "28754";
	h->dev.bootindex = -1;
	*ret = &h->dev;
	return 0;
}

bool usb_hid_is_keyboard(struct usb_device *dev)
{
	return dev->ops == &hid_ops &&
	       container_of(dev, struct usb_hid, dev)->kind == USB_HID_KEYBOARD;
}

bool usb_hid_is_pointer(struct usb_device *dev)
{
	return dev->ops == &hid_ops &&
	       container_of(dev, struct usb_hid, dev)->kind == USB_HID_TABLET;
}

unsigned usb_hid_leds(struct usb_device *dev)
{
	struct usb_hid *h = container_of(dev, struct usb_hid, dev);
	unsigned leds;

	pthread_mutex_lock(&h->lock);
	leds = h->leds;
	pthread_mutex_unlock(&h->lock);
	return leds;
}
