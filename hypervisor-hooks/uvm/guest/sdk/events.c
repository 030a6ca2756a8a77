/*
 * events.c - event channels in the shared-info page.
 *
 * evtchn_pending / evtchn_mask are bitmaps of UVM_NR_EVTCHN bits shared
 * with the host, which sets pending bits from its own threads; every
 * read-modify-write here is therefore a locked __atomic operation.
 * UVM_HC_BLOCK returns as soon as any unmasked port bound to the calling
 * vCPU is pending (evtchn_vcpu[], vCPU 0 unless rebound), so the waiters
 * below loop: test-and-clear their port, otherwise block again.
 *
 * Each vCPU has its own timer (UVM_HC_SET_TIMER raises UVM_PORT_TIMER(v),
 * bound to v), so any number of vCPUs may sleep_ns at once.  A stale
 * timer event is harmless: the sleeper re-reads the clock after every
 * wake-up.
 */
#include "sdk.h"

static uint64_t *evtchn_word(uint64_t *map, unsigned port)
{
	return &map[(port % UVM_NR_EVTCHN) / 64];
}

static uint64_t evtchn_bit(unsigned port)
{
	return 1ULL << (port % 64);
}

int evtchn_is_pending(unsigned port)
{
	uint64_t *w = evtchn_word(sdk_shared_info->evtchn_pending, port);

	return (__atomic_load_n(w, __ATOMIC_ACQUIRE) & evtchn_bit(port)) != 0;
}

int evtchn_test_and_clear(unsigned port)
{
	uint64_t *w = evtchn_word(sdk_shared_info->evtchn_pending, port);
	uint64_t bit = evtchn_bit(port);

	if (!(__atomic_load_n(w, __ATOMIC_RELAXED) & bit))
		return 0;
	return (__atomic_fetch_and(w, ~bit, __ATOMIC_SEQ_CST) & bit) != 0;
}

void evtchn_mask(unsigned port)
{
	__atomic_fetch_or(evtchn_word(sdk_shared_info->evtchn_mask, port),
			  evtchn_bit(port), __ATOMIC_SEQ_CST);
}

void evtchn_unmask(unsigned port)
{
	__atomic_fetch_and(evtchn_word(sdk_shared_info->evtchn_mask, port),
			   ~evtchn_bit(port), __ATOMIC_SEQ_CST);
}

void evtchn_notify(unsigned port)
{
	(void)hc_evtchn_notify(port);
}

void evtchn_bind_self(unsigned port)
{
	__atomic_store_n(&sdk_shared_info->evtchn_vcpu[port % UVM_NR_EVTCHN],
			 (uint8_t)sdk_vcpu_id(), __ATOMIC_SEQ_CST);
}

void wait_event(unsigned port)
{
	while (!evtchn_test_and_clear(port))
		(void)hc_block();
}

void sleep_ns(uint64_t ns)
{
	uint64_t deadline = hc_clock() + ns;
	unsigned port = UVM_PORT_TIMER(sdk_vcpu_id());

	if (ns == 0) {
		(void)hc_yield();
		return;
	}
	(void)hc_set_timer(deadline);
	while (hc_clock() < deadline) {
		if (!evtchn_test_and_clear(port))
			(void)hc_block();
	}
	(void)evtchn_test_and_clear(port);
}
