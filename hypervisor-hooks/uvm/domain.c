/*
 * domain.c - the uvm backend's hv operations: create/build a domain, and
 * the state, memory and event-channel calls on it.
 *
 * Build order: map the arena, prepare dirty tracking and the console,
 * write the shared-info and start-info pages, load the image, start the
 * vCPU threads and wait until each sits parked at its first entry, then
 * load each vCPU's initial registers.  The domain is returned paused.
 * A created (not built) domain is the same minus the pages and registers:
 * a restore fills those in before the first unpause.
 */
#include "uvm.h"
#include "dev.h"
#include "dirty.h"
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define UVM_DEFAULT_MEM (256ULL << 20)
#define UVM_DEFAULT_PAUSE_BOUND_US 1000
#define UVM_INITIAL_RFLAGS 0x202ULL

static void uvm_free(struct hv_domain *hd);

static int uvm_config(struct uvm_domain *dom, const struct hv_config *cfg)
{
	dom->cfg = *cfg;
	if (dom->cfg.mem_bytes == 0)
		dom->cfg.mem_bytes = UVM_DEFAULT_MEM;
	if (dom->cfg.nr_vcpus == 0)
		dom->cfg.nr_vcpus = 1;
	if (dom->cfg.pause_bound_us == 0)
		dom->cfg.pause_bound_us = UVM_DEFAULT_PAUSE_BOUND_US;
	if (dom->cfg.nr_vcpus > UVM_MAX_VCPUS) {
		log_error("uvm: %u vCPUs requested; at most %d", dom->cfg.nr_vcpus,
			  UVM_MAX_VCPUS);
		return -EINVAL;
	}
	if (cfg->cmdline != NULL && strlen(cfg->cmdline) >= UVM_CMDLINE_MAX) {
		log_error("uvm: guest command line of %zu bytes is longer than %d",
			  strlen(cfg->cmdline), UVM_CMDLINE_MAX - 1);
		return -EINVAL;
	}
	dom->image = cfg->image ? strdup(cfg->image) : NULL;
	dom->cmdline = strdup(cfg->cmdline ? cfg->cmdline : "");
	dom->cfg.image = dom->image;
	dom->cfg.cmdline = dom->cmdline;
	dom->nr_vcpus = dom->cfg.nr_vcpus;
	dom->arena_size = dom->cfg.mem_bytes;
	return dom->cmdline == NULL ? -ENOMEM : 0;
}

static uint64_t uvm_stacks_start(const struct uvm_domain *dom)
{
	return dom->arena_size - (uint64_t)dom->nr_vcpus * UVM_VCPU_STACK_SIZE;
}

static int uvm_init_domain(struct uvm_domain *dom, const struct hv_config *cfg)
{
	pthread_condattr_t ca;
	int rc = uvm_config(dom, cfg);

	pthread_mutex_init(&dom->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&dom->vcpu_cond, &ca);
	pthread_cond_init(&dom->ctl_cond, &ca);
	pthread_condattr_destroy(&ca);
	atomic_init(&dom->pause_req, true);
	dom->paused = true;
	uvm_gate_init(dom);
	if (rc == 0)
		rc = uvm_arena_map(dom->arena_size, &dom->arena);
	if (rc == 0 && uvm_stacks_start(dom) <
			       UVM_IMAGE_OFFSET + 4 * UVM_PAGE_SIZE) {
		log_error("uvm: %" PRIu64 " bytes of guest memory leave no room "
			  "for the image and %u vCPU stacks", dom->arena_size,
			  dom->nr_vcpus);
		rc = -EINVAL;
	}
	if (rc == 0)
		rc = uvm_dirty_new(dom->arena, dom->arena_size, dom->cfg.dirty,
				   &dom->dirty);
	if (rc == 0)
		rc = uvm_console_new(dom, dom->cfg.console_fd, &dom->console);
	return rc;
}

