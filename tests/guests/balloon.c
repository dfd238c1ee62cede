/*
 * Test guest: a virtio-balloon driver written from the virtio spec (§5.5).
 * It dirties a 4 MiB pool of its own memory, then follows the device's
 * num_pages: it inflates (page frame numbers from the pool on queue 0) or
 * deflates (queue 1) until it holds that many pages, writes "actual", and
 * prints "balloon: actual N". The pool caps what it can give. Each pool
 * page holds a pattern in its second word; a page it takes back must read
 * zero there (the device documents that given pages come back zero), else
 * it prints "balloon: page N not zero after deflate".
 */
#include "lib.h"
#include "virtio-drv.h"

#define POOL_PAGES 1024
#define BATCH 256
#define PATTERN 0x5a5a5a5a5a5a5a5aull

static uint8_t pool[POOL_PAGES * 4096] __attribute__((aligned(4096)));
static uint32_t pfns[BATCH];
static struct vq inflate_q, deflate_q;

static void move(struct vdev *d, struct vq *q, unsigned first, unsigned n)
{
	uint32_t id, len;

	for (unsigned i = 0; i < n; i++) {
		pfns[i] = (uint32_t)(((uint64_t)pool >> 12) + first + i);
	}
	q->desc[0] = (struct vq_desc){(uint64_t)pfns, 4 * n, 0, 0};
	vq_kick(d, q, 0);
	if (!vq_wait(q, &id, &len, 200000000)) {
		print("balloon: queue timed out\n");
	}
}

void guest_main(void)
{
	struct vdev d;
	uint64_t ecam;
	unsigned held = 0;

	serial_init();
	lapic_enable();
	ecam = pci_find_ecam();
	if (ecam) {
		pci_use_ecam(ecam);
	}
	if (!virtio_find(5, 0, &d) || !virtio_negotiate(&d, 0)) {
		print("balloon: no device\n");
		guest_poweroff();
	}
	virtio_msix_enable(&d);
	if (!virtio_queue_setup(&d, &inflate_q, 0, 16, 1) ||
	    !virtio_queue_setup(&d, &deflate_q, 1, 16, 2)) {
		print("balloon: queue setup failed\n");
		guest_poweroff();
	}
	virtio_driver_ok(&d);
	/* make the pool resident, so inflating it shows in the host's RSS */
	for (unsigned i = 0; i < sizeof(pool); i += 4096) {
		pool[i] = 1;
		*(volatile uint64_t *)&pool[i + 8] = PATTERN;
	}
	print("balloon: ready\n");
	for (;;) {
		uint32_t want = mr32(d.device);

		if (want > POOL_PAGES) {
			want = POOL_PAGES;
		}
		if (want == held) {
			/* poll gently: every config read is a VM exit */
			for (volatile unsigned spin = 0; spin < 2000; spin++) {
			}
			continue;
		}
		while (held < want) {
			unsigned n = want - held > BATCH ? BATCH : want - held;

			move(&d, &inflate_q, held, n);
			held += n;
		}
		while (held > want) {
			unsigned n = held - want > BATCH ? BATCH : held - want;

			held -= n;
			move(&d, &deflate_q, held, n);
			/* deflated pages are ours again: use them */
			for (unsigned i = 0; i < n; i++) {
				if (*(volatile uint64_t *)&pool[(held + i) * 4096 + 8] != 0) {
					print("balloon: page ");
					print_dec(held + i);
					print(" not zero after deflate\n");
				}
				pool[(held + i) * 4096] = 2;
			}
		}
		mw32(d.device + 4, held);
		print("balloon: actual ");
		print_dec(held);
		print("\n");
	}
}
