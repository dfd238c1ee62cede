/* Unit tests for hw/core/boot.c and hw/core/e820.c on crafted kernel images. */
#include "config.h"

#include <check.h>
#include <elf.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hw/core/boot.h"
#include "hw/core/e820.h"
#include "hw/core/memory.h"

#define MEM (64ull << 20)

static struct guest_mem *mem;

static void setup(void)
{
	ck_assert_int_eq(guest_mem_new(MEM, "anonymous", &mem, NULL), 0);
}

static void teardown(void)
{
	guest_mem_free(mem);
	mem = NULL;
}

static void put16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, 2);
}

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static void put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

static uint32_t rd32(uint64_t gpa)
{
	uint32_t v;

	ck_assert_int_eq(guest_mem_read(mem, gpa, &v, 4), 0);
	return v;
}

/* A bzImage: 1 setup sector + boot sector, then @pm_size bytes of "kernel". */
static uint8_t *make_bzimage(size_t pm_size, size_t *ret_size)
{
	size_t size = 2 * 512 + pm_size;
	uint8_t *img = calloc(1, size);

	img[0x1f1] = 1;
	put16(img + 0x1fe, 0xaa55);
	img[0x200] = 0xeb;
	img[0x201] = 0x6a; /* header up to 0x26c */
	put32(img + 0x202, 0x53726448);
	put16(img + 0x206, 0x20f);
	img[0x211] = 0x01;
	put32(img + 0x22c, 0x7fffffff);
	put32(img + 0x230, 0x200000);
	img[0x234] = 1;
	put16(img + 0x236, 0x1);
	put32(img + 0x238, 2047);
	put64(img + 0x258, 0x1000000);
	put32(img + 0x260, 0x400000);
	for (size_t i = 0; i < pm_size; i++) {
		img[1024 + i] = (uint8_t)(i * 7);
	}
	*ret_size = size;
	return img;
}

START_TEST(bzimage)
{
	struct boot_entry e;
	size_t size;
	uint8_t *img = make_bzimage(8192, &size);
	uint8_t initrd[10000];
	struct error *err = NULL;
	uint8_t *bp;
	uint32_t rd_addr;
	struct e820_entry *map;

	memset(initrd, 0x5a, sizeof(initrd));
	if (boot_load_images(mem, "vmlinuz", img, size, "initrd", initrd, sizeof(initrd),
			     "console=ttyS0 quiet", &e, &err) < 0) {
		ck_abort_msg("%s", err->msg);
	}
	ck_assert_int_eq(e.mode, BOOT_MODE_LONG64);
	ck_assert_uint_eq(e.rip, 0x1000000 + 0x200);
	ck_assert_uint_eq(e.rsi, BOOT_PARAMS_ADDR);
	/* The protected-mode kernel at pref_address. */
	ck_assert_int_eq(memcmp(guest_mem_ptr(mem, 0x1000000, 8192), img + 1024, 8192), 0);
	bp = guest_mem_ptr(mem, BOOT_PARAMS_ADDR, 4096);
	ck_assert_uint_eq(bp[0x210], 0xff);
	ck_assert_uint_eq(bp[0x211] & 0x81, 0x81);
	ck_assert_uint_eq(rd32(BOOT_PARAMS_ADDR + 0x202), 0x53726448);
	ck_assert_uint_eq(rd32(BOOT_PARAMS_ADDR + 0x214), 0x1000000);
	ck_assert_uint_eq(rd32(BOOT_PARAMS_ADDR + 0x228), BOOT_CMDLINE_ADDR);
	ck_assert_str_eq((char *)guest_mem_ptr(mem, BOOT_CMDLINE_ADDR, 20), "console=ttyS0 quiet");
	/* initrd: page-aligned, at the top of RAM, above the kernel's init_size. */
	rd_addr = rd32(BOOT_PARAMS_ADDR + 0x218);
	ck_assert_uint_eq(rd32(BOOT_PARAMS_ADDR + 0x21c), sizeof(initrd));
	ck_assert_uint_eq(rd_addr % 4096, 0);
	ck_assert_uint_ge(rd_addr, 0x1000000 + 0x400000);
	ck_assert_uint_le(rd_addr + sizeof(initrd), MEM);
	ck_assert_uint_gt(rd_addr + sizeof(initrd) + 4096, MEM);
	ck_assert_int_eq(
		memcmp(guest_mem_ptr(mem, rd_addr, sizeof(initrd)), initrd, sizeof(initrd)), 0);
	/* e820: RAM below the EBDA, reserved BIOS area, RAM from 1 MiB to the top. */
	ck_assert_uint_eq(bp[0x1e8], 4);
	map = (struct e820_entry *)(bp + 0x2d0);
	ck_assert_uint_eq(map[0].addr, 0);
	ck_assert_uint_eq(map[0].size, 0x9fc00);
	ck_assert_uint_eq(map[0].type, E820_RAM);
	ck_assert_uint_eq(map[1].type, E820_RESERVED);
	ck_assert_uint_eq(map[2].addr, 0xe0000);
	ck_assert_uint_eq(map[3].addr, 0x100000);
	ck_assert_uint_eq(map[3].addr + map[3].size, MEM);
	/* Page tables: identity map with 2 MiB pages. */
	ck_assert_uint_eq(rd32(BOOT_PML4_ADDR) & ~0xfffu, BOOT_PDPT_ADDR);
	ck_assert_uint_eq(rd32(BOOT_PD_ADDR + 8 * 5), (5u << 21) | 0x83);
	free(img);
}
END_TEST

