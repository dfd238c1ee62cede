/*
 * Benchmark and test guest for save/restore (tests/bench/vmstate.py,
 * tests/functional/test-vm-restore-lazy.py): finds its RAM below the PCI
 * hole from the CMOS (0x34/0x35: 64 KiB units above 16 MiB, as vmmd and
 * QEMU's pc machine fill them), writes every 4 KiB page from 16 MiB up
 * once with a word made of its address and a nonce drawn from the TSC at
 * boot, then reads that word of each page in a loop forever, checking it,
 * and prints "memtouch: pass N" after each pass. A page that does not
 * hold its word prints "memtouch: MISMATCH at ADDR" (at most 8 a pass).
 * After a lazy restore the first full pass faults every page in from the
 * memory file; its time, next to a warm pass, is the first-touch cost.
 *
 * Lines: "memtouch: boot nonce N", "memtouch: ram top T", "memtouch: pass N".
 */
#include "lib.h"

#define LOW_START (16ull << 20)
#define MAX_REPORTS 8

static uint8_t cmos(uint8_t idx)
{
	outb(0x70, idx);
	return inb(0x71);
}

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

void guest_main(void)
{
	uint64_t above16 = cmos(0x34) | (uint64_t)cmos(0x35) << 8;
	uint64_t top = LOW_START + above16 * 65536;
	uint64_t nonce = rdtsc() | 1;

	serial_init();
	print("memtouch: boot nonce ");
	print_hex(nonce);
	print("\n");
	print("memtouch: ram top ");
	print_hex(top);
	print("\n");
	for (uint64_t p = LOW_START; p < top; p += 4096) {
		*(volatile uint64_t *)p = p ^ nonce;
	}
	print("memtouch: pass 1\n");
	for (uint64_t pass = 2;; pass++) {
		unsigned bad = 0;

		for (uint64_t p = LOW_START; p < top; p += 4096) {
			if (*(volatile uint64_t *)p != (p ^ nonce) && bad++ < MAX_REPORTS) {
				print("memtouch: MISMATCH at ");
				print_hex(p);
				print("\n");
			}
		}
		print("memtouch: pass ");
		print_dec(pass);
		print("\n");
	}
}
