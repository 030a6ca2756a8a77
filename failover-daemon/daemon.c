/*
 * daemon.c - tandemd's main loop: roles, the peer, failure detection,
 * promotion and the control socket.
 *
 * Role (td->role, changed only by td_set_role, which logs):
 *
 *   STANDBY --primary silent on every path, and (auto-promote or a drill
 *             or `failover --force`)--> PRIMARY (generation + 1)
 *   PRIMARY --a peer primary of a newer generation--> STANDBY (the guest
 *             is destroyed with its held output: it never leaves)
 *
 * Peer detection on a standby, every tick:
 *   replication link heard within hb_interval * hb_misses   -> "alive"
 *   else the heartbeat path heard within that window        -> "link down,
 *        primary alive": never promote
 *   else                                                    -> silent:
 *        promote if auto-promote is on or a drill is armed; otherwise
 *        report "split risk" and wait for the operator.
 *
 * The loop polls the signal fd, the control socket and the heartbeat
 * socket with a short tick; transport links arrive through tp_accept.
 */
#include "clock.h"
#include "ctlsock.h"
#include "daemon.h"
#include "disksync.h"
#include "hbpath.h"
#include "i4check.h"
#include "log.h"
#include "transport.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TD_CONNECT_EVERY_MS 200
#define TD_CONNECT_TIMEOUT_MS 2000
#define TD_TICK_MAX_MS 20
#define TD_HELLO_WAIT_MS 5000
#define TD_HANDOVER_TIMEOUT_MS 10000

struct td_failover {
	bool done;
	char reason[96];
	uint64_t epoch, generation;
	uint64_t silent_ms;      /* primary last heard -> decision */
	uint64_t resume_us;      /* decision -> guest running */
	uint64_t rto_ms;         /* primary last heard -> guest running */
};

struct td {
	struct td_config cfg;
	int self;
	const struct td_host *me, *peer;
	enum rep_role role;
	uint64_t generation;
	struct tp_ctx *ctx;
	struct tp_listener *lst;
	struct tp_config tpc;
	struct hv_domain *dom;
	struct rep_primary *prim;
	bool protect;
	struct rep_standby *sb;
	struct hb_path hb;
	int ctl_fd, sig_fd, console_fd;
	uint64_t next_connect_ns;
	/* The heartbeat thread: it must never wait behind the main loop
	 * (a connect, a control request, a switchover).  hb_lock guards
	 * what it reads: prim, sb, role, generation. */
	pthread_t hb_thread;
	bool hb_running, hb_stop;
	pthread_mutex_t hb_lock;
	bool split_risk, split_logged;
	char peer_state[160];
	struct td_failover fo;
	bool force_promote;
	char last_connect_error[TP_ERR_MAX];
	bool quit;
	int exit_code;
};

static void td_set_role(struct td *td, enum rep_role role, const char *why)
{
	if (td->role == role)
		return;
	log_info("tandemd: %s: role %s -> %s (%s)", td->cfg.vm_name,
		 rep_role_name(td->role), rep_role_name(role), why);
	pthread_mutex_lock(&td->hb_lock);
	td->role = role;
	pthread_mutex_unlock(&td->hb_lock);
}

static void td_set_generation(struct td *td, uint64_t generation)
{
	pthread_mutex_lock(&td->hb_lock);
	td->generation = generation;
	pthread_mutex_unlock(&td->hb_lock);
}

/* The main thread is the only writer of prim and sb; these publish and
 * withdraw them for the heartbeat thread. */
static void td_set_prim(struct td *td, struct rep_primary *p)
{
	pthread_mutex_lock(&td->hb_lock);
	td->prim = p;
	pthread_mutex_unlock(&td->hb_lock);
}

static void td_set_sb(struct td *td, struct rep_standby *sb)
{
	pthread_mutex_lock(&td->hb_lock);
	td->sb = sb;
	pthread_mutex_unlock(&td->hb_lock);
}

