/*
 * kvstore_resp.c - RESP2 request parsing and reply encoding (see
 * kvstore_resp.h).
 *
 * The parser follows Redis's processMultibulkBuffer / processInlineBuffer
 * closely, including its messages, so clients see the same errors:
 *   "*<n>\r\n" then n times "$<len>\r\n<len bytes>\r\n"; n > 1M or not an
 *   integer: "invalid multibulk length"; a line without CR within 64 KiB:
 *   "too big mbulk count string" / "too big bulk count string"; an
 *   argument not starting with '$': "expected '$', got 'c'"; a length
 *   that is negative, not an integer or above max_bulk: "invalid bulk
 *   length".  As in Redis the two bytes after a bulk are skipped
 *   unchecked.
 *   Anything not starting with '*' is an inline command: one line up to
 *   LF (CR before it dropped), split on blanks with "double" (C escapes,
 *   \xHH) and 'single' quotes; "unbalanced quotes in request" on bad
 *   quoting, "too big inline request" past 64 KiB without LF.
 * Nothing is read past len; every length is checked before it is used.
 */
#include "kvstore_resp.h"

/* ---- kv_buf --------------------------------------------------------------- */

void kv_buf_init(struct kv_buf *b, const struct kv_alloc *a)
{
	b->p = NULL;
	b->len = 0;
	b->cap = 0;
	b->a = a;
	b->oom = 0;
}

void kv_buf_free(struct kv_buf *b)
{
	kv_free(b->a, b->p, b->cap);
	b->p = NULL;
	b->len = 0;
	b->cap = 0;
}

int kv_buf_reserve(struct kv_buf *b, size_t extra)
{
	size_t cap = b->cap ? b->cap : 256;
	uint8_t *p;

	if (extra <= b->cap - b->len)
		return 0;
	if (extra > SIZE_MAX / 4 - b->len)
		goto oom;
	while (cap - b->len < extra)
		cap *= 2;
	p = kv_malloc(b->a, cap);
	if (p == NULL)
		goto oom;
	if (b->len > 0)
		memcpy(p, b->p, b->len);
	kv_free(b->a, b->p, b->cap);
	b->p = p;
	b->cap = cap;
	return 0;
oom:
	b->oom = 1;
	return -1;
}

void kv_buf_put(struct kv_buf *b, const void *data, size_t n)
{
	if (n == 0 || kv_buf_reserve(b, n) != 0)
		return;
	memcpy(b->p + b->len, data, n);
	b->len += n;
}

void kv_buf_puts(struct kv_buf *b, const char *s)
{
	kv_buf_put(b, s, strlen(s));
}

void kv_buf_consume(struct kv_buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		return;
	}
	memmove(b->p, b->p + n, b->len - n);
	b->len -= n;
}

/* ---- numbers -------------------------------------------------------------- */

