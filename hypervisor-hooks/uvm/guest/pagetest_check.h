/*
 * pagetest_check.h - host-side check of a pagetest guest's region
 * (invariant I4, see pagetest.c).
 *
 * A region of n pages is valid when byte 0 of pages [0, edge) is
 * before = after + 1 (mod 256) and of pages [edge, n) is after, for some
 * edge in [0, n).  edge == 0 means all pages are equal (before == after).
 * Run it on a paused guest, or on a restored image before it resumes.
 */
#ifndef PAGETEST_CHECK_H
#define PAGETEST_CHECK_H

#include <stdint.h>

#define PAGETEST_MSG_MAX 256

struct pagetest_result {
	uint8_t before;      /* value of pages [0, edge) */
	uint8_t after;       /* value of pages [edge, pages) */
	uint64_t edge;       /* pages already incremented in this pass */
	uint64_t bad_pages;  /* pages that differ from the best valid fit */
	uint64_t first_bad;  /* index of the first of them */
	char msg[PAGETEST_MSG_MAX]; /* why the check failed; "" when valid */
};

/*
 * page_at(ctx, pfn) returns the guest page pfn (only byte 0 is read), or
 * NULL if it cannot be read.  Returns 0 when the region satisfies I4,
 * -EINVAL when it does not (res describes the best valid fit and names
 * the first page that differs from it), -EFAULT when a page is
 * unreadable.  res may be NULL.
 */
int pagetest_check(const uint8_t *(*page_at)(void *ctx, uint64_t pfn),
		   void *ctx, uint64_t region_pfn, uint64_t pages,
		   struct pagetest_result *res);

/*
 * Cross-check a valid result against the guest's report[PASSES] word p
 * read at the same pause: with an edge, after == p mod 256; with all
 * pages equal to w, w is p or p + 1 mod 256.  Returns 0 or -EINVAL.
 */
int pagetest_check_passes(const struct pagetest_result *res, uint64_t passes);

#endif
