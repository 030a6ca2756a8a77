/*
 * stream_codec.c - framed messages in the stream device's byte rings, and
 * the back end's saved connection table.  See stream_codec.h for the
 * layout and the trust rules; in short, every value the guest wrote is
 * checked before it is used as a length or an offset, a header is fetched
 * from shared memory exactly once, and nothing here allocates.
 */
#include "stream_codec.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define UVM_SCODEC_MAGIC "USTR"

/* The shared ring may change under us: fetched values stay fetched. */
#define uvm_scodec_barrier() __asm__ __volatile__("" ::: "memory")

static int uvm_scodec_bad(char *why, size_t whylen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int uvm_scodec_bad(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	if (why != NULL && whylen > 0) {
		va_start(ap, fmt);
		vsnprintf(why, whylen, fmt, ap);
		va_end(ap);
	}
	return -EBADMSG;
}

const char *uvm_scodec_type_name(uint32_t type)
{
	switch (type) {
	case UVM_STREAM_OPEN:
		return "OPEN";
	case UVM_STREAM_DATA:
		return "DATA";
	case UVM_STREAM_CLOSE:
		return "CLOSE";
	case UVM_STREAM_CREDIT:
		return "CREDIT";
	default:
		return "?";
	}
}

uint32_t uvm_scodec_ring_size(uint64_t bytes)
{
	uint64_t room, size = UVM_SCODEC_MIN_SIZE;

	if (bytes < UVM_BYTERING_HEADER + UVM_SCODEC_MIN_SIZE)
		return 0;
	room = bytes - UVM_BYTERING_HEADER;
	while (size * 2 <= room && size * 2 <= (1ULL << 31))
		size *= 2;
	return (uint32_t)size;
}

void uvm_scodec_ring_init(struct uvm_bytering *shared, uint32_t size)
{
	memset(shared, 0, UVM_BYTERING_HEADER);
	shared->size = size;
}

static bool uvm_scodec_pow2(uint32_t v)
{
	return v != 0 && (v & (v - 1)) == 0;
}

int uvm_scodec_check_size(uint32_t shared_size, uint32_t size, char *why,
			  size_t whylen)
{
	if (shared_size != size || !uvm_scodec_pow2(shared_size))
		return uvm_scodec_bad(why, whylen,
				      "ring size field %u (expected %u)",
				      shared_size, size);
	return 0;
}

int uvm_scodec_space(uint32_t size, uint32_t prod, uint32_t cons,
		     uint32_t *space, char *why, size_t whylen)
{
	uint32_t used = prod - cons;

	*space = 0;
	if (((prod | cons) & (UVM_STREAM_ALIGN - 1)) != 0)
		return uvm_scodec_bad(why, whylen,
				      "index not %u-byte aligned (producer %u, "
				      "consumer %u)", UVM_STREAM_ALIGN, prod, cons);
	if (used > size)
		return uvm_scodec_bad(why, whylen,
				      "consumer index %u is %u bytes behind "
				      "producer %u (ring %u)",
				      cons, used, prod, size);
	*space = size - used;
	return 0;
}

/* Copy len bytes into the ring at index idx, wrapping at the end. */
static void uvm_scodec_copy_in(const struct uvm_scodec_ring *r, uint32_t idx,
			       const void *src, uint32_t len)
{
	uint32_t at = idx & (r->size - 1);
	uint32_t first = len < r->size - at ? len : r->size - at;

	if (src != NULL) {
		memcpy(r->data + at, src, first);
		memcpy(r->data, (const uint8_t *)src + first, len - first);
	} else {
		memset(r->data + at, 0, first);
		memset(r->data, 0, len - first);
	}
}

/* Copy len bytes out of the ring at index idx, wrapping at the end. */
static void uvm_scodec_copy_out(const struct uvm_scodec_ring *r, uint32_t idx,
				void *dst, uint32_t len)
{
	uint32_t at = idx & (r->size - 1);
	uint32_t first = len < r->size - at ? len : r->size - at;

	memcpy(dst, r->data + at, first);
	memcpy((uint8_t *)dst + first, r->data, len - first);
}

int uvm_scodec_check_hdr(const struct uvm_stream_hdr *h, unsigned allowed,
			 uint32_t size, char *why, size_t whylen)
{
	if (h->type >= 32 || !(allowed & UVM_SCODEC_TYPE_BIT(h->type)))
		return uvm_scodec_bad(why, whylen,
				      "message type %u not allowed here",
				      h->type);
	if (h->flags != 0)
		return uvm_scodec_bad(why, whylen, "%s flags 0x%x (must be 0)",
				      uvm_scodec_type_name(h->type), h->flags);
	if (h->conn < 1 || h->conn > UVM_STREAM_MAX_CONNS)
		return uvm_scodec_bad(why, whylen, "%s conn %u not in 1..%u",
				      uvm_scodec_type_name(h->type), h->conn,
				      UVM_STREAM_MAX_CONNS);
	if (h->type == UVM_STREAM_DATA && h->len > UVM_STREAM_MAX_DATA)
		return uvm_scodec_bad(why, whylen,
				      "DATA conn %u len %u > %u", h->conn,
				      h->len, UVM_STREAM_MAX_DATA);
	if (h->type != UVM_STREAM_DATA && h->len != 0)
		return uvm_scodec_bad(why, whylen, "%s conn %u len %u (must be 0)",
				      uvm_scodec_type_name(h->type), h->conn,
				      h->len);
	if (uvm_scodec_msg_bytes(h->len) > size)
		return uvm_scodec_bad(why, whylen,
				      "%s conn %u len %u does not fit ring %u",
				      uvm_scodec_type_name(h->type), h->conn,
				      h->len, size);
	return 0;
}

int uvm_scodec_put(const struct uvm_scodec_ring *r, uint32_t prod,
		   uint32_t space, const struct uvm_stream_hdr *hdr,
		   const void *payload, uint32_t *next)
{
	uint32_t bytes = uvm_scodec_msg_bytes(hdr->len);
	uint32_t pad = bytes - UVM_SCODEC_HDR_SIZE - hdr->len;

	if ((prod & (UVM_STREAM_ALIGN - 1)) != 0 ||
	    uvm_scodec_check_hdr(hdr, UVM_SCODEC_ALL_TYPES, r->size, NULL, 0))
		return -EINVAL;
	if (bytes > space)
		return -ENOSPC;
	uvm_scodec_copy_in(r, prod, hdr, UVM_SCODEC_HDR_SIZE);
	if (hdr->len > 0)
		uvm_scodec_copy_in(r, prod + UVM_SCODEC_HDR_SIZE, payload,
				   hdr->len);
	if (pad > 0)
		uvm_scodec_copy_in(r, prod + UVM_SCODEC_HDR_SIZE + hdr->len,
				   NULL, pad);
	*next = prod + bytes;
	return 0;
}

/* Where the payload lies: one part, or two when it wraps. */
static void uvm_scodec_parts(const struct uvm_scodec_ring *r, uint32_t cons,
			     struct uvm_scodec_msg *m)
{
	uint32_t at = (cons + UVM_SCODEC_HDR_SIZE) & (r->size - 1);
	uint32_t len = m->hdr.len;
	uint32_t first = len < r->size - at ? len : r->size - at;

	m->part[0] = r->data + at;
	m->part_len[0] = first;
	m->part[1] = r->data;
	m->part_len[1] = len - first;
}

/* The ring-level checks: size field, index alignment and distance. */
static int uvm_scodec_check_ring(const struct uvm_scodec_ring *r,
				 uint32_t shared_size, uint32_t cons,
				 uint32_t prod, char *why, size_t whylen)
{
	int rc = uvm_scodec_check_size(shared_size, r->size, why, whylen);

	if (rc)
		return rc;
	if (!uvm_scodec_pow2(r->size) || r->size < UVM_SCODEC_MIN_SIZE)
		return uvm_scodec_bad(why, whylen, "ring size %u", r->size);
	if ((cons & (UVM_STREAM_ALIGN - 1)) != 0)
		return uvm_scodec_bad(why, whylen,
				      "consumer index %u not %u-byte aligned",
				      cons, UVM_STREAM_ALIGN);
	if ((prod & (UVM_STREAM_ALIGN - 1)) != 0)
		return uvm_scodec_bad(why, whylen,
				      "producer index %u not %u-byte aligned",
				      prod, UVM_STREAM_ALIGN);
	if (prod - cons > r->size)
		return uvm_scodec_bad(why, whylen,
				      "producer %u is %u bytes ahead of "
				      "consumer %u (ring %u)",
				      prod, prod - cons, cons, r->size);
	return 0;
}

int uvm_scodec_next(const struct uvm_scodec_ring *r, uint32_t shared_size,
		    uint32_t cons, uint32_t prod, unsigned allowed,
		    struct uvm_scodec_msg *m, char *why, size_t whylen)
{
	uint32_t avail;
	int rc;

	memset(m, 0, sizeof(*m));
	rc = uvm_scodec_check_ring(r, shared_size, cons, prod, why, whylen);
	if (rc)
		return rc;
	avail = prod - cons;
	if (avail < UVM_SCODEC_HDR_SIZE)
		return 0;
	uvm_scodec_copy_out(r, cons, &m->hdr, UVM_SCODEC_HDR_SIZE);
	uvm_scodec_barrier();
	rc = uvm_scodec_check_hdr(&m->hdr, allowed, r->size, why, whylen);
	if (rc)
		return rc;
	if (avail < uvm_scodec_msg_bytes(m->hdr.len)) {
		memset(m, 0, sizeof(*m));
		return 0;
	}
	uvm_scodec_parts(r, cons, m);
	m->next = cons + uvm_scodec_msg_bytes(m->hdr.len);
	return 1;
}

/* ---- saved connection table ----------------------------------------- */

static void uvm_scodec_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t uvm_scodec_get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

int uvm_scodec_save_put(const struct uvm_scodec_save *s, uint8_t *buf,
			size_t cap, size_t *len)
{
	size_t need;

	if (s->count > UVM_STREAM_MAX_CONNS)
		return -EINVAL;
	need = UVM_SCODEC_SAVE_HDR + (size_t)s->count * UVM_SCODEC_SAVE_ENTRY;
	if (need > cap)
		return -ENOSPC;
	memset(buf, 0, need);
	memcpy(buf, UVM_SCODEC_MAGIC, 4);
	buf[4] = UVM_SCODEC_SAVE_VERSION;
	buf[5] = UVM_SCODEC_SAVE_ENTRY;
	uvm_scodec_le32(buf + 8, s->flags);
	uvm_scodec_le32(buf + 12, s->tx_cons);
	uvm_scodec_le32(buf + 16, s->rx_prod);
	uvm_scodec_le32(buf + 20, s->size);
	uvm_scodec_le32(buf + 24, s->count);
	for (uint32_t i = 0; i < s->count; i++) {
		uint8_t *e = buf + UVM_SCODEC_SAVE_HDR +
			     (size_t)i * UVM_SCODEC_SAVE_ENTRY;

		uvm_scodec_le32(e, s->conn[i].conn);
		e[4] = s->conn[i].state;
		e[5] = s->conn[i].flags;
		uvm_scodec_le32(e + 8, s->conn[i].host_credit);
		uvm_scodec_le32(e + 12, s->conn[i].guest_credit);
	}
	*len = need;
	return 0;
}

static int uvm_scodec_save_hdr(const uint8_t *buf, size_t len,
			       struct uvm_scodec_save *s, char *why,
			       size_t whylen)
{
	if (len < UVM_SCODEC_SAVE_HDR)
		return uvm_scodec_bad(why, whylen, "stream state of %zu bytes "
				      "(< %d)", len, UVM_SCODEC_SAVE_HDR);
	if (memcmp(buf, UVM_SCODEC_MAGIC, 4) != 0)
		return uvm_scodec_bad(why, whylen, "stream state magic "
				      "%02x%02x%02x%02x", buf[0], buf[1],
				      buf[2], buf[3]);
	if (buf[4] != UVM_SCODEC_SAVE_VERSION)
		return uvm_scodec_bad(why, whylen, "stream state version %u "
				      "(this host reads %u)", buf[4],
				      UVM_SCODEC_SAVE_VERSION);
	if (buf[5] != UVM_SCODEC_SAVE_ENTRY)
		return uvm_scodec_bad(why, whylen, "stream state entry size %u "
				      "(expected %u)", buf[5],
				      UVM_SCODEC_SAVE_ENTRY);
	s->flags = uvm_scodec_get32(buf + 8);
	s->tx_cons = uvm_scodec_get32(buf + 12);
	s->rx_prod = uvm_scodec_get32(buf + 16);
	s->size = uvm_scodec_get32(buf + 20);
	s->count = uvm_scodec_get32(buf + 24);
	if (s->flags & ~UVM_SCODEC_SF_BROKEN)
		return uvm_scodec_bad(why, whylen, "stream state flags 0x%x",
				      s->flags);
	if (s->count > UVM_STREAM_MAX_CONNS)
		return uvm_scodec_bad(why, whylen, "stream state count %u > %u",
				      s->count, UVM_STREAM_MAX_CONNS);
	if (len != UVM_SCODEC_SAVE_HDR +
			   (size_t)s->count * UVM_SCODEC_SAVE_ENTRY)
		return uvm_scodec_bad(why, whylen, "stream state of %zu bytes "
				      "for %u connections", len, s->count);
	return 0;
}

static int uvm_scodec_save_entry(const uint8_t *e, uint8_t max_state,
				 const uint8_t *seen,
				 struct uvm_scodec_conn_state *c, char *why,
				 size_t whylen)
{
	c->conn = uvm_scodec_get32(e);
	c->state = e[4];
	c->flags = e[5];
	c->host_credit = uvm_scodec_get32(e + 8);
	c->guest_credit = uvm_scodec_get32(e + 12);
	if (c->conn < 1 || c->conn > UVM_STREAM_MAX_CONNS)
		return uvm_scodec_bad(why, whylen, "saved conn %u not in 1..%u",
				      c->conn, UVM_STREAM_MAX_CONNS);
	if (seen[c->conn / 8] & (1u << (c->conn % 8)))
		return uvm_scodec_bad(why, whylen, "saved conn %u twice",
				      c->conn);
	if (c->state > max_state)
		return uvm_scodec_bad(why, whylen, "saved conn %u state %u",
				      c->conn, c->state);
	if (c->flags & ~UVM_SCODEC_CF_ALL)
		return uvm_scodec_bad(why, whylen, "saved conn %u flags 0x%x",
				      c->conn, c->flags);
	return 0;
}

int uvm_scodec_save_get(const uint8_t *buf, size_t len, uint8_t max_state,
			struct uvm_scodec_save *s, char *why, size_t whylen)
{
	uint8_t seen[UVM_STREAM_MAX_CONNS / 8 + 1] = { 0 };
	int rc;

	memset(s, 0, offsetof(struct uvm_scodec_save, conn));
	rc = uvm_scodec_save_hdr(buf, len, s, why, whylen);
	for (uint32_t i = 0; rc == 0 && i < s->count; i++) {
		struct uvm_scodec_conn_state *c = &s->conn[i];

		rc = uvm_scodec_save_entry(buf + UVM_SCODEC_SAVE_HDR +
					   (size_t)i * UVM_SCODEC_SAVE_ENTRY,
					   max_state, seen, c, why, whylen);
		if (rc == 0)
			seen[c->conn / 8] |= (uint8_t)(1u << (c->conn % 8));
	}
	if (rc)
		s->count = 0;
	return rc;
}
