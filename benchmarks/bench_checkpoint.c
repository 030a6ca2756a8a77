/*
 * bench_checkpoint.c - the checkpoint engine's guest pause against the
 * number of pages an epoch dirties.
 *
 * A rep_primary protects a memstress guest at a fixed interval (Remus
 * mode, page codecs on, TLS 1.3 with a pre-shared key: what tandemd does)
 * and streams its epochs over a loopback transport link to a rep_standby.
 * uvm allows one domain per process (the guest arena sits at a fixed
 * address) and the standby's replica is a domain too, so the standby runs
 * in a child process forked at start: it listens on 127.0.0.1 (port 0),
 * and for each link it reads the HELLO and follows the primary with a
 * fresh rep_standby, as tandemd's td_accept_one does.
 *
 * Each case sets memstress's write rate so that an epoch dirties about a
 * target number of pages (uniform writes over a 128 MiB working set, so
 * distinct pages = W (1 - exp(-writes / W))), from 10 to 10 000.  For each:
 *   1. the anchor: `cycles` hv_pause + hv_unpause of the same running guest
 *      with nothing copied, timed like the engine times its pause (from
 *      before hv_pause until hv_unpause returns), 2 ms apart;
 *   2. protection: rep_primary_new, connect, rep_primary_attach; wait for
 *      the full copy and two more checkpoints; then for `seconds`, poll
 *      rep_primary_stats every millisecond and record, for every new
 *      checkpoint, its pause, dirty pages and bytes sent.
 * Prints, per case: the guest's achieved write rate, dirty pages per
 * epoch (mean), pause p50/p99, checkpoints/s, KiB per epoch, and beside
 * them the anchor's p50/p99 and a memcpy of as many pages between two
 * warm buffers (the copy alone).
 *
 * usage: bench_checkpoint [--interval-ms 25] [--seconds 3] [--cycles 200]
 *                         [--insecure] [--dump]
 * --insecure: a plaintext link; --dump: every recorded checkpoint (pause,
 * pages, bytes) on stderr.
 */
#include "benchlib.h"
#include "hv.h"
#include "log.h"
#include "replicator.h"
#include "transport.h"
#include "uvm_abi.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <unistd.h>

#define BC_VM "bench"
#define BC_MEM (192ULL << 20)
#define BC_WSS_PAGES 32768ULL            /* 128 MiB */
#define BC_SYNC_TIMEOUT_NS 60000000000ULL
#define BC_HB_NS 100000000ULL

static const uint64_t targets[] = { 10, 100, 1000, 3000, 6000, 10000 };
#define NR_TARGETS (sizeof(targets) / sizeof(targets[0]))

struct bc_opts {
	uint64_t interval_ms, seconds, cycles;
	bool insecure, dump;
	uint8_t psk[32];
};

static void bc_link_config(const struct bc_opts *o, struct tp_config *c,
			   const char *me, const char *peer)
{
	tp_config_init(c);
	c->kind = TP_KIND_TCP;
	c->security = o->insecure ? TP_SEC_INSECURE : TP_SEC_PSK;
	snprintf(c->local_name, sizeof(c->local_name), "%s", me);
	snprintf(c->peer_name, sizeof(c->peer_name), "%s", peer);
	if (!o->insecure) {
		memcpy(c->psk, o->psk, sizeof(o->psk));
		c->psk_len = sizeof(o->psk);
		snprintf(c->psk_identity, sizeof(c->psk_identity), "%s", BC_VM);
	}
	c->nr_bulk = 1;
	c->handshake_timeout_ms = 5000;
}

/* ---- the standby (child process) ----------------------------------------- */

static volatile sig_atomic_t sb_quit;

static void sb_on_term(int sig)
{
	(void)sig;
	sb_quit = 1;
}

