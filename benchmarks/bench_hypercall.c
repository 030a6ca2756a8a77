/*
 * bench_hypercall.c - cost of one uvm hypercall round trip.
 *
 * Runs the hcbench guest (n hypercalls of UVM_HC_EVTCHN_NOTIFY on an
 * unused port, timed by the guest clock) a few times in sequence and
 * reports ns per round trip.  Anchors measured in the same run, on the
 * main thread of this process:
 *   syscall(SYS_getppid)          a plain system call round trip
 *   raise(SIGUSR1)                a signal sent, delivered to an empty
 *                                 handler and returned from
 *   ud2 -> SIGILL                 a trap delivered as a signal whose
 *                                 handler skips the instruction: the bare
 *                                 mechanism a uvm hypercall is built on
 *   int3 -> SIGTRAP               the same with a breakpoint trap, to
 *                                 tell the cost of #UD itself on this
 *                                 host from the cost of any trap
 *
 * usage: bench_hypercall [--n COUNT (300000)] [--runs R (3)]
 *                        [--anchor-iters N (200000)]
 */
#include "benchlib.h"
#include "hv.h"
#include "uvm_abi.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/ucontext.h>
#include <unistd.h>

#define ANCHOR_REPS 5
#define MAX_RUNS 16

/* ---- anchors ------------------------------------------------------------- */

static void on_sigusr1(int sig)
{
	(void)sig;
}

static void on_sigtrap(int sig)
{
	(void)sig; /* rip is already past the int3 */
}

static void on_sigill(int sig, siginfo_t *si, void *ucv)
{
	ucontext_t *uc = ucv;

	(void)sig;
	(void)si;
	uc->uc_mcontext.gregs[REG_RIP] += 2; /* skip the ud2 */
}

enum anchor { A_SYSCALL, A_RAISE, A_UD2, A_INT3, A_NR };

static const char *const anchor_names[A_NR] = {
	[A_SYSCALL] = "syscall(SYS_getppid)",
	[A_RAISE] = "raise(SIGUSR1), empty handler",
	[A_UD2] = "ud2 -> SIGILL, handler skips it",
	[A_INT3] = "int3 -> SIGTRAP, empty handler",
};

static uint64_t anchor_once(enum anchor a, uint64_t iters)
{
	uint64_t t0 = bench_now_ns();

	for (uint64_t i = 0; i < iters; i++) {
		switch (a) {
		case A_SYSCALL:
			(void)syscall(SYS_getppid);
			break;
		case A_RAISE:
			raise(SIGUSR1);
			break;
		case A_UD2:
			__asm__ volatile("ud2" ::: "memory");
			break;
		default:
			__asm__ volatile("int3" ::: "memory");
			break;
		}
	}
	return bench_now_ns() - t0;
}

/* Median and minimum ns per operation over ANCHOR_REPS repetitions. */
static void anchor_run(enum anchor a, uint64_t iters, double *median,
		       double *min)
{
	uint64_t t[ANCHOR_REPS];

	(void)anchor_once(a, iters / 10 + 1); /* warm up */
	for (int r = 0; r < ANCHOR_REPS; r++)
		t[r] = anchor_once(a, iters);
	*median = (double)bench_median(t, ANCHOR_REPS) / (double)iters;
	*min = (double)t[0] / (double)iters;
}

static int anchors(uint64_t iters, double med[A_NR], double min[A_NR])
{
	struct sigaction sa, old_usr1, old_ill, old_trap;

	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_sigusr1;
	if (sigaction(SIGUSR1, &sa, &old_usr1) != 0)
		return -errno;
	sa.sa_handler = on_sigtrap;
	if (sigaction(SIGTRAP, &sa, &old_trap) != 0)
		return -errno;
	sa.sa_handler = NULL;
	sa.sa_sigaction = on_sigill;
	sa.sa_flags = SA_SIGINFO;
	if (sigaction(SIGILL, &sa, &old_ill) != 0)
		return -errno;
	for (int a = 0; a < A_NR; a++)
		anchor_run((enum anchor)a, iters, &med[a], &min[a]);
	sigaction(SIGUSR1, &old_usr1, NULL);
	sigaction(SIGILL, &old_ill, NULL);
	sigaction(SIGTRAP, &old_trap, NULL);
	return 0;
}

/* ---- the guest ------------------------------------------------------------- */

struct guest_run {
	uint64_t count;
	uint64_t guest_ns;  /* loop, by the guest clock */
	uint64_t host_ns;   /* unpause -> shutdown, boot included */
};

