/*
 * Test guest for the daemon tests: says it is up on COM1, then halts with
 * interrupts off, using no CPU, until the host pauses, resets or destroys
 * it. A reset reboots it (it says it is up again).
 */
#include "../guests/lib.h"

void guest_main(void)
{
	serial_init();
	print("idle: up\n");
	guest_halt();
}