static void td_peer_state(struct td *td, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void td_peer_state(struct td *td, const char *fmt, ...)
{
	char buf[sizeof(td->peer_state)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (strcmp(buf, td->peer_state) != 0)
		log_info("tandemd: %s: peer %s: %s", td->cfg.vm_name,
			 td->peer->name, buf);
	snprintf(td->peer_state, sizeof(td->peer_state), "%s", buf);
}

/* ---- the guest and the replica ------------------------------------------ */

static void td_hv_config(const struct td *td, struct hv_config *hc)
{
	memset(hc, 0, sizeof(*hc));
	hc->backend = td->cfg.backend;
	hc->name = td->cfg.vm_name;
	hc->xl_config = td->cfg.xl_config[0] ? td->cfg.xl_config : NULL;
	hc->image = td->cfg.image;
	hc->mem_bytes = td->cfg.mem_bytes;
	hc->nr_vcpus = td->cfg.vcpus;
	hc->cmdline = td->cfg.cmdline[0] ? td->cfg.cmdline : NULL;
	hc->console_fd = td->console_fd;
	hc->disk = td->cfg.disk_bytes ? td->me->disk : NULL;
	hc->listen = td->me->stream;
}

static int td_protect(struct td *td)
{
	struct rep_primary_config pc = {
		.vm_name = td->cfg.vm_name,
		.mode = (enum rep_mode)td->cfg.mode,
		.interval_us = td->cfg.interval_us,
		.output_bound_us = td->cfg.output_bound_us,
		.compress = td->cfg.compress,
		.generation = td->generation,
	};
	int rc;

	struct rep_primary *p;

	if (td->prim != NULL)
		return 0;
	rc = rep_primary_new(td->dom, &pc, &p);
	if (rc == 0)
		td_set_prim(td, p);
	td->protect = rc == 0;
	td->next_connect_ns = 0;
	return rc;
}

static void td_unprotect(struct td *td)
{
	struct rep_primary *p = td->prim;

	if (p != NULL)
		rep_primary_release_standby(p);
	td_set_prim(td, NULL);
	rep_primary_free(p);
	td->protect = false;
}

static int td_start_primary(struct td *td)
{
	struct hv_config hc;
	int rc = 0;

	td_hv_config(td, &hc);
	if (hc.disk != NULL) {
		char err[PATH_MAX + 128];

		rc = ds_image_prepare(hc.disk, td->cfg.disk_bytes, err,
				      sizeof(err));
		if (rc != 0)
			log_error("tandemd: %s", err);
	}
	if (rc == 0)
		rc = hv_domain_build(&hc, &td->dom);
	if (rc == 0)
		rc = hv_unpause(td->dom);
	if (rc != 0) {
		log_error("tandemd: %s: cannot start the guest: %s",
			  td->cfg.vm_name, strerror(-rc));
		return rc;
	}
	td_set_generation(td, 1);
	log_info("tandemd: %s: guest running (%" PRIu64 " MiB, stream %s)",
		 td->cfg.vm_name, td->cfg.mem_bytes >> 20, td->me->stream);
	return td_protect(td);
}

static int td_start_standby(struct td *td)
{
	struct rep_standby_config sc = { .vm_name = td->cfg.vm_name,
					 .disk_bytes = td->cfg.disk_bytes,
					 .compress = td->cfg.compress };
	char err[256];
	int rc;

	td_hv_config(td, &sc.hv);
	sc.hv.image = NULL;
	struct rep_standby *sb;

	rc = rep_standby_new(&sc, &sb, err, sizeof(err));
	if (rc == 0)
		td_set_sb(td, sb);
	if (rc != 0)
		log_error("tandemd: %s: cannot become standby: %s",
			  td->cfg.vm_name, err);
	return rc;
}

/* A newer primary exists: this one's guest must never be heard again. */
static int td_demote(struct td *td, uint64_t newer, const char *why)
{
	log_warn("tandemd: %s: superseded by the peer's generation %" PRIu64
		 " (ours %" PRIu64 "): %s; destroying this copy of the guest "
		 "with its held output", td->cfg.vm_name, newer,
		 td->generation, why);
	{
		/* abandon leaves the guest paused with its output held; with no
		 * engine the guest is paused here */
		struct rep_primary *p = td->prim;

		td_set_prim(td, NULL);
		rep_primary_abandon(p);
	}
	if (td->dom != NULL)
		hv_pause(td->dom, NULL);
	hv_domain_free(td->dom);
	td->dom = NULL;
	td->protect = false;
	td_set_generation(td, newer);
	td_set_role(td, REP_ROLE_STANDBY, "superseded");
	return td->sb ? 0 : td_start_standby(td);
}

static void td_promote(struct td *td, const char *why, uint64_t silent_ms)
{
	struct rep_promote_info info;
	struct rep_standby_stats st;
	char err[256];
	uint64_t t0 = mono_ns();
	int rc;

	rep_standby_stats(td->sb, &st);
	log_warn("tandemd: %s: promoting: %s (primary silent %" PRIu64
		 " ms, last committed epoch %" PRIu64 ")", td->cfg.vm_name,
		 why, silent_ms, st.committed);
	rc = rep_standby_promote(td->sb, &td->dom, &info, err, sizeof(err));
	if (rc != 0) {
		log_error("tandemd: %s: promotion failed: %s", td->cfg.vm_name,
			  err);
		return;
	}
	{
		struct rep_standby *sb = td->sb;

		td_set_sb(td, NULL);
		rep_standby_free(sb);
	}
	td_set_generation(td, info.generation);
	td->fo = (struct td_failover){
		.done = true, .epoch = info.epoch,
		.generation = info.generation, .silent_ms = silent_ms,
		.resume_us = (info.resumed_ns - t0) / 1000,
		.rto_ms = silent_ms + (info.resumed_ns - t0) / 1000000,
	};
	snprintf(td->fo.reason, sizeof(td->fo.reason), "%s", why);
	td_set_role(td, REP_ROLE_PRIMARY, why);
	log_info("tandemd: %s: failover done: resumed epoch %" PRIu64 ", "
		 "guest running %" PRIu64 " us after the decision, RTO %"
		 PRIu64 " ms; stream device on %s", td->cfg.vm_name, info.epoch,
		 td->fo.resume_us, td->fo.rto_ms, td->me->stream);
	td->split_risk = false;
	td->force_promote = false;
	if (td_protect(td) != 0)
		log_error("tandemd: %s: running unprotected", td->cfg.vm_name);
}

/* ---- links ------------------------------------------------------------------ */

static void td_accept_one(struct td *td, struct tp_link *link)
{
	struct rep_hello h;
	char err[256];

	if (rep_link_hello(link, TD_HELLO_WAIT_MS, &h, err, sizeof(err)) != 0) {
		log_warn("tandemd: %s: link from %s: %s", td->cfg.vm_name,
			 tp_link_peer(link), err);
		tp_link_free(link);
		return;
	}
	if (td->role == REP_ROLE_PRIMARY && h.role == REP_ROLE_PRIMARY &&
	    h.generation > td->generation)
		td_demote(td, h.generation, "the peer connected as primary");
	if (td->role == REP_ROLE_PRIMARY) {
		snprintf(err, sizeof(err), "%s is primary of generation %"
			 PRIu64, td->me->name, td->generation);
		log_warn("tandemd: %s: refused %s primary of generation %"
			 PRIu64 ": %s", td->cfg.vm_name, tp_link_peer(link),
			 h.generation, err);
		rep_link_refuse(link, h.generation < td->generation
					      ? REP_WELCOME_SUPERSEDED
					      : REP_WELCOME_REFUSED,
				REP_ROLE_PRIMARY, td->generation, err);
		return;
	}
	if (td->sb == NULL && td_start_standby(td) != 0) {
		rep_link_refuse(link, REP_WELCOME_REFUSED, REP_ROLE_STANDBY,
				td->generation, "standby cannot start");
		return;
	}
	if (rep_standby_attach(td->sb, link, &h, err, sizeof(err)) != 0)
		log_warn("tandemd: %s: refused primary: %s", td->cfg.vm_name,
			 err);
	else
		td_set_generation(td, h.generation);
}

static void td_accept(struct td *td)
{
	struct tp_link *link;

	while (tp_accept(td->lst, 0, &link) == 0)
		td_accept_one(td, link);
}

static void td_connect(struct td *td)
{
	struct tp_link *link;
	char err[TP_ERR_MAX];
	uint64_t newer = 0;
	int rc;

	td->next_connect_ns = mono_ns() + TD_CONNECT_EVERY_MS * 1000000ULL;
	rc = tp_connect(td->ctx, &td->tpc, td->peer->address, &link, err,
			sizeof(err));
	if (rc == 0)
		rc = rep_primary_attach(td->prim, link, &newer, err,
					sizeof(err));
	if (rc == -ESTALE) {
		td_demote(td, newer, err);
		return;
	}
	if (rc != 0 && strcmp(err, td->last_connect_error) != 0)
		log_warn("tandemd: %s: standby %s at %s: %s", td->cfg.vm_name,
			 td->peer->name, td->peer->address, err);
	snprintf(td->last_connect_error, sizeof(td->last_connect_error), "%s",
		 rc == 0 ? "" : err);
}

/* ---- failure detection (standby) ------------------------------------------ */

static void td_detect(struct td *td)
{
	uint64_t window = (uint64_t)td->cfg.hb_interval_ms * td->cfg.hb_misses;
	struct rep_standby_stats st;

	rep_standby_stats(td->sb, &st);
	if (st.handover) {
		td_promote(td, "planned switchover: the primary handed over", 0);
		return;
	}
	if (st.released && st.committed == 0) {
		td_peer_state(td, "the primary released the replica "
			      "(unprotected, or its guest shut down): not "
			      "taking over");
		return;
	}
	if (st.state == REP_SB_WAITING && st.committed == 0) {
		td_peer_state(td, "no primary attached; nothing to protect yet");
		return;
	}
	if (st.link_up && st.peer_silent_ms < window) {
		td->split_risk = false;
		td_peer_state(td, "primary alive (replication link)");
		return;
	}
	if (st.drill_armed && !st.link_up && st.committed > 0) {
		td_promote(td, "drill: the primary was told to die",
			   st.peer_silent_ms);
		return;
	}
	if (st.peer_silent_ms < window)
		return; /* link just dropped: give it the window */
	if (st.committed == 0) {
		td_peer_state(td, "primary silent; no committed epoch to "
			      "resume: cannot take over");
		return;
	}
	if (td->force_promote) {
		td_promote(td, "operator: failover --force", st.peer_silent_ms);
		return;
	}
	if (hb_primary_alive(&td->hb, window, td->generation)) {
		td_peer_state(td, "replication link down; primary alive on the "
			      "heartbeat path: not promoting");
		return;
	}
	if (td->cfg.auto_promote) {
		td_promote(td, "primary silent on every path (auto-promote)",
			   st.peer_silent_ms);
		return;
	}
	td->split_risk = true;
	td_peer_state(td, "split risk: primary silent %" PRIu64 " ms on every "
		      "path; a dead primary and a partition look the same; run "
		      "`tandem failover --force` if it is dead", st.peer_silent_ms);
}

/* ---- heartbeats (their own thread) ------------------------------------------ */

static void td_heartbeat_once(struct td *td)
{
	uint64_t epoch = 0;

	pthread_mutex_lock(&td->hb_lock);
	if (td->prim != NULL) {
		struct rep_primary_stats ps;

		rep_primary_heartbeat(td->prim);
		rep_primary_stats(td->prim, &ps);
		epoch = ps.epoch;
	} else if (td->sb != NULL) {
		struct rep_standby_stats ss;

		rep_standby_heartbeat(td->sb);
		rep_standby_stats(td->sb, &ss);
		epoch = ss.committed;
	}
	hb_send(&td->hb, td->role, td->generation, epoch);
	pthread_mutex_unlock(&td->hb_lock);
}

static void *td_hb_main(void *arg)
{
	struct td *td = arg;
	struct timespec next;

	clock_gettime(CLOCK_MONOTONIC, &next);
	for (;;) {
		pthread_mutex_lock(&td->hb_lock);
		if (td->hb_stop) {
			pthread_mutex_unlock(&td->hb_lock);
			return NULL;
		}
		pthread_mutex_unlock(&td->hb_lock);
		td_heartbeat_once(td);
		next.tv_nsec += (long)td->cfg.hb_interval_ms * 1000000L;
		while (next.tv_nsec >= 1000000000L) {
			next.tv_nsec -= 1000000000L;
			next.tv_sec++;
		}
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next,
				       NULL) == EINTR)
			;
	}
}