static void uvm_write_platform_pages(struct uvm_domain *dom, uint64_t image_end)
{
	struct uvm_shared_info *si = uvm_shared(dom);
	struct uvm_start_info *st = uvm_start(dom);

	for (unsigned v = 0; v < dom->nr_vcpus; v++)
		si->evtchn_vcpu[UVM_PORT_TIMER(v)] = (uint8_t)v;
	si->nr_devices = 1;
	si->devices[0] = (struct uvm_device_desc){
		.type = UVM_DEV_CONSOLE,
		.port = UVM_PORT_CONSOLE,
		.ring_pfn = UVM_CONSOLE_PFN,
		.ring_pages = 1,
	};
	st->magic = UVM_START_MAGIC;
	st->arena_size = dom->arena_size;
	st->nr_vcpus = dom->nr_vcpus;
	st->console_port = UVM_PORT_CONSOLE;
	st->console_pfn = UVM_CONSOLE_PFN;
	st->heap_start_pfn = (image_end - UVM_GUEST_BASE + UVM_PAGE_SIZE - 1) /
			     UVM_PAGE_SIZE;
	st->heap_end_pfn = uvm_stacks_start(dom) / UVM_PAGE_SIZE;
	memcpy(st->cmdline, dom->cmdline, strlen(dom->cmdline) + 1);
}

static bool uvm_all_started(const struct uvm_domain *dom)
{
	for (unsigned i = 0; i < dom->nr_vcpus; i++)
		if (dom->vcpus[i].state == UVM_VCPU_NEW)
			return false;
	return true;
}

/* Start every vCPU thread and wait until each has left NEW: parked at its
 * first entry (or stopped, if it could not set itself up). */
static int uvm_start_vcpus(struct uvm_domain *dom)
{
	int rc = 0;

	for (unsigned i = 0; i < dom->nr_vcpus && rc == 0; i++) {
		dom->vcpus[i].dom = dom;
		dom->vcpus[i].id = i;
		rc = uvm_vcpu_start(&dom->vcpus[i]);
	}
	pthread_mutex_lock(&dom->lock);
	while (rc == 0 && !uvm_all_started(dom))
		pthread_cond_wait(&dom->ctl_cond, &dom->lock);
	if (rc == 0 && dom->shutdown.reason != HV_SHUTDOWN_NONE)
		rc = -EIO;
	pthread_mutex_unlock(&dom->lock);
	return rc;
}

static int uvm_initial_vcpus(struct uvm_domain *dom, uint64_t entry)
{
	struct hv_vcpu_state *st = malloc(sizeof(*st));
	int rc = 0;

	if (st == NULL)
		return -ENOMEM;
	for (unsigned i = 0; i < dom->nr_vcpus && rc == 0; i++) {
		struct uvm_vcpu *v = &dom->vcpus[i];

		memset(st, 0, sizeof(*st));
		uvm_xsave_reset(st, v->frame);
		st->rip = entry;
		st->rflags = UVM_INITIAL_RFLAGS;
		st->gpr[HV_RSP] = UVM_GUEST_BASE + dom->arena_size -
				  (uint64_t)i * UVM_VCPU_STACK_SIZE;
		st->gpr[HV_RDI] = UVM_ADDR(UVM_START_INFO_PFN);
		st->gpr[HV_RSI] = i;
		rc = uvm_vcpu_load_frame(v, st);
	}
	free(st);
	return rc;
}

static int uvm_create(const struct hv_config *cfg, bool load_image,
		      struct hv_domain **out)
{
	struct uvm_domain *dom = calloc(1, sizeof(*dom));
	uint64_t entry = 0, image_end = 0;
	int rc;

	*out = NULL;
	if (dom == NULL)
		return -ENOMEM;
	dom->hv.ops = &hv_uvm_ops;
	rc = uvm_init_domain(dom, cfg);
	if (rc == 0 && load_image) {
		if (dom->image == NULL) {
			log_error("uvm: no guest image given");
			rc = -EINVAL;
		} else {
			rc = uvm_elf_load(dom->image, dom->arena,
					  uvm_stacks_start(dom), &entry,
					  &image_end);
		}
		if (rc == 0)
			uvm_write_platform_pages(dom, image_end);
	}
	if (rc == 0)
		rc = uvm_devs_create(dom, load_image);
	if (rc == 0)
		rc = uvm_start_vcpus(dom);
	if (rc == 0 && load_image)
		rc = uvm_initial_vcpus(dom, entry);
	if (rc != 0) {
		uvm_free(&dom->hv);
		return rc;
	}
	*out = &dom->hv;
	return 0;
}

