/*
 * Test guest: the OS side of QEMU's ACPI PCI hotplug, running by hand the
 * register protocol the DSDT's \_GPE._E01 / PCNT / _EJ0 methods run
 * (docs/pci-virtio.md): enable GPE0 bit 1, poll GPE0_STS at 0xAFE0, and on
 * an event clear it, select bus 0 (BNUM), read PCIU and PCID at 0xAE00 and
 * 0xAE04. For each inserted slot it enumerates the new function from
 * config space; a virtio-blk disk is driven through the spec-written
 * driver (virtio-drv.c): round r writes sectors 8r..8r+7 with a pattern,
 * reads them back and prints "hp: io ok round r". For each slot whose
 * removal is requested it submits one more write, and without waiting for
 * it writes the slot's bit to B0EJ (0xAE08) - the eject - and then polls
 * config space until the slot reads empty.
 *
 * Policy the host test relies on: a non-virtio-blk device (the NICs) is
 * only ejected on the second removal request, to show that a repeated
 * device_del reaches the guest again.
 *
 * Pattern byte i of sector s, round r: (s * 13 + i * 5 + r) & 0xff.
 */
#include "lib.h"
#include "virtio-drv.h"

#define GPE0_STS 0xafe0
#define GPE0_EN 0xafe2
#define PCIHP_UP 0xae00
#define PCIHP_DOWN 0xae04
#define PCIHP_EJ 0xae08
#define PCIHP_RMV 0xae0c
#define PCIHP_SEL 0xae10
#define GPE_PCI 0x02

#define T_IN 0
#define T_OUT 1

struct req_hdr {
	uint32_t type, reserved;
	uint64_t sector;
};

static struct vq q;
static struct req_hdr hdr;
static volatile uint8_t status;
static uint8_t data[8 * 512] __attribute__((aligned(4096)));
static uint8_t check[8 * 512];
static uint8_t tail[64 * 1024] __attribute__((aligned(4096)));
static struct req_hdr tail_hdr;
static volatile uint8_t tail_status;
static unsigned downs[32];
static unsigned round;
static bool blk_up[32];
static struct vdev disks[32];

static void fill(uint8_t *b, uint64_t sector, unsigned n, unsigned r)
{
	for (unsigned s = 0; s < n; s++) {
		for (unsigned i = 0; i < 512; i++) {
			b[s * 512 + i] = (uint8_t)((sector + s) * 13 + i * 5 + r);
		}
	}
}

/* Build a three-descriptor request at descriptor @base; returns the head. */
static uint16_t chain(uint16_t base, struct req_hdr *h, void *buf, uint32_t len,
		      volatile uint8_t *st, bool write_to_guest)
{
	q.desc[base] = (struct vq_desc){(uint64_t)h, sizeof(*h), VQ_F_NEXT, (uint16_t)(base + 1)};
	q.desc[base + 1] = (struct vq_desc){
		(uint64_t)buf, len, (uint16_t)((write_to_guest ? VQ_F_WRITE : 0) | VQ_F_NEXT),
		(uint16_t)(base + 2)};
	q.desc[base + 2] = (struct vq_desc){(uint64_t)st, 1, VQ_F_WRITE, 0};
	return base;
}

static int request(struct vdev *d, uint32_t type, uint64_t sector, void *buf, uint32_t len)
{
	uint32_t id, got;

	hdr = (struct req_hdr){type, 0, sector};
	status = 0xff;
	vq_kick(d, &q, chain(0, &hdr, buf, len, &status, type == T_IN));
	if (!vq_wait(&q, &id, &got, 200000000)) {
		print("hp: request timed out\n");
		return -1;
	}
	return status;
}

static void print_slot(const char *what, unsigned slot)
{
	print("hp: slot ");
	print_dec(slot);
	print(what);
}

static void disk_up(unsigned slot)
{
	struct vdev *d = &disks[slot];
	uint64_t s = 8 * (round % 64);
	int st;

	/* the nth virtio-blk is the one in this slot: count those below it */
	unsigned nth = 0;

	for (unsigned i = 0; i < slot; i++) {
		nth += (pci_read(i, 0, 4) == (0x1af4u | (0x1042u << 16)));
	}
	if (!virtio_find(2, nth, d) || d->slot != slot || !virtio_negotiate(d, 0)) {
		print_slot(" virtio-blk setup FAILED\n", slot);
		return;
	}
	virtio_msix_enable(d);
	if (!virtio_queue_setup(d, &q, 0, VQ_SIZE, 1)) {
		print_slot(" queue setup FAILED\n", slot);
		return;
	}
	virtio_driver_ok(d);
	blk_up[slot] = true;
	fill(data, s, 8, round);
	st = request(d, T_OUT, s, data, sizeof(data));
	memset(check, 0, sizeof(check));
	if (st == 0) {
		st = request(d, T_IN, s, check, sizeof(check));
	}
	print(st == 0 && !memcmp(data, check, sizeof(data)) ? "hp: io ok round "
							    : "hp: io FAILED round ");
	print_dec(round);
	print(" capacity ");
	print_dec(mr64(d->device));
	print("\n");
	round++;
}

static void slot_up(unsigned slot)
{
	uint32_t id = pci_read(slot, 0, 4);

	print_slot(" up ", slot);
	print_hex(id & 0xffff);
	print(":");
	print_hex(id >> 16);
	print("\n");
	if (id == (0x1af4u | (0x1042u << 16))) {
		disk_up(slot);
	}
}

static void slot_down(unsigned slot)
{
	uint32_t id = pci_read(slot, 0, 4);
	unsigned spins;

	downs[slot]++;
	print_slot(" down\n", slot);
	if (blk_up[slot]) {
		/* one request left in flight across the eject: the host must finish it */
		tail_hdr = (struct req_hdr){T_OUT, 0, 512};
		tail_status = 0xff;
		memset(tail, 0xa5, sizeof(tail));
		vq_kick(&disks[slot], &q,
			chain(3, &tail_hdr, tail, sizeof(tail), &tail_status, false));
		blk_up[slot] = false;
	} else if (id != (0x1af4u | (0x1042u << 16)) && downs[slot] == 1) {
		print_slot(" down ignored once\n", slot);
		return;
	}
	outl(PCIHP_SEL, 0);
	outl(PCIHP_EJ, 1u << slot);
	downs[slot] = 0;
	for (spins = 0; spins < 100000000 && pci_read(slot, 0, 2) != 0xffff; spins++) {
	}
	print_slot(pci_read(slot, 0, 2) == 0xffff ? " gone\n" : " still there\n", slot);
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
	/* the removable slots, as acpiphp would read them */
	print("hp: rmv ");
	print_hex(inl(PCIHP_RMV));
	print("\n");
	outb(GPE0_EN, GPE_PCI);
	print("hp: ready\n");
	for (;;) {
		uint32_t up, down;

		if (!(inb(GPE0_STS) & GPE_PCI)) {
			/* poll gently: every port read is a VM exit */
			for (volatile unsigned spin = 0; spin < 2000; spin++) {
			}
			continue;
		}
		/* as _E01: ack the GPE, then PCNT: BNUM = 0, PCIU, PCID */
		outb(GPE0_STS, GPE_PCI);
		outl(PCIHP_SEL, 0);
		up = inl(PCIHP_UP);
		down = inl(PCIHP_DOWN);
		for (unsigned slot = 1; slot < 32; slot++) {
			if (up & (1u << slot)) {
				slot_up(slot);
			}
		}
		for (unsigned slot = 1; slot < 32; slot++) {
			if (down & (1u << slot)) {
				slot_down(slot);
			}
		}
	}
}
