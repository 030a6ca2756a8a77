/*
 * test_stream_codec.c - unit tests of the stream device's message codec
 * (hypervisor-hooks/uvm/stream_codec.c): ring sizing, put/parse round trips
 * starting at every aligned offset of a small ring (so header and payload
 * wrap at every possible place) and across the 2^32 index wrap, messages
 * only partly published, every malformed header field, impossible indices
 * (producer more than a ring ahead, behind, unaligned), the shared size
 * field, and the saved connection table with its bounds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>

#include <cmocka.h>

#include "stream_codec.h"

#define T_SIZE 256u /* a small ring so every wrap position is reachable */

static _Alignas(64) uint8_t t_data[T_SIZE];
static char t_why[256];

static struct uvm_scodec_ring t_ring(uint32_t size)
{
	return (struct uvm_scodec_ring){ .data = t_data, .size = size };
}

static void t_fill(uint8_t *p, uint32_t len, uint32_t seed)
{
	for (uint32_t i = 0; i < len; i++)
		p[i] = (uint8_t)(seed * 131 + i * 7 + 1);
}

/* Gather a parsed payload from its parts. */
static uint32_t t_gather(const struct uvm_scodec_msg *m, uint8_t *out)
{
	memcpy(out, m->part[0], m->part_len[0]);
	memcpy(out + m->part_len[0], m->part[1], m->part_len[1]);
	return m->part_len[0] + m->part_len[1];
}

static int t_next(uint32_t cons, uint32_t prod, unsigned allowed,
		  struct uvm_scodec_msg *m)
{
	struct uvm_scodec_ring r = t_ring(T_SIZE);

	t_why[0] = '\0';
	return uvm_scodec_next(&r, T_SIZE, cons, prod, allowed, m, t_why,
			       sizeof(t_why));
}

/* Write a raw header at index idx (no checks), for malformed input. */
static void t_raw_hdr(uint32_t idx, uint16_t type, uint16_t flags,
		      uint32_t conn, uint32_t len, uint32_t arg)
{
	struct uvm_stream_hdr h = { type, flags, conn, len, arg };
	uint8_t b[UVM_SCODEC_HDR_SIZE];

	memcpy(b, &h, sizeof(b));
	for (uint32_t i = 0; i < sizeof(b); i++)
		t_data[(idx + i) & (T_SIZE - 1)] = b[i];
}

/* ---- sizing and init ----------------------------------------------------- */

static void test_ring_size(void **state)
{
	(void)state;
	assert_int_equal(uvm_scodec_ring_size(UVM_STREAM_RING_PAGES * 4096ull),
			 65536);
	assert_int_equal(uvm_scodec_ring_size(4096), 2048);
	assert_int_equal(uvm_scodec_ring_size(64 + 16), 16);
	assert_int_equal(uvm_scodec_ring_size(64 + 31), 16);
	assert_int_equal(uvm_scodec_ring_size(64 + 32), 32);
	assert_int_equal(uvm_scodec_ring_size(64 + 15), 0);
	assert_int_equal(uvm_scodec_ring_size(0), 0);
	assert_int_equal(uvm_scodec_ring_size(1ull << 40), 1u << 31);
	assert_int_equal(uvm_scodec_msg_bytes(0), 16);
	assert_int_equal(uvm_scodec_msg_bytes(1), 24);
	assert_int_equal(uvm_scodec_msg_bytes(8), 24);
	assert_int_equal(uvm_scodec_msg_bytes(9), 32);
	assert_int_equal(uvm_scodec_msg_bytes(UVM_STREAM_MAX_DATA),
			 UVM_STREAM_MAX_DATA + 16);
}

