/*
 * test_ring.c - unit tests of the Xen-style shared ring macros
 * (uvm_ring.h): sizing, full/free accounting, request/response flow with
 * free-running indices wrapping past 2^32, the notify-threshold logic of
 * PUSH_*_AND_CHECK_NOTIFY / FINAL_CHECK_FOR_*, overflow detection, and a
 * two-thread producer/consumer run.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <pthread.h>
#include <sched.h>

#include <cmocka.h>

#include "uvm_ring.h"

struct t_req {
	uint32_t id;
	uint32_t op;
};

struct t_rsp {
	uint32_t id;
	int32_t status;
};

UVM_RING_DEFINE_TYPES(t, struct t_req, struct t_rsp);

#define T_PAGE 4096

static _Alignas(4096) uint8_t t_mem[2 * T_PAGE];

struct t_rings {
	struct t_sring *s;
	struct t_front_ring f;
	struct t_back_ring b;
};

static void t_setup(struct t_rings *r, size_t bytes)
{
	memset(t_mem, 0xa5, sizeof(t_mem));
	r->s = (struct t_sring *)t_mem;
	UVM_RING_SHARED_INIT(r->s);
	UVM_RING_FRONT_INIT(&r->f, r->s, bytes);
	UVM_RING_BACK_INIT(&r->b, r->s, bytes);
}

/* Move every index to `start`, as if the ring had been used for a while. */
static void t_start_at(struct t_rings *r, uvm_ring_idx_t start)
{
	r->s->req_prod = r->s->rsp_prod = start;
	r->s->req_event = r->s->rsp_event = start + 1;
	r->f.req_prod_pvt = r->f.rsp_cons = start;
	r->b.rsp_prod_pvt = r->b.req_cons = start;
}

static void test_layout_and_size(void **state)
{
	struct t_rings r;

	(void)state;
	assert_int_equal(offsetof(struct t_sring, ring), UVM_RING_HEADER_SIZE);
	assert_int_equal(sizeof(union t_sring_entry), 8);
	t_setup(&r, T_PAGE);
	/* (4096 - 64) / 8 = 504 slots, rounded down to 256 */
	assert_int_equal(UVM_RING_SIZE(&r.f), 256);
	assert_int_equal(UVM_RING_SIZE(&r.b), 256);
	assert_int_equal(UVM_RING_FREE_REQUESTS(&r.f), 256);
	assert_false(UVM_RING_FULL(&r.f));
	assert_int_equal(r.s->req_event, 1);
	assert_int_equal(r.s->rsp_event, 1);
	for (size_t i = 0; i < sizeof(r.s->pad); i++)
		assert_int_equal(r.s->pad[i], 0);
	t_setup(&r, 2 * T_PAGE);
	assert_int_equal(UVM_RING_SIZE(&r.f), 512);
	assert_int_equal(uvm_ring_rounddown_pow2(0), 0);
	assert_int_equal(uvm_ring_rounddown_pow2(1), 1);
	assert_int_equal(uvm_ring_rounddown_pow2(1023), 512);
	assert_int_equal(uvm_ring_rounddown_pow2(1024), 1024);
}

static void t_produce(struct t_rings *r, uint32_t first_id, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		struct t_req *q = UVM_RING_GET_REQUEST(&r->f, r->f.req_prod_pvt);

		q->id = first_id + i;
		q->op = 7;
		r->f.req_prod_pvt++;
	}
}

/* Back end: answer everything pending; returns how many. */
static unsigned t_serve(struct t_rings *r, uint32_t *next_id)
{
	unsigned n = 0;

	while (UVM_RING_UNCONSUMED_REQUESTS(&r->b)) {
		struct t_req q;
		struct t_rsp *p;

		UVM_RING_COPY_REQUEST(&r->b, r->b.req_cons, &q);
		assert_int_equal(q.id, *next_id);
		assert_int_equal(q.op, 7);
		(*next_id)++;
		r->b.req_cons++;
		p = UVM_RING_GET_RESPONSE(&r->b, r->b.rsp_prod_pvt);
		p->id = q.id;
		p->status = (int32_t)(q.id & 0xff);
		r->b.rsp_prod_pvt++;
		n++;
	}
	UVM_RING_PUSH_RESPONSES(&r->b);
	return n;
}

