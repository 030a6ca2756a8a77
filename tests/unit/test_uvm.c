/*
 * test_uvm.c - the uvm backend with real guests.
 *
 *  - image validation: missing file, not ELF, dynamic ELF, segment outside
 *    guest memory, entry outside any segment, truncated headers;
 *  - configuration: memory size, vCPU count, command line length;
 *  - pause at a hypercall boundary and by preemption, with pagetest's I4
 *    checked at every pause and its pass counter rising;
 *  - two vCPUs pause together;
 *  - vector state: vecguest keeps patterns in xmm/ymm(/zmm) registers
 *    across many pauses and vCPU state round trips, and across a snapshot
 *    restored into a new domain; it counts mismatches itself;
 *  - bad vCPU state is refused and nothing is applied;
 *  - a 4 GiB guest.
 *
 * Guests come from build/guests (TANDEM_GUESTS overrides).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hv.h"
#include "pagetest_check.h"
#include "replicator.h"
#include "uvm_abi.h"

static char guest_dir[256] = "build/guests";
/* The domain a test has open, freed by the teardown if the test failed. */
static struct hv_domain *live;

static void done(struct hv_domain *dom)
{
	hv_domain_free(dom);
	live = NULL;
}

static int teardown(void **state)
{
	(void)state;
	done(live);
	return 0;
}

static const char *guest(const char *name)
{
	static char path[512];

	snprintf(path, sizeof(path), "%s/%s.elf", guest_dir, name);
	return path;
}

static struct hv_domain *build(const char *name, uint64_t mem, unsigned vcpus,
			       const char *cmdline)
{
	struct hv_config cfg = { .image = guest(name), .mem_bytes = mem,
				 .nr_vcpus = vcpus, .cmdline = cmdline,
				 .console_fd = -1 };
	struct hv_domain *dom = NULL;

	assert_int_equal(hv_domain_build(&cfg, &dom), 0);
	live = dom;
	return dom;
}

static volatile const struct uvm_start_info *start_info(struct hv_domain *dom)
{
	void *p = NULL;

	assert_int_equal(hv_map(dom, UVM_START_INFO_PFN, 1, false, &p), 0);
	return p;
}

static uint64_t report(struct hv_domain *dom, int word)
{
	return start_info(dom)->report[word];
}

/* Let the guest run until report[word] reaches at least `min`. */
static void run_until(struct hv_domain *dom, int word, uint64_t min)
{
	for (int i = 0; i < 2000 && report(dom, word) < min; i++)
		usleep(5000);
	assert_true(report(dom, word) >= min);
}

static const uint8_t *page_at(void *ctx, uint64_t pfn)
{
	void *p = NULL;

	return hv_map(ctx, pfn, 1, false, &p) == 0 ? p : NULL;
}

static void check_i4(struct hv_domain *dom)
{
	struct pagetest_result res;
	int rc = pagetest_check(page_at, dom, report(dom, UVM_REPORT_REGION_PFN),
				report(dom, UVM_REPORT_REGION_PAGES), &res);

	if (rc != 0)
		fail_msg("I4: %s", res.msg);
	assert_int_equal(pagetest_check_passes(&res, report(dom, UVM_REPORT_PASSES)), 0);
}

/* ---- images and configuration --------------------------------------------- */

static char *copy_file(const char *src, size_t keep)
{
	static char path[] = "/tmp/tandem-test-XXXXXX";
	char *dst = strdup(path);
	FILE *in = fopen(src, "rb");
	int fd = mkstemp(dst);
	char buf[65536];
	size_t n, total = 0;

	assert_non_null(in);
	assert_true(fd >= 0);
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0 && total < keep) {
		if (n > keep - total)
			n = keep - total;
		assert_int_equal(write(fd, buf, n), (ssize_t)n);
		total += n;
	}
	fclose(in);
	close(fd);
	return dst;
}

static void patch_u64(const char *path, off_t off, uint64_t v)
{
	int fd = open(path, O_WRONLY);

	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, &v, 8, off), 8);
	close(fd);
}

