/* The test guests' runtime: see lib.h. */
#include "lib.h"

static volatile uint32_t console;

void console_lock(void)
{
	while (__atomic_exchange_n(&console, 1, __ATOMIC_ACQUIRE)) {
		__asm__ volatile("pause");
	}
}

void console_unlock(void)
{
	__atomic_store_n(&console, 0, __ATOMIC_RELEASE);
}

void serial_init(void)
{
	outb(COM1 + 1, 0x00); /* no interrupts */
	outb(COM1 + 3, 0x80); /* DLAB */
	outb(COM1 + 0, 0x01); /* 115200 baud */
	outb(COM1 + 1, 0x00);
	outb(COM1 + 3, 0x03); /* 8N1 */
	outb(COM1 + 2, 0x07); /* FIFO on, cleared */
	outb(COM1 + 4, 0x03); /* DTR, RTS */
}

static void putc(char c)
{
	/* Wait for THR empty, bounded: an absent UART reads as 0xff. */
	for (int i = 0; i < 100000 && !(inb(COM1 + 5) & 0x20); i++) {
		__asm__ volatile("pause");
	}
	outb(COM1, (uint8_t)c);
}

void print(const char *s)
{
	for (; *s; s++) {
		if (*s == '\n') {
			putc('\r');
		}
		putc(*s);
	}
}

void print_hex(uint64_t v)
{
	char buf[19];
	int i = 18;

	buf[i] = '\0';
	do {
		buf[--i] = "0123456789abcdef"[v & 15];
		v >>= 4;
	} while (v && i > 2);
	buf[--i] = 'x';
	buf[--i] = '0';
	print(&buf[i]);
}

void print_dec(uint64_t v)
{
	char buf[21];
	int i = 20;

	buf[i] = '\0';
	do {
		buf[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	print(&buf[i]);
}

unsigned apic_id(void)
{
	uint32_t r[4];

	cpuid(1, 0, r);
	return r[1] >> 24;
}

void guest_halt(void)
{
	for (;;) {
		__asm__ volatile("cli; hlt");
	}
}

void guest_poweroff(void)
{
	if (inw(ACPI_PM1A_CNT) == 0xffff) {
		print("poweroff: no ACPI PM block, halting\n");
		guest_halt();
	}
	print("poweroff: ACPI S5\n");
	outw(ACPI_PM1A_CNT, (uint16_t)(ACPI_SLP_TYP_S5 << 10 | 1 << 13));
	for (volatile int i = 0; i < 1000; i++) {
	}
	print("poweroff: still running, halting\n");
	guest_halt();
}

void guest_triple_fault(void)
{
	static const struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) null_idt = {0, 0};

	__asm__ volatile("lidt %0; int3" : : "m"(null_idt));
	guest_halt();
}

__attribute__((weak)) void ap_main(unsigned index)
{
	(void)index;
	guest_halt();
}

#define ICR_LOW 0x300
#define ICR_HIGH 0x310
#define ICR_BUSY (1u << 12)
#define ICR_ALL_BUT_SELF (3u << 18)

extern char ap_trampoline[];

/* Send @low through the local APIC's ICR to APIC ID @dest; wait until it is taken. */
static void lapic_icr(unsigned dest, uint32_t low)
{
	mmio_write32(LAPIC_BASE + ICR_HIGH, dest << 24);
	mmio_write32(LAPIC_BASE + ICR_LOW, low);
	for (int i = 0; i < 100000 && (mmio_read32(LAPIC_BASE + ICR_LOW) & ICR_BUSY); i++) {
		__asm__ volatile("pause");
	}
}

void start_aps(unsigned apic)
{
	uint32_t vector = (uint32_t)((uint64_t)ap_trampoline >> 12);
	uint32_t to = apic == START_ALL_OTHERS ? ICR_ALL_BUT_SELF : 0;
	unsigned dest = apic == START_ALL_OTHERS ? 0 : apic;

	lapic_icr(dest, to | 0x4500);	       /* INIT, assert */
	lapic_icr(dest, to | 0x4600 | vector); /* SIPI */
	lapic_icr(dest, to | 0x4600 | vector);
}

uint64_t boot_count(volatile uint64_t *at, uint64_t magic, const char *tag)
{
	uint64_t boot = at[0] == magic ? at[1] + 1 : 1;

	at[0] = magic;
	at[1] = boot;
	print(tag);
	print(": boot ");
	print_dec(boot);
	print("\n");
	return boot;
}
