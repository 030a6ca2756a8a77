/*
 * test_fault_proxy.c - tests/tools/fault_proxy run as a real process
 * between this test's client sockets and a small server thread, all on
 * 127.0.0.1.  The proxy binary is found next to this one:
 * dirname(argv[0])/../tools/fault_proxy (the same BUILD directory).
 *
 *  - relaying: 8 MiB both ways unchanged, six connections at once,
 *    half-close in both directions;
 *  - faults: --cut-after (down, up, both) cuts with RST and exactly that
 *    many bytes delivered, even to a slow reader; --flip-after,
 *    --flip-every and --flip-conn flip one bit at exactly the chosen
 *    offsets, the same bits for the same seed;
 *    --delay-ms holds data at least that long and jitter never reorders;
 *    SIGUSR1 cuts every connection; --max-conns refuses the extra one;
 *  - --record writes exactly the first connection's client bytes and
 *    --replay sends them, reporting whether the peer closed;
 *  - bad arguments exit 2 naming the bad value.
 *
 * Every test starts its own proxy (seed fixed) and server, and the
 * teardown kills and reaps the proxy even when a test fails.  Waits have
 * generous deadlines; nothing passes or fails on speed, except that a
 * delay is checked to be at least as long as asked.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS 10000          /* deadline for anything that must happen */
#define MAX_SRV 16             /* server connections per test */
#define MAX_CLIENTS 16
#define SINK_CAP (32u << 20)
#define BIG (8u << 20)

static char proxy_path[PATH_MAX];
static char tmp_dir[PATH_MAX];
static char err_path[PATH_MAX + 32];
static char rec_path[PATH_MAX + 32];

/* ---- time, data ---------------------------------------------------------- */

static int64_t now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
	struct timespec t = { .tv_sec = ms / 1000,
			      .tv_nsec = (ms % 1000) * 1000000L };

	while (nanosleep(&t, &t) < 0 && errno == EINTR)
		;
}

/* Deterministic bytes: the same (len, seed) always gives the same data. */
static void fill(unsigned char *buf, size_t len, uint64_t seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 1;

	for (size_t i = 0; i < len; i++) {
		if (i % 8 == 0) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
		}
		buf[i] = (unsigned char)(x >> (8 * (i % 8)));
	}
}

static unsigned char *pattern(size_t len, uint64_t seed)
{
	unsigned char *buf = malloc(len ? len : 1);

	assert_non_null(buf);
	fill(buf, len, seed);
	return buf;
}

static uint64_t fnv1a(const unsigned char *p, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 0x100000001b3ULL;
	return h;
}

/* ---- the server ---------------------------------------------------------- */

enum srv_mode {
	SRV_ECHO,    /* send back everything; FIN after the client's */
	SRV_SINK,    /* keep everything; close at EOF or after close_at bytes */
	SRV_SOURCE,  /* send source_len pattern bytes (seed 7), then close */
	SRV_HALF,    /* send "hello" and FIN, then keep everything until EOF */
};

struct srv_result {
	bool done;
	size_t got;               /* bytes received */
	int err;                  /* errno that ended it, 0 for EOF */
	unsigned char *data;      /* SINK and HALF: the bytes */
};

struct srv_conn {
	int fd;
	int idx;
	enum srv_mode mode;
	size_t close_at, source_len;
};

static struct {
	int lfd, port;
	int stop[2];
	pthread_t acceptor;
	bool running;
	enum srv_mode mode;
	size_t close_at, source_len;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t threads[MAX_SRV];
	struct srv_conn conns[MAX_SRV];
	struct srv_result res[MAX_SRV];
	int n;
} srv = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static void srv_set(enum srv_mode mode, size_t close_at, size_t source_len)
{
	pthread_mutex_lock(&srv.lock);
	srv.mode = mode;
	srv.close_at = close_at;
	srv.source_len = source_len;
	pthread_mutex_unlock(&srv.lock);
}

