/*
 * Test guest: SMP bring-up. The BSP reads the vCPU count from CPUID leaf
 * 0xB (core level), sends INIT-SIPI-SIPI to all other CPUs through the
 * local APIC, and waits for each AP to report on COM1.
 */
#include "lib.h"

#define ICR_LOW 0x300
#define ICR_HIGH 0x310
#define ICR_BUSY (1u << 12)
#define ALL_BUT_SELF (3u << 18)

extern char ap_trampoline[];
static volatile uint32_t aps_up;

static void icr(uint32_t low)
{
	mmio_write32(LAPIC_BASE + ICR_HIGH, 0);
	mmio_write32(LAPIC_BASE + ICR_LOW, low);
	for (int i = 0; i < 100000 && (mmio_read32(LAPIC_BASE + ICR_LOW) & ICR_BUSY); i++) {
		__asm__ volatile("pause");
	}
}

void ap_main(unsigned index)
{
	console_lock();
	print("smp: AP ");
	print_dec(index + 1);
	print(" up, APIC ID ");
	print_dec(apic_id());
	print("\n");
	console_unlock();
	__atomic_add_fetch(&aps_up, 1, __ATOMIC_RELEASE);
	guest_halt();
}

void guest_main(void)
{
	uint32_t r[4];
	unsigned n, vector = (unsigned)((uint64_t)ap_trampoline >> 12);

	serial_init();
	cpuid(0xb, 1, r);
	n = r[1] & 0xffff;
	print("smp: ");
	print_dec(n);
	print(" CPUs, BSP APIC ID ");
	print_dec(apic_id());
	print("\n");
	if (n > 1) {
		icr(ALL_BUT_SELF | 0x4500);	     /* INIT, assert */
		icr(ALL_BUT_SELF | 0x4600 | vector); /* SIPI */
		icr(ALL_BUT_SELF | 0x4600 | vector);
		for (uint64_t spins = 0; aps_up < n - 1 && spins < 200000000; spins++) {
			__asm__ volatile("pause");
		}
	}
	console_lock();
	print("smp: ");
	print_dec(aps_up + 1);
	print(" of ");
	print_dec(n);
	print(" CPUs up\n");
	console_unlock();
	guest_poweroff();
}
