/*
 * bench_dirty.c - dirty-log fetch time vs memory size and dirty-set size,
 * for each tracking mechanism (uffd-wp, mprotect).
 *
 * No guest: the tracker (uvm/dirty.h) runs on a plain anonymous mapping
 * (MAP_NORESERVE, MADV_NOHUGEPAGE as the uvm arena does).  Per size the
 * whole range is populated once with memset and reused for every dirty-set
 * size and both mechanisms; the tracker is created, enabled and freed per
 * mechanism.  Per trial: write one byte to each of D distinct random pages
 * (in random order; this is the "write phase", whose tracking faults are
 * the guest's cost, not the fetch's), then fetch into a cleared bitmap
 * (timed) and compare it with the pages written: misses must be 0 (a miss
 * is a correctness error: the program says so loudly and exits 1); false
 * positives are counted and printed.
 *
 * Anchors in the same run: mincore() over the whole range (the per-PTE
 * cost of a full page-table walk, i.e. what a fetch would cost if it
 * scanned everything), a read-only PAGEMAP_SCAN of the whole range while
 * the uffd-wp tracker is enabled and clean (the walk a fetch without the
 * 2 MiB mprotect hint would make; it changes no state), and a memcpy of
 * the dirty set (D pages gathered into a buffer: the cheapest possible
 * use of the result).
 *
 * usage: bench_dirty [--quick] [--trials N] [--sizes 64M,256M,...]
 */
#include "benchlib.h"
#include "dirty.h"
#include "kernel_compat.h"
#include "hv.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096ULL
#define MAX_TRIALS 64
#define MAX_SIZES 8
#define MINCORE_REPS 5

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng_next(void)
{
	uint64_t x = rng_state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng_state = x;
	return x * 0x2545f4914f6cdd1dULL;
}

/* Uniform in [0, bound), bound > 0 (the modulo bias is negligible here). */
static uint64_t rng_below(uint64_t bound)
{
	return rng_next() % bound;
}

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || end == s)
		return -1;
	switch (*end) {
	case 'M': case 'm': v <<= 20; end++; break;
	case 'G': case 'g': v <<= 30; end++; break;
	default: break;
	}
	if ((*end != '\0' && *end != ',') || v == 0 || v % (2ULL << 20) != 0)
		return -1;
	*out = v;
	return 0;
}

/* ---- bitmaps and the random dirty set ------------------------------------- */

static bool bit_test(const uint64_t *bm, uint64_t i)
{
	return (bm[i / 64] >> (i % 64)) & 1;
}

static void bit_set(uint64_t *bm, uint64_t i)
{
	bm[i / 64] |= 1ULL << (i % 64);
}

/*
 * D distinct pages of [0, n) into list[] (Floyd's algorithm, using `want`
 * as the membership set, which ends up holding exactly those pages), then
 * shuffled so the write order is random too.
 */
static void pick_pages(uint64_t n, uint64_t d, uint64_t *want,
		       uint64_t *list)
{
	uint64_t k = 0;

	memset(want, 0, ((n + 63) / 64) * sizeof(uint64_t));
	for (uint64_t j = n - d; j < n; j++) {
		uint64_t t = rng_below(j + 1);

		if (bit_test(want, t))
			t = j;
		bit_set(want, t);
		list[k++] = t;
	}
	for (uint64_t i = d - 1; i > 0; i--) {
		uint64_t r = rng_below(i + 1), tmp = list[i];

		list[i] = list[r];
		list[r] = tmp;
	}
}

static void compare(const uint64_t *got, const uint64_t *want, uint64_t n,
		    uint64_t *fp, uint64_t *miss)
{
	for (uint64_t w = 0; w < (n + 63) / 64; w++) {
		*fp += (uint64_t)__builtin_popcountll(got[w] & ~want[w]);
		*miss += (uint64_t)__builtin_popcountll(want[w] & ~got[w]);
	}
}

/* ---- measurements ----------------------------------------------------------- */

struct row {
	uint64_t d;
	uint64_t write_ns;   /* median over trials */
	uint64_t fetch_ns;   /* median */
	uint64_t fetch_min, fetch_max;
	uint64_t memcpy_ns;  /* median */
	uint64_t trim_ns;    /* median uvm_dirty_trim, run as if the guest ran */
	uint64_t regions;    /* median ring entries visited per fetch */
	uint64_t fp, miss;   /* totals over trials */
	uint64_t faults;     /* per trial (total / trials) */
	uint64_t escalations;
	unsigned failed_trial; /* when run_row fails */
};

struct scratch {
	uint64_t *want, *got, *list;
	uint8_t *copy;       /* D pages of memcpy destination */
};

