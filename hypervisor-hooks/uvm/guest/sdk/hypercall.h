/*
 * hypercall.h - uvm hypercall wrappers for guest code.
 *
 * A hypercall is `ud2` with the call number in rax and up to three
 * arguments in rdi, rsi, rdx; the result (negative errno on failure) comes
 * back in rax and the host preserves every other register and the flags.
 * Each wrapper is one asm statement with a "memory" clobber, so the
 * compiler has written back every store before the call (the host may read
 * guest memory there, and a pause taking effect at the call sees program
 * order) and reloads memory after it.
 */
#ifndef UVM_HYPERCALL_H
#define UVM_HYPERCALL_H

#include <stdint.h>

#include "uvm_abi.h"

static inline long uvm_hypercall0(long nr)
{
	long ret;

	__asm__ volatile("ud2" : "=a"(ret) : "a"(nr) : "memory", "cc");
	return ret;
}

static inline long uvm_hypercall1(long nr, uint64_t a0)
{
	long ret;

	__asm__ volatile("ud2"
			 : "=a"(ret)
			 : "a"(nr), "D"(a0)
			 : "memory", "cc");
	return ret;
}

static inline long uvm_hypercall2(long nr, uint64_t a0, uint64_t a1)
{
	long ret;

	__asm__ volatile("ud2"
			 : "=a"(ret)
			 : "a"(nr), "D"(a0), "S"(a1)
			 : "memory", "cc");
	return ret;
}

static inline long uvm_hypercall3(long nr, uint64_t a0, uint64_t a1,
				  uint64_t a2)
{
	long ret;

	__asm__ volatile("ud2"
			 : "=a"(ret)
			 : "a"(nr), "D"(a0), "S"(a1), "d"(a2)
			 : "memory", "cc");
	return ret;
}

static inline long hc_console_write(const void *buf, uint64_t len)
{
	return uvm_hypercall2(UVM_HC_CONSOLE_WRITE, (uint64_t)(uintptr_t)buf,
			      len);
}

static inline long hc_evtchn_notify(uint32_t port)
{
	return uvm_hypercall1(UVM_HC_EVTCHN_NOTIFY, port);
}

/* Sleep until an unmasked event channel is pending. */
static inline long hc_block(void)
{
	return uvm_hypercall0(UVM_HC_BLOCK);
}

static inline long hc_yield(void)
{
	return uvm_hypercall0(UVM_HC_YIELD);
}

/* Raise this vCPU's UVM_PORT_TIMER(v) at guest time `deadline_ns`; 0
 * cancels. */
static inline long hc_set_timer(uint64_t deadline_ns)
{
	return uvm_hypercall1(UVM_HC_SET_TIMER, deadline_ns);
}

/* Guest monotonic time in ns. */
static inline uint64_t hc_clock(void)
{
	return (uint64_t)uvm_hypercall0(UVM_HC_CLOCK);
}

__attribute__((noreturn)) static inline void hc_shutdown(
	enum uvm_shutdown_reason reason, uint64_t code)
{
	for (;;)
		(void)uvm_hypercall2(UVM_HC_SHUTDOWN, (uint64_t)reason, code);
}

#endif
