/*
 * test_config.c - the VM protection config (failover-daemon/config.c).
 *
 * Every test writes its file as kv1.conf in a mkdtemp directory, starting
 * from one valid config (BASE, one key per line so a line names a key) and
 * changing a line or two.  An error must be -EINVAL, leave the config all
 * zero, and read "FILE:LINE: ..." with the file as given, the line of the
 * bad key (found by searching the text, not hard-coded) and the bad value.
 * The shipped example (failover-daemon/tandem.conf.example) must load as
 * documented.  Built with -DTEST_CONFIG_SHOW it prints every message.  The duration and size parsers run from tables, overflow
 * included; td_config_self and td_config_link run on loaded configs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

#define EXAMPLE "failover-daemon/tandem.conf.example"

static char g_dir[64];
static char g_real[PATH_MAX];     /* realpath of g_dir */
static char g_path[PATH_MAX];     /* g_dir/kv1.conf */
static struct td_config g_cfg;
static char g_err[TD_CONFIG_ERR_MAX];

static const char BASE[] =
	"# kv1, two hosts\n"
	"vm = {\n"
	"  name = \"kv1\";\n"
	"  image = \"kvstore.elf\";\n"
	"  disk-size = \"64M\";\n"
	"};\n"
	"protect = {\n"
	"  mode = \"hybrid\";\n"
	"  interval = \"50ms\";\n"
	"};\n"
	"failover = {\n"
	"  heartbeat-interval = \"200ms\";\n"
	"};\n"
	"link = {\n"
	"  security = \"cert\";\n"
	"  ca = \"pki/ca.crt\";\n"
	"};\n"
	"hosts = (\n"
	"  {\n"
	"    name = \"alpha\";\n"
	"    address = \"10.77.0.1:7790\";\n"
	"    heartbeat = \"10.78.0.1:7791\";\n"
	"    stream = \"10.77.0.1:6379\";\n"
	"    control = \"alpha.sock\";\n"
	"    disk = \"/var/lib/tandem/kv1.img\";\n"
	"    cert = \"pki/alpha.crt\";\n"
	"    key = \"pki/alpha.key\";\n"
	"  },\n"
	"  {\n"
	"    name = \"beta\";\n"
	"    address = \"10.77.0.2:7790\";\n"
	"    heartbeat = \"10.78.0.2:7791\";\n"
	"    stream = \"10.77.0.2:6379\";\n"
	"    control = \"beta.sock\";\n"
	"    disk = \"/var/lib/tandem/kv1.img\";\n"
	"    cert = \"pki/beta.crt\";\n"
	"    key = \"pki/beta.key\";\n"
	"  }\n"
	");\n";

/* The smallest valid config: everything else defaulted. */
static const char MINIMAL[] =
	"vm = { name = \"m\"; image = \"/m.elf\"; };\n"
	"link = { security = \"insecure\"; };\n"
	"hosts = (\n"
	"  { name = \"a\"; address = \"127.0.0.1:7001\";\n"
	"    stream = \"127.0.0.1:6001\"; control = \"a.sock\"; },\n"
	"  { name = \"b\"; address = \"127.0.0.1:7002\";\n"
	"    stream = \"127.0.0.1:6002\"; control = \"b.sock\"; }\n"
	");\n";

static const char PSK[] =
	"00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";

/* ---- helpers ---------------------------------------------------------------- */

/* text with the first `from` replaced by `to` (which must be there). */
static char *edit(const char *text, const char *from, const char *to)
{
	const char *at = strstr(text, from);
	size_t n = strlen(text) - strlen(from) + strlen(to) + 1;
	char *out = malloc(n);

	if (at == NULL)
		print_message("edit: \"%s\" not in the text\n", from);
	assert_non_null(at);
	assert_non_null(out);
	snprintf(out, n, "%.*s%s%s", (int)(at - text), text, to,
		 at + strlen(from));
	return out;
}

/* Edits in place: *text = edit(*text, ...), freeing the old one. */
static void edit_in(char **text, const char *from, const char *to)
{
	char *n = edit(*text, from, to);

	free(*text);
	*text = n;
}

