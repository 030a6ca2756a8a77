/*
 * codec.c - page codecs for PAGE_CODED bodies (docs/page-codecs.md).
 *
 * Per page the encoder picks the smallest of zero elision, an XOR delta
 * against the channel's cached last version of the page (coded as runs of
 * non-zero bytes), an lz4 block, or the raw page.  Encoder and decoder
 * each keep a set-associative cache of page versions and change it only
 * through cache_insert and cache_drop, called once per entry in entry
 * order with the same arguments on both sides: that is what keeps the two
 * caches identical.
 *
 * Invariants:
 *  - What the encoder emits for a page and what it stores in its cache
 *    come from the same read of each byte (a miss reads the page once
 *    into a stage; a hit copies each changed word it XORs), and the
 *    decoder stores each decoded page.  So both caches hold exactly the
 *    bytes the body describes, even if the caller's page changes during
 *    the call.
 *  - The encoder changes nothing before out is known to hold the worst
 *    case body: a failed call leaves the encoder as it was.
 *  - The decoder checks a body's whole structure before it emits a page;
 *    any error fails it for good (its cache may be half-updated).
 *  - Untrusted bytes are read only through struct wire_cursor.
 */
#include "codec.h"
#include "errmsg.h"

#include <errno.h>
#include <inttypes.h>
#include <lz4.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define PAGE WIRE_PAGE_SIZE
#define HUGE_SIZE (2u << 20)      /* transparent huge page */
#define RUN_HDR 4                 /* be16 skip, be16 len */
#define LZ4_MIN_BLOCK 26          /* no lz4 block of 4096 bytes is shorter */
#define HASH_MUL 0x9e3779b97f4a7c15ULL
#define PFN_SET_BITS 11           /* 2048 slots for <= 1024 pfns */
#define POOL_MAX_THREADS 64

#define ENTRY_METHOD_SHIFT 61
#define ENTRY_LEN_SHIFT 48
#define ENTRY_LEN_MASK 0x1fffULL
#define ENTRY_PFN_MASK (CODEC_PFN_LIMIT - 1)
#define FLAG_COMPRESS 0x01u

_Static_assert(CODEC_BODY_MAX(WIRE_PAGE_MAX) == WIRE_MAX_BODY,
	       "a body of 1024 raw pages is exactly the wire cap");
_Static_assert(PAGE == 4096, "the entry length field holds 0..4096");
_Static_assert(CODEC_NR_METHODS <= 8, "method is 3 bits");

static const uint8_t codec_zero_page[PAGE];

/* ---- small helpers ---------------------------------------------------- */

static void store_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static uint64_t load_word(const uint8_t *p)
{
	uint64_t w;

	memcpy(&w, p, sizeof(w));
	return w;
}

/* Index in memory order of the first / last non-zero byte of x != 0. */
static unsigned word_first_byte(uint64_t x)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	return (unsigned)__builtin_ctzll(x) / 8;
#else
	return (unsigned)__builtin_clzll(x) / 8;
#endif
}

static unsigned word_last_byte(uint64_t x)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	return 7 - (unsigned)__builtin_clzll(x) / 8;
#else
	return 7 - (unsigned)__builtin_ctzll(x) / 8;
#endif
}

static bool page_is_zero(const uint8_t *p)
{
	for (size_t i = 0; i < PAGE; i += 64) {
		uint64_t acc = 0;

		for (size_t k = 0; k < 64; k += 8)
			acc |= load_word(p + i + k);
		if (acc)
			return false;
	}
	return true;
}

const char *codec_method_name(unsigned method)
{
	static const char *const names[CODEC_NR_METHODS] = {
		"ZERO", "RAW", "LZ4", "XOR"
	};

	return method < CODEC_NR_METHODS ? names[method] : "unknown";
}

/*
 * Memory the codec touches at random (cache slots) or in bulk (payload
 * scratch): from 2 MiB on, aligned and advised into transparent huge
 * pages, which fault in ~500 times less often and spare the TLB.
 */
static void *big_alloc(size_t n)
{
	void *p;

	if (n < HUGE_SIZE)
		return malloc(n);
	n = (n + HUGE_SIZE - 1) / HUGE_SIZE * HUGE_SIZE;
	p = aligned_alloc(HUGE_SIZE, n);
	if (p)
		(void)madvise(p, n, MADV_HUGEPAGE); /* advice only */
	return p;
}

/*
 * Writes a page into a cache slot (16-byte aligned).  Where the CPU has
 * streaming stores (x86 SSE2) they are used: the slot is not read again
 * soon, and they spare loading its stale lines from memory first.
 * slot_fence() makes them visible to other threads; the encoder issues it
 * before it returns.
 */
#ifdef __SSE2__
static void slot_store(uint8_t *slot, const uint8_t *src)
{
	for (size_t i = 0; i < PAGE; i += 16) {
		__m128i v;

		memcpy(&v, src + i, sizeof(v));
		_mm_stream_si128((__m128i *)(void *)(slot + i), v);
	}
}

static void slot_fence(void)
{
	_mm_sfence();
}
#else
static void slot_store(uint8_t *slot, const uint8_t *src)
{
	memcpy(slot, src, PAGE);
}

