/*
 * test_link.c - transport links over loopback, in one process: a listener
 * and a connector on their own event loops.
 *
 * Covered: the handshake for every security mode; records on the control
 * channel arrive complete and in order under load from several threads;
 * bulk channels deliver every record exactly once; tp_sync comes after
 * everything sent before it; a slow reader makes the sender block instead
 * of buffering without bound; a link cut, a peer's close and an abort are
 * reported to the link's user; the security refusals (S1, S2) each end in
 * one refusal on the listener and no link; the certificates are made by
 * the project's own PKI code in a temporary directory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "link_codec.h"
#include "pki.h"
#include "transport.h"
#include "wire.h"

#include <errno.h>
#include <arpa/inet.h>
#include <ftw.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <inttypes.h>
#include <sys/stat.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#define REC_TYPE WIRE_REC_NOTE

static char pki_dir[64];

struct pair {
	struct tp_ctx *sctx, *cctx;
	struct tp_listener *lis;
	struct tp_link *srv, *cli;
};

static void cfg_insecure(struct tp_config *c, const char *me,
			 const char *peer)
{
	tp_config_init(c);
	c->security = TP_SEC_INSECURE;
	snprintf(c->local_name, sizeof(c->local_name), "%s", me);
	snprintf(c->peer_name, sizeof(c->peer_name), "%s", peer);
}

static char paths[16][160];

static const char *pp(int i, const char *fmt, const char *name)
{
	snprintf(paths[i], sizeof(paths[i]), fmt, pki_dir, name);
	return paths[i];
}

static void cfg_cert(struct tp_config *c, const char *me, const char *peer,
		     const char *ca, int slot)
{
	tp_config_init(c);
	c->security = TP_SEC_CERT;
	snprintf(c->local_name, sizeof(c->local_name), "%s", me);
	snprintf(c->peer_name, sizeof(c->peer_name), "%s", peer);
	c->ca_file = pp(slot, "%s/%s.crt", ca);
	c->cert_file = pp(slot + 1, "%s/%s.crt", me);
	c->key_file = pp(slot + 2, "%s/%s.key", me);
}

static void cfg_psk(struct tp_config *c, const char *me, const char *peer,
		    uint8_t fill)
{
	tp_config_init(c);
	c->security = TP_SEC_PSK;
	snprintf(c->local_name, sizeof(c->local_name), "%s", me);
	snprintf(c->peer_name, sizeof(c->peer_name), "%s", peer);
	memset(c->psk, fill, 32);
	c->psk_len = 32;
	snprintf(c->psk_identity, sizeof(c->psk_identity), "pair-1");
}

static void pair_listen(struct pair *p, const struct tp_config *scfg)
{
	char err[TP_ERR_MAX];

	memset(p, 0, sizeof(*p));
	assert_int_equal(tp_ctx_new(&p->sctx), 0);
	assert_int_equal(tp_ctx_new(&p->cctx), 0);
	assert_int_equal(tp_listen(p->sctx, scfg, "127.0.0.1:0", &p->lis, err,
				   sizeof(err)), 0);
}

static int pair_connect(struct pair *p, const struct tp_config *ccfg,
			char *err, size_t errlen)
{
	char addr[32];

	snprintf(addr, sizeof(addr), "127.0.0.1:%u", tp_listener_port(p->lis));
	return tp_connect(p->cctx, ccfg, addr, &p->cli, err, errlen);
}

static void pair_up(struct pair *p, const struct tp_config *scfg,
		    const struct tp_config *ccfg)
{
	char err[TP_ERR_MAX] = "";
	int rc;

	pair_listen(p, scfg);
	rc = pair_connect(p, ccfg, err, sizeof(err));
	if (rc)
		fail_msg("connect: %d: %s", rc, err);
	assert_int_equal(tp_accept(p->lis, 5000, &p->srv), 0);
}

static void pair_down(struct pair *p)
{
	tp_link_free(p->cli);
	tp_link_free(p->srv);
	tp_listener_free(p->lis);
	tp_ctx_free(p->cctx);
	tp_ctx_free(p->sctx);
}

/* A body whose bytes are a function of (chan, n). */
static void fill_body(uint8_t *b, size_t len, unsigned chan, uint64_t n)
{
	uint64_t x = n * 0x9e3779b97f4a7c15ull + chan;
	size_t i;

	for (i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		b[i] = (uint8_t)x;
	}
	if (len >= 12) {
		memcpy(b, &n, 8);
		memcpy(b + 8, &chan, 4);
	}
}

static bool body_ok(const struct tp_msg *m, uint64_t n)
{
	uint8_t *want = malloc(m->len ? m->len : 1);
	bool ok;

	fill_body(want, m->len, m->chan, n);
	ok = memcmp(want, m->body, m->len) == 0;
	free(want);
	return ok;
}

/* ---- basics ------------------------------------------------------------- */

