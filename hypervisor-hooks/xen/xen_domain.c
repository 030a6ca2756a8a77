/*
 * xen_domain.c - the Xen backend: lifecycle, pause at the guest's suspend
 * boundary and fast resume, shutdown watch, and the ops table.
 *
 * Pause: tandem asks the guest to suspend (xenstore control/shutdown =
 * "suspend", the request Linux PVH guests answer) and waits until Xen
 * reports the domain shut down with reason SHUTDOWN_suspend: every vCPU
 * then sits in the SCHEDOP_shutdown hypercall, a point the guest chose,
 * with its frontends quiesced.  Unpause is xc_domain_resume(fast): the
 * hypercall returns 1 ("cancelled") and the guest carries on without
 * reconnecting its devices.  A checkpoint taken there is exactly what
 * Xen's own restore path expects: restored, the same hypercall returns 0
 * and the guest reconnects to the new host's backends.
 *
 * The domain is found by name; hv_domain_build creates it with
 * `xl create -p -e` from the xl config when it does not exist yet, and
 * otherwise attaches to the running domain (protecting a guest does not
 * restart it).
 */
#include "xen_int.h"
#include "log.h"
#include "clock.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <xen/sched.h>

#define XEN_SUSPEND_TIMEOUT_MS 10000
#define XEN_BOOT_WAIT_MS 300000
#define XEN_MEM_SLACK (16ULL << 20)

static const char *const xen_state_names[] = {
	[XS_REPLICA] = "replica", [XS_RUNNING] = "running",
	[XS_PAUSED] = "paused", [XS_SUSPENDED] = "suspended",
	[XS_GONE] = "gone",
};

const char *xen_state_name(enum xen_state s)
{
	return xen_state_names[s];
}

void xen_set_state(struct xen_dom *x, enum xen_state s, const char *why)
{
	pthread_mutex_lock(&x->lock);
	if (x->state != s)
		log_debug("xen: %s (domid %" PRIu32 "): %s -> %s (%s)", x->name,
			  x->domid, xen_state_name(x->state), xen_state_name(s),
			  why);
	x->state = s;
	pthread_mutex_unlock(&x->lock);
}

uint64_t xen_span_pages(uint64_t mem_bytes)
{
	const uint64_t four_g = 4ULL << 30, low_max = 3ULL << 30;
	uint64_t span = mem_bytes <= low_max ? four_g : mem_bytes + (1ULL << 30);

	return span / HV_PAGE_SIZE;
}

static void xen_sleep_us(unsigned us)
{
	struct timespec ts = { .tv_sec = us / 1000000,
			       .tv_nsec = (long)(us % 1000000) * 1000 };

	nanosleep(&ts, NULL);
}

/* ---- finding and attaching ------------------------------------------------ */

int xen_getinfo(struct xen_dom *x, xc_domaininfo_t *info)
{
	int n = xc_domain_getinfolist(x->xch, x->domid, 1, info);

	if (n < 0)
		return -errno;
	if (n != 1 || info->domain != x->domid)
		return -ESRCH;
	return 0;
}

int xen_find_by_name(struct xs_handle *xsh, const char *name,
			    uint32_t *domid)
{
	unsigned num = 0;
	char **ids = xs_directory(xsh, XBT_NULL, "/local/domain", &num);
	int rc = -ENOENT;

	for (unsigned i = 0; ids != NULL && i < num && rc != 0; i++) {
		char path[64];
		unsigned len = 0;
		char *n;

		snprintf(path, sizeof(path), "/local/domain/%s/name", ids[i]);
		n = xs_read(xsh, XBT_NULL, path, &len);
		if (n != NULL && strcmp(n, name) == 0) {
			*domid = (uint32_t)strtoul(ids[i], NULL, 10);
			rc = 0;
		}
		free(n);
	}
	free(ids);
	return rc;
}

