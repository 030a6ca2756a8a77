/*
 * test_replica.c - the standby replica (replicator/standby.c) against a
 * primary played by the test, over a real loopback link.
 *
 * Each test makes a standby (rep_standby_new), a plaintext link pair
 * (control channel + one data channel, as tandemd uses) and hands the
 * accepted end to the standby as tandemd's td_accept_one does
 * (rep_link_hello, rep_standby_attach).  The test side then speaks the
 * replication protocol with hand-made records: REP_HELLO, then epochs of
 * DOMAIN_INFO (first epoch only), PAGE_CODED (transport/codec.c, the
 * standby's decoder options), DISK_WRITE, VCPU_STATE and DEVICE_STATE (real
 * states of a throwaway pagetest domain, taken once) and REP_EPOCH_END
 * with the record count and the digest of docs/replication.md.
 *
 * A good epoch is acknowledged (REP_ACK on the control channel) and its
 * pages are in the replica.  Every bad epoch (TESTING S3/S5: wrong digest,
 * count, epoch, base or flags; a replayed or old epoch; missing state;
 * bad or out-of-range pages, vCPUs and devices; records that have no
 * business on the link; DOMAIN_INFO out of place; ...) must be refused
 * whole: no ack, the committed epoch and the replica's pages and disk
 * unchanged (the replica never runs), the reason in the standby's log, the
 * link dropped by the standby - and a reconnect with the same session
 * resumes from the committed epoch and commits the next good one.  A link
 * cut mid-epoch discards the epoch the same way.
 *
 * Nothing here waits for a time to pass: every wait is for an event (a
 * record, a failed link, a state change) with a generous upper bound that
 * only turns a hang into a failure.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "disksync.h"
#include "hv.h"
#include "rep_int.h"
#include "rep_proto.h"
#include "replicator.h"
#include "transport.h"
#include "wire.h"

#define VM_NAME "vm1"
#define MEM_BYTES (16ull << 20)
#define NR_PAGES (MEM_BYTES / HV_PAGE_SIZE)
#define DISK_BYTES (1ull << 20)
#define WAIT_MS 10000   /* upper bound on any wait for an event */

#define PFN_A 100
#define PFN_B 2000
#define GEN 5
#define SESSION 0x5e55105e55105e55ull

static const char *guest_dir = "build/guests";

/* ---- state of a real domain, taken once --------------------------------- */

static struct wire_vcpu_state *g_vcpu;           /* vCPU 0 */
static struct hv_device_state *g_dev;            /* [0] console, [1] block */
static struct hv_platform g_plat;
static char g_dir[64];

static int group_setup(void **state)
{
	char image[300], disk[128];
	struct hv_config cfg = { .image = image, .mem_bytes = MEM_BYTES,
				 .nr_vcpus = 1, .console_fd = -1,
				 .cmdline = "pages=16", .disk = disk };
	struct hv_vcpu_state *hs = malloc(sizeof(*hs));
	struct hv_domain *dom;
	int rc;

	(void)state;
	snprintf(g_dir, sizeof(g_dir), "/tmp/test_replica.XXXXXX");
	if (mkdtemp(g_dir) == NULL || hs == NULL)
		return -1;
	snprintf(image, sizeof(image), "%s/pagetest.elf", guest_dir);
	snprintf(disk, sizeof(disk), "%s/proto.img", g_dir);
	{
		int fd = open(disk, O_RDWR | O_CREAT | O_TRUNC, 0600);

		if (fd < 0 || ftruncate(fd, DISK_BYTES) != 0)
			return -1;
		close(fd);
	}
	g_vcpu = calloc(1, sizeof(*g_vcpu));
	g_dev = calloc(2, sizeof(*g_dev));
	if (g_vcpu == NULL || g_dev == NULL)
		return -1;
	/* built (so vCPU 0 has a state), never run */
	rc = hv_domain_build(&cfg, &dom);
	if (rc != 0) {
		fprintf(stderr, "cannot build %s: %d\n", image, rc);
		return -1;
	}
	if (hv_nr_devices(dom) != 2 || hv_vcpu_save(dom, 0, hs) != 0 ||
	    hv_device_save(dom, 0, &g_dev[0]) != 0 ||
	    hv_device_save(dom, 1, &g_dev[1]) != 0 ||
	    hv_platform_info(dom, &g_plat) != 0)
		rc = -1;
	/* one guest per process: gone before any replica is made */
	hv_domain_free(dom);
	unlink(disk);
	rep_vcpu_to_wire(hs, 0, g_vcpu);
	free(hs);
	return rc;
}

static int group_teardown(void **state)
{
	(void)state;
	free(g_vcpu);
	free(g_dev);
	rmdir(g_dir);
	return 0;
}

/* ---- the standby's log ------------------------------------------------
 *
 * Why the standby refused an epoch is in its log line (sb_fail), not in
 * its stats once the link is gone.  stderr goes to a file while a test
 * runs; the file is copied to the real stderr after the test (and by the
 * sanitizers' death callback, so a report is never lost).
 */

static int g_saved_err = -1, g_log_fd = -1;
static off_t g_log_mark;

extern void __sanitizer_set_death_callback(void (*cb)(void))
	__attribute__((weak));

static void log_dump(void)
{
	char buf[8192];
	off_t off = 0;
	ssize_t n;

	if (g_log_fd < 0 || g_saved_err < 0)
		return;
	while ((n = pread(g_log_fd, buf, sizeof(buf), off)) > 0) {
		(void)!write(g_saved_err, buf, (size_t)n);
		off += n;
	}
}

static void log_capture_start(void)
{
	char path[96];

	snprintf(path, sizeof(path), "%s/log.XXXXXX", g_dir);
	g_log_fd = mkstemp(path);
	assert_true(g_log_fd >= 0);
	unlink(path);
	if (g_saved_err < 0) {
		g_saved_err = dup(STDERR_FILENO);
		if (__sanitizer_set_death_callback != NULL)
			__sanitizer_set_death_callback(log_dump);
	}
	assert_true(g_saved_err >= 0);
	assert_int_equal(dup2(g_log_fd, STDERR_FILENO), STDERR_FILENO);
	g_log_mark = 0;
}

static void log_capture_stop(void)
{
	if (g_log_fd < 0)
		return;
	log_dump();
	(void)dup2(g_saved_err, STDERR_FILENO);
	close(g_log_fd);
	g_log_fd = -1;
}

/* Whether the log since the last mark holds s; moves the mark to the end. */
static bool log_has(const char *s)
{
	off_t end = lseek(g_log_fd, 0, SEEK_END);
	size_t len = end > g_log_mark ? (size_t)(end - g_log_mark) : 0;
	char *buf = malloc(len + 1);
	bool found;

	assert_non_null(buf);
	assert_int_equal(pread(g_log_fd, buf, len, g_log_mark), (ssize_t)len);
	buf[len] = '\0';
	found = strstr(buf, s) != NULL;
	free(buf);
	g_log_mark = end;
	return found;
}

/* ---- the fixture: a standby and the test's primary end ------------------ */

struct recd {             /* a data record as sent, for replays */
	uint32_t type;
	uint64_t epoch;
	uint8_t *body;
	size_t len;
};

struct fx {
	struct tp_ctx *sctx, *cctx;
	struct tp_listener *lis;
	struct tp_config scfg, ccfg;
	struct rep_standby *sb;
	struct tp_link *cli;        /* the test's (primary's) end */
	struct codec_enc *enc;      /* one per link, like the primary's */
	struct wire_buf buf;
	bool disk;
	char disk_path[128];
	unsigned nr_devs;           /* devices of the replica domain */
	uint64_t session, generation;
	uint64_t count, digest;     /* of the epoch being sent */
	uint64_t last_epoch;        /* on the data channel of this link */
	struct recd rec[16];        /* the records of one epoch, if recording */
	unsigned nr_rec;
	bool recording;
};

static void fx_init(struct fx *f, bool disk)
{
	struct rep_standby_config sc = { .vm_name = VM_NAME, .compress = true };
	char err[256] = "";

	memset(f, 0, sizeof(*f));
	f->disk = disk;
	f->nr_devs = disk ? 2 : 1; /* the console is always there */
	f->session = SESSION;
	f->generation = GEN;
	wire_buf_init(&f->buf);
	assert_int_equal(tp_ctx_new(&f->sctx), 0);
	assert_int_equal(tp_ctx_new(&f->cctx), 0);
	tp_config_init(&f->scfg);
	f->scfg.security = TP_SEC_INSECURE;
	snprintf(f->scfg.local_name, sizeof(f->scfg.local_name), "beta");
	snprintf(f->scfg.peer_name, sizeof(f->scfg.peer_name), "alpha");
	f->scfg.ping_interval_ms = -1;
	tp_config_init(&f->ccfg);
	f->ccfg.security = TP_SEC_INSECURE;
	snprintf(f->ccfg.local_name, sizeof(f->ccfg.local_name), "alpha");
	snprintf(f->ccfg.peer_name, sizeof(f->ccfg.peer_name), "beta");
	f->ccfg.nr_bulk = REP_NR_BULK;
	f->ccfg.ping_interval_ms = -1;
	assert_int_equal(tp_listen(f->sctx, &f->scfg, "127.0.0.1:0", &f->lis,
				   err, sizeof(err)), 0);

	sc.hv.mem_bytes = MEM_BYTES;
	sc.hv.nr_vcpus = 1;
	sc.hv.console_fd = -1;
	if (disk) {
		snprintf(f->disk_path, sizeof(f->disk_path), "%s/replica.img",
			 g_dir);
		sc.hv.disk = f->disk_path;
		sc.disk_bytes = DISK_BYTES;
	}
	if (rep_standby_new(&sc, &f->sb, err, sizeof(err)) != 0)
		fail_msg("rep_standby_new: %s", err);
}

