/*
 * SCSI disk commands for usb-storage (see scsi.h). Written from SPC-4 and
 * SBC-3: fixed-format sense data, standard INQUIRY data as QEMU's scsi-disk
 * presents it (vendor "QEMU", product "QEMU HARDDISK"), 512-byte blocks.
 *
 * Guest input is bounded: every LBA and length is checked against the
 * capacity (without overflow) before the transport moves any data, a
 * transfer is capped at SCSI_MAX_XFER, responses fit SCSI_MAX_RESPONSE.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/iov.h"
#include "common/util.h"
#include "hw/usb/scsi.h"
#include "vmmd/block.h"

#define SENSE_NO_SENSE 0x0
#define SENSE_NOT_READY 0x2
#define SENSE_MEDIUM_ERROR 0x3
#define SENSE_ILLEGAL_REQUEST 0x5
#define SENSE_DATA_PROTECT 0x7

static uint32_t be16(const uint8_t *p)
{
	return (uint32_t)p[0] << 8 | p[1];
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be64(const uint8_t *p)
{
	return (uint64_t)be32(p) << 32 | be32(p + 4);
}

static void put_be16(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	put_be16(p, v >> 16);
	put_be16(p + 2, v);
}

static void put_be64(uint8_t *p, uint64_t v)
{
	put_be32(p, (uint32_t)(v >> 32));
	put_be32(p + 4, (uint32_t)v);
}

static void pad(char *dst, const char *src, unsigned n)
{
	unsigned l = (unsigned)strlen(src);

	memset(dst, ' ', n);
	memcpy(dst, src, MIN(l, n));
}

void scsi_disk_init(struct scsi_disk *d, struct block_node *bs, uint64_t blocks, bool readonly,
		    bool removable, const char *serial)
{
	memset(d, 0, sizeof(*d));
	d->bs = bs;
	d->blocks = blocks;
	d->readonly = readonly;
	d->removable = removable;
	snprintf(d->serial, sizeof(d->serial), "%s", serial ? serial : "");
}

void scsi_disk_set_sense(struct scsi_disk *d, uint8_t key, uint8_t asc, uint8_t ascq)
{
	d->sense_key = key;
	d->asc = asc;
	d->ascq = ascq;
}

static void fail(struct scsi_disk *d, struct scsi_req *r, uint8_t key, uint8_t asc, uint8_t ascq)
{
	scsi_disk_set_sense(d, key, asc, ascq);
	r->status = SCSI_CHECK_CONDITION;
	r->dir = SCSI_DIR_NONE;
	r->len = 0;
	r->rw = false;
}

static void invalid_field(struct scsi_disk *d, struct scsi_req *r)
{
	fail(d, r, SENSE_ILLEGAL_REQUEST, 0x24, 0x00);
}

/* A data-in response of @avail bytes, cut to the allocation length. */
static void data_in(struct scsi_req *r, uint32_t avail, uint32_t alloc)
{
	r->dir = SCSI_DIR_IN;
	r->len = MIN(MIN(avail, alloc), (uint32_t)SCSI_MAX_RESPONSE);
}

static void inquiry(struct scsi_disk *d, const uint8_t *cdb, struct scsi_req *r)
{
	uint32_t alloc = be16(cdb + 3);
	uint8_t *b = r->buf;

	if (cdb[1] & 1) {
		unsigned n = 0;

		b[1] = cdb[2];
		switch (cdb[2]) {
		case 0x00:
			b[4] = 0x00;
			b[5] = 0x80;
			b[6] = 0x83;
			n = 3;
			break;
		case 0x80:
			n = (unsigned)strlen(d->serial);
			memcpy(b + 4, d->serial, n);
			break;
		case 0x83:
			/* one T10 vendor id designator: "QEMU    " + serial */
			n = (unsigned)strlen(d->serial);
			b[4] = 0x2; /* ASCII */
			b[5] = 0x1; /* T10 vendor id, LU association */
			b[7] = (uint8_t)(8 + n);
			pad((char *)b + 8, "QEMU", 8);
			memcpy(b + 16, d->serial, n);
			n += 12;
			break;
		default:
			invalid_field(d, r);
			return;
		}
		put_be16(b + 2, n);
		data_in(r, 4 + n, alloc);
		return;
	}
	if (cdb[2] != 0) {
		invalid_field(d, r);
		return;
	}
	b[0] = 0x00; /* direct-access block device */
	b[1] = d->removable ? 0x80 : 0;
	b[2] = 5;    /* SPC-3 */
	b[3] = 0x12; /* HiSup, response data format 2 */
	b[4] = 36 - 5;
	b[7] = 0x02; /* CmdQue */
	pad((char *)b + 8, "QEMU", 8);
	pad((char *)b + 16, "QEMU HARDDISK", 16);
	pad((char *)b + 32, "2.5+", 4);
	data_in(r, 36, alloc);
}

