/*
 * Test guest: build malicious rings for real and check that the device
 * fails each one cleanly (DEVICE_NEEDS_RESET, or an error status for a
 * malformed request) and works again after a reset. Cases on virtio-rng:
 * a descriptor loop, an indirect table longer than any queue, buffers
 * outside RAM and wrapping the address space, nested indirection, an
 * avail index far ahead, a ring placed outside RAM, and a zero-length
 * buffer (legal: completes with 0 bytes). On virtio-blk: a request header
 * in a device-writable descriptor (IOERR) and a chain with no room for the
 * status (NEEDS_RESET).
 */
#include "lib.h"
#include "virtio-drv.h"

static struct vq q;
static uint8_t buf[64];
static struct vq_desc big[2048] __attribute__((aligned(16)));
static struct vq_desc ind[2] __attribute__((aligned(16)));
static uint8_t hdr[16];
static volatile uint8_t status;

static void setup(struct vdev *d)
{
	if (!virtio_negotiate(d, 1ull << 28) || !virtio_queue_setup(d, &q, 0, VQ_SIZE, 1)) {
		print("robust: setup FAILED\n");
		guest_poweroff();
	}
	virtio_driver_ok(d);
}

/* Wait for NEEDS_RESET or a used entry; print which. */
static void outcome(struct vdev *d, const char *name)
{
	unsigned long i;
	uint32_t id, len;

	print("robust: ");
	print(name);
	for (i = 0; i < 3000000; i++) {
		if (virtio_status(d) & 0x40) {
			print(" needs-reset\n");
			return;
		}
		if (vq_wait(&q, &id, &len, 1)) {
			print(" completed len ");
			print_dec(len);
			print(" status ");
			print_dec(status);
			print("\n");
			return;
		}
	}
	print(" no-answer\n");
}

static void recover(struct vdev *d, const char *name)
{
	uint32_t id, len;

	setup(d);
	q.desc[0] = (struct vq_desc){(uint64_t)buf, 16, VQ_F_WRITE, 0};
	vq_kick(d, &q, 0);
	print("robust: ");
	print(name);
	print(vq_wait(&q, &id, &len, 100000000) && len == 16 ? " recovered\n" : " NOT recovered\n");
}

static void rng_cases(struct vdev *d)
{
	unsigned i;

	setup(d);
	q.desc[0] = (struct vq_desc){(uint64_t)buf, 16, VQ_F_WRITE | VQ_F_NEXT, 1};
	q.desc[1] = (struct vq_desc){(uint64_t)buf, 16, VQ_F_WRITE | VQ_F_NEXT, 0};
	vq_kick(d, &q, 0);
	outcome(d, "loop");
	recover(d, "loop");

	for (i = 0; i < 2048; i++) {
		big[i] = (struct vq_desc){(uint64_t)buf, 1, VQ_F_WRITE | VQ_F_NEXT,
					  (uint16_t)(i + 1)};
	}
	big[2047].flags = VQ_F_WRITE;
	q.desc[0] = (struct vq_desc){(uint64_t)big, sizeof(big), VQ_F_INDIRECT, 0};
	vq_kick(d, &q, 0);
	outcome(d, "overlong-indirect");
	recover(d, "overlong-indirect");

	q.desc[0] = (struct vq_desc){0x100000000000ull, 64, VQ_F_WRITE, 0};
	vq_kick(d, &q, 0);
	outcome(d, "outside-ram");
	recover(d, "outside-ram");

	q.desc[0] = (struct vq_desc){0xfffffffffffff000ull, 0x2000, VQ_F_WRITE, 0};
	vq_kick(d, &q, 0);
	outcome(d, "wrapping");
	recover(d, "wrapping");

	ind[0] = (struct vq_desc){(uint64_t)ind, sizeof(ind), VQ_F_INDIRECT, 0};
	q.desc[0] = (struct vq_desc){(uint64_t)ind, sizeof(ind), VQ_F_INDIRECT, 0};
	vq_kick(d, &q, 0);
	outcome(d, "nested-indirect");
	recover(d, "nested-indirect");

	q.desc[0] = (struct vq_desc){(uint64_t)buf, 16, VQ_F_WRITE, 0};
	q.avail.ring[0] = 0;
	q.avail.idx += 500;
	mw16(q.notify_addr, 0);
	outcome(d, "avail-jump");
	recover(d, "avail-jump");

	q.desc[0] = (struct vq_desc){(uint64_t)buf, 0, VQ_F_WRITE, 0};
	vq_kick(d, &q, 0);
	outcome(d, "zero-length");

	/* a descriptor table that runs out of RAM: the queue cannot be enabled */
	virtio_negotiate(d, 1ull << 28);
	mw16(d->common + 0x16, 0);
	mw16(d->common + 0x18, VQ_SIZE);
	mw64(d->common + 0x20, 0x100000000000ull);
	mw64(d->common + 0x28, (uint64_t)&q.avail);
	mw64(d->common + 0x30, (uint64_t)&q.used);
	mw16(d->common + 0x1c, 1);
	print("robust: ring-outside-ram");
	print(virtio_status(d) & 0x40 ? " needs-reset\n" : " accepted\n");
	recover(d, "ring-outside-ram");
}

static void blk_cases(struct vdev *d)
{
	setup(d);
	memset(hdr, 0, sizeof(hdr)); /* a read of sector 0 */
	status = 0xff;
	q.desc[0] = (struct vq_desc){(uint64_t)hdr, 16, VQ_F_WRITE | VQ_F_NEXT, 1};
	q.desc[1] = (struct vq_desc){(uint64_t)&status, 1, VQ_F_WRITE, 0};
	vq_kick(d, &q, 0);
	outcome(d, "blk-writable-header");

	q.desc[0] = (struct vq_desc){(uint64_t)hdr, 16, 0, 0};
	vq_kick(d, &q, 0);
	outcome(d, "blk-no-status");
	setup(d);
	memset(hdr, 0, sizeof(hdr));
	status = 0xff;
	q.desc[0] = (struct vq_desc){(uint64_t)hdr, 16, VQ_F_NEXT, 1};
	q.desc[1] = (struct vq_desc){(uint64_t)buf, 0, VQ_F_WRITE | VQ_F_NEXT, 2};
	q.desc[2] = (struct vq_desc){(uint64_t)&status, 1, VQ_F_WRITE, 0};
	vq_kick(d, &q, 0);
	outcome(d, "blk-recovered-empty-read");
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
	if (virtio_find(4, 0, &d)) {
		rng_cases(&d);
	} else {
		print("robust: no rng\n");
	}
	if (virtio_find(2, 0, &d)) {
		blk_cases(&d);
	}
	print("robust: done\n");
	guest_poweroff();
}
