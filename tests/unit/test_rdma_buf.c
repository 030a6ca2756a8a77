/*
 * test_rdma_buf.c - cmocka tests for the device-independent half of the
 * RDMA back end (transport/rdma_buf): ring geometry, advertisement and
 * credit messages, the chunk mapping, credits and reassembly.
 *
 * A small simulator stands in for two queue pairs: the sender takes slots
 * by credit and writes chunks into the receiver's ring (WRITE mode) or into
 * its next posted receive buffer (SEND mode); the receiver reassembles,
 * consumes and returns credits through encoded credit messages.  It checks
 * on every write that the slot holds no unconsumed chunk and that the
 * sender never has more than its window in flight, with consumption order
 * and credit timing drawn from a seeded generator (seed printed; set
 * RDMA_BUF_SEED to repeat one).  Refusals are checked one rule at a time,
 * each with the errno and the quoted value, and each followed by a valid
 * input to show the refusal left the state as it was.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport.h"
#include "rdma_buf.h"

static uint64_t seed = 1;

/* ---- helpers ------------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

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

static void be16_store(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* A framed record of rec_len bytes with a recognisable pattern. */
static uint8_t *make_record(uint32_t rec_len, uint32_t tag)
{
	uint8_t *rec = malloc(rec_len);

	assert_non_null(rec);
	for (uint32_t i = 0; i < rec_len; i++)
		rec[i] = (uint8_t)(i * 131u + tag * 7u + (i >> 12));
	/* the length field of the record header, for check callbacks */
	be32_store(rec + 16, rec_len - WIRE_RECORD_HEADER_SIZE);
	return rec;
}

static void expect_err(int rc, int want, const char *err, const char *needle)
{
	assert_int_equal(rc, want);
	if (strstr(err, needle) == NULL)
		fail_msg("message [%s] lacks [%s]", err, needle);
}

/* ---- simulator: one direction of one queue pair --------------------------- */

struct sim {
	enum rdma_mode mode;
	struct rdma_geom g;        /* the receiver's ring */
	uint32_t nr_bufs;
	uint8_t *mem;              /* slots (WRITE) or receive buffers (SEND) */
	uint32_t *posted;          /* SEND: fifo of posted buffers */
	uint32_t post_head, post_count;
	bool *rx_busy;             /* buffer holds an unconsumed chunk */
	bool *tx_busy;             /* sender's view: slot's credit not back */
	uint32_t *tx_fifo;         /* slots in flight, oldest first */
	uint32_t tx_head, tx_count;
	struct rdma_tx tx;
	struct rdma_rx rx;
	struct rdma_reasm ra;
	uint32_t rec_seq;
	uint64_t rng;
	unsigned consume_pct;      /* chance the receiver consumes per step */
	uint64_t credits_msgs, chunks;
	/* the record delivered last */
	struct rdma_record out;
	bool have_out;
};

static void sim_init(struct sim *s, enum rdma_mode mode, uint32_t nr_slots,
		     uint32_t slot_size, unsigned consume_pct)
{
	memset(s, 0, sizeof(*s));
	s->mode = mode;
	s->g.nr_slots = nr_slots;
	s->g.slot_size = slot_size;
	s->nr_bufs = mode == RDMA_MODE_SEND ? nr_slots + RDMA_MSG_RESERVE
					    : nr_slots;
	s->mem = calloc(s->nr_bufs, slot_size);
	s->posted = calloc(s->nr_bufs, sizeof(uint32_t));
	s->rx_busy = calloc(s->nr_bufs, sizeof(bool));
	s->tx_busy = calloc(nr_slots, sizeof(bool));
	s->tx_fifo = calloc(nr_slots, sizeof(uint32_t));
	assert_true(s->mem && s->posted && s->rx_busy && s->tx_busy &&
		    s->tx_fifo);
	for (uint32_t i = 0; i < s->nr_bufs; i++)
		s->posted[i] = i;
	s->post_count = s->nr_bufs;
	rdma_tx_init(&s->tx, nr_slots);
	assert_int_equal(rdma_rx_init(&s->rx, mode, &s->g, s->nr_bufs), 0);
	rdma_reasm_init(&s->ra, slot_size);
	s->rng = (seed * 2654435761u + nr_slots + slot_size) | 1;
	s->consume_pct = consume_pct;
}

static void sim_fini(struct sim *s)
{
	rdma_reasm_fini(&s->ra);
	rdma_rx_fini(&s->rx);
	free(s->mem);
	free(s->posted);
	free(s->rx_busy);
	free(s->tx_busy);
	free(s->tx_fifo);
	if (s->have_out)
		free(s->out.body);
}

/* Credits go back through an encoded message, as on the wire. */
static void sim_credit(struct sim *s)
{
	struct wire_buf b;
	uint32_t value, consumed;
	char err[WIRE_ERR_MAX];
	int freed;

	if (!rdma_rx_credit_due(&s->rx, &value))
		return;
	wire_buf_init(&b);
	assert_int_equal(rdma_credit_put(&b, value), 0);
	assert_int_equal(b.len, RDMA_CREDIT_SIZE);
	assert_int_equal(rdma_credit_decode(b.data, b.len, &consumed, err,
					    sizeof(err)), 0);
	wire_buf_fini(&b);
	assert_int_equal(consumed, value);
	freed = rdma_tx_credit(&s->tx, consumed, err, sizeof(err));
	assert_true(freed >= 0);
	rdma_rx_credit_sent(&s->rx, value);
	s->credits_msgs++;
	for (int i = 0; i < freed; i++) {
		assert_true(s->tx_count > 0);
		s->tx_busy[s->tx_fifo[s->tx_head]] = false;
		s->tx_head = (s->tx_head + 1) % s->g.nr_slots;
		s->tx_count--;
	}
}

