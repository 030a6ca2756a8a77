/*
 * histclient.c - a Jepsen-style history of writes against a Redis-protocol
 * server that may fail over from one address to another, and a checker of
 * that history against what the server holds afterwards.
 *
 *   histclient write --addr A[,B...] --history FILE [options]
 *   histclient check --addr A[,B...] --history FILE [--timeout-ms T]
 *   histclient selftest
 *
 * write: N threads, one connection each, send SET PREFIX:CLIENT:(SEQ % 64)
 * "CLIENT.SEQ.RANDOMHEX" one at a time and append one history line per
 * operation: "OP_ID CLIENT KEY VALUE START_NS END_NS RESULT".  RESULT is
 * ok (+OK), fail (an error reply, or the connection failed before the whole
 * request was written: certainly not applied) or maybe (no reply in time,
 * the connection lost after the request was written, a malformed reply:
 * perhaps applied).  A lost connection is replaced by trying the addresses
 * round-robin, starting after the one that failed, every 20 ms.
 *
 * check: GET every key of the history from the first address that answers
 * PING.  A key's value must be that of its last ok write, or of a maybe
 * write that started after it (or, with no ok write, nil or any maybe
 * value); otherwise it is LOST or PHANTOM.
 *
 * selftest: the RESP reply parser against a table of replies, good and bad.
 *
 * Plain sockets and poll(), one thread per client.  Options, formats and
 * exit codes: tests/tools/README.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define HC_NS_PER_MS INT64_C(1000000)
#define HC_NS_PER_S INT64_C(1000000000)
#define HC_MAX_ADDRS 16
#define HC_MAX_CLIENTS 1024
#define HC_KEYS_PER_CLIENT 64
#define HC_BACKOFF_NS (20 * HC_NS_PER_MS)
#define HC_TIMEOUT_DEFAULT_MS 2000
#define HC_TIMEOUT_MAX_MS 3600000ULL
#define HC_SECONDS_MAX 1e7
#define HC_PREFIX_DEFAULT "h"
#define HC_PREFIX_MAX 64
#define HC_TOKEN_MAX 1024               /* a key or value in the history */
#define HC_LINE_MAX 65536               /* a status or error reply line */
#define HC_WRITE_BULK_MAX 4096          /* write mode expects no bulk at all */
#define HC_CHECK_BULK_MAX ((size_t)64 << 20)
#define HC_CHECK_TRIES 3                /* GET attempts (each may reconnect) */

/* ---- small helpers --------------------------------------------------------- */

static int64_t hc_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * HC_NS_PER_S + ts.tv_nsec;
}

static void hc_sleep_ns(int64_t ns)
{
	struct timespec ts = { (time_t)(ns / HC_NS_PER_S),
			       (long)(ns % HC_NS_PER_S) };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* One whole line to stderr per call, so threads never interleave. */
static void hc_vlog(bool stamp, const char *fmt, va_list ap)
{
	char line[1024];
	int n = 0;

	if (stamp) {
		int64_t t = hc_now();

		n = snprintf(line, sizeof(line), "histclient: %" PRId64
			     ".%09" PRId64 " ", t / HC_NS_PER_S,
			     t % HC_NS_PER_S);
	} else {
		n = snprintf(line, sizeof(line), "histclient: ");
	}
	vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	strcat(line, "\n");
	fputs(line, stderr);
}

static void hc_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void hc_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	hc_vlog(false, fmt, ap);
	va_end(ap);
}

/* An event stamped with CLOCK_MONOTONIC seconds, the history's clock. */
static void hc_event(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void hc_event(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	hc_vlog(true, fmt, ap);
	va_end(ap);
}

static const char *hc_strerr(int e, char *buf, size_t len)
{
	return strerror_r(e, buf, len);   /* GNU: returns the message */
}

static uint64_t hc_splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Decimal digits only (no sign, no spaces), at most max. */
static bool hc_u64(const char *s, size_t len, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (len == 0 || len > 20)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned d;

		if (s[i] < '0' || s[i] > '9')
			return false;
		d = (unsigned)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	if (v > max)
		return false;
	*out = v;
	return true;
}

/* Printable ASCII without space: what a history token may hold. */
static bool hc_token_ok(const char *s, size_t len)
{
	if (len == 0 || len > HC_TOKEN_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return false;
	return true;
}

/* A value from the server for a report line: printable bytes as they are,
 * anything else (and '\') as \xNN, "" for the empty string. */
static void hc_print_value(FILE *f, const char *v, size_t len)
{
	if (len == 0) {
		fputs("\"\"", f);
		return;
	}
	for (size_t i = 0; i < len && i < 256; i++) {
		unsigned char c = (unsigned char)v[i];

		if (c < 0x21 || c > 0x7e || c == '\\')
			fprintf(f, "\\x%02x", c);
		else
			fputc(c, f);
	}
	if (len > 256)
		fprintf(f, "...(%zu bytes)", len);
}

/* ---- command line ------------------------------------------------------------- */

struct hc_addr {
	char text[272];
	struct sockaddr_storage sa;
	socklen_t salen;
};

struct hc_opts {
	struct hc_addr addrs[HC_MAX_ADDRS];
	int naddrs;
	const char *history;
	uint64_t clients;
	double seconds;                     /* 0: no time limit */
	uint64_t count;                     /* 0: no count limit */
	uint64_t timeout_ms;
	const char *prefix;
	uint64_t seed;
	bool have_seed;
	const char *stop_file;
};

static void hc_usage(void)
{
	fprintf(stderr,
		"usage: histclient write --addr HOST:PORT[,HOST:PORT...] --history FILE\n"
		"           [--clients N] [--seconds S] [--count N] [--timeout-ms T]\n"
		"           [--prefix P] [--seed S] [--stop-file F]\n"
		"       histclient check --addr HOST:PORT[,HOST:PORT...] --history FILE\n"
		"           [--timeout-ms T]\n"
		"       histclient selftest\n");
}

static _Noreturn void hc_usage_fail(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));
static _Noreturn void hc_usage_fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	hc_vlog(false, fmt, ap);
	va_end(ap);
	hc_usage();
	exit(2);
}

/* "HOST:PORT" or "[V6]:PORT"; an IPv4 result is preferred. */
static bool hc_parse_addr(const char *s, size_t len, struct hc_addr *a,
			  char *why, size_t whylen)
{
	char buf[272], *host, *port;
	struct addrinfo hints, *res = NULL, *pick;
	uint64_t pn;
	int rc;

	if (len == 0 || len >= sizeof(buf)) {
		snprintf(why, whylen, "expected HOST:PORT");
		return false;
	}
	memcpy(buf, s, len);
	buf[len] = '\0';
	snprintf(a->text, sizeof(a->text), "%s", buf);
	port = strrchr(buf, ':');
	if (port == NULL || port == buf) {
		snprintf(why, whylen, "expected HOST:PORT");
		return false;
	}
	*port++ = '\0';
	host = buf;
	if (host[0] == '[') {
		size_t hl = strlen(host);

		if (hl < 3 || host[hl - 1] != ']') {
			snprintf(why, whylen, "expected [IPV6]:PORT");
			return false;
		}
		host[hl - 1] = '\0';
		host++;
	}
	if (!hc_u64(port, strlen(port), 65535, &pn) || pn == 0) {
		snprintf(why, whylen, "port must be 1..65535");
		return false;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		snprintf(why, whylen, "%s", gai_strerror(rc));
		return false;
	}
	pick = res;
	for (struct addrinfo *p = res; p != NULL; p = p->ai_next)
		if (p->ai_family == AF_INET) {
			pick = p;
			break;
		}
	memcpy(&a->sa, pick->ai_addr, pick->ai_addrlen);
	a->salen = pick->ai_addrlen;
	freeaddrinfo(res);
	return true;
}

