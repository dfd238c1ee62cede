/*
 * Direct kernel boot: see boot.h. Everything read from a kernel or initrd
 * file is untrusted: offsets and sizes are checked against the file and
 * against guest RAM before anything is copied.
 *
 * Threads: control thread or the VM's I/O thread, vCPUs parked.
 */
#include "config.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/parse.h"
#include "common/pathpol.h"
#include "hw/core/boot.h"
#include "hw/core/e820.h"
#include "hw/core/memory.h"

/* x86 boot protocol: offsets into boot_params / the bzImage's first sector. */
#define BP_EXT_RAMDISK_IMAGE 0x0c0
#define BP_EXT_RAMDISK_SIZE 0x0c4
#define BP_EXT_CMD_LINE_PTR 0x0c8
#define BP_E820_ENTRIES 0x1e8
#define BP_SETUP_SECTS 0x1f1
#define BP_BOOT_FLAG 0x1fe
#define BP_JUMP 0x200
#define BP_HEADER 0x202
#define BP_VERSION 0x206
#define BP_TYPE_OF_LOADER 0x210
#define BP_LOADFLAGS 0x211
#define BP_CODE32_START 0x214
#define BP_RAMDISK_IMAGE 0x218
#define BP_RAMDISK_SIZE 0x21c
#define BP_HEAP_END_PTR 0x224
#define BP_CMD_LINE_PTR 0x228
#define BP_INITRD_ADDR_MAX 0x22c
#define BP_KERNEL_ALIGNMENT 0x230
#define BP_RELOCATABLE 0x234
#define BP_XLOADFLAGS 0x236
#define BP_CMDLINE_SIZE 0x238
#define BP_PREF_ADDRESS 0x258
#define BP_INIT_SIZE 0x260
#define BP_HDR_END 0x290
#define BP_E820_TABLE 0x2d0
#define BP_SIZE 4096

#define LOADED_HIGH 0x01
#define CAN_USE_HEAP 0x80
#define XLF_KERNEL_64 0x01

#define HDRS_MAGIC 0x53726448 /* "HdrS" */

#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define PVH_MAGIC 0x336ec578

struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr;
	uint32_t memmap_entries;
	uint32_t reserved;
} _packed_;

struct hvm_modlist_entry {
	uint64_t paddr;
	uint64_t size;
	uint64_t cmdline_paddr;
	uint64_t reserved;
} _packed_;

struct hvm_memmap_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
	uint32_t reserved;
} _packed_;

#define PVH_MODLIST_ADDR (BOOT_PVH_INFO_ADDR + 0x40)
#define PVH_MEMMAP_ADDR (BOOT_PVH_INFO_ADDR + 0x80)

/* An initrd: already in memory (tests) or read from a file into guest RAM. */
struct initrd_src {
	const char *name;
	const uint8_t *buf;
	int fd;
	uint64_t size;
};

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return get32(p) | (uint64_t)get32(p + 4) << 32;
}

static void put16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, sizeof(v));
}

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, sizeof(v));
}

/* Identity map of the first 4 GiB with 2 MiB pages, and the loader's GDT. */
static int write_page_tables(struct guest_mem *mem)
{
	static const uint64_t gdt[] = {
		0,
		0,
		0x00af9b000000ffffull, /* 0x10: 64-bit code */
		0x00cf93000000ffffull, /* 0x18: data */
		0x00008b0000000067ull, /* 0x20: TSS (KVM needs a usable TR) */
	};
	uint64_t *pml4 = guest_mem_ptr(mem, BOOT_PML4_ADDR, 4096);
	uint64_t *pdpt = guest_mem_ptr(mem, BOOT_PDPT_ADDR, 4096);
	uint64_t *pd = guest_mem_ptr(mem, BOOT_PD_ADDR, 4 * 4096);

	if (!pml4 || !pdpt || !pd || guest_mem_write(mem, BOOT_GDT_ADDR, gdt, sizeof(gdt)) < 0) {
		return -EFAULT;
	}
	memset(pml4, 0, 4096);
	memset(pdpt, 0, 4096);
	pml4[0] = BOOT_PDPT_ADDR | 0x3;
	for (uint64_t i = 0; i < 4; i++) {
		pdpt[i] = (BOOT_PD_ADDR + i * 4096) | 0x3;
	}
	for (uint64_t i = 0; i < 4 * 512; i++) {
		pd[i] = (i << 21) | 0x83; /* present, writable, 2 MiB page */
	}
	return 0;
}

