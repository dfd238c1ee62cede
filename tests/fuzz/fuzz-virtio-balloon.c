/*
 * libFuzzer target: virtio-balloon behind virtio-pci (hw/virtio/balloon.c)
 * on the fake machine: the transport operations of tests/fuzz/fuzz-virtio.h
 * on the inflate, deflate and statistics queues, page frame numbers in and
 * around the fake RAM (inflated pages are really given back: they read as
 * zero after), statistics records, and the host between them setting the
 * target (`balloon`), reading `actual` and the statistics, and turning the
 * polling interval on (a poll at once) and off.
 */
#include "config.h"

#include <jansson.h>

#include "tests/fuzz/fuzz-virtio.h"
#include "vmmd/vm.h"

#define RAM_SIZE (1u << 20)
#define PAGES (RAM_SIZE / 4096)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Operation 5: up to 64 bytes of PFNs or statistics records at a BUF offset; 13: the host. */
static void extra(struct drv *d, void *state, uint8_t op, struct fz *f)
{
	if (op % 14 == 5) {
		uint8_t buf[64];
		uint64_t at = BUF + 16u * fz_u16(f) % 0x10000;
		bool pfns = fz_u8(f) & 1;
		size_t n = fz_u8(f) % (sizeof(buf) + 1);

		n = fz_bytes(f, buf, n);

		/*
		 * As the input says: its bytes (records, or any PFN), or PFNs of the
		 * upper half of RAM (not the rings) and of the four pages above it.
		 */
		for (size_t i = 0; pfns && i + 4 <= n; i += 4) {
			uint32_t pfn = PAGES / 2 + buf[i] % (PAGES / 2 + 4);

			memcpy(buf + i, &pfn, 4);
		}
		guest_mem_write(d->mem, at, buf, n);
	} else if (op % 14 == 13) {
		struct error *err = NULL;
		json_t *v, *got;

		switch (fz_u8(f) % 4) {
		case 0: /* the host's target, 0 (refused) to past the RAM */
			virtio_balloon_set_target(state, (uint64_t)fz_u16(f) * 64 * 1024);
			break;
		case 1:
			if (virtio_balloon_actual(state) > RAM_SIZE) {
				abort();
			}
			break;
		case 2: /* the polling interval: 0 stops it, 1 s or more polls at once */
			v = json_integer(fz_u8(f) % 3);
			if (virtio_balloon_class.qom_set(state, "guest-stats-polling-interval", v,
							 &err) < 0) {
				abort();
			}
			json_decref(v);
			break;
		default:
			got = virtio_balloon_class.qom_get(state, "guest-stats", &err);
			if (!got) {
				abort();
			}
			json_decref(got);
			break;
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct vm_config vmcfg = {
		.name = "fuzz", .vcpus = 2, .memory = RAM_SIZE, .balloon = true};
	static struct fuzz_virtio t = {.cls = &virtio_balloon_class,
				       .vmcfg = &vmcfg,
				       .device_id = 0x1045,
				       .ram_size = RAM_SIZE,
				       .nops = 14,
				       .extra = extra};

	fuzz_virtio_run(&t, data, size);
	return 0;
}
