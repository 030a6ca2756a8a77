/*
 * link_codec.c - encoders and decoders of the link record bodies.
 *
 * Layouts are in docs/transport.md, section 4.  Every decoder reads through
 * a wire_cursor (bounds-checked, big-endian), checks each field against its
 * limit, and requires the exact body length.  Names are 1..63 printable
 * ASCII bytes without spaces; nothing else is accepted, so a name can be
 * printed in a log line as-is.
 */
#include "link_codec.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

static int finish(struct wire_cursor *c, const char *what, char *err,
		  size_t errlen)
{
	if (!c->rc && wire_cursor_left(c))
		wire_cursor_fail(c, -EBADMSG, "%zu bytes past the fields",
				 wire_cursor_left(c));
	if (c->rc && err && errlen)
		snprintf(err, errlen, "%s: %s", what, c->err);
	return c->rc;
}

bool link_name_ok(const char *name, size_t n)
{
	const uint8_t *p = (const uint8_t *)name;
	size_t i;

	if (n == 0 || n >= TP_NAME_MAX)
		return false;
	for (i = 0; i < n; i++)
		if (p[i] <= 0x20 || p[i] >= 0x7f)
			return false;
	return true;
}

static int put_name(struct wire_buf *b, const char *name)
{
	size_t n = strnlen(name, TP_NAME_MAX);

	if (!link_name_ok(name, n))
		return -EINVAL;
	return wire_put_bytes(b, name, n);
}

/* The rest of the body is a name. */
static int get_name(struct wire_cursor *c, char out[TP_NAME_MAX])
{
	size_t n = wire_cursor_left(c);
	const uint8_t *p;

	out[0] = '\0';
	if (c->rc)
		return c->rc;
	if (n == 0 || n >= TP_NAME_MAX)
		return wire_cursor_fail(c, -EBADMSG, "name of %zu bytes (must "
					"be 1..%d)", n, TP_NAME_MAX - 1);
	wire_get_bytes(c, n, &p);
	if (!link_name_ok((const char *)p, n))
		return wire_cursor_fail(c, -EBADMSG, "name has a byte outside "
					"printable ASCII");
	memcpy(out, p, n);
	out[n] = '\0';
	return 0;
}

int link_hello_put(struct wire_buf *b, const struct link_hello *h)
{
	if (h->proto_min > h->proto_max || h->nr_bulk > TP_MAX_BULK)
		return -EINVAL;
	wire_put_be16(b, h->proto_min);
	wire_put_be16(b, h->proto_max);
	wire_put_be32(b, h->nr_bulk);
	wire_put_be64(b, h->features);
	wire_put_be64(b, h->epoch);
	if (b->rc)
		return b->rc;
	return put_name(b, h->name);
}

int link_hello_decode(const uint8_t *p, size_t len, struct link_hello *out,
		      char *err, size_t errlen)
{
	struct wire_cursor c;

	memset(out, 0, sizeof(*out));
	wire_cursor_init(&c, p, len);
	wire_get_be16(&c, &out->proto_min);
	wire_get_be16(&c, &out->proto_max);
	wire_get_be32(&c, &out->nr_bulk);
	wire_get_be64(&c, &out->features);
	wire_get_be64(&c, &out->epoch);
	if (!c.rc && out->proto_min > out->proto_max)
		wire_cursor_fail(&c, -EBADMSG, "protocol range %u..%u is empty",
				 out->proto_min, out->proto_max);
	if (!c.rc && out->nr_bulk > TP_MAX_BULK)
		wire_cursor_fail(&c, -EBADMSG, "nr_bulk %" PRIu32 " > max %d",
				 out->nr_bulk, TP_MAX_BULK);
	get_name(&c, out->name);
	return finish(&c, "LINK_HELLO", err, errlen);
}

int link_welcome_put(struct wire_buf *b, const struct link_welcome *w)
{
	if (w->nr_bulk > TP_MAX_BULK)
		return -EINVAL;
	wire_put_be16(b, w->proto);
	wire_put_be16(b, 0);
	wire_put_be32(b, w->nr_bulk);
	wire_put_be64(b, w->features);
	wire_put_bytes(b, w->session, LINK_SESSION_ID);
	wire_put_be64(b, w->min_epoch);
	wire_put_be64(b, 0);
	if (b->rc)
		return b->rc;
	return put_name(b, w->name);
}

int link_welcome_decode(const uint8_t *p, size_t len,
			struct link_welcome *out, char *err, size_t errlen)
{
	struct wire_cursor c;
	const uint8_t *sid = NULL;
	uint16_t rsv16;
	uint64_t rsv64;

	memset(out, 0, sizeof(*out));
	wire_cursor_init(&c, p, len);
	wire_get_be16(&c, &out->proto);
	wire_get_be16(&c, &rsv16);
	wire_get_be32(&c, &out->nr_bulk);
	wire_get_be64(&c, &out->features);
	wire_get_bytes(&c, LINK_SESSION_ID, &sid);
	wire_get_be64(&c, &out->min_epoch);
	wire_get_be64(&c, &rsv64);
	if (!c.rc)
		memcpy(out->session, sid, LINK_SESSION_ID);
	if (!c.rc && out->nr_bulk > TP_MAX_BULK)
		wire_cursor_fail(&c, -EBADMSG, "nr_bulk %" PRIu32 " > max %d",
				 out->nr_bulk, TP_MAX_BULK);
	get_name(&c, out->name);
	return finish(&c, "LINK_WELCOME", err, errlen);
}

