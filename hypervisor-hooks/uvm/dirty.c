/*
 * dirty.c - dirty-page tracking for a uvm arena (see dirty.h for the
 * mechanisms).
 *
 * Exactness argument.  A unit (2 MiB region for uffd-wp, page for mprotect)
 * is closed (read-only, touched bit clear, no ring entry) or open
 * (writable, bit set, on the ring or, for uffd-wp, in the open set).
 *
 *   fault:  mprotect(unit, RW); if (test_and_set(bit) was 0) push(unit)
 *   close:  clear(bit); mprotect(unit, RO);
 *           uffd-wp: PAGEMAP_SCAN(unit) reports and re-protects written pages
 *           mprotect: report every page of the unit
 *
 * A write that lands between clear and mprotect(RO) hits a writable unit
 * and does not fault, but it happens before this fetch reports the unit
 * (mprotect) or before the scan (uffd-wp, whose per-page write-protect
 * catches it), so it is reported now.  A write after mprotect(RO) faults,
 * finds the bit clear and pushes the unit again.  A fault that raced the
 * fetch's clear finds the bit clear too and pushes.  An open uffd-wp region
 * is rescanned at every fetch, and its pages stay write-protected between
 * scans, so a write to it is caught by the next scan.  Nothing is lost.
 *
 * The ring is multi-producer (fault handlers on any thread, async-signal
 * context) and single-consumer (the fetch, serialised by a mutex).
 */
#include "dirty.h"
#include "kernel_compat.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define DIRTY_PAGE_SHIFT 12
#define DIRTY_REGION_SHIFT 21
#define DIRTY_RING_EMPTY UINT64_MAX
#define DIRTY_COARSE (1ULL << 63) /* ring entry names a whole region */
#define DIRTY_VEC_LEN 512
#define DIRTY_MAX_TRACKERS 16
#define DIRTY_IDLE_FETCHES 4 /* clean fetches before a region is closed */
/* Guest memory holds guest code: closed and open both keep it executable. */
#define DIRTY_PROT_CLOSED (PROT_READ | PROT_EXEC)
#define DIRTY_PROT_OPEN (PROT_READ | PROT_WRITE | PROT_EXEC)

struct uvm_dirty {
	uint8_t *base;
	size_t len;
	enum hv_dirty_mech mech;
	unsigned unit_shift;
	uint64_t nunits;
	uint64_t nregions;
	atomic_bool enabled;
	int uffd;
	int pagemap_fd;
	_Atomic uint64_t *touched;  /* one bit per unit */
	_Atomic uint64_t *coarse;   /* mprotect mode: one bit per region */
	uint64_t *open;             /* uffd-wp: regions kept open, rescanned */
	uint64_t *closing;          /* uffd-wp: closed by trim, scan once more */
	uint8_t *idle;              /* uffd-wp: fetches since a region's last write */
	_Atomic uint64_t *ring;
	uint64_t ring_mask;
	atomic_uint_fast64_t head;  /* producers */
	uint64_t tail;              /* consumer, under fetch_lock */
	pthread_mutex_t fetch_lock;
	struct page_region vec[DIRTY_VEC_LEN];
	atomic_bool overflow;       /* whole arena opened: report it all */
	atomic_uint_fast64_t faults;
	atomic_uint_fast64_t escalations;
	uint64_t fetches;
	uint64_t pages_reported;
};

static struct uvm_dirty *_Atomic dirty_trackers[DIRTY_MAX_TRACKERS];

static uint64_t dirty_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static bool dirty_test_and_set(_Atomic uint64_t *bits, uint64_t i)
{
	uint64_t m = 1ULL << (i & 63);

	return (atomic_fetch_or(&bits[i >> 6], m) & m) != 0;
}

static void dirty_clear(_Atomic uint64_t *bits, uint64_t i)
{
	atomic_fetch_and(&bits[i >> 6], ~(1ULL << (i & 63)));
}

