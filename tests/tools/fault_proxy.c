/*
 * fault_proxy.c - a TCP relay on loopback that injects faults, for tests
 * (netem is not available where the tests run).
 *
 * Every connection accepted on --listen gets its own connection to
 * --connect; both directions ("up" client -> server, "down" server ->
 * client) are relayed with delay and jitter, cut with RST after a byte
 * count, or have single bits flipped at chosen stream offsets.  SIGUSR1
 * cuts every open connection.  --replay sends a recorded client stream.
 *
 * One thread, one ppoll() loop.  Each direction is a FIFO of chunks with
 * a due time that never decreases, so delayed bytes never reorder.  Faults
 * are placed by stream offset, never by read boundaries, and each
 * direction draws from its own PRNG derived from (seed, connection,
 * direction), so a seed reproduces a run.  Only 127.0.0.0/8 addresses are
 * accepted.  Options and examples: tests/tools/README.md.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FP_NS_PER_MS 1000000LL
#define FP_BUF (256 * 1024)              /* one read */
#define FP_QUEUE_MAX ((size_t)16 << 20) /* held per direction */
#define FP_READS_PER_WAKE 4
#define FP_DRAIN_NS (2000 * FP_NS_PER_MS) /* wait for ACKs before a cut */
#define FP_DRAIN_POLL_NS (1 * FP_NS_PER_MS)
#define FP_MAX_CONNS_DEFAULT 256
#define FP_MAX_CONNS_LIMIT 100000
#define FP_MS_LIMIT 3600000ULL           /* delays, jitter, hold: 1 hour */
#define FP_HOLD_MS_DEFAULT 2000
#define FP_NONE UINT64_MAX

enum fp_dirsel { FP_DIR_BOTH, FP_DIR_UP, FP_DIR_DOWN };

struct fp_opts {
	struct sockaddr_in listen_addr, connect_addr;
	bool have_listen, have_connect;
	uint64_t delay_ms, jitter_ms;
	uint64_t cut_after, flip_after, flip_every; /* FP_NONE: not set */
	enum fp_dirsel dir;
	uint64_t flip_conn;                 /* 0: every connection */
	uint64_t seed;
	bool have_seed;
	const char *record, *replay;
	uint64_t max_conns, hold_ms;
	bool have_hold, verbose;
};

struct fp_chunk {
	struct fp_chunk *next;
	int64_t due;                        /* CLOCK_MONOTONIC ns */
	size_t len, off;
	unsigned char data[];
};

struct fp_dir {
	const char *name;                   /* "up" or "down" */
	bool up;
	struct fp_chunk *head, *tail;
	size_t queued;                      /* bytes held, not yet sent */
	uint64_t in, out;                   /* read from src, sent to dst */
	uint64_t limit;                     /* cut once this many passed */
	uint64_t next_flip;                 /* stream offset; FP_NONE: none */
	int64_t last_due;
	int64_t drain_until;                /* 0, or the limit was reached */
	uint64_t rng_flip, rng_jitter;
	bool eof, shut;                     /* src sent FIN, dst got it */
};

struct fp_conn {
	struct fp_conn *next;
	uint64_t id;                        /* 1-based, in accept order */
	int cfd, sfd;
	bool connecting, dead, record;
	struct fp_dir up, down;
};

struct fp_proxy {
	const struct fp_opts *o;
	int lfd, sigfd, recfd;
	struct fp_conn *conns;
	size_t nconns;
	uint64_t accepted;
	bool stop;
	unsigned char *buf;
	struct pollfd *pfds;
	struct fp_conn **pconn;             /* owner of pfds[i], i >= 2 */
	size_t pcap;
};

/* ---- small helpers ------------------------------------------------------- */

static void fp_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* One line on stderr, one write(2), so lines never interleave. */
static void fp_say(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n = snprintf(line, sizeof(line), "fault_proxy: ");

	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, (size_t)n) < 0)
		return;
}

