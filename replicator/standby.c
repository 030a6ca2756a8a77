/*
 * standby.c - the replica: receives epochs, verifies each one whole,
 * applies it atomically and acknowledges it.
 *
 * The replica is a domain that never runs until promotion: its memory is
 * the committed image.  An epoch's records go to a side buffer (pages,
 * vCPU and device state) and the disk replica's stage; only when its
 * REP_EPOCH_END arrives (last on the data channel), with the right base, the
 * right record count and digest and the state of every vCPU, is it
 * applied: pages copied into the domain, disk writes applied, vCPU and
 * device state kept as the committed ones; then REP_ACK.  A link that
 * fails mid-epoch drops the side buffer whole.
 *
 * The first epoch of a session (REP_END_FULL) writes straight into a
 * fresh domain and a zeroed disk: until it commits there is no replica to
 * protect, and if it never does the domain is destroyed.
 *
 * Promotion loads the committed vCPU, device and clock state into the
 * domain and unpauses it: the block device re-issues what was in flight,
 * the stream device listens on this host's address.
 */
#include "codec.h"
#include "disksync.h"
#include "log.h"
#include "rep_int.h"
#include "rep_proto.h"
#include "transport.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sb_state {
	struct hv_vcpu_state *vcpu;   /* HV_MAX_VCPUS */
	struct hv_device_state *dev;  /* REP_MAX_DEVICES */
	uint64_t vcpu_mask;
	uint32_t dev_mask;
	uint64_t guest_clock_ns;
};

struct rep_standby {
	struct rep_standby_config cfg;
	char vm_name[REP_NAME_MAX + 1];
	struct hv_domain *dom;        /* the replica, or NULL */
	struct ds_replica *disk_rep;
	struct codec_dec *dec;
	struct wire_vcpu_state *ws;

	pthread_mutex_t lock;
	pthread_mutex_t apply_lock;   /* an epoch being applied to dom */
	struct rep_ctl ctl;
	struct tp_link *link;         /* (L) */
	pthread_t rx;
	bool rx_running;
	bool stop_rx;                 /* (L) */
	enum rep_standby_state state; /* (L) */
	uint64_t generation;          /* (L) */
	uint64_t session;             /* (L) */
	uint64_t committed;           /* (L) */
	uint64_t commits, discarded;  /* (L) */
	uint64_t last_apply_us, last_pages, last_disk_bytes; /* (L) */
	uint64_t peer_epoch;          /* (L) */
	uint64_t last_heard_ns;       /* (L) */
	uint64_t link_lost_ns;        /* (L) 0 while up */
	bool drill_armed;             /* (L) */
	bool handover;                /* (L) the primary handed over */
	bool released;                /* (L) the primary released the replica */
	char last_error[160];         /* (L) */

	/* the open epoch (receiver thread) */
	uint64_t open_epoch;
	uint64_t rec_count, rec_digest;
	uint64_t *st_pfn;
	uint8_t *st_pages;
	size_t st_count, st_cap;
	bool full;                    /* this epoch writes straight through */
	bool seen_domain_info;        /* in this (full) epoch */
	struct sb_state open, done;
};

static const char *const sb_state_names[] = {
	"WAITING", "SYNCING", "REPLICATING", "PROMOTED",
};

/* (L) held */
static void sb_set_state(struct rep_standby *s, enum rep_standby_state st)
{
	if (s->state == st)
		return;
	log_info("replicator: standby %s: %s -> %s", s->vm_name,
		 sb_state_names[s->state], sb_state_names[st]);
	s->state = st;
}

__attribute__((format(printf, 2, 3)))
static int sb_fail(struct rep_standby *s, const char *fmt, ...)
{
	va_list ap;
	char msg[160];

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_error("replicator: standby %s: %s", s->vm_name, msg);
	pthread_mutex_lock(&s->lock);
	snprintf(s->last_error, sizeof(s->last_error), "%s", msg);
	pthread_mutex_unlock(&s->lock);
	return -EPROTO;
}

static int sb_state_alloc(struct sb_state *st)
{
	st->vcpu = calloc(HV_MAX_VCPUS, sizeof(*st->vcpu));
	st->dev = calloc(REP_MAX_DEVICES, sizeof(*st->dev));
	return st->vcpu && st->dev ? 0 : -ENOMEM;
}

static void sb_state_free(struct sb_state *st)
{
	free(st->vcpu);
	free(st->dev);
}

/* ---- the open epoch -------------------------------------------------------- */