int xen_open_handles(struct xen_dom *x)
{
	if (x->xch == NULL)
		x->xch = xc_interface_open(NULL, NULL, 0);
	if (x->xch == NULL) {
		log_error("xen: cannot open the hypervisor interface "
			  "(xc_interface_open: %s): is this a Xen dom0?",
			  strerror(errno));
		return -ENODEV;
	}
	if (x->fmem == NULL)
		x->fmem = xenforeignmemory_open(NULL, 0);
	if (x->xsh == NULL)
		x->xsh = xs_open(0);
	if (x->fmem == NULL || x->xsh == NULL) {
		log_error("xen: cannot open %s: %s",
			  x->fmem ? "xenstore" : "foreign memory",
			  strerror(errno));
		return -ENODEV;
	}
	return 0;
}

static enum xen_state xen_state_of(const xc_domaininfo_t *info)
{
	unsigned reason = (info->flags >> XEN_DOMINF_shutdownshift) &
			  XEN_DOMINF_shutdownmask;

	if (info->flags & XEN_DOMINF_dying)
		return XS_GONE;
	if (info->flags & XEN_DOMINF_shutdown)
		return reason == SHUTDOWN_suspend ? XS_SUSPENDED : XS_GONE;
	if (info->flags & XEN_DOMINF_paused)
		return XS_PAUSED;
	return XS_RUNNING;
}

int xen_attach(struct xen_dom *x, uint32_t domid)
{
	xc_domaininfo_t info;
	xen_pfn_t max_gpfn = 0;
	int rc = xen_open_handles(x);

	x->domid = domid;
	x->suspendable = false;
	if (rc == 0)
		rc = xen_getinfo(x, &info);
	if (rc != 0) {
		log_error("xen: %s: domain %" PRIu32 " is not there: %s",
			  x->name, domid, strerror(-rc));
		return rc;
	}
	if (!(info.flags & XEN_DOMINF_hvm_guest)) {
		log_error("xen: %s: domain %" PRIu32 " is a PV guest; tandem "
			  "protects PVH (and HVM) guests (docs/hv.md)", x->name,
			  domid);
		return -ENOTSUP;
	}
	if (info.max_vcpu_id + 1 != x->nr_vcpus) {
		log_error("xen: %s: domain %" PRIu32 " has %u vCPUs, the "
			  "config says %u", x->name, domid,
			  info.max_vcpu_id + 1, x->nr_vcpus);
		return -EINVAL;
	}
	/* libxl gives a domain its memory plus a little slack (1 MiB for
	 * PVH): a different vm.memory means the two configs disagree. */
	if ((uint64_t)info.max_pages * HV_PAGE_SIZE < x->cfg.mem_bytes ||
	    (uint64_t)info.max_pages * HV_PAGE_SIZE >
		    x->cfg.mem_bytes + XEN_MEM_SLACK) {
		log_error("xen: %s: domain %" PRIu32 " has %" PRIu64 " MiB, "
			  "vm.memory says %" PRIu64 " MiB: the configs disagree",
			  x->name, domid, (uint64_t)info.max_pages >> 8,
			  x->cfg.mem_bytes >> 20);
		return -EINVAL;
	}
	if (xc_domain_maximum_gpfn(x->xch, domid, &max_gpfn) < 0)
		return -errno;
	if (max_gpfn >= x->nr_pages) {
		log_error("xen: %s: guest frame %#" PRIx64 " is beyond the "
			  "%" PRIu64 " MiB this config allows: vm.memory does "
			  "not match the xl config", x->name, (uint64_t)max_gpfn,
			  x->cfg.mem_bytes >> 20);
		return -EINVAL;
	}
	rc = xen_mem_map_all(x, (uint64_t)max_gpfn + 1);
	if (rc == 0)
		xen_set_state(x, xen_state_of(&info), "attached");
	if (rc == 0)
		log_info("xen: %s: attached to domain %" PRIu32 " (%s, %" PRIu64
			 " pages present, %" PRIu64 " MiB max)", x->name, domid,
			 xen_state_name(x->state), x->nr_present,
			 (uint64_t)info.max_pages >> 8);
	return rc;
}

void xen_detach(struct xen_dom *x)
{
	xen_netbuf_free(x->nb);
	x->nb = NULL;
	xen_mem_free(x);
}

/* A domain this object made (xl create, xl restore): destroyed with the
 * object even if the attach to it fails. */
void xen_adopt(struct xen_dom *x, uint32_t domid)
{
	x->domid = domid;
	x->created = true;
}

