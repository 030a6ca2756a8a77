/*
 * stream.c - the stream device back end: TCP clients on one side, the
 * guest's two byte rings (tx: guest -> host, rx: host -> guest) on the
 * other, framed as OPEN / DATA / CLOSE / CREDIT messages (abi/uvm_dev.h,
 * codec in stream_codec.c).  One thread per device runs an epoll loop over
 * the listening socket, the client sockets (non-blocking, edge-triggered),
 * an eventfd the guest's notifications kick and an eventfd for control.
 * This file has the rings, the connection table, the thread and the ops;
 * stream_net.c the sockets (listen, accept, client reads and writes);
 * stream_int.h the state both share.
 *
 * Flow control.  At OPEN the guest grants the host UVM_STREAM_WINDOW bytes
 * for host -> guest DATA; the host reads a client only while it has credit
 * for it and the rx ring has room, so TCP back-pressure does the rest.
 * The host grants the guest UVM_STREAM_WINDOW at OPEN too and grants more
 * (CREDIT) only as guest bytes are actually written to the client socket.
 * Hence, per connection, guest_credit + held + credit_owed = WINDOW: held
 * output never exceeds the window, and a client that never reads stops
 * the guest's output to that connection only.  DATA beyond its credit is
 * a protocol violation.  The host's CLOSE ends host -> guest data only:
 * CREDIT may follow it while the guest still sends (a half-closed client
 * waiting for its answer).
 *
 * Output gate.  Guest bytes are tagged with uvm_gate_epoch() when taken
 * off the tx ring and written to the client only once uvm_gate_released()
 * reaches the tag; the guest's CLOSE (a FIN to the client) is tagged and
 * held the same way.
 *
 * A connection (enum uvm_stream_conn_state, set only by
 * uvm_stream_set_state, which logs old -> new at debug):
 *
 *   FREE --accept--> OPEN                     (OPEN queued for the guest)
 *   OPEN --client EOF/error--> CLIENT_DONE    (CLOSE queued for the guest;
 *                                              guest output still goes to
 *                                              the client while it lives)
 *   OPEN, CLIENT_DONE --guest CLOSE--> GUEST_DONE  (held output drains)
 *   GUEST_DONE --drained, close released--> CLOSING (socket shut and
 *                                              closed; CLOSE queued unless
 *                                              sent)
 *   CLOSING --our CLOSE in the ring--> FREE   (the id may be reused)
 *   FREE --load--> CLIENT_DONE or CLOSING     (restored, socketless)
 * A client gone before its OPEN reached the ring is freed at once: the
 * guest never heard of it.  An id is reused only once the host has both
 * sent and received CLOSE on it.
 *
 * Trust.  Everything in guest memory is untrusted; the codec checks it.
 * The host keeps its own ring size and its own tx cons / rx prod.  A
 * malformed tx ring, an impossible rx cons or a DATA beyond credit is
 * logged once and breaks the device: client sockets and the listening
 * socket are closed and the guest is ignored until the domain goes; the
 * rest of the host carries on.  DATA or CREDIT for an unknown id, or after
 * the guest's own CLOSE, is dropped and counted (racing a client that
 * left is normal).
 *
 * Save / load.  The blob is the connection table (stream_codec.h).  A load
 * happens in another process, where the client sockets do not exist: each
 * connection the guest knew becomes socketless, CLOSE is queued to it
 * unless already sent, and its id waits for the guest's CLOSE.  Held
 * output belonged to the old host's clients and is not carried.  What a
 * restored guest replays is idempotent here:
 *   - its notify hypercall (re-executed after the restore) only kicks the
 *     thread, which rescans both rings;
 *   - tx messages past the saved cons are taken again: DATA for a
 *     socketless connection is discarded and credited back, CREDIT is
 *     added to a connection the host no longer reads, a CLOSE completes
 *     the handshake, a second CLOSE is dropped and counted;
 *   - the host's CLOSE is queued only if the saved flags say it was not in
 *     the saved ring, so the guest never sees it twice;
 *   - the first resume after a load raises the port once: a spurious event
 *     only makes the guest look at its rings.
 */
#include "uvm.h"
#include "log.h"
#include "stream_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

static const char *const uvm_stream_state_names[] = {
	[UVM_STREAM_CONN_FREE] = "FREE",
	[UVM_STREAM_CONN_OPEN] = "OPEN",
	[UVM_STREAM_CONN_CLIENT_DONE] = "CLIENT_DONE",
	[UVM_STREAM_CONN_GUEST_DONE] = "GUEST_DONE",
	[UVM_STREAM_CONN_CLOSING] = "CLOSING",
};

/* ---- failures ------------------------------------------------------------ */

