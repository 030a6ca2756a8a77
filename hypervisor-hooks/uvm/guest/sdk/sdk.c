/*
 * sdk.c - guest start-up after crt0, the idle loop and the spinlock.
 *
 * vCPU 0 validates the start-info page, initialises the SDK (platform
 * pointers, page allocator, event-channel masks), publishes
 * sdk_boot_state = SDK_BOOT_READY and runs main().  Other vCPUs wait for
 * SDK_BOOT_READY before touching anything, then run secondary_main().
 * sdk_boot_state lives in .data (initialised non-zero), so clearing .bss
 * cannot race with the secondaries reading it.
 */
#include "sdk.h"

#define SDK_BOOT_STARTING 0x5354 /* "ST" */
#define SDK_BOOT_READY    0x5244 /* "RD" */

struct uvm_start_info *sdk_start_info;
struct uvm_shared_info *sdk_shared_info;

static uint32_t sdk_boot_state = SDK_BOOT_STARTING;

__attribute__((weak)) void secondary_main(const struct uvm_start_info *si,
					  unsigned vcpu)
{
	(void)si;
	(void)vcpu;
}

void sdk_idle(void)
{
	for (;;)
		(void)hc_block();
}

static void sdk_fail(const char *msg)
{
	cons_write_direct(msg, strlen(msg));
	hc_shutdown(UVM_SHUTDOWN_CRASH, 1);
}

static void sdk_init(struct uvm_start_info *si)
{
	if (si == NULL || si->magic != UVM_START_MAGIC)
		sdk_fail("sdk: bad start-info magic\n");
	sdk_start_info = si;
	sdk_shared_info = pfn_to_virt(UVM_SHARED_INFO_PFN);
	if (si->heap_start_pfn < UVM_RESERVED_PFNS ||
	    si->heap_end_pfn < si->heap_start_pfn)
		sdk_fail("sdk: bad heap range in start-info\n");
	pagealloc_init(si->heap_start_pfn, si->heap_end_pfn);
	/*
	 * The SDK never sleeps on the console port (a full ring is waited
	 * out with yields), so keep host->guest console notifications from
	 * waking every blocked vCPU.
	 */
	evtchn_mask(si->console_port);
}

void sdk_start(struct uvm_start_info *si, unsigned vcpu)
{
	if (vcpu == 0) {
		sdk_init(si);
		__atomic_store_n(&sdk_boot_state, SDK_BOOT_READY,
				 __ATOMIC_RELEASE);
		hc_shutdown(UVM_SHUTDOWN_POWEROFF, (uint64_t)(int64_t)main(si));
	}
	while (__atomic_load_n(&sdk_boot_state, __ATOMIC_ACQUIRE) !=
	       SDK_BOOT_READY) {
		cpu_relax();
		(void)hc_yield();
	}
	secondary_main(si, vcpu);
	sdk_idle();
}

void sdk_lock(struct sdk_lock *l)
{
	unsigned spins = 0;

	while (__atomic_exchange_n(&l->locked, 1, __ATOMIC_ACQUIRE)) {
		while (__atomic_load_n(&l->locked, __ATOMIC_RELAXED)) {
			cpu_relax();
			if (++spins % 256 == 0)
				(void)hc_yield();
		}
	}
}

void sdk_unlock(struct sdk_lock *l)
{
	__atomic_store_n(&l->locked, 0, __ATOMIC_RELEASE);
}
