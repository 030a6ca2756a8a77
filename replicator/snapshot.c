/*
 * snapshot.c - whole-domain save and restore in the wire format.
 *
 * Save walks the populated pages (hv_populated) in frame order, in
 * PAGE_DATA records of up to WIRE_PAGE_MAX pages, and flushes the encode
 * buffer to the descriptor every few MiB.  Restore reads record by record
 * through wire_reader (which checks lengths, checksums, order and the END
 * totals) and applies each record to a domain that stays paused; the first
 * error destroys that domain, so a corrupt file never yields a runnable
 * guest.
 */
#include "replicator.h"
#include "rep_int.h"
#include "log.h"
#include "wire.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SNAP_FLUSH_BYTES (8u << 20)
#define SNAP_PROGRESS_PAGES 65536

static bool snap_bit(const uint64_t *bm, uint64_t i)
{
	return (bm[i / 64] >> (i % 64)) & 1;
}

/* ---- save ---------------------------------------------------------------- */

struct snap_writer {
	struct hv_domain *dom;
	int fd;
	struct wire_buf buf;
	struct wire_sum sum;
	uint64_t bytes;
};

static int snap_flush(struct snap_writer *w, bool force)
{
	int rc;

	if (w->buf.len == 0 || (!force && w->buf.len < SNAP_FLUSH_BYTES))
		return 0;
	rc = wire_write_all(w->fd, w->buf.data, w->buf.len);
	if (rc != 0)
		log_error("snapshot: write failed: %s", strerror(-rc));
	w->bytes += w->buf.len;
	wire_buf_reset(&w->buf);
	return rc;
}

static int snap_put_domain_info(struct snap_writer *w)
{
	const struct hv_config *cfg = hv_domain_config(w->dom);
	struct wire_domain_info di = { .backend = WIRE_BACKEND_UVM };
	struct hv_platform plat;
	struct hv_platform_state ps;
	int rc = hv_platform_info(w->dom, &plat);

	if (rc == 0)
		rc = hv_platform_save(w->dom, &ps);
	if (rc != 0)
		return rc;
	di.nr_vcpus = hv_nr_vcpus(w->dom);
	di.guest_base = plat.guest_base;
	di.mem_bytes = hv_nr_pages(w->dom) * HV_PAGE_SIZE;
	di.page_size = HV_PAGE_SIZE;
	di.xsave_features = plat.xsave_features;
	di.xsave_size = plat.xsave_size;
	di.guest_clock_ns = ps.guest_clock_ns;
	di.cmdline_len = (uint32_t)strlen(cfg->cmdline ? cfg->cmdline : "");
	if (di.cmdline_len > WIRE_CMDLINE_MAX)
		return -E2BIG;
	memcpy(di.cmdline, cfg->cmdline ? cfg->cmdline : "", di.cmdline_len);
	return wire_domain_info_put(&w->buf, 0, &di, &w->sum);
}

static int snap_put_pages(struct snap_writer *w, rep_progress_fn progress,
			  void *arg, uint64_t *pages)
{
	uint64_t n = hv_nr_pages(w->dom), total = 0, done = 0;
	uint64_t *bm = calloc((n + 63) / 64, sizeof(uint64_t));
	uint64_t pfn[WIRE_PAGE_MAX];
	const void *ptr[WIRE_PAGE_MAX];
	uint32_t count = 0;
	int rc = bm ? hv_populated(w->dom, bm) : -ENOMEM;

	for (uint64_t i = 0; rc == 0 && i < n; i++)
		total += snap_bit(bm, i);
	for (uint64_t i = 0; rc == 0 && i <= n; i++) {
		if (i < n && snap_bit(bm, i)) {
			void *p;

			rc = hv_map(w->dom, i, 1, false, &p);
			pfn[count] = i;
			ptr[count++] = p;
		}
		if (rc != 0 || count == 0 || (count < WIRE_PAGE_MAX && i < n))
			continue;
		rc = wire_page_data_put(&w->buf, 0, count, pfn, ptr, &w->sum);
		for (uint32_t k = 0; k < count; k++)
			hv_unmap(w->dom, (void *)ptr[k], 1);
		done += count;
		count = 0;
		if (rc == 0)
			rc = snap_flush(w, false);
		if (progress != NULL && done % SNAP_PROGRESS_PAGES < WIRE_PAGE_MAX)
			progress(arg, done, total);
	}
	free(bm);
	*pages = done;
	return rc;
}