static void fx_rec_clear(struct fx *f)
{
	for (unsigned i = 0; i < f->nr_rec; i++)
		free(f->rec[i].body);
	f->nr_rec = 0;
}

static void fx_drop_link(struct fx *f)
{
	tp_link_free(f->cli);
	f->cli = NULL;
	codec_enc_free(f->enc);
	f->enc = NULL;
}

static void fx_fini(struct fx *f)
{
	fx_drop_link(f);
	rep_standby_free(f->sb);
	tp_listener_free(f->lis);
	tp_ctx_free(f->cctx);
	tp_ctx_free(f->sctx);
	wire_buf_fini(&f->buf);
	fx_rec_clear(f);
	if (f->disk)
		unlink(f->disk_path);
}

static int fx_setup(void **state, bool disk)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	*state = f;
	fx_init(f, disk);
	log_capture_start();
	return 0;
}

static int setup_plain(void **state)
{
	return fx_setup(state, false);
}

static int setup_disk(void **state)
{
	return fx_setup(state, true);
}

static int teardown(void **state)
{
	struct fx *f = *state;

	if (f != NULL) {
		fx_fini(f);
		free(f);
	}
	log_capture_stop();
	return 0;
}

static struct rep_hello fx_hello(const struct fx *f)
{
	struct rep_hello h = {
		.role = REP_ROLE_PRIMARY, .mode = REP_MODE_REMUS,
		.generation = f->generation, .session = f->session,
		.epoch = 0, .mem_bytes = MEM_BYTES, .vcpus = 1,
	};

	snprintf(h.vm, sizeof(h.vm), "%s", VM_NAME);
	return h;
}

static void standby_stats(struct fx *f, struct rep_standby_stats *st)
{
	rep_standby_stats(f->sb, st);
}

/*
 * A new link; the test sends `h`, the standby side reads it and attaches
 * (or refuses).  Returns rep_standby_attach's result; *w gets the
 * WELCOME the test side read.
 */
static int fx_connect(struct fx *f, const struct rep_hello *h,
		      struct rep_welcome *w)
{
	char err[TP_ERR_MAX] = "", addr[32];
	uint8_t body[REP_BODY_MAX];
	struct rep_hello got;
	struct tp_link *srv = NULL;
	struct tp_msg *m = NULL;
	struct codec_opts o;
	int rc;

	fx_drop_link(f);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", tp_listener_port(f->lis));
	if (tp_connect(f->cctx, &f->ccfg, addr, &f->cli, err, sizeof(err)))
		fail_msg("connect: %s", err);
	assert_int_equal(tp_accept(f->lis, WAIT_MS, &srv), 0);
	assert_int_equal(tp_send(f->cli, REP_CHAN_CTL, WIRE_REC_REP_HELLO, 0,
				 body, rep_hello_encode(h, body)), 0);
	if (rep_link_hello(srv, WAIT_MS, &got, err, sizeof(err)) != 0)
		fail_msg("rep_link_hello: %s", err);
	assert_int_equal(got.role, h->role);
	assert_true(got.generation == h->generation &&
		    got.session == h->session && got.epoch == h->epoch &&
		    got.mem_bytes == h->mem_bytes && got.vcpus == h->vcpus);
	assert_string_equal(got.vm, h->vm);
	rc = rep_standby_attach(f->sb, srv, &got, err, sizeof(err));
	assert_int_equal(tp_recv(f->cli, WAIT_MS, &m), 0);
	assert_int_equal(m->type, WIRE_REC_REP_WELCOME);
	assert_int_equal(m->chan, REP_CHAN_CTL);
	if (rep_welcome_decode(m->body, m->len, w, err, sizeof(err)) != 0)
		fail_msg("WELCOME: %s", err);
	tp_msg_free(m);
	codec_opts_init(&o); /* what the standby's decoder uses */
	f->enc = codec_enc_new(&o);
	assert_non_null(f->enc);
	f->last_epoch = 0;
	f->count = f->digest = 0;
	return rc;
}

/* Attach with the fixture's HELLO; expect ACCEPT with `committed`. */
static void fx_attach(struct fx *f, uint64_t committed)
{
	struct rep_hello h = fx_hello(f);
	struct rep_welcome w;

	assert_int_equal(fx_connect(f, &h, &w), 0);
	assert_int_equal(w.status, REP_WELCOME_ACCEPT);
	assert_int_equal(w.role, REP_ROLE_STANDBY);
	assert_int_equal(w.generation, f->generation);
	assert_true(w.session == f->session);
	assert_int_equal(w.committed, committed);
}

/* ---- sending ------------------------------------------------------------ */

/* One record on the data channel, counted into the epoch's END unless
 * `count` is false.  Returns tp_send's result (a link the standby has
 * already dropped refuses). */
static int send_data(struct fx *f, uint32_t type, uint64_t epoch,
		     const void *body, size_t len, bool count)
{
	int rc = tp_send(f->cli, REP_CHAN_DATA, type, epoch, body, len);

	if (epoch > f->last_epoch)
		f->last_epoch = epoch;
	if (count) {
		f->count++;
		f->digest += rep_record_digest(type, epoch, body, len);
	}
	if (f->recording && f->nr_rec < 16) {
		struct recd *r = &f->rec[f->nr_rec++];

		r->type = type;
		r->epoch = epoch;
		r->len = len;
		r->body = malloc(len ? len : 1);
		assert_non_null(r->body);
		memcpy(r->body, body, len);
	}
	return rc;
}

static void fill_page(uint8_t *p, uint64_t pfn, uint8_t tag)
{
	memset(p, tag, HV_PAGE_SIZE);
	memcpy(p, &pfn, sizeof(pfn));
	p[8] = tag;
	p[HV_PAGE_SIZE - 1] = (uint8_t)(tag ^ pfn);
}

/* Encode one page (pfn, tag) into f->buf as a PAGE_CODED body. */
static void encode_page(struct fx *f, uint64_t pfn, uint8_t tag)
{
	uint8_t *page = malloc(HV_PAGE_SIZE);
	const void *ptr[1] = { page };

	assert_non_null(page);
	fill_page(page, pfn, tag);
	wire_buf_reset(&f->buf);
	assert_int_equal(codec_enc_pages(f->enc, 1, &pfn, ptr, &f->buf, NULL),
			 0);
	free(page);
}

static int send_page(struct fx *f, uint64_t epoch, uint64_t pfn, uint8_t tag)
{
	encode_page(f, pfn, tag);
	return send_data(f, WIRE_REC_PAGE_CODED, epoch, f->buf.data,
			 f->buf.len, true);
}

static void domain_info(struct wire_domain_info *di)
{
	*di = (struct wire_domain_info){
		.backend = WIRE_BACKEND_UVM, .nr_vcpus = 1,
		.guest_base = g_plat.guest_base, .mem_bytes = MEM_BYTES,
		.page_size = HV_PAGE_SIZE,
		.xsave_features = g_plat.xsave_features,
		.xsave_size = g_plat.xsave_size,
	};
}

static int send_domain_info_of(struct fx *f, uint64_t epoch,
			       const struct wire_domain_info *di)
{
	const uint8_t *body;
	size_t len;

	wire_buf_reset(&f->buf);
	assert_int_equal(wire_domain_info_put(&f->buf, 0, di, NULL), 0);
	rep_record_body(&f->buf, &body, &len);
	return send_data(f, WIRE_REC_DOMAIN_INFO, epoch, body, len, true);
}

static int send_domain_info(struct fx *f, uint64_t epoch)
{
	struct wire_domain_info di;

	domain_info(&di);
	return send_domain_info_of(f, epoch, &di);
}

static int send_vcpu_id(struct fx *f, uint64_t epoch, uint32_t id)
{
	const uint8_t *body;
	size_t len;

	g_vcpu->vcpu_id = id;
	wire_buf_reset(&f->buf);
	assert_int_equal(wire_vcpu_state_put(&f->buf, 0, g_vcpu, NULL), 0);
	g_vcpu->vcpu_id = 0;
	rep_record_body(&f->buf, &body, &len);
	return send_data(f, WIRE_REC_VCPU_STATE, epoch, body, len, true);
}

static int send_vcpu(struct fx *f, uint64_t epoch)
{
	return send_vcpu_id(f, epoch, 0);
}

static int send_dev_as(struct fx *f, uint64_t epoch, unsigned which,
		       uint32_t index)
{
	struct wire_device_state ds = {
		.index = index, .type = g_dev[which].type,
		.port = g_dev[which].port, .blob_len = g_dev[which].len,
		.blob = g_dev[which].blob,
	};
	const uint8_t *body;
	size_t len;

	wire_buf_reset(&f->buf);
	assert_int_equal(wire_device_state_put(&f->buf, 0, &ds, NULL), 0);
	rep_record_body(&f->buf, &body, &len);
	return send_data(f, WIRE_REC_DEVICE_STATE, epoch, body, len, true);
}

static int send_devs(struct fx *f, uint64_t epoch)
{
	int rc = 0;

	for (unsigned i = 0; rc == 0 && i < f->nr_devs; i++)
		rc = send_dev_as(f, epoch, i, i);
	return rc;
}

