/*
 * xen_netbuf.c - the output gate of a Xen guest: its network output held
 * per epoch by the kernel's plug qdisc, as Remus did.
 *
 * What the guest transmits arrives in dom0 as ingress on its vif.  For
 * each vif, tandem creates an ifb device, redirects the vif's ingress to
 * it (tc: ingress qdisc, matchall filter, mirred egress redirect) and
 * puts a plug qdisc at the ifb's root.  The plug holds every packet until
 * told; a BUFFER command closes the current epoch (a marker in the
 * queue), RELEASE_ONE lets out the packets before the oldest marker,
 * RELEASE_INDEFINITE opens the gate.  The set-up runs `ip` and `tc` once;
 * the per-epoch commands go over rtnetlink with libnl-route.
 *
 * The plug remembers one closed epoch only.  When a second epoch closes
 * before the first is released (pipelined checkpoints), no marker is
 * added: its packets stay with the open epoch and are released at the
 * next marker's commit - later than needed, never earlier.
 */
#include "xen_int.h"
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netlink/netlink.h>
#include <netlink/route/qdisc.h>
#include <netlink/route/qdisc/plug.h>
#include <netlink/route/tc.h>

#define NB_MAX_VIFS 4
#define NB_LIMIT_BYTES (16 << 20)

struct nb_vif {
	char vif[IF_NAMESIZE];
	char ifb[IF_NAMESIZE];
	struct rtnl_qdisc *plug;
};

struct xen_netbuf {
	uint32_t domid;
	struct nl_sock *sk;
	struct nb_vif v[NB_MAX_VIFS];
	unsigned nr;
	bool holding;
	uint64_t marker;   /* epoch of the unreleased plug marker, or 0 */
};

enum nb_op { NB_BUFFER, NB_RELEASE_ONE, NB_RELEASE_ALL };

static const char *const nb_op_names[] = { "buffer", "release one",
					   "release all" };

/* ---- set-up ------------------------------------------------------------- */

/* Run a NULL-terminated command; quiet: a clean-up of what may not be
 * there, its failure not logged. */
static int nb_run(bool quiet, ...)
{
	char *argv[16], out[512];
	unsigned n = 0;
	va_list ap;

	va_start(ap, quiet);
	while (n + 1 < sizeof(argv) / sizeof(argv[0]) &&
	       (argv[n] = va_arg(ap, char *)) != NULL)
		n++;
	va_end(ap);
	argv[n] = NULL;
	return xen_run_ex(argv, out, sizeof(out), quiet);
}

static int nb_plug_add(struct xen_netbuf *nb, struct nb_vif *v)
{
	int idx = (int)if_nametoindex(v->ifb);
	int rc;

	v->plug = rtnl_qdisc_alloc();
	if (v->plug == NULL || idx == 0)
		return v->plug ? -ENODEV : -ENOMEM;
	rtnl_tc_set_ifindex(TC_CAST(v->plug), idx);
	rtnl_tc_set_parent(TC_CAST(v->plug), TC_H_ROOT);
	rtnl_tc_set_handle(TC_CAST(v->plug), TC_HANDLE(1, 0));
	rc = rtnl_tc_set_kind(TC_CAST(v->plug), "plug");
	if (rc == 0)
		rc = rtnl_qdisc_plug_set_limit(v->plug, NB_LIMIT_BYTES);
	if (rc == 0)
		rc = rtnl_qdisc_add(nb->sk, v->plug, NLM_F_CREATE | NLM_F_EXCL);
	if (rc < 0) {
		log_error("xen: plug qdisc on %s: %s", v->ifb, nl_geterror(rc));
		return -EIO;
	}
	return 0;
}

