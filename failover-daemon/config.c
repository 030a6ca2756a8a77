/*
 * config.c - the protection config of one VM (config.h, docs/config.md).
 *
 * libconfig parses the file; everything else is here.  Loading runs in
 * two passes over libconfig's tree:
 *  1. every setting in file order: its key must be known in its group,
 *     its type right and its value in range (the rule tables below);
 *  2. the whole: required keys, keys that depend on others (disk on
 *     vm.disk-size, cert/key/ca/psk on link.security), exactly two hosts,
 *     and what the two hosts must not share.
 * The first error stops loading; its message is
 *   FILE:LINE: KEY "VALUE": REASON
 * with KEY a path like protect.interval or hosts[1].address.  A PSK is
 * never quoted: messages say where it is wrong, not what it is.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libconfig.h>

#define QUOTE_MAX 80          /* characters of a value quoted in a message */
#define QUOTE_BUF (4 * QUOTE_MAX + 8)  /* escaped, with "..." */
#define KEY_MAX 128           /* a setting's path, "hosts[1].heartbeat" */
#define HOSTNAME_MAX 256
#define DISK_MAX ((uint64_t)INT64_MAX & ~(uint64_t)511)

/* ---- values: durations, sizes, names, addresses --------------------------- */

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Scale of a duration unit in microseconds; "" is milliseconds. */
static int dur_unit(const char *u, uint64_t *scale)
{
	if (!strcmp(u, "us"))
		*scale = 1;
	else if (!strcmp(u, "ms") || !*u)
		*scale = 1000;
	else if (!strcmp(u, "s"))
		*scale = 1000000;
	else
		return -EINVAL;
	return 0;
}

/* Scale of a size unit: "", B, or K/M/G/T (either case) with "", iB, B. */
static int size_unit(const char *u, uint64_t *scale)
{
	static const char letters[] = "kmgt";
	const char *l;

	if (!*u || !strcmp(u, "B")) {
		*scale = 1;
		return 0;
	}
	l = memchr(letters, u[0] | 0x20, 4);
	if (!l || (strcmp(u + 1, "") && strcmp(u + 1, "iB") &&
		   strcmp(u + 1, "B")))
		return -EINVAL;
	*scale = 1ULL << (10 * (l - letters + 1));
	return 0;
}

static uint64_t gcd(uint64_t a, uint64_t b)
{
	while (b) {
		uint64_t t = a % b;

		a = b;
		b = t;
	}
	return a;
}

/*
 * DIGITS[.DIGITS][ ]*UNIT, the unit's scale applied exactly: a fraction
 * must come out whole.  -EINVAL for bad syntax or unit, -ERANGE when the
 * result does not fit 64 bits.
 */
