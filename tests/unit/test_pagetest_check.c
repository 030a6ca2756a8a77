/*
 * test_pagetest_check.c - unit tests of the host-side pagetest checker:
 * valid images (all equal, one edge, wrap-around), and images a lost or
 * stale page write would produce (one page behind, two edges, a drop by
 * two, an edge going up), plus unreadable pages and the PASSES
 * cross-check.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <errno.h>

#include <cmocka.h>

#include "pagetest_check.h"

#define T_BASE_PFN 0x400
#define T_PAGES 4096

/* One byte stands for each page (the checker reads byte 0 only). */
struct t_image {
	uint8_t b[T_PAGES];
	uint64_t pages;
	int64_t hole; /* pfn page_at refuses, or -1 */
};

static const uint8_t *t_page_at(void *ctx, uint64_t pfn)
{
	struct t_image *img = ctx;

	if (pfn < T_BASE_PFN || pfn >= T_BASE_PFN + img->pages)
		return NULL;
	if ((int64_t)pfn == img->hole)
		return NULL;
	return &img->b[pfn - T_BASE_PFN];
}

/* Pages [0, edge) hold before, the rest before - 1. */
static void t_fill(struct t_image *img, uint64_t pages, uint64_t edge,
		   uint8_t before)
{
	img->pages = pages;
	img->hole = -1;
	for (uint64_t i = 0; i < pages; i++)
		img->b[i] = i < edge ? before : (uint8_t)(before - 1);
}

static int t_check(struct t_image *img, struct pagetest_result *res)
{
	return pagetest_check(t_page_at, img, T_BASE_PFN, img->pages, res);
}

static void test_all_zero(void **state)
{
	struct t_image img;
	struct pagetest_result res;

	(void)state;
	t_fill(&img, T_PAGES, 0, 1);
	assert_int_equal(t_check(&img, &res), 0);
	assert_int_equal(res.edge, 0);
	assert_int_equal(res.before, 0);
	assert_int_equal(res.after, 0);
	assert_int_equal(res.bad_pages, 0);
	assert_string_equal(res.msg, "");
}

static void test_all_equal_after_full_pass(void **state)
{
	struct t_image img;
	struct pagetest_result res;

	(void)state;
	t_fill(&img, T_PAGES, T_PAGES, 42); /* every page already at 42 */
	assert_int_equal(t_check(&img, &res), 0);
	assert_int_equal(res.edge, 0);
	assert_int_equal(res.before, 42);
	assert_int_equal(res.after, 42);
}

static void test_edge_minority_prefix(void **state)
{
	struct t_image img;
	struct pagetest_result res;

	(void)state;
	t_fill(&img, T_PAGES, 1234, 9);
	assert_int_equal(t_check(&img, &res), 0);
	assert_int_equal(res.edge, 1234);
	assert_int_equal(res.before, 9);
	assert_int_equal(res.after, 8);
}

static void test_edge_majority_prefix(void **state)
{
	struct t_image img;
	struct pagetest_result res;

	(void)state;
	t_fill(&img, T_PAGES, T_PAGES - 1, 200);
	assert_int_equal(t_check(&img, &res), 0);
	assert_int_equal(res.edge, T_PAGES - 1);
	assert_int_equal(res.before, 200);
	assert_int_equal(res.after, 199);
}

static void test_edge_at_one(void **state)
{
	struct t_image img;
	struct pagetest_result res;

	(void)state;
	t_fill(&img, T_PAGES, 1, 5);
	assert_int_equal(t_check(&img, &res), 0);
	assert_int_equal(res.edge, 1);
	assert_int_equal(res.before, 5);
	assert_int_equal(res.after, 4);
}