static int td_hb_start(struct td *td)
{
	int rc = -pthread_create(&td->hb_thread, NULL, td_hb_main, td);

	td->hb_running = rc == 0;
	return rc;
}

static void td_hb_stop(struct td *td)
{
	if (!td->hb_running)
		return;
	pthread_mutex_lock(&td->hb_lock);
	td->hb_stop = true;
	pthread_mutex_unlock(&td->hb_lock);
	pthread_join(td->hb_thread, NULL);
	td->hb_running = false;
}

/* ---- control socket ------------------------------------------------------------ */


static void td_primary_peer(struct td *td)
{
	struct rep_primary_stats ps;

	rep_primary_stats(td->prim, &ps);
	switch (ps.state) {
	case REP_ENG_IDLE:
		td_peer_state(td, "no standby: the guest runs unprotected "
			      "(connecting to %s)", td->peer->address);
		break;
	case REP_ENG_SYNCING:
		td_peer_state(td, "standby attached: full copy in progress");
		break;
	case REP_ENG_PROTECTED:
		td_peer_state(td, "standby committing epochs");
		break;
	case REP_ENG_DEGRADED:
		td_peer_state(td, "standby lost after epoch %" PRIu64 ": output "
			      "held until it is back (`tandem unprotect` runs "
			      "without it)", ps.committed);
		break;
	default:
		break;
	}
}

