/*
 * test_disksync.c - disk-sync (disk-sync/disksync.h): the DISK_WRITE body,
 * the primary's write log, the base copy and the standby's replica.
 *
 * The codec is checked for a round trip with golden header bytes and for
 * every refusal.  The log is checked for what goes into which epoch, the
 * (after, upto] ranges, order, splitting, freeing, its cap and concurrent
 * writers.  The replica is checked for staging, ordered commit, discard,
 * refusals and its image file.  Replays go from a log into a replica and
 * the replica's image is compared with a reference file the writes also
 * went to directly.  Files live in a mkdtemp directory removed at the end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "disksync.h"

#define MiB (1u << 20)

static char g_dir[64];

/* ---- helpers ------------------------------------------------------------ */

static const char *at(char *buf, const char *name)
{
	snprintf(buf, PATH_MAX, "%s/%s", g_dir, name);
	return buf;
}

static uint64_t rnd(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545f4914f6cdd1dULL;
}

static void rnd_fill(uint64_t *s, uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i + 8 <= n; i += 8) {
		uint64_t v = rnd(s);

		memcpy(p + i, &v, 8);
	}
	for (; i < n; i++)
		p[i] = (uint8_t)rnd(s);
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
	put_be32(p, (uint32_t)(v >> 32));
	put_be32(p + 4, (uint32_t)v);
}

/* A file of size bytes, all zero. */
static int make_file(const char *path, uint64_t size)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	return fd;
}

static uint8_t *slurp(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *buf;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	buf = malloc((size_t)st.st_size + 1);
	assert_non_null(buf);
	assert_int_equal(pread(fd, buf, (size_t)st.st_size, 0), st.st_size);
	close(fd);
	*len = (size_t)st.st_size;
	return buf;
}

static uint64_t file_hash(const char *path)
{
	size_t len;
	uint8_t *buf = slurp(path, &len);
	uint64_t h = XXH3_64bits(buf, len);

	free(buf);
	return h;
}

static void read_at(const char *path, uint64_t off, void *p, size_t n)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, p, n, (off_t)off), (ssize_t)n);
	close(fd);
}

static bool all_bytes(const uint8_t *p, size_t n, uint8_t v)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != v)
			return false;
	return true;
}

/* Emitted bodies, copied (the log's are gone once acked). */
struct capture {
	struct { uint8_t *body; size_t len; } v[64];
	size_t n;
	int stop_at;    /* nonzero: return 42 from the stop_at-th call */
	int calls;
	int progress;   /* ds_base_emit's progress calls ... */
	uint64_t done;  /* ... and the last `done` they gave */
};

static int capture_emit(void *arg, const uint8_t *body, size_t len)
{
	struct capture *c = arg;

	if (++c->calls == c->stop_at)
		return 42;
	if (c->n == sizeof(c->v) / sizeof(c->v[0]))
		return -ENOSPC;
	c->v[c->n].body = malloc(len);
	if (!c->v[c->n].body)
		return -ENOMEM;
	memcpy(c->v[c->n].body, body, len);
	c->v[c->n++].len = len;
	return 0;
}

static void capture_free(struct capture *c)
{
	for (size_t i = 0; i < c->n; i++)
		free(c->v[i].body);
	memset(c, 0, sizeof(*c));
}

/* Decodes captured body i, which must be valid on a disk of disk_bytes. */
static struct ds_write cap_get(const struct capture *c, size_t i,
			       uint64_t disk_bytes)
{
	struct ds_write w;
	char err[DS_ERR_MAX];

	assert_true(i < c->n);
	assert_int_equal(ds_write_decode(c->v[i].body, c->v[i].len,
					 disk_bytes, &w, err, sizeof(err)), 0);
	return w;
}

/* Feeds emitted bodies to a replica as writes of one epoch. */
struct sink {
	struct ds_replica *r;
	uint64_t epoch;
};

static int sink_emit(void *arg, const uint8_t *body, size_t len)
{
	struct sink *s = arg;
	char err[DS_ERR_MAX];
	int rc = ds_replica_recv(s->r, s->epoch, body, len, err, sizeof(err));

	if (rc)
		print_message("recv: %s\n", err);
	return rc;
}

/* Sends closed epoch `epoch` to r, commits it there and acks it. */
static void ship(struct ds_log *log, struct ds_replica *r, uint64_t epoch)
{
	struct sink s = { r, epoch };

	assert_int_equal(ds_log_emit(log, epoch - 1, epoch, sink_emit, &s), 0);
	assert_int_equal(ds_replica_commit(r, epoch), 0);
	ds_log_acked(log, epoch);
}

static struct ds_replica *replica(const char *name, uint64_t size, char *p)
{
	struct ds_replica *r = NULL;
	char err[DS_ERR_MAX];

	unlink(at(p, name));
	assert_int_equal(ds_replica_open(p, size, &r, err, sizeof(err)), 0);
	return r;
}

static int log_one(struct ds_log *log, uint64_t off, const void *p, size_t n)
{
	struct iovec iov = { (void *)p, n };

	return ds_log_write(log, off, &iov, 1, n);
}

/*
 * One random write inside [lo, hi) of up to max_len bytes, to the log and
 * to the reference file, split into three iovecs at random points.  No
 * cmocka asserts: this runs on worker threads too.
 */
static int random_write(struct ds_log *log, int ref, uint64_t *seed,
			uint64_t lo, uint64_t hi, size_t max_len, uint8_t *buf)
{
	size_t len = (size_t)(1 + rnd(seed) % (max_len / DS_SECTOR)) * DS_SECTOR;
	uint64_t off;
	size_t a, b;

	if (len > hi - lo)
		len = (size_t)(hi - lo);
	off = lo + rnd(seed) % ((hi - lo - len) / DS_SECTOR + 1) * DS_SECTOR;
	rnd_fill(seed, buf, len);
	a = (size_t)(rnd(seed) % (len + 1));
	b = a + (size_t)(rnd(seed) % (len - a + 1));
	struct iovec iov[3] = {
		{ buf, a }, { buf + a, b - a }, { buf + b, len - b },
	};
	if (pwrite(ref, buf, len, (off_t)off) != (ssize_t)len)
		return -EIO;
	return ds_log_write(log, off, iov, 3, len);
}

static int setup(void **state)
{
	(void)state;
	snprintf(g_dir, sizeof(g_dir), "/tmp/test_disksync.XXXXXX");
	return mkdtemp(g_dir) ? 0 : -1;
}

