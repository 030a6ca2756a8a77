/*
 * test_codec.c - cmocka tests for the page codecs (transport/codec) and
 * their worker pool.
 *
 * Bodies are parsed and hand-built here from docs/page-codecs.md with
 * helpers independent of the codec, and the XOR cache's tag policy is
 * modelled from the spec, so the codec is checked against the document
 * rather than against itself.  Covered: a round trip per method, the
 * spec's test vector, the largest body, compression off and lz4-only,
 * encoder and decoder caches in sync over thousands of random records
 * with evictions (against a shadow memory), every truncation and every
 * single-bit flip of a small body, a table of refusals with their
 * messages, failed decoders staying failed, and the pool's ordering.
 * Nothing depends on timing.
 *
 * `test_codec --write-seeds DIR` writes the libFuzzer seed corpus instead;
 * the warm-up record and scenario byte match tests/fuzz/fuzz_codec.c.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <lz4.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec.h"
#include "../fuzz/codec_fill.h"
#include "wire.h"

#define PG 4096
#define NR_PAGES 65536
#define FZ_NR_PAGES 1024 /* guest size of the fuzz scenarios */

/* ---- deterministic page contents -------------------------------------- */

static uint64_t rng_state = 0x2545f4914f6cdd1dULL;

static uint64_t rng(void)
{
	uint64_t x = rng_state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng_state = x;
	return x * 0x2545f4914f6cdd1dULL;
}

/* fill_page (codec_fill.h) makes the pages the fuzz seeds depend on. */

/* ---- spec helpers, independent of the codec --------------------------- */

struct body {
	uint8_t *p;
	size_t len, cap;
};

static void body_bytes(struct body *b, const void *src, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2 + 64;
		b->p = realloc(b->p, b->cap);
		assert_non_null(b->p);
	}
	memcpy(b->p + b->len, src, n);
	b->len += n;
}

static void body_be(struct body *b, uint64_t v, unsigned bytes)
{
	uint8_t t[8];

	for (unsigned i = 0; i < bytes; i++)
		t[i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
	body_bytes(b, t, bytes);
}

static void body_header(struct body *b, unsigned count, unsigned flags,
			unsigned log2, uint32_t seq)
{
	body_be(b, count, 2);
	body_be(b, flags, 1);
	body_be(b, log2, 1);
	body_be(b, seq, 4);
}

static void body_entry(struct body *b, unsigned method, unsigned len,
		       uint64_t pfn)
{
	body_be(b, (uint64_t)method << 61 | (uint64_t)len << 48 | pfn, 8);
}

static void body_free(struct body *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

static uint64_t be_load(const uint8_t *p, unsigned bytes)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < bytes; i++)
		v = v << 8 | p[i];
	return v;
}

struct entry {
	unsigned method, len;
	uint64_t pfn;
};

/* Parses a (valid) body's entries per the spec; returns count. */
static unsigned parse_entries(const uint8_t *p, size_t len, struct entry *e)
{
	unsigned count = (unsigned)be_load(p, 2);
	size_t total = CODEC_HEADER_SIZE + (size_t)count * 8;

	assert_true(len >= total);
	for (unsigned i = 0; i < count; i++) {
		uint64_t w = be_load(p + 8 + 8 * i, 8);

		e[i].method = (unsigned)(w >> 61);
		e[i].len = (unsigned)((w >> 48) & 0x1fff);
		e[i].pfn = w & ((1ULL << 48) - 1);
		total += e[i].len;
	}
	assert_int_equal(total, len);
	return count;
}

/* The spec's cache tags and stamps (section 5), without page data. */
struct model {
	unsigned log2;
	uint64_t clock;
	uint64_t tag[64], stamp[64]; /* up to 64 slots */
};

static unsigned model_set(const struct model *m, uint64_t pfn)
{
	unsigned b = m->log2 - 2;

	return b ? (unsigned)((pfn * 0x9e3779b97f4a7c15ULL) >> (64 - b)) : 0;
}

static int model_find(const struct model *m, uint64_t pfn)
{
	unsigned s = model_set(m, pfn) * 4;

	for (unsigned w = 0; w < 4; w++)
		if (m->tag[s + w] == pfn + 1)
			return (int)(s + w);
	return -1;
}

static void model_step(struct model *m, unsigned method, uint64_t pfn)
{
	unsigned s = model_set(m, pfn) * 4, v = s;
	int f = model_find(m, pfn);

	if (method == CODEC_ZERO) {
		if (f >= 0)
			m->tag[f] = 0;
		return;
	}
	if (f >= 0) {
		v = (unsigned)f;
	} else {
		for (v = s; v < s + 4 && m->tag[v]; v++)
			;
		if (v == s + 4) {
			v = s;
			for (unsigned w = s + 1; w < s + 4; w++)
				if (m->stamp[w] < m->stamp[v])
					v = w;
		}
	}
	m->tag[v] = pfn + 1;
	m->stamp[v] = ++m->clock;
}

/* ---- sinks ------------------------------------------------------------ */

struct shadow {
	uint8_t *mem;         /* npages * PG */
	uint64_t npages;
	unsigned calls;
	uint64_t pfn[WIRE_PAGE_MAX];
	int fail_at;          /* call index that returns -EIO; -1 = never */
};

static int shadow_sink(void *arg, uint64_t pfn, const uint8_t *page)
{
	struct shadow *s = arg;

	assert_true(pfn < s->npages);
	if ((int)s->calls == s->fail_at)
		return -EIO;
	memcpy(s->mem + pfn * PG, page, PG);
	s->pfn[s->calls % WIRE_PAGE_MAX] = pfn;
	s->calls++;
	return 0;
}

static void shadow_init(struct shadow *s, uint64_t npages)
{
	memset(s, 0, sizeof(*s));
	s->mem = calloc(npages, PG);
	assert_non_null(s->mem);
	s->npages = npages;
	s->fail_at = -1;
}

static int dec(struct codec_dec *d, const uint8_t *p, size_t len,
	       struct shadow *s, char *err)
{
	err[0] = '\0';
	return codec_dec_pages(d, p, len, s->npages, shadow_sink, s, err,
			       WIRE_ERR_MAX);
}

static struct codec_opts opts_of(bool compress, uint32_t cache)
{
	struct codec_opts o;

	codec_opts_init(&o);
	o.compress = compress;
	o.cache_pages = cache;
	return o;
}

static int enc(struct codec_enc *e, uint32_t n, const uint64_t *pfn,
	       uint8_t (*pages)[PG], struct wire_buf *out,
	       struct codec_stats *st)
{
	const void *pp[WIRE_PAGE_MAX];

	for (uint32_t i = 0; i < n; i++)
		pp[i] = pages[i];
	wire_buf_reset(out);
	return codec_enc_pages(e, n, pfn, pp, out, st);
}

/* ---- the fixed scenario shared with the fuzz harness ------------------ */
/*
 * Options: compress on, 16-page cache.  Record 0 (the warm-up) sends pfns
 * 1-4; record 1 ("small body") then has one entry of each method:
 * pfn 1 slightly changed (XOR), pfn 2 unchanged (XOR, empty), pfn 3 new
 * random bytes (RAW), pfn 5 text (LZ4, not cached), pfn 6 zero (ZERO).
 */
static const uint64_t warm_pfn[4] = { 1, 2, 3, 4 };
static const uint64_t small_pfn[5] = { 1, 2, 3, 5, 6 };

static void warm_pages(uint8_t (*pg)[PG])
{
	fill_page(pg[0], FILL_SPARSE, 1);
	fill_page(pg[1], FILL_TEXT, 2);
	fill_page(pg[2], FILL_RANDOM, 3);
	fill_page(pg[3], FILL_ZERO, 0);
}

