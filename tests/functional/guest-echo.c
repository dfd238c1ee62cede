/*
 * Test guest for vmctl console: says it is ready on COM1, then echoes every
 * byte it receives, letters upper-cased, polling the UART with a pause
 * between polls (no interrupts needed).
 */
#include "../guests/lib.h"

void guest_main(void)
{
	char out[2] = {0, 0};

	serial_init();
	print("echo: ready\n");
	for (;;) {
		if (inb(COM1 + 5) & 1) {
			char c = (char)inb(COM1);

			out[0] = (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
			print(out);
			continue;
		}
		for (volatile int i = 0; i < 2000; i++) {
		}
	}
}
