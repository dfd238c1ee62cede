/*
 * libFuzzer target: virtio-rng behind virtio-pci (hw/virtio/rng.c) on the
 * fake machine: the transport operations of tests/fuzz/fuzz-virtio.h with
 * buffers of any shape on its one queue, until its token bucket (64 KiB)
 * runs dry, and once per input the wait for its timer to resume the queue.
 */
#include "config.h"

#include "tests/fuzz/fuzz-virtio.h"
#include "vmmd/vm.h"

#define RAM_SIZE (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void extra(struct drv *d, void *state, uint8_t op, struct fz *f);

static const struct vm_config vmcfg = {.name = "fuzz", .vcpus = 2, .rng = true};
static struct fuzz_virtio t = {.cls = &virtio_rng_class,
			       .vmcfg = &vmcfg,
			       .device_id = 0x1044,
			       .ram_size = RAM_SIZE,
			       .nops = 13,
			       .extra = extra};
static bool waited;

/* Operation 5: wait for the rate limit's timer (20 ms) and run it, once per input. */
static void extra(struct drv *d, void *state, uint8_t op, struct fz *f)
{
	(void)d;
	(void)f;
	if (op % 13 == 5 && !waited) {
		waited = true;
		usleep(25000);
		run_io(t.base, &virtio_rng_class, state, 4);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	waited = false;
	fuzz_virtio_run(&t, data, size);
	return 0;
}
