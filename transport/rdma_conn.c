/*
 * rdma_conn.c - one channel of an RDMA link (a "conn"): its verbs
 * resources and its data path.  The connection manager, the handshake and
 * tp_rdma_ops are in rdma.c, what the two share in rdma_int.h; the pure
 * parts (rings, credits, chunks, reassembly, advertisement and credit
 * messages) are in rdma_buf.c.  Design and sizes are in docs/rdma.md.
 *
 * Each conn has its own protection domain, completion queue and
 * completion channel, and one RC queue pair.  Channel 0 (control) moves
 * chunks with SEND/RECV into posted receive buffers; bulk channels move
 * them with RDMA WRITE with immediate into the receiver's slot ring, whose
 * address and rkey the receiver advertises in the CM private data of
 * connect/accept.  Credit returns are SENDs.
 *
 * Threads.  Completions are handled on the context's loop thread, driven
 * by a libevent event on the completion channel fd; nothing there blocks.
 * rdma_conn_send (ops->send) runs on sender threads: it takes the conn's
 * tx_lock, queues a copy of the record and posts what the credits allow
 * (ibv_post_send does not block).  No core function is called with a
 * tx_lock held.
 *
 * Invariants:
 *  - At most the peer's window of chunks is in flight per channel, and at
 *    most RDMA_SQ_DEPTH send work requests per queue pair.
 *  - Before the link is up, complete records go to the handshake
 *    (rdma_hs_record, rdma.c), never to the core.
 *  - While tpl_input says pause, the channel consumes no chunk and returns
 *    no credit, so the sender stops within one window.
 *  - Teardown order per conn: events, QP, CQ, completion channel, MRs, PD,
 *    CM id, CM event channel.
 */
#include "rdma_int.h"
#include "log.h"

#include <endian.h>
#include <errno.h>
#include <event2/event.h>
#include <infiniband/verbs.h>
#include <inttypes.h>
#include <pthread.h>
#include <rdma/rdma_cma.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RDMA_SQ_DEPTH 64u            /* send work requests per QP */
#define RDMA_HS_BODY_MAX 4096u       /* body cap before the link is up */
#define RDMA_POLL_BATCH 32
#define RDMA_SEND_LIMIT (8u << 20)   /* transport.h's default send_limit */

/* wr_id: what the work request was, and its buffer or slot. */
enum rdma_wr_kind { RDMA_WR_RECV = 1, RDMA_WR_CHUNK = 2, RDMA_WR_CREDIT = 3 };
#define WR_ID(kind, idx) ((uint64_t)(kind) << 56 | (uint64_t)(idx))
#define WR_KIND(id) ((unsigned)((id) >> 56))
#define WR_IDX(id) ((uint32_t)(id))

/* ---- conn: creation and teardown ------------------------------------------ */

struct rdma_conn *rdma_conn_new(struct tp_ctx *ctx, unsigned chan,
			   bool server, const char *peer)
{
	struct rdma_conn *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->ctx = ctx;
	c->chan = chan;
	c->server = server;
	c->mode = chan == 0 ? RDMA_MODE_SEND : RDMA_MODE_WRITE;
	c->geom.nr_slots = chan == 0 ? RDMA_CTRL_SLOTS : RDMA_BULK_SLOTS;
	c->geom.slot_size = chan == 0 ? RDMA_CTRL_SLOT_SIZE
				      : RDMA_BULK_SLOT_SIZE;
	c->nr_rq = c->geom.nr_slots + RDMA_MSG_RESERVE;
	c->state = server ? RDMA_CS_CONNECTING : RDMA_CS_ADDR;
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	pthread_mutex_init(&c->tx_lock, NULL);
	rdma_reasm_init(&c->reasm, c->geom.slot_size);
	return c;
}

static void conn_mr_free(struct ibv_mr **mr, uint8_t **buf)
{
	if (*mr)
		ibv_dereg_mr(*mr);
	free(*buf);
	*mr = NULL;
	*buf = NULL;
}