static void js_add_u64(struct json_object *o, const char *k, uint64_t v)
{
	json_object_object_add(o, k, json_object_new_int64((int64_t)v));
}

static void js_add_str(struct json_object *o, const char *k, const char *v)
{
	json_object_object_add(o, k, json_object_new_string(v));
}

static const char *const td_eng_names[] = {
	"idle", "syncing", "protected", "degraded", "stopped",
};
static const char *const td_sb_names[] = {
	"waiting", "syncing", "replicating", "promoted",
};

static struct json_object *td_status_primary(struct td *td)
{
	struct json_object *o = json_object_new_object();
	struct rep_primary_stats ps;

	if (td->prim == NULL) {
		js_add_str(o, "state", "unprotected");
		return o;
	}
	rep_primary_stats(td->prim, &ps);
	js_add_str(o, "state", td_eng_names[ps.state]);
	js_add_str(o, "mode", rep_mode_name(ps.mode));
	js_add_u64(o, "interval_us", ps.interval_us);
	js_add_u64(o, "epoch", ps.epoch);
	js_add_u64(o, "committed", ps.committed);
	js_add_u64(o, "lag_epochs", ps.epoch - ps.committed);
	js_add_u64(o, "checkpoints", ps.checkpoints);
	json_object_object_add(o, "checkpoint_rate",
			       json_object_new_double(ps.rate));
	js_add_u64(o, "last_pause_us", ps.last_pause_us);
	js_add_u64(o, "pause_p50_us", ps.pause_p50_us);
	js_add_u64(o, "pause_p99_us", ps.pause_p99_us);
	js_add_u64(o, "last_epoch_pages", ps.last_pages);
	js_add_u64(o, "last_epoch_bytes", ps.last_bytes);
	js_add_u64(o, "last_epoch_disk_bytes", ps.last_disk_bytes);
	js_add_u64(o, "held_epochs", ps.held_epochs);
	js_add_u64(o, "held_ms", ps.held_ms);
	js_add_u64(o, "sync_pages_done", ps.sync_pages_done);
	js_add_u64(o, "sync_pages_total", ps.sync_pages_total);
	json_object_object_add(o, "link_up", json_object_new_boolean(ps.link_up));
	js_add_u64(o, "peer_silent_ms", ps.peer_silent_ms);
	js_add_str(o, "last_error", ps.last_error);
	return o;
}