static void test_wrap_around(void **state)
{
	struct t_image img;
	struct pagetest_result res;

	(void)state;
	t_fill(&img, T_PAGES, 3000, 0); /* 0 then 255 */
	assert_int_equal(t_check(&img, &res), 0);
	assert_int_equal(res.edge, 3000);
	assert_int_equal(res.before, 0);
	assert_int_equal(res.after, 255);

	t_fill(&img, T_PAGES, 10, 0);
	assert_int_equal(t_check(&img, &res), 0);
	assert_int_equal(res.edge, 10);

	t_fill(&img, T_PAGES, 0, 0); /* all 255 */
	assert_int_equal(t_check(&img, &res), 0);
	assert_int_equal(res.before, 255);
	assert_int_equal(res.edge, 0);
}

static void test_single_page(void **state)
{
	struct t_image img;
	struct pagetest_result res;

	(void)state;
	t_fill(&img, 1, 0, 8);
	assert_int_equal(t_check(&img, &res), 0);
	assert_int_equal(res.edge, 0);
	assert_int_equal(res.before, 7);
}

static void test_lost_page_in_prefix(void **state)
{
	struct t_image img;
	struct pagetest_result res;

	(void)state;
	t_fill(&img, T_PAGES, 1234, 9);
	img.b[500] = 8; /* this write was lost */
	assert_int_equal(t_check(&img, &res), -EINVAL);
	assert_int_equal(res.first_bad, 500);
	assert_int_equal(res.bad_pages, 1);
	assert_int_equal(res.edge, 1234);
	assert_non_null(strstr(res.msg, "page 500 (pfn 0x5f4): value 8, "
					"expected 9"));
}

static void test_lost_page_whole_pass(void **state)
{
	struct t_image img;
	struct pagetest_result res;

	(void)state;
	t_fill(&img, T_PAGES, 0, 10); /* all 9 */
	img.b[77] = 8;                /* missed a whole pass */
	assert_int_equal(t_check(&img, &res), -EINVAL);
	assert_int_equal(res.first_bad, 77);
	assert_int_equal(res.bad_pages, 1);
	assert_non_null(strstr(res.msg, "value 8, expected 9"));
}

static void test_lost_first_page(void **state)
{
	struct t_image img;
	struct pagetest_result res;

	(void)state;
	t_fill(&img, T_PAGES, 2000, 9);
	img.b[0] = 8;
	assert_int_equal(t_check(&img, &res), -EINVAL);
	assert_int_equal(res.first_bad, 0);
	assert_int_equal(res.bad_pages, 1);
}

static void test_lost_last_page(void **state)
{
	struct t_image img;
	struct pagetest_result res;

	(void)state;
	t_fill(&img, T_PAGES, 2000, 9);
	img.b[T_PAGES - 1] = 7;
	assert_int_equal(t_check(&img, &res), -EINVAL);
	assert_int_equal(res.first_bad, T_PAGES - 1);
	assert_non_null(strstr(res.msg, "value 7, expected 8"));
}

static void test_page_ahead(void **state)
{
	struct t_image img;
	struct pagetest_result res;

	(void)state;
	t_fill(&img, T_PAGES, 1000, 9);
	img.b[3000] = 9; /* a page past the edge already written */
	assert_int_equal(t_check(&img, &res), -EINVAL);
	assert_int_equal(res.first_bad, 3000);
	assert_int_equal(res.bad_pages, 1);
}

static void test_two_edges(void **state)
{
	struct t_image img;
	struct pagetest_result res;

	(void)state;
	t_fill(&img, T_PAGES, 1000, 9);
	for (uint64_t i = 2000; i < 2500; i++)
		img.b[i] = 9;
	assert_int_equal(t_check(&img, &res), -EINVAL);
	assert_int_equal(res.bad_pages, 500);
	assert_int_equal(res.first_bad, 2000);
}

static void test_drop_by_two(void **state)
{
	struct t_image img;
	struct pagetest_result res;

	(void)state;
	t_fill(&img, T_PAGES, 0, 9); /* all 8 */
	for (uint64_t i = 0; i < 100; i++)
		img.b[i] = 10;
	assert_int_equal(t_check(&img, &res), -EINVAL);
	assert_int_equal(res.bad_pages, 100);
	assert_int_equal(res.first_bad, 0);
	assert_non_null(strstr(res.msg, "value 10, expected 8"));
}

