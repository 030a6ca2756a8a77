/*
 * rep_proto.c - replication record bodies (layouts in docs/replication.md).
 * All fields big-endian; texts are length-prefixed, without NUL, and
 * must be printable ASCII.
 */
#include "rep_proto.h"
#include "wire.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

static void put32(uint8_t **p, uint32_t v)
{
	for (int i = 3; i >= 0; i--)
		*(*p)++ = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t **p, uint64_t v)
{
	put32(p, (uint32_t)(v >> 32));
	put32(p, (uint32_t)v);
}

static void put_text(uint8_t **p, const char *s, size_t max)
{
	size_t n = strnlen(s, max);

	put32(p, (uint32_t)n);
	memcpy(*p, s, n);
	*p += n;
}

/* Reads a u32 length and that many printable bytes into out (NUL-ended). */
static void get_text(struct wire_cursor *c, const char *what, char *out,
		     size_t max)
{
	const uint8_t *b = NULL;
	uint32_t n = 0;

	wire_get_be32(c, &n);
	if (c->rc == 0 && n > max) {
		wire_cursor_fail(c, -EBADMSG, "%s length %" PRIu32 " > %zu",
				 what, n, max);
		return;
	}
	if (wire_get_bytes(c, n, &b) != 0)
		return;
	for (uint32_t i = 0; i < n; i++)
		if (b[i] < 0x20 || b[i] > 0x7e) {
			wire_cursor_fail(c, -EBADMSG, "%s has byte 0x%02x at %"
					 PRIu32, what, b[i], i);
			return;
		}
	memcpy(out, b, n);
	out[n] = '\0';
}

static int finish(struct wire_cursor *c, const char *what, char *err,
		  size_t errlen)
{
	if (c->rc == 0 && wire_cursor_left(c) != 0)
		wire_cursor_fail(c, -EBADMSG, "%zu trailing bytes",
				 wire_cursor_left(c));
	if (c->rc != 0)
		snprintf(err, errlen, "%s: %s", what, c->err);
	return c->rc;
}

static int check_role(struct wire_cursor *c, uint32_t role)
{
	if (c->rc == 0 && role > REP_ROLE_STANDBY)
		return wire_cursor_fail(c, -EBADMSG, "role %" PRIu32 " unknown",
					role);
	return c->rc;
}

size_t rep_hello_encode(const struct rep_hello *h, uint8_t *buf)
{
	uint8_t *p = buf;

	put32(&p, h->role);
	put32(&p, h->mode);
	put64(&p, h->generation);
	put64(&p, h->session);
	put64(&p, h->epoch);
	put64(&p, h->mem_bytes);
	put32(&p, h->vcpus);
	put_text(&p, h->vm, REP_NAME_MAX);
	return (size_t)(p - buf);
}

int rep_hello_decode(const uint8_t *body, size_t len, struct rep_hello *out,
		     char *err, size_t errlen)
{
	struct wire_cursor c;

	memset(out, 0, sizeof(*out));
	wire_cursor_init(&c, body, len);
	wire_get_be32(&c, &out->role);
	wire_get_be32(&c, &out->mode);
	wire_get_be64(&c, &out->generation);
	wire_get_be64(&c, &out->session);
	wire_get_be64(&c, &out->epoch);
	wire_get_be64(&c, &out->mem_bytes);
	wire_get_be32(&c, &out->vcpus);
	get_text(&c, "vm name", out->vm, REP_NAME_MAX);
	check_role(&c, out->role);
	if (c.rc == 0 && out->mode > REP_MODE_HYBRID)
		wire_cursor_fail(&c, -EBADMSG, "mode %" PRIu32 " unknown",
				 out->mode);
	return finish(&c, "REP_HELLO", err, errlen);
}

size_t rep_welcome_encode(const struct rep_welcome *w, uint8_t *buf)
{
	uint8_t *p = buf;

	put32(&p, w->status);
	put32(&p, w->role);
	put64(&p, w->generation);
	put64(&p, w->session);
	put64(&p, w->committed);
	put64(&p, 0);
	put32(&p, 0);
	put_text(&p, w->reason, REP_REASON_MAX);
	return (size_t)(p - buf);
}