static unsigned t_collect(struct t_rings *r, uint32_t *next_id)
{
	unsigned n = 0;

	while (UVM_RING_UNCONSUMED_RESPONSES(&r->f)) {
		struct t_rsp *p = UVM_RING_GET_RESPONSE(&r->f, r->f.rsp_cons);

		assert_int_equal(p->id, *next_id);
		assert_int_equal(p->status, (int32_t)(p->id & 0xff));
		(*next_id)++;
		r->f.rsp_cons++;
		n++;
	}
	return n;
}

static void t_flow(uvm_ring_idx_t start)
{
	struct t_rings r;
	uint32_t id = 0, served = 0, collected = 0;
	unsigned batch = 1;

	t_setup(&r, T_PAGE);
	t_start_at(&r, start);
	for (int round = 0; round < 2000; round++) {
		unsigned n = batch % (UVM_RING_FREE_REQUESTS(&r.f) + 1);

		t_produce(&r, id, n);
		id += n;
		UVM_RING_PUSH_REQUESTS(&r.f);
		assert_int_equal(t_serve(&r, &served), n);
		assert_int_equal(t_collect(&r, &collected), n);
		assert_int_equal(UVM_RING_FREE_REQUESTS(&r.f), 256);
		batch = batch * 7 + 3;
	}
	assert_int_equal(served, id);
	assert_int_equal(collected, id);
}

static void test_flow_from_zero(void **state)
{
	(void)state;
	t_flow(0);
}

static void test_flow_wraps_2_32(void **state)
{
	(void)state;
	t_flow(0xffffff00U);
}

static void test_full_ring(void **state)
{
	struct t_rings r;
	uint32_t served = 0, collected = 0;

	(void)state;
	t_setup(&r, T_PAGE);
	t_start_at(&r, 0xfffffff0U);
	t_produce(&r, 0, 256);
	assert_true(UVM_RING_FULL(&r.f));
	assert_int_equal(UVM_RING_FREE_REQUESTS(&r.f), 0);
	UVM_RING_PUSH_REQUESTS(&r.f);
	assert_int_equal(UVM_RING_UNCONSUMED_REQUESTS(&r.b), 256);
	assert_false(UVM_RING_REQUEST_PROD_OVERFLOW(&r.b, r.s->req_prod));
	/* consumed but unanswered requests keep the slots busy */
	r.b.req_cons += 256;
	assert_int_equal(UVM_RING_UNCONSUMED_REQUESTS(&r.b), 0);
	assert_true(UVM_RING_REQUEST_CONS_OVERFLOW(&r.b, r.b.req_cons));
	r.b.req_cons -= 256;
	assert_int_equal(t_serve(&r, &served), 256);
	assert_int_equal(t_collect(&r, &collected), 256);
	assert_false(UVM_RING_FULL(&r.f));
}

static void test_malicious_producer(void **state)
{
	struct t_rings r;

	(void)state;
	t_setup(&r, T_PAGE);
	/* a front end claiming 1000 requests: the back end sees at most
	 * one ring's worth and can detect the bogus index */
	r.s->req_prod = 1000;
	assert_int_equal(UVM_RING_UNCONSUMED_REQUESTS(&r.b), 256);
	assert_true(UVM_RING_REQUEST_PROD_OVERFLOW(&r.b, r.s->req_prod));
	assert_false(UVM_RING_REQUEST_PROD_OVERFLOW(&r.b, 256));
	assert_false(UVM_RING_REQUEST_CONS_OVERFLOW(&r.b, 255));
	assert_true(UVM_RING_REQUEST_CONS_OVERFLOW(&r.b, 256));
}

