/*
 * ds_log.c - the primary's write log: guest writes kept per epoch until
 * the standby has committed them (docs/disk-sync.md).
 *
 * An epoch is a list of chunks, each a malloc'd buffer holding finished
 * DISK_WRITE bodies (DS_KIND_EPOCH) back to back: ds_log_write encodes the
 * header(s) and copies the data in, one memcpy per iovec piece, so
 * ds_log_emit hands out pointers into the chunks without copying.  A
 * write over DS_WRITE_MAX is stored as several bodies, all in one buffer;
 * a write that does not fit the last chunk starts a new one of
 * max(DS_LOG_CHUNK, its size) bytes.
 *
 * Locking.  The mutex guards everything but disk_bytes; ds_log_write
 * (any thread) only appends to the open epoch.  ds_log_emit walks closed
 * epochs and calls emit with the mutex dropped, so a slow emit (a link
 * under back-pressure) never holds up the guest's writes, and emit may
 * call back into the log.  That walk is safe because, while `emitting`
 * is nonzero, nothing it can reach changes:
 *  - ds_log_cut only appends, and the walk stops at the tail it saw when
 *    it started, never reading a next pointer cut may be writing;
 *  - ds_log_acked (which the replicator may call from its receiver
 *    thread) records the ack but frees nothing; the last emit out frees
 *    what was acked meanwhile.
 * The bytes of a closed epoch were written before the cut that closed it,
 * under the mutex, which emit takes before walking.
 *
 * Invariants:
 *  - mem is the bytes of every chunk held, open and closed, and stays
 *    under limit: a write that would pass it breaks the log instead.
 *  - A broken log stays broken; it drops its open epoch at once (it can
 *    never be sent) and keeps closed epochs until acked or freed.
 *  - Closed epochs are in increasing epoch order, all <= last_cut, and
 *    all > acked whenever no emit is running.
 */
#include "ds_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define DS_LOG_CHUNK (1u << 20)

struct ds_chunk {
	struct ds_chunk *next;
	size_t used;            /* bytes of data[] holding bodies */
	size_t size;            /* bytes of data[] */
	uint8_t data[];
};

/* The open epoch, or one closed epoch. */
struct ds_epoch {
	struct ds_epoch *next;  /* next closed epoch, newer */
	uint64_t epoch;         /* 0 while open */
	uint64_t bytes;         /* guest data bytes */
	uint64_t mem;           /* chunk bytes, struct ds_chunk included */
	struct ds_chunk *head, *tail;
};

struct ds_log {
	pthread_mutex_t lock;
	uint64_t disk_bytes;    /* immutable */
	uint64_t limit;
	uint64_t mem;
	bool broken;
	struct ds_epoch open;
	struct ds_epoch *closed, *closed_tail;
	uint64_t last_cut;      /* epochs start at 1 */
	uint64_t acked;         /* highest epoch acknowledged */
	unsigned emitting;      /* ds_log_emit calls walking closed epochs */
	struct ds_log_stats st; /* all but open_bytes, which is open.bytes */
};

/* ---- chunks ------------------------------------------------------------- */

static void chunks_free(struct ds_chunk *c)
{
	while (c) {
		struct ds_chunk *next = c->next;

		free(c);
		c = next;
	}
}

/* Room for `need` bytes at the end of the open epoch, or NULL (and why)
 * if the cap or malloc says no.  Called with the lock held. */
static uint8_t *open_reserve(struct ds_log *log, size_t need,
			     const char **why)
{
	struct ds_chunk *t = log->open.tail;
	size_t size = need > DS_LOG_CHUNK ? need : DS_LOG_CHUNK;
	uint64_t cost = sizeof(*t) + (uint64_t)size;

	if (t && t->size - t->used >= need) {
		t->used += need;
		return t->data + t->used - need;
	}
	*why = "over its cap";
	if (log->mem > log->limit || cost > log->limit - log->mem)
		return NULL;
	*why = "out of memory";
	t = malloc(sizeof(*t) + size);
	if (!t)
		return NULL;
	t->next = NULL;
	t->used = need;
	t->size = size;
	if (log->open.tail)
		log->open.tail->next = t;
	else
		log->open.head = t;
	log->open.tail = t;
	log->open.mem += cost;
	log->mem += cost;
	return t->data;
}

/* Drops the open epoch and marks the log broken.  Lock held. */
static int log_break(struct ds_log *log, const char *why, uint64_t need)
{
	log_error("disk-sync: write log broken: %s (%" PRIu64 " bytes needed, "
		  "%" PRIu64 " held, cap %" PRIu64 "); the standby needs a "
		  "full copy", why, need, log->mem, log->limit);
	log->broken = true;
	chunks_free(log->open.head);
	log->mem -= log->open.mem;
	memset(&log->open, 0, sizeof(log->open));
	return -ENOMEM;
}