static void uvm_stream_fatal(struct uvm_stream *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* A guest protocol violation: logged once; the pass unwinds, then
 * uvm_stream_teardown closes every client. */
static void uvm_stream_fatal(struct uvm_stream *s, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	s->st.violations++;
	if (s->broken)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_error("uvm: stream: %s; device stopped, clients disconnected",
		  msg);
	s->broken = true;
}

/* ---- guest memory ---------------------------------------------------------- */

/* Account a host write of [off, off + len) of a ring (header included). */
static void uvm_stream_account(struct uvm_stream *s, uint64_t ring_pfn,
			       uint64_t off, uint64_t len)
{
	uint64_t first = off / UVM_PAGE_SIZE;
	uint64_t last = (off + len - 1) / UVM_PAGE_SIZE;
	void *p;

	if (uvm_dev_guest_write(&s->dev, ring_pfn + first, last - first + 1,
				&p) != 0)
		uvm_stream_fatal(s, "ring pages at pfn %" PRIu64 " are outside "
				 "guest memory", ring_pfn + first);
}

/* Account the data bytes [idx, idx + len) of a ring, wrapping. */
static void uvm_stream_account_data(struct uvm_stream *s, uint64_t ring_pfn,
				    uint32_t size, uint32_t idx, uint32_t len)
{
	uint32_t at = idx & (size - 1);
	uint32_t first = len < size - at ? len : size - at;

	if (first > 0)
		uvm_stream_account(s, ring_pfn, UVM_BYTERING_HEADER + at, first);
	if (len > first)
		uvm_stream_account(s, ring_pfn, UVM_BYTERING_HEADER, len - first);
}

static void uvm_stream_account_hdr(struct uvm_stream *s, uint64_t ring_pfn)
{
	uvm_stream_account(s, ring_pfn, 0, UVM_BYTERING_HEADER);
}

/* Does the peer's event index lie in (old, new]? */
static bool uvm_stream_event_in(uint32_t ev, uint32_t old, uint32_t new)
{
	return (uint32_t)(new - ev) < (uint32_t)(new - old);
}

/* ---- connection state and queues ------------------------------------------ */

void uvm_stream_set_state(struct uvm_stream_conn *c,
			  enum uvm_stream_conn_state to)
{
	if (c->state == to)
		return;
	log_debug("uvm: stream: conn %u: %s -> %s", c->id,
		  uvm_stream_state_names[c->state], uvm_stream_state_names[to]);
	c->state = to;
}

static void uvm_stream_q_set(struct uvm_stream *s, struct uvm_stream_conn *c,
			     enum uvm_stream_q q, bool want)
{
	if (want && !c->on[q])
		TAILQ_INSERT_TAIL(&s->q[q], c, link[q]);
	else if (!want && c->on[q])
		TAILQ_REMOVE(&s->q[q], c, link[q]);
	c->on[q] = want;
}

struct uvm_stream_conn *uvm_stream_q_pop(struct uvm_stream *s,
					 enum uvm_stream_q q)
{
	struct uvm_stream_conn *c = TAILQ_FIRST(&s->q[q]);

	if (c != NULL)
		uvm_stream_q_set(s, c, q, false);
	return c;
}

static bool uvm_stream_wants_ctl(const struct uvm_stream_conn *c)
{
	return !c->open_sent || (c->credit_owed > 0 && !c->close_got) ||
	       (c->close_want && !c->close_sent);
}

static bool uvm_stream_wants_read(const struct uvm_stream_conn *c)
{
	return c->readable && !c->rd_eof && !c->sock_dead && c->fd >= 0 &&
	       c->open_sent && c->host_credit > 0;
}

static bool uvm_stream_wants_out(const struct uvm_stream_conn *c)
{
	return c->o_in != c->o_out || c->state == UVM_STREAM_CONN_GUEST_DONE;
}

/* Put c on exactly the queues its state calls for (keeping its place). */
void uvm_stream_requeue(struct uvm_stream *s, struct uvm_stream_conn *c)
{
	uvm_stream_q_set(s, c, UVM_STREAM_Q_CTL, uvm_stream_wants_ctl(c));
	uvm_stream_q_set(s, c, UVM_STREAM_Q_READ, uvm_stream_wants_read(c));
	uvm_stream_q_set(s, c, UVM_STREAM_Q_OUT, uvm_stream_wants_out(c));
}

static void uvm_stream_conn_free(struct uvm_stream *s, struct uvm_stream_conn *c)
{
	for (int q = 0; q < UVM_STREAM_Q_NR; q++)
		uvm_stream_q_set(s, c, (enum uvm_stream_q)q, false);
	uvm_stream_close_fd(s, c);
	uvm_stream_set_state(c, UVM_STREAM_CONN_FREE);
	s->conn[c->id] = NULL;
	free(c->obuf);
	free(c);
	uvm_stream_listen_pause(s, false);
}

/* The client went away (EOF, or an error when `dead`). */
void uvm_stream_client_gone(struct uvm_stream *s, struct uvm_stream_conn *c,
			    const char *why, bool dead)
{
	log_debug("uvm: stream: conn %u: client %s %s", c->id, c->peer, why);
	c->rd_eof = true;
	c->sock_dead |= dead;
	if (!c->open_sent) {
		uvm_stream_conn_free(s, c); /* the guest never heard of it */
		return;
	}
	if (c->state == UVM_STREAM_CONN_OPEN) {
		uvm_stream_set_state(c, UVM_STREAM_CONN_CLIENT_DONE);
		c->close_want = true;
	}
	uvm_stream_requeue(s, c);
}

/* ---- guest output: buffering behind the gate, writing to clients --------- */

static void uvm_stream_obuf_put(struct uvm_stream_conn *c, const uint8_t *p,
				uint32_t len)
{
	while (len > 0) {
		uint32_t at = (uint32_t)(c->o_in % UVM_STREAM_WINDOW);
		uint32_t n = UVM_STREAM_WINDOW - at < len ? UVM_STREAM_WINDOW - at
							  : len;

		memcpy(c->obuf + at, p, n);
		c->o_in += n;
		p += n;
		len -= n;
	}
}

/* Tag the bytes just appended with `epoch` (runs merge conservatively:
 * a later tag only holds bytes longer). */
static void uvm_stream_seg_tag(struct uvm_stream_conn *c, uint64_t epoch)
{
	struct uvm_stream_seg *last = NULL;

	if (c->nr_seg > 0)
		last = &c->seg[(c->seg_head + c->nr_seg - 1) % STREAM_SEGS];
	if (last != NULL && (last->epoch >= epoch || c->nr_seg == STREAM_SEGS)) {
		if (epoch > last->epoch)
			last->epoch = epoch;
		last->end = c->o_in;
		return;
	}
	c->seg[(c->seg_head + c->nr_seg) % STREAM_SEGS] =
		(struct uvm_stream_seg){ .epoch = epoch, .end = c->o_in };
	c->nr_seg++;
}

static void uvm_stream_seg_release(struct uvm_stream_conn *c,
				   uint64_t released)
{
	while (c->nr_seg > 0 && c->seg[c->seg_head].epoch <= released) {
		c->o_rel = c->seg[c->seg_head].end;
		c->seg_head = (c->seg_head + 1) % STREAM_SEGS;
		c->nr_seg--;
	}
}

/* Output for a client that is gone: consumed, credited back. */
static void uvm_stream_discard(struct uvm_stream *s, struct uvm_stream_conn *c)
{
	uint64_t n = c->o_in - c->o_out;

	s->st.drop_bytes += n;
	c->credit_owed += (uint32_t)n;
	c->o_out = c->o_rel = c->o_in;
	c->nr_seg = 0;
}

/* The guest closed and everything it sent before is out (or moot). */
static void uvm_stream_finish(struct uvm_stream *s, struct uvm_stream_conn *c)
{
	uvm_stream_close_fd(s, c);
	log_debug("uvm: stream: conn %u: client %s disconnected", c->id,
		  c->peer);
	uvm_stream_set_state(c, UVM_STREAM_CONN_CLOSING);
	if (c->close_sent) {
		uvm_stream_conn_free(s, c);
		return;
	}
	c->close_want = true;
	uvm_stream_requeue(s, c);
}

/* Returns true if anything moved. */
static bool uvm_stream_flush_conn(struct uvm_stream *s,
				  struct uvm_stream_conn *c, uint64_t released)
{
	uint64_t out = c->o_out;

	uvm_stream_seg_release(c, released);
	uvm_stream_write_out(s, c);
	if (c->sock_dead && c->o_in != c->o_out)
		uvm_stream_discard(s, c);
	if (c->state == UVM_STREAM_CONN_GUEST_DONE && c->o_in == c->o_out &&
	    (c->sock_dead || c->close_epoch <= released)) {
		uvm_stream_finish(s, c);
		return true;
	}
	if (c->close_got)
		c->credit_owed = 0; /* the guest sends no more */
	uvm_stream_requeue(s, c);
	return c->o_out != out;
}

static bool uvm_stream_flush(struct uvm_stream *s)
{
	uint64_t released = uvm_gate_released(&s->dev);
	struct uvm_stream_conn *last = TAILQ_LAST(&s->q[UVM_STREAM_Q_OUT],
						  uvm_stream_connq);
	bool progress = false;

	/* One visit each: a conn that still has output goes back at the tail. */
	while (last != NULL && !s->broken) {
		struct uvm_stream_conn *c = uvm_stream_q_pop(s, UVM_STREAM_Q_OUT);
		bool end = c == last;

		progress |= uvm_stream_flush_conn(s, c, released);
		if (end)
			break;
	}
	return progress;
}

/* ---- tx: what the guest sends ------------------------------------------- */

/* The connection a guest message names, or NULL (dropped, counted). */
static struct uvm_stream_conn *uvm_stream_guest_conn(struct uvm_stream *s,
						     const struct uvm_stream_hdr *h)
{
	struct uvm_stream_conn *c = s->conn[h->conn];

	if (c == NULL || !c->open_sent) {
		s->st.drop_unknown++;
		log_debug("uvm: stream: %s for unknown conn %u dropped",
			  uvm_scodec_type_name(h->type), h->conn);
		return NULL;
	}
	if (c->close_got) {
		s->st.drop_closed++;
		log_debug("uvm: stream: %s for conn %u after its CLOSE dropped",
			  uvm_scodec_type_name(h->type), h->conn);
		return NULL;
	}
	return c;
}

static void uvm_stream_on_data(struct uvm_stream *s,
			       const struct uvm_scodec_msg *m)
{
	struct uvm_stream_conn *c = uvm_stream_guest_conn(s, &m->hdr);
	uint32_t len = m->hdr.len;

	if (c == NULL || len == 0)
		return;
	if (len > c->guest_credit) {
		uvm_stream_fatal(s, "conn %u: guest sent DATA of %u bytes with "
				 "credit for %u", c->id, len, c->guest_credit);
		return;
	}
	c->guest_credit -= len;
	if (c->obuf == NULL && !c->sock_dead && c->fd >= 0) {
		c->obuf = malloc(UVM_STREAM_WINDOW);
		if (c->obuf == NULL)
			uvm_stream_client_gone(s, c, "lost: out of memory", true);
	}
	if (c->sock_dead || c->fd < 0) {
		s->st.drop_bytes += len;
		c->credit_owed += len;
		uvm_stream_requeue(s, c);
		return;
	}
	uvm_stream_obuf_put(c, m->part[0], m->part_len[0]);
	uvm_stream_obuf_put(c, m->part[1], m->part_len[1]);
	uvm_stream_seg_tag(c, uvm_gate_epoch(&s->dev));
	uvm_stream_requeue(s, c);
}

static void uvm_stream_on_close(struct uvm_stream *s,
				const struct uvm_scodec_msg *m)
{
	struct uvm_stream_conn *c = uvm_stream_guest_conn(s, &m->hdr);

	if (c == NULL)
		return;
	c->close_got = true;
	c->close_epoch = uvm_gate_epoch(&s->dev);
	c->rd_eof = true;
	c->credit_owed = 0;
	uvm_stream_set_state(c, UVM_STREAM_CONN_GUEST_DONE);
	uvm_stream_requeue(s, c);
}

static void uvm_stream_on_credit(struct uvm_stream *s,
				 const struct uvm_scodec_msg *m)
{
	struct uvm_stream_conn *c = uvm_stream_guest_conn(s, &m->hdr);
	uint32_t arg = m->hdr.arg;

	if (c == NULL)
		return;
	if (arg > UINT32_MAX - c->host_credit) {
		uvm_stream_fatal(s, "conn %u: guest CREDIT of %u on top of %u "
				 "overflows", c->id, arg, c->host_credit);
		return;
	}
	c->host_credit += arg;
	uvm_stream_requeue(s, c);
}

static void uvm_stream_on_msg(struct uvm_stream *s,
			      const struct uvm_scodec_msg *m)
{
	switch (m->hdr.type) {
	case UVM_STREAM_DATA:
		uvm_stream_on_data(s, m);
		break;
	case UVM_STREAM_CLOSE:
		uvm_stream_on_close(s, m);
		break;
	default: /* CREDIT: the codec lets nothing else through */
		uvm_stream_on_credit(s, m);
		break;
	}
}

/* Publish the tx cons and raise if the guest waits for that much room. */
static void uvm_stream_publish_tx(struct uvm_stream *s, uint32_t old)
{
	uint32_t ev;

	uvm_stream_account_hdr(s, UVM_STREAM_TX_PFN);
	__atomic_store_n(&s->tx->cons, s->tx_cons, __ATOMIC_SEQ_CST);
	ev = __atomic_load_n(&s->tx->cons_event, __ATOMIC_SEQ_CST);
	if (uvm_stream_event_in(ev, old, s->tx_cons))
		uvm_dev_raise(&s->dev);
}

static bool uvm_stream_drain_tx(struct uvm_stream *s)
{
	uint32_t old = s->tx_cons;
	uint32_t prod = __atomic_load_n(&s->tx->prod, __ATOMIC_ACQUIRE);
	uint32_t size = __atomic_load_n(&s->tx->size, __ATOMIC_RELAXED);

	for (int i = 0; i < STREAM_TX_BUDGET && !s->broken; i++) {
		struct uvm_scodec_msg m;
		int rc = uvm_scodec_next(&s->txr, size, s->tx_cons, prod,
					 UVM_SCODEC_TX_TYPES, &m, s->why,
					 sizeof(s->why));

		if (rc < 0)
			uvm_stream_fatal(s, "tx ring: %s", s->why);
		if (rc <= 0)
			break;
		uvm_stream_on_msg(s, &m);
		s->tx_cons = m.next;
	}
	if (s->tx_cons == old || s->broken)
		return false;
	uvm_stream_publish_tx(s, old);
	return true;
}

/* ---- rx: what the host sends ------------------------------------------- */

static bool uvm_stream_rx_space(struct uvm_stream *s, uint32_t *space)
{
	uint32_t cons = __atomic_load_n(&s->rx->cons, __ATOMIC_ACQUIRE);
	uint32_t size = __atomic_load_n(&s->rx->size, __ATOMIC_RELAXED);

	if (uvm_scodec_check_size(size, s->rxr.size, s->why,
				  sizeof(s->why)) != 0 ||
	    uvm_scodec_space(s->rxr.size, s->rx_prod, cons, space, s->why,
			     sizeof(s->why)) != 0) {
		uvm_stream_fatal(s, "rx ring: %s", s->why);
		return false;
	}
	return true;
}

/* Put one message on rx; -ENOSPC when it does not fit. */
int uvm_stream_put(struct uvm_stream *s, uint16_t type, uint32_t conn,
		   uint32_t arg, const void *payload, uint32_t len,
		   uint32_t *space)
{
	struct uvm_stream_hdr h = { .type = type, .conn = conn, .len = len,
				    .arg = arg };
	uint32_t bytes = uvm_scodec_msg_bytes(len), next;
	int rc;

	if (bytes > *space)
		return -ENOSPC;
	uvm_stream_account_data(s, UVM_STREAM_RX_PFN, s->rxr.size, s->rx_prod,
				bytes);
	rc = uvm_scodec_put(&s->rxr, s->rx_prod, *space, &h, payload, &next);
	if (rc != 0) {
		uvm_stream_fatal(s, "rx ring: cannot put %s at index %u: %s",
				 uvm_scodec_type_name(type), s->rx_prod,
				 strerror(-rc));
		return rc;
	}
	*space -= next - s->rx_prod;
	s->rx_prod = next;
	return 0;
}

/* OPEN, CREDIT, CLOSE owed to the guest for c; false if rx is full. */
static bool uvm_stream_send_ctl_conn(struct uvm_stream *s,
				     struct uvm_stream_conn *c, uint32_t *space)
{
	if (!c->open_sent) {
		if (uvm_stream_put(s, UVM_STREAM_OPEN, c->id, UVM_STREAM_WINDOW,
				   NULL, 0, space) != 0)
			return false;
		c->open_sent = true;
		c->host_credit = UVM_STREAM_WINDOW;
		c->guest_credit = UVM_STREAM_WINDOW;
	}
	if (c->credit_owed > 0 && !c->close_got) {
		if (uvm_stream_put(s, UVM_STREAM_CREDIT, c->id, c->credit_owed,
				   NULL, 0, space) != 0)
			return false;
		c->guest_credit += c->credit_owed;
		c->credit_owed = 0;
	}
	if (c->close_want && !c->close_sent) {
		if (uvm_stream_put(s, UVM_STREAM_CLOSE, c->id, 0, NULL, 0,
				   space) != 0)
			return false;
		c->close_sent = true;
	}
	return true;
}

static bool uvm_stream_send_ctl(struct uvm_stream *s, uint32_t *space)
{
	struct uvm_stream_conn *c;
	bool progress = false;

	while (!s->broken && (c = uvm_stream_q_pop(s, UVM_STREAM_Q_CTL))) {
		if (!uvm_stream_send_ctl_conn(s, c, space)) {
			TAILQ_INSERT_HEAD(&s->q[UVM_STREAM_Q_CTL], c,
					  link[UVM_STREAM_Q_CTL]);
			c->on[UVM_STREAM_Q_CTL] = true;
			break;
		}
		progress = true;
		if (c->state == UVM_STREAM_CONN_CLOSING && c->close_sent)
			uvm_stream_conn_free(s, c);
		else
			uvm_stream_requeue(s, c);
	}
	return progress;
}

static void uvm_stream_publish_rx(struct uvm_stream *s, uint32_t old)
{
	uint32_t ev;

	uvm_stream_account_hdr(s, UVM_STREAM_RX_PFN);
	__atomic_store_n(&s->rx->prod, s->rx_prod, __ATOMIC_SEQ_CST);
	ev = __atomic_load_n(&s->rx->prod_event, __ATOMIC_SEQ_CST);
	if (uvm_stream_event_in(ev, old, s->rx_prod))
		uvm_dev_raise(&s->dev);
}

static bool uvm_stream_produce(struct uvm_stream *s)
{
	uint32_t old = s->rx_prod, space;
	bool progress;

	if (!uvm_stream_rx_space(s, &space))
		return false;
	progress = uvm_stream_send_ctl(s, &space);
	progress |= uvm_stream_read_clients(s, &space);
	s->rx_wait = !TAILQ_EMPTY(&s->q[UVM_STREAM_Q_CTL]) ||
		     !TAILQ_EMPTY(&s->q[UVM_STREAM_Q_READ]);
	if (s->rx_prod != old && !s->broken)
		uvm_stream_publish_rx(s, old);
	return progress;
}

/* ---- the pass ------------------------------------------------------------ */

/* Before sleeping: ask for the events we need, then look once more. */
static bool uvm_stream_arm(struct uvm_stream *s)
{
	bool more = false;
	uint32_t cons;

	uvm_stream_account_hdr(s, UVM_STREAM_TX_PFN);
	__atomic_store_n(&s->tx->prod_event, s->tx_cons + 1, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(&s->tx->prod, __ATOMIC_SEQ_CST) != s->tx_cons)
		more = true;
	if (s->rx_wait) {
		cons = __atomic_load_n(&s->rx->cons, __ATOMIC_SEQ_CST);
		uvm_stream_account_hdr(s, UVM_STREAM_RX_PFN);
		__atomic_store_n(&s->rx->cons_event, cons + 1, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(&s->rx->cons, __ATOMIC_SEQ_CST) != cons)
			more = true;
	}
	return more;
}

static void uvm_stream_drop_conns(struct uvm_stream *s)
{
	for (uint32_t id = 1; id <= UVM_STREAM_MAX_CONNS; id++)
		if (s->conn[id] != NULL)
			uvm_stream_conn_free(s, s->conn[id]);
}

/* Close every client after a violation; the guest is ignored from now. */
static void uvm_stream_teardown(struct uvm_stream *s)
{
	uvm_stream_drop_conns(s);
	if (s->lfd >= 0) {
		(void)epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->lfd, NULL);
		close(s->lfd);
		s->lfd = -1;
	}
	s->torn_down = true;
}