START_TEST(bzimage_low_ram_and_limits)
{
	struct boot_entry e;
	size_t size;
	uint8_t *img = make_bzimage(4096, &size);
	struct error *err = NULL;
	char cmdline[3000];

	/* init_size too big for pref_address: falls back to the lowest aligned address. */
	put32(img + 0x260, 60u << 20);
	ck_assert_int_eq(boot_load_images(mem, "k", img, size, NULL, NULL, 0, NULL, &e, NULL), 0);
	ck_assert_uint_eq(e.rip, 0x200000 + 0x200);
	/* Does not fit at all. */
	put32(img + 0x260, 70u << 20);
	ck_assert_int_eq(
		boot_load_images(mem, "/boot/vmlinuz", img, size, NULL, NULL, 0, NULL, &e, &err),
		-E2BIG);
	ck_assert_ptr_nonnull(strstr(err->msg, "/boot/vmlinuz"));
	ck_assert_ptr_nonnull(strstr(err->msg, "too large for 64M of RAM"));
	error_free(err);
	err = NULL;
	put32(img + 0x260, 0x400000);
	/* Command line longer than cmdline_size. */
	memset(cmdline, 'x', sizeof(cmdline) - 1);
	cmdline[sizeof(cmdline) - 1] = '\0';
	ck_assert_int_eq(boot_load_images(mem, "k", img, size, NULL, NULL, 0, cmdline, &e, &err),
			 -E2BIG);
	ck_assert_ptr_nonnull(strstr(err->msg, "at most 2047"));
	error_free(err);
	err = NULL;
	/* initrd_addr_max below the kernel's end: the initrd cannot fit. */
	put32(img + 0x22c, 0x1000000);
	ck_assert_int_eq(boot_load_images(mem, "k", img, size, "/boot/initrd.img",
					  (uint8_t *)cmdline, 100, NULL, &e, &err),
			 -E2BIG);
	ck_assert_ptr_nonnull(strstr(err->msg, "initrd /boot/initrd.img (100 bytes) does not fit"));
	error_free(err);
	err = NULL;
	/* Not a non-relocatable kernel in the wrong place: loaded at pref_address. */
	put32(img + 0x22c, 0x7fffffff);
	img[0x234] = 0;
	ck_assert_int_eq(boot_load_images(mem, "k", img, size, NULL, NULL, 0, NULL, &e, NULL), 0);
	ck_assert_uint_eq(e.rip, 0x1000200);
	free(img);
}
END_TEST