static void small_pages(uint8_t (*pg)[PG])
{
	fill_page(pg[0], FILL_SPARSE, 1);
	pg[0][7] ^= 0x5a;
	fill_page(pg[1], FILL_TEXT, 2);
	fill_page(pg[2], FILL_RANDOM, 4);
	fill_page(pg[3], FILL_TEXT, 5);
	fill_page(pg[4], FILL_ZERO, 0);
}

struct fixture {
	struct wire_buf warm, small;
	uint8_t expect[5][PG];
};

static void fixture_build(struct fixture *f, const struct codec_opts *o)
{
	struct codec_enc *e = codec_enc_new(o);
	uint8_t wp[4][PG];

	assert_non_null(e);
	wire_buf_init(&f->warm);
	wire_buf_init(&f->small);
	warm_pages(wp);
	small_pages(f->expect);
	assert_int_equal(enc(e, 4, warm_pfn, wp, &f->warm, NULL), 0);
	assert_int_equal(enc(e, 5, small_pfn, f->expect, &f->small, NULL), 0);
	codec_enc_free(e);
}

static void fixture_free(struct fixture *f)
{
	wire_buf_fini(&f->warm);
	wire_buf_fini(&f->small);
}

/* A decoder that has decoded record 0 of the fixture. */
static struct codec_dec *warm_decoder(const struct fixture *f,
				      const struct codec_opts *o,
				      struct shadow *s)
{
	struct codec_dec *d = codec_dec_new(o);
	char err[WIRE_ERR_MAX];

	assert_non_null(d);
	assert_int_equal(dec(d, f->warm.data, f->warm.len, s, err), 0);
	s->calls = 0;
	return d;
}

/* ---- options ---------------------------------------------------------- */

static void test_opts(void **state)
{
	struct codec_opts o;
	char err[WIRE_ERR_MAX];
	static const uint32_t bad_cache[] = { 1, 2, 3, 12, 1u << 21, 6000 };

	(void)state;
	codec_opts_init(&o);
	assert_true(o.compress);
	assert_int_equal(o.cache_pages, 4096);
	assert_int_equal(o.lz4_accel, 1);
	assert_int_equal(codec_opts_check(&o, err, sizeof(err)), 0);
	for (size_t i = 0; i < sizeof(bad_cache) / sizeof(bad_cache[0]); i++) {
		o.cache_pages = bad_cache[i];
		assert_int_equal(codec_opts_check(&o, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "cache_pages"));
		errno = 0;
		assert_null(codec_enc_new(&o));
		assert_int_equal(errno, EINVAL);
		assert_null(codec_dec_new(&o));
	}
	o.cache_pages = 0;
	assert_int_equal(codec_opts_check(&o, err, sizeof(err)), 0);
	o.lz4_accel = 0;
	assert_int_equal(codec_opts_check(&o, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "lz4_accel 0"));
	o.compress = false;      /* off: the rest is ignored */
	o.cache_pages = 3;
	assert_int_equal(codec_opts_check(&o, err, sizeof(err)), 0);
	assert_string_equal(codec_method_name(CODEC_XOR), "XOR");
	assert_string_equal(codec_method_name(7), "unknown");
	codec_enc_free(NULL);
	codec_dec_free(NULL);
	codec_pool_free(NULL);
}

/* ---- round trips ------------------------------------------------------ */

static void expect_methods(const struct wire_buf *b, const unsigned *want,
			   unsigned n)
{
	struct entry e[WIRE_PAGE_MAX];

	assert_int_equal(parse_entries(b->data, b->len, e), n);
	for (unsigned i = 0; i < n; i++)
		if (e[i].method != want[i])
			fail_msg("entry %u: method %s, expected %s", i,
				 codec_method_name(e[i].method),
				 codec_method_name(want[i]));
}

static void check_shadow(const struct shadow *s, unsigned n,
			 const uint64_t *pfn, uint8_t (*pages)[PG])
{
	for (unsigned i = 0; i < n; i++)
		if (memcmp(s->mem + pfn[i] * PG, pages[i], PG) != 0)
			fail_msg("pfn %lu decoded wrong", (unsigned long)pfn[i]);
}

static void test_round_trip_methods(void **state)
{
	struct codec_opts o = opts_of(true, 4096);
	struct codec_enc *e = codec_enc_new(&o);
	struct codec_dec *d = codec_dec_new(&o);
	static const uint64_t pfn[5] = { 10, 11, 12, 13, 14 };
	static uint8_t pg[5][PG];
	static const unsigned m0[5] = { CODEC_ZERO, CODEC_RAW, CODEC_LZ4,
					CODEC_LZ4, CODEC_LZ4 };
	static const unsigned m1[5] = { CODEC_ZERO, CODEC_XOR, CODEC_XOR,
					CODEC_XOR, CODEC_XOR };
	static const unsigned m2[5] = { CODEC_RAW, CODEC_RAW, CODEC_LZ4,
					CODEC_ZERO, CODEC_XOR };
	struct codec_stats st = { 0 };
	struct shadow s;
	struct wire_buf b;
	char err[WIRE_ERR_MAX];

	(void)state;
	shadow_init(&s, NR_PAGES);
	wire_buf_init(&b);
	fill_page(pg[0], FILL_ZERO, 0);
	fill_page(pg[1], FILL_RANDOM, 1);
	fill_page(pg[2], FILL_TEXT, 2);
	fill_page(pg[3], FILL_SPARSE, 3);
	fill_page(pg[4], FILL_SPARSE, 4);
	assert_int_equal(enc(e, 5, pfn, pg, &b, &st), 0);
	expect_methods(&b, m0, 5);
	assert_int_equal(dec(d, b.data, b.len, &s, err), 0);
	check_shadow(&s, 5, pfn, pg);
	assert_int_equal(st.pages, 5);
	assert_int_equal(st.zero + st.raw + st.lz4 + st.xor, 5);
	assert_int_equal(st.bytes_in, 5 * PG);
	assert_int_equal(st.bytes_out, b.len);

	/* Small changes: XOR, including an unchanged page (empty payload). */
	pg[1][100] ^= 1;
	pg[2][4000] = 'X';
	pg[3][5] ^= 0xff;
	pg[3][3000] ^= 0x11;
	assert_int_equal(enc(e, 5, pfn, pg, &b, &st), 0);
	expect_methods(&b, m1, 5);
	assert_int_equal(dec(d, b.data, b.len, &s, err), 0);
	check_shadow(&s, 5, pfn, pg);
	assert_true(b.len < 8 + 5 * 8 + 64);

	/* Big changes: new random page (RAW), new text (LZ4 beats a long
	 * XOR), a page going zero, and XOR again. */
	fill_page(pg[0], FILL_RANDOM, 9);
	fill_page(pg[1], FILL_RANDOM, 10);
	fill_page(pg[2], FILL_TEXT, 7);
	fill_page(pg[3], FILL_ZERO, 0);
	pg[4][0] ^= 0x80;
	assert_int_equal(enc(e, 5, pfn, pg, &b, &st), 0);
	expect_methods(&b, m2, 5);
	assert_int_equal(dec(d, b.data, b.len, &s, err), 0);
	check_shadow(&s, 5, pfn, pg);

	/* The page that went zero was dropped: next time it is not XOR. */
	fill_page(pg[3], FILL_SPARSE, 3);
	assert_int_equal(enc(e, 1, &pfn[3], &pg[3], &b, &st), 0);
	{
		static const unsigned m3[1] = { CODEC_LZ4 };

		expect_methods(&b, m3, 1);
	}
	assert_int_equal(dec(d, b.data, b.len, &s, err), 0);
	check_shadow(&s, 1, &pfn[3], &pg[3]);
	assert_int_equal(st.pages, 16);
	wire_buf_fini(&b);
	free(s.mem);
	codec_enc_free(e);
	codec_dec_free(d);
}

