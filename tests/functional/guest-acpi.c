/*
 * Test guest for `vmctl stop`: says it is up on COM1, then polls the ACPI
 * PM1 status register (no interrupts needed) and powers off when the power
 * button has been pressed, as an ACPI-aware OS would.
 */
#include "../guests/lib.h"

#define PM1_STS 0x600
#define PM1_PWRBTN 0x0100

void guest_main(void)
{
	serial_init();
	if (inw(PM1_STS) == 0xffff) {
		/* Unclaimed port: this machine has no ACPI PM block. */
		print("acpi: no PM block, halting\n");
		guest_halt();
	}
	print("acpi: up\n");
	for (;;) {
		if (inw(PM1_STS) & PM1_PWRBTN) {
			print("acpi: power button\n");
			guest_poweroff();
		}
		for (volatile int i = 0; i < 2000; i++) {
		}
	}
}