static void sb_discard(struct rep_standby *s, const char *why)
{
	if (s->open_epoch != 0) {
		log_warn("replicator: standby %s: epoch %" PRIu64 " discarded "
			 "whole: %s", s->vm_name, s->open_epoch, why);
		pthread_mutex_lock(&s->lock);
		s->discarded++;
		pthread_mutex_unlock(&s->lock);
	}
	s->open_epoch = 0;
	s->rec_count = s->rec_digest = 0;
	s->st_count = 0;
	s->open.vcpu_mask = 0;
	s->open.dev_mask = 0;
	if (s->disk_rep != NULL)
		ds_replica_discard(s->disk_rep);
}

/* Every data record: it must belong to the open epoch (or open one). */
static int sb_account(struct rep_standby *s, const struct tp_msg *m)
{
	uint64_t committed;

	pthread_mutex_lock(&s->lock);
	committed = s->committed;
	pthread_mutex_unlock(&s->lock);
	if (s->open_epoch == 0) {
		if (m->epoch <= committed)
			return sb_fail(s, "%s of epoch %" PRIu64 ", already "
				       "committed %" PRIu64,
				       wire_record_type_name(m->type), m->epoch,
				       committed);
		s->open_epoch = m->epoch;
	} else if (m->epoch != s->open_epoch) {
		return sb_fail(s, "%s of epoch %" PRIu64 " while epoch %" PRIu64
			       " is open", wire_record_type_name(m->type),
			       m->epoch, s->open_epoch);
	}
	s->rec_count++;
	s->rec_digest += rep_record_digest(m->type, m->epoch, m->body, m->len);
	return 0;
}

static int sb_page_direct(void *arg, uint64_t pfn, const uint8_t *page)
{
	struct rep_standby *s = arg;
	void *dst;
	int rc = hv_map(s->dom, pfn, 1, true, &dst);

	if (rc != 0)
		return rc;
	memcpy(dst, page, HV_PAGE_SIZE);
	hv_unmap(s->dom, dst, 1);
	return 0;
}

static int sb_page_stage(void *arg, uint64_t pfn, const uint8_t *page)
{
	struct rep_standby *s = arg;

	if (s->st_count >= hv_nr_pages(s->dom))
		return -E2BIG; /* more pages than the guest has: not an epoch */
	if (s->st_count == s->st_cap) {
		size_t cap = s->st_cap ? s->st_cap * 2 : 1024;
		uint64_t *pfns = realloc(s->st_pfn, cap * sizeof(*pfns));
		uint8_t *pages;

		if (pfns == NULL)
			return -ENOMEM;
		s->st_pfn = pfns;
		pages = realloc(s->st_pages, cap * HV_PAGE_SIZE);
		if (pages == NULL)
			return -ENOMEM;
		s->st_pages = pages;
		s->st_cap = cap;
	}
	s->st_pfn[s->st_count] = pfn;
	memcpy(s->st_pages + s->st_count * HV_PAGE_SIZE, page, HV_PAGE_SIZE);
	s->st_count++;
	return 0;
}

static int sb_pages(struct rep_standby *s, const struct tp_msg *m)
{
	char err[WIRE_ERR_MAX];
	int rc;

	if (s->dom == NULL)
		return sb_fail(s, "pages before the session's first epoch");
	rc = codec_dec_pages(s->dec, m->body, m->len, hv_nr_pages(s->dom),
			     s->full ? sb_page_direct : sb_page_stage, s, err,
			     sizeof(err));
	return rc ? sb_fail(s, "epoch %" PRIu64 ": %s", m->epoch, err) : 0;
}

static int sb_vcpu(struct rep_standby *s, const struct tp_msg *m)
{
	char err[WIRE_ERR_MAX];
	int rc = wire_vcpu_state_decode(m->body, m->len, s->ws, err,
					sizeof(err));

	if (rc != 0)
		return sb_fail(s, "%s", err);
	if (s->ws->vcpu_id >= s->cfg.hv.nr_vcpus)
		return sb_fail(s, "vCPU %" PRIu32 " of %u", s->ws->vcpu_id,
			       s->cfg.hv.nr_vcpus);
	rep_vcpu_from_wire(s->ws, &s->open.vcpu[s->ws->vcpu_id]);
	s->open.vcpu_mask |= 1ULL << s->ws->vcpu_id;
	return 0;
}

