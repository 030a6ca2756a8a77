/*
 * kvstore_log.c - the kvstore write-ahead log (format and rules:
 * kvstore_log.h).
 *
 * Invariants between calls: batch holds sizeof(struct kv_rec_hdr)
 * reserved bytes followed by batch_ops ops; pos is the first sector after
 * the last valid record of the active region; seq and prev_crc describe
 * the next record to append there.
 */
#include "kvstore_log.h"

#define KV_REC_HDR ((size_t)sizeof(struct kv_rec_hdr))
#define KV_OP_HDR ((size_t)sizeof(struct kv_op_hdr))
#define KV_BATCH_MAX (4u * 1024 * 1024)
#define KV_BATCH_MIN 4096
#define KV_READ_WINDOW 2048 /* sectors (1 MiB) read ahead during replay */

/* ---- CRC32C (Castagnoli, reflected 0x82f63b78) ------------------------- */

static uint32_t kv_crc_table[256];
static int kv_crc_ready;

static void kv_crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0x82f63b78U : c >> 1;
		kv_crc_table[i] = c;
	}
	kv_crc_ready = 1;
}

uint32_t kv_crc32c(uint32_t crc, const void *p, size_t n)
{
	const uint8_t *s = p;

	if (!kv_crc_ready)
		kv_crc_init();
	crc = ~crc;
	for (size_t i = 0; i < n; i++)
		crc = kv_crc_table[(crc ^ s[i]) & 0xff] ^ (crc >> 8);
	return ~crc;
}

static uint64_t kv_mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static uint64_t kv_sectors_for(size_t bytes)
{
	return ((uint64_t)bytes + KV_SECTOR - 1) / KV_SECTOR;
}

/* ---- ops ------------------------------------------------------------------ */

size_t kv_op_size(size_t klen, size_t vlen)
{
	return (KV_OP_HDR + klen + vlen + 7) & ~(size_t)7;
}

void kv_op_put(struct kv_buf *b, uint8_t type, const uint8_t *key,
	       size_t klen, const uint8_t *val, size_t vlen, int64_t expire)
{
	struct kv_op_hdr h;
	size_t total = kv_op_size(klen, vlen), at;

	if (kv_buf_reserve(b, total) != 0)
		return;
	memset(&h, 0, sizeof(h));
	h.type = type;
	h.klen = (uint32_t)klen;
	h.vlen = (uint32_t)vlen;
	h.expire = expire;
	at = b->len;
	memset(b->p + at, 0, total);
	memcpy(b->p + at, &h, sizeof(h));
	if (klen > 0)
		memcpy(b->p + at + KV_OP_HDR, key, klen);
	if (vlen > 0)
		memcpy(b->p + at + KV_OP_HDR + klen, val, vlen);
	b->len += total;
}

/* The op at ops[*at]: 0 and *at advanced, or -1 when malformed. */
static int kv_op_next(const uint8_t *ops, size_t len, size_t *at,
		      struct kv_op_hdr *h)
{
	size_t room = len - *at;

	if (room < KV_OP_HDR)
		return -1;
	memcpy(h, ops + *at, sizeof(*h));
	if (h->type < KV_OP_SET || h->type > KV_OP_FLUSHALL)
		return -1;
	if (h->klen > room - KV_OP_HDR || h->vlen > room - KV_OP_HDR - h->klen)
		return -1;
	if (kv_op_size(h->klen, h->vlen) > room)
		return -1;
	if (h->type != KV_OP_SET && h->vlen != 0)
		return -1;
	*at += kv_op_size(h->klen, h->vlen);
	return 0;
}

static int kv_op_apply(struct kv_db *db, const struct kv_op_hdr *h,
		       const uint8_t *key)
{
	struct kv_entry *e;

	switch (h->type) {
	case KV_OP_SET:
		return kv_db_set(db, key, h->klen, key + h->klen, h->vlen,
				 h->expire) ? 0 : -2;
	case KV_OP_DEL:
		(void)kv_db_del(db, key, h->klen, KV_NOW_NEVER);
		return 0;
	case KV_OP_EXPIRE:
		e = kv_db_get(db, key, h->klen, KV_NOW_NEVER);
		if (e != NULL)
			kv_db_set_expire(db, e, h->expire);
		return 0;
	default:
		kv_db_flush(db);
		return 0;
	}
}

