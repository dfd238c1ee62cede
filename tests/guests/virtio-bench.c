/*
 * Benchmark guest for tests/bench/virtio-blk.sh: drives the first
 * virtio-blk disk with a fixed amount of I/O and prints a marker line at
 * the start and end of each phase; the host times the markers. Phases:
 *   4k-randread   BENCH_4K requests of 4 KiB at pseudo-random offsets, 16 in flight
 *   64k-seqread   BENCH_64K requests of 64 KiB in sequence, 8 in flight
 * Runs under vmmd and under QEMU (-kernel, PVH entry; BARs from SeaBIOS).
 */
#include "lib.h"
#include "virtio-drv.h"

#define BENCH_4K 16000
#define BENCH_64K 8000
#define SLOTS 16

struct hdr {
	uint32_t type, reserved;
	uint64_t sector;
};

static struct vq q;
static struct hdr hdrs[SLOTS];
static volatile uint8_t status[SLOTS];
static uint8_t bufs[SLOTS][65536] __attribute__((aligned(4096)));

static void submit(struct vdev *d, unsigned slot, uint64_t sector, uint32_t len)
{
	unsigned b = slot * 3;

	(void)d;
	hdrs[slot].type = 0;
	hdrs[slot].sector = sector;
	q.desc[b] = (struct vq_desc){(uint64_t)&hdrs[slot], 16, VQ_F_NEXT, (uint16_t)(b + 1)};
	q.desc[b + 1] = (struct vq_desc){(uint64_t)bufs[slot], len, VQ_F_WRITE | VQ_F_NEXT,
					 (uint16_t)(b + 2)};
	q.desc[b + 2] = (struct vq_desc){(uint64_t)&status[slot], 1, VQ_F_WRITE, 0};
	q.avail.ring[q.avail.idx % q.size] = b;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	q.avail.idx++;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	mw16(q.notify_addr, q.index);
}

static bool run(struct vdev *d, const char *name, unsigned n, uint32_t len, unsigned depth,
		bool random, uint64_t sectors)
{
	uint64_t x = 88172645463325252ull, next = 0;
	unsigned issued = 0, done = 0, i, errors = 0;
	uint64_t span = sectors - len / 512;

	print("bench: ");
	print(name);
	print(" start\n");
	for (i = 0; i < depth && issued < n; i++, issued++) {
		uint64_t s;

		if (random) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			s = (x % span) & ~7ull;
		} else {
			s = next;
			next = (next + len / 512) % span;
		}
		submit(d, i, s, len);
	}
	while (done < n) {
		uint32_t id, got;
		uint64_t s;

		if (!vq_wait(&q, &id, &got, 1000000000)) {
			print("bench: timeout\n");
			return false;
		}
		done++;
		errors += status[id / 3] != 0;
		if (issued < n) {
			if (random) {
				x ^= x << 13;
				x ^= x >> 7;
				x ^= x << 17;
				s = (x % span) & ~7ull;
			} else {
				s = next;
				next = (next + len / 512) % span;
			}
			submit(d, id / 3, s, len);
			issued++;
		}
	}
	print("bench: ");
	print(name);
	print(" end ");
	print_dec(n);
	print(" requests ");
	print_dec((uint64_t)n * len);
	print(" bytes ");
	print_dec(errors);
	print(" errors\n");
	return true;
}

void guest_main(void)
{
	struct vdev d;
	uint64_t ecam, sectors;

	serial_init();
	ecam = pci_find_ecam();
	if (ecam) {
		pci_use_ecam(ecam);
	}
	if (!virtio_find(2, 0, &d) || !virtio_negotiate(&d, 0) ||
	    !virtio_queue_setup(&d, &q, 0, VQ_SIZE, 0xffff)) {
		print("bench: no usable virtio-blk disk\n");
		guest_poweroff();
	}
	q.avail.flags = 1; /* VIRTQ_AVAIL_F_NO_INTERRUPT: we poll */
	virtio_driver_ok(&d);
	sectors = mr64(d.device);
	if (sectors < 65536) {
		print("bench: disk too small (want >= 32 MiB)\n");
		guest_poweroff();
	}
	if (run(&d, "4k-randread", BENCH_4K, 4096, SLOTS, true, sectors)) {
		run(&d, "64k-seqread", BENCH_64K, 65536, 8, false, sectors);
	}
	print("bench: done\n");
	guest_poweroff();
}
