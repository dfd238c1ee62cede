/*
 * hw/usb without a VM: the xHCI TRB ring walker over fake guest RAM (empty
 * rings, chains, Link TRBs with and without Toggle Cycle, Link loops,
 * rings and TRBs outside RAM, overlong and incomplete TDs, control TDs),
 * the SCSI command parser (every command, allocation lengths, ranges at
 * and past the capacity, read-only, sense data) and the Bulk-Only
 * Transport state machine of usb-storage (a good command, a bad CBW that
 * halts both pipes until CLEAR_FEATURE), and the HID devices (a report per
 * key event, modifiers, rollover, held-back releases, LEDs, protocols, the
 * bounded queue, tablet reports).
 */
#include <check.h>
#include <endian.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hw/usb/scsi.h"
#include "hw/usb/usb.h"
#include "hw/usb/xhci-ring.h"
#include "tests/unit/fake-machine.h"

#define RAM (1u << 20)

static struct vm *vm;
static struct guest_mem *mem;

static void setup(void)
{
	vm = fake_vm_new(NULL, RAM, NULL);
	mem = vm_guest_mem(vm);
}

static void teardown(void)
{
	fake_vm_free(vm);
}

static void put_trb(uint64_t addr, uint64_t p, uint32_t s, uint32_t c)
{
	uint64_t lp = htole64(p);
	uint32_t ls = htole32(s), lc = htole32(c);

	uint8_t *ram = fake_vm_ram(vm, addr);

	memcpy(ram, &lp, 8);
	memcpy(ram + 8, &ls, 4);
	memcpy(ram + 12, &lc, 4);
}

#define T(type) ((uint32_t)(type) << 10)

START_TEST(test_ring_empty)
{
	struct xhci_ring r;
	struct xhci_trb t;
	uint64_t a;

	xhci_ring_init(&r, 0x1000, true);
	put_trb(0x1000, 0, 0, T(TRB_NORMAL)); /* cycle 0: not ours */
	ck_assert_int_eq(xhci_ring_peek(mem, &r, &t, &a), 0);
	put_trb(0x1000, 0x55, 7, T(TRB_NORMAL) | TRB_C);
	ck_assert_int_eq(xhci_ring_peek(mem, &r, &t, &a), 1);
	ck_assert_uint_eq(a, 0x1000);
	ck_assert_uint_eq(t.param, 0x55);
	ck_assert_uint_eq(t.status, 7);
	xhci_ring_advance(&r);
	ck_assert_uint_eq(r.dequeue, 0x1010);
}
END_TEST

START_TEST(test_ring_chain_across_link)
{
	struct xhci_trb trbs[8];
	uint64_t addrs[8];
	struct xhci_ring r, end;

	/* segment A: a chained Normal, then a Link (toggle) to segment B */
	xhci_ring_init(&r, 0x2000, true);
	put_trb(0x2000, 0x10000, 512, T(TRB_NORMAL) | TRB_CH | TRB_C);
	put_trb(0x2010, 0x3000, 0, T(TRB_LINK) | TRB_TC | TRB_CH | TRB_C);
	/* after the toggle our cycle is 0 */
	put_trb(0x3000, 0x20000, 100, T(TRB_NORMAL) | TRB_IOC);
	ck_assert_int_eq(xhci_ring_fetch_td(mem, &r, trbs, addrs, 8, &end), 2);
	ck_assert_uint_eq(addrs[0], 0x2000);
	ck_assert_uint_eq(addrs[1], 0x3000);
	ck_assert_uint_eq(trbs[1].status, 100);
	ck_assert_uint_eq(end.dequeue, 0x3010);
	ck_assert(!end.ccs);
	/* the caller's ring is untouched */
	ck_assert_uint_eq(r.dequeue, 0x2000);
}
END_TEST

START_TEST(test_ring_incomplete_td)
{
	struct xhci_trb trbs[8];
	uint64_t addrs[8];
	struct xhci_ring r, end;

	xhci_ring_init(&r, 0x2000, true);
	put_trb(0x2000, 0x10000, 512, T(TRB_NORMAL) | TRB_CH | TRB_C);
	put_trb(0x2010, 0, 0, 0); /* the rest is not written yet */
	ck_assert_int_eq(xhci_ring_fetch_td(mem, &r, trbs, addrs, 8, &end), 0);
}
END_TEST

