/*
 * test_stream.c - the uvm stream device back end (hypervisor-hooks/uvm/
 * stream*.c) between real TCP clients on 127.0.0.1 and this test, which
 * plays the guest on the two byte rings.  The five dev helpers of dev.c
 * are defined here (guest memory is a plain buffer, raises wake the
 * test's guest, the output gate is three variables), so the static
 * library's dev.o and domain.o are never linked.
 *
 *  - echo, a client's half-close (the guest still answers), the guest
 *    closing first, an id reused only after both CLOSEs;
 *  - flow control: guest -> client bounded by the window and re-granted as
 *    bytes reach the client; client -> guest bounded by the guest's
 *    credit; a full rx ring stops reading clients but not guest output,
 *    and everything resumes, in order, once the guest consumes;
 *  - the output gate holds guest bytes and the guest's CLOSE until their
 *    epoch is released, epoch by epoch; client input is never held;
 *  - a client that never reads stalls only its own connection;
 *  - protocol violations (DATA beyond credit, tx prod running ahead, a bad
 *    message type, an impossible rx cons) stop the device: clients are
 *    disconnected, the listener closes, the guest is ignored, and
 *    quiesce / save / free still work;
 *  - quiesce stops all guest memory access and all I/O; resume carries on;
 *  - save / load into a new device on a copy of guest memory: the old
 *    connections get CLOSE (once, only those the guest had not been sent
 *    CLOSE for), guest data for them is credited back, ids come free as
 *    the guest closes them; state calls on a running device are refused;
 *  - listen addresses: malformed ones refused, a port in use refused.
 *
 * Listeners use port 0; the test finds the port from the new listening
 * descriptor.  Waiting is event-driven (the device's raise wakes the
 * guest) with generous deadlines; nothing passes or fails on speed.
 * "Nothing happens" checks wait QUIET_MS and can only miss a bug, never
 * fail a correct device.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "dev.h"
#include "log.h"
#include "stream_codec.h"
#include "uvm.h"
#include "uvm_dev.h"

#define NPAGES 80               /* covers both rings (pfn 16..64) */
#define RING 65536u             /* data bytes of each ring */
#define WIN UVM_STREAM_WINDOW
#define WAIT_MS 5000            /* deadline for anything that must happen */
#define QUIET_MS 300            /* how long "nothing happens" is watched */
#define FD_SCAN 1024
#define MAX_CLIENTS 32

/* ---- the dev helpers stream.c calls -------------------------------------- */

static pthread_mutex_t raise_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t raise_cond = PTHREAD_COND_INITIALIZER;
static uint64_t raises;
static _Atomic uint64_t guest_writes;
static atomic_bool gate_hold;
static _Atomic uint64_t gate_epoch = 1, gate_rel;

void *uvm_dev_guest_ptr(struct uvm_dev *dev, uint64_t pfn, uint64_t count)
{
	if (count == 0 || pfn >= NPAGES || count > NPAGES - pfn)
		return NULL;
	return dev->dom->arena + pfn * UVM_PAGE_SIZE;
}

int uvm_dev_guest_write(struct uvm_dev *dev, uint64_t pfn, uint64_t count,
			void **ptr)
{
	*ptr = uvm_dev_guest_ptr(dev, pfn, count);
	atomic_fetch_add(&guest_writes, 1);
	return *ptr != NULL ? 0 : -EFAULT;
}

void uvm_dev_raise(struct uvm_dev *dev)
{
	(void)dev;
	pthread_mutex_lock(&raise_lock);
	raises++;
	pthread_cond_broadcast(&raise_cond);
	pthread_mutex_unlock(&raise_lock);
}

uint64_t uvm_gate_epoch(const struct uvm_dev *dev)
{
	(void)dev;
	return gate_epoch;
}

uint64_t uvm_gate_released(const struct uvm_dev *dev)
{
	(void)dev;
	return gate_hold ? gate_rel : UINT64_MAX;
}

static void gate_set(bool hold, uint64_t epoch, uint64_t released)
{
	gate_epoch = epoch;
	gate_rel = released;
	gate_hold = hold;
}

/* ---- time and raises ----------------------------------------------------- */

static uint64_t now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static uint64_t raise_count(void)
{
	uint64_t n;

	pthread_mutex_lock(&raise_lock);
	n = raises;
	pthread_mutex_unlock(&raise_lock);
	return n;
}

/* Wait for a raise after r0 was read; false at the deadline. */
static bool raise_wait(uint64_t r0, uint64_t deadline)
{
	bool got;

	pthread_mutex_lock(&raise_lock);
	while (raises == r0 && now_ms() < deadline) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 20 * 1000000L;
		ts.tv_sec += ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
		pthread_cond_timedwait(&raise_cond, &raise_lock, &ts);
	}
	got = raises != r0;
	pthread_mutex_unlock(&raise_lock);
	return got;
}

/* ---- the guest ----------------------------------------------------------- */

struct tguest {
	struct uvm_domain *dom;
	struct uvm_dev *dev;
	int port;
	struct uvm_bytering *tx, *rx;
	struct uvm_scodec_ring txr, rxr;
	uint32_t rx_cons;
	uint64_t credit[UVM_STREAM_MAX_CONNS + 1];  /* the guest may send */
	uint64_t granted[UVM_STREAM_MAX_CONNS + 1]; /* the host may send */
};

static struct tguest ga, gb;
static struct tguest *live[2];
static int clients[MAX_CLIENTS];
static int nr_clients;

static struct uvm_domain *dom_new(void)
{
	struct uvm_domain *dom = calloc(1, sizeof(*dom));