static int standby_main(const struct bc_opts *o, int port_fd)
{
	struct tp_config tc;
	struct tp_ctx *ctx = NULL;
	struct tp_listener *lst = NULL;
	struct rep_standby *sb = NULL;
	char err[TP_ERR_MAX];
	uint64_t next_hb = 0;
	uint16_t port;
	int rc;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	signal(SIGTERM, sb_on_term);
	bc_link_config(o, &tc, "beta", "alpha");
	rc = tp_ctx_new(&ctx);
	if (rc == 0)
		rc = tp_listen(ctx, &tc, "127.0.0.1:0", &lst, err, sizeof(err));
	port = rc == 0 ? tp_listener_port(lst) : 0;
	if (rc != 0)
		fprintf(stderr, "bench_checkpoint: standby: cannot listen: %s\n",
			err);
	if (write(port_fd, &port, sizeof(port)) != sizeof(port))
		rc = -EIO;
	close(port_fd);
	while (rc == 0 && !sb_quit && getppid() != 1) {
		struct tp_link *link;
		struct rep_hello h;

		if (bench_now_ns() >= next_hb) {
			if (sb != NULL)
				rep_standby_heartbeat(sb);
			next_hb = bench_now_ns() + BC_HB_NS;
		}
		if (tp_accept(lst, 50, &link) != 0)
			continue;
		if (rep_link_hello(link, 5000, &h, err, sizeof(err)) != 0) {
			fprintf(stderr, "bench_checkpoint: standby: %s\n", err);
			tp_link_free(link);
			continue;
		}
		/* a new primary (a new case): a fresh replica for it */
		rep_standby_free(sb);
		sb = NULL;
		{
			struct rep_standby_config sc = { .vm_name = BC_VM };

			sc.hv.mem_bytes = h.mem_bytes;
			sc.hv.nr_vcpus = h.vcpus;
			sc.hv.console_fd = -1;
			if (rep_standby_new(&sc, &sb, err, sizeof(err)) != 0) {
				fprintf(stderr, "bench_checkpoint: standby: %s\n",
					err);
				rep_link_refuse(link, REP_WELCOME_REFUSED,
						REP_ROLE_STANDBY, 0, err);
				continue;
			}
		}
		if (rep_standby_attach(sb, link, &h, err, sizeof(err)) != 0)
			fprintf(stderr, "bench_checkpoint: standby: refused the "
				"primary: %s\n", err);
	}
	rep_standby_free(sb);
	if (lst != NULL)
		tp_listener_free(lst);
	tp_ctx_free(ctx);
	return rc == 0 ? 0 : 1;
}

/* ---- the primary (this process) -------------------------------------------- */

struct bc_result {
	uint64_t rate;                    /* memstress writes/s asked */
	double writes_per_s;              /* achieved in the window */
	double pages_mean, kib_mean, ckpt_per_s;
	uint64_t pause_p50, pause_p99, pause_max;
	uint64_t raw_p50, raw_p99;
	uint64_t copy_us;                 /* memcpy of pages_mean pages */
	uint64_t samples, missed;
};

/* Second anchor: a memcpy of n pages between two warm buffers, the copy a
 * checkpoint makes while the guest is paused; median of 5, in us. */
static uint64_t copy_cost_us(uint64_t n)
{
	size_t len = (size_t)(n ? n : 1) * 4096;
	uint8_t *src = malloc(len), *dst = malloc(len);
	uint64_t t[5] = { 0 };

	if (src == NULL || dst == NULL) {
		free(src);
		free(dst);
		return 0;
	}
	memset(src, 0x5a, len);
	memset(dst, 0, len);
	for (int i = 0; i < 5; i++) {
		uint64_t t0 = bench_now_ns();

		memcpy(dst, src, len);
		__asm__ volatile("" : : "r"(dst) : "memory");
		t[i] = (bench_now_ns() - t0) / 1000;
	}
	free(src);
	free(dst);
	return bench_median(t, 5);
}

static volatile const uint64_t *report_words(struct hv_domain *dom)
{
	void *p = NULL;

	if (hv_map(dom, UVM_START_INFO_PFN, 1, false, &p) != 0)
		return NULL;
	return ((volatile struct uvm_start_info *)p)->report;
}

static int guest_alive(struct hv_domain *dom)
{
	struct hv_shutdown_info info;

	if (hv_wait_shutdown(dom, 0, &info) == -ETIMEDOUT)
		return 0;
	fprintf(stderr, "bench_checkpoint: guest stopped: %s\n", info.detail);
	return -EIO;
}

/* Anchor: pause + unpause with nothing in between, `cycles` times. */
static int raw_pauses(struct hv_domain *dom, uint64_t cycles,
		      struct bc_result *r)
{
	uint64_t *t = calloc(cycles, sizeof(*t));
	int rc = t ? 0 : -ENOMEM;

	for (uint64_t i = 0; rc == 0 && i < cycles; i++) {
		uint64_t t0;

		bench_sleep_ns(2000000);
		t0 = bench_now_ns();
		rc = hv_pause(dom, NULL);
		if (rc == 0)
			rc = hv_unpause(dom);
		t[i] = (bench_now_ns() - t0) / 1000;
	}
	if (rc == 0) {
		qsort(t, cycles, sizeof(*t), bench_cmp_u64);
		r->raw_p50 = bench_pct(t, cycles, 50);
		r->raw_p99 = bench_pct(t, cycles, 99);
	}
	free(t);
	return rc;
}

