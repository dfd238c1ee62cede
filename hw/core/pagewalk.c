/*
 * The guest's page tables (pagewalk.h), written from the Intel SDM vol. 3,
 * chapter 4 (paging modes, entry formats, canonical addresses).
 */
#include "config.h"

#include <errno.h>
#include <stdbool.h>

#include "hw/core/memory.h"
#include "hw/core/pagewalk.h"

#define CR0_PG (1ull << 31)
#define CR4_PSE (1ull << 4)
#define CR4_PAE (1ull << 5)
#define CR4_LA57 (1ull << 12)
#define EFER_LMA (1ull << 10)
#define PTE_P 1ull
#define PTE_PS (1ull << 7)
#define ADDR_MASK 0x000ffffffffff000ull /* bits 12-51 of a 64-bit entry */

struct mode {
	unsigned levels;  /* tables on a walk: 2 (32-bit), 3 (PAE), 4 or 5 */
	unsigned bits;	  /* index bits per level: 10 (32-bit) or 9 */
	unsigned entry;	  /* bytes per entry: 4 or 8 */
	unsigned la_bits; /* linear address width: 32, 48 or 57 */
	uint64_t root;	  /* the top table */
	bool pse;	  /* 32-bit paging's 4 MiB pages */
};

/* false: paging is off. */
static bool get_mode(const struct vm_paging *p, struct mode *m)
{
	if (!(p->cr0 & CR0_PG)) {
		return false;
	}
	if (p->efer & EFER_LMA) {
		bool la57 = p->cr4 & CR4_LA57;

		*m = (struct mode){la57 ? 5 : 4, 9, 8, la57 ? 57 : 48, p->cr3 & ADDR_MASK, false};
	} else if (p->cr4 & CR4_PAE) {
		*m = (struct mode){3, 9, 8, 32, p->cr3 & 0xffffffe0u, false};
	} else {
		*m = (struct mode){2, 10, 4, 32, p->cr3 & 0xfffff000u, p->cr4 & CR4_PSE};
	}
	return true;
}

/* log2 of the bytes an entry of level @l maps (level 0: the page tables). */
static unsigned shift(const struct mode *m, unsigned l)
{
	return 12 + l * m->bits;
}

/* Entries of a table of level @l (PAE's top table has 4). */
static unsigned entries(const struct mode *m, unsigned l)
{
	return m->levels == 3 && l == 2 ? 4 : 1u << m->bits;
}

static uint64_t canonical(const struct mode *m, uint64_t la)
{
	unsigned s = 64 - m->la_bits;

	return m->la_bits == 32 ? la : (uint64_t)((int64_t)(la << s) >> s);
}

/* Entry @i of @table if it is present (and inside guest RAM). */
static bool read_entry(struct guest_mem *mem, const struct mode *m, uint64_t table, unsigned i,
		       uint64_t *e)
{
	uint32_t v32;

	if (m->entry == 4) {
		if (guest_mem_read(mem, table + 4ull * i, &v32, 4) < 0) {
			return false;
		}
		*e = v32;
	} else if (guest_mem_read(mem, table + 8ull * i, e, 8) < 0) {
		return false;
	}
	return *e & PTE_P;
}

static uint64_t table_addr(const struct mode *m, uint64_t e)
{
	return m->entry == 4 ? e & 0xfffff000u : e & ADDR_MASK;
}

/*
 * Entry @e of level @l: 1 and the page's base in *@base for a page, 0 for a
 * table, -1 for a page size the mode does not have (a fault on hardware).
 */
static int leaf(const struct mode *m, unsigned l, uint64_t e, uint64_t *base)
{
	if (l == 0) {
		*base = table_addr(m, e);
		return 1;
	}
	/* (32-bit paging without CR4.PSE ignores the bit: a table) */
	if (!(e & PTE_PS) || (m->entry == 4 && !m->pse)) {
		return 0;
	}
	if (m->entry == 4) {
		/* a 4 MiB page; PSE-36 keeps address bits 32-39 in entry bits 13-20 */
		*base = (e & 0xffc00000u) | ((e >> 13) & 0xffull) << 32;
		return 1;
	}
	if (l == 1 || (l == 2 && m->levels >= 4)) {
		*base = e & ADDR_MASK & ~((1ull << shift(m, l)) - 1);
		return 1;
	}
	return -1;
}

int guest_translate(struct guest_mem *mem, const struct vm_paging *p, uint64_t la,
		    uint64_t *ret_gpa, uint64_t *ret_len)
{
	uint64_t table, e, base, size;
	struct mode m;

	if (!get_mode(p, &m)) {
		*ret_gpa = la;
		*ret_len = 4096 - (la & 4095);
		return 0;
	}
	if (m.la_bits == 32 ? la >> 32 != 0 : canonical(&m, la) != la) {
		return -EFAULT;
	}
	table = m.root;
	for (unsigned l = m.levels - 1;; l--) {
		unsigned i = (unsigned)(la >> shift(&m, l)) & (entries(&m, l) - 1);
		int kind;

		if (!read_entry(mem, &m, table, i, &e)) {
			return -EFAULT;
		}
		kind = leaf(&m, l, e, &base);
		if (kind < 0) {
			return -EFAULT;
		}
		if (kind > 0) {
			size = 1ull << shift(&m, l);
			*ret_gpa = base + (la & (size - 1));
			*ret_len = size - (la & (size - 1));
			return 0;
		}
		table = table_addr(&m, e);
	}
}

struct walk {
	struct guest_mem *mem;
	const struct mode *m;
	vm_page_fn *fn;
	void *opaque;
	uint64_t tables; /* visited, against GUEST_WALK_MAX_TABLES */
};

/* @prot: the user and write bits of the tables above, ANDed. */
static int walk_table(struct walk *w, unsigned l, uint64_t table, uint64_t la_base, unsigned prot)
{
	/* the whole table in one read (a table is at most 4 KiB) */
	union {
		uint32_t e32[1024];
		uint64_t e64[512];
	} t;
	unsigned n = entries(w->m, l);

	if (++w->tables > GUEST_WALK_MAX_TABLES) {
		return -E2BIG;
	}
	if (guest_mem_read(w->mem, table, &t, (size_t)n * w->m->entry) < 0) {
		return 0; /* outside RAM: not present */
	}
	for (unsigned i = 0; i < n; i++) {
		uint64_t e = w->m->entry == 4 ? t.e32[i] : t.e64[i], base;
		uint64_t la = la_base | (uint64_t)i << shift(w->m, l);
		unsigned pr;
		int kind, r;

		if (!(e & PTE_P)) {
			continue;
		}
		/* (PAE's top entries have neither bit: they do not restrict) */
		pr = w->m->levels == 3 && l == 2 ? prot : prot & (unsigned)e;
		kind = leaf(w->m, l, e, &base);
		if (kind > 0) {
			r = w->fn(w->opaque, canonical(w->m, la), base, 1ull << shift(w->m, l), e,
				  pr);
		} else if (kind == 0) {
			r = walk_table(w, l - 1, table_addr(w->m, e), la, pr);
		} else {
			r = 0;
		}
		if (r) {
			return r;
		}
	}
	return 0;
}

int guest_walk(struct guest_mem *mem, const struct vm_paging *p, vm_page_fn *fn, void *opaque)
{
	struct mode m;
	struct walk w = {mem, &m, fn, opaque, 0};

	if (!get_mode(p, &m)) {
		return 0;
	}
	return walk_table(&w, m.levels - 1, m.root, 0, VM_PAGE_USER | VM_PAGE_WRITE);
}