static void dirty_bitmap_set_range(uint64_t *bitmap, uint64_t first,
				   uint64_t count)
{
	for (uint64_t i = first; i < first + count; i++)
		bitmap[i >> 6] |= 1ULL << (i & 63);
}

/* ---- probing -------------------------------------------------------- */

static int dirty_uffd_open(void)
{
	struct uffdio_api api = {
		.api = UFFD_API,
		.features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED,
	};
	int fd = (int)syscall(SYS_userfaultfd,
			      O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);

	if (fd < 0)
		return -errno;
	if (ioctl(fd, UFFDIO_API, &api) != 0) {
		int rc = -errno;

		close(fd);
		return rc;
	}
	return fd;
}

static int dirty_pagemap_probe(int fd, void *addr)
{
	struct pm_scan_arg arg = {
		.size = sizeof(arg),
		.start = (uint64_t)(uintptr_t)addr,
		.end = (uint64_t)(uintptr_t)addr,
	};

	return ioctl(fd, PAGEMAP_SCAN, &arg) < 0 ? -errno : 0;
}

/* 0 if uffd-wp async + PAGEMAP_SCAN work here; fills the two fds. */
static int dirty_probe_uffd(struct uvm_dirty *d)
{
	int rc;

	d->uffd = dirty_uffd_open();
	if (d->uffd < 0)
		return d->uffd;
	d->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (d->pagemap_fd < 0)
		return -errno;
	rc = dirty_pagemap_probe(d->pagemap_fd, d->base);
	return rc;
}

static void dirty_close_fds(struct uvm_dirty *d)
{
	if (d->uffd >= 0)
		close(d->uffd);
	if (d->pagemap_fd >= 0)
		close(d->pagemap_fd);
	d->uffd = d->pagemap_fd = -1;
}

static enum hv_dirty_mech dirty_env_choice(enum hv_dirty_mech want)
{
	const char *env = getenv("TANDEM_DIRTY");

	if (want != HV_DIRTY_AUTO || env == NULL)
		return want;
	if (strcmp(env, "mprotect") == 0)
		return HV_DIRTY_MPROTECT;
	if (strcmp(env, "uffd-wp") == 0)
		return HV_DIRTY_UFFD_WP;
	log_warn("dirty: TANDEM_DIRTY=\"%s\" is not uffd-wp or mprotect; "
		 "choosing automatically", env);
	return HV_DIRTY_AUTO;
}

static int dirty_choose(struct uvm_dirty *d, enum hv_dirty_mech want)
{
	int rc;

	want = dirty_env_choice(want);
	if (want == HV_DIRTY_MPROTECT) {
		d->mech = HV_DIRTY_MPROTECT;
		return 0;
	}
	rc = dirty_probe_uffd(d);
	if (rc == 0) {
		d->mech = HV_DIRTY_UFFD_WP;
		return 0;
	}
	dirty_close_fds(d);
	if (want == HV_DIRTY_UFFD_WP) {
		log_error("dirty: uffd-wp was asked for but this kernel lacks it "
			  "(%s)", strerror(-rc));
		return rc;
	}
	log_info("dirty: userfaultfd async write-protect unavailable (%s); "
		 "using mprotect", strerror(-rc));
	d->mech = HV_DIRTY_MPROTECT;
	return 0;
}

/* ---- construction ---------------------------------------------------- */

static uint64_t dirty_pow2_at_least(uint64_t n)
{
	uint64_t p = 64;

	while (p < n)
		p <<= 1;
	return p;
}

