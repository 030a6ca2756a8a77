/*
 * hv.h - the hypervisor backend interface.
 *
 * Everything the replicator needs from a hypervisor, and nothing else:
 * build or create a domain, pause it at an event-channel boundary and
 * unpause it, log dirty pages (fetch-and-clear), reach guest pages by
 * frame number, save and load vCPU, device and platform state, hook and
 * send event-channel notifications.  docs/hv.md maps each call onto the
 * uvm backend and onto the Xen calls a Xen backend makes.
 *
 * Ownership: hv_domain_build/hv_domain_create return a domain the caller
 * owns and destroys with hv_domain_free (which accepts NULL).  A domain is
 * created paused.  State save/load and page writes are only valid while the
 * domain is paused; page reads and dirty fetches are valid at any time
 * (a fetch while running is a live pre-copy round).
 *
 * Errors: 0 or -errno; messages are logged by the backend naming the
 * domain and quoting the bad value.
 */
#ifndef TANDEM_HV_H
#define TANDEM_HV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HV_PAGE_SHIFT 12
#define HV_PAGE_SIZE (1u << HV_PAGE_SHIFT)
#define HV_XSAVE_MAX 16384
#define HV_DEVICE_BLOB_MAX 65536
#define HV_MAX_VCPUS 8

struct hv_domain;

enum hv_dirty_mech {
	HV_DIRTY_AUTO = 0,     /* best the host offers, chosen at run time */
	HV_DIRTY_UFFD_WP = 1,  /* userfaultfd async write-protect + PAGEMAP_SCAN */
	HV_DIRTY_MPROTECT = 2, /* mprotect + fault handler (fallback) */
	HV_DIRTY_XEN = 3,      /* xc_shadow_control log-dirty */
};

enum hv_shutdown_reason {
	HV_SHUTDOWN_NONE = 0, /* still running */
	HV_SHUTDOWN_POWEROFF,
	HV_SHUTDOWN_CRASH,
	HV_SHUTDOWN_DESTROYED,
};

struct hv_config {
	const char *backend;       /* "uvm" (default) or "xen" */
	const char *image;         /* guest image, for hv_domain_build */
	uint64_t mem_bytes;        /* guest memory; 0 = 256 MiB */
	unsigned nr_vcpus;         /* 0 = 1 */
	const char *cmdline;       /* guest command line, may be NULL */
	int console_fd;            /* guest console output; -1 = discard */
	unsigned pause_bound_us;   /* preempt a guest that makes no hypercall
	                              within this bound; 0 = 1000 us */
	enum hv_dirty_mech dirty;  /* HV_DIRTY_AUTO unless forced */
	const char *disk;          /* block device image file, or NULL */
	const char *listen;        /* stream device address HOST:PORT, or NULL */
	const char *name;          /* the guest's name (xen: the domain's) */
	const char *xl_config;     /* xen: the domain's xl config file */
};

/* Platform facts two hosts must agree on before a guest moves. */
struct hv_platform {
	uint64_t guest_base;     /* where guest memory lives (uvm) */
	uint64_t xsave_features; /* XCR0-style mask of saved vector state */
	uint32_t xsave_size;     /* bytes of XSAVE area in a vCPU state */
};

struct hv_vcpu_state {
	uint64_t gpr[16]; /* rax rbx rcx rdx rsi rdi rbp rsp r8..r15 */
	uint64_t rip, rflags;
	uint64_t fs_base, gs_base;
	uint64_t xfeatures;          /* features present in xsave[] */
	uint64_t timer_deadline_ns;  /* guest clock; 0 = no timer */
	uint32_t xsave_len;
	uint8_t xsave[HV_XSAVE_MAX]; /* hardware XSAVE layout */
};

enum hv_gpr {
	HV_RAX, HV_RBX, HV_RCX, HV_RDX, HV_RSI, HV_RDI, HV_RBP, HV_RSP,
	HV_R8, HV_R9, HV_R10, HV_R11, HV_R12, HV_R13, HV_R14, HV_R15,
};

struct hv_device_state {
	uint32_t type;
	uint32_t port;
	uint32_t len;
	_Alignas(8) uint8_t blob[HV_DEVICE_BLOB_MAX]; /* 8-aligned: backends keep records in it */
};

/* Domain-wide state that is neither memory nor a vCPU. */
struct hv_platform_state {
	uint64_t guest_clock_ns; /* guest monotonic clock at the save */
};

struct hv_pause_info {
	uint64_t reach_ns;      /* request -> every vCPU parked */
	unsigned nr_vcpus;
	unsigned at_boundary;   /* parked at a hypercall (or blocked) */
	unsigned preempted;     /* parked by the preemption signal */
};

struct hv_dirty_stats {
	uint64_t pages;         /* pages reported dirty by this fetch */
	uint64_t regions;       /* tracking units visited (uvm: chunks or pages) */
	uint64_t fetch_ns;      /* time spent in the fetch */
};

struct hv_shutdown_info {
	enum hv_shutdown_reason reason;
	int64_t code;           /* guest's exit code, or the signal for a crash */
	char detail[160];       /* human-readable cause */
};

/* Called from the vCPU's exit path when the guest notifies `port`.
 * Must not block; it runs while the guest vCPU is stopped. */
typedef void (*hv_evtchn_hook_fn)(void *arg, unsigned vcpu, uint32_t port);

/* Lifecycle.  build = create + load the image + initial vCPU state. */
int hv_domain_build(const struct hv_config *cfg, struct hv_domain **out);
int hv_domain_create(const struct hv_config *cfg, struct hv_domain **out);
void hv_domain_free(struct hv_domain *dom);
/* End the guest at once, as when its host dies (a drill's failpoint, just
 * before the process kills itself): no held output leaves.  uvm: nothing
 * to do, the guest dies with the process. */
