/*
 * xen_state.h - the layout of the Xen backend's platform blob (device 2),
 * shared by xen_state.c (which fills it) and xen_promote.c (which turns it
 * into X86_TSC_INFO, X86_CPUID_POLICY and X86_MSR_POLICY records).
 */
#ifndef TANDEM_XEN_STATE_H
#define TANDEM_XEN_STATE_H

#include "hv.h"

#include <stddef.h>
#include <stdint.h>

#define XEN_PLATFORM_BLOB_V1 1

/* Followed by nr_leaves xen_cpuid_leaf_t (24 bytes each), then nr_msrs
 * xen_msr_entry_t (16 bytes each), in this host's byte order. */
struct xen_platform_blob {
	uint32_t version;
	uint32_t tsc_mode;
	uint32_t tsc_khz;
	uint32_t tsc_incarnation;
	uint64_t tsc_nsec;
	uint32_t nr_leaves;
	uint32_t nr_msrs;
	uint8_t data[];
};

int xen_platform_blob_check(const struct hv_device_state *st);

/* Where the CPU record (struct hvm_hw_cpu) of `vcpu` starts in an HVM
 * context blob, or NULL; at any alignment: copy it in and out. */
uint8_t *xen_context_cpu(uint8_t *blob, size_t len, unsigned vcpu);

#endif
