/*
 * tcp.c - the TCP back end: one TCP connection per link channel, on
 * libevent bufferevents, through TLS 1.3 (bufferevent_openssl) unless the
 * link is configured insecure.
 *
 * Handshake (docs/transport.md, section 3): on each connection the
 * connector writes a LINK stream header; on the control connection it
 * sends HELLO and the listener answers WELCOME with a fresh session id;
 * each bulk connection then sends JOIN(session, channel) and gets JOINED.
 * When every channel has joined, the link is up on both sides.  Handshake
 * records carry sequence 0; HELLO and WELCOME are checksummed with seed
 * 0, JOIN and JOINED with the session's seed.  Before a connection's
 * handshake record is accepted nothing else on it is parsed; after it,
 * bytes wait in the buffer until the whole link is up.
 *
 * Objects: a struct tcp_conn per connection, a struct tcp_link per link
 * (the back-end part of a struct tp_link), a struct tcp_listener per
 * listener.  Unidentified server connections belong to the listener, as
 * do server links still waiting for joins; everything else belongs to its
 * link.  Bufferevents are created and freed only on the loop thread;
 * conn->bev is guarded by tcp_link.bev_lock for the senders' threads.
 */
#include "link_int.h"
#include "tls.h"

#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define BULK_IO_CHUNK (1u << 20)
#define LIS_UNIDENTIFIED_MAX 256 /* connections still in their handshake */
#define ADDR_MAX 80

struct tcp_link;
struct tcp_listener;

struct tcp_conn {
	struct tcp_link *tl;          /* NULL while unidentified */
	struct tcp_listener *lis;     /* server side */
	struct bufferevent *bev;
	unsigned chan;
	bool got_header;              /* LINK stream header read */
	bool hs_done;                 /* its handshake record is consumed */
	bool up;                      /* records go to the link core */
	bool paused;
	bool tls_ok;                  /* TLS handshake completed */
	struct event *timer;          /* unidentified: handshake deadline */
	char peer[ADDR_MAX];
	struct tcp_conn *next;        /* listener's unidentified list */
};

struct tcp_link {
	struct tp_ctx *ctx;
	struct tp_link *link;
	struct tcp_listener *lis;     /* server, until up */
	bool server;
	SSL_CTX *ssl_ctx;             /* client side, owned */
	struct tp_config cfg;         /* what ssl_ctx points at */
	pthread_rwlock_t bev_lock;
	struct tcp_conn *conn[1 + TP_MAX_BULK];
	unsigned nr_bulk, joined;
	struct sockaddr_storage sa;
	socklen_t salen;
	char addr[ADDR_MAX];
	struct link_session sess;
	struct event *timer;          /* server: joins deadline */
	pthread_mutex_t lock;         /* client: tp_connect's wait */
	pthread_cond_t cond;
	bool done;
	int result;
	char err[TP_ERR_MAX];
	struct tcp_link *next;        /* listener's pending list */
};

struct tcp_listener {
	struct tp_listener *pub;
	struct tp_ctx *ctx;
	struct evconnlistener *evl;
	SSL_CTX *ssl_ctx;
	struct tp_config cfg;
	struct tcp_conn *conns;
	struct tcp_link *pending;
};

static void conn_read_cb(struct bufferevent *bev, void *arg);
static void conn_write_cb(struct bufferevent *bev, void *arg);
static void conn_event_cb(struct bufferevent *bev, short events, void *arg);

/* ---- addresses ------------------------------------------------------------ */

/* "host:port" or "[v6]:port" into sa.  -EINVAL names the bad part. */
static int addr_parse(const char *addr, struct sockaddr_storage *sa,
		      socklen_t *salen, char *err, size_t errlen)
{
	char host[ADDR_MAX];
	const char *colon = strrchr(addr, ':'), *h = addr;
	size_t hl;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICSERV }, *res;
	int rc;

	if (!colon || colon == addr || !colon[1]) {
		snprintf(err, errlen, "address \"%s\": expected host:port", addr);
		return -EINVAL;
	}
	hl = (size_t)(colon - addr);
	if (addr[0] == '[' && colon[-1] == ']') {
		h++;
		hl -= 2;
	}
	if (hl == 0 || hl >= sizeof(host)) {
		snprintf(err, errlen, "address \"%s\": bad host", addr);
		return -EINVAL;
	}
	memcpy(host, h, hl);
	host[hl] = '\0';
	rc = getaddrinfo(host, colon + 1, &hints, &res);
	if (rc) {
		snprintf(err, errlen, "address \"%s\": %s", addr,
			 gai_strerror(rc));
		return -EINVAL;
	}
	memcpy(sa, res->ai_addr, res->ai_addrlen);
	*salen = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

static void addr_text(const struct sockaddr *sa, char *out, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)sa;

		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
		port = ntohs(s4->sin_port);
		snprintf(out, len, "%s:%u", ip, port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)sa;

		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
		port = ntohs(s6->sin6_port);
		snprintf(out, len, "[%s]:%u", ip, port);
	} else {
		snprintf(out, len, "(unknown address)");
	}
}

/* ---- connections ------------------------------------------------------------ */

static const struct tp_config *conn_cfg(const struct tcp_conn *c)
{
	return c->tl ? &c->tl->cfg : &c->lis->cfg;
}

static void conn_tune(struct tcp_conn *c, bool bulk)
{
	int fd = bufferevent_getfd(c->bev), one = 1;

	if (fd >= 0)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (bulk) {
		bufferevent_set_max_single_read(c->bev, BULK_IO_CHUNK);
		bufferevent_set_max_single_write(c->bev, BULK_IO_CHUNK);
	}
}

