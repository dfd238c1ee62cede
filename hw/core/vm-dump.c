/*
 * Guest memory into files: dump-guest-memory's ELF core and memsave.
 *
 * The core is laid out as QEMU writes it (readable by gdb and crash):
 *
 *   ELF header       ELFCLASS64, ET_CORE; EM_X86_64 when the first vCPU is
 *                    in long mode, else EM_386 (as QEMU decides)
 *   program headers  one PT_NOTE, then the PT_LOADs: with paging off one per
 *                    block of guest RAM (p_vaddr = p_paddr, its
 *                    guest-physical address); with paging on one per run of
 *                    the vCPUs' page tables (p_vaddr the linear address,
 *                    canonical) that lies in those blocks
 *   notes            each present vCPU's NT_PRSTATUS ("CORE"; pr_pid its
 *                    index + 1), then each vCPU's "QEMU" note (type 0: the
 *                    CPU state crash reads: registers, segments, control
 *                    registers, KernelGSBase)
 *   memory           the blocks back to back; zero pages stay holes in a
 *                    regular file
 *
 * The note layouts are the Linux ABI (struct elf_prstatus for x86-64 and
 * i386) and QEMU's documented QEMUCPUState, version 1. More than 65534
 * program headers: e_phnum is PN_XNUM and section 0 holds the count.
 *
 * Threads: vm_dump_elf runs on a worker between vm_save_begin and
 * vm_save_end (the vCPUs parked); it drains device requests and holds the
 * I/O thread while it reads, so no device writes guest RAM meanwhile.
 * vm_memsave runs on a worker while the VM runs.
 */
#include "config.h"

#include <elf.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "common/error.h"
#include "common/util.h"
#include "hw/core/memory.h"
#include "hw/core/pagewalk.h"
#include "hw/core/vcpu.h"
#include "hw/core/vm-int.h"
#include "vmmd/vm.h"

#define PAGE 4096u
#define MSR_KERNEL_GS_BASE 0xc0000102u
#define EFER_LMA (1u << 10)
#define CR0_PG (1ull << 31)

/* struct elf_prstatus of x86-64 Linux: pr_pid at 32, the registers at 112. */
struct prstatus64 {
	uint8_t pad1[32];
	uint32_t pid;
	uint8_t pad2[76];
	uint64_t r15, r14, r13, r12, rbp, rbx, r11, r10;
	uint64_t r9, r8, rax, rcx, rdx, rsi, rdi, orig_rax;
	uint64_t rip, cs, eflags, rsp, ss, fs_base, gs_base;
	uint64_t ds, es, fs, gs;
	uint8_t pad3[8];
};
_Static_assert(sizeof(struct prstatus64) == 336, "x86-64 elf_prstatus");

/* struct elf_prstatus of i386 Linux: pr_pid at 24, the registers at 72. */
struct prstatus32 {
	uint8_t pad1[24];
	uint32_t pid;
	uint8_t pad2[44];
	uint32_t ebx, ecx, edx, esi, edi, ebp, eax;
	uint32_t ds, es, fs, gs, orig_eax, eip, cs, eflags, esp, ss;
	uint8_t pad3[4];
};
_Static_assert(sizeof(struct prstatus32) == 144, "i386 elf_prstatus");

struct qemu_seg {
	uint32_t selector, limit, flags, pad;
	uint64_t base;
};

/* QEMU's QEMUCPUState, version 1 (with kernel_gs_base, as QEMU 7.2 writes). */
struct qemu_cpu_state {
	uint32_t version, size;
	uint64_t rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp;
	uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
	uint64_t rip, rflags;
	struct qemu_seg cs, ds, es, fs, gs, ss, ldt, tr, gdt, idt;
	uint64_t cr[5];
	uint64_t kernel_gs_base;
};
_Static_assert(sizeof(struct qemu_cpu_state) == 440, "QEMUCPUState");

/* A note: header, name padded to 4, description padded to 4. */
#define NOTE_SIZE(desc) (sizeof(Elf64_Nhdr) + 8 + (((desc) + 3) & ~(size_t)3))

struct cpu_regs {
	struct kvm_regs r;
	struct kvm_sregs s;
	uint64_t kernel_gs_base;
};

/* Guest RAM clipped to [begin, begin+length) when @filter; *n blocks. */
struct block {
	uint64_t gpa, size;
	const uint8_t *host;
};

