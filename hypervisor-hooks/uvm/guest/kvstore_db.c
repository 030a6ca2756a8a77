/*
 * kvstore_db.c - the kvstore hash table (see kvstore_db.h).
 *
 * Keys hash with seeded FNV-1a (64-bit); buckets are singly linked
 * chains.  An entry is one allocation: header, key bytes, value bytes;
 * replacing a value allocates a new entry and frees the old one, so a
 * failed allocation leaves the table as it was.  The table doubles when
 * count exceeds the bucket count; if that allocation fails the table just
 * keeps longer chains.
 */
#include "kvstore_db.h"

#define KV_DB_MIN_BUCKETS 1024

static uint64_t kv_hash(const struct kv_db *db, const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ db->seed;

	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h ^ (h >> 29);
}

static size_t kv_entry_size(size_t klen, size_t vlen)
{
	return sizeof(struct kv_entry) + klen + vlen;
}

static void kv_entry_free(struct kv_db *db, struct kv_entry *e)
{
	kv_free(db->a, e, kv_entry_size(e->klen, e->vlen));
}

int kv_db_init(struct kv_db *db, const struct kv_alloc *a, uint64_t seed)
{
	size_t bytes = KV_DB_MIN_BUCKETS * sizeof(struct kv_entry *);

	memset(db, 0, sizeof(*db));
	db->a = a;
	db->seed = seed;
	db->tab = kv_malloc(a, bytes);
	if (db->tab == NULL)
		return -1;
	memset(db->tab, 0, bytes);
	db->mask = KV_DB_MIN_BUCKETS - 1;
	return 0;
}

void kv_db_free(struct kv_db *db)
{
	if (db->tab == NULL)
		return;
	kv_db_flush(db);
	kv_free(db->a, db->tab, (db->mask + 1) * sizeof(struct kv_entry *));
	db->tab = NULL;
}

static void kv_db_grow(struct kv_db *db)
{
	size_t n = (db->mask + 1) * 2, i;
	struct kv_entry **t;

	if (n > SIZE_MAX / sizeof(*t))
		return;
	t = kv_malloc(db->a, n * sizeof(*t));
	if (t == NULL)
		return;
	memset(t, 0, n * sizeof(*t));
	for (i = 0; i <= db->mask; i++) {
		struct kv_entry *e = db->tab[i], *next;

		for (; e != NULL; e = next) {
			next = e->next;
			e->next = t[e->hash & (n - 1)];
			t[e->hash & (n - 1)] = e;
		}
	}
	kv_free(db->a, db->tab, (db->mask + 1) * sizeof(*t));
	db->tab = t;
	db->mask = n - 1;
}

/* The link pointing at key's entry (or at the NULL ending its chain). */
static struct kv_entry **kv_db_find(struct kv_db *db, const uint8_t *key,
				    size_t klen, uint64_t h)
{
	struct kv_entry **pp = &db->tab[h & db->mask];

	for (; *pp != NULL; pp = &(*pp)->next) {
		const struct kv_entry *e = *pp;

		if (e->hash == h && e->klen == klen &&
		    memcmp(e->data, key, klen) == 0)
			break;
	}
	return pp;
}

static int kv_dead(const struct kv_entry *e, int64_t now)
{
	return e->expire != KV_NO_EXPIRE && now != KV_NOW_NEVER &&
	       e->expire <= now;
}

static void kv_db_unlink(struct kv_db *db, struct kv_entry **pp);

/* Remove a dead entry, telling on_expire first. */
static void kv_db_expire(struct kv_db *db, struct kv_entry **pp)
{
	if (db->on_expire != NULL)
		db->on_expire(db->on_expire_ctx, *pp);
	kv_db_unlink(db, pp);
}

static void kv_db_unlink(struct kv_db *db, struct kv_entry **pp)
{
	struct kv_entry *e = *pp;

	*pp = e->next;
	db->count--;
	if (e->expire != KV_NO_EXPIRE)
		db->nexpires--;
	kv_entry_free(db, e);
}

