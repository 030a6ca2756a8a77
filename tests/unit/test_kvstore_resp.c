/*
 * test_kvstore_resp.c - host tests of the kvstore guest's portable parts:
 * the RESP2 parser (kvstore_resp.c), the commands (kvstore_cmd.c) over
 * the store (kvstore_db.c) with a fake clock, and the write-ahead log
 * (kvstore_log.c) on a disk in memory.
 *
 * feed() plays the guest's per-connection loop: parse every complete
 * request at the front of the buffered bytes, execute it, stop at an
 * incomplete one (kept for later) or at a protocol error (error reply,
 * connection closed).  Every test checks that nothing leaks: the
 * counting allocator must be back to zero at teardown.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kvstore_cmd.h"
#include "kvstore_db.h"
#include "kvstore_log.h"
#include "kvstore_resp.h"

/* ---- a counting allocator that can be told to fail --------------------- */

struct test_mem {
	long live;          /* allocations not freed */
	size_t bytes;
	long fail_after;    /* < 0: never fail; else fail once this hits 0 */
};

static void *tm_alloc(void *ctx, size_t n)
{
	struct test_mem *m = ctx;
	void *p;

	if (m->fail_after == 0)
		return NULL;
	if (m->fail_after > 0)
		m->fail_after--;
	p = malloc(n ? n : 1);
	if (p != NULL) {
		m->live++;
		m->bytes += n;
	}
	return p;
}

static void tm_free(void *ctx, void *p, size_t n)
{
	struct test_mem *m = ctx;

	if (p == NULL)
		return;
	m->live--;
	m->bytes -= n;
	free(p);
}

/* ---- a disk in memory ------------------------------------------------------ */

struct test_disk {
	uint8_t *data;
	uint64_t sectors;
	int fail;           /* every operation fails */
	long writes, flushes;
};

static int td_read(void *ctx, uint64_t s, void *buf, uint64_t n)
{
	struct test_disk *d = ctx;

	if (d->fail || s > d->sectors || n > d->sectors - s)
		return -EIO;
	memcpy(buf, d->data + s * KV_SECTOR, n * KV_SECTOR);
	return 0;
}

static int td_write(void *ctx, uint64_t s, const void *buf, uint64_t n)
{
	struct test_disk *d = ctx;

	if (d->fail || s > d->sectors || n > d->sectors - s)
		return -EIO;
	memcpy(d->data + s * KV_SECTOR, buf, n * KV_SECTOR);
	d->writes++;
	return 0;
}

static int td_flush(void *ctx)
{
	struct test_disk *d = ctx;

	d->flushes++;
	return d->fail ? -EIO : 0;
}

/* ---- fixture: a server (store, optional log, one connection) ------------ */

struct srv {
	struct test_mem mem;
	struct kv_alloc a;
	struct kv_db db;
	struct kv_ctx ctx;
	struct kv_req req;
	struct kv_buf in, out;
	int closed;
	struct test_disk disk;
	struct kv_log log;
	int has_log;
};

static void srv_start(struct srv *s)
{
	s->closed = 0;
	kv_req_init(&s->req, &s->a);
	kv_buf_init(&s->in, &s->a);
	kv_buf_init(&s->out, &s->a);
	memset(&s->ctx, 0, sizeof(s->ctx));
	s->ctx.db = &s->db;
	s->ctx.now = 1000000;
	s->ctx.info.start_ms = 1000000;
	s->ctx.info.maxclients = 100;
	s->ctx.info.log_state = "off";
	assert_int_equal(kv_db_init(&s->db, &s->a, 42), 0);
}

static int setup(void **state)
{
	struct srv *s = calloc(1, sizeof(*s));

	s->mem.fail_after = -1;
	s->a.alloc = tm_alloc;
	s->a.free = tm_free;
	s->a.ctx = &s->mem;
	srv_start(s);
	*state = s;
	return 0;
}

static void srv_stop(struct srv *s)
{
	if (s->has_log)
		kv_log_close(&s->log);
	s->has_log = 0;
	s->ctx.log = NULL;
	kv_ctx_release(&s->ctx);
	kv_db_free(&s->db);
	kv_req_free(&s->req);
	kv_buf_free(&s->in);
	kv_buf_free(&s->out);
}

static int teardown(void **state)
{
	struct srv *s = *state;

	srv_stop(s);
	assert_int_equal(s->mem.live, 0);
	free(s->disk.data);
	free(s);
	return 0;
}

static const struct kv_logdev *test_dev(struct srv *s)
{
	static struct kv_logdev dev;

	dev.read = td_read;
	dev.write = td_write;
	dev.flush = td_flush;
	dev.write_flush = NULL;
	dev.ctx = &s->disk;
	dev.sectors = s->disk.sectors;
	return &dev;
}

/* Attach a log (disk of `sectors`, kept across srv_restart). */
static int srv_log(struct srv *s, uint64_t sectors)
{
	int r;

	if (s->disk.data == NULL) {
		s->disk.data = calloc(sectors, KV_SECTOR);
		s->disk.sectors = sectors;
	}
	r = kv_log_open(&s->log, test_dev(s), &s->a, &s->db, s->ctx.now, 7);
	if (r == 0) {
		s->has_log = 1;
		s->ctx.log = &s->log;
		s->ctx.info.log_state = "on";
	} else {
		kv_log_close(&s->log);
	}
	return r;
}

/* Simulate a reboot: fresh store and log replayed from the same disk. */
static void srv_restart(struct srv *s, int64_t now)
{
	srv_stop(s);
	srv_start(s);
	s->ctx.now = now;
	assert_int_equal(srv_log(s, s->disk.sectors), 0);
}

/* The guest's per-connection loop over the buffered bytes. */
static void feed_bytes(struct srv *s, const void *p, size_t n)
{
	size_t used;

	kv_buf_put(&s->in, p, n);
	while (!s->closed && s->in.len > 0) {
		int r = kv_parse(s->in.p, s->in.len, &s->req, &used);

		if (r == KV_PARSE_NEED)
			break;
		if (r == KV_PARSE_ERR || r == KV_PARSE_NOMEM) {
			kv_reply_error(&s->out, r == KV_PARSE_ERR
				       ? s->req.err : "-OOM request");
			s->closed = 1;
			break;
		}
		assert_true(used > 0 && used <= s->in.len);
		if (s->req.argc > 0 &&
		    (kv_exec(&s->ctx, s->req.argv, s->req.argc, &s->out) &
		     KV_EXEC_CLOSE))
			s->closed = 1;
		kv_buf_consume(&s->in, used);
	}
	if (s->ctx.log != NULL)
		assert_int_equal(kv_log_commit(s->ctx.log, s->ctx.now), 0);
}