START_TEST(bzimage_rejects)
{
	struct boot_entry e;
	size_t size;
	uint8_t *img = make_bzimage(4096, &size);
	struct error *err = NULL;
	uint8_t junk[4096] = "this is not a kernel";

	put16(img + 0x206, 0x205);
	ck_assert_int_eq(boot_load_images(mem, "old", img, size, NULL, NULL, 0, NULL, &e, &err),
			 -ENOTSUP);
	ck_assert_ptr_nonnull(strstr(err->msg, "2.05 is too old"));
	error_free(err);
	err = NULL;
	put16(img + 0x206, 0x20f);
	put16(img + 0x236, 0);
	ck_assert_int_eq(boot_load_images(mem, "k32", img, size, NULL, NULL, 0, NULL, &e, &err),
			 -ENOTSUP);
	ck_assert_ptr_nonnull(strstr(err->msg, "not a 64-bit kernel"));
	error_free(err);
	err = NULL;
	ck_assert_int_eq(boot_load_images(mem, "/etc/passwd", junk, sizeof(junk), NULL, NULL, 0,
					  NULL, &e, &err),
			 -ENOEXEC);
	ck_assert_ptr_nonnull(strstr(err->msg, "/etc/passwd: not a kernel"));
	error_free(err);
	err = NULL;
	/* Setup sectors beyond the end of the file. */
	put16(img + 0x236, 1);
	img[0x1f1] = 200;
	ck_assert_int_eq(boot_load_images(mem, "k", img, size, NULL, NULL, 0, NULL, &e, &err),
			 -EINVAL);
	error_free(err);
	free(img);
}
END_TEST

/* ELF64 with one PT_LOAD at @paddr, optionally a PVH note. */
static uint8_t *make_elf(uint64_t paddr, uint64_t vaddr, uint64_t entry, bool pvh, size_t *ret_size)
{
	size_t size = 0x2000;
	uint8_t *img = calloc(1, size);
	Elf64_Ehdr *eh = (Elf64_Ehdr *)img;
	Elf64_Phdr *ph = (Elf64_Phdr *)(img + sizeof(*eh));

	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_type = ET_EXEC;
	eh->e_machine = EM_X86_64;
	eh->e_entry = entry;
	eh->e_phoff = sizeof(*eh);
	eh->e_phentsize = sizeof(*ph);
	eh->e_phnum = pvh ? 2 : 1;
	ph[0] = (Elf64_Phdr){.p_type = PT_LOAD,
			     .p_offset = 0x1000,
			     .p_paddr = paddr,
			     .p_vaddr = vaddr,
			     .p_filesz = 0x800,
			     .p_memsz = 0x3000};
	memset(img + 0x1000, 0xc3, 0x800);
	if (pvh) {
		uint8_t *n = img + 0x400;

		ph[1] = (Elf64_Phdr){.p_type = PT_NOTE, .p_offset = 0x400, .p_filesz = 20};
		put32(n, 4);
		put32(n + 4, 4);
		put32(n + 8, 18);
		memcpy(n + 12, "Xen", 4);
		put32(n + 16, (uint32_t)paddr + 0x10);
	}
	*ret_size = size;
	return img;
}

