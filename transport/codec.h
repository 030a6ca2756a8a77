/*
 * codec.h - page codecs for the transport: the body of PAGE_CODED records.
 *
 * A channel that streams guest pages again and again (each checkpoint
 * epoch re-sends the pages dirtied since the last) shrinks them per page
 * with the smallest of: zero-page elision, an XOR delta against the last
 * version of the page sent on the same channel (run-length coded),
 * lz4 on the page, or the raw page.  The byte layout, the cache policy
 * and every rule a reader enforces are in docs/page-codecs.md.
 *
 * Invariants:
 *  - One encoder/decoder pair per ordered channel, created with the same
 *    struct codec_opts.  Both keep a bounded XOR cache and change it only
 *    through the same deterministic steps, in entry order; so the decoder
 *    always holds the base the encoder XORed against.  Each body carries
 *    the options and a record sequence number, so a mismatched pair or a
 *    lost record is refused, never decoded against the wrong base.
 *  - The encoder reads each page's bytes once into its cache and encodes
 *    from that copy, so a page that changes during the call (pre-copy of
 *    a running guest) can never make the two caches differ.
 *  - A decoder that returned any error is failed for good: every later
 *    call returns -EBADMSG.  The caller fails the link.
 *  - Encoders and decoders are not thread-safe: one thread at a time (or
 *    one codec_pool, which runs an encoder's jobs one after another).
 *
 * Errors are 0 or -errno; decoder messages name the record part and quote
 * the bad value.  Nothing here logs.
 */
#ifndef TANDEM_CODEC_H
#define TANDEM_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wire.h"

/* Entry methods (docs/page-codecs.md section 4). */
enum codec_method {
	CODEC_ZERO = 0, /* all-zero page, no payload */
	CODEC_RAW = 1,  /* the 4096 bytes */
	CODEC_LZ4 = 2,  /* an lz4 block of the page, 1..4095 bytes */
	CODEC_XOR = 3,  /* zero-run coded XOR against the cached base */
};
#define CODEC_NR_METHODS 4

#define CODEC_HEADER_SIZE 8
#define CODEC_ENTRY_SIZE 8
#define CODEC_PFN_LIMIT (1ULL << 48)   /* pfns must be below this */
#define CODEC_CACHE_WAYS 4
#define CODEC_CACHE_LOG2_MIN 2         /* 4 pages: one set */
#define CODEC_CACHE_LOG2_MAX 20        /* 1 Mi pages = 4 GiB */
#define CODEC_CACHE_DEFAULT 4096       /* pages: 16 MiB */
#define CODEC_LZ4_ACCEL_MAX 65537

/* Largest body for count pages: every page raw.  At 1024 pages this is
 * WIRE_MAX_BODY. */
#define CODEC_BODY_MAX(count) \
	(CODEC_HEADER_SIZE + (size_t)(count) * (CODEC_ENTRY_SIZE + WIRE_PAGE_SIZE))

struct codec_opts {
	/*
	 * false: only zero elision and raw pages; no cache is kept and
	 * cache_pages and lz4_accel are ignored.  A decoder with compress off
	 * refuses LZ4 and XOR entries.
	 */
	bool compress;
	/* XOR cache size in pages: 0 (no XOR, lz4 only) or a power of two
	 * in 4 .. 2^20.  Default CODEC_CACHE_DEFAULT.  Each encoder and
	 * decoder allocates and faults in cache_pages * 4096 bytes when it
	 * is created, so that encoding never page-faults on it. */
	uint32_t cache_pages;
	/* LZ4_compress_fast acceleration, 1 .. 65537 (encoder only).
	 * Default 1. */
	int lz4_accel;
};

/* Counters; codec_enc_pages adds to them (zero the struct first). */
struct codec_stats {
	uint64_t pages;     /* pages encoded */
	uint64_t zero, raw, lz4, xor; /* pages per method */
	uint64_t lz4_bytes; /* payload bytes of LZ4 entries */
	uint64_t xor_bytes; /* payload bytes of XOR entries */
	uint64_t bytes_in;  /* pages * 4096 */
	uint64_t bytes_out; /* body bytes appended */
};

struct codec_enc;
struct codec_dec;