static void slot_fence(void)
{
}
#endif

/* ---- options ---------------------------------------------------------- */

void codec_opts_init(struct codec_opts *o)
{
	o->compress = true;
	o->cache_pages = CODEC_CACHE_DEFAULT;
	o->lz4_accel = 1;
}

static bool is_pow2(uint32_t v)
{
	return v && !(v & (v - 1));
}

int codec_opts_check(const struct codec_opts *o, char *err, size_t errlen)
{
	if (!o->compress)
		return 0;
	if (o->cache_pages != 0 &&
	    (!is_pow2(o->cache_pages) ||
	     o->cache_pages < (1u << CODEC_CACHE_LOG2_MIN) ||
	     o->cache_pages > (1u << CODEC_CACHE_LOG2_MAX))) {
		errmsg_set(err, errlen, "codec options: cache_pages %" PRIu32
			" is not 0 or a power of two in %u..%u", o->cache_pages,
			1u << CODEC_CACHE_LOG2_MIN, 1u << CODEC_CACHE_LOG2_MAX);
		return -EINVAL;
	}
	if (o->lz4_accel < 1 || o->lz4_accel > CODEC_LZ4_ACCEL_MAX) {
		errmsg_set(err, errlen, "codec options: lz4_accel %d not in 1..%d",
			o->lz4_accel, CODEC_LZ4_ACCEL_MAX);
		return -EINVAL;
	}
	return 0;
}

/* cache_log2 as carried in the body: 0 when there is no XOR cache. */
static unsigned opts_cache_log2(const struct codec_opts *o)
{
	if (!o->compress || o->cache_pages == 0)
		return 0;
	return (unsigned)__builtin_ctz(o->cache_pages);
}

/* ---- the XOR cache ---------------------------------------------------- */
/*
 * 2^log2 page slots in sets of CODEC_CACHE_WAYS.  A pfn lives in at most
 * one slot of set (pfn * HASH_MUL) >> (64 - set_bits).  Inserting a pfn
 * reuses its slot, else the lowest empty way, else the way with the
 * oldest insert stamp.  Stamps come from a counter bumped per insert.
 */
struct codec_cache {
	unsigned log2;      /* 0: no cache */
	unsigned set_bits;
	uint64_t clock;
	uint64_t *tag;      /* pfn + 1; 0 = empty */
	uint64_t *stamp;
	uint8_t *data;
	/* Encoder only: bit b of zmask[slot] set = 64-byte block b of the
	 * slot's data is all zero, so the XOR pass need not read it.  Derived
	 * from the data; nothing on the wire depends on it. */
	uint64_t *zmask;
};

static int cache_init(struct codec_cache *c, unsigned log2, bool with_zmask)
{
	size_t n = (size_t)1 << log2;

	memset(c, 0, sizeof(*c));
	if (log2 == 0)
		return 0;
	c->log2 = log2;
	c->set_bits = log2 - 2; /* CODEC_CACHE_WAYS == 4 */
	c->tag = calloc(n, sizeof(*c->tag));
	c->stamp = calloc(n, sizeof(*c->stamp));
	c->data = big_alloc(n * PAGE);
	if (with_zmask && !(c->zmask = calloc(n, sizeof(*c->zmask))))
		return -ENOMEM;
	if (!c->tag || !c->stamp || !c->data)
		return -ENOMEM;
	/* Fault it all in now, off the checkpoint's critical path. */
	memset(c->data, 0, n * PAGE);
	return 0;
}

static void cache_fini(struct codec_cache *c)
{
	free(c->tag);
	free(c->stamp);
	free(c->data);
	free(c->zmask);
	memset(c, 0, sizeof(*c));
}

_Static_assert(CODEC_CACHE_WAYS == 4, "set_bits = log2 - 2");

static size_t cache_set(const struct codec_cache *c, uint64_t pfn)
{
	if (c->set_bits == 0)
		return 0;
	return (size_t)((pfn * HASH_MUL) >> (64 - c->set_bits)) *
	       CODEC_CACHE_WAYS;
}

/* The slot holding pfn, or -1. */
static long cache_find(const struct codec_cache *c, uint64_t pfn)
{
	size_t s = cache_set(c, pfn);

	for (size_t w = 0; w < CODEC_CACHE_WAYS; w++)
		if (c->tag[s + w] == pfn + 1)
			return (long)(s + w);
	return -1;
}

static size_t cache_victim(const struct codec_cache *c, size_t s)
{
	size_t best = s;

	for (size_t w = 0; w < CODEC_CACHE_WAYS; w++)
		if (c->tag[s + w] == 0)
			return s + w;
	for (size_t w = 1; w < CODEC_CACHE_WAYS; w++)
		if (c->stamp[s + w] < c->stamp[best])
			best = s + w;
	return best;
}

/* Makes pfn the newest entry of its set; returns its slot.  *hit says
 * whether the slot already held pfn (then it holds the old version). */
static size_t cache_insert(struct codec_cache *c, uint64_t pfn, bool *hit)
{
	long found = cache_find(c, pfn);
	size_t slot = found >= 0 ? (size_t)found
				 : cache_victim(c, cache_set(c, pfn));

	*hit = found >= 0;
	c->tag[slot] = pfn + 1;
	c->stamp[slot] = ++c->clock;
	return slot;
}

