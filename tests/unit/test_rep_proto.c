/*
 * test_rep_proto.c - the replication record bodies (replicator/rep_proto.c,
 * layouts in docs/replication.md "Records").
 *
 * Every body is encoded from fixed values and compared byte for byte with
 * the layout written out by hand from the spec (not from the encoder), then
 * decoded back.  Then each decoder must refuse, with -EBADMSG and a message
 * that names the record, the field and the bad value:
 *  - the body cut at every length below the whole (TESTING S3: truncation
 *    at every offset) and one or eight trailing bytes;
 *  - unknown roles, modes, statuses, phases and END flags;
 *  - texts with a byte outside printable ASCII, or longer than their limit
 *    (also a length field far past the body: oversize lengths);
 *  - an END whose base is not below its epoch, epoch 0, FULL with a base,
 *    base 0 without FULL;
 *  - nonzero reserved fields.
 * Last, the END digest term against the formula in docs/replication.md and
 * the name tables of roles, modes and drill phases.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "expect_msg.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "rep_proto.h"
#include "wire.h"

/* ---- spec helpers, independent of the codec ----------------------------- */

static size_t be32_at(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (24 - 8 * i));
	return 4;
}

static size_t be64_at(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (56 - 8 * i));
	return 8;
}

/* A decoder under test, with a uniform signature. */
typedef int (*decode_fn)(const uint8_t *body, size_t len, void *out,
			 char *err, size_t errlen);

static int dec_hello(const uint8_t *b, size_t n, void *o, char *e, size_t el)
{
	return rep_hello_decode(b, n, o, e, el);
}

static int dec_welcome(const uint8_t *b, size_t n, void *o, char *e, size_t el)
{
	return rep_welcome_decode(b, n, o, e, el);
}

static int dec_end(const uint8_t *b, size_t n, void *o, char *e, size_t el)
{
	return rep_epoch_end_decode(b, n, o, e, el);
}

static int dec_ack(const uint8_t *b, size_t n, void *o, char *e, size_t el)
{
	return rep_ack_decode(b, n, o, e, el);
}

static int dec_heartbeat(const uint8_t *b, size_t n, void *o, char *e,
			 size_t el)
{
	return rep_heartbeat_decode(b, n, o, e, el);
}

static int dec_drill(const uint8_t *b, size_t n, void *o, char *e, size_t el)
{
	return rep_drill_decode(b, n, o, e, el);
}

static int dec_handover(const uint8_t *b, size_t n, void *o, char *e,
			size_t el)
{
	return rep_handover_decode(b, n, o, e, el);
}

/* Big enough for any decoder's output struct. */
union any_out {
	struct rep_hello hello;
	struct rep_welcome welcome;
	struct rep_epoch_end end;
	struct rep_ack ack;
	struct rep_heartbeat hb;
	struct rep_drill drill;
	struct rep_handover handover;
};

/*
 * Decoding must fail with -EBADMSG and a message that contains every one
 * of the given fragments (record name, field, value).  NULL ends the list.
 */
static void expect_refused_(const char *file, int line, decode_fn dec,
			    const uint8_t *body, size_t len, ...)
{
	union any_out out;
	char err[WIRE_ERR_MAX], what[48];
	va_list ap;
	int rc;

	memset(err, 0, sizeof(err));
	rc = dec(body, len, &out, err, sizeof(err));
	snprintf(what, sizeof(what), "decode of %zu bytes", len);
	va_start(ap, len);
	expect_msg_v(file, line, what, rc, -EBADMSG, err, ap);
	va_end(ap);
}

#define expect_refused(dec, body, len, ...) \
	expect_refused_(__FILE__, __LINE__, dec, body, len, __VA_ARGS__, \
			(const char *)NULL)

static void expect_ok_(const char *file, int line, decode_fn dec,
		       const uint8_t *body, size_t len, void *out)
{
	char err[WIRE_ERR_MAX] = "";
	int rc = dec(body, len, out, err, sizeof(err));

	if (rc != 0) {
		print_error("decode of %zu bytes refused: %d (%s)\n", len, rc,
			    err);
		_fail(file, line);
	}
}

#define expect_ok(dec, body, len, out) \
	expect_ok_(__FILE__, __LINE__, dec, body, len, out)

/*
 * Cut a valid body at every length below the whole, then add trailing
 * bytes: each must be refused, naming the record; a cut one says
 * "truncated", a long one "trailing bytes".
 */
