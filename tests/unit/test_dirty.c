/*
 * test_dirty.c - dirty-log exactness against ground truth, for both
 * mechanisms and several sizes.
 *
 *  - random write patterns (scattered pages, runs, repeats): every written
 *    page is reported (no miss); reported-but-unwritten pages (false
 *    positives) are counted and printed, and must be 0 unless the tracker
 *    escalated to whole regions;
 *  - a live writer thread against repeated fetches (a pre-copy): a shadow
 *    copy refreshed from each fetch's pages equals memory at the end;
 *  - kernel writes (read(2) into tracked memory) after uvm_dirty_host_write.
 *
 * The seed comes from TANDEM_SEED or the clock and is printed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "dirty.h"

#define PG 4096UL

static unsigned test_seed;

struct region {
	uint8_t *mem;
	size_t len;
	uint64_t npages;
	struct uvm_dirty *d;
	uint64_t *truth;
	uint64_t *got;
};

static uint64_t rnd(void)
{
	static uint64_t s;

	if (s == 0)
		s = test_seed * 0x9e3779b97f4a7c15ULL + 1;
	s ^= s << 13;
	s ^= s >> 7;
	s ^= s << 17;
	return s;
}

static void setbit(uint64_t *b, uint64_t i)
{
	b[i / 64] |= 1ULL << (i % 64);
}

static int getbit(const uint64_t *b, uint64_t i)
{
	return (b[i / 64] >> (i % 64)) & 1;
}

/* uffd-wp needs Linux 6.7+ (async write-protect, PAGEMAP_SCAN). */
static void need_mech(enum hv_dirty_mech mech)
{
	static int have_uffd = -1;

	if (mech != HV_DIRTY_UFFD_WP)
		return;
	if (have_uffd < 0) {
		struct uvm_dirty *d;
		uint8_t *m = mmap(NULL, 1 << 21, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		have_uffd = uvm_dirty_new(m, 1 << 21, HV_DIRTY_UFFD_WP, &d) == 0;
		uvm_dirty_free(have_uffd ? d : NULL);
		munmap(m, 1 << 21);
	}
	if (!have_uffd) {
		printf("note: skipped: this kernel lacks userfaultfd async "
		       "write-protect or PAGEMAP_SCAN\n");
		skip();
	}
}

static void region_open(struct region *r, size_t len, enum hv_dirty_mech mech)
{
	need_mech(mech);
	r->len = len;
	r->npages = len / PG;
	r->mem = mmap(NULL, len, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	assert_true(r->mem != MAP_FAILED);
	/* Populate a sparse part; the rest stays untouched until written. */
	for (size_t off = 0; off < len; off += 64 * PG)
		r->mem[off] = 1;
	assert_int_equal(uvm_dirty_new(r->mem, len, mech, &r->d), 0);
	assert_int_equal(uvm_dirty_mech(r->d), mech);
	r->truth = calloc((r->npages + 63) / 64, 8);
	r->got = calloc((r->npages + 63) / 64, 8);
	assert_non_null(r->truth);
	assert_non_null(r->got);
	assert_int_equal(uvm_dirty_enable(r->d), 0);
}

static void region_close(struct region *r)
{
	uvm_dirty_free(r->d);
	munmap(r->mem, r->len);
	free(r->truth);
	free(r->got);
}

static void region_clear(struct region *r)
{
	memset(r->truth, 0, ((r->npages + 63) / 64) * 8);
	memset(r->got, 0, ((r->npages + 63) / 64) * 8);
}

static void write_page(struct region *r, uint64_t p)
{
	r->mem[p * PG + rnd() % PG]++;
	setbit(r->truth, p);
}

/* One round of a random pattern; returns the pages written. */
static uint64_t random_round(struct region *r, unsigned kind)
{
	uint64_t n = 1 + rnd() % (r->npages < 2048 ? r->npages : 2048);
	uint64_t start = rnd() % r->npages;

	for (uint64_t i = 0; i < n; i++) {
		switch (kind % 3) {
		case 0: /* scattered */
			write_page(r, rnd() % r->npages);
			break;
		case 1: /* a run */
			write_page(r, (start + i) % r->npages);
			break;
		default: /* hammering a few pages */
			write_page(r, (start + rnd() % 8) % r->npages);
			break;
		}
	}
	return n;
}

static void check_round(struct region *r, const char *what)
{
	struct hv_dirty_stats st;
	struct uvm_dirty_counters c;
	uint64_t misses = 0, fps = 0;

	assert_int_equal(uvm_dirty_fetch(r->d, r->got, &st), 0);
	for (uint64_t i = 0; i < r->npages; i++) {
		if (getbit(r->truth, i) && !getbit(r->got, i))
			misses++;
		if (!getbit(r->truth, i) && getbit(r->got, i))
			fps++;
	}
	uvm_dirty_counters(r->d, &c);
	if (misses != 0 || fps != 0)
		printf("note: %s: %lu misses, %lu false positives, %lu escalations\n",
		       what, (unsigned long)misses, (unsigned long)fps,
		       (unsigned long)c.escalations);
	assert_int_equal(misses, 0);
	if (c.escalations == 0)
		assert_int_equal(fps, 0);
}

static void exactness(enum hv_dirty_mech mech, size_t len)
{
	struct region r;
	char what[64];
	uint64_t closed, total_closed = 0;

	region_open(&r, len, mech);
	for (unsigned round = 0; round < 24; round++) {
		region_clear(&r);
		(void)random_round(&r, round);
		snprintf(what, sizeof(what), "%s %zu MiB round %u",
			 hv_dirty_mech_name(mech), len >> 20, round);
		check_round(&r, what);
		assert_int_equal(uvm_dirty_trim(r.d, &closed), 0);
		total_closed += closed;
	}
	/* Quiet rounds: nothing written, nothing reported, and every region
	 * goes cold and is closed by trim ... */
	for (unsigned quiet = 0; quiet < 6; quiet++) {
		region_clear(&r);
		check_round(&r, "quiet round");
		assert_int_equal(uvm_dirty_trim(r.d, &closed), 0);
		total_closed += closed;
	}
	if (mech == HV_DIRTY_UFFD_WP)
		assert_true(total_closed > 0);
	/* ... and closed regions report their next writes. */
	region_clear(&r);
	(void)random_round(&r, 0);
	check_round(&r, "after closing");
	region_close(&r);
}

static void test_uffd_exact(void **state)
{
	(void)state;
	exactness(HV_DIRTY_UFFD_WP, 8UL << 20);
	exactness(HV_DIRTY_UFFD_WP, 64UL << 20);
	exactness(HV_DIRTY_UFFD_WP, 256UL << 20);
}

static void test_mprotect_exact(void **state)
{
	(void)state;
	exactness(HV_DIRTY_MPROTECT, 8UL << 20);
	exactness(HV_DIRTY_MPROTECT, 64UL << 20);
	exactness(HV_DIRTY_MPROTECT, 256UL << 20);
}

/* ---- live writer vs repeated fetches --------------------------------- */

struct writer {
	struct region *r;
	atomic_bool stop;
	uint64_t seed;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	uint64_t s = w->seed | 1, i = 0;

	while (!atomic_load(&w->stop)) {
		uint64_t p;

		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		/* Mostly sequential sweeps, sometimes a random jump. */
		p = (s % 16 == 0) ? s % w->r->npages : (i++ % w->r->npages);
		w->r->mem[p * PG + (s >> 20) % PG] += 1;
	}
	return NULL;
}

static void live_precopy(enum hv_dirty_mech mech)
{
	struct region r;
	struct writer w = { .r = &r, .seed = test_seed };
	struct hv_dirty_stats st;
	pthread_t t;
	uint8_t *shadow;
	uint64_t rounds = 0, closed;

	region_open(&r, 32UL << 20, mech);
	shadow = malloc(r.len);
	assert_non_null(shadow);
	memcpy(shadow, r.mem, r.len);
	assert_int_equal(pthread_create(&t, NULL, writer_main, &w), 0);
	for (rounds = 0; rounds < 200; rounds++) {
		memset(r.got, 0, ((r.npages + 63) / 64) * 8);
		assert_int_equal(uvm_dirty_fetch(r.d, r.got, &st), 0);
		for (uint64_t p = 0; p < r.npages; p++)
			if (getbit(r.got, p))
				memcpy(shadow + p * PG, r.mem + p * PG, PG);
		assert_int_equal(uvm_dirty_trim(r.d, &closed), 0);
		usleep(200);
	}
	atomic_store(&w.stop, true);
	pthread_join(t, NULL);
	memset(r.got, 0, ((r.npages + 63) / 64) * 8);
	assert_int_equal(uvm_dirty_fetch(r.d, r.got, &st), 0);
	for (uint64_t p = 0; p < r.npages; p++)
		if (getbit(r.got, p))
			memcpy(shadow + p * PG, r.mem + p * PG, PG);
	for (uint64_t p = 0; p < r.npages; p++)
		if (memcmp(shadow + p * PG, r.mem + p * PG, PG) != 0)
			fail_msg("%s: page %lu changed but was never reported",
				 hv_dirty_mech_name(mech), (unsigned long)p);
	free(shadow);
	region_close(&r);
}

static void test_uffd_live(void **state)
{
	(void)state;
	live_precopy(HV_DIRTY_UFFD_WP);
}

static void test_mprotect_live(void **state)
{
	(void)state;
	live_precopy(HV_DIRTY_MPROTECT);
}

/* ---- kernel writes ------------------------------------------------------ */

static void kernel_write(enum hv_dirty_mech mech)
{
	struct region r;
	int fds[2];
	uint64_t page = 37;
	const char msg[] = "written by the kernel";

	region_open(&r, 8UL << 20, mech);
	region_clear(&r);
	assert_int_equal(pipe(fds), 0);
	assert_int_equal(write(fds[1], msg, sizeof(msg)), sizeof(msg));
	assert_int_equal(uvm_dirty_host_write(r.d, page * PG + 100, sizeof(msg)), 0);
	assert_int_equal(read(fds[0], r.mem + page * PG + 100, sizeof(msg)),
			 sizeof(msg));
	setbit(r.truth, page);
	check_round(&r, "kernel write");
	assert_memory_equal(r.mem + page * PG + 100, msg, sizeof(msg));
	assert_int_equal(uvm_dirty_host_write(r.d, r.len, 1), -ERANGE);
	close(fds[0]);
	close(fds[1]);
	region_close(&r);
}

static void test_kernel_write(void **state)
{
	(void)state;
	kernel_write(HV_DIRTY_UFFD_WP);
	kernel_write(HV_DIRTY_MPROTECT);
}

/* A write into a cold region between a fetch and the trim that closes the
 * region must still be reported by the next fetch. */
static void test_trim_keeps_late_write(void **state)
{
	struct region r;
	uint64_t closed;

	(void)state;
	region_open(&r, 8UL << 20, HV_DIRTY_UFFD_WP);
	region_clear(&r);
	write_page(&r, 700);
	check_round(&r, "first write");
	for (int i = 0; i < 5; i++) {
		region_clear(&r);
		check_round(&r, "going cold");
	}
	region_clear(&r);
	write_page(&r, 700);          /* region still open: no fault */
	assert_int_equal(uvm_dirty_trim(r.d, &closed), 0);
	assert_true(closed >= 1);     /* ... and now closed */
	check_round(&r, "late write");
	region_clear(&r);
	write_page(&r, 701);          /* closed region faults and reopens */
	check_round(&r, "after trim");
	region_close(&r);
}

/* Forcing a mechanism the host lacks is an error, AUTO always works. */
static void test_auto_choice(void **state)
{
	struct uvm_dirty *d;
	uint8_t *mem = mmap(NULL, 4 << 20, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	(void)state;
	assert_int_equal(uvm_dirty_new(mem, 4 << 20, HV_DIRTY_AUTO, &d), 0);
	printf("note: automatic choice here: %s\n",
	       hv_dirty_mech_name(uvm_dirty_mech(d)));
	assert_true(uvm_dirty_mech(d) == HV_DIRTY_UFFD_WP ||
		    uvm_dirty_mech(d) == HV_DIRTY_MPROTECT);
	uvm_dirty_free(d);
	munmap(mem, 4 << 20);
}

int main(void)
{
	const char *env = getenv("TANDEM_SEED");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_uffd_exact),
		cmocka_unit_test(test_mprotect_exact),
		cmocka_unit_test(test_uffd_live),
		cmocka_unit_test(test_mprotect_live),
		cmocka_unit_test(test_kernel_write),
		cmocka_unit_test(test_trim_keeps_late_write),
		cmocka_unit_test(test_auto_choice),
	};

	test_seed = env ? (unsigned)strtoul(env, NULL, 0) : (unsigned)time(NULL);
	printf("seed %u (set TANDEM_SEED to repeat)\n", test_seed);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
