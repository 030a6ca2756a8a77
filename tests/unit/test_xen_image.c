/*
 * test_xen_image.c - the xl save image writer and scanner
 * (hypervisor-hooks/xen/xen_image.c; layouts in Xen's
 * docs/specs/libxc-migration-stream.pandoc, libxl-migration-stream.pandoc
 * and tools/xl/xl.h).
 *
 * The round trip writes an image from synthetic state (1216 pages in two
 * PAGE_DATA records, pfns up to 0xfefff, params, TSC, context, CPUID and
 * MSR bodies), then checks it twice: with xen_image_scan() (every fact and
 * the record order), and byte by byte with a walker written here from the
 * specs, not from the writer (headers, every body, padding, every pfn
 * entry and page).  Then:
 *  - batching at the 1024-page boundary, and a write streamed through a
 *    pipe into the scanner;
 *  - the scanner refusing, with -EINVAL and a message naming the layer
 *    and the fault: a cut at every offset, bad magics, versions, options,
 *    reserved fields, padding, lengths, page types, record types, order,
 *    trailing bytes, records that never belong; and accepting what real
 *    images hold (JSON config, XTAB entries, optional records, a v2
 *    stream without the v3 records);
 *  - the writer refusing bad input with -EINVAL before writing a byte,
 *    and reporting a failing fd and a missing page;
 *  - both ends under short writes, short reads and EINTR (this file
 *    defines write() and read(), which the module's calls bind to).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "expect_msg.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "xen/xen_image.h"

#define PAGE 4096u

/* ---- short transfers and EINTR ------------------------------------------- */

/*
 * While `chaos` is set, every third call fails with EINTR and the others
 * move at most 777 (write) or 333 (read) bytes.  Otherwise they pass
 * straight to the system calls.
 */
static int chaos;
static unsigned chaos_calls;

ssize_t write(int fd, const void *buf, size_t n)
{
	if (chaos && ++chaos_calls % 3 == 0) {
		errno = EINTR;
		return -1;
	}
	if (chaos && n > 777)
		n = 777;
	return syscall(SYS_write, fd, buf, n);
}

ssize_t read(int fd, void *buf, size_t n)
{
	if (chaos && ++chaos_calls % 3 == 0) {
		errno = EINTR;
		return -1;
	}
	if (chaos && n > 333)
		n = 333;
	return syscall(SYS_read, fd, buf, n);
}

/* ---- spec helpers, independent of the code under test -------------------- */

static uint64_t ld_le(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;

	for (unsigned i = n; i-- > 0;)
		v = v << 8 | p[i];
	return v;
}