/* docs/page-codecs.md section 10. */
static void test_vector(void **state)
{
	static const uint8_t want[31] = {
		0x00, 0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x01,
		0x60, 0x0f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09,
		0x00, 0x00, 0x00, 0x01, 0x03,
		0x00, 0x64, 0x00, 0x01, 0x20,
		0x0f, 0x99, 0x00, 0x01, 0xff,
	};
	struct codec_opts o = opts_of(true, 4);
	struct codec_enc *e = codec_enc_new(&o);
	struct codec_dec *d = codec_dec_new(&o);
	static const uint64_t pfn = 9;
	static uint8_t pg[1][PG];
	struct shadow s;
	struct wire_buf b;
	char err[WIRE_ERR_MAX];

	(void)state;
	shadow_init(&s, 16);
	wire_buf_init(&b);
	pg[0][0] = 0x01;
	memcpy(&pg[0][100], "abcd", 4);
	assert_int_equal(enc(e, 1, &pfn, pg, &b, NULL), 0);
	assert_int_equal(b.data[8] >> 5, CODEC_LZ4);
	assert_int_equal(dec(d, b.data, b.len, &s, err), 0);
	pg[0][0] = 0x02;
	pg[0][101] = 'B';
	pg[0][4095] = 0xff;
	assert_int_equal(enc(e, 1, &pfn, pg, &b, NULL), 0);
	assert_int_equal(b.len, sizeof(want));
	assert_memory_equal(b.data, want, sizeof(want));
	assert_int_equal(dec(d, want, sizeof(want), &s, err), 0);
	check_shadow(&s, 1, &pfn, pg);
	wire_buf_fini(&b);
	free(s.mem);
	codec_enc_free(e);
	codec_dec_free(d);
}

static void test_largest_body(void **state)
{
	struct codec_opts o = opts_of(true, 4096);
	struct codec_enc *e = codec_enc_new(&o);
	struct codec_dec *d = codec_dec_new(&o);
	uint8_t (*pg)[PG] = malloc(WIRE_PAGE_MAX * PG);
	uint64_t pfn[WIRE_PAGE_MAX];
	struct codec_stats st = { 0 };
	struct shadow s;
	struct wire_buf b;
	char err[WIRE_ERR_MAX];

	(void)state;
	assert_non_null(pg);
	shadow_init(&s, 4096);
	wire_buf_init(&b);
	for (unsigned i = 0; i < WIRE_PAGE_MAX; i++) {
		pfn[i] = 4095 - i * 3;
		fill_page(pg[i], FILL_RANDOM, 100 + i);
	}
	assert_int_equal(enc(e, WIRE_PAGE_MAX, pfn, pg, &b, &st), 0);
	assert_int_equal(b.len, WIRE_MAX_BODY);
	assert_int_equal(st.raw, WIRE_PAGE_MAX);
	assert_int_equal(dec(d, b.data, b.len, &s, err), 0);
	assert_int_equal(s.calls, WIRE_PAGE_MAX);
	check_shadow(&s, WIRE_PAGE_MAX, pfn, pg);
	wire_buf_fini(&b);
	free(s.mem);
	free(pg);
	codec_enc_free(e);
	codec_dec_free(d);
}

/* Compression off: only ZERO and RAW; lz4-only: no XOR. */
static void test_compress_off(void **state)
{
	struct codec_opts off = opts_of(false, 4096), on = opts_of(true, 4096);
	struct codec_opts lz4only = opts_of(true, 0);
	struct codec_enc *e = codec_enc_new(&off);
	struct codec_dec *d = codec_dec_new(&off), *d_on = codec_dec_new(&on);
	struct codec_dec *d_lz4 = codec_dec_new(&lz4only);
	static const uint64_t pfn[3] = { 0, 1, 2 };
	static uint8_t pg[3][PG];
	static const unsigned m_off[3] = { CODEC_ZERO, CODEC_RAW, CODEC_RAW };
	static const unsigned m_lz4[3] = { CODEC_ZERO, CODEC_RAW, CODEC_LZ4 };
	struct codec_stats st = { 0 };
	struct shadow s;
	struct wire_buf b;
	struct body x = { 0 };
	char err[WIRE_ERR_MAX];

	(void)state;
	shadow_init(&s, 16);
	wire_buf_init(&b);
	fill_page(pg[1], FILL_RANDOM, 1);
	fill_page(pg[2], FILL_TEXT, 2);
	for (int round = 0; round < 3; round++) {
		pg[2][round] ^= 1; /* would be XOR with compression */
		assert_int_equal(enc(e, 3, pfn, pg, &b, &st), 0);
		expect_methods(&b, m_off, 3);
		assert_int_equal(b.data[2], 0);      /* flags */
		assert_int_equal(b.data[3], 0);      /* cache_log2 */
		assert_int_equal(dec(d, b.data, b.len, &s, err), 0);
		check_shadow(&s, 3, pfn, pg);
	}
	assert_int_equal(st.zero, 3);
	assert_int_equal(st.raw, 6);
	assert_int_equal(st.lz4 + st.xor, 0);
	/* A decoder with compression on refuses the body. */
	assert_int_equal(dec(d_on, b.data, b.len, &s, err), -EBADMSG);
	assert_non_null(strstr(err, "compress off, cache_log2 0) differ"));
	codec_enc_free(e);

	/* Compression on without a cache: LZ4 but never XOR. */
	e = codec_enc_new(&lz4only);
	for (int round = 0; round < 2; round++) {
		assert_int_equal(enc(e, 3, pfn, pg, &b, NULL), 0);
		expect_methods(&b, m_lz4, 3);
		assert_int_equal(dec(d_lz4, b.data, b.len, &s, err), 0);
		check_shadow(&s, 3, pfn, pg);
	}
	codec_dec_free(d_lz4);
	d_lz4 = codec_dec_new(&lz4only);
	body_header(&x, 1, 1, 0, 0);
	body_entry(&x, CODEC_XOR, 0, 0);
	assert_int_equal(dec(d_lz4, x.p, x.len, &s, err), -EBADMSG);
	assert_non_null(strstr(err, "entry 0: method XOR on a channel without "
				    "a cache"));
	/* The compress-off decoder refuses an LZ4 entry. */
	codec_dec_free(d);
	d = codec_dec_new(&off);
	x.len = 0;
	body_header(&x, 1, 0, 0, 0);
	body_entry(&x, CODEC_LZ4, 26, 0);
	body_bytes(&x, pg[0], 26);
	assert_int_equal(dec(d, x.p, x.len, &s, err), -EBADMSG);
	assert_non_null(strstr(err, "method LZ4 on a channel without "
				    "compression"));
	body_free(&x);
	wire_buf_fini(&b);
	free(s.mem);
	codec_enc_free(e);
	codec_dec_free(d);
	codec_dec_free(d_on);
	codec_dec_free(d_lz4);
}

/* ---- caches in sync over random records ------------------------------- */

#define SYNC_PFNS 64
#define SYNC_RECORDS 3000

/* One random change to a page of the truth. */
static void mutate(uint8_t *p)
{
	unsigned kind = (unsigned)(rng() % 10);

	switch (kind) {
	case 0: fill_page(p, FILL_ZERO, 0); break;
	case 1: fill_page(p, FILL_RANDOM, (uint32_t)rng()); break;
	case 2: fill_page(p, FILL_TEXT, (uint32_t)rng()); break;
	case 3: fill_page(p, FILL_SPARSE, (uint32_t)rng()); break;
	case 4: break; /* re-sent unchanged */
	default:
		for (unsigned k = (unsigned)(rng() % 40) + 1; k > 0; k--)
			p[rng() % PG] = (uint8_t)rng();
		break;
	}
}

/* count distinct random pfns below SYNC_PFNS. */
static unsigned pick_pfns(uint64_t *pfn)
{
	unsigned count = (unsigned)(rng() % 24) + 1, n = 0;
	bool used[SYNC_PFNS] = { false };

	while (n < count) {
		uint64_t p = rng() % SYNC_PFNS;

		if (!used[p]) {
			used[p] = true;
			pfn[n++] = p;
		}
	}
	return n;
}

