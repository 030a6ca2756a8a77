/*
 * cmdline.c - the guest command line from the start-info page.
 *
 * The command line is a list of "key=value" words separated by blanks,
 * at most UVM_CMDLINE_MAX bytes and not necessarily NUL-terminated.  A
 * word without '=' is a key with an empty value.  When a key appears more
 * than once the last one wins.  Numbers are decimal or 0x-hex with an
 * optional K/M/G/T suffix (powers of 1024, either case); a malformed or
 * overflowing number is reported on the console and the default is used.
 */
#include "sdk.h"

static int cmd_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\n';
}

/* Find the value of key (last occurrence): 0 and val/vlen set, or -1. */
static int cmdline_find(const char *key, const char **val, size_t *vlen)
{
	const char *s = sdk_start_info->cmdline;
	size_t klen = strlen(key), i = 0, n = 0;
	int found = -1;

	while (n < UVM_CMDLINE_MAX && s[n] != '\0')
		n++;
	while (i < n) {
		size_t w = i, e;

		while (w < n && cmd_blank(s[w]))
			w++;
		e = w;
		while (e < n && !cmd_blank(s[e]))
			e++;
		if (e - w >= klen && strncmp(s + w, key, klen) == 0 &&
		    (e - w == klen || s[w + klen] == '=')) {
			size_t v = e - w == klen ? e : w + klen + 1;

			*val = s + v;
			*vlen = e - v;
			found = 0;
		}
		i = e;
	}
	return found;
}

static int cmd_digit(char c, unsigned base)
{
	int d;

	if (c >= '0' && c <= '9')
		d = c - '0';
	else if (c >= 'a' && c <= 'f')
		d = c - 'a' + 10;
	else if (c >= 'A' && c <= 'F')
		d = c - 'A' + 10;
	else
		return -1;
	return (unsigned)d < base ? d : -1;
}

static unsigned cmd_suffix_shift(char c)
{
	switch (c) {
	case 'k': case 'K': return 10;
	case 'm': case 'M': return 20;
	case 'g': case 'G': return 30;
	case 't': case 'T': return 40;
	default: return 0;
	}
}

int cmdline_parse_u64(const char *s, size_t len, uint64_t *out)
{
	unsigned base = 10, shift;
	uint64_t v = 0;
	size_t i = 0, start;
	int d;

	if (len > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		i = 2;
	}
	start = i;
	for (; i < len && (d = cmd_digit(s[i], base)) >= 0; i++) {
		if (v > (UINT64_MAX - (uint64_t)d) / base)
			return -1;
		v = v * base + (uint64_t)d;
	}
	if (i == start)
		return -1;
	if (i < len) {
		shift = cmd_suffix_shift(s[i]);
		if (shift == 0 || i + 1 != len || v > (UINT64_MAX >> shift))
			return -1;
		v <<= shift;
	}
	*out = v;
	return 0;
}

uint64_t cmdline_u64(const char *key, uint64_t dflt)
{
	const char *val;
	size_t len;
	uint64_t v;

	if (cmdline_find(key, &val, &len) < 0)
		return dflt;
	if (cmdline_parse_u64(val, len, &v) < 0) {
		printf("cmdline: bad number for %s: '%.*s', using %llu\n", key,
		       (int)len, val, (unsigned long long)dflt);
		return dflt;
	}
	return v;
}

int cmdline_str(const char *key, char *buf, size_t size)
{
	const char *val;
	size_t len;

	if (cmdline_find(key, &val, &len) < 0)
		return -1;
	if (size == 0)
		return 0;
	if (len >= size)
		len = size - 1;
	memcpy(buf, val, len);
	buf[len] = '\0';
	return 0;
}
