/*
 * usb-storage: a USB mass-storage device with the Bulk-Only Transport (USB
 * Mass Storage Class BOT 1.0) carrying SCSI commands (hw/usb/scsi.c) to a
 * block node. High speed, one interface (class 8, subclass 6 SCSI
 * transparent, protocol 0x50 BOT), bulk IN endpoint 1 and bulk OUT
 * endpoint 2 of 512 bytes, LUN 0 only. Identity as QEMU's usb-storage
 * (46f4:0001, "QEMU USB HARDDRIVE") so guests treat both alike.
 *
 * The BOT state machine: a 31-byte CBW on the OUT pipe, then the data phase
 * the host announced (dCBWDataTransferLength), then a 13-byte CSW on the IN
 * pipe. When the command moves less than the host asked for, IN data is
 * padded with zeros (and the CSW residue says how much was real), OUT data
 * beyond it is discarded. An invalid CBW halts both pipes (BOT 6.6.1) until
 * the host clears them (Reset Recovery).
 *
 * Threads: called with the controller lock held; block I/O is synchronous
 * on the calling thread (a vCPU thread for doorbells), as for IDE.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/iov.h"
#include "common/util.h"
#include "common/vmstate.h"
#include "hw/usb/scsi.h"
#include "hw/usb/usb.h"
#include "vmmd/block.h"

#define CBW_SIGNATURE 0x43425355u
#define CSW_SIGNATURE 0x53425355u
#define CBW_LEN 31
#define CSW_LEN 13
#define EP_IN 1
#define EP_OUT 2
#define MSD_MAX_IOV 1024

enum msd_mode {
	MSD_CBW,
	MSD_DATA_IN,
	MSD_DATA_OUT,
	MSD_CSW,
};

struct usb_msd {
	struct usb_device dev;
	struct block_node *bs;
	struct scsi_disk disk;
	struct scsi_req req;
	enum msd_mode mode;
	uint32_t tag;
	uint32_t dlen;	    /* dCBWDataTransferLength */
	uint32_t host_left; /* bytes of the host's data phase still to move */
	uint32_t moved;	    /* bytes of the command's own data moved */
	uint32_t resp_pos;  /* next byte of req.buf for non-READ data-in */
	uint8_t csw_status; /* 0 passed, 1 failed, 2 phase error */
	char serial[21];
	struct iovec tmp[MSD_MAX_IOV];
};

static const uint8_t msd_dev_desc[18] = {
	18,   USB_DT_DEVICE,
	0x00, 0x02, /* USB 2.0 */
	0,    0,
	0,    64, /* class per interface, EP0 64 bytes */
	0xf4, 0x46,
	0x01, 0x00, /* 46f4:0001 */
	0x00, 0x00,
	1,    2,
	3,    1, /* bcdDevice, strings, one configuration */
};

static const uint8_t msd_qualifier[10] = {10, USB_DT_DEVICE_QUALIFIER, 0x00, 0x02, 0, 0, 0, 64, 1,
					  0};

static const uint8_t msd_config_desc[32] = {
	/* configuration: 32 bytes, one interface, value 1, self powered, 100 mA */
	9,
	USB_DT_CONFIG,
	32,
	0,
	1,
	1,
	0,
	0xc0,
	50,
	/* interface 0: mass storage, SCSI transparent, bulk-only */
	9,
	USB_DT_INTERFACE,
	0,
	0,
	2,
	0x08,
	0x06,
	0x50,
	0,
	/* endpoint 1 IN, bulk, 512 bytes */
	7,
	USB_DT_ENDPOINT,
	USB_DIR_IN | EP_IN,
	0x02,
	0x00,
	0x02,
	0,
	/* endpoint 2 OUT, bulk, 512 bytes */
	7,
	USB_DT_ENDPOINT,
	EP_OUT,
	0x02,
	0x00,
	0x02,
	0,
};

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static void msd_reset(struct usb_device *dev)
{
	struct usb_msd *m = container_of(dev, struct usb_msd, dev);

	m->mode = MSD_CBW;
	m->host_left = 0;
}

static int msd_control(struct usb_device *dev, const struct usb_setup *s, uint8_t *data)
{
	struct usb_msd *m = container_of(dev, struct usb_msd, dev);

	if (s->request_type == 0x21 && s->request == 0xff) { /* Bulk-Only Mass Storage Reset */
		m->mode = MSD_CBW;
		return 0;
	}
	if (s->request_type == 0xa1 && s->request == 0xfe) { /* Get Max LUN */
		if (s->length < 1) {
			return 0;
		}
		data[0] = 0;
		return 1;
	}
	return USB_RET_STALL;
}

