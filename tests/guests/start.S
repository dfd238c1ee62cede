/*
 * Entry code shared by the test guests. Two ways in:
 *  - _start: the ELF entry, 64-bit long mode with the loader's identity
 *    map (vmmd's direct boot);
 *  - pvh_start32: the PVH entry (XEN_ELFNOTE_PHYS32_ENTRY), 32-bit
 *    protected mode with paging off (vmmd and QEMU -kernel).
 * Both switch to the guest's own GDT and page tables (identity map of the
 * first 4 GiB in 2 MiB pages) and call guest_main() on CPU 0's stack.
 * ap_trampoline (at 0x40000, SIPI vector 0x40) brings application
 * processors from real mode to long mode and calls ap_main(index).
 */
#define MSR_EFER 0xc0000080
#define STACK_SIZE 8192

	.section .note.pvh, "a"
	.p2align 2
	.long 4			/* namesz */
	.long 4			/* descsz */
	.long 18		/* XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.long pvh_start32

	.section .trampoline, "ax"
	.code16
	.globl ap_trampoline
ap_trampoline:
	cli
	mov %cs, %ax
	mov %ax, %ds
	lgdtl tramp_gdt_ptr - ap_trampoline
	mov %cr0, %eax
	or $1, %eax
	mov %eax, %cr0
	ljmpl $0x18, $ap_start32
	.p2align 3
tramp_gdt_ptr:
	.word gdt_end - gdt - 1
	.long gdt

/* PAE, our page tables, EFER.LME, paging on; no stack needed. */
.macro ENABLE_LONG_MODE
	mov %cr4, %eax
	or $0x20, %eax
	mov %eax, %cr4
	mov $pml4, %eax
	mov %eax, %cr3
	mov $MSR_EFER, %ecx
	rdmsr
	or $0x100, %eax
	wrmsr
	mov %cr0, %eax
	or $0x80000001, %eax
	mov %eax, %cr0
.endm

	.section .text.boot, "ax"
	.code32
	.globl pvh_start32
pvh_start32:
	cli
	lgdt gdt_ptr
	mov $0x10, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	ENABLE_LONG_MODE
	ljmp $0x08, $start64

ap_start32:
	mov $0x10, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	ENABLE_LONG_MODE
	ljmp $0x08, $ap_start64

	.code64
	.globl _start
_start:
	cli
	lgdt gdt_ptr(%rip)
	mov $pml4, %rax
	mov %rax, %cr3
start64:
	mov $0x10, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	mov %ax, %fs
	mov %ax, %gs
	lea stacks + STACK_SIZE(%rip), %rsp
	/* Reload CS from our GDT. */
	lea 1f(%rip), %rax
	pushq $0x08
	push %rax
	lretq
1:	call guest_main
2:	cli
	hlt
	jmp 2b

ap_start64:
	mov $0x10, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	mov $1, %edi
	lock xadd %edi, next_cpu(%rip)
	mov %rdi, %rax
	inc %rax
	shl $13, %rax
	lea stacks(%rip), %rsp
	add %rax, %rsp
	add $STACK_SIZE, %rsp
	call ap_main
3:	cli
	hlt
	jmp 3b

	.section .data
	.p2align 3
	.globl next_cpu
next_cpu:
	.long 0
	.long 0
gdt:
	.quad 0
	.quad 0x00af9a000000ffff	/* 0x08: 64-bit code */
	.quad 0x00cf92000000ffff	/* 0x10: data */
	.quad 0x00cf9a000000ffff	/* 0x18: 32-bit code */
gdt_end:
gdt_ptr:
	.word gdt_end - gdt - 1
	.quad gdt

	.p2align 12
pml4:
	.quad pdpt + 3
	.fill 511, 8, 0
pdpt:
	.quad pd + 0x0003
	.quad pd + 0x1003
	.quad pd + 0x2003
	.quad pd + 0x3003
	.fill 508, 8, 0
pd:
	.set i, 0
	.rept 2048
	.quad (i << 21) | 0x83
	.set i, i + 1
	.endr

	.section .bss
	.p2align 12
	.globl stacks
stacks:
	.fill 65 * STACK_SIZE, 1, 0
