/*
 * Standard USB requests (USB 2.0 chapter 9) shared by the device models:
 * GET_DESCRIPTOR (device, configuration, string, device qualifier),
 * SET_ADDRESS, GET/SET_CONFIGURATION, GET/SET_INTERFACE (alternate 0 only),
 * GET_STATUS and CLEAR/SET_FEATURE (remote wakeup, endpoint halt).
 *
 * Threads: see usb.h (called with the controller's lock held).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "common/vmstate.h"
#include "hw/usb/usb.h"

static int copy_desc(uint8_t *data, unsigned max, const uint8_t *desc, unsigned len)
{
	len = MIN(len, max);
	memcpy(data, desc, len);
	return (int)len;
}

/* String descriptor @idx (0: the language list) as UTF-16LE. */
static int string_desc(struct usb_device *dev, unsigned idx, uint8_t *data, unsigned max)
{
	uint8_t buf[2 + 2 * 126];
	const char *s;
	unsigned n = 0;

	if (idx == 0) {
		static const uint8_t langs[] = {4, USB_DT_STRING, 0x09, 0x04}; /* en-US */

		return copy_desc(data, max, langs, sizeof(langs));
	}
	if (idx > USB_MAX_STRINGS || !(s = dev->strings[idx - 1])) {
		return USB_RET_STALL;
	}
	for (; s[n] && n < 126; n++) {
		buf[2 + 2 * n] = (uint8_t)s[n];
		buf[3 + 2 * n] = 0;
	}
	buf[0] = (uint8_t)(2 + 2 * n);
	buf[1] = USB_DT_STRING;
	return copy_desc(data, max, buf, buf[0]);
}

static int get_descriptor(struct usb_device *dev, const struct usb_setup *s, uint8_t *data)
{
	unsigned type = s->value >> 8, idx = s->value & 0xff;

	switch (type) {
	case USB_DT_DEVICE:
		return copy_desc(data, s->length, dev->dev_desc, 18);
	case USB_DT_CONFIG:
		if (idx != 0) {
			return USB_RET_STALL;
		}
		return copy_desc(data, s->length, dev->config_desc, dev->config_len);
	case USB_DT_STRING:
		return string_desc(dev, idx, data, s->length);
	case USB_DT_DEVICE_QUALIFIER:
		if (!dev->qualifier_desc) {
			return USB_RET_STALL;
		}
		return copy_desc(data, s->length, dev->qualifier_desc, 10);
	default:
		return USB_RET_STALL;
	}
}

/* Whether endpoint address @ep exists in the configuration descriptor. */
static bool has_endpoint(struct usb_device *dev, uint8_t ep)
{
	unsigned off = 0;

	while (off + 2 <= dev->config_len && dev->config_desc[off] >= 2) {
		const uint8_t *d = dev->config_desc + off;

		if (d[1] == USB_DT_ENDPOINT && off + 7 <= dev->config_len && d[2] == ep) {
			return true;
		}
		off += d[0];
	}
	return false;
}

