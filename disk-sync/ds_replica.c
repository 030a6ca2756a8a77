/*
 * ds_replica.c - the standby's copy of the disk (docs/disk-sync.md).
 *
 * Base records go straight to the image.  Epoch records are copied into
 * the stage, a FIFO of the open epoch's writes, and reach the image only
 * at that epoch's commit, in arrival order (so of two writes to one
 * sector the later wins, as on the primary).  A discarded epoch never
 * touches the image.
 *
 * Invariants:
 *  - The stage holds writes of one epoch only (stage_epoch); a record of
 *    another epoch is refused while it is not empty.
 *  - Nothing reaches the image or the stage from a body that fails to
 *    decode; a decoded write lies inside the image.
 *  - The stage holds at most DS_LOG_LIMIT data bytes, the most a
 *    primary's log keeps by default, so a peer cannot exhaust memory.
 *  - A failed commit keeps the stage: applying it again in order gives
 *    the same image, so the caller may retry.
 *  - dirty: something was written since the last fdatasync.
 */
#include "ds_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

struct ds_staged {
	struct ds_staged *next;
	uint64_t offset;
	uint32_t length;
	uint8_t data[];
};

struct ds_replica {
	int fd;
	uint64_t disk_bytes;
	struct ds_staged *head, **tailp;
	uint64_t stage_epoch;   /* meaningful while head != NULL */
	bool dirty;
	struct ds_replica_stats st;
};

/* ---- the stage ---------------------------------------------------------- */

static void stage_drop(struct ds_replica *r)
{
	struct ds_staged *s;

	while ((s = r->head)) {
		r->head = s->next;
		free(s);
	}
	r->tailp = &r->head;
	r->st.staged_bytes = 0;
}

static int stage_add(struct ds_replica *r, uint64_t epoch,
		     const struct ds_write *w, char *err, size_t errlen)
{
	struct ds_staged *s;

	if (r->head && r->stage_epoch != epoch) {
		errmsg_set(err, errlen, "DISK_WRITE of epoch %" PRIu64 " while "
			   "epoch %" PRIu64 " is staged", epoch,
			   r->stage_epoch);
		return -EPROTO;
	}
	if (w->length > DS_LOG_LIMIT - r->st.staged_bytes) {
		errmsg_set(err, errlen, "epoch %" PRIu64 ": over %llu staged "
			   "bytes", epoch, DS_LOG_LIMIT);
		return -ENOMEM;
	}
	s = malloc(sizeof(*s) + w->length);
	if (!s) {
		errmsg_set(err, errlen, "epoch %" PRIu64 ": no memory to stage"
			   " %" PRIu32 " bytes", epoch, w->length);
		return -ENOMEM;
	}
	s->next = NULL;
	s->offset = w->offset;
	s->length = w->length;
	memcpy(s->data, w->data, w->length);
	*r->tailp = s;
	r->tailp = &s->next;
	r->stage_epoch = epoch;
	r->st.staged_bytes += w->length;
	return 0;
}

/* ---- the image ---------------------------------------------------------- */

static int image_write(struct ds_replica *r, const uint8_t *p, uint32_t len,
		       uint64_t off)
{
	r->dirty = true;
	return ds_pwrite_all(r->fd, p, len, off);
}

static int image_sync(struct ds_replica *r)
{
	if (!r->dirty)
		return 0;
	if (fdatasync(r->fd))
		return -errno;
	r->dirty = false;
	return 0;
}

static int base_write(struct ds_replica *r, const struct ds_write *w,
		      char *err, size_t errlen)
{
	int rc = image_write(r, w->data, w->length, w->offset);

	if (rc) {
		errmsg_set(err, errlen, "base write of %" PRIu32 " bytes at %"
			   PRIu64 ": %s", w->length, w->offset, strerror(-rc));
		return rc;
	}
	r->st.base_bytes += w->length;
	return 0;
}

int ds_replica_recv(struct ds_replica *r, uint64_t epoch, const uint8_t *body,
		    size_t len, char *err, size_t errlen)
{
	struct ds_write w;
	int rc = ds_write_decode(body, len, r->disk_bytes, &w, err, errlen);

	if (rc)
		return rc;
	if (w.kind == DS_KIND_BASE)
		return base_write(r, &w, err, errlen);
	return stage_add(r, epoch, &w, err, errlen);
}

static int stage_apply(struct ds_replica *r)
{
	const struct ds_staged *s;
	int rc;

	for (s = r->head; s; s = s->next) {
		rc = image_write(r, s->data, s->length, s->offset);
		if (rc) {
			log_error("disk-sync: replica: write of %" PRIu32
				  " bytes at %" PRIu64 ": %s", s->length,
				  s->offset, strerror(-rc));
			return rc;
		}
	}
	return 0;
}

