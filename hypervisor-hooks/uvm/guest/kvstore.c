/*
 * kvstore.c - a Redis-protocol (RESP2) key-value server guest for uvm,
 * durable through a write-ahead log on the block device (docs/kvstore.md).
 *
 * One event loop on vCPU 0.  Each round:
 *   1. stream_poll(): new connections, readable / writable / closed ones
 *      (blocks only when no client has work left over);
 *   2. every client with work parses and executes the complete requests
 *      it has buffered, in order, appending replies to its output buffer
 *      and the effects of write commands to the log batch;
 *   3. the log batch is committed (one write + flush) -- group commit;
 *   4. only then do replies go out, as far as each connection's credit
 *      allows.
 * So no reply ever reveals a write that is not durable.
 *
 * Per client: a query buffer q (bytes read, q.p[qpos..q.len) unparsed)
 * and an output buffer o (o.p[opos..o.len) unsent).  A client stops being
 * processed while it has KV_OUT_HIGH unsent bytes (a client that does not
 * read its replies stalls itself only: its rx is not read, so it gets no
 * credit and the host stops reading its socket); it resumes once its
 * output drains.  A client is processed for at most KV_ROUND_REQS
 * requests per round, then requeued, so one pipelining client cannot
 * starve the others.  Protocol errors and requests larger than maxreq get
 * an error reply and the connection is closed after it (Redis does the
 * same for protocol errors).
 *
 * Command line: maxconns=N (default and limit UVM_STREAM_MAX_CONNS),
 * maxreq=BYTES (largest request, default 1M), nolog=1 (no durability).
 */
#include "sdk.h"
#include "uvm_dev.h"
#include "blkfront.h"
#include "streamfront.h"
#include "kvstore_cmd.h"
#include "kvstore_heap.h"

#define KV_GUEST_KIND 0x6b767374ULL /* "kvst" */
#define KV_NEV 64
#define KV_OUT_HIGH (64u * 1024)
#define KV_QCHUNK (64u * 1024)
#define KV_ROUND_REQS 256
#define KV_SHRINK (256u * 1024)

#define KVC_CLOSE_AFTER 0x1u /* no more requests: close once output is out */
#define KVC_HUP         0x2u /* the client closed its side */
#define KVC_IN_WORK     0x4u
#define KVC_IN_OUT      0x8u
#define KVC_STALLED     0x10u /* output high: resume when it drains */

struct kv_client {
	uint32_t id;
	uint32_t flags;
	uint32_t next_work, next_out;
	struct kv_buf q, o;
	size_t qpos, opos;
};

static struct kv_client *kv_clients[UVM_STREAM_MAX_CONNS + 1];
static uint32_t kv_work_head, kv_work_tail, kv_out_head;
static struct kv_db kv_store_db;
static struct kv_log kv_wal;
static struct kv_ctx kv_c;
static struct kv_req kv_request;
static uint64_t kv_maxconns, kv_maxreq;

static int64_t kv_now_ms(void)
{
	return (int64_t)(hc_clock() / 1000000);
}

/* ---- lists --------------------------------------------------------------- */

static void kv_work_add(struct kv_client *c)
{
	if (c->flags & KVC_IN_WORK)
		return;
	c->flags |= KVC_IN_WORK;
	c->next_work = 0;
	if (kv_work_tail != 0)
		kv_clients[kv_work_tail]->next_work = c->id;
	else
		kv_work_head = c->id;
	kv_work_tail = c->id;
}

static void kv_out_add(struct kv_client *c)
{
	if (c->flags & KVC_IN_OUT)
		return;
	c->flags |= KVC_IN_OUT;
	c->next_out = kv_out_head;
	kv_out_head = c->id;
}

/* ---- clients ------------------------------------------------------------- */

static size_t kv_pending(const struct kv_client *c)
{
	return c->o.len - c->opos;
}