static int sb_device(struct rep_standby *s, const struct tp_msg *m)
{
	char err[WIRE_ERR_MAX];
	struct wire_device_state ws;
	struct hv_device_state *d;
	int rc = wire_device_state_decode(m->body, m->len, &ws, err,
					  sizeof(err));

	if (rc != 0)
		return sb_fail(s, "%s", err);
	if (s->dom == NULL || ws.index >= hv_nr_devices(s->dom) ||
	    ws.index >= REP_MAX_DEVICES)
		return sb_fail(s, "device %" PRIu32 " does not exist here",
			       ws.index);
	d = &s->open.dev[ws.index];
	d->type = ws.type;
	d->port = ws.port;
	d->len = ws.blob_len;
	memcpy(d->blob, ws.blob, ws.blob_len);
	s->open.dev_mask |= 1u << ws.index;
	return 0;
}

static int sb_domain_info(struct rep_standby *s, const struct tp_msg *m)
{
	struct wire_domain_info di;
	struct hv_platform here, from;
	char err[WIRE_ERR_MAX], why[160];
	int rc = wire_domain_info_decode(m->body, m->len, &di, err, sizeof(err));

	if (rc != 0)
		return sb_fail(s, "%s", err);
	if (!s->full || s->dom == NULL)
		return sb_fail(s, "DOMAIN_INFO outside a session's first epoch");
	if (s->seen_domain_info)
		return sb_fail(s, "DOMAIN_INFO repeated");
	s->seen_domain_info = true;
	if (di.backend != rep_wire_backend(s->dom))
		return sb_fail(s, "the primary runs backend %s, this replica "
			       "is %s (the config files differ)",
			       di.backend == WIRE_BACKEND_XEN ? "xen" : "uvm",
			       hv_backend_name(s->dom));
	if (di.mem_bytes != hv_nr_pages(s->dom) * HV_PAGE_SIZE ||
	    di.nr_vcpus != hv_nr_vcpus(s->dom))
		return sb_fail(s, "the primary runs %" PRIu64 " MiB and %" PRIu32
			       " vCPUs, this replica has %" PRIu64 " MiB and %u"
			       " (the config files differ)", di.mem_bytes >> 20,
			       di.nr_vcpus, hv_nr_pages(s->dom) >> 8,
			       hv_nr_vcpus(s->dom));
	from = (struct hv_platform){ .guest_base = di.guest_base,
				     .xsave_features = di.xsave_features,
				     .xsave_size = di.xsave_size };
	hv_platform_info(s->dom, &here);
	if (hv_platform_compatible(&from, &here, why, sizeof(why)) != 0)
		return sb_fail(s, "%s", why);
	return 0;
}

static int sb_disk(struct rep_standby *s, const struct tp_msg *m)
{
	char err[DS_ERR_MAX];

	struct ds_write w;

	if (s->disk_rep == NULL)
		return sb_fail(s, "DISK_WRITE but this host has no disk");
	if (ds_write_decode(m->body, m->len, s->cfg.disk_bytes, &w, err,
			    sizeof(err)) != 0)
		return sb_fail(s, "epoch %" PRIu64 ": %s", m->epoch, err);
	if (w.kind == DS_KIND_BASE && !s->full)
		return sb_fail(s, "epoch %" PRIu64 ": a base copy write outside "
			       "the session's first epoch", m->epoch);
	if (ds_replica_recv(s->disk_rep, m->epoch, m->body, m->len, err,
			    sizeof(err)) != 0)
		return sb_fail(s, "epoch %" PRIu64 ": %s", m->epoch, err);
	return 0;
}

/* ---- commit -------------------------------------------------------------- */

static int sb_check_end(struct rep_standby *s, const struct rep_epoch_end *e,
			uint64_t committed)
{
	uint64_t want = (1ULL << s->cfg.hv.nr_vcpus) - 1;

	if (e->epoch != s->open_epoch)
		return sb_fail(s, "END of epoch %" PRIu64 ", open epoch %" PRIu64,
			       e->epoch, s->open_epoch);
	if (!!(e->flags & REP_END_FULL) != s->full ||
	    (!s->full && e->base != committed))
		return sb_fail(s, "epoch %" PRIu64 " builds on %" PRIu64
			       ", this replica has %" PRIu64, e->epoch, e->base,
			       committed);
	if (s->full && !s->seen_domain_info)
		return sb_fail(s, "the first epoch %" PRIu64 " has no DOMAIN_INFO",
			       e->epoch);
	if (e->records != s->rec_count || e->digest != s->rec_digest)
		return sb_fail(s, "epoch %" PRIu64 ": %" PRIu64 " records, "
			       "digest %016" PRIx64 " sent; %" PRIu64 " and %016"
			       PRIx64 " received", e->epoch, e->records,
			       e->digest, s->rec_count, s->rec_digest);
	if (s->open.vcpu_mask != want)
		return sb_fail(s, "epoch %" PRIu64 " lacks vCPU state (mask 0x%"
			       PRIx64 ")", e->epoch, s->open.vcpu_mask);
	if (s->open.dev_mask != (1u << hv_nr_devices(s->dom)) - 1)
		return sb_fail(s, "epoch %" PRIu64 " lacks device state",
			       e->epoch);
	return 0;
}