static void hc_parse_addrs(const char *list, struct hc_opts *o)
{
	const char *p = list;
	char why[128];

	o->naddrs = 0;
	for (;;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);

		if (o->naddrs == HC_MAX_ADDRS)
			hc_usage_fail("bad value for --addr: '%s' (at most %d addresses)",
				      list, HC_MAX_ADDRS);
		if (!hc_parse_addr(p, len, &o->addrs[o->naddrs], why,
				   sizeof(why)))
			hc_usage_fail("bad value for --addr: '%.*s' (%s)",
				      (int)len, p, why);
		o->naddrs++;
		if (comma == NULL)
			break;
		p = comma + 1;
	}
}

static uint64_t hc_opt_u64(const char *opt, const char *s, uint64_t min,
			   uint64_t max)
{
	uint64_t v;

	if (!hc_u64(s, strlen(s), max, &v) || v < min)
		hc_usage_fail("bad value for --%s: '%s' (expected a whole number %"
			      PRIu64 "..%" PRIu64 ")", opt, s, min, max);
	return v;
}

enum { OPT_ADDR = 256, OPT_HISTORY, OPT_CLIENTS, OPT_SECONDS, OPT_COUNT,
       OPT_TIMEOUT, OPT_PREFIX, OPT_SEED, OPT_STOP_FILE, OPT_HELP };

static const struct option hc_longopts[] = {
	{ "addr", required_argument, NULL, OPT_ADDR },
	{ "history", required_argument, NULL, OPT_HISTORY },
	{ "clients", required_argument, NULL, OPT_CLIENTS },
	{ "seconds", required_argument, NULL, OPT_SECONDS },
	{ "count", required_argument, NULL, OPT_COUNT },
	{ "timeout-ms", required_argument, NULL, OPT_TIMEOUT },
	{ "prefix", required_argument, NULL, OPT_PREFIX },
	{ "seed", required_argument, NULL, OPT_SEED },
	{ "stop-file", required_argument, NULL, OPT_STOP_FILE },
	{ "help", no_argument, NULL, OPT_HELP },
	{ NULL, 0, NULL, 0 },
};

static const char *hc_optname(int code)
{
	for (const struct option *o = hc_longopts; o->name != NULL; o++)
		if (o->val == code)
			return o->name;
	return "?";
}

static void hc_parse_args(int argc, char **argv, bool write_mode,
			  struct hc_opts *o)
{
	int code;
	bool have_addr = false;