static void test_insecure_roundtrip(void **state)
{
	struct tp_config s, c;
	struct pair p;
	struct tp_msg *m;
	uint8_t body[100];

	(void)state;
	cfg_insecure(&s, "hostb", "hosta");
	cfg_insecure(&c, "hosta", "hostb");
	pair_up(&p, &s, &c);
	assert_string_equal(tp_link_peer(p.srv), "hosta");
	assert_string_equal(tp_link_peer(p.cli), "hostb");
	fill_body(body, sizeof(body), 0, 1);
	assert_int_equal(tp_send(p.cli, 0, REC_TYPE, 0, body, sizeof(body)), 0);
	assert_int_equal(tp_recv(p.srv, 5000, &m), 0);
	assert_int_equal(m->len, sizeof(body));
	assert_int_equal(m->chan, 0);
	assert_true(body_ok(m, 1));
	tp_msg_free(m);
	/* and back */
	assert_int_equal(tp_send(p.srv, 0, REC_TYPE, 0, "", 0), 0);
	assert_int_equal(tp_recv(p.cli, 5000, &m), 0);
	assert_int_equal(m->len, 0);
	tp_msg_free(m);
	assert_int_equal(tp_recv(p.cli, 50, &m), -ETIMEDOUT);
	pair_down(&p);
}

static void test_features_intersect(void **state)
{
	struct tp_config s, c;
	struct pair p;
	uint8_t body[16] = { 0 };

	(void)state;
	cfg_insecure(&s, "hostb", "hosta");
	cfg_insecure(&c, "hosta", "hostb");
	s.features = 0; /* this listener does not take page codecs */
	pair_up(&p, &s, &c);
	assert_int_equal(tp_link_features(p.cli), 0);
	assert_int_equal(tp_link_features(p.srv), 0);
	assert_int_equal(tp_send(p.cli, 0, WIRE_REC_PAGE_CODED, 0, body,
				 sizeof(body)), -EPROTO);
	pair_down(&p);
}

static void test_bad_sends(void **state)
{
	struct tp_config s, c;
	struct pair p;

	(void)state;
	cfg_insecure(&s, "hostb", "hosta");
	cfg_insecure(&c, "hosta", "hostb");
	c.nr_bulk = 1;
	pair_up(&p, &s, &c);
	assert_int_equal(tp_send(p.cli, 2, REC_TYPE, 0, "x", 1), -EINVAL);
	assert_int_equal(tp_send(p.cli, 0, 0x77, 0, "x", 1), -EINVAL);
	assert_int_equal(tp_send(p.cli, 0, WIRE_REC_LINK_HELLO, 0, "x", 1),
			 -EINVAL);
	assert_true(tp_link_features(p.cli) & TP_FEAT_PAGE_CODECS);
	assert_int_equal(tp_send(p.cli, 0, REC_TYPE, 5, "x", 1), 0);
	assert_int_equal(tp_send(p.cli, 0, REC_TYPE, 4, "x", 1), -EINVAL);
	pair_down(&p);
}

/* ---- ordering and exactly-once under load -------------------------------- */

struct sender {
	struct tp_link *link;
	unsigned chan;
	uint64_t first, count;
	size_t size;
	int rc;
};

static void *sender_main(void *arg)
{
	struct sender *s = arg;
	uint8_t *b = malloc(s->size);
	uint64_t n;

	for (n = s->first; n < s->first + s->count && !s->rc; n++) {
		fill_body(b, s->size, s->chan, n);
		s->rc = tp_send(s->link, s->chan, REC_TYPE, n / 64, b, s->size);
	}
	free(b);
	return NULL;
}

static void run_load(const struct tp_config *s, const struct tp_config *c,
		     unsigned nbulk, uint64_t per_chan, size_t size)
{
	struct tp_config cc = *c;
	struct sender snd[1 + TP_MAX_BULK];
	pthread_t th[1 + TP_MAX_BULK];
	uint64_t next[1 + TP_MAX_BULK] = { 0 }, got = 0;
	struct tp_stats st;
	struct pair p;
	struct tp_msg *m;
	unsigned i;

	cc.nr_bulk = nbulk;
	pair_up(&p, s, &cc);
	assert_int_equal(tp_link_nr_bulk(p.srv), nbulk);
	for (i = 0; i <= nbulk; i++) {
		snd[i] = (struct sender){ p.cli, i, 0, per_chan,
					  i ? size : 64, 0 };
		pthread_create(&th[i], NULL, sender_main, &snd[i]);
	}
	while (got < per_chan * (1 + nbulk)) {
		assert_int_equal(tp_recv(p.srv, 10000, &m), 0);
		assert_true(m->chan <= nbulk);
		/* per channel: in order, each exactly once, intact */
		assert_int_equal(m->len, m->chan ? size : 64);
		if (!body_ok(m, next[m->chan]))
			fail_msg("chan %u: record %" PRIu64 " wrong or out of "
				 "order", m->chan, next[m->chan]);
		assert_int_equal(m->epoch, next[m->chan] / 64);
		next[m->chan]++;
		got++;
		tp_msg_free(m);
	}
	for (i = 0; i <= nbulk; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(snd[i].rc, 0);
	}
	assert_int_equal(tp_recv(p.srv, 50, &m), -ETIMEDOUT);
	tp_link_stats(p.srv, &st);
	assert_true(st.records_recv >= got); /* plus rtt probes */
	pair_down(&p);
}