int link_join_put(struct wire_buf *b, const struct link_join *j)
{
	if (j->chan < 1 || j->chan > TP_MAX_BULK)
		return -EINVAL;
	wire_put_bytes(b, j->session, LINK_SESSION_ID);
	wire_put_be32(b, j->chan);
	return wire_put_be32(b, 0);
}

int link_join_decode(const uint8_t *p, size_t len, struct link_join *out,
		     char *err, size_t errlen)
{
	struct wire_cursor c;
	const uint8_t *sid = NULL;
	uint32_t rsv;

	memset(out, 0, sizeof(*out));
	wire_cursor_init(&c, p, len);
	wire_get_bytes(&c, LINK_SESSION_ID, &sid);
	wire_get_be32(&c, &out->chan);
	wire_get_be32(&c, &rsv);
	if (!c.rc)
		memcpy(out->session, sid, LINK_SESSION_ID);
	if (!c.rc && (out->chan < 1 || out->chan > TP_MAX_BULK))
		wire_cursor_fail(&c, -EBADMSG, "channel %" PRIu32
				 " not in 1..%d", out->chan, TP_MAX_BULK);
	return finish(&c, "LINK_JOIN", err, errlen);
}

int link_joined_put(struct wire_buf *b, uint32_t chan)
{
	wire_put_be32(b, chan);
	return wire_put_be32(b, 0);
}

int link_joined_decode(const uint8_t *p, size_t len, uint32_t *chan,
		       char *err, size_t errlen)
{
	struct wire_cursor c;
	uint32_t rsv;

	wire_cursor_init(&c, p, len);
	wire_get_be32(&c, chan);
	wire_get_be32(&c, &rsv);
	if (!c.rc && (*chan < 1 || *chan > TP_MAX_BULK))
		wire_cursor_fail(&c, -EBADMSG, "channel %" PRIu32
				 " not in 1..%d", *chan, TP_MAX_BULK);
	return finish(&c, "LINK_JOINED", err, errlen);
}

int link_ping_put(struct wire_buf *b, const struct link_ping *pg)
{
	wire_put_be64(b, pg->nonce);
	return wire_put_be64(b, pg->t_ns);
}

int link_ping_decode(const uint8_t *p, size_t len, struct link_ping *out,
		     char *err, size_t errlen)
{
	struct wire_cursor c;

	wire_cursor_init(&c, p, len);
	wire_get_be64(&c, &out->nonce);
	wire_get_be64(&c, &out->t_ns);
	return finish(&c, "LINK_PING", err, errlen);
}

int link_sync_put(struct wire_buf *b, const struct link_sync *s)
{
	uint32_t i;

	if (s->nr_chan < 1 || s->nr_chan > 1 + TP_MAX_BULK)
		return -EINVAL;
	wire_put_be32(b, s->nr_chan);
	wire_put_be32(b, 0);
	for (i = 0; i < s->nr_chan; i++)
		wire_put_be64(b, s->count[i]);
	return b->rc;
}

int link_sync_decode(const uint8_t *p, size_t len, struct link_sync *out,
		     char *err, size_t errlen)
{
	struct wire_cursor c;
	uint32_t i, rsv;

	memset(out, 0, sizeof(*out));
	wire_cursor_init(&c, p, len);
	wire_get_be32(&c, &out->nr_chan);
	wire_get_be32(&c, &rsv);
	if (!c.rc && (out->nr_chan < 1 || out->nr_chan > 1 + TP_MAX_BULK))
		wire_cursor_fail(&c, -EBADMSG, "nr_chan %" PRIu32
				 " not in 1..%d", out->nr_chan, 1 + TP_MAX_BULK);
	for (i = 0; !c.rc && i < out->nr_chan; i++)
		wire_get_be64(&c, &out->count[i]);
	return finish(&c, "LINK_SYNC", err, errlen);
}

int link_bye_decode(const uint8_t *p, size_t len, char *out, size_t outlen)
{
	size_t i, n;

	if (!outlen)
		return -EINVAL;
	if (len > LINK_BYE_MAX)
		return -EBADMSG;
	n = len < outlen - 1 ? len : outlen - 1;
	for (i = 0; i < n; i++)
		out[i] = (p[i] >= 0x20 && p[i] < 0x7f) ? (char)p[i] : '?';
	out[n] = '\0';
	return 0;
}

int link_negotiate(const struct link_hello *h, uint64_t our_features,
		   uint16_t *proto, uint64_t *features,
		   char *err, size_t errlen)
{
	uint64_t mand_missing;
	uint16_t hi = h->proto_max < TP_PROTO_MAX ? h->proto_max : TP_PROTO_MAX;
	uint16_t lo = h->proto_min > TP_PROTO_MIN ? h->proto_min : TP_PROTO_MIN;

	if (lo > hi) {
		snprintf(err, errlen, "no common protocol version: peer speaks "
			 "%u..%u, this host %u..%u", h->proto_min,
			 h->proto_max, TP_PROTO_MIN, TP_PROTO_MAX);
		return -EPROTONOSUPPORT;
	}
	mand_missing = (h->features ^ our_features) & WIRE_FEATURES_MANDATORY;
	if (mand_missing) {
		snprintf(err, errlen, "mandatory features differ: peer 0x%"
			 PRIx64 ", this host 0x%" PRIx64, h->features,
			 our_features);
		return -EPROTONOSUPPORT;
	}
	*proto = hi;
	*features = h->features & our_features;
	return 0;
}

uint64_t link_session_seed(const uint8_t id[LINK_SESSION_ID])
{
	return XXH3_64bits(id, LINK_SESSION_ID);
}