static void test_ring_init(void **state)
{
	static _Alignas(64) uint8_t mem[4096];
	struct uvm_bytering *r = (struct uvm_bytering *)mem;

	(void)state;
	memset(mem, 0xa5, sizeof(mem));
	uvm_scodec_ring_init(r, 2048);
	assert_int_equal(r->size, 2048);
	assert_int_equal(r->prod, 0);
	assert_int_equal(r->cons, 0);
	assert_int_equal(r->prod_event, 0);
	assert_int_equal(r->cons_event, 0);
	for (size_t i = 0; i < sizeof(r->pad) / sizeof(r->pad[0]); i++)
		assert_int_equal(r->pad[i], 0);
	assert_int_equal(mem[64], 0xa5); /* data untouched */
	assert_int_equal(offsetof(struct uvm_bytering, data), 64);
}

static void test_check_size(void **state)
{
	(void)state;
	assert_int_equal(uvm_scodec_check_size(256, 256, t_why, sizeof(t_why)),
			 0);
	assert_int_equal(uvm_scodec_check_size(512, 256, t_why, sizeof(t_why)),
			 -EBADMSG);
	assert_non_null(strstr(t_why, "512"));
	assert_int_equal(uvm_scodec_check_size(0, 256, t_why, sizeof(t_why)),
			 -EBADMSG);
	assert_int_equal(uvm_scodec_check_size(300, 300, t_why, sizeof(t_why)),
			 -EBADMSG);
}

/* ---- round trips ------------------------------------------------------------ */

/* Put one message at prod and parse it back; checks every field. */
static void t_round_trip(uint32_t prod, uint16_t type, uint32_t conn,
			 uint32_t len, uint32_t arg)
{
	struct uvm_scodec_ring r = t_ring(T_SIZE);
	struct uvm_stream_hdr h = { .type = type, .conn = conn, .len = len,
				    .arg = arg };
	uint8_t in[T_SIZE], out[T_SIZE];
	struct uvm_scodec_msg m;
	uint32_t next = 0;

	t_fill(in, len, prod + len);
	memset(t_data, 0xee, sizeof(t_data));
	assert_int_equal(uvm_scodec_put(&r, prod, T_SIZE, &h, in, &next), 0);
	assert_int_equal(next - prod, uvm_scodec_msg_bytes(len));
	assert_int_equal(t_next(prod, next, UVM_SCODEC_ALL_TYPES, &m), 1);
	assert_int_equal(m.hdr.type, type);
	assert_int_equal(m.hdr.flags, 0);
	assert_int_equal(m.hdr.conn, conn);
	assert_int_equal(m.hdr.len, len);
	assert_int_equal(m.hdr.arg, arg);
	assert_int_equal(m.next, next);
	assert_int_equal(t_gather(&m, out), len);
	assert_memory_equal(in, out, len);
	/* padding is zero */
	for (uint32_t i = prod + 16 + len; i != next; i++)
		assert_int_equal(t_data[i & (T_SIZE - 1)], 0);
	/* nothing written outside the message */
	for (uint32_t i = next; i != prod + T_SIZE; i++)
		assert_int_equal(t_data[i & (T_SIZE - 1)], 0xee);
}

static void test_round_trip_every_offset(void **state)
{
	static const uint32_t bases[] = { 0, 0x10000, 0xffffff00u };

	(void)state;
	for (size_t b = 0; b < sizeof(bases) / sizeof(bases[0]); b++)
		for (uint32_t off = 0; off < T_SIZE; off += UVM_STREAM_ALIGN)
			for (uint32_t len = 0; len <= T_SIZE - 16; len++)
				t_round_trip(bases[b] + off, UVM_STREAM_DATA,
					     1 + (off + len) % 1024, len, 0);
}

static void test_round_trip_control(void **state)
{
	(void)state;
	for (uint32_t off = 0; off < T_SIZE; off += UVM_STREAM_ALIGN) {
		t_round_trip(off, UVM_STREAM_OPEN, 1, 0, UVM_STREAM_WINDOW);
		t_round_trip(off, UVM_STREAM_CLOSE, UVM_STREAM_MAX_CONNS, 0, 0);
		t_round_trip(off, UVM_STREAM_CREDIT, 77, 0, 0xffffffffu);
	}
}