struct sync_counts {
	uint64_t evicted_resends; /* sent before, no longer cached */
	uint64_t xor_hits;
};

/* Checks the body's methods against the spec model and steps it. */
static void model_check(struct model *m, const struct wire_buf *b,
			const bool *sent, struct sync_counts *c)
{
	struct entry e[WIRE_PAGE_MAX];
	unsigned n = parse_entries(b->data, b->len, e);

	for (unsigned i = 0; i < n; i++) {
		bool hit = model_find(m, e[i].pfn) >= 0;

		if (e[i].method == CODEC_XOR && !hit)
			fail_msg("entry %u: XOR for pfn %lu, which the spec's "
				 "cache does not hold", i,
				 (unsigned long)e[i].pfn);
		c->xor_hits += e[i].method == CODEC_XOR;
		c->evicted_resends += sent[e[i].pfn] && !hit &&
				      e[i].method != CODEC_ZERO;
		model_step(m, e[i].method, e[i].pfn);
	}
}

static void test_cache_sync_random(void **state)
{
	struct codec_opts o = opts_of(true, 16);
	struct codec_enc *e = codec_enc_new(&o);
	struct codec_dec *d = codec_dec_new(&o);
	uint8_t (*truth)[PG] = calloc(SYNC_PFNS, PG);
	uint8_t (*batch)[PG] = malloc(24 * PG);
	struct model m = { .log2 = 4 };
	struct sync_counts c = { 0, 0 };
	struct codec_stats st = { 0 };
	bool sent[SYNC_PFNS] = { false };
	struct shadow s;
	struct wire_buf b;
	char err[WIRE_ERR_MAX];

	(void)state;
	assert_non_null(truth);
	assert_non_null(batch);
	shadow_init(&s, SYNC_PFNS);
	wire_buf_init(&b);
	rng_state = 0x1234567;
	for (unsigned r = 0; r < SYNC_RECORDS; r++) {
		uint64_t pfn[24];
		unsigned n = pick_pfns(pfn);

		for (unsigned i = 0; i < n; i++) {
			mutate(truth[pfn[i]]);
			memcpy(batch[i], truth[pfn[i]], PG);
		}
		assert_int_equal(enc(e, n, pfn, batch, &b, &st), 0);
		model_check(&m, &b, sent, &c);
		if (dec(d, b.data, b.len, &s, err) != 0)
			fail_msg("record %u: %s", r, err);
		for (unsigned i = 0; i < n; i++)
			sent[pfn[i]] = true;
		assert_memory_equal(s.mem, truth, (size_t)SYNC_PFNS * PG);
	}
	printf("note: %u records, %lu pages: zero %lu raw %lu lz4 %lu xor %lu; "
	       "%lu re-sends after eviction\n", SYNC_RECORDS,
	       (unsigned long)st.pages, (unsigned long)st.zero,
	       (unsigned long)st.raw, (unsigned long)st.lz4,
	       (unsigned long)st.xor, (unsigned long)c.evicted_resends);
	assert_int_equal(c.xor_hits, st.xor);
	assert_true(st.xor > 1000 && st.lz4 > 1000 && st.raw > 100 &&
		    st.zero > 100);
	assert_true(c.evicted_resends > 1000);
	wire_buf_fini(&b);
	free(s.mem);
	free(truth);
	free(batch);
	codec_enc_free(e);
	codec_dec_free(d);
}

/* ---- truncations and bit flips ---------------------------------------- */

static void test_fixture_methods(void **state)
{
	struct codec_opts o = opts_of(true, 16);
	static const unsigned want[5] = { CODEC_XOR, CODEC_XOR, CODEC_RAW,
					  CODEC_LZ4, CODEC_ZERO };
	struct fixture f;
	struct shadow s;
	struct codec_dec *d;
	char err[WIRE_ERR_MAX];

	(void)state;
	fixture_build(&f, &o);
	expect_methods(&f.small, want, 5);
	shadow_init(&s, FZ_NR_PAGES);
	d = warm_decoder(&f, &o, &s);
	assert_int_equal(dec(d, f.small.data, f.small.len, &s, err), 0);
	check_shadow(&s, 5, small_pfn, f.expect);
	codec_dec_free(d);
	free(s.mem);
	fixture_free(&f);
}

static void test_truncation_every_offset(void **state)
{
	struct codec_opts o = opts_of(true, 16);
	struct fixture f;
	struct shadow s;
	char err[WIRE_ERR_MAX];

	(void)state;
	fixture_build(&f, &o);
	shadow_init(&s, FZ_NR_PAGES);
	for (size_t cut = 0; cut < f.small.len; cut++) {
		struct codec_dec *d = warm_decoder(&f, &o, &s);
		int rc = dec(d, f.small.data, cut, &s, err);

		if (rc != -EBADMSG || s.calls != 0 ||
		    strncmp(err, "PAGE_CODED: ", 12) != 0)
			fail_msg("cut at %zu: rc %d, %u pages emitted, \"%s\"",
				 cut, rc, s.calls, err);
		/* failed for good */
		assert_int_equal(dec(d, f.small.data, f.small.len, &s, err),
				 -EBADMSG);
		assert_non_null(strstr(err, "decoder failed earlier"));
		codec_dec_free(d);
	}
	free(s.mem);
	fixture_free(&f);
}

/* Whether decoding the flipped body gave something other than the fixture. */
static bool differs(const struct shadow *s, const struct fixture *f)
{
	for (unsigned i = 0; i < s->calls; i++)
		if (s->pfn[i] != small_pfn[i] ||
		    memcmp(s->mem + s->pfn[i] * PG, f->expect[i], PG) != 0)
			return true;
	return s->calls != 5;
}

static void test_bit_flips(void **state)
{
	struct codec_opts o = opts_of(true, 16);
	struct entry e[8];
	size_t raw_at = 0, lz4_at = 0, lz4_len = 0, off;
	unsigned accepted = 0, refused = 0;
	struct fixture f;
	struct shadow s;
	uint8_t *copy;
	char err[WIRE_ERR_MAX];

	(void)state;
	fixture_build(&f, &o);
	shadow_init(&s, FZ_NR_PAGES);
	copy = malloc(f.small.len);
	assert_non_null(copy);
	off = 8 + 8 * parse_entries(f.small.data, f.small.len, e);
	for (unsigned i = 0; i < 5; i++) {
		if (e[i].method == CODEC_RAW)
			raw_at = off;
		if (e[i].method == CODEC_LZ4) {
			lz4_at = off;
			lz4_len = e[i].len;
		}
		off += e[i].len;
	}
	for (size_t bit = 0; bit < f.small.len * 8; bit++) {
		struct codec_dec *d = warm_decoder(&f, &o, &s);
		size_t byte = bit / 8;
		bool in_raw = byte >= raw_at && byte < raw_at + PG;
		bool in_lz4 = byte >= lz4_at && byte < lz4_at + lz4_len;
		int rc;

		memcpy(copy, f.small.data, f.small.len);
		copy[byte] ^= (uint8_t)(1u << (bit % 8));
		rc = dec(d, copy, f.small.len, &s, err);
		if (rc != 0 && rc != -EBADMSG)
			fail_msg("bit %zu: rc %d", bit, rc);
		if (in_raw && (rc != 0 || !differs(&s, &f)))
			fail_msg("bit %zu in RAW payload: rc %d, %s", bit, rc,
				 rc ? err : "page unchanged");
		if (rc == 0 && !in_lz4 && !differs(&s, &f))
			fail_msg("bit %zu: accepted with the same pages", bit);
		if (rc != 0 && !in_lz4 && s.calls != 0)
			fail_msg("bit %zu: refused after %u pages", bit, s.calls);
		rc == 0 ? accepted++ : refused++;
		codec_dec_free(d);
	}
	printf("note: %zu bit flips: %u accepted (page bytes and pfns), %u "
	       "refused\n", f.small.len * 8, accepted, refused);
	free(copy);
	free(s.mem);
	fixture_free(&f);
}

