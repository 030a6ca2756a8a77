/*
 * rdma.c - the RDMA back end of the link (tp_rdma_ops), on rdma-core:
 * librdmacm for connections, libibverbs for queue pairs.  This file has
 * the connection manager side (address and route resolution, connect,
 * listen, accept and their events), the handshake and the ops table with
 * its entry points.  Each channel's verbs resources and data path (a
 * "conn") are in rdma_conn.c; what the two share is in rdma_int.h.
 * Design, buffer sizes and the security stance are in docs/rdma.md; the
 * pure parts (rings, credits, chunks, reassembly, advertisement and credit
 * messages) are in rdma_buf.c.
 *
 * One RC queue pair per link channel, each with its own CM event channel
 * and CM id.  Each end advertises its receive ring (rdma_conn_advert) in the CM
 * private data of connect/accept, so both know the other's ring before
 * the first byte.
 *
 * Handshake.  Records of the link protocol join the channels into one
 * link, as on TCP but without a LINK stream header: the connector sends
 * HELLO on channel 0 and gets WELCOME; then connects each bulk channel and
 * sends JOIN on it, getting JOINED.  The back end frames these records
 * itself (wire_record_seal_iov, epoch 0, seq 0: the handshake record of
 * each channel), as docs/transport.md section 3 has it: HELLO, WELCOME
 * and a refusing BYE with seed 0, JOIN and JOINED with the session's seed.
 * It checks them the same way and calls tpl_up only when every channel
 * has joined; every record
 * after that comes framed from the core (ops->send) and goes to it
 * (tpl_header, tpl_input).  The server creates the tp_link only when the
 * handshake is complete, so a refused peer never reaches the core.
 *
 * Threads.  Everything that touches the CM runs on the context's loop
 * thread, driven by libevent events on the CM channel fds; nothing there
 * blocks.  ops->send and ops->send_queued run on sender threads and go to
 * the conn's send side (rdma_conn.c) under its tx_lock.  ops->resume_read
 * (any thread, or re-entrantly from tpl_input) only activates an event.
 * ops->close is non-blocking from any thread; ops->free and listener_free
 * hop to the loop thread (tpl_ctx_call) to tear down.
 *
 * Invariants:
 *  - A link is UP only after every channel's handshake passed; before that
 *    no record reaches the core, and records that arrive on a joined
 *    channel wait in its ring until tpl_up.
 *  - Only TP_SEC_INSECURE is accepted, and each link says loudly, once,
 *    that it is neither encrypted nor authenticated.
 */
#include "rdma_int.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <pthread.h>
#include <rdma/rdma_cma.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define RDMA_CM_TIMEOUT_MS 5000      /* address and route resolution */
#define RDMA_BACKLOG 16
#define RDMA_HS_TIMEOUT_MS 10000     /* transport.h's default */
#define RDMA_PDATA_MAX 256
#define RDMA_LINGER_MS 200           /* a refused peer's BYE goes out */

static const char *const rdma_ls_names[RDMA_LS_NR] = {
	"CONNECTING", "HELLO", "JOINING", "UP", "FAILED", "CLOSING",
};

#define LS(s) (1u << RDMA_LS_##s)
static const unsigned rdma_ls_next[RDMA_LS_NR] = {
	[RDMA_LS_CONNECTING] = LS(HELLO) | LS(FAILED),
	[RDMA_LS_HELLO] = LS(JOINING) | LS(UP) | LS(FAILED),
	[RDMA_LS_JOINING] = LS(UP) | LS(FAILED),
	[RDMA_LS_UP] = LS(CLOSING),
	[RDMA_LS_FAILED] = 0,
	[RDMA_LS_CLOSING] = 0,
};

static const char *const rdma_cs_names[RDMA_CS_NR] = {
	"ADDR", "ROUTE", "CONNECTING", "HANDSHAKE", "READY", "DOWN",
};

#define CS(s) (1u << RDMA_CS_##s)
static const unsigned rdma_cs_next[RDMA_CS_NR] = {
	[RDMA_CS_ADDR] = CS(ROUTE) | CS(DOWN),
	[RDMA_CS_ROUTE] = CS(CONNECTING) | CS(DOWN),
	[RDMA_CS_CONNECTING] = CS(HANDSHAKE) | CS(DOWN),
	[RDMA_CS_HANDSHAKE] = CS(READY) | CS(DOWN),
	[RDMA_CS_READY] = CS(DOWN),
	[RDMA_CS_DOWN] = 0,
};

/* Transitions and (state, event) pairs that cannot happen: bugs, counted. */
static atomic_uint rdma_bugs;

/* What an event handler needs of a CM event, copied before the ack. */
struct rdma_cm_copy {
	enum rdma_cm_event_type type;
	int status;
	struct rdma_cm_id *id;
	uint8_t pdata[RDMA_PDATA_MAX];
	size_t pdata_len;
};

static void link_hs_fail(struct rdma_link *rl, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void lis_doom_link(struct rdma_lis *lis, struct rdma_link *rl);

/* ---- small helpers ------------------------------------------------------- */

/* -errno after a failed library call, never 0. */
int rdma_errno(void)
{
	return errno > 0 ? -errno : -EIO;
}

int rdma_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return rdma_errno();
	return 0;
}

static void rdma_sockaddr_str(const struct sockaddr *sa, char *out, size_t n)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (sa && sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
		port = ntohs(s4->sin_port);
		snprintf(out, n, "%s:%u", host, port);
	} else if (sa && sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
		port = ntohs(s6->sin6_port);
		snprintf(out, n, "[%s]:%u", host, port);
	} else {
		snprintf(out, n, "unknown address");
	}
}

/* "host:port" or "[v6]:port" into a sockaddr. */
static int rdma_addr_parse(const char *addr, bool passive,
			   struct sockaddr_storage *ss, char *err, size_t errlen)
{
	char host[RDMA_ADDR_MAX];
	const char *port, *end;
	struct addrinfo hints, *res = NULL;
	int rc;

	if (addr == NULL || strlen(addr) >= sizeof(host))
		return rdma_errf(err, errlen, -EINVAL,
				 "rdma: address \"%s\" missing or too long",
				 addr ? addr : "(null)");
	if (addr[0] == '[') {
		end = strchr(addr, ']');
		port = end && end[1] == ':' ? end + 2 : NULL;
		addr++;
	} else {
		end = strrchr(addr, ':');
		port = end && strchr(addr, ':') == end ? end + 1 : NULL;
	}
	if (port == NULL || *port == '\0')
		return rdma_errf(err, errlen, -EINVAL,
				 "rdma: address \"%s\" is not host:port or "
				 "[v6]:port", addr);
	snprintf(host, sizeof(host), "%.*s", (int)(end - addr), addr);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
	rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
	if (rc != 0)
		return rdma_errf(err, errlen, -EINVAL,
				 "rdma: cannot resolve \"%s\" port \"%s\": %s",
				 host, port, gai_strerror(rc));
	memset(ss, 0, sizeof(*ss));
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	return 0;
}

