/*
 * blkfront.c - block device front end (protocol: uvm_dev.h; rules:
 * blkfront.h).
 *
 * A transfer is cut into requests; each request carries up to
 * UVM_BLK_MAX_SEGS segments, a segment being a run of sectors inside one
 * guest page.  blkfront_batch() submits as many requests as the ring has
 * free slots, waits for all their responses, and repeats.  Request ids
 * are a free-running counter; a response is accepted only if its id is
 * one of the batch's and it has not been seen yet.
 *
 * Invariants: outside blkfront_batch() no request is in flight
 * (req_prod_pvt == rsp_cons), unless the back end answered nonsense, which
 * disables the device (every later call fails with -ENODEV); the port is
 * masked except inside blkfront_wait().
 */
#include "sdk.h"
#include "uvm_dev.h"
#include "blkfront.h"

#define BLKFRONT_SECT_SHIFT 9
#define BLKFRONT_BOUNCE_PAGES UVM_BLK_MAX_SEGS
#define BLKFRONT_MAX_INFLIGHT 64

static struct sdk_lock blkfront_lock;
static struct uvm_blk_front_ring blkfront_ring;
static uint32_t blkfront_port;
static uint64_t blkfront_nsectors;
static uint8_t *blkfront_bounce;
static int blkfront_ready;
static uint64_t blkfront_next_id = 1;

/* One part of a transfer: sectors [sector, sector + n) <-> buf. */
struct blkfront_xfer {
	uint8_t op;
	uint64_t sector;
	uint8_t *buf;      /* 512-aligned guest memory */
	uint64_t nsectors;
};

static const struct uvm_device_desc *blkfront_find(void)
{
	uint32_t n = sdk_shared_info->nr_devices;

	if (n > UVM_MAX_DEVICES)
		n = UVM_MAX_DEVICES;
	for (uint32_t i = 0; i < n; i++) {
		if (sdk_shared_info->devices[i].type == UVM_DEV_BLOCK)
			return &sdk_shared_info->devices[i];
	}
	return NULL;
}

int blk_init(void)
{
	const struct uvm_device_desc *d = blkfront_find();
	struct uvm_blk_sring *s;
	uint64_t bytes;

	if (blkfront_ready)
		return 0;
	if (d == NULL || d->ring_pages == 0 || d->port == 0 ||
	    d->port >= UVM_NR_EVTCHN || d->ring_pfn < 3 ||
	    d->ring_pfn + d->ring_pages > UVM_RESERVED_PFNS)
		return -ENODEV;
	bytes = (uint64_t)d->ring_pages * UVM_PAGE_SIZE;
	s = pfn_to_virt(d->ring_pfn);
	if (UVM_RING_SIZE_FOR(s, bytes) == 0)
		return -ENODEV;
	blkfront_bounce = alloc_pages(BLKFRONT_BOUNCE_PAGES);
	if (blkfront_bounce == NULL)
		return -ENOMEM;
	blkfront_port = d->port;
	blkfront_nsectors = d->config[UVM_BLK_CFG_SECTORS];
	evtchn_mask(blkfront_port);
	(void)evtchn_test_and_clear(blkfront_port);
	UVM_RING_SHARED_INIT(s);
	UVM_RING_FRONT_INIT(&blkfront_ring, s, bytes);
	barrier();
	blkfront_ready = 1;
	return 0;
}

uint64_t blk_sectors(void)
{
	return blkfront_ready ? blkfront_nsectors : 0;
}

