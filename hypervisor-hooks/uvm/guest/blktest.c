/*
 * blktest.c - a guest that writes numbered records to its block device
 * with several requests in flight, for testing writes across pauses,
 * held completions and restores.
 *
 * Record i goes to sector i: {BLKTEST_MAGIC, i, blktest_hash(i), 0...}.
 * Up to `depth` writes are in flight at once (cmdline depth=N, default 8);
 * every 16th is a WRITE_FLUSH.  Completions may come back in any order.
 * Report words: PASSES = records acknowledged contiguously from 0 (the
 * guest's promise: every record below it is on disk), WRITES = records
 * issued, ERRORS = completions with a non-zero status or an unknown id.
 * It stops issuing at `count` records (default 0 = until the disk is
 * full) and then idles, waiting for the rest.
 */
#include "sdk.h"
#include "uvm_dev.h"

#define BLKTEST_MAGIC 0x626c6b7465737431ULL /* "blktest1" */
#define BLKTEST_MAX_DEPTH 32

struct blktest {
	struct uvm_blk_front_ring ring;
	uint64_t sectors;
	uint64_t depth;
	uint64_t count;
	uint64_t next;          /* next record to issue */
	uint64_t acked;         /* contiguous acknowledged records */
	uint8_t done[BLKTEST_MAX_DEPTH]; /* by record % depth */
	uint8_t *buf[BLKTEST_MAX_DEPTH];
};

static uint64_t blktest_hash(uint64_t i)
{
	uint64_t h = 1469598103934665603ULL ^ i;

	for (int k = 0; k < 8; k++)
		h = (h ^ (h >> 29)) * 1099511628211ULL;
	return h;
}

static const struct uvm_device_desc *blktest_find(const struct uvm_start_info *si)
{
	const struct uvm_shared_info *sh = pfn_to_virt(UVM_SHARED_INFO_PFN);

	(void)si;
	for (uint32_t i = 0; i < sh->nr_devices && i < UVM_MAX_DEVICES; i++)
		if (sh->devices[i].type == UVM_DEV_BLOCK)
			return &sh->devices[i];
	return 0;
}

static void blktest_issue(struct blktest *t)
{
	uint64_t i = t->next, slot = i % t->depth;
	uint64_t *rec = (uint64_t *)t->buf[slot];
	struct uvm_blk_req *req =
		UVM_RING_GET_REQUEST(&t->ring, t->ring.req_prod_pvt);

	memset(rec, 0, UVM_BLK_SECTOR_SIZE);
	rec[0] = BLKTEST_MAGIC;
	rec[1] = i;
	rec[2] = blktest_hash(i);
	memset(req, 0, sizeof(*req));
	req->id = i;
	req->sector = i;
	req->op = i % 16 == 15 ? UVM_BLK_WRITE_FLUSH : UVM_BLK_WRITE;
	req->nr_segs = 1;
	req->seg[0].pfn = virt_to_pfn(rec);
	req->seg[0].first_sect = 0;
	req->seg[0].last_sect = 0;
	t->ring.req_prod_pvt++;
	t->done[slot] = 0;
	t->next++;
}

static int blktest_issue_all(struct blktest *t)
{
	int issued = 0, notify;

	while (t->next - t->acked < t->depth && !UVM_RING_FULL(&t->ring) &&
	       (t->count == 0 || t->next < t->count) && t->next < t->sectors) {
		blktest_issue(t);
		issued++;
	}
	if (issued) {
		UVM_RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&t->ring, notify);
		if (notify)
			evtchn_notify(UVM_PORT_BLOCK);
		report_set(UVM_REPORT_WRITES, t->next);
	}
	return issued;
}

static int blktest_collect(struct blktest *t)
{
	int got = 0;

	while (UVM_RING_HAS_UNCONSUMED_RESPONSES(&t->ring)) {
		struct uvm_blk_rsp rsp;

		UVM_RING_COPY_RESPONSE(&t->ring, t->ring.rsp_cons, &rsp);
		t->ring.rsp_cons++;
		got++;
		if (rsp.status != 0 || rsp.id < t->acked || rsp.id >= t->next) {
			report_set(UVM_REPORT_ERRORS,
				   report_get(UVM_REPORT_ERRORS) + 1);
			continue;
		}
		t->done[rsp.id % t->depth] = 1;
	}
	while (t->acked < t->next && t->done[t->acked % t->depth]) {
		t->done[t->acked % t->depth] = 0;
		t->acked++;
	}
	report_set(UVM_REPORT_PASSES, t->acked);
	return got;
}

int main(const struct uvm_start_info *si)
{
	const struct uvm_device_desc *d = blktest_find(si);
	struct blktest t;
	struct uvm_blk_sring *sring;

	if (d == 0)
		panic("blktest: no block device");
	memset(&t, 0, sizeof(t));
	t.sectors = d->config[UVM_BLK_CFG_SECTORS];
	t.depth = cmdline_u64("depth", 8);
	t.count = cmdline_u64("count", 0);
	if (t.depth == 0 || t.depth > BLKTEST_MAX_DEPTH)
		panic("blktest: depth %llu out of range 1..%d",
		      (unsigned long long)t.depth, BLKTEST_MAX_DEPTH);
	for (uint64_t i = 0; i < t.depth; i++)
		t.buf[i] = alloc_pages(1);
	sring = pfn_to_virt(d->ring_pfn);
	UVM_RING_SHARED_INIT(sring);
	UVM_RING_FRONT_INIT(&t.ring, sring, d->ring_pages * UVM_PAGE_SIZE);
	printf("blktest: %llu sectors, depth %llu\n",
	       (unsigned long long)t.sectors, (unsigned long long)t.depth);
	for (;;) {
		int work;

		if (blktest_collect(&t) + blktest_issue_all(&t) > 0)
			continue;
		UVM_RING_FINAL_CHECK_FOR_RESPONSES(&t.ring, work);
		if (!work)
			wait_event(UVM_PORT_BLOCK);
	}
}
