/*
 * The benchmark's tiny guest: write "B\n" to COM1 (port 0x3f8) and halt
 * forever with interrupts off, so the VM stays idle at no cost.
 *
 * It is an ELF64 image loaded at 1 MiB with a PVH note (Xen
 * XEN_ELFNOTE_PHYS32_ENTRY), so QEMU's `-M microvm -kernel` boots it in
 * 32-bit protected mode at pvh_start, and a VMM that ignores the note and
 * enters e_entry in 64-bit long mode runs the same bytes: the instructions
 * below encode identically in both modes (no stack, no memory operands).
 * Built with the build's GUEST_CC and bench-guest.ld.
 */

	.section .note.Xen, "a"
	.balign 4
	.long 4			/* n_namesz: "Xen\0" */
	.long 4			/* n_descsz */
	.long 18		/* n_type: XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.long pvh_start		/* 32-bit physical entry */

	/* Right after the note: readers that load 8 bytes see a zero high half. */
	.section .rodata.pvhpad, "a"
	.long 0

	.text
	.globl pvh_start
	.globl _start
pvh_start:
_start:
	cli
	movw $0x3f8, %dx
	movb $'B', %al
	outb %al, %dx
	movb $'\n', %al
	outb %al, %dx
1:	hlt
	jmp 1b