static int write_cmdline(struct guest_mem *mem, const char *kernel_name, const char *cmdline,
			 uint64_t limit, struct error **errp)
{
	size_t len = cmdline ? strlen(cmdline) : 0;

	limit = MIN(limit, BOOT_CMDLINE_MAX);
	if (len + 1 > limit) {
		return error_set(errp, E2BIG,
				 "%s: the command line is %zu bytes, the kernel accepts at most "
				 "%" PRIu64,
				 kernel_name, len, limit - 1);
	}
	if (guest_mem_write(mem, BOOT_CMDLINE_ADDR, cmdline ? cmdline : "", len) < 0 ||
	    guest_mem_write(mem, BOOT_CMDLINE_ADDR + len, "", 1) < 0) {
		return error_set(errp, EFAULT, "guest RAM too small for the command line");
	}
	return 0;
}

/*
 * Place the initrd at the highest page-aligned address whose end is at or
 * below @top and whose start is at or above @min (the kernel's end).
 */
static int place_initrd(struct guest_mem *mem, const char *kernel_name,
			const struct initrd_src *initrd, uint64_t min, uint64_t top,
			uint64_t *ret_addr, struct error **errp)
{
	char buf[32];
	uint64_t addr;

	top = MIN(top, guest_mem_low_size(mem));
	min = ALIGN_UP(min, 4096);
	if (initrd->size > top || ALIGN_DOWN(top - initrd->size, 4096) < min) {
		return error_set(errp, E2BIG,
				 "initrd %s (%" PRIu64 " bytes) does not fit in guest RAM between "
				 "the kernel %s (ending at 0x%" PRIx64 ") and the limit 0x%" PRIx64
				 " (%s of RAM below 4G)",
				 initrd->name, initrd->size, kernel_name, min, top,
				 format_size(guest_mem_low_size(mem), buf, sizeof(buf)));
	}
	addr = ALIGN_DOWN(top - initrd->size, 4096);
	if (initrd->buf) {
		if (guest_mem_write(mem, addr, initrd->buf, initrd->size) < 0) {
			return error_set(errp, EFAULT, "initrd %s: cannot write guest RAM",
					 initrd->name);
		}
	} else {
		uint8_t *dst = guest_mem_ptr(mem, addr, initrd->size);
		uint64_t done = 0;

		if (!dst) {
			return error_set(errp, EFAULT, "initrd %s: cannot write guest RAM",
					 initrd->name);
		}
		while (done < initrd->size) {
			ssize_t n = pread(initrd->fd, dst + done,
					  MIN(initrd->size - done, 1u << 30), (off_t)done);

			if (n < 0 && errno == EINTR) {
				continue;
			}
			if (n <= 0) {
				return error_set_errno(errp, n < 0 ? errno : EIO,
						       "cannot read initrd %s", initrd->name);
			}
			done += (uint64_t)n;
		}
	}
	*ret_addr = addr;
	return 0;
}

static void fill_e820(struct guest_mem *mem, uint8_t *bp)
{
	struct e820_entry e[E820_MAX_ENTRIES];
	unsigned n = e820_build(mem, e, E820_MAX_ENTRIES);

	bp[BP_E820_ENTRIES] = (uint8_t)n;
	memcpy(bp + BP_E820_TABLE, e, n * sizeof(e[0]));
}

