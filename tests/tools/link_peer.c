/*
 * link_peer.c - one end of a transport link, for integration tests.
 *
 *   link_peer listen ADDR  [options]   accept one link, verify what arrives
 *   link_peer connect ADDR [options]   send records, wait for the verdict
 *
 * The sender puts --records records on the control channel (64 bytes
 * each) and on each of --bulk bulk channels (--size bytes each), bodies a
 * function of (channel, index), epochs rising every 64 records, then a
 * SYNC.  The receiver checks every record (channel order, content, epoch),
 * and on the SYNC answers with a NOTE "ok N" and prints
 *   link_peer: verified N records on K channels
 * Either side prints "link_peer: link failed: ..." and exits 3 when the
 * link fails, 4 on a verification error, 2 on bad usage.
 *
 * Options: --name N --peer N; --insecure | --psk HEX [--psk-id ID] |
 * --ca F --cert F --key F; --bulk N; --records N; --size B; --min-epoch E;
 * --slow-us U (receiver: sleep per record); --timeout-ms T.
 */
#include "log.h"
#include "transport.h"
#include "wire.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct opts {
	struct tp_config cfg;
	const char *mode, *addr;
	uint64_t records;
	size_t size;
	unsigned slow_us;
	int timeout_ms;
};

static void usage(const char *bad)
{
	if (bad)
		fprintf(stderr, "link_peer: bad argument \"%s\"\n", bad);
	fprintf(stderr, "usage: link_peer listen|connect ADDR [--name N] "
		"[--peer N] [--insecure | --psk HEX [--psk-id ID] | --ca F "
		"--cert F --key F] [--bulk N] [--records N] [--size B] "
		"[--min-epoch E] [--slow-us U] [--timeout-ms T]\n");
	exit(2);
}

static uint64_t num(const char *s)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || *end || end == s)
		usage(s);
	return v;
}

static void parse(int argc, char **argv, struct opts *o)
{
	char err[TP_ERR_MAX];
	int i;

	if (argc < 3)
		usage(NULL);
	memset(o, 0, sizeof(*o));
	tp_config_init(&o->cfg);
	o->mode = argv[1];
	o->addr = argv[2];
	o->records = 1000;
	o->size = 65536;
	o->timeout_ms = 30000;
	snprintf(o->cfg.psk_identity, sizeof(o->cfg.psk_identity), "tandem");
	for (i = 3; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--insecure")) {
			o->cfg.security = TP_SEC_INSECURE;
			continue;
		}
		if (!v)
			usage(a);
		i++;
		if (!strcmp(a, "--name"))
			snprintf(o->cfg.local_name, TP_NAME_MAX, "%s", v);
		else if (!strcmp(a, "--peer"))
			snprintf(o->cfg.peer_name, TP_NAME_MAX, "%s", v);
		else if (!strcmp(a, "--psk")) {
			o->cfg.security = TP_SEC_PSK;
			if (tp_config_set_psk_hex(&o->cfg, v, err, sizeof(err))) {
				fprintf(stderr, "link_peer: %s\n", err);
				exit(2);
			}
		} else if (!strcmp(a, "--psk-id"))
			snprintf(o->cfg.psk_identity, TP_NAME_MAX, "%s", v);
		else if (!strcmp(a, "--ca"))
			o->cfg.ca_file = v;
		else if (!strcmp(a, "--cert"))
			o->cfg.cert_file = v;
		else if (!strcmp(a, "--key"))
			o->cfg.key_file = v;
		else if (!strcmp(a, "--bulk"))
			o->cfg.nr_bulk = (unsigned)num(v);
		else if (!strcmp(a, "--records"))
			o->records = num(v);
		else if (!strcmp(a, "--size"))
			o->size = num(v);
		else if (!strcmp(a, "--min-epoch"))
			o->cfg.min_epoch = num(v);
		else if (!strcmp(a, "--slow-us"))
			o->slow_us = (unsigned)num(v);
		else if (!strcmp(a, "--timeout-ms"))
			o->timeout_ms = (int)num(v);
		else
			usage(a);
	}
	if (strcmp(o->mode, "listen") && strcmp(o->mode, "connect"))
		usage(o->mode);
	if (o->size < 16 || o->size > WIRE_MAX_BODY)
		usage("--size");
}

static void fill_body(uint8_t *b, size_t len, unsigned chan, uint64_t n)
{
	uint64_t x = n * 0x9e3779b97f4a7c15ull + chan + 1;
	size_t i;

	for (i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		b[i] = (uint8_t)x;
	}
	memcpy(b, &n, 8);
}

