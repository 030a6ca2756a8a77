/*
 * test_snapshot.c - restoring refuses every damaged snapshot.
 *
 * A real snapshot of a small pagetest guest is taken once.  Then:
 *  - it restores, and I4 holds on the restored memory;
 *  - truncated at every offset of its headers, metadata and record
 *    boundaries (and at a stride through page data) it is refused;
 *  - a flipped bit anywhere (sampled) is refused;
 *  - streams that are well formed but wrong (re-encoded with valid
 *    checksums) are refused with a message naming the bad value: foreign
 *    backend, too many vCPUs, absurd memory size, XSAVE features this host
 *    lacks, a page index past guest memory, a vCPU outside guest memory, a
 *    repeated or missing vCPU, DOMAIN_INFO out of place;
 * and no refused stream leaves a domain behind (the next restore works).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hv.h"
#include "pagetest_check.h"
#include "replicator.h"
#include "uvm_abi.h"
#include "wire.h"

static char guest_dir[256] = "build/guests";
static uint8_t *snap;
static size_t snap_len;

static int mem_fd(const void *data, size_t len)
{
	int fd = memfd_create("snap", 0);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	return fd;
}

/* Restore from memory; returns rc, fills err; frees any domain. */
static int try_restore(const void *data, size_t len, char *err, size_t errlen,
		       struct hv_domain **keep)
{
	struct hv_config cfg = { .console_fd = -1 };
	struct rep_snapshot_stats st;
	struct hv_domain *dom = NULL;
	int fd = mem_fd(data, len);
	int rc = rep_snapshot_restore(fd, "snap", &cfg, NULL, NULL, &dom, &st,
				      err, errlen);

	close(fd);
	if (rc != 0)
		assert_null(dom);
	if (keep != NULL)
		*keep = dom;
	else
		hv_domain_free(dom);
	return rc;
}

static int take_snapshot(void **state)
{
	char image[300];
	struct hv_config cfg = { .image = image, .mem_bytes = 4 << 20,
				 .cmdline = "pages=64 yield=8 print=0",
				 .console_fd = -1 };
	struct rep_snapshot_stats st;
	struct hv_domain *dom;
	volatile struct uvm_start_info *si;
	void *p;
	int fd = memfd_create("snap", 0);

	(void)state;
	snprintf(image, sizeof(image), "%s/pagetest.elf", guest_dir);
	if (hv_domain_build(&cfg, &dom) != 0 || hv_unpause(dom) != 0)
		return -1;
	hv_map(dom, UVM_START_INFO_PFN, 1, false, &p);
	si = p;
	for (int i = 0; i < 1000 && si->report[UVM_REPORT_PASSES] < 3; i++)
		usleep(2000);
	if (hv_pause(dom, NULL) != 0 ||
	    rep_snapshot_save(dom, fd, NULL, NULL, &st) != 0)
		return -1;
	hv_domain_free(dom);
	snap_len = st.bytes;
	snap = malloc(snap_len);
	if (pread(fd, snap, snap_len, 0) != (ssize_t)snap_len)
		return -1;
	close(fd);
	printf("note: snapshot of %zu bytes, %lu pages\n", snap_len,
	       (unsigned long)st.pages);
	return 0;
}

static int drop_snapshot(void **state)
{
	(void)state;
	free(snap);
	return 0;
}

static const uint8_t *page_at(void *ctx, uint64_t pfn)
{
	void *p = NULL;

	return hv_map(ctx, pfn, 1, false, &p) == 0 ? p : NULL;
}

static void test_good_restore(void **state)
{
	struct hv_domain *dom;
	struct pagetest_result res;
	const struct uvm_start_info *si;
	void *p;
	char err[256];

	(void)state;
	assert_int_equal(try_restore(snap, snap_len, err, sizeof(err), &dom), 0);
	hv_map(dom, UVM_START_INFO_PFN, 1, false, &p);
	si = p;
	assert_int_equal(pagetest_check(page_at, dom, si->report[UVM_REPORT_REGION_PFN],
					si->report[UVM_REPORT_REGION_PAGES], &res), 0);
	hv_domain_free(dom);
}

/* Offsets worth cutting at: every byte that is not page payload, and a
 * stride through the payload. */
static bool interesting(size_t off, const bool *meta)
{
	return meta[off] || off % 1021 == 0;
}