/* ---- refusals --------------------------------------------------------- */

struct bad {
	const char *name;
	int rc;
	const char *msg;
	unsigned emitted;  /* pages handed out before the failure */
};

static void expect_bad(const struct body *x, const struct bad *b)
{
	struct codec_opts o = opts_of(true, 16);
	struct fixture f;
	struct shadow s;
	struct codec_dec *d;
	char err[WIRE_ERR_MAX];
	int rc;

	fixture_build(&f, &o);
	shadow_init(&s, NR_PAGES);
	d = warm_decoder(&f, &o, &s);
	rc = dec(d, x->p, x->len, &s, err);
	if (rc != b->rc || !strstr(err, b->msg) || s.calls != b->emitted)
		fail_msg("%s: rc %d (want %d), %u pages (want %u), \"%s\" "
			 "(want \"%s\")", b->name, rc, b->rc, s.calls,
			 b->emitted, err, b->msg);
	assert_int_equal(strncmp(err, "PAGE_CODED: ", 12), 0);
	/* Failed for good: even the body that would have been next. */
	assert_int_equal(dec(d, f.small.data, f.small.len, &s, err), -EBADMSG);
	assert_non_null(strstr(err, "decoder failed earlier"));
	codec_dec_free(d);
	free(s.mem);
	fixture_free(&f);
}

/* A header for the warm decoder (compress on, cache_log2 4, sequence 1). */
static void good_header(struct body *x, unsigned count)
{
	x->len = 0;
	body_header(x, count, 1, 4, 1);
}

static void test_refusals_header(void **state)
{
	struct body x = { 0 };
	uint8_t page[PG] = { 0 };

	(void)state;
	body_be(&x, 1, 2);
	expect_bad(&x, &(struct bad){ "short", -EBADMSG, "truncated", 0 });
	good_header(&x, 0);
	expect_bad(&x, &(struct bad){ "count 0", -EBADMSG,
				      "count 0 not in 1..1024", 0 });
	good_header(&x, 1025);
	expect_bad(&x, &(struct bad){ "count 1025", -EBADMSG,
				      "count 1025 not in 1..1024", 0 });
	x.len = 0;
	body_header(&x, 1, 3, 4, 1);
	expect_bad(&x, &(struct bad){ "flags", -EBADMSG,
				      "flags 0x03: unknown bits 0x02", 0 });
	x.len = 0;
	body_header(&x, 1, 1, 5, 1);
	expect_bad(&x, &(struct bad){ "options", -EBADMSG,
				      "(compress on, cache_log2 5) differ from "
				      "this decoder's (compress on, cache_log2 "
				      "4)", 0 });
	x.len = 0;
	body_header(&x, 1, 1, 4, 7);
	body_entry(&x, CODEC_ZERO, 0, 1);
	expect_bad(&x, &(struct bad){ "sequence", -EBADMSG,
				      "sequence 7 != expected 1", 0 });
	good_header(&x, 2);
	body_entry(&x, CODEC_ZERO, 0, 1);
	expect_bad(&x, &(struct bad){ "entries", -EBADMSG,
				      "truncated: 2 entries need 16 bytes, 8 "
				      "left", 0 });
	/* Over the cap: refused before anything is read. */
	free(x.p);
	x.cap = WIRE_MAX_BODY + 1;
	x.p = calloc(1, x.cap);
	assert_non_null(x.p);
	x.len = 0;
	body_header(&x, 1, 1, 4, 1);
	body_entry(&x, CODEC_RAW, PG, 1);
	body_bytes(&x, page, PG);
	x.len = WIRE_MAX_BODY + 1;
	expect_bad(&x, &(struct bad){ "cap", -E2BIG,
				      "length 4202505 > max 4202504", 0 });
	body_free(&x);
}

static void test_refusals_entries(void **state)
{
	struct body x = { 0 };
	uint8_t page[PG] = { 0 };

	(void)state;
	good_header(&x, 1);
	body_entry(&x, 5, 0, 1);
	expect_bad(&x, &(struct bad){ "method", -EBADMSG,
				      "entry 0: unknown method 5", 0 });
	good_header(&x, 2);
	body_entry(&x, CODEC_ZERO, 0, 1);
	body_entry(&x, CODEC_ZERO, 1, 2);
	body_bytes(&x, page, 1);
	expect_bad(&x, &(struct bad){ "zero len", -EBADMSG,
				      "entry 1: ZERO length 1 must be 0", 0 });
	good_header(&x, 1);
	body_entry(&x, CODEC_RAW, PG - 1, 1);
	body_bytes(&x, page, PG - 1);
	expect_bad(&x, &(struct bad){ "raw len", -EBADMSG,
				      "entry 0: RAW length 4095 must be 4096", 0 });
	good_header(&x, 1);
	body_entry(&x, CODEC_LZ4, 0, 1);
	expect_bad(&x, &(struct bad){ "lz4 len", -EBADMSG,
				      "entry 0: LZ4 length 0 not in 1..4095", 0 });
	good_header(&x, 1);
	body_entry(&x, CODEC_XOR, PG, 1);
	body_bytes(&x, page, PG);
	expect_bad(&x, &(struct bad){ "xor len", -EBADMSG,
				      "entry 0: XOR length 4096 not in 0..4095",
				      0 });
	good_header(&x, 2);
	body_entry(&x, CODEC_ZERO, 0, 1);
	body_entry(&x, CODEC_ZERO, 0, 70000);
	expect_bad(&x, &(struct bad){ "pfn", -EBADMSG, "entry 1: pfn 70000 "
				      "past guest memory (65536 pages)", 0 });
	good_header(&x, 3);
	body_entry(&x, CODEC_ZERO, 0, 17);
	body_entry(&x, CODEC_ZERO, 0, 18);
	body_entry(&x, CODEC_ZERO, 0, 17);
	expect_bad(&x, &(struct bad){ "dup", -EBADMSG,
				      "entry 2: pfn 17 repeats entry 0", 0 });
	good_header(&x, 2);
	body_entry(&x, CODEC_RAW, PG, 1);
	body_entry(&x, CODEC_ZERO, 0, 2);
	body_bytes(&x, page, 100);
	expect_bad(&x, &(struct bad){ "past body", -EBADMSG,
				      "entry 0 (pfn 1): payload of 4096 bytes "
				      "at offset 24 runs past the body (124 "
				      "bytes)", 0 });
	good_header(&x, 1);
	body_entry(&x, CODEC_ZERO, 0, 1);
	body_bytes(&x, page, 3);
	expect_bad(&x, &(struct bad){ "trailing", -EBADMSG,
				      "body length 19 != 16 (header, entries "
				      "and payloads): 3 trailing bytes", 0 });
	body_free(&x);
}

static void xor_body(struct body *x, uint64_t pfn, const uint8_t *runs,
		     size_t len)
{
	good_header(x, 2);
	body_entry(x, CODEC_ZERO, 0, 9);
	body_entry(x, CODEC_XOR, (unsigned)len, pfn);
	body_bytes(x, runs, len);
}