/* Runs fn(arg) on the loop thread: directly if this is it. */
static void rdma_on_loop(struct tp_ctx *ctx, pthread_t loop,
			 void (*fn)(void *), void *arg)
{
	if (pthread_equal(pthread_self(), loop))
		fn(arg);
	else
		tpl_ctx_call(ctx, fn, arg);
}

/* ---- state machines -------------------------------------------------------- */

enum rdma_link_state rdma_link_state(const struct rdma_link *rl)
{
	return (enum rdma_link_state)atomic_load(&rl->state);
}

/* The one writer of rl->state; wakes a client waiting in connect. */
static int link_set_state(struct rdma_link *rl, enum rdma_link_state to)
{
	enum rdma_link_state from;
	bool legal;

	pthread_mutex_lock(&rl->mu);
	from = rdma_link_state(rl);
	legal = (rdma_ls_next[from] & (1u << to)) != 0;
	if (legal)
		atomic_store(&rl->state, (int)to);
	pthread_cond_broadcast(&rl->cond);
	pthread_mutex_unlock(&rl->mu);
	if (!legal) {
		atomic_fetch_add(&rdma_bugs, 1);
		log_error("rdma: link %s: illegal transition %s -> %s (bug %u)",
			  rl->peer, rdma_ls_names[from], rdma_ls_names[to],
			  atomic_load(&rdma_bugs));
		return -EINVAL;
	}
	log_info("rdma: link %s: %s -> %s", rl->peer, rdma_ls_names[from],
		 rdma_ls_names[to]);
	return 0;
}

/* The one writer of c->state (loop thread only). */
static int conn_set_state(struct rdma_conn *c, enum rdma_conn_state to)
{
	enum rdma_conn_state from = c->state;

	if (from == to)
		return 0;
	if (!(rdma_cs_next[from] & (1u << to))) {
		atomic_fetch_add(&rdma_bugs, 1);
		log_error("rdma: chan %u (%s): illegal transition %s -> %s",
			  c->chan, c->peer, rdma_cs_names[from],
			  rdma_cs_names[to]);
		return -EINVAL;
	}
	c->state = to;
	log_debug("rdma: chan %u (%s): %s -> %s", c->chan, c->peer,
		  rdma_cs_names[from], rdma_cs_names[to]);
	return 0;
}

/* ---- failure ------------------------------------------------------------------ */

/*
 * Tells the peer why its handshake ends: a BYE record (seed 0) with the
 * reason, best effort.  Returns whether one was queued.
 */
static bool conn_bye(struct rdma_conn *c, const char *why)
{
	struct wire_record_header h = { .type = WIRE_REC_LINK_BYE };
	uint8_t hdr[WIRE_RECORD_HEADER_SIZE];
	size_t len = strlen(why);
	const void *parts[1] = { why };
	bool ready;

	pthread_mutex_lock(&c->tx_lock);
	ready = c->tx_ready && !c->disconnected;
	pthread_mutex_unlock(&c->tx_lock);
	if (!ready)
		return false;
	len = len > LINK_BYE_MAX ? LINK_BYE_MAX : len;
	h.length = (uint32_t)len;
	return wire_record_seal_iov(hdr, &h, parts, &len, 1, 0) == 0 &&
	       rdma_conn_send(c, hdr, why, len,
			 wire_padded_length(h.length) - len) == 0;
}

/* The handshake of rl failed: tell the client's waiter, or refuse the peer. */
static void link_hs_fail(struct rdma_link *rl, int rc, const char *fmt, ...)
{
	char msg[TP_ERR_MAX];
	enum rdma_link_state st = rdma_link_state(rl);
	va_list ap;

	if (st == RDMA_LS_FAILED || st == RDMA_LS_UP || st == RDMA_LS_CLOSING)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&rl->mu);
	rl->rc = rc < 0 ? rc : -EIO;
	snprintf(rl->err, sizeof(rl->err), "rdma: %.70s: %.170s", rl->peer, msg);
	pthread_mutex_unlock(&rl->mu);
	for (unsigned i = 0; i <= TP_MAX_BULK; i++) {
		if (rl->conn[i]) {
			rl->bye_sent |= conn_bye(rl->conn[i], msg);
			rdma_conn_quiesce(rl->conn[i]);
		}
	}
	if (rl->timer_ev)
		event_del(rl->timer_ev);
	link_set_state(rl, RDMA_LS_FAILED);
	if (rl->role == RDMA_SERVER && rl->lis) {
		tpl_listener_refuse(rl->lis->l, rl->peer, "rdma handshake: %s",
				    msg);
		lis_doom_link(rl->lis, rl);
	}
}

static void lis_doom_conn(struct rdma_lis *lis, struct rdma_conn *c);

/*
 * A channel failed: fails the link if it is up, its handshake if not, or
 * refuses an orphan.  Returns rc (negative) for the caller to pass on.
 */
int rdma_conn_fail(struct rdma_conn *c, int rc, const char *fmt, ...)
{
	char msg[TP_ERR_MAX];
	va_list ap;

	rc = rc < 0 ? rc : -EIO;
	if (c->doomed)
		return rc;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (c->rl == NULL) {
		tpl_listener_refuse(c->lis->l, c->peer, "rdma chan %u: %s",
				    c->chan, msg);
		conn_bye(c, msg);
		lis_doom_conn(c->lis, c);
		return rc;
	}
	switch (rdma_link_state(c->rl)) {
	case RDMA_LS_UP:
		if (c->chan > 0 && tpl_peer_closed(c->rl->link, c->chan)) {
			log_debug("rdma: chan %u (%s) ended after the peer's "
				  "BYE: %s", c->chan, c->peer, msg);
			break;
		}
		tpl_fail(c->rl->link, rc, "rdma chan %u (%s): %s", c->chan,
			 c->peer, msg);
		break;
	case RDMA_LS_CLOSING:
	case RDMA_LS_FAILED:
		log_debug("rdma: chan %u (%s) after close: %s", c->chan,
			  c->peer, msg);
		break;
	default:
		link_hs_fail(c->rl, rc, "chan %u: %s", c->chan, msg);
		break;
	}
	return rc;
}

/* ---- handshake ------------------------------------------------------------------ */

/* Frames a channel's handshake record (epoch 0, seq 0) and queues it. */
static int hs_send(struct rdma_conn *c, uint32_t type, uint64_t seed,
		   const struct wire_buf *b)
{
	struct wire_record_header h = { .type = type, .length = (uint32_t)b->len };
	uint8_t hdr[WIRE_RECORD_HEADER_SIZE];
	const void *parts[1] = { b->data };
	size_t lens[1] = { b->len };
	int rc;

	if (b->rc != 0)
		return b->rc;
	rc = wire_record_seal_iov(hdr, &h, parts, lens, 1, seed);
	if (rc == 0)
		rc = rdma_conn_send(c, hdr, b->data, b->len,
			       wire_padded_length(h.length) - h.length);
	if (rc != 0)
		return rdma_conn_fail(c, rc, "cannot send %s: %s",
				 wire_record_type_name(type), strerror(-rc));
	return 0;
}

static void link_up(struct rdma_link *rl);

