/*
 * Test guest: SMP bring-up. The BSP reads the vCPU count from CPUID leaf
 * 0xB (core level), sends INIT-SIPI-SIPI to all other CPUs through the
 * local APIC, and waits for each AP to report on COM1.
 */
#include "lib.h"

static volatile uint32_t aps_up;

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
	unsigned n;

	serial_init();
	cpuid(0xb, 1, r);
	n = r[1] & 0xffff;
	print("smp: ");
	print_dec(n);
	print(" CPUs, BSP APIC ID ");
	print_dec(apic_id());
	print("\n");
	if (n > 1) {
		start_aps(START_ALL_OTHERS);
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