/* Receiver: consume one chunk; returns 1 if it completed a record. */
static int sim_consume(struct sim *s)
{
	struct rdma_rx_ent ent;
	char err[WIRE_ERR_MAX];
	int rc;

	if (rdma_rx_peek(&s->rx, &ent) != 0)
		return 0;
	assert_true(s->rx_busy[ent.slot]);
	if (s->have_out) {
		free(s->out.body);
		s->have_out = false;
	}
	rc = rdma_reasm_chunk(&s->ra, s->mem + (size_t)ent.slot * s->g.slot_size,
			      ent.len, NULL, NULL, &s->out, err, sizeof(err));
	if (rc < 0)
		fail_msg("reassembly refused a valid chunk: %s", err);
	rdma_rx_consume(&s->rx);
	s->rx_busy[ent.slot] = false;
	if (s->mode == RDMA_MODE_SEND) {
		uint32_t tail = (s->post_head + s->post_count) % s->nr_bufs;

		s->posted[tail] = ent.slot;
		s->post_count++;
	}
	s->have_out = rc == 1;
	return rc;
}

/* Where the chunk lands: the slot (WRITE) or the next posted buffer. */
static uint32_t sim_landing(struct sim *s, uint32_t slot)
{
	uint32_t buf;

	if (s->mode == RDMA_MODE_WRITE)
		return slot;
	assert_true(s->post_count > 0); /* would be an RNR on a real QP */
	buf = s->posted[s->post_head];
	s->post_head = (s->post_head + 1) % s->nr_bufs;
	s->post_count--;
	return buf;
}

static void sim_write_chunk(struct sim *s, const uint8_t *rec,
			    uint32_t rec_len, uint32_t *off)
{
	uint32_t slot = 0, seq = 0, buf, imm, tail;
	char err[WIRE_ERR_MAX];
	size_t n;

	assert_int_equal(rdma_tx_take(&s->tx, &slot, &seq), 0);
	assert_true(s->tx.in_flight <= s->tx.window);
	assert_true(slot < s->g.nr_slots);
	assert_false(s->tx_busy[slot]);      /* reused before its credit */
	s->tx_busy[slot] = true;
	tail = (s->tx_head + s->tx_count) % s->g.nr_slots;
	s->tx_fifo[tail] = slot;
	s->tx_count++;
	buf = sim_landing(s, slot);
	assert_false(s->rx_busy[buf]);       /* would overwrite live data */
	n = rdma_chunk_build(s->mem + (size_t)buf * s->g.slot_size,
			     s->g.slot_size, seq, s->rec_seq, rec, rec_len, *off);
	assert_true(n <= s->g.slot_size);
	*off += (uint32_t)(n - RDMA_CHUNK_HDR_SIZE);
	imm = rdma_imm_make(s->mode == RDMA_MODE_WRITE ? slot : 0, seq);
	if (rdma_rx_arrive(&s->rx, imm, buf, s->mode == RDMA_MODE_WRITE ?
			   s->g.slot_size : (uint32_t)n, err, sizeof(err)))
		fail_msg("arrival refused: %s", err);
	s->rx_busy[buf] = true;
	s->chunks++;
}

/*
 * Sends one record and runs the receiver at random until the record is
 * delivered; returns the delivered record's body (the sim keeps it).
 */
static void sim_pipe(struct sim *s, const uint8_t *rec, uint32_t rec_len)
{
	uint32_t off = 0;
	bool done = false;

	while (off < rec_len) {
		while (!rdma_tx_ready(&s->tx)) {
			uint64_t msgs = s->credits_msgs;
			uint32_t left = s->rx.count;

			done |= sim_consume(s) == 1;
			sim_credit(s);
			if (left == 0 && msgs == s->credits_msgs)
				fail_msg("stall: window of %u full, nothing to "
					 "consume, no credit due", s->g.nr_slots);
		}
		sim_write_chunk(s, rec, rec_len, &off);
		if (rng_next(&s->rng) % 100 < s->consume_pct) {
			done |= sim_consume(s) == 1;
			if (rng_next(&s->rng) % 2)
				sim_credit(s);
		}
	}
	s->rec_seq++;
	while (!done && s->rx.count > 0)
		done |= sim_consume(s) == 1;
	sim_credit(s);
	assert_true(done);
	assert_true(s->have_out);
	assert_int_equal(s->out.body_len, rec_len - WIRE_RECORD_HEADER_SIZE);
	assert_memory_equal(s->out.hdr, rec, WIRE_RECORD_HEADER_SIZE);
	assert_memory_equal(s->out.body, rec + WIRE_RECORD_HEADER_SIZE,
			    s->out.body_len);
}

static void pipe_sizes(enum rdma_mode mode, uint32_t nr_slots,
		       uint32_t slot_size, const uint32_t *lens, size_t n)
{
	struct sim s;

	sim_init(&s, mode, nr_slots, slot_size, 40);
	for (size_t i = 0; i < n; i++) {
		uint8_t *rec = make_record(lens[i], (uint32_t)i);
		uint64_t before = s.chunks;

		sim_pipe(&s, rec, lens[i]);
		assert_int_equal(s.chunks - before,
				 rdma_chunk_count(lens[i], slot_size));
		free(rec);
	}
	sim_fini(&s);
}

