/*
 * Guest physical memory, the machine's side (devices see hw/device.h).
 * RAM is a few host mappings (below and above the
 * 32-bit PCI hole) registered as KVM memslots. Every guest-supplied address
 * reaches host memory through guest_mem_ptr(), the one bounds-checked way.
 *
 * Threads: the region table is fixed after vm_new(), so lookups are
 * lock-free from any thread of the VM.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What devices see of guest memory (guest_mem_ptr/read/write/size, the map). */
#include "hw/device.h"

/* One host mapping backing a contiguous guest-physical range. */
struct guest_mem_region {
	uint64_t gpa;
	uint64_t size;
	uint8_t *host;
	int fd;	     /* memfd backing or -1 */
	bool device; /* a memory device's region (virtio-mem), not RAM of the e820 map */
};

/* Regions of memory devices a VM may have besides its RAM. */
#define GUEST_MEM_MAX_DEVICE_REGIONS 8
_Static_assert(2 + GUEST_MEM_MAX_DEVICE_REGIONS <= VM_RAM_REGIONS_MAX, "vmmd/vm.h's limit");

/*
 * Reserve guest RAM of @size bytes (a multiple of 4 KiB) laid out as above,
 * mapped MAP_NORESERVE. @backend is "anonymous", "memfd" or "hugepages"
 * (memfd with MFD_HUGETLB; size must be a multiple of 2 MiB). Does not touch
 * KVM: kvm.c registers the regions as memslots. -errno with a message.
 */
struct error;
int guest_mem_new(uint64_t size, const char *backend, struct guest_mem **ret, struct error **errp);
void guest_mem_free(struct guest_mem *mem);
/*
 * Transparent huge pages for every region (and every one added later) of
 * non-hugetlb RAM: madvise MADV_HUGEPAGE with @on, MADV_NOHUGEPAGE without.
 * Control thread, before the vCPUs run.
 */
void guest_mem_set_thp(struct guest_mem *mem, bool on);

/*
 * Add the region of a memory device at [@gpa, @gpa+@size), mapped like the
 * RAM (same backend, MAP_NORESERVE: nothing is resident until touched).
 * Returns its region index (also its KVM memslot) or -errno with a message.
 * Control thread; lock-free readers see it once it is complete.
 */
int guest_mem_add_device_region(struct guest_mem *mem, uint64_t gpa, uint64_t size,
				struct error **errp);

unsigned guest_mem_region_count(struct guest_mem *mem);
const struct guest_mem_region *guest_mem_region(struct guest_mem *mem, unsigned i);
/*
 * Make @fd (taken; a memfd of the region's size) the backing of fd-backed
 * region @i, mapped shared at the same host address: a live upgrade hands
 * the old daemon's guest RAM over without copying it. Before the vCPUs run.
 */
int guest_mem_adopt_fd(struct guest_mem *mem, unsigned i, int fd, struct error **errp);
/*
 * Shared RAM restored lazily (uffd.h): @u (taken, freed by guest_mem_free
 * before the mappings go) populates it; guest_mem_discard tells it which
 * pages to serve as zero from now on. Before the vCPUs and I/O thread run.
 */
struct uffd;
void guest_mem_set_lazy(struct guest_mem *mem, struct uffd *u);
/*
 * Wait until lazily restored RAM is all there (at once without one): before
 * the memfd is handed to another process or read past the mapping. A worker
 * thread, never the control thread. 0 or -errno (uffd_wait).
 */
int guest_mem_populate_wait(struct guest_mem *mem);
/* Bytes of RAM below the PCI hole (the top of low RAM). */
uint64_t guest_mem_low_size(struct guest_mem *mem);

/*
 * vmmd's own dirty tracking for live migration: between _start and _stop,
 * guest_mem_ptr, guest_mem_write and guest_mem_mark_dirty mark the pages
 * they touch; _collect ORs region @i's marks into @bitmap (one bit per
 * page, 64-bit words) and clears them. -ENOMEM if the bitmap cannot be had.
 */
int guest_mem_track_start(struct guest_mem *mem);
void guest_mem_track_stop(struct guest_mem *mem);
void guest_mem_track_collect(struct guest_mem *mem, unsigned i, uint64_t *bitmap);
