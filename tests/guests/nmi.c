/*
 * Test guest for inject-nmi: every CPU loads an IDT whose vector 2 (NMI)
 * counts the NMIs this CPU took, then halts with interrupts off, which
 * only an NMI (or a reset) ends. The BSP brings the other vCPUs up as
 * smp.c does, says "nmi: ready", and after each wake-up waits a moment
 * for the others' handlers, then prints every CPU's count:
 * "nmi: wake N: 1 1" (the counts of APIC IDs 0, 1, ...). An NMI that comes
 * while it prints, or between its last look at the count and its hlt, is
 * not slept through: the handler returns past that hlt.
 */
#include "lib.h"

#define MAX_CPUS 8

static volatile uint32_t aps_up;
static volatile uint32_t nmis[MAX_CPUS];

struct idt_gate {
	uint16_t off_lo, sel;
	uint8_t ist, type;
	uint16_t off_mid;
	uint32_t off_hi, zero;
} __attribute__((packed));

static struct idt_gate idt[3] __attribute__((aligned(16)));

void nmi_handler(uint64_t *rip);
void nmi_entry(void);
extern char halt_at[];
/*
 * Saves what the C handler may clobber and passes it the interrupted RIP's
 * slot in the frame; NMIs are blocked until iretq.
 */
__asm__(".text\n"
	"nmi_entry:\n"
	"	push %rax; push %rcx; push %rdx; push %rsi; push %rdi\n"
	"	push %r8; push %r9; push %r10; push %r11\n"
	"	cld\n"
	"	lea 72(%rsp), %rdi\n"
	"	call nmi_handler\n"
	"	pop %r11; pop %r10; pop %r9; pop %r8\n"
	"	pop %rdi; pop %rsi; pop %rdx; pop %rcx; pop %rax\n"
	"	iretq\n");

void nmi_handler(uint64_t *rip)
{
	unsigned id = apic_id();

	if (id < MAX_CPUS) {
		__atomic_add_fetch(&nmis[id], 1, __ATOMIC_RELEASE);
	}
	/*
	 * Taken after wait_nmi's last look and before its hlt: return past
	 * the hlt, or the CPU would sleep through this NMI's news.
	 */
	if (*rip == (uint64_t)halt_at) {
		*rip += 1;
	}
}

/* Halt (interrupts off) until this CPU's NMI count is no longer @seen. */
static __attribute__((noinline)) void wait_nmi(uint32_t seen)
{
	__asm__ volatile("cli");
	while (__atomic_load_n(&nmis[0], __ATOMIC_ACQUIRE) == seen) {
		__asm__ volatile(".global halt_at\nhalt_at: hlt" ::: "memory");
	}
}

static void load_idt(void)
{
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) ptr = {sizeof(idt) - 1, (uint64_t)idt};
	uint64_t h = (uint64_t)nmi_entry;

	idt[2] = (struct idt_gate){.off_lo = (uint16_t)h,
				   .sel = 0x08,	 /* start.S's 64-bit code segment */
				   .type = 0x8e, /* present, DPL 0, interrupt gate */
				   .off_mid = (uint16_t)(h >> 16),
				   .off_hi = (uint32_t)(h >> 32)};
	__asm__ volatile("lidt %0" : : "m"(ptr));
}

void ap_main(unsigned index)
{
	(void)index;
	load_idt();
	__atomic_add_fetch(&aps_up, 1, __ATOMIC_RELEASE);
	for (;;) {
		__asm__ volatile("cli; hlt");
	}
}

static unsigned cpus(void)
{
	uint32_t r[4];

	cpuid(0xb, 1, r);
	return (r[1] & 0xffff) ? (r[1] & 0xffff) : 1;
}

void guest_main(void)
{
	unsigned n = cpus();
	uint32_t seen = 0;

	serial_init();
	load_idt();
	if (n > 1) {
		start_aps(START_ALL_OTHERS);
		for (uint64_t spins = 0; aps_up < n - 1 && spins < 200000000; spins++) {
			__asm__ volatile("pause");
		}
	}
	print("nmi: ready, ");
	print_dec(aps_up + 1);
	print(" CPUs\n");
	for (;;) {
		wait_nmi(seen);
		seen = nmis[0];
		/* the others take theirs about now: give them a moment */
		for (uint64_t spins = 0; spins < 20000000; spins++) {
			unsigned done = 1;

			for (unsigned i = 1; i < n && i < MAX_CPUS; i++) {
				done += nmis[i] == seen;
			}
			if (done == n) {
				break;
			}
			__asm__ volatile("pause");
		}
		print("nmi: wake ");
		print_dec(seen);
		print(":");
		for (unsigned i = 0; i < n && i < MAX_CPUS; i++) {
			print(" ");
			print_dec(nmis[i]);
		}
		print("\n");
	}
}
