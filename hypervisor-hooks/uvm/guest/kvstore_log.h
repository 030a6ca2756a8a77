/*
 * kvstore_log.h - the kvstore write-ahead log: effects of write commands,
 * appended to a block device and made durable before their replies are
 * sent; replayed into the store at start.  Portable C11 (kvstore_sys.h):
 * the device is a set of callbacks (blkfront in the guest, memory in the
 * unit tests).
 *
 * Disk layout (512-byte sectors):
 *   sector 0, 1    header slots; the valid one with the higher epoch wins
 *   [8, 8+R)       region 0   R = ((disk - 8) / 2) rounded down to 8
 *   [8+R, 8+2R)    region 1
 * The header names the active region and the log id.  Records are
 * appended to the active region from its start, each a whole number of
 * sectors:
 *   struct kv_rec_hdr (64 bytes), then `len` bytes of ops, zero padding
 * A record is valid when magic, id (the header's), seq (1, 2, 3, ... in
 * its region), prev_crc (crc of the record before, 0 for the first) and
 * crc (CRC32C of the header with crc = 0, then the ops) all match and it
 * fits in the region; replay applies valid records in order and stops at
 * the first invalid one, so a torn or stale tail is never applied.
 *
 * Ops (8-byte aligned each): struct kv_op_hdr then key then value:
 *   SET key value expire   (expire: absolute ms on the writer's clock,
 *                           0 = none)
 *   DEL key
 *   EXPIRE key expire      (0 = persist)
 *   FLUSHALL
 * One record is one group commit: the ops of every write command of one
 * event-loop round (or of one MSET), applied all or nothing.
 *
 * Time: the guest clock is monotonic but not wall time, and a fresh boot
 * may start it anywhere.  Replay therefore measures expiries against the
 * time of the last record (T): keys with expire <= T are dropped, the
 * rest keep their remaining time (expire - T) counted from the replay.
 * Time the service was down does not count against TTLs.
 *
 * Compaction: when the active region cannot take a record, the live keys
 * are written as SET records into the other region under a new id and
 * epoch, flushed, and then the header slot (epoch % 2) switches to it, so
 * a crash at any point leaves one complete log.
 */
#ifndef KVSTORE_LOG_H
#define KVSTORE_LOG_H

#include "kvstore_db.h"
#include "kvstore_resp.h"

#define KV_SECTOR 512
#define KV_LOG_MAGIC 0x0a0d474f4c564b54ULL  /* "TKVLOG\r\n" */
#define KV_LOG_VERSION 1
#define KV_REC_MAGIC 0x3152564bU            /* "KVR1" */
#define KV_LOG_FIRST 8                      /* first region sector */
#define KV_LOG_MIN_SECTORS 64
#define KV_LOG_CHUNK (1024 * 1024)          /* compaction record size */

enum kv_op_type {
	KV_OP_SET = 1,
	KV_OP_DEL = 2,
	KV_OP_EXPIRE = 3,
	KV_OP_FLUSHALL = 4,
};

struct kv_op_hdr {
	uint8_t type;
	uint8_t pad[3];
	uint32_t klen;
	uint32_t vlen;
	uint32_t pad2;
	int64_t expire;
};

struct kv_rec_hdr {
	uint32_t magic;
	uint32_t nops;
	uint64_t id;
	uint64_t seq;
	int64_t time;     /* writer's clock, ms */
	uint32_t len;     /* bytes of ops after this header */
	uint32_t prev_crc;
	uint32_t crc;
	uint8_t pad[20];
};

struct kv_log_hdr {
	uint64_t magic;
	uint32_t version;
	uint32_t region;
	uint64_t epoch;
	uint64_t id;
	uint64_t region_first[2];
	uint64_t region_sectors;
	uint32_t crc;
	uint32_t pad;
};

struct kv_logdev {
	int (*read)(void *ctx, uint64_t sector, void *buf, uint64_t n);
	int (*write)(void *ctx, uint64_t sector, const void *buf, uint64_t n);
	int (*flush)(void *ctx);
	/* optional: write, then flush, in one go (NULL: write + flush) */
	int (*write_flush)(void *ctx, uint64_t sector, const void *buf,
			   uint64_t n);
	void *ctx;
	uint64_t sectors;
};

struct kv_log_stats {
	uint64_t replayed_records, replayed_ops;
	uint64_t commits, commit_bytes, compactions;
	int formatted;            /* no valid header was found */
};

struct kv_log {
	struct kv_logdev dev;
	const struct kv_alloc *a;
	struct kv_db *db;
	uint64_t epoch, id;
	uint32_t region;
	uint64_t first[2], rsect;
	uint64_t pos;             /* next free sector (absolute) */
	uint64_t seq;             /* seq of the next record */
	uint32_t prev_crc;
	uint64_t salt;            /* mixed into new ids */
	struct kv_buf batch;      /* a record being collected: header + ops */
	uint32_t batch_ops;
	struct kv_log_stats st;
};

uint32_t kv_crc32c(uint32_t crc, const void *p, size_t n);

/* ---- ops (encoding into any kv_buf; the batch uses these) ---- */
void kv_op_put(struct kv_buf *b, uint8_t type, const uint8_t *key,
	       size_t klen, const uint8_t *val, size_t vlen, int64_t expire);
/* Bytes an op with these lengths takes. */
size_t kv_op_size(size_t klen, size_t vlen);
/* Check then apply ops[0..len) (nops of them) to db: 0, -1 malformed
 * (nothing applied), -2 out of memory (partly applied). */
int kv_ops_apply(struct kv_db *db, const uint8_t *ops, size_t len,
		 uint32_t nops);

/* ---- the log ---- */
/*
 * Open the log on dev and replay it into db (empty), `now` being the
 * current time in ms; a device without a valid header is formatted.
 * 0, or a negative errno (-EINVAL: device too small; -EIO; -ENOMEM).
 */
int kv_log_open(struct kv_log *log, const struct kv_logdev *dev,
		const struct kv_alloc *a, struct kv_db *db, int64_t now,
		uint64_t salt);
void kv_log_close(struct kv_log *log);
/*
 * Make room for one write command of about `bytes` of ops in the batch:
 * commits the batch and compacts the log if the region is full.  0, or
 * -ENOSPC (even an empty log cannot take it), -ENOMEM, -EIO.
 */
int kv_log_reserve(struct kv_log *log, size_t bytes, int64_t now);
/* The batch to append ops to (after kv_log_reserve). */
struct kv_buf *kv_log_batch(struct kv_log *log);
void kv_log_count_op(struct kv_log *log);
/* Write and flush the batch as one record (nothing if empty): 0 or -EIO. */
int kv_log_commit(struct kv_log *log, int64_t now);
/* Rewrite the live keys into the other region now. */
int kv_log_compact(struct kv_log *log, int64_t now);
/* Sectors of the active region in use / in total. */
uint64_t kv_log_used(const struct kv_log *log);
uint64_t kv_log_capacity(const struct kv_log *log);

#endif
