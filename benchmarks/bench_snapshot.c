/*
 * bench_snapshot.c - snapshot save and restore time per GiB of guest
 * memory.
 *
 * A pagetest guest with a region of --mib MiB (default 1024: 262144 pages
 * in a 1280 MiB guest) runs until it has finished one pass, so every page
 * of the region is populated and non-zero.  It is paused and saved with
 * rep_snapshot_save to a file in a fresh temporary directory (under --dir,
 * default $TMPDIR or /tmp), which is then fsynced; the domain is freed and
 * rep_snapshot_restore builds it again from the file (the file is still in
 * the page cache: nothing is dropped).  The restored region is checked
 * with the pagetest checker (not timed); a failed check is an error.
 *
 * Anchors in the same run, on the same filesystem: `/bin/cp src dst`
 * (fork/exec, timed to its exit) of a file with the same byte count as the
 * snapshot, then open + fsync of the copy; and a memcpy of the region size
 * between two pre-faulted buffers.  Each step is repeated --reps times
 * (default 3; each save replaces the file, the last one is restored
 * --reps times) and reported as median, min and max: page-cache writes on
 * this kind of host vary a lot from one run to the next.  Temporary files
 * are removed.
 *
 * usage: bench_snapshot [--mib N] [--reps R] [--dir DIR | DIR]
 */
#include "benchlib.h"
#include "hv.h"
#include "pagetest_check.h"
#include "replicator.h"
#include "uvm_abi.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MIB ((uint64_t)1 << 20)
#define GIB ((uint64_t)1 << 30)
#define GUEST_EXTRA_MIB 256
#define MEMCPY_REPS 3
#define FILL_CHUNK (8ULL << 20)

/* ---- files ----------------------------------------------------------------- */

static int fsync_path(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) != 0)
		rc = -errno;
	close(fd);
	return rc;
}

/* A file of exactly `bytes` bytes of a non-zero pattern, fsynced. */
static int make_file(const char *path, uint64_t bytes)
{
	uint8_t *buf = malloc(FILL_CHUNK);
	int fd, rc = 0;

	if (buf == NULL)
		return -ENOMEM;
	for (uint64_t i = 0; i < FILL_CHUNK; i++)
		buf[i] = (uint8_t)(i * 131 + 7);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		free(buf);
		return -errno;
	}
	while (rc == 0 && bytes > 0) {
		size_t n = bytes < FILL_CHUNK ? (size_t)bytes : FILL_CHUNK;
		ssize_t w = write(fd, buf, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			rc = w < 0 ? -errno : -EIO;
		else
			bytes -= (uint64_t)w;
	}
	if (rc == 0 && fsync(fd) != 0)
		rc = -errno;
	close(fd);
	free(buf);
	return rc;
}

/* fork/exec /bin/cp src dst; 0 when it exits 0. */
static int run_cp(const char *src, const char *dst)
{
	int status;
	pid_t pid = fork();

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		execl("/bin/cp", "cp", src, dst, (char *)NULL);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EIO;
}

/* ---- the guest ----------------------------------------------------------- */

static const uint8_t *page_at(void *ctx, uint64_t pfn)
{
	void *p = NULL;

	return hv_map(ctx, pfn, 1, false, &p) == 0 ? p : NULL;
}

static const struct uvm_start_info *start_info(struct hv_domain *dom)
{
	void *p = NULL;

	return hv_map(dom, UVM_START_INFO_PFN, 1, false, &p) == 0 ? p : NULL;
}

/* Build the guest and run it until its first pass is complete. */
static int populate_guest(const char *image, uint64_t mib,
			  struct hv_domain **out, uint64_t *run_ns)
{
	struct hv_config cfg = { 0 };
	volatile const struct uvm_start_info *si;
	char cmdline[96];
	uint64_t t0;
	int rc;