static void kv_client_new(uint32_t id)
{
	static const char full[] = "-ERR max number of clients reached\r\n";
	struct kv_client *c;

	kv_c.info.total_connections++;
	if (kv_c.info.connected_clients >= kv_maxconns ||
	    (c = kv_malloc(&kv_heap, sizeof(*c))) == NULL) {
		kv_c.info.rejected_connections++;
		(void)stream_write(id, full, sizeof(full) - 1);
		stream_close(id);
		return;
	}
	memset(c, 0, sizeof(*c));
	c->id = id;
	kv_buf_init(&c->q, &kv_heap);
	kv_buf_init(&c->o, &kv_heap);
	kv_clients[id] = c;
	kv_c.info.connected_clients++;
}

/* Take c off the work list (rare: only a client freed while queued). */
static void kv_work_unlink(struct kv_client *c)
{
	uint32_t *link = &kv_work_head, prev = 0;

	while (*link != 0 && *link != c->id) {
		prev = *link;
		link = &kv_clients[*link]->next_work;
	}
	if (*link == 0)
		return;
	*link = c->next_work;
	if (kv_work_tail == c->id)
		kv_work_tail = prev;
	c->flags &= ~KVC_IN_WORK;
}

/* Free a client; it is on no list afterwards (the out list is detached
 * while clients are freed, see kv_send_all). */
static void kv_client_free(struct kv_client *c)
{
	if (c->flags & KVC_IN_WORK)
		kv_work_unlink(c);
	stream_close(c->id);
	kv_clients[c->id] = NULL;
	kv_buf_free(&c->q);
	kv_buf_free(&c->o);
	kv_free(&kv_heap, c, sizeof(*c));
	kv_c.info.connected_clients--;
}

/* Reply with an error and close the connection after the output. */
static void kv_client_fail(struct kv_client *c, const char *msg)
{
	if (c->o.oom) {
		c->o.len = c->opos; /* cannot vouch for it: drop unsent output */
		c->o.oom = 0;
	}
	kv_reply_error(&c->o, msg);
	c->flags |= KVC_CLOSE_AFTER;
}

/* Read more of the client's bytes into q: 1 if any were read. */
static int kv_client_fill(struct kv_client *c)
{
	size_t avail = stream_readable(c->id), n;

	if (avail == 0)
		return 0;
	if (c->qpos > 0) {
		kv_buf_consume(&c->q, c->qpos);
		c->qpos = 0;
	}
	n = avail < KV_QCHUNK ? avail : KV_QCHUNK;
	if (kv_buf_reserve(&c->q, n) != 0) {
		c->q.oom = 0;
		kv_client_fail(c, "-OOM command not allowed: out of memory");
		return 0;
	}
	c->q.len += stream_read(c->id, c->q.p + c->q.len, n);
	return 1;
}

static void kv_client_exec(struct kv_client *c)
{
	int r = kv_exec(&kv_c, kv_request.argv, kv_request.argc, &c->o);

	if (kv_c.log_failed)
		panic("kvstore: the log device failed; stopping so no reply "
		      "claims a write that is not durable");
	if (c->o.oom)
		kv_client_fail(c, "-OOM out of memory for the reply");
	else if (r & KV_EXEC_CLOSE)
		c->flags |= KVC_CLOSE_AFTER;
}

/* Execute the next complete request: 1 done, 0 none complete, -1 error. */
static int kv_client_one(struct kv_client *c)
{
	for (;;) {
		size_t avail = c->q.len - c->qpos, used = 0;
		int r = KV_PARSE_NEED;

		if (avail > 0)
			r = kv_parse(c->q.p + c->qpos, avail, &kv_request, &used);
		if (r == KV_PARSE_OK) {
			c->qpos += used;
			if (kv_request.argc == 0)
				continue;
			kv_client_exec(c);
			return 1;
		}
		if (r == KV_PARSE_ERR) {
			kv_client_fail(c, kv_request.err);
			return -1;
		}
		if (r == KV_PARSE_NOMEM) {
			kv_client_fail(c, "-OOM out of memory for the request");
			return -1;
		}
		if (avail > kv_maxreq) {
			kv_client_fail(c, "Protocol error: request larger than "
					  "the query buffer limit (maxreq)");
			return -1;
		}
		if (!kv_client_fill(c))
			return (c->flags & KVC_CLOSE_AFTER) ? -1 : 0;
	}
}

