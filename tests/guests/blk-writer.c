/*
 * Test guest for snapshots and block jobs under I/O: drives the first
 * virtio-blk disk and, forever, in passes: writes 4 KiB (8 sectors) at
 * every 64 KiB of the first MiB (16 clusters) with the pass number, reads
 * them all back and checks them, and checks a sum of 64 KiB at 1 MiB that
 * it never writes. After each pass it prints
 *     writer: pass N ok crc 0xC
 * and on any difference "writer: MISMATCH ..." and powers off. The host
 * snapshots, streams and commits the disk meanwhile; the guest must never
 * notice, and the images must hold its last pass afterwards.
 *
 * Word w (64-bit, little endian) of sector s in pass p: w0 = p, w1 = s,
 * else p * 0x9e3779b97f4a7c15 ^ (s << 8 | w). Cheap to make and check:
 * this host emulates every guest instruction.
 */
#include "lib.h"
#include "virtio-drv.h"

#define T_IN 0
#define T_OUT 1
#define NREQ 16
#define STRIDE 128 /* sectors: 64 KiB */
#define RO_FIRST 2048
#define RO_SECS 128
#define PER_REQ 8

struct req_hdr {
	uint32_t type, reserved;
	uint64_t sector;
};

static struct vq q;
static struct req_hdr hdr;
static volatile uint8_t status;
static uint64_t buf[PER_REQ * 64] __attribute__((aligned(4096)));

static uint64_t word(uint64_t pass, uint64_t s, unsigned w)
{
	return w == 0 ? pass : w == 1 ? s : (pass * 0x9e3779b97f4a7c15ull) ^ (s << 8 | w);
}

static void fill(uint64_t pass, uint64_t sector)
{
	for (unsigned k = 0; k < PER_REQ; k++) {
		for (unsigned w = 0; w < 64; w++) {
			buf[k * 64 + w] = word(pass, sector + k, w);
		}
	}
}

static bool check(uint64_t pass, uint64_t sector)
{
	for (unsigned k = 0; k < PER_REQ; k++) {
		for (unsigned w = 0; w < 64; w++) {
			if (buf[k * 64 + w] != word(pass, sector + k, w)) {
				return false;
			}
		}
	}
	return true;
}

static int request(struct vdev *d, uint32_t type, uint64_t sector, void *data, uint32_t len)
{
	uint32_t id, got;

	hdr.type = type;
	hdr.reserved = 0;
	hdr.sector = sector;
	status = 0xff;
	q.desc[0] = (struct vq_desc){(uint64_t)&hdr, sizeof(hdr), VQ_F_NEXT, 1};
	q.desc[1] = (struct vq_desc){(uint64_t)data, len,
				     (uint16_t)((type == T_IN ? VQ_F_WRITE : 0) | VQ_F_NEXT), 2};
	q.desc[2] = (struct vq_desc){(uint64_t)&status, 1, VQ_F_WRITE, 0};
	vq_kick(d, &q, 0);
	if (!vq_wait(&q, &id, &got, 2000000000)) {
		print("writer: request timed out\n");
		return -1;
	}
	return status;
}

static void fail(const char *what, uint64_t pass, uint64_t sector)
{
	print("writer: MISMATCH ");
	print(what);
	print(" pass ");
	print_dec(pass);
	print(" sector ");
	print_dec(sector);
	print("\n");
	guest_poweroff();
}

void guest_main(void)
{
	struct vdev d;
	uint64_t ecam, s;
	uint64_t crc0 = 0;

	serial_init();
	lapic_enable();
	ecam = pci_find_ecam();
	if (ecam) {
		pci_use_ecam(ecam);
	}
	if (!virtio_find(2, 0, &d) || !virtio_negotiate(&d, 1ull << 9 | 1ull << 6)) {
		print("writer: no device\n");
		guest_poweroff();
	}
	virtio_msix_enable(&d);
	if (!virtio_queue_setup(&d, &q, 0, VQ_SIZE, 1)) {
		print("writer: queue setup failed\n");
		guest_poweroff();
	}
	virtio_driver_ok(&d);
	print("writer: up\n");
	for (uint64_t pass = 1;; pass++) {
		uint64_t crc = 0;

		for (s = 0; s < NREQ * STRIDE; s += STRIDE) {
			fill(pass, s);
			if (request(&d, T_OUT, s, buf, sizeof(buf)) != 0) {
				fail("write failed", pass, s);
			}
		}
		for (s = 0; s < NREQ * STRIDE; s += STRIDE) {
			buf[0] = buf[64] = 0;
			if (request(&d, T_IN, s, buf, sizeof(buf)) != 0) {
				fail("read failed", pass, s);
			}
			if (!check(pass, s)) {
				fail("readback", pass, s);
			}
		}
		for (s = RO_FIRST; s < RO_FIRST + RO_SECS; s += PER_REQ) {
			if (request(&d, T_IN, s, buf, sizeof(buf)) != 0) {
				fail("read failed", pass, s);
			}
			for (unsigned w = 0; w < PER_REQ * 64; w++) {
				crc = (crc << 1 | crc >> 63) ^ buf[w];
			}
		}
		if (pass == 1) {
			crc0 = crc;
		} else if (crc != crc0) {
			fail("crc of the untouched area", pass, RO_FIRST);
		}
		print("writer: pass ");
		print_dec(pass);
		print(" ok crc ");
		print_hex(crc);
		print("\n");
	}
}
