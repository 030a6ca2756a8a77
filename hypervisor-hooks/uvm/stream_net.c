/*
 * stream_net.c - the socket side of the stream device back end (stream.c
 * has the design): the listening socket and its address, accepting
 * clients (each takes the lowest free connection id; when descriptors run
 * out the listener pauses for STREAM_RETRY_MS or until a client leaves),
 * the epoll wait of the device's thread, reading a client into one DATA
 * message at most its credit long, writing released guest output to a
 * client, and closing a client's socket.
 *
 * Client sockets are non-blocking and edge-triggered: `readable` and
 * `writable` record the last edge and are cleared on EAGAIN.
 */
#include "log.h"
#include "stream_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- client sockets: writing guest output, reading input ----------------- */

/* Shut and close a client socket.  Unread input is drained first: closing
 * with unread data makes the kernel reset the connection and drop what is
 * still queued for the client. */
void uvm_stream_close_fd(struct uvm_stream *s, struct uvm_stream_conn *c)
{
	if (c->fd < 0)
		return;
	(void)epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	(void)shutdown(c->fd, SHUT_WR);
	for (int i = 0; i < 16; i++)
		if (recv(c->fd, s->rbuf, sizeof(s->rbuf), MSG_DONTWAIT) <= 0)
			break;
	close(c->fd);
	c->fd = -1;
}

/* Write released output while the socket takes it. */
void uvm_stream_write_out(struct uvm_stream *s, struct uvm_stream_conn *c)
{
	while (c->o_out < c->o_rel && c->writable && !c->sock_dead) {
		uint32_t at = (uint32_t)(c->o_out % UVM_STREAM_WINDOW);
		uint64_t n = c->o_rel - c->o_out;
		ssize_t w;

		if (n > UVM_STREAM_WINDOW - at)
			n = UVM_STREAM_WINDOW - at;
		w = send(c->fd, c->obuf + at, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			c->writable = false;
			break;
		}
		if (w < 0) {
			uvm_stream_client_gone(s, c, strerror(errno), true);
			break;
		}
		c->o_out += (uint64_t)w;
		c->credit_owed += (uint32_t)w;
		s->st.bytes_out += (uint64_t)w;
	}
}

/* One read from a client into one DATA message. */
static void uvm_stream_read_one(struct uvm_stream *s, struct uvm_stream_conn *c,
				uint32_t *space)
{
	uint32_t max = *space - UVM_SCODEC_HDR_SIZE;
	ssize_t n;

	if (max > c->host_credit)
		max = c->host_credit;
	if (max > UVM_STREAM_MAX_DATA)
		max = UVM_STREAM_MAX_DATA;
	do
		n = recv(c->fd, s->rbuf, max, MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n > 0) {
		if (uvm_stream_put(s, UVM_STREAM_DATA, c->id, 0, s->rbuf,
				   (uint32_t)n, space) == 0) {
			c->host_credit -= (uint32_t)n;
			s->st.bytes_in += (uint64_t)n;
		}
	} else if (n == 0) {
		uvm_stream_client_gone(s, c, "closed its side", false);
		return;
	} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
		c->readable = false;
	} else {
		uvm_stream_client_gone(s, c, strerror(errno), true);
		return;
	}
	uvm_stream_requeue(s, c); /* at the tail again: round robin */
}

bool uvm_stream_read_clients(struct uvm_stream *s, uint32_t *space)
{
	struct uvm_stream_conn *c;
	bool progress = false;

	for (int i = 0; i < STREAM_READ_BUDGET && !s->broken; i++) {
		if (*space < uvm_scodec_msg_bytes(1))
			break;
		c = uvm_stream_q_pop(s, UVM_STREAM_Q_READ);
		if (c == NULL)
			break;
		uvm_stream_read_one(s, c, space);
		progress = true;
	}
	return progress;
}

/* ---- accepting ----------------------------------------------------------- */

static void uvm_stream_peer_name(const struct sockaddr_storage *ss,
				 char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
		port = ntohs(a->sin_port);
		snprintf(buf, len, "%s:%u", host, port);
	} else {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
		port = ntohs(a->sin6_port);
		snprintf(buf, len, "[%s]:%u", host, port);
	}
}

static uint64_t uvm_stream_tag(enum uvm_stream_tag kind, uint32_t id, int fd)
{
	return (uint64_t)kind | (uint64_t)id << 8 | (uint64_t)(uint32_t)fd << 32;
}

