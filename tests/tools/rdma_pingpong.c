/*
 * rdma_pingpong.c - drives a link over RDMA through the public transport
 * API only (cfg.kind = TP_KIND_RDMA), for tests/integration/test_rdma.sh.
 *
 *   rdma_pingpong server ADDR [options]
 *       listens (port 0 picks one: it prints "port N" once listening),
 *       accepts one link and echoes every record back on its channel, a
 *       SYNC with a SYNC; exits 0 when the peer ends the link.
 *   rdma_pingpong client ADDR [options]
 *       connects, sends --records records on the control channel and on
 *       each bulk channel (sizes cycling from 0 bytes through the chunk
 *       boundaries, plus one WIRE_MAX_BODY record each with --max), then a
 *       SYNC; checks every echo for channel, order, length and bytes, and
 *       that the SYNC comes back last.  Exits 0 and prints "ok: ..." when
 *       all match, 1 on a mismatch, 2 if the link cannot be had.
 *
 * Options: --bulk N, --records N, --max, --recv-limit BYTES,
 * --security insecure|cert|psk (to check refusals), --name NAME,
 * --peer-name NAME, --timeout-ms MS (per receive; default 20000).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport.h"
#include "wire.h"

#define PP_EPOCH 1
#define PP_SYNC_EPOCH 2

/* Record sizes that cross the control (16 KiB) and bulk (64 KiB) slots. */
static const size_t pp_sizes[] = {
	0, 1, 7, 8, 100, 4096, 16336, 16337, 16344, 65480, 65488, 65489,
	65496, 131040, 131048, 262144, 1u << 20,
};
#define PP_NR_SIZES (sizeof(pp_sizes) / sizeof(pp_sizes[0]))

struct pp_opts {
	const char *mode, *addr;
	unsigned bulk, records;
	int max, timeout_ms;
	size_t recv_limit;
	enum tp_security security;
	const char *name, *peer_name;
};

static int pp_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* One "FAIL: ..." line; returns 1 for the caller to pass on. */
static int pp_fail(const char *fmt, ...)
{
	va_list ap;

	fputs("FAIL: ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	return 1;
}

static uint8_t pp_byte(unsigned chan, unsigned idx, size_t off)
{
	return (uint8_t)(off * 131u + chan * 17u + idx * 29u + (off >> 10));
}

static size_t pp_size(const struct pp_opts *o, unsigned idx)
{
	if (o->max && idx == o->records)
		return WIRE_MAX_BODY;
	return pp_sizes[idx % PP_NR_SIZES];
}

static unsigned pp_per_chan(const struct pp_opts *o)
{
	return o->records + (o->max ? 1 : 0);
}

static int pp_parse(int argc, char **argv, struct pp_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->records = 20;
	o->timeout_ms = 20000;
	o->security = TP_SEC_INSECURE;
	if (argc < 3)
		return -1;
	o->mode = argv[1];
	o->addr = argv[2];
	o->name = strcmp(o->mode, "server") == 0 ? "pp-server" : "pp-client";
	o->peer_name = strcmp(o->mode, "server") == 0 ? "pp-client" : "pp-server";
	for (int i = 3; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--max") == 0) {
			o->max = 1;
			continue;
		}
		if (v == NULL)
			return -1;
		i++;
		if (strcmp(a, "--bulk") == 0)
			o->bulk = (unsigned)strtoul(v, NULL, 0);
		else if (strcmp(a, "--records") == 0)
			o->records = (unsigned)strtoul(v, NULL, 0);
		else if (strcmp(a, "--recv-limit") == 0)
			o->recv_limit = strtoull(v, NULL, 0);
		else if (strcmp(a, "--timeout-ms") == 0)
			o->timeout_ms = atoi(v);
		else if (strcmp(a, "--name") == 0)
			o->name = v;
		else if (strcmp(a, "--peer-name") == 0)
			o->peer_name = v;
		else if (strcmp(a, "--security") == 0)
			o->security = strcmp(v, "cert") == 0 ? TP_SEC_CERT :
				      strcmp(v, "psk") == 0 ? TP_SEC_PSK :
				      TP_SEC_INSECURE;
		else
			return -1;
	}
	return 0;
}

