/*
 * rdma_buf.h - the device-independent half of the RDMA back end: slot
 * rings and credits, the mapping of framed records onto chunks, the
 * reassembly of chunks into records, and the two small messages the ends
 * of a queue pair exchange (ring advertisement, credit return).  Pure C
 * over bytes, no verbs calls, so every rule here is unit-tested without a
 * device (tests/unit/test_rdma_buf.c).  The design is in docs/rdma.md.
 *
 * A framed record (32-byte header, body, zero padding to 8; at most
 * RDMA_REC_MAX bytes) travels as chunks.  A chunk fills one slot of the
 * receiver's ring: a 16-byte chunk header, then up to slot_size - 16
 * bytes of the record.  Every chunk but a record's last is full, so both
 * ends compute the same split from (rec_len, slot_size) alone.
 *
 *   chunk header (big-endian)
 *     0  be32 chunk_seq   per channel and direction, +1 per chunk
 *     4  be32 rec_seq     per channel and direction, +1 per record
 *     8  be32 rec_len     framed bytes of the whole record
 *    12  be32 len         record bytes in this chunk
 *
 *   immediate data (be32 on the wire)
 *     bits 31..16  slot index (RDMA WRITE mode; 0 in SEND mode, where the
 *                  receiver picked the buffer)
 *     bits 15..0   low 16 bits of chunk_seq
 *
 * Why chunks, not whole-record slots: a record may be 4 MiB, so a ring of
 * whole-record slots would pin 4 MiB per slot and per channel while most
 * records (pings, syncs, small page batches) are tiny.  Fixed 64 KiB slots
 * keep the pinned ring small (32 slots = 2 MiB per bulk channel), let a
 * 4 MiB record stream through a ring smaller than itself, and keep the
 * receiver's work per completion bounded.  The cost, one 16-byte header per
 * 64 KiB and a copy out of the slot, is small next to the wire time.
 * Records are not packed several to a slot: bulk channels carry mostly
 * large page records, and one record per chunk keeps reassembly simple.
 *
 * Invariants:
 *  - A sender has at most `window` chunks in flight (sent, credit not yet
 *    returned).  Slots are taken in ring order, so a slot is written again
 *    only after the credit for the chunk it last held has come back.
 *  - Credits are cumulative counts of consumed chunks (mod 2^32); a credit
 *    that would free more chunks than are in flight is refused.
 *  - Every value from the wire (immediate data, chunk header fields, credit
 *    and advertisement fields) is checked against a fixed limit or the
 *    local state before it indexes, sizes or counts anything.  A refusal is
 *    -EBADMSG (-E2BIG for an oversize record, -EPROTONOSUPPORT for an
 *    unknown advertisement version) with a message quoting the value, and
 *    leaves the state as it was; the caller fails the link.
 *  - A chunk header is read once, into locals: the peer holds the ring's
 *    rkey and may rewrite a slot at any time, so nothing is fetched twice.
 *  - Nothing here logs; the caller decides.
 */
#ifndef TANDEM_RDMA_BUF_H
#define TANDEM_RDMA_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wire.h"

/* The largest framed record: header + WIRE_MAX_BODY padded to 8. */
#define RDMA_REC_MAX (WIRE_RECORD_HEADER_SIZE + \
		      ((WIRE_MAX_BODY + (WIRE_ALIGN - 1u)) & ~(WIRE_ALIGN - 1u)))

#define RDMA_CHUNK_HDR_SIZE 16u

/* Limits an advertised ring must respect. */
#define RDMA_SLOT_MIN 64u              /* payload >= one record header */
#define RDMA_SLOT_MAX (1u << 20)
#define RDMA_SLOTS_MAX 1024u           /* fits the 16-bit immediate field */
#define RDMA_RING_MAX (64u << 20)      /* pinned bytes per ring */

/* The rings this build advertises. */
#define RDMA_CTRL_SLOTS 16u
#define RDMA_CTRL_SLOT_SIZE (16u << 10)
#define RDMA_BULK_SLOTS 32u
#define RDMA_BULK_SLOT_SIZE (64u << 10)