static int link_failed(struct tp_link *l, int rc)
{
	char err[TP_ERR_MAX] = "";

	tp_link_error(l, err, sizeof(err));
	printf("link_peer: link failed: %s (%s)\n", err[0] ? err : "-",
	       strerror(-rc));
	return 3;
}

static int receive(struct tp_link *l, const struct opts *o)
{
	uint64_t next[1 + TP_MAX_BULK] = { 0 }, total = 0;
	unsigned nchan = 1 + tp_link_nr_bulk(l), c;
	uint8_t *want = malloc(WIRE_MAX_BODY);
	struct tp_msg *m;
	char note[64];
	int rc;

	for (;;) {
		rc = tp_recv(l, o->timeout_ms, &m);
		if (rc) {
			printf("link_peer: verified %" PRIu64 " records before "
			       "the failure\n", total);
			free(want);
			return link_failed(l, rc);
		}
		if (m->type == TP_MSG_SYNC)
			break;
		c = m->chan;
		fill_body(want, m->len, c, next[c]);
		if (m->len < 16 || memcmp(want, m->body, m->len) ||
		    m->epoch != o->cfg.min_epoch + next[c] / 64) {
			printf("link_peer: channel %u record %" PRIu64 " wrong\n",
			       c, next[c]);
			free(want);
			return 4;
		}
		next[c]++;
		total++;
		tp_msg_free(m);
		if (o->slow_us)
			usleep(o->slow_us);
	}
	tp_msg_free(m);
	free(want);
	for (c = 0; c < nchan; c++)
		if (next[c] != o->records) {
			printf("link_peer: channel %u: %" PRIu64 " records, "
			       "expected %" PRIu64 "\n", c, next[c], o->records);
			return 4;
		}
	printf("link_peer: verified %" PRIu64 " records on %u channels\n",
	       total, nchan);
	snprintf(note, sizeof(note), "ok %" PRIu64, total);
	tp_send(l, 0, WIRE_REC_NOTE, o->cfg.min_epoch + o->records, note,
		strlen(note));
	tp_flush(l, 5000);
	return 0;
}

static int send_all(struct tp_link *l, const struct opts *o)
{
	unsigned nchan = 1 + tp_link_nr_bulk(l), c;
	uint8_t *b = malloc(o->size);
	uint64_t n, epoch = o->cfg.min_epoch;
	struct tp_stats st;
	struct tp_msg *m;
	int rc = 0;

	for (n = 0; n < o->records && !rc; n++) {
		epoch = o->cfg.min_epoch + n / 64;
		for (c = 0; c < nchan && !rc; c++) {
			size_t len = c ? o->size : 64;

			fill_body(b, len, c, n);
			rc = tp_send(l, c, WIRE_REC_NOTE, epoch, b, len);
		}
	}
	free(b);
	if (!rc)
		rc = tp_sync(l, o->cfg.min_epoch + o->records / 64);
	if (!rc)
		rc = tp_recv(l, o->timeout_ms, &m);
	if (rc)
		return link_failed(l, rc);
	printf("link_peer: peer says \"%.*s\"\n", (int)m->len,
	       (const char *)m->body);
	tp_msg_free(m);
	tp_link_stats(l, &st);
	printf("link_peer: sent %" PRIu64 " bytes in %" PRIu64 " records, "
	       "%.0f Mbit/s, rtt %.0f us\n", st.bytes_sent, st.records_sent,
	       st.send_mbps, st.rtt_avg_us);
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o;
	struct tp_ctx *ctx;
	struct tp_listener *lis = NULL;
	struct tp_link *l = NULL;
	char err[TP_ERR_MAX];
	int rc;

	parse(argc, argv, &o);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (tp_ctx_new(&ctx))
		return 1;
	if (!strcmp(o.mode, "listen")) {
		rc = tp_listen(ctx, &o.cfg, o.addr, &lis, err, sizeof(err));
		if (rc) {
			printf("link_peer: %s\n", err);
			return 2;
		}
		printf("link_peer: listening on port %u\n",
		       tp_listener_port(lis));
		rc = tp_accept(lis, o.timeout_ms, &l);
		printf("link_peer: refused %" PRIu64 " peers\n",
		       tp_listener_refused(lis));
		if (rc)
			printf("link_peer: no link accepted within %d ms\n",
			       o.timeout_ms);
		rc = rc ? 5 : receive(l, &o);
	} else {
		rc = tp_connect(ctx, &o.cfg, o.addr, &l, err, sizeof(err));
		if (rc) {
			printf("link_peer: connect failed: %s\n", err);
			tp_ctx_free(ctx);
			return 3;
		}
		rc = send_all(l, &o);
	}
	tp_link_free(l);
	tp_listener_free(lis);
	tp_ctx_free(ctx);
	return rc;
}
