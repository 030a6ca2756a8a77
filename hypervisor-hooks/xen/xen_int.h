/*
 * xen_int.h - the Xen backend's domain object, shared by its files
 * (internal to hypervisor-hooks/xen/).  docs/hv.md says what each hv call
 * does on Xen.
 *
 * One struct xen_dom is either
 *   - a live domain (the primary's guest, or a promoted replica): reached
 *     through libxenctrl, libxenforeignmemory and libxenstore, its memory
 *     mapped once as a whole;
 *   - a replica (the standby's copy): no Xen domain at all, only the last
 *     committed checkpoint in this process's memory.  hv_unpause on a
 *     replica hands the checkpoint to Xen's own restore path (`xl restore`)
 *     and turns the object into a live domain (xen_promote.c).
 *
 * The Xen public headers need GNU C (anonymous unions, __align8__); the
 * Makefile compiles this directory with -U__STRICT_ANSI__ under -std=c11.
 */
#ifndef TANDEM_XEN_INT_H
#define TANDEM_XEN_INT_H

#include "hv_backend.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <xenctrl.h>
#include <xenforeignmemory.h>
#include <xenguest.h>
#include <xenstore.h>

/* Devices of a Xen domain: the blobs of hv_device_save/load. */
enum xen_dev {
	XEN_DEV_HVM_CONTEXT = 0, /* xc_domain_hvm_getcontext(): every vCPU,
				    LAPIC, MTRR, XSAVE, ... records */
	XEN_DEV_HVM_PARAMS = 1,  /* {u64 index, u64 value} of xen_params[] */
	XEN_DEV_PLATFORM = 2,    /* TSC info, CPUID and MSR policy */
	XEN_NR_DEVS = 3,
};

/* Device type numbers on the wire (hv_device_state.type). */
#define XEN_DEVTYPE_BASE 0x5800u

enum xen_state {
	XS_REPLICA,   /* no domain: a checkpoint held in memory */
	XS_RUNNING,
	XS_PAUSED,    /* paused by us (xc_domain_pause), not suspended */
	XS_SUSPENDED, /* the guest suspended itself on our request */
	XS_GONE,      /* the domain shut down or was destroyed */
};

/* Output gate: the guest's network output through a plug qdisc. */
struct xen_netbuf;

struct xen_dom {
	struct hv_domain base;
	struct hv_config cfg;
	char name[64];
	char xl_config[4096];      /* path */
	enum xen_state state;
	uint32_t domid;
	unsigned nr_vcpus;
	uint64_t nr_pages;         /* pfn space, see xen_span_pages() */
	uint64_t suspends;         /* completed suspend requests */
	bool suspendable;          /* the guest announced feature-suspend */

	xc_interface *xch;
	xenforeignmemory_handle *fmem;
	struct xs_handle *xsh;

	/* Memory: one mapping of pfns [0, nr_pages), holes unmapped. */
	uint8_t *mem;
	uint64_t mapped;           /* frames in the foreign mapping; 0: replica */
	uint64_t *present;         /* bit per pfn: mapped (live) or held */
	uint64_t nr_present;

	/* Dirty log. */
	bool dirty_on;
	unsigned stray_logged;
	xc_hypercall_buffer_t dirty_hbuf;
	unsigned long *dirty_bm;
	unsigned dirty_bm_pages;

	/* Replica: committed vCPU registers, laid over the HVM context at
	 * restore. */
	struct hv_vcpu_state *vcpu;   /* HV_MAX_VCPUS */
	bool vcpu_set[HV_MAX_VCPUS];
	struct hv_device_state *dev;  /* XEN_NR_DEVS */
	bool dev_set[XEN_NR_DEVS];

	struct xen_netbuf *nb;
	uint64_t gate_epoch;          /* last epoch closed by the gate */
	pthread_mutex_t lock;         /* state, for wait_shutdown's reader */
	pthread_mutex_t op_lock;      /* one pause or unpause at a time */
	pthread_mutex_t gate_lock;    /* one plug command at a time */
	bool created;                 /* this object created the domain */
};

