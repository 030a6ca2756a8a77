/*
 * link.c - the link core: state, record rules, the consumer's queue,
 * back-pressure, SYNC ordering, rtt probes and statistics.  Back ends
 * (tcp.c, rdma.c) move bytes; everything they receive passes through
 * tpl_header and tpl_input here before a consumer can see it.
 *
 * Locking: link->lock guards the state, the queue, the receive-side
 * counters and every statistic; each channel's send_lock serialises
 * framing (sequence numbers) with the back end's send, so records leave in
 * sequence order.  Nobody waits while holding a send_lock: tp_send waits
 * for back-pressure first, then takes it.  The loop thread never waits.
 *
 * States: HANDSHAKE -> UP -> FAILED; link_set_state alone writes ->state
 * and logs the transition.  FAILED is terminal.
 */
#include "clock.h"
#include "link_int.h"

#include "log.h"

#include <errno.h>
#include <malloc.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_SEND_LIMIT (8u << 20)
#define DEFAULT_RECV_LIMIT (16u << 20)
#define DEFAULT_HANDSHAKE_MS 10000
#define DEFAULT_PING_MS 1000

enum link_state { LINK_ST_HANDSHAKE, LINK_ST_UP, LINK_ST_FAILED };

static const char *const link_state_names[] = {
	[LINK_ST_HANDSHAKE] = "HANDSHAKE",
	[LINK_ST_UP] = "UP",
	[LINK_ST_FAILED] = "FAILED",
};

struct link_qmsg {
	struct tp_msg msg;
	size_t cost;               /* bytes charged to the channel */
	struct link_qmsg *next;
};

struct link_chan {
	pthread_mutex_t send_lock;
	uint32_t send_seq;          /* next sequence to send */
	uint64_t send_epoch;        /* last epoch sent */
	uint64_t send_count;        /* records sent, SYNCs excluded */
	uint32_t recv_seq;          /* next sequence expected */
	uint64_t recv_epoch;        /* last epoch received */
	uint64_t recv_count;        /* records received, SYNCs excluded */
	uint64_t syncs;             /* bulk: SYNC records received */
	bool paused_full;           /* reading stopped: consumer behind */
	bool peer_bye;              /* bulk: the peer said BYE on it */
	struct tp_chan_stats st;
};

struct tp_link {
	struct tp_ctx *ctx;
	const struct tp_backend_ops *ops;
	void *be;
	struct tp_config cfg;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	enum link_state state;
	int err;
	char errmsg[TP_ERR_MAX];
	bool closed;                /* ops->close has been called */
	struct link_session sess;
	unsigned nr_chan;
	struct link_chan chan[1 + TP_MAX_BULK];
	struct link_qmsg *head, *tail;
	bool sync_pending;          /* control paused until bulk SYNCs */
	uint64_t sync_epoch;
	uint64_t ctrl_syncs;        /* control SYNCs received, pending included */
	bool bye_pending;           /* control BYE held until bulk BYEs */
	char bye_reason[LINK_BYE_MAX + 1];
	bool ping_out;              /* a PING awaits its PONG */
	struct event *ping_ev;
	uint64_t ping_nonce;
	uint64_t up_ns;
	double rtt_us, rtt_avg_us;
	uint64_t pings;
};

struct tp_ctx {
	struct event_base *base;
	pthread_t thread;
	atomic_int nobj;            /* links and listeners not yet freed */
	struct event *keep;         /* keeps the loop alive while idle */
};

struct tp_listener {
	struct tp_ctx *ctx;
	const struct tp_backend_ops *ops;
	void *be;
	struct tp_config cfg;
	uint16_t port;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct tp_link *queue[TPL_BACKLOG_MAX];
	unsigned nq;
	uint64_t refused;
};

static uint64_t now_ns(void)
{
	return mono_ns();
}