static int uvm_stream_epoll_add(struct uvm_stream *s, int fd, uint32_t events,
				uint64_t tag)
{
	struct epoll_event ev = { .events = events, .data.u64 = tag };

	return epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : -errno;
}

static uint32_t uvm_stream_free_id(const struct uvm_stream *s)
{
	for (uint32_t id = 1; id <= UVM_STREAM_MAX_CONNS; id++)
		if (s->conn[id] == NULL)
			return id;
	return 0;
}

struct uvm_stream_conn *uvm_stream_conn_new(struct uvm_stream *s, uint32_t id,
					    int fd)
{
	struct uvm_stream_conn *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->id = id;
	c->fd = fd;
	c->writable = true;
	s->conn[id] = c;
	return c;
}

static void uvm_stream_accept_one(struct uvm_stream *s, int fd,
				  const struct sockaddr_storage *ss)
{
	uint32_t id = uvm_stream_free_id(s);
	struct uvm_stream_conn *c;
	char peer[STREAM_PEER_LEN];
	int one = 1;

	uvm_stream_peer_name(ss, peer, sizeof(peer));
	c = id ? uvm_stream_conn_new(s, id, fd) : NULL;
	if (c == NULL || uvm_stream_epoll_add(s, fd, EPOLLIN | EPOLLOUT |
					      EPOLLRDHUP | EPOLLET,
					      uvm_stream_tag(UVM_STREAM_TAG_CLIENT,
							     id, fd)) != 0) {
		s->st.refused++;
		if ((s->st.refused & (s->st.refused - 1)) == 0) /* 1, 2, 4.. */
			log_warn("uvm: stream: client %s refused: %s", peer,
				 id ? "out of memory" : "all connection ids in use");
		if (c != NULL)
			s->conn[id] = NULL;
		free(c);
		close(fd);
		return;
	}
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	s->st.accepted++;
	log_debug("uvm: stream: conn %u: client %s connected", id, peer);
	uvm_stream_set_state(c, UVM_STREAM_CONN_OPEN);
	uvm_stream_requeue(s, c);
}

/* Out of descriptors: stop polling the listener until a client leaves or
 * STREAM_RETRY_MS pass. */
void uvm_stream_listen_pause(struct uvm_stream *s, bool pause)
{
	struct epoll_event ev = {
		.events = pause ? 0 : EPOLLIN,
		.data.u64 = uvm_stream_tag(UVM_STREAM_TAG_LISTEN, 0, s->lfd) };

	if (pause == s->listen_paused || s->lfd < 0)
		return;
	if (pause && !s->fds_short)
		log_warn("uvm: stream: accept on %s: %s; new clients wait",
			 s->listen, strerror(errno));
	s->fds_short |= pause;
	if (pause) {
		clock_gettime(CLOCK_MONOTONIC, &s->retry_at);
		s->retry_at.tv_nsec += STREAM_RETRY_MS * 1000000L;
		s->retry_at.tv_sec += s->retry_at.tv_nsec / 1000000000L;
		s->retry_at.tv_nsec %= 1000000000L;
	}
	(void)epoll_ctl(s->epfd, EPOLL_CTL_MOD, s->lfd, &ev);
	s->listen_paused = pause;
}

static void uvm_stream_accept(struct uvm_stream *s)
{
	for (int i = 0; i < STREAM_EVENTS && s->lfd >= 0; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int fd = accept4(s->lfd, (struct sockaddr *)&ss, &len,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd >= 0) {
			s->fds_short = false;
			uvm_stream_accept_one(s, fd, &ss);
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
		    errno == ENOMEM)
			uvm_stream_listen_pause(s, true);
		break;
	}
}

/* ---- the wait ------------------------------------------------------------ */

static void uvm_stream_on_client(struct uvm_stream *s, uint32_t id, int fd,
				 uint32_t events)
{
	struct uvm_stream_conn *c = id <= UVM_STREAM_MAX_CONNS ? s->conn[id]
								: NULL;

	if (c == NULL || c->fd != fd)
		return; /* an event of a socket closed in this batch */
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		c->readable = true;
	if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
		c->writable = true;
	uvm_stream_requeue(s, c);
}

static void uvm_stream_drain_fd(int fd)
{
	uint64_t v;

	while (read(fd, &v, sizeof(v)) < 0 && errno == EINTR)
		;
}

