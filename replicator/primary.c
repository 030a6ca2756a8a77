/*
 * primary.c - the checkpoint engine (Remus semantics, Kemari and hybrid).
 *
 * One engine thread per protected domain and one receiver thread per
 * link.  The engine, each epoch e:
 *   pause the guest at an event-channel boundary; fetch-and-clear the
 *   dirty log; save every vCPU, device and the guest clock; advance the
 *   output gate (output so far belongs to e); close the disk write log's
 *   epoch e; copy the dirty pages into the staging buffer; resume;
 * then streams the staged epoch: PAGE_CODED on channel 1, DISK_WRITE on
 * channel 2, VCPU_STATE and DEVICE_STATE on channel 0, a SYNC, and
 * REP_EPOCH_END with the record count and digest.  The receiver thread
 * takes REP_ACK e: the gate releases e's output and the write log drops e.
 *
 * The first epoch of a session is a full copy made live: the disk tap and
 * dirty logging start, every populated page and the disk image are sent
 * while the guest runs, a few pre-copy rounds send what changed, and the
 * first checkpoint closes it (REP_END_FULL).
 *
 * When the link fails the unacknowledged epochs stay held (DEGRADED); a
 * standby that comes back with the same session says which epoch it
 * committed last: epochs up to it are released, the dirty pages of the
 * later ones are carried into the next epoch and their disk writes sent
 * again.  Anything else starts a new session with a full copy.
 *
 * Locking: p->lock guards the fields marked (L).  It is never held across
 * a pause, a send or a wait on the peer.  The evtchn hook only touches
 * atomics and the eventfd.
 */
#include "codec.h"
#include "disksync.h"
#include "log.h"
#include "rep_int.h"
#include "rep_proto.h"
#include "transport.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define ENG_HANDOVER_LINGER_MS 3000
#define ENG_MAX_INFLIGHT 4      /* epochs streamed ahead of their ack */
#define ENG_PRECOPY_ROUNDS 5
#define ENG_PRECOPY_DONE 1024   /* pages: stop pre-copy below this */
#define ENG_PAUSE_RING 1024
#define ENG_RATE_RING 1024
#define ENG_ACK_TIMEOUT_MS 10000
#define ENG_STAGE_MIN 4096        /* pages staged without growing: 16 MiB */

/* A planned switchover, driven by rep_primary_handover. */
enum eng_handover {
	HO_NONE = 0,
	HO_REQUESTED,  /* the engine takes a final checkpoint, guest paused */
	HO_FINAL_SENT, /* waiting for its ack */
	HO_DONE,       /* REP_HANDOVER sent: the standby takes over */
};

struct eng_unacked {
	uint64_t epoch;
	uint64_t gate_epoch;
	uint64_t made_ns;
	uint64_t *bm;            /* pages the epoch carried */
	struct eng_unacked *next;
};

struct eng_staged {
	uint64_t *pfn;
	uint8_t *pages;
	size_t count, cap;
	struct hv_vcpu_state *vcpu;   /* HV_MAX_VCPUS */
	struct hv_device_state *dev;  /* REP_MAX_DEVICES */
	unsigned nr_vcpus, nr_devs;
	uint64_t guest_clock_ns;
};

struct rep_primary {
	struct hv_domain *dom;
	struct rep_primary_config cfg;
	char vm_name[REP_NAME_MAX + 1];
	uint64_t nr_pages;
	size_t bm_words;
	int disk_fd;                 /* read side of the image, or -1 */
	uint64_t disk_bytes;
	struct ds_log *dlog;         /* engine thread only */
	struct codec_enc *enc;
	struct wire_buf buf;
	struct eng_staged st;
	uint64_t *pending;           /* dirty, not yet sent (engine) */
	uint64_t disk_sent;          /* last epoch whose writes went out */

	pthread_mutex_t lock;
	struct rep_ctl ctl;
	struct tp_link *link;        /* (L) */
	bool link_failed;            /* (L) */
	pthread_t rx;
	bool rx_running;
	pthread_t engine;
	bool stop;                   /* (L) */
	enum rep_engine_state state; /* (L) */
	uint64_t session;            /* (L) */
	uint64_t epoch;              /* (L) last made */
	uint64_t committed;          /* (L) last acked */
	uint64_t resume_from;        /* (L) base of the next epoch */
	bool resync;                 /* (L) the next attach needs a full copy */
	struct eng_unacked *unacked; /* (L) oldest first */
	unsigned nr_unacked;         /* (L) */
	uint64_t gate_released;      /* (L) */
	uint64_t last_heard_ns;      /* (L) */
	char last_error[160];        /* (L) */

	/* statistics (L) */
	uint64_t checkpoints, last_pause_us, last_pages, last_bytes;
	uint64_t last_disk_bytes, sync_done, sync_total;
	uint64_t pause_ring[ENG_PAUSE_RING];
	uint64_t rate_ring[ENG_RATE_RING];
	uint64_t last_ckpt_ns;

	/* the evtchn hook and wakeups */
	int kick_fd;
	uint32_t out_ports[REP_MAX_DEVICES];
	unsigned nr_out_ports;
	_Atomic uint64_t output_since_ns;
	_Atomic int mode;
	_Atomic uint32_t interval_us;
	_Atomic int failpoint;
	bool tap_on, dirty_on;

	/* per epoch being streamed */
	uint64_t cur_records, cur_digest, cur_bytes;
	uint64_t checkpoints_in_session;   /* engine */
	uint64_t ends_sent;                /* (L) ENDs queued this session */
	bool no_release;                   /* (L) abandoned: never release */
	bool timer_only;                   /* the backend has no event hooks */
	bool gate_on;                      /* engine thread: output held */
	enum eng_handover handover;        /* (L) */
	uint64_t handover_epoch;           /* (L) the final epoch */
};

static const char *const eng_state_names[] = {
	"IDLE", "SYNCING", "PROTECTED", "DEGRADED", "STOPPED",
};

/* (L) held */
static void eng_set_state(struct rep_primary *p, enum rep_engine_state s)
{
	if (p->state == s)
		return;
	log_info("replicator: primary %s: %s -> %s", p->vm_name,
		 eng_state_names[p->state], eng_state_names[s]);
	p->state = s;
}

static void eng_kick(struct rep_primary *p)
{
	uint64_t one = 1;

	(void)!write(p->kick_fd, &one, sizeof(one));
}

static void eng_failpoint(struct rep_primary *p, enum rep_phase phase)
{
	if (atomic_load(&p->failpoint) != (int)phase)
		return;
	log_warn("replicator: failpoint: killing this process at phase %s "
		 "of epoch %" PRIu64, rep_phase_name(phase), p->epoch);
	hv_domain_kill(p->dom); /* a guest outside the process goes too */
	raise(SIGKILL);
}