static void conn_events_free(struct rdma_conn *c)
{
	if (c->cm_ev)
		event_free(c->cm_ev);
	if (c->cq_ev)
		event_free(c->cq_ev);
	if (c->timer_ev)
		event_free(c->timer_ev);
	if (c->resume_ev)
		event_free(c->resume_ev);
	c->cm_ev = c->cq_ev = c->timer_ev = c->resume_ev = NULL;
}

/* Loop thread, outside any of c's callbacks. */
void rdma_conn_destroy(struct rdma_conn *c)
{
	struct rdma_txrec *r;

	if (c == NULL)
		return;
	conn_events_free(c);
	if (c->id && c->id->qp)
		rdma_destroy_qp(c->id);
	if (c->cq)
		ibv_destroy_cq(c->cq);
	if (c->cc)
		ibv_destroy_comp_channel(c->cc);
	conn_mr_free(&c->rbuf_mr, &c->rbuf);
	conn_mr_free(&c->mbuf_mr, &c->mbuf);
	conn_mr_free(&c->cbuf_mr, &c->cbuf);
	conn_mr_free(&c->sbuf_mr, &c->sbuf);
	if (c->pd)
		ibv_dealloc_pd(c->pd);
	if (c->id)
		rdma_destroy_id(c->id);
	if (c->ec)
		rdma_destroy_event_channel(c->ec);
	while ((r = c->txq) != NULL) {
		c->txq = r->next;
		free(r);
	}
	rdma_rx_fini(&c->rx);
	rdma_reasm_fini(&c->reasm);
	pthread_mutex_destroy(&c->tx_lock);
	free(c);
}

/* Stops every callback of c; its memory stays until rdma_conn_destroy. */
void rdma_conn_quiesce(struct rdma_conn *c)
{
	c->doomed = true;
	if (c->cm_ev)
		event_del(c->cm_ev);
	if (c->cq_ev)
		event_del(c->cq_ev);
	if (c->timer_ev)
		event_del(c->timer_ev);
	if (c->resume_ev)
		event_del(c->resume_ev);
}

/* ---- conn: verbs resources ------------------------------------------------- */

static int conn_mr(struct rdma_conn *c, size_t len, int access,
		   uint8_t **buf, struct ibv_mr **mr)
{
	void *p = NULL;
	int rc;

	if (posix_memalign(&p, 4096, len) != 0)
		return -ENOMEM;
	memset(p, 0, len);
	*mr = ibv_reg_mr(c->pd, p, len, access);
	if (*mr == NULL) {
		rc = rdma_errno();
		free(p);
		return rc;
	}
	*buf = p;
	return 0;
}

static int conn_post_recv(struct rdma_conn *c, uint32_t idx)
{
	struct ibv_recv_wr wr, *bad = NULL;
	struct ibv_sge sge;

	memset(&wr, 0, sizeof(wr));
	if (c->mode == RDMA_MODE_SEND) {
		sge.addr = (uintptr_t)(c->rbuf + (size_t)idx * c->geom.slot_size);
		sge.length = c->geom.slot_size;
		sge.lkey = c->rbuf_mr->lkey;
	} else {
		sge.addr = (uintptr_t)(c->mbuf + (size_t)idx * RDMA_MSG_BUF);
		sge.length = RDMA_MSG_BUF;
		sge.lkey = c->mbuf_mr->lkey;
	}
	wr.wr_id = WR_ID(RDMA_WR_RECV, idx);
	wr.sg_list = &sge;
	wr.num_sge = 1;
	return -ibv_post_recv(c->id->qp, &wr, &bad);
}