	memset(o, 0, sizeof(*o));
	o->clients = 4;
	o->timeout_ms = HC_TIMEOUT_DEFAULT_MS;
	o->prefix = HC_PREFIX_DEFAULT;
	opterr = 0;
	optind = 1;
	while ((code = getopt_long(argc, argv, ":", hc_longopts, NULL)) != -1) {
		const char *v = optarg;

		if (code == '?' || code == ':')
			hc_usage_fail("bad option '%s'%s", argv[optind - 1],
				      code == ':' ? " (needs a value)" : "");
		if (!write_mode && code != OPT_ADDR && code != OPT_HISTORY &&
		    code != OPT_TIMEOUT && code != OPT_HELP)
			hc_usage_fail("option --%s is for write mode only",
				      hc_optname(code));
		switch (code) {
		case OPT_HELP:
			hc_usage();
			exit(0);
		case OPT_ADDR:
			hc_parse_addrs(v, o);
			have_addr = true;
			break;
		case OPT_HISTORY:
			if (v[0] == '\0')
				hc_usage_fail("bad value for --history: '' (expected a file name)");
			o->history = v;
			break;
		case OPT_CLIENTS:
			o->clients = hc_opt_u64("clients", v, 1, HC_MAX_CLIENTS);
			break;
		case OPT_SECONDS: {
			char *end;

			errno = 0;
			o->seconds = strtod(v, &end);
			if (v[0] < '0' || v[0] > '9' || *end != '\0' ||
			    errno != 0 || !isfinite(o->seconds) ||
			    o->seconds <= 0 || o->seconds > HC_SECONDS_MAX)
				hc_usage_fail("bad value for --seconds: '%s' (expected a number of seconds > 0)", v);
			break;
		}
		case OPT_COUNT:
			o->count = hc_opt_u64("count", v, 1, UINT64_MAX / 2);
			break;
		case OPT_TIMEOUT:
			o->timeout_ms = hc_opt_u64("timeout-ms", v, 1,
						   HC_TIMEOUT_MAX_MS);
			break;
		case OPT_PREFIX:
			if (!hc_token_ok(v, strlen(v)) ||
			    strlen(v) > HC_PREFIX_MAX)
				hc_usage_fail("bad value for --prefix: '%s' (1..%d printable characters, no spaces)",
					      v, HC_PREFIX_MAX);
			o->prefix = v;
			break;
		case OPT_SEED:
			o->seed = hc_opt_u64("seed", v, 0, UINT64_MAX);
			o->have_seed = true;
			break;
		case OPT_STOP_FILE:
			if (v[0] == '\0')
				hc_usage_fail("bad value for --stop-file: '' (expected a file name)");
			o->stop_file = v;
			break;
		default:
			hc_usage_fail("bad option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		hc_usage_fail("unexpected argument '%s'", argv[optind]);
	if (!have_addr)
		hc_usage_fail("missing --addr");
	if (o->history == NULL)
		hc_usage_fail("missing --history");
}

/* ---- RESP replies ---------------------------------------------------------------- */

enum resp_type { RESP_SIMPLE, RESP_ERROR, RESP_INT, RESP_BULK, RESP_NIL };

struct resp_reply {
	enum resp_type type;
	const char *data;                   /* SIMPLE, ERROR, BULK: into buf */
	size_t len;
	int64_t ival;                       /* INT */
};

enum { RESP_MORE = 0, RESP_DONE = 1, RESP_BAD = -1 };

/*
 * One reply at the start of buf[0..len).  RESP_DONE with *consumed set,
 * RESP_MORE when the bytes so far are a proper prefix of a reply, RESP_BAD
 * (*why set) when no continuation can make them one.  A line ends with
 * CRLF exactly; a bare CR or LF is malformed.  Lengths are canonical
 * decimals ("0", "-1" or no leading zero); bulk data must be followed by
 * CRLF.  Arrays are refused: no command histclient sends returns one.
 */
static int resp_parse(const char *buf, size_t len, size_t max_bulk,
		      struct resp_reply *r, size_t *consumed, const char **why)
{
	size_t i, ll;
	const char *line;
	bool neg;
	uint64_t v;

	if (len == 0)
		return RESP_MORE;
	switch (buf[0]) {
	case '+': case '-': case ':': case '$':
		break;
	case '*':
		*why = "unexpected array reply";
		return RESP_BAD;
	default:
		*why = "bad reply type byte";
		return RESP_BAD;
	}
	for (i = 1; i < len; i++) {
		if (buf[i] == '\n') {
			*why = "LF without CR";
			return RESP_BAD;
		}
		if (buf[i] == '\r')
			break;
		if (i > HC_LINE_MAX) {
			*why = "reply line too long";
			return RESP_BAD;
		}
	}
	if (i >= len || i + 1 >= len)
		return RESP_MORE;
	if (buf[i + 1] != '\n') {
		*why = "CR without LF";
		return RESP_BAD;
	}
	line = buf + 1;
	ll = i - 1;
	*consumed = i + 2;
	memset(r, 0, sizeof(*r));
	if (buf[0] == '+' || buf[0] == '-') {
		r->type = buf[0] == '+' ? RESP_SIMPLE : RESP_ERROR;
		r->data = line;
		r->len = ll;
		return RESP_DONE;
	}
	neg = ll > 0 && line[0] == '-';
	if (neg) {
		line++;
		ll--;
	}
	if (ll == 0 || (ll > 1 && line[0] == '0') ||
	    !hc_u64(line, ll, neg ? (uint64_t)INT64_MAX + 1 : INT64_MAX, &v)) {
		*why = buf[0] == '$' ? "bad bulk length" : "bad integer";
		return RESP_BAD;
	}
	if (buf[0] == ':') {
		if (neg && v == 0) {
			*why = "bad integer";
			return RESP_BAD;
		}
		r->type = RESP_INT;
		r->ival = neg ? (int64_t)(0 - v) : (int64_t)v;
		return RESP_DONE;
	}
	if (neg) {
		if (v != 1) {
			*why = "bad bulk length";
			return RESP_BAD;
		}
		r->type = RESP_NIL;
		return RESP_DONE;
	}
	if (v > max_bulk) {
		*why = "bulk reply too long";
		return RESP_BAD;
	}
	if (len - *consumed < v + 2)
		return RESP_MORE;
	if (buf[*consumed + v] != '\r' || buf[*consumed + v + 1] != '\n') {
		*why = "bulk data not followed by CRLF";
		return RESP_BAD;
	}
	r->type = RESP_BULK;
	r->data = buf + *consumed;
	r->len = (size_t)v;
	*consumed += (size_t)v + 2;
	return RESP_DONE;
}

/* ---- connections ---------------------------------------------------------------------- */

struct hc_conn {
	int fd;                             /* -1: not connected */
	int addr;                           /* index into the address list */
	char *buf;                          /* received, not yet consumed */
	size_t len, cap, max_bulk;
};

static void hc_conn_init(struct hc_conn *c, size_t max_bulk)
{
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	c->addr = -1;
	c->max_bulk = max_bulk;
}

static void hc_conn_close(struct hc_conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->len = 0;
}

static void hc_conn_free(struct hc_conn *c)
{
	hc_conn_close(c);
	free(c->buf);
	c->buf = NULL;
	c->cap = 0;
}

/* poll one fd until deadline: >0 ready, 0 timed out, -1 error (errno). */
static int hc_poll(int fd, short events, int64_t deadline, short *revents)
{
	for (;;) {
		struct pollfd p = { fd, events, 0 };
		int64_t left = deadline - hc_now();
		int r;

		if (left <= 0)
			left = 0;
		r = poll(&p, 1, (int)((left + HC_NS_PER_MS - 1) / HC_NS_PER_MS));
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0 && hc_now() < deadline)
			continue;
		if (r > 0 && revents != NULL)
			*revents = p.revents;
		return r;
	}
}

/* A connected non-blocking socket, or -errno. */
static int hc_connect(const struct hc_addr *a, uint64_t timeout_ms)
{
	int fd, one = 1, err = 0;
	socklen_t elen = sizeof(err);
	int r;

	fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (const struct sockaddr *)&a->sa, a->salen) == 0)
		return fd;
	if (errno != EINPROGRESS) {
		err = errno;
		close(fd);
		return -err;
	}
	r = hc_poll(fd, POLLOUT, hc_now() + (int64_t)timeout_ms * HC_NS_PER_MS,
		    NULL);
	if (r <= 0) {
		err = r == 0 ? ETIMEDOUT : errno;
		close(fd);
		return -err;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
		err = errno;
	if (err != 0) {
		close(fd);
		return -err;
	}
	return fd;
}

enum { SEND_DONE = 0, SEND_ERR = -1, SEND_TIMEOUT = -2 };

static int hc_send_all(int fd, const char *p, size_t n, int64_t deadline,
		       size_t *sent, int *err)
{
	*sent = 0;
	while (*sent < n) {
		ssize_t w = send(fd, p + *sent, n - *sent, MSG_NOSIGNAL);
		int r;

		if (w > 0) {
			*sent += (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			*err = errno;
			return SEND_ERR;
		}
		r = hc_poll(fd, POLLOUT, deadline, NULL);
		if (r == 0)
			return SEND_TIMEOUT;
		if (r < 0) {
			*err = errno;
			return SEND_ERR;
		}
	}
	return SEND_DONE;
}

enum { RD_OK, RD_EOF, RD_ERR, RD_TIMEOUT, RD_BAD };

/* Read until one whole reply is buffered; *consumed is its length.  The
 * reply points into c->buf until hc_conn_consume(). */
static int hc_read_reply(struct hc_conn *c, int64_t deadline,
			 struct resp_reply *r, size_t *consumed,
			 const char **why, int *err)
{
	size_t max = c->max_bulk + HC_LINE_MAX + 64;

	for (;;) {
		int pr = resp_parse(c->buf, c->len, c->max_bulk, r, consumed,
				    why);
		ssize_t n;

		if (pr == RESP_DONE)
			return RD_OK;
		if (pr == RESP_BAD)
			return RD_BAD;
		if (c->len == c->cap) {
			size_t ncap = c->cap ? c->cap * 2 : 4096;
			char *nb;

			if (c->cap >= max) {
				*why = "reply too long";
				return RD_BAD;
			}
			if (ncap > max)
				ncap = max;
			nb = realloc(c->buf, ncap);
			if (nb == NULL) {
				*err = ENOMEM;
				return RD_ERR;
			}
			c->buf = nb;
			c->cap = ncap;
		}
		n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
		if (n > 0) {
			c->len += (size_t)n;
			continue;
		}
		if (n == 0)
			return RD_EOF;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			*err = errno;
			return RD_ERR;
		}
		pr = hc_poll(c->fd, POLLIN, deadline, NULL);
		if (pr == 0)
			return RD_TIMEOUT;
		if (pr < 0) {
			*err = errno;
			return RD_ERR;
		}
	}
}

static void hc_conn_consume(struct hc_conn *c, size_t n)
{
	memmove(c->buf, c->buf + n, c->len - n);
	c->len -= n;
}

/*
 * Between requests nothing may be pending: bytes the server sent unasked
 * mean the stream is out of step, and a close or error means the next
 * request would be lost for nothing.  Either way: reconnect first.
 */
static bool hc_conn_usable(struct hc_conn *c, char *why, size_t whylen)
{
	struct pollfd p = { c->fd, POLLIN | POLLRDHUP, 0 };
	char b, eb[96];
	ssize_t n;

	if (c->len > 0) {
		snprintf(why, whylen, "unsolicited data from the server");
		return false;
	}
	if (poll(&p, 1, 0) <= 0)
		return true;
	n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n > 0) {
		snprintf(why, whylen, "unsolicited data from the server");
		return false;
	}
	if (n == 0) {
		snprintf(why, whylen, "closed by the server");
		return false;
	}
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
		if ((p.revents & (POLLERR | POLLHUP | POLLRDHUP)) == 0)
			return true;
		snprintf(why, whylen, "connection hung up");
		return false;
	}
	snprintf(why, whylen, "%s", hc_strerr(errno, eb, sizeof(eb)));
	return false;
}

