/*
 * memstress.c - uvm guest that dirties memory at a configured rate over a
 * configured working set, with a hot subset taking most of the writes.
 *
 * cmdline:
 *   wss=SIZE   working set in bytes, K/M/G suffixes (default 64M)
 *   hot=PCT    percent of the working set that is hot (default 10)
 *   hotw=PCT   percent of writes that go to hot pages (default 90)
 *   rate=N     page writes per second; 0 (default) = as fast as possible
 *   seed=N     PRNG seed (default 1)
 *   print=S    print statistics every S seconds (default 10, 0 = never)
 *   slices=N   power off after N slices (default 0 = run forever)
 *
 * Time is cut into 1 ms slices of guest time (UVM_HC_CLOCK).  With a rate,
 * each slice does its share of writes (the remainder of rate/1000 carried
 * over) and then sleeps until the slice ends; after falling more than
 * 100 ms behind (e.g. the guest was paused) the schedule restarts from
 * now instead of bursting to catch up.  Without a rate, each slice writes
 * until the clock passes its end.
 *
 * A page write stores the running write count into one 8-byte word of the
 * page chosen by the PRNG (xorshift64*): hot pages are [0, hot_pages) of
 * the region, cold pages the rest.  Every page is written once at start.
 *
 * Report: KIND = UVM_GUEST_MEMSTRESS, REGION_PFN, REGION_PAGES,
 * WRITES (total page writes), PASSES (slices done).
 */
#include "sdk.h"

#define MS_SLICE_NS     1000000ULL
#define MS_RESYNC_NS    100000000ULL
#define MS_BATCH        1024

struct ms_state {
	uint8_t *region;
	uint64_t pages;
	uint64_t hot_pages;
	uint64_t hotw;       /* percent */
	uint64_t rate;       /* writes per second, 0 = unlimited */
	uint64_t rng;
	uint64_t writes;
	uint64_t slices;
};

static uint64_t ms_rand(struct ms_state *st)
{
	uint64_t x = st->rng;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	st->rng = x;
	return x * 0x2545f4914f6cdd1dULL;
}

static void ms_write_page(struct ms_state *st, uint64_t page, uint64_t r)
{
	volatile uint64_t *w = (volatile uint64_t *)(st->region +
						     page * UVM_PAGE_SIZE);

	w[(r >> 40) % (UVM_PAGE_SIZE / 8)] = ++st->writes;
}

static void ms_write_one(struct ms_state *st)
{
	uint64_t r = ms_rand(st);
	uint64_t cold = st->pages - st->hot_pages;
	uint64_t page;

	if (cold == 0 || r % 100 < st->hotw)
		page = (r >> 8) % st->hot_pages;
	else
		page = st->hot_pages + (r >> 8) % cold;
	ms_write_page(st, page, r);
}

static void ms_setup(struct ms_state *st)
{
	uint64_t wss = cmdline_u64("wss", 64ULL << 20);
	uint64_t hot = cmdline_u64("hot", 10);

	st->pages = (wss + UVM_PAGE_SIZE - 1) / UVM_PAGE_SIZE;
	st->hotw = cmdline_u64("hotw", 90);
	st->rate = cmdline_u64("rate", 0);
	st->rng = cmdline_u64("seed", 1);
	if (st->rng == 0)
		st->rng = 0x9e3779b97f4a7c15ULL;
	if (st->pages == 0 || hot > 100 || st->hotw > 100)
		panic("memstress: need wss > 0, hot <= 100, hotw <= 100");
	st->hot_pages = st->pages * hot / 100;
	if (st->hot_pages == 0)
		st->hot_pages = 1;
	st->region = alloc_pages(st->pages);
	if (st->region == NULL)
		panic("memstress: cannot allocate %llu pages (%llu free)",
		      (unsigned long long)st->pages,
		      (unsigned long long)pagealloc_free_count());
	for (uint64_t i = 0; i < st->pages; i++)
		ms_write_page(st, i, 0);
	report_set(UVM_REPORT_REGION_PFN, virt_to_pfn(st->region));
	report_set(UVM_REPORT_REGION_PAGES, st->pages);
	report_set(UVM_REPORT_WRITES, st->writes);
	report_set(UVM_REPORT_PASSES, 0);
	report_set(UVM_REPORT_KIND, UVM_GUEST_MEMSTRESS);
}

/* Unlimited rate: write until the clock reaches `end`. */
static void ms_slice_unlimited(struct ms_state *st, uint64_t end)
{
	do {
		for (int i = 0; i < MS_BATCH; i++)
			ms_write_one(st);
	} while (clock_ns() < end);
}

struct ms_stats {
	uint64_t interval_ns; /* 0: never print */
	uint64_t next;
	uint64_t last_ns;
	uint64_t last_writes;
};

static void ms_maybe_print(struct ms_state *st, struct ms_stats *ps,
			   uint64_t now)
{
	uint64_t dt = now - ps->last_ns;

	if (ps->interval_ns == 0 || now < ps->next)
		return;
	printf("memstress: %llu writes, %llu slices, %llu writes/s\n",
	       (unsigned long long)st->writes, (unsigned long long)st->slices,
	       (unsigned long long)(dt ? (st->writes - ps->last_writes) *
				    1000000000ULL / dt : 0));
	ps->last_ns = now;
	ps->last_writes = st->writes;
	ps->next = now + ps->interval_ns;
}

/* Paced: this slice's share of `rate`, the remainder carried in *frac. */
static void ms_slice_paced(struct ms_state *st, uint64_t *frac)
{
	uint64_t n = st->rate / 1000;

	*frac += st->rate % 1000;
	if (*frac >= 1000) {
		*frac -= 1000;
		n++;
	}
	while (n-- > 0)
		ms_write_one(st);
}

static void ms_run(struct ms_state *st, uint64_t print_ns, uint64_t stop)
{
	uint64_t start = clock_ns(), slice = 0, frac = 0;
	struct ms_stats ps = { print_ns, start + print_ns, start, st->writes };

	while (stop == 0 || st->slices < stop) {
		uint64_t end = start + ++slice * MS_SLICE_NS, now;

		if (st->rate == 0)
			ms_slice_unlimited(st, end);
		else
			ms_slice_paced(st, &frac);
		st->slices++;
		report_set(UVM_REPORT_WRITES, st->writes);
		report_set(UVM_REPORT_PASSES, st->slices);
		now = clock_ns();
		ms_maybe_print(st, &ps, now);
		if (now > end + MS_RESYNC_NS) {
			start = now;
			slice = 0;
		} else if (st->rate != 0 && now < end) {
			sleep_ns(end - now);
		}
	}
}

int main(const struct uvm_start_info *si)
{
	struct ms_state st = { 0 };
	uint64_t print_s = cmdline_u64("print", 10);

	(void)si;
	ms_setup(&st);
	printf("memstress: wss %llu pages at pfn 0x%llx, hot %llu pages, "
	       "hotw %llu%%, rate %llu/s\n",
	       (unsigned long long)st.pages,
	       (unsigned long long)virt_to_pfn(st.region),
	       (unsigned long long)st.hot_pages, (unsigned long long)st.hotw,
	       (unsigned long long)st.rate);
	ms_run(&st, print_s * 1000000000ULL, cmdline_u64("slices", 0));
	return 0;
}