static int conn_setup_bufs(struct rdma_conn *c)
{
	size_t slot = c->geom.slot_size;
	int rc;

	if (c->mode == RDMA_MODE_SEND) {
		rc = conn_mr(c, c->nr_rq * slot, IBV_ACCESS_LOCAL_WRITE,
			     &c->rbuf, &c->rbuf_mr);
	} else {
		rc = conn_mr(c, c->geom.nr_slots * slot,
			     IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE,
			     &c->rbuf, &c->rbuf_mr);
		if (rc == 0)
			rc = conn_mr(c, c->nr_rq * RDMA_MSG_BUF,
				     IBV_ACCESS_LOCAL_WRITE, &c->mbuf,
				     &c->mbuf_mr);
	}
	if (rc == 0)
		rc = conn_mr(c, RDMA_MSG_BUF, 0, &c->cbuf, &c->cbuf_mr);
	if (rc == 0)
		rc = rdma_rx_init(&c->rx, c->mode, &c->geom,
				  c->mode == RDMA_MODE_SEND ? c->nr_rq
							    : c->geom.nr_slots);
	for (uint32_t i = 0; rc == 0 && i < c->nr_rq; i++)
		rc = conn_post_recv(c, i);
	return rc;
}

static int conn_create_qp(struct rdma_conn *c)
{
	struct ibv_qp_init_attr qa;

	memset(&qa, 0, sizeof(qa));
	qa.send_cq = c->cq;
	qa.recv_cq = c->cq;
	qa.qp_type = IBV_QPT_RC;
	qa.sq_sig_all = 1;
	qa.cap.max_send_wr = RDMA_SQ_DEPTH;
	qa.cap.max_recv_wr = c->nr_rq;
	qa.cap.max_send_sge = 1;
	qa.cap.max_recv_sge = 1;
	return rdma_create_qp(c->id, c->pd, &qa) ? rdma_errno() : 0;
}

static void conn_cq_cb(evutil_socket_t fd, short what, void *arg);
static void conn_resume_cb(evutil_socket_t fd, short what, void *arg);

/* PD, completion channel and CQ, QP, buffers, posted receives, CQ event. */
int rdma_conn_setup_verbs(struct rdma_conn *c, char *err, size_t errlen)
{
	struct ibv_context *dev = c->id->verbs;
	int rc;

	c->pd = ibv_alloc_pd(dev);
	if (c->pd == NULL)
		return rdma_errf(err, errlen, rdma_errno(),
				 "cannot allocate a protection domain: %s",
				 strerror(errno));
	c->cc = ibv_create_comp_channel(dev);
	if (c->cc == NULL || rdma_nonblock(c->cc->fd) != 0)
		return rdma_errf(err, errlen, rdma_errno(),
				 "cannot create a completion channel: %s",
				 strerror(errno));
	c->cq = ibv_create_cq(dev, (int)(RDMA_SQ_DEPTH + c->nr_rq + 1), c,
			      c->cc, 0);
	if (c->cq == NULL || ibv_req_notify_cq(c->cq, 0) != 0)
		return rdma_errf(err, errlen, rdma_errno(),
				 "cannot create a completion queue of %u: %s",
				 RDMA_SQ_DEPTH + c->nr_rq + 1, strerror(errno));
	rc = conn_create_qp(c);
	if (rc == 0)
		rc = conn_setup_bufs(c);
	if (rc != 0)
		return rdma_errf(err, errlen, rc,
				 "cannot set up the queue pair and its %s ring "
				 "(%u x %u bytes): %s (RLIMIT_MEMLOCK?)",
				 rdma_mode_name(c->mode), c->geom.nr_slots,
				 c->geom.slot_size, strerror(-rc));
	c->cq_ev = event_new(tpl_ctx_base(c->ctx), c->cc->fd,
			     EV_READ | EV_PERSIST, conn_cq_cb, c);
	c->resume_ev = event_new(tpl_ctx_base(c->ctx), -1, 0, conn_resume_cb,
				 c);
	if (c->cq_ev == NULL || c->resume_ev == NULL ||
	    event_add(c->cq_ev, NULL) != 0)
		return rdma_errf(err, errlen, -ENOMEM,
				 "cannot watch the completion channel");
	return 0;
}