static int run_row(struct uvm_dirty *d, uint8_t *base, uint64_t npages,
		   uint64_t dset, unsigned trials, struct scratch *s,
		   struct row *r)
{
	uint64_t wr[MAX_TRIALS], fe[MAX_TRIALS], mc[MAX_TRIALS], rg[MAX_TRIALS];
	uint64_t tr[MAX_TRIALS], closed;
	size_t bmbytes = ((npages + 63) / 64) * sizeof(uint64_t);
	struct uvm_dirty_counters c0, c1;
	struct hv_dirty_stats st;
	int rc;

	memset(r, 0, sizeof(*r));
	r->d = dset;
	uvm_dirty_counters(d, &c0);
	for (unsigned t = 0; t < trials; t++) {
		uint64_t t0, t1;

		pick_pages(npages, dset, s->want, s->list);
		memset(s->got, 0, bmbytes);
		t0 = bench_now_ns();
		for (uint64_t i = 0; i < dset; i++)
			((volatile uint8_t *)base)[s->list[i] * PAGE + (t % PAGE)] =
				(uint8_t)(t + 1);
		t1 = bench_now_ns();
		wr[t] = t1 - t0;
		t0 = bench_now_ns();
		rc = uvm_dirty_fetch(d, s->got, &st);
		fe[t] = bench_now_ns() - t0;
		if (rc != 0) {
			uvm_dirty_counters(d, &c1);
			r->faults = (c1.faults - c0.faults) / (t + 1);
			r->escalations = c1.escalations - c0.escalations;
			r->failed_trial = t;
			return rc;
		}
		rg[t] = st.regions;
		compare(s->got, s->want, npages, &r->fp, &r->miss);
		t0 = bench_now_ns();
		for (uint64_t i = 0; i < dset; i++)
			memcpy(s->copy + i * PAGE, base + s->list[i] * PAGE, PAGE);
		mc[t] = bench_now_ns() - t0;
		t0 = bench_now_ns();
		rc = uvm_dirty_trim(d, &closed);
		tr[t] = bench_now_ns() - t0;
		if (rc != 0)
			return rc;
	}
	uvm_dirty_counters(d, &c1);
	r->write_ns = bench_median(wr, trials);
	r->memcpy_ns = bench_median(mc, trials);
	r->trim_ns = bench_median(tr, trials);
	r->regions = bench_median(rg, trials);
	r->fetch_ns = bench_median(fe, trials); /* sorts fe */
	r->fetch_min = fe[0];
	r->fetch_max = fe[trials - 1];
	r->faults = (c1.faults - c0.faults) / trials;
	r->escalations = c1.escalations - c0.escalations;
	return 0;
}

static uint64_t time_mincore(uint8_t *base, uint64_t len, unsigned char *vec,
			     uint64_t *resident)
{
	uint64_t t[MINCORE_REPS];

	for (int i = 0; i < MINCORE_REPS; i++) {
		uint64_t t0 = bench_now_ns();

		if (mincore(base, len, vec) != 0) {
			perror("bench_dirty: mincore");
			exit(1);
		}
		t[i] = bench_now_ns() - t0;
	}
	*resident = 0;
	for (uint64_t i = 0; i < len / PAGE; i++)
		*resident += vec[i] & 1;
	return bench_median(t, MINCORE_REPS);
}

/* Read-only PAGEMAP_SCAN for written pages over [base, base + len):
 * median ns of MINCORE_REPS walks; *written gets the pages reported. */
static int time_pagemap_scan(uint8_t *base, uint64_t len, uint64_t *ns,
			     uint64_t *written)
{
	static struct page_region vec[512];
	uint64_t t[MINCORE_REPS];
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	for (int i = 0; i < MINCORE_REPS; i++) {
		uint64_t start = (uint64_t)(uintptr_t)base, end = start + len;
		uint64_t t0 = bench_now_ns();

		*written = 0;
		while (start < end) {
			struct pm_scan_arg arg = {
				.size = sizeof(arg),
				.start = start,
				.end = end,
				.vec = (uint64_t)(uintptr_t)vec,
				.vec_len = sizeof(vec) / sizeof(vec[0]),
				.category_mask = PAGE_IS_WRITTEN,
				.return_mask = PAGE_IS_WRITTEN,
			};
			long n = ioctl(fd, PAGEMAP_SCAN, &arg);

			if (n < 0) {
				int rc = -errno;

				close(fd);
				return rc;
			}
			for (long k = 0; k < n; k++)
				*written += (vec[k].end - vec[k].start) / PAGE;
			start = arg.walk_end;
		}
		t[i] = bench_now_ns() - t0;
	}
	close(fd);
	*ns = bench_median(t, MINCORE_REPS);
	return 0;
}

