/*
 * blkfront.h - the guest front end of the uvm block device (uvm_dev.h).
 *
 * Ring ownership rule: the GUEST initialises the shared ring header
 * (UVM_RING_SHARED_INIT: req_prod = rsp_prod = 0, req_event = rsp_event
 * = 1) in blk_init(), at boot, before its first request.  The host back
 * end never writes req_prod or req_event; it may initialise the same
 * header when it builds a fresh guest (the result is identical), and it
 * treats a ring whose req_prod is 0 as empty.  After a restore the ring
 * is in guest memory and neither side re-initialises it; the back end
 * re-attaches (UVM_RING_BACK_ATTACH) and the front end's private indices
 * are in guest memory too.
 *
 * All calls are synchronous: they split the transfer into requests of up
 * to UVM_BLK_MAX_SEGS page segments, submit as many as the ring holds,
 * notify the device's port and wait on it (UVM_HC_BLOCK) until every
 * response is in.  Buffers whose address is a multiple of 512 are used
 * in place (any guest memory: image, heap, stack); other buffers are
 * bounced through pages allocated once at init.  The device's port is
 * kept masked except while a call waits, so other devices' events do not
 * wake those waits (and this device's events do not wake other waiters).
 * Calls are serialised by a lock; they may be made from any vCPU (a
 * waiting call binds the port to its own vCPU, evtchn_vcpu[]).
 *
 * Results are 0 or a negative errno: -ENODEV (no block device or
 * blk_init() failed), -EINVAL (range outside the disk, or a buffer
 * outside guest memory), -EIO (the device reported an error or answered
 * nonsense).
 */
#ifndef UVM_BLKFRONT_H
#define UVM_BLKFRONT_H

#include <stddef.h>
#include <stdint.h>

/* Find and attach the block device.  0, or -ENODEV / -ENOMEM. */
int blk_init(void);
/* Disk size in sectors (0 when there is no device). */
uint64_t blk_sectors(void);

int blk_read(uint64_t sector, void *buf, uint64_t nsectors);
int blk_write(uint64_t sector, const void *buf, uint64_t nsectors);
/* Make every completed write durable. */
int blk_flush(void);
/* Write, and return only once the data (and all earlier writes) are
 * durable. */
int blk_write_flush(uint64_t sector, const void *buf, uint64_t nsectors);

#endif
