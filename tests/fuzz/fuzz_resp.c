/*
 * fuzz_resp.c - libFuzzer harness for the kvstore guest's request path:
 * the input is one client's byte stream, fed to the RESP parser the way
 * the guest's event loop does (complete requests executed in order against
 * a store, partial frames kept for more bytes, a protocol error ends the
 * connection).  Each input is also fed in two halves split at a point the
 * input chooses, so split frames are exercised.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kvstore_cmd.h"
#include "kvstore_db.h"
#include "kvstore_resp.h"

static void *fz_alloc(void *ctx, size_t n)
{
	(void)ctx;
	return malloc(n ? n : 1);
}

static void fz_free(void *ctx, void *p, size_t n)
{
	(void)ctx;
	(void)n;
	free(p);
}

static const struct kv_alloc fz_a = { fz_alloc, fz_free, NULL };

/* Run what is buffered; 1 when the connection would be closed. */
static int fz_drain(struct kv_ctx *ctx, struct kv_req *req, struct kv_buf *in,
		    struct kv_buf *out)
{
	for (;;) {
		size_t used = 0;
		int r = kv_parse(in->p, in->len, req, &used);

		if (r == KV_PARSE_NEED)
			return 0;
		if (r != KV_PARSE_OK)
			return 1;
		if (req->argc > 0 &&
		    (kv_exec(ctx, req->argv, req->argc, out) & KV_EXEC_CLOSE))
			return 1;
		kv_buf_consume(in, used);
		kv_buf_consume(out, out->len);
	}
}

static void fz_session(const uint8_t *data, size_t size, size_t split)
{
	struct kv_db db;
	struct kv_ctx ctx;
	struct kv_req req;
	struct kv_buf in, out;

	if (kv_db_init(&db, &fz_a, 7) != 0)
		return;
	memset(&ctx, 0, sizeof(ctx));
	ctx.db = &db;
	ctx.now = 1000;
	ctx.info.start_ms = 1000;
	ctx.info.maxclients = 10;
	ctx.info.log_state = "off";
	kv_req_init(&req, &fz_a);
	kv_buf_init(&in, &fz_a);
	kv_buf_init(&out, &fz_a);
	kv_buf_put(&in, data, split);
	if (!fz_drain(&ctx, &req, &in, &out)) {
		kv_buf_put(&in, data + split, size - split);
		ctx.now += 5000; /* let expiries happen between the halves */
		(void)fz_drain(&ctx, &req, &in, &out);
	}
	kv_ctx_release(&ctx);
	kv_req_free(&req);
	kv_buf_free(&in);
	kv_buf_free(&out);
	kv_db_free(&db);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 1 << 16)
		return 0;
	fz_session(data, size, size);
	if (size > 1)
		fz_session(data + 1, size - 1, data[0] % size);
	return 0;
}