static void test_edge_going_up(void **state)
{
	struct t_image img;
	struct pagetest_result res;

	(void)state;
	img.pages = 8;
	img.hole = -1;
	memcpy(img.b, (uint8_t[]){ 8, 8, 8, 9, 9, 9, 9, 9 }, 8);
	assert_int_equal(t_check(&img, &res), -EINVAL);
	assert_int_equal(res.bad_pages, 3);
	assert_int_equal(res.first_bad, 0);
}

static void test_unreadable_page(void **state)
{
	struct t_image img;
	struct pagetest_result res;

	(void)state;
	t_fill(&img, T_PAGES, 0, 1);
	img.hole = T_BASE_PFN + 17;
	assert_int_equal(t_check(&img, &res), -EFAULT);
	assert_non_null(strstr(res.msg, "page 17 (pfn 0x411)"));
}

static void test_empty_and_null_result(void **state)
{
	struct t_image img;
	struct pagetest_result res;

	(void)state;
	t_fill(&img, T_PAGES, 5, 1);
	assert_int_equal(pagetest_check(t_page_at, &img, T_BASE_PFN, 0, &res),
			 -EINVAL);
	assert_int_equal(pagetest_check(t_page_at, &img, T_BASE_PFN, T_PAGES,
					NULL), 0);
	img.b[9] = 3;
	assert_int_equal(pagetest_check(t_page_at, &img, T_BASE_PFN, T_PAGES,
					NULL), -EINVAL);
}

static void test_passes_cross_check(void **state)
{
	struct t_image img;
	struct pagetest_result res;

	(void)state;
	/* mid-pass: pages at p + 1 then p */
	t_fill(&img, T_PAGES, 100, 4);
	assert_int_equal(t_check(&img, &res), 0);
	assert_int_equal(pagetest_check_passes(&res, 3), 0);
	assert_int_equal(pagetest_check_passes(&res, 259), 0);
	assert_int_equal(pagetest_check_passes(&res, 4), -EINVAL);
	assert_int_equal(pagetest_check_passes(&res, 2), -EINVAL);
	/* all equal to w: the counter is w (pass start) or w - 1 (pass done,
	 * counter not yet stored) */
	t_fill(&img, T_PAGES, 0, 1); /* all 0 */
	assert_int_equal(t_check(&img, &res), 0);
	assert_int_equal(pagetest_check_passes(&res, 0), 0);
	assert_int_equal(pagetest_check_passes(&res, 255), 0);
	assert_int_equal(pagetest_check_passes(&res, 256), 0);
	assert_int_equal(pagetest_check_passes(&res, 1), -EINVAL);
	/* an invalid image never passes */
	img.b[3] = 5;
	assert_int_equal(t_check(&img, &res), -EINVAL);
	assert_int_equal(pagetest_check_passes(&res, 0), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_all_zero),
		cmocka_unit_test(test_all_equal_after_full_pass),
		cmocka_unit_test(test_edge_minority_prefix),
		cmocka_unit_test(test_edge_majority_prefix),
		cmocka_unit_test(test_edge_at_one),
		cmocka_unit_test(test_wrap_around),
		cmocka_unit_test(test_single_page),
		cmocka_unit_test(test_lost_page_in_prefix),
		cmocka_unit_test(test_lost_page_whole_pass),
		cmocka_unit_test(test_lost_first_page),
		cmocka_unit_test(test_lost_last_page),
		cmocka_unit_test(test_page_ahead),
		cmocka_unit_test(test_two_edges),
		cmocka_unit_test(test_drop_by_two),
		cmocka_unit_test(test_edge_going_up),
		cmocka_unit_test(test_unreadable_page),
		cmocka_unit_test(test_empty_and_null_result),
		cmocka_unit_test(test_passes_cross_check),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
