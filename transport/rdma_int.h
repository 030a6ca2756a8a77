/*
 * rdma_int.h - what the two halves of the RDMA back end share: rdma.c
 * (connection manager, handshake, tp_rdma_ops) and rdma_conn.c (one
 * channel's verbs resources and data path).  Not for use outside
 * transport/.
 *
 * A link (struct rdma_link) has one conn (struct rdma_conn) per channel:
 * conn[0] for control, conn[1..nr_bulk] for bulk.  A listener (struct
 * rdma_lis) holds the links whose handshake is under way and the bulk
 * conns that have not joined one yet.  rl->state is written only by
 * link_set_state (rdma.c) and read anywhere with rdma_link_state; a conn's
 * receive side belongs to the loop thread, its send side to tx_lock.
 */
#ifndef TANDEM_RDMA_INT_H
#define TANDEM_RDMA_INT_H

#include "link_int.h"
#include "rdma_buf.h"

#include <infiniband/verbs.h>
#include <pthread.h>
#include <rdma/rdma_cma.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct event;

#define RDMA_ADDR_MAX 80

enum rdma_role { RDMA_CLIENT, RDMA_SERVER };

enum rdma_link_state {
	RDMA_LS_CONNECTING,   /* client: control channel being set up */
	RDMA_LS_HELLO,        /* HELLO sent (client) or awaited (server) */
	RDMA_LS_JOINING,      /* session fixed, bulk channels joining */
	RDMA_LS_UP,           /* tpl_up done: records go to the core */
	RDMA_LS_FAILED,       /* handshake failed; never had a tp_link */
	RDMA_LS_CLOSING,      /* ops->close: no delivery, sends drain */
	RDMA_LS_NR
};

enum rdma_conn_state {
	RDMA_CS_ADDR,         /* client: resolving the address */
	RDMA_CS_ROUTE,        /* client: resolving the route */
	RDMA_CS_CONNECTING,   /* connect sent / request being accepted */
	RDMA_CS_HANDSHAKE,    /* connected; this channel's handshake record */
	RDMA_CS_READY,        /* handshake done on this channel */
	RDMA_CS_DOWN,         /* disconnected or failed */
	RDMA_CS_NR
};

struct rdma_txrec {
	struct rdma_txrec *next;
	uint32_t len, off;            /* framed bytes; bytes already posted */
	uint8_t data[];
};

struct rdma_conn {
	struct tp_ctx *ctx;
	struct rdma_link *rl;         /* NULL while an orphan of a listener */
	struct rdma_lis *lis;         /* server, until the link is up */
	struct rdma_conn *next;       /* on lis->orphans or lis->doomed */
	bool server;
	bool doomed;                  /* no more processing; teardown pending */
	unsigned chan;
	enum rdma_mode mode;
	enum rdma_conn_state state;
	char peer[RDMA_ADDR_MAX];

	struct rdma_event_channel *ec;
	struct rdma_cm_id *id;
	struct ibv_pd *pd;
	struct ibv_comp_channel *cc;
	struct ibv_cq *cq;
	struct event *cm_ev, *cq_ev, *timer_ev, *resume_ev;

	/* receive side: loop thread */
	struct rdma_geom geom;        /* our ring, as advertised */
	uint32_t nr_rq;               /* receive work requests posted */
	uint8_t *rbuf;                /* ring (WRITE) or receive buffers (SEND) */
	struct ibv_mr *rbuf_mr;
	uint8_t *mbuf;                /* WRITE: receive buffers for messages */
	struct ibv_mr *mbuf_mr;
	uint8_t *cbuf;                /* our outgoing credit message */
	struct ibv_mr *cbuf_mr;
	struct rdma_rx rx;
	struct rdma_reasm reasm;
	struct wire_record_header rh; /* of the record being reassembled */
	bool paused;