/* Wait for the full copy and two ordinary checkpoints after it. */
static int wait_protected(struct rep_primary *p, struct hv_domain *dom)
{
	uint64_t t0 = bench_now_ns();
	struct rep_primary_stats st;

	for (;;) {
		rep_primary_stats(p, &st);
		if (st.state == REP_ENG_PROTECTED && st.checkpoints >= 3)
			return 0;
		if (bench_now_ns() - t0 > BC_SYNC_TIMEOUT_NS) {
			fprintf(stderr, "bench_checkpoint: not protected after "
				"60 s (state %d, %" PRIu64 " checkpoints): %s\n",
				st.state, st.checkpoints, st.last_error);
			return -ETIMEDOUT;
		}
		if (guest_alive(dom) != 0)
			return -EIO;
		bench_sleep_ns(5000000);
	}
}

/* Record every checkpoint of the window by polling the stats. */
static int measure(const struct bc_opts *o, struct rep_primary *p,
		   struct hv_domain *dom, volatile const uint64_t *rep,
		   uint64_t target, struct bc_result *r)
{
	size_t cap = 4096, n = 0;
	uint64_t *pause = malloc(cap * sizeof(*pause));
	uint64_t pages = 0, bytes = 0, c0, w0, t0, t1, last, hb = 0;
	struct rep_primary_stats st;
	int rc = pause ? 0 : -ENOMEM;

	rep_primary_stats(p, &st);
	c0 = last = st.checkpoints;
	w0 = rep[UVM_REPORT_WRITES];
	t0 = bench_now_ns();
	while (rc == 0 && bench_now_ns() - t0 < o->seconds * 1000000000ULL) {
		bench_sleep_ns(1000000);
		if (bench_now_ns() >= hb) {
			rep_primary_heartbeat(p);
			hb = bench_now_ns() + BC_HB_NS;
		}
		rep_primary_stats(p, &st);
		if (st.state != REP_ENG_PROTECTED) {
			fprintf(stderr, "bench_checkpoint: protection lost: "
				"%s\n", st.last_error);
			rc = -EIO;
			break;
		}
		if (st.checkpoints == last)
			continue;
		if (st.checkpoints - last > 1)
			r->missed += st.checkpoints - last - 1;
		last = st.checkpoints;
		if (n == cap) {
			uint64_t *np = realloc(pause, 2 * cap * sizeof(*pause));

			if (np == NULL) {
				rc = -ENOMEM;
				break;
			}
			pause = np;
			cap *= 2;
		}
		pause[n++] = st.last_pause_us;
		pages += st.last_pages;
		bytes += st.last_bytes;
		if (o->dump)
			fprintf(stderr, "target %" PRIu64 " epoch %" PRIu64
				" t %.3f s: pause %" PRIu64 " us, %" PRIu64
				" pages, %" PRIu64 " bytes\n", target, st.epoch,
				(double)(bench_now_ns() - t0) / 1e9,
				st.last_pause_us, st.last_pages, st.last_bytes);
	}
	t1 = bench_now_ns();
	if (rc == 0)
		rc = guest_alive(dom);
	if (rc == 0 && n == 0) {
		fprintf(stderr, "bench_checkpoint: no checkpoint in %" PRIu64
			" s\n", o->seconds);
		rc = -EIO;
	}
	if (rc == 0) {
		rep_primary_stats(p, &st);
		r->samples = n;
		r->ckpt_per_s = (double)(last - c0) * 1e9 / (double)(t1 - t0);
		r->writes_per_s = (double)(rep[UVM_REPORT_WRITES] - w0) * 1e9 /
				  (double)(t1 - t0);
		r->pages_mean = (double)pages / (double)n;
		r->kib_mean = (double)bytes / 1024.0 / (double)n;
		qsort(pause, n, sizeof(*pause), bench_cmp_u64);
		r->pause_p50 = bench_pct(pause, n, 50);
		r->pause_p99 = bench_pct(pause, n, 99);
		r->pause_max = pause[n - 1];
	}
	free(pause);
	return rc;
}

/* -ln(1 - x) for 0 <= x < 0.5, by its series (no libm in the link). */
static double neg_log1m(double x)
{
	double term = x, sum = 0;

	for (int k = 1; k < 200 && term > 1e-18; k++, term *= x)
		sum += term / k;
	return sum;
}