/* Linux bzImage through the 64-bit entry of the x86 boot protocol. */
static int load_bzimage(struct guest_mem *mem, const char *name, const uint8_t *img, size_t size,
			const struct initrd_src *initrd, const char *cmdline,
			struct boot_entry *ret, struct error **errp)
{
	uint8_t *bp = guest_mem_ptr(mem, BOOT_PARAMS_ADDR, BP_SIZE);
	uint64_t low = guest_mem_low_size(mem);
	unsigned setup_sects = img[BP_SETUP_SECTS] ? img[BP_SETUP_SECTS] : 4;
	uint16_t version = get16(img + BP_VERSION);
	uint64_t pm_off = (uint64_t)(setup_sects + 1) * 512;
	uint64_t pm_size, load, align, init_size, initrd_max, cmdline_max;
	size_t hdr_end;
	char buf[32];
	int r;

	if (version < 0x206) {
		return error_set(errp, ENOTSUP,
				 "%s: boot protocol version %u.%02u is too old (vmmd needs 2.06 or "
				 "newer)",
				 name, version >> 8, version & 0xff);
	}
	if (version >= 0x20c && !(get16(img + BP_XLOADFLAGS) & XLF_KERNEL_64)) {
		return error_set(errp, ENOTSUP, "%s: not a 64-bit kernel (no XLF_KERNEL_64)", name);
	}
	if (!(img[BP_LOADFLAGS] & LOADED_HIGH)) {
		return error_set(errp, ENOTSUP, "%s: a zImage (loaded low) is not supported", name);
	}
	if (pm_off >= size) {
		return error_set(errp, EINVAL,
				 "%s: truncated bzImage (setup of %u sectors, file "
				 "of %zu bytes)",
				 name, setup_sects, size);
	}
	pm_size = size - pm_off;
	align = get32(img + BP_KERNEL_ALIGNMENT);
	if (!IS_POWER_OF_2(align) || align < 4096) {
		align = 2ull << 20;
	}
	init_size = version >= 0x20a ? get32(img + BP_INIT_SIZE) : 0;
	init_size = MAX(init_size, pm_size);
	if (img[BP_RELOCATABLE]) {
		uint64_t pref = version >= 0x20a ? get64(img + BP_PREF_ADDRESS) : BOOT_HIGH_START;

		load = ALIGN_UP(MAX(pref, BOOT_HIGH_START), align);
		if (load + init_size > low) {
			/* Low on RAM: the lowest aligned address above 1 MiB. */
			load = ALIGN_UP(BOOT_HIGH_START, align);
		}
	} else {
		load = version >= 0x20a ? get64(img + BP_PREF_ADDRESS) : BOOT_HIGH_START;
	}
	if (load < BOOT_HIGH_START || load > low || init_size > low - load) {
		return error_set(errp, E2BIG,
				 "%s: the kernel needs %" PRIu64 " bytes at 0x%" PRIx64
				 ", too large for %s of RAM below 4G",
				 name, init_size, load, format_size(low, buf, sizeof(buf)));
	}
	if (!bp || guest_mem_write(mem, load, img + pm_off, pm_size) < 0) {
		return error_set(errp, EFAULT, "%s: cannot write guest RAM", name);
	}

	memset(bp, 0, BP_SIZE);
	hdr_end = MIN((size_t)BP_JUMP + 2 + img[BP_JUMP + 1], (size_t)BP_HDR_END);
	memcpy(bp + BP_SETUP_SECTS, img + BP_SETUP_SECTS, hdr_end - BP_SETUP_SECTS);
	bp[BP_TYPE_OF_LOADER] = 0xff;
	bp[BP_LOADFLAGS] = (uint8_t)(img[BP_LOADFLAGS] | CAN_USE_HEAP);
	put16(bp + BP_HEAP_END_PTR, 0xfe00);
	put32(bp + BP_CODE32_START, (uint32_t)load);
	put32(bp + BP_CMD_LINE_PTR, (uint32_t)BOOT_CMDLINE_ADDR);