static void kv_client_work(struct kv_client *c)
{
	unsigned done = 0;
	int r = 1;

	while (!(c->flags & KVC_CLOSE_AFTER)) {
		if (kv_pending(c) >= KV_OUT_HIGH) {
			c->flags |= KVC_STALLED;
			break;
		}
		r = kv_client_one(c);
		if (r <= 0)
			break;
		if (++done >= KV_ROUND_REQS) {
			kv_work_add(c);
			break;
		}
	}
	if (r == 0 && (c->flags & KVC_HUP) && stream_readable(c->id) == 0)
		c->flags |= KVC_CLOSE_AFTER; /* all it sent is answered */
	if (kv_pending(c) > 0 || (c->flags & KVC_CLOSE_AFTER))
		kv_out_add(c);
}

/* Send what credit allows; close or resume the client as it drains. */
static void kv_client_send(struct kv_client *c)
{
	size_t n = kv_pending(c);

	if (n > 0)
		c->opos += stream_write(c->id, c->o.p + c->opos, n);
	if (kv_pending(c) == 0) {
		c->o.len = c->opos = 0;
		if (c->o.cap > KV_SHRINK)
			kv_buf_free(&c->o);
	} else if (c->opos >= KV_SHRINK) {
		kv_buf_consume(&c->o, c->opos);
		c->opos = 0;
	}
	if (kv_pending(c) > 0)
		return; /* WRITABLE brings it back */
	if (c->flags & KVC_CLOSE_AFTER) {
		kv_client_free(c);
		return;
	}
	if (c->flags & KVC_STALLED) {
		c->flags &= ~KVC_STALLED;
		kv_work_add(c);
	}
	if (c->qpos == c->q.len && c->q.cap > KV_SHRINK) {
		kv_buf_free(&c->q);
		c->qpos = 0;
	}
}

/* ---- the loop ------------------------------------------------------------ */

static void kv_event(const struct stream_event *ev)
{
	struct kv_client *c;

	if (ev->events & STREAM_EV_OPEN)
		kv_client_new(ev->conn);
	c = kv_clients[ev->conn];
	if (c == NULL)
		return;
	if (ev->events & STREAM_EV_HUP)
		c->flags |= KVC_HUP;
	if (ev->events & (STREAM_EV_READABLE | STREAM_EV_HUP))
		kv_work_add(c);
	if (ev->events & STREAM_EV_WRITABLE)
		kv_out_add(c);
}

static void kv_round(void)
{
	uint32_t id = kv_work_head;

	kv_work_head = kv_work_tail = 0;
	while (id != 0) {
		struct kv_client *c = kv_clients[id];
		uint32_t next;

		if (c == NULL || !(c->flags & KVC_IN_WORK))
			break; /* cannot happen: freed clients are unlinked */
		next = c->next_work;
		c->flags &= ~KVC_IN_WORK;
		kv_client_work(c);
		id = next;
	}
}

static void kv_send_all(void)
{
	uint32_t id = kv_out_head;

	kv_out_head = 0;
	while (id != 0) {
		struct kv_client *c = kv_clients[id];
		uint32_t next;

		if (c == NULL || !(c->flags & KVC_IN_OUT))
			break;
		next = c->next_out;
		c->flags &= ~KVC_IN_OUT;
		kv_client_send(c);
		id = next;
	}
}

static void kv_commit(void)
{
	int r;

	if (kv_c.log == NULL)
		return;
	r = kv_log_commit(kv_c.log, kv_c.now);
	if (r != 0)
		panic("kvstore: log commit failed (%d); stopping so no reply "
		      "claims a write that is not durable", r);
}