static void t_notify_requests(uvm_ring_idx_t start)
{
	struct t_rings r;
	int notify = -1, work = -1;
	uint32_t served = 0;

	t_setup(&r, T_PAGE);
	t_start_at(&r, start);
	/* consumer asleep waiting for start + 1: first push notifies */
	t_produce(&r, 0, 1);
	UVM_RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&r.f, notify);
	assert_int_equal(notify, 1);
	/* consumer has not re-armed: no further notifications */
	t_produce(&r, 1, 3);
	UVM_RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&r.f, notify);
	assert_int_equal(notify, 0);
	/* an empty push never notifies */
	UVM_RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&r.f, notify);
	assert_int_equal(notify, 0);
	/* consumer finds work on its final check and does not re-arm */
	UVM_RING_FINAL_CHECK_FOR_REQUESTS(&r.b, work);
	assert_int_equal(work, 4);
	assert_int_equal(r.s->req_event, (uvm_ring_idx_t)(start + 1));
	assert_int_equal(t_serve(&r, &served), 4);
	/* now idle: the final check re-arms at req_cons + 1 */
	UVM_RING_FINAL_CHECK_FOR_REQUESTS(&r.b, work);
	assert_int_equal(work, 0);
	assert_int_equal(r.s->req_event, (uvm_ring_idx_t)(start + 5));
	t_produce(&r, 4, 2);
	UVM_RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&r.f, notify);
	assert_int_equal(notify, 1);
	/* batching: a consumer asking to be woken 10 requests from now */
	assert_int_equal(t_serve(&r, &served), 2);
	r.s->req_event = r.b.req_cons + 10;
	t_produce(&r, 6, 9);
	UVM_RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&r.f, notify);
	assert_int_equal(notify, 0);
	t_produce(&r, 15, 1);
	UVM_RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&r.f, notify);
	assert_int_equal(notify, 1);
	/* an event index already passed (stale) never notifies */
	t_produce(&r, 16, 1);
	UVM_RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&r.f, notify);
	assert_int_equal(notify, 0);
}

static void test_notify_requests(void **state)
{
	(void)state;
	t_notify_requests(0);
	t_notify_requests(0xfffffffeU);
	t_notify_requests(0x7fffffffU);
}

static void test_notify_responses(void **state)
{
	struct t_rings r;
	int notify = -1, work = -1;
	uint32_t served = 0, collected = 0;

	(void)state;
	t_setup(&r, T_PAGE);
	t_start_at(&r, 0xfffffffdU);
	t_produce(&r, 0, 5);
	UVM_RING_PUSH_REQUESTS(&r.f);
	/* front end goes to sleep before any response */
	UVM_RING_FINAL_CHECK_FOR_RESPONSES(&r.f, work);
	assert_int_equal(work, 0);
	assert_int_equal(r.s->rsp_event, (uvm_ring_idx_t)(0xfffffffdU + 1));
	/* back end answers two: notify */
	for (int i = 0; i < 2; i++) {
		struct t_req q;
		struct t_rsp *p;

		UVM_RING_COPY_REQUEST(&r.b, r.b.req_cons, &q);
		r.b.req_cons++;
		p = UVM_RING_GET_RESPONSE(&r.b, r.b.rsp_prod_pvt++);
		p->id = q.id;
		p->status = (int32_t)(q.id & 0xff);
	}
	UVM_RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(&r.b, notify);
	assert_int_equal(notify, 1);
	served = 2;
	assert_int_equal(t_serve(&r, &served), 3);
	/* t_serve pushed without checking; front end has not re-armed */
	assert_int_equal(t_collect(&r, &collected), 5);
	UVM_RING_FINAL_CHECK_FOR_RESPONSES(&r.f, work);
	assert_int_equal(work, 0);
	t_produce(&r, 5, 1);
	UVM_RING_PUSH_REQUESTS(&r.f);
	r.b.req_cons++;
	UVM_RING_GET_RESPONSE(&r.b, r.b.rsp_prod_pvt)->id = 5;
	UVM_RING_GET_RESPONSE(&r.b, r.b.rsp_prod_pvt)->status = 5;
	r.b.rsp_prod_pvt++;
	UVM_RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(&r.b, notify);
	assert_int_equal(notify, 1);
	assert_int_equal(t_collect(&r, &collected), 1);
}