static int64_t fp_now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* splitmix64: small, good enough, and the same everywhere. */
static uint64_t fp_rand(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t fp_stream_seed(uint64_t seed, uint64_t id, bool up, int kind)
{
	uint64_t s = seed ^ (id * 0xd1b54a32d192ed03ULL) ^
		     ((uint64_t)(up ? 1 : 2) << 56) ^ ((uint64_t)kind << 60);

	return fp_rand(&s);
}

static void fp_rst_close(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	if (fd < 0)
		return;
	(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

static void fp_nodelay(int fd)
{
	int one = 1;

	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static const char *fp_addr_str(const struct sockaddr_in *a, char *buf,
			       size_t len)
{
	char host[INET_ADDRSTRLEN];

	inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
	snprintf(buf, len, "%s:%u", host, (unsigned)ntohs(a->sin_port));
	return buf;
}

/* ---- command line -------------------------------------------------------- */

static void fp_usage(void)
{
	fprintf(stderr,
		"usage: fault_proxy --listen 127.0.0.1:PORT --connect 127.0.0.1:PORT\n"
		"           [--delay-ms N] [--jitter-ms N]\n"
		"           [--cut-after BYTES] [--dir up|down|both]\n"
		"           [--flip-after BYTES] [--flip-every BYTES] [--flip-conn K]\n"
		"           [--seed S] [--record FILE] [--max-conns N] [--verbose]\n"
		"       fault_proxy --replay FILE --connect 127.0.0.1:PORT [--hold-ms N]\n");
}

static int fp_bad(const char *opt, const char *val, const char *why)
{
	fprintf(stderr, "fault_proxy: bad value for --%s: '%s' (%s)\n", opt,
		val, why);
	return -EINVAL;
}

/* Decimal digits only, no sign or spaces, within min..max. */
static bool fp_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (s[0] < '0' || s[0] > '9')
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return false;
	*out = v;
	return true;
}

static int fp_parse_u64(const char *opt, const char *s, uint64_t min,
			uint64_t max, uint64_t *out)
{
	char why[96];

	if (fp_u64(s, min, max, out))
		return 0;
	snprintf(why, sizeof(why), "expected a whole number %llu..%llu",
		 (unsigned long long)min, (unsigned long long)max);
	return fp_bad(opt, s, why);
}

/* "A.B.C.D:PORT" with A.B.C.D in 127.0.0.0/8: traffic stays on loopback. */
static int fp_parse_addr(const char *opt, const char *s, bool port0_ok,
			 struct sockaddr_in *out)
{
	const char *colon = strrchr(s, ':');
	char host[INET_ADDRSTRLEN];
	uint64_t port;

	if (colon == NULL || (size_t)(colon - s) >= sizeof(host))
		return fp_bad(opt, s, "expected 127.0.0.1:PORT");
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	memset(out, 0, sizeof(*out));
	out->sin_family = AF_INET;
	if (inet_pton(AF_INET, host, &out->sin_addr) != 1)
		return fp_bad(opt, s, "expected 127.0.0.1:PORT");
	if ((ntohl(out->sin_addr.s_addr) >> 24) != 127)
		return fp_bad(opt, s, "not a loopback address");
	if (!fp_u64(colon + 1, port0_ok ? 0 : 1, 65535, &port))
		return fp_bad(opt, s, port0_ok ? "port must be 0..65535" :
			      "port must be 1..65535");
	out->sin_port = htons((uint16_t)port);
	return 0;
}

static int fp_parse_dir(const char *s, enum fp_dirsel *out)
{
	if (strcmp(s, "up") == 0)
		*out = FP_DIR_UP;
	else if (strcmp(s, "down") == 0)
		*out = FP_DIR_DOWN;
	else if (strcmp(s, "both") == 0)
		*out = FP_DIR_BOTH;
	else
		return fp_bad("dir", s, "expected up, down or both");
	return 0;
}

enum {
	OPT_LISTEN = 1, OPT_CONNECT, OPT_DELAY, OPT_JITTER, OPT_CUT, OPT_DIR,
	OPT_FLIP_AFTER, OPT_FLIP_EVERY, OPT_FLIP_CONN, OPT_SEED, OPT_RECORD,
	OPT_MAX_CONNS, OPT_REPLAY, OPT_HOLD, OPT_VERBOSE, OPT_HELP,
};

static const struct option fp_longopts[] = {
	{ "listen", required_argument, NULL, OPT_LISTEN },
	{ "connect", required_argument, NULL, OPT_CONNECT },
	{ "delay-ms", required_argument, NULL, OPT_DELAY },
	{ "jitter-ms", required_argument, NULL, OPT_JITTER },
	{ "cut-after", required_argument, NULL, OPT_CUT },
	{ "dir", required_argument, NULL, OPT_DIR },
	{ "flip-after", required_argument, NULL, OPT_FLIP_AFTER },
	{ "flip-every", required_argument, NULL, OPT_FLIP_EVERY },
	{ "flip-conn", required_argument, NULL, OPT_FLIP_CONN },
	{ "seed", required_argument, NULL, OPT_SEED },
	{ "record", required_argument, NULL, OPT_RECORD },
	{ "max-conns", required_argument, NULL, OPT_MAX_CONNS },
	{ "replay", required_argument, NULL, OPT_REPLAY },
	{ "hold-ms", required_argument, NULL, OPT_HOLD },
	{ "verbose", no_argument, NULL, OPT_VERBOSE },
	{ "help", no_argument, NULL, OPT_HELP },
	{ NULL, 0, NULL, 0 },
};

static int fp_parse_num_opt(struct fp_opts *o, int code, const char *arg)
{
	switch (code) {
	case OPT_DELAY:
		return fp_parse_u64("delay-ms", arg, 0, FP_MS_LIMIT, &o->delay_ms);
	case OPT_JITTER:
		return fp_parse_u64("jitter-ms", arg, 0, FP_MS_LIMIT, &o->jitter_ms);
	case OPT_CUT:
		return fp_parse_u64("cut-after", arg, 0, FP_NONE - 1, &o->cut_after);
	case OPT_FLIP_AFTER:
		return fp_parse_u64("flip-after", arg, 0, FP_NONE - 1, &o->flip_after);
	case OPT_FLIP_EVERY:
		return fp_parse_u64("flip-every", arg, 1, FP_NONE - 1, &o->flip_every);
	case OPT_FLIP_CONN:
		return fp_parse_u64("flip-conn", arg, 1, FP_NONE - 1, &o->flip_conn);
	case OPT_SEED:
		o->have_seed = true;
		return fp_parse_u64("seed", arg, 0, UINT64_MAX, &o->seed);
	case OPT_MAX_CONNS:
		return fp_parse_u64("max-conns", arg, 1, FP_MAX_CONNS_LIMIT,
				    &o->max_conns);
	case OPT_HOLD:
		o->have_hold = true;
		return fp_parse_u64("hold-ms", arg, 0, FP_MS_LIMIT, &o->hold_ms);
	}
	return -EINVAL;
}

static int fp_parse_opt(struct fp_opts *o, int code, const char *arg)
{
	switch (code) {
	case OPT_LISTEN:
		o->have_listen = true;
		return fp_parse_addr("listen", arg, true, &o->listen_addr);
	case OPT_CONNECT:
		o->have_connect = true;
		return fp_parse_addr("connect", arg, false, &o->connect_addr);
	case OPT_DIR:
		return fp_parse_dir(arg, &o->dir);
	case OPT_RECORD:
		o->record = arg;
		return 0;
	case OPT_REPLAY:
		o->replay = arg;
		return 0;
	case OPT_VERBOSE:
		o->verbose = true;
		return 0;
	}
	return fp_parse_num_opt(o, code, arg);
}

static int fp_need(bool ok, const char *msg)
{
	if (!ok)
		fprintf(stderr, "fault_proxy: %s\n", msg);
	return ok ? 0 : -EINVAL;
}

/* Combinations: one mode, its required options, nothing of the other. */
static int fp_check_opts(struct fp_opts *o)
{
	bool faults = o->delay_ms || o->jitter_ms || o->cut_after != FP_NONE ||
		      o->flip_after != FP_NONE || o->flip_every != FP_NONE ||
		      o->record != NULL || o->flip_conn != 0;

	if (o->replay != NULL) {
		if (fp_need(o->have_connect, "--replay needs --connect") < 0 ||
		    fp_need(!o->have_listen,
			    "--replay and --listen exclude each other") < 0)
			return -EINVAL;
		return fp_need(!faults, "fault options do not apply to --replay");
	}
	if (o->flip_every != FP_NONE && o->flip_after == FP_NONE)
		o->flip_after = o->flip_every;
	if (fp_need(o->have_listen, "missing --listen 127.0.0.1:PORT") < 0 ||
	    fp_need(o->have_connect, "missing --connect 127.0.0.1:PORT") < 0)
		return -EINVAL;
	return fp_need(!o->have_hold, "--hold-ms only applies to --replay");
}

static void fp_opts_init(struct fp_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->cut_after = FP_NONE;
	o->flip_after = FP_NONE;
	o->flip_every = FP_NONE;
	o->dir = FP_DIR_BOTH;
	o->max_conns = FP_MAX_CONNS_DEFAULT;
	o->hold_ms = FP_HOLD_MS_DEFAULT;
}

static int fp_parse_args(int argc, char **argv, struct fp_opts *o)
{
	int code;

	fp_opts_init(o);
	opterr = 0;
	while ((code = getopt_long(argc, argv, ":", fp_longopts, NULL)) != -1) {
		if (code == OPT_HELP) {
			fp_usage();
			exit(0);
		}
		if (code == '?' || code == ':') {
			fprintf(stderr, "fault_proxy: bad option '%s'%s\n",
				argv[optind - 1],
				code == ':' ? " (needs a value)" : "");
			return -EINVAL;
		}
		if (fp_parse_opt(o, code, optarg) < 0)
			return -EINVAL;
	}
	if (optind < argc) {
		fprintf(stderr, "fault_proxy: unexpected argument '%s'\n",
			argv[optind]);
		return -EINVAL;
	}
	return fp_check_opts(o);
}

/* ---- chunks and directions ----------------------------------------------- */

static int fp_src(const struct fp_conn *c, const struct fp_dir *d)
{
	return d->up ? c->cfd : c->sfd;
}

static int fp_dst(const struct fp_conn *c, const struct fp_dir *d)
{
	return d->up ? c->sfd : c->cfd;
}

static void fp_dir_init(struct fp_proxy *p, struct fp_conn *c,
			struct fp_dir *d, bool up)
{
	const struct fp_opts *o = p->o;
	bool conn_ok = o->flip_conn == 0 || o->flip_conn == c->id;
	bool dir_ok = o->dir == FP_DIR_BOTH || (o->dir == FP_DIR_UP) == up;

	memset(d, 0, sizeof(*d));
	d->up = up;
	d->name = up ? "up" : "down";
	d->limit = conn_ok && dir_ok ? o->cut_after : FP_NONE;
	d->next_flip = conn_ok && dir_ok ? o->flip_after : FP_NONE;
	d->rng_flip = fp_stream_seed(o->seed, c->id, up, 1);
	d->rng_jitter = fp_stream_seed(o->seed, c->id, up, 2);
}

static void fp_dir_free(struct fp_dir *d)
{
	while (d->head != NULL) {
		struct fp_chunk *ch = d->head;

		d->head = ch->next;
		free(ch);
	}
	d->tail = NULL;
	d->queued = 0;
}

static bool fp_dir_wants_read(const struct fp_conn *c, const struct fp_dir *d)
{
	return !c->dead && !c->connecting && !d->eof &&
	       d->queued < FP_QUEUE_MAX && d->in < d->limit;
}

/* Due time: now + delay +- jitter, never before the previous chunk's. */
static int64_t fp_dir_due(struct fp_proxy *p, struct fp_dir *d, int64_t now)
{
	int64_t delay = (int64_t)p->o->delay_ms * FP_NS_PER_MS;
	int64_t jitter = (int64_t)p->o->jitter_ms * FP_NS_PER_MS;
	int64_t due;

	if (jitter > 0)
		delay += (int64_t)(fp_rand(&d->rng_jitter) %
				   (uint64_t)(2 * jitter + 1)) - jitter;
	due = now + (delay > 0 ? delay : 0);
	if (due < d->last_due)
		due = d->last_due;
	d->last_due = due;
	return due;
}

/* Flip the bits due in data, which holds stream bytes d->in onwards. */
static void fp_dir_flip(struct fp_proxy *p, struct fp_conn *c,
			struct fp_dir *d, unsigned char *data, size_t len)
{
	while (d->next_flip != FP_NONE && d->next_flip >= d->in &&
	       d->next_flip - d->in < len) {
		uint64_t at = d->next_flip;
		unsigned bit = (unsigned)(fp_rand(&d->rng_flip) % 8);
		uint64_t every = p->o->flip_every;

		data[at - d->in] ^= (unsigned char)(1u << bit);
		fp_say("conn %llu %s: flipped bit %u of byte %llu",
		       (unsigned long long)c->id, d->name, bit,
		       (unsigned long long)at);
		d->next_flip = every != FP_NONE && at < FP_NONE - every ?
			       at + every : FP_NONE;
	}
}

static void fp_record(struct fp_proxy *p, const unsigned char *data,
		      size_t len)
{
	while (len > 0) {
		ssize_t n = write(p->recfd, data, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			fp_say("record: write failed: %s; recording stopped",
			       strerror(errno));
			close(p->recfd);
			p->recfd = -1;
			return;
		}
		data += n;
		len -= (size_t)n;
	}
}

static int fp_dir_queue(struct fp_proxy *p, struct fp_conn *c,
			struct fp_dir *d, size_t len, int64_t now)
{
	struct fp_chunk *ch = malloc(sizeof(*ch) + len);

	if (ch == NULL)
		return -ENOMEM;
	memcpy(ch->data, p->buf, len);
	if (d->up && c->record && p->recfd >= 0)
		fp_record(p, ch->data, len);
	fp_dir_flip(p, c, d, ch->data, len);
	ch->next = NULL;
	ch->len = len;
	ch->off = 0;
	ch->due = fp_dir_due(p, d, now);
	if (d->tail != NULL)
		d->tail->next = ch;
	else
		d->head = ch;
	d->tail = ch;
	d->queued += len;
	d->in += len;
	return 0;
}

/* ---- connections --------------------------------------------------------- */

static void fp_conn_close(struct fp_conn *c, bool rst)
{
	if (c->dead)
		return;
	if (rst) {
		fp_rst_close(c->cfd);
		fp_rst_close(c->sfd);
	} else {
		close(c->cfd);
		close(c->sfd);
	}
	c->cfd = c->sfd = -1;
	c->dead = true;
	fp_dir_free(&c->up);
	fp_dir_free(&c->down);
}

static void fp_conn_abort(struct fp_proxy *p, struct fp_conn *c,
			  const char *what, int err)
{
	if (p->o->verbose)
		fp_say("conn %llu: %s: %s; resetting both sides",
		       (unsigned long long)c->id, what, strerror(err));
	fp_conn_close(c, true);
}

/* Read up to FP_READS_PER_WAKE buffers from d's source into its queue. */
static void fp_dir_read(struct fp_proxy *p, struct fp_conn *c,
			struct fp_dir *d, int64_t now)
{
	for (int i = 0; i < FP_READS_PER_WAKE && fp_dir_wants_read(c, d); i++) {
		size_t want = FP_BUF;
		ssize_t n;

		if (d->limit - d->in < want)
			want = (size_t)(d->limit - d->in);
		n = recv(fp_src(c, d), p->buf, want, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n < 0) {
			fp_conn_abort(p, c, d->up ? "client read" : "server read",
				      errno);
			return;
		}
		if (n == 0) {
			d->eof = true;
			return;
		}
		if (fp_dir_queue(p, c, d, (size_t)n, now) < 0) {
			fp_conn_abort(p, c, "queue", ENOMEM);
			return;
		}
	}
}

/* Send every due chunk the destination takes; -errno on a send error. */
static int fp_dir_flush(struct fp_conn *c, struct fp_dir *d, int64_t now)
{
	while (d->head != NULL && d->head->due <= now) {
		struct fp_chunk *ch = d->head;
		ssize_t n = send(fp_dst(c, d), ch->data + ch->off,
				 ch->len - ch->off, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
		ch->off += (size_t)n;
		d->out += (uint64_t)n;
		d->queued -= (size_t)n;
		if (ch->off == ch->len) {
			d->head = ch->next;
			if (d->head == NULL)
				d->tail = NULL;
			free(ch);
		}
	}
	return 0;
}

/*
 * The limit has passed the proxy: cut once the peer's kernel has
 * acknowledged every byte (so it receives exactly the limit), or after
 * FP_DRAIN_NS if it will not.  True if the connection was cut.
 */
static bool fp_dir_cut_due(struct fp_conn *c, struct fp_dir *d, int64_t now)
{
	int unacked = 0;

	if (d->drain_until == 0)
		d->drain_until = now + FP_DRAIN_NS;
	if (ioctl(fp_dst(c, d), SIOCOUTQ, &unacked) < 0)
		unacked = 0;
	if (unacked > 0 && now < d->drain_until)
		return false;
	fp_say("conn %llu: cut after %llu bytes %s", (unsigned long long)c->id,
	       (unsigned long long)d->out, d->name);
	fp_conn_close(c, true);
	return true;
}

/* Writes, half-close and cuts of one direction.  False once c is gone. */
static bool fp_dir_step(struct fp_proxy *p, struct fp_conn *c,
			struct fp_dir *d, int64_t now)
{
	int err = fp_dir_flush(c, d, now);

	if (err < 0) {
		fp_conn_abort(p, c, d->up ? "server write" : "client write", -err);
		return false;
	}
	if (d->head != NULL)
		return true;
	if (d->out == d->limit)
		return !fp_dir_cut_due(c, d, now);
	if (d->eof && !d->shut) {
		(void)shutdown(fp_dst(c, d), SHUT_WR);
		d->shut = true;
	}
	return true;
}

static void fp_conn_step(struct fp_proxy *p, struct fp_conn *c, int64_t now)
{
	if (c->dead || c->connecting)
		return;
	if (!fp_dir_step(p, c, &c->up, now) || !fp_dir_step(p, c, &c->down, now))
		return;
	if (c->up.shut && c->down.shut) {
		if (p->o->verbose)
			fp_say("conn %llu: closed (%llu bytes up, %llu down)",
			       (unsigned long long)c->id,
			       (unsigned long long)c->up.out,
			       (unsigned long long)c->down.out);
		fp_conn_close(c, false);
	}
}

static void fp_conn_refused(struct fp_proxy *p, struct fp_conn *c,
			    const char *what, int err)
{
	char a[32];

	fp_say("conn %llu: %s %s: %s; resetting client",
	       (unsigned long long)c->id, what,
	       fp_addr_str(&p->o->connect_addr, a, sizeof(a)), strerror(err));
	fp_conn_close(c, true);
}

/* The upstream socket polled ready: connected, or why not. */
static void fp_conn_connected(struct fp_proxy *p, struct fp_conn *c)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(c->sfd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err != 0) {
		fp_conn_refused(p, c, "connect to", err);
		return;
	}
	c->connecting = false;
	fp_nodelay(c->sfd);
}

static void fp_conn_start(struct fp_proxy *p, struct fp_conn *c)
{
	c->sfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->sfd < 0) {
		fp_conn_refused(p, c, "socket for", errno);
		return;
	}
	if (connect(c->sfd, (const struct sockaddr *)&p->o->connect_addr,
		    sizeof(p->o->connect_addr)) == 0) {
		fp_nodelay(c->sfd);
		return;
	}
	if (errno == EINPROGRESS)
		c->connecting = true;   /* fp_poll_handle finishes it */
	else
		fp_conn_refused(p, c, "connect to", errno);
}

static void fp_conn_new(struct fp_proxy *p, int cfd, uint64_t id)
{
	struct fp_conn *c = calloc(1, sizeof(*c));

	if (c == NULL) {
		fp_rst_close(cfd);
		return;
	}
	c->id = id;
	c->cfd = cfd;
	c->sfd = -1;
	c->record = id == 1 && p->recfd >= 0;
	fp_dir_init(p, c, &c->up, true);
	fp_dir_init(p, c, &c->down, false);
	fp_nodelay(cfd);
	c->next = p->conns;
	p->conns = c;
	p->nconns++;
	if (p->o->verbose)
		fp_say("conn %llu: accepted", (unsigned long long)id);
	fp_conn_start(p, c);
}

/* Free the connections closed during this round. */
static void fp_sweep(struct fp_proxy *p)
{
	struct fp_conn **pp = &p->conns;

	while (*pp != NULL) {
		struct fp_conn *c = *pp;

		if (c->dead) {
			*pp = c->next;
			p->nconns--;
			free(c);
		} else {
			pp = &c->next;
		}
	}
}

static void fp_accept_all(struct fp_proxy *p)
{
	for (;;) {
		int fd = accept4(p->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0 && (errno == EINTR || errno == ECONNABORTED))
			continue;
		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				fp_say("accept: %s", strerror(errno));
			return;
		}
		p->accepted++;
		if (p->nconns >= p->o->max_conns) {
			fp_say("conn %llu: refused, %zu connections open "
			       "(--max-conns %llu)",
			       (unsigned long long)p->accepted, p->nconns,
			       (unsigned long long)p->o->max_conns);
			fp_rst_close(fd);
			continue;
		}
		fp_conn_new(p, fd, p->accepted);
	}
}

static void fp_cut_all(struct fp_proxy *p)
{
	size_t n = 0;

	for (struct fp_conn *c = p->conns; c != NULL; c = c->next) {
		if (!c->dead) {
			fp_conn_close(c, true);
			n++;
		}
	}
	fp_say("cut %zu connections", n);
}

/* ---- the loop ------------------------------------------------------------ */

static int fp_pfds_reserve(struct fp_proxy *p, size_t n)
{
	struct pollfd *pfds;
	struct fp_conn **pconn;

	if (n <= p->pcap)
		return 0;
	pfds = realloc(p->pfds, n * sizeof(*pfds));
	if (pfds == NULL)
		return -ENOMEM;
	p->pfds = pfds;
	pconn = realloc(p->pconn, n * sizeof(*pconn));
	if (pconn == NULL)
		return -ENOMEM;
	p->pconn = pconn;
	p->pcap = n;
	return 0;
}

/* How long until d needs attention: a chunk falls due, or a cut drains. */
static int64_t fp_dir_wait(const struct fp_dir *d, int64_t now, int64_t wait)
{
	if (d->head != NULL && d->head->due > now && d->head->due - now < wait)
		wait = d->head->due - now;
	if (d->head == NULL && d->out == d->limit && wait > FP_DRAIN_POLL_NS)
		wait = FP_DRAIN_POLL_NS;
	return wait;
}

static void fp_pfd_set(struct fp_proxy *p, size_t i, struct fp_conn *c,
		       int fd, short events)
{
	p->pfds[i].fd = events != 0 ? fd : -1;
	p->pfds[i].events = events;
	p->pfds[i].revents = 0;
	p->pconn[i] = c;
}

static short fp_events(const struct fp_conn *c, const struct fp_dir *rd,
		       const struct fp_dir *wr, int64_t now)
{
	short ev = 0;

	if (fp_dir_wants_read(c, rd))
		ev |= POLLIN;
	if (!c->connecting && wr->head != NULL && wr->head->due <= now)
		ev |= POLLOUT;
	return ev;
}

/* Fill pfds: [0] signals, [1] listener, then client and server per conn. */
static size_t fp_poll_build(struct fp_proxy *p, int64_t now, int64_t *wait)
{
	size_t n = 2;

	fp_pfd_set(p, 0, NULL, p->sigfd, POLLIN);
	fp_pfd_set(p, 1, NULL, p->lfd, POLLIN);
	for (struct fp_conn *c = p->conns; c != NULL; c = c->next) {
		if (c->dead)
			continue;
		fp_pfd_set(p, n++, c, c->cfd, fp_events(c, &c->up, &c->down, now));
		fp_pfd_set(p, n++, c, c->sfd, c->connecting ? POLLOUT :
			   fp_events(c, &c->down, &c->up, now));
		if (!c->connecting) {
			*wait = fp_dir_wait(&c->up, now, *wait);
			*wait = fp_dir_wait(&c->down, now, *wait);
		}
	}
	return n;
}

static void fp_signal(struct fp_proxy *p)
{
	struct signalfd_siginfo si;

	while (read(p->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGUSR1)
			fp_cut_all(p);
		else
			p->stop = true;
	}
}

static void fp_poll_handle(struct fp_proxy *p, size_t n, int64_t now)
{
	for (size_t i = 2; i < n; i += 2) {
		struct fp_conn *c = p->pconn[i];

		if (c->dead)
			continue;
		if (c->connecting) {
			if (p->pfds[i + 1].revents != 0)
				fp_conn_connected(p, c);
			continue;
		}
		if (p->pfds[i].revents & (POLLIN | POLLERR | POLLHUP))
			fp_dir_read(p, c, &c->up, now);
		if (p->pfds[i + 1].revents & (POLLIN | POLLERR | POLLHUP))
			fp_dir_read(p, c, &c->down, now);
	}
	if (p->pfds[1].revents & POLLIN)
		fp_accept_all(p);
	if (p->pfds[0].revents & POLLIN)
		fp_signal(p);
}

static int fp_loop(struct fp_proxy *p)
{
	while (!p->stop) {
		int64_t now = fp_now(), wait = INT64_MAX;
		struct timespec ts, *tsp = NULL;
		size_t n;

		for (struct fp_conn *c = p->conns; c != NULL; c = c->next)
			fp_conn_step(p, c, now);
		fp_sweep(p);
		if (fp_pfds_reserve(p, 2 + 2 * p->nconns) < 0)
			return -ENOMEM;
		n = fp_poll_build(p, now, &wait);
		if (wait != INT64_MAX) {
			ts.tv_sec = wait / 1000000000LL;
			ts.tv_nsec = wait % 1000000000LL;
			tsp = &ts;
		}
		if (ppoll(p->pfds, n, tsp, NULL) < 0 && errno != EINTR)
			return -errno;
		fp_poll_handle(p, n, fp_now());
	}
	return 0;
}

/* ---- proxy setup --------------------------------------------------------- */

static int fp_listen(struct fp_proxy *p)
{
	const struct sockaddr_in *a = &p->o->listen_addr;
	int one = 1;
	char buf[32];

	p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (p->lfd < 0)
		return -errno;
	(void)setsockopt(p->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(p->lfd, (const struct sockaddr *)a, sizeof(*a)) < 0 ||
	    listen(p->lfd, 128) < 0) {
		int err = errno;

		fp_say("cannot listen on %s: %s", fp_addr_str(a, buf, sizeof(buf)),
		       strerror(err));
		return -err;
	}
	return 0;
}

static int fp_signals(struct fp_proxy *p)
{
	sigset_t set;

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return -errno;
	p->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	return p->sigfd < 0 ? -errno : 0;
}

/* Two descriptors per connection, plus a few; raise the soft limit. */
static void fp_fd_limit(uint64_t max_conns)
{
	struct rlimit rl;
	rlim_t want = (rlim_t)(2 * max_conns + 32);

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= want)
		return;
	rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
	(void)setrlimit(RLIMIT_NOFILE, &rl);
}