	assert_non_null(dom);
	dom->arena = aligned_alloc(UVM_PAGE_SIZE, NPAGES * UVM_PAGE_SIZE);
	assert_non_null(dom->arena);
	memset(dom->arena, 0, NPAGES * UVM_PAGE_SIZE);
	dom->arena_size = NPAGES * UVM_PAGE_SIZE;
	return dom;
}

static void dom_free(struct uvm_domain *dom)
{
	if (dom != NULL)
		free(dom->arena);
	free(dom);
}

/* Which descriptors are listening sockets. */
static void listeners(bool on[FD_SCAN])
{
	for (int fd = 0; fd < FD_SCAN; fd++) {
		int v = 0;
		socklen_t len = sizeof(v);

		on[fd] = getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) == 0 &&
			 v != 0;
	}
}

/* The port of the one listener that is not in `before`. */
static int new_listener_port(const bool before[FD_SCAN])
{
	static bool now[FD_SCAN];

	listeners(now);
	for (int fd = 0; fd < FD_SCAN; fd++) {
		struct sockaddr_in a;
		socklen_t len = sizeof(a);

		if (!now[fd] || before[fd])
			continue;
		assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
		return ntohs(a.sin_port);
	}
	fail_msg("no new listening socket");
	return -1;
}

static void g_attach(struct tguest *g)
{
	g->tx = (struct uvm_bytering *)(g->dom->arena +
					UVM_STREAM_TX_PFN * UVM_PAGE_SIZE);
	g->rx = (struct uvm_bytering *)(g->dom->arena +
					UVM_STREAM_RX_PFN * UVM_PAGE_SIZE);
	g->txr = (struct uvm_scodec_ring){ .data = g->tx->data, .size = RING };
	g->rxr = (struct uvm_scodec_ring){ .data = g->rx->data, .size = RING };
	g->rx_cons = __atomic_load_n(&g->rx->cons, __ATOMIC_ACQUIRE);
}

/* A stream device on dom (fresh when build), listening on a free port. */
static void g_open_dev(struct tguest *g, bool build)
{
	static bool before[FD_SCAN];

	listeners(before);
	assert_int_equal(uvm_stream_new(g->dom, "127.0.0.1:0", build, &g->dev),
			 0);
	g->port = new_listener_port(before);
	live[g == &gb] = g;
}

static void g_start(struct tguest *g)
{
	memset(g, 0, sizeof(*g));
	g->dom = dom_new();
	g_open_dev(g, true);
	g_attach(g);
	assert_int_equal(g->tx->size, RING);
	assert_int_equal(g->rx->size, RING);
	assert_int_equal(uvm_shared(g->dom)->devices[1].ring_pfn,
			 UVM_STREAM_TX_PFN);
	g->dev->ops->resume(g->dev);
}

static void g_stop(struct tguest *g)
{
	if (g->dev != NULL)
		g->dev->ops->free(g->dev);
	dom_free(g->dom);
	g->dev = NULL;
	g->dom = NULL;
	live[g == &gb] = NULL;
}

/* Bookkeeping of one message the host sent, as a careful guest does it. */
static void g_account(struct tguest *g, const struct uvm_stream_hdr *h)
{
	switch (h->type) {
	case UVM_STREAM_OPEN:
		g->credit[h->conn] = h->arg;
		g->granted[h->conn] = WIN;
		break;
	case UVM_STREAM_DATA:
		assert_true(h->len <= UVM_STREAM_MAX_DATA);
		assert_true(h->len <= g->granted[h->conn]); /* host obeys credit */
		g->granted[h->conn] -= h->len;
		break;
	case UVM_STREAM_CREDIT:
		g->credit[h->conn] += h->arg;
		break;
	}
}

/* Take one rx message if there is one whole (1), else 0. */
static int g_take(struct tguest *g, struct uvm_stream_hdr *h, uint8_t *payload)
{
	uint32_t prod = __atomic_load_n(&g->rx->prod, __ATOMIC_ACQUIRE);
	uint32_t old = g->rx_cons, ev;
	struct uvm_scodec_msg m;
	char why[160] = "";
	int rc = uvm_scodec_next(&g->rxr, RING, g->rx_cons, prod,
				 UVM_SCODEC_ALL_TYPES, &m, why, sizeof(why));

	if (rc < 0)
		fail_msg("rx ring: %s", why);
	if (rc == 0)
		return 0;
	*h = m.hdr;
	if (payload != NULL) {
		memcpy(payload, m.part[0], m.part_len[0]);
		memcpy(payload + m.part_len[0], m.part[1], m.part_len[1]);
	}
	g_account(g, h);
	g->rx_cons = m.next;
	__atomic_store_n(&g->rx->cons, g->rx_cons, __ATOMIC_SEQ_CST);
	ev = __atomic_load_n(&g->rx->cons_event, __ATOMIC_SEQ_CST);
	if ((uint32_t)(g->rx_cons - ev) < (uint32_t)(g->rx_cons - old))
		g->dev->ops->notify(g->dev);
	return 1;
}

/* The next rx message within ms (1), or 0.  A message published without
 * a raise while the guest had asked for one fails the test. */
static int g_recv_raw(struct tguest *g, struct uvm_stream_hdr *h,
		      uint8_t *payload, int ms)
{
	uint64_t deadline = now_ms() + (uint64_t)ms;

	for (;;) {
		uint64_t r0 = raise_count();

		if (g_take(g, h, payload))
			return 1;
		__atomic_store_n(&g->rx->prod_event, g->rx_cons + 1,
				 __ATOMIC_SEQ_CST);
		if (__atomic_load_n(&g->rx->prod, __ATOMIC_SEQ_CST) != g->rx_cons)
			continue;
		if (raise_wait(r0, deadline))
			continue;
		if (__atomic_load_n(&g->rx->prod, __ATOMIC_SEQ_CST) == g->rx_cons)
			return 0;
		if (!raise_wait(r0, now_ms() + WAIT_MS))
			fail_msg("rx message published without a raise");
	}
}

