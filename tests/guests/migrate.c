/*
 * Test guest for live migration (tests/functional/test-migration.py), after
 * QEMU's tests/migration/i386/a-b-bootblock.S: it increments the first
 * byte of every 4 KiB page from 4 MiB to 12 MiB, pass after pass, and
 * checks before each increment that the byte holds what the previous pass
 * left there, and that the page's last 8 bytes still hold what boot wrote
 * there (its address XOR the nonce: a page sent as its changes, xbzrle,
 * must not lose the bytes that did not change). A page the migration lost
 * or sent stale shows as "migrate: BAD page P has X, expected Y" (Y 256 for
 * the last bytes) and the guest stops counting;
 * RAM also carries a nonce drawn at boot, so a reboot shows as a second
 * "migrate: boot" line with a new nonce.
 *
 * Lines: "migrate: boot nonce N", "migrate: pass P nonce N ok" every 16
 * passes.
 */
#include "lib.h"

#define RAM_FROM (4ull << 20)
#define RAM_TO (12ull << 20)
#define PAGE 4096ull
#define REPORT_EVERY 16

static uint64_t nonce;

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

void guest_main(void)
{
	uint64_t pass = 0;

	serial_init();
	nonce = rdtsc() * 0x9e3779b97f4a7c15ull | 1;
	for (uint64_t a = RAM_FROM; a < RAM_TO; a += PAGE) {
		*(volatile uint8_t *)a = 0;
		*(volatile uint64_t *)(a + PAGE - 8) = a ^ nonce;
	}
	print("migrate: boot nonce ");
	print_hex(nonce);
	print("\n");
	for (;;) {
		uint8_t want = (uint8_t)pass;

		for (uint64_t a = RAM_FROM; a < RAM_TO; a += PAGE) {
			volatile uint8_t *p = (volatile uint8_t *)a;
			uint8_t got = *p;

			if (*(volatile uint64_t *)(a + PAGE - 8) != (a ^ nonce)) {
				print("migrate: BAD page ");
				print_hex(a);
				print(" has its last bytes changed, expected 256\n");
				guest_halt();
			}
			if (got != want) {
				print("migrate: BAD page ");
				print_hex(a);
				print(" has ");
				print_dec(got);
				print(", expected ");
				print_dec(want);
				print("\n");
				guest_halt();
			}
			*p = (uint8_t)(got + 1);
		}
		pass++;
		if (pass % REPORT_EVERY == 0) {
			print("migrate: pass ");
			print_dec(pass);
			print(" nonce ");
			print_hex(nonce);
			print(" ok\n");
		}
	}
}
