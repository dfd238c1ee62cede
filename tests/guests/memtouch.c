/*
 * Benchmark guest for save/restore (tests/bench/vmstate.py): finds its RAM
 * below the PCI hole from the CMOS (0x34/0x35: 64 KiB units above 16 MiB,
 * as vmmd and QEMU's pc machine fill them), writes every 4 KiB page from
 * 16 MiB up once, then reads one word of each page in a loop forever,
 * printing "memtouch: pass N" after each pass. After a lazy restore the
 * first full pass faults every page in from the memory file; its time,
 * next to a warm pass, is the first-touch cost.
 */
#include "lib.h"

#define LOW_START (16ull << 20)

static uint8_t cmos(uint8_t idx)
{
	outb(0x70, idx);
	return inb(0x71);
}

void guest_main(void)
{
	uint64_t above16 = cmos(0x34) | (uint64_t)cmos(0x35) << 8;
	uint64_t top = LOW_START + above16 * 65536;
	volatile uint64_t sum = 0;

	serial_init();
	print("memtouch: ram top ");
	print_hex(top);
	print("\n");
	for (uint64_t p = LOW_START; p < top; p += 4096) {
		*(volatile uint64_t *)p = p ^ 0x5a5a5a5a5a5a5a5aull;
	}
	print("memtouch: pass 1\n");
	for (uint64_t pass = 2;; pass++) {
		for (uint64_t p = LOW_START; p < top; p += 4096) {
			sum += *(volatile uint64_t *)p;
		}
		print("memtouch: pass ");
		print_dec(pass);
		print("\n");
	}
}