int ds_replica_commit(struct ds_replica *r, uint64_t epoch)
{
	int rc;

	if (r->head && r->stage_epoch != epoch) {
		log_error("disk-sync: replica: commit of epoch %" PRIu64
			  " while epoch %" PRIu64 " is staged", epoch,
			  r->stage_epoch);
		return -EPROTO;
	}
	rc = stage_apply(r);
	if (rc)
		return rc;
	rc = image_sync(r);
	if (rc) {
		log_error("disk-sync: replica: fdatasync: %s", strerror(-rc));
		return rc;
	}
	r->st.applied_bytes += r->st.staged_bytes;
	r->st.committed = epoch;
	stage_drop(r);
	return 0;
}

void ds_replica_discard(struct ds_replica *r)
{
	stage_drop(r);
}

int ds_replica_reset(struct ds_replica *r)
{
	stage_drop(r);
	r->dirty = true;
	if (ftruncate(r->fd, 0) || ftruncate(r->fd, (off_t)r->disk_bytes))
		return -errno;
	return 0;
}

/* ---- life cycle --------------------------------------------------------- */

/* Sizes a file this call created; removes it again if that fails. */
static int image_size_new(const char *path, int fd, uint64_t disk_bytes,
			  char *err, size_t errlen)
{
	int rc;

	if (ftruncate(fd, (off_t)disk_bytes) == 0)
		return 0;
	rc = -errno;
	errmsg_set(err, errlen, "%s: sizing to %" PRIu64 " bytes: %s", path,
		   disk_bytes, strerror(-rc));
	unlink(path);
	return rc;
}

/* An existing image must be a regular file of exactly disk_bytes. */
static int image_check(const char *path, int fd, uint64_t disk_bytes,
		       char *err, size_t errlen)
{
	struct stat st;

	if (fstat(fd, &st)) {
		int rc = -errno;

		errmsg_set(err, errlen, "%s: %s", path, strerror(-rc));
		return rc;
	}
	if (!S_ISREG(st.st_mode)) {
		errmsg_set(err, errlen, "%s: not a regular file", path);
		return -EINVAL;
	}
	if ((uint64_t)st.st_size != disk_bytes) {
		errmsg_set(err, errlen, "%s is %lld bytes, not the disk's %"
			   PRIu64, path, (long long)st.st_size, disk_bytes);
		return -EEXIST;
	}
	return 0;
}

static int image_open(const char *path, uint64_t disk_bytes, int *fdp,
		      char *err, size_t errlen)
{
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	int rc;

	if (fd >= 0) {
		rc = image_size_new(path, fd, disk_bytes, err, errlen);
	} else if (errno == EEXIST && (fd = open(path, O_RDWR | O_CLOEXEC)) >= 0) {
		rc = image_check(path, fd, disk_bytes, err, errlen);
	} else {
		rc = -errno;
		errmsg_set(err, errlen, "%s: %s", path, strerror(-rc));
		return rc;
	}
	if (rc)
		close(fd);
	else
		*fdp = fd;
	return rc;
}

int ds_replica_open(const char *path, uint64_t disk_bytes,
		    struct ds_replica **out, char *err, size_t errlen)
{
	struct ds_replica *r;
	int fd = -1, rc;

	if (!disk_bytes || disk_bytes % DS_SECTOR || disk_bytes > INT64_MAX) {
		errmsg_set(err, errlen, "disk size %" PRIu64 " is not a "
			   "nonzero multiple of %u", disk_bytes, DS_SECTOR);
		return -EINVAL;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		errmsg_set(err, errlen, "no memory");
		return -ENOMEM;
	}
	rc = image_open(path, disk_bytes, &fd, err, errlen);
	if (rc) {
		free(r);
		return rc;
	}
	r->fd = fd;
	r->disk_bytes = disk_bytes;
	r->tailp = &r->head;
	*out = r;
	return 0;
}

void ds_replica_free(struct ds_replica *r)
{
	if (!r)
		return;
	stage_drop(r);
	close(r->fd);
	free(r);
}

void ds_replica_stats(const struct ds_replica *r, struct ds_replica_stats *out)
{
	*out = r->st;
}

int ds_image_prepare(const char *path, uint64_t size, char *err,
		     size_t errlen)
{
	struct stat st;
	int fd, rc;

	if (stat(path, &st) == 0) {
		if ((uint64_t)st.st_size == size)
			return 0;
		errmsg_set(err, errlen, "disk %s has %lld bytes, not the %"
			   PRIu64 " configured; leaving it alone", path,
			   (long long)st.st_size, size);
		return -EEXIST;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)size) != 0) {
		rc = -errno;
		errmsg_set(err, errlen, "cannot create disk %s: %s", path,
			   strerror(-rc));
		if (fd >= 0) {
			close(fd);
			unlink(path);
		}
		return rc;
	}
	close(fd);
	return 0;
}