/* Mark record headers, non-page bodies and page headers (pfn lists). */
static void map_metadata(bool *meta)
{
	size_t off = WIRE_STREAM_HEADER_SIZE;

	memset(meta, 0, snap_len);
	memset(meta, 1, WIRE_STREAM_HEADER_SIZE);
	while (off + WIRE_RECORD_HEADER_SIZE <= snap_len) {
		uint32_t type = (uint32_t)snap[off] << 24 | snap[off + 1] << 16 |
				snap[off + 2] << 8 | snap[off + 3];
		uint32_t len = (uint32_t)snap[off + 16] << 24 |
			       snap[off + 17] << 16 | snap[off + 18] << 8 |
			       snap[off + 19];
		size_t body = off + WIRE_RECORD_HEADER_SIZE;
		size_t keep = type == WIRE_REC_PAGE_DATA ? 8 + 8 * (size_t)WIRE_PAGE_MAX
							 : len;

		memset(meta + off, 1, WIRE_RECORD_HEADER_SIZE);
		memset(meta + body, 1, keep < len ? keep : len);
		off = body + wire_padded_length(len);
	}
	assert_int_equal(off, snap_len);
}

static void test_truncation(void **state)
{
	bool *meta = malloc(snap_len);
	char err[256];
	unsigned tried = 0;

	(void)state;
	map_metadata(meta);
	for (size_t cut = 0; cut < snap_len; cut++) {
		if (!interesting(cut, meta))
			continue;
		err[0] = '\0';
		if (try_restore(snap, cut, err, sizeof(err), NULL) == 0)
			fail_msg("snapshot cut at %zu of %zu bytes was accepted",
				 cut, snap_len);
		assert_true(err[0] != '\0');
		tried++;
	}
	printf("note: %u truncation offsets refused\n", tried);
	free(meta);
}

static void test_bit_flips(void **state)
{
	uint8_t *copy = malloc(snap_len);
	char err[256];
	unsigned tried = 0;

	(void)state;
	for (size_t off = 0; off < snap_len; off += 89) {
		memcpy(copy, snap, snap_len);
		copy[off] ^= (uint8_t)(1u << (off % 8));
		if (try_restore(copy, snap_len, err, sizeof(err), NULL) == 0)
			fail_msg("bit %zu of byte %zu flipped was accepted",
				 off % 8, off);
		tried++;
	}
	printf("note: %u bit flips refused\n", tried);
	free(copy);
}

/* ---- well-formed but wrong -------------------------------------------------- */

struct mutation {
	const char *name;
	void (*apply)(struct wire_domain_info *di, struct wire_vcpu_state *vs,
		      unsigned *vcpu_records, uint64_t *pfn, bool *info_late);
	const char *expect; /* substring of the error */
};

static void m_backend(struct wire_domain_info *di, struct wire_vcpu_state *vs,
		      unsigned *n, uint64_t *pfn, bool *late)
{
	(void)vs; (void)n; (void)pfn; (void)late;
	di->backend = WIRE_BACKEND_XEN;
}

static void m_vcpus(struct wire_domain_info *di, struct wire_vcpu_state *vs,
		    unsigned *n, uint64_t *pfn, bool *late)
{
	(void)vs; (void)n; (void)pfn; (void)late;
	di->nr_vcpus = 9;
}

static void m_memory(struct wire_domain_info *di, struct wire_vcpu_state *vs,
		     unsigned *n, uint64_t *pfn, bool *late)
{
	(void)vs; (void)n; (void)pfn; (void)late;
	di->mem_bytes = 1ULL << 40;
}

static void m_xsave(struct wire_domain_info *di, struct wire_vcpu_state *vs,
		    unsigned *n, uint64_t *pfn, bool *late)
{
	(void)vs; (void)n; (void)pfn; (void)late;
	di->xsave_features |= 1ULL << 61;
}

static void m_pfn(struct wire_domain_info *di, struct wire_vcpu_state *vs,
		  unsigned *n, uint64_t *pfn, bool *late)
{
	(void)vs; (void)n; (void)late;
	*pfn = di->mem_bytes / 4096;
}

static void m_rip(struct wire_domain_info *di, struct wire_vcpu_state *vs,
		  unsigned *n, uint64_t *pfn, bool *late)
{
	(void)di; (void)n; (void)pfn; (void)late;
	vs->rip = 0x401000;
}

static void m_repeat(struct wire_domain_info *di, struct wire_vcpu_state *vs,
		     unsigned *n, uint64_t *pfn, bool *late)
{
	(void)di; (void)vs; (void)pfn; (void)late;
	*n = 2;
}

static void m_missing(struct wire_domain_info *di, struct wire_vcpu_state *vs,
		      unsigned *n, uint64_t *pfn, bool *late)
{
	(void)di; (void)vs; (void)pfn; (void)late;
	*n = 0;
}

static void m_late(struct wire_domain_info *di, struct wire_vcpu_state *vs,
		   unsigned *n, uint64_t *pfn, bool *late)
{
	(void)di; (void)vs; (void)n; (void)pfn;
	*late = true;
}