static void set_timeouts(int fd)
{
	struct timeval tv = { .tv_sec = WAIT_MS / 1000 };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static int send_all(int fd, const void *buf, size_t len)
{
	const unsigned char *p = buf;

	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Receive into r (kept if keep); 0 at EOF or close_at, else errno. */
static int srv_recv_all(int fd, struct srv_result *r, bool keep, bool echo,
			size_t close_at)
{
	static __thread unsigned char buf[65536];

	for (;;) {
		size_t want = sizeof(buf);
		ssize_t n;

		if (close_at && close_at - r->got < want)
			want = close_at - r->got;
		n = recv(fd, buf, want, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n == 0 ? 0 : errno;
		if (keep && r->got + (size_t)n <= SINK_CAP)
			memcpy(r->data + r->got, buf, (size_t)n);
		r->got += (size_t)n;
		if (echo && send_all(fd, buf, (size_t)n) < 0)
			return errno;
		if (close_at && r->got == close_at)
			return 0;
	}
}

static int srv_source(int fd, size_t len)
{
	unsigned char *buf = malloc(len ? len : 1);
	int err;

	if (buf == NULL)
		return ENOMEM;
	fill(buf, len, 7);
	err = -send_all(fd, buf, len);
	free(buf);
	return err;
}

static void *srv_conn_main(void *arg)
{
	struct srv_conn *sc = arg;
	struct srv_result r = { 0 };

	if (sc->mode == SRV_SINK || sc->mode == SRV_HALF)
		r.data = malloc(SINK_CAP);
	if (sc->mode == SRV_ECHO) {
		r.err = srv_recv_all(sc->fd, &r, false, true, 0);
		shutdown(sc->fd, SHUT_WR);
	} else if (sc->mode == SRV_SINK) {
		r.err = srv_recv_all(sc->fd, &r, true, false, sc->close_at);
	} else if (sc->mode == SRV_SOURCE) {
		r.err = srv_source(sc->fd, sc->source_len);
	} else {
		send_all(sc->fd, "hello", 5);
		shutdown(sc->fd, SHUT_WR);
		r.err = srv_recv_all(sc->fd, &r, true, false, 0);
	}
	close(sc->fd);
	pthread_mutex_lock(&srv.lock);
	r.done = true;
	srv.res[sc->idx] = r;
	pthread_cond_broadcast(&srv.cond);
	pthread_mutex_unlock(&srv.lock);
	return NULL;
}

static void srv_accept_one(void)
{
	int fd = accept4(srv.lfd, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0)
		return;
	pthread_mutex_lock(&srv.lock);
	if (srv.n == MAX_SRV) {
		pthread_mutex_unlock(&srv.lock);
		close(fd);
		return;
	}
	set_timeouts(fd);
	srv.conns[srv.n] = (struct srv_conn){ .fd = fd, .idx = srv.n,
					      .mode = srv.mode,
					      .close_at = srv.close_at,
					      .source_len = srv.source_len };
	if (pthread_create(&srv.threads[srv.n], NULL, srv_conn_main,
			   &srv.conns[srv.n]) == 0)
		srv.n++;
	else
		close(fd);
	pthread_mutex_unlock(&srv.lock);
}

static void *srv_acceptor(void *arg)
{
	(void)arg;
	for (;;) {
		struct pollfd p[2] = { { .fd = srv.lfd, .events = POLLIN },
				       { .fd = srv.stop[0], .events = POLLIN } };

		if (poll(p, 2, -1) < 0 && errno != EINTR)
			return NULL;
		if (p[1].revents)
			return NULL;
		if (p[0].revents & POLLIN)
			srv_accept_one();
	}
}

static int listen_any(int *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 64), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	*port = ntohs(a.sin_port);
	return fd;
}

static void srv_start(void)
{
	memset(srv.res, 0, sizeof(srv.res));
	srv.n = 0;
	srv_set(SRV_ECHO, 0, 0);
	srv.lfd = listen_any(&srv.port);
	assert_int_equal(pipe2(srv.stop, O_CLOEXEC), 0);
	assert_int_equal(pthread_create(&srv.acceptor, NULL, srv_acceptor, NULL), 0);
	srv.running = true;
}

static void srv_stop(void)
{
	if (!srv.running)
		return;
	srv.running = false;
	(void)!write(srv.stop[1], "x", 1);
	pthread_join(srv.acceptor, NULL);
	for (int i = 0; i < srv.n; i++) {
		pthread_join(srv.threads[i], NULL);
		free(srv.res[i].data);
	}
	srv.n = 0;
	close(srv.lfd);
	close(srv.stop[0]);
	close(srv.stop[1]);
}

/* Server connection idx, once it has finished. */
static struct srv_result *srv_wait(int idx)
{
	int64_t deadline = now_ms() + WAIT_MS;
	struct srv_result *r = NULL;

	pthread_mutex_lock(&srv.lock);
	while (!srv.res[idx].done && now_ms() < deadline) {
		pthread_mutex_unlock(&srv.lock);
		sleep_ms(5);
		pthread_mutex_lock(&srv.lock);
	}
	if (srv.res[idx].done)
		r = &srv.res[idx];
	pthread_mutex_unlock(&srv.lock);
	assert_non_null(r);
	return r;
}

/* ---- child processes ----------------------------------------------------- */

static pid_t px_pid = -1;        /* the running proxy */
static int px_out = -1;          /* its stdout */
static int px_port;
static unsigned long long px_seed;

/* Run argv with stdout into a pipe (*out) and stderr into err_path. */
static pid_t spawn(char *const argv[], int *out)
{
	int p[2];
	pid_t pid;

	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		if (e < 0 || dup2(p[1], 1) < 0 || dup2(e, 2) < 0)
			_exit(126);
		execv(argv[0], argv);
		_exit(127);
	}
	close(p[1]);
	*out = p[0];
	return pid;
}

/* Exit status of pid within ms, or -1 after killing it. */
static int reap(pid_t pid, int64_t ms)
{
	int64_t deadline = now_ms() + ms;
	int status;

	while (now_ms() < deadline) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			return status;
		sleep_ms(5);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return -1;
}

/* One line from fd, within WAIT_MS; false at EOF or timeout. */
static bool read_line(int fd, char *line, size_t cap)
{
	int64_t deadline = now_ms() + WAIT_MS;
	size_t n = 0;

	while (n + 1 < cap && now_ms() < deadline) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		if (poll(&p, 1, 100) <= 0)
			continue;
		if (read(fd, line + n, 1) != 1)
			break;
		if (line[n] == '\n') {
			line[n] = '\0';
			return true;
		}
		n++;
	}
	line[n] = '\0';
	return false;
}

