/*
 * blk.c - the block device back end: Xen blkif-style requests from the
 * guest's ring (uvm_dev.h), served from an image file by one thread.
 *
 * Life of a request: copied off the ring once into the in-flight table
 * (req_cons advances), executed with pread/pwrite/fdatasync on the image,
 * then answered on the ring.  Write and flush completions go through the
 * output gate: tagged with the gate's epoch when they complete and
 * answered only once that epoch is released.  Reads are answered at once.
 * Every write to the image passes through blk_disk_write(), so a disk
 * replication layer can sit under it.
 *
 * Private state = the ring's private indices + the in-flight table (taken
 * but not answered).  It is saved at a pause and, on a restore elsewhere,
 * every in-flight request is executed again.  That is safe because each
 * operation is idempotent on replay: a read reads the same sectors into the
 * same pages (the guest must not touch a page with a request in flight on
 * it, as with any DMA); a write writes the same bytes to the same sectors
 * (taken from guest memory, which the checkpoint carries); a flush only
 * makes durable what is already written.  Writing twice changes nothing a
 * later read can see.
 *
 * The guest initialises the shared ring before its first request; the back
 * end never writes the ring header except the event index.  A producer
 * index more than a ring ahead marks the device broken (logged once); it
 * then ignores the guest until the domain is destroyed.
 */
#include "uvm.h"
#include "dev.h"
#include "log.h"
#include "unaligned.h"
#include "uvm_dev.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define BLK_RING_BYTES (UVM_BLOCK_RING_PAGES * UVM_PAGE_SIZE)
#define BLK_MAX_INFLIGHT 64
#define BLK_STATE_VERSION 1
#define BLK_STATE_FIXED 24

struct blk_inflight {
	struct uvm_blk_req req;
	uint64_t tag;     /* gate epoch of a write/flush completion, else 0 */
	int32_t status;
	bool done;
};

struct uvm_blk {
	struct uvm_dev dev;
	char *path;
	int fd;
	uint64_t sectors;
	struct uvm_blk_back_ring ring;
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool kick, stop, quiesce_req, quiesced, broken;
	struct blk_inflight inflight[BLK_MAX_INFLIGHT];
	unsigned nr_inflight;
	uint64_t requests, errors;
};

static struct uvm_blk *blk_of(struct uvm_dev *dev)
{
	return (struct uvm_blk *)dev;
}

/* ---- the image ------------------------------------------------------------ */

/*
 * The one path every write to the image takes.  The domain's disk tap
 * (hv_disk_tap: disk replication) sees each write that reached the image,
 * before its completion can reach the guest; it is only changed while the
 * domain is paused, when this thread is quiesced.
 */
static int blk_disk_write(struct uvm_blk *b, uint64_t sector,
			  const struct iovec *iov, int iovcnt, size_t len)
{
	struct uvm_domain *dom = b->dev.dom;
	uint64_t off = sector * UVM_BLK_SECTOR_SIZE;
	ssize_t n = pwritev(b->fd, iov, iovcnt, (off_t)off);

	if (n < 0)
		return -errno;
	if ((size_t)n != len)
		return -EIO;
	if (dom->disk_tap != NULL)
		dom->disk_tap(dom->disk_tap_arg, off, iov, iovcnt, len);
	return 0;
}

static int blk_disk_read(struct uvm_blk *b, uint64_t sector,
			 const struct iovec *iov, int iovcnt, size_t len)
{
	ssize_t n = preadv(b->fd, iov, iovcnt,
			   (off_t)(sector * UVM_BLK_SECTOR_SIZE));

	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EIO;
}

static int blk_disk_flush(struct uvm_blk *b)
{
	return fdatasync(b->fd) == 0 ? 0 : -errno;
}

/* ---- one request ------------------------------------------------------------ */

static bool blk_is_write(uint8_t op)
{
	return op == UVM_BLK_WRITE || op == UVM_BLK_WRITE_FLUSH;
}

