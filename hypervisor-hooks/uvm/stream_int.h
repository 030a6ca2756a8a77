/*
 * stream_int.h - internal to the stream device back end: its state, shared
 * by stream.c (the rings, the connection table, the thread, the ops) and
 * stream_net.c (the sockets: listening, accepting, reading clients,
 * writing guest output to them).  Both files run on the device's thread,
 * or on the controller's while it is parked; nothing here is locked
 * except `want` and `parked`.  See stream.c for the design.
 */
#ifndef TANDEM_UVM_STREAM_INT_H
#define TANDEM_UVM_STREAM_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <time.h>

#include "dev.h"
#include "stream_codec.h"
#include "uvm_dev.h"

#define STREAM_RING_BYTES ((uint64_t)UVM_STREAM_RING_PAGES * UVM_PAGE_SIZE)
#define STREAM_SEGS 32          /* epoch runs kept per conn, then merged */
#define STREAM_TX_BUDGET 256    /* tx messages taken per pass */
#define STREAM_READ_BUDGET 64   /* client reads per pass */
#define STREAM_ROUNDS 16        /* passes before looking at control again */
#define STREAM_EVENTS 64
#define STREAM_BACKLOG 128
#define STREAM_PEER_LEN 64
#define STREAM_RETRY_MS 250     /* accept again after running out of fds */

enum uvm_stream_conn_state {
	UVM_STREAM_CONN_FREE = 0,
	UVM_STREAM_CONN_OPEN,
	UVM_STREAM_CONN_CLIENT_DONE,
	UVM_STREAM_CONN_GUEST_DONE,
	UVM_STREAM_CONN_CLOSING,
	UVM_STREAM_CONN_NR_STATES
};

/* What the controller wants of the thread. */
enum uvm_stream_run {
	UVM_STREAM_RUN = 0,
	UVM_STREAM_PARK,
	UVM_STREAM_STOP,
};

/* epoll tags: kind in the low byte, conn id above it, fd in the top half. */
enum uvm_stream_tag {
	UVM_STREAM_TAG_LISTEN = 1,
	UVM_STREAM_TAG_KICK,
	UVM_STREAM_TAG_CTL,
	UVM_STREAM_TAG_CLIENT,
};

/* Work queues a connection can be on. */
enum uvm_stream_q {
	UVM_STREAM_Q_CTL = 0,  /* owes the guest OPEN, CREDIT or CLOSE */
	UVM_STREAM_Q_READ,     /* client readable and the guest gave credit */
	UVM_STREAM_Q_OUT,      /* guest output held, or a close to carry out */
	UVM_STREAM_Q_NR
};

/* A run of guest output bytes taken in one gate epoch. */
struct uvm_stream_seg {
	uint64_t epoch;
	uint64_t end;  /* o_in after its last byte */
};

struct uvm_stream_conn {
	uint32_t id;
	enum uvm_stream_conn_state state;
	int fd;                    /* -1 once closed, or after a load */
	char peer[STREAM_PEER_LEN];
	bool open_sent, close_sent, close_got, close_want;
	bool rd_eof;               /* nothing more is read from the client */
	bool sock_dead;            /* writes failed: output is discarded */
	bool readable, writable;   /* edge-triggered readiness */
	uint32_t host_credit;      /* host -> guest bytes we may still send */
	uint32_t guest_credit;     /* guest -> host bytes it may still send */
	uint32_t credit_owed;      /* written to the client, not yet granted */
	uint8_t *obuf;             /* UVM_STREAM_WINDOW bytes, as a ring */
	uint64_t o_in, o_out, o_rel; /* appended, written, released (ever) */
	struct uvm_stream_seg seg[STREAM_SEGS];
	unsigned seg_head, nr_seg;
	uint64_t close_epoch;      /* gate epoch of the guest's CLOSE */
	bool on[UVM_STREAM_Q_NR];
	TAILQ_ENTRY(uvm_stream_conn) link[UVM_STREAM_Q_NR];
};