START_TEST(elf_entry)
{
	struct boot_entry e;
	size_t size;
	uint8_t *img = make_elf(0x100000, 0x100000, 0x100040, false, &size);
	uint8_t *p;

	/* Dirty the bss first: the loader must clear it. */
	memset(guest_mem_ptr(mem, 0x100000, 0x3000), 0xee, 0x3000);
	ck_assert_int_eq(
		boot_load_images(mem, "guest.elf", img, size, NULL, NULL, 0, "x=1", &e, NULL), 0);
	ck_assert_int_eq(e.mode, BOOT_MODE_LONG64);
	ck_assert_uint_eq(e.rip, 0x100040);
	p = guest_mem_ptr(mem, 0x100000, 0x3000);
	ck_assert_uint_eq(p[0], 0xc3);
	ck_assert_uint_eq(p[0x7ff], 0xc3);
	ck_assert_uint_eq(p[0x800], 0);
	ck_assert_uint_eq(p[0x2fff], 0);
	/* A minimal boot_params for a vmlinux. */
	ck_assert_uint_eq(rd32(BOOT_PARAMS_ADDR + 0x202), 0x53726448);
	ck_assert_uint_eq(rd32(BOOT_PARAMS_ADDR + 0x228), BOOT_CMDLINE_ADDR);
	free(img);

	/* vmlinux style: virtual entry, physical load address. */
	img = make_elf(0x1000000, 0xffffffff81000000ull, 0xffffffff81000100ull, false, &size);
	ck_assert_int_eq(boot_load_images(mem, "vmlinux", img, size, NULL, NULL, 0, NULL, &e, NULL),
			 0);
	ck_assert_uint_eq(e.rip, 0x1000100);
	free(img);
}
END_TEST

START_TEST(elf_pvh)
{
	struct boot_entry e;
	size_t size;
	uint8_t *img = make_elf(0x200000, 0x200000, 0x200000, true, &size);
	uint8_t initrd[5000] = {1, 2, 3};
	uint32_t magic, nmods, n;
	uint64_t modlist, memmap, mod_addr;

	ck_assert_int_eq(boot_load_images(mem, "pvh.elf", img, size, "rd", initrd, sizeof(initrd),
					  "console=hvc0", &e, NULL),
			 0);
	ck_assert_int_eq(e.mode, BOOT_MODE_PVH32);
	ck_assert_uint_eq(e.rip, 0x200010);
	ck_assert_uint_eq(e.rbx, BOOT_PVH_INFO_ADDR);
	magic = rd32(BOOT_PVH_INFO_ADDR);
	ck_assert_uint_eq(magic, 0x336ec578);
	ck_assert_uint_eq(rd32(BOOT_PVH_INFO_ADDR + 4), 1);
	nmods = rd32(BOOT_PVH_INFO_ADDR + 12);
	ck_assert_uint_eq(nmods, 1);
	ck_assert_int_eq(guest_mem_read(mem, BOOT_PVH_INFO_ADDR + 16, &modlist, 8), 0);
	ck_assert_int_eq(guest_mem_read(mem, modlist, &mod_addr, 8), 0);
	ck_assert_uint_eq(*(uint8_t *)guest_mem_ptr(mem, mod_addr + 2, 1), 3);
	ck_assert_int_eq(guest_mem_read(mem, BOOT_PVH_INFO_ADDR + 40, &memmap, 8), 0);
	n = rd32(BOOT_PVH_INFO_ADDR + 48);
	ck_assert_uint_eq(n, 4);
	ck_assert_uint_eq(rd32(memmap + 3 * 24 + 16), E820_RAM);
	ck_assert_str_eq((char *)guest_mem_ptr(mem, BOOT_CMDLINE_ADDR, 13), "console=hvc0");
	free(img);
}
END_TEST

