/*
 * test_wire.c - cmocka tests for the record stream codec (transport/wire).
 *
 * One valid SNAPSHOT stream is built from fixtures, read back through the
 * reader (from memory and from a memfd) and compared field by field.  Then
 * every prefix of it, and single-bit flips at every 7th byte, must be
 * refused, and a table of hand-made bad streams must each fail with the
 * expected errno and a message quoting the bad value.
 *
 * The test carries its own small implementation of the checksum rules
 * (reseal) straight from docs/wire-format.md, so the codec is checked
 * against the spec rather than against itself.
 *
 * `test_wire --write-seeds DIR` writes the libFuzzer seed corpus instead.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include "wire.h"

#define NR_PAGES 65536 /* guest size of the fixture: 256 MiB */

/* ---- spec helpers, independent of the codec --------------------------- */

static void be32_store(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static void be64_store(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint32_t be32_load(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static size_t pad8(size_t n)
{
	return (n + 7) & ~(size_t)7;
}

/* Offset of record `index` (0-based) in a stream, or 0 if absent. */
static size_t record_at(const uint8_t *p, size_t len, unsigned index)
{
	size_t off = WIRE_STREAM_HEADER_SIZE;

	while (off + WIRE_RECORD_HEADER_SIZE <= len) {
		if (index-- == 0)
			return off;
		off += WIRE_RECORD_HEADER_SIZE + pad8(be32_load(p + off + 16));
	}
	return 0;
}

/*
 * Recomputes every checksum in a stream per the spec: the stream header's,
 * each record's and, if fix_end, END's record_count and stream_checksum.
 */
static void reseal(uint8_t *p, size_t len, int fix_end)
{
	XXH3_state_t *st = XXH3_createState();
	size_t off = WIRE_STREAM_HEADER_SIZE;
	uint64_t count = 0, csum;
	uint8_t be[8];

	assert_non_null(st);
	XXH3_64bits_reset(st);
	be32_store(p + 28, (uint32_t)XXH3_64bits(p, 28));
	while (off + WIRE_RECORD_HEADER_SIZE <= len) {
		uint32_t type = be32_load(p + off);
		size_t body = pad8(be32_load(p + off + 16));

		if (off + WIRE_RECORD_HEADER_SIZE + body > len)
			break;
		if (type == WIRE_REC_END && fix_end) {
			be64_store(p + off + 32, count);
			be64_store(p + off + 40, XXH3_64bits_digest(st));
		}
		memset(p + off + 24, 0, 8);
		csum = XXH3_64bits(p + off, WIRE_RECORD_HEADER_SIZE + body);
		be64_store(p + off + 24, csum);
		if (type != WIRE_REC_END) {
			be64_store(be, csum);
			XXH3_64bits_update(st, be, 8);
			count++;
		}
		off += WIRE_RECORD_HEADER_SIZE + body;
	}
	XXH3_freeState(st);
}

/* ---- fixtures ---------------------------------------------------------- */

static const uint64_t pfns_a[] = { 0, 7, NR_PAGES - 1 };
static const uint64_t pfns_b[] = { 8, 9 };
static const uint8_t blob[] = "uart:115200n8"; /* 14 bytes incl. NUL */
static const char note_text[] = "hello from tandem";

static void fill_page(uint8_t *page, uint64_t pfn)
{
	for (size_t j = 0; j < WIRE_PAGE_SIZE; j++)
		page[j] = (uint8_t)(pfn * 31 + j * 7);
}

static void fixture_domain(struct wire_domain_info *di)
{
	memset(di, 0, sizeof(*di));
	di->backend = WIRE_BACKEND_UVM;
	di->nr_vcpus = 2;
	di->guest_base = 0x600000000000ULL;
	di->mem_bytes = (uint64_t)NR_PAGES * WIRE_PAGE_SIZE;
	di->page_size = WIRE_PAGE_SIZE;
	di->xsave_features = 0x2e7;
	di->xsave_size = 2696;
	di->guest_clock_ns = 123456789012ULL;
	strcpy(di->cmdline, "console=hvc0 pagetest");
	di->cmdline_len = (uint32_t)strlen(di->cmdline);
}

static struct wire_vcpu_state *fixture_vcpu(void)
{
	struct wire_vcpu_state *vs = calloc(1, sizeof(*vs));

	assert_non_null(vs);
	vs->vcpu_id = 1;
	vs->xsave_len = 1003; /* odd: exercises padding */
	for (int i = 0; i < WIRE_NR_GPRS; i++)
		vs->gpr[i] = 0x0101010101010101ULL * (uint64_t)(i + 1);
	vs->rip = 0x600000100040ULL;
	vs->rflags = 0x202;
	vs->fs_base = 0x1000;
	vs->gs_base = 0x2000;
	vs->xfeatures = 0x7;
	vs->timer_deadline_ns = 987654321ULL;
	for (uint32_t i = 0; i < vs->xsave_len; i++)
		vs->xsave[i] = (uint8_t)(i ^ 0xa5);
	return vs;
}

static void fixture_device(struct wire_device_state *ds)
{
	ds->index = 0;
	ds->type = 1;
	ds->port = 2;
	ds->blob_len = sizeof(blob);
	ds->blob = blob;
}

/* ---- stream builders --------------------------------------------------- */

static void start(struct wire_buf *b, struct wire_sum *sum)
{
	wire_buf_init(b);
	assert_int_equal(wire_sum_init(sum), 0);
	assert_int_equal(wire_stream_header_put(b, WIRE_STREAM_SNAPSHOT, 0), 0);
}

static void finish(struct wire_buf *b, struct wire_sum *sum)
{
	assert_int_equal(wire_end_put(b, 0, sum), 0);
	wire_sum_fini(sum);
}

static void put_domain(struct wire_buf *b, struct wire_sum *sum)
{
	struct wire_domain_info di;

	fixture_domain(&di);
	assert_int_equal(wire_domain_info_put(b, 0, &di, sum), 0);
}

static void put_raw(struct wire_buf *b, struct wire_sum *sum, uint32_t type,
		    uint64_t epoch, const void *body, size_t len)
{
	size_t mark;

	assert_int_equal(wire_record_begin(b, type, epoch, &mark), 0);
	assert_int_equal(wire_put_bytes(b, body, len), 0);
	assert_int_equal(wire_record_end(b, mark, sum, NULL), 0);
}

static void put_pages_a(struct wire_buf *b, struct wire_sum *sum)
{
	static uint8_t pages[3][WIRE_PAGE_SIZE];
	const void *ptrs[3];

	for (int i = 0; i < 3; i++) {
		fill_page(pages[i], pfns_a[i]);
		ptrs[i] = pages[i];
	}
	assert_int_equal(wire_page_data_put(b, 0, 3, pfns_a, ptrs, sum), 0);
}

static void put_pages_b(struct wire_buf *b, struct wire_sum *sum)
{
	static uint8_t pages[2 * WIRE_PAGE_SIZE];

	fill_page(pages, pfns_b[0]);
	fill_page(pages + WIRE_PAGE_SIZE, pfns_b[1]);
	assert_int_equal(wire_page_data_put_contig(b, 0, 2, pfns_b, pages, sum),
			 0);
}

static void put_vcpu(struct wire_buf *b, struct wire_sum *sum)
{
	struct wire_vcpu_state *vs = fixture_vcpu();

	assert_int_equal(wire_vcpu_state_put(b, 0, vs, sum), 0);
	free(vs);
}

static void put_device(struct wire_buf *b, struct wire_sum *sum)
{
	struct wire_device_state ds;

	fixture_device(&ds);
	assert_int_equal(wire_device_state_put(b, 0, &ds, sum), 0);
}

static void put_note(struct wire_buf *b, struct wire_sum *sum)
{
	assert_int_equal(wire_note_put(b, 0, note_text, strlen(note_text), sum),
			 0);
}

/* header, DOMAIN_INFO, 2 x PAGE_DATA, VCPU_STATE, DEVICE_STATE, NOTE, END */
static void build_valid(struct wire_buf *b)
{
	struct wire_sum sum;

	start(b, &sum);
	put_domain(b, &sum);
	put_pages_a(b, &sum);
	put_pages_b(b, &sum);
	put_vcpu(b, &sum);
	put_device(b, &sum);
	put_note(b, &sum);
	finish(b, &sum);
}

/* ---- consumer: what a restore path does with a stream ----------------- */

struct seen {
	unsigned nrec;
	uint32_t types[16];
	struct wire_domain_info di;
	unsigned npages;
	uint64_t pfn[8];
	uint64_t page_hash[8];
	struct wire_vcpu_state vs;
	struct wire_device_state ds;
	uint8_t blob[64];
	char note[64];
	int rc;
	char err[WIRE_ERR_MAX + 64];
};

static int seen_fail(struct seen *s, const struct wire_record *rec, int rc,
		     const char *msg)
{
	snprintf(s->err, sizeof(s->err), "record %llu: %s",
		 (unsigned long long)rec->index, msg);
	return s->rc = rc;
}

static int decode_pages(struct seen *s, const struct wire_record *rec,
			char *err)
{
	static struct wire_page_data pd;
	uint64_t nr_pages = s->di.mem_bytes / WIRE_PAGE_SIZE;
	int rc = wire_page_data_decode(rec->body, rec->hdr.length, nr_pages,
				       &pd, err, WIRE_ERR_MAX);

	for (uint32_t i = 0; !rc && i < pd.count && s->npages < 8; i++) {
		s->pfn[s->npages] = pd.pfn[i];
		s->page_hash[s->npages++] =
			XXH3_64bits(pd.data + (size_t)i * WIRE_PAGE_SIZE,
				    WIRE_PAGE_SIZE);
	}
	return rc;
}

static int decode_one(struct seen *s, const struct wire_record *rec)
{
	char err[WIRE_ERR_MAX] = "";
	struct wire_note note;
	int rc = 0;

	switch (rec->hdr.type) {
	case WIRE_REC_DOMAIN_INFO:
		rc = wire_domain_info_decode(rec->body, rec->hdr.length, &s->di,
					     err, sizeof(err));
		break;
	case WIRE_REC_PAGE_DATA:
		rc = decode_pages(s, rec, err);
		break;
	case WIRE_REC_VCPU_STATE:
		rc = wire_vcpu_state_decode(rec->body, rec->hdr.length, &s->vs,
					    err, sizeof(err));
		break;
	case WIRE_REC_DEVICE_STATE:
		rc = wire_device_state_decode(rec->body, rec->hdr.length, &s->ds,
					      err, sizeof(err));
		if (!rc && s->ds.blob_len <= sizeof(s->blob))
			memcpy(s->blob, s->ds.blob, s->ds.blob_len);
		break;
	case WIRE_REC_NOTE:
		rc = wire_note_decode(rec->body, rec->hdr.length, &note, err,
				      sizeof(err));
		if (!rc)
			snprintf(s->note, sizeof(s->note), "%.*s",
				 (int)note.len, note.text);
		break;
	}
	return rc ? seen_fail(s, rec, rc, err) : 0;
}

static int consume(struct wire_reader *r, struct seen *s)
{
	struct wire_record rec;
	int rc;

	do {
		rc = wire_reader_next(r, &rec);
		if (rc) {
			snprintf(s->err, sizeof(s->err), "%s", r->err);
			return s->rc = rc;
		}
		if (s->nrec < 16)
			s->types[s->nrec++] = rec.hdr.type;
		rc = decode_one(s, &rec);
	} while (!rc && rec.hdr.type != WIRE_REC_END);
	if (!rc) { /* END really is last: one more call must refuse */
		assert_int_equal(wire_reader_next(r, &rec), -EINVAL);
	}
	return rc;
}

/* Reads from an exact-size heap copy, so ASan sees any overread. */
static int consume_mem(const uint8_t *p, size_t len, struct seen *s)
{
	uint8_t *copy = malloc(len ? len : 1);
	struct wire_reader r;
	int rc;

	assert_non_null(copy);
	if (len)
		memcpy(copy, p, len);
	memset(s, 0, sizeof(*s));
	rc = wire_reader_open_mem(&r, copy, len, WIRE_STREAM_SNAPSHOT);
	if (rc) {
		snprintf(s->err, sizeof(s->err), "%s", r.err);
		s->rc = rc;
	} else {
		rc = consume(&r, s);
	}
	wire_reader_close(&r);
	free(copy);
	return rc;
}

static int consume_fd(const uint8_t *p, size_t len, struct seen *s)
{
	int fd = memfd_create("wire-test", 0);
	struct wire_reader r;
	int rc;

	assert_true(fd >= 0);
	assert_int_equal(wire_write_all(fd, p, len), 0);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	memset(s, 0, sizeof(*s));
	rc = wire_reader_open(&r, fd, WIRE_STREAM_SNAPSHOT);
	if (rc) {
		snprintf(s->err, sizeof(s->err), "%s", r.err);
		s->rc = rc;
	} else {
		rc = consume(&r, s);
	}
	wire_reader_close(&r);
	close(fd);
	return rc;
}

static struct seen *seen_new(void)
{
	struct seen *s = calloc(1, sizeof(*s));

	assert_non_null(s);
	return s;
}

/* ---- round trip -------------------------------------------------------- */

static void check_round_trip(const struct seen *s)
{
	static const uint32_t want_types[] = {
		WIRE_REC_DOMAIN_INFO, WIRE_REC_PAGE_DATA, WIRE_REC_PAGE_DATA,
		WIRE_REC_VCPU_STATE, WIRE_REC_DEVICE_STATE, WIRE_REC_NOTE,
		WIRE_REC_END,
	};
	struct wire_vcpu_state *vs = fixture_vcpu();
	struct wire_domain_info di;
	uint8_t page[WIRE_PAGE_SIZE];

	assert_int_equal(s->rc, 0);
	assert_int_equal(s->nrec, 7);
	for (unsigned i = 0; i < 7; i++)
		assert_int_equal(s->types[i], want_types[i]);

	fixture_domain(&di);
	assert_int_equal(s->di.backend, di.backend);
	assert_int_equal(s->di.nr_vcpus, di.nr_vcpus);
	assert_int_equal(s->di.guest_base, di.guest_base);
	assert_int_equal(s->di.mem_bytes, di.mem_bytes);
	assert_int_equal(s->di.page_size, di.page_size);
	assert_int_equal(s->di.xsave_features, di.xsave_features);
	assert_int_equal(s->di.xsave_size, di.xsave_size);
	assert_int_equal(s->di.guest_clock_ns, di.guest_clock_ns);
	assert_int_equal(s->di.cmdline_len, di.cmdline_len);
	assert_string_equal(s->di.cmdline, di.cmdline);

	assert_int_equal(s->npages, 5);
	for (unsigned i = 0; i < 5; i++) {
		uint64_t pfn = i < 3 ? pfns_a[i] : pfns_b[i - 3];

		assert_int_equal(s->pfn[i], pfn);
		fill_page(page, pfn);
		assert_int_equal(s->page_hash[i], XXH3_64bits(page, sizeof(page)));
	}

	assert_int_equal(s->vs.vcpu_id, vs->vcpu_id);
	assert_int_equal(s->vs.xsave_len, vs->xsave_len);
	assert_memory_equal(s->vs.gpr, vs->gpr, sizeof(vs->gpr));
	assert_int_equal(s->vs.rip, vs->rip);
	assert_int_equal(s->vs.rflags, vs->rflags);
	assert_int_equal(s->vs.fs_base, vs->fs_base);
	assert_int_equal(s->vs.gs_base, vs->gs_base);
	assert_int_equal(s->vs.xfeatures, vs->xfeatures);
	assert_int_equal(s->vs.timer_deadline_ns, vs->timer_deadline_ns);
	assert_memory_equal(s->vs.xsave, vs->xsave, vs->xsave_len);
	free(vs);

	assert_int_equal(s->ds.index, 0);
	assert_int_equal(s->ds.type, 1);
	assert_int_equal(s->ds.port, 2);
	assert_int_equal(s->ds.blob_len, sizeof(blob));
	assert_memory_equal(s->blob, blob, sizeof(blob));
	assert_string_equal(s->note, note_text);
}

static void test_round_trip_mem(void **state)
{
	struct seen *s = seen_new();
	struct wire_buf b;

	(void)state;
	build_valid(&b);
	assert_int_equal(b.len % 8, 0);
	assert_int_equal(consume_mem(b.data, b.len, s), 0);
	check_round_trip(s);
	wire_buf_fini(&b);
	free(s);
}

static void test_round_trip_fd(void **state)
{
	struct seen *s = seen_new();
	struct wire_buf b;

	(void)state;
	build_valid(&b);
	assert_int_equal(consume_fd(b.data, b.len, s), 0);
	check_round_trip(s);
	wire_buf_fini(&b);
	free(s);
}

/* The codec's checksums equal the spec's, computed independently. */
static void test_checksums_match_spec(void **state)
{
	struct wire_buf b;
	uint8_t *copy;

	(void)state;
	build_valid(&b);
	copy = malloc(b.len);
	assert_non_null(copy);
	memcpy(copy, b.data, b.len);
	reseal(copy, b.len, 1);
	assert_memory_equal(copy, b.data, b.len);
	free(copy);
	wire_buf_fini(&b);
}

/* ---- damage: truncation and bit flips ---------------------------------- */

static void test_truncation_every_offset(void **state)
{
	struct seen *s = seen_new();
	struct wire_buf b;

	(void)state;
	build_valid(&b);
	for (size_t len = 0; len < b.len; len++) {
		int rc = consume_mem(b.data, len, s);

		if (rc != -EBADMSG)
			fail_msg("prefix %zu: rc %d (%s)", len, rc, s->err);
		if (!strstr(s->err, "truncated") &&
		    !strstr(s->err, "without END"))
			fail_msg("prefix %zu: unexpected message: %s", len,
				 s->err);
	}
	wire_buf_fini(&b);
	free(s);
}

static void test_truncation_fd(void **state)
{
	struct seen *s = seen_new();
	struct wire_buf b;
	char want[64];

	(void)state;
	build_valid(&b);
	for (size_t len = 0; len < b.len; len += len < 100 ? 1 : 97)
		assert_int_equal(consume_fd(b.data, len, s), -EBADMSG);
	/* cut inside the first PAGE_DATA body */
	assert_int_equal(consume_fd(b.data, 200, s), -EBADMSG);
	snprintf(want, sizeof(want), "truncated at byte %d", 200);
	assert_non_null(strstr(s->err, want));
	assert_non_null(strstr(s->err, "record 1 (PAGE_DATA)"));
	/* cut at a record boundary: clean EOF, but no END */
	assert_int_equal(consume_fd(b.data, record_at(b.data, b.len, 6), s),
			 -EBADMSG);
	assert_non_null(strstr(s->err, "stream ended without END record"));
	wire_buf_fini(&b);
	free(s);
}

static void test_bit_flips(void **state)
{
	struct seen *s = seen_new();
	struct wire_buf b;

	(void)state;
	build_valid(&b);
	for (size_t off = 0; off < b.len; off += 7) {
		for (int bit = 0; bit < 8; bit++) {
			b.data[off] ^= (uint8_t)(1u << bit);
			if (consume_mem(b.data, b.len, s) == 0)
				fail_msg("flip byte %zu bit %d accepted", off,
					 bit);
			b.data[off] ^= (uint8_t)(1u << bit);
		}
	}
	assert_int_equal(consume_mem(b.data, b.len, s), 0);
	wire_buf_fini(&b);
	free(s);
}

/* ---- table of bad (and tolerated) streams ------------------------------ */

/* Builds body bytes for PAGE_DATA: count field, pfns, zero pages. */
static size_t raw_pages(uint8_t *body, uint32_t count_field,
			const uint64_t *pfn, uint32_t n)
{
	size_t len = 8 + (size_t)n * (8 + WIRE_PAGE_SIZE);

	memset(body, 0, len);
	be32_store(body, count_field);
	for (uint32_t i = 0; i < n; i++)
		be64_store(body + 8 + 8 * i, pfn[i]);
	return len;
}

static uint8_t raw[8 + 4 * (8 + WIRE_PAGE_SIZE)];

static void mk_bad_magic(struct wire_buf *b)
{
	build_valid(b);
	b->data[7] = 'X';
}

static void mk_major2(struct wire_buf *b)
{
	build_valid(b);
	b->data[9] = 2;
	reseal(b->data, b->len, 1);
}

static void mk_minor5(struct wire_buf *b)
{
	build_valid(b);
	b->data[11] = 5;
	reseal(b->data, b->len, 1);
}

static void mk_header_checksum(struct wire_buf *b)
{
	build_valid(b);
	b->data[29] ^= 0x10;
}

static void mk_header_length(struct wire_buf *b)
{
	build_valid(b);
	b->data[15] = 40;
	reseal(b->data, b->len, 1);
}

static void mk_mandatory_feature(struct wire_buf *b)
{
	build_valid(b);
	b->data[23] = 0x04;
	reseal(b->data, b->len, 1);
}

static void mk_optional_feature(struct wire_buf *b)
{
	build_valid(b);
	b->data[18] = 0x01; /* bit 40 */
	reseal(b->data, b->len, 1);
}

static void mk_replication(struct wire_buf *b)
{
	build_valid(b);
	b->data[27] = WIRE_STREAM_REPLICATION;
	reseal(b->data, b->len, 1);
}

static void mk_stream_type7(struct wire_buf *b)
{
	build_valid(b);
	b->data[27] = 7;
	reseal(b->data, b->len, 1);
}

static void mk_oversize(struct wire_buf *b)
{
	size_t off;

	build_valid(b);
	off = record_at(b->data, b->len, 1);
	be32_store(b->data + off + 16, WIRE_MAX_BODY + 8);
}

static void mk_type_range(struct wire_buf *b)
{
	struct wire_sum sum;

	start(b, &sum);
	put_domain(b, &sum);
	put_raw(b, &sum, WIRE_REC_END, 0, raw, 24);
	wire_sum_fini(&sum);
}

static void mk_body_checksum(struct wire_buf *b)
{
	build_valid(b);
	b->data[record_at(b->data, b->len, 2) + 40] ^= 0x01;
}

static void mk_padding(struct wire_buf *b)
{
	size_t off;

	build_valid(b);
	off = record_at(b->data, b->len, 5); /* NOTE, 17 bytes + 7 padding */
	b->data[off + 32 + strlen(note_text) + 2] = 0x5a;
	reseal(b->data, b->len, 1);
}

static void mk_end_count(struct wire_buf *b)
{
	size_t off;

	build_valid(b);
	off = record_at(b->data, b->len, 6);
	be64_store(b->data + off + 32, 9);
	reseal(b->data, b->len, 0);
}

static void mk_end_checksum(struct wire_buf *b)
{
	size_t off;

	build_valid(b);
	off = record_at(b->data, b->len, 6);
	b->data[off + 47] ^= 0x01;
	reseal(b->data, b->len, 0);
}

static void mk_no_end(struct wire_buf *b)
{
	struct wire_sum sum;

	start(b, &sum);
	put_domain(b, &sum);
	put_device(b, &sum);
	wire_sum_fini(&sum);
}

static void mk_unknown_mandatory(struct wire_buf *b)
{
	struct wire_sum sum;

	start(b, &sum);
	put_domain(b, &sum);
	put_raw(b, &sum, 9, 0, "abc", 3);
	finish(b, &sum);
}

static void mk_unknown_optional(struct wire_buf *b)
{
	struct wire_sum sum;

	start(b, &sum);
	put_raw(b, &sum, 0x80000042u, 0, "future", 6);
	put_domain(b, &sum);
	put_raw(b, &sum, 0x80000043u, 0, "", 0);
	put_device(b, &sum);
	finish(b, &sum);
}

static void mk_note_first(struct wire_buf *b)
{
	struct wire_sum sum;

	start(b, &sum);
	put_note(b, &sum);
	put_domain(b, &sum);
	finish(b, &sum);
}

static void mk_pages_first(struct wire_buf *b)
{
	struct wire_sum sum;

	start(b, &sum);
	put_pages_b(b, &sum);
	put_domain(b, &sum);
	finish(b, &sum);
}

static void mk_second_domain(struct wire_buf *b)
{
	struct wire_sum sum;

	start(b, &sum);
	put_domain(b, &sum);
	put_domain(b, &sum);
	finish(b, &sum);
}

static void mk_epoch(struct wire_buf *b)
{
	struct wire_sum sum;
	struct wire_device_state ds;

	fixture_device(&ds);
	start(b, &sum);
	put_domain(b, &sum);
	assert_int_equal(wire_device_state_put(b, 3, &ds, &sum), 0);
	finish(b, &sum);
}

/* A valid stream except for one raw record after DOMAIN_INFO. */
static void with_raw(struct wire_buf *b, uint32_t type, size_t len)
{
	struct wire_sum sum;

	start(b, &sum);
	put_domain(b, &sum);
	put_raw(b, &sum, type, 0, raw, len);
	finish(b, &sum);
}

static void mk_pfn_past(struct wire_buf *b)
{
	const uint64_t pfn[] = { 1, 70000 };

	with_raw(b, WIRE_REC_PAGE_DATA, raw_pages(raw, 2, pfn, 2));
}

static void mk_pfn_dup(struct wire_buf *b)
{
	const uint64_t pfn[] = { 5, 6, 5 };

	with_raw(b, WIRE_REC_PAGE_DATA, raw_pages(raw, 3, pfn, 3));
}

static void mk_count0(struct wire_buf *b)
{
	const uint64_t pfn[] = { 5 };

	with_raw(b, WIRE_REC_PAGE_DATA, raw_pages(raw, 0, pfn, 1));
}

static void mk_count1025(struct wire_buf *b)
{
	const uint64_t pfn[] = { 5 };

	with_raw(b, WIRE_REC_PAGE_DATA, raw_pages(raw, 1025, pfn, 1));
}

static void mk_pages_short(struct wire_buf *b)
{
	const uint64_t pfn[] = { 5 };

	with_raw(b, WIRE_REC_PAGE_DATA, raw_pages(raw, 2, pfn, 1));
}

static void mk_domain_long(struct wire_buf *b)
{
	struct wire_buf tmp;
	struct wire_domain_info di;
	struct wire_sum sum;

	fixture_domain(&di);
	wire_buf_init(&tmp);
	assert_int_equal(wire_domain_info_put(&tmp, 0, &di, NULL), 0);
	/* body = fixed part + cmdline + 8 stray bytes */
	memset(raw, 0, sizeof(raw));
	memcpy(raw, tmp.data + 32, 64 + di.cmdline_len);
	start(b, &sum);
	put_raw(b, &sum, WIRE_REC_DOMAIN_INFO, 0, raw, 64 + di.cmdline_len + 8);
	finish(b, &sum);
	wire_buf_fini(&tmp);
}

static void mk_page_size(struct wire_buf *b)
{
	struct wire_buf tmp;
	struct wire_domain_info di;
	struct wire_sum sum;

	fixture_domain(&di);
	wire_buf_init(&tmp);
	assert_int_equal(wire_domain_info_put(&tmp, 0, &di, NULL), 0);
	be32_store(tmp.data + 32 + 24, 8192); /* page_size */
	start(b, &sum);
	put_raw(b, &sum, WIRE_REC_DOMAIN_INFO, 0, tmp.data + 32,
		64 + di.cmdline_len);
	finish(b, &sum);
	wire_buf_fini(&tmp);
}

static void mk_vcpu_len(struct wire_buf *b)
{
	memset(raw, 0, sizeof(raw));
	be32_store(raw + 4, 10); /* xsave_len 10, but 16 bytes follow */
	with_raw(b, WIRE_REC_VCPU_STATE, WIRE_VCPU_STATE_FIXED + 16);
}

static void mk_vcpu_id(struct wire_buf *b)
{
	memset(raw, 0, sizeof(raw));
	be32_store(raw, 64);
	with_raw(b, WIRE_REC_VCPU_STATE, WIRE_VCPU_STATE_FIXED);
}

static void mk_device_len(struct wire_buf *b)
{
	memset(raw, 0, sizeof(raw));
	be32_store(raw + 12, 3); /* blob_len 3, but 8 bytes follow */
	with_raw(b, WIRE_REC_DEVICE_STATE, WIRE_DEVICE_STATE_FIXED + 8);
}

struct stream_case {
	const char *name;
	void (*make)(struct wire_buf *b);
	int rc;
	const char *needle[3]; /* each must occur in the error text */
};

static const struct stream_case stream_cases[] = {
	{ "bad magic", mk_bad_magic, -EBADMSG,
	  { "bad magic \"TNDMWIRX\"" } },
	{ "major 2", mk_major2, -EPROTONOSUPPORT,
	  { "version 2.0 not supported (this reader: 1.x)" } },
	{ "minor 5", mk_minor5, 0, { NULL } },
	{ "header checksum", mk_header_checksum, -EBADMSG,
	  { "header_checksum" } },
	{ "header length", mk_header_length, -EBADMSG,
	  { "header_length 40" } },
	{ "mandatory feature", mk_mandatory_feature, -EPROTONOSUPPORT,
	  { "mandatory features 0x4" } },
	{ "optional feature", mk_optional_feature, 0, { NULL } },
	{ "replication stream", mk_replication, -EPROTO,
	  { "stream_type 2 (REPLICATION), expected 1 (SNAPSHOT)" } },
	{ "stream type 7", mk_stream_type7, -EPROTO, { "stream_type 7" } },
	{ "oversize length", mk_oversize, -E2BIG,
	  { "record 1 (PAGE_DATA): length 4202512 > max 4202504" } },
	{ "END length", mk_type_range, -EBADMSG,
	  { "record 1 (END)", "length 24 not in 16..16" } },
	{ "body checksum", mk_body_checksum, -EBADMSG,
	  { "record 2 (PAGE_DATA): checksum" } },
	{ "nonzero padding", mk_padding, -EBADMSG,
	  { "record 5 (NOTE)", "padding byte 2 is 0x5a" } },
	{ "END count", mk_end_count, -EBADMSG,
	  { "record 6 (END)", "record_count 9 != 6" } },
	{ "END checksum", mk_end_checksum, -EBADMSG,
	  { "record 6 (END)", "stream_checksum" } },
	{ "no END", mk_no_end, -EBADMSG,
	  { "stream ended without END record", "after 2 records" } },
	{ "unknown mandatory", mk_unknown_mandatory, -EPROTO,
	  { "record 1 (type 0x00000009)", "unknown mandatory" } },
	{ "unknown optional", mk_unknown_optional, 0, { NULL } },
	{ "NOTE before DOMAIN_INFO", mk_note_first, 0, { NULL } },
	{ "PAGE_DATA first", mk_pages_first, -EBADMSG,
	  { "record 0 (PAGE_DATA)", "must be DOMAIN_INFO" } },
	{ "second DOMAIN_INFO", mk_second_domain, -EBADMSG,
	  { "record 1 (DOMAIN_INFO): second DOMAIN_INFO" } },
	{ "nonzero epoch", mk_epoch, -EBADMSG, { "epoch 3" } },
	{ "pfn past memory", mk_pfn_past, -EBADMSG,
	  { "record 1: PAGE_DATA",
	    "page index 70000 past guest memory (65536 pages)" } },
	{ "duplicate pfn", mk_pfn_dup, -EBADMSG,
	  { "duplicate page index 5" } },
	{ "count 0", mk_count0, -EBADMSG, { "count 0 not in 1..1024" } },
	{ "count 1025", mk_count1025, -EBADMSG,
	  { "count 1025 not in 1..1024" } },
	{ "PAGE_DATA short", mk_pages_short, -EBADMSG,
	  { "body length 4112 != 8216" } },
	{ "DOMAIN_INFO long", mk_domain_long, -EBADMSG,
	  { "DOMAIN_INFO", "body length 93 != 85" } },
	{ "page_size", mk_page_size, -EBADMSG,
	  { "page_size 8192 not supported" } },
	{ "VCPU_STATE length", mk_vcpu_len, -EBADMSG,
	  { "VCPU_STATE", "body length 200 != 194" } },
	{ "vcpu_id", mk_vcpu_id, -EBADMSG, { "vcpu_id 64 >= max 64" } },
	{ "DEVICE_STATE length", mk_device_len, -EBADMSG,
	  { "DEVICE_STATE", "body length 24 != 19" } },
};

static void test_stream_table(void **state)
{
	struct seen *s = seen_new();
	struct wire_buf b;

	(void)state;
	for (size_t i = 0; i < sizeof(stream_cases) / sizeof(stream_cases[0]);
	     i++) {
		const struct stream_case *tc = &stream_cases[i];

		tc->make(&b);
		for (int via_fd = 0; via_fd < 2; via_fd++) {
			int rc = via_fd ? consume_fd(b.data, b.len, s)
					: consume_mem(b.data, b.len, s);

			if (rc != tc->rc)
				fail_msg("%s: rc %d, want %d (%s)", tc->name,
					 rc, tc->rc, s->err);
			for (int n = 0; n < 3 && tc->needle[n]; n++)
				if (!strstr(s->err, tc->needle[n]))
					fail_msg("%s: \"%s\" not in \"%s\"",
						 tc->name, tc->needle[n],
						 s->err);
		}
		wire_buf_fini(&b);
	}
	free(s);
}

static void test_unknown_optional_skipped(void **state)
{
	struct seen *s = seen_new();
	struct wire_buf b;

	(void)state;
	mk_unknown_optional(&b);
	assert_int_equal(consume_mem(b.data, b.len, s), 0);
	/* the reader hands out DOMAIN_INFO, DEVICE_STATE, END only */
	assert_int_equal(s->nrec, 3);
	assert_int_equal(s->types[0], WIRE_REC_DOMAIN_INFO);
	assert_int_equal(s->types[1], WIRE_REC_DEVICE_STATE);
	assert_int_equal(s->types[2], WIRE_REC_END);
	wire_buf_fini(&b);
	free(s);
}

/* ---- direct API checks -------------------------------------------------- */

static void test_cursor(void **state)
{
	static const uint8_t bytes[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };
	struct wire_cursor c;
	const uint8_t *p;
	uint64_t v64;
	uint32_t v32;
	uint16_t v16;

	(void)state;
	wire_cursor_init(&c, bytes, sizeof(bytes));
	assert_int_equal(wire_get_be16(&c, &v16), 0);
	assert_int_equal(v16, 0x0102);
	assert_int_equal(wire_get_be32(&c, &v32), 0);
	assert_int_equal(v32, 0x03040506);
	assert_int_equal(wire_cursor_left(&c), 6);
	assert_int_equal(wire_get_be64(&c, &v64), -EBADMSG);
	assert_int_equal(v64, 0);
	assert_string_equal(c.err, "truncated: need 8 bytes at offset 6, have 6");
	/* sticky: even a fitting read fails now, keeping the first message */
	assert_int_equal(wire_get_bytes(&c, 1, &p), -EBADMSG);
	assert_null(p);
	assert_int_equal(wire_cursor_fail(&c, -EPROTO, "other"), -EBADMSG);
	assert_non_null(strstr(c.err, "offset 6"));

	wire_cursor_init(&c, bytes, sizeof(bytes));
	assert_int_equal(wire_get_bytes(&c, 4, &p), 0);
	assert_ptr_equal(p, bytes);
	assert_int_equal(wire_get_be64(&c, &v64), 0);
	assert_int_equal(v64, 0x05060708090a0b0cULL);
	assert_int_equal(wire_get_bytes(&c, SIZE_MAX, &p), -EBADMSG);
}

static void test_buf_and_framing(void **state)
{
	struct wire_buf b;
	uint64_t csum = 0;
	size_t mark;

	(void)state;
	wire_buf_init(&b);
	assert_int_equal(wire_put_be16(&b, 0xabcd), 0);
	assert_int_equal(wire_put_be32(&b, 0x01020304), 0);
	assert_int_equal(wire_put_be64(&b, 0x1122334455667788ULL), 0);
	assert_int_equal(b.len, 14);
	assert_memory_equal(b.data,
			    "\xab\xcd\x01\x02\x03\x04\x11\x22\x33\x44\x55\x66\x77\x88",
			    14);
	wire_buf_reset(&b);
	assert_int_equal(b.len, 0);

	/* an empty record: header only, checksum over the header alone */
	assert_int_equal(wire_record_begin(&b, 0x80000007u, 0, &mark), 0);
	assert_int_equal(wire_record_end(&b, mark, NULL, &csum), 0);
	assert_int_equal(b.len, 32);
	memset(b.data + 24, 0, 8);
	assert_int_equal(csum, XXH3_64bits(b.data, 32));

	/* 3-byte body: 5 bytes of zero padding, length says 3 */
	wire_buf_reset(&b);
	assert_int_equal(wire_record_begin(&b, WIRE_REC_NOTE, 0, &mark), 0);
	assert_int_equal(wire_put_bytes(&b, "abc", 3), 0);
	assert_int_equal(wire_record_end(&b, mark, NULL, NULL), 0);
	assert_int_equal(b.len, 40);
	assert_int_equal(be32_load(b.data + 16), 3);
	assert_memory_equal(b.data + 35, "\0\0\0\0\0", 5);
	assert_int_equal(wire_padded_length(3), 8);
	assert_int_equal(wire_padded_length(8), 8);
	assert_int_equal(wire_padded_length(0), 0);
	wire_buf_fini(&b);
}

static void test_record_header_decode(void **state)
{
	struct wire_record_header rh;
	uint8_t hdr[32] = { 0 };
	char err[WIRE_ERR_MAX];

	(void)state;
	be32_store(hdr, WIRE_REC_PAGE_DATA);
	be32_store(hdr + 16, 9000);
	assert_int_equal(wire_record_header_decode(hdr, 4096, &rh, err,
						   sizeof(err)), -E2BIG);
	assert_string_equal(err, "PAGE_DATA record: length 9000 > max 4096");
	assert_int_equal(wire_record_header_decode(hdr, WIRE_MAX_BODY, &rh, err,
						   sizeof(err)), 0);
	assert_int_equal(rh.length, 9000);

	/* flags and reserved are ignored on receive */
	be32_store(hdr + 4, 0xffffffffu);
	be32_store(hdr + 20, 0xffffffffu);
	assert_int_equal(wire_record_header_decode(hdr, WIRE_MAX_BODY, &rh, NULL,
						   0), 0);
	assert_int_equal(rh.flags, 0xffffffffu);

	be32_store(hdr, 0x80001234u);
	assert_int_equal(wire_record_header_decode(hdr, WIRE_MAX_BODY, &rh, err,
						   sizeof(err)), 0);
	be32_store(hdr, 0x1234u);
	assert_int_equal(wire_record_header_decode(hdr, WIRE_MAX_BODY, &rh, err,
						   sizeof(err)), -EPROTO);
	assert_non_null(strstr(err, "0x00001234"));
}

static void test_record_verify(void **state)
{
	struct wire_record_header rh;
	struct wire_buf b;
	char err[WIRE_ERR_MAX];
	size_t mark;

	(void)state;
	wire_buf_init(&b);
	assert_int_equal(wire_record_begin(&b, WIRE_REC_NOTE, 0, &mark), 0);
	assert_int_equal(wire_put_bytes(&b, "hello", 5), 0);
	assert_int_equal(wire_record_end(&b, mark, NULL, NULL), 0);
	assert_int_equal(wire_record_header_decode(b.data, WIRE_MAX_BODY, &rh,
						   err, sizeof(err)), 0);
	assert_int_equal(wire_record_verify(b.data, b.data + 32, &rh, err,
					    sizeof(err)), 0);
	b.data[38] = 1; /* padding */
	assert_int_equal(wire_record_verify(b.data, b.data + 32, &rh, err,
					    sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "NOTE record: checksum"));
	memset(b.data + 24, 0, 8);
	be64_store(b.data + 24, XXH3_64bits(b.data, 40));
	assert_int_equal(wire_record_header_decode(b.data, WIRE_MAX_BODY, &rh,
						   err, sizeof(err)), 0);
	assert_int_equal(wire_record_verify(b.data, b.data + 32, &rh, err,
					    sizeof(err)), -EBADMSG);
	assert_string_equal(err, "NOTE record: padding byte 1 is 0x01 (must be 0)");
	wire_buf_fini(&b);
}

static void test_stream_header(void **state)
{
	struct wire_stream_header h;
	struct wire_buf b;
	char err[WIRE_ERR_MAX];

	(void)state;
	wire_buf_init(&b);
	assert_int_equal(wire_stream_header_put(&b, 9, 0), -EINVAL);
	assert_int_equal(wire_stream_header_put(&b, WIRE_STREAM_SNAPSHOT, 1),
			 -EINVAL);
	assert_int_equal(wire_stream_header_put(&b, WIRE_STREAM_SNAPSHOT,
						1ULL << 40), 0);
	assert_int_equal(b.len, 32);
	assert_memory_equal(b.data, "TNDMWIRE\0\1\0\0\0\0\0\x20", 16);
	assert_int_equal(be32_load(b.data + 28),
			 (uint32_t)XXH3_64bits(b.data, 28));
	assert_int_equal(wire_stream_header_decode(b.data, &h, err, sizeof(err)),
			 0);
	assert_int_equal(h.version_major, 1);
	assert_int_equal(h.version_minor, 0);
	assert_int_equal(h.features, 1ULL << 40);
	assert_int_equal(h.stream_type, WIRE_STREAM_SNAPSHOT);

	b.data[0] = 0x01;
	assert_int_equal(wire_stream_header_decode(b.data, &h, err, sizeof(err)),
			 -EBADMSG);
	assert_string_equal(err, "stream header: bad magic \"\\x01NDMWIRE\" "
			    "(expected \"TNDMWIRE\")");
	wire_buf_fini(&b);
}

static void test_domain_info_encoder(void **state)
{
	struct wire_domain_info di, out;
	struct wire_buf b;
	char err[WIRE_ERR_MAX];

	(void)state;
	wire_buf_init(&b);

	/* a full 255-byte command line comes back NUL-terminated */
	fixture_domain(&di);
	memset(di.cmdline, 'x', WIRE_CMDLINE_MAX);
	di.cmdline_len = WIRE_CMDLINE_MAX;
	assert_int_equal(wire_domain_info_put(&b, 0, &di, NULL), 0);
	assert_int_equal(wire_domain_info_decode(b.data + 32, 64 + 255, &out,
						 err, sizeof(err)), 0);
	assert_int_equal(strlen(out.cmdline), 255);

	/* the encoder refuses what the decoder refuses */
	fixture_domain(&di);
	di.nr_vcpus = 65;
	assert_int_equal(wire_domain_info_put(&b, 0, &di, NULL), -EINVAL);
	fixture_domain(&di);
	di.mem_bytes = 4097;
	assert_int_equal(wire_domain_info_put(&b, 0, &di, NULL), -EINVAL);
	fixture_domain(&di);
	di.cmdline[3] = '\0';
	assert_int_equal(wire_domain_info_put(&b, 0, &di, NULL), -EINVAL);
	fixture_domain(&di);
	di.cmdline_len = 256;
	assert_int_equal(wire_domain_info_put(&b, 0, &di, NULL), -EINVAL);
	wire_buf_fini(&b);
}

/* decoder messages quote the bad value */
static void test_domain_info_decoder(void **state)
{
	struct wire_domain_info di, out;
	struct wire_buf b;
	char err[WIRE_ERR_MAX];

	(void)state;
	wire_buf_init(&b);
	fixture_domain(&di);
	assert_int_equal(wire_domain_info_put(&b, 0, &di, NULL), 0);
	be32_store(b.data + 32, 3);     /* backend */
	assert_int_equal(wire_domain_info_decode(b.data + 32,
						 64 + di.cmdline_len, &out,
						 err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "backend 3 unknown"));
	be32_store(b.data + 32, 1);
	be32_store(b.data + 36, 0);     /* nr_vcpus */
	assert_int_equal(wire_domain_info_decode(b.data + 32,
						 64 + di.cmdline_len, &out,
						 err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "nr_vcpus 0 not in 1..64"));
	be32_store(b.data + 36, 2);
	b.data[32 + 64 + 4] = '\0';     /* NUL inside the command line */
	assert_int_equal(wire_domain_info_decode(b.data + 32,
						 64 + di.cmdline_len, &out,
						 err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "cmdline byte 4 is NUL"));
	be32_store(b.data + 32 + 56, 300); /* cmdline_len */
	assert_int_equal(wire_domain_info_decode(b.data + 32, 364, &out,
						 err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "cmdline_len 300 > max 255"));
	assert_int_equal(wire_domain_info_decode(b.data + 32, 20, &out,
						 err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "truncated: need 8 bytes at offset 16, have 4"));
	wire_buf_fini(&b);
}

static void test_vcpu_device_limits(void **state)
{
	struct wire_vcpu_state *vs = fixture_vcpu();
	struct wire_device_state ds;
	struct wire_buf b;
	uint8_t body[WIRE_VCPU_STATE_FIXED] = { 0 };
	char err[WIRE_ERR_MAX];

	(void)state;
	wire_buf_init(&b);
	vs->xsave_len = WIRE_XSAVE_MAX + 1;
	assert_int_equal(wire_vcpu_state_put(&b, 0, vs, NULL), -EINVAL);
	be32_store(body + 4, WIRE_XSAVE_MAX + 1);
	assert_int_equal(wire_vcpu_state_decode(body, sizeof(body), vs, err,
						sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "xsave_len 16385 > max 16384"));

	fixture_device(&ds);
	ds.blob_len = WIRE_BLOB_MAX + 1;
	assert_int_equal(wire_device_state_put(&b, 0, &ds, NULL), -EINVAL);
	memset(body, 0, sizeof(body));
	be32_store(body + 12, WIRE_BLOB_MAX + 1);
	assert_int_equal(wire_device_state_decode(body, 16, &ds, err,
						  sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "blob_len 65537 > max 65536"));
	wire_buf_fini(&b);
	free(vs);
}

static void test_page_end_note_limits(void **state)
{
	struct wire_page_data *pd = malloc(sizeof(*pd));
	struct wire_buf b;
	struct wire_end end;
	struct wire_note note;
	uint8_t body[16] = { 0 };
	uint64_t pfn[2] = { 4, 4 };
	char err[WIRE_ERR_MAX];

	(void)state;
	assert_non_null(pd);
	wire_buf_init(&b);
	/* the encoder refuses bad page lists too */
	assert_int_equal(wire_page_data_put_contig(&b, 0, 2, pfn, raw, NULL),
			 -EINVAL);
	assert_int_equal(wire_page_data_put_contig(&b, 0, 0, pfn, raw, NULL),
			 -EINVAL);
	assert_int_equal(wire_page_data_put_contig(&b, 0, 1025, pfn, raw, NULL),
			 -EINVAL);
	assert_int_equal(b.len, 0);

	/* pfn exactly at the limit is refused, one below is fine */
	pfn[0] = 9;
	assert_int_equal(wire_page_data_put_contig(&b, 0, 1, pfn, raw, NULL), 0);
	assert_int_equal(wire_page_data_decode(b.data + 32, 4112, 10, pd, err,
					       sizeof(err)), 0);
	assert_ptr_equal(pd->data, b.data + 32 + 16);
	assert_int_equal(wire_page_data_decode(b.data + 32, 4112, 9, pd, err,
					       sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "page index 9 past guest memory (9 pages)"));

	assert_int_equal(wire_end_decode(body, 15, &end, err, sizeof(err)),
			 -EBADMSG);
	assert_non_null(strstr(err, "END: body length 15 != 16"));
	assert_int_equal(wire_note_decode(body, 0, &note, err, sizeof(err)), 0);
	assert_int_equal(note.len, 0);
	assert_int_equal(wire_note_put(&b, 0, NULL, WIRE_MAX_BODY + 1, NULL),
			 -E2BIG);
	wire_buf_fini(&b);
	free(pd);
}

static void test_type_names(void **state)
{
	(void)state;
	assert_string_equal(wire_record_type_name(WIRE_REC_DOMAIN_INFO),
			    "DOMAIN_INFO");
	assert_string_equal(wire_record_type_name(WIRE_REC_PAGE_DATA),
			    "PAGE_DATA");
	assert_string_equal(wire_record_type_name(WIRE_REC_VCPU_STATE),
			    "VCPU_STATE");
	assert_string_equal(wire_record_type_name(WIRE_REC_DEVICE_STATE),
			    "DEVICE_STATE");
	assert_string_equal(wire_record_type_name(WIRE_REC_END), "END");
	assert_string_equal(wire_record_type_name(WIRE_REC_NOTE), "NOTE");
	assert_string_equal(wire_record_type_name(77), "UNKNOWN");
}

static void test_reader_open_errors(void **state)
{
	struct wire_reader r;
	struct wire_buf b;

	(void)state;
	assert_int_equal(wire_reader_open(&r, -1, WIRE_STREAM_SNAPSHOT), -EBADF);
	wire_reader_close(&r);
	assert_int_equal(wire_reader_open_mem(&r, NULL, 0, WIRE_STREAM_SNAPSHOT),
			 -EBADMSG);
	assert_non_null(strstr(r.err, "truncated at byte 0"));
	wire_reader_close(&r);
	build_valid(&b);
	assert_int_equal(wire_reader_open_mem(&r, b.data, b.len,
					      WIRE_STREAM_REPLICATION),
			 -EPROTONOSUPPORT);
	assert_non_null(strstr(r.err, "SNAPSHOT only"));
	wire_reader_close(&r);
	wire_buf_fini(&b);
}

static void test_write_all_pipe(void **state)
{
	struct seen *s = seen_new();
	struct wire_reader r;
	struct wire_buf b;
	int fds[2], status;
	pid_t pid;

	(void)state;
	build_valid(&b);
	assert_int_equal(pipe(fds), 0);
	/* a forked writer, so the stream may exceed the pipe buffer */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		_exit(wire_write_all(fds[1], b.data, b.len) ? 1 : 0);
	}
	close(fds[1]);
	assert_int_equal(wire_reader_open(&r, fds[0], WIRE_STREAM_SNAPSHOT), 0);
	assert_int_equal(consume(&r, s), 0);
	check_round_trip(s);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	wire_reader_close(&r);
	close(fds[0]);
	wire_buf_fini(&b);
	free(s);
}

/* ---- seed corpus for tests/fuzz/fuzz_wire.c ----------------------------- */

/* Every record type once; two pages so mutated pfns can collide. */
static void build_small(struct wire_buf *b)
{
	static uint8_t pages[2 * WIRE_PAGE_SIZE];
	struct wire_vcpu_state *vs = fixture_vcpu();
	const uint64_t pfn[2] = { 3, 4 };
	struct wire_sum sum;

	vs->xsave_len = 64;
	start(b, &sum);
	put_domain(b, &sum);
	assert_int_equal(wire_page_data_put_contig(b, 0, 2, pfn, pages, &sum),
			 0);
	assert_int_equal(wire_vcpu_state_put(b, 0, vs, &sum), 0);
	put_device(b, &sum);
	put_note(b, &sum);
	finish(b, &sum);
	free(vs);
}

static int write_seed(const char *dir, const char *name,
		      const struct wire_buf *b, size_t len)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(b->data, 1, len, f) != len || fclose(f) != 0) {
		perror(path);
		return 1;
	}
	return 0;
}