int kv_ops_apply(struct kv_db *db, const uint8_t *ops, size_t len,
		 uint32_t nops)
{
	struct kv_op_hdr h;
	size_t at = 0;
	uint32_t i;

	for (i = 0; i < nops; i++)
		if (kv_op_next(ops, len, &at, &h) != 0)
			return -1;
	if (at != len)
		return -1;
	at = 0;
	for (i = 0; i < nops; i++) {
		size_t k = at + KV_OP_HDR;

		(void)kv_op_next(ops, len, &at, &h);
		if (kv_op_apply(db, &h, ops + k) != 0)
			return -2;
	}
	return 0;
}

/* ---- header slots ---------------------------------------------------------- */

static uint32_t kv_hdr_crc(const struct kv_log_hdr *h)
{
	return kv_crc32c(0, h, offsetof(struct kv_log_hdr, crc));
}

static int kv_hdr_ok(const struct kv_log_hdr *h, uint64_t sectors)
{
	uint64_t lo, hi;

	if (h->magic != KV_LOG_MAGIC || h->version != KV_LOG_VERSION ||
	    h->crc != kv_hdr_crc(h) || h->region > 1 ||
	    h->region_sectors == 0)
		return 0;
	lo = h->region_first[0] < h->region_first[1] ? h->region_first[0]
						      : h->region_first[1];
	hi = h->region_first[0] ^ h->region_first[1] ^ lo;
	return lo >= 2 && hi - lo >= h->region_sectors &&
	       hi <= sectors && sectors - hi >= h->region_sectors;
}

static int kv_hdr_write(struct kv_log *log, const struct kv_log_hdr *h)
{
	uint8_t sect[KV_SECTOR];

	memset(sect, 0, sizeof(sect));
	memcpy(sect, h, sizeof(*h));
	if (log->dev.write(log->dev.ctx, h->epoch % 2, sect, 1) != 0 ||
	    log->dev.flush(log->dev.ctx) != 0)
		return -KV_EIO;
	return 0;
}

static void kv_hdr_fill(const struct kv_log *log, struct kv_log_hdr *h,
			uint64_t epoch, uint64_t id, uint32_t region)
{
	memset(h, 0, sizeof(*h));
	h->magic = KV_LOG_MAGIC;
	h->version = KV_LOG_VERSION;
	h->region = region;
	h->epoch = epoch;
	h->id = id;
	h->region_first[0] = log->first[0];
	h->region_first[1] = log->first[1];
	h->region_sectors = log->rsect;
	h->crc = kv_hdr_crc(h);
}

static uint64_t kv_new_id(struct kv_log *log, uint64_t epoch, int64_t now)
{
	log->salt = kv_mix64(log->salt ^ (uint64_t)now ^ (epoch << 32));
	return log->salt | 1;
}

/* Use region r under a fresh id and epoch, empty. */
static void kv_log_start(struct kv_log *log, uint64_t epoch, uint64_t id,
			 uint32_t r)
{
	log->epoch = epoch;
	log->id = id;
	log->region = r;
	log->pos = log->first[r];
	log->seq = 1;
	log->prev_crc = 0;
}

/* ---- writing records ------------------------------------------------------ */

struct kv_rec_pos {
	uint64_t at, end;   /* sectors */
	uint64_t id, seq;
	uint32_t prev_crc;
};

/* Empty b but for the record header; at least a page of room, so the
 * guest's buffer is page-aligned and goes to the disk without bouncing. */
static void kv_batch_reset(struct kv_buf *b)
{
	b->len = 0;
	b->oom = 0;
	if (kv_buf_reserve(b, KV_BATCH_MIN) == 0) {
		memset(b->p, 0, KV_REC_HDR);
		b->len = KV_REC_HDR;
	}
}

/* Seal b (header + ops) as the record at rp and write it (and flush it
 * too when flush is set). */
