/*
 * hv.c - backend selection and the thin dispatch from hv.h to a backend's
 * ops table.  Backends are linked in by the Makefile; this file lists them.
 */
#include "hv_backend.h"
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static const struct hv_ops *const hv_backends[] = {
	&hv_uvm_ops,
	&hv_xen_ops,
};

static const struct hv_ops *hv_find_backend(const char *name)
{
	if (name == NULL || name[0] == '\0')
		name = "uvm";
	for (size_t i = 0; i < sizeof(hv_backends) / sizeof(hv_backends[0]); i++)
		if (strcmp(hv_backends[i]->name, name) == 0)
			return hv_backends[i];
	log_error("hv: backend \"%s\" is not built into this tandem", name);
	return NULL;
}

static int hv_open(const struct hv_config *cfg, bool load_image,
		   struct hv_domain **out)
{
	const struct hv_ops *ops = hv_find_backend(cfg->backend);

	*out = NULL;
	if (ops == NULL)
		return -ENOTSUP;
	return ops->create(cfg, load_image, out);
}

int hv_domain_build(const struct hv_config *cfg, struct hv_domain **out)
{
	return hv_open(cfg, true, out);
}

int hv_domain_create(const struct hv_config *cfg, struct hv_domain **out)
{
	return hv_open(cfg, false, out);
}

void hv_domain_free(struct hv_domain *dom)
{
	if (dom != NULL)
		dom->ops->free(dom);
}

void hv_domain_kill(struct hv_domain *dom)
{
	if (dom != NULL && dom->ops->kill != NULL)
		dom->ops->kill(dom);
}

const char *hv_backend_name(const struct hv_domain *dom)
{
	return dom->ops->name;
}

const struct hv_config *hv_domain_config(const struct hv_domain *dom)
{
	return dom->ops->config(dom);
}

int hv_pause(struct hv_domain *dom, struct hv_pause_info *info)
{
	struct hv_pause_info scratch;

	return dom->ops->pause(dom, info != NULL ? info : &scratch);
}

int hv_unpause(struct hv_domain *dom)
{
	return dom->ops->unpause(dom);
}

bool hv_is_paused(const struct hv_domain *dom)
{
	return dom->ops->is_paused(dom);
}

int hv_wait_shutdown(struct hv_domain *dom, int timeout_ms,
		     struct hv_shutdown_info *info)
{
	struct hv_shutdown_info scratch;

	return dom->ops->wait_shutdown(dom, timeout_ms,
				       info != NULL ? info : &scratch);
}

uint64_t hv_nr_pages(const struct hv_domain *dom)
{
	return dom->ops->nr_pages(dom);
}

int hv_map(struct hv_domain *dom, uint64_t pfn, uint64_t count, bool write,
	   void **out)
{
	uint64_t n = dom->ops->nr_pages(dom);

	if (count == 0 || pfn >= n || count > n - pfn) {
		log_error("hv: map of pages [%" PRIu64 ", +%" PRIu64
			  ") is outside guest memory (%" PRIu64 " pages)",
			  pfn, count, n);
		return -ERANGE;
	}
	return dom->ops->map(dom, pfn, count, write, out);
}

void hv_unmap(struct hv_domain *dom, void *addr, uint64_t count)
{
	if (addr != NULL)
		dom->ops->unmap(dom, addr, count);
}

int hv_populated(struct hv_domain *dom, uint64_t *bitmap)
{
	return dom->ops->populated(dom, bitmap);
}

int hv_dirty_enable(struct hv_domain *dom)
{
	return dom->ops->dirty_enable(dom);
}

int hv_dirty_disable(struct hv_domain *dom)
{
	return dom->ops->dirty_disable(dom);
}

int hv_dirty_fetch(struct hv_domain *dom, uint64_t *bitmap,
		   struct hv_dirty_stats *stats)
{
	struct hv_dirty_stats scratch;

	return dom->ops->dirty_fetch(dom, bitmap,
				     stats != NULL ? stats : &scratch);
}

int hv_dirty_trim(struct hv_domain *dom)
{
	return dom->ops->dirty_trim(dom);
}

enum hv_dirty_mech hv_dirty_mech(const struct hv_domain *dom)
{
	return dom->ops->dirty_mech(dom);
}

const char *hv_dirty_mech_name(enum hv_dirty_mech mech)
{
	switch (mech) {
	case HV_DIRTY_AUTO:
		return "auto";
	case HV_DIRTY_UFFD_WP:
		return "uffd-wp";
	case HV_DIRTY_MPROTECT:
		return "mprotect";
	case HV_DIRTY_XEN:
		return "xen-logdirty";
	}
	return "unknown";
}