static int try_build(const char *image, uint64_t mem, unsigned vcpus,
		     const char *cmdline)
{
	struct hv_config cfg = { .image = image, .mem_bytes = mem,
				 .nr_vcpus = vcpus, .cmdline = cmdline,
				 .console_fd = -1 };
	struct hv_domain *dom = NULL;
	int rc = hv_domain_build(&cfg, &dom);

	assert_null(dom == NULL ? NULL : dom);
	return rc;
}

static void test_bad_images(void **state)
{
	char *garbage = copy_file("/etc/hostname", 64);
	char *trunc = copy_file(guest("pagetest"), 100);
	char *badseg = copy_file(guest("pagetest"), SIZE_MAX);
	char *badentry = copy_file(guest("pagetest"), SIZE_MAX);

	(void)state;
	/* e_phoff is at 32; the first phdr's p_vaddr at e_phoff + 16. */
	patch_u64(badseg, 64 + 16, 0x1000);
	patch_u64(badentry, 24, UVM_GUEST_BASE + 0x10);
	assert_int_equal(try_build("/nonexistent/guest.elf", 0, 1, NULL), -ENOENT);
	assert_int_equal(try_build(garbage, 0, 1, NULL), -ENOEXEC);
	assert_int_equal(try_build("/bin/true", 0, 1, NULL), -ENOEXEC);
	assert_int_equal(try_build(trunc, 0, 1, NULL), -ENOEXEC);
	assert_int_equal(try_build(badseg, 0, 1, NULL), -ENOEXEC);
	assert_int_equal(try_build(badentry, 0, 1, NULL), -ENOEXEC);
	unlink(garbage);
	unlink(trunc);
	unlink(badseg);
	unlink(badentry);
	free(garbage);
	free(trunc);
	free(badseg);
	free(badentry);
}

static void test_bad_config(void **state)
{
	char longline[UVM_CMDLINE_MAX + 10];

	(void)state;
	memset(longline, 'x', sizeof(longline) - 1);
	longline[sizeof(longline) - 1] = '\0';
	assert_int_equal(try_build(guest("pagetest"), 1 << 20, 1, NULL), -EINVAL);
	assert_int_equal(try_build(guest("pagetest"), (64 << 20) + 100, 1, NULL),
			 -EINVAL);
	assert_int_equal(try_build(guest("pagetest"), 0, 9, NULL), -EINVAL);
	assert_int_equal(try_build(guest("pagetest"), 0, 1, longline), -EINVAL);
}

/* ---- pausing ----------------------------------------------------------------- */

/* Pause and resume a running pagetest 20 times, checking I4 each time.
 * With `bound_us` far above how long the guest goes between hypercalls,
 * every pause must land on a hypercall (no timing luck involved: the host
 * would have to starve the vCPU for the whole bound); a guest that makes
 * no hypercalls must be preempted every time. */
static void pause_cycles(const char *cmdline, unsigned bound_us,
			 bool want_boundary)
{
	struct hv_config cfg = { .image = guest("pagetest"), .mem_bytes = 64 << 20,
				 .cmdline = cmdline, .console_fd = -1,
				 .pause_bound_us = bound_us };
	struct hv_domain *dom = NULL;
	struct hv_pause_info pi;
	uint64_t last = 0;

	assert_int_equal(hv_domain_build(&cfg, &dom), 0);
	live = dom;
	assert_int_equal(hv_unpause(dom), 0);
	run_until(dom, UVM_REPORT_PASSES, 1);
	for (int i = 0; i < 20; i++) {
		usleep(3000);
		assert_int_equal(hv_pause(dom, &pi), 0);
		assert_true(hv_is_paused(dom));
		assert_int_equal(pi.nr_vcpus, 1);
		assert_int_equal(pi.at_boundary, want_boundary ? 1 : 0);
		assert_int_equal(pi.preempted, want_boundary ? 0 : 1);
		check_i4(dom);
		assert_true(report(dom, UVM_REPORT_PASSES) >= last);
		last = report(dom, UVM_REPORT_PASSES);
		assert_int_equal(hv_unpause(dom), 0);
	}
	run_until(dom, UVM_REPORT_PASSES, last + 1);
	done(dom);
}

static void test_pause_at_boundary(void **state)
{
	(void)state;
	pause_cycles("pages=1024 yield=16", 1000000, true);
}

