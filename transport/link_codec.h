/*
 * link_codec.h - bodies of the link records (docs/transport.md, section 4):
 * HELLO, WELCOME, JOIN, JOINED, PING, PONG, SYNC, BYE.
 *
 * Pure functions over bytes, shared by every back end and fuzzed on their
 * own (tests/fuzz/fuzz_link.c).  Decoders check every field against its
 * limit and the exact body length; messages name the record and quote the
 * bad value.
 */
#ifndef TANDEM_LINK_CODEC_H
#define TANDEM_LINK_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "transport.h"
#include "wire.h"

#define LINK_SESSION_ID 16
#define LINK_HELLO_FIXED 24
#define LINK_WELCOME_FIXED 48
#define LINK_JOIN_SIZE 24
#define LINK_JOINED_SIZE 8
#define LINK_PING_SIZE 16
#define LINK_SYNC_FIXED 8
#define LINK_BYE_MAX 256

/* What both sides agreed on; fixed when the link comes up. */
struct link_session {
	uint16_t proto;
	unsigned nr_bulk;
	uint64_t features;
	uint8_t id[LINK_SESSION_ID];
	uint64_t seed;            /* checksum seed: XXH3-64 of id */
	uint64_t min_epoch;       /* records below it are stale */
	char peer_name[TP_NAME_MAX];
};

struct link_hello {
	uint16_t proto_min, proto_max;
	uint32_t nr_bulk;
	uint64_t features;
	uint64_t epoch;           /* the first epoch the sender will use */
	char name[TP_NAME_MAX];   /* 1..63 bytes, printable */
};

struct link_welcome {
	uint16_t proto;
	uint32_t nr_bulk;
	uint64_t features;
	uint8_t session[LINK_SESSION_ID];
	uint64_t min_epoch;
	char name[TP_NAME_MAX];
};

struct link_join {
	uint8_t session[LINK_SESSION_ID];
	uint32_t chan;            /* 1..TP_MAX_BULK */
};

struct link_ping {
	uint64_t nonce;
	uint64_t t_ns;            /* sender's CLOCK_MONOTONIC, echoed back */
};

struct link_sync {
	uint32_t nr_chan;         /* 1 + nr_bulk */
	/* Records sent on each channel before this SYNC, SYNCs excluded. */
	uint64_t count[1 + TP_MAX_BULK];
};

int link_hello_put(struct wire_buf *b, const struct link_hello *h);
int link_hello_decode(const uint8_t *p, size_t len, struct link_hello *out,
		      char *err, size_t errlen);
int link_welcome_put(struct wire_buf *b, const struct link_welcome *w);
int link_welcome_decode(const uint8_t *p, size_t len,
			struct link_welcome *out, char *err, size_t errlen);
int link_join_put(struct wire_buf *b, const struct link_join *j);
int link_join_decode(const uint8_t *p, size_t len, struct link_join *out,
		     char *err, size_t errlen);
int link_joined_put(struct wire_buf *b, uint32_t chan);
int link_joined_decode(const uint8_t *p, size_t len, uint32_t *chan,
		       char *err, size_t errlen);
int link_ping_put(struct wire_buf *b, const struct link_ping *pg);
int link_ping_decode(const uint8_t *p, size_t len, struct link_ping *out,
		     char *err, size_t errlen);
int link_sync_put(struct wire_buf *b, const struct link_sync *s);
int link_sync_decode(const uint8_t *p, size_t len, struct link_sync *out,
		     char *err, size_t errlen);
/* BYE carries a reason; out gets it NUL-terminated, control bytes as '?'. */
int link_bye_decode(const uint8_t *p, size_t len, char *out, size_t outlen);

/*
 * The server's choice from a HELLO: highest common protocol version and
 * the intersection of features.  -EPROTONOSUPPORT (no common version, or
 * a mandatory feature one side lacks) with a message quoting both.
 */
int link_negotiate(const struct link_hello *h, uint64_t our_features,
		   uint16_t *proto, uint64_t *features,
		   char *err, size_t errlen);

/* A peer or PSK identity name: 1..63 printable ASCII bytes, no spaces. */
bool link_name_ok(const char *name, size_t len);

/* XXH3-64 of the session id: the seed of every later record checksum. */
uint64_t link_session_seed(const uint8_t id[LINK_SESSION_ID]);

#endif