/* `xl create -p -e` the config under our name, then attach. */
static int xen_build(struct xen_dom *x)
{
	char name_arg[96], out[2048];
	uint32_t domid;
	int rc = xen_open_handles(x);

	if (rc == 0 && xen_find_by_name(x->xsh, x->name, &domid) == 0) {
		log_info("xen: %s: domain %" PRIu32 " exists: attaching to it",
			 x->name, domid);
		return xen_attach(x, domid);
	}
	if (rc != 0)
		return rc;
	snprintf(name_arg, sizeof(name_arg), "name=\"%s\"", x->name);
	{
		char *argv[] = { "xl", "create", "-p", "-e", x->xl_config,
				 name_arg, NULL };
		uint64_t t0 = mono_ns();

		rc = xen_run(argv, out, sizeof(out));
		if (rc != 0)
			return rc;
		log_info("xen: %s: created from %s in %.1f s", x->name,
			 x->xl_config, (mono_ns() - t0) / 1e9);
	}
	if (xen_find_by_name(x->xsh, x->name, &domid) != 0) {
		log_error("xen: %s: xl created the domain but it is not in "
			  "xenstore under that name", x->name);
		return -ESRCH;
	}
	xen_adopt(x, domid);
	return xen_attach(x, domid);
}

/* ---- the xl config ------------------------------------------------------ */

/* The value of `name = "..."` in an xl config; -ENODATA when it has none,
 * -errno when it cannot be read. */
static int xen_xlcfg_name(const char *path, char *name, size_t len)
{
	FILE *f = fopen(path, "r");
	char line[512];
	int rc = -ENODATA;

	if (f == NULL) {
		rc = -errno;
		log_error("xen: xl config \"%s\": %s", path, strerror(-rc));
		return rc;
	}
	while (rc != 0 && fgets(line, sizeof(line), f) != NULL) {
		char *p = line + strspn(line, " \t"), *q;

		if (strncmp(p, "name", 4) != 0)
			continue;
		p += 4 + strspn(p + 4, " \t");
		if (*p != '=')
			continue;
		p += 1 + strspn(p + 1, " \t");
		if (*p != '"' && *p != '\'')
			continue;
		q = strchr(p + 1, *p);
		if (q == NULL || (size_t)(q - p - 1) >= len)
			continue;
		memcpy(name, p + 1, (size_t)(q - p - 1));
		name[q - p - 1] = '\0';
		rc = 0;
	}
	fclose(f);
	return rc;
}

static int xen_check_config(const struct hv_config *cfg)
{
	char name[64];
	int rc;

	if (cfg->name == NULL || cfg->name[0] == '\0' ||
	    strlen(cfg->name) >= sizeof(name)) {
		log_error("xen: a Xen guest needs a name (1..63 characters)");
		return -EINVAL;
	}
	if (cfg->xl_config == NULL || cfg->xl_config[0] == '\0') {
		log_error("xen: %s: backend \"xen\" needs the domain's xl "
			  "config (vm.xl-config)", cfg->name);
		return -EINVAL;
	}
	rc = xen_xlcfg_name(cfg->xl_config, name, sizeof(name));
	if (rc == -ENODATA) {
		log_error("xen: xl config \"%s\" has no name = \"...\" line",
			  cfg->xl_config);
		rc = -EINVAL;
	} else if (rc == 0 && strcmp(name, cfg->name) != 0) {
		log_error("xen: xl config \"%s\" names the domain \"%s\", the "
			  "tandem config \"%s\": they must agree (xl restore "
			  "keeps the xl name)", cfg->xl_config, name, cfg->name);
		rc = -EINVAL;
	}
	return rc;
}

/* ---- lifecycle ------------------------------------------------------------ */

/* The domain object's owner ends the guest with it (hv.h): a demoted
 * primary's copy must never run again.  `xl destroy` also tears down its
 * backends and xenstore entries. */
static int xen_xl_destroy(const struct xen_dom *x, bool wait)
{
	char id[16];
	char *argv[] = { "xl", "destroy", id, NULL };

	snprintf(id, sizeof(id), "%" PRIu32, x->domid);
	return wait ? xen_run(argv, NULL, 0) : xen_spawn(argv);
}

