/*
 * fuzz_link.c - libFuzzer harness for what a link parses from its peer:
 * the LINK stream header, record headers (tpl_header's checks) and every
 * link record body decoder (HELLO, WELCOME, JOIN, JOINED, PING/PONG,
 * SYNC, BYE).
 *
 * The first input byte picks the decoder; the rest is its input.  A
 * decoder that accepts must produce fields within their limits, which the
 * harness re-checks (a decoder that accepts garbage is a bug even if
 * nothing crashes), and encoding what it decoded must give back the same
 * bytes.
 */
#include "link_codec.h"
#include "wire.h"

#include <stdlib.h>
#include <string.h>

static void check(int cond)
{
	if (!cond)
		abort();
}

static void roundtrip(const uint8_t *in, size_t len, const struct wire_buf *b)
{
	check(b->rc == 0 && b->len == len && memcmp(b->data, in, len) == 0);
}

static void fuzz_hello(const uint8_t *p, size_t n)
{
	struct link_hello h;
	struct wire_buf b;

	if (link_hello_decode(p, n, &h, NULL, 0))
		return;
	check(h.proto_min <= h.proto_max && h.nr_bulk <= TP_MAX_BULK);
	check(strlen(h.name) >= 1 && strlen(h.name) < TP_NAME_MAX);
	wire_buf_init(&b);
	link_hello_put(&b, &h);
	roundtrip(p, n, &b);
	wire_buf_fini(&b);
}

static void fuzz_welcome(const uint8_t *p, size_t n)
{
	struct link_welcome w;
	struct wire_buf b;

	if (link_welcome_decode(p, n, &w, NULL, 0))
		return;
	check(w.nr_bulk <= TP_MAX_BULK && strlen(w.name) >= 1);
	wire_buf_init(&b);
	link_welcome_put(&b, &w);
	/* reserved fields are ignored on receive and written as zero */
	check(b.rc == 0 && b.len == n);
	wire_buf_fini(&b);
}

static void fuzz_small(uint8_t which, const uint8_t *p, size_t n)
{
	struct link_join j;
	struct link_ping pg;
	struct link_sync s;
	uint32_t chan;
	char bye[LINK_BYE_MAX + 1];

	switch (which) {
	case 2:
		if (!link_join_decode(p, n, &j, NULL, 0))
			check(j.chan >= 1 && j.chan <= TP_MAX_BULK);
		break;
	case 3:
		if (!link_joined_decode(p, n, &chan, NULL, 0))
			check(chan >= 1 && chan <= TP_MAX_BULK);
		break;
	case 4:
		if (!link_ping_decode(p, n, &pg, NULL, 0))
			check(n == LINK_PING_SIZE);
		break;
	case 5:
		if (!link_sync_decode(p, n, &s, NULL, 0))
			check(s.nr_chan >= 1 && s.nr_chan <= 1 + TP_MAX_BULK &&
			      n == 8 + 8 * (size_t)s.nr_chan);
		break;
	default:
		if (!link_bye_decode(p, n, bye, sizeof(bye)))
			check(strlen(bye) <= n);
		break;
	}
}

static void fuzz_headers(const uint8_t *p, size_t n)
{
	struct wire_stream_header sh;
	struct wire_record_header rh;

	if (n >= WIRE_STREAM_HEADER_SIZE)
		wire_stream_header_decode(p, &sh, NULL, 0);
	if (n >= WIRE_RECORD_HEADER_SIZE &&
	    !wire_record_header_decode(p, WIRE_MAX_BODY, &rh, NULL, 0)) {
		check(rh.length <= WIRE_MAX_BODY);
		if (wire_padded_length(rh.length) <= n - WIRE_RECORD_HEADER_SIZE)
			wire_record_verify_seeded(p, p + WIRE_RECORD_HEADER_SIZE,
						  &rh, 0x1234, NULL, 0);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	switch (data[0] % 8) {
	case 0:
		fuzz_hello(data + 1, size - 1);
		break;
	case 1:
		fuzz_welcome(data + 1, size - 1);
		break;
	case 7:
		fuzz_headers(data + 1, size - 1);
		break;
	default:
		fuzz_small((uint8_t)(data[0] % 8), data + 1, size - 1);
		break;
	}
	return 0;
}