size_t kv_fmt_u64(char *d, uint64_t v)
{
	char t[KV_I64_MAXLEN + 1];
	size_t n = 0, i;

	do {
		t[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	for (i = 0; i < n; i++)
		d[i] = t[n - 1 - i];
	d[n] = 0;
	return n;
}

size_t kv_fmt_i64(char *d, int64_t v)
{
	if (v >= 0)
		return kv_fmt_u64(d, (uint64_t)v);
	d[0] = '-';
	return 1 + kv_fmt_u64(d + 1, (uint64_t)0 - (uint64_t)v);
}

int kv_parse_i64(const uint8_t *s, size_t n, int64_t *out)
{
	uint64_t v = 0, lim;
	size_t i = 0;
	int neg = 0;

	if (n == 0 || n > KV_I64_MAXLEN)
		return -1;
	if (n == 1 && s[0] == '0') {
		*out = 0;
		return 0;
	}
	if (s[0] == '-') {
		neg = 1;
		i = 1;
	}
	if (i == n || s[i] < '1' || s[i] > '9')
		return -1;
	lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		if (v > (lim - (uint64_t)(s[i] - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = neg ? (int64_t)(0 - v) : (int64_t)v;
	return 0;
}

/* ---- replies -------------------------------------------------------------- */

static void kv_put_line(struct kv_buf *b, char type, const char *s, size_t n)
{
	if (kv_buf_reserve(b, n + 3) != 0)
		return;
	b->p[b->len++] = (uint8_t)type;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len++] = '\r';
	b->p[b->len++] = '\n';
}

static void kv_put_num(struct kv_buf *b, char type, int64_t v)
{
	char d[KV_I64_MAXLEN + 2];

	kv_put_line(b, type, d, kv_fmt_i64(d, v));
}

void kv_reply_status(struct kv_buf *b, const char *s)
{
	kv_put_line(b, '+', s, strlen(s));
}

void kv_reply_errorn(struct kv_buf *b, const uint8_t *msg, size_t n)
{
	size_t start, i;

	if (n > 0 && msg[0] == '-') {
		kv_buf_put(b, "-", 1);
		msg++;
		n--;
	} else {
		kv_buf_put(b, "-ERR ", 5);
	}
	start = b->len;
	kv_buf_put(b, msg, n);
	if (b->oom)
		return;
	for (i = start; i < b->len; i++)
		if (b->p[i] == '\r' || b->p[i] == '\n')
			b->p[i] = ' ';
	kv_buf_put(b, "\r\n", 2);
}

void kv_reply_error(struct kv_buf *b, const char *msg)
{
	kv_reply_errorn(b, (const uint8_t *)msg, strlen(msg));
}

void kv_reply_int(struct kv_buf *b, int64_t v)
{
	kv_put_num(b, ':', v);
}

void kv_reply_bulk(struct kv_buf *b, const void *p, size_t n)
{
	if (kv_buf_reserve(b, n + KV_I64_MAXLEN + 5) != 0)
		return;
	kv_put_num(b, '$', (int64_t)n);
	if (n > 0)
		memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len++] = '\r';
	b->p[b->len++] = '\n';
}

void kv_reply_cbulk(struct kv_buf *b, const char *s)
{
	kv_reply_bulk(b, s, strlen(s));
}

void kv_reply_null(struct kv_buf *b)
{
	kv_buf_put(b, "$-1\r\n", 5);
}

void kv_reply_array(struct kv_buf *b, size_t n)
{
	kv_put_num(b, '*', (int64_t)n);
}

/* ---- request vector ---------------------------------------------------------- */

void kv_req_init(struct kv_req *req, const struct kv_alloc *a)
{
	memset(req, 0, sizeof(*req));
	req->a = a;
	req->max_bulk = KV_MAX_BULK;
}

void kv_req_free(struct kv_req *req)
{
	kv_free(req->a, req->argv, req->argcap * sizeof(*req->argv));
	kv_free(req->a, req->scratch, req->scratch_cap);
	req->argv = NULL;
	req->scratch = NULL;
	req->argc = req->argcap = req->scratch_cap = 0;
}

static int kv_req_push(struct kv_req *req, const uint8_t *p, size_t n)
{
	if (req->argc == req->argcap) {
		size_t cap = req->argcap ? req->argcap * 2 : 16;
		struct kv_arg *v = kv_malloc(req->a, cap * sizeof(*v));

		if (v == NULL)
			return -1;
		if (req->argc > 0)
			memcpy(v, req->argv, req->argc * sizeof(*v));
		kv_free(req->a, req->argv, req->argcap * sizeof(*v));
		req->argv = v;
		req->argcap = cap;
	}
	req->argv[req->argc].p = p;
	req->argv[req->argc].len = n;
	req->argc++;
	return 0;
}

static int kv_scratch_reserve(struct kv_req *req, size_t n)
{
	uint8_t *p;

	if (n <= req->scratch_cap)
		return 0;
	p = kv_malloc(req->a, n);
	if (p == NULL)
		return -1;
	kv_free(req->a, req->scratch, req->scratch_cap);
	req->scratch = p;
	req->scratch_cap = n;
	return 0;
}

static int kv_proto_err(struct kv_req *req, const char *what, int c)
{
	size_t n = 0;
	const char *pre = "Protocol error: ";

	while (*pre)
		req->err[n++] = *pre++;
	while (*what && n < sizeof(req->err) - 8)
		req->err[n++] = *what++;
	if (c >= 0) {
		req->err[n++] = '\'';
		req->err[n++] = (char)c;
		req->err[n++] = '\'';
	}
	req->err[n] = 0;
	return KV_PARSE_ERR;
}

/* ---- multibulk ------------------------------------------------------------ */

/*
 * The line at buf[pos..len): its end (index of CR) in *cr.  NEED when
 * incomplete, ERR (with msg) when no CR within KV_INLINE_MAX.
 */
static int kv_line(const uint8_t *buf, size_t len, size_t pos, size_t *cr,
		   struct kv_req *req, const char *msg)
{
	const uint8_t *p = kv_memchr(buf + pos, '\r', len - pos);

	if (p == NULL) {
		if (len - pos > KV_INLINE_MAX)
			return kv_proto_err(req, msg, -1);
		return KV_PARSE_NEED;
	}
	*cr = (size_t)(p - buf);
	if (*cr + 2 > len)
		return KV_PARSE_NEED; /* the LF is not here yet */
	return KV_PARSE_OK;
}

static int kv_parse_bulk(const uint8_t *buf, size_t len, size_t *pos,
			 struct kv_req *req)
{
	size_t cr;
	int64_t n;
	int r;

	if (*pos >= len)
		return KV_PARSE_NEED;
	r = kv_line(buf, len, *pos, &cr, req, "too big bulk count string");
	if (r != KV_PARSE_OK)
		return r;
	if (buf[*pos] != '$')
		return kv_proto_err(req, "expected '$', got ", buf[*pos]);
	if (kv_parse_i64(buf + *pos + 1, cr - *pos - 1, &n) != 0 || n < 0 ||
	    n > req->max_bulk)
		return kv_proto_err(req, "invalid bulk length", -1);
	if ((uint64_t)n + 2 > len - (cr + 2))
		return KV_PARSE_NEED;
	if (kv_req_push(req, buf + cr + 2, (size_t)n) != 0)
		return KV_PARSE_NOMEM;
	*pos = cr + 2 + (size_t)n + 2;
	return KV_PARSE_OK;
}

static int kv_parse_multibulk(const uint8_t *buf, size_t len,
			      struct kv_req *req, size_t *used)
{
	size_t cr, pos;
	int64_t count, i;
	int r;

	r = kv_line(buf, len, 0, &cr, req, "too big mbulk count string");
	if (r != KV_PARSE_OK)
		return r;
	if (kv_parse_i64(buf + 1, cr - 1, &count) != 0 || count > KV_MAX_ARGS)
		return kv_proto_err(req, "invalid multibulk length", -1);
	pos = cr + 2;
	for (i = 0; i < count; i++) {
		r = kv_parse_bulk(buf, len, &pos, req);
		if (r != KV_PARSE_OK)
			return r;
	}
	*used = pos;
	return KV_PARSE_OK;
}

/* ---- inline --------------------------------------------------------------- */

static int kv_space(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' ||
	       c == '\f';
}

static int kv_hex(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static uint8_t kv_unescape(uint8_t c)
{
	switch (c) {
	case 'n': return '\n';
	case 'r': return '\r';
	case 't': return '\t';
	case 'b': return '\b';
	case 'a': return '\a';
	default: return c;
	}
}

/* One "double quoted" word starting after the quote at s[*i]. */
static int kv_dquoted(const uint8_t *s, size_t n, size_t *i, uint8_t *out,
		      size_t *o)
{
	for (;;) {
		size_t k = *i;

		if (k >= n)
			return -1;
		if (s[k] == '\\' && k + 3 < n && s[k + 1] == 'x' &&
		    kv_hex(s[k + 2]) >= 0 && kv_hex(s[k + 3]) >= 0) {
			out[(*o)++] = (uint8_t)(kv_hex(s[k + 2]) * 16 +
						kv_hex(s[k + 3]));
			*i = k + 4;
		} else if (s[k] == '\\' && k + 1 < n) {
			out[(*o)++] = kv_unescape(s[k + 1]);
			*i = k + 2;
		} else if (s[k] == '"') {
			*i = k + 1;
			return k + 1 < n && !kv_space(s[k + 1]) ? -1 : 0;
		} else {
			out[(*o)++] = s[k];
			*i = k + 1;
		}
	}
}

/* One 'single quoted' word starting after the quote at s[*i]. */
static int kv_squoted(const uint8_t *s, size_t n, size_t *i, uint8_t *out,
		      size_t *o)
{
	for (;;) {
		size_t k = *i;

		if (k >= n)
			return -1;
		if (s[k] == '\\' && k + 1 < n && s[k + 1] == '\'') {
			out[(*o)++] = '\'';
			*i = k + 2;
		} else if (s[k] == '\'') {
			*i = k + 1;
			return k + 1 < n && !kv_space(s[k + 1]) ? -1 : 0;
		} else {
			out[(*o)++] = s[k];
			*i = k + 1;
		}
	}
}

/*
 * Split s[0..n) into words in req->scratch (Redis sdssplitargs); words
 * are recorded as offsets first, pointers once the scratch is final.
 */
static int kv_split(const uint8_t *s, size_t n, struct kv_req *req)
{
	size_t i = 0, o = 0, k;

	if (kv_scratch_reserve(req, n + 1) != 0)
		return KV_PARSE_NOMEM;
	for (;;) {
		size_t start;
		int bad = 0;

		while (i < n && kv_space(s[i]))
			i++;
		if (i >= n)
			break;
		start = o;
		while (i < n && !kv_space(s[i]) && !bad) {
			if (s[i] == '"') {
				i++;
				bad = kv_dquoted(s, n, &i, req->scratch, &o);
			} else if (s[i] == '\'') {
				i++;
				bad = kv_squoted(s, n, &i, req->scratch, &o);
			} else {
				req->scratch[o++] = s[i++];
			}
		}
		if (bad)
			return kv_proto_err(req, "unbalanced quotes in request",
					    -1);
		if (kv_req_push(req, (const uint8_t *)(uintptr_t)start,
				o - start) != 0)
			return KV_PARSE_NOMEM;
	}
	for (k = 0; k < req->argc; k++)
		req->argv[k].p = req->scratch + (uintptr_t)req->argv[k].p;
	return KV_PARSE_OK;
}

static int kv_parse_inline(const uint8_t *buf, size_t len,
			   struct kv_req *req, size_t *used)
{
	const uint8_t *lf = kv_memchr(buf, '\n', len);
	const uint8_t *nul;
	size_t n;
	int r;

	if (lf == NULL) {
		if (len > KV_INLINE_MAX)
			return kv_proto_err(req, "too big inline request", -1);
		return KV_PARSE_NEED;
	}
	n = (size_t)(lf - buf);
	*used = n + 1;
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	nul = kv_memchr(buf, 0, n); /* Redis sees a C string: it ends there */
	if (nul != NULL)
		n = (size_t)(nul - buf);
	r = kv_split(buf, n, req);
	return r;
}

int kv_parse(const uint8_t *buf, size_t len, struct kv_req *req,
	     size_t *used)
{
	req->argc = 0;
	req->err[0] = 0;
	*used = 0;
	if (len == 0)
		return KV_PARSE_NEED;
	if (buf[0] == '*')
		return kv_parse_multibulk(buf, len, req, used);
	return kv_parse_inline(buf, len, req, used);
}