static int kv_rec_write(struct kv_log *log, struct kv_buf *b, uint32_t nops,
			int64_t now, struct kv_rec_pos *rp, int flush)
{
	struct kv_rec_hdr h;
	size_t len = b->len - KV_REC_HDR;
	uint64_t n = kv_sectors_for(b->len);
	size_t pad = (size_t)(n * KV_SECTOR) - b->len;
	uint32_t crc;

	if (b->oom || len > UINT32_MAX)
		return -KV_ENOMEM;
	if (n > rp->end - rp->at)
		return -KV_ENOSPC;
	if (kv_buf_reserve(b, pad) != 0)
		return -KV_ENOMEM;
	memset(b->p + b->len, 0, pad);
	memset(&h, 0, sizeof(h));
	h.magic = KV_REC_MAGIC;
	h.nops = nops;
	h.id = rp->id;
	h.seq = rp->seq;
	h.time = now;
	h.len = (uint32_t)len;
	h.prev_crc = rp->prev_crc;
	crc = kv_crc32c(0, &h, sizeof(h));
	crc = kv_crc32c(crc, b->p + KV_REC_HDR, len);
	h.crc = crc;
	memcpy(b->p, &h, sizeof(h));
	if (flush && log->dev.write_flush != NULL) {
		if (log->dev.write_flush(log->dev.ctx, rp->at, b->p, n) != 0)
			return -KV_EIO;
	} else if (log->dev.write(log->dev.ctx, rp->at, b->p, n) != 0 ||
		   (flush && log->dev.flush(log->dev.ctx) != 0)) {
		return -KV_EIO;
	}
	rp->at += n;
	rp->seq++;
	rp->prev_crc = crc;
	log->st.commit_bytes += n * KV_SECTOR;
	return 0;
}

static struct kv_rec_pos kv_log_here(const struct kv_log *log)
{
	struct kv_rec_pos rp = {
		log->pos, log->first[log->region] + log->rsect,
		log->id, log->seq, log->prev_crc,
	};

	return rp;
}

int kv_log_commit(struct kv_log *log, int64_t now)
{
	struct kv_rec_pos rp = kv_log_here(log);
	int r;

	if (log->batch_ops == 0)
		return 0;
	r = kv_rec_write(log, &log->batch, log->batch_ops, now, &rp, 1);
	if (r != 0)
		return r;
	log->pos = rp.at;
	log->seq = rp.seq;
	log->prev_crc = rp.prev_crc;
	log->st.commits++;
	log->batch_ops = 0;
	kv_batch_reset(&log->batch);
	return 0;
}

/* ---- compaction ------------------------------------------------------------ */

struct kv_compact {
	struct kv_log *log;
	struct kv_buf buf;
	uint32_t nops;
	struct kv_rec_pos rp;
	int64_t now;
	int err;
};

static int kv_compact_chunk(struct kv_compact *c)
{
	if (c->nops == 0)
		return 0;
	c->err = kv_rec_write(c->log, &c->buf, c->nops, c->now, &c->rp, 0);
	c->nops = 0;
	kv_batch_reset(&c->buf);
	return c->err;
}

static int kv_compact_one(void *ctx, struct kv_entry *e)
{
	struct kv_compact *c = ctx;

	if (e->expire != KV_NO_EXPIRE && e->expire <= c->now)
		return 1;
	if (c->buf.len + kv_op_size(e->klen, e->vlen) > KV_LOG_CHUNK &&
	    kv_compact_chunk(c) != 0)
		return -1;
	kv_op_put(&c->buf, KV_OP_SET, kv_entry_key(e), e->klen,
		  kv_entry_val(e), e->vlen, e->expire);
	if (c->buf.oom) {
		c->err = -KV_ENOMEM;
		return -1;
	}
	c->nops++;
	return 0;
}

int kv_log_compact(struct kv_log *log, int64_t now)
{
	uint32_t other = log->region ^ 1;
	uint64_t epoch = log->epoch + 1, id = kv_new_id(log, epoch, now);
	struct kv_compact c;
	struct kv_log_hdr h;

	memset(&c, 0, sizeof(c));
	c.log = log;
	c.now = now;
	c.rp.at = log->first[other];
	c.rp.end = log->first[other] + log->rsect;
	c.rp.id = id;
	c.rp.seq = 1;
	kv_buf_init(&c.buf, log->a);
	kv_batch_reset(&c.buf);
	if (kv_db_foreach(log->db, kv_compact_one, &c) == 0)
		(void)kv_compact_chunk(&c);
	kv_buf_free(&c.buf);
	if (c.err == 0 && log->dev.flush(log->dev.ctx) != 0)
		c.err = -KV_EIO;
	if (c.err != 0)
		return c.err;
	kv_hdr_fill(log, &h, epoch, id, other);
	if (kv_hdr_write(log, &h) != 0)
		return -KV_EIO;
	kv_log_start(log, epoch, id, other);
	log->pos = c.rp.at;
	log->seq = c.rp.seq;
	log->prev_crc = c.rp.prev_crc;
	log->st.compactions++;
	return 0;
}