/* A bufferevent for fd (-1: to be connected), TLS unless insecure. */
static struct bufferevent *conn_bev_new(struct event_base *base, int fd,
					SSL_CTX *ssl_ctx,
					const struct tp_config *cfg,
					bool server)
{
	int opts = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_THREADSAFE |
		   BEV_OPT_DEFER_CALLBACKS | BEV_OPT_UNLOCK_CALLBACKS;
	SSL *ssl;

	if (cfg->security == TP_SEC_INSECURE)
		return bufferevent_socket_new(base, fd, opts);
	ssl = tls_new(ssl_ctx, cfg);
	if (!ssl)
		return NULL;
	return bufferevent_openssl_socket_new(base, fd, ssl, server ?
			BUFFEREVENT_SSL_ACCEPTING : BUFFEREVENT_SSL_CONNECTING,
			opts);
}

static struct tcp_conn *conn_new(struct bufferevent *bev, unsigned chan,
				 const char *peer)
{
	struct tcp_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->bev = bev;
	c->chan = chan;
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	bufferevent_setcb(bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
	return c;
}

/* Frees the bufferevent (closing the socket) and the timer; loop thread. */
static void conn_close(struct tcp_conn *c)
{
	struct bufferevent *bev = c->bev;

	if (c->timer) {
		event_free(c->timer);
		c->timer = NULL;
	}
	if (!bev)
		return;
	if (c->tl)
		pthread_rwlock_wrlock(&c->tl->bev_lock);
	c->bev = NULL;
	if (c->tl)
		pthread_rwlock_unlock(&c->tl->bev_lock);
	bufferevent_disable(bev, EV_READ | EV_WRITE);
	bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
	bufferevent_free(bev);
}

/*
 * The connection's handshake record is taken.  It is not read again until
 * the link is up (link_go_up), so a peer cannot make us buffer before.
 */
static void conn_hs_done(struct tcp_conn *c)
{
	c->hs_done = true;
	if (!c->up && c->bev)
		bufferevent_disable(c->bev, EV_READ);
}

static int conn_write_record(struct tcp_conn *c, uint32_t type,
			     uint64_t seed, const struct wire_buf *body)
{
	struct wire_record_header h = { .type = type,
					.length = (uint32_t)body->len };
	uint8_t hdr[WIRE_RECORD_HEADER_SIZE], zeros[WIRE_ALIGN] = { 0 };
	const void *parts[1] = { body->data };
	size_t pad = wire_padded_length(h.length) - body->len;

	if (body->rc)
		return body->rc;
	if (wire_record_seal_iov(hdr, &h, parts, &body->len, 1, seed))
		return -EINVAL;
	if (bufferevent_write(c->bev, hdr, sizeof(hdr)) ||
	    bufferevent_write(c->bev, body->data, body->len) ||
	    bufferevent_write(c->bev, zeros, pad))
		return -ENOMEM;
	return 0;
}

static int conn_write_stream_header(struct tcp_conn *c)
{
	struct wire_buf b;
	int rc;

	wire_buf_init(&b);
	rc = wire_stream_header_put(&b, WIRE_STREAM_LINK, 0);
	if (!rc && bufferevent_write(c->bev, b.data, b.len))
		rc = -ENOMEM;
	wire_buf_fini(&b);
	return rc;
}

/* ---- links ------------------------------------------------------------------- */

static struct tcp_link *tcp_link_new(struct tp_ctx *ctx, bool server)
{
	struct tcp_link *tl = calloc(1, sizeof(*tl));

	if (!tl)
		return NULL;
	tl->ctx = ctx;
	tl->server = server;
	pthread_rwlock_init(&tl->bev_lock, NULL);
	pthread_mutex_init(&tl->lock, NULL);
	tpl_cond_init(&tl->cond);
	return tl;
}

static void conn_attach(struct tcp_link *tl, struct tcp_conn *c,
			unsigned chan)
{
	c->tl = tl;
	c->chan = chan;
	tl->conn[chan] = c;
}

static void client_done(struct tcp_link *tl, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Every channel has joined: the link is up; drain what waited. */
static void link_go_up(struct tcp_link *tl)
{
	unsigned i;

	if (tl->timer) {
		event_free(tl->timer);
		tl->timer = NULL;
	}
	tl->lis = NULL;
	for (i = 0; i <= tl->nr_bulk; i++) {
		tl->conn[i]->up = true;
		if (tl->conn[i]->bev) {
			bufferevent_setwatermark(tl->conn[i]->bev, EV_WRITE,
						 tl->cfg.send_limit / 2, 0);
			bufferevent_enable(tl->conn[i]->bev, EV_READ);
		}
	}
	tpl_up(tl->link, &tl->sess);
	if (!tl->server)
		client_done(tl, 0, NULL);
	for (i = 0; i <= tl->nr_bulk; i++)
		if (tl->conn[i]->bev)
			conn_read_cb(tl->conn[i]->bev, tl->conn[i]);
}

/* Client: the handshake ended, well or not; wakes tp_connect. */
static void client_done(struct tcp_link *tl, int rc, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&tl->lock);
	if (!tl->done) {
		tl->done = true;
		tl->result = rc;
		if (fmt) {
			va_start(ap, fmt);
			vsnprintf(tl->err, sizeof(tl->err), fmt, ap);
			va_end(ap);
		}
		pthread_cond_broadcast(&tl->cond);
	}
	pthread_mutex_unlock(&tl->lock);
}

/* ---- server side: refusals and pending links -------------------------------- */

static void lis_unlink_conn(struct tcp_listener *lis, struct tcp_conn *c)
{
	struct tcp_conn **pp;

	for (pp = &lis->conns; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	c->next = NULL;
}

static void lis_unlink_pending(struct tcp_listener *lis, struct tcp_link *tl)
{
	struct tcp_link **pp;

	for (pp = &lis->pending; *pp; pp = &(*pp)->next)
		if (*pp == tl) {
			*pp = tl->next;
			break;
		}
	tl->next = NULL;
}

/* An unidentified connection is refused: one log line, then it is gone. */
static void conn_refuse(struct tcp_conn *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void conn_refuse(struct tcp_conn *c, const char *fmt, ...)
{
	struct tcp_listener *lis = c->lis;
	char msg[TP_ERR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	tpl_listener_refuse(lis->pub, c->peer, "%s", msg);
	lis_unlink_conn(lis, c);
	conn_close(c);
	free(c);
}

/* An unidentified connection becomes channel chan of tl. */
static void conn_adopt(struct tcp_link *tl, struct tcp_conn *c, unsigned chan)
{
	lis_unlink_conn(c->lis, c);
	if (c->timer) {
		event_free(c->timer);
		c->timer = NULL;
	}
	conn_attach(tl, c, chan);
	conn_hs_done(c);
}

/* A server link that never came up: refused and freed. */
static void pending_refuse(struct tcp_link *tl, const char *why)
{
	struct tcp_listener *lis = tl->lis;

	tpl_listener_refuse(lis->pub, tl->conn[0] ? tl->conn[0]->peer : "?",
			    "%s", why);
	lis_unlink_pending(lis, tl);
	tl->lis = NULL;
	tp_link_free(tl->link);
}

static void pending_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tcp_link *tl = arg;
	char why[96];

	(void)fd;
	(void)what;
	snprintf(why, sizeof(why), "%u of %u bulk channels joined within %d "
		 "ms", tl->joined, tl->nr_bulk, tl->cfg.handshake_timeout_ms);
	pending_refuse(tl, why);
}

static void conn_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tcp_conn *c = arg;

	(void)fd;
	(void)what;
	conn_refuse(c, "no handshake within %d ms",
		    c->lis->cfg.handshake_timeout_ms);
}

static struct event *timer_start(struct event_base *base, int ms,
				 event_callback_fn cb, void *arg)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	struct event *ev = evtimer_new(base, cb, arg);

	if (ev)
		evtimer_add(ev, &tv);
	return ev;
}

/* ---- server side: HELLO and JOIN --------------------------------------------- */

static int server_welcome(struct tcp_link *tl, const struct link_hello *h,
			  char *err, size_t errlen)
{
	struct link_welcome w = { .nr_bulk = h->nr_bulk };
	struct wire_buf b;
	int rc;

	rc = link_negotiate(h, tl->cfg.features, &w.proto, &w.features, err,
			    errlen);
	if (rc)
		return rc;
	if (RAND_bytes(w.session, sizeof(w.session)) != 1) {
		snprintf(err, errlen, "no random bytes for a session id");
		return -EIO;
	}
	w.min_epoch = h->epoch;
	snprintf(w.name, sizeof(w.name), "%s", tl->cfg.local_name);
	tl->sess.proto = w.proto;
	tl->sess.nr_bulk = h->nr_bulk;
	tl->sess.features = w.features;
	memcpy(tl->sess.id, w.session, LINK_SESSION_ID);
	tl->sess.seed = link_session_seed(w.session);
	tl->sess.min_epoch = w.min_epoch;
	snprintf(tl->sess.peer_name, sizeof(tl->sess.peer_name), "%s",
		 h->name);
	tl->nr_bulk = h->nr_bulk;
	wire_buf_init(&b);
	rc = link_welcome_put(&b, &w);
	if (!rc)
		rc = conn_write_stream_header(tl->conn[0]);
	if (!rc)
		rc = conn_write_record(tl->conn[0], WIRE_REC_LINK_WELCOME, 0, &b);
	wire_buf_fini(&b);
	return rc;
}

static int hello_check(const struct tcp_listener *lis,
		       const struct link_hello *h, char *err, size_t errlen)
{
	if (lis->cfg.peer_name[0] && strcmp(h->name, lis->cfg.peer_name)) {
		snprintf(err, errlen, "HELLO from \"%s\", expected \"%s\"",
			 h->name, lis->cfg.peer_name);
		return -EACCES;
	}
	if (h->epoch < lis->cfg.min_epoch) {
		snprintf(err, errlen, "stale HELLO: epoch %" PRIu64 " < "
			 "minimum %" PRIu64 " (replayed or old session)",
			 h->epoch, lis->cfg.min_epoch);
		return -EBADMSG;
	}
	return 0;
}

static unsigned lis_count_pending(const struct tcp_listener *lis);

/* HELLO on an unidentified connection: a new link.  1: conn consumed. */
static int server_hello(struct tcp_conn *c, const uint8_t *body, uint32_t len)
{
	struct tcp_listener *lis = c->lis;
	struct link_hello h;
	struct tcp_link *tl;
	char err[TP_ERR_MAX];

	if (link_hello_decode(body, len, &h, err, sizeof(err)) ||
	    hello_check(lis, &h, err, sizeof(err))) {
		conn_refuse(c, "%s", err);
		return 1;
	}
	if (tpl_listener_backlog(lis->pub) + lis_count_pending(lis) >=
	    TPL_BACKLOG_MAX) {
		conn_refuse(c, "%d links already wait for tp_accept",
			    TPL_BACKLOG_MAX);
		return 1;
	}
	tl = tcp_link_new(lis->ctx, true);
	if (tl)
		tl->cfg = lis->cfg;
	if (!tl || !(tl->link = tpl_new(lis->ctx, &lis->cfg, &tp_tcp_ops, tl))) {
		free(tl);
		conn_refuse(c, "out of memory");
		return 1;
	}
	conn_adopt(tl, c, 0);
	tl->lis = lis;
	tl->next = lis->pending;
	lis->pending = tl;
	if (server_welcome(tl, &h, err, sizeof(err))) {
		pending_refuse(tl, err);
		return 1;
	}
	if (tl->nr_bulk == 0) {
		lis_unlink_pending(lis, tl);
		link_go_up(tl);
		tpl_listener_push(lis->pub, tl->link);
		return 1;
	}
	tl->timer = timer_start(tpl_ctx_base(lis->ctx),
				lis->cfg.handshake_timeout_ms,
				pending_timeout_cb, tl);
	return 1;
}

static unsigned lis_count_pending(const struct tcp_listener *lis)
{
	const struct tcp_link *tl;
	unsigned n = 0;

	for (tl = lis->pending; tl; tl = tl->next)
		n++;
	return n;
}

static struct tcp_link *pending_find(struct tcp_listener *lis,
				     const uint8_t id[LINK_SESSION_ID])
{
	struct tcp_link *tl;

	for (tl = lis->pending; tl; tl = tl->next)
		if (memcmp(tl->sess.id, id, LINK_SESSION_ID) == 0)
			return tl;
	return NULL;
}

static int join_check(struct tcp_link *tl, const struct link_join *j,
		      const uint8_t *hdr, const uint8_t *body,
		      const struct wire_record_header *rh,
		      char *err, size_t errlen)
{
	if (wire_record_verify_seeded(hdr, body, rh, tl->sess.seed, err,
				      errlen))
		return -EBADMSG;
	if (j->chan > tl->nr_bulk || tl->conn[j->chan]) {
		snprintf(err, errlen, "JOIN for channel %" PRIu32 " (link has "
			 "%u bulk channels%s)", j->chan, tl->nr_bulk,
			 j->chan <= tl->nr_bulk ? ", that one joined" : "");
		return -EBADMSG;
	}
	return 0;
}

/* JOIN on an unidentified connection.  Always consumes the conn. */
static int server_join(struct tcp_conn *c, const uint8_t *hdr,
		       const struct wire_record_header *rh, const uint8_t *body)
{
	struct tcp_listener *lis = c->lis;
	struct link_join j;
	struct tcp_link *tl;
	struct wire_buf b;
	char err[TP_ERR_MAX];

	if (link_join_decode(body, rh->length, &j, err, sizeof(err))) {
		conn_refuse(c, "%s", err);
		return 1;
	}
	tl = pending_find(lis, j.session);
	if (!tl) {
		conn_refuse(c, "JOIN for an unknown session");
		return 1;
	}
	if (join_check(tl, &j, hdr, body, rh, err, sizeof(err))) {
		conn_refuse(c, "%s", err);
		return 1;
	}
	conn_adopt(tl, c, j.chan);
	conn_tune(c, true);
	wire_buf_init(&b);
	link_joined_put(&b, j.chan);
	if (conn_write_stream_header(c) == 0)
		conn_write_record(c, WIRE_REC_LINK_JOINED, tl->sess.seed, &b);
	wire_buf_fini(&b);
	if (++tl->joined == tl->nr_bulk) {
		lis_unlink_pending(lis, tl);
		link_go_up(tl);
		tpl_listener_push(lis->pub, tl->link);
	}
	return 1;
}

/* The first record of an unidentified server connection. */
static int server_first_record(struct tcp_conn *c, const uint8_t *hdr,
			       const struct wire_record_header *rh,
			       const uint8_t *body)
{
	char err[TP_ERR_MAX];

	if (rh->type == WIRE_REC_LINK_JOIN)
		return server_join(c, hdr, rh, body);
	if (rh->type != WIRE_REC_LINK_HELLO) {
		conn_refuse(c, "first record is %s (expected LINK_HELLO or "
			    "LINK_JOIN)", wire_record_type_name(rh->type));
		return 1;
	}
	if (wire_record_verify(hdr, body, rh, err, sizeof(err))) {
		conn_refuse(c, "%s", err);
		return 1;
	}
	return server_hello(c, body, rh->length);
}

/* ---- client side: WELCOME and JOINED ---------------------------------------- */

static int client_conn_start(struct tcp_link *tl, unsigned chan);

static int welcome_check(const struct tcp_link *tl,
			 const struct link_welcome *w, char *err,
			 size_t errlen)
{
	if (tl->cfg.peer_name[0] && strcmp(w->name, tl->cfg.peer_name)) {
		snprintf(err, errlen, "WELCOME from \"%s\", expected \"%s\"",
			 w->name, tl->cfg.peer_name);
		return -EACCES;
	}
	if (w->proto < TP_PROTO_MIN || w->proto > TP_PROTO_MAX) {
		snprintf(err, errlen, "WELCOME chose protocol %u, outside "
			 "%u..%u", w->proto, TP_PROTO_MIN, TP_PROTO_MAX);
		return -EPROTONOSUPPORT;
	}
	if (w->features & ~tl->cfg.features) {
		snprintf(err, errlen, "WELCOME chose features 0x%" PRIx64
			 " beyond the offer 0x%" PRIx64, w->features,
			 tl->cfg.features);
		return -EPROTO;
	}
	if (w->nr_bulk != tl->cfg.nr_bulk || w->min_epoch != tl->cfg.min_epoch) {
		snprintf(err, errlen, "WELCOME with %" PRIu32 " bulk channels"
			 " and epoch %" PRIu64 " (asked %u, %" PRIu64 ")",
			 w->nr_bulk, w->min_epoch, tl->cfg.nr_bulk,
			 tl->cfg.min_epoch);
		return -EPROTO;
	}
	return 0;
}

static void client_welcome(struct tcp_conn *c, const uint8_t *hdr,
			   const struct wire_record_header *rh,
			   const uint8_t *body)
{
	struct tcp_link *tl = c->tl;
	struct link_welcome w;
	char err[TP_ERR_MAX];
	unsigned i;
	int rc;

	rc = wire_record_verify(hdr, body, rh, err, sizeof(err));
	if (!rc)
		rc = link_welcome_decode(body, rh->length, &w, err, sizeof(err));
	if (!rc)
		rc = welcome_check(tl, &w, err, sizeof(err));
	if (rc) {
		client_done(tl, rc, "%s: %s", tl->addr, err);
		return;
	}
	conn_hs_done(c);
	tl->sess = (struct link_session){
		.proto = w.proto, .nr_bulk = w.nr_bulk, .features = w.features,
		.seed = link_session_seed(w.session), .min_epoch = w.min_epoch,
	};
	memcpy(tl->sess.id, w.session, LINK_SESSION_ID);
	snprintf(tl->sess.peer_name, sizeof(tl->sess.peer_name), "%s", w.name);
	tl->nr_bulk = w.nr_bulk;
	for (i = 1; i <= tl->nr_bulk && !rc; i++)
		rc = client_conn_start(tl, i);
	if (rc)
		client_done(tl, rc, "%s: cannot open bulk channel %u", tl->addr,
			    i - 1);
	else if (tl->nr_bulk == 0)
		link_go_up(tl);
}

static void client_joined(struct tcp_conn *c, const uint8_t *hdr,
			  const struct wire_record_header *rh,
			  const uint8_t *body)
{
	struct tcp_link *tl = c->tl;
	char err[TP_ERR_MAX];
	uint32_t chan;
	int rc;

	rc = wire_record_verify_seeded(hdr, body, rh, tl->sess.seed, err,
				       sizeof(err));
	if (!rc)
		rc = link_joined_decode(body, rh->length, &chan, err,
					sizeof(err));
	if (!rc && chan != c->chan) {
		snprintf(err, sizeof(err), "JOINED for channel %" PRIu32
			 " on channel %u", chan, c->chan);
		rc = -EPROTO;
	}
	if (rc) {
		client_done(tl, rc, "%s: %s", tl->addr, err);
		return;
	}
	conn_hs_done(c);
	if (++tl->joined == tl->nr_bulk)
		link_go_up(tl);
}

static int client_send_first(struct tcp_conn *c)
{
	struct tcp_link *tl = c->tl;
	struct wire_buf b;
	int rc;

	wire_buf_init(&b);
	rc = conn_write_stream_header(c);
	if (c->chan == 0) {
		struct link_hello h = {
			.proto_min = TP_PROTO_MIN, .proto_max = TP_PROTO_MAX,
			.nr_bulk = tl->cfg.nr_bulk, .features = tl->cfg.features,
			.epoch = tl->cfg.min_epoch,
		};

		snprintf(h.name, sizeof(h.name), "%s", tl->cfg.local_name);
		if (!rc)
			rc = link_hello_put(&b, &h);
		if (!rc)
			rc = conn_write_record(c, WIRE_REC_LINK_HELLO, 0, &b);
	} else {
		struct link_join j = { .chan = c->chan };

		memcpy(j.session, tl->sess.id, LINK_SESSION_ID);
		if (!rc)
			rc = link_join_put(&b, &j);
		if (!rc)
			rc = conn_write_record(c, WIRE_REC_LINK_JOIN,
					       tl->sess.seed, &b);
	}
	wire_buf_fini(&b);
	return rc;
}

static int client_conn_start(struct tcp_link *tl, unsigned chan)
{
	struct event_base *base = tpl_ctx_base(tl->ctx);
	struct bufferevent *bev;
	struct tcp_conn *c;

	bev = conn_bev_new(base, -1, tl->ssl_ctx, &tl->cfg, false);
	if (!bev)
		return -ENOMEM;
	c = conn_new(bev, chan, tl->addr);
	if (!c) {
		bufferevent_free(bev);
		return -ENOMEM;
	}
	conn_attach(tl, c, chan);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	if (bufferevent_socket_connect(bev, (struct sockaddr *)&tl->sa,
				       (int)tl->salen))
		return -errno ? -errno : -ECONNREFUSED;
	return 0;
}

/* ---- the read path ---------------------------------------------------------- */

/* The LINK stream header; 0 once read, 1 to wait, -1 when refused. */
static int read_stream_header(struct tcp_conn *c, struct evbuffer *in)
{
	uint8_t raw[WIRE_STREAM_HEADER_SIZE];
	struct wire_stream_header sh;
	char err[WIRE_ERR_MAX];
	int rc;

	if (evbuffer_get_length(in) < sizeof(raw))
		return 1;
	evbuffer_copyout(in, raw, sizeof(raw));
	rc = wire_stream_header_decode(raw, &sh, err, sizeof(err));
	if (!rc && sh.stream_type != WIRE_STREAM_LINK) {
		snprintf(err, sizeof(err), "stream type %u is not LINK",
			 sh.stream_type);
		rc = -EPROTO;
	}
	if (!rc) {
		evbuffer_drain(in, sizeof(raw));
		c->got_header = true;
		return 0;
	}
	if (c->tl && !c->tl->server)
		client_done(c->tl, -EBADMSG, "%s: %s", c->peer, err);
	else
		conn_refuse(c, "%s", err);
	return -1;
}

/* Header checks before the link is up: only the handshake records. */
static int hs_header(struct tcp_conn *c, const uint8_t *hdr,
		     struct wire_record_header *rh)
{
	char err[WIRE_ERR_MAX];
	int rc;

	rc = wire_record_header_decode(hdr, WIRE_MAX_BODY, rh, err,
				       sizeof(err));
	if (!rc && (rh->type < WIRE_REC_LINK_HELLO ||
		    rh->type > WIRE_REC_LINK_JOINED || rh->seq != 0)) {
		snprintf(err, sizeof(err), "%s record (sequence %u) during the "
			 "handshake", wire_record_type_name(rh->type), rh->seq);
		rc = -EPROTO;
	}
	if (!rc)
		return 0;
	if (c->tl && !c->tl->server)
		client_done(c->tl, rc, "%s: %s", c->peer, err);
	else if (c->tl)
		pending_refuse(c->tl, err);
	else
		conn_refuse(c, "%s", err);
	return rc;
}

/* One handshake record; 0 to go on reading, 1 when the conn is gone or
 * must wait. */
static int hs_record(struct tcp_conn *c, const uint8_t *hdr,
		     const struct wire_record_header *rh, const uint8_t *body)
{
	if (!c->tl)
		return server_first_record(c, hdr, rh, body);
	if (c->tl->server) {
		pending_refuse(c->tl, "second handshake record");
		return 1;
	}
	if (c->chan == 0 && rh->type == WIRE_REC_LINK_WELCOME)
		client_welcome(c, hdr, rh, body);
	else if (c->chan > 0 && rh->type == WIRE_REC_LINK_JOINED)
		client_joined(c, hdr, rh, body);
	else
		client_done(c->tl, -EPROTO, "%s: unexpected %s", c->peer,
			    wire_record_type_name(rh->type));
	return c->tl->done ? 1 : 0;
}

/* Takes one whole record off in: 0 done, 1 not all there yet. */
static int take_record(struct evbuffer *in, const struct wire_record_header *rh,
		       uint8_t **body)
{
	size_t padded = wire_padded_length(rh->length);

	if (evbuffer_get_length(in) < WIRE_RECORD_HEADER_SIZE + padded)
		return 1;
	*body = malloc(padded ? padded : 1);
	if (!*body)
		return -ENOMEM;
	evbuffer_drain(in, WIRE_RECORD_HEADER_SIZE);
	evbuffer_remove(in, *body, padded);
	return 0;
}

/* Records of an up connection, until the buffer runs dry or we pause. */
static void read_up(struct tcp_conn *c, struct evbuffer *in)
{
	struct tp_link *link = c->tl->link;
	uint8_t hdr[WIRE_RECORD_HEADER_SIZE], *body;
	struct wire_record_header rh;
	int rc;

	while (c->bev && !c->paused &&
	       evbuffer_copyout(in, hdr, sizeof(hdr)) == sizeof(hdr)) {
		if (tpl_header(link, c->chan, hdr, &rh))
			return;
		rc = take_record(in, &rh, &body);
		if (rc == 1)
			return;
		if (rc < 0) {
			tpl_fail(link, rc, "channel %u: out of memory", c->chan);
			return;
		}
		rc = tpl_input(link, c->chan, hdr, &rh, body);
		if (rc < 0)
			return;
		if (rc == 1 && c->bev) {
			c->paused = true;
			bufferevent_disable(c->bev, EV_READ);
		}
	}
}

static void read_handshake(struct tcp_conn *c, struct evbuffer *in)
{
	uint8_t hdr[WIRE_RECORD_HEADER_SIZE], *body;
	struct wire_record_header rh;
	int rc;

	if (evbuffer_copyout(in, hdr, sizeof(hdr)) != sizeof(hdr))
		return;
	if (hs_header(c, hdr, &rh))
		return;
	rc = take_record(in, &rh, &body);
	if (rc)
		return;
	rc = hs_record(c, hdr, &rh, body);
	free(body);
	(void)rc;
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
	struct tcp_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	if (!c->got_header && read_stream_header(c, in))
		return;
	if (c->up) {
		read_up(c, in);
		return;
	}
	if (!c->hs_done)
		read_handshake(c, in); /* may free c */
}

static void conn_write_cb(struct bufferevent *bev, void *arg)
{
	struct tcp_conn *c = arg;

	(void)bev;
	if (c->up)
		tpl_drained(c->tl->link, c->chan);
}

/* ---- events: connected, closed, failed ---------------------------------------- */

static void conn_error_text(struct tcp_conn *c, struct bufferevent *bev,
			    short events, char *out, size_t len)
{
	const struct tp_config *cfg = conn_cfg(c);
	unsigned long e = cfg->security == TP_SEC_INSECURE ? 0 :
			  bufferevent_get_openssl_error(bev);
	int serr = EVUTIL_SOCKET_ERROR();

	if (cfg->security != TP_SEC_INSECURE && !c->tls_ok) {
		tls_explain(bufferevent_openssl_get_ssl(bev), e, out, len);
	} else if (e && ERR_GET_LIB(e) != 0) {
		char buf[160];

		ERR_error_string_n(e, buf, sizeof(buf));
		snprintf(out, len, "TLS error: %s", buf);
	} else if (events & BEV_EVENT_EOF || e) {
		snprintf(out, len, "connection closed by the peer");
	} else {
		snprintf(out, len, "%s", serr ? strerror(serr) :
			 "connection error");
	}
}

static void conn_connected(struct tcp_conn *c)
{
	c->tls_ok = true;
	if (!c->tl || c->tl->server)
		return; /* server: the TLS handshake completed; wait for data */
	conn_tune(c, c->chan > 0);
	if (client_send_first(c))
		client_done(c->tl, -ENOMEM, "%s: cannot send handshake", c->peer);
}

static void conn_event_cb(struct bufferevent *bev, short events, void *arg)
{
	struct tcp_conn *c = arg;
	char why[TP_ERR_MAX];

	if (events & BEV_EVENT_CONNECTED) {
		conn_connected(c);
		return;
	}
	if (!(events & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
		return;
	conn_error_text(c, bev, events, why, sizeof(why));
	if (c->up && tpl_peer_closed(c->tl->link, c->chan)) {
		conn_close(c); /* after the peer's BYE: an orderly end */
		tpl_drained(c->tl->link, c->chan); /* wake waiters on it */
	}
	else if (c->up)
		tpl_fail(c->tl->link, -ECONNRESET, "channel %u: %s", c->chan,
			 why);
	else if (!c->tl)
		conn_refuse(c, "%s", why);
	else if (c->tl->server)
		pending_refuse(c->tl, why);
	else
		client_done(c->tl, (events & BEV_EVENT_EOF) ? -ECONNRESET :
			    -ECONNREFUSED, "%s: channel %u: %s", c->peer,
			    c->chan, why);
}

/* ---- back-end ops ------------------------------------------------------------- */

/*
 * The record is copied into a private evbuffer first, without any lock,
 * then its chains are moved (not copied) onto the connection's output:
 * the bufferevent's lock, which its loop thread holds while it writes to
 * the socket, is taken only for that move.
 */
static int tcp_send(struct tp_link *link, unsigned chan,
		    const uint8_t hdr[WIRE_RECORD_HEADER_SIZE],
		    const void *body, size_t len, size_t pad)
{
	static const uint8_t zeros[WIRE_ALIGN];
	struct tcp_link *tl = tpl_backend(link);
	struct tcp_conn *c = tl->conn[chan];
	struct evbuffer *rec = evbuffer_new();
	int rc = 0;

	if (!rec)
		return -ENOMEM;
	if (evbuffer_expand(rec, WIRE_RECORD_HEADER_SIZE + len + pad) ||
	    evbuffer_add(rec, hdr, WIRE_RECORD_HEADER_SIZE) ||
	    (len && evbuffer_add(rec, body, len)) ||
	    (pad && evbuffer_add(rec, zeros, pad)))
		rc = -ENOMEM;
	pthread_rwlock_rdlock(&tl->bev_lock);
	if (!rc && (!c || !c->bev))
		rc = -ENOTCONN;
	else if (!rc && bufferevent_write_buffer(c->bev, rec))
		rc = -ENOMEM;
	pthread_rwlock_unlock(&tl->bev_lock);
	evbuffer_free(rec);
	return rc;
}

static size_t tcp_send_queued(struct tp_link *link, unsigned chan)
{
	struct tcp_link *tl = tpl_backend(link);
	struct tcp_conn *c = tl->conn[chan];
	size_t n = 0;

	pthread_rwlock_rdlock(&tl->bev_lock);
	if (c && c->bev)
		n = evbuffer_get_length(bufferevent_get_output(c->bev));
	pthread_rwlock_unlock(&tl->bev_lock);
	return n;
}

struct chan_arg {
	struct tcp_link *tl;
	unsigned chan;
};

static void resume_cb(void *arg)
{
	struct chan_arg *a = arg;
	struct tcp_conn *c = a->tl->conn[a->chan];

	if (!c || !c->bev || !c->paused)
		return;
	c->paused = false;
	bufferevent_enable(c->bev, EV_READ);
	conn_read_cb(c->bev, c);
}

static void tcp_resume_read(struct tp_link *link, unsigned chan)
{
	struct chan_arg a = { tpl_backend(link), chan };

	tpl_ctx_call(a.tl->ctx, resume_cb, &a);
}

static void close_cb(void *arg)
{
	struct tcp_link *tl = arg;
	unsigned i;

	if (tl->timer) {
		event_free(tl->timer);
		tl->timer = NULL;
	}
	for (i = 0; i <= TP_MAX_BULK; i++)
		if (tl->conn[i])
			conn_close(tl->conn[i]);
	if (!tl->server)
		client_done(tl, tpl_error(tl->link) ? tpl_error(tl->link) :
			    -ECONNABORTED, "%s: link closed during the "
			    "handshake", tl->addr);
}

static void tcp_close(struct tp_link *link)
{
	struct tcp_link *tl = tpl_backend(link);

	tpl_ctx_call(tl->ctx, close_cb, tl);
}

static void free_cb(void *arg)
{
	struct tcp_link *tl = arg;
	unsigned i;

	close_cb(tl);
	if (tl->lis)
		lis_unlink_pending(tl->lis, tl);
	for (i = 0; i <= TP_MAX_BULK; i++)
		free(tl->conn[i]);
}

static void tcp_free(struct tp_link *link)
{
	struct tcp_link *tl = tpl_backend(link);

	tpl_ctx_call(tl->ctx, free_cb, tl);
	tls_ctx_free(tl->ssl_ctx);
	pthread_rwlock_destroy(&tl->bev_lock);
	pthread_mutex_destroy(&tl->lock);
	pthread_cond_destroy(&tl->cond);
	free(tl);
}

/* ---- connect ------------------------------------------------------------------ */

static void client_start_cb(void *arg)
{
	struct tcp_link *tl = arg;

	if (client_conn_start(tl, 0))
		client_done(tl, -ECONNREFUSED, "%s: cannot connect: %s",
			    tl->addr, strerror(errno));
}

static int client_wait(struct tcp_link *tl)
{
	struct timespec dl;
	int rc = 0;

	tpl_deadline(&dl, tl->cfg.handshake_timeout_ms);
	pthread_mutex_lock(&tl->lock);
	while (!tl->done && rc == 0)
		rc = pthread_cond_timedwait(&tl->cond, &tl->lock, &dl);
	pthread_mutex_unlock(&tl->lock);
	return rc;
}

static int client_prepare(struct tcp_link *tl, const struct tp_config *cfg,
			  const char *addr, char *err, size_t errlen)
{
	int rc;

	tl->cfg = *cfg;
	snprintf(tl->addr, sizeof(tl->addr), "%s", addr);
	rc = addr_parse(addr, &tl->sa, &tl->salen, err, errlen);
	if (rc)
		return rc;
	if (cfg->security != TP_SEC_INSECURE) {
		tl->ssl_ctx = tls_ctx_new(&tl->cfg, false, err, errlen);
		if (!tl->ssl_ctx)
			return -EINVAL;
	}
	return 0;
}

static int tcp_connect(struct tp_ctx *ctx, const struct tp_config *cfg,
		       const char *addr, struct tp_link **out,
		       char *err, size_t errlen)
{
	struct tcp_link *tl = tcp_link_new(ctx, false);
	int rc;

	if (!tl)
		return -ENOMEM;
	rc = client_prepare(tl, cfg, addr, err, errlen);
	tl->link = rc ? NULL : tpl_new(ctx, &tl->cfg, &tp_tcp_ops, tl);
	if (rc || !tl->link) {
		tls_ctx_free(tl->ssl_ctx);
		free(tl);
		return rc ? rc : -ENOMEM;
	}
	tpl_ctx_call(ctx, client_start_cb, tl);
	if (client_wait(tl)) {
		client_done(tl, -ETIMEDOUT, "%s: handshake timed out after "
			    "%d ms", addr, tl->cfg.handshake_timeout_ms);
	}
	/* A link that came up reports through the core, not client_done. */
	rc = tl->result;
	if (rc) {
		snprintf(err, errlen, "%s", tl->err);
		tp_link_free(tl->link);
		return rc;
	}
	*out = tl->link;
	return 0;
}

/* ---- listen -------------------------------------------------------------------- */

static unsigned lis_count_conns(const struct tcp_listener *lis)
{
	const struct tcp_conn *c;
	unsigned n = 0;

	for (c = lis->conns; c; c = c->next)
		n++;
	return n;
}

static void accept_cb(struct evconnlistener *evl, evutil_socket_t fd,
		      struct sockaddr *sa, int salen, void *arg)
{
	struct tcp_listener *lis = arg;
	struct bufferevent *bev;
	struct tcp_conn *c;
	char peer[ADDR_MAX];

	(void)evl;
	(void)salen;
	addr_text(sa, peer, sizeof(peer));
	if (lis_count_conns(lis) >= LIS_UNIDENTIFIED_MAX) {
		evutil_closesocket(fd);
		tpl_listener_refuse(lis->pub, peer, "%d connections already "
				    "in their handshake", LIS_UNIDENTIFIED_MAX);
		return;
	}
	bev = conn_bev_new(tpl_ctx_base(lis->ctx), fd, lis->ssl_ctx, &lis->cfg,
			   true);
	c = bev ? conn_new(bev, 0, peer) : NULL;
	if (!c) {
		if (bev)
			bufferevent_free(bev);
		else
			evutil_closesocket(fd);
		tpl_listener_refuse(lis->pub, peer, "out of memory");
		return;
	}
	c->lis = lis;
	c->next = lis->conns;
	lis->conns = c;
	c->timer = timer_start(tpl_ctx_base(lis->ctx),
			       lis->cfg.handshake_timeout_ms, conn_timeout_cb, c);
	conn_tune(c, false);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static void lis_free_cb(void *arg)
{
	struct tcp_listener *lis = arg;
	struct tcp_conn *c;

	if (lis->evl)
		evconnlistener_free(lis->evl);
	lis->evl = NULL;
	while ((c = lis->conns)) {
		lis->conns = c->next;
		conn_close(c);
		free(c);
	}
	while (lis->pending)
		pending_refuse(lis->pending, "listener closed");
}

static void tcp_listener_free_raw(struct tcp_listener *lis)
{
	if (lis->pub)
		tpl_ctx_call(lis->ctx, lis_free_cb, lis);
	else if (lis->evl)
		evconnlistener_free(lis->evl);
	tls_ctx_free(lis->ssl_ctx);
	free(lis);
}

static void tcp_listener_free(struct tp_listener *l)
{
	tcp_listener_free_raw(tpl_listener_backend(l));
}

struct listen_args {
	struct tcp_listener *lis;
	struct sockaddr_storage sa;
	socklen_t salen;
	uint16_t port;
	int err;
};

static void bind_cb(void *arg)
{
	struct listen_args *a = arg;
	struct sockaddr_storage got;
	socklen_t gl = sizeof(got);
	unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
			 LEV_OPT_CLOSE_ON_EXEC;

	a->lis->evl = evconnlistener_new_bind(tpl_ctx_base(a->lis->ctx),
					      accept_cb, a->lis, flags, 64,
					      (struct sockaddr *)&a->sa,
					      (int)a->salen);
	if (!a->lis->evl) {
		a->err = errno ? errno : EADDRINUSE;
		return;
	}
	getsockname(evconnlistener_get_fd(a->lis->evl),
		    (struct sockaddr *)&got, &gl);
	a->port = ntohs(got.ss_family == AF_INET6 ?
			((struct sockaddr_in6 *)&got)->sin6_port :
			((struct sockaddr_in *)&got)->sin_port);
}

static int tcp_listen(struct tp_ctx *ctx, const struct tp_config *cfg,
		      const char *addr, struct tp_listener **out,
		      char *err, size_t errlen)
{
	struct tcp_listener *lis = calloc(1, sizeof(*lis));
	struct listen_args a = { .lis = lis };
	int rc;

	if (!lis)
		return -ENOMEM;
	lis->ctx = ctx;
	lis->cfg = *cfg;
	rc = addr_parse(addr, &a.sa, &a.salen, err, errlen);
	if (!rc && cfg->security != TP_SEC_INSECURE) {
		lis->ssl_ctx = tls_ctx_new(&lis->cfg, true, err, errlen);
		rc = lis->ssl_ctx ? 0 : -EINVAL;
	}
	if (!rc) {
		tpl_ctx_call(ctx, bind_cb, &a);
		if (a.err) {
			snprintf(err, errlen, "listen on %s: %s", addr,
				 strerror(a.err));
			rc = -a.err;
		}
	}
	if (!rc)
		lis->pub = tpl_listener_new(ctx, &lis->cfg, &tp_tcp_ops, lis,
					    a.port);
	if (rc || !lis->pub) {
		tcp_listener_free_raw(lis);
		return rc ? rc : -ENOMEM;
	}
	if (cfg->security == TP_SEC_INSECURE)
		log_warn("listener :%u: INSECURE: plaintext links, no "
			 "encryption and no authentication", a.port);
	*out = lis->pub;
	return 0;
}

const struct tp_backend_ops tp_tcp_ops = {
	.name = "tcp",
	.connect = tcp_connect,
	.listen = tcp_listen,
	.send = tcp_send,
	.send_queued = tcp_send_queued,
	.resume_read = tcp_resume_read,
	.close = tcp_close,
	.free = tcp_free,
	.listener_free = tcp_listener_free,
};