/* A handshake record's checksum, with the seed its type is sealed with. */
static int hs_verify(struct rdma_conn *c, const struct rdma_record *rec,
		     uint64_t seed)
{
	char err[TP_ERR_MAX];
	int rc = wire_record_verify_seeded(rec->hdr, rec->body, &c->rh, seed,
					   err, sizeof(err));

	return rc ? rdma_conn_fail(c, rc, "handshake %s", err) : 0;
}

static int srv_hello_check(struct rdma_link *rl, const struct link_hello *h,
			   uint16_t *proto, uint64_t *features,
			   char *err, size_t errlen)
{
	const struct tp_config *cfg = &rl->cfg;

	if (cfg->peer_name[0] && strcmp(h->name, cfg->peer_name) != 0)
		return rdma_errf(err, errlen, -EACCES,
				 "HELLO from \"%s\", expected peer \"%s\"",
				 h->name, cfg->peer_name);
	if (h->nr_bulk > TP_MAX_BULK)
		return rdma_errf(err, errlen, -EPROTO,
				 "HELLO asks for %" PRIu32
				 " bulk channels > max %u", h->nr_bulk,
				 TP_MAX_BULK);
	if (h->epoch < cfg->min_epoch)
		return rdma_errf(err, errlen, -EBADMSG,
				 "stale HELLO: epoch %" PRIu64 " < minimum %"
				 PRIu64 " (replayed or old session)", h->epoch,
				 cfg->min_epoch);
	return link_negotiate(h, cfg->features, proto, features, err, errlen);
}

static int srv_session(struct rdma_link *rl, const struct link_hello *h,
		       uint16_t proto, uint64_t features)
{
	struct link_session *s = &rl->sess;

	memset(s, 0, sizeof(*s));
	if (getrandom(s->id, sizeof(s->id), 0) != (ssize_t)sizeof(s->id))
		return rdma_errno();
	s->proto = proto;
	s->nr_bulk = h->nr_bulk;
	s->features = features;
	s->seed = link_session_seed(s->id);
	s->min_epoch = h->epoch;  /* the connector's first epoch */
	snprintf(s->peer_name, sizeof(s->peer_name), "%s", h->name);
	rl->nr_bulk = h->nr_bulk;
	return 0;
}

static int srv_hello(struct rdma_conn *c, const struct rdma_record *rec)
{
	struct rdma_link *rl = c->rl;
	struct link_hello h;
	struct link_welcome w;
	struct wire_buf b;
	char err[TP_ERR_MAX];
	uint16_t proto = 0;
	uint64_t features = 0;
	int rc;

	rc = hs_verify(c, rec, 0);
	if (rc != 0)
		return rc;
	rc = link_hello_decode(rec->body, c->rh.length, &h, err, sizeof(err));
	if (rc == 0)
		rc = srv_hello_check(rl, &h, &proto, &features, err,
				     sizeof(err));
	if (rc != 0)
		return rdma_conn_fail(c, rc, "%s", err);
	rc = srv_session(rl, &h, proto, features);
	if (rc != 0)
		return rdma_conn_fail(c, rc, "no session id: %s", strerror(-rc));
	memset(&w, 0, sizeof(w));
	w.proto = proto;
	w.nr_bulk = h.nr_bulk;
	w.features = features;
	memcpy(w.session, rl->sess.id, LINK_SESSION_ID);
	w.min_epoch = rl->sess.min_epoch;
	snprintf(w.name, sizeof(w.name), "%s", rl->cfg.local_name);
	wire_buf_init(&b);
	link_welcome_put(&b, &w);
	rc = hs_send(c, WIRE_REC_LINK_WELCOME, 0, &b);
	wire_buf_fini(&b);
	if (rc != 0)
		return rc;
	conn_set_state(c, RDMA_CS_READY);
	if (rl->nr_bulk == 0)
		link_up(rl);
	else
		link_set_state(rl, RDMA_LS_JOINING);
	return 0;
}

static struct rdma_link *lis_find(struct rdma_lis *lis,
				  const uint8_t id[LINK_SESSION_ID])
{
	struct rdma_link *rl;

	for (rl = lis->pending; rl; rl = rl->next)
		if (rdma_link_state(rl) == RDMA_LS_JOINING &&
		    memcmp(rl->sess.id, id, LINK_SESSION_ID) == 0)
			return rl;
	return NULL;
}

static void lis_pending_remove(struct rdma_lis *lis, struct rdma_link *rl)
{
	struct rdma_link **pp;

	for (pp = &lis->pending; *pp; pp = &(*pp)->next) {
		if (*pp == rl) {
			*pp = rl->next;
			rl->next = NULL;
			return;
		}
	}
}

static void lis_orphan_remove(struct rdma_lis *lis, struct rdma_conn *c)
{
	struct rdma_conn **pp;

	for (pp = &lis->orphans; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			c->next = NULL;
			return;
		}
	}
}

/* A bulk conn's JOIN: attach it to its pending link, answer JOINED. */
static int srv_join(struct rdma_conn *c, const struct rdma_record *rec)
{
	struct link_join j;
	struct rdma_link *rl;
	struct wire_buf b;
	char err[TP_ERR_MAX];
	int rc;

	rc = link_join_decode(rec->body, c->rh.length, &j, err, sizeof(err));
	if (rc != 0)
		return rdma_conn_fail(c, rc, "%s", err);
	rl = lis_find(c->lis, j.session);
	if (rl == NULL)
		return rdma_conn_fail(c, -ENOENT, "JOIN for an unknown session "
				 "%02x%02x%02x%02x...", j.session[0],
				 j.session[1], j.session[2], j.session[3]);
	rc = hs_verify(c, rec, rl->sess.seed);
	if (rc != 0)
		return rc;
	if (j.chan != c->chan || j.chan > rl->nr_bulk || rl->conn[j.chan])
		return rdma_conn_fail(c, -EBADMSG, "JOIN for channel %" PRIu32
				 " on a connection for channel %u (link has "
				 "%u bulk channels%s)", j.chan, c->chan,
				 rl->nr_bulk, j.chan <= rl->nr_bulk &&
				 rl->conn[j.chan] ? ", that one joined" : "");
	lis_orphan_remove(c->lis, c);
	if (c->timer_ev)
		event_del(c->timer_ev);
	c->rl = rl;
	rl->conn[c->chan] = c;
	wire_buf_init(&b);
	link_joined_put(&b, j.chan);
	rc = hs_send(c, WIRE_REC_LINK_JOINED, rl->sess.seed, &b);
	wire_buf_fini(&b);
	if (rc != 0)
		return rc;
	conn_set_state(c, RDMA_CS_READY);
	if (++rl->nr_joined == rl->nr_bulk)
		link_up(rl);
	return 0;
}

static int cli_conn_start(struct rdma_link *rl, unsigned chan,
			  char *err, size_t errlen);

