/*
 * sdk.h - the uvm guest SDK: everything a freestanding uvm guest links
 * against (crt0.S, string.c, printf.c, pagealloc.c, cmdline.c, events.c,
 * sdk.c).
 *
 * Guest programs define `int main(const struct uvm_start_info *si)`,
 * which runs on vCPU 0 once the SDK is initialised; returning from it
 * powers the guest off with the return value as the code.  Other vCPUs
 * run `secondary_main(si, vcpu)` if the guest defines it (after vCPU 0 has
 * initialised the SDK), otherwise they block forever.
 *
 * Rules for guest code: no thread-local storage and no %fs/%gs (guests
 * run on host threads whose %fs is the host's), no libc; all state lives
 * in guest memory, because a restored guest resumes exactly where it was
 * paused without re-running any entry code.
 */
#ifndef UVM_SDK_H
#define UVM_SDK_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "hypercall.h"
#include "uvm_abi.h"

/* errno values (Linux numbering) for freestanding guest code, which has
 * no <errno.h>; hypercalls return them negated. */
#define EIO 5
#define ENOMEM 12
#define ENODEV 19
#define EINVAL 22

/* ---- guest entry points (defined by the guest program) ---- */
int main(const struct uvm_start_info *si);
void secondary_main(const struct uvm_start_info *si, unsigned vcpu);

/* ---- platform pages, set up before main() ---- */
extern struct uvm_start_info *sdk_start_info;
extern struct uvm_shared_info *sdk_shared_info;

/* This vCPU's id: vCPU i runs on the i-th UVM_VCPU_STACK_SIZE stack down
 * from the top of guest memory (uvm_abi.h), so the stack pointer says. */
static inline unsigned sdk_vcpu_id(void)
{
	uint64_t sp, top = UVM_GUEST_BASE + sdk_start_info->arena_size;

	__asm__ volatile("mov %%rsp, %0" : "=r"(sp));
	return (unsigned)((top - sp) / UVM_VCPU_STACK_SIZE);
}

static inline void *pfn_to_virt(uint64_t pfn)
{
	return (void *)(uintptr_t)UVM_ADDR(pfn);
}

static inline uint64_t virt_to_pfn(const void *p)
{
	return ((uint64_t)(uintptr_t)p - UVM_GUEST_BASE) >> UVM_PAGE_SHIFT;
}

/* Compiler barrier: no memory access moves across it. */
#define barrier() __atomic_signal_fence(__ATOMIC_SEQ_CST)

static inline void cpu_relax(void)
{
	__asm__ volatile("pause" ::: "memory");
}

/*
 * Report words (uvm_start_info.report) are read by host tools from a
 * paused or live guest.  report_set() is a single 64-bit store, emitted
 * after every memory access that precedes it in program order.
 */
static inline void report_set(unsigned word, uint64_t value)
{
	barrier();
	*(volatile uint64_t *)&sdk_start_info->report[word] = value;
	barrier();
}

static inline uint64_t report_get(unsigned word)
{
	return *(volatile uint64_t *)&sdk_start_info->report[word];
}

/* ---- spinlock (yields to the host while contended) ---- */
struct sdk_lock {
	uint32_t locked;
};

void sdk_lock(struct sdk_lock *l);
void sdk_unlock(struct sdk_lock *l);

/* ---- string.c ---- */
void *memset(void *s, int c, size_t n);
void *memcpy(void *restrict d, const void *restrict s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);

/* ---- printf.c ---- */
int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));
int snprintf(char *buf, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Console ring output; lines longer than PRINTF_MAX are truncated. */
#define PRINTF_MAX 512
int vprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
int printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Write raw bytes to the console ring, waiting for space. */
void cons_write(const char *buf, size_t len);
/* Write through UVM_HC_CONSOLE_WRITE, bypassing the ring (panics). */
void cons_write_direct(const char *buf, size_t len);
__attribute__((noreturn, format(printf, 1, 2)))
void panic(const char *fmt, ...);

/* ---- pagealloc.c: pages of [heap_start_pfn, heap_end_pfn) ---- */
void pagealloc_init(uint64_t start_pfn, uint64_t end_pfn);
/* n contiguous pages, or NULL; contents are not cleared. */
void *alloc_pages(uint64_t n);
void free_pages(void *p, uint64_t n);
uint64_t pagealloc_free_count(void);

/* ---- cmdline.c: "key=value key2=value2" ---- */
/* Number with optional K/M/G/T suffix (powers of 1024); 0x for hex. */
uint64_t cmdline_u64(const char *key, uint64_t dflt);
/* Copy the value of key into buf (NUL-terminated); -1 if absent. */
int cmdline_str(const char *key, char *buf, size_t size);
/* Parse a number as cmdline_u64 does; 0 on success, -1 if malformed. */
int cmdline_parse_u64(const char *s, size_t len, uint64_t *out);

/* ---- events.c: event channels in the shared-info page ---- */
int evtchn_test_and_clear(unsigned port);
int evtchn_is_pending(unsigned port);
void evtchn_mask(unsigned port);
void evtchn_unmask(unsigned port);
void evtchn_notify(unsigned port);
/* Bind `port` to the calling vCPU: its UVM_HC_BLOCK wakes for it. */
void evtchn_bind_self(unsigned port);
/* Block until `port` is pending, then clear it. */
void wait_event(unsigned port);
/* Sleep for at least ns nanoseconds of guest time (uses the timer). */
void sleep_ns(uint64_t ns);
static inline uint64_t clock_ns(void)
{
	return hc_clock();
}

/* ---- sdk.c ---- */
__attribute__((noreturn))
void sdk_start(struct uvm_start_info *si, unsigned vcpu);
__attribute__((noreturn)) void sdk_idle(void);

#endif