	snprintf(cmdline, sizeof(cmdline), "pages=%" PRIu64 " print=0",
		 mib * (MIB / HV_PAGE_SIZE));
	cfg.image = image;
	cfg.mem_bytes = (mib + GUEST_EXTRA_MIB) * MIB;
	cfg.nr_vcpus = 1;
	cfg.cmdline = cmdline;
	cfg.console_fd = -1;
	rc = hv_domain_build(&cfg, out);
	if (rc != 0) {
		fprintf(stderr, "bench_snapshot: cannot build %s: %s\n", image,
			strerror(-rc));
		return rc;
	}
	si = start_info(*out);
	t0 = bench_now_ns();
	rc = si == NULL ? -EFAULT : hv_unpause(*out);
	while (rc == 0 && !(si->report[UVM_REPORT_KIND] == UVM_GUEST_PAGETEST &&
			    si->report[UVM_REPORT_PASSES] >= 1)) {
		struct hv_shutdown_info info;

		if (hv_wait_shutdown(*out, 0, &info) != -ETIMEDOUT) {
			fprintf(stderr, "bench_snapshot: guest stopped: %s\n",
				info.detail);
			rc = -EIO;
		} else if (bench_now_ns() - t0 > 300000000000ULL) {
			fprintf(stderr, "bench_snapshot: guest did not finish a "
				"pass in 300 s\n");
			rc = -ETIMEDOUT;
		}
		bench_sleep_ns(10000000ULL);
	}
	*run_ns = bench_now_ns() - t0;
	if (rc != 0) {
		hv_domain_free(*out);
		*out = NULL;
	}
	return rc;
}

static int check_region(struct hv_domain *dom)
{
	const struct uvm_start_info *si = start_info(dom);
	struct pagetest_result res;
	int rc;

	if (si == NULL)
		return -EFAULT;
	rc = pagetest_check(page_at, dom, si->report[UVM_REPORT_REGION_PFN],
			    si->report[UVM_REPORT_REGION_PAGES], &res);
	if (rc == 0)
		rc = pagetest_check_passes(&res, si->report[UVM_REPORT_PASSES]);
	if (rc != 0)
		fprintf(stderr, "bench_snapshot: restored region fails the "
			"pagetest check: %s\n", res.msg);
	return rc;
}

/* hv_populated alone: the page walk a save starts with (mincore + zero
 * test of each resident page). */
static int time_populated(struct hv_domain *dom, uint64_t *ns)
{
	uint64_t n = hv_nr_pages(dom);
	uint64_t *bm = calloc((n + 63) / 64, sizeof(uint64_t)), t0;
	int rc;

	if (bm == NULL)
		return -ENOMEM;
	t0 = bench_now_ns();
	rc = hv_populated(dom, bm);
	*ns = bench_now_ns() - t0;
	free(bm);
	return rc;
}

/* ---- output ---------------------------------------------------------------- */

#define MAX_REPS 9

struct series {
	uint64_t ns[MAX_REPS];
	unsigned n;
};

static void series_add(struct series *s, uint64_t ns)
{
	if (s->n < MAX_REPS)
		s->ns[s->n++] = ns;
}

/* Median, min and max (sorts the series). */
static void row(const char *what, uint64_t bytes, struct series *s)
{
	double mib = (double)bytes / (double)MIB, med, ms_min, ms_max;

	med = bench_median(s->ns, s->n) / 1e6;
	ms_min = s->ns[0] / 1e6;
	ms_max = s->ns[s->n - 1] / 1e6;
	printf("  %-42s %8.1f %9.1f %9.1f %9.1f %9.1f %9.1f\n", what, mib, med,
	       ms_min, ms_max, med > 0 ? mib / (med / 1e3) : 0.0,
	       bytes ? med / ((double)bytes / (double)GIB) : 0.0);
}

/* ---- the measurements -------------------------------------------------------- */

struct results {
	struct rep_snapshot_stats save_st, rest_st;
	struct series save, fsync, save_fsync, restore, populated;
	struct series cp, cp_fsync, cp_total, memcpy;
	uint64_t run_ns, reach_ns;
};

/* Save the paused domain to `path` and fsync it. */
static int save_once(struct hv_domain *dom, const char *path,
		     struct results *r)
{
	uint64_t t0, ns;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	int rc;