static void cache_drop(struct codec_cache *c, uint64_t pfn)
{
	long slot = cache_find(c, pfn);

	if (slot >= 0) {
		c->tag[slot] = 0;
		c->stamp[slot] = 0;
	}
}

static uint8_t *cache_page(const struct codec_cache *c, size_t slot)
{
	return c->data + slot * PAGE;
}

/* ---- distinct pfns within a record ------------------------------------ */

struct pfn_set {
	uint64_t key[1u << PFN_SET_BITS];
	uint32_t gen[1u << PFN_SET_BITS];
	uint16_t idx[1u << PFN_SET_BITS];
	uint32_t cur;
};

static void pfn_set_reset(struct pfn_set *s)
{
	if (++s->cur == 0) {
		memset(s->gen, 0, sizeof(s->gen));
		s->cur = 1;
	}
}

/* Adds pfn as entry i; returns the earlier entry with that pfn, or -1. */
static int pfn_set_add(struct pfn_set *s, uint64_t pfn, unsigned i)
{
	size_t mask = (1u << PFN_SET_BITS) - 1;
	size_t h = (size_t)((pfn * HASH_MUL) >> (64 - PFN_SET_BITS));

	for (;; h = (h + 1) & mask) {
		if (s->gen[h] != s->cur) {
			s->gen[h] = s->cur;
			s->key[h] = pfn;
			s->idx[h] = (uint16_t)i;
			return -1;
		}
		if (s->key[h] == pfn)
			return s->idx[h];
	}
}

/* ---- XOR runs --------------------------------------------------------- */
/*
 * An XOR payload is a list of runs {be16 skip, be16 len, len bytes}: skip
 * zero bytes of the XOR, then len bytes to XOR into the base.  The
 * encoder builds it while it copies the new page over the old one, so
 * the base is read and updated in one pass.
 */
struct xor_out {
	uint8_t *dst;
	size_t n, limit;   /* bytes written; give up past limit */
	size_t run_hdr;    /* offset of the open run's header */
	size_t run_end;    /* page offset where the open run ends; 0 = none */
	size_t prev_end;   /* page offset after the last closed run */
	bool open, over;
};

static void xor_close(struct xor_out *o)
{
	if (o->open && !o->over)
		store_be16(o->dst + o->run_hdr + 2,
			   (uint16_t)(o->n - o->run_hdr - RUN_HDR));
	o->open = false;
	o->prev_end = o->run_end;
}

/* Appends the XOR bytes xb[lo..hi] found at page offset off. */
static void xor_add(struct xor_out *o, size_t off, const uint8_t *xb,
		    unsigned lo, unsigned hi)
{
	size_t start = off + lo, gap = o->open ? start - o->run_end : 0;
	size_t need = (o->open && gap <= RUN_HDR ? gap : RUN_HDR) + hi - lo + 1;

	if (o->over || o->n + need > o->limit) {
		o->over = true;
		return;
	}
	if (o->open && gap <= RUN_HDR) {
		memset(o->dst + o->n, 0, gap);
		o->n += gap;
	} else {
		xor_close(o);
		o->run_hdr = o->n;
		store_be16(o->dst + o->n, (uint16_t)(start - o->prev_end));
		o->n += RUN_HDR;
		o->open = true;
	}
	memcpy(o->dst + o->n, xb + lo, hi - lo + 1);
	o->n += hi - lo + 1;
	o->run_end = off + hi + 1;
}

/* One 64-byte block: copy changed words into base, code their XOR. */
static void xor_block(struct xor_out *o, uint8_t *base, const uint8_t *page,
		      size_t off)
{
	for (size_t k = 0; k < 64; k += 8) {
		uint64_t w = load_word(page + off + k);
		uint64_t x = w ^ load_word(base + off + k);
		uint8_t xb[8];

		if (!x)
			continue;
		memcpy(base + off + k, &w, sizeof(w));
		memcpy(xb, &x, sizeof(x));
		xor_add(o, off + k, xb, word_first_byte(x), word_last_byte(x));
	}
}

/* OR of the words of a 64-byte block. */
static uint64_t block_or(const uint8_t *p)
{
	uint64_t acc = 0;

	for (size_t k = 0; k < 64; k += 8)
		acc |= load_word(p + k);
	return acc;
}

/*
 * Turns base into a copy of page and writes the runs of page ^ old base
 * to dst.  *zmask marks base's zero blocks (struct codec_cache): those
 * are not read, and the mask is updated from what base holds, never from
 * an earlier read of page (which may be changing under us).  Returns the
 * runs' length, or limit + 1 if they need more than limit bytes (base is
 * fully updated either way).
 */
