/*
 * fuzz_wire.c - libFuzzer harness for the record stream codec.
 *
 * Each input is used three ways:
 *  1. as a whole SNAPSHOT stream, read from memory and every record body
 *     decoded - this is what a restoring host does with untrusted bytes;
 *  2. the same after "resealing" a copy (recomputing the header checksum,
 *     every record checksum and END's count and stream checksum, as the
 *     spec defines them), so mutations get past the checksums and reach
 *     the body decoders through the reader;
 *  3. the input minus its first byte handed straight to every body decoder.
 * Decoded values are checked against the spec's limits, pointers returned
 * into the body are touched at both ends (so ASan sees any overrun), and
 * decoded records are re-encoded and decoded again to the same values.
 * Any broken invariant traps.
 *
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE
 *        -I. -Icommon -Itransport tests/fuzz/fuzz_wire.c transport/wire.c
 *        common/log.c -lxxhash
 * Seeds: tests/fuzz/corpus/wire/ (written by test_wire --write-seeds DIR)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "wire.h"

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

static volatile uint8_t fuzz_sink;

/* Reads the first and last byte of a region the decoder pointed into. */
static void touch(const uint8_t *p, size_t len)
{
	if (len) {
		fuzz_sink ^= p[0];
		fuzz_sink ^= p[len - 1];
	}
}

/* ---- decode one body, then re-encode and compare ---------------------- */

static void domain_info(const uint8_t *body, size_t len, uint64_t *nr_pages)
{
	static struct wire_domain_info di, again;
	struct wire_buf b;

	if (wire_domain_info_decode(body, len, &di, NULL, 0))
		return;
	CHECK(di.cmdline_len <= WIRE_CMDLINE_MAX);
	CHECK(strlen(di.cmdline) == di.cmdline_len);
	CHECK(di.page_size == WIRE_PAGE_SIZE && di.mem_bytes != 0);
	*nr_pages = di.mem_bytes / WIRE_PAGE_SIZE;
	wire_buf_init(&b);
	CHECK(wire_domain_info_put(&b, 0, &di, NULL) == 0);
	CHECK(wire_domain_info_decode(b.data + WIRE_RECORD_HEADER_SIZE, len,
				      &again, NULL, 0) == 0);
	CHECK(again.backend == di.backend && again.nr_vcpus == di.nr_vcpus &&
	      again.guest_base == di.guest_base &&
	      again.mem_bytes == di.mem_bytes &&
	      again.page_size == di.page_size &&
	      again.xsave_features == di.xsave_features &&
	      again.xsave_size == di.xsave_size &&
	      again.guest_clock_ns == di.guest_clock_ns &&
	      again.cmdline_len == di.cmdline_len);
	CHECK(memcmp(again.cmdline, di.cmdline, sizeof(di.cmdline)) == 0);
	wire_buf_fini(&b);
}

static void page_data(const uint8_t *body, size_t len, uint64_t nr_pages)
{
	static struct wire_page_data pd;

	if (wire_page_data_decode(body, len, nr_pages, &pd, NULL, 0))
		return;
	CHECK(pd.count >= 1 && pd.count <= WIRE_PAGE_MAX);
	CHECK(len == 8 + (size_t)pd.count * (8 + WIRE_PAGE_SIZE));
	CHECK(pd.data == body + 8 + 8 * (size_t)pd.count);
	for (uint32_t i = 0; i < pd.count; i++) {
		CHECK(pd.pfn[i] < nr_pages);
		touch(pd.data + (size_t)i * WIRE_PAGE_SIZE, WIRE_PAGE_SIZE);
	}
}

static void vcpu_state(const uint8_t *body, size_t len)
{
	static struct wire_vcpu_state vs, again;
	struct wire_buf b;

	if (wire_vcpu_state_decode(body, len, &vs, NULL, 0))
		return;
	CHECK(vs.vcpu_id < WIRE_MAX_VCPUS && vs.xsave_len <= WIRE_XSAVE_MAX);
	CHECK(len == WIRE_VCPU_STATE_FIXED + (size_t)vs.xsave_len);
	wire_buf_init(&b);
	CHECK(wire_vcpu_state_put(&b, 0, &vs, NULL) == 0);
	CHECK(wire_vcpu_state_decode(b.data + WIRE_RECORD_HEADER_SIZE, len,
				     &again, NULL, 0) == 0);
	CHECK(again.vcpu_id == vs.vcpu_id && again.xsave_len == vs.xsave_len &&
	      again.rip == vs.rip && again.rflags == vs.rflags &&
	      again.fs_base == vs.fs_base && again.gs_base == vs.gs_base &&
	      again.xfeatures == vs.xfeatures &&
	      again.timer_deadline_ns == vs.timer_deadline_ns);
	CHECK(memcmp(again.gpr, vs.gpr, sizeof(vs.gpr)) == 0);
	CHECK(memcmp(vs.xsave, again.xsave, vs.xsave_len) == 0);
	wire_buf_fini(&b);
}

static void device_state(const uint8_t *body, size_t len)
{
	struct wire_device_state ds, again;
	struct wire_buf b;

	if (wire_device_state_decode(body, len, &ds, NULL, 0))
		return;
	CHECK(ds.blob_len <= WIRE_BLOB_MAX);
	CHECK(len == WIRE_DEVICE_STATE_FIXED + (size_t)ds.blob_len);
	CHECK(ds.blob == body + WIRE_DEVICE_STATE_FIXED);
	touch(ds.blob, ds.blob_len);
	wire_buf_init(&b);
	CHECK(wire_device_state_put(&b, 0, &ds, NULL) == 0);
	CHECK(wire_device_state_decode(b.data + WIRE_RECORD_HEADER_SIZE, len,
				       &again, NULL, 0) == 0);
	CHECK(again.index == ds.index && again.type == ds.type &&
	      again.port == ds.port && again.blob_len == ds.blob_len);
	CHECK(memcmp(again.blob, ds.blob, ds.blob_len) == 0);
	wire_buf_fini(&b);
}