int rdma_conn_advert(const struct rdma_conn *c, uint8_t out[RDMA_ADVERT_SIZE])
{
	struct rdma_advert a = {
		.mode = c->mode, .chan = c->chan, .geom = c->geom,
	};
	struct wire_buf b;
	int rc;

	if (c->mode == RDMA_MODE_WRITE) {
		a.rkey = c->rbuf_mr->rkey;
		a.addr = (uintptr_t)c->rbuf;
	}
	wire_buf_init(&b);
	rc = rdma_advert_put(&b, &a);
	if (rc == 0 && b.len == RDMA_ADVERT_SIZE)
		memcpy(out, b.data, RDMA_ADVERT_SIZE);
	else if (rc == 0)
		rc = -EINVAL;
	wire_buf_fini(&b);
	return rc;
}

void rdma_conn_param_init(struct rdma_conn_param *p, const uint8_t *adv)
{
	memset(p, 0, sizeof(*p));
	p->private_data = adv;
	p->private_data_len = RDMA_ADVERT_SIZE;
	p->retry_count = 7;
	p->rnr_retry_count = 7; /* credits keep receives posted: no RNR */
}

/* The peer's ring: the send side may start. */
int rdma_conn_tx_setup(struct rdma_conn *c, const struct rdma_advert *peer,
		  char *err, size_t errlen)
{
	size_t size = (size_t)peer->geom.nr_slots * peer->geom.slot_size;
	int rc;

	if (peer->chan != c->chan || peer->mode != c->mode)
		return rdma_errf(err, errlen, -EPROTO,
				 "peer advertised channel %" PRIu32
				 " (%s) on channel %u", peer->chan,
				 rdma_mode_name(peer->mode), c->chan);
	rc = conn_mr(c, size, 0, &c->sbuf, &c->sbuf_mr);
	if (rc != 0)
		return rdma_errf(err, errlen, rc,
				 "cannot register %zu staging bytes: %s",
				 size, strerror(-rc));
	pthread_mutex_lock(&c->tx_lock);
	c->remote = *peer;
	rdma_tx_init(&c->tx, peer->geom.nr_slots);
	c->tx_ready = true;
	pthread_mutex_unlock(&c->tx_lock);
	return 0;
}

/* ---- send side ------------------------------------------------------------------ */

static size_t rdma_send_half(const struct rdma_conn *c)
{
	size_t limit = c->rl && c->rl->cfg.send_limit ? c->rl->cfg.send_limit
						      : RDMA_SEND_LIMIT;

	return limit / 2;
}

static int conn_post_chunk(struct rdma_conn *c, struct rdma_txrec *rec)
{
	uint32_t slot, seq, ssz = c->remote.geom.slot_size;
	struct ibv_send_wr wr, *bad = NULL;
	struct ibv_sge sge;
	uint8_t *dst;
	size_t n;
	int rc;

	if (rdma_tx_take(&c->tx, &slot, &seq) != 0)
		return -EAGAIN;
	dst = c->sbuf + (size_t)slot * ssz;
	n = rdma_chunk_build(dst, ssz, seq, c->tx_rec_seq, rec->data,
			     rec->len, rec->off);
	sge.addr = (uintptr_t)dst;
	sge.length = (uint32_t)n;
	sge.lkey = c->sbuf_mr->lkey;
	memset(&wr, 0, sizeof(wr));
	wr.wr_id = WR_ID(RDMA_WR_CHUNK, slot);
	wr.sg_list = &sge;
	wr.num_sge = 1;
	wr.send_flags = IBV_SEND_SIGNALED;
	if (c->mode == RDMA_MODE_WRITE) {
		wr.opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
		wr.imm_data = htobe32(rdma_imm_make(slot, seq));
		wr.wr.rdma.remote_addr = c->remote.addr + (uint64_t)slot * ssz;
		wr.wr.rdma.rkey = c->remote.rkey;
	} else {
		wr.opcode = IBV_WR_SEND_WITH_IMM;
		wr.imm_data = htobe32(rdma_imm_make(0, seq));
	}
	rc = ibv_post_send(c->id->qp, &wr, &bad);
	if (rc != 0)
		return -rc;
	c->sq_used++;
	rec->off += (uint32_t)(n - RDMA_CHUNK_HDR_SIZE);
	c->queued -= n - RDMA_CHUNK_HDR_SIZE;
	return 0;
}