static int cli_welcome_check(const struct rdma_link *rl,
			     const struct link_welcome *w,
			     char *err, size_t errlen)
{
	const struct tp_config *cfg = &rl->cfg;

	if (cfg->peer_name[0] && strcmp(w->name, cfg->peer_name) != 0)
		return rdma_errf(err, errlen, -EACCES,
				 "WELCOME from \"%s\", expected peer \"%s\"",
				 w->name, cfg->peer_name);
	if (w->proto < TP_PROTO_MIN || w->proto > TP_PROTO_MAX)
		return rdma_errf(err, errlen, -EPROTONOSUPPORT,
				 "WELCOME protocol %u not in %u..%u", w->proto,
				 TP_PROTO_MIN, TP_PROTO_MAX);
	if (w->nr_bulk != cfg->nr_bulk || w->min_epoch != cfg->min_epoch)
		return rdma_errf(err, errlen, -EPROTO,
				 "WELCOME with %" PRIu32 " bulk channels and "
				 "epoch %" PRIu64 " (asked %u, %" PRIu64 ")",
				 w->nr_bulk, w->min_epoch, cfg->nr_bulk,
				 cfg->min_epoch);
	if (w->features & ~cfg->features)
		return rdma_errf(err, errlen, -EPROTO,
				 "WELCOME features 0x%016" PRIx64
				 " not offered (offered 0x%016" PRIx64 ")",
				 w->features, cfg->features);
	return 0;
}

static int cli_welcome(struct rdma_conn *c, const struct rdma_record *rec)
{
	struct rdma_link *rl = c->rl;
	struct link_session *s = &rl->sess;
	struct link_welcome w;
	char err[TP_ERR_MAX];
	int rc;

	rc = hs_verify(c, rec, 0);
	if (rc != 0)
		return rc;
	rc = link_welcome_decode(rec->body, c->rh.length, &w, err, sizeof(err));
	if (rc == 0)
		rc = cli_welcome_check(rl, &w, err, sizeof(err));
	if (rc != 0)
		return rdma_conn_fail(c, rc, "%s", err);
	memset(s, 0, sizeof(*s));
	s->proto = w.proto;
	s->nr_bulk = w.nr_bulk;
	s->features = w.features;
	memcpy(s->id, w.session, LINK_SESSION_ID);
	s->seed = link_session_seed(s->id);
	s->min_epoch = w.min_epoch;
	snprintf(s->peer_name, sizeof(s->peer_name), "%s", w.name);
	rl->nr_bulk = w.nr_bulk;
	conn_set_state(c, RDMA_CS_READY);
	if (rl->nr_bulk == 0) {
		link_up(rl);
		return 0;
	}
	link_set_state(rl, RDMA_LS_JOINING);
	for (unsigned k = 1; k <= rl->nr_bulk; k++) {
		rc = cli_conn_start(rl, k, err, sizeof(err));
		if (rc != 0)
			return rdma_conn_fail(c, rc, "bulk channel %u: %s", k, err);
	}
	return 0;
}

static int cli_joined(struct rdma_conn *c, const struct rdma_record *rec)
{
	struct rdma_link *rl = c->rl;
	char err[TP_ERR_MAX];
	uint32_t chan;
	int rc;

	rc = hs_verify(c, rec, rl->sess.seed);
	if (rc != 0)
		return rc;
	rc = link_joined_decode(rec->body, c->rh.length, &chan, err,
				sizeof(err));
	if (rc != 0)
		return rdma_conn_fail(c, rc, "%s", err);
	if (chan != c->chan)
		return rdma_conn_fail(c, -EPROTO, "JOINED for channel %" PRIu32
				 " on channel %u", chan, c->chan);
	conn_set_state(c, RDMA_CS_READY);
	if (++rl->nr_joined == rl->nr_bulk)
		link_up(rl);
	return 0;
}

/* One complete record on c before the link is up. */
int rdma_hs_record(struct rdma_conn *c, const struct rdma_record *rec)
{
	char why[LINK_BYE_MAX + 1];
	uint32_t type = c->rh.type;

	if (type == WIRE_REC_LINK_BYE) {
		if (hs_verify(c, rec, 0) != 0)
			return -EBADMSG;
		link_bye_decode(rec->body, c->rh.length, why, sizeof(why));
		return rdma_conn_fail(c, -ECONNREFUSED, "peer refused: %s", why);
	}
	if (c->state != RDMA_CS_HANDSHAKE)
		return rdma_conn_fail(c, -EPROTO, "%s record after this channel's "
				 "handshake, before the link is up",
				 wire_record_type_name(type));
	if (c->server && c->chan == 0 && type == WIRE_REC_LINK_HELLO &&
	    c->rl && rdma_link_state(c->rl) == RDMA_LS_HELLO)
		return srv_hello(c, rec);
	if (c->server && c->chan > 0 && type == WIRE_REC_LINK_JOIN &&
	    c->rl == NULL)
		return srv_join(c, rec);
	if (!c->server && c->chan == 0 && type == WIRE_REC_LINK_WELCOME &&
	    rdma_link_state(c->rl) == RDMA_LS_HELLO)
		return cli_welcome(c, rec);
	if (!c->server && c->chan > 0 && type == WIRE_REC_LINK_JOINED)
		return cli_joined(c, rec);
	return rdma_conn_fail(c, -EPROTO, "unexpected %s record in the handshake",
			 wire_record_type_name(type));
}

/* ---- link up, destruction -------------------------------------------------- */

static void link_up(struct rdma_link *rl)
{
	struct tp_link *link = tpl_new(rl->ctx, &rl->cfg, &tp_rdma_ops, rl);
	struct rdma_lis *lis = rl->lis;

	if (link == NULL) {
		link_hs_fail(rl, -ENOMEM, "cannot create the link");
		return;
	}
	rl->link = link;
	if (rl->timer_ev)
		event_del(rl->timer_ev);
	if (lis) {
		lis_pending_remove(lis, rl);
		rl->lis = NULL;
		for (unsigned i = 0; i <= rl->nr_bulk; i++)
			rl->conn[i]->lis = NULL;
	}
	tpl_up(link, &rl->sess);           /* before connect() can return it */
	link_set_state(rl, RDMA_LS_UP);
	log_warn("rdma: link with %s (%s, %u bulk channels): RDMA carries no "
		 "TLS, so this link is NOT encrypted and NOT authenticated: "
		 "anyone on the fabric can read or forge its records",
		 rl->sess.peer_name, rl->peer, rl->nr_bulk);
	if (lis)
		tpl_listener_push(lis->l, link);
	for (unsigned i = 0; i <= rl->nr_bulk; i++) {
		rdma_conn_rx_drain(rl->conn[i]);
		rdma_conn_tx_kick(rl->conn[i]);
	}
}

static struct rdma_link *link_new(struct tp_ctx *ctx,
				  const struct tp_config *cfg,
				  enum rdma_role role,
				  enum rdma_link_state state)
{
	struct rdma_link *rl = calloc(1, sizeof(*rl));

	if (rl == NULL)
		return NULL;
	rl->ctx = ctx;
	rl->cfg = *cfg;
	rl->role = role;
	atomic_init(&rl->state, (int)state);
	pthread_mutex_init(&rl->mu, NULL);
	tpl_cond_init(&rl->cond);
	return rl;
}

