/*
 * link_int.h - what a transport back end (tcp.c, rdma.c) and the link core
 * (link.c) give each other.  Not for use outside transport/.
 *
 * The core owns a link's state, its record rules (framing, seeded
 * checksums, per-channel sequence and epoch checks), the consumer's queue,
 * back-pressure and statistics.  A back end owns connections: it moves
 * framed records between hosts and reports what arrives.
 *
 * Threads: ops->send and ops->send_queued run on the sender's thread
 * (send under the channel's send lock) and must not block.
 * ops->resume_read runs on the consumer's thread (from tp_recv) or on the
 * loop thread, re-entrantly from inside tpl_input; ops->close runs on
 * whichever thread failed the link, possibly inside one of the back end's
 * own callbacks.  Back ends hand both to their loop thread.  tpl_*
 * functions are safe from any thread.
 *
 * Sequence numbers: each connection's handshake record is sequence 0; the
 * core numbers user and link records from 1 once tpl_up has run.
 */
#ifndef TANDEM_LINK_INT_H
#define TANDEM_LINK_INT_H

#include <pthread.h>
#include <stdarg.h>
#include <time.h>

#include "transport.h"
#include "wire.h"
#include "link_codec.h"

struct event_base;

struct tp_backend_ops {
	const char *name;
	int (*connect)(struct tp_ctx *ctx, const struct tp_config *cfg,
		       const char *addr, struct tp_link **out,
		       char *err, size_t errlen);
	int (*listen)(struct tp_ctx *ctx, const struct tp_config *cfg,
		      const char *addr, struct tp_listener **out,
		      char *err, size_t errlen);
	/*
	 * Queues one framed record on chan: the 32-byte header, len body
	 * bytes, then pad zero bytes.  Copies what it needs before returning.
	 */
	int (*send)(struct tp_link *link, unsigned chan,
		    const uint8_t hdr[WIRE_RECORD_HEADER_SIZE],
		    const void *body, size_t len, size_t pad);
	/* Bytes accepted by send but not yet handed to the wire. */
	size_t (*send_queued)(struct tp_link *link, unsigned chan);
	/* The consumer drained chan below its limit: read it again. */
	void (*resume_read)(struct tp_link *link, unsigned chan);
	/* Tears down every connection of the link; called once, any thread. */
	void (*close)(struct tp_link *link);
	/* Frees the back end's part of the link after close. */
	void (*free)(struct tp_link *link);
	void (*listener_free)(struct tp_listener *l);
};

extern const struct tp_backend_ops tp_tcp_ops;
extern const struct tp_backend_ops tp_rdma_ops;

/* ---- context ------------------------------------------------------------ */

struct event_base *tpl_ctx_base(struct tp_ctx *ctx);
/* Runs fn(arg) on the loop thread and waits for it to return. */
void tpl_ctx_call(struct tp_ctx *ctx, void (*fn)(void *arg), void *arg);

/* Condition variables on CLOCK_MONOTONIC, and deadlines on that clock
 * timeout_ms from now, so a wall-clock jump moves no timeout. */
void tpl_cond_init(pthread_cond_t *c);
void tpl_deadline(struct timespec *ts, int timeout_ms);

/* ---- links ---------------------------------------------------------------- */

/* A new link in state HANDSHAKE; be is the back end's part of it. */
struct tp_link *tpl_new(struct tp_ctx *ctx, const struct tp_config *cfg,
			const struct tp_backend_ops *ops, void *be);
void *tpl_backend(const struct tp_link *link);
const struct tp_config *tpl_config(const struct tp_link *link);

/* Handshake done: session parameters fixed, link usable. */
void tpl_up(struct tp_link *link, const struct link_session *sess);
const struct link_session *tpl_session(const struct tp_link *link);
/* 0 while up; the link's error after tpl_fail. */
int tpl_error(const struct tp_link *link);

/*
 * Fails the link: records the first error and its message, wakes every
 * waiter and asks the back end to close.  Later calls are ignored.
 */
void tpl_fail(struct tp_link *link, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void tpl_vfail(struct tp_link *link, int err, const char *fmt, va_list ap);

/*
 * Receive side, on the loop thread.  tpl_header checks a record header
 * (cap, known type allowed in LINK streams, length range); then the back
 * end reads wire_padded_length(rh->length) body bytes into a buffer from
 * malloc and gives it to tpl_input, which takes ownership, verifies the
 * record and handles or queues it.  tpl_input returns 1 when chan should
 * stop reading until ops->resume_read, 0 to go on, or the link's error.
 */
int tpl_header(struct tp_link *link, unsigned chan,
	       const uint8_t hdr[WIRE_RECORD_HEADER_SIZE],
	       struct wire_record_header *rh);
int tpl_input(struct tp_link *link, unsigned chan,
	      const uint8_t hdr[WIRE_RECORD_HEADER_SIZE],
	      const struct wire_record_header *rh, uint8_t *body);

/* Whether the peer said BYE on bulk channel chan (its end is no error). */
bool tpl_peer_closed(struct tp_link *link, unsigned chan);

/*
 * Send side: the back end's queue for chan shrank.  Call it at least when
 * the queue falls to half its limit (tp_send's waiters) and when it
 * empties (tp_flush's).
 */
void tpl_drained(struct tp_link *link, unsigned chan);

/* ---- listeners ------------------------------------------------------------ */

struct tp_listener *tpl_listener_new(struct tp_ctx *ctx,
				     const struct tp_config *cfg,
				     const struct tp_backend_ops *ops,
				     void *be, uint16_t port);
void *tpl_listener_backend(const struct tp_listener *l);
/* Links accepted but not yet taken by tp_accept, at most this many;
 * back ends refuse new peers while backlog + their pending links reach it. */
#define TPL_BACKLOG_MAX 64
unsigned tpl_listener_backlog(struct tp_listener *l);
/* A link whose handshake completed, for tp_accept.  Takes ownership. */
void tpl_listener_push(struct tp_listener *l, struct tp_link *link);
/* A peer refused during its handshake: one log line, one count. */
void tpl_listener_refuse(struct tp_listener *l, const char *peer,
			 const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
