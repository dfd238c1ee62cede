/*
 * Test guest for save/restore (tests/functional/test-vm-save.py): a
 * counter in RAM, a nonce drawn from the TSC at boot and kept only in RAM,
 * and the counter written with the nonce to sector 0 of the first
 * virtio-blk disk every tick. Before each write it reads the sector back
 * and checks it holds what RAM says was written last, so a restored guest
 * whose disk and RAM disagree prints "counter: MISMATCH". A reboot shows
 * as a second "counter: boot" line and a new nonce.
 *
 * Lines: "counter: boot nonce N", "counter: tick T nonce N disk ok".
 */
#include "lib.h"
#include "virtio-drv.h"

#define T_IN 0
#define T_OUT 1
#define T_FLUSH 4
#define TICK_SPINS 200000ul

struct req_hdr {
	uint32_t type, reserved;
	uint64_t sector;
};

static struct vq q;
static struct req_hdr hdr;
static volatile uint8_t status;
static uint64_t sector[64] __attribute__((aligned(4096)));
static volatile uint64_t counter;
static uint64_t nonce;
static uint64_t last_written;

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

static int request(struct vdev *d, uint32_t type, void *buf, uint32_t len)
{
	uint16_t wr = type == T_IN ? VQ_F_WRITE : 0;
	uint32_t id, got;

	hdr.type = type;
	hdr.reserved = 0;
	hdr.sector = 0;
	status = 0xff;
	q.desc[0] = (struct vq_desc){(uint64_t)&hdr, sizeof(hdr), VQ_F_NEXT, 1};
	if (len) {
		q.desc[1] = (struct vq_desc){(uint64_t)buf, len, (uint16_t)(wr | VQ_F_NEXT), 2};
		q.desc[2] = (struct vq_desc){(uint64_t)&status, 1, VQ_F_WRITE, 0};
	} else {
		q.desc[1] = (struct vq_desc){(uint64_t)&status, 1, VQ_F_WRITE, 0};
	}
	vq_kick(d, &q, 0);
	if (!vq_wait(&q, &id, &got, 2000000000ul)) {
		print("counter: request timed out\n");
		return -1;
	}
	return status;
}

static void mix(void)
{
	/* Eight TSC reads with a dependent spin between them: varies per boot. */
	for (unsigned i = 0; i < 8; i++) {
		uint64_t t = rdtsc();

		nonce = (nonce << 7 | nonce >> 57) ^ t;
		for (volatile unsigned j = 0; j < (t & 0xff); j++) {
		}
	}
	if (!nonce) {
		nonce = 1;
	}
}

void guest_main(void)
{
	struct vdev d;
	uint64_t ecam;

	serial_init();
	lapic_enable();
	ecam = pci_find_ecam();
	if (ecam) {
		pci_use_ecam(ecam);
	}
	if (!virtio_find(2, 0, &d) || !virtio_negotiate(&d, 1ull << 9 | 1ull << 29)) {
		print("counter: no disk\n");
		guest_poweroff();
	}
	virtio_msix_enable(&d);
	if (!virtio_queue_setup(&d, &q, 0, VQ_SIZE, 1)) {
		print("counter: queue setup failed\n");
		guest_poweroff();
	}
	virtio_driver_ok(&d);
	mix();
	print("counter: boot nonce ");
	print_hex(nonce);
	print("\n");
	for (;;) {
		counter++;
		if (request(&d, T_IN, sector, sizeof(sector)) != 0) {
			print("counter: read failed\n");
		} else if (last_written && (sector[0] != last_written || sector[1] != nonce)) {
			print("counter: MISMATCH disk ");
			print_dec(sector[0]);
			print(" ram ");
			print_dec(last_written);
			print("\n");
		}
		sector[0] = counter;
		sector[1] = nonce;
		if (request(&d, T_OUT, sector, sizeof(sector)) != 0 || request(&d, T_FLUSH, 0, 0)) {
			print("counter: write failed\n");
		}
		last_written = counter;
		print("counter: tick ");
		print_dec(counter);
		print(" nonce ");
		print_hex(nonce);
		print(" disk ok\n");
		for (volatile unsigned long i = 0; i < TICK_SPINS; i++) {
		}
	}
}