static unsigned blocks(struct vm *vm, bool filter, uint64_t begin, uint64_t length,
		       struct block *out)
{
	uint64_t end = begin + length < begin ? UINT64_MAX : begin + length;
	unsigned n = 0;

	for (unsigned i = 0; i < guest_mem_region_count(vm->mem); i++) {
		const struct guest_mem_region *reg = guest_mem_region(vm->mem, i);
		uint64_t lo = reg->gpa, hi = reg->gpa + reg->size;

		if (filter) {
			lo = MAX(lo, begin);
			hi = MIN(hi, end);
		}
		if (lo >= hi) {
			continue;
		}
		out[n++] = (struct block){lo, hi - lo, reg->host + (lo - reg->gpa)};
	}
	return n;
}

uint64_t vm_dump_size(struct vm *vm, bool filter, uint64_t begin, uint64_t length)
{
	struct block b[VM_RAM_REGIONS_MAX];
	unsigned n = blocks(vm, filter, begin, length, b);
	uint64_t total = 0;

	for (unsigned i = 0; i < n; i++) {
		total += b[i].size;
	}
	return total;
}

static int get_regs(struct vcpu *v, struct cpu_regs *c, struct error **errp)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e;
	} msr = {.hdr.nmsrs = 1, .e.index = MSR_KERNEL_GS_BASE};

	if (ioctl(v->fd, KVM_GET_REGS, &c->r) < 0 || ioctl(v->fd, KVM_GET_SREGS, &c->s) < 0) {
		return error_set_errno(errp, errno, "vCPU %u: cannot read its registers", v->index);
	}
	/* (a vCPU without the MSR: 0, as a guest that never set it) */
	c->kernel_gs_base = ioctl(v->fd, KVM_GET_MSRS, &msr) == 1 ? msr.e.data : 0;
	return 0;
}

/* QEMU's segment flags: the descriptor's high word, type at bit 8. */
static struct qemu_seg qseg(const struct kvm_segment *s)
{
	uint32_t flags = (uint32_t)s->type << 8 | (uint32_t)s->s << 12 | (uint32_t)s->dpl << 13 |
			 (uint32_t)s->present << 15 | (uint32_t)s->avl << 20 |
			 (uint32_t)s->l << 21 | (uint32_t)s->db << 22 | (uint32_t)s->g << 23;

	return (struct qemu_seg){s->selector, s->limit, flags, 0, s->base};
}

static struct qemu_seg qtable(const struct kvm_dtable *t)
{
	return (struct qemu_seg){0, t->limit, 0, 0, t->base};
}

static uint8_t *put_note(uint8_t *p, const char *name, uint32_t type, const void *desc, size_t len)
{
	Elf64_Nhdr h = {.n_namesz = 5, .n_descsz = (Elf64_Word)len, .n_type = type};

	memcpy(p, &h, sizeof(h));
	memcpy(p + sizeof(h), name, 5);
	memcpy(p + sizeof(h) + 8, desc, len);
	return p + NOTE_SIZE(len);
}

static uint8_t *prstatus_note(uint8_t *p, bool lma, unsigned id, const struct cpu_regs *c)
{
	const struct kvm_regs *r = &c->r;
	const struct kvm_sregs *s = &c->s;

	if (lma) {
		struct prstatus64 st = {
			.pid = id,
			.r15 = r->r15,
			.r14 = r->r14,
			.r13 = r->r13,
			.r12 = r->r12,
			.rbp = r->rbp,
			.rbx = r->rbx,
			.r11 = r->r11,
			.r10 = r->r10,
			.r9 = r->r9,
			.r8 = r->r8,
			.rax = r->rax,
			.rcx = r->rcx,
			.rdx = r->rdx,
			.rsi = r->rsi,
			.rdi = r->rdi,
			.rip = r->rip,
			.cs = s->cs.selector,
			.eflags = r->rflags,
			.rsp = r->rsp,
			.ss = s->ss.selector,
			.fs_base = s->fs.base,
			.gs_base = s->gs.base,
			.ds = s->ds.selector,
			.es = s->es.selector,
			.fs = s->fs.selector,
			.gs = s->gs.selector,
		};

		return put_note(p, "CORE", NT_PRSTATUS, &st, sizeof(st));
	}
	struct prstatus32 st = {
		.pid = id,
		.ebx = (uint32_t)r->rbx,
		.ecx = (uint32_t)r->rcx,
		.edx = (uint32_t)r->rdx,
		.esi = (uint32_t)r->rsi,
		.edi = (uint32_t)r->rdi,
		.ebp = (uint32_t)r->rbp,
		.eax = (uint32_t)r->rax,
		.ds = s->ds.selector,
		.es = s->es.selector,
		.fs = s->fs.selector,
		.gs = s->gs.selector,
		.eip = (uint32_t)r->rip,
		.cs = s->cs.selector,
		.eflags = (uint32_t)r->rflags,
		.esp = (uint32_t)r->rsp,
		.ss = s->ss.selector,
	};

	return put_note(p, "CORE", NT_PRSTATUS, &st, sizeof(st));
}