	if (fd < 0)
		return -errno;
	rc = rep_snapshot_save(dom, fd, NULL, NULL, &r->save_st);
	t0 = bench_now_ns();
	if (rc == 0 && fsync(fd) != 0)
		rc = -errno;
	ns = bench_now_ns() - t0;
	close(fd);
	if (rc == 0) {
		series_add(&r->save, r->save_st.ns);
		series_add(&r->fsync, ns);
		series_add(&r->save_fsync, r->save_st.ns + ns);
	}
	return rc;
}

static int restore_once(const char *path, struct results *r)
{
	struct hv_config cfg = { .console_fd = -1 };
	struct hv_domain *dom = NULL;
	char err[320];
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc;

	if (fd < 0)
		return -errno;
	rc = rep_snapshot_restore(fd, path, &cfg, NULL, NULL, &dom, &r->rest_st,
				  err, sizeof(err));
	close(fd);
	if (rc != 0) {
		fprintf(stderr, "bench_snapshot: restore failed: %s\n", err);
		return rc;
	}
	series_add(&r->restore, r->rest_st.ns);
	rc = check_region(dom);
	hv_domain_free(dom);
	return rc;
}

static int cp_once(const char *src, const char *dst, struct results *r)
{
	uint64_t t0 = bench_now_ns(), cp, sync;
	int rc = run_cp(src, dst);

	cp = bench_now_ns() - t0;
	t0 = bench_now_ns();
	if (rc == 0)
		rc = fsync_path(dst);
	sync = bench_now_ns() - t0;
	unlink(dst);
	if (rc == 0) {
		series_add(&r->cp, cp);
		series_add(&r->cp_fsync, sync);
		series_add(&r->cp_total, cp + sync);
	}
	return rc;
}

static int memcpy_anchor(uint64_t bytes, unsigned reps, struct results *r)
{
	uint8_t *a = malloc(bytes), *b = malloc(bytes);

	if (a == NULL || b == NULL) {
		free(a);
		free(b);
		return -ENOMEM;
	}
	memset(a, 1, bytes);
	memset(b, 2, bytes);
	for (unsigned i = 0; i < reps; i++) {
		uint64_t t0 = bench_now_ns();

		memcpy(i % 2 ? a : b, i % 2 ? b : a, bytes);
		series_add(&r->memcpy, bench_now_ns() - t0);
	}
	if (a[bytes - 1] == 3) /* keep the copies observable */
		printf(" ");
	free(a);
	free(b);
	return 0;
}

static int run(const char *image, uint64_t mib, unsigned reps,
	       const char *tmpdir, struct results *r)
{
	char snap[PATH_MAX + 32], src[PATH_MAX + 32], dst[PATH_MAX + 32];
	struct hv_domain *dom = NULL;
	struct hv_pause_info pi = { 0 };
	uint64_t ns;
	int rc;

	snprintf(snap, sizeof(snap), "%s/guest.snap", tmpdir);
	snprintf(src, sizeof(src), "%s/cp-src", tmpdir);
	snprintf(dst, sizeof(dst), "%s/cp-dst", tmpdir);

	rc = populate_guest(image, mib, &dom, &r->run_ns);
	if (rc == 0)
		rc = hv_pause(dom, &pi);
	r->reach_ns = pi.reach_ns;
	for (unsigned i = 0; rc == 0 && i < reps; i++) {
		rc = time_populated(dom, &ns);
		if (rc == 0)
			series_add(&r->populated, ns);
	}
	/* Each save replaces the previous file; the last one is restored. */
	for (unsigned i = 0; rc == 0 && i < reps; i++) {
		unlink(snap);
		rc = save_once(dom, snap, r);
	}
	hv_domain_free(dom);
	if (rc != 0) {
		fprintf(stderr, "bench_snapshot: save failed: %s\n", strerror(-rc));
		goto out;
	}
	for (unsigned i = 0; rc == 0 && i < reps; i++)
		rc = restore_once(snap, r);
	unlink(snap);
	if (rc != 0)
		goto out;

	rc = make_file(src, r->save_st.bytes);
	for (unsigned i = 0; rc == 0 && i < reps; i++)
		rc = cp_once(src, dst, r);
	if (rc != 0)
		fprintf(stderr, "bench_snapshot: cp anchor failed: %s\n",
			strerror(-rc));
	if (rc == 0)
		rc = memcpy_anchor(mib * MIB, reps, r);
out:
	unlink(snap);
	unlink(src);
	unlink(dst);
	return rc;
}

