/*
 * xen_image.c - the xl save image writer and scanner (xen_image.h).
 *
 * Sources, in Xen's tree as of 4.17 (paths under tools/ unless docs/):
 *  - xl/xl.h (struct save_file_header, savefileheader_magic, the
 *    XL_MANDATORY_FLAG_*), xl/xl_saverestore.c
 *    save_domain_core_writeconfig() and xl/xl_vmcontrol.c create_domain():
 *    the xl header and its optional data.
 *  - docs/specs/libxl-migration-stream.pandoc (revision 2),
 *    libs/light/libxl_sr_stream_format.h, libxl_stream_write.c and
 *    libxl_stream_read.c: the libxl layer.
 *  - docs/specs/libxc-migration-stream.pandoc (revision 3),
 *    libs/guest/xg_sr_stream_format.h, xg_sr_save.c, xg_sr_save_x86_hvm.c,
 *    xg_sr_common.c, xg_sr_common_x86.c, xg_sr_restore.c,
 *    xg_sr_restore_x86_hvm.c, xg_save_restore.h: the libxc layer, and what
 *    the restorer refuses.
 *  - python/xen/migration/libxc.py and libxl.py (verify-stream-v2, as
 *    shipped in Debian's xen-utils-4.17): the reserved-field, padding and
 *    v2/v3 checks the scanner makes too.  That verifier accepts our
 *    images.
 *
 * Invariants:
 *  - The writer checks all of its input before its first write, so a
 *    refused input leaves the file untouched.
 *  - Every field is stored and loaded byte by byte in its stated byte
 *    order, so nothing depends on the host's byte order or struct layout.
 *  - The scanner reads sequentially through one 64 KiB buffer and never
 *    holds a record body: its memory does not grow with the image, and it
 *    works on pipes.
 */
#include "xen_image.h"
#include "errmsg.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- format constants ---------------------------------------------------- */

/* xl/xl.h: savefileheader_magic (32 bytes, no NUL after them),
 * SAVEFILE_BYTEORDER_VALUE, XL_MANDATORY_FLAG_{JSON,STREAMv2}.  The header
 * is magic[32] then u32 byteorder, mandatory_flags, optional_flags,
 * optional_data_len; the optional data starts with u32 config length. */
static const char xl_magic[32] = "Xen saved domain, xl format\n \0 \r";
#define XL_HEADER_LEN 48u
#define XL_BYTEORDER 0x01020304u
#define XL_FLAG_JSON (1u << 0)
#define XL_FLAG_STREAMV2 (1u << 1)

/* libxl-migration-stream.pandoc "Header"; libxl_sr_stream_format.h. */
#define LIBXL_IDENT 0x4c6962786c466d74ull /* "LibxlFmt" */
#define LIBXL_VERSION 2u
#define LIBXL_OPT_BIG_ENDIAN (1u << 0)
#define LIBXL_OPT_LEGACY (1u << 1)

/* libxc-migration-stream.pandoc "Image Header", "Domain Header";
 * xg_sr_stream_format.h; version 3 from xg_sr_save.c write_headers(). */
#define IHDR_MARKER 0xffffffffffffffffull
#define IHDR_ID 0x58454e46u /* "XENF" */
#define IHDR_VERSION 3u
#define IHDR_OPT_BIG_ENDIAN 1u
#define IHDR_LEN 24u
#define DHDR_LEN 16u
#define DHDR_TYPE_X86_HVM 2u /* xg_sr_save.c: every HVM domain, PVH too */
#define DHDR_TYPE_MAX 4u     /* 1 x86 PV .. 4 ARM */
#define PAGE_SHIFT 12u

/* libxc-migration-stream.pandoc "Records", "PAGE_DATA"; the length limit
 * is REC_LENGTH_MAX in xg_sr_stream_format.h (read_record() refuses more). */
#define REC_HDR_LEN 8u
#define REC_ALIGN 8u
#define REC_LENGTH_MAX (128u << 20)
#define REC_TYPE_OPTIONAL 0x80000000u
#define PFN_MASK ((1ull << 52) - 1)                   /* bits 0-51 */
#define PFN_RESERVED (((1ull << 60) - 1) & ~PFN_MASK) /* bits 52-59 */
#define PFN_TYPE_SHIFT 60                             /* bits 60-63 */
#define TSC_INFO_LEN 24u     /* struct xc_sr_rec_x86_tsc_info */
#define CPUID_LEAF_LEN 24u   /* xen_cpuid_leaf_t: leaf, subleaf, a-d */
#define MSR_ENTRY_LEN 16u    /* xen_msr_entry_t: idx, flags, val */
#define PARAM_LEN 16u        /* struct xc_sr_rec_hvm_params_entry */

_Static_assert(sizeof(xl_magic) == 32, "xl magic is 32 bytes");
_Static_assert(8 + XEN_IMAGE_BATCH * (8 + (uint64_t)XEN_IMAGE_PAGE_SIZE) <=
	       REC_LENGTH_MAX, "a full PAGE_DATA fits a record");
_Static_assert(XEN_IMAGE_PAGE_SIZE == 1u << PAGE_SHIFT, "page size");

static const char *const libxl_names[XEN_LIBXL_NTYPES] = {
	"END", "LIBXC_CONTEXT", "EMULATOR_XENSTORE_DATA",
	"EMULATOR_CONTEXT", "CHECKPOINT_END", "CHECKPOINT_STATE",
};

static const char *const libxc_names[XEN_LIBXC_NTYPES] = {
	"END", "PAGE_DATA", "X86_PV_INFO", "X86_PV_P2M_FRAMES",
	"X86_PV_VCPU_BASIC", "X86_PV_VCPU_EXTENDED", "X86_PV_VCPU_XSAVE",
	"SHARED_INFO", "X86_TSC_INFO", "HVM_CONTEXT", "HVM_PARAMS",
	"TOOLSTACK", "X86_PV_VCPU_MSRS", "VERIFY", "CHECKPOINT",
	"CHECKPOINT_DIRTY_PFN_LIST", "STATIC_DATA_END", "X86_CPUID_POLICY",
	"X86_MSR_POLICY",
};

