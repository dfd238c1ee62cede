/*
 * Direct kernel boot without firmware: load a Linux bzImage (x86 boot
 * protocol, 64-bit entry), an ELF vmlinux (PVH note, else its ELF entry) or
 * a plain ELF64 test guest, the initrd and the command line into guest RAM,
 * build the identity page tables, GDT and boot parameters, and describe the
 * register state a vCPU enters with.
 *
 * Guest-physical layout below 1 MiB used by the loader (the e820 map marks
 * 0x9fc00-0xfffff reserved for firmware tables: EBDA, MP, ACPI):
 *   0x00500 GDT               0x01000 PML4, 0x02000 PDPT, 0x03000-0x06fff PDs
 *   0x07000 boot_params       0x08000 PVH start info, module list, memory map
 *   0x20000 command line (up to 64 KiB)
 *   0x30000-0x8ffff: free for the guest (test guests' AP trampolines)
 *
 * Threads: control thread (vm_new) or the VM's I/O thread (reset), with
 * the vCPUs parked.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "vmmd/vm.h"

struct guest_mem;

#define BOOT_GDT_ADDR 0x500ull
#define BOOT_PML4_ADDR 0x1000ull
#define BOOT_PDPT_ADDR 0x2000ull
#define BOOT_PD_ADDR 0x3000ull
#define BOOT_PARAMS_ADDR 0x7000ull
#define BOOT_PVH_INFO_ADDR 0x8000ull
#define BOOT_STACK_TOP 0x1fff0ull
#define BOOT_CMDLINE_ADDR 0x20000ull
#define BOOT_CMDLINE_MAX 0x10000ull
#define BOOT_LOADER_END 0x30000ull
#define BOOT_EBDA_START 0x9fc00ull
#define BOOT_HIGH_START 0x100000ull

/* Selectors of the loader's GDT (the x86 boot protocol's __BOOT_CS/__BOOT_DS). */
#define BOOT_CS 0x10
#define BOOT_DS 0x18

enum boot_mode {
	BOOT_MODE_NONE,	  /* APs: wait for INIT/SIPI */
	BOOT_MODE_LONG64, /* 64-bit, paging on (identity map), flat segments */
	BOOT_MODE_PVH32,  /* 32-bit protected mode, paging off, ebx = start info */
	BOOT_MODE_RESET,  /* real mode at the reset vector (firmware) */
};

struct boot_entry {
	enum boot_mode mode;
	uint64_t rip;
	uint64_t rsi; /* LONG64: boot_params */
	uint64_t rbx; /* PVH32: hvm_start_info */
	uint64_t rsp;
	const char *kind; /* "bzImage", "vmlinux (PVH)", "ELF64", ... for logs */
};

/*
 * Load @cfg's kernel, initrd and command line into @mem. Errors name the
 * file and the limit ("not a kernel", "too large for RAM", "initrd does
 * not fit").
 */
int boot_load(struct guest_mem *mem, const struct vm_config *cfg, struct boot_entry *ret,
	      struct error **errp);

/*
 * The same from images already in memory (tests): @kernel/@initrd with
 * their names for messages; @initrd may be NULL.
 */
int boot_load_images(struct guest_mem *mem, const char *kernel_name, const uint8_t *kernel,
		     size_t kernel_size, const char *initrd_name, const uint8_t *initrd,
		     size_t initrd_size, const char *cmdline, struct boot_entry *ret,
		     struct error **errp);