static void check_lengths(decode_fn dec, const uint8_t *body, size_t len,
			  const char *record)
{
	uint8_t *b = malloc(len + 8);

	assert_non_null(b);
	for (size_t n = 0; n < len; n++) {
		memcpy(b, body, n); /* a fresh copy of exactly n bytes */
		expect_refused(dec, b, n, record, "truncated");
	}
	memcpy(b, body, len);
	memset(b + len, 0, 8);
	expect_refused(dec, b, len + 1, record, "1 trailing bytes");
	expect_refused(dec, b, len + 8, record, "8 trailing bytes");
	b[len] = 0x41;
	expect_refused(dec, b, len + 1, record, "trailing");
	free(b);
}

/* An encoding (n bytes in buf) is exactly the spec's layout `bytes`. */
static void expect_layout(const uint8_t *buf, size_t n, const uint8_t *bytes,
			  size_t len)
{
	assert_int_equal(n, len);
	assert_memory_equal(buf, bytes, n);
}

/* n bytes in buf decode to a struct equal to `want` (`size` bytes). */
static void expect_decodes_to(decode_fn dec, const uint8_t *buf, size_t n,
			      const void *want, size_t size)
{
	union any_out back;

	expect_ok(dec, buf, n, &back);
	assert_memory_equal(&back, want, size);
}

/*
 * A fixed struct `fix` encodes (with `enc`) to exactly the spec's `bytes`,
 * and those decode (with `dec`) back to `fix`.
 */
#define expect_fixed(enc, dec, fix, bytes) \
	do { \
		uint8_t b_[REP_BODY_MAX]; \
		\
		expect_layout(b_, enc(&(fix), b_), bytes, sizeof(bytes)); \
		expect_decodes_to(dec, bytes, sizeof(bytes), &(fix), \
				  sizeof(fix)); \
	} while (0)

/*
 * A body of `fixed`'s first 44 bytes (a HELLO's or WELCOME's fields
 * before the text) and a text of len bytes of c; returns its length.
 */
static size_t with_text(uint8_t *b, const uint8_t *fixed, uint32_t len,
			char c)
{
	memcpy(b, fixed, 44);
	be32_at(b + 44, len);
	memset(b + 48, c, len);
	return 48 + len;
}

/* ---- fixed bodies ------------------------------------------------------- */

static const struct rep_hello hello_fix = {
	.role = REP_ROLE_PRIMARY,
	.mode = REP_MODE_HYBRID,
	.generation = 0x0102030405060708ull,
	.session = 0x1112131415161718ull,
	.epoch = 0x2122232425262728ull,
	.mem_bytes = 16ull << 20,
	.vcpus = 4,
	.vm = "kv1",
};

/* docs/replication.md: u32 role, u32 mode, u64 generation, u64 session,
 * u64 epoch, u64 mem_bytes, u32 vcpus, text vm. */
static const uint8_t hello_bytes[] = {
	0x00, 0x00, 0x00, 0x01,                         /* role primary */
	0x00, 0x00, 0x00, 0x02,                         /* mode hybrid */
	0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, /* generation */
	0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, /* session */
	0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, /* epoch */
	0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, /* mem_bytes 16 MiB */
	0x00, 0x00, 0x00, 0x04,                         /* vcpus */
	0x00, 0x00, 0x00, 0x03, 'k', 'v', '1',          /* vm */
};

static const struct rep_welcome welcome_fix = {
	.status = REP_WELCOME_SUPERSEDED,
	.role = REP_ROLE_STANDBY,
	.generation = 3,
	.session = 0xa1a2a3a4a5a6a7a8ull,
	.committed = 0x99,
	.reason = "ok then",
};

static const uint8_t welcome_bytes[] = {
	0x00, 0x00, 0x00, 0x01,                         /* status superseded */
	0x00, 0x00, 0x00, 0x02,                         /* role standby */
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, /* generation */
	0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, /* session */
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x99, /* committed */
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* u64 0 */
	0x00, 0x00, 0x00, 0x00,                         /* u32 0 */
	0x00, 0x00, 0x00, 0x07, 'o', 'k', ' ', 't', 'h', 'e', 'n',
};

static const struct rep_epoch_end end_fix = {
	.epoch = 7,
	.base = 6,
	.records = 5,
	.digest = 0xdeadbeefcafef00dull,
	.pages = 3,
	.disk_bytes = 0x1000,
	.guest_clock_ns = 0x0102030405060708ull,
	.flags = 0,
};

static const uint8_t end_bytes[] = {
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, /* epoch */
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x06, /* base */
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, /* records */
	0xde, 0xad, 0xbe, 0xef, 0xca, 0xfe, 0xf0, 0x0d, /* digest */
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, /* pages */
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, /* disk_bytes */
	0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, /* guest_clock_ns */
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* flags */
};

