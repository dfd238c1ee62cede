/*
 * PIIX-style IDE controller: ATA disks (PIO and bus-master DMA, LBA28/LBA48,
 * CHS) and ATAPI CD-ROMs (the MMC commands firmware and common drivers
 * use). Register-level model after the ATA/ATAPI-6 and SFF-8038i specs.
 *
 * Threads: every port access and every attach/media change takes ide->lock.
 * Disk I/O runs on the VM's I/O thread once ide_use_io_thread() was called
 * (the device class does): bus-master DMA transfers, cache flushes and the
 * loading or storing of each PIO (ATA and ATAPI) data block. The vCPU that
 * starts one only records it (ch->io), shows BSY and kicks the I/O thread,
 * which submits asynchronous block requests (a buffer at a time) and
 * completes the step from their callbacks, taking the lock only between
 * requests.
 * While a channel has an operation in flight its status registers (and the
 * bus-master registers) read without waiting; any other access to that
 * channel waits until the operation is done (one guest command at most:
 * the interface has one command in flight per channel). Without an I/O
 * thread (the unit tests' fake machine) the same steps run synchronously
 * on the vCPU thread.
 *
 * Guest input is bounded everywhere: sector counts are bounded by the disk
 * size before any I/O, transfers go through one fixed-size buffer per drive,
 * PRD tables are walked at most IDE_MAX_PRD entries and each guest range is
 * translated with guest_mem_ptr().
 */
#include "config.h"

#include <endian.h>
#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/util.h"
#include "common/vmstate.h"
#include "hw/pci/ide.h"
#include "hw/device.h"
#include "hw/devices.h"
#include "hw/pci/pci.h"
#include "vmmd/block.h"
#include "vmmd/vm.h"

#define IDE_BUF_SIZE (128u * 1024)
#define IDE_MAX_PRD 8192 /* a PRD table may not cross a 64 KiB boundary */
#define IDE_MAX_MULT 16
#define CD_SECTOR 2048

/* Status register */
#define ST_ERR 0x01
#define ST_DRQ 0x08
#define ST_DSC 0x10
#define ST_DF 0x20
#define ST_DRDY 0x40
#define ST_BSY 0x80
/* Error register */
#define ER_ABRT 0x04
#define ER_IDNF 0x10
#define ER_UNC 0x40
/* Device control */
#define CTL_NIEN 0x02
#define CTL_SRST 0x04
#define CTL_HOB 0x80
/* Bus master */
#define BM_CMD_START 0x01
#define BM_CMD_TO_MEM 0x08
#define BM_ST_ACTIVE 0x01
#define BM_ST_ERROR 0x02
#define BM_ST_INTR 0x04
/* ATAPI interrupt reason (sector count register) */
#define ATAPI_COD 0x01
#define ATAPI_IO 0x02
/* SCSI sense keys and ASCs */
#define SENSE_NONE 0x00
#define SENSE_NOT_READY 0x02
#define SENSE_ILLEGAL_REQUEST 0x05
#define SENSE_UNIT_ATTENTION 0x06
#define SENSE_MEDIUM_ERROR 0x03
#define ASC_INV_OPCODE 0x20
#define ASC_LBA_OUT_OF_RANGE 0x21
#define ASC_INV_FIELD_IN_CDB 0x24
#define ASC_MEDIUM_MAY_HAVE_CHANGED 0x28
#define ASC_MEDIUM_NOT_PRESENT 0x3a
#define ASC_READ_ERROR 0x11
#define ASC_MEDIUM_REMOVAL_PREVENTED 0x53

enum ide_xfer {
	XFER_NONE,
	XFER_PIO_IN,	/* ATA read: guest drains buf block by block */
	XFER_PIO_OUT,	/* ATA write: guest fills buf */
	XFER_PACKET,	/* ATAPI: guest writes the 12-byte command */
	XFER_ATAPI_IN,	/* ATAPI data-in by PIO */
	XFER_DMA_READ,	/* ATA read DMA waiting for / running on the bus master */
	XFER_DMA_WRITE, /* ATA write DMA */
	XFER_ATAPI_DMA, /* ATAPI data-in by DMA */
};

struct ide_channel;

struct ide_drive {
	struct ide_channel *ch;
	unsigned unit;
	bool present, cd;
	struct block_node *bs;
	uint64_t nb_sectors; /* 512-byte sectors (ATA) */
	uint16_t cyls, heads, secs;
	uint8_t status, error;
	uint8_t mult; /* sectors per DRQ block for READ/WRITE MULTIPLE; 0 = disabled */
	bool lba48_cmd;
	char serial[21];
	/* CD-ROM */
	bool locked;
	/*
	 * The host moved the tray: the next command that needs the medium,
	 * once one is there, fails NOT READY (changed), the one after UNIT
	 * ATTENTION (unit_attention), as QEMU's drive reports a change.
	 */
	bool changed;
	bool unit_attention;
	bool tray_open;	    /* the medium (bs), if any, stays in the open tray */
	bool new_media;	    /* GET EVENT STATUS NOTIFICATION: a medium was loaded */
	bool eject_request; /* ...: the host asked for the locked tray to open */
	uint8_t sense_key, asc;
	/* Transfer */
	enum ide_xfer xfer;
	uint8_t *buf;
	uint32_t pos, drq_end, end; /* guest at pos; block ends at drq_end; data ends at end */
	uint64_t lba;		    /* next sector to load/store (512 or 2048 bytes) */
	uint32_t remaining;	    /* sectors still to load/store */
	uint32_t block;		    /* sectors per DRQ block (ATA PIO) */
	uint32_t byte_limit;	    /* ATAPI bytes per DRQ */
};

/* An operation a channel runs on the I/O thread. */
enum ide_io {
	IO_NONE,
	IO_DMA,	     /* the bus-master transfer of the current drive */
	IO_FLUSH,    /* FLUSH CACHE (EXT) */
	IO_PIO_IN,   /* load the next DRQ block of an ATA PIO read */
	IO_PIO_OUT,  /* store the DRQ block the guest wrote */
	IO_ATAPI_IN, /* load the next buffer of an ATAPI PIO read */
};

struct ide_channel {
	struct ide *ide;
	unsigned index, gsi;
	uint16_t cmd_base, ctl_base;
	struct ide_drive drive[2];
	unsigned cur;
	uint8_t feature, nsector, sector, lcyl, hcyl;
	uint8_t hob_feature, hob_nsector, hob_sector, hob_lcyl, hob_hcyl;
	uint8_t select, ctl;
	bool irq;
	uint8_t bm_cmd, bm_status;
	uint32_t bm_prd;
	/* The DMA engine's place in the PRD table (ide_dma_copy). */
	uint32_t prd_addr, prd_left, n_prd;
	uint64_t prd_cur;
	bool prd_eot;
	/* I/O-thread operation (lock held to change; see the file comment) */
	enum ide_io io;
	struct ide_drive *io_drive;
	uint32_t io_n; /* sectors of the request in flight */
	bool io_submitted;
	struct iovec io_iov;
};

struct ide {
	pthread_mutex_t lock;
	pthread_cond_t idle; /* a channel's operation ended */
	struct vm *vm;
	struct iobus *bus;
	struct guest_mem *mem;
	struct ide_channel ch[2];
	bool registered;
	/* the I/O thread (ide_use_io_thread); NULL aio: everything synchronous */
	struct block_aio_ctx *aio;
	int efd;
	struct event *ev;
	/* DEVICE_TRAY_MOVED (ide_set_tray_handler) */
	ide_tray_fn *tray_fn;
	void *tray_opaque;
};

static bool ide_channel_empty(struct ide_channel *ch)
{
	return !ch->drive[0].present && !ch->drive[1].present;
}

static struct ide_drive *ide_cur(struct ide_channel *ch)
{
	return &ch->drive[ch->cur];
}

static void ide_update_irq(struct ide_channel *ch)
{
	vm_irq_set_level(ch->ide->vm, ch->gsi, ch->irq && !(ch->ctl & CTL_NIEN));
}

static void ide_raise(struct ide_channel *ch)
{
	ch->irq = true;
	ch->bm_status |= BM_ST_INTR;
	ide_update_irq(ch);
}

static void ide_lower(struct ide_channel *ch)
{
	ch->irq = false;
	ide_update_irq(ch);
}

static void ide_set_signature(struct ide_drive *d)
{
	struct ide_channel *ch = d->ch;

	ch->nsector = 1;
	ch->sector = 1;
	if (d->cd) {
		ch->lcyl = 0x14;
		ch->hcyl = 0xeb;
	} else {
		ch->lcyl = 0;
		ch->hcyl = 0;
	}
}

static void ide_drive_reset(struct ide_drive *d)
{
	d->xfer = XFER_NONE;
	d->pos = d->drq_end = d->end = 0;
	d->remaining = 0;
	d->mult = IDE_MAX_MULT;
	d->error = 0x01; /* diagnostic: no error */
	d->status = d->cd ? 0 : (ST_DRDY | ST_DSC);
}

static void ide_channel_reset(struct ide_channel *ch)
{
	ch->select = 0xa0;
	ch->cur = 0;
	ch->feature = ch->hob_feature = 0;
	ch->hob_nsector = ch->hob_sector = ch->hob_lcyl = ch->hob_hcyl = 0;
	for (unsigned i = 0; i < 2; i++) {
		ide_drive_reset(&ch->drive[i]);
	}
	ide_set_signature(&ch->drive[0]);
	ch->irq = false;
	ide_update_irq(ch);
}

/* Completion helpers */

static void ide_cmd_ok(struct ide_drive *d)
{
	d->xfer = XFER_NONE;
	d->status = ST_DRDY | ST_DSC;
	d->error = 0;
	ide_raise(d->ch);
}

static void ide_abort(struct ide_drive *d)
{
	d->xfer = XFER_NONE;
	d->status = ST_DRDY | ST_ERR;
	d->error = ER_ABRT;
	ide_raise(d->ch);
}

static void ide_io_error(struct ide_drive *d, int r)
{
	d->xfer = XFER_NONE;
	d->status = ST_DRDY | ST_ERR;
	d->error = r == -EINVAL ? ER_IDNF : ER_UNC;
	ide_raise(d->ch);
}

/* Taskfile addressing */

static uint64_t ide_get_sector(struct ide_drive *d)
{
	struct ide_channel *ch = d->ch;

	if (d->lba48_cmd) {
		return (uint64_t)ch->hob_hcyl << 40 | (uint64_t)ch->hob_lcyl << 32 |
		       (uint64_t)ch->hob_sector << 24 | (uint64_t)ch->hcyl << 16 |
		       (uint64_t)ch->lcyl << 8 | ch->sector;
	}
	if (ch->select & 0x40) {
		return (uint64_t)(ch->select & 0x0f) << 24 | (uint64_t)ch->hcyl << 16 |
		       (uint64_t)ch->lcyl << 8 | ch->sector;
	}
	/* CHS; sector numbers start at 1. An invalid sector maps past the end. */
	if (ch->sector == 0 || ch->sector > d->secs || (ch->select & 0x0f) >= d->heads) {
		return UINT64_MAX;
	}
	return (((uint64_t)(ch->hcyl << 8 | ch->lcyl) * d->heads + (ch->select & 0x0f)) * d->secs) +
	       ch->sector - 1;
}