static void uvm_free(struct hv_domain *hd)
{
	struct uvm_domain *dom = uvm_dom(hd);

	uvm_stop_all(dom, HV_SHUTDOWN_DESTROYED, 0, "domain destroyed");
	for (unsigned i = 0; i < dom->nr_vcpus; i++)
		uvm_vcpu_join(&dom->vcpus[i]);
	uvm_devs_free(dom);
	uvm_dirty_free(dom->dirty);
	uvm_console_free(dom->console);
	uvm_arena_unmap(dom->arena, dom->arena_size);
	pthread_mutex_destroy(&dom->lock);
	pthread_cond_destroy(&dom->vcpu_cond);
	pthread_cond_destroy(&dom->ctl_cond);
	free(dom->image);
	free(dom->cmdline);
	free(dom);
}

static const struct hv_config *uvm_get_config(const struct hv_domain *hd)
{
	return &((const struct uvm_domain *)hd)->cfg;
}

/* vCPUs first, then the back ends, so nothing touches guest memory. */
static int uvm_pause(struct hv_domain *hd, struct hv_pause_info *info)
{
	struct uvm_domain *dom = uvm_dom(hd);
	int rc = uvm_pause_all(dom, info);

	if (rc == 0)
		rc = uvm_devs_quiesce(dom);
	return rc;
}

static int uvm_unpause(struct hv_domain *hd)
{
	struct uvm_domain *dom = uvm_dom(hd);
	int rc = uvm_unpause_all(dom);

	if (rc == 0)
		uvm_devs_resume(dom);
	return rc;
}

static bool uvm_is_paused(const struct hv_domain *hd)
{
	return ((const struct uvm_domain *)hd)->paused;
}

static int uvm_wait_shutdown(struct hv_domain *hd, int timeout_ms,
			     struct hv_shutdown_info *info)
{
	struct uvm_domain *dom = uvm_dom(hd);
	uint64_t deadline = uvm_now_ns() + (uint64_t)timeout_ms * 1000000ULL;
	int rc = 0;

	pthread_mutex_lock(&dom->lock);
	while (dom->shutdown.reason == HV_SHUTDOWN_NONE ||
	       dom->nr_stopped < dom->nr_vcpus) {
		struct timespec ts = uvm_abs_time(deadline);

		if (timeout_ms < 0) {
			pthread_cond_wait(&dom->ctl_cond, &dom->lock);
		} else if (pthread_cond_timedwait(&dom->ctl_cond, &dom->lock,
						  &ts) == ETIMEDOUT) {
			rc = -ETIMEDOUT;
			break;
		}
	}
	*info = dom->shutdown;
	pthread_mutex_unlock(&dom->lock);
	return rc;
}

static uint64_t uvm_nr_pages(const struct hv_domain *hd)
{
	return ((const struct uvm_domain *)hd)->arena_size / UVM_PAGE_SIZE;
}

static int uvm_map(struct hv_domain *hd, uint64_t pfn, uint64_t count,
		   bool write, void **out)
{
	struct uvm_domain *dom = uvm_dom(hd);
	int rc = 0;

	if (write)
		rc = uvm_dirty_host_write(dom->dirty, pfn * UVM_PAGE_SIZE,
					  count * UVM_PAGE_SIZE);
	*out = rc == 0 ? dom->arena + pfn * UVM_PAGE_SIZE : NULL;
	return rc;
}

static void uvm_unmap(struct hv_domain *hd, void *addr, uint64_t count)
{
	(void)hd;
	(void)addr;
	(void)count; /* the arena is always mapped */
}

static int uvm_populated(struct hv_domain *hd, uint64_t *bitmap)
{
	struct uvm_domain *dom = uvm_dom(hd);

	return uvm_arena_populated(dom->arena, dom->arena_size, bitmap);
}

static int uvm_dirty_on(struct hv_domain *hd)
{
	return uvm_dirty_enable(uvm_dom(hd)->dirty);
}

static int uvm_dirty_off(struct hv_domain *hd)
{
	return uvm_dirty_disable(uvm_dom(hd)->dirty);
}

static int uvm_dirty_get(struct hv_domain *hd, uint64_t *bitmap,
			 struct hv_dirty_stats *stats)
{
	return uvm_dirty_fetch(uvm_dom(hd)->dirty, bitmap, stats);
}

static int uvm_dirty_shed(struct hv_domain *hd)
{
	uint64_t closed;

	return uvm_dirty_trim(uvm_dom(hd)->dirty, &closed);
}

