/*
 * Test guest: the reboot paths. A boot counter kept at a fixed address the
 * loader never touches (RAM survives a reset; the image is reloaded):
 * boot 1 resets through the i8042 (0x64 <- 0xfe), boot 2 by a triple
 * fault, boot 3 powers off. If the i8042 reset does nothing, boot 1 falls
 * back to a triple fault and says so.
 */
#include "lib.h"

#define COUNTER ((volatile uint64_t *)0x50000)
#define MAGIC 0x7662006f6f626572ull /* tagged counter */

void guest_main(void)
{
	uint64_t boot;

	serial_init();
	boot = boot_count(COUNTER, MAGIC, "reboot");
	if (boot == 1) {
		print("reboot: i8042 reset\n");
		outb(0x64, 0xfe);
		for (volatile int i = 0; i < 100000; i++) {
		}
		print("reboot: i8042 reset did nothing, triple fault instead\n");
		guest_triple_fault();
	}
	if (boot == 2) {
		print("reboot: triple fault\n");
		guest_triple_fault();
	}
	COUNTER[0] = 0;
	guest_poweroff();
}
