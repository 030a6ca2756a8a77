/*
 * test_xen_replica.c - the Xen backend's standby side, which needs no Xen:
 * a replica (hv_domain_create with backend "xen") holds the committed
 * checkpoint in this process - pages, the HVM context, params and
 * platform blobs, vCPU registers - until hv_unpause hands it to
 * `xl restore`.  Checked here: the config checks (name agreement with the
 * xl config), page bookkeeping (what was written is what a restore will
 * populate), the blob checks a device load makes, the vCPU overlay onto
 * the context's CPU record, the calls a replica refuses, and that a
 * promotion on a host without Xen fails cleanly and leaves the replica
 * whole.  The live-domain side is proven in the Xen test bed
 * (tests/xen/scenarios/protect.sh).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xen/hvm/save.h>

#include "hv.h"
#include "log.h"
#include "xen/xen_state.h"

#define CPU_CODE 2 /* HVM_SAVE_CODE(CPU) */

static char g_cfg_path[64];

static void write_xl(const char *name)
{
	FILE *f = fopen(g_cfg_path, "w");

	assert_non_null(f);
	fprintf(f, "# test\ntype = \"pvh\"\n  name = \"%s\"\nmemory = 128\n",
		name);
	fclose(f);
}

static int setup(void **state)
{
	int fd;

	(void)state;
	snprintf(g_cfg_path, sizeof(g_cfg_path), "/tmp/tandem-xl-XXXXXX");
	fd = mkstemp(g_cfg_path);
	if (fd < 0)
		return -1;
	close(fd);
	write_xl("xg");
	log_set_level(LOG_ERROR);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(g_cfg_path);
	return 0;
}

static struct hv_config xen_cfg(void)
{
	return (struct hv_config){ .backend = "xen", .name = "xg",
				   .xl_config = g_cfg_path,
				   .mem_bytes = 128ULL << 20, .nr_vcpus = 1,
				   .console_fd = -1 };
}

static struct hv_domain *replica(void)
{
	struct hv_config c = xen_cfg();
	struct hv_domain *d = NULL;

	assert_int_equal(hv_domain_create(&c, &d), 0);
	return d;
}

/* An HVM context: a HEADER-like record, one CPU record, END. */
static void make_context(struct hv_device_state *st, uint64_t rip)
{
	struct hvm_save_descriptor d;
	struct hvm_hw_cpu cpu;
	uint8_t *p = st->blob;

	memset(st, 0, sizeof(*st));
	st->type = 0x5800;
	d = (struct hvm_save_descriptor){ .typecode = 1, .instance = 0,
					  .length = 8 };
	memcpy(p, &d, sizeof(d));
	p += sizeof(d) + 8;
	memset(&cpu, 0, sizeof(cpu));
	cpu.rip = rip;
	cpu.rax = 1;
	d = (struct hvm_save_descriptor){ .typecode = CPU_CODE, .instance = 0,
					  .length = sizeof(cpu) };
	memcpy(p, &d, sizeof(d));
	memcpy(p + sizeof(d), &cpu, sizeof(cpu));
	p += sizeof(d) + sizeof(cpu);
	d = (struct hvm_save_descriptor){ .typecode = 0, .instance = 0,
					  .length = 0 };
	memcpy(p, &d, sizeof(d));
	p += sizeof(d);
	st->len = (uint32_t)(p - st->blob);
}

static void make_params(struct hv_device_state *st)
{
	const uint64_t kv[4] = { 1 /* STORE_PFN */, 0xfeffc,
				 17 /* CONSOLE_PFN */, 0xfefff };

	memset(st, 0, sizeof(*st));
	st->type = 0x5801;
	memcpy(st->blob, kv, sizeof(kv));
	st->len = sizeof(kv);
}

static void make_platform(struct hv_device_state *st, uint32_t leaves,
			  uint32_t msrs)
{
	struct xen_platform_blob *pb = (struct xen_platform_blob *)st->blob;

	memset(st, 0, sizeof(*st));
	st->type = 0x5802;
	pb->version = XEN_PLATFORM_BLOB_V1;
	pb->tsc_mode = 2;
	pb->tsc_khz = 2000000;
	pb->nr_leaves = leaves;
	pb->nr_msrs = msrs;
	st->len = (uint32_t)(sizeof(*pb) + leaves * 24 + msrs * 16);
}