static void xen_destroy(struct xen_dom *x)
{
	if (xen_xl_destroy(x, true) == 0)
		log_info("xen: %s: domain %" PRIu32 " destroyed", x->name,
			 x->domid);
	xen_set_state(x, XS_GONE, "destroyed");
}

/* A drill's "the host dies", called just before the process kills
 * itself: the guest stops at once (paused), and an `xl destroy` left
 * running on its own removes it - waited for here, the daemon would see
 * the guest gone and release the standby's replica as after a shutdown.
 * Whatever the plug qdisc holds is never released. */
static void xen_kill(struct hv_domain *dom)
{
	struct xen_dom *x = xen_of(dom);

	if (x->state == XS_REPLICA || x->state == XS_GONE || x->xch == NULL)
		return;
	xc_domain_pause(x->xch, x->domid);
	if (xen_xl_destroy(x, false) == 0)
		log_warn("xen: %s: domain %" PRIu32 " paused; xl destroy runs "
			 "on after this process", x->name, x->domid);
}

static void xen_free(struct hv_domain *dom)
{
	struct xen_dom *x = xen_of(dom);

	/* Stopped hard, then destroyed, and only then the gate removed: a
	 * guest still running would otherwise send its held output. */
	if (x->xch != NULL && x->state != XS_GONE &&
	    (x->state != XS_REPLICA || x->created)) {
		xc_domain_pause(x->xch, x->domid);
		xen_destroy(x);
	}
	xen_detach(x);
	if (x->xsh != NULL)
		xs_close(x->xsh);
	if (x->fmem != NULL)
		xenforeignmemory_close(x->fmem);
	if (x->xch != NULL)
		xc_interface_close(x->xch);
	pthread_mutex_destroy(&x->lock);
	pthread_mutex_destroy(&x->op_lock);
	pthread_mutex_destroy(&x->gate_lock);
	free(x->vcpu);
	free(x->dev);
	free(x);
}

static int xen_create(const struct hv_config *cfg, bool load_image,
		      struct hv_domain **out)
{
	struct xen_dom *x;
	int rc = xen_check_config(cfg);

	if (rc != 0)
		return rc;
	if (cfg->nr_vcpus > HV_MAX_VCPUS) {
		log_error("xen: %s: %u vCPUs, at most %u", cfg->name,
			  cfg->nr_vcpus, HV_MAX_VCPUS);
		return -EINVAL;
	}
	x = calloc(1, sizeof(*x));
	if (x == NULL)
		return -ENOMEM;
	x->base.ops = &hv_xen_ops;
	pthread_mutex_init(&x->lock, NULL);
	pthread_mutex_init(&x->op_lock, NULL);
	pthread_mutex_init(&x->gate_lock, NULL);
	snprintf(x->name, sizeof(x->name), "%s", cfg->name);
	snprintf(x->xl_config, sizeof(x->xl_config), "%s", cfg->xl_config);
	x->cfg = (struct hv_config){ .backend = "xen", .name = x->name,
				     .xl_config = x->xl_config,
				     .mem_bytes = cfg->mem_bytes ? cfg->mem_bytes
								 : 256ULL << 20,
				     .nr_vcpus = cfg->nr_vcpus ? cfg->nr_vcpus : 1,
				     .console_fd = -1,
				     .dirty = HV_DIRTY_XEN };
	x->nr_vcpus = x->cfg.nr_vcpus;
	x->nr_pages = xen_span_pages(x->cfg.mem_bytes);
	x->vcpu = calloc(HV_MAX_VCPUS, sizeof(*x->vcpu));
	x->dev = calloc(XEN_NR_DEVS, sizeof(*x->dev));
	rc = x->vcpu && x->dev ? 0 : -ENOMEM;
	if (rc == 0 && load_image)
		rc = xen_build(x);
	else if (rc == 0) {
		x->state = XS_REPLICA;
		rc = xen_mem_replica(x);
	}
	if (rc != 0) {
		xen_free(&x->base);
		return rc;
	}
	*out = &x->base;
	return 0;
}