static int nb_vif_up(struct xen_netbuf *nb, struct nb_vif *v)
{
	int rc;

	nb_run(true, "ip", "link", "del", v->ifb, NULL);
	nb_run(true, "tc", "qdisc", "del", "dev", v->vif, "ingress", NULL);
	rc = nb_run(false, "ip", "link", "add", "name", v->ifb, "type", "ifb",
		    NULL);
	if (rc == 0)
		rc = nb_run(false, "ip", "link", "set", v->ifb, "up", NULL);
	if (rc == 0)
		rc = nb_plug_add(nb, v);
	if (rc == 0)
		rc = nb_run(false, "tc", "qdisc", "add", "dev", v->vif,
			    "ingress", NULL);
	if (rc == 0)
		rc = nb_run(false, "tc", "filter", "add", "dev", v->vif,
			    "parent", "ffff:", "matchall", "action", "mirred",
			    "egress", "redirect", "dev", v->ifb, NULL);
	return rc;
}

/* The vifs of the domain, from its backend directory in xenstore. */
static void nb_find_vifs(struct xen_dom *x, struct xen_netbuf *nb)
{
	char path[96];
	unsigned num = 0;
	char **ids;

	snprintf(path, sizeof(path), "/local/domain/0/backend/vif/%" PRIu32,
		 x->domid);
	ids = xs_directory(x->xsh, XBT_NULL, path, &num);
	for (unsigned i = 0; ids != NULL && i < num && nb->nr < NB_MAX_VIFS;
	     i++) {
		struct nb_vif *v = &nb->v[nb->nr];
		char vp[160];
		unsigned len = 0;
		char *name;

		snprintf(vp, sizeof(vp), "%s/%s/vifname", path, ids[i]);
		name = xs_read(x->xsh, XBT_NULL, vp, &len);
		if (name != NULL)
			snprintf(v->vif, sizeof(v->vif), "%s", name);
		else
			snprintf(v->vif, sizeof(v->vif), "vif%" PRIu32 ".%s",
				 x->domid, ids[i]);
		free(name);
		snprintf(v->ifb, sizeof(v->ifb), "tdb%" PRIu32 ".%s", x->domid,
			 ids[i]);
		nb->nr++;
	}
	free(ids);
}

int xen_netbuf_new(struct xen_dom *x, struct xen_netbuf **out)
{
	struct xen_netbuf *nb = calloc(1, sizeof(*nb));
	int rc = nb ? 0 : -ENOMEM;

	if (rc == 0) {
		nb->domid = x->domid;
		nb->sk = nl_socket_alloc();
		rc = nb->sk && nl_connect(nb->sk, NETLINK_ROUTE) == 0 ? 0 : -EIO;
	}
	if (rc == 0)
		nb_find_vifs(x, nb);
	for (unsigned i = 0; rc == 0 && i < nb->nr; i++)
		rc = nb_vif_up(nb, &nb->v[i]);
	if (rc != 0) {
		log_error("xen: %s: cannot hold the guest's network output: %s",
			  x->name, strerror(-rc));
		xen_netbuf_free(nb);
		return rc;
	}
	if (nb->nr == 0)
		log_info("xen: %s: domain %" PRIu32 " has no vif: no network "
			 "output to hold", x->name, x->domid);
	for (unsigned i = 0; i < nb->nr; i++)
		log_info("xen: %s: output of %s held on %s (plug qdisc)",
			 x->name, nb->v[i].vif, nb->v[i].ifb);
	*out = nb;
	return 0;
}

void xen_netbuf_free(struct xen_netbuf *nb)
{
	if (nb == NULL)
		return;
	for (unsigned i = 0; i < nb->nr; i++) {
		struct nb_vif *v = &nb->v[i];

		/* the ifb first: what its plug holds is dropped, never sent */
		nb_run(true, "ip", "link", "del", v->ifb, NULL);
		nb_run(true, "tc", "qdisc", "del", "dev", v->vif, "ingress", NULL);
		if (v->plug != NULL)
			rtnl_qdisc_put(v->plug);
	}
	nl_socket_free(nb->sk);
	free(nb);
}

/* ---- per epoch ---------------------------------------------------------- */