/* Feed a request, return the reply text (valid until the next call). */
static const char *feed(struct srv *s, const char *req)
{
	static char reply[65536];

	s->out.len = 0;
	feed_bytes(s, req, strlen(req));
	assert_true(s->out.len < sizeof(reply));
	memcpy(reply, s->out.p ? (const char *)s->out.p : "", s->out.len);
	reply[s->out.len] = 0;
	return reply;
}

/* Build a RESP array request from NULL-terminated strings. */
static const char *cmd(const char *first, ...)
{
	static char buf[65536];
	const char *args[64];
	size_t n = 0, at;
	va_list ap;

	va_start(ap, first);
	for (const char *a = first; a != NULL; a = va_arg(ap, const char *))
		args[n++] = a;
	va_end(ap);
	at = (size_t)snprintf(buf, sizeof(buf), "*%zu\r\n", n);
	for (size_t i = 0; i < n; i++)
		at += (size_t)snprintf(buf + at, sizeof(buf) - at, "$%zu\r\n%s\r\n",
				       strlen(args[i]), args[i]);
	return buf;
}

#define CMD(...) cmd(__VA_ARGS__, (const char *)NULL)
#define EXPECT(s, req, want) assert_string_equal(feed((s), (req)), (want))

/* ---- parser ------------------------------------------------------------------ */

static void test_parse_array(void **state)
{
	struct srv *s = *state;
	static const uint8_t in[] = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\na\r\nb\0\r\n";
	size_t used;

	assert_int_equal(kv_parse(in, sizeof(in) - 1, &s->req, &used),
			 KV_PARSE_OK);
	assert_int_equal(used, sizeof(in) - 1);
	assert_int_equal(s->req.argc, 3);
	assert_memory_equal(s->req.argv[0].p, "SET", 3);
	assert_int_equal(s->req.argv[2].len, 5);
	assert_memory_equal(s->req.argv[2].p, "a\r\nb\0", 5);
}

static void test_parse_inline(void **state)
{
	struct srv *s = *state;
	const char *in = "  set \"a b\\x41\\n\" 'it\\'s'  x\r\n";
	size_t used;

	assert_int_equal(kv_parse((const uint8_t *)in, strlen(in), &s->req,
				  &used), KV_PARSE_OK);
	assert_int_equal(used, strlen(in));
	assert_int_equal(s->req.argc, 4);
	assert_int_equal(s->req.argv[1].len, 5);
	assert_memory_equal(s->req.argv[1].p, "a bA\n", 5);
	assert_int_equal(s->req.argv[2].len, 4);
	assert_memory_equal(s->req.argv[2].p, "it's", 4);
	EXPECT(s, "PING\r\n", "+PONG\r\n");
	EXPECT(s, "ping\n", "+PONG\r\n");
	EXPECT(s, "\r\n\r\nECHO hi\r\n", "$2\r\nhi\r\n");
	EXPECT(s, "ECHO \"a\"b\r\n",
	       "-ERR Protocol error: unbalanced quotes in request\r\n");
}

static void test_parse_unbalanced_single(void **state)
{
	struct srv *s = *state;

	EXPECT(s, "ECHO 'abc\r\n",
	       "-ERR Protocol error: unbalanced quotes in request\r\n");
	assert_true(s->closed);
}

static void test_parse_empty_arrays(void **state)
{
	struct srv *s = *state;

	EXPECT(s, "*0\r\n*-1\r\nPING\r\n", "+PONG\r\n");
}

static void test_pipelined(void **state)
{
	struct srv *s = *state;
	char buf[4096];

	snprintf(buf, sizeof(buf), "%s%s%sPING\r\n%s", CMD("SET", "a", "1"),
		 "*2\r\n$4\r\nINCR\r\n$1\r\na\r\n", "*2\r\n$3\r\nGET\r\n$1\r\na\r\n",
		 "*1\r\n$4\r\nPI");
	EXPECT(s, buf, "+OK\r\n:2\r\n$1\r\n2\r\n+PONG\r\n");
	assert_int_equal(s->in.len, strlen("*1\r\n$4\r\nPI"));
	EXPECT(s, "NG\r\n", "+PONG\r\n");
	assert_int_equal(s->in.len, 0);
}

/* Every split point of a pipeline gives the same replies as one piece. */
static void test_split_everywhere(void **state)
{
	struct srv *s = *state;
	char all[4096], whole[8192];
	size_t n;

	all[0] = 0;
	strcat(all, CMD("SET", "key", "va\r\nlue"));
	strcat(all, CMD("GET", "key"));
	strcat(all, CMD("INCR", "n"));
	strcat(all, "ECHO \"x y\"\r\n");
	strcat(all, CMD("MGET", "key", "n", "zz"));
	strcat(all, CMD("DEL", "key", "n"));
	n = strlen(all);
	strcpy(whole, feed(s, all));
	assert_string_equal(whole,
			    "+OK\r\n$7\r\nva\r\nlue\r\n:1\r\n$3\r\nx y\r\n"
			    "*3\r\n$7\r\nva\r\nlue\r\n$1\r\n1\r\n$-1\r\n:2\r\n");
	for (size_t cut = 1; cut < n; cut++) {
		char got[8192];
		size_t g;

		kv_db_flush(&s->db);
		s->out.len = 0;
		feed_bytes(s, all, cut);
		feed_bytes(s, all + cut, n - cut);
		g = s->out.len;
		assert_true(g < sizeof(got));
		memcpy(got, s->out.p, g);
		got[g] = 0;
		assert_string_equal(got, whole);
		assert_int_equal(s->in.len, 0);
	}
	/* and byte by byte */
	kv_db_flush(&s->db);
	s->out.len = 0;
	for (size_t i = 0; i < n; i++)
		feed_bytes(s, all + i, 1);
	assert_int_equal(s->out.len, strlen(whole));
	assert_memory_equal(s->out.p, whole, s->out.len);
}

static void check_proto_error(const char *in, const char *want)
{
	struct srv *s;

	setup((void **)&s);
	EXPECT(s, in, want);
	assert_true(s->closed);
	teardown((void **)&s);
}