/* A stream of messages through the ring, many times round, across 2^32. */
static void test_stream_through_ring(void **state)
{
	struct uvm_scodec_ring r = t_ring(T_SIZE);
	uint32_t prod = 0xfffff000u, cons = prod, sent = 0, got = 0;
	uint8_t in[128], out[T_SIZE];

	(void)state;
	while (got < 4000) {
		struct uvm_stream_hdr h = { .type = UVM_STREAM_DATA,
					    .conn = 1 + sent % 1024,
					    .len = (sent * 37) % 120 };
		struct uvm_scodec_msg m;
		uint32_t space, next;

		assert_int_equal(uvm_scodec_space(T_SIZE, prod, cons, &space,
						  NULL, 0), 0);
		t_fill(in, h.len, sent);
		if (uvm_scodec_put(&r, prod, space, &h, in, &next) == 0) {
			prod = next;
			sent++;
			continue;
		}
		assert_int_equal(t_next(cons, prod, UVM_SCODEC_TX_TYPES, &m), 1);
		assert_int_equal(m.hdr.conn, 1 + got % 1024);
		assert_int_equal(m.hdr.len, (got * 37) % 120);
		t_gather(&m, out);
		t_fill(in, m.hdr.len, got);
		assert_memory_equal(in, out, m.hdr.len);
		cons = m.next;
		got++;
	}
	assert_true(prod < 0x1000000u); /* the indices wrapped */
}

/* ---- partial messages --------------------------------------------------------- */

static void test_partial(void **state)
{
	struct uvm_scodec_ring r = t_ring(T_SIZE);
	uint8_t in[100] = { 0 };

	(void)state;
	for (uint32_t off = 0; off < T_SIZE; off += UVM_STREAM_ALIGN) {
		for (uint32_t len = 0; len <= 100; len += 11) {
			struct uvm_stream_hdr h = { .type = UVM_STREAM_DATA,
						    .conn = 5, .len = len };
			uint32_t next, bytes = uvm_scodec_msg_bytes(len);
			struct uvm_scodec_msg m;

			assert_int_equal(uvm_scodec_put(&r, off, T_SIZE, &h, in,
							&next), 0);
			for (uint32_t p = 0; p < bytes; p += UVM_STREAM_ALIGN) {
				assert_int_equal(t_next(off, off + p,
							UVM_SCODEC_TX_TYPES,
							&m), 0);
				assert_int_equal(m.hdr.len, 0);
				assert_null(m.part[0]);
			}
			assert_int_equal(t_next(off, off + bytes,
						UVM_SCODEC_TX_TYPES, &m), 1);
		}
	}
}

static void test_empty(void **state)
{
	struct uvm_scodec_msg m;

	(void)state;
	assert_int_equal(t_next(0, 0, UVM_SCODEC_TX_TYPES, &m), 0);
	assert_int_equal(t_next(0xfffffff8u, 0xfffffff8u, UVM_SCODEC_TX_TYPES,
				&m), 0);
}

/* ---- malformed headers ------------------------------------------------------- */

/* A header at every offset with one bad field: -EBADMSG naming `value`. */
static void t_bad(uint16_t type, uint16_t flags, uint32_t conn, uint32_t len,
		  unsigned allowed, const char *value)
{
	for (uint32_t off = 0; off < T_SIZE; off += UVM_STREAM_ALIGN) {
		struct uvm_scodec_msg m;

		memset(t_data, 0, sizeof(t_data));
		t_raw_hdr(off, type, flags, conn, len, 0);
		/* the whole ring published: the header decides */
		assert_int_equal(t_next(off, off + T_SIZE, allowed, &m),
				 -EBADMSG);
		assert_non_null(strstr(t_why, value));
		/* only the header published: still refused */
		assert_int_equal(t_next(off, off + 16, allowed, &m), -EBADMSG);
	}
}