/* Fill segments for up to UVM_BLK_MAX_SEGS pages of x; sectors covered. */
static uint64_t blkfront_fill(struct uvm_blk_req *req,
			      const struct blkfront_xfer *x)
{
	uint64_t done = 0;
	uint8_t *p = x->buf;

	req->nr_segs = 0;
	while (done < x->nsectors && req->nr_segs < UVM_BLK_MAX_SEGS) {
		uint64_t first = ((uintptr_t)p & (UVM_PAGE_SIZE - 1)) >>
				 BLKFRONT_SECT_SHIFT;
		uint64_t n = UVM_BLK_SECTORS_PER_PAGE - first;
		struct uvm_blk_seg *sg = &req->seg[req->nr_segs++];

		if (n > x->nsectors - done)
			n = x->nsectors - done;
		memset(sg, 0, sizeof(*sg));
		sg->pfn = virt_to_pfn(p);
		sg->first_sect = (uint8_t)first;
		sg->last_sect = (uint8_t)(first + n - 1);
		done += n;
		p += n << BLKFRONT_SECT_SHIFT;
	}
	return done;
}

/* Queue one request for the front of x; advance x past it. */
static void blkfront_queue(struct blkfront_xfer *x, uint64_t id)
{
	struct uvm_blk_front_ring *r = &blkfront_ring;
	struct uvm_blk_req *req = UVM_RING_GET_REQUEST(r, r->req_prod_pvt);
	uint64_t n;

	memset(req, 0, sizeof(*req));
	req->id = id;
	req->op = x->op;
	req->sector = x->sector;
	if (x->op == UVM_BLK_FLUSH) {
		x->nsectors = 0;
	} else {
		n = blkfront_fill(req, x);
		x->sector += n;
		x->buf += n << BLKFRONT_SECT_SHIFT;
		x->nsectors -= n;
	}
	r->req_prod_pvt++;
}

/* Sleep until the back end has published a response. */
static void blkfront_wait(void)
{
	int work;

	for (;;) {
		(void)evtchn_test_and_clear(blkfront_port);
		UVM_RING_FINAL_CHECK_FOR_RESPONSES(&blkfront_ring, work);
		if (work)
			return;
		/* wake this vCPU, whichever calls (ports start bound to 0) */
		evtchn_bind_self(blkfront_port);
		evtchn_unmask(blkfront_port);
		if (!evtchn_is_pending(blkfront_port))
			(void)hc_block();
		evtchn_mask(blkfront_port);
	}
}

/* The back end broke the protocol: stop using the device. */
static int blkfront_break(const char *why)
{
	printf("blkfront: device disabled: %s\n", why);
	blkfront_ready = 0;
	return -EIO;
}

/* Consume responses for ids [first, first + n); 0 or the first error. */
static int blkfront_collect(uint64_t first, unsigned n)
{
	struct uvm_blk_front_ring *r = &blkfront_ring;
	uint8_t seen[BLKFRONT_MAX_INFLIGHT];
	unsigned got = 0;
	int err = 0;

	memset(seen, 0, sizeof(seen));
	while (got < n) {
		uvm_ring_idx_t avail = UVM_RING_UNCONSUMED_RESPONSES(r);

		if (avail == 0) {
			blkfront_wait();
			continue;
		}
		if (avail > r->req_prod_pvt - r->rsp_cons)
			return blkfront_break("more responses than requests");
		while (avail-- > 0) {
			struct uvm_blk_rsp rsp;
			uint64_t k;

			UVM_RING_COPY_RESPONSE(r, r->rsp_cons, &rsp);
			r->rsp_cons++;
			k = rsp.id - first;
			if (k >= n || seen[k])
				return blkfront_break("response with a bad id");
			seen[k] = 1;
			got++;
			if (rsp.status != 0 && err == 0)
				err = rsp.status < 0 ? rsp.status : -EIO;
		}
	}
	return err;
}

/* Run x to completion, up to a ring's worth of requests at a time. */
static int blkfront_batch(struct blkfront_xfer *x)
{
	struct uvm_blk_front_ring *r = &blkfront_ring;
	int err = 0;

	do {
		uint64_t first = blkfront_next_id;
		unsigned n = 0;
		int notify;

		while (!UVM_RING_FULL(r) && n < BLKFRONT_MAX_INFLIGHT &&
		       (n == 0 || x->nsectors > 0)) {
			blkfront_queue(x, blkfront_next_id++);
			n++;
		}
		UVM_RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(r, notify);
		(void)notify; /* always notify: cheap, and never lost */
		evtchn_notify(blkfront_port);
		err = blkfront_collect(first, n);
	} while (err == 0 && x->nsectors > 0);
	return err;
}

