/*
 * rep_int.h - what the checkpoint engine (primary.c), the replica
 * (standby.c) and the snapshot code share.  Internal to replicator/.
 */
#ifndef TANDEM_REP_INT_H
#define TANDEM_REP_INT_H

#include <pthread.h>
#include <stdint.h>

#include "hv.h"
#include "replicator.h"
#include "wire.h"

/*
 * Channels of a replication link.  Every record of an epoch goes on the
 * one data channel, in order, END last: records of epoch e+1 can never
 * overtake e's END (bulk channels are not ordered with each other), and
 * disk writes keep their order.  The control channel carries what must
 * not wait behind a large epoch: HELLO, heartbeats, ACK, DRILL.
 */
#define REP_CHAN_CTL 0
#define REP_CHAN_DATA 1
#define REP_NR_BULK 1   /* bulk channels a replication link needs */
#define REP_MAX_DEVICES 8
#define REP_HELLO_TIMEOUT_MS 5000

uint64_t rep_now_ns(void);
/* Milliseconds from `then` to `now`; 0 when `then` is unset (0) or not
 * before `now` (a `now` read before a lock, `then` set since). */
uint64_t rep_ms_since(uint64_t now, uint64_t then);
/* The DOMAIN_INFO backend number of a domain (enum wire_backend). */
uint32_t rep_wire_backend(const struct hv_domain *dom);

void rep_vcpu_to_wire(const struct hv_vcpu_state *hs, unsigned id,
		      struct wire_vcpu_state *ws);
void rep_vcpu_from_wire(const struct wire_vcpu_state *ws,
			struct hv_vcpu_state *hs);

/* The body of the one record in buf (put there by a wire_*_put). */
void rep_record_body(const struct wire_buf *buf, const uint8_t **body,
		     size_t *len);

/*
 * Control-channel sender: records on a channel must not go back in epoch,
 * and the engine, the receiver and the daemon's heartbeat all send on
 * channel 0, so they share one lock and one epoch stamp.
 */
struct rep_ctl {
	pthread_mutex_t lock;
	struct tp_link *link;
	uint64_t stamp;         /* epoch of the last record sent */
};

void rep_ctl_init(struct rep_ctl *c);
void rep_ctl_fini(struct rep_ctl *c);
void rep_ctl_set_link(struct rep_ctl *c, struct tp_link *link);
/* epoch 0 = the stamp as it is. */
int rep_ctl_send(struct rep_ctl *c, uint32_t type, uint64_t epoch,
		 const void *body, size_t len);
/* If *linkp (guarded by lock) is set: stop its receiver thread (abort
 * the link, join it), detach the control sender, clear *linkp, then free
 * the link.  Returns whether there was a link. */
bool rep_link_teardown(pthread_mutex_t *lock, struct tp_link **linkp,
		       pthread_t rx, bool *rx_running, struct rep_ctl *ctl);
/*
 * A receiver thread's loop: take records from the link (read from *linkp
 * under lock), stamp *last_heard (under lock) and hand each to handle,
 * until the link fails (false; err says why) or handle refuses one (true:
 * the link is aborted, the handler has said why).
 */
bool rep_rx_loop(pthread_mutex_t *lock, struct tp_link **linkp,
		 uint64_t *last_heard,
		 int (*handle)(void *arg, const struct tp_msg *m), void *arg,
		 char *err, size_t errlen);
/* Wait until what was sent on the link is in the kernel (or it fails);
 * the link cannot be freed meanwhile. */
int rep_ctl_flush(struct rep_ctl *c, int timeout_ms);
void rep_ctl_heartbeat(struct rep_ctl *c, enum rep_role role,
		       uint64_t generation, uint64_t epoch, uint32_t flags);

#endif