static void test_create(void **state)
{
	struct hv_domain *d = replica();

	(void)state;
	assert_string_equal(hv_backend_name(d), "xen");
	/* 128 MiB of RAM lives in a 4 GiB frame space (the MMIO hole and the
	 * special pages under 4 GiB) */
	assert_int_equal(hv_nr_pages(d), (4ULL << 30) / HV_PAGE_SIZE);
	assert_int_equal(hv_nr_vcpus(d), 1);
	assert_int_equal(hv_nr_devices(d), 3);
	assert_true(hv_is_paused(d));
	assert_int_equal(hv_dirty_mech(d), HV_DIRTY_XEN);
	assert_string_equal(hv_domain_config(d)->xl_config, g_cfg_path);
	hv_domain_free(d);
}

static void test_bad_config(void **state)
{
	struct hv_domain *d = NULL;
	struct hv_config c = xen_cfg();

	(void)state;
	c.xl_config = NULL;
	assert_int_equal(hv_domain_create(&c, &d), -EINVAL);
	c = xen_cfg();
	c.xl_config = "/nonexistent/xg.cfg";
	assert_int_equal(hv_domain_create(&c, &d), -ENOENT);
	c = xen_cfg();
	c.name = "";
	assert_int_equal(hv_domain_create(&c, &d), -EINVAL);
	c = xen_cfg();
	c.nr_vcpus = HV_MAX_VCPUS + 1;
	assert_int_equal(hv_domain_create(&c, &d), -EINVAL);
	write_xl("other"); /* the xl config names another domain */
	c = xen_cfg();
	assert_int_equal(hv_domain_create(&c, &d), -EINVAL);
	write_xl("xg");
	assert_null(d);
}

static void test_pages(void **state)
{
	struct hv_domain *d = replica();
	uint64_t words = (hv_nr_pages(d) + 63) / 64;
	uint64_t *bm = calloc(words, sizeof(uint64_t));
	void *p;

	(void)state;
	assert_non_null(bm);
	assert_int_equal(hv_map(d, 5, 1, true, &p), 0);
	memset(p, 0x5a, HV_PAGE_SIZE);
	hv_unmap(d, p, 1);
	assert_int_equal(hv_map(d, 0xfeffc, 1, true, &p), 0);
	memset(p, 0x17, HV_PAGE_SIZE);
	assert_int_equal(hv_map(d, 6, 1, false, &p), 0); /* read: not kept */
	assert_int_equal(((uint8_t *)p)[0], 0);
	assert_int_equal(hv_populated(d, bm), 0);
	for (uint64_t w = 0; w < words; w++) {
		uint64_t want = 0;

		if (w == 0)
			want = 1ULL << 5;
		if (w == 0xfeffc / 64)
			want = 1ULL << (0xfeffc % 64);
		assert_int_equal(bm[w], want);
	}
	assert_int_equal(hv_map(d, 5, 1, false, &p), 0);
	assert_int_equal(((uint8_t *)p)[HV_PAGE_SIZE - 1], 0x5a);
	assert_int_equal(hv_map(d, hv_nr_pages(d), 1, false, &p), -ERANGE);
	free(bm);
	hv_domain_free(d);
}

static void test_device_blobs(void **state)
{
	struct hv_domain *d = replica();
	struct hv_device_state *st = malloc(sizeof(*st));
	struct hv_device_state *got = malloc(sizeof(*got));

	(void)state;
	assert_non_null(st);
	assert_non_null(got);
	assert_int_equal(hv_device_save(d, 0, got), -ENODATA);
	make_context(st, 0x1000);
	assert_int_equal(hv_device_load(d, 0, st), 0);
	assert_int_equal(hv_device_save(d, 0, got), 0);
	assert_int_equal(got->len, st->len);
	assert_memory_equal(got->blob, st->blob, st->len);
	st->type = 0x5801; /* a context blob under the params type */
	assert_int_equal(hv_device_load(d, 0, st), -EINVAL);
	make_params(st);
	assert_int_equal(hv_device_load(d, 1, st), 0);
	st->len = 12; /* not whole {index, value} pairs */
	assert_int_equal(hv_device_load(d, 1, st), -EINVAL);
	make_platform(st, 3, 2);
	assert_int_equal(hv_device_load(d, 2, st), 0);
	st->len -= 16; /* counts and length disagree */
	assert_int_equal(hv_device_load(d, 2, st), -EINVAL);
	make_platform(st, 3, 2);
	((struct xen_platform_blob *)st->blob)->version = 9;
	assert_int_equal(hv_device_load(d, 2, st), -EINVAL);
	assert_int_equal(hv_device_load(d, 3, st), -ENOENT);
	free(st);
	free(got);
	hv_domain_free(d);
}