static void st_le(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void st_be(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

/* xl.h savefileheader_magic, spelled out. */
static const uint8_t xl_magic[32] = {
	'X', 'e', 'n', ' ', 's', 'a', 'v', 'e', 'd', ' ', 'd', 'o', 'm', 'a',
	'i', 'n', ',', ' ', 'x', 'l', ' ', 'f', 'o', 'r', 'm', 'a', 't', '\n',
	' ', 0, ' ', '\r',
};

struct srec {
	int libxc;      /* layer */
	uint32_t type, len;
	size_t at;      /* offset of the record header */
};

struct walk {
	size_t libxl_at;  /* libxl stream header */
	size_t libxc_at;  /* libxc image header */
	struct srec r[64];
	unsigned n;
	size_t end;       /* offset just past the libxl END */
};

/* Walks the record headers by the specs alone: xl header (48 bytes) and
 * optional data, libxl header (16), LIBXC_CONTEXT, libxc headers (24 +
 * 16), libxc records to END, libxl records to END.  Bodies padded to 8. */
static void walk_image(const uint8_t *img, size_t n, struct walk *w)
{
	size_t at;
	int libxc = 0;

	memset(w, 0, sizeof(*w));
	assert_true(n >= 52);
	w->libxl_at = 48 + ld_le(img + 44, 4);
	at = w->libxl_at + 16;
	for (;;) {
		struct srec *r = &w->r[w->n++];

		assert_true(w->n < 64 && at + 8 <= n);
		r->libxc = libxc;
		r->type = (uint32_t)ld_le(img + at, 4);
		r->len = (uint32_t)ld_le(img + at + 4, 4);
		r->at = at;
		at += 8 + ((r->len + 7u) & ~7u);
		if (!libxc && r->type == 1) {            /* LIBXC_CONTEXT */
			w->libxc_at = at;
			at += 40;
			libxc = 1;
		} else if (r->type == 0 && libxc) {      /* libxc END */
			libxc = 0;
		} else if (r->type == 0) {               /* libxl END */
			break;
		}
	}
	w->end = at;
}

static const struct srec *find(const struct walk *w, int libxc,
			       uint32_t type, unsigned nth)
{
	for (unsigned i = 0; i < w->n; i++)
		if (w->r[i].libxc == libxc && w->r[i].type == type &&
		    nth-- == 0)
			return &w->r[i];
	return NULL;
}

/* ---- synthetic guest state ----------------------------------------------- */

struct guest {
	uint64_t nr_pfns;
	uint64_t *present;
	uint8_t page[PAGE];
	uint64_t pages_asked;
	uint64_t null_at;          /* the page callback fails here */
	uint64_t progress_calls, progress_done, progress_total;
};

static void fill_page(uint64_t pfn, uint8_t *p)
{
	for (unsigned i = 0; i < PAGE / 8; i++)
		st_le(p + 8 * i, ((pfn << 12) | i) * 0x9e3779b97f4a7c15ull, 8);
}

static const void *guest_page(void *arg, uint64_t pfn)
{
	struct guest *g = arg;

	g->pages_asked++;
	if (pfn == g->null_at)
		return NULL;
	fill_page(pfn, g->page);
	return g->page;
}

static void guest_progress(void *arg, uint64_t done, uint64_t total)
{
	struct guest *g = arg;

	assert_true(done > g->progress_done);
	assert_true(done <= total);
	g->progress_calls++;
	g->progress_done = done;
	g->progress_total = total;
}

static void set_pfn(struct guest *g, uint64_t pfn)
{
	g->present[pfn / 64] |= 1ull << (pfn % 64);
}

static void guest_init(struct guest *g, uint64_t nr_pfns)
{
	memset(g, 0, sizeof(*g));
	g->nr_pfns = nr_pfns;
	g->present = calloc((nr_pfns + 63) / 64, 8);
	g->null_at = UINT64_MAX;
	assert_non_null(g->present);
}

static const char config[] =
	"name = \"pvh-guest\"\ntype = \"pvh\"\nmemory = 4096\nvcpus = 2\n"
	"kernel = \"/root/domu/vmlinuz\"\n";

static uint8_t cpuid[3 * 24], msrs[2 * 16], context[1005];

static const struct xen_image_param params[] = {
	{ 1, 0xfeffc },         /* HVM_PARAM_STORE_PFN */
	{ 17, 0xfeffd },        /* HVM_PARAM_CONSOLE_PFN */
	{ 10, 0 },              /* zero: not written */
	{ 12, 0xfeffd000 },     /* HVM_PARAM_IDENT_PT */
};

static void fill_blobs(void)
{
	for (size_t i = 0; i < sizeof(cpuid); i++)
		cpuid[i] = (uint8_t)(0x10 + i);
	for (size_t i = 0; i < sizeof(msrs); i++)
		msrs[i] = (uint8_t)(0xa0 + i);
	for (size_t i = 0; i < sizeof(context); i++)
		context[i] = (uint8_t)(i * 7 + 1);
}

static struct xen_image_src make_src(struct guest *g)
{
	struct xen_image_src s = {
		.xl_config = config, .xl_config_len = sizeof(config) - 1,
		.xen_major = 4, .xen_minor = 17,
		.cpuid = cpuid, .cpuid_len = sizeof(cpuid),
		.msrs = msrs, .msrs_len = sizeof(msrs),
		.tsc = { .mode = 2, .khz = 2400000, .nsec = 123456789012ull,
			 .incarnation = 3 },
		.hvm_context = context, .hvm_context_len = sizeof(context),
		.params = params, .nr_params = 4,
		.nr_pfns = g->nr_pfns, .present = g->present,
		.page = guest_page, .arg = g,
	};

	fill_blobs();
	return s;
}

/* ---- files --------------------------------------------------------------- */

static int new_fd(void)
{
	int fd = memfd_create("xen_image", MFD_CLOEXEC);

	assert_true(fd >= 0);
	return fd;
}

static uint8_t *slurp(int fd, size_t *n)
{
	struct stat st;
	uint8_t *b;

	assert_int_equal(fstat(fd, &st), 0);
	*n = (size_t)st.st_size;
	b = malloc(*n + 1);
	assert_non_null(b);
	assert_int_equal(pread(fd, b, *n, 0), (ssize_t)*n);
	return b;
}

static uint8_t *write_image(const struct xen_image_src *s, size_t *n)
{
	char err[256] = "";
	int fd = new_fd();
	int rc = xen_image_write(fd, s, err, sizeof(err));
	uint8_t *b;

	if (rc)
		print_error("xen_image_write: %d %s\n", rc, err);
	assert_int_equal(rc, 0);
	b = slurp(fd, n);
	close(fd);
	return b;
}

static int scan_buf(const uint8_t *b, size_t n, struct xen_image_info *info,
		    char *err, size_t errlen)
{
	int fd = new_fd();
	int rc;

	assert_int_equal(write(fd, b, n), (ssize_t)n);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	rc = xen_image_scan(fd, info, NULL, NULL, err, errlen);
	close(fd);
	return rc;
}

/* ---- the scan callback --------------------------------------------------- */

struct seen {
	char layer[8];
	uint32_t type;
	char name[32];
	uint64_t len, pages;
};

struct seen_log {
	struct seen s[64];
	unsigned n;
};

static void on_rec(void *arg, const char *layer, uint32_t type,
		   const char *name, uint64_t len, uint64_t pages)
{
	struct seen_log *l = arg;
	struct seen *s = &l->s[l->n++];

	assert_true(l->n < 64);
	snprintf(s->layer, sizeof(s->layer), "%s", layer);
	snprintf(s->name, sizeof(s->name), "%s", name);
	s->type = type;
	s->len = len;
	s->pages = pages;
}

/* ---- round trip ---------------------------------------------------------- */

#define BIG_PFNS 0xff000ull

/* 0..99, 0x1000..0x144b (1100), 0xfeff0..0xfefff (16): 1216 pages. */
static void big_guest(struct guest *g, uint64_t *pfns)
{
	unsigned k = 0;

	guest_init(g, BIG_PFNS);
	for (uint64_t p = 0; p < 100; p++)
		pfns[k++] = p;
	for (uint64_t p = 0x1000; p < 0x1000 + 1100; p++)
		pfns[k++] = p;
	for (uint64_t p = 0xfeff0; p <= 0xfefff; p++)
		pfns[k++] = p;
	assert_int_equal(k, 1216);
	for (unsigned i = 0; i < k; i++)
		set_pfn(g, pfns[i]);
}

static void check_info(const struct xen_image_info *i, size_t n)
{
	assert_int_equal(i->xl_mandatory_flags, 2);
	assert_int_equal(i->xl_optional_flags, 0);
	assert_int_equal(i->xl_optional_len, 4 + sizeof(config) - 1);
	assert_int_equal(i->config_len, sizeof(config) - 1);
	assert_false(i->config_json);
	assert_int_equal(i->libxl_version, 2);
	assert_int_equal(i->libxl_options, 0);
	assert_int_equal(i->libxc_version, 3);
	assert_int_equal(i->libxc_options, 0);
	assert_int_equal(i->domain_type, 2);
	assert_int_equal(i->page_shift, 12);
	assert_int_equal(i->xen_major, 4);
	assert_int_equal(i->xen_minor, 17);
	assert_int_equal(i->libxl_count[XEN_LIBXL_LIBXC_CONTEXT], 1);
	assert_int_equal(i->libxl_count[XEN_LIBXL_END], 1);
	assert_int_equal(i->libxc_count[XEN_LIBXC_PAGE_DATA], 2);
	assert_int_equal(i->libxc_count[XEN_LIBXC_END], 1);
	assert_int_equal(i->libxc_optional, 0);
	assert_int_equal(i->pages, 1216);
	assert_int_equal(i->pfn_entries, 1216);
	assert_int_equal(i->max_pfn, 0xfefff);
	assert_int_equal(i->max_batch, 1024);
	assert_int_equal(i->tsc.mode, 2);
	assert_int_equal(i->tsc.khz, 2400000);
	assert_int_equal(i->tsc.nsec, 123456789012ull);
	assert_int_equal(i->tsc.incarnation, 3);
	assert_int_equal(i->nr_params, 3);
	assert_int_equal(i->hvm_context_len, sizeof(context));
	assert_int_equal(i->cpuid_leaves, 3);
	assert_int_equal(i->msr_entries, 2);
	assert_int_equal(i->bytes, n);
}

static void check_order(const struct seen_log *l)
{
	static const struct { const char *layer, *name; uint32_t type;
			      uint64_t len, pages; } want[] = {
		{ "xl", "header", 2, sizeof(config) - 1, 0 },
		{ "libxl", "LIBXC_CONTEXT", 1, 0, 0 },
		{ "libxc", "X86_CPUID_POLICY", 0x11, 72, 0 },
		{ "libxc", "X86_MSR_POLICY", 0x12, 32, 0 },
		{ "libxc", "STATIC_DATA_END", 0x10, 0, 0 },
		{ "libxc", "PAGE_DATA", 1, 8 + 1024 * (8 + PAGE), 1024 },
		{ "libxc", "PAGE_DATA", 1, 8 + 192 * (8 + PAGE), 192 },
		{ "libxc", "X86_TSC_INFO", 8, 24, 0 },
		{ "libxc", "HVM_PARAMS", 0xa, 8 + 3 * 16, 0 },
		{ "libxc", "HVM_CONTEXT", 9, sizeof(context), 0 },
		{ "libxc", "END", 0, 0, 0 },
		{ "libxl", "END", 0, 0, 0 },
	};

	assert_int_equal(l->n, sizeof(want) / sizeof(want[0]));
	for (unsigned i = 0; i < l->n; i++) {
		assert_string_equal(l->s[i].layer, want[i].layer);
		assert_string_equal(l->s[i].name, want[i].name);
		assert_int_equal(l->s[i].type, want[i].type);
		assert_int_equal(l->s[i].len, want[i].len);
		assert_int_equal(l->s[i].pages, want[i].pages);
	}
}

static void check_headers(const uint8_t *b, const struct walk *w)
{
	static const uint8_t libxl_hdr[16] = {
		'L', 'i', 'b', 'x', 'l', 'F', 'm', 't', 0, 0, 0, 2, 0, 0, 0, 0,
	};
	static const uint8_t libxc_hdr[40] = {
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 'X', 'E', 'N',
		'F', 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0,
		2, 0, 0, 0, 12, 0, 0, 0, 4, 0, 0, 0, 17, 0, 0, 0,
	};
	size_t clen = sizeof(config) - 1;

	assert_memory_equal(b, xl_magic, 32);
	assert_memory_equal(b + 32, "\x04\x03\x02\x01", 4);
	assert_int_equal(ld_le(b + 36, 4), 2);
	assert_int_equal(ld_le(b + 40, 4), 0);
	assert_int_equal(ld_le(b + 44, 4), 4 + clen);
	assert_int_equal(ld_le(b + 48, 4), clen);
	assert_memory_equal(b + 52, config, clen);
	assert_int_equal(w->libxl_at, 52 + clen);
	assert_memory_equal(b + w->libxl_at, libxl_hdr, 16);
	assert_memory_equal(b + w->libxc_at, libxc_hdr, 40);
	for (unsigned i = 0; i < w->n; i++)
		assert_int_equal((w->r[i].at - w->libxl_at) % 8, 0);
}

/* A body and its zero padding. */
static void check_body(const uint8_t *b, const struct srec *r,
		       const void *want, size_t len)
{
	assert_non_null(r);
	assert_int_equal(r->len, len);
	assert_memory_equal(b + r->at + 8, want, len);
	for (size_t i = len; i % 8; i++)
		assert_int_equal(b[r->at + 8 + i], 0);
}

static void check_small_bodies(const uint8_t *b, const struct walk *w)
{
	uint8_t tsc[24], prm[8 + 3 * 16];

	check_body(b, find(w, 1, 0x11, 0), cpuid, sizeof(cpuid));
	check_body(b, find(w, 1, 0x12, 0), msrs, sizeof(msrs));
	check_body(b, find(w, 1, 9, 0), context, sizeof(context));
	st_le(tsc, 2, 4);
	st_le(tsc + 4, 2400000, 4);
	st_le(tsc + 8, 123456789012ull, 8);
	st_le(tsc + 16, 3, 4);
	st_le(tsc + 20, 0, 4);
	check_body(b, find(w, 1, 8, 0), tsc, sizeof(tsc));
	st_le(prm, 3, 4);
	st_le(prm + 4, 0, 4);
	st_le(prm + 8, 1, 8);
	st_le(prm + 16, 0xfeffc, 8);
	st_le(prm + 24, 17, 8);
	st_le(prm + 32, 0xfeffd, 8);
	st_le(prm + 40, 12, 8);
	st_le(prm + 48, 0xfeffd000, 8);
	check_body(b, find(w, 1, 0xa, 0), prm, sizeof(prm));
	assert_int_equal(find(w, 1, 0x10, 0)->len, 0);
	assert_int_equal(find(w, 1, 0, 0)->len, 0);
	assert_int_equal(find(w, 0, 0, 0)->len, 0);
}

/* Every pfn entry (type NOTAB) and every page, in order. */
static void check_pages(const uint8_t *b, const struct walk *w,
			const uint64_t *pfns, unsigned total)
{
	uint8_t want[PAGE];
	unsigned k = 0;
	const struct srec *r;

	for (unsigned nth = 0; (r = find(w, 1, 1, nth)) != NULL; nth++) {
		const uint8_t *body = b + r->at + 8;
		uint32_t count = (uint32_t)ld_le(body, 4);

		assert_int_equal(count, nth == 0 ? 1024 : 192);
		assert_int_equal(ld_le(body + 4, 4), 0);
		assert_int_equal(r->len, 8 + (uint64_t)count * (8 + PAGE));
		for (uint32_t i = 0; i < count; i++) {
			assert_int_equal(ld_le(body + 8 + 8 * i, 8),
					 pfns[k + i]);
			fill_page(pfns[k + i], want);
			assert_memory_equal(body + 8 + 8 * count +
					    (size_t)i * PAGE, want, PAGE);
		}
		k += count;
	}
	assert_int_equal(k, total);
}

static void test_round_trip(void **state)
{
	static uint64_t pfns[1216];
	struct xen_image_info info;
	struct seen_log log = { .n = 0 };
	struct guest g;
	struct walk w;
	struct xen_image_src s;
	char err[256] = "";
	size_t n;
	uint8_t *b;
	int fd;

	(void)state;
	big_guest(&g, pfns);
	s = make_src(&g);
	s.progress = guest_progress;
	fd = new_fd();
	assert_int_equal(xen_image_write(fd, &s, err, sizeof(err)), 0);
	assert_int_equal(g.progress_calls, 2);
	assert_int_equal(g.progress_done, 1216);
	assert_int_equal(g.progress_total, 1216);
	assert_int_equal(g.pages_asked, 1216);

	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	assert_int_equal(xen_image_scan(fd, &info, on_rec, &log, err,
					sizeof(err)), 0);
	b = slurp(fd, &n);
	close(fd);
	check_info(&info, n);
	check_order(&log);

	walk_image(b, n, &w);
	assert_int_equal(w.end, n);
	check_headers(b, &w);
	check_small_bodies(b, &w);
	check_pages(b, &w, pfns, 1216);
	free(b);
	free(g.present);
}

/* 1024 pages a record: the boundary. */
static void test_batches(void **state)
{
	static const unsigned counts[] = { 1, 1023, 1024, 1025, 2048, 2049 };

	(void)state;
	for (unsigned c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
		struct xen_image_info info;
		struct guest g;
		struct xen_image_src s;
		char err[256] = "";
		size_t n;
		uint8_t *b;

		guest_init(&g, 4 * counts[c]);
		for (unsigned i = 0; i < counts[c]; i++)
			set_pfn(&g, 3 * i + 1);   /* spread, ascending */
		s = make_src(&g);
		b = write_image(&s, &n);
		assert_int_equal(scan_buf(b, n, &info, err, sizeof(err)), 0);
		assert_int_equal(info.pages, counts[c]);
		assert_int_equal(info.libxc_count[XEN_LIBXC_PAGE_DATA],
				 (counts[c] + 1023) / 1024);
		assert_int_equal(info.max_batch,
				 counts[c] < 1024 ? counts[c] : 1024);
		assert_int_equal(info.max_pfn, 3 * (counts[c] - 1) + 1);
		free(b);
		free(g.present);
	}
}

struct pipe_job {
	int fd;
	const struct xen_image_src *src;
	int rc;
	char err[256];
};

static void *pipe_writer(void *arg)
{
	struct pipe_job *j = arg;

	j->rc = xen_image_write(j->fd, j->src, j->err, sizeof(j->err));
	close(j->fd);
	return NULL;
}

/* Both ends work on a pipe: no seeking, short reads. */
static void test_through_pipe(void **state)
{
	static uint64_t pfns[1216];
	struct xen_image_info info;
	struct pipe_job job = { .rc = -1 };
	struct xen_image_src s;
	struct guest g;
	pthread_t t;
	char err[256] = "";
	int p[2];

	(void)state;
	big_guest(&g, pfns);
	s = make_src(&g);
	assert_int_equal(pipe(p), 0);
	job.fd = p[1];
	job.src = &s;
	assert_int_equal(pthread_create(&t, NULL, pipe_writer, &job), 0);
	assert_int_equal(xen_image_scan(p[0], &info, NULL, NULL, err,
					sizeof(err)), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	close(p[0]);
	assert_int_equal(job.rc, 0);
	assert_int_equal(info.pages, 1216);
	assert_int_equal(info.libxc_count[XEN_LIBXC_END], 1);
	free(g.present);
}

/* The same image, byte for byte, when every write is short or
 * interrupted; and the scanner reads it the same way. */
static void test_short_transfers(void **state)
{
	static uint64_t pfns[1216];
	struct xen_image_info info;
	struct xen_image_src s;
	struct guest g;
	char err[256] = "";
	size_t n, m;
	uint8_t *want, *got;
	int fd = new_fd(), rc;

	(void)state;
	big_guest(&g, pfns);
	s = make_src(&g);
	want = write_image(&s, &n);
	chaos = 1;
	chaos_calls = 0;
	rc = xen_image_write(fd, &s, err, sizeof(err));
	chaos = 0;
	assert_int_equal(rc, 0);
	assert_true(chaos_calls > n / 777);    /* the interposer ran */
	got = slurp(fd, &m);
	assert_int_equal(m, n);
	assert_memory_equal(got, want, n);

	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	chaos = 1;
	chaos_calls = 0;
	rc = xen_image_scan(fd, &info, NULL, NULL, err, sizeof(err));
	chaos = 0;
	assert_int_equal(rc, 0);
	assert_true(chaos_calls > n / 333);
	assert_int_equal(info.pages, 1216);
	assert_int_equal(info.bytes, n);
	close(fd);
	free(want);
	free(got);
	free(g.present);
}

/* ---- the scanner refusing ------------------------------------------------ */

/* Three pages (pfns 0, 1, 5), 1005-byte context: every record kind. */
static uint8_t *small_image(size_t *n, struct walk *w)
{
	struct guest g;
	struct xen_image_src s;
	uint8_t *b;

	guest_init(&g, 64);
	set_pfn(&g, 0);
	set_pfn(&g, 1);
	set_pfn(&g, 5);
	s = make_src(&g);
	b = write_image(&s, n);
	free(g.present);
	walk_image(b, *n, w);
	return b;
}

static void expect_bad_(const char *file, int line, const uint8_t *b,
			size_t n, ...)
{
	struct xen_image_info info;
	char err[256] = "", what[48];
	va_list ap;
	int rc = scan_buf(b, n, &info, err, sizeof(err));

	snprintf(what, sizeof(what), "scan of %zu bytes", n);
	va_start(ap, n);
	expect_msg_v(file, line, what, rc, -EINVAL, err, ap);
	va_end(ap);
}

#define expect_bad(b, n, ...) \
	expect_bad_(__FILE__, __LINE__, b, n, __VA_ARGS__, (const char *)NULL)

/* A copy of the good image with `len` bytes at `at` set to v (byte order
 * given by be), checked to be refused with the fragments. */
#define expect_patched(good, n, at, v, len, be, ...) do {		\
	uint8_t *c_ = malloc(n);					\
	assert_non_null(c_);						\
	memcpy(c_, good, n);						\
	if (be)								\
		st_be(c_ + (at), v, len);				\
	else								\
		st_le(c_ + (at), v, len);				\
	expect_bad(c_, n, __VA_ARGS__);					\
	free(c_);							\
} while (0)

static void test_cut_everywhere(void **state)
{
	struct walk w;
	size_t n;
	uint8_t *b = small_image(&n, &w);
	const struct srec *pd = find(&w, 1, 1, 0);

	(void)state;
	for (size_t cut = 0; cut < n; cut++)
		expect_bad(b, cut, "truncated");
	expect_bad(b, 0, "offset 0: xl: truncated: header is 48 bytes");
	expect_bad(b, 50, "offset 48: xl: truncated: config length");
	expect_bad(b, 60, "xl: truncated: optional data");
	expect_bad(b, w.libxl_at + 5, "libxl: truncated: stream header");
	expect_bad(b, w.libxl_at + 20, "libxl: truncated: record header");
	expect_bad(b, w.libxc_at + 10, "libxc: truncated: image header");
	expect_bad(b, w.libxc_at + 30, "libxc: truncated: domain header");
	expect_bad(b, pd->at + 12, "libxc: truncated: PAGE_DATA header");
	expect_bad(b, pd->at + 20, "libxc: truncated: PAGE_DATA pfns");
	expect_bad(b, pd->at + 40 + 5000, "libxc: truncated: PAGE_DATA pages");
	expect_bad(b, find(&w, 1, 9, 0)->at + 1013,
		   "libxc: truncated: padding");
	expect_bad(b, n - 10, "libxc: truncated: record header");
	expect_bad(b, n - 1, "libxl: truncated: record header");
	free(b);
}

static void test_bad_xl(void **state)
{
	struct walk w;
	size_t n;
	uint8_t *b = small_image(&n, &w);

	(void)state;
	expect_patched(b, n, 0, 'x', 1, 0, "offset 0: xl: bad magic");
	expect_patched(b, n, 31, 0, 1, 0, "bad magic");
	expect_patched(b, n, 32, 0x01020304, 4, 1, "offset 32: xl: byte order");
	expect_patched(b, n, 36, 0, 4, 0, "lack STREAMv2");
	expect_patched(b, n, 36, 6, 4, 0, "unknown mandatory flags 0x00000004");
	expect_patched(b, n, 44, 2, 4, 0, "optional data of 2 bytes");
	expect_patched(b, n, 48, 1000, 4, 0, "config length 1000");
	free(b);
}

static void test_bad_libxl(void **state)
{
	struct walk w;
	size_t n;
	uint8_t *b = small_image(&n, &w);
	size_t l = w.libxl_at, end = w.r[w.n - 1].at;

	(void)state;
	expect_patched(b, n, l, 'l', 1, 0, "libxl: ident 0x6c69627");
	expect_patched(b, n, l + 8, 3, 4, 1, "libxl: version 3, want 2");
	expect_patched(b, n, l + 8, 1, 4, 1, "libxl: version 1");
	expect_patched(b, n, l + 12, 1, 4, 1, "libxl: a big-endian stream");
	expect_patched(b, n, l + 12, 4, 4, 1, "reserved option bits");
	expect_patched(b, n, l + 16, 9, 4, 0, "libxl: unknown record type "
		       "0x00000009");
	expect_patched(b, n, l + 20, 8, 4, 0, "libxl: LIBXC_CONTEXT: length "
		       "8 not in 0..0");
	expect_patched(b, n, end, 4, 4, 0, "truncated");    /* CHECKPOINT_END */
	expect_patched(b, n, end, 1, 4, 0, "a second LIBXC_CONTEXT");
	expect_patched(b, n, end + 4, 3, 4, 0, "libxl: END: length 3");
	/* END right after the header: no libxc stream */
	{
		uint8_t *c = malloc(l + 24);

		memcpy(c, b, l + 16);
		memset(c + l + 16, 0, 8);
		expect_bad(c, l + 24, "END without a LIBXC_CONTEXT");
		free(c);
	}
	free(b);
}

static void test_bad_libxc_headers(void **state)
{
	struct walk w;
	size_t n;
	uint8_t *b = small_image(&n, &w);
	size_t x = w.libxc_at;

	(void)state;
	expect_patched(b, n, x + 3, 0xfe, 1, 0, "libxc: image header marker");
	expect_patched(b, n, x + 8, 0x58454e47, 4, 1, "image header id");
	expect_patched(b, n, x + 12, 4, 4, 1, "image header version 4");
	expect_patched(b, n, x + 12, 1, 4, 1, "image header version 1");
	expect_patched(b, n, x + 16, 1, 2, 1, "libxc: a big-endian stream");
	expect_patched(b, n, x + 16, 2, 2, 1, "reserved bits");
	expect_patched(b, n, x + 20, 1, 4, 1, "image header reserved bits");
	expect_patched(b, n, x + 24, 0, 4, 0, "domain type 0 unknown");
	expect_patched(b, n, x + 24, 5, 4, 0, "domain type 5 unknown");
	expect_patched(b, n, x + 28, 13, 2, 0, "page_shift 13, want 12");
	expect_patched(b, n, x + 30, 1, 2, 0, "domain header reserved");
	free(b);
}

static void test_bad_libxc_records(void **state)
{
	struct walk w;
	size_t n;
	uint8_t *b = small_image(&n, &w);
	size_t pd = find(&w, 1, 1, 0)->at, tsc = find(&w, 1, 8, 0)->at;
	size_t prm = find(&w, 1, 0xa, 0)->at, ctx = find(&w, 1, 9, 0)->at;
	size_t sde = find(&w, 1, 0x10, 0)->at;

	(void)state;
	expect_patched(b, n, pd + 8, 0, 4, 0, "PAGE_DATA: count 0");
	expect_patched(b, n, pd + 8, 2, 4, 0, "PAGE_DATA: length 12320, want "
		       "8 + 8 * 2 pfns + 4096 * 2 pages = 8216");
	expect_patched(b, n, pd + 8, 4000, 4, 0, "PAGE_DATA: count 4000 needs");
	expect_patched(b, n, pd + 12, 1, 4, 0, "PAGE_DATA: reserved field");
	expect_patched(b, n, pd + 16 + 6, 0x10, 1, 0, "reserved bits 52-59");
	expect_patched(b, n, pd + 16 + 15, 0x50, 1, 0, "unknown page type 0x5");
	expect_patched(b, n, pd + 4, 12316, 4, 0, "PAGE_DATA: length 12316 is "
		       "not a multiple of 8");
	expect_patched(b, n, tsc + 4, 16, 4, 0, "X86_TSC_INFO: length 16 not "
		       "in 24..24");
	expect_patched(b, n, tsc + 28, 1, 4, 0, "X86_TSC_INFO: reserved");
	expect_patched(b, n, prm + 8, 2, 4, 0, "HVM_PARAMS: length 56, want "
		       "8 + 16 * 2");
	expect_patched(b, n, prm + 12, 1, 4, 0, "HVM_PARAMS: reserved");
	expect_patched(b, n, ctx + 8 + 1005 + 2, 0x80, 1, 0, "HVM_CONTEXT: "
		       "padding byte 2 is 0x80");
	expect_patched(b, n, ctx + 4, 0, 4, 0, "HVM_CONTEXT: length 0");
	expect_patched(b, n, ctx + 4, 200u << 20, 4, 0, "length 209715200 > "
		       "134217728");
	expect_patched(b, n, sde, 0x13, 4, 0, "unknown mandatory record type "
		       "0x00000013");
	expect_patched(b, n, sde, 0x80000013, 4, 0, "PAGE_DATA before "
		       "STATIC_DATA_END");
	expect_patched(b, n, find(&w, 1, 0x11, 0)->at, 0x10, 4, 0,
		       "STATIC_DATA_END: length 72");
	expect_patched(b, n, sde, 0x0b, 4, 0, "TOOLSTACK never belongs");
	expect_patched(b, n, sde, 0x0f, 4, 0, "CHECKPOINT_DIRTY_PFN_LIST "
		       "never belongs");
	expect_patched(b, n, find(&w, 1, 0, 0)->at, 0x10, 4, 0,   /* END */
		       "a second STATIC_DATA_END");
	expect_patched(b, n, find(&w, 1, 0x11, 0)->at + 4, 64, 4, 0,
		       "X86_CPUID_POLICY: length 64 is not a multiple of 24");
	expect_patched(b, n, find(&w, 1, 0x12, 0)->at + 4, 24, 4, 0,
		       "X86_MSR_POLICY: length 24 is not a multiple of 16");
	free(b);
}

static void test_bad_tail(void **state)
{
	struct walk w;
	size_t n;
	uint8_t *b = small_image(&n, &w);
	uint8_t *c = calloc(1, n + 9);

	(void)state;
	memcpy(c, b, n);
	expect_bad(c, n + 1, "1 bytes after the libxl END record");
	expect_bad(c, n + 9, "9 bytes after the libxl END record");
	free(c);
	free(b);
}

/* Removes len bytes at `at`. */
static size_t cut_bytes(uint8_t *b, size_t n, size_t at, size_t len)
{
	memmove(b + at, b + at + len, n - at - len);
	return n - len;
}

/* What real `xl save` images hold is accepted. */
static void test_accepts_real_forms(void **state)
{
	struct xen_image_info info;
	struct walk w;
	char err[256] = "";
	size_t n, pd;
	uint8_t *b = small_image(&n, &w);

	(void)state;
	pd = find(&w, 1, 1, 0)->at;
	/* JSON config (xl save's own: flag 0x1) */
	st_le(b + 36, 3, 4);
	assert_int_equal(scan_buf(b, n, &info, err, sizeof(err)), 0);
	assert_true(info.config_json);
	assert_int_equal(info.xl_mandatory_flags, 3);
	/* an unknown optional record in place of the CPUID policy */
	st_le(b + find(&w, 1, 0x11, 0)->at, 0x80000055, 4);
	assert_int_equal(scan_buf(b, n, &info, err, sizeof(err)), 0);
	assert_int_equal(info.libxc_optional, 1);
	assert_int_equal(info.libxc_count[XEN_LIBXC_X86_CPUID_POLICY], 0);
	/* pfn 5 turned XTAB: an entry without a page */
	st_le(b + pd + 16 + 16, 0xf000000000000005ull, 8);
	st_le(b + pd + 4, 8 + 3 * 8 + 2 * PAGE, 4);
	n = cut_bytes(b, n, pd + 8 + 8 + 24 + 2 * PAGE, PAGE);
	if (scan_buf(b, n, &info, err, sizeof(err)))
		print_error("%s\n", err);
	assert_int_equal(scan_buf(b, n, &info, err, sizeof(err)), 0);
	assert_int_equal(info.pages, 2);
	assert_int_equal(info.pfn_entries, 3);
	assert_int_equal(info.max_pfn, 1);
	free(b);
}

/* A v2 stream is read, without the v3 records (STATIC_DATA_END, CPUID
 * and MSR policies) that sit right after the libxc headers. */
static void test_v2_stream(void **state)
{
	struct xen_image_info info;
	struct walk w;
	char err[256] = "";
	size_t n, at, len;
	uint8_t *b = small_image(&n, &w);

	(void)state;
	st_be(b + w.libxc_at + 12, 2, 4);
	expect_bad(b, n, "libxc: X86_CPUID_POLICY in a v2 stream");
	at = find(&w, 1, 0x11, 0)->at;
	len = find(&w, 1, 1, 0)->at - at;
	assert_int_equal(len, 8 + 72 + 8 + 32 + 8);
	n = cut_bytes(b, n, at, len);
	assert_int_equal(scan_buf(b, n, &info, err, sizeof(err)), 0);
	assert_int_equal(info.libxc_version, 2);
	assert_int_equal(info.pages, 3);
	assert_int_equal(info.libxc_count[XEN_LIBXC_STATIC_DATA_END], 0);
	free(b);
}

/* ---- the writer refusing ------------------------------------------------- */

typedef void (*mutate_fn)(struct xen_image_src *s);

static void no_context(struct xen_image_src *s) { s->hvm_context = NULL; }
static void empty_context(struct xen_image_src *s) { s->hvm_context_len = 0; }
static void huge_context(struct xen_image_src *s)
{
	s->hvm_context_len = (128u << 20) + 1;
}
static void no_config(struct xen_image_src *s) { s->xl_config = NULL; }
static void long_config(struct xen_image_src *s)
{
	s->xl_config_len = XEN_IMAGE_CONFIG_MAX + 1;
}
static void nul_config(struct xen_image_src *s)
{
	s->xl_config = "name = \"a\"\n\0junk";
	s->xl_config_len = 16;
}
static void many_params(struct xen_image_src *s) { s->nr_params = 65; }
static void null_params(struct xen_image_src *s) { s->params = NULL; }
static void bad_param_index(struct xen_image_src *s)
{
	static const struct xen_image_param p[] = { { 1, 5 }, { 64, 1 } };

	s->params = p;
	s->nr_params = 2;
}
static void dup_param(struct xen_image_src *s)
{
	static const struct xen_image_param p[] = { { 1, 5 }, { 2, 1 },
						    { 1, 7 } };

	s->params = p;
	s->nr_params = 3;
}
static void odd_cpuid(struct xen_image_src *s) { s->cpuid_len = 25; }
static void null_cpuid(struct xen_image_src *s) { s->cpuid = NULL; }
static void odd_msrs(struct xen_image_src *s) { s->msrs_len = 24; }
static void no_pfns(struct xen_image_src *s) { s->nr_pfns = 0; }
static void huge_pfns(struct xen_image_src *s)
{
	s->nr_pfns = (1ull << 52) + 1;
}
static void no_bitmap(struct xen_image_src *s) { s->present = NULL; }
static void no_page_cb(struct xen_image_src *s) { s->page = NULL; }
static void no_present(struct xen_image_src *s)
{
	static const uint64_t only_high = 1ull << 40;

	s->present = &only_high;
	s->nr_pfns = 40;        /* bit 40 lies outside the pfn space */
}
static void bad_major(struct xen_image_src *s) { s->xen_major = 0; }
static void bad_minor(struct xen_image_src *s) { s->xen_minor = 0x10000; }

static void test_writer_refuses(void **state)
{
	static const struct { mutate_fn f; const char *frag; } cases[] = {
		{ no_context, "HVM context missing (length 1005)" },
		{ empty_context, "HVM context missing (length 0)" },
		{ huge_context, "HVM context length 134217729 > 134217728" },
		{ no_config, "xl config missing" },
		{ long_config, "xl config length 1048577 > 1048576" },
		{ nul_config, "NUL byte at offset 11" },
		{ many_params, "65 HVM params > 64" },
		{ null_params, "HVM params NULL with 4 params" },
		{ bad_param_index, "HVM param 1: index 64 >= 64" },
		{ dup_param, "HVM param 2: index 1 repeats param 0" },
		{ odd_cpuid, "CPUID policy length 25 is not a multiple of 24" },
		{ null_cpuid, "CPUID policy is NULL with length 72" },
		{ odd_msrs, "MSR policy length 24 is not a multiple of 16" },
		{ no_pfns, "nr_pfns 0 not in 1..2^52" },
		{ huge_pfns, "nr_pfns 4503599627370497" },
		{ no_bitmap, "present bitmap missing" },
		{ no_page_cb, "page callback missing" },
		{ no_present, "no pfn of 40 is present" },
		{ bad_major, "Xen version 0.17" },
		{ bad_minor, "Xen version 4.65536" },
	};

	(void)state;
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct guest g;
		struct xen_image_src s;
		struct stat st;
		char err[256] = "";
		int fd = new_fd(), rc;

		guest_init(&g, 64);
		set_pfn(&g, 3);
		s = make_src(&g);
		cases[i].f(&s);
		rc = xen_image_write(fd, &s, err, sizeof(err));
		if (rc != -EINVAL || !strstr(err, cases[i].frag))
			print_error("case %u: rc %d, \"%s\" (want \"%s\")\n",
				    i, rc, err, cases[i].frag);
		assert_int_equal(rc, -EINVAL);
		assert_non_null(strstr(err, cases[i].frag));
		assert_int_equal(fstat(fd, &st), 0);
		assert_int_equal(st.st_size, 0);         /* nothing written */
		assert_int_equal(g.pages_asked, 0);
		close(fd);
		free(g.present);
	}
}

static void test_writer_failures(void **state)
{
	struct guest g;
	struct xen_image_src s;
	char err[256] = "";
	int fd;

	(void)state;
	guest_init(&g, 64);
	set_pfn(&g, 3);
	set_pfn(&g, 5);
	s = make_src(&g);

	fd = open("/dev/null", O_RDONLY);        /* writes fail: EBADF */
	assert_true(fd >= 0);
	assert_int_equal(xen_image_write(fd, &s, err, sizeof(err)), -EBADF);
	assert_non_null(strstr(err, "write at offset 0: "));
	close(fd);

	g.null_at = 5;
	fd = new_fd();
	assert_int_equal(xen_image_write(fd, &s, err, sizeof(err)), -EIO);
	assert_non_null(strstr(err, "no data for pfn 0x5"));
	close(fd);

	/* a NULL err buffer is fine */
	assert_int_equal(xen_image_write(-1, NULL, NULL, 0), -EINVAL);
	free(g.present);
}

static void test_names(void **state)
{
	(void)state;
	assert_string_equal(xen_image_libxc_name(XEN_LIBXC_X86_MSR_POLICY),
			    "X86_MSR_POLICY");
	assert_string_equal(xen_image_libxc_name(0x13), "UNKNOWN");
	assert_string_equal(xen_image_libxl_name(XEN_LIBXL_CHECKPOINT_STATE),
			    "CHECKPOINT_STATE");
	assert_string_equal(xen_image_libxl_name(6), "UNKNOWN");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_batches),
		cmocka_unit_test(test_through_pipe),
		cmocka_unit_test(test_short_transfers),
		cmocka_unit_test(test_cut_everywhere),
		cmocka_unit_test(test_bad_xl),
		cmocka_unit_test(test_bad_libxl),
		cmocka_unit_test(test_bad_libxc_headers),
		cmocka_unit_test(test_bad_libxc_records),
		cmocka_unit_test(test_bad_tail),
		cmocka_unit_test(test_accepts_real_forms),
		cmocka_unit_test(test_v2_stream),
		cmocka_unit_test(test_writer_refuses),
		cmocka_unit_test(test_writer_failures),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