/* All of fd until EOF, within WAIT_MS. */
static void read_all(int fd, char *buf, size_t cap)
{
	size_t n = 0;

	while (n + 1 < cap && read_line(fd, buf + n, cap - n)) {
		n += strlen(buf + n);
		buf[n++] = '\n';
	}
	n += strlen(buf + n);
	buf[n] = '\0';
}

/* Start the proxy in front of the server with extra options (NULL-ended). */
static void proxy_start_to(int port, ...)
{
	char *argv[40];
	char conn[32], line[256];
	int argc = 0;
	const char *a;
	va_list ap;

	snprintf(conn, sizeof(conn), "127.0.0.1:%d", port);
	argv[argc++] = proxy_path;
	argv[argc++] = "--listen";
	argv[argc++] = "127.0.0.1:0";
	argv[argc++] = "--connect";
	argv[argc++] = conn;
	va_start(ap, port);
	while ((a = va_arg(ap, const char *)) != NULL && argc < 39)
		argv[argc++] = (char *)a;
	va_end(ap);
	argv[argc] = NULL;
	px_pid = spawn(argv, &px_out);
	assert_true(read_line(px_out, line, sizeof(line)));
	assert_int_equal(sscanf(line, "fault_proxy: listening on 127.0.0.1:%d seed %llu",
				&px_port, &px_seed), 2);
	assert_true(px_port > 0);
}

#define proxy_start(...) proxy_start_to(srv.port, __VA_ARGS__)

