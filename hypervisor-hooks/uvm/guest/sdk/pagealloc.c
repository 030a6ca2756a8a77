/*
 * pagealloc.c - page allocator over the guest heap.
 *
 * The heap is [heap_start_pfn, heap_end_pfn) from the start-info page.
 * One bit per heap page (1 = in use) in a bitmap kept in the first pages
 * of the heap itself, which are marked in use.  alloc_pages(n) is a
 * next-fit search for n contiguous free pages, skipping fully used
 * 64-page words; free_pages() clears the bits.  All state is in guest
 * memory under one lock, so it survives pause/restore unchanged.
 * Pages are not cleared on allocation (fresh heap pages are zero).
 */
#include "sdk.h"

#define PA_BITS 64

static struct sdk_lock pa_lock;
static uint64_t *pa_map;       /* bit i: heap page i in use */
static uint64_t pa_base_pfn;
static uint64_t pa_npages;
static uint64_t pa_free;
static uint64_t pa_hint;       /* where the next search starts */

static int pa_test(uint64_t i)
{
	return (pa_map[i / PA_BITS] >> (i % PA_BITS)) & 1;
}

static void pa_set_range(uint64_t first, uint64_t n, int used)
{
	for (uint64_t i = first; i < first + n; i++) {
		uint64_t bit = 1ULL << (i % PA_BITS);

		if (used)
			pa_map[i / PA_BITS] |= bit;
		else
			pa_map[i / PA_BITS] &= ~bit;
	}
}

void pagealloc_init(uint64_t start_pfn, uint64_t end_pfn)
{
	uint64_t n = end_pfn - start_pfn;
	uint64_t words = (n + PA_BITS - 1) / PA_BITS;
	uint64_t map_pages = (words * 8 + UVM_PAGE_SIZE - 1) / UVM_PAGE_SIZE;

	pa_base_pfn = start_pfn;
	pa_npages = n;
	pa_map = pfn_to_virt(start_pfn);
	pa_free = 0;
	pa_hint = 0;
	if (map_pages > n)
		return; /* heap too small for its own bitmap: nothing to give */
	memset(pa_map, 0, words * 8);
	pa_set_range(0, map_pages, 1);
	pa_free = n - map_pages;
	pa_hint = map_pages;
}

/* First index >= from of a run of n free pages ending before limit. */
static uint64_t pa_find(uint64_t from, uint64_t limit, uint64_t n)
{
	uint64_t i = from, run = 0;

	while (i < limit) {
		if (i % PA_BITS == 0 && run == 0 && i + PA_BITS <= limit &&
		    pa_map[i / PA_BITS] == ~0ULL) {
			i += PA_BITS;
			continue;
		}
		if (pa_test(i)) {
			run = 0;
		} else if (++run == n) {
			return i + 1 - n;
		}
		i++;
	}
	return UINT64_MAX;
}

void *alloc_pages(uint64_t n)
{
	uint64_t at = UINT64_MAX;

	if (n == 0)
		return NULL;
	sdk_lock(&pa_lock);
	if (n <= pa_free) {
		at = pa_find(pa_hint, pa_npages, n);
		if (at == UINT64_MAX)
			at = pa_find(0, pa_npages, n);
	}
	if (at != UINT64_MAX) {
		pa_set_range(at, n, 1);
		pa_free -= n;
		pa_hint = at + n;
	}
	sdk_unlock(&pa_lock);
	return at == UINT64_MAX ? NULL : pfn_to_virt(pa_base_pfn + at);
}

void free_pages(void *p, uint64_t n)
{
	uint64_t pfn = virt_to_pfn(p);

	if (p == NULL || n == 0)
		return;
	if (pfn < pa_base_pfn || pfn + n > pa_base_pfn + pa_npages)
		panic("free_pages: %p (+%llu pages) is outside the heap", p,
		      (unsigned long long)n);
	sdk_lock(&pa_lock);
	for (uint64_t i = pfn - pa_base_pfn; i < pfn - pa_base_pfn + n; i++) {
		if (!pa_test(i)) {
			sdk_unlock(&pa_lock);
			panic("free_pages: pfn 0x%llx is not allocated",
			      (unsigned long long)(pa_base_pfn + i));
		}
	}
	pa_set_range(pfn - pa_base_pfn, n, 0);
	pa_free += n;
	sdk_unlock(&pa_lock);
}

uint64_t pagealloc_free_count(void)
{
	return pa_free;
}