struct kv_entry *kv_db_get(struct kv_db *db, const uint8_t *key,
			   size_t klen, int64_t now)
{
	struct kv_entry **pp = kv_db_find(db, key, klen, kv_hash(db, key, klen));

	if (*pp == NULL)
		return NULL;
	if (kv_dead(*pp, now)) {
		kv_db_expire(db, pp);
		return NULL;
	}
	return *pp;
}

struct kv_entry *kv_db_set(struct kv_db *db, const uint8_t *key,
			   size_t klen, const uint8_t *val, size_t vlen,
			   int64_t expire)
{
	uint64_t h = kv_hash(db, key, klen);
	struct kv_entry **pp, *e;

	if (klen > UINT32_MAX || vlen > UINT32_MAX ||
	    vlen > SIZE_MAX - sizeof(*e) - klen)
		return NULL;
	e = kv_malloc(db->a, kv_entry_size(klen, vlen));
	if (e == NULL)
		return NULL;
	e->hash = h;
	e->expire = expire;
	e->klen = (uint32_t)klen;
	e->vlen = (uint32_t)vlen;
	if (klen > 0)
		memcpy(e->data, key, klen);
	if (vlen > 0)
		memcpy(e->data + klen, val, vlen);
	pp = kv_db_find(db, key, klen, h);
	if (*pp != NULL) {
		e->next = (*pp)->next;
		if ((*pp)->expire != KV_NO_EXPIRE)
			db->nexpires--;
		kv_entry_free(db, *pp);
	} else {
		e->next = NULL;
		db->count++;
	}
	*pp = e;
	if (expire != KV_NO_EXPIRE)
		db->nexpires++;
	if (db->count > db->mask + 1)
		kv_db_grow(db);
	return e;
}

int kv_db_del(struct kv_db *db, const uint8_t *key, size_t klen,
	      int64_t now)
{
	struct kv_entry **pp = kv_db_find(db, key, klen, kv_hash(db, key, klen));
	int live;

	if (*pp == NULL)
		return 0;
	live = !kv_dead(*pp, now);
	if (live)
		kv_db_unlink(db, pp);
	else
		kv_db_expire(db, pp);
	return live;
}

void kv_db_set_expire(struct kv_db *db, struct kv_entry *e, int64_t expire)
{
	if (e->expire != KV_NO_EXPIRE)
		db->nexpires--;
	e->expire = expire;
	if (expire != KV_NO_EXPIRE)
		db->nexpires++;
}

static int kv_flush_one(void *ctx, struct kv_entry *e)
{
	(void)ctx;
	(void)e;
	return 1;
}

void kv_db_flush(struct kv_db *db)
{
	(void)kv_db_foreach(db, kv_flush_one, NULL);
}

size_t kv_db_size(struct kv_db *db, int64_t now)
{
	if (db->nexpires == 0 || now == KV_NOW_NEVER)
		return db->count;
	for (size_t i = 0; i <= db->mask; i++) {
		struct kv_entry **pp = &db->tab[i];

		while (*pp != NULL) {
			if (kv_dead(*pp, now))
				kv_db_expire(db, pp);
			else
				pp = &(*pp)->next;
		}
	}
	return db->count;
}

size_t kv_db_expires(struct kv_db *db, int64_t now)
{
	(void)kv_db_size(db, now);
	return db->nexpires;
}

int kv_db_foreach(struct kv_db *db,
		  int (*fn)(void *ctx, struct kv_entry *e), void *ctx)
{
	for (size_t i = 0; i <= db->mask; i++) {
		struct kv_entry **pp = &db->tab[i];

		while (*pp != NULL) {
			int r = fn(ctx, *pp);

			if (r < 0)
				return r;
			if (r == 1)
				kv_db_unlink(db, pp);
			else
				pp = &(*pp)->next;
		}
	}
	return 0;
}
