/*
 * transport.h - links between two tandem hosts.
 *
 * A link joins two named peers.  It carries typed records in the tandem
 * wire format (docs/wire-format.md) on one ordered control channel (0) and
 * nr_bulk parallel bulk channels (1..nr_bulk) for page and block payloads.
 * The protocol on the wire, the handshake and the security model are in
 * docs/transport.md.
 *
 * Threads: a struct tp_ctx owns one event loop thread; every link made from
 * it is served there.  tp_send, tp_recv, tp_sync and tp_link_stats may be
 * called from any other thread; they block, with bounds:
 *  - tp_send blocks while the channel has more than send_limit bytes queued
 *    (back-pressure: a slow peer cannot make the sender buffer more than
 *    send_limit plus one record per sending thread); tp_send_nb returns
 *    -EAGAIN instead;
 *  - the receiver stops reading a channel while the consumer has more than
 *    recv_limit of its bytes undelivered, so TCP (or RDMA credits) push back
 *    on the sender.
 *
 * Invariants:
 *  - Every record is checked (framing, checksum seeded by the session,
 *    per-channel sequence, epoch not below the channel's last, known type)
 *    before it is queued for the consumer; a failed check fails the link.
 *  - Records on one channel are delivered in the order they were sent, each
 *    exactly once.  tp_sync(E) is delivered after every record sent on any
 *    channel before it.
 *  - A link that fails stays failed: tp_recv hands out the records already
 *    verified, then the error; tp_send returns it at once.
 *
 * Errors are 0 or -errno.  Functions taking err/errlen leave a message
 * naming the peer and the bad value.
 */
#ifndef TANDEM_TRANSPORT_H
#define TANDEM_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TP_MAX_BULK 16
#define TP_NAME_MAX 64
#define TP_ERR_MAX 256
#define TP_PSK_MAX 64

/* Link protocol versions this build speaks (HELLO's range). */
#define TP_PROTO_MIN 1
#define TP_PROTO_MAX 1

/* Link feature bits (HELLO/WELCOME); the low 32 are mandatory. */
#define TP_FEAT_PAGE_CODECS (1ULL << 32) /* optional: PAGE_CODED records */

enum tp_kind {
	TP_KIND_TCP = 0,
	TP_KIND_RDMA = 1,
};

enum tp_security {
	TP_SEC_CERT = 0,      /* TLS 1.3, mutual X.509 against ca_file */
	TP_SEC_PSK = 1,       /* TLS 1.3 with an external pre-shared key */
	TP_SEC_INSECURE = 2,  /* plaintext; only when asked for, logged loudly */
};

struct tp_config {
	enum tp_kind kind;
	enum tp_security security;
	char local_name[TP_NAME_MAX];  /* this host, sent in HELLO */
	char peer_name[TP_NAME_MAX];   /* expected peer: cert name and HELLO */
	/* TP_SEC_CERT */
	const char *ca_file;
	const char *cert_file;         /* chain, PEM */
	const char *key_file;
	/* TP_SEC_PSK */
	uint8_t psk[TP_PSK_MAX];
	size_t psk_len;                /* 16..TP_PSK_MAX */
	char psk_identity[TP_NAME_MAX];

	unsigned nr_bulk;              /* 0..TP_MAX_BULK (connector decides) */
	size_t send_limit;             /* per channel; 0 = default 8 MiB */
	size_t recv_limit;             /* per channel; 0 = default 16 MiB */
	uint64_t min_epoch;            /* refuse records/sessions below this */
	uint64_t features;             /* offered; see TP_FEAT_* */
	int handshake_timeout_ms;      /* 0 = default 10 s */
	int ping_interval_ms;          /* rtt probes; 0 = default 1 s, <0 off */
};

/* Fills defaults: TCP, certificates, no bulk channels, limits, timeouts. */
void tp_config_init(struct tp_config *cfg);
/* Checks a config for use; -EINVAL with a message naming the field. */
int tp_config_check(const struct tp_config *cfg, char *err, size_t errlen);
/* Reads a PSK given as hex ("0x" optional) into cfg. */
int tp_config_set_psk_hex(struct tp_config *cfg, const char *hex,
			  char *err, size_t errlen);

const char *tp_security_name(enum tp_security sec);
const char *tp_kind_name(enum tp_kind kind);

struct tp_ctx;
struct tp_link;
struct tp_listener;

/*
 * One event loop thread.  Free every link and listener of a context
 * before the context: tp_ctx_free refuses (logs, frees nothing) while any
 * is open.
 */