/* Mode parameter pages after the header; returns the bytes written. */
static unsigned mode_pages(unsigned page, unsigned pc, uint8_t *p)
{
	unsigned n = 0;

	if (page == 0x08 || page == 0x3f) {
		p[n] = 0x08;
		p[n + 1] = 18;
		if (pc != 1) {
			p[n + 2] = 0x04; /* WCE: a write-back cache */
		}
		n += 20;
	}
	return n;
}

static void mode_sense(struct scsi_disk *d, const uint8_t *cdb, bool ten, struct scsi_req *r)
{
	unsigned page = cdb[2] & 0x3f, pc = cdb[2] >> 6, hdr = ten ? 8 : 4, n;
	uint32_t alloc = ten ? be16(cdb + 7) : cdb[4];
	uint8_t *b = r->buf;

	if (pc == 3) {
		fail(d, r, SENSE_ILLEGAL_REQUEST, 0x39, 0x00); /* saving parameters not supported */
		return;
	}
	if (page != 0x08 && page != 0x3f) {
		invalid_field(d, r);
		return;
	}
	if (cdb[3] != 0 && cdb[3] != 0xff) {
		invalid_field(d, r);
		return;
	}
	n = mode_pages(page, pc, b + hdr);
	if (ten) {
		put_be16(b, hdr + n - 2);
		b[3] = d->readonly ? 0x80 : 0;
	} else {
		b[0] = (uint8_t)(hdr + n - 1);
		b[2] = d->readonly ? 0x80 : 0;
	}
	data_in(r, hdr + n, alloc);
}

static void read_write(struct scsi_disk *d, uint64_t lba, uint64_t blocks, bool write,
		       struct scsi_req *r)
{
	if (lba > d->blocks || blocks > d->blocks - lba) {
		fail(d, r, SENSE_ILLEGAL_REQUEST, 0x21, 0x00); /* LBA out of range */
		return;
	}
	if (blocks * SCSI_BLOCK > SCSI_MAX_XFER) {
		invalid_field(d, r);
		return;
	}
	if (write && d->readonly) {
		fail(d, r, SENSE_DATA_PROTECT, 0x27, 0x00); /* write protected */
		return;
	}
	r->rw = true;
	r->offset = lba * SCSI_BLOCK;
	r->len = (uint32_t)(blocks * SCSI_BLOCK);
	r->dir = r->len ? (write ? SCSI_DIR_OUT : SCSI_DIR_IN) : SCSI_DIR_NONE;
}

/* The CDB length each group of operation codes has (SPC-4 4.2.5.1). */
static unsigned cdb_size(uint8_t op)
{
	switch (op >> 5) {
	case 0:
		return 6;
	case 1:
	case 2:
		return 10;
	case 4:
		return 16;
	case 5:
		return 12;
	default:
		return 0;
	}
}

void scsi_disk_command(struct scsi_disk *d, const uint8_t *cdb, unsigned cdb_len,
		       struct scsi_req *r)
{
	uint64_t last = d->blocks ? d->blocks - 1 : 0;
	uint8_t *b = r->buf;
	int ret;

