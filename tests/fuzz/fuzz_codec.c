/*
 * fuzz_codec.c - libFuzzer harness for the page codec decoder
 * (transport/codec.c, docs/page-codecs.md).
 *
 * Input: one scenario byte, then a PAGE_CODED body (or two).
 *   bits 0-1  options: 0 = compress + 16-page cache, 1 = compress without
 *             cache, 2 = compress off, 3 = compress + 4-page cache
 *   bit 2     warm: the decoder first decodes a fixed warm-up record (pfns
 *             1-4, as test_codec builds it), so XOR entries can hit
 *   bit 3     fix: overwrite flags, cache_log2 and sequence with what the
 *             decoder expects, so mutations get past those checks
 *   bit 4     two bodies: be16 length of the first, the first, the second
 * Each body is decoded with nr_pages 1024 by the decoder and by a twin
 * built the same way.  Checked: the result is 0, -EBADMSG or -E2BIG; both
 * twins agree on it and on every page; a refused body emitted no page
 * unless an LZ4 payload failed while decoding; emitted pfns are distinct
 * and in range; after a refusal the next body is refused with no page;
 * and the pages of an accepted body survive a round trip through a fresh
 * encoder/decoder pair.  Any broken invariant traps.
 *
 * Build: make build/fuzz/fuzz_codec (clang, -fsanitize=fuzzer,address,
 *        undefined).  Seeds: tests/fuzz/corpus/codec/, written by
 *        test_codec --write-seeds DIR.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "codec_fill.h"

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)
#define PG 4096
#define FZ_NR_PAGES 1024

/* ---- the warm-up record: pages from codec_fill.h ------------------------ */

static struct codec_opts scenario_opts(unsigned scenario)
{
	struct codec_opts o;

	codec_opts_init(&o);
	switch (scenario & 3) {
	case 0: o.cache_pages = 16; break;
	case 1: o.cache_pages = 0; break;
	case 2: o.compress = false; break;
	default: o.cache_pages = 4; break;
	}
	return o;
}

/* The warm-up body for each option set, encoded once. */
static struct wire_buf warm_body[4];

static const struct wire_buf *warm_for(unsigned scenario)
{
	static const uint64_t pfn[4] = { 1, 2, 3, 4 };
	static uint8_t pg[4][PG];
	struct wire_buf *b = &warm_body[scenario & 3];
	struct codec_opts o = scenario_opts(scenario);
	const void *pp[4] = { pg[0], pg[1], pg[2], pg[3] };
	struct codec_enc *e;

	if (b->len)
		return b;
	fill_page(pg[0], FILL_SPARSE, 1);
	fill_page(pg[1], FILL_TEXT, 2);
	fill_page(pg[2], FILL_RANDOM, 3);
	fill_page(pg[3], FILL_ZERO, 0);
	e = codec_enc_new(&o);
	CHECK(e && codec_enc_pages(e, 4, pfn, pp, b, NULL) == 0);
	codec_enc_free(e);
	return b;
}

/* ---- capture sink ----------------------------------------------------- */

struct capture {
	unsigned calls;
	uint64_t pfn[WIRE_PAGE_MAX];
	uint8_t seen[FZ_NR_PAGES / 8];
	uint8_t *pages;              /* WIRE_PAGE_MAX pages */
};

static int capture_sink(void *arg, uint64_t pfn, const uint8_t *page)
{
	struct capture *c = arg;

	CHECK(pfn < FZ_NR_PAGES && c->calls < WIRE_PAGE_MAX);
	CHECK(!(c->seen[pfn / 8] & (1u << (pfn % 8))));
	c->seen[pfn / 8] |= (uint8_t)(1u << (pfn % 8));
	memcpy(c->pages + (size_t)c->calls * PG, page, PG);
	c->pfn[c->calls++] = pfn;
	return 0;
}

static void capture_reset(struct capture *c)
{
	c->calls = 0;
	memset(c->seen, 0, sizeof(c->seen));
}

static struct capture cap[3];

static void captures_init(void)
{
	for (int i = 0; i < 3 && !cap[i].pages; i++) {
		cap[i].pages = malloc((size_t)WIRE_PAGE_MAX * PG);
		CHECK(cap[i].pages);
	}
}

/* ---- decoding --------------------------------------------------------- */

static struct codec_dec *make_dec(unsigned scenario)
{
	struct codec_opts o = scenario_opts(scenario);
	struct codec_dec *d = codec_dec_new(&o);
	const struct wire_buf *w;
	char err[WIRE_ERR_MAX];

	CHECK(d);
	if (scenario & 4) {
		w = warm_for(scenario);
		capture_reset(&cap[2]);
		CHECK(codec_dec_pages(d, w->data, w->len, FZ_NR_PAGES,
				      capture_sink, &cap[2], err,
				      sizeof(err)) == 0);
	}
	return d;
}

