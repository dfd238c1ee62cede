/*
 * dump-guest-memory's ELF core, in the layout QEMU writes with paging off
 * (readable by gdb and crash):
 *
 *   ELF header       ELFCLASS64, ET_CORE; EM_X86_64 when the first vCPU is
 *                    in long mode, else EM_386 (as QEMU decides)
 *   program headers  one PT_NOTE, then one PT_LOAD per block of guest RAM
 *                    (p_paddr = p_vaddr = its guest-physical address)
 *   notes            each present vCPU's NT_PRSTATUS ("CORE"; pr_pid its
 *                    index + 1), then each vCPU's "QEMU" note (type 0: the
 *                    CPU state crash reads: registers, segments, control
 *                    registers, KernelGSBase)
 *   memory           the blocks back to back; zero pages stay holes in a
 *                    regular file
 *
 * The note layouts are the Linux ABI (struct elf_prstatus for x86-64 and
 * i386) and QEMU's documented QEMUCPUState, version 1.
 *
 * Threads: vm_dump_elf runs on a worker between vm_save_begin and
 * vm_save_end (the vCPUs parked); it drains device requests and holds the
 * I/O thread while it reads, so no device writes guest RAM meanwhile.
 */
#include "config.h"

#include <elf.h>
#include <errno.h>
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
#include "hw/core/vcpu.h"
#include "hw/core/vm-int.h"
#include "vmmd/vm.h"

#define PAGE 4096u
#define MSR_KERNEL_GS_BASE 0xc0000102u
#define EFER_LMA (1u << 10)

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

static int write_core(struct vm *vm, int fd, const struct block *b, unsigned nb,
		      atomic_uint_fast64_t *done, struct error **errp)
{
	unsigned ncpu = 0;
	struct cpu_regs *regs = calloc(vm->n_vcpus, sizeof(*regs));
	size_t notes_size, head_size;
	uint8_t *head = NULL, *p;
	bool lma, sparse;
	struct stat st;
	off_t base = 0;
	uint64_t off;
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
	if (r < 0) {
		goto out;
	}
	lma = ncpu && (regs[0].s.efer & EFER_LMA);
	notes_size =
		ncpu * (NOTE_SIZE(lma ? sizeof(struct prstatus64) : sizeof(struct prstatus32)) +
			NOTE_SIZE(sizeof(struct qemu_cpu_state)));
	head_size = sizeof(Elf64_Ehdr) + (1 + nb) * sizeof(Elf64_Phdr) + notes_size;
	head = calloc(1, head_size);
	if (!head) {
		r = error_set(errp, ENOMEM, "out of memory");
		goto out;
	}

	Elf64_Ehdr *eh = (Elf64_Ehdr *)head;
	Elf64_Phdr *ph = (Elf64_Phdr *)(head + sizeof(*eh));

	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_ident[EI_VERSION] = EV_CURRENT;
	eh->e_type = ET_CORE;
	eh->e_machine = lma ? EM_X86_64 : EM_386;
	eh->e_version = EV_CURRENT;
	eh->e_phoff = sizeof(*eh);
	eh->e_ehsize = sizeof(*eh);
	eh->e_phentsize = sizeof(*ph);
	eh->e_phnum = (Elf64_Half)(1 + nb);
	ph[0] = (Elf64_Phdr){.p_type = PT_NOTE,
			     .p_offset = head_size - notes_size,
			     .p_filesz = notes_size,
			     .p_memsz = notes_size};
	off = head_size;
	for (unsigned i = 0; i < nb; i++) {
		ph[1 + i] = (Elf64_Phdr){.p_type = PT_LOAD,
					 .p_offset = off,
					 .p_vaddr = b[i].gpa,
					 .p_paddr = b[i].gpa,
					 .p_filesz = b[i].size,
					 .p_memsz = b[i].size};
		off += b[i].size;
	}
	p = head + head_size - notes_size;
	for (unsigned i = 0; i < ncpu; i++) {
		p = prstatus_note(p, lma, i + 1, &regs[i]);
	}
	for (unsigned i = 0; i < ncpu; i++) {
		p = qemu_note(p, &regs[i]);
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
	free(head);
	free(regs);
	return r;
}

int vm_dump_elf(struct vm *vm, int fd, bool filter, uint64_t begin, uint64_t length,
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
	r = write_core(vm, fd, b, nb, done, errp);
	vm_state_release(vm);
	return r;
}