static int blkfront_check(uint64_t sector, const void *buf, uint64_t n)
{
	uintptr_t a = (uintptr_t)buf;

	if (!blkfront_ready)
		return -ENODEV;
	if (sector > blkfront_nsectors || n > blkfront_nsectors - sector)
		return -EINVAL;
	if (n > (UINT64_MAX >> BLKFRONT_SECT_SHIFT))
		return -EINVAL;
	if (n > 0 && (a < UVM_GUEST_BASE ||
		      a - UVM_GUEST_BASE > sdk_start_info->arena_size ||
		      (n << BLKFRONT_SECT_SHIFT) >
			      sdk_start_info->arena_size - (a - UVM_GUEST_BASE)))
		return -EINVAL;
	return 0;
}

/* Transfer through the bounce pages (buf not 512-aligned). */
static int blkfront_bounced(uint8_t op, uint64_t sector, uint8_t *buf,
			    uint64_t n)
{
	const uint64_t max = BLKFRONT_BOUNCE_PAGES * UVM_BLK_SECTORS_PER_PAGE;
	int err = 0;

	while (err == 0 && n > 0) {
		uint64_t k = n < max ? n : max;
		size_t bytes = k << BLKFRONT_SECT_SHIFT;
		struct blkfront_xfer x = { op, sector, blkfront_bounce, k };

		if (op != UVM_BLK_READ)
			memcpy(blkfront_bounce, buf, bytes);
		err = blkfront_batch(&x);
		if (err == 0 && op == UVM_BLK_READ)
			memcpy(buf, blkfront_bounce, bytes);
		sector += k;
		buf += bytes;
		n -= k;
	}
	return err;
}

static int blkfront_rw(uint8_t op, uint64_t sector, void *buf, uint64_t n)
{
	int err = blkfront_check(sector, buf, n);

	if (err != 0 || n == 0)
		return err;
	sdk_lock(&blkfront_lock);
	if (((uintptr_t)buf & ((1u << BLKFRONT_SECT_SHIFT) - 1)) != 0) {
		err = blkfront_bounced(op, sector, buf, n);
	} else {
		struct blkfront_xfer x = { op, sector, buf, n };

		err = blkfront_batch(&x);
	}
	sdk_unlock(&blkfront_lock);
	return err;
}

int blk_read(uint64_t sector, void *buf, uint64_t nsectors)
{
	return blkfront_rw(UVM_BLK_READ, sector, buf, nsectors);
}

int blk_write(uint64_t sector, const void *buf, uint64_t nsectors)
{
	return blkfront_rw(UVM_BLK_WRITE, sector, (void *)(uintptr_t)buf,
			   nsectors);
}

int blk_flush(void)
{
	struct blkfront_xfer x = { UVM_BLK_FLUSH, 0, NULL, 0 };
	int err;

	if (!blkfront_ready)
		return -ENODEV;
	sdk_lock(&blkfront_lock);
	err = blkfront_batch(&x);
	sdk_unlock(&blkfront_lock);
	return err;
}

/*
 * One request: WRITE_FLUSH.  Several: the requests of a batch complete in
 * any order, so write them all, then FLUSH once.
 */
int blk_write_flush(uint64_t sector, const void *buf, uint64_t nsectors)
{
	uint64_t one = (UVM_BLK_MAX_SEGS - 1) * UVM_BLK_SECTORS_PER_PAGE;
	int err;

	if (nsectors > 0 && nsectors <= one &&
	    ((uintptr_t)buf & ((1u << BLKFRONT_SECT_SHIFT) - 1)) == 0)
		return blkfront_rw(UVM_BLK_WRITE_FLUSH, sector,
				   (void *)(uintptr_t)buf, nsectors);
	err = blk_write(sector, buf, nsectors);
	return err != 0 ? err : blk_flush();
}
