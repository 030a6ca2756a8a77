/*
 * bench_pause.c - time from a pause request to a paused domain.
 *
 * For each guest configuration: build, start, wait until the guest has
 * published its report (set-up done), then repeat `cycles` times: let it
 * run for `run-ms`, hv_pause (recording hv_pause_info.reach_ns and how each
 * vCPU parked), hv_unpause.  Prints p50/p99/max of reach_ns and how many
 * vCPU parks were at a hypercall boundary (or blocked) vs preempted by the
 * kick after the configured bound.  The guest must still be running and
 * making progress afterwards, or the run is an error.
 *
 * Cases: pagetest yield=64 (reaches a hypercall every 64 pages), pagetest
 * yield=0 (no hypercall inside a pass: must be preempted after the bound),
 * memstress with a rate (sleeps in UVM_HC_BLOCK between 1 ms slices), and
 * two 2-vCPU guests: pagetest yield=64 (vCPU 1 idles, blocked) and
 * vecguest (both vCPUs spin with a yield every 1000 iterations).
 *
 * usage: bench_pause [--cycles N] [--run-ms M] [--bound-us B]
 */
#include "benchlib.h"
#include "hv.h"
#include "uvm_abi.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- one case -------------------------------------------------------------- */

struct pause_case {
	const char *label;
	const char *guest;
	const char *cmdline;
	unsigned vcpus;
	uint64_t kind;      /* report KIND once set-up is done */
	unsigned progress;  /* report word that must advance */
};

static const struct pause_case cases[] = {
	{ "pagetest yield=64", "pagetest", "pages=4096 yield=64 print=0", 1,
	  UVM_GUEST_PAGETEST, UVM_REPORT_PASSES },
	{ "pagetest yield=0", "pagetest", "pages=4096 yield=0 print=0", 1,
	  UVM_GUEST_PAGETEST, UVM_REPORT_PASSES },
	{ "memstress rate=200000/s", "memstress",
	  "wss=16M rate=200000 print=0", 1, UVM_GUEST_MEMSTRESS,
	  UVM_REPORT_WRITES },
	{ "pagetest yield=64, 2 vCPUs (1 idle)", "pagetest",
	  "pages=4096 yield=64 print=0", 2, UVM_GUEST_PAGETEST,
	  UVM_REPORT_PASSES },
	{ "vecguest yield=1000, 2 vCPUs busy", "vecguest",
	  "spin=1000000 yield=1000 print=0", 2, UVM_GUEST_VECGUEST,
	  UVM_REPORT_PASSES },
};

struct case_result {
	uint64_t p50, p99, max, min;
	double mean;
	uint64_t at_boundary, preempted, parks;
	uint64_t cycles;
	unsigned bound_us;
};

static volatile const uint64_t *report_words(struct hv_domain *dom)
{
	void *p = NULL;

	if (hv_map(dom, UVM_START_INFO_PFN, 1, false, &p) != 0)
		return NULL;
	return ((volatile struct uvm_start_info *)p)->report;
}

static int still_running(struct hv_domain *dom, const char *label)
{
	struct hv_shutdown_info info;

	if (hv_wait_shutdown(dom, 0, &info) == -ETIMEDOUT)
		return 0;
	fprintf(stderr, "bench_pause: %s: guest stopped: %s\n", label,
		info.detail);
	return -EIO;
}

