/*
 * HMP's memory commands with QEMU 7.2's text: x /FMT ADDR (vCPU 0's
 * virtual addresses), xp /FMT ADDR (guest-physical), gva2gpa ADDR, info
 * mem and info tlb (vCPU 0's page tables). The reading runs on a worker
 * while the VM is held (running vCPUs leave the guest for the moment their
 * registers are read, include/vmmd/vm.h); its text is the deferred
 * answer. Only RAM and memory devices are read: device registers and
 * firmware give "Cannot access memory" (QEMU reads them). At most
 * HMP_MEM_MAX bytes per x or xp, and about HMP_TEXT_MAX of info mem or
 * info tlb (a guest's tables decide their length). Control thread, but
 * for mem_run.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/hmp.h"
#include "daemon/registry.h"

#define HMP_MEM_MAX 65536u
#define HMP_TEXT_MAX (1u << 20) /* info mem and info tlb stop there */
#define CR4_LA57 (1ull << 12)
#define EFER_LMA (1ull << 10)
#define CR4_PAE (1ull << 5)

enum mem_kind {
	MEM_X,
	MEM_XP,
	MEM_GVA2GPA,
	MEM_INFO_MEM,
	MEM_INFO_TLB
};

struct mem_job {
	struct registry *reg;
	struct vm *vm; /* held: registry_vm_work_begin until mem_done */
	char *name;
	enum mem_kind kind;
	char format;
	unsigned size;
	uint64_t count, addr;
	struct hmp_out out; /* built on the worker */
	struct monitor_deferred *d;
};

/* QEMU's monitor_printc. */
static void printc(struct hmp_out *o, unsigned c)
{
	if (c == '\'') {
		hmp_printf(o, "'\\''");
	} else if (c == '\\') {
		hmp_printf(o, "'\\\\'");
	} else if (c == '\n') {
		hmp_printf(o, "'\\n'");
	} else if (c == '\r') {
		hmp_printf(o, "'\\r'");
	} else if (c >= 32 && c <= 126) {
		hmp_printf(o, "'%c'", (char)c);
	} else {
		hmp_printf(o, "'\\x%02x'", c);
	}
}

/* QEMU's memory_dump: lines of 8 (bytes) or 16 bytes, @p NULL: physical. */
static void memory_dump(struct mem_job *j, const struct vm_paging *p)
{
	unsigned wsize = j->size, line = wsize == 1 ? 8 : 16, digits;
	uint64_t len = wsize * j->count, addr = j->addr;
	struct hmp_out *o = &j->out;
	uint8_t buf[16];

	switch (j->format) {
	case 'o':
		digits = (wsize * 8 + 2) / 3;
		break;
	case 'u':
	case 'd':
		digits = (wsize * 8 * 10 + 32) / 33;
		break;
	case 'c':
		/* (after len and the line: /16c shows 64 characters, as QEMU) */
		wsize = 1;
		digits = 0;
		break;
	default:
		digits = wsize * 8 / 4;
	}
	while (len > 0) {
		unsigned l = (unsigned)MIN(len, (uint64_t)line);

		hmp_printf(o, "%016" PRIx64 ":", addr);
		if (vm_read_memory(j->vm, p, addr, buf, l) < 0) {
			hmp_printf(o, " Cannot access memory\n");
			break;
		}
		for (unsigned i = 0; i < l; i += wsize) {
			uint64_t v = 0;

			memcpy(&v, buf + i, wsize);
			if (j->format == 'o') {
				hmp_printf(o, " %#*" PRIo64, (int)digits, v);
			} else if (j->format == 'u') {
				hmp_printf(o, " %*" PRIu64, (int)digits, v);
			} else if (j->format == 'd') {
				hmp_printf(o, " %*" PRId64, (int)digits, (int64_t)v);
			} else if (j->format == 'c') {
				hmp_printf(o, " ");
				printc(o, (unsigned)v);
			} else {
				hmp_printf(o, " 0x%0*" PRIx64, (int)digits, v);
			}
		}
		hmp_printf(o, "\n");
		addr += l;
		len -= l;
	}
}

/* Linear address width, and QEMU's addr_canonical of a walk's address. */
static unsigned la_width(const struct vm_paging *p)
{
	return !(p->efer & EFER_LMA) ? 32 : (p->cr4 & CR4_LA57) ? 57 : 48;
}

static uint64_t canon(const struct vm_paging *p, uint64_t a)
{
	unsigned top = p->cr4 & CR4_LA57 ? 56 : 47;

	return a & (1ull << top) ? a | ~((2ull << top) - 1) : a;
}

