/*
 * xsave.c - vector state in signal frames.
 *
 * The kernel saves a vCPU's FPU/SSE/AVX(-512) state into the signal frame
 * in the standard (non-compacted) XSAVE layout.  Bytes 464..511 of the
 * legacy area carry the kernel's software-reserved block (magic1, the
 * xstate size and the feature mask of this frame); those describe the
 * host and are never overwritten from a saved state.  A saved area loads
 * into a frame when its features are a subset of the frame's and it is no
 * larger; the XSAVE header is checked as the kernel would on sigreturn,
 * because a bad header there kills the thread instead of reporting.
 */
#include "uvm.h"
#include "log.h"
#include "unaligned.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define XS_SW_OFF 464
#define XS_SW_END 512
#define XS_MAGIC1 0x46505853u
#define XS_HDR_OFF 512
#define XS_HDR_LEN 64
#define XS_LEGACY_LEN 512
#define XS_FCW_OFF 0
#define XS_MXCSR_OFF 24
#define XS_MXCSR_MASK_OFF 28
#define XS_FCW_INIT 0x37f
#define XS_MXCSR_INIT 0x1f80

static const uint8_t *xs_area(const ucontext_t *uc)
{
	return (const uint8_t *)uc->uc_mcontext.fpregs;
}

/* Length and feature mask of the frame's area (512 = FXSAVE only). */
static uint32_t xs_frame_info(const ucontext_t *uc, uint64_t *features)
{
	const uint8_t *a = xs_area(uc);

	if (get_u32(a + XS_SW_OFF) != XS_MAGIC1) {
		*features = 0x3; /* x87 | SSE */
		return XS_LEGACY_LEN;
	}
	*features = get_u64(a + XS_SW_OFF + 8);
	return get_u32(a + XS_SW_OFF + 16);
}

int uvm_xsave_frame_len(const ucontext_t *uc, uint32_t *len)
{
	uint64_t features;

	*len = xs_frame_info(uc, &features);
	return *len <= HV_XSAVE_MAX ? 0 : -E2BIG;
}

void uvm_xsave_from_frame(const ucontext_t *uc, struct hv_vcpu_state *st)
{
	uint32_t len = xs_frame_info(uc, &st->xfeatures);

	if (len > HV_XSAVE_MAX)
		len = HV_XSAVE_MAX;
	memcpy(st->xsave, xs_area(uc), len);
	st->xsave_len = len;
}

/* The checks the kernel makes on sigreturn, as errors we can report. */
static int xs_check_header(const struct hv_vcpu_state *st, uint64_t frame_features,
			   char *why, size_t whylen)
{
	const uint8_t *hdr = st->xsave + XS_HDR_OFF;
	uint64_t bv, mxcsr = get_u32(st->xsave + XS_MXCSR_OFF);

	if ((mxcsr & 0xffff0000u) != 0) {
		snprintf(why, whylen, "MXCSR 0x%" PRIx64 " sets reserved bits",
			 mxcsr);
		return -EINVAL;
	}
	if (st->xsave_len <= XS_HDR_OFF)
		return 0;
	if (st->xsave_len < XS_HDR_OFF + XS_HDR_LEN) {
		snprintf(why, whylen, "XSAVE area of %" PRIu32
			 " bytes cuts its header", st->xsave_len);
		return -EINVAL;
	}
	bv = get_u64(hdr);
	if ((bv & ~frame_features) != 0 || (bv & ~st->xfeatures) != 0) {
		snprintf(why, whylen, "XSAVE header features 0x%" PRIx64
			 " exceed the saved 0x%" PRIx64 " or this host's 0x%" PRIx64,
			 bv, st->xfeatures, frame_features);
		return -EINVAL;
	}
	for (unsigned i = 8; i < XS_HDR_LEN; i++) {
		if (hdr[i] != 0) {
			snprintf(why, whylen, "XSAVE header byte %u is 0x%02x, "
				 "must be 0 (compacted or corrupt)", i, hdr[i]);
			return -EINVAL;
		}
	}
	return 0;
}

int uvm_xsave_to_frame(ucontext_t *uc, const struct hv_vcpu_state *st,
		       char *why, size_t whylen)
{
	uint8_t *a = (uint8_t *)uc->uc_mcontext.fpregs;
	uint64_t features;
	uint32_t len = xs_frame_info(uc, &features);
	int rc;

	if (st->xsave_len < XS_LEGACY_LEN || st->xsave_len > len) {
		snprintf(why, whylen, "XSAVE area of %" PRIu32 " bytes does not "
			 "fit this host's %" PRIu32 "-byte frame", st->xsave_len,
			 len);
		return -EINVAL;
	}
	if ((st->xfeatures & ~features) != 0) {
		snprintf(why, whylen, "saved XSAVE features 0x%" PRIx64
			 " are not all present here (0x%" PRIx64 ")",
			 st->xfeatures, features);
		return -EOPNOTSUPP;
	}
	rc = xs_check_header(st, features, why, whylen);
	if (rc != 0)
		return rc;
	memcpy(a, st->xsave, XS_SW_OFF);
	if (st->xsave_len > XS_SW_END)
		memcpy(a + XS_SW_END, st->xsave + XS_SW_END,
		       st->xsave_len - XS_SW_END);
	return 0;
}

/* Architectural init state: x87 control word, MXCSR default, no
 * component marked in use. */
void uvm_xsave_reset(struct hv_vcpu_state *st, const ucontext_t *uc)
{
	uvm_xsave_from_frame(uc, st);
	memset(st->xsave, 0, XS_SW_OFF);
	put_u16(st->xsave + XS_FCW_OFF, XS_FCW_INIT);
	put_u32(st->xsave + XS_MXCSR_OFF, XS_MXCSR_INIT);
	memcpy(st->xsave + XS_MXCSR_MASK_OFF, xs_area(uc) + XS_MXCSR_MASK_OFF, 4);
	if (st->xsave_len > XS_SW_END)
		memset(st->xsave + XS_SW_END, 0, st->xsave_len - XS_SW_END);
}