	cmdline_max = get32(img + BP_CMDLINE_SIZE) + 1ull;
	r = write_cmdline(mem, name, cmdline, cmdline_max, errp);
	if (r < 0) {
		return r;
	}
	if (initrd) {
		uint64_t addr;

		initrd_max = get32(img + BP_INITRD_ADDR_MAX);
		if (initrd_max == 0) {
			initrd_max = 0x37ffffff;
		}
		r = place_initrd(mem, name, initrd, load + init_size, initrd_max + 1, &addr, errp);
		if (r < 0) {
			return r;
		}
		put32(bp + BP_RAMDISK_IMAGE, (uint32_t)addr);
		put32(bp + BP_RAMDISK_SIZE, (uint32_t)initrd->size);
		put32(bp + BP_EXT_RAMDISK_IMAGE, (uint32_t)(addr >> 32));
		put32(bp + BP_EXT_RAMDISK_SIZE, (uint32_t)(initrd->size >> 32));
	}
	fill_e820(mem, bp);
	*ret = (struct boot_entry){
		.mode = BOOT_MODE_LONG64,
		.rip = load + 0x200,
		.rsi = BOOT_PARAMS_ADDR,
		.rsp = BOOT_STACK_TOP,
		.kind = "bzImage",
	};
	return 0;
}

/* The PVH entry point from an ELF note, if any; 0 if none. */
static uint64_t find_pvh_entry(const uint8_t *img, size_t size, const Elf64_Ehdr *eh)
{
	for (unsigned i = 0; i < eh->e_phnum; i++) {
		const Elf64_Phdr *ph = (const Elf64_Phdr *)(img + eh->e_phoff + i * sizeof(*ph));
		uint64_t off, end;

		if (ph->p_type != PT_NOTE || ph->p_offset > size ||
		    ph->p_filesz > size - ph->p_offset) {
			continue;
		}
		off = ph->p_offset;
		end = ph->p_offset + ph->p_filesz;
		while (end - off >= 12) {
			uint32_t namesz = get32(img + off);
			uint32_t descsz = get32(img + off + 4);
			uint32_t type = get32(img + off + 8);
			uint64_t name_off = off + 12;
			uint64_t desc_off = name_off + ALIGN_UP((uint64_t)namesz, 4);
			uint64_t next = desc_off + ALIGN_UP((uint64_t)descsz, 4);

			if (next > end || next <= off) {
				break;
			}
			if (namesz == 4 && memcmp(img + name_off, "Xen", 4) == 0 &&
			    type == XEN_ELFNOTE_PHYS32_ENTRY && (descsz == 4 || descsz == 8)) {
				return descsz == 4 ? get32(img + desc_off) : get64(img + desc_off);
			}
			off = next;
		}
	}
	return 0;
}

/* The physical address of RSDP if the platform wrote ACPI tables; 0 if not. */
static uint64_t find_rsdp(struct guest_mem *mem)
{
	const uint8_t *p = guest_mem_ptr(mem, 0xe0000, 0x20000);

	for (size_t off = 0; p && off + 20 <= 0x20000; off += 16) {
		if (memcmp(p + off, "RSD PTR ", 8) == 0) {
			return 0xe0000 + off;
		}
	}
	return 0;
}