/* Sleep until something happens (timeout 0: only collect events). */
void uvm_stream_wait(struct uvm_stream *s, int timeout)
{
	struct epoll_event ev[STREAM_EVENTS];
	int n = epoll_wait(s->epfd, ev, STREAM_EVENTS, timeout);

	for (int i = 0; i < n; i++) {
		uint64_t tag = ev[i].data.u64;

		switch ((enum uvm_stream_tag)(tag & 0xff)) {
		case UVM_STREAM_TAG_LISTEN:
			if (!s->broken)
				uvm_stream_accept(s);
			break;
		case UVM_STREAM_TAG_KICK:
			uvm_stream_drain_fd(s->kick_fd);
			break;
		case UVM_STREAM_TAG_CTL:
			uvm_stream_drain_fd(s->ctl_fd);
			break;
		case UVM_STREAM_TAG_CLIENT:
			uvm_stream_on_client(s, (uint32_t)(tag >> 8) & 0xffffff,
					     (int)(uint32_t)(tag >> 32),
					     ev[i].events);
			break;
		}
	}
}

/* ---- listening ----------------------------------------------------------- */

/* "A.B.C.D:PORT" or "[IPV6]:PORT" (numeric only; port 0 picks one). */
static int uvm_stream_parse_addr(const char *listen,
				 struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
	bool bracket = listen[0] == '[';
	char host[INET6_ADDRSTRLEN + 1];
	const char *port, *end;
	unsigned long p;
	size_t hlen;
	char *stop;

	memset(ss, 0, sizeof(*ss));
	end = bracket ? strchr(listen, ']') : strrchr(listen, ':');
	if (end == NULL || (bracket && end[1] != ':'))
		return -EINVAL;
	hlen = (size_t)(end - listen) - bracket;
	port = end + 1 + bracket;
	if (hlen == 0 || hlen >= sizeof(host) || *port < '0' || *port > '9')
		return -EINVAL;
	memcpy(host, listen + bracket, hlen);
	host[hlen] = '\0';
	errno = 0;
	p = strtoul(port, &stop, 10);
	if (errno != 0 || *stop != '\0' || p > 65535)
		return -EINVAL;
	if (!bracket && inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons((uint16_t)p);
		*len = sizeof(*v4);
		return 0;
	}
	if (bracket && inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons((uint16_t)p);
		*len = sizeof(*v6);
		return 0;
	}
	return -EINVAL;
}

int uvm_stream_listen_on(struct uvm_stream *s)
{
	struct sockaddr_storage ss;
	socklen_t len = 0;
	char name[STREAM_PEER_LEN];
	int one = 1, rc;

	if (uvm_stream_parse_addr(s->listen, &ss, &len) != 0) {
		log_error("uvm: stream: listen address \"%s\": want A.B.C.D:PORT "
			  "or [IPV6]:PORT", s->listen);
		return -EINVAL;
	}
	s->lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
			0);
	if (s->lfd < 0 ||
	    setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(s->lfd, (struct sockaddr *)&ss, len) ||
	    listen(s->lfd, STREAM_BACKLOG) ||
	    getsockname(s->lfd, (struct sockaddr *)&ss, &len)) {
		rc = -errno;
		log_error("uvm: stream: listen on %s: %s", s->listen,
			  strerror(-rc));
		return rc;
	}
	uvm_stream_peer_name(&ss, name, sizeof(name));
	log_info("uvm: stream device listening on %s", name);
	return uvm_stream_epoll_add(s, s->lfd, EPOLLIN,
				    uvm_stream_tag(UVM_STREAM_TAG_LISTEN, 0,
						   s->lfd));
}

int uvm_stream_fds(struct uvm_stream *s)
{
	int rc;

	s->epfd = epoll_create1(EPOLL_CLOEXEC);
	s->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	s->ctl_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (s->epfd < 0 || s->kick_fd < 0 || s->ctl_fd < 0) {
		rc = -errno;
		log_error("uvm: stream: epoll/eventfd: %s", strerror(-rc));
		return rc;
	}
	rc = uvm_stream_epoll_add(s, s->kick_fd, EPOLLIN,
				  uvm_stream_tag(UVM_STREAM_TAG_KICK, 0, 0));
	if (rc == 0)
		rc = uvm_stream_epoll_add(s, s->ctl_fd, EPOLLIN,
					  uvm_stream_tag(UVM_STREAM_TAG_CTL, 0, 0));
	return rc;
}