static const struct rep_ack ack_fix = { .epoch = 0x42, .apply_ns = 0x1234 };

static const uint8_t ack_bytes[] = {
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x42,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x12, 0x34,
};

static const struct rep_heartbeat hb_fix = {
	.generation = 2, .epoch = 0x300, .sent_ns = 0x0a0b0c0d0e0f1011ull,
	.role = REP_ROLE_STANDBY, .flags = 0,
};

static const uint8_t hb_bytes[] = {
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, /* generation */
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x00, /* epoch */
	0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, /* sent_ns */
	0x00, 0x00, 0x00, 0x02,                         /* role */
	0x00, 0x00, 0x00, 0x00,                         /* flags */
};

static const struct rep_drill drill_fix = { .phase = REP_PHASE_SENT };

static const uint8_t drill_bytes[] = {
	0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00,
};

static const struct rep_handover ho_fix = { .epoch = 0x77, .generation = 5 };

static const uint8_t ho_bytes[] = {
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x77,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05,
};

/* ---- round trips -------------------------------------------------------- */

static void test_hello_bytes(void **state)
{
	uint8_t buf[REP_BODY_MAX];
	struct rep_hello h;
	size_t n;

	(void)state;
	expect_fixed(rep_hello_encode, dec_hello, hello_fix, hello_bytes);

	/* the shortest (no name: 48, the record's minimum) and the longest
	 * (a 63-byte name: 111, its maximum) */
	memset(&h, 0, sizeof(h));
	h.role = REP_ROLE_STANDBY;
	assert_int_equal(rep_hello_encode(&h, buf), 48);
	expect_ok(dec_hello, buf, 48, &h);
	assert_string_equal(h.vm, "");
	memset(h.vm, 'x', REP_NAME_MAX);
	h.vm[REP_NAME_MAX] = '\0';
	h.vm[0] = ' ';
	h.vm[1] = '~';
	n = rep_hello_encode(&h, buf);
	assert_int_equal(n, 111);
	expect_decodes_to(dec_hello, buf, n, &h, sizeof(h));
}

static void test_welcome_bytes(void **state)
{
	uint8_t buf[REP_BODY_MAX];
	struct rep_welcome w;
	size_t n;

	(void)state;
	expect_fixed(rep_welcome_encode, dec_welcome, welcome_fix,
		     welcome_bytes);

	memset(&w, 0, sizeof(w));
	assert_int_equal(rep_welcome_encode(&w, buf), 48);
	expect_ok(dec_welcome, buf, 48, &w);
	memset(w.reason, 'r', REP_REASON_MAX);
	w.reason[REP_REASON_MAX] = '\0';
	w.status = REP_WELCOME_REFUSED;
	n = rep_welcome_encode(&w, buf);
	assert_int_equal(n, 303);
	assert_true(n <= REP_BODY_MAX);
	expect_decodes_to(dec_welcome, buf, n, &w, sizeof(w));
}

static void test_end_bytes(void **state)
{
	uint8_t buf[REP_BODY_MAX];
	struct rep_epoch_end f = {
		.epoch = 1, .base = 0, .flags = REP_END_FULL,
		.records = UINT64_MAX, .digest = UINT64_MAX,
	};
	size_t n;

	(void)state;
	assert_int_equal(rep_epoch_end_encode(&end_fix, buf), 64);
	expect_fixed(rep_epoch_end_encode, dec_end, end_fix, end_bytes);

	/* the full epoch: base 0, flag 1 */
	n = rep_epoch_end_encode(&f, buf);
	assert_int_equal(buf[63], 1);
	expect_decodes_to(dec_end, buf, n, &f, sizeof(f));
	/* the largest epoch on the largest base */
	f = (struct rep_epoch_end){ .epoch = UINT64_MAX,
				    .base = UINT64_MAX - 1 };
	n = rep_epoch_end_encode(&f, buf);
	expect_decodes_to(dec_end, buf, n, &f, sizeof(f));
}

