/*
 * Test guest: the OS side of QEMU's ACPI CPU hotplug interface, running by
 * hand the register protocol of the DSDT's \_SB.CPUS methods (CSCN from
 * \_GPE._E02, CSTA, CEJ0, COST; hw/platform/acpi-cpuhp-aml.c), so it
 * behaves the same under vmmd and under QEMU 7.2 (the golden traces):
 *
 * - start: write the selector (QEMU's switch from the legacy interface,
 *   the DSDT's _INI), check the modern interface (command 0, command data
 *   2 reads 0), count the present vCPUs, enable GPE0 bit 2, print "ready".
 * - on GPE0 bit 2: ack it, then as CSCN: command 0, read the status; an
 *   insert event: clear it, check _STA and the APIC ID (command 3), bring
 *   the vCPU up with INIT-SIPI-SIPI, wait until its counter runs, report
 *   _OST(Device Check, success); a remove event: clear it, then
 *   _OST(Eject Request, in progress), stop the AP (it parks with cli;hlt),
 *   eject (control bit 3), check _STA reads absent, _OST(Eject Request,
 *   success).
 *
 * Built with CPUHP_NO_AP (cpuhp-noap.elf), it runs the same register
 * protocol without starting or stopping the AP: QEMU on this kind of host
 * cannot run the real-mode AP trampoline, and the golden traces only need
 * the protocol (tests/functional/hotplug/record-qemu-cpu.py).
 *
 * Policy the host test relies on: the first removal request for vCPU 3
 * after each plug is refused with _OST(Eject Request, failure), as an OS
 * that cannot offline the CPU would; the next one is honoured.
 */
#include "lib.h"

#define GPE0_STS 0xafe0
#define GPE0_EN 0xafe2
#define GPE_CPU 0x04
#define CPUHP_SEL 0xaf00
#define CPUHP_FLAGS 0xaf04
#define CPUHP_CMD 0xaf05
#define CPUHP_DATA 0xaf08
#define F_ENABLED 0x01
#define F_INSERT 0x02
#define F_REMOVE 0x04
#define F_EJECT 0x08

#define MAX_CPUS 64

extern volatile uint32_t next_cpu; /* start.S: the AP stack index */

static volatile uint64_t counter[MAX_CPUS];
static volatile uint32_t ap_state[MAX_CPUS]; /* 0 off, 1 running, 2 stop asked, 3 parked */
static unsigned refused[MAX_CPUS];

void ap_main(unsigned index)
{
	unsigned id = apic_id();

	(void)index;
	if (id >= MAX_CPUS) {
		guest_halt();
	}
	__atomic_store_n(&ap_state[id], 1, __ATOMIC_RELEASE);
	while (__atomic_load_n(&ap_state[id], __ATOMIC_ACQUIRE) == 1) {
		counter[id]++;
		__asm__ volatile("pause");
	}
	__atomic_store_n(&ap_state[id], 3, __ATOMIC_RELEASE);
	guest_halt();
}

static void say(const char *what, unsigned cpu)
{
	print("cpuhp: cpu ");
	print_dec(cpu);
	print(what);
}

static void ost(unsigned cpu, uint32_t event, uint32_t status)
{
	outl(CPUHP_SEL, cpu);
	outb(CPUHP_CMD, 1);
	outl(CPUHP_DATA, event);
	outb(CPUHP_CMD, 2);
	outl(CPUHP_DATA, status);
}

static bool present(unsigned cpu)
{
	outl(CPUHP_SEL, cpu);
	return inb(CPUHP_FLAGS) & F_ENABLED;
}