	/* send side: under tx_lock */
	pthread_mutex_t tx_lock;
	bool tx_ready, tx_closing, disconnected, credit_busy;
	bool drain_armed;             /* queued reached half the send limit */
	bool flush_armed;             /* something waited for credits */
	struct rdma_advert remote;    /* the peer's ring */
	uint8_t *sbuf;                /* staging slots, the peer's geometry */
	struct ibv_mr *sbuf_mr;
	struct rdma_tx tx;
	struct rdma_txrec *txq, *txq_tail;
	uint32_t tx_rec_seq;
	size_t queued;                /* record bytes not yet posted */
	uint32_t sq_used;
};

struct rdma_link {
	struct tp_ctx *ctx;
	struct tp_link *link;         /* from tpl_new, when UP */
	struct tp_config cfg;
	enum rdma_role role;
	_Atomic int state;            /* enum rdma_link_state: link_set_state */
	pthread_t loop;
	struct sockaddr_storage dst;  /* client */
	char peer[RDMA_ADDR_MAX];
	unsigned nr_bulk, nr_joined;
	struct link_session sess;
	struct rdma_conn *conn[1 + TP_MAX_BULK];
	pthread_mutex_t mu;           /* state writes, rc/err, the client's wait */
	pthread_cond_t cond;
	int rc;
	char err[TP_ERR_MAX];
	struct rdma_lis *lis;         /* server, until UP */
	struct rdma_link *next;       /* on lis->pending or lis->doomed_links */
	struct event *timer_ev;       /* server: handshake deadline */
	bool bye_sent;                /* a refusal is on its way to the peer */
};

struct rdma_lis {
	struct tp_ctx *ctx;
	struct tp_listener *l;
	struct tp_config cfg;
	pthread_t loop;
	char addr[RDMA_ADDR_MAX];
	struct rdma_event_channel *ec;
	struct rdma_cm_id *id;
	struct event *cm_ev, *reap_ev;
	struct rdma_conn *orphans, *doomed;   /* bulk conns before JOIN */
	struct rdma_link *pending, *doomed_links;
};

/* ---- rdma.c ---------------------------------------------------------------- */

/* -errno after a failed library call, never 0. */
int rdma_errno(void);
int rdma_nonblock(int fd);

enum rdma_link_state rdma_link_state(const struct rdma_link *rl);

/*
 * A channel failed: fails the link if it is up, its handshake if not, or
 * refuses an orphan.  Returns rc (negative) for the caller to pass on.
 */
int rdma_conn_fail(struct rdma_conn *c, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* One complete record on c before the link is up. */
int rdma_hs_record(struct rdma_conn *c, const struct rdma_record *rec);

/* ---- rdma_conn.c ------------------------------------------------------------ */

struct rdma_conn *rdma_conn_new(struct tp_ctx *ctx, unsigned chan, bool server,
			   const char *peer);
/* Loop thread, outside any of c's callbacks. */
void rdma_conn_destroy(struct rdma_conn *c);
/* Stops every callback of c; its memory stays until rdma_conn_destroy. */
void rdma_conn_quiesce(struct rdma_conn *c);

/* PD, completion channel and CQ, QP, buffers, posted receives, CQ event. */
int rdma_conn_setup_verbs(struct rdma_conn *c, char *err, size_t errlen);
/* Our ring, for the CM private data of connect/accept. */
int rdma_conn_advert(const struct rdma_conn *c, uint8_t out[RDMA_ADVERT_SIZE]);
void rdma_conn_param_init(struct rdma_conn_param *p, const uint8_t *adv);
/* The peer's ring: the send side may start. */
int rdma_conn_tx_setup(struct rdma_conn *c, const struct rdma_advert *peer,
		  char *err, size_t errlen);

/* Queues a copy of one framed record and posts what it can. */
int rdma_conn_send(struct rdma_conn *c, const uint8_t hdr[WIRE_RECORD_HEADER_SIZE],
	      const void *body, size_t len, size_t pad);
/* Loop thread: post more, return credits, tell the core, disconnect. */
void rdma_conn_tx_kick(struct rdma_conn *c);
/* Loop thread: consume the chunks that arrived, as far as allowed. */
void rdma_conn_rx_drain(struct rdma_conn *c);

#endif