START_TEST(test_ring_link_loop)
{
	struct xhci_trb trbs[8], t;
	uint64_t addrs[8], a;
	struct xhci_ring r, end;

	put_trb(0x4000, 0x4010, 0, T(TRB_LINK) | TRB_C);
	put_trb(0x4010, 0x4000, 0, T(TRB_LINK) | TRB_C);
	xhci_ring_init(&r, 0x4000, true);
	ck_assert_int_eq(xhci_ring_fetch_td(mem, &r, trbs, addrs, 8, &end), -ELOOP);
	ck_assert_int_eq(xhci_ring_peek(mem, &r, &t, &a), -ELOOP);
	/* a Link to itself with Toggle Cycle is merely an empty ring */
	put_trb(0x5000, 0x5000, 0, T(TRB_LINK) | TRB_TC | TRB_C);
	xhci_ring_init(&r, 0x5000, true);
	ck_assert_int_eq(xhci_ring_peek(mem, &r, &t, &a), 0);
	ck_assert(!r.ccs);
}
END_TEST

START_TEST(test_ring_outside_ram)
{
	struct xhci_trb trbs[8], t;
	uint64_t addrs[8], a;
	struct xhci_ring r, end;

	xhci_ring_init(&r, RAM, true);
	ck_assert_int_eq(xhci_ring_peek(mem, &r, &t, &a), -EFAULT);
	/* a TRB straddling the end of RAM */
	xhci_ring_init(&r, RAM - 8, true);
	ck_assert_uint_eq(r.dequeue, RAM - 16); /* aligned down to a TRB */
	r.dequeue = RAM - 8;
	ck_assert_int_eq(xhci_ring_peek(mem, &r, &t, &a), -EFAULT);
	/* a Link pointing outside RAM */
	put_trb(0x6000, 0x7fff00000000ull, 0, T(TRB_LINK) | TRB_C);
	xhci_ring_init(&r, 0x6000, true);
	ck_assert_int_eq(xhci_ring_fetch_td(mem, &r, trbs, addrs, 8, &end), -EFAULT);
	ck_assert_int_eq(xhci_ring_peek(mem, &r, &t, &a), -EFAULT);
}
END_TEST

START_TEST(test_ring_td_too_long)
{
	struct xhci_trb trbs[XHCI_TD_MAX_TRBS];
	uint64_t addrs[XHCI_TD_MAX_TRBS];
	struct xhci_ring r, end;

	/* four chained Normals and a Link back without Toggle: an endless TD */
	for (unsigned i = 0; i < 4; i++) {
		put_trb(0x8000 + 16 * i, 0x10000, 8, T(TRB_NORMAL) | TRB_CH | TRB_C);
	}
	put_trb(0x8040, 0x8000, 0, T(TRB_LINK) | TRB_CH | TRB_C);
	xhci_ring_init(&r, 0x8000, true);
	ck_assert_int_eq(xhci_ring_fetch_td(mem, &r, trbs, addrs, 3, &end), -E2BIG);
	ck_assert_int_lt(xhci_ring_fetch_td(mem, &r, trbs, addrs, XHCI_TD_MAX_TRBS, &end), 0);
}
END_TEST

START_TEST(test_ring_control_td)
{
	struct xhci_trb trbs[8];
	uint64_t addrs[8];
	struct xhci_ring r, end;

	xhci_ring_init(&r, 0x9000, true);
	put_trb(0x9000, 0x0012000001000680ull, 8, T(TRB_SETUP) | TRB_IDT | TRB_C | 3u << 16);
	put_trb(0x9010, 0x10000, 18, T(TRB_DATA) | TRB_C | 1u << 16);
	put_trb(0x9020, 0, 0, T(TRB_STATUS) | TRB_IOC | TRB_C);
	put_trb(0x9030, 0, 0, T(TRB_SETUP) | TRB_C);
	ck_assert_int_eq(xhci_ring_fetch_td(mem, &r, trbs, addrs, 8, &end), 3);
	ck_assert_uint_eq(TRB_TYPE(trbs[2].control), TRB_STATUS);
	ck_assert_uint_eq(end.dequeue, 0x9030);
	/* a Setup whose Status Stage is not written yet */
	ck_assert_int_eq(xhci_ring_fetch_td(mem, &end, trbs, addrs, 8, &r), 0);
}
END_TEST