void hv_domain_kill(struct hv_domain *dom);
const char *hv_backend_name(const struct hv_domain *dom);
/* The configuration the domain runs with, defaults filled in. */
const struct hv_config *hv_domain_config(const struct hv_domain *dom);

int hv_pause(struct hv_domain *dom, struct hv_pause_info *info);
int hv_unpause(struct hv_domain *dom);
bool hv_is_paused(const struct hv_domain *dom);
/* Wait until the guest shuts down or timeout_ms passes (-ETIMEDOUT);
 * timeout_ms < 0 waits for ever. */
int hv_wait_shutdown(struct hv_domain *dom, int timeout_ms,
		     struct hv_shutdown_info *info);

/* Memory. */
uint64_t hv_nr_pages(const struct hv_domain *dom);
/* Pointer to `count` pages starting at `pfn`, valid until hv_unmap. */
int hv_map(struct hv_domain *dom, uint64_t pfn, uint64_t count, bool write,
	   void **out);
void hv_unmap(struct hv_domain *dom, void *addr, uint64_t count);
/* Set bit i in `bitmap` (hv_nr_pages bits) for every page that may hold
 * data: present in memory and not known to be all zero. */
int hv_populated(struct hv_domain *dom, uint64_t *bitmap);

/* Dirty logging. */
int hv_dirty_enable(struct hv_domain *dom);
int hv_dirty_disable(struct hv_domain *dom);
/* OR the pages written since the last fetch (or enable) into `bitmap`
 * (hv_nr_pages bits) and start a new round.  Exact: no written page is
 * ever missed. */
int hv_dirty_fetch(struct hv_domain *dom, uint64_t *bitmap,
		   struct hv_dirty_stats *stats);
/* Housekeeping to call while the guest runs (after an unpause): lets the
 * backend shed tracking state for memory the guest stopped writing, so
 * later fetches cost less.  Never loses a write; optional. */
int hv_dirty_trim(struct hv_domain *dom);
enum hv_dirty_mech hv_dirty_mech(const struct hv_domain *dom);
const char *hv_dirty_mech_name(enum hv_dirty_mech mech);

/* vCPU, device and platform state (domain paused). */
unsigned hv_nr_vcpus(const struct hv_domain *dom);
int hv_vcpu_save(struct hv_domain *dom, unsigned vcpu,
		 struct hv_vcpu_state *st);
int hv_vcpu_load(struct hv_domain *dom, unsigned vcpu,
		 const struct hv_vcpu_state *st);
struct hv_vcpu_stats {
	uint64_t hypercalls;   /* exits at an event-channel boundary */
	uint64_t preemptions;  /* parks forced by the pause bound */
};

/* Counters of a vCPU, readable at any time. */
int hv_vcpu_stats(struct hv_domain *dom, unsigned vcpu,
		  struct hv_vcpu_stats *st);
unsigned hv_nr_devices(const struct hv_domain *dom);
int hv_device_save(struct hv_domain *dom, unsigned idx,
		   struct hv_device_state *st);
int hv_device_load(struct hv_domain *dom, unsigned idx,
		   const struct hv_device_state *st);
int hv_platform_save(struct hv_domain *dom, struct hv_platform_state *st);
int hv_platform_load(struct hv_domain *dom,
		     const struct hv_platform_state *st);

/* Host facts, and whether state saved on `from` can run here. */
int hv_platform_info(const struct hv_domain *dom, struct hv_platform *out);
int hv_platform_compatible(const struct hv_platform *from,
			   const struct hv_platform *here, char *why,
			   size_t whylen);

/*
 * Output gate (output commit).  While held, what would leave the guest -
 * bytes to stream clients, block write completions to the guest - is
 * tagged with the current epoch and kept back until that epoch is
 * released.  Not held (the default), output goes at once.
 *
 *   hv_gate_hold(dom, true)      start holding; epochs count from here
 *   e = hv_gate_next_epoch(dom)  at a checkpoint (domain paused): output so
 *                                far belongs to epoch e, later output to e+1
 *   hv_gate_release(dom, e)      epoch e is committed: let its output go
 *   hv_gate_hold(dom, false)     stop holding and release everything
 */
int hv_gate_hold(struct hv_domain *dom, bool hold);
uint64_t hv_gate_next_epoch(struct hv_domain *dom);
int hv_gate_release(struct hv_domain *dom, uint64_t epoch);
/*
 * Gate watch: fn runs each time a back end holds output back (tags a
 * write completion or stream bytes with an epoch not yet released), on
 * the back end's thread; it must not block.  Event-driven checkpointing
 * (Kemari) starts a checkpoint on it.  Set or clear while paused.
 */
typedef void (*hv_gate_watch_fn)(void *arg);
int hv_gate_watch(struct hv_domain *dom, hv_gate_watch_fn fn, void *arg);

/*
 * Disk tap: fn sees every guest write to the disk image, with its bytes
 * (offset and length in bytes), after the image has it and before its
 * completion can reach the guest.  It runs on the block back end's thread
 * and must not block for long.  Set or clear (fn NULL) while paused.
 * -ENODEV when the domain has no disk.
 */
struct iovec;
typedef void (*hv_disk_tap_fn)(void *arg, uint64_t offset,
			       const struct iovec *iov, int iovcnt, size_t len);
int hv_disk_tap(struct hv_domain *dom, hv_disk_tap_fn fn, void *arg);

/* Event channels. */
int hv_evtchn_hook(struct hv_domain *dom, hv_evtchn_hook_fn fn, void *arg);
int hv_evtchn_send(struct hv_domain *dom, uint32_t port);

#endif