static uint8_t *qemu_note(uint8_t *p, const struct cpu_regs *c)
{
	const struct kvm_regs *r = &c->r;
	const struct kvm_sregs *s = &c->s;
	struct qemu_cpu_state st = {
		.version = 1,
		.size = sizeof(st),
		.rax = r->rax,
		.rbx = r->rbx,
		.rcx = r->rcx,
		.rdx = r->rdx,
		.rsi = r->rsi,
		.rdi = r->rdi,
		.rsp = r->rsp,
		.rbp = r->rbp,
		.r8 = r->r8,
		.r9 = r->r9,
		.r10 = r->r10,
		.r11 = r->r11,
		.r12 = r->r12,
		.r13 = r->r13,
		.r14 = r->r14,
		.r15 = r->r15,
		.rip = r->rip,
		.rflags = r->rflags,
		.cs = qseg(&s->cs),
		.ds = qseg(&s->ds),
		.es = qseg(&s->es),
		.fs = qseg(&s->fs),
		.gs = qseg(&s->gs),
		.ss = qseg(&s->ss),
		.ldt = qseg(&s->ldt),
		.tr = qseg(&s->tr),
		.gdt = qtable(&s->gdt),
		.idt = qtable(&s->idt),
		.cr = {s->cr0, 0, s->cr2, s->cr3, s->cr4},
		.kernel_gs_base = c->kernel_gs_base,
	};

	return put_note(p, "QEMU", 0, &st, sizeof(st));
}

/*
 * Write @len bytes at @off: with @sparse (a regular file) by pwrite, zero
 * pages left as holes; else by write, every byte in order (a pipe).
 */
static int out(int fd, bool sparse, const uint8_t *p, size_t len, off_t off)
{
	static const uint8_t zero[PAGE];

	while (len > 0) {
		size_t n = 0;
		ssize_t w;

		if (!sparse) {
			w = write(fd, p, MIN(len, (size_t)1 << 20));
		} else if (len >= PAGE && memcmp(p, zero, PAGE) == 0) {
			w = PAGE;
		} else {
			/* a run of pages that are not all zero */
			while (n < len && (len - n < PAGE || memcmp(p + n, zero, PAGE) != 0)) {
				n += MIN(len - n, (size_t)PAGE);
			}
			w = pwrite(fd, p, n, off);
		}
		if (w < 0 && errno == EINTR) {
			continue;
		}
		if (w <= 0) {
			return w < 0 ? -errno : -EIO;
		}
		p += w;
		off += w;
		len -= (size_t)w;
	}
	return 0;
}

/* A PT_LOAD: linear (virtual) and guest-physical address of a run. */
struct map {
	uint64_t la, gpa, len;
};

/*
 * The guest's page tables decide how many mappings a paging dump has: at
 * most this many pages visited and this many PT_LOADs (a hostile guest's
 * tables could map every page many times over).
 */
#define DUMP_MAX_PAGES (1ull << 28)
#define DUMP_MAX_MAPS (1u << 20)

struct maps {
	struct map *v;
	size_t n, cap;
	uint64_t pages;
	const struct block *b;
	unsigned nb;
};

/* Append a run, merged with the last one when both addresses go on. */
static int add_map(struct maps *m, uint64_t la, uint64_t gpa, uint64_t len)
{
	struct map *last = m->n ? &m->v[m->n - 1] : NULL;

	if (last && last->la + last->len == la && last->gpa + last->len == gpa) {
		last->len += len;
		return 0;
	}
	if (m->n == DUMP_MAX_MAPS) {
		return -E2BIG;
	}
	if (m->n == m->cap) {
		size_t cap = m->cap ? 2 * m->cap : 64;
		struct map *v = reallocarray(m->v, cap, sizeof(*v));

		if (!v) {
			return -ENOMEM;
		}
		m->v = v;
		m->cap = cap;
	}
	m->v[m->n++] = (struct map){la, gpa, len};
	return 0;
}

