/*
 * stream_codec.h - the message codec of the uvm stream device: framed
 * messages in a byte ring (abi/uvm_dev.h), and the back end's saved
 * connection table.  Pure and allocation-free: no guest memory is reached
 * except through the data[] pointer and the indices the caller passes, so
 * the same code runs in unit tests and under libFuzzer.
 *
 * Ring layout.  data[] has `size` bytes, a power of two; indices are
 * free-running uint32_t counters and a byte lives at idx & (size - 1).
 * A message is a 16-byte struct uvm_stream_hdr followed by `len` payload
 * bytes, padded with zeros to a multiple of UVM_STREAM_ALIGN; it starts at
 * an 8-byte aligned index and may wrap around the end of data[] anywhere,
 * header included.  A producer publishes prod only at message boundaries,
 * so a published prod is always 8-byte aligned.
 *
 * Trust.  The host keeps its own copy of `size` and of the index it owns
 * (tx cons, rx prod); everything the guest wrote (tx prod, rx cons, the
 * shared size field, every header and payload byte) is untrusted.  The
 * parser reads a header exactly once (into a copy) and checks, in order:
 * the shared size equals the host's, prod is aligned and at most `size`
 * ahead of cons, then the header (type allowed for the direction, flags 0,
 * conn in 1..UVM_STREAM_MAX_CONNS, len <= UVM_STREAM_MAX_DATA for DATA and
 * 0 otherwise, the padded message no larger than the ring).  A message
 * whose bytes are not all published yet is "not yet" (0), never an error.
 * Errors are -EBADMSG with a reason quoting the bad value.
 */
#ifndef TANDEM_UVM_STREAM_CODEC_H
#define TANDEM_UVM_STREAM_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "uvm_dev.h"

#define UVM_SCODEC_HDR_SIZE 16
#define UVM_SCODEC_MIN_SIZE 16u  /* smallest ring: one bare header */

_Static_assert(sizeof(struct uvm_stream_hdr) == UVM_SCODEC_HDR_SIZE,
	       "stream header is 16 bytes");
_Static_assert(sizeof(struct uvm_bytering) == UVM_BYTERING_HEADER,
	       "byte ring header is 64 bytes");

/* Bit masks of message types, for uvm_scodec_next's `allowed`. */
#define UVM_SCODEC_TYPE_BIT(t) (1u << (t))
#define UVM_SCODEC_TX_TYPES                                                 \
	(UVM_SCODEC_TYPE_BIT(UVM_STREAM_DATA) |                             \
	 UVM_SCODEC_TYPE_BIT(UVM_STREAM_CLOSE) |                            \
	 UVM_SCODEC_TYPE_BIT(UVM_STREAM_CREDIT))
#define UVM_SCODEC_ALL_TYPES                                                \
	(UVM_SCODEC_TX_TYPES | UVM_SCODEC_TYPE_BIT(UVM_STREAM_OPEN))

/* One ring as the host sees it: its own copy of size, never the guest's. */
struct uvm_scodec_ring {
	uint8_t *data;  /* data[] of the shared ring */
	uint32_t size;  /* power of two, >= UVM_SCODEC_MIN_SIZE */
};

/* A parsed message.  The payload stays in the ring, in up to two parts
 * (the second when it wraps); the caller copies it out once. */
struct uvm_scodec_msg {
	struct uvm_stream_hdr hdr;  /* a private copy, validated */
	const uint8_t *part[2];
	uint32_t part_len[2];
	uint32_t next;              /* cons after this message */
};

/* Bytes a message with `len` payload bytes occupies, padding included. */
static inline uint32_t uvm_scodec_msg_bytes(uint32_t len)
{
	return (UVM_SCODEC_HDR_SIZE + len + UVM_STREAM_ALIGN - 1) &
	       ~(uint32_t)(UVM_STREAM_ALIGN - 1);
}

const char *uvm_scodec_type_name(uint32_t type);

/* The data size of a ring of `bytes` in all: the largest power of two
 * that fits after the 64-byte header; 0 when none of at least
 * UVM_SCODEC_MIN_SIZE fits. */
uint32_t uvm_scodec_ring_size(uint64_t bytes);

/* Zero the ring header (indices, events, padding) and set its size. */
void uvm_scodec_ring_init(struct uvm_bytering *shared, uint32_t size);