static enum hv_dirty_mech uvm_dirty_which(const struct hv_domain *hd)
{
	return uvm_dirty_mech(((const struct uvm_domain *)hd)->dirty);
}

static unsigned uvm_nr_vcpus(const struct hv_domain *hd)
{
	return ((const struct uvm_domain *)hd)->nr_vcpus;
}

/* A vCPU whose frame may be read or written: parked, domain paused. */
static int uvm_parked_vcpu(struct uvm_domain *dom, unsigned i,
			   struct uvm_vcpu **out)
{
	struct uvm_vcpu *v = &dom->vcpus[i];

	if (!dom->paused) {
		log_error("uvm: vcpu %u state needs a paused domain", i);
		return -EBUSY;
	}
	if (v->state != UVM_VCPU_PARKED) {
		log_error("uvm: vcpu %u is %s, not parked", i,
			  uvm_vcpu_state_name(v->state));
		return -ESRCH;
	}
	*out = v;
	return 0;
}

static int uvm_vcpu_save(struct hv_domain *hd, unsigned i,
			 struct hv_vcpu_state *st)
{
	struct uvm_vcpu *v;
	int rc = uvm_parked_vcpu(uvm_dom(hd), i, &v);

	if (rc == 0 && !v->loaded) {
		log_error("uvm: vcpu %u has never run; nothing to save", i);
		rc = -ENODATA;
	}
	if (rc == 0)
		uvm_vcpu_save_frame(v, st);
	return rc;
}

static int uvm_vcpu_load(struct hv_domain *hd, unsigned i,
			 const struct hv_vcpu_state *st)
{
	struct uvm_vcpu *v;
	int rc = uvm_parked_vcpu(uvm_dom(hd), i, &v);

	return rc ? rc : uvm_vcpu_load_frame(v, st);
}

static int uvm_vcpu_counters(struct hv_domain *hd, unsigned i,
			     struct hv_vcpu_stats *st)
{
	struct uvm_vcpu *v = &uvm_dom(hd)->vcpus[i];

	st->hypercalls = __atomic_load_n(&v->hypercalls, __ATOMIC_RELAXED);
	st->preemptions = __atomic_load_n(&v->preemptions, __ATOMIC_RELAXED);
	return 0;
}

static unsigned uvm_nr_devices(const struct hv_domain *hd)
{
	return 1 + ((const struct uvm_domain *)hd)->nr_devs; /* + console */
}

/* The console keeps all its state in the ring page (see console.c). */
static int uvm_console_load(unsigned idx, const struct hv_device_state *st)
{
	if (st->type != UVM_DEV_CONSOLE || st->port != UVM_PORT_CONSOLE ||
	    st->len != 0) {
		log_error("uvm: device %u: saved type %u port %u (%u bytes) is "
			  "not this host's console (type %d port %d)", idx,
			  st->type, st->port, st->len, UVM_DEV_CONSOLE,
			  UVM_PORT_CONSOLE);
		return -EINVAL;
	}
	return 0;
}

static int uvm_device_save(struct hv_domain *hd, unsigned idx,
			   struct hv_device_state *st)
{
	struct uvm_domain *dom = uvm_dom(hd);
	struct uvm_dev *dev;

	if (!dom->paused)
		return -EBUSY;
	if (idx == 0) {
		st->type = UVM_DEV_CONSOLE;
		st->port = UVM_PORT_CONSOLE;
		st->len = 0;
		return 0;
	}
	dev = dom->devs[idx - 1];
	st->type = dev->ops->type;
	st->port = dev->port;
	return dev->ops->save(dev, st);
}

static int uvm_device_load(struct hv_domain *hd, unsigned idx,
			   const struct hv_device_state *st)
{
	struct uvm_domain *dom = uvm_dom(hd);
	struct uvm_dev *dev;

	if (!dom->paused)
		return -EBUSY;
	if (idx == 0)
		return uvm_console_load(idx, st);
	dev = dom->devs[idx - 1];
	if (st->type != dev->ops->type || st->port != dev->port) {
		log_error("uvm: device %u: saved type %u port %u, but this host "
			  "has a %s device (type %u port %u) there; give the "
			  "same --disk/--listen devices as the saved guest had",
			  idx, st->type, st->port, dev->ops->name,
			  dev->ops->type, dev->port);
		return -EINVAL;
	}
	return dev->ops->load(dev, st);
}