/* SIGTERM must end the proxy cleanly: exit status 0. */
static void proxy_stop(void)
{
	int status;

	assert_true(px_pid > 0);
	kill(px_pid, SIGTERM);
	status = reap(px_pid, WAIT_MS);
	px_pid = -1;
	close(px_out);
	px_out = -1;
	assert_true(status != -1 && WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	*len = fread(buf, 1, (size_t)n, f);
	buf[*len] = '\0';
	fclose(f);
	return buf;
}

/* Wait until the proxy's stderr holds text. */
static bool err_has(const char *text)
{
	int64_t deadline = now_ms() + WAIT_MS;

	do {
		size_t len;
		char *s = read_file(err_path, &len);
		bool found = s != NULL && strstr(s, text) != NULL;

		free(s);
		if (found)
			return true;
		sleep_ms(10);
	} while (now_ms() < deadline);
	return false;
}

/* ---- clients ------------------------------------------------------------- */

static int clients[MAX_CLIENTS];
static int nr_clients;

static int cli_connect(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	if (nr_clients < MAX_CLIENTS)
		clients[nr_clients++] = fd;
	return fd;
}

static void cli_close(int fd)
{
	for (int i = 0; i < nr_clients; i++) {
		if (clients[i] == fd) {
			clients[i] = clients[--nr_clients];
			break;
		}
	}
	close(fd);
}

/*
 * Send out (then FIN if shut) while receiving into in (at most incap
 * kept, all counted) until EOF, an error, or until bytes when nonzero.
 * Returns 0, or -errno of the error that ended it (-ETIMEDOUT if nothing
 * happened for WAIT_MS).
 */
struct xfer {
	const unsigned char *out;
	size_t outlen;
	bool shut;
	unsigned char *in;
	size_t incap, until;
	size_t sent, got;
};

static int xfer_read(int fd, struct xfer *x, bool *done)
{
	static __thread unsigned char scratch[65536];
	size_t want = sizeof(scratch);
	unsigned char *dst = scratch;
	ssize_t n;

	if (x->until && x->until - x->got < want)
		want = x->until - x->got;
	if (x->in != NULL && x->got < x->incap) {
		dst = x->in + x->got;
		if (x->incap - x->got < want)
			want = x->incap - x->got;
	}
	n = recv(fd, dst, want, MSG_DONTWAIT);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	x->got += (size_t)n;
	*done = n == 0 || (x->until && x->got == x->until);
	return 0;
}

static int xfer_write(int fd, struct xfer *x, bool *done)
{
	ssize_t n = x->sent < x->outlen ?
		    send(fd, x->out + x->sent, x->outlen - x->sent,
			 MSG_DONTWAIT | MSG_NOSIGNAL) : 0;

	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	x->sent += (size_t)n;
	if (x->sent == x->outlen) {
		if (x->shut)
			shutdown(fd, SHUT_WR);
		*done = true;
	}
	return 0;
}

static int xfer(int fd, struct xfer *x)
{
	bool rd_done = false, wr_done = x->outlen == 0 && !x->shut;
	int err = 0;

	while (err == 0 && (!rd_done || !wr_done)) {
		struct pollfd p = { .fd = fd };

		p.events = (short)((rd_done ? 0 : POLLIN) | (wr_done ? 0 : POLLOUT));
		if (poll(&p, 1, WAIT_MS) == 0)
			return -ETIMEDOUT;
		if (!wr_done && (p.revents & (POLLOUT | POLLERR | POLLHUP)))
			err = xfer_write(fd, x, &wr_done);
		if (err == 0 && !rd_done && (p.revents & (POLLIN | POLLERR | POLLHUP)))
			err = xfer_read(fd, x, &rd_done);
	}
	return err;
}

/* Send len bytes and read exactly len back (an echo round trip). */
static void round_trip(int fd, size_t len, uint64_t seed)
{
	unsigned char *out = pattern(len, seed), *in = malloc(len);
	struct xfer x = { .out = out, .outlen = len, .in = in, .incap = len,
			  .until = len };

	assert_non_null(in);
	assert_int_equal(xfer(fd, &x), 0);
	assert_int_equal(x.got, len);
	assert_memory_equal(in, out, len);
	free(out);
	free(in);
}

/* ---- fixtures ------------------------------------------------------------ */

static int setup(void **state)
{
	(void)state;
	unlink(rec_path);
	srv_start();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (px_pid > 0) {
		kill(px_pid, SIGKILL);
		waitpid(px_pid, NULL, 0);
		px_pid = -1;
	}
	if (px_out >= 0)
		close(px_out);
	px_out = -1;
	while (nr_clients > 0)
		close(clients[--nr_clients]);
	srv_stop();
	return 0;
}

/* ---- relaying ------------------------------------------------------------ */

static void test_announce(void **state)
{
	(void)state;
	proxy_start("--seed", "77", NULL);
	assert_int_equal(px_seed, 77);
	proxy_stop();
	proxy_start(NULL);              /* a seed from the clock, still printed */
	proxy_stop();
}

static void test_relay_unchanged(void **state)
{
	unsigned char *out = pattern(BIG, 1), *in = malloc(BIG);
	struct xfer x = { .out = out, .outlen = BIG, .shut = true, .in = in,
			  .incap = BIG };
	int fd;

	(void)state;
	assert_non_null(in);
	proxy_start("--seed", "1", NULL);
	fd = cli_connect(px_port);
	assert_int_equal(xfer(fd, &x), 0);       /* ends with the server's FIN */
	assert_int_equal(x.got, BIG);
	assert_true(fnv1a(in, BIG) == fnv1a(out, BIG));
	assert_memory_equal(in, out, BIG);
	assert_int_equal(srv_wait(0)->got, BIG);
	assert_int_equal(srv_wait(0)->err, 0);
	cli_close(fd);
	proxy_stop();
	free(out);
	free(in);
}

#define NPAR 6
#define PAR_LEN (1u << 20)

struct par {
	pthread_barrier_t *bar;
	int fd;
	int err;
	size_t got;
	bool same;
	uint64_t seed;
};

static void *par_main(void *arg)
{
	struct par *p = arg;
	unsigned char *out = malloc(PAR_LEN), *in = malloc(PAR_LEN);
	struct xfer x = { .out = out, .outlen = PAR_LEN, .shut = true, .in = in,
			  .incap = PAR_LEN };

	pthread_barrier_wait(p->bar);   /* every connection is open */
	if (out == NULL || in == NULL) {
		p->err = -ENOMEM;
	} else {
		fill(out, PAR_LEN, p->seed);
		p->err = xfer(p->fd, &x);
		p->got = x.got;
		p->same = x.got == PAR_LEN && memcmp(in, out, PAR_LEN) == 0;
	}
	free(out);
	free(in);
	return NULL;
}

static void test_many_connections(void **state)
{
	pthread_barrier_t bar;
	pthread_t t[NPAR];
	struct par p[NPAR];

	(void)state;
	proxy_start("--seed", "2", NULL);
	pthread_barrier_init(&bar, NULL, NPAR);
	for (int i = 0; i < NPAR; i++) {
		p[i] = (struct par){ .bar = &bar, .fd = cli_connect(px_port),
				     .seed = 100 + (uint64_t)i };
		round_trip(p[i].fd, 16, (uint64_t)i);  /* relayed end to end */
	}
	for (int i = 0; i < NPAR; i++)
		assert_int_equal(pthread_create(&t[i], NULL, par_main, &p[i]), 0);
	for (int i = 0; i < NPAR; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&bar);
	for (int i = 0; i < NPAR; i++) {
		assert_int_equal(p[i].err, 0);
		assert_int_equal(p[i].got, PAR_LEN);
		assert_true(p[i].same);
	}
	proxy_stop();
}

/* Server FIN first (client still sends after it), then client FIN. */
static void test_half_close(void **state)
{
	unsigned char hello[16], *out = pattern(100000, 3);
	struct xfer x1 = { .in = hello, .incap = sizeof(hello) };
	struct xfer x2 = { .out = out, .outlen = 100000, .shut = true };
	struct srv_result *r;
	int fd;

	(void)state;
	srv_set(SRV_HALF, 0, 0);
	proxy_start("--seed", "3", NULL);
	fd = cli_connect(px_port);
	assert_int_equal(xfer(fd, &x1), 0);     /* "hello", then EOF */
	assert_int_equal(x1.got, 5);
	assert_memory_equal(hello, "hello", 5);
	assert_int_equal(xfer(fd, &x2), 0);     /* the half-open way still works */
	r = srv_wait(0);
	assert_int_equal(r->err, 0);            /* the server saw our FIN */
	assert_int_equal(r->got, 100000);
	assert_memory_equal(r->data, out, 100000);
	cli_close(fd);
	proxy_stop();
	free(out);
}

/* ---- cuts ---------------------------------------------------------------- */

/* A cut is an RST: an established socket reports ECONNRESET, not EOF. */
static bool is_cut(int err)
{
	return err == -ECONNRESET;
}

static void test_cut_down(void **state)
{
	unsigned char *want = pattern(65536, 7), *in = malloc(1u << 20);
	struct xfer x = { .in = in, .incap = 1u << 20 };
	int fd, err;

	(void)state;
	srv_set(SRV_SOURCE, 0, SINK_CAP);      /* more than buffers hold */
	proxy_start("--cut-after", "65536", "--dir", "down", "--seed", "4", NULL);
	fd = cli_connect(px_port);
	err = xfer(fd, &x);
	assert_true(is_cut(err));
	assert_int_equal(x.got, 65536);
	assert_memory_equal(in, want, 65536);
	assert_true(err_has("fault_proxy: conn 1: cut after 65536 bytes down\n"));
	assert_int_equal(srv_wait(0)->err, ECONNRESET); /* the server too */
	cli_close(fd);
	proxy_stop();
	free(want);
	free(in);
}

/*
 * A reader with a small window that starts late: the proxy has handed
 * most of the bytes to its kernel when the count is reached, and must not
 * reset (which drops unsent data) until the reader has them all.
 */
static void test_cut_slow_reader(void **state)
{
	unsigned char *want = pattern(262144, 7), *in = malloc(1u << 20);
	struct xfer x = { .in = in, .incap = 1u << 20 };
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd, small = 8192;

	(void)state;
	srv_set(SRV_SOURCE, 0, SINK_CAP);
	proxy_start("--cut-after", "262144", "--dir", "down", "--seed", "19", NULL);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	clients[nr_clients++] = fd;
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small,
				    sizeof(small)), 0);
	a.sin_port = htons((uint16_t)px_port);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	sleep_ms(300);                          /* the window fills and stays full */
	assert_true(is_cut(xfer(fd, &x)));
	assert_int_equal(x.got, 262144);
	assert_memory_equal(in, want, 262144);
	assert_true(err_has("fault_proxy: conn 1: cut after 262144 bytes down\n"));
	cli_close(fd);
	proxy_stop();
	free(want);
	free(in);
}

