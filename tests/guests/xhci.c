/*
 * Test guest: drive the xHCI controller (1b36:000d) as a driver written
 * from the xHCI 1.2 specification would, then talk to the usb-storage disk
 * behind it with the Bulk-Only Transport:
 *
 *   reset, command ring, one event ring segment, MSI-X vector 0, port
 *   reset, Enable Slot, Address Device, GET_DESCRIPTOR (device, config,
 *   string), Configure Endpoint (bulk IN/OUT), SET_CONFIGURATION, GET MAX
 *   LUN, INQUIRY, TEST UNIT READY, READ CAPACITY (10)/(16), MODE SENSE (6),
 *   READ (10) of sectors 0..7 (CRC printed for the host), WRITE (10) of a
 *   pattern to sectors 8..71 in TDs of one, two and four TRBs, READ (16)
 *   back, SYNCHRONIZE CACHE, a read past the end (CHECK CONDITION, sense
 *   ILLEGAL REQUEST / LBA OUT OF RANGE), Evaluate Context, No Op.
 *
 * Then the hostile part, each followed by recovery and a working command:
 *   - on EP0 a TD that is no control transfer (TRB Error) and a data stage
 *     longer than the 4 KiB the controller takes (STALL),
 *   - a transfer ring whose Link TRBs point at each other (TRB Error, the
 *     endpoint halts; Reset Endpoint + Set TR Dequeue Pointer recover),
 *   - a Normal TRB whose buffer lies outside guest RAM (USB Transaction
 *     Error, halted),
 *   - a doorbell for a slot that is not enabled (ignored),
 *   - more events than the event ring holds while the driver reads none
 *     (an Event Ring Full Error in the last slot, then nothing until ERDP
 *     moves),
 *   - a command ring pointer outside guest RAM and a command ring Link loop
 *     (USBSTS.HCE; HCRST recovers: the controller enumerates again).
 *
 * Started with no device connected (a VM with "usb": true and nothing on
 * it), it plays the hot-plug side instead, three rounds of: wait for the
 * Port Status Change event of a connect (the host's device_add), port
 * reset, enumerate, configure, READ (10) of sectors 0..7 (CRC printed);
 * queue a Bulk-Only command without ringing; wait for the disconnect's
 * Port Status Change (device_del), then ring: the transfer must end with
 * USB Transaction Error; Disable Slot.
 *
 * A disk whose sector 0 starts with "USBSAVE!" makes it run a long loop
 * instead (for vm-save in the middle of Bulk-Only commands): SAVE_ROUNDS
 * times WRITE (10) sector 1 + n % 64 with the pattern of round n, READ (10)
 * it back and compare; progress every 100 rounds, then "saveloop done".
 *
 * Pattern byte i of sector s: (s * 31 + i * 7 + 0x5a) & 0xff (as virtio-blk.c).
 */
#include "lib.h"
#include "virtio-drv.h"

#define PCI_COMMAND 0x04
#define PCI_CAP_PTR 0x34

struct trb {
	uint64_t p;
	uint32_t s, c;
};

#define TRB_TYPE(t) ((t) << 10)
#define T_NORMAL 1
#define T_SETUP 2
#define T_DATA 3
#define T_STATUS 4
#define T_LINK 6
#define T_ENABLE_SLOT 9
#define T_ADDRESS 11
#define T_CONFIGURE 12
#define T_EVALUATE 13
#define T_RESET_EP 14
#define T_STOP_EP 15
#define T_SET_DEQ 16
#define T_NOOP_CMD 23
#define T_DISABLE_SLOT 10
#define E_TRANSFER 32
#define E_COMMAND 33
#define E_PORT 34
#define C_TC 2
#define C_CH 0x10
#define C_IOC 0x20
#define C_IDT 0x40

#define RING_N 32

struct ring {
	struct trb *t;
	unsigned idx;
	uint32_t pcs;
};

static struct trb cmd_trbs[RING_N] __attribute__((aligned(64)));
static struct trb ep0_trbs[RING_N] __attribute__((aligned(64)));
static struct trb in_trbs[RING_N] __attribute__((aligned(64)));
static struct trb out_trbs[RING_N] __attribute__((aligned(64)));
static struct trb loop_trbs[4] __attribute__((aligned(64)));
static struct trb ev_trbs[64] __attribute__((aligned(64)));
static struct {
	uint64_t base;
	uint32_t size, rsvd;
} erst[1] __attribute__((aligned(64)));
static uint64_t dcbaa[256] __attribute__((aligned(64)));
static uint32_t in_ctx[33 * 8] __attribute__((aligned(64)));
static uint32_t out_ctx[32 * 8] __attribute__((aligned(64)));
static uint8_t buf[64 * 512] __attribute__((aligned(4096)));
static uint8_t check[64 * 512] __attribute__((aligned(4096)));
static uint8_t cbw[32], csw[16], sense[18];

static struct ring cmd, ep0, bin, bout;
static uint64_t mmio, op, rt, db;
static unsigned ev_idx;
static uint32_t ev_ccs;
static unsigned slot_id, port_no, dci_in, dci_out;
static uint32_t tag = 0x1000;
static unsigned pci_slot, msix_cap;
static bool ok = true;