static int send_disk(struct fx *f, uint64_t epoch, uint32_t kind,
		     uint64_t offset, uint32_t length, uint8_t fill)
{
	uint8_t *data = malloc(length);
	uint8_t *body = malloc(DS_WRITE_HEADER + length);
	struct ds_write w = { .disk = 0, .kind = kind, .offset = offset,
			      .length = length, .data = data };
	size_t len;
	int rc;

	assert_true(data && body);
	memset(data, fill, length);
	assert_int_equal(ds_write_encode(&w, body, DS_WRITE_HEADER + length,
					 &len), 0);
	rc = send_data(f, WIRE_REC_DISK_WRITE, epoch, body, len, true);
	free(data);
	free(body);
	return rc;
}

static int send_end_raw(struct fx *f, const struct rep_epoch_end *e)
{
	uint8_t body[64];

	if (e->epoch > f->last_epoch)
		f->last_epoch = e->epoch;
	if (f->recording && f->nr_rec < 16) {
		struct recd *r = &f->rec[f->nr_rec++];

		r->type = WIRE_REC_REP_EPOCH_END;
		r->epoch = e->epoch;
		r->len = rep_epoch_end_encode(e, body);
		r->body = malloc(r->len);
		assert_non_null(r->body);
		memcpy(r->body, body, r->len);
	}
	return tp_send(f->cli, REP_CHAN_DATA, WIRE_REC_REP_EPOCH_END, e->epoch,
		       body, rep_epoch_end_encode(e, body));
}

/* END with what was sent since the last END; the tallies restart. */
static int send_end(struct fx *f, uint64_t epoch, uint64_t base)
{
	struct rep_epoch_end e = {
		.epoch = epoch, .base = base, .records = f->count,
		.digest = f->digest, .pages = 1, .guest_clock_ns = 12345,
		.flags = base == 0 ? REP_END_FULL : 0,
	};

	f->count = f->digest = 0;
	return send_end_raw(f, &e);
}

static void expect_ack(struct fx *f, uint64_t epoch)
{
	struct tp_msg *m = NULL;
	struct rep_ack a;
	char err[WIRE_ERR_MAX];
	int rc = tp_recv(f->cli, WAIT_MS, &m);

	if (rc != 0) {
		struct rep_standby_stats st;

		standby_stats(f, &st);
		fail_msg("no ack for epoch %llu: %d; standby: %s",
			 (unsigned long long)epoch, rc, st.last_error);
	}
	assert_int_equal(m->type, WIRE_REC_REP_ACK);
	assert_int_equal(m->chan, REP_CHAN_CTL);
	assert_int_equal(m->epoch, epoch);
	assert_int_equal(rep_ack_decode(m->body, m->len, &a, err, sizeof(err)),
			 0);
	assert_int_equal(a.epoch, epoch);
	tp_msg_free(m);
}

/* The good records of epoch e: a page (PFN_A, tag), vCPU and devices. */
static void good_records(struct fx *f, uint64_t e, uint8_t tag)
{
	assert_int_equal(send_page(f, e, PFN_A, tag), 0);
	assert_int_equal(send_vcpu(f, e), 0);
	assert_int_equal(send_devs(f, e), 0);
}

/* What closes epoch e on `base`: vCPU, devices and END, each sent. */
static void send_state_end(struct fx *f, uint64_t e, uint64_t base)
{
	assert_int_equal(send_vcpu(f, e), 0);
	assert_int_equal(send_devs(f, e), 0);
	assert_int_equal(send_end(f, e, base), 0);
}

/* The same after a bad record: the standby may have dropped the link
 * already, so the results are ignored. */
static void send_rest(struct fx *f, uint64_t e, uint64_t base)
{
	(void)send_vcpu(f, e);
	(void)send_devs(f, e);
	(void)send_end(f, e, base);
}

/* The end of a good epoch: a disk write of `kind` (0..4096, tag) if a
 * disk, the state, END on `base` - and the standby acks it. */
static void close_epoch(struct fx *f, uint64_t epoch, uint64_t base,
			uint32_t kind, uint8_t tag)
{
	if (f->disk)
		assert_int_equal(send_disk(f, epoch, kind, 0, 4096, tag), 0);
	send_state_end(f, epoch, base);
	expect_ack(f, epoch);
}

/* The session's first epoch: DOMAIN_INFO, two pages, state, END FULL. */
static void full_epoch(struct fx *f, uint64_t epoch, uint8_t tag)
{
	assert_int_equal(send_domain_info(f, epoch), 0);
	assert_int_equal(send_page(f, epoch, PFN_A, tag), 0);
	assert_int_equal(send_page(f, epoch, PFN_B, tag), 0);
	close_epoch(f, epoch, 0, DS_KIND_BASE, tag);
}

/* A later epoch writing one page (and a disk sector run if a disk). */
static void next_epoch(struct fx *f, uint64_t epoch, uint64_t base,
		       uint64_t pfn, uint8_t tag)
{
	assert_int_equal(send_page(f, epoch, pfn, tag), 0);
	close_epoch(f, epoch, base, DS_KIND_EPOCH, tag);
}

/* ---- checking the replica ----------------------------------------------- */

struct page_check {
	uint64_t pfn;
	uint8_t tag;
	uint64_t epoch;     /* the committed epoch inspect ran on */
	bool paused;
};

static int page_check_fn(void *arg, struct hv_domain *dom, uint64_t epoch)
{
	struct page_check *pc = arg;
	uint8_t *want = malloc(HV_PAGE_SIZE);
	void *p = NULL;
	int rc = hv_map(dom, pc->pfn, 1, false, &p);

	pc->epoch = epoch;
	pc->paused = hv_is_paused(dom);
	if (rc == 0 && want != NULL) {
		fill_page(want, pc->pfn, pc->tag);
		rc = memcmp(p, want, HV_PAGE_SIZE) == 0 ? 0 : 1;
		hv_unmap(dom, p, 1);
	}
	free(want);
	return rc;
}

/* The committed image holds page pfn as written with tag; the replica
 * never ran. */
static void expect_page(struct fx *f, uint64_t pfn, uint8_t tag,
			uint64_t committed)
{
	struct page_check pc = { .pfn = pfn, .tag = tag };
	int rc = rep_standby_inspect(f->sb, page_check_fn, &pc);

	if (rc != 0)
		fail_msg("page %llu is not the one of tag 0x%02x (rc %d)",
			 (unsigned long long)pfn, tag, rc);
	assert_int_equal(pc.epoch, committed);
	assert_true(pc.paused);
}