static const struct mutation mutations[] = {
	{ "foreign backend", m_backend, "backend 2" },
	{ "too many vCPUs", m_vcpus, "9" },
	{ "absurd memory", m_memory, "1048576 MiB" },
	{ "XSAVE features missing here", m_xsave, "XSAVE features" },
	{ "page past guest memory", m_pfn, "1024" },
	{ "rip outside guest memory", m_rip, "vcpu 0" },
	{ "vCPU repeated", m_repeat, "repeated" },
	{ "vCPU missing", m_missing, "every vCPU" },
	{ "DOMAIN_INFO not first", m_late, "DOMAIN_INFO" },
};

/* Pull DOMAIN_INFO and VCPU 0 out of the real snapshot. */
static void decode_parts(struct wire_domain_info *di, struct wire_vcpu_state *vs)
{
	struct wire_reader r;
	struct wire_record rec;
	char err[256];

	assert_int_equal(wire_reader_open_mem(&r, snap, snap_len,
					      WIRE_STREAM_SNAPSHOT), 0);
	while (!r.done) {
		assert_int_equal(wire_reader_next(&r, &rec), 0);
		if (rec.hdr.type == WIRE_REC_DOMAIN_INFO)
			assert_int_equal(wire_domain_info_decode(rec.body, rec.hdr.length,
								 di, err, sizeof(err)), 0);
		if (rec.hdr.type == WIRE_REC_VCPU_STATE)
			assert_int_equal(wire_vcpu_state_decode(rec.body, rec.hdr.length,
								vs, err, sizeof(err)), 0);
	}
	wire_reader_close(&r);
}

static void build_stream(struct wire_buf *b, const struct wire_domain_info *di,
			 const struct wire_vcpu_state *vs, unsigned nvcpu,
			 uint64_t pfn, bool late)
{
	static uint8_t page[4096];
	const void *pages[1] = { page };
	struct wire_device_state ds = { .index = 0, .type = UVM_DEV_CONSOLE,
					.port = UVM_PORT_CONSOLE };
	struct wire_sum sum;

	assert_int_equal(wire_sum_init(&sum), 0);
	assert_int_equal(wire_stream_header_put(b, WIRE_STREAM_SNAPSHOT, 0), 0);
	if (late)
		assert_int_equal(wire_page_data_put(b, 0, 1, &pfn, pages, &sum), 0);
	assert_int_equal(wire_domain_info_put(b, 0, di, &sum), 0);
	if (!late)
		assert_int_equal(wire_page_data_put(b, 0, 1, &pfn, pages, &sum), 0);
	for (unsigned i = 0; i < nvcpu; i++)
		assert_int_equal(wire_vcpu_state_put(b, 0, vs, &sum), 0);
	assert_int_equal(wire_device_state_put(b, 0, &ds, &sum), 0);
	assert_int_equal(wire_end_put(b, 0, &sum), 0);
	wire_sum_fini(&sum);
}

static void test_wrong_but_well_formed(void **state)
{
	struct wire_domain_info base_di, di;
	struct wire_vcpu_state *base_vs = malloc(sizeof(*base_vs));
	struct wire_vcpu_state *vs = malloc(sizeof(*vs));
	char err[320];

	(void)state;
	decode_parts(&base_di, base_vs);
	/* The unmutated rebuild restores: the harness itself is sound. */
	{
		struct wire_buf b;

		wire_buf_init(&b);
		build_stream(&b, &base_di, base_vs, 1, 300, false);
		assert_int_equal(try_restore(b.data, b.len, err, sizeof(err), NULL), 0);
		wire_buf_fini(&b);
	}
	for (size_t i = 0; i < sizeof(mutations) / sizeof(mutations[0]); i++) {
		const struct mutation *m = &mutations[i];
		struct wire_buf b;
		unsigned nvcpu = 1;
		uint64_t pfn = 300;
		bool late = false;

		di = base_di;
		*vs = *base_vs;
		m->apply(&di, vs, &nvcpu, &pfn, &late);
		wire_buf_init(&b);
		build_stream(&b, &di, vs, nvcpu, pfn, late);
		err[0] = '\0';
		if (try_restore(b.data, b.len, err, sizeof(err), NULL) == 0)
			fail_msg("%s: accepted", m->name);
		printf("note: %s: %s\n", m->name, err);
		if (strstr(err, m->expect) == NULL)
			fail_msg("%s: error \"%s\" does not mention \"%s\"", m->name,
				 err, m->expect);
		wire_buf_fini(&b);
	}
	/* Nothing was left behind: a good restore still works. */
	assert_int_equal(try_restore(snap, snap_len, err, sizeof(err), NULL), 0);
	free(base_vs);
	free(vs);
}

int main(void)
{
	const char *env = getenv("TANDEM_GUESTS");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_restore),
		cmocka_unit_test(test_truncation),
		cmocka_unit_test(test_bit_flips),
		cmocka_unit_test(test_wrong_but_well_formed),
	};

	if (env != NULL)
		snprintf(guest_dir, sizeof(guest_dir), "%s", env);
	return cmocka_run_group_tests(tests, take_snapshot, drop_snapshot);
}