/* ---- SCSI ---- */

static struct scsi_disk disk;
static struct scsi_req req;

static void cmd(const uint8_t *cdb, unsigned len)
{
	scsi_disk_command(&disk, cdb, len, &req);
}

static void expect_sense(uint8_t key, uint8_t asc)
{
	const uint8_t rs[6] = {0x03, 0, 0, 0, 18, 0};

	ck_assert_int_eq(req.status, SCSI_CHECK_CONDITION);
	cmd(rs, 6);
	ck_assert_int_eq(req.status, SCSI_GOOD);
	ck_assert_uint_eq(req.len, 18);
	ck_assert_uint_eq(req.buf[0], 0x70);
	ck_assert_uint_eq(req.buf[2], key);
	ck_assert_uint_eq(req.buf[12], asc);
	/* reading the sense clears it */
	cmd(rs, 6);
	ck_assert_uint_eq(req.buf[2], 0);
}

START_TEST(test_scsi_inquiry)
{
	const uint8_t std[6] = {0x12, 0, 0, 0, 36, 0};
	const uint8_t shortq[6] = {0x12, 0, 0, 0, 5, 0};
	const uint8_t vpd80[6] = {0x12, 1, 0x80, 0, 255, 0};
	const uint8_t vpd00[6] = {0x12, 1, 0x00, 0, 255, 0};
	const uint8_t bad[6] = {0x12, 1, 0xb7, 0, 255, 0};

	scsi_disk_init(&disk, NULL, 2048, false, true, "SER-1");
	cmd(std, 6);
	ck_assert_int_eq(req.status, SCSI_GOOD);
	ck_assert_int_eq(req.dir, SCSI_DIR_IN);
	ck_assert_uint_eq(req.len, 36);
	ck_assert_uint_eq(req.buf[0], 0);
	ck_assert_uint_eq(req.buf[1], 0x80); /* removable */
	ck_assert(memcmp(req.buf + 8, "QEMU    QEMU HARDDISK   ", 24) == 0);
	cmd(shortq, 6);
	ck_assert_uint_eq(req.len, 5);
	cmd(vpd80, 6);
	ck_assert_uint_eq(req.len, 4 + 5);
	ck_assert(memcmp(req.buf + 4, "SER-1", 5) == 0);
	cmd(vpd00, 6);
	ck_assert_uint_eq(req.len, 7);
	cmd(bad, 6);
	expect_sense(0x5, 0x24);
}
END_TEST

START_TEST(test_scsi_capacity)
{
	const uint8_t rc10[10] = {0x25};
	const uint8_t rc16[16] = {0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32};
	const uint8_t sa_bad[16] = {0x9e, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32};

	scsi_disk_init(&disk, NULL, 8192, false, false, "");
	cmd(rc10, 10);
	ck_assert_uint_eq(req.len, 8);
	ck_assert_uint_eq(req.buf[2] << 8 | req.buf[3], 8191);
	ck_assert_uint_eq(req.buf[6] << 8 | req.buf[7], 512);
	cmd(rc16, 16);
	ck_assert_uint_eq(req.len, 32);
	ck_assert_uint_eq(req.buf[6] << 8 | req.buf[7], 8191);
	cmd(sa_bad, 16);
	expect_sense(0x5, 0x24);
	/* past 2 TiB READ CAPACITY (10) says "use (16)" */
	scsi_disk_init(&disk, NULL, 1ull << 33, false, false, "");
	cmd(rc10, 10);
	ck_assert_uint_eq(req.buf[0] & req.buf[1] & req.buf[2] & req.buf[3], 0xff);
	cmd(rc16, 16);
	ck_assert_uint_eq(req.buf[3], 1); /* 2^33 - 1: byte 3 holds bit 32 */
}
END_TEST