/* Record lengths around each of the first chunk boundaries, and the max. */
static size_t boundary_lens(uint32_t slot_size, uint32_t *lens, size_t cap)
{
	uint32_t max = rdma_chunk_payload_max(slot_size);
	size_t n = 0;

	lens[n++] = WIRE_RECORD_HEADER_SIZE;
	lens[n++] = WIRE_RECORD_HEADER_SIZE + 8;
	for (uint32_t k = 1; k <= 3 && n + 3 <= cap; k++) {
		uint32_t edge = (k * max) & ~7u;

		if (edge - 8 >= WIRE_RECORD_HEADER_SIZE)
			lens[n++] = edge - 8;
		if (edge >= WIRE_RECORD_HEADER_SIZE)
			lens[n++] = edge;
		lens[n++] = edge + 8;
	}
	lens[n++] = RDMA_REC_MAX - 8;
	lens[n++] = RDMA_REC_MAX;
	return n;
}

/* ---- geometry -------------------------------------------------------------- */

static void test_geom_limits(void **state)
{
	struct rdma_geom ok[] = {
		{ RDMA_CTRL_SLOTS, RDMA_CTRL_SLOT_SIZE },
		{ RDMA_BULK_SLOTS, RDMA_BULK_SLOT_SIZE },
		{ 1, RDMA_SLOT_MIN }, { RDMA_SLOTS_MAX, 64 << 10 },
		{ 64, RDMA_SLOT_MAX },
	};
	struct { struct rdma_geom g; const char *needle; } bad[] = {
		{ { 0, 4096 }, "0 slots" },
		{ { RDMA_SLOTS_MAX + 1, 4096 }, "1025 slots" },
		{ { 4, 56 }, "slot size 56" },
		{ { 4, 68 }, "slot size 68" },
		{ { 4, RDMA_SLOT_MAX + 8 }, "slot size 1048584" },
		{ { 65, RDMA_SLOT_MAX }, "65 slots of 1048576" },
	};
	char err[WIRE_ERR_MAX];

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		assert_int_equal(rdma_geom_check(&ok[i], err, sizeof(err)), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_err(rdma_geom_check(&bad[i].g, err, sizeof(err)),
			   -EBADMSG, err, bad[i].needle);
	assert_int_equal(rdma_chunk_payload_max(RDMA_BULK_SLOT_SIZE),
			 RDMA_BULK_SLOT_SIZE - RDMA_CHUNK_HDR_SIZE);
	assert_string_equal(rdma_mode_name(RDMA_MODE_SEND), "SEND");
	assert_string_equal(rdma_mode_name(RDMA_MODE_WRITE), "WRITE");
	assert_string_equal(rdma_mode_name((enum rdma_mode)9), "unknown");
}

/* ---- advertisement ---------------------------------------------------------- */

static const struct rdma_advert adv_write = {
	RDMA_MODE_WRITE, 3, { RDMA_BULK_SLOTS, RDMA_BULK_SLOT_SIZE },
	0x1234abcd, 0x00007f0012340000ULL,
};

/* The advertisement as the spec lays it out, written independently. */
static void advert_bytes(uint8_t out[RDMA_ADVERT_SIZE], uint32_t magic,
			 uint16_t version, uint16_t mode, uint32_t chan,
			 uint32_t nr_slots, uint32_t slot_size, uint32_t rkey,
			 uint64_t addr)
{
	be32_store(out, magic);
	be16_store(out + 4, version);
	be16_store(out + 6, mode);
	be32_store(out + 8, chan);
	be32_store(out + 12, nr_slots);
	be32_store(out + 16, slot_size);
	be32_store(out + 20, rkey);
	be64_store(out + 24, addr);
}

static void test_advert_roundtrip(void **state)
{
	struct rdma_advert ctl = { RDMA_MODE_SEND, 0,
				   { RDMA_CTRL_SLOTS, RDMA_CTRL_SLOT_SIZE }, 0, 0 };
	const struct rdma_advert *in[] = { &ctl, &adv_write };
	uint8_t spec[RDMA_ADVERT_SIZE], padded[56] = { 0 };
	struct rdma_advert out;
	char err[WIRE_ERR_MAX];
	struct wire_buf b;

	(void)state;
	for (size_t i = 0; i < 2; i++) {
		wire_buf_init(&b);
		assert_int_equal(rdma_advert_put(&b, in[i]), 0);
		assert_int_equal(b.len, RDMA_ADVERT_SIZE);
		assert_int_equal(rdma_advert_decode(b.data, b.len, &out, err,
						    sizeof(err)), 0);
		assert_int_equal(out.mode, in[i]->mode);
		assert_int_equal(out.chan, in[i]->chan);
		assert_int_equal(out.geom.nr_slots, in[i]->geom.nr_slots);
		assert_int_equal(out.geom.slot_size, in[i]->geom.slot_size);
		assert_int_equal(out.rkey, in[i]->rkey);
		assert_true(out.addr == in[i]->addr);
		/* CM pads private data with zeros */
		memcpy(padded, b.data, b.len);
		assert_int_equal(rdma_advert_decode(padded, sizeof(padded),
						    &out, err, sizeof(err)), 0);
		wire_buf_fini(&b);
	}
	advert_bytes(spec, RDMA_ADVERT_MAGIC, 1, RDMA_MODE_WRITE, 3,
		     RDMA_BULK_SLOTS, RDMA_BULK_SLOT_SIZE, 0x1234abcd,
		     0x00007f0012340000ULL);
	wire_buf_init(&b);
	rdma_advert_put(&b, &adv_write);
	assert_memory_equal(b.data, spec, RDMA_ADVERT_SIZE);
	wire_buf_fini(&b);
}

struct bad_advert {
	uint32_t magic;
	uint16_t version, mode;
	uint32_t chan, nr_slots, slot_size, rkey;
	uint64_t addr;
	int rc;
	const char *needle;
};

static void test_advert_refused(void **state)
{
	const uint32_t M = RDMA_ADVERT_MAGIC, S = RDMA_BULK_SLOT_SIZE;
	const uint64_t A = 0x10000;
	struct bad_advert bad[] = {
		{ 0x54524145, 1, 2, 1, 32, S, 1, A, -EBADMSG, "magic 0x54524145" },
		{ M, 2, 2, 1, 32, S, 1, A, -EPROTONOSUPPORT, "version 2" },
		{ M, 0, 2, 1, 32, S, 1, A, -EPROTONOSUPPORT, "version 0" },
		{ M, 1, 0, 1, 32, S, 1, A, -EBADMSG, "mode 0" },
		{ M, 1, 3, 1, 32, S, 1, A, -EBADMSG, "mode 3" },
		{ M, 1, 2, 17, 32, S, 1, A, -EBADMSG, "channel 17" },
		{ M, 1, 2, 0, 32, S, 1, A, -EBADMSG, "channel 0 in mode WRITE" },
		{ M, 1, 1, 2, 32, S, 0, 0, -EBADMSG, "channel 2 in mode SEND" },
		{ M, 1, 2, 1, 0, S, 1, A, -EBADMSG, "0 slots" },
		{ M, 1, 2, 1, 1025, S, 1, A, -EBADMSG, "1025 slots" },
		{ M, 1, 2, 1, 4, 63, 1, A, -EBADMSG, "slot size 63" },
		{ M, 1, 2, 1, 4, 4100, 1, A, -EBADMSG, "slot size 4100" },
		{ M, 1, 2, 1, 4, 1u << 21, 1, A, -EBADMSG, "slot size 2097152" },
		{ M, 1, 2, 1, 1024, 1u << 17, 1, A, -EBADMSG, "1024 slots of" },
		{ M, 1, 1, 0, 16, 4096, 7, 0, -EBADMSG, "rkey 0x7" },
		{ M, 1, 1, 0, 16, 4096, 0, 8, -EBADMSG, "addr 0x8" },
		{ M, 1, 2, 1, 32, S, 1, 0, -EBADMSG, "address 0" },
		{ M, 1, 2, 1, 32, S, 1, UINT64_MAX - 100, -EBADMSG, "wraps" },
	};
	uint8_t p[RDMA_ADVERT_SIZE + 8];
	struct rdma_advert out;
	char err[WIRE_ERR_MAX];
	struct wire_buf b;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct bad_advert *x = &bad[i];
		int rc;

		advert_bytes(p, x->magic, x->version, x->mode, x->chan,
			     x->nr_slots, x->slot_size, x->rkey, x->addr);
		rc = rdma_advert_decode(p, RDMA_ADVERT_SIZE, &out, err,
					sizeof(err));
		expect_err(rc, x->rc, err, x->needle);
		/* the encoder refuses what the decoder refuses */
		if (x->magic == M && x->version == 1 && x->mode >= 1 &&
		    x->mode <= 2) {
			struct rdma_advert in = {
				(enum rdma_mode)x->mode, x->chan,
				{ x->nr_slots, x->slot_size }, x->rkey, x->addr,
			};

			wire_buf_init(&b);
			assert_int_equal(rdma_advert_put(&b, &in), -EINVAL);
			wire_buf_fini(&b);
		}
	}
	/* every truncation */
	advert_bytes(p, M, 1, 2, 1, 32, S, 1, A);
	for (size_t len = 0; len < RDMA_ADVERT_SIZE; len++)
		expect_err(rdma_advert_decode(p, len, &out, err, sizeof(err)),
			   -EBADMSG, err, "bytes <");
	expect_err(rdma_advert_decode(NULL, 32, &out, err, sizeof(err)),
		   -EBADMSG, err, "bytes <");
	/* nonzero bytes after it */
	memset(p + RDMA_ADVERT_SIZE, 0, 8);
	assert_int_equal(rdma_advert_decode(p, sizeof(p), &out, err,
					    sizeof(err)), 0);
	p[RDMA_ADVERT_SIZE + 5] = 0x40;
	expect_err(rdma_advert_decode(p, sizeof(p), &out, err, sizeof(err)),
		   -EBADMSG, err, "byte 37 after it is 0x40");
}

