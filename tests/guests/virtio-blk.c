/*
 * Test guest: drive the first virtio-blk disk as a spec-following driver
 * would (PCI enumeration, capabilities, FLUSH/BLK_SIZE negotiation, one
 * queue with MSI-X), then: report capacity, serial and a CRC of sectors
 * 0..7 as read; write a known pattern to sectors 8..71 using plain,
 * multi-descriptor and indirect chains; read it back; flush; check that
 * a request past the end fails with IOERR. The host test recomputes the
 * pattern and compares it with the image after the VM is gone.
 *
 * Pattern byte i of sector s: (s * 31 + i * 7 + 0x5a) & 0xff.
 */
#include "lib.h"
#include "virtio-drv.h"

#define T_IN 0
#define T_OUT 1
#define T_FLUSH 4
#define T_GET_ID 8

struct req_hdr {
	uint32_t type, reserved;
	uint64_t sector;
};

static struct vq q, q2;
static struct vq *cur = &q;
static struct req_hdr hdr;
static volatile uint8_t status;
static uint8_t data[8 * 512] __attribute__((aligned(4096)));
static uint8_t check[8 * 512];
static struct vq_desc ind[4] __attribute__((aligned(16)));

static void fill(uint8_t *b, uint64_t sector, unsigned n)
{
	unsigned s, i;

	for (s = 0; s < n; s++) {
		for (i = 0; i < 512; i++) {
			b[s * 512 + i] = (uint8_t)((sector + s) * 31 + i * 7 + 0x5a);
		}
	}
}

static void set(unsigned i, void *addr, uint32_t len, uint16_t flags, uint16_t next)
{
	cur->desc[i].addr = (uint64_t)addr;
	cur->desc[i].len = len;
	cur->desc[i].flags = flags;
	cur->desc[i].next = next;
}

/* One request: header, data (@nseg descriptors, or indirect), status. */
static int request(struct vdev *d, uint32_t type, uint64_t sector, void *buf, uint32_t len,
		   unsigned nseg, bool indirect)
{
	uint16_t wr = type == T_IN || type == T_GET_ID ? VQ_F_WRITE : 0;
	uint32_t id, got;

	hdr.type = type;
	hdr.reserved = 0;
	hdr.sector = sector;
	status = 0xff;
	if (indirect) {
		ind[0] = (struct vq_desc){(uint64_t)&hdr, sizeof(hdr), VQ_F_NEXT, 1};
		ind[1] = (struct vq_desc){(uint64_t)buf, len, (uint16_t)(wr | VQ_F_NEXT), 2};
		ind[2] = (struct vq_desc){(uint64_t)&status, 1, VQ_F_WRITE, 0};
		set(0, ind, 3 * sizeof(struct vq_desc), VQ_F_INDIRECT, 0);
	} else if (len == 0) {
		set(0, &hdr, sizeof(hdr), VQ_F_NEXT, 1);
		set(1, (void *)&status, 1, VQ_F_WRITE, 0);
	} else {
		unsigned i, per = len / nseg;

		set(0, &hdr, sizeof(hdr), VQ_F_NEXT, 1);
		for (i = 0; i < nseg; i++) {
			set(1 + i, (uint8_t *)buf + i * per, i + 1 == nseg ? len - i * per : per,
			    wr | VQ_F_NEXT, 2 + i);
		}
		set(1 + nseg, (void *)&status, 1, VQ_F_WRITE, 0);
	}
	vq_kick(d, cur, 0);
	if (!vq_wait(cur, &id, &got, 200000000)) {
		print("blk: request timed out\n");
		return -1;
	}
	return status;
}

