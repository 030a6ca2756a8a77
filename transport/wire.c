/*
 * wire.c - codec for the tandem record stream (docs/wire-format.md).
 *
 * Untrusted bytes are read only through struct wire_cursor; every length,
 * count and index is checked against a constant before it sizes a read,
 * a copy or a loop.  Record checksums are XXH3-64 over the header (its
 * checksum field zeroed), the body and the padding.  Encoders write into
 * a sticky struct wire_buf, so a record is either whole or the buffer
 * reports the first error.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "wire.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The stack-allocated XXH3 state below needs the struct definition. */
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

static const char wire_magic[] = "TNDMWIRE";

_Static_assert(sizeof(wire_magic) - 1 == 8, "magic is 8 bytes");
_Static_assert(8 + 2 + 2 + 4 + 8 + 4 + 4 == WIRE_STREAM_HEADER_SIZE,
	       "stream header layout");
_Static_assert(4 + 4 + 8 + 4 + 4 + 8 == WIRE_RECORD_HEADER_SIZE,
	       "record header layout");
_Static_assert(4 + 4 + 8 + 8 + 4 + 4 + 8 + 4 + 4 + 8 + 4 + 4 ==
	       WIRE_DOMAIN_INFO_FIXED, "DOMAIN_INFO fixed part");
_Static_assert(4 + 4 + 16 * 8 + 6 * 8 == WIRE_VCPU_STATE_FIXED,
	       "VCPU_STATE fixed part");
_Static_assert(WIRE_NR_GPRS == 16, "sixteen general-purpose registers");
_Static_assert(4 * 4 == WIRE_DEVICE_STATE_FIXED, "DEVICE_STATE fixed part");
_Static_assert(8 + 8 == WIRE_END_SIZE, "END body");
_Static_assert(WIRE_MAX_BODY == 4202504u, "PAGE_DATA maximum");
_Static_assert(WIRE_MAX_BODY % WIRE_ALIGN == 0, "max body needs no padding");
_Static_assert(WIRE_MAX_BODY <= UINT32_MAX, "length is a be32");
_Static_assert(sizeof(((struct wire_domain_info *)0)->cmdline) ==
	       WIRE_CMDLINE_MAX + 1, "room for the NUL");

/* Offsets inside the record header that the encoder patches. */
#define REC_OFF_LENGTH 16
#define REC_OFF_CHECKSUM 24
#define STREAM_OFF_CHECKSUM 28

/* ---- byte order ------------------------------------------------------- */

static void store_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void store_be32(uint8_t *p, uint32_t v)
{
	store_be16(p, (uint16_t)(v >> 16));
	store_be16(p + 2, (uint16_t)v);
}

static void store_be64(uint8_t *p, uint64_t v)
{
	store_be32(p, (uint32_t)(v >> 32));
	store_be32(p + 4, (uint32_t)v);
}

