/*
 * dev.h - host back ends of uvm devices (internal to hypervisor-hooks/uvm).
 *
 * A back end runs on its own thread, off the vCPU threads.  The domain
 * calls it through this table:
 *
 *   notify    the guest notified the device's port (vCPU exit path: only
 *             wake the back end's thread, never block)
 *   quiesce   stop touching guest memory and return once idle; called with
 *             every vCPU parked, so memory and device state can be copied
 *   resume    carry on after quiesce (or start, after a load)
 *   save      the back end's private state (quiesced)
 *   load      private state from a save on another host (quiesced, before
 *             the first resume): re-issue what was in flight, re-listen
 *   release   the output gate moved: output of epochs <= `epoch` may go
 *   free      stop the thread and release everything
 *
 * Output gate: while the domain holds output, a back end tags what would
 * leave the guest (bytes to a client, a write completion to the guest) with
 * uvm_gate_epoch() and lets it out only once uvm_gate_released() reaches
 * that epoch.  uvm_gate_epoch() also tells the domain's gate watch (so it
 * is called exactly when output is tagged, and nowhere else).  When not holding, the gate is open and output goes at once.
 */
#ifndef TANDEM_UVM_DEV_H
#define TANDEM_UVM_DEV_H

#include <stdbool.h>
#include <stdint.h>

#include "hv.h"

struct uvm_domain;
struct uvm_dev;

struct uvm_dev_ops {
	const char *name;
	uint32_t type;
	void (*notify)(struct uvm_dev *dev);
	int (*quiesce)(struct uvm_dev *dev);
	void (*resume)(struct uvm_dev *dev);
	int (*save)(struct uvm_dev *dev, struct hv_device_state *st);
	int (*load)(struct uvm_dev *dev, const struct hv_device_state *st);
	void (*release)(struct uvm_dev *dev, uint64_t epoch);
	void (*free)(struct uvm_dev *dev);
};

/* Embedded first in each back end's own struct. */
struct uvm_dev {
	const struct uvm_dev_ops *ops;
	struct uvm_domain *dom;
	unsigned index;  /* position in the device table */
	uint32_t port;
};

/* Creation, one per type: the device table entry is filled by the domain.
 * `build` is true for a fresh guest (initialise the rings), false for a
 * restore (rings come from the snapshot's memory). */
int uvm_blk_new(struct uvm_domain *dom, const char *path, bool build,
		struct uvm_dev **out);
int uvm_stream_new(struct uvm_domain *dom, const char *listen, bool build,
		   struct uvm_dev **out);

/* For back ends. */
void *uvm_dev_guest_ptr(struct uvm_dev *dev, uint64_t pfn, uint64_t count);
int uvm_dev_guest_write(struct uvm_dev *dev, uint64_t pfn, uint64_t count,
			void **ptr);
void uvm_dev_raise(struct uvm_dev *dev);
uint64_t uvm_gate_epoch(const struct uvm_dev *dev);
uint64_t uvm_gate_released(const struct uvm_dev *dev);

#endif
