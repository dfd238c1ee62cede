/*
 * Test guest: the statistics side of a virtio-balloon driver, written from
 * the virtio spec (§5.5.6.3). It negotiates VIRTIO_BALLOON_F_STATS_VQ,
 * puts one buffer of (tag, value) records on the stats queue (2) and,
 * each time the device gives it back, refills it and adds it again,
 * printing "stats: round N". Tag T carries (T + 1) * 1000, except the
 * minor-fault count (tag 3), which carries the round, and a tag no device
 * knows (42), which the device must ignore.
 */
#include "lib.h"
#include "virtio-drv.h"

#define F_STATS_VQ 1
#define N_TAGS 10

struct stat_rec {
	uint16_t tag;
	uint64_t val;
} __attribute__((packed));

static struct vq inflate_q, deflate_q, stats_q;
static struct stat_rec recs[N_TAGS + 1];

static void fill(unsigned round)
{
	for (unsigned t = 0; t < N_TAGS; t++) {
		recs[t].tag = (uint16_t)t;
		recs[t].val = t == 3 ? round : (uint64_t)(t + 1) * 1000;
	}
	recs[N_TAGS].tag = 42;
	recs[N_TAGS].val = 7;
	stats_q.desc[0] = (struct vq_desc){(uint64_t)recs, sizeof(recs), 0, 0};
}

void guest_main(void)
{
	struct vdev d;
	uint64_t ecam;
	unsigned round = 0;

	serial_init();
	lapic_enable();
	ecam = pci_find_ecam();
	if (ecam) {
		pci_use_ecam(ecam);
	}
	if (!virtio_find(5, 0, &d) || !virtio_negotiate(&d, 1ull << F_STATS_VQ) ||
	    !(d.features & (1ull << F_STATS_VQ))) {
		print("stats: no device or no stats queue\n");
		guest_poweroff();
	}
	virtio_msix_enable(&d);
	if (!virtio_queue_setup(&d, &inflate_q, 0, 16, 1) ||
	    !virtio_queue_setup(&d, &deflate_q, 1, 16, 2) ||
	    !virtio_queue_setup(&d, &stats_q, 2, 16, 3)) {
		print("stats: queue setup failed\n");
		guest_poweroff();
	}
	virtio_driver_ok(&d);
	fill(round);
	vq_kick(&d, &stats_q, 0);
	print("stats: ready\n");
	for (;;) {
		uint32_t id, len;

		if (!vq_wait(&stats_q, &id, &len, 100000000)) {
			continue;
		}
		round++;
		fill(round);
		vq_kick(&d, &stats_q, 0);
		print("stats: round ");
		print_dec(round);
		print("\n");
	}
}