/* Like g_recv_raw, CREDIT only counted (as a real front end does). */
static int g_recv(struct tguest *g, struct uvm_stream_hdr *h,
		  uint8_t *payload, int ms)
{
	for (;;) {
		int rc = g_recv_raw(g, h, payload, ms);

		if (rc != 1 || h->type != UVM_STREAM_CREDIT)
			return rc;
	}
}

static void g_expect(struct tguest *g, uint16_t type, uint32_t conn,
		     struct uvm_stream_hdr *out)
{
	struct uvm_stream_hdr h;

	assert_int_equal(g_recv(g, &h, NULL, WAIT_MS), 1);
	assert_int_equal(h.type, type);
	assert_int_equal(h.conn, conn);
	if (out != NULL)
		*out = h;
}

static uint32_t g_expect_open(struct tguest *g)
{
	struct uvm_stream_hdr h;

	assert_int_equal(g_recv(g, &h, NULL, WAIT_MS), 1);
	assert_int_equal(h.type, UVM_STREAM_OPEN);
	assert_int_equal(h.arg, WIN);
	return h.conn;
}

static void g_expect_quiet(struct tguest *g)
{
	struct uvm_stream_hdr h;

	assert_int_equal(g_recv_raw(g, &h, NULL, QUIET_MS), 0);
}

static void g_publish_tx(struct tguest *g, uint32_t prod, uint32_t next)
{
	uint32_t ev;

	__atomic_store_n(&g->tx->prod, next, __ATOMIC_SEQ_CST);
	ev = __atomic_load_n(&g->tx->prod_event, __ATOMIC_SEQ_CST);
	if ((uint32_t)(next - ev) < (uint32_t)(next - prod))
		g->dev->ops->notify(g->dev);
}

/* Send one message, waiting for tx room; the guest's credit is kept. */
static void g_send(struct tguest *g, uint16_t type, uint32_t conn,
		   uint32_t arg, const void *p, uint32_t len)
{
	struct uvm_stream_hdr h = { .type = type, .conn = conn, .len = len,
				    .arg = arg };
	uint32_t prod = __atomic_load_n(&g->tx->prod, __ATOMIC_RELAXED);
	uint32_t next, space = 0;
	uint64_t deadline = now_ms() + WAIT_MS;

	for (;;) {
		uint32_t cons = __atomic_load_n(&g->tx->cons, __ATOMIC_ACQUIRE);

		assert_int_equal(uvm_scodec_space(RING, prod, cons, &space,
						  NULL, 0), 0);
		if (space >= uvm_scodec_msg_bytes(len))
			break;
		assert_true(now_ms() < deadline);
		usleep(1000);
	}
	assert_int_equal(uvm_scodec_put(&g->txr, prod, space, &h, p, &next), 0);
	if (type == UVM_STREAM_DATA)
		g->credit[conn] -= g->credit[conn] < len ? g->credit[conn] : len;
	if (type == UVM_STREAM_CREDIT)
		g->granted[conn] += arg;
	g_publish_tx(g, prod, next);
}

/* Raw bytes at tx prod, published at once (malformed input). */
static void g_send_raw(struct tguest *g, const void *p, uint32_t len)
{
	uint32_t prod = __atomic_load_n(&g->tx->prod, __ATOMIC_RELAXED);

	for (uint32_t i = 0; i < len; i++)
		g->tx->data[(prod + i) & (RING - 1)] = ((const uint8_t *)p)[i];
	__atomic_store_n(&g->tx->prod, prod + len, __ATOMIC_SEQ_CST);
	g->dev->ops->notify(g->dev);
}

/* Wait until the host has taken everything the guest sent.  Accepting
 * happens only between passes, so a client connecting after this gets an
 * id the guest's CLOSEs freed. */
static void g_wait_tx_taken(struct tguest *g)
{
	uint64_t deadline = now_ms() + WAIT_MS;

	while (__atomic_load_n(&g->tx->cons, __ATOMIC_ACQUIRE) !=
	       __atomic_load_n(&g->tx->prod, __ATOMIC_RELAXED)) {
		assert_true(now_ms() < deadline);
		usleep(1000);
	}
}

static uint32_t g_rx_used(struct tguest *g)
{
	return __atomic_load_n(&g->rx->prod, __ATOMIC_ACQUIRE) - g->rx_cons;
}

/* ---- clients ------------------------------------------------------------- */

static void client_track(int fd)
{
	assert_true(nr_clients < MAX_CLIENTS);
	clients[nr_clients++] = fd;
}

static void client_close(int fd)
{
	for (int i = 0; i < nr_clients; i++)
		if (clients[i] == fd)
			clients[i] = clients[--nr_clients];
	close(fd);
}

/* Connect to port; -errno when refused.  rcvbuf > 0 shrinks its buffer. */
static int client_try(int port, int rcvbuf)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int rc;

	assert_true(fd >= 0);
	if (rcvbuf > 0)
		assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf,
					    sizeof(rcvbuf)), 0);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	client_track(fd);
	return fd;
}

static int client(struct tguest *g)
{
	int fd = client_try(g->port, 0);

	assert_true(fd >= 0);
	return fd;
}

