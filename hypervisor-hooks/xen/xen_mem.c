/*
 * xen_mem.c - guest memory of the Xen backend: one foreign mapping of the
 * whole pfn space (holes stay unmapped), Xen's log-dirty mode
 * (XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY / CLEAN / OFF, which on a PVH
 * guest runs on HAP), and the replica's private copy.
 *
 * Mapping once at attach makes hv_map a pointer computation: a checkpoint
 * copies thousands of pages while the guest is suspended, and a foreign
 * map per page would cost a hypercall and an mmap each.
 */
#include "xen_int.h"
#include "log.h"
#include "clock.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static uint64_t bm_words(uint64_t bits)
{
	return (bits + 63) / 64;
}

static void xen_mark(struct xen_dom *x, uint64_t pfn)
{
	uint64_t bit = 1ULL << (pfn % 64);

	if (!(x->present[pfn / 64] & bit)) {
		x->present[pfn / 64] |= bit;
		x->nr_present++;
	}
}

static bool xen_present(const struct xen_dom *x, uint64_t pfn)
{
	return x->present[pfn / 64] & (1ULL << (pfn % 64));
}

int xen_mem_map_all(struct xen_dom *x, uint64_t n)
{
	uint64_t t0 = mono_ns();
	xen_pfn_t *pfns;
	int *err, rc = 0;

	pfns = malloc(n * sizeof(*pfns));
	err = malloc(n * sizeof(*err));
	x->present = calloc(bm_words(x->nr_pages), sizeof(uint64_t));
	if (pfns == NULL || err == NULL || x->present == NULL)
		rc = -ENOMEM;
	for (uint64_t i = 0; rc == 0 && i < n; i++)
		pfns[i] = i;
	if (rc == 0) {
		x->mem = xenforeignmemory_map(x->fmem, x->domid,
					      PROT_READ | PROT_WRITE, n, pfns,
					      err);
		if (x->mem == NULL) {
			rc = -errno;
			log_error("xen: %s: mapping %" PRIu64 " guest frames of "
				  "domain %" PRIu32 " failed: %s", x->name, n,
				  x->domid, strerror(-rc));
		}
	}
	x->mapped = rc == 0 ? n : 0;
	x->nr_present = 0;
	for (uint64_t i = 0; rc == 0 && i < n; i++)
		if (err[i] == 0)
			xen_mark(x, i);
	free(pfns);
	free(err);
	if (rc == 0)
		log_info("xen: %s: mapped %" PRIu64 " of %" PRIu64 " frames in "
			 "%.2f s", x->name, x->nr_present, n,
			 (mono_ns() - t0) / 1e9);
	return rc;
}

int xen_mem_replica(struct xen_dom *x)
{
	size_t len = x->nr_pages * HV_PAGE_SIZE;
	void *m = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (m == MAP_FAILED)
		return -errno;
	x->mem = m;
	x->mapped = 0;
	x->present = calloc(bm_words(x->nr_pages), sizeof(uint64_t));
	x->nr_present = 0;
	return x->present ? 0 : -ENOMEM;
}

static void xen_dirty_buf_free(struct xen_dom *x)
{
	if (x->dirty_bm != NULL)
		xc__hypercall_buffer_free_pages(x->xch, &x->dirty_hbuf,
						(int)x->dirty_bm_pages);
	x->dirty_bm = NULL;
}

void xen_mem_free(struct xen_dom *x)
{
	xen_dirty_disable(&x->base);
	if (x->mem != NULL && x->mapped > 0)
		xenforeignmemory_unmap(x->fmem, x->mem, x->mapped);
	else if (x->mem != NULL)
		munmap(x->mem, x->nr_pages * HV_PAGE_SIZE);
	x->mem = NULL;
	x->mapped = 0;
	free(x->present);
	x->present = NULL;
	x->nr_present = 0;
}

uint64_t xen_nr_pages(const struct hv_domain *dom)
{
	return xen_ofc(dom)->nr_pages;
}

int xen_map(struct hv_domain *dom, uint64_t pfn, uint64_t count, bool write,
	    void **out)
{
	struct xen_dom *x = xen_of(dom);

	if (x->mem == NULL)
		return -ESRCH;
	for (uint64_t i = pfn; i < pfn + count; i++) {
		if (x->state == XS_REPLICA && write)
			xen_mark(x, i);
		else if (x->state != XS_REPLICA && !xen_present(x, i)) {
			log_error("xen: %s: frame %#" PRIx64 " is not populated",
				  x->name, i);
			return -ENXIO;
		}
	}
	*out = x->mem + pfn * HV_PAGE_SIZE;
	return 0;
}