/* Posts what credits and the send queue allow.  tx_lock held. */
static int conn_pump_locked(struct rdma_conn *c)
{
	struct rdma_txrec *rec;
	int rc;

	while ((rec = c->txq) != NULL && c->tx_ready && !c->disconnected &&
	       rdma_tx_ready(&c->tx) && c->sq_used + 1 < RDMA_SQ_DEPTH) {
		rc = conn_post_chunk(c, rec);
		if (rc != 0)
			return rc;
		if (rec->off < rec->len)
			continue;
		c->txq = rec->next;
		if (c->txq == NULL)
			c->txq_tail = NULL;
		c->tx_rec_seq++;
		free(rec);
	}
	return 0;
}

/* Queues a copy of one framed record and posts what it can. */
int rdma_conn_send(struct rdma_conn *c,
	      const uint8_t hdr[WIRE_RECORD_HEADER_SIZE],
	      const void *body, size_t len, size_t pad)
{
	size_t total = WIRE_RECORD_HEADER_SIZE + len + pad;
	struct rdma_txrec *rec;
	int rc;

	if (pad >= WIRE_ALIGN || total % WIRE_ALIGN || total > RDMA_REC_MAX)
		return -EINVAL;
	rec = malloc(sizeof(*rec) + total);
	if (rec == NULL)
		return -ENOMEM;
	memcpy(rec->data, hdr, WIRE_RECORD_HEADER_SIZE);
	if (len)
		memcpy(rec->data + WIRE_RECORD_HEADER_SIZE, body, len);
	memset(rec->data + WIRE_RECORD_HEADER_SIZE + len, 0, pad);
	rec->len = (uint32_t)total;
	rec->off = 0;
	rec->next = NULL;
	pthread_mutex_lock(&c->tx_lock);
	if (c->tx_closing) {
		pthread_mutex_unlock(&c->tx_lock);
		free(rec);
		return -ENOTCONN;
	}
	if (c->txq_tail)
		c->txq_tail->next = rec;
	else
		c->txq = rec;
	c->txq_tail = rec;
	c->queued += total;
	if (c->queued >= rdma_send_half(c))
		c->drain_armed = true;
	rc = conn_pump_locked(c);
	if (c->queued > 0)
		c->flush_armed = true;  /* tp_flush may wait for zero */
	pthread_mutex_unlock(&c->tx_lock);
	return rc;
}

/* Returns consumed chunks' credits, batched.  tx_lock held. */
static int conn_credit_locked(struct rdma_conn *c)
{
	struct ibv_send_wr wr, *bad = NULL;
	struct ibv_sge sge;
	struct wire_buf b;
	uint32_t value;
	int rc;

	if (c->credit_busy || c->paused || c->disconnected || !c->tx_ready ||
	    c->sq_used >= RDMA_SQ_DEPTH || !rdma_rx_credit_due(&c->rx, &value))
		return 0;
	wire_buf_init(&b);
	rc = rdma_credit_put(&b, value);
	if (rc == 0)
		memcpy(c->cbuf, b.data, RDMA_CREDIT_SIZE);
	wire_buf_fini(&b);
	if (rc != 0)
		return rc;
	sge.addr = (uintptr_t)c->cbuf;
	sge.length = RDMA_CREDIT_SIZE;
	sge.lkey = c->cbuf_mr->lkey;
	memset(&wr, 0, sizeof(wr));
	wr.wr_id = WR_ID(RDMA_WR_CREDIT, 0);
	wr.sg_list = &sge;
	wr.num_sge = 1;
	wr.opcode = IBV_WR_SEND;
	wr.send_flags = IBV_SEND_SIGNALED;
	rc = ibv_post_send(c->id->qp, &wr, &bad);
	if (rc != 0)
		return -rc;
	c->credit_busy = true;
	c->sq_used++;
	rdma_rx_credit_sent(&c->rx, value);
	return 0;
}