/*
 * Receive work requests kept beyond the window for credit messages.  A
 * receiver returns credits at most once per ceil(window / 4) consumed
 * chunks, so between two polls of its completion queue a peer can be sent
 * at most 5 credit messages; 8 leaves margin.
 */
#define RDMA_MSG_RESERVE 8u
#define RDMA_MSG_BUF 64u               /* receive buffer of a message */

#define RDMA_ADVERT_SIZE 32u
#define RDMA_ADVERT_MAGIC 0x54524144u  /* "TRAD" */
#define RDMA_ADVERT_VERSION 1u
#define RDMA_CREDIT_SIZE 8u
#define RDMA_CREDIT_MAGIC 0x54524352u  /* "TRCR" */

enum rdma_mode {
	RDMA_MODE_SEND = 1,   /* control: SEND/RECV into posted buffers */
	RDMA_MODE_WRITE = 2,  /* bulk: RDMA WRITE with immediate into slots */
};

const char *rdma_mode_name(enum rdma_mode mode);

/* ---- ring geometry --------------------------------------------------- */

struct rdma_geom {
	uint32_t nr_slots;
	uint32_t slot_size;
};

/* Checks the limits above; -EBADMSG with a message quoting the value. */
int rdma_geom_check(const struct rdma_geom *g, char *err, size_t errlen);

