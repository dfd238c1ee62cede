/*
 * Test guest: instructions this project's host cannot emulate at CPL 0
 * and vmmd works around: int3 (vmmd delivers the #BP; our handler counts
 * it and returns after the instruction) and register popcnt (64, 32 and
 * 16 bit, with ZF). On a host with real virtualization the CPU runs them
 * itself and the results are the same.
 */
#include "lib.h"

struct idt_gate {
	uint16_t off0;
	uint16_t sel;
	uint8_t ist;
	uint8_t type;
	uint16_t off1;
	uint32_t off2;
	uint32_t zero;
} __attribute__((packed));

static struct idt_gate idt[32] __attribute__((aligned(16)));
volatile uint64_t bp_count;
extern char bp_handler[];

__asm__(".text\n"
	"bp_handler:\n"
	"	lock incq bp_count(%rip)\n"
	"	iretq\n");

static int failures;

static void check(const char *what, uint64_t got, uint64_t want)
{
	print(what);
	print(" = ");
	print_dec(got);
	if (got != want) {
		print(" FAIL, expected ");
		print_dec(want);
		failures++;
	}
	print("\n");
}

void guest_main(void)
{
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) idtr = {sizeof(idt) - 1, (uint64_t)idt};
	uint64_t h = (uint64_t)bp_handler, r64, zf;
	uint32_t r32;
	uint16_t r16;

	serial_init();
	idt[3] = (struct idt_gate){.off0 = (uint16_t)h,
				   .sel = 0x08,
				   .type = 0x8e,
				   .off1 = (uint16_t)(h >> 16),
				   .off2 = (uint32_t)(h >> 32)};
	__asm__ volatile("lidt %0" : : "m"(idtr));
	__asm__ volatile("int3; int3" : : : "memory");
	check("emul: int3 traps", bp_count, 2);

	__asm__ volatile("popcnt %2, %0; setz %b1; movzbq %b1, %1"
			 : "=&r"(r64), "=&r"(zf)
			 : "r"(0xf0f0f0f0f0f0f0f1ull)
			 : "cc");
	check("emul: popcnt64", r64, 33);
	check("emul: popcnt64 zf", zf, 0);
	__asm__ volatile("popcnt %2, %0; setz %b1; movzbq %b1, %1"
			 : "=&r"(r64), "=&r"(zf)
			 : "r"(0ull)
			 : "cc");
	check("emul: popcnt64(0)", r64, 0);
	check("emul: popcnt64(0) zf", zf, 1);
	__asm__ volatile("popcnt %1, %0" : "=r"(r32) : "r"(0x80000001u) : "cc");
	check("emul: popcnt32", r32, 2);
	__asm__ volatile("popcnt %1, %0" : "=r"(r16) : "r"((uint16_t)0x7fff) : "cc");
	check("emul: popcnt16", r16, 15);
	{
		uint32_t c[4];
		uint64_t fl;

		cpuid(7, 0, c);
		if (c[1] & (1u << 20)) {
			__asm__ volatile("stac; pushfq; popq %0; clac" : "=r"(fl) : : "cc");
			check("emul: stac sets AC", fl >> 18 & 1, 1);
			__asm__ volatile("clac; pushfq; popq %0" : "=r"(fl) : : "cc");
			check("emul: clac clears AC", fl >> 18 & 1, 0);
		} else {
			print("emul: no SMAP, stac/clac not tried\n");
		}
	}
	__asm__ volatile("fwait; fwait");
	print("emul: fwait done\n");
	print(failures ? "emul: FAILED\n" : "emul: ok\n");
	guest_poweroff();
}