static void fail(const char *what)
{
	print("xhci: FAIL ");
	print(what);
	print("\n");
	ok = false;
}

static void ring_init(struct ring *r, struct trb *t)
{
	memset(t, 0, sizeof(struct trb) * RING_N);
	r->t = t;
	r->idx = 0;
	r->pcs = 1;
}

static uint64_t ring_put(struct ring *r, uint64_t p, uint32_t s, uint32_t c)
{
	struct trb *t = &r->t[r->idx];

	t->p = p;
	t->s = s;
	__asm__ volatile("" ::: "memory");
	t->c = (c & ~1u) | r->pcs;
	if (++r->idx == RING_N - 1) {
		struct trb *l = &r->t[RING_N - 1];

		l->p = (uint64_t)r->t;
		l->s = 0;
		l->c = TRB_TYPE(T_LINK) | C_TC | r->pcs;
		r->pcs ^= 1;
		r->idx = 0;
	}
	return (uint64_t)t;
}

static uint64_t ring_deq(struct ring *r)
{
	return (uint64_t)&r->t[r->idx] | r->pcs;
}

/* Next event within ~@spins polls; false on timeout. Moves ERDP (clearing EHB). */
static bool next_event(struct trb *ret, unsigned long spins)
{
	while (spins--) {
		struct trb *e = &ev_trbs[ev_idx];

		if ((e->c & 1) == ev_ccs) {
			*ret = *e;
			if (++ev_idx == 64) {
				ev_idx = 0;
				ev_ccs ^= 1;
			}
			mw64(rt + 0x20 + 0x18, (uint64_t)&ev_trbs[ev_idx] | 8);
			return true;
		}
		__asm__ volatile("pause");
	}
	return false;
}

/* Wait for an event of @type (others are skipped); its completion code, or -1. */
static int wait_event(unsigned type, struct trb *ret)
{
	struct trb e;

	while (next_event(&e, 50000000)) {
		if (((e.c >> 10) & 0x3f) == type) {
			if (ret) {
				*ret = e;
			}
			return (int)(e.s >> 24);
		}
	}
	return -1;
}

static int command(uint64_t p, uint32_t s, uint32_t c, struct trb *ret)
{
	uint64_t at = ring_put(&cmd, p, s, c);
	struct trb e;
	int cc;

	mw32(db, 0);
	cc = wait_event(E_COMMAND, &e);
	if (cc >= 0 && e.p != at) {
		fail("command completion for another TRB");
	}
	if (ret) {
		*ret = e;
	}
	return cc;
}

static void doorbell(unsigned target)
{
	mw32(db + 4 * slot_id, target);
}

static int control(uint8_t rt_, uint8_t req, uint16_t val, uint16_t idx, uint16_t len, void *data)
{
	bool in = rt_ & 0x80;
	uint64_t setup = rt_ | (uint64_t)req << 8 | (uint64_t)val << 16 | (uint64_t)idx << 32 |
			 (uint64_t)len << 48;
	uint32_t trt = len ? (in ? 3 : 2) : 0;

	ring_put(&ep0, setup, 8, TRB_TYPE(T_SETUP) | C_IDT | trt << 16);
	if (len) {
		ring_put(&ep0, (uint64_t)data, len, TRB_TYPE(T_DATA) | (in ? 1u << 16 : 0));
	}
	ring_put(&ep0, 0, 0, TRB_TYPE(T_STATUS) | C_IOC | (len && in ? 0 : 1u << 16));
	doorbell(1);
	return wait_event(E_TRANSFER, 0);
}