static int uvm_gate_hold(struct hv_domain *hd, bool hold)
{
	return uvm_gate_set_hold(uvm_dom(hd), hold);
}

static uint64_t uvm_gate_next(struct hv_domain *hd)
{
	return uvm_gate_advance(uvm_dom(hd));
}

static int uvm_gate_free(struct hv_domain *hd, uint64_t epoch)
{
	return uvm_gate_release(uvm_dom(hd), epoch);
}

static int uvm_platform_save(struct hv_domain *hd, struct hv_platform_state *st)
{
	st->guest_clock_ns = uvm_guest_clock(uvm_dom(hd));
	return 0;
}

static int uvm_platform_load(struct hv_domain *hd,
			     const struct hv_platform_state *st)
{
	struct uvm_domain *dom = uvm_dom(hd);

	dom->clock_offset_ns = (int64_t)st->guest_clock_ns - (int64_t)uvm_now_ns();
	return 0;
}

static int uvm_platform_info(const struct hv_domain *hd, struct hv_platform *out)
{
	const struct uvm_domain *dom = (const struct uvm_domain *)hd;

	out->guest_base = UVM_GUEST_BASE;
	out->xsave_features = dom->xsave.features;
	out->xsave_size = dom->xsave.size;
	return 0;
}

static int uvm_gate_watch(struct hv_domain *hd, hv_gate_watch_fn fn, void *arg)
{
	struct uvm_domain *dom = uvm_dom(hd);

	if (!dom->paused)
		return -EBUSY;
	dom->gate_watch = fn;
	dom->gate_watch_arg = arg;
	return 0;
}

static int uvm_disk_tap(struct hv_domain *hd, hv_disk_tap_fn fn, void *arg)
{
	struct uvm_domain *dom = uvm_dom(hd);

	if (!dom->paused)
		return -EBUSY;
	if (dom->blk == NULL)
		return -ENODEV;
	dom->disk_tap = fn;
	dom->disk_tap_arg = arg;
	return 0;
}

static int uvm_evtchn_hook(struct hv_domain *hd, hv_evtchn_hook_fn fn, void *arg)
{
	struct uvm_domain *dom = uvm_dom(hd);

	pthread_mutex_lock(&dom->lock);
	dom->hook = fn;
	dom->hook_arg = arg;
	pthread_mutex_unlock(&dom->lock);
	return 0;
}

static int uvm_evtchn_send(struct hv_domain *hd, uint32_t port)
{
	if (port >= UVM_NR_EVTCHN) {
		log_error("uvm: event channel %u does not exist (%d ports)", port,
			  UVM_NR_EVTCHN);
		return -EINVAL;
	}
	uvm_evtchn_raise(uvm_dom(hd), port);
	return 0;
}

const struct hv_ops hv_uvm_ops = {
	.name = "uvm",
	.create = uvm_create,
	.free = uvm_free,
	.config = uvm_get_config,
	.pause = uvm_pause,
	.unpause = uvm_unpause,
	.is_paused = uvm_is_paused,
	.wait_shutdown = uvm_wait_shutdown,
	.nr_pages = uvm_nr_pages,
	.map = uvm_map,
	.unmap = uvm_unmap,
	.populated = uvm_populated,
	.dirty_enable = uvm_dirty_on,
	.dirty_disable = uvm_dirty_off,
	.dirty_fetch = uvm_dirty_get,
	.dirty_trim = uvm_dirty_shed,
	.dirty_mech = uvm_dirty_which,
	.nr_vcpus = uvm_nr_vcpus,
	.vcpu_save = uvm_vcpu_save,
	.vcpu_load = uvm_vcpu_load,
	.vcpu_stats = uvm_vcpu_counters,
	.nr_devices = uvm_nr_devices,
	.device_save = uvm_device_save,
	.device_load = uvm_device_load,
	.platform_save = uvm_platform_save,
	.platform_load = uvm_platform_load,
	.platform_info = uvm_platform_info,
	.gate_hold = uvm_gate_hold,
	.gate_next_epoch = uvm_gate_next,
	.gate_release = uvm_gate_free,
	.gate_watch = uvm_gate_watch,
	.disk_tap = uvm_disk_tap,
	.evtchn_hook = uvm_evtchn_hook,
	.evtchn_send = uvm_evtchn_send,
};
