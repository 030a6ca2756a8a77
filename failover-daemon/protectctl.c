/*
 * protectctl.c - `tandem status|protect|unprotect|set|failover|migrate|drill`: the
 * operator's commands, sent to a tandemd's control socket.
 */
#include "clock.h"
#include "ctlsock.h"
#include "failover.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PC_TIMEOUT_MS 10000

struct pc_opts {
	const char *control;
	const char *peer_control;
	const char *phase;
	const char *get;
	bool json, force;
	int timeout_s;
};

static int pc_parse(int argc, char **argv, struct pc_opts *o)
{
	static const struct option opts[] = {
		{ "control", required_argument, NULL, 'c' },
		{ "peer-control", required_argument, NULL, 'p' },
		{ "phase", required_argument, NULL, 'f' },
		{ "json", no_argument, NULL, 'j' },
		{ "get", required_argument, NULL, 'g' },
		{ "force", no_argument, NULL, 'F' },
		{ "timeout", required_argument, NULL, 't' },
		{ 0 },
	};
	int c;

	memset(o, 0, sizeof(*o));
	o->timeout_s = 30;
	optind = 1;
	while ((c = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
		switch (c) {
		case 'c': o->control = optarg; break;
		case 'p': o->peer_control = optarg; break;
		case 'f': o->phase = optarg; break;
		case 'j': o->json = true; break;
		case 'g': o->get = optarg; break;
		case 'F': o->force = true; break;
		case 't':
			o->timeout_s = atoi(optarg);
			if (o->timeout_s <= 0) {
				fprintf(stderr, "tandem: --timeout \"%s\": "
					"seconds > 0\n", optarg);
				return -EINVAL;
			}
			break;
		default: return -EINVAL;
		}
	}
	if (o->control == NULL) {
		fprintf(stderr, "tandem: --control SOCK is required\n");
		return -EINVAL;
	}
	return 0;
}

/* Send req; parse the reply into *out.  Prints why on failure. */
static int pc_call(const char *control, struct json_object *req,
		   struct json_object **out)
{
	char reply[CTL_LINE_MAX];
	int rc = ctl_request(control,
			     json_object_to_json_string_ext(
				     req, JSON_C_TO_STRING_PLAIN),
			     reply, sizeof(reply), PC_TIMEOUT_MS);

	*out = NULL;
	if (rc != 0) {
		fprintf(stderr, "tandem: %s: %s\n", control, strerror(-rc));
		return rc;
	}
	*out = json_tokener_parse(reply);
	if (*out == NULL) {
		fprintf(stderr, "tandem: %s: reply is not JSON\n", control);
		return -EPROTO;
	}
	return 0;
}

static struct json_object *pc_req(const char *cmd)
{
	struct json_object *r = json_object_new_object();

	json_object_object_add(r, "cmd", json_object_new_string(cmd));
	return r;
}

static int64_t js_i(struct json_object *o, const char *path)
{
	struct json_object *v;

	return o && json_object_object_get_ex(o, path, &v)
		       ? json_object_get_int64(v) : 0;
}

static const char *js_s(struct json_object *o, const char *k)
{
	struct json_object *v;

	return o && json_object_object_get_ex(o, k, &v)
		       ? json_object_get_string(v) : "";
}

static struct json_object *js_o(struct json_object *o, const char *k)
{
	struct json_object *v;

	return o && json_object_object_get_ex(o, k, &v) ? v : NULL;
}

static bool pc_ok(struct json_object *r)
{
	struct json_object *v = js_o(r, "ok");

	return v && json_object_get_boolean(v);
}

/* Send a simple command, print its error or "ok". */
static int pc_simple(const struct pc_opts *o, struct json_object *req)
{
	struct json_object *r;
	int rc = pc_call(o->control, req, &r);

	json_object_put(req);
	if (rc != 0)
		return 1;
	if (!pc_ok(r))
		fprintf(stderr, "tandem: %s\n", js_s(r, "error"));
	rc = pc_ok(r) ? 0 : 1;
	json_object_put(r);
	return rc;
}

static void pc_print_protect(struct json_object *p)
{
	printf("  protection: %s, %s mode, interval %.1f ms\n", js_s(p, "state"),
	       js_s(p, "mode"), js_i(p, "interval_us") / 1000.0);
	if (strcmp(js_s(p, "state"), "syncing") == 0)
		printf("  full copy: %" PRId64 " of %" PRId64 " pages\n",
		       js_i(p, "sync_pages_done"), js_i(p, "sync_pages_total"));
	printf("  epoch %" PRId64 ", committed %" PRId64 " (lag %" PRId64
	       "), %s checkpoints/s\n", js_i(p, "epoch"), js_i(p, "committed"),
	       js_i(p, "lag_epochs"), js_s(p, "checkpoint_rate"));
	printf("  last pause %" PRId64 " us (p50 %" PRId64 ", p99 %" PRId64
	       "); last epoch %" PRId64 " pages, %" PRId64 " bytes, disk %"
	       PRId64 " bytes\n", js_i(p, "last_pause_us"),
	       js_i(p, "pause_p50_us"), js_i(p, "pause_p99_us"),
	       js_i(p, "last_epoch_pages"), js_i(p, "last_epoch_bytes"),
	       js_i(p, "last_epoch_disk_bytes"));
	printf("  held output: %" PRId64 " epoch(s), oldest %" PRId64 " ms\n",
	       js_i(p, "held_epochs"), js_i(p, "held_ms"));
}

static void pc_print_replica(struct json_object *p)
{
	printf("  replica: %s, committed epoch %" PRId64 " (%" PRId64
	       " commits, primary at %" PRId64 ", lag %" PRId64 ")\n",
	       js_s(p, "state"), js_i(p, "committed"), js_i(p, "commits"),
	       js_i(p, "primary_epoch"), js_i(p, "lag_epochs"));
	printf("  last apply %" PRId64 " us, %" PRId64 " pages, disk %" PRId64
	       " bytes; %" PRId64 " epoch(s) discarded half-received\n",
	       js_i(p, "last_apply_us"), js_i(p, "last_epoch_pages"),
	       js_i(p, "last_epoch_disk_bytes"), js_i(p, "discarded_epochs"));
}

static void pc_print_status(struct json_object *r)
{
	struct json_object *peer = js_o(r, "peer"), *fo = js_o(r, "failover");

	printf("vm %s on %s: %s (generation %" PRId64 "), pid %" PRId64 "\n",
	       js_s(r, "vm"), js_s(r, "host"), js_s(r, "role"),
	       js_i(r, "generation"), js_i(r, "pid"));
	if (js_o(r, "protect"))
		pc_print_protect(js_o(r, "protect"));
	if (js_o(r, "replica"))
		pc_print_replica(js_o(r, "replica"));
	printf("  peer %s: %s\n", js_s(peer, "name"), js_s(peer, "state"));
	if (js_o(r, "split_risk") &&
	    json_object_get_boolean(js_o(r, "split_risk")))
		printf("  SPLIT RISK: not promoting on its own\n");
	if (fo != NULL)
		printf("  failover: %s; resumed epoch %" PRId64 ", RTO %" PRId64
		       " ms (primary silent %" PRId64 " ms, resume %" PRId64
		       " us)\n", js_s(fo, "reason"), js_i(fo, "epoch"),
		       js_i(fo, "rto_ms"), js_i(fo, "primary_silent_ms"),
		       js_i(fo, "resume_us"));
}

/* --get a.b.c: print one field of the status (for scripts); exit 1 and
 * print nothing if it is absent. */
static int pc_print_get(struct json_object *r, const char *path)
{
	char buf[256], *save = NULL, *k;
	struct json_object *v = r;

	snprintf(buf, sizeof(buf), "%s", path);
	for (k = strtok_r(buf, ".", &save); k && v; k = strtok_r(NULL, ".", &save))
		v = js_o(v, k);
	if (v == NULL) {
		json_object_put(r);
		return 1;
	}
	printf("%s\n", json_object_is_type(v, json_type_string)
			       ? json_object_get_string(v)
			       : json_object_to_json_string_ext(
					 v, JSON_C_TO_STRING_PLAIN));
	json_object_put(r);
	return 0;
}

static int pc_status(const struct pc_opts *o)
{
	struct json_object *req = pc_req("status"), *r;
	int rc = pc_call(o->control, req, &r);

	json_object_put(req);
	if (rc != 0)
		return 1;
	if (o->get != NULL)
		return pc_print_get(r, o->get);
	if (o->json)
		printf("%s\n", json_object_to_json_string_ext(
				       r, JSON_C_TO_STRING_PLAIN));
	else if (pc_ok(r))
		pc_print_status(r);
	else
		fprintf(stderr, "tandem: %s\n", js_s(r, "error"));
	rc = pc_ok(r) ? 0 : 1;
	json_object_put(r);
	return rc;
}

static int pc_set(const struct pc_opts *o, int argc, char **argv)
{
	struct json_object *req = pc_req("set");
	char *end;
	double ms;

	if (argc - optind != 2) {
		fprintf(stderr, "usage: tandem set interval MS|mode MODE "
			"--control SOCK\n");
		json_object_put(req);
		return 2;
	}
	if (strcmp(argv[optind], "interval") == 0) {
		ms = strtod(argv[optind + 1], &end);
		if (*end != '\0' || end == argv[optind + 1]) {
			fprintf(stderr, "tandem: interval \"%s\" is not a number "
				"of milliseconds\n", argv[optind + 1]);
			json_object_put(req);
			return 2;
		}
		json_object_object_add(req, "interval_ms",
				       json_object_new_double(ms));
	} else if (strcmp(argv[optind], "mode") == 0) {
		json_object_object_add(req, "mode",
				       json_object_new_string(argv[optind + 1]));
	} else {
		fprintf(stderr, "tandem: set \"%s\": use interval or mode\n",
			argv[optind]);
		json_object_put(req);
		return 2;
	}
	return pc_simple(o, req);
}

static uint64_t pc_now_ms(void)
{
	return mono_ns() / 1000000;
}

static struct json_object *pc_status_of(const char *control)
{
	struct json_object *req = pc_req("status"), *r = NULL;
	char reply[CTL_LINE_MAX];

	if (ctl_request(control, json_object_to_json_string_ext(
					 req, JSON_C_TO_STRING_PLAIN),
			reply, sizeof(reply), PC_TIMEOUT_MS) == 0)
		r = json_tokener_parse(reply);
	json_object_put(req);
	return r;
}

/* I1 after a drill: the old primary's daemon is gone, or no longer
 * primary. */
static bool pc_one_copy(const char *peer_control, int64_t old_pid)
{
	struct json_object *r = pc_status_of(peer_control);
	bool ok;

	if (r == NULL)
		ok = old_pid <= 0 || (kill((pid_t)old_pid, 0) != 0 &&
				      errno == ESRCH);
	else
		ok = strcmp(js_s(r, "role"), "primary") != 0;
	json_object_put(r);
	return ok;
}

static int pc_drill_report(struct json_object *r, const char *phase,
			   int64_t before, bool one_copy, bool checked)
{
	struct json_object *fo = js_o(r, "failover");

	printf("drill report (vm %s)\n", js_s(r, "vm"));
	printf("  primary killed at phase: %s\n", phase);
	printf("  epochs committed before the kill: %" PRId64 "\n", before);
	printf("  resumed from epoch: %" PRId64 " (generation %" PRId64 ")\n",
	       js_i(fo, "epoch"), js_i(fo, "generation"));
	printf("  primary silent before promotion: %" PRId64 " ms\n",
	       js_i(fo, "primary_silent_ms"));
	printf("  promotion to guest running: %" PRId64 " us\n",
	       js_i(fo, "resume_us"));
	printf("  recovery time (RTO): %" PRId64 " ms\n", js_i(fo, "rto_ms"));
	printf("  I1 exactly one live copy: %s\n",
	       !checked ? "not checked (no --peer-control)"
			: one_copy ? "yes" : "NO");
	printf("  no committed epoch lost: %s\n",
	       js_i(fo, "epoch") >= before ? "yes" : "NO");
	return (checked && !one_copy) || js_i(fo, "epoch") < before;
}

static int pc_drill(const struct pc_opts *o)
{
	struct json_object *req, *r = pc_status_of(o->control), *peer = NULL;
	const char *phase = o->phase ? o->phase : "sent";
	int64_t before, old_pid = 0;
	uint64_t deadline;
	int rc;

	if (r == NULL || strcmp(js_s(r, "role"), "standby") != 0 ||
	    js_i(js_o(r, "replica"), "committed") == 0) {
		fprintf(stderr, "tandem: drill: %s must be a standby with a "
			"committed epoch\n", o->control);
		json_object_put(r);
		return 1;
	}
	if (o->peer_control != NULL &&
	    (peer = pc_status_of(o->peer_control)) != NULL)
		old_pid = js_i(peer, "pid");
	json_object_put(peer);
	json_object_put(r);
	req = pc_req("drill");
	json_object_object_add(req, "phase", json_object_new_string(phase));
	rc = pc_simple(o, req);
	if (rc != 0)
		return rc;
	printf("drill: the primary dies at phase \"%s\"; waiting for the "
	       "standby to take over\n", phase);
	fflush(stdout);
	r = pc_status_of(o->control);
	before = js_i(js_o(r, "replica"), "committed");
	deadline = pc_now_ms() + (uint64_t)o->timeout_s * 1000;
	while (r != NULL && strcmp(js_s(r, "role"), "primary") != 0 &&
	       pc_now_ms() < deadline) {
		struct json_object *rep = js_o(r, "replica");

		if (rep && js_i(rep, "committed") > before)
			before = js_i(rep, "committed");
		json_object_put(r);
		usleep(5000);
		r = pc_status_of(o->control);
	}
	if (r == NULL || strcmp(js_s(r, "role"), "primary") != 0) {
		fprintf(stderr, "tandem: drill: no takeover within %d s\n",
			o->timeout_s);
		json_object_put(r);
		return 1;
	}
	rc = pc_drill_report(r, phase, before,
			     o->peer_control &&
				     pc_one_copy(o->peer_control, old_pid),
			     o->peer_control != NULL);
	json_object_put(r);
	return rc;
}

/* Wait until the primary at o->control is protected, showing the full
 * copy's progress.  0, or 1 with the reason printed. */
static int pc_wait_protected(const struct pc_opts *o, uint64_t deadline)
{
	int64_t shown = -1;

	for (;;) {
		struct json_object *r = pc_status_of(o->control);
		struct json_object *pr = js_o(r, "protect");
		const char *st = js_s(pr, "state");
		int64_t done = js_i(pr, "sync_pages_done");

		if (r == NULL || strcmp(js_s(r, "role"), "primary") != 0) {
			fprintf(stderr, "tandem: migrate: %s is not a primary\n",
				o->control);
			json_object_put(r);
			return 1;
		}
		if (strcmp(st, "protected") == 0) {
			json_object_put(r);
			return 0;
		}
		if (strcmp(st, "syncing") == 0 && done != shown) {
			printf("migrate: full copy %" PRId64 " of %" PRId64
			       " pages\n", done, js_i(pr, "sync_pages_total"));
			fflush(stdout);
			shown = done;
		}
		json_object_put(r);
		if (pc_now_ms() >= deadline) {
			fprintf(stderr, "tandem: migrate: not protected within %d "
				"s (state %s): the standby host has no copy to "
				"take over\n", o->timeout_s, st);
			return 1;
		}
		usleep(200000);
	}
}

/* `tandem migrate`: live migration to the standby host.  The standby's
 * replica is the pre-copied image; a planned switchover sends the final
 * epoch with the guest paused and the standby resumes it.  This host
 * becomes its standby. */
static int pc_migrate(const struct pc_opts *o)
{
	uint64_t deadline = pc_now_ms() + (uint64_t)o->timeout_s * 1000;
	uint64_t t0;
	struct json_object *req;
	int rc = pc_wait_protected(o, deadline);

	if (rc != 0)
		return rc;
	t0 = pc_now_ms();
	req = pc_req("failover");
	json_object_object_add(req, "force", json_object_new_boolean(false));
	rc = pc_simple(o, req);
	if (rc != 0)
		return rc;
	printf("migrate: final epoch handed over in %" PRIu64 " ms\n",
	       pc_now_ms() - t0);
	if (o->peer_control == NULL)
		return 0;
	for (;;) {
		struct json_object *r = pc_status_of(o->peer_control);
		bool up = r != NULL && strcmp(js_s(r, "role"), "primary") == 0;

		json_object_put(r);
		if (up)
			break;
		if (pc_now_ms() >= deadline) {
			fprintf(stderr, "tandem: migrate: %s did not become "
				"primary within %d s\n", o->peer_control,
				o->timeout_s);
			return 1;
		}
		usleep(50000);
	}
	printf("migrate: the guest runs on the other host; %" PRIu64 " ms from "
	       "the switchover request\n", pc_now_ms() - t0);
	return 0;
}

int protectctl_main(int argc, char **argv)
{
	const char *cmd = argv[0];
	struct json_object *req;
	struct pc_opts o;

	if (pc_parse(argc, argv, &o) != 0)
		return 2;
	if (strcmp(cmd, "status") == 0)
		return pc_status(&o);
	if (strcmp(cmd, "set") == 0)
		return pc_set(&o, argc, argv);
	if (strcmp(cmd, "drill") == 0)
		return pc_drill(&o);
	if (strcmp(cmd, "migrate") == 0)
		return pc_migrate(&o);
	if (optind != argc) {
		fprintf(stderr, "tandem %s: unexpected \"%s\"\n", cmd,
			argv[optind]);
		return 2;
	}
	req = pc_req(cmd);
	if (strcmp(cmd, "failover") == 0)
		json_object_object_add(req, "force",
				       json_object_new_boolean(o.force));
	if (strcmp(cmd, "check") == 0) {
		struct json_object *r;
		int rc = pc_call(o.control, req, &r);

		json_object_put(req);
		if (rc != 0)
			return 1;
		printf("%s (epoch %" PRId64 ")\n", pc_ok(r) ? js_s(r, "i4")
							  : js_s(r, "error"),
		       js_i(r, "epoch"));
		rc = pc_ok(r) ? 0 : 1;
		json_object_put(r);
		return rc;
	}
	if (strcmp(cmd, "failpoint") == 0)
		json_object_object_add(req, "phase", json_object_new_string(
						   o.phase ? o.phase : "sent"));
	return pc_simple(&o, req);
}