/* guest_walk's page: its parts inside the dumped blocks. */
static int add_page(void *opaque, uint64_t la, uint64_t gpa, uint64_t len, uint64_t pte,
		    unsigned prot)
{
	struct maps *m = opaque;
	int r = 0;

	if (++m->pages > DUMP_MAX_PAGES) {
		return -E2BIG;
	}
	for (unsigned i = 0; r == 0 && i < m->nb; i++) {
		uint64_t lo = MAX(gpa, m->b[i].gpa),
			 hi = MIN(gpa + len, m->b[i].gpa + m->b[i].size);

		if (lo < hi) {
			r = add_map(m, la + (lo - gpa), lo, hi - lo);
		}
	}
	return r;
}

static struct vm_paging paging_of(const struct cpu_regs *c)
{
	return (struct vm_paging){c->s.cr0, c->s.cr3, c->s.cr4, c->s.efer};
}

/*
 * The PT_LOADs: with @paging, the mappings of each distinct set of page
 * tables the vCPUs use (those with paging on); else, or when no vCPU pages,
 * the blocks themselves at their physical addresses.
 */
static int build_maps(struct vm *vm, bool paging, const struct cpu_regs *regs, unsigned ncpu,
		      struct maps *m, struct error **errp)
{
	int r = 0;

	for (unsigned i = 0; paging && r == 0 && i < ncpu; i++) {
		struct vm_paging p = paging_of(&regs[i]);
		bool seen = !(p.cr0 & CR0_PG);

		for (unsigned j = 0; j < i && !seen; j++) {
			struct vm_paging q = paging_of(&regs[j]);

			seen = q.cr3 == p.cr3 && q.cr4 == p.cr4 && q.efer == p.efer &&
			       (q.cr0 & CR0_PG);
		}
		if (!seen) {
			r = guest_walk(vm->mem, &p, add_page, m);
		}
	}
	for (unsigned i = 0; r == 0 && m->n == 0 && i < m->nb; i++) {
		r = add_map(m, m->b[i].gpa, m->b[i].gpa, m->b[i].size);
	}
	if (r == -E2BIG) {
		return error_set(errp, E2BIG,
				 "dump: the guest's page tables are too large to walk (more "
				 "than %u tables, %llu pages or %u runs of memory); dump with "
				 "\"paging\": false",
				 GUEST_WALK_MAX_TABLES, DUMP_MAX_PAGES, DUMP_MAX_MAPS);
	}
	return r < 0 ? error_set_errno(errp, -r, "dump") : 0;
}

/* The file offset of @gpa (inside a block) when the blocks start at @mem_off. */
static uint64_t file_offset(const struct block *b, unsigned nb, uint64_t mem_off, uint64_t gpa)
{
	for (unsigned i = 0; i < nb; i++) {
		if (gpa >= b[i].gpa && gpa < b[i].gpa + b[i].size) {
			return mem_off + gpa - b[i].gpa;
		}
		mem_off += b[i].size;
	}
	return mem_off; /* (not reached: maps lie inside blocks) */
}

