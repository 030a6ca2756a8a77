/*
 * test_blk.c - the block device back end with the blktest guest, which
 * writes record i to sector i with several writes in flight and reports how
 * many records are acknowledged contiguously.
 *
 *  - records land on the image, each exactly as written;
 *  - the output gate holds write completions until their epoch is
 *    released, and lets them all go when it opens;
 *  - writes in flight at a save are re-issued after a restore onto a disk
 *    copy that never saw them: every acknowledged record is on that disk
 *    (no acknowledged write lost), and rewriting a record changes nothing;
 *  - a saved block state does not load onto a disk of another size;
 *  - a disk image that is missing or too small is refused at build.
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
#include "replicator.h"
#include "uvm_abi.h"

#define MAGIC 0x626c6b7465737431ULL
#define DISK_BYTES (8u << 20)

static char guest_dir[256] = "build/guests";
static struct hv_domain *live;
static char disk_a[64], disk_b[64];

static void make_disk(char *path, size_t bytes)
{
	int fd;

	strcpy(path, "/tmp/tandem-blk-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)bytes), 0);
	close(fd);
}

static void copy_disk(const char *from, const char *to)
{
	static char buf[1 << 20];
	int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_TRUNC);
	ssize_t n;

	assert_true(in >= 0 && out >= 0);
	while ((n = read(in, buf, sizeof(buf))) > 0)
		assert_int_equal(write(out, buf, (size_t)n), n);
	close(in);
	close(out);
}

static int setup(void **state)
{
	(void)state;
	make_disk(disk_a, DISK_BYTES);
	make_disk(disk_b, DISK_BYTES);
	return 0;
}

/* Frees the domain at the end of a test body.  The teardown does it only
 * for a failed test: the test framework swaps signal handlers around each
 * fixture, and a domain should not be running then. */
static void done(struct hv_domain *dom)
{
	hv_domain_free(dom);
	live = NULL;
}

static int teardown(void **state)
{
	(void)state;
	done(live);
	unlink(disk_a);
	unlink(disk_b);
	return 0;
}

static struct hv_domain *build_smp(const char *disk, const char *cmdline,
				   unsigned vcpus)
{
	char image[300];
	struct hv_config cfg = { .image = image, .mem_bytes = 32 << 20,
				 .cmdline = cmdline, .console_fd = -1,
				 .disk = disk, .nr_vcpus = vcpus };
	struct hv_domain *dom = NULL;

	snprintf(image, sizeof(image), "%s/blktest.elf", guest_dir);
	assert_int_equal(hv_domain_build(&cfg, &dom), 0);
	live = dom;
	return dom;
}

static struct hv_domain *build(const char *disk, const char *cmdline)
{
	return build_smp(disk, cmdline, 1);
}

static uint64_t report(struct hv_domain *dom, int word)
{
	void *p = NULL;

	assert_int_equal(hv_map(dom, UVM_START_INFO_PFN, 1, false, &p), 0);
	return ((volatile struct uvm_start_info *)p)->report[word];
}

static void run_until(struct hv_domain *dom, int word, uint64_t min)
{
	for (int i = 0; i < 3000 && report(dom, word) < min; i++)
		usleep(2000);
	if (report(dom, word) < min)
		fail_msg("report word %d stuck at %lu, wanted %lu", word,
			 (unsigned long)report(dom, word), (unsigned long)min);
}

static uint64_t hash(uint64_t i)
{
	uint64_t h = 1469598103934665603ULL ^ i;

	for (int k = 0; k < 8; k++)
		h = (h ^ (h >> 29)) * 1099511628211ULL;
	return h;
}

/* Every record below `acked` is on `disk`, exactly as the guest wrote it. */
static void check_records(const char *disk, uint64_t acked)
{
	int fd = open(disk, O_RDONLY);
	uint64_t rec[64];

	assert_true(fd >= 0);
	for (uint64_t i = 0; i < acked; i++) {
		assert_int_equal(pread(fd, rec, 512, (off_t)(i * 512)), 512);
		if (rec[0] != MAGIC || rec[1] != i || rec[2] != hash(i))
			fail_msg("%s: acknowledged record %lu is missing or wrong "
				 "(magic %lx, id %lu)", disk, (unsigned long)i,
				 (unsigned long)rec[0], (unsigned long)rec[1]);
	}
	close(fd);
}

static void test_writes_land(void **state)
{
	struct hv_domain *dom = build(disk_a, "depth=8 count=3000");

	(void)state;
	assert_int_equal(hv_unpause(dom), 0);
	run_until(dom, UVM_REPORT_PASSES, 3000);
	assert_int_equal(report(dom, UVM_REPORT_ERRORS), 0);
	assert_int_equal(hv_pause(dom, NULL), 0);
	check_records(disk_a, 3000);
	done(dom);
}

static void test_gate_holds_completions(void **state)
{
	struct hv_domain *dom = build(disk_a, "depth=8");
	uint64_t at_hold, epoch;

	(void)state;
	assert_int_equal(hv_unpause(dom), 0);
	run_until(dom, UVM_REPORT_PASSES, 200);
	assert_int_equal(hv_gate_hold(dom, true), 0);
	usleep(20000);
	at_hold = report(dom, UVM_REPORT_PASSES);
	usleep(50000);
	/* At most the completions that were on their way at the hold. */
	assert_true(report(dom, UVM_REPORT_PASSES) <= at_hold + 8);
	assert_true(report(dom, UVM_REPORT_WRITES) <=
		    report(dom, UVM_REPORT_PASSES) + 8);
	assert_int_equal(hv_pause(dom, NULL), 0);
	epoch = hv_gate_next_epoch(dom);
	assert_int_equal(hv_unpause(dom), 0);
	assert_int_equal(hv_gate_release(dom, epoch + 5), -EINVAL);
	assert_int_equal(hv_gate_release(dom, epoch), 0);
	run_until(dom, UVM_REPORT_PASSES, at_hold + 8);
	assert_int_equal(hv_gate_hold(dom, false), 0);
	run_until(dom, UVM_REPORT_PASSES, at_hold + 1000);
	assert_int_equal(report(dom, UVM_REPORT_ERRORS), 0);
	done(dom);
}