static uint16_t load_be16(const uint8_t *p)
{
	return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static uint32_t load_be32(const uint8_t *p)
{
	return (uint32_t)load_be16(p) << 16 | load_be16(p + 2);
}

static uint64_t load_be64(const uint8_t *p)
{
	return (uint64_t)load_be32(p) << 32 | load_be32(p + 4);
}

/* ---- cursor ----------------------------------------------------------- */

void wire_cursor_init(struct wire_cursor *cur, const void *p, size_t len)
{
	static const uint8_t empty[1];

	cur->p = p ? p : empty; /* never NULL: no arithmetic on NULL */
	cur->len = p ? len : 0;
	cur->off = 0;
	cur->rc = 0;
	cur->err[0] = '\0';
}

size_t wire_cursor_left(const struct wire_cursor *cur)
{
	return cur->len - cur->off;
}

int wire_cursor_fail(struct wire_cursor *cur, int err, const char *fmt, ...)
{
	va_list ap;

	if (cur->rc)
		return cur->rc;
	cur->rc = err;
	va_start(ap, fmt);
	vsnprintf(cur->err, sizeof(cur->err), fmt, ap);
	va_end(ap);
	return err;
}

/* Invariant: off <= len, so len - off never wraps. */
static const uint8_t *cursor_take(struct wire_cursor *cur, size_t n)
{
	const uint8_t *p;

	if (cur->rc)
		return NULL;
	if (n > cur->len - cur->off) {
		wire_cursor_fail(cur, -EBADMSG,
				 "truncated: need %zu bytes at offset %zu, have %zu",
				 n, cur->off, cur->len - cur->off);
		return NULL;
	}
	p = cur->p + cur->off;
	cur->off += n;
	return p;
}

int wire_get_be16(struct wire_cursor *cur, uint16_t *out)
{
	const uint8_t *p = cursor_take(cur, 2);

	*out = p ? load_be16(p) : 0;
	return cur->rc;
}

int wire_get_be32(struct wire_cursor *cur, uint32_t *out)
{
	const uint8_t *p = cursor_take(cur, 4);

	*out = p ? load_be32(p) : 0;
	return cur->rc;
}

int wire_get_be64(struct wire_cursor *cur, uint64_t *out)
{
	const uint8_t *p = cursor_take(cur, 8);

	*out = p ? load_be64(p) : 0;
	return cur->rc;
}

int wire_get_bytes(struct wire_cursor *cur, size_t n, const uint8_t **out)
{
	*out = cursor_take(cur, n);
	return cur->rc;
}

/* Copies a cursor's failure out as "<what>: <message>". */
static int cursor_finish(const struct wire_cursor *cur, const char *what,
			 char *err, size_t errlen)
{
	if (cur->rc && err && errlen)
		snprintf(err, errlen, "%s: %s", what, cur->err);
	return cur->rc;
}

/* ---- buffer ----------------------------------------------------------- */

void wire_buf_init(struct wire_buf *buf)
{
	buf->data = NULL;
	buf->len = 0;
	buf->cap = 0;
	buf->rc = 0;
}

void wire_buf_fini(struct wire_buf *buf)
{
	free(buf->data);
	wire_buf_init(buf);
}

void wire_buf_reset(struct wire_buf *buf)
{
	buf->len = 0;
	buf->rc = 0;
}

/* Returns room for n more bytes (already counted in len), or NULL. */
static uint8_t *buf_grow(struct wire_buf *buf, size_t n)
{
	size_t cap = buf->cap ? buf->cap : 4096;
	uint8_t *p;

	if (buf->rc)
		return NULL;
	if (n > SIZE_MAX / 4 - buf->len) {
		buf->rc = -ENOMEM;
		return NULL;
	}
	while (cap - buf->len < n)
		cap *= 2;
	if (cap != buf->cap) {
		p = realloc(buf->data, cap);
		if (!p) {
			buf->rc = -ENOMEM;
			return NULL;
		}
		buf->data = p;
		buf->cap = cap;
	}
	p = buf->data + buf->len;
	buf->len += n;
	return p;
}

int wire_put_be16(struct wire_buf *buf, uint16_t v)
{
	uint8_t *p = buf_grow(buf, 2);

	if (p)
		store_be16(p, v);
	return buf->rc;
}

int wire_put_be32(struct wire_buf *buf, uint32_t v)
{
	uint8_t *p = buf_grow(buf, 4);

	if (p)
		store_be32(p, v);
	return buf->rc;
}

int wire_put_be64(struct wire_buf *buf, uint64_t v)
{
	uint8_t *p = buf_grow(buf, 8);

	if (p)
		store_be64(p, v);
	return buf->rc;
}

int wire_put_bytes(struct wire_buf *buf, const void *src, size_t n)
{
	uint8_t *p = buf_grow(buf, n);

	if (p && n)
		memcpy(p, src, n);
	return buf->rc;
}

static int put_zeros(struct wire_buf *buf, size_t n)
{
	uint8_t *p = buf_grow(buf, n);

	if (p && n)
		memset(p, 0, n);
	return buf->rc;
}

int wire_write_all(int fd, const void *p, size_t len)
{
	const uint8_t *b = p;
	ssize_t n;

	while (len > 0) {
		n = write(fd, b, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		b += n;
		len -= (size_t)n;
	}
	return 0;
}

/* ---- checksums -------------------------------------------------------- */

int wire_sum_init(struct wire_sum *sum)
{
	sum->count = 0;
	sum->state = XXH3_createState();
	if (!sum->state)
		return -ENOMEM;
	(void)XXH3_64bits_reset(sum->state); /* fails only on NULL */
	return 0;
}

void wire_sum_fini(struct wire_sum *sum)
{
	XXH3_freeState(sum->state);
	sum->state = NULL;
}

void wire_sum_add(struct wire_sum *sum, uint64_t record_checksum)
{
	uint8_t be[8];

	store_be64(be, record_checksum);
	(void)XXH3_64bits_update(sum->state, be, sizeof(be));
	sum->count++;
}

uint64_t wire_sum_final(const struct wire_sum *sum)
{
	return XXH3_64bits_digest(sum->state);
}

/* XXH3-64 (seeded) of (hdr with its checksum field zeroed) || body pieces. */
static uint64_t record_checksum_iov(const uint8_t *hdr,
				    const void *const *parts,
				    const size_t *lens, unsigned nparts,
				    uint64_t seed)
{
	uint8_t h[WIRE_RECORD_HEADER_SIZE];
	XXH3_state_t st;
	unsigned i;

	memcpy(h, hdr, sizeof(h));
	memset(h + REC_OFF_CHECKSUM, 0, 8);
	XXH3_INITSTATE(&st);
	(void)XXH3_64bits_reset_withSeed(&st, seed);
	(void)XXH3_64bits_update(&st, h, sizeof(h));
	for (i = 0; i < nparts; i++)
		if (lens[i])
			(void)XXH3_64bits_update(&st, parts[i], lens[i]);
	return XXH3_64bits_digest(&st);
}

static uint64_t record_checksum_seeded(const uint8_t *hdr, const uint8_t *body,
				       size_t padded, uint64_t seed)
{
	const void *parts[1] = { body };

	return record_checksum_iov(hdr, parts, &padded, 1, seed);
}

static uint64_t record_checksum(const uint8_t *hdr, const uint8_t *body,
				size_t padded)
{
	return record_checksum_seeded(hdr, body, padded, 0);
}

static uint32_t stream_header_checksum(const uint8_t *hdr)
{
	return (uint32_t)XXH3_64bits(hdr, STREAM_OFF_CHECKSUM);
}

/* ---- record types ----------------------------------------------------- */

struct wire_type_info {
	uint32_t type;
	const char *name;
	uint32_t min_len, max_len; /* body length range */
	bool link_only;            /* refused outside LINK streams */
};

static const struct wire_type_info wire_types[] = {
	{ WIRE_REC_DOMAIN_INFO, "DOMAIN_INFO", WIRE_DOMAIN_INFO_FIXED,
	  WIRE_DOMAIN_INFO_FIXED + WIRE_CMDLINE_MAX, false },
	{ WIRE_REC_PAGE_DATA, "PAGE_DATA", 8 + 8 + WIRE_PAGE_SIZE,
	  WIRE_MAX_BODY, false },
	{ WIRE_REC_VCPU_STATE, "VCPU_STATE", WIRE_VCPU_STATE_FIXED,
	  WIRE_VCPU_STATE_FIXED + WIRE_XSAVE_MAX, false },
	{ WIRE_REC_DEVICE_STATE, "DEVICE_STATE", WIRE_DEVICE_STATE_FIXED,
	  WIRE_DEVICE_STATE_FIXED + WIRE_BLOB_MAX, false },
	{ WIRE_REC_END, "END", WIRE_END_SIZE, WIRE_END_SIZE, false },
	{ WIRE_REC_NOTE, "NOTE", 0, WIRE_MAX_BODY, false },
	{ WIRE_REC_PAGE_CODED, "PAGE_CODED", 8, WIRE_MAX_BODY, true },
	{ WIRE_REC_LINK_HELLO, "LINK_HELLO", 25, 24 + 63, true },
	{ WIRE_REC_LINK_WELCOME, "LINK_WELCOME", 49, 48 + 63, true },
	{ WIRE_REC_LINK_JOIN, "LINK_JOIN", 24, 24, true },
	{ WIRE_REC_LINK_JOINED, "LINK_JOINED", 8, 8, true },
	{ WIRE_REC_LINK_PING, "LINK_PING", 16, 16, true },
	{ WIRE_REC_LINK_PONG, "LINK_PONG", 16, 16, true },
	{ WIRE_REC_LINK_SYNC, "LINK_SYNC", 8, 8 + 8 * 17, true },
	{ WIRE_REC_LINK_BYE, "LINK_BYE", 0, 256, true },
	{ WIRE_REC_DISK_WRITE, "DISK_WRITE", 24 + 512, 24 + (1u << 20), true },
	{ WIRE_REC_REP_HELLO, "REP_HELLO", 48, 48 + 63, true },
	{ WIRE_REC_REP_WELCOME, "REP_WELCOME", 48, 48 + 255, true },
	{ WIRE_REC_REP_EPOCH_END, "REP_EPOCH_END", 64, 64, true },
	{ WIRE_REC_REP_ACK, "REP_ACK", 16, 16, true },
	{ WIRE_REC_REP_HEARTBEAT, "REP_HEARTBEAT", 32, 32, true },
	{ WIRE_REC_REP_DRILL, "REP_DRILL", 8, 8, true },
	{ WIRE_REC_REP_HANDOVER, "REP_HANDOVER", 16, 16, true },
};

static const struct wire_type_info *type_find(uint32_t type)
{
	size_t i;

	for (i = 0; i < sizeof(wire_types) / sizeof(wire_types[0]); i++)
		if (wire_types[i].type == type)
			return &wire_types[i];
	return NULL;
}

const char *wire_record_type_name(uint32_t type)
{
	const struct wire_type_info *ti = type_find(type);

	return ti ? ti->name : "UNKNOWN";
}

/* "PAGE_DATA", or "type 0x00000009" for types this codec does not know. */
static const char *type_label(uint32_t type, char buf[24])
{
	const struct wire_type_info *ti = type_find(type);

	if (ti)
		return ti->name;
	snprintf(buf, 24, "type 0x%08" PRIx32, type);
	return buf;
}

bool wire_record_known(uint32_t type)
{
	return type_find(type) != NULL;
}

bool wire_record_allowed(uint32_t type, uint32_t stream_type)
{
	const struct wire_type_info *ti = type_find(type);

	if (!ti)
		return (type & WIRE_REC_OPTIONAL) != 0;
	return !ti->link_only || stream_type == WIRE_STREAM_LINK;
}

size_t wire_padded_length(uint32_t length)
{
	return (size_t)length + (WIRE_ALIGN - length % WIRE_ALIGN) % WIRE_ALIGN;
}

/* ---- stream header ---------------------------------------------------- */

int wire_stream_header_put(struct wire_buf *buf, uint32_t stream_type,
			   uint64_t features)
{
	size_t mark = buf->len;

	if (stream_type != WIRE_STREAM_SNAPSHOT &&
	    stream_type != WIRE_STREAM_REPLICATION &&
	    stream_type != WIRE_STREAM_LINK)
		return -EINVAL;
	if (features & WIRE_FEATURES_MANDATORY & ~WIRE_FEATURES_KNOWN)
		return -EINVAL;
	wire_put_bytes(buf, wire_magic, 8);
	wire_put_be16(buf, WIRE_VERSION_MAJOR);
	wire_put_be16(buf, WIRE_VERSION_MINOR);
	wire_put_be32(buf, WIRE_STREAM_HEADER_SIZE);
	wire_put_be64(buf, features);
	wire_put_be32(buf, stream_type);
	wire_put_be32(buf, 0);
	if (buf->rc)
		return buf->rc;
	store_be32(buf->data + mark + STREAM_OFF_CHECKSUM,
		   stream_header_checksum(buf->data + mark));
	return 0;
}

/* Renders 8 untrusted bytes printably: \xNN for anything else. */
static void escape8(const uint8_t *p, char out[33])
{
	size_t i, o = 0;

	for (i = 0; i < 8; i++) {
		if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '"' && p[i] != '\\')
			out[o++] = (char)p[i];
		else
			o += (size_t)snprintf(out + o, 5, "\\x%02x", p[i]);
	}
	out[o] = '\0';
}

static const char *stream_type_name(uint32_t type)
{
	switch (type) {
	case WIRE_STREAM_SNAPSHOT:
		return "SNAPSHOT";
	case WIRE_STREAM_REPLICATION:
		return "REPLICATION";
	case WIRE_STREAM_LINK:
		return "LINK";
	default:
		return "UNKNOWN";
	}
}

/* Semantic checks, in the order that gives the most useful message. */
static void stream_header_check(const uint8_t *hdr, const uint8_t *magic,
				const struct wire_stream_header *h,
				struct wire_cursor *c)
{
	uint32_t sum = stream_header_checksum(hdr);
	uint64_t unknown = h->features & WIRE_FEATURES_MANDATORY &
			   ~WIRE_FEATURES_KNOWN;
	char esc[33];

	if (memcmp(magic, wire_magic, 8) != 0) {
		escape8(magic, esc);
		wire_cursor_fail(c, -EBADMSG,
				 "bad magic \"%s\" (expected \"%s\")",
				 esc, wire_magic);
	}
	if (h->version_major != WIRE_VERSION_MAJOR)
		wire_cursor_fail(c, -EPROTONOSUPPORT,
				 "version %u.%u not supported (this reader: %u.x)",
				 h->version_major, h->version_minor,
				 WIRE_VERSION_MAJOR);
	if (h->checksum != sum)
		wire_cursor_fail(c, -EBADMSG,
				 "header_checksum 0x%08" PRIx32
				 " != computed 0x%08" PRIx32, h->checksum, sum);
	if (h->header_length != WIRE_STREAM_HEADER_SIZE)
		wire_cursor_fail(c, -EBADMSG, "header_length %" PRIu32 " != %d",
				 h->header_length, WIRE_STREAM_HEADER_SIZE);
	if (unknown)
		wire_cursor_fail(c, -EPROTONOSUPPORT,
				 "mandatory features 0x%" PRIx64
				 " not supported (this reader knows 0x%llx)",
				 unknown, WIRE_FEATURES_KNOWN);
	if (h->stream_type != WIRE_STREAM_SNAPSHOT &&
	    h->stream_type != WIRE_STREAM_REPLICATION &&
	    h->stream_type != WIRE_STREAM_LINK)
		wire_cursor_fail(c, -EPROTO, "stream_type %" PRIu32 " unknown",
				 h->stream_type);
}

int wire_stream_header_decode(const uint8_t hdr[WIRE_STREAM_HEADER_SIZE],
			      struct wire_stream_header *out,
			      char *err, size_t errlen)
{
	struct wire_cursor c;
	const uint8_t *magic;

	wire_cursor_init(&c, hdr, WIRE_STREAM_HEADER_SIZE);
	wire_get_bytes(&c, 8, &magic);
	wire_get_be16(&c, &out->version_major);
	wire_get_be16(&c, &out->version_minor);
	wire_get_be32(&c, &out->header_length);
	wire_get_be64(&c, &out->features);
	wire_get_be32(&c, &out->stream_type);
	wire_get_be32(&c, &out->checksum);
	if (!c.rc)
		stream_header_check(hdr, magic, out, &c);
	return cursor_finish(&c, "stream header", err, errlen);
}

/* ---- record framing --------------------------------------------------- */

int wire_record_begin(struct wire_buf *buf, uint32_t type, uint64_t epoch,
		      size_t *mark)
{
	*mark = buf->len;
	wire_put_be32(buf, type);
	wire_put_be32(buf, 0);     /* flags */
	wire_put_be64(buf, epoch);
	wire_put_be32(buf, 0);     /* length, filled by wire_record_end */
	wire_put_be32(buf, 0);     /* reserved */
	return wire_put_be64(buf, 0); /* checksum, filled by end */
}

int wire_record_end(struct wire_buf *buf, size_t mark, struct wire_sum *sum,
		    uint64_t *checksum_out)
{
	size_t body;
	uint64_t csum;
	uint8_t *rec;

	if (buf->rc)
		return buf->rc;
	if (mark > buf->len || buf->len - mark < WIRE_RECORD_HEADER_SIZE)
		return -EINVAL;
	body = buf->len - mark - WIRE_RECORD_HEADER_SIZE;
	if (body > WIRE_MAX_BODY) {
		buf->len = mark;
		return -E2BIG;
	}
	if (put_zeros(buf, wire_padded_length((uint32_t)body) - body))
		return buf->rc;
	rec = buf->data + mark;
	store_be32(rec + REC_OFF_LENGTH, (uint32_t)body);
	csum = record_checksum(rec, rec + WIRE_RECORD_HEADER_SIZE,
			       wire_padded_length((uint32_t)body));
	store_be64(rec + REC_OFF_CHECKSUM, csum);
	if (sum)
		wire_sum_add(sum, csum);
	if (checksum_out)
		*checksum_out = csum;
	return 0;
}

static void record_header_parse(const uint8_t *hdr,
				struct wire_record_header *out)
{
	struct wire_cursor c;

	wire_cursor_init(&c, hdr, WIRE_RECORD_HEADER_SIZE);
	wire_get_be32(&c, &out->type);
	wire_get_be32(&c, &out->flags);
	wire_get_be64(&c, &out->epoch);
	wire_get_be32(&c, &out->length);
	wire_get_be32(&c, &out->seq); /* reserved outside LINK streams */
	wire_get_be64(&c, &out->checksum);
}

static int record_header_check(const struct wire_record_header *h,
			       uint32_t body_cap, struct wire_cursor *c)
{
	const struct wire_type_info *ti = type_find(h->type);

	if (h->length > body_cap)
		return wire_cursor_fail(c, -E2BIG,
					"length %" PRIu32 " > max %" PRIu32,
					h->length, body_cap);
	if (!ti && !(h->type & WIRE_REC_OPTIONAL))
		return wire_cursor_fail(c, -EPROTO,
					"unknown mandatory record type 0x%08"
					PRIx32, h->type);
	if (ti && (h->length < ti->min_len || h->length > ti->max_len))
		return wire_cursor_fail(c, -EBADMSG,
					"length %" PRIu32 " not in %" PRIu32
					"..%" PRIu32, h->length, ti->min_len,
					ti->max_len);
	return 0;
}

int wire_record_header_decode(const uint8_t hdr[WIRE_RECORD_HEADER_SIZE],
			      uint32_t body_cap,
			      struct wire_record_header *out,
			      char *err, size_t errlen)
{
	struct wire_cursor c;
	char label[24], what[40];

	wire_cursor_init(&c, NULL, 0);
	record_header_parse(hdr, out);
	record_header_check(out, body_cap, &c);
	snprintf(what, sizeof(what), "%s record",
		 type_label(out->type, label));
	return cursor_finish(&c, what, err, errlen);
}

static int record_verify(const uint8_t *hdr, const uint8_t *body,
			 const struct wire_record_header *rh, uint64_t seed,
			 struct wire_cursor *c)
{
	size_t padded = wire_padded_length(rh->length);
	uint64_t sum = record_checksum_seeded(hdr, body, padded, seed);
	size_t i;

	if (sum != rh->checksum)
		return wire_cursor_fail(c, -EBADMSG,
					"checksum 0x%016" PRIx64
					" != computed 0x%016" PRIx64,
					rh->checksum, sum);
	for (i = rh->length; i < padded; i++)
		if (body[i] != 0)
			return wire_cursor_fail(c, -EBADMSG,
						"padding byte %zu is 0x%02x (must be 0)",
						i - rh->length, body[i]);
	return 0;
}

int wire_record_verify_seeded(const uint8_t hdr[WIRE_RECORD_HEADER_SIZE],
			      const uint8_t *body_and_padding,
			      const struct wire_record_header *rh,
			      uint64_t seed, char *err, size_t errlen)
{
	struct wire_cursor c;
	char label[24], what[40];

	wire_cursor_init(&c, NULL, 0);
	record_verify(hdr, body_and_padding, rh, seed, &c);
	snprintf(what, sizeof(what), "%s record", type_label(rh->type, label));
	return cursor_finish(&c, what, err, errlen);
}

int wire_record_verify(const uint8_t hdr[WIRE_RECORD_HEADER_SIZE],
		       const uint8_t *body_and_padding,
		       const struct wire_record_header *rh,
		       char *err, size_t errlen)
{
	return wire_record_verify_seeded(hdr, body_and_padding, rh, 0, err,
					 errlen);
}

static void record_header_pack(uint8_t *hdr, const struct wire_record_header *h)
{
	store_be32(hdr, h->type);
	store_be32(hdr + 4, h->flags);
	store_be64(hdr + 8, h->epoch);
	store_be32(hdr + REC_OFF_LENGTH, h->length);
	store_be32(hdr + 20, h->seq);
	store_be64(hdr + REC_OFF_CHECKSUM, 0);
}

int wire_record_seal_iov(uint8_t hdr[WIRE_RECORD_HEADER_SIZE],
			 const struct wire_record_header *h,
			 const void *const *parts, const size_t *lens,
			 unsigned nparts, uint64_t seed)
{
	static const uint8_t zeros[WIRE_ALIGN];
	const void *p[WIRE_SEAL_MAX_PARTS + 1];
	size_t l[WIRE_SEAL_MAX_PARTS + 1], total = 0;
	unsigned i, n = 0;
	uint64_t csum;

	if (nparts > WIRE_SEAL_MAX_PARTS)
		return -EINVAL;
	for (i = 0; i < nparts; i++)
		total += lens[i];
	if (total != h->length)
		return -EINVAL;
	record_header_pack(hdr, h);
	for (i = 0; i < nparts; i++) {
		p[n] = parts[i];
		l[n++] = lens[i];
	}
	p[n] = zeros;
	l[n++] = wire_padded_length(h->length) - h->length;
	csum = record_checksum_iov(hdr, p, l, n, seed);
	store_be64(hdr + REC_OFF_CHECKSUM, csum);
	return 0;
}

uint64_t wire_record_seal(uint8_t hdr[WIRE_RECORD_HEADER_SIZE],
			  const struct wire_record_header *h,
			  const uint8_t *body_and_padding, uint64_t seed)
{
	uint64_t csum;

	record_header_pack(hdr, h);
	csum = record_checksum_seeded(hdr, body_and_padding,
				      wire_padded_length(h->length), seed);
	store_be64(hdr + REC_OFF_CHECKSUM, csum);
	return csum;
}

/* ---- DOMAIN_INFO ------------------------------------------------------ */

/* Field rules shared by encoder and decoder; the cursor collects the error. */
static int domain_info_check(const struct wire_domain_info *di,
			     struct wire_cursor *c)
{
	const char *nul;

	if (di->backend != WIRE_BACKEND_UVM && di->backend != WIRE_BACKEND_XEN)
		wire_cursor_fail(c, -EBADMSG,
				 "backend %" PRIu32 " unknown (1 = uvm, 2 = xen)",
				 di->backend);
	if (di->nr_vcpus < 1 || di->nr_vcpus > WIRE_MAX_VCPUS)
		wire_cursor_fail(c, -EBADMSG, "nr_vcpus %" PRIu32 " not in 1..%d",
				 di->nr_vcpus, WIRE_MAX_VCPUS);
	if (di->page_size != WIRE_PAGE_SIZE)
		wire_cursor_fail(c, -EBADMSG,
				 "page_size %" PRIu32 " not supported (must be %d)",
				 di->page_size, WIRE_PAGE_SIZE);
	if (di->mem_bytes == 0 || di->mem_bytes % WIRE_PAGE_SIZE != 0)
		wire_cursor_fail(c, -EBADMSG,
				 "mem_bytes %" PRIu64
				 " is not a nonzero multiple of %d",
				 di->mem_bytes, WIRE_PAGE_SIZE);
	if (di->xsave_size > WIRE_XSAVE_MAX)
		wire_cursor_fail(c, -EBADMSG, "xsave_size %" PRIu32 " > max %d",
				 di->xsave_size, WIRE_XSAVE_MAX);
	if (di->cmdline_len > WIRE_CMDLINE_MAX)
		return wire_cursor_fail(c, -EBADMSG,
					"cmdline_len %" PRIu32 " > max %d",
					di->cmdline_len, WIRE_CMDLINE_MAX);
	nul = memchr(di->cmdline, '\0', di->cmdline_len);
	if (nul)
		wire_cursor_fail(c, -EBADMSG, "cmdline byte %td is NUL",
				 nul - di->cmdline);
	return c->rc;
}

int wire_domain_info_put(struct wire_buf *buf, uint64_t epoch,
			 const struct wire_domain_info *di,
			 struct wire_sum *sum)
{
	struct wire_cursor chk;
	size_t mark;

	wire_cursor_init(&chk, NULL, 0);
	if (domain_info_check(di, &chk))
		return -EINVAL;
	if (wire_record_begin(buf, WIRE_REC_DOMAIN_INFO, epoch, &mark))
		return buf->rc;
	wire_put_be32(buf, di->backend);
	wire_put_be32(buf, di->nr_vcpus);
	wire_put_be64(buf, di->guest_base);
	wire_put_be64(buf, di->mem_bytes);
	wire_put_be32(buf, di->page_size);
	wire_put_be32(buf, 0);
	wire_put_be64(buf, di->xsave_features);
	wire_put_be32(buf, di->xsave_size);
	wire_put_be32(buf, 0);
	wire_put_be64(buf, di->guest_clock_ns);
	wire_put_be32(buf, di->cmdline_len);
	wire_put_be32(buf, 0);
	wire_put_bytes(buf, di->cmdline, di->cmdline_len);
	return wire_record_end(buf, mark, sum, NULL);
}

/* Fails unless the body is exactly `want` bytes. */
static int expect_length(struct wire_cursor *c, size_t want, const char *why)
{
	if (c->rc || c->len == want)
		return c->rc;
	return wire_cursor_fail(c, -EBADMSG, "body length %zu != %zu (%s)",
				c->len, want, why);
}

int wire_domain_info_decode(const uint8_t *body, size_t len,
			    struct wire_domain_info *out,
			    char *err, size_t errlen)
{
	struct wire_cursor c;
	const uint8_t *cmdline;
	uint32_t reserved;

	memset(out, 0, sizeof(*out));
	wire_cursor_init(&c, body, len);
	wire_get_be32(&c, &out->backend);
	wire_get_be32(&c, &out->nr_vcpus);
	wire_get_be64(&c, &out->guest_base);
	wire_get_be64(&c, &out->mem_bytes);
	wire_get_be32(&c, &out->page_size);
	wire_get_be32(&c, &reserved);
	wire_get_be64(&c, &out->xsave_features);
	wire_get_be32(&c, &out->xsave_size);
	wire_get_be32(&c, &reserved);
	wire_get_be64(&c, &out->guest_clock_ns);
	wire_get_be32(&c, &out->cmdline_len);
	wire_get_be32(&c, &reserved);
	if (!c.rc && out->cmdline_len > WIRE_CMDLINE_MAX)
		wire_cursor_fail(&c, -EBADMSG, "cmdline_len %" PRIu32 " > max %d",
				 out->cmdline_len, WIRE_CMDLINE_MAX);
	expect_length(&c, (size_t)WIRE_DOMAIN_INFO_FIXED + out->cmdline_len,
		      "64 + cmdline_len");
	if (!wire_get_bytes(&c, out->cmdline_len, &cmdline))
		memcpy(out->cmdline, cmdline, out->cmdline_len);
	if (!c.rc)
		domain_info_check(out, &c);
	return cursor_finish(&c, "DOMAIN_INFO", err, errlen);
}

/* ---- PAGE_DATA -------------------------------------------------------- */

static size_t page_data_length(uint32_t count)
{
	return 8 + (size_t)count * (8 + WIRE_PAGE_SIZE);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

/* Refuses a pfn listed twice; sorts a copy so the check is n log n. */
static int pfns_unique(const uint64_t *pfn, uint32_t count,
		       struct wire_cursor *c)
{
	uint64_t sorted[WIRE_PAGE_MAX];
	uint32_t i;

	memcpy(sorted, pfn, (size_t)count * sizeof(sorted[0]));
	qsort(sorted, count, sizeof(sorted[0]), cmp_u64);
	for (i = 1; i < count; i++)
		if (sorted[i] == sorted[i - 1])
			return wire_cursor_fail(c, -EBADMSG,
						"duplicate page index %" PRIu64,
						sorted[i]);
	return 0;
}

static int page_count_check(uint32_t count, struct wire_cursor *c)
{
	if (count < 1 || count > WIRE_PAGE_MAX)
		return wire_cursor_fail(c, -EBADMSG,
					"count %" PRIu32 " not in 1..%d",
					count, WIRE_PAGE_MAX);
	return 0;
}

/* Page bytes come from pages[] or, when contig is set, from contig. */
static int page_data_put(struct wire_buf *buf, uint64_t epoch, uint32_t count,
			 const uint64_t *pfn, const void *const *pages,
			 const uint8_t *contig, struct wire_sum *sum)
{
	struct wire_cursor chk;
	size_t mark;
	uint32_t i;

	wire_cursor_init(&chk, NULL, 0);
	if (page_count_check(count, &chk) || pfns_unique(pfn, count, &chk))
		return -EINVAL;
	if (wire_record_begin(buf, WIRE_REC_PAGE_DATA, epoch, &mark))
		return buf->rc;
	wire_put_be32(buf, count);
	wire_put_be32(buf, 0);
	for (i = 0; i < count; i++)
		wire_put_be64(buf, pfn[i]);
	if (contig)
		wire_put_bytes(buf, contig, (size_t)count * WIRE_PAGE_SIZE);
	for (i = 0; !contig && i < count; i++)
		wire_put_bytes(buf, pages[i], WIRE_PAGE_SIZE);
	return wire_record_end(buf, mark, sum, NULL);
}

int wire_page_data_put(struct wire_buf *buf, uint64_t epoch, uint32_t count,
		       const uint64_t *pfn, const void *const *pages,
		       struct wire_sum *sum)
{
	if (!pfn || !pages)
		return -EINVAL;
	return page_data_put(buf, epoch, count, pfn, pages, NULL, sum);
}

int wire_page_data_put_contig(struct wire_buf *buf, uint64_t epoch,
			      uint32_t count, const uint64_t *pfn,
			      const void *data, struct wire_sum *sum)
{
	if (!pfn || !data)
		return -EINVAL;
	return page_data_put(buf, epoch, count, pfn, NULL, data, sum);
}

int wire_page_data_decode(const uint8_t *body, size_t len, uint64_t nr_pages,
			  struct wire_page_data *out,
			  char *err, size_t errlen)
{
	struct wire_cursor c;
	uint32_t reserved, i;

	out->data = NULL;
	wire_cursor_init(&c, body, len);
	wire_get_be32(&c, &out->count);
	wire_get_be32(&c, &reserved);
	if (!c.rc)
		page_count_check(out->count, &c);
	expect_length(&c, page_data_length(out->count),
		      "8 + count * (8 + 4096)");
	for (i = 0; !c.rc && i < out->count; i++) {
		wire_get_be64(&c, &out->pfn[i]);
		if (!c.rc && out->pfn[i] >= nr_pages)
			wire_cursor_fail(&c, -EBADMSG, "entry %" PRIu32
					 ": page index %" PRIu64 " past guest "
					 "memory (%" PRIu64 " pages)",
					 i, out->pfn[i], nr_pages);
	}
	if (!c.rc)
		pfns_unique(out->pfn, out->count, &c);
	wire_get_bytes(&c, (size_t)out->count * WIRE_PAGE_SIZE, &out->data);
	return cursor_finish(&c, "PAGE_DATA", err, errlen);
}

/* ---- VCPU_STATE ------------------------------------------------------- */

static int vcpu_state_check(uint32_t vcpu_id, uint32_t xsave_len,
			    struct wire_cursor *c)
{
	if (vcpu_id >= WIRE_MAX_VCPUS)
		wire_cursor_fail(c, -EBADMSG, "vcpu_id %" PRIu32 " >= max %d",
				 vcpu_id, WIRE_MAX_VCPUS);
	if (xsave_len > WIRE_XSAVE_MAX)
		wire_cursor_fail(c, -EBADMSG, "xsave_len %" PRIu32 " > max %d",
				 xsave_len, WIRE_XSAVE_MAX);
	return c->rc;
}

int wire_vcpu_state_put(struct wire_buf *buf, uint64_t epoch,
			const struct wire_vcpu_state *vs,
			struct wire_sum *sum)
{
	struct wire_cursor chk;
	size_t mark;
	int i;

	wire_cursor_init(&chk, NULL, 0);
	if (vcpu_state_check(vs->vcpu_id, vs->xsave_len, &chk))
		return -EINVAL;
	if (wire_record_begin(buf, WIRE_REC_VCPU_STATE, epoch, &mark))
		return buf->rc;
	wire_put_be32(buf, vs->vcpu_id);
	wire_put_be32(buf, vs->xsave_len);
	for (i = 0; i < WIRE_NR_GPRS; i++)
		wire_put_be64(buf, vs->gpr[i]);
	wire_put_be64(buf, vs->rip);
	wire_put_be64(buf, vs->rflags);
	wire_put_be64(buf, vs->fs_base);
	wire_put_be64(buf, vs->gs_base);
	wire_put_be64(buf, vs->xfeatures);
	wire_put_be64(buf, vs->timer_deadline_ns);
	wire_put_bytes(buf, vs->xsave, vs->xsave_len);
	return wire_record_end(buf, mark, sum, NULL);
}

int wire_vcpu_state_decode(const uint8_t *body, size_t len,
			   struct wire_vcpu_state *out,
			   char *err, size_t errlen)
{
	struct wire_cursor c;
	const uint8_t *xsave;
	int i;

	wire_cursor_init(&c, body, len);
	wire_get_be32(&c, &out->vcpu_id);
	wire_get_be32(&c, &out->xsave_len);
	if (!c.rc)
		vcpu_state_check(out->vcpu_id, out->xsave_len, &c);
	expect_length(&c, (size_t)WIRE_VCPU_STATE_FIXED + out->xsave_len,
		      "184 + xsave_len");
	for (i = 0; i < WIRE_NR_GPRS; i++)
		wire_get_be64(&c, &out->gpr[i]);
	wire_get_be64(&c, &out->rip);
	wire_get_be64(&c, &out->rflags);
	wire_get_be64(&c, &out->fs_base);
	wire_get_be64(&c, &out->gs_base);
	wire_get_be64(&c, &out->xfeatures);
	wire_get_be64(&c, &out->timer_deadline_ns);
	if (!wire_get_bytes(&c, out->xsave_len, &xsave))
		memcpy(out->xsave, xsave, out->xsave_len);
	return cursor_finish(&c, "VCPU_STATE", err, errlen);
}

/* ---- DEVICE_STATE ----------------------------------------------------- */

static int blob_len_check(uint32_t blob_len, struct wire_cursor *c)
{
	if (blob_len > WIRE_BLOB_MAX)
		return wire_cursor_fail(c, -EBADMSG,
					"blob_len %" PRIu32 " > max %d",
					blob_len, WIRE_BLOB_MAX);
	return 0;
}

int wire_device_state_put(struct wire_buf *buf, uint64_t epoch,
			  const struct wire_device_state *ds,
			  struct wire_sum *sum)
{
	struct wire_cursor chk;
	size_t mark;

	wire_cursor_init(&chk, NULL, 0);
	if (blob_len_check(ds->blob_len, &chk) || (ds->blob_len && !ds->blob))
		return -EINVAL;
	if (wire_record_begin(buf, WIRE_REC_DEVICE_STATE, epoch, &mark))
		return buf->rc;
	wire_put_be32(buf, ds->index);
	wire_put_be32(buf, ds->type);
	wire_put_be32(buf, ds->port);
	wire_put_be32(buf, ds->blob_len);
	wire_put_bytes(buf, ds->blob, ds->blob_len);
	return wire_record_end(buf, mark, sum, NULL);
}

int wire_device_state_decode(const uint8_t *body, size_t len,
			     struct wire_device_state *out,
			     char *err, size_t errlen)
{
	struct wire_cursor c;

	out->blob = NULL;
	wire_cursor_init(&c, body, len);
	wire_get_be32(&c, &out->index);
	wire_get_be32(&c, &out->type);
	wire_get_be32(&c, &out->port);
	wire_get_be32(&c, &out->blob_len);
	if (!c.rc)
		blob_len_check(out->blob_len, &c);
	expect_length(&c, (size_t)WIRE_DEVICE_STATE_FIXED + out->blob_len,
		      "16 + blob_len");
	wire_get_bytes(&c, out->blob_len, &out->blob);
	return cursor_finish(&c, "DEVICE_STATE", err, errlen);
}

/* ---- END and NOTE ----------------------------------------------------- */

int wire_end_put(struct wire_buf *buf, uint64_t epoch,
		 const struct wire_sum *sum)
{
	size_t mark;

	if (!sum || !sum->state)
		return -EINVAL;
	if (wire_record_begin(buf, WIRE_REC_END, epoch, &mark))
		return buf->rc;
	wire_put_be64(buf, sum->count);
	wire_put_be64(buf, wire_sum_final(sum));
	return wire_record_end(buf, mark, NULL, NULL);
}

int wire_end_decode(const uint8_t *body, size_t len, struct wire_end *out,
		    char *err, size_t errlen)
{
	struct wire_cursor c;

	wire_cursor_init(&c, body, len);
	expect_length(&c, WIRE_END_SIZE, "END is fixed-size");
	wire_get_be64(&c, &out->record_count);
	wire_get_be64(&c, &out->stream_checksum);
	return cursor_finish(&c, "END", err, errlen);
}

int wire_note_put(struct wire_buf *buf, uint64_t epoch, const char *text,
		  size_t len, struct wire_sum *sum)
{
	size_t mark;

	if (len > WIRE_MAX_BODY)
		return -E2BIG;
	if (len && !text)
		return -EINVAL;
	if (wire_record_begin(buf, WIRE_REC_NOTE, epoch, &mark))
		return buf->rc;
	wire_put_bytes(buf, text, len);
	return wire_record_end(buf, mark, sum, NULL);
}

int wire_note_decode(const uint8_t *body, size_t len, struct wire_note *out,
		     char *err, size_t errlen)
{
	struct wire_cursor c;
	const uint8_t *text;

	wire_cursor_init(&c, body, len);
	if (len > WIRE_MAX_BODY)
		wire_cursor_fail(&c, -E2BIG, "length %zu > max %u", len,
				 WIRE_MAX_BODY);
	wire_get_bytes(&c, len, &text);
	out->text = (const char *)text;
	out->len = c.rc ? 0 : (uint32_t)len;
	return cursor_finish(&c, "NOTE", err, errlen);
}

/* ---- reader ----------------------------------------------------------- */

static int reader_fail(struct wire_reader *r, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int reader_fail(struct wire_reader *r, int err, const char *fmt, ...)
{
	va_list ap;

	if (r->rc)
		return r->rc;
	r->rc = err;
	va_start(ap, fmt);
	vsnprintf(r->err, sizeof(r->err), fmt, ap);
	va_end(ap);
	return err;
}

/* "record 7 (PAGE_DATA): <detail>" */
static int record_fail(struct wire_reader *r, const struct wire_record *rec,
		       int err, const char *detail)
{
	char label[24];

	return reader_fail(r, err, "record %" PRIu64 " (%s): %s", rec->index,
			   type_label(rec->hdr.type, label), detail);
}

/* Reads up to n bytes, retrying EINTR; *got < n only at end of file. */
static int read_full(int fd, uint8_t *dst, size_t n, size_t *got)
{
	ssize_t k;

	*got = 0;
	while (*got < n) {
		k = read(fd, dst + *got, n - *got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0)
			break;
		*got += (size_t)k;
	}
	return 0;
}

/*
 * Takes the next n bytes of input: from memory by pointer, from an fd into
 * scratch.  *got < n means the input ended.  Invariant: offset <= mem_len.
 */
static int reader_take(struct wire_reader *r, size_t n, uint8_t *scratch,
		       const uint8_t **out, size_t *got)
{
	int rc;

	if (r->fd < 0) {
		size_t left = r->mem_len - (size_t)r->offset;

		*got = n < left ? n : left;
		*out = r->mem + r->offset;
	} else {
		rc = read_full(r->fd, scratch, n, got);
		if (rc)
			return reader_fail(r, rc, "read failed at byte %" PRIu64
					   ": %s", r->offset + *got,
					   strerror(-rc));
		*out = scratch;
	}
	r->offset += *got;
	return 0;
}

static int reader_start(struct wire_reader *r, uint32_t stream_type)
{
	uint8_t scratch[WIRE_STREAM_HEADER_SIZE];
	const uint8_t *hdr;
	size_t got;
	int rc;

	if (stream_type != WIRE_STREAM_SNAPSHOT)
		return reader_fail(r, -EPROTONOSUPPORT,
				   "stream type %" PRIu32 " (%s) cannot be read "
				   "yet: this reader supports SNAPSHOT only",
				   stream_type, stream_type_name(stream_type));
	if (wire_sum_init(&r->sum))
		return reader_fail(r, -ENOMEM, "out of memory");
	if (r->fd >= 0 && !(r->body = malloc(WIRE_MAX_BODY)))
		return reader_fail(r, -ENOMEM, "out of memory for %u-byte "
				   "body buffer", WIRE_MAX_BODY);
	rc = reader_take(r, sizeof(scratch), scratch, &hdr, &got);
	if (rc)
		return rc;
	if (got < sizeof(scratch))
		return reader_fail(r, -EBADMSG, "truncated at byte %zu: stream "
				   "header needs %zu bytes", got, sizeof(scratch));
	rc = wire_stream_header_decode(hdr, &r->header, r->err, sizeof(r->err));
	if (rc)
		return r->rc = rc;
	if (r->header.stream_type != stream_type)
		return reader_fail(r, -EPROTO, "stream header: stream_type %"
				   PRIu32 " (%s), expected %" PRIu32 " (%s)",
				   r->header.stream_type,
				   stream_type_name(r->header.stream_type),
				   stream_type, stream_type_name(stream_type));
	return 0;
}

static int reader_open(struct wire_reader *r, int fd, const void *mem,
		       size_t len, uint32_t stream_type)
{
	static const uint8_t empty[1];
	int rc;

	memset(r, 0, sizeof(*r));
	r->fd = fd;
	r->mem = mem ? mem : empty;
	r->mem_len = mem ? len : 0;
	rc = reader_start(r, stream_type);
	if (rc) {
		free(r->body);
		r->body = NULL;
		wire_sum_fini(&r->sum);
	}
	return rc;
}

int wire_reader_open(struct wire_reader *r, int fd, uint32_t stream_type)
{
	if (fd < 0) {
		memset(r, 0, sizeof(*r));
		r->fd = -1;
		return reader_fail(r, -EBADF, "bad file descriptor %d", fd);
	}
	return reader_open(r, fd, NULL, 0, stream_type);
}

int wire_reader_open_mem(struct wire_reader *r, const void *data, size_t len,
			 uint32_t stream_type)
{
	return reader_open(r, -1, data, len, stream_type);
}

void wire_reader_close(struct wire_reader *r)
{
	free(r->body);
	r->body = NULL;
	wire_sum_fini(&r->sum);
}

/* SNAPSHOT ordering: epoch 0, DOMAIN_INFO first and once, END last. */
static int snapshot_rules(struct wire_reader *r, const struct wire_record *rec,
			  struct wire_cursor *c)
{
	uint32_t type = rec->hdr.type;

	if (rec->hdr.epoch != 0)
		return wire_cursor_fail(c, -EBADMSG, "epoch %" PRIu64
					" in a SNAPSHOT stream (must be 0)",
					rec->hdr.epoch);
	if (!wire_record_allowed(type, WIRE_STREAM_SNAPSHOT))
		return wire_cursor_fail(c, -EBADMSG, "%s record in a SNAPSHOT "
					"stream", wire_record_type_name(type));
	if (type & WIRE_REC_OPTIONAL)
		return 0;
	if (type != WIRE_REC_DOMAIN_INFO && !r->seen_domain_info)
		return wire_cursor_fail(c, -EBADMSG, "first mandatory record "
					"must be DOMAIN_INFO");
	if (type == WIRE_REC_DOMAIN_INFO && r->seen_domain_info)
		return wire_cursor_fail(c, -EBADMSG, "second DOMAIN_INFO");
	if (type == WIRE_REC_DOMAIN_INFO)
		r->seen_domain_info = true;
	return 0;
}

/* END must count the records before it and match their running checksum. */
static int end_check(const struct wire_reader *r, const uint8_t *body,
		     uint32_t len, struct wire_cursor *c)
{
	struct wire_end end;
	uint64_t sum = wire_sum_final(&r->sum);

	if (wire_end_decode(body, len, &end, c->err, sizeof(c->err)))
		return c->rc = -EBADMSG;
	if (end.record_count != r->nr_records)
		return wire_cursor_fail(c, -EBADMSG, "record_count %" PRIu64
					" != %" PRIu64 " records read",
					end.record_count, r->nr_records);
	if (end.stream_checksum != sum)
		return wire_cursor_fail(c, -EBADMSG, "stream_checksum 0x%016"
					PRIx64 " != computed 0x%016" PRIx64,
					end.stream_checksum, sum);
	return 0;
}

/* Reads one record's header and body; fails unless the record is sound. */
static int reader_body(struct wire_reader *r, struct wire_record *rec,
		       const uint8_t *hdr)
{
	size_t padded = wire_padded_length(rec->hdr.length), got;
	struct wire_cursor c;
	const uint8_t *body;
	char detail[WIRE_ERR_MAX];

	if (reader_take(r, padded, r->body, &body, &got))
		return r->rc;
	if (got < padded) {
		snprintf(detail, sizeof(detail), "truncated at byte %" PRIu64
			 ": body and padding need %zu bytes, got %zu",
			 r->offset, padded, got);
		return record_fail(r, rec, -EBADMSG, detail);
	}
	wire_cursor_init(&c, NULL, 0);
	if (!record_verify(hdr, body, &rec->hdr, 0, &c) &&
	    !snapshot_rules(r, rec, &c) && rec->hdr.type == WIRE_REC_END)
		end_check(r, body, rec->hdr.length, &c);
	if (c.rc)
		return record_fail(r, rec, c.rc, c.err);
	rec->body = body;
	return 0;
}

static int reader_record(struct wire_reader *r, struct wire_record *rec)
{
	uint8_t scratch[WIRE_RECORD_HEADER_SIZE];
	struct wire_cursor c;
	const uint8_t *hdr;
	size_t got;

	memset(rec, 0, sizeof(*rec));
	rec->index = r->nr_records;
	rec->offset = r->offset;
	if (reader_take(r, sizeof(scratch), scratch, &hdr, &got))
		return r->rc;
	if (got == 0)
		return reader_fail(r, -EBADMSG, "stream ended without END "
				   "record (at byte %" PRIu64 ", after %" PRIu64
				   " records)", r->offset, r->nr_records);
	if (got < sizeof(scratch))
		return reader_fail(r, -EBADMSG, "truncated at byte %" PRIu64
				   ": record %" PRIu64 " header needs %zu "
				   "bytes, got %zu", r->offset, rec->index,
				   sizeof(scratch), got);
	record_header_parse(hdr, &rec->hdr);
	wire_cursor_init(&c, NULL, 0);
	if (record_header_check(&rec->hdr, WIRE_MAX_BODY, &c))
		return record_fail(r, rec, c.rc, c.err);
	if (reader_body(r, rec, hdr))
		return r->rc;
	if (rec->hdr.type != WIRE_REC_END)
		wire_sum_add(&r->sum, rec->hdr.checksum);
	r->nr_records++;
	return 0;
}

int wire_reader_next(struct wire_reader *r, struct wire_record *rec)
{
	int rc;

	if (r->rc)
		return r->rc;
	if (r->done)
		return reader_fail(r, -EINVAL, "read past the END record");
	do
		rc = reader_record(r, rec);
	while (!rc && !type_find(rec->hdr.type)); /* skip unknown optional */
	if (!rc && rec->hdr.type == WIRE_REC_END)
		r->done = true;
	return rc;
}