static size_t xor_update(uint8_t *base, uint64_t *zmask, const uint8_t *page,
			 uint8_t *dst, size_t limit)
{
	struct xor_out o = { .dst = dst, .limit = limit };
	uint64_t mask = *zmask;

	for (size_t b = 0, off = 0; off < PAGE; b++, off += 64) {
		uint64_t now = 0, diff = 0;

		if (mask >> b & 1) {
			for (size_t k = 0; k < 64; k += 8)
				now |= load_word(page + off + k);
			diff = now;
		} else {
			for (size_t k = 0; k < 64; k += 8) {
				uint64_t w = load_word(page + off + k);

				now |= w;
				diff |= w ^ load_word(base + off + k);
			}
		}
		if (diff) {
			xor_block(&o, base, page, off);
			now = block_or(base + off); /* what base holds now */
		}
		mask = now ? mask & ~(1ULL << b) : mask | 1ULL << b;
	}
	*zmask = mask;
	xor_close(&o);
	return o.over ? limit + 1 : o.n;
}

/* Checks a run list against the page size; 0, or -1 with why filled. */
static int xor_check(const uint8_t *p, size_t len, char *why, size_t whylen)
{
	struct wire_cursor c;
	size_t pos = 0;
	unsigned run = 0;

	wire_cursor_init(&c, p, len);
	while (wire_cursor_left(&c) > 0) {
		uint16_t skip, n;
		const uint8_t *lit;

		size_t at = c.off;

		wire_get_be16(&c, &skip);
		wire_get_be16(&c, &n);
		if (wire_get_bytes(&c, n, &lit)) {
			snprintf(why, whylen, "XOR run %u at payload offset %zu "
				 "truncated (%zu bytes left)", run, at,
				 len - at);
			return -1;
		}
		if (n == 0 || pos + skip + n > PAGE) {
			snprintf(why, whylen, "XOR run %u: skip %u + len %u at "
				 "page offset %zu %s", run, skip, n, pos,
				 n == 0 ? "(len must be >= 1)"
					: "runs past 4096");
			return -1;
		}
		pos += (size_t)skip + n;
		run++;
	}
	return 0;
}

/* Applies a checked run list to page in place. */
static void xor_apply(uint8_t *page, const uint8_t *p, size_t len)
{
	struct wire_cursor c;
	size_t pos = 0;

	wire_cursor_init(&c, p, len);
	while (wire_cursor_left(&c) > 0) {
		uint16_t skip, n;
		const uint8_t *lit;

		wire_get_be16(&c, &skip);
		wire_get_be16(&c, &n);
		if (wire_get_bytes(&c, n, &lit))
			return; /* cannot happen: xor_check passed */
		pos += skip;
		for (uint16_t k = 0; k < n; k++)
			page[pos + k] ^= lit[k];
		pos += n;
	}
}

/* ---- encoder ---------------------------------------------------------- */

struct codec_enc {
	struct codec_opts opts;
	struct codec_cache cache;
	uint32_t seq;            /* records encoded */
	bool broken;             /* out failed after the cache changed */
	LZ4_stream_t *lz4;
	uint8_t *scratch;        /* payloads of the record being built */
	size_t scratch_cap;
	uint64_t entry[WIRE_PAGE_MAX];
	struct pfn_set pfns;
	uint8_t tmp[PAGE];       /* lz4 candidate */
	uint8_t stage[PAGE];     /* a page read once, on a cache miss */
	/* codec_pool state, under the pool's lock */
	struct codec_job *qhead, *qtail;
	struct codec_enc *rq_next;
	bool busy;
};

struct codec_enc *codec_enc_new(const struct codec_opts *o)
{
	struct codec_enc *e;

	if (codec_opts_check(o, NULL, 0)) {
		errno = EINVAL;
		return NULL;
	}
	e = calloc(1, sizeof(*e));
	if (!e) {
		errno = ENOMEM;
		return NULL;
	}
	e->opts = *o;
	if (cache_init(&e->cache, opts_cache_log2(o), true) ||
	    (o->compress && !(e->lz4 = LZ4_createStream()))) {
		codec_enc_free(e);
		errno = ENOMEM;
		return NULL;
	}
	return e;
}

void codec_enc_free(struct codec_enc *e)
{
	if (!e)
		return;
	cache_fini(&e->cache);
	if (e->lz4)
		LZ4_freeStream(e->lz4);
	free(e->scratch);
	free(e);
}

static int enc_check(struct codec_enc *e, uint32_t count, const uint64_t *pfn)
{
	if (count < 1 || count > WIRE_PAGE_MAX)
		return -EINVAL;
	pfn_set_reset(&e->pfns);
	for (uint32_t i = 0; i < count; i++)
		if (pfn[i] >= CODEC_PFN_LIMIT || pfn_set_add(&e->pfns, pfn[i], i) >= 0)
			return -EINVAL;
	return 0;
}

/*
 * Room for the worst-case body in out and in the scratch, so that nothing
 * can fail once the cache starts changing.  out is grown by appending and
 * then dropping that many scratch bytes.
 */
static int enc_reserve(struct codec_enc *e, struct wire_buf *out, size_t need)
{
	size_t start = out->len;

	if (need > e->scratch_cap) {
		/* small records: what they need; else room for any record */
		size_t cap = need < HUGE_SIZE / 4 ? need : WIRE_MAX_BODY;
		uint8_t *p = big_alloc(cap);

		if (!p)
			return -ENOMEM;
		free(e->scratch);
		e->scratch = p;
		e->scratch_cap = cap;
	}
	if (out->rc || out->cap - out->len >= need)
		return out->rc;
	if (wire_put_bytes(out, e->scratch, need))
		return out->rc;
	out->len = start;
	return 0;
}

