/*
 * rdma_buf.c - slot rings, credits, chunking and reassembly of records,
 * and the advertisement and credit messages of the RDMA back end.  Layouts
 * and invariants are in rdma_buf.h; the design is in docs/rdma.md.
 *
 * No verbs here: the back end (rdma.c) feeds this code the immediate data
 * and bytes of each completion and turns its answers into work requests.
 * Advertisements and credits are read through struct wire_cursor and
 * written through struct wire_buf; the chunk header is written with the
 * local store helpers because it goes straight into a registered slot.
 */
#include "rdma_buf.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport.h"

#define IMM_SLOT_SHIFT 16
#define IMM_SEQ_MASK 0xffffu

int rdma_errf(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

static void store_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

const char *rdma_mode_name(enum rdma_mode mode)
{
	switch (mode) {
	case RDMA_MODE_SEND:
		return "SEND";
	case RDMA_MODE_WRITE:
		return "WRITE";
	}
	return "unknown";
}

/* ---- geometry ------------------------------------------------------------ */

int rdma_geom_check(const struct rdma_geom *g, char *err, size_t errlen)
{
	if (g->nr_slots < 1 || g->nr_slots > RDMA_SLOTS_MAX)
		return rdma_errf(err, errlen, -EBADMSG,
			       "rdma ring: %" PRIu32 " slots not in 1..%u",
			       g->nr_slots, RDMA_SLOTS_MAX);
	if (g->slot_size < RDMA_SLOT_MIN || g->slot_size > RDMA_SLOT_MAX ||
	    g->slot_size % WIRE_ALIGN != 0)
		return rdma_errf(err, errlen, -EBADMSG,
			       "rdma ring: slot size %" PRIu32
			       " not a multiple of 8 in %u..%u",
			       g->slot_size, RDMA_SLOT_MIN, RDMA_SLOT_MAX);
	if ((uint64_t)g->nr_slots * g->slot_size > RDMA_RING_MAX)
		return rdma_errf(err, errlen, -EBADMSG,
			       "rdma ring: %" PRIu32 " slots of %" PRIu32
			       " bytes > max %u bytes", g->nr_slots,
			       g->slot_size, RDMA_RING_MAX);
	return 0;
}

uint32_t rdma_chunk_payload_max(uint32_t slot_size)
{
	return slot_size - RDMA_CHUNK_HDR_SIZE;
}

/* ---- advertisement ------------------------------------------------------- */

static int advert_mode_check(const struct rdma_advert *a, char *err,
			     size_t errlen)
{
	enum rdma_mode want = a->chan == 0 ? RDMA_MODE_SEND : RDMA_MODE_WRITE;

	if (a->mode != RDMA_MODE_SEND && a->mode != RDMA_MODE_WRITE)
		return rdma_errf(err, errlen, -EBADMSG,
			       "rdma advertisement: mode %u unknown",
			       (unsigned)a->mode);
	if (a->chan > TP_MAX_BULK)
		return rdma_errf(err, errlen, -EBADMSG,
			       "rdma advertisement: channel %" PRIu32
			       " > max %u", a->chan, TP_MAX_BULK);
	if (a->mode != want)
		return rdma_errf(err, errlen, -EBADMSG,
			       "rdma advertisement: channel %" PRIu32
			       " in mode %s (control is SEND, bulk WRITE)",
			       a->chan, rdma_mode_name(a->mode));
	return 0;
}

static int advert_ring_check(const struct rdma_advert *a, char *err,
			     size_t errlen)
{
	uint64_t bytes = (uint64_t)a->geom.nr_slots * a->geom.slot_size;

	if (a->mode == RDMA_MODE_SEND) {
		if (a->rkey != 0 || a->addr != 0)
			return rdma_errf(err, errlen, -EBADMSG,
				       "rdma advertisement: SEND ring with rkey "
				       "0x%" PRIx32 " addr 0x%" PRIx64
				       " (must be 0)", a->rkey, a->addr);
		return 0;
	}
	if (a->addr == 0)
		return rdma_errf(err, errlen, -EBADMSG,
			       "rdma advertisement: WRITE ring at address 0");
	if (a->addr > UINT64_MAX - bytes)
		return rdma_errf(err, errlen, -EBADMSG,
			       "rdma advertisement: ring at 0x%" PRIx64
			       " + %" PRIu64 " bytes wraps", a->addr, bytes);
	return 0;
}

static int advert_check(const struct rdma_advert *a, char *err, size_t errlen)
{
	int rc = advert_mode_check(a, err, errlen);

	if (rc == 0)
		rc = rdma_geom_check(&a->geom, err, errlen);
	if (rc == 0)
		rc = advert_ring_check(a, err, errlen);
	return rc;
}

int rdma_advert_put(struct wire_buf *b, const struct rdma_advert *a)
{
	if (advert_check(a, NULL, 0) != 0)
		return -EINVAL;
	wire_put_be32(b, RDMA_ADVERT_MAGIC);
	wire_put_be16(b, RDMA_ADVERT_VERSION);
	wire_put_be16(b, (uint16_t)a->mode);
	wire_put_be32(b, a->chan);
	wire_put_be32(b, a->geom.nr_slots);
	wire_put_be32(b, a->geom.slot_size);
	wire_put_be32(b, a->rkey);
	return wire_put_be64(b, a->addr);
}

/* CM private data may be longer than what was sent, padded with zeros. */
static int advert_tail_check(const uint8_t *p, size_t len, char *err,
			     size_t errlen)
{
	size_t i;

	for (i = RDMA_ADVERT_SIZE; i < len; i++)
		if (p[i] != 0)
			return rdma_errf(err, errlen, -EBADMSG,
				       "rdma advertisement: byte %zu after it "
				       "is 0x%02x (must be 0)", i, p[i]);
	return 0;
}

int rdma_advert_decode(const uint8_t *p, size_t len, struct rdma_advert *out,
		       char *err, size_t errlen)
{
	struct wire_cursor c;
	uint32_t magic;
	uint16_t version, mode;

	memset(out, 0, sizeof(*out));
	if (p == NULL || len < RDMA_ADVERT_SIZE)
		return rdma_errf(err, errlen, -EBADMSG,
			       "rdma advertisement: %zu bytes < %u", len,
			       RDMA_ADVERT_SIZE);
	wire_cursor_init(&c, p, RDMA_ADVERT_SIZE);
	wire_get_be32(&c, &magic);
	wire_get_be16(&c, &version);
	wire_get_be16(&c, &mode);
	wire_get_be32(&c, &out->chan);
	wire_get_be32(&c, &out->geom.nr_slots);
	wire_get_be32(&c, &out->geom.slot_size);
	wire_get_be32(&c, &out->rkey);
	if (wire_get_be64(&c, &out->addr) != 0)
		return rdma_errf(err, errlen, -EBADMSG,
			       "rdma advertisement: %s", c.err);
	if (magic != RDMA_ADVERT_MAGIC)
		return rdma_errf(err, errlen, -EBADMSG,
			       "rdma advertisement: magic 0x%08" PRIx32
			       ", expected 0x%08x", magic, RDMA_ADVERT_MAGIC);
	if (version != RDMA_ADVERT_VERSION)
		return rdma_errf(err, errlen, -EPROTONOSUPPORT,
			       "rdma advertisement: version %u not supported "
			       "(this end: %u)", version, RDMA_ADVERT_VERSION);
	out->mode = (enum rdma_mode)mode;
	if (mode != RDMA_MODE_SEND && mode != RDMA_MODE_WRITE)
		return rdma_errf(err, errlen, -EBADMSG,
			       "rdma advertisement: mode %u unknown", mode);
	if (advert_check(out, err, errlen) != 0)
		return -EBADMSG;
	return advert_tail_check(p, len, err, errlen);
}

/* ---- credit ---------------------------------------------------------------- */

int rdma_credit_put(struct wire_buf *b, uint32_t consumed)
{
	wire_put_be32(b, RDMA_CREDIT_MAGIC);
	return wire_put_be32(b, consumed);
}

int rdma_credit_decode(const uint8_t *p, size_t len, uint32_t *consumed,
		       char *err, size_t errlen)
{
	struct wire_cursor c;
	uint32_t magic;

	*consumed = 0;
	if (p == NULL || len != RDMA_CREDIT_SIZE)
		return rdma_errf(err, errlen, -EBADMSG,
			       "rdma credit: %zu bytes, expected %u", len,
			       RDMA_CREDIT_SIZE);
	wire_cursor_init(&c, p, len);
	wire_get_be32(&c, &magic);
	wire_get_be32(&c, consumed);
	if (magic != RDMA_CREDIT_MAGIC) {
		*consumed = 0;
		return rdma_errf(err, errlen, -EBADMSG,
			       "rdma credit: magic 0x%08" PRIx32
			       ", expected 0x%08x", magic, RDMA_CREDIT_MAGIC);
	}
	return 0;
}

/* ---- chunks ---------------------------------------------------------------- */

uint32_t rdma_imm_make(uint32_t slot, uint32_t chunk_seq)
{
	return slot << IMM_SLOT_SHIFT | (chunk_seq & IMM_SEQ_MASK);
}

uint32_t rdma_chunk_count(uint32_t rec_len, uint32_t slot_size)
{
	uint32_t max = rdma_chunk_payload_max(slot_size);

	return rec_len / max + (rec_len % max != 0);
}

uint32_t rdma_chunk_len(uint32_t rec_len, uint32_t off, uint32_t slot_size)
{
	uint32_t max = rdma_chunk_payload_max(slot_size);
	uint32_t left = off < rec_len ? rec_len - off : 0;

	return left < max ? left : max;
}

size_t rdma_chunk_build(uint8_t *slot, uint32_t slot_size, uint32_t chunk_seq,
			uint32_t rec_seq, const uint8_t *rec, uint32_t rec_len,
			uint32_t off)
{
	uint32_t n = rdma_chunk_len(rec_len, off, slot_size);

	store_be32(slot, chunk_seq);
	store_be32(slot + 4, rec_seq);
	store_be32(slot + 8, rec_len);
	store_be32(slot + 12, n);
	memcpy(slot + RDMA_CHUNK_HDR_SIZE, rec + off, n);
	return RDMA_CHUNK_HDR_SIZE + (size_t)n;
}

int rdma_chunk_hdr_decode(const uint8_t *p, size_t len,
			  struct rdma_chunk_hdr *out, char *err, size_t errlen)
{
	struct wire_cursor c;

	memset(out, 0, sizeof(*out));
	if (len < RDMA_CHUNK_HDR_SIZE)
		return rdma_errf(err, errlen, -EBADMSG,
			       "rdma chunk: %zu bytes < %u-byte header", len,
			       RDMA_CHUNK_HDR_SIZE);
	wire_cursor_init(&c, p, RDMA_CHUNK_HDR_SIZE);
	wire_get_be32(&c, &out->chunk_seq);
	wire_get_be32(&c, &out->rec_seq);
	wire_get_be32(&c, &out->rec_len);
	return wire_get_be32(&c, &out->len);
}

/* ---- sender ------------------------------------------------------------------ */

void rdma_tx_init(struct rdma_tx *tx, uint32_t window)
{
	memset(tx, 0, sizeof(*tx));
	tx->window = window;
}

bool rdma_tx_ready(const struct rdma_tx *tx)
{
	return tx->in_flight < tx->window;
}

int rdma_tx_take(struct rdma_tx *tx, uint32_t *slot, uint32_t *chunk_seq)
{
	if (!rdma_tx_ready(tx))
		return -EAGAIN;
	*slot = tx->next_slot;
	*chunk_seq = tx->chunk_seq++;
	tx->next_slot = (tx->next_slot + 1) % tx->window;
	tx->in_flight++;
	return 0;
}

int rdma_tx_credit(struct rdma_tx *tx, uint32_t consumed,
		   char *err, size_t errlen)
{
	uint32_t freed = consumed - tx->credited;

	if (freed > tx->in_flight)
		return rdma_errf(err, errlen, -EBADMSG,
			       "rdma credit: consumed %" PRIu32 " frees %"
			       PRIu32 " chunks, only %" PRIu32
			       " in flight (last consumed %" PRIu32 ")",
			       consumed, freed, tx->in_flight, tx->credited);
	tx->in_flight -= freed;
	tx->credited = consumed;
	return (int)freed;
}

/* ---- receiver ---------------------------------------------------------------- */

int rdma_rx_init(struct rdma_rx *rx, enum rdma_mode mode,
		 const struct rdma_geom *g, uint32_t nr_bufs)
{
	int rc = rdma_geom_check(g, NULL, 0);

	memset(rx, 0, sizeof(*rx));
	if (rc != 0 || nr_bufs < g->nr_slots ||
	    (mode == RDMA_MODE_WRITE && nr_bufs != g->nr_slots))
		return -EINVAL;
	rx->fifo = calloc(g->nr_slots, sizeof(*rx->fifo));
	if (rx->fifo == NULL)
		return -ENOMEM;
	rx->mode = mode;
	rx->geom = *g;
	rx->nr_bufs = nr_bufs;
	rx->batch = (g->nr_slots + 3) / 4;
	return 0;
}

void rdma_rx_fini(struct rdma_rx *rx)
{
	free(rx->fifo);
	rx->fifo = NULL;
	rx->count = 0;
}

/* The buffer the arrival landed in, from imm (WRITE) or the caller (SEND). */
static int rx_slot(const struct rdma_rx *rx, uint32_t imm, uint32_t buf,
		   uint32_t *slot, char *err, size_t errlen)
{
	uint32_t field = imm >> IMM_SLOT_SHIFT;

	if (rx->mode == RDMA_MODE_SEND) {
		if (field != 0)
			return rdma_errf(err, errlen, -EBADMSG,
				       "rdma chunk: immediate 0x%08" PRIx32
				       ": slot field %" PRIu32
				       " must be 0 on a SEND channel", imm, field);
		if (buf >= rx->nr_bufs)
			return rdma_errf(err, errlen, -EBADMSG,
				       "rdma chunk: receive buffer %" PRIu32
				       " out of range (%" PRIu32 " buffers)",
				       buf, rx->nr_bufs);
		*slot = buf;
		return 0;
	}
	if (field >= rx->geom.nr_slots)
		return rdma_errf(err, errlen, -EBADMSG,
			       "rdma chunk: immediate 0x%08" PRIx32 ": slot %"
			       PRIu32 " out of range (%" PRIu32 " slots)",
			       imm, field, rx->geom.nr_slots);
	if (field != rx->next_slot)
		return rdma_errf(err, errlen, -EBADMSG,
			       "rdma chunk: immediate 0x%08" PRIx32 ": slot %"
			       PRIu32 ", expected %" PRIu32, imm, field,
			       rx->next_slot);
	*slot = field;
	return 0;
}

static int rx_arrival_check(const struct rdma_rx *rx, uint32_t imm,
			    uint32_t len, char *err, size_t errlen)
{
	uint32_t seq = imm & IMM_SEQ_MASK;

	if (seq != (rx->arrive_seq & IMM_SEQ_MASK))
		return rdma_errf(err, errlen, -EBADMSG,
			       "rdma chunk: immediate 0x%08" PRIx32
			       ": chunk seq %" PRIu32 ", expected %" PRIu32
			       " (duplicated or skipped chunk)", imm, seq,
			       rx->arrive_seq & IMM_SEQ_MASK);
	if (rx->count >= rx->geom.nr_slots)
		return rdma_errf(err, errlen, -EBADMSG,
			       "rdma chunk: immediate 0x%08" PRIx32
			       ": past the credit window of %" PRIu32
			       " chunks", imm, rx->geom.nr_slots);
	if (len > rx->geom.slot_size)
		return rdma_errf(err, errlen, -EBADMSG,
			       "rdma chunk: %" PRIu32 " bytes in a %" PRIu32
			       "-byte slot", len, rx->geom.slot_size);
	return 0;
}

int rdma_rx_arrive(struct rdma_rx *rx, uint32_t imm, uint32_t buf,
		   uint32_t len, char *err, size_t errlen)
{
	uint32_t slot = 0, tail;
	int rc = rx_slot(rx, imm, buf, &slot, err, errlen);

	if (rc == 0)
		rc = rx_arrival_check(rx, imm, len, err, errlen);
	if (rc != 0)
		return rc;
	tail = (rx->head + rx->count) % rx->geom.nr_slots;
	rx->fifo[tail].slot = slot;
	rx->fifo[tail].len = len;
	rx->count++;
	rx->arrive_seq++;
	if (rx->mode == RDMA_MODE_WRITE)
		rx->next_slot = (rx->next_slot + 1) % rx->geom.nr_slots;
	return 0;
}

int rdma_rx_peek(const struct rdma_rx *rx, struct rdma_rx_ent *out)
{
	if (rx->count == 0)
		return -EAGAIN;
	*out = rx->fifo[rx->head];
	return 0;
}

void rdma_rx_consume(struct rdma_rx *rx)
{
	if (rx->count == 0)
		return;
	rx->head = (rx->head + 1) % rx->geom.nr_slots;
	rx->count--;
	rx->consumed++;
}

bool rdma_rx_credit_due(const struct rdma_rx *rx, uint32_t *value)
{
	*value = rx->consumed;
	return rx->consumed - rx->returned >= rx->batch;
}

void rdma_rx_credit_sent(struct rdma_rx *rx, uint32_t value)
{
	rx->returned = value;
}

/* ---- reassembly ---------------------------------------------------------- */

void rdma_reasm_init(struct rdma_reasm *r, uint32_t slot_size)
{
	memset(r, 0, sizeof(*r));
	r->slot_size = slot_size;
}

void rdma_reasm_fini(struct rdma_reasm *r)
{
	free(r->body);
	r->body = NULL;
	r->rec_len = 0;
	r->got = 0;
}

static int reasm_seq_check(const struct rdma_reasm *r,
			   const struct rdma_chunk_hdr *h,
			   char *err, size_t errlen)
{
	if (h->chunk_seq != r->chunk_seq)
		return rdma_errf(err, errlen, -EBADMSG,
			       "rdma chunk: chunk seq %" PRIu32 ", expected %"
			       PRIu32 " (duplicated or skipped chunk)",
			       h->chunk_seq, r->chunk_seq);
	if (h->rec_seq != r->rec_seq)
		return rdma_errf(err, errlen, -EBADMSG,
			       "rdma chunk %" PRIu32 ": record seq %" PRIu32
			       ", expected %" PRIu32, h->chunk_seq, h->rec_seq,
			       r->rec_seq);
	return 0;
}

static int reasm_len_check(const struct rdma_reasm *r,
			   const struct rdma_chunk_hdr *h, size_t len,
			   char *err, size_t errlen)
{
	uint32_t want;

	if (h->rec_len > RDMA_REC_MAX)
		return rdma_errf(err, errlen, -E2BIG,
			       "rdma chunk %" PRIu32 ": record length %" PRIu32
			       " > max %u", h->chunk_seq, h->rec_len,
			       (unsigned)RDMA_REC_MAX);
	if (h->rec_len < WIRE_RECORD_HEADER_SIZE || h->rec_len % WIRE_ALIGN)
		return rdma_errf(err, errlen, -EBADMSG,
			       "rdma chunk %" PRIu32 ": record length %" PRIu32
			       " is not a multiple of 8 of at least %u",
			       h->chunk_seq, h->rec_len,
			       WIRE_RECORD_HEADER_SIZE);
	if (r->rec_len != 0 && h->rec_len != r->rec_len)
		return rdma_errf(err, errlen, -EBADMSG,
			       "rdma chunk %" PRIu32 ": record length %" PRIu32
			       " changed from %" PRIu32 " mid-record",
			       h->chunk_seq, h->rec_len, r->rec_len);
	want = rdma_chunk_len(h->rec_len, r->got, r->slot_size);
	if (h->len != want)
		return rdma_errf(err, errlen, -EBADMSG,
			       "rdma chunk %" PRIu32 ": length %" PRIu32
			       ", expected %" PRIu32, h->chunk_seq, h->len, want);
	if (h->len > len - RDMA_CHUNK_HDR_SIZE)
		return rdma_errf(err, errlen, -EBADMSG,
			       "rdma chunk %" PRIu32 ": length %" PRIu32
			       " past the %zu bytes received", h->chunk_seq,
			       h->len, len);
	return 0;
}

/*
 * First chunk: the record header is copied before it is checked, so the
 * check and the record handed on see the same bytes even if the peer
 * rewrites the slot meanwhile.
 */
static int reasm_begin(struct rdma_reasm *r, const struct rdma_chunk_hdr *h,
		       const uint8_t *payload,
		       int (*check)(void *, const uint8_t *, uint32_t,
				    char *, size_t),
		       void *arg, char *err, size_t errlen)
{
	uint32_t body_len = h->rec_len - WIRE_RECORD_HEADER_SIZE;
	int rc;

	memcpy(r->hdr, payload, WIRE_RECORD_HEADER_SIZE);
	if (check) {
		rc = check(arg, r->hdr, h->rec_len, err, errlen);
		if (rc != 0)
			return rc;
	}
	r->body = malloc(body_len ? body_len : 1);
	if (r->body == NULL)
		return rdma_errf(err, errlen, -ENOMEM,
			       "rdma chunk %" PRIu32 ": no memory for a %"
			       PRIu32 "-byte record", h->chunk_seq, h->rec_len);
	r->rec_len = h->rec_len;
	r->got = WIRE_RECORD_HEADER_SIZE;
	memcpy(r->body, payload + WIRE_RECORD_HEADER_SIZE,
	       h->len - WIRE_RECORD_HEADER_SIZE);
	r->got += h->len - WIRE_RECORD_HEADER_SIZE;
	return 0;
}

static void reasm_finish(struct rdma_reasm *r, struct rdma_record *out)
{
	memcpy(out->hdr, r->hdr, WIRE_RECORD_HEADER_SIZE);
	out->body = r->body;
	out->body_len = r->rec_len - WIRE_RECORD_HEADER_SIZE;
	r->body = NULL;
	r->rec_len = 0;
	r->got = 0;
	r->rec_seq++;
}

int rdma_reasm_chunk(struct rdma_reasm *r, const uint8_t *chunk, size_t len,
		     int (*check)(void *arg,
				  const uint8_t hdr[WIRE_RECORD_HEADER_SIZE],
				  uint32_t rec_len, char *err, size_t errlen),
		     void *arg, struct rdma_record *out,
		     char *err, size_t errlen)
{
	const uint8_t *payload = chunk + RDMA_CHUNK_HDR_SIZE;
	struct rdma_chunk_hdr h;
	int rc;

	rc = rdma_chunk_hdr_decode(chunk, len, &h, err, errlen);
	if (rc == 0)
		rc = reasm_seq_check(r, &h, err, errlen);
	if (rc == 0)
		rc = reasm_len_check(r, &h, len, err, errlen);
	if (rc != 0)
		return rc;
	if (r->rec_len == 0) {
		rc = reasm_begin(r, &h, payload, check, arg, err, errlen);
		if (rc != 0)
			return rc;
	} else {
		memcpy(r->body + (r->got - WIRE_RECORD_HEADER_SIZE), payload,
		       h.len);
		r->got += h.len;
	}
	r->chunk_seq++;
	if (r->got < r->rec_len)
		return 0;
	reasm_finish(r, out);
	return 1;
}
