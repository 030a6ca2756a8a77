/*
 * bench_codec.c - page codec speed (MB/s per core, encode and decode) and
 * ratio on real dirty pages, next to the lz4 command on the same bytes.
 *
 * usage: bench_codec [--guest memstress|pagetest|both] [--epochs N]
 *                    [--epoch-ms MS] [--reps R] [--cache PAGES] [--quick]
 *
 * Per guest (default both): build it with dirty logging, let it set up,
 * pause, enable dirty logging and capture every populated page (the first
 * full copy, "epoch 0"); then --epochs times (default 10): run it for
 * --epoch-ms (default 50), pause, fetch the dirty bitmap, copy the dirty
 * pages with their pfns, unpause.  So the XOR path sees successive
 * versions of the same pages, as a replication channel does.  The guest
 * is freed before anything is timed.  memstress: wss=64M, 10% hot pages
 * taking 90% of 200000 writes/s (each write stores a counter in a random
 * 8-byte word); pagetest: 4096 pages whose byte 0 is incremented every
 * pass, as fast as it can.
 *
 * The captured pages are then encoded epoch by epoch (records of up to
 * 1024 pages, pfn order) by one encoder and decoded by one decoder, on
 * this thread, --reps times (default 5) with a fresh pair each time (so
 * each rep includes faulting in the cache once).  Decode is timed twice:
 * "dec" with a sink that only looks at each page (the codec's own work,
 * comparable to lz4's decompression into a buffer), "+copy" with a sink
 * that copies each page into a pre-faulted guest-sized memory, as a
 * standby applies it.  A last untimed decode checks every page against
 * the capture.  Variants: the full codec (cache --cache pages,
 * default 4096), lz4 only (no cache), compression off (zero + raw).
 * MB/s is page bytes (4096 per page, 10^6 bytes per MB) per second;
 * ratio is page bytes / wire bytes (bodies plus 32-byte record headers
 * and padding).
 *
 * XOR coder check: for every page the codec sent as XOR, lz4 on the same
 * XOR delta (against the page's previous captured version, which is the
 * cached base) is measured, to compare with the zero-run coding in use.
 *
 * Anchor in the same run: the same captured page bytes, in capture order,
 * are written to a temporary file and `lz4 -b1 FILE` (its benchmark mode:
 * 4 MiB blocks, best of its runs, one thread) and `lz4 -b1 -B4096 FILE`
 * (4 KiB blocks, the codec's granularity) are run; their speed and ratio
 * are parsed from their output and printed next to the codec's.
 */
#include "benchlib.h"
#include "codec.h"
#include "hv.h"
#include "uvm_abi.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <lz4.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define PG 4096ULL
#define MB 1e6
#define MAX_REPS 9
#define MAX_EPOCHS 64
#define GUEST_MEM (256ULL << 20)
#define CAPTURE_MAX_PAGES (1ULL << 18)   /* 1 GiB of captured pages */

/* ---- capture ---------------------------------------------------------- */

struct capture {
	uint64_t n;                      /* pages captured */
	uint64_t *pfn;
	uint8_t *data;
	uint64_t epoch_end[MAX_EPOCHS + 1]; /* page index after each epoch */
	unsigned nepochs;                /* epochs incl. epoch 0 */
	uint64_t nr_pages;               /* guest size */
};

struct guest_def {
	const char *name;
	const char *cmdline;
	uint64_t kind;
};

static const struct guest_def guests[] = {
	{ "memstress", "wss=64M hot=10 hotw=90 rate=200000 print=0",
	  UVM_GUEST_MEMSTRESS },
	{ "pagetest", "pages=4096 print=0", UVM_GUEST_PAGETEST },
};

static bool bit_test(const uint64_t *bm, uint64_t i)
{
	return (bm[i / 64] >> (i % 64)) & 1;
}

/* Appends every page set in bm, in pfn order; closes an epoch. */
static int capture_epoch(struct capture *c, const uint8_t *mem,
			 const uint64_t *bm)
{
	for (uint64_t p = 0; p < c->nr_pages; p++) {
		if (!bit_test(bm, p))
			continue;
		if (c->n == CAPTURE_MAX_PAGES)
			return -E2BIG;
		c->pfn[c->n] = p;
		memcpy(c->data + c->n * PG, mem + p * PG, PG);
		c->n++;
	}
	c->epoch_end[c->nepochs++] = c->n;
	return 0;
}