static int sb_apply(struct rep_standby *s, const struct rep_epoch_end *e)
{
	struct sb_state tmp;
	int rc = 0;

	/* Disk first: its commit can fail (EIO, ENOSPC), page copies not. */
	if (s->disk_rep != NULL)
		rc = ds_replica_commit(s->disk_rep, e->epoch);
	for (size_t i = 0; rc == 0 && i < s->st_count; i++)
		rc = sb_page_direct(s, s->st_pfn[i],
				    s->st_pages + i * HV_PAGE_SIZE);
	if (rc != 0) {
		/* Half applied: this replica is no longer any epoch. */
		pthread_mutex_lock(&s->lock);
		s->committed = 0;
		s->session = 0;
		pthread_mutex_unlock(&s->lock);
		return sb_fail(s, "applying epoch %" PRIu64 ": %s; the replica "
			       "is lost and needs a full copy", e->epoch,
			       strerror(-rc));
	}
	s->open.guest_clock_ns = e->guest_clock_ns;
	tmp = s->done;
	s->done = s->open;
	s->open = tmp;
	return 0;
}

static int sb_end(struct rep_standby *s, const struct tp_msg *m)
{
	struct rep_epoch_end e;
	struct rep_ack ack;
	char err[WIRE_ERR_MAX];
	uint8_t body[32];
	uint64_t t0 = rep_now_ns(), committed;
	int rc = rep_epoch_end_decode(m->body, m->len, &e, err, sizeof(err));

	if (rc != 0)
		return sb_fail(s, "%s", err);
	pthread_mutex_lock(&s->lock);
	committed = s->committed;
	rc = s->released ? -EPERM : 0;
	pthread_mutex_unlock(&s->lock);
	if (rc != 0)
		return sb_fail(s, "END of epoch %" PRIu64 " after the primary "
			       "released the replica", e.epoch);
	rc = sb_check_end(s, &e, committed);
	pthread_mutex_lock(&s->apply_lock);
	if (rc == 0)
		rc = sb_apply(s, &e);
	if (rc != 0) {
		pthread_mutex_unlock(&s->apply_lock);
		return rc;
	}
	pthread_mutex_lock(&s->lock);
	s->committed = e.epoch;
	s->commits++;
	s->last_apply_us = (rep_now_ns() - t0) / 1000;
	s->last_pages = e.pages;
	s->last_disk_bytes = e.disk_bytes;
	sb_set_state(s, REP_SB_REPLICATING);
	pthread_mutex_unlock(&s->lock);
	pthread_mutex_unlock(&s->apply_lock);
	if (s->full)
		log_info("replicator: standby %s: first epoch %" PRIu64
			 " committed: the VM is protected", s->vm_name, e.epoch);
	s->full = false;
	s->open_epoch = 0;
	s->rec_count = s->rec_digest = 0;
	s->st_count = 0;
	s->open.vcpu_mask = 0;
	s->open.dev_mask = 0;
	ack = (struct rep_ack){ .epoch = e.epoch,
				.apply_ns = rep_now_ns() - t0 };
	return rep_ctl_send(&s->ctl, WIRE_REC_REP_ACK, e.epoch, body,
			    rep_ack_encode(&ack, body));
}

/* ---- the receiver thread -------------------------------------------------- */

static int sb_heartbeat_in(struct rep_standby *s, const struct tp_msg *m)
{
	struct rep_heartbeat hb;
	char err[WIRE_ERR_MAX];

	if (rep_heartbeat_decode(m->body, m->len, &hb, err, sizeof(err)) != 0)
		return sb_fail(s, "%s", err);
	pthread_mutex_lock(&s->lock);
	s->peer_epoch = hb.epoch;
	if (hb.flags & REP_HB_RELEASE) {
		s->committed = 0;
		s->session = 0;
		s->released = true;
		sb_set_state(s, REP_SB_WAITING);
	}
	pthread_mutex_unlock(&s->lock);
	if (hb.flags & REP_HB_RELEASE) {
		sb_discard(s, "the primary released the replica");
		log_warn("replicator: standby %s: the primary released this "
			 "replica (unprotected, or its guest shut down): nothing "
			 "to take over from", s->vm_name);
	}
	return 0;
}