static const struct hv_config *xen_config(const struct hv_domain *dom)
{
	return &xen_ofc(dom)->cfg;
}

/* ---- pause and resume ------------------------------------------------------ */

static int xen_write_control(struct xen_dom *x, const char *what)
{
	char path[64];

	snprintf(path, sizeof(path), "/local/domain/%" PRIu32
		 "/control/shutdown", x->domid);
	if (!xs_write(x->xsh, XBT_NULL, path, what, strlen(what)))
		return -errno;
	return 0;
}

/* Wait for Xen to report the suspend; -ETIMEDOUT, or -ESRCH when the
 * domain went away otherwise. */
static int xen_wait_suspended(struct xen_dom *x, unsigned timeout_ms)
{
	uint64_t deadline = mono_ns() + (uint64_t)timeout_ms * 1000000;
	unsigned step = 50;

	for (;;) {
		xc_domaininfo_t info;
		int rc = xen_getinfo(x, &info);
		enum xen_state s = rc == 0 ? xen_state_of(&info) : XS_GONE;

		if (s == XS_SUSPENDED)
			return 0;
		if (s == XS_GONE)
			return -ESRCH;
		if (mono_ns() > deadline)
			return -ETIMEDOUT;
		xen_sleep_us(step);
		if (step < 2000)
			step *= 2;
	}
}

/* The guest did not answer: take the request back, unless it suspended
 * just now after all. */
static int xen_suspend_cancel(struct xen_dom *x)
{
	xen_write_control(x, "");
	return xen_wait_suspended(x, 200) == 0 ? 0 : -ETIMEDOUT;
}

/* A guest can suspend once its PV drivers watch control/shutdown; Linux
 * announces that with control/feature-suspend.  A guest still booting is
 * waited for, up to XEN_BOOT_WAIT_MS. */
static int xen_wait_suspendable(struct xen_dom *x)
{
	uint64_t deadline = mono_ns() + (uint64_t)XEN_BOOT_WAIT_MS * 1000000;
	char path[80];
	bool said = false;

	snprintf(path, sizeof(path), "/local/domain/%" PRIu32
		 "/control/feature-suspend", x->domid);
	while (!x->suspendable) {
		unsigned len = 0;
		char *v = xs_read(x->xsh, XBT_NULL, path, &len);

		x->suspendable = v != NULL && strcmp(v, "1") == 0;
		free(v);
		if (x->suspendable)
			break;
		if (mono_ns() > deadline) {
			log_error("xen: %s: the guest never announced "
				  "control/feature-suspend (in %u s): it cannot "
				  "be checkpointed without Xen PV drivers",
				  x->name, XEN_BOOT_WAIT_MS / 1000);
			return -ETIMEDOUT;
		}
		if (!said)
			log_info("xen: %s: waiting for the guest's PV drivers "
				 "(control/feature-suspend)", x->name);
		said = true;
		xen_sleep_us(100000);
	}
	return 0;
}

static int xen_suspend(struct xen_dom *x, struct hv_pause_info *info)
{
	uint64_t t0;
	int rc = xen_wait_suspendable(x);

	if (rc != 0)
		return rc;
	t0 = mono_ns();
	rc = xen_write_control(x, "suspend");

	if (rc == 0)
		rc = xen_wait_suspended(x, XEN_SUSPEND_TIMEOUT_MS);
	if (rc == -ETIMEDOUT)
		rc = xen_suspend_cancel(x);
	if (rc == -ETIMEDOUT)
		log_error("xen: %s: the guest did not suspend within %u ms of "
			  "the request (control/shutdown): does it run Xen PV "
			  "drivers (xenbus)?", x->name, XEN_SUSPEND_TIMEOUT_MS);
	if (rc == -ESRCH) {
		xen_set_state(x, XS_GONE, "shut down while suspending");
		log_error("xen: %s: the domain shut down instead of suspending",
			  x->name);
	}
	if (rc != 0)
		return rc;
	x->suspends++;
	xen_set_state(x, XS_SUSPENDED, "suspend request");
	info->reach_ns = mono_ns() - t0;
	info->nr_vcpus = x->nr_vcpus;
	info->at_boundary = x->nr_vcpus;
	info->preempted = 0;
	return 0;
}

