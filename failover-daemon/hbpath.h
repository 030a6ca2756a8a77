/*
 * hbpath.h - the second heartbeat path: small UDP datagrams between the
 * two hosts' `heartbeat` addresses, independent of the replication link.
 * It only ever stops a promotion (the primary is still alive), so it is
 * not authenticated; a datagram that does not name this VM is dropped.
 */
#ifndef TANDEM_HBPATH_H
#define TANDEM_HBPATH_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define HB_MSG_SIZE 96

struct hb_path {
	int fd;                        /* -1: no second path configured */
	struct sockaddr_storage peer;
	socklen_t peer_len;
	char vm[64];
	uint64_t last_rx_ns;           /* 0: never heard */
	uint32_t peer_role;
	uint64_t peer_generation, peer_epoch;
	uint64_t dropped;
};

/* Resolve HOST:PORT ([v6]:port accepted) into sa.  -EINVAL with a message
 * in err naming the address. */
int hb_resolve(const char *addr, struct sockaddr_storage *sa, socklen_t *len,
	       char *err, size_t errlen);
/* local/peer "" = no path (fd -1, 0 returned). */
int hb_open(struct hb_path *hb, const char *vm, const char *local,
	    const char *peer, char *err, size_t errlen);
void hb_close(struct hb_path *hb);
void hb_send(struct hb_path *hb, uint32_t role, uint64_t generation,
	     uint64_t epoch);
/* Drain the socket (call on POLLIN). */
void hb_recv(struct hb_path *hb);
/* Heard from the peer within window_ms, as a primary of at least
 * `generation`. */
bool hb_primary_alive(const struct hb_path *hb, uint64_t window_ms,
		      uint64_t generation);
/* Heard from the peer within window_ms, whatever its role. */
bool hb_alive(const struct hb_path *hb, uint64_t window_ms);

#endif