int main(int argc, char **argv)
{
	const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	char image[PATH_MAX + 32], tmpdir[PATH_MAX];
	static struct results r;
	uint64_t mib = 1024, guest_bytes;
	unsigned reps = 3;
	int rc;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--mib") == 0 && i + 1 < argc) {
			mib = strtoull(argv[++i], NULL, 10);
			if (mib == 0 || mib > 16384) {
				fprintf(stderr, "bench_snapshot: --mib 1..16384\n");
				return 2;
			}
		} else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
			reps = (unsigned)atoi(argv[++i]);
			if (reps < 1 || reps > MAX_REPS) {
				fprintf(stderr, "bench_snapshot: --reps 1..%d\n",
					MAX_REPS);
				return 2;
			}
		} else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
			dir = argv[++i];
		} else if (argv[i][0] != '-') {
			dir = argv[i];
		} else {
			fprintf(stderr, "usage: bench_snapshot [--mib N] [--reps R] "
				"[--dir DIR | DIR]\n");
			return 2;
		}
	}
	bench_quiet_logs();
	bench_guest_path("pagetest", image, sizeof(image));
	snprintf(tmpdir, sizeof(tmpdir), "%s/tandem-bench-XXXXXX", dir);
	if (mkdtemp(tmpdir) == NULL) {
		fprintf(stderr, "bench_snapshot: mkdtemp in %s: %s\n", dir,
			strerror(errno));
		return 1;
	}
	bench_print_machine("bench_snapshot: snapshot save / restore per GiB");
	printf("pagetest region %" PRIu64 " MiB (%" PRIu64 " pages) in a %" PRIu64
	       " MiB guest; files in %s; %u repetitions of each step\n", mib,
	       mib * (MIB / HV_PAGE_SIZE), mib + GUEST_EXTRA_MIB, tmpdir, reps);
	fflush(stdout);
	rc = run(image, mib, reps, tmpdir, &r);
	rmdir(tmpdir);
	if (rc != 0) {
		fprintf(stderr, "bench_snapshot: failed: %s\n", strerror(-rc));
		return 1;
	}
	guest_bytes = r.save_st.pages * HV_PAGE_SIZE;
	printf("guest populated in %.0f ms (first pass done); pause reached in "
	       "%.1f us\n", r.run_ns / 1e6, r.reach_ns / 1e3);
	printf("snapshot: %" PRIu64 " pages (%.1f MiB of guest memory), stream "
	       "%.1f MiB; restore applied %" PRIu64 " pages; restored region "
	       "passes the pagetest check\n\n", r.save_st.pages,
	       (double)guest_bytes / MIB, (double)r.save_st.bytes / MIB,
	       r.rest_st.pages);
	printf("  %-42s %8s %9s %9s %9s %9s %9s\n", "operation", "MiB", "med ms",
	       "min ms", "max ms", "MiB/s", "ms/GiB");
	row("save: rep_snapshot_save (to page cache)", guest_bytes, &r.save);
	row("  hv_populated alone (first step of save)", guest_bytes,
	    &r.populated);
	row("save: fsync of the snapshot file", guest_bytes, &r.fsync);
	row("save + fsync", guest_bytes, &r.save_fsync);
	row("restore: rep_snapshot_restore (cached)", guest_bytes, &r.restore);
	row("anchor: /bin/cp of a same-size file", r.save_st.bytes, &r.cp);
	row("anchor: fsync of the copy", r.save_st.bytes, &r.cp_fsync);
	row("anchor: cp + fsync", r.save_st.bytes, &r.cp_total);
	row("anchor: memcpy of the region size", mib * MIB, &r.memcpy);
	printf("\nMiB/s and ms/GiB use the median and are per MiB of guest memory "
	       "(save, restore) or of bytes copied (anchors)\n");
	return 0;
}
