/*
 * replicator.h - moving guest state between hosts and files.
 *
 * Two parts.  Continuous checkpointing (docs/replication.md): a primary
 * (rep_primary, the checkpoint engine) streams epochs of a running guest
 * over a transport link to a standby (rep_standby, the replica), which
 * applies each epoch atomically and acknowledges it; the guest's output of
 * an epoch is held until then.  And a whole-domain snapshot in the wire format
 * (docs/wire-format.md, stream type SNAPSHOT): DOMAIN_INFO, the populated
 * pages, every vCPU, every device, END.  A restore builds a new paused
 * domain and applies nothing to a guest that could run until the END
 * record has verified the whole stream; on any error the half-built domain
 * is destroyed.
 */
#ifndef TANDEM_REPLICATOR_H
#define TANDEM_REPLICATOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hv.h"

struct tp_link;
struct tp_msg;

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

/* ---- continuous checkpointing ------------------------------------------- */

enum rep_role {
	REP_ROLE_NONE = 0,
	REP_ROLE_PRIMARY = 1,
	REP_ROLE_STANDBY = 2,
};

enum rep_mode {
	REP_MODE_REMUS = 0,  /* epochs on a timer; output held until commit */
	REP_MODE_KEMARI = 1, /* checkpoint when the guest notifies a device */
	REP_MODE_HYBRID = 2, /* timer, early when output waits past a bound */
};

/* Points of the checkpoint cycle where a drill (or a test's failpoint)
 * kills the primary with SIGKILL. */
enum rep_phase {
	REP_PHASE_NONE = 0,
	REP_PHASE_PAUSED,     /* guest paused, state being copied */
	REP_PHASE_SENDING,    /* part of the epoch's data sent */
	REP_PHASE_SENT,       /* all data and END sent, no ack yet */
	REP_PHASE_ACKED,      /* ack received, output not yet released */
	REP_PHASE_RELEASED,   /* output of the epoch released */
	REP_PHASE_NR
};

const char *rep_role_name(enum rep_role role);
const char *rep_mode_name(enum rep_mode mode);
const char *rep_phase_name(enum rep_phase phase);
int rep_phase_parse(const char *s, enum rep_phase *out);

struct rep_primary_config {
	const char *vm_name;
	enum rep_mode mode;
	uint32_t interval_us;      /* checkpoint period (Remus, hybrid); the
				      longest gap between checkpoints (Kemari) */
	uint32_t output_bound_us;  /* hybrid: most output may wait */
	bool compress;             /* page codecs */
	uint64_t generation;       /* this primary's term */
};

/* Engine states (rep_primary_stats.state); transitions are logged. */
enum rep_engine_state {
	REP_ENG_IDLE = 0,     /* no standby: guest runs, output not held */
	REP_ENG_SYNCING,      /* first epoch: full copy while the guest runs */
	REP_ENG_PROTECTED,    /* epochs committing */
	REP_ENG_DEGRADED,     /* standby lost after protection: output held */
	REP_ENG_STOPPED,
};

struct rep_primary_stats {
	enum rep_engine_state state;
	enum rep_mode mode;
	uint32_t interval_us;
	uint64_t generation;
	uint64_t session;
	uint64_t epoch;            /* last checkpoint made */
	uint64_t committed;        /* last epoch the standby acknowledged */
	uint64_t checkpoints;      /* made since start */
	double rate;               /* checkpoints per second, last 2 s */
	uint64_t last_pause_us;
	uint64_t pause_p50_us, pause_p99_us;  /* over the last 1024 */
	uint64_t last_pages, last_bytes;      /* of the last epoch */
	uint64_t last_disk_bytes;
	uint64_t held_epochs;      /* epochs whose output is held */
	uint64_t held_ms;          /* age of the oldest held epoch */
	uint64_t sync_pages_done, sync_pages_total; /* full copy progress */
	uint64_t peer_silent_ms;   /* since the standby was last heard */
	bool link_up;
	char last_error[160];
};

struct rep_primary;

/* Start protecting `dom` (running): installs the disk tap and event
 * channel hook.  No standby yet: state IDLE. */
int rep_primary_new(struct hv_domain *dom, const struct rep_primary_config *cfg,
		    struct rep_primary **out);
/* Stop protecting: the link is closed, the gate opened (held output
 * goes), hooks removed.  The domain is left running. */
void rep_primary_free(struct rep_primary *p);
/* Stop without releasing anything: the domain is left paused with its
 * output still held, for the caller to destroy (a superseded primary). */
void rep_primary_abandon(struct rep_primary *p);
/*
 * Hand a connected link to the engine: it says HELLO and reads WELCOME.
 * 0: the standby takes epochs from here (the engine owns the link now).
 * -ESTALE: the peer is primary of a newer generation (*peer_generation);
 * -EPERM: refused (err says why).  On error the link is freed.
 */
int rep_primary_attach(struct rep_primary *p, struct tp_link *link,
		       uint64_t *peer_generation, char *err, size_t errlen);
