/*
 * uvm.h - internals of the embedded micro-VM backend, shared by its files.
 *
 * Object tree (one owner each): struct uvm_domain owns the arena, the
 * dirty tracker, the console back-end and its vCPUs; each struct uvm_vcpu
 * owns its thread and alternate signal stack.  Everything is torn down by
 * uvm_domain_free.
 *
 * Locking: dom->lock guards the pause protocol, vCPU states, events and
 * shutdown.  A vCPU only touches guest-visible state from its own exit
 * path (the signal handler on its alternate stack) and only while the
 * interrupted context is guest code, so the exit path may take locks and
 * call libc like ordinary host code.
 */
#ifndef TANDEM_UVM_H
#define TANDEM_UVM_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/ucontext.h>
#include <time.h>

#include "hv_backend.h"
#include "uvm_abi.h"

struct uvm_dirty;
struct uvm_domain;

enum uvm_vcpu_state {
	UVM_VCPU_NEW = 0,   /* thread not yet at its first entry */
	UVM_VCPU_PARKED,    /* stopped in its exit path; frame is valid */
	UVM_VCPU_RUNNING,   /* in guest code or handling an exit */
	UVM_VCPU_STOPPED,   /* left the guest for good */
	UVM_VCPU_NR_STATES
};

enum uvm_park_reason {
	UVM_PARK_START = 0, /* created paused */
	UVM_PARK_BOUNDARY,  /* at a hypercall */
	UVM_PARK_PREEMPTED, /* by the preemption signal */
};

/* Saved XSAVE-area facts of this host (from a signal frame). */
struct uvm_xsave_info {
	uint64_t features;   /* xfeatures of the kernel's signal frames */
	uint32_t size;       /* xstate_size; 512 when frames are FXSAVE-only */
};

struct uvm_vcpu {
	struct uvm_domain *dom;
	unsigned id;
	pthread_t thread;
	bool thread_started;
	void *altstack;
	size_t altstack_size;
	enum uvm_vcpu_state state;       /* written by uvm_vcpu_set_state */
	enum uvm_park_reason park_reason;
	ucontext_t *frame;               /* guest frame while PARKED */
	bool stop;                       /* leave the guest for good */
	/* The host context of the first entry trap; restored to leave. */
	greg_t host_gregs[NGREG];
	uint8_t *host_fpstate;
	uint32_t host_fpstate_len;
	bool loaded;                     /* a guest state is in the frame */
	struct hv_vcpu_state *scratch;   /* for the first-entry XSAVE probe */
	uint64_t timer_deadline_ns;      /* guest ns; 0 = none */
	uint64_t hypercalls;
	uint64_t preemptions;
};

struct uvm_console;
struct uvm_dev;

#define UVM_MAX_BACKENDS 4 /* devices beyond the console */

struct uvm_domain {
	struct hv_domain hv;             /* must be first */
	struct hv_config cfg;
	char *image;
	char *cmdline;
	uint8_t *arena;
	uint64_t arena_size;
	struct uvm_dirty *dirty;
	struct uvm_console *console;
	unsigned nr_vcpus;
	struct uvm_vcpu vcpus[UVM_MAX_VCPUS];
	pthread_mutex_t lock;
	pthread_cond_t vcpu_cond;        /* vCPUs wait: unpause, events */
	pthread_cond_t ctl_cond;         /* controller waits: parks, stops */
	atomic_bool pause_req;
	bool paused;                     /* every vCPU parked, for the caller */
	int64_t clock_offset_ns;         /* guest clock = monotonic + offset */
	hv_evtchn_hook_fn hook;
	void *hook_arg;
	hv_gate_watch_fn gate_watch;     /* set while paused, read by back ends */
	void *gate_watch_arg;
	hv_disk_tap_fn disk_tap;         /* set while paused, read by blk */
	void *disk_tap_arg;
	struct uvm_dev *blk;             /* the block device, if any */
	struct uvm_dev *devs[UVM_MAX_BACKENDS]; /* table index = position + 1 */
	unsigned nr_devs;
	bool devs_running;               /* resumed (not quiesced) */
	atomic_bool gate_hold;
	_Atomic uint64_t gate_epoch;     /* epoch output is tagged with now */
	_Atomic uint64_t gate_released;  /* highest released epoch */
	struct uvm_xsave_info xsave;     /* from vCPU 0's first entry frame */
	struct hv_shutdown_info shutdown;
	unsigned nr_stopped;
};