static int write_pvh_info(struct guest_mem *mem, uint64_t initrd_addr,
			  const struct initrd_src *initrd)
{
	struct e820_entry e[E820_MAX_ENTRIES];
	struct hvm_memmap_entry mm[E820_MAX_ENTRIES];
	unsigned n = e820_build(mem, e, E820_MAX_ENTRIES);
	struct hvm_start_info si = {
		.magic = PVH_MAGIC,
		.version = 1,
		.cmdline_paddr = BOOT_CMDLINE_ADDR,
		.rsdp_paddr = find_rsdp(mem),
		.memmap_paddr = PVH_MEMMAP_ADDR,
		.memmap_entries = n,
	};

	for (unsigned i = 0; i < n; i++) {
		mm[i] = (struct hvm_memmap_entry){
			.addr = e[i].addr, .size = e[i].size, .type = e[i].type};
	}
	if (initrd) {
		struct hvm_modlist_entry mod = {.paddr = initrd_addr, .size = initrd->size};

		si.nr_modules = 1;
		si.modlist_paddr = PVH_MODLIST_ADDR;
		if (guest_mem_write(mem, PVH_MODLIST_ADDR, &mod, sizeof(mod)) < 0) {
			return -EFAULT;
		}
	}
	if (guest_mem_write(mem, PVH_MEMMAP_ADDR, mm, n * sizeof(mm[0])) < 0 ||
	    guest_mem_write(mem, BOOT_PVH_INFO_ADDR, &si, sizeof(si)) < 0) {
		return -EFAULT;
	}
	return 0;
}