/* ---- reserve -------------------------------------------------------------- */

static int kv_log_fits(const struct kv_log *log, size_t bytes)
{
	uint64_t end = log->first[log->region] + log->rsect;

	return kv_sectors_for(bytes) <= end - log->pos;
}

int kv_log_reserve(struct kv_log *log, size_t bytes, int64_t now)
{
	int r;

	if (bytes > KV_BATCH_MAX * 64)
		return -KV_ENOSPC;
	if (log->batch.len > KV_BATCH_MAX ||
	    !kv_log_fits(log, log->batch.len + bytes)) {
		r = kv_log_commit(log, now);
		if (r != 0)
			return r;
	}
	if (!kv_log_fits(log, log->batch.len + bytes)) {
		r = kv_log_compact(log, now);
		if (r != 0)
			return r;
		if (!kv_log_fits(log, log->batch.len + bytes))
			return -KV_ENOSPC;
	}
	if (kv_buf_reserve(&log->batch, bytes) != 0) {
		log->batch.oom = 0;
		return -KV_ENOMEM;
	}
	return 0;
}

struct kv_buf *kv_log_batch(struct kv_log *log)
{
	return &log->batch;
}

void kv_log_count_op(struct kv_log *log)
{
	log->batch_ops++;
}

uint64_t kv_log_used(const struct kv_log *log)
{
	return log->pos - log->first[log->region];
}

uint64_t kv_log_capacity(const struct kv_log *log)
{
	return log->rsect;
}

/* ---- replay ---------------------------------------------------------------- */

struct kv_reader {
	struct kv_log *log;
	uint8_t *buf;
	size_t cap;          /* bytes */
	uint64_t start, n;   /* sectors held */
	uint64_t end;        /* region end */
};

/* n sectors at s, or NULL (*err set on I/O or memory failure). */
static const uint8_t *kv_read(struct kv_reader *rd, uint64_t s, uint64_t n,
			      int *err)
{
	uint64_t want = n > KV_READ_WINDOW ? n : KV_READ_WINDOW;

	if (s >= rd->start && s + n <= rd->start + rd->n)
		return rd->buf + (s - rd->start) * KV_SECTOR;
	if (want > rd->end - s)
		want = rd->end - s;
	if (want * KV_SECTOR > rd->cap) {
		uint8_t *p = kv_malloc(rd->log->a, want * KV_SECTOR);

		if (p == NULL) {
			*err = -KV_ENOMEM;
			return NULL;
		}
		kv_free(rd->log->a, rd->buf, rd->cap);
		rd->buf = p;
		rd->cap = want * KV_SECTOR;
	}
	rd->n = 0;
	if (rd->log->dev.read(rd->log->dev.ctx, s, rd->buf, want) != 0) {
		*err = -KV_EIO;
		return NULL;
	}
	rd->start = s;
	rd->n = want;
	return rd->buf;
}

/* Replay one record at log->pos: 1 applied, 0 end of log, < 0 error. */
static int kv_replay_one(struct kv_log *log, struct kv_reader *rd,
			 int64_t *last)
{
	struct kv_rec_hdr h;
	const uint8_t *p;
	uint64_t n, room = rd->end - log->pos;
	uint32_t crc;
	int err = 0, r;

	if (room == 0)
		return 0;
	p = kv_read(rd, log->pos, 1, &err);
	if (p == NULL)
		return err;
	memcpy(&h, p, sizeof(h));
	if (h.magic != KV_REC_MAGIC || h.id != log->id || h.seq != log->seq ||
	    h.prev_crc != log->prev_crc ||
	    h.len > room * KV_SECTOR - KV_REC_HDR)
		return 0;
	n = kv_sectors_for(KV_REC_HDR + h.len);
	p = kv_read(rd, log->pos, n, &err);
	if (p == NULL)
		return err;
	crc = h.crc;
	h.crc = 0;
	if (kv_crc32c(kv_crc32c(0, &h, sizeof(h)), p + KV_REC_HDR, h.len) != crc)
		return 0;
	r = kv_ops_apply(log->db, p + KV_REC_HDR, h.len, h.nops);
	if (r == -1)
		return 0;
	if (r != 0)
		return -KV_ENOMEM;
	*last = h.time;
	log->pos += n;
	log->seq++;
	log->prev_crc = crc;
	log->st.replayed_records++;
	log->st.replayed_ops += h.nops;
	return 1;
}