static void test_back_attach(void **state)
{
	struct t_rings r;
	struct t_back_ring b2;
	uint32_t served = 0;

	(void)state;
	t_setup(&r, T_PAGE);
	t_start_at(&r, 0xfffffff8U);
	t_produce(&r, 0, 20);
	UVM_RING_PUSH_REQUESTS(&r.f);
	assert_int_equal(t_serve(&r, &served), 20);
	t_produce(&r, 20, 4);
	UVM_RING_PUSH_REQUESTS(&r.f);
	r.b.req_cons += 2; /* consumed, never answered, then state lost */
	UVM_RING_BACK_ATTACH(&b2, r.s, T_PAGE);
	assert_int_equal(b2.req_cons, (uvm_ring_idx_t)(0xfffffff8U + 20));
	assert_int_equal(UVM_RING_UNCONSUMED_REQUESTS(&b2), 4);
	assert_int_equal(UVM_RING_SIZE(&b2), 256);
}

/* ---- two threads ---- */

#define T_MSGS 2000000U

struct t_shared {
	struct t_rings r;
	uint32_t errors;
};

static void *t_back_thread(void *arg)
{
	struct t_shared *sh = arg;
	struct t_back_ring *b = &sh->r.b;
	uint32_t next = 0;
	int work, notify;

	while (next < T_MSGS) {
		UVM_RING_FINAL_CHECK_FOR_REQUESTS(b, work);
		if (!work) {
			sched_yield();
			continue;
		}
		while (work-- > 0) {
			struct t_req q;
			struct t_rsp *p;

			UVM_RING_COPY_REQUEST(b, b->req_cons, &q);
			b->req_cons++;
			if (q.id != next || q.op != (q.id ^ 0x5a5a5a5aU))
				sh->errors++;
			next++;
			p = UVM_RING_GET_RESPONSE(b, b->rsp_prod_pvt);
			p->id = q.id;
			p->status = (int32_t)(q.op & 0x7fffffff);
			b->rsp_prod_pvt++;
		}
		UVM_RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(b, notify);
		(void)notify;
	}
	return NULL;
}

static void test_two_threads(void **state)
{
	static struct t_shared sh;
	struct t_front_ring *f = &sh.r.f;
	uint32_t sent = 0, got = 0;
	pthread_t th;
	int notify, work;

	(void)state;
	t_setup(&sh.r, T_PAGE);
	t_start_at(&sh.r, 0xfff00000U);
	sh.errors = 0;
	assert_int_equal(pthread_create(&th, NULL, t_back_thread, &sh), 0);
	while (got < T_MSGS) {
		while (sent < T_MSGS && !UVM_RING_FULL(f)) {
			struct t_req *q = UVM_RING_GET_REQUEST(f, f->req_prod_pvt);

			q->id = sent;
			q->op = sent ^ 0x5a5a5a5aU;
			f->req_prod_pvt++;
			sent++;
			if (sent % 37 == 0)
				break;
		}
		UVM_RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(f, notify);
		(void)notify;
		UVM_RING_FINAL_CHECK_FOR_RESPONSES(f, work);
		while (work-- > 0) {
			struct t_rsp *p = UVM_RING_GET_RESPONSE(f, f->rsp_cons);

			if (p->id != got ||
			    p->status != (int32_t)((got ^ 0x5a5a5a5aU) & 0x7fffffff))
				sh.errors++;
			f->rsp_cons++;
			got++;
		}
	}
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(sh.errors, 0);
	assert_int_equal(UVM_RING_FREE_REQUESTS(f), 256);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layout_and_size),
		cmocka_unit_test(test_flow_from_zero),
		cmocka_unit_test(test_flow_wraps_2_32),
		cmocka_unit_test(test_full_ring),
		cmocka_unit_test(test_malicious_producer),
		cmocka_unit_test(test_notify_requests),
		cmocka_unit_test(test_notify_responses),
		cmocka_unit_test(test_back_attach),
		cmocka_unit_test(test_two_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