/* Check a request and map its segments; -EINVAL for anything malformed. */
static int blk_map(struct uvm_blk *b, const struct uvm_blk_req *r,
		   struct iovec *iov, size_t *len)
{
	uint64_t total = 0;

	if (r->op > UVM_BLK_WRITE_FLUSH ||
	    (r->op == UVM_BLK_FLUSH) != (r->nr_segs == 0) ||
	    r->nr_segs > UVM_BLK_MAX_SEGS)
		return -EINVAL;
	for (unsigned i = 0; i < r->nr_segs; i++) {
		const struct uvm_blk_seg *s = &r->seg[i];
		uint8_t *page;
		int rc;

		if (s->first_sect > s->last_sect ||
		    s->last_sect >= UVM_BLK_SECTORS_PER_PAGE)
			return -EINVAL;
		if (blk_is_write(r->op)) {
			page = uvm_dev_guest_ptr(&b->dev, s->pfn, 1);
			rc = page ? 0 : -EFAULT;
		} else {
			rc = uvm_dev_guest_write(&b->dev, s->pfn, 1, (void **)&page);
		}
		if (rc != 0)
			return -EINVAL;
		iov[i].iov_base = page + s->first_sect * UVM_BLK_SECTOR_SIZE;
		iov[i].iov_len = (size_t)(s->last_sect - s->first_sect + 1) *
				 UVM_BLK_SECTOR_SIZE;
		total += iov[i].iov_len / UVM_BLK_SECTOR_SIZE;
	}
	if (r->sector > b->sectors || total > b->sectors - r->sector)
		return -EINVAL;
	*len = (size_t)total * UVM_BLK_SECTOR_SIZE;
	return 0;
}

static int32_t blk_execute(struct uvm_blk *b, const struct uvm_blk_req *r)
{
	struct iovec iov[UVM_BLK_MAX_SEGS];
	size_t len = 0;
	int rc = blk_map(b, r, iov, &len);

	if (rc != 0)
		return rc;
	switch (r->op) {
	case UVM_BLK_READ:
		return blk_disk_read(b, r->sector, iov, r->nr_segs, len);
	case UVM_BLK_WRITE:
		return blk_disk_write(b, r->sector, iov, r->nr_segs, len);
	case UVM_BLK_FLUSH:
		return blk_disk_flush(b);
	default: /* UVM_BLK_WRITE_FLUSH */
		rc = blk_disk_write(b, r->sector, iov, r->nr_segs, len);
		return rc ? rc : blk_disk_flush(b);
	}
}

/* ---- the thread (b->lock held except around I/O) -------------------------- */

static bool blk_take(struct uvm_blk *b)
{
	bool took = false;

	while (b->nr_inflight < BLK_MAX_INFLIGHT &&
	       UVM_RING_UNCONSUMED_REQUESTS(&b->ring)) {
		uint32_t prod = UVM_RING_LOAD_ACQUIRE(&b->ring.sring->req_prod);
		struct blk_inflight *f = &b->inflight[b->nr_inflight];

		if (UVM_RING_REQUEST_PROD_OVERFLOW(&b->ring, prod)) {
			log_error("uvm: block: guest producer %" PRIu32 " is more "
				  "than %u requests ahead of %" PRIu32
				  "; device stopped", prod, UVM_RING_SIZE(&b->ring),
				  b->ring.rsp_prod_pvt);
			b->broken = true;
			return took;
		}
		UVM_RING_COPY_REQUEST(&b->ring, b->ring.req_cons, &f->req);
		b->ring.req_cons++;
		f->done = false;
		f->tag = 0;
		b->nr_inflight++;
		took = true;
	}
	return took;
}