	memset(r, 0, sizeof(*r));
	if (cdb_len == 0 || cdb_len > 16 || cdb_len < cdb_size(cdb[0])) {
		invalid_field(d, r);
		return;
	}
	if (cdb[0] != 0x03) {
		scsi_disk_set_sense(d, SENSE_NO_SENSE, 0, 0);
	}
	switch (cdb[0]) {
	case 0x00: /* TEST UNIT READY */
	case 0x2f: /* VERIFY (10): the medium is always readable */
		break;
	case 0x03: /* REQUEST SENSE: fixed format */
		b[0] = 0x70;
		b[2] = d->sense_key;
		b[7] = 10;
		b[12] = d->asc;
		b[13] = d->ascq;
		data_in(r, 18, cdb[4]);
		scsi_disk_set_sense(d, SENSE_NO_SENSE, 0, 0);
		break;
	case 0x12: /* INQUIRY */
		inquiry(d, cdb, r);
		break;
	case 0x1a: /* MODE SENSE (6) */
		mode_sense(d, cdb, false, r);
		break;
	case 0x5a: /* MODE SENSE (10) */
		mode_sense(d, cdb, true, r);
		break;
	case 0x1b: /* START STOP UNIT: the medium stays */
		break;
	case 0x1e: /* PREVENT ALLOW MEDIUM REMOVAL */
		d->locked = cdb[4] & 1;
		break;
	case 0x25: /* READ CAPACITY (10) */
		put_be32(b, last > 0xffffffffull ? 0xffffffffu : (uint32_t)last);
		put_be32(b + 4, SCSI_BLOCK);
		data_in(r, 8, 8);
		break;
	case 0x9e: /* SERVICE ACTION IN (16) */
		if ((cdb[1] & 0x1f) != 0x10) {
			invalid_field(d, r);
			break;
		}
		put_be64(b, last);
		put_be32(b + 8, SCSI_BLOCK);
		data_in(r, 32, be32(cdb + 10));
		break;
	case 0x08: /* READ (6) */
	case 0x0a: /* WRITE (6) */
		read_write(d, (uint64_t)(cdb[1] & 0x1f) << 16 | be16(cdb + 2),
			   cdb[4] ? cdb[4] : 256, cdb[0] == 0x0a, r);
		break;
	case 0x28: /* READ (10) */
	case 0x2a: /* WRITE (10) */
		read_write(d, be32(cdb + 2), be16(cdb + 7), cdb[0] == 0x2a, r);
		break;
	case 0x88: /* READ (16) */
	case 0x8a: /* WRITE (16) */
		read_write(d, be64(cdb + 2), be32(cdb + 10), cdb[0] == 0x8a, r);
		break;
	case 0x35: /* SYNCHRONIZE CACHE (10) */
	case 0x91: /* SYNCHRONIZE CACHE (16) */
		ret = d->bs ? block_flush(d->bs) : 0;
		if (ret < 0) {
			fail(d, r, SENSE_MEDIUM_ERROR, 0x0c, 0x00); /* write error */
		}
		break;
	case 0xa0: /* REPORT LUNS: LUN 0 only */
		put_be32(b, 8);
		data_in(r, 16, be32(cdb + 6));
		break;
	default:
		fail(d, r, SENSE_ILLEGAL_REQUEST, 0x20, 0x00); /* invalid command operation code */
		break;
	}
}

int scsi_disk_rw(struct scsi_disk *d, struct scsi_req *r, const struct iovec *iov, unsigned cnt)
{
	size_t len = iov_size(iov, cnt);
	int ret;

	if (!r->rw || len > r->len) {
		return -EINVAL;
	}
	if (!d->bs) {
		ret = -ENODEV;
	} else if (r->dir == SCSI_DIR_IN) {
		ret = block_preadv(d->bs, r->offset, iov, cnt);
	} else {
		ret = block_pwritev(d->bs, r->offset, iov, cnt);
	}
	if (ret < 0) {
		/* unrecovered read error / write error */
		scsi_disk_set_sense(d, SENSE_MEDIUM_ERROR, r->dir == SCSI_DIR_IN ? 0x11 : 0x0c, 0);
		r->status = SCSI_CHECK_CONDITION;
		return ret;
	}
	r->offset += len;
	r->len -= (uint32_t)len;
	return 0;
}