/* Loop thread, outside any callback of rl's conns. */
static void link_destroy(struct rdma_link *rl)
{
	for (unsigned i = 0; i <= TP_MAX_BULK; i++)
		rdma_conn_destroy(rl->conn[i]);
	if (rl->timer_ev)
		event_free(rl->timer_ev);
	pthread_cond_destroy(&rl->cond);
	pthread_mutex_destroy(&rl->mu);
	free(rl);
}

static void link_destroy_cb(void *arg)
{
	link_destroy(arg);
}

/* ---- CM events ------------------------------------------------------------------ */

static void cm_copy(const struct rdma_cm_event *ev, struct rdma_cm_copy *e)
{
	size_t n = ev->param.conn.private_data_len;

	e->type = ev->event;
	e->status = ev->status;
	e->id = ev->id;
	e->pdata_len = 0;
	if (e->type != RDMA_CM_EVENT_CONNECT_REQUEST &&
	    e->type != RDMA_CM_EVENT_ESTABLISHED)
		return;
	if (ev->param.conn.private_data && n && n <= sizeof(e->pdata)) {
		memcpy(e->pdata, ev->param.conn.private_data, n);
		e->pdata_len = n;
	}
}

static int cm_error_rc(const struct rdma_cm_copy *e)
{
	switch (e->type) {
	case RDMA_CM_EVENT_REJECTED:
		return -ECONNREFUSED;
	case RDMA_CM_EVENT_UNREACHABLE:
		return -EHOSTUNREACH;
	case RDMA_CM_EVENT_ROUTE_ERROR:
		return e->status < 0 ? e->status : -ENETUNREACH;
	case RDMA_CM_EVENT_DEVICE_REMOVAL:
		return -ENODEV;
	default:
		return e->status < 0 ? e->status : -ECONNABORTED;
	}
}

static void cli_route(struct rdma_conn *c)
{
	if (rdma_resolve_route(c->id, RDMA_CM_TIMEOUT_MS) != 0) {
		rdma_conn_fail(c, rdma_errno(), "cannot resolve a route to %s: %s",
			  c->peer, strerror(errno));
		return;
	}
	conn_set_state(c, RDMA_CS_ROUTE);
}

static void cli_connect(struct rdma_conn *c)
{
	uint8_t adv[RDMA_ADVERT_SIZE];
	struct rdma_conn_param p;
	char err[TP_ERR_MAX];
	int rc;

	rc = rdma_conn_setup_verbs(c, err, sizeof(err));
	if (rc != 0) {
		rdma_conn_fail(c, rc, "%s", err);
		return;
	}
	rc = rdma_conn_advert(c, adv);
	rdma_conn_param_init(&p, adv);
	if (rc == 0 && rdma_connect(c->id, &p) != 0)
		rc = rdma_errno();
	if (rc != 0) {
		rdma_conn_fail(c, rc, "cannot connect: %s", strerror(-rc));
		return;
	}
	conn_set_state(c, RDMA_CS_CONNECTING);
}

/* Client: connected; learn the peer's ring and send this channel's record. */
static void cli_established(struct rdma_conn *c, const struct rdma_cm_copy *e)
{
	struct rdma_link *rl = c->rl;
	struct rdma_advert adv;
	struct wire_buf b;
	char err[TP_ERR_MAX];
	int rc;

	rc = rdma_advert_decode(e->pdata, e->pdata_len, &adv, err, sizeof(err));
	if (rc == 0)
		rc = rdma_conn_tx_setup(c, &adv, err, sizeof(err));
	if (rc != 0) {
		rdma_conn_fail(c, rc, "%s", err);
		return;
	}
	conn_set_state(c, RDMA_CS_HANDSHAKE);
	wire_buf_init(&b);
	if (c->chan == 0) {
		struct link_hello h = {
			.proto_min = TP_PROTO_MIN, .proto_max = TP_PROTO_MAX,
			.nr_bulk = rl->cfg.nr_bulk, .features = rl->cfg.features,
			.epoch = rl->cfg.min_epoch,
		};

		snprintf(h.name, sizeof(h.name), "%s", rl->cfg.local_name);
		link_hello_put(&b, &h);
		if (hs_send(c, WIRE_REC_LINK_HELLO, 0, &b) == 0)
			link_set_state(rl, RDMA_LS_HELLO);
	} else {
		struct link_join j = { .chan = c->chan };

		memcpy(j.session, rl->sess.id, LINK_SESSION_ID);
		link_join_put(&b, &j);
		hs_send(c, WIRE_REC_LINK_JOIN, rl->sess.seed, &b);
	}
	wire_buf_fini(&b);
	rdma_conn_rx_drain(c);
}

static void conn_disconnected(struct rdma_conn *c)
{
	bool disc;

	conn_set_state(c, RDMA_CS_DOWN);
	pthread_mutex_lock(&c->tx_lock);
	disc = !c->disconnected;
	c->disconnected = true;
	c->tx_closing = true;
	pthread_mutex_unlock(&c->tx_lock);
	if (disc)
		rdma_disconnect(c->id);   /* completes the peer's request */
	rdma_conn_fail(c, -ECONNRESET, "peer disconnected");
}

static void conn_cm_bug(struct rdma_conn *c, const struct rdma_cm_copy *e)
{
	atomic_fetch_add(&rdma_bugs, 1);
	rdma_conn_fail(c, -EPROTO, "CM event %s in state %s (bug)",
		  rdma_event_str(e->type), rdma_cs_names[c->state]);
}

static void conn_cm_event(struct rdma_conn *c, const struct rdma_cm_copy *e)
{
	log_debug("rdma: chan %u (%s): %s, status %d, in state %s", c->chan,
		  c->peer, rdma_event_str(e->type), e->status,
		  rdma_cs_names[c->state]);
	switch (e->type) {
	case RDMA_CM_EVENT_ADDR_RESOLVED:
		if (c->state == RDMA_CS_ADDR)
			cli_route(c);
		else
			conn_cm_bug(c, e);
		break;
	case RDMA_CM_EVENT_ROUTE_RESOLVED:
		if (c->state == RDMA_CS_ROUTE)
			cli_connect(c);
		else
			conn_cm_bug(c, e);
		break;
	case RDMA_CM_EVENT_ESTABLISHED:
		/* a server conn could send since accept: nothing to do */
		if (!c->server && c->state == RDMA_CS_CONNECTING)
			cli_established(c, e);
		else if (!c->server)
			conn_cm_bug(c, e);
		break;
	case RDMA_CM_EVENT_DISCONNECTED:
		conn_disconnected(c);
		break;
	case RDMA_CM_EVENT_TIMEWAIT_EXIT:
	case RDMA_CM_EVENT_ADDR_CHANGE:
		break;
	default:
		conn_set_state(c, RDMA_CS_DOWN);
		rdma_conn_fail(c, cm_error_rc(e), "%s (status %d)",
			  rdma_event_str(e->type), e->status);
		break;
	}
}

static void conn_cm_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rdma_conn *c = arg;
	struct rdma_cm_event *ev;
	struct rdma_cm_copy e;

	(void)fd;
	(void)what;
	while (!c->doomed && rdma_get_cm_event(c->ec, &ev) == 0) {
		cm_copy(ev, &e);
		rdma_ack_cm_event(ev);
		conn_cm_event(c, &e);
	}
}

