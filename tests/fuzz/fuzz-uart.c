/*
 * libFuzzer target: the 16550 UART (hw/isa/serial.c, COM1) on the fake
 * machine: register writes and reads (divisor latch, FIFO control, line
 * and modem control with loopback, interrupt enables and identification),
 * host input through the ring-buffer side channel, the I/O loop (console
 * log and socket), reset and save/load (tests/fuzz/fuzz-pio.h has the
 * operations). The console files live in a private run directory.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "hw/devices.h"
#include "hw/isa/serial.h"
#include "tests/fuzz/fuzz-pio.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char run_dir[] = "/tmp/fuzz-uart-XXXXXX";

static void cleanup(void)
{
	char cmd[64];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", run_dir);
	if (system(cmd) != 0) {
		/* a leftover directory in /tmp */
	}
}

static void prepare(struct vm *vm)
{
	fake_vm_host(vm)->run_dir = run_dir;
}

/* Operations 9..15: the host types up to 16 bytes (ringbuf-write). */
static void host_input(struct vm *vm, void *state, uint8_t op, struct fz *f)
{
	const struct vm_ringbuf *rb = fake_vm_ringbuf(vm);
	uint8_t buf[16];
	size_t n;

	(void)state;
	(void)op;
	n = fz_bytes(f, buf, 1 + fz_u8(f) % sizeof(buf));
	if (rb->write) {
		rb->write(rb->opaque, buf, n);
	}
	if (rb->read) {
		uint8_t out[64];

		rb->read(rb->opaque, out, sizeof(out));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct vm_config cfg = {.name = "fuzz"};
	static struct fuzz_pio t = {.cls = &serial_class,
				    .cfg = &cfg,
				    .port0 = SERIAL_COM1_BASE,
				    .nports = 8,
				    .prepare = prepare,
				    .extra = host_input};

	if (!t.base) {
		t.base = event_base_new();
		if (!t.base || !mkdtemp(run_dir)) {
			abort();
		}
		atexit(cleanup);
	}
	fuzz_pio_run(&t, data, size);
	return 0;
}