/* ---- writes ------------------------------------------------------------- */

/* Position in an iovec array, for copying it out piece by piece. */
struct iov_pos {
	const struct iovec *iov;
	size_t off;
};

/* Copies n bytes on from pos; empty iovecs are stepped over.  pos never
 * looks at an iovec past the last byte the write holds. */
static void iov_copy(struct iov_pos *pos, uint8_t *dst, size_t n)
{
	while (n) {
		size_t left = pos->iov->iov_len - pos->off;
		size_t k = n < left ? n : left;

		memcpy(dst, (const uint8_t *)pos->iov->iov_base + pos->off, k);
		dst += k;
		n -= k;
		pos->off += k;
		if (pos->off == pos->iov->iov_len) {
			pos->iov++;
			pos->off = 0;
		}
	}
}

static size_t write_bodies(size_t len)
{
	return (len + DS_WRITE_MAX - 1) / DS_WRITE_MAX;
}

/* Encodes the write as DS_WRITE_MAX pieces at dst. */
static void write_fill(uint8_t *dst, uint64_t offset, const struct iovec *iov,
		       size_t len)
{
	struct iov_pos pos = { iov, 0 };

	while (len) {
		uint32_t n = len < DS_WRITE_MAX ? (uint32_t)len : DS_WRITE_MAX;

		ds_put_header(dst, DS_KIND_EPOCH, offset, n);
		iov_copy(&pos, dst + DS_WRITE_HEADER, n);
		dst += DS_WRITE_HEADER + n;
		offset += n;
		len -= n;
	}
}

static int write_check(const struct ds_log *log, uint64_t offset,
		       const struct iovec *iov, int iovcnt, size_t len)
{
	size_t sum = 0;
	int i;

	if (offset % DS_SECTOR || len % DS_SECTOR || iovcnt < 0 ||
	    (iovcnt && !iov))
		return -EINVAL;
	if (len > log->disk_bytes || offset > log->disk_bytes - len)
		return -EINVAL;
	for (i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len > len - sum ||
		    (iov[i].iov_len && !iov[i].iov_base))
			return -EINVAL;
		sum += iov[i].iov_len;
	}
	return sum == len ? 0 : -EINVAL;
}

/*
 * len 0 is accepted and logs nothing.  disk_bytes <= INT64_MAX bounds
 * len, so the size with headers cannot overflow.
 */
int ds_log_write(struct ds_log *log, uint64_t offset, const struct iovec *iov,
		 int iovcnt, size_t len)
{
	const char *why = NULL;
	size_t need;
	uint8_t *dst;
	int rc;

	rc = write_check(log, offset, iov, iovcnt, len);
	if (rc || len == 0)
		return rc;
	need = len + write_bodies(len) * DS_WRITE_HEADER;
	pthread_mutex_lock(&log->lock);
	if (log->broken) {
		rc = -ENOMEM;
	} else if (!(dst = open_reserve(log, need, &why))) {
		rc = log_break(log, why, need);
	} else {
		write_fill(dst, offset, iov, len);
		log->open.bytes += len;
		log->st.writes++;
		log->st.bytes += len;
	}
	pthread_mutex_unlock(&log->lock);
	return rc;
}

/* ---- epochs ------------------------------------------------------------- */

int ds_log_cut(struct ds_log *log, uint64_t epoch)
{
	struct ds_epoch *e = malloc(sizeof(*e));
	int rc = 0;

	pthread_mutex_lock(&log->lock);
	if (log->broken)
		rc = -ENOMEM;
	else if (epoch <= log->last_cut)
		rc = -EINVAL;
	else if (!e)
		rc = log_break(log, "no memory to close an epoch", sizeof(*e));
	if (!rc) {
		*e = log->open;
		e->epoch = epoch;
		memset(&log->open, 0, sizeof(log->open));
		if (log->closed_tail)
			log->closed_tail->next = e;
		else
			log->closed = e;
		log->closed_tail = e;
		log->last_cut = epoch;
		log->st.pending_bytes += e->bytes;
		log->st.pending_epochs++;
	}
	pthread_mutex_unlock(&log->lock);
	if (rc)
		free(e);
	return rc;
}

static int epoch_emit(const struct ds_epoch *e, ds_emit_fn emit, void *arg)
{
	const struct ds_chunk *c;
	int rc;

	for (c = e->head; c; c = c->next) {
		size_t off = 0;

		while (off < c->used) {
			size_t n = ds_body_len(c->data + off);

			rc = emit(arg, c->data + off, n);
			if (rc)
				return rc;
			off += n;
		}
	}
	return 0;
}