const char *xen_image_libxl_name(uint32_t type)
{
	return type < XEN_LIBXL_NTYPES ? libxl_names[type] : "UNKNOWN";
}

const char *xen_image_libxc_name(uint32_t type)
{
	return type < XEN_LIBXC_NTYPES ? libxc_names[type] : "UNKNOWN";
}

/* ---- helpers ------------------------------------------------------------- */

static uint64_t pad_of(uint64_t len)
{
	return (REC_ALIGN - len % REC_ALIGN) % REC_ALIGN;
}

static uint64_t load_le(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static uint64_t load_be(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)load_le(p, 4);
}

/* ---- writer: buffered output --------------------------------------------- */

#define OUT_BUF (1u << 20)

struct out {
	int fd;
	int rc;
	uint8_t *buf;
	size_t len;        /* bytes waiting in buf */
	uint64_t off;      /* bytes already written to fd */
	char *err;
	size_t errlen;
};

static void out_fail(struct out *o, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void out_fail(struct out *o, int rc, const char *fmt, ...)
{
	va_list ap;

	if (o->rc)
		return;
	o->rc = rc;
	if (!o->err || !o->errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(o->err, o->errlen, fmt, ap);
	va_end(ap);
}

/* Writes out buf, looping on short writes and EINTR. */
static int out_flush(struct out *o)
{
	size_t done = 0;

	while (o->rc == 0 && done < o->len) {
		ssize_t n = write(o->fd, o->buf + done, o->len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int rc = n < 0 ? -errno : -EIO;

			out_fail(o, rc, "write at offset %" PRIu64 ": %s",
				 o->off + done, n < 0 ? strerror(-rc) :
				 "wrote nothing");
			break;
		}
		done += (size_t)n;
	}
	o->off += done;
	o->len = 0;
	return o->rc;
}

static void out_put(struct out *o, const void *p, size_t n)
{
	const uint8_t *b = p;

	while (o->rc == 0 && n) {
		size_t k = OUT_BUF - o->len;

		if (k == 0) {
			out_flush(o);
			continue;
		}
		if (k > n)
			k = n;
		memcpy(o->buf + o->len, b, k);
		o->len += k;
		b += k;
		n -= k;
	}
}

static void out_le(struct out *o, uint64_t v, unsigned n)
{
	uint8_t b[8];

	for (unsigned i = 0; i < n; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	out_put(o, b, n);
}

static void out_be(struct out *o, uint64_t v, unsigned n)
{
	uint8_t b[8];

	for (unsigned i = 0; i < n; i++)
		b[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
	out_put(o, b, n);
}

/* A record header of either stream layer: u32 type, u32 body length, in
 * the domain's (little-endian) byte order. */
static void out_rec_head(struct out *o, uint32_t type, uint32_t len)
{
	out_le(o, type, 4);
	out_le(o, len, 4);
}

static void out_record(struct out *o, uint32_t type, const void *body,
		       size_t len)
{
	static const uint8_t zero[REC_ALIGN];

	out_rec_head(o, type, (uint32_t)len);
	out_put(o, body, len);
	out_put(o, zero, pad_of(len));
}

/* ---- writer: input checks ------------------------------------------------ */

static int refuse(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int refuse(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

static int check_config(const struct xen_image_src *s, char *err,
			size_t errlen)
{
	const char *nul;

	if (!s->xl_config || s->xl_config_len == 0)
		return refuse(err, errlen, "xl config missing (length %zu)",
			      s->xl_config_len);
	if (s->xl_config_len > XEN_IMAGE_CONFIG_MAX)
		return refuse(err, errlen, "xl config length %zu > %u",
			      s->xl_config_len, XEN_IMAGE_CONFIG_MAX);
	nul = memchr(s->xl_config, '\0', s->xl_config_len);
	if (nul)
		return refuse(err, errlen, "xl config has a NUL byte at "
			      "offset %zu (xl text is expected, not JSON)",
			      (size_t)(nul - s->xl_config));
	return 0;
}

/* An optional policy body: NULL/0, or whole entries, within a record. */
static int check_policy(const char *what, const void *p, size_t len,
			unsigned entry, char *err, size_t errlen)
{
	if (!p && len)
		return refuse(err, errlen, "%s is NULL with length %zu", what,
			      len);
	if (len % entry)
		return refuse(err, errlen, "%s length %zu is not a multiple "
			      "of %u", what, len, entry);
	if (len > REC_LENGTH_MAX)
		return refuse(err, errlen, "%s length %zu > %u", what, len,
			      REC_LENGTH_MAX);
	return 0;
}

static int check_blobs(const struct xen_image_src *s, char *err,
		       size_t errlen)
{
	int rc;

	if (s->xen_major == 0 || s->xen_major > 0xffff ||
	    s->xen_minor > 0xffff)
		return refuse(err, errlen, "Xen version %" PRIu32 ".%" PRIu32
			      " (major 1..65535, minor 0..65535)",
			      s->xen_major, s->xen_minor);
	rc = check_policy("CPUID policy", s->cpuid, s->cpuid_len,
			  CPUID_LEAF_LEN, err, errlen);
	if (rc == 0)
		rc = check_policy("MSR policy", s->msrs, s->msrs_len,
				  MSR_ENTRY_LEN, err, errlen);
	if (rc)
		return rc;
	if (!s->hvm_context || s->hvm_context_len == 0)
		return refuse(err, errlen, "HVM context missing (length %zu)",
			      s->hvm_context_len);
	if (s->hvm_context_len > REC_LENGTH_MAX)
		return refuse(err, errlen, "HVM context length %zu > %u",
			      s->hvm_context_len, REC_LENGTH_MAX);
	return 0;
}

static int check_params(const struct xen_image_src *s, char *err,
			size_t errlen)
{
	const struct xen_image_param *p = s->params;

	if (s->nr_params > XEN_IMAGE_PARAMS_MAX)
		return refuse(err, errlen, "%u HVM params > %u", s->nr_params,
			      XEN_IMAGE_PARAMS_MAX);
	if (s->nr_params && !p)
		return refuse(err, errlen, "HVM params NULL with %u params",
			      s->nr_params);
	for (unsigned i = 0; i < s->nr_params; i++) {
		if (p[i].index >= XEN_IMAGE_PARAMS_MAX)
			return refuse(err, errlen, "HVM param %u: index %"
				      PRIu64 " >= %u", i, p[i].index,
				      XEN_IMAGE_PARAMS_MAX);
		for (unsigned j = 0; j < i; j++)
			if (p[j].index == p[i].index)
				return refuse(err, errlen, "HVM param %u: "
					      "index %" PRIu64 " repeats "
					      "param %u", i, p[i].index, j);
	}
	return 0;
}

static uint64_t count_present(const uint64_t *map, uint64_t nr)
{
	uint64_t n = 0, words = nr / 64;

	for (uint64_t i = 0; i < words; i++)
		n += (uint64_t)__builtin_popcountll(map[i]);
	if (nr % 64)
		n += (uint64_t)__builtin_popcountll(map[words] &
						    ((1ull << (nr % 64)) - 1));
	return n;
}

static int check_pages(const struct xen_image_src *s, uint64_t *total,
		       char *err, size_t errlen)
{
	if (s->nr_pfns == 0 || s->nr_pfns > PFN_MASK + 1)
		return refuse(err, errlen, "nr_pfns %" PRIu64 " not in "
			      "1..2^52", s->nr_pfns);
	if (!s->present || !s->page)
		return refuse(err, errlen, "%s missing", s->present ?
			      "page callback" : "present bitmap");
	*total = count_present(s->present, s->nr_pfns);
	if (*total == 0)
		return refuse(err, errlen, "no pfn of %" PRIu64 " is present",
			      s->nr_pfns);
	return 0;
}

static int check_src(const struct xen_image_src *s, uint64_t *total,
		     char *err, size_t errlen)
{
	int rc;

	if (!s)
		return refuse(err, errlen, "no source given");
	rc = check_config(s, err, errlen);
	if (rc == 0)
		rc = check_blobs(s, err, errlen);
	if (rc == 0)
		rc = check_params(s, err, errlen);
	if (rc == 0)
		rc = check_pages(s, total, err, errlen);
	return rc;
}

/* ---- writer: the image --------------------------------------------------- */

/* xl_saverestore.c save_domain_core_writeconfig(), with the config as xl
 * text: mandatory flags STREAMv2 alone (no JSON), no optional flags. */
static void put_xl_header(struct out *o, const struct xen_image_src *s)
{
	out_put(o, xl_magic, sizeof(xl_magic));
	out_le(o, XL_BYTEORDER, 4);
	out_le(o, XL_FLAG_STREAMV2, 4);
	out_le(o, 0, 4);
	out_le(o, 4 + s->xl_config_len, 4);
	out_le(o, s->xl_config_len, 4);
	out_put(o, s->xl_config, s->xl_config_len);
}

/* libxl header and LIBXC_CONTEXT (libxl_stream_write.c), then libxc's
 * image and domain headers (xg_sr_save.c write_headers()). */
static void put_stream_headers(struct out *o, const struct xen_image_src *s)
{
	out_be(o, LIBXL_IDENT, 8);
	out_be(o, LIBXL_VERSION, 4);
	out_be(o, 0, 4);                     /* options: little-endian */
	out_record(o, XEN_LIBXL_LIBXC_CONTEXT, NULL, 0);

	out_be(o, IHDR_MARKER, 8);
	out_be(o, IHDR_ID, 4);
	out_be(o, IHDR_VERSION, 4);
	out_be(o, 0, 2);                     /* options: little-endian */
	out_be(o, 0, 2);
	out_be(o, 0, 4);

	out_le(o, DHDR_TYPE_X86_HVM, 4);
	out_le(o, PAGE_SHIFT, 2);
	out_le(o, 0, 2);
	out_le(o, s->xen_major, 4);
	out_le(o, s->xen_minor, 4);
}

/* xg_sr_common_x86.c write_x86_cpu_policy_records(): each only when not
 * empty (the restorer refuses an empty one); then STATIC_DATA_END. */
static void put_static(struct out *o, const struct xen_image_src *s)
{
	if (s->cpuid && s->cpuid_len)
		out_record(o, XEN_LIBXC_X86_CPUID_POLICY, s->cpuid,
			   s->cpuid_len);
	if (s->msrs && s->msrs_len)
		out_record(o, XEN_LIBXC_X86_MSR_POLICY, s->msrs, s->msrs_len);
	out_record(o, XEN_LIBXC_STATIC_DATA_END, NULL, 0);
}

/* The next pfn at or after `pfn` whose bit is set, or nr. */
static uint64_t next_pfn(const uint64_t *map, uint64_t nr, uint64_t pfn)
{
	while (pfn < nr) {
		uint64_t w = map[pfn / 64] >> (pfn % 64);

		if (w) {
			pfn += (uint64_t)__builtin_ctzll(w);
			return pfn < nr ? pfn : nr;
		}
		pfn = (pfn | 63) + 1;
	}
	return nr;
}

/* One PAGE_DATA record: count, reserved, count pfn entries (page type
 * NOTAB, 0, in bits 60-63), then each page.  Its length is a multiple of
 * 8: no padding. */
static void put_batch(struct out *o, const struct xen_image_src *s,
		      const uint64_t *pfns, unsigned n)
{
	uint64_t len = 8 + (uint64_t)n * (8 + XEN_IMAGE_PAGE_SIZE);

	out_rec_head(o, XEN_LIBXC_PAGE_DATA, (uint32_t)len);
	out_le(o, n, 4);
	out_le(o, 0, 4);
	for (unsigned i = 0; i < n; i++)
		out_le(o, pfns[i], 8);
	for (unsigned i = 0; i < n && o->rc == 0; i++) {
		const void *page = s->page(s->arg, pfns[i]);

		if (!page) {
			out_fail(o, -EIO, "page callback gave no data for pfn "
				 "0x%" PRIx64, pfns[i]);
			return;
		}
		out_put(o, page, XEN_IMAGE_PAGE_SIZE);
	}
}

/* Present pages in ascending pfn order, XEN_IMAGE_BATCH per record, as
 * xg_sr_save.c send_dirty_pages() batches them. */
static void put_pages(struct out *o, const struct xen_image_src *s,
		      uint64_t total)
{
	uint64_t pfns[XEN_IMAGE_BATCH];
	uint64_t pfn = next_pfn(s->present, s->nr_pfns, 0), done = 0;

	while (o->rc == 0 && pfn < s->nr_pfns) {
		unsigned n = 0;

		for (; n < XEN_IMAGE_BATCH && pfn < s->nr_pfns; n++) {
			pfns[n] = pfn;
			pfn = next_pfn(s->present, s->nr_pfns, pfn + 1);
		}
		put_batch(o, s, pfns, n);
		done += n;
		if (o->rc == 0 && s->progress)
			s->progress(s->arg, done, total);
	}
}

static void put_tsc(struct out *o, const struct xen_image_tsc *t)
{
	out_rec_head(o, XEN_LIBXC_X86_TSC_INFO, TSC_INFO_LEN);
	out_le(o, t->mode, 4);
	out_le(o, t->khz, 4);
	out_le(o, t->nsec, 8);
	out_le(o, t->incarnation, 4);
	out_le(o, 0, 4);
}

/* xg_sr_save_x86_hvm.c write_hvm_params(): nonzero values only, and no
 * record when none is left. */
static void put_params(struct out *o, const struct xen_image_src *s)
{
	unsigned n = 0;

	for (unsigned i = 0; i < s->nr_params; i++)
		n += s->params[i].value != 0;
	if (n == 0)
		return;
	out_rec_head(o, XEN_LIBXC_HVM_PARAMS, 8 + n * PARAM_LEN);
	out_le(o, n, 4);
	out_le(o, 0, 4);
	for (unsigned i = 0; i < s->nr_params; i++) {
		if (s->params[i].value == 0)
			continue;
		out_le(o, s->params[i].index, 8);
		out_le(o, s->params[i].value, 8);
	}
}

int xen_image_write(int fd, const struct xen_image_src *src, char *err,
		    size_t errlen)
{
	struct out o = { .fd = fd, .err = err, .errlen = errlen };
	uint64_t total = 0;
	int rc = check_src(src, &total, err, errlen);

	if (rc)
		return rc;
	o.buf = malloc(OUT_BUF);
	if (!o.buf) {
		errmsg_set(err, errlen, "no memory for a %u-byte write buffer",
			OUT_BUF);
		return -ENOMEM;
	}
	put_xl_header(&o, src);
	put_stream_headers(&o, src);
	put_static(&o, src);
	put_pages(&o, src, total);
	/* x86_hvm_end_of_checkpoint(), HVM_PARAMS first (see xen_image.h) */
	put_tsc(&o, &src->tsc);
	put_params(&o, src);
	out_record(&o, XEN_LIBXC_HVM_CONTEXT, src->hvm_context,
		   src->hvm_context_len);
	out_record(&o, XEN_LIBXC_END, NULL, 0);
	out_record(&o, XEN_LIBXL_END, NULL, 0);
	out_flush(&o);
	free(o.buf);
	return o.rc;
}

/* ---- scanner: buffered input --------------------------------------------- */

#define IN_BUF (64u << 10)

struct in {
	int fd;
	int rc;
	uint8_t *buf;
	size_t pos, len;
	uint64_t off;           /* image offset of buf[pos] */
	const char *layer;      /* "xl", "libxl" or "libxc", for messages */
	bool seen_static_end;
	struct xen_image_info *info;
	void (*rec)(void *arg, const char *layer, uint32_t type,
		    const char *name, uint64_t len, uint64_t pages);
	void *arg;
	char *err;
	size_t errlen;
};

struct rec_hdr {
	uint64_t at;            /* offset of the record header */
	uint32_t type, len;
	const char *name;
};

static int fail(struct in *in, uint64_t at, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Records the first fault as -EINVAL: "offset N: LAYER: what". */
static int fail(struct in *in, uint64_t at, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	if (in->rc)
		return in->rc;
	in->rc = -EINVAL;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	errmsg_set(in->err, in->errlen, "offset %" PRIu64 ": %s: %s", at,
		in->layer, msg);
	return in->rc;
}

static int in_fill(struct in *in)
{
	for (;;) {
		ssize_t n = read(in->fd, in->buf, IN_BUF);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			in->rc = -errno;
			errmsg_set(in->err, in->errlen, "offset %" PRIu64
				": read: %s", in->off, strerror(errno));
			return in->rc;
		}
		in->pos = 0;
		in->len = (size_t)n;
		return 0;
	}
}

/* Takes n bytes into dst (or drops them when dst is NULL); the image
 * ending first is a truncation. */
static int in_get(struct in *in, void *dst, uint64_t n, const char *what)
{
	uint64_t start = in->off, want = n;
	uint8_t *d = dst;

	while (in->rc == 0 && n) {
		size_t k;

		if (in->pos == in->len && in_fill(in) == 0 && in->len == 0)
			return fail(in, start, "truncated: %s is %" PRIu64
				    " bytes, the image ends after %" PRIu64,
				    what, want, want - n);
		if (in->rc)
			break;
		k = in->len - in->pos < n ? in->len - in->pos : (size_t)n;
		if (d) {
			memcpy(d, in->buf + in->pos, k);
			d += k;
		}
		in->pos += k;
		in->off += k;
		n -= k;
	}
	return in->rc;
}

static int in_padding(struct in *in, const struct rec_hdr *r)
{
	uint8_t pad[REC_ALIGN];
	uint64_t n = pad_of(r->len), at = in->off;

	if (in_get(in, pad, n, "padding"))
		return in->rc;
	for (unsigned i = 0; i < n; i++)
		if (pad[i])
			return fail(in, at + i, "%s: padding byte %u is "
				    "0x%02x, not 0", r->name, i, pad[i]);
	return 0;
}

static int in_rec_hdr(struct in *in, struct rec_hdr *r)
{
	uint8_t h[REC_HDR_LEN];

	r->at = in->off;
	if (in_get(in, h, sizeof(h), "record header"))
		return in->rc;
	r->type = le32(h);
	r->len = le32(h + 4);
	return 0;
}

static void report(struct in *in, const struct rec_hdr *r, uint64_t pages)
{
	if (in->rec)
		in->rec(in->arg, in->layer, r->type, r->name, r->len, pages);
}

/* ---- scanner: xl --------------------------------------------------------- */

/* xl_vmcontrol.c create_domain(): u32 config length, then that much
 * config; anything after it in the optional data is skipped. */
static int scan_xl_optional(struct in *in)
{
	struct xen_image_info *info = in->info;
	uint32_t opt = info->xl_optional_len;
	uint64_t at = in->off;
	uint8_t b[4];

	if (opt == 0)
		return 0;
	if (opt < 4)
		return fail(in, at, "optional data of %" PRIu32 " bytes is "
			    "too short for the config length", opt);
	if (in_get(in, b, 4, "config length"))
		return in->rc;
	info->config_len = le32(b);
	if (info->config_len > opt - 4)
		return fail(in, at, "config length %" PRIu32 " > the %" PRIu32
			    " bytes of optional data after it",
			    info->config_len, opt - 4);
	return in_get(in, NULL, opt - 4, "optional data");
}

static int scan_xl(struct in *in)
{
	struct xen_image_info *info = in->info;
	uint8_t h[XL_HEADER_LEN];
	uint32_t order, flags;
	struct rec_hdr r = { .name = "header" };

	in->layer = "xl";
	if (in_get(in, h, sizeof(h), "header"))
		return in->rc;
	if (memcmp(h, xl_magic, sizeof(xl_magic)))
		return fail(in, 0, "bad magic: not an xl save image");
	order = le32(h + 32);
	if (order != XL_BYTEORDER)
		return fail(in, 32, "byte order mark 0x%08" PRIx32 ", want "
			    "0x%08x little-endian", order, XL_BYTEORDER);
	flags = info->xl_mandatory_flags = le32(h + 36);
	info->xl_optional_flags = le32(h + 40);
	info->xl_optional_len = le32(h + 44);
	info->config_json = flags & XL_FLAG_JSON;
	if (flags & ~(XL_FLAG_JSON | XL_FLAG_STREAMV2))
		return fail(in, 36, "unknown mandatory flags 0x%08" PRIx32,
			    flags & ~(XL_FLAG_JSON | XL_FLAG_STREAMV2));
	if (!(flags & XL_FLAG_STREAMV2))
		return fail(in, 36, "mandatory flags 0x%" PRIx32 " lack "
			    "STREAMv2 (0x2): a legacy stream", flags);
	if (scan_xl_optional(in))
		return in->rc;
	r.type = flags;
	r.len = info->config_len;
	report(in, &r, 0);
	return 0;
}

/* ---- scanner: libxc ------------------------------------------------------ */

/* Body length rules: min, max, and a multiple it must be (the spec's
 * record sections and the restorer's handlers). */
struct len_rule {
	uint32_t min, max, mult;
};

static const struct len_rule libxc_rules[XEN_LIBXC_NTYPES] = {
	[XEN_LIBXC_END] = { 0, 0, 1 },
	[XEN_LIBXC_PAGE_DATA] = { 16, REC_LENGTH_MAX, 8 },
	[XEN_LIBXC_X86_PV_INFO] = { 8, 8, 1 },
	[XEN_LIBXC_X86_PV_P2M_FRAMES] = { 8, REC_LENGTH_MAX, 8 },
	[XEN_LIBXC_X86_PV_VCPU_BASIC] = { 8, REC_LENGTH_MAX, 1 },
	[XEN_LIBXC_X86_PV_VCPU_EXTENDED] = { 8, REC_LENGTH_MAX, 1 },
	[XEN_LIBXC_X86_PV_VCPU_XSAVE] = { 8, REC_LENGTH_MAX, 1 },
	[XEN_LIBXC_SHARED_INFO] = { 4096, 4096, 1 },
	[XEN_LIBXC_X86_TSC_INFO] = { TSC_INFO_LEN, TSC_INFO_LEN, 1 },
	[XEN_LIBXC_HVM_CONTEXT] = { 1, REC_LENGTH_MAX, 1 },
	[XEN_LIBXC_HVM_PARAMS] = { 8, REC_LENGTH_MAX, 8 },
	[XEN_LIBXC_TOOLSTACK] = { 0, REC_LENGTH_MAX, 1 },
	[XEN_LIBXC_X86_PV_VCPU_MSRS] = { 8, REC_LENGTH_MAX, 1 },
	[XEN_LIBXC_VERIFY] = { 0, 0, 1 },
	[XEN_LIBXC_CHECKPOINT] = { 0, 0, 1 },
	[XEN_LIBXC_CHECKPOINT_DIRTY_PFN_LIST] = { 0, REC_LENGTH_MAX, 8 },
	[XEN_LIBXC_STATIC_DATA_END] = { 0, 0, 1 },
	[XEN_LIBXC_X86_CPUID_POLICY] = { CPUID_LEAF_LEN, REC_LENGTH_MAX,
					 CPUID_LEAF_LEN },
	[XEN_LIBXC_X86_MSR_POLICY] = { MSR_ENTRY_LEN, REC_LENGTH_MAX,
				       MSR_ENTRY_LEN },
};

static int check_len(struct in *in, const struct rec_hdr *r,
		     const struct len_rule *l)
{
	if (r->len < l->min || r->len > l->max)
		return fail(in, r->at + 4, "%s: length %" PRIu32 " not in "
			    "%" PRIu32 "..%" PRIu32, r->name, r->len, l->min,
			    l->max);
	if (r->len % l->mult)
		return fail(in, r->at + 4, "%s: length %" PRIu32 " is not a "
			    "multiple of %" PRIu32, r->name, r->len, l->mult);
	return 0;
}

static int scan_libxc_headers(struct in *in)
{
	struct xen_image_info *info = in->info;
	uint8_t h[IHDR_LEN], d[DHDR_LEN];
	uint64_t at = in->off;

	if (in_get(in, h, sizeof(h), "image header"))
		return in->rc;
	if (load_be(h, 8) != IHDR_MARKER)
		return fail(in, at, "image header marker 0x%016" PRIx64
			    ", want all ones", load_be(h, 8));
	if (load_be(h + 8, 4) != IHDR_ID)
		return fail(in, at + 8, "image header id 0x%08" PRIx64 ", "
			    "want 0x%08x (\"XENF\")", load_be(h + 8, 4),
			    IHDR_ID);
	info->libxc_version = (uint32_t)load_be(h + 12, 4);
	info->libxc_options = (uint32_t)load_be(h + 16, 2);
	if (info->libxc_version < 2 || info->libxc_version > IHDR_VERSION)
		return fail(in, at + 12, "image header version %" PRIu32
			    ", want 2 or 3", info->libxc_version);
	if (info->libxc_options & IHDR_OPT_BIG_ENDIAN)
		return fail(in, at + 16, "a big-endian stream");
	if (info->libxc_options || load_be(h + 18, 2) || load_be(h + 20, 4))
		return fail(in, at + 16, "image header reserved bits set");
	at = in->off;
	if (in_get(in, d, sizeof(d), "domain header"))
		return in->rc;
	info->domain_type = le32(d);
	info->page_shift = (uint32_t)load_le(d + 4, 2);
	info->xen_major = le32(d + 8);
	info->xen_minor = le32(d + 12);
	if (info->domain_type == 0 || info->domain_type > DHDR_TYPE_MAX)
		return fail(in, at, "domain type %" PRIu32 " unknown",
			    info->domain_type);
	if (info->page_shift != PAGE_SHIFT)
		return fail(in, at + 4, "page_shift %" PRIu32 ", want %u",
			    info->page_shift, PAGE_SHIFT);
	if (load_le(d + 6, 2))
		return fail(in, at + 6, "domain header reserved bits set");
	return 0;
}

/* One pfn entry; counts it, and in *data the entries that carry a page:
 * types NOTAB and L1..L4TAB, pinned or not (spec "PAGE_DATA"). */
static int check_pfn(struct in *in, uint64_t e, uint64_t at, uint32_t i,
		     uint64_t *data)
{
	unsigned type = (unsigned)(e >> PFN_TYPE_SHIFT);

	if (e & PFN_RESERVED)
		return fail(in, at, "PAGE_DATA: pfn[%" PRIu32 "] 0x%016" PRIx64
			    " has reserved bits 52-59 set", i, e);
	if (type >= 5 && type <= 8)
		return fail(in, at, "PAGE_DATA: pfn[%" PRIu32 "] 0x%016" PRIx64
			    " has unknown page type 0x%x", i, e, type);
	in->info->pfn_entries++;
	if ((type & 7) <= 4) {
		(*data)++;
		if ((e & PFN_MASK) > in->info->max_pfn)
			in->info->max_pfn = e & PFN_MASK;
	}
	return 0;
}

static int scan_pfns(struct in *in, uint32_t count, uint64_t *data)
{
	uint8_t buf[512 * 8];

	for (uint32_t i = 0; i < count;) {
		uint32_t n = count - i < 512 ? count - i : 512;
		uint64_t at = in->off;

		if (in_get(in, buf, (uint64_t)n * 8, "PAGE_DATA pfns"))
			return in->rc;
		for (uint32_t j = 0; j < n; j++)
			if (check_pfn(in, load_le(buf + 8 * j, 8), at + 8 * j,
				      i + j, data))
				return in->rc;
		i += n;
	}
	return 0;
}

/* count, reserved, count pfn entries, then a page for each that carries
 * one; the length must be exactly that (xg_sr_restore.c
 * handle_page_data()). */
static int scan_page_data(struct in *in, const struct rec_hdr *r,
			  uint64_t *pages)
{
	uint8_t h[8];
	uint32_t count;
	uint64_t want;

	if (in->info->libxc_version >= 3 && !in->seen_static_end)
		return fail(in, r->at, "PAGE_DATA before STATIC_DATA_END "
			    "(required first in a v3 stream)");
	if (in_get(in, h, sizeof(h), "PAGE_DATA header"))
		return in->rc;
	count = le32(h);
	if (count == 0)
		return fail(in, r->at + 8, "PAGE_DATA: count 0");
	if (le32(h + 4))
		return fail(in, r->at + 12, "PAGE_DATA: reserved field 0x%08"
			    PRIx32 ", not 0", le32(h + 4));
	if ((uint64_t)count * 8 > r->len - 8u)
		return fail(in, r->at + 8, "PAGE_DATA: count %" PRIu32 " needs"
			    " %" PRIu64 " bytes of pfns, the body has %" PRIu32
			    " after its header", count, (uint64_t)count * 8,
			    r->len - 8u);
	if (scan_pfns(in, count, pages))
		return in->rc;
	want = 8 + (uint64_t)count * 8 + *pages * XEN_IMAGE_PAGE_SIZE;
	if (r->len != want)
		return fail(in, r->at + 4, "PAGE_DATA: length %" PRIu32 ", want"
			    " 8 + 8 * %" PRIu32 " pfns + 4096 * %" PRIu64
			    " pages = %" PRIu64, r->len, count, *pages, want);
	if (count > in->info->max_batch)
		in->info->max_batch = count;
	in->info->pages += *pages;
	return in_get(in, NULL, *pages * XEN_IMAGE_PAGE_SIZE,
		      "PAGE_DATA pages");
}

static int scan_tsc(struct in *in, const struct rec_hdr *r)
{
	struct xen_image_tsc *t = &in->info->tsc;
	uint8_t b[TSC_INFO_LEN];

	if (in_get(in, b, sizeof(b), "X86_TSC_INFO body"))
		return in->rc;
	if (le32(b + 20))
		return fail(in, r->at + 8 + 20, "X86_TSC_INFO: reserved field "
			    "0x%08" PRIx32 ", not 0", le32(b + 20));
	t->mode = le32(b);
	t->khz = le32(b + 4);
	t->nsec = load_le(b + 8, 8);
	t->incarnation = le32(b + 16);
	return 0;
}

/* count, reserved, then count {index, value} (xg_sr_restore_x86_hvm.c
 * handle_hvm_params()). */
static int scan_params(struct in *in, const struct rec_hdr *r)
{
	uint8_t h[8];
	uint32_t count;

	if (in_get(in, h, sizeof(h), "HVM_PARAMS header"))
		return in->rc;
	count = le32(h);
	if (le32(h + 4))
		return fail(in, r->at + 12, "HVM_PARAMS: reserved field 0x%08"
			    PRIx32 ", not 0", le32(h + 4));
	if (r->len != 8 + (uint64_t)count * PARAM_LEN)
		return fail(in, r->at + 4, "HVM_PARAMS: length %" PRIu32 ", "
			    "want 8 + 16 * %" PRIu32 " params", r->len, count);
	in->info->nr_params = count;
	return in_get(in, NULL, (uint64_t)count * PARAM_LEN,
		      "HVM_PARAMS entries");
}

/* Reads the body of a known libxc record and notes what it holds. */
static int scan_libxc_body(struct in *in, const struct rec_hdr *r,
			   uint64_t *pages)
{
	struct xen_image_info *info = in->info;

	switch (r->type) {
	case XEN_LIBXC_PAGE_DATA:
		return scan_page_data(in, r, pages);
	case XEN_LIBXC_X86_TSC_INFO:
		return scan_tsc(in, r);
	case XEN_LIBXC_HVM_PARAMS:
		return scan_params(in, r);
	case XEN_LIBXC_STATIC_DATA_END:
		if (in->seen_static_end)
			return fail(in, r->at, "a second STATIC_DATA_END");
		in->seen_static_end = true;
		return 0;
	case XEN_LIBXC_HVM_CONTEXT:
		info->hvm_context_len = r->len;
		break;
	case XEN_LIBXC_X86_CPUID_POLICY:
		info->cpuid_leaves = r->len / CPUID_LEAF_LEN;
		break;
	case XEN_LIBXC_X86_MSR_POLICY:
		info->msr_entries = r->len / MSR_ENTRY_LEN;
		break;
	}
	return in_get(in, NULL, r->len, r->name);
}

/* As Xen 4.17's verify-stream-v2 (python/xen/migration/libxc.py): the v3
 * records are refused in a v2 stream, and TOOLSTACK (deprecated) and
 * CHECKPOINT_DIRTY_PFN_LIST (back channel only) in any image; an HVM
 * restore would refuse those two as unhandled mandatory records too. */
static int check_allowed(struct in *in, const struct rec_hdr *r)
{
	switch (r->type) {
	case XEN_LIBXC_STATIC_DATA_END:
	case XEN_LIBXC_X86_CPUID_POLICY:
	case XEN_LIBXC_X86_MSR_POLICY:
		if (in->info->libxc_version < 3)
			return fail(in, r->at, "%s in a v%" PRIu32 " stream "
				    "(a v3 record)", r->name,
				    in->info->libxc_version);
		return 0;
	case XEN_LIBXC_TOOLSTACK:
	case XEN_LIBXC_CHECKPOINT_DIRTY_PFN_LIST:
		return fail(in, r->at, "%s never belongs in a saved image",
			    r->name);
	}
	return 0;
}

static int scan_libxc_record(struct in *in, uint32_t *type)
{
	struct rec_hdr r;
	uint64_t pages = 0;

	if (in_rec_hdr(in, &r))
		return in->rc;
	*type = r.type;
	r.name = xen_image_libxc_name(r.type);
	if (r.len > REC_LENGTH_MAX)
		return fail(in, r.at + 4, "%s (0x%08" PRIx32 "): length %"
			    PRIu32 " > %u", r.name, r.type, r.len,
			    REC_LENGTH_MAX);
	if (r.type >= XEN_LIBXC_NTYPES && !(r.type & REC_TYPE_OPTIONAL))
		return fail(in, r.at, "unknown mandatory record type 0x%08"
			    PRIx32, r.type);
	if (r.type < XEN_LIBXC_NTYPES) {
		if (check_allowed(in, &r) ||
		    check_len(in, &r, &libxc_rules[r.type]) ||
		    scan_libxc_body(in, &r, &pages))
			return in->rc;
		in->info->libxc_count[r.type]++;
	} else {
		if (in_get(in, NULL, r.len, "optional record"))
			return in->rc;
		in->info->libxc_optional++;
	}
	if (in_padding(in, &r))
		return in->rc;
	report(in, &r, pages);
	return 0;
}

static int scan_libxc(struct in *in)
{
	uint32_t type;

	in->layer = "libxc";
	if (scan_libxc_headers(in))
		return in->rc;
	do {
		if (scan_libxc_record(in, &type))
			return in->rc;
	} while (type != XEN_LIBXC_END);
	in->layer = "libxl";
	return 0;
}

/* ---- scanner: libxl ------------------------------------------------------ */

static const struct len_rule libxl_rules[XEN_LIBXL_NTYPES] = {
	[XEN_LIBXL_END] = { 0, 0, 1 },
	[XEN_LIBXL_LIBXC_CONTEXT] = { 0, 0, 1 },
	[XEN_LIBXL_EMULATOR_XENSTORE_DATA] = { 8, UINT32_MAX, 1 },
	[XEN_LIBXL_EMULATOR_CONTEXT] = { 8, UINT32_MAX, 1 },
	[XEN_LIBXL_CHECKPOINT_END] = { 0, 0, 1 },
	[XEN_LIBXL_CHECKPOINT_STATE] = { 4, UINT32_MAX, 1 },
};

static int scan_libxl_header(struct in *in)
{
	struct xen_image_info *info = in->info;
	uint8_t h[16];
	uint64_t at = in->off;

	in->layer = "libxl";
	if (in_get(in, h, sizeof(h), "stream header"))
		return in->rc;
	if (load_be(h, 8) != LIBXL_IDENT)
		return fail(in, at, "ident 0x%016" PRIx64 ", want 0x%016llx "
			    "(\"LibxlFmt\")", load_be(h, 8), LIBXL_IDENT);
	info->libxl_version = (uint32_t)load_be(h + 8, 4);
	info->libxl_options = (uint32_t)load_be(h + 12, 4);
	if (info->libxl_version != LIBXL_VERSION)
		return fail(in, at + 8, "version %" PRIu32 ", want %u",
			    info->libxl_version, LIBXL_VERSION);
	if (info->libxl_options & LIBXL_OPT_BIG_ENDIAN)
		return fail(in, at + 12, "a big-endian stream");
	if (info->libxl_options & ~(LIBXL_OPT_BIG_ENDIAN | LIBXL_OPT_LEGACY))
		return fail(in, at + 12, "reserved option bits 0x%08" PRIx32
			    " set", info->libxl_options);
	return 0;
}

static int scan_libxl_record(struct in *in, uint32_t *type)
{
	struct rec_hdr r;

	if (in_rec_hdr(in, &r))
		return in->rc;
	*type = r.type;
	r.name = xen_image_libxl_name(r.type);
	/* libxl_stream_read.c process_record() refuses any unknown type */
	if (r.type >= XEN_LIBXL_NTYPES)
		return fail(in, r.at, "unknown record type 0x%08" PRIx32,
			    r.type);
	if (check_len(in, &r, &libxl_rules[r.type]) ||
	    in_get(in, NULL, r.len, r.name) || in_padding(in, &r))
		return in->rc;
	in->info->libxl_count[r.type]++;
	report(in, &r, 0);
	if (r.type != XEN_LIBXL_LIBXC_CONTEXT)
		return 0;
	if (in->info->libxl_count[r.type] > 1)
		return fail(in, r.at, "a second LIBXC_CONTEXT");
	return scan_libxc(in);
}

static int scan_libxl(struct in *in)
{
	uint32_t type;
	uint64_t at;

	if (scan_libxl_header(in))
		return in->rc;
	do {
		at = in->off;
		if (scan_libxl_record(in, &type))
			return in->rc;
	} while (type != XEN_LIBXL_END);
	if (in->info->libxl_count[XEN_LIBXL_LIBXC_CONTEXT] == 0)
		return fail(in, at, "END without a LIBXC_CONTEXT record");
	return 0;
}

/* After the libxl END the image must end. */
static int scan_tail(struct in *in)
{
	uint64_t at = in->off, extra = 0;

	for (;;) {
		extra += in->len - in->pos;
		in->pos = in->len;
		if (in_fill(in))
			return in->rc;
		if (in->len == 0)
			break;
	}
	if (extra)
		return fail(in, at, "%" PRIu64 " bytes after the libxl END "
			    "record", extra);
	return 0;
}

int xen_image_scan(int fd, struct xen_image_info *info,
		   void (*rec)(void *arg, const char *layer, uint32_t type,
			       const char *name, uint64_t len, uint64_t pages),
		   void *arg, char *err, size_t errlen)
{
	struct xen_image_info local;
	struct in in = {
		.fd = fd, .layer = "xl", .info = info ? info : &local,
		.rec = rec, .arg = arg, .err = err, .errlen = errlen,
	};

	memset(in.info, 0, sizeof(*in.info));
	in.buf = malloc(IN_BUF);
	if (!in.buf) {
		errmsg_set(err, errlen, "no memory for a %u-byte read buffer",
			IN_BUF);
		return -ENOMEM;
	}
	if (scan_xl(&in) == 0 && scan_libxl(&in) == 0)
		scan_tail(&in);
	in.info->bytes = in.off;
	free(in.buf);
	return in.rc;
}