static void test_refusals_xor(void **state)
{
	static const uint8_t zero_len[] = { 0, 0, 0, 0 };
	static const uint8_t past_end[] = { 0x0f, 0xff, 0, 2, 1, 1 };
	static const uint8_t cut[] = { 0, 5, 0, 3, 1 };
	static const uint8_t ok[] = { 0, 5, 0, 1, 1 };
	struct body x = { 0 };

	(void)state;
	xor_body(&x, 1, zero_len, sizeof(zero_len));
	expect_bad(&x, &(struct bad){ "run len 0", -EBADMSG, "entry 1 (pfn 1): "
				      "XOR run 0: skip 0 + len 0 at page offset "
				      "0 (len must be >= 1)", 0 });
	xor_body(&x, 1, past_end, sizeof(past_end));
	expect_bad(&x, &(struct bad){ "run past", -EBADMSG, "XOR run 0: skip "
				      "4095 + len 2 at page offset 0 runs past "
				      "4096", 0 });
	xor_body(&x, 1, cut, sizeof(cut));
	expect_bad(&x, &(struct bad){ "run cut", -EBADMSG, "XOR run 0 at "
				      "payload offset 0 truncated (5 bytes "
				      "left)", 0 });
	xor_body(&x, 5, ok, sizeof(ok));
	expect_bad(&x, &(struct bad){ "miss", -EBADMSG, "entry 1: XOR but pfn 5 "
				      "is not in the cache", 0 });
	/* A pfn cannot be dropped and XORed in one body: the repeat is
	 * refused before any cache step. */
	good_header(&x, 2);
	body_entry(&x, CODEC_ZERO, 0, 1);
	body_entry(&x, CODEC_XOR, sizeof(ok), 1);
	expect_bad(&x, &(struct bad){ "dup before xor", -EBADMSG,
				      "entry 1: pfn 1 repeats entry 0", 0 });
	good_header(&x, 2);
	body_entry(&x, CODEC_ZERO, 0, 4);
	body_entry(&x, CODEC_XOR, sizeof(ok), 2);
	body_bytes(&x, ok, sizeof(ok));
	{
		struct codec_opts o = opts_of(true, 16);
		struct fixture f;
		struct shadow s;
		struct codec_dec *d;
		char err[WIRE_ERR_MAX];

		/* the same XOR on a cached pfn is accepted */
		fixture_build(&f, &o);
		shadow_init(&s, NR_PAGES);
		d = warm_decoder(&f, &o, &s);
		assert_int_equal(dec(d, x.p, x.len, &s, err), 0);
		assert_int_equal(s.calls, 2);
		codec_dec_free(d);
		free(s.mem);
		fixture_free(&f);
	}
	body_free(&x);
}

static void lz4_body(struct body *x, const uint8_t *src, int srclen,
		     bool zero_first)
{
	char out[LZ4_COMPRESSBOUND(8192)];
	int n = LZ4_compress_default((const char *)src, out, srclen,
				     (int)sizeof(out));

	assert_true(n > 0 && n < PG);
	good_header(x, zero_first ? 2 : 1);
	if (zero_first)
		body_entry(x, CODEC_ZERO, 0, 9);
	body_entry(x, CODEC_LZ4, (unsigned)n, 10);
	body_bytes(x, out, (size_t)n);
}

static void test_refusals_lz4(void **state)
{
	static uint8_t src[8192];
	struct body x = { 0 };

	(void)state;
	fill_page(src, FILL_TEXT, 3);
	fill_page(src + PG, FILL_TEXT, 3);
	lz4_body(&x, src, 4000, false);
	expect_bad(&x, &(struct bad){ "short lz4", -EBADMSG, "entry 0 (pfn 10): "
				      "LZ4 payload of", 0 });
	expect_bad(&x, &(struct bad){ "short lz4", -EBADMSG,
				      "decodes to a wrong size: 4000", 0 });
	lz4_body(&x, src, 5000, false);
	expect_bad(&x, &(struct bad){ "long lz4", -EBADMSG, "is corrupt: "
				      "LZ4_decompress_safe returned -", 0 });
	lz4_body(&x, src, PG, true);
	x.p[x.len - 20] ^= 0xff;
	x.p[x.len - 19] ^= 0xff;
	x.p[x.len - 18] ^= 0xff;
	/* The corrupt payload is found while decoding: the ZERO page before
	 * it has been handed out, and the decoder is failed. */
	expect_bad(&x, &(struct bad){ "corrupt lz4", -EBADMSG, "entry 1 (pfn "
				      "10): LZ4 payload of", 1 });
	body_free(&x);
}

static void test_sink_error(void **state)
{
	struct codec_opts o = opts_of(true, 16);
	struct fixture f;
	struct shadow s;
	struct codec_dec *d;
	char err[WIRE_ERR_MAX];

	(void)state;
	fixture_build(&f, &o);
	shadow_init(&s, FZ_NR_PAGES);
	d = warm_decoder(&f, &o, &s);
	s.fail_at = 2;
	assert_int_equal(dec(d, f.small.data, f.small.len, &s, err), -EIO);
	assert_non_null(strstr(err, "entry 2: sink returned -5 for pfn 3"));
	assert_int_equal(s.calls, 2);
	s.fail_at = -1;
	assert_int_equal(dec(d, f.small.data, f.small.len, &s, err), -EBADMSG);
	assert_int_equal(codec_dec_pages(d, f.small.data, f.small.len, 10,
					 NULL, NULL, err, sizeof(err)), -EINVAL);
	codec_dec_free(d);
	free(s.mem);
	fixture_free(&f);
}

/* A sequence gap or a replay is refused: the caches would not match. */
static void test_sequence(void **state)
{
	struct codec_opts o = opts_of(true, 16);
	struct fixture f;
	struct shadow s;
	struct codec_dec *d;
	char err[WIRE_ERR_MAX];

	(void)state;
	fixture_build(&f, &o);
	shadow_init(&s, FZ_NR_PAGES);
	d = codec_dec_new(&o);
	assert_int_equal(dec(d, f.small.data, f.small.len, &s, err), -EBADMSG);
	assert_non_null(strstr(err, "sequence 1 != expected 0 (a record was "
				    "lost, repeated or reordered)"));
	codec_dec_free(d);
	d = warm_decoder(&f, &o, &s);
	assert_int_equal(dec(d, f.warm.data, f.warm.len, &s, err), -EBADMSG);
	assert_non_null(strstr(err, "sequence 0 != expected 1"));
	codec_dec_free(d);
	free(s.mem);
	fixture_free(&f);
}

/* ---- encoder arguments ------------------------------------------------ */

static void test_encoder_args(void **state)
{
	struct codec_opts o = opts_of(true, 16);
	struct codec_enc *e = codec_enc_new(&o);
	struct codec_dec *d = codec_dec_new(&o);
	static uint8_t pg[3][PG];
	uint64_t pfn[3] = { 1, 2, 1 };
	struct shadow s;
	struct wire_buf b;
	char err[WIRE_ERR_MAX];

	(void)state;
	shadow_init(&s, 16);
	wire_buf_init(&b);
	fill_page(pg[0], FILL_TEXT, 1);
	fill_page(pg[1], FILL_SPARSE, 2);
	assert_int_equal(enc(e, 0, pfn, pg, &b, NULL), -EINVAL);
	{
		const void *pp[1] = { pg[0] };

		assert_int_equal(codec_enc_pages(e, WIRE_PAGE_MAX + 1, pfn, pp,
						 &b, NULL), -EINVAL);
	}
	assert_int_equal(enc(e, 3, pfn, pg, &b, NULL), -EINVAL); /* dup */
	pfn[2] = CODEC_PFN_LIMIT;
	assert_int_equal(enc(e, 3, pfn, pg, &b, NULL), -EINVAL);
	assert_int_equal(codec_enc_pages(e, 1, NULL, NULL, &b, NULL), -EINVAL);
	/* out already failed: the encoder is left as it was */
	b.rc = -ENOMEM;
	{
		const void *pp[2] = { pg[0], pg[1] };

		assert_int_equal(codec_enc_pages(e, 2, pfn, pp, &b, NULL),
				 -ENOMEM);
	}
	for (int round = 0; round < 2; round++) {
		pg[0][round] ^= 1;
		assert_int_equal(enc(e, 2, pfn, pg, &b, NULL), 0);
		assert_int_equal(dec(d, b.data, b.len, &s, err), 0);
		check_shadow(&s, 2, pfn, pg);
	}
	wire_buf_fini(&b);
	free(s.mem);
	codec_enc_free(e);
	codec_dec_free(d);
}

