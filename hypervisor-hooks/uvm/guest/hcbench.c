/*
 * hcbench.c - uvm guest that measures the hypercall round trip.
 *
 * It reads the guest clock (UVM_HC_CLOCK), makes COUNT hypercalls that do
 * no host work beyond the trap itself (UVM_HC_EVTCHN_NOTIFY on a port
 * nothing listens on, which returns 0), reads the clock again, reports
 * and powers off.  benchmarks/bench_hypercall.c runs it.
 *
 * cmdline:
 *   n=COUNT   hypercalls in the timed loop (default 1000000)
 *   port=P    event-channel port to notify (default 200, unused by the
 *             platform; must not be the console port)
 *
 * Report: KIND = 0, PASSES = COUNT, WRITES = elapsed guest ns of the loop
 * (two UVM_HC_CLOCK calls included), ERRORS = hypercalls that did not
 * return 0.  PASSES is written last, so a host that sees it non-zero sees
 * the other words too.  Exit code 0, or 1 if any call failed.
 */
#include "sdk.h"

int main(const struct uvm_start_info *si)
{
	uint64_t n = cmdline_u64("n", 1000000);
	uint64_t port = cmdline_u64("port", 200);
	uint64_t errors = 0, t0, t1;

	(void)si;
	if (port >= UVM_NR_EVTCHN || port == UVM_PORT_CONSOLE)
		panic("hcbench: port %llu is not a usable port",
		      (unsigned long long)port);
	report_set(UVM_REPORT_KIND, 0);
	report_set(UVM_REPORT_PASSES, 0);
	t0 = hc_clock();
	for (uint64_t i = 0; i < n; i++)
		if (hc_evtchn_notify((uint32_t)port) != 0)
			errors++;
	t1 = hc_clock();
	report_set(UVM_REPORT_WRITES, t1 - t0);
	report_set(UVM_REPORT_ERRORS, errors);
	report_set(UVM_REPORT_PASSES, n);
	hc_shutdown(UVM_SHUTDOWN_POWEROFF, errors != 0);
}