/* A CM event channel of its own for c, watched by the loop. */
static int conn_cm_watch(struct rdma_conn *c, char *err, size_t errlen)
{
	c->ec = rdma_create_event_channel();
	if (c->ec == NULL)
		return rdma_errf(err, errlen, rdma_errno(),
				 "cannot open the RDMA connection manager: %s "
				 "(is there an RDMA device?)", strerror(errno));
	if (rdma_nonblock(c->ec->fd) != 0)
		return rdma_errf(err, errlen, rdma_errno(),
				 "cannot make the CM channel non-blocking");
	c->cm_ev = event_new(tpl_ctx_base(c->ctx), c->ec->fd,
			     EV_READ | EV_PERSIST, conn_cm_cb, c);
	if (c->cm_ev == NULL || event_add(c->cm_ev, NULL) != 0)
		return rdma_errf(err, errlen, -ENOMEM,
				 "cannot watch the CM channel");
	return 0;
}

/* Client: a new conn for chan, resolving the link's address. */
static int cli_conn_start(struct rdma_link *rl, unsigned chan,
			  char *err, size_t errlen)
{
	struct rdma_conn *c = rdma_conn_new(rl->ctx, chan, false, rl->peer);
	int rc;

	if (c == NULL)
		return rdma_errf(err, errlen, -ENOMEM, "out of memory");
	c->rl = rl;
	rl->conn[chan] = c;
	rc = conn_cm_watch(c, err, errlen);
	if (rc != 0)
		return rc;
	if (rdma_create_id(c->ec, &c->id, c, RDMA_PS_TCP) != 0)
		return rdma_errf(err, errlen, rdma_errno(),
				 "cannot create a CM id: %s", strerror(errno));
	if (rdma_resolve_addr(c->id, NULL, (struct sockaddr *)&rl->dst,
			      RDMA_CM_TIMEOUT_MS) != 0)
		return rdma_errf(err, errlen, rdma_errno(),
				 "cannot resolve %s: %s", rl->peer,
				 strerror(errno));
	return 0;
}

/* ---- client ------------------------------------------------------------------ */

static void cli_start_cb(void *arg)
{
	struct rdma_link *rl = arg;
	char err[TP_ERR_MAX];
	int rc;

	rl->loop = pthread_self();
	rc = cli_conn_start(rl, 0, err, sizeof(err));
	if (rc != 0)
		link_hs_fail(rl, rc, "%s", err);
}

static void cli_timeout_cb(void *arg)
{
	struct rdma_link *rl = arg;
	int ms = rl->cfg.handshake_timeout_ms > 0 ? rl->cfg.handshake_timeout_ms
						  : RDMA_HS_TIMEOUT_MS;

	link_hs_fail(rl, -ETIMEDOUT, "handshake timed out after %d ms in "
		     "state %s", ms, rdma_ls_names[rdma_link_state(rl)]);
}

static bool cli_settled(const struct rdma_link *rl)
{
	enum rdma_link_state st = rdma_link_state(rl);

	return st == RDMA_LS_UP || st == RDMA_LS_FAILED ||
	       st == RDMA_LS_CLOSING;
}

/* Waits for the handshake; 0 once up, else the link's error. */
static int cli_wait(struct rdma_link *rl)
{
	int ms = rl->cfg.handshake_timeout_ms > 0 ? rl->cfg.handshake_timeout_ms
						  : RDMA_HS_TIMEOUT_MS;
	struct timespec dl;

	tpl_deadline(&dl, ms);
	pthread_mutex_lock(&rl->mu);
	while (!cli_settled(rl))
		if (pthread_cond_timedwait(&rl->cond, &rl->mu, &dl) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&rl->mu);
	if (!cli_settled(rl))
		tpl_ctx_call(rl->ctx, cli_timeout_cb, rl);
	return rdma_link_state(rl) == RDMA_LS_FAILED ? rl->rc : 0;
}

static int rdma_cfg_check(const struct tp_config *cfg, char *err, size_t errlen)
{
	if (cfg->security != TP_SEC_INSECURE)
		return rdma_errf(err, errlen, -EPROTONOSUPPORT,
				 "rdma: security %s refused: RDMA links carry "
				 "no TLS; set security insecure for RDMA or "
				 "use tcp", tp_security_name(cfg->security));
	if (cfg->nr_bulk > TP_MAX_BULK)
		return rdma_errf(err, errlen, -EINVAL,
				 "rdma: nr_bulk %u > max %u", cfg->nr_bulk,
				 TP_MAX_BULK);
	return 0;
}

static int rdma_op_connect(struct tp_ctx *ctx, const struct tp_config *cfg,
			   const char *addr, struct tp_link **out,
			   char *err, size_t errlen)
{
	struct rdma_link *rl;
	int rc = rdma_cfg_check(cfg, err, errlen);

	if (rc != 0)
		return rc;
	rl = link_new(ctx, cfg, RDMA_CLIENT, RDMA_LS_CONNECTING);
	if (rl == NULL)
		return rdma_errf(err, errlen, -ENOMEM, "rdma: out of memory");
	snprintf(rl->peer, sizeof(rl->peer), "%s", addr ? addr : "?");
	rc = rdma_addr_parse(addr, false, &rl->dst, err, errlen);
	if (rc != 0) {
		link_destroy(rl);
		return rc;
	}
	tpl_ctx_call(ctx, cli_start_cb, rl);
	rc = cli_wait(rl);
	if (rc == 0) {
		*out = rl->link;
		return 0;
	}
	rdma_errf(err, errlen, rc, "%s", rl->err);
	if (rl->bye_sent) {  /* the queue pairs stay up while it goes out */
		struct timespec linger = { 0, RDMA_LINGER_MS * 1000000L };

		nanosleep(&linger, NULL);
	}
	tpl_ctx_call(ctx, link_destroy_cb, rl);
	return rc;
}

/* ---- server ------------------------------------------------------------------ */

static void lis_reap_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rdma_lis *lis = arg;
	struct rdma_conn *c;
	struct rdma_link *rl;

	(void)fd;
	(void)what;
	while ((c = lis->doomed) != NULL) {
		lis->doomed = c->next;
		rdma_conn_destroy(c);
	}
	while ((rl = lis->doomed_links) != NULL) {
		lis->doomed_links = rl->next;
		link_destroy(rl);
	}
}

/* Refused conns linger RDMA_LINGER_MS so that their BYE can go out. */
static void lis_reap_arm(struct rdma_lis *lis)
{
	struct timeval tv = { 0, RDMA_LINGER_MS * 1000 };

	if (lis->reap_ev && !evtimer_pending(lis->reap_ev, NULL))
		evtimer_add(lis->reap_ev, &tv);
}

static void lis_doom_conn(struct rdma_lis *lis, struct rdma_conn *c)
{
	lis_orphan_remove(lis, c);
	rdma_conn_quiesce(c);
	c->next = lis->doomed;
	lis->doomed = c;
	lis_reap_arm(lis);
}

