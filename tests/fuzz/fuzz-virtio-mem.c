/*
 * libFuzzer target: virtio-mem behind virtio-pci (hw/virtio/mem.c) on the
 * fake machine, its 4 MiB region of 1 MiB blocks a slice of the fake RAM
 * at 8 MiB: the transport operations of tests/fuzz/fuzz-virtio.h, plug,
 * unplug, unplug-all and state requests (and unknown ones) for any range
 * in and around the region, and the host changing requested-size between
 * them (qom-set), with reset and save/load.
 */
#include "config.h"

#include <jansson.h>

#include "tests/fuzz/fuzz-virtio.h"
#include "vmmd/vm.h"

#define RAM_SIZE (16u << 20)
#define MEM_ADDR (8ull << 20)
#define MEM_BLOCK (1ull << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Operation 5: a request at a BUF offset; 13: the host's requested-size. */
static void extra(struct drv *d, void *state, uint8_t op, struct fz *f)
{
	if (op % 14 == 5) {
		static const uint16_t types[] = {0, 1, 2, 3, 4, 0xffff};
		uint8_t req[24] = {0};
		uint64_t at = BUF + 16u * fz_u16(f) % 0x10000;
		uint16_t type = types[fz_u8(f) % 6];
		/* a block in or near the region, sometimes not on a block boundary */
		int64_t block = (int8_t)fz_u8(f) % 8;
		uint64_t addr = MEM_ADDR + block * (int64_t)MEM_BLOCK + (fz_u8(f) & 1 ? 4096 : 0);
		uint16_t nb = fz_u8(f) % 8;

		memcpy(req, &type, 2);
		memcpy(req + 8, &addr, 8);
		memcpy(req + 16, &nb, 2);
		guest_mem_write(d->mem, at, req, sizeof(req));
	} else if (op % 14 == 13) {
		json_t *v = json_integer((json_int_t)(fz_u8(f) % 6) * (json_int_t)MEM_BLOCK);
		struct error *err = NULL;

		if (virtio_mem_class.qom_set(state, "requested-size", v, &err) < 0) {
			error_free(err);
		}
		json_decref(v);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct vm_memdev_config cfg = {
		.id = "vm0",
		.driver = "virtio-mem",
		.memdev = "m0",
		.size = 4 << 20,
		.requested_size = 2 << 20,
		.block_size = MEM_BLOCK,
		.addr = MEM_ADDR,
	};
	static struct fuzz_virtio t = {.cls = &virtio_mem_class,
				       .cfg = &cfg,
				       .device_id = 0x1058,
				       .ram_size = RAM_SIZE,
				       .nops = 14,
				       .extra = extra};

	fuzz_virtio_run(&t, data, size);
	return 0;
}