unsigned hv_nr_vcpus(const struct hv_domain *dom)
{
	return dom->ops->nr_vcpus(dom);
}

static int hv_check_vcpu(const struct hv_domain *dom, unsigned vcpu)
{
	if (vcpu >= dom->ops->nr_vcpus(dom)) {
		log_error("hv: vcpu %u does not exist (domain has %u)", vcpu,
			  dom->ops->nr_vcpus(dom));
		return -ENOENT;
	}
	return 0;
}

int hv_vcpu_save(struct hv_domain *dom, unsigned vcpu,
		 struct hv_vcpu_state *st)
{
	int rc = hv_check_vcpu(dom, vcpu);

	return rc ? rc : dom->ops->vcpu_save(dom, vcpu, st);
}

int hv_vcpu_load(struct hv_domain *dom, unsigned vcpu,
		 const struct hv_vcpu_state *st)
{
	int rc = hv_check_vcpu(dom, vcpu);

	return rc ? rc : dom->ops->vcpu_load(dom, vcpu, st);
}

int hv_vcpu_stats(struct hv_domain *dom, unsigned vcpu,
		  struct hv_vcpu_stats *st)
{
	int rc = hv_check_vcpu(dom, vcpu);

	return rc ? rc : dom->ops->vcpu_stats(dom, vcpu, st);
}

unsigned hv_nr_devices(const struct hv_domain *dom)
{
	return dom->ops->nr_devices(dom);
}

static int hv_check_device(const struct hv_domain *dom, unsigned idx)
{
	if (idx >= dom->ops->nr_devices(dom)) {
		log_error("hv: device %u does not exist (domain has %u)", idx,
			  dom->ops->nr_devices(dom));
		return -ENOENT;
	}
	return 0;
}

int hv_device_save(struct hv_domain *dom, unsigned idx,
		   struct hv_device_state *st)
{
	int rc = hv_check_device(dom, idx);

	return rc ? rc : dom->ops->device_save(dom, idx, st);
}

int hv_device_load(struct hv_domain *dom, unsigned idx,
		   const struct hv_device_state *st)
{
	int rc = hv_check_device(dom, idx);

	return rc ? rc : dom->ops->device_load(dom, idx, st);
}

int hv_platform_save(struct hv_domain *dom, struct hv_platform_state *st)
{
	return dom->ops->platform_save(dom, st);
}

int hv_platform_load(struct hv_domain *dom, const struct hv_platform_state *st)
{
	return dom->ops->platform_load(dom, st);
}

int hv_platform_info(const struct hv_domain *dom, struct hv_platform *out)
{
	return dom->ops->platform_info(dom, out);
}

int hv_platform_compatible(const struct hv_platform *from,
			   const struct hv_platform *here, char *why,
			   size_t whylen)
{
	uint64_t missing = from->xsave_features & ~here->xsave_features;

	if (from->guest_base != here->guest_base) {
		snprintf(why, whylen,
			 "guest base 0x%" PRIx64 " differs from this host's 0x%" PRIx64,
			 from->guest_base, here->guest_base);
		return -EINVAL;
	}
	if (missing != 0) {
		snprintf(why, whylen,
			 "saved vector state uses XSAVE features 0x%" PRIx64
			 " this host lacks (host has 0x%" PRIx64 ")",
			 missing, here->xsave_features);
		return -EOPNOTSUPP;
	}
	if (from->xsave_size > here->xsave_size) {
		snprintf(why, whylen,
			 "XSAVE area of %" PRIu32 " bytes exceeds this host's %" PRIu32,
			 from->xsave_size, here->xsave_size);
		return -EOPNOTSUPP;
	}
	return 0;
}

int hv_gate_hold(struct hv_domain *dom, bool hold)
{
	return dom->ops->gate_hold(dom, hold);
}

uint64_t hv_gate_next_epoch(struct hv_domain *dom)
{
	return dom->ops->gate_next_epoch(dom);
}

int hv_gate_release(struct hv_domain *dom, uint64_t epoch)
{
	return dom->ops->gate_release(dom, epoch);
}

int hv_gate_watch(struct hv_domain *dom, hv_gate_watch_fn fn, void *arg)
{
	return dom->ops->gate_watch(dom, fn, arg);
}

int hv_disk_tap(struct hv_domain *dom, hv_disk_tap_fn fn, void *arg)
{
	return dom->ops->disk_tap(dom, fn, arg);
}

int hv_evtchn_hook(struct hv_domain *dom, hv_evtchn_hook_fn fn, void *arg)
{
	return dom->ops->evtchn_hook(dom, fn, arg);
}

int hv_evtchn_send(struct hv_domain *dom, uint32_t port)
{
	return dom->ops->evtchn_send(dom, port);
}
