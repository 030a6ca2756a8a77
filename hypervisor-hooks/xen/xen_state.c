/*
 * xen_state.c - vCPU, device and platform state of a Xen guest.
 *
 * A PVH guest's state outside memory is what Xen's own save path sends
 * (docs/specs/libxc-migration-stream: HVM_CONTEXT, HVM_PARAMS,
 * X86_TSC_INFO, X86_CPUID_POLICY, X86_MSR_POLICY).  tandem carries it as
 * three device blobs:
 *
 *   device 0  the HVM context, xc_domain_hvm_getcontext(): a list of
 *             {typecode, instance, length} records - every vCPU's CPU
 *             registers, LAPIC, MTRRs, XSAVE area, timers, ...
 *   device 1  the HVM params a restore needs ({u64 index, u64 value})
 *   device 2  TSC mode, frequency, elapsed time and incarnation, and the
 *             domain's CPUID and MSR policy
 *
 * hv_vcpu_save reads a vCPU's registers out of its CPU record; on a
 * replica, hv_vcpu_load keeps them and xen_context_apply_vcpus() lays them
 * over the committed context before the restore.  The blobs are only
 * loaded into a replica: a running domain gets its state through Xen's
 * restore path, never piecemeal.
 */
#include "xen_int.h"
#include "xen_state.h"
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <xen/hvm/params.h>
#include <xen/hvm/save.h>

#define XEN_HVM_CODE_CPU 2 /* HVM_SAVE_CODE(CPU) */

/* What xg_sr_save_x86_hvm.c sends; zero values are left out. */
static const uint32_t xen_params[] = {
	HVM_PARAM_STORE_PFN,          HVM_PARAM_IOREQ_PFN,
	HVM_PARAM_BUFIOREQ_PFN,       HVM_PARAM_PAGING_RING_PFN,
	HVM_PARAM_MONITOR_RING_PFN,   HVM_PARAM_SHARING_RING_PFN,
	HVM_PARAM_VM86_TSS_SIZED,     HVM_PARAM_CONSOLE_PFN,
	HVM_PARAM_ACPI_IOPORTS_LOCATION, HVM_PARAM_VIRIDIAN,
	HVM_PARAM_IDENT_PT,           HVM_PARAM_VM_GENERATION_ID_ADDR,
	HVM_PARAM_IOREQ_SERVER_PFN,   HVM_PARAM_NR_IOREQ_SERVER_PAGES,
	HVM_PARAM_X87_FIP_WIDTH,      HVM_PARAM_MCA_CAP,
};

#define XEN_NR_PARAMS (sizeof(xen_params) / sizeof(xen_params[0]))

unsigned xen_nr_vcpus(const struct hv_domain *dom)
{
	return xen_ofc(dom)->nr_vcpus;
}

unsigned xen_nr_devices(const struct hv_domain *dom)
{
	(void)dom;
	return XEN_NR_DEVS;
}

/* ---- the HVM context ------------------------------------------------------ */

/* The CPU record of `vcpu` inside a context blob (records are not padded:
 * it may sit at any offset, so it is copied, never dereferenced), or
 * NULL. */
uint8_t *xen_context_cpu(uint8_t *blob, size_t len, unsigned vcpu)
{
	size_t off = 0;

	while (off + sizeof(struct hvm_save_descriptor) <= len) {
		struct hvm_save_descriptor d;

		memcpy(&d, blob + off, sizeof(d));
		off += sizeof(d);
		if (d.length > len - off)
			return NULL;
		if (d.typecode == XEN_HVM_CODE_CPU && d.instance == vcpu &&
		    d.length >= sizeof(struct hvm_hw_cpu))
			return blob + off;
		if (d.typecode == 0) /* END */
			return NULL;
		off += d.length;
	}
	return NULL;
}

static void xen_cpu_to_vcpu(const struct hvm_hw_cpu *c, struct hv_vcpu_state *st)
{
	const uint64_t gpr[16] = { c->rax, c->rbx, c->rcx, c->rdx, c->rsi,
				   c->rdi, c->rbp, c->rsp, c->r8, c->r9,
				   c->r10, c->r11, c->r12, c->r13, c->r14,
				   c->r15 };

	memset(st, 0, offsetof(struct hv_vcpu_state, xsave));
	memcpy(st->gpr, gpr, sizeof(gpr));
	st->rip = c->rip;
	st->rflags = c->rflags;
	st->fs_base = c->fs_base;
	st->gs_base = c->gs_base;
	st->xsave_len = 0; /* the XSAVE area travels in the context blob */
}

static void xen_vcpu_to_cpu(const struct hv_vcpu_state *st, struct hvm_hw_cpu *c)
{
	uint64_t *const dst[16] = { &c->rax, &c->rbx, &c->rcx, &c->rdx,
				    &c->rsi, &c->rdi, &c->rbp, &c->rsp,
				    &c->r8, &c->r9, &c->r10, &c->r11,
				    &c->r12, &c->r13, &c->r14, &c->r15 };

	for (unsigned i = 0; i < 16; i++)
		*dst[i] = st->gpr[i];
	c->rip = st->rip;
	c->rflags = st->rflags;
	c->fs_base = st->fs_base;
	c->gs_base = st->gs_base;
}