static void ide_set_sector(struct ide_drive *d, uint64_t s)
{
	struct ide_channel *ch = d->ch;

	if (d->lba48_cmd) {
		ch->sector = s;
		ch->lcyl = s >> 8;
		ch->hcyl = s >> 16;
		ch->hob_sector = s >> 24;
		ch->hob_lcyl = s >> 32;
		ch->hob_hcyl = s >> 40;
	} else if (ch->select & 0x40) {
		ch->select = (ch->select & 0xf0) | ((s >> 24) & 0x0f);
		ch->hcyl = s >> 16;
		ch->lcyl = s >> 8;
		ch->sector = s;
	} else {
		uint32_t cyl = s / (d->heads * d->secs);
		uint32_t r = s % (d->heads * d->secs);

		ch->hcyl = cyl >> 8;
		ch->lcyl = cyl;
		ch->select = (ch->select & 0xf0) | ((r / d->secs) & 0x0f);
		ch->sector = r % d->secs + 1;
	}
}

static uint32_t ide_get_count(struct ide_drive *d)
{
	struct ide_channel *ch = d->ch;

	if (d->lba48_cmd) {
		uint32_t n = (uint32_t)ch->hob_nsector << 8 | ch->nsector;

		return n ? n : 65536;
	}
	return ch->nsector ? ch->nsector : 256;
}

/* IDENTIFY */

static void put_str(uint16_t *words, unsigned first, unsigned nwords, const char *s)
{
	for (unsigned i = 0; i < nwords * 2; i++) {
		char c = *s ? *s++ : ' ';
		uint8_t *b = (uint8_t *)&words[first + i / 2];

		/* ATA strings: the first character in the high byte of each word */
		b[(i & 1) ^ 1] = (uint8_t)c;
	}
}

static void ide_identify(struct ide_drive *d, uint16_t *w)
{
	uint64_t lba28 = MIN(d->nb_sectors, 0x0fffffffull);
	uint32_t chs = (uint32_t)d->cyls * d->heads * d->secs;

	memset(w, 0, 512);
	w[0] = 0x0040;
	w[1] = d->cyls;
	w[3] = d->heads;
	w[4] = 512 * d->secs;
	w[5] = 512;
	w[6] = d->secs;
	put_str(w, 10, 10, d->serial);
	w[20] = 3;
	w[21] = 512;
	w[22] = 4;
	put_str(w, 23, 4, "1.0");
	put_str(w, 27, 20, "VMMD HARDDISK");
	w[47] = 0x8000 | IDE_MAX_MULT;
	w[49] = 0x0300; /* LBA, DMA */
	w[50] = 0x4000;
	w[51] = 0x200;
	w[52] = 0x200;
	w[53] = 0x0007;
	w[54] = d->cyls;
	w[55] = d->heads;
	w[56] = d->secs;
	w[57] = chs & 0xffff;
	w[58] = chs >> 16;
	if (d->mult) {
		w[59] = 0x100 | d->mult;
	}
	w[60] = lba28 & 0xffff;
	w[61] = lba28 >> 16;
	w[63] = 0x0007;
	w[64] = 0x0003;
	w[65] = w[66] = w[67] = w[68] = 120;
	w[80] = 0x00f0; /* ATA-4..7 */
	w[81] = 0x0016;
	w[82] = 0x4000 | 0x0020 | 0x0001;	   /* NOP not listed; write cache, SMART */
	w[83] = 0x4000 | 0x2000 | 0x1000 | 0x0400; /* FLUSH EXT, FLUSH, LBA48 */
	w[84] = 0x4000;
	w[85] = 0x0020;
	w[86] = 0x2000 | 0x1000 | 0x0400;
	w[87] = 0x4000;
	w[88] = 0x203f; /* UDMA 0-5 supported, mode 5 selected */
	w[93] = 0x6001 | 0x4000;
	w[100] = d->nb_sectors & 0xffff;
	w[101] = (d->nb_sectors >> 16) & 0xffff;
	w[102] = (d->nb_sectors >> 32) & 0xffff;
	w[103] = (d->nb_sectors >> 48) & 0xffff;
	for (unsigned i = 0; i < 256; i++) {
		w[i] = htole16(w[i]);
	}
}

static void ide_identify_packet(struct ide_drive *d, uint16_t *w)
{
	memset(w, 0, 512);
	w[0] = 0x85c0; /* ATAPI, CD-ROM, removable, 12-byte packets, 50us DRQ */
	put_str(w, 10, 10, d->serial);
	w[20] = 3;
	w[21] = 512;
	w[22] = 4;
	put_str(w, 23, 4, "1.0");
	put_str(w, 27, 20, "VMMD DVD-ROM");
	w[48] = 1;
	w[49] = 0x0300;
	w[53] = 0x0007;
	w[62] = 0x0007;
	w[63] = 0x0007;
	w[64] = 0x0003;
	w[65] = 0x00b4;
	w[66] = 0x00b4;
	w[67] = 0x012c;
	w[68] = 0x00b4;
	w[71] = 30;
	w[72] = 30;
	w[80] = 0x001e;
	w[88] = 0x203f;
	for (unsigned i = 0; i < 256; i++) {
		w[i] = htole16(w[i]);
	}
}

/* ATA PIO */

static void ide_start_drq(struct ide_drive *d, uint32_t len)
{
	d->pos = 0;
	d->drq_end = len;
	d->end = len;
	d->status = ST_DRDY | ST_DSC | ST_DRQ;
}

static bool ide_io_async(struct ide_drive *d, enum ide_io op);

/* A PIO read block is in the buffer: DRQ and interrupt. */
static void ide_pio_in_loaded(struct ide_drive *d, uint32_t n)
{
	d->lba += n;
	d->remaining -= n;
	ide_set_sector(d, d->lba - 1);
	d->xfer = XFER_PIO_IN;
	ide_start_drq(d, n * 512);
	ide_raise(d->ch);
}

/* Load the next block of a PIO read and interrupt (on the I/O thread if any); or finish. */
static void ide_pio_in_next(struct ide_drive *d)
{
	uint32_t n = MIN(d->remaining, d->block);
	int r;

	if (d->remaining == 0) {
		d->xfer = XFER_NONE;
		d->status = ST_DRDY | ST_DSC;
		return;
	}
	if (ide_io_async(d, IO_PIO_IN)) {
		return;
	}
	r = block_pread(d->bs, d->lba * 512, d->buf, (size_t)n * 512);
	if (r < 0) {
		ide_io_error(d, r);
		return;
	}
	ide_pio_in_loaded(d, n);
}

static void ide_pio_out_next(struct ide_drive *d)
{
	uint32_t n = MIN(d->remaining, d->block);

	d->xfer = XFER_PIO_OUT;
	ide_start_drq(d, n * 512);
}

/* A PIO write block is on the disk: the next DRQ, or the end. */
static void ide_pio_out_stored(struct ide_drive *d, uint32_t n)
{
	d->lba += n;
	d->remaining -= n;
	ide_set_sector(d, d->lba - 1);
	if (d->remaining) {
		ide_pio_out_next(d);
		ide_raise(d->ch);
	} else {
		ide_cmd_ok(d);
	}
}

/* The guest wrote a whole block of a PIO write (stored on the I/O thread if any). */
static void ide_pio_out_block_done(struct ide_drive *d)
{
	uint32_t n = d->drq_end / 512;
	int r;

	if (ide_io_async(d, IO_PIO_OUT)) {
		return;
	}
	r = block_pwrite(d->bs, d->lba * 512, d->buf, (size_t)n * 512);
	if (r < 0) {
		ide_io_error(d, r);
		return;
	}
	ide_pio_out_stored(d, n);
}

static bool ide_range_ok(struct ide_drive *d, uint64_t lba, uint32_t count)
{
	return lba != UINT64_MAX && range_within(lba, count, d->nb_sectors);
}

static void ide_dma_maybe_run(struct ide_channel *ch);

static void ide_rw(struct ide_drive *d, bool write, bool dma, uint32_t block)
{
	uint64_t lba = ide_get_sector(d);
	uint32_t count = ide_get_count(d);

	if (!d->bs || !ide_range_ok(d, lba, count)) {
		d->xfer = XFER_NONE;
		d->status = ST_DRDY | ST_ERR;
		d->error = ER_IDNF | ER_ABRT;
		ide_raise(d->ch);
		return;
	}
	if (write && block_is_read_only(d->bs)) {
		ide_abort(d);
		return;
	}
	d->lba = lba;
	d->remaining = count;
	d->block = block;
	if (dma) {
		d->xfer = write ? XFER_DMA_WRITE : XFER_DMA_READ;
		d->status = ST_DRDY | ST_DSC | ST_DRQ | ST_BSY;
		ide_dma_maybe_run(d->ch);
	} else if (write) {
		ide_pio_out_next(d);
	} else {
		ide_pio_in_next(d);
	}
}

/* ATAPI */

static void atapi_sense(struct ide_drive *d, uint8_t key, uint8_t asc)
{
	d->sense_key = key;
	d->asc = asc;
}

static void atapi_error(struct ide_drive *d, uint8_t key, uint8_t asc)
{
	atapi_sense(d, key, asc);
	d->xfer = XFER_NONE;
	d->status = ST_DRDY | ST_ERR;
	d->error = (uint8_t)(key << 4);
	d->ch->nsector = ATAPI_IO | ATAPI_COD;
	ide_raise(d->ch);
}

static void atapi_ok(struct ide_drive *d)
{
	atapi_sense(d, SENSE_NONE, 0);
	d->xfer = XFER_NONE;
	d->status = ST_DRDY | ST_DSC;
	d->error = 0;
	d->ch->nsector = ATAPI_IO | ATAPI_COD;
	ide_raise(d->ch);
}

/* A medium the drive can read: in the tray, the tray closed. */
static bool atapi_medium(const struct ide_drive *d)
{
	return d->bs && !d->tray_open;
}

/* The tray of @d moved (lock held): tell the machine (DEVICE_TRAY_MOVED). */
static void atapi_tray_moved(struct ide_drive *d, bool open)
{
	struct ide *ide = d->ch->ide;

	d->tray_open = open;
	if (ide->tray_fn) {
		ide->tray_fn(ide->tray_opaque, d->ch->index * 2 + d->unit, open);
	}
}

static uint32_t atapi_sectors(struct ide_drive *d)
{
	uint64_t n = atapi_medium(d) ? block_length(d->bs) / CD_SECTOR : 0;

	return (uint32_t)MIN(n, UINT32_MAX);
}

static void atapi_pio_drq(struct ide_drive *d);

/* Next DRQ block of an ATAPI PIO data-in; loads more sectors when the buffer is drained. */
static void atapi_pio_next(struct ide_drive *d)
{
	if (d->pos >= d->end && d->remaining) {
		uint32_t n = MIN(d->remaining, IDE_BUF_SIZE / CD_SECTOR);
		int r;

		if (ide_io_async(d, IO_ATAPI_IN)) {
			return;
		}
		r = block_pread(d->bs, d->lba * CD_SECTOR, d->buf, (size_t)n * CD_SECTOR);
		if (r < 0) {
			atapi_error(d, SENSE_MEDIUM_ERROR, ASC_READ_ERROR);
			return;
		}
		d->lba += n;
		d->remaining -= n;
		d->pos = 0;
		d->end = n * CD_SECTOR;
	}
	atapi_pio_drq(d);
}

/* The buffer holds data (or the transfer is over): the next DRQ block, or the end. */
static void atapi_pio_drq(struct ide_drive *d)
{
	struct ide_channel *ch = d->ch;
	uint32_t size;

	if (d->pos >= d->end) {
		atapi_ok(d);
		return;
	}
	size = MIN(d->byte_limit, d->end - d->pos);
	d->drq_end = d->pos + size;
	ch->lcyl = size & 0xff;
	ch->hcyl = size >> 8;
	ch->nsector = ATAPI_IO;
	d->xfer = XFER_ATAPI_IN;
	d->status = ST_DRDY | ST_DSC | ST_DRQ;
	ide_raise(ch);
}

