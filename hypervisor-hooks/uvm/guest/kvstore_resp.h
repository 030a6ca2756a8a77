/*
 * kvstore_resp.h - RESP2 for the kvstore guest: the request parser
 * (multibulk arrays and inline commands, as Redis parses them) and the
 * reply encoder.  Portable C11 (kvstore_sys.h): built into the guest and
 * into host unit tests and fuzzers.
 *
 * kv_parse() is stateless: it looks at the bytes buffered so far and
 * either finds one complete request at their start (KV_PARSE_OK, with
 * *used bytes to drop afterwards), needs more bytes (KV_PARSE_NEED; call
 * again with the same start and more bytes), or finds a protocol error
 * (KV_PARSE_ERR, message in req->err; the connection must be closed after
 * replying, the stream cannot be resynchronised).  A request with no
 * arguments (a blank inline line, "*0" or "*-1") is KV_PARSE_OK with
 * argc 0: skip it.  Array arguments point into the caller's buffer;
 * inline arguments (unescaped) into req's scratch space.  Both stay valid
 * until the next kv_parse() on req or until the buffer changes.
 */
#ifndef KVSTORE_RESP_H
#define KVSTORE_RESP_H

#include "kvstore_sys.h"

/* ---- output buffer ---------------------------------------------------- */

struct kv_buf {
	uint8_t *p;
	size_t len, cap;
	const struct kv_alloc *a;
	int oom;          /* a write failed for want of memory */
};

void kv_buf_init(struct kv_buf *b, const struct kv_alloc *a);
void kv_buf_free(struct kv_buf *b);
/* Room for extra more bytes: 0, or -1 (and oom set). */
int kv_buf_reserve(struct kv_buf *b, size_t extra);
void kv_buf_put(struct kv_buf *b, const void *data, size_t n);
void kv_buf_puts(struct kv_buf *b, const char *s);
/* Drop the first n bytes. */
void kv_buf_consume(struct kv_buf *b, size_t n);

/* ---- replies ------------------------------------------------------------ */

void kv_reply_status(struct kv_buf *b, const char *s);      /* +s */
/* "-ERR msg", or "-CODE rest" when msg is "-CODE rest" (as Redis's
 * addReplyError); CR and LF in msg become spaces. */
void kv_reply_error(struct kv_buf *b, const char *msg);
void kv_reply_errorn(struct kv_buf *b, const uint8_t *msg, size_t n);
void kv_reply_int(struct kv_buf *b, int64_t v);
void kv_reply_bulk(struct kv_buf *b, const void *p, size_t n);
void kv_reply_cbulk(struct kv_buf *b, const char *s);
void kv_reply_null(struct kv_buf *b);                       /* $-1 */
void kv_reply_array(struct kv_buf *b, size_t n);            /* *n */

/* ---- numbers -------------------------------------------------------------- */

#define KV_I64_MAXLEN 20
/* Decimal text of v into d (room for KV_I64_MAXLEN + 1); length. */
size_t kv_fmt_i64(char *d, int64_t v);
size_t kv_fmt_u64(char *d, uint64_t v);
/* Strict integer (Redis string2ll): no blanks, '+' or leading zeros. */
int kv_parse_i64(const uint8_t *s, size_t n, int64_t *out);

/* ---- requests ---------------------------------------------------------- */

#define KV_INLINE_MAX  (64 * 1024)        /* Redis PROTO_INLINE_MAX_SIZE */
#define KV_MAX_BULK    (512LL * 1024 * 1024)
#define KV_MAX_ARGS    (1024 * 1024)

enum kv_parse_result {
	KV_PARSE_ERR = -1,
	KV_PARSE_NEED = 0,
	KV_PARSE_OK = 1,
	KV_PARSE_NOMEM = 2,  /* out of memory for the argument vector */
};

struct kv_arg {
	const uint8_t *p;
	size_t len;
};

struct kv_req {
	struct kv_arg *argv;
	size_t argc, argcap;
	uint8_t *scratch;       /* inline arguments */
	size_t scratch_cap;
	const struct kv_alloc *a;
	long long max_bulk;     /* bulk lengths above this are errors */
	char err[96];           /* the message of a KV_PARSE_ERR */
};

void kv_req_init(struct kv_req *req, const struct kv_alloc *a);
void kv_req_free(struct kv_req *req);
int kv_parse(const uint8_t *buf, size_t len, struct kv_req *req,
	     size_t *used);

#endif