START_TEST(test_scsi_read_write_ranges)
{
	uint8_t r10[10] = {0x28, 0, 0, 0, 0x1f, 0xf8, 0, 0, 8, 0}; /* LBA 8184, 8 blocks */
	uint8_t r16[16] = {0x88};
	const uint8_t r6[6] = {0x08, 0, 0, 0, 0, 0};
	const uint8_t short10[6] = {0x28, 0, 0, 0, 0, 0};

	scsi_disk_init(&disk, NULL, 8192, false, false, "");
	cmd(r10, 10);
	ck_assert_int_eq(req.status, SCSI_GOOD);
	ck_assert(req.rw);
	ck_assert_int_eq(req.dir, SCSI_DIR_IN);
	ck_assert_uint_eq(req.offset, 8184ull * 512);
	ck_assert_uint_eq(req.len, 8 * 512);
	r10[8] = 9; /* one block past the end */
	cmd(r10, 10);
	expect_sense(0x5, 0x21);
	/* READ (16) with an LBA that wraps when the length is added */
	memset(r16 + 2, 0xff, 8);
	r16[13] = 2;
	cmd(r16, 16);
	expect_sense(0x5, 0x21);
	/* READ (6) with length 0 means 256 blocks */
	cmd(r6, 6);
	ck_assert_uint_eq(req.len, 256 * 512);
	/* a CDB shorter than its group's size */
	cmd(short10, 6);
	expect_sense(0x5, 0x24);
	/* zero-length READ (10): no data phase */
	r10[8] = 0;
	cmd(r10, 10);
	ck_assert_int_eq(req.status, SCSI_GOOD);
	ck_assert_int_eq(req.dir, SCSI_DIR_NONE);
}
END_TEST

START_TEST(test_scsi_readonly_and_mode_sense)
{
	const uint8_t w10[10] = {0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0};
	const uint8_t ms6[6] = {0x1a, 0, 0x3f, 0, 255, 0};
	const uint8_t ms10[10] = {0x5a, 0, 0x08, 0, 0, 0, 0, 1, 0, 0};
	const uint8_t ms_bad[6] = {0x1a, 0, 0x1c, 0, 255, 0};

	scsi_disk_init(&disk, NULL, 100, true, false, "");
	cmd(w10, 10);
	expect_sense(0x7, 0x27);
	cmd(ms6, 6);
	ck_assert_int_eq(req.status, SCSI_GOOD);
	ck_assert_uint_eq(req.buf[2], 0x80); /* WP */
	ck_assert_uint_eq(req.len, 4 + 20);
	ck_assert_uint_eq(req.buf[0], 4 + 20 - 1);
	ck_assert_uint_eq(req.buf[4], 0x08);
	cmd(ms10, 10);
	ck_assert_uint_eq(req.len, 8 + 20);
	ck_assert_uint_eq(req.buf[3], 0x80);
	cmd(ms_bad, 6);
	expect_sense(0x5, 0x24);
}
END_TEST

START_TEST(test_scsi_misc)
{
	const uint8_t tur[6] = {0};
	const uint8_t sync[10] = {0x35};
	const uint8_t prevent[6] = {0x1e, 0, 0, 0, 1, 0};
	const uint8_t luns[12] = {0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0};
	const uint8_t unknown[6] = {0x04};

	scsi_disk_init(&disk, NULL, 100, false, true, "");
	cmd(tur, 6);
	ck_assert_int_eq(req.status, SCSI_GOOD);
	ck_assert_int_eq(req.dir, SCSI_DIR_NONE);
	cmd(sync, 10);
	ck_assert_int_eq(req.status, SCSI_GOOD);
	cmd(prevent, 6);
	ck_assert(disk.locked);
	cmd(luns, 12);
	ck_assert_uint_eq(req.len, 16);
	ck_assert_uint_eq(req.buf[3], 8);
	cmd(unknown, 6);
	expect_sense(0x5, 0x20);
	/* a CDB of 17 bytes */
	cmd(tur, 17);
	ck_assert_int_eq(req.status, SCSI_CHECK_CONDITION);
}
END_TEST