static int sb_handover(struct rep_standby *s, const struct tp_msg *m)
{
	struct rep_handover h;
	char err[WIRE_ERR_MAX];
	uint64_t committed;

	if (rep_handover_decode(m->body, m->len, &h, err, sizeof(err)) != 0)
		return sb_fail(s, "%s", err);
	pthread_mutex_lock(&s->lock);
	committed = s->committed;
	if (h.epoch == committed && h.generation == s->generation)
		s->handover = true;
	pthread_mutex_unlock(&s->lock);
	if (h.epoch != committed)
		return sb_fail(s, "HANDOVER at epoch %" PRIu64 ", committed %"
			       PRIu64, h.epoch, committed);
	log_info("replicator: standby %s: the primary hands over at epoch %"
		 PRIu64, s->vm_name, h.epoch);
	return 0;
}

static int sb_dispatch(struct rep_standby *s, const struct tp_msg *m)
{
	int rc = 0;

	switch (m->type) {
	case WIRE_REC_REP_HEARTBEAT:
		return sb_heartbeat_in(s, m);
	case WIRE_REC_REP_HANDOVER:
		return sb_handover(s, m);
	case WIRE_REC_REP_EPOCH_END:
		if (m->chan != REP_CHAN_DATA)
			return sb_fail(s, "REP_EPOCH_END on channel %u", m->chan);
		return sb_end(s, m);
	case WIRE_REC_PAGE_CODED:
	case WIRE_REC_VCPU_STATE:
	case WIRE_REC_DEVICE_STATE:
	case WIRE_REC_DOMAIN_INFO:
	case WIRE_REC_DISK_WRITE:
		rc = m->chan == REP_CHAN_DATA
			     ? sb_account(s, m)
			     : sb_fail(s, "%s on channel %u",
				       wire_record_type_name(m->type), m->chan);
		break;
	default:
		return sb_fail(s, "unexpected %s record",
			       wire_record_type_name(m->type));
	}
	if (rc != 0)
		return rc;
	switch (m->type) {
	case WIRE_REC_PAGE_CODED:
		return sb_pages(s, m);
	case WIRE_REC_VCPU_STATE:
		return sb_vcpu(s, m);
	case WIRE_REC_DEVICE_STATE:
		return sb_device(s, m);
	case WIRE_REC_DOMAIN_INFO:
		return sb_domain_info(s, m);
	default:
		return sb_disk(s, m);
	}
}

/* The link is gone: drop the open epoch; a replica whose first epoch
 * never committed is no replica. */
static void sb_link_lost(struct rep_standby *s, const char *why,
			 bool refused)
{
	bool full = s->full;
	char msg[sizeof(s->last_error)];

	snprintf(msg, sizeof(msg), "%.150s", why); /* may be s->last_error */
	sb_discard(s, msg);
	pthread_mutex_lock(&s->lock);
	if (s->link_lost_ns == 0)
		s->link_lost_ns = rep_now_ns();
	if (!refused)
		snprintf(s->last_error, sizeof(s->last_error), "link: %.150s",
			 msg);
	if (full) {
		s->committed = 0;
		s->session = 0;
	}
	if (s->state != REP_SB_PROMOTED)
		sb_set_state(s, s->committed ? REP_SB_REPLICATING
					     : REP_SB_WAITING);
	pthread_mutex_unlock(&s->lock);
	log_warn("replicator: standby %s: primary link lost (%s); last "
		 "committed epoch %" PRIu64, s->vm_name, msg, s->committed);
}

static int sb_handle(void *arg, const struct tp_msg *m)
{
	return sb_dispatch(arg, m);
}

static void *sb_rx_main(void *arg)
{
	struct rep_standby *s = arg;
	char err[TP_ERR_MAX];

	bool refused = rep_rx_loop(&s->lock, &s->link, &s->last_heard_ns,
				   sb_handle, s, err, sizeof(err));

	sb_link_lost(s, refused ? s->last_error : err, refused);
	return NULL;
}

/* ---- attach ---------------------------------------------------------------- */

