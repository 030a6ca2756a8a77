/*
 * vmctl.c - `tandem vm`: run a guest, serve its control socket, save it,
 * restore it, and inspect snapshots.
 *
 * A running guest (vm run / vm restore) is one process: the vCPU threads
 * run the guest, the main thread waits on the control socket, a signalfd
 * (SIGINT, SIGTERM) and the guest's shutdown.  Control requests are one
 * JSON object per line on a Unix socket; each gets one JSON reply line:
 *
 *   {"cmd":"status"}                   state, vCPUs, memory, report words
 *   {"cmd":"pause"} {"cmd":"unpause"}
 *   {"cmd":"save","path":P,"stop":B}   pause, write P atomically, then
 *                                      destroy the guest (stop) or resume
 */
#include "ctlsock.h"
#include "disksync.h"
#include "failover.h"
#include "i4check.h"
#include "hv.h"
#include "log.h"
#include "pagetest_check.h"
#include "replicator.h"
#include "uvm_abi.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define VM_EXIT_OK 0
#define VM_EXIT_FAIL 1
#define VM_EXIT_USAGE 2
#define VM_EXIT_CRASH 3
#define VM_POLL_MS 100

struct vm_opts {
	struct hv_config cfg;
	const char *control;
	const char *console;
	uint64_t disk_size;   /* create the disk image at this size if absent */
	bool stop;
};

struct vm_session {
	struct hv_domain *dom;
	int listen_fd;
	int sig_fd;
	const char *control;
	bool quit;
	int exit_code;
};

/* ---- options --------------------------------------------------------------- */

static int vm_parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	uint64_t mult = 1;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || end == s)
		goto bad;
	switch (*end) {
	case 'K': case 'k': mult = 1ULL << 10; end++; break;
	case 'M': case 'm': mult = 1ULL << 20; end++; break;
	case 'G': case 'g': mult = 1ULL << 30; end++; break;
	case '\0': break;
	default: goto bad;
	}
	if (*end != '\0' || v > UINT64_MAX / mult)
		goto bad;
	*out = v * mult;
	return 0;
bad:
	fprintf(stderr, "tandem: bad size \"%s\" (use a number with K, M or G)\n", s);
	return -EINVAL;
}

static int vm_parse_uint(const char *what, const char *s, unsigned max,
			 unsigned *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v > max) {
		fprintf(stderr, "tandem: bad %s \"%s\" (0..%u)\n", what, s, max);
		return -EINVAL;
	}
	*out = (unsigned)v;
	return 0;
}

static int vm_parse_dirty(const char *s, enum hv_dirty_mech *out)
{
	static const enum hv_dirty_mech all[] = { HV_DIRTY_AUTO, HV_DIRTY_UFFD_WP,
						  HV_DIRTY_MPROTECT };

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		if (strcmp(s, hv_dirty_mech_name(all[i])) == 0) {
			*out = all[i];
			return 0;
		}
	}
	fprintf(stderr, "tandem: bad --dirty \"%s\" (auto, uffd-wp, mprotect)\n", s);
	return -EINVAL;
}

static int vm_parse_opt(struct vm_opts *o, int c, const char *arg)
{
	enum log_level level;

	switch (c) {
	case 'm':
		return vm_parse_size(arg, &o->cfg.mem_bytes);
	case 'v':
		return vm_parse_uint("--vcpus", arg, HV_MAX_VCPUS, &o->cfg.nr_vcpus);
	case 'c':
		o->cfg.cmdline = arg;
		return 0;
	case 'C':
		o->control = arg;
		return 0;
	case 'd':
		return vm_parse_dirty(arg, &o->cfg.dirty);
	case 'b':
		return vm_parse_uint("--pause-bound", arg, 1000000,
				     &o->cfg.pause_bound_us);
	case 'o':
		o->console = arg;
		return 0;
	case 's':
		o->stop = true;
		return 0;
	case 'k':
		o->cfg.disk = arg;
		return 0;
	case 'z':
		return vm_parse_size(arg, &o->disk_size);
	case 'L':
		o->cfg.listen = arg;
		return 0;
	case 'l':
		if (log_parse_level(arg, &level) != 0) {
			fprintf(stderr, "tandem: bad --log \"%s\" (error, warn, "
				"info, debug)\n", arg);
			return -EINVAL;
		}
		log_set_level(level);
		return 0;
	}
	return -EINVAL;
}