/* A CBW arrived in @cbw: run its command and pick the data phase. */
static int msd_cbw(struct usb_msd *m, const uint8_t *cbw)
{
	uint32_t dlen = le32(cbw + 8);
	bool in = cbw[12] & 0x80;
	unsigned cblen = cbw[14] & 0x1f;

	if (le32(cbw) != CBW_SIGNATURE || (cbw[13] & 0xf) != 0 || cblen < 1 || cblen > 16) {
		/* not meaningful: halt both pipes until Reset Recovery */
		m->dev.halted |= usb_halt_bit(USB_DIR_IN | EP_IN) | usb_halt_bit(EP_OUT);
		return USB_RET_STALL;
	}
	m->tag = le32(cbw + 4);
	m->dlen = dlen;
	m->host_left = dlen;
	m->moved = 0;
	m->resp_pos = 0;
	scsi_disk_command(&m->disk, cbw + 15, cblen, &m->req);
	m->csw_status = m->req.status == SCSI_GOOD ? 0 : 1;
	if (m->req.dir != SCSI_DIR_NONE &&
	    (dlen == 0 || in != (m->req.dir == SCSI_DIR_IN) || m->req.len > dlen)) {
		/* the host and the device disagree on the data phase (BOT 6.7 cases 2,3,7,8,10,13) */
		m->csw_status = 2;
		m->req.len = 0;
		m->req.rw = false;
	}
	if (dlen == 0) {
		m->mode = MSD_CSW;
	} else {
		m->mode = in ? MSD_DATA_IN : MSD_DATA_OUT;
	}
	return 0;
}

/* Move @n bytes of the command's data between the disk/response and @p's buffers at @off. */
static void msd_move(struct usb_msd *m, struct usb_packet *p, size_t off, uint32_t n)
{
	size_t got;
	unsigned cnt;

	if (n == 0) {
		return;
	}
	if (!m->req.rw) {
		iov_from_buf(p->iov, p->niov, off, m->req.buf + m->resp_pos, n);
		m->resp_pos += n;
		m->req.len -= n;
		return;
	}
	cnt = iov_slice(p->iov, p->niov, off, n, m->tmp, MSD_MAX_IOV, &got);
	if (got != n || scsi_disk_rw(&m->disk, &m->req, m->tmp, cnt) < 0) {
		m->csw_status = 1;
		m->req.len = 0;
		m->req.rw = false;
		if (p->in) {
			iov_memset(p->iov, p->niov, off, 0, n);
		}
	}
}

static int msd_data(struct usb_device *dev, struct usb_packet *p)
{
	struct usb_msd *m = container_of(dev, struct usb_msd, dev);
	uint8_t buf[CSW_LEN];
	uint32_t n, own;

	if (!p->in && p->ep == EP_OUT) {
		if (m->mode == MSD_CBW) {
			uint8_t cbw[CBW_LEN];

			if (p->len != CBW_LEN) {
				m->dev.halted |=
					usb_halt_bit(USB_DIR_IN | EP_IN) | usb_halt_bit(EP_OUT);
				return USB_RET_STALL;
			}
			iov_to_buf(p->iov, p->niov, 0, cbw, CBW_LEN);
			p->actual = CBW_LEN;
			return msd_cbw(m, cbw);
		}
		if (m->mode != MSD_DATA_OUT) {
			return USB_RET_STALL;
		}
		n = (uint32_t)MIN(p->len, (size_t)m->host_left);
		own = MIN(n, m->req.len);
		if (own && m->req.rw) {
			msd_move(m, p, 0, own);
			m->moved += own;
		}
		m->host_left -= n;
		p->actual = n;
		if (m->host_left == 0) {
			m->mode = MSD_CSW;
		}
		return 0;
	}
	if (!p->in || p->ep != EP_IN) {
		return USB_RET_STALL;
	}
	if (m->mode == MSD_DATA_IN) {
		n = (uint32_t)MIN(p->len, (size_t)m->host_left);
		own = MIN(n, m->req.len);
		msd_move(m, p, 0, own);
		m->moved += own;
		if (n > own) {
			iov_memset(p->iov, p->niov, own, 0, n - own);
		}
		m->host_left -= n;
		p->actual = n;
		if (m->host_left == 0) {
			m->mode = MSD_CSW;
		}
		return 0;
	}
	if (m->mode == MSD_CSW) {
		if (p->len < CSW_LEN) {
			return USB_RET_STALL;
		}
		put_le32(buf, CSW_SIGNATURE);
		put_le32(buf + 4, m->tag);
		put_le32(buf + 8, m->dlen - m->moved);
		buf[12] = m->csw_status;
		iov_from_buf(p->iov, p->niov, 0, buf, CSW_LEN);
		p->actual = CSW_LEN;
		m->mode = MSD_CBW;
		return 0;
	}
	return USB_RET_STALL;
}

static void msd_free(struct usb_device *dev)
{
	struct usb_msd *m = container_of(dev, struct usb_msd, dev);

	block_unref(m->bs);
	free(m);
}