static int dirty_alloc(struct uvm_dirty *d)
{
	uint64_t cap;

	d->unit_shift = d->mech == HV_DIRTY_UFFD_WP ? DIRTY_REGION_SHIFT
						    : DIRTY_PAGE_SHIFT;
	d->nunits = (d->len + (1ULL << d->unit_shift) - 1) >> d->unit_shift;
	d->nregions = (d->len + (1ULL << DIRTY_REGION_SHIFT) - 1) >>
		      DIRTY_REGION_SHIFT;
	cap = dirty_pow2_at_least(d->nunits + d->nregions);
	d->touched = calloc((d->nunits + 63) / 64, sizeof(uint64_t));
	d->coarse = calloc((d->nregions + 63) / 64, sizeof(uint64_t));
	d->ring = malloc(cap * sizeof(uint64_t));
	d->open = calloc((d->nregions + 63) / 64, sizeof(uint64_t));
	d->closing = calloc((d->nregions + 63) / 64, sizeof(uint64_t));
	d->idle = calloc(d->nregions, 1);
	if (d->touched == NULL || d->coarse == NULL || d->ring == NULL ||
	    d->open == NULL || d->closing == NULL || d->idle == NULL)
		return -ENOMEM;
	for (uint64_t i = 0; i < cap; i++)
		atomic_init(&d->ring[i], DIRTY_RING_EMPTY);
	d->ring_mask = cap - 1;
	return 0;
}

static int dirty_register(struct uvm_dirty *d)
{
	for (int i = 0; i < DIRTY_MAX_TRACKERS; i++) {
		struct uvm_dirty *expect = NULL;

		if (atomic_compare_exchange_strong(&dirty_trackers[i], &expect, d))
			return 0;
	}
	log_error("dirty: more than %d trackers in one process",
		  DIRTY_MAX_TRACKERS);
	return -EMFILE;
}

static void dirty_unregister(struct uvm_dirty *d)
{
	for (int i = 0; i < DIRTY_MAX_TRACKERS; i++) {
		struct uvm_dirty *expect = d;

		atomic_compare_exchange_strong(&dirty_trackers[i], &expect, NULL);
	}
}

int uvm_dirty_new(void *base, size_t len, enum hv_dirty_mech want,
		  struct uvm_dirty **out)
{
	struct uvm_dirty *d = calloc(1, sizeof(*d));
	int rc;

	*out = NULL;
	if (d == NULL)
		return -ENOMEM;
	d->base = base;
	d->len = len;
	d->uffd = d->pagemap_fd = -1;
	pthread_mutex_init(&d->fetch_lock, NULL);
	rc = dirty_choose(d, want);
	if (rc == 0)
		rc = dirty_alloc(d);
	if (rc == 0)
		rc = dirty_register(d);
	if (rc != 0) {
		uvm_dirty_free(d);
		return rc;
	}
	log_debug("dirty: tracking %zu MiB with %s", len >> 20,
		 hv_dirty_mech_name(d->mech));
	*out = d;
	return 0;
}

void uvm_dirty_free(struct uvm_dirty *d)
{
	if (d == NULL)
		return;
	if (atomic_load(&d->enabled))
		(void)uvm_dirty_disable(d);
	dirty_unregister(d);
	dirty_close_fds(d);
	free(d->touched);
	free(d->coarse);
	free(d->ring);
	free(d->open);
	free(d->closing);
	free(d->idle);
	pthread_mutex_destroy(&d->fetch_lock);
	free(d);
}

enum hv_dirty_mech uvm_dirty_mech(const struct uvm_dirty *d)
{
	return d->mech;
}

bool uvm_dirty_enabled(const struct uvm_dirty *d)
{
	return atomic_load(&((struct uvm_dirty *)d)->enabled);
}

/* ---- fault path (async-signal-safe) ---------------------------------- */

static void dirty_push(struct uvm_dirty *d, uint64_t entry)
{
	uint64_t pos = atomic_fetch_add(&d->head, 1);

	atomic_store_explicit(&d->ring[pos & d->ring_mask], entry,
			      memory_order_release);
}

/* Bytes covered by units [first, first + count) of size 1 << shift,
 * clipped to the arena (its last unit may be partial). */
static size_t dirty_span(const struct uvm_dirty *d, uint64_t first,
			 uint64_t count, unsigned shift)
{
	size_t off = (size_t)first << shift, len = (size_t)count << shift;

	return len < d->len - off ? len : d->len - off;
}

