/*
 * i4check.c - invariant I4 on a pagetest domain (see i4check.h).
 */
#include "i4check.h"
#include "pagetest_check.h"
#include "uvm_abi.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static const uint8_t *i4_page_at(void *ctx, uint64_t pfn)
{
	void *p = NULL;

	return hv_map(ctx, pfn, 1, false, &p) == 0 ? p : NULL;
}

int i4_check_domain(struct hv_domain *dom, char *msg, size_t len)
{
	const struct uvm_start_info *si;
	struct pagetest_result res;
	uint64_t pfn, pages;
	void *p = NULL;
	int rc;

	if (strcmp(hv_backend_name(dom), "uvm") != 0) {
		snprintf(msg, len, "I4 not available: the check reads uvm's "
			 "pagetest guest; on %s the guest checks itself "
			 "(tests/xen/guest/pagetest.c)", hv_backend_name(dom));
		return -ENOTSUP;
	}
	if (hv_map(dom, UVM_START_INFO_PFN, 1, false, &p) != 0) {
		snprintf(msg, len, "I4 FAILED: start info page unreadable");
		return -EFAULT;
	}
	si = p;
	pfn = si->report[UVM_REPORT_REGION_PFN];
	pages = si->report[UVM_REPORT_REGION_PAGES];
	if (pages == 0) {
		snprintf(msg, len, "I4 FAILED: no pagetest region reported "
			 "(is the guest pagetest?)");
		return -EINVAL;
	}
	rc = pagetest_check(i4_page_at, dom, pfn, pages, &res);
	if (rc == 0)
		rc = pagetest_check_passes(&res, si->report[UVM_REPORT_PASSES]);
	if (rc != 0)
		snprintf(msg, len, "I4 FAILED: %s", res.msg);
	else
		snprintf(msg, len, "I4 ok: %" PRIu64 " pages, edge at %" PRIu64
			 " (%u | %u)", pages, res.edge, res.before, res.after);
	return rc;
}