/* ---- credit messages -------------------------------------------------------- */

static void test_credit_message(void **state)
{
	uint8_t p[12] = { 0x54, 0x52, 0x43, 0x52, 0xff, 0xff, 0xff, 0xfe };
	uint32_t consumed;
	char err[WIRE_ERR_MAX];
	struct wire_buf b;

	(void)state;
	assert_int_equal(rdma_credit_decode(p, 8, &consumed, err,
					    sizeof(err)), 0);
	assert_int_equal(consumed, 0xfffffffeu);
	wire_buf_init(&b);
	rdma_credit_put(&b, 0xfffffffeu);
	assert_memory_equal(b.data, p, 8);
	wire_buf_fini(&b);
	expect_err(rdma_credit_decode(p, 7, &consumed, err, sizeof(err)),
		   -EBADMSG, err, "7 bytes, expected 8");
	expect_err(rdma_credit_decode(p, 12, &consumed, err, sizeof(err)),
		   -EBADMSG, err, "12 bytes, expected 8");
	expect_err(rdma_credit_decode(NULL, 8, &consumed, err, sizeof(err)),
		   -EBADMSG, err, "expected 8");
	p[3] = 0x53;
	expect_err(rdma_credit_decode(p, 8, &consumed, err, sizeof(err)),
		   -EBADMSG, err, "magic 0x54524353");
	assert_int_equal(consumed, 0);
}

/* ---- sender credits ----------------------------------------------------------- */

