/*
 * A SCSI direct-access (disk) logical unit for usb-storage: parses a
 * command descriptor block, answers the non-data and small data-in
 * commands from memory, and describes READ/WRITE as a byte range for the
 * transport to move with block_preadv/block_pwritev. Commands: TEST UNIT
 * READY, REQUEST SENSE, INQUIRY (standard, VPD 0x00/0x80/0x83), READ
 * CAPACITY (10) and (16), READ/WRITE (6)/(10)/(16), VERIFY (10), MODE
 * SENSE (6)/(10) (pages 0x08 and 0x3F), SYNCHRONIZE CACHE (10)/(16),
 * PREVENT ALLOW MEDIUM REMOVAL, START STOP UNIT, REPORT LUNS.
 *
 * Threads: the owner serializes calls (usb-storage: the controller lock).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

struct block_node;

#define SCSI_BLOCK 512
#define SCSI_MAX_RESPONSE 256
#define SCSI_MAX_XFER (32u << 20) /* a READ/WRITE longer than this fails (INVALID FIELD) */

#define SCSI_GOOD 0
#define SCSI_CHECK_CONDITION 2

enum scsi_dir {
	SCSI_DIR_NONE,
	SCSI_DIR_IN,  /* device to host */
	SCSI_DIR_OUT, /* host to device */
};

struct scsi_disk {
	struct block_node *bs; /* borrowed; NULL in unit tests (flush is then a no-op) */
	uint64_t blocks;       /* capacity in SCSI_BLOCK units */
	bool readonly, removable, locked;
	uint8_t sense_key, asc, ascq;
	char serial[21];
};

struct scsi_req {
	int status;			/* SCSI_GOOD or SCSI_CHECK_CONDITION */
	enum scsi_dir dir;		/* what the command moves */
	uint32_t len;			/* bytes it moves */
	bool rw;			/* data goes to/from the disk at @offset (READ/WRITE) */
	uint64_t offset;		/* byte offset on the disk when @rw */
	uint8_t buf[SCSI_MAX_RESPONSE]; /* the data-in response when !@rw */
};

/* @bs may be NULL (tests); @blocks its size in 512-byte blocks. */
void scsi_disk_init(struct scsi_disk *d, struct block_node *bs, uint64_t blocks, bool readonly,
		    bool removable, const char *serial);
/*
 * Run the command in @cdb (@cdb_len bytes, 1..16). Non-data commands
 * complete here (SYNCHRONIZE CACHE flushes); on error r->status is CHECK
 * CONDITION and the sense data is kept for REQUEST SENSE.
 */
void scsi_disk_command(struct scsi_disk *d, const uint8_t *cdb, unsigned cdb_len,
		       struct scsi_req *r);
/*
 * Move the next @len bytes of a READ/WRITE between the disk and @iov, at
 * r->offset (advanced). 0, or -errno after setting MEDIUM ERROR sense.
 */
int scsi_disk_rw(struct scsi_disk *d, struct scsi_req *r, const struct iovec *iov, unsigned cnt);
/* Record sense data (also used by the transport for phase errors). */
void scsi_disk_set_sense(struct scsi_disk *d, uint8_t key, uint8_t asc, uint8_t ascq);
