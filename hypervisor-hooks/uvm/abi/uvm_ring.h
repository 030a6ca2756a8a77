/*
 * uvm_ring.h - Xen-style shared request/response rings for uvm devices.
 *
 * Same protocol as Xen's io/ring.h, written for uvm: one shared page (or a
 * run of pages) holds a 64-byte header and a power-of-two array of slots,
 * each slot a union of one request and one response.  The front end
 * (usually the guest) produces requests and consumes responses; the back
 * end (usually the host) consumes requests and produces responses in the
 * same slots.
 *
 * Indices are free-running uint32_t counters; a slot is idx & (size - 1),
 * so every difference between indices is taken modulo 2^32 and stays
 * correct across wrap-around.
 *
 * Invariants (front ring f, back ring b, shared ring s):
 *   b.rsp_prod_pvt <= b.req_cons <= s.req_prod <= f.req_prod_pvt
 *   f.rsp_cons <= s.rsp_prod <= b.rsp_prod_pvt
 *   f.req_prod_pvt - f.rsp_cons <= size     (never more than size in flight)
 * (all "<=" in modulo-2^32 distance).  The back end must not trust a
 * front end: UVM_RING_REQUEST_CONS_OVERFLOW() detects a producer that ran
 * more than one ring ahead, and UVM_RING_COPY_REQUEST() reads a request
 * exactly once.
 *
 * Notification: a consumer that is about to sleep writes *_event = cons + 1
 * (UVM_RING_FINAL_CHECK_FOR_*); a producer that publishes the range
 * (old, new] notifies when that range contains *_event
 * (UVM_RING_PUSH_*_AND_CHECK_NOTIFY).  Both "publish index, then read
 * event" and "write event, then re-read index" are sequentially
 * consistent store/load pairs, so at least one side sees the other's
 * write and a wake-up cannot be lost.
 *
 * Shared indices are accessed with __atomic builtins (acquire when reading
 * the other side's producer index, release when publishing ours), so the
 * same code is correct in hosted host code and in freestanding guest code.
 * Only <stdint.h> is needed.  Per-ring type definitions come from
 * UVM_RING_DEFINE_TYPES(name, req_type, rsp_type), which declares
 *   union name_sring_entry, struct name_sring,
 *   struct name_front_ring, struct name_back_ring.
 */
#ifndef UVM_RING_H
#define UVM_RING_H

#include <stdint.h>

typedef uint32_t uvm_ring_idx_t;

#define UVM_RING_HEADER_SIZE 64

/*
 * Shared index accessors.  The notify handshake needs store->load ordering
 * on both sides (publish index, then read the peer's event; or publish
 * event, then re-read the peer's index); it uses sequentially consistent
 * accesses for exactly those steps rather than standalone fences, which
 * keeps the macros usable under ThreadSanitizer.
 */
#define UVM_RING_LOAD(p)          __atomic_load_n((p), __ATOMIC_RELAXED)
#define UVM_RING_LOAD_ACQUIRE(p)  __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define UVM_RING_LOAD_SC(p)       __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define UVM_RING_STORE(p, v)      __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define UVM_RING_STORE_RELEASE(p, v) \
	__atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define UVM_RING_STORE_SC(p, v)   __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)

/* Full barrier, for callers that need one around ring accesses. */
#define UVM_RING_MB()  __atomic_thread_fence(__ATOMIC_SEQ_CST)

/* Largest power of two <= n (0 for 0). */
static inline uint32_t uvm_ring_rounddown_pow2(uint64_t n)
{
	uint32_t p = 1;

	if (n == 0)
		return 0;
	if (n > 0x80000000ULL)
		return 0x80000000U;
	while ((uint64_t)p * 2 <= n)
		p *= 2;
	return p;
}

static inline uvm_ring_idx_t uvm_ring_min(uvm_ring_idx_t a, uvm_ring_idx_t b)
{
	return a < b ? a : b;
}

/*
 * Declare the shared ring and the two private ring views for a device.
 * The sring header is 64 bytes (four indices + padding, as in Xen).
 */
#define UVM_RING_DEFINE_TYPES(name, req_t, rsp_t)			\
union name##_sring_entry {						\
	req_t req;							\
	rsp_t rsp;							\
};									\
struct name##_sring {							\
	uvm_ring_idx_t req_prod, req_event;				\
	uvm_ring_idx_t rsp_prod, rsp_event;				\
	uint8_t pad[UVM_RING_HEADER_SIZE - 4 * sizeof(uvm_ring_idx_t)];	\
	union name##_sring_entry ring[];				\
};									\
struct name##_front_ring {						\
	uvm_ring_idx_t req_prod_pvt;					\
	uvm_ring_idx_t rsp_cons;					\
	uint32_t nr_ents;						\
	struct name##_sring *sring;					\
};									\
struct name##_back_ring {						\
	uvm_ring_idx_t rsp_prod_pvt;					\
	uvm_ring_idx_t req_cons;					\
	uint32_t nr_ents;						\
	struct name##_sring *sring;					\
}