/* Parses options; leaves optind at the first operand. */
static int vm_parse_opts(int argc, char **argv, struct vm_opts *o)
{
	static const struct option longopts[] = {
		{ "mem", required_argument, NULL, 'm' },
		{ "vcpus", required_argument, NULL, 'v' },
		{ "cmdline", required_argument, NULL, 'c' },
		{ "control", required_argument, NULL, 'C' },
		{ "dirty", required_argument, NULL, 'd' },
		{ "pause-bound", required_argument, NULL, 'b' },
		{ "console", required_argument, NULL, 'o' },
		{ "stop", no_argument, NULL, 's' },
		{ "disk", required_argument, NULL, 'k' },
		{ "disk-size", required_argument, NULL, 'z' },
		{ "listen", required_argument, NULL, 'L' },
		{ "log", required_argument, NULL, 'l' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	memset(o, 0, sizeof(*o));
	o->cfg.console_fd = STDOUT_FILENO;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1)
		if (c == '?' || vm_parse_opt(o, c, optarg) != 0)
			return -EINVAL;
	return 0;
}

static int vm_open_console(struct vm_opts *o)
{
	if (o->console == NULL || strcmp(o->console, "-") == 0)
		return 0;
	o->cfg.console_fd = open(o->console, O_WRONLY | O_CREAT | O_APPEND |
					       O_CLOEXEC, 0644);
	if (o->cfg.console_fd < 0) {
		fprintf(stderr, "tandem: console file %s: %s\n", o->console,
			strerror(errno));
		return -errno;
	}
	return 0;
}

/* Create the disk image if it is missing and a size was given; never
 * resize or truncate an existing one. */
static int vm_prepare_disk(const struct vm_opts *o)
{
	char err[PATH_MAX + 128];
	int rc;

	if (o->cfg.disk == NULL || o->disk_size == 0)
		return 0;
	rc = ds_image_prepare(o->cfg.disk, o->disk_size, err, sizeof(err));
	if (rc != 0)
		fprintf(stderr, "tandem: %s\n", err);
	return rc;
}

/* ---- progress ---------------------------------------------------------------- */

static void vm_progress(void *arg, uint64_t done, uint64_t total)
{
	const char *what = arg;

	if (total != 0)
		log_info("%s: %" PRIu64 " of %" PRIu64 " pages (%" PRIu64 "%%)",
			 what, done, total, done * 100 / total);
	else
		log_info("%s: %" PRIu64 " pages", what, done);
}

/* ---- the running guest --------------------------------------------------------- */

static const struct uvm_start_info *vm_start_info(struct hv_domain *dom)
{
	void *p = NULL;

	if (hv_map(dom, UVM_START_INFO_PFN, 1, false, &p) != 0)
		return NULL;
	return p;
}

static struct json_object *vm_cmd_status(struct vm_session *s)
{
	struct json_object *r = ctl_reply_ok(), *rep = json_object_new_array();
	const struct uvm_start_info *si = vm_start_info(s->dom);

	json_object_object_add(r, "state", json_object_new_string(
				   hv_is_paused(s->dom) ? "paused" : "running"));
	json_object_object_add(r, "vcpus", json_object_new_int((int)hv_nr_vcpus(s->dom)));
	json_object_object_add(r, "mem_bytes", json_object_new_int64(
				   (int64_t)(hv_nr_pages(s->dom) * HV_PAGE_SIZE)));
	json_object_object_add(r, "dirty", json_object_new_string(
				   hv_dirty_mech_name(hv_dirty_mech(s->dom))));
	for (int i = 0; si != NULL && i < UVM_REPORT_WORDS; i++)
		json_object_array_add(rep, json_object_new_int64((int64_t)si->report[i]));
	json_object_object_add(r, "report", rep);
	return r;
}

static int vm_save_file(struct hv_domain *dom, const char *path,
			struct rep_snapshot_stats *st)
{
	char tmp[PATH_MAX];
	int fd, rc;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	rc = rep_snapshot_save(dom, fd, vm_progress, "save", st);
	if (rc == 0 && fsync(fd) != 0)
		rc = -errno;
	close(fd);
	if (rc == 0 && rename(tmp, path) != 0)
		rc = -errno;
	if (rc != 0)
		unlink(tmp);
	return rc;
}

static struct json_object *vm_cmd_save(struct vm_session *s, struct json_object *req)
{
	struct json_object *jpath = NULL, *jstop = NULL, *r;
	struct rep_snapshot_stats st;
	struct hv_pause_info pi;
	bool was_paused = hv_is_paused(s->dom), stop;
	const char *path;
	int rc;

	if (!json_object_object_get_ex(req, "path", &jpath) ||
	    !json_object_is_type(jpath, json_type_string))
		return ctl_reply_error("save needs a \"path\" string");
	path = json_object_get_string(jpath);
	stop = json_object_object_get_ex(req, "stop", &jstop) &&
	       json_object_get_boolean(jstop);
	rc = hv_pause(s->dom, &pi);
	if (rc == 0)
		rc = vm_save_file(s->dom, path, &st);
	if (rc != 0) {
		if (!was_paused)
			(void)hv_unpause(s->dom);
		return ctl_reply_error("save to %s failed: %s", path, strerror(-rc));
	}
	log_info("saved to %s: %" PRIu64 " pages, %" PRIu64 " bytes in %.1f ms "
		 "(pause reached in %" PRIu64 " us)", path, st.pages, st.bytes,
		 st.ns / 1e6, pi.reach_ns / 1000);
	if (stop) {
		s->quit = true;
		s->exit_code = VM_EXIT_OK;
	} else if (!was_paused) {
		(void)hv_unpause(s->dom);
	}
	r = ctl_reply_ok();
	json_object_object_add(r, "pages", json_object_new_int64((int64_t)st.pages));
	json_object_object_add(r, "bytes", json_object_new_int64((int64_t)st.bytes));
	json_object_object_add(r, "save_ms", json_object_new_double(st.ns / 1e6));
	json_object_object_add(r, "pause_reach_us",
			       json_object_new_double(pi.reach_ns / 1e3));
	return r;
}

static struct json_object *vm_dispatch(void *arg, const char *line)
{
	struct vm_session *s = arg;
	struct json_object *req = json_tokener_parse(line), *jcmd = NULL, *r;
	const char *cmd;
	int rc;

	if (req == NULL || !json_object_is_type(req, json_type_object) ||
	    !json_object_object_get_ex(req, "cmd", &jcmd)) {
		json_object_put(req);
		return ctl_reply_error("request is not a JSON object with \"cmd\"");
	}
	cmd = json_object_get_string(jcmd);
	if (strcmp(cmd, "status") == 0)
		r = vm_cmd_status(s);
	else if (strcmp(cmd, "save") == 0)
		r = vm_cmd_save(s, req);
	else if (strcmp(cmd, "pause") == 0 || strcmp(cmd, "unpause") == 0) {
		rc = cmd[0] == 'p' ? hv_pause(s->dom, NULL) : hv_unpause(s->dom);
		r = rc ? ctl_reply_error("%s failed: %s", cmd, strerror(-rc))
		       : ctl_reply_ok();
	} else
		r = ctl_reply_error("unknown command \"%s\"", cmd);
	json_object_put(req);
	return r;
}

static int vm_shutdown_status(struct vm_session *s)
{
	struct hv_shutdown_info info;

	if (hv_wait_shutdown(s->dom, 0, &info) != 0)
		return -1;
	if (info.reason == HV_SHUTDOWN_CRASH)
		return VM_EXIT_CRASH;
	return info.code == 0 ? VM_EXIT_OK : VM_EXIT_FAIL;
}

static int vm_loop(struct vm_session *s)
{
	while (!s->quit) {
		struct pollfd p[2] = { { .fd = s->sig_fd, .events = POLLIN },
				       { .fd = s->listen_fd, .events = POLLIN } };
		int st = vm_shutdown_status(s);

		if (st >= 0)
			return st;
		if (poll(p, s->listen_fd >= 0 ? 2 : 1, VM_POLL_MS) <= 0)
			continue;
		if (p[0].revents & POLLIN) {
			log_info("signal received: destroying the guest");
			return VM_EXIT_FAIL;
		}
		if (s->listen_fd >= 0 && (p[1].revents & POLLIN))
			ctl_serve_one(s->listen_fd, vm_dispatch, s);
	}
	return s->exit_code;
}

static int vm_session_run(struct vm_session *s, const char *control)
{
	int rc;

	s->listen_fd = -1;
	s->control = control;
	if (control != NULL) {
		s->listen_fd = ctl_listen(control);
		if (s->listen_fd < 0)
			return VM_EXIT_FAIL;
	}
	rc = hv_unpause(s->dom);
	if (rc == 0) {
		log_info("guest running (%u vCPU, %" PRIu64 " MiB, dirty tracking "
			 "%s)%s%s", hv_nr_vcpus(s->dom),
			 hv_nr_pages(s->dom) * HV_PAGE_SIZE >> 20,
			 hv_dirty_mech_name(hv_dirty_mech(s->dom)),
			 control ? ", control socket " : "", control ? control : "");
		rc = vm_loop(s);
	} else {
		rc = VM_EXIT_FAIL;
	}
	if (s->listen_fd >= 0) {
		close(s->listen_fd);
		unlink(control);
	}
	return rc;
}

/* ---- subcommands ------------------------------------------------------------- */

static int vm_cmd_run(int argc, char **argv, bool restore)
{
	struct vm_session s = { .listen_fd = -1 };
	struct vm_opts o;
	int rc;

	if (vm_parse_opts(argc, argv, &o) != 0 || optind != argc - 1) {
		fprintf(stderr, "usage: tandem vm %s %s [options]\n",
			restore ? "restore" : "run", restore ? "FILE" : "IMAGE");
		return VM_EXIT_USAGE;
	}
	if (vm_open_console(&o) != 0 || vm_prepare_disk(&o) != 0)
		return VM_EXIT_FAIL;
	s.sig_fd = ctl_signalfd();
	if (restore) {
		struct rep_snapshot_stats st;
		char err[320];
		int fd = open(argv[optind], O_RDONLY | O_CLOEXEC);

		if (fd < 0) {
			fprintf(stderr, "tandem: %s: %s\n", argv[optind], strerror(errno));
			return VM_EXIT_FAIL;
		}
		rc = rep_snapshot_restore(fd, argv[optind], &o.cfg, vm_progress,
					  "restore", &s.dom, &st, err, sizeof(err));
		close(fd);
		if (rc != 0) {
			fprintf(stderr, "tandem: restore refused: %s\n", err);
			return VM_EXIT_FAIL;
		}
		log_info("restored %" PRIu64 " pages (%" PRIu64 " bytes) in %.1f ms",
			 st.pages, st.bytes, st.ns / 1e6);
	} else {
		o.cfg.image = argv[optind];
		if (hv_domain_build(&o.cfg, &s.dom) != 0)
			return VM_EXIT_FAIL;
	}
	rc = vm_session_run(&s, o.control);
	hv_domain_free(s.dom);
	close(s.sig_fd);
	return rc;
}

static int vm_request(const char *control, const char *req)
{
	char reply[CTL_LINE_MAX];
	int rc;

	if (control == NULL) {
		fprintf(stderr, "tandem: --control SOCK is required\n");
		return VM_EXIT_USAGE;
	}
	rc = ctl_request(control, req, reply, sizeof(reply), 60000);
	if (rc != 0) {
		fprintf(stderr, "tandem: no reply from %s: %s\n", control,
			strerror(-rc));
		return VM_EXIT_FAIL;
	}
	fputs(reply, stdout);
	return strstr(reply, "\"ok\":true") ? VM_EXIT_OK : VM_EXIT_FAIL;
}

static int vm_cmd_client(int argc, char **argv, const char *cmd)
{
	struct json_object *req;
	struct vm_opts o;
	char path[PATH_MAX];
	int rc;

	if (vm_parse_opts(argc, argv, &o) != 0 ||
	    optind != argc - (strcmp(cmd, "save") == 0)) {
		fprintf(stderr, "usage: tandem vm %s --control SOCK%s\n", cmd,
			strcmp(cmd, "save") == 0 ? " FILE [--stop]" : "");
		return VM_EXIT_USAGE;
	}
	req = json_object_new_object();
	json_object_object_add(req, "cmd", json_object_new_string(cmd));
	if (strcmp(cmd, "save") == 0) {
		/* The guest's process writes the file: send it an absolute path. */
		if (argv[optind][0] == '/' || getcwd(path, sizeof(path)) == NULL)
			snprintf(path, sizeof(path), "%s", argv[optind]);
		else
			snprintf(path + strlen(path), sizeof(path) - strlen(path),
				 "/%s", argv[optind]);
		json_object_object_add(req, "path", json_object_new_string(path));
		json_object_object_add(req, "stop", json_object_new_boolean(o.stop));
	}
	rc = vm_request(o.control, json_object_to_json_string_ext(
					   req, JSON_C_TO_STRING_PLAIN));
	json_object_put(req);
	return rc;
}

static int vm_check_pagetest(struct hv_domain *dom)
{
	char msg[PAGETEST_MSG_MAX + 32];
	int rc = i4_check_domain(dom, msg, sizeof(msg));

	printf("%s\n", msg);
	return rc == 0 ? VM_EXIT_OK : VM_EXIT_FAIL;
}

static int vm_cmd_check(int argc, char **argv)
{
	struct rep_snapshot_stats st;
	const struct uvm_start_info *si;
	struct hv_domain *dom;
	struct vm_opts o;
	char err[320];
	int fd, rc;

	if (vm_parse_opts(argc, argv, &o) != 0 || optind != argc - 1) {
		fprintf(stderr, "usage: tandem vm check FILE\n");
		return VM_EXIT_USAGE;
	}
	o.cfg.console_fd = -1;
	fd = open(argv[optind], O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "tandem: %s: %s\n", argv[optind], strerror(errno));
		return VM_EXIT_FAIL;
	}
	rc = rep_snapshot_restore(fd, argv[optind], &o.cfg, NULL, NULL, &dom,
				  &st, err, sizeof(err));
	close(fd);
	if (rc != 0) {
		fprintf(stderr, "tandem: snapshot refused: %s\n", err);
		return VM_EXIT_USAGE;
	}
	si = vm_start_info(dom);
	printf("snapshot %s: %" PRIu64 " pages, %u vCPU(s), %" PRIu64 " MiB\n",
	       argv[optind], st.pages, hv_nr_vcpus(dom),
	       hv_nr_pages(dom) * HV_PAGE_SIZE >> 20);
	printf("report:");
	for (int i = 0; i < UVM_REPORT_WORDS; i++)
		printf(" %" PRIu64, si->report[i]);
	printf("\n");
	rc = si->report[UVM_REPORT_KIND] == UVM_GUEST_PAGETEST
		     ? vm_check_pagetest(dom)
		     : VM_EXIT_OK;
	hv_domain_free(dom);
	return rc;
}

int vmctl_main(int argc, char **argv)
{
	const char *sub = argc >= 2 ? argv[1] : "";

	if (strcmp(sub, "run") == 0)
		return vm_cmd_run(argc - 1, argv + 1, false);
	if (strcmp(sub, "restore") == 0)
		return vm_cmd_run(argc - 1, argv + 1, true);
	if (strcmp(sub, "check") == 0)
		return vm_cmd_check(argc - 1, argv + 1);
	if (strcmp(sub, "save") == 0 || strcmp(sub, "status") == 0 ||
	    strcmp(sub, "pause") == 0 || strcmp(sub, "unpause") == 0)
		return vm_cmd_client(argc - 1, argv + 1, sub);
	fprintf(stderr, "tandem vm: unknown subcommand \"%s\" (run, restore, "
		"save, status, pause, unpause, check)\n", sub);
	return VM_EXIT_USAGE;
}