static void test_malformed(void **state)
{
	(void)state;
	check_proto_error("*abc\r\n",
			  "-ERR Protocol error: invalid multibulk length\r\n");
	check_proto_error("*2000000\r\n",
			  "-ERR Protocol error: invalid multibulk length\r\n");
	check_proto_error("*99999999999999999999999\r\n",
			  "-ERR Protocol error: invalid multibulk length\r\n");
	check_proto_error("*1\r\n$-5\r\n",
			  "-ERR Protocol error: invalid bulk length\r\n");
	check_proto_error("*1\r\n$abc\r\n",
			  "-ERR Protocol error: invalid bulk length\r\n");
	check_proto_error("*1\r\n$\r\n",
			  "-ERR Protocol error: invalid bulk length\r\n");
	check_proto_error("*1\r\n$536870913\r\n",
			  "-ERR Protocol error: invalid bulk length\r\n");
	check_proto_error("*1\r\n$99999999999\r\n",
			  "-ERR Protocol error: invalid bulk length\r\n");
	check_proto_error("*1\r\n:5\r\n",
			  "-ERR Protocol error: expected '$', got ':'\r\n");
	check_proto_error("*2\r\n$4\r\nECHO\r\nxyz\r\n",
			  "-ERR Protocol error: expected '$', got 'x'\r\n");
	/* a bad byte that would break the reply line is blanked */
	check_proto_error("*1\r\n\n\r\n",
			  "-ERR Protocol error: expected '$', got ' '\r\n");
}

static void test_half_frames_wait(void **state)
{
	struct srv *s = *state;
	static const char *const partial[] = {
		"*", "*3", "*3\r", "*3\r\n", "*3\r\n$", "*3\r\n$3\r\nSE",
		"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10\r\n0123",
		"*1\r\n$536870912\r\n", /* 512 MiB: allowed, waits */
		"PING", "SET a \"b c",
	};

	for (size_t i = 0; i < sizeof(partial) / sizeof(partial[0]); i++) {
		size_t used = 99;

		assert_int_equal(kv_parse((const uint8_t *)partial[i],
					  strlen(partial[i]), &s->req, &used),
				 KV_PARSE_NEED);
		assert_int_equal(used, 0);
	}
}

static void test_too_big_lines(void **state)
{
	struct srv *s = *state;
	size_t n = KV_INLINE_MAX + 10, used;
	uint8_t *big = malloc(n);

	(void)state;
	memset(big, 'a', n);
	assert_int_equal(kv_parse(big, n, &s->req, &used), KV_PARSE_ERR);
	assert_string_equal(s->req.err, "Protocol error: too big inline request");
	big[0] = '*';
	assert_int_equal(kv_parse(big, n, &s->req, &used), KV_PARSE_ERR);
	assert_string_equal(s->req.err,
			    "Protocol error: too big mbulk count string");
	memcpy(big, "*1\r\n$", 5);
	assert_int_equal(kv_parse(big, n, &s->req, &used), KV_PARSE_ERR);
	assert_string_equal(s->req.err,
			    "Protocol error: too big bulk count string");
	free(big);
}

/* Random bytes and mutated requests: never a crash, used within bounds. */
static void test_garbage(void **state)
{
	struct srv *s = *state;
	uint64_t x = 0x9e3779b97f4a7c15ULL;
	uint8_t buf[256];
	const char *seed = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nabc\r\n";

	for (int round = 0; round < 20000; round++) {
		size_t n, used;
		int r;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		n = (size_t)(x % sizeof(buf));
		if (round % 2) {
			memcpy(buf, seed, strlen(seed));
			n = strlen(seed);
			buf[(x >> 8) % n] = (uint8_t)(x >> 16);
			buf[(x >> 24) % n] = (uint8_t)(x >> 32);
		} else {
			for (size_t i = 0; i < n; i++)
				buf[i] = (uint8_t)(x >> ((i % 8) * 8)) ^ (uint8_t)i;
		}
		r = kv_parse(buf, n, &s->req, &used);
		assert_true(r == KV_PARSE_OK || r == KV_PARSE_NEED ||
			    r == KV_PARSE_ERR);
		if (r == KV_PARSE_OK) {
			assert_true(used > 0 && used <= n);
			for (size_t i = 0; i < s->req.argc; i++)
				assert_true(s->req.argv[i].len <= n);
			if (s->req.argc > 0) {
				s->out.len = 0;
				(void)kv_exec(&s->ctx, s->req.argv,
					      s->req.argc, &s->out);
				assert_true(s->out.len > 0);
			}
		}
	}
}

static void test_parse_nomem(void **state)
{
	struct srv *s = *state;
	size_t used;
	char buf[2048] = "*40\r\n";

	for (int i = 0; i < 40; i++)
		strcat(buf, "$1\r\nx\r\n");
	s->mem.fail_after = 0;
	assert_int_equal(kv_parse((const uint8_t *)buf, strlen(buf), &s->req,
				  &used), KV_PARSE_NOMEM);
	assert_int_equal(kv_parse((const uint8_t *)"a b\n", 4, &s->req, &used),
			 KV_PARSE_NOMEM);
	s->mem.fail_after = -1;
}

/* ---- numbers and replies ---------------------------------------------------- */

