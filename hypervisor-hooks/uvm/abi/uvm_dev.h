/*
 * uvm_dev.h - the split-driver devices of uvm: what the guest front ends
 * and the host back ends agree on.  Freestanding: <stdint.h> only.
 *
 * Each device appears in the shared-info device table (uvm_abi.h) with its
 * type, event channel and ring pages.  The front end notifies the device's
 * port after producing; the back end raises the same port after
 * producing.  Every index and length coming from the other side is
 * untrusted and checked before use.
 *
 * Block device: a Xen blkif-style request/response ring (uvm_ring.h).
 * A request moves up to UVM_BLK_MAX_SEGS segments, each a run of 512-byte
 * sectors inside one guest page, to or from consecutive disk sectors
 * starting at `sector`.  FLUSH makes every completed write durable;
 * WRITE_FLUSH is a write that completes only once durable.  status is 0 or
 * a negative errno.
 *
 * Stream device: two byte rings of framed messages, tx (guest -> host) and
 * rx (host -> guest).  The host terminates TCP connections from clients and
 * carries each as OPEN / DATA / CLOSE messages with a connection id; client
 * bytes never bypass the rings.  Flow control is by credit in both
 * directions: a sender may have at most the credit the receiver granted in
 * flight per connection (UVM_STREAM_WINDOW at OPEN, then CREDIT messages
 * as the receiver consumes).  A connection is gone when each side has both
 * sent and received CLOSE; only then may the host reuse its id.
 */
#ifndef UVM_DEV_H
#define UVM_DEV_H

#include <stdint.h>

#include "uvm_abi.h"
#include "uvm_ring.h"

/* Device types beyond the console (uvm_abi.h: UVM_DEV_CONSOLE = 1). */
#define UVM_DEV_BLOCK  2
#define UVM_DEV_STREAM 3

/* Fixed placement (inside the platform pfns below UVM_RESERVED_PFNS). */
#define UVM_PORT_BLOCK       8
#define UVM_PORT_STREAM      9
#define UVM_BLOCK_RING_PFN   4
#define UVM_BLOCK_RING_PAGES 2
#define UVM_STREAM_TX_PFN    16   /* guest -> host */
#define UVM_STREAM_RX_PFN    48   /* host -> guest */
#define UVM_STREAM_RING_PAGES 17  /* 64-byte header + 64 KiB of data */

/* ---- block ------------------------------------------------------------ */

#define UVM_BLK_SECTOR_SIZE 512
#define UVM_BLK_SECTORS_PER_PAGE 8
#define UVM_BLK_MAX_SEGS 8

enum uvm_blk_op {
	UVM_BLK_READ = 0,
	UVM_BLK_WRITE = 1,
	UVM_BLK_FLUSH = 2,
	UVM_BLK_WRITE_FLUSH = 3,
};

struct uvm_blk_seg {
	uint64_t pfn;        /* guest page */
	uint8_t first_sect;  /* 0..7: first sector within the page */
	uint8_t last_sect;   /* first_sect..7: last sector, inclusive */
	uint8_t pad[6];
};

struct uvm_blk_req {
	uint64_t id;         /* echoed in the response */
	uint64_t sector;     /* first disk sector */
	uint8_t op;          /* enum uvm_blk_op */
	uint8_t nr_segs;     /* 0 for FLUSH, 1..UVM_BLK_MAX_SEGS otherwise */
	uint8_t pad[6];
	struct uvm_blk_seg seg[UVM_BLK_MAX_SEGS];
};

struct uvm_blk_rsp {
	uint64_t id;
	int32_t status;      /* 0 or -errno */
	uint8_t op;
	uint8_t pad[3];
};

UVM_RING_DEFINE_TYPES(uvm_blk, struct uvm_blk_req, struct uvm_blk_rsp);

/* Device table config words for the block device. */
#define UVM_BLK_CFG_SECTORS 0 /* config[0]: disk size in sectors */

/* ---- stream ------------------------------------------------------------- */

/* A byte ring: free-running indices, data size a power of two. */
struct uvm_bytering {
	uint32_t prod;        /* written by the producer */
	uint32_t cons;        /* written by the consumer */
	uint32_t prod_event;  /* consumer: notify me when prod passes this */
	uint32_t cons_event;  /* producer: notify me when cons passes this */
	uint32_t size;        /* bytes of data[], a power of two; set by host */
	uint32_t pad[11];
	uint8_t data[];
};

#define UVM_BYTERING_HEADER 64

enum uvm_stream_type {
	UVM_STREAM_OPEN = 1,   /* host -> guest: a client connected */
	UVM_STREAM_DATA = 2,   /* either way: len payload bytes follow */
	UVM_STREAM_CLOSE = 3,  /* either way: this side is done */
	UVM_STREAM_CREDIT = 4, /* either way: arg more bytes may be sent */
};

struct uvm_stream_hdr {
	uint16_t type;  /* enum uvm_stream_type */
	uint16_t flags; /* 0 */
	uint32_t conn;  /* 1..UVM_STREAM_MAX_CONNS */
	uint32_t len;   /* DATA: payload bytes (<= UVM_STREAM_MAX_DATA); else 0 */
	uint32_t arg;   /* CREDIT: bytes granted; OPEN: credit granted */
};

/* Each message (header + payload) starts at an 8-byte aligned index. */
#define UVM_STREAM_ALIGN 8
#define UVM_STREAM_MAX_DATA 16384
#define UVM_STREAM_WINDOW 65536
#define UVM_STREAM_MAX_CONNS 1024

#endif