bool rep_primary_attached(struct rep_primary *p);
int rep_primary_set_interval(struct rep_primary *p, uint32_t interval_us);
int rep_primary_set_mode(struct rep_primary *p, enum rep_mode mode);
/* Kill this process with SIGKILL when the cycle next reaches `phase`. */
void rep_primary_failpoint(struct rep_primary *p, enum rep_phase phase);
/* Send a heartbeat on the link, if any. */
void rep_primary_heartbeat(struct rep_primary *p);
/* Tell the standby its replica is no longer needed (before unprotecting,
 * or when the guest shut down): it drops it and will not take over. */
void rep_primary_release_standby(struct rep_primary *p);
/* Planned switchover: a final checkpoint with the guest left paused;
 * once the standby has committed it, REP_HANDOVER tells it to take over.
 * 0: handed over (the guest stays paused; the caller abandons it).  On
 * failure the guest runs on here, still protected. */
int rep_primary_handover(struct rep_primary *p, int timeout_ms, char *err,
			 size_t errlen);
void rep_primary_stats(struct rep_primary *p, struct rep_primary_stats *out);

/* ---- the standby replica ---- */

/* The strings of hv (cmdline, disk, listen) must outlive the standby and
 * the domain a promotion hands out: the domain keeps pointing at them. */
struct rep_standby_config {
	const char *vm_name;
	struct hv_config hv;       /* memory, vCPUs, cmdline, disk (this
				      host's), listen (this host's stream) */
	uint64_t disk_bytes;
	bool compress;             /* page codecs: as the primary's config */
};

enum rep_standby_state {
	REP_SB_WAITING = 0,   /* no primary attached */
	REP_SB_SYNCING,       /* first epoch of a session arriving */
	REP_SB_REPLICATING,   /* epochs committing */
	REP_SB_PROMOTED,
};

struct rep_standby_stats {
	enum rep_standby_state state;
	uint64_t generation;       /* of the primary it follows */
	uint64_t session;
	uint64_t committed;        /* last epoch applied */
	uint64_t commits;
	uint64_t last_apply_us;
	uint64_t last_pages, last_disk_bytes;
	uint64_t peer_epoch;       /* last epoch the primary said it made */
	uint64_t peer_silent_ms;
	uint64_t link_lost_ms;     /* since the link went, or 0 if up */
	bool link_up;
	bool handover;             /* the primary handed over */
	bool released;             /* the primary released the replica */
	bool drill_armed;          /* a drill told the primary to die */
	uint64_t discarded;        /* epochs dropped half-received */
	char last_error[160];
};

struct rep_promote_info {
	uint64_t epoch;            /* resumed from */
	uint64_t generation;       /* the new primary's term */
	uint64_t build_us;         /* state loaded into the domain */
	uint64_t resumed_ns;       /* CLOCK_MONOTONIC at the unpause */
};

#define REP_NAME_MAX 63

/* Connector -> acceptor, first record on the control channel. */
struct rep_hello {
	uint32_t role;        /* enum rep_role of the sender */
	uint32_t mode;        /* checkpoint mode, for status */
	uint64_t generation;  /* primary term: +1 at every promotion */
	uint64_t session;     /* the primary's replication session */
	uint64_t epoch;       /* last epoch the sender made */
	uint64_t mem_bytes;   /* guest memory */
	uint32_t vcpus;
	char vm[REP_NAME_MAX + 1];
};

enum rep_welcome_status {
	REP_WELCOME_ACCEPT = 0,     /* go on; committed says from where */
	REP_WELCOME_SUPERSEDED = 1, /* the peer is primary of a newer generation */
	REP_WELCOME_REFUSED = 2,    /* wrong VM, split brain, ...: reason */
};

struct rep_standby;

int rep_standby_new(const struct rep_standby_config *cfg,
		    struct rep_standby **out, char *err, size_t errlen);
void rep_standby_free(struct rep_standby *s);
/* Read the HELLO a connector sends first (the caller decides what to do
 * with the link by the sender's role and generation). */
int rep_link_hello(struct tp_link *link, int timeout_ms, struct rep_hello *out,
		   char *err, size_t errlen);
/* Answer a HELLO with a refusal or SUPERSEDED and free the link. */
void rep_link_refuse(struct tp_link *link, uint32_t status, enum rep_role role,
		     uint64_t generation, const char *reason);
/* Follow the primary that sent `hello` on `link` (the standby owns the
 * link from here, also on error). */
int rep_standby_attach(struct rep_standby *s, struct tp_link *link,
		       const struct rep_hello *hello, char *err, size_t errlen);
void rep_standby_heartbeat(struct rep_standby *s);
/* Ask the primary to die at `phase` (a drill). */
int rep_standby_drill(struct rep_standby *s, enum rep_phase phase);
/* Stop following, load the last committed epoch into the domain, resume
 * it.  The caller owns *dom from here.  -ENODATA if nothing committed. */
int rep_standby_promote(struct rep_standby *s, struct hv_domain **dom,
			struct rep_promote_info *info, char *err,
			size_t errlen);
void rep_standby_stats(struct rep_standby *s, struct rep_standby_stats *out);
/* Run fn on the replica domain holding the last committed epoch, with no
 * epoch being applied meanwhile.  -ENODATA if nothing is committed;
 * otherwise fn's result. */
int rep_standby_inspect(struct rep_standby *s,
			int (*fn)(void *arg, struct hv_domain *dom,
				  uint64_t epoch),
			void *arg);

#endif