START_TEST(elf_rejects)
{
	struct boot_entry e;
	struct error *err = NULL;
	size_t size;
	uint8_t *img;

	/* Overlaps the loader's page tables. */
	img = make_elf(0x1000, 0x1000, 0x1000, false, &size);
	ck_assert_int_eq(boot_load_images(mem, "low.elf", img, size, NULL, NULL, 0, NULL, &e, &err),
			 -ENOEXEC);
	ck_assert_ptr_nonnull(strstr(err->msg, "loader's area"));
	error_free(err);
	err = NULL;
	free(img);
	/* Beyond RAM. */
	img = make_elf(MEM - 0x1000, MEM - 0x1000, MEM - 0x1000, false, &size);
	ck_assert_int_eq(boot_load_images(mem, "big.elf", img, size, NULL, NULL, 0, NULL, &e, &err),
			 -E2BIG);
	ck_assert_ptr_nonnull(strstr(err->msg, "big.elf"));
	ck_assert_ptr_nonnull(strstr(err->msg, "too large for 64M"));
	error_free(err);
	err = NULL;
	free(img);
	/* Segment data beyond the file. */
	img = make_elf(0x100000, 0x100000, 0x100000, false, &size);
	((Elf64_Phdr *)(img + sizeof(Elf64_Ehdr)))->p_filesz = 0x100000;
	ck_assert_int_eq(
		boot_load_images(mem, "trunc.elf", img, size, NULL, NULL, 0, NULL, &e, NULL),
		-ENOEXEC);
	/* Entry outside every segment. */
	((Elf64_Phdr *)(img + sizeof(Elf64_Ehdr)))->p_filesz = 0x800;
	((Elf64_Ehdr *)img)->e_entry = 0x900000;
	ck_assert_int_eq(
		boot_load_images(mem, "entry.elf", img, size, NULL, NULL, 0, NULL, &e, NULL),
		-ENOEXEC);
	/* Program headers beyond the file; 32-bit ELF. */
	((Elf64_Ehdr *)img)->e_entry = 0x100000;
	((Elf64_Ehdr *)img)->e_phnum = 60000;
	ck_assert_int_eq(boot_load_images(mem, "ph.elf", img, size, NULL, NULL, 0, NULL, &e, NULL),
			 -ENOEXEC);
	((Elf64_Ehdr *)img)->e_phnum = 1;
	img[EI_CLASS] = ELFCLASS32;
	ck_assert_int_eq(boot_load_images(mem, "elf32", img, size, NULL, NULL, 0, NULL, &e, NULL),
			 -ENOEXEC);
	free(img);
}
END_TEST

START_TEST(memory_layout)
{
	struct guest_mem *big;
	struct e820_entry map[E820_MAX_ENTRIES];
	unsigned n;
	uint8_t b = 1;

	/* 4 GiB: 3 GiB below the hole, 1 GiB above 4 GiB (nothing is touched). */
	ck_assert_int_eq(guest_mem_new(4ull << 30, "anonymous", &big, NULL), 0);
	ck_assert_uint_eq(guest_mem_region_count(big), 2);
	ck_assert_uint_eq(guest_mem_low_size(big), GUEST_MEM_HOLE_START);
	ck_assert_uint_eq(guest_mem_region(big, 1)->gpa, GUEST_MEM_HIGH_START);
	ck_assert_uint_eq(guest_mem_region(big, 1)->size, 1ull << 30);
	ck_assert_uint_eq(guest_mem_size(big), 4ull << 30);
	ck_assert_ptr_null(guest_mem_ptr(big, GUEST_MEM_HOLE_START, 1));
	ck_assert_ptr_null(guest_mem_ptr(big, GUEST_MEM_HOLE_START - 1, 2)); /* spans the hole */
	ck_assert_ptr_nonnull(guest_mem_ptr(big, GUEST_MEM_HOLE_START - 1, 1));
	ck_assert_ptr_nonnull(guest_mem_ptr(big, GUEST_MEM_HIGH_START, 1));
	ck_assert_ptr_nonnull(guest_mem_ptr(big, (5ull << 30) - 1, 1));
	ck_assert_ptr_null(guest_mem_ptr(big, 5ull << 30, 1));
	ck_assert_ptr_null(guest_mem_ptr(big, UINT64_MAX, 2)); /* wraps */
	ck_assert_int_eq(guest_mem_write(big, (5ull << 30) - 1, &b, 1), 0);
	ck_assert_int_eq(guest_mem_write(big, 5ull << 30, &b, 1), -EFAULT);
	n = e820_build(big, map, E820_MAX_ENTRIES);
	ck_assert_uint_eq(n, 5);
	ck_assert_uint_eq(map[3].addr + map[3].size, GUEST_MEM_HOLE_START);
	ck_assert_uint_eq(map[4].addr, GUEST_MEM_HIGH_START);
	guest_mem_free(big);

	/* memfd backing; bad sizes and backends. */
	ck_assert_int_eq(guest_mem_new(16ull << 20, "memfd", &big, NULL), 0);
	ck_assert_int_ge(guest_mem_region(big, 0)->fd, 0);
	guest_mem_free(big);
	ck_assert_int_eq(guest_mem_new(12345, "anonymous", &big, NULL), -EINVAL);
	ck_assert_int_eq(guest_mem_new((16ull << 20) + 4096, "hugepages", &big, NULL), -EINVAL);
	/* Without free huge pages: an error now, not a SIGBUS on first touch. */
	{
		FILE *f = fopen("/proc/sys/vm/nr_hugepages", "r");
		long pages = -1;

		if (f && fscanf(f, "%ld", &pages) == 1 && pages == 0) {
			ck_assert_int_lt(guest_mem_new(16ull << 20, "hugepages", &big, NULL), 0);
		}
		if (f) {
			fclose(f);
		}
	}
	ck_assert_int_eq(guest_mem_new(16ull << 20, "floppy", &big, NULL), -EINVAL);
}
END_TEST