/* The Bulk-Only state between TDs (a command may be between its CBW and CSW) and the sense. */
static void msd_save(struct usb_device *dev, struct vmstate_buf *out)
{
	struct usb_msd *m = container_of(dev, struct usb_msd, dev);

	vmstate_put_u8(out, (uint8_t)m->mode);
	vmstate_put_u32(out, m->tag);
	vmstate_put_u32(out, m->dlen);
	vmstate_put_u32(out, m->host_left);
	vmstate_put_u32(out, m->moved);
	vmstate_put_u32(out, m->resp_pos);
	vmstate_put_u8(out, m->csw_status);
	vmstate_put_u32(out, (uint32_t)m->req.status);
	vmstate_put_u8(out, (uint8_t)m->req.dir);
	vmstate_put_u32(out, m->req.len);
	vmstate_put_bool(out, m->req.rw);
	vmstate_put_u64(out, m->req.offset);
	vmstate_put_blob(out, m->req.buf, sizeof(m->req.buf));
	vmstate_put_bool(out, m->disk.locked);
	vmstate_put_u8(out, m->disk.sense_key);
	vmstate_put_u8(out, m->disk.asc);
	vmstate_put_u8(out, m->disk.ascq);
}

static int msd_load(struct usb_device *dev, struct vmstate_buf *in, bool apply)
{
	struct usb_msd *m = container_of(dev, struct usb_msd, dev);
	uint8_t mode = vmstate_get_u8(in);
	uint32_t tag = vmstate_get_u32(in), dlen = vmstate_get_u32(in);
	uint32_t host_left = vmstate_get_u32(in), moved = vmstate_get_u32(in);
	uint32_t resp_pos = vmstate_get_u32(in);
	uint8_t csw_status = vmstate_get_u8(in);
	struct scsi_req req = {0};
	bool locked;
	uint8_t key, asc, ascq;

	req.status = (int)vmstate_get_u32(in);
	req.dir = (enum scsi_dir)vmstate_get_u8(in);
	req.len = vmstate_get_u32(in);
	req.rw = vmstate_get_bool(in);
	req.offset = vmstate_get_u64(in);
	vmstate_get_blob(in, req.buf, sizeof(req.buf));
	locked = vmstate_get_bool(in);
	key = vmstate_get_u8(in);
	asc = vmstate_get_u8(in);
	ascq = vmstate_get_u8(in);
	if (in->failed || mode > MSD_CSW || csw_status > 2 || host_left > dlen ||
	    resp_pos > sizeof(req.buf) || (!req.rw && req.len > sizeof(req.buf) - resp_pos) ||
	    moved > dlen ||
	    (req.rw && (req.offset > m->disk.blocks * SCSI_BLOCK ||
			req.len > m->disk.blocks * SCSI_BLOCK - req.offset))) {
		return -EINVAL;
	}
	if (apply) {
		m->mode = (enum msd_mode)mode;
		m->tag = tag;
		m->dlen = dlen;
		m->host_left = host_left;
		m->moved = moved;
		m->resp_pos = resp_pos;
		m->csw_status = csw_status;
		m->req = req;
		m->disk.locked = locked;
		m->disk.sense_key = key;
		m->disk.asc = asc;
		m->disk.ascq = ascq;
	}
	return 0;
}

struct block_node *usb_storage_node(struct usb_device *dev)
{
	return dev && dev->ops->free == msd_free ? container_of(dev, struct usb_msd, dev)->bs
						 : NULL;
}

static const struct usb_device_ops msd_ops = {
	.reset = msd_reset,
	.control = msd_control,
	.data = msd_data,
	.free = msd_free,
	.save = msd_save,
	.load = msd_load,
};

int usb_storage_new(const struct usb_storage_config *cfg, struct usb_device **ret,
		    struct error **errp)
{
	struct usb_msd *m = calloc(1, sizeof(*m));
	uint64_t len;

	if (!m) {
		block_unref(cfg->bs);
		return error_set(errp, ENOMEM, "usb-storage: out of memory");
	}
	m->bs = cfg->bs;
	len = m->bs ? block_length(m->bs) : 0;
	if (cfg->serial) {
		snprintf(m->serial, sizeof(m->serial), "%s", cfg->serial);
	} else {
		/* QEMU numbers its drives; a stable serial from the id serves the same purpose */
		snprintf(m->serial, sizeof(m->serial), "%.20s", cfg->id);
	}
	scsi_disk_init(&m->disk, m->bs, len / SCSI_BLOCK,
		       cfg->readonly || (m->bs && block_is_read_only(m->bs)), cfg->removable,
		       m->serial);
	m->dev.ops = &msd_ops;
	snprintf(m->dev.id, sizeof(m->dev.id), "%s", cfg->id);
	m->dev.product = "QEMU USB MSD";
	m->dev.model = "usb-storage";
	m->dev.speed = USB_SPEED_HIGH;
	m->dev.dev_desc = msd_dev_desc;
	m->dev.qualifier_desc = msd_qualifier;
	m->dev.config_desc = msd_config_desc;
	m->dev.config_len = sizeof(msd_config_desc);
	m->dev.strings[0] = "QEMU";
	m->dev.strings[1] = "QEMU USB HARDDRIVE";
	m->dev.strings[2] = m->serial;
	m->dev.bootindex = -1;
	*ret = &m->dev;
	return 0;
}