/* A copy of body with the header fields the decoder expects. */
static uint8_t *fixed_copy(unsigned scenario, const uint8_t *body, size_t len,
			   uint32_t seq)
{
	struct codec_opts o = scenario_opts(scenario);
	uint8_t *p = malloc(len ? len : 1);

	CHECK(p);
	if (len)
		memcpy(p, body, len);
	if (len >= CODEC_HEADER_SIZE) {
		p[2] = o.compress ? 1 : 0;
		p[3] = o.compress && o.cache_pages ?
		       (uint8_t)__builtin_ctz(o.cache_pages) : 0;
		p[4] = (uint8_t)(seq >> 24);
		p[5] = (uint8_t)(seq >> 16);
		p[6] = (uint8_t)(seq >> 8);
		p[7] = (uint8_t)seq;
	}
	return p;
}

/* Pages of an accepted body: encode them with a fresh pair and decode. */
static void round_trip(unsigned scenario, const struct capture *c)
{
	struct codec_opts o = scenario_opts(scenario);
	struct codec_enc *e = codec_enc_new(&o);
	struct codec_dec *d = codec_dec_new(&o);
	const void *pp[WIRE_PAGE_MAX];
	struct wire_buf b;
	char err[WIRE_ERR_MAX];

	CHECK(e && d);
	wire_buf_init(&b);
	for (unsigned i = 0; i < c->calls; i++)
		pp[i] = c->pages + (size_t)i * PG;
	CHECK(codec_enc_pages(e, c->calls, c->pfn, pp, &b, NULL) == 0);
	CHECK(b.len <= WIRE_MAX_BODY);
	capture_reset(&cap[2]);
	CHECK(codec_dec_pages(d, b.data, b.len, FZ_NR_PAGES, capture_sink,
			      &cap[2], err, sizeof(err)) == 0);
	CHECK(cap[2].calls == c->calls);
	CHECK(memcmp(cap[2].pfn, c->pfn, c->calls * sizeof(c->pfn[0])) == 0);
	CHECK(memcmp(cap[2].pages, c->pages, (size_t)c->calls * PG) == 0);
	wire_buf_fini(&b);
	codec_enc_free(e);
	codec_dec_free(d);
}

/* Decodes one body with both twins; returns the common result. */
static int decode_twins(struct codec_dec *d[2], unsigned scenario,
			const uint8_t *body, size_t len)
{
	char err[2][WIRE_ERR_MAX];
	int rc[2];

	for (int t = 0; t < 2; t++) {
		capture_reset(&cap[t]);
		err[t][0] = '\0';
		rc[t] = codec_dec_pages(d[t], body, len, FZ_NR_PAGES,
					capture_sink, &cap[t], err[t],
					sizeof(err[t]));
	}
	CHECK(rc[0] == rc[1] && cap[0].calls == cap[1].calls);
	CHECK(strcmp(err[0], err[1]) == 0);
	CHECK(rc[0] == 0 || rc[0] == -EBADMSG || rc[0] == -E2BIG);
	CHECK(memcmp(cap[0].pfn, cap[1].pfn, cap[0].calls * 8) == 0);
	CHECK(memcmp(cap[0].pages, cap[1].pages, (size_t)cap[0].calls * PG) == 0);
	if (rc[0] != 0) {
		CHECK(strncmp(err[0], "PAGE_CODED: ", 12) == 0);
		CHECK(cap[0].calls == 0 || strstr(err[0], "LZ4 payload"));
	} else {
		CHECK(cap[0].calls >= 1);
		round_trip(scenario, &cap[0]);
	}
	return rc[0];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct codec_dec *d[2];
	const uint8_t *body[2];
	size_t len[2];
	unsigned scenario, n = 1;
	uint32_t seq;
	int rc = 0;

	if (size < 1)
		return 0;
	captures_init();
	scenario = data[0];
	body[0] = data + 1;
	len[0] = size - 1;
	if (scenario & 16) {
		size_t first;

		if (size < 3)
			return 0;
		first = (size_t)data[1] << 8 | data[2];
		if (first > size - 3)
			return 0;
		body[0] = data + 3;
		len[0] = first;
		body[1] = data + 3 + first;
		len[1] = size - 3 - first;
		n = 2;
	}
	d[0] = make_dec(scenario);
	d[1] = make_dec(scenario);
	seq = scenario & 4 ? 1 : 0;
	for (unsigned i = 0; i < n; i++) {
		uint8_t *copy = NULL;
		const uint8_t *p = body[i];

		if (scenario & 8)
			p = copy = fixed_copy(scenario, body[i], len[i], seq);
		if (rc != 0) {
			/* an earlier refusal: failed for good */
			capture_reset(&cap[0]);
			CHECK(codec_dec_pages(d[0], p, len[i], FZ_NR_PAGES,
					      capture_sink, &cap[0], NULL,
					      0) == -EBADMSG);
			CHECK(cap[0].calls == 0);
		} else {
			rc = decode_twins(d, scenario, p, len[i]);
			seq += rc == 0;
		}
		free(copy);
	}
	codec_dec_free(d[0]);
	codec_dec_free(d[1]);
	return 0;
}