int rep_link_hello(struct tp_link *link, int timeout_ms, struct rep_hello *out,
		   char *err, size_t errlen)
{
	struct tp_msg *m = NULL;
	int rc = tp_recv(link, timeout_ms, &m);

	if (rc != 0) {
		snprintf(err, errlen, "no REP_HELLO: %s", strerror(-rc));
		return rc;
	}
	if (m->type != WIRE_REC_REP_HELLO) {
		snprintf(err, errlen, "expected REP_HELLO, got %s",
			 wire_record_type_name(m->type));
		rc = -EPROTO;
	} else {
		rc = rep_hello_decode(m->body, m->len, out, err, errlen);
	}
	tp_msg_free(m);
	return rc;
}

static void sb_welcome(struct tp_link *link, const struct rep_welcome *w)
{
	uint8_t body[REP_BODY_MAX];

	(void)tp_send(link, REP_CHAN_CTL, WIRE_REC_REP_WELCOME, 0, body,
		      rep_welcome_encode(w, body));
}

void rep_link_refuse(struct tp_link *link, uint32_t status, enum rep_role role,
		     uint64_t generation, const char *reason)
{
	struct rep_welcome w = { .status = status, .role = role,
				 .generation = generation };

	snprintf(w.reason, sizeof(w.reason), "%s", reason);
	sb_welcome(link, &w);
	(void)tp_flush(link, 1000);
	tp_link_free(link);
}

/* Tear down a link whose receiver has stopped (or stop it). */
static void sb_link_reap(struct rep_standby *s)
{
	rep_link_teardown(&s->lock, &s->link, s->rx, &s->rx_running, &s->ctl);
}

/* A new session: a fresh domain and a zeroed disk for its full copy. */
static int sb_fresh_replica(struct rep_standby *s, char *err, size_t errlen)
{
	int rc;

	hv_domain_free(s->dom);
	s->dom = NULL;
	if (s->disk_rep != NULL) {
		rc = ds_replica_reset(s->disk_rep);
		if (rc != 0) {
			snprintf(err, errlen, "cannot reset disk %s: %s",
				 s->cfg.hv.disk, strerror(-rc));
			return rc;
		}
	}
	rc = hv_domain_create(&s->cfg.hv, &s->dom);
	if (rc != 0)
		snprintf(err, errlen, "cannot create the replica domain: %s",
			 strerror(-rc));
	return rc;
}

static int sb_check_hello(struct rep_standby *s, const struct rep_hello *h,
			  char *why, size_t whylen)
{
	if (strcmp(h->vm, s->vm_name) != 0)
		snprintf(why, whylen, "this standby protects VM \"%s\", not "
			 "\"%s\"", s->vm_name, h->vm);
	else if (h->role != REP_ROLE_PRIMARY)
		snprintf(why, whylen, "the peer is %s, not primary",
			 rep_role_name(h->role));
	else if (h->mem_bytes != s->cfg.hv.mem_bytes ||
		 h->vcpus != s->cfg.hv.nr_vcpus)
		snprintf(why, whylen, "the primary runs %" PRIu64 " bytes and "
			 "%u vCPUs, this host's config says %" PRIu64 " and %u",
			 h->mem_bytes, h->vcpus, s->cfg.hv.mem_bytes,
			 s->cfg.hv.nr_vcpus);
	else if (h->generation < s->generation)
		snprintf(why, whylen, "generation %" PRIu64 " is older than "
			 "the %" PRIu64 " this standby follows", h->generation,
			 s->generation);
	else if (s->committed > 0 && h->generation == s->generation &&
		 h->session != s->session && h->epoch < s->committed)
		snprintf(why, whylen, "this standby holds epoch %" PRIu64
			 " of generation %" PRIu64 " and a primary of the same "
			 "generation that has made only %" PRIu64 " epochs "
			 "(restarted afresh?) would wipe it: promote this "
			 "standby instead (tandem failover --force)",
			 s->committed, s->generation, h->epoch);
	else
		return 0;
	return -EPERM;
}