/* Send @len bytes already in d->buf (plus d->remaining sectors from d->lba) to the host. */
static void atapi_send(struct ide_drive *d, uint32_t len, bool dma)
{
	d->pos = 0;
	d->end = len;
	if (len == 0 && d->remaining == 0) {
		atapi_ok(d);
		return;
	}
	if (dma) {
		d->xfer = XFER_ATAPI_DMA;
		d->status = ST_DRDY | ST_DSC | ST_DRQ | ST_BSY;
		ide_dma_maybe_run(d->ch);
	} else {
		atapi_pio_next(d);
	}
}

static void put_be16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = (uint8_t)v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = (uint8_t)v;
}

static uint16_t get_be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void lba_to_msf(uint8_t *p, uint32_t lba)
{
	lba += 150;
	p[0] = (uint8_t)(lba / (75 * 60));
	p[1] = (lba / 75) % 60;
	p[2] = lba % 75;
}

static uint32_t atapi_read_toc(struct ide_drive *d, const uint8_t *cdb, uint8_t *buf)
{
	bool msf = cdb[1] & 2;
	unsigned format = cdb[9] >> 6 ? cdb[9] >> 6 : cdb[2] & 0x0f;
	uint8_t *p = buf + 4;
	uint32_t len;

	memset(buf, 0, 64);
	if (format == 0) {
		if (cdb[6] > 1 && cdb[6] != 0xaa) {
			return UINT32_MAX;
		}
		buf[2] = 1; /* first track */
		buf[3] = 1; /* last track */
		if (cdb[6] <= 1) {
			p[1] = 0x14; /* ADR 1, data track */
			p[2] = 1;
			if (msf) {
				lba_to_msf(p + 5, 0);
			}
			p += 8;
		}
		p[1] = 0x14;
		p[2] = 0xaa; /* lead-out */
		if (msf) {
			lba_to_msf(p + 5, atapi_sectors(d));
		} else {
			put_be32(p + 4, atapi_sectors(d));
		}
		p += 8;
	} else if (format == 1) {
		/* session information: one session starting at track 1, LBA 0 */
		buf[2] = 1;
		buf[3] = 1;
		p[1] = 0x14;
		p[2] = 1;
		p += 8;
	} else {
		return UINT32_MAX;
	}
	len = (uint32_t)(p - buf);
	put_be16(buf, (uint16_t)(len - 2));
	return len;
}

static uint32_t atapi_mode_sense(struct ide_drive *d, const uint8_t *cdb, uint8_t *buf)
{
	unsigned page = cdb[2] & 0x3f, pc = cdb[2] >> 6;
	uint8_t *p = buf + 8;

	if (pc == 3) {
		return UINT32_MAX; /* saved values not supported */
	}
	memset(buf, 0, 64);
	buf[2] = atapi_medium(d) ? 0x01 : 0x70; /* medium type: 120 mm data disc, or door open */
	if (page == 0x01 || page == 0x3f) {
		p[0] = 0x01;
		p[1] = 0x06;
		p[3] = pc == 1 ? 0 : 5; /* read retry count */
		p += 8;
	}
	if (page == 0x2a || page == 0x3f) {
		p[0] = 0x2a;
		p[1] = 0x14;
		p[2] = 0x3b; /* reads CD-R/RW, DVD-ROM... */
		p[4] = 0x71;
		p[5] = 0x60;
		p[6] = 0x29 | (d->locked ? 0x02 : 0); /* eject, lock, tray loader */
		put_be16(p + 8, 706);
		put_be16(p + 10, 2);
		put_be16(p + 12, 512);
		put_be16(p + 14, 706);
		p += 22;
	}
	if (p == buf + 8) {
		return UINT32_MAX;
	}
	put_be16(buf, (uint16_t)(p - buf - 2));
	return (uint32_t)(p - buf);
}

static uint32_t atapi_get_configuration(struct ide_drive *d, uint8_t *buf)
{
	uint16_t profile = atapi_medium(d) ? (atapi_sectors(d) > 1440 * 1024 / 4 ? 0x10 : 0x08) : 0;
	uint8_t *p = buf + 8;

	memset(buf, 0, 64);
	put_be16(buf + 6, profile);
	/* Profile list feature: DVD-ROM and CD-ROM */
	put_be16(p, 0x0000);
	p[2] = 0x03; /* persistent, current */
	p[3] = 8;
	put_be16(p + 4, 0x10);
	p[6] = profile == 0x10;
	put_be16(p + 8, 0x08);
	p[10] = profile == 0x08;
	p += 12;
	put_be32(buf, (uint32_t)(p - buf - 4));
	return (uint32_t)(p - buf);
}