/* The request "*N\r\n$len\r\narg\r\n..." for up to 3 arguments. */
static size_t hc_request(char *out, size_t cap, int argc, const char **argv,
			 const size_t *lens)
{
	size_t n = (size_t)snprintf(out, cap, "*%d\r\n", argc);

	for (int i = 0; i < argc; i++) {
		n += (size_t)snprintf(out + n, cap - n, "$%zu\r\n", lens[i]);
		if (n + lens[i] + 2 >= cap)
			return 0;
		memcpy(out + n, argv[i], lens[i]);
		n += lens[i];
		out[n++] = '\r';
		out[n++] = '\n';
	}
	return n;
}

/* ---- write mode -------------------------------------------------------------------- */

enum hc_result { HC_OK, HC_FAIL, HC_MAYBE };
static const char *const hc_result_name[] = { "ok", "fail", "maybe" };

struct hc_client {
	unsigned id;
	pthread_t thread;
	struct hc_conn conn;
	uint64_t rng;
	uint64_t ops, n_ok, n_fail, n_maybe, reconnects;
};

static struct hc_opts g_opts;
static atomic_bool g_stop;
static atomic_bool g_io_failed;
static atomic_uint g_finished;
static pthread_mutex_t g_hist_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_hist_fd = -1;
static uint64_t g_next_op_id = 1;           /* under g_hist_lock */

/* Append one line (one write(2), so a line is never torn by a crash of
 * another thread).  op_ids are given in file order. */
static bool hc_record(unsigned client, const char *key, const char *value,
		      int64_t start, int64_t end, enum hc_result res)
{
	char line[HC_TOKEN_MAX * 2 + 128];
	size_t n, off = 0;
	bool ok = true;

	pthread_mutex_lock(&g_hist_lock);
	if (atomic_load(&g_io_failed)) {
		pthread_mutex_unlock(&g_hist_lock);
		return false;
	}
	n = (size_t)snprintf(line, sizeof(line),
			     "%" PRIu64 " %u %s %s %" PRId64 " %" PRId64 " %s\n",
			     g_next_op_id++, client, key, value, start, end,
			     hc_result_name[res]);
	while (off < n) {
		ssize_t w = write(g_hist_fd, line + off, n - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			char eb[96];

			hc_err("writing %s: %s", g_opts.history,
			       w < 0 ? hc_strerr(errno, eb, sizeof(eb)) :
				       "no progress");
			ok = false;
			break;
		}
		off += (size_t)w;
	}
	pthread_mutex_unlock(&g_hist_lock);
	return ok;
}

/* Connect to one address of the list, round-robin from `start`, every
 * 20 ms until one accepts or the run stops.  false: stopped. */
static bool hc_client_connect(struct hc_client *cl, int start, bool first)
{
	int64_t t0 = hc_now();
	uint64_t attempts = 0;
	int n = g_opts.naddrs, last_err = 0;

	for (;;) {
		for (int k = 0; k < n; k++) {
			int i = (start + k) % n;
			int fd;

			if (atomic_load(&g_stop))
				return false;
			attempts++;
			fd = hc_connect(&g_opts.addrs[i], g_opts.timeout_ms);
			if (fd < 0) {
				last_err = -fd;
				continue;
			}
			cl->conn.fd = fd;
			cl->conn.addr = i;
			cl->conn.len = 0;
			if (first) {
				hc_event("client %u: connected to %s (%" PRIu64
					 " attempts, %" PRId64 " ms)", cl->id,
					 g_opts.addrs[i].text, attempts,
					 (hc_now() - t0) / HC_NS_PER_MS);
			} else {
				cl->reconnects++;
				hc_event("client %u: reconnected to %s (%" PRIu64
					 " attempts, %" PRId64 " ms)", cl->id,
					 g_opts.addrs[i].text, attempts,
					 (hc_now() - t0) / HC_NS_PER_MS);
			}
			return true;
		}
		if (attempts == (uint64_t)n) {
			char eb[96];

			hc_event("client %u: no address accepts (last: %s); retrying every %" PRId64 " ms",
				 cl->id, hc_strerr(last_err, eb, sizeof(eb)),
				 HC_BACKOFF_NS / HC_NS_PER_MS);
		}
		hc_sleep_ns(HC_BACKOFF_NS);
	}
}

/* One SET; *drop when the connection must not be used again. */
static enum hc_result hc_set(struct hc_conn *c, const char *req, size_t reqlen,
			     int64_t deadline, bool *drop, char *why,
			     size_t whylen)
{
	struct resp_reply r;
	size_t sent = 0, consumed = 0;
	const char *bad = NULL;
	char eb[96];
	int err = 0, s;

	*drop = true;
	s = hc_send_all(c->fd, req, reqlen, deadline, &sent, &err);
	if (s != SEND_DONE) {
		/* The server cannot hold a whole request: not applied. */
		snprintf(why, whylen, "%s after %zu of %zu request bytes",
			 s == SEND_TIMEOUT ? "send timed out" :
					     hc_strerr(err, eb, sizeof(eb)),
			 sent, reqlen);
		return HC_FAIL;
	}
	switch (hc_read_reply(c, deadline, &r, &consumed, &bad, &err)) {
	case RD_OK:
		break;
	case RD_EOF:
		snprintf(why, whylen, "closed by the server before the reply");
		return HC_MAYBE;
	case RD_ERR:
		snprintf(why, whylen, "%s before the reply",
			 hc_strerr(err, eb, sizeof(eb)));
		return HC_MAYBE;
	case RD_TIMEOUT:
		snprintf(why, whylen, "no reply within %" PRIu64 " ms",
			 g_opts.timeout_ms);
		return HC_MAYBE;
	default:
		snprintf(why, whylen, "malformed reply: %s", bad);
		return HC_MAYBE;
	}
	if (c->len != consumed) {
		/* More than one reply to one request: out of step. */
		snprintf(why, whylen, "extra bytes after the reply");
		return HC_MAYBE;
	}
	hc_conn_consume(c, consumed);
	if (r.type == RESP_SIMPLE && r.len == 2 && memcmp(r.data, "OK", 2) == 0) {
		*drop = false;
		return HC_OK;
	}
	if (r.type == RESP_ERROR) {
		*drop = false;
		snprintf(why, whylen, "error reply");
		return HC_FAIL;
	}
	snprintf(why, whylen, "unexpected reply type to SET");
	return HC_MAYBE;
}