/* All the work there is now; true if the loop should not sleep. */
static bool uvm_stream_service(struct uvm_stream *s)
{
	for (int round = 0; round < STREAM_ROUNDS && !s->broken; round++) {
		bool progress = uvm_stream_drain_tx(s);

		progress |= uvm_stream_flush(s);
		progress |= uvm_stream_produce(s);
		if (!progress && !s->broken)
			return uvm_stream_arm(s);
	}
	if (s->broken && !s->torn_down)
		uvm_stream_teardown(s);
	return !s->broken;
}

/* ---- the thread ------------------------------------------------------------ */

static void uvm_stream_resumed(struct uvm_stream *s)
{
	if (s->sync_indices) {
		s->tx_cons = __atomic_load_n(&s->tx->cons, __ATOMIC_RELAXED);
		s->rx_prod = __atomic_load_n(&s->rx->prod, __ATOMIC_RELAXED);
		s->sync_indices = false;
	}
	if (s->raise_on_resume && !s->broken) {
		s->raise_on_resume = false;
		uvm_dev_raise(&s->dev);
	}
}

/* Milliseconds until a paused listener is retried; -1 when not paused. */
static int uvm_stream_retry_in(const struct uvm_stream *s)
{
	struct timespec now;
	int64_t ms;

	if (!s->listen_paused)
		return -1;
	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (int64_t)(s->retry_at.tv_sec - now.tv_sec) * 1000 +
	     (s->retry_at.tv_nsec - now.tv_nsec) / 1000000;
	return ms > 0 ? (int)ms : 0;
}