static void test_load_insecure(void **state)
{
	struct tp_config s, c;

	(void)state;
	cfg_insecure(&s, "hostb", "hosta");
	cfg_insecure(&c, "hosta", "hostb");
	run_load(&s, &c, 4, 2000, 20000);
}

static void test_load_tls_cert(void **state)
{
	struct tp_config s, c;

	(void)state;
	cfg_cert(&s, "hostb", "hosta", "ca", 0);
	cfg_cert(&c, "hosta", "hostb", "ca", 3);
	run_load(&s, &c, 3, 1000, 65536);
}

static void test_load_tls_psk(void **state)
{
	struct tp_config s, c;

	(void)state;
	cfg_psk(&s, "hostb", "hosta", 0x5a);
	cfg_psk(&c, "hosta", "hostb", 0x5a);
	run_load(&s, &c, 2, 1000, 30000);
}

/* ---- SYNC ordering --------------------------------------------------------- */

static void test_sync_after_bulk(void **state)
{
	struct tp_config s, c;
	struct pair p;
	struct tp_msg *m;
	uint8_t body[8192];
	unsigned seen[4] = { 0 }, e, i, k;
	unsigned per_epoch_seen[21][4] = { { 0 } };

	(void)state;
	cfg_insecure(&s, "hostb", "hosta");
	cfg_insecure(&c, "hosta", "hostb");
	c.nr_bulk = 3;
	pair_up(&p, &s, &c);
	for (e = 1; e <= 20; e++) {
		for (i = 1; i <= 3; i++)
			for (k = 0; k < e; k++) {
				fill_body(body, sizeof(body), i, e);
				assert_int_equal(tp_send(p.cli, i, REC_TYPE, e,
							 body, sizeof(body)), 0);
			}
		assert_int_equal(tp_sync(p.cli, e), 0);
	}
	/* Records of later epochs may overtake a SYNC; none of its own
	 * epoch may come after it. */
	(void)seen;
	e = 1;
	while (e <= 20) {
		assert_int_equal(tp_recv(p.srv, 5000, &m), 0);
		if (m->type == TP_MSG_SYNC) {
			assert_int_equal(m->epoch, e);
			for (i = 1; i <= 3; i++)
				assert_int_equal(per_epoch_seen[e][i], e);
			e++;
		} else {
			assert_true(m->epoch >= e && m->epoch <= 20);
			per_epoch_seen[m->epoch][m->chan]++;
		}
		tp_msg_free(m);
	}
	(void)k;
	pair_down(&p);
}

/* ---- back-pressure ------------------------------------------------------------ */

static void test_backpressure(void **state)
{
	struct tp_config s, c;
	struct sender snd;
	struct tp_stats st;
	struct pair p;
	struct tp_msg *m;
	pthread_t th;
	uint64_t n;

	(void)state;
	cfg_insecure(&s, "hostb", "hosta");
	cfg_insecure(&c, "hosta", "hostb");
	c.nr_bulk = 1;
	c.send_limit = 1 << 20;
	s.recv_limit = 1 << 20;
	pair_up(&p, &s, &c);
	snd = (struct sender){ p.cli, 1, 0, 2000, 65536, 0 };
	pthread_create(&th, NULL, sender_main, &snd);
	/* Nobody reads for a while: the sender must stop, not buffer 128 MB. */
	usleep(300000);
	tp_link_stats(p.cli, &st);
	assert_true(st.chan[1].send_queued <= (1u << 20) + 65536 + 64);
	tp_link_stats(p.srv, &st);
	assert_true(st.chan[1].recv_queued <= (1u << 20) + 65536 + 64);
	assert_true(st.chan[1].recv_paused >= 1);
	for (n = 0; n < 2000; n++) {
		assert_int_equal(tp_recv(p.srv, 10000, &m), 0);
		assert_true(body_ok(m, n));
		tp_msg_free(m);
	}
	pthread_join(th, NULL);
	assert_int_equal(snd.rc, 0);
	tp_link_stats(p.cli, &st);
	assert_true(st.chan[1].send_blocked >= 1);
	pair_down(&p);
}

static void test_send_nb_eagain(void **state)
{
	struct tp_config s, c;
	struct pair p;
	uint8_t *b = calloc(1, 1 << 20);
	int rc = 0, i;

	(void)state;
	cfg_insecure(&s, "hostb", "hosta");
	cfg_insecure(&c, "hosta", "hostb");
	c.send_limit = 1 << 20;
	s.recv_limit = 1 << 20;
	pair_up(&p, &s, &c);
	for (i = 0; i < 1000 && rc == 0; i++)
		rc = tp_send_nb(p.cli, 0, REC_TYPE, 0, b, 1 << 20);
	assert_int_equal(rc, -EAGAIN);
	free(b);
	pair_down(&p);
}