/* The epochs in (after, upto] from e on, going no further than last. */
static int epochs_emit(const struct ds_epoch *e, const struct ds_epoch *last,
		       uint64_t after, uint64_t upto, ds_emit_fn emit,
		       void *arg)
{
	int rc;

	for (; e && e->epoch <= upto; e = e == last ? NULL : e->next) {
		if (e->epoch > after) {
			rc = epoch_emit(e, emit, arg);
			if (rc)
				return rc;
		}
	}
	return 0;
}

/*
 * Detaches the closed epochs <= acked, unless an emit is walking them (the
 * last one out calls this again).  Lock held; the caller frees the list
 * with epochs_free once it has dropped the lock, so that writers need not
 * wait for munmap.
 */
static struct ds_epoch *closed_detach(struct ds_log *log)
{
	struct ds_epoch *drop = NULL, **tailp = &drop, *e;

	if (log->emitting)
		return NULL;
	while ((e = log->closed) && e->epoch <= log->acked) {
		log->closed = e->next;
		log->mem -= e->mem;
		log->st.pending_bytes -= e->bytes;
		log->st.pending_epochs--;
		*tailp = e;
		tailp = &e->next;
	}
	*tailp = NULL;
	if (!log->closed)
		log->closed_tail = NULL;
	return drop;
}

static void epochs_free(struct ds_epoch *e)
{
	while (e) {
		struct ds_epoch *next = e->next;

		chunks_free(e->head);
		free(e);
		e = next;
	}
}

/*
 * -EINVAL for a range that is not (after, upto] with upto closed; -ENOENT
 * when part of it was acked and dropped already.  Lock held.
 */
static int emit_check(const struct ds_log *log, uint64_t after, uint64_t upto)
{
	if (log->broken)
		return -ENOMEM;
	if (after > upto || upto > log->last_cut)
		return -EINVAL;
	if (after < upto && after < log->acked)
		return -ENOENT;
	return 0;
}

int ds_log_emit(struct ds_log *log, uint64_t after, uint64_t upto,
		ds_emit_fn emit, void *arg)
{
	const struct ds_epoch *first, *last;
	struct ds_epoch *drop;
	int rc;

	pthread_mutex_lock(&log->lock);
	rc = emit_check(log, after, upto);
	first = log->closed;
	last = log->closed_tail;
	if (!rc)
		log->emitting++;
	pthread_mutex_unlock(&log->lock);
	if (rc)
		return rc;
	/* Unlocked: see "Locking" at the top. */
	rc = epochs_emit(first, last, after, upto, emit, arg);
	pthread_mutex_lock(&log->lock);
	log->emitting--;
	drop = closed_detach(log);
	pthread_mutex_unlock(&log->lock);
	epochs_free(drop);
	return rc;
}

/* Accepts NULL (a replicator without a disk has no log). */
void ds_log_acked(struct ds_log *log, uint64_t epoch)
{
	struct ds_epoch *drop;

	if (!log)
		return;
	pthread_mutex_lock(&log->lock);
	if (epoch > log->acked)
		log->acked = epoch;
	drop = closed_detach(log);
	pthread_mutex_unlock(&log->lock);
	epochs_free(drop);
}

/* ---- life cycle --------------------------------------------------------- */

int ds_log_new(uint64_t disk_bytes, struct ds_log **out)
{
	struct ds_log *log;
	int rc;

	if (!disk_bytes || disk_bytes % DS_SECTOR || disk_bytes > INT64_MAX)
		return -EINVAL;
	log = calloc(1, sizeof(*log));
	if (!log)
		return -ENOMEM;
	rc = pthread_mutex_init(&log->lock, NULL);
	if (rc) {
		free(log);
		return -rc;
	}
	log->disk_bytes = disk_bytes;
	log->limit = DS_LOG_LIMIT;
	*out = log;
	return 0;
}

void ds_log_free(struct ds_log *log)
{
	if (!log)
		return;
	ds_log_acked(log, UINT64_MAX);
	chunks_free(log->open.head);
	pthread_mutex_destroy(&log->lock);
	free(log);
}

int ds_log_set_limit(struct ds_log *log, uint64_t bytes)
{
	if (!bytes)
		return -EINVAL;
	pthread_mutex_lock(&log->lock);
	log->limit = bytes;
	pthread_mutex_unlock(&log->lock);
	return 0;
}

void ds_log_stats(struct ds_log *log, struct ds_log_stats *out)
{
	pthread_mutex_lock(&log->lock);
	*out = log->st;
	out->open_bytes = log->open.bytes;
	pthread_mutex_unlock(&log->lock);
}
