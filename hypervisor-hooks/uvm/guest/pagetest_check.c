/*
 * pagetest_check.c - verify invariant I4 over a pagetest region.
 *
 * Pass 1 histograms byte 0 of every page; m is the most common value.
 * Any valid image is "pages [0, k) hold v + 1, [k, n) hold v" with v = m
 * or v = m - 1 (whichever side of the edge holds the majority).  Pass 2
 * computes, for both candidates at once, the k minimising the number of
 * pages that differ from that image:
 *   cost(0) = #{i : p[i] != v}
 *   cost(k + 1) = cost(k) + [p[k] != v + 1] - [p[k] != v]
 * A zero cost means the region is valid.  Otherwise the best fit (fewest
 * differing pages; on ties v = m, then the smallest k) is reported and
 * pass 3 finds the first page that differs from it.  Ties prefer k = 0,
 * so a region of equal pages always reports edge 0.
 */
#include "pagetest_check.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

struct ptc_fit {
	uint8_t v;       /* value after the edge */
	uint64_t cost;   /* running cost(k) */
	uint64_t best;   /* minimum cost so far */
	uint64_t best_k; /* smallest k reaching it */
};

static int ptc_read(const uint8_t *(*page_at)(void *, uint64_t), void *ctx,
		    uint64_t pfn, uint64_t i, uint8_t *out,
		    struct pagetest_result *res)
{
	const uint8_t *p = page_at(ctx, pfn);

	if (p == NULL) {
		snprintf(res->msg, sizeof(res->msg),
			 "page %" PRIu64 " (pfn 0x%" PRIx64 "): not readable",
			 i, pfn);
		return -EFAULT;
	}
	*out = p[0];
	return 0;
}

static void ptc_fit_init(struct ptc_fit *f, uint8_t v, uint64_t pages,
			 const uint64_t hist[256])
{
	f->v = v;
	f->cost = pages - hist[v];
	f->best = f->cost;
	f->best_k = 0;
}

/* Account page k (value b): cost(k) -> cost(k + 1). */
static void ptc_fit_step(struct ptc_fit *f, uint64_t k, uint8_t b)
{
	f->cost += (b != (uint8_t)(f->v + 1));
	f->cost -= (b != f->v);
	if (f->cost < f->best) {
		f->best = f->cost;
		f->best_k = k + 1;
	}
}

static uint8_t ptc_expected(const struct ptc_fit *f, uint64_t i)
{
	return i < f->best_k ? (uint8_t)(f->v + 1) : f->v;
}

static int ptc_describe(const uint8_t *(*page_at)(void *, uint64_t),
			void *ctx, uint64_t region_pfn, uint64_t pages,
			const struct ptc_fit *f, struct pagetest_result *res)
{
	for (uint64_t i = 0; i < pages; i++) {
		uint8_t b;
		int rc = ptc_read(page_at, ctx, region_pfn + i, i, &b, res);

		if (rc < 0)
			return rc;
		if (b == ptc_expected(f, i)) {
			continue;
		}
		res->first_bad = i;
		snprintf(res->msg, sizeof(res->msg),
			 "page %" PRIu64 " (pfn 0x%" PRIx64 "): value %u, "
			 "expected %u (best fit: %" PRIu64 " page(s) of %u "
			 "then %" PRIu64 " of %u; %" PRIu64 " page(s) differ)",
			 i, region_pfn + i, b, ptc_expected(f, i), f->best_k,
			 (uint8_t)(f->v + 1), pages - f->best_k, f->v, f->best);
		return -EINVAL;
	}
	return -EINVAL; /* not reached for a non-zero cost */
}

static void ptc_set_fit(struct pagetest_result *res, const struct ptc_fit *f)
{
	res->edge = f->best_k;
	res->after = f->v;
	res->before = f->best_k == 0 ? f->v : (uint8_t)(f->v + 1);
	res->bad_pages = f->best;
}

int pagetest_check(const uint8_t *(*page_at)(void *ctx, uint64_t pfn),
		   void *ctx, uint64_t region_pfn, uint64_t pages,
		   struct pagetest_result *res)
{
	struct pagetest_result local;
	uint64_t hist[256] = { 0 };
	struct ptc_fit fit[2], *best;
	unsigned m = 0;
	int rc;

	if (res == NULL)
		res = &local;
	memset(res, 0, sizeof(*res));
	if (page_at == NULL || pages == 0) {
		snprintf(res->msg, sizeof(res->msg), "empty pagetest region");
		return -EINVAL;
	}
	for (uint64_t i = 0; i < pages; i++) {
		uint8_t b;

		rc = ptc_read(page_at, ctx, region_pfn + i, i, &b, res);
		if (rc < 0)
			return rc;
		hist[b]++;
	}
	for (unsigned v = 1; v < 256; v++)
		if (hist[v] > hist[m])
			m = v;
	ptc_fit_init(&fit[0], (uint8_t)m, pages, hist);
	ptc_fit_init(&fit[1], (uint8_t)(m - 1), pages, hist);
	for (uint64_t i = 0; i < pages; i++) {
		uint8_t b;

		rc = ptc_read(page_at, ctx, region_pfn + i, i, &b, res);
		if (rc < 0)
			return rc;
		ptc_fit_step(&fit[0], i, b);
		ptc_fit_step(&fit[1], i, b);
	}
	best = fit[1].best < fit[0].best ? &fit[1] : &fit[0];
	ptc_set_fit(res, best);
	if (best->best == 0)
		return 0;
	return ptc_describe(page_at, ctx, region_pfn, pages, best, res);
}

int pagetest_check_passes(const struct pagetest_result *res, uint64_t passes)
{
	uint8_t p = (uint8_t)passes;

	if (res->bad_pages != 0)
		return -EINVAL;
	if (res->edge != 0)
		return res->after == p ? 0 : -EINVAL;
	return (res->before == p || res->before == (uint8_t)(p + 1)) ? 0
								    : -EINVAL;
}
