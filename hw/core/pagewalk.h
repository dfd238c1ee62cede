/*
 * The guest's page tables, read from guest RAM as the MMU reads them (for
 * memsave and dump-guest-memory with paging): 32-bit paging (4 KiB and,
 * with CR4.PSE, 4 MiB pages), PAE (4 KiB, 2 MiB), 4-level and 5-level
 * long mode (4 KiB, 2 MiB, 1 GiB). Paging off: linear is physical.
 * Permissions (user, write, no-execute) are not checked; a table or entry
 * outside guest RAM counts as not present. Any thread: the caller keeps
 * the VM's memory and registers as they were read.
 */
#pragma once

#include <stdint.h>

#include "vmmd/vm.h" /* struct vm_paging, vm_page_fn */

struct guest_mem;

/*
 * The guest-physical address of linear address @la, and in *@ret_len the
 * bytes from there to the end of its page. -EFAULT when nothing maps it
 * (an entry not present, or a non-canonical address in long mode).
 */
int guest_translate(struct guest_mem *mem, const struct vm_paging *p, uint64_t la,
		    uint64_t *ret_gpa, uint64_t *ret_len);

/*
 * Every present page of the tables in linear-address order (vm_page_fn,
 * include/vmmd/vm.h). Stops at the first nonzero return and returns it.
 * Paging off: nothing (no mapping to report). 0 when all were reported.
 * The guest decides the tables: past GUEST_WALK_MAX_TABLES of them (512
 * MiB of tables; every entry pointing back to one table would make 2^36
 * reads) the walk stops with -E2BIG.
 */
#define GUEST_WALK_MAX_TABLES (1u << 17)
int guest_walk(struct guest_mem *mem, const struct vm_paging *p, vm_page_fn *fn, void *opaque);