/* Last resort when even a region cannot be opened: open everything (one
 * mapping again, so this cannot fail for lack of map slots), then flag it;
 * the next fetch reports the whole arena.  Open before flagging: a fetch
 * that sees the flag closes the arena after this opened it. */
static void dirty_overflow(struct uvm_dirty *d)
{
	(void)mprotect(d->base, d->len, DIRTY_PROT_OPEN);
	atomic_store(&d->overflow, true);
	atomic_fetch_add(&d->escalations, 1);
}

static void dirty_escalate(struct uvm_dirty *d, uint64_t page)
{
	uint64_t region = page >> (DIRTY_REGION_SHIFT - DIRTY_PAGE_SHIFT);
	size_t off = (size_t)region << DIRTY_REGION_SHIFT;

	if (mprotect(d->base + off, dirty_span(d, region, 1, DIRTY_REGION_SHIFT),
		     DIRTY_PROT_OPEN) != 0) {
		dirty_overflow(d);
		return;
	}
	if (!dirty_test_and_set(d->coarse, region)) {
		atomic_fetch_add(&d->escalations, 1);
		dirty_push(d, region | DIRTY_COARSE);
	}
}

static void dirty_open_unit(struct uvm_dirty *d, uint64_t unit)
{
	size_t off = (size_t)unit << d->unit_shift;

	if (mprotect(d->base + off, dirty_span(d, unit, 1, d->unit_shift),
		     DIRTY_PROT_OPEN) != 0) {
		if (d->unit_shift == DIRTY_PAGE_SHIFT)
			dirty_escalate(d, unit);
		else
			dirty_overflow(d);
		return;
	}
	if (!dirty_test_and_set(d->touched, unit))
		dirty_push(d, unit);
}

bool uvm_dirty_fault(void *addr)
{
	uint8_t *a = addr;

	for (int i = 0; i < DIRTY_MAX_TRACKERS; i++) {
		struct uvm_dirty *d = atomic_load(&dirty_trackers[i]);

		if (d == NULL || a < d->base || a >= d->base + d->len)
			continue;
		if (!atomic_load(&d->enabled))
			return false;
		atomic_fetch_add(&d->faults, 1);
		dirty_open_unit(d, (uint64_t)(a - d->base) >> d->unit_shift);
		return true;
	}
	return false;
}

static void (*dirty_next_handler)(int, siginfo_t *, void *);
static struct sigaction dirty_old_segv;

static void dirty_sigsegv(int sig, siginfo_t *si, void *uc)
{
	if (si->si_code == SEGV_ACCERR && uvm_dirty_fault(si->si_addr))
		return;
	if (dirty_next_handler != NULL) {
		dirty_next_handler(sig, si, uc);
		return;
	}
	if (dirty_old_segv.sa_flags & SA_SIGINFO) {
		dirty_old_segv.sa_sigaction(sig, si, uc);
		return;
	}
	/* Not ours and nobody else wants it: die the default way. */
	signal(sig, SIG_DFL);
}

/* (Re)install when SIGSEGV is not ours, e.g. after a library or a test
 * framework replaced it; what was there becomes the chained handler. */
void uvm_dirty_install_handler(void (*next)(int, siginfo_t *, void *))
{
	static pthread_mutex_t once = PTHREAD_MUTEX_INITIALIZER;
	struct sigaction sa, cur;

	pthread_mutex_lock(&once);
	if (next != NULL)
		dirty_next_handler = next;
	sigaction(SIGSEGV, NULL, &cur);
	if (!(cur.sa_flags & SA_SIGINFO) || cur.sa_sigaction != dirty_sigsegv) {
		memset(&sa, 0, sizeof(sa));
		sa.sa_sigaction = dirty_sigsegv;
		sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER | SA_RESTART;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGSEGV, &sa, &dirty_old_segv);
	}
	pthread_mutex_unlock(&once);
}