static void test_cut_up(void **state)
{
	unsigned char *out = pattern(1u << 20, 5);
	struct xfer x = { .out = out, .outlen = 1u << 20, .shut = true };
	struct srv_result *r;
	int fd;

	(void)state;
	srv_set(SRV_SINK, 0, 0);
	proxy_start("--cut-after", "100000", "--dir", "up", "--seed", "5", NULL);
	fd = cli_connect(px_port);
	assert_true(is_cut(xfer(fd, &x)));
	r = srv_wait(0);
	assert_int_equal(r->got, 100000);
	assert_int_equal(r->err, ECONNRESET);
	assert_memory_equal(r->data, out, 100000);
	assert_true(err_has("fault_proxy: conn 1: cut after 100000 bytes up\n"));
	cli_close(fd);
	proxy_stop();
	free(out);
}

/* Default --dir both: whichever way reaches the count first cuts. */
static void test_cut_both(void **state)
{
	unsigned char *out = pattern(200000, 6), *in = malloc(200000);
	struct xfer x = { .out = out, .outlen = 200000, .in = in, .incap = 200000 };
	int fd;

	(void)state;
	proxy_start("--cut-after", "50000", "--seed", "6", NULL);
	fd = cli_connect(px_port);
	assert_true(is_cut(xfer(fd, &x)));
	assert_true(x.got <= 50000);
	assert_memory_equal(in, out, x.got);
	assert_int_equal(srv_wait(0)->got, 50000);
	assert_true(err_has("cut after 50000 bytes"));
	cli_close(fd);
	proxy_stop();
	free(out);
	free(in);
}