static struct json_object *td_status_standby(struct td *td)
{
	struct json_object *o = json_object_new_object();
	struct rep_standby_stats ss;

	rep_standby_stats(td->sb, &ss);
	js_add_str(o, "state", td_sb_names[ss.state]);
	js_add_u64(o, "committed", ss.committed);
	js_add_u64(o, "commits", ss.commits);
	js_add_u64(o, "primary_epoch", ss.peer_epoch);
	js_add_u64(o, "lag_epochs", ss.peer_epoch > ss.committed
					    ? ss.peer_epoch - ss.committed : 0);
	js_add_u64(o, "last_apply_us", ss.last_apply_us);
	js_add_u64(o, "last_epoch_pages", ss.last_pages);
	js_add_u64(o, "last_epoch_disk_bytes", ss.last_disk_bytes);
	js_add_u64(o, "discarded_epochs", ss.discarded);
	json_object_object_add(o, "link_up", json_object_new_boolean(ss.link_up));
	js_add_u64(o, "peer_silent_ms", ss.peer_silent_ms);
	json_object_object_add(o, "drill_armed",
			       json_object_new_boolean(ss.drill_armed));
	js_add_str(o, "last_error", ss.last_error);
	return o;
}

static struct json_object *td_status(struct td *td)
{
	struct json_object *r = ctl_reply_ok(), *peer = json_object_new_object();

	js_add_str(r, "vm", td->cfg.vm_name);
	js_add_str(r, "host", td->me->name);
	js_add_u64(r, "pid", (uint64_t)getpid());
	js_add_str(r, "role", rep_role_name(td->role));
	js_add_u64(r, "generation", td->generation);
	js_add_str(peer, "name", td->peer->name);
	js_add_str(peer, "state", td->peer_state);
	json_object_object_add(peer, "heartbeat_path",
			       json_object_new_boolean(td->hb.fd >= 0));
	json_object_object_add(peer, "heartbeat_path_alive",
			       json_object_new_boolean(hb_alive(&td->hb,
				       (uint64_t)td->cfg.hb_interval_ms *
					       td->cfg.hb_misses)));
	json_object_object_add(r, "peer", peer);
	json_object_object_add(r, "split_risk",
			       json_object_new_boolean(td->split_risk));
	if (td->role == REP_ROLE_PRIMARY)
		json_object_object_add(r, "protect", td_status_primary(td));
	else if (td->sb != NULL)
		json_object_object_add(r, "replica", td_status_standby(td));
	if (td->fo.done) {
		struct json_object *f = json_object_new_object();

		js_add_str(f, "reason", td->fo.reason);
		js_add_u64(f, "epoch", td->fo.epoch);
		js_add_u64(f, "generation", td->fo.generation);
		js_add_u64(f, "primary_silent_ms", td->fo.silent_ms);
		js_add_u64(f, "resume_us", td->fo.resume_us);
		js_add_u64(f, "rto_ms", td->fo.rto_ms);
		json_object_object_add(r, "failover", f);
	}
	return r;
}