/*
 * Number of slots in a shared ring occupying `bytes` bytes starting at s:
 * the largest power of two that fits after the header.
 */
#define UVM_RING_SIZE_FOR(s, bytes)					\
	uvm_ring_rounddown_pow2(((uint64_t)(bytes) - UVM_RING_HEADER_SIZE) / \
				sizeof((s)->ring[0]))

/* Initialise the shared part; done once by the side that allocates it. */
#define UVM_RING_SHARED_INIT(s)						\
	do {								\
		unsigned uvm_ring_i_;					\
		(s)->req_prod = 0;					\
		(s)->rsp_prod = 0;					\
		(s)->req_event = 1;					\
		(s)->rsp_event = 1;					\
		for (uvm_ring_i_ = 0; uvm_ring_i_ < sizeof((s)->pad);	\
		     uvm_ring_i_++)					\
			(s)->pad[uvm_ring_i_] = 0;			\
	} while (0)

/* Attach a fresh front end to an initialised shared ring of `bytes`. */
#define UVM_RING_FRONT_INIT(r, s, bytes)				\
	do {								\
		(r)->req_prod_pvt = 0;					\
		(r)->rsp_cons = 0;					\
		(r)->nr_ents = UVM_RING_SIZE_FOR(s, bytes);		\
		(r)->sring = (s);					\
	} while (0)

/* Attach a fresh back end to an initialised shared ring of `bytes`. */
#define UVM_RING_BACK_INIT(r, s, bytes)					\
	do {								\
		(r)->rsp_prod_pvt = 0;					\
		(r)->req_cons = 0;					\
		(r)->nr_ents = UVM_RING_SIZE_FOR(s, bytes);		\
		(r)->sring = (s);					\
	} while (0)

/*
 * Re-attach a back end to a ring already in use (e.g. after the host side
 * was restored from a checkpoint, when its private indices were lost):
 * resume after the last published response.  Requests that were consumed
 * but never answered are consumed again, so back ends must tolerate
 * replaying them.  (A front end keeps its private state in guest memory
 * and never needs this.)
 */
#define UVM_RING_BACK_ATTACH(r, s, bytes)				\
	do {								\
		(r)->rsp_prod_pvt = UVM_RING_LOAD(&(s)->rsp_prod);	\
		(r)->req_cons = (r)->rsp_prod_pvt;			\
		(r)->nr_ents = UVM_RING_SIZE_FOR(s, bytes);		\
		(r)->sring = (s);					\
	} while (0)

#define UVM_RING_SIZE(r) ((r)->nr_ents)

/* Slots the front end may still fill (requests not yet answered count). */
#define UVM_RING_FREE_REQUESTS(r)					\
	(UVM_RING_SIZE(r) - ((r)->req_prod_pvt - (r)->rsp_cons))

#define UVM_RING_FULL(r) (UVM_RING_FREE_REQUESTS(r) == 0)

/* Responses published by the back end and not yet consumed (front). */
#define UVM_RING_UNCONSUMED_RESPONSES_(r, load)				\
	((uvm_ring_idx_t)(load(&(r)->sring->rsp_prod) - (r)->rsp_cons))
#define UVM_RING_UNCONSUMED_RESPONSES(r)				\
	UVM_RING_UNCONSUMED_RESPONSES_(r, UVM_RING_LOAD_ACQUIRE)

/*
 * Requests published by the front end and not yet consumed (back),
 * bounded by the free response slots so a misbehaving front end cannot
 * make the back end overrun its own responses.
 */
#define UVM_RING_UNCONSUMED_REQUESTS_(r, load)				\
	uvm_ring_min((uvm_ring_idx_t)(load(&(r)->sring->req_prod) -	\
				      (r)->req_cons),			\
		     (uvm_ring_idx_t)(UVM_RING_SIZE(r) -			\
				      ((r)->req_cons - (r)->rsp_prod_pvt)))
#define UVM_RING_UNCONSUMED_REQUESTS(r)					\
	UVM_RING_UNCONSUMED_REQUESTS_(r, UVM_RING_LOAD_ACQUIRE)

/* Xen spellings. */
#define UVM_RING_HAS_UNCONSUMED_RESPONSES(r) UVM_RING_UNCONSUMED_RESPONSES(r)
#define UVM_RING_HAS_UNCONSUMED_REQUESTS(r)  UVM_RING_UNCONSUMED_REQUESTS(r)

/* Slot for index idx. */
#define UVM_RING_GET_REQUEST(r, idx)					\
	(&((r)->sring->ring[(idx) & (UVM_RING_SIZE(r) - 1)].req))