/* ---- enable / disable ------------------------------------------------ */

static int dirty_uffd_arm(struct uvm_dirty *d)
{
	struct uffdio_register reg = {
		.range = { (uint64_t)(uintptr_t)d->base, d->len },
		.mode = UFFDIO_REGISTER_MODE_WP,
	};
	struct uffdio_writeprotect wp = {
		.range = { (uint64_t)(uintptr_t)d->base, d->len },
		.mode = UFFDIO_WRITEPROTECT_MODE_WP,
	};

	if (ioctl(d->uffd, UFFDIO_REGISTER, &reg) != 0)
		return -errno;
	if (ioctl(d->uffd, UFFDIO_WRITEPROTECT, &wp) != 0)
		return -errno;
	return 0;
}

static void dirty_reset(struct uvm_dirty *d)
{
	memset(d->touched, 0, ((d->nunits + 63) / 64) * sizeof(uint64_t));
	memset(d->coarse, 0, ((d->nregions + 63) / 64) * sizeof(uint64_t));
	memset(d->open, 0, ((d->nregions + 63) / 64) * sizeof(uint64_t));
	memset(d->closing, 0, ((d->nregions + 63) / 64) * sizeof(uint64_t));
	memset(d->idle, 0, d->nregions);
	for (uint64_t i = 0; i <= d->ring_mask; i++)
		atomic_store(&d->ring[i], DIRTY_RING_EMPTY);
	atomic_store(&d->head, 0);
	atomic_store(&d->overflow, false);
	d->tail = 0;
}

int uvm_dirty_enable(struct uvm_dirty *d)
{
	int rc = 0;

	if (atomic_load(&d->enabled))
		return 0;
	uvm_dirty_install_handler(NULL);
	pthread_mutex_lock(&d->fetch_lock);
	dirty_reset(d);
	if (d->mech == HV_DIRTY_UFFD_WP)
		rc = dirty_uffd_arm(d);
	atomic_store(&d->enabled, true);
	if (rc == 0 && mprotect(d->base, d->len, DIRTY_PROT_CLOSED) != 0)
		rc = -errno;
	if (rc != 0) {
		atomic_store(&d->enabled, false);
		log_error("dirty: enabling %s tracking failed: %s",
			  hv_dirty_mech_name(d->mech), strerror(-rc));
	}
	pthread_mutex_unlock(&d->fetch_lock);
	return rc;
}

int uvm_dirty_disable(struct uvm_dirty *d)
{
	struct uffdio_range range = { (uint64_t)(uintptr_t)d->base, d->len };
	int rc = 0;

	if (!atomic_load(&d->enabled))
		return 0;
	pthread_mutex_lock(&d->fetch_lock);
	if (mprotect(d->base, d->len, DIRTY_PROT_OPEN) != 0)
		rc = -errno;
	atomic_store(&d->enabled, false);
	if (d->mech == HV_DIRTY_UFFD_WP &&
	    ioctl(d->uffd, UFFDIO_UNREGISTER, &range) != 0 && rc == 0)
		rc = -errno;
	pthread_mutex_unlock(&d->fetch_lock);
	return rc;
}

/* ---- fetch ------------------------------------------------------------ */

static uint64_t dirty_count_open(const struct uvm_dirty *d);

static uint64_t dirty_pop(struct uvm_dirty *d, uint64_t pos)
{
	_Atomic uint64_t *slot = &d->ring[pos & d->ring_mask];
	uint64_t v;

	/* A producer between its fetch_add and its store: wait it out. */
	while ((v = atomic_load_explicit(slot, memory_order_acquire)) ==
	       DIRTY_RING_EMPTY)
		sched_yield();
	atomic_store_explicit(slot, DIRTY_RING_EMPTY, memory_order_relaxed);
	return v;
}