/* What a replica cannot do: it is no running domain. */
static void test_refusals(void **state)
{
	struct hv_domain *d = replica();

	(void)state;
	assert_int_equal(hv_gate_hold(d, true), -ESRCH);
	assert_int_equal(hv_gate_hold(d, false), 0);
	assert_int_equal(hv_dirty_enable(d), -ESRCH);
	assert_int_equal(hv_disk_tap(d, NULL, NULL), 0);
	assert_int_equal(hv_evtchn_hook(d, NULL, NULL), 0);
	assert_int_equal(hv_pause(d, NULL), 0); /* a replica is still */
	hv_domain_free(d);
}

static void noop_hook(void *arg, unsigned vcpu, uint32_t port)
{
	(void)arg;
	(void)vcpu;
	(void)port;
}

static void noop_tap(void *arg, uint64_t off, const struct iovec *iov,
		     int n, size_t len)
{
	(void)arg;
	(void)off;
	(void)iov;
	(void)n;
	(void)len;
}

static void test_no_hooks(void **state)
{
	struct hv_domain *d = replica();

	(void)state;
	assert_int_equal(hv_evtchn_hook(d, noop_hook, NULL), -ENOTSUP);
	assert_int_equal(hv_disk_tap(d, noop_tap, NULL), -ENODEV);
	hv_domain_free(d);
}

/* The committed vCPU registers are laid over the context at promotion;
 * here, with no Xen, the promotion stops after that, and the replica
 * stays whole. */
static void test_promote_without_xen(void **state)
{
	struct hv_domain *d = replica();
	struct hv_device_state *st = malloc(sizeof(*st));
	struct hv_vcpu_state *v = calloc(1, sizeof(*v));
	struct hvm_hw_cpu cpu;
	void *p;

	(void)state;
	if (access("/dev/xen/privcmd", F_OK) == 0) {
		hv_domain_free(d);
		free(st);
		free(v);
		skip(); /* a real dom0: xl restore would run */
	}
	assert_non_null(st);
	assert_non_null(v);
	assert_int_equal(hv_unpause(d), -ENODATA); /* nothing committed */
	make_context(st, 0x1000);
	assert_int_equal(hv_device_load(d, 0, st), 0);
	make_params(st);
	assert_int_equal(hv_device_load(d, 1, st), 0);
	make_platform(st, 1, 1);
	assert_int_equal(hv_device_load(d, 2, st), 0);
	assert_int_equal(hv_unpause(d), -ENODATA); /* no vCPU state */
	v->rip = 0xffffffff81000123ULL;
	v->gpr[HV_RAX] = 0; /* the suspend hypercall's "not cancelled" */
	v->gpr[HV_R15] = 15;
	assert_int_equal(hv_vcpu_load(d, 0, v), 0);
	assert_int_equal(hv_map(d, 7, 1, true, &p), 0);
	memset(p, 7, HV_PAGE_SIZE);
	assert_int_equal(hv_unpause(d), -ENODEV);
	assert_true(hv_is_paused(d));
	assert_int_equal(hv_device_save(d, 0, st), 0);
	memcpy(&cpu, st->blob + 2 * sizeof(struct hvm_save_descriptor) + 8,
	       sizeof(cpu));
	assert_int_equal(cpu.rip, v->rip);
	assert_int_equal(cpu.rax, 0);
	assert_int_equal(cpu.r15, 15);
	assert_int_equal(hv_map(d, 7, 1, false, &p), 0);
	assert_int_equal(((uint8_t *)p)[100], 7);
	free(st);
	free(v);
	hv_domain_free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create),
		cmocka_unit_test(test_bad_config),
		cmocka_unit_test(test_pages),
		cmocka_unit_test(test_device_blobs),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_no_hooks),
		cmocka_unit_test(test_promote_without_xen),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