/* ELF64: vmlinux or a test guest. PVH note first, else the ELF entry in long mode. */
static int load_elf(struct guest_mem *mem, const char *name, const uint8_t *img, size_t size,
		    const struct initrd_src *initrd, const char *cmdline, struct boot_entry *ret,
		    struct error **errp)
{
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)img;
	uint64_t low = guest_mem_low_size(mem);
	uint64_t kernel_end = 0, entry, pvh, initrd_addr = 0;
	bool entry_ok = false;
	char buf[32];
	int r;

	if (size < sizeof(*eh) || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
	    eh->e_ident[EI_DATA] != ELFDATA2LSB || eh->e_machine != EM_X86_64 ||
	    (eh->e_type != ET_EXEC && eh->e_type != ET_DYN)) {
		return error_set(errp, ENOEXEC,
				 "%s: not a kernel (not a little-endian x86-64 ELF "
				 "executable)",
				 name);
	}
	if (eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phnum == 0 || eh->e_phoff > size ||
	    (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr) > size - eh->e_phoff) {
		return error_set(errp, ENOEXEC, "%s: not a kernel (bad ELF program headers)", name);
	}
	entry = eh->e_entry;
	for (unsigned i = 0; i < eh->e_phnum; i++) {
		const Elf64_Phdr *ph = (const Elf64_Phdr *)(img + eh->e_phoff + i * sizeof(*ph));
		uint8_t *dst;

		if (ph->p_type != PT_LOAD || ph->p_memsz == 0) {
			continue;
		}
		if (ph->p_offset > size || ph->p_filesz > size - ph->p_offset ||
		    ph->p_filesz > ph->p_memsz) {
			return error_set(errp, ENOEXEC, "%s: ELF segment %u lies outside the file",
					 name, i);
		}
		if (ph->p_paddr < BOOT_LOADER_END) {
			return error_set(errp, ENOEXEC,
					 "%s: ELF segment %u at 0x%" PRIx64
					 " overlaps the loader's area below 0x%llx",
					 name, i, (uint64_t)ph->p_paddr, BOOT_LOADER_END);
		}
		dst = guest_mem_ptr(mem, ph->p_paddr, ph->p_memsz);
		if (!dst || ph->p_paddr + ph->p_memsz > low) {
			return error_set(errp, E2BIG,
					 "%s: ELF segment %u (0x%" PRIx64 "+0x%" PRIx64
					 ") is too large for %s of RAM below 4G",
					 name, i, (uint64_t)ph->p_paddr, (uint64_t)ph->p_memsz,
					 format_size(low, buf, sizeof(buf)));
		}
		memcpy(dst, img + ph->p_offset, ph->p_filesz);
		memset(dst + ph->p_filesz, 0, ph->p_memsz - ph->p_filesz);
		kernel_end = MAX(kernel_end, ph->p_paddr + ph->p_memsz);
		/* The entry may be given as a virtual address (vmlinux). */
		if (entry >= ph->p_vaddr && entry - ph->p_vaddr < ph->p_memsz) {
			entry = entry - ph->p_vaddr + ph->p_paddr;
			entry_ok = true;
		} else if (entry >= ph->p_paddr && entry - ph->p_paddr < ph->p_memsz) {
			entry_ok = true;
		}
	}
	if (kernel_end == 0) {
		return error_set(errp, ENOEXEC, "%s: not a kernel (no loadable ELF segment)", name);
	}
	pvh = find_pvh_entry(img, size, eh);
	if (!pvh && !entry_ok) {
		return error_set(errp, ENOEXEC,
				 "%s: the ELF entry point 0x%" PRIx64 " is not in a loaded segment",
				 name, (uint64_t)eh->e_entry);
	}
	r = write_cmdline(mem, name, cmdline, BOOT_CMDLINE_MAX, errp);
	if (r < 0) {
		return r;
	}
	if (initrd) {
		r = place_initrd(mem, name, initrd, kernel_end, 0x100000000ull, &initrd_addr, errp);
		if (r < 0) {
			return r;
		}
	}
	if (pvh) {
		if (write_pvh_info(mem, initrd_addr, initrd) < 0) {
			return error_set(errp, EFAULT, "cannot write the PVH start info");
		}
		*ret = (struct boot_entry){
			.mode = BOOT_MODE_PVH32,
			.rip = pvh,
			.rbx = BOOT_PVH_INFO_ADDR,
			.rsp = 0,
			.kind = "ELF (PVH entry)",
		};
		return 0;
	} else {
		uint8_t *bp = guest_mem_ptr(mem, BOOT_PARAMS_ADDR, BP_SIZE);

		/* A minimal boot_params for a vmlinux entered at startup_64. */
		memset(bp, 0, BP_SIZE);
		put16(bp + BP_BOOT_FLAG, 0xaa55);
		put32(bp + BP_HEADER, HDRS_MAGIC);
		put16(bp + BP_VERSION, 0x20f);
		bp[BP_TYPE_OF_LOADER] = 0xff;
		bp[BP_LOADFLAGS] = LOADED_HIGH | CAN_USE_HEAP;
		put32(bp + BP_KERNEL_ALIGNMENT, 0x1000000);
		put32(bp + BP_CMD_LINE_PTR, (uint32_t)BOOT_CMDLINE_ADDR);
		put32(bp + BP_CMDLINE_SIZE, (uint32_t)BOOT_CMDLINE_MAX - 1);
		if (initrd) {
			put32(bp + BP_RAMDISK_IMAGE, (uint32_t)initrd_addr);
			put32(bp + BP_RAMDISK_SIZE, (uint32_t)initrd->size);
		}
		fill_e820(mem, bp);
		*ret = (struct boot_entry){
			.mode = BOOT_MODE_LONG64,
			.rip = entry,
			.rsi = BOOT_PARAMS_ADDR,
			.rsp = BOOT_STACK_TOP,
			.kind = "ELF (64-bit entry)",
		};
		return 0;
	}
}

static int load(struct guest_mem *mem, const char *name, const uint8_t *img, size_t size,
		const struct initrd_src *initrd, const char *cmdline, struct boot_entry *ret,
		struct error **errp)
{
	if (write_page_tables(mem) < 0) {
		return error_set(errp, EFAULT, "guest RAM too small for the boot page tables");
	}
	if (size >= 4 && memcmp(img, ELFMAG, SELFMAG) == 0) {
		return load_elf(mem, name, img, size, initrd, cmdline, ret, errp);
	}
	if (size >= BP_HEADER + 4 + 1024 && get32(img + BP_HEADER) == HDRS_MAGIC &&
	    get16(img + BP_BOOT_FLAG) == 0xaa55) {
		return load_bzimage(mem, name, img, size, initrd, cmdline, ret, errp);
	}
	return error_set(errp, ENOEXEC,
			 "%s: not a kernel (neither an ELF64 image nor a bzImage with the "
			 "HdrS signature)",
			 name);
}