/* One bulk TD of @len bytes in @parts TRBs on @r (DCI @dci); completion code, residual. */
static int bulk(struct ring *r, unsigned dci, void *data, uint32_t len, unsigned parts,
		uint32_t *ret_residual)
{
	uint32_t per = len / parts;
	struct trb e;
	int cc;

	for (unsigned i = 0; i < parts; i++) {
		uint32_t l = i + 1 == parts ? len - per * i : per;

		ring_put(r, (uint64_t)data + per * i, l,
			 TRB_TYPE(T_NORMAL) | (i + 1 == parts ? C_IOC : C_CH));
	}
	doorbell(dci);
	cc = wait_event(E_TRANSFER, &e);
	if (ret_residual) {
		*ret_residual = e.s & 0xffffff;
	}
	return cc;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static uint32_t get32(const uint8_t *p)
{
	return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* One BOT command: CBW, data phase, CSW. CSW status (0/1/2), or -1 on a transport error. */
static int bot(const uint8_t *cdb, unsigned cdb_len, void *data, uint32_t len, bool in,
	       unsigned parts)
{
	int cc;

	memset(cbw, 0, sizeof(cbw));
	put32(cbw, 0x43425355);
	put32(cbw + 4, ++tag);
	put32(cbw + 8, len);
	cbw[12] = in ? 0x80 : 0;
	cbw[14] = (uint8_t)cdb_len;
	memcpy(cbw + 15, cdb, cdb_len);
	cc = bulk(&bout, dci_out, cbw, 31, 1, 0);
	if (cc != 1) {
		print("xhci: CBW completion ");
		print_dec(cc);
		print("\n");
		return -1;
	}
	if (len) {
		cc = bulk(in ? &bin : &bout, in ? dci_in : dci_out, data, len, parts, 0);
		if (cc != 1) {
			print("xhci: data completion ");
			print_dec(cc);
			print("\n");
			return -1;
		}
	}
	memset(csw, 0, sizeof(csw));
	cc = bulk(&bin, dci_in, csw, 13, 1, 0);
	if (cc != 1 || get32(csw) != 0x53425355 || get32(csw + 4) != tag) {
		print("xhci: bad CSW\n");
		return -1;
	}
	return csw[12];
}

static void fill(uint8_t *b, uint32_t sector, unsigned n)
{
	for (unsigned s = 0; s < n; s++) {
		for (unsigned i = 0; i < 512; i++) {
			b[s * 512 + i] = (uint8_t)((sector + s) * 31 + i * 7 + 0x5a);
		}
	}
}

static void rw10(uint8_t op10, uint32_t lba, uint16_t n, uint8_t *cdb)
{
	memset(cdb, 0, 16);
	cdb[0] = op10;
	cdb[2] = (uint8_t)(lba >> 24);
	cdb[3] = (uint8_t)(lba >> 16);
	cdb[4] = (uint8_t)(lba >> 8);
	cdb[5] = (uint8_t)lba;
	cdb[7] = (uint8_t)(n >> 8);
	cdb[8] = (uint8_t)n;
}

static bool find_controller(void)
{
	unsigned s;

	for (s = 0; s < 32; s++) {
		if (pci_read(s, 0, 4) == 0x000d1b36u) {
			break;
		}
	}
	if (s == 32) {
		print("xhci: no controller\n");
		return false;
	}
	pci_slot = s;
	print("xhci: slot ");
	print_dec(s);
	print(" class ");
	print_hex(pci_read(s, 8, 4) >> 8);
	print(" rev ");
	print_dec(pci_read(s, 8, 1));
	print("\n");
	{
		bool is64;

		pci_write(s, PCI_COMMAND, 0, 2);
		mmio = pci_bar_assign(s, 0, &is64);
		pci_write(s, PCI_COMMAND, 0x6, 2);
	}
	for (unsigned cap = pci_read(s, PCI_CAP_PTR, 1) & ~3u; cap;
	     cap = pci_read(s, cap + 1, 1) & ~3u) {
		if (pci_read(s, cap, 1) == 0x11) {
			uint32_t t = pci_read(s, cap + 4, 4), p = pci_read(s, cap + 8, 4);

			msix_cap = cap;
			print("xhci: msix vectors ");
			print_dec((pci_read(s, cap + 2, 2) & 0x7ff) + 1);
			print(" table bar");
			print_dec(t & 7);
			print("+");
			print_hex(t & ~7u);
			print(" pba bar");
			print_dec(p & 7);
			print("+");
			print_hex(p & ~7u);
			print("\n");
			if ((t & 7) == 0) {
				uint64_t e = mmio + (t & ~7u);

				mw32(e, 0xfee00000u | apic_id() << 12);
				mw32(e + 4, 0);
				mw32(e + 8, 0x40);
				mw32(e + 12, 0);
				pci_write(s, cap + 2, 0x8000, 2);
			}
		}
	}
	return true;
}

/* HCRST and the rings; RS set. */
static bool controller_start(void)
{
	uint32_t caplen = mr32(mmio) & 0xff;

	op = mmio + caplen;
	rt = mmio + (mr32(mmio + 0x18) & ~0x1fu);
	db = mmio + (mr32(mmio + 0x14) & ~3u);
	mw32(op, 2); /* HCRST */
	for (unsigned i = 0; i < 1000000 && (mr32(op) & 2); i++) {
	}
	if ((mr32(op) & 2) || (mr32(op + 4) & (1u << 11))) {
		fail("HCRST did not complete");
		return false;
	}
	if (!(mr32(op + 4) & 1)) {
		fail("HCH not set after reset");
	}
	memset(dcbaa, 0, sizeof(dcbaa));
	memset(ev_trbs, 0, sizeof(ev_trbs));
	ring_init(&cmd, cmd_trbs);
	ev_idx = 0;
	ev_ccs = 1;
	mw32(op + 0x38, 8); /* MaxSlotsEn */
	mw64(op + 0x30, (uint64_t)dcbaa);
	mw64(op + 0x18, (uint64_t)cmd_trbs | 1);
	erst[0].base = (uint64_t)ev_trbs;
	erst[0].size = 64;
	mw32(rt + 0x20 + 0x08, 1);
	mw64(rt + 0x20 + 0x18, (uint64_t)ev_trbs);
	mw64(rt + 0x20 + 0x10, (uint64_t)erst);
	mw32(rt + 0x20, 2); /* IE */
	mw32(op, 1 | 4);    /* RS, INTE */
	if (mr32(op + 4) & 1) {
		fail("still halted after RS");
		return false;
	}
	return true;
}

static bool port_enable(void)
{
	unsigned nports = mr32(mmio + 4) >> 24;
	struct trb e;

	port_no = 0;
	for (unsigned p = 1; p <= nports; p++) {
		uint32_t sc = mr32(op + 0x400 + 0x10 * (p - 1));

		if ((sc & 1) && !port_no) {
			port_no = p;
			print("xhci: port ");
			print_dec(p);
			print(" connected speed ");
			print_dec((sc >> 10) & 0xf);
			print(" pls ");
			print_dec((sc >> 5) & 0xf);
			print(sc & (1u << 17) ? " csc" : "");
			print("\n");
		}
	}
	if (!port_no) {
		fail("no connected port");
		return false;
	}
	/* PR, keeping PP; the change bits are written as 1 to clear them */
	mw32(op + 0x400 + 0x10 * (port_no - 1), (1u << 9) | (1u << 4) | (1u << 17));
	if (wait_event(E_PORT, &e) != 1 || (e.p >> 24) != port_no) {
		fail("no port status change event after reset");
		return false;
	}
	{
		uint32_t sc = mr32(op + 0x400 + 0x10 * (port_no - 1));

		print("xhci: port reset done ped ");
		print_dec((sc >> 1) & 1);
		print(" prc ");
		print_dec((sc >> 21) & 1);
		print("\n");
		mw32(op + 0x400 + 0x10 * (port_no - 1), (1u << 9) | (1u << 21));
		if (!(sc & 2)) {
			fail("port not enabled after reset");
			return false;
		}
	}
	return true;
}

static bool enumerate(void)
{
	struct trb e;
	unsigned speed;
	int cc;

	cc = command(0, 0, TRB_TYPE(T_ENABLE_SLOT), &e);
	slot_id = e.c >> 24;
	print("xhci: enable slot cc ");
	print_dec(cc);
	print(" slot ");
	print_dec(slot_id);
	print("\n");
	if (cc != 1 || !slot_id) {
		return false;
	}
	if (msix_cap) {
		print(lapic_irr(0x40) ? "xhci: msix vector delivered\n" : "xhci: no msix\n");
	}
	speed = (mr32(op + 0x400 + 0x10 * (port_no - 1)) >> 10) & 0xf;
	memset(in_ctx, 0, sizeof(in_ctx));
	memset(out_ctx, 0, sizeof(out_ctx));
	in_ctx[1] = 3;					/* A0, A1 */
	in_ctx[8 + 0] = 1u << 27 | speed << 20;		/* one context entry */
	in_ctx[8 + 1] = port_no << 16;			/* root hub port */
	in_ctx[16 + 1] = 3u << 1 | 4u << 3 | 64u << 16; /* CErr 3, control, MPS 64 */
	ring_init(&ep0, ep0_trbs);
	in_ctx[16 + 2] = (uint32_t)ring_deq(&ep0);
	in_ctx[16 + 3] = 0;
	in_ctx[16 + 4] = 8;
	dcbaa[slot_id] = (uint64_t)out_ctx;
	cc = command((uint64_t)in_ctx, 0, TRB_TYPE(T_ADDRESS) | slot_id << 24, 0);
	print("xhci: address device cc ");
	print_dec(cc);
	print(" state ");
	print_dec(out_ctx[3] >> 27);
	print(" address ");
	print_dec(out_ctx[3] & 0xff);
	print(" ep0 state ");
	print_dec(out_ctx[8] & 7);
	print("\n");
	return cc == 1;
}

static bool describe(void)
{
	uint8_t *d = buf;
	unsigned off;
	int cc;

	memset(buf, 0, 512);
	cc = control(0x80, 6, 0x0100, 0, 18, d);
	if (cc != 1) {
		fail("GET_DESCRIPTOR(device)");
		return false;
	}
	print("xhci: device ");
	print_hex(d[8] | d[9] << 8);
	print(":");
	print_hex(d[10] | d[11] << 8);
	print(" usb ");
	print_hex(d[2] | d[3] << 8);
	print(" mps0 ");
	print_dec(d[7]);
	print("\n");
	cc = control(0x80, 6, 0x0200, 0, 9, d);
	if (cc != 1 || d[1] != 2) {
		fail("GET_DESCRIPTOR(config, 9)");
		return false;
	}
	cc = control(0x80, 6, 0x0200, 0, (uint16_t)(d[2] | d[3] << 8), d);
	if (cc != 1) {
		fail("GET_DESCRIPTOR(config)");
		return false;
	}
	print("xhci: interface class ");
	print_dec(d[9 + 5]);
	print(" subclass ");
	print_dec(d[9 + 6]);
	print(" protocol ");
	print_hex(d[9 + 7]);
	print("\n");
	for (off = 0; off + 7 <= (unsigned)(d[2] | d[3] << 8); off += d[off]) {
		if (d[off + 1] == 5 && (d[off + 3] & 3) == 2) {
			unsigned ep = d[off + 2];

			if (ep & 0x80) {
				dci_in = (ep & 0xf) * 2 + 1;
			} else {
				dci_out = (ep & 0xf) * 2;
			}
		}
		if (d[off] == 0) {
			break;
		}
	}
	print("xhci: bulk dci in ");
	print_dec(dci_in);
	print(" out ");
	print_dec(dci_out);
	print("\n");
	/* product string (index 2) */
	memset(buf, 0, 256);
	if (control(0x80, 6, 0x0302, 0x0409, 255, buf) == 1) {
		char s[64];
		unsigned n = (buf[0] - 2) / 2;

		for (unsigned i = 0; i < n && i < 63; i++) {
			s[i] = (char)buf[2 + 2 * i];
			s[i + 1] = 0;
		}
		print("xhci: product \"");
		print(n ? s : "");
		print("\"\n");
	}
	return dci_in && dci_out;
}

static bool configure(void)
{
	unsigned last = dci_in > dci_out ? dci_in : dci_out;
	int cc;

	memset(in_ctx, 0, sizeof(in_ctx));
	in_ctx[1] = 1u | 1u << dci_in | 1u << dci_out;
	in_ctx[8] = last << 27 | ((mr32(op + 0x400 + 0x10 * (port_no - 1)) >> 10) & 0xf) << 20;
	in_ctx[8 + 1] = port_no << 16;
	ring_init(&bin, in_trbs);
	ring_init(&bout, out_trbs);
	in_ctx[8 * (dci_in + 1) + 1] = 3u << 1 | 6u << 3 | 512u << 16;
	in_ctx[8 * (dci_in + 1) + 2] = (uint32_t)ring_deq(&bin);
	in_ctx[8 * (dci_out + 1) + 1] = 3u << 1 | 2u << 3 | 512u << 16;
	in_ctx[8 * (dci_out + 1) + 2] = (uint32_t)ring_deq(&bout);
	cc = command((uint64_t)in_ctx, 0, TRB_TYPE(T_CONFIGURE) | slot_id << 24, 0);
	print("xhci: configure endpoint cc ");
	print_dec(cc);
	print(" slot state ");
	print_dec(out_ctx[3] >> 27);
	print(" bulk states ");
	print_dec(out_ctx[8 * dci_in] & 7);
	print_dec(out_ctx[8 * dci_out] & 7);
	print("\n");
	if (cc != 1) {
		return false;
	}
	cc = control(0x00, 9, 1, 0, 0, 0);
	print("xhci: set configuration cc ");
	print_dec(cc);
	print("\n");
	return cc == 1;
}

static void storage(void)
{
	uint8_t cdb[16];
	uint8_t lun = 0xff;
	uint32_t blocks, crc;
	int st;

	if (control(0xa1, 0xfe, 0, 0, 1, &lun) != 1 || lun != 0) {
		fail("GET MAX LUN");
	}
	memset(cdb, 0, 16);
	cdb[0] = 0x12;
	cdb[4] = 36;
	memset(buf, 0, 64);
	st = bot(cdb, 6, buf, 36, true, 1);
	buf[32] = 0;
	print("xhci: inquiry status ");
	print_dec(st);
	print(" \"");
	print((char *)buf + 8);
	print("\"\n");
	memset(cdb, 0, 16);
	st = bot(cdb, 6, 0, 0, false, 1);
	print("xhci: test unit ready ");
	print_dec(st);
	print("\n");
	memset(cdb, 0, 16);
	cdb[0] = 0x25;
	st = bot(cdb, 10, buf, 8, true, 1);
	blocks = be32(buf) + 1;
	print("xhci: capacity ");
	print_dec(blocks);
	print(" blocks of ");
	print_dec(be32(buf + 4));
	print(" status ");
	print_dec(st);
	print("\n");
	memset(cdb, 0, 16);
	cdb[0] = 0x9e;
	cdb[1] = 0x10;
	cdb[13] = 32;
	st = bot(cdb, 16, buf, 32, true, 1);
	print("xhci: capacity16 last lba ");
	print_dec(be32(buf + 4));
	print(" status ");
	print_dec(st);
	print("\n");
	memset(cdb, 0, 16);
	cdb[0] = 0x1a;
	cdb[2] = 0x3f;
	cdb[4] = 64;
	st = bot(cdb, 6, buf, 64, true, 1);
	print("xhci: mode sense status ");
	print_dec(st);
	print(" wp ");
	print_dec(buf[2] >> 7);
	print("\n");

	rw10(0x28, 0, 8, cdb);
	st = bot(cdb, 10, buf, 8 * 512, true, 1);
	crc = crc32(buf, 8 * 512, 0);
	print("xhci: read 0-7 status ");
	print_dec(st);
	print(" crc ");
	print_hex(crc);
	print("\n");

	/* sectors 8..71: eight writes of 8 sectors in TDs of 1, 2 or 4 TRBs */
	for (uint32_t s = 8; s < 72; s += 8) {
		unsigned parts = 1u << ((s / 8) % 3);

		fill(buf, s, 8);
		rw10(0x2a, s, 8, cdb);
		st = bot(cdb, 10, buf, 8 * 512, false, parts);
		if (st != 0) {
			fail("write");
		}
	}
	/* READ (16) of all 64 in one TD of four TRBs */
	memset(cdb, 0, 16);
	cdb[0] = 0x88;
	cdb[9] = 8;
	cdb[13] = 64;
	memset(buf, 0, sizeof(buf));
	st = bot(cdb, 16, buf, 64 * 512, true, 4);
	fill(check, 8, 64);
	print(st == 0 && memcmp(buf, check, 64 * 512) == 0 ? "xhci: readback ok\n"
							   : "xhci: readback BAD\n");
	memset(cdb, 0, 16);
	cdb[0] = 0x35;
	st = bot(cdb, 10, 0, 0, false, 1);
	print(st == 0 ? "xhci: synchronize cache ok\n" : "xhci: synchronize cache failed\n");
	/* past the end: CHECK CONDITION, then the sense says why */
	rw10(0x28, blocks, 1, cdb);
	st = bot(cdb, 10, buf, 512, true, 1);
	memset(cdb, 0, 16);
	cdb[0] = 0x03;
	cdb[4] = 18;
	bot(cdb, 6, sense, 18, true, 1);
	print("xhci: past-end read status ");
	print_dec(st);
	print(" sense ");
	print_hex(sense[2] & 0xf);
	print("/");
	print_hex(sense[12]);
	print("\n");
}

static void test_unit_ready_ok(const char *after)
{
	uint8_t cdb[16];

	memset(cdb, 0, 16);
	print("xhci: after ");
	print(after);
	print(bot(cdb, 6, 0, 0, false, 1) == 0 ? ": storage ok\n" : ": storage BROKEN\n");
}

/* Reset Endpoint + Set TR Dequeue Pointer to the ring's current enqueue position. */
static void recover_ep(struct ring *r, unsigned dci)
{
	int cc1 = command(0, 0, TRB_TYPE(T_RESET_EP) | dci << 16 | slot_id << 24, 0);
	int cc2 = command(ring_deq(r), 0, TRB_TYPE(T_SET_DEQ) | dci << 16 | slot_id << 24, 0);

	if (cc1 != 1 || cc2 != 1) {
		fail("endpoint recovery");
	}
}

static void hostile(void)
{
	struct trb e;
	int cc;

	/* 1. a Link TRB loop on the bulk OUT ring */
	cc = command(0, 0, TRB_TYPE(T_STOP_EP) | dci_out << 16 | slot_id << 24, 0);
	memset(loop_trbs, 0, sizeof(loop_trbs));
	loop_trbs[0].p = (uint64_t)&loop_trbs[1];
	loop_trbs[0].c = TRB_TYPE(T_LINK) | 1;
	loop_trbs[1].p = (uint64_t)&loop_trbs[0];
	loop_trbs[1].c = TRB_TYPE(T_LINK) | 1;
	cc = command((uint64_t)loop_trbs | 1, 0,
		     TRB_TYPE(T_SET_DEQ) | dci_out << 16 | slot_id << 24, 0);
	doorbell(dci_out);
	cc = wait_event(E_TRANSFER, &e);
	print("xhci: link loop completion ");
	print_dec(cc);
	print(" ep state ");
	print_dec(out_ctx[8 * dci_out] & 7);
	print("\n");
	recover_ep(&bout, dci_out);
	test_unit_ready_ok("link loop");

	/* 2. a buffer outside guest RAM (64 MiB here; 1 TiB is far outside) */
	ring_put(&bout, 0x10000000000ull, 31, TRB_TYPE(T_NORMAL) | C_IOC);
	doorbell(dci_out);
	cc = wait_event(E_TRANSFER, &e);
	print("xhci: out-of-range dma completion ");
	print_dec(cc);
	print(" ep state ");
	print_dec(out_ctx[8 * dci_out] & 7);
	print("\n");
	recover_ep(&bout, dci_out);
	test_unit_ready_ok("bad dma");

	/* 2b. EP0: a TD that is no control transfer, then a data stage past 4 KiB */
	ring_put(&ep0, 0, 8, TRB_TYPE(T_NORMAL) | C_IDT | C_IOC);
	doorbell(1);
	cc = wait_event(E_TRANSFER, &e);
	print("xhci: malformed control td completion ");
	print_dec(cc);
	print(" ep0 state ");
	print_dec(out_ctx[8] & 7);
	print("\n");
	recover_ep(&ep0, 1);
	cc = control(0x80, 6, 0x0100, 0, 8192, buf);
	print("xhci: 8 KiB control read completion ");
	print_dec(cc);
	print("\n");
	recover_ep(&ep0, 1);
	memset(buf, 0, 18);
	cc = control(0x80, 6, 0x0100, 0, 18, buf);
	print(cc == 1 && buf[1] == 1 ? "xhci: after ep0 errors: descriptor ok\n"
				     : "xhci: after ep0 errors: BROKEN\n");

	/* 3. a doorbell for a slot that is not enabled, and for DCI 31 */
	mw32(db + 4 * 7, 3);
	doorbell(31);
	cc = command(0, 0, TRB_TYPE(T_NOOP_CMD), 0);
	print("xhci: no-op after stray doorbells cc ");
	print_dec(cc);
	print("\n");

	/* 4. Evaluate Context: EP0 max packet 64 again */
	memset(in_ctx, 0, sizeof(in_ctx));
	in_ctx[1] = 2;
	in_ctx[16 + 1] = 3u << 1 | 4u << 3 | 64u << 16;
	cc = command((uint64_t)in_ctx, 0, TRB_TYPE(T_EVALUATE) | slot_id << 24, 0);
	print("xhci: evaluate context cc ");
	print_dec(cc);
	print("\n");

	/* 4b. 70 commands while nobody reads the 64-entry event ring: Event Ring Full */
	{
		unsigned completions = 0, full = 0, others = 0;
		struct trb ev;

		for (unsigned i = 0; i < 70; i++) {
			ring_put(&cmd, 0, 0, TRB_TYPE(T_NOOP_CMD));
			mw32(db, 0);
		}
		while (next_event(&ev, 2000000)) {
			unsigned type = (ev.c >> 10) & 0x3f;

			if (type == E_COMMAND && (ev.s >> 24) == 1) {
				completions++;
			} else if (type == 37 && (ev.s >> 24) == 21) {
				full++;
			} else {
				others++;
			}
		}
		print("xhci: flood: completions ");
		print_dec(completions);
		print(" ring-full events ");
		print_dec(full);
		print(" others ");
		print_dec(others);
		print("\n");
		cc = command(0, 0, TRB_TYPE(T_NOOP_CMD), 0);
		print("xhci: after event ring full no-op cc ");
		print_dec(cc);
		print("\n");
	}

	/* 5. the command ring: stop it, point it outside RAM, ring */
	mw32(op + 0x18, 2); /* CS */
	cc = wait_event(E_COMMAND, &e);
	print("xhci: command ring stopped cc ");
	print_dec(cc);
	print("\n");
	mw64(op + 0x18, 0x10000000000ull | 1);
	mw32(db, 0);
	print((mr32(op + 4) & (1u << 12)) ? "xhci: bad command ring: HCE set\n"
					  : "xhci: bad command ring: no HCE\n");
	/* HCRST recovers; then a command ring that is one Link to itself */
	if (!controller_start()) {
		return;
	}
	cc = command(0, 0, TRB_TYPE(T_NOOP_CMD), 0);
	print("xhci: after reset no-op cc ");
	print_dec(cc);
	print("\n");
	mw32(op + 0x18, 2);
	wait_event(E_COMMAND, 0);
	loop_trbs[0].p = (uint64_t)&loop_trbs[0];
	loop_trbs[0].c = TRB_TYPE(T_LINK) | 1; /* no Toggle Cycle: it stays ours forever */
	mw64(op + 0x18, (uint64_t)loop_trbs | 1);
	mw32(db, 0);
	print((mr32(op + 4) & (1u << 12)) ? "xhci: command link loop: HCE set\n"
					  : "xhci: command link loop: no HCE\n");
	/* and once more from the start: the device enumerates again */
	if (controller_start() && port_enable() && enumerate() && describe() && configure()) {
		test_unit_ready_ok("controller reset");
	}
}

/* A Port Status Change event, waiting up to minutes (the host acts when it reads the console). */
static int wait_port_change(struct trb *e)
{
	for (unsigned i = 0; i < 600; i++) {
		int cc = wait_event(E_PORT, e);

		if (cc >= 0) {
			return cc;
		}
	}
	return -1;
}

static void print_port(const char *what, unsigned p, uint32_t sc)
{
	print("xhci: hotplug: port ");
	print_dec(p);
	print(" ");
	print(what);
	print(" ccs ");
	print_dec(sc & 1);
	print(" csc ");
	print_dec((sc >> 17) & 1);
	print(" ped ");
	print_dec((sc >> 1) & 1);
	print("\n");
}

static void hotplug(void)
{
	for (unsigned round = 1; round <= 3; round++) {
		uint8_t cdb[16];
		struct trb e;
		uint32_t sc;
		unsigned p;
		int cc, st;

		print("xhci: hotplug: waiting round ");
		print_dec(round);
		print("\n");
		if (wait_port_change(&e) != 1) {
			fail("no port status change for the connect");
			return;
		}
		p = (unsigned)(e.p >> 24);
		sc = mr32(op + 0x400 + 0x10 * (p - 1));
		print_port("connect", p, sc);
		if (!(sc & 1)) {
			fail("connect event without CCS");
			return;
		}
		if (!port_enable() || port_no != p || !enumerate() || !describe() || !configure()) {
			fail("enumeration after hotplug");
			return;
		}
		rw10(0x28, 0, 8, cdb);
		st = bot(cdb, 10, buf, 8 * 512, true, 1);
		print("xhci: hotplug: round ");
		print_dec(round);
		print(" read status ");
		print_dec(st);
		print(" crc ");
		print_hex(crc32(buf, 8 * 512, 0));
		print("\n");
		/* a CBW queued on the ring, not rung yet: it is in flight during the removal */
		memset(cbw, 0, sizeof(cbw));
		put32(cbw, 0x43425355);
		put32(cbw + 4, ++tag);
		cbw[14] = 6;
		ring_put(&bout, (uint64_t)cbw, 31, TRB_TYPE(T_NORMAL) | C_IOC);
		print("xhci: hotplug: round ");
		print_dec(round);
		print(" ready for removal\n");
		if (wait_port_change(&e) != 1 || (unsigned)(e.p >> 24) != p) {
			fail("no port status change for the disconnect");
			return;
		}
		sc = mr32(op + 0x400 + 0x10 * (p - 1));
		print_port("disconnect", p, sc);
		mw32(op + 0x400 + 0x10 * (p - 1), (1u << 9) | (1u << 17));
		doorbell(dci_out);
		cc = wait_event(E_TRANSFER, 0);
		print("xhci: hotplug: transfer after removal cc ");
		print_dec(cc);
		print("\n");
		cc = command(0, 0, TRB_TYPE(T_DISABLE_SLOT) | slot_id << 24, 0);
		print("xhci: hotplug: disable slot cc ");
		print_dec(cc);
		print("\n");
	}
	print("xhci: hotplug: done\n");
}

#define SAVE_ROUNDS 800

/* Byte i of the sector written in round n. */
static uint8_t save_byte(unsigned n, unsigned i)
{
	return (uint8_t)(n * 13 + i * 3 + 0x21);
}

static void saveloop(void)
{
	uint8_t cdb[16];
	bool good = true;

	for (unsigned n = 0; n < SAVE_ROUNDS && good; n++) {
		uint32_t sector = 1 + n % 64;
		int st;

		for (unsigned i = 0; i < 512; i++) {
			buf[i] = save_byte(n, i);
		}
		rw10(0x2a, sector, 1, cdb);
		st = bot(cdb, 10, buf, 512, false, 1 + n % 2);
		memset(check, 0, 512);
		rw10(0x28, sector, 1, cdb);
		st |= bot(cdb, 10, check, 512, true, 1 + n % 3);
		if (st != 0 || memcmp(buf, check, 512) != 0) {
			print("xhci: saveloop round ");
			print_dec(n);
			print(" BAD\n");
			good = false;
		}
		if (n % 100 == 99) {
			print("xhci: saveloop ");
			print_dec(n + 1);
			print(" ok\n");
		}
	}
	print(good ? "xhci: saveloop done ok\n" : "xhci: saveloop done BAD\n");
}

static bool any_connected(void)
{
	for (unsigned p = 1; p <= (mr32(mmio + 4) >> 24); p++) {
		if (mr32(op + 0x400 + 0x10 * (p - 1)) & 1) {
			return true;
		}
	}
	return false;
}

void guest_main(void)
{
	uint64_t ecam;

	serial_init();
	lapic_enable();
	ecam = pci_find_ecam();
	if (ecam) {
		pci_use_ecam(ecam);
	}
	if (!find_controller()) {
		guest_poweroff();
	}
	print("xhci: hciversion ");
	print_hex(mr32(mmio) >> 16);
	print(" slots ");
	print_dec(mr32(mmio + 4) & 0xff);
	print(" intrs ");
	print_dec((mr32(mmio + 4) >> 8) & 0x7ff);
	print(" ports ");
	print_dec(mr32(mmio + 4) >> 24);
	print("\n");
	for (uint32_t x = (mr32(mmio + 0x10) >> 16) * 4, n; x; x = n ? x + n * 4 : 0) {
		uint32_t h = mr32(mmio + x);

		n = (h >> 8) & 0xff;
		if ((h & 0xff) == 2) {
			uint32_t ports = mr32(mmio + x + 8);

			print("xhci: protocol usb ");
			print_hex(h >> 24);
			print(" ports ");
			print_dec(ports & 0xff);
			print("-");
			print_dec((ports & 0xff) + ((ports >> 8) & 0xff) - 1);
			print("\n");
		}
	}
	if (controller_start() && !any_connected()) {
		hotplug();
		/* stay up: the host still talks to the VM (blockdev-del) after the last round */
		print(ok ? "xhci: done\n" : "xhci: done with failures\n");
		for (;;) {
			__asm__ volatile("cli; hlt");
		}
	} else if (port_enable() && enumerate() && describe() && configure()) {
		uint8_t cdb[16];

		rw10(0x28, 0, 1, cdb);
		if (bot(cdb, 10, buf, 512, true, 1) == 0 && memcmp(buf, "USBSAVE!", 8) == 0) {
			saveloop();
			guest_poweroff();
		}
		storage();
		hostile();
	} else {
		fail("enumeration");
	}
	print(ok ? "xhci: done\n" : "xhci: done with failures\n");
	guest_poweroff();
}
