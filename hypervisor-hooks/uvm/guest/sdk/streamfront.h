/*
 * streamfront.h - the guest front end of the uvm stream device
 * (protocol: uvm_dev.h): client connections terminated by the host,
 * carried as framed OPEN / DATA / CLOSE / CREDIT messages on two byte
 * rings.
 *
 * Made for a single-threaded, event-driven server on one vCPU:
 *
 *	stream_init();
 *	for (;;) {
 *		n = stream_poll(ev, NEV, 1);       blocks until something happens
 *		for each ev: OPEN / READABLE / WRITABLE / HUP on ev.conn
 *		stream_read / stream_write / stream_close
 *	}
 *
 * Events are edge-triggered and coalesced per connection: READABLE is
 * reported when new bytes arrive (read until stream_read() returns 0, or
 * use stream_readable()); WRITABLE when send credit or ring space comes
 * back after a stream_write() that accepted less than it was given; HUP
 * when the client closed (bytes already received stay readable; writes
 * are still accepted, the host may drop them); OPEN once per new
 * connection.  After stream_close() the id is no longer the caller's: no
 * events are reported for it and calls on it do nothing, until a later
 * OPEN reuses it.
 *
 * Flow control: each connection has a receive buffer of
 * UVM_STREAM_WINDOW bytes, which is the credit the host starts with;
 * bytes taken with stream_read() are granted back with CREDIT messages.
 * stream_write() sends only as much as the host's credit and the tx ring
 * allow, and returns the bytes it took (0 when none now); a connection
 * out of credit blocks nobody else.
 *
 * Output (DATA, CREDIT, CLOSE) is published on the tx ring at once;
 * stream_flush(), which stream_poll() calls before it looks for events or
 * sleeps, notifies UVM_PORT_STREAM when the host asked for it (its tx
 * prod_event or rx cons_event fell in the range we moved since the last
 * notification).  Call it yourself to push output out without polling.
 * Before sleeping, stream_poll() sets rx prod_event = cons + 1 (and tx
 * cons_event when it waits for ring space) and looks again, so no wake-up
 * is lost.  The stream port is kept masked except while stream_poll()
 * sleeps, so other waits (blkfront) are not woken by
 * stream traffic.  Not thread-safe: one vCPU uses it (stream_poll binds
 * the port to the vCPU that sleeps in it).
 */
#ifndef UVM_STREAMFRONT_H
#define UVM_STREAMFRONT_H

#include <stddef.h>
#include <stdint.h>

#define STREAM_EV_OPEN     0x1u
#define STREAM_EV_READABLE 0x2u
#define STREAM_EV_WRITABLE 0x4u
#define STREAM_EV_HUP      0x8u

struct stream_event {
	uint32_t conn;   /* 1..UVM_STREAM_MAX_CONNS */
	uint32_t events; /* STREAM_EV_* */
};

struct stream_stats {
	uint64_t opened, closed, refused;
	uint64_t rx_bytes, tx_bytes;
	uint64_t bad_msgs;  /* host messages ignored as invalid */
};

/* Attach the stream device: 0, or -ENODEV / -ENOMEM. */
int stream_init(void);
/*
 * Up to max events into ev; with block, sleep until there is at least
 * one.  Returns the number of events, or -EIO once the rings are found
 * corrupt (the device is then dead).
 */
int stream_poll(struct stream_event *ev, int max, int block);
/* Bytes buffered for reading on conn. */
size_t stream_readable(uint32_t conn);
/* Take up to len buffered bytes; returns how many. */
size_t stream_read(uint32_t conn, void *buf, size_t len);
/* Bytes stream_write() would take now (credit and ring space). */
size_t stream_writable(uint32_t conn);
/* Send up to len bytes; returns how many were taken (0: try later). */
size_t stream_write(uint32_t conn, const void *buf, size_t len);
/* Done with conn: the host is told, the id released after its CLOSE. */
void stream_close(uint32_t conn);
/* Publish pending control messages and notify the host if needed. */
void stream_flush(void);
/* Connections open to the application (OPEN seen, not yet closed). */
uint32_t stream_conn_count(void);
void stream_get_stats(struct stream_stats *st);

#endif
