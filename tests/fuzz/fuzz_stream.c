/*
 * fuzz_stream.c - libFuzzer harness for the stream device's codec
 * (hypervisor-hooks/uvm/stream_codec.c), the parser that faces an
 * untrusted guest.
 *
 * Input layout (little-endian):
 *   0  u8   ring size as a power of two (taken mod 13, at least 4: 16 B .. 64 KiB)
 *   1  u32  consumer index (the host's tx cons; rounded down to 8 when bit 0
 *           of byte 13 is clear, so most inputs reach past the alignment check)
 *   5  u32  producer index (the guest's tx prod, used as given)
 *   9  u32  the ring's shared size field (replaced by the real size when
 *           bit 1 of byte 13 is clear)
 *  13  u8   the two flags above
 *  14  ...  ring contents, repeated to fill data[]
 * The ring is parsed message by message, as the back end does, until the
 * parser says "not yet" or refuses.  Every accepted message is checked
 * against the spec's limits, its payload parts are touched at both ends
 * (data[] is a heap block of exactly `size` bytes, so ASan sees any
 * overrun), and it is written to a second ring and parsed back to the same
 * message.  The raw input is also decoded as a saved connection table,
 * re-encoded and decoded again to the same table.  Any broken invariant
 * traps.
 *
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE
 *        -Icommon -Ihypervisor-hooks/uvm -Ihypervisor-hooks/uvm/abi
 *        tests/fuzz/fuzz_stream.c hypervisor-hooks/uvm/stream_codec.c
 * Seeds: tests/fuzz/corpus/stream/
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stream_codec.h"

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)
#define FUZZ_HDR 14

static volatile uint8_t fuzz_sink;

static void touch(const uint8_t *p, uint32_t len)
{
	if (len) {
		fuzz_sink ^= p[0];
		fuzz_sink ^= p[len - 1];
	}
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static void check_parts(const struct uvm_scodec_ring *r,
			const struct uvm_scodec_msg *m)
{
	for (int i = 0; i < 2; i++) {
		CHECK(m->part[i] >= r->data);
		CHECK(m->part_len[i] <= r->size);
		CHECK((size_t)(m->part[i] - r->data) + m->part_len[i] <= r->size);
		touch(m->part[i], m->part_len[i]);
	}
	CHECK(m->part_len[0] + m->part_len[1] == m->hdr.len);
}

/* Write the message to a fresh ring at `at` and parse it back. */
static void reput(const struct uvm_scodec_msg *m, uint32_t size, uint32_t at)
{
	struct uvm_scodec_ring r = { .data = malloc(size), .size = size };
	uint8_t *payload = malloc(m->hdr.len ? m->hdr.len : 1);
	struct uvm_scodec_msg again;
	uint32_t next;

	CHECK(r.data && payload);
	memcpy(payload, m->part[0], m->part_len[0]);
	memcpy(payload + m->part_len[0], m->part[1], m->part_len[1]);
	CHECK(uvm_scodec_put(&r, at, size, &m->hdr, payload, &next) == 0);
	CHECK(next - at == uvm_scodec_msg_bytes(m->hdr.len));
	CHECK(uvm_scodec_next(&r, size, at, next, UVM_SCODEC_TX_TYPES, &again,
			      NULL, 0) == 1);
	CHECK(memcmp(&again.hdr, &m->hdr, sizeof(m->hdr)) == 0);
	CHECK(again.next == next);
	CHECK(memcmp(again.part[0], payload, again.part_len[0]) == 0);
	CHECK(memcmp(again.part[1], payload + again.part_len[0],
		     again.part_len[1]) == 0);
	free(payload);
	free(r.data);
}

static void check_msg(const struct uvm_scodec_ring *r,
		      const struct uvm_scodec_msg *m, uint32_t cons,
		      uint32_t prod)
{
	const struct uvm_stream_hdr *h = &m->hdr;

	CHECK(h->type == UVM_STREAM_DATA || h->type == UVM_STREAM_CLOSE ||
	      h->type == UVM_STREAM_CREDIT);
	CHECK(h->flags == 0);
	CHECK(h->conn >= 1 && h->conn <= UVM_STREAM_MAX_CONNS);
	CHECK(h->type == UVM_STREAM_DATA ? h->len <= UVM_STREAM_MAX_DATA
					 : h->len == 0);
	CHECK(m->next - cons == uvm_scodec_msg_bytes(h->len));
	CHECK(m->next - cons <= prod - cons);
	CHECK(prod - cons <= r->size);
	CHECK(uvm_scodec_check_hdr(h, UVM_SCODEC_TX_TYPES, r->size, NULL, 0) ==
	      0);
	check_parts(r, m);
}

static void parse_ring(const uint8_t *data, size_t size)
{
	uint32_t shift = 4 + data[0] % 13, rsize = 1u << shift;
	uint32_t cons = get32(data + 1), prod = get32(data + 5);
	uint32_t shared = get32(data + 9), space;
	struct uvm_scodec_ring r = { .data = malloc(rsize), .size = rsize };
	size_t body = size - FUZZ_HDR;

	CHECK(r.data != NULL);
	if (!(data[13] & 1))
		cons &= ~7u;
	if (!(data[13] & 2))
		shared = rsize;
	for (uint32_t i = 0; i < rsize; i++)
		r.data[i] = body ? data[FUZZ_HDR + i % body] : 0;
	if (uvm_scodec_space(rsize, prod, cons, &space, NULL, 0) == 0)
		CHECK(space <= rsize && prod - cons == rsize - space);
	for (uint32_t n = 0;; n++) {
		struct uvm_scodec_msg m;
		int rc = uvm_scodec_next(&r, shared, cons, prod,
					 UVM_SCODEC_TX_TYPES, &m, NULL, 0);

		CHECK(rc == 1 || rc == 0 || rc == -EBADMSG);
		CHECK(n <= rsize / UVM_SCODEC_HDR_SIZE); /* always advancing */
		if (rc != 1)
			break;
		check_msg(&r, &m, cons, prod);
		reput(&m, rsize, prod);
		cons = m.next;
	}
	free(r.data);
}

static void parse_save(const uint8_t *data, size_t size)
{
	static struct uvm_scodec_save sv, again;
	static uint8_t buf[UVM_SCODEC_SAVE_MAX];
	size_t len = 0;

	if (uvm_scodec_save_get(data, size, 4, &sv, NULL, 0) != 0) {
		CHECK(sv.count == 0);
		return;
	}
	CHECK(sv.count <= UVM_STREAM_MAX_CONNS);
	CHECK(size == UVM_SCODEC_SAVE_HDR + 16 * (size_t)sv.count);
	CHECK(uvm_scodec_save_put(&sv, buf, sizeof(buf), &len) == 0);
	CHECK(len == size);
	CHECK(uvm_scodec_save_get(buf, len, 4, &again, NULL, 0) == 0);
	CHECK(again.flags == sv.flags && again.tx_cons == sv.tx_cons &&
	      again.rx_prod == sv.rx_prod && again.size == sv.size &&
	      again.count == sv.count);
	for (uint32_t i = 0; i < sv.count; i++)
		CHECK(again.conn[i].conn == sv.conn[i].conn &&
		      again.conn[i].state == sv.conn[i].state &&
		      again.conn[i].flags == sv.conn[i].flags &&
		      again.conn[i].host_credit == sv.conn[i].host_credit &&
		      again.conn[i].guest_credit == sv.conn[i].guest_credit);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size >= FUZZ_HDR)
		parse_ring(data, size);
	parse_save(data, size);
	return 0;
}