int rep_standby_attach(struct rep_standby *s, struct tp_link *link,
		       const struct rep_hello *h, char *err, size_t errlen)
{
	struct rep_welcome w = { .status = REP_WELCOME_ACCEPT,
				 .role = REP_ROLE_STANDBY };
	bool resume, lost;
	int rc = sb_check_hello(s, h, err, errlen);

	pthread_mutex_lock(&s->lock);
	lost = s->link != NULL && (s->link_lost_ns != 0 || rc == 0);
	pthread_mutex_unlock(&s->lock);
	/* A primary connects only when it has no link: the old one is dead
	 * (or half-open, not noticed yet here).  Drop it. */
	if (lost && s->state != REP_SB_PROMOTED)
		sb_link_reap(s);
	if (rc == 0 && (s->link != NULL || s->state == REP_SB_PROMOTED)) {
		snprintf(err, errlen, "a primary is already attached");
		rc = -EBUSY;
	}
	if (rc != 0) {
		rep_link_refuse(link, REP_WELCOME_REFUSED, REP_ROLE_STANDBY,
				s->generation, err);
		return rc;
	}
	pthread_mutex_lock(&s->lock);
	resume = h->session == s->session && s->committed > 0 &&
		 h->generation == s->generation;
	log_debug("replicator: standby %s: HELLO session %016" PRIx64
		  " generation %" PRIu64 "; replica session %016" PRIx64
		  " generation %" PRIu64 " committed %" PRIu64, s->vm_name,
		  h->session, h->generation, s->session, s->generation,
		  s->committed);
	pthread_mutex_unlock(&s->lock);
	if (!resume) {
		rc = sb_fresh_replica(s, err, errlen);
		if (rc != 0) {
			rep_link_refuse(link, REP_WELCOME_REFUSED,
					REP_ROLE_STANDBY, s->generation, err);
			return rc;
		}
	}
	codec_dec_free(s->dec);
	{
		struct codec_opts o;

		codec_opts_init(&o);
		o.compress = s->cfg.compress;
		s->dec = codec_dec_new(&o);
	}
	sb_discard(s, "new link");
	pthread_mutex_lock(&s->lock);
	if (!resume) {
		s->committed = 0;
		s->session = h->session;
	}
	s->generation = h->generation;
	s->full = !resume;
	s->seen_domain_info = false;
	s->link = link;
	s->link_lost_ns = 0;
	s->last_heard_ns = rep_now_ns();
	s->peer_epoch = h->epoch;
	s->drill_armed = false;
	s->handover = false;
	s->released = false;
	w.generation = s->generation;
	w.session = s->session;
	w.committed = s->committed;
	sb_set_state(s, resume ? REP_SB_REPLICATING : REP_SB_SYNCING);
	pthread_mutex_unlock(&s->lock);
	sb_welcome(link, &w);
	rep_ctl_set_link(&s->ctl, link);
	rc = -pthread_create(&s->rx, NULL, sb_rx_main, s);
	s->rx_running = rc == 0;
	log_info("replicator: standby %s: following %s (generation %" PRIu64
		 ", %s)", s->vm_name, tp_link_peer(link), h->generation,
		 resume ? "resuming the session" : "new session: full copy");
	return rc;
}

void rep_standby_heartbeat(struct rep_standby *s)
{
	uint64_t c, g;

	pthread_mutex_lock(&s->lock);
	c = s->committed;
	g = s->generation;
	pthread_mutex_unlock(&s->lock);
	rep_ctl_heartbeat(&s->ctl, REP_ROLE_STANDBY, g, c, 0);
}

int rep_standby_drill(struct rep_standby *s, enum rep_phase phase)
{
	struct rep_drill d = { .phase = phase };
	uint8_t body[16];
	int rc;

	if (phase == REP_PHASE_NONE || phase >= REP_PHASE_NR)
		return -EINVAL;
	rc = rep_ctl_send(&s->ctl, WIRE_REC_REP_DRILL, 0, body,
			  rep_drill_encode(&d, body));
	if (rc == 0) {
		pthread_mutex_lock(&s->lock);
		s->drill_armed = true;
		pthread_mutex_unlock(&s->lock);
	}
	return rc;
}

/* ---- promotion -------------------------------------------------------------- */

static int sb_load_committed(struct rep_standby *s)
{
	struct hv_platform_state ps = { .guest_clock_ns = s->done.guest_clock_ns };
	int rc = 0;

	for (unsigned i = 0; rc == 0 && i < hv_nr_vcpus(s->dom); i++)
		rc = hv_vcpu_load(s->dom, i, &s->done.vcpu[i]);
	for (unsigned i = 0; rc == 0 && i < hv_nr_devices(s->dom); i++)
		rc = hv_device_load(s->dom, i, &s->done.dev[i]);
	if (rc == 0)
		rc = hv_platform_load(s->dom, &ps);
	return rc;
}