/*
 * After completions (loop thread): post more, return credits, tell the
 * core when the queue fell below half its limit or emptied (tp_send and
 * tp_flush wait for those), and disconnect a closing channel once
 * everything it queued has gone out.
 */
void rdma_conn_tx_kick(struct rdma_conn *c)
{
	bool drained = false, disc = false;
	int rc;

	if (c->doomed)
		return;
	pthread_mutex_lock(&c->tx_lock);
	rc = conn_pump_locked(c);
	if (rc == 0)
		rc = conn_credit_locked(c);
	if (c->drain_armed && c->queued < rdma_send_half(c)) {
		c->drain_armed = false;
		drained = true;
	}
	if (c->flush_armed && c->queued == 0) {
		c->flush_armed = false;
		drained = true;
	}
	if (c->tx_closing && c->txq == NULL && c->sq_used == 0 &&
	    !c->disconnected) {
		c->disconnected = true;
		disc = true;
	}
	pthread_mutex_unlock(&c->tx_lock);
	if (rc != 0)
		rdma_conn_fail(c, rc, "posting a send failed: %s", strerror(-rc));
	else if (drained && c->rl && rdma_link_state(c->rl) == RDMA_LS_UP)
		tpl_drained(c->rl->link, c->chan);
	if (disc)
		rdma_disconnect(c->id);
}

/* ---- receive side ------------------------------------------------------------ */

/* Whether records on c go to the core (else: handshake records). */
static bool conn_link_up(const struct rdma_conn *c)
{
	return c->rl && rdma_link_state(c->rl) == RDMA_LS_UP;
}

/*
 * First chunk of a record: the core checks the header once the link is
 * up; before that the handshake cap applies.  The framed length must match
 * the chunk header's.
 */
static int conn_check_hdr(void *arg, const uint8_t hdr[WIRE_RECORD_HEADER_SIZE],
			  uint32_t rec_len, char *err, size_t errlen)
{
	struct rdma_conn *c = arg;
	size_t framed;
	int rc;

	if (!conn_link_up(c)) {
		rc = wire_record_header_decode(hdr, RDMA_HS_BODY_MAX, &c->rh,
					       err, errlen);
		if (rc != 0)
			return rc;
	} else {
		rc = tpl_header(c->rl->link, c->chan, hdr, &c->rh);
		if (rc != 0)
			return rdma_errf(err, errlen, rc,
					 "record header refused: %s",
					 strerror(-rc));
	}
	framed = WIRE_RECORD_HEADER_SIZE + wire_padded_length(c->rh.length);
	if (framed != rec_len)
		return rdma_errf(err, errlen, -EBADMSG,
				 "%s record of length %" PRIu32
				 " frames to %zu bytes, chunk header says %"
				 PRIu32, wire_record_type_name(c->rh.type),
				 c->rh.length, framed, rec_len);
	return 0;
}

/*
 * Before the link is up a channel consumes handshake records.  A client's
 * joined channel then holds what arrives: the server is up first and may
 * send records already.  A server's joined channel goes on reading, since
 * a client that is not up can send nothing but a BYE.
 */
static bool conn_may_consume(const struct rdma_conn *c)
{
	if (c->doomed || c->paused)
		return false;
	if (c->state == RDMA_CS_HANDSHAKE || conn_link_up(c))
		return true;
	return c->state == RDMA_CS_READY && c->server && c->rl &&
	       rdma_link_state(c->rl) == RDMA_LS_JOINING;
}