struct mem_walk {
	struct hmp_out *o;
	const struct vm_paging *p;
	uint64_t mask, start, end; /* addresses as the walk counts them (not canonical) */
	unsigned prot;		   /* 0: no range open */
};

static void mem_flush(struct mem_walk *w)
{
	if (w->prot) {
		hmp_printf(w->o, "%016" PRIx64 "-%016" PRIx64 " %016" PRIx64 " %c%c%c\n",
			   canon(w->p, w->start), canon(w->p, w->end),
			   canon(w->p, w->end - w->start), w->prot & VM_PAGE_USER ? 'u' : '-', 'r',
			   w->prot & VM_PAGE_WRITE ? 'w' : '-');
	}
	w->prot = 0;
}

/* info mem: runs of pages with the same user and write rights. */
static int mem_page(void *opaque, uint64_t la, uint64_t gpa, uint64_t len, uint64_t pte,
		    unsigned prot)
{
	struct mem_walk *w = opaque;
	uint64_t a = la & w->mask;

	if (w->o->len > HMP_TEXT_MAX) {
		return -E2BIG;
	}
	unsigned pr = (prot & (VM_PAGE_USER | VM_PAGE_WRITE)) | 1; /* (1: present) */

	if (w->prot && a == w->end && pr == w->prot) {
		w->end += len;
		return 0;
	}
	mem_flush(w);
	w->start = a;
	w->end = a + len;
	w->prot = pr;
	return 0;
}

/* info tlb: each page, its address as QEMU masks the entry, its flags. */
static int tlb_page(void *opaque, uint64_t la, uint64_t gpa, uint64_t len, uint64_t pte,
		    unsigned prot)
{
	struct mem_walk *w = opaque;
	uint64_t mask;

	if (w->o->len > HMP_TEXT_MAX) {
		return -E2BIG;
	}
	if (w->p->efer & EFER_LMA) {
		mask = len == 1ull << 30   ? 0x3ffffc0000000ull
		       : len == 1ull << 21 ? 0x3ffffffe00000ull
					   : 0x3fffffffff000ull;
	} else {
		/* (QEMU's 32-bit masks, PAE's 2 MiB one included) */
		mask = len == 4096 ? ~0xfffull : (w->p->cr4 & CR4_PAE) ? ~0xfffffull : ~0x3fffffull;
	}
	hmp_printf(w->o, "%016" PRIx64 ": %016" PRIx64 " %c%c%c%c%c%c%c%c%c\n",
		   canon(w->p, la & w->mask), pte & mask, pte >> 63 ? 'X' : '-',
		   pte & 0x100 ? 'G' : '-', pte & 0x80 ? 'P' : '-', pte & 0x40 ? 'D' : '-',
		   pte & 0x20 ? 'A' : '-', pte & 0x10 ? 'C' : '-', pte & 0x8 ? 'T' : '-',
		   pte & 0x4 ? 'U' : '-', pte & 0x2 ? 'W' : '-');
	return 0;
}

static void mem_run(void *arg)
{
	struct mem_job *j = arg;
	struct error *err = NULL;
	struct vm_paging p = {0};
	struct mem_walk w = {&j->out, &p};
	uint64_t gpa;
	int r;

	if (j->kind != MEM_XP && vm_vcpu_paging(j->vm, 0, &p, &err) < 0) {
		hmp_printf(&j->out, "Error: %s\n", err->msg);
		error_free(err);
		return;
	}
	w.mask = la_width(&p) == 64 ? ~0ull : (1ull << la_width(&p)) - 1;
	switch (j->kind) {
	case MEM_X:
	case MEM_XP:
		memory_dump(j, j->kind == MEM_X ? &p : NULL);
		break;
	case MEM_GVA2GPA:
		if (vm_translate(j->vm, &p, j->addr & ~0xfffull, &gpa) < 0) {
			hmp_printf(&j->out, "Unmapped\n");
		} else {
			hmp_printf(&j->out, "gpa: %#" PRIx64 "\n", gpa + (j->addr & 0xfff));
		}
		break;
	case MEM_INFO_MEM:
	case MEM_INFO_TLB:
		r = vm_walk_pages(j->vm, &p, j->kind == MEM_INFO_MEM ? mem_page : tlb_page, &w);
		mem_flush(&w);
		if (r == -ENOENT) {
			hmp_printf(&j->out, "PG disabled\n");
		} else if (r == -E2BIG) {
			hmp_printf(&j->out,
				   "vmmd: stopped here (the guest's page tables are too large "
				   "to show)\n");
		}
		break;
	}
}