/* One read within ms: bytes, 0 at EOF, -1 on timeout, -errno on error. */
static ssize_t c_read(int fd, void *buf, size_t len, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	ssize_t n;

	if (poll(&p, 1, ms) <= 0)
		return -1;
	n = recv(fd, buf, len, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return -1;
	return n < 0 ? -errno : n;
}

/* Read exactly len bytes within WAIT_MS. */
static void c_read_exact(int fd, void *buf, size_t len)
{
	uint64_t deadline = now_ms() + WAIT_MS;
	size_t got = 0;

	while (got < len) {
		ssize_t n = c_read(fd, (uint8_t *)buf + got, len - got, 50);

		assert_true(n != 0 && n >= -1);
		if (n > 0)
			got += (size_t)n;
		assert_true(got == len || now_ms() < deadline);
	}
}

static void c_expect(int fd, const char *text)
{
	char buf[256];
	size_t len = strlen(text);

	c_read_exact(fd, buf, len);
	assert_memory_equal(buf, text, len);
}

static void c_expect_eof(int fd)
{
	char b;

	assert_int_equal(c_read(fd, &b, 1, WAIT_MS), 0);
}

static void c_expect_quiet(int fd)
{
	char b;

	assert_int_equal(c_read(fd, &b, 1, QUIET_MS), -1);
}

/* The client was disconnected: EOF or a reset, with nothing else. */
static void c_expect_dropped(int fd)
{
	char b;
	ssize_t n = c_read(fd, &b, 1, WAIT_MS);

	assert_true(n == 0 || n == -ECONNRESET);
}

/* The device's listener closes (in time: teardown follows the clients). */
static void expect_refused(int port)
{
	uint64_t deadline = now_ms() + WAIT_MS;
	int fd;

	while ((fd = client_try(port, 0)) >= 0) {
		client_close(fd);
		assert_true(now_ms() < deadline);
		usleep(10000);
	}
	assert_int_equal(fd, -ECONNREFUSED);
}

/* Byte i of a test stream. */
static uint8_t pat(uint64_t i)
{
	return (uint8_t)(i * 131 + (i >> 9) + 7);
}

static void pat_fill(uint8_t *p, uint64_t from, size_t len)
{
	for (size_t i = 0; i < len; i++)
		p[i] = pat(from + i);
}

static bool pat_check(const uint8_t *p, uint64_t from, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != pat(from + i))
			return false;
	return true;
}

/* Push pattern bytes [*off, total) into a non-blocking client. */
static void c_push(int fd, uint64_t *off, uint64_t total)
{
	uint8_t buf[16384];

	while (*off < total) {
		size_t n = total - *off < sizeof(buf) ? (size_t)(total - *off)
						      : sizeof(buf);
		ssize_t w;

		pat_fill(buf, *off, n);
		w = send(fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w <= 0)
			break;
		*off += (uint64_t)w;
	}
}

/* ---- fixtures ------------------------------------------------------------ */