/* Regions holding pages [first, first + count) were written: not idle. */
static void dirty_mark_active(struct uvm_dirty *d, uint64_t first,
			      uint64_t count)
{
	const unsigned per = DIRTY_REGION_SHIFT - DIRTY_PAGE_SHIFT;

	for (uint64_t r = first >> per; r <= (first + count - 1) >> per; r++)
		d->idle[r] = 0;
}

/* Scan [start, end) for written pages, re-protect them, report them. */
static int dirty_scan(struct uvm_dirty *d, uint64_t start, uint64_t end,
		      uint64_t *bitmap, uint64_t *pages)
{
	uint64_t base = (uint64_t)(uintptr_t)d->base;

	while (start < end) {
		struct pm_scan_arg arg = {
			.size = sizeof(arg),
			.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
			.start = start,
			.end = end,
			.vec = (uint64_t)(uintptr_t)d->vec,
			.vec_len = DIRTY_VEC_LEN,
			.category_mask = PAGE_IS_WRITTEN,
			.return_mask = PAGE_IS_WRITTEN,
		};
		long n = ioctl(d->pagemap_fd, PAGEMAP_SCAN, &arg);

		if (n < 0)
			return -errno;
		for (long i = 0; i < n; i++) {
			uint64_t first = (d->vec[i].start - base) >> DIRTY_PAGE_SHIFT;
			uint64_t count = (d->vec[i].end - d->vec[i].start) >>
					 DIRTY_PAGE_SHIFT;

			dirty_bitmap_set_range(bitmap, first, count);
			*pages += count;
			dirty_mark_active(d, first, count);
		}
		start = arg.walk_end;
	}
	return 0;
}

/* Make [off, off + len) read-only.  Out of mapping slots (splitting an
 * open area), close the whole arena instead, which merges mappings: units
 * still marked open keep their marks and are reported when consumed. */
static int dirty_close_range(struct uvm_dirty *d, size_t off, size_t len)
{
	if (mprotect(d->base + off, len, DIRTY_PROT_CLOSED) == 0)
		return 0;
	if (errno != ENOMEM || mprotect(d->base, d->len, DIRTY_PROT_CLOSED) != 0)
		return -errno;
	atomic_fetch_add(&d->escalations, 1);
	return 0;
}

/* Close units [first, first + count) of size 1 << shift and report. */
static int dirty_close_run(struct uvm_dirty *d, uint64_t first,
			   uint64_t count, unsigned shift, uint64_t *bitmap,
			   uint64_t *pages)
{
	size_t off = (size_t)first << shift;
	size_t len = dirty_span(d, first, count, shift);
	uint64_t pfn = off >> DIRTY_PAGE_SHIFT;
	int rc = dirty_close_range(d, off, len);

	if (rc != 0)
		return rc;
	if (d->mech == HV_DIRTY_UFFD_WP && shift == DIRTY_REGION_SHIFT)
		return dirty_scan(d, (uint64_t)(uintptr_t)(d->base + off),
				  (uint64_t)(uintptr_t)(d->base + off + len),
				  bitmap, pages);
	dirty_bitmap_set_range(bitmap, pfn, len >> DIRTY_PAGE_SHIFT);
	*pages += len >> DIRTY_PAGE_SHIFT;
	return 0;
}

/* Consume one ring entry; contiguous entries are closed as one run. */
static int dirty_consume(struct uvm_dirty *d, uint64_t *run_first,
			 uint64_t *run_len, uint64_t entry, uint64_t *bitmap,
			 uint64_t *pages)
{
	int rc = 0;

	if (entry & DIRTY_COARSE) {
		uint64_t region = entry & ~DIRTY_COARSE;

		dirty_clear(d->coarse, region);
		return dirty_close_run(d, region, 1, DIRTY_REGION_SHIFT, bitmap,
				       pages);
	}
	dirty_clear(d->touched, entry);
	if (*run_len > 0 && *run_first + *run_len == entry) {
		(*run_len)++;
		return 0;
	}
	if (*run_len > 0)
		rc = dirty_close_run(d, *run_first, *run_len, d->unit_shift,
				     bitmap, pages);
	*run_first = entry;
	*run_len = 1;
	return rc;
}