static void atapi_packet(struct ide_drive *d)
{
	uint8_t cdb[12];
	uint8_t *buf = d->buf;
	bool dma = d->ch->feature & 1;
	uint32_t len, alloc;
	uint64_t lba, count;

	memcpy(cdb, d->buf, sizeof(cdb));
	d->remaining = 0;

	/* Commands that work without a medium and do not report unit attention. */
	switch (cdb[0]) {
	case 0x03: /* REQUEST SENSE */
		alloc = cdb[4];
		memset(buf, 0, 18);
		buf[0] = 0x70;
		buf[2] = d->sense_key;
		buf[7] = 10;
		buf[12] = d->asc;
		atapi_sense(d, SENSE_NONE, 0);
		atapi_send(d, MIN(alloc, 18u), dma);
		return;
	case 0x12: /* INQUIRY */
		alloc = get_be16(cdb + 3);
		memset(buf, 0, 36);
		buf[0] = 0x05; /* CD/DVD device */
		buf[1] = 0x80; /* removable */
		buf[2] = 0x00;
		buf[3] = 0x21; /* ATAPI, response format 1 */
		buf[4] = 31;
		memcpy(buf + 8, "VMMD    ", 8);
		memcpy(buf + 16, "VMMD DVD-ROM    ", 16);
		memcpy(buf + 32, "1.0 ", 4);
		atapi_send(d, MIN(alloc, 36u), dma);
		return;
	case 0x46: /* GET CONFIGURATION */
		alloc = get_be16(cdb + 7);
		len = atapi_get_configuration(d, buf);
		atapi_send(d, MIN(alloc, len), dma);
		return;
	case 0x4a: /* GET EVENT STATUS NOTIFICATION: polled only, media class */
		if (!(cdb[1] & 1)) {
			atapi_error(d, SENSE_ILLEGAL_REQUEST, ASC_INV_FIELD_IN_CDB);
			return;
		}
		alloc = get_be16(cdb + 7);
		memset(buf, 0, 8);
		put_be16(buf, 6);
		buf[2] = 0x04; /* media class */
		buf[3] = 0x10; /* supported: media */
		/* media status: tray open (no event reported then), or medium present */
		buf[5] = d->tray_open ? 0x01 : d->bs ? 0x02 : 0x00;
		if (!d->tray_open && d->new_media) {
			buf[4] = 0x02; /* new media */
			d->new_media = false;
		} else if (!d->tray_open && d->eject_request) {
			buf[4] = 0x01; /* eject request */
			d->eject_request = false;
		}
		atapi_send(d, MIN(alloc, 8u), dma);
		return;
	case 0x1b: /* START STOP UNIT: with LoEj, open (Start 0) or close the tray */
		if ((cdb[4] & 0xf0) == 0 && (cdb[4] & 2)) {
			bool open = !(cdb[4] & 1);

			if (open && !d->tray_open && d->locked) {
				atapi_error(d, d->bs ? SENSE_NOT_READY : SENSE_ILLEGAL_REQUEST,
					    ASC_MEDIUM_REMOVAL_PREVENTED);
				return;
			}
			if (d->tray_open != open) {
				atapi_tray_moved(d, open); /* the medium stays in the tray */
			}
		}
		atapi_ok(d);
		return;
	case 0x1e: /* PREVENT ALLOW MEDIUM REMOVAL */
		d->locked = cdb[4] & 1;
		atapi_ok(d);
		return;
	case 0xbd: /* MECHANISM STATUS */
		alloc = get_be16(cdb + 8);
		memset(buf, 0, 8);
		buf[1] = d->tray_open ? 0x10 : 0; /* door open */
		atapi_send(d, MIN(alloc, 8u), dma);
		return;
	default:
		break;
	}

	if (atapi_medium(d) && d->changed) {
		d->changed = false;
		atapi_error(d, SENSE_NOT_READY, ASC_MEDIUM_NOT_PRESENT);
		return;
	}
	if (atapi_medium(d) && d->unit_attention) {
		d->unit_attention = false;
		atapi_error(d, SENSE_UNIT_ATTENTION, ASC_MEDIUM_MAY_HAVE_CHANGED);
		return;
	}
	switch (cdb[0]) {
	case 0x00: /* TEST UNIT READY */
	case 0x25: /* READ CAPACITY */
	case 0x28: /* READ(10) */
	case 0xa8: /* READ(12) */
	case 0x43: /* READ TOC */
	case 0x2b: /* SEEK */
	case 0x51: /* READ DISC INFORMATION */
		if (!atapi_medium(d)) {
			atapi_error(d, SENSE_NOT_READY, ASC_MEDIUM_NOT_PRESENT);
			return;
		}
		break;
	default:
		break;
	}

	switch (cdb[0]) {
	case 0x00:
	case 0x2b:
	case 0xbb: /* SET CD SPEED */
		atapi_ok(d);
		return;
	case 0x25:
		put_be32(buf, atapi_sectors(d) - 1);
		put_be32(buf + 4, CD_SECTOR);
		atapi_send(d, 8, dma);
		return;
	case 0x28:
	case 0xa8:
		lba = get_be32(cdb + 2);
		count = cdb[0] == 0x28 ? get_be16(cdb + 7) : get_be32(cdb + 6);
		if (lba + count > atapi_sectors(d)) {
			atapi_error(d, SENSE_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
			return;
		}
		d->lba = lba;
		d->remaining = (uint32_t)count;
		atapi_send(d, 0, dma);
		return;
	case 0x43:
		alloc = get_be16(cdb + 7);
		len = atapi_read_toc(d, cdb, buf);
		if (len == UINT32_MAX) {
			atapi_error(d, SENSE_ILLEGAL_REQUEST, ASC_INV_FIELD_IN_CDB);
			return;
		}
		atapi_send(d, MIN(alloc, len), dma);
		return;
	case 0x5a: /* MODE SENSE(10) */
		alloc = get_be16(cdb + 7);
		len = atapi_mode_sense(d, cdb, buf);
		if (len == UINT32_MAX) {
			atapi_error(d, SENSE_ILLEGAL_REQUEST, ASC_INV_FIELD_IN_CDB);
			return;
		}
		atapi_send(d, MIN(alloc, len), dma);
		return;
	case 0x51: /* READ DISC INFORMATION */
		alloc = get_be16(cdb + 7);
		memset(buf, 0, 34);
		put_be16(buf, 32);
		buf[2] = 0x0e; /* last session complete, disc finalized */
		buf[3] = 1;
		buf[4] = 1;
		buf[5] = 1;
		buf[6] = 1;
		atapi_send(d, MIN(alloc, 34u), dma);
		return;
	default:
		atapi_error(d, SENSE_ILLEGAL_REQUEST, ASC_INV_OPCODE);
		return;
	}
}

/* Bus-master DMA */

static void ide_dma_begin(struct ide_channel *ch)
{
	ch->prd_addr = ch->bm_prd;
	ch->prd_left = ch->n_prd = 0;
	ch->prd_cur = 0;
	ch->prd_eot = false;
}

/*
 * Move @len bytes between @buf and the guest buffers of the PRD table, from
 * where the engine is. False if the table ends, loops on or points outside
 * guest RAM first.
 */
static bool ide_dma_copy(struct ide_channel *ch, uint8_t *buf, uint32_t len, bool to_mem)
{
	uint32_t pos = 0;

	while (pos < len) {
		uint32_t chunk;
		uint8_t *p;

		if (ch->prd_left == 0) {
			uint32_t prd[2];

			if (ch->prd_eot || ch->n_prd >= IDE_MAX_PRD ||
			    guest_mem_read(ch->ide->mem, ch->prd_addr, prd, sizeof(prd)) < 0) {
				return false;
			}
			ch->n_prd++;
			ch->prd_addr += 8;
			ch->prd_cur = le32toh(prd[0]) & ~1u;
			ch->prd_left = le32toh(prd[1]) & 0xfffe;
			if (ch->prd_left == 0) {
				ch->prd_left = 0x10000;
			}
			ch->prd_eot = le32toh(prd[1]) & 0x80000000u;
		}
		chunk = MIN(ch->prd_left, len - pos);
		p = guest_mem_ptr(ch->ide->mem, ch->prd_cur, chunk);
		if (!p) {
			return false;
		}
		if (to_mem) {
			memcpy(p, buf + pos, chunk);
		} else {
			memcpy(buf + pos, p, chunk);
		}
		pos += chunk;
		ch->prd_cur += chunk;
		ch->prd_left -= chunk;
	}
	return true;
}

static uint32_t ide_dma_sector(struct ide_drive *d)
{
	return d->xfer == XFER_ATAPI_DMA ? CD_SECTOR : 512;
}

/* The transfer ended (fault: the PRD table; r < 0: the disk). */
static void ide_dma_end(struct ide_channel *ch, struct ide_drive *d, bool fault, int r)
{
	/* As QEMU does, the engine goes idle at the end even if PRDs are left over. */
	ch->bm_status &= ~BM_ST_ACTIVE;
	if (fault) {
		ch->bm_status |= BM_ST_ERROR;
	}
	d->pos = d->end = 0;
	if (d->xfer == XFER_ATAPI_DMA) {
		if (fault) {
			atapi_error(d, SENSE_ILLEGAL_REQUEST, ASC_INV_FIELD_IN_CDB);
		} else if (r < 0) {
			atapi_error(d, SENSE_MEDIUM_ERROR, ASC_READ_ERROR);
		} else {
			atapi_ok(d);
		}
	} else if (fault) {
		ide_abort(d);
	} else if (r < 0) {
		ide_io_error(d, r);
	} else {
		ide_set_sector(d, d->lba - 1);
		ide_cmd_ok(d);
	}
}

/*
 * Move the data of the pending DMA transfer between the disk and the PRD
 * table's guest buffers, a buffer at a time, here (no I/O thread).
 */
static void ide_dma_run(struct ide_channel *ch, struct ide_drive *d)
{
	bool to_mem = d->xfer != XFER_DMA_WRITE;
	uint32_t sector = ide_dma_sector(d);
	bool fault = false;
	int r = 0;

	if (!!(ch->bm_cmd & BM_CMD_TO_MEM) != to_mem) {
		ide_dma_end(ch, d, true, 0);
		return;
	}
	ide_dma_begin(ch);
	/* ATAPI: the reply already in the buffer goes first, then the sectors */
	if (d->end > d->pos && !ide_dma_copy(ch, d->buf + d->pos, d->end - d->pos, true)) {
		ide_dma_end(ch, d, true, 0);
		return;
	}
	while (d->remaining > 0) {
		uint32_t n = MIN(d->remaining, IDE_BUF_SIZE / sector);

		if (to_mem) {
			r = block_pread(d->bs, d->lba * sector, d->buf, (size_t)n * sector);
			if (r < 0) {
				break;
			}
			fault = !ide_dma_copy(ch, d->buf, n * sector, true);
		} else {
			fault = !ide_dma_copy(ch, d->buf, n * sector, false);
			if (!fault) {
				r = block_pwrite(d->bs, d->lba * sector, d->buf,
						 (size_t)n * sector);
			}
		}
		if (fault || r < 0) {
			break;
		}
		d->lba += n;
		d->remaining -= n;
	}
	ide_dma_end(ch, d, fault, r);
}

/* ---- operations on the I/O thread ---- */

/* The channel's operation is over (lock held): waiters go on. */
static void ide_io_end(struct ide_channel *ch)
{
	ch->io = IO_NONE;
	ch->io_drive = NULL;
	pthread_cond_broadcast(&ch->ide->idle);
}

/* Lock held: until this channel has no operation in flight. */
static void ide_wait_idle(struct ide_channel *ch)
{
	while (ch->io != IO_NONE) {
		pthread_cond_wait(&ch->ide->idle, &ch->ide->lock);
	}
}

/* vCPU thread, lock held: hand @op to the I/O thread; the drive shows BSY. */
static void ide_io_start(struct ide_channel *ch, struct ide_drive *d, enum ide_io op)
{
	uint64_t one = 1;

	ch->io = op;
	ch->io_drive = d;
	ch->io_submitted = false;
	d->status |= ST_BSY;
	if (write(ch->ide->efd, &one, sizeof(one)) < 0) {
		/* The counter cannot overflow: one write per operation. */
	}
}

/* Lock held: run @op for @d on the I/O thread if there is one (true), else the caller does it. */
static bool ide_io_async(struct ide_drive *d, enum ide_io op)
{
	if (!d->ch->ide->aio) {
		return false;
	}
	d->status = ST_DRDY | ST_DSC; /* DRQ off while the block moves; BSY below */
	ide_io_start(d->ch, d, op);
	return true;
}

static void ide_io_step(struct ide_channel *ch);

/* I/O thread: a request of the channel's operation completed. */
static void ide_io_done(void *opaque, int ret)
{
	struct ide_channel *ch = opaque;
	struct ide_drive *d;

	pthread_mutex_lock(&ch->ide->lock);
	d = ch->io_drive;
	ch->io_submitted = false;
	if (ch->io == IO_PIO_IN || ch->io == IO_PIO_OUT || ch->io == IO_ATAPI_IN) {
		enum ide_io op = ch->io;

		ide_io_end(ch);
		if (ret < 0 && op == IO_ATAPI_IN) {
			atapi_error(d, SENSE_MEDIUM_ERROR, ASC_READ_ERROR);
		} else if (ret < 0) {
			ide_io_error(d, ret);
		} else if (op == IO_PIO_IN) {
			ide_pio_in_loaded(d, ch->io_n);
		} else if (op == IO_PIO_OUT) {
			ide_pio_out_stored(d, ch->io_n);
		} else {
			d->lba += ch->io_n;
			d->remaining -= ch->io_n;
			d->pos = 0;
			d->end = ch->io_n * CD_SECTOR;
			atapi_pio_drq(d);
		}
	} else if (ch->io == IO_FLUSH) {
		if (ret < 0) {
			ide_io_error(d, ret);
		} else {
			ide_cmd_ok(d);
		}
		ide_io_end(ch);
	} else if (ret < 0) {
		ide_dma_end(ch, d, false, ret);
		ide_io_end(ch);
	} else {
		bool to_mem = d->xfer != XFER_DMA_WRITE;

		if (to_mem && !ide_dma_copy(ch, d->buf, ch->io_n * ide_dma_sector(d), true)) {
			ide_dma_end(ch, d, true, 0);
			ide_io_end(ch);
		} else {
			d->lba += ch->io_n;
			d->remaining -= ch->io_n;
			ide_io_step(ch);
		}
	}
	pthread_mutex_unlock(&ch->ide->lock);
}

/* I/O thread, lock held: submit the operation's next request, or end it. */
static void ide_io_step(struct ide_channel *ch)
{
	struct ide_drive *d = ch->io_drive;
	enum block_op op = BLOCK_OP_FLUSH;
	uint64_t offset = 0;
	unsigned cnt = 0;
	int r;

	if (ch->io == IO_PIO_IN || ch->io == IO_PIO_OUT || ch->io == IO_ATAPI_IN) {
		uint32_t sector = ch->io == IO_ATAPI_IN ? CD_SECTOR : 512;

		ch->io_n = ch->io == IO_PIO_IN	  ? MIN(d->remaining, d->block)
			   : ch->io == IO_PIO_OUT ? d->drq_end / 512
						  : MIN(d->remaining, IDE_BUF_SIZE / CD_SECTOR);
		op = ch->io == IO_PIO_OUT ? BLOCK_OP_WRITE : BLOCK_OP_READ;
		offset = d->lba * sector;
		ch->io_iov = (struct iovec){d->buf, (size_t)ch->io_n * sector};
		cnt = 1;
	} else if (ch->io == IO_DMA) {
		bool to_mem = d->xfer != XFER_DMA_WRITE;
		uint32_t sector = ide_dma_sector(d);
		uint32_t n = MIN(d->remaining, IDE_BUF_SIZE / sector);

		if (n == 0) {
			ide_dma_end(ch, d, false, 0);
			ide_io_end(ch);
			return;
		}
		if (!to_mem && !ide_dma_copy(ch, d->buf, n * sector, false)) {
			ide_dma_end(ch, d, true, 0);
			ide_io_end(ch);
			return;
		}
		op = to_mem ? BLOCK_OP_READ : BLOCK_OP_WRITE;
		offset = d->lba * sector;
		ch->io_n = n;
		ch->io_iov = (struct iovec){d->buf, (size_t)n * sector};
		cnt = 1;
	}
	ch->io_submitted = true;
	r = block_aio_submit(d->bs, ch->ide->aio, op, offset, &ch->io_iov, cnt, 0, 0, ide_io_done,
			     ch);
	if (r < 0) {
		ch->io_submitted = false;
		if (ch->io == IO_DMA) {
			ide_dma_end(ch, d, false, r);
		} else if (ch->io == IO_ATAPI_IN) {
			atapi_error(d, SENSE_MEDIUM_ERROR, ASC_READ_ERROR);
		} else {
			ide_io_error(d, r);
		}
		ide_io_end(ch);
	}
}

/* I/O thread: a vCPU started an operation (the eventfd). */
static void ide_io_kick(evutil_socket_t fd, short what, void *opaque)
{
	struct ide *ide = opaque;
	uint64_t v;

	(void)what;
	if (read(fd, &v, sizeof(v)) < 0) {
		/* Nothing pending. */
	}
	pthread_mutex_lock(&ide->lock);
	for (unsigned c = 0; c < 2; c++) {
		if (ide->ch[c].io != IO_NONE && !ide->ch[c].io_submitted) {
			ide_io_step(&ide->ch[c]);
		}
	}
	pthread_mutex_unlock(&ide->lock);
}

unsigned ide_busy(struct ide *ide)
{
	unsigned n = 0;

	pthread_mutex_lock(&ide->lock);
	for (unsigned c = 0; c < 2; c++) {
		n += ide->ch[c].io != IO_NONE;
	}
	pthread_mutex_unlock(&ide->lock);
	return n;
}

int ide_use_io_thread(struct ide *ide, struct event_base *base, struct error **errp)
{
	int r;

	ide->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (ide->efd < 0) {
		return error_set_errno(errp, errno, "ide: eventfd");
	}
	r = block_aio_ctx_new(base, &ide->aio, errp);
	if (r < 0) {
		close(ide->efd);
		ide->efd = -1;
		return r;
	}
	ide->ev = event_new(base, ide->efd, EV_READ | EV_PERSIST, ide_io_kick, ide);
	if (!ide->ev || event_add(ide->ev, NULL) < 0) {
		if (ide->ev) {
			event_free(ide->ev);
			ide->ev = NULL;
		}
		block_aio_ctx_free(ide->aio);
		ide->aio = NULL;
		close(ide->efd);
		ide->efd = -1;
		return error_set(errp, ENOMEM, "ide: out of memory");
	}
	return 0;
}

static void ide_dma_maybe_run(struct ide_channel *ch)
{
	struct ide_drive *d = ide_cur(ch);

	if (!(ch->bm_cmd & BM_CMD_START)) {
		return;
	}
	if (d->xfer != XFER_DMA_READ && d->xfer != XFER_DMA_WRITE && d->xfer != XFER_ATAPI_DMA) {
		return;
	}
	if (!ch->ide->aio) {
		ide_dma_run(ch, d);
		return;
	}
	if (!!(ch->bm_cmd & BM_CMD_TO_MEM) != (d->xfer != XFER_DMA_WRITE)) {
		ide_dma_end(ch, d, true, 0); /* wrong direction: no I/O */
		return;
	}
	ide_dma_begin(ch);
	/* ATAPI: the reply already in the buffer goes first (no I/O) */
	if (d->end > d->pos && !ide_dma_copy(ch, d->buf + d->pos, d->end - d->pos, true)) {
		ide_dma_end(ch, d, true, 0);
		return;
	}
	if (d->remaining == 0) {
		ide_dma_end(ch, d, false, 0);
		return;
	}
	d->pos = d->end = 0;
	ide_io_start(ch, d, IO_DMA);
}

/* Commands */

static void ide_exec(struct ide_channel *ch, uint8_t cmd)
{
	struct ide_drive *d = ide_cur(ch);
	bool lba48 = false;

	if (!d->present) {
		return;
	}
	/* A new command aborts any transfer in progress. */
	d->xfer = XFER_NONE;
	d->lba48_cmd = false;

	switch (cmd) {
	case 0x24: /* READ SECTORS EXT */
	case 0x29: /* READ MULTIPLE EXT */
	case 0x25: /* READ DMA EXT */
	case 0x34: /* WRITE SECTORS EXT */
	case 0x39: /* WRITE MULTIPLE EXT */
	case 0x35: /* WRITE DMA EXT */
	case 0x42: /* READ VERIFY SECTORS EXT */
	case 0xea: /* FLUSH CACHE EXT */
	case 0x27: /* READ NATIVE MAX ADDRESS EXT */
		lba48 = true;
		break;
	default:
		break;
	}
	if (d->cd) {
		switch (cmd) {
		case 0xa0: /* PACKET */
			d->byte_limit = (uint32_t)ch->hcyl << 8 | ch->lcyl;
			if (d->byte_limit == 0 || d->byte_limit == 0xffff) {
				d->byte_limit = 0xfffe;
			}
			d->byte_limit &= ~1u;
			d->xfer = XFER_PACKET;
			ch->nsector = ATAPI_COD;
			ide_start_drq(d, 12);
			return;
		case 0xa1: /* IDENTIFY PACKET DEVICE */
			ide_identify_packet(d, (uint16_t *)d->buf);
			d->xfer = XFER_PIO_IN;
			d->remaining = 0;
			ide_start_drq(d, 512);
			ide_raise(ch);
			return;
		case 0x08: /* DEVICE RESET */
			ide_drive_reset(d);
			ide_set_signature(d);
			return;
		case 0x90: /* EXECUTE DEVICE DIAGNOSTIC */
			ide_set_signature(d);
			d->status = 0;
			d->error = 0x01;
			ide_raise(ch);
			return;
		case 0xef: /* SET FEATURES */
		case 0xe0: /* STANDBY IMMEDIATE */
		case 0xe1: /* IDLE IMMEDIATE */
			ide_cmd_ok(d);
			return;
		case 0xe5: /* CHECK POWER MODE */
			ch->nsector = 0xff;
			ide_cmd_ok(d);
			return;
		default:
			/* ATA commands abort with the ATAPI signature in place */
			ide_set_signature(d);
			ide_abort(d);
			return;
		}
	}
	d->lba48_cmd = lba48;
	switch (cmd) {
	case 0xec: /* IDENTIFY DEVICE */
		ide_identify(d, (uint16_t *)d->buf);
		d->xfer = XFER_PIO_IN;
		d->remaining = 0;
		ide_start_drq(d, 512);
		ide_raise(ch);
		return;
	case 0x20: /* READ SECTORS */
	case 0x21:
	case 0x24:
		ide_rw(d, false, false, 1);
		return;
	case 0xc4: /* READ MULTIPLE */
	case 0x29:
		if (!d->mult) {
			ide_abort(d);
			return;
		}
		ide_rw(d, false, false, d->mult);
		return;
	case 0x30: /* WRITE SECTORS */
	case 0x31:
	case 0x34:
		ide_rw(d, true, false, 1);
		return;
	case 0xc5: /* WRITE MULTIPLE */
	case 0x39:
		if (!d->mult) {
			ide_abort(d);
			return;
		}
		ide_rw(d, true, false, d->mult);
		return;
	case 0xc8: /* READ DMA */
	case 0xc9:
	case 0x25:
		ide_rw(d, false, true, 1);
		return;
	case 0xca: /* WRITE DMA */
	case 0xcb:
	case 0x35:
		ide_rw(d, true, true, 1);
		return;
	case 0x40: /* READ VERIFY SECTORS */
	case 0x41:
	case 0x42: {
		uint64_t lba = ide_get_sector(d);

		if (!ide_range_ok(d, lba, ide_get_count(d))) {
			d->status = ST_DRDY | ST_ERR;
			d->error = ER_IDNF;
			ide_raise(ch);
			return;
		}
		ide_set_sector(d, lba + ide_get_count(d) - 1);
		ide_cmd_ok(d);
		return;
	}
	case 0xe7: /* FLUSH CACHE */
	case 0xea: {
		int r;

		if (ch->ide->aio && d->bs) {
			d->status = ST_DRDY | ST_DSC;
			ide_io_start(ch, d, IO_FLUSH);
			return;
		}
		r = block_flush(d->bs);

		if (r < 0) {
			ide_io_error(d, r);
		} else {
			ide_cmd_ok(d);
		}
		return;
	}
	case 0xc6: /* SET MULTIPLE MODE */
		if (ch->nsector > IDE_MAX_MULT || (ch->nsector & (ch->nsector - 1))) {
			ide_abort(d);
			return;
		}
		d->mult = ch->nsector;
		ide_cmd_ok(d);
		return;
	case 0xef: /* SET FEATURES */
		switch (ch->feature) {
		case 0x02: /* write cache on/off: always write-back to the block layer */
		case 0x82:
		case 0x03: /* transfer mode */
		case 0x66:
		case 0xcc:
		case 0xaa:
		case 0x55:
			ide_cmd_ok(d);
			return;
		default:
			ide_abort(d);
			return;
		}
	case 0x91: /* INITIALIZE DEVICE PARAMETERS */
		/* Only the native translation is supported; the request is accepted. */
		ide_cmd_ok(d);
		return;
	case 0x10 ... 0x1f: /* RECALIBRATE */
	case 0x70:	    /* SEEK */
	case 0xe0:	    /* STANDBY IMMEDIATE */
	case 0xe1:	    /* IDLE IMMEDIATE */
	case 0xe2:	    /* STANDBY */
	case 0xe3:	    /* IDLE */
		ide_cmd_ok(d);
		return;
	case 0xe5: /* CHECK POWER MODE */
		ch->nsector = 0xff;
		ide_cmd_ok(d);
		return;
	case 0xf8: /* READ NATIVE MAX ADDRESS */
	case 0x27:
		ide_set_sector(d, d->nb_sectors - 1);
		ide_cmd_ok(d);
		return;
	case 0x90: /* EXECUTE DEVICE DIAGNOSTIC */
		ide_set_signature(d);
		d->status = ST_DRDY | ST_DSC;
		d->error = 0x01;
		ide_raise(ch);
		return;
	default:
		ide_abort(d);
		return;
	}
}

/* Data port */

static void ide_data_block_done(struct ide_drive *d)
{
	switch (d->xfer) {
	case XFER_PIO_IN:
		ide_pio_in_next(d);
		break;
	case XFER_PIO_OUT:
		ide_pio_out_block_done(d);
		break;
	case XFER_PACKET:
		atapi_packet(d);
		break;
	case XFER_ATAPI_IN:
		d->pos = d->drq_end;
		atapi_pio_next(d);
		break;
	default:
		break;
	}
}

static uint32_t ide_data_read(struct ide_channel *ch, unsigned size)
{
	struct ide_drive *d = ide_cur(ch);
	uint32_t v = 0;

	if (!(d->status & ST_DRQ) || (d->xfer != XFER_PIO_IN && d->xfer != XFER_ATAPI_IN)) {
		return 0;
	}
	for (unsigned i = 0; i < size && d->pos < d->drq_end; i++) {
		v |= (uint32_t)d->buf[d->pos++] << (8 * i);
	}
	if (d->pos >= d->drq_end) {
		ide_data_block_done(d);
	}
	return v;
}

static void ide_data_write(struct ide_channel *ch, uint32_t v, unsigned size)
{
	struct ide_drive *d = ide_cur(ch);

	if (!(d->status & ST_DRQ) || (d->xfer != XFER_PIO_OUT && d->xfer != XFER_PACKET)) {
		return;
	}
	for (unsigned i = 0; i < size && d->pos < d->drq_end; i++) {
		d->buf[d->pos++] = (uint8_t)(v >> (8 * i));
	}
	if (d->pos >= d->drq_end) {
		d->status &= ~ST_DRQ;
		ide_data_block_done(d);
	}
}

/* Port handlers */

static uint64_t ide_cmd_read(void *opaque, uint64_t offset, unsigned size)
{
	struct ide_channel *ch = opaque;
	struct ide_drive *d;
	bool hob;
	uint64_t v = 0;

	pthread_mutex_lock(&ch->ide->lock);
	if (offset != 7) {
		ide_wait_idle(ch); /* the status register answers BSY meanwhile */
	}
	d = ide_cur(ch);
	hob = ch->ctl & CTL_HOB;
	if (offset == 0) {
		v = ide_channel_empty(ch) ? 0 : ide_data_read(ch, size);
		goto out;
	}
	if (ide_channel_empty(ch)) {
		goto out;
	}
	switch (offset) {
	case 1:
		v = (!d->present && ch->cur) ? 0 : hob ? ch->hob_feature : d->error;
		break;
	case 2:
		v = hob ? ch->hob_nsector : ch->nsector;
		break;
	case 3:
		v = hob ? ch->hob_sector : ch->sector;
		break;
	case 4:
		v = hob ? ch->hob_lcyl : ch->lcyl;
		break;
	case 5:
		v = hob ? ch->hob_hcyl : ch->hcyl;
		break;
	case 6:
		v = ch->select;
		break;
	case 7:
		v = (!d->present && ch->cur) ? 0 : d->status;
		ide_lower(ch);
		break;
	default:
		break;
	}
out:
	pthread_mutex_unlock(&ch->ide->lock);
	return v;
}

static void ide_cmd_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
	struct ide_channel *ch = opaque;
	uint8_t v = (uint8_t)value;

	pthread_mutex_lock(&ch->ide->lock);
	ide_wait_idle(ch);
	if (offset == 0) {
		ide_data_write(ch, (uint32_t)value, size);
		goto out;
	}
	/* Writes to the taskfile clear HOB in the device control register. */
	if (offset >= 1 && offset <= 5) {
		ch->ctl &= ~CTL_HOB;
	}
	switch (offset) {
	case 1:
		ch->hob_feature = ch->feature;
		ch->feature = v;
		break;
	case 2:
		ch->hob_nsector = ch->nsector;
		ch->nsector = v;
		break;
	case 3:
		ch->hob_sector = ch->sector;
		ch->sector = v;
		break;
	case 4:
		ch->hob_lcyl = ch->lcyl;
		ch->lcyl = v;
		break;
	case 5:
		ch->hob_hcyl = ch->hcyl;
		ch->hcyl = v;
		break;
	case 6:
		ch->select = v | 0xa0;
		ch->cur = (v >> 4) & 1;
		break;
	case 7:
		ide_lower(ch);
		ide_exec(ch, v);
		break;
	default:
		break;
	}
out:
	pthread_mutex_unlock(&ch->ide->lock);
}