static int save_to_memfd(struct hv_domain *dom)
{
	struct rep_snapshot_stats st;
	int fd = memfd_create("snap", 0);

	assert_int_equal(rep_snapshot_save(dom, fd, NULL, NULL, &st), 0);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	return fd;
}

static int restore(int fd, const char *disk, struct hv_domain **out,
		   char *err, size_t errlen)
{
	struct hv_config cfg = { .console_fd = -1, .disk = disk };
	struct rep_snapshot_stats st;

	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	return rep_snapshot_restore(fd, "memfd", &cfg, NULL, NULL, out, &st,
				    err, errlen);
}

static void test_inflight_reissued(void **state)
{
	struct hv_domain *dom = build(disk_a, "depth=16");
	uint64_t acked, issued;
	char err[320];
	int fd;

	(void)state;
	assert_int_equal(hv_unpause(dom), 0);
	run_until(dom, UVM_REPORT_PASSES, 500);
	/* Disk B = disk A now; then writes whose completions are held. */
	assert_int_equal(hv_pause(dom, NULL), 0);
	copy_disk(disk_a, disk_b);
	assert_int_equal(hv_gate_hold(dom, true), 0);
	assert_int_equal(hv_unpause(dom), 0);
	usleep(50000);
	assert_int_equal(hv_pause(dom, NULL), 0);
	acked = report(dom, UVM_REPORT_PASSES);
	issued = report(dom, UVM_REPORT_WRITES);
	printf("note: at the save: %lu acknowledged, %lu in flight\n",
	       (unsigned long)acked, (unsigned long)(issued - acked));
	assert_true(issued > acked);
	fd = save_to_memfd(dom);
	done(dom);
	/* "Elsewhere": disk B never saw the in-flight writes. */
	if (restore(fd, disk_b, &dom, err, sizeof(err)) != 0)
		fail_msg("restore: %s", err);
	close(fd);
	live = dom;
	assert_int_equal(report(dom, UVM_REPORT_PASSES), acked);
	assert_int_equal(hv_unpause(dom), 0);
	run_until(dom, UVM_REPORT_PASSES, issued + 500);
	assert_int_equal(hv_pause(dom, NULL), 0);
	assert_int_equal(report(dom, UVM_REPORT_ERRORS), 0);
	check_records(disk_b, report(dom, UVM_REPORT_PASSES));
	done(dom);
}

static void test_wrong_disk_size(void **state)
{
	struct hv_domain *dom = build(disk_a, "depth=4");
	char small[64], err[320];
	int fd;

	(void)state;
	assert_int_equal(hv_unpause(dom), 0);
	run_until(dom, UVM_REPORT_PASSES, 10);
	assert_int_equal(hv_pause(dom, NULL), 0);
	fd = save_to_memfd(dom);
	done(dom);
	make_disk(small, DISK_BYTES / 2);
	assert_int_not_equal(restore(fd, small, &dom, err, sizeof(err)), 0);
	assert_null(dom);
	printf("note: %s\n", err);
	/* Restoring without the disk at all is refused too. */
	assert_int_not_equal(restore(fd, NULL, &dom, err, sizeof(err)), 0);
	printf("note: %s\n", err);
	unlink(small);
	close(fd);
}

/* The block device raises its port (bound to vCPU 0) for every batch of
 * responses, waking every blocked vCPU's host thread; an idle vCPU 1 must
 * go back to sleep without returning to the guest each time. */
static void test_idle_vcpu_sleeps(void **state)
{
	struct hv_domain *dom = build_smp(disk_a, "depth=4", 2);
	struct hv_vcpu_stats busy, idle;

	(void)state;
	assert_int_equal(hv_unpause(dom), 0);
	run_until(dom, UVM_REPORT_PASSES, 100);
	usleep(300000);
	assert_int_equal(hv_vcpu_stats(dom, 0, &busy), 0);
	assert_int_equal(hv_vcpu_stats(dom, 1, &idle), 0);
	printf("note: vCPU 0 made %lu hypercalls, idle vCPU 1 made %lu\n",
	       (unsigned long)busy.hypercalls, (unsigned long)idle.hypercalls);
	assert_true(busy.hypercalls > 100);
	assert_true(idle.hypercalls <= 8);
	assert_int_equal(hv_vcpu_stats(dom, 2, &idle), -ENOENT);
	done(dom);
}

static void test_bad_disk(void **state)
{
	char image[300], tiny[64];
	struct hv_config cfg = { .image = image, .console_fd = -1,
				 .disk = "/nonexistent/disk.img" };
	struct hv_domain *dom = NULL;

	(void)state;
	snprintf(image, sizeof(image), "%s/blktest.elf", guest_dir);
	assert_int_equal(hv_domain_build(&cfg, &dom), -ENOENT);
	make_disk(tiny, 100);
	cfg.disk = tiny;
	assert_int_equal(hv_domain_build(&cfg, &dom), -EINVAL);
	assert_null(dom);
	unlink(tiny);
}

int main(void)
{
	const char *env = getenv("TANDEM_GUESTS");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_writes_land, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gate_holds_completions, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_inflight_reissued, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_wrong_disk_size, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_idle_vcpu_sleeps, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_bad_disk, setup, teardown),
	};

	if (env != NULL)
		snprintf(guest_dir, sizeof(guest_dir), "%s", env);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