/* Defaults: compress on, 4096-page cache, acceleration 1. */
void codec_opts_init(struct codec_opts *o);
/* 0, or -EINVAL with a message quoting the bad field. */
int codec_opts_check(const struct codec_opts *o, char *err, size_t errlen);
const char *codec_method_name(unsigned method);

/* NULL with errno EINVAL (see codec_opts_check) or ENOMEM. */
struct codec_enc *codec_enc_new(const struct codec_opts *o);
void codec_enc_free(struct codec_enc *e);   /* accepts NULL */

/*
 * Appends one PAGE_CODED body (no record header) for count pages to out.
 * pages[i] points at the 4096 bytes of page pfn[i].  count 1..1024, pfns
 * distinct and < CODEC_PFN_LIMIT, else -EINVAL.  If out cannot grow,
 * -ENOMEM (or out's earlier sticky error) and the encoder is unchanged.
 * In either failure out may hold a partial body: discard it.  st may be
 * NULL.
 */
int codec_enc_pages(struct codec_enc *e, uint32_t count, const uint64_t *pfn,
		    const void *const *pages, struct wire_buf *out,
		    struct codec_stats *st);

/* NULL with errno EINVAL or ENOMEM. */
struct codec_dec *codec_dec_new(const struct codec_opts *o);
void codec_dec_free(struct codec_dec *d);   /* accepts NULL */

/*
 * Decodes one PAGE_CODED body.  First checks its whole structure (header,
 * options, sequence, count, every entry's method, length, pfn < nr_pages,
 * distinct pfns, payload bounds, exact body length, XOR runs and cache
 * hits) and emits nothing if any check fails.  Then decodes the pages in
 * entry order and calls sink(arg, pfn, page) for each; page holds 4096
 * bytes valid until sink returns.  An lz4 payload found corrupt there
 * stops the decode after the pages before it were emitted.
 *
 * Returns 0; -EBADMSG for a bad body (err says why, e.g. "PAGE_CODED:
 * entry 3: pfn 70000 past guest memory (65536 pages)"); -E2BIG for len >
 * WIRE_MAX_BODY; or sink's nonzero return.  After any error the decoder
 * is failed and every later call returns -EBADMSG.
 */
int codec_dec_pages(struct codec_dec *d, const uint8_t *body, size_t len,
		    uint64_t nr_pages,
		    int (*sink)(void *arg, uint64_t pfn, const uint8_t *page),
		    void *arg, char *err, size_t errlen);

/* ---- worker pool ------------------------------------------------------ */
/*
 * Runs codec_enc_pages off the caller's thread.  Jobs of one encoder run
 * one after another in submission order (its cache depends on that);
 * jobs of different encoders run in parallel.  Workers sleep on a
 * condition variable when idle.  An encoder with jobs in the pool must
 * not be used or freed by anyone else until they are complete.
 */
struct codec_pool;

struct codec_job {
	/* Set by the caller; must stay valid until the job is complete. */
	struct codec_enc *enc;
	uint32_t count;
	const uint64_t *pfn;
	const void *const *pages;
	struct wire_buf *out;
	struct codec_stats *st;      /* may be NULL */
	/* Optional: called on the worker thread once the job has run, just
	 * before it counts as complete.  Must not wait on the pool. */
	void (*done)(void *arg, struct codec_job *job);
	void *done_arg;
	/* Result: codec_enc_pages's return, valid once complete. */
	int rc;
	/* Private to the pool. */
	struct codec_job *next;
	bool complete;
};

/* nthreads 1..64, or 0 for one per online CPU (capped at 64).  NULL with
 * errno EINVAL, ENOMEM or pthread_create's error. */
struct codec_pool *codec_pool_new(unsigned nthreads);
/* 0, or -EINVAL (no encoder, or the pool is being freed).  The job is
 * queued behind the encoder's earlier jobs. */
int codec_pool_submit(struct codec_pool *p, struct codec_job *job);
/* Blocks until the job is complete; returns job->rc. */
int codec_pool_wait(struct codec_pool *p, struct codec_job *job);
/* Whether the job is complete, without blocking. */
bool codec_pool_done(struct codec_pool *p, struct codec_job *job);
/* Blocks until every job submitted so far is complete. */
void codec_pool_drain(struct codec_pool *p);
/* Completes every submitted job, stops the workers, frees.  Accepts NULL. */
void codec_pool_free(struct codec_pool *p);

#endif