/* The ELF header, program headers and notes: *ret, *ret_size. */
static int make_head(const struct maps *m, const struct cpu_regs *regs, unsigned ncpu,
		     uint8_t **ret, size_t *ret_size, struct error **errp)
{
	bool lma = ncpu && (regs[0].s.efer & EFER_LMA);
	size_t nph = 1 + m->n, notes_size, head_size;
	/* more program headers than e_phnum holds: the count goes in section 0 */
	bool xnum = nph >= PN_XNUM;
	uint8_t *head, *p;
	uint64_t off;

	notes_size =
		ncpu * (NOTE_SIZE(lma ? sizeof(struct prstatus64) : sizeof(struct prstatus32)) +
			NOTE_SIZE(sizeof(struct qemu_cpu_state)));
	head_size = sizeof(Elf64_Ehdr) + (xnum ? sizeof(Elf64_Shdr) : 0) +
		    nph * sizeof(Elf64_Phdr) + notes_size;
	head = calloc(1, head_size);
	if (!head) {
		return error_set(errp, ENOMEM, "out of memory");
	}

	Elf64_Ehdr *eh = (Elf64_Ehdr *)head;
	Elf64_Shdr *sh = (Elf64_Shdr *)(head + sizeof(*eh));
	Elf64_Phdr *ph = (Elf64_Phdr *)(head + sizeof(*eh) + (xnum ? sizeof(*sh) : 0));

	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_ident[EI_VERSION] = EV_CURRENT;
	eh->e_type = ET_CORE;
	eh->e_machine = lma ? EM_X86_64 : EM_386;
	eh->e_version = EV_CURRENT;
	eh->e_phoff = (uint64_t)((uint8_t *)ph - head);
	eh->e_ehsize = sizeof(*eh);
	eh->e_phentsize = sizeof(*ph);
	eh->e_phnum = xnum ? PN_XNUM : (Elf64_Half)nph;
	if (xnum) {
		eh->e_shoff = sizeof(*eh);
		eh->e_shentsize = sizeof(*sh);
		eh->e_shnum = 1;
		sh->sh_info = (Elf64_Word)nph;
	}
	ph[0] = (Elf64_Phdr){.p_type = PT_NOTE,
			     .p_offset = head_size - notes_size,
			     .p_filesz = notes_size,
			     .p_memsz = notes_size};
	for (size_t i = 0; i < m->n; i++) {
		off = file_offset(m->b, m->nb, head_size, m->v[i].gpa);
		ph[1 + i] = (Elf64_Phdr){.p_type = PT_LOAD,
					 .p_offset = off,
					 .p_vaddr = m->v[i].la,
					 .p_paddr = m->v[i].gpa,
					 .p_filesz = m->v[i].len,
					 .p_memsz = m->v[i].len};
	}
	p = head + head_size - notes_size;
	for (unsigned i = 0; i < ncpu; i++) {
		p = prstatus_note(p, lma, i + 1, &regs[i]);
	}
	for (unsigned i = 0; i < ncpu; i++) {
		p = qemu_note(p, &regs[i]);
	}
	*ret = head;
	*ret_size = head_size;
	return 0;
}

static int write_core(struct vm *vm, int fd, bool paging, const struct block *b, unsigned nb,
		      atomic_uint_fast64_t *done, struct error **errp)
{
	struct cpu_regs *regs = calloc(vm->n_vcpus, sizeof(*regs));
	struct maps m = {.b = b, .nb = nb};
	uint8_t *head = NULL;
	unsigned ncpu = 0;
	size_t head_size = 0;
	struct stat st;
	off_t base = 0;
	uint64_t off;
	bool sparse;
	int r = 0;

	if (!regs) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	for (unsigned i = 0; r == 0 && i < vm->n_vcpus; i++) {
		if (!vm->vcpus[i]->unplugged) {
			r = get_regs(vm->vcpus[i], &regs[ncpu], errp);
			ncpu++;
		}
	}
	if (r == 0) {
		r = build_maps(vm, paging, regs, ncpu, &m, errp);
	}
	if (r == 0) {
		r = make_head(&m, regs, ncpu, &head, &head_size, errp);
	}
	if (r < 0) {
		goto out;
	}
	/* a regular file gets holes (from where its offset is); a pipe every byte */
	sparse = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (base = lseek(fd, 0, SEEK_CUR)) >= 0;
	r = out(fd, sparse, head, head_size, base);
	if (r < 0) {
		r = error_set_errno(errp, -r, "dump: failed to write elf header");
		goto out;
	}
	off = (uint64_t)base + head_size;
	for (unsigned i = 0; r == 0 && i < nb; i++) {
		for (uint64_t pos = 0; r == 0 && pos < b[i].size; pos += 1 << 20) {
			size_t n = (size_t)MIN(b[i].size - pos, (uint64_t)1 << 20);

			r = out(fd, sparse, b[i].host + pos, n, (off_t)(off + pos));
			atomic_fetch_add(done, n);
		}
		off += b[i].size;
	}
	if (r == 0 && sparse && ftruncate(fd, (off_t)off) < 0) {
		r = -errno;
	}
	if (r < 0) {
		r = error_set_errno(errp, -r, "dump: failed to save memory");
	}
out:
	free(m.v);
	free(head);
	free(regs);
	return r;
}