static void end_and_note(const uint8_t *body, size_t len)
{
	struct wire_end end;
	struct wire_note note;

	if (wire_end_decode(body, len, &end, NULL, 0) == 0)
		CHECK(len == WIRE_END_SIZE);
	if (wire_note_decode(body, len, &note, NULL, 0) == 0) {
		CHECK(note.len == len);
		touch((const uint8_t *)note.text, note.len);
	}
}

/* ---- pass 1 and 2: the reader ------------------------------------------ */

static void decode_record(const struct wire_record *rec, uint64_t *nr_pages)
{
	const uint8_t *body = rec->body;
	size_t len = rec->hdr.length;

	touch(body, len);
	switch (rec->hdr.type) {
	case WIRE_REC_DOMAIN_INFO:
		domain_info(body, len, nr_pages);
		break;
	case WIRE_REC_PAGE_DATA:
		page_data(body, len, *nr_pages);
		break;
	case WIRE_REC_VCPU_STATE:
		vcpu_state(body, len);
		break;
	case WIRE_REC_DEVICE_STATE:
		device_state(body, len);
		break;
	case WIRE_REC_END:
	case WIRE_REC_NOTE:
		end_and_note(body, len);
		break;
	default:
		__builtin_trap(); /* the reader hands out known types only */
	}
}

static void read_stream(const uint8_t *data, size_t size)
{
	struct wire_reader r;
	struct wire_record rec;
	uint64_t nr_pages = 0;

	if (wire_reader_open_mem(&r, data, size, WIRE_STREAM_SNAPSHOT) == 0) {
		while (wire_reader_next(&r, &rec) == 0) {
			CHECK(rec.offset + WIRE_RECORD_HEADER_SIZE +
			      rec.hdr.length <= size);
			decode_record(&rec, &nr_pages);
			if (rec.hdr.type == WIRE_REC_END)
				CHECK(wire_reader_next(&r, &rec) == -EINVAL);
		}
		CHECK(r.err[0] != '\0');
	}
	wire_reader_close(&r);
}

static void put_be32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

/*
 * Recomputes every checksum the spec defines, as far as the input parses.
 * Padding is zeroed only when asked, so nonzero padding under a valid
 * checksum stays reachable.
 */
static void reseal(uint8_t *p, size_t len, int zero_padding)
{
	size_t off = WIRE_STREAM_HEADER_SIZE, body;
	XXH3_state_t *st;
	uint64_t count = 0, csum;
	uint8_t be[8];

	if (len < WIRE_STREAM_HEADER_SIZE || !(st = XXH3_createState()))
		return;
	XXH3_64bits_reset(st);
	put_be32(p + 28, (uint32_t)XXH3_64bits(p, 28));
	while (len - off >= WIRE_RECORD_HEADER_SIZE) {
		body = wire_padded_length(get_be32(p + off + 16));
		if (body > len - off - WIRE_RECORD_HEADER_SIZE)
			break;
		if (zero_padding)
			memset(p + off + WIRE_RECORD_HEADER_SIZE +
			       get_be32(p + off + 16), 0,
			       body - get_be32(p + off + 16));
		if (get_be32(p + off) == WIRE_REC_END && body >= 16) {
			put_be64(p + off + 32, count);
			put_be64(p + off + 40, XXH3_64bits_digest(st));
		}
		memset(p + off + 24, 0, 8);
		csum = XXH3_64bits(p + off, WIRE_RECORD_HEADER_SIZE + body);
		put_be64(p + off + 24, csum);
		if (get_be32(p + off) != WIRE_REC_END) {
			put_be64(be, csum);
			XXH3_64bits_update(st, be, sizeof(be));
			count++;
		}
		off += WIRE_RECORD_HEADER_SIZE + body;
	}
	XXH3_freeState(st);
}

/* ---- pass 3: decoders on raw bytes ------------------------------------- */

static void decode_raw(const uint8_t *body, size_t len)
{
	uint64_t nr_pages = 1u << 20;
	uint8_t hdr[WIRE_RECORD_HEADER_SIZE];
	struct wire_record_header rh;
	struct wire_stream_header sh;

	domain_info(body, len, &nr_pages);
	page_data(body, len, nr_pages);
	vcpu_state(body, len);
	device_state(body, len);
	end_and_note(body, len);
	if (len >= WIRE_RECORD_HEADER_SIZE) {
		memcpy(hdr, body, sizeof(hdr));
		if (wire_record_header_decode(hdr, WIRE_MAX_BODY, &rh, NULL,
					      0) == 0 &&
		    wire_padded_length(rh.length) <= len - sizeof(hdr))
			(void)wire_record_verify(hdr, body + sizeof(hdr), &rh,
						 NULL, 0);
		(void)wire_stream_header_decode(hdr, &sh, NULL, 0);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy;

	read_stream(data, size);
	copy = malloc(size ? size : 1);
	if (copy) {
		if (size)
			memcpy(copy, data, size);
		reseal(copy, size, size && (data[0] & 1));
		read_stream(copy, size);
		free(copy);
	}
	if (size)
		decode_raw(data + 1, size - 1);
	return 0;
}