static void expect_disk(struct fx *f, uint64_t off, size_t len, uint8_t fill)
{
	uint8_t *b = malloc(len);
	int fd = open(f->disk_path, O_RDONLY);

	assert_true(fd >= 0 && b != NULL);
	assert_int_equal(pread(fd, b, len, (off_t)off), (ssize_t)len);
	for (size_t i = 0; i < len; i++)
		if (b[i] != fill)
			fail_msg("disk byte %llu is 0x%02x, not 0x%02x",
				 (unsigned long long)(off + i), b[i], fill);
	close(fd);
	free(b);
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000,
			       .tv_nsec = (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Wait (bounded) for the standby to notice its link is gone. */
static void wait_standby_link_down(struct fx *f, struct rep_standby_stats *st)
{
	for (int i = 0; i < WAIT_MS; i++) {
		standby_stats(f, st);
		if (!st->link_up)
			return;
		sleep_ms(1);
	}
	fail_msg("the standby still has its link up");
}

/*
 * The standby must drop the link without acknowledging anything: the
 * test side's tp_recv ends in an error.  Then the standby's state has
 * settled (link_up false, a reason in last_error) and its log says why
 * (`why`, unless NULL).
 */
static void expect_dropped(struct fx *f, const char *why,
			   struct rep_standby_stats *st)
{
	for (;;) {
		struct tp_msg *m = NULL;
		int rc = tp_recv(f->cli, WAIT_MS, &m);

		if (rc == -ETIMEDOUT) {
			standby_stats(f, st);
			fail_msg("the standby neither acked nor dropped the "
				 "link (%s)", st->last_error);
		}
		if (rc != 0)
			break;
		if (m->type == WIRE_REC_REP_ACK)
			fail_msg("an ack for epoch %llu",
				 (unsigned long long)m->epoch);
		tp_msg_free(m);
	}
	wait_standby_link_down(f, st);
	if (st->last_error[0] == '\0')
		fail_msg("the standby gives no reason for dropping the link");
	if (why != NULL && !log_has(why))
		fail_msg("the standby's log does not say \"%s\"", why);
}

/* The link breaks under the standby; wait until it has noticed. */
static void cut_link(struct fx *f, struct rep_standby_stats *st)
{
	tp_link_abort(f->cli);
	wait_standby_link_down(f, st);
}

/* A new session whose first epoch (PFN_A and PFN_B of tag 0x11) is
 * committed. */
static void attach_epoch_1(struct fx *f)
{
	fx_attach(f, 0);
	full_epoch(f, 1, 0x11);
}

/* The session goes on from epoch 1: epoch 2 (PFN_A of tag 0x22)
 * commits. */
static void expect_epoch_2_commits(struct fx *f)
{
	next_epoch(f, 2, 1, PFN_A, 0x22);
	expect_page(f, PFN_A, 0x22, 2);
}

/* One cmocka test for case c of a table-driven runner. */
#define CASE_TEST(fn, run, c) \
	static void fn(void **state) \
	{ \
		run(*state, c); \
	}

/* Bytes for a body whose content does not matter. */
static const uint8_t zeros[64];

/* ---- good path ---------------------------------------------------------- */

static void test_good_epochs(void **state)
{
	struct fx *f = *state;
	struct rep_standby_stats st;

	standby_stats(f, &st);
	assert_int_equal(st.state, REP_SB_WAITING);
	assert_int_equal(rep_standby_inspect(f->sb, page_check_fn,
					     &(struct page_check){ 0 }),
			 -ENODATA);
	fx_attach(f, 0);
	standby_stats(f, &st);
	assert_int_equal(st.state, REP_SB_SYNCING);
	assert_true(st.link_up);
	full_epoch(f, 1, 0x11);
	standby_stats(f, &st);
	assert_int_equal(st.committed, 1);
	assert_int_equal(st.commits, 1);
	assert_int_equal(st.state, REP_SB_REPLICATING);
	assert_true(st.session == SESSION);
	assert_int_equal(st.generation, GEN);
	expect_page(f, PFN_A, 0x11, 1);
	expect_page(f, PFN_B, 0x11, 1);
	expect_page(f, 0, 0x00, 1); /* never written: zero */
	next_epoch(f, 2, 1, PFN_A, 0x22);
	expect_page(f, PFN_A, 0x22, 2);
	expect_page(f, PFN_B, 0x11, 2);
	/* epochs may skip numbers (the primary folds unacked ones) */
	next_epoch(f, 7, 2, PFN_B, 0x33);
	expect_page(f, PFN_B, 0x33, 7);
	/* an unknown optional record is skipped by the link: it neither
	 * breaks nor counts in the epoch */
	assert_int_equal(send_page(f, 8, PFN_A, 0x44), 0);
	assert_int_equal(tp_send(f->cli, REP_CHAN_DATA, 0x80000123u, 8, "abc",
				 3), 0);
	send_state_end(f, 8, 7);
	expect_ack(f, 8);
	expect_page(f, PFN_A, 0x44, 8);
	/* heartbeats on the control channel are fine between epochs */
	{
		struct rep_heartbeat hb = { .generation = GEN, .epoch = 9,
					    .role = REP_ROLE_PRIMARY };
		uint8_t body[32];

		assert_int_equal(tp_send(f->cli, REP_CHAN_CTL,
					 WIRE_REC_REP_HEARTBEAT, 8, body,
					 rep_heartbeat_encode(&hb, body)), 0);
	}
	next_epoch(f, 9, 8, PFN_B, 0x55);
	standby_stats(f, &st);
	assert_int_equal(st.committed, 9);
	assert_int_equal(st.commits, 5);
	assert_int_equal(st.discarded, 0);
	assert_string_equal(st.last_error, "");
}

/* ---- one bad epoch after a committed one -------------------------------- */

enum bad_case {
	BAD_DIGEST,
	BAD_COUNT_MORE,
	BAD_COUNT_LESS,
	BAD_END_OTHER_EPOCH,
	BAD_END_WRONG_BASE,
	BAD_END_FULL_AGAIN,
	BAD_END_UNDECODABLE,
	BAD_END_EMPTY,
	BAD_OLD_EPOCH,
	BAD_OLDER_EPOCH,
	BAD_MIXED_EPOCHS,
	BAD_MISSING_VCPU,
	BAD_MISSING_DEVICE,
	BAD_VCPU_ID,
	BAD_VCPU_BODY,
	BAD_DEVICE_INDEX,
	BAD_DEVICE_BODY,
	BAD_PFN_PAST_MEMORY,
	BAD_PAGE_SEQUENCE,
	BAD_PAGE_TRUNCATED,
	BAD_PAGE_METHOD,
	BAD_PAGE_OPTIONS,
	BAD_TYPE_ACK,
	BAD_TYPE_PAGE_DATA,
	BAD_TYPE_SNAPSHOT_END,
	BAD_TYPE_HANDOVER,
	BAD_TYPE_WELCOME,
	BAD_HELLO_AGAIN,
	BAD_HEARTBEAT_BODY,
	BAD_DOMAIN_INFO_LATER,
	BAD_DISK_WITHOUT_DISK,
	BAD_NR
};

struct bad_spec {
	const char *name;
	const char *why;      /* in the standby's log */
	bool discards;        /* the epoch was open when it failed */
};

static const struct bad_spec bad_specs[BAD_NR] = {
	[BAD_DIGEST] = { "wrong digest", "epoch 2: 3 records, digest", true },
	[BAD_COUNT_MORE] = { "count too high", "epoch 2: 4 records, digest",
			     true },
	[BAD_COUNT_LESS] = { "count too low", "epoch 2: 2 records, digest",
			     true },
	[BAD_END_OTHER_EPOCH] = { "END of another epoch",
				  "END of epoch 3, open epoch 2", true },
	[BAD_END_WRONG_BASE] = { "END on a base not committed",
				 "epoch 3 builds on 2, this replica has 1",
				 true },
	[BAD_END_FULL_AGAIN] = { "FULL END after a commit",
				 "epoch 2 builds on 0, this replica has 1",
				 true },
	[BAD_END_UNDECODABLE] = { "END with base = epoch",
				  "REP_EPOCH_END: epoch 2 on base 2", true },
	[BAD_END_EMPTY] = { "END without records",
			    "END of epoch 2, open epoch 0", false },
	[BAD_OLD_EPOCH] = { "records of the committed epoch (duplicate)",
			    "PAGE_CODED of epoch 1, already committed 1",
			    false },
	[BAD_OLDER_EPOCH] = { "records of epoch 0",
			      "VCPU_STATE of epoch 0, already committed 1",
			      false },
	[BAD_MIXED_EPOCHS] = { "records of two epochs",
			       "VCPU_STATE of epoch 3 while epoch 2 is open",
			       true },
	[BAD_MISSING_VCPU] = { "no VCPU_STATE", "lacks vCPU state", true },
	[BAD_MISSING_DEVICE] = { "no DEVICE_STATE", "lacks device state",
				 true },
	[BAD_VCPU_ID] = { "vCPU past nr_vcpus", "vCPU 1 of 1", true },
	[BAD_VCPU_BODY] = { "VCPU_STATE cut short", "VCPU_STATE", true },
	[BAD_DEVICE_INDEX] = { "device past the domain's",
			       "device 1 does not exist here", true },
	[BAD_DEVICE_BODY] = { "DEVICE_STATE with a wrong blob length",
			      "DEVICE_STATE", true },
	[BAD_PFN_PAST_MEMORY] = { "page past guest memory",
				  "pfn 4096 past guest memory (4096 pages)",
				  true },
	[BAD_PAGE_SEQUENCE] = { "PAGE_CODED out of sequence",
				"sequence 7 != expected 3", true },
	[BAD_PAGE_TRUNCATED] = { "PAGE_CODED one byte short", "PAGE_CODED",
				 true },
	[BAD_PAGE_METHOD] = { "PAGE_CODED with method 7",
			      "unknown method 7", true },
	[BAD_PAGE_OPTIONS] = { "PAGE_CODED of another encoder",
			       "differ from this decoder's", true },
	[BAD_TYPE_ACK] = { "REP_ACK on the data channel",
			   "unexpected REP_ACK record", true },
	[BAD_TYPE_PAGE_DATA] = { "PAGE_DATA (snapshot pages)",
				 "unexpected PAGE_DATA record", true },
	[BAD_TYPE_SNAPSHOT_END] = { "a snapshot END",
				    "unexpected END record", true },
	[BAD_TYPE_HANDOVER] = { "REP_HANDOVER of an uncommitted epoch",
				"HANDOVER at epoch 2, committed 1", true },
	[BAD_TYPE_WELCOME] = { "REP_WELCOME from the primary",
			       "unexpected REP_WELCOME record", false },
	[BAD_HELLO_AGAIN] = { "a second REP_HELLO",
			      "unexpected REP_HELLO record", false },
	[BAD_HEARTBEAT_BODY] = { "a heartbeat of an unknown role",
				 "REP_HEARTBEAT: role 7 unknown", false },
	[BAD_DOMAIN_INFO_LATER] = { "DOMAIN_INFO in a later epoch",
				    "DOMAIN_INFO outside a session's first "
				    "epoch", true },
	[BAD_DISK_WITHOUT_DISK] = { "DISK_WRITE to a standby without disk",
				    "DISK_WRITE but this host has no disk",
				    true },
};

/* Send the bad epoch.  Sends after the bad record may find the link
 * already dropped: their results are ignored. */
static void send_bad(struct fx *f, enum bad_case c)
{
	uint8_t body[REP_BODY_MAX];
	struct rep_epoch_end e = { .epoch = 2, .base = 1, .pages = 1 };
	uint8_t *copy;

	switch (c) {
	case BAD_DIGEST:
	case BAD_COUNT_MORE:
	case BAD_COUNT_LESS:
		good_records(f, 2, 0x33);
		e.records = f->count + (c == BAD_COUNT_MORE) -
			    (c == BAD_COUNT_LESS);
		e.digest = f->digest + (c == BAD_DIGEST);
		(void)send_end_raw(f, &e);
		break;
	case BAD_END_OTHER_EPOCH:
		good_records(f, 2, 0x33);
		(void)send_end(f, 3, 1);
		break;
	case BAD_END_WRONG_BASE:
		good_records(f, 3, 0x33);
		(void)send_end(f, 3, 2);
		break;
	case BAD_END_FULL_AGAIN:
		good_records(f, 2, 0x33);
		(void)send_end(f, 2, 0); /* FULL, base 0 */
		break;
	case BAD_END_UNDECODABLE:
		good_records(f, 2, 0x33);
		e.base = 2;
		e.records = f->count;
		e.digest = f->digest;
		(void)send_end_raw(f, &e);
		break;
	case BAD_END_EMPTY:
		(void)send_end(f, 2, 1);
		break;
	case BAD_OLD_EPOCH: /* epoch 1 again on the same link */
		(void)send_page(f, 1, PFN_A, 0x33);
		send_rest(f, 1, 0);
		break;
	case BAD_OLDER_EPOCH: /* a fresh link could send epoch 0 */
		break;
	case BAD_MIXED_EPOCHS:
		assert_int_equal(send_page(f, 2, PFN_A, 0x33), 0);
		send_rest(f, 3, 1);
		break;
	case BAD_MISSING_VCPU:
		assert_int_equal(send_page(f, 2, PFN_A, 0x33), 0);
		assert_int_equal(send_devs(f, 2), 0);
		(void)send_end(f, 2, 1);
		break;
	case BAD_MISSING_DEVICE:
		assert_int_equal(send_page(f, 2, PFN_A, 0x33), 0);
		assert_int_equal(send_vcpu(f, 2), 0);
		(void)send_end(f, 2, 1);
		break;
	case BAD_VCPU_ID:
		assert_int_equal(send_page(f, 2, PFN_A, 0x33), 0);
		(void)send_vcpu_id(f, 2, 1);
		send_rest(f, 2, 1);
		break;
	case BAD_VCPU_BODY: {
		const uint8_t *b;
		size_t len;

		assert_int_equal(send_page(f, 2, PFN_A, 0x33), 0);
		wire_buf_reset(&f->buf);
		assert_int_equal(wire_vcpu_state_put(&f->buf, 0, g_vcpu, NULL),
				 0);
		rep_record_body(&f->buf, &b, &len);
		assert_true(len > WIRE_VCPU_STATE_FIXED);
		/* xsave_len says more than the body has */
		(void)send_data(f, WIRE_REC_VCPU_STATE, 2, b, len - 1, true);
		(void)send_devs(f, 2);
		(void)send_end(f, 2, 1);
		break;
	}
	case BAD_DEVICE_INDEX:
		good_records(f, 2, 0x33);
		(void)send_dev_as(f, 2, 0, 1);
		(void)send_end(f, 2, 1);
		break;
	case BAD_DEVICE_BODY: {
		uint8_t d[WIRE_DEVICE_STATE_FIXED + 8] = { 0 };

		assert_int_equal(send_page(f, 2, PFN_A, 0x33), 0);
		assert_int_equal(send_vcpu(f, 2), 0);
		d[15] = 9; /* blob_len 9, 8 bytes follow */
		(void)send_data(f, WIRE_REC_DEVICE_STATE, 2, d, sizeof(d),
				true);
		(void)send_end(f, 2, 1);
		break;
	}
	case BAD_PFN_PAST_MEMORY:
		(void)send_page(f, 2, NR_PAGES, 0x33);
		send_rest(f, 2, 1);
		break;
	case BAD_PAGE_SEQUENCE:
	case BAD_PAGE_TRUNCATED:
	case BAD_PAGE_METHOD:
	case BAD_PAGE_OPTIONS: {
		size_t len;

		assert_int_equal(send_page(f, 2, PFN_A, 0x33), 0);
		encode_page(f, PFN_B, 0x33);
		len = f->buf.len;
		copy = malloc(len);
		assert_non_null(copy);
		memcpy(copy, f->buf.data, len);
		if (c == BAD_PAGE_SEQUENCE)
			copy[7] = 7;            /* sequence 1 -> 7 */
		else if (c == BAD_PAGE_TRUNCATED)
			len--;
		else if (c == BAD_PAGE_METHOD)
			copy[8] |= 0xe0;        /* entry 0's method bits */
		else
			copy[2] = 0;            /* compress off */
		(void)send_data(f, WIRE_REC_PAGE_CODED, 2, copy, len, true);
		free(copy);
		send_rest(f, 2, 1);
		break;
	}
	case BAD_TYPE_ACK: {
		struct rep_ack a = { .epoch = 2 };

		assert_int_equal(send_page(f, 2, PFN_A, 0x33), 0);
		(void)send_data(f, WIRE_REC_REP_ACK, 2, body,
				rep_ack_encode(&a, body), true);
		send_rest(f, 2, 1);
		break;
	}
	case BAD_TYPE_PAGE_DATA: {
		uint8_t *page = calloc(1, HV_PAGE_SIZE);
		uint64_t pfn = PFN_A;
		const uint8_t *b;
		size_t len;

		assert_non_null(page);
		assert_int_equal(send_page(f, 2, PFN_B, 0x33), 0);
		wire_buf_reset(&f->buf);
		assert_int_equal(wire_page_data_put_contig(&f->buf, 0, 1, &pfn,
							   page, NULL), 0);
		free(page);
		rep_record_body(&f->buf, &b, &len);
		(void)send_data(f, WIRE_REC_PAGE_DATA, 2, b, len, true);
		send_rest(f, 2, 1);
		break;
	}
	case BAD_TYPE_SNAPSHOT_END:
		good_records(f, 2, 0x33);
		(void)send_data(f, WIRE_REC_END, 2, zeros, WIRE_END_SIZE, true);
		(void)send_end(f, 2, 1);
		break;
	case BAD_TYPE_HANDOVER: {
		struct rep_handover h = { .epoch = 2, .generation = GEN };

		good_records(f, 2, 0x33);
		(void)send_data(f, WIRE_REC_REP_HANDOVER, 2, body,
				rep_handover_encode(&h, body), false);
		(void)send_end(f, 2, 1);
		break;
	}
	case BAD_TYPE_WELCOME: {
		struct rep_welcome w = { .role = REP_ROLE_PRIMARY };

		assert_int_equal(tp_send(f->cli, REP_CHAN_CTL,
					 WIRE_REC_REP_WELCOME, 1, body,
					 rep_welcome_encode(&w, body)), 0);
		break;
	}
	case BAD_HELLO_AGAIN: {
		struct rep_hello h = fx_hello(f);

		assert_int_equal(tp_send(f->cli, REP_CHAN_CTL,
					 WIRE_REC_REP_HELLO, 1, body,
					 rep_hello_encode(&h, body)), 0);
		break;
	}
	case BAD_HEARTBEAT_BODY: {
		struct rep_heartbeat hb = { .generation = GEN, .epoch = 1,
					    .role = 7 };

		assert_int_equal(tp_send(f->cli, REP_CHAN_CTL,
					 WIRE_REC_REP_HEARTBEAT, 1, body,
					 rep_heartbeat_encode(&hb, body)), 0);
		break;
	}
	case BAD_DOMAIN_INFO_LATER:
		(void)send_domain_info(f, 2);
		(void)send_page(f, 2, PFN_A, 0x33);
		send_rest(f, 2, 1);
		break;
	case BAD_DISK_WITHOUT_DISK:
		assert_int_equal(send_page(f, 2, PFN_A, 0x33), 0);
		(void)send_disk(f, 2, DS_KIND_EPOCH, 0, 512, 0x33);
		send_rest(f, 2, 1);
		break;
	case BAD_NR:
		break;
	}
}

static void run_bad_case(struct fx *f, enum bad_case c)
{
	const struct bad_spec *sp = &bad_specs[c];
	struct rep_standby_stats st;

	print_message("    case: %s\n", sp->name);
	attach_epoch_1(f);
	if (c == BAD_OLDER_EPOCH) {
		/* epochs on one channel never go back, so on a new link:
		 * resume, then an epoch-0 record */
		cut_link(f, &st);
		fx_attach(f, 1);
		(void)send_vcpu(f, 0);
	} else {
		send_bad(f, c);
	}
	expect_dropped(f, sp->why, &st);
	/* nothing applied: the committed image is epoch 1's */
	assert_int_equal(st.committed, 1);
	assert_int_equal(st.commits, 1);
	assert_int_equal(st.state, REP_SB_REPLICATING);
	assert_false(st.link_up);
	assert_int_equal(st.discarded, sp->discards ? 1 : 0);
	expect_page(f, PFN_A, 0x11, 1);
	expect_page(f, PFN_B, 0x11, 1);

	/* the same session resumes from epoch 1; what the bad epoch staged
	 * is gone (PFN_A stays 0x11) and the next good epoch commits */
	fx_attach(f, 1);
	standby_stats(f, &st);
	assert_int_equal(st.state, REP_SB_REPLICATING);
	assert_true(st.link_up);
	next_epoch(f, 2, 1, PFN_B, 0x22);
	standby_stats(f, &st);
	assert_int_equal(st.committed, 2);
	assert_int_equal(st.commits, 2);
	expect_page(f, PFN_A, 0x11, 2);
	expect_page(f, PFN_B, 0x22, 2);
}

#define BAD_TEST(fn, c) CASE_TEST(fn, run_bad_case, c)

BAD_TEST(test_bad_digest, BAD_DIGEST)
BAD_TEST(test_bad_count_more, BAD_COUNT_MORE)
BAD_TEST(test_bad_count_less, BAD_COUNT_LESS)
BAD_TEST(test_bad_end_other_epoch, BAD_END_OTHER_EPOCH)
BAD_TEST(test_bad_end_wrong_base, BAD_END_WRONG_BASE)
BAD_TEST(test_bad_end_full_again, BAD_END_FULL_AGAIN)
BAD_TEST(test_bad_end_undecodable, BAD_END_UNDECODABLE)
BAD_TEST(test_bad_end_empty, BAD_END_EMPTY)
BAD_TEST(test_bad_old_epoch, BAD_OLD_EPOCH)
BAD_TEST(test_bad_older_epoch, BAD_OLDER_EPOCH)
BAD_TEST(test_bad_mixed_epochs, BAD_MIXED_EPOCHS)
BAD_TEST(test_bad_missing_vcpu, BAD_MISSING_VCPU)
BAD_TEST(test_bad_missing_device, BAD_MISSING_DEVICE)
BAD_TEST(test_bad_vcpu_id, BAD_VCPU_ID)
BAD_TEST(test_bad_vcpu_body, BAD_VCPU_BODY)
BAD_TEST(test_bad_device_index, BAD_DEVICE_INDEX)
BAD_TEST(test_bad_device_body, BAD_DEVICE_BODY)
BAD_TEST(test_bad_pfn_past_memory, BAD_PFN_PAST_MEMORY)
BAD_TEST(test_bad_page_sequence, BAD_PAGE_SEQUENCE)
BAD_TEST(test_bad_page_truncated, BAD_PAGE_TRUNCATED)
BAD_TEST(test_bad_page_method, BAD_PAGE_METHOD)
BAD_TEST(test_bad_page_options, BAD_PAGE_OPTIONS)
BAD_TEST(test_bad_type_ack, BAD_TYPE_ACK)
BAD_TEST(test_bad_type_page_data, BAD_TYPE_PAGE_DATA)
BAD_TEST(test_bad_type_snapshot_end, BAD_TYPE_SNAPSHOT_END)
BAD_TEST(test_bad_type_handover, BAD_TYPE_HANDOVER)
BAD_TEST(test_bad_type_welcome, BAD_TYPE_WELCOME)
BAD_TEST(test_bad_hello_again, BAD_HELLO_AGAIN)
BAD_TEST(test_bad_heartbeat_body, BAD_HEARTBEAT_BODY)
BAD_TEST(test_bad_domain_info_later, BAD_DOMAIN_INFO_LATER)
BAD_TEST(test_bad_disk_without_disk, BAD_DISK_WITHOUT_DISK)

/* ---- S5: a replayed valid checkpoint ------------------------------------ */

static void replay(struct fx *f)
{
	for (unsigned i = 0; i < f->nr_rec; i++)
		(void)tp_send(f->cli, REP_CHAN_DATA, f->rec[i].type,
			      f->rec[i].epoch, f->rec[i].body, f->rec[i].len);
}

static void test_replay_old_checkpoint(void **state)
{
	struct fx *f = *state;
	struct rep_standby_stats st;

	fx_attach(f, 0);
	f->recording = true;
	full_epoch(f, 1, 0x11);
	f->recording = false;
	/* DOMAIN_INFO, 2 pages, vCPU, device, END */
	assert_int_equal(f->nr_rec, 6);

	/* the primary's link breaks; it comes back with the same session */
	cut_link(f, &st);
	assert_int_equal(st.discarded, 0);
	fx_attach(f, 1);
	/* epoch 1, replayed byte for byte on the new link (whose decoder
	 * would even take the PAGE_CODED bodies: a fresh sequence) */
	replay(f);
	expect_dropped(f, "DOMAIN_INFO of epoch 1, already committed 1", &st);
	assert_int_equal(st.committed, 1);
	assert_int_equal(st.commits, 1);
	assert_int_equal(st.discarded, 0);

	/* epoch 2 commits; replaying it (minus nothing) is refused too */
	fx_attach(f, 1);
	fx_rec_clear(f);
	f->recording = true;
	next_epoch(f, 2, 1, PFN_A, 0x22);
	f->recording = false;
	cut_link(f, &st);
	fx_attach(f, 2);
	replay(f);
	expect_dropped(f, "PAGE_CODED of epoch 2, already committed 2", &st);
	assert_int_equal(st.committed, 2);
	expect_page(f, PFN_A, 0x22, 2);
	expect_page(f, PFN_B, 0x11, 2);

	/* an END alone for the committed epoch, on a fresh link */
	fx_attach(f, 2);
	{
		struct rep_epoch_end e = { .epoch = 2, .base = 1 };

		assert_int_equal(send_end_raw(f, &e), 0);
	}
	expect_dropped(f, "END of epoch 2, open epoch 0", &st);
	assert_int_equal(st.committed, 2);
}

/* ---- the link cut mid-epoch --------------------------------------------- */

/*
 * The standby reads one channel in order with one thread, and takes a
 * heartbeat on any channel: a heartbeat sent on the data channel after
 * some records is a barrier - once the standby reports its epoch, the
 * records before it have been taken into the open epoch.
 */
static void data_barrier(struct fx *f, uint64_t epoch, uint64_t mark)
{
	struct rep_heartbeat hb = { .generation = GEN, .epoch = mark,
				    .role = REP_ROLE_PRIMARY };
	struct rep_standby_stats st;
	uint8_t body[32];

	assert_int_equal(tp_send(f->cli, REP_CHAN_DATA, WIRE_REC_REP_HEARTBEAT,
				 epoch, body, rep_heartbeat_encode(&hb, body)),
			 0);
	for (int i = 0; i < WAIT_MS; i++) {
		standby_stats(f, &st);
		if (st.peer_epoch == mark)
			return;
		sleep_ms(1);
	}
	fail_msg("the standby never read the barrier");
}

static void test_link_cut_mid_epoch(void **state)
{
	struct fx *f = *state;
	struct rep_standby_stats st;

	attach_epoch_1(f);
	assert_int_equal(send_page(f, 2, PFN_A, 0x33), 0);
	assert_int_equal(send_vcpu(f, 2), 0);
	data_barrier(f, 2, 0xb0);
	cut_link(f, &st);
	assert_int_equal(st.discarded, 1);
	assert_int_equal(st.committed, 1);
	assert_int_equal(st.commits, 1);
	assert_int_equal(st.state, REP_SB_REPLICATING);
	assert_true(strstr(st.last_error, "link:") != NULL);
	expect_page(f, PFN_A, 0x11, 1);

	/* resume: the half epoch is gone for good */
	fx_attach(f, 1);
	next_epoch(f, 2, 1, PFN_B, 0x22);
	expect_page(f, PFN_A, 0x11, 2);
	expect_page(f, PFN_B, 0x22, 2);
	standby_stats(f, &st);
	assert_int_equal(st.discarded, 1);

	/* cut again, right after the END went out: either the epoch
	 * committed (and the ack was lost) or it never arrived whole; the
	 * WELCOME says which and the image matches it */
	good_records(f, 3, 0x44);
	assert_int_equal(send_end(f, 3, 2), 0);
	cut_link(f, &st);
	{
		struct rep_hello h = fx_hello(f);
		struct rep_welcome w;

		assert_int_equal(fx_connect(f, &h, &w), 0);
		assert_int_equal(w.status, REP_WELCOME_ACCEPT);
		assert_true(w.committed == 2 || w.committed == 3);
		expect_page(f, PFN_A, w.committed == 3 ? 0x44 : 0x11,
			    w.committed);
		next_epoch(f, 4, w.committed, PFN_B, 0x55);
	}
	expect_page(f, PFN_B, 0x55, 4);
}

/* The primary closes the link in order (BYE) mid-epoch: same outcome. */
static void test_link_closed_mid_epoch(void **state)
{
	struct fx *f = *state;
	struct rep_standby_stats st;

	attach_epoch_1(f);
	good_records(f, 2, 0x33);
	fx_drop_link(f); /* everything before BYE is delivered first */
	wait_standby_link_down(f, &st);
	assert_int_equal(st.discarded, 1);
	assert_int_equal(st.committed, 1);
	expect_page(f, PFN_A, 0x11, 1);
	fx_attach(f, 1);
	next_epoch(f, 2, 1, PFN_B, 0x22);
	expect_page(f, PFN_A, 0x11, 2);
}

/* ---- the first epoch of a session refused ------------------------------- */

enum full_case {
	FULL_MEM_MISMATCH,
	FULL_VCPUS_MISMATCH,
	FULL_GUEST_BASE,
	FULL_XSAVE_FEATURES,
	FULL_XSAVE_SIZE,
	FULL_DOMAIN_INFO_BODY,
	FULL_END_NOT_FULL,
	FULL_PFN_PAST_MEMORY,
	FULL_EPOCH_ZERO,
	FULL_NR
};

static void run_full_case(struct fx *f, enum full_case c)
{
	static const char *const why[FULL_NR] = {
		[FULL_MEM_MISMATCH] = "the primary runs 32 MiB and 1 vCPUs, "
				      "this replica has 16 MiB and 1",
		[FULL_VCPUS_MISMATCH] = "the primary runs 16 MiB and 2 vCPUs",
		[FULL_GUEST_BASE] = "guest base 0x",
		[FULL_XSAVE_FEATURES] = "XSAVE features",
		[FULL_XSAVE_SIZE] = "XSAVE area of",
		[FULL_DOMAIN_INFO_BODY] = "DOMAIN_INFO",
		[FULL_END_NOT_FULL] = "epoch 2 builds on 1, this replica has 0",
		[FULL_PFN_PAST_MEMORY] = "past guest memory",
		[FULL_EPOCH_ZERO] = "of epoch 0, already committed 0",
	};
	struct rep_standby_stats st;
	struct wire_domain_info di;

	fx_attach(f, 0);
	domain_info(&di);
	switch (c) {
	case FULL_MEM_MISMATCH:
		di.mem_bytes = 32ull << 20;
		break;
	case FULL_VCPUS_MISMATCH:
		di.nr_vcpus = 2;
		break;
	case FULL_GUEST_BASE:
		di.guest_base += 1ull << 30;
		break;
	case FULL_XSAVE_FEATURES:
		di.xsave_features |= 1ull << 62;
		break;
	case FULL_XSAVE_SIZE:
		di.xsave_size = g_plat.xsave_size + 64;
		break;
	default:
		break;
	}
	if (c == FULL_DOMAIN_INFO_BODY) {
		const uint8_t *b;
		size_t len;
		uint8_t *copy;

		wire_buf_reset(&f->buf);
		assert_int_equal(wire_domain_info_put(&f->buf, 0, &di, NULL),
				 0);
		rep_record_body(&f->buf, &b, &len);
		copy = malloc(len);
		assert_non_null(copy);
		memcpy(copy, b, len);
		copy[3] = 9; /* backend 9 */
		(void)send_data(f, WIRE_REC_DOMAIN_INFO, 1, copy, len, true);
		free(copy);
	} else if (c == FULL_END_NOT_FULL) {
		(void)send_domain_info(f, 2);
	} else if (c == FULL_EPOCH_ZERO) {
		(void)send_domain_info(f, 0);
	} else {
		(void)send_domain_info_of(f, 1, &di);
	}
	if (c == FULL_END_NOT_FULL) {
		(void)send_page(f, 2, PFN_A, 0x11);
		send_rest(f, 2, 1);
	} else {
		(void)send_page(f, 1, c == FULL_PFN_PAST_MEMORY ? NR_PAGES
								 : PFN_A, 0x11);
		send_rest(f, 1, 0);
	}
	expect_dropped(f, why[c], &st);
	/* no replica: nothing committed, nothing to inspect or promote */
	assert_int_equal(st.committed, 0);
	assert_int_equal(st.commits, 0);
	assert_int_equal(st.state, REP_SB_WAITING);
	assert_true(st.session == 0);
	assert_int_equal(rep_standby_inspect(f->sb, page_check_fn,
					     &(struct page_check){ 0 }),
			 -ENODATA);
	{
		struct hv_domain *dom = NULL;
		struct rep_promote_info info;
		char err[160];

		/* (promotion reaps the link; the standby stays usable) */
		assert_int_equal(rep_standby_promote(f->sb, &dom, &info, err,
						     sizeof(err)), -ENODATA);
		assert_null(dom);
	}
	/* the same session gets no resume: a full copy again, which works */
	fx_attach(f, 0);
	full_epoch(f, 1, 0x22);
	expect_page(f, PFN_A, 0x22, 1);
}

#define FULL_TEST(fn, c) CASE_TEST(fn, run_full_case, c)

FULL_TEST(test_full_mem_mismatch, FULL_MEM_MISMATCH)
FULL_TEST(test_full_vcpus_mismatch, FULL_VCPUS_MISMATCH)
FULL_TEST(test_full_guest_base, FULL_GUEST_BASE)
FULL_TEST(test_full_xsave_features, FULL_XSAVE_FEATURES)
FULL_TEST(test_full_xsave_size, FULL_XSAVE_SIZE)
FULL_TEST(test_full_domain_info_body, FULL_DOMAIN_INFO_BODY)
FULL_TEST(test_full_end_not_full, FULL_END_NOT_FULL)
FULL_TEST(test_full_pfn_past_memory, FULL_PFN_PAST_MEMORY)
FULL_TEST(test_full_epoch_zero, FULL_EPOCH_ZERO)

/* ---- HELLO refused ------------------------------------------------------ */

static void expect_refused_hello(struct fx *f, const struct rep_hello *h,
				 const char *why)
{
	struct rep_standby_stats before, after;
	struct rep_welcome w;
	struct tp_msg *m = NULL;

	standby_stats(f, &before);
	assert_int_not_equal(fx_connect(f, h, &w), 0);
	assert_int_equal(w.status, REP_WELCOME_REFUSED);
	assert_int_equal(w.role, REP_ROLE_STANDBY);
	assert_int_equal(w.generation, before.generation);
	if (strstr(w.reason, why) == NULL)
		fail_msg("reason \"%s\" lacks \"%s\"", w.reason, why);
	/* and the standby closed that link */
	assert_int_equal(tp_recv(f->cli, WAIT_MS, &m), -ESHUTDOWN);
	standby_stats(f, &after);
	assert_int_equal(after.committed, before.committed);
	assert_int_equal(after.commits, before.commits);
	assert_true(after.session == before.session);
	assert_int_equal(after.generation, before.generation);
	assert_int_equal(after.state, before.state);
}

static void test_hello_refused(void **state)
{
	struct fx *f = *state;
	struct rep_standby_stats st;
	struct rep_hello h;

	attach_epoch_1(f);
	cut_link(f, &st);

	h = fx_hello(f);
	snprintf(h.vm, sizeof(h.vm), "other");
	expect_refused_hello(f, &h,
			     "this standby protects VM \"vm1\", not \"other\"");
	h = fx_hello(f);
	h.vm[0] = '\0';
	expect_refused_hello(f, &h, "not \"\"");
	h = fx_hello(f);
	h.generation = GEN - 1;
	expect_refused_hello(f, &h, "generation 4 is older than the 5");
	h.generation = 0;
	h.session = 0x1234;
	expect_refused_hello(f, &h, "generation 0 is older than the 5");
	h = fx_hello(f);
	h.role = REP_ROLE_STANDBY;
	expect_refused_hello(f, &h, "the peer is standby, not primary");
	h.role = REP_ROLE_NONE;
	expect_refused_hello(f, &h, "the peer is none, not primary");
	h = fx_hello(f);
	h.mem_bytes = 32ull << 20;
	expect_refused_hello(f, &h, "the primary runs 33554432 bytes and 1 "
			     "vCPUs, this host's config says 16777216 and 1");
	h = fx_hello(f);
	h.vcpus = 2;
	expect_refused_hello(f, &h, "and 2 vCPUs");
	h.vcpus = 0;
	expect_refused_hello(f, &h, "and 0 vCPUs");

	/* none of that touched the replica: the session resumes */
	expect_page(f, PFN_A, 0x11, 1);
	fx_attach(f, 1);
	expect_epoch_2_commits(f);
}

/*
 * A HELLO while a primary is attached: the primary connects only when it
 * has no link, so the standby's link is dead or half-open and is dropped;
 * the same session resumes on the new one.
 */
static void test_hello_while_attached(void **state)
{
	struct fx *f = *state;
	struct rep_hello h;
	struct rep_welcome w;
	struct tp_link *first;
	struct tp_msg *m = NULL;

	attach_epoch_1(f);
	first = f->cli;
	f->cli = NULL; /* fx_connect must not close it: the standby should */
	codec_enc_free(f->enc);
	f->enc = NULL;
	h = fx_hello(f);
	h.epoch = 1;
	assert_int_equal(fx_connect(f, &h, &w), 0);
	assert_int_equal(w.status, REP_WELCOME_ACCEPT);
	assert_int_equal(w.committed, 1);
	while (tp_recv(first, WAIT_MS, &m) == 0)
		tp_msg_free(m); /* until the standby's abort reaches it */
	tp_link_free(first);
	expect_epoch_2_commits(f);
}

/* A newer generation or another session is a new session: full copy. */
static void test_hello_new_session(void **state)
{
	struct fx *f = *state;
	struct rep_standby_stats st;
	struct rep_hello h;
	struct rep_welcome w;

	attach_epoch_1(f);
	next_epoch(f, 2, 1, PFN_A, 0x22);
	cut_link(f, &st);
	f->session = SESSION + 1;
	h = fx_hello(f);
	/* a primary of the same generation that has made fewer epochs than
	 * the replica holds (restarted afresh) would wipe it: refused */
	assert_int_equal(fx_connect(f, &h, &w), -EPERM);
	assert_int_equal(w.status, REP_WELCOME_REFUSED);
	assert_non_null(strstr(w.reason, "would wipe it"));
	standby_stats(f, &st);
	assert_int_equal(st.committed, 2);
	/* one that has made at least as many (a resync) is followed */
	h.epoch = 2;
	assert_int_equal(fx_connect(f, &h, &w), 0);
	assert_int_equal(w.status, REP_WELCOME_ACCEPT);
	assert_int_equal(w.committed, 0);
	assert_true(w.session == SESSION + 1);
	standby_stats(f, &st);
	assert_int_equal(st.state, REP_SB_SYNCING);
	/* a non-full epoch builds on nothing here */
	(void)send_page(f, 3, PFN_A, 0x33);
	send_rest(f, 3, 2);
	expect_dropped(f, "epoch 3 builds on 2, this replica has 0", &st);
	assert_int_equal(st.committed, 0);
	/* the full copy of the new session */
	fx_attach(f, 0);
	full_epoch(f, 1, 0x44);
	expect_page(f, PFN_A, 0x44, 1);
}

/* rep_link_hello: the first record must be a valid REP_HELLO. */
static void test_link_hello_bad(void **state)
{
	struct fx *f = *state;
	char err[TP_ERR_MAX], addr[32];
	uint8_t body[REP_BODY_MAX];
	struct rep_hello h, got;
	struct tp_link *srv = NULL;

	snprintf(addr, sizeof(addr), "127.0.0.1:%u", tp_listener_port(f->lis));
	for (int round = 0; round < 4; round++) {
		int want = round == 0 ? -EPROTO
			 : round == 3 ? -ETIMEDOUT : -EBADMSG;
		const char *why = round == 0 ? "expected REP_HELLO, got "
					       "REP_HEARTBEAT"
				: round == 1 ? "REP_HELLO: role 9 unknown"
				: round == 2 ? "vm name has byte 0x0a"
					     : "no REP_HELLO";

		assert_int_equal(tp_connect(f->cctx, &f->ccfg, addr, &f->cli,
					    err, sizeof(err)), 0);
		assert_int_equal(tp_accept(f->lis, WAIT_MS, &srv), 0);
		h = fx_hello(f);
		if (round == 0) {
			struct rep_heartbeat hb = { .generation = GEN };
			size_t n = rep_heartbeat_encode(&hb, body);

			assert_int_equal(tp_send(f->cli, 0,
						 WIRE_REC_REP_HEARTBEAT, 0,
						 body, n), 0);
		} else if (round == 1) {
			size_t n = rep_hello_encode(&h, body);

			body[3] = 9;
			assert_int_equal(tp_send(f->cli, 0, WIRE_REC_REP_HELLO,
						 0, body, n), 0);
		} else if (round == 2) {
			size_t n;

			h.vm[1] = '\n';
			n = rep_hello_encode(&h, body);
			assert_int_equal(tp_send(f->cli, 0, WIRE_REC_REP_HELLO,
						 0, body, n), 0);
		}
		/* round 3 sends nothing: the wait ends without a HELLO */
		assert_int_equal(rep_link_hello(srv, round == 3 ? 1 : WAIT_MS,
						&got, err, sizeof(err)), want);
		if (strstr(err, why) == NULL)
			fail_msg("\"%s\" lacks \"%s\"", err, why);
		tp_link_free(srv);
		fx_drop_link(f);
	}
}

/* ---- with a disk -------------------------------------------------------- */

static void test_disk_epochs(void **state)
{
	struct fx *f = *state;
	struct rep_standby_stats st;

	attach_epoch_1(f);            /* base write 0x11 at 0..4096 */
	expect_disk(f, 0, 4096, 0x11);
	expect_disk(f, 4096, 4096, 0x00);
	next_epoch(f, 2, 1, PFN_A, 0x22);
	expect_disk(f, 0, 4096, 0x22);
	expect_page(f, PFN_A, 0x22, 2);

	/* a bad epoch with disk writes: none reaches the image */
	assert_int_equal(send_page(f, 3, PFN_A, 0x33), 0);
	assert_int_equal(send_disk(f, 3, DS_KIND_EPOCH, 0, 4096, 0x33), 0);
	assert_int_equal(send_disk(f, 3, DS_KIND_EPOCH, 8192, 512, 0x33), 0);
	assert_int_equal(send_vcpu(f, 3), 0);
	assert_int_equal(send_devs(f, 3), 0);
	f->digest ^= 1;
	(void)send_end(f, 3, 2);
	expect_dropped(f, "digest", &st);
	assert_int_equal(st.committed, 2);
	assert_int_equal(st.discarded, 1);
	expect_disk(f, 0, 4096, 0x22);
	expect_disk(f, 8192, 512, 0x00);
	expect_page(f, PFN_A, 0x22, 2);

	/* a write past the end of the disk */
	fx_attach(f, 2);
	assert_int_equal(send_page(f, 3, PFN_A, 0x33), 0);
	assert_int_equal(send_disk(f, 3, DS_KIND_EPOCH, 0, 512, 0x33), 0);
	(void)send_disk(f, 3, DS_KIND_EPOCH, DISK_BYTES - 512, 1024, 0x33);
	send_rest(f, 3, 2);
	expect_dropped(f, "past the end of a 1048576-byte disk", &st);
	assert_int_equal(st.committed, 2);
	expect_disk(f, 0, 4096, 0x22);
	expect_disk(f, DISK_BYTES - 512, 512, 0x00);

	/* a DISK_WRITE body that lies about its length */
	fx_attach(f, 2);
	{
		uint8_t body[DS_WRITE_HEADER + 512] = { 0 };

		body[7] = DS_KIND_EPOCH;
		body[18] = 0x04; /* length 1024, 512 follow */
		assert_int_equal(send_page(f, 3, PFN_A, 0x33), 0);
		(void)send_data(f, WIRE_REC_DISK_WRITE, 3, body, sizeof(body),
				true);
	}
	send_rest(f, 3, 2);
	expect_dropped(f, "DISK_WRITE: body length", &st);
	assert_int_equal(st.committed, 2);
	expect_disk(f, 0, 4096, 0x22);

	/* and the session still resumes and commits */
	fx_attach(f, 2);
	next_epoch(f, 3, 2, PFN_B, 0x44);
	expect_disk(f, 0, 4096, 0x44);
	expect_page(f, PFN_A, 0x22, 3);
	expect_page(f, PFN_B, 0x44, 3);
}

/* A link cut mid-epoch drops the epoch's staged disk writes too. */
static void test_disk_cut_mid_epoch(void **state)
{
	struct fx *f = *state;
	struct rep_standby_stats st;

	attach_epoch_1(f);
	assert_int_equal(send_disk(f, 2, DS_KIND_EPOCH, 0, 4096, 0x33), 0);
	data_barrier(f, 2, 0xb1);
	cut_link(f, &st);
	assert_int_equal(st.discarded, 1);
	expect_disk(f, 0, 4096, 0x11);
	fx_attach(f, 1);
	/* epoch 2 without disk writes: the dropped one must not appear */
	good_records(f, 2, 0x22);
	assert_int_equal(send_end(f, 2, 1), 0);
	expect_ack(f, 2);
	expect_disk(f, 0, 4096, 0x11);
}

/*
 * a BASE disk write in an epoch after the
 * first goes to the image at once (standby.c sb_disk passes it to
 * ds_replica_recv, which writes BASE writes immediately), so an epoch that
 * is then refused has changed the committed disk.
 */
static void test_disk_base_in_later_epoch(void **state)
{
	struct fx *f = *state;
	struct rep_standby_stats st;

	attach_epoch_1(f);
	assert_int_equal(send_page(f, 2, PFN_A, 0x33), 0);
	(void)send_disk(f, 2, DS_KIND_BASE, 0, 4096, 0x33);
	(void)send_vcpu(f, 2);
	(void)send_devs(f, 2);
	f->digest ^= 1;
	(void)send_end(f, 2, 1);
	expect_dropped(f, NULL, &st);
	assert_int_equal(st.committed, 1);
	expect_page(f, PFN_A, 0x11, 1);
	expect_disk(f, 0, 4096, 0x11);   /* the base write never landed */
}

/*
 * a session's first epoch without
 * DOMAIN_INFO commits, so the platform check (guest base, XSAVE) that
 * DOMAIN_INFO carries never runs (standby.c sb_check_end does not ask
 * for it).
 */
static void test_full_without_domain_info(void **state)
{
	struct fx *f = *state;
	struct rep_standby_stats st;

	fx_attach(f, 0);
	(void)send_page(f, 1, PFN_A, 0x11);
	send_rest(f, 1, 0);
	expect_dropped(f, NULL, &st);   /* no ack: refused */
	assert_int_equal(st.committed, 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup_plain, teardown)
#define TD(fn) cmocka_unit_test_setup_teardown(fn, setup_disk, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_good_epochs),
		T(test_bad_digest),
		T(test_bad_count_more),
		T(test_bad_count_less),
		T(test_bad_end_other_epoch),
		T(test_bad_end_wrong_base),
		T(test_bad_end_full_again),
		T(test_bad_end_undecodable),
		T(test_bad_end_empty),
		T(test_bad_old_epoch),
		T(test_bad_older_epoch),
		T(test_bad_mixed_epochs),
		T(test_bad_missing_vcpu),
		T(test_bad_missing_device),
		T(test_bad_vcpu_id),
		T(test_bad_vcpu_body),
		T(test_bad_device_index),
		T(test_bad_device_body),
		T(test_bad_pfn_past_memory),
		T(test_bad_page_sequence),
		T(test_bad_page_truncated),
		T(test_bad_page_method),
		T(test_bad_page_options),
		T(test_bad_type_ack),
		T(test_bad_type_page_data),
		T(test_bad_type_snapshot_end),
		T(test_bad_type_handover),
		T(test_bad_type_welcome),
		T(test_bad_hello_again),
		T(test_bad_heartbeat_body),
		T(test_bad_domain_info_later),
		T(test_bad_disk_without_disk),
		T(test_replay_old_checkpoint),
		T(test_link_cut_mid_epoch),
		T(test_link_closed_mid_epoch),
		T(test_full_mem_mismatch),
		T(test_full_vcpus_mismatch),
		T(test_full_guest_base),
		T(test_full_xsave_features),
		T(test_full_xsave_size),
		T(test_full_domain_info_body),
		T(test_full_end_not_full),
		T(test_full_pfn_past_memory),
		T(test_full_epoch_zero),
		T(test_hello_refused),
		T(test_hello_while_attached),
		T(test_hello_new_session),
		T(test_link_hello_bad),
		TD(test_disk_epochs),
		TD(test_disk_cut_mid_epoch),
		TD(test_disk_base_in_later_epoch),
		T(test_full_without_domain_info),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