int xen_vcpu_save(struct hv_domain *dom, unsigned vcpu,
		  struct hv_vcpu_state *st)
{
	struct xen_dom *x = xen_of(dom);
	struct hvm_hw_cpu cpu;

	if (vcpu >= x->nr_vcpus)
		return -EINVAL;
	if (x->state == XS_REPLICA) {
		if (!x->vcpu_set[vcpu])
			return -ENODATA;
		*st = x->vcpu[vcpu];
		return 0;
	}
	if (xc_domain_hvm_getcontext_partial(x->xch, x->domid,
					     XEN_HVM_CODE_CPU, (uint16_t)vcpu,
					     &cpu, sizeof(cpu)) != 0) {
		int rc = -errno;

		log_error("xen: %s: vCPU %u registers: %s", x->name, vcpu,
			  strerror(-rc));
		return rc;
	}
	xen_cpu_to_vcpu(&cpu, st);
	return 0;
}

int xen_vcpu_load(struct hv_domain *dom, unsigned vcpu,
		  const struct hv_vcpu_state *st)
{
	struct xen_dom *x = xen_of(dom);

	if (vcpu >= x->nr_vcpus)
		return -EINVAL;
	if (x->state != XS_REPLICA) {
		log_error("xen: %s: vCPU state goes into a Xen domain through "
			  "its restore, not into a live domain", x->name);
		return -EBUSY;
	}
	x->vcpu[vcpu] = *st;
	x->vcpu_set[vcpu] = true;
	return 0;
}

int xen_context_apply_vcpus(struct xen_dom *x)
{
	struct hv_device_state *ctx = &x->dev[XEN_DEV_HVM_CONTEXT];

	if (!x->dev_set[XEN_DEV_HVM_CONTEXT])
		return -ENODATA;
	for (unsigned v = 0; v < x->nr_vcpus; v++) {
		uint8_t *at = xen_context_cpu(ctx->blob, ctx->len, v);
		struct hvm_hw_cpu c;

		if (!x->vcpu_set[v])
			return -ENODATA;
		if (at == NULL) {
			log_error("xen: %s: the committed context has no CPU "
				  "record for vCPU %u", x->name, v);
			return -EINVAL;
		}
		memcpy(&c, at, sizeof(c));
		xen_vcpu_to_cpu(&x->vcpu[v], &c);
		memcpy(at, &c, sizeof(c));
	}
	return 0;
}

/* ---- device blobs ---------------------------------------------------------- */

static int xen_save_context(struct xen_dom *x, struct hv_device_state *st)
{
	int size = xc_domain_hvm_getcontext(x->xch, x->domid, NULL, 0);

	if (size <= 0)
		return -errno;
	if ((size_t)size > sizeof(st->blob)) {
		log_error("xen: %s: HVM context of %d bytes is over the %zu a "
			  "device blob holds", x->name, size, sizeof(st->blob));
		return -E2BIG;
	}
	size = xc_domain_hvm_getcontext(x->xch, x->domid, st->blob,
					(uint32_t)size);
	if (size <= 0)
		return -errno;
	st->len = (uint32_t)size;
	return 0;
}

static int xen_save_params(struct xen_dom *x, struct hv_device_state *st)
{
	uint64_t *out = (uint64_t *)st->blob;
	unsigned n = 0;

	for (unsigned i = 0; i < XEN_NR_PARAMS; i++) {
		uint64_t v = 0;

		if (xc_hvm_param_get(x->xch, x->domid, xen_params[i], &v) != 0)
			return -errno;
		if (v == 0)
			continue;
		out[2 * n] = xen_params[i];
		out[2 * n + 1] = v;
		n++;
	}
	st->len = n * 2 * sizeof(uint64_t);
	return 0;
}

static int xen_save_policy(struct xen_dom *x, struct xen_platform_blob *pb,
			   size_t room)
{
	xc_cpu_policy_t *pol = xc_cpu_policy_init();
	uint32_t nl = 0, nm = 0;
	int rc = pol ? 0 : -ENOMEM;

	if (rc == 0 && xc_cpu_policy_get_size(x->xch, &nl, &nm) != 0)
		rc = -errno;
	if (rc == 0 && (nl * sizeof(xen_cpuid_leaf_t) +
			nm * sizeof(xen_msr_entry_t)) > room)
		rc = -E2BIG;
	if (rc == 0 && xc_cpu_policy_get_domain(x->xch, x->domid, pol) != 0)
		rc = -errno;
	if (rc == 0) {
		xen_cpuid_leaf_t *leaves = (xen_cpuid_leaf_t *)pb->data;
		xen_msr_entry_t *msrs;
		uint32_t nl_out = nl, nm_out = nm;

		msrs = (xen_msr_entry_t *)(pb->data + nl * sizeof(*leaves));
		/* serialise packs leaves then msrs with their real counts */
		if (xc_cpu_policy_serialise(x->xch, pol, leaves, &nl_out,
					    msrs, &nm_out) != 0)
			rc = -errno;
		if (rc == 0 && nl_out < nl)
			memmove(pb->data + nl_out * sizeof(*leaves), msrs,
				nm_out * sizeof(*msrs));
		pb->nr_leaves = nl_out;
		pb->nr_msrs = nm_out;
	}
	xc_cpu_policy_destroy(pol);
	return rc;
}