int rep_welcome_decode(const uint8_t *body, size_t len,
		       struct rep_welcome *out, char *err, size_t errlen)
{
	struct wire_cursor c;
	uint64_t r64 = 0;
	uint32_t r32 = 0;

	memset(out, 0, sizeof(*out));
	wire_cursor_init(&c, body, len);
	wire_get_be32(&c, &out->status);
	wire_get_be32(&c, &out->role);
	wire_get_be64(&c, &out->generation);
	wire_get_be64(&c, &out->session);
	wire_get_be64(&c, &out->committed);
	wire_get_be64(&c, &r64);
	wire_get_be32(&c, &r32);
	get_text(&c, "reason", out->reason, REP_REASON_MAX);
	check_role(&c, out->role);
	if (c.rc == 0 && out->status > REP_WELCOME_REFUSED)
		wire_cursor_fail(&c, -EBADMSG, "status %" PRIu32 " unknown",
				 out->status);
	if (c.rc == 0 && (r64 || r32))
		wire_cursor_fail(&c, -EBADMSG, "reserved fields 0x%016" PRIx64
				 " 0x%08" PRIx32 " not zero", r64, r32);
	return finish(&c, "REP_WELCOME", err, errlen);
}

size_t rep_epoch_end_encode(const struct rep_epoch_end *e, uint8_t *buf)
{
	uint8_t *p = buf;

	put64(&p, e->epoch);
	put64(&p, e->base);
	put64(&p, e->records);
	put64(&p, e->digest);
	put64(&p, e->pages);
	put64(&p, e->disk_bytes);
	put64(&p, e->guest_clock_ns);
	put64(&p, e->flags);
	return (size_t)(p - buf);
}

int rep_epoch_end_decode(const uint8_t *body, size_t len,
			 struct rep_epoch_end *out, char *err, size_t errlen)
{
	struct wire_cursor c;

	memset(out, 0, sizeof(*out));
	wire_cursor_init(&c, body, len);
	wire_get_be64(&c, &out->epoch);
	wire_get_be64(&c, &out->base);
	wire_get_be64(&c, &out->records);
	wire_get_be64(&c, &out->digest);
	wire_get_be64(&c, &out->pages);
	wire_get_be64(&c, &out->disk_bytes);
	wire_get_be64(&c, &out->guest_clock_ns);
	wire_get_be64(&c, &out->flags);
	if (c.rc == 0 && (out->epoch == 0 || out->base >= out->epoch))
		wire_cursor_fail(&c, -EBADMSG, "epoch %" PRIu64 " on base %"
				 PRIu64, out->epoch, out->base);
	if (c.rc == 0 && (out->flags & ~(uint64_t)REP_END_FULL))
		wire_cursor_fail(&c, -EBADMSG, "flags 0x%" PRIx64 " unknown",
				 out->flags);
	if (c.rc == 0 && !!(out->flags & REP_END_FULL) != (out->base == 0))
		wire_cursor_fail(&c, -EBADMSG, "a full epoch has base 0, "
				 "others not (base %" PRIu64 ")", out->base);
	return finish(&c, "REP_EPOCH_END", err, errlen);
}

size_t rep_ack_encode(const struct rep_ack *a, uint8_t *buf)
{
	uint8_t *p = buf;

	put64(&p, a->epoch);
	put64(&p, a->apply_ns);
	return (size_t)(p - buf);
}

int rep_ack_decode(const uint8_t *body, size_t len, struct rep_ack *out,
		   char *err, size_t errlen)
{
	struct wire_cursor c;

	wire_cursor_init(&c, body, len);
	wire_get_be64(&c, &out->epoch);
	wire_get_be64(&c, &out->apply_ns);
	return finish(&c, "REP_ACK", err, errlen);
}