static int conn_record(struct rdma_conn *c, struct rdma_record *rec)
{
	int rc;

	if (!conn_link_up(c)) {
		rc = rdma_hs_record(c, rec);
		free(rec->body);
		return rc;
	}
	rc = tpl_input(c->rl->link, c->chan, rec->hdr, &c->rh, rec->body);
	if (rc == 1) {
		c->paused = true;
		log_debug("rdma: chan %u (%s): paused by the consumer",
			  c->chan, c->peer);
		return 0;
	}
	return rc;
}

/* Consumes one arrived chunk: into the reassembly, then free its slot. */
static int conn_chunk(struct rdma_conn *c, const struct rdma_rx_ent *ent)
{
	const uint8_t *p = c->rbuf + (size_t)ent->slot * c->geom.slot_size;
	struct rdma_record rec;
	char err[TP_ERR_MAX] = "";
	int rc, prc = 0;

	rc = rdma_reasm_chunk(&c->reasm, p, ent->len, conn_check_hdr, c, &rec,
			      err, sizeof(err));
	rdma_rx_consume(&c->rx);
	if (c->mode == RDMA_MODE_SEND)
		prc = conn_post_recv(c, ent->slot);
	if (rc < 0)
		return rdma_conn_fail(c, rc, "%s", err);
	if (prc != 0) {
		if (rc == 1)
			free(rec.body);
		return rdma_conn_fail(c, prc, "cannot repost receive buffer %"
				 PRIu32 ": %s", ent->slot, strerror(-prc));
	}
	return rc == 1 ? conn_record(c, &rec) : 0;
}

void rdma_conn_rx_drain(struct rdma_conn *c)
{
	struct rdma_rx_ent ent;

	while (conn_may_consume(c) && rdma_rx_peek(&c->rx, &ent) == 0)
		if (conn_chunk(c, &ent) < 0)
			return;
}

static int conn_credit_in(struct rdma_conn *c, uint32_t idx, uint32_t len)
{
	const uint8_t *p;
	char err[TP_ERR_MAX];
	uint32_t consumed;
	int rc;

	if (c->mode == RDMA_MODE_SEND)
		p = c->rbuf + (size_t)idx * c->geom.slot_size;
	else
		p = c->mbuf + (size_t)idx * RDMA_MSG_BUF;
	rc = rdma_credit_decode(p, len, &consumed, err, sizeof(err));
	if (rc == 0) {
		pthread_mutex_lock(&c->tx_lock);
		rc = rdma_tx_credit(&c->tx, consumed, err, sizeof(err));
		pthread_mutex_unlock(&c->tx_lock);
	}
	if (rc < 0)
		return rdma_conn_fail(c, rc, "%s", err);
	rc = conn_post_recv(c, idx);
	if (rc != 0)
		return rdma_conn_fail(c, rc, "cannot repost receive buffer %" PRIu32
				 ": %s", idx, strerror(-rc));
	return 0;
}

static int conn_recv(struct rdma_conn *c, const struct ibv_wc *wc)
{
	uint32_t idx = WR_IDX(wc->wr_id), imm = be32toh(wc->imm_data);
	bool with_imm = (wc->wc_flags & IBV_WC_WITH_IMM) != 0;
	char err[TP_ERR_MAX];
	int rc;

	if (idx >= c->nr_rq)
		return rdma_conn_fail(c, -EIO, "receive completion for buffer %"
				 PRIu32 " of %" PRIu32 " (bug)", idx, c->nr_rq);
	if (wc->opcode == IBV_WC_RECV_RDMA_WITH_IMM &&
	    c->mode == RDMA_MODE_WRITE) {
		rc = rdma_rx_arrive(&c->rx, imm, 0, c->geom.slot_size, err,
				    sizeof(err));
		if (rc == 0)
			rc = conn_post_recv(c, idx);
		return rc ? rdma_conn_fail(c, rc, "%s", err) : 0;
	}
	if (wc->opcode == IBV_WC_RECV && with_imm &&
	    c->mode == RDMA_MODE_SEND) {
		rc = rdma_rx_arrive(&c->rx, imm, idx, wc->byte_len, err,
				    sizeof(err));
		return rc ? rdma_conn_fail(c, rc, "%s", err) : 0;
	}
	if (wc->opcode == IBV_WC_RECV && !with_imm)
		return conn_credit_in(c, idx, wc->byte_len);
	return rdma_conn_fail(c, -EPROTO, "receive opcode %d%s on a %s channel",
			 (int)wc->opcode, with_imm ? " with immediate" : "",
			 rdma_mode_name(c->mode));
}

