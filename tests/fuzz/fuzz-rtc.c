/*
 * libFuzzer target: the CMOS RTC (hw/isa/rtc.c, ports 0x70/0x71) on the
 * fake machine: index and data writes and reads (time, alarm, the status
 * registers A-D and their divider, rate and interrupt bits, the CMOS RAM),
 * the update and periodic timers on the I/O loop, reset and save/load
 * (tests/fuzz/fuzz-pio.h has the operations).
 */
#include "config.h"

#include "hw/devices.h"
#include "tests/fuzz/fuzz-pio.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct vm_config cfg = {.name = "fuzz"};
	static struct fuzz_pio t = {.cls = &rtc_class, .cfg = &cfg, .port0 = 0x70, .nports = 2};

	if (!t.base && !(t.base = event_base_new())) {
		abort();
	}
	fuzz_pio_run(&t, data, size);
	return 0;
}