static bool blk_run_one(struct uvm_blk *b)
{
	for (unsigned i = 0; i < b->nr_inflight; i++) {
		struct blk_inflight *f = &b->inflight[i];
		struct uvm_blk_req req;
		int32_t status;

		if (f->done)
			continue;
		req = f->req;
		pthread_mutex_unlock(&b->lock);
		status = blk_execute(b, &req);
		pthread_mutex_lock(&b->lock);
		f = &b->inflight[i]; /* the table is only reshaped by this thread */
		f->status = status;
		f->done = true;
		f->tag = req.op == UVM_BLK_READ ? 0 : uvm_gate_epoch(&b->dev);
		b->requests++;
		if (status != 0) {
			b->errors++;
			log_debug("uvm: block: request %" PRIu64 " op %u sector %"
				  PRIu64 ": %s", req.id, req.op, req.sector,
				  strerror(-status));
		}
		return true;
	}
	return false;
}

static bool blk_respond(struct uvm_blk *b)
{
	uint64_t released = uvm_gate_released(&b->dev);
	unsigned kept = 0;
	bool pushed = false;
	int notify;

	for (unsigned i = 0; i < b->nr_inflight; i++) {
		struct blk_inflight *f = &b->inflight[i];
		struct uvm_blk_rsp *rsp;

		if (!f->done || f->tag > released) {
			b->inflight[kept++] = *f;
			continue;
		}
		rsp = UVM_RING_GET_RESPONSE(&b->ring, b->ring.rsp_prod_pvt);
		rsp->id = f->req.id;
		rsp->op = f->req.op;
		rsp->status = f->status;
		b->ring.rsp_prod_pvt++;
		pushed = true;
	}
	b->nr_inflight = kept;
	if (!pushed)
		return false;
	UVM_RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(&b->ring, notify);
	if (notify)
		uvm_dev_raise(&b->dev);
	return true;
}

static void blk_park(struct uvm_blk *b)
{
	b->quiesced = true;
	pthread_cond_broadcast(&b->cond);
	while (b->quiesce_req && !b->stop)
		pthread_cond_wait(&b->cond, &b->lock);
	b->quiesced = false;
}

static bool blk_idle(struct uvm_blk *b)
{
	int work = 0;

	if (b->kick) {
		b->kick = false;
		return false;
	}
	if (b->broken)
		return true;
	UVM_RING_FINAL_CHECK_FOR_REQUESTS(&b->ring, work);
	return work == 0 || b->nr_inflight >= BLK_MAX_INFLIGHT;
}

static void *blk_main(void *arg)
{
	struct uvm_blk *b = arg;

	pthread_mutex_lock(&b->lock);
	while (!b->stop) {
		bool progress = false;

		if (b->quiesce_req) {
			blk_park(b);
			continue;
		}
		if (!b->broken)
			progress = blk_take(b);
		progress |= blk_run_one(b);
		progress |= blk_respond(b);
		if (!progress && blk_idle(b))
			pthread_cond_wait(&b->cond, &b->lock);
	}
	pthread_mutex_unlock(&b->lock);
	return NULL;
}

/* ---- ops -------------------------------------------------------------------- */

static void blk_wake(struct uvm_dev *dev)
{
	struct uvm_blk *b = blk_of(dev);

	pthread_mutex_lock(&b->lock);
	b->kick = true;
	pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->lock);
}

static int blk_quiesce(struct uvm_dev *dev)
{
	struct uvm_blk *b = blk_of(dev);

	pthread_mutex_lock(&b->lock);
	b->quiesce_req = true;
	pthread_cond_broadcast(&b->cond);
	while (!b->quiesced && !b->stop)
		pthread_cond_wait(&b->cond, &b->lock);
	pthread_mutex_unlock(&b->lock);
	return 0;
}

static void blk_resume(struct uvm_dev *dev)
{
	struct uvm_blk *b = blk_of(dev);

	pthread_mutex_lock(&b->lock);
	b->quiesce_req = false;
	b->kick = true;
	pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->lock);
}

static void blk_release(struct uvm_dev *dev, uint64_t epoch)
{
	(void)epoch;
	blk_wake(dev);
}