/* Checks a ring's shared size field against the host's copy. */
int uvm_scodec_check_size(uint32_t shared_size, uint32_t size, char *why,
			  size_t whylen);

/* Bytes free for the producer at `prod` when the consumer (untrusted) is
 * at `cons`; -EBADMSG if cons is behind prod by more than the ring or
 * ahead of it. */
int uvm_scodec_space(uint32_t size, uint32_t prod, uint32_t cons,
		     uint32_t *space, char *why, size_t whylen);

/* Write one message at `prod` (8-byte aligned): header, payload, zero
 * padding.  The caller has checked the space (uvm_scodec_space);
 * -ENOSPC if it does not suffice, -EINVAL for a header the codec would
 * itself reject.  *next = prod after the message. */
int uvm_scodec_put(const struct uvm_scodec_ring *r, uint32_t prod,
		   uint32_t space, const struct uvm_stream_hdr *hdr,
		   const void *payload, uint32_t *next);

/* Parse the message at `cons` of a ring whose producer published `prod`,
 * the ring's shared size field reading `shared_size`.  Returns 1 with *m
 * filled, 0 when no whole message is published yet (empty ring or only a
 * prefix), -EBADMSG with the reason in why. */
int uvm_scodec_next(const struct uvm_scodec_ring *r, uint32_t shared_size,
		    uint32_t cons, uint32_t prod, unsigned allowed,
		    struct uvm_scodec_msg *m, char *why, size_t whylen);

/* Checks one header as uvm_scodec_next does (without the ring checks). */
int uvm_scodec_check_hdr(const struct uvm_stream_hdr *h, unsigned allowed,
			 uint32_t size, char *why, size_t whylen);

/* ---- the saved connection table (struct hv_device_state blob) ----------
 *
 * Little-endian, version 1:
 *   0  magic "USTR"               4 bytes
 *   4  version (1)                u8
 *   5  entry bytes (16)           u8
 *   6  reserved, 0                u16
 *   8  flags (bit 0: broken)      u32
 *  12  tx cons                    u32  (host's index of the tx ring)
 *  16  rx prod                    u32  (host's index of the rx ring)
 *  20  ring size                  u32
 *  24  count (<= MAX_CONNS)       u32
 *  28  count entries of 16 bytes:
 *        conn u32, state u8, flags u8 (UVM_SCODEC_CF_*), reserved u16,
 *        host_credit u32, guest_credit u32
 * The length must be exactly 28 + 16 * count; ids unique, in range.
 */
#define UVM_SCODEC_SAVE_VERSION 1
#define UVM_SCODEC_SAVE_HDR 28
#define UVM_SCODEC_SAVE_ENTRY 16
#define UVM_SCODEC_SAVE_MAX                                                 \
	(UVM_SCODEC_SAVE_HDR + UVM_SCODEC_SAVE_ENTRY * UVM_STREAM_MAX_CONNS)
#define UVM_SCODEC_SF_BROKEN 1u

#define UVM_SCODEC_CF_OPEN_SENT  1u /* the guest was told of the conn */
#define UVM_SCODEC_CF_CLOSE_SENT 2u /* host -> guest CLOSE is in the ring */
#define UVM_SCODEC_CF_CLOSE_GOT  4u /* guest -> host CLOSE was consumed */
#define UVM_SCODEC_CF_ALL        7u

struct uvm_scodec_conn_state {
	uint32_t conn;
	uint8_t state;         /* the back end's enum; <= max_state on load */
	uint8_t flags;         /* UVM_SCODEC_CF_* */
	uint32_t host_credit;  /* host -> guest bytes the host may still send */
	uint32_t guest_credit; /* guest -> host bytes the guest may still send */
};

struct uvm_scodec_save {
	uint32_t flags;        /* UVM_SCODEC_SF_* */
	uint32_t tx_cons;
	uint32_t rx_prod;
	uint32_t size;
	uint32_t count;
	struct uvm_scodec_conn_state conn[UVM_STREAM_MAX_CONNS];
};

/* Encode into buf (cap bytes); *len out.  -ENOSPC if it does not fit. */
int uvm_scodec_save_put(const struct uvm_scodec_save *s, uint8_t *buf,
			size_t cap, size_t *len);
/* Decode and bound-check; states above max_state are refused. */
int uvm_scodec_save_get(const uint8_t *buf, size_t len, uint8_t max_state,
			struct uvm_scodec_save *s, char *why, size_t whylen);

#endif