static void test_small_bodies_bytes(void **state)
{
	uint8_t buf[REP_BODY_MAX];
	struct rep_drill d;
	size_t n;

	(void)state;
	expect_fixed(rep_ack_encode, dec_ack, ack_fix, ack_bytes);
	expect_fixed(rep_heartbeat_encode, dec_heartbeat, hb_fix, hb_bytes);

	n = rep_drill_encode(&drill_fix, buf);
	expect_layout(buf, n, drill_bytes, sizeof(drill_bytes));
	expect_ok(dec_drill, drill_bytes, n, &d);
	assert_int_equal(d.phase, REP_PHASE_SENT);
	assert_int_equal(d.reserved, 0);
	/* the encoder writes the reserved word as 0 whatever the struct says */
	d = (struct rep_drill){ .phase = REP_PHASE_RELEASED, .reserved = 9 };
	n = rep_drill_encode(&d, buf);
	expect_ok(dec_drill, buf, n, &d);
	assert_int_equal(d.phase, REP_PHASE_RELEASED);
	assert_int_equal(d.reserved, 0);

	expect_fixed(rep_handover_encode, dec_handover, ho_fix, ho_bytes);
}

/* Every role, mode, status and phase the spec defines decodes as itself. */
static void test_every_known_value(void **state)
{
	uint8_t buf[REP_BODY_MAX];
	size_t n;

	(void)state;
	for (uint32_t role = 0; role <= REP_ROLE_STANDBY; role++)
		for (uint32_t mode = 0; mode <= REP_MODE_HYBRID; mode++) {
			struct rep_hello h = hello_fix, back;

			h.role = role;
			h.mode = mode;
			n = rep_hello_encode(&h, buf);
			expect_ok(dec_hello, buf, n, &back);
			assert_int_equal(back.role, role);
			assert_int_equal(back.mode, mode);
		}
	for (uint32_t st = 0; st <= REP_WELCOME_REFUSED; st++)
		for (uint32_t role = 0; role <= REP_ROLE_STANDBY; role++) {
			struct rep_welcome w = welcome_fix, back;

			w.status = st;
			w.role = role;
			n = rep_welcome_encode(&w, buf);
			expect_ok(dec_welcome, buf, n, &back);
			assert_int_equal(back.status, st);
			assert_int_equal(back.role, role);
		}
	for (uint32_t role = 0; role <= REP_ROLE_STANDBY; role++) {
		struct rep_heartbeat h = hb_fix, back;

		h.role = role;
		n = rep_heartbeat_encode(&h, buf);
		expect_ok(dec_heartbeat, buf, n, &back);
		assert_int_equal(back.role, role);
	}
	for (uint32_t ph = 0; ph < REP_PHASE_NR; ph++) {
		struct rep_drill d = { .phase = ph }, back;

		n = rep_drill_encode(&d, buf);
		expect_ok(dec_drill, buf, n, &back);
		assert_int_equal(back.phase, ph);
	}
}

/* ---- truncation and trailing bytes -------------------------------------- */

static void test_truncation_every_length(void **state)
{
	uint8_t buf[REP_BODY_MAX];
	struct rep_hello h = hello_fix;
	struct rep_welcome w = welcome_fix;

	(void)state;
	check_lengths(dec_hello, hello_bytes, sizeof(hello_bytes), "REP_HELLO");
	check_lengths(dec_welcome, welcome_bytes, sizeof(welcome_bytes),
		      "REP_WELCOME");
	check_lengths(dec_end, end_bytes, sizeof(end_bytes), "REP_EPOCH_END");
	check_lengths(dec_ack, ack_bytes, sizeof(ack_bytes), "REP_ACK");
	check_lengths(dec_heartbeat, hb_bytes, sizeof(hb_bytes),
		      "REP_HEARTBEAT");
	check_lengths(dec_drill, drill_bytes, sizeof(drill_bytes),
		      "REP_DRILL");
	check_lengths(dec_handover, ho_bytes, sizeof(ho_bytes),
		      "REP_HANDOVER");
	/* the longest texts too, and the empty ones */
	memset(h.vm, 'v', REP_NAME_MAX);
	h.vm[REP_NAME_MAX] = '\0';
	check_lengths(dec_hello, buf, rep_hello_encode(&h, buf), "REP_HELLO");
	h.vm[0] = '\0';
	check_lengths(dec_hello, buf, rep_hello_encode(&h, buf), "REP_HELLO");
	memset(w.reason, 'r', REP_REASON_MAX);
	w.reason[REP_REASON_MAX] = '\0';
	check_lengths(dec_welcome, buf, rep_welcome_encode(&w, buf),
		      "REP_WELCOME");
	w.reason[0] = '\0';
	check_lengths(dec_welcome, buf, rep_welcome_encode(&w, buf),
		      "REP_WELCOME");
}