TAILQ_HEAD(uvm_stream_connq, uvm_stream_conn);

struct uvm_stream_stats {
	uint64_t accepted, refused, bytes_in, bytes_out;
	uint64_t drop_unknown;  /* guest messages for ids it does not have */
	uint64_t drop_closed;   /* guest messages after its own CLOSE */
	uint64_t drop_bytes;    /* guest bytes for clients that are gone */
	uint64_t violations;
};

struct uvm_stream {
	struct uvm_dev dev;        /* must be first */
	char *listen;
	int lfd, epfd, kick_fd, ctl_fd;
	bool listen_paused;        /* out of descriptors: accept later */
	bool fds_short;            /* said so in the log; cleared by an accept */
	struct timespec retry_at;  /* while paused: when to try again */
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t lock;      /* guards want and parked */
	pthread_cond_t cond;
	enum uvm_stream_run want;
	bool parked;
	/* The thread's, or the controller's while the thread is parked. */
	bool sync_indices;         /* take tx cons / rx prod from memory */
	bool raise_on_resume;
	bool broken, torn_down;
	struct uvm_bytering *tx, *rx;
	struct uvm_scodec_ring txr, rxr;
	uint32_t tx_cons, rx_prod; /* the host's own indices */
	bool rx_wait;              /* something waits for rx space */
	struct uvm_stream_conn *conn[UVM_STREAM_MAX_CONNS + 1];
	struct uvm_stream_connq q[UVM_STREAM_Q_NR];
	struct uvm_stream_stats st;
	char why[160];
	uint8_t rbuf[UVM_STREAM_MAX_DATA];
};

static inline struct uvm_stream *uvm_stream_of(struct uvm_dev *dev)
{
	return (struct uvm_stream *)dev;
}

/* ---- stream.c ------------------------------------------------------------ */

/* The only way a connection changes state (logged at debug). */
void uvm_stream_set_state(struct uvm_stream_conn *c,
			  enum uvm_stream_conn_state to);
/* Take the first connection off a work queue, or NULL. */
struct uvm_stream_conn *uvm_stream_q_pop(struct uvm_stream *s,
					 enum uvm_stream_q q);
/* Put c on exactly the queues its state calls for (keeping its place). */
void uvm_stream_requeue(struct uvm_stream *s, struct uvm_stream_conn *c);
/* The client went away (EOF, or an error when `dead`); may free c. */
void uvm_stream_client_gone(struct uvm_stream *s, struct uvm_stream_conn *c,
			    const char *why, bool dead);
/* Put one message on rx; -ENOSPC when it does not fit in *space. */
int uvm_stream_put(struct uvm_stream *s, uint16_t type, uint32_t conn,
		   uint32_t arg, const void *payload, uint32_t len,
		   uint32_t *space);

/* ---- stream_net.c -------------------------------------------------------- */

/* Shut and close c's socket (input drained first); -1 after. */
void uvm_stream_close_fd(struct uvm_stream *s, struct uvm_stream_conn *c);
/* Write c's released output while its socket takes it. */
void uvm_stream_write_out(struct uvm_stream *s, struct uvm_stream_conn *c);
/* Read readable clients into DATA messages within *space; true if any. */
bool uvm_stream_read_clients(struct uvm_stream *s, uint32_t *space);
/* A new connection in the table under id, with socket fd (or -1). */
struct uvm_stream_conn *uvm_stream_conn_new(struct uvm_stream *s, uint32_t id,
					    int fd);
/* Stop (out of descriptors) or restart polling the listener. */
void uvm_stream_listen_pause(struct uvm_stream *s, bool pause);
/* Sleep until something happens (timeout 0: only collect events). */
void uvm_stream_wait(struct uvm_stream *s, int timeout);
/* Create the listening socket on s->listen and poll it. */
int uvm_stream_listen_on(struct uvm_stream *s);
/* Create the epoll set and the kick and control eventfds. */
int uvm_stream_fds(struct uvm_stream *s);

#endif
