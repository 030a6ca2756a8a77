/*
 * disksync.h - peer-to-peer disk replication.
 *
 * This part: disk writes in epochs (Remus semantics).  On the primary a
 * write log (ds_log) collects every guest block write, copied as it is
 * made, into the open epoch; a checkpoint closes the epoch, the replicator
 * streams its writes as DISK_WRITE records, and the epoch's writes are
 * dropped once the standby acknowledges it.  On the standby a replica
 * (ds_replica) writes the initial copy ("base" records) straight to its
 * image, buffers the writes of the open epoch, and applies them in order
 * only when that epoch commits; an epoch that never commits is discarded
 * whole.  On failover the standby's image therefore matches its memory
 * image exactly.
 *
 * Later parts (DRBD-style protocols, dirty bitmaps and resync, verify,
 * generation ids) add their own objects next to these two; the DISK_WRITE
 * record is the unit they share.
 *
 * DISK_WRITE body (big-endian; docs/wire-format.md, docs/disk-sync.md):
 *   u32 disk      0 (one disk per VM for now)
 *   u32 kind      DS_KIND_EPOCH or DS_KIND_BASE
 *   u64 offset    bytes, a multiple of DS_SECTOR
 *   u32 length    bytes, a multiple of DS_SECTOR, 1 .. DS_WRITE_MAX
 *   u32 reserved  0
 *   length bytes of data
 *
 * Threads: ds_log_write may be called from any thread (the block back
 * end's); the other ds_log calls come from the replicator.  A ds_replica
 * is used by one thread.  Errors are -errno; decoders write a message
 * naming the bad field and value into err.
 */
#ifndef TANDEM_DISKSYNC_H
#define TANDEM_DISKSYNC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define DS_SECTOR 512u
#define DS_WRITE_MAX (1u << 20)
#define DS_WRITE_HEADER 24u
#define DS_ERR_MAX 256

enum ds_kind {
	DS_KIND_EPOCH = 0, /* a guest write of one epoch: buffered, applied
			      at that epoch's commit */
	DS_KIND_BASE = 1,  /* part of the initial copy: written at once */
};

struct ds_write {
	uint32_t disk;
	uint32_t kind;
	uint64_t offset;
	uint32_t length;
	const uint8_t *data; /* points into the decoded body */
};

/* Encode one DISK_WRITE body into buf (DS_WRITE_HEADER + length bytes);
 * -EINVAL for what the decoder would refuse. */
int ds_write_encode(const struct ds_write *w, uint8_t *buf, size_t cap,
		    size_t *len);
/* Decode and check a body against a disk of disk_bytes. */
int ds_write_decode(const uint8_t *body, size_t len, uint64_t disk_bytes,
		    struct ds_write *out, char *err, size_t errlen);

/* Called with each record body the log or the base copy produces. */
typedef int (*ds_emit_fn)(void *arg, const uint8_t *body, size_t len);

/* ---- primary: the write log ------------------------------------------ */

struct ds_log;

struct ds_log_stats {
	uint64_t open_bytes;     /* data bytes in the open epoch */
	uint64_t pending_bytes;  /* data bytes in closed, unacknowledged epochs */
	uint64_t pending_epochs;
	uint64_t writes;         /* writes logged since creation */
	uint64_t bytes;          /* data bytes logged since creation */
};

int ds_log_new(uint64_t disk_bytes, struct ds_log **out);
void ds_log_free(struct ds_log *log);          /* accepts NULL */
/* Copy one guest write (offset and len multiples of DS_SECTOR, inside the
 * disk) into the open epoch.  -EINVAL for a write outside the disk,
 * -ENOMEM when it cannot be kept: the log then stays broken (every later
 * call fails) and the replicator must fall back to a full copy. */
int ds_log_write(struct ds_log *log, uint64_t offset, const struct iovec *iov,
		 int iovcnt, size_t len);
/* Close the open epoch as `epoch` (strictly increasing); later writes go
 * to the next one. */
int ds_log_cut(struct ds_log *log, uint64_t epoch);
/* Emit, in the order they were made, the writes of the closed epochs in
 * (after, upto] as DS_KIND_EPOCH bodies (writes over DS_WRITE_MAX are
 * split).  Stops at and returns the first nonzero emit result. */
int ds_log_emit(struct ds_log *log, uint64_t after, uint64_t upto,
		ds_emit_fn emit, void *arg);
/* The standby has committed every epoch <= epoch: drop them. */
void ds_log_acked(struct ds_log *log, uint64_t epoch);
void ds_log_stats(struct ds_log *log, struct ds_log_stats *out);
/* The memory a log may hold (its buffers, open and closed epochs) is
 * capped, DS_LOG_LIMIT unless set here; a write that would take it past
 * the cap breaks the log as above.  bytes 0 is -EINVAL.  A lower cap than
 * what is held takes effect at the next write. */
#define DS_LOG_LIMIT (1ull << 30)
int ds_log_set_limit(struct ds_log *log, uint64_t bytes);

/* The initial copy: read the image at fd (disk_bytes long) in chunks of
 * DS_WRITE_MAX and emit every chunk that is not all zero as a DS_KIND_BASE
 * body.  progress (may be NULL) is called after each chunk. */
int ds_base_emit(int fd, uint64_t disk_bytes, ds_emit_fn emit, void *arg,
		 void (*progress)(void *arg, uint64_t done, uint64_t total));

/* A guest's disk image: create it at `size` bytes if it is missing; an
 * existing one of another size is left alone (-EEXIST).  err names the
 * path and both sizes. */
int ds_image_prepare(const char *path, uint64_t size, char *err,
		     size_t errlen);

/* ---- standby: the replica --------------------------------------------- */

struct ds_replica;

struct ds_replica_stats {
	uint64_t staged_bytes;   /* buffered for the open epoch */
	uint64_t applied_bytes;  /* applied by commits since creation */
	uint64_t base_bytes;     /* written by base records */
	uint64_t committed;      /* last committed epoch */
};

/* Open (creating if missing) the image at path and size it to disk_bytes
 * (a multiple of DS_SECTOR); an existing image of another size is refused
 * with -EEXIST. */
int ds_replica_open(const char *path, uint64_t disk_bytes,
		    struct ds_replica **out, char *err, size_t errlen);
void ds_replica_free(struct ds_replica *r);    /* accepts NULL */
/* Before a full copy: make every byte of the image zero (the base copy
 * skips zero chunks) and drop anything staged. */
int ds_replica_reset(struct ds_replica *r);
/* One DISK_WRITE body of epoch `epoch`: a base chunk is written at once;
 * an epoch write is copied into the stage.  Nothing is applied on error. */
int ds_replica_recv(struct ds_replica *r, uint64_t epoch, const uint8_t *body,
		    size_t len, char *err, size_t errlen);
/* Epoch `epoch` committed: apply every staged write in arrival order,
 * fdatasync, and empty the stage. */
int ds_replica_commit(struct ds_replica *r, uint64_t epoch);
/* The open epoch will never commit: drop the stage. */
void ds_replica_discard(struct ds_replica *r);
void ds_replica_stats(const struct ds_replica *r, struct ds_replica_stats *out);

#endif