static int parse_scaled(const char *s, int (*unit)(const char *, uint64_t *),
			uint64_t *out)
{
	uint64_t whole = 0, frac = 0, scale, pow10 = 1, v, g;
	bool over = false;
	const char *p = s;

	if (!is_digit(*p))
		return -EINVAL;
	for (; is_digit(*p); p++) {
		if (whole > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
			over = true;
		else
			whole = whole * 10 + (uint64_t)(*p - '0');
	}
	if (*p == '.') {
		if (!is_digit(*++p))
			return -EINVAL;
		for (; is_digit(*p); p++) {
			if (pow10 > UINT64_MAX / 100) {
				if (*p != '0')
					return -EINVAL; /* below 1e-18 */
				continue;
			}
			frac = frac * 10 + (uint64_t)(*p - '0');
			pow10 *= 10;
		}
	}
	while (*p == ' ')
		p++;
	if (unit(p, &scale))
		return -EINVAL;
	if (over || __builtin_mul_overflow(whole, scale, &v))
		return -ERANGE;
	/* frac / pow10 * scale, exactly: reduce by gcd(scale, pow10) first,
	 * then what is left of pow10 must divide frac. */
	g = gcd(scale, pow10);
	if (frac % (pow10 / g))
		return -EINVAL; /* finer than the base unit */
	if (__builtin_mul_overflow(frac / (pow10 / g), scale / g, &frac) ||
	    __builtin_add_overflow(v, frac, &v))
		return -ERANGE;
	*out = v;
	return 0;
}

int td_parse_duration_us(const char *s, uint64_t *out)
{
	return parse_scaled(s, dur_unit, out);
}

int td_parse_size(const char *s, uint64_t *out)
{
	return parse_scaled(s, size_unit, out);
}

static const char *const mode_names[] = {
	[TD_MODE_REMUS] = "remus",
	[TD_MODE_KEMARI] = "kemari",
	[TD_MODE_HYBRID] = "hybrid",
};

const char *td_mode_name(enum td_mode mode)
{
	if ((unsigned)mode >= sizeof(mode_names) / sizeof(mode_names[0]))
		return "unknown";
	return mode_names[mode];
}

int td_mode_parse(const char *s, enum td_mode *out)
{
	unsigned i;

	for (i = 0; i < sizeof(mode_names) / sizeof(mode_names[0]); i++)
		if (!strcmp(s, mode_names[i])) {
			*out = (enum td_mode)i;
			return 0;
		}
	return -EINVAL;
}

static int security_parse(const char *s, enum tp_security *out)
{
	static const enum tp_security all[] = { TP_SEC_CERT, TP_SEC_PSK,
						TP_SEC_INSECURE };
	unsigned i;

	for (i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if (!strcmp(s, tp_security_name(all[i]))) {
			*out = all[i];
			return 0;
		}
	return -EINVAL;
}

/* VM and host names: 1..63 of [A-Za-z0-9._-] (within link_name_ok). */
static bool name_ok(const char *s)
{
	size_t n = strlen(s), i;

	if (n == 0 || n >= TP_NAME_MAX)
		return false;
	for (i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		      (s[i] >= 'A' && s[i] <= 'Z') || is_digit(s[i]) ||
		      s[i] == '.' || s[i] == '_' || s[i] == '-'))
			return false;
	return true;
}

static bool hostname_ok(const char *h)
{
	size_t i, n = strlen(h);

	if (n > 253 || h[0] == '-' || h[0] == '.')
		return false;
	for (i = 0; i < n; i++)
		if (!((h[i] >= 'a' && h[i] <= 'z') ||
		      (h[i] >= 'A' && h[i] <= 'Z') || is_digit(h[i]) ||
		      h[i] == '.' || h[i] == '_' || h[i] == '-'))
			return false;
	return true;
}

/*
 * Splits HOST:PORT or [IPv6]:PORT and checks both halves.  0, or -EINVAL
 * with the reason in why.
 */
static int addr_split(const char *a, char host[TD_ADDR_MAX], unsigned *port,
		      char *why, size_t whylen)
{
	const char *h = a, *colon, *p;
	size_t hl;
	unsigned long v = 0;
	uint8_t bin[16];

	if (a[0] == '[') {
		colon = strchr(a, ']');
		if (!colon || colon[1] != ':')
			goto form;
		h = a + 1;
		hl = (size_t)(colon - h);
		colon++;
	} else {
		colon = strrchr(a, ':');
		if (!colon)
			goto form;
		hl = (size_t)(colon - a);
		if (memchr(a, ':', hl)) {
			snprintf(why, whylen, "an IPv6 address needs brackets: "
				 "[ADDRESS]:PORT");
			return -EINVAL;
		}
	}
	if (hl == 0 || hl >= TD_ADDR_MAX) {
		snprintf(why, whylen, "expected HOST:PORT with a host");
		return -EINVAL;
	}
	memcpy(host, h, hl);
	host[hl] = '\0';
	p = colon + 1;
	if (!is_digit(*p) || strlen(p) > 5)
		goto port;
	for (; is_digit(*p); p++)
		v = v * 10 + (unsigned long)(*p - '0');
	if (*p || v < 1 || v > 65535)
		goto port;
	*port = (unsigned)v;
	if (a[0] == '[') {
		if (inet_pton(AF_INET6, host, bin) != 1)
			goto bad_host;
	} else if (strspn(host, "0123456789.") == hl) {
		if (inet_pton(AF_INET, host, bin) != 1)
			goto bad_host;
	} else if (!hostname_ok(host)) {
		goto bad_host;
	}
	return 0;
form:
	snprintf(why, whylen, "expected HOST:PORT or [IPv6]:PORT");
	return -EINVAL;
port:
	snprintf(why, whylen, "port must be a number 1..65535");
	return -EINVAL;
bad_host:
	snprintf(why, whylen, "the host is not an IPv4 address, a "
		 "bracketed IPv6 address or a host name");
	return -EINVAL;
}

/* ---- messages --------------------------------------------------------------- */

/* s for a message: printable ASCII as is, '"' and '\' escaped, the rest
 * as \xNN, cut at QUOTE_MAX characters with "...". */
static const char *quote(const char *s, char *out, size_t len)
{
	size_t o = 0, i;

	for (i = 0; s[i] && o + 8 < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (i == QUOTE_MAX) {
			memcpy(out + o, "...", 3);
			o += 3;
			break;
		}
		if (c == '"' || c == '\\')
			o += (size_t)snprintf(out + o, len - o, "\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			o += (size_t)snprintf(out + o, len - o, "\\x%02x", c);
		else
			out[o++] = (char)c;
	}
	out[o] = '\0';
	return out;
}

/* The setting's value as message text; false for groups and lists. */
static bool value_text(const config_setting_t *s, char *buf, size_t len)
{
	switch (config_setting_type(s)) {
	case CONFIG_TYPE_STRING:
		quote(config_setting_get_string(s), buf, len);
		return true;
	case CONFIG_TYPE_INT:
		snprintf(buf, len, "%d", config_setting_get_int(s));
		return true;
	case CONFIG_TYPE_INT64:
		snprintf(buf, len, "%lld", config_setting_get_int64(s));
		return true;
	case CONFIG_TYPE_FLOAT:
		snprintf(buf, len, "%g", config_setting_get_float(s));
		return true;
	case CONFIG_TYPE_BOOL:
		snprintf(buf, len, "%s", config_setting_get_bool(s) ? "true"
								   : "false");
		return true;
	}
	return false;
}

/* "protect.interval", "hosts[1].address"; "" for the root. */
static void key_path(const config_setting_t *s, char *buf, size_t len)
{
	const config_setting_t *parent = config_setting_parent(s);
	size_t n;

	buf[0] = '\0';
	if (!parent)
		return;
	key_path(parent, buf, len);
	n = strlen(buf);
	if (config_setting_is_list(parent) || config_setting_is_array(parent))
		snprintf(buf + n, len - n, "[%d]", config_setting_index(s));
	else
		snprintf(buf + n, len - n, "%s%s", n ? "." : "",
			 config_setting_name(s));
}

/* One load: the result, libconfig's tree and where things are in it. */
struct ld {
	struct td_config *cfg;
	config_t lc;
	const char *path;
	char dir[PATH_MAX];               /* the file's directory, absolute */
	const config_setting_t *vm, *protect, *failover, *link, *hosts;
	const config_setting_t *host[2];
	char *err;
	size_t errlen;
};

/* A file name from libconfig for a message: the config's path as given;
 * an @include'd file's name made absolute as libconfig resolved it. */
static const char *file_of(const struct ld *ld, const char *f, char *buf,
			   size_t len)
{
	if (!f || !strcmp(f, ld->path) || f[0] == '/')
		return f ? f : ld->path;
	if ((size_t)snprintf(buf, len, "%s/%s", ld->dir, f) >= len)
		return f;
	return buf;
}

static unsigned line_of(const config_setting_t *s)
{
	unsigned line = s ? config_setting_source_line(s) : 0;

	return line ? line : 1;
}

static int msg(struct ld *ld, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int msg(struct ld *ld, const char *fmt, ...)
{
	va_list ap;

	if (ld->err && ld->errlen) {
		va_start(ap, fmt);
		vsnprintf(ld->err, ld->errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

static int vfail(struct ld *ld, const config_setting_t *s, const char *val,
		 const char *fmt, va_list ap)
{
	char key[KEY_MAX], why[TD_CONFIG_ERR_MAX], buf[PATH_MAX];
	const char *file = file_of(ld, config_setting_source_file(s), buf,
				   sizeof(buf));

	vsnprintf(why, sizeof(why), fmt, ap);
	key_path(s, key, sizeof(key));
	if (val)
		return msg(ld, "%s:%u: %s \"%s\": %s", file, line_of(s), key,
			   val, why);
	return msg(ld, "%s:%u: %s: %s", file, line_of(s), key, why);
}

static int fail(struct ld *ld, const config_setting_t *s, const char *fmt,
		...) __attribute__((format(printf, 3, 4)));
static int fail_as(struct ld *ld, const config_setting_t *s, const char *val,
		   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* "FILE:LINE: KEY "VALUE": reason" about setting s; -EINVAL. */
static int fail(struct ld *ld, const config_setting_t *s, const char *fmt,
		...)
{
	char val[QUOTE_BUF];
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = vfail(ld, s, value_text(s, val, sizeof(val)) ? val : NULL, fmt,
		   ap);
	va_end(ap);
	return rc;
}

/* The same with val quoted instead of the setting's value (NULL: none). */
static int fail_as(struct ld *ld, const config_setting_t *s, const char *val,
		   const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = vfail(ld, s, val, fmt, ap);
	va_end(ap);
	return rc;
}

/* "16 MiB", "1 GiB", "4097 bytes" */
static const char *size_text(uint64_t v, char *buf, size_t len)
{
	static const char *const units[] = { "TiB", "GiB", "MiB", "KiB" };
	unsigned i;

	for (i = 0; i < 4 && v; i++)
		if (!(v % (1ULL << (10 * (4 - i))))) {
			snprintf(buf, len, "%llu %s", (unsigned long long)
				 (v >> (10 * (4 - i))), units[i]);
			return buf;
		}
	snprintf(buf, len, "%llu bytes", (unsigned long long)v);
	return buf;
}

/* "60 s", "10 ms", "100 us" */
static const char *dur_text(uint64_t us, char *buf, size_t len)
{
	if (us && !(us % 1000000))
		snprintf(buf, len, "%llu s", (unsigned long long)(us / 1000000));
	else if (us && !(us % 1000))
		snprintf(buf, len, "%llu ms", (unsigned long long)(us / 1000));
	else
		snprintf(buf, len, "%llu us", (unsigned long long)us);
	return buf;
}

/* ---- pass 1: the rule of every key ------------------------------------------- */

enum kind {
	K_NAME,      /* name_ok() */
	K_STR,       /* any string that fits */
	K_PATH,      /* relative to the file's directory */
	K_SOCK,      /* a path that must fit sun_path */
	K_ADDR,      /* HOST:PORT */
	K_SIZE,      /* uint64_t bytes: integer or "256M" */
	K_DUR_US,    /* uint32_t microseconds: integer ms or "100ms" */
	K_DUR_MS,    /* uint32_t milliseconds, the same input */
	K_UINT,      /* unsigned */
	K_BOOL,
	K_MODE,
	K_SECURITY,
	K_PSK,
};

struct rule {
	const char *key;
	enum kind kind;
	size_t off, size;        /* the field in td_config or td_host */
	uint64_t min, max;       /* sizes, durations (us), integers */
	uint64_t align;          /* sizes */
};

#define CF(f) .off = offsetof(struct td_config, f), \
	      .size = sizeof(((struct td_config *)0)->f)
#define HF(f) .off = offsetof(struct td_host, f), \
	      .size = sizeof(((struct td_host *)0)->f)
#define MS 1000ULL
#define SEC 1000000ULL

static const struct rule vm_rules[] = {
	{ .key = "name", .kind = K_NAME, CF(vm_name) },
	{ .key = "backend", .kind = K_STR, CF(backend) },
	{ .key = "image", .kind = K_PATH, CF(image) },
	{ .key = "xl-config", .kind = K_PATH, CF(xl_config) },
	{ .key = "memory", .kind = K_SIZE, CF(mem_bytes), .min = 16ULL << 20,
	  .max = 64ULL << 30, .align = 4096 },
	{ .key = "vcpus", .kind = K_UINT, CF(vcpus), .min = 1, .max = 8 },
	{ .key = "cmdline", .kind = K_STR, CF(cmdline) },
	{ .key = "disk-size", .kind = K_SIZE, CF(disk_bytes), .min = 0,
	  .max = DISK_MAX, .align = 512 },
};

static const struct rule protect_rules[] = {
	{ .key = "mode", .kind = K_MODE, CF(mode) },
	{ .key = "interval", .kind = K_DUR_US, CF(interval_us), .min = 1 * MS,
	  .max = 60 * SEC },
	{ .key = "output-bound", .kind = K_DUR_US, CF(output_bound_us),
	  .min = 100, .max = 10 * SEC },
	{ .key = "compress", .kind = K_BOOL, CF(compress) },
};

static const struct rule failover_rules[] = {
	{ .key = "heartbeat-interval", .kind = K_DUR_MS, CF(hb_interval_ms),
	  .min = 10 * MS, .max = 10 * SEC },
	{ .key = "heartbeat-misses", .kind = K_UINT, CF(hb_misses), .min = 2,
	  .max = 100 },
	{ .key = "auto-promote", .kind = K_BOOL, CF(auto_promote) },
};

static const struct rule link_rules[] = {
	{ .key = "security", .kind = K_SECURITY, CF(security) },
	{ .key = "ca", .kind = K_PATH, CF(ca) },
	{ .key = "psk", .kind = K_PSK, CF(psk_hex) },
};

static const struct rule host_rules[] = {
	{ .key = "name", .kind = K_NAME, HF(name) },
	{ .key = "address", .kind = K_ADDR, HF(address) },
	{ .key = "listen", .kind = K_ADDR, HF(listen) },
	{ .key = "heartbeat", .kind = K_ADDR, HF(heartbeat) },
	{ .key = "stream", .kind = K_ADDR, HF(stream) },
	{ .key = "control", .kind = K_SOCK, HF(control) },
	{ .key = "disk", .kind = K_PATH, HF(disk) },
	{ .key = "cert", .kind = K_PATH, HF(cert) },
	{ .key = "key", .kind = K_PATH, HF(key) },
	{ .key = "console", .kind = K_PATH, HF(console) },
};

#define RULES(r) r, sizeof(r) / sizeof(r[0])

static int want_string(struct ld *ld, const config_setting_t *s,
		       const char **out)
{
	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return fail(ld, s, "must be a string");
	*out = config_setting_get_string(s);
	return 0;
}

/* An integer setting as an unsigned; -EINVAL unless it is one. */
static int want_uint(struct ld *ld, const config_setting_t *s, uint64_t *out)
{
	long long v;

	if (config_setting_type(s) != CONFIG_TYPE_INT &&
	    config_setting_type(s) != CONFIG_TYPE_INT64)
		return fail(ld, s, "must be an integer");
	v = config_setting_get_int64(s);
	if (v < 0)
		return fail(ld, s, "must not be negative");
	*out = (uint64_t)v;
	return 0;
}

static int set_string(struct ld *ld, const struct rule *r,
		      const config_setting_t *s, char *dst)
{
	const char *v = "";
	int rc = want_string(ld, s, &v);

	if (rc)
		return rc;
	if (strlen(v) >= r->size)
		return fail(ld, s, "longer than %zu bytes", r->size - 1);
	if (r->kind == K_NAME && !name_ok(v))
		return fail(ld, s, "a name is 1..%d characters of A-Z a-z 0-9 "
			    ". _ -", TP_NAME_MAX - 1);
	strcpy(dst, v);
	return 0;
}

static int set_addr(struct ld *ld, const struct rule *r,
		    const config_setting_t *s, char *dst)
{
	char host[TD_ADDR_MAX], why[TD_CONFIG_ERR_MAX];
	unsigned port;
	int rc = set_string(ld, r, s, dst);

	if (rc)
		return rc;
	if (addr_split(dst, host, &port, why, sizeof(why)))
		return fail(ld, s, "%s", why);
	return 0;
}

/* A relative path is taken relative to the file's directory. */
static int set_path(struct ld *ld, const struct rule *r,
		    const config_setting_t *s, char *dst)
{
	const char *v = "";
	int n, rc = want_string(ld, s, &v);

	if (rc)
		return rc;
	if (!*v)
		return fail(ld, s, "an empty path (leave the key out instead)");
	if (v[0] == '/')
		n = snprintf(dst, r->size, "%s", v);
	else
		n = snprintf(dst, r->size, "%s/%s", ld->dir, v);
	if (n < 0 || (size_t)n >= r->size) {
		dst[0] = '\0';
		return fail(ld, s, "%s of %d bytes%s is longer than %zu",
			    r->kind == K_SOCK ? "a unix socket path" : "a path",
			    n, v[0] == '/' ? "" : " (relative to the config's "
			    "directory)", r->size - 1);
	}
	return 0;
}

static int set_size(struct ld *ld, const struct rule *r,
		    const config_setting_t *s, uint64_t *dst)
{
	char lo[32], hi[32];
	uint64_t v = 0;
	int rc;

	if (config_setting_type(s) == CONFIG_TYPE_STRING) {
		rc = td_parse_size(config_setting_get_string(s), &v);
		if (rc == -ERANGE)
			return fail(ld, s, "too large");
		if (rc)
			return fail(ld, s, "not a size (bytes, or a number "
				    "with K, M, G or T, optionally + iB or B)");
	} else if (config_setting_type(s) == CONFIG_TYPE_INT ||
		   config_setting_type(s) == CONFIG_TYPE_INT64) {
		rc = want_uint(ld, s, &v);
		if (rc)
			return rc;
	} else {
		return fail(ld, s, "must be a size: a string like \"256M\" or "
			    "an integer (bytes)");
	}
	if (v < r->min || v > r->max)
		return fail(ld, s, "out of range (%s .. %s)",
			    size_text(r->min, lo, sizeof(lo)),
			    size_text(r->max, hi, sizeof(hi)));
	if (v % r->align)
		return fail(ld, s, "not a multiple of %llu bytes",
			    (unsigned long long)r->align);
	*dst = v;
	return 0;
}

static int set_dur(struct ld *ld, const struct rule *r,
		   const config_setting_t *s, uint32_t *dst)
{
	char lo[32], hi[32];
	uint64_t v = 0;
	int rc;

	if (config_setting_type(s) == CONFIG_TYPE_STRING) {
		rc = td_parse_duration_us(config_setting_get_string(s), &v);
		if (rc == -ERANGE)
			return fail(ld, s, "too large");
		if (rc)
			return fail(ld, s, "not a duration: a number with a "
				    "unit (us, ms, s), whole microseconds");
	} else if (config_setting_type(s) == CONFIG_TYPE_INT ||
		   config_setting_type(s) == CONFIG_TYPE_INT64) {
		rc = want_uint(ld, s, &v);
		if (rc)
			return rc;
		if (__builtin_mul_overflow(v, MS, &v))
			return fail(ld, s, "too large");
	} else {
		return fail(ld, s, "must be a duration: a string like "
			    "\"100ms\" or an integer (milliseconds)");
	}
	if (v < r->min || v > r->max)
		return fail(ld, s, "out of range (%s .. %s)",
			    dur_text(r->min, lo, sizeof(lo)),
			    dur_text(r->max, hi, sizeof(hi)));
	if (r->kind == K_DUR_MS && v % MS)
		return fail(ld, s, "not a whole number of milliseconds");
	*dst = (uint32_t)(r->kind == K_DUR_MS ? v / MS : v);
	return 0;
}

static int set_uint(struct ld *ld, const struct rule *r,
		    const config_setting_t *s, unsigned *dst)
{
	uint64_t v = 0;
	int rc = want_uint(ld, s, &v);

	if (rc)
		return rc;
	if (v < r->min || v > r->max)
		return fail(ld, s, "out of range (%llu .. %llu)",
			    (unsigned long long)r->min,
			    (unsigned long long)r->max);
	*dst = (unsigned)v;
	return 0;
}

static int set_bool(struct ld *ld, const config_setting_t *s, bool *dst)
{
	if (config_setting_type(s) != CONFIG_TYPE_BOOL)
		return fail(ld, s, "must be true or false");
	*dst = config_setting_get_bool(s);
	return 0;
}

static int set_mode(struct ld *ld, const config_setting_t *s,
		    enum td_mode *dst)
{
	const char *v = "";
	int rc = want_string(ld, s, &v);

	if (rc)
		return rc;
	if (td_mode_parse(v, dst))
		return fail(ld, s, "unknown mode (remus, kemari, hybrid)");
	return 0;
}

static int set_security(struct ld *ld, const config_setting_t *s,
			enum tp_security *dst)
{
	const char *v = "";
	int rc = want_string(ld, s, &v);

	if (rc)
		return rc;
	if (security_parse(v, dst))
		return fail(ld, s, "unknown security (cert, psk, insecure)");
	return 0;
}

/* Hex, "0x" optional, 32..2*TP_PSK_MAX digits; stored without "0x".
 * The key is secret: messages never quote it. */
static int set_psk(struct ld *ld, const config_setting_t *s, char *dst)
{
	const char *v;
	size_t n, bad;

	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return fail_as(ld, s, "<redacted>", "must be a string of hex "
			       "digits");
	v = config_setting_get_string(s);
	if (v[0] == '0' && (v[1] == 'x' || v[1] == 'X'))
		v += 2;
	n = strlen(v);
	bad = strspn(v, "0123456789abcdefABCDEF");
	if (bad < n) {
		unsigned char c = (unsigned char)v[bad];

		if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
			return fail_as(ld, s, "<redacted>", "byte 0x%02x at "
				       "offset %zu is not a hex digit", c, bad);
		return fail_as(ld, s, "<redacted>", "\"%c\" at offset %zu is "
			       "not a hex digit", c, bad);
	}
	if (n % 2 || n < 32 || n > 2 * TP_PSK_MAX)
		return fail_as(ld, s, "<redacted>", "%zu hex digits (need an "
			       "even number, 32..%d)", n, 2 * TP_PSK_MAX);
	memcpy(dst, v, n + 1);
	return 0;
}

static int apply(struct ld *ld, const struct rule *r,
		 const config_setting_t *s, void *base)
{
	void *dst = (char *)base + r->off;

	switch (r->kind) {
	case K_NAME:
	case K_STR:
		return set_string(ld, r, s, dst);
	case K_PATH:
	case K_SOCK:
		return set_path(ld, r, s, dst);
	case K_ADDR:
		return set_addr(ld, r, s, dst);
	case K_SIZE:
		return set_size(ld, r, s, dst);
	case K_DUR_US:
	case K_DUR_MS:
		return set_dur(ld, r, s, dst);
	case K_UINT:
		return set_uint(ld, r, s, dst);
	case K_BOOL:
		return set_bool(ld, s, dst);
	case K_MODE:
		return set_mode(ld, s, dst);
	case K_SECURITY:
		return set_security(ld, s, dst);
	case K_PSK:
		return set_psk(ld, s, dst);
	}
	return fail(ld, s, "no rule (internal error)");
}

/* Every member of group g by its rule; unknown keys are errors. */
static int parse_group(struct ld *ld, const config_setting_t *g,
		       const char *what, const struct rule *rules, size_t nr,
		       void *base)
{
	int i, n = config_setting_length(g), rc;
	char known[256];
	size_t j, o;

	for (i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(g, i);
		const char *key = config_setting_name(s);

		for (j = 0; j < nr; j++)
			if (!strcmp(key, rules[j].key))
				break;
		if (j < nr) {
			rc = apply(ld, &rules[j], s, base);
			if (rc)
				return rc;
			continue;
		}
		for (o = 0, j = 0; j < nr && o < sizeof(known); j++)
			o += (size_t)snprintf(known + o, sizeof(known) - o,
					      "%s%s", j ? ", " : "",
					      rules[j].key);
		return fail(ld, s, "unknown key (%s takes: %s)", what, known);
	}
	return 0;
}

/* The name of host block g for messages, or NULL. */
static const char *host_label(const config_setting_t *g, char *buf,
			      size_t len)
{
	const char *name;

	if (!config_setting_is_group(g) ||
	    !config_setting_lookup_string(g, "name", &name))
		return NULL;
	return quote(name, buf, len);
}

static int parse_hosts(struct ld *ld, const config_setting_t *hosts)
{
	int i, n = config_setting_length(hosts), rc;
	char q[QUOTE_BUF];

	if (!config_setting_is_list(hosts))
		return fail(ld, hosts, "must be a list of two host blocks: "
			    "( { ... }, { ... } )");
	if (n > 2)
		return fail_as(ld, config_setting_get_elem(hosts, 2),
			       host_label(config_setting_get_elem(hosts, 2), q,
					  sizeof(q)),
			       "%d hosts; exactly 2 (this host and its peer)",
			       n);
	if (n < 2) {
		const char *one = n ? host_label(config_setting_get_elem(
					hosts, 0), q, sizeof(q)) : NULL;

		return fail_as(ld, hosts, one, "%d host%s; exactly 2 (this "
			       "host and its peer)", n, n ? "" : "s");
	}
	for (i = 0; i < n; i++) {
		const config_setting_t *h = config_setting_get_elem(hosts, i);

		if (!config_setting_is_group(h))
			return fail(ld, h, "must be a host block { name = ...; "
				    "... }");
		ld->host[i] = h;
		ld->cfg->host[i].line = (int)line_of(h);
		rc = parse_group(ld, h, "a host", RULES(host_rules),
				 &ld->cfg->host[i]);
		if (rc)
			return rc;
	}
	return 0;
}

static const struct {
	const char *key;
	size_t at;                  /* where struct ld keeps the setting */
	const struct rule *rules;
	size_t nr;
} groups[] = {
	{ "vm", offsetof(struct ld, vm), RULES(vm_rules) },
	{ "protect", offsetof(struct ld, protect), RULES(protect_rules) },
	{ "failover", offsetof(struct ld, failover), RULES(failover_rules) },
	{ "link", offsetof(struct ld, link), RULES(link_rules) },
};

static int parse_top(struct ld *ld, const config_setting_t *s)
{
	const char *key = config_setting_name(s);
	unsigned i;

	if (!strcmp(key, "hosts")) {
		ld->hosts = s;
		return parse_hosts(ld, s);
	}
	for (i = 0; i < sizeof(groups) / sizeof(groups[0]); i++) {
		if (strcmp(key, groups[i].key))
			continue;
		if (!config_setting_is_group(s))
			return fail(ld, s, "must be a group: %s = { ... };", key);
		*(const config_setting_t **)((char *)ld + groups[i].at) = s;
		return parse_group(ld, s, key, groups[i].rules, groups[i].nr,
				   ld->cfg);
	}
	return fail(ld, s, "unknown key (the top level takes: vm, protect, "
		    "failover, link, hosts)");
}

static void set_defaults(struct td_config *cfg)
{
	strcpy(cfg->backend, "uvm");
	cfg->mem_bytes = 256ULL << 20;
	cfg->vcpus = 1;
	cfg->mode = TD_MODE_REMUS;
	cfg->interval_us = 100 * MS;
	cfg->output_bound_us = 10 * MS;
	cfg->compress = true;
	cfg->hb_interval_ms = 100;
	cfg->hb_misses = 5;
	cfg->auto_promote = false;
	cfg->security = TP_SEC_CERT;
}

/* ---- pass 2: the whole --------------------------------------------------------- */

/* "FILE:LINE: GROUP "LABEL": KEY missing (why)", or for an absent group
 * "FILE:1: GROUP.KEY missing (why)". */
static int missing(struct ld *ld, const config_setting_t *g, const char *gname,
		   const char *key, const char *why)
{
	char q[QUOTE_BUF];

	if (!g)
		return msg(ld, "%s:1: %s%s%s missing (%s)", ld->path, gname,
			   *key ? "." : "", key, why);
	return fail_as(ld, g, host_label(g, q, sizeof(q)), "%s missing (%s)",
		       key, why);
}

static const config_setting_t *member(const config_setting_t *g,
				      const char *key)
{
	return g ? config_setting_get_member(g, key) : NULL;
}

/* backend "xen": the domain is described by its xl config; its disks
 * and network are Xen's, its output gate the plug qdisc (remus only). */
static int check_vm_xen(struct ld *ld)
{
	static const char *const not_xen[] = { "image", "cmdline", "disk-size" };
	const config_setting_t *mode = member(ld->protect, "mode");

	if (!member(ld->vm, "xl-config"))
		return missing(ld, ld->vm, "vm", "xl-config",
			       "required with backend \"xen\"");
	if (!member(ld->vm, "memory"))
		return missing(ld, ld->vm, "vm", "memory",
			       "required with backend \"xen\" (the xl "
			       "config's memory)");
	for (unsigned k = 0; k < sizeof(not_xen) / sizeof(not_xen[0]); k++)
		if (member(ld->vm, not_xen[k]))
			return fail(ld, member(ld->vm, not_xen[k]),
				    "not with backend \"xen\" (the xl config "
				    "describes the domain)");
	if (mode && ld->cfg->mode != TD_MODE_REMUS)
		return fail(ld, mode, "backend \"xen\" runs mode \"remus\" "
			    "only (no event-channel hook on Xen)");
	return 0;
}

static int check_vm(struct ld *ld)
{
	if (!ld->vm)
		return missing(ld, NULL, "vm", "", "required: vm = { name = "
			       "...; image = ...; };");
	if (!member(ld->vm, "name"))
		return missing(ld, ld->vm, "vm", "name", "required");
	if (strcmp(ld->cfg->backend, "xen") == 0)
		return check_vm_xen(ld);
	if (strcmp(ld->cfg->backend, "uvm") != 0)
		return fail(ld, member(ld->vm, "backend"),
			    "unknown backend (uvm, xen)");
	if (member(ld->vm, "xl-config"))
		return fail(ld, member(ld->vm, "xl-config"),
			    "only with backend \"xen\"");
	if (!member(ld->vm, "image"))
		return missing(ld, ld->vm, "vm", "image", "required");
	return 0;
}

static int check_link(struct ld *ld)
{
	const struct td_config *cfg = ld->cfg;
	const config_setting_t *ca = member(ld->link, "ca");
	const config_setting_t *psk = member(ld->link, "psk");
	const char *sec = tp_security_name(cfg->security);

	if (cfg->security == TP_SEC_CERT && !ca)
		return missing(ld, ld->link, "link", "ca", member(ld->link,
			       "security") ? "required with security \"cert\""
			       : "required with security \"cert\", the "
			       "default");
	if (cfg->security == TP_SEC_PSK && !psk)
		return missing(ld, ld->link, "link", "psk",
			       "required with security \"psk\"");
	if (cfg->security != TP_SEC_CERT && ca)
		return fail(ld, ca, "only with security \"cert\" (security is "
			    "\"%s\")", sec);
	if (cfg->security != TP_SEC_PSK && psk)
		return fail_as(ld, psk, "<redacted>", "only with security "
			       "\"psk\" (security is \"%s\")", sec);
	return 0;
}

/* A key that must be there exactly when `want`. */
static int check_iff(struct ld *ld, int i, const char *key, bool want,
		     const char *why_need, const char *why_not)
{
	const config_setting_t *s = member(ld->host[i], key);

	if (want && !s)
		return missing(ld, ld->host[i], "hosts", key, why_need);
	if (!want && s)
		return fail(ld, s, "%s", why_not);
	return 0;
}

static int check_host(struct ld *ld, int i)
{
	static const char *const required[] = { "name", "address", "control",
						"stream" };
	const struct td_config *cfg = ld->cfg;
	bool xen = strcmp(cfg->backend, "xen") == 0;
	bool cert = cfg->security == TP_SEC_CERT;
	char why[96];
	unsigned k;
	int rc;

	for (k = 0; k < sizeof(required) / sizeof(required[0]) - xen; k++)
		if (!member(ld->host[i], required[k]))
			return missing(ld, ld->host[i], "hosts", required[k],
				       "required");
	if (xen && member(ld->host[i], "stream"))
		return fail(ld, member(ld->host[i], "stream"), "not with "
			    "backend \"xen\" (the guest's network is its vif)");
	rc = check_iff(ld, i, "disk", cfg->disk_bytes > 0,
		       "required: vm.disk-size is set",
		       "the VM has no disk (vm.disk-size absent or 0)");
	if (rc)
		return rc;
	snprintf(why, sizeof(why), "only with link.security \"cert\" (it is "
		 "\"%s\")", tp_security_name(cfg->security));
	rc = check_iff(ld, i, "cert", cert, "required with link.security "
		       "\"cert\"", why);
	return rc ? rc : check_iff(ld, i, "key", cert, "required with "
				   "link.security \"cert\"", why);
}

static bool host_loopback(const char *h)
{
	return !strncmp(h, "127.", 4) || !strcmp(h, "::1") ||
	       !strcasecmp(h, "localhost");
}

static bool host_wildcard(const char *h)
{
	return !strcmp(h, "0.0.0.0") || !strcmp(h, "::");
}

/* Both hosts on one machine: their link addresses share the host part. */
static bool one_machine(const struct td_config *cfg)
{
	char a[TD_ADDR_MAX], b[TD_ADDR_MAX], why[8];
	unsigned pa, pb;

	if (addr_split(cfg->host[0].address, a, &pa, why, sizeof(why)) ||
	    addr_split(cfg->host[1].address, b, &pb, why, sizeof(why)))
		return false;
	return !strcasecmp(a, b) || (host_loopback(a) && host_loopback(b));
}

/* Two endpoints that cannot both be bound. */
static bool endpoints_clash(const char *x, const char *y, bool same)
{
	char a[TD_ADDR_MAX], b[TD_ADDR_MAX], why[8];
	unsigned pa, pb;

	if (!*x || !*y)
		return false;
	if (!strcmp(x, y))
		return true;
	if (addr_split(x, a, &pa, why, sizeof(why)) ||
	    addr_split(y, b, &pb, why, sizeof(why)) || pa != pb)
		return false;
	if (!strcasecmp(a, b))
		return true;
	return same && (host_wildcard(a) || host_wildcard(b));
}

static int shared(struct ld *ld, const char *key, bool same)
{
	const config_setting_t *s = member(ld->host[1], key);
	const config_setting_t *s0 = member(ld->host[0], key);

	bool equal = !strcmp(config_setting_get_string(s),
			     config_setting_get_string(s0));

	return fail(ld, s, "%s hosts[0] \"%s\" (line %u)%s", equal ?
		    "the same as" : "clashes with", ld->cfg->host[0].name,
		    line_of(s0), same ? "; both hosts are on one machine" : "");
}

static int check_pair(struct ld *ld)
{
	static const struct { const char *key; size_t off; bool addr; }
	one[] = {
		{ "stream", offsetof(struct td_host, stream), true },
		{ "listen", offsetof(struct td_host, listen), true },
		{ "disk", offsetof(struct td_host, disk), false },
		{ "console", offsetof(struct td_host, console), false },
		{ "cert", offsetof(struct td_host, cert), false },
		{ "key", offsetof(struct td_host, key), false },
	};
	const struct td_host *h = ld->cfg->host;
	bool same = one_machine(ld->cfg);
	unsigned k;

	if (!strcmp(h[0].name, h[1].name))
		return shared(ld, "name", false);
	if (endpoints_clash(h[0].address, h[1].address, same))
		return shared(ld, "address", false);
	if (endpoints_clash(h[0].heartbeat, h[1].heartbeat, same))
		return shared(ld, "heartbeat", same);
	if (!strcmp(h[0].control, h[1].control))
		return shared(ld, "control", false);
	for (k = 0; same && k < sizeof(one) / sizeof(one[0]); k++) {
		const char *a = (const char *)&h[0] + one[k].off;
		const char *b = (const char *)&h[1] + one[k].off;

		if (one[k].addr ? endpoints_clash(a, b, true)
				: (*a && !strcmp(a, b)))
			return shared(ld, one[k].key, true);
	}
	return 0;
}

static int check_all(struct ld *ld)
{
	int rc = check_vm(ld), i;

	if (rc)
		return rc;
	if (!ld->hosts)
		return missing(ld, NULL, "hosts", "", "required: hosts = "
			       "( { name = ...; ... }, { name = ...; ... } );");
	rc = check_link(ld);
	for (i = 0; !rc && i < 2; i++)
		rc = check_host(ld, i);
	return rc ? rc : check_pair(ld);
}

/* ---- loading ----------------------------------------------------------------- */

/* ld->dir: the absolute directory of the file, symbolic links resolved. */
static int file_dir(struct ld *ld, const char *path)
{
	char *slash;

	if (!realpath(path, ld->dir)) {
		int rc = -errno;

		msg(ld, "%s: %s", path, strerror(-rc));
		return rc;
	}
	slash = strrchr(ld->dir, '/');
	if (slash)
		*slash = '\0'; /* "/kv1.conf" leaves "", so "x" is "/x" */
	return 0;
}

static int read_file(struct ld *ld, const char *path)
{
	char buf[PATH_MAX];
	struct stat st;
	FILE *f = fopen(path, "r");
	int rc;

	if (!f || fstat(fileno(f), &st)) {
		rc = -errno;
		if (f)
			fclose(f);
		msg(ld, "%s: %s", path, strerror(-rc));
		return rc;
	}
	fclose(f);
	if (S_ISDIR(st.st_mode)) {
		msg(ld, "%s: %s", path, strerror(EISDIR));
		return -EISDIR;
	}
	rc = file_dir(ld, path);
	if (rc)
		return rc;
	config_set_include_dir(&ld->lc, ld->dir[0] ? ld->dir : "/");
	if (config_read_file(&ld->lc, path))
		return 0;
	if (config_error_type(&ld->lc) == CONFIG_ERR_FILE_IO) {
		msg(ld, "%s: cannot read", path);
		return -EIO;
	}
	return msg(ld, "%s:%d: %s", file_of(ld, config_error_file(&ld->lc),
					     buf, sizeof(buf)),
		   config_error_line(&ld->lc), config_error_text(&ld->lc));
}

int td_config_load(const char *path, struct td_config *cfg, char *err,
		   size_t errlen)
{
	struct ld *ld = calloc(1, sizeof(*ld));
	const config_setting_t *root;
	int rc, i;

	memset(cfg, 0, sizeof(*cfg));
	if (err && errlen)
		err[0] = '\0';
	if (!ld) {
		if (err && errlen)
			snprintf(err, errlen, "%s: out of memory", path);
		return -ENOMEM;
	}
	ld->cfg = cfg;
	ld->path = path;
	ld->err = err;
	ld->errlen = errlen;
	config_init(&ld->lc);
	if (strlen(path) >= sizeof(cfg->path)) {
		rc = msg(ld, "%.64s...: path too long", path);
		goto out;
	}
	strcpy(cfg->path, path);
	set_defaults(cfg);
	rc = read_file(ld, path);
	if (rc)
		goto out;
	root = config_root_setting(&ld->lc);
	for (i = 0; !rc && i < config_setting_length(root); i++)
		rc = parse_top(ld, config_setting_get_elem(root, i));
	if (!rc)
		rc = check_all(ld);
out:
	config_destroy(&ld->lc);
	free(ld);
	if (rc)
		memset(cfg, 0, sizeof(*cfg));
	return rc;
}

/* ---- using a loaded config ------------------------------------------------------ */

static int find_host(const struct td_config *cfg, const char *name)
{
	int i;

	for (i = 0; i < 2; i++)
		if (!strcmp(cfg->host[i].name, name))
			return i;
	return -1;
}

int td_config_self(const struct td_config *cfg, const char *name, int *self,
		   char *err, size_t errlen)
{
	char sys[HOSTNAME_MAX + 1], q[QUOTE_BUF];
	char *dot;
	int i;

	*self = -1;
	if (!name) {
		if (gethostname(sys, sizeof(sys) - 1)) {
			int rc = -errno;

			snprintf(err, errlen, "%s: gethostname: %s", cfg->path,
				 strerror(-rc));
			return rc;
		}
		sys[sizeof(sys) - 1] = '\0';
		name = sys;
	}
	i = find_host(cfg, name);
	if (i < 0 && name == sys && (dot = strchr(sys, '.'))) {
		*dot = '\0'; /* "alpha.example.net" is host "alpha" */
		i = find_host(cfg, sys);
		*dot = '.';
	}
	if (i >= 0) {
		*self = i;
		return 0;
	}
	snprintf(err, errlen, "%s:%d: host \"%s\": not in hosts (configured: "
		 "\"%s\", \"%s\")%s", cfg->path, cfg->host[0].line,
		 quote(name, q, sizeof(q)), cfg->host[0].name, cfg->host[1].name,
		 name == sys ? "; that is the system's host name, give the "
		 "name explicitly" : "");
	return -ENOENT;
}

int td_config_link(const struct td_config *cfg, int self,
		   struct tp_config *tp, char *err, size_t errlen)
{
	const struct td_host *me, *peer;
	char why[TP_ERR_MAX];
	int rc;

	tp_config_init(tp);
	if (self != 0 && self != 1) {
		snprintf(err, errlen, "%s: host index %d (0 or 1)", cfg->path,
			 self);
		return -EINVAL;
	}
	me = &cfg->host[self];
	peer = &cfg->host[!self];
	tp->kind = TP_KIND_TCP;
	tp->security = cfg->security;
	snprintf(tp->local_name, sizeof(tp->local_name), "%s", me->name);
	snprintf(tp->peer_name, sizeof(tp->peer_name), "%s", peer->name);
	if (cfg->security == TP_SEC_CERT) {
		tp->ca_file = cfg->ca;
		tp->cert_file = me->cert;
		tp->key_file = me->key;
	}
	if (cfg->security == TP_SEC_PSK) {
		snprintf(tp->psk_identity, sizeof(tp->psk_identity), "%s",
			 cfg->vm_name);
		/* Its message quotes the key: keep that out of ours. */
		if (tp_config_set_psk_hex(tp, cfg->psk_hex, why, sizeof(why))) {
			tp_config_init(tp);
			snprintf(err, errlen, "%s: link.psk: not 32..%d hex "
				 "digits", cfg->path, 2 * TP_PSK_MAX);
			return -EINVAL;
		}
	}
	tp->nr_bulk = 1;
	rc = tp_config_check(tp, why, sizeof(why));
	if (rc) {
		tp_config_init(tp);
		snprintf(err, errlen, "%s: link to %s: %s", cfg->path,
			 peer->name, why);
	}
	return rc;
}