static void *hc_client_main(void *arg)
{
	struct hc_client *cl = arg;
	bool first = true;
	char key[HC_PREFIX_MAX + 64], value[96], why[192];
	char req[HC_PREFIX_MAX + 256];

	for (uint64_t seq = 0; !atomic_load(&g_stop); ) {
		const char *argv[3];
		size_t lens[3], reqlen;
		int64_t start, end;
		enum hc_result res;
		bool drop;

		if (g_opts.count != 0 && seq >= g_opts.count)
			break;
		if (cl->conn.fd < 0) {
			int from = first ? 0 : (cl->conn.addr + 1) % g_opts.naddrs;

			if (!hc_client_connect(cl, from, first))
				break;
			first = false;
		}
		if (!hc_conn_usable(&cl->conn, why, sizeof(why))) {
			hc_event("client %u: connection to %s lost: %s",
				 cl->id, g_opts.addrs[cl->conn.addr].text, why);
			hc_conn_close(&cl->conn);
			continue;
		}
		snprintf(key, sizeof(key), "%s:%u:%" PRIu64, g_opts.prefix,
			 cl->id, seq % HC_KEYS_PER_CLIENT);
		snprintf(value, sizeof(value), "%u.%" PRIu64 ".%016" PRIx64,
			 cl->id, seq, hc_splitmix(&cl->rng));
		argv[0] = "SET";
		argv[1] = key;
		argv[2] = value;
		for (int i = 0; i < 3; i++)
			lens[i] = strlen(argv[i]);
		reqlen = hc_request(req, sizeof(req), 3, argv, lens);
		start = hc_now();
		res = hc_set(&cl->conn, req, reqlen,
			     start + (int64_t)g_opts.timeout_ms * HC_NS_PER_MS,
			     &drop, why, sizeof(why));
		end = hc_now();
		cl->ops++;
		if (res == HC_OK)
			cl->n_ok++;
		else if (res == HC_FAIL)
			cl->n_fail++;
		else
			cl->n_maybe++;
		if (!hc_record(cl->id, key, value, start, end, res)) {
			atomic_store(&g_io_failed, true);
			atomic_store(&g_stop, true);
		}
		if (drop) {
			hc_event("client %u: connection to %s lost: %s (SET %s: %s)",
				 cl->id, g_opts.addrs[cl->conn.addr].text, why,
				 key, hc_result_name[res]);
			hc_conn_close(&cl->conn);
		}
		seq++;
	}
	hc_conn_free(&cl->conn);
	atomic_fetch_add(&g_finished, 1);
	return NULL;
}