static int run_case(const struct pause_case *c, uint64_t cycles,
		    uint64_t run_ns, unsigned bound_us, struct case_result *res)
{
	struct hv_config cfg = { 0 };
	struct hv_domain *dom = NULL;
	volatile const uint64_t *rep;
	uint64_t *reach = calloc(cycles, sizeof(uint64_t));
	uint64_t t0, before, sum = 0;
	char image[PATH_MAX + 32];
	int rc;

	if (reach == NULL)
		return -ENOMEM;
	memset(res, 0, sizeof(*res));
	bench_guest_path(c->guest, image, sizeof(image));
	cfg.image = image;
	cfg.mem_bytes = 128ULL << 20;
	cfg.nr_vcpus = c->vcpus;
	cfg.cmdline = c->cmdline;
	cfg.console_fd = -1;
	cfg.pause_bound_us = bound_us;
	rc = hv_domain_build(&cfg, &dom);
	if (rc != 0) {
		fprintf(stderr, "bench_pause: %s: cannot build %s: %s\n",
			c->label, image, strerror(-rc));
		free(reach);
		return rc;
	}
	res->bound_us = hv_domain_config(dom)->pause_bound_us;
	rep = report_words(dom);
	rc = rep == NULL ? -EFAULT : hv_unpause(dom);
	/* Wait for set-up (KIND published) and the first bit of progress. */
	t0 = bench_now_ns();
	while (rc == 0 && (rep[UVM_REPORT_KIND] != c->kind ||
			   rep[c->progress] == 0)) {
		if (bench_now_ns() - t0 > 20000000000ULL) {
			fprintf(stderr, "bench_pause: %s: guest made no progress "
				"in 20 s\n", c->label);
			rc = -ETIMEDOUT;
			break;
		}
		rc = still_running(dom, c->label);
		bench_sleep_ns(1000000);
	}
	before = rc == 0 ? rep[c->progress] : 0;
	for (uint64_t i = 0; rc == 0 && i < cycles; i++) {
		struct hv_pause_info info;

		bench_sleep_ns(run_ns);
		rc = hv_pause(dom, &info);
		if (rc != 0) {
			fprintf(stderr, "bench_pause: %s: pause %" PRIu64
				" failed: %s\n", c->label, i, strerror(-rc));
			break;
		}
		reach[i] = info.reach_ns;
		res->at_boundary += info.at_boundary;
		res->preempted += info.preempted;
		res->parks += info.nr_vcpus;
		rc = hv_unpause(dom);
	}
	if (rc == 0)
		rc = still_running(dom, c->label);
	if (rc == 0) {
		bench_sleep_ns(run_ns);
		if (rep[c->progress] == before) {
			fprintf(stderr, "bench_pause: %s: guest made no progress "
				"over the pause cycles\n", c->label);
			rc = -EIO;
		}
	}
	if (rc == 0) {
		qsort(reach, cycles, sizeof(reach[0]), bench_cmp_u64);
		for (uint64_t i = 0; i < cycles; i++)
			sum += reach[i];
		res->cycles = cycles;
		res->min = reach[0];
		res->p50 = bench_pct(reach, cycles, 50);
		res->p99 = bench_pct(reach, cycles, 99);
		res->max = reach[cycles - 1];
		res->mean = (double)sum / (double)cycles;
	}
	hv_domain_free(dom);
	free(reach);
	return rc;
}

int main(int argc, char **argv)
{
	uint64_t cycles = 500, run_ms = 2;
	unsigned bound_us = 0;
	int failed = 0;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--cycles") == 0 && i + 1 < argc)
			cycles = bench_parse_u64("bench_pause", "--cycles", argv[++i]);
		else if (strcmp(argv[i], "--run-ms") == 0 && i + 1 < argc)
			run_ms = bench_parse_u64("bench_pause", "--run-ms", argv[++i]);
		else if (strcmp(argv[i], "--bound-us") == 0 && i + 1 < argc)
			bound_us = (unsigned)bench_parse_u64("bench_pause", "--bound-us", argv[++i]);
		else {
			fprintf(stderr, "usage: bench_pause [--cycles N] "
				"[--run-ms M] [--bound-us B]\n");
			return 2;
		}
	}
	bench_quiet_logs();
	bench_print_machine("bench_pause: pause request -> every vCPU parked");
	printf("%" PRIu64 " pause/unpause cycles per case, %" PRIu64 " ms of "
	       "running before each pause; reach_ns from hv_pause_info\n\n",
	       cycles, run_ms);
	printf("  %-36s %5s %8s %8s %8s %8s %8s  %9s %9s\n", "case", "vcpu",
	       "min us", "p50 us", "mean us", "p99 us", "max us", "boundary",
	       "preempted");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct case_result r;
		int rc;

		fflush(stdout);
		rc = run_case(&cases[i], cycles, run_ms * 1000000ULL, bound_us, &r);
		if (rc != 0) {
			printf("  %-36s  ERROR: %s\n", cases[i].label,
			       strerror(-rc));
			failed = 1;
			continue;
		}
		if (i == 0)
			bound_us = r.bound_us; /* print the default it used */
		printf("  %-36s %5u %8.1f %8.1f %8.1f %8.1f %8.1f  %9" PRIu64
		       " %9" PRIu64 "\n", cases[i].label, cases[i].vcpus,
		       r.min / 1e3, r.p50 / 1e3, r.mean / 1e3, r.p99 / 1e3,
		       r.max / 1e3, r.at_boundary, r.preempted);
	}
	printf("\nconfigured pause bound: %u us (a vCPU that makes no hypercall "
	       "within it is kicked; kicks repeat every 10 ms)\n", bound_us);
	printf("boundary/preempted count vCPU parks over all cycles (cycles x "
	       "vCPUs)\n");
	return failed;
}
