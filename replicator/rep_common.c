/*
 * rep_common.c - helpers the engine, the replica and snapshots share.
 */
#include "clock.h"
#include "rep_int.h"
#include "rep_proto.h"
#include "transport.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

uint64_t rep_now_ns(void)
{
	return mono_ns();
}

uint64_t rep_ms_since(uint64_t now, uint64_t then)
{
	return then != 0 && now > then ? (now - then) / 1000000 : 0;
}

uint32_t rep_wire_backend(const struct hv_domain *dom)
{
	return strcmp(hv_backend_name(dom), "xen") == 0 ? WIRE_BACKEND_XEN
							: WIRE_BACKEND_UVM;
}

void rep_vcpu_to_wire(const struct hv_vcpu_state *hs, unsigned id,
		      struct wire_vcpu_state *ws)
{
	ws->vcpu_id = id;
	memcpy(ws->gpr, hs->gpr, sizeof(ws->gpr));
	ws->rip = hs->rip;
	ws->rflags = hs->rflags;
	ws->fs_base = hs->fs_base;
	ws->gs_base = hs->gs_base;
	ws->xfeatures = hs->xfeatures;
	ws->timer_deadline_ns = hs->timer_deadline_ns;
	ws->xsave_len = hs->xsave_len;
	memcpy(ws->xsave, hs->xsave, hs->xsave_len);
}

void rep_vcpu_from_wire(const struct wire_vcpu_state *ws,
			struct hv_vcpu_state *hs)
{
	memset(hs, 0, sizeof(*hs));
	memcpy(hs->gpr, ws->gpr, sizeof(hs->gpr));
	hs->rip = ws->rip;
	hs->rflags = ws->rflags;
	hs->fs_base = ws->fs_base;
	hs->gs_base = ws->gs_base;
	hs->xfeatures = ws->xfeatures;
	hs->timer_deadline_ns = ws->timer_deadline_ns;
	hs->xsave_len = ws->xsave_len;
	memcpy(hs->xsave, ws->xsave, ws->xsave_len);
}

void rep_record_body(const struct wire_buf *buf, const uint8_t **body,
		     size_t *len)
{
	const uint8_t *h = buf->data;

	*len = (size_t)h[16] << 24 | (size_t)h[17] << 16 |
	       (size_t)h[18] << 8 | h[19];
	*body = h + WIRE_RECORD_HEADER_SIZE;
}

void rep_ctl_init(struct rep_ctl *c)
{
	pthread_mutex_init(&c->lock, NULL);
	c->link = NULL;
	c->stamp = 0;
}

void rep_ctl_fini(struct rep_ctl *c)
{
	pthread_mutex_destroy(&c->lock);
}

void rep_ctl_set_link(struct rep_ctl *c, struct tp_link *link)
{
	pthread_mutex_lock(&c->lock);
	c->link = link;
	c->stamp = 0;
	pthread_mutex_unlock(&c->lock);
}

int rep_ctl_send(struct rep_ctl *c, uint32_t type, uint64_t epoch,
		 const void *body, size_t len)
{
	int rc = -ENOTCONN;

	pthread_mutex_lock(&c->lock);
	if (epoch > c->stamp)
		c->stamp = epoch;
	if (c->link != NULL)
		rc = tp_send(c->link, REP_CHAN_CTL, type, c->stamp, body, len);
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int rep_ctl_flush(struct rep_ctl *c, int timeout_ms)
{
	int rc = -ENOTCONN;

	pthread_mutex_lock(&c->lock);
	if (c->link != NULL)
		rc = tp_flush(c->link, timeout_ms);
	pthread_mutex_unlock(&c->lock);
	return rc;
}

void rep_ctl_heartbeat(struct rep_ctl *c, enum rep_role role,
		       uint64_t generation, uint64_t epoch, uint32_t flags)
{
	struct rep_heartbeat hb = { .generation = generation, .epoch = epoch,
				    .sent_ns = rep_now_ns(), .role = role,
				    .flags = flags };
	uint8_t body[64];
	size_t n = rep_heartbeat_encode(&hb, body);

	(void)rep_ctl_send(c, WIRE_REC_REP_HEARTBEAT, 0, body, n);
}

bool rep_link_teardown(pthread_mutex_t *lock, struct tp_link **linkp,
		       pthread_t rx, bool *rx_running, struct rep_ctl *ctl)
{
	struct tp_link *link;

	pthread_mutex_lock(lock);
	link = *linkp;
	pthread_mutex_unlock(lock);
	if (link == NULL)
		return false;
	tp_link_abort(link);
	if (*rx_running)
		pthread_join(rx, NULL);
	*rx_running = false;
	rep_ctl_set_link(ctl, NULL);
	/* Unpublished before it is freed: another thread that aborts the
	 * link under the lock (the primary's free) must never reach it
	 * freed. */
	pthread_mutex_lock(lock);
	*linkp = NULL;
	pthread_mutex_unlock(lock);
	tp_link_free(link);
	return true;
}

bool rep_rx_loop(pthread_mutex_t *lock, struct tp_link **linkp,
		 uint64_t *last_heard,
		 int (*handle)(void *arg, const struct tp_msg *m), void *arg,
		 char *err, size_t errlen)
{
	struct tp_link *link;

	pthread_mutex_lock(lock);
	link = *linkp;
	pthread_mutex_unlock(lock);
	for (;;) {
		struct tp_msg *m;
		int rc = tp_recv(link, -1, &m);

		if (rc != 0) {
			if (tp_link_error(link, err, errlen) == 0)
				snprintf(err, errlen, "%s", strerror(-rc));
			return false;
		}
		pthread_mutex_lock(lock);
		*last_heard = rep_now_ns();
		pthread_mutex_unlock(lock);
		rc = handle(arg, m);
		tp_msg_free(m);
		if (rc != 0) {
			snprintf(err, errlen, "bad record stream");
			tp_link_abort(link);
			return true;
		}
	}
}