/* A text whose length says more than there is. */
static void test_text_length_past_body(void **state)
{
	uint8_t b[sizeof(hello_bytes)];
	uint8_t w[sizeof(welcome_bytes)];

	(void)state;
	memcpy(b, hello_bytes, sizeof(b));
	be32_at(b + 44, 4); /* "kv1" is 3 */
	expect_refused(dec_hello, b, sizeof(b), "REP_HELLO", "truncated");
	be32_at(b + 44, 2); /* one byte left over */
	expect_refused(dec_hello, b, sizeof(b), "REP_HELLO", "1 trailing");
	/* oversize: refused on the length, before anything is read */
	be32_at(b + 44, UINT32_MAX);
	expect_refused(dec_hello, b, sizeof(b), "REP_HELLO", "vm name",
		       "length 4294967295 > 63");
	be32_at(b + 44, 64);
	expect_refused(dec_hello, b, sizeof(b), "REP_HELLO", "vm name",
		       "length 64 > 63");
	memcpy(w, welcome_bytes, sizeof(w));
	be32_at(w + 44, 0x80000000u);
	expect_refused(dec_welcome, w, sizeof(w), "REP_WELCOME", "reason",
		       "length 2147483648 > 255");
	be32_at(w + 44, 256);
	expect_refused(dec_welcome, w, sizeof(w), "REP_WELCOME", "reason",
		       "length 256 > 255");
	be32_at(w + 44, 8);
	expect_refused(dec_welcome, w, sizeof(w), "REP_WELCOME", "truncated");
}

/* Over-long texts with every byte present. */
static void test_text_too_long(void **state)
{
	uint8_t b[64 + 512];
	size_t n;

	(void)state;
	n = with_text(b, hello_bytes, REP_NAME_MAX + 1, 'a');
	expect_refused(dec_hello, b, n, "REP_HELLO", "vm name",
		       "length 64 > 63");
	/* exactly the limit is fine */
	be32_at(b + 44, REP_NAME_MAX);
	{
		struct rep_hello h;

		expect_ok(dec_hello, b, n - 1, &h);
		assert_int_equal(strlen(h.vm), REP_NAME_MAX);
	}
	n = with_text(b, welcome_bytes, REP_REASON_MAX + 1, 'b');
	expect_refused(dec_welcome, b, n, "REP_WELCOME", "reason",
		       "length 256 > 255");
}

/* Texts are printable ASCII: 0x20..0x7e, no NUL. */
static void test_text_bytes(void **state)
{
	static const uint8_t bad[] = { 0x00, 0x01, 0x09, 0x0a, 0x1f, 0x7f,
				       0x80, 0xc3, 0xff };
	uint8_t b[sizeof(welcome_bytes)];
	char want[32];

	(void)state;
	for (size_t i = 0; i < sizeof(bad); i++) {
		memcpy(b, hello_bytes, sizeof(hello_bytes));
		b[48 + 1] = bad[i];
		snprintf(want, sizeof(want), "has byte 0x%02x at 1", bad[i]);
		expect_refused(dec_hello, b, sizeof(hello_bytes), "REP_HELLO",
			       "vm name", want);
		memcpy(b, welcome_bytes, sizeof(welcome_bytes));
		b[48 + 6] = bad[i];
		snprintf(want, sizeof(want), "has byte 0x%02x at 6", bad[i]);
		expect_refused(dec_welcome, b, sizeof(welcome_bytes),
			       "REP_WELCOME", "reason", want);
	}
	/* the edges of the printable range are accepted */
	memcpy(b, hello_bytes, sizeof(hello_bytes));
	b[48] = 0x20;
	b[50] = 0x7e;
	{
		struct rep_hello h;

		expect_ok(dec_hello, b, sizeof(hello_bytes), &h);
		assert_string_equal(h.vm, " v~");
	}
}

/* ---- unknown values ----------------------------------------------------- */