static void test_tx_window(void **state)
{
	const uint32_t windows[] = { 1, 2, 3, 16, RDMA_SLOTS_MAX };
	char err[WIRE_ERR_MAX];

	(void)state;
	for (size_t w = 0; w < sizeof(windows) / sizeof(windows[0]); w++) {
		struct rdma_tx tx;
		uint32_t slot = 0, seq = 0;

		rdma_tx_init(&tx, windows[w]);
		for (uint32_t i = 0; i < windows[w]; i++) {
			assert_int_equal(rdma_tx_take(&tx, &slot, &seq), 0);
			assert_int_equal(slot, i);
			assert_int_equal(seq, i);
		}
		assert_false(rdma_tx_ready(&tx));
		assert_int_equal(rdma_tx_take(&tx, &slot, &seq), -EAGAIN);
		assert_int_equal(tx.in_flight, windows[w]);
		/* more credit than in flight */
		expect_err(rdma_tx_credit(&tx, windows[w] + 1, err,
					  sizeof(err)), -EBADMSG, err,
			   "only");
		assert_int_equal(tx.in_flight, windows[w]);
		/* a stale (backwards) credit is a huge delta: refused */
		assert_int_equal(rdma_tx_credit(&tx, 1, err, sizeof(err)), 1);
		expect_err(rdma_tx_credit(&tx, 0, err, sizeof(err)),
			   -EBADMSG, err, "consumed 0 frees 4294967295");
		assert_int_equal(rdma_tx_credit(&tx, windows[w], err,
						sizeof(err)),
				 (int)windows[w] - 1);
		assert_int_equal(tx.in_flight, 0);
		/* the ring goes on where it stopped */
		assert_int_equal(rdma_tx_take(&tx, &slot, &seq), 0);
		assert_int_equal(slot, 0);
		assert_int_equal(seq, windows[w]);
	}
}

static void test_tx_credit_wraps(void **state)
{
	struct rdma_tx tx;
	uint32_t slot = 0, seq = 0;
	char err[WIRE_ERR_MAX];

	(void)state;
	rdma_tx_init(&tx, 8);
	tx.credited = UINT32_MAX - 2;
	tx.chunk_seq = UINT32_MAX - 2;
	for (int i = 0; i < 6; i++)
		assert_int_equal(rdma_tx_take(&tx, &slot, &seq), 0);
	assert_int_equal(seq, 2); /* wrapped */
	assert_int_equal(rdma_tx_credit(&tx, 1, err, sizeof(err)), 4);
	assert_int_equal(tx.in_flight, 2);
	assert_int_equal(rdma_tx_credit(&tx, 3, err, sizeof(err)), 2);
	expect_err(rdma_tx_credit(&tx, 4, err, sizeof(err)), -EBADMSG, err,
		   "frees 1 chunks, only 0 in flight");
}

/* Random interleavings: no slot reused before its credit, window kept. */
static void test_slot_reuse_model(void **state)
{
	const uint32_t windows[] = { 1, 2, 3, 5, 16, 32 };
	const uint32_t lens[] = { 32, 40, 48, 96, 200, 1024, 4096 };
	const enum rdma_mode modes[] = { RDMA_MODE_WRITE, RDMA_MODE_SEND };

	(void)state;
	for (size_t m = 0; m < 2; m++) {
		for (size_t w = 0; w < sizeof(windows) / sizeof(windows[0]); w++) {
			struct sim s;

			sim_init(&s, modes[m], windows[w], 64,
				 (unsigned)(10 + 20 * w));
			for (int i = 0; i < 400; i++) {
				uint32_t len = lens[rng_next(&s.rng) % 7];
				uint8_t *rec = make_record(len, (uint32_t)i);

				sim_pipe(&s, rec, len);
				free(rec);
			}
			assert_true(s.credits_msgs > 0);
			sim_fini(&s);
		}
	}
}

/* ---- chunk mapping ---------------------------------------------------------- */

static void test_chunk_math(void **state)
{
	const uint32_t slots[] = { 64, 72, 4096, RDMA_CTRL_SLOT_SIZE,
				   RDMA_BULK_SLOT_SIZE, RDMA_SLOT_MAX };

	(void)state;
	for (size_t i = 0; i < sizeof(slots) / sizeof(slots[0]); i++) {
		uint32_t lens[16];
		size_t n = boundary_lens(slots[i], lens, 16);

		for (size_t j = 0; j < n; j++) {
			uint32_t off = 0, count = 0, max;

			max = rdma_chunk_payload_max(slots[i]);
			while (off < lens[j]) {
				uint32_t c = rdma_chunk_len(lens[j], off, slots[i]);

				assert_true(c > 0 && c <= max);
				if (off + c < lens[j])
					assert_int_equal(c, max);
				off += c;
				count++;
			}
			assert_int_equal(off, lens[j]);
			assert_int_equal(count,
					 rdma_chunk_count(lens[j], slots[i]));
		}
	}
	/* the largest record in this build's bulk slots */
	assert_int_equal(RDMA_REC_MAX, 32 + 4202504);
	assert_int_equal(rdma_chunk_count(RDMA_REC_MAX, RDMA_BULK_SLOT_SIZE),
			 65);
	assert_int_equal(rdma_chunk_len(100, 200, 64), 0);
}

static void test_chunk_bytes(void **state)
{
	uint8_t rec[100], slot[64];
	size_t n;

	(void)state;
	for (int i = 0; i < 100; i++)
		rec[i] = (uint8_t)i;
	n = rdma_chunk_build(slot, 64, 0x01020304, 0x0a0b0c0d, rec, 96, 48);
	assert_int_equal(n, 16 + 48);
	assert_memory_equal(slot, "\x01\x02\x03\x04\x0a\x0b\x0c\x0d"
			    "\x00\x00\x00\x60\x00\x00\x00\x30", 16);
	assert_memory_equal(slot + 16, rec + 48, 48);
	assert_int_equal(rdma_imm_make(5, 0x12345), 0x00052345u);
}