static void mem_done(void *arg)
{
	struct mem_job *j = arg;
	struct registry_vm *rv = registry_find(j->reg, j->name);

	if (rv) {
		registry_disks_end(rv);
	}
	monitor_deferred_done(j->d, 0, json_string(j->out.buf ? j->out.buf : ""), NULL);
	free(j->out.buf);
	free(j->name);
	free(j);
}

/* QEMU's /FMT: [COUNT][FORMAT][SIZE]; the last format and size stay as defaults. */
static bool parse_fmt(struct hmp_args *a, struct registry_vm *rv, struct mem_job *j)
{
	int size = -1;

	j->count = 1;
	j->format = rv->hmp_format ? rv->hmp_format : 'x';
	hmp_skip_space(a);
	if (*a->p == '/') {
		char format = 0;

		a->p++;
		if (*a->p >= '0' && *a->p <= '9') {
			j->count = 0;
			while (*a->p >= '0' && *a->p <= '9') {
				uint64_t c = j->count * 10 + (uint64_t)(*a->p++ - '0');

				/* (past the bound anyway: no overflow) */
				j->count = MIN(c, (uint64_t)HMP_MEM_MAX + 1);
			}
		}
		for (;; a->p++) {
			if (strchr("oduxic", *a->p) && *a->p) {
				format = *a->p;
			} else if (*a->p && strchr("bhwgL", *a->p)) {
				size = *a->p == 'b' ? 1 : *a->p == 'h' ? 2 : *a->p == 'w' ? 4 : 8;
			} else {
				break;
			}
		}
		if (*a->p && *a->p != ' ' && *a->p != '\t') {
			hmp_printf(a->o,
				   "invalid char in format: '%c'\n"
				   "Try \"help %s\" for more information\n",
				   *a->p, a->cmd);
			return false;
		}
		if (format) {
			j->format = format;
		}
	}
	if (j->format != 'i') {
		j->size = size > 0 ? (unsigned)size : rv->hmp_size ? rv->hmp_size : 4;
		rv->hmp_size = (uint8_t)j->size;
	}
	rv->hmp_format = j->format;
	return true;
}

int hmp_memory(struct monitor_request *req, const char *cmd, const char *line, struct hmp_out *o)
{
	struct registry_vm *rv = req->vm;
	struct hmp_args a = {line + strspn(line, " \t") + strlen(cmd), cmd, o, false};
	struct mem_job *j = calloc(1, sizeof(*j));
	struct error *err = NULL;
	json_int_t addr = 0;
	int r;

	if (!j) {
		hmp_printf(o, "Error: out of memory\n");
		return 0;
	}
	if (strcmp(cmd, "info") == 0) {
		const char *what = a.p + strspn(a.p, " \t");

		j->kind = strncmp(what, "mem", 3) == 0 ? MEM_INFO_MEM : MEM_INFO_TLB;
	} else {
		j->kind = strcmp(cmd, "x") == 0	   ? MEM_X
			  : strcmp(cmd, "xp") == 0 ? MEM_XP
						   : MEM_GVA2GPA;
		if ((j->kind != MEM_GVA2GPA && !parse_fmt(&a, rv, j)) || !hmp_arg_expr(&a, &addr) ||
		    !hmp_arg_end(&a)) {
			free(j);
			return 0;
		}
		j->addr = (uint64_t)addr;
	}
	if (j->kind <= MEM_XP && j->format == 'i') {
		hmp_printf(o, "vmmd: format 'i' (disassembly) is not supported\n");
		free(j);
		return 0;
	}
	if (j->kind <= MEM_XP && j->count * j->size > HMP_MEM_MAX) {
		hmp_printf(o, "Error: at most %u bytes at a time\n", HMP_MEM_MAX);
		free(j);
		return 0;
	}
	if (!rv->vm) {
		hmp_printf(o, "Error: VM '%s' is not running\n", rv->name);
		free(j);
		return 0;
	}
	j->reg = req->ctx;
	j->vm = rv->vm;
	j->name = strdup(rv->name);
	req->hmp = true;
	j->d = monitor_defer(req);
	req->hmp = false;
	r = j->name && j->d ? registry_vm_work_begin(rv, "reading its memory (HMP)", mem_run,
						     mem_done, j, &err)
			    : error_set(&err, ENOMEM, "out of memory");
	if (r < 0) {
		hmp_printf(o, "Error: %s\n", err->msg);
		error_free(err);
		if (j->d) {
			monitor_deferred_cancel(j->d);
		}
		free(j->name);
		free(j);
		return 0;
	}
	return MONITOR_DEFERRED;
}