/* lz4 of src if shorter than best, into dst; else 0. */
static size_t enc_lz4(struct codec_enc *e, const uint8_t *src, uint8_t *dst,
		      size_t best)
{
	int n;

	if (best <= LZ4_MIN_BLOCK)
		return 0;
	LZ4_resetStream_fast(e->lz4);
	n = LZ4_compress_fast_continue(e->lz4, (const char *)src,
				       (char *)e->tmp, PAGE, (int)best - 1,
				       e->opts.lz4_accel);
	if (n <= 0)
		return 0;
	memcpy(dst, e->tmp, (size_t)n);
	return (size_t)n;
}

/* LZ4 or RAW of src (no XOR candidate); returns the payload length. */
static size_t enc_lz4_or_raw(struct codec_enc *e, const uint8_t *src,
			     uint8_t *dst, unsigned *method)
{
	size_t n = e->opts.compress ? enc_lz4(e, src, dst, PAGE) : 0;

	if (n) {
		*method = CODEC_LZ4;
		return n;
	}
	memcpy(dst, src, PAGE);
	*method = CODEC_RAW;
	return PAGE;
}

/* A page with an XOR cache: into its slot, then the smallest payload. */
static size_t enc_cached(struct codec_enc *e, uint64_t pfn,
			 const uint8_t *page, uint8_t *dst, unsigned *method)
{
	bool hit;
	size_t at = cache_insert(&e->cache, pfn, &hit), xlen, n;
	uint8_t *slot = cache_page(&e->cache, at);

	if (!hit) {   /* one read of page, encoded and cached from stage */
		memcpy(e->stage, page, PAGE);
		n = enc_lz4_or_raw(e, e->stage, dst, method);
		slot_store(slot, e->stage);
		e->cache.zmask[at] = 0;  /* learnt on the first XOR pass */
		return n;
	}
	xlen = xor_update(slot, &e->cache.zmask[at], page, dst, PAGE - 1);
	if (xlen >= PAGE)
		return enc_lz4_or_raw(e, slot, dst, method);
	n = enc_lz4(e, slot, dst, xlen);   /* overwrites dst only if smaller */
	*method = n ? CODEC_LZ4 : CODEC_XOR;
	return n ? n : xlen;
}

static size_t enc_page(struct codec_enc *e, uint64_t pfn, const uint8_t *page,
		       uint8_t *dst, unsigned *method)
{
	if (page_is_zero(page)) {
		if (e->cache.log2)
			cache_drop(&e->cache, pfn);
		*method = CODEC_ZERO;
		return 0;
	}
	if (e->cache.log2)
		return enc_cached(e, pfn, page, dst, method);
	return enc_lz4_or_raw(e, page, dst, method);
}

static void stats_add(struct codec_stats *st, unsigned method, size_t len)
{
	st->pages++;
	st->bytes_in += PAGE;
	switch (method) {
	case CODEC_ZERO: st->zero++; break;
	case CODEC_RAW: st->raw++; break;
	case CODEC_LZ4: st->lz4++; st->lz4_bytes += len; break;
	default: st->xor++; st->xor_bytes += len; break;
	}
}

static void enc_put(struct codec_enc *e, uint32_t count, size_t used,
		    struct wire_buf *out)
{
	uint8_t cfg[2] = { e->opts.compress ? FLAG_COMPRESS : 0,
			   (uint8_t)e->cache.log2 };

	wire_put_be16(out, (uint16_t)count);
	wire_put_bytes(out, cfg, sizeof(cfg));
	wire_put_be32(out, e->seq);
	for (uint32_t i = 0; i < count; i++)
		wire_put_be64(out, e->entry[i]);
	wire_put_bytes(out, e->scratch, used);
}

int codec_enc_pages(struct codec_enc *e, uint32_t count, const uint64_t *pfn,
		    const void *const *pages, struct wire_buf *out,
		    struct codec_stats *st)
{
	size_t used = 0, start;
	int rc;

	if (!e || !out || !pfn || !pages)
		return -EINVAL;
	if (e->broken)
		return -EBADMSG;
	rc = enc_check(e, count, pfn);
	if (!rc)
		rc = enc_reserve(e, out, CODEC_BODY_MAX(count));
	if (rc)
		return rc;
	start = out->len;
	for (uint32_t i = 0; i < count; i++) {
		unsigned method;
		size_t n = enc_page(e, pfn[i], pages[i], e->scratch + used,
				    &method);

		e->entry[i] = (uint64_t)method << ENTRY_METHOD_SHIFT |
			      (uint64_t)n << ENTRY_LEN_SHIFT | pfn[i];
		used += n;
		if (st)
			stats_add(st, method, n);
	}
	slot_fence();
	enc_put(e, count, used, out);
	if (out->rc) {          /* cannot happen after enc_reserve */
		e->broken = true;
		return out->rc;
	}
	e->seq++;
	if (st)
		st->bytes_out += out->len - start;
	return 0;
}

/* ---- decoder ---------------------------------------------------------- */

struct dec_entry {
	uint64_t pfn;
	uint32_t len;
	unsigned method;
	size_t slot;
};