static int nb_op(struct xen_netbuf *nb, enum nb_op op)
{
	int rc = 0;

	for (unsigned i = 0; i < nb->nr; i++) {
		struct rtnl_qdisc *q = nb->v[i].plug;
		int r = op == NB_BUFFER ? rtnl_qdisc_plug_buffer(q) :
			op == NB_RELEASE_ONE ? rtnl_qdisc_plug_release_one(q) :
			rtnl_qdisc_plug_release_indefinite(q);

		if (r == 0)
			r = rtnl_qdisc_add(nb->sk, q, NLM_F_REQUEST);
		if (r < 0) {
			log_error("xen: plug %s on %s: %s", nb_op_names[op],
				  nb->v[i].ifb, nl_geterror(r));
			rc = -EIO;
		}
	}
	return rc;
}

static int nb_ensure(struct xen_dom *x)
{
	if (x->nb != NULL && x->nb->domid != x->domid) {
		xen_netbuf_free(x->nb); /* a restored domain has new vifs */
		x->nb = NULL;
	}
	return x->nb ? 0 : xen_netbuf_new(x, &x->nb);
}

static int gate_hold(struct hv_domain *dom, bool hold)
{
	struct xen_dom *x = xen_of(dom);
	struct xen_netbuf *nb;
	int rc = 0;

	if (x->state == XS_REPLICA)
		return hold ? -ESRCH : 0;
	if (!hold) {
		if (x->nb != NULL && x->nb->holding)
			rc = nb_op(x->nb, NB_RELEASE_ALL);
		if (x->nb != NULL) {
			x->nb->holding = false;
			x->nb->marker = 0;
		}
		return rc;
	}
	bool fresh = x->nb == NULL || x->nb->domid != x->domid;

	rc = nb_ensure(x);
	if (rc != 0)
		return rc;
	nb = x->nb;
	if (nb->holding)
		return 0;
	/* A fresh plug holds from its creation; an opened one is closed
	 * again, what it counted before let go. */
	if (!fresh)
		rc = nb_op(nb, NB_BUFFER);
	if (!fresh && rc == 0)
		rc = nb_op(nb, NB_RELEASE_ONE);
	nb->holding = rc == 0;
	nb->marker = 0;
	return rc;
}

static uint64_t gate_next_epoch(struct hv_domain *dom)
{
	struct xen_dom *x = xen_of(dom);
	struct xen_netbuf *nb = x->nb;
	uint64_t e = ++x->gate_epoch;

	if (nb != NULL && nb->holding && nb->marker == 0 &&
	    nb_op(nb, NB_BUFFER) == 0)
		nb->marker = e;
	return e;
}

static int gate_release(struct hv_domain *dom, uint64_t epoch)
{
	struct xen_netbuf *nb = xen_of(dom)->nb;
	int rc;

	if (nb == NULL || !nb->holding || nb->marker == 0 ||
	    epoch < nb->marker)
		return 0;
	rc = nb_op(nb, NB_RELEASE_ONE);
	nb->marker = 0;
	return rc;
}

/* The engine thread closes epochs, the link's receive thread releases
 * them: one plug command at a time (the plug counts one closed epoch, and
 * the commands share one netlink socket). */
int xen_gate_hold(struct hv_domain *dom, bool hold)
{
	struct xen_dom *x = xen_of(dom);
	int rc;

	pthread_mutex_lock(&x->gate_lock);
	rc = gate_hold(dom, hold);
	pthread_mutex_unlock(&x->gate_lock);
	return rc;
}

uint64_t xen_gate_next_epoch(struct hv_domain *dom)
{
	struct xen_dom *x = xen_of(dom);
	uint64_t e;

	pthread_mutex_lock(&x->gate_lock);
	e = gate_next_epoch(dom);
	pthread_mutex_unlock(&x->gate_lock);
	return e;
}

int xen_gate_release(struct hv_domain *dom, uint64_t epoch)
{
	struct xen_dom *x = xen_of(dom);
	int rc;

	pthread_mutex_lock(&x->gate_lock);
	rc = gate_release(dom, epoch);
	pthread_mutex_unlock(&x->gate_lock);
	return rc;
}
