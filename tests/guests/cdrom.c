/*
 * Test guest: an ATAPI CD-ROM driver (primary slave, PIO, polled, its
 * interrupt masked by nIEN) that plays a guest through media changes, for
 * test-cdrom.py and the QEMU recorder make-golden-cdrom.py. Each step's
 * outcome goes to COM1 as one line the host waits for and compares:
 *
 *   1. TEST UNIT READY until ready ("tur K/ASC" per answer), the media
 *      event a boot leaves, the first bytes of sector 0 ("read ..."),
 *      PREVENT MEDIUM REMOVAL ("locked");
 *   2. GET EVENT STATUS NOTIFICATION until an event: the host's eject of
 *      the locked tray asks for it ("event E status S"); the guest then
 *      allows removal and opens the tray itself (START STOP UNIT, LoEj),
 *      reads the tray open (TEST UNIT READY, the event status);
 *   3. waits for a new medium (the host changes it), reads TEST UNIT READY
 *      until ready and sector 0 of the new medium; locks the tray again;
 *   4. waits for the tray to open (the host forces it), closes it itself
 *      and reads the drive empty; "cdrom: done", and it halts.
 *
 * The specifications followed: ATA/ATAPI-6 (PACKET, the PIO data-in
 * protocol) and MMC-3 (the commands' layouts, the media event class).
 */
#include "lib.h"

#define CMD 0x1f0 /* the primary channel's command block */
#define CTL 0x3f6
#define SLAVE 0xb0 /* the CD-ROM is the slave, after the hard disk */
#define ST_ERR 0x01
#define ST_DRQ 0x08
#define ST_BSY 0x80

static uint8_t buf[2048];
static unsigned sense_key, sense_asc;

static uint8_t wait_not_busy(void)
{
	uint8_t st;

	do {
		st = inb(CMD + 7);
	} while (st & ST_BSY);
	return st;
}

/*
 * One packet command reading at most @len bytes into buf: the bytes read,
 * or -1 when the drive ends it with an error (its sense then in
 * sense_key/sense_asc, by REQUEST SENSE).
 */
static int packet(const uint8_t cdb[12], unsigned len);

static int packet_raw(const uint8_t cdb[12], unsigned len)
{
	unsigned got = 0;
	uint8_t st;

	outb(CMD + 6, SLAVE);
	wait_not_busy();
	outb(CMD + 1, 0); /* PIO */
	outb(CMD + 4, 0xfe);
	outb(CMD + 5, 0xff); /* byte count limit */
	outb(CMD + 7, 0xa0); /* PACKET */
	do {
		st = wait_not_busy();
	} while (!(st & (ST_DRQ | ST_ERR)));
	if (st & ST_ERR) {
		return -1;
	}
	for (unsigned i = 0; i < 12; i += 2) {
		outw(CMD, (uint16_t)(cdb[i] | cdb[i + 1] << 8));
	}
	for (;;) {
		st = wait_not_busy();
		if (st & ST_ERR) {
			return -1;
		}
		if (!(st & ST_DRQ)) {
			return (int)got;
		}
		unsigned n = inb(CMD + 4) | (unsigned)inb(CMD + 5) << 8;

		for (unsigned i = 0; i < n; i += 2) {
			uint16_t w = inw(CMD);

			if (got + 1 < len) {
				buf[got] = (uint8_t)w;
				buf[got + 1] = (uint8_t)(w >> 8);
			}
			got += 2;
		}
	}
}

static int packet(const uint8_t cdb[12], unsigned len)
{
	static const uint8_t request_sense[12] = {0x03, 0, 0, 0, 18};
	int r = packet_raw(cdb, len);

	sense_key = sense_asc = 0;
	if (r < 0) {
		if (packet_raw(request_sense, 18) >= 14) {
			sense_key = buf[2] & 0xf;
			sense_asc = buf[12];
		}
		return -1;
	}
	return r;
}

static void print_sense(const char *what)
{
	print(what);
	print(" ");
	print_hex(sense_key);
	print("/");
	print_hex(sense_asc);
	print("\n");
}

/* TEST UNIT READY until the drive is ready, each answer printed; at most @tries. */
static void until_ready(unsigned tries)
{
	static const uint8_t tur[12] = {0x00};

	while (tries--) {
		int r = packet(tur, 0);

		print_sense("tur");
		if (r == 0) {
			return;
		}
	}
}

static void tur_once(void)
{
	static const uint8_t tur[12] = {0x00};

	packet(tur, 0);
	print_sense("tur");
}

static void read_sector0(void)
{
	static const uint8_t read10[12] = {0x28, 0, 0, 0, 0, 0, 0, 0, 1};

	if (packet(read10, sizeof(buf)) != (int)sizeof(buf)) {
		print_sense("read failed");
		return;
	}
	print("read ");
	print_hex((uint64_t)buf[0] << 24 | (uint64_t)buf[1] << 16 | (uint64_t)buf[2] << 8 | buf[3]);
	print("\n");
}

static void lock(bool on)
{
	uint8_t cdb[12] = {0x1e, 0, 0, 0, on};

	packet(cdb, 0);
	print(on ? "locked\n" : "unlocked\n");
}

/* START STOP UNIT with LoEj: open (eject) or close (load) the tray. */
static void tray(bool open)
{
	uint8_t cdb[12] = {0x1b, 0, 0, 0, (uint8_t)(open ? 0x02 : 0x03)};

	packet(cdb, 0);
	print_sense(open ? "tray open" : "tray close");
}

/* GET EVENT STATUS NOTIFICATION, media class, polled: event code and media status. */
static void gesn(unsigned *event, unsigned *status)
{
	static const uint8_t cdb[12] = {0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8};

	*event = *status = 0xff;
	if (packet(cdb, 8) >= 6) {
		*event = buf[4] & 0xf;
		*status = buf[5];
	}
}

static void print_event(unsigned event, unsigned status)
{
	print("event ");
	print_hex(event);
	print(" status ");
	print_hex(status);
	print("\n");
}

/* Poll the media events until one comes (or, with @want_status, that status). */
static void wait_event(unsigned want_status)
{
	unsigned event, status;

	do {
		gesn(&event, &status);
	} while (want_status == 0xff ? event == 0 : status != want_status);
	print_event(event, status);
}

void guest_main(void)
{
	unsigned event, status;

	serial_init();
	outb(CTL, 0x02); /* nIEN: polled */
	print("cdrom: start\n");

	until_ready(8);
	gesn(&event, &status); /* what a boot leaves pending */
	print_event(event, status);
	read_sector0();
	lock(true);

	wait_event(0xff); /* the host's eject of the locked tray */
	lock(false);
	tray(true);
	tur_once();
	gesn(&event, &status);
	print_event(event, status);

	wait_event(0xff); /* a new medium, the tray closed by the host */
	until_ready(8);
	read_sector0();
	lock(true);

	wait_event(0x01); /* the host forced the tray open */
	tray(false);
	tur_once();
	gesn(&event, &status);
	print_event(event, status);
	print("cdrom: done\n");
	guest_halt(); /* the host looks at the drive last */
}