int vm_dump_elf(struct vm *vm, int fd, bool paging, bool filter, uint64_t begin, uint64_t length,
		atomic_uint_fast64_t *done, struct error **errp)
{
	struct block b[VM_RAM_REGIONS_MAX];
	unsigned nb = blocks(vm, filter, begin, length, b);
	int r;

	if (nb == 0) {
		return error_set(errp, EINVAL, "dump: no guest memory to dump");
	}
	r = vm_state_hold(vm, errp);
	if (r < 0) {
		return r;
	}
	r = write_core(vm, fd, paging, b, nb, done, errp);
	vm_state_release(vm);
	return r;
}

/* ---- a vCPU's address space, memsave ------------------------------------- */

/*
 * The paging registers of present vCPU @cpu. Running vCPUs leave KVM_RUN
 * for the moment of the read (as QEMU synchronizes a vCPU's state; no
 * event, the run state stays).
 */
int vm_vcpu_paging(struct vm *vm, unsigned cpu, struct vm_paging *ret, struct error **errp)
{
	struct vcpu *v = NULL;
	struct kvm_sregs s;
	bool running;
	int r;

	pthread_mutex_lock(&vm->ctl_lock);
	pthread_mutex_lock(&vm->run_lock);
	for (unsigned i = 0; i < vm->n_vcpus && !v; i++) {
		if (!vm->vcpus[i]->unplugged && vm->vcpus[i]->index == cpu) {
			v = vm->vcpus[i];
		}
	}
	pthread_mutex_unlock(&vm->run_lock);
	if (!v) {
		pthread_mutex_unlock(&vm->ctl_lock);
		return error_set(errp, EINVAL, "Parameter 'cpu-index' expects a CPU number");
	}
	running = vm_get_state(vm) == VM_STATE_RUNNING;
	if (running) {
		vm_vcpus_pause(vm);
	}
	r = ioctl(v->fd, KVM_GET_SREGS, &s) < 0 ? -errno : 0;
	if (running) {
		vm_vcpus_resume(vm);
	}
	pthread_mutex_unlock(&vm->ctl_lock);
	if (r < 0) {
		return error_set_errno(errp, -r, "vCPU %u: cannot read its registers", cpu);
	}
	*ret = (struct vm_paging){s.cr0, s.cr3, s.cr4, s.efer};
	return 0;
}

int vm_translate(struct vm *vm, const struct vm_paging *p, uint64_t la, uint64_t *ret_gpa)
{
	uint64_t len;

	return guest_translate(vm->mem, p, la, ret_gpa, &len);
}

int vm_read_memory(struct vm *vm, const struct vm_paging *p, uint64_t addr, void *buf, size_t len)
{
	uint8_t *to = buf;

	while (len > 0) {
		uint64_t gpa = addr, n = len;

		/* page by page through the tables; guest-physical in one piece */
		if (p && guest_translate(vm->mem, p, addr, &gpa, &n) < 0) {
			return -EFAULT;
		}
		n = MIN(n, (uint64_t)len);
		if (guest_mem_read(vm->mem, gpa, to, (size_t)n) < 0) {
			return -EFAULT;
		}
		addr += n;
		to += n;
		len -= (size_t)n;
	}
	return 0;
}

int vm_walk_pages(struct vm *vm, const struct vm_paging *p, vm_page_fn *fn, void *opaque)
{
	if (!(p->cr0 & CR0_PG)) {
		return -ENOENT;
	}
	return guest_walk(vm->mem, p, fn, opaque);
}

int vm_memsave(struct vm *vm, unsigned cpu, uint64_t addr, uint64_t size, int fd, const char *name,
	       struct error **errp)
{
	const size_t bufsize = 1 << 16;
	struct vm_paging p;
	uint64_t done = 0;
	uint8_t *buf;
	int r = vm_pmemsave_check(vm, size, errp);

	if (r == 0) {
		r = vm_vcpu_paging(vm, cpu, &p, errp);
	}
	if (r < 0) {
		return r;
	}
	buf = malloc(bufsize);
	if (!buf) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	while (r == 0 && done < size) {
		size_t n = (size_t)MIN(size - done, (uint64_t)bufsize);

		if (vm_read_memory(vm, &p, addr + done, buf, n) < 0) {
			r = error_set(errp, EFAULT,
				      "Invalid addr 0x%016" PRIx64 "/size %" PRId64 " specified",
				      addr, (int64_t)size);
		} else if (fd >= 0) {
			r = out(fd, false, buf, n, 0);
			if (r < 0) {
				r = error_set_errno(errp, -r, "writing memory to '%s'", name);
			}
		}
		done += n;
	}
	free(buf);
	return r;
}