static uint64_t ide_ctl_read(void *opaque, uint64_t offset, unsigned size)
{
	struct ide_channel *ch = opaque;
	struct ide_drive *d;
	uint64_t v = 0;

	(void)size;
	if (offset != 0) {
		return 0xff;
	}
	pthread_mutex_lock(&ch->ide->lock);
	d = ide_cur(ch);
	if (!ide_channel_empty(ch) && !(!d->present && ch->cur)) {
		v = d->status;
	}
	pthread_mutex_unlock(&ch->ide->lock);
	return v;
}

static void ide_ctl_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
	struct ide_channel *ch = opaque;
	uint8_t v = (uint8_t)value;

	(void)size;
	if (offset != 0) {
		return;
	}
	pthread_mutex_lock(&ch->ide->lock);
	ide_wait_idle(ch); /* a reset waits for the operation in flight, as QEMU's drains */
	if (!(ch->ctl & CTL_SRST) && (v & CTL_SRST)) {
		for (unsigned i = 0; i < 2; i++) {
			ch->drive[i].status = ST_BSY | ST_DSC;
			ch->drive[i].xfer = XFER_NONE;
		}
	} else if ((ch->ctl & CTL_SRST) && !(v & CTL_SRST)) {
		ch->ctl = v;
		ide_channel_reset(ch);
	}
	ch->ctl = v;
	ide_update_irq(ch);
	pthread_mutex_unlock(&ch->ide->lock);
}