/* A consumer slower than the ping interval must not fail the link. */
static void test_stalled_consumer_survives_pings(void **state)
{
	struct tp_config s, c;
	struct pair p;
	struct tp_msg *m;
	uint8_t *b = calloc(1, 1 << 20);
	int i;

	(void)state;
	cfg_insecure(&s, "hostb", "hosta");
	cfg_insecure(&c, "hosta", "hostb");
	s.ping_interval_ms = c.ping_interval_ms = 10;
	s.recv_limit = 1 << 20;
	pair_up(&p, &s, &c);
	for (i = 0; i < 8; i++) /* control fills past the limit: paused */
		assert_int_equal(tp_send(p.cli, 0, REC_TYPE, 0, b, 1 << 20), 0);
	usleep(300000); /* 30 ping intervals with control not read */
	for (i = 0; i < 8; i++) {
		assert_int_equal(tp_recv(p.srv, 5000, &m), 0);
		tp_msg_free(m);
	}
	assert_int_equal(tp_link_error(p.cli, NULL, 0), 0);
	assert_int_equal(tp_link_error(p.srv, NULL, 0), 0);
	free(b);
	pair_down(&p);
}

/* An orderly close delivers every bulk record sent before it. */
static void test_close_delivers_bulk(void **state)
{
	struct tp_config s, c;
	struct pair p;
	struct tp_msg *m;
	uint8_t body[16384];
	uint64_t n, got[3] = { 0 };
	int rc;

	(void)state;
	cfg_insecure(&s, "hostb", "hosta");
	cfg_insecure(&c, "hosta", "hostb");
	c.nr_bulk = 2;
	pair_up(&p, &s, &c);
	for (n = 0; n < 1000; n++) {
		fill_body(body, sizeof(body), 1 + n % 2, n / 2);
		assert_int_equal(tp_send(p.cli, 1 + n % 2, REC_TYPE, 0, body,
					 sizeof(body)), 0);
	}
	tp_link_free(p.cli);
	p.cli = NULL;
	while ((rc = tp_recv(p.srv, 5000, &m)) == 0) {
		assert_true(body_ok(m, got[m->chan]));
		got[m->chan]++;
		tp_msg_free(m);
		usleep(200); /* a slow consumer */
	}
	assert_int_equal(rc, -ESHUTDOWN);
	assert_int_equal(got[1], 500);
	assert_int_equal(got[2], 500);
	pair_down(&p);
}

/* Two SYNCs of the same epoch: the second after everything between. */
static void test_sync_same_epoch(void **state)
{
	struct tp_config s, c;
	struct pair p;
	struct tp_msg *m;
	uint8_t body[4096] = { 0 };
	int i, seen = 0, syncs = 0;

	(void)state;
	cfg_insecure(&s, "hostb", "hosta");
	cfg_insecure(&c, "hosta", "hostb");
	c.nr_bulk = 2;
	pair_up(&p, &s, &c);
	assert_int_equal(tp_sync(p.cli, 5), 0);
	for (i = 0; i < 100; i++)
		assert_int_equal(tp_send(p.cli, 1 + i % 2, REC_TYPE, 5, body,
					 sizeof(body)), 0);
	assert_int_equal(tp_sync(p.cli, 5), 0);
	while (syncs < 2) {
		assert_int_equal(tp_recv(p.srv, 5000, &m), 0);
		if (m->type == TP_MSG_SYNC) {
			syncs++;
			if (syncs == 2)
				assert_int_equal(seen, 100);
		} else {
			seen++;
		}
		tp_msg_free(m);
	}
	pair_down(&p);
}

static void test_ctx_free_refuses_with_links(void **state)
{
	struct tp_config s;
	struct tp_ctx *ctx;
	struct tp_listener *l;
	char err[TP_ERR_MAX];

	(void)state;
	cfg_insecure(&s, "hostb", "hosta");
	assert_int_equal(tp_ctx_new(&ctx), 0);
	assert_int_equal(tp_listen(ctx, &s, "127.0.0.1:0", &l, err,
				   sizeof(err)), 0);
	tp_ctx_free(ctx); /* refused: the listener is open */
	tp_listener_free(l);
	tp_ctx_free(ctx);
}

/* ---- failures reported to the user ------------------------------------------------ */

static void test_peer_close_reported(void **state)
{
	struct tp_config s, c;
	struct pair p;
	struct tp_msg *m;
	char err[TP_ERR_MAX];

	(void)state;
	cfg_insecure(&s, "hostb", "hosta");
	cfg_insecure(&c, "hosta", "hostb");
	pair_up(&p, &s, &c);
	assert_int_equal(tp_send(p.cli, 0, REC_TYPE, 0, "last", 4), 0);
	tp_link_free(p.cli);
	p.cli = NULL;
	/* the verified record first, then the error */
	assert_int_equal(tp_recv(p.srv, 5000, &m), 0);
	assert_int_equal(m->len, 4);
	tp_msg_free(m);
	assert_int_equal(tp_recv(p.srv, 5000, &m), -ESHUTDOWN);
	assert_int_equal(tp_link_error(p.srv, err, sizeof(err)), -ESHUTDOWN);
	assert_non_null(strstr(err, "peer closed"));
	assert_int_equal(tp_send(p.srv, 0, REC_TYPE, 0, "x", 1), -ESHUTDOWN);
	pair_down(&p);
}