static void test_bad_type(void **state)
{
	(void)state;
	t_bad(0, 0, 1, 0, UVM_SCODEC_TX_TYPES, "type 0");
	t_bad(5, 0, 1, 0, UVM_SCODEC_TX_TYPES, "type 5");
	t_bad(31, 0, 1, 0, UVM_SCODEC_ALL_TYPES, "type 31");
	t_bad(32, 0, 1, 0, UVM_SCODEC_ALL_TYPES, "type 32");
	t_bad(0xffff, 0, 1, 0, UVM_SCODEC_ALL_TYPES, "type 65535");
	/* OPEN goes host -> guest only */
	t_bad(UVM_STREAM_OPEN, 0, 1, 0, UVM_SCODEC_TX_TYPES, "type 1");
}

static void test_bad_flags(void **state)
{
	(void)state;
	t_bad(UVM_STREAM_DATA, 1, 1, 0, UVM_SCODEC_TX_TYPES, "flags 0x1");
	t_bad(UVM_STREAM_CLOSE, 0x8000, 1, 0, UVM_SCODEC_TX_TYPES,
	      "flags 0x8000");
	t_bad(UVM_STREAM_CREDIT, 0xffff, 1, 0, UVM_SCODEC_TX_TYPES,
	      "flags 0xffff");
}

static void test_bad_conn(void **state)
{
	(void)state;
	t_bad(UVM_STREAM_DATA, 0, 0, 0, UVM_SCODEC_TX_TYPES, "conn 0");
	t_bad(UVM_STREAM_CLOSE, 0, UVM_STREAM_MAX_CONNS + 1, 0,
	      UVM_SCODEC_TX_TYPES, "conn 1025");
	t_bad(UVM_STREAM_CREDIT, 0, 0xffffffffu, 0, UVM_SCODEC_TX_TYPES,
	      "conn 4294967295");
}

static void test_bad_len(void **state)
{
	(void)state;
	t_bad(UVM_STREAM_DATA, 0, 3, UVM_STREAM_MAX_DATA + 1,
	      UVM_SCODEC_TX_TYPES, "len 16385");
	t_bad(UVM_STREAM_DATA, 0, 3, 0xffffffffu, UVM_SCODEC_TX_TYPES,
	      "len 4294967295");
	t_bad(UVM_STREAM_DATA, 0, 3, 0xfffffff0u, UVM_SCODEC_TX_TYPES,
	      "len 4294967280");
	t_bad(UVM_STREAM_CLOSE, 0, 3, 1, UVM_SCODEC_TX_TYPES, "len 1");
	t_bad(UVM_STREAM_CREDIT, 0, 3, 8, UVM_SCODEC_TX_TYPES, "len 8");
	/* valid for the protocol, but larger than this (small) ring */
	t_bad(UVM_STREAM_DATA, 0, 3, T_SIZE - 15, UVM_SCODEC_TX_TYPES,
	      "len 241");
	t_bad(UVM_STREAM_DATA, 0, 3, UVM_STREAM_MAX_DATA, UVM_SCODEC_TX_TYPES,
	      "len 16384");
}

static void test_arg_ignored(void **state)
{
	struct uvm_scodec_msg m;

	(void)state;
	memset(t_data, 0, sizeof(t_data));
	t_raw_hdr(0, UVM_STREAM_CLOSE, 0, 9, 0, 0);
	memcpy(t_data + 12, "\xff\xff\xff\xff", 4);
	assert_int_equal(t_next(0, 16, UVM_SCODEC_TX_TYPES, &m), 1);
	assert_int_equal(m.hdr.arg, 0xffffffffu);
}

/* ---- impossible indices ------------------------------------------------------ */