void xen_unmap(struct hv_domain *dom, void *addr, uint64_t count)
{
	(void)dom;
	(void)addr;
	(void)count; /* part of the one mapping */
}

int xen_populated(struct hv_domain *dom, uint64_t *bitmap)
{
	const struct xen_dom *x = xen_of(dom);

	if (x->present == NULL)
		return -ESRCH;
	/* Xen cannot say which pages are all zero: every populated frame
	 * is reported, and must be sent (a restore populates what it gets). */
	for (uint64_t w = 0; w < bm_words(x->nr_pages); w++)
		bitmap[w] |= x->present[w];
	return 0;
}

/* ---- log-dirty ------------------------------------------------------------- */

static int xen_logdirty_op(struct xen_dom *x, unsigned op)
{
	return xc_shadow_control(x->xch, x->domid, op, NULL, 0) != 0 ? -errno
								     : 0;
}

int xen_dirty_enable(struct hv_domain *dom)
{
	struct xen_dom *x = xen_of(dom);
	uint64_t bytes = bm_words(x->nr_pages) * sizeof(uint64_t);
	int rc;

	if (x->state == XS_REPLICA || x->state == XS_GONE)
		return -ESRCH;
	if (x->dirty_on)
		return 0;
	x->dirty_bm_pages = (unsigned)((bytes + XC_PAGE_SIZE - 1) / XC_PAGE_SIZE);
	x->dirty_hbuf = (xc_hypercall_buffer_t){ .hbuf = NULL,
						 .param_shadow = NULL,
						 .dir = 0, .sz = 0,
						 .ubuf = (void *)-1 };
	x->dirty_bm = xc__hypercall_buffer_alloc_pages(x->xch, &x->dirty_hbuf,
						       (int)x->dirty_bm_pages);
	if (x->dirty_bm == NULL)
		return -ENOMEM;
	rc = xen_logdirty_op(x, XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY);
	if (rc == -EINVAL || rc == -EEXIST) {
		/* Left on by a process that died: take it over. */
		rc = xen_logdirty_op(x, XEN_DOMCTL_SHADOW_OP_OFF);
		if (rc == 0)
			rc = xen_logdirty_op(x,
					     XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY);
	}
	if (rc != 0) {
		log_error("xen: %s: cannot enable log-dirty on domain %" PRIu32
			  ": %s", x->name, x->domid, strerror(-rc));
		xen_dirty_buf_free(x);
		return rc;
	}
	x->dirty_on = true;
	log_info("xen: %s: log-dirty on (%u bitmap pages)", x->name,
		 x->dirty_bm_pages);
	return 0;
}

int xen_dirty_disable(struct hv_domain *dom)
{
	struct xen_dom *x = xen_of(dom);
	int rc = 0;

	if (!x->dirty_on)
		return 0;
	if (x->state != XS_GONE)
		rc = xen_logdirty_op(x, XEN_DOMCTL_SHADOW_OP_OFF);
	x->dirty_on = false;
	xen_dirty_buf_free(x);
	return rc;
}

int xen_dirty_fetch(struct hv_domain *dom, uint64_t *bitmap,
		    struct hv_dirty_stats *stats)
{
	struct xen_dom *x = xen_of(dom);
	uint64_t t0 = mono_ns(), pages = 0, stray = 0;
	const uint64_t *bm;

	if (!x->dirty_on)
		return -EINVAL;
	if (xc_logdirty_control(x->xch, x->domid, XEN_DOMCTL_SHADOW_OP_CLEAN,
				&x->dirty_hbuf, x->nr_pages, 0, NULL) < 0) {
		int rc = -errno;

		log_error("xen: %s: log-dirty fetch failed: %s", x->name,
			  strerror(-rc));
		return rc;
	}
	bm = (const uint64_t *)x->dirty_bm;
	for (uint64_t w = 0; w < bm_words(x->nr_pages); w++) {
		uint64_t d = bm[w], keep = d & x->present[w];

		bitmap[w] |= keep;
		pages += (uint64_t)__builtin_popcountll(keep);
		stray += (uint64_t)__builtin_popcountll(d & ~keep);
	}
	if (stray > 0 && x->stray_logged++ == 0)
		log_warn("xen: %s: %" PRIu64 " dirty frames were not populated "
			 "at attach (grant or foreign frames): not copied",
			 x->name, stray);
	stats->pages = pages;
	stats->regions = x->nr_pages;
	stats->fetch_ns = mono_ns() - t0;
	return 0;
}