static void test_abort_reported(void **state)
{
	struct tp_config s, c;
	struct pair p;
	struct tp_msg *m;

	(void)state;
	cfg_insecure(&s, "hostb", "hosta");
	cfg_insecure(&c, "hosta", "hostb");
	c.nr_bulk = 2;
	pair_up(&p, &s, &c);
	tp_link_abort(p.cli);
	assert_int_equal(tp_recv(p.cli, 5000, &m), -ECONNABORTED);
	/* the peer sees the cut: no BYE was sent */
	assert_int_equal(tp_recv(p.srv, 5000, &m), -ECONNRESET);
	pair_down(&p);
}

static void test_rtt_measured(void **state)
{
	struct tp_config s, c;
	struct tp_stats st;
	struct pair p;
	int i;

	(void)state;
	cfg_insecure(&s, "hostb", "hosta");
	cfg_insecure(&c, "hosta", "hostb");
	c.ping_interval_ms = 20;
	pair_up(&p, &s, &c);
	for (i = 0; i < 500; i++) {
		tp_link_stats(p.cli, &st);
		if (st.rtt_us > 0)
			break;
		usleep(10000);
	}
	assert_true(st.rtt_us > 0);
	assert_true(st.pings >= 1);
	pair_down(&p);
}

/* ---- security refusals (S1, S2) ------------------------------------------------------ */

/* Connects with ccfg to a listener with scfg; both must refuse. */
static void expect_refused(const struct tp_config *scfg,
			   const struct tp_config *ccfg)
{
	struct pair p;
	struct tp_link *l = NULL;
	char err[TP_ERR_MAX] = "";
	int rc, i;

	pair_listen(&p, scfg);
	rc = pair_connect(&p, ccfg, err, sizeof(err));
	if (rc == 0) {
		/* TLS 1.3 clients finish before the server has checked their
		 * certificate; the refusal then arrives as the link fails. */
		struct tp_msg *m;

		rc = tp_recv(p.cli, 5000, &m);
		assert_true(rc < 0);
	}
	for (i = 0; i < 500 && tp_listener_refused(p.lis) == 0; i++)
		usleep(10000);
	assert_int_equal(tp_listener_refused(p.lis), 1);
	assert_int_equal(tp_accept(p.lis, 100, &l), -ETIMEDOUT);
	pair_down(&p);
}

static void test_refuse_plaintext_client(void **state)
{
	struct tp_config s, c;

	(void)state;
	cfg_cert(&s, "hostb", "hosta", "ca", 0);
	cfg_insecure(&c, "hosta", "hostb");
	expect_refused(&s, &c);
}

static void test_refuse_wrong_ca(void **state)
{
	struct tp_config s, c;

	(void)state;
	cfg_cert(&s, "hostb", "hosta", "ca", 0);
	cfg_cert(&c, "rogue", "hostb", "ca", 3); /* rogue: by other CA */
	snprintf(c.peer_name, sizeof(c.peer_name), "hostb");
	c.cert_file = pp(4, "%s/%s.crt", "rogue");
	c.key_file = pp(5, "%s/%s.key", "rogue");
	snprintf(s.peer_name, sizeof(s.peer_name), "rogue");
	expect_refused(&s, &c);
}

static void test_refuse_expired(void **state)
{
	struct tp_config s, c;

	(void)state;
	cfg_cert(&s, "hostb", "old", "ca", 0);
	cfg_cert(&c, "old", "hostb", "ca", 3);
	expect_refused(&s, &c);
}

static void test_refuse_wrong_name(void **state)
{
	struct tp_config s, c;

	(void)state;
	/* hostc has a valid cert from the right CA, but hostb expects hosta */
	cfg_cert(&s, "hostb", "hosta", "ca", 0);
	cfg_cert(&c, "hostc", "hostb", "ca", 3);
	expect_refused(&s, &c);
}

static void test_refuse_psk_mismatch(void **state)
{
	struct tp_config s, c;

	(void)state;
	cfg_psk(&s, "hostb", "hosta", 0x5a);
	cfg_psk(&c, "hosta", "hostb", 0x5b);
	expect_refused(&s, &c);
}

static void test_refuse_tls_client_on_plain_port(void **state)
{
	struct tp_config s, c;

	(void)state;
	cfg_insecure(&s, "hostb", "hosta");
	cfg_psk(&c, "hosta", "hostb", 0x5a);
	expect_refused(&s, &c);
}

static void test_refuse_stale_hello(void **state)
{
	struct tp_config s, c;

	(void)state;
	cfg_insecure(&s, "hostb", "hosta");
	cfg_insecure(&c, "hosta", "hostb");
	s.min_epoch = 100;
	c.min_epoch = 99;
	expect_refused(&s, &c);
}