void guest_main(void)
{
	struct vdev d;
	uint64_t ecam, cap, s;
	uint16_t nq;
	char serial[21];
	int st;
	bool ok = true;

	serial_init();
	lapic_enable();
	ecam = pci_find_ecam();
	if (ecam) {
		pci_use_ecam(ecam);
	}
	if (!virtio_find(2, 0, &d)) {
		print("blk: no device\n");
		guest_poweroff();
	}
	/* FLUSH (9), BLK_SIZE (6), MQ (12), INDIRECT_DESC (28), EVENT_IDX (29) */
	if (!virtio_negotiate(&d, 1ull << 9 | 1ull << 6 | 1ull << 12 | 1ull << 28 | 1ull << 29)) {
		guest_poweroff();
	}
	virtio_msix_enable(&d);
	if (!virtio_queue_setup(&d, &q, 0, VQ_SIZE, 1)) {
		print("blk: queue setup failed\n");
		guest_poweroff();
	}
	/* a second request queue when the device has one (num_queues, MQ not needed to read) */
	nq = mr16(d.device + 34);
	print("blk: num_queues ");
	print_dec(nq);
	print("\n");
	if (nq >= 2 && (d.features >> 12 & 1) && !virtio_queue_setup(&d, &q2, 1, VQ_SIZE, 2)) {
		print("blk: queue 1 setup failed\n");
		guest_poweroff();
	}
	virtio_driver_ok(&d);
	cap = mr64(d.device);
	print("blk: capacity ");
	print_dec(cap);
	print(" sectors\n");

	memset(serial, 0, sizeof(serial));
	st = request(&d, T_GET_ID, 0, serial, 20, 1, false);
	print("blk: serial ");
	print(st == 0 ? serial : "(failed)");
	print("\n");

	st = request(&d, T_IN, 0, data, sizeof(data), 1, false);
	print("blk: read 0-7 status ");
	print_dec(st);
	print(" crc ");
	print_hex(crc32(data, sizeof(data), 0));
	print("\n");

	/* sectors 8..71 in writes of 8 sectors, varying the chain shapes */
	for (s = 8; s < 72; s += 8) {
		unsigned shape = (s / 8) % 3;

		fill(data, s, 8);
		st = request(&d, T_OUT, s, data, sizeof(data), shape == 1 ? 3 : 1, shape == 2);
		if (st != 0) {
			print("blk: write failed at ");
			print_dec(s);
			print("\n");
			ok = false;
		}
	}
	for (s = 8; s < 72 && ok; s += 8) {
		memset(data, 0, sizeof(data));
		st = request(&d, T_IN, s, data, sizeof(data), s % 16 ? 2 : 1, s == 64);
		fill(check, s, 8);
		if (st != 0 || memcmp(data, check, sizeof(data))) {
			print("blk: readback MISMATCH at ");
			print_dec(s);
			print("\n");
			ok = false;
		}
	}
	if (ok) {
		print("blk: readback ok\n");
	}
	/* with EVENT_IDX the device publishes how far it has read the avail ring */
	if (d.features >> 29 & 1) {
		uint16_t ae = *(volatile uint16_t *)&q.used.avail_event;

		print(ae == q.avail.idx ? "blk: event_idx avail_event ok\n"
					: "blk: event_idx avail_event WRONG\n");
	}
	if (nq >= 2 && (d.features >> 12 & 1)) {
		/* the same data through the second queue */
		cur = &q2;
		memset(data, 0, sizeof(data));
		st = request(&d, T_IN, 16, data, sizeof(data), 1, false);
		fill(check, 16, 8);
		print(st == 0 && !memcmp(data, check, sizeof(data)) ? "blk: queue 1 read ok\n"
								    : "blk: queue 1 read FAILED\n");
		cur = &q;
	}
	st = request(&d, T_FLUSH, 0, 0, 0, 0, false);
	print(st == 0 ? "blk: flush ok\n" : "blk: flush FAILED\n");
	st = request(&d, T_IN, cap, data, 512, 1, false);
	print(st == 1 ? "blk: past-end read fails ok\n" : "blk: past-end read NOT refused\n");
	print(lapic_irr(0x41) ? "blk: msix vector delivered\n" : "blk: msix NOT delivered\n");
	print("blk: done\n");
	guest_poweroff();
}
