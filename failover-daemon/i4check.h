/*
 * i4check.h - invariant I4 on a uvm domain running (or holding the image
 * of) the pagetest guest: its region must be one valid pass-in-progress
 * (pagetest_check.h).  The domain must be paused or never run.
 */
#ifndef TANDEM_I4CHECK_H
#define TANDEM_I4CHECK_H

#include <stddef.h>

#include "hv.h"

/* 0 when I4 holds; -EINVAL (or -EFAULT) otherwise.  msg gets one line
 * either way. */
int i4_check_domain(struct hv_domain *dom, char *msg, size_t len);

#endif