int tp_ctx_new(struct tp_ctx **out);
void tp_ctx_free(struct tp_ctx *ctx);

/*
 * Connects to addr ("host:port", IPv4 or [IPv6]), authenticates, runs the
 * handshake and joins every bulk channel.  Blocks until the link is up or
 * has failed (err says why, naming the peer).
 */
int tp_connect(struct tp_ctx *ctx, const struct tp_config *cfg,
	       const char *addr, struct tp_link **out,
	       char *err, size_t errlen);

/* Listens on addr ("host:port"; port 0 picks one: see tp_listener_port). */
int tp_listen(struct tp_ctx *ctx, const struct tp_config *cfg,
	      const char *addr, struct tp_listener **out,
	      char *err, size_t errlen);
uint16_t tp_listener_port(const struct tp_listener *l);
/*
 * Waits up to timeout_ms (<0: forever) for the next link whose handshake
 * completed.  Refused peers never show up here; each refusal is one log
 * line and a counter (tp_listener_refused).
 */
int tp_accept(struct tp_listener *l, int timeout_ms, struct tp_link **out);
uint64_t tp_listener_refused(const struct tp_listener *l);
void tp_listener_free(struct tp_listener *l);

/* Closes the link (a BYE to the peer if it is still up) and frees it. */
void tp_link_free(struct tp_link *link);
/* Fails the link now as if the wire were cut; tp_recv reports -ECONNABORTED. */
void tp_link_abort(struct tp_link *link);

unsigned tp_link_nr_bulk(const struct tp_link *link);
const char *tp_link_peer(const struct tp_link *link);
/* The session's features (intersection of both offers). */
uint64_t tp_link_features(const struct tp_link *link);

/*
 * Sends one record.  chan 0 is control, 1..nr_bulk bulk.  epoch must not be
 * below the last epoch sent on that channel.  type must be a record type
 * the wire format knows (wire.h).  Blocks while the channel is over its
 * send_limit.  Returns 0 once the record is queued (not when it arrives).
 */
int tp_send(struct tp_link *link, unsigned chan, uint32_t type,
	    uint64_t epoch, const void *body, size_t len);
int tp_send_nb(struct tp_link *link, unsigned chan, uint32_t type,
	       uint64_t epoch, const void *body, size_t len);
/*
 * Sends a SYNC for epoch on every channel.  The peer's tp_recv returns a
 * message of type TP_MSG_SYNC (on channel 0) only after every record sent
 * on any channel before this call.
 */
int tp_sync(struct tp_link *link, uint64_t epoch);
/* Waits until everything queued so far has been handed to the kernel. */
int tp_flush(struct tp_link *link, int timeout_ms);

/* Type of the message tp_recv returns for a peer's tp_sync. */
#define TP_MSG_SYNC 0x00000107u

struct tp_msg {
	unsigned chan;
	uint32_t type;
	uint32_t flags;
	uint64_t epoch;
	uint32_t len;
	uint8_t *body;     /* len bytes, owned by the message */
};

/*
 * Next verified record from any channel.  0 and *out set; -ETIMEDOUT; or,
 * once the link has failed and its verified records are all handed out,
 * the link's error (err says why).
 */
int tp_recv(struct tp_link *link, int timeout_ms, struct tp_msg **out);
void tp_msg_free(struct tp_msg *msg);
/* The error that failed the link, or 0 while it is up. */
int tp_link_error(const struct tp_link *link, char *err, size_t errlen);

struct tp_chan_stats {
	uint64_t bytes_sent, bytes_recv;      /* record bytes, headers included */
	uint64_t records_sent, records_recv;
	uint64_t send_queued;                 /* bytes not yet in the kernel */
	uint64_t recv_queued;                 /* bytes not yet consumed */
	uint64_t send_blocked;                /* times tp_send waited */
	uint64_t recv_paused;                 /* times reading stopped */
};

struct tp_stats {
	unsigned nr_chan;                     /* 1 + nr_bulk */
	struct tp_chan_stats chan[1 + TP_MAX_BULK];
	uint64_t bytes_sent, bytes_recv;      /* sums over channels */
	uint64_t records_sent, records_recv;
	double send_mbps, recv_mbps;          /* since the link came up */
	double rtt_us;                        /* last ping, 0 before one */
	double rtt_avg_us;                    /* smoothed (1/8) */
	uint64_t pings;
	double up_seconds;
};

void tp_link_stats(struct tp_link *link, struct tp_stats *out);

#endif
