/*
 * bench_link.c - link throughput on loopback against iperf3, side by side.
 *
 * For each stream count N (1 and --streams, default 4) this measures, in
 * one run:
 *   - iperf3 with N parallel streams (iperf3 -c ... -P N), the anchor;
 *   - a tandem link, plaintext (security insecure), sending records of
 *     --record bytes on N bulk channels from N threads;
 *   - the same link with TLS 1.3 and certificates made in a temporary PKI.
 * The receiver takes every record off the link and frees it; throughput
 * is body bytes delivered per second over --seconds.  Sender and receiver
 * share this machine's cores, as iperf3's client and server do.
 *
 * usage: bench_link [--seconds S] [--streams N] [--record BYTES] [--no-iperf]
 * (--no-iperf: the link only, e.g. for profiling)
 */
#include "benchlib.h"
#include "pki.h"
#include "transport.h"
#include "wire.h"

#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static unsigned seconds = 3, streams = 4;
static bool no_iperf;
static size_t record = 256 * 1024;
static char pki_dir[64];

struct sender {
	struct tp_link *link;
	unsigned chan;
	atomic_bool *stop;
	int rc;
};

static void *sender_main(void *arg)
{
	struct sender *s = arg;
	uint8_t *b = malloc(record);

	memset(b, 0xa5, record);
	while (!atomic_load(s->stop) && !s->rc)
		s->rc = tp_send(s->link, s->chan, WIRE_REC_NOTE, 0, b, record);
	free(b);
	return NULL;
}

static char pbuf[6][160];

static const char *pp(int i, const char *name, const char *ext)
{
	snprintf(pbuf[i], sizeof(pbuf[i]), "%s/%s.%s", pki_dir, name, ext);
	return pbuf[i];
}

static void cfg_for(struct tp_config *c, bool tls, const char *me,
		    const char *peer, int slot)
{
	tp_config_init(c);
	snprintf(c->local_name, sizeof(c->local_name), "%s", me);
	snprintf(c->peer_name, sizeof(c->peer_name), "%s", peer);
	c->ping_interval_ms = -1;
	if (!tls) {
		c->security = TP_SEC_INSECURE;
		return;
	}
	c->ca_file = pp(slot, "ca", "crt");
	c->cert_file = pp(slot + 1, me, "crt");
	c->key_file = pp(slot + 2, me, "key");
}

/* Gbit/s of body bytes over a link with n bulk channels. */
static double link_run(bool tls, unsigned n)
{
	struct tp_config sc, cc;
	struct tp_ctx *sctx, *cctx;
	struct tp_listener *lis;
	struct tp_link *srv = NULL, *cli = NULL;
	struct sender snd[TP_MAX_BULK];
	pthread_t th[TP_MAX_BULK];
	atomic_bool stop = false;
	struct tp_msg *m;
	char err[TP_ERR_MAX], addr[32];
	uint64_t bytes = 0, t0, t1;
	unsigned i;

	cfg_for(&sc, tls, "bench-b", "bench-a", 0);
	cfg_for(&cc, tls, "bench-a", "bench-b", 3);
	cc.nr_bulk = n;
	if (tp_ctx_new(&sctx) || tp_ctx_new(&cctx) ||
	    tp_listen(sctx, &sc, "127.0.0.1:0", &lis, err, sizeof(err))) {
		fprintf(stderr, "bench_link: listen: %s\n", err);
		exit(1);
	}
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", tp_listener_port(lis));
	if (tp_connect(cctx, &cc, addr, &cli, err, sizeof(err)) ||
	    tp_accept(lis, 5000, &srv)) {
		fprintf(stderr, "bench_link: connect: %s\n", err);
		exit(1);
	}
	for (i = 0; i < n; i++) {
		snd[i] = (struct sender){ cli, i + 1, &stop, 0 };
		pthread_create(&th[i], NULL, sender_main, &snd[i]);
	}
	/* one second of warm-up, then the measured window */
	t0 = bench_now_ns();
	while (bench_now_ns() - t0 < 1000000000ull && !tp_recv(srv, 1000, &m))
		tp_msg_free(m);
	t0 = bench_now_ns();
	t1 = t0 + (uint64_t)seconds * 1000000000ull;
	while (bench_now_ns() < t1 && !tp_recv(srv, 1000, &m)) {
		bytes += m->len;
		tp_msg_free(m);
	}
	t1 = bench_now_ns();
	atomic_store(&stop, true);
	while (!tp_recv(srv, 200, &m))
		tp_msg_free(m); /* let blocked senders finish */
	for (i = 0; i < n; i++) {
		pthread_join(th[i], NULL);
		if (snd[i].rc)
			fprintf(stderr, "bench_link: sender %u: %d\n", i,
				snd[i].rc);
	}
	tp_link_free(cli);
	tp_link_free(srv);
	tp_listener_free(lis);
	tp_ctx_free(cctx);
	tp_ctx_free(sctx);
	return (double)bytes * 8 / ((double)(t1 - t0) / 1e9) / 1e9;
}