static int run_case(const struct bc_opts *o, const struct tp_config *tc,
		    struct tp_ctx *ctx, const char *addr, uint64_t target,
		    struct bc_result *r)
{
	char image[PATH_MAX + 32], cmdline[160], err[TP_ERR_MAX];
	double interval_s = (double)o->interval_ms / 1000.0;
	struct hv_config cfg = { 0 };
	struct hv_domain *dom = NULL;
	struct rep_primary *p = NULL;
	struct rep_primary_config pc = {
		.vm_name = BC_VM,
		.mode = REP_MODE_REMUS,
		.interval_us = (uint32_t)(o->interval_ms * 1000),
		.output_bound_us = 10000,
		.compress = true,
		.generation = 1,
	};
	volatile const uint64_t *rep;
	struct tp_link *link = NULL;
	uint64_t newer = 0, t0;
	int rc;

	memset(r, 0, sizeof(*r));
	/* uniform writes over W pages: writes = -W ln(1 - target / W) */
	r->rate = (uint64_t)((double)BC_WSS_PAGES *
			     neg_log1m((double)target / (double)BC_WSS_PAGES) /
			     interval_s + 0.5);
	if (r->rate == 0)
		r->rate = 1;
	snprintf(cmdline, sizeof(cmdline), "wss=%llu hot=100 rate=%" PRIu64
		 " print=0", BC_WSS_PAGES * 4096, r->rate);
	bench_guest_path("memstress", image, sizeof(image));
	cfg.image = image;
	cfg.mem_bytes = BC_MEM;
	cfg.nr_vcpus = 1;
	cfg.cmdline = cmdline;
	cfg.console_fd = -1;
	rc = hv_domain_build(&cfg, &dom);
	if (rc != 0) {
		fprintf(stderr, "bench_checkpoint: cannot build %s: %s\n",
			image, strerror(-rc));
		return rc;
	}
	rep = report_words(dom);
	rc = rep == NULL ? -EFAULT : hv_unpause(dom);
	t0 = bench_now_ns();
	while (rc == 0 && (rep[UVM_REPORT_KIND] != UVM_GUEST_MEMSTRESS ||
			   rep[UVM_REPORT_PASSES] == 0)) {
		if (bench_now_ns() - t0 > 20000000000ULL) {
			fprintf(stderr, "bench_checkpoint: memstress not "
				"running after 20 s\n");
			rc = -ETIMEDOUT;
			break;
		}
		rc = guest_alive(dom);
		bench_sleep_ns(1000000);
	}
	if (rc == 0)
		rc = raw_pauses(dom, o->cycles, r);
	if (rc == 0)
		rc = rep_primary_new(dom, &pc, &p);
	if (rc == 0) {
		rc = tp_connect(ctx, tc, addr, &link, err, sizeof(err));
		if (rc == 0)
			rc = rep_primary_attach(p, link, &newer, err,
						sizeof(err));
		if (rc != 0)
			fprintf(stderr, "bench_checkpoint: link to the standby: "
				"%s\n", err);
	}
	if (rc == 0)
		rc = wait_protected(p, dom);
	if (rc == 0)
		rc = measure(o, p, dom, rep, target, r);
	rep_primary_free(p);
	hv_domain_free(dom);
	if (rc == 0)
		r->copy_us = copy_cost_us((uint64_t)(r->pages_mean + 0.5));
	return rc;
}