static void test_roundtrip_small_slots(void **state)
{
	uint32_t lens[16];
	size_t n;

	(void)state;
	/* slot 64: 48 payload bytes, so the max record is 87,553 chunks */
	n = boundary_lens(64, lens, 16);
	pipe_sizes(RDMA_MODE_WRITE, 4, 64, lens, n);
	pipe_sizes(RDMA_MODE_SEND, 3, 64, lens, n);
	n = boundary_lens(4096, lens, 16);
	pipe_sizes(RDMA_MODE_WRITE, 1, 4096, lens, n);
}

static void test_roundtrip_build_geometry(void **state)
{
	uint32_t lens[16];
	size_t n;

	(void)state;
	n = boundary_lens(RDMA_BULK_SLOT_SIZE, lens, 16);
	pipe_sizes(RDMA_MODE_WRITE, RDMA_BULK_SLOTS, RDMA_BULK_SLOT_SIZE,
		   lens, n);
	n = boundary_lens(RDMA_CTRL_SLOT_SIZE, lens, 16);
	pipe_sizes(RDMA_MODE_SEND, RDMA_CTRL_SLOTS, RDMA_CTRL_SLOT_SIZE,
		   lens, n);
}

/* Every record length from 32 to 1024 in 8s, through 64-byte slots. */
static void test_roundtrip_every_small_size(void **state)
{
	uint32_t lens[125];
	size_t n = 0;

	(void)state;
	for (uint32_t len = 32; len <= 1024; len += 8)
		lens[n++] = len;
	pipe_sizes(RDMA_MODE_WRITE, 2, 64, lens, n);
	pipe_sizes(RDMA_MODE_SEND, 2, 64, lens, n);
}

/* ---- arrivals refused ----------------------------------------------------- */

static void rx_setup(struct rdma_rx *rx, enum rdma_mode mode)
{
	struct rdma_geom g = { 4, 128 };

	assert_int_equal(rdma_rx_init(rx, mode, &g, mode == RDMA_MODE_SEND ?
				      4 + RDMA_MSG_RESERVE : 4), 0);
}

static void test_rx_init_refused(void **state)
{
	struct rdma_geom bad = { 0, 128 }, g = { 4, 128 };
	struct rdma_rx rx;

	(void)state;
	assert_int_equal(rdma_rx_init(&rx, RDMA_MODE_WRITE, &bad, 0), -EINVAL);
	assert_int_equal(rdma_rx_init(&rx, RDMA_MODE_WRITE, &g, 5), -EINVAL);
	assert_int_equal(rdma_rx_init(&rx, RDMA_MODE_SEND, &g, 3), -EINVAL);
	assert_int_equal(rdma_rx_init(&rx, RDMA_MODE_SEND, &g, 12), 0);
	assert_int_equal(rx.batch, 1);
	rdma_rx_fini(&rx);
}

static void test_imm_refused_write(void **state)
{
	struct rdma_rx rx;
	struct rdma_rx_ent ent;
	char err[WIRE_ERR_MAX];

	(void)state;
	rx_setup(&rx, RDMA_MODE_WRITE);
	expect_err(rdma_rx_arrive(&rx, rdma_imm_make(4, 0), 0, 128, err,
				  sizeof(err)), -EBADMSG, err,
		   "slot 4 out of range (4 slots)");
	expect_err(rdma_rx_arrive(&rx, 0xffff0000u, 0, 128, err, sizeof(err)),
		   -EBADMSG, err, "slot 65535 out of range");
	expect_err(rdma_rx_arrive(&rx, rdma_imm_make(1, 0), 0, 128, err,
				  sizeof(err)), -EBADMSG, err,
		   "slot 1, expected 0");
	expect_err(rdma_rx_arrive(&rx, rdma_imm_make(0, 1), 0, 128, err,
				  sizeof(err)), -EBADMSG, err,
		   "chunk seq 1, expected 0");
	expect_err(rdma_rx_arrive(&rx, rdma_imm_make(0, 0), 0, 129, err,
				  sizeof(err)), -EBADMSG, err,
		   "129 bytes in a 128-byte slot");
	assert_int_equal(rx.count, 0);
	/* state untouched: the right arrival is taken */
	assert_int_equal(rdma_rx_arrive(&rx, rdma_imm_make(0, 0), 0, 128, err,
					sizeof(err)), 0);
	/* a duplicate of it, and a skip */
	expect_err(rdma_rx_arrive(&rx, rdma_imm_make(1, 0), 0, 128, err,
				  sizeof(err)), -EBADMSG, err,
		   "chunk seq 0, expected 1");
	expect_err(rdma_rx_arrive(&rx, rdma_imm_make(1, 2), 0, 128, err,
				  sizeof(err)), -EBADMSG, err,
		   "chunk seq 2, expected 1");
	for (uint32_t i = 1; i < 4; i++)
		assert_int_equal(rdma_rx_arrive(&rx, rdma_imm_make(i, i), 0,
						128, err, sizeof(err)), 0);
	/* window full: a fifth chunk overran the sender's credits */
	expect_err(rdma_rx_arrive(&rx, rdma_imm_make(0, 4), 0, 128, err,
				  sizeof(err)), -EBADMSG, err,
		   "past the credit window of 4");
	assert_int_equal(rdma_rx_peek(&rx, &ent), 0);
	assert_int_equal(ent.slot, 0);
	rdma_rx_consume(&rx);
	assert_int_equal(rdma_rx_arrive(&rx, rdma_imm_make(0, 4), 0, 128, err,
					sizeof(err)), 0);
	rdma_rx_fini(&rx);
}