static const uint64_t dirty_sets[] = { 16, 256, 4096, 65536 };
#define NR_DSETS (sizeof(dirty_sets) / sizeof(dirty_sets[0]))

static int run_size(uint64_t size, unsigned trials, struct scratch *s,
		    uint64_t *total_miss, unsigned *failures)
{
	static const enum hv_dirty_mech mechs[] = { HV_DIRTY_UFFD_WP,
						    HV_DIRTY_MPROTECT };
	uint64_t npages = size / PAGE, t0, populate_ns, mincore_ns, resident;
	unsigned char *vec = malloc(npages);
	uint8_t *base;
	int rc = 0;

	if (vec == NULL)
		return -ENOMEM;
	base = mmap(NULL, size, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (base == MAP_FAILED) {
		rc = -errno;
		fprintf(stderr, "bench_dirty: mmap %" PRIu64 " MiB: %s\n",
			size >> 20, strerror(errno));
		free(vec);
		return rc;
	}
	(void)madvise(base, size, MADV_NOHUGEPAGE);
	t0 = bench_now_ns();
	memset(base, 0x5a, size);
	populate_ns = bench_now_ns() - t0;
	mincore_ns = time_mincore(base, size, vec, &resident);
	printf("\n-- %" PRIu64 " MiB (%" PRIu64 " pages): populate (memset) "
	       "%.0f ms; anchor mincore() over all of it: %.1f us (%.1f ns/page, "
	       "%" PRIu64 " resident)\n", size >> 20, npages, populate_ns / 1e6,
	       mincore_ns / 1e3, (double)mincore_ns / (double)npages, resident);
	fflush(stdout);

	for (size_t m = 0; m < sizeof(mechs) / sizeof(mechs[0]) && rc == 0; m++) {
		struct uvm_dirty *d = NULL;
		uint64_t enable_ns;

		rc = uvm_dirty_new(base, size, mechs[m], &d);
		if (rc != 0) {
			printf("   %-8s unavailable here: %s\n",
			       hv_dirty_mech_name(mechs[m]), strerror(-rc));
			rc = 0;
			continue;
		}
		t0 = bench_now_ns();
		rc = uvm_dirty_enable(d);
		enable_ns = bench_now_ns() - t0;
		if (rc != 0) {
			fprintf(stderr, "bench_dirty: enable %s: %s\n",
				hv_dirty_mech_name(mechs[m]), strerror(-rc));
			uvm_dirty_free(d);
			break;
		}
		printf("   %s: enable %.1f ms\n", hv_dirty_mech_name(mechs[m]),
		       enable_ns / 1e6);
		if (mechs[m] == HV_DIRTY_UFFD_WP) {
			uint64_t scan_ns = 0, written = 0;

			if (time_pagemap_scan(base, size, &scan_ns, &written) == 0)
				printf("   anchor: read-only PAGEMAP_SCAN of the whole "
				       "range (tracker enabled, clean): %.1f us "
				       "(%.1f ns/page, %" PRIu64 " written)\n",
				       scan_ns / 1e3,
				       (double)scan_ns / (double)npages, written);
		}
		printf("   %-8s %6s %9s %8s %10s %10s %10s %8s %8s %6s %9s %6s %10s %9s\n",
		       "mech", "D", "write ms", "ns/page", "fetch us", "min us",
		       "max us", "regions", "faults", "misses", "false+", "esc",
		       "memcpy us", "trim us");
		for (size_t i = 0; i < NR_DSETS && rc == 0; i++) {
			uint64_t dset = dirty_sets[i] < npages ? dirty_sets[i]
							       : npages;
			struct row r;

			if (i > 0 && dirty_sets[i - 1] >= npages)
				break; /* capped at the size already */
			rc = run_row(d, base, npages, dset, trials, s, &r);
			if (rc != 0) {
				/* A failed fetch leaves the round half consumed:
				 * this tracker is done, later sizes still run. */
				printf("   %-8s %6" PRIu64 "   *** ERROR: uvm_dirty_fetch "
				       "failed in trial %u: %s (faults/trial %" PRIu64
				       ", escalations %" PRIu64 ") ***\n",
				       hv_dirty_mech_name(mechs[m]), dset,
				       r.failed_trial + 1, strerror(-rc), r.faults,
				       r.escalations);
				(*failures)++;
				rc = 0;
				break;
			}
			*total_miss += r.miss;
			printf("   %-8s %6" PRIu64 " %9.2f %8.0f %10.1f %10.1f "
			       "%10.1f %8" PRIu64 " %8" PRIu64 " %6" PRIu64
			       " %9" PRIu64 " %6" PRIu64 " %10.1f %9.1f%s\n",
			       hv_dirty_mech_name(mechs[m]), r.d, r.write_ns / 1e6,
			       (double)r.write_ns / (double)r.d, r.fetch_ns / 1e3,
			       r.fetch_min / 1e3, r.fetch_max / 1e3, r.regions,
			       r.faults, r.miss, r.fp, r.escalations,
			       r.memcpy_ns / 1e3, r.trim_ns / 1e3,
			       r.miss ? "   <== MISSED PAGES" : "");
			fflush(stdout);
		}
		uvm_dirty_free(d);
	}
	munmap(base, size);
	free(vec);
	return rc;
}

int main(int argc, char **argv)
{
	uint64_t sizes[MAX_SIZES] = { 64ULL << 20, 256ULL << 20, 1ULL << 30,
				      4ULL << 30 };
	unsigned nsizes = 4, trials = 10;
	uint64_t max_pages = 0, max_d = dirty_sets[NR_DSETS - 1], miss = 0;
	unsigned failures = 0;
	struct scratch s;
	int rc = 0;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--quick") == 0) {
			nsizes = 2;
		} else if (strcmp(argv[i], "--trials") == 0 && i + 1 < argc) {
			trials = (unsigned)atoi(argv[++i]);
			if (trials < 1 || trials > MAX_TRIALS) {
				fprintf(stderr, "bench_dirty: --trials 1..%d\n",
					MAX_TRIALS);
				return 2;
			}
		} else if (strcmp(argv[i], "--sizes") == 0 && i + 1 < argc) {
			const char *p = argv[++i];

			for (nsizes = 0; nsizes < MAX_SIZES && *p != '\0'; nsizes++) {
				if (parse_size(p, &sizes[nsizes]) != 0) {
					fprintf(stderr, "bench_dirty: bad size in "
						"\"%s\" (multiples of 2M, with "
						"M or G)\n", argv[i]);
					return 2;
				}
				p += strcspn(p, ",");
				p += *p == ',';
			}
		} else {
			fprintf(stderr, "usage: bench_dirty [--quick] [--trials "
				"N] [--sizes 64M,256M,1G,4G]\n");
			return 2;
		}
	}
	bench_quiet_logs();
	bench_print_machine("bench_dirty: dirty-log fetch vs memory size and dirty set");
	printf("%u trials per row; columns are medians over the trials unless "
	       "named min/max\n", trials);
	printf("write = one byte to each of D random distinct pages (tracking "
	       "faults included); fetch = uvm_dirty_fetch into a cleared "
	       "bitmap;\nring = ring entries the fetch visited (2 MiB regions "
	       "for uffd-wp, pages for mprotect); faults = tracking faults per "
	       "trial;\nfalse+ = reported pages not written (total over trials), "
	       "esc = mprotect escalations to whole 2 MiB regions;\nmemcpy = "
	       "anchor: gather-copy of the D dirty pages (D x 4 KiB)\n");
	for (unsigned i = 0; i < nsizes; i++)
		if (sizes[i] / PAGE > max_pages)
			max_pages = sizes[i] / PAGE;
	if (max_d > max_pages)
		max_d = max_pages;
	s.want = calloc((max_pages + 63) / 64, sizeof(uint64_t));
	s.got = calloc((max_pages + 63) / 64, sizeof(uint64_t));
	s.list = calloc(max_d, sizeof(uint64_t));
	s.copy = malloc(max_d * PAGE);
	if (s.want == NULL || s.got == NULL || s.list == NULL || s.copy == NULL) {
		fprintf(stderr, "bench_dirty: out of memory\n");
		return 1;
	}
	memset(s.copy, 0, max_d * PAGE); /* fault the anchor's buffer in now */
	for (unsigned i = 0; i < nsizes && rc == 0; i++)
		rc = run_size(sizes[i], trials, &s, &miss, &failures);
	free(s.want);
	free(s.got);
	free(s.list);
	free(s.copy);
	if (miss != 0)
		printf("\n*** ERROR: %" PRIu64 " written page(s) were MISSED by a "
		       "dirty fetch: the tracker is not exact ***\n", miss);
	if (failures != 0)
		printf("\n*** ERROR: %u dirty fetch(es) failed (see the rows "
		       "marked ERROR) ***\n", failures);
	if (miss != 0 || failures != 0)
		return 1;
	return rc == 0 ? 0 : 1;
}