static int xen_pause_locked(struct xen_dom *x, struct hv_pause_info *info)
{
	memset(info, 0, sizeof(*info));
	switch (x->state) {
	case XS_RUNNING:
		return xen_suspend(x, info);
	case XS_GONE:
		return -ESRCH;
	default:
		info->nr_vcpus = x->nr_vcpus;
		return 0; /* already still */
	}
}

/* Pause and unpause come from more than one thread (the engine, and a
 * switchover giving up): one at a time, each seeing the other's state. */
static int xen_pause(struct hv_domain *dom, struct hv_pause_info *info)
{
	struct xen_dom *x = xen_of(dom);
	int rc;

	pthread_mutex_lock(&x->op_lock);
	rc = xen_pause_locked(x, info);
	pthread_mutex_unlock(&x->op_lock);
	return rc;
}

static int xen_resume(struct xen_dom *x)
{
	if (xc_domain_resume(x->xch, x->domid, 1) != 0) {
		int rc = -errno;

		log_error("xen: %s: resume (fast, suspend cancelled) of "
			  "domain %" PRIu32 " failed: %s", x->name, x->domid,
			  strerror(-rc));
		return rc;
	}
	/* xenstored keeps the domain marked shut down until told. */
	xs_resume_domain(x->xsh, x->domid);
	xen_set_state(x, XS_RUNNING, "resumed");
	return 0;
}

static int xen_unpause_locked(struct xen_dom *x)
{
	switch (x->state) {
	case XS_SUSPENDED:
		return xen_resume(x);
	case XS_PAUSED:
		if (xc_domain_unpause(x->xch, x->domid) != 0)
			return -errno;
		xen_set_state(x, XS_RUNNING, "unpaused");
		return 0;
	case XS_REPLICA:
		return xen_promote(x);
	case XS_GONE:
		return -ESRCH;
	case XS_RUNNING:
		break;
	}
	return 0;
}

static int xen_unpause(struct hv_domain *dom)
{
	struct xen_dom *x = xen_of(dom);
	int rc;

	pthread_mutex_lock(&x->op_lock);
	rc = xen_unpause_locked(x);
	pthread_mutex_unlock(&x->op_lock);
	return rc;
}

static bool xen_is_paused(const struct hv_domain *dom)
{
	enum xen_state s = xen_ofc(dom)->state;

	return s == XS_PAUSED || s == XS_SUSPENDED || s == XS_REPLICA;
}

static void xen_shutdown_info(const xc_domaininfo_t *info, int rc,
			      struct hv_shutdown_info *out)
{
	unsigned reason;

	if (rc != 0 || (info->flags & XEN_DOMINF_dying)) {
		out->reason = HV_SHUTDOWN_DESTROYED;
		snprintf(out->detail, sizeof(out->detail), "domain destroyed");
		return;
	}
	reason = (info->flags >> XEN_DOMINF_shutdownshift) &
		 XEN_DOMINF_shutdownmask;
	out->reason = reason == SHUTDOWN_crash ? HV_SHUTDOWN_CRASH
					       : HV_SHUTDOWN_POWEROFF;
	out->code = reason;
	snprintf(out->detail, sizeof(out->detail), "guest shut down (%s)",
		 reason == SHUTDOWN_crash ? "crash" :
		 reason == SHUTDOWN_reboot ? "reboot" :
		 reason == SHUTDOWN_poweroff ? "poweroff" : "other");
}

static int xen_wait_shutdown(struct hv_domain *dom, int timeout_ms,
			     struct hv_shutdown_info *info)
{
	struct xen_dom *x = xen_of(dom);
	uint64_t wait_ns = (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms) * 1000000;
	uint64_t deadline = mono_ns() + wait_ns;

	memset(info, 0, sizeof(*info));
	for (;;) {
		xc_domaininfo_t di;
		int rc = x->state == XS_REPLICA ? 0 : xen_getinfo(x, &di);

		if (rc != 0 && rc != -ESRCH)
			return rc; /* a failed hypercall is not a dead guest */
		if (x->state != XS_REPLICA &&
		    (rc != 0 || xen_state_of(&di) == XS_GONE)) {
			xen_shutdown_info(&di, rc, info);
			xen_set_state(x, XS_GONE, info->detail);
			return 0;
		}
		if (timeout_ms >= 0 && mono_ns() >= deadline)
			return -ETIMEDOUT;
		xen_sleep_us(100000);
	}
}

