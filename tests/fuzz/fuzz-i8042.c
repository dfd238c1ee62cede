/*
 * libFuzzer target: the i8042 keyboard controller (hw/isa/i8042.c) on the
 * fake machine: data and command port writes and reads (controller
 * commands, the command byte, output port, the keyboard's PS/2 commands
 * and their argument bytes, the AUX port's refusals), reset and save/load
 * (tests/fuzz/fuzz-pio.h has the operations; ports 0x60..0x64).
 */
#include "config.h"

#include <stdlib.h>

#include "hw/devices.h"
#include "tests/fuzz/fuzz-pio.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct vm_config cfg = {.name = "fuzz"};
	static struct fuzz_pio t = {.cls = &i8042_class, .cfg = &cfg, .port0 = 0x60, .nports = 5};

	if (!t.base) {
		t.base = event_base_new();
		if (!t.base) {
			abort();
		}
	}
	fuzz_pio_run(&t, data, size);
	return 0;
}