static void cpu_insert(unsigned cpu)
{
	unsigned apic;
	uint64_t start, spins;

	if (!present(cpu)) {
		say(" insert but _STA absent FAILED\n", cpu);
		return;
	}
	outb(CPUHP_CMD, 3);
	apic = inl(CPUHP_DATA);
	if (inl(CPUHP_SEL) != 0 || apic != cpu) {
		say(" APIC ID mismatch FAILED\n", cpu);
		return;
	}
#ifdef CPUHP_NO_AP
	ost(cpu, 1 /* Device Check */, 0);
	say(" running (no AP code)\n", cpu);
	return;
#endif
	ap_state[cpu] = 0;
	next_cpu = cpu;
	start_aps(apic);
	for (spins = 0; ap_state[cpu] != 1 && spins < 400000000; spins++) {
		__asm__ volatile("pause");
	}
	start = counter[cpu];
	for (spins = 0; counter[cpu] < start + 1000 && spins < 400000000; spins++) {
		__asm__ volatile("pause");
	}
	if (ap_state[cpu] != 1 || counter[cpu] < start + 1000) {
		say(" did not start FAILED\n", cpu);
		return;
	}
	ost(cpu, 1 /* Device Check */, 0);
	say(" running\n", cpu);
}

static void cpu_remove(unsigned cpu)
{
	uint64_t spins;
	bool gone;

	if (cpu == 3 && refused[cpu]++ == 0) {
		ost(cpu, 3 /* Eject Request */, 1 /* failure */);
		say(" eject refused\n", cpu);
		return;
	}
	ost(cpu, 3, 0x80 /* in progress */);
	if (ap_state[cpu] == 1) {
		ap_state[cpu] = 2;
		for (spins = 0; ap_state[cpu] != 3 && spins < 400000000; spins++) {
			__asm__ volatile("pause");
		}
		if (ap_state[cpu] != 3) {
			say(" did not stop FAILED\n", cpu); /* its AP code is not running */
		}
	}
	outl(CPUHP_SEL, cpu);
	outb(CPUHP_FLAGS, F_EJECT);
	refused[cpu] = 0;
	gone = !present(cpu);
	ost(cpu, 3, 0);
	/* printed last: when the host sees it, every event of the removal is out */
	say(gone ? " ejected\n" : " still present FAILED\n", cpu);
}

void guest_main(void)
{
	unsigned n = 0, inserts[MAX_CPUS], removes[MAX_CPUS], ni, nr;

	serial_init();
	outl(CPUHP_SEL, 0); /* QEMU: leave the legacy interface */
	outb(CPUHP_CMD, 0);
	if (inl(CPUHP_SEL) != 0) {
		print("cpuhp: no modern CPU hotplug interface FAILED\n");
		guest_poweroff();
	}
	for (unsigned i = 0;; i++) {
		if (inb(CPUHP_FLAGS) & F_ENABLED) {
			n++;
		}
		outl(CPUHP_SEL, i + 1);
		if (inl(CPUHP_DATA) == 0) {
			break;
		}
	}
	outl(CPUHP_SEL, 0);
	print("cpuhp: ");
	print_dec(n);
	print(" present\n");
	outb(GPE0_EN, GPE_CPU);
	print("cpuhp: ready\n");
	for (;;) {
		if (!(inb(GPE0_STS) & GPE_CPU)) {
			for (volatile unsigned spin = 0; spin < 2000; spin++) {
			}
			continue;
		}
		outb(GPE0_STS, GPE_CPU);
		/* CSCN: collect the events, clearing each, then handle them (OSPM's notify queue) */
		ni = nr = 0;
		for (unsigned guard = 0; guard < 2 * MAX_CPUS; guard++) {
			uint8_t f;
			unsigned cpu;

			outb(CPUHP_CMD, 0);
			f = inb(CPUHP_FLAGS);
			cpu = inl(CPUHP_DATA);
			if (f & F_INSERT) {
				inserts[ni++ % MAX_CPUS] = cpu;
				outb(CPUHP_FLAGS, F_INSERT);
			} else if (f & F_REMOVE) {
				removes[nr++ % MAX_CPUS] = cpu;
				outb(CPUHP_FLAGS, F_REMOVE);
			} else {
				break;
			}
		}
		for (unsigned i = 0; i < ni && i < MAX_CPUS; i++) {
			say(" inserted\n", inserts[i]);
			cpu_insert(inserts[i]);
		}
		for (unsigned i = 0; i < nr && i < MAX_CPUS; i++) {
			say(" removal requested\n", removes[i]);
			cpu_remove(removes[i]);
		}
	}
}