static int setup(void **state)
{
	(void)state;
	gate_set(false, 1, 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	while (nr_clients > 0)
		client_close(clients[0]);
	for (int i = 0; i < 2; i++)
		if (live[i] != NULL)
			g_stop(live[i]);
	gate_set(false, 1, 0);
	return 0;
}

/* ---- echo and close ------------------------------------------------------ */

static void test_echo_half_close(void **state)
{
	struct tguest *g = &ga;
	uint8_t buf[64];
	struct uvm_stream_hdr h;
	int c1, c2, c3;

	(void)state;
	g_start(g);
	c1 = client(g);
	assert_int_equal(g_expect_open(g), 1);
	assert_int_equal(send(c1, "hello", 5, 0), 5);
	assert_int_equal(g_recv(g, &h, buf, WAIT_MS), 1);
	assert_int_equal(h.type, UVM_STREAM_DATA);
	assert_int_equal(h.len, 5);
	assert_memory_equal(buf, "hello", 5);
	g_send(g, UVM_STREAM_DATA, 1, 0, "HELLO", 5);
	c_expect(c1, "HELLO");

	c2 = client(g);
	assert_int_equal(g_expect_open(g), 2);
	/* The client half-closes: the guest hears CLOSE and still answers. */
	assert_int_equal(shutdown(c1, SHUT_WR), 0);
	g_expect(g, UVM_STREAM_CLOSE, 1, NULL);
	g_send(g, UVM_STREAM_DATA, 1, 0, "bye", 3);
	g_send(g, UVM_STREAM_CLOSE, 1, 0, NULL, 0);
	c_expect(c1, "bye");
	c_expect_eof(c1);
	client_close(c1);
	/* Both CLOSEs done: id 1 is free again. */
	c3 = client(g);
	assert_int_equal(g_expect_open(g), 1);
	/* The guest closes first: the client sees EOF, the host answers. */
	g_send(g, UVM_STREAM_CLOSE, 2, 0, NULL, 0);
	c_expect_eof(c2);
	g_expect(g, UVM_STREAM_CLOSE, 2, NULL);
	/* Its client leaving later changes nothing for the guest. */
	client_close(c2);
	g_send(g, UVM_STREAM_DATA, 1, 0, "still", 5);
	c_expect(c3, "still");
	g_stop(g);
}

/* ---- flow control -------------------------------------------------------- */

/* Guest -> client: 256 KiB through a 64 KiB window, granted back only as
 * bytes reach the client. */
static void test_flow_guest_to_client(void **state)
{
	static uint8_t buf[UVM_STREAM_MAX_DATA], rb[65536];
	const uint64_t total = 256 * 1024;
	struct tguest *g = &ga;
	uint64_t sent = 0, got = 0, deadline;
	struct uvm_stream_hdr h;
	uint32_t id;
	int c;

	(void)state;
	g_start(g);
	c = client(g);
	id = g_expect_open(g);
	deadline = now_ms() + 4 * WAIT_MS;
	while (got < total) {
		uint64_t n = total - sent;
		ssize_t r;

		if (n > g->credit[id])
			n = g->credit[id];
		if (n > sizeof(buf))
			n = sizeof(buf);
		if (n > 0) {
			pat_fill(buf, sent, (size_t)n);
			g_send(g, UVM_STREAM_DATA, id, 0, buf, (uint32_t)n);
			sent += n;
		}
		r = c_read(c, rb, sizeof(rb), n > 0 ? 0 : 10);
		assert_true(r != 0 && r >= -1);
		if (r > 0) {
			assert_true(pat_check(rb, got, (size_t)r));
			got += (uint64_t)r;
		}
		while (g_take(g, &h, NULL))
			assert_int_equal(h.type, UVM_STREAM_CREDIT);
		assert_true(g->credit[id] <= WIN);
		assert_true(now_ms() < deadline);
	}
	/* Everything written: the whole window comes back. */
	while (g->credit[id] < WIN)
		assert_int_equal(g_recv_raw(g, &h, NULL, WAIT_MS), 1);
	assert_int_equal(g->credit[id], WIN);
	g_stop(g);
}

/* Client -> guest: exactly the guest's credit is sent; a full rx ring
 * stops reading but not guest output; consuming resumes everything. */
static void test_flow_client_to_guest(void **state)
{
	static uint8_t rb[UVM_STREAM_MAX_DATA];
	const uint64_t total = 1u << 20;
	struct tguest *g = &ga;
	uint64_t pushed = 0, got = 0, deadline;
	struct uvm_stream_hdr h;
	uint32_t id;
	int c;

	(void)state;
	g_start(g);
	c = client(g);
	id = g_expect_open(g);
	assert_int_equal(fcntl(c, F_SETFL, O_NONBLOCK), 0);

	/* The window, then nothing. */
	deadline = now_ms() + WAIT_MS;
	while (got < WIN) {
		c_push(c, &pushed, total);
		if (g_recv(g, &h, rb, 10) == 1) {
			assert_int_equal(h.type, UVM_STREAM_DATA);
			assert_true(pat_check(rb, got, h.len));
			got += h.len;
		}
		assert_true(now_ms() < deadline);
	}
	assert_int_equal(got, WIN);
	g_expect_quiet(g);

	/* 1000 more bytes of credit: 1000 more bytes. */
	g_send(g, UVM_STREAM_CREDIT, id, 1000, NULL, 0);
	while (got < WIN + 1000) {
		assert_int_equal(g_recv(g, &h, rb, WAIT_MS), 1);
		assert_int_equal(h.type, UVM_STREAM_DATA);
		assert_true(pat_check(rb, got, h.len));
		got += h.len;
	}
	assert_int_equal(got, WIN + 1000);
	g_expect_quiet(g);

	/* Plenty of credit, nothing consumed: the rx ring fills up. */
	g_send(g, UVM_STREAM_CREDIT, id, 4u << 20, NULL, 0);
	deadline = now_ms() + WAIT_MS;
	while (RING - g_rx_used(g) >= uvm_scodec_msg_bytes(1)) {
		c_push(c, &pushed, total);
		usleep(1000);
		assert_true(now_ms() < deadline);
	}
	/* Guest output still flows while rx is full. */
	g_send(g, UVM_STREAM_DATA, id, 0, "out", 3);
	c_expect(c, "out");

	/* Consume: the rest arrives, in order, and the 3 bytes are granted. */
	deadline = now_ms() + 4 * WAIT_MS;
	while (got < total || g->credit[id] < WIN) {
		c_push(c, &pushed, total);
		if (g_recv(g, &h, rb, 10) == 1) {
			assert_int_equal(h.type, UVM_STREAM_DATA);
			assert_true(pat_check(rb, got, h.len));
			got += h.len;
		}
		assert_true(now_ms() < deadline);
	}
	assert_int_equal(got, total);
	assert_int_equal(g->credit[id], WIN);
	g_stop(g);
}

/* ---- the output gate ----------------------------------------------------- */

static void test_gate(void **state)
{
	struct tguest *g = &ga;
	struct uvm_stream_hdr h;
	uint8_t buf[8];
	uint32_t id;
	int c;

	(void)state;
	g_start(g);
	c = client(g);
	id = g_expect_open(g);
	gate_set(true, 5, 4);
	/* Input is not held. */
	assert_int_equal(send(c, "in", 2, 0), 2);
	assert_int_equal(g_recv(g, &h, buf, WAIT_MS), 1);
	assert_int_equal(h.type, UVM_STREAM_DATA);
	assert_memory_equal(buf, "in", 2);
	/* Output of epoch 5, then 6 and the guest's CLOSE: all held. */
	g_send(g, UVM_STREAM_DATA, id, 0, "held", 4);
	c_expect_quiet(c);
	gate_epoch = 6;
	g_send(g, UVM_STREAM_DATA, id, 0, "more", 4);
	g_send(g, UVM_STREAM_CLOSE, id, 0, NULL, 0);
	c_expect_quiet(c);
	g_expect_quiet(g); /* no CREDIT for bytes not written */
	/* Epoch 5 released: its bytes only. */
	gate_rel = 5;
	g->dev->ops->release(g->dev, 5);
	c_expect(c, "held");
	c_expect_quiet(c);
	g_expect_quiet(g); /* the guest closed: no CREDIT, no CLOSE yet */
	/* Epoch 6: the rest, then the FIN; the host's CLOSE follows. */
	gate_rel = 6;
	g->dev->ops->release(g->dev, 6);
	c_expect(c, "more");
	c_expect_eof(c);
	g_expect(g, UVM_STREAM_CLOSE, id, NULL);
	client_close(c);
	/* The gate opens: output goes at once. */
	gate_set(false, 7, 6);
	g->dev->ops->release(g->dev, 6);
	c = client(g);
	id = g_expect_open(g);
	g_send(g, UVM_STREAM_DATA, id, 0, "open", 4);
	c_expect(c, "open");
	g_stop(g);
}

/* ---- a client that never reads ------------------------------------------- */

/* Fill the slow client's connection until the guest's credit stays 0. */
static uint64_t fill_until_stalled(struct tguest *g, uint32_t id)
{
	static uint8_t buf[UVM_STREAM_MAX_DATA];
	uint64_t sent = 0, deadline = now_ms() + 4 * WAIT_MS;
	struct uvm_stream_hdr h;

	for (;;) {
		while (g->credit[id] > 0) {
			uint32_t n = g->credit[id] < sizeof(buf)
					     ? (uint32_t)g->credit[id]
					     : (uint32_t)sizeof(buf);

			pat_fill(buf, sent, n);
			g_send(g, UVM_STREAM_DATA, id, 0, buf, n);
			sent += n;
		}
		if (g_recv_raw(g, &h, NULL, QUIET_MS) == 0)
			return sent; /* credit 0 and none came back */
		assert_int_equal(h.type, UVM_STREAM_CREDIT);
		assert_true(g->credit[id] <= WIN);
		assert_true(sent < (64u << 20)); /* the kernel buffers end */
		assert_true(now_ms() < deadline);
	}
}

static void test_slow_reader(void **state)
{
	static uint8_t rb[65536];
	struct tguest *g = &ga;
	uint64_t sent, got = 0, deadline;
	struct uvm_stream_hdr h;
	uint32_t sid, fid;
	int slow, fast;

	(void)state;
	g_start(g);
	slow = client_try(g->port, 4096);
	assert_true(slow >= 0);
	sid = g_expect_open(g);
	fast = client(g);
	fid = g_expect_open(g);
	sent = fill_until_stalled(g, sid);
	assert_true(sent >= WIN);
	assert_int_equal(g->credit[sid], 0);
	/* The other connection is unaffected, both ways. */
	g_send(g, UVM_STREAM_DATA, fid, 0, "ping", 4);
	c_expect(fast, "ping");
	assert_int_equal(send(fast, "pong", 4, 0), 4);
	assert_int_equal(g_recv(g, &h, rb, WAIT_MS), 1);
	assert_int_equal(h.conn, fid);
	assert_memory_equal(rb, "pong", 4);
	/* The slow client reads at last: every byte, in order. */
	deadline = now_ms() + 4 * WAIT_MS;
	while (got < sent) {
		ssize_t n = c_read(slow, rb, sizeof(rb), 50);

		assert_true(n != 0 && n >= -1);
		if (n > 0) {
			assert_true(pat_check(rb, got, (size_t)n));
			got += (uint64_t)n;
		}
		assert_true(now_ms() < deadline);
	}
	while (g->credit[sid] < WIN)
		assert_int_equal(g_recv_raw(g, &h, NULL, WAIT_MS), 1);
	assert_int_equal(g->credit[sid], WIN);
	g_stop(g);
}

/* ---- protocol violations ------------------------------------------------- */

/* The device stopped: clients dropped, listener closed, the guest ignored,
 * and quiesce / save (flagged broken) / resume / free still work. */
static void expect_stopped(struct tguest *g, const int *fds, int n)
{
	static struct hv_device_state st;
	static struct uvm_scodec_save sv;
	struct uvm_stream_hdr h;
	uint32_t cons;

	for (int i = 0; i < n; i++)
		c_expect_dropped(fds[i]);
	expect_refused(g->port);
	while (g_take(g, &h, NULL)) /* what was published before */
		;
	cons = __atomic_load_n(&g->tx->cons, __ATOMIC_ACQUIRE);
	h = (struct uvm_stream_hdr){ .type = UVM_STREAM_CREDIT, .conn = 1,
				     .arg = 1 };
	g_send_raw(g, &h, sizeof(h));
	g_expect_quiet(g);
	assert_int_equal(__atomic_load_n(&g->tx->cons, __ATOMIC_ACQUIRE), cons);
	assert_int_equal(g->dev->ops->quiesce(g->dev), 0);
	assert_int_equal(g->dev->ops->save(g->dev, &st), 0);
	assert_int_equal(uvm_scodec_save_get(st.blob, st.len, 255, &sv, NULL, 0),
			 0);
	assert_true(sv.flags & UVM_SCODEC_SF_BROKEN);
	g->dev->ops->resume(g->dev);
	g_stop(g);
}

static void test_violation_data_beyond_credit(void **state)
{
	static uint8_t buf[UVM_STREAM_MAX_DATA];
	struct tguest *g = &ga;
	uint32_t a, b;
	int fds[2];

	(void)state;
	g_start(g);
	fds[0] = client(g);
	a = g_expect_open(g);
	fds[1] = client(g);
	b = g_expect_open(g);
	g_send(g, UVM_STREAM_DATA, b, 0, "ok", 2);
	c_expect(fds[1], "ok");
	gate_set(true, 1, 0); /* nothing written: no credit comes back */
	for (uint32_t sent = 0; sent < WIN; sent += sizeof(buf))
		g_send(g, UVM_STREAM_DATA, a, 0, buf, sizeof(buf));
	assert_int_equal(g->credit[a], 0);
	g_send(g, UVM_STREAM_DATA, a, 0, "x", 1);
	expect_stopped(g, fds, 2);
}

static void test_violation_prod_ahead(void **state)
{
	struct tguest *g = &ga;
	uint32_t cons;
	int fd;

	(void)state;
	g_start(g);
	fd = client(g);
	(void)g_expect_open(g);
	cons = __atomic_load_n(&g->tx->cons, __ATOMIC_ACQUIRE);
	__atomic_store_n(&g->tx->prod, cons + RING + 8, __ATOMIC_SEQ_CST);
	g->dev->ops->notify(g->dev);
	expect_stopped(g, &fd, 1);
}

static void test_violation_bad_type(void **state)
{
	struct uvm_stream_hdr bad = { .type = 9, .conn = 1 };
	struct tguest *g = &ga;
	int fd;

	(void)state;
	g_start(g);
	fd = client(g);
	(void)g_expect_open(g);
	/* Unknown ids are only dropped... */
	g_send(g, UVM_STREAM_DATA, 77, 0, "zz", 2);
	g_send(g, UVM_STREAM_CREDIT, 900, 5, NULL, 0);
	g_send(g, UVM_STREAM_DATA, 1, 0, "ok", 2);
	c_expect(fd, "ok");
	/* ...a type the guest may not send stops the device. */
	g_send_raw(g, &bad, sizeof(bad));
	expect_stopped(g, &fd, 1);
}

static void test_violation_rx_cons(void **state)
{
	struct tguest *g = &ga;
	int fd;

	(void)state;
	g_start(g);
	fd = client(g);
	(void)g_expect_open(g);
	__atomic_store_n(&g->rx->cons, 12345, __ATOMIC_SEQ_CST);
	assert_int_equal(send(fd, "x", 1, 0), 1);
	expect_stopped(g, &fd, 1);
}

/* ---- quiesce / resume ---------------------------------------------------- */

static void test_quiesce_resume(void **state)
{
	static struct hv_device_state st;
	struct tguest *g = &ga;
	struct uvm_stream_hdr h;
	uint32_t rx_prod, tx_cons, id;
	uint64_t writes;
	uint8_t buf[UVM_STREAM_MAX_DATA], in[8];
	uint32_t nin = 0;
	int c1, c2, opens = 0;

	(void)state;
	g_start(g);
	c1 = client(g);
	id = g_expect_open(g);
	assert_int_equal(g->dev->ops->quiesce(g->dev), 0);
	assert_int_equal(g->dev->ops->quiesce(g->dev), 0); /* again: no-op */
	writes = atomic_load(&guest_writes);
	rx_prod = __atomic_load_n(&g->rx->prod, __ATOMIC_ACQUIRE);
	tx_cons = __atomic_load_n(&g->tx->cons, __ATOMIC_ACQUIRE);
	/* Input, a new client and guest output all wait. */
	assert_int_equal(send(c1, "abc", 3, 0), 3);
	c2 = client(g);
	g_send(g, UVM_STREAM_DATA, id, 0, "out", 3);
	c_expect_quiet(c1);
	assert_int_equal(__atomic_load_n(&g->rx->prod, __ATOMIC_ACQUIRE),
			 rx_prod);
	assert_int_equal(__atomic_load_n(&g->tx->cons, __ATOMIC_ACQUIRE),
			 tx_cons);
	assert_int_equal(atomic_load(&guest_writes), writes);
	assert_int_equal(g->dev->ops->save(g->dev, &st), 0);
	assert_int_equal(atomic_load(&guest_writes), writes);
	/* Resume: all of it goes. */
	g->dev->ops->resume(g->dev);
	c_expect(c1, "out");
	while (opens < 1 || nin < 3) {
		assert_int_equal(g_recv(g, &h, buf, WAIT_MS), 1);
		if (h.type == UVM_STREAM_OPEN && h.conn == 2) {
			opens++;
		} else if (h.type == UVM_STREAM_DATA && h.conn == id &&
			   nin + h.len <= 3) {
			memcpy(in + nin, buf, h.len);
			nin += h.len;
		} else {
			fail_msg("unexpected message type %u conn %u", h.type,
				 h.conn);
		}
	}
	assert_memory_equal(in, "abc", 3);
	g_send(g, UVM_STREAM_DATA, 2, 0, "two", 3);
	c_expect(c2, "two");
	/* State calls need a quiesced device. */
	assert_int_equal(g->dev->ops->save(g->dev, &st), -EBUSY);
	g_stop(g);
}

/* ---- save / load --------------------------------------------------------- */

/* Quiesce a, copy its memory into a new domain, save; b loads it there. */
static void migrate(struct tguest *a, struct tguest *b,
		    struct hv_device_state *st)
{
	assert_int_equal(a->dev->ops->quiesce(a->dev), 0);
	memcpy(b, a, sizeof(*b));
	b->dom = dom_new();
	b->dev = NULL;
	memcpy(b->dom->arena, a->dom->arena, NPAGES * UVM_PAGE_SIZE);
	assert_int_equal(a->dev->ops->save(a->dev, st), 0);
	g_open_dev(b, false);
	/* The device table entry came with the memory. */
	assert_int_equal(uvm_shared(b->dom)->devices[1].ring_pfn,
			 UVM_STREAM_TX_PFN);
	assert_int_equal(b->dev->ops->load(b->dev, st), 0);
	g_attach(b);
	assert_int_equal(b->rx_cons, a->rx_cons);
	b->dev->ops->resume(b->dev);
}

static void test_save_load(void **state)
{
	static struct hv_device_state st, bad;
	struct tguest *a = &ga, *b = &gb;
	struct uvm_stream_hdr h;
	int ca, cb, cc, seen[4] = { 0 };

	(void)state;
	g_start(a);
	ca = client(a);
	assert_int_equal(g_expect_open(a), 1);
	cb = client(a);
	assert_int_equal(g_expect_open(a), 2);
	cc = client(a);
	assert_int_equal(g_expect_open(a), 3);
	/* 2: its client half-closed, so the host's CLOSE is already sent. */
	assert_int_equal(shutdown(cb, SHUT_WR), 0);
	g_expect(a, UVM_STREAM_CLOSE, 2, NULL);
	g_send(a, UVM_STREAM_DATA, 1, 0, "x", 1);
	c_expect(ca, "x");
	assert_int_equal(g_recv_raw(a, &h, NULL, WAIT_MS), 1);
	assert_int_equal(h.type, UVM_STREAM_CREDIT);

	migrate(a, b, &st);
	g_stop(a);
	/* CLOSE for 1 and 3, once each; 2 had its CLOSE before the save. */
	for (int i = 0; i < 2; i++) {
		assert_int_equal(g_recv(b, &h, NULL, WAIT_MS), 1);
		assert_int_equal(h.type, UVM_STREAM_CLOSE);
		assert_true(h.conn == 1 || h.conn == 3);
		seen[h.conn]++;
	}
	assert_int_equal(seen[1], 1);
	assert_int_equal(seen[3], 1);
	g_expect_quiet(b);
	/* Data for a connection the new host has no client for: credited back. */
	g_send(b, UVM_STREAM_DATA, 1, 0, "lost", 4);
	assert_int_equal(g_recv_raw(b, &h, NULL, WAIT_MS), 1);
	assert_int_equal(h.type, UVM_STREAM_CREDIT);
	assert_int_equal(h.conn, 1);
	assert_int_equal(h.arg, 4);
	/* The guest closes 1 and 2 (2 twice: the second is dropped). */
	g_send(b, UVM_STREAM_CLOSE, 1, 0, NULL, 0);
	g_send(b, UVM_STREAM_CLOSE, 2, 0, NULL, 0);
	g_send(b, UVM_STREAM_CLOSE, 2, 0, NULL, 0);
	g_wait_tx_taken(b);
	/* New clients get 1 and 2; 3 waits for the guest's CLOSE. */
	ca = client(b);
	assert_int_equal(g_expect_open(b), 1);
	cb = client(b);
	assert_int_equal(g_expect_open(b), 2);
	cc = client(b);
	assert_int_equal(g_expect_open(b), 4);
	g_send(b, UVM_STREAM_CLOSE, 3, 0, NULL, 0);
	g_wait_tx_taken(b);
	(void)client(b);
	assert_int_equal(g_expect_open(b), 3);
	g_send(b, UVM_STREAM_DATA, 1, 0, "new", 3);
	c_expect(ca, "new");
	g_send(b, UVM_STREAM_DATA, 4, 0, "four", 4);
	c_expect(cc, "four");
	(void)cb;

	/* Loads that must be refused. */
	assert_int_equal(b->dev->ops->load(b->dev, &st), -EBUSY);
	assert_int_equal(b->dev->ops->quiesce(b->dev), 0);
	bad = st;
	bad.blob[4] = 9; /* version */
	assert_int_equal(b->dev->ops->load(b->dev, &bad), -EINVAL);
	bad = st;
	bad.len = 5;
	assert_int_equal(b->dev->ops->load(b->dev, &bad), -EINVAL);
	b->dev->ops->resume(b->dev);
	/* Still serving after the refused loads. */
	g_send(b, UVM_STREAM_DATA, 1, 0, "alive", 5);
	c_expect(ca, "alive");
	g_stop(b);
}

/* ---- listen addresses ---------------------------------------------------- */

static void test_listen_addresses(void **state)
{
	static const char *const bad[] = {
		"", "1.2.3.4", "1.2.3.4:", ":80", "1.2.3.4:65536",
		"1.2.3.4:-1", "1.2.3.4:80x", "localhost:80", "::1:80",
		"[::1]80", "[::1]", "[1.2.3.4]:80", "[::1:80", "300.1.1.1:80",
	};
	struct tguest *g = &ga, *other = &gb;
	struct uvm_dev *dev = NULL;
	char addr[64];

	(void)state;
	g_start(g);
	memset(other, 0, sizeof(*other));
	other->dom = dom_new(); /* its own memory: a failed build writes rings */
	live[1] = other;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(uvm_stream_new(other->dom, bad[i], true, &dev),
				 -EINVAL);
		assert_null(dev);
	}
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", g->port);
	assert_int_equal(uvm_stream_new(other->dom, addr, true, &dev),
			 -EADDRINUSE);
	assert_null(dev);
	g_stop(other);
	g_stop(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_echo_half_close, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_flow_guest_to_client, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_flow_client_to_guest, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_gate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_slow_reader, setup, teardown),
		cmocka_unit_test_setup_teardown(test_violation_data_beyond_credit,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_violation_prod_ahead, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_violation_bad_type, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_violation_rx_cons, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_quiesce_resume, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_save_load, setup, teardown),
		cmocka_unit_test_setup_teardown(test_listen_addresses, setup,
						teardown),
	};

	if (getenv("TANDEM_LOG") == NULL)
		log_set_level(LOG_WARN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