/* ---- pages that change while they are encoded ------------------------- */
/*
 * A pre-copy round reads guest pages while vCPUs write them.  Whatever
 * the interleaving, the encoder must put into its cache exactly what the
 * body tells the decoder, so once the pages stop changing one more
 * record must decode to them exactly.  (The outcome does not depend on
 * timing; only how many races happen does.)
 */
#define RACE_PAGES 4
#define RACE_ROUNDS 40
#define RACE_CYCLES 500

struct racer {
	uint8_t (*pages)[PG];
	atomic_int stop;
	uint64_t x;
};

/*
 * Flips a few 64-byte blocks between zero and non-zero as fast as it
 * can (the shapes the XOR pass cares about), and now and then rewrites a
 * longer stretch.  It stops with the blocks it flips at zero.
 */
static void *race_writer(void *arg)
{
	struct racer *r = arg;
	uint64_t x = r->x;

	while (!atomic_load(&r->stop)) {
		volatile uint8_t *p;
		size_t at, n;

		x = x * 6364136223846793005ULL + 1;
		p = r->pages[(x >> 33) % RACE_PAGES];
		at = (x >> 13) % 4 * 64;
		n = (x >> 7) % 64 == 0 ? 1024 : 64;
		for (size_t k = 0; k < n; k++)
			p[at + k] = (uint8_t)(x >> (k % 56)) | 1;
		for (size_t k = 0; k < n; k++)
			p[at + k] = 0;
	}
	return NULL;
}

static void race_round(struct codec_enc *e, struct codec_dec *d,
		       const uint64_t *pfn, const void *const *pp,
		       struct wire_buf *b, struct shadow *s)
{
	char err[WIRE_ERR_MAX];

	wire_buf_reset(b);
	assert_int_equal(codec_enc_pages(e, RACE_PAGES, pfn, pp, b, NULL), 0);
	if (dec(d, b->data, b->len, s, err) != 0)
		fail_msg("%s", err);
}

static void test_pages_change_during_encode(void **state)
{
	struct codec_opts o = opts_of(true, 16);
	struct codec_enc *e = codec_enc_new(&o);
	struct codec_dec *d = codec_dec_new(&o);
	struct racer r = { .x = 42 };
	uint64_t pfn[RACE_PAGES];
	const void *pp[RACE_PAGES];
	struct shadow s;
	struct wire_buf b;

	(void)state;
	r.pages = calloc(RACE_PAGES, PG);
	assert_non_null(r.pages);
	shadow_init(&s, RACE_PAGES);
	wire_buf_init(&b);
	for (unsigned i = 0; i < RACE_PAGES; i++) {
		pfn[i] = i;
		pp[i] = r.pages[i];
		fill_page(r.pages[i], (enum fill)(i % 4), i);
	}
	for (int cycle = 0; cycle < RACE_CYCLES; cycle++) {
		pthread_t t;

		atomic_store(&r.stop, 0);
		assert_int_equal(pthread_create(&t, NULL, race_writer, &r), 0);
		for (int round = 0; round < RACE_ROUNDS; round++)
			race_round(e, d, pfn, pp, &b, &s);
		atomic_store(&r.stop, 1);
		pthread_join(t, NULL);
		/* still: one more record must give exactly the pages */
		race_round(e, d, pfn, pp, &b, &s);
		if (memcmp(s.mem, r.pages, (size_t)RACE_PAGES * PG) != 0)
			fail_msg("cycle %d: decoded pages differ from the pages "
				 "once they stopped changing", cycle);
	}
	wire_buf_fini(&b);
	free(s.mem);
	free(r.pages);
	codec_enc_free(e);
	codec_dec_free(d);
}

/* ---- worker pool ------------------------------------------------------ */

#define POOL_ENCS 6
#define POOL_JOBS 120
#define POOL_PAGES 4

struct pool_case {
	struct codec_enc *enc[POOL_ENCS];
	struct codec_job job[POOL_ENCS][POOL_JOBS];
	struct wire_buf out[POOL_ENCS][POOL_JOBS];
	uint64_t pfn[POOL_ENCS][POOL_PAGES];
	uint8_t (*pages)[PG];             /* [enc][job][page] */
	const void *pp[POOL_ENCS][POOL_JOBS][POOL_PAGES];
	pthread_mutex_t lock;
	unsigned done_order[POOL_ENCS][POOL_JOBS];
	unsigned done_count[POOL_ENCS];
	unsigned total_done;
};

static void pool_done(void *arg, struct codec_job *job)
{
	struct pool_case *pc = arg;
	unsigned ei = 0;

	while (job < pc->job[ei] || job >= pc->job[ei] + POOL_JOBS)
		ei++;
	pthread_mutex_lock(&pc->lock);
	pc->done_order[ei][pc->done_count[ei]++] = (unsigned)(job - pc->job[ei]);
	pc->total_done++;
	pthread_mutex_unlock(&pc->lock);
}

static uint8_t *pool_page(struct pool_case *pc, unsigned ei, unsigned j,
			  unsigned k)
{
	return pc->pages[((size_t)ei * POOL_JOBS + j) * POOL_PAGES + k];
}

/* Each job re-sends the encoder's pages with a small change: every job
 * depends on the cache state the previous one left. */
static struct pool_case *pool_case_new(unsigned nenc, unsigned njobs)
{
	struct pool_case *pc = calloc(1, sizeof(*pc));
	struct codec_opts o = opts_of(true, 16);

	assert_non_null(pc);
	pc->pages = malloc((size_t)nenc * POOL_JOBS * POOL_PAGES * PG);
	assert_non_null(pc->pages);
	pthread_mutex_init(&pc->lock, NULL);
	for (unsigned ei = 0; ei < nenc; ei++) {
		pc->enc[ei] = codec_enc_new(&o);
		for (unsigned k = 0; k < POOL_PAGES; k++)
			pc->pfn[ei][k] = ei * 100 + k * 7;
		for (unsigned j = 0; j < njobs; j++) {
			for (unsigned k = 0; k < POOL_PAGES; k++) {
				uint8_t *p = pool_page(pc, ei, j, k);

				fill_page(p, FILL_TEXT, ei * 10 + k);
				p[j % PG] ^= (uint8_t)(j + 1);
				pc->pp[ei][j][k] = p;
			}
			wire_buf_init(&pc->out[ei][j]);
			pc->job[ei][j] = (struct codec_job){
				.enc = pc->enc[ei], .count = POOL_PAGES,
				.pfn = pc->pfn[ei], .pages = pc->pp[ei][j],
				.out = &pc->out[ei][j], .done = pool_done,
				.done_arg = pc,
			};
		}
	}
	return pc;
}

/* Decodes each encoder's outputs in submission order with a fresh
 * decoder: the sequence and cache checks prove the order was kept. */
static void pool_case_check(struct pool_case *pc, unsigned nenc,
			    unsigned njobs)
{
	struct codec_opts o = opts_of(true, 16);
	struct shadow s;
	char err[WIRE_ERR_MAX];

	shadow_init(&s, 1024);
	for (unsigned ei = 0; ei < nenc; ei++) {
		struct codec_dec *d = codec_dec_new(&o);

		assert_int_equal(pc->done_count[ei], njobs);
		for (unsigned j = 0; j < njobs; j++) {
			assert_int_equal(pc->done_order[ei][j], j);
			assert_int_equal(pc->job[ei][j].rc, 0);
			if (dec(d, pc->out[ei][j].data, pc->out[ei][j].len, &s,
				err) != 0)
				fail_msg("encoder %u job %u: %s", ei, j, err);
			for (unsigned k = 0; k < POOL_PAGES; k++)
				assert_memory_equal(s.mem + pc->pfn[ei][k] * PG,
						    pool_page(pc, ei, j, k), PG);
		}
		codec_dec_free(d);
	}
	free(s.mem);
}