/* The permissions of the mapping holding @addr in /proc/self/maps ("" if none). */
static void prot_at(const void *addr, char perms[5])
{
	FILE *f = fopen("/proc/self/maps", "r");
	unsigned long lo, hi;
	char p[5];

	perms[0] = 0;
	ck_assert_ptr_nonnull(f);
	while (fscanf(f, "%lx-%lx %4s%*[^\n]", &lo, &hi, p) == 3) {
		if ((uintptr_t)addr >= lo && (uintptr_t)addr < hi) {
			memcpy(perms, p, 5);
			break;
		}
	}
	fclose(f);
}

/*
 * Each RAM region (both sides of the PCI hole, every backend) starts on a
 * 2 MiB boundary between two inaccessible guard areas: an access past
 * either end faults instead of reaching another VM's RAM.
 */
START_TEST(ram_regions_guarded)
{
	static const char *const backends[] = {"anonymous", "memfd"};

	for (unsigned b = 0; b < 2; b++) {
		struct guest_mem *big;
		struct guest_mem *other;
		char perms[5];

		ck_assert_int_eq(
			guest_mem_new(GUEST_MEM_HOLE_START + (6ull << 20), backends[b], &big, NULL),
			0);
		/* a second VM's RAM right after: never adjacent, never merged */
		ck_assert_int_eq(guest_mem_new(6ull << 20, backends[b], &other, NULL), 0);
		for (unsigned i = 0; i < 2; i++) {
			const struct guest_mem_region *r = guest_mem_region(big, i);

			ck_assert_uint_eq((uintptr_t)r->host % (2u << 20), 0);
			prot_at(r->host, perms);
			ck_assert_str_eq(perms[0] == 'r' && perms[1] == 'w' ? "rw" : perms, "rw");
			prot_at(r->host - 1, perms);
			ck_assert_str_eq(perms, "---p");
			prot_at(r->host - (2u << 20), perms);
			ck_assert_str_eq(perms, "---p");
			prot_at(r->host + r->size, perms);
			ck_assert_str_eq(perms, "---p");
			prot_at(r->host + r->size + (2u << 20) - 1, perms);
			ck_assert_str_eq(perms, "---p");
		}
		guest_mem_free(other);
		guest_mem_free(big);
	}
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("boot");
	TCase *tc = tcase_create("boot");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, bzimage);
	tcase_add_test(tc, bzimage_low_ram_and_limits);
	tcase_add_test(tc, bzimage_rejects);
	tcase_add_test(tc, elf_entry);
	tcase_add_test(tc, elf_pvh);
	tcase_add_test(tc, elf_rejects);
	tcase_add_test(tc, memory_layout);
	tcase_add_test(tc, ram_regions_guarded);
	suite_add_tcase(s, tc);
	return s;
}

#include "check-main.h"