/* Parks while the controller wants it; false when told to stop. */
static bool uvm_stream_control(struct uvm_stream *s)
{
	bool was_parked = false, stop;

	pthread_mutex_lock(&s->lock);
	while (s->want == UVM_STREAM_PARK) {
		if (!s->parked) {
			s->parked = true;
			pthread_cond_broadcast(&s->cond);
		}
		was_parked = true;
		pthread_cond_wait(&s->cond, &s->lock);
	}
	s->parked = false;
	stop = s->want == UVM_STREAM_STOP;
	pthread_mutex_unlock(&s->lock);
	if (was_parked && !stop)
		uvm_stream_resumed(s);
	return !stop;
}

static void *uvm_stream_main(void *arg)
{
	struct uvm_stream *s = arg;

	while (uvm_stream_control(s)) {
		bool more = false;

		if (!s->broken)
			more = uvm_stream_service(s);
		else if (!s->torn_down)
			uvm_stream_teardown(s);
		uvm_stream_wait(s, more ? 0 : uvm_stream_retry_in(s));
		if (s->listen_paused && uvm_stream_retry_in(s) == 0)
			uvm_stream_listen_pause(s, false);
	}
	return NULL;
}

/* ---- ops ------------------------------------------------------------------ */

static void uvm_stream_poke(int fd)
{
	uint64_t one = 1;

	/* EAGAIN means the counter is already non-zero: woken anyway. */
	while (write(fd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

static void uvm_stream_notify(struct uvm_dev *dev)
{
	uvm_stream_poke(uvm_stream_of(dev)->kick_fd);
}

static void uvm_stream_release(struct uvm_dev *dev, uint64_t epoch)
{
	(void)epoch; /* the thread reads the gate itself */
	uvm_stream_poke(uvm_stream_of(dev)->kick_fd);
}

static void uvm_stream_want(struct uvm_stream *s, enum uvm_stream_run want)
{
	pthread_mutex_lock(&s->lock);
	if (s->want != UVM_STREAM_STOP)
		s->want = want;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	uvm_stream_poke(s->ctl_fd);
}

static int uvm_stream_quiesce(struct uvm_dev *dev)
{
	struct uvm_stream *s = uvm_stream_of(dev);

	uvm_stream_want(s, UVM_STREAM_PARK);
	pthread_mutex_lock(&s->lock);
	while (!s->parked && s->want == UVM_STREAM_PARK)
		pthread_cond_wait(&s->cond, &s->lock);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static void uvm_stream_resume(struct uvm_dev *dev)
{
	uvm_stream_want(uvm_stream_of(dev), UVM_STREAM_RUN);
}

/* Lock s with its thread parked; -EBUSY if it is not being parked. */
static int uvm_stream_lock_parked(struct uvm_stream *s)
{
	pthread_mutex_lock(&s->lock);
	while (!s->parked && s->want == UVM_STREAM_PARK && s->thread_started)
		pthread_cond_wait(&s->cond, &s->lock);
	if (s->want != UVM_STREAM_PARK) {
		pthread_mutex_unlock(&s->lock);
		log_error("uvm: stream: device state needs a quiesced device");
		return -EBUSY;
	}
	return 0;
}

static void uvm_stream_save_conns(const struct uvm_stream *s,
				  struct uvm_scodec_save *sv)
{
	for (uint32_t id = 1; id <= UVM_STREAM_MAX_CONNS; id++) {
		const struct uvm_stream_conn *c = s->conn[id];

		if (c == NULL)
			continue;
		sv->conn[sv->count++] = (struct uvm_scodec_conn_state){
			.conn = id,
			.state = (uint8_t)c->state,
			.flags = (uint8_t)((c->open_sent ? UVM_SCODEC_CF_OPEN_SENT : 0) |
					   (c->close_sent ? UVM_SCODEC_CF_CLOSE_SENT : 0) |
					   (c->close_got ? UVM_SCODEC_CF_CLOSE_GOT : 0)),
			.host_credit = c->host_credit,
			.guest_credit = c->guest_credit,
		};
	}
}

static int uvm_stream_save(struct uvm_dev *dev, struct hv_device_state *st)
{
	struct uvm_stream *s = uvm_stream_of(dev);
	struct uvm_scodec_save *sv = calloc(1, sizeof(*sv));
	size_t len = 0;
	int rc = sv ? uvm_stream_lock_parked(s) : -ENOMEM;

	if (rc == 0) {
		sv->flags = s->broken ? UVM_SCODEC_SF_BROKEN : 0;
		sv->tx_cons = s->tx_cons;
		sv->rx_prod = s->rx_prod;
		sv->size = s->txr.size;
		uvm_stream_save_conns(s, sv);
		pthread_mutex_unlock(&s->lock);
		rc = uvm_scodec_save_put(sv, st->blob, sizeof(st->blob), &len);
	}
	if (rc == 0)
		st->len = (uint32_t)len;
	free(sv);
	return rc;
}

/* The restored guest's device table and ring headers match this host. */
static int uvm_stream_check_rings(struct uvm_stream *s)
{
	const struct uvm_device_desc *d =
		&uvm_shared(s->dev.dom)->devices[s->dev.index];

	if (d->ring_pfn != UVM_STREAM_TX_PFN ||
	    d->ring_pages != UVM_STREAM_RING_PAGES) {
		log_error("uvm: stream: saved rings at pfn %" PRIu64 " (%u "
			  "pages), expected pfn %d (%d pages)", d->ring_pfn,
			  d->ring_pages, UVM_STREAM_TX_PFN,
			  UVM_STREAM_RING_PAGES);
		return -EINVAL;
	}
	if (uvm_scodec_check_size(s->tx->size, s->txr.size, s->why,
				  sizeof(s->why)) != 0 ||
	    uvm_scodec_check_size(s->rx->size, s->rxr.size, s->why,
				  sizeof(s->why)) != 0) {
		log_error("uvm: stream: saved rings: %s", s->why);
		return -EINVAL;
	}
	return 0;
}

/* One saved connection comes back socketless, closing. */
static int uvm_stream_load_conn(struct uvm_stream *s,
				const struct uvm_scodec_conn_state *cs)
{
	struct uvm_stream_conn *c;

	if (!(cs->flags & UVM_SCODEC_CF_OPEN_SENT) ||
	    ((cs->flags & UVM_SCODEC_CF_CLOSE_SENT) &&
	     (cs->flags & UVM_SCODEC_CF_CLOSE_GOT)))
		return 0; /* never known to the guest, or already gone */
	c = uvm_stream_conn_new(s, cs->conn, -1);
	if (c == NULL)
		return -ENOMEM;
	snprintf(c->peer, sizeof(c->peer), "(restored)");
	c->open_sent = true;
	c->close_sent = cs->flags & UVM_SCODEC_CF_CLOSE_SENT;
	c->close_got = cs->flags & UVM_SCODEC_CF_CLOSE_GOT;
	c->close_want = true;
	c->rd_eof = c->sock_dead = true;
	c->writable = false;
	c->host_credit = cs->host_credit;
	c->guest_credit = cs->guest_credit;
	uvm_stream_set_state(c, c->close_got ? UVM_STREAM_CONN_CLOSING
					     : UVM_STREAM_CONN_CLIENT_DONE);
	uvm_stream_requeue(s, c);
	return 0;
}

static int uvm_stream_apply(struct uvm_stream *s,
			    const struct uvm_scodec_save *sv)
{
	int rc = 0;

	if (sv->tx_cons != s->tx->cons || sv->rx_prod != s->rx->prod)
		log_warn("uvm: stream: saved indices tx cons %u rx prod %u "
			 "differ from the guest's rings (%u, %u); using the "
			 "saved ones", sv->tx_cons, sv->rx_prod, s->tx->cons,
			 s->rx->prod);
	s->tx_cons = sv->tx_cons;
	s->rx_prod = sv->rx_prod;
	s->sync_indices = false;
	s->raise_on_resume = true;
	s->broken = sv->flags & UVM_SCODEC_SF_BROKEN;
	for (uint32_t i = 0; i < sv->count && rc == 0; i++)
		rc = uvm_stream_load_conn(s, &sv->conn[i]);
	return rc;
}

static int uvm_stream_load(struct uvm_dev *dev, const struct hv_device_state *st)
{
	struct uvm_stream *s = uvm_stream_of(dev);
	struct uvm_scodec_save *sv = calloc(1, sizeof(*sv));
	int rc = sv ? 0 : -ENOMEM;

	if (rc == 0 && uvm_scodec_save_get(st->blob, st->len,
					   UVM_STREAM_CONN_NR_STATES - 1, sv,
					   s->why, sizeof(s->why)) != 0) {
		log_error("uvm: stream: saved state: %s", s->why);
		rc = -EINVAL;
	}
	if (rc == 0 && sv->size != s->txr.size) {
		log_error("uvm: stream: saved ring size %u, this host's %u",
			  sv->size, s->txr.size);
		rc = -EINVAL;
	}
	if (rc == 0 && (rc = uvm_stream_lock_parked(s)) == 0) {
		rc = uvm_stream_check_rings(s);
		uvm_stream_drop_conns(s);
		if (rc == 0)
			rc = uvm_stream_apply(s, sv);
		if (rc != 0)
			uvm_stream_drop_conns(s);
		pthread_mutex_unlock(&s->lock);
	}
	if (rc == 0 && sv->count > 0)
		log_info("uvm: stream: %u connection(s) of the saved guest are "
			 "closed to it: their clients were on the old host",
			 sv->count);
	free(sv);
	return rc;
}

static void uvm_stream_free(struct uvm_dev *dev)
{
	struct uvm_stream *s = uvm_stream_of(dev);

	if (s->thread_started) {
		uvm_stream_want(s, UVM_STREAM_STOP);
		pthread_join(s->thread, NULL);
		log_debug("uvm: stream: %" PRIu64 " clients (%" PRIu64 " refused), "
			  "%" PRIu64 " bytes in, %" PRIu64 " out; dropped %"
			  PRIu64 " unknown, %" PRIu64 " after close, %" PRIu64
			  " bytes; %" PRIu64 " violations", s->st.accepted,
			  s->st.refused, s->st.bytes_in, s->st.bytes_out,
			  s->st.drop_unknown, s->st.drop_closed,
			  s->st.drop_bytes, s->st.violations);
	}
	uvm_stream_drop_conns(s);
	if (s->lfd >= 0)
		close(s->lfd);
	if (s->epfd >= 0)
		close(s->epfd);
	if (s->kick_fd >= 0)
		close(s->kick_fd);
	if (s->ctl_fd >= 0)
		close(s->ctl_fd);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cond);
	free(s->listen);
	free(s);
}

static const struct uvm_dev_ops uvm_stream_ops = {
	.name = "stream",
	.type = UVM_DEV_STREAM,
	.notify = uvm_stream_notify,
	.quiesce = uvm_stream_quiesce,
	.resume = uvm_stream_resume,
	.save = uvm_stream_save,
	.load = uvm_stream_load,
	.release = uvm_stream_release,
	.free = uvm_stream_free,
};

/* ---- creation ---------------------------------------------------------------- */

/* Map both rings; on a fresh guest initialise them and the table entry. */
static int uvm_stream_rings(struct uvm_stream *s, bool build)
{
	uint32_t size = uvm_scodec_ring_size(STREAM_RING_BYTES);
	void *tx, *rx;
	int rc = 0;

	tx = uvm_dev_guest_ptr(&s->dev, UVM_STREAM_TX_PFN, UVM_STREAM_RING_PAGES);
	rx = uvm_dev_guest_ptr(&s->dev, UVM_STREAM_RX_PFN, UVM_STREAM_RING_PAGES);
	if (tx == NULL || rx == NULL)
		return -EFAULT;
	if (build) {
		rc = uvm_dev_guest_write(&s->dev, UVM_STREAM_TX_PFN, 1, &tx);
		if (rc == 0)
			rc = uvm_dev_guest_write(&s->dev, UVM_STREAM_RX_PFN, 1, &rx);
		if (rc != 0)
			return rc;
		uvm_scodec_ring_init(tx, size);
		uvm_scodec_ring_init(rx, size);
	}
	s->tx = tx;
	s->rx = rx;
	s->txr = (struct uvm_scodec_ring){ .data = s->tx->data, .size = size };
	s->rxr = (struct uvm_scodec_ring){ .data = s->rx->data, .size = size };
	s->sync_indices = !build;
	return 0;
}

static void uvm_stream_describe(struct uvm_stream *s)
{
	struct uvm_device_desc *d = &uvm_shared(s->dev.dom)->devices[s->dev.index];

	d->ring_pfn = UVM_STREAM_TX_PFN;
	d->ring_pages = UVM_STREAM_RING_PAGES;
}

static struct uvm_stream *uvm_stream_alloc(struct uvm_domain *dom,
					   const char *listen)
{
	struct uvm_stream *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->dev = (struct uvm_dev){ .ops = &uvm_stream_ops, .dom = dom,
				   .index = 1 + dom->nr_devs,
				   .port = UVM_PORT_STREAM };
	s->lfd = s->epfd = s->kick_fd = s->ctl_fd = -1;
	s->want = UVM_STREAM_PARK; /* runs from the first unpause */
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	for (int q = 0; q < UVM_STREAM_Q_NR; q++)
		TAILQ_INIT(&s->q[q]);
	s->listen = strdup(listen);
	return s;
}

int uvm_stream_new(struct uvm_domain *dom, const char *listen, bool build,
		   struct uvm_dev **out)
{
	struct uvm_stream *s = uvm_stream_alloc(dom, listen);
	int rc;

	*out = NULL;
	if (s == NULL || s->listen == NULL) {
		if (s != NULL)
			uvm_stream_free(&s->dev);
		return -ENOMEM;
	}
	rc = uvm_stream_rings(s, build);
	if (rc == 0)
		rc = uvm_stream_fds(s);
	if (rc == 0)
		rc = uvm_stream_listen_on(s);
	if (rc == 0) {
		if (build)
			uvm_stream_describe(s);
		rc = -pthread_create(&s->thread, NULL, uvm_stream_main, s);
		s->thread_started = rc == 0;
	}
	if (rc != 0) {
		uvm_stream_free(&s->dev);
		return rc;
	}
	*out = &s->dev;
	return 0;
}