struct kv_shift {
	int64_t last, now;
};

static int kv_shift_one(void *ctx, struct kv_entry *e)
{
	const struct kv_shift *s = ctx;

	if (e->expire == KV_NO_EXPIRE)
		return 0;
	if (e->expire <= s->last)
		return 1;
	/* remaining = expire - last > 0; saturate far-future values */
	if ((uint64_t)e->expire - (uint64_t)s->last >
	    (uint64_t)INT64_MAX - (uint64_t)(s->now > 0 ? s->now : 0))
		e->expire = INT64_MAX;
	else
		e->expire = s->now + (e->expire - s->last);
	if (e->expire == KV_NO_EXPIRE)
		e->expire = 1;
	return 0;
}

static int kv_replay(struct kv_log *log, int64_t now)
{
	struct kv_reader rd;
	int64_t last = 0;
	int r, any = 0;

	memset(&rd, 0, sizeof(rd));
	rd.log = log;
	rd.end = log->first[log->region] + log->rsect;
	while ((r = kv_replay_one(log, &rd, &last)) == 1)
		any = 1;
	kv_free(log->a, rd.buf, rd.cap);
	if (r < 0)
		return r;
	if (any) {
		struct kv_shift s = { last, now };

		(void)kv_db_foreach(log->db, kv_shift_one, &s);
	}
	return 0;
}

/* ---- open / close ---------------------------------------------------------- */

static int kv_log_format(struct kv_log *log, uint64_t epoch, int64_t now)
{
	struct kv_log_hdr h;
	uint8_t zero[KV_SECTOR];

	kv_log_start(log, epoch, kv_new_id(log, epoch, now), 0);
	memset(zero, 0, sizeof(zero));
	if (log->dev.write(log->dev.ctx, (epoch + 1) % 2, zero, 1) != 0)
		return -KV_EIO;
	kv_hdr_fill(log, &h, epoch, log->id, 0);
	log->st.formatted = 1;
	return kv_hdr_write(log, &h);
}

/* The valid header with the highest epoch: its slot, or -1.  *maxep gets
 * the highest epoch of any slot that passes its checksum. */
static int kv_hdr_pick(struct kv_log *log, struct kv_log_hdr *out,
		       uint64_t *maxep)
{
	uint8_t sect[2 * KV_SECTOR];
	int best = -1;

	*maxep = 0;
	if (log->dev.read(log->dev.ctx, 0, sect, 2) != 0)
		return -2;
	for (int i = 0; i < 2; i++) {
		struct kv_log_hdr h;

		memcpy(&h, sect + i * KV_SECTOR, sizeof(h));
		if (h.magic == KV_LOG_MAGIC && h.crc == kv_hdr_crc(&h) &&
		    h.epoch > *maxep)
			*maxep = h.epoch;
		if (!kv_hdr_ok(&h, log->dev.sectors))
			continue;
		if (best < 0 || h.epoch > out->epoch) {
			*out = h;
			best = i;
		}
	}
	return best;
}

int kv_log_open(struct kv_log *log, const struct kv_logdev *dev,
		const struct kv_alloc *a, struct kv_db *db, int64_t now,
		uint64_t salt)
{
	struct kv_log_hdr h;
	uint64_t maxep;
	int slot;

	memset(log, 0, sizeof(*log));
	log->dev = *dev;
	log->a = a;
	log->db = db;
	log->salt = kv_mix64(salt);
	if (dev->sectors < KV_LOG_MIN_SECTORS)
		return -KV_EINVAL;
	log->rsect = ((dev->sectors - KV_LOG_FIRST) / 2) & ~(uint64_t)7;
	log->first[0] = KV_LOG_FIRST;
	log->first[1] = KV_LOG_FIRST + log->rsect;
	kv_buf_init(&log->batch, a);
	kv_batch_reset(&log->batch);
	if (log->batch.len == 0)
		return -KV_ENOMEM;
	slot = kv_hdr_pick(log, &h, &maxep);
	if (slot == -2)
		return -KV_EIO;
	if (slot < 0)
		return kv_log_format(log, maxep + 1, now);
	log->first[0] = h.region_first[0];
	log->first[1] = h.region_first[1];
	log->rsect = h.region_sectors;
	kv_log_start(log, h.epoch, h.id, h.region);
	return kv_replay(log, now);
}

void kv_log_close(struct kv_log *log)
{
	kv_buf_free(&log->batch);
}