static void test_unknown_values(void **state)
{
	static const uint32_t roles[] = { 3, 4, 0x100, 0x80000000u,
					  UINT32_MAX };
	uint8_t b[REP_BODY_MAX];
	char want[48];

	(void)state;
	for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++) {
		snprintf(want, sizeof(want), "role %u unknown", roles[i]);
		memcpy(b, hello_bytes, sizeof(hello_bytes));
		be32_at(b, roles[i]);
		expect_refused(dec_hello, b, sizeof(hello_bytes), "REP_HELLO",
			       want);
		memcpy(b, welcome_bytes, sizeof(welcome_bytes));
		be32_at(b + 4, roles[i]);
		expect_refused(dec_welcome, b, sizeof(welcome_bytes),
			       "REP_WELCOME", want);
		memcpy(b, hb_bytes, sizeof(hb_bytes));
		be32_at(b + 24, roles[i]);
		expect_refused(dec_heartbeat, b, sizeof(hb_bytes),
			       "REP_HEARTBEAT", want);

		snprintf(want, sizeof(want), "mode %u unknown", roles[i]);
		memcpy(b, hello_bytes, sizeof(hello_bytes));
		be32_at(b + 4, roles[i]);
		expect_refused(dec_hello, b, sizeof(hello_bytes), "REP_HELLO",
			       want);

		snprintf(want, sizeof(want), "status %u unknown", roles[i]);
		memcpy(b, welcome_bytes, sizeof(welcome_bytes));
		be32_at(b, roles[i]);
		expect_refused(dec_welcome, b, sizeof(welcome_bytes),
			       "REP_WELCOME", want);
	}
	for (uint32_t ph = REP_PHASE_NR; ph < REP_PHASE_NR + 3; ph++) {
		snprintf(want, sizeof(want), "phase %u unknown", ph);
		memcpy(b, drill_bytes, sizeof(drill_bytes));
		be32_at(b, ph);
		expect_refused(dec_drill, b, sizeof(drill_bytes), "REP_DRILL",
			       want);
	}
	memcpy(b, drill_bytes, sizeof(drill_bytes));
	be32_at(b, UINT32_MAX);
	expect_refused(dec_drill, b, sizeof(drill_bytes), "REP_DRILL",
		       "phase 4294967295 unknown");
	/* END flags: only bit 0 (FULL) is defined */
	for (int bit = 1; bit < 64; bit++) {
		uint64_t flags = 1ull << bit;

		snprintf(want, sizeof(want), "flags 0x%llx unknown",
			 (unsigned long long)flags);
		memcpy(b, end_bytes, sizeof(end_bytes));
		be64_at(b + 56, flags);
		expect_refused(dec_end, b, sizeof(end_bytes), "REP_EPOCH_END",
			       want);
	}
	memcpy(b, end_bytes, sizeof(end_bytes));
	be64_at(b + 8, 0); /* a full epoch, with a stray flag */
	be64_at(b + 56, REP_END_FULL | 2);
	expect_refused(dec_end, b, sizeof(end_bytes), "REP_EPOCH_END",
		       "flags 0x3 unknown");
}

/* ---- END's epoch rules -------------------------------------------------- */

static void end_with(uint8_t *b, uint64_t epoch, uint64_t base, uint64_t flags)
{
	memcpy(b, end_bytes, sizeof(end_bytes));
	be64_at(b, epoch);
	be64_at(b + 8, base);
	be64_at(b + 56, flags);
}

static void test_end_epoch_rules(void **state)
{
	uint8_t b[64];
	struct rep_epoch_end e;

	(void)state;
	/* base must be below epoch */
	end_with(b, 5, 5, 0);
	expect_refused(dec_end, b, 64, "REP_EPOCH_END", "epoch 5 on base 5");
	end_with(b, 5, 6, 0);
	expect_refused(dec_end, b, 64, "REP_EPOCH_END", "epoch 5 on base 6");
	end_with(b, 5, UINT64_MAX, 0);
	expect_refused(dec_end, b, 64, "REP_EPOCH_END",
		       "epoch 5 on base 18446744073709551615");
	/* epoch 0 is never an epoch */
	end_with(b, 0, 0, REP_END_FULL);
	expect_refused(dec_end, b, 64, "REP_EPOCH_END", "epoch 0 on base 0");
	end_with(b, 0, 0, 0);
	expect_refused(dec_end, b, 64, "REP_EPOCH_END", "epoch 0");
	/* FULL iff base 0 */
	end_with(b, 5, 3, REP_END_FULL);
	expect_refused(dec_end, b, 64, "REP_EPOCH_END", "full epoch",
		       "base 3");
	end_with(b, 5, 0, 0);
	expect_refused(dec_end, b, 64, "REP_EPOCH_END", "full epoch",
		       "base 0");
	/* and the good ones around them */
	end_with(b, 5, 4, 0);
	expect_ok(dec_end, b, 64, &e);
	end_with(b, 5, 1, 0);
	expect_ok(dec_end, b, 64, &e);
	end_with(b, 5, 0, REP_END_FULL);
	expect_ok(dec_end, b, 64, &e);
	assert_int_equal(e.flags, REP_END_FULL);
	end_with(b, 1, 0, REP_END_FULL);
	expect_ok(dec_end, b, 64, &e);
	/* the counters are not limited by the decoder */
	end_with(b, 9, 8, 0);
	memset(b + 16, 0xff, 40);
	expect_ok(dec_end, b, 64, &e);
	assert_true(e.records == UINT64_MAX && e.digest == UINT64_MAX &&
		    e.pages == UINT64_MAX && e.disk_bytes == UINT64_MAX &&
		    e.guest_clock_ns == UINT64_MAX);
}

