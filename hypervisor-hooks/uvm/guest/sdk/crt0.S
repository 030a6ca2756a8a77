/*
 * crt0.S - entry point of every uvm guest.
 *
 * The host starts every vCPU here with rdi = start-info address,
 * rsi = vCPU id and rsp = top of that vCPU's stack (16-byte aligned).
 * Each vCPU puts the FPU/SSE control state, direction flag and frame
 * pointer into a known state; vCPU 0 alone clears .bss (other vCPUs wait
 * in sdk_start() until vCPU 0 has finished initialising, so nothing they
 * write can be wiped).  Then sdk_start(si, vcpu) takes over and never
 * returns.
 *
 * This code runs only at boot: a guest restored from a checkpoint resumes
 * at its saved registers, and its .bss is whatever its memory held.
 * The code is position independent (RIP-relative only).
 */
	.section .text.entry, "ax", @progbits
	.globl _start
	.type _start, @function
_start:
	cld
	xorl	%ebp, %ebp
	fninit
	ldmxcsr	crt0_mxcsr(%rip)

	/* keep start-info and vCPU id across the .bss clear */
	movq	%rdi, %r12
	movq	%rsi, %r13

	testq	%r13, %r13
	jnz	1f
	leaq	__bss_start(%rip), %rdi
	leaq	__bss_end(%rip), %rcx
	subq	%rdi, %rcx
	xorl	%eax, %eax
	rep stosb
1:
	movq	%r12, %rdi
	movq	%r13, %rsi
	andq	$-16, %rsp
	call	sdk_start
	/* not reached: crash the guest */
2:	movl	$7, %eax		/* UVM_HC_SHUTDOWN */
	movl	$1, %edi		/* UVM_SHUTDOWN_CRASH */
	movl	$0xdead, %esi
	ud2
	jmp	2b
	.size _start, . - _start

	.section .rodata
	.balign 4
crt0_mxcsr:
	.long	0x1f80		/* all exceptions masked, round to nearest */

	.section .note.GNU-stack, "", @progbits
