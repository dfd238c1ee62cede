/*
 * The test guests' tiny runtime: port I/O, COM1 output, CPUID, the local
 * APIC, and the ways a guest ends (ACPI poweroff, i8042 reset, triple
 * fault). Freestanding: no libc.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#define COM1 0x3f8
#define ACPI_PM1A_CNT 0x604 /* hw/platform/acpi.h: ACPI_PM_BASE + 4 */
#define ACPI_SLP_TYP_S5 5
#define LAPIC_BASE 0xfee00000ull

static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline void outw(uint16_t port, uint16_t v)
{
	__asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port));
}

static inline void outl(uint16_t port, uint32_t v)
{
	__asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
	uint8_t v;

	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline uint16_t inw(uint16_t port)
{
	uint16_t v;

	__asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline uint32_t inl(uint16_t port)
{
	uint32_t v;

	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
	__asm__ volatile("cpuid"
			 : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3])
			 : "a"(leaf), "c"(sub));
}

static inline uint32_t mmio_read32(uint64_t addr)
{
	return *(volatile uint32_t *)addr;
}

static inline void mmio_write32(uint64_t addr, uint32_t v)
{
	*(volatile uint32_t *)addr = v;
}

void serial_init(void);
void print(const char *s);
void print_hex(uint64_t v);
void print_dec(uint64_t v);
/* Hold the console for a whole line when several CPUs print. */
void console_lock(void);
void console_unlock(void);

/*
 * Count this boot in a two-word record (@magic, count) at @at, a RAM
 * address the loader never writes (RAM survives a reset, the image is
 * loaded again); returns this boot's number, from 1. Prints
 * "@tag: boot N".
 */
uint64_t boot_count(volatile uint64_t *at, uint64_t magic, const char *tag);

/* This CPU's APIC ID (CPUID leaf 1). */
unsigned apic_id(void);

/* ACPI S5 if the PM block exists; otherwise (or if that fails) halt for good. */
void guest_poweroff(void) __attribute__((noreturn));
void guest_triple_fault(void) __attribute__((noreturn));
void guest_halt(void) __attribute__((noreturn));

void guest_main(void);
void ap_main(unsigned index);
/*
 * Start the CPU with APIC ID @apic, or every other CPU (START_ALL_OTHERS),
 * at ap_main through start.S's trampoline: INIT, then SIPI twice (the MP
 * specification's sequence), each waited for at the local APIC.
 */
#define START_ALL_OTHERS (~0u)
void start_aps(unsigned apic);
