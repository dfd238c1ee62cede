/*
 * Unit tests for hw/core/pagewalk.c: page tables of each paging mode built
 * in guest RAM, translated address by address and walked whole.
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "hw/core/memory.h"
#include "hw/core/pagewalk.h"
#define MEM (64ull << 20)
#define P 1ull
#define RW 2ull
#define US 4ull
#define PS (1ull << 7)
#define CR0_PG (1ull << 31)
#define CR4_PSE (1ull << 4)
#define CR4_PAE (1ull << 5)
#define CR4_LA57 (1ull << 12)
#define EFER_LMA (1ull << 10)

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

static void put64(uint64_t table, unsigned i, uint64_t e)
{
	ck_assert_int_eq(guest_mem_write(mem, table + 8ull * i, &e, 8), 0);
}

static void put32(uint64_t table, unsigned i, uint32_t e)
{
	ck_assert_int_eq(guest_mem_write(mem, table + 4ull * i, &e, 4), 0);
}

/* @la translates to @gpa with @len bytes left in its page. */
static void maps(const struct vm_paging *p, uint64_t la, uint64_t gpa, uint64_t len)
{
	uint64_t g = 0, l = 0;

	ck_assert_int_eq(guest_translate(mem, p, la, &g, &l), 0);
	ck_assert_uint_eq(g, gpa);
	ck_assert_uint_eq(l, len);
}

static void unmapped(const struct vm_paging *p, uint64_t la)
{
	uint64_t g, l;

	ck_assert_int_eq(guest_translate(mem, p, la, &g, &l), -EFAULT);
}

struct page {
	uint64_t la, gpa, len;
	unsigned prot;
};

struct seen {
	struct page v[16];
	unsigned n;
};

static int record(void *opaque, uint64_t la, uint64_t gpa, uint64_t len, uint64_t pte,
		  unsigned prot)
{
	struct seen *s = opaque;

	ck_assert_uint_lt(s->n, 16);
	s->v[s->n++] = (struct page){la, gpa, len, prot};
	return 0;
}

static void walks(const struct vm_paging *p, const struct page *want, unsigned n)
{
	struct seen s = {0};

	ck_assert_int_eq(guest_walk(mem, p, record, &s), 0);
	ck_assert_uint_eq(s.n, n);
	for (unsigned i = 0; i < n; i++) {
		ck_assert_uint_eq(s.v[i].la, want[i].la);
		ck_assert_uint_eq(s.v[i].gpa, want[i].gpa);
		ck_assert_uint_eq(s.v[i].len, want[i].len);
		ck_assert_uint_eq(s.v[i].prot, want[i].prot);
	}
}

/* 4-level long mode: 4 KiB, 2 MiB and 1 GiB pages, the upper half. */
START_TEST(test_long4)
{
	const uint64_t pml4 = 0x10000, pdpt = 0x11000, pd = 0x12000, pt = 0x13000, hi = 0x14000;
	struct vm_paging p = {CR0_PG | 1, pml4 | 0x18, CR4_PAE, EFER_LMA | (1 << 8)};
	static const struct page want[] = {
		{0x1000, 0x200000, 4096},
		{0x2000, 0x201000, 4096},
		{0x200000, 0x400000, 2 << 20, VM_PAGE_USER | VM_PAGE_WRITE},
		{0x40000000, 0x40000000, 1 << 30},
		{0xffffffff80001000, 0x200000, 4096},
		{0xffffffff80002000, 0x201000, 4096},
		{0xffffffff80200000, 0x400000, 2 << 20},
	};

	/* user and write where every level above grants them */
	put64(pml4, 0, pdpt | P | RW | US);
	put64(pml4, 511, hi | P);
	put64(pdpt, 0, pd | P | RW | US);
	put64(pdpt, 1, 0x40000000 | PS | P);
	put64(hi, 510, pd | P);
	put64(pd, 0, pt | P);
	put64(pd, 1, 0x400000 | PS | P | RW | US);
	put64(pt, 1, 0x200000 | P);
	put64(pt, 2, 0x201000 | P | (1ull << 63)); /* NX: not a permission check */
	maps(&p, 0x1010, 0x200010, 0xff0);
	maps(&p, 0x2fff, 0x201fff, 1);
	unmapped(&p, 0x3000);
	maps(&p, 0x200123, 0x400123, (2 << 20) - 0x123);
	maps(&p, 0x40000005, 0x40000005, (1 << 30) - 5);
	maps(&p, 0xffffffff80001008, 0x200008, 4096 - 8);
	unmapped(&p, 0xffffffff00000000);
	unmapped(&p, 0x0000800000001000); /* not canonical */
	unmapped(&p, 0x80000000);
	walks(&p, want, sizeof(want) / sizeof(want[0]));
	/* a 1 GiB entry at the top level is a fault, not a page */
	put64(pml4, 1, 0x40000000 | PS | P);
	unmapped(&p, 0x8000000000);
	walks(&p, want, sizeof(want) / sizeof(want[0]));
	/* a table outside RAM: not present */
	put64(pdpt, 2, 0x100000000000 | P);
	unmapped(&p, 0x80000000);
	walks(&p, want, sizeof(want) / sizeof(want[0]));
}
END_TEST