static inline struct uvm_domain *uvm_dom(struct hv_domain *d)
{
	return (struct uvm_domain *)d;
}

static inline struct uvm_shared_info *uvm_shared(struct uvm_domain *dom)
{
	return (struct uvm_shared_info *)(dom->arena +
					  UVM_SHARED_INFO_PFN * UVM_PAGE_SIZE);
}

static inline struct uvm_start_info *uvm_start(struct uvm_domain *dom)
{
	return (struct uvm_start_info *)(dom->arena +
					 UVM_START_INFO_PFN * UVM_PAGE_SIZE);
}

uint64_t uvm_now_ns(void);
/* A CLOCK_MONOTONIC deadline in ns as a timespec, for condition waits. */
struct timespec uvm_abs_time(uint64_t ns);
uint64_t uvm_guest_clock(const struct uvm_domain *dom);

/* arena.c */
int uvm_arena_map(uint64_t size, uint8_t **out);
void uvm_arena_unmap(uint8_t *arena, uint64_t size);
int uvm_arena_populated(const uint8_t *arena, uint64_t size,
			uint64_t *bitmap);

/* elf.c: load the image into the arena; entry point out. */
int uvm_elf_load(const char *path, uint8_t *arena, uint64_t arena_size,
		 uint64_t *entry, uint64_t *image_end);

/* xsave.c */
int uvm_xsave_frame_len(const ucontext_t *uc, uint32_t *len);
int uvm_xsave_to_frame(ucontext_t *uc, const struct hv_vcpu_state *st,
		       char *why, size_t whylen);
void uvm_xsave_from_frame(const ucontext_t *uc, struct hv_vcpu_state *st);
void uvm_xsave_reset(struct hv_vcpu_state *st, const ucontext_t *uc);

/* vcpu.c */
int uvm_vcpu_start(struct uvm_vcpu *v);
void uvm_vcpu_join(struct uvm_vcpu *v);
int uvm_pause_all(struct uvm_domain *dom, struct hv_pause_info *info);
int uvm_unpause_all(struct uvm_domain *dom);
void uvm_stop_all(struct uvm_domain *dom, enum hv_shutdown_reason reason,
		  int64_t code, const char *detail);
void uvm_evtchn_raise(struct uvm_domain *dom, uint32_t port);
void uvm_vcpu_save_frame(struct uvm_vcpu *v, struct hv_vcpu_state *st);
int uvm_vcpu_load_frame(struct uvm_vcpu *v, const struct hv_vcpu_state *st);
const char *uvm_vcpu_state_name(enum uvm_vcpu_state s);

/* dev.c */
int uvm_devs_create(struct uvm_domain *dom, bool build);
void uvm_devs_free(struct uvm_domain *dom);
void uvm_devs_notify(struct uvm_domain *dom, uint32_t port);
int uvm_devs_quiesce(struct uvm_domain *dom);
void uvm_devs_resume(struct uvm_domain *dom);
void uvm_gate_init(struct uvm_domain *dom);
int uvm_gate_set_hold(struct uvm_domain *dom, bool hold);
uint64_t uvm_gate_advance(struct uvm_domain *dom);
int uvm_gate_release(struct uvm_domain *dom, uint64_t epoch);

/* console.c */
int uvm_console_new(struct uvm_domain *dom, int fd,
		    struct uvm_console **out);
void uvm_console_free(struct uvm_console *c);
void uvm_console_notify(struct uvm_console *c);
void uvm_console_direct(struct uvm_console *c, const char *buf, size_t len);

#endif