static void test_prod_too_far(void **state)
{
	static const uint32_t conses[] = { 0, 8, 0xfffffff8u, 0x7ffffff0u };
	struct uvm_scodec_msg m;

	(void)state;
	memset(t_data, 0, sizeof(t_data));
	for (size_t i = 0; i < sizeof(conses) / sizeof(conses[0]); i++) {
		uint32_t c = conses[i];

		t_raw_hdr(c, UVM_STREAM_CLOSE, 0, 1, 0, 0);
		assert_int_equal(t_next(c, c + T_SIZE + 8, UVM_SCODEC_TX_TYPES,
					&m), -EBADMSG);
		assert_non_null(strstr(t_why, "ahead"));
		assert_int_equal(t_next(c, c + 0x80000000u, UVM_SCODEC_TX_TYPES,
					&m), -EBADMSG);
		/* behind the consumer = far ahead modulo 2^32 */
		assert_int_equal(t_next(c, c - 8, UVM_SCODEC_TX_TYPES, &m),
				 -EBADMSG);
		/* exactly one ring ahead is fine */
		assert_int_equal(t_next(c, c + T_SIZE, UVM_SCODEC_TX_TYPES, &m),
				 1);
	}
}

static void test_unaligned(void **state)
{
	struct uvm_scodec_msg m;

	(void)state;
	memset(t_data, 0, sizeof(t_data));
	t_raw_hdr(0, UVM_STREAM_CLOSE, 0, 1, 0, 0);
	assert_int_equal(t_next(0, 17, UVM_SCODEC_TX_TYPES, &m), -EBADMSG);
	assert_non_null(strstr(t_why, "17"));
	assert_int_equal(t_next(4, 24, UVM_SCODEC_TX_TYPES, &m), -EBADMSG);
	assert_non_null(strstr(t_why, "consumer index 4"));
}

static void test_shared_size(void **state)
{
	struct uvm_scodec_ring r = t_ring(T_SIZE), bad = t_ring(100);
	struct uvm_scodec_msg m;

	(void)state;
	memset(t_data, 0, sizeof(t_data));
	t_raw_hdr(0, UVM_STREAM_CLOSE, 0, 1, 0, 0);
	assert_int_equal(uvm_scodec_next(&r, 512, 0, 16, UVM_SCODEC_TX_TYPES,
					 &m, t_why, sizeof(t_why)), -EBADMSG);
	assert_non_null(strstr(t_why, "size field 512"));
	assert_int_equal(uvm_scodec_next(&r, 0, 0, 16, UVM_SCODEC_TX_TYPES,
					 &m, t_why, sizeof(t_why)), -EBADMSG);
	/* a host size that is no power of two is refused too */
	assert_int_equal(uvm_scodec_next(&bad, 100, 0, 16, UVM_SCODEC_TX_TYPES,
					 &m, NULL, 0), -EBADMSG);
}

static void test_space(void **state)
{
	uint32_t space = 1;

	(void)state;
	assert_int_equal(uvm_scodec_space(T_SIZE, 64, 0, &space, NULL, 0), 0);
	assert_int_equal(space, T_SIZE - 64);
	assert_int_equal(uvm_scodec_space(T_SIZE, 8, 0xfffffff8u, &space, NULL,
					  0), 0);
	assert_int_equal(space, T_SIZE - 16);
	assert_int_equal(uvm_scodec_space(T_SIZE, 256, 0, &space, NULL, 0), 0);
	assert_int_equal(space, 0);
	assert_int_equal(uvm_scodec_space(T_SIZE, 264, 0, &space, t_why,
					  sizeof(t_why)), -EBADMSG);
	assert_int_equal(space, 0);
	assert_non_null(strstr(t_why, "consumer index 0"));
	assert_int_equal(uvm_scodec_space(T_SIZE, 0, 8, &space, NULL, 0),
			 -EBADMSG); /* consumer ahead of the producer */
	assert_int_equal(uvm_scodec_space(T_SIZE, 64, 3, &space, NULL, 0),
			 -EBADMSG);
}