/*
 * State blob (host byte order, x86-64): u32 version, u32 count, u32
 * req_cons, u32 rsp_prod_pvt, u64 sectors, then count raw requests.
 */
static int blk_save(struct uvm_dev *dev, struct hv_device_state *st)
{
	struct uvm_blk *b = blk_of(dev);
	size_t rs = sizeof(struct uvm_blk_req);

	pthread_mutex_lock(&b->lock);
	put_u32(st->blob, BLK_STATE_VERSION);
	put_u32(st->blob + 4, b->nr_inflight);
	put_u32(st->blob + 8, b->ring.req_cons);
	put_u32(st->blob + 12, b->ring.rsp_prod_pvt);
	put_u64(st->blob + 16, b->sectors);
	for (unsigned i = 0; i < b->nr_inflight; i++)
		memcpy(st->blob + BLK_STATE_FIXED + i * rs, &b->inflight[i].req, rs);
	st->len = (uint32_t)(BLK_STATE_FIXED + b->nr_inflight * rs);
	pthread_mutex_unlock(&b->lock);
	return 0;
}

static int blk_check_table(struct uvm_blk *b)
{
	const struct uvm_shared_info *si = uvm_shared(b->dev.dom);
	const struct uvm_device_desc *d = &si->devices[b->dev.index];

	if (d->ring_pfn != UVM_BLOCK_RING_PFN ||
	    d->ring_pages != UVM_BLOCK_RING_PAGES) {
		log_error("uvm: block: saved ring at pfn %" PRIu64 " (%u pages), "
			  "expected pfn %d (%d pages)", d->ring_pfn,
			  d->ring_pages, UVM_BLOCK_RING_PFN, UVM_BLOCK_RING_PAGES);
		return -EINVAL;
	}
	if (d->config[UVM_BLK_CFG_SECTORS] != b->sectors) {
		log_error("uvm: block: disk %s has %" PRIu64 " sectors but the "
			  "saved guest's disk had %" PRIu64, b->path, b->sectors,
			  d->config[UVM_BLK_CFG_SECTORS]);
		return -EINVAL;
	}
	return 0;
}

static int blk_load(struct uvm_dev *dev, const struct hv_device_state *st)
{
	struct uvm_blk *b = blk_of(dev);
	size_t rs = sizeof(struct uvm_blk_req);
	uint32_t n, cons, prod_pvt;

	if (st->len < BLK_STATE_FIXED || get_u32(st->blob) != BLK_STATE_VERSION) {
		log_error("uvm: block: saved state of %u bytes is not version %d",
			  st->len, BLK_STATE_VERSION);
		return -EINVAL;
	}
	n = get_u32(st->blob + 4);
	cons = get_u32(st->blob + 8);
	prod_pvt = get_u32(st->blob + 12);
	if (n > BLK_MAX_INFLIGHT || n > UVM_RING_SIZE(&b->ring) ||
	    st->len != BLK_STATE_FIXED + n * rs || cons - prod_pvt != n) {
		log_error("uvm: block: saved state is inconsistent: %" PRIu32
			  " in flight, consumer %" PRIu32 ", answered %" PRIu32
			  ", %u bytes", n, cons, prod_pvt, st->len);
		return -EINVAL;
	}
	if (get_u64(st->blob + 16) != b->sectors) {
		log_error("uvm: block: disk %s has %" PRIu64 " sectors, the saved "
			  "back end served %" PRIu64, b->path, b->sectors,
			  get_u64(st->blob + 16));
		return -EINVAL;
	}
	if (blk_check_table(b) != 0)
		return -EINVAL;
	pthread_mutex_lock(&b->lock);
	b->ring.req_cons = cons;
	b->ring.rsp_prod_pvt = prod_pvt;
	for (uint32_t i = 0; i < n; i++) {
		memcpy(&b->inflight[i].req, st->blob + BLK_STATE_FIXED + i * rs, rs);
		b->inflight[i].done = false; /* re-issued on resume */
		b->inflight[i].tag = 0;
	}
	b->nr_inflight = n;
	pthread_mutex_unlock(&b->lock);
	if (n > 0)
		log_info("uvm: block: re-issuing %" PRIu32 " request(s) that were "
			 "in flight at the save", n);
	return 0;
}

