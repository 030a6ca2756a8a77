/*
 * hv_backend.h - what a backend implements behind hv.h.  Internal to
 * hypervisor-hooks/: every backend's domain struct starts with a
 * `struct hv_domain` whose ops point at its table.
 */
#ifndef TANDEM_HV_BACKEND_H
#define TANDEM_HV_BACKEND_H

#include "hv.h"

struct hv_ops {
	const char *name;
	int (*create)(const struct hv_config *cfg, bool load_image,
		      struct hv_domain **out);
	void (*free)(struct hv_domain *dom);
	void (*kill)(struct hv_domain *dom); /* NULL: dies with the process */
	const struct hv_config *(*config)(const struct hv_domain *dom);
	int (*pause)(struct hv_domain *dom, struct hv_pause_info *info);
	int (*unpause)(struct hv_domain *dom);
	bool (*is_paused)(const struct hv_domain *dom);
	int (*wait_shutdown)(struct hv_domain *dom, int timeout_ms,
			     struct hv_shutdown_info *info);
	uint64_t (*nr_pages)(const struct hv_domain *dom);
	int (*map)(struct hv_domain *dom, uint64_t pfn, uint64_t count,
		   bool write, void **out);
	void (*unmap)(struct hv_domain *dom, void *addr, uint64_t count);
	int (*populated)(struct hv_domain *dom, uint64_t *bitmap);
	int (*dirty_enable)(struct hv_domain *dom);
	int (*dirty_disable)(struct hv_domain *dom);
	int (*dirty_fetch)(struct hv_domain *dom, uint64_t *bitmap,
			   struct hv_dirty_stats *stats);
	int (*dirty_trim)(struct hv_domain *dom);
	enum hv_dirty_mech (*dirty_mech)(const struct hv_domain *dom);
	unsigned (*nr_vcpus)(const struct hv_domain *dom);
	int (*vcpu_save)(struct hv_domain *dom, unsigned vcpu,
			 struct hv_vcpu_state *st);
	int (*vcpu_load)(struct hv_domain *dom, unsigned vcpu,
			 const struct hv_vcpu_state *st);
	int (*vcpu_stats)(struct hv_domain *dom, unsigned vcpu,
			  struct hv_vcpu_stats *st);
	unsigned (*nr_devices)(const struct hv_domain *dom);
	int (*device_save)(struct hv_domain *dom, unsigned idx,
			   struct hv_device_state *st);
	int (*device_load)(struct hv_domain *dom, unsigned idx,
			   const struct hv_device_state *st);
	int (*platform_save)(struct hv_domain *dom,
			     struct hv_platform_state *st);
	int (*platform_load)(struct hv_domain *dom,
			     const struct hv_platform_state *st);
	int (*platform_info)(const struct hv_domain *dom,
			     struct hv_platform *out);
	int (*gate_hold)(struct hv_domain *dom, bool hold);
	uint64_t (*gate_next_epoch)(struct hv_domain *dom);
	int (*gate_release)(struct hv_domain *dom, uint64_t epoch);
	int (*gate_watch)(struct hv_domain *dom, hv_gate_watch_fn fn,
			  void *arg);
	int (*disk_tap)(struct hv_domain *dom, hv_disk_tap_fn fn, void *arg);
	int (*evtchn_hook)(struct hv_domain *dom, hv_evtchn_hook_fn fn,
			   void *arg);
	int (*evtchn_send)(struct hv_domain *dom, uint32_t port);
};

struct hv_domain {
	const struct hv_ops *ops;
};

extern const struct hv_ops hv_uvm_ops;
extern const struct hv_ops hv_xen_ops;

#endif