/* Leaves the message in err (if any) and returns rc: the module's errors. */
int rdma_errf(char *err, size_t errlen, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Record bytes one chunk carries in a slot of this size. */
uint32_t rdma_chunk_payload_max(uint32_t slot_size);

/* ---- advertisement: a receiver's ring, sent in CM private data ------- */
/*
 *   0  be32 magic "TRAD"     16  be32 slot_size
 *   4  be16 version (1)      20  be32 rkey       (0 in SEND mode)
 *   6  be16 mode             24  be64 addr       (0 in SEND mode)
 *   8  be32 chan
 *  12  be32 nr_slots
 * Connection managers may pad private data with zeros: bytes after the 32
 * must be zero.
 */
struct rdma_advert {
	enum rdma_mode mode;
	uint32_t chan;
	struct rdma_geom geom;
	uint32_t rkey;
	uint64_t addr;
};

int rdma_advert_put(struct wire_buf *b, const struct rdma_advert *a);
int rdma_advert_decode(const uint8_t *p, size_t len, struct rdma_advert *out,
		       char *err, size_t errlen);

/* ---- credit return: "I have consumed `consumed` chunks in all" ------- */
/*   0  be32 magic "TRCR"     4  be32 consumed (mod 2^32) */
int rdma_credit_put(struct wire_buf *b, uint32_t consumed);
int rdma_credit_decode(const uint8_t *p, size_t len, uint32_t *consumed,
		       char *err, size_t errlen);

/* ---- chunks ------------------------------------------------------------ */

struct rdma_chunk_hdr {
	uint32_t chunk_seq;
	uint32_t rec_seq;
	uint32_t rec_len;
	uint32_t len;
};

uint32_t rdma_imm_make(uint32_t slot, uint32_t chunk_seq);
/* Chunks a record of rec_len bytes takes in slots of slot_size. */
uint32_t rdma_chunk_count(uint32_t rec_len, uint32_t slot_size);
/* Record bytes of the chunk that starts at record offset off. */
uint32_t rdma_chunk_len(uint32_t rec_len, uint32_t off, uint32_t slot_size);
/*
 * Writes into slot the chunk of rec that starts at off: header, then
 * rdma_chunk_len() record bytes.  Returns the bytes to transfer.
 */
size_t rdma_chunk_build(uint8_t *slot, uint32_t slot_size, uint32_t chunk_seq,
			uint32_t rec_seq, const uint8_t *rec, uint32_t rec_len,
			uint32_t off);
int rdma_chunk_hdr_decode(const uint8_t *p, size_t len,
			  struct rdma_chunk_hdr *out, char *err, size_t errlen);

/* ---- sender: credits over the peer's ring ------------------------------ */

struct rdma_tx {
	uint32_t window;      /* the peer's nr_slots */
	uint32_t next_slot;   /* ring order */
	uint32_t in_flight;   /* chunks sent, credit not returned */
	uint32_t credited;    /* the peer's consumed count, last seen */
	uint32_t chunk_seq;   /* of the next chunk */
};

void rdma_tx_init(struct rdma_tx *tx, uint32_t window);
bool rdma_tx_ready(const struct rdma_tx *tx);
/* The next slot and chunk sequence; -EAGAIN when no credit is left. */
int rdma_tx_take(struct rdma_tx *tx, uint32_t *slot, uint32_t *chunk_seq);
/* Applies a credit message; returns the chunks it freed (>= 0). */
int rdma_tx_credit(struct rdma_tx *tx, uint32_t consumed,
		   char *err, size_t errlen);

/* ---- receiver: arrivals, consumption, credits -------------------------- */

struct rdma_rx_ent {
	uint32_t slot;        /* ring slot (WRITE) or receive buffer (SEND) */
	uint32_t len;         /* bytes valid in it */
};

struct rdma_rx {
	enum rdma_mode mode;
	struct rdma_geom geom;  /* what we advertised */
	uint32_t nr_bufs;       /* buffers an arrival may name */
	uint32_t next_slot;     /* WRITE: the slot the next chunk must use */
	uint32_t arrive_seq;    /* chunk_seq of the next arrival */
	uint32_t head, count;   /* fifo of arrived, unconsumed chunks */
	struct rdma_rx_ent *fifo;
	uint32_t consumed;      /* chunks consumed in all, mod 2^32 */
	uint32_t returned;      /* consumed value last sent back */
	uint32_t batch;         /* credits returned at least this many at once */
};

/* nr_bufs: geom.nr_slots in WRITE mode, posted receive buffers in SEND. */
int rdma_rx_init(struct rdma_rx *rx, enum rdma_mode mode,
		 const struct rdma_geom *g, uint32_t nr_bufs);
void rdma_rx_fini(struct rdma_rx *rx);
/*
 * One completion: imm as received (host order), buf the receive buffer
 * it used (SEND mode; ignored in WRITE mode, where imm names the slot),
 * len the bytes valid in the slot or buffer.
 */
int rdma_rx_arrive(struct rdma_rx *rx, uint32_t imm, uint32_t buf,
		   uint32_t len, char *err, size_t errlen);
/* The oldest arrived chunk; -EAGAIN if none. */
int rdma_rx_peek(const struct rdma_rx *rx, struct rdma_rx_ent *out);
void rdma_rx_consume(struct rdma_rx *rx);
/* Whether a credit message is due; *value is what to send. */
bool rdma_rx_credit_due(const struct rdma_rx *rx, uint32_t *value);
void rdma_rx_credit_sent(struct rdma_rx *rx, uint32_t value);

/* ---- reassembly ------------------------------------------------------- */

struct rdma_record {
	uint8_t hdr[WIRE_RECORD_HEADER_SIZE];
	uint8_t *body;        /* body_len bytes from malloc; the caller's */
	uint32_t body_len;    /* rec_len - 32: body and padding */
};

struct rdma_reasm {
	uint32_t slot_size;   /* of our ring: the sender chunks by it */
	uint32_t chunk_seq;   /* next expected */
	uint32_t rec_seq;     /* next expected */
	uint32_t rec_len;     /* 0 between records */
	uint32_t got;         /* bytes of the record so far */
	uint8_t hdr[WIRE_RECORD_HEADER_SIZE];
	uint8_t *body;
};

void rdma_reasm_init(struct rdma_reasm *r, uint32_t slot_size);
void rdma_reasm_fini(struct rdma_reasm *r);
/*
 * Takes one chunk of len valid bytes.  On a record's first chunk, before
 * anything is allocated for it, check (if not NULL) may refuse the record
 * header: 0 or -errno with a message in err.  Returns 0 when the record
 * needs more chunks, 1 when it is complete (*out filled; the body is the
 * caller's to free), or -errno.
 */
int rdma_reasm_chunk(struct rdma_reasm *r, const uint8_t *chunk, size_t len,
		     int (*check)(void *arg,
				  const uint8_t hdr[WIRE_RECORD_HEADER_SIZE],
				  uint32_t rec_len, char *err, size_t errlen),
		     void *arg, struct rdma_record *out,
		     char *err, size_t errlen);

#endif