static void kv_serve(void)
{
	struct stream_event ev[KV_NEV];

	for (;;) {
		int n = stream_poll(ev, KV_NEV, kv_work_head == 0 &&
					       kv_out_head == 0);

		if (n < 0)
			panic("kvstore: the stream device failed");
		kv_c.now = kv_now_ms();
		kv_c.info.used_memory = kv_heap_used();
		for (int i = 0; i < n; i++)
			kv_event(&ev[i]);
		kv_round();
		kv_commit();
		kv_send_all();
		report_set(UVM_REPORT_PASSES, kv_c.info.total_commands);
	}
}

/* ---- start-up ---------------------------------------------------------- */

static int kv_dev_read(void *ctx, uint64_t s, void *buf, uint64_t n)
{
	(void)ctx;
	return blk_read(s, buf, n);
}

static int kv_dev_write(void *ctx, uint64_t s, const void *buf, uint64_t n)
{
	(void)ctx;
	return blk_write(s, buf, n);
}

static int kv_dev_flush(void *ctx)
{
	(void)ctx;
	return blk_flush();
}

static int kv_dev_write_flush(void *ctx, uint64_t s, const void *buf,
			      uint64_t n)
{
	(void)ctx;
	return blk_write_flush(s, buf, n);
}

static void kv_open_log(void)
{
	struct kv_logdev dev = { kv_dev_read, kv_dev_write, kv_dev_flush,
				 kv_dev_write_flush, NULL, 0 };
	int r;

	if (cmdline_u64("nolog", 0) != 0) {
		kv_c.info.log_state = "off (nolog=1)";
		printf("kvstore: nolog=1: serving WITHOUT durability\n");
		return;
	}
	if (blk_init() != 0) {
		kv_c.info.log_state = "off (no disk)";
		printf("kvstore: no block device: serving WITHOUT durability\n");
		return;
	}
	dev.sectors = blk_sectors();
	r = kv_log_open(&kv_wal, &dev, &kv_heap, &kv_store_db, kv_now_ms(),
			hc_clock());
	if (r == -KV_EINVAL) {
		kv_c.info.log_state = "off (disk too small)";
		printf("kvstore: disk of %llu sectors is too small for the log: "
		       "serving WITHOUT durability\n",
		       (unsigned long long)dev.sectors);
		return;
	}
	if (r != 0)
		panic("kvstore: cannot open the log (%d)", r);
	kv_c.log = &kv_wal;
	kv_c.info.log_state = "on";
	printf("kvstore: log on %llu-sector disk: %s, %llu records replayed, "
	       "%llu keys\n", (unsigned long long)dev.sectors,
	       kv_wal.st.formatted ? "new log" : "existing log",
	       (unsigned long long)kv_wal.st.replayed_records,
	       (unsigned long long)kv_db_size(&kv_store_db, kv_now_ms()));
}

int main(const struct uvm_start_info *si)
{
	(void)si;
	kv_maxconns = cmdline_u64("maxconns", UVM_STREAM_MAX_CONNS);
	if (kv_maxconns == 0 || kv_maxconns > UVM_STREAM_MAX_CONNS)
		kv_maxconns = UVM_STREAM_MAX_CONNS;
	kv_maxreq = cmdline_u64("maxreq", 1024 * 1024);
	if (kv_maxreq < 4096)
		kv_maxreq = 4096;
	if (kv_maxreq > KV_MAX_BULK)
		kv_maxreq = KV_MAX_BULK;
	if (kv_db_init(&kv_store_db, &kv_heap, hc_clock()) != 0)
		panic("kvstore: no memory for the table");
	kv_c.db = &kv_store_db;
	kv_c.info.start_ms = kv_now_ms();
	kv_c.info.maxclients = kv_maxconns;
	kv_req_init(&kv_request, &kv_heap);
	kv_open_log();
	if (stream_init() != 0) {
		printf("kvstore: no stream device (--listen): nothing to serve\n");
		return 1;
	}
	report_set(UVM_REPORT_KIND, KV_GUEST_KIND);
	printf("kvstore: ready (maxconns=%llu, maxreq=%llu, durability %s)\n",
	       (unsigned long long)kv_maxconns, (unsigned long long)kv_maxreq,
	       kv_c.info.log_state);
	kv_serve();
	return 0;
}