/* 5-level: the top index comes from bits 48-56. */
START_TEST(test_long5)
{
	const uint64_t pml5 = 0x20000, pml4 = 0x21000, pdpt = 0x22000;
	struct vm_paging p = {CR0_PG | 1, pml5, CR4_PAE | CR4_LA57, EFER_LMA};
	static const struct page want[] = {
		{0x0001000000000000, 0x40000000, 1 << 30},
		{0xff00000000000000, 0x40000000, 1 << 30},
	};

	put64(pml5, 1, pml4 | P);
	put64(pml5, 256, pml4 | P);
	put64(pml4, 0, pdpt | P);
	put64(pdpt, 0, 0x40000000 | PS | P);
	maps(&p, 0x0001000000000010, 0x40000010, (1 << 30) - 16);
	maps(&p, 0xff00000000000010, 0x40000010, (1 << 30) - 16);
	unmapped(&p, 0x0100000000000000); /* not canonical with 57 bits */
	unmapped(&p, 0x10);
	walks(&p, want, 2);
}
END_TEST

/* PAE: 4 PDPT entries, 2 MiB and 4 KiB pages, 32-bit addresses. */
START_TEST(test_pae)
{
	const uint64_t pdpt = 0x30020, pd = 0x31000, pt = 0x32000;
	struct vm_paging p = {CR0_PG | 1, pdpt, CR4_PAE, 0};
	static const struct page want[] = {
		{0xc0000000, 0x600000, 2 << 20, VM_PAGE_USER | VM_PAGE_WRITE},
		{0xc0200000, 0x100000000, 4096},
	};

	put64(pdpt, 3, pd | P);
	put64(pd, 0, 0x600000 | PS | P | RW | US); /* the PDPTE has no such bits */
	put64(pd, 1, pt | P);
	put64(pt, 0, 0x100000000 | P); /* above 4 GiB, as PAE allows */
	maps(&p, 0xc0000abc, 0x600abc, (2 << 20) - 0xabc);
	maps(&p, 0xc0200004, 0x100000004, 4092);
	unmapped(&p, 0x00001000);
	unmapped(&p, 0x100000000); /* beyond 32 bits */
	walks(&p, want, 2);
}
END_TEST

/* 32-bit paging: 4 KiB pages; 4 MiB ones (PSE-36) only with CR4.PSE. */
START_TEST(test_legacy)
{
	const uint64_t pd = 0x40000, pt = 0x41000, pt2 = 0x840000;
	struct vm_paging p = {CR0_PG | 1, pd, CR4_PSE, 0};
	static const struct page want[] = {
		{0x400000, 0x2000800000, 4 << 20},
		{0x800000, 0x900000, 4096, VM_PAGE_WRITE},
	};

	put32(pd, 1, 0x800000 | (0x20 << 13) | PS | P); /* PSE-36: bits 32-39 = 0x20 */
	put32(pd, 2, pt | P | RW | US);
	put32(pt, 0, 0x900000 | P | RW);
	maps(&p, 0x400010, 0x2000800010, (4 << 20) - 16);
	maps(&p, 0x800fff, 0x900fff, 1);
	unmapped(&p, 0xc00000);
	walks(&p, want, 2);
	/* without CR4.PSE the same entry points to a page table (bits 12-31) */
	p.cr4 = 0;
	put32(pt2, 3, 0xa00000 | P);
	maps(&p, 0x403000, 0xa00000, 4096);
	unmapped(&p, 0x400000);
}
END_TEST

static int count(void *opaque, uint64_t la, uint64_t gpa, uint64_t len, uint64_t pte, unsigned prot)
{
	(*(uint64_t *)opaque)++;
	return 0;
}

/* Every entry of one table pointing back to it: the walk stops. */
START_TEST(test_hostile)
{
	const uint64_t t = 0x50000;
	struct vm_paging p = {CR0_PG | 1, t, CR4_PAE, EFER_LMA};
	uint64_t pages = 0;

	for (unsigned i = 0; i < 512; i++) {
		put64(t, i, t | P);
	}
	maps(&p, 0x12345, t + 0x345, 4096 - 0x345);
	ck_assert_int_eq(guest_walk(mem, &p, count, &pages), -E2BIG);
	ck_assert_uint_le(pages, 512ull * GUEST_WALK_MAX_TABLES);
	ck_assert_uint_gt(pages, 0);
}
END_TEST

/* Paging off: linear is physical, and there is nothing to walk. */
START_TEST(test_off)
{
	struct vm_paging p = {1, 0x10000, 0, 0};
	struct seen s = {0};

	maps(&p, 0x12345, 0x12345, 4096 - 0x345);
	maps(&p, 0x100000000, 0x100000000, 4096);
	ck_assert_int_eq(guest_walk(mem, &p, record, &s), 0);
	ck_assert_uint_eq(s.n, 0);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("pagewalk");
	TCase *tc = tcase_create("modes");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_long4);
	tcase_add_test(tc, test_long5);
	tcase_add_test(tc, test_pae);
	tcase_add_test(tc, test_legacy);
	tcase_add_test(tc, test_off);
	tcase_add_test(tc, test_hostile);
	suite_add_tcase(s, tc);
	return s;
}

#include "check-main.h"
