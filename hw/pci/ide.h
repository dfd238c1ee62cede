/*
 * PIIX-style IDE controller: two channels at the ISA-compatible addresses
 * (primary 0x1F0-0x1F7 + 0x3F6 on IRQ 14, secondary 0x170-0x177 + 0x376 on
 * IRQ 15), each with a master and a slave drive, plus the bus-master DMA
 * registers that the PCI function exposes through BAR4 (8 bytes per
 * channel). Drives are ATA disks or ATAPI CD-ROMs on the block layer.
 *
 * Threads: port handlers run on vCPU threads and are serialized by the
 * controller's mutex. After ide_use_io_thread(), disk I/O (DMA, flushes,
 * each PIO data block) runs on that event loop (the VM's I/O thread) with
 * asynchronous block requests while the drive shows BSY; without it, on the
 * calling vCPU thread (the legacy interface has one command in flight per
 * channel; virtio-blk is the fast path). Attach, media change and free run on the control thread.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"

struct ide;
struct vm;
struct iobus;
struct guest_mem;
struct block_node;
struct event_base;

#define IDE_MAX_DRIVES 4 /* primary master, primary slave, secondary master, slave */
#define IDE_BM_SIZE 16	 /* bus-master register block (BAR4) */

/*
 * A controller raising its interrupts on @vm (GSI 14 and 15), doing DMA in
 * @mem. Ports are registered on @bus by ide_register(). NULL on ENOMEM.
 */
struct ide *ide_new(struct vm *vm, struct iobus *bus, struct guest_mem *mem);
/* Drops the drives' block references. NULL is fine. */
void ide_free(struct ide *ide);

/*
 * Put a drive in @slot (0..3). @bs (a reference the controller takes over,
 * may be NULL for an empty CD-ROM drive) is an ATA disk, or, with @cd, a
 * read-only CD-ROM. @serial may be NULL.
 */
/* The image of the hard disk in @slot (borrowed), or NULL (empty, or a CD-ROM). */
struct block_node *ide_drive_node(struct ide *ide, unsigned slot);
int ide_attach(struct ide *ide, unsigned slot, struct block_node *bs, bool cd, const char *serial,
	       struct error **errp);
/*
 * The CD-ROM drives' trays and media, as QEMU's ide-cd: the medium (an
 * image) sits in the tray; the guest reads it only while the tray is
 * closed. The guest opens and closes the tray (START STOP UNIT) and locks
 * it (PREVENT ALLOW MEDIUM REMOVAL); the host does the same through these
 * calls, which take the controller's lock.
 *
 * ide_set_tray_handler: @fn(@opaque, slot, open) each time a tray moves,
 * whoever moved it (QEMU's DEVICE_TRAY_MOVED), with the controller's lock
 * held, on the thread that moved it (a vCPU, or the caller below).
 */
typedef void ide_tray_fn(void *opaque, unsigned slot, bool open);
void ide_set_tray_handler(struct ide *ide, ide_tray_fn *fn, void *opaque);

struct ide_cd_state {
	bool tray_open, locked;
	struct block_node *bs; /* the medium, borrowed; NULL: none */
};
/* -ENODEV if @slot holds no CD-ROM drive. */
int ide_cd_state(struct ide *ide, unsigned slot, struct ide_cd_state *st);
/*
 * Open the tray (a no-op when open). A tray the guest locked is asked to
 * open (the guest sees an eject request) and stays closed: -EBUSY; with
 * @force the lock is dropped and the tray opens. A read of the medium in
 * flight completes first; one set up and not yet run fails (not ready).
 */
int ide_cd_open_tray(struct ide *ide, unsigned slot, bool force, struct error **errp);
/* Close the tray (a no-op when closed); a medium in it reads as new (UNIT ATTENTION once). */
void ide_cd_close_tray(struct ide *ide, unsigned slot);
/*
 * Put @bs (a reference the controller takes over; NULL: none) in the open
 * tray in place of its medium, whose reference is dropped. -EBUSY when the
 * tray is closed.
 */
int ide_cd_set_medium(struct ide *ide, unsigned slot, struct block_node *bs, struct error **errp);
/* Open (@force as above), change the medium to @bs, close: one media change. */
int ide_cd_change_media(struct ide *ide, unsigned slot, struct block_node *bs, bool force,
			struct error **errp);

int ide_register(struct ide *ide, struct error **errp);
void ide_unregister(struct ide *ide);
void ide_reset(struct ide *ide);
/*
 * Run disk I/O (DMA, flushes, PIO data blocks) on @base's thread (the VM's
 * I/O thread) instead of the vCPU that starts it. Once, before ide_register().
 */
int ide_use_io_thread(struct ide *ide, struct event_base *base, struct error **errp);
/* Channels with an operation in flight on the I/O thread (a save waits for 0). Any thread. */
unsigned ide_busy(struct ide *ide);

/* Bus-master registers, @offset within the 16-byte BAR4 block (the PCI function forwards). */
uint64_t ide_bm_read(struct ide *ide, uint64_t offset, unsigned size);
void ide_bm_write(struct ide *ide, uint64_t offset, uint64_t value, unsigned size);

/* True for the disk drivers this controller serves ("ide-hd", "ide-cd"). */
bool ide_disk_driver(const char *driver);