static void test_put_refuses(void **state)
{
	struct uvm_scodec_ring r = t_ring(T_SIZE);
	struct uvm_stream_hdr h = { .type = UVM_STREAM_DATA, .conn = 1,
				    .len = 9 };
	uint8_t in[T_SIZE] = { 0 };
	uint32_t next = 0;

	(void)state;
	assert_int_equal(uvm_scodec_put(&r, 0, 31, &h, in, &next), -ENOSPC);
	assert_int_equal(uvm_scodec_put(&r, 0, 32, &h, in, &next), 0);
	assert_int_equal(next, 32);
	assert_int_equal(uvm_scodec_put(&r, 4, 64, &h, in, &next), -EINVAL);
	h.conn = 0;
	assert_int_equal(uvm_scodec_put(&r, 0, 64, &h, in, &next), -EINVAL);
	h.conn = 1;
	h.flags = 2;
	assert_int_equal(uvm_scodec_put(&r, 0, 64, &h, in, &next), -EINVAL);
	h.flags = 0;
	h.len = T_SIZE;
	assert_int_equal(uvm_scodec_put(&r, 0, T_SIZE, &h, in, &next), -EINVAL);
	h.type = UVM_STREAM_CREDIT;
	h.len = 1;
	assert_int_equal(uvm_scodec_put(&r, 0, 64, &h, in, &next), -EINVAL);
}

/* ---- saved connection table --------------------------------------------------- */

static struct uvm_scodec_save t_sv, t_back;
static uint8_t t_blob[UVM_SCODEC_SAVE_MAX + 64];

static size_t t_save_sample(uint32_t count)
{
	size_t len = 0;

	memset(&t_sv, 0, sizeof(t_sv));
	t_sv.flags = UVM_SCODEC_SF_BROKEN;
	t_sv.tx_cons = 0xfffffff8u;
	t_sv.rx_prod = 1234 * 8;
	t_sv.size = 65536;
	t_sv.count = count;
	for (uint32_t i = 0; i < count; i++)
		t_sv.conn[i] = (struct uvm_scodec_conn_state){
			.conn = UVM_STREAM_MAX_CONNS - i, .state = (uint8_t)(i % 5),
			.flags = (uint8_t)(i % 8), .host_credit = i * 1000,
			.guest_credit = 0xffffffffu - i };
	assert_int_equal(uvm_scodec_save_put(&t_sv, t_blob, sizeof(t_blob),
					     &len), 0);
	assert_int_equal(len, UVM_SCODEC_SAVE_HDR + 16 * count);
	return len;
}

static void test_save_round_trip(void **state)
{
	static const uint32_t counts[] = { 0, 1, 7, UVM_STREAM_MAX_CONNS };

	(void)state;
	for (size_t k = 0; k < sizeof(counts) / sizeof(counts[0]); k++) {
		size_t len = t_save_sample(counts[k]);

		assert_int_equal(uvm_scodec_save_get(t_blob, len, 4, &t_back,
						     t_why, sizeof(t_why)), 0);
		assert_int_equal(t_back.flags, t_sv.flags);
		assert_int_equal(t_back.tx_cons, t_sv.tx_cons);
		assert_int_equal(t_back.rx_prod, t_sv.rx_prod);
		assert_int_equal(t_back.size, t_sv.size);
		assert_int_equal(t_back.count, t_sv.count);
		for (uint32_t i = 0; i < counts[k]; i++) {
			assert_int_equal(t_back.conn[i].conn, t_sv.conn[i].conn);
			assert_int_equal(t_back.conn[i].state,
					 t_sv.conn[i].state);
			assert_int_equal(t_back.conn[i].flags,
					 t_sv.conn[i].flags);
			assert_int_equal(t_back.conn[i].host_credit,
					 t_sv.conn[i].host_credit);
			assert_int_equal(t_back.conn[i].guest_credit,
					 t_sv.conn[i].guest_credit);
		}
	}
	/* little-endian on the wire, whatever the host */
	t_save_sample(1);
	assert_memory_equal(t_blob, "USTR\x01\x10\0\0\x01\0\0\0", 12);
	assert_memory_equal(t_blob + 28, "\x00\x04\0\0\0\0\0\0", 8);
}