struct codec_dec {
	struct codec_opts opts;
	struct codec_cache cache;
	uint32_t seq;                /* records decoded */
	bool failed;
	char why[WIRE_ERR_MAX];      /* the error that failed it */
	struct dec_entry ent[WIRE_PAGE_MAX];
	struct pfn_set pfns;
	uint8_t page[PAGE];          /* lz4 output when there is no cache */
};

struct codec_dec *codec_dec_new(const struct codec_opts *o)
{
	struct codec_dec *d;

	if (codec_opts_check(o, NULL, 0)) {
		errno = EINVAL;
		return NULL;
	}
	d = calloc(1, sizeof(*d));
	if (!d) {
		errno = ENOMEM;
		return NULL;
	}
	d->opts = *o;
	if (cache_init(&d->cache, opts_cache_log2(o), false)) {
		codec_dec_free(d);
		errno = ENOMEM;
		return NULL;
	}
	return d;
}

void codec_dec_free(struct codec_dec *d)
{
	if (!d)
		return;
	cache_fini(&d->cache);
	free(d);
}

static int dec_header(struct codec_dec *d, struct wire_cursor *c,
		      uint16_t *count)
{
	const uint8_t *cfg;
	uint32_t seq;
	unsigned want_flags = d->opts.compress ? FLAG_COMPRESS : 0;

	wire_get_be16(c, count);
	wire_get_bytes(c, 2, &cfg);
	wire_get_be32(c, &seq);
	if (c->rc)
		return c->rc;
	if (*count < 1 || *count > WIRE_PAGE_MAX)
		return wire_cursor_fail(c, -EBADMSG, "count %u not in 1..%d",
					*count, WIRE_PAGE_MAX);
	if (cfg[0] & ~FLAG_COMPRESS)
		return wire_cursor_fail(c, -EBADMSG, "flags 0x%02x: unknown "
					"bits 0x%02x", cfg[0],
					cfg[0] & ~FLAG_COMPRESS);
	if (cfg[0] != want_flags || cfg[1] != d->cache.log2)
		return wire_cursor_fail(c, -EBADMSG, "options (compress %s, "
					"cache_log2 %u) differ from this "
					"decoder's (compress %s, cache_log2 %u)",
					cfg[0] ? "on" : "off", cfg[1],
					want_flags ? "on" : "off", d->cache.log2);
	if (seq != d->seq)
		return wire_cursor_fail(c, -EBADMSG, "sequence %" PRIu32 " != "
					"expected %" PRIu32 " (a record was "
					"lost, repeated or reordered)",
					seq, d->seq);
	if (wire_cursor_left(c) < (size_t)*count * CODEC_ENTRY_SIZE)
		return wire_cursor_fail(c, -EBADMSG, "truncated: %u entries "
					"need %zu bytes, %zu left", *count,
					(size_t)*count * CODEC_ENTRY_SIZE,
					wire_cursor_left(c));
	return 0;
}

/* Length rule of each method; "" when len is allowed. */
static const char *method_len_rule(unsigned method, uint32_t len)
{
	switch (method) {
	case CODEC_ZERO: return len == 0 ? "" : "must be 0";
	case CODEC_RAW: return len == PAGE ? "" : "must be 4096";
	case CODEC_LZ4: return len >= 1 && len < PAGE ? "" : "not in 1..4095";
	default: return len < PAGE ? "" : "not in 0..4095";
	}
}

static int dec_method(const struct codec_dec *d, unsigned i,
		      const struct dec_entry *en, struct wire_cursor *c)
{
	const char *rule;

	if (en->method >= CODEC_NR_METHODS)
		return wire_cursor_fail(c, -EBADMSG, "entry %u: unknown method "
					"%u", i, en->method);
	if (!d->opts.compress && en->method >= CODEC_LZ4)
		return wire_cursor_fail(c, -EBADMSG, "entry %u: method %s on a "
					"channel without compression", i,
					codec_method_name(en->method));
	if (en->method == CODEC_XOR && !d->cache.log2)
		return wire_cursor_fail(c, -EBADMSG, "entry %u: method XOR on a "
					"channel without a cache", i);
	rule = method_len_rule(en->method, en->len);
	if (*rule)
		return wire_cursor_fail(c, -EBADMSG, "entry %u: %s length %"
					PRIu32 " %s", i,
					codec_method_name(en->method), en->len,
					rule);
	return 0;
}

