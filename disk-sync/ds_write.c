/*
 * ds_write.c - the DISK_WRITE body (docs/disk-sync.md) and the base copy.
 *
 * Layout, big-endian: u32 disk, u32 kind, u64 offset, u32 length,
 * u32 reserved, then length bytes of data.  The body is exactly that long.
 *
 * Invariants:
 *  - Untrusted bytes are read only through struct wire_cursor, and every
 *    field is checked before the data is taken: a decoded write always
 *    lies inside the disk, is sector-aligned and 1..DS_WRITE_MAX long.
 *  - Encoder and decoder share one field check (fields_check), so the
 *    encoder refuses exactly what the decoder would (the encoder does not
 *    know the disk size: it only refuses offset + length overflowing).
 */
#include "ds_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wire.h"

_Static_assert(4 + 4 + 8 + 4 + 4 == DS_WRITE_HEADER, "DISK_WRITE header");
_Static_assert(DS_WRITE_MAX % DS_SECTOR == 0, "whole sectors per record");
_Static_assert((uint64_t)DS_WRITE_HEADER + DS_WRITE_MAX <= UINT32_MAX,
	       "a body fits a record's be32 length");

/* ---- helpers ------------------------------------------------------------ */

static void store_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void store_be64(uint8_t *p, uint64_t v)
{
	store_be32(p, (uint32_t)(v >> 32));
	store_be32(p + 4, (uint32_t)v);
}

void ds_put_header(uint8_t *p, uint32_t kind, uint64_t offset,
		   uint32_t length)
{
	store_be32(p, 0);
	store_be32(p + 4, kind);
	store_be64(p + 8, offset);
	store_be32(p + DS_OFF_LENGTH, length);
	store_be32(p + 20, 0);
}

size_t ds_body_len(const uint8_t *hdr)
{
	const uint8_t *p = hdr + DS_OFF_LENGTH;

	return DS_WRITE_HEADER + ((size_t)p[0] << 24 | (size_t)p[1] << 16 |
				  (size_t)p[2] << 8 | p[3]);
}

