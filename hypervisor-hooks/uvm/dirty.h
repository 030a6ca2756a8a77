/*
 * dirty.h - exact dirty-page tracking over one guest arena.
 *
 * Two mechanisms, chosen at run time:
 *
 *  uffd-wp   userfaultfd write-protect in async mode: the kernel resolves
 *            write faults itself and PAGEMAP_SCAN reports (and re-protects)
 *            the written pages.  A scan costs per page-table entry, so to
 *            keep a paused fetch proportional to what the guest writes, the
 *            arena is also mprotect()ed read-only in 2 MiB regions: the
 *            first write to a region faults once, the fault handler opens
 *            the region and pushes it onto the dirty ring.  Open regions
 *            stay open and are rescanned at every fetch (cheap while their
 *            pages are still write-protected); closing a region that
 *            stayed clean for a few fetches (dear: it rewrites every
 *            entry) is left to uvm_dirty_trim, run while the guest runs.
 *            A fetch thus costs per region of the working set.
 *  mprotect  the fallback: the same ring at page granularity, each first
 *            write to a page faults once and every fetch closes what it
 *            reports.  Where the kernel refuses to split mappings further
 *            (ENOMEM, map count), a whole 2 MiB region is opened and
 *            reported dirty, or on closing the whole arena is closed
 *            (counted as escalations; they cost false positives).
 *
 * The ring holds unit indices; a unit is pushed when its "touched" bit goes
 * 0 -> 1 and the bit is cleared only when the fetch consumes that entry, so
 * the ring never holds more entries than units.  Order of operations
 * (fault: open, then mark; fetch: unmark, close, then scan) is what makes a
 * fetch exact even while the guest keeps writing; see dirty.c.
 */
#ifndef TANDEM_UVM_DIRTY_H
#define TANDEM_UVM_DIRTY_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hv.h"

struct uvm_dirty;

struct uvm_dirty_counters {
	uint64_t faults;          /* tracking faults taken */
	uint64_t escalations;     /* mprotect mode: regions opened whole */
	uint64_t fetches;
	uint64_t pages_reported;
};

/* Probe the host and prepare tracking of [base, base + len); len is a
 * multiple of the page size.  `want` HV_DIRTY_AUTO picks uffd-wp when the
 * kernel has it; TANDEM_DIRTY=mprotect|uffd-wp in the environment
 * overrides AUTO. */
int uvm_dirty_new(void *base, size_t len, enum hv_dirty_mech want,
		  struct uvm_dirty **out);
void uvm_dirty_free(struct uvm_dirty *d);
enum hv_dirty_mech uvm_dirty_mech(const struct uvm_dirty *d);
bool uvm_dirty_enabled(const struct uvm_dirty *d);

int uvm_dirty_enable(struct uvm_dirty *d);
int uvm_dirty_disable(struct uvm_dirty *d);
int uvm_dirty_fetch(struct uvm_dirty *d, uint64_t *bitmap,
		    struct hv_dirty_stats *stats);
/* Housekeeping for uffd-wp, to call while the guest runs: close regions
 * that stayed clean for several fetches, so later fetches scan less.
 * Costs a page-table update per closed region; never loses a write.  A
 * no-op for mprotect.  `closed` receives how many regions were closed. */
int uvm_dirty_trim(struct uvm_dirty *d, uint64_t *closed);
void uvm_dirty_counters(const struct uvm_dirty *d,
			struct uvm_dirty_counters *out);

/* Make [off, off + len) writable for the kernel (read(2) into guest
 * memory) and count it as written.  Host code writing through plain
 * stores needs nothing: its faults are handled like the guest's. */
int uvm_dirty_host_write(struct uvm_dirty *d, size_t off, size_t len);

/* Fault path, async-signal-safe: true if `addr` was a tracking fault on
 * some enabled tracker and has been resolved (the access may be retried). */
bool uvm_dirty_fault(void *addr);

/* Install the process-wide SIGSEGV handler that resolves tracking faults
 * (idempotent).  `next` gets every fault that is not a tracking fault. */
void uvm_dirty_install_handler(void (*next)(int, siginfo_t *, void *));

#endif