static void test_imm_refused_send(void **state)
{
	struct rdma_rx rx;
	struct rdma_rx_ent ent;
	char err[WIRE_ERR_MAX];

	(void)state;
	rx_setup(&rx, RDMA_MODE_SEND);
	expect_err(rdma_rx_arrive(&rx, rdma_imm_make(1, 0), 0, 64, err,
				  sizeof(err)), -EBADMSG, err,
		   "slot field 1 must be 0");
	expect_err(rdma_rx_arrive(&rx, rdma_imm_make(0, 0), 12, 64, err,
				  sizeof(err)), -EBADMSG, err,
		   "receive buffer 12 out of range (12 buffers)");
	expect_err(rdma_rx_arrive(&rx, rdma_imm_make(0, 9), 3, 64, err,
				  sizeof(err)), -EBADMSG, err,
		   "chunk seq 9, expected 0");
	assert_int_equal(rdma_rx_arrive(&rx, rdma_imm_make(0, 0), 11, 64, err,
					sizeof(err)), 0);
	assert_int_equal(rdma_rx_peek(&rx, &ent), 0);
	assert_int_equal(ent.slot, 11);
	assert_int_equal(ent.len, 64);
	rdma_rx_fini(&rx);
}

static void test_credit_batching(void **state)
{
	struct rdma_geom g = { 16, 128 };
	struct rdma_rx rx;
	uint32_t value;
	char err[WIRE_ERR_MAX];

	(void)state;
	assert_int_equal(rdma_rx_init(&rx, RDMA_MODE_WRITE, &g, 16), 0);
	assert_int_equal(rx.batch, 4);
	for (uint32_t i = 0; i < 16; i++)
		assert_int_equal(rdma_rx_arrive(&rx, rdma_imm_make(i, i), 0,
						128, err, sizeof(err)), 0);
	for (uint32_t i = 0; i < 3; i++) {
		rdma_rx_consume(&rx);
		assert_false(rdma_rx_credit_due(&rx, &value));
	}
	rdma_rx_consume(&rx);
	assert_true(rdma_rx_credit_due(&rx, &value));
	assert_int_equal(value, 4);
	rdma_rx_credit_sent(&rx, value);
	assert_false(rdma_rx_credit_due(&rx, &value));
	/* consuming with nothing arrived changes nothing */
	for (uint32_t i = 0; i < 20; i++)
		rdma_rx_consume(&rx);
	assert_int_equal(rx.consumed, 16);
	assert_int_equal(rdma_rx_peek(&rx, &(struct rdma_rx_ent){ 0 }),
			 -EAGAIN);
	rdma_rx_fini(&rx);
}

/* ---- chunk headers refused --------------------------------------------------- */

static size_t put_chunk(uint8_t *slot, uint32_t cseq, uint32_t rseq,
			uint32_t rec_len, uint32_t len, uint8_t fill)
{
	be32_store(slot, cseq);
	be32_store(slot + 4, rseq);
	be32_store(slot + 8, rec_len);
	be32_store(slot + 12, len);
	memset(slot + 16, fill, 112);
	if (len >= 32)
		be32_store(slot + 16 + 16, rec_len - 32); /* header length */
	return 128;
}

static void reasm_expect(struct rdma_reasm *r, const uint8_t *slot,
			 size_t len, int want, const char *needle)
{
	struct rdma_record out;
	char err[WIRE_ERR_MAX] = "";

	expect_err(rdma_reasm_chunk(r, slot, len, NULL, NULL, &out, err,
				    sizeof(err)), want, err, needle);
}