static int run_guest(const char *image, uint64_t n, struct guest_run *out)
{
	struct hv_config cfg = { 0 };
	struct hv_shutdown_info info;
	struct hv_domain *dom = NULL;
	const struct uvm_start_info *si;
	char cmdline[64];
	void *p = NULL;
	uint64_t t0;
	int rc;

	snprintf(cmdline, sizeof(cmdline), "n=%" PRIu64, n);
	cfg.image = image;
	cfg.mem_bytes = 64ULL << 20;
	cfg.nr_vcpus = 1;
	cfg.cmdline = cmdline;
	cfg.console_fd = -1;
	rc = hv_domain_build(&cfg, &dom);
	if (rc != 0) {
		fprintf(stderr, "bench_hypercall: cannot build %s: %s\n", image,
			strerror(-rc));
		return rc;
	}
	t0 = bench_now_ns();
	rc = hv_unpause(dom);
	if (rc == 0)
		rc = hv_wait_shutdown(dom, 300000, &info);
	out->host_ns = bench_now_ns() - t0;
	if (rc == 0 && (info.reason != HV_SHUTDOWN_POWEROFF || info.code != 0)) {
		fprintf(stderr, "bench_hypercall: guest did not power off "
			"cleanly: %s\n", info.detail);
		rc = -EIO;
	}
	if (rc == 0)
		rc = hv_map(dom, UVM_START_INFO_PFN, 1, false, &p);
	if (rc == 0) {
		si = p;
		out->count = si->report[UVM_REPORT_PASSES];
		out->guest_ns = si->report[UVM_REPORT_WRITES];
		if (out->count != n || si->report[UVM_REPORT_ERRORS] != 0) {
			fprintf(stderr, "bench_hypercall: guest reported %" PRIu64
				" calls (wanted %" PRIu64 "), %" PRIu64
				" failed\n", out->count, n,
				si->report[UVM_REPORT_ERRORS]);
			rc = -EIO;
		}
	} else {
		fprintf(stderr, "bench_hypercall: guest run failed: %s\n",
			strerror(-rc));
	}
	hv_domain_free(dom);
	return rc;
}

int main(int argc, char **argv)
{
	uint64_t n = 300000, runs = 3, anchor_iters = 200000;
	double med[A_NR], min[A_NR], per[MAX_RUNS] = { 0 }, hc_med, hc_min;
	struct guest_run gr[MAX_RUNS];
	char image[PATH_MAX + 32];
	int rc;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--n") == 0 && i + 1 < argc)
			n = bench_parse_u64("bench_hypercall", "--n", argv[++i]);
		else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
			runs = bench_parse_u64("bench_hypercall", "--runs", argv[++i]);
		else if (strcmp(argv[i], "--anchor-iters") == 0 && i + 1 < argc)
			anchor_iters = bench_parse_u64("bench_hypercall", "--anchor-iters", argv[++i]);
		else {
			fprintf(stderr, "usage: bench_hypercall [--n COUNT] "
				"[--runs R] [--anchor-iters N]\n");
			return 2;
		}
	}
	if (runs > MAX_RUNS)
		runs = MAX_RUNS;
	bench_quiet_logs();
	bench_guest_path("hcbench", image, sizeof(image));
	bench_print_machine("bench_hypercall: uvm hypercall round trip");
	printf("guest %s, n=%" PRIu64 " hypercalls per run, %" PRIu64
	       " runs; anchors %" PRIu64 " iterations x %d repetitions\n",
	       image, n, runs, anchor_iters, ANCHOR_REPS);
	if (access(image, R_OK) != 0) {
		fprintf(stderr, "bench_hypercall: %s: %s (build it with "
			"`make build/guests/hcbench.elf`, or add hcbench to "
			"GUESTS in the Makefile)\n", image, strerror(errno));
		return 1;
	}

	rc = anchors(anchor_iters, med, min);
	if (rc != 0) {
		fprintf(stderr, "bench_hypercall: sigaction: %s\n", strerror(-rc));
		return 1;
	}

	printf("\nguest runs (EVTCHN_NOTIFY on port 200, timed by the guest "
	       "clock):\n");
	printf("  %-4s %12s %14s %12s %16s\n", "run", "calls", "guest ms",
	       "ns/call", "host ms (+boot)");
	for (uint64_t r = 0; r < runs; r++) {
		if (run_guest(image, n, &gr[r]) != 0)
			return 1;
		per[r] = (double)gr[r].guest_ns / (double)gr[r].count;
		printf("  %-4" PRIu64 " %12" PRIu64 " %14.1f %12.1f %16.1f\n", r,
		       gr[r].count, gr[r].guest_ns / 1e6, per[r],
		       gr[r].host_ns / 1e6);
	}
	hc_min = per[0];
	for (uint64_t r = 1; r < runs; r++)
		if (per[r] < hc_min)
			hc_min = per[r];
	for (uint64_t i = 1; i < runs; i++) /* insertion sort, runs is small */
		for (uint64_t j = i; j > 0 && per[j - 1] > per[j]; j--) {
			double t = per[j];

			per[j] = per[j - 1];
			per[j - 1] = t;
		}
	hc_med = per[runs / 2];

	printf("\n  %-46s %12s %10s %14s\n", "operation", "ns/op (med)",
	       "min", "hypercall / x");
	for (int a = 0; a < A_NR; a++)
		printf("  %-46s %12.1f %10.1f %14.2f\n", anchor_names[a], med[a],
		       min[a], hc_med / med[a]);
	printf("  %-46s %12.1f %10.1f %14s\n",
	       "uvm hypercall (ud2 trap, exit path, resume)", hc_med, hc_min,
	       "1.00");
	printf("\nhypercall round trip: %.0f ns = %.2fx a getppid syscall, "
	       "%.2fx a raise(SIGUSR1) round trip, %.2fx a bare ud2/SIGILL "
	       "round trip, %.2fx an int3/SIGTRAP round trip\n", hc_med,
	       hc_med / med[A_SYSCALL], hc_med / med[A_RAISE],
	       hc_med / med[A_UD2], hc_med / med[A_INT3]);
	return 0;
}