int usb_device_control(struct usb_device *dev, const struct usb_setup *s, uint8_t *data)
{
	unsigned recip = s->request_type & USB_RECIP_MASK;
	uint8_t cfg_value = dev->config_len >= 6 ? dev->config_desc[5] : 1;

	if ((s->request_type & USB_TYPE_MASK) != USB_TYPE_STANDARD) {
		return dev->ops->control ? dev->ops->control(dev, s, data) : USB_RET_STALL;
	}
	switch (s->request) {
	case USB_REQ_GET_DESCRIPTOR:
		if (!(s->request_type & USB_DIR_IN)) {
			return USB_RET_STALL;
		}
		if (recip == USB_RECIP_INTERFACE && dev->ops->control) {
			return dev->ops->control(dev, s, data); /* HID report descriptors */
		}
		return get_descriptor(dev, s, data);
	case USB_REQ_SET_ADDRESS:
		if (s->value > 127) {
			return USB_RET_STALL;
		}
		dev->addr = (uint8_t)s->value;
		return 0;
	case USB_REQ_GET_CONFIGURATION:
		if (s->length < 1) {
			return 0;
		}
		data[0] = dev->config;
		return 1;
	case USB_REQ_SET_CONFIGURATION:
		if ((s->value & 0xff) != 0 && (s->value & 0xff) != cfg_value) {
			return USB_RET_STALL;
		}
		dev->config = (uint8_t)s->value;
		dev->halted = 0;
		return 0;
	case USB_REQ_GET_INTERFACE:
		if (s->length < 1) {
			return 0;
		}
		data[0] = 0;
		return 1;
	case USB_REQ_SET_INTERFACE:
		return s->value == 0 ? 0 : USB_RET_STALL;
	case USB_REQ_GET_STATUS: {
		uint16_t st = 0;

		if (recip == USB_RECIP_DEVICE) {
			st = (uint16_t)(dev->remote_wakeup << 1);
			if (dev->config_len >= 8 && (dev->config_desc[7] & 0x40)) {
				st |= 1; /* self powered */
			}
		} else if (recip == USB_RECIP_ENDPOINT) {
			st = (dev->halted & usb_halt_bit((uint8_t)s->index)) != 0;
		}
		if (s->length < 2) {
			return s->length ? copy_desc(data, 1, (const uint8_t *)&st, 1) : 0;
		}
		data[0] = (uint8_t)st;
		data[1] = (uint8_t)(st >> 8);
		return 2;
	}
	case USB_REQ_CLEAR_FEATURE:
	case USB_REQ_SET_FEATURE: {
		bool set = s->request == USB_REQ_SET_FEATURE;

		if (recip == USB_RECIP_DEVICE && s->value == USB_FEATURE_REMOTE_WAKEUP) {
			dev->remote_wakeup = set;
			return 0;
		}
		if (recip == USB_RECIP_ENDPOINT && s->value == USB_FEATURE_ENDPOINT_HALT) {
			uint8_t ep = (uint8_t)s->index;

			if ((ep & 0xf) == 0) {
				return 0;
			}
			if (!has_endpoint(dev, ep)) {
				return USB_RET_STALL;
			}
			if (set) {
				dev->halted |= usb_halt_bit(ep);
			} else {
				dev->halted &= ~usb_halt_bit(ep);
				if (dev->ops->clear_halt) {
					dev->ops->clear_halt(dev, ep);
				}
			}
			return 0;
		}
		return USB_RET_STALL;
	}
	default:
		return USB_RET_STALL;
	}
}

int usb_device_data(struct usb_device *dev, struct usb_packet *p)
{
	p->actual = 0;
	if (dev->config == 0) {
		return USB_RET_STALL;
	}
	if (dev->halted & usb_halt_bit((uint8_t)(p->ep | (p->in ? USB_DIR_IN : 0)))) {
		return USB_RET_STALL;
	}
	return dev->ops->data ? dev->ops->data(dev, p) : USB_RET_STALL;
}

void usb_device_reset(struct usb_device *dev)
{
	dev->addr = 0;
	dev->config = 0;
	dev->remote_wakeup = false;
	dev->halted = 0;
	if (dev->ops->reset) {
		dev->ops->reset(dev);
	}
}

void usb_device_wakeup(struct usb_device *dev, uint8_t ep)
{
	if (dev->wakeup) {
		dev->wakeup(dev->wakeup_opaque, dev, ep);
	}
}

void usb_device_save(struct usb_device *dev, struct vmstate_buf *out)
{
	vmstate_put_u8(out, dev->addr);
	vmstate_put_u8(out, dev->config);
	vmstate_put_bool(out, dev->remote_wakeup);
	vmstate_put_u32(out, dev->halted);
	if (dev->ops->save) {
		dev->ops->save(dev, out);
	}
}

int usb_device_load(struct usb_device *dev, struct vmstate_buf *in, bool apply)
{
	uint8_t addr = vmstate_get_u8(in), config = vmstate_get_u8(in);
	bool rw = vmstate_get_bool(in);
	uint32_t halted = vmstate_get_u32(in);

	if (in->failed || addr > 127 || config > 1) {
		return -EINVAL;
	}
	if (apply) {
		dev->addr = addr;
		dev->config = config;
		dev->remote_wakeup = rw;
		dev->halted = halted;
	}
	return dev->ops->load ? dev->ops->load(dev, in, apply) : 0;
}

void usb_device_free(struct usb_device *dev)
{
	if (dev && dev->ops->free) {
		dev->ops->free(dev);
	}
}
