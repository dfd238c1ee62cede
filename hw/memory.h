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