int boot_load_images(struct guest_mem *mem, const char *kernel_name, const uint8_t *kernel,
		     size_t kernel_size, const char *initrd_name, const uint8_t *initrd,
		     size_t initrd_size, const char *cmdline, struct boot_entry *ret,
		     struct error **errp)
{
	struct initrd_src src = {.name = initrd_name, .buf = initrd, .fd = -1, .size = initrd_size};

	return load(mem, kernel_name, kernel, kernel_size, initrd ? &src : NULL, cmdline, ret,
		    errp);
}

static int read_file(const char *path, uint64_t max, uint8_t **ret, size_t *ret_size,
		     struct error **errp)
{
	_cleanup_close_ int fd = -1;
	_cleanup_free_ uint8_t *buf = NULL;
	struct stat st;
	size_t done = 0;
	char b[32];

	fd = pathpol_open_err("kernel", path, O_RDONLY, 0, errp);
	if (fd < 0) {
		return fd;
	}
	if (fstat(fd, &st) < 0) {
		return error_set_errno(errp, errno, "cannot open kernel %s", path);
	}
	if (!S_ISREG(st.st_mode)) {
		return error_set(errp, EINVAL, "kernel %s is not a regular file", path);
	}
	if ((uint64_t)st.st_size > max) {
		return error_set(errp, E2BIG,
				 "kernel %s (%lld bytes) is too large for %s of RAM below 4G", path,
				 (long long)st.st_size, format_size(max, b, sizeof(b)));
	}
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!buf) {
		return error_set(errp, ENOMEM, "out of memory reading kernel %s", path);
	}
	while (done < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + done, (size_t)st.st_size - done);

		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			return error_set_errno(errp, n < 0 ? errno : EIO, "cannot read kernel %s",
					       path);
		}
		done += (size_t)n;
	}
	*ret = TAKE_PTR(buf);
	*ret_size = done;
	return 0;
}

int boot_load(struct guest_mem *mem, const struct vm_config *cfg, struct boot_entry *ret,
	      struct error **errp)
{
	_cleanup_free_ uint8_t *img = NULL;
	_cleanup_close_ int initrd_fd = -1;
	struct initrd_src src = {.fd = -1};
	size_t size = 0;
	int r;

	if (cfg->boot.firmware) {
		/* The firmware device maps the image; the BSP starts at the reset vector. */
		*ret = (struct boot_entry){.mode = BOOT_MODE_RESET, .kind = "firmware"};
		return 0;
	}
	if (!cfg->boot.kernel) {
		return error_set(errp, EINVAL, "nothing to boot: no kernel and no firmware");
	}
	r = read_file(cfg->boot.kernel, guest_mem_low_size(mem), &img, &size, errp);
	if (r < 0) {
		return r;
	}
	if (cfg->boot.initrd) {
		struct stat st;

		initrd_fd = pathpol_open_err("initrd", cfg->boot.initrd, O_RDONLY, 0, errp);
		if (initrd_fd < 0) {
			return initrd_fd;
		}
		if (fstat(initrd_fd, &st) < 0) {
			return error_set_errno(errp, errno, "cannot open initrd %s",
					       cfg->boot.initrd);
		}
		if (!S_ISREG(st.st_mode)) {
			return error_set(errp, EINVAL, "initrd %s is not a regular file",
					 cfg->boot.initrd);
		}
		src.name = cfg->boot.initrd;
		src.fd = initrd_fd;
		src.size = (uint64_t)st.st_size;
	}
	return load(mem, cfg->boot.kernel, img, size, cfg->boot.initrd ? &src : NULL,
		    cfg->boot.cmdline, ret, errp);
}