static void test_pause_preempted(void **state)
{
	(void)state;
	pause_cycles("pages=1024 yield=0 print=0", 0, false);
}

static void test_two_vcpus(void **state)
{
	struct hv_domain *dom = build("pagetest", 64 << 20, 2, "pages=512 yield=0 print=0");
	struct hv_pause_info pi;

	(void)state;
	assert_int_equal(hv_nr_vcpus(dom), 2);
	assert_int_equal(hv_unpause(dom), 0);
	run_until(dom, UVM_REPORT_PASSES, 2);
	for (int i = 0; i < 10; i++) {
		assert_int_equal(hv_pause(dom, &pi), 0);
		assert_int_equal(pi.nr_vcpus, 2);
		assert_int_equal(pi.at_boundary + pi.preempted, 2);
		check_i4(dom);
		assert_int_equal(hv_unpause(dom), 0);
		usleep(2000);
	}
	done(dom);
}

/* ---- vector state -------------------------------------------------------------- */

static void test_vector_round_trips(void **state)
{
	struct hv_domain *dom = build("vecguest", 64 << 20, 1, "spin=20000");
	struct hv_vcpu_state *st = malloc(sizeof(*st));
	uint64_t checks;

	(void)state;
	assert_non_null(st);
	assert_int_equal(hv_unpause(dom), 0);
	run_until(dom, UVM_REPORT_CHECKS, 1);
	for (int i = 0; i < 100; i++) {
		assert_int_equal(hv_pause(dom, NULL), 0);
		assert_int_equal(hv_vcpu_save(dom, 0, st), 0);
		assert_true(st->xsave_len >= 512);
		assert_int_equal(hv_vcpu_load(dom, 0, st), 0);
		assert_int_equal(hv_unpause(dom), 0);
		usleep(500);
	}
	checks = report(dom, UVM_REPORT_CHECKS);
	run_until(dom, UVM_REPORT_CHECKS, checks + 5);
	assert_int_equal(report(dom, UVM_REPORT_ERRORS), 0);
	printf("note: vecguest: %lu checks, XSAVE area %u bytes, features 0x%lx\n",
	       (unsigned long)report(dom, UVM_REPORT_CHECKS), st->xsave_len,
	       (unsigned long)st->xfeatures);
	free(st);
	done(dom);
}

static int snapshot_to_memfd(struct hv_domain *dom)
{
	struct rep_snapshot_stats st;
	int fd = memfd_create("snap", 0);

	assert_true(fd >= 0);
	assert_int_equal(hv_pause(dom, NULL), 0);
	assert_int_equal(rep_snapshot_save(dom, fd, NULL, NULL, &st), 0);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	return fd;
}

static struct hv_domain *restore_memfd(int fd)
{
	struct hv_config cfg = { .console_fd = -1 };
	struct rep_snapshot_stats st;
	struct hv_domain *dom = NULL;
	char err[256];

	if (rep_snapshot_restore(fd, "memfd", &cfg, NULL, NULL, &dom, &st, err,
				 sizeof(err)) != 0)
		fail_msg("restore: %s", err);
	live = dom;
	return dom;
}

static void test_vector_across_restore(void **state)
{
	struct hv_domain *dom = build("vecguest", 64 << 20, 1, "spin=20000");
	uint64_t checks;
	int fd;

	(void)state;
	assert_int_equal(hv_unpause(dom), 0);
	run_until(dom, UVM_REPORT_CHECKS, 3);
	fd = snapshot_to_memfd(dom);
	checks = report(dom, UVM_REPORT_CHECKS);
	done(dom);
	dom = restore_memfd(fd);
	close(fd);
	assert_int_equal(report(dom, UVM_REPORT_CHECKS), checks);
	assert_int_equal(hv_unpause(dom), 0);
	run_until(dom, UVM_REPORT_CHECKS, checks + 5);
	assert_int_equal(report(dom, UVM_REPORT_ERRORS), 0);
	done(dom);
}