/* ---- reserved fields ---------------------------------------------------- */

static void test_reserved_fields(void **state)
{
	uint8_t b[REP_BODY_MAX];
	struct rep_drill d;

	(void)state;
	/* WELCOME: u64 0 at 32, u32 0 at 40; any byte nonzero is refused */
	for (size_t off = 32; off < 44; off++) {
		memcpy(b, welcome_bytes, sizeof(welcome_bytes));
		b[off] = 0x01;
		expect_refused(dec_welcome, b, sizeof(welcome_bytes),
			       "REP_WELCOME", "reserved");
		b[off] = 0x80;
		expect_refused(dec_welcome, b, sizeof(welcome_bytes),
			       "REP_WELCOME", "reserved");
	}
	/* DRILL: u32 0 at 4 (a known phase with a reserved word set) */
	for (size_t off = 4; off < 8; off++) {
		memcpy(b, drill_bytes, sizeof(drill_bytes));
		b[off] = 0x01;
		/* See the report: the message names the phase, not the
		 * reserved word, so only the refusal is checked here. */
		expect_refused(dec_drill, b, sizeof(drill_bytes), "REP_DRILL");
	}
	memcpy(b, drill_bytes, sizeof(drill_bytes));
	expect_ok(dec_drill, b, sizeof(drill_bytes), &d);
}

/* A refusal leaves nothing half-decoded in the outputs that reset them. */
static void test_refusal_clears_output(void **state)
{
	uint8_t b[REP_BODY_MAX];
	struct rep_hello h;
	struct rep_welcome w;
	struct rep_epoch_end e;

	(void)state;
	memcpy(b, hello_bytes, sizeof(hello_bytes));
	b[50] = 0x7f;
	memset(&h, 0x5a, sizeof(h));
	assert_int_equal(rep_hello_decode(b, sizeof(hello_bytes), &h, NULL, 0),
			 -EBADMSG);
	/* whatever was read, the text never holds the refused bytes */
	assert_null(memchr(h.vm, 0x7f, sizeof(h.vm)));
	memcpy(b, welcome_bytes, sizeof(welcome_bytes));
	be32_at(b + 44, 300);
	memset(&w, 0x5a, sizeof(w));
	assert_int_equal(rep_welcome_decode(b, sizeof(welcome_bytes), &w, NULL,
					    0), -EBADMSG);
	assert_int_equal(w.reason[0], '\0');
	memset(&e, 0x5a, sizeof(e));
	assert_int_equal(rep_epoch_end_decode(end_bytes, 10, &e, NULL, 0),
			 -EBADMSG);
	/* a NULL err buffer is allowed */
	assert_int_equal(rep_ack_decode(ack_bytes, 3, &(struct rep_ack){ 0 },
					NULL, 0), -EBADMSG);
}

/* A small err buffer gets a cut message, never an overflow. */
static void test_small_err_buffer(void **state)
{
	char err[8];
	struct rep_hello h;
	uint8_t b[sizeof(hello_bytes)];

	(void)state;
	memcpy(b, hello_bytes, sizeof(b));
	be32_at(b, 9);
	memset(err, 'x', sizeof(err));
	assert_int_equal(rep_hello_decode(b, sizeof(b), &h, err, sizeof(err)),
			 -EBADMSG);
	assert_int_equal(strlen(err), sizeof(err) - 1);
	assert_memory_equal(err, "REP_HEL", 7);
}

/* ---- digest and names --------------------------------------------------- */

static void test_record_digest(void **state)
{
	static const uint8_t body[] = "some record body";
	uint64_t epoch = 0x1234, d;

	(void)state;
	/* docs/replication.md: XXH3_64bits_withSeed(body, len,
	 * epoch * 0x100000001b3 ^ type) */
	d = rep_record_digest(WIRE_REC_PAGE_CODED, epoch, body, sizeof(body));
	assert_true(d == XXH3_64bits_withSeed(body, sizeof(body),
					      epoch * 0x100000001b3ull ^
						      WIRE_REC_PAGE_CODED));
	/* type, epoch and every body byte count */
	assert_true(d != rep_record_digest(WIRE_REC_VCPU_STATE, epoch, body,
					   sizeof(body)));
	assert_true(d != rep_record_digest(WIRE_REC_PAGE_CODED, epoch + 1,
					   body, sizeof(body)));
	assert_true(d != rep_record_digest(WIRE_REC_PAGE_CODED, epoch, body,
					   sizeof(body) - 1));
	assert_true(rep_record_digest(1, 0, NULL, 0) ==
		    XXH3_64bits_withSeed(NULL, 0, 1));
}