static int rm_entry(const char *path, const struct stat *st, int flag,
		    struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int teardown(void **state)
{
	(void)state;
	return nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- the DISK_WRITE body ------------------------------------------------ */

#define DISK (1ull << 20)

/* A valid body of `length` bytes of 0xab at offset into buf. */
static size_t good_body(uint8_t *buf, uint64_t offset, uint32_t length)
{
	put_be32(buf, 0);
	put_be32(buf + 4, DS_KIND_EPOCH);
	put_be64(buf + 8, offset);
	put_be32(buf + 16, length);
	put_be32(buf + 20, 0);
	memset(buf + DS_WRITE_HEADER, 0xab, length);
	return DS_WRITE_HEADER + length;
}

static void refused(const uint8_t *body, size_t len, uint64_t disk_bytes,
		    const char *what)
{
	struct ds_write w;
	char err[DS_ERR_MAX] = "";

	assert_int_equal(ds_write_decode(body, len, disk_bytes, &w, err,
					 sizeof(err)), -EBADMSG);
	assert_null(w.data);
	assert_true(strncmp(err, "DISK_WRITE: ", 12) == 0);
	if (!strstr(err, what))
		fail_msg("\"%s\" does not say \"%s\"", err, what);
}

/* A good 512-byte body with the u32 at `off` set to v is refused with
 * `what`. */
static void refused_u32(size_t off, uint32_t v, const char *what)
{
	static uint8_t buf[DS_WRITE_HEADER + 512];
	size_t len = good_body(buf, 0, 512);

	put_be32(buf + off, v);
	refused(buf, len, DISK, what);
}

static void test_roundtrip(void **state)
{
	static const uint8_t golden[DS_WRITE_HEADER] = {
		0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 2, 3, 4, 0,
		0, 0, 0x10, 0, 0, 0, 0, 0,
	};
	static const uint32_t lens[] = { 512, 4096, DS_WRITE_MAX };
	uint8_t *buf = malloc(DS_WRITE_HEADER + DS_WRITE_MAX);
	uint8_t *data = malloc(DS_WRITE_MAX);
	uint64_t seed = 1;
	struct ds_write w, d;
	char err[DS_ERR_MAX];
	size_t len;

	(void)state;
	assert_non_null(buf);
	assert_non_null(data);
	rnd_fill(&seed, data, DS_WRITE_MAX);
	w = (struct ds_write){ 0, DS_KIND_BASE, 0x102030400ull, 4096, data };
	assert_int_equal(ds_write_encode(&w, buf, 4120, &len), 0);
	assert_int_equal(len, 4120);
	assert_memory_equal(buf, golden, DS_WRITE_HEADER);
	for (uint32_t kind = 0; kind < 2; kind++) {
		for (size_t i = 0; i < 3; i++) {
			uint64_t off = kind ? 8 * MiB - lens[i] : 0;

			w = (struct ds_write){ 0, kind, off, lens[i], data };
			assert_int_equal(ds_write_encode(&w, buf, DS_WRITE_HEADER +
					 DS_WRITE_MAX, &len), 0);
			assert_int_equal(len, DS_WRITE_HEADER + lens[i]);
			assert_int_equal(ds_write_decode(buf, len, 8 * MiB, &d,
							 err, sizeof(err)), 0);
			assert_int_equal(d.disk, 0);
			assert_int_equal(d.kind, kind);
			assert_int_equal(d.offset, off);
			assert_int_equal(d.length, lens[i]);
			assert_ptr_equal(d.data, buf + DS_WRITE_HEADER);
			assert_memory_equal(d.data, data, lens[i]);
		}
	}
	free(buf);
	free(data);
}

static void test_encode_refuses(void **state)
{
	static uint8_t data[2 * 4096], buf[DS_WRITE_HEADER + 4096];
	const struct ds_write bad[] = {
		{ 1, DS_KIND_EPOCH, 0, 512, data },
		{ 0, 2, 0, 512, data },
		{ 0, DS_KIND_EPOCH, 100, 512, data },
		{ 0, DS_KIND_EPOCH, 0, 100, data },
		{ 0, DS_KIND_EPOCH, 0, 0, data },
		{ 0, DS_KIND_EPOCH, 0, DS_WRITE_MAX + 512, data },
		{ 0, DS_KIND_EPOCH, UINT64_MAX - 511, 1024, data },
		{ 0, DS_KIND_EPOCH, 0, 512, NULL },
	};
	struct ds_write w = { 0, DS_KIND_EPOCH, 0, 4096, data };
	size_t len = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(ds_write_encode(&bad[i], buf, sizeof(buf),
						 &len), -EINVAL);
	assert_int_equal(ds_write_encode(&w, buf, sizeof(buf) - 1, &len),
			 -ENOSPC);
	assert_int_equal(len, 0);
	assert_int_equal(ds_write_encode(&w, buf, sizeof(buf), &len), 0);
}

static void test_decode_truncated(void **state)
{
	static uint8_t buf[DS_WRITE_HEADER + 4096];
	size_t len = good_body(buf, 0, 4096), l;

	(void)state;
	for (l = 0; l < DS_WRITE_HEADER; l++)
		refused(buf, l, DISK, "truncated");
	for (; l < len; l++)
		refused(buf, l, DISK, "body length");
	refused(NULL, 0, DISK, "truncated");
}

static void test_decode_bad_disk(void **state)
{
	(void)state;
	refused_u32(0, 1, "disk 1 != 0");
	refused_u32(0, UINT32_MAX, "disk 4294967295");
}

static void test_decode_bad_kind(void **state)
{
	(void)state;
	refused_u32(4, 2, "kind 2 unknown");
	refused_u32(4, UINT32_MAX, "kind 4294967295 unknown");
}

static void test_decode_misaligned(void **state)
{
	static uint8_t buf[DS_WRITE_HEADER + 4096];
	static const uint64_t offs[] = { 1, 511, 513, 4096 + 8 };
	static const uint32_t lens[] = { 1, 511, 513, 4095 };
	size_t len;

	(void)state;
	for (size_t i = 0; i < 4; i++) {
		len = good_body(buf, offs[i], 4096);
		refused(buf, len, DISK, "not a multiple of 512");
		refused(buf, len, DISK, "offset");
	}
	for (size_t i = 0; i < 4; i++) {
		len = good_body(buf, 0, lens[i]);
		refused(buf, len, DISK, "not a multiple of 512");
		refused(buf, len, DISK, "length");
	}
}

static void test_decode_length_range(void **state)
{
	uint8_t *buf = calloc(1, DS_WRITE_HEADER + DS_WRITE_MAX + 512);

	(void)state;
	assert_non_null(buf);
	refused(buf, good_body(buf, 0, 0), 2 * DISK, "length 0 not in 1..");
	refused(buf, good_body(buf, 0, DS_WRITE_MAX + 512), 2 * DISK,
		"length 1049088 not in 1..1048576");
	put_be32(buf + 16, UINT32_MAX);
	refused(buf, DS_WRITE_HEADER, 2 * DISK, "length 4294967295");
	free(buf);
}

static void test_decode_past_end(void **state)
{
	static uint8_t buf[DS_WRITE_HEADER + 1024];
	struct ds_write w;
	char err[DS_ERR_MAX];
	size_t len;

	(void)state;
	len = good_body(buf, DISK - 512, 512);
	assert_int_equal(ds_write_decode(buf, len, DISK, &w, err,
					 sizeof(err)), 0);
	refused(buf, good_body(buf, DISK, 512), DISK, "past the end");
	refused(buf, good_body(buf, DISK - 512, 1024), DISK, "past the end");
	/* offset + length wraps to 512: must not pass as "inside". */
	len = good_body(buf, UINT64_MAX - 511, 1024);
	refused(buf, len, UINT64_MAX, "past the end");
	refused(buf, len, DISK, "past the end");
}

static void test_decode_reserved(void **state)
{
	(void)state;
	refused_u32(20, 1, "reserved 1 != 0");
	refused_u32(20, 0x80000000u, "reserved 2147483648");
}

static void test_decode_trailing(void **state)
{
	static uint8_t buf[DS_WRITE_HEADER + 4096 + 512];
	size_t len = good_body(buf, 0, 4096);

	(void)state;
	refused(buf, len + 1, DISK, "body length 4121 != 24 + length 4096");
	refused(buf, len + 512, DISK, "body length");
}

/* ---- the write log ------------------------------------------------------ */

static void test_log_args(void **state)
{
	static uint8_t data[2048];
	struct ds_log *log = NULL;
	struct ds_log_stats st;
	struct iovec iov[2] = { { data, 512 }, { data + 512, 512 } };

	(void)state;
	assert_int_equal(ds_log_new(0, &log), -EINVAL);
	assert_int_equal(ds_log_new(1000, &log), -EINVAL);
	assert_int_equal(ds_log_new(1ull << 63, &log), -EINVAL);
	assert_int_equal(ds_log_new(DISK, &log), 0);
	assert_int_equal(ds_log_write(log, 1, iov, 1, 512), -EINVAL);
	assert_int_equal(ds_log_write(log, 0, iov, 1, 511), -EINVAL);
	assert_int_equal(ds_log_write(log, DISK, iov, 1, 512), -EINVAL);
	assert_int_equal(ds_log_write(log, DISK - 512, iov, 2, 1024), -EINVAL);
	assert_int_equal(ds_log_write(log, UINT64_MAX - 511, iov, 2, 1024),
			 -EINVAL);
	assert_int_equal(ds_log_write(log, 0, iov, 2, 512), -EINVAL);
	assert_int_equal(ds_log_write(log, 0, iov, 1, 1024), -EINVAL);
	assert_int_equal(ds_log_write(log, 0, iov, -1, 0), -EINVAL);
	assert_int_equal(ds_log_write(log, 0, NULL, 1, 512), -EINVAL);
	assert_int_equal(ds_log_write(log, 0, iov, 0, 0), 0);
	assert_int_equal(ds_log_set_limit(log, 0), -EINVAL);
	ds_log_stats(log, &st);
	assert_int_equal(st.writes, 0);
	assert_int_equal(st.open_bytes, 0);
	assert_int_equal(ds_log_write(log, DISK - 1024, iov, 2, 1024), 0);
	ds_log_stats(log, &st);
	assert_int_equal(st.writes, 1);
	assert_int_equal(st.open_bytes, 1024);
	ds_log_free(log);
	ds_log_free(NULL);
}

static void test_log_epochs(void **state)
{
	static uint8_t a[1536], b[1024], c[512];
	struct iovec ia[3] = { { a, 512 }, { a + 512, 0 }, { a + 512, 1024 } };
	struct iovec ib[2] = { { b, 512 }, { b + 512, 512 } };
	struct capture cap = { 0 };
	struct ds_log_stats st;
	struct ds_log *log;
	struct ds_write w;

	(void)state;
	memset(a, 'a', sizeof(a));
	memset(b, 'b', sizeof(b));
	memset(c, 'c', sizeof(c));
	a[0] = 'A';
	a[sizeof(a) - 1] = 'Z';
	assert_int_equal(ds_log_new(DISK, &log), 0);
	assert_int_equal(ds_log_write(log, 0, ia, 3, sizeof(a)), 0);
	assert_int_equal(ds_log_cut(log, 1), 0);
	assert_int_equal(ds_log_write(log, 4096, ib, 2, sizeof(b)), 0);
	assert_int_equal(log_one(log, 8192, c, sizeof(c)), 0);
	assert_int_equal(ds_log_cut(log, 2), 0);
	assert_int_equal(ds_log_cut(log, 3), 0);
	ds_log_stats(log, &st);
	assert_int_equal(st.open_bytes, 0);
	assert_int_equal(st.pending_bytes, 1536 + 1024 + 512);
	assert_int_equal(st.pending_epochs, 3);
	assert_int_equal(st.writes, 3);
	assert_int_equal(st.bytes, 1536 + 1024 + 512);

	assert_int_equal(ds_log_emit(log, 0, 1, capture_emit, &cap), 0);
	assert_int_equal(cap.n, 1);
	w = cap_get(&cap, 0, DISK);
	assert_int_equal(w.kind, DS_KIND_EPOCH);
	assert_int_equal(w.offset, 0);
	assert_int_equal(w.length, sizeof(a));
	assert_memory_equal(w.data, a, sizeof(a));
	capture_free(&cap);

	assert_int_equal(ds_log_emit(log, 1, 2, capture_emit, &cap), 0);
	assert_int_equal(cap.n, 2);
	w = cap_get(&cap, 0, DISK);
	assert_int_equal(w.offset, 4096);
	assert_memory_equal(w.data, b, sizeof(b));
	w = cap_get(&cap, 1, DISK);
	assert_int_equal(w.offset, 8192);
	assert_memory_equal(w.data, c, sizeof(c));
	capture_free(&cap);

	assert_int_equal(ds_log_emit(log, 2, 3, capture_emit, &cap), 0);
	assert_int_equal(cap.calls, 0);
	ds_log_free(log);
}

static void test_log_cut_order(void **state)
{
	static uint8_t x[512], y[512];
	struct capture cap = { 0 };
	struct ds_log_stats st;
	struct ds_log *log;

	(void)state;
	memset(y, 'y', sizeof(y));
	assert_int_equal(ds_log_new(DISK, &log), 0);
	assert_int_equal(ds_log_cut(log, 0), -EINVAL);
	assert_int_equal(log_one(log, 0, x, 512), 0);
	assert_int_equal(ds_log_cut(log, 5), 0);
	assert_int_equal(log_one(log, 512, y, 512), 0);
	assert_int_equal(ds_log_cut(log, 5), -EINVAL);
	assert_int_equal(ds_log_cut(log, 4), -EINVAL);
	ds_log_stats(log, &st);
	assert_int_equal(st.open_bytes, 512);   /* y is still open */
	assert_int_equal(st.pending_epochs, 1);
	assert_int_equal(ds_log_cut(log, 7), 0);
	assert_int_equal(ds_log_emit(log, 5, 7, capture_emit, &cap), 0);
	assert_int_equal(cap.n, 1);
	assert_int_equal(cap_get(&cap, 0, DISK).offset, 512);
	capture_free(&cap);
	ds_log_free(log);
}

static void test_log_emit_range(void **state)
{
	static uint8_t d[512];
	struct capture cap = { 0 };
	struct ds_log_stats st;
	struct ds_log *log;

	(void)state;
	assert_int_equal(ds_log_new(DISK, &log), 0);
	for (uint64_t e = 1; e <= 4; e++) {
		assert_int_equal(log_one(log, e * 4096, d, 512), 0);
		assert_int_equal(ds_log_cut(log, e), 0);
	}
	assert_int_equal(log_one(log, 0, d, 512), 0); /* open: never emitted */
	assert_int_equal(ds_log_emit(log, 0, 4, capture_emit, &cap), 0);
	assert_int_equal(cap.n, 4);
	for (size_t i = 0; i < 4; i++)
		assert_int_equal(cap_get(&cap, i, DISK).offset, (i + 1) * 4096);
	capture_free(&cap);

	assert_int_equal(ds_log_emit(log, 1, 3, capture_emit, &cap), 0);
	assert_int_equal(cap.n, 2);
	assert_int_equal(cap_get(&cap, 0, DISK).offset, 2 * 4096);
	assert_int_equal(cap_get(&cap, 1, DISK).offset, 3 * 4096);
	capture_free(&cap);

	assert_int_equal(ds_log_emit(log, 2, 2, capture_emit, &cap), 0);
	assert_int_equal(cap.calls, 0);
	assert_int_equal(ds_log_emit(log, 3, 2, capture_emit, &cap), -EINVAL);
	assert_int_equal(ds_log_emit(log, 0, 5, capture_emit, &cap), -EINVAL);
	ds_log_acked(log, 2);
	assert_int_equal(ds_log_emit(log, 1, 4, capture_emit, &cap), -ENOENT);
	assert_int_equal(cap.calls, 0);
	assert_int_equal(ds_log_emit(log, 2, 4, capture_emit, &cap), 0);
	assert_int_equal(cap.n, 2);
	capture_free(&cap);
	ds_log_stats(log, &st);
	assert_int_equal(st.pending_epochs, 2);
	assert_int_equal(st.pending_bytes, 1024);
	ds_log_free(log);
}

static void test_log_emit_stops(void **state)
{
	static uint8_t d[512];
	struct capture cap = { .stop_at = 2 };
	struct ds_log *log;

	(void)state;
	assert_int_equal(ds_log_new(DISK, &log), 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(log_one(log, 0, d, 512), 0);
	assert_int_equal(ds_log_cut(log, 1), 0);
	assert_int_equal(ds_log_emit(log, 0, 1, capture_emit, &cap), 42);
	assert_int_equal(cap.calls, 2);
	assert_int_equal(cap.n, 1);
	capture_free(&cap);
	ds_log_free(log);
}

/* An ack arriving while an emit walks the acked epochs (the replicator's
 * receiver thread; here the emit callback itself): nothing is freed
 * under the walk, which sends every body intact, and the acked epochs go
 * once it ends. */
struct ack_in_emit {
	struct ds_log *log;
	int n;
	int bad;
};

static int ack_emit(void *arg, const uint8_t *body, size_t len)
{
	struct ack_in_emit *a = arg;
	struct ds_log_stats st;
	struct ds_write w;
	char err[DS_ERR_MAX];

	if (a->n == 0)
		ds_log_acked(a->log, 3);
	ds_log_stats(a->log, &st);
	if (st.pending_epochs != 3 ||
	    ds_write_decode(body, len, DISK, &w, err, sizeof(err)) ||
	    w.offset != (uint64_t)a->n * 4096 ||
	    !all_bytes(w.data, w.length, (uint8_t)(a->n + 1)))
		a->bad++;
	a->n++;
	return 0;
}

static void test_log_ack_during_emit(void **state)
{
	static uint8_t d[4096];
	struct ack_in_emit a = { 0 };
	struct ds_log_stats st;
	struct capture cap = { 0 };

	(void)state;
	assert_int_equal(ds_log_new(DISK, &a.log), 0);
	for (int i = 0; i < 6; i++) {
		memset(d, i + 1, sizeof(d));
		assert_int_equal(log_one(a.log, (uint64_t)i * 4096, d, 4096), 0);
		if (i % 2)
			assert_int_equal(ds_log_cut(a.log, (uint64_t)i / 2 + 1), 0);
	}
	assert_int_equal(ds_log_emit(a.log, 0, 3, ack_emit, &a), 0);
	assert_int_equal(a.n, 6);
	assert_int_equal(a.bad, 0);
	ds_log_stats(a.log, &st);
	assert_int_equal(st.pending_epochs + st.pending_bytes, 0);
	assert_int_equal(ds_log_emit(a.log, 0, 3, capture_emit, &cap), -ENOENT);
	assert_int_equal(ds_log_emit(a.log, 3, 3, capture_emit, &cap), 0);
	assert_int_equal(cap.calls, 0);
	ds_log_acked(NULL, 1);
	ds_log_free(a.log);
}

/* A, then B over A and more, then C over part of B: the replica holds C
 * where it was written last and B around it. */
static void test_log_overlap_order(void **state)
{
	static uint8_t a[512], b[4096], c[512], got[8192];
	struct capture cap = { 0 };
	struct ds_replica *r;
	struct ds_log *log;
	char p[PATH_MAX];

	(void)state;
	memset(a, 'A', sizeof(a));
	memset(b, 'B', sizeof(b));
	memset(c, 'C', sizeof(c));
	assert_int_equal(ds_log_new(DISK, &log), 0);
	r = replica("overlap.img", DISK, p);
	assert_int_equal(log_one(log, 1024, a, sizeof(a)), 0);
	assert_int_equal(log_one(log, 0, b, sizeof(b)), 0);
	assert_int_equal(log_one(log, 1024, c, sizeof(c)), 0);
	assert_int_equal(ds_log_cut(log, 1), 0);
	assert_int_equal(ds_log_emit(log, 0, 1, capture_emit, &cap), 0);
	assert_int_equal(cap.n, 3);
	assert_int_equal(cap_get(&cap, 0, DISK).data[0], 'A');
	assert_int_equal(cap_get(&cap, 1, DISK).data[0], 'B');
	assert_int_equal(cap_get(&cap, 2, DISK).data[0], 'C');
	capture_free(&cap);
	ship(log, r, 1);
	read_at(p, 0, got, sizeof(got));
	assert_true(all_bytes(got, 1024, 'B'));
	assert_true(all_bytes(got + 1024, 512, 'C'));
	assert_true(all_bytes(got + 1536, 4096 - 1536, 'B'));
	assert_true(all_bytes(got + 4096, 4096, 0));
	ds_replica_free(r);
	ds_log_free(log);
}

static void test_log_split(void **state)
{
	const size_t len = 3 * MiB;
	uint8_t *data = malloc(len + 512);
	struct iovec iov[3] = {
		{ data, 1000000 }, { data + 1000000, 1000000 },
		{ data + 2000000, len - 2000000 },
	};
	struct capture cap = { 0 };
	struct ds_log_stats st;
	struct ds_log *log;
	uint64_t seed = 7;
	struct ds_write w;

	(void)state;
	assert_non_null(data);
	rnd_fill(&seed, data, len + 512);
	assert_int_equal(ds_log_new(8 * MiB, &log), 0);
	assert_int_equal(ds_log_write(log, MiB, iov, 3, len), 0);
	assert_int_equal(log_one(log, 5 * MiB, data, MiB + 512), 0);
	assert_int_equal(ds_log_cut(log, 1), 0);
	ds_log_stats(log, &st);
	assert_int_equal(st.pending_bytes, len + MiB + 512);
	assert_int_equal(st.writes, 2);
	assert_int_equal(ds_log_emit(log, 0, 1, capture_emit, &cap), 0);
	assert_int_equal(cap.n, 5);
	for (size_t i = 0; i < 3; i++) {
		w = cap_get(&cap, i, 8 * MiB);
		assert_int_equal(w.offset, (i + 1) * MiB);
		assert_int_equal(w.length, DS_WRITE_MAX);
		assert_memory_equal(w.data, data + i * MiB, MiB);
	}
	w = cap_get(&cap, 3, 8 * MiB);
	assert_int_equal(w.offset, 5 * MiB);
	assert_int_equal(w.length, MiB);
	w = cap_get(&cap, 4, 8 * MiB);
	assert_int_equal(w.offset, 6 * MiB);
	assert_int_equal(w.length, 512);
	assert_memory_equal(w.data, data + MiB, 512);
	capture_free(&cap);
	ds_log_free(log);
	free(data);
}

static void test_log_acked_frees(void **state)
{
	static uint8_t d[4096];
	struct ds_log_stats st;
	struct ds_log *log;

	(void)state;
	assert_int_equal(ds_log_new(DISK, &log), 0);
	for (uint64_t e = 1; e <= 3; e++) {
		assert_int_equal(log_one(log, 0, d, 512 * e), 0);
		assert_int_equal(ds_log_cut(log, e), 0);
	}
	assert_int_equal(log_one(log, 0, d, 4096), 0);
	ds_log_acked(log, 2);
	ds_log_stats(log, &st);
	assert_int_equal(st.pending_epochs, 1);
	assert_int_equal(st.pending_bytes, 1536);
	assert_int_equal(st.open_bytes, 4096);
	ds_log_acked(log, 3);
	ds_log_acked(log, 3);
	ds_log_stats(log, &st);
	assert_int_equal(st.pending_epochs, 0);
	assert_int_equal(st.pending_bytes, 0);
	assert_int_equal(st.open_bytes, 4096);
	assert_int_equal(st.writes, 4);
	assert_int_equal(st.bytes, 512 + 1024 + 1536 + 4096);
	assert_int_equal(ds_log_cut(log, 4), 0);
	ds_log_acked(log, 4);
	ds_log_stats(log, &st);
	assert_int_equal(st.open_bytes + st.pending_bytes + st.pending_epochs, 0);
	ds_log_free(log);
}

/*
 * Writes that end exactly at a chunk's end and that miss it by 8 bytes.
 * Bodies take 512 * sectors + 24 bytes; with 1 MiB chunks (ds_log.c) 63
 * writes of 32 sectors and one of 29 fill a chunk exactly, and 42 writes
 * of 48 sectors leave 8 bytes too few for one of 30.  Whatever the chunk
 * size, every write must come back intact.
 */
static void log_edge_writes(struct ds_log *log, const unsigned *sectors,
			    size_t n, uint8_t *buf, uint64_t *off)
{
	for (size_t i = 0; i < n; i++) {
		size_t len = sectors[i] * 512u;

		memset(buf, (int)(*off / 512 % 251) + 1, len);
		assert_int_equal(log_one(log, *off, buf, len), 0);
		*off += len;
	}
}

/* Checks each emitted body: contiguous from 0, filled as above. */
struct edge_check {
	uint64_t off;
	size_t n;
};

static int edge_emit(void *arg, const uint8_t *body, size_t len)
{
	struct edge_check *c = arg;
	struct ds_write w;
	char err[DS_ERR_MAX];

	if (ds_write_decode(body, len, 8 * MiB, &w, err, sizeof(err)) ||
	    w.offset != c->off ||
	    !all_bytes(w.data, w.length, (uint8_t)(c->off / 512 % 251 + 1)))
		return -EBADMSG;
	c->off += w.length;
	c->n++;
	return 0;
}

static void test_log_chunk_edges(void **state)
{
	unsigned exact[64], short8[43];
	static uint8_t buf[48 * 512];
	struct edge_check chk = { 0, 0 };
	struct ds_log *log;
	uint64_t off = 0;
	size_t i;

	(void)state;
	for (i = 0; i < 64; i++)
		exact[i] = i < 63 ? 32 : 29;
	for (i = 0; i < 43; i++)
		short8[i] = i < 42 ? 48 : 30;
	assert_int_equal(ds_log_new(8 * MiB, &log), 0);
	log_edge_writes(log, exact, 64, buf, &off);
	log_edge_writes(log, short8, 43, buf, &off);
	log_edge_writes(log, exact, 1, buf, &off);
	assert_int_equal(ds_log_cut(log, 1), 0);
	assert_int_equal(ds_log_emit(log, 0, 1, edge_emit, &chk), 0);
	assert_int_equal(chk.n, 64 + 43 + 1);
	assert_int_equal(chk.off, off);
	ds_log_free(log);
}

/* Past a small cap the log breaks for good; closed epochs stay until
 * acked. */
static void test_log_cap(void **state)
{
	static uint8_t d[64 * 1024];
	struct capture cap = { 0 };
	struct ds_log_stats st;
	struct ds_log *log;
	int n, rc = 0;

	(void)state;
	assert_int_equal(ds_log_new(64 * MiB, &log), 0);
	assert_int_equal(ds_log_set_limit(log, 3 * MiB), 0);
	assert_int_equal(log_one(log, 0, d, sizeof(d)), 0);
	assert_int_equal(ds_log_cut(log, 1), 0);
	for (n = 0; n < 1000 && !rc; n++)
		rc = log_one(log, (uint64_t)n * sizeof(d), d, sizeof(d));
	assert_int_equal(rc, -ENOMEM);
	/* Epoch 1 holds one 1 MiB chunk; one more fits under 3 MiB. */
	assert_in_range(n, 8, 40);
	ds_log_stats(log, &st);
	assert_int_equal(st.open_bytes, 0);
	assert_int_equal(st.pending_bytes, sizeof(d));
	assert_int_equal(log_one(log, 0, d, 512), -ENOMEM);
	assert_int_equal(ds_log_cut(log, 2), -ENOMEM);
	assert_int_equal(ds_log_emit(log, 0, 1, capture_emit, &cap), -ENOMEM);
	assert_int_equal(ds_log_set_limit(log, 1ull << 40), 0);
	assert_int_equal(log_one(log, 0, d, 512), -ENOMEM);
	ds_log_acked(log, 1);
	ds_log_stats(log, &st);
	assert_int_equal(st.pending_bytes + st.pending_epochs, 0);
	ds_log_free(log);
}

/* The default cap, without holding a GiB: one write of 1025 MiB made of
 * one buffer repeated is refused before anything is allocated. */
static void test_log_default_cap(void **state)
{
	enum { N = 1025 };
	struct iovec *iov = calloc(N, sizeof(*iov));
	uint8_t *d = calloc(1, MiB);
	struct ds_log *log;

	(void)state;
	assert_non_null(iov);
	assert_non_null(d);
	assert_true((uint64_t)N * MiB > DS_LOG_LIMIT);
	for (int i = 0; i < N; i++)
		iov[i] = (struct iovec){ d, MiB };
	assert_int_equal(ds_log_new(4ull << 30, &log), 0);
	assert_int_equal(ds_log_write(log, 0, iov, N, (size_t)N * MiB),
			 -ENOMEM);
	assert_int_equal(ds_log_write(log, 0, iov, 1, MiB), -ENOMEM);
	ds_log_free(log);
	free(iov);
	free(d);
}

/* ---- concurrency -------------------------------------------------------- */

#define CONC_DISK (16ull * MiB)
#define CONC_WRITES 4000

struct writer {
	struct ds_log *log;
	int ref;
	int id;
	int failures;
	atomic_int *running;
};

/* Each writer keeps to its half of the disk, so the reference file and
 * the log see its writes in the same order. */
static void *writer_main(void *arg)
{
	struct writer *w = arg;
	uint64_t seed = 0x9e3779b97f4a7c15ULL * (uint64_t)(w->id + 1);
	uint64_t lo = (uint64_t)w->id * CONC_DISK / 2;
	uint8_t *buf = malloc(64 * 1024);

	for (int i = 0; buf && i < CONC_WRITES; i++)
		if (random_write(w->log, w->ref, &seed, lo, lo + CONC_DISK / 2,
				 64 * 1024, buf))
			w->failures++;
	if (!buf)
		w->failures++;
	free(buf);
	atomic_fetch_sub(w->running, 1);
	return NULL;
}

/* Acks what the main thread committed, as the replicator's receiver
 * thread does, concurrently with its cuts and emits. */
struct acker {
	struct ds_log *log;
	atomic_uint_fast64_t committed;
	atomic_int stop;
};

static void *acker_main(void *arg)
{
	struct acker *a = arg;

	while (!atomic_load(&a->stop)) {
		ds_log_acked(a->log, atomic_load(&a->committed));
		sched_yield();
	}
	return NULL;
}

static void test_log_concurrent(void **state)
{
	char ref_path[PATH_MAX], p[PATH_MAX];
	atomic_int running = 2;
	struct writer w[2];
	struct acker ak;
	pthread_t t[3];
	struct ds_log_stats st;
	struct ds_replica *r;
	struct ds_log *log;
	uint64_t e = 0;
	int ref;

	(void)state;
	ref = make_file(at(ref_path, "conc.ref"), CONC_DISK);
	r = replica("conc.img", CONC_DISK, p);
	assert_int_equal(ds_log_new(CONC_DISK, &log), 0);
	ak.log = log;
	atomic_init(&ak.committed, 0);
	atomic_init(&ak.stop, 0);
	assert_int_equal(pthread_create(&t[2], NULL, acker_main, &ak), 0);
	for (int i = 0; i < 2; i++) {
		w[i] = (struct writer){ log, ref, i, 0, &running };
		assert_int_equal(pthread_create(&t[i], NULL, writer_main, &w[i]),
				 0);
	}
	for (int done = 0; !done;) {
		struct sink s = { r, ++e };

		done = atomic_load(&running) == 0;
		assert_int_equal(ds_log_cut(log, e), 0);
		assert_int_equal(ds_log_emit(log, e - 1, e, sink_emit, &s), 0);
		assert_int_equal(ds_replica_commit(r, e), 0);
		atomic_store(&ak.committed, e);
		usleep(50);
	}
	for (int i = 0; i < 2; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		assert_int_equal(w[i].failures, 0);
	}
	atomic_store(&ak.stop, 1);
	assert_int_equal(pthread_join(t[2], NULL), 0);
	ds_log_acked(log, e);
	ds_log_stats(log, &st);
	assert_int_equal(st.writes, 2 * CONC_WRITES);
	assert_int_equal(st.pending_epochs + st.pending_bytes + st.open_bytes, 0);
	print_message("concurrent: %d writes over %" PRIu64 " epochs\n",
		      2 * CONC_WRITES, e);
	assert_true(file_hash(ref_path) == file_hash(p));
	close(ref);
	ds_replica_free(r);
	ds_log_free(log);
}

/* ---- the base copy ------------------------------------------------------ */

#define BASE_DISK (3ull * MiB + 4096)

static void progress_cb(void *arg, uint64_t done, uint64_t total)
{
	struct capture *c = arg;

	assert_int_equal(total, BASE_DISK);
	assert_true(done > c->done && done <= total);
	c->done = done;
	c->progress++;
}

static void test_base_emit(void **state)
{
	char src[PATH_MAX], p[PATH_MAX];
	uint8_t *buf = malloc(MiB);
	struct capture cap = { 0 };
	struct ds_replica_stats rs;
	struct ds_replica *r;
	uint64_t seed = 3;
	struct sink s;
	int fd;

	(void)state;
	assert_non_null(buf);
	fd = make_file(at(src, "base.src"), BASE_DISK);
	rnd_fill(&seed, buf, MiB);
	assert_int_equal(pwrite(fd, buf, MiB, 0), MiB);       /* chunk 0 */
	assert_int_equal(pwrite(fd, "x", 1, 3 * MiB - 1), 1); /* chunk 2 */
	assert_int_equal(pwrite(fd, buf, 4096, 3 * MiB), 4096);  /* chunk 3 */
	/* Chunk 1 stays zero and is skipped. */
	assert_int_equal(ds_base_emit(fd, BASE_DISK, capture_emit, &cap,
				      progress_cb), 0);
	assert_int_equal(cap.calls, 3);
	assert_int_equal(cap.progress, 4);
	assert_int_equal(cap.done, BASE_DISK);
	assert_int_equal(cap.n, 3);
	assert_int_equal(cap_get(&cap, 0, BASE_DISK).offset, 0);
	assert_int_equal(cap_get(&cap, 1, BASE_DISK).offset, 2 * MiB);
	assert_int_equal(cap_get(&cap, 2, BASE_DISK).offset, 3 * MiB);
	assert_int_equal(cap_get(&cap, 2, BASE_DISK).length, 4096);
	for (size_t i = 0; i < 3; i++)
		assert_int_equal(cap_get(&cap, i, BASE_DISK).kind, DS_KIND_BASE);
	capture_free(&cap);

	/* A replica with old bytes everywhere: reset, then the base copy. */
	r = replica("base.img", BASE_DISK, p);
	memset(buf, 0xee, MiB);
	s = (struct sink){ r, 0 };
	for (uint64_t off = 0; off < 3 * MiB; off += MiB) {
		uint8_t body[DS_WRITE_HEADER + 512];
		struct ds_write w = { 0, DS_KIND_BASE, off + MiB / 2, 512, buf };
		size_t len;

		assert_int_equal(ds_write_encode(&w, body, sizeof(body), &len), 0);
		assert_int_equal(sink_emit(&s, body, len), 0);
	}
	assert_false(file_hash(src) == file_hash(p));
	assert_int_equal(ds_replica_reset(r), 0);
	assert_int_equal(ds_base_emit(fd, BASE_DISK, sink_emit, &s, NULL), 0);
	ds_replica_stats(r, &rs);
	assert_int_equal(rs.base_bytes, 3 * 512 + 2 * MiB + 4096);
	assert_true(file_hash(src) == file_hash(p));
	ds_replica_free(r);
	close(fd);
	free(buf);
}

static void test_base_errors(void **state)
{
	char src[PATH_MAX];
	struct capture cap = { .stop_at = 1 };
	uint8_t d[512];
	int fd;

	(void)state;
	memset(d, 1, sizeof(d));
	fd = make_file(at(src, "short.src"), 2 * MiB);
	assert_int_equal(pwrite(fd, d, 512, 0), 512);
	assert_int_equal(ds_base_emit(fd, 2 * MiB, capture_emit, &cap, NULL), 42);
	assert_int_equal(cap.calls, 1);
	capture_free(&cap);
	assert_int_equal(ds_base_emit(fd, 3 * MiB, capture_emit, &cap, NULL),
			 -ENODATA);
	assert_int_equal(ds_base_emit(fd, 1000, capture_emit, &cap, NULL),
			 -EINVAL);
	assert_int_equal(ds_base_emit(-1, 512, capture_emit, &cap, NULL),
			 -EINVAL);
	assert_int_equal(ds_base_emit(fd, 0, capture_emit, &cap, NULL), 0);
	capture_free(&cap);
	close(fd);
}

/* ---- the replica -------------------------------------------------------- */

/* Sends one epoch write of n bytes of v at off. */
static int put_rec(struct ds_replica *r, uint64_t epoch, uint32_t kind,
		uint64_t off, uint32_t n, uint8_t v, char *err)
{
	static uint8_t data[8192], body[DS_WRITE_HEADER + 8192];
	struct ds_write w = { 0, kind, off, n, data };
	size_t len;

	memset(data, v, n);
	assert_int_equal(ds_write_encode(&w, body, sizeof(body), &len), 0);
	return ds_replica_recv(r, epoch, body, len, err, DS_ERR_MAX);
}

/* A put_rec the replica must take. */
static void put_ok(struct ds_replica *r, uint64_t epoch, uint32_t kind,
		   uint64_t off, uint32_t n, uint8_t v)
{
	char err[DS_ERR_MAX] = "";
	int rc = put_rec(r, epoch, kind, off, n, v, err);

	if (rc)
		print_message("put_rec: %s\n", err);
	assert_int_equal(rc, 0);
}

/* The image at path holds n bytes of v at off. */
static void expect_image(const char *path, uint64_t off, size_t n, uint8_t v)
{
	uint8_t *got = malloc(n);

	assert_non_null(got);
	read_at(path, off, got, n);
	assert_true(all_bytes(got, n, v));
	free(got);
}

static void test_replica_discard(void **state)
{
	char p[PATH_MAX];
	struct ds_replica_stats st;
	struct ds_replica *r;
	uint64_t before;

	(void)state;
	r = replica("discard.img", DISK, p);
	put_ok(r, 0, DS_KIND_BASE, 0, 8192, 'b');
	assert_int_equal(ds_replica_commit(r, 0), 0);
	before = file_hash(p);
	put_ok(r, 1, DS_KIND_EPOCH, 0, 4096, 'x');
	put_ok(r, 1, DS_KIND_EPOCH, 65536, 512, 'y');
	ds_replica_stats(r, &st);
	assert_int_equal(st.staged_bytes, 4608);
	assert_int_equal(st.base_bytes, 8192);
	assert_true(file_hash(p) == before);
	ds_replica_discard(r);
	ds_replica_stats(r, &st);
	assert_int_equal(st.staged_bytes, 0);
	assert_int_equal(st.applied_bytes, 0);
	assert_true(file_hash(p) == before);
	/* The next epoch starts clean; an empty commit changes nothing. */
	put_ok(r, 2, DS_KIND_EPOCH, 0, 512, 'z');
	ds_replica_discard(r);
	assert_int_equal(ds_replica_commit(r, 2), 0);
	ds_replica_stats(r, &st);
	assert_int_equal(st.committed, 2);
	assert_true(file_hash(p) == before);
	ds_replica_free(r);
	ds_replica_free(NULL);
}

static void test_replica_commit_order(void **state)
{
	char p[PATH_MAX];
	struct ds_replica_stats st;
	struct ds_replica *r;

	(void)state;
	r = replica("order.img", DISK, p);
	put_ok(r, 7, DS_KIND_EPOCH, 0, 8192, '1');
	put_ok(r, 7, DS_KIND_EPOCH, 512, 1024, '2');
	put_ok(r, 7, DS_KIND_EPOCH, 1024, 512, '3');
	expect_image(p, 0, 8192, 0);
	assert_int_equal(ds_replica_commit(r, 7), 0);
	expect_image(p, 0, 512, '1');
	expect_image(p, 512, 512, '2');
	expect_image(p, 1024, 512, '3');
	expect_image(p, 1536, 8192 - 1536, '1');
	ds_replica_stats(r, &st);
	assert_int_equal(st.staged_bytes, 0);
	assert_int_equal(st.applied_bytes, 8192 + 1024 + 512);
	assert_int_equal(st.committed, 7);
	ds_replica_free(r);
}

static void test_replica_other_epoch(void **state)
{
	char p[PATH_MAX], err[DS_ERR_MAX];
	struct ds_replica_stats st;
	struct ds_replica *r;

	(void)state;
	r = replica("other.img", DISK, p);
	put_ok(r, 3, DS_KIND_EPOCH, 0, 512, 'a');
	assert_int_equal(put_rec(r, 4, DS_KIND_EPOCH, 512, 512, 'b', err), -EPROTO);
	assert_string_equal(err, "DISK_WRITE of epoch 4 while epoch 3 is "
			    "staged");
	assert_int_equal(ds_replica_commit(r, 4), -EPROTO);
	ds_replica_stats(r, &st);
	assert_int_equal(st.staged_bytes, 512);
	assert_int_equal(st.committed, 0);
	/* A base record is no epoch's: it goes through meanwhile. */
	put_ok(r, 4, DS_KIND_BASE, 4096, 512, 'c');
	assert_int_equal(ds_replica_commit(r, 3), 0);
	put_ok(r, 4, DS_KIND_EPOCH, 512, 512, 'b');
	assert_int_equal(ds_replica_commit(r, 4), 0);
	expect_image(p, 0, 512, 'a');
	expect_image(p, 512, 512, 'b');
	expect_image(p, 4096, 512, 'c');
	ds_replica_free(r);
}

/* Nothing of a body that fails to decode reaches the stage or the image. */
static void test_replica_bad_record(void **state)
{
	static uint8_t body[DS_WRITE_HEADER + 4096 + 512];
	char p[PATH_MAX], err[DS_ERR_MAX];
	struct ds_replica_stats st;
	struct ds_replica *r;
	uint64_t before;
	size_t len;

	(void)state;
	r = replica("bad.img", DISK, p);
	before = file_hash(p);
	len = good_body(body, DISK - 4096, 4096);
	put_be32(body + 4, 2);
	assert_int_equal(ds_replica_recv(r, 1, body, len, err, sizeof(err)),
			 -EBADMSG);
	assert_non_null(strstr(err, "kind 2"));
	put_be32(body + 4, DS_KIND_BASE);
	put_be64(body + 8, DISK);
	assert_int_equal(ds_replica_recv(r, 1, body, len, err, sizeof(err)),
			 -EBADMSG);
	put_be64(body + 8, 0);
	assert_int_equal(ds_replica_recv(r, 1, body, len - 1, err, sizeof(err)),
			 -EBADMSG);
	assert_int_equal(ds_replica_recv(r, 1, body, 10, err, sizeof(err)),
			 -EBADMSG);
	put_be32(body + 4, DS_KIND_EPOCH);
	assert_int_equal(ds_replica_recv(r, 1, body, len + 1, err, sizeof(err)),
			 -EBADMSG);
	ds_replica_stats(r, &st);
	assert_int_equal(st.staged_bytes + st.base_bytes, 0);
	assert_int_equal(ds_replica_commit(r, 1), 0);
	assert_true(file_hash(p) == before);
	ds_replica_free(r);
}

static void test_replica_open(void **state)
{
	char p[PATH_MAX], err[DS_ERR_MAX], want[PATH_MAX + 64];
	struct ds_replica *r = NULL;
	struct stat st;

	(void)state;
	r = replica("open.img", DISK, p);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_size, DISK);
	assert_int_equal(st.st_mode & 0777, 0600);
	put_ok(r, 0, DS_KIND_BASE, 512, 512, 'k');
	ds_replica_free(r);

	r = NULL;
	assert_int_equal(ds_replica_open(p, 2 * DISK, &r, err, sizeof(err)),
			 -EEXIST);
	assert_null(r);
	snprintf(want, sizeof(want), "%s is 1048576 bytes, not the disk's "
		 "2097152", p);
	assert_string_equal(err, want);
	assert_int_equal(ds_replica_open(p, DISK, &r, err, sizeof(err)), 0);
	expect_image(p, 512, 512, 'k');   /* kept, not truncated */
	ds_replica_free(r);

	assert_int_equal(ds_replica_open(p, 1000, &r, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "1000"));
	assert_int_equal(ds_replica_open(p, 0, &r, err, sizeof(err)), -EINVAL);
	assert_true(ds_replica_open(g_dir, DISK, &r, err, sizeof(err)) < 0);
	assert_int_equal(ds_replica_open(at(p, "no/such/dir"), DISK, &r, err,
					 sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "no/such/dir"));
}

static void test_replica_reset(void **state)
{
	char p[PATH_MAX];
	struct ds_replica_stats st;
	struct ds_replica *r;
	struct stat sb;
	size_t len;
	uint8_t *img;

	(void)state;
	r = replica("reset.img", DISK, p);
	put_ok(r, 0, DS_KIND_BASE, 0, 8192, 0x5a);
	put_ok(r, 1, DS_KIND_EPOCH, 0, 512, 0x11);
	assert_int_equal(ds_replica_commit(r, 1), 0);
	put_ok(r, 2, DS_KIND_EPOCH, DISK - 512, 512, 0x22);
	assert_int_equal(ds_replica_reset(r), 0);
	ds_replica_stats(r, &st);
	assert_int_equal(st.staged_bytes, 0);
	/* The dropped stage is not applied by a later commit either. */
	assert_int_equal(ds_replica_commit(r, 2), 0);
	assert_int_equal(stat(p, &sb), 0);
	assert_int_equal(sb.st_size, DISK);
	img = slurp(p, &len);
	assert_int_equal(len, DISK);
	assert_true(all_bytes(img, len, 0));
	free(img);
	ds_replica_free(r);
}

/* ---- end to end --------------------------------------------------------- */

#define E2E_DISK (8ull * MiB)
#define E2E_EPOCHS 20

static void test_end_to_end(void **state)
{
	char src[PATH_MAX], p[PATH_MAX];
	uint8_t *buf = malloc(3 * MiB);
	struct ds_log_stats st;
	struct ds_replica *r;
	struct ds_log *log;
	uint64_t seed = 0x1234567, sent = 0;
	struct sink s;
	int fd, writes = 0;

	(void)state;
	assert_non_null(buf);
	fd = make_file(at(src, "e2e.src"), E2E_DISK);
	/* Some contents before replication starts, for the base copy. */
	for (int i = 0; i < 8; i++) {
		uint64_t off = rnd(&seed) % (E2E_DISK / MiB) * MiB;

		rnd_fill(&seed, buf, 256 * 1024);
		assert_int_equal(pwrite(fd, buf, 256 * 1024, (off_t)off),
				 256 * 1024);
	}
	assert_int_equal(ds_log_new(E2E_DISK, &log), 0);
	r = replica("e2e.img", E2E_DISK, p);
	assert_int_equal(ds_replica_reset(r), 0);
	s = (struct sink){ r, 0 };
	assert_int_equal(ds_base_emit(fd, E2E_DISK, sink_emit, &s, NULL), 0);
	assert_int_equal(ds_replica_commit(r, 0), 0);
	assert_true(file_hash(src) == file_hash(p));

	for (uint64_t e = 1; e <= E2E_EPOCHS; e++) {
		int n = 1 + (int)(rnd(&seed) % 40);

		for (int i = 0; i < n; i++, writes++) {
			size_t max = rnd(&seed) % 10 ? 64 * 1024 : 3 * MiB;

			assert_int_equal(random_write(log, fd, &seed, 0,
						      E2E_DISK, max, buf), 0);
		}
		assert_int_equal(ds_log_cut(log, e), 0);
		/* Every third epoch, the standby lags by one. */
		if (e % 3 == 0)
			continue;
		while (sent < e)
			ship(log, r, ++sent);
		assert_true(file_hash(src) == file_hash(p));
	}
	while (sent < E2E_EPOCHS)
		ship(log, r, ++sent);
	assert_true(file_hash(src) == file_hash(p));
	ds_log_stats(log, &st);
	assert_int_equal(st.writes, writes);
	assert_int_equal(st.pending_epochs + st.pending_bytes, 0);
	ds_replica_free(r);
	ds_log_free(log);
	close(fd);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_encode_refuses),
		cmocka_unit_test(test_decode_truncated),
		cmocka_unit_test(test_decode_bad_disk),
		cmocka_unit_test(test_decode_bad_kind),
		cmocka_unit_test(test_decode_misaligned),
		cmocka_unit_test(test_decode_length_range),
		cmocka_unit_test(test_decode_past_end),
		cmocka_unit_test(test_decode_reserved),
		cmocka_unit_test(test_decode_trailing),
		cmocka_unit_test(test_log_args),
		cmocka_unit_test(test_log_epochs),
		cmocka_unit_test(test_log_cut_order),
		cmocka_unit_test(test_log_emit_range),
		cmocka_unit_test(test_log_emit_stops),
		cmocka_unit_test(test_log_ack_during_emit),
		cmocka_unit_test(test_log_overlap_order),
		cmocka_unit_test(test_log_split),
		cmocka_unit_test(test_log_acked_frees),
		cmocka_unit_test(test_log_chunk_edges),
		cmocka_unit_test(test_log_cap),
		cmocka_unit_test(test_log_default_cap),
		cmocka_unit_test(test_log_concurrent),
		cmocka_unit_test(test_base_emit),
		cmocka_unit_test(test_base_errors),
		cmocka_unit_test(test_replica_discard),
		cmocka_unit_test(test_replica_commit_order),
		cmocka_unit_test(test_replica_other_epoch),
		cmocka_unit_test(test_replica_bad_record),
		cmocka_unit_test(test_replica_open),
		cmocka_unit_test(test_replica_reset),
		cmocka_unit_test(test_end_to_end),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