int rep_standby_promote(struct rep_standby *s, struct hv_domain **dom,
			struct rep_promote_info *info, char *err,
			size_t errlen)
{
	uint64_t t0 = rep_now_ns();
	int rc;

	memset(info, 0, sizeof(*info));
	sb_link_reap(s);
	pthread_mutex_lock(&s->lock);
	rc = s->committed == 0 || s->dom == NULL ? -ENODATA : 0;
	info->epoch = s->committed;
	info->generation = s->generation + 1;
	pthread_mutex_unlock(&s->lock);
	if (rc != 0) {
		snprintf(err, errlen, "no epoch committed: there is no replica "
			 "to resume");
		return rc;
	}
	ds_replica_free(s->disk_rep); /* synced at each commit */
	s->disk_rep = NULL;
	rc = sb_load_committed(s);
	if (rc == 0)
		rc = hv_unpause(s->dom);
	if (rc != 0) {
		snprintf(err, errlen, "cannot resume the replica: %s",
			 strerror(-rc));
		return rc;
	}
	info->resumed_ns = rep_now_ns();
	info->build_us = (info->resumed_ns - t0) / 1000;
	*dom = s->dom;
	s->dom = NULL;
	pthread_mutex_lock(&s->lock);
	sb_set_state(s, REP_SB_PROMOTED);
	pthread_mutex_unlock(&s->lock);
	log_info("replicator: standby %s: promoted: resumed epoch %" PRIu64
		 " as generation %" PRIu64 " in %" PRIu64 " us", s->vm_name,
		 info->epoch, info->generation, info->build_us);
	return 0;
}

/* ---- lifecycle ------------------------------------------------------------------ */

int rep_standby_new(const struct rep_standby_config *cfg,
		    struct rep_standby **out, char *err, size_t errlen)
{
	struct rep_standby *s = calloc(1, sizeof(*s));
	int rc = s ? 0 : -ENOMEM;

	*out = NULL;
	if (rc != 0)
		return rc;
	s->cfg = *cfg;
	snprintf(s->vm_name, sizeof(s->vm_name), "%s", cfg->vm_name);
	s->cfg.vm_name = s->vm_name;
	s->cfg.hv.image = NULL;
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->apply_lock, NULL);
	rep_ctl_init(&s->ctl);
	s->ws = malloc(sizeof(*s->ws));
	if (!s->ws || sb_state_alloc(&s->open) ||
	    sb_state_alloc(&s->done)) {
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
	}
	if (rc == 0 && s->cfg.hv.disk != NULL)
		rc = ds_replica_open(s->cfg.hv.disk, cfg->disk_bytes, &s->disk_rep,
				     err, errlen);
	if (rc != 0) {
		rep_standby_free(s);
		return rc;
	}
	*out = s;
	return 0;
}

void rep_standby_free(struct rep_standby *s)
{
	if (s == NULL)
		return;
	sb_link_reap(s);
	hv_domain_free(s->dom);
	ds_replica_free(s->disk_rep);
	codec_dec_free(s->dec);
	sb_state_free(&s->open);
	sb_state_free(&s->done);
	free(s->st_pfn);
	free(s->st_pages);
	free(s->ws);
	rep_ctl_fini(&s->ctl);
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->apply_lock);
	free(s);
}

void rep_standby_stats(struct rep_standby *s, struct rep_standby_stats *o)
{
	uint64_t now = rep_now_ns();

	memset(o, 0, sizeof(*o));
	pthread_mutex_lock(&s->lock);
	o->state = s->state;
	o->generation = s->generation;
	o->session = s->session;
	o->committed = s->committed;
	o->commits = s->commits;
	o->last_apply_us = s->last_apply_us;
	o->last_pages = s->last_pages;
	o->last_disk_bytes = s->last_disk_bytes;
	o->peer_epoch = s->peer_epoch;
	o->peer_silent_ms = rep_ms_since(now, s->last_heard_ns);
	o->link_up = s->link != NULL && s->link_lost_ns == 0;
	o->link_lost_ms = rep_ms_since(now, s->link_lost_ns);
	o->drill_armed = s->drill_armed;
	o->handover = s->handover;
	o->released = s->released;
	o->discarded = s->discarded;
	snprintf(o->last_error, sizeof(o->last_error), "%s", s->last_error);
	pthread_mutex_unlock(&s->lock);
}

int rep_standby_inspect(struct rep_standby *s,
			int (*fn)(void *arg, struct hv_domain *dom,
				  uint64_t epoch),
			void *arg)
{
	uint64_t committed;
	int rc;

	pthread_mutex_lock(&s->apply_lock);
	pthread_mutex_lock(&s->lock);
	committed = s->committed;
	pthread_mutex_unlock(&s->lock);
	rc = committed && s->dom ? fn(arg, s->dom, committed) : -ENODATA;
	pthread_mutex_unlock(&s->apply_lock);
	return rc;
}