/* ---- flips --------------------------------------------------------------- */

/* Offsets where a and b differ must be exactly at[], one bit each. */
static void check_flips(const unsigned char *a, const unsigned char *b,
			size_t len, const size_t *at, size_t n, unsigned *bits)
{
	size_t k = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned x = a[i] ^ b[i];

		if (x == 0)
			continue;
		assert_true(k < n);
		assert_int_equal(i, at[k]);
		assert_int_equal(__builtin_popcount(x), 1);
		if (bits != NULL)
			bits[k] = (unsigned)__builtin_ctz(x);
		k++;
	}
	assert_int_equal(k, n);
}

/* Send len bytes to the sink through one connection; its result. */
static struct srv_result *sink_send(const unsigned char *out, size_t len,
				    int idx)
{
	struct xfer x = { .out = out, .outlen = len, .shut = true };
	int fd = cli_connect(px_port);
	struct srv_result *r;

	assert_int_equal(xfer(fd, &x), 0);
	r = srv_wait(idx);
	assert_int_equal(r->err, 0);
	assert_int_equal(r->got, len);
	cli_close(fd);
	return r;
}

static void test_flip_one_bit(void **state)
{
	unsigned char *out = pattern(65536, 8);
	size_t at[] = { 4096 };
	unsigned bit;
	char line[128];
	struct srv_result *r;

	(void)state;
	srv_set(SRV_SINK, 0, 0);
	proxy_start("--flip-after", "4096", "--dir", "up", "--seed", "42", NULL);
	r = sink_send(out, 65536, 0);
	check_flips(r->data, out, 65536, at, 1, &bit);
	snprintf(line, sizeof(line),
		 "fault_proxy: conn 1 up: flipped bit %u of byte 4096\n", bit);
	assert_true(err_has(line));
	proxy_stop();
	free(out);
}

/* --flip-conn 2: the first connection is untouched, the second flipped. */
static void test_flip_every_conn(void **state)
{
	unsigned char *out = pattern(50000, 9);
	size_t at[] = { 1000, 11000, 21000, 31000, 41000 };
	struct srv_result *r;

	(void)state;
	srv_set(SRV_SINK, 0, 0);
	proxy_start("--flip-after", "1000", "--flip-every", "10000",
		    "--flip-conn", "2", "--seed", "9", NULL);
	r = sink_send(out, 50000, 0);
	assert_memory_equal(r->data, out, 50000);
	r = sink_send(out, 50000, 1);
	check_flips(r->data, out, 50000, at, 5, NULL);
	assert_true(err_has("conn 2 up: flipped bit"));
	proxy_stop();
	free(out);
}

/* The same seed flips the same bits, however the reads fall. */
static void test_flip_deterministic(void **state)
{
	unsigned char *out = pattern(300000, 10);
	size_t at[] = { 0, 77777, 155554, 233331 };
	unsigned bits[2][4];

	(void)state;
	srv_set(SRV_SINK, 0, 0);
	for (int run = 0; run < 2; run++) {
		proxy_start("--flip-after", "0", "--flip-every", "77777",
			    "--seed", "1234", NULL);
		check_flips(sink_send(out, 300000, run)->data, out, 300000, at, 4,
			    bits[run]);
		proxy_stop();
	}
	assert_memory_equal(bits[0], bits[1], sizeof(bits[0]));
	free(out);
}

/* ---- delay --------------------------------------------------------------- */

/* 200 ms each way: an echo round trip takes at least 400 ms. */
static void test_delay(void **state)
{
	int64_t t0;
	int fd;

	(void)state;
	proxy_start("--delay-ms", "200", "--seed", "11", NULL);
	fd = cli_connect(px_port);
	t0 = now_ms();
	round_trip(fd, 100, 11);
	assert_true(now_ms() - t0 >= 400);
	cli_close(fd);
	proxy_stop();
}

/* Jitter larger than the gaps between writes: bytes still in order. */
static void test_jitter_order(void **state)
{
	enum { PIECES = 60, PIECE = 1000 };
	unsigned char *out = pattern(PIECES * PIECE, 12);
	unsigned char *in = malloc(PIECES * PIECE);
	struct xfer x = { .in = in, .incap = PIECES * PIECE };
	int fd;

	(void)state;
	assert_non_null(in);
	proxy_start("--delay-ms", "20", "--jitter-ms", "20", "--seed", "12", NULL);
	fd = cli_connect(px_port);
	for (int i = 0; i < PIECES; i++) {
		assert_int_equal(send_all(fd, out + i * PIECE, PIECE), 0);
		sleep_ms(1);
	}
	shutdown(fd, SHUT_WR);
	assert_int_equal(xfer(fd, &x), 0);
	assert_int_equal(x.got, PIECES * PIECE);
	assert_memory_equal(in, out, PIECES * PIECE);
	cli_close(fd);
	proxy_stop();
	free(out);
	free(in);
}