static volatile const struct uvm_start_info *start_info(struct hv_domain *dom)
{
	void *p = NULL;

	return hv_map(dom, UVM_START_INFO_PFN, 1, false, &p) == 0 ? p : NULL;
}

/* Runs the guest until it has published its report (set-up done). */
static int wait_setup(struct hv_domain *dom, const struct guest_def *g)
{
	volatile const struct uvm_start_info *si = start_info(dom);
	uint64_t t0 = bench_now_ns();
	int rc = si ? hv_unpause(dom) : -EFAULT;

	while (rc == 0 && si->report[UVM_REPORT_KIND] != g->kind) {
		struct hv_shutdown_info info;

		if (hv_wait_shutdown(dom, 0, &info) != -ETIMEDOUT) {
			fprintf(stderr, "bench_codec: %s stopped: %s\n", g->name,
				info.detail);
			return -EIO;
		}
		if (bench_now_ns() - t0 > 60000000000ULL) {
			fprintf(stderr, "bench_codec: %s not set up in 60 s\n",
				g->name);
			return -ETIMEDOUT;
		}
		bench_sleep_ns(2000000ULL);
	}
	return rc;
}

/* Epoch 0 (populated pages, dirty logging on) then the dirty epochs. */
static int capture_epochs(struct hv_domain *dom, struct capture *c,
			  unsigned epochs, unsigned epoch_ms)
{
	size_t words = (c->nr_pages + 63) / 64;
	uint64_t *bm = calloc(words, sizeof(uint64_t));
	struct hv_dirty_stats ds;
	void *mem = NULL;
	int rc = bm ? hv_pause(dom, NULL) : -ENOMEM;

	if (rc == 0)
		rc = hv_map(dom, 0, c->nr_pages, false, &mem);
	if (rc == 0)
		rc = hv_dirty_enable(dom);
	if (rc == 0)
		rc = hv_populated(dom, bm);
	if (rc == 0)
		rc = capture_epoch(c, mem, bm);
	for (unsigned e = 0; rc == 0 && e < epochs; e++) {
		rc = hv_unpause(dom);
		bench_sleep_ns((uint64_t)epoch_ms * 1000000ULL);
		if (rc == 0)
			rc = hv_pause(dom, NULL);
		memset(bm, 0, words * sizeof(uint64_t));
		if (rc == 0)
			rc = hv_dirty_fetch(dom, bm, &ds);
		if (rc == 0)
			rc = capture_epoch(c, mem, bm);
	}
	free(bm);
	return rc;
}

static int capture_guest(const struct guest_def *g, unsigned epochs,
			 unsigned epoch_ms, struct capture *c)
{
	char image[PATH_MAX];
	struct hv_config cfg = { .console_fd = -1 };
	struct hv_domain *dom = NULL;
	int rc;

	bench_guest_path(g->name, image, sizeof(image));
	cfg.image = image;
	cfg.mem_bytes = GUEST_MEM;
	cfg.nr_vcpus = 1;
	cfg.cmdline = g->cmdline;
	rc = hv_domain_build(&cfg, &dom);
	if (rc != 0) {
		fprintf(stderr, "bench_codec: cannot build %s: %s\n", image,
			strerror(-rc));
		return rc;
	}
	c->nr_pages = hv_nr_pages(dom);
	rc = wait_setup(dom, g);
	if (rc == 0)
		rc = capture_epochs(dom, c, epochs, epoch_ms);
	if (rc != 0)
		fprintf(stderr, "bench_codec: capturing %s failed: %s\n",
			g->name, strerror(-rc));
	hv_domain_free(dom);
	return rc;
}

/* ---- encode and decode ------------------------------------------------ */

struct bodies {
	struct wire_buf all;             /* bodies back to back */
	size_t *off, *len;
	uint64_t *first;                 /* capture index of each body's page 0 */
	size_t n;
	uint64_t wire_bytes;             /* with record headers and padding */
};

struct phase_times {                 /* [rep][epoch 0, the rest] */
	uint64_t enc[MAX_REPS][2], dec[MAX_REPS][2], apply[MAX_REPS][2];
};

struct variant {
	const char *name;
	struct codec_opts opts;
	struct codec_stats st;           /* of the last rep */
	struct phase_times t;
	uint64_t wire[2];                /* wire bytes per phase */
};