size_t rep_heartbeat_encode(const struct rep_heartbeat *h, uint8_t *buf)
{
	uint8_t *p = buf;

	put64(&p, h->generation);
	put64(&p, h->epoch);
	put64(&p, h->sent_ns);
	put32(&p, h->role);
	put32(&p, h->flags);
	return (size_t)(p - buf);
}

int rep_heartbeat_decode(const uint8_t *body, size_t len,
			 struct rep_heartbeat *out, char *err, size_t errlen)
{
	struct wire_cursor c;

	wire_cursor_init(&c, body, len);
	wire_get_be64(&c, &out->generation);
	wire_get_be64(&c, &out->epoch);
	wire_get_be64(&c, &out->sent_ns);
	wire_get_be32(&c, &out->role);
	wire_get_be32(&c, &out->flags);
	check_role(&c, out->role);
	if (c.rc == 0 && (out->flags & ~REP_HB_RELEASE))
		wire_cursor_fail(&c, -EBADMSG, "flags 0x%" PRIx32 " unknown",
				 out->flags);
	return finish(&c, "REP_HEARTBEAT", err, errlen);
}

size_t rep_drill_encode(const struct rep_drill *d, uint8_t *buf)
{
	uint8_t *p = buf;

	put32(&p, d->phase);
	put32(&p, 0);
	return (size_t)(p - buf);
}

int rep_drill_decode(const uint8_t *body, size_t len, struct rep_drill *out,
		     char *err, size_t errlen)
{
	struct wire_cursor c;

	wire_cursor_init(&c, body, len);
	wire_get_be32(&c, &out->phase);
	wire_get_be32(&c, &out->reserved);
	if (c.rc == 0 && out->phase >= REP_PHASE_NR)
		wire_cursor_fail(&c, -EBADMSG, "phase %" PRIu32 " unknown",
				 out->phase);
	if (c.rc == 0 && out->reserved != 0)
		wire_cursor_fail(&c, -EBADMSG, "reserved 0x%08" PRIx32
				 " not zero", out->reserved);
	return finish(&c, "REP_DRILL", err, errlen);
}

size_t rep_handover_encode(const struct rep_handover *h, uint8_t *buf)
{
	uint8_t *p = buf;

	put64(&p, h->epoch);
	put64(&p, h->generation);
	return (size_t)(p - buf);
}

int rep_handover_decode(const uint8_t *body, size_t len,
			struct rep_handover *out, char *err, size_t errlen)
{
	struct wire_cursor c;

	wire_cursor_init(&c, body, len);
	wire_get_be64(&c, &out->epoch);
	wire_get_be64(&c, &out->generation);
	return finish(&c, "REP_HANDOVER", err, errlen);
}

uint64_t rep_record_digest(uint32_t type, uint64_t epoch, const void *body,
			   size_t len)
{
	return XXH3_64bits_withSeed(body, len, epoch * 0x100000001b3ULL ^ type);
}

/* ---- names ---------------------------------------------------------------- */

const char *rep_role_name(enum rep_role role)
{
	static const char *const n[] = { "none", "primary", "standby" };

	return (unsigned)role < 3 ? n[role] : "?";
}

const char *rep_mode_name(enum rep_mode mode)
{
	static const char *const n[] = { "remus", "kemari", "hybrid" };

	return (unsigned)mode < 3 ? n[mode] : "?";
}

static const char *const rep_phase_names[REP_PHASE_NR] = {
	"none", "paused", "sending", "sent", "acked", "released",
};

const char *rep_phase_name(enum rep_phase phase)
{
	return (unsigned)phase < REP_PHASE_NR ? rep_phase_names[phase] : "?";
}

int rep_phase_parse(const char *s, enum rep_phase *out)
{
	for (unsigned i = 0; i < REP_PHASE_NR; i++)
		if (strcmp(s, rep_phase_names[i]) == 0) {
			*out = (enum rep_phase)i;
			return 0;
		}
	return -EINVAL;
}
