/* Test guest: hello on COM1, then what the CPU model shows, then poweroff. */
#include "lib.h"

void guest_main(void)
{
	uint32_t r[4];
	char sig[13];

	serial_init();
	print("hello from the vmmd test guest\n");
	cpuid(1, 0, r);
	print("cpuid: hypervisor=");
	print(r[2] >> 31 & 1 ? "1" : "0");
	print(" cx16=");
	print(r[2] >> 13 & 1 ? "1" : "0");
	print(" xsave=");
	print(r[2] >> 26 & 1 ? "1" : "0");
	print("\n");
	cpuid(0x40000000, 0, r);
	for (int i = 0; i < 4; i++) {
		sig[i] = (char)(r[1] >> (8 * i));
		sig[4 + i] = (char)(r[2] >> (8 * i));
		sig[8 + i] = (char)(r[3] >> (8 * i));
	}
	sig[12] = '\0';
	print("cpuid: hypervisor signature ");
	print(sig);
	print("\n");
	guest_poweroff();
}
