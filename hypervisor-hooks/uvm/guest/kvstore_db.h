/*
 * kvstore_db.h - the kvstore data store: a chained hash table of binary-
 * safe string keys and values with optional expiry times.  Portable C11
 * (kvstore_sys.h); memory from a struct kv_alloc.
 *
 * Times are milliseconds on the caller's clock (signed; KV_NO_EXPIRE = 0
 * means "never").  An entry whose expire <= now is dead: lookups taking a
 * `now` remove it lazily and report it absent; pass KV_NOW_NEVER to look
 * without expiring (log replay).  Such removals are reported through
 * on_expire, so a caller can make them durable (kvstore_cmd.c logs a DEL).
 *
 * Invariants: count = entries in the table (dead ones included until
 * removed); nexpires = entries with expire != KV_NO_EXPIRE; the table has
 * mask + 1 buckets, a power of two, and grows when count exceeds it.
 */
#ifndef KVSTORE_DB_H
#define KVSTORE_DB_H

#include "kvstore_sys.h"

#define KV_NO_EXPIRE 0
#define KV_NOW_NEVER INT64_MIN

struct kv_entry {
	struct kv_entry *next;
	uint64_t hash;
	int64_t expire;
	uint32_t klen;
	uint32_t vlen;
	uint8_t data[];   /* key, then value */
};

struct kv_db {
	const struct kv_alloc *a;
	/* Called for every dead entry found and removed by get/del/size
	 * (not by foreach or replay), before it is freed.  May be NULL. */
	void (*on_expire)(void *ctx, const struct kv_entry *e);
	void *on_expire_ctx;
	struct kv_entry **tab;
	size_t mask;
	size_t count;
	size_t nexpires;
	uint64_t seed;
};

static inline const uint8_t *kv_entry_key(const struct kv_entry *e)
{
	return e->data;
}

static inline const uint8_t *kv_entry_val(const struct kv_entry *e)
{
	return e->data + e->klen;
}

/* 0, or -1 when out of memory. */
int kv_db_init(struct kv_db *db, const struct kv_alloc *a, uint64_t seed);
void kv_db_free(struct kv_db *db);

/* The live entry for key, or NULL (absent or expired, then removed). */
struct kv_entry *kv_db_get(struct kv_db *db, const uint8_t *key,
			   size_t klen, int64_t now);
/* Insert or replace key (new expiry as given): the entry, or NULL when
 * out of memory (the old value is then untouched). */
struct kv_entry *kv_db_set(struct kv_db *db, const uint8_t *key,
			   size_t klen, const uint8_t *val, size_t vlen,
			   int64_t expire);
/* Remove key: 1 if a live entry was removed, else 0. */
int kv_db_del(struct kv_db *db, const uint8_t *key, size_t klen,
	      int64_t now);
void kv_db_set_expire(struct kv_db *db, struct kv_entry *e, int64_t expire);
void kv_db_flush(struct kv_db *db);
/* Live entries (dead ones are removed first when any have expiries). */
size_t kv_db_size(struct kv_db *db, int64_t now);
size_t kv_db_expires(struct kv_db *db, int64_t now);

/*
 * Visit every entry.  fn returns 0 to go on, 1 to delete the entry (it is
 * freed), or a negative value to stop (returned).  Entries must not be
 * added or removed by fn otherwise.
 */
int kv_db_foreach(struct kv_db *db,
		  int (*fn)(void *ctx, struct kv_entry *e), void *ctx);

#endif
