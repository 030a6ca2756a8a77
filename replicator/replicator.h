/*
 * replicator.h - moving guest state between hosts and files.
 *
 * This part: a whole-domain snapshot in the wire format
 * (docs/wire-format.md, stream type SNAPSHOT): DOMAIN_INFO, the populated
 * pages, every vCPU, every device, END.  A restore builds a new paused
 * domain and applies nothing to a guest that could run until the END
 * record has verified the whole stream; on any error the half-built domain
 * is destroyed.
 */
#ifndef TANDEM_REPLICATOR_H
#define TANDEM_REPLICATOR_H

#include <stdint.h>

#include "hv.h"

struct rep_snapshot_stats {
	uint64_t pages;       /* pages written or applied */
	uint64_t bytes;       /* stream bytes */
	uint64_t ns;          /* wall time of the save or restore */
};

/* Called now and then during a long save or restore. */
typedef void (*rep_progress_fn)(void *arg, uint64_t done_pages,
				uint64_t total_pages);

/* Write a snapshot of `dom` (which must be paused) to fd. */
int rep_snapshot_save(struct hv_domain *dom, int fd, rep_progress_fn progress,
		      void *arg, struct rep_snapshot_stats *stats);

/* Read a snapshot from fd into a new paused domain.  `cfg` supplies what a
 * snapshot does not carry (backend, console, pause bound, dirty
 * mechanism); memory size, vCPUs and command line come from the stream.
 * `err` receives a one-line reason on failure. */
int rep_snapshot_restore(int fd, const char *name, const struct hv_config *cfg,
			 rep_progress_fn progress, void *arg,
			 struct hv_domain **out, struct rep_snapshot_stats *stats,
			 char *err, size_t errlen);

#endif