static int snap_put_vcpus(struct snap_writer *w)
{
	struct hv_vcpu_state *hs = malloc(sizeof(*hs));
	struct wire_vcpu_state *ws = malloc(sizeof(*ws));
	int rc = hs && ws ? 0 : -ENOMEM;

	for (unsigned i = 0; rc == 0 && i < hv_nr_vcpus(w->dom); i++) {
		rc = hv_vcpu_save(w->dom, i, hs);
		if (rc == 0) {
			rep_vcpu_to_wire(hs, i, ws);
			rc = wire_vcpu_state_put(&w->buf, 0, ws, &w->sum);
		}
	}
	free(hs);
	free(ws);
	return rc;
}

static int snap_put_devices(struct snap_writer *w)
{
	struct hv_device_state *hs = malloc(sizeof(*hs));
	int rc = hs ? 0 : -ENOMEM;

	for (unsigned i = 0; rc == 0 && i < hv_nr_devices(w->dom); i++) {
		struct wire_device_state ws;

		rc = hv_device_save(w->dom, i, hs);
		if (rc != 0)
			break;
		ws = (struct wire_device_state){ .index = i, .type = hs->type,
						 .port = hs->port,
						 .blob_len = hs->len,
						 .blob = hs->blob };
		rc = wire_device_state_put(&w->buf, 0, &ws, &w->sum);
	}
	free(hs);
	return rc;
}

static int snap_put_note(struct snap_writer *w)
{
	const struct hv_config *cfg = hv_domain_config(w->dom);
	char note[512];
	int n = snprintf(note, sizeof(note), "tandem snapshot: backend %s, "
			 "image %s, %u vCPU(s)", hv_backend_name(w->dom),
			 cfg->image ? cfg->image : "(restored)",
			 hv_nr_vcpus(w->dom));

	return wire_note_put(&w->buf, 0, note, (size_t)n < sizeof(note)
						     ? (size_t)n
						     : sizeof(note) - 1,
			     &w->sum);
}

int rep_snapshot_save(struct hv_domain *dom, int fd, rep_progress_fn progress,
		      void *arg, struct rep_snapshot_stats *stats)
{
	struct snap_writer w = { .dom = dom, .fd = fd };
	uint64_t t0 = rep_now_ns(), pages = 0;
	int rc;

	memset(stats, 0, sizeof(*stats));
	if (!hv_is_paused(dom)) {
		log_error("snapshot: the domain must be paused to be saved");
		return -EBUSY;
	}
	wire_buf_init(&w.buf);
	rc = wire_sum_init(&w.sum);
	if (rc == 0)
		rc = wire_stream_header_put(&w.buf, WIRE_STREAM_SNAPSHOT, 0);
	if (rc == 0)
		rc = snap_put_domain_info(&w);
	if (rc == 0)
		rc = snap_put_note(&w);
	if (rc == 0)
		rc = snap_put_pages(&w, progress, arg, &pages);
	if (rc == 0)
		rc = snap_put_vcpus(&w);
	if (rc == 0)
		rc = snap_put_devices(&w);
	if (rc == 0)
		rc = wire_end_put(&w.buf, 0, &w.sum);
	if (rc == 0)
		rc = snap_flush(&w, true);
	wire_sum_fini(&w.sum);
	wire_buf_fini(&w.buf);
	stats->pages = pages;
	stats->bytes = w.bytes;
	stats->ns = rep_now_ns() - t0;
	return rc;
}

/* ---- restore ------------------------------------------------------------- */

struct snap_reader {
	const char *name;
	struct wire_reader wr;
	struct hv_domain *dom;
	struct hv_config cfg;
	struct wire_domain_info di;
	uint64_t vcpus_seen;           /* bit per vCPU */
	struct wire_page_data *pd;
	struct wire_vcpu_state *ws;
	struct hv_vcpu_state *hs;
	struct hv_device_state *dev;
	uint64_t pages;
	char *err;
	size_t errlen;
};

__attribute__((format(printf, 4, 5)))
static int snap_fail(struct snap_reader *r, const struct wire_record *rec,
		     int rc, const char *fmt, ...)
{
	char msg[192];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (rec != NULL)
		snprintf(r->err, r->errlen, "%s: record %" PRIu64 " (%s): %s",
			 r->name, rec->index,
			 wire_record_type_name(rec->hdr.type), msg);
	else
		snprintf(r->err, r->errlen, "%s: %s", r->name, msg);
	return rc;
}