/* iperf3 -P n on loopback; Gbit/s received, or -1 if iperf3 failed. */
static double iperf_run(unsigned n)
{
	char cmd[256], line[512];
	double gbps = -1, v;
	pid_t srv;
	FILE *f;
	int port = 15201 + (int)n;

	fflush(stdout);
	srv = fork();
	if (srv == 0) {
		char p[16];

		snprintf(p, sizeof(p), "%d", port);
		freopen("/dev/null", "w", stdout);
		execlp("iperf3", "iperf3", "-s", "-1", "-B", "127.0.0.1", "-p",
		       p, (char *)NULL);
		_exit(127);
	}
	usleep(300000);
	snprintf(cmd, sizeof(cmd), "iperf3 -c 127.0.0.1 -p %d -P %u -t %u "
		 "-O 1 -f g 2>&1", port, n, seconds);
	f = popen(cmd, "r");
	while (f && fgets(line, sizeof(line), f))
		if (strstr(line, "receiver") &&
		    (n == 1 || strstr(line, "[SUM]")) &&
		    sscanf(strstr(line, "Bytes") + 5, "%lf", &v) == 1)
			gbps = v;
	if (f)
		pclose(f);
	kill(srv, SIGTERM);
	waitpid(srv, NULL, 0);
	return gbps;
}

static int rm_cb(const char *p, const struct stat *sb, int fl, struct FTW *f)
{
	(void)sb;
	(void)fl;
	(void)f;
	return remove(p);
}

static void make_pki(void)
{
	char err[PKI_ERR_MAX];

	snprintf(pki_dir, sizeof(pki_dir), "/tmp/bench-link-XXXXXX");
	if (!mkdtemp(pki_dir) ||
	    pki_ca_create(pki_dir, NULL, NULL, err, sizeof(err)) ||
	    pki_host_create(pki_dir, "bench-a", NULL, NULL, err, sizeof(err)) ||
	    pki_host_create(pki_dir, "bench-b", NULL, NULL, err, sizeof(err))) {
		fprintf(stderr, "bench_link: pki: %s\n", err);
		exit(1);
	}
}

static void row(unsigned n)
{
	double ip = no_iperf ? -1 : iperf_run(n);
	double plain = link_run(false, n);
	double tls = link_run(true, n);

	printf("| %u | %.2f | %.2f | %.0f%% | %.2f | %.0f%% |\n", n, ip, plain,
	       ip > 0 ? 100 * plain / ip : 0, tls, ip > 0 ? 100 * tls / ip : 0);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	int i;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--no-iperf")) {
			no_iperf = true;
			continue;
		}
		if (i + 1 >= argc)
			break;
		if (!strcmp(argv[i], "--seconds"))
			seconds = (unsigned)bench_parse_u64("bench_link", argv[i],
							    argv[i + 1]);
		else if (!strcmp(argv[i], "--streams"))
			streams = (unsigned)bench_parse_u64("bench_link", argv[i],
							    argv[i + 1]);
		else if (!strcmp(argv[i], "--record"))
			record = bench_parse_u64("bench_link", argv[i],
						 argv[i + 1]);
		else
			break;
		i++;
	}
	if (i < argc || streams < 1 || streams > TP_MAX_BULK ||
	    record > WIRE_MAX_BODY) {
		fprintf(stderr, "usage: bench_link [--seconds S] [--streams N "
			"(1..%d)] [--record BYTES (..%u)]\n", TP_MAX_BULK,
			WIRE_MAX_BODY);
		return 2;
	}
	bench_quiet_logs();
	bench_print_machine("bench_link: link throughput vs iperf3 (loopback)");
	printf("records of %zu bytes, %u s measured after 1 s warm-up; "
	       "Gbit/s of payload\n\n", record, seconds);
	make_pki();
	printf("| streams | iperf3 | link plaintext | vs iperf3 | link TLS 1.3 "
	       "| vs iperf3 |\n|---:|---:|---:|---:|---:|---:|\n");
	row(1);
	if (streams > 1)
		row(streams);
	nftw(pki_dir, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
	return 0;
}