static const struct iobus_ops ide_cmd_ops = {.read = ide_cmd_read, .write = ide_cmd_write};
static const struct iobus_ops ide_ctl_ops = {.read = ide_ctl_read, .write = ide_ctl_write};

uint64_t ide_bm_read(struct ide *ide, uint64_t offset, unsigned size)
{
	struct ide_channel *ch;
	unsigned reg = offset & 7;
	uint64_t v = 0;

	if (offset >= IDE_BM_SIZE) {
		return ~0ull >> (64 - 8 * size);
	}
	ch = &ide->ch[offset >> 3];
	pthread_mutex_lock(&ide->lock);
	for (unsigned i = 0; i < size && reg + i < 8; i++) {
		uint8_t b;

		switch (reg + i) {
		case 0:
			b = ch->bm_cmd;
			break;
		case 2:
			b = ch->bm_status;
			break;
		case 4 ... 7:
			b = (uint8_t)(ch->bm_prd >> (8 * (reg + i - 4)));
			break;
		default:
			b = 0;
			break;
		}
		v |= (uint64_t)b << (8 * i);
	}
	pthread_mutex_unlock(&ide->lock);
	return v;
}

void ide_bm_write(struct ide *ide, uint64_t offset, uint64_t value, unsigned size)
{
	struct ide_channel *ch;
	unsigned reg = offset & 7;

	if (offset >= IDE_BM_SIZE) {
		return;
	}
	ch = &ide->ch[offset >> 3];
	pthread_mutex_lock(&ide->lock);
	ide_wait_idle(ch); /* stopping the engine waits for the transfer, as QEMU's drains */
	for (unsigned i = 0; i < size && reg + i < 8; i++) {
		uint8_t b = (uint8_t)(value >> (8 * i));

		switch (reg + i) {
		case 0:
			if (!(b & BM_CMD_START)) {
				ch->bm_status &= ~BM_ST_ACTIVE;
				ch->bm_cmd = b & BM_CMD_TO_MEM;
			} else {
				/* direction may not change while running */
				if (!(ch->bm_cmd & BM_CMD_START)) {
					ch->bm_cmd = b & (BM_CMD_START | BM_CMD_TO_MEM);
					ch->bm_status |= BM_ST_ACTIVE;
					ide_dma_maybe_run(ch);
				}
			}
			break;
		case 2:
			ch->bm_status = (ch->bm_status & BM_ST_ACTIVE) |
					(ch->bm_status & ~b & (BM_ST_ERROR | BM_ST_INTR)) |
					(b & 0x60);
			break;
		case 4 ... 7: {
			unsigned sh = 8 * (reg + i - 4);

			ch->bm_prd = (ch->bm_prd & ~(0xffu << sh)) | ((uint32_t)b << sh);
			ch->bm_prd &= ~3u;
			break;
		}
		default:
			break;
		}
	}
	pthread_mutex_unlock(&ide->lock);
}

/* Life cycle */

struct ide *ide_new(struct vm *vm, struct iobus *bus, struct guest_mem *mem)
{
	static const uint16_t cmd[2] = {0x1f0, 0x170}, ctl[2] = {0x3f6, 0x376};
	struct ide *ide = calloc(1, sizeof(*ide));

	if (!ide) {
		return NULL;
	}
	pthread_mutex_init(&ide->lock, NULL);
	pthread_cond_init(&ide->idle, NULL);
	ide->efd = -1;
	ide->vm = vm;
	ide->bus = bus;
	ide->mem = mem;
	for (unsigned c = 0; c < 2; c++) {
		struct ide_channel *ch = &ide->ch[c];

		ch->ide = ide;
		ch->index = c;
		ch->gsi = c ? 15 : 14;
		ch->cmd_base = cmd[c];
		ch->ctl_base = ctl[c];
		for (unsigned u = 0; u < 2; u++) {
			ch->drive[u].ch = ch;
			ch->drive[u].unit = u;
		}
		ide_channel_reset(ch);
	}
	return ide;
}

void ide_free(struct ide *ide)
{
	if (!ide) {
		return;
	}
	if (ide->aio) {
		/* Operations in flight end on the I/O thread, which still runs. */
		pthread_mutex_lock(&ide->lock);
		for (unsigned c = 0; c < 2; c++) {
			ide_wait_idle(&ide->ch[c]);
		}
		pthread_mutex_unlock(&ide->lock);
		event_free(ide->ev);
		block_aio_ctx_free(ide->aio);
		close(ide->efd);
	}
	for (unsigned c = 0; c < 2; c++) {
		for (unsigned u = 0; u < 2; u++) {
			block_unref(ide->ch[c].drive[u].bs);
			free(ide->ch[c].drive[u].buf);
		}
	}
	pthread_cond_destroy(&ide->idle);
	pthread_mutex_destroy(&ide->lock);
	free(ide);
}

struct block_node *ide_drive_node(struct ide *ide, unsigned slot)
{
	struct ide_drive *d;

	if (slot >= IDE_MAX_DRIVES) {
		return NULL;
	}
	d = &ide->ch[slot / 2].drive[slot % 2];
	return d->present && !d->cd ? d->bs : NULL;
}

int ide_attach(struct ide *ide, unsigned slot, struct block_node *bs, bool cd, const char *serial,
	       struct error **errp)
{
	struct ide_drive *d;
	uint64_t cyls;

	if (slot >= IDE_MAX_DRIVES) {
		return error_set(errp, EINVAL, "IDE slot %u out of range (0..%d)", slot,
				 IDE_MAX_DRIVES - 1);
	}
	d = &ide->ch[slot / 2].drive[slot % 2];
	if (d->present) {
		return error_set(errp, EBUSY, "IDE slot %u is already in use", slot);
	}
	if (!cd && !bs) {
		return error_set(errp, EINVAL, "an IDE disk needs an image");
	}
	if (posix_memalign((void **)&d->buf, 4096, IDE_BUF_SIZE) != 0) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	memset(d->buf, 0, IDE_BUF_SIZE);
	pthread_mutex_lock(&ide->lock);
	ide_wait_idle(d->ch);
	d->present = true;
	d->cd = cd;
	d->bs = bs;
	d->nb_sectors = bs && !cd ? block_length(bs) / 512 : 0;
	d->heads = 16;
	d->secs = 63;
	cyls = d->nb_sectors / (16 * 63);
	d->cyls = (uint16_t)MIN(MAX(cyls, 1), 16383);
	snprintf(d->serial, sizeof(d->serial), "%s", serial ? serial : "");
	if (!d->serial[0]) {
		snprintf(d->serial, sizeof(d->serial), "VMMD%04u", slot);
	}
	ide_drive_reset(d);
	if (d->unit == 0 || !d->ch->drive[0].present) {
		ide_set_signature(d);
	}
	pthread_mutex_unlock(&ide->lock);
	return 0;
}

void ide_set_tray_handler(struct ide *ide, ide_tray_fn *fn, void *opaque)
{
	pthread_mutex_lock(&ide->lock);
	ide->tray_fn = fn;
	ide->tray_opaque = opaque;
	pthread_mutex_unlock(&ide->lock);
}

/* The CD-ROM drive in @slot, or NULL with *errp set. */
static struct ide_drive *ide_cd(struct ide *ide, unsigned slot, struct error **errp)
{
	struct ide_drive *d;

	if (slot >= IDE_MAX_DRIVES) {
		error_set(errp, EINVAL, "IDE slot %u out of range", slot);
		return NULL;
	}
	d = &ide->ch[slot / 2].drive[slot % 2];
	if (!d->present || !d->cd) {
		error_set(errp, ENODEV, "IDE slot %u holds no CD-ROM drive", slot);
		return NULL;
	}
	return d;
}

/*
 * The medium of @d goes (lock held): a read of it in flight ends first; one
 * set up and not run yet (its DMA not started, or PIO blocks left) fails
 * NOT READY, and never reads what comes next.
 */
static void atapi_medium_gone(struct ide_drive *d)
{
	ide_wait_idle(d->ch);
	if (d->remaining && (d->xfer == XFER_ATAPI_DMA || d->xfer == XFER_ATAPI_IN)) {
		d->remaining = 0;
		d->pos = d->end = 0;
		atapi_error(d, SENSE_NOT_READY, ASC_MEDIUM_NOT_PRESENT);
	}
}

/*
 * The host moved the tray of @d (lock held). As QEMU's drive, either way:
 * the guest hears of a new medium (GET EVENT STATUS NOTIFICATION, once
 * the tray is closed) and the first commands after it find one report
 * the change (NOT READY, then UNIT ATTENTION); an eject request is void.
 */
static void ide_cd_host_moved(struct ide_drive *d, bool open)
{
	d->new_media = true;
	d->changed = d->unit_attention = true;
	d->eject_request = false;
	atapi_tray_moved(d, open);
}

int ide_cd_state(struct ide *ide, unsigned slot, struct ide_cd_state *st)
{
	struct ide_drive *d = ide_cd(ide, slot, NULL);

	if (!d) {
		return -ENODEV;
	}
	pthread_mutex_lock(&ide->lock);
	st->tray_open = d->tray_open;
	st->locked = d->locked;
	st->bs = d->bs;
	pthread_mutex_unlock(&ide->lock);
	return 0;
}

int ide_cd_open_tray(struct ide *ide, unsigned slot, bool force, struct error **errp)
{
	struct ide_drive *d = ide_cd(ide, slot, errp);
	int r = 0;

	if (!d) {
		return -ENODEV;
	}
	pthread_mutex_lock(&ide->lock);
	if (!d->tray_open) {
		if (d->locked) {
			/* the guest hears of it (GET EVENT STATUS NOTIFICATION) */
			d->eject_request = true;
			d->locked = !force;
		}
		if (d->locked) {
			r = error_set(errp, EBUSY, "the guest has locked the CD-ROM tray");
		} else {
			atapi_medium_gone(d);
			ide_cd_host_moved(d, true);
		}
	}
	pthread_mutex_unlock(&ide->lock);
	return r;
}