static void test_bad_vcpu_state(void **state)
{
	struct hv_domain *dom = build("pagetest", 64 << 20, 1, "pages=256 yield=8");
	struct hv_vcpu_state *good = malloc(sizeof(*good));
	struct hv_vcpu_state *bad = malloc(sizeof(*bad));

	(void)state;
	assert_int_equal(hv_unpause(dom), 0);
	run_until(dom, UVM_REPORT_PASSES, 1);
	assert_int_equal(hv_pause(dom, NULL), 0);
	assert_int_equal(hv_vcpu_save(dom, 0, good), 0);
	*bad = *good;
	bad->rip = 0x1000;
	assert_int_equal(hv_vcpu_load(dom, 0, bad), -EINVAL);
	*bad = *good;
	bad->gpr[HV_RSP] = 0x7fff0000;
	assert_int_equal(hv_vcpu_load(dom, 0, bad), -EINVAL);
	*bad = *good;
	bad->rflags |= 1ULL << 17; /* VM86 */
	assert_int_equal(hv_vcpu_load(dom, 0, bad), -EINVAL);
	*bad = *good;
	bad->xsave[512 + 8] = 1; /* compacted-format bit in the header */
	assert_int_not_equal(hv_vcpu_load(dom, 0, bad), 0);
	*bad = *good;
	bad->xsave_len = HV_XSAVE_MAX;
	assert_int_not_equal(hv_vcpu_load(dom, 0, bad), 0);
	*bad = *good;
	bad->xfeatures |= 1ULL << 62;
	assert_int_not_equal(hv_vcpu_load(dom, 0, bad), 0);
	assert_int_equal(hv_vcpu_load(dom, 5, good), -ENOENT);
	/* Nothing was applied: the guest carries on as before. */
	assert_int_equal(hv_unpause(dom), 0);
	run_until(dom, UVM_REPORT_PASSES, report(dom, UVM_REPORT_PASSES) + 2);
	assert_int_equal(hv_pause(dom, NULL), 0);
	check_i4(dom);
	free(good);
	free(bad);
	done(dom);
}

static void test_state_needs_pause(void **state)
{
	struct hv_domain *dom = build("pagetest", 64 << 20, 1, "pages=64 yield=8");
	struct hv_vcpu_state *st = malloc(sizeof(*st));

	(void)state;
	assert_int_equal(hv_unpause(dom), 0);
	assert_int_equal(hv_vcpu_save(dom, 0, st), -EBUSY);
	free(st);
	done(dom);
}

/* Pre-copy rounds into a shadow while the guest runs, a last round while
 * paused: the shadow must equal guest memory and satisfy I4.  The guest
 * prints, so the host writes the console ring too (inside the exit path,
 * through tracked memory). */