static int hc_write_main(int argc, char **argv)
{
	struct hc_client *cls;
	sigset_t sigs;
	int64_t deadline = 0;
	uint64_t ops = 0, ok = 0, fail = 0, maybe = 0, rec = 0;
	unsigned started = 0;

	hc_parse_args(argc, argv, true, &g_opts);
	if (!g_opts.have_seed) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		g_opts.seed = ((uint64_t)ts.tv_sec * HC_NS_PER_S +
			       (uint64_t)ts.tv_nsec) ^
			      ((uint64_t)getpid() << 32);
	}
	g_hist_fd = open(g_opts.history,
			 O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
	if (g_hist_fd < 0) {
		char eb[96];

		hc_err("cannot open %s: %s", g_opts.history,
		       hc_strerr(errno, eb, sizeof(eb)));
		return 1;
	}
	hc_err("seed %" PRIu64, g_opts.seed);
	cls = calloc(g_opts.clients, sizeof(*cls));
	if (cls == NULL) {
		hc_err("out of memory");
		return 1;
	}
	/* Workers never see SIGINT/SIGTERM; the main thread waits for them. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (g_opts.seconds > 0)
		deadline = hc_now() + (int64_t)(g_opts.seconds * HC_NS_PER_S);
	for (unsigned i = 0; i < g_opts.clients; i++) {
		uint64_t s = g_opts.seed ^ (0xa0761d6478bd642fULL * (i + 1));

		cls[i].id = i;
		cls[i].rng = hc_splitmix(&s);
		hc_conn_init(&cls[i].conn, HC_WRITE_BULK_MAX);
		if (pthread_create(&cls[i].thread, NULL, hc_client_main,
				   &cls[i]) != 0) {
			hc_err("cannot start client thread %u", i);
			atomic_store(&g_io_failed, true);
			atomic_store(&g_stop, true);
			break;
		}
		started++;
	}
	while (atomic_load(&g_finished) < started) {
		struct timespec tick = { 0, 10 * HC_NS_PER_MS };
		int sig = sigtimedwait(&sigs, NULL, &tick);

		if (sig == SIGINT || sig == SIGTERM) {
			if (!atomic_load(&g_stop))
				hc_event("signal %d: stopping", sig);
			atomic_store(&g_stop, true);
		}
		if (deadline != 0 && hc_now() >= deadline)
			atomic_store(&g_stop, true);
		if (g_opts.stop_file != NULL && !atomic_load(&g_stop) &&
		    access(g_opts.stop_file, F_OK) == 0) {
			hc_event("%s exists: stopping", g_opts.stop_file);
			atomic_store(&g_stop, true);
		}
	}
	for (unsigned i = 0; i < started; i++) {
		pthread_join(cls[i].thread, NULL);
		ops += cls[i].ops;
		ok += cls[i].n_ok;
		fail += cls[i].n_fail;
		maybe += cls[i].n_maybe;
		rec += cls[i].reconnects;
	}
	free(cls);
	if (close(g_hist_fd) < 0) {
		char eb[96];

		hc_err("closing %s: %s", g_opts.history,
		       hc_strerr(errno, eb, sizeof(eb)));
		atomic_store(&g_io_failed, true);
	}
	printf("histclient: ops %" PRIu64 " ok %" PRIu64 " fail %" PRIu64
	       " maybe %" PRIu64 " reconnects %" PRIu64 "\n", ops, ok, fail,
	       maybe, rec);
	if (fflush(stdout) != 0)
		return 1;
	return atomic_load(&g_io_failed) ? 1 : 0;
}

/* ---- check mode ----------------------------------------------------------------------- */

struct hc_op {
	uint64_t id, client;
	char *key, *value;
	int64_t start, end;
	enum hc_result res;
	size_t line;
};

struct hc_history {
	const char *file;
	struct hc_op *ops;
	size_t n, cap;
};

static _Noreturn void hc_history_bad(const struct hc_history *h, size_t line,
				     const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static _Noreturn void hc_history_bad(const struct hc_history *h, size_t line,
				     const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	hc_err("%s:%zu: malformed history: %s", h->file, line, msg);
	exit(2);
}

static char *hc_strndup(const char *s, size_t n)
{
	char *p = malloc(n + 1);

	if (p == NULL) {
		hc_err("out of memory");
		exit(1);
	}
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

/* "OP_ID CLIENT KEY VALUE START_NS END_NS RESULT\n", single spaces. */
static void hc_parse_line(struct hc_history *h, const char *s, size_t len,
			  size_t lineno)
{
	const char *tok[7];
	size_t tlen[7], nt = 0, i = 0;
	struct hc_op op;
	uint64_t v;

	if (len == 0 || s[len - 1] != '\n')
		hc_history_bad(h, lineno, "line does not end in a newline (truncated?)");
	len--;
	if (memchr(s, '\0', len) != NULL)
		hc_history_bad(h, lineno, "NUL byte in line");
	while (i <= len) {
		size_t j = i;

		while (j < len && s[j] != ' ')
			j++;
		if (nt == 7)
			hc_history_bad(h, lineno, "more than 7 fields");
		tok[nt] = s + i;
		tlen[nt] = j - i;
		if (tlen[nt] == 0)
			hc_history_bad(h, lineno, "empty field %zu (fields are separated by one space)",
				       nt + 1);
		if (!hc_token_ok(tok[nt], tlen[nt]))
			hc_history_bad(h, lineno, "field %zu is not 1..%d printable characters",
				       nt + 1, HC_TOKEN_MAX);
		nt++;
		i = j + 1;
	}
	if (nt != 7)
		hc_history_bad(h, lineno, "%zu fields, expected 7 (op_id client key value start_ns end_ns result)",
			       nt);
	memset(&op, 0, sizeof(op));
	op.line = lineno;
	if (!hc_u64(tok[0], tlen[0], UINT64_MAX, &op.id))
		hc_history_bad(h, lineno, "op_id '%.*s' is not a number",
			       (int)tlen[0], tok[0]);
	if (!hc_u64(tok[1], tlen[1], UINT32_MAX, &op.client))
		hc_history_bad(h, lineno, "client '%.*s' is not a number",
			       (int)tlen[1], tok[1]);
	if (!hc_u64(tok[4], tlen[4], INT64_MAX, &v))
		hc_history_bad(h, lineno, "start_ns '%.*s' is not a number",
			       (int)tlen[4], tok[4]);
	op.start = (int64_t)v;
	if (!hc_u64(tok[5], tlen[5], INT64_MAX, &v))
		hc_history_bad(h, lineno, "end_ns '%.*s' is not a number",
			       (int)tlen[5], tok[5]);
	op.end = (int64_t)v;
	if (op.end < op.start)
		hc_history_bad(h, lineno, "end_ns before start_ns");
	if (tlen[6] == 2 && memcmp(tok[6], "ok", 2) == 0)
		op.res = HC_OK;
	else if (tlen[6] == 4 && memcmp(tok[6], "fail", 4) == 0)
		op.res = HC_FAIL;
	else if (tlen[6] == 5 && memcmp(tok[6], "maybe", 5) == 0)
		op.res = HC_MAYBE;
	else
		hc_history_bad(h, lineno, "result '%.*s' is not ok, fail or maybe",
			       (int)tlen[6], tok[6]);
	op.key = hc_strndup(tok[2], tlen[2]);
	op.value = hc_strndup(tok[3], tlen[3]);
	if (h->n == h->cap) {
		size_t ncap = h->cap ? h->cap * 2 : 1024;
		struct hc_op *n = realloc(h->ops, ncap * sizeof(*n));

		if (n == NULL) {
			hc_err("out of memory");
			exit(1);
		}
		h->ops = n;
		h->cap = ncap;
	}
	h->ops[h->n++] = op;
}

static int hc_cmp_id(const void *a, const void *b)
{
	const struct hc_op *x = a, *y = b;

	return x->id < y->id ? -1 : x->id > y->id;
}

/* By key, then end_ns (a key's operations are sequential), then op_id. */
static int hc_cmp_key(const void *a, const void *b)
{
	const struct hc_op *x = a, *y = b;
	int c = strcmp(x->key, y->key);

	if (c != 0)
		return c;
	if (x->end != y->end)
		return x->end < y->end ? -1 : 1;
	if (x->start != y->start)
		return x->start < y->start ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

static int hc_read_history(struct hc_history *h)
{
	FILE *f = fopen(h->file, "r");
	char *line = NULL;
	size_t cap = 0, lineno = 0;
	ssize_t n;

	if (f == NULL) {
		char eb[96];

		hc_err("cannot open %s: %s", h->file,
		       hc_strerr(errno, eb, sizeof(eb)));
		return -1;
	}
	errno = 0;
	while ((n = getline(&line, &cap, f)) > 0) {
		lineno++;
		hc_parse_line(h, line, (size_t)n, lineno);
	}
	if (ferror(f)) {
		char eb[96];

		hc_err("reading %s: %s", h->file,
		       hc_strerr(errno ? errno : EIO, eb, sizeof(eb)));
		free(line);
		fclose(f);
		return -1;
	}
	free(line);
	fclose(f);

	/* Whole-history rules: unique op_ids; one client per key; the
	 * operations on a key do not overlap in time. */
	qsort(h->ops, h->n, sizeof(*h->ops), hc_cmp_id);
	for (size_t i = 1; i < h->n; i++)
		if (h->ops[i].id == h->ops[i - 1].id) {
			size_t a = h->ops[i].line, b = h->ops[i - 1].line;

			hc_history_bad(h, a > b ? a : b,
				       "op_id %" PRIu64 " used again (line %zu)",
				       h->ops[i].id, a > b ? b : a);
		}
	qsort(h->ops, h->n, sizeof(*h->ops), hc_cmp_key);
	for (size_t i = 1; i < h->n; i++) {
		const struct hc_op *p = &h->ops[i - 1], *o = &h->ops[i];

		if (strcmp(p->key, o->key) != 0)
			continue;
		if (p->client != o->client)
			hc_history_bad(h, o->line > p->line ? o->line : p->line,
				       "key %s written by client %" PRIu64
				       " and by client %" PRIu64 " (line %zu)",
				       o->key, o->client, p->client,
				       o->line > p->line ? p->line : o->line);
		if (o->start < p->end)
			hc_history_bad(h, o->line > p->line ? o->line : p->line,
				       "operations on key %s overlap in time (line %zu); they must be sequential",
				       o->key,
				       o->line > p->line ? p->line : o->line);
	}
	return 0;
}

struct hc_checker {
	struct hc_conn conn;
	uint64_t timeout_ms;
};

/* Connect to the first address, in list order, that answers PING. */
static bool hc_check_connect(struct hc_checker *ck)
{
	static const char ping[] = "*1\r\n$4\r\nPING\r\n";
	char eb[96];

	hc_conn_close(&ck->conn);
	for (int i = 0; i < g_opts.naddrs; i++) {
		int64_t deadline = hc_now() +
				   (int64_t)ck->timeout_ms * HC_NS_PER_MS;
		struct resp_reply r;
		size_t sent, consumed;
		const char *why = "";
		int fd = hc_connect(&g_opts.addrs[i], ck->timeout_ms), err = 0;
		int rd;

		if (fd < 0) {
			hc_err("check: %s: %s", g_opts.addrs[i].text,
			       hc_strerr(-fd, eb, sizeof(eb)));
			continue;
		}
		ck->conn.fd = fd;
		ck->conn.addr = i;
		ck->conn.len = 0;
		if (hc_send_all(fd, ping, sizeof(ping) - 1, deadline, &sent,
				&err) == SEND_DONE &&
		    (rd = hc_read_reply(&ck->conn, deadline, &r, &consumed,
					&why, &err)) == RD_OK &&
		    r.type == RESP_SIMPLE && r.len == 4 &&
		    memcmp(r.data, "PONG", 4) == 0 && consumed == ck->conn.len) {
			hc_conn_consume(&ck->conn, consumed);
			return true;
		}
		hc_err("check: %s does not answer PING", g_opts.addrs[i].text);
		hc_conn_close(&ck->conn);
	}
	return false;
}

/*
 * GET key.  1: *val (malloc'd, *vlen) or *nil; 0: failed after retrying on
 * fresh connections.  An error reply is final (the message is printed).
 */
static int hc_check_get(struct hc_checker *ck, const char *key, bool *nil,
			char **val, size_t *vlen)
{
	char req[HC_TOKEN_MAX + 64];
	const char *argv[2] = { "GET", key };
	size_t lens[2] = { 3, strlen(key) };
	size_t reqlen = hc_request(req, sizeof(req), 2, argv, lens);

	for (int attempt = 0; attempt < HC_CHECK_TRIES; attempt++) {
		int64_t deadline = hc_now() +
				   (int64_t)ck->timeout_ms * HC_NS_PER_MS;
		struct resp_reply r;
		size_t sent, consumed;
		const char *why = "";
		char eb[96];
		int err = 0, rd;

		if (ck->conn.fd < 0 && !hc_check_connect(ck))
			continue;
		if (hc_send_all(ck->conn.fd, req, reqlen, deadline, &sent,
				&err) != SEND_DONE) {
			hc_err("check: GET %s: send failed", key);
			hc_conn_close(&ck->conn);
			continue;
		}
		rd = hc_read_reply(&ck->conn, deadline, &r, &consumed, &why,
				   &err);
		if (rd != RD_OK || consumed != ck->conn.len) {
			hc_err("check: GET %s: %s", key,
			       rd == RD_OK ? "extra bytes after the reply" :
			       rd == RD_EOF ? "connection closed" :
			       rd == RD_TIMEOUT ? "timed out" :
			       rd == RD_BAD ? why :
			       hc_strerr(err, eb, sizeof(eb)));
			hc_conn_close(&ck->conn);
			continue;
		}
		if (r.type == RESP_NIL) {
			*nil = true;
			*val = NULL;
			*vlen = 0;
		} else if (r.type == RESP_BULK) {
			*nil = false;
			*val = hc_strndup(r.data, r.len);
			*vlen = r.len;
		} else if (r.type == RESP_ERROR) {
			hc_err("check: GET %s: error reply '%.*s'", key,
			       (int)(r.len > 200 ? 200 : r.len), r.data);
			hc_conn_consume(&ck->conn, consumed);
			return 0;
		} else {
			hc_err("check: GET %s: unexpected reply type", key);
			hc_conn_close(&ck->conn);
			continue;
		}
		hc_conn_consume(&ck->conn, consumed);
		return 1;
	}
	return 0;
}

static bool hc_value_is(const struct hc_op *o, const char *v, size_t vlen)
{
	return strlen(o->value) == vlen && memcmp(o->value, v, vlen) == 0;
}

static int hc_check_main(int argc, char **argv)
{
	struct hc_history h = { 0 };
	struct hc_checker ck;
	uint64_t keys = 0, okw = 0, lost = 0, phantom = 0, resolved = 0;
	bool io_failed = false;

	hc_parse_args(argc, argv, false, &g_opts);
	h.file = g_opts.history;
	signal(SIGPIPE, SIG_IGN);
	if (hc_read_history(&h) < 0)
		return 1;
	for (size_t i = 0; i < h.n; i++)
		okw += h.ops[i].res == HC_OK;
	hc_conn_init(&ck.conn, HC_CHECK_BULK_MAX);
	ck.timeout_ms = g_opts.timeout_ms;
	if (h.n > 0 && !hc_check_connect(&ck)) {
		hc_err("check: no address answered PING");
		return 1;
	}
	for (size_t b = 0, e; b < h.n && !io_failed; b = e) {
		const struct hc_op *ops = &h.ops[b], *last_ok = NULL;
		const struct hc_op *match = NULL;
		size_t n, a_idx = 0;
		char *v = NULL;
		size_t vlen = 0;
		bool nil = true, fine = false;

		for (e = b; e < h.n && strcmp(h.ops[e].key, ops->key) == 0; e++)
			;
		n = e - b;
		keys++;
		for (size_t i = 0; i < n; i++)
			if (ops[i].res == HC_OK) {
				last_ok = &ops[i];
				a_idx = i;
			}
		if (!hc_check_get(&ck, ops->key, &nil, &v, &vlen)) {
			io_failed = true;
			break;
		}
		/* Allowed: the last ok write, or a maybe write after it; with
		 * no ok write, nil or any maybe write. */
		if (last_ok != NULL) {
			if (!nil && hc_value_is(last_ok, v, vlen))
				fine = true;
			for (size_t i = a_idx + 1; !fine && !nil && i < n; i++)
				if (ops[i].res == HC_MAYBE &&
				    hc_value_is(&ops[i], v, vlen)) {
					fine = true;
					resolved++;
				}
		} else if (nil) {
			fine = true;
		} else {
			for (size_t i = 0; !fine && i < n; i++)
				if (ops[i].res == HC_MAYBE &&
				    hc_value_is(&ops[i], v, vlen)) {
					fine = true;
					resolved++;
				}
		}
		if (fine) {
			free(v);
			continue;
		}
		for (size_t i = n; !nil && i-- > 0; )
			if (hc_value_is(&ops[i], v, vlen)) {
				match = &ops[i];
				break;
			}
		if (match != NULL && match->res != HC_FAIL) {
			/* An older write came back over the acknowledged one. */
			lost++;
			printf("LOST %s expected %s got %s (an older %s write, op %"
			       PRIu64 ", line %zu; the last ok write is op %"
			       PRIu64 ", line %zu)\n", ops->key, last_ok->value,
			       match->value, hc_result_name[match->res],
			       match->id, match->line, last_ok->id,
			       last_ok->line);
		} else if (nil) {
			lost++;
			printf("LOST %s expected %s got nil (the last ok write is op %"
			       PRIu64 ", line %zu)\n", ops->key, last_ok->value,
			       last_ok->id, last_ok->line);
		} else {
			phantom++;
			printf("PHANTOM %s expected %s got ", ops->key,
			       last_ok ? last_ok->value : "nil");
			hc_print_value(stdout, v, vlen);
			if (match != NULL)
				printf(" (the value of a failed write, op %" PRIu64
				       ", line %zu)\n", match->id, match->line);
			else
				printf(" (never written to this key)\n");
		}
		free(v);
	}
	hc_conn_free(&ck.conn);
	for (size_t i = 0; i < h.n; i++) {
		free(h.ops[i].key);
		free(h.ops[i].value);
	}
	free(h.ops);
	if (io_failed) {
		hc_err("check: could not read every key; no verdict");
		return 1;
	}
	printf("histclient check: keys %" PRIu64 " ok-writes %" PRIu64
	       " lost %" PRIu64 " phantom %" PRIu64 " maybe-resolved %"
	       PRIu64 "\n", keys, okw, lost, phantom, resolved);
	if (fflush(stdout) != 0)
		return 1;
	return lost == 0 && phantom == 0 ? 0 : 1;
}

/* ---- selftest: the reply parser --------------------------------------------------- */

struct hc_case {
	const char *in;
	size_t len;                         /* 0: strlen(in) */
	int want;                           /* RESP_DONE, RESP_MORE, RESP_BAD */
	enum resp_type type;
	const char *data;                   /* SIMPLE/ERROR/BULK payload */
	size_t dlen;
	int64_t ival;
	size_t consumed;
};

#define DONE(s, t, d, dl, iv, c) { s, sizeof(s) - 1, RESP_DONE, t, d, dl, iv, c }
#define MORE(s) { s, sizeof(s) - 1, RESP_MORE, 0, NULL, 0, 0, 0 }
#define BAD(s) { s, sizeof(s) - 1, RESP_BAD, 0, NULL, 0, 0, 0 }

static const struct hc_case hc_cases[] = {
	DONE("+OK\r\n", RESP_SIMPLE, "OK", 2, 0, 5),
	DONE("+\r\n", RESP_SIMPLE, "", 0, 0, 3),
	DONE("+OK\r\n+OK\r\n", RESP_SIMPLE, "OK", 2, 0, 5),
	DONE("-ERR syntax error\r\n", RESP_ERROR, "ERR syntax error", 16, 0, 19),
	DONE(":0\r\n", RESP_INT, NULL, 0, 0, 4),
	DONE(":12\r\n", RESP_INT, NULL, 0, 12, 5),
	DONE(":-7\r\n", RESP_INT, NULL, 0, -7, 5),
	DONE(":9223372036854775807\r\n", RESP_INT, NULL, 0, INT64_MAX, 22),
	DONE(":-9223372036854775808\r\n", RESP_INT, NULL, 0, INT64_MIN, 23),
	DONE("$3\r\nabc\r\n", RESP_BULK, "abc", 3, 0, 9),
	DONE("$0\r\n\r\n", RESP_BULK, "", 0, 0, 6),
	DONE("$4\r\na\r\nb\r\n", RESP_BULK, "a\r\nb", 4, 0, 10),
	DONE("$3\r\na\0b\r\n", RESP_BULK, "a\0b", 3, 0, 9),
	DONE("$-1\r\n", RESP_NIL, NULL, 0, 0, 5),
	DONE("$-1\r\n+OK\r\n", RESP_NIL, NULL, 0, 0, 5),
	MORE(""),
	MORE("+O"),
	MORE("+OK\r"),
	MORE("$3\r\nab"),
	MORE("$3\r\nabc\r"),
	MORE("$-1"),
	BAD("+OK\n"),
	BAD("+OK\rX"),
	BAD("+O\nK\r\n"),
	BAD("*1\r\n$2\r\nOK\r\n"),
	BAD("*-1\r\n"),
	BAD("OK\r\n"),
	BAD("\r\n"),
	BAD("?\r\n"),
	BAD(":\r\n"),
	BAD(":-\r\n"),
	BAD(":-0\r\n"),
	BAD(":1a\r\n"),
	BAD(": 1\r\n"),
	BAD(":+1\r\n"),
	BAD(":01\r\n"),
	BAD(":9223372036854775808\r\n"),
	BAD(":99999999999999999999999\r\n"),
	BAD("$\r\n"),
	BAD("$x\r\n"),
	BAD("$-2\r\n"),
	BAD("$-0\r\n"),
	BAD("$-\r\n"),
	BAD("$+3\r\nabc\r\n"),
	BAD("$ 3\r\nabc\r\n"),
	BAD("$03\r\nabc\r\n"),
	BAD("$3 \r\nabc\r\n"),
	BAD("$3\r\nabcd\r\n"),
	BAD("$3\r\nab\r\n\r\n"),
	BAD("$3\r\nabc\n\r"),
	BAD("$3\r\nabc\rx"),
	BAD("$99999999999999999999\r\n"),
	BAD("$4097\r\n"),                   /* over the test's max_bulk */
};

static int hc_selftest_main(int argc, char **argv)
{
	size_t nc = sizeof(hc_cases) / sizeof(hc_cases[0]), pass = 0, fail = 0;
	char *big;

	(void)argv;
	if (argc > 1)
		hc_usage_fail("selftest takes no arguments");
	for (size_t k = 0; k < nc; k++) {
		const struct hc_case *t = &hc_cases[k];
		struct resp_reply r;
		size_t consumed = 0;
		const char *why = NULL;
		/* A copy of exactly len bytes, so ASan sees any over-read. */
		char *in = malloc(t->len ? t->len : 1);
		int got;
		bool ok;

		memcpy(in, t->in, t->len);
		got = resp_parse(in, t->len, 4096, &r, &consumed, &why);
		ok = got == t->want;
		if (ok && got == RESP_DONE)
			ok = r.type == t->type && consumed == t->consumed &&
			     (t->type == RESP_INT ? r.ival == t->ival :
			      t->type == RESP_NIL ||
			      (r.len == t->dlen &&
			       memcmp(r.data, t->data, t->dlen) == 0));
		if (ok && got == RESP_BAD)
			ok = why != NULL;
		/* Every proper prefix of a good reply is incomplete, not bad. */
		for (size_t p = 0; ok && got == RESP_DONE && p < t->consumed; p++)
			if (resp_parse(in, p, 4096, &r, &consumed, &why) !=
			    RESP_MORE) {
				ok = false;
				fprintf(stderr, "  prefix of %zu bytes not MORE\n",
					p);
			}
		free(in);
		if (ok) {
			pass++;
		} else {
			fail++;
			fprintf(stderr, "histclient selftest: case %zu failed: ",
				k);
			hc_print_value(stderr, t->in, t->len);
			fprintf(stderr, " (got %d)\n", got);
		}
	}
	/* A status line longer than the limit with no CR yet. */
	big = malloc(HC_LINE_MAX + 16);
	if (big != NULL) {
		struct resp_reply r;
		size_t consumed;
		const char *why;

		big[0] = '+';
		memset(big + 1, 'x', HC_LINE_MAX + 15);
		if (resp_parse(big, HC_LINE_MAX + 16, 4096, &r, &consumed,
			       &why) == RESP_BAD &&
		    resp_parse(big, HC_LINE_MAX, 4096, &r, &consumed, &why) ==
			    RESP_MORE) {
			pass++;
		} else {
			fail++;
			fprintf(stderr, "histclient selftest: long line case failed\n");
		}
		free(big);
	}
	printf("histclient selftest: %zu passed, %zu failed\n", pass, fail);
	return fail == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		hc_usage();
		return 2;
	}
	if (strcmp(argv[1], "write") == 0)
		return hc_write_main(argc - 1, argv + 1);
	if (strcmp(argv[1], "check") == 0)
		return hc_check_main(argc - 1, argv + 1);
	if (strcmp(argv[1], "selftest") == 0)
		return hc_selftest_main(argc - 1, argv + 1);
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		hc_usage();
		return 0;
	}
	hc_usage_fail("unknown mode '%s' (expected write, check or selftest)",
		      argv[1]);
}