static struct json_object *td_cmd_set(struct td *td, struct json_object *req)
{
	struct json_object *v;
	int rc;

	if (td->prim == NULL)
		return ctl_reply_error("set: %s is not protecting a guest (role "
				       "%s)", td->me->name,
				       rep_role_name(td->role));
	if (json_object_object_get_ex(req, "interval_ms", &v)) {
		double ms = json_object_get_double(v);

		rc = ms >= 1 && ms <= 60000
			     ? rep_primary_set_interval(td->prim,
							(uint32_t)(ms * 1000))
			     : -ERANGE;
		if (rc != 0)
			return ctl_reply_error("interval %s ms is out of range "
					       "(1 .. 60000)",
					       json_object_get_string(v));
		td->cfg.interval_us = (uint32_t)(ms * 1000);
		return ctl_reply_ok();
	}
	if (json_object_object_get_ex(req, "mode", &v)) {
		enum td_mode m;

		if (td_mode_parse(json_object_get_string(v), &m) != 0)
			return ctl_reply_error("mode \"%s\" unknown (remus, "
					       "kemari, hybrid)",
					       json_object_get_string(v));
		rep_primary_set_mode(td->prim, (enum rep_mode)m);
		td->cfg.mode = m;
		return ctl_reply_ok();
	}
	return ctl_reply_error("set needs \"interval_ms\" or \"mode\"");
}

static struct json_object *td_cmd_phase(struct td *td, struct json_object *req,
					bool drill)
{
	struct json_object *v;
	enum rep_phase ph = REP_PHASE_SENT;

	if (json_object_object_get_ex(req, "phase", &v) &&
	    (rep_phase_parse(json_object_get_string(v), &ph) != 0 ||
	     ph == REP_PHASE_NONE))
		return ctl_reply_error("phase \"%s\" unknown (paused, sending, "
				       "sent, acked, released)",
				       json_object_get_string(v));
	if (!drill) {
		if (td->prim == NULL)
			return ctl_reply_error("failpoint: not a protecting "
					       "primary");
		rep_primary_failpoint(td->prim, ph);
		return ctl_reply_ok();
	}
	if (td->sb == NULL)
		return ctl_reply_error("drill: run it on the standby (this host "
				       "is %s)", rep_role_name(td->role));
	if (rep_standby_drill(td->sb, ph) != 0)
		return ctl_reply_error("drill: no link to the primary");
	log_warn("tandemd: %s: drill: the primary dies at phase %s; this "
		 "standby takes over", td->cfg.vm_name, rep_phase_name(ph));
	return ctl_reply_ok();
}

/* Planned switchover, on the primary: the standby takes the guest from a
 * final epoch; this host becomes its standby. */
static struct json_object *td_switchover(struct td *td)
{
	char err[256];
	uint64_t gen = td->generation;

	if (td->prim == NULL)
		return ctl_reply_error("failover: the guest is not protected");
	if (rep_primary_handover(td->prim, TD_HANDOVER_TIMEOUT_MS, err,
				 sizeof(err)) != 0)
		return ctl_reply_error("failover: %s", err);
	td_demote(td, gen + 1, "planned switchover");
	return ctl_reply_ok();
}

static struct json_object *td_cmd_failover(struct td *td,
					   struct json_object *req)
{
	struct json_object *v;
	bool force = json_object_object_get_ex(req, "force", &v) &&
		     json_object_get_boolean(v);

	if (td->role == REP_ROLE_PRIMARY)
		return td_switchover(td);
	if (!force)
		return ctl_reply_error("failover on a standby promotes it; say "
				       "--force to state that the primary is "
				       "dead (a planned switchover is run on "
				       "the primary)");
	{
		struct rep_standby_stats ss;
		uint64_t window = (uint64_t)td->cfg.hb_interval_ms *
				  td->cfg.hb_misses;

		rep_standby_stats(td->sb, &ss);
		if (ss.link_up && ss.peer_silent_ms < window)
			return ctl_reply_error("failover --force: the primary "
					       "was heard %" PRIu64 " ms ago on "
					       "the replication link; refusing "
					       "to make a second live copy",
					       ss.peer_silent_ms);
		if (ss.committed == 0)
			return ctl_reply_error("failover --force: no committed "
					       "epoch: nothing to resume");
	}
	td->force_promote = true;
	return ctl_reply_ok();
}