/* ---- what Xen does not offer tandem -------------------------------------- */

static int xen_dirty_trim(struct hv_domain *dom)
{
	(void)dom;
	return 0; /* Xen's log-dirty has no per-round state to shed */
}

static enum hv_dirty_mech xen_dirty_mech(const struct hv_domain *dom)
{
	(void)dom;
	return HV_DIRTY_XEN;
}

static int xen_vcpu_stats(struct hv_domain *dom, unsigned vcpu,
			  struct hv_vcpu_stats *st)
{
	const struct xen_dom *x = xen_of(dom);

	if (vcpu >= x->nr_vcpus)
		return -EINVAL;
	st->hypercalls = x->suspends;
	st->preemptions = 0;
	return 0;
}

static int xen_platform_info(const struct hv_domain *dom,
			     struct hv_platform *out)
{
	(void)dom;
	memset(out, 0, sizeof(*out)); /* no host-specific layout in the stream */
	return 0;
}

static int xen_gate_watch(struct hv_domain *dom, hv_gate_watch_fn fn,
			  void *arg)
{
	(void)arg;
	if (fn == NULL)
		return 0;
	log_info("xen: %s: no gate watch: the plug qdisc holds packets in "
		 "the kernel without telling tandem", xen_of(dom)->name);
	return -ENOTSUP;
}

static int xen_disk_tap(struct hv_domain *dom, hv_disk_tap_fn fn, void *arg)
{
	(void)arg;
	if (fn == NULL)
		return 0;
	log_error("xen: %s: no disk tap: a Xen guest's disk is served by "
		  "blkback, not by tandem (docs/hv.md)", xen_of(dom)->name);
	return -ENODEV;
}

static int xen_evtchn_hook(struct hv_domain *dom, hv_evtchn_hook_fn fn,
			   void *arg)
{
	(void)arg;
	if (fn == NULL)
		return 0;
	log_info("xen: %s: no event-channel hook: a guest's notifications "
		 "go to dom0's backends, not through tandem (docs/hv.md)",
		 xen_of(dom)->name);
	return -ENOTSUP;
}

static int xen_evtchn_send(struct hv_domain *dom, uint32_t port)
{
	log_error("xen: %s: sending on event channel %" PRIu32 " is not "
		  "built for Xen", xen_of(dom)->name, port);
	return -ENOTSUP;
}

const struct hv_ops hv_xen_ops = {
	.name = "xen",
	.create = xen_create,
	.free = xen_free,
	.kill = xen_kill,
	.config = xen_config,
	.pause = xen_pause,
	.unpause = xen_unpause,
	.is_paused = xen_is_paused,
	.wait_shutdown = xen_wait_shutdown,
	.nr_pages = xen_nr_pages,
	.map = xen_map,
	.unmap = xen_unmap,
	.populated = xen_populated,
	.dirty_enable = xen_dirty_enable,
	.dirty_disable = xen_dirty_disable,
	.dirty_fetch = xen_dirty_fetch,
	.dirty_trim = xen_dirty_trim,
	.dirty_mech = xen_dirty_mech,
	.nr_vcpus = xen_nr_vcpus,
	.vcpu_save = xen_vcpu_save,
	.vcpu_load = xen_vcpu_load,
	.vcpu_stats = xen_vcpu_stats,
	.nr_devices = xen_nr_devices,
	.device_save = xen_device_save,
	.device_load = xen_device_load,
	.platform_save = xen_platform_save,
	.platform_load = xen_platform_load,
	.platform_info = xen_platform_info,
	.gate_hold = xen_gate_hold,
	.gate_next_epoch = xen_gate_next_epoch,
	.gate_release = xen_gate_release,
	.gate_watch = xen_gate_watch,
	.disk_tap = xen_disk_tap,
	.evtchn_hook = xen_evtchn_hook,
	.evtchn_send = xen_evtchn_send,
};
