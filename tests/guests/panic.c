/*
 * Test guest for pvpanic (port 0x505). A boot counter at a fixed address
 * the loader never touches (RAM survives a reset): boot 1 prints what the
 * port reads, says it panicked (0x505 <- 1), and once run again (cont)
 * prints "panic: resumed", says a crash kernel is loaded (0x505 <- 2,
 * which does not stop it) and panics a second time; boot 2 (after
 * system_reset and cont) prints "panic: boot 2" and idles.
 * The write only asks for the stop, so each one is followed by a wait
 * long enough for it to take effect before the guest prints again.
 */
#include "lib.h"

#define COUNTER ((volatile uint64_t *)0x51000)
#define MAGIC 0x63696e6170766b00ull
#define PVPANIC 0x505

static void settle(void)
{
	for (volatile int i = 0; i < 20000; i++) {
	}
}

void guest_main(void)
{
	uint64_t boot;

	serial_init();
	boot = boot_count(COUNTER, MAGIC, "panic");
	if (boot == 1) {
		print("panic: port reads ");
		print_hex(inb(PVPANIC));
		print("\n");
		print("panic: first\n");
		outb(PVPANIC, 1);
		settle();
		print("panic: resumed\n");
		outb(PVPANIC, 2);
		settle();
		print("panic: crash loaded said\n");
		for (int i = 0; i < 15; i++) {
			settle(); /* about a second: the host checks the running state first */
		}
		print("panic: second\n");
		outb(PVPANIC, 1);
		settle();
		print("panic: resumed again\n");
	}
	COUNTER[0] = 0;
	for (;;) {
		__asm__ volatile("hlt");
	}
}
