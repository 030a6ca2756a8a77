/*
 * hbpath.c - the UDP heartbeat path (see hbpath.h).
 *
 * Datagram (big-endian): "TNDMHB01", u32 role, u32 name length, u64
 * generation, u64 epoch, name (<= 63 bytes), zero padding to HB_MSG_SIZE.
 */
#include "clock.h"
#include "hbpath.h"
#include "log.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define HB_MAGIC "TNDMHB01"

int hb_resolve(const char *addr, struct sockaddr_storage *sa, socklen_t *len,
	       char *err, size_t errlen)
{
	char host[128];
	const char *colon = strrchr(addr, ':');
	struct addrinfo hints = { .ai_family = AF_UNSPEC,
				  .ai_socktype = SOCK_DGRAM }, *ai = NULL;
	size_t hl;
	int rc;

	if (colon == NULL || colon == addr || colon[1] == '\0') {
		snprintf(err, errlen, "address \"%s\" is not HOST:PORT", addr);
		return -EINVAL;
	}
	hl = (size_t)(colon - addr);
	if (addr[0] == '[' && hl >= 2 && addr[hl - 1] == ']') {
		addr++;
		hl -= 2;
	}
	if (hl >= sizeof(host)) {
		snprintf(err, errlen, "address \"%s\": host too long", addr);
		return -EINVAL;
	}
	memcpy(host, addr, hl);
	host[hl] = '\0';
	rc = getaddrinfo(host, colon + 1, &hints, &ai);
	if (rc != 0) {
		snprintf(err, errlen, "address \"%s\": %s", addr,
			 gai_strerror(rc));
		return -EINVAL;
	}
	memcpy(sa, ai->ai_addr, ai->ai_addrlen);
	*len = ai->ai_addrlen;
	freeaddrinfo(ai);
	return 0;
}

int hb_open(struct hb_path *hb, const char *vm, const char *local,
	    const char *peer, char *err, size_t errlen)
{
	struct sockaddr_storage la;
	socklen_t ll;
	int rc;

	memset(hb, 0, sizeof(*hb));
	hb->fd = -1;
	snprintf(hb->vm, sizeof(hb->vm), "%s", vm);
	if (local[0] == '\0' || peer[0] == '\0')
		return 0;
	rc = hb_resolve(local, &la, &ll, err, errlen);
	if (rc == 0)
		rc = hb_resolve(peer, &hb->peer, &hb->peer_len, err, errlen);
	if (rc != 0)
		return rc;
	hb->fd = socket(la.ss_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
			0);
	if (hb->fd < 0 || bind(hb->fd, (struct sockaddr *)&la, ll) != 0) {
		rc = -errno;
		snprintf(err, errlen, "heartbeat address %s: %s", local,
			 strerror(errno));
		hb_close(hb);
		return rc;
	}
	return 0;
}

void hb_close(struct hb_path *hb)
{
	if (hb->fd >= 0)
		close(hb->fd);
	hb->fd = -1;
}

static void put_be(uint8_t *p, uint64_t v, int n)
{
	for (int i = n - 1; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint64_t get_be(const uint8_t *p, int n)
{
	uint64_t v = 0;

	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

void hb_send(struct hb_path *hb, uint32_t role, uint64_t generation,
	     uint64_t epoch)
{
	uint8_t m[HB_MSG_SIZE] = { 0 };
	size_t n = strnlen(hb->vm, 63);

	if (hb->fd < 0)
		return;
	memcpy(m, HB_MAGIC, 8);
	put_be(m + 8, role, 4);
	put_be(m + 12, n, 4);
	put_be(m + 16, generation, 8);
	put_be(m + 24, epoch, 8);
	memcpy(m + 32, hb->vm, n);
	(void)sendto(hb->fd, m, sizeof(m), 0, (struct sockaddr *)&hb->peer,
		     hb->peer_len);
}

static bool hb_parse(struct hb_path *hb, const uint8_t *m, ssize_t len)
{
	uint64_t n;

	if (len != HB_MSG_SIZE || memcmp(m, HB_MAGIC, 8) != 0)
		return false;
	n = get_be(m + 12, 4);
	if (n != strnlen(hb->vm, 63) || memcmp(m + 32, hb->vm, n) != 0)
		return false;
	hb->peer_role = (uint32_t)get_be(m + 8, 4);
	hb->peer_generation = get_be(m + 16, 8);
	hb->peer_epoch = get_be(m + 24, 8);
	hb->last_rx_ns = mono_ns();
	return true;
}

void hb_recv(struct hb_path *hb)
{
	uint8_t m[HB_MSG_SIZE + 1];
	ssize_t n;

	while (hb->fd >= 0 && (n = recv(hb->fd, m, sizeof(m), 0)) >= 0)
		if (!hb_parse(hb, m, n))
			hb->dropped++;
}

bool hb_alive(const struct hb_path *hb, uint64_t window_ms)
{
	return hb->fd >= 0 && hb->last_rx_ns != 0 &&
	       mono_ns() - hb->last_rx_ns < window_ms * 1000000ULL;
}

bool hb_primary_alive(const struct hb_path *hb, uint64_t window_ms,
		      uint64_t generation)
{
	return hb_alive(hb, window_ms) && hb->peer_role == 1 /* primary */ &&
	       hb->peer_generation >= generation;
}