/* ---- Bulk-Only Transport ---- */

static int packet(struct usb_device *dev, bool in, uint8_t ep, void *buf, size_t len,
		  size_t *ret_actual)
{
	struct iovec iov = {buf, len};
	struct usb_packet p = {.in = in, .ep = ep, .iov = &iov, .niov = 1, .len = len};
	int r = usb_device_data(dev, &p);

	*ret_actual = p.actual;
	return r;
}

START_TEST(test_bot)
{
	struct usb_storage_config sc = {.id = "usb0"};
	struct usb_device *dev;
	struct usb_setup set_cfg = {0, USB_REQ_SET_CONFIGURATION, 1, 0, 0};
	struct usb_setup clear_in = {USB_RECIP_ENDPOINT, USB_REQ_CLEAR_FEATURE, 0, 0x81, 0};
	struct usb_setup clear_out = {USB_RECIP_ENDPOINT, USB_REQ_CLEAR_FEATURE, 0, 0x02, 0};
	struct usb_setup max_lun = {0xa1, 0xfe, 0, 0, 1};
	uint8_t cbw[31] = {0x55, 0x53, 0x42, 0x43, 7, 0,    0, 0, 36, 0,
			   0,	 0,    0x80, 0,	   6, 0x12, 0, 0, 0,  36};
	uint8_t data[64], csw[13], ctl[8];
	size_t n;

	ck_assert_int_eq(usb_storage_new(&sc, &dev, NULL), 0);
	/* unconfigured: bulk stalls */
	ck_assert_int_eq(packet(dev, false, 2, cbw, 31, &n), USB_RET_STALL);
	ck_assert_int_eq(usb_device_control(dev, &set_cfg, ctl), 0);
	ck_assert_int_eq(usb_device_control(dev, &max_lun, ctl), 1);
	ck_assert_uint_eq(ctl[0], 0);
	/* INQUIRY: CBW, 36 bytes in, CSW with the tag and residue 0 */
	ck_assert_int_eq(packet(dev, false, 2, cbw, 31, &n), 0);
	ck_assert_uint_eq(n, 31);
	ck_assert_int_eq(packet(dev, true, 1, data, 64, &n), 0);
	ck_assert_uint_eq(n, 36);
	ck_assert(memcmp(data + 8, "QEMU", 4) == 0);
	ck_assert_int_eq(packet(dev, true, 1, csw, 13, &n), 0);
	ck_assert_uint_eq(n, 13);
	ck_assert_uint_eq(csw[4], 7);
	ck_assert_uint_eq(csw[8], 0);
	ck_assert_uint_eq(csw[12], 0);
	/* a CBW of the wrong size halts both pipes */
	ck_assert_int_eq(packet(dev, false, 2, cbw, 30, &n), USB_RET_STALL);
	ck_assert_int_eq(packet(dev, true, 1, csw, 13, &n), USB_RET_STALL);
	ck_assert_int_eq(usb_device_control(dev, &clear_in, ctl), 0);
	ck_assert_int_eq(usb_device_control(dev, &clear_out, ctl), 0);
	/* a host that asks for 64 bytes gets 36 real ones, zero padding, residue 28 */
	cbw[4] = 8;
	cbw[8] = 64;
	ck_assert_int_eq(packet(dev, false, 2, cbw, 31, &n), 0);
	memset(data, 0xaa, sizeof(data));
	ck_assert_int_eq(packet(dev, true, 1, data, 64, &n), 0);
	ck_assert_uint_eq(n, 64);
	ck_assert_uint_eq(data[40], 0);
	ck_assert_int_eq(packet(dev, true, 1, csw, 13, &n), 0);
	ck_assert_uint_eq(csw[4], 8);
	ck_assert_uint_eq(csw[8], 28);
	/* a bad signature halts too */
	cbw[0] = 0;
	ck_assert_int_eq(packet(dev, false, 2, cbw, 31, &n), USB_RET_STALL);
	usb_device_free(dev);
}
END_TEST

/* ---- HID ---- */