/* ---- record and replay --------------------------------------------------- */

/* Run --replay; its stdout into buf, and its exit status. */
static int replay(const char *hold_ms, char *buf, size_t cap)
{
	char conn[32];
	char *argv[] = { proxy_path, "--replay", rec_path, "--connect", conn,
			 "--hold-ms", (char *)hold_ms, NULL };
	int out, status;
	pid_t pid;

	snprintf(conn, sizeof(conn), "127.0.0.1:%d", srv.port);
	pid = spawn(argv, &out);
	read_all(out, buf, cap);
	close(out);
	status = reap(pid, WAIT_MS);
	assert_true(status != -1 && WIFEXITED(status));
	return WEXITSTATUS(status);
}

static void send_pieces(const unsigned char *out, size_t len, size_t piece,
			int idx)
{
	int fd = cli_connect(px_port);
	struct xfer x = { 0 };

	for (size_t off = 0; off < len; off += piece)
		assert_int_equal(send_all(fd, out + off,
					  len - off < piece ? len - off : piece), 0);
	shutdown(fd, SHUT_WR);
	assert_int_equal(xfer(fd, &x), 0);
	assert_int_equal(srv_wait(idx)->got, len);
	cli_close(fd);
}

static void test_record_replay(void **state)
{
	enum { LEN = 300000 };
	unsigned char *out = pattern(LEN, 13), *other = pattern(1000, 14);
	char buf[512];
	size_t len;
	char *rec;

	(void)state;
	srv_set(SRV_SINK, 0, 0);
	proxy_start("--record", rec_path, "--seed", "13", NULL);
	send_pieces(out, LEN, 7000, 0);
	send_pieces(other, 1000, 1000, 1);      /* not the first: not recorded */
	proxy_stop();
	rec = read_file(rec_path, &len);
	assert_non_null(rec);
	assert_int_equal(len, LEN);
	assert_memory_equal(rec, out, LEN);
	free(rec);

	srv_set(SRV_SINK, LEN, 0);              /* closes once it has it all */
	assert_int_equal(replay("5000", buf, sizeof(buf)), 0);
	assert_non_null(strstr(buf, "replay: sent 300000 bytes, peer closed after "));
	assert_memory_equal(srv_wait(2)->data, out, LEN);

	srv_set(SRV_SINK, 0, 0);                /* reads until our EOF */
	assert_int_equal(replay("300", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "replay: sent 300000 bytes, peer kept connection open\n");
	assert_int_equal(srv_wait(3)->got, LEN);
	free(out);
	free(other);
}

/* ---- signals and limits -------------------------------------------------- */

static void expect_reset(int fd)
{
	unsigned char b[64];
	struct xfer x = { .in = b, .incap = sizeof(b) };

	assert_true(is_cut(xfer(fd, &x)));
	assert_int_equal(x.got, 0);
}

static void test_sigusr1_cuts_all(void **state)
{
	int fd[3];

	(void)state;
	proxy_start("--seed", "15", NULL);
	for (int i = 0; i < 3; i++) {
		fd[i] = cli_connect(px_port);
		round_trip(fd[i], 10, (uint64_t)i);
	}
	assert_int_equal(kill(px_pid, SIGUSR1), 0);
	assert_true(err_has("fault_proxy: cut 3 connections\n"));
	for (int i = 0; i < 3; i++) {
		expect_reset(fd[i]);
		cli_close(fd[i]);
	}
	fd[0] = cli_connect(px_port);           /* the proxy carries on */
	round_trip(fd[0], 1000, 16);
	cli_close(fd[0]);
	proxy_stop();
}

static void test_max_conns(void **state)
{
	struct xfer x = { .shut = true };
	int a, b, c;

	(void)state;
	proxy_start("--max-conns", "2", "--seed", "17", NULL);
	a = cli_connect(px_port);
	round_trip(a, 10, 1);
	b = cli_connect(px_port);
	round_trip(b, 10, 2);
	c = cli_connect(px_port);
	expect_reset(c);
	assert_true(err_has("conn 3: refused"));
	cli_close(c);
	assert_int_equal(xfer(a, &x), 0);       /* closed both ways: slot free */
	cli_close(a);
	c = cli_connect(px_port);
	round_trip(c, 10, 3);
	cli_close(c);
	cli_close(b);
	proxy_stop();
}

static void test_upstream_down(void **state)
{
	int port, lfd = listen_any(&port), fd;

	(void)state;
	close(lfd);                             /* nothing listens there now */
	proxy_start_to(port, "--seed", "18", NULL);
	fd = cli_connect(px_port);
	expect_reset(fd);
	assert_true(err_has("conn 1: connect to 127.0.0.1:"));
	cli_close(fd);
	proxy_stop();
}

/* ---- bad arguments ------------------------------------------------------- */

struct bad_case {
	const char *args[8];
	const char *says;
};

static const struct bad_case bad_cases[] = {
	{ { "--delay-ms", "abc" }, "--delay-ms: 'abc'" },
	{ { "--dir", "sideways" }, "--dir: 'sideways'" },
	{ { "--jitter-ms", "-5" }, "--jitter-ms: '-5'" },
	{ { "--cut-after", "99999999999999999999999" },
	  "--cut-after: '99999999999999999999999'" },
	{ { "--flip-conn", "0" }, "--flip-conn: '0'" },
	{ { "--flip-every", "0" }, "--flip-every: '0'" },
	{ { "--max-conns", "many" }, "--max-conns: 'many'" },
	{ { "--seed", "12x" }, "--seed: '12x'" },
	{ { "--bogus" }, "'--bogus'" },
	{ { "junk" }, "'junk'" },
	{ { "--hold-ms", "5" }, "--hold-ms only applies to --replay" },
};

static int run_bad(char **argv)
{
	char out[256];
	int fd, status;
	pid_t pid = spawn(argv, &fd);

	read_all(fd, out, sizeof(out));
	close(fd);
	status = reap(pid, WAIT_MS);
	assert_true(status != -1 && WIFEXITED(status));
	return WEXITSTATUS(status);
}

static void expect_bad(char **argv, const char *says)
{
	size_t len;
	char *err;

	assert_int_equal(run_bad(argv), 2);
	err = read_file(err_path, &len);
	assert_non_null(err);
	if (strstr(err, says) == NULL)
		fail_msg("stderr lacks \"%s\":\n%s", says, err);
	free(err);
}

static void test_bad_args(void **state)
{
	char *argv[16];

	(void)state;
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		int n = 0;

		argv[n++] = proxy_path;
		argv[n++] = "--listen";
		argv[n++] = "127.0.0.1:0";
		argv[n++] = "--connect";
		argv[n++] = "127.0.0.1:9";
		for (int k = 0; bad_cases[i].args[k] != NULL; k++)
			argv[n++] = (char *)bad_cases[i].args[k];
		argv[n] = NULL;
		expect_bad(argv, bad_cases[i].says);
	}
	expect_bad((char *[]){ proxy_path, "--listen", "127.0.0.1:99999",
			       "--connect", "127.0.0.1:9", NULL },
		   "--listen: '127.0.0.1:99999'");
	expect_bad((char *[]){ proxy_path, "--listen", "10.1.2.3:80",
			       "--connect", "127.0.0.1:9", NULL },
		   "--listen: '10.1.2.3:80' (not a loopback address)");
	expect_bad((char *[]){ proxy_path, "--listen", "127.0.0.1:0",
			       "--connect", "127.0.0.1:0", NULL },
		   "--connect: '127.0.0.1:0'");
	expect_bad((char *[]){ proxy_path, "--listen", "127.0.0.1:0", NULL },
		   "missing --connect");
	expect_bad((char *[]){ proxy_path, "--replay", "/nonexistent/rec.bin",
			       "--connect", "127.0.0.1:9", NULL },
		   "--replay: '/nonexistent/rec.bin'");
	expect_bad((char *[]){ proxy_path, "--delay-ms", "x", NULL }, "usage:");
}