static int xen_save_platform(struct xen_dom *x, struct hv_device_state *st)
{
	struct xen_platform_blob *pb = (struct xen_platform_blob *)st->blob;
	int rc;

	memset(pb, 0, sizeof(*pb));
	pb->version = XEN_PLATFORM_BLOB_V1;
	if (xc_domain_get_tsc_info(x->xch, x->domid, &pb->tsc_mode,
				   &pb->tsc_nsec, &pb->tsc_khz,
				   &pb->tsc_incarnation) != 0)
		return -errno;
	rc = xen_save_policy(x, pb, sizeof(st->blob) - sizeof(*pb));
	if (rc != 0) {
		log_error("xen: %s: CPU policy: %s", x->name, strerror(-rc));
		return rc;
	}
	st->len = (uint32_t)(sizeof(*pb) + pb->nr_leaves * sizeof(xen_cpuid_leaf_t) +
			     pb->nr_msrs * sizeof(xen_msr_entry_t));
	return 0;
}

int xen_device_save(struct hv_domain *dom, unsigned idx,
		    struct hv_device_state *st)
{
	struct xen_dom *x = xen_of(dom);

	if (idx >= XEN_NR_DEVS)
		return -EINVAL;
	if (x->state == XS_REPLICA) {
		if (!x->dev_set[idx])
			return -ENODATA;
		*st = x->dev[idx];
		return 0;
	}
	st->type = XEN_DEVTYPE_BASE + idx;
	st->port = 0;
	st->len = 0;
	switch (idx) {
	case XEN_DEV_HVM_CONTEXT:
		return xen_save_context(x, st);
	case XEN_DEV_HVM_PARAMS:
		return xen_save_params(x, st);
	default:
		return xen_save_platform(x, st);
	}
}

/* Checks a platform blob's counts against its length. */
int xen_platform_blob_check(const struct hv_device_state *st)
{
	const struct xen_platform_blob *pb = (const void *)st->blob;

	if (st->len < sizeof(*pb) || pb->version != XEN_PLATFORM_BLOB_V1)
		return -EINVAL;
	if ((uint64_t)pb->nr_leaves * sizeof(xen_cpuid_leaf_t) +
	    (uint64_t)pb->nr_msrs * sizeof(xen_msr_entry_t) !=
	    st->len - sizeof(*pb))
		return -EINVAL;
	return 0;
}

static int xen_blob_check(unsigned idx, const struct hv_device_state *st)
{
	if (st->type != XEN_DEVTYPE_BASE + idx || st->len > sizeof(st->blob))
		return -EINVAL;
	switch (idx) {
	case XEN_DEV_HVM_CONTEXT:
		return st->len >= sizeof(struct hvm_save_descriptor) ? 0 : -EINVAL;
	case XEN_DEV_HVM_PARAMS:
		return st->len % 16 == 0 ? 0 : -EINVAL;
	default:
		return xen_platform_blob_check(st);
	}
}

int xen_device_load(struct hv_domain *dom, unsigned idx,
		    const struct hv_device_state *st)
{
	struct xen_dom *x = xen_of(dom);

	if (idx >= XEN_NR_DEVS)
		return -EINVAL;
	if (x->state != XS_REPLICA) {
		log_error("xen: %s: device state goes into a Xen domain through "
			  "its restore, not into a live domain", x->name);
		return -EBUSY;
	}
	if (xen_blob_check(idx, st) != 0) {
		log_error("xen: %s: device %u: a blob of type %#" PRIx32
			  " and %" PRIu32 " bytes is not Xen state", x->name,
			  idx, st->type, st->len);
		return -EINVAL;
	}
	x->dev[idx] = *st;
	x->dev_set[idx] = true;
	return 0;
}

/* The guest's clocks (TSC, timers) travel in the context and platform
 * blobs; the generic guest clock is not used by Xen guests. */
int xen_platform_save(struct hv_domain *dom, struct hv_platform_state *st)
{
	(void)dom;
	st->guest_clock_ns = 0;
	return 0;
}

int xen_platform_load(struct hv_domain *dom,
		      const struct hv_platform_state *st)
{
	(void)dom;
	(void)st;
	return 0;
}
