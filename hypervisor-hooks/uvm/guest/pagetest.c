/*
 * pagetest.c - uvm guest that increments one byte of every page of a
 * region, in order, forever (the QEMU migration-test pattern).
 *
 * cmdline:
 *   pages=N   region size in pages (default 4096 = 16 MiB), taken from
 *             the page allocator
 *   yield=K   make a UVM_HC_YIELD hypercall every K pages; 0 (default)
 *             makes no hypercall inside a pass, so only preemption can
 *             stop the vCPU there
 *   print=P   print "pagetest: pass N" every P passes (default 100, 0 off)
 *   passes=N  power off after N passes (default 0 = run forever); the
 *             exit code is 1 if the guest found a page it did not write
 *
 * Report: KIND = UVM_GUEST_PAGETEST, REGION_PFN, REGION_PAGES, PASSES
 * (completed passes), ERRORS (pages this guest found holding a value it
 * did not write).  The region is published (KIND written last) only
 * after byte 0 of every page has been set to 0.
 *
 * Invariant I4, at every instruction boundary once KIND is published:
 * with p = report[PASSES], there is a k in [0, pages] such that byte 0 of
 * pages [0, k) is (p + 1) mod 256 and of pages [k, pages) is p mod 256.
 * It holds because every page write is a single volatile byte store of
 * the page's next value, pages are written in ascending order, and the
 * PASSES store (volatile, after the last page's store in program order)
 * is the only thing that moves p.  Seen from outside: all pages equal
 * except one edge where the value drops by one (mod 256); when all are
 * equal to w, w is p or p + 1.  pagetest_check.c verifies this.
 */
#include "sdk.h"

#define PT_MAX_ERROR_LINES 16

struct pt_state {
	volatile uint8_t *region;
	uint64_t pages;
	uint64_t yield_every;
	uint64_t passes;
	uint64_t errors;
};

static void pt_bad_page(struct pt_state *st, uint64_t i, uint8_t got,
			uint8_t want)
{
	st->errors++;
	report_set(UVM_REPORT_ERRORS, st->errors);
	if (st->errors <= PT_MAX_ERROR_LINES)
		printf("pagetest: pass %llu: page %llu (pfn 0x%llx) holds %u, "
		       "expected %u\n", (unsigned long long)st->passes,
		       (unsigned long long)i,
		       (unsigned long long)virt_to_pfn(
			       (const void *)(st->region + i * UVM_PAGE_SIZE)),
		       got, want);
}

/* One pass: page i goes from `cur` to `cur + 1`, in ascending order. */
static void pt_pass(struct pt_state *st)
{
	uint8_t cur = (uint8_t)st->passes, next = (uint8_t)(cur + 1);
	uint64_t countdown = st->yield_every;

	for (uint64_t i = 0; i < st->pages; i++) {
		volatile uint8_t *b = st->region + i * UVM_PAGE_SIZE;
		uint8_t v = *b;

		if (v != cur)
			pt_bad_page(st, i, v, cur);
		*b = next;
		if (countdown != 0 && --countdown == 0) {
			countdown = st->yield_every;
			(void)hc_yield();
		}
	}
}

static void pt_setup(struct pt_state *st)
{
	void *region;

	st->pages = cmdline_u64("pages", 4096);
	st->yield_every = cmdline_u64("yield", 0);
	if (st->pages == 0)
		panic("pagetest: pages must be > 0");
	region = alloc_pages(st->pages);
	if (region == NULL)
		panic("pagetest: cannot allocate %llu pages (%llu free)",
		      (unsigned long long)st->pages,
		      (unsigned long long)pagealloc_free_count());
	st->region = region;
	for (uint64_t i = 0; i < st->pages; i++)
		st->region[i * UVM_PAGE_SIZE] = 0;
	report_set(UVM_REPORT_REGION_PFN, virt_to_pfn(region));
	report_set(UVM_REPORT_REGION_PAGES, st->pages);
	report_set(UVM_REPORT_PASSES, 0);
	report_set(UVM_REPORT_ERRORS, 0);
	report_set(UVM_REPORT_KIND, UVM_GUEST_PAGETEST);
}

int main(const struct uvm_start_info *si)
{
	struct pt_state st = { 0 };
	uint64_t print_every = cmdline_u64("print", 100);
	uint64_t stop = cmdline_u64("passes", 0);

	(void)si;
	pt_setup(&st);
	printf("pagetest: %llu pages at pfn 0x%llx, yield=%llu\n",
	       (unsigned long long)st.pages,
	       (unsigned long long)virt_to_pfn((const void *)st.region),
	       (unsigned long long)st.yield_every);
	while (stop == 0 || st.passes < stop) {
		pt_pass(&st);
		st.passes++;
		report_set(UVM_REPORT_PASSES, st.passes);
		if (print_every != 0 && st.passes % print_every == 0)
			printf("pagetest: pass %llu\n",
			       (unsigned long long)st.passes);
	}
	return st.errors != 0;
}