int ds_pread_all(int fd, void *p, size_t len, uint64_t off)
{
	uint8_t *b = p;

	while (len) {
		ssize_t n = pread(fd, b, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ENODATA;
		b += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int ds_pwrite_all(int fd, const void *p, size_t len, uint64_t off)
{
	const uint8_t *b = p;

	while (len) {
		ssize_t n = pwrite(fd, b, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		b += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* ---- encode and decode -------------------------------------------------- */

/* Records the first bad field in c; disk_bytes UINT64_MAX checks only
 * that offset + length does not overflow. */
static int fields_check(uint32_t disk, uint32_t kind, uint64_t offset,
			uint32_t length, uint64_t disk_bytes,
			struct wire_cursor *c)
{
	if (disk != 0)
		return wire_cursor_fail(c, -EBADMSG, "disk %" PRIu32 " != 0",
					disk);
	if (kind != DS_KIND_EPOCH && kind != DS_KIND_BASE)
		return wire_cursor_fail(c, -EBADMSG, "kind %" PRIu32
					" unknown", kind);
	if (offset % DS_SECTOR)
		return wire_cursor_fail(c, -EBADMSG, "offset %" PRIu64
					" not a multiple of %u", offset,
					DS_SECTOR);
	if (length == 0 || length > DS_WRITE_MAX)
		return wire_cursor_fail(c, -EBADMSG, "length %" PRIu32
					" not in 1..%u", length, DS_WRITE_MAX);
	if (length % DS_SECTOR)
		return wire_cursor_fail(c, -EBADMSG, "length %" PRIu32
					" not a multiple of %u", length,
					DS_SECTOR);
	if (length > disk_bytes || offset > disk_bytes - length)
		return wire_cursor_fail(c, -EBADMSG, "offset %" PRIu64
					" + length %" PRIu32 " past the end"
					" of a %" PRIu64 "-byte disk", offset,
					length, disk_bytes);
	return 0;
}

int ds_write_encode(const struct ds_write *w, uint8_t *buf, size_t cap,
		    size_t *len)
{
	struct wire_cursor chk;

	wire_cursor_init(&chk, NULL, 0);
	if (fields_check(w->disk, w->kind, w->offset, w->length, UINT64_MAX,
			 &chk) || !w->data)
		return -EINVAL;
	if (!buf || cap < (size_t)DS_WRITE_HEADER + w->length)
		return -ENOSPC;
	ds_put_header(buf, w->kind, w->offset, w->length);
	memcpy(buf + DS_WRITE_HEADER, w->data, w->length);
	*len = (size_t)DS_WRITE_HEADER + w->length;
	return 0;
}

static void header_get(struct wire_cursor *c, struct ds_write *out,
		       uint32_t *reserved)
{
	wire_get_be32(c, &out->disk);
	wire_get_be32(c, &out->kind);
	wire_get_be64(c, &out->offset);
	wire_get_be32(c, &out->length);
	wire_get_be32(c, reserved);
}

int ds_write_decode(const uint8_t *body, size_t len, uint64_t disk_bytes,
		    struct ds_write *out, char *err, size_t errlen)
{
	struct wire_cursor c;
	uint32_t reserved;

	wire_cursor_init(&c, body, len);
	header_get(&c, out, &reserved);
	if (!c.rc)
		fields_check(out->disk, out->kind, out->offset, out->length,
			     disk_bytes, &c);
	if (!c.rc && reserved != 0)
		wire_cursor_fail(&c, -EBADMSG, "reserved %" PRIu32 " != 0",
				 reserved);
	if (!c.rc && len != (size_t)DS_WRITE_HEADER + out->length)
		wire_cursor_fail(&c, -EBADMSG, "body length %zu != %u + length"
				 " %" PRIu32, len, DS_WRITE_HEADER,
				 out->length);
	wire_get_bytes(&c, out->length, &out->data);
	if (c.rc) {
		errmsg_set(err, errlen, "DISK_WRITE: %s", c.err);
		out->data = NULL;
	}
	return c.rc;
}

/* ---- the base copy ------------------------------------------------------ */

static bool all_zero(const uint8_t *p, size_t n)
{
	uint64_t acc = 0;
	size_t i;

	/* n is a whole number of sectors: 8-byte words, no tail. */
	for (i = 0; i < n && !acc; i += 64) {
		uint64_t w[8];

		memcpy(w, p + i, sizeof(w));
		acc = w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7];
	}
	return acc == 0;
}

/* Reads the chunk at off into buf's data part and emits it unless zero. */
static int base_chunk(int fd, uint8_t *buf, uint64_t off, uint32_t n,
		      ds_emit_fn emit, void *arg)
{
	int rc = ds_pread_all(fd, buf + DS_WRITE_HEADER, n, off);

	if (rc || all_zero(buf + DS_WRITE_HEADER, n))
		return rc;
	ds_put_header(buf, DS_KIND_BASE, off, n);
	return emit(arg, buf, (size_t)DS_WRITE_HEADER + n);
}

int ds_base_emit(int fd, uint64_t disk_bytes, ds_emit_fn emit, void *arg,
		 void (*progress)(void *arg, uint64_t done, uint64_t total))
{
	uint64_t done;
	uint8_t *buf;
	int rc = 0;

	if (fd < 0 || !emit || disk_bytes % DS_SECTOR ||
	    disk_bytes > INT64_MAX)
		return -EINVAL;
	buf = malloc((size_t)DS_WRITE_HEADER + DS_WRITE_MAX);
	if (!buf)
		return -ENOMEM;
	for (done = 0; done < disk_bytes && !rc;) {
		uint64_t left = disk_bytes - done;
		uint32_t n = left < DS_WRITE_MAX ? (uint32_t)left : DS_WRITE_MAX;

		rc = base_chunk(fd, buf, done, n, emit, arg);
		done += n;
		if (!rc && progress)
			progress(arg, done, disk_bytes);
	}
	free(buf);
	return rc;
}
