/*
 * Guest physical memory. RAM is a few host mappings (below and above the
 * 32-bit PCI hole) registered as KVM memslots. Every guest-supplied address
 * reaches host memory through guest_mem_ptr(), the one bounds-checked way.
 *
 * Threads: the region table is fixed after vm_new(), so lookups are
 * lock-free from any thread of the VM.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct guest_mem;

/*
 * Host pointer for guest range [gpa, gpa+len), or NULL if any byte of it is
 * outside guest RAM, the range wraps, or it spans two RAM regions. len may
 * be 0 (then gpa itself must be inside RAM or at its end).
 */
void *guest_mem_ptr(struct guest_mem *mem, uint64_t gpa, uint64_t len);

/* Copy to/from guest RAM; -EFAULT if the range is not wholly RAM. */
int guest_mem_read(struct guest_mem *mem, uint64_t gpa, void *buf, size_t len);
int guest_mem_write(struct guest_mem *mem, uint64_t gpa, const void *buf, size_t len);

/* Total RAM size in bytes. */
uint64_t guest_mem_size(struct guest_mem *mem);

/*
 * Layout: RAM from 0 up to the 32-bit PCI hole, the rest from 4 GiB up.
 * The hole [GUEST_MEM_HOLE_START, 4 GiB) holds device MMIO (PCI BARs,
 * IOAPIC at 0xFEC00000, LAPIC at 0xFEE00000) and KVM's TSS/identity pages.
 */
#define GUEST_MEM_HOLE_START 0xC0000000ull
#define GUEST_MEM_HIGH_START 0x100000000ull

/* One host mapping backing a contiguous guest-physical range. */
struct guest_mem_region {
	uint64_t gpa;
	uint64_t size;
	uint8_t *host;
	int fd; /* memfd backing or -1 */
};

/*
 * Reserve guest RAM of @size bytes (a multiple of 4 KiB) laid out as above,
 * mapped MAP_NORESERVE. @backend is "anonymous", "memfd" or "hugepages"
 * (memfd with MFD_HUGETLB; size must be a multiple of 2 MiB). Does not touch
 * KVM: kvm.c registers the regions as memslots. -errno with a message.
 */
struct error;
int guest_mem_new(uint64_t size, const char *backend, struct guest_mem **ret, struct error **errp);
void guest_mem_free(struct guest_mem *mem);

unsigned guest_mem_region_count(struct guest_mem *mem);
const struct guest_mem_region *guest_mem_region(struct guest_mem *mem, unsigned i);
/* Bytes of RAM below the PCI hole (the top of low RAM). */
uint64_t guest_mem_low_size(struct guest_mem *mem);