static int encode_all(const struct capture *c, const struct codec_opts *o,
		      struct bodies *b, struct codec_stats *st, uint64_t ns[2],
		      uint64_t wire[2])
{
	struct codec_enc *e = codec_enc_new(o);
	const void *pp[WIRE_PAGE_MAX];
	uint64_t start = 0;
	int rc = e ? 0 : -errno;

	memset(st, 0, sizeof(*st));
	wire_buf_reset(&b->all);
	b->n = 0;
	ns[0] = ns[1] = wire[0] = wire[1] = 0;
	for (unsigned ep = 0; rc == 0 && ep < c->nepochs; ep++) {
		uint64_t t0 = bench_now_ns();

		for (uint64_t i = start; rc == 0 && i < c->epoch_end[ep];
		     i += WIRE_PAGE_MAX) {
			uint64_t end = c->epoch_end[ep], k = end - i;
			size_t at = b->all.len;

			k = k > WIRE_PAGE_MAX ? WIRE_PAGE_MAX : k;
			for (uint64_t j = 0; j < k; j++)
				pp[j] = c->data + (i + j) * PG;
			rc = codec_enc_pages(e, (uint32_t)k, c->pfn + i, pp,
					     &b->all, st);
			b->off[b->n] = at;
			b->len[b->n] = b->all.len - at;
			b->first[b->n++] = i;
			wire[ep > 0] += 32 + wire_padded_length(
						     (uint32_t)(b->all.len - at));
		}
		ns[ep > 0] += bench_now_ns() - t0;
		start = c->epoch_end[ep];
	}
	codec_enc_free(e);
	return rc;
}

/* Decode alone: the page is only looked at (first and last byte). */
static int touch_sink(void *arg, uint64_t pfn, const uint8_t *page)
{
	*(uint8_t *)arg ^= page[0] ^ page[PG - 1] ^ (uint8_t)pfn;
	return 0;
}

/* Decode and apply: the page is copied into guest-sized memory. */
static int copy_sink(void *arg, uint64_t pfn, const uint8_t *page)
{
	memcpy((uint8_t *)arg + pfn * PG, page, PG);
	return 0;
}

struct verify {
	const struct capture *c;
	uint64_t next;                   /* capture index expected next */
	uint64_t bad;
};

static int verify_sink(void *arg, uint64_t pfn, const uint8_t *page)
{
	struct verify *v = arg;

	if (v->c->pfn[v->next] != pfn ||
	    memcmp(page, v->c->data + v->next * PG, PG) != 0)
		v->bad++;
	v->next++;
	return 0;
}

typedef int (*sink_fn)(void *arg, uint64_t pfn, const uint8_t *page);

/* Decodes every body with a fresh decoder; verify_sink checks each page
 * against the capture (arg is then ignored). */
static int decode_all(const struct capture *c, const struct codec_opts *o,
		      const struct bodies *b, sink_fn sink, void *arg,
		      uint64_t ns[2], uint64_t *bad)
{
	struct codec_dec *d = codec_dec_new(o);
	struct verify v = { .c = c };
	char err[WIRE_ERR_MAX];
	int rc = d ? 0 : -errno;

	ns[0] = ns[1] = 0;
	if (sink == verify_sink)
		arg = &v;
	for (size_t i = 0; rc == 0 && i < b->n; i++) {
		bool rest = b->first[i] >= c->epoch_end[0];
		uint64_t t0 = bench_now_ns();

		v.next = b->first[i];
		rc = codec_dec_pages(d, b->all.data + b->off[i], b->len[i],
				     c->nr_pages, sink, arg, err, sizeof(err));
		ns[rest] += bench_now_ns() - t0;
		if (rc != 0)
			fprintf(stderr, "bench_codec: decode of body %zu: %s\n",
				i, err);
	}
	if (bad)
		*bad = v.bad;
	codec_dec_free(d);
	return rc;
}