static void pp_config(const struct pp_opts *o, struct tp_config *cfg)
{
	tp_config_init(cfg);
	cfg->kind = TP_KIND_RDMA;
	cfg->security = o->security;
	snprintf(cfg->local_name, sizeof(cfg->local_name), "%s", o->name);
	snprintf(cfg->peer_name, sizeof(cfg->peer_name), "%s", o->peer_name);
	cfg->nr_bulk = o->bulk;
	cfg->recv_limit = o->recv_limit;
	cfg->ping_interval_ms = -1;
	/* complete, so that the RDMA back end's refusal is what is seen */
	cfg->ca_file = "/nonexistent/ca.crt";
	cfg->cert_file = "/nonexistent/host.crt";
	cfg->key_file = "/nonexistent/host.key";
	memset(cfg->psk, 0x5a, 32);
	cfg->psk_len = 32;
	snprintf(cfg->psk_identity, sizeof(cfg->psk_identity), "pp");
}

/* ---- server: echo ---------------------------------------------------------- */

static int pp_echo(struct tp_link *link, const struct pp_opts *o)
{
	char err[TP_ERR_MAX];
	struct tp_msg *m;
	uint64_t n = 0;
	int rc;

	while ((rc = tp_recv(link, o->timeout_ms, &m)) == 0) {
		if (m->type == TP_MSG_SYNC)
			rc = tp_sync(link, m->epoch);
		else
			rc = tp_send(link, m->chan, m->type, m->epoch, m->body,
				     m->len);
		tp_msg_free(m);
		if (rc != 0)
			break;
		n++;
	}
	tp_link_error(link, err, sizeof(err));
	printf("server: echoed %" PRIu64 " records; link ended: %s\n", n,
	       err[0] ? err : strerror(-rc));
	return n > 0 ? 0 : 1;
}

static int pp_server(const struct pp_opts *o, struct tp_ctx *ctx)
{
	struct tp_config cfg;
	struct tp_listener *l = NULL;
	struct tp_link *link = NULL;
	char err[TP_ERR_MAX] = "";
	int rc;

	pp_config(o, &cfg);
	rc = tp_listen(ctx, &cfg, o->addr, &l, err, sizeof(err));
	if (rc != 0) {
		fprintf(stderr, "rdma_pingpong: listen %s: %s\n", o->addr, err);
		return 2;
	}
	printf("port %u\n", tp_listener_port(l));
	fflush(stdout);
	rc = tp_accept(l, o->timeout_ms, &link);
	if (rc != 0) {
		printf("server: no link within %d ms (%" PRIu64 " refused)\n",
		       o->timeout_ms, tp_listener_refused(l));
		tp_listener_free(l);
		return 2;
	}
	rc = pp_echo(link, o);
	tp_link_free(link);
	tp_listener_free(l);
	return rc;
}

/* ---- client: send, then check the echoes ---------------------------------- */

struct pp_sender {
	struct tp_link *link;
	const struct pp_opts *o;
	int rc;
};

static void *pp_send_all(void *arg)
{
	struct pp_sender *s = arg;
	unsigned nchan = 1 + s->o->bulk;
	uint8_t *buf = malloc(WIRE_MAX_BODY);

	if (buf == NULL) {
		s->rc = -ENOMEM;
		return NULL;
	}
	for (unsigned idx = 0; s->rc == 0 && idx < pp_per_chan(s->o); idx++) {
		size_t len = pp_size(s->o, idx);

		for (unsigned ch = 0; s->rc == 0 && ch < nchan; ch++) {
			for (size_t i = 0; i < len; i++)
				buf[i] = pp_byte(ch, idx, i);
			s->rc = tp_send(s->link, ch, WIRE_REC_NOTE, PP_EPOCH,
					buf, len);
		}
	}
	if (s->rc == 0)
		s->rc = tp_sync(s->link, PP_SYNC_EPOCH);
	free(buf);
	return NULL;
}