void ide_cd_close_tray(struct ide *ide, unsigned slot)
{
	struct ide_drive *d = ide_cd(ide, slot, NULL);

	if (!d) {
		return;
	}
	pthread_mutex_lock(&ide->lock);
	if (d->tray_open) {
		ide_cd_host_moved(d, false);
	}
	pthread_mutex_unlock(&ide->lock);
}

int ide_cd_set_medium(struct ide *ide, unsigned slot, struct block_node *bs, struct error **errp)
{
	struct ide_drive *d = ide_cd(ide, slot, errp);
	struct block_node *old;

	if (!d) {
		return -ENODEV;
	}
	pthread_mutex_lock(&ide->lock);
	if (!d->tray_open) {
		pthread_mutex_unlock(&ide->lock);
		return error_set(errp, EBUSY, "the CD-ROM tray is not open");
	}
	atapi_medium_gone(d); /* (a read the guest set up before it opened the tray) */
	old = d->bs;
	d->bs = bs;
	pthread_mutex_unlock(&ide->lock);
	block_unref(old);
	return 0;
}

int ide_cd_change_media(struct ide *ide, unsigned slot, struct block_node *bs, bool force,
			struct error **errp)
{
	int r = ide_cd_open_tray(ide, slot, force, errp);

	if (r == 0) {
		r = ide_cd_set_medium(ide, slot, bs, errp);
	}
	if (r == 0) {
		ide_cd_close_tray(ide, slot);
	}
	return r;
}

int ide_register(struct ide *ide, struct error **errp)
{
	unsigned done = 0;
	int r = 0;

	for (unsigned c = 0; c < 2 && r == 0; c++) {
		struct ide_channel *ch = &ide->ch[c];

		r = iobus_register(ide->bus, IOBUS_PIO, ch->cmd_base, 8, &ide_cmd_ops, ch,
				   c ? "ide1" : "ide0", errp);
		if (r < 0) {
			break;
		}
		done++;
		r = iobus_register(ide->bus, IOBUS_PIO, ch->ctl_base, 1, &ide_ctl_ops, ch,
				   c ? "ide1-ctl" : "ide0-ctl", errp);
		if (r < 0) {
			break;
		}
		done++;
	}
	if (r < 0) {
		for (unsigned i = 0; i < done; i++) {
			struct ide_channel *ch = &ide->ch[i / 2];

			iobus_unregister(ide->bus, IOBUS_PIO, i & 1 ? ch->ctl_base : ch->cmd_base);
		}
		return r;
	}
	ide->registered = true;
	return 0;
}

void ide_unregister(struct ide *ide)
{
	if (!ide->registered) {
		return;
	}
	for (unsigned c = 0; c < 2; c++) {
		iobus_unregister(ide->bus, IOBUS_PIO, ide->ch[c].cmd_base);
		iobus_unregister(ide->bus, IOBUS_PIO, ide->ch[c].ctl_base);
	}
	ide->registered = false;
}

void ide_reset(struct ide *ide)
{
	pthread_mutex_lock(&ide->lock);
	for (unsigned c = 0; c < 2; c++) {
		struct ide_channel *ch = &ide->ch[c];

		ide_wait_idle(ch);
		ch->ctl = 0;
		ch->bm_cmd = 0;
		ch->bm_status &= 0x60;
		ch->bm_prd = 0;
		for (unsigned u = 0; u < 2; u++) {
			ch->drive[u].locked = false;
			ch->drive[u].sense_key = ch->drive[u].asc = 0;
		}
		ide_channel_reset(ch);
	}
	pthread_mutex_unlock(&ide->lock);
}

/*
 * The device class: one controller for every "ide-hd"/"ide-cd" disk of the
 * VM definition, in order (primary master, primary slave, secondary master,
 * secondary slave), exposed as a PIIX3 IDE function (8086:7010, ISA
 * compatibility mode, bus master) in the first free PCI slot. Not created
 * when the VM has no IDE disk.
 */
struct ide_dev {
	struct ide *ide;
	struct vm *vm;
	struct pci_device pci;
	bool pci_registered;
	const char *id[IDE_MAX_DRIVES]; /* the definition's disk ids (the VM's config) */
	bool cd[IDE_MAX_DRIVES];
};

/* DEVICE_TRAY_MOVED, as QEMU's: the drive is both its "device" and its "id". */
static void ide_class_tray_moved(void *opaque, unsigned slot, bool open)
{
	struct ide_dev *d = opaque;

	vm_emit_event(d->vm, "DEVICE_TRAY_MOVED",
		      json_pack("{s:s, s:b, s:s}", "device", d->id[slot], "tray-open", open, "id",
				d->id[slot]));
}

/* The slot of CD-ROM drive @id, or -1. */
static int ide_class_cd_slot(struct ide_dev *d, const char *id)
{
	for (unsigned i = 0; d && i < IDE_MAX_DRIVES; i++) {
		if (d->id[i] && d->cd[i] && strcmp(d->id[i], id) == 0) {
			return (int)i;
		}
	}
	return -1;
}

static int ide_class_tray(void *state, const char *id, struct vm_tray *st)
{
	struct ide_dev *d = state;
	struct ide_cd_state cs;
	int slot = ide_class_cd_slot(d, id);

	if (slot < 0 || ide_cd_state(d->ide, (unsigned)slot, &cs) < 0) {
		return -ENOENT;
	}
	st->open = cs.tray_open;
	st->locked = cs.locked;
	st->bs = cs.bs;
	return 0;
}

static int ide_class_tray_open(void *state, const char *id, bool force, struct error **errp)
{
	struct ide_dev *d = state;
	int slot = ide_class_cd_slot(d, id);

	return slot < 0 ? -ENOENT : ide_cd_open_tray(d->ide, (unsigned)slot, force, errp);
}

static void ide_class_tray_close(void *state, const char *id)
{
	struct ide_dev *d = state;
	int slot = ide_class_cd_slot(d, id);

	if (slot >= 0) {
		ide_cd_close_tray(d->ide, (unsigned)slot);
	}
}

static int ide_class_set_medium(void *state, const char *id, struct block_node *bs,
				struct error **errp)
{
	struct ide_dev *d = state;
	int slot = ide_class_cd_slot(d, id);

	return slot < 0 ? -ENOENT : ide_cd_set_medium(d->ide, (unsigned)slot, bs, errp);
}

/* query-block: QEMU's BlockInfo of each drive, in slot order. Control thread. */
static json_t *ide_class_query_block(void *state)
{
	struct ide_dev *d = state;
	json_t *a = json_array();

	for (unsigned i = 0; d && a && i < IDE_MAX_DRIVES; i++) {
		struct ide_cd_state cs = {0};
		struct block_node *bs;
		json_t *o;

		if (!d->id[i]) {
			continue;
		}
		if (d->cd[i]) {
			ide_cd_state(d->ide, i, &cs);
			bs = cs.bs;
		} else {
			bs = ide_drive_node(d->ide, i);
		}
		o = json_pack("{s:s, s:s, s:b, s:b, s:s, s:s}", "device", d->id[i], "qdev",
			      d->id[i], "removable", d->cd[i], "locked", cs.locked, "type",
			      "unknown", "io-status", "ok");
		if (o && d->cd[i]) {
			json_object_set_new(o, "tray_open", json_boolean(cs.tray_open));
		}
		if (o && bs) {
			json_object_set_new(o, "inserted", block_info_json(bs));
		}
		json_array_append_new(a, o);
	}
	return a;
}

static uint64_t ide_pci_bm_read(void *opaque, uint64_t offset, unsigned size)
{
	return ide_bm_read(opaque, offset, size);
}

static void ide_pci_bm_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
	ide_bm_write(opaque, offset, value, size);
}

static const struct iobus_ops ide_pci_bm_ops = {.read = ide_pci_bm_read, .write = ide_pci_bm_write};

/* The disk drivers this controller serves. */
static const char *const ide_drivers[] = {"ide-hd", "ide-cd", NULL};

bool ide_disk_driver(const char *driver)
{
	for (const char *const *d = ide_drivers; driver && *d; d++) {
		if (strcmp(*d, driver) == 0) {
			return true;
		}
	}
	return false;
}

static void ide_class_unrealize(void *state)
{
	struct ide_dev *d = state;

	if (!d) {
		return;
	}
	if (d->pci_registered) {
		pci_unregister_device(&d->pci);
	}
	if (d->ide) {
		ide_unregister(d->ide);
		ide_free(d->ide);
	}
	free(d);
}

static int ide_open_disk(struct vm *vm, const struct vm_disk_config *dc, bool cd,
			 struct block_node **ret, struct error **errp)
{
	unsigned flags = 0;

	if (cd && !dc->file && !dc->node) {
		*ret = NULL; /* an empty CD-ROM drive */
		return 0;
	}
	if (!dc->file || dc->node) {
		return error_set(errp, EINVAL,
				 "IDE disk '%s' needs \"file\" (node names are not supported)",
				 dc->id);
	}
	if (!cd && !dc->readonly) {
		flags |= BLOCK_O_RDWR;
	}
	flags |= vm_disk_block_flags(dc);
	return vm_disk_open(vm, dc, flags, ret, errp);
}

static int ide_class_realize(struct vm *vm, const void *cfg_unused, void **ret_state,
			     struct error **errp)
{
	const struct vm_config *cfg = vm_get_config(vm);
	struct ide_dev *d;
	unsigned slot = 0;
	int r;

	(void)cfg_unused;
	*ret_state = NULL;
	for (unsigned i = 0; i < cfg->n_disks; i++) {
		slot += ide_disk_driver(cfg->disks[i].driver);
	}
	if (slot == 0) {
		return 0;
	}
	if (slot > IDE_MAX_DRIVES) {
		return error_set(errp, EINVAL, "%u IDE disks given, the controller takes %d", slot,
				 IDE_MAX_DRIVES);
	}
	d = calloc(1, sizeof(*d));
	if (!d) {
		return error_set(errp, ENOMEM, "ide: out of memory");
	}
	d->vm = vm;
	d->ide = ide_new(vm, vm_iobus(vm), vm_guest_mem(vm));
	if (!d->ide) {
		free(d);
		return error_set(errp, ENOMEM, "ide: out of memory");
	}
	/* (a machine without an I/O thread, such as the unit tests' fake: all here) */
	r = vm_io_base(vm) ? ide_use_io_thread(d->ide, vm_io_base(vm), errp) : 0;
	if (r == 0 && d->ide->aio && vm_get_host(vm)->thread_start) {
		/* its workers are this VM's threads (seccomp, docs/security.md) */
		block_aio_ctx_set_thread_start(d->ide->aio, vm_get_host(vm)->thread_start,
					       vm_get_host(vm)->opaque);
	}
	if (r < 0) {
		ide_class_unrealize(d);
		return r;
	}
	slot = 0;
	for (unsigned i = 0; i < cfg->n_disks; i++) {
		const struct vm_disk_config *dc = &cfg->disks[i];
		struct block_node *bs = NULL;
		bool cd;

		if (!ide_disk_driver(dc->driver)) {
			continue;
		}
		cd = strcmp(dc->driver, "ide-cd") == 0;
		d->id[slot] = dc->id;
		d->cd[slot] = cd;
		r = ide_open_disk(vm, dc, cd, &bs, errp);
		if (r == 0) {
			r = ide_attach(d->ide, slot++, bs, cd, dc->serial, errp);
			if (r < 0) {
				block_unref(bs);
			}
		}
		if (r < 0) {
			error_prefix(errp, "disk '%s'", dc->id);
			ide_class_unrealize(d);
			return r;
		}
	}
	ide_set_tray_handler(d->ide, ide_class_tray_moved, d);
	r = ide_register(d->ide, errp);
	if (r < 0) {
		ide_free(d->ide);
		d->ide = NULL;
		ide_class_unrealize(d);
		return r;
	}
	pci_device_init(&d->pci, "ide", 0x8086, 0x7010, 0x010180, 0, 0x1af4, 0x1100);
	d->pci.config[PCI_INTERRUPT_PIN] = 0; /* compatibility mode: IRQ 14/15 */
	pci_device_set_bar(&d->pci, 4, PCI_BAR_IO, IDE_BM_SIZE, &ide_pci_bm_ops, d->ide);
	r = pci_register_device(pci_host_of(vm), &d->pci, -1, errp);
	if (r < 0) {
		ide_class_unrealize(d);
		return r;
	}
	d->pci_registered = true;
	*ret_state = d;
	return 0;
}

