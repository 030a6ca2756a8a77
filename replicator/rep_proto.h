/*
 * rep_proto.h - bodies of the replication records (docs/replication.md),
 * internal to replicator/.  Encoders fill a caller's buffer; decoders
 * check every field against its range and say which one is wrong.
 */
#ifndef TANDEM_REP_PROTO_H
#define TANDEM_REP_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "replicator.h"

#define REP_REASON_MAX 255
#define REP_BODY_MAX 320 /* the largest fixed-size body plus its text */


struct rep_welcome {
	uint32_t status;      /* enum rep_welcome_status */
	uint32_t role;        /* the acceptor's */
	uint64_t generation;  /* the acceptor's */
	uint64_t session;     /* session of the acceptor's replica, or 0 */
	uint64_t committed;   /* last epoch committed of that session, or 0 */
	char reason[REP_REASON_MAX + 1];
};

/* Closes an epoch on the control channel, after the SYNC of the epoch. */
struct rep_epoch_end {
	uint64_t epoch;
	uint64_t base;        /* the committed epoch this one builds on (0: full) */
	uint64_t records;     /* data records of the epoch, all channels */
	uint64_t digest;      /* sum of rep_record_digest() over them */
	uint64_t pages;
	uint64_t disk_bytes;
	uint64_t guest_clock_ns;
	uint64_t flags;       /* REP_END_* */
};
#define REP_END_FULL 1u   /* the first epoch of a session */

struct rep_ack {
	uint64_t epoch;       /* committed */
	uint64_t apply_ns;    /* time the standby took to apply it */
};

struct rep_heartbeat {
	uint64_t generation;
	uint64_t epoch;       /* sender's last made (primary) or committed */
	uint64_t sent_ns;     /* sender's monotonic clock */
	uint32_t role;
	uint32_t flags;
};

/* The primary no longer needs the replica (unprotected, or its guest
 * shut down): the standby drops it and must not take over from it. */
#define REP_HB_RELEASE 1u

struct rep_drill {
	uint32_t phase;       /* enum rep_phase: where the primary dies */
	uint32_t reserved;
};

struct rep_handover {
	uint64_t epoch;       /* final epoch, committed before this */
	uint64_t generation;  /* the primary's */
};

size_t rep_hello_encode(const struct rep_hello *h, uint8_t *buf);
int rep_hello_decode(const uint8_t *body, size_t len, struct rep_hello *out,
		     char *err, size_t errlen);
size_t rep_welcome_encode(const struct rep_welcome *w, uint8_t *buf);
int rep_welcome_decode(const uint8_t *body, size_t len,
		       struct rep_welcome *out, char *err, size_t errlen);
size_t rep_epoch_end_encode(const struct rep_epoch_end *e, uint8_t *buf);
int rep_epoch_end_decode(const uint8_t *body, size_t len,
			 struct rep_epoch_end *out, char *err, size_t errlen);
size_t rep_ack_encode(const struct rep_ack *a, uint8_t *buf);
int rep_ack_decode(const uint8_t *body, size_t len, struct rep_ack *out,
		   char *err, size_t errlen);
size_t rep_heartbeat_encode(const struct rep_heartbeat *h, uint8_t *buf);
int rep_heartbeat_decode(const uint8_t *body, size_t len,
			 struct rep_heartbeat *out, char *err, size_t errlen);
size_t rep_drill_encode(const struct rep_drill *d, uint8_t *buf);
int rep_drill_decode(const uint8_t *body, size_t len, struct rep_drill *out,
		     char *err, size_t errlen);
size_t rep_handover_encode(const struct rep_handover *h, uint8_t *buf);
int rep_handover_decode(const uint8_t *body, size_t len,
			struct rep_handover *out, char *err, size_t errlen);

/* The END digest's term for one data record. */
uint64_t rep_record_digest(uint32_t type, uint64_t epoch, const void *body,
			   size_t len);

#endif