static void usage(void)
{
	fprintf(stderr, "usage: bench_checkpoint [--interval-ms N] "
		"[--seconds S] [--cycles N] [--insecure] [--dump]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct bc_opts o = { .interval_ms = 25, .seconds = 3, .cycles = 200 };
	struct bc_result res[NR_TARGETS];
	struct tp_config tc;
	struct tp_ctx *ctx = NULL;
	char addr[64];
	int pfd[2], failed = 0, status;
	uint16_t port = 0;
	pid_t child;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--interval-ms") == 0 && i + 1 < argc)
			o.interval_ms = bench_parse_u64("bench_checkpoint",
							"--interval-ms", argv[++i]);
		else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
			o.seconds = bench_parse_u64("bench_checkpoint",
						    "--seconds", argv[++i]);
		else if (strcmp(argv[i], "--cycles") == 0 && i + 1 < argc)
			o.cycles = bench_parse_u64("bench_checkpoint",
						   "--cycles", argv[++i]);
		else if (strcmp(argv[i], "--insecure") == 0)
			o.insecure = true;
		else if (strcmp(argv[i], "--dump") == 0)
			o.dump = true;
		else
			usage();
	}
	if (o.interval_ms > 60000)
		usage();
	/* Tearing a case down closes its link, which both ends log as a
	 * warning (a lost link); errors still show.  TANDEM_LOG overrides. */
	if (getenv("TANDEM_LOG") == NULL)
		log_set_level(LOG_ERROR);
	if (getrandom(o.psk, sizeof(o.psk), 0) != (ssize_t)sizeof(o.psk)) {
		perror("bench_checkpoint: getrandom");
		return 1;
	}
	/* The standby, before this process starts any thread. */
	fflush(NULL);
	if (pipe(pfd) != 0 || (child = fork()) < 0) {
		perror("bench_checkpoint: pipe/fork");
		return 1;
	}
	if (child == 0) {
		close(pfd[0]);
		_exit(standby_main(&o, pfd[1]));
	}
	close(pfd[1]);
	if (read(pfd[0], &port, sizeof(port)) != sizeof(port) || port == 0) {
		fprintf(stderr, "bench_checkpoint: the standby did not start\n");
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
		return 1;
	}
	close(pfd[0]);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
	bc_link_config(&o, &tc, "alpha", "beta");

	bench_print_machine("bench_checkpoint: guest pause per epoch vs dirty "
			    "pages per epoch");
	printf("Remus mode, interval %" PRIu64 " ms, page codecs on, %s link "
	       "on loopback to a standby in a child process; memstress with\n"
	       "uniform writes over 128 MiB (hot=100) in a %llu MiB guest, its "
	       "rate set for each target of dirty pages per epoch.\n"
	       "Per case: %" PRIu64 " s of checkpoints, every one recorded "
	       "(rep_primary_stats polled each ms); anchor: %" PRIu64
	       " hv_pause+hv_unpause\n"
	       "of the same guest with nothing copied, 2 ms apart, timed as "
	       "the engine times its pause.\n\n", o.interval_ms,
	       o.insecure ? "plaintext" : "TLS 1.3 PSK",
	       (unsigned long long)(BC_MEM >> 20), o.seconds, o.cycles);
	printf("  %7s %9s %10s %9s %9s %9s %7s %9s | %8s %8s %8s\n",
	       "target", "rate", "writes/s", "pages", "pause", "pause",
	       "ckpt/s", "KiB", "raw", "raw", "memcpy");
	printf("  %7s %9s %10s %9s %9s %9s %7s %9s | %8s %8s %8s\n", "pages",
	       "asked/s", "achieved", "/epoch", "p50 us", "p99 us", "",
	       "/epoch", "p50 us", "p99 us", "us");
	fflush(stdout);

	if (tp_ctx_new(&ctx) != 0) {
		fprintf(stderr, "bench_checkpoint: tp_ctx_new failed\n");
		failed = 1;
	}
	for (size_t i = 0; !failed && i < NR_TARGETS; i++) {
		struct bc_result *r = &res[i];

		if (run_case(&o, &tc, ctx, addr, targets[i], r) != 0) {
			failed = 1;
			break;
		}
		printf("  %7" PRIu64 " %9" PRIu64 " %10.0f %9.1f %9" PRIu64
		       " %9" PRIu64 " %7.1f %9.1f | %8" PRIu64 " %8" PRIu64
		       " %8" PRIu64 "\n", targets[i], r->rate,
		       r->writes_per_s, r->pages_mean, r->pause_p50,
		       r->pause_p99, r->ckpt_per_s, r->kib_mean, r->raw_p50,
		       r->raw_p99, r->copy_us);
		if (r->missed)
			printf("          (%" PRIu64 " checkpoints of the window "
			       "fell between two polls and are not in the "
			       "pause figures)\n", r->missed);
		fflush(stdout);
	}
	if (!failed)
		printf("\npause = guest paused for the checkpoint (hv_pause "
		       "request .. hv_unpause returned): dirty fetch, vCPU and "
		       "device save, copy of the dirty pages;\nraw = the same "
		       "with nothing in between; memcpy = copying that many "
		       "pages between two warm buffers (median of 5).\n"
		       "KiB/epoch: what the epoch put on the link after the "
		       "page codecs.\n");
	tp_ctx_free(ctx);
	kill(child, SIGTERM);
	if (waitpid(child, &status, 0) == child &&
	    !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
		fprintf(stderr, "bench_checkpoint: the standby exited badly\n");
		failed = 1;
	}
	return failed;
}