/* Entries: method, length, pfn, distinct pfns, payload bounds. */
static int dec_entries(struct codec_dec *d, struct wire_cursor *c,
		       unsigned count, uint64_t nr_pages)
{
	size_t base = CODEC_HEADER_SIZE + (size_t)count * CODEC_ENTRY_SIZE;
	size_t payload = 0, room = c->len - base;
	uint64_t word;

	pfn_set_reset(&d->pfns);
	for (unsigned i = 0; i < count && !c->rc; i++) {
		struct dec_entry *en = &d->ent[i];
		int prev;

		wire_get_be64(c, &word);
		en->method = (unsigned)(word >> ENTRY_METHOD_SHIFT);
		en->len = (uint32_t)((word >> ENTRY_LEN_SHIFT) & ENTRY_LEN_MASK);
		en->pfn = word & ENTRY_PFN_MASK;
		if (dec_method(d, i, en, c))
			break;
		if (en->pfn >= nr_pages)
			return wire_cursor_fail(c, -EBADMSG, "entry %u: pfn %"
						PRIu64 " past guest memory (%"
						PRIu64 " pages)", i, en->pfn,
						nr_pages);
		prev = pfn_set_add(&d->pfns, en->pfn, i);
		if (prev >= 0)
			return wire_cursor_fail(c, -EBADMSG, "entry %u: pfn %"
						PRIu64 " repeats entry %d", i,
						en->pfn, prev);
		if (en->len > room - payload)
			return wire_cursor_fail(c, -EBADMSG, "entry %u (pfn %"
						PRIu64 "): payload of %" PRIu32
						" bytes at offset %zu runs past "
						"the body (%zu bytes)", i,
						en->pfn, en->len, base + payload,
						c->len);
		payload += en->len;
	}
	if (!c->rc && payload != room)
		wire_cursor_fail(c, -EBADMSG, "body length %zu != %zu (header, "
				 "entries and payloads): %zu trailing bytes",
				 c->len, c->len - (room - payload),
				 room - payload);
	return c->rc;
}

/* XOR runs and the cache steps, in entry order; records each slot. */
static int dec_cache_steps(struct codec_dec *d, struct wire_cursor *c,
			   unsigned count)
{
	for (unsigned i = 0; i < count; i++) {
		struct dec_entry *en = &d->ent[i];
		const uint8_t *p;
		char why[160];
		bool hit;

		wire_get_bytes(c, en->len, &p);
		if (en->method == CODEC_XOR &&
		    xor_check(p, en->len, why, sizeof(why)))
			return wire_cursor_fail(c, -EBADMSG, "entry %u (pfn %"
						PRIu64 "): %s", i, en->pfn, why);
		if (!d->cache.log2)
			continue;
		if (en->method == CODEC_XOR && cache_find(&d->cache, en->pfn) < 0)
			return wire_cursor_fail(c, -EBADMSG, "entry %u: XOR but "
						"pfn %" PRIu64 " is not in the "
						"cache", i, en->pfn);
		if (en->method == CODEC_ZERO)
			cache_drop(&d->cache, en->pfn);
		else
			en->slot = cache_insert(&d->cache, en->pfn, &hit);
	}
	return 0;
}

/* Decodes entry i from payload p; returns the page, or NULL (c says why). */
static const uint8_t *dec_page(struct codec_dec *d, unsigned i,
			       const uint8_t *p, struct wire_cursor *c)
{
	const struct dec_entry *en = &d->ent[i];
	uint8_t *dst = d->cache.log2 ? cache_page(&d->cache, en->slot) : d->page;
	int n;

	switch (en->method) {
	case CODEC_ZERO:
		return codec_zero_page;
	case CODEC_RAW:
		if (!d->cache.log2)
			return p;
		memcpy(dst, p, PAGE);
		return dst;
	case CODEC_XOR:
		xor_apply(dst, p, en->len);
		return dst;
	}
	n = LZ4_decompress_safe((const char *)p, (char *)dst, (int)en->len, PAGE);
	if (n == PAGE)
		return dst;
	wire_cursor_fail(c, -EBADMSG, "entry %u (pfn %" PRIu64 "): LZ4 payload "
			 "of %" PRIu32 " bytes %s %d", i, en->pfn, en->len,
			 n < 0 ? "is corrupt: LZ4_decompress_safe returned"
			       : "decodes to a wrong size:", n);
	return NULL;
}

static int dec_emit(struct codec_dec *d, struct wire_cursor *c, unsigned count,
		    int (*sink)(void *, uint64_t, const uint8_t *), void *arg)
{
	for (unsigned i = 0; i < count; i++) {
		const uint8_t *p, *page;
		int rc;

		wire_get_bytes(c, d->ent[i].len, &p);
		page = dec_page(d, i, p, c);
		if (!page)
			return c->rc;
		rc = sink(arg, d->ent[i].pfn, page);
		if (rc)
			return wire_cursor_fail(c, rc, "entry %u: sink returned "
						"%d for pfn %" PRIu64, i, rc,
						d->ent[i].pfn);
	}
	return 0;
}

static int dec_fail(struct codec_dec *d, const struct wire_cursor *c,
		    char *err, size_t errlen)
{
	d->failed = true;
	snprintf(d->why, sizeof(d->why), "%s", c->err);
	errmsg_set(err, errlen, "PAGE_CODED: %s", c->err);
	return c->rc;
}

int codec_dec_pages(struct codec_dec *d, const uint8_t *body, size_t len,
		    uint64_t nr_pages,
		    int (*sink)(void *arg, uint64_t pfn, const uint8_t *page),
		    void *arg, char *err, size_t errlen)
{
	struct wire_cursor c;
	uint16_t count = 0;
	size_t payloads;

	if (!d || !sink || (!body && len))
		return -EINVAL;
	if (d->failed) {
		errmsg_set(err, errlen, "PAGE_CODED: decoder failed earlier (%s)",
			d->why);
		return -EBADMSG;
	}
	wire_cursor_init(&c, body, len);
	if (len > WIRE_MAX_BODY)
		wire_cursor_fail(&c, -E2BIG, "length %zu > max %u", len,
				 WIRE_MAX_BODY);
	if (!c.rc && !dec_header(d, &c, &count) &&
	    !dec_entries(d, &c, count, nr_pages)) {
		payloads = c.off;
		dec_cache_steps(d, &c, count);
		c.off = payloads;
		if (!c.rc)
			dec_emit(d, &c, count, sink, arg);
	}
	if (c.rc)
		return dec_fail(d, &c, err, errlen);
	d->seq++;
	return 0;
}