static void test_numbers(void **state)
{
	int64_t v;
	char d[32];

	(void)state;
	assert_int_equal(kv_parse_i64((const uint8_t *)"0", 1, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(kv_parse_i64((const uint8_t *)"-9223372036854775808",
				      20, &v), 0);
	assert_true(v == INT64_MIN);
	assert_int_equal(kv_parse_i64((const uint8_t *)"9223372036854775807",
				      19, &v), 0);
	assert_true(v == INT64_MAX);
	assert_int_equal(kv_parse_i64((const uint8_t *)"9223372036854775808",
				      19, &v), -1);
	assert_int_equal(kv_parse_i64((const uint8_t *)"-0", 2, &v), -1);
	assert_int_equal(kv_parse_i64((const uint8_t *)"01", 2, &v), -1);
	assert_int_equal(kv_parse_i64((const uint8_t *)"+1", 2, &v), -1);
	assert_int_equal(kv_parse_i64((const uint8_t *)" 1", 2, &v), -1);
	assert_int_equal(kv_parse_i64((const uint8_t *)"", 0, &v), -1);
	assert_int_equal(kv_parse_i64((const uint8_t *)"-", 1, &v), -1);
	assert_int_equal(kv_fmt_i64(d, INT64_MIN), 20);
	assert_string_equal(d, "-9223372036854775808");
	kv_fmt_i64(d, 0);
	assert_string_equal(d, "0");
}

static void test_error_sanitised(void **state)
{
	struct srv *s = *state;

	kv_reply_error(&s->out, "bad\r\nthing");
	kv_reply_error(&s->out, "-WRONGTYPE x");
	assert_int_equal(s->out.len, strlen("-ERR bad  thing\r\n-WRONGTYPE x\r\n"));
	assert_memory_equal(s->out.p, "-ERR bad  thing\r\n-WRONGTYPE x\r\n",
			    s->out.len);
}

/* ---- commands ---------------------------------------------------------------- */

static void test_ping_echo(void **state)
{
	struct srv *s = *state;

	EXPECT(s, CMD("PING"), "+PONG\r\n");
	EXPECT(s, CMD("ping", "hello"), "$5\r\nhello\r\n");
	EXPECT(s, CMD("PING", "a", "b"),
	       "-ERR wrong number of arguments for 'ping' command\r\n");
	EXPECT(s, CMD("ECHO", ""), "$0\r\n\r\n");
	EXPECT(s, CMD("ECHO"),
	       "-ERR wrong number of arguments for 'echo' command\r\n");
}

static void test_unknown_and_arity(void **state)
{
	struct srv *s = *state;

	EXPECT(s, CMD("xyz"),
	       "-ERR unknown command 'xyz', with args beginning with: \r\n");
	EXPECT(s, CMD("foo", "a", "b c"),
	       "-ERR unknown command 'foo', with args beginning with: 'a' 'b c' \r\n");
	EXPECT(s, CMD("foo", "x\r\ny"),
	       "-ERR unknown command 'foo', with args beginning with: 'x  y' \r\n");
	EXPECT(s, CMD("GET"),
	       "-ERR wrong number of arguments for 'get' command\r\n");
	EXPECT(s, CMD("get", "a", "b"),
	       "-ERR wrong number of arguments for 'get' command\r\n");
	EXPECT(s, CMD("SET", "a"),
	       "-ERR wrong number of arguments for 'set' command\r\n");
	EXPECT(s, CMD("MSET", "a", "1", "b"),
	       "-ERR wrong number of arguments for 'mset' command\r\n");
	EXPECT(s, CMD("DEL"),
	       "-ERR wrong number of arguments for 'del' command\r\n");
	assert_false(s->closed);
}

static void test_unknown_long_args(void **state)
{
	struct srv *s = *state;
	char arg[300];
	const char *r;

	memset(arg, 'q', sizeof(arg) - 1);
	arg[sizeof(arg) - 1] = 0;
	r = feed(s, CMD("nope", arg, "more"));
	/* the first argument is cut at 128 characters, the rest left off */
	assert_int_equal(strlen(r), strlen("-ERR unknown command 'nope', with "
					   "args beginning with: ''\r\n") + 129);
}

static void test_get_set(void **state)
{
	struct srv *s = *state;

	EXPECT(s, CMD("GET", "k"), "$-1\r\n");
	EXPECT(s, CMD("SET", "k", "v"), "+OK\r\n");
	EXPECT(s, CMD("GET", "k"), "$1\r\nv\r\n");
	EXPECT(s, CMD("set", "k", "w", "xx"), "+OK\r\n");
	EXPECT(s, CMD("SET", "k", "z", "NX"), "$-1\r\n");
	EXPECT(s, CMD("GET", "k"), "$1\r\nw\r\n");
	EXPECT(s, CMD("SET", "new", "1", "XX"), "$-1\r\n");
	EXPECT(s, CMD("EXISTS", "new"), ":0\r\n");
	EXPECT(s, CMD("SET", "new", "1", "NX"), "+OK\r\n");
	EXPECT(s, CMD("SET", "k", "1", "NX", "XX"), "-ERR syntax error\r\n");
	EXPECT(s, CMD("SET", "k", "1", "EX"), "-ERR syntax error\r\n");
	EXPECT(s, CMD("SET", "k", "1", "EX", "10", "PX", "5"),
	       "-ERR syntax error\r\n");
	EXPECT(s, CMD("SET", "k", "1", "EX", "10", "KEEPTTL"),
	       "-ERR syntax error\r\n");
	EXPECT(s, CMD("SET", "k", "1", "BOGUS"), "-ERR syntax error\r\n");
	EXPECT(s, CMD("SET", "k", "1", "EX", "abc"),
	       "-ERR value is not an integer or out of range\r\n");
	EXPECT(s, CMD("SET", "k", "1", "EX", "0"),
	       "-ERR invalid expire time in 'set' command\r\n");
	EXPECT(s, CMD("SET", "k", "1", "PX", "-5"),
	       "-ERR invalid expire time in 'set' command\r\n");
	EXPECT(s, CMD("SET", "k", "1", "EX", "9223372036854775807"),
	       "-ERR invalid expire time in 'set' command\r\n");
	EXPECT(s, CMD("GET", "k"), "$1\r\nw\r\n");
	EXPECT(s, CMD("SET", "k", "2", "GET"), "$1\r\nw\r\n");
	EXPECT(s, CMD("SET", "nokey", "2", "GET"), "$-1\r\n");
	EXPECT(s, CMD("SET", "k", "3", "NX", "GET"), "$1\r\n2\r\n");
	EXPECT(s, CMD("GET", "k"), "$1\r\n2\r\n");
}

static void test_binary_keys(void **state)
{
	struct srv *s = *state;
	static const char req[] =
		"*3\r\n$3\r\nSET\r\n$3\r\na\0b\r\n$4\r\n\r\n\0\xff\r\n"
		"*2\r\n$3\r\nGET\r\n$3\r\na\0b\r\n*2\r\n$3\r\nGET\r\n$1\r\na\r\n";
	static const char want[] = "+OK\r\n$4\r\n\r\n\0\xff\r\n$-1\r\n";

	s->out.len = 0;
	feed_bytes(s, req, sizeof(req) - 1);
	assert_int_equal(s->out.len, sizeof(want) - 1);
	assert_memory_equal(s->out.p, want, sizeof(want) - 1);
}

static void test_expiry(void **state)
{
	struct srv *s = *state;

	EXPECT(s, CMD("SET", "a", "1", "EX", "10"), "+OK\r\n");
	EXPECT(s, CMD("SET", "b", "1", "PX", "1500"), "+OK\r\n");
	EXPECT(s, CMD("SET", "c", "1"), "+OK\r\n");
	EXPECT(s, CMD("TTL", "a"), ":10\r\n");
	EXPECT(s, CMD("PTTL", "b"), ":1500\r\n");
	EXPECT(s, CMD("TTL", "c"), ":-1\r\n");
	EXPECT(s, CMD("TTL", "zz"), ":-2\r\n");
	EXPECT(s, CMD("DBSIZE"), ":3\r\n");
	s->ctx.now += 1499;
	EXPECT(s, CMD("EXISTS", "b", "b", "a"), ":3\r\n");
	s->ctx.now += 1;
	EXPECT(s, CMD("EXISTS", "b", "a"), ":1\r\n");
	EXPECT(s, CMD("GET", "b"), "$-1\r\n");
	EXPECT(s, CMD("DBSIZE"), ":2\r\n");
	/* SET without KEEPTTL clears the ttl; KEEPTTL keeps it */
	EXPECT(s, CMD("SET", "a", "2", "KEEPTTL"), "+OK\r\n");
	EXPECT(s, CMD("PTTL", "a"), ":8500\r\n");
	EXPECT(s, CMD("INCR", "a"), ":3\r\n");
	EXPECT(s, CMD("PTTL", "a"), ":8500\r\n");
	EXPECT(s, CMD("SET", "a", "2"), "+OK\r\n");
	EXPECT(s, CMD("TTL", "a"), ":-1\r\n");
	/* EXPIRE / PEXPIRE / PERSIST */
	EXPECT(s, CMD("EXPIRE", "a", "5"), ":1\r\n");
	EXPECT(s, CMD("EXPIRE", "nokey", "5"), ":0\r\n");
	EXPECT(s, CMD("EXPIRE", "a", "x"),
	       "-ERR value is not an integer or out of range\r\n");
	EXPECT(s, CMD("EXPIRE", "a", "9223372036854775807"),
	       "-ERR invalid expire time in 'expire' command\r\n");
	EXPECT(s, CMD("PERSIST", "a"), ":1\r\n");
	EXPECT(s, CMD("PERSIST", "a"), ":0\r\n");
	EXPECT(s, CMD("PEXPIRE", "a", "100"), ":1\r\n");
	s->ctx.now += 100;
	EXPECT(s, CMD("GET", "a"), "$-1\r\n");
	EXPECT(s, CMD("EXPIRE", "c", "0"), ":1\r\n");
	EXPECT(s, CMD("EXISTS", "c"), ":0\r\n");
	EXPECT(s, CMD("DBSIZE"), ":0\r\n");
	/* NX sees an expired key as absent */
	EXPECT(s, CMD("SET", "n", "1", "PX", "10"), "+OK\r\n");
	s->ctx.now += 10;
	EXPECT(s, CMD("SET", "n", "2", "NX"), "+OK\r\n");
	EXPECT(s, CMD("SET", "gone", "1", "PX", "10"), "+OK\r\n");
	s->ctx.now += 10;
	EXPECT(s, CMD("SET", "gone", "2", "XX"), "$-1\r\n");
	EXPECT(s, CMD("INCR", "gone"), ":1\r\n");
	EXPECT(s, CMD("TTL", "gone"), ":-1\r\n");
}

static void test_incr(void **state)
{
	struct srv *s = *state;

	EXPECT(s, CMD("INCR", "n"), ":1\r\n");
	EXPECT(s, CMD("INCRBY", "n", "41"), ":42\r\n");
	EXPECT(s, CMD("DECR", "n"), ":41\r\n");
	EXPECT(s, CMD("DECRBY", "n", "-9"), ":50\r\n");
	EXPECT(s, CMD("DECRBY", "m", "5"), ":-5\r\n");
	EXPECT(s, CMD("GET", "n"), "$2\r\n50\r\n");
	EXPECT(s, CMD("SET", "s", "abc"), "+OK\r\n");
	EXPECT(s, CMD("INCR", "s"),
	       "-ERR value is not an integer or out of range\r\n");
	EXPECT(s, CMD("SET", "s", " 1"), "+OK\r\n");
	EXPECT(s, CMD("INCR", "s"),
	       "-ERR value is not an integer or out of range\r\n");
	EXPECT(s, CMD("INCRBY", "n", "x"),
	       "-ERR value is not an integer or out of range\r\n");
	EXPECT(s, CMD("INCRBY", "n", "99999999999999999999"),
	       "-ERR value is not an integer or out of range\r\n");
	EXPECT(s, CMD("SET", "big", "9223372036854775807"), "+OK\r\n");
	EXPECT(s, CMD("INCR", "big"),
	       "-ERR increment or decrement would overflow\r\n");
	EXPECT(s, CMD("SET", "small", "-9223372036854775808"), "+OK\r\n");
	EXPECT(s, CMD("DECR", "small"),
	       "-ERR increment or decrement would overflow\r\n");
	EXPECT(s, CMD("DECRBY", "n", "-9223372036854775808"),
	       "-ERR decrement would overflow\r\n");
	EXPECT(s, CMD("INCR"),
	       "-ERR wrong number of arguments for 'incr' command\r\n");
	EXPECT(s, CMD("GET", "n"), "$2\r\n50\r\n");
}

static void test_multi_key(void **state)
{
	struct srv *s = *state;

	EXPECT(s, CMD("MSET", "a", "1", "b", "2", "a", "3"), "+OK\r\n");
	EXPECT(s, CMD("MGET", "a", "b", "c"),
	       "*3\r\n$1\r\n3\r\n$1\r\n2\r\n$-1\r\n");
	EXPECT(s, CMD("EXISTS", "a", "b", "c", "a"), ":3\r\n");
	EXPECT(s, CMD("DEL", "a", "c", "a"), ":1\r\n");
	EXPECT(s, CMD("DBSIZE"), ":1\r\n");
	EXPECT(s, CMD("KEYS", "*"), "*1\r\n$1\r\nb\r\n");
	EXPECT(s, CMD("FLUSHALL"), "+OK\r\n");
	EXPECT(s, CMD("DBSIZE"), ":0\r\n");
	EXPECT(s, CMD("FLUSHALL", "now"), "-ERR syntax error\r\n");
	EXPECT(s, CMD("FLUSHDB", "ASYNC"), "+OK\r\n");
}

static void test_strings_misc(void **state)
{
	struct srv *s = *state;

	EXPECT(s, CMD("APPEND", "a", "xy"), ":2\r\n");
	EXPECT(s, CMD("APPEND", "a", "z"), ":3\r\n");
	EXPECT(s, CMD("STRLEN", "a"), ":3\r\n");
	EXPECT(s, CMD("SETNX", "a", "1"), ":0\r\n");
	EXPECT(s, CMD("SETNX", "b", "1"), ":1\r\n");
	EXPECT(s, CMD("GETSET", "b", "2"), "$1\r\n1\r\n");
	EXPECT(s, CMD("GETDEL", "b"), "$1\r\n2\r\n");
	EXPECT(s, CMD("GETDEL", "b"), "$-1\r\n");
	EXPECT(s, CMD("TYPE", "a"), "+string\r\n");
	EXPECT(s, CMD("TYPE", "b"), "+none\r\n");
}

static void test_server_cmds(void **state)
{
	struct srv *s = *state;
	const char *r;

	EXPECT(s, CMD("SELECT", "0"), "+OK\r\n");
	EXPECT(s, CMD("SELECT", "1"), "-ERR DB index is out of range\r\n");
	EXPECT(s, CMD("SELECT", "x"),
	       "-ERR value is not an integer or out of range\r\n");
	EXPECT(s, CMD("COMMAND"), "*0\r\n");
	EXPECT(s, CMD("COMMAND", "DOCS"), "*0\r\n");
	EXPECT(s, CMD("CONFIG", "GET", "save"),
	       "*2\r\n$4\r\nsave\r\n$0\r\n\r\n");
	EXPECT(s, CMD("CONFIG", "GET", "appendonly"),
	       "*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n");
	EXPECT(s, CMD("CONFIG", "GET", "nonesuch"), "*0\r\n");
	EXPECT(s, CMD("CONFIG", "GET", "max*s"),
	       "*2\r\n$10\r\nmaxclients\r\n$3\r\n100\r\n");
	EXPECT(s, CMD("CONFIG", "GET"),
	       "-ERR wrong number of arguments for 'config|get' command\r\n");
	EXPECT(s, CMD("CONFIG", "SET", "a", "b"),
	       "-ERR unknown subcommand 'SET'. Try CONFIG HELP.\r\n");
	EXPECT(s, CMD("SET", "k", "v"), "+OK\r\n");
	s->ctx.info.connected_clients = 3;
	s->ctx.now += 5000;
	r = feed(s, CMD("INFO"));
	assert_true(r[0] == '$');
	assert_non_null(strstr(r, "# Server\r\nredis_version:"));
	assert_non_null(strstr(r, "uptime_in_seconds:5\r\n"));
	assert_non_null(strstr(r, "connected_clients:3\r\n"));
	assert_non_null(strstr(r, "db0:keys=1,expires=0"));
	r = feed(s, CMD("INFO", "keyspace"));
	assert_null(strstr(r, "# Server"));
	assert_non_null(strstr(r, "# Keyspace\r\ndb0:keys=1"));
	EXPECT(s, CMD("QUIT"), "+OK\r\n");
	assert_true(s->closed);
}

static void test_quit_stops_pipeline(void **state)
{
	struct srv *s = *state;
	char buf[512];

	snprintf(buf, sizeof(buf), "PING\r\n%sPING\r\n", CMD("QUIT"));
	EXPECT(s, buf, "+PONG\r\n+OK\r\n");
}

static void test_glob(void **state)
{
	(void)state;
#define G(p, str) kv_glob((const uint8_t *)(p), strlen(p), \
			  (const uint8_t *)(str), strlen(str), 0)
	assert_true(G("*", ""));
	assert_true(G("a*c", "abbbc"));
	assert_false(G("a*c", "abbb"));
	assert_true(G("h?llo", "hello"));
	assert_true(G("h[ae]llo", "hallo"));
	assert_false(G("h[^e]llo", "hello"));
	assert_true(G("h[a-f]llo", "hello"));
	assert_true(G("a\\*", "a*"));
	assert_false(G("a\\*", "ab"));
	assert_true(G("*b*d", "abcd"));
#undef G
}

static void test_cmd_oom(void **state)
{
	struct srv *s = *state;

	EXPECT(s, CMD("SET", "k", "old"), "+OK\r\n");
	s->out.len = 0;
	kv_buf_reserve(&s->out, 4096); /* so the reply itself has room */
	s->mem.fail_after = 0;
	EXPECT(s, CMD("SET", "k", "new"),
	       "-OOM command not allowed: out of memory\r\n");
	EXPECT(s, CMD("INCR", "n"), "-OOM command not allowed: out of memory\r\n");
	s->mem.fail_after = -1;
	EXPECT(s, CMD("GET", "k"), "$3\r\nold\r\n");
	EXPECT(s, CMD("EXISTS", "n"), ":0\r\n");
}

/* The table grows far past its first size and stays consistent. */
static void test_many_keys(void **state)
{
	struct srv *s = *state;
	char k[32], v[32];
	struct kv_entry *e;

	for (int i = 0; i < 20000; i++) {
		snprintf(k, sizeof(k), "key:%d", i);
		snprintf(v, sizeof(v), "%d", i * 3);
		assert_non_null(kv_db_set(&s->db, (uint8_t *)k, strlen(k),
					  (uint8_t *)v, strlen(v),
					  i % 2 ? s->ctx.now + i : KV_NO_EXPIRE));
	}
	assert_int_equal(kv_db_size(&s->db, s->ctx.now), 20000);
	assert_true(s->db.mask + 1 >= 16384);
	e = kv_db_get(&s->db, (const uint8_t *)"key:777", 7, s->ctx.now);
	assert_non_null(e);
	assert_memory_equal(kv_entry_val(e), "2331", 4);
	s->ctx.now += 10000;
	/* odd keys below 10000 expired */
	assert_int_equal(kv_db_size(&s->db, s->ctx.now), 20000 - 5000);
	assert_int_equal(kv_db_expires(&s->db, s->ctx.now), 5000);
}

/* ---- log -------------------------------------------------------------------- */

static void test_log_replay(void **state)
{
	struct srv *s = *state;

	assert_int_equal(srv_log(s, 4096), 0);
	assert_true(s->log.st.formatted);
	EXPECT(s, CMD("SET", "a", "1"), "+OK\r\n");
	EXPECT(s, CMD("MSET", "b", "2", "c", "3"), "+OK\r\n");
	EXPECT(s, CMD("INCR", "a"), ":2\r\n");
	EXPECT(s, CMD("DEL", "c", "nothing"), ":1\r\n");
	EXPECT(s, CMD("SET", "t", "x", "EX", "100"), "+OK\r\n");
	EXPECT(s, CMD("SET", "gone", "x", "PX", "50"), "+OK\r\n");
	EXPECT(s, CMD("SET", "bin", "a\r\nb"), "+OK\r\n");
	s->ctx.now += 60;
	EXPECT(s, CMD("APPEND", "bin", "!"), ":5\r\n");
	EXPECT(s, CMD("EXPIRE", "b", "1000"), ":1\r\n");
	EXPECT(s, CMD("PERSIST", "b"), ":1\r\n");
	EXPECT(s, CMD("GET", "a"), "$1\r\n2\r\n");
	assert_true(s->disk.flushes > 0);

	/* reboot with a clock that starts elsewhere: ttl counted from the
	 * last record (t0 + 60), so 100 s - 60 ms remain */
	srv_restart(s, 5);
	assert_false(s->log.st.formatted);
	assert_true(s->log.st.replayed_records >= 9);
	EXPECT(s, CMD("MGET", "a", "b", "c", "bin", "gone"),
	       "*5\r\n$1\r\n2\r\n$1\r\n2\r\n$-1\r\n$5\r\na\r\nb!\r\n$-1\r\n");
	EXPECT(s, CMD("PTTL", "t"), ":99940\r\n");
	EXPECT(s, CMD("TTL", "b"), ":-1\r\n");
	EXPECT(s, CMD("DBSIZE"), ":4\r\n");
	/* and appending after a replay continues the same log */
	EXPECT(s, CMD("FLUSHALL"), "+OK\r\n");
	EXPECT(s, CMD("SET", "after", "yes"), "+OK\r\n");
	srv_restart(s, 10);
	EXPECT(s, CMD("KEYS", "*"), "*1\r\n$5\r\nafter\r\n");
}

/*
 * A key a client saw expire stays gone after a restart, although replay
 * counts ttls from the last record: the expiry was logged as a DEL.  A
 * key nobody looked at keeps the rest of its ttl.
 */
static void test_log_expiry_observed(void **state)
{
	struct srv *s = *state;

	assert_int_equal(srv_log(s, 4096), 0);
	EXPECT(s, CMD("SET", "seen", "1", "PX", "100"), "+OK\r\n");
	EXPECT(s, CMD("SET", "unseen", "1", "PX", "5000"), "+OK\r\n");
	s->ctx.now += 1000;
	EXPECT(s, CMD("GET", "seen"), "$-1\r\n");
	srv_restart(s, 0);
	EXPECT(s, CMD("EXISTS", "seen"), ":0\r\n");
	EXPECT(s, CMD("PTTL", "unseen"), ":4000\r\n");
	s->ctx.now += 4000;
	EXPECT(s, CMD("DBSIZE"), ":0\r\n");
	srv_restart(s, 0);
	EXPECT(s, CMD("KEYS", "*"), "*0\r\n");
	/* an expired key overwritten in one command: DEL then SET, in order */
	EXPECT(s, CMD("SET", "k", "old", "PX", "10"), "+OK\r\n");
	s->ctx.now += 10;
	EXPECT(s, CMD("SET", "k", "new", "NX"), "+OK\r\n");
	EXPECT(s, CMD("SET", "j", "1", "PX", "10"), "+OK\r\n");
	s->ctx.now += 10;
	EXPECT(s, CMD("INCR", "j"), ":1\r\n");
	srv_restart(s, 0);
	EXPECT(s, CMD("MGET", "k", "j"), "*2\r\n$3\r\nnew\r\n$1\r\n1\r\n");
}

static void test_log_torn_tail(void **state)
{
	struct srv *s = *state;
	char big[3000];

	assert_int_equal(srv_log(s, 4096), 0);
	EXPECT(s, CMD("SET", "a", "1"), "+OK\r\n");
	memset(big, 'v', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	EXPECT(s, CMD("SET", "b", big), "+OK\r\n");
	EXPECT(s, CMD("SET", "c", "3"), "+OK\r\n");
	/* tear the middle record: its last sector never reached the disk */
	memset(s->disk.data + (s->log.pos - 2) * KV_SECTOR, 0, KV_SECTOR);
	srv_restart(s, 0);
	EXPECT(s, CMD("MGET", "a", "b", "c"), "*3\r\n$1\r\n1\r\n$-1\r\n$-1\r\n");
	/* new records overwrite the torn one; the stale "c" record after it
	 * never comes back */
	EXPECT(s, CMD("SET", "d", "4"), "+OK\r\n");
	srv_restart(s, 0);
	EXPECT(s, CMD("MGET", "a", "b", "c", "d"),
	       "*4\r\n$1\r\n1\r\n$-1\r\n$-1\r\n$1\r\n4\r\n");
}

static void test_log_bitflip(void **state)
{
	struct srv *s = *state;
	uint64_t pos;

	assert_int_equal(srv_log(s, 4096), 0);
	EXPECT(s, CMD("SET", "a", "1"), "+OK\r\n");
	pos = s->log.pos;
	EXPECT(s, CMD("SET", "b", "2"), "+OK\r\n");
	EXPECT(s, CMD("SET", "c", "3"), "+OK\r\n");
	s->disk.data[pos * KV_SECTOR + 88] ^= 0x10; /* b's key */
	srv_restart(s, 0);
	EXPECT(s, CMD("MGET", "a", "b", "c"), "*3\r\n$1\r\n1\r\n$-1\r\n$-1\r\n");
}

static void test_log_garbage_disk(void **state)
{
	struct srv *s = *state;

	s->disk.data = malloc(1024 * KV_SECTOR);
	s->disk.sectors = 1024;
	for (size_t i = 0; i < 1024 * KV_SECTOR; i++)
		s->disk.data[i] = (uint8_t)(i * 131 + (i >> 9));
	assert_int_equal(srv_log(s, 1024), 0);
	assert_true(s->log.st.formatted);
	EXPECT(s, CMD("DBSIZE"), ":0\r\n");
	EXPECT(s, CMD("SET", "x", "1"), "+OK\r\n");
	srv_restart(s, 0);
	EXPECT(s, CMD("GET", "x"), "$1\r\n1\r\n");
}

static void test_log_too_small(void **state)
{
	struct srv *s = *state;

	s->disk.data = calloc(16, KV_SECTOR);
	s->disk.sectors = 16;
	assert_int_equal(srv_log(s, 16), -KV_EINVAL);
}

static void test_log_compaction(void **state)
{
	struct srv *s = *state;
	char k[32], v[64], want[32];
	int n = 0;

	assert_int_equal(srv_log(s, 256), 0); /* two regions of 120 sectors */
	for (int i = 0; i < 2000; i++) {
		snprintf(k, sizeof(k), "k%d", i % 20);
		snprintf(v, sizeof(v), "value-%d", i);
		EXPECT(s, CMD("SET", k, v), "+OK\r\n");
		if (i % 97 == 0) {
			snprintf(want, sizeof(want), ":%d\r\n", ++n);
			EXPECT(s, CMD("INCR", "counter"), want);
		}
	}
	assert_true(s->log.st.compactions > 0);
	srv_restart(s, 0);
	EXPECT(s, CMD("GET", "k19"), "$10\r\nvalue-1999\r\n");
	EXPECT(s, CMD("GET", "k0"), "$10\r\nvalue-1980\r\n");
	EXPECT(s, CMD("GET", "counter"), "$2\r\n21\r\n");
	EXPECT(s, CMD("DBSIZE"), ":21\r\n");
}

static void test_log_full(void **state)
{
	struct srv *s = *state;
	static char v[20000];
	char k[16];
	int i, refused = 0;

	memset(v, 'x', sizeof(v) - 1);
	assert_int_equal(srv_log(s, 256), 0); /* 60 KiB per region */
	for (i = 0; i < 10 && !refused; i++) {
		const char *r;

		snprintf(k, sizeof(k), "k%d", i);
		s->out.len = 0;
		r = feed(s, CMD("SET", k, v));
		if (strcmp(r, "+OK\r\n") != 0) {
			assert_string_equal(r, "-ERR the log device is full: "
					       "write refused\r\n");
			refused = 1;
		}
	}
	assert_true(refused);
	snprintf(k, sizeof(k), "k%d", i - 1);
	EXPECT(s, CMD("EXISTS", k), ":0\r\n");  /* refused: not applied */
	EXPECT(s, CMD("DEL", "k0"), ":1\r\n");  /* small writes still go */
	EXPECT(s, CMD("SET", "small", "1"), "+OK\r\n");
	srv_restart(s, 0);
	EXPECT(s, CMD("EXISTS", "k0", "k1", "small"), ":2\r\n");
}

static void test_log_io_error(void **state)
{
	struct srv *s = *state;
	size_t used;
	const char *req = CMD("SET", "a", "1");

	assert_int_equal(srv_log(s, 4096), 0);
	s->disk.fail = 1;
	assert_int_equal(kv_parse((const uint8_t *)req, strlen(req), &s->req,
				  &used), KV_PARSE_OK);
	(void)kv_exec(&s->ctx, s->req.argv, s->req.argc, &s->out);
	assert_int_equal(kv_log_commit(&s->log, s->ctx.now), -KV_EIO);
	s->disk.fail = 0;
}

static void test_log_header_epochs(void **state)
{
	struct srv *s = *state;
	struct kv_log_hdr h;

	assert_int_equal(srv_log(s, 1024), 0);
	EXPECT(s, CMD("SET", "a", "1"), "+OK\r\n");
	assert_int_equal(kv_log_compact(&s->log, s->ctx.now), 0);
	assert_int_equal(s->log.region, 1);
	EXPECT(s, CMD("SET", "b", "2"), "+OK\r\n");
	/* a corrupt newest header falls back to the older one (region 0,
	 * which still holds "a") */
	memcpy(&h, s->disk.data + (s->log.epoch % 2) * KV_SECTOR, sizeof(h));
	assert_int_equal(h.region, 1);
	s->disk.data[(s->log.epoch % 2) * KV_SECTOR + 20] ^= 1;
	srv_restart(s, 0);
	assert_int_equal(s->log.region, 0);
	EXPECT(s, CMD("MGET", "a", "b"), "*2\r\n$1\r\n1\r\n$-1\r\n");
}

static void test_ops_malformed(void **state)
{
	struct srv *s = *state;
	struct kv_buf b;
	struct kv_op_hdr h;

	kv_buf_init(&b, &s->a);
	kv_op_put(&b, KV_OP_SET, (const uint8_t *)"k", 1, (const uint8_t *)"v",
		  1, 0);
	assert_int_equal(kv_ops_apply(&s->db, b.p, b.len, 1), 0);
	assert_int_equal(kv_ops_apply(&s->db, b.p, b.len, 2), -1);
	assert_int_equal(kv_ops_apply(&s->db, b.p, b.len - 8, 1), -1);
	memcpy(&h, b.p, sizeof(h));
	h.klen = 1000;
	memcpy(b.p, &h, sizeof(h));
	assert_int_equal(kv_ops_apply(&s->db, b.p, b.len, 1), -1);
	h.klen = 1;
	h.type = 99;
	memcpy(b.p, &h, sizeof(h));
	assert_int_equal(kv_ops_apply(&s->db, b.p, b.len, 1), -1);
	kv_buf_free(&b);
	assert_int_equal(kv_crc32c(0, "123456789", 9), 0xe3069283U);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_parse_array),
		T(test_parse_inline),
		T(test_parse_unbalanced_single),
		T(test_parse_empty_arrays),
		T(test_pipelined),
		T(test_split_everywhere),
		T(test_malformed),
		T(test_half_frames_wait),
		T(test_too_big_lines),
		T(test_garbage),
		T(test_parse_nomem),
		T(test_numbers),
		T(test_error_sanitised),
		T(test_ping_echo),
		T(test_unknown_and_arity),
		T(test_unknown_long_args),
		T(test_get_set),
		T(test_binary_keys),
		T(test_expiry),
		T(test_incr),
		T(test_multi_key),
		T(test_strings_misc),
		T(test_server_cmds),
		T(test_quit_stops_pipeline),
		T(test_glob),
		T(test_cmd_oom),
		T(test_many_keys),
		T(test_log_replay),
		T(test_log_expiry_observed),
		T(test_log_torn_tail),
		T(test_log_bitflip),
		T(test_log_garbage_disk),
		T(test_log_too_small),
		T(test_log_compaction),
		T(test_log_full),
		T(test_log_io_error),
		T(test_log_header_epochs),
		T(test_ops_malformed),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