static int pp_check(const struct pp_opts *o, unsigned *next,
		    const struct tp_msg *m)
{
	unsigned idx;
	size_t len;

	if (m->chan > o->bulk)
		return pp_fail("echo on channel %u of %u", m->chan, o->bulk);
	idx = next[m->chan]++;
	len = pp_size(o, idx);
	if (idx >= pp_per_chan(o) || m->len != len || m->type != WIRE_REC_NOTE)
		return pp_fail("chan %u record %u: type 0x%08x length %u, "
			       "expected length %zu", m->chan, idx, m->type,
			       m->len, len);
	for (size_t i = 0; i < len; i++)
		if (m->body[i] != pp_byte(m->chan, idx, i))
			return pp_fail("chan %u record %u: byte %zu is 0x%02x",
				       m->chan, idx, i, m->body[i]);
	return 0;
}

static int pp_receive(struct tp_link *link, const struct pp_opts *o)
{
	unsigned next[1 + TP_MAX_BULK] = { 0 }, want = (1 + o->bulk) *
					   pp_per_chan(o), got = 0;
	char err[TP_ERR_MAX];
	struct tp_msg *m;
	int rc, bad = 0, synced = 0;

	while (!synced && !bad) {
		rc = tp_recv(link, o->timeout_ms, &m);
		if (rc != 0) {
			tp_link_error(link, err, sizeof(err));
			return pp_fail("after %u of %u echoes: %s", got, want,
				       err[0] ? err : strerror(-rc));
		}
		if (m->type == TP_MSG_SYNC) {
			synced = 1;
		} else {
			bad = pp_check(o, next, m);
			got++;
		}
		tp_msg_free(m);
	}
	if (!bad && got != want)
		return pp_fail("SYNC after %u of %u echoes", got, want);
	return bad;
}

static uint64_t pp_paused(const struct tp_stats *st)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < st->nr_chan && i <= TP_MAX_BULK; i++)
		n += st->chan[i].recv_paused;
	return n;
}

static int pp_client(const struct pp_opts *o, struct tp_ctx *ctx)
{
	struct tp_config cfg;
	struct tp_link *link = NULL;
	struct tp_stats st;
	struct pp_sender s;
	pthread_t t;
	char err[TP_ERR_MAX] = "";
	int rc;

	pp_config(o, &cfg);
	rc = tp_connect(ctx, &cfg, o->addr, &link, err, sizeof(err));
	if (rc != 0) {
		fprintf(stderr, "rdma_pingpong: connect %s: %s\n", o->addr,
			err);
		return 2;
	}
	s = (struct pp_sender){ link, o, 0 };
	pthread_create(&t, NULL, pp_send_all, &s);
	rc = pp_receive(link, o);
	if (rc != 0)
		tp_link_abort(link);
	pthread_join(t, NULL);
	if (rc == 0 && s.rc != 0)
		rc = pp_fail("send: %s", strerror(-s.rc));
	tp_link_stats(link, &st);
	if (rc == 0)
		printf("ok: %u records on %u channels echoed, %" PRIu64
		       " bytes sent, %.1f Mbit/s, reading paused %" PRIu64
		       " times\n", pp_per_chan(o), 1 + o->bulk, st.bytes_sent,
		       st.send_mbps, pp_paused(&st));
	tp_link_free(link);
	return rc;
}

int main(int argc, char **argv)
{
	struct pp_opts o;
	struct tp_ctx *ctx;
	int rc;

	if (pp_parse(argc, argv, &o) != 0 ||
	    (strcmp(o.mode, "server") != 0 && strcmp(o.mode, "client") != 0)) {
		fprintf(stderr, "usage: %s server|client ADDR [--bulk N] "
			"[--records N] [--max] [--recv-limit BYTES] "
			"[--security insecure|cert|psk] [--name NAME] "
			"[--peer-name NAME] [--timeout-ms MS]\n", argv[0]);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	rc = tp_ctx_new(&ctx);
	if (rc != 0) {
		fprintf(stderr, "rdma_pingpong: tp_ctx_new: %s\n",
			strerror(-rc));
		return 2;
	}
	rc = strcmp(o.mode, "server") == 0 ? pp_server(&o, ctx)
					   : pp_client(&o, ctx);
	tp_ctx_free(ctx);
	return rc;
}