static void blk_free(struct uvm_dev *dev)
{
	struct uvm_blk *b = blk_of(dev);

	if (b->thread_started) {
		pthread_mutex_lock(&b->lock);
		b->stop = true;
		pthread_cond_broadcast(&b->cond);
		pthread_mutex_unlock(&b->lock);
		pthread_join(b->thread, NULL);
	}
	if (b->fd >= 0)
		close(b->fd);
	pthread_mutex_destroy(&b->lock);
	pthread_cond_destroy(&b->cond);
	free(b->path);
	free(b);
}

static const struct uvm_dev_ops blk_ops = {
	.name = "block",
	.type = UVM_DEV_BLOCK,
	.notify = blk_wake,
	.quiesce = blk_quiesce,
	.resume = blk_resume,
	.save = blk_save,
	.load = blk_load,
	.release = blk_release,
	.free = blk_free,
};

/* ---- creation ------------------------------------------------------------------ */

static int blk_open_image(struct uvm_blk *b)
{
	struct stat st;

	b->fd = open(b->path, O_RDWR | O_CLOEXEC);
	if (b->fd < 0) {
		log_error("uvm: block: disk image %s: %s", b->path, strerror(errno));
		return -errno;
	}
	if (fstat(b->fd, &st) != 0 || !S_ISREG(st.st_mode) ||
	    st.st_size < UVM_BLK_SECTOR_SIZE) {
		log_error("uvm: block: disk image %s must be a regular file of at "
			  "least %d bytes", b->path, UVM_BLK_SECTOR_SIZE);
		return -EINVAL;
	}
	b->sectors = (uint64_t)st.st_size / UVM_BLK_SECTOR_SIZE;
	return 0;
}

static void blk_describe(struct uvm_blk *b)
{
	struct uvm_device_desc *d = &uvm_shared(b->dev.dom)->devices[b->dev.index];

	d->ring_pfn = UVM_BLOCK_RING_PFN;
	d->ring_pages = UVM_BLOCK_RING_PAGES;
	d->config[UVM_BLK_CFG_SECTORS] = b->sectors;
}

int uvm_blk_new(struct uvm_domain *dom, const char *path, bool build,
		struct uvm_dev **out)
{
	struct uvm_blk *b = calloc(1, sizeof(*b));
	struct uvm_blk_sring *sring;
	int rc;

	*out = NULL;
	if (b == NULL)
		return -ENOMEM;
	b->dev = (struct uvm_dev){ .ops = &blk_ops, .dom = dom,
				   .index = 1 + dom->nr_devs,
				   .port = UVM_PORT_BLOCK };
	b->fd = -1;
	b->quiesce_req = true; /* runs from the first unpause */
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->cond, NULL);
	b->path = strdup(path);
	rc = b->path ? blk_open_image(b) : -ENOMEM;
	if (rc == 0) {
		sring = (struct uvm_blk_sring *)(dom->arena +
						 UVM_BLOCK_RING_PFN * UVM_PAGE_SIZE);
		UVM_RING_BACK_INIT(&b->ring, sring, BLK_RING_BYTES);
		if (build)
			blk_describe(b);
		rc = -pthread_create(&b->thread, NULL, blk_main, b);
		b->thread_started = rc == 0;
	}
	if (rc != 0) {
		blk_free(&b->dev);
		return rc;
	}
	log_info("uvm: block device on %s (%" PRIu64 " sectors)", path,
		 b->sectors);
	*out = &b->dev;
	return 0;
}