/* mprotect mode: every unit on the ring is closed and reported. */
static int dirty_fetch_ring(struct uvm_dirty *d, uint64_t head,
			    uint64_t *bitmap, uint64_t *pages)
{
	uint64_t run_first = 0, run_len = 0;
	int rc = 0;

	for (uint64_t pos = d->tail; pos != head && rc == 0; pos++)
		rc = dirty_consume(d, &run_first, &run_len, dirty_pop(d, pos),
				   bitmap, pages);
	if (rc == 0 && run_len > 0)
		rc = dirty_close_run(d, run_first, run_len, d->unit_shift,
				     bitmap, pages);
	if (rc == 0 && atomic_exchange(&d->overflow, false))
		rc = dirty_close_run(d, 0, d->nregions, DIRTY_REGION_SHIFT,
				     bitmap, pages);
	return rc;
}

static bool dirty_test(const uint64_t *bits, uint64_t i)
{
	return (bits[i >> 6] >> (i & 63)) & 1;
}

/* Apply fn to each maximal run of regions for which pick() holds. */
static int dirty_for_runs(struct uvm_dirty *d,
			  bool (*pick)(const struct uvm_dirty *, uint64_t),
			  int (*fn)(struct uvm_dirty *, uint64_t, uint64_t,
				    uint64_t *, uint64_t *),
			  uint64_t *bitmap, uint64_t *pages)
{
	uint64_t r = 0;
	int rc = 0;

	while (r < d->nregions && rc == 0) {
		uint64_t first;

		if (!pick(d, r)) {
			r++;
			continue;
		}
		for (first = r; r < d->nregions && pick(d, r); r++)
			;
		rc = fn(d, first, r - first, bitmap, pages);
	}
	return rc;
}

/* Regions a fetch scans: open ones, and those trim closed since. */
static bool dirty_is_scanned(const struct uvm_dirty *d, uint64_t r)
{
	return dirty_test(d->open, r) || dirty_test(d->closing, r);
}

static bool dirty_is_cold(const struct uvm_dirty *d, uint64_t r)
{
	return dirty_test(d->open, r) && d->idle[r] >= DIRTY_IDLE_FETCHES;
}

static int dirty_rescan_run(struct uvm_dirty *d, uint64_t first,
			    uint64_t count, uint64_t *bitmap, uint64_t *pages)
{
	uint64_t start = (uint64_t)(uintptr_t)d->base +
			 (first << DIRTY_REGION_SHIFT);

	for (uint64_t r = first; r < first + count; r++)
		if (d->idle[r] < UINT8_MAX)
			d->idle[r]++;
	return dirty_scan(d, start,
			  start + dirty_span(d, first, count, DIRTY_REGION_SHIFT),
			  bitmap, pages);
}

/* Unmark, then close; the next fetch scans the run once more (closing
 * set), which catches writes that landed before the close. */
static int dirty_close_cold_run(struct uvm_dirty *d, uint64_t first,
				uint64_t count, uint64_t *bitmap,
				uint64_t *pages)
{
	(void)bitmap;
	(void)pages;
	for (uint64_t r = first; r < first + count; r++) {
		dirty_clear(d->touched, r);
		d->open[r >> 6] &= ~(1ULL << (r & 63));
		d->closing[r >> 6] |= 1ULL << (r & 63);
	}
	return dirty_close_range(d, (size_t)first << DIRTY_REGION_SHIFT,
				 dirty_span(d, first, count, DIRTY_REGION_SHIFT));
}

/*
 * uffd-wp mode.  Closing a region rewrites all its page-table entries,
 * which is dear (dearer still under nested paging), while rescanning an
 * open region whose pages are still write-protected is cheap.  So a fetch
 * only scans: regions stay open once written and are rescanned at every
 * fetch, and closing cold ones is left to uvm_dirty_trim, which runs while
 * the guest does.  The paused part costs per region of the working set.
 */