struct td_check {
	char msg[320];
	uint64_t epoch;
};

static int td_check_fn(void *arg, struct hv_domain *dom, uint64_t epoch)
{
	struct td_check *c = arg;

	c->epoch = epoch;
	return i4_check_domain(dom, c->msg, sizeof(c->msg));
}

/* I4 on this standby's committed image (a pagetest guest). */
static struct json_object *td_cmd_check(struct td *td)
{
	struct td_check c = { .msg = "" };
	struct json_object *r;
	int rc;

	if (td->sb == NULL)
		return ctl_reply_error("check: %s is not a standby",
				       td->me->name);
	rc = rep_standby_inspect(td->sb, td_check_fn, &c);
	if (rc == -ENODATA)
		return ctl_reply_error("check: no committed epoch yet");
	r = rc == 0 ? ctl_reply_ok() : ctl_reply_error("%s", c.msg);
	js_add_str(r, "i4", c.msg);
	js_add_u64(r, "epoch", c.epoch);
	return r;
}

static struct json_object *td_ctl_dispatch(void *arg, const char *line)
{
	struct td *td = arg;
	struct json_object *req = json_tokener_parse(line), *jcmd, *r;
	const char *cmd;

	if (req == NULL || !json_object_is_type(req, json_type_object) ||
	    !json_object_object_get_ex(req, "cmd", &jcmd)) {
		json_object_put(req);
		return ctl_reply_error("request is not a JSON object with "
				       "\"cmd\"");
	}
	cmd = json_object_get_string(jcmd);
	if (strcmp(cmd, "status") == 0) {
		r = td_status(td);
	} else if (strcmp(cmd, "protect") == 0) {
		r = td->role != REP_ROLE_PRIMARY
			    ? ctl_reply_error("protect: %s is %s", td->me->name,
					      rep_role_name(td->role))
		    : td_protect(td) == 0 ? ctl_reply_ok()
					  : ctl_reply_error("protect failed");
	} else if (strcmp(cmd, "unprotect") == 0) {
		if (td->role != REP_ROLE_PRIMARY)
			r = ctl_reply_error("unprotect: %s is %s", td->me->name,
					    rep_role_name(td->role));
		else {
			td_unprotect(td);
			r = ctl_reply_ok();
		}
	} else if (strcmp(cmd, "set") == 0) {
		r = td_cmd_set(td, req);
	} else if (strcmp(cmd, "check") == 0) {
		r = td_cmd_check(td);
	} else if (strcmp(cmd, "failover") == 0) {
		r = td_cmd_failover(td, req);
	} else if (strcmp(cmd, "drill") == 0 || strcmp(cmd, "failpoint") == 0) {
		r = td_cmd_phase(td, req, cmd[0] == 'd');
	} else {
		r = ctl_reply_error("unknown command \"%s\"", cmd);
	}
	json_object_put(req);
	return r;
}

/* ---- the loop ---------------------------------------------------------------- */

static void td_check_guest(struct td *td)
{
	struct hv_shutdown_info info;

	if (td->dom == NULL || hv_wait_shutdown(td->dom, 0, &info) != 0)
		return;
	log_info("tandemd: %s: the guest shut down (%s)", td->cfg.vm_name,
		 info.detail);
	if (td->prim != NULL)
		rep_primary_release_standby(td->prim);
	td->exit_code = info.code == 0 ? 0 : 1;
	td->quit = true;
}

static void td_tick(struct td *td)
{
	td_accept(td);
	if (td->role == REP_ROLE_PRIMARY && td->prim != NULL &&
	    !rep_primary_attached(td->prim) && mono_ns() >= td->next_connect_ns)
		td_connect(td);
	if (td->role == REP_ROLE_STANDBY && td->sb != NULL)
		td_detect(td);
	else if (td->role == REP_ROLE_PRIMARY && td->prim != NULL)
		td_primary_peer(td);
	td_check_guest(td);
}

static int td_loop(struct td *td)
{
	int tick = (int)td->cfg.hb_interval_ms / 4;

	if (tick > TD_TICK_MAX_MS)
		tick = TD_TICK_MAX_MS;
	if (tick < 1)
		tick = 1;
	while (!td->quit) {
		struct pollfd p[3] = { { .fd = td->sig_fd, .events = POLLIN },
				       { .fd = td->ctl_fd, .events = POLLIN },
				       { .fd = td->hb.fd, .events = POLLIN } };

		if (poll(p, 3, tick) > 0) {
			if (p[0].revents & POLLIN) {
				log_info("tandemd: %s: signal: stopping",
					 td->cfg.vm_name);
				break;
			}
			if (p[1].revents & POLLIN)
				ctl_serve_one(td->ctl_fd, td_ctl_dispatch, td);
			if (p[2].revents & POLLIN)
				hb_recv(&td->hb);
		}
		td_tick(td);
	}
	return td->exit_code;
}