static int run_variant(const struct capture *c, struct variant *var,
		       unsigned reps, struct bodies *b, uint8_t *shadow)
{
	uint64_t bad = 0, dummy[2];
	int rc = 0;

	uint8_t touched = 0;

	for (unsigned r = 0; rc == 0 && r < reps; r++) {
		rc = encode_all(c, &var->opts, b, &var->st, var->t.enc[r],
				var->wire);
		if (rc == 0)
			rc = decode_all(c, &var->opts, b, touch_sink, &touched,
					var->t.dec[r], NULL);
		if (rc == 0)
			rc = decode_all(c, &var->opts, b, copy_sink, shadow,
					var->t.apply[r], NULL);
	}
	if (rc == 0)
		rc = decode_all(c, &var->opts, b, verify_sink, NULL, dummy,
				&bad);
	if (rc == 0 && bad != 0) {
		fprintf(stderr, "bench_codec: %s: %" PRIu64 " pages decoded "
			"WRONG\n", var->name, bad);
		rc = -EIO;
	}
	return rc;
}

/* ---- output ----------------------------------------------------------- */

static double mbps(uint64_t bytes, uint64_t ns)
{
	return ns ? (double)bytes / MB / ((double)ns / 1e9) : 0.0;
}

/* Best and median MB/s over reps of phase p (p = 2: both phases). */
static void speeds(uint64_t t[][2], unsigned reps, unsigned p, uint64_t bytes,
		   double *best, double *med)
{
	uint64_t v[MAX_REPS];

	for (unsigned r = 0; r < reps; r++)
		v[r] = p == 2 ? t[r][0] + t[r][1] : t[r][p];
	*med = mbps(bytes, bench_median(v, reps));
	*best = mbps(bytes, v[0]); /* sorted by bench_median */
}

static void print_row(const struct variant *var, const struct capture *c,
		      unsigned reps, unsigned p, double out[2])
{
	static const char *const phase[3] = { "full copy", "dirty epochs",
					      "all" };
	uint64_t pages = p == 0 ? c->epoch_end[0]
		       : p == 1 ? c->n - c->epoch_end[0] : c->n;
	uint64_t wire = p == 2 ? var->wire[0] + var->wire[1] : var->wire[p];
	double eb, em, db, dm, ab, am;
	struct phase_times t = var->t;

	speeds(t.enc, reps, p, pages * PG, &eb, &em);
	speeds(t.dec, reps, p, pages * PG, &db, &dm);
	speeds(t.apply, reps, p, pages * PG, &ab, &am);
	printf("  %-26s %-12s %7" PRIu64 " %8.0f %8.0f %8.0f %8.0f %8.0f "
	       "%7.1f\n", p == 0 ? var->name : "", phase[p], pages, eb, em,
	       db, dm, ab, wire ? (double)(pages * PG) / (double)wire : 0.0);
	if (out) {
		out[0] = eb;
		out[1] = db;
	}
}

static void print_mix(const struct variant *var)
{
	const struct codec_stats *s = &var->st;

	printf("  %-26s methods: zero %" PRIu64 ", raw %" PRIu64 ", lz4 %"
	       PRIu64 " (avg %.0f B), xor %" PRIu64 " (avg %.0f B)\n", "",
	       s->zero, s->raw, s->lz4,
	       s->lz4 ? (double)s->lz4_bytes / (double)s->lz4 : 0.0, s->xor,
	       s->xor ? (double)s->xor_bytes / (double)s->xor : 0.0);
}

/* ---- XOR coder check -------------------------------------------------- */