static int dirty_fetch_regions(struct uvm_dirty *d, uint64_t head,
			       uint64_t *bitmap, uint64_t *pages)
{
	int rc;

	for (uint64_t pos = d->tail; pos != head; pos++) {
		uint64_t r = dirty_pop(d, pos);

		d->open[r >> 6] |= 1ULL << (r & 63);
		d->idle[r] = 0;
	}
	if (atomic_exchange(&d->overflow, false)) {
		/* The whole arena was opened: every region is open now. */
		for (uint64_t r = 0; r < d->nregions; r++) {
			(void)dirty_test_and_set(d->touched, r);
			d->open[r >> 6] |= 1ULL << (r & 63);
		}
	}
	rc = dirty_for_runs(d, dirty_is_scanned, dirty_rescan_run, bitmap,
			    pages);
	if (rc == 0)
		memset(d->closing, 0, ((d->nregions + 63) / 64) * sizeof(uint64_t));
	return rc;
}

int uvm_dirty_trim(struct uvm_dirty *d, uint64_t *closed)
{
	uint64_t before, after;
	int rc = 0;

	*closed = 0;
	if (!atomic_load(&d->enabled) || d->mech != HV_DIRTY_UFFD_WP)
		return 0;
	pthread_mutex_lock(&d->fetch_lock);
	before = dirty_count_open(d);
	rc = dirty_for_runs(d, dirty_is_cold, dirty_close_cold_run, NULL, NULL);
	after = dirty_count_open(d);
	pthread_mutex_unlock(&d->fetch_lock);
	*closed = before - after;
	if (rc != 0)
		log_error("dirty: closing idle regions failed: %s", strerror(-rc));
	return rc;
}

static uint64_t dirty_count_open(const struct uvm_dirty *d)
{
	uint64_t n = 0;

	for (uint64_t w = 0; w < (d->nregions + 63) / 64; w++)
		n += (uint64_t)__builtin_popcountll(d->open[w]);
	return n;
}

int uvm_dirty_fetch(struct uvm_dirty *d, uint64_t *bitmap,
		    struct hv_dirty_stats *stats)
{
	uint64_t t0 = dirty_now_ns(), pages = 0, head;
	int rc;

	memset(stats, 0, sizeof(*stats));
	if (!atomic_load(&d->enabled))
		return -EINVAL;
	pthread_mutex_lock(&d->fetch_lock);
	head = atomic_load(&d->head);
	if (d->mech == HV_DIRTY_UFFD_WP) {
		rc = dirty_fetch_regions(d, head, bitmap, &pages);
		stats->regions = dirty_count_open(d);
	} else {
		rc = dirty_fetch_ring(d, head, bitmap, &pages);
		stats->regions = head - d->tail;
	}
	d->tail = head;
	d->fetches++;
	d->pages_reported += pages;
	pthread_mutex_unlock(&d->fetch_lock);
	stats->pages = pages;
	stats->fetch_ns = dirty_now_ns() - t0;
	if (rc != 0)
		log_error("dirty: fetch failed: %s", strerror(-rc));
	return rc;
}

void uvm_dirty_counters(const struct uvm_dirty *d,
			struct uvm_dirty_counters *out)
{
	struct uvm_dirty *m = (struct uvm_dirty *)d;

	out->faults = atomic_load(&m->faults);
	out->escalations = atomic_load(&m->escalations);
	out->fetches = d->fetches;
	out->pages_reported = d->pages_reported;
}

int uvm_dirty_host_write(struct uvm_dirty *d, size_t off, size_t len)
{
	uint64_t first, last;

	if (len == 0 || off >= d->len || len > d->len - off)
		return -ERANGE;
	if (!atomic_load(&d->enabled))
		return 0;
	first = off >> d->unit_shift;
	last = (off + len - 1) >> d->unit_shift;
	for (uint64_t u = first; u <= last; u++)
		dirty_open_unit(d, u);
	return 0;
}