static void lis_doom_link(struct rdma_lis *lis, struct rdma_link *rl)
{
	lis_pending_remove(lis, rl);
	rl->next = lis->doomed_links;
	lis->doomed_links = rl;
	lis_reap_arm(lis);
}

static int srv_hs_ms(const struct rdma_lis *lis)
{
	return lis->cfg.handshake_timeout_ms > 0 ? lis->cfg.handshake_timeout_ms
						 : RDMA_HS_TIMEOUT_MS;
}

static void srv_link_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rdma_link *rl = arg;

	(void)fd;
	(void)what;
	link_hs_fail(rl, -ETIMEDOUT, "handshake timed out after %d ms in "
		     "state %s", rl->lis ? srv_hs_ms(rl->lis) : 0,
		     rdma_ls_names[rdma_link_state(rl)]);
}

static void srv_orphan_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rdma_conn *c = arg;

	(void)fd;
	(void)what;
	rdma_conn_fail(c, -ETIMEDOUT, "no JOIN within %d ms", srv_hs_ms(c->lis));
}

static int srv_timer(struct rdma_lis *lis, struct event **ev,
		     void (*cb)(evutil_socket_t, short, void *), void *arg)
{
	int ms = srv_hs_ms(lis);
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	*ev = evtimer_new(tpl_ctx_base(lis->ctx), cb, arg);
	if (*ev == NULL || evtimer_add(*ev, &tv) != 0)
		return -ENOMEM;
	return 0;
}

/* Control channel accepted: a pending link waits for its HELLO. */
static int srv_link_new(struct rdma_lis *lis, struct rdma_conn *c)
{
	struct rdma_link *rl = link_new(lis->ctx, &lis->cfg, RDMA_SERVER,
					RDMA_LS_HELLO);

	if (rl == NULL)
		return -ENOMEM;
	rl->loop = lis->loop;
	rl->lis = lis;
	snprintf(rl->peer, sizeof(rl->peer), "%s", c->peer);
	rl->conn[0] = c;
	c->rl = rl;
	rl->next = lis->pending;
	lis->pending = rl;
	return srv_timer(lis, &rl->timer_ev, srv_link_timer_cb, rl);
}

/* Own CM channel, verbs, the peer's ring, accept with ours. */
static int srv_conn_setup(struct rdma_conn *c, const struct rdma_advert *peer,
			  char *err, size_t errlen)
{
	uint8_t adv[RDMA_ADVERT_SIZE];
	struct rdma_conn_param p;
	int rc = conn_cm_watch(c, err, errlen);

	if (rc == 0 && rdma_migrate_id(c->id, c->ec) != 0)
		rc = rdma_errf(err, errlen, rdma_errno(),
			       "cannot move the CM id: %s", strerror(errno));
	if (rc == 0)
		rc = rdma_conn_setup_verbs(c, err, errlen);
	if (rc == 0)
		rc = rdma_conn_tx_setup(c, peer, err, errlen);
	if (rc == 0)
		rc = rdma_conn_advert(c, adv);
	if (rc != 0)
		return rc;
	rdma_conn_param_init(&p, adv);
	if (rdma_accept(c->id, &p) != 0)
		return rdma_errf(err, errlen, rdma_errno(), "cannot accept: %s",
				 strerror(errno));
	return conn_set_state(c, RDMA_CS_HANDSHAKE);
}

/* Refuses a request whose conn was never accepted, and frees it. */
static void lis_request_refuse(struct rdma_lis *lis, struct rdma_conn *c,
			       const char *err)
{
	struct rdma_link *rl = c->rl;

	rdma_reject(c->id, NULL, 0);
	tpl_listener_refuse(lis->l, c->peer, "rdma chan %u: %s", c->chan, err);
	if (rl) {
		lis_pending_remove(lis, rl);
		link_destroy(rl);            /* and c, its conn[0] */
	} else {
		rdma_conn_destroy(c);
	}
}

static void lis_conn_request(struct rdma_lis *lis, const struct rdma_cm_copy *e)
{
	struct rdma_advert adv;
	struct rdma_conn *c;
	char peer[RDMA_ADDR_MAX], err[TP_ERR_MAX] = "out of memory";
	int rc;

	rdma_sockaddr_str(rdma_get_peer_addr(e->id), peer, sizeof(peer));
	rc = rdma_advert_decode(e->pdata, e->pdata_len, &adv, err, sizeof(err));
	c = rc == 0 ? rdma_conn_new(lis->ctx, adv.chan, true, peer) : NULL;
	if (c == NULL) {
		rdma_reject(e->id, NULL, 0);
		rdma_destroy_id(e->id);
		tpl_listener_refuse(lis->l, peer, "rdma: %s", err);
		return;
	}
	c->lis = lis;
	c->id = e->id;
	c->id->context = c;
	if (adv.chan == 0)
		rc = srv_link_new(lis, c);
	else
		rc = srv_timer(lis, &c->timer_ev, srv_orphan_timer_cb, c);
	if (rc == 0)
		rc = srv_conn_setup(c, &adv, err, sizeof(err));
	if (rc != 0) {
		lis_request_refuse(lis, c, err);
		return;
	}
	if (adv.chan > 0) {
		c->next = lis->orphans;
		lis->orphans = c;
	}
}

static void lis_cm_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rdma_lis *lis = arg;
	struct rdma_cm_event *ev;
	struct rdma_cm_copy e;

	(void)fd;
	(void)what;
	while (rdma_get_cm_event(lis->ec, &ev) == 0) {
		cm_copy(ev, &e);
		rdma_ack_cm_event(ev);
		if (e.type == RDMA_CM_EVENT_CONNECT_REQUEST)
			lis_conn_request(lis, &e);
		else
			log_warn("rdma: listener %s: %s (status %d)",
				 lis->addr, rdma_event_str(e.type), e.status);
	}
}

static void lis_start_cb(void *arg)
{
	struct rdma_lis *lis = arg;
	struct event_base *base = tpl_ctx_base(lis->ctx);

	lis->loop = pthread_self();
	lis->reap_ev = evtimer_new(base, lis_reap_cb, lis);
	lis->cm_ev = event_new(base, lis->ec->fd, EV_READ | EV_PERSIST,
			       lis_cm_cb, lis);
	if (lis->cm_ev == NULL || lis->reap_ev == NULL ||
	    event_add(lis->cm_ev, NULL) != 0)
		log_error("rdma: listener %s: cannot watch its CM channel; "
			  "it will accept nothing", lis->addr);
}

static void lis_destroy(struct rdma_lis *lis)
{
	struct rdma_link *rl;
	struct rdma_conn *c;

	if (lis->cm_ev)
		event_free(lis->cm_ev);
	lis_reap_cb(-1, 0, lis);
	while ((rl = lis->pending) != NULL) {
		lis->pending = rl->next;
		link_destroy(rl);
	}
	while ((c = lis->orphans) != NULL) {
		lis->orphans = c->next;
		rdma_conn_destroy(c);
	}
	if (lis->reap_ev)
		event_free(lis->reap_ev);
	if (lis->id)
		rdma_destroy_id(lis->id);
	if (lis->ec)
		rdma_destroy_event_channel(lis->ec);
	free(lis);
}