static uint64_t be64_at(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

/* lz4 on the XOR of every page the codec sent as XOR (bodies of the last
 * encode, parsed per docs/page-codecs.md section 3). */
static int xor_check(const struct capture *c, const struct bodies *b)
{
	int64_t *last = malloc(c->nr_pages * sizeof(int64_t));
	uint64_t n = 0, runs = 0, lz = 0, ns = 0;
	static uint8_t x[PG];
	static char out[LZ4_COMPRESSBOUND(PG)];

	if (!last)
		return -ENOMEM;
	for (uint64_t p = 0; p < c->nr_pages; p++)
		last[p] = -1;
	for (size_t i = 0; i < b->n; i++) {
		const uint8_t *body = b->all.data + b->off[i];
		unsigned count = (unsigned)body[0] << 8 | body[1];

		for (unsigned k = 0; k < count; k++) {
			uint64_t w = be64_at(body + 8 + 8 * k), at = b->first[i] + k;
			uint64_t pfn = c->pfn[at];
			const uint8_t *cur = c->data + at * PG, *prev;
			uint64_t t0;

			if (w >> 61 == CODEC_XOR && last[pfn] >= 0) {
				prev = c->data + (uint64_t)last[pfn] * PG;
				t0 = bench_now_ns();
				for (size_t j = 0; j < PG; j++)
					x[j] = cur[j] ^ prev[j];
				lz += (uint64_t)LZ4_compress_default(
					(const char *)x, out, (int)PG, (int)sizeof(out));
				ns += bench_now_ns() - t0;
				runs += (w >> 48) & 0x1fff;
				n++;
			}
			last[pfn] = (int64_t)at;
		}
	}
	free(last);
	printf("  XOR coder: %" PRIu64 " XOR pages; zero-run coding (in use) "
	       "%.1f B/page; lz4 on the same XORs %.1f B/page at %.0f MB/s "
	       "(XOR + LZ4_compress_default)\n", n,
	       n ? (double)runs / (double)n : 0.0,
	       n ? (double)lz / (double)n : 0.0, mbps(n * PG, ns));
	return 0;
}

/* ---- lz4 command anchor ----------------------------------------------- */

struct lz4_anchor {
	bool ok;
	uint64_t in, out;
	double ratio, comp, decomp;
};

/* Runs `lz4 -b1 [block] path`, returns its whole output (stdout+stderr). */
static char *run_lz4(const char *path, const char *block)
{
	int fds[2], status;
	size_t len = 0, cap = 65536;
	char *buf = malloc(cap + 1);
	pid_t pid;
	ssize_t n;

	if (!buf || pipe(fds) != 0) {
		free(buf);
		return NULL;
	}
	pid = fork();
	if (pid == 0) {
		dup2(fds[1], 1);
		dup2(fds[1], 2);
		close(fds[0]);
		close(fds[1]);
		if (block)
			execlp("lz4", "lz4", "-b1", block, path, (char *)NULL);
		else
			execlp("lz4", "lz4", "-b1", path, (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	while (pid > 0 && (n = read(fds[0], buf + len, cap - len)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		len += (size_t)n;
		if (len == cap) {
			char *p = realloc(buf, cap * 2 + 1);

			if (!p)
				break;
			buf = p;
			cap *= 2;
		}
	}
	close(fds[0]);
	buf[len] = '\0';
	if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* The last progress line: " 1#name  :  IN ->  OUT (R),C MB/s ,D MB/s". */
static void lz4_parse(const char *text, struct lz4_anchor *a)
{
	const char *p = text, *last = NULL;
	unsigned long long in, out;

	while ((p = strstr(p, "->")) != NULL)
		last = p++;
	a->ok = false;
	if (!last)
		return;
	while (last > text && last[-1] != ':')
		last--;
	if (sscanf(last, "%llu -> %llu (%lf),%lf MB/s ,%lf MB/s", &in, &out,
		   &a->ratio, &a->comp, &a->decomp) == 5) {
		a->in = in;
		a->out = out;
		a->ok = true;
	}
}

static int write_file(const char *path, const uint8_t *p, uint64_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	int rc;

	if (fd < 0)
		return -errno;
	rc = wire_write_all(fd, p, len);
	if (close(fd) != 0 && rc == 0)
		rc = -errno;
	return rc;
}

static void lz4_anchor(const struct capture *c, const char *dir,
		       struct lz4_anchor a[2])
{
	char path[PATH_MAX];
	static const char *const blocks[2] = { NULL, "-B4096" };

	snprintf(path, sizeof(path), "%s/tandem-codec-pages-%d.bin", dir,
		 (int)getpid());
	a[0].ok = a[1].ok = false;
	if (write_file(path, c->data, c->n * PG) != 0) {
		fprintf(stderr, "bench_codec: cannot write %s\n", path);
		return;
	}
	for (int i = 0; i < 2; i++) {
		char *text = run_lz4(path, blocks[i]);

		if (text)
			lz4_parse(text, &a[i]);
		if (!a[i].ok)
			fprintf(stderr, "bench_codec: `lz4 -b1 %s` failed or "
				"printed nothing parseable\n",
				blocks[i] ? blocks[i] : "");
		free(text);
	}
	unlink(path);
}

/* ---- per guest -------------------------------------------------------- */

struct options {
	unsigned epochs, epoch_ms, reps;
	uint32_t cache;
	bool memstress, pagetest;
	const char *dir;
};

static void print_anchor(const char *name, const struct lz4_anchor *a)
{
	if (!a->ok) {
		printf("  %-26s (not available)\n", name);
		return;
	}
	printf("  %-26s %-12s %7s %8.0f %8s %8.0f %8s %8s %7.1f\n", name,
	       "all", "", a->comp, "", a->decomp, "", "", a->ratio);
}

static void print_verdict(const char *what, const double codec[2],
			  const struct lz4_anchor *a)
{
	if (!a->ok)
		return;
	printf("  => per core, codec (all, best) vs %s: encode %.0f vs %.0f "
	       "MB/s (%.2fx, %s), decode %.0f vs %.0f MB/s (%.2fx)\n", what,
	       codec[0], a->comp, codec[0] / a->comp,
	       codec[0] >= a->comp ? "at least as fast" : "slower",
	       codec[1], a->decomp, codec[1] / a->decomp);
}

static int bench_guest(const struct guest_def *g, const struct options *opt,
		       struct capture *c, struct bodies *b)
{
	struct variant vars[3] = {
		{ .name = "codec: zero/xor/lz4/raw" },
		{ .name = "codec: lz4 only (no cache)" },
		{ .name = "codec: off (zero/raw)" },
	};
	struct lz4_anchor anchor[2];
	double best[2] = { 0, 0 };
	uint8_t *shadow;
	int rc;

	c->n = 0;
	c->nepochs = 0;
	rc = capture_guest(g, opt->epochs, opt->epoch_ms, c);
	if (rc != 0)
		return rc;
	printf("\n-- %s (%s): full copy %" PRIu64 " pages, then %u epochs of "
	       "%u ms: %" PRIu64 " dirty pages (%.1f MiB captured in all)\n",
	       g->name, g->cmdline, c->epoch_end[0], c->nepochs - 1,
	       opt->epoch_ms, c->n - c->epoch_end[0],
	       (double)(c->n * PG) / (1 << 20));
	shadow = malloc(c->nr_pages * PG);
	if (!shadow)
		return -ENOMEM;
	memset(shadow, 0, c->nr_pages * PG); /* a standby's memory is resident */
	/* Fault in the output buffer for the largest encoding (all raw). */
	wire_buf_reset(&b->all);
	wire_put_bytes(&b->all, c->data, c->n * PG);
	wire_put_bytes(&b->all, c->data, c->n * 16);
	if (b->all.rc)
		rc = b->all.rc;
	wire_buf_reset(&b->all);
	for (int v = 0; v < 3; v++) {
		codec_opts_init(&vars[v].opts);
		vars[v].opts.cache_pages = v == 0 ? opt->cache : 0;
		vars[v].opts.compress = v != 2;
	}
	printf("  %-26s %-12s %7s %8s %8s %8s %8s %8s %7s\n", "variant",
	       "phase", "pages", "enc best", "enc med", "dec best", "dec med",
	       "+copy", "ratio");
	for (int v = 2; v >= 0 && rc == 0; v--) {
		rc = run_variant(c, &vars[v], opt->reps, b, shadow);
		for (unsigned p = 0; rc == 0 && p < 3; p++)
			print_row(&vars[v], c, opt->reps, p, v == 0 && p == 2 ? best
									      : NULL);
		if (rc == 0)
			print_mix(&vars[v]);
	}
	free(shadow);
	if (rc == 0)
		rc = xor_check(c, b);   /* b holds variant 0's bodies */
	if (rc != 0)
		return rc;
	lz4_anchor(c, opt->dir, anchor);
	print_anchor("anchor: lz4 -b1 FILE", &anchor[0]);
	print_anchor("anchor: lz4 -b1 -B4096 FILE", &anchor[1]);
	print_verdict("`lz4 -b1`", best, &anchor[0]);
	print_verdict("`lz4 -b1 -B4096`", best, &anchor[1]);
	return 0;
}

/* Creating a pair allocates and faults in both caches: a one-time cost
 * per channel, outside the timings above. */
static void print_setup(uint32_t cache)
{
	struct codec_opts o;
	struct codec_enc *e;
	struct codec_dec *d;
	uint64_t t0;

	codec_opts_init(&o);
	o.cache_pages = cache;
	t0 = bench_now_ns();
	e = codec_enc_new(&o);
	d = codec_dec_new(&o);
	printf("setup: an encoder and a decoder with %" PRIu32 "-page caches "
	       "are created in %.1f ms (caches faulted in then, not while "
	       "encoding)\n", cache, (double)(bench_now_ns() - t0) / 1e6);
	codec_enc_free(e);
	codec_dec_free(d);
}

/* ---- main ------------------------------------------------------------- */

static void usage(void)
{
	fprintf(stderr, "usage: bench_codec [--guest memstress|pagetest|both] "
		"[--epochs N] [--epoch-ms MS] [--reps R] [--cache PAGES] "
		"[--quick]\n");
	exit(2);
}

static void parse_args(int argc, char **argv, struct options *o)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--quick") == 0) {
			o->epochs = 4;
			o->reps = 1;
		} else if (!v) {
			usage();
		} else if (strcmp(a, "--guest") == 0) {
			o->memstress = strcmp(v, "pagetest") != 0;
			o->pagetest = strcmp(v, "memstress") != 0;
			if (strcmp(v, "both") && strcmp(v, "pagetest") &&
			    strcmp(v, "memstress"))
				usage();
			i++;
		} else if (strcmp(a, "--epochs") == 0) {
			o->epochs = (unsigned)bench_parse_u64("bench_codec", a, v);
			i++;
		} else if (strcmp(a, "--epoch-ms") == 0) {
			o->epoch_ms = (unsigned)bench_parse_u64("bench_codec", a, v);
			i++;
		} else if (strcmp(a, "--reps") == 0) {
			o->reps = (unsigned)bench_parse_u64("bench_codec", a, v);
			i++;
		} else if (strcmp(a, "--cache") == 0) {
			o->cache = (uint32_t)bench_parse_u64("bench_codec", a, v);
			i++;
		} else {
			usage();
		}
	}
	if (o->epochs >= MAX_EPOCHS || o->reps > MAX_REPS)
		usage();
}

int main(int argc, char **argv)
{
	struct options opt = { .epochs = 10, .epoch_ms = 50, .reps = 5,
			       .cache = CODEC_CACHE_DEFAULT, .memstress = true,
			       .pagetest = true };
	struct codec_opts check;
	struct capture c = { 0 };
	struct bodies b = { 0 };
	char err[WIRE_ERR_MAX];
	int rc = 0;

	opt.dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	parse_args(argc, argv, &opt);
	codec_opts_init(&check);
	check.cache_pages = opt.cache;
	if (codec_opts_check(&check, err, sizeof(err)) != 0) {
		fprintf(stderr, "bench_codec: --cache: %s\n", err);
		return 2;
	}
	bench_quiet_logs();
	bench_print_machine("bench_codec: page codecs on real dirty pages, "
			    "anchored by the lz4 command");
	printf("%u rep(s), fresh encoder/decoder per rep, one thread; MB/s = "
	       "10^6 page bytes per second (wall clock), best and median over "
	       "reps;\ndec = decode with a sink that only looks at the page, "
	       "+copy = best decode with a sink that copies it into guest-sized "
	       "memory;\nratio = page bytes / (bodies + record headers + "
	       "padding); XOR cache %" PRIu32 " pages\n", opt.reps, opt.cache);
	print_setup(opt.cache);
	c.pfn = malloc(CAPTURE_MAX_PAGES * sizeof(uint64_t));
	c.data = malloc(CAPTURE_MAX_PAGES * PG);
	b.off = malloc(CAPTURE_MAX_PAGES * sizeof(size_t));
	b.len = malloc(CAPTURE_MAX_PAGES * sizeof(size_t));
	b.first = malloc(CAPTURE_MAX_PAGES * sizeof(uint64_t));
	if (!c.pfn || !c.data || !b.off || !b.len || !b.first) {
		fprintf(stderr, "bench_codec: out of memory\n");
		return 1;
	}
	wire_buf_init(&b.all);
	for (size_t g = 0; g < 2 && rc == 0; g++)
		if (g == 0 ? opt.memstress : opt.pagetest)
			rc = bench_guest(&guests[g], &opt, &c, &b);
	wire_buf_fini(&b.all);
	free(c.pfn);
	free(c.data);
	free(b.off);
	free(b.len);
	free(b.first);
	if (rc != 0) {
		fprintf(stderr, "bench_codec: failed: %s\n", strerror(-rc));
		return 1;
	}
	return 0;
}
