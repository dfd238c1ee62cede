/*
 * libFuzzer target: virtio-blk behind virtio-pci (hw/virtio/blk.c,
 * hw/virtio/virtio-pci.c) on the fake machine with the real PCI host and a
 * 256 KiB raw disk: PCI configuration writes, accesses to the common,
 * notify, ISR and device regions, descriptors, avail ring entries and
 * request headers written by the guest (every request type, any sector,
 * chains, indirect tables), kicks, the I/O loop that completes requests,
 * reset, save/load round trips and hostile state streams. The input is a
 * stream of operations (see the switch below); one of them probes the
 * function and sets a queue up as a driver does, so that requests are
 * reached from short inputs.
 */
#include "config.h"

#include "tests/fuzz/fuzz-disk.h"
#include "tests/fuzz/fuzz-virtio.h"
#include "vmmd/vm.h"

#define RAM_SIZE (1u << 20)
#define DISK_SIZE (256u << 10)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Operation 5: a request header: type, sector (also past the end). */
static void extra(struct drv *dp, void *state, uint8_t op, struct fz *fp)
{
	static const uint8_t types[] = {0, 1, 4, 8, 11, 13, 2, 0xff};
	struct drv d = *dp;
	struct fz f = *fp;

	(void)state;
	switch (op % 13) {
	case 5: { /* a request header: type, sector (also past the end) */
		uint8_t h[16] = {0};
		uint64_t at = BUF + 16u * fz_u16(&f) % 0x10000;
		uint32_t type = types[fz_u8(&f) % sizeof(types)];
		uint64_t sector = fz_u16(&f);

		sector |= (uint64_t)(fz_u8(&f) & 0x80 ? 0xffffffffu : 0) << 32;
		memcpy(h, &type, 4);
		memcpy(h + 8, &sector, 8);
		guest_mem_write(d.mem, at, h, sizeof(h));
		break;
	}
	}
	*fp = f;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct vm_disk_config dc = {
		.id = "vda", .file = fuzz_disk_path, .format = "raw", .serial = "FUZZ"};
	static struct fuzz_virtio t = {.cls = &virtio_blk_class,
				       .cfg = &dc,
				       .device_id = 0x1042,
				       .ram_size = RAM_SIZE,
				       .nops = 13,
				       .extra = extra};

	fuzz_disk_reset(DISK_SIZE);
	fuzz_virtio_run(&t, data, size);
	return 0;
}