static int td_open(struct td *td, const struct td_options *o)
{
	char err[TD_CONFIG_ERR_MAX];
	int rc = td_config_load(o->config, &td->cfg, err, sizeof(err));

	if (rc == 0)
		rc = td_config_self(&td->cfg, o->host, &td->self, err,
				    sizeof(err));
	if (rc == 0) {
		td->me = &td->cfg.host[td->self];
		td->peer = &td->cfg.host[1 - td->self];
		rc = td_config_link(&td->cfg, td->self, &td->tpc, err,
				    sizeof(err));
	}
	if (rc != 0) {
		fprintf(stderr, "tandemd: %s\n", err);
		return rc;
	}
	td->tpc.handshake_timeout_ms = TD_CONNECT_TIMEOUT_MS;
	if (o->check_only) {
		printf("%s: OK (VM %s, this host %s, peer %s, %s mode, interval "
		       "%u us)\n", o->config, td->cfg.vm_name, td->me->name,
		       td->peer->name, td_mode_name(td->cfg.mode),
		       td->cfg.interval_us);
		return 1;
	}
	rc = hb_open(&td->hb, td->cfg.vm_name, td->me->heartbeat,
		     td->peer->heartbeat, err, sizeof(err));
	if (rc == 0)
		rc = tp_ctx_new(&td->ctx);
	if (rc == 0)
		rc = tp_listen(td->ctx, &td->tpc, td->me->listen[0]
						  ? td->me->listen
						  : td->me->address,
			       &td->lst, err, sizeof(err));
	if (rc != 0) {
		fprintf(stderr, "tandemd: %s\n", err[0] ? err : strerror(-rc));
		return rc;
	}
	td->ctl_fd = ctl_listen(td->me->control);
	if (td->ctl_fd < 0)
		return td->ctl_fd;
	if (td->me->console[0]) {
		td->console_fd = open(td->me->console, O_WRONLY | O_CREAT |
				      O_APPEND | O_CLOEXEC, 0644);
		if (td->console_fd < 0) {
			fprintf(stderr, "tandemd: console %s: %s\n",
				td->me->console, strerror(errno));
			return -errno;
		}
	}
	return 0;
}

static void td_close(struct td *td)
{
	struct rep_primary *p = td->prim;
	struct rep_standby *sb = td->sb;

	td_hb_stop(td);
	td->prim = NULL;
	td->sb = NULL;
	/* Held output stays held: a standby may take over from an epoch
	 * before it, so it must never leave. */
	rep_primary_abandon(p);
	hv_domain_free(td->dom);
	rep_standby_free(sb);
	if (td->lst != NULL)
		tp_listener_free(td->lst);
	tp_ctx_free(td->ctx);
	hb_close(&td->hb);
	if (td->ctl_fd >= 0) {
		close(td->ctl_fd);
		unlink(td->me->control);
	}
	if (td->console_fd >= 0)
		close(td->console_fd);
	if (td->sig_fd >= 0)
		close(td->sig_fd);
	pthread_mutex_destroy(&td->hb_lock);
}

int td_run(const struct td_options *o)
{
	struct td *td = calloc(1, sizeof(*td));
	int rc;

	if (td == NULL)
		return 1;
	td->ctl_fd = td->console_fd = td->sig_fd = -1;
	td->hb.fd = -1;
	pthread_mutex_init(&td->hb_lock, NULL);
	td->sig_fd = ctl_signalfd();
	rc = td_open(td, o);
	if (rc == 1 && o->check_only) {
		pthread_mutex_destroy(&td->hb_lock);
		free(td);
		return 0;
	}
	if (rc == 0) {
		td_set_role(td, o->role == REP_ROLE_PRIMARY ? REP_ROLE_PRIMARY
							     : REP_ROLE_STANDBY,
			    "started");
		rc = td->role == REP_ROLE_PRIMARY ? td_start_primary(td)
						  : td_start_standby(td);
		if (rc == 0)
			rc = td_hb_start(td);
	}
	if (rc == 0) {
		log_info("tandemd: %s: %s on %s, replication %s, control %s",
			 td->cfg.vm_name, rep_role_name(td->role), td->me->name,
			 td->me->address, td->me->control);
		rc = td_loop(td);
	} else {
		rc = 1;
	}
	td_close(td);
	free(td);
	return rc;
}