static void test_save_put_bounds(void **state)
{
	size_t len = 0;

	(void)state;
	t_save_sample(3);
	assert_int_equal(uvm_scodec_save_put(&t_sv, t_blob,
					     UVM_SCODEC_SAVE_HDR + 47, &len),
			 -ENOSPC);
	t_sv.count = UVM_STREAM_MAX_CONNS + 1;
	assert_int_equal(uvm_scodec_save_put(&t_sv, t_blob, sizeof(t_blob),
					     &len), -EINVAL);
}

static void t_save_bad(const uint8_t *blob, size_t len, const char *value)
{
	t_back.count = 99;
	assert_int_equal(uvm_scodec_save_get(blob, len, 4, &t_back, t_why,
					     sizeof(t_why)), -EBADMSG);
	assert_int_equal(t_back.count, 0);
	if (value != NULL)
		assert_non_null(strstr(t_why, value));
}

static void test_save_malformed(void **state)
{
	static uint8_t b[UVM_SCODEC_SAVE_MAX + 64];
	size_t len;

	(void)state;
	len = t_save_sample(3);
	for (size_t cut = 0; cut < len; cut++)
		t_save_bad(t_blob, cut, NULL);
	t_save_bad(t_blob, len + 1, NULL);
#define T_MUT(off, val, what)                                     \
	do {                                                      \
		memcpy(b, t_blob, len);                           \
		b[off] = (val);                                   \
		t_save_bad(b, len, what);                         \
	} while (0)
	T_MUT(0, 'X', "magic");
	T_MUT(4, 2, "version 2");
	T_MUT(4, 0, "version 0");
	T_MUT(5, 12, "entry size 12");
	T_MUT(8, 2, "flags 0x2");
	T_MUT(24, 4, "for 4 connections");
	T_MUT(27, 0x80, "count 2147483651");
	T_MUT(29, 0, "conn 0");                  /* first id 1024 -> 0 */
	T_MUT(29, 0x08, "conn 2048");            /* 1024 -> 2048 */
	T_MUT(28 + 4, 5, "state 5");
	T_MUT(28 + 5, 8, "flags 0x8");
#undef T_MUT
	memcpy(b, t_blob, len);                  /* second id 1023 -> 1024 */
	b[28 + 16] = 0x00;
	b[28 + 16 + 1] = 0x04;
	t_save_bad(b, len, "conn 1024 twice");
	/* a state above what the caller knows */
	assert_int_equal(uvm_scodec_save_get(t_blob, len, 1, &t_back, t_why,
					     sizeof(t_why)), -EBADMSG);
	assert_non_null(strstr(t_why, "state 2"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ring_size),
		cmocka_unit_test(test_ring_init),
		cmocka_unit_test(test_check_size),
		cmocka_unit_test(test_round_trip_every_offset),
		cmocka_unit_test(test_round_trip_control),
		cmocka_unit_test(test_stream_through_ring),
		cmocka_unit_test(test_partial),
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_bad_type),
		cmocka_unit_test(test_bad_flags),
		cmocka_unit_test(test_bad_conn),
		cmocka_unit_test(test_bad_len),
		cmocka_unit_test(test_arg_ignored),
		cmocka_unit_test(test_prod_too_far),
		cmocka_unit_test(test_unaligned),
		cmocka_unit_test(test_shared_size),
		cmocka_unit_test(test_space),
		cmocka_unit_test(test_put_refuses),
		cmocka_unit_test(test_save_round_trip),
		cmocka_unit_test(test_save_put_bounds),
		cmocka_unit_test(test_save_malformed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
