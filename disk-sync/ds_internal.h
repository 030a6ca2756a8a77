/*
 * ds_internal.h - helpers shared by the disk-sync sources (not an API).
 */
#ifndef TANDEM_DS_INTERNAL_H
#define TANDEM_DS_INTERNAL_H

#include "errmsg.h"
#include <stddef.h>
#include <stdint.h>

#include "disksync.h"

/* Offset of the be32 length inside a DISK_WRITE body. */
#define DS_OFF_LENGTH 16

/* Writes the 24-byte DISK_WRITE header for disk 0 at p. */
void ds_put_header(uint8_t *p, uint32_t kind, uint64_t offset,
		   uint32_t length);
/* Body length (header included) of a header the caller wrote itself. */
size_t ds_body_len(const uint8_t *hdr);



/* Full positional I/O: partial transfers and EINTR are retried.  0 or
 * -errno; a read that meets end of file is -ENODATA, a write that makes
 * no progress -EIO. */
int ds_pread_all(int fd, void *p, size_t len, uint64_t off);
int ds_pwrite_all(int fd, const void *p, size_t len, uint64_t off);

#endif