static void lis_destroy_cb(void *arg)
{
	lis_destroy(arg);
}

static int lis_bind(struct rdma_lis *lis, const struct sockaddr_storage *ss,
		    char *err, size_t errlen)
{
	lis->ec = rdma_create_event_channel();
	if (lis->ec == NULL)
		return rdma_errf(err, errlen, rdma_errno(),
				 "rdma: cannot open the RDMA connection manager: "
				 "%s (is there an RDMA device?)",
				 strerror(errno));
	if (rdma_nonblock(lis->ec->fd) != 0 ||
	    rdma_create_id(lis->ec, &lis->id, lis, RDMA_PS_TCP) != 0)
		return rdma_errf(err, errlen, rdma_errno(),
				 "rdma: cannot create a CM id: %s",
				 strerror(errno));
	if (rdma_bind_addr(lis->id, (struct sockaddr *)ss) != 0)
		return rdma_errf(err, errlen, rdma_errno(),
				 "rdma: cannot bind %s: %s", lis->addr,
				 strerror(errno));
	if (rdma_listen(lis->id, RDMA_BACKLOG) != 0)
		return rdma_errf(err, errlen, rdma_errno(),
				 "rdma: cannot listen on %s: %s", lis->addr,
				 strerror(errno));
	return 0;
}

static int rdma_op_listen(struct tp_ctx *ctx, const struct tp_config *cfg,
			  const char *addr, struct tp_listener **out,
			  char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	struct rdma_lis *lis;
	uint16_t port;
	int rc = rdma_cfg_check(cfg, err, errlen);

	if (rc == 0)
		rc = rdma_addr_parse(addr, true, &ss, err, errlen);
	if (rc != 0)
		return rc;
	lis = calloc(1, sizeof(*lis));
	if (lis == NULL)
		return rdma_errf(err, errlen, -ENOMEM, "rdma: out of memory");
	lis->ctx = ctx;
	lis->cfg = *cfg;
	lis->loop = pthread_self();
	snprintf(lis->addr, sizeof(lis->addr), "%s", addr);
	rc = lis_bind(lis, &ss, err, errlen);
	port = rc == 0 ? ntohs(rdma_get_src_port(lis->id)) : 0;
	if (rc == 0)
		lis->l = tpl_listener_new(ctx, cfg, &tp_rdma_ops, lis, port);
	if (rc != 0 || lis->l == NULL) {
		lis_destroy(lis);  /* no event registered yet */
		return rc ? rc : rdma_errf(err, errlen, -ENOMEM,
					   "rdma: out of memory");
	}
	tpl_ctx_call(ctx, lis_start_cb, lis);
	log_warn("rdma: listening on %s (port %u): links accepted here are "
		 "NOT encrypted and NOT authenticated (security insecure)",
		 addr, port);
	*out = lis->l;
	return 0;
}

/* ---- ops on an established link --------------------------------------------- */

static int rdma_op_send(struct tp_link *link, unsigned chan,
			const uint8_t hdr[WIRE_RECORD_HEADER_SIZE],
			const void *body, size_t len, size_t pad)
{
	struct rdma_link *rl = tpl_backend(link);

	if (rl == NULL || chan > rl->nr_bulk || rl->conn[chan] == NULL)
		return -EINVAL;
	return rdma_conn_send(rl->conn[chan], hdr, body, len, pad);
}

static size_t rdma_op_send_queued(struct tp_link *link, unsigned chan)
{
	struct rdma_link *rl = tpl_backend(link);
	struct rdma_conn *c;
	size_t q;

	if (rl == NULL || chan > rl->nr_bulk || rl->conn[chan] == NULL)
		return 0;
	c = rl->conn[chan];
	pthread_mutex_lock(&c->tx_lock);
	q = c->queued;
	pthread_mutex_unlock(&c->tx_lock);
	return q;
}

/*
 * Any thread (tp_recv calls it on the consumer's), and re-entrantly from
 * tpl_input: the work is deferred to the loop through an event.
 */
static void rdma_op_resume_read(struct tp_link *link, unsigned chan)
{
	struct rdma_link *rl = tpl_backend(link);

	if (rl && chan <= rl->nr_bulk && rl->conn[chan] &&
	    rl->conn[chan]->resume_ev)
		event_active(rl->conn[chan]->resume_ev, EV_TIMEOUT, 1);
}

/* Any thread: no more sends; each channel disconnects once drained. */
static void conn_close_tx(struct rdma_conn *c)
{
	bool disc;

	pthread_mutex_lock(&c->tx_lock);
	c->tx_closing = true;
	disc = c->txq == NULL && c->sq_used == 0 && !c->disconnected;
	if (disc)
		c->disconnected = true;
	pthread_mutex_unlock(&c->tx_lock);
	if (disc)
		rdma_disconnect(c->id);
}

static void rdma_op_close(struct tp_link *link)
{
	struct rdma_link *rl = tpl_backend(link);

	if (rl == NULL)
		return;
	link_set_state(rl, RDMA_LS_CLOSING);
	for (unsigned i = 0; i <= rl->nr_bulk; i++)
		if (rl->conn[i])
			conn_close_tx(rl->conn[i]);
}

static bool link_sends_done(struct rdma_link *rl)
{
	bool done = true;

	for (unsigned i = 0; i <= rl->nr_bulk && done; i++) {
		struct rdma_conn *c = rl->conn[i];

		if (c == NULL)
			continue;
		pthread_mutex_lock(&c->tx_lock);
		done = c->disconnected || (c->txq == NULL && c->sq_used == 0);
		pthread_mutex_unlock(&c->tx_lock);
	}
	return done;
}

/*
 * Gives what was posted (the core's BYEs) up to RDMA_LINGER_MS to
 * complete before the queue pairs go, then tears down on the loop.
 */
static void rdma_op_free(struct tp_link *link)
{
	struct rdma_link *rl = tpl_backend(link);
	struct timespec tick = { 0, 1000000 };

	if (rl == NULL)
		return;
	if (!pthread_equal(pthread_self(), rl->loop))
		for (int ms = 0; ms < RDMA_LINGER_MS && !link_sends_done(rl);
		     ms++)
			nanosleep(&tick, NULL);
	rdma_on_loop(rl->ctx, rl->loop, link_destroy_cb, rl);
}

static void rdma_op_listener_free(struct tp_listener *l)
{
	struct rdma_lis *lis = tpl_listener_backend(l);

	if (lis)
		rdma_on_loop(lis->ctx, lis->loop, lis_destroy_cb, lis);
}

const struct tp_backend_ops tp_rdma_ops = {
	.name = "rdma",
	.connect = rdma_op_connect,
	.listen = rdma_op_listen,
	.send = rdma_op_send,
	.send_queued = rdma_op_send_queued,
	.resume_read = rdma_op_resume_read,
	.close = rdma_op_close,
	.free = rdma_op_free,
	.listener_free = rdma_op_listener_free,
};