/* A failed completion: the error to fail c with once what arrived is in. */
static int conn_wc_error(const struct ibv_wc *wc, char *why, size_t n)
{
	bool recv = WR_KIND(wc->wr_id) == RDMA_WR_RECV;

	if (wc->status == IBV_WC_WR_FLUSH_ERR)
		return rdma_errf(why, n, -ECONNRESET, "%s work request flushed"
				 " (queue pair in error)", recv ? "receive" : "send");
	return rdma_errf(why, n, -EIO, "%s work request failed: %s (vendor "
			 "error 0x%x)", recv ? "receive" : "send",
			 ibv_wc_status_str(wc->status), wc->vendor_err);
}

static int conn_wc(struct rdma_conn *c, const struct ibv_wc *wc)
{
	unsigned kind = WR_KIND(wc->wr_id);

	if (kind == RDMA_WR_CHUNK || kind == RDMA_WR_CREDIT) {
		pthread_mutex_lock(&c->tx_lock);
		c->sq_used--;
		if (kind == RDMA_WR_CREDIT)
			c->credit_busy = false;
		pthread_mutex_unlock(&c->tx_lock);
		return 0;
	}
	if (kind == RDMA_WR_RECV)
		return conn_recv(c, wc);
	return rdma_conn_fail(c, -EIO, "completion for work request 0x%016" PRIx64
			 " (bug)", (uint64_t)wc->wr_id);
}

/*
 * Handles every completion, then consumes what arrived and posts what is
 * due.  After a failed completion the chunks that arrived before it are
 * still consumed (a peer's BYE, records the core may hand out) before the
 * channel fails.
 */
static void conn_poll(struct rdma_conn *c)
{
	struct ibv_wc wc[RDMA_POLL_BATCH];
	char why[TP_ERR_MAX] = "";
	int n = 0, i, rc = 0;

	while (rc == 0 && !c->doomed &&
	       (n = ibv_poll_cq(c->cq, RDMA_POLL_BATCH, wc)) > 0) {
		for (i = 0; i < n && rc == 0; i++) {
			if (wc[i].status != IBV_WC_SUCCESS)
				rc = conn_wc_error(&wc[i], why, sizeof(why));
			else if (conn_wc(c, &wc[i]) < 0)
				return;
		}
	}
	if (rc == 0 && n < 0)
		rc = rdma_errf(why, sizeof(why), -EIO,
			       "polling the completion queue failed");
	rdma_conn_rx_drain(c);
	if (rc != 0)
		rdma_conn_fail(c, rc, "%s", why);
	else
		rdma_conn_tx_kick(c);
}

static void conn_cq_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rdma_conn *c = arg;
	struct ibv_cq *cq;
	void *ctx;

	(void)fd;
	(void)what;
	while (ibv_get_cq_event(c->cc, &cq, &ctx) == 0)
		ibv_ack_cq_events(cq, 1);
	if (c->doomed)
		return;
	if (ibv_req_notify_cq(c->cq, 0) != 0) {
		rdma_conn_fail(c, -EIO, "cannot rearm the completion queue");
		return;
	}
	conn_poll(c);
}

/* The consumer caught up with chan: consume what waited, return credits. */
static void conn_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rdma_conn *c = arg;

	(void)fd;
	(void)what;
	if (c->doomed || !c->paused)
		return;
	c->paused = false;
	log_debug("rdma: chan %u (%s): resumed", c->chan, c->peer);
	rdma_conn_rx_drain(c);
	rdma_conn_tx_kick(c);
}