/* 1-based line of the first `needle` in text. */
static int line_at(const char *text, const char *needle)
{
	const char *at = strstr(text, needle), *p;
	int line = 1;

	assert_non_null(at);
	for (p = text; p < at; p++)
		line += *p == '\n';
	return line;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static int load_text(const char *text)
{
	write_file(g_path, text);
	memset(g_err, 0, sizeof(g_err));
	return td_config_load(g_path, &g_cfg, g_err, sizeof(g_err));
}

static void load_ok(const char *text)
{
	int rc = load_text(text);

	if (rc != 0)
		print_message("unexpected error %d: %s\n", rc, g_err);
	assert_int_equal(rc, 0);
}

static bool all_zero(const void *p, size_t n)
{
	const unsigned char *b = p;
	size_t i;

	for (i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

/*
 * The text must fail with "g_path:LINE: " and a message holding each of
 * the NULL-terminated strings, and leave the config zeroed.
 */
static void vexpect_error(const char *text, int line, va_list ap)
{
	char head[PATH_MAX + 32];
	const char *s;
	int rc;

	memset(&g_cfg, 0xa5, sizeof(g_cfg));
	rc = load_text(text);
	snprintf(head, sizeof(head), "%s:%d: ", g_path, line);
	if (rc != -EINVAL || strncmp(g_err, head, strlen(head)))
		print_message("rc %d, want \"%s...\", got: %s\n", rc, head, g_err);
	assert_int_equal(rc, -EINVAL);
	assert_int_equal(strncmp(g_err, head, strlen(head)), 0);
#ifdef TEST_CONFIG_SHOW
	print_message("%s\n", g_err);
#endif
	while ((s = va_arg(ap, const char *)) != NULL) {
		if (strstr(g_err, s) == NULL)
			print_message("\"%s\" not in: %s\n", s, g_err);
		assert_non_null(strstr(g_err, s));
	}
	assert_true(all_zero(&g_cfg, sizeof(g_cfg)));
}

static void expect_error(const char *text, int line, ...)
{
	va_list ap;

	va_start(ap, line);
	vexpect_error(text, line, ap);
	va_end(ap);
}

/* `base` with the first `from` replaced by `to` must fail as expect_error
 * says: at `line`, with each of the NULL-terminated strings. */
static void expect_edited(const char *base, const char *from, const char *to,
			  int line, ...)
{
	char *t = edit(base, from, to);
	va_list ap;

	va_start(ap, line);
	vexpect_error(t, line, ap);
	va_end(ap);
	free(t);
}

/* BASE with one edit must fail at the line of `at` (in BASE). */
static void expect_edit_error(const char *from, const char *to,
			      const char *at, const char *what)
{
	expect_edited(BASE, from, to, line_at(BASE, at), what, (char *)NULL);
}

/* protect.interval (50ms in BASE) set to `value` must fail with `what`. */
static void expect_interval_error(const char *value, const char *what)
{
	expect_edit_error("\"50ms\"", value, "interval =", what);
}

/* vm.disk-size (64M in BASE) set to `value` must fail with `what`. */
static void expect_disk_size_error(const char *value, const char *what)
{
	expect_edit_error("\"64M\"", value, "disk-size", what);
}

/* `setting` added to the vm group (on a line before disk-size) must fail
 * there with `what`. */
static void expect_vm_setting_error(const char *setting, const char *what)
{
	char to[400];
	int n = snprintf(to, sizeof(to), "  %s;\n  disk-size", setting);

	assert_true(n > 0 && (size_t)n < sizeof(to));
	expect_edit_error("  disk-size", to, "disk-size", what);
}

static int rm_entry(const char *path, const struct stat *st, int flag,
		    struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static int setup(void **state)
{
	(void)state;
	snprintf(g_dir, sizeof(g_dir), "/tmp/test_config.XXXXXX");
	if (mkdtemp(g_dir) == NULL || realpath(g_dir, g_real) == NULL)
		return -1;
	snprintf(g_path, sizeof(g_path), "%s/kv1.conf", g_dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	return nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* g_real + "/" + rel */
static const char *in_dir(char *buf, const char *rel)
{
	int n = snprintf(buf, PATH_MAX, "%s/%s", g_real, rel);

	assert_true(n > 0 && n < PATH_MAX);
	return buf;
}

/* The vm, protect and failover values of a loaded config. */
struct values {
	uint64_t mem_bytes, disk_bytes;
	unsigned vcpus;
	const char *cmdline;
	enum td_mode mode;
	uint32_t interval_us, output_bound_us;
	bool compress;
	uint32_t hb_interval_ms;
	unsigned hb_misses;
	bool auto_promote;
};

/* What a config that sets none of them gets (disk_bytes: no disk). */
static const struct values DEFAULTS = {
	.mem_bytes = 256ULL << 20, .disk_bytes = 0, .vcpus = 1,
	.cmdline = "", .mode = TD_MODE_REMUS, .interval_us = 100000,
	.output_bound_us = 10000, .compress = true, .hb_interval_ms = 100,
	.hb_misses = 5, .auto_promote = false,
};

/* The loaded config holds `v`. */
static void expect_values(const struct values *v)
{
	assert_int_equal(g_cfg.mem_bytes, v->mem_bytes);
	assert_int_equal(g_cfg.vcpus, v->vcpus);
	assert_string_equal(g_cfg.cmdline, v->cmdline);
	assert_int_equal(g_cfg.disk_bytes, v->disk_bytes);
	assert_int_equal(g_cfg.mode, v->mode);
	assert_int_equal(g_cfg.interval_us, v->interval_us);
	assert_int_equal(g_cfg.output_bound_us, v->output_bound_us);
	assert_int_equal(g_cfg.compress, v->compress);
	assert_int_equal(g_cfg.hb_interval_ms, v->hb_interval_ms);
	assert_int_equal(g_cfg.hb_misses, v->hb_misses);
	assert_int_equal(g_cfg.auto_promote, v->auto_promote);
}

/* ---- loading: values ------------------------------------------------------------ */

/* What a loaded host block must hold. */
struct host_want {
	const char *name, *address, *heartbeat, *stream, *control, *disk,
		   *cert, *key, *console;
};

/* The example's hosts, as documented. */
static const struct host_want EXAMPLE_HOSTS[2] = {
	{ "alpha", "10.77.0.1:7790", "10.78.0.1:7791", "10.77.0.1:6379",
	  "/run/tandem/kv1-alpha.sock", "/var/lib/tandem/kv1.img",
	  "/etc/tandem/pki/alpha.crt", "/etc/tandem/pki/alpha.key",
	  "/var/log/tandem/kv1-alpha.console" },
	{ "beta", "10.77.0.2:7790", "10.78.0.2:7791", "10.77.0.2:6379",
	  "/run/tandem/kv1-beta.sock", "/var/lib/tandem/kv1.img",
	  "/etc/tandem/pki/beta.crt", "/etc/tandem/pki/beta.key",
	  "/var/log/tandem/kv1-beta.console" },
};

/* Host h of the loaded config is `want`, its block opening at the line
 * before `name = "NAME"` in text. */
static void expect_host(int h, const struct host_want *want, const char *text)
{
	const struct td_host *got = &g_cfg.host[h];
	char name[TP_NAME_MAX + 16];

	assert_string_equal(got->name, want->name);
	assert_string_equal(got->address, want->address);
	assert_string_equal(got->heartbeat, want->heartbeat);
	assert_string_equal(got->stream, want->stream);
	assert_string_equal(got->control, want->control);
	assert_string_equal(got->disk, want->disk);
	assert_string_equal(got->cert, want->cert);
	assert_string_equal(got->key, want->key);
	assert_string_equal(got->console, want->console);
	snprintf(name, sizeof(name), "name = \"%s\"", want->name);
	assert_int_equal(got->line, line_at(text, name) - 1);
}

/* backend "xen": the xl config describes the domain. */
static const char XEN[] =
	"vm = { name = \"xg\"; backend = \"xen\"; xl-config = \"/etc/xen/xg.cfg\";\n"
	"       memory = \"128M\"; };\n"
	"link = { security = \"insecure\"; };\n"
	"hosts = (\n"
	"  { name = \"a\"; address = \"127.0.0.1:7001\"; control = \"a.sock\"; },\n"
	"  { name = \"b\"; address = \"127.0.0.1:7002\"; control = \"b.sock\"; }\n"
	");\n";

static void test_backend_xen(void **state)
{
	static const struct {
		const char *from, *to;
		int line;
		const char *what;
	} bad[] = {
		{ "\"xen\"", "\"kvm\"", 1, "unknown backend (uvm, xen)" },
		{ "xl-config = \"/etc/xen/xg.cfg\";", "", 1,
		  "required with backend \"xen\"" },
		{ "memory = \"128M\";", "", 1, "memory" },
		{ "memory = \"128M\";", "memory = \"128M\"; image = \"g.elf\";", 2,
		  "not with backend \"xen\"" },
		{ "memory = \"128M\";", "memory = \"128M\"; disk-size = \"1G\";", 2,
		  "not with backend \"xen\"" },
		{ "control = \"a.sock\";", "control = \"a.sock\"; stream = \"127.0.0.1:6001\";",
		  5, "the guest's network is its vif" },
		{ "link = {", "protect = { mode = \"kemari\"; };\nlink = {", 3,
		  "mode \"remus\" only" },
	};

	(void)state;
	load_ok(XEN);
	assert_string_equal(g_cfg.backend, "xen");
	assert_string_equal(g_cfg.xl_config, "/etc/xen/xg.cfg");
	assert_int_equal(g_cfg.mem_bytes, 128ULL << 20);
	assert_string_equal(g_cfg.host[0].stream, "");
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_edited(XEN, bad[i].from, bad[i].to, bad[i].line,
			      bad[i].what, (char *)NULL);
	/* and the uvm side: xl-config belongs to xen, image is required */
	expect_edited(MINIMAL, "image = \"/m.elf\";",
		      "image = \"/m.elf\"; xl-config = \"/x.cfg\";", 1,
		      "only with backend \"xen\"", (char *)NULL);
	load_ok(MINIMAL);
	assert_string_equal(g_cfg.backend, "uvm");
}

static void test_example(void **state)
{
	struct values want = DEFAULTS;
	char dir[PATH_MAX], image[PATH_MAX + 64], *text;
	FILE *f = fopen(EXAMPLE, "r");
	long n;

	(void)state;
	assert_non_null(f);
	text = calloc(1, 65536);
	assert_non_null(text);
	n = (long)fread(text, 1, 65535, f);
	fclose(f);
	assert_true(n > 0);

	assert_int_equal(td_config_load(EXAMPLE, &g_cfg, g_err,
					sizeof(g_err)), 0);
	assert_string_equal(g_cfg.path, EXAMPLE);
	assert_string_equal(g_cfg.vm_name, "kv1");
	assert_non_null(realpath("failover-daemon", dir));
	snprintf(image, sizeof(image), "%s/../build/guests/kvstore.elf", dir);
	assert_string_equal(g_cfg.image, image);
	want.disk_bytes = 64ULL << 20;
	expect_values(&want);
	assert_int_equal(g_cfg.security, TP_SEC_CERT);
	assert_string_equal(g_cfg.ca, "/etc/tandem/pki/ca.crt");
	assert_string_equal(g_cfg.psk_hex, "");
	expect_host(0, &EXAMPLE_HOSTS[0], text);
	expect_host(1, &EXAMPLE_HOSTS[1], text);
	free(text);
}

static void test_defaults(void **state)
{
	char p[PATH_MAX];

	(void)state;
	load_ok(MINIMAL);
	assert_string_equal(g_cfg.path, g_path);
	assert_string_equal(g_cfg.vm_name, "m");
	assert_string_equal(g_cfg.image, "/m.elf");
	expect_values(&DEFAULTS);
	assert_int_equal(g_cfg.security, TP_SEC_INSECURE);
	assert_string_equal(g_cfg.ca, "");
	assert_string_equal(g_cfg.psk_hex, "");
	assert_string_equal(g_cfg.host[0].heartbeat, "");
	assert_string_equal(g_cfg.host[0].disk, "");
	assert_string_equal(g_cfg.host[0].console, "");
	assert_string_equal(g_cfg.host[0].cert, "");
	assert_string_equal(g_cfg.host[1].control, in_dir(p, "b.sock"));
}

/* link.security defaults to cert, which needs a CA. */
static void test_default_security(void **state)
{
	char *t;

	(void)state;
	expect_edited(MINIMAL, "link = { security = \"insecure\"; };\n", "", 1,
		      "link.ca missing", "default", (char *)NULL);
	t = edit(MINIMAL, "security = \"insecure\";", "ca = \"ca.crt\";");
	edit_in(&t, "control = \"a.sock\";", "control = \"a.sock\"; "
		"cert = \"a.crt\"; key = \"a.key\";");
	edit_in(&t, "control = \"b.sock\";", "control = \"b.sock\"; "
		"cert = \"b.crt\"; key = \"b.key\";");
	load_ok(t);
	assert_int_equal(g_cfg.security, TP_SEC_CERT);
	free(t);
}

/* Every explicit value, integers for sizes (bytes) and durations (ms),
 * relative paths against the file's directory. */
static void test_values(void **state)
{
	static const struct values want = {
		.mem_bytes = 32 << 20, .disk_bytes = 1 << 20, .vcpus = 8,
		.cmdline = "quiet x=\"1\"", .mode = TD_MODE_HYBRID,
		.interval_us = 250000, .output_bound_us = 100,
		.compress = false, .hb_interval_ms = 500, .hb_misses = 100,
		.auto_promote = true,
	};
	char p[PATH_MAX], *t = strdup(BASE);

	(void)state;
	edit_in(&t, "  disk-size = \"64M\";\n", "  disk-size = 1048576;\n"
		"  memory = 33554432;\n  vcpus = 8;\n"
		"  cmdline = \"quiet x=\\\"1\\\"\";\n");
	edit_in(&t, "  interval = \"50ms\";\n", "  interval = 250;\n"
		"  output-bound = \"100us\";\n  compress = false;\n");
	edit_in(&t, "  heartbeat-interval = \"200ms\";\n",
		"  heartbeat-interval = \"0.5s\";\n  heartbeat-misses = 100;\n"
		"  auto-promote = true;\n");
	edit_in(&t, "    key = \"pki/beta.key\";\n", "    key = \"pki/beta.key\";\n"
		"    console = \"logs/beta.console\";\n");
	load_ok(t);
	expect_values(&want);
	assert_string_equal(g_cfg.image, in_dir(p, "kvstore.elf"));
	assert_string_equal(g_cfg.ca, in_dir(p, "pki/ca.crt"));
	assert_string_equal(g_cfg.host[0].control, in_dir(p, "alpha.sock"));
	assert_string_equal(g_cfg.host[0].cert, in_dir(p, "pki/alpha.crt"));
	assert_string_equal(g_cfg.host[1].key, in_dir(p, "pki/beta.key"));
	assert_string_equal(g_cfg.host[1].console,
			    in_dir(p, "logs/beta.console"));
	assert_string_equal(g_cfg.host[1].disk, "/var/lib/tandem/kv1.img");
	assert_int_equal(g_cfg.host[0].line, line_at(t, "name = \"alpha\"") - 1);
	free(t);
}

/* @include'd files are found in the config's directory, and named in
 * messages by their full path; a symlinked config's relative paths are
 * taken from the directory of the file it points to. */
static void test_include_and_symlink(void **state)
{
	char p[PATH_MAX], q[PATH_MAX], want[PATH_MAX + 32], *t;
	const char *hosts = strstr(MINIMAL, "hosts = (");

	(void)state;
	assert_int_equal(mkdir(in_dir(p, "sub"), 0700), 0);
	write_file(in_dir(p, "sub/hosts.inc"), hosts);
	t = edit(MINIMAL, hosts, "@include \"hosts.inc\"\n");
	write_file(in_dir(p, "sub/kv2.conf"), t);
	free(t);
	assert_int_equal(symlink(p, in_dir(q, "kv2.conf")), 0);
	assert_int_equal(td_config_load(q, &g_cfg, g_err, sizeof(g_err)), 0);
	assert_string_equal(g_cfg.host[1].control, in_dir(p, "sub/b.sock"));

	t = edit(hosts, "control = \"b.sock\";", "control = \"b.sock\"; "
		 "colour = 1;");
	write_file(in_dir(p, "sub/hosts.inc"), t);
	assert_int_equal(td_config_load(q, &g_cfg, g_err, sizeof(g_err)),
			 -EINVAL);
	snprintf(want, sizeof(want), "%s:%d: hosts[1].colour \"1\"",
		 in_dir(p, "sub/hosts.inc"), line_at(t, "colour"));
	if (strncmp(g_err, want, strlen(want)))
		print_message("want \"%s...\", got: %s\n", want, g_err);
	assert_int_equal(strncmp(g_err, want, strlen(want)), 0);
	free(t);
}

/* ---- loading: errors ----------------------------------------------------------- */

static void test_missing_file(void **state)
{
	char p[PATH_MAX];

	(void)state;
	memset(&g_cfg, 0xa5, sizeof(g_cfg));
	assert_int_equal(td_config_load(in_dir(p, "nope.conf"), &g_cfg, g_err,
					sizeof(g_err)), -ENOENT);
	assert_non_null(strstr(g_err, "nope.conf"));
	assert_true(all_zero(&g_cfg, sizeof(g_cfg)));
}

static void test_syntax_error(void **state)
{
	(void)state;
	expect_edited(BASE, "mode = \"hybrid\";", "mode = ;",
		      line_at(BASE, "mode ="), "syntax error", (char *)NULL);
	/* libconfig refuses a key given twice in one group. */
	expect_edited(BASE, "  interval = \"50ms\";\n",
		      "  interval = \"50ms\";\n  interval = \"60ms\";\n",
		      line_at(BASE, "interval =") + 1, "duplicate",
		      (char *)NULL);
}

static void test_unknown_key_top(void **state)
{
	(void)state;
	expect_edited(BASE, "hosts = (", "colour = \"blue\";\nhosts = (",
		      line_at(BASE, "hosts = ("), "colour \"blue\"",
		      "unknown key", (char *)NULL);
	expect_edited(BASE, "link = {", "links = {", line_at(BASE, "link = {"),
		      "links: unknown key", (char *)NULL);
}

static void test_unknown_key_group(void **state)
{
	static const struct {
		const char *after, *key;
	} at[] = {
		{ "  name = \"kv1\";\n", "vm.colour" },
		{ "  mode = \"hybrid\";\n", "protect.colour" },
		{ "  heartbeat-interval = \"200ms\";\n", "failover.colour" },
		{ "  security = \"cert\";\n", "link.colour" },
	};
	char with[128];
	unsigned i;

	(void)state;
	for (i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
		snprintf(with, sizeof(with), "%s  colour = 7;\n", at[i].after);
		expect_edited(BASE, at[i].after, with,
			      line_at(BASE, at[i].after) + 1, at[i].key,
			      "\"7\": unknown key", (char *)NULL);
	}
}

static void test_unknown_key_host(void **state)
{
	(void)state;
	expect_edited(BASE, "    stream = \"10.77.0.2:6379\";\n",
		      "    stream = \"10.77.0.2:6379\";\n"
		      "    colour = \"blue\";\n",
		      line_at(BASE, "10.77.0.2:6379") + 1,
		      "hosts[1].colour \"blue\": unknown key", "address",
		      (char *)NULL);
}

static void test_bad_unit(void **state)
{
	(void)state;
	expect_interval_error("\"10 parsecs\"", "protect.interval "
			      "\"10 parsecs\": not a duration");
	expect_disk_size_error("\"64 parsecs\"",
			       "vm.disk-size \"64 parsecs\": not a size");
}

static void test_interval_range(void **state)
{
	(void)state;
	expect_interval_error("\"61s\"", "protect.interval \"61s\": "
			      "out of range (1 ms .. 60 s)");
	expect_interval_error("\"999us\"", "\"999us\": out of range");
	expect_interval_error("0", "\"0\": out of range");
	expect_interval_error("\"0.5us\"", "\"0.5us\": not a duration");
	expect_edit_error("\"200ms\"", "\"5ms\"", "heartbeat-interval",
			  "failover.heartbeat-interval \"5ms\": out of range");
	expect_edit_error("\"200ms\"", "\"10.5ms\"", "heartbeat-interval",
			  "not a whole number of milliseconds");
}

static void test_other_ranges(void **state)
{
	char name[80], cmd[320];

	(void)state;
	expect_disk_size_error("\"1000\"",
			       "vm.disk-size \"1000\": not a multiple of 512");
	expect_disk_size_error("\"64 furlongs\"",
			       "\"64 furlongs\": not a size");
	expect_disk_size_error("-512", "\"-512\": must not be negative");
	expect_vm_setting_error("memory = \"8M\"", "vm.memory \"8M\": "
				"out of range (16 MiB .. 64 GiB)");
	expect_vm_setting_error("memory = \"65G\"", "\"65G\": out of range");
	expect_vm_setting_error("memory = 16779264",
				"\"16779264\": not a multiple of 4096");
	expect_vm_setting_error("vcpus = 9",
				"vm.vcpus \"9\": out of range (1 .. 8)");
	expect_vm_setting_error("vcpus = 0", "vm.vcpus \"0\"");
	expect_edit_error("\"200ms\";", "\"200ms\"; heartbeat-misses = 1;",
			  "heartbeat-interval",
			  "failover.heartbeat-misses \"1\": out of range (2 .. 100)");
	expect_edit_error("\"kv1\"", "\"kv 1\"", "name = \"kv1\"",
			  "vm.name \"kv 1\"");
	/* A name of 64 characters, a command line of 256. */
	memset(name, 'n', sizeof(name));
	name[0] = '"';
	snprintf(name + 65, sizeof(name) - 65, "\"");
	expect_edit_error("\"alpha\"", name, "name = \"alpha\"",
			  "hosts[0].name \"nnnn");
	assert_non_null(strstr(g_err, "longer than 63 bytes"));
	memset(cmd, 'c', sizeof(cmd));
	memcpy(cmd, "cmdline = \"", 11);
	snprintf(cmd + 11 + 256, sizeof(cmd) - 11 - 256, "\"");
	expect_vm_setting_error(cmd, "vm.cmdline \"ccc");
	assert_non_null(strstr(g_err, "longer than 255 bytes"));
	/* A unix socket path must fit sun_path once made absolute. */
	memset(name, 's', sizeof(name));
	snprintf(cmd, sizeof(cmd), "\"/%.60s/%.60s\"", name, name);
	expect_edit_error("\"alpha.sock\"", cmd, "alpha.sock",
			  "a unix socket path of 122 bytes");
	assert_non_null(strstr(g_err, "ssss...\": a unix"));
}

static void test_wrong_types(void **state)
{
	(void)state;
	expect_vm_setting_error("vcpus = \"2\"",
				"vm.vcpus \"2\": must be an integer");
	expect_edit_error("\"hybrid\";", "\"hybrid\"; compress = \"yes\";",
			  "mode =", "protect.compress \"yes\": must be true or "
			  "false");
	expect_interval_error("1.5",
			      "protect.interval \"1.5\": must be a duration");
	expect_disk_size_error("true", "vm.disk-size \"true\": must be a size");
	expect_edit_error("\"kv1\"", "17", "name = \"kv1\"",
			  "vm.name \"17\": must be a string");
	expect_edit_error("\"10.77.0.1:7790\"", "[ 1, 2 ]", "10.77.0.1:7790",
			  "hosts[0].address: must be a string");
	expect_edit_error("failover = {\n  heartbeat-interval = \"200ms\";\n};",
			  "failover = 3;", "failover = {",
			  "failover \"3\": must be a group");
}

static void test_bad_mode(void **state)
{
	(void)state;
	expect_edit_error("\"hybrid\"", "\"colo\"", "mode =",
			  "protect.mode \"colo\": unknown mode (remus, kemari, "
			  "hybrid)");
	expect_edit_error("\"cert\"", "\"tls\"", "security =",
			  "link.security \"tls\": unknown security");
}

static void test_one_host(void **state)
{
	const char *alpha_end = strstr(BASE, "  },\n  {\n    name = \"beta\"");
	char *t = malloc(strlen(BASE) + 1);

	(void)state;
	assert_non_null(t);
	/* BASE up to alpha's closing brace, then ");". */
	snprintf(t, strlen(BASE) + 1, "%.*s  }\n);\n", (int)(alpha_end - BASE),
		 BASE);
	expect_error(t, line_at(BASE, "hosts = ("), "hosts \"alpha\": 1 host;",
		     "exactly 2", (char *)NULL);
	free(t);
	t = malloc(strlen(BASE) + 1);
	assert_non_null(t);
	snprintf(t, strlen(BASE) + 1, "%.*shosts = ( );\n",
		 (int)(strstr(BASE, "hosts = (") - BASE), BASE);
	expect_error(t, line_at(BASE, "hosts = ("), "hosts: 0 hosts",
		     (char *)NULL);
	free(t);
	expect_edited(MINIMAL, "hosts", "hostz", line_at(MINIMAL, "hosts"),
		      "hostz", "unknown key", (char *)NULL);
}

static void test_three_hosts(void **state)
{
	char *t = edit(BASE, "    key = \"pki/beta.key\";\n  }\n",
		       "    key = \"pki/beta.key\";\n  },\n"
		       "  { name = \"gamma\"; }\n");

	(void)state;
	expect_error(t, line_at(t, "gamma"), "hosts[2] \"gamma\": 3 hosts",
		     "exactly 2", (char *)NULL);
	free(t);
}

static void test_duplicate_name(void **state)
{
	(void)state;
	expect_edit_error("\"beta\"", "\"alpha\"", "name = \"beta\"",
			  "hosts[1].name \"alpha\": the same as hosts[0]");
}

static void test_duplicate_address(void **state)
{
	char want[64];

	(void)state;
	snprintf(want, sizeof(want), "(line %d)", line_at(BASE, "10.77.0.1:7790"));
	expect_edit_error("\"10.77.0.2:7790\"", "\"10.77.0.1:7790\"",
			  "10.77.0.2:7790", "hosts[1].address \"10.77.0.1:7790\"");
	assert_non_null(strstr(g_err, want));
	expect_edit_error("\"10.78.0.2:7791\"", "\"10.78.0.1:7791\"",
			  "10.78.0.2:7791", "hosts[1].heartbeat \"10.78.0.1:7791\"");
	expect_edit_error("\"beta.sock\"", "\"alpha.sock\"", "beta.sock",
			  "hosts[1].control \"alpha.sock\": the same");
}

/* Two hosts on one machine may share nothing; on two they may share a
 * disk path or a stream port. */
static void test_one_machine(void **state)
{
	char *t;

	(void)state;
	t = edit(MINIMAL, "control = \"b.sock\";",
		 "control = \"b.sock\"; console = \"a.console\";");
	edit_in(&t, "control = \"a.sock\";",
		"control = \"a.sock\"; console = \"a.console\";");
	expect_error(t, line_at(MINIMAL, "b.sock"), "hosts[1].console "
		     "\"a.console\"", "one machine", (char *)NULL);
	free(t);
	/* One port on 127.0.0.1, or on the wildcard and 127.0.0.1. */
	expect_edited(MINIMAL, "127.0.0.1:6002", "127.0.0.1:6001",
		      line_at(MINIMAL, "127.0.0.1:6002"), "hosts[1].stream "
		      "\"127.0.0.1:6001\"", "one machine", (char *)NULL);
	expect_edited(MINIMAL, "127.0.0.1:6002", "0.0.0.0:6001",
		      line_at(MINIMAL, "127.0.0.1:6002"), "hosts[1].stream "
		      "\"0.0.0.0:6001\": clashes with hosts[0] \"a\"",
		      (char *)NULL);
	/* Two addresses on loopback are one machine too. */
	t = edit(MINIMAL, "127.0.0.1:7002", "127.0.0.2:7002");
	edit_in(&t, "127.0.0.1:6002", "127.0.0.2:6001");
	load_ok(t);
	edit_in(&t, "control = \"b.sock\";", "control = \"b.sock\"; "
		"console = \"c\";");
	edit_in(&t, "control = \"a.sock\";", "control = \"a.sock\"; "
		"console = \"c\";");
	expect_error(t, line_at(MINIMAL, "b.sock"), "hosts[1].console \"c\"",
		     (char *)NULL);
	free(t);
	load_ok(MINIMAL);
	/* Two machines: the same disk path (BASE) and wildcard streams. */
	t = edit(BASE, "10.77.0.1:6379", "0.0.0.0:6379");
	edit_in(&t, "10.77.0.2:6379", "0.0.0.0:6379");
	load_ok(t);
	assert_string_equal(g_cfg.host[0].disk, g_cfg.host[1].disk);
	free(t);
}

static void test_bad_hostport(void **state)
{
	static const char *const bad[] = {
		"10.77.0.2", "10.77.0.2:0", "10.77.0.2:65536", ":7790",
		"10.77.0.2:", "10.77.0.2:77a", "::1:7790", "[::1]7790",
		"[::1:7790", "[10.0.0.1]:7790", "10.77.0.300:7790",
		"bad host:7790", "-x:7790", "10.77.0.2:+80", "10.77.0.2:007790",
	};
	static const char *const good[] = {
		"[::1]:7790", "[fe80::1]:1", "beta.example.net:65535",
		"beta:7790", "10.0.0.9:00080",
	};
	char quoted[64], want[80], *t;
	unsigned i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(quoted, sizeof(quoted), "\"%s\"", bad[i]);
		snprintf(want, sizeof(want), "hosts[1].address \"%s\": ", bad[i]);
		expect_edit_error("\"10.77.0.2:7790\"", quoted, "10.77.0.2:7790",
				  want);
	}
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(quoted, sizeof(quoted), "\"%s\"", good[i]);
		t = edit(BASE, "\"10.77.0.2:7790\"", quoted);
		load_ok(t);
		assert_string_equal(g_cfg.host[1].address, good[i]);
		free(t);
	}
	/* stream must be HOST:PORT too; heartbeat may be left out. */
	expect_edit_error("\"10.77.0.1:6379\"", "\"6379\"", "10.77.0.1:6379",
			  "hosts[0].stream \"6379\": expected HOST:PORT");
	t = edit(BASE, "    heartbeat = \"10.78.0.2:7791\";\n", "");
	load_ok(t);
	assert_string_equal(g_cfg.host[1].heartbeat, "");
	free(t);
}

static void test_disk_rules(void **state)
{
	(void)state;
	expect_edited(BASE, "    disk = \"/var/lib/tandem/kv1.img\";\n"
		      "    cert = \"pki/beta.crt\"",
		      "    cert = \"pki/beta.crt\"",
		      line_at(BASE, "name = \"beta\"") - 1,
		      "hosts[1] \"beta\": disk missing", "vm.disk-size",
		      (char *)NULL);
	/* A disk but no disk-size. */
	expect_edited(BASE, "  disk-size = \"64M\";\n", "",
		      line_at(BASE, "disk = ") - 1, "hosts[0].disk "
		      "\"/var/lib/tandem/kv1.img\": the VM has no disk",
		      (char *)NULL);
}

static void test_cert_rules(void **state)
{
	(void)state;
	expect_edited(BASE, "    cert = \"pki/beta.crt\";\n", "",
		      line_at(BASE, "name = \"beta\"") - 1,
		      "hosts[1] \"beta\": cert missing", "\"cert\"",
		      (char *)NULL);
	expect_edited(BASE, "    key = \"pki/alpha.key\";\n", "",
		      line_at(BASE, "name = \"alpha\"") - 1,
		      "hosts[0] \"alpha\": key missing", (char *)NULL);
	expect_edited(BASE, "  ca = \"pki/ca.crt\";\n", "",
		      line_at(BASE, "link = {"), "link: ca missing",
		      (char *)NULL);
	/* In psk mode the certificate keys are errors, not ignored. */
	expect_edited(BASE, "\"cert\";\n  ca = \"pki/ca.crt\";",
		      "\"psk\";\n  psk = \"00112233445566778899aabbccddeeff\";",
		      line_at(BASE, "pki/alpha.crt"), "hosts[0].cert "
		      "\"pki/alpha.crt\": only with link.security \"cert\"",
		      (char *)NULL);
}

/* MINIMAL's link security replaced by `with` must fail on its line (2). */
#define expect_link_error(with, ...) \
	expect_edited(MINIMAL, "\"insecure\";", with, 2, __VA_ARGS__, \
		      (char *)NULL)

static void test_bad_psk(void **state)
{
	char psk[200];

	(void)state;
	snprintf(psk, sizeof(psk), "\"psk\"; psk = \"%.40sZ%.23s\";", PSK,
		 PSK + 41);
	expect_link_error(psk, "link.psk \"<redacted>\": \"Z\" at offset 40 "
			  "is not a hex digit");
	assert_null(strstr(g_err, "0011223344"));
	expect_link_error("\"psk\"; psk = \"abcdef\";",
			  "link.psk \"<redacted>\": 6 hex digits", "32..128");
	assert_null(strstr(g_err, "abcdef"));
	expect_link_error("\"psk\";", "link: psk missing");
	snprintf(psk, sizeof(psk), "\"insecure\"; psk = \"%s\";", PSK);
	expect_link_error(psk, "link.psk \"<redacted>\": only with security "
			  "\"psk\"");
	assert_null(strstr(g_err, "0011223344"));
}

static void test_missing_required(void **state)
{
	(void)state;
	expect_edit_error("  image = \"kvstore.elf\";\n", "", "vm = {",
			  "vm \"kv1\": image missing (required)");
	expect_edited(BASE, "    control = \"alpha.sock\";\n", "",
		      line_at(BASE, "name = \"alpha\"") - 1, "hosts[0] "
		      "\"alpha\": control missing (required)", (char *)NULL);
	expect_edited(MINIMAL, "vm = { name = \"m\"; image = \"/m.elf\"; };\n",
		      "", 1, "vm missing", (char *)NULL);
	expect_edit_error("  image = \"kvstore.elf\";\n", "  image = \"\";\n",
			  "image =", "vm.image \"\": an empty path");
}

/* On failure nothing of the file is left in the config. */
static void test_error_zeroes(void **state)
{
	(void)state;
	load_ok(BASE);
	assert_string_equal(g_cfg.vm_name, "kv1");
	/* expect_edited checks the config is all zero afterwards. */
	expect_edited(BASE, "key = \"pki/beta.key\";", "key = 5;",
		      line_at(BASE, "pki/beta.key"), "hosts[1].key \"5\"",
		      (char *)NULL);
}

/* ---- parsers -------------------------------------------------------------------- */

/* A parser's result for one input: rc, and the value when rc is 0. */
struct parse_case {
	const char *in;
	int rc;
	uint64_t v;
};

/* Every case of the table through `parse` (the value starts as 12345). */
static void expect_parses(int (*parse)(const char *, uint64_t *),
			  const struct parse_case *t, size_t n)
{
	uint64_t v;
	size_t i;
	int rc;

	for (i = 0; i < n; i++) {
		v = 12345;
		rc = parse(t[i].in, &v);
		if (rc != t[i].rc || (!rc && v != t[i].v))
			print_message("\"%s\": rc %d v %llu\n", t[i].in, rc,
				      (unsigned long long)v);
		assert_int_equal(rc, t[i].rc);
		if (!rc)
			assert_true(v == t[i].v);
	}
}

static void test_parse_duration(void **state)
{
	static const struct parse_case t[] = {
		{ "100ms", 0, 100000 }, { "2s", 0, 2000000 }, { "500us", 0, 500 },
		{ "100", 0, 100000 }, { "0.5s", 0, 500000 }, { "1.5ms", 0, 1500 },
		{ "0.001s", 0, 1000 }, { "100 ms", 0, 100000 }, { "0", 0, 0 },
		{ "60s", 0, 60000000 }, { "0.25", 0, 250 }, { "007ms", 0, 7000 },
		{ "1.000001s", 0, 1000001 }, { "2.50000s", 0, 2500000 },
		{ "18446744073709551615us", 0, UINT64_MAX },
		{ "18446744073709.551615s", 0, UINT64_MAX },
		{ "1.0000005s", -EINVAL, 0 }, { "1.5us", -EINVAL, 0 },
		{ "0.0000001s", -EINVAL, 0 },
		{ "1.0000000000000000001s", -EINVAL, 0 },
		{ "1.00000000000000000000000s", 0, 1000000 },
		{ "", -EINVAL, 0 }, { "ms", -EINVAL, 0 }, { "-1ms", -EINVAL, 0 },
		{ "+1ms", -EINVAL, 0 }, { "10 parsecs", -EINVAL, 0 },
		{ "1e3ms", -EINVAL, 0 }, { "1.ms", -EINVAL, 0 },
		{ ".5s", -EINVAL, 0 }, { "5m", -EINVAL, 0 }, { "5MS", -EINVAL, 0 },
		{ " 5ms", -EINVAL, 0 }, { "5ms ", -EINVAL, 0 },
		{ "5mss", -EINVAL, 0 },
		{ "18446744073709551616us", -ERANGE, 0 },
		{ "18446744073709551615ms", -ERANGE, 0 },
		{ "99999999999999999999999s", -ERANGE, 0 },
		{ "18446744073709.551616s", -ERANGE, 0 },
		{ "99999999999999999999999 parsecs", -EINVAL, 0 },
	};

	(void)state;
	expect_parses(td_parse_duration_us, t, sizeof(t) / sizeof(t[0]));
}

static void test_parse_size(void **state)
{
	static const struct parse_case t[] = {
		{ "4096", 0, 4096 }, { "4096B", 0, 4096 }, { "1K", 0, 1024 },
		{ "1k", 0, 1024 }, { "256M", 0, 256ULL << 20 },
		{ "64MiB", 0, 64ULL << 20 }, { "64MB", 0, 64ULL << 20 },
		{ "1G", 0, 1ULL << 30 }, { "1 GiB", 0, 1ULL << 30 },
		{ "1T", 0, 1ULL << 40 }, { "0.5G", 0, 1ULL << 29 },
		{ "1.5K", 0, 1536 }, { "0", 0, 0 },
		{ "0.0001220703125T", 0, 1ULL << 27 },
		{ "16777215T", 0, 16777215ULL << 40 },
		{ "18446744073709551615", 0, UINT64_MAX },
		{ "0.1K", -EINVAL, 0 }, { "", -EINVAL, 0 }, { "M", -EINVAL, 0 },
		{ "1KiBs", -EINVAL, 0 }, { "1Ki", -EINVAL, 0 },
		{ "1P", -EINVAL, 0 }, { "-1", -EINVAL, 0 }, { "1mb", -EINVAL, 0 },
		{ "1X", -EINVAL, 0 }, { "1.5", -EINVAL, 0 }, { "1b", -EINVAL, 0 },
		{ "16777216T", -ERANGE, 0 },
		{ "18446744073709551616", -ERANGE, 0 },
		{ "17179869184G", -ERANGE, 0 },
	};

	(void)state;
	expect_parses(td_parse_size, t, sizeof(t) / sizeof(t[0]));
}

static void test_mode_names(void **state)
{
	enum td_mode m;

	(void)state;
	assert_string_equal(td_mode_name(TD_MODE_REMUS), "remus");
	assert_string_equal(td_mode_name(TD_MODE_KEMARI), "kemari");
	assert_string_equal(td_mode_name(TD_MODE_HYBRID), "hybrid");
	assert_string_equal(td_mode_name((enum td_mode)7), "unknown");
	assert_int_equal(td_mode_parse("kemari", &m), 0);
	assert_int_equal(m, TD_MODE_KEMARI);
	assert_int_equal(td_mode_parse("hybrid", &m), 0);
	assert_int_equal(m, TD_MODE_HYBRID);
	assert_int_equal(td_mode_parse("Remus", &m), -EINVAL);
	assert_int_equal(td_mode_parse("", &m), -EINVAL);
}

/* ---- using a config ------------------------------------------------------------ */

/* td_config_link for host `self` must succeed: a TCP link with security
 * `sec` from `local` to `peer`. */
static void expect_link(int self, struct tp_config *tp, enum tp_security sec,
			const char *local, const char *peer)
{
	assert_int_equal(td_config_link(&g_cfg, self, tp, g_err,
					sizeof(g_err)), 0);
	assert_int_equal(tp->kind, TP_KIND_TCP);
	assert_int_equal(tp->security, sec);
	assert_string_equal(tp->local_name, local);
	assert_string_equal(tp->peer_name, peer);
}

static void test_self(void **state)
{
	char sys[256], *dot, want[300], *t;
	int self = 7;

	(void)state;
	load_ok(BASE);
	assert_int_equal(td_config_self(&g_cfg, "beta", &self, g_err,
					sizeof(g_err)), 0);
	assert_int_equal(self, 1);
	assert_int_equal(td_config_self(&g_cfg, "alpha", &self, g_err,
					sizeof(g_err)), 0);
	assert_int_equal(self, 0);
	assert_int_equal(td_config_self(&g_cfg, "gamma", &self, g_err,
					sizeof(g_err)), -ENOENT);
	assert_non_null(strstr(g_err, g_path));
	assert_non_null(strstr(g_err, "\"gamma\""));
	assert_non_null(strstr(g_err, "\"alpha\", \"beta\""));
	assert_int_equal(td_config_self(&g_cfg, "Alpha", &self, g_err,
					sizeof(g_err)), -ENOENT);

	/* NULL: the system's host name, or its first label. */
	assert_int_equal(gethostname(sys, sizeof(sys)), 0);
	if ((dot = strchr(sys, '.')))
		*dot = '\0';
	if (strspn(sys, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		   "0123456789._-") != strlen(sys) || !strcmp(sys, "beta") ||
	    !strcmp(sys, "alpha") || !*sys || strlen(sys) >= TP_NAME_MAX) {
		print_message("note: host name \"%s\" unusable, NULL case "
			      "skipped\n", sys);
		return;
	}
	assert_int_equal(td_config_self(&g_cfg, NULL, &self, g_err,
					sizeof(g_err)), -ENOENT);
	snprintf(want, sizeof(want), "\"%s\"", sys);
	assert_non_null(strstr(g_err, want));
	assert_non_null(strstr(g_err, "system's host name"));
	t = edit(BASE, "\"alpha\"", want);
	load_ok(t);
	self = 7;
	assert_int_equal(td_config_self(&g_cfg, NULL, &self, g_err,
					sizeof(g_err)), 0);
	assert_int_equal(self, 0);
	free(t);
}

static void test_link_psk(void **state)
{
	char psk[200], *t;
	struct tp_config tp;
	unsigned i;

	(void)state;
	snprintf(psk, sizeof(psk), "\"psk\"; psk = \"0x%s\";", PSK);
	t = edit(MINIMAL, "\"insecure\";", psk);
	load_ok(t);
	assert_int_equal(g_cfg.security, TP_SEC_PSK);
	assert_string_equal(g_cfg.psk_hex, PSK);
	memset(&tp, 0xa5, sizeof(tp));
	expect_link(1, &tp, TP_SEC_PSK, "b", "a");
	assert_string_equal(tp.psk_identity, "m");
	assert_int_equal(tp.psk_len, 32);
	for (i = 0; i < 32; i++)
		assert_int_equal(tp.psk[i], (i % 16) * 0x11);
	assert_null(tp.ca_file);
	assert_null(tp.cert_file);
	assert_int_equal(tp.nr_bulk, 1);
	assert_int_equal(tp.features, TP_FEAT_PAGE_CODECS);
	assert_int_equal(tp_config_check(&tp, g_err, sizeof(g_err)), 0);
	free(t);
}

static void test_link_insecure_and_cert(void **state)
{
	struct tp_config tp;

	(void)state;
	load_ok(MINIMAL);
	expect_link(0, &tp, TP_SEC_INSECURE, "a", "b");
	assert_int_equal(tp.psk_len, 0);
	assert_int_equal(tp.nr_bulk, 1);
	assert_int_equal(td_config_link(&g_cfg, 2, &tp, g_err, sizeof(g_err)),
			 -EINVAL);
	assert_int_equal(td_config_link(&g_cfg, -1, &tp, g_err, sizeof(g_err)),
			 -EINVAL);

	/* cert: the file names point into the config. */
	load_ok(BASE);
	expect_link(1, &tp, TP_SEC_CERT, "beta", "alpha");
	assert_ptr_equal(tp.ca_file, g_cfg.ca);
	assert_ptr_equal(tp.cert_file, g_cfg.host[1].cert);
	assert_ptr_equal(tp.key_file, g_cfg.host[1].key);
	/* tp_config_check's refusal comes back as the error. */
	g_cfg.host[0].name[0] = '\0';
	assert_int_equal(td_config_link(&g_cfg, 1, &tp, g_err, sizeof(g_err)),
			 -EINVAL);
	assert_non_null(strstr(g_err, g_path));
	assert_non_null(strstr(g_err, "peer_name"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_example),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_default_security),
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_include_and_symlink),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_syntax_error),
		cmocka_unit_test(test_unknown_key_top),
		cmocka_unit_test(test_unknown_key_group),
		cmocka_unit_test(test_unknown_key_host),
		cmocka_unit_test(test_bad_unit),
		cmocka_unit_test(test_interval_range),
		cmocka_unit_test(test_other_ranges),
		cmocka_unit_test(test_wrong_types),
		cmocka_unit_test(test_bad_mode),
		cmocka_unit_test(test_one_host),
		cmocka_unit_test(test_three_hosts),
		cmocka_unit_test(test_duplicate_name),
		cmocka_unit_test(test_duplicate_address),
		cmocka_unit_test(test_one_machine),
		cmocka_unit_test(test_bad_hostport),
		cmocka_unit_test(test_disk_rules),
		cmocka_unit_test(test_cert_rules),
		cmocka_unit_test(test_bad_psk),
		cmocka_unit_test(test_missing_required),
		cmocka_unit_test(test_error_zeroes),
		cmocka_unit_test(test_parse_duration),
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_mode_names),
		cmocka_unit_test(test_self),
		cmocka_unit_test(test_link_psk),
		cmocka_unit_test(test_link_insecure_and_cert),
		cmocka_unit_test(test_backend_xen),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