static int fp_open_record(struct fp_proxy *p)
{
	if (p->o->record == NULL)
		return 0;
	p->recfd = open(p->o->record, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
			0644);
	if (p->recfd < 0) {
		int err = errno;

		fprintf(stderr, "fault_proxy: bad value for --record: '%s' (%s)\n",
			p->o->record, strerror(err));
		return -err;
	}
	return 0;
}

static uint64_t fp_default_seed(void)
{
	struct timespec t;
	uint64_t s;

	clock_gettime(CLOCK_REALTIME, &t);
	s = (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
	s ^= (uint64_t)getpid() << 32;
	return fp_rand(&s) % 1000000000000ULL;  /* short enough to retype */
}

static void fp_announce(struct fp_proxy *p)
{
	struct sockaddr_in a;
	socklen_t len = sizeof(a);
	char buf[32];

	if (getsockname(p->lfd, (struct sockaddr *)&a, &len) < 0)
		a = p->o->listen_addr;
	printf("fault_proxy: listening on %s seed %llu\n",
	       fp_addr_str(&a, buf, sizeof(buf)),
	       (unsigned long long)p->o->seed);
	fflush(stdout);
}

static void fp_proxy_free(struct fp_proxy *p)
{
	for (struct fp_conn *c = p->conns; c != NULL; c = c->next)
		fp_conn_close(c, false);
	fp_sweep(p);
	if (p->lfd >= 0)
		close(p->lfd);
	if (p->sigfd >= 0)
		close(p->sigfd);
	if (p->recfd >= 0)
		close(p->recfd);
	free(p->buf);
	free(p->pfds);
	free(p->pconn);
}

static int fp_proxy_main(struct fp_opts *o)
{
	struct fp_proxy p = { .o = o, .lfd = -1, .sigfd = -1, .recfd = -1 };
	int err;

	if (!o->have_seed)
		o->seed = fp_default_seed();
	fp_fd_limit(o->max_conns);
	p.buf = malloc(FP_BUF);
	err = p.buf == NULL ? -ENOMEM : fp_open_record(&p);
	if (err == 0)
		err = fp_signals(&p);
	if (err == 0)
		err = fp_listen(&p);
	if (err == 0) {
		fp_announce(&p);
		err = fp_loop(&p);
		if (err < 0)
			fp_say("poll: %s", strerror(-err));
	}
	fp_proxy_free(&p);
	return err;
}

/* ---- replay -------------------------------------------------------------- */

static int fp_read_file(const char *path, unsigned char **data, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	size_t got = 0;

	if (fd < 0 || fstat(fd, &st) < 0) {
		int err = errno;

		fprintf(stderr, "fault_proxy: bad value for --replay: '%s' (%s)\n",
			path, strerror(err));
		if (fd >= 0)
			close(fd);
		return -err;
	}
	*data = malloc((size_t)st.st_size + 1);
	while (*data != NULL && got < (size_t)st.st_size) {
		ssize_t n = read(fd, *data + got, (size_t)st.st_size - got);

		if (n <= 0 && !(n < 0 && errno == EINTR))
			break;
		got += n > 0 ? (size_t)n : 0;
	}
	close(fd);
	*len = got;
	return *data == NULL ? -ENOMEM : 0;
}

static int fp_replay_connect(const struct fp_opts *o)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	char buf[32];

	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)&o->connect_addr,
		    sizeof(o->connect_addr)) < 0) {
		int err = errno;

		fp_say("cannot connect to %s: %s",
		       fp_addr_str(&o->connect_addr, buf, sizeof(buf)),
		       strerror(err));
		close(fd);
		return -err;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	return fd;
}