static int snap_create_domain(struct snap_reader *r, const struct wire_record *rec)
{
	struct hv_platform here, from = { .guest_base = r->di.guest_base,
					  .xsave_features = r->di.xsave_features,
					  .xsave_size = r->di.xsave_size };
	char why[160];
	int rc;

	if (r->di.backend != WIRE_BACKEND_UVM)
		return snap_fail(r, rec, -EOPNOTSUPP, "backend %" PRIu32
				 " is not uvm (%d)", r->di.backend,
				 WIRE_BACKEND_UVM);
	if (r->di.nr_vcpus > HV_MAX_VCPUS)
		return snap_fail(r, rec, -EINVAL, "%" PRIu32 " vCPUs > %d",
				 r->di.nr_vcpus, HV_MAX_VCPUS);
	r->cfg.mem_bytes = r->di.mem_bytes;
	r->cfg.nr_vcpus = r->di.nr_vcpus;
	r->cfg.cmdline = r->di.cmdline;
	r->cfg.image = NULL;
	rc = hv_domain_create(&r->cfg, &r->dom);
	if (rc != 0)
		return snap_fail(r, rec, rc, "cannot create a domain of %" PRIu64
				 " MiB and %" PRIu32 " vCPUs: %s",
				 r->di.mem_bytes >> 20, r->di.nr_vcpus,
				 strerror(-rc));
	(void)hv_platform_info(r->dom, &here);
	rc = hv_platform_compatible(&from, &here, why, sizeof(why));
	return rc ? snap_fail(r, rec, rc, "%s", why) : 0;
}

static int snap_apply_pages(struct snap_reader *r, const struct wire_record *rec)
{
	int rc = wire_page_data_decode(rec->body, rec->hdr.length,
				       hv_nr_pages(r->dom), r->pd, r->err,
				       r->errlen);

	if (rc != 0)
		return snap_fail(r, rec, rc, "%s", r->err);
	for (uint32_t i = 0; i < r->pd->count; i++) {
		void *p;

		rc = hv_map(r->dom, r->pd->pfn[i], 1, true, &p);
		if (rc != 0)
			return snap_fail(r, rec, rc, "page %" PRIu64 " not mappable",
					 r->pd->pfn[i]);
		memcpy(p, r->pd->data + (size_t)i * WIRE_PAGE_SIZE, WIRE_PAGE_SIZE);
		hv_unmap(r->dom, p, 1);
	}
	r->pages += r->pd->count;
	return 0;
}

static int snap_apply_vcpu(struct snap_reader *r, const struct wire_record *rec)
{
	struct wire_vcpu_state *ws = r->ws;
	struct hv_vcpu_state *hs = r->hs;
	int rc = wire_vcpu_state_decode(rec->body, rec->hdr.length, ws, r->err,
					r->errlen);

	if (rc != 0)
		return snap_fail(r, rec, rc, "%s", r->err);
	if (ws->vcpu_id >= r->di.nr_vcpus || (r->vcpus_seen >> ws->vcpu_id) & 1)
		return snap_fail(r, rec, -EINVAL, "vcpu %" PRIu32 " is out of "
				 "range (%" PRIu32 " vCPUs) or repeated",
				 ws->vcpu_id, r->di.nr_vcpus);
	r->vcpus_seen |= 1ULL << ws->vcpu_id;
	rep_vcpu_from_wire(ws, hs);
	rc = hv_vcpu_load(r->dom, ws->vcpu_id, hs);
	return rc ? snap_fail(r, rec, rc, "vcpu %" PRIu32 " state refused "
			      "(see the log line above)", ws->vcpu_id)
		  : 0;
}

static int snap_apply_device(struct snap_reader *r, const struct wire_record *rec)
{
	struct wire_device_state ws;
	int rc = wire_device_state_decode(rec->body, rec->hdr.length, &ws,
					  r->err, r->errlen);

	if (rc != 0)
		return snap_fail(r, rec, rc, "%s", r->err);
	if (ws.index >= hv_nr_devices(r->dom))
		return snap_fail(r, rec, -EINVAL, "device %" PRIu32 " does not "
				 "exist here (%u devices)", ws.index,
				 hv_nr_devices(r->dom));
	r->dev->type = ws.type;
	r->dev->port = ws.port;
	r->dev->len = ws.blob_len;
	memcpy(r->dev->blob, ws.blob, ws.blob_len);
	rc = hv_device_load(r->dom, ws.index, r->dev);
	return rc ? snap_fail(r, rec, rc, "device %" PRIu32 " state refused",
			      ws.index)
		  : 0;
}