static void eng_error(struct rep_primary *p, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void eng_error(struct rep_primary *p, const char *fmt, ...)
{
	va_list ap;
	char msg[160];

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_error("replicator: primary %s: %s", p->vm_name, msg);
	pthread_mutex_lock(&p->lock);
	snprintf(p->last_error, sizeof(p->last_error), "%s", msg);
	pthread_mutex_unlock(&p->lock);
}

static bool bm_test(const uint64_t *bm, uint64_t i)
{
	return (bm[i / 64] >> (i % 64)) & 1;
}

static uint64_t bm_count(const uint64_t *bm, size_t words)
{
	uint64_t n = 0;

	for (size_t i = 0; i < words; i++)
		n += (uint64_t)__builtin_popcountll(bm[i]);
	return n;
}

/* ---- the event-channel hook (vCPU exit path: atomics only) ------------- */

static void eng_hook(void *arg, unsigned vcpu, uint32_t port)
{
	struct rep_primary *p = arg;
	uint64_t zero = 0;
	bool out = false;

	(void)vcpu;
	for (unsigned i = 0; i < p->nr_out_ports; i++)
		out |= p->out_ports[i] == port;
	if (!out)
		return;
	atomic_compare_exchange_strong(&p->output_since_ns, &zero,
				       rep_now_ns());
	if (atomic_load(&p->mode) == REP_MODE_KEMARI)
		eng_kick(p);
}

/* A back end holds output back (back-end threads: atomics only). */
static void eng_gate_watch(void *arg)
{
	struct rep_primary *p = arg;
	uint64_t zero = 0;

	atomic_compare_exchange_strong(&p->output_since_ns, &zero,
				       rep_now_ns());
	if (atomic_load(&p->mode) == REP_MODE_KEMARI)
		eng_kick(p);
}

/* ---- acks and link failure ------------------------------------------------ */

/* (L) held: epochs <= epoch are committed on the standby. */
static void eng_acked(struct rep_primary *p, uint64_t epoch)
{
	uint64_t gate = 0;

	if (epoch <= p->committed)
		return;
	p->committed = epoch;
	while (p->unacked != NULL && p->unacked->epoch <= epoch) {
		struct eng_unacked *u = p->unacked;

		gate = u->gate_epoch;
		p->unacked = u->next;
		p->nr_unacked--;
		free(u->bm);
		free(u);
	}
	if (p->state == REP_ENG_SYNCING || p->state == REP_ENG_DEGRADED)
		eng_set_state(p, REP_ENG_PROTECTED);
	if (gate > p->gate_released) {
		eng_failpoint(p, REP_PHASE_ACKED);
		hv_gate_release(p->dom, gate);
		p->gate_released = gate;
		eng_failpoint(p, REP_PHASE_RELEASED);
	}
}

static void eng_link_failed(struct rep_primary *p, struct tp_link *link,
			    const char *why)
{
	pthread_mutex_lock(&p->lock);
	if (p->link == link && !p->link_failed) {
		p->link_failed = true;
		snprintf(p->last_error, sizeof(p->last_error), "link: %.150s", why);
		log_warn("replicator: primary %s: standby link lost: %s",
			 p->vm_name, why);
	}
	pthread_mutex_unlock(&p->lock);
	eng_kick(p);
}

static void rx_one(struct rep_primary *p, const struct tp_msg *m)
{
	char err[160];
	struct rep_ack ack;
	struct rep_drill drill;

	switch (m->type) {
	case WIRE_REC_REP_ACK:
		if (rep_ack_decode(m->body, m->len, &ack, err, sizeof(err)) == 0) {
			pthread_mutex_lock(&p->lock);
			if (ack.epoch > p->epoch) {
				log_error("replicator: ack of epoch %" PRIu64
					  " never made; ignored", ack.epoch);
			} else {
				/* dlog is swapped under the lock */
				ds_log_acked(p->dlog, ack.epoch);
				eng_acked(p, ack.epoch);
			}
			pthread_mutex_unlock(&p->lock);
			eng_kick(p);
		}
		break;
	case WIRE_REC_REP_DRILL:
		if (rep_drill_decode(m->body, m->len, &drill, err,
				     sizeof(err)) == 0) {
			log_warn("replicator: drill: the standby asks this "
				 "primary to die at phase %s",
				 rep_phase_name(drill.phase));
			rep_primary_failpoint(p, drill.phase);
		}
		break;
	default:
		break; /* heartbeats: being heard is what counts */
	}
}

static int rx_handle(void *arg, const struct tp_msg *m)
{
	rx_one(arg, m);
	return 0;
}

static void *rx_main(void *arg)
{
	struct rep_primary *p = arg;
	struct tp_link *link;
	char err[TP_ERR_MAX];

	pthread_mutex_lock(&p->lock);
	link = p->link;
	pthread_mutex_unlock(&p->lock);
	rep_rx_loop(&p->lock, &p->link, &p->last_heard_ns, rx_handle, p, err,
		    sizeof(err));
	eng_link_failed(p, link, err);
	return NULL;
}

static void eng_sync_abandon(struct rep_primary *p);

/* Engine thread: tear down a failed link. */
static void eng_link_down(struct rep_primary *p)
{
	if (!rep_link_teardown(&p->lock, &p->link, p->rx, &p->rx_running,
			       &p->ctl))
		return;
	pthread_mutex_lock(&p->lock);
	p->link_failed = false;
	if (p->state == REP_ENG_SYNCING && p->ends_sent == 0 &&
	    !p->no_release) {
		/* No END of this session ever left: the standby cannot have
		 * committed anything, so nothing needs holding.  The next
		 * standby gets a full copy. */
		pthread_mutex_unlock(&p->lock);
		eng_sync_abandon(p);
		pthread_mutex_lock(&p->lock);
		p->resync = true;
		eng_set_state(p, REP_ENG_IDLE);
	} else if (p->state == REP_ENG_SYNCING ||
		   p->state == REP_ENG_PROTECTED) {
		/* An END went out: its ack may be what was lost.  Hold. */
		eng_set_state(p, REP_ENG_DEGRADED);
	}
	pthread_mutex_unlock(&p->lock);
}

/* ---- streaming ---------------------------------------------------------- */

/* A new epoch's record count and digest start from zero (also after a
 * failed one). */
static void eng_epoch_begin(struct rep_primary *p)
{
	p->cur_records = p->cur_digest = p->cur_bytes = 0;
}

static int eng_send(struct rep_primary *p, struct tp_link *link,
		    uint32_t type, const void *body, size_t len)
{
	uint64_t e = p->epoch + 1;
	int rc = tp_send(link, REP_CHAN_DATA, type, e, body, len);

	p->cur_records++;
	p->cur_digest += rep_record_digest(type, e, body, len);
	p->cur_bytes += len + WIRE_RECORD_HEADER_SIZE;
	return rc;
}

struct eng_emit {
	struct rep_primary *p;
	struct tp_link *link;
	uint64_t bytes;
	bool send_failed;   /* the link failed, not the write log */
};

/* The disk write log cannot give this session's writes any more (broken
 * at its cap, or an epoch missing from it): the next standby must get a
 * full copy rather than resume. */
static void eng_log_lost(struct rep_primary *p, const char *what,
			 uint64_t epoch)
{
	log_error("replicator: primary %s: disk write log: %s %" PRIu64
		  " failed; the next attach makes a full copy", p->vm_name,
		  what, epoch);
	pthread_mutex_lock(&p->lock);
	p->resync = true;
	pthread_mutex_unlock(&p->lock);
}

static int eng_emit_disk(void *arg, const uint8_t *body, size_t len)
{
	struct eng_emit *em = arg;
	int rc = eng_send(em->p, em->link, WIRE_REC_DISK_WRITE, body, len);

	em->bytes += len - DS_WRITE_HEADER;
	em->send_failed = rc != 0;
	return rc;
}

/* Encode and send `count` pages (already copied) in records of at most
 * WIRE_PAGE_MAX. */
static int eng_send_pages(struct rep_primary *p, struct tp_link *link,
			  const uint64_t *pfn, const uint8_t *pages,
			  size_t count)
{
	const void *ptr[WIRE_PAGE_MAX];
	int rc = 0;

	for (size_t at = 0; rc == 0 && at < count; at += WIRE_PAGE_MAX) {
		uint32_t n = (uint32_t)(count - at < WIRE_PAGE_MAX
						 ? count - at : WIRE_PAGE_MAX);

		for (uint32_t i = 0; i < n; i++)
			ptr[i] = pages + (at + i) * HV_PAGE_SIZE;
		wire_buf_reset(&p->buf);
		rc = codec_enc_pages(p->enc, n, pfn + at, ptr, &p->buf, NULL);
		if (rc == 0)
			rc = eng_send(p, link, WIRE_REC_PAGE_CODED, p->buf.data,
				      p->buf.len);
		if (at == 0)
			eng_failpoint(p, REP_PHASE_SENDING);
	}
	return rc;
}

static int eng_stage_grow(struct eng_staged *st, size_t count)
{
	uint64_t *pfn;
	uint8_t *pages;

	if (count <= st->cap)
		return 0;
	pfn = realloc(st->pfn, count * sizeof(*pfn));
	if (pfn == NULL)
		return -ENOMEM;
	st->pfn = pfn;
	pages = realloc(st->pages, count * HV_PAGE_SIZE);
	if (pages == NULL)
		return -ENOMEM;
	/* Fault the new part in now: touching fresh memory inside a pause
	 * costs far more than copying into it. */
	memset(pages + st->cap * HV_PAGE_SIZE, 0,
	       (count - st->cap) * HV_PAGE_SIZE);
	st->pages = pages;
	st->cap = count;
	return 0;
}

/* Copy the pages marked in bm (count of them) into the stage. */
static int eng_stage_pages(struct rep_primary *p, const uint64_t *bm,
			   uint64_t count)
{
	struct eng_staged *st = &p->st;
	int rc = eng_stage_grow(st, count);

	st->count = 0;
	for (uint64_t i = 0; rc == 0 && i < p->nr_pages; i++) {
		void *src;

		if (!bm_test(bm, i))
			continue;
		if (st->count == count)
			break;
		rc = hv_map(p->dom, i, 1, false, &src);
		if (rc != 0)
			break;
		memcpy(st->pages + st->count * HV_PAGE_SIZE, src, HV_PAGE_SIZE);
		hv_unmap(p->dom, src, 1);
		st->pfn[st->count++] = i;
	}
	return rc;
}

static int eng_save_state(struct rep_primary *p)
{
	struct eng_staged *st = &p->st;
	struct hv_platform_state ps;
	int rc = 0;

	st->nr_vcpus = hv_nr_vcpus(p->dom);
	st->nr_devs = hv_nr_devices(p->dom);
	if (st->nr_devs > REP_MAX_DEVICES)
		return -E2BIG;
	for (unsigned i = 0; rc == 0 && i < st->nr_vcpus; i++)
		rc = hv_vcpu_save(p->dom, i, &st->vcpu[i]);
	for (unsigned i = 0; rc == 0 && i < st->nr_devs; i++)
		rc = hv_device_save(p->dom, i, &st->dev[i]);
	if (rc == 0)
		rc = hv_platform_save(p->dom, &ps);
	st->guest_clock_ns = ps.guest_clock_ns;
	return rc;
}

static int eng_send_state(struct rep_primary *p, struct tp_link *link)
{
	struct eng_staged *st = &p->st;
	struct wire_vcpu_state *ws = malloc(sizeof(*ws));
	const uint8_t *body;
	size_t len;
	int rc = ws ? 0 : -ENOMEM;

	for (unsigned i = 0; rc == 0 && i < st->nr_vcpus; i++) {
		rep_vcpu_to_wire(&st->vcpu[i], i, ws);
		wire_buf_reset(&p->buf);
		rc = wire_vcpu_state_put(&p->buf, 0, ws, NULL);
		rep_record_body(&p->buf, &body, &len);
		if (rc == 0)
			rc = eng_send(p, link, WIRE_REC_VCPU_STATE, body, len);
	}
	for (unsigned i = 0; rc == 0 && i < st->nr_devs; i++) {
		struct wire_device_state ds = {
			.index = i, .type = st->dev[i].type,
			.port = st->dev[i].port, .blob_len = st->dev[i].len,
			.blob = st->dev[i].blob };

		wire_buf_reset(&p->buf);
		rc = wire_device_state_put(&p->buf, 0, &ds, NULL);
		rep_record_body(&p->buf, &body, &len);
		if (rc == 0)
			rc = eng_send(p, link, WIRE_REC_DEVICE_STATE, body, len);
	}
	free(ws);
	return rc;
}

static int eng_send_end(struct rep_primary *p, struct tp_link *link,
			uint64_t epoch, uint64_t base, bool full,
			uint64_t pages, uint64_t disk_bytes)
{
	struct rep_epoch_end end = {
		.epoch = epoch, .base = full ? 0 : base,
		.records = p->cur_records,
		.digest = p->cur_digest, .pages = pages,
		.disk_bytes = disk_bytes,
		.guest_clock_ns = p->st.guest_clock_ns,
		.flags = full ? REP_END_FULL : 0,
	};
	uint8_t body[64];

	return tp_send(link, REP_CHAN_DATA, WIRE_REC_REP_EPOCH_END, end.epoch,
		       body, rep_epoch_end_encode(&end, body));
}

/* ---- one checkpoint -------------------------------------------------------- */

struct eng_pause {
	uint64_t start_ns, pause_us, gate_epoch, pages;
	uint64_t *bm;
};

/* The paused part: everything the epoch needs, copied.  The guest stays
 * paused after it when `keep` (the final epoch of a switchover). */
static int eng_capture(struct rep_primary *p, struct eng_pause *ep, bool keep)
{
	uint64_t e = p->epoch + 1;
	int rc;

	ep->start_ns = rep_now_ns();
	rc = hv_pause(p->dom, NULL);
	if (rc != 0)
		return rc;
	eng_failpoint(p, REP_PHASE_PAUSED);
	atomic_store(&p->output_since_ns, 0);
	rc = hv_dirty_fetch(p->dom, p->pending, NULL);
	if (rc == 0)
		rc = eng_save_state(p);
	if (rc == 0) {
		ep->pages = bm_count(p->pending, p->bm_words);
		rc = eng_stage_pages(p, p->pending, ep->pages);
	}
	if (rc == 0) {
		ep->bm = p->pending;
		p->pending = calloc(p->bm_words, sizeof(uint64_t));
		if (p->pending == NULL) {
			p->pending = ep->bm;
			rc = -ENOMEM;
		}
	}
	/* Last, so that a failure above leaves epoch e open to try again. */
	if (rc == 0 && p->dlog != NULL && ds_log_cut(p->dlog, e) != 0)
		eng_log_lost(p, "cut of epoch", e);
	/* Output is held from the session's first checkpoint on: what the
	 * guest sent before it is in that checkpoint's state, so a full copy
	 * does not stall the guest's network and disk completions. */
	if (rc == 0 && !p->gate_on) {
		rc = hv_gate_hold(p->dom, true);
		p->gate_on = rc == 0;
	}
	if (rc == 0)
		ep->gate_epoch = hv_gate_next_epoch(p->dom);
	if (!keep || rc != 0)
		hv_unpause(p->dom);
	ep->pause_us = (rep_now_ns() - ep->start_ns) / 1000;
	return rc;
}

/* The epoch is made: count it and keep what a resume needs.  Returns the
 * base it builds on. */
static uint64_t eng_record(struct rep_primary *p, struct eng_pause *ep,
			   uint64_t disk_bytes, struct eng_unacked *u)
{
	uint64_t base;

	pthread_mutex_lock(&p->lock);
	base = p->resume_from;
	p->epoch++;
	p->resume_from = p->epoch; /* the next epoch builds on this one */
	if (u != NULL) {
		struct eng_unacked **tail = &p->unacked;

		*u = (struct eng_unacked){ .epoch = p->epoch,
					   .gate_epoch = ep->gate_epoch,
					   .made_ns = ep->start_ns,
					   .bm = ep->bm };
		while (*tail != NULL)
			tail = &(*tail)->next;
		*tail = u;
		p->nr_unacked++;
	}
	p->pause_ring[p->checkpoints % ENG_PAUSE_RING] = ep->pause_us;
	p->rate_ring[p->checkpoints % ENG_RATE_RING] = ep->start_ns;
	p->checkpoints++;
	p->last_pause_us = ep->pause_us;
	p->last_pages = ep->pages;
	p->last_bytes = p->cur_bytes;
	p->last_disk_bytes = disk_bytes;
	p->last_ckpt_ns = ep->start_ns;
	pthread_mutex_unlock(&p->lock);
	return base;
}

/*
 * One checkpoint.  The epoch is counted (eng_record) before its END goes
 * out, so that an ack, which may come back at once, finds it made.
 */
static int eng_checkpoint(struct rep_primary *p, struct tp_link *link,
			  bool full, bool keep_paused)
{
	struct eng_pause ep = { 0 };
	struct eng_emit em = { .p = p, .link = link };
	struct eng_unacked *u = calloc(1, sizeof(*u));
	uint64_t e = p->epoch + 1, base;
	int rc = u ? eng_capture(p, &ep, keep_paused) : -ENOMEM;

	if (!full)
		eng_epoch_begin(p);
	if (rc != 0) {
		free(u);
		eng_error(p, "checkpoint capture failed: %s", strerror(-rc));
		return rc;
	}
	rc = eng_send_pages(p, link, p->st.pfn, p->st.pages, p->st.count);
	if (rc == 0 && p->dlog != NULL) {
		rc = ds_log_emit(p->dlog, p->disk_sent, e, eng_emit_disk, &em);
		if (rc == 0)
			p->disk_sent = e;
		else if (!em.send_failed)
			eng_log_lost(p, "emit up to epoch", e);
	}
	if (rc == 0)
		rc = eng_send_state(p, link);
	base = eng_record(p, &ep, em.bytes, u);
	if (rc == 0)
		rc = eng_send_end(p, link, e, base, full, ep.pages, em.bytes);
	/* Room for twice this epoch, grown outside the pause. */
	if (ep.pages * 2 > p->st.cap)
		(void)eng_stage_grow(&p->st, ep.pages * 2);
	if (rc == 0) {
		pthread_mutex_lock(&p->lock);
		p->ends_sent++;
		pthread_mutex_unlock(&p->lock);
		eng_failpoint(p, REP_PHASE_SENT);
	}
	return rc;
}

/* ---- the first epoch: a full copy made live -------------------------------- */

static void eng_tap(void *arg, uint64_t offset, const struct iovec *iov,
		    int iovcnt, size_t len)
{
	struct rep_primary *p = arg;

	(void)ds_log_write(p->dlog, offset, iov, iovcnt, len);
}

/* A full copy that never sent its END: stop the disk tap and the write log
 * (with no standby they would only grow) and let held output go. */
static void eng_sync_abandon(struct rep_primary *p)
{
	if (hv_pause(p->dom, NULL) == 0) {
		if (p->tap_on)
			hv_disk_tap(p->dom, NULL, NULL);
		p->tap_on = false;
		hv_gate_hold(p->dom, false);
		p->gate_on = false;
		hv_unpause(p->dom);
	}
	pthread_mutex_lock(&p->lock);
	ds_log_free(p->dlog);
	p->dlog = NULL;
	pthread_mutex_unlock(&p->lock);
}

/* Paused: fresh write log, tap, dirty log, gate; learn the device ports. */
static int eng_sync_begin(struct rep_primary *p)
{
	struct hv_device_state *ds = malloc(sizeof(*ds));
	int rc = ds ? hv_pause(p->dom, NULL) : -ENOMEM;

	if (rc != 0) {
		free(ds);
		return rc;
	}
	p->nr_out_ports = 0;
	for (unsigned i = 0; i < hv_nr_devices(p->dom) && i < REP_MAX_DEVICES;
	     i++)
		if (hv_device_save(p->dom, i, ds) == 0)
			p->out_ports[p->nr_out_ports++] = ds->port;
	free(ds);
	if (p->disk_fd >= 0) {
		struct ds_log *fresh = NULL;

		if (p->tap_on)
			hv_disk_tap(p->dom, NULL, NULL);
		rc = ds_log_new(p->disk_bytes, &fresh);
		pthread_mutex_lock(&p->lock);
		ds_log_free(p->dlog);
		p->dlog = fresh;
		pthread_mutex_unlock(&p->lock);
		if (rc == 0)
			rc = hv_disk_tap(p->dom, eng_tap, p);
		p->tap_on = rc == 0;
		p->disk_sent = p->epoch;
	}
	if (rc == 0 && !p->dirty_on) {
		rc = hv_dirty_enable(p->dom);
		p->dirty_on = rc == 0;
	}
	memset(p->pending, 0, p->bm_words * sizeof(uint64_t));
	if (rc == 0)
		rc = hv_dirty_fetch(p->dom, p->pending, NULL); /* new round */
	memset(p->pending, 0, p->bm_words * sizeof(uint64_t));
	hv_unpause(p->dom);
	return rc;
}

static int eng_send_domain_info(struct rep_primary *p, struct tp_link *link)
{
	const struct hv_config *cfg = hv_domain_config(p->dom);
	struct wire_domain_info di = { .backend = rep_wire_backend(p->dom) };
	struct hv_platform plat;
	const uint8_t *body;
	size_t len;
	int rc = hv_platform_info(p->dom, &plat);

	di.nr_vcpus = hv_nr_vcpus(p->dom);
	di.guest_base = plat.guest_base;
	di.mem_bytes = p->nr_pages * HV_PAGE_SIZE;
	di.page_size = HV_PAGE_SIZE;
	di.xsave_features = plat.xsave_features;
	di.xsave_size = plat.xsave_size;
	di.cmdline_len = (uint32_t)strnlen(cfg->cmdline ? cfg->cmdline : "",
					   WIRE_CMDLINE_MAX);
	memcpy(di.cmdline, cfg->cmdline ? cfg->cmdline : "", di.cmdline_len);
	wire_buf_reset(&p->buf);
	if (rc == 0)
		rc = wire_domain_info_put(&p->buf, 0, &di, NULL);
	if (rc != 0)
		return rc;
	rep_record_body(&p->buf, &body, &len);
	return eng_send(p, link, WIRE_REC_DOMAIN_INFO, body, len);
}

/* Send the pages of bm while the guest runs, clearing their bits. */
static int eng_send_live(struct rep_primary *p, struct tp_link *link,
			 uint64_t *bm)
{
	int rc = eng_stage_grow(&p->st, WIRE_PAGE_MAX);

	for (uint64_t i = 0; rc == 0 && i < p->nr_pages;) {
		size_t n = 0;

		for (; i < p->nr_pages && n < WIRE_PAGE_MAX; i++) {
			void *src;

			if (!bm_test(bm, i))
				continue;
			rc = hv_map(p->dom, i, 1, false, &src);
			if (rc != 0)
				break;
			/* A stable copy: the encoder's cache must see
			 * exactly what the decoder will. */
			memcpy(p->st.pages + n * HV_PAGE_SIZE, src, HV_PAGE_SIZE);
			hv_unmap(p->dom, src, 1);
			p->st.pfn[n++] = i;
			bm[i / 64] &= ~(1ULL << (i % 64));
		}
		if (rc == 0 && n > 0)
			rc = eng_send_pages(p, link, p->st.pfn, p->st.pages, n);
		pthread_mutex_lock(&p->lock);
		p->sync_done += n;
		pthread_mutex_unlock(&p->lock);
	}
	return rc;
}

static void eng_sync_progress(void *arg, uint64_t done, uint64_t total)
{
	struct rep_primary *p = ((struct eng_emit *)arg)->p;

	if (done == total || (done / DS_WRITE_MAX) % 64 == 0)
		log_info("replicator: primary %s: disk copy %" PRIu64 " of %"
			 PRIu64 " MiB", p->vm_name, done >> 20, total >> 20);
}

static int eng_full_sync(struct rep_primary *p, struct tp_link *link)
{
	struct eng_emit em = { .p = p, .link = link };
	uint64_t *bm = calloc(p->bm_words, sizeof(uint64_t));
	int rc = bm ? eng_sync_begin(p) : -ENOMEM;

	eng_epoch_begin(p);

	if (rc == 0)
		rc = hv_populated(p->dom, bm);
	pthread_mutex_lock(&p->lock);
	p->sync_done = 0;
	p->sync_total = bm ? bm_count(bm, p->bm_words) : 0;
	pthread_mutex_unlock(&p->lock);
	log_info("replicator: primary %s: full copy: %" PRIu64 " pages, %"
		 PRIu64 " MiB of disk", p->vm_name, p->sync_total,
		 p->disk_bytes >> 20);
	if (rc == 0)
		rc = eng_send_domain_info(p, link);
	if (rc == 0)
		rc = eng_send_live(p, link, bm);
	if (rc == 0 && p->disk_fd >= 0)
		rc = ds_base_emit(p->disk_fd, p->disk_bytes, eng_emit_disk, &em,
				  eng_sync_progress);
	for (int r = 0; rc == 0 && r < ENG_PRECOPY_ROUNDS; r++) {
		uint64_t n;

		rc = hv_dirty_fetch(p->dom, p->pending, NULL);
		n = bm_count(p->pending, p->bm_words);
		log_info("replicator: primary %s: pre-copy round %d: %" PRIu64
			 " pages dirty", p->vm_name, r + 1, n);
		if (rc != 0 || n < ENG_PRECOPY_DONE)
			break;
		rc = eng_send_live(p, link, p->pending);
	}
	free(bm);
	if (rc == 0)
		rc = eng_checkpoint(p, link, true, false);
	return rc;
}

/* ---- the engine thread -------------------------------------------------------- */

static void eng_wait(struct rep_primary *p, int64_t ns)
{
	struct pollfd pfd = { .fd = p->kick_fd, .events = POLLIN };
	struct timespec ts = { .tv_sec = ns / 1000000000,
			       .tv_nsec = ns % 1000000000 };
	uint64_t v;

	if (ppoll(&pfd, 1, ns < 0 ? NULL : &ts, NULL) > 0)
		(void)!read(p->kick_fd, &v, sizeof(v));
}

/* Nanoseconds until the next checkpoint is due (<= 0: now). */
static int64_t eng_due_in(struct rep_primary *p)
{
	uint64_t now = rep_now_ns(), out = atomic_load(&p->output_since_ns);
	uint64_t iv = (uint64_t)atomic_load(&p->interval_us) * 1000;
	int mode = atomic_load(&p->mode);
	int64_t due;

	bool full;

	/* The guest runs a whole interval between two pauses (a Remus
	 * epoch), however long a pause takes. */
	pthread_mutex_lock(&p->lock);
	due = (int64_t)(p->last_ckpt_ns + p->last_pause_us * 1000ULL + iv - now);
	full = p->nr_unacked >= ENG_MAX_INFLIGHT;
	pthread_mutex_unlock(&p->lock);
	if (full)
		return 1000000; /* wait for acks (they kick); recheck in 1 ms */
	if (out != 0 && mode == REP_MODE_KEMARI && due > 0)
		due = 0;
	if (out != 0 && mode == REP_MODE_HYBRID) {
		int64_t b = (int64_t)(out + p->cfg.output_bound_us * 1000ULL -
				      now);

		if (b < due)
			due = b;
	}
	return due;
}

static bool eng_acks_stalled(struct rep_primary *p)
{
	bool stalled;

	pthread_mutex_lock(&p->lock);
	stalled = p->unacked != NULL &&
		  rep_now_ns() - p->unacked->made_ns >
			  (uint64_t)ENG_ACK_TIMEOUT_MS * 1000000;
	pthread_mutex_unlock(&p->lock);
	return stalled;
}

/*
 * The engine's part of a switchover; true while one is under way (no
 * ordinary checkpoints then).  Final checkpoint with the guest left
 * paused, then, once it is acknowledged, REP_HANDOVER.
 */
static bool eng_handover_step(struct rep_primary *p, struct tp_link *link,
			      int *rc)
{
	struct rep_handover h;
	enum eng_handover ho;
	uint8_t body[32];
	bool acked;

	pthread_mutex_lock(&p->lock);
	ho = p->handover;
	acked = p->committed >= p->handover_epoch;
	h = (struct rep_handover){ .epoch = p->handover_epoch,
				   .generation = p->cfg.generation };
	pthread_mutex_unlock(&p->lock);
	if (ho == HO_NONE)
		return false;
	if (ho == HO_REQUESTED) {
		*rc = eng_checkpoint(p, link, false, true);
		if (*rc != 0 && hv_is_paused(p->dom))
			hv_unpause(p->dom); /* the guest runs on here */
		pthread_mutex_lock(&p->lock);
		p->handover = *rc == 0 ? HO_FINAL_SENT : HO_NONE;
		p->handover_epoch = p->epoch;
		pthread_mutex_unlock(&p->lock);
		return true;
	}
	if (ho == HO_FINAL_SENT && acked) {
		*rc = rep_ctl_send(&p->ctl, WIRE_REC_REP_HANDOVER, h.epoch, body,
				   rep_handover_encode(&h, body));
		/* Out before this host tears the link down (its demotion
		 * aborts the link, and with it anything still queued): else
		 * the standby takes over only after its silence window. */
		if (*rc == 0)
			*rc = rep_ctl_flush(&p->ctl, 2000);
		pthread_mutex_lock(&p->lock);
		p->handover = *rc == 0 ? HO_DONE : HO_NONE;
		pthread_mutex_unlock(&p->lock);
		log_info("replicator: primary %s: final epoch %" PRIu64
			 " committed; handed over to the standby", p->vm_name,
			 h.epoch);
		return true;
	}
	eng_wait(p, 1000000);
	return true;
}

static void *eng_main(void *arg)
{
	struct rep_primary *p = arg;

	for (;;) {
		struct tp_link *link;
		enum rep_engine_state st;
		bool failed, stop;
		int rc = 0;

		pthread_mutex_lock(&p->lock);
		link = p->link;
		failed = p->link_failed;
		stop = p->stop;
		st = p->state;
		pthread_mutex_unlock(&p->lock);
		if (stop)
			break;
		if (failed) {
			eng_link_down(p);
			continue;
		}
		if (link == NULL) {
			eng_wait(p, -1);
			continue;
		}
		if (st == REP_ENG_SYNCING && p->checkpoints_in_session == 0) {
			rc = eng_full_sync(p, link);
			p->checkpoints_in_session++;
		} else if (eng_handover_step(p, link, &rc)) {
			/* the switchover owns the guest now */
		} else {
			int64_t due = eng_due_in(p);

			if (due > 0) {
				eng_wait(p, due);
				if (eng_acks_stalled(p))
					eng_link_failed(p, link, "no ack within "
							"10 s");
				continue;
			}
			rc = eng_checkpoint(p, link, false, false);
		}
		if (rc != 0)
			eng_link_failed(p, link, strerror(-rc));
	}
	eng_link_down(p);
	return NULL;
}

/* ---- attach ---------------------------------------------------------------- */

static int att_hello(struct rep_primary *p, struct tp_link *link,
		     struct rep_welcome *w, char *err, size_t errlen)
{
	struct rep_hello h = { .role = REP_ROLE_PRIMARY,
			       .vcpus = hv_nr_vcpus(p->dom),
			       /* the config's memory: a Xen guest's frame
				  space is larger (the hole under 4 GiB) */
			       .mem_bytes = hv_domain_config(p->dom)->mem_bytes };
	uint8_t body[REP_BODY_MAX];
	struct tp_msg *m = NULL;
	int rc;

	pthread_mutex_lock(&p->lock);
	h.mode = (uint32_t)atomic_load(&p->mode);
	h.generation = p->cfg.generation;
	h.session = p->session;
	h.epoch = p->epoch;
	pthread_mutex_unlock(&p->lock);
	snprintf(h.vm, sizeof(h.vm), "%s", p->vm_name);
	rc = tp_send(link, REP_CHAN_CTL, WIRE_REC_REP_HELLO, 0, body,
		     rep_hello_encode(&h, body));
	if (rc == 0)
		rc = tp_recv(link, REP_HELLO_TIMEOUT_MS, &m);
	if (rc != 0) {
		snprintf(err, errlen, "no WELCOME from the standby: %s",
			 strerror(-rc));
		return rc;
	}
	if (m->type != WIRE_REC_REP_WELCOME)
		rc = -EPROTO;
	if (rc != 0)
		snprintf(err, errlen, "expected REP_WELCOME, got %s",
			 wire_record_type_name(m->type));
	else
		rc = rep_welcome_decode(m->body, m->len, w, err, errlen);
	tp_msg_free(m);
	return rc;
}

/* A fresh page encoder for a new link (its peer's decoder starts empty). */
static int att_encoder(struct rep_primary *p, char *err, size_t errlen)
{
	struct codec_opts o;

	codec_enc_free(p->enc);
	codec_opts_init(&o);
	o.compress = p->cfg.compress;
	p->enc = codec_enc_new(&o);
	if (p->enc == NULL) {
		snprintf(err, errlen, "out of memory for the page encoder");
		return -ENOMEM;
	}
	return 0;
}

/* (L) held: forget the unacknowledged epochs (their gate epochs are
 * released by a later commit, or never). */
static void eng_drop_unacked(struct rep_primary *p)
{
	while (p->unacked != NULL) {
		struct eng_unacked *u = p->unacked;

		p->unacked = u->next;
		free(u->bm);
		free(u);
	}
	p->nr_unacked = 0;
}

/* (L) held: the standby has committed `c` of our session: resume there. */
static void att_resume(struct rep_primary *p, uint64_t c)
{
	eng_acked(p, c);
	p->resume_from = c;
	for (struct eng_unacked *u = p->unacked; u != NULL; u = u->next)
		for (size_t i = 0; i < p->bm_words; i++)
			p->pending[i] |= u->bm[i];
	/* Their output stays held until an epoch after them commits. */
	eng_drop_unacked(p);
	p->disk_sent = c;
	log_info("replicator: primary %s: standby resumes after epoch %" PRIu64
		 " (epochs %" PRIu64 "..%" PRIu64 " go again in the next one)",
		 p->vm_name, c, c + 1, p->epoch);
}

/* (L) held: before HELLO, a fresh session id unless there is a session
 * a standby could resume. */
static void att_pick_session(struct rep_primary *p)
{
	uint64_t s = 0;

	if (p->session != 0 && !p->resync && p->state == REP_ENG_DEGRADED)
		return;
	while (s == 0)
		if (getrandom(&s, sizeof(s), 0) != sizeof(s))
			s = rep_now_ns();
	p->session = s;
}

/* (L) held: a new session with a full copy. */
static void att_new_session(struct rep_primary *p)
{
	p->resume_from = 0;
	p->ends_sent = 0;
	p->resync = false;
	p->checkpoints_in_session = 0;
	eng_drop_unacked(p);
	eng_set_state(p, REP_ENG_SYNCING);
}

int rep_primary_attach(struct rep_primary *p, struct tp_link *link,
		       uint64_t *peer_generation, char *err, size_t errlen)
{
	struct rep_welcome w;
	int rc;

	pthread_mutex_lock(&p->lock);
	rc = p->link != NULL ? -EBUSY : 0;
	att_pick_session(p);
	pthread_mutex_unlock(&p->lock);
	if (rc == 0)
		rc = att_hello(p, link, &w, err, errlen);
	if (rc == -EBUSY)
		snprintf(err, errlen, "a standby is already attached");
	if (rc == 0 && w.status == REP_WELCOME_SUPERSEDED) {
		*peer_generation = w.generation;
		snprintf(err, errlen, "the peer is primary of generation %" PRIu64
			 " (ours %" PRIu64 "): %s", w.generation,
			 p->cfg.generation, w.reason);
		rc = -ESTALE;
	} else if (rc == 0 && w.status == REP_WELCOME_REFUSED) {
		snprintf(err, errlen, "refused by the peer: %s", w.reason);
		rc = -EPERM;
	}
	if (rc == 0)
		rc = att_encoder(p, err, errlen);
	if (rc != 0) {
		tp_link_free(link);
		return rc;
	}
	rep_ctl_set_link(&p->ctl, link);
	/* The engine sees the link only with its receiver running. */
	pthread_mutex_lock(&p->lock);
	if (w.session == p->session && p->session != 0 && !p->resync &&
	    w.committed >= p->committed && w.committed <= p->epoch &&
	    w.committed > 0 && p->state != REP_ENG_SYNCING) {
		att_resume(p, w.committed);
		eng_set_state(p, REP_ENG_PROTECTED);
	} else {
		att_new_session(p);
	}
	p->link = link;
	p->link_failed = false;
	p->last_heard_ns = rep_now_ns();
	p->last_ckpt_ns = rep_now_ns();
	rc = -pthread_create(&p->rx, NULL, rx_main, p);
	p->rx_running = rc == 0;
	if (rc != 0)
		p->link = NULL;
	pthread_mutex_unlock(&p->lock);
	if (rc != 0) {
		rep_ctl_set_link(&p->ctl, NULL);
		tp_link_free(link);
		snprintf(err, errlen, "cannot start the receiver: %s",
			 strerror(-rc));
		return rc;
	}
	eng_kick(p);
	log_info("replicator: primary %s: standby %s attached", p->vm_name,
		 tp_link_peer(link));
	return 0;
}

bool rep_primary_attached(struct rep_primary *p)
{
	bool up;

	pthread_mutex_lock(&p->lock);
	up = p->link != NULL;
	pthread_mutex_unlock(&p->lock);
	return up;
}

/* ---- lifecycle and knobs ------------------------------------------------------ */

static int prim_open_disk(struct rep_primary *p)
{
	const struct hv_config *cfg = hv_domain_config(p->dom);
	struct stat sb;

	p->disk_fd = -1;
	if (cfg->disk == NULL)
		return 0;
	p->disk_fd = open(cfg->disk, O_RDONLY | O_CLOEXEC);
	if (p->disk_fd < 0 || fstat(p->disk_fd, &sb) != 0)
		return -errno;
	p->disk_bytes = (uint64_t)sb.st_size;
	return 0;
}

/* Kemari and hybrid modes need the backend's event hooks. */
static int prim_mode_available(const struct rep_primary *p, enum rep_mode mode)
{
	if (!p->timer_only || mode == REP_MODE_REMUS)
		return 0;
	log_error("replicator: %s: backend %s has no event hooks: mode %s is "
		  "not available (use remus)", p->vm_name,
		  hv_backend_name(p->dom), rep_mode_name(mode));
	return -ENOTSUP;
}

/* Install the event-channel hook and the gate watch, with the guest
 * paused. */
static int prim_hook(struct rep_primary *p)
{
	int rc = hv_pause(p->dom, NULL);

	if (rc != 0)
		return rc;
	rc = hv_evtchn_hook(p->dom, eng_hook, p);
	if (rc == 0)
		rc = hv_gate_watch(p->dom, eng_gate_watch, p);
	if (rc == -ENOTSUP) {
		/* A backend without them (Xen) runs timer epochs only. */
		hv_evtchn_hook(p->dom, NULL, NULL);
		p->timer_only = true;
		rc = prim_mode_available(p, p->cfg.mode);
	}
	hv_unpause(p->dom);
	return rc;
}

int rep_primary_new(struct hv_domain *dom, const struct rep_primary_config *cfg,
		    struct rep_primary **out)
{
	struct rep_primary *p = calloc(1, sizeof(*p));
	int rc;

	*out = NULL;
	if (p == NULL)
		return -ENOMEM;
	p->disk_fd = -1;
	p->dom = dom;
	p->cfg = *cfg;
	snprintf(p->vm_name, sizeof(p->vm_name), "%s", cfg->vm_name);
	p->cfg.vm_name = p->vm_name;
	p->nr_pages = hv_nr_pages(dom);
	p->bm_words = (p->nr_pages + 63) / 64;
	pthread_mutex_init(&p->lock, NULL);
	rep_ctl_init(&p->ctl);
	wire_buf_init(&p->buf);
	atomic_init(&p->mode, (int)cfg->mode);
	atomic_init(&p->interval_us, cfg->interval_us);
	atomic_init(&p->failpoint, REP_PHASE_NONE);
	atomic_init(&p->output_since_ns, 0);
	p->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	p->pending = calloc(p->bm_words, sizeof(uint64_t));
	p->st.vcpu = calloc(HV_MAX_VCPUS, sizeof(*p->st.vcpu));
	p->st.dev = calloc(REP_MAX_DEVICES, sizeof(*p->st.dev));
	rc = p->kick_fd >= 0 && p->pending && p->st.vcpu && p->st.dev
		     ? eng_stage_grow(&p->st, ENG_STAGE_MIN) : -ENOMEM;
	if (rc == 0)
		rc = prim_open_disk(p);
	if (rc == 0)
		rc = prim_hook(p);
	if (rc == 0)
		rc = -pthread_create(&p->engine, NULL, eng_main, p);
	if (rc != 0) {
		log_error("replicator: cannot start protecting %s: %s",
			  p->vm_name, strerror(-rc));
		p->engine = 0;
		rep_primary_free(p);
		return rc;
	}
	log_info("replicator: protecting %s: %s mode, interval %u us, "
		 "generation %" PRIu64, p->vm_name, rep_mode_name(cfg->mode),
		 cfg->interval_us, cfg->generation);
	*out = p;
	return 0;
}

/* release: open the gate and leave the guest running; otherwise leave
 * the domain paused with its held output, for its owner to destroy. */
static void prim_free(struct rep_primary *p, bool release)
{
	struct tp_link *link;

	if (p == NULL)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	p->no_release = !release;
	link = p->link;
	if (link != NULL)
		tp_link_abort(link); /* unblocks a send the engine waits in */
	pthread_mutex_unlock(&p->lock);
	if (p->engine) {
		eng_kick(p);
		pthread_join(p->engine, NULL);
	}
	/* Hooks change only while the guest is paused. */
	hv_pause(p->dom, NULL);
	hv_evtchn_hook(p->dom, NULL, NULL);
	hv_gate_watch(p->dom, NULL, NULL);
	if (p->tap_on)
		hv_disk_tap(p->dom, NULL, NULL);
	if (release) {
		if (p->dirty_on)
			hv_dirty_disable(p->dom);
		hv_gate_hold(p->dom, false);
		hv_unpause(p->dom);
	}
	eng_drop_unacked(p);
	ds_log_free(p->dlog);
	codec_enc_free(p->enc);
	wire_buf_fini(&p->buf);
	rep_ctl_fini(&p->ctl);
	if (p->disk_fd >= 0)
		close(p->disk_fd);
	if (p->kick_fd >= 0)
		close(p->kick_fd);
	free(p->pending);
	free(p->st.pfn);
	free(p->st.pages);
	free(p->st.vcpu);
	free(p->st.dev);
	pthread_mutex_destroy(&p->lock);
	log_info("replicator: %s no longer protected", p->vm_name);
	free(p);
}

void rep_primary_free(struct rep_primary *p)
{
	prim_free(p, true);
}

void rep_primary_abandon(struct rep_primary *p)
{
	prim_free(p, false);
}

int rep_primary_set_interval(struct rep_primary *p, uint32_t interval_us)
{
	if (interval_us < 1000 || interval_us > 60000000)
		return -ERANGE;
	atomic_store(&p->interval_us, interval_us);
	log_info("replicator: %s: checkpoint interval now %u us", p->vm_name,
		 interval_us);
	eng_kick(p);
	return 0;
}

int rep_primary_set_mode(struct rep_primary *p, enum rep_mode mode)
{
	if ((unsigned)mode > REP_MODE_HYBRID)
		return -EINVAL;
	if (prim_mode_available(p, mode) != 0)
		return -ENOTSUP;
	atomic_store(&p->mode, (int)mode);
	log_info("replicator: %s: mode now %s", p->vm_name, rep_mode_name(mode));
	eng_kick(p);
	return 0;
}

void rep_primary_failpoint(struct rep_primary *p, enum rep_phase phase)
{
	atomic_store(&p->failpoint, (int)phase);
}

void rep_primary_heartbeat(struct rep_primary *p)
{
	uint64_t e;

	pthread_mutex_lock(&p->lock);
	e = p->epoch;
	pthread_mutex_unlock(&p->lock);
	rep_ctl_heartbeat(&p->ctl, REP_ROLE_PRIMARY, p->cfg.generation, e, 0);
}

void rep_primary_release_standby(struct rep_primary *p)
{
	struct tp_link *link;
	uint64_t e;

	pthread_mutex_lock(&p->lock);
	e = p->epoch;
	link = p->link;
	pthread_mutex_unlock(&p->lock);
	if (link == NULL)
		return;
	rep_ctl_heartbeat(&p->ctl, REP_ROLE_PRIMARY, p->cfg.generation, e,
			  REP_HB_RELEASE);
	(void)rep_ctl_flush(&p->ctl, 1000);
	log_info("replicator: primary %s: told the standby to drop its replica",
		 p->vm_name);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* (L) held */
static void stats_pauses(struct rep_primary *p, struct rep_primary_stats *o)
{
	size_t n = p->checkpoints < ENG_PAUSE_RING ? p->checkpoints
						   : ENG_PAUSE_RING;
	uint64_t tmp[ENG_PAUSE_RING], now = rep_now_ns();
	unsigned recent = 0;

	for (size_t i = 0; i < ENG_RATE_RING && i < p->checkpoints; i++)
		recent += now - p->rate_ring[i] < 2000000000ULL;
	o->rate = recent / 2.0;
	if (n == 0)
		return;
	memcpy(tmp, p->pause_ring, n * sizeof(tmp[0]));
	qsort(tmp, n, sizeof(tmp[0]), cmp_u64);
	o->pause_p50_us = tmp[n / 2];
	o->pause_p99_us = tmp[n * 99 / 100];
}

void rep_primary_stats(struct rep_primary *p, struct rep_primary_stats *o)
{
	uint64_t now = rep_now_ns();

	memset(o, 0, sizeof(*o));
	pthread_mutex_lock(&p->lock);
	o->state = p->state;
	o->mode = (enum rep_mode)atomic_load(&p->mode);
	o->interval_us = atomic_load(&p->interval_us);
	o->generation = p->cfg.generation;
	o->session = p->session;
	o->epoch = p->epoch;
	o->committed = p->committed;
	o->checkpoints = p->checkpoints;
	o->last_pause_us = p->last_pause_us;
	o->last_pages = p->last_pages;
	o->last_bytes = p->last_bytes;
	o->last_disk_bytes = p->last_disk_bytes;
	o->held_epochs = p->state == REP_ENG_IDLE ? 0 : p->epoch - p->committed;
	if (p->unacked != NULL)
		o->held_ms = rep_ms_since(now, p->unacked->made_ns);
	o->sync_pages_done = p->sync_done;
	o->sync_pages_total = p->sync_total;
	o->link_up = p->link != NULL && !p->link_failed;
	o->peer_silent_ms = rep_ms_since(now, p->last_heard_ns);
	snprintf(o->last_error, sizeof(o->last_error), "%s", p->last_error);
	stats_pauses(p, o);
	pthread_mutex_unlock(&p->lock);
}

/* ---- planned switchover ------------------------------------------------------ */

/* After REP_HANDOVER: the standby closes the link as it takes over.
 * Wait for that (bounded) before the caller tears the link down, so the
 * record is not lost with the link's queue - the standby would then
 * take over only after its silence window. */
static void prim_handover_linger(struct rep_primary *p)
{
	uint64_t end = rep_now_ns() + ENG_HANDOVER_LINGER_MS * 1000000ULL;
	bool up = true;

	while (up && rep_now_ns() < end) {
		pthread_mutex_lock(&p->lock);
		up = p->link != NULL && !p->link_failed;
		pthread_mutex_unlock(&p->lock);
		if (up)
			usleep(1000);
	}
	if (up)
		log_warn("replicator: primary %s: the standby did not close the "
			 "link within %d ms of the handover", p->vm_name,
			 ENG_HANDOVER_LINGER_MS);
}

int rep_primary_handover(struct rep_primary *p, int timeout_ms, char *err,
			 size_t errlen)
{
	uint64_t end = rep_now_ns() + (uint64_t)timeout_ms * 1000000;
	enum eng_handover ho = HO_NONE;
	bool up = false;

	pthread_mutex_lock(&p->lock);
	if (p->state != REP_ENG_PROTECTED || p->link == NULL ||
	    p->handover != HO_NONE) {
		snprintf(err, errlen, "the guest is %s, not protected by a "
			 "connected standby", eng_state_names[p->state]);
		pthread_mutex_unlock(&p->lock);
		return -ENOTCONN;
	}
	p->handover = HO_REQUESTED;
	pthread_mutex_unlock(&p->lock);
	log_info("replicator: primary %s: planned switchover: final epoch",
		 p->vm_name);
	eng_kick(p);
	while (rep_now_ns() < end) {
		pthread_mutex_lock(&p->lock);
		ho = p->handover;
		up = p->link != NULL && !p->link_failed;
		pthread_mutex_unlock(&p->lock);
		if (ho == HO_DONE || ho == HO_NONE || !up)
			break;
		usleep(1000);
	}
	if (ho == HO_DONE) {
		prim_handover_linger(p);
		return 0;
	}
	/* Abandoned: the guest runs on here, still protected. */
	pthread_mutex_lock(&p->lock);
	ho = p->handover;
	p->handover = HO_NONE;
	pthread_mutex_unlock(&p->lock);
	if (ho == HO_FINAL_SENT)
		hv_unpause(p->dom);
	snprintf(err, errlen, "the standby did not commit the final epoch "
		 "within %d ms%s; the guest runs on here", timeout_ms,
		 up ? "" : " (link lost)");
	eng_kick(p);
	return -ETIMEDOUT;
}