static int write_seeds(const char *dir)
{
	struct wire_buf b;
	int bad = 0;

	build_small(&b);
	bad |= write_seed(dir, "valid_small", &b, b.len);
	bad |= write_seed(dir, "header_only", &b, WIRE_STREAM_HEADER_SIZE);
	wire_buf_fini(&b);
	mk_unknown_optional(&b);
	bad |= write_seed(dir, "optional_records", &b, b.len);
	wire_buf_fini(&b);
	mk_no_end(&b);
	bad |= write_seed(dir, "no_end", &b, b.len);
	wire_buf_fini(&b);
	return bad;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cursor),
		cmocka_unit_test(test_buf_and_framing),
		cmocka_unit_test(test_record_header_decode),
		cmocka_unit_test(test_record_verify),
		cmocka_unit_test(test_stream_header),
		cmocka_unit_test(test_type_names),
		cmocka_unit_test(test_domain_info_encoder),
		cmocka_unit_test(test_domain_info_decoder),
		cmocka_unit_test(test_vcpu_device_limits),
		cmocka_unit_test(test_page_end_note_limits),
		cmocka_unit_test(test_round_trip_mem),
		cmocka_unit_test(test_round_trip_fd),
		cmocka_unit_test(test_write_all_pipe),
		cmocka_unit_test(test_checksums_match_spec),
		cmocka_unit_test(test_reader_open_errors),
		cmocka_unit_test(test_unknown_optional_skipped),
		cmocka_unit_test(test_stream_table),
		cmocka_unit_test(test_truncation_every_offset),
		cmocka_unit_test(test_truncation_fd),
		cmocka_unit_test(test_bit_flips),
	};

	if (argc == 3 && strcmp(argv[1], "--write-seeds") == 0)
		return write_seeds(argv[2]);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