static void test_chunk_refused(void **state)
{
	struct rdma_reasm r;
	struct rdma_record out;
	uint8_t slot[128];
	char err[WIRE_ERR_MAX];

	(void)state;
	rdma_reasm_init(&r, 128); /* 112 bytes per chunk */
	put_chunk(slot, 0, 0, 256, 112, 1);
	reasm_expect(&r, slot, 15, -EBADMSG, "15 bytes < 16-byte header");
	put_chunk(slot, 1, 0, 256, 112, 1);
	reasm_expect(&r, slot, 128, -EBADMSG, "chunk seq 1, expected 0");
	put_chunk(slot, 0, 5, 256, 112, 1);
	reasm_expect(&r, slot, 128, -EBADMSG, "record seq 5, expected 0");
	put_chunk(slot, 0, 0, RDMA_REC_MAX + 8, 112, 1);
	reasm_expect(&r, slot, 128, -E2BIG, "record length 4202544 > max");
	put_chunk(slot, 0, 0, 0xfffffff8u, 112, 1);
	reasm_expect(&r, slot, 128, -E2BIG, "record length 4294967288");
	put_chunk(slot, 0, 0, 24, 24, 1);
	reasm_expect(&r, slot, 128, -EBADMSG, "record length 24 is not");
	put_chunk(slot, 0, 0, 260, 112, 1);
	reasm_expect(&r, slot, 128, -EBADMSG, "record length 260 is not");
	put_chunk(slot, 0, 0, 256, 111, 1);
	reasm_expect(&r, slot, 128, -EBADMSG, "length 111, expected 112");
	put_chunk(slot, 0, 0, 256, 113, 1);
	reasm_expect(&r, slot, 128, -EBADMSG, "length 113, expected 112");
	put_chunk(slot, 0, 0, 256, 0, 1);
	reasm_expect(&r, slot, 128, -EBADMSG, "length 0, expected 112");
	put_chunk(slot, 0, 0, 256, 0xffffffffu, 1);
	reasm_expect(&r, slot, 128, -EBADMSG, "length 4294967295");
	put_chunk(slot, 0, 0, 256, 112, 1);
	reasm_expect(&r, slot, 100, -EBADMSG,
		     "length 112 past the 100 bytes received");
	/* nothing moved: the first chunk is still chunk 0 of record 0 */
	assert_int_equal(rdma_reasm_chunk(&r, slot, 128, NULL, NULL, &out,
					  err, sizeof(err)), 0);
	/* mid-record: duplicate, skip, other record, changed length */
	reasm_expect(&r, slot, 128, -EBADMSG, "chunk seq 0, expected 1");
	put_chunk(slot, 2, 0, 256, 112, 2);
	reasm_expect(&r, slot, 128, -EBADMSG, "chunk seq 2, expected 1");
	put_chunk(slot, 1, 1, 256, 112, 2);
	reasm_expect(&r, slot, 128, -EBADMSG, "record seq 1, expected 0");
	put_chunk(slot, 1, 0, 264, 112, 2);
	reasm_expect(&r, slot, 128, -EBADMSG,
		     "record length 264 changed from 256");
	put_chunk(slot, 1, 0, 256, 32, 2);
	reasm_expect(&r, slot, 128, -EBADMSG, "length 32, expected 112");
	put_chunk(slot, 1, 0, 256, 112, 2);
	assert_int_equal(rdma_reasm_chunk(&r, slot, 128, NULL, NULL, &out,
					  err, sizeof(err)), 0);
	put_chunk(slot, 2, 0, 256, 32, 3);
	assert_int_equal(rdma_reasm_chunk(&r, slot, 48, NULL, NULL, &out,
					  err, sizeof(err)), 1);
	assert_int_equal(out.body_len, 224);
	assert_int_equal(out.body[0], 1);       /* chunk 0 after the header */
	assert_int_equal(out.body[80], 2);      /* chunk 1 */
	assert_int_equal(out.body[223], 3);     /* chunk 2 */
	free(out.body);
	/* the next record must be record 1, chunk 3 */
	put_chunk(slot, 3, 0, 32, 32, 4);
	reasm_expect(&r, slot, 128, -EBADMSG, "record seq 0, expected 1");
	put_chunk(slot, 3, 1, 32, 32, 4);
	assert_int_equal(rdma_reasm_chunk(&r, slot, 48, NULL, NULL, &out,
					  err, sizeof(err)), 1);
	assert_int_equal(out.body_len, 0);
	free(out.body);
	rdma_reasm_fini(&r);
}

struct check_seen {
	int calls;
	uint32_t rec_len;
	uint8_t hdr[WIRE_RECORD_HEADER_SIZE];
	int rc;
};

static int check_hdr(void *arg, const uint8_t hdr[WIRE_RECORD_HEADER_SIZE],
		     uint32_t rec_len, char *err, size_t errlen)
{
	struct check_seen *c = arg;

	c->calls++;
	c->rec_len = rec_len;
	memcpy(c->hdr, hdr, WIRE_RECORD_HEADER_SIZE);
	if (c->rc)
		snprintf(err, errlen, "header refused: rec_len %u", rec_len);
	return c->rc;
}

static void test_reasm_check_callback(void **state)
{
	struct rdma_reasm r;
	struct rdma_record out;
	struct check_seen seen = { 0, 0, { 0 }, -EPROTO };
	uint8_t slot[128];
	char err[WIRE_ERR_MAX];

	(void)state;
	rdma_reasm_init(&r, 128);
	put_chunk(slot, 0, 0, 400, 112, 9);
	expect_err(rdma_reasm_chunk(&r, slot, 128, check_hdr, &seen, &out,
				    err, sizeof(err)), -EPROTO, err,
		   "rec_len 400");
	assert_int_equal(seen.calls, 1);
	assert_memory_equal(seen.hdr, slot + 16, WIRE_RECORD_HEADER_SIZE);
	assert_null(r.body); /* nothing allocated for a refused header */
	seen.rc = 0;
	assert_int_equal(rdma_reasm_chunk(&r, slot, 128, check_hdr, &seen,
					  &out, err, sizeof(err)), 0);
	assert_int_equal(seen.calls, 2);
	assert_int_equal(seen.rec_len, 400);
	/* later chunks are not checked again; a partial record is freed */
	put_chunk(slot, 1, 0, 400, 112, 9);
	assert_int_equal(rdma_reasm_chunk(&r, slot, 128, check_hdr, &seen,
					  &out, err, sizeof(err)), 0);
	assert_int_equal(seen.calls, 2);
	rdma_reasm_fini(&r);
	assert_null(r.body);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_geom_limits),
		cmocka_unit_test(test_advert_roundtrip),
		cmocka_unit_test(test_advert_refused),
		cmocka_unit_test(test_credit_message),
		cmocka_unit_test(test_tx_window),
		cmocka_unit_test(test_tx_credit_wraps),
		cmocka_unit_test(test_slot_reuse_model),
		cmocka_unit_test(test_chunk_math),
		cmocka_unit_test(test_chunk_bytes),
		cmocka_unit_test(test_roundtrip_small_slots),
		cmocka_unit_test(test_roundtrip_build_geometry),
		cmocka_unit_test(test_roundtrip_every_small_size),
		cmocka_unit_test(test_rx_init_refused),
		cmocka_unit_test(test_imm_refused_write),
		cmocka_unit_test(test_imm_refused_send),
		cmocka_unit_test(test_credit_batching),
		cmocka_unit_test(test_chunk_refused),
		cmocka_unit_test(test_reasm_check_callback),
	};
	const char *env = getenv("RDMA_BUF_SEED");

	if (env && *env)
		seed = strtoull(env, NULL, 0);
	if (seed == 0)
		seed = 1;
	printf("seed: %llu\n", (unsigned long long)seed);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