static inline struct xen_dom *xen_of(struct hv_domain *d)
{
	return (struct xen_dom *)d;
}

static inline const struct xen_dom *xen_ofc(const struct hv_domain *d)
{
	return (const struct xen_dom *)d;
}

const char *xen_state_name(enum xen_state s);
void xen_set_state(struct xen_dom *x, enum xen_state s, const char *why);

/* The pfn space of a guest with mem_bytes of RAM: RAM, the MMIO hole
 * below 4 GiB and the special pages just under it. */
uint64_t xen_span_pages(uint64_t mem_bytes);

extern const struct hv_ops hv_xen_ops;

/* xen_run.c: run a program (argv[0] looked up in PATH), its output
 * (stdout and stderr) in out; 0 when it exits 0, else -EIO (logged with
 * the output) or -errno. */
int xen_run(char *const argv[], char *out, size_t outlen);
/* Start argv and do not wait for it (it may outlive this process). */
int xen_spawn(char *const argv[]);
/* The same as xen_run; quiet: a failure is not logged (clean-ups). */
int xen_run_ex(char *const argv[], char *out, size_t outlen, bool quiet);

/* xen_domain.c */
/* xc, foreign memory and xenstore handles, opened once; -ENODEV logged
 * when this is no Xen dom0. */
int xen_open_handles(struct xen_dom *x);
int xen_attach(struct xen_dom *x, uint32_t domid);
void xen_adopt(struct xen_dom *x, uint32_t domid);
void xen_detach(struct xen_dom *x);
int xen_getinfo(struct xen_dom *x, xc_domaininfo_t *info);
/* The id of the domain called `name`, or -ENOENT. */
int xen_find_by_name(struct xs_handle *xsh, const char *name, uint32_t *domid);

/* xen_mem.c */
/* Map frames [0, frames) (frames: max gpfn + 1) and record which exist. */
int xen_mem_map_all(struct xen_dom *x, uint64_t frames);
int xen_mem_replica(struct xen_dom *x);
void xen_mem_free(struct xen_dom *x);
uint64_t xen_nr_pages(const struct hv_domain *dom);
int xen_map(struct hv_domain *dom, uint64_t pfn, uint64_t count, bool write,
	    void **out);
void xen_unmap(struct hv_domain *dom, void *addr, uint64_t count);
int xen_populated(struct hv_domain *dom, uint64_t *bitmap);
int xen_dirty_enable(struct hv_domain *dom);
int xen_dirty_disable(struct hv_domain *dom);
int xen_dirty_fetch(struct hv_domain *dom, uint64_t *bitmap,
		    struct hv_dirty_stats *stats);

/* xen_state.c */
unsigned xen_nr_vcpus(const struct hv_domain *dom);
int xen_vcpu_save(struct hv_domain *dom, unsigned vcpu,
		  struct hv_vcpu_state *st);
int xen_vcpu_load(struct hv_domain *dom, unsigned vcpu,
		  const struct hv_vcpu_state *st);
unsigned xen_nr_devices(const struct hv_domain *dom);
int xen_device_save(struct hv_domain *dom, unsigned idx,
		    struct hv_device_state *st);
int xen_device_load(struct hv_domain *dom, unsigned idx,
		    const struct hv_device_state *st);
int xen_platform_save(struct hv_domain *dom, struct hv_platform_state *st);
int xen_platform_load(struct hv_domain *dom,
		      const struct hv_platform_state *st);
/* The committed vCPU registers laid over the replica's HVM context. */
int xen_context_apply_vcpus(struct xen_dom *x);

/* xen_netbuf.c */
int xen_netbuf_new(struct xen_dom *x, struct xen_netbuf **out);
void xen_netbuf_free(struct xen_netbuf *nb);
int xen_gate_hold(struct hv_domain *dom, bool hold);
uint64_t xen_gate_next_epoch(struct hv_domain *dom);
int xen_gate_release(struct hv_domain *dom, uint64_t epoch);

/* xen_promote.c: replica -> live domain through `xl restore`. */
int xen_promote(struct xen_dom *x);

#endif