static void test_names(void **state)
{
	static const char *const phases[] = { "none", "paused", "sending",
					      "sent", "acked", "released" };
	enum rep_phase ph;

	(void)state;
	assert_string_equal(rep_role_name(REP_ROLE_NONE), "none");
	assert_string_equal(rep_role_name(REP_ROLE_PRIMARY), "primary");
	assert_string_equal(rep_role_name(REP_ROLE_STANDBY), "standby");
	assert_string_equal(rep_role_name((enum rep_role)3), "?");
	assert_string_equal(rep_role_name((enum rep_role)-1), "?");
	assert_string_equal(rep_mode_name(REP_MODE_REMUS), "remus");
	assert_string_equal(rep_mode_name(REP_MODE_KEMARI), "kemari");
	assert_string_equal(rep_mode_name(REP_MODE_HYBRID), "hybrid");
	assert_string_equal(rep_mode_name((enum rep_mode)3), "?");
	assert_string_equal(rep_mode_name((enum rep_mode)-1), "?");

	assert_int_equal(REP_PHASE_NR, sizeof(phases) / sizeof(phases[0]));
	for (unsigned i = 0; i < REP_PHASE_NR; i++) {
		assert_string_equal(rep_phase_name((enum rep_phase)i),
				    phases[i]);
		ph = REP_PHASE_NR;
		assert_int_equal(rep_phase_parse(phases[i], &ph), 0);
		assert_int_equal(ph, i);
	}
	assert_string_equal(rep_phase_name(REP_PHASE_NR), "?");
	assert_string_equal(rep_phase_name((enum rep_phase)-1), "?");
	ph = REP_PHASE_SENT;
	assert_int_equal(rep_phase_parse("", &ph), -EINVAL);
	assert_int_equal(rep_phase_parse("Paused", &ph), -EINVAL);
	assert_int_equal(rep_phase_parse("paused ", &ph), -EINVAL);
	assert_int_equal(rep_phase_parse("pause", &ph), -EINVAL);
	assert_int_equal(rep_phase_parse("?", &ph), -EINVAL);
	assert_int_equal(rep_phase_parse("releasedx", &ph), -EINVAL);
	assert_int_equal(ph, REP_PHASE_SENT); /* untouched on failure */
}

/* ---- heartbeat flags and the drill's reserved word ---------------------- */

/* docs/replication.md: decoders refuse unknown flags; no heartbeat flag
 * is defined, yet rep_heartbeat_decode takes any. */
static void test_heartbeat_unknown_flags(void **state)
{
	uint8_t b[sizeof(hb_bytes)];

	(void)state;
	memcpy(b, hb_bytes, sizeof(b));
	be32_at(b + 28, 2);
	expect_refused(dec_heartbeat, b, sizeof(b), "REP_HEARTBEAT", "flags");
	be32_at(b + 28, 0x80000000u);
	expect_refused(dec_heartbeat, b, sizeof(b), "REP_HEARTBEAT", "flags");
}

/* A DRILL with a known phase and a nonzero reserved word is refused as
 * "phase N unknown": the message names the wrong field. */
static void test_drill_reserved_message(void **state)
{
	uint8_t b[sizeof(drill_bytes)];

	(void)state;
	memcpy(b, drill_bytes, sizeof(b));
	b[7] = 1;
	expect_refused(dec_drill, b, sizeof(b), "REP_DRILL", "reserved");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hello_bytes),
		cmocka_unit_test(test_welcome_bytes),
		cmocka_unit_test(test_end_bytes),
		cmocka_unit_test(test_small_bodies_bytes),
		cmocka_unit_test(test_every_known_value),
		cmocka_unit_test(test_truncation_every_length),
		cmocka_unit_test(test_text_length_past_body),
		cmocka_unit_test(test_text_too_long),
		cmocka_unit_test(test_text_bytes),
		cmocka_unit_test(test_unknown_values),
		cmocka_unit_test(test_end_epoch_rules),
		cmocka_unit_test(test_reserved_fields),
		cmocka_unit_test(test_refusal_clears_output),
		cmocka_unit_test(test_small_err_buffer),
		cmocka_unit_test(test_record_digest),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_heartbeat_unknown_flags),
		cmocka_unit_test(test_drill_reserved_message),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