static int hid_poll(struct usb_device *dev, uint8_t *buf, size_t *n)
{
	return packet(dev, true, 1, buf, 8, n);
}

static struct usb_input_event key(unsigned usage, bool down, uint32_t delay_ms)
{
	return (struct usb_input_event){
		.type = USB_INPUT_KEY, .code = usage, .down = down, .delay_ms = delay_ms};
}

START_TEST(test_hid_keyboard)
{
	struct usb_setup set_cfg = {0, USB_REQ_SET_CONFIGURATION, 1, 0, 0};
	struct usb_setup report_desc = {0x81, USB_REQ_GET_DESCRIPTOR, USB_DT_REPORT << 8, 0, 255};
	struct usb_setup set_report = {0x21, 0x09, 0x0200, 0, 1};
	struct usb_setup get_protocol = {0xa1, 0x03, 0, 0, 1};
	struct usb_setup set_boot = {0x21, 0x0b, 0, 0, 0};
	struct usb_device *dev;
	struct usb_input_event ev[8];
	uint8_t buf[256], ctl[256];
	size_t n;

	ck_assert_int_eq(usb_hid_new(USB_HID_KEYBOARD, "kbd0", &dev, NULL), 0);
	ck_assert(usb_hid_is_keyboard(dev) && !usb_hid_is_pointer(dev));
	ck_assert_int_eq(usb_device_control(dev, &set_cfg, ctl), 0);
	ck_assert_int_eq(usb_device_control(dev, &report_desc, ctl), 63);
	ck_assert_uint_eq(ctl[0], 0x05);
	/* configuration: interface class 3, boot subclass, keyboard protocol */
	ck_assert_uint_eq(dev->config_desc[9 + 5], 3);
	ck_assert_uint_eq(dev->config_desc[9 + 7], 1);
	ck_assert_int_eq(hid_poll(dev, buf, &n), USB_RET_NAK);
	/* shift, a: two reports; release a, shift: two more */
	ev[0] = key(0xe1, true, 0);
	ev[1] = key(0x04, true, 0);
	ev[2] = key(0x04, false, 0);
	ev[3] = key(0xe1, false, 0);
	ck_assert_uint_eq(usb_hid_input(dev, ev, 4), 4);
	ck_assert_int_eq(hid_poll(dev, buf, &n), 0);
	ck_assert_uint_eq(n, 8);
	ck_assert_uint_eq(buf[0], 0x02);
	ck_assert_uint_eq(buf[2], 0);
	ck_assert_int_eq(hid_poll(dev, buf, &n), 0);
	ck_assert_uint_eq(buf[0], 0x02);
	ck_assert_uint_eq(buf[2], 0x04);
	ck_assert_int_eq(hid_poll(dev, buf, &n), 0);
	ck_assert_uint_eq(buf[2], 0);
	ck_assert_int_eq(hid_poll(dev, buf, &n), 0);
	ck_assert_uint_eq(buf[0], 0);
	ck_assert_int_eq(hid_poll(dev, buf, &n), USB_RET_NAK);
	/* seven keys at once: ErrorRollOver in every key slot */
	for (unsigned i = 0; i < 7; i++) {
		ev[i] = key(0x04 + i, true, 0);
	}
	usb_hid_input(dev, ev, 7);
	for (unsigned i = 0; i < 7; i++) {
		ck_assert_int_eq(hid_poll(dev, buf, &n), 0);
	}
	ck_assert_uint_eq(buf[2], 0x01);
	ck_assert_uint_eq(buf[7], 0x01);
	/* a release due later is held back, with the time for the controller */
	ev[0] = key(0x04, false, 5000);
	usb_hid_input(dev, ev, 1);
	ck_assert_int_eq(hid_poll(dev, buf, &n), USB_RET_NAK);
	ck_assert_uint_ne(dev->wake_at_ns, 0);
	/* LEDs and the boot protocol */
	ctl[0] = 0x02;
	ck_assert_int_eq(usb_device_control(dev, &set_report, ctl), 0);
	ck_assert_uint_eq(usb_hid_leds(dev), 2);
	ck_assert_int_eq(usb_device_control(dev, &get_protocol, ctl), 1);
	ck_assert_uint_eq(ctl[0], 1);
	ck_assert_int_eq(usb_device_control(dev, &set_boot, ctl), 0);
	ck_assert_int_eq(usb_device_control(dev, &get_protocol, ctl), 1);
	ck_assert_uint_eq(ctl[0], 0);
	/* the queue is bounded: excess events are dropped, not queued */
	usb_device_reset(dev);
	usb_device_control(dev, &set_cfg, ctl);
	for (unsigned i = 0; i < 100; i++) {
		ev[0] = key(0x05, i % 2 == 0, 0);
		usb_hid_input(dev, ev, 1);
	}
	{
		unsigned got = 0;

		while (got < 200 && hid_poll(dev, buf, &n) == 0) {
			got++;
		}
		ck_assert_uint_eq(got, 32); /* the queue's size */
	}
	usb_device_free(dev);
}
END_TEST