/* The hard disks (not CD-ROMs, whose medium may change) by their ids, in slot order. */
static void ide_class_for_each_disk(void *state, vm_disk_fn *fn, void *opaque)
{
	struct ide_dev *d = state;
	const struct vm_config *cfg;
	unsigned slot = 0;

	if (!d) {
		return;
	}
	cfg = vm_get_config(d->vm);
	for (unsigned i = 0; i < cfg->n_disks; i++) {
		const struct vm_disk_config *dc = &cfg->disks[i];

		if (!ide_disk_driver(dc->driver)) {
			continue;
		}
		if (strcmp(dc->driver, "ide-cd") != 0) {
			struct block_node *bs = ide_drive_node(d->ide, slot);

			if (bs) {
				fn(opaque, dc->id, bs);
			}
		}
		slot++;
	}
}

static void ide_class_reset(void *state)
{
	struct ide_dev *d = state;

	if (d) {
		pci_device_reset(&d->pci);
		ide_reset(d->ide);
	}
}

/*
 * Registers of both channels and every drive's transfer state, with the
 * bytes of a PIO or DMA transfer in progress (PIO is synchronous under the
 * lock; a save runs once busy() says no DMA or flush is in flight).
 */
static void ide_save_drive(struct ide_drive *d, struct vmstate_buf *out)
{
	vmstate_put_u8(out, d->status);
	vmstate_put_u8(out, d->error);
	vmstate_put_u8(out, d->mult);
	vmstate_put_bool(out, d->lba48_cmd);
	vmstate_put_bool(out, d->locked);
	vmstate_put_bool(out, d->unit_attention);
	vmstate_put_u8(out, d->sense_key);
	vmstate_put_u8(out, d->asc);
	vmstate_put_u32(out, d->xfer);
	vmstate_put_u32(out, d->pos);
	vmstate_put_u32(out, d->drq_end);
	vmstate_put_u32(out, d->end);
	vmstate_put_u64(out, d->lba);
	vmstate_put_u32(out, d->remaining);
	vmstate_put_u32(out, d->block);
	vmstate_put_u32(out, d->byte_limit);
	vmstate_put_blob(out, d->buf, d->xfer != XFER_NONE ? MIN(d->end, IDE_BUF_SIZE) : 0);
}

/* DMA and flushes on the I/O thread: a save waits until none is in flight. */
static unsigned ide_class_busy(void *state)
{
	struct ide_dev *d = state;

	return d ? ide_busy(d->ide) : 0;
}

static int ide_class_save(void *state, struct vmstate_buf *out, struct error **errp)
{
	struct ide_dev *dev = state;
	struct ide *ide = dev->ide;

	pci_device_save(&dev->pci, out);
	pthread_mutex_lock(&ide->lock);
	for (unsigned c = 0; c < 2; c++) {
		struct ide_channel *ch = &ide->ch[c];
		const uint8_t r[] = {ch->feature,  ch->nsector,	    ch->sector,	     ch->lcyl,
				     ch->hcyl,	   ch->hob_feature, ch->hob_nsector, ch->hob_sector,
				     ch->hob_lcyl, ch->hob_hcyl,    ch->select,	     ch->ctl,
				     ch->bm_cmd,   ch->bm_status};

		vmstate_put_u32(out, ch->cur);
		vmstate_put_bytes(out, r, sizeof(r));
		vmstate_put_bool(out, ch->irq);
		vmstate_put_u32(out, ch->bm_prd);
		for (unsigned u = 0; u < 2; u++) {
			vmstate_put_bool(out, ch->drive[u].present);
			ide_save_drive(&ch->drive[u], out);
		}
	}
	/*
	 * The trays, after the rest and only when one is open or has an event
	 * for the guest: a VM whose trays are closed and quiet saves what an
	 * older vmmd loads.
	 */
	uint8_t trays[IDE_MAX_DRIVES], any = 0;

	for (unsigned i = 0; i < IDE_MAX_DRIVES; i++) {
		const struct ide_drive *d = &ide->ch[i / 2].drive[i % 2];

		trays[i] = (uint8_t)(d->tray_open | d->new_media << 1 | d->eject_request << 2 |
				     d->changed << 3);
		any |= trays[i];
	}
	if (any) {
		vmstate_put_bytes(out, trays, sizeof(trays));
	}
	pthread_mutex_unlock(&ide->lock);
	return 0;
}

struct ide_saved_drive {
	uint8_t status, error, mult, sense_key, asc;
	bool lba48_cmd, locked, unit_attention;
	uint32_t xfer, pos, drq_end, end, remaining, block, byte_limit, len;
	uint64_t lba;
	uint8_t *buf;
};

static void ide_load_drive(struct vmstate_buf *in, struct ide_saved_drive *s)
{
	s->status = vmstate_get_u8(in);
	s->error = vmstate_get_u8(in);
	s->mult = vmstate_get_u8(in);
	s->lba48_cmd = vmstate_get_bool(in);
	s->locked = vmstate_get_bool(in);
	s->unit_attention = vmstate_get_bool(in);
	s->sense_key = vmstate_get_u8(in);
	s->asc = vmstate_get_u8(in);
	s->xfer = vmstate_get_u32(in);
	s->pos = vmstate_get_u32(in);
	s->drq_end = vmstate_get_u32(in);
	s->end = vmstate_get_u32(in);
	s->lba = vmstate_get_u64(in);
	s->remaining = vmstate_get_u32(in);
	s->block = vmstate_get_u32(in);
	s->byte_limit = vmstate_get_u32(in);
	s->buf = vmstate_get_blob_alloc(in, IDE_BUF_SIZE, &s->len);
	if (s->xfer > XFER_ATAPI_DMA || s->end > IDE_BUF_SIZE || s->pos > s->end ||
	    s->drq_end > s->end || s->mult > IDE_MAX_MULT) {
		in->failed = true;
	}
}

static int ide_class_load(void *state, struct vmstate_buf *in, unsigned version,
			  struct error **errp)
{
	struct ide_dev *dev = state;
	struct ide *ide = dev->ide;
	struct ide_saved_drive sd[2][2] = {0};
	uint8_t regs[2][14], trays[IDE_MAX_DRIVES] = {0};
	uint32_t cur[2], prd[2];
	bool irq[2], present[2][2];
	int r;

	r = pci_device_load(&dev->pci, in, errp);
	if (r < 0) {
		return r;
	}
	for (unsigned c = 0; c < 2; c++) {
		cur[c] = vmstate_get_u32(in);
		vmstate_get_bytes(in, regs[c], sizeof(regs[c]));
		irq[c] = vmstate_get_bool(in);
		prd[c] = vmstate_get_u32(in);
		if (cur[c] > 1) {
			in->failed = true;
		}
		for (unsigned u = 0; u < 2; u++) {
			present[c][u] = vmstate_get_bool(in);
			ide_load_drive(in, &sd[c][u]);
		}
	}
	if (!in->failed && in->pos < in->len) {
		vmstate_get_bytes(in, trays, sizeof(trays));
		for (unsigned i = 0; i < IDE_MAX_DRIVES; i++) {
			in->failed |= trays[i] > 15;
		}
	}
	r = vmstate_check_end(in, "the IDE controller", errp);
	for (unsigned c = 0; r == 0 && c < 2; c++) {
		for (unsigned u = 0; u < 2; u++) {
			if (present[c][u] != ide->ch[c].drive[u].present ||
			    (trays[c * 2 + u] && !ide->ch[c].drive[u].cd)) {
				r = error_set(
					errp, EINVAL,
					"IDE %u:%u: the snapshot's drive does not match the VM's",
					c, u);
				break;
			}
		}
	}
	if (r == 0) {
		pthread_mutex_lock(&ide->lock);
		for (unsigned c = 0; c < 2; c++) {
			struct ide_channel *ch = &ide->ch[c];
			const uint8_t *v = regs[c];

			ch->cur = cur[c];
			ch->feature = v[0];
			ch->nsector = v[1];
			ch->sector = v[2];
			ch->lcyl = v[3];
			ch->hcyl = v[4];
			ch->hob_feature = v[5];
			ch->hob_nsector = v[6];
			ch->hob_sector = v[7];
			ch->hob_lcyl = v[8];
			ch->hob_hcyl = v[9];
			ch->select = v[10];
			ch->ctl = v[11];
			ch->bm_cmd = v[12];
			ch->bm_status = v[13];
			/* The line level itself is in the restored irqchip. */
			ch->irq = irq[c];
			ch->bm_prd = prd[c];
			for (unsigned u = 0; u < 2; u++) {
				struct ide_drive *d = &ch->drive[u];
				struct ide_saved_drive *s = &sd[c][u];

				d->status = s->status;
				d->error = s->error;
				d->mult = s->mult;
				d->lba48_cmd = s->lba48_cmd;
				d->locked = s->locked;
				d->unit_attention = s->unit_attention;
				d->tray_open = trays[c * 2 + u] & 1;
				d->new_media = trays[c * 2 + u] & 2;
				d->eject_request = trays[c * 2 + u] & 4;
				d->changed = trays[c * 2 + u] & 8;
				d->sense_key = s->sense_key;
				d->asc = s->asc;
				d->xfer = (enum ide_xfer)s->xfer;
				d->pos = s->pos;
				d->drq_end = s->drq_end;
				d->end = s->end;
				d->lba = s->lba;
				d->remaining = s->remaining;
				d->block = s->block;
				d->byte_limit = s->byte_limit;
				if (d->buf && s->buf) {
					memcpy(d->buf, s->buf, s->len);
				}
			}
		}
		pthread_mutex_unlock(&ide->lock);
	}
	for (unsigned c = 0; c < 2; c++) {
		for (unsigned u = 0; u < 2; u++) {
			free(sd[c][u].buf);
		}
	}
	return r;
}

static int ide_class_set_active(void *state, bool active, struct error **errp)
{
	struct ide *ide = ((struct ide_dev *)state)->ide;

	for (unsigned c = 0; c < 2; c++) {
		for (unsigned u = 0; u < 2; u++) {
			struct ide_drive *d = &ide->ch[c].drive[u];
			int r;

			if (d->present && d->bs) {
				r = block_set_active(d->bs, active, errp);
				if (r < 0) {
					return r;
				}
			}
		}
	}
	return 0;
}

const struct device_class ide_class = {
	.name = "ide",
	.each = DEVICE_ONCE_FOR_DISKS,
	.drivers = ide_drivers,
	.realize = ide_class_realize,
	.unrealize = ide_class_unrealize,
	.reset = ide_class_reset,
	.state_version = 1,
	.save = ide_class_save,
	.load = ide_class_load,
	.busy = ide_class_busy,
	.for_each_disk = ide_class_for_each_disk,
	.set_active = ide_class_set_active,
	.query_block = ide_class_query_block,
	.tray = ide_class_tray,
	.tray_open = ide_class_tray_open,
	.tray_close = ide_class_tray_close,
	.set_medium = ide_class_set_medium,
};