static void test_ctx_new_free(void **state)
{
	struct tp_ctx *ctx;
	int i;

	(void)state;
	for (i = 0; i < 50; i++) {
		assert_int_equal(tp_ctx_new(&ctx), 0);
		tp_ctx_free(ctx); /* at once: must not hang */
	}
}

static void test_config_errors(void **state)
{
	struct tp_config c;
	char err[TP_ERR_MAX];

	(void)state;
	cfg_cert(&c, "hosta", "hostb", "ca", 0);
	c.ca_file = NULL;
	assert_int_equal(tp_config_check(&c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "ca_file"));
	cfg_insecure(&c, "has space", "hostb");
	assert_int_equal(tp_config_check(&c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "has space"));
	cfg_psk(&c, "hosta", "hostb", 1);
	assert_int_equal(tp_config_set_psk_hex(&c, "0x12zz", err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(tp_config_set_psk_hex(&c, "00112233445566778899aabb"
					       "ccddeeff", err, sizeof(err)), 0);
	assert_int_equal(c.psk_len, 16);
	cfg_insecure(&c, "hosta", "hostb");
	c.nr_bulk = TP_MAX_BULK + 1;
	assert_int_equal(tp_config_check(&c, err, sizeof(err)), -EINVAL);
}

static void test_bad_key_file(void **state)
{
	struct tp_config s;
	struct tp_ctx *ctx;
	struct tp_listener *l;
	char err[TP_ERR_MAX];

	(void)state;
	cfg_cert(&s, "hostb", "hosta", "ca", 0);
	s.key_file = pp(2, "%s/%s.key", "hosta"); /* not hostb's key */
	assert_int_equal(tp_ctx_new(&ctx), 0);
	assert_int_equal(tp_listen(ctx, &s, "127.0.0.1:0", &l, err,
				   sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "hosta.key"));
	tp_ctx_free(ctx);
}


/* ---- a hand-written peer: malformed input on a live link (S3) ----------- */

struct raw {
	int fd;
	uint64_t seed;
	uint32_t seq;
};

static void raw_write(struct raw *r, const void *p, size_t n)
{
	assert_int_equal(write(r->fd, p, n), (ssize_t)n);
}

/* One record: header fields as given (length may lie), then body bytes. */
static void raw_record(struct raw *r, uint32_t type, uint64_t epoch,
		       uint32_t length, const void *body, size_t body_len,
		       uint32_t seq)
{
	struct wire_record_header h = { .type = type, .epoch = epoch,
					.length = length, .seq = seq };
	uint8_t hdr[WIRE_RECORD_HEADER_SIZE];
	uint8_t *padded = calloc(1, wire_padded_length((uint32_t)body_len) + 8);

	memcpy(padded, body, body_len);
	assert_int_equal(length, body_len);
	wire_record_seal(hdr, &h, padded, r->seed);
	raw_write(r, hdr, sizeof(hdr));
	raw_write(r, padded, wire_padded_length((uint32_t)body_len));
	free(padded);
}

static size_t raw_read_full(int fd, uint8_t *p, size_t n)
{
	size_t got = 0;
	ssize_t k;

	while (got < n && (k = read(fd, p + got, n - got)) > 0)
		got += (size_t)k;
	return got;
}

/* Connects and runs the handshake by hand; proto range as given. */
static int raw_connect(struct raw *r, uint16_t port, uint16_t pmin,
		       uint16_t pmax)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons(port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct link_hello h = { .proto_min = pmin, .proto_max = pmax,
				.features = TP_FEAT_PAGE_CODECS };
	struct link_welcome w;
	struct wire_buf b;
	uint8_t in[WIRE_STREAM_HEADER_SIZE + WIRE_RECORD_HEADER_SIZE + 128];
	struct wire_record_header rh;

	memset(r, 0, sizeof(*r));
	r->fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(connect(r->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	snprintf(h.name, sizeof(h.name), "hosta");
	wire_buf_init(&b);
	wire_stream_header_put(&b, WIRE_STREAM_LINK, 0);
	raw_write(r, b.data, b.len);
	wire_buf_reset(&b);
	link_hello_put(&b, &h);
	raw_record(r, WIRE_REC_LINK_HELLO, 0, (uint32_t)b.len, b.data, b.len, 0);
	wire_buf_fini(&b);
	if (raw_read_full(r->fd, in, WIRE_STREAM_HEADER_SIZE +
			  WIRE_RECORD_HEADER_SIZE) !=
	    WIRE_STREAM_HEADER_SIZE + WIRE_RECORD_HEADER_SIZE)
		return -ECONNRESET;
	wire_record_header_decode(in + WIRE_STREAM_HEADER_SIZE, WIRE_MAX_BODY,
				  &rh, NULL, 0);
	assert_true(wire_padded_length(rh.length) <= 128);
	raw_read_full(r->fd, in, wire_padded_length(rh.length));
	assert_int_equal(link_welcome_decode(in, rh.length, &w, NULL, 0), 0);
	r->seed = link_session_seed(w.session);
	r->seq = 1;
	return 0;
}

/* A listener, a raw peer that sends `bad`, and the error the link gets. */
static int raw_case(void (*bad)(struct raw *r), char *err, size_t errlen)
{
	struct tp_config s;
	struct pair p;
	struct raw r;
	struct tp_msg *m;
	int rc;

	cfg_insecure(&s, "hostb", "hosta");
	pair_listen(&p, &s);
	assert_int_equal(raw_connect(&r, tp_listener_port(p.lis), 1, 1), 0);
	assert_int_equal(tp_accept(p.lis, 5000, &p.srv), 0);
	bad(&r);
	while ((rc = tp_recv(p.srv, 5000, &m)) == 0)
		tp_msg_free(m); /* records before the bad one are fine */
	tp_link_error(p.srv, err, errlen);
	close(r.fd);
	pair_down(&p);
	return rc;
}

/* A bare header; its checksum is never looked at, as it is refused first. */
static void raw_header(struct raw *r, uint32_t type, uint32_t length)
{
	struct wire_buf b;

	wire_buf_init(&b);
	wire_put_be32(&b, type);
	wire_put_be32(&b, 0);
	wire_put_be64(&b, 0);
	wire_put_be32(&b, length);
	wire_put_be32(&b, r->seq);
	wire_put_be64(&b, 0);
	raw_write(r, b.data, b.len);
	wire_buf_fini(&b);
}

static void send_oversize(struct raw *r)
{
	raw_header(r, WIRE_REC_NOTE, WIRE_MAX_BODY + 1);
}

static void send_unknown_mandatory(struct raw *r)
{
	raw_record(r, 0x77, 0, 8, "12345678", 8, 1);
}

static void send_duplicate(struct raw *r)
{
	raw_record(r, WIRE_REC_NOTE, 0, 2, "ok", 2, 1);
	raw_record(r, WIRE_REC_NOTE, 0, 2, "ok", 2, 1); /* replayed */
}

static void send_stale(struct raw *r)
{
	raw_record(r, WIRE_REC_NOTE, 5, 2, "ok", 2, 1);
	raw_record(r, WIRE_REC_NOTE, 4, 2, "ok", 2, 2);
}

static void send_truncated(struct raw *r)
{
	raw_header(r, WIRE_REC_NOTE, 4096);
	raw_write(r, "only part of it", 15);
	shutdown(r->fd, SHUT_WR);
}

static void send_unseeded(struct raw *r)
{
	r->seed = 0; /* as if from another session */
	raw_record(r, WIRE_REC_NOTE, 0, 2, "ok", 2, 1);
}

static void send_handshake_again(struct raw *r)
{
	raw_record(r, WIRE_REC_LINK_JOINED, 0, 8, "\0\0\0\1\0\0\0\0", 8, 1);
}

static void test_raw_refusals(void **state)
{
	char err[TP_ERR_MAX];

	(void)state;
	assert_int_equal(raw_case(send_oversize, err, sizeof(err)), -E2BIG);
	assert_non_null(strstr(err, "length 4202505 > max 4202504"));
	assert_int_equal(raw_case(send_unknown_mandatory, err, sizeof(err)),
			 -EPROTO);
	assert_non_null(strstr(err, "unknown mandatory record type 0x00000077"));
	assert_int_equal(raw_case(send_duplicate, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "sequence 1, expected 2"));
	assert_int_equal(raw_case(send_stale, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "stale epoch 4 < 5"));
	assert_int_equal(raw_case(send_truncated, err, sizeof(err)),
			 -ECONNRESET);
	assert_int_equal(raw_case(send_unseeded, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "checksum"));
	assert_int_equal(raw_case(send_handshake_again, err, sizeof(err)),
			 -EPROTO);
}

static void test_raw_version_skew(void **state)
{
	struct tp_config s;
	struct pair p;
	struct raw r;
	struct tp_link *l;
	int i;

	(void)state;
	cfg_insecure(&s, "hostb", "hosta");
	pair_listen(&p, &s);
	/* a peer from the future: protocol 2..3 only */
	assert_int_equal(raw_connect(&r, tp_listener_port(p.lis), 2, 3),
			 -ECONNRESET);
	close(r.fd);
	for (i = 0; i < 500 && tp_listener_refused(p.lis) == 0; i++)
		usleep(10000);
	assert_int_equal(tp_listener_refused(p.lis), 1);
	assert_int_equal(tp_accept(p.lis, 100, &l), -ETIMEDOUT);
	pair_down(&p);
}

static void test_negotiate(void **state)
{
	struct link_hello h = { .proto_min = 1, .proto_max = 9,
				.features = 0x3ULL << 32 };
	uint64_t f;
	uint16_t v;
	char err[TP_ERR_MAX];

	(void)state;
	assert_int_equal(link_negotiate(&h, 1ULL << 32, &v, &f, err,
					sizeof(err)), 0);
	assert_int_equal(v, TP_PROTO_MAX);
	assert_int_equal(f, 1ULL << 32);
	h.features |= 1; /* a mandatory feature this host lacks */
	assert_int_equal(link_negotiate(&h, 1ULL << 32, &v, &f, err,
					sizeof(err)), -EPROTONOSUPPORT);
	assert_non_null(strstr(err, "mandatory"));
}

static void test_hello_truncations(void **state)
{
	struct link_hello h = { .proto_min = 1, .proto_max = 1, .nr_bulk = 3,
				.epoch = 9 }, out;
	struct wire_buf b;
	size_t n;

	(void)state;
	snprintf(h.name, sizeof(h.name), "host-a");
	wire_buf_init(&b);
	assert_int_equal(link_hello_put(&b, &h), 0);
	assert_int_equal(link_hello_decode(b.data, b.len, &out, NULL, 0), 0);
	assert_string_equal(out.name, "host-a");
	for (n = 0; n < LINK_HELLO_FIXED + 1; n++)
		assert_int_equal(link_hello_decode(b.data, n, &out, NULL, 0),
				 -EBADMSG);
	b.data[LINK_HELLO_FIXED] = ' '; /* a space in the name */
	assert_int_equal(link_hello_decode(b.data, b.len, &out, NULL, 0),
			 -EBADMSG);
	wire_buf_fini(&b);
}

/* ---- fixture: a CA, hosts, an expired host, a rogue CA and host ---------------- */

static int rm_cb(const char *path, const struct stat *sb, int flag,
		 struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int make_pki(void)
{
	struct pki_host_opts old = { .start_days = -10, .days = 1 };
	struct pki_ca_opts ca = { .name = "tandem-test-ca" };
	struct pki_ca_opts rca = { .name = "rogue-ca" };
	char err[PKI_ERR_MAX], dir2[96];

	snprintf(pki_dir, sizeof(pki_dir), "/tmp/tandem-link-XXXXXX");
	if (!mkdtemp(pki_dir))
		return -1;
	snprintf(dir2, sizeof(dir2), "%s/rogue-ca", pki_dir);
	if (pki_ca_create(pki_dir, &ca, NULL, err, sizeof(err)) ||
	    pki_host_create(pki_dir, "hosta", NULL, NULL, err, sizeof(err)) ||
	    pki_host_create(pki_dir, "hostb", NULL, NULL, err, sizeof(err)) ||
	    pki_host_create(pki_dir, "hostc", NULL, NULL, err, sizeof(err)) ||
	    pki_host_create(pki_dir, "old", &old, NULL, err, sizeof(err)) ||
	    pki_ca_create(dir2, &rca, NULL, err, sizeof(err)) ||
	    pki_host_create(dir2, "rogue", NULL, NULL, err, sizeof(err))) {
		fprintf(stderr, "test_link: %s\n", err);
		return -1;
	}
	/* the rogue host's files next to the others' */
	return (rename(pp(0, "%s/rogue-ca/%s.crt", "rogue"),
		       pp(1, "%s/%s.crt", "rogue")) ||
		rename(pp(0, "%s/rogue-ca/%s.key", "rogue"),
		       pp(1, "%s/%s.key", "rogue"))) ? -1 : 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ctx_new_free),
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_insecure_roundtrip),
		cmocka_unit_test(test_bad_sends),
		cmocka_unit_test(test_features_intersect),
		cmocka_unit_test(test_load_insecure),
		cmocka_unit_test(test_load_tls_cert),
		cmocka_unit_test(test_load_tls_psk),
		cmocka_unit_test(test_sync_after_bulk),
		cmocka_unit_test(test_backpressure),
		cmocka_unit_test(test_send_nb_eagain),
		cmocka_unit_test(test_peer_close_reported),
		cmocka_unit_test(test_stalled_consumer_survives_pings),
		cmocka_unit_test(test_close_delivers_bulk),
		cmocka_unit_test(test_sync_same_epoch),
		cmocka_unit_test(test_ctx_free_refuses_with_links),
		cmocka_unit_test(test_abort_reported),
		cmocka_unit_test(test_rtt_measured),
		cmocka_unit_test(test_refuse_plaintext_client),
		cmocka_unit_test(test_refuse_wrong_ca),
		cmocka_unit_test(test_refuse_expired),
		cmocka_unit_test(test_refuse_wrong_name),
		cmocka_unit_test(test_refuse_psk_mismatch),
		cmocka_unit_test(test_refuse_tls_client_on_plain_port),
		cmocka_unit_test(test_refuse_stale_hello),
		cmocka_unit_test(test_bad_key_file),
		cmocka_unit_test(test_raw_refusals),
		cmocka_unit_test(test_raw_version_skew),
		cmocka_unit_test(test_negotiate),
		cmocka_unit_test(test_hello_truncations),
	};
	int rc;

	if (make_pki()) {
		fprintf(stderr, "test_link: cannot make the test PKI in %s\n",
			pki_dir);
		return 1;
	}
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	nftw(pki_dir, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
	return rc;
}