static void pool_case_free(struct pool_case *pc, unsigned nenc, unsigned njobs)
{
	for (unsigned ei = 0; ei < nenc; ei++) {
		for (unsigned j = 0; j < njobs; j++)
			wire_buf_fini(&pc->out[ei][j]);
		codec_enc_free(pc->enc[ei]);
	}
	pthread_mutex_destroy(&pc->lock);
	free(pc->pages);
	free(pc);
}

static void test_pool_one_encoder_order(void **state)
{
	struct codec_pool *p = codec_pool_new(4);
	struct pool_case *pc = pool_case_new(1, POOL_JOBS);

	(void)state;
	assert_non_null(p);
	for (unsigned j = 0; j < POOL_JOBS; j++)
		assert_int_equal(codec_pool_submit(p, &pc->job[0][j]), 0);
	/* wait for the last one: the earlier ones completed before it */
	assert_int_equal(codec_pool_wait(p, &pc->job[0][POOL_JOBS - 1]), 0);
	for (unsigned j = 0; j < POOL_JOBS; j++)
		assert_true(codec_pool_done(p, &pc->job[0][j]));
	pool_case_check(pc, 1, POOL_JOBS);
	codec_pool_free(p);
	pool_case_free(pc, 1, POOL_JOBS);
}

static void test_pool_many_encoders(void **state)
{
	struct codec_pool *p = codec_pool_new(3);
	struct pool_case *pc = pool_case_new(POOL_ENCS, POOL_JOBS);

	(void)state;
	assert_non_null(p);
	/* interleaved submission */
	for (unsigned j = 0; j < POOL_JOBS; j++)
		for (unsigned ei = 0; ei < POOL_ENCS; ei++)
			assert_int_equal(codec_pool_submit(p, &pc->job[ei][j]), 0);
	for (unsigned ei = 0; ei < POOL_ENCS; ei++)
		assert_int_equal(codec_pool_wait(p, &pc->job[ei][POOL_JOBS / 2]),
				 0);
	codec_pool_drain(p);
	assert_int_equal(pc->total_done, POOL_ENCS * POOL_JOBS);
	pool_case_check(pc, POOL_ENCS, POOL_JOBS);
	codec_pool_free(p);
	pool_case_free(pc, POOL_ENCS, POOL_JOBS);
}

static void test_pool_lifecycle(void **state)
{
	struct codec_pool *p;
	struct pool_case *pc;
	struct codec_job bad = { 0 };

	(void)state;
	/* free while idle, never used */
	p = codec_pool_new(2);
	assert_non_null(p);
	codec_pool_free(p);
	p = codec_pool_new(0);          /* one per CPU */
	assert_non_null(p);
	codec_pool_drain(p);            /* nothing pending */
	assert_int_equal(codec_pool_submit(p, &bad), -EINVAL);
	codec_pool_free(p);
	errno = 0;
	assert_null(codec_pool_new(65));
	assert_int_equal(errno, EINVAL);

	/* free with jobs still queued: they all complete first */
	p = codec_pool_new(1);
	pc = pool_case_new(2, 40);
	for (unsigned j = 0; j < 40; j++)
		for (unsigned ei = 0; ei < 2; ei++)
			assert_int_equal(codec_pool_submit(p, &pc->job[ei][j]), 0);
	codec_pool_free(p);
	assert_int_equal(pc->total_done, 80);
	for (unsigned j = 0; j < 40; j++)
		assert_true(pc->job[0][j].complete && pc->job[1][j].complete);
	pool_case_check(pc, 2, 40);
	pool_case_free(pc, 2, 40);

	/* idle after use, then free */
	p = codec_pool_new(2);
	pc = pool_case_new(1, 3);
	for (unsigned j = 0; j < 3; j++) {
		assert_int_equal(codec_pool_submit(p, &pc->job[0][j]), 0);
		assert_int_equal(codec_pool_wait(p, &pc->job[0][j]), 0);
	}
	pool_case_check(pc, 1, 3);
	codec_pool_free(p);
	pool_case_free(pc, 1, 3);
}

/* ---- fuzz seeds ------------------------------------------------------- */
/*
 * A seed is one scenario byte, then the body (fuzz_codec.c):
 *   bits 0-1  options: 0 = compress + 16-page cache, 1 = compress without
 *             cache, 2 = compress off, 3 = compress + 4-page cache
 *   bit 2     warm: decode the warm-up record (record 0 here) first
 *   bit 3     fix: overwrite flags, cache_log2 and sequence with what the
 *             decoder expects
 *   bit 4     two bodies: be16 length of the first, the first, the second
 */
static int write_seed(const char *dir, const char *name, uint8_t scenario,
		      const uint8_t *a, size_t alen, const uint8_t *b,
		      size_t blen)
{
	char path[4096];
	uint8_t hdr[3] = { scenario, (uint8_t)(alen >> 8), (uint8_t)alen };
	FILE *f;
	int bad;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (!f) {
		perror(path);
		return 1;
	}
	bad = fwrite(hdr, 1, b ? 3 : 1, f) != (b ? 3u : 1u);
	bad |= alen && fwrite(a, 1, alen, f) != alen;
	bad |= b && blen && fwrite(b, 1, blen, f) != blen;
	bad |= fclose(f) != 0;
	return bad;
}

static int seeds_for(const char *dir, unsigned opt, const char *tag)
{
	struct codec_opts all[4] = { opts_of(true, 16), opts_of(true, 0),
				     opts_of(false, 0), opts_of(true, 4) };
	struct fixture f;
	char name[64];
	int bad = 0;

	fixture_build(&f, &all[opt]);
	snprintf(name, sizeof(name), "%s_record0", tag);
	bad |= write_seed(dir, name, (uint8_t)opt, f.warm.data, f.warm.len,
			  NULL, 0);
	snprintf(name, sizeof(name), "%s_record1_warm", tag);
	bad |= write_seed(dir, name, (uint8_t)(opt | 4), f.small.data,
			  f.small.len, NULL, 0);
	snprintf(name, sizeof(name), "%s_both", tag);
	bad |= write_seed(dir, name, (uint8_t)(opt | 16), f.warm.data,
			  f.warm.len, f.small.data, f.small.len);
	fixture_free(&f);
	return bad;
}

static int write_seeds(const char *dir)
{
	static const char *const tags[4] = { "cache16", "nocache", "off",
					     "cache4" };
	int bad = 0;

	for (unsigned opt = 0; opt < 4; opt++)
		bad |= seeds_for(dir, opt, tags[opt]);
	return bad;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_opts),
		cmocka_unit_test(test_round_trip_methods),
		cmocka_unit_test(test_vector),
		cmocka_unit_test(test_largest_body),
		cmocka_unit_test(test_compress_off),
		cmocka_unit_test(test_cache_sync_random),
		cmocka_unit_test(test_fixture_methods),
		cmocka_unit_test(test_truncation_every_offset),
		cmocka_unit_test(test_bit_flips),
		cmocka_unit_test(test_refusals_header),
		cmocka_unit_test(test_refusals_entries),
		cmocka_unit_test(test_refusals_xor),
		cmocka_unit_test(test_refusals_lz4),
		cmocka_unit_test(test_sink_error),
		cmocka_unit_test(test_sequence),
		cmocka_unit_test(test_encoder_args),
		cmocka_unit_test(test_pages_change_during_encode),
		cmocka_unit_test(test_pool_one_encoder_order),
		cmocka_unit_test(test_pool_many_encoders),
		cmocka_unit_test(test_pool_lifecycle),
	};

	if (argc == 3 && strcmp(argv[1], "--write-seeds") == 0)
		return write_seeds(argv[2]);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