/* Discard what the peer sends; true once it closed or reset. */
static bool fp_replay_drain(int fd, unsigned char *buf)
{
	for (;;) {
		ssize_t n = recv(fd, buf, FP_BUF, 0);

		if (n > 0)
			continue;
		if (n < 0 && errno == EINTR)
			continue;
		return !(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
	}
}

/*
 * Send data while discarding replies.  The hold starts when the last byte
 * went out (or the last progress, if the peer stops reading).  Returns
 * the ms from start to the peer closing, or -1 if it held on.
 */
static int64_t fp_replay_run(int fd, const unsigned char *data, size_t len,
			     uint64_t hold_ms, size_t *sent, unsigned char *buf)
{
	int64_t start = fp_now(), hold = (int64_t)hold_ms * FP_NS_PER_MS;
	int64_t until = start + hold;

	for (;;) {
		int64_t now = fp_now();
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int ms;

		if (now >= until)
			return -1;
		if (*sent < len)
			pfd.events |= POLLOUT;
		ms = (int)((until - now + FP_NS_PER_MS - 1) / FP_NS_PER_MS);
		if (poll(&pfd, 1, ms) < 0 && errno != EINTR)
			return -1;
		if ((pfd.revents & (POLLIN | POLLERR | POLLHUP)) &&
		    fp_replay_drain(fd, buf))
			return (fp_now() - start) / FP_NS_PER_MS;
		if ((pfd.revents & POLLOUT) && *sent < len) {
			ssize_t n = send(fd, data + *sent, len - *sent, MSG_NOSIGNAL);

			if (n < 0 && errno != EAGAIN && errno != EINTR)
				return (fp_now() - start) / FP_NS_PER_MS;
			*sent += n > 0 ? (size_t)n : 0;
			if (n > 0)
				until = fp_now() + hold;
		}
	}
}

/* The whole replay; returns the exit status. */
static int fp_replay(const struct fp_opts *o)
{
	unsigned char *data = NULL, *buf = malloc(FP_BUF);
	size_t len = 0, sent = 0;
	int fd = -1, err;
	int64_t ms;

	signal(SIGPIPE, SIG_IGN);
	err = buf == NULL ? -ENOMEM : fp_read_file(o->replay, &data, &len);
	if (err == 0)
		fd = fp_replay_connect(o);
	if (fd >= 0) {
		ms = fp_replay_run(fd, data, len, o->hold_ms, &sent, buf);
		if (ms >= 0)
			printf("replay: sent %zu bytes, peer closed after %lld ms\n",
			       sent, (long long)ms);
		else
			printf("replay: sent %zu bytes, peer kept connection open\n",
			       sent);
		fflush(stdout);
		close(fd);
	}
	free(data);
	free(buf);
	if (err == -ENOMEM)
		return 1;
	return err < 0 ? 2 : fd < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
	struct fp_opts o;

	if (fp_parse_args(argc, argv, &o) < 0) {
		fp_usage();
		return 2;
	}
	if (o.replay != NULL)
		return fp_replay(&o);
	return fp_proxy_main(&o) < 0 ? 1 : 0;
}