static void precopy_with_guest(enum hv_dirty_mech mech)
{
	struct hv_config cfg = { .image = guest("pagetest"), .mem_bytes = 64 << 20,
				 .cmdline = "pages=4096 yield=0 print=20",
				 .console_fd = -1, .dirty = mech };
	struct hv_domain *dom = NULL;
	struct hv_dirty_stats ds;
	uint64_t n, words, copied = 0;
	uint64_t *bm;
	uint8_t *shadow, *mem;
	struct pagetest_result res;

	if (hv_domain_build(&cfg, &dom) != 0) {
		/* Forcing uffd-wp fails where the kernel lacks it: then AUTO
		 * must pick mprotect, or the failure is real. */
		cfg.dirty = HV_DIRTY_AUTO;
		assert_int_equal(hv_domain_build(&cfg, &dom), 0);
		live = dom;
		assert_int_equal(mech, HV_DIRTY_UFFD_WP);
		assert_int_equal(hv_dirty_mech(dom), HV_DIRTY_MPROTECT);
		printf("note: skipped: uffd-wp tracking is not available here\n");
		skip();
	}
	live = dom;
	assert_int_equal(hv_dirty_mech(dom), mech);
	n = hv_nr_pages(dom);
	words = (n + 63) / 64;
	bm = calloc(words, 8);
	shadow = malloc(n * 4096);
	assert_int_equal(hv_map(dom, 0, n, false, (void **)&mem), 0);
	assert_int_equal(hv_dirty_enable(dom), 0);
	memcpy(shadow, mem, n * 4096);
	assert_int_equal(hv_unpause(dom), 0);
	/* Rounds start once the guest works on its region, however slowly
	 * a loaded host runs it. */
	run_until(dom, UVM_REPORT_PASSES, 1);
	for (int round = 0; round <= 30; round++) {
		if (round == 30)
			assert_int_equal(hv_pause(dom, NULL), 0);
		else
			usleep(2000);
		memset(bm, 0, words * 8);
		assert_int_equal(hv_dirty_fetch(dom, bm, &ds), 0);
		for (uint64_t p = 0; p < n; p++) {
			if (!((bm[p / 64] >> (p % 64)) & 1))
				continue;
			memcpy(shadow + p * 4096, mem + p * 4096, 4096);
			copied++;
		}
		if (round < 30)
			assert_int_equal(hv_dirty_trim(dom), 0);
	}
	for (uint64_t p = 0; p < n; p++)
		if (memcmp(shadow + p * 4096, mem + p * 4096, 4096) != 0)
			fail_msg("%s: page %lu differs from the shadow",
				 hv_dirty_mech_name(mech), (unsigned long)p);
	if (pagetest_check(page_at, dom, report(dom, UVM_REPORT_REGION_PFN),
			   report(dom, UVM_REPORT_REGION_PAGES), &res) != 0)
		fail_msg("%s: I4 at the final pause: %s (guest errors %lu)",
			 hv_dirty_mech_name(mech), res.msg,
			 (unsigned long)report(dom, UVM_REPORT_ERRORS));
	printf("note: %s: %lu page copies over 31 rounds, last (paused) fetch "
	       "%lu pages in %lu us\n", hv_dirty_mech_name(mech),
	       (unsigned long)copied, (unsigned long)ds.pages,
	       (unsigned long)(ds.fetch_ns / 1000));
	assert_int_equal(hv_dirty_disable(dom), 0);
	assert_int_equal(hv_unpause(dom), 0);
	run_until(dom, UVM_REPORT_PASSES, report(dom, UVM_REPORT_PASSES) + 2);
	free(bm);
	free(shadow);
	done(dom);
}

static void test_precopy_uffd(void **state)
{
	(void)state;
	precopy_with_guest(HV_DIRTY_UFFD_WP);
}

static void test_precopy_mprotect(void **state)
{
	(void)state;
	precopy_with_guest(HV_DIRTY_MPROTECT);
}

static void test_4gib_guest(void **state)
{
	struct hv_domain *dom = build("pagetest", 4ULL << 30, 1, "pages=2048 yield=64");
	int fd;

	(void)state;
	assert_int_equal(hv_nr_pages(dom), (4ULL << 30) / 4096);
	assert_int_equal(hv_unpause(dom), 0);
	run_until(dom, UVM_REPORT_PASSES, 2);
	fd = snapshot_to_memfd(dom);
	check_i4(dom);
	done(dom);
	dom = restore_memfd(fd);
	close(fd);
	check_i4(dom);
	assert_int_equal(hv_unpause(dom), 0);
	run_until(dom, UVM_REPORT_PASSES, report(dom, UVM_REPORT_PASSES) + 2);
	done(dom);
}

int main(void)
{
	const char *env = getenv("TANDEM_GUESTS");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_bad_images, teardown),
		cmocka_unit_test_teardown(test_bad_config, teardown),
		cmocka_unit_test_teardown(test_pause_at_boundary, teardown),
		cmocka_unit_test_teardown(test_pause_preempted, teardown),
		cmocka_unit_test_teardown(test_two_vcpus, teardown),
		cmocka_unit_test_teardown(test_vector_round_trips, teardown),
		cmocka_unit_test_teardown(test_vector_across_restore, teardown),
		cmocka_unit_test_teardown(test_bad_vcpu_state, teardown),
		cmocka_unit_test_teardown(test_state_needs_pause, teardown),
		cmocka_unit_test_teardown(test_precopy_uffd, teardown),
		cmocka_unit_test_teardown(test_precopy_mprotect, teardown),
		cmocka_unit_test_teardown(test_4gib_guest, teardown),
	};

	if (env != NULL)
		snprintf(guest_dir, sizeof(guest_dir), "%s", env);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