void tpl_deadline(struct timespec *ts, int timeout_ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += timeout_ms / 1000;
	ts->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

void tpl_cond_init(pthread_cond_t *c)
{
	pthread_condattr_t a;

	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(c, &a);
	pthread_condattr_destroy(&a);
}

/* Waits on c; timeout_ms < 0 waits forever.  -ETIMEDOUT when it passed. */
static int cond_wait_ms(pthread_cond_t *c, pthread_mutex_t *m,
			const struct timespec *deadline)
{
	if (!deadline)
		return -pthread_cond_wait(c, m);
	return -pthread_cond_timedwait(c, m, deadline);
}

/* ---- config ------------------------------------------------------------- */

void tp_config_init(struct tp_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->kind = TP_KIND_TCP;
	cfg->security = TP_SEC_CERT;
	cfg->features = TP_FEAT_PAGE_CODECS;
}

const char *tp_security_name(enum tp_security sec)
{
	switch (sec) {
	case TP_SEC_CERT:
		return "cert";
	case TP_SEC_PSK:
		return "psk";
	case TP_SEC_INSECURE:
		return "insecure";
	}
	return "unknown";
}

const char *tp_kind_name(enum tp_kind kind)
{
	return kind == TP_KIND_RDMA ? "rdma" : kind == TP_KIND_TCP ? "tcp"
							      : "unknown";
}

/* The same rule as names in HELLO and WELCOME. */
static bool name_valid(const char *s)
{
	return link_name_ok(s, strnlen(s, TP_NAME_MAX));
}

static int cert_files_check(const struct tp_config *cfg, char *err,
			    size_t errlen)
{
	if (!cfg->ca_file || !cfg->cert_file || !cfg->key_file) {
		snprintf(err, errlen, "security cert needs ca_file, cert_file "
			 "and key_file (missing: %s)", !cfg->ca_file ? "ca_file"
			 : !cfg->cert_file ? "cert_file" : "key_file");
		return -EINVAL;
	}
	if (!name_valid(cfg->peer_name)) {
		snprintf(err, errlen, "security cert needs the peer's name "
			 "(peer_name \"%.63s\")", cfg->peer_name);
		return -EINVAL;
	}
	return 0;
}

int tp_config_check(const struct tp_config *cfg, char *err, size_t errlen)
{
	if (cfg->kind != TP_KIND_TCP && cfg->kind != TP_KIND_RDMA) {
		snprintf(err, errlen, "kind %d unknown", (int)cfg->kind);
		return -EINVAL;
	}
	if (!name_valid(cfg->local_name)) {
		snprintf(err, errlen, "local_name \"%.63s\" must be 1..%d "
			 "printable bytes without spaces", cfg->local_name,
			 TP_NAME_MAX - 1);
		return -EINVAL;
	}
	if (cfg->peer_name[0] && !name_valid(cfg->peer_name)) {
		snprintf(err, errlen, "peer_name \"%.63s\" must be 1..%d "
			 "printable bytes without spaces", cfg->peer_name,
			 TP_NAME_MAX - 1);
		return -EINVAL;
	}
	if (cfg->nr_bulk > TP_MAX_BULK) {
		snprintf(err, errlen, "nr_bulk %u > max %d", cfg->nr_bulk,
			 TP_MAX_BULK);
		return -EINVAL;
	}
	switch (cfg->security) {
	case TP_SEC_CERT:
		return cert_files_check(cfg, err, errlen);
	case TP_SEC_PSK:
		if (cfg->psk_len < 16 || cfg->psk_len > TP_PSK_MAX) {
			snprintf(err, errlen, "psk of %zu bytes (must be "
				 "16..%d)", cfg->psk_len, TP_PSK_MAX);
			return -EINVAL;
		}
		if (!name_valid(cfg->psk_identity)) {
			snprintf(err, errlen, "psk_identity \"%.63s\" must be "
				 "1..%d printable bytes", cfg->psk_identity,
				 TP_NAME_MAX - 1);
			return -EINVAL;
		}
		return 0;
	case TP_SEC_INSECURE:
		return 0;
	}
	snprintf(err, errlen, "security %d unknown", (int)cfg->security);
	return -EINVAL;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int tp_config_set_psk_hex(struct tp_config *cfg, const char *hex,
			  char *err, size_t errlen)
{
	const char *p = hex;
	size_t n, i;

	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X'))
		p += 2;
	n = strlen(p);
	if (n % 2 || n / 2 < 16 || n / 2 > TP_PSK_MAX) {
		snprintf(err, errlen, "psk \"%.20s...\": %zu hex digits (need an "
			 "even number, 32..%d)", hex, n, 2 * TP_PSK_MAX);
		return -EINVAL;
	}
	for (i = 0; i < n; i++)
		if (hexval(p[i]) < 0) {
			snprintf(err, errlen, "psk: \"%c\" at %zu is not a hex "
				 "digit", p[i], i);
			return -EINVAL;
		}
	for (i = 0; i < n / 2; i++)
		cfg->psk[i] = (uint8_t)(hexval(p[2 * i]) << 4 |
					hexval(p[2 * i + 1]));
	cfg->psk_len = n / 2;
	return 0;
}

static void config_defaults(struct tp_config *c)
{
	if (!c->send_limit)
		c->send_limit = DEFAULT_SEND_LIMIT;
	if (!c->recv_limit)
		c->recv_limit = DEFAULT_RECV_LIMIT;
	if (!c->handshake_timeout_ms)
		c->handshake_timeout_ms = DEFAULT_HANDSHAKE_MS;
	if (!c->ping_interval_ms)
		c->ping_interval_ms = DEFAULT_PING_MS;
}

/* ---- context -------------------------------------------------------------- */

static void *ctx_thread(void *arg)
{
	struct tp_ctx *ctx = arg;

	event_base_loop(ctx->base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

static void ctx_started(void *arg)
{
	(void)arg;
}

static pthread_once_t evthread_once = PTHREAD_ONCE_INIT;
static int evthread_rc;

static void evthread_setup(void)
{
	evthread_rc = evthread_use_pthreads();
}

int tp_ctx_new(struct tp_ctx **out)
{
	struct tp_ctx *ctx;
	int rc;

	pthread_once(&evthread_once, evthread_setup);
	if (evthread_rc)
		return -ENOSYS;
	/* A peer that vanishes must cost an error code, not the process. */
	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
		return -errno;
	/*
	 * Records of up to 4 MiB are allocated and freed at line rate.  With
	 * glibc's defaults each one is a fresh mmap whose pages fault in on
	 * first touch: bench_link measured 443,000 page faults in a 3 s run
	 * and half the throughput.  Keep such blocks in the heap instead;
	 * the send and receive limits bound what the links hold.
	 */
	mallopt(M_MMAP_THRESHOLD, 64 << 20);
	mallopt(M_TRIM_THRESHOLD, 256 << 20);
	ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return -ENOMEM;
	ctx->base = event_base_new();
	if (!ctx->base) {
		free(ctx);
		return -ENOMEM;
	}
	rc = pthread_create(&ctx->thread, NULL, ctx_thread, ctx);
	if (rc) {
		event_base_free(ctx->base);
		free(ctx);
		return -rc;
	}
	/* Returns once the loop runs, so a loopbreak cannot come too early. */
	tpl_ctx_call(ctx, ctx_started, NULL);
	*out = ctx;
	return 0;
}

static void ctx_break(void *arg)
{
	event_base_loopbreak(arg);
}

void tp_ctx_free(struct tp_ctx *ctx)
{
	int n;

	if (!ctx)
		return;
	n = atomic_load(&ctx->nobj);
	if (n > 0) { /* their callbacks would run on a freed loop */
		log_error("transport: tp_ctx_free with %d links or listeners "
			  "still open: not freed (free them first)", n);
		return;
	}
	/* From inside the loop, so no wake-up can be lost. */
	tpl_ctx_call(ctx, ctx_break, ctx->base);
	pthread_join(ctx->thread, NULL);
	event_base_free(ctx->base);
	free(ctx);
}

struct event_base *tpl_ctx_base(struct tp_ctx *ctx)
{
	return ctx->base;
}

struct ctx_call {
	void (*fn)(void *arg);
	void *arg;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
};

static void ctx_call_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ctx_call *c = arg;

	(void)fd;
	(void)what;
	c->fn(c->arg);
	pthread_mutex_lock(&c->lock);
	c->done = true;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

void tpl_ctx_call(struct tp_ctx *ctx, void (*fn)(void *arg), void *arg)
{
	struct ctx_call c = { .fn = fn, .arg = arg };
	struct timeval zero = { 0, 0 };

	if (pthread_equal(pthread_self(), ctx->thread)) {
		fn(arg);
		return;
	}
	pthread_mutex_init(&c.lock, NULL);
	pthread_cond_init(&c.cond, NULL);
	if (event_base_once(ctx->base, -1, EV_TIMEOUT, ctx_call_cb, &c,
			    &zero) == 0) {
		pthread_mutex_lock(&c.lock);
		while (!c.done)
			pthread_cond_wait(&c.cond, &c.lock);
		pthread_mutex_unlock(&c.lock);
	} else {
		log_error("transport: cannot schedule on the event loop");
	}
	pthread_mutex_destroy(&c.lock);
	pthread_cond_destroy(&c.cond);
}

/* ---- link lifecycle --------------------------------------------------------- */

static const char *link_peer_label(const struct tp_link *l)
{
	if (l->sess.peer_name[0])
		return l->sess.peer_name;
	return l->cfg.peer_name[0] ? l->cfg.peer_name : "(unnamed peer)";
}

/* The one writer of ->state; caller holds link->lock. */
static void link_set_state(struct tp_link *l, enum link_state st)
{
	if (l->state == st)
		return;
	log_info("link %s: %s -> %s", link_peer_label(l),
		 link_state_names[l->state], link_state_names[st]);
	l->state = st;
}

struct tp_link *tpl_new(struct tp_ctx *ctx, const struct tp_config *cfg,
			const struct tp_backend_ops *ops, void *be)
{
	struct tp_link *l = calloc(1, sizeof(*l));
	unsigned i;

	if (!l)
		return NULL;
	l->ctx = ctx;
	l->ops = ops;
	l->be = be;
	l->cfg = *cfg;
	config_defaults(&l->cfg);
	pthread_mutex_init(&l->lock, NULL);
	tpl_cond_init(&l->cond);
	for (i = 0; i <= TP_MAX_BULK; i++)
		pthread_mutex_init(&l->chan[i].send_lock, NULL);
	l->nr_chan = 1;
	l->state = LINK_ST_HANDSHAKE;
	atomic_fetch_add(&ctx->nobj, 1);
	return l;
}

void *tpl_backend(const struct tp_link *link)
{
	return link->be;
}

const struct tp_config *tpl_config(const struct tp_link *link)
{
	return &link->cfg;
}

const struct link_session *tpl_session(const struct tp_link *link)
{
	return &link->sess;
}

int tpl_error(const struct tp_link *link)
{
	return link->err;
}

static void ping_cb(evutil_socket_t fd, short what, void *arg);

void tpl_up(struct tp_link *l, const struct link_session *sess)
{
	struct timeval tv;
	unsigned i;

	pthread_mutex_lock(&l->lock);
	l->sess = *sess;
	l->nr_chan = 1 + sess->nr_bulk;
	for (i = 0; i < l->nr_chan; i++) {
		l->chan[i].send_epoch = sess->min_epoch;
		l->chan[i].recv_epoch = sess->min_epoch;
		l->chan[i].send_seq = 1; /* 0 was the handshake record */
		l->chan[i].recv_seq = 1;
	}
	l->up_ns = now_ns();
	if (l->state == LINK_ST_HANDSHAKE)
		link_set_state(l, LINK_ST_UP);
	pthread_mutex_unlock(&l->lock);
	if (l->cfg.security == TP_SEC_INSECURE)
		log_warn("link %s: INSECURE: plaintext link, no encryption and "
			 "no authentication (security insecure was configured)",
			 link_peer_label(l));
	if (l->cfg.ping_interval_ms > 0) {
		l->ping_ev = event_new(l->ctx->base, -1, EV_PERSIST, ping_cb, l);
		tv.tv_sec = l->cfg.ping_interval_ms / 1000;
		tv.tv_usec = (l->cfg.ping_interval_ms % 1000) * 1000;
		if (l->ping_ev)
			event_add(l->ping_ev, &tv);
	}
}

void tpl_vfail(struct tp_link *l, int err, const char *fmt, va_list ap)
{
	bool do_close;

	pthread_mutex_lock(&l->lock);
	if (l->state == LINK_ST_FAILED) {
		pthread_mutex_unlock(&l->lock);
		return;
	}
	l->err = err < 0 ? err : -EIO;
	vsnprintf(l->errmsg, sizeof(l->errmsg), fmt, ap);
	if (err == -ESHUTDOWN) /* an orderly close, by either side */
		log_info("link %s: %s", link_peer_label(l), l->errmsg);
	else
		log_warn("link %s: %s", link_peer_label(l), l->errmsg);
	link_set_state(l, LINK_ST_FAILED);
	do_close = !l->closed;
	l->closed = true;
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
	if (do_close)
		l->ops->close(l);
}

void tpl_fail(struct tp_link *l, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	tpl_vfail(l, err, fmt, ap);
	va_end(ap);
}

static void link_teardown_cb(void *arg)
{
	struct tp_link *l = arg;

	if (l->ping_ev) {
		event_free(l->ping_ev);
		l->ping_ev = NULL;
	}
}

static void link_send_bye(struct tp_link *l);

void tp_link_free(struct tp_link *l)
{
	struct link_qmsg *q, *next;
	unsigned i;

	if (!l)
		return;
	link_send_bye(l);
	tp_flush(l, 1000);
	tpl_fail(l, -ESHUTDOWN, "closed by this host");
	tpl_ctx_call(l->ctx, link_teardown_cb, l);
	l->ops->free(l);
	for (q = l->head; q; q = next) {
		next = q->next;
		free(q->msg.body);
		free(q);
	}
	for (i = 0; i <= TP_MAX_BULK; i++)
		pthread_mutex_destroy(&l->chan[i].send_lock);
	pthread_mutex_destroy(&l->lock);
	pthread_cond_destroy(&l->cond);
	atomic_fetch_sub(&l->ctx->nobj, 1);
	free(l);
}

void tp_link_abort(struct tp_link *l)
{
	tpl_fail(l, -ECONNABORTED, "aborted by this host");
}

unsigned tp_link_nr_bulk(const struct tp_link *l)
{
	return l->nr_chan - 1;
}

const char *tp_link_peer(const struct tp_link *l)
{
	return link_peer_label(l);
}

uint64_t tp_link_features(const struct tp_link *l)
{
	return l->sess.features;
}

int tp_link_error(const struct tp_link *l, char *err, size_t errlen)
{
	struct tp_link *m = (struct tp_link *)l;
	int rc;

	pthread_mutex_lock(&m->lock);
	rc = m->err;
	if (err && errlen)
		snprintf(err, errlen, "%s", rc ? m->errmsg : "");
	pthread_mutex_unlock(&m->lock);
	return rc;
}

/* ---- sending ----------------------------------------------------------------- */

/* The link's own records, handled by the core and never delivered. */
static bool link_record(uint32_t type)
{
	return type >= WIRE_REC_LINK_HELLO && type <= WIRE_REC_LINK_BYE;
}

/* Probes and BYE carry epoch 0 and neither move nor obey the epoch. */
static bool link_epochless(uint32_t type)
{
	return type == WIRE_REC_LINK_PING || type == WIRE_REC_LINK_PONG ||
	       type == WIRE_REC_LINK_BYE;
}

/* Frames and hands one record to the back end; caller holds send_lock. */
static int chan_send_locked(struct tp_link *l, unsigned chan, uint32_t type,
			    uint64_t epoch, const void *body, size_t len)
{
	struct link_chan *c = &l->chan[chan];
	struct wire_record_header h = {
		.type = type, .epoch = epoch, .length = (uint32_t)len,
		.seq = c->send_seq,
	};
	uint8_t hdr[WIRE_RECORD_HEADER_SIZE];
	const void *parts[1] = { body };
	size_t pad = wire_padded_length((uint32_t)len) - len;
	int rc;

	rc = wire_record_seal_iov(hdr, &h, parts, &len, 1, l->sess.seed);
	if (rc)
		return rc;
	rc = l->ops->send(l, chan, hdr, body, len, pad);
	if (rc)
		return rc;
	c->send_seq++;
	if (!link_record(type))
		c->send_count++;
	if (!link_epochless(type))
		c->send_epoch = epoch;
	pthread_mutex_lock(&l->lock);
	c->st.bytes_sent += WIRE_RECORD_HEADER_SIZE + len + pad;
	c->st.records_sent++;
	pthread_mutex_unlock(&l->lock);
	return 0;
}

static int link_usable(struct tp_link *l)
{
	if (l->state == LINK_ST_FAILED)
		return l->err;
	if (l->state != LINK_ST_UP)
		return -ENOTCONN;
	return 0;
}

/* Waits (or not) until chan is below its send limit.  Takes link->lock. */
static int send_wait(struct tp_link *l, unsigned chan, bool block)
{
	int rc;
	bool counted = false;

	pthread_mutex_lock(&l->lock);
	while (!(rc = link_usable(l)) &&
	       l->ops->send_queued(l, chan) > l->cfg.send_limit) {
		if (!block) {
			rc = -EAGAIN;
			break;
		}
		if (!counted)
			l->chan[chan].st.send_blocked++;
		counted = true;
		pthread_cond_wait(&l->cond, &l->lock);
	}
	pthread_mutex_unlock(&l->lock);
	return rc;
}

static int send_args_check(struct tp_link *l, unsigned chan, uint32_t type,
			   size_t len)
{
	if (chan >= l->nr_chan || len > WIRE_MAX_BODY)
		return -EINVAL;
	if (!wire_record_allowed(type, WIRE_STREAM_LINK) || link_record(type))
		return -EINVAL;
	if (type == WIRE_REC_PAGE_CODED &&
	    !(l->sess.features & TP_FEAT_PAGE_CODECS))
		return -EPROTO; /* the peer did not agree to page codecs */
	return 0;
}

static int link_send(struct tp_link *l, unsigned chan, uint32_t type,
		     uint64_t epoch, const void *body, size_t len, bool block)
{
	struct link_chan *c;
	int rc = send_args_check(l, chan, type, len);

	if (rc)
		return rc;
	rc = send_wait(l, chan, block);
	if (rc)
		return rc;
	c = &l->chan[chan];
	pthread_mutex_lock(&c->send_lock);
	if (epoch < c->send_epoch)
		rc = -EINVAL; /* epochs on a channel never go back */
	else
		rc = chan_send_locked(l, chan, type, epoch, body, len);
	pthread_mutex_unlock(&c->send_lock);
	return rc;
}

int tp_send(struct tp_link *l, unsigned chan, uint32_t type, uint64_t epoch,
	    const void *body, size_t len)
{
	return link_send(l, chan, type, epoch, body, len, true);
}

int tp_send_nb(struct tp_link *l, unsigned chan, uint32_t type,
	       uint64_t epoch, const void *body, size_t len)
{
	return link_send(l, chan, type, epoch, body, len, false);
}

/* A link record on chan; never waits for back-pressure (small records). */
static int link_send_internal(struct tp_link *l, unsigned chan, uint32_t type,
			      uint64_t epoch, const struct wire_buf *b)
{
	struct link_chan *c = &l->chan[chan];
	int rc;

	if (b->rc)
		return b->rc;
	pthread_mutex_lock(&c->send_lock);
	rc = chan_send_locked(l, chan, type, epoch, b->data, b->len);
	pthread_mutex_unlock(&c->send_lock);
	return rc;
}

int tp_sync(struct tp_link *l, uint64_t epoch)
{
	struct link_sync s = { .nr_chan = l->nr_chan };
	struct wire_buf b;
	unsigned i;
	int rc = 0;

	for (i = 1; i < l->nr_chan && !rc; i++)
		rc = send_wait(l, i, true);
	if (!rc)
		rc = send_wait(l, 0, true);
	if (rc)
		return rc;
	/* Lock every channel in order so the counts are one cut. */
	for (i = 0; i < l->nr_chan; i++)
		pthread_mutex_lock(&l->chan[i].send_lock);
	for (i = 0; i < l->nr_chan && !rc; i++)
		if (epoch < l->chan[i].send_epoch)
			rc = -EINVAL;
	for (i = 0; i < l->nr_chan; i++)
		s.count[i] = l->chan[i].send_count;
	wire_buf_init(&b);
	if (!rc)
		rc = link_sync_put(&b, &s);
	for (i = l->nr_chan; !rc && i-- > 0;)
		rc = chan_send_locked(l, i, WIRE_REC_LINK_SYNC, epoch,
				      b.data, b.len);
	for (i = 0; i < l->nr_chan; i++)
		pthread_mutex_unlock(&l->chan[i].send_lock);
	wire_buf_fini(&b);
	return rc;
}

int tp_flush(struct tp_link *l, int timeout_ms)
{
	struct timespec dl;
	unsigned i;
	int rc = 0;

	if (pthread_equal(pthread_self(), l->ctx->thread))
		return -EDEADLK; /* only the loop thread could drain it */
	if (timeout_ms >= 0)
		tpl_deadline(&dl, timeout_ms);
	pthread_mutex_lock(&l->lock);
	for (i = 0; i < l->nr_chan && !rc; i++) {
		while (!(rc = link_usable(l)) &&
		       l->ops->send_queued(l, i) > 0) {
			rc = cond_wait_ms(&l->cond, &l->lock,
					  timeout_ms >= 0 ? &dl : NULL);
			if (rc)
				break;
		}
	}
	pthread_mutex_unlock(&l->lock);
	return rc;
}

void tpl_drained(struct tp_link *l, unsigned chan)
{
	(void)chan;
	pthread_mutex_lock(&l->lock);
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
}

bool tpl_peer_closed(struct tp_link *l, unsigned chan)
{
	bool bye;

	pthread_mutex_lock(&l->lock);
	bye = chan < l->nr_chan && l->chan[chan].peer_bye;
	pthread_mutex_unlock(&l->lock);
	return bye;
}

/* BYE on every channel, control last: a peer that sees a bulk channel
 * end after its BYE waits for control's, which comes after everything
 * this host sent on control. */
static void link_send_bye(struct tp_link *l)
{
	static const char reason[] = "link closed by peer";
	struct wire_buf b;
	unsigned i;

	pthread_mutex_lock(&l->lock);
	if (l->state != LINK_ST_UP) {
		pthread_mutex_unlock(&l->lock);
		return;
	}
	pthread_mutex_unlock(&l->lock);
	wire_buf_init(&b);
	wire_put_bytes(&b, reason, sizeof(reason) - 1);
	for (i = l->nr_chan; i-- > 0;)
		link_send_internal(l, i, WIRE_REC_LINK_BYE, 0, &b);
	wire_buf_fini(&b);
}

/* ---- rtt probes --------------------------------------------------------------- */

static void ping_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tp_link *l = arg;
	struct link_ping pg;
	struct wire_buf b;

	(void)fd;
	(void)what;
	pthread_mutex_lock(&l->lock);
	if (link_usable(l) || l->ping_out) { /* one probe at a time */
		pthread_mutex_unlock(&l->lock);
		return;
	}
	l->ping_out = true;
	pthread_mutex_unlock(&l->lock);
	pg.nonce = ++l->ping_nonce;
	pg.t_ns = now_ns();
	wire_buf_init(&b);
	link_ping_put(&b, &pg);
	if (link_send_internal(l, 0, WIRE_REC_LINK_PING, 0, &b) == 0) {
		pthread_mutex_lock(&l->lock);
		l->pings++;
		pthread_mutex_unlock(&l->lock);
	}
	wire_buf_fini(&b);
}

static int on_ping(struct tp_link *l, const uint8_t *body, uint32_t len,
		   char *err, size_t errlen)
{
	struct link_ping pg;
	struct wire_buf b;
	int rc = link_ping_decode(body, len, &pg, err, errlen);

	if (rc)
		return rc;
	if (l->ops->send_queued(l, 0) > l->cfg.send_limit)
		return 0; /* probes are best effort; a flood must not queue */
	wire_buf_init(&b);
	link_ping_put(&b, &pg);
	rc = link_send_internal(l, 0, WIRE_REC_LINK_PONG, 0, &b);
	wire_buf_fini(&b);
	return rc == -ENOTCONN ? 0 : rc;
}

static int on_pong(struct tp_link *l, const uint8_t *body, uint32_t len,
		   char *err, size_t errlen)
{
	struct link_ping pg;
	uint64_t now = now_ns();
	int rc = link_ping_decode(body, len, &pg, err, errlen);

	if (rc)
		return rc;
	if (pg.nonce > l->ping_nonce || pg.t_ns > now) {
		snprintf(err, errlen, "LINK_PONG: nonce %" PRIu64
			 " answers no ping sent (last %" PRIu64 ")", pg.nonce,
			 l->ping_nonce);
		return -EBADMSG;
	}
	pthread_mutex_lock(&l->lock);
	l->ping_out = false;
	l->rtt_us = (double)(now - pg.t_ns) / 1000.0;
	l->rtt_avg_us = l->rtt_avg_us == 0 ? l->rtt_us
			: l->rtt_avg_us + (l->rtt_us - l->rtt_avg_us) / 8;
	pthread_mutex_unlock(&l->lock);
	return 0;
}

/* ---- receiving ------------------------------------------------------------------ */

int tpl_header(struct tp_link *l, unsigned chan,
	       const uint8_t hdr[WIRE_RECORD_HEADER_SIZE],
	       struct wire_record_header *rh)
{
	char err[WIRE_ERR_MAX];
	int rc;

	rc = wire_record_header_decode(hdr, WIRE_MAX_BODY, rh, err,
				       sizeof(err));
	if (!rc && !wire_record_allowed(rh->type, WIRE_STREAM_LINK)) {
		snprintf(err, sizeof(err), "%s record not allowed on a link",
			 wire_record_type_name(rh->type));
		rc = -EPROTO;
	}
	if (rc)
		tpl_fail(l, rc, "channel %u: record %" PRIu32 ": %s", chan,
			 l->chan[chan].recv_seq, err);
	return rc;
}

/* Queues a verified record for the consumer; caller holds link->lock. */
static int queue_msg(struct tp_link *l, unsigned chan,
		     const struct wire_record_header *rh, uint8_t *body)
{
	struct link_qmsg *q = calloc(1, sizeof(*q));

	if (!q)
		return -ENOMEM;
	q->msg.chan = chan;
	q->msg.type = rh->type;
	q->msg.flags = rh->flags;
	q->msg.epoch = rh->epoch;
	q->msg.len = rh->length;
	q->msg.body = body;
	q->cost = WIRE_RECORD_HEADER_SIZE + wire_padded_length(rh->length);
	if (l->tail)
		l->tail->next = q;
	else
		l->head = q;
	l->tail = q;
	l->chan[chan].st.recv_queued += q->cost;
	pthread_cond_broadcast(&l->cond);
	return 0;
}

/* Every tp_sync sends one SYNC per channel, so control's k-th SYNC waits
 * for each bulk channel's k-th: counts, not epochs, which may repeat. */
static bool bulk_all_synced(const struct tp_link *l, uint64_t k)
{
	unsigned i;

	for (i = 1; i < l->nr_chan; i++)
		if (l->chan[i].syncs < k)
			return false;
	return true;
}

/* Delivers the held control SYNC once every bulk channel caught up. */
static bool release_sync_locked(struct tp_link *l)
{
	struct wire_record_header rh = {
		.type = TP_MSG_SYNC, .epoch = l->sync_epoch,
	};

	if (!l->sync_pending || !bulk_all_synced(l, l->ctrl_syncs))
		return false;
	l->sync_pending = false;
	if (queue_msg(l, 0, &rh, NULL))
		l->err = -ENOMEM; /* reported by the caller's check below */
	return true;
}

static int on_sync(struct tp_link *l, unsigned chan,
		   const struct wire_record_header *rh, const uint8_t *body,
		   char *err, size_t errlen)
{
	struct link_sync s;
	struct link_chan *c = &l->chan[chan];
	int rc = link_sync_decode(body, rh->length, &s, err, errlen);

	if (rc)
		return rc;
	if (s.nr_chan != l->nr_chan || s.count[chan] != c->recv_count) {
		snprintf(err, errlen, "LINK_SYNC epoch %" PRIu64 ": peer sent "
			 "%" PRIu64 " records on channel %u, %" PRIu64
			 " arrived (channels %" PRIu32 "/%u)", rh->epoch,
			 s.count[chan], chan, c->recv_count, s.nr_chan,
			 l->nr_chan);
		return -EBADMSG;
	}
	if (chan > 0) {
		c->syncs++;
		if (release_sync_locked(l) && !l->chan[0].paused_full)
			return 2; /* control may read again */
		return 0;
	}
	l->sync_pending = true;
	l->sync_epoch = rh->epoch;
	l->ctrl_syncs++;
	return release_sync_locked(l) ? 0 : 1;
}

/* Sequence and epoch rules; caller holds link->lock. */
static int order_check(struct tp_link *l, unsigned chan,
		       const struct wire_record_header *rh, char *err,
		       size_t errlen)
{
	struct link_chan *c = &l->chan[chan];
	bool epochless = link_epochless(rh->type);

	if (rh->seq != c->recv_seq) {
		snprintf(err, errlen, "sequence %" PRIu32 ", expected %" PRIu32
			 " (replayed, lost or reordered record)", rh->seq,
			 c->recv_seq);
		return -EBADMSG;
	}
	if (!epochless && rh->epoch < c->recv_epoch) {
		snprintf(err, errlen, "stale epoch %" PRIu64 " < %" PRIu64
			 " (last on this channel)", rh->epoch, c->recv_epoch);
		return -EBADMSG;
	}
	if (!epochless && rh->epoch < l->sess.min_epoch) {
		snprintf(err, errlen, "stale epoch %" PRIu64 " < session "
			 "minimum %" PRIu64, rh->epoch, l->sess.min_epoch);
		return -EBADMSG;
	}
	return 0;
}

static bool is_handshake_type(uint32_t t)
{
	return t == WIRE_REC_LINK_HELLO || t == WIRE_REC_LINK_WELCOME ||
	       t == WIRE_REC_LINK_JOIN || t == WIRE_REC_LINK_JOINED;
}

/* The link ends once control and every bulk channel have said BYE. */
static int bye_check(struct tp_link *l, char *err, size_t errlen)
{
	unsigned i;

	if (!l->bye_pending)
		return 0;
	for (i = 1; i < l->nr_chan; i++)
		if (!l->chan[i].peer_bye)
			return 0;
	snprintf(err, errlen, "peer closed the link (\"%.160s\")",
		 l->bye_reason);
	return -ESHUTDOWN;
}

/* Handles one verified record; caller holds link->lock.  Returns <0, 0,
 * 1 (pause chan) or 2 (resume control). */
static int dispatch_locked(struct tp_link *l, unsigned chan,
			   const struct wire_record_header *rh, uint8_t *body,
			   bool *consumed, char *err, size_t errlen)
{
	struct link_chan *c = &l->chan[chan];
	char reason[LINK_BYE_MAX + 1];

	if (is_handshake_type(rh->type)) {
		snprintf(err, errlen, "%s after the handshake",
			 wire_record_type_name(rh->type));
		return -EPROTO;
	}
	if (rh->type == WIRE_REC_PAGE_CODED &&
	    !(l->sess.features & TP_FEAT_PAGE_CODECS)) {
		snprintf(err, errlen, "PAGE_CODED but page codecs were not "
			 "negotiated");
		return -EPROTO;
	}
	if (rh->type == WIRE_REC_LINK_SYNC)
		return on_sync(l, chan, rh, body, err, errlen);
	if (rh->type == WIRE_REC_LINK_BYE && chan > 0) {
		c->peer_bye = true; /* its EOF is expected; control says when */
		return bye_check(l, err, errlen);
	}
	if (rh->type == WIRE_REC_LINK_BYE) {
		link_bye_decode(body, rh->length, reason, sizeof(reason));
		snprintf(l->bye_reason, sizeof(l->bye_reason), "%s", reason);
		l->bye_pending = true;
		/* Bulk records sent before the BYE may still be in flight:
		 * control waits for every bulk channel's BYE. */
		return bye_check(l, err, errlen) ? -ESHUTDOWN : 1;
	}
	c->recv_count++;
	if (!wire_record_known(rh->type))
		return 0; /* unknown optional: verified, counted, skipped */
	if (queue_msg(l, chan, rh, body)) {
		snprintf(err, errlen, "out of memory queueing a record");
		return -ENOMEM;
	}
	*consumed = true;
	if (c->st.recv_queued > l->cfg.recv_limit && !c->paused_full) {
		c->paused_full = true;
		c->st.recv_paused++;
		return 1;
	}
	return 0;
}

static int input_verified(struct tp_link *l, unsigned chan,
			  const struct wire_record_header *rh, uint8_t *body,
			  bool *consumed, char *err, size_t errlen)
{
	int rc;

	if (rh->type == WIRE_REC_LINK_PING)
		return on_ping(l, body, rh->length, err, errlen);
	if (rh->type == WIRE_REC_LINK_PONG)
		return on_pong(l, body, rh->length, err, errlen);
	pthread_mutex_lock(&l->lock);
	rc = dispatch_locked(l, chan, rh, body, consumed, err, errlen);
	pthread_mutex_unlock(&l->lock);
	return rc;
}

int tpl_input(struct tp_link *l, unsigned chan,
	      const uint8_t hdr[WIRE_RECORD_HEADER_SIZE],
	      const struct wire_record_header *rh, uint8_t *body)
{
	char err[TP_ERR_MAX] = "";
	bool consumed = false;
	int rc;

	rc = wire_record_verify_seeded(hdr, body, rh, l->sess.seed, err,
				       sizeof(err));
	if (!rc) {
		pthread_mutex_lock(&l->lock);
		rc = order_check(l, chan, rh, err, sizeof(err));
		if (!rc) {
			l->chan[chan].recv_seq++;
			if (!link_epochless(rh->type))
				l->chan[chan].recv_epoch = rh->epoch;
			l->chan[chan].st.records_recv++;
			l->chan[chan].st.bytes_recv += WIRE_RECORD_HEADER_SIZE +
				wire_padded_length(rh->length);
		}
		pthread_mutex_unlock(&l->lock);
	}
	if (!rc)
		rc = input_verified(l, chan, rh, body, &consumed, err,
				    sizeof(err));
	if (!consumed)
		free(body);
	if (rc == 2) {
		l->ops->resume_read(l, 0);
		return 0;
	}
	if (rc < 0) {
		tpl_fail(l, rc, "channel %u: record %" PRIu32 " (%s, epoch %"
			 PRIu64 "): %s", chan, rh->seq,
			 wire_record_type_name(rh->type), rh->epoch, err);
		return rc;
	}
	return rc;
}

/* ---- the consumer ---------------------------------------------------------------- */

static struct link_qmsg *dequeue_locked(struct tp_link *l, bool *resume)
{
	struct link_qmsg *q = l->head;
	struct link_chan *c;

	*resume = false;
	if (!q)
		return NULL;
	l->head = q->next;
	if (!l->head)
		l->tail = NULL;
	c = &l->chan[q->msg.chan];
	c->st.recv_queued -= q->cost;
	if (c->paused_full && c->st.recv_queued <= l->cfg.recv_limit / 2) {
		c->paused_full = false;
		*resume = !(q->msg.chan == 0 && l->sync_pending);
	}
	return q;
}

int tp_recv(struct tp_link *l, int timeout_ms, struct tp_msg **out)
{
	struct link_qmsg *q;
	struct timespec dl;
	bool resume = false;
	int rc = 0;

	if (timeout_ms >= 0)
		tpl_deadline(&dl, timeout_ms);
	pthread_mutex_lock(&l->lock);
	while (!(q = dequeue_locked(l, &resume))) {
		if (l->state == LINK_ST_FAILED) {
			rc = l->err;
			break;
		}
		rc = cond_wait_ms(&l->cond, &l->lock,
				  timeout_ms >= 0 ? &dl : NULL);
		if (rc)
			break;
	}
	pthread_mutex_unlock(&l->lock);
	if (!q)
		return rc;
	if (resume)
		l->ops->resume_read(l, q->msg.chan);
	*out = &q->msg;
	return 0;
}

void tp_msg_free(struct tp_msg *msg)
{
	struct link_qmsg *q;

	if (!msg)
		return;
	q = (struct link_qmsg *)((char *)msg - offsetof(struct link_qmsg, msg));
	free(msg->body);
	free(q);
}

void tp_link_stats(struct tp_link *l, struct tp_stats *out)
{
	double secs;
	unsigned i;

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&l->lock);
	out->nr_chan = l->nr_chan;
	for (i = 0; i < l->nr_chan; i++) {
		out->chan[i] = l->chan[i].st;
		out->bytes_sent += l->chan[i].st.bytes_sent;
		out->bytes_recv += l->chan[i].st.bytes_recv;
		out->records_sent += l->chan[i].st.records_sent;
		out->records_recv += l->chan[i].st.records_recv;
	}
	out->rtt_us = l->rtt_us;
	out->rtt_avg_us = l->rtt_avg_us;
	out->pings = l->pings;
	secs = l->up_ns ? (double)(now_ns() - l->up_ns) / 1e9 : 0;
	pthread_mutex_unlock(&l->lock);
	for (i = 0; i < out->nr_chan; i++)
		out->chan[i].send_queued = l->ops->send_queued(l, i);
	out->up_seconds = secs;
	if (secs > 0) {
		out->send_mbps = (double)out->bytes_sent * 8 / secs / 1e6;
		out->recv_mbps = (double)out->bytes_recv * 8 / secs / 1e6;
	}
}

/* ---- connect / listen ----------------------------------------------------------- */

static const struct tp_backend_ops *ops_for(enum tp_kind kind)
{
	return kind == TP_KIND_RDMA ? &tp_rdma_ops : &tp_tcp_ops;
}

/* A checked copy of cfg with the defaults filled in. */
static int config_ready(const struct tp_config *cfg, struct tp_config *out,
			char *err, size_t errlen)
{
	int rc = tp_config_check(cfg, err, errlen);

	if (rc)
		return rc;
	*out = *cfg;
	config_defaults(out);
	return 0;
}

int tp_connect(struct tp_ctx *ctx, const struct tp_config *cfg,
	       const char *addr, struct tp_link **out,
	       char *err, size_t errlen)
{
	struct tp_config c;
	int rc = config_ready(cfg, &c, err, errlen);

	return rc ? rc : ops_for(c.kind)->connect(ctx, &c, addr, out, err,
						   errlen);
}

int tp_listen(struct tp_ctx *ctx, const struct tp_config *cfg,
	      const char *addr, struct tp_listener **out,
	      char *err, size_t errlen)
{
	struct tp_config c;
	int rc = config_ready(cfg, &c, err, errlen);

	return rc ? rc : ops_for(c.kind)->listen(ctx, &c, addr, out, err,
						  errlen);
}

struct tp_listener *tpl_listener_new(struct tp_ctx *ctx,
				     const struct tp_config *cfg,
				     const struct tp_backend_ops *ops,
				     void *be, uint16_t port)
{
	struct tp_listener *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	l->ctx = ctx;
	l->ops = ops;
	l->be = be;
	l->cfg = *cfg;
	l->port = port;
	pthread_mutex_init(&l->lock, NULL);
	tpl_cond_init(&l->cond);
	atomic_fetch_add(&ctx->nobj, 1);
	return l;
}

void *tpl_listener_backend(const struct tp_listener *l)
{
	return l->be;
}

uint16_t tp_listener_port(const struct tp_listener *l)
{
	return l->port;
}

uint64_t tp_listener_refused(const struct tp_listener *l)
{
	struct tp_listener *m = (struct tp_listener *)l;
	uint64_t n;

	pthread_mutex_lock(&m->lock);
	n = m->refused;
	pthread_mutex_unlock(&m->lock);
	return n;
}

unsigned tpl_listener_backlog(struct tp_listener *l)
{
	unsigned n;

	pthread_mutex_lock(&l->lock);
	n = l->nq;
	pthread_mutex_unlock(&l->lock);
	return n;
}

void tpl_listener_push(struct tp_listener *l, struct tp_link *link)
{
	pthread_mutex_lock(&l->lock);
	if (l->nq == TPL_BACKLOG_MAX) {
		pthread_mutex_unlock(&l->lock);
		tpl_listener_refuse(l, tp_link_peer(link), "%d accepted links "
				    "not yet taken", TPL_BACKLOG_MAX);
		tp_link_free(link);
		return;
	}
	l->queue[l->nq++] = link;
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
}

void tpl_listener_refuse(struct tp_listener *l, const char *peer,
			 const char *fmt, ...)
{
	char msg[TP_ERR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_warn("listener :%u: refused %s: %s", l->port, peer, msg);
	pthread_mutex_lock(&l->lock);
	l->refused++;
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
}

int tp_accept(struct tp_listener *l, int timeout_ms, struct tp_link **out)
{
	struct timespec dl;
	int rc = 0;

	if (timeout_ms >= 0)
		tpl_deadline(&dl, timeout_ms);
	pthread_mutex_lock(&l->lock);
	while (!l->nq && !rc)
		rc = cond_wait_ms(&l->cond, &l->lock,
				  timeout_ms >= 0 ? &dl : NULL);
	if (l->nq) {
		*out = l->queue[0];
		memmove(l->queue, l->queue + 1, --l->nq * sizeof(l->queue[0]));
		rc = 0;
	}
	pthread_mutex_unlock(&l->lock);
	return rc;
}

void tp_listener_free(struct tp_listener *l)
{
	unsigned i;

	if (!l)
		return;
	l->ops->listener_free(l);
	for (i = 0; i < l->nq; i++)
		tp_link_free(l->queue[i]);
	pthread_mutex_destroy(&l->lock);
	pthread_cond_destroy(&l->cond);
	atomic_fetch_sub(&l->ctx->nobj, 1);
	free(l);
}