#define UVM_RING_GET_RESPONSE(r, idx)					\
	(&((r)->sring->ring[(idx) & (UVM_RING_SIZE(r) - 1)].rsp))

/*
 * Copy a request out of shared memory exactly once (the front end may be
 * rewriting it); use the copy, never the slot, afterwards.
 */
#define UVM_RING_COPY_REQUEST(r, idx, req)				\
	do {								\
		__builtin_memcpy((req), UVM_RING_GET_REQUEST(r, idx),	\
				 sizeof(*(req)));			\
		__atomic_signal_fence(__ATOMIC_SEQ_CST);		\
	} while (0)

#define UVM_RING_COPY_RESPONSE(r, idx, rsp)				\
	do {								\
		__builtin_memcpy((rsp), UVM_RING_GET_RESPONSE(r, idx),	\
				 sizeof(*(rsp)));			\
		__atomic_signal_fence(__ATOMIC_SEQ_CST);		\
	} while (0)

/* Back end: would consuming request `cons` overrun unanswered slots? */
#define UVM_RING_REQUEST_CONS_OVERFLOW(r, cons)				\
	((uvm_ring_idx_t)((cons) - (r)->rsp_prod_pvt) >= UVM_RING_SIZE(r))

/* Back end: is a producer index `prod` read from the front end sane? */
#define UVM_RING_REQUEST_PROD_OVERFLOW(r, prod)				\
	((uvm_ring_idx_t)((prod) - (r)->rsp_prod_pvt) > UVM_RING_SIZE(r))

/* Publish private producer indices without notification logic. */
#define UVM_RING_PUSH_REQUESTS(r)					\
	UVM_RING_STORE_RELEASE(&(r)->sring->req_prod, (r)->req_prod_pvt)

#define UVM_RING_PUSH_RESPONSES(r)					\
	UVM_RING_STORE_RELEASE(&(r)->sring->rsp_prod, (r)->rsp_prod_pvt)

/*
 * Publish requests; set `notify` (an int lvalue) when the consumer asked
 * to be woken for an index in the newly published range.
 */
#define UVM_RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(r, notify)		\
	do {								\
		uvm_ring_idx_t uvm_ring_old_ =				\
			UVM_RING_LOAD(&(r)->sring->req_prod);		\
		uvm_ring_idx_t uvm_ring_new_ = (r)->req_prod_pvt;	\
		UVM_RING_STORE_SC(&(r)->sring->req_prod, uvm_ring_new_); \
		(notify) = (uvm_ring_idx_t)(uvm_ring_new_ -		\
			UVM_RING_LOAD_SC(&(r)->sring->req_event)) <	\
			(uvm_ring_idx_t)(uvm_ring_new_ - uvm_ring_old_); \
	} while (0)

#define UVM_RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(r, notify)		\
	do {								\
		uvm_ring_idx_t uvm_ring_old_ =				\
			UVM_RING_LOAD(&(r)->sring->rsp_prod);		\
		uvm_ring_idx_t uvm_ring_new_ = (r)->rsp_prod_pvt;	\
		UVM_RING_STORE_SC(&(r)->sring->rsp_prod, uvm_ring_new_); \
		(notify) = (uvm_ring_idx_t)(uvm_ring_new_ -		\
			UVM_RING_LOAD_SC(&(r)->sring->rsp_event)) <	\
			(uvm_ring_idx_t)(uvm_ring_new_ - uvm_ring_old_); \
	} while (0)

/*
 * Back end, before sleeping: set `work` (an int lvalue) to the number of
 * unconsumed requests; if there are none, ask to be notified for the next
 * one and look again, closing the race with a concurrent producer.
 */
#define UVM_RING_FINAL_CHECK_FOR_REQUESTS(r, work)			\
	do {								\
		(work) = UVM_RING_UNCONSUMED_REQUESTS(r);		\
		if (work)						\
			break;						\
		UVM_RING_STORE_SC(&(r)->sring->req_event,		\
				  (uvm_ring_idx_t)((r)->req_cons + 1));	\
		(work) = UVM_RING_UNCONSUMED_REQUESTS_(r, UVM_RING_LOAD_SC); \
	} while (0)

/* Front end, before sleeping: the same for responses. */
#define UVM_RING_FINAL_CHECK_FOR_RESPONSES(r, work)			\
	do {								\
		(work) = UVM_RING_UNCONSUMED_RESPONSES(r);		\
		if (work)						\
			break;						\
		UVM_RING_STORE_SC(&(r)->sring->rsp_event,		\
				  (uvm_ring_idx_t)((r)->rsp_cons + 1));	\
		(work) = UVM_RING_UNCONSUMED_RESPONSES_(r, UVM_RING_LOAD_SC); \
	} while (0)

#endif