/* ---- worker pool ------------------------------------------------------ */

struct codec_pool {
	pthread_mutex_t lock;
	pthread_cond_t work;         /* run queue not empty, or stopping */
	pthread_cond_t done;         /* a job completed */
	struct codec_enc *rq_head, *rq_tail; /* encoders with a job to run */
	uint64_t pending;            /* submitted, not complete */
	bool stopping;
	unsigned nthreads;
	pthread_t thread[POOL_MAX_THREADS];
};

static void pool_rq_push(struct codec_pool *p, struct codec_enc *e)
{
	e->rq_next = NULL;
	if (p->rq_tail)
		p->rq_tail->rq_next = e;
	else
		p->rq_head = e;
	p->rq_tail = e;
	pthread_cond_signal(&p->work);
}

static struct codec_enc *pool_rq_pop(struct codec_pool *p)
{
	struct codec_enc *e = p->rq_head;

	p->rq_head = e->rq_next;
	if (!p->rq_head)
		p->rq_tail = NULL;
	return e;
}

/* Runs the first job of e (lock not held). */
static void pool_run(struct codec_job *job)
{
	job->rc = codec_enc_pages(job->enc, job->count, job->pfn, job->pages,
				  job->out, job->st);
	if (job->done)
		job->done(job->done_arg, job);
}

static void *pool_worker(void *arg)
{
	struct codec_pool *p = arg;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct codec_enc *e;
		struct codec_job *job;

		while (!p->rq_head && !p->stopping)
			pthread_cond_wait(&p->work, &p->lock);
		if (!p->rq_head)
			break;
		e = pool_rq_pop(p);
		job = e->qhead;
		e->qhead = job->next;
		if (!e->qhead)
			e->qtail = NULL;
		pthread_mutex_unlock(&p->lock);
		pool_run(job);
		pthread_mutex_lock(&p->lock);
		job->complete = true;
		p->pending--;
		if (e->qhead)
			pool_rq_push(p, e);
		else
			e->busy = false;
		pthread_cond_broadcast(&p->done);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

static void pool_stop(struct codec_pool *p, unsigned started)
{
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < started; i++)
		pthread_join(p->thread[i], NULL);
	pthread_cond_destroy(&p->work);
	pthread_cond_destroy(&p->done);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

struct codec_pool *codec_pool_new(unsigned nthreads)
{
	struct codec_pool *p;

	if (nthreads == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		nthreads = n < 1 ? 1 : n > POOL_MAX_THREADS ? POOL_MAX_THREADS
							     : (unsigned)n;
	}
	if (nthreads > POOL_MAX_THREADS) {
		errno = EINVAL;
		return NULL;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		errno = ENOMEM;
		return NULL;
	}
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->done, NULL);
	for (p->nthreads = 0; p->nthreads < nthreads; p->nthreads++) {
		int rc = pthread_create(&p->thread[p->nthreads], NULL,
					pool_worker, p);

		if (rc) {
			pool_stop(p, p->nthreads);
			errno = rc;
			return NULL;
		}
	}
	return p;
}

int codec_pool_submit(struct codec_pool *p, struct codec_job *job)
{
	struct codec_enc *e = job->enc;

	if (!e || !job->out)
		return -EINVAL;
	pthread_mutex_lock(&p->lock);
	if (p->stopping) {
		pthread_mutex_unlock(&p->lock);
		return -EINVAL;
	}
	job->complete = false;
	job->next = NULL;
	if (e->qtail)
		e->qtail->next = job;
	else
		e->qhead = job;
	e->qtail = job;
	p->pending++;
	if (!e->busy) {
		e->busy = true;
		pool_rq_push(p, e);
	}
	pthread_mutex_unlock(&p->lock);
	return 0;
}

int codec_pool_wait(struct codec_pool *p, struct codec_job *job)
{
	pthread_mutex_lock(&p->lock);
	while (!job->complete)
		pthread_cond_wait(&p->done, &p->lock);
	pthread_mutex_unlock(&p->lock);
	return job->rc;
}

bool codec_pool_done(struct codec_pool *p, struct codec_job *job)
{
	bool complete;

	pthread_mutex_lock(&p->lock);
	complete = job->complete;
	pthread_mutex_unlock(&p->lock);
	return complete;
}

void codec_pool_drain(struct codec_pool *p)
{
	pthread_mutex_lock(&p->lock);
	while (p->pending)
		pthread_cond_wait(&p->done, &p->lock);
	pthread_mutex_unlock(&p->lock);
}

void codec_pool_free(struct codec_pool *p)
{
	if (!p)
		return;
	codec_pool_drain(p);
	pool_stop(p, p->nthreads);
}