static int snap_finish(struct snap_reader *r)
{
	struct hv_platform_state ps = { .guest_clock_ns = r->di.guest_clock_ns };
	uint64_t want = r->di.nr_vcpus >= 64 ? UINT64_MAX
					     : (1ULL << r->di.nr_vcpus) - 1;

	if (r->vcpus_seen != want)
		return snap_fail(r, NULL, -EINVAL, "stream ended without the "
				 "state of every vCPU (have mask 0x%" PRIx64
				 ", need 0x%" PRIx64 ")", r->vcpus_seen, want);
	return hv_platform_load(r->dom, &ps);
}

static int snap_apply(struct snap_reader *r, const struct wire_record *rec)
{
	int rc;

	if ((rec->hdr.type == WIRE_REC_DOMAIN_INFO) != (r->dom == NULL) &&
	    !(rec->hdr.type & WIRE_REC_OPTIONAL))
		return snap_fail(r, rec, -EBADMSG, r->dom ? "DOMAIN_INFO repeated"
				 : "DOMAIN_INFO must come first");
	switch (rec->hdr.type) {
	case WIRE_REC_DOMAIN_INFO:
		rc = wire_domain_info_decode(rec->body, rec->hdr.length, &r->di,
					     r->err, r->errlen);
		if (rc != 0)
			return snap_fail(r, rec, rc, "%s", r->err);
		return snap_create_domain(r, rec);
	case WIRE_REC_PAGE_DATA:
		return snap_apply_pages(r, rec);
	case WIRE_REC_VCPU_STATE:
		return snap_apply_vcpu(r, rec);
	case WIRE_REC_DEVICE_STATE:
		return snap_apply_device(r, rec);
	case WIRE_REC_END:
		return snap_finish(r);
	default:
		return 0; /* optional records the reader passed through (NOTE) */
	}
}

static int snap_read_all(struct snap_reader *r, int fd,
			 rep_progress_fn progress, void *arg)
{
	struct wire_record rec;
	int rc = wire_reader_open(&r->wr, fd, WIRE_STREAM_SNAPSHOT);

	if (rc != 0)
		return snap_fail(r, NULL, rc, "%s", r->wr.err);
	while (!r->wr.done) {
		rc = wire_reader_next(&r->wr, &rec);
		if (rc != 0)
			return snap_fail(r, NULL, rc, "%s", r->wr.err);
		rc = snap_apply(r, &rec);
		if (rc != 0)
			return rc;
		if (progress != NULL && rec.hdr.type == WIRE_REC_PAGE_DATA &&
		    r->pages % SNAP_PROGRESS_PAGES < WIRE_PAGE_MAX)
			progress(arg, r->pages, 0);
	}
	return 0;
}

int rep_snapshot_restore(int fd, const char *name, const struct hv_config *cfg,
			 rep_progress_fn progress, void *arg,
			 struct hv_domain **out, struct rep_snapshot_stats *stats,
			 char *err, size_t errlen)
{
	struct snap_reader r = { .name = name, .cfg = *cfg, .err = err,
				 .errlen = errlen };
	uint64_t t0 = rep_now_ns();
	int rc = -ENOMEM;

	*out = NULL;
	memset(stats, 0, sizeof(*stats));
	err[0] = '\0';
	r.pd = malloc(sizeof(*r.pd));
	r.ws = malloc(sizeof(*r.ws));
	r.hs = malloc(sizeof(*r.hs));
	r.dev = malloc(sizeof(*r.dev));
	if (r.pd && r.ws && r.hs && r.dev)
		rc = snap_read_all(&r, fd, progress, arg);
	stats->pages = r.pages;
	stats->bytes = r.wr.offset;
	wire_reader_close(&r.wr);
	free(r.pd);
	free(r.ws);
	free(r.hs);
	free(r.dev);
	if (rc != 0) {
		if (err[0] == '\0')
			snprintf(err, errlen, "%s: %s", name, strerror(-rc));
		hv_domain_free(r.dom);
		return rc;
	}
	stats->ns = rep_now_ns() - t0;
	*out = r.dom;
	return 0;
}