START_TEST(test_hid_tablet)
{
	struct usb_setup set_cfg = {0, USB_REQ_SET_CONFIGURATION, 1, 0, 0};
	struct usb_setup set_boot = {0x21, 0x0b, 0, 0, 0};
	struct usb_device *dev;
	struct usb_input_event ev[3] = {
		{.type = USB_INPUT_ABS, .code = 0, .value = 0x1234},
		{.type = USB_INPUT_ABS, .code = 1, .value = 0x9999}, /* clamped to 0x7fff */
		{.type = USB_INPUT_BTN, .code = 2, .down = true},
	};
	struct usb_input_event k = {.type = USB_INPUT_KEY, .code = 4, .down = true};
	uint8_t buf[8], ctl[8];
	size_t n;

	ck_assert_int_eq(usb_hid_new(USB_HID_TABLET, "tab0", &dev, NULL), 0);
	ck_assert(usb_hid_is_pointer(dev));
	usb_device_control(dev, &set_cfg, ctl);
	ck_assert_uint_eq(usb_hid_input(dev, &k, 1), 0); /* keys are not for a tablet */
	ck_assert_uint_eq(usb_hid_input(dev, ev, 3), 3);
	ck_assert_int_eq(hid_poll(dev, buf, &n), 0);
	ck_assert_uint_eq(n, 6);
	ck_assert_uint_eq(buf[0], 0x02); /* right button */
	ck_assert_uint_eq(buf[1] | buf[2] << 8, 0x1234);
	ck_assert_uint_eq(buf[3] | buf[4] << 8, 0x7fff);
	/* boot protocol: a 3-byte relative report */
	usb_device_control(dev, &set_boot, ctl);
	ev[0].value = 0x1234 + 64 * 10;
	usb_hid_input(dev, ev, 1);
	ck_assert_int_eq(hid_poll(dev, buf, &n), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_int_eq((int8_t)buf[1], 10);
	usb_device_free(dev);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("usb");
	TCase *ring = tcase_create("ring");
	TCase *scsi = tcase_create("scsi");

	tcase_add_checked_fixture(ring, setup, teardown);
	tcase_add_test(ring, test_ring_empty);
	tcase_add_test(ring, test_ring_chain_across_link);
	tcase_add_test(ring, test_ring_incomplete_td);
	tcase_add_test(ring, test_ring_link_loop);
	tcase_add_test(ring, test_ring_outside_ram);
	tcase_add_test(ring, test_ring_td_too_long);
	tcase_add_test(ring, test_ring_control_td);
	suite_add_tcase(s, ring);
	tcase_add_test(scsi, test_scsi_inquiry);
	tcase_add_test(scsi, test_scsi_capacity);
	tcase_add_test(scsi, test_scsi_read_write_ranges);
	tcase_add_test(scsi, test_scsi_readonly_and_mode_sense);
	tcase_add_test(scsi, test_scsi_misc);
	tcase_add_test(scsi, test_bot);
	tcase_add_test(scsi, test_hid_keyboard);
	tcase_add_test(scsi, test_hid_tablet);
	suite_add_tcase(s, scsi);
	return s;
}

#include "tests/unit/check-main.h"