/* ---- main ---------------------------------------------------------------- */

static int find_proxy(const char *argv0)
{
	char self[PATH_MAX];

	snprintf(self, sizeof(self), "%s", argv0);
	snprintf(proxy_path, sizeof(proxy_path), "%s/../tools/fault_proxy",
		 dirname(self));
	if (access(proxy_path, X_OK) != 0) {
		fprintf(stderr, "test_fault_proxy: no proxy at '%s': %s\n",
			proxy_path, strerror(errno));
		return -1;
	}
	return 0;
}

static int group_setup(void **state)
{
	(void)state;
	snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/test_fault_proxy-XXXXXX");
	if (mkdtemp(tmp_dir) == NULL)
		return -1;
	snprintf(err_path, sizeof(err_path), "%s/proxy.err", tmp_dir);
	snprintf(rec_path, sizeof(rec_path), "%s/rec.bin", tmp_dir);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	unlink(err_path);
	unlink(rec_path);
	rmdir(tmp_dir);
	return 0;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_announce),
		T(test_relay_unchanged),
		T(test_many_connections),
		T(test_half_close),
		T(test_cut_down),
		T(test_cut_slow_reader),
		T(test_cut_up),
		T(test_cut_both),
		T(test_flip_one_bit),
		T(test_flip_every_conn),
		T(test_flip_deterministic),
		T(test_delay),
		T(test_jitter_order),
		T(test_record_replay),
		T(test_sigusr1_cuts_all),
		T(test_max_conns),
		T(test_upstream_down),
		T(test_bad_args),
#undef T
	};

	(void)argc;
	signal(SIGPIPE, SIG_IGN);
	if (find_proxy(argv[0]) < 0)
		return 1;
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
