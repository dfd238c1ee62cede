/*
 * Test guest: port I/O and MMIO to addresses no device claims must read
 * all ones and swallow writes, and the VM must keep running.
 */
#include "lib.h"

#define UNCLAIMED_PORT 0x1234
#define UNCLAIMED_MMIO 0xd0000000ull /* in the 32-bit PCI hole */

static int failures;

static void check(const char *what, uint64_t got, uint64_t want)
{
	print(what);
	print(" = ");
	print_hex(got);
	if (got != want) {
		print(" FAIL, expected ");
		print_hex(want);
		failures++;
	}
	print("\n");
}

void guest_main(void)
{
	serial_init();
	print("unclaimed: start\n");
	outb(UNCLAIMED_PORT, 0x5a);
	outw(UNCLAIMED_PORT, 0x5a5a);
	outl(UNCLAIMED_PORT, 0x5a5a5a5a);
	check("inb", inb(UNCLAIMED_PORT), 0xff);
	check("inw", inw(UNCLAIMED_PORT), 0xffff);
	check("inl", inl(UNCLAIMED_PORT), 0xffffffff);
	*(volatile uint8_t *)UNCLAIMED_MMIO = 0x5a;
	*(volatile uint64_t *)(UNCLAIMED_MMIO + 8) = 0x5a5a5a5a5a5a5a5aull;
	check("mmio8", *(volatile uint8_t *)UNCLAIMED_MMIO, 0xff);
	check("mmio16", *(volatile uint16_t *)UNCLAIMED_MMIO, 0xffff);
	check("mmio32", *(volatile uint32_t *)UNCLAIMED_MMIO, 0xffffffff);
	check("mmio64", *(volatile uint64_t *)(UNCLAIMED_MMIO + 8), ~0ull);
	print(failures ? "unclaimed: FAILED\n" : "unclaimed: ok\n");
	guest_poweroff();
}
