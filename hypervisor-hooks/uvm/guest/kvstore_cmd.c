/*
 * kvstore_cmd.c - kvstore command table and implementations (see
 * kvstore_cmd.h).  Replies and error texts follow Redis 7.0.
 *
 * Every command looks keys up with the current time, so an expired key
 * is absent to every command (and removed when met).  Write commands log
 * effects, not commands: a SET with its absolute expiry, a DEL of a key
 * that was live, an EXPIRE with the new absolute expiry, FLUSHALL; so
 * replay never depends on the time it runs at.
 */
#include "kvstore_cmd.h"

#define KV_ERR_INT "value is not an integer or out of range"
#define KV_ERR_SYNTAX "syntax error"
#define KV_ERR_OOM "-OOM command not allowed: out of memory"
#define KV_ERR_OVERFLOW "increment or decrement would overflow"
#define KV_MAX_STRING (512LL * 1024 * 1024)

struct kv_cmd {
	const char *name;
	int arity;      /* > 0 exact, < 0 at least -arity */
	int write;
	void (*fn)(struct kv_ctx *c, const struct kv_arg *v, size_t n,
		   struct kv_buf *out);
};

/* ---- helpers ---------------------------------------------------------------- */

static int kv_is(const struct kv_arg *a, const char *lit)
{
	return kv_eq_nocase(a->p, a->len, lit);
}

static struct kv_entry *kv_lookup(struct kv_ctx *c, const struct kv_arg *k)
{
	return kv_db_get(c->db, k->p, k->len, c->now);
}

/* db->on_expire: queue a DEL for a key found expired. */
static void kv_on_expire(void *ctx, const struct kv_entry *e)
{
	struct kv_ctx *c = ctx;
	size_t before;

	if (c->log == NULL)
		return;
	if (c->expired.a == NULL)
		kv_buf_init(&c->expired, c->db->a);
	before = c->expired.len;
	kv_op_put(&c->expired, KV_OP_DEL, kv_entry_key(e), e->klen, NULL, 0,
		  0);
	if (c->expired.len != before)
		c->nexpired++;
}

/* Move queued expiry DELs into the batch (room already reserved). */
static void kv_move_expired(struct kv_ctx *c)
{
	struct kv_buf *b;

	if (c->nexpired == 0)
		return;
	b = kv_log_batch(c->log);
	kv_buf_put(b, c->expired.p, c->expired.len);
	for (uint32_t i = 0; i < c->nexpired; i++)
		kv_log_count_op(c->log);
	c->expired.len = 0;
	c->nexpired = 0;
}

static void kv_op(struct kv_ctx *c, uint8_t type, const struct kv_arg *k,
		  const uint8_t *val, size_t vlen, int64_t expire)
{
	struct kv_buf *b;

	if (c->log == NULL)
		return;
	kv_move_expired(c);
	b = kv_log_batch(c->log);
	kv_op_put(b, type, k ? k->p : NULL, k ? k->len : 0, val, vlen, expire);
	kv_log_count_op(c->log);
}

static void kv_reply_arity(struct kv_buf *out, const char *name)
{
	struct kv_buf *b = out;

	kv_buf_puts(b, "-ERR wrong number of arguments for '");
	kv_buf_puts(b, name);
	kv_buf_puts(b, "' command\r\n");
}

static void kv_reply_badexpire(struct kv_buf *out, const char *name)
{
	kv_buf_puts(out, "-ERR invalid expire time in '");
	kv_buf_puts(out, name);
	kv_buf_puts(out, "' command\r\n");
}

/* Store key = val (expiry given), log it; 0, or -1 (OOM replied). */
static int kv_store(struct kv_ctx *c, const struct kv_arg *k,
		    const uint8_t *val, size_t vlen, int64_t expire,
		    struct kv_buf *out)
{
	if (kv_db_set(c->db, k->p, k->len, val, vlen, expire) == NULL) {
		kv_reply_error(out, KV_ERR_OOM);
		return -1;
	}
	kv_op(c, KV_OP_SET, k, val, vlen, expire);
	return 0;
}

/*
 * ms (or seconds, when seconds) from now as an absolute expiry in *at:
 * 0, -1 (not an integer; replied) or -2 (out of range; replied).
 */
static int kv_expiry(struct kv_ctx *c, const struct kv_arg *a, int seconds,
		     int allow_past, const char *name, int64_t *at,
		     struct kv_buf *out)
{
	int64_t v;

	if (kv_parse_i64(a->p, a->len, &v) != 0) {
		kv_reply_error(out, KV_ERR_INT);
		return -1;
	}
	if ((!allow_past && v <= 0) ||
	    (seconds && (v > INT64_MAX / 1000 || v < INT64_MIN / 1000)))
		goto bad;
	if (seconds)
		v *= 1000;
	if ((v > 0 && v > INT64_MAX - c->now) ||
	    (v < 0 && v < INT64_MIN + 1 - c->now))
		goto bad;
	*at = c->now + v;
	return 0;
bad:
	kv_reply_badexpire(out, name);
	return -2;
}

/* ---- connection and server commands --------------------------------------- */

static void kv_cmd_ping(struct kv_ctx *c, const struct kv_arg *v, size_t n,
			struct kv_buf *out)
{
	(void)c;
	if (n > 2)
		kv_reply_arity(out, "ping");
	else if (n == 2)
		kv_reply_bulk(out, v[1].p, v[1].len);
	else
		kv_reply_status(out, "PONG");
}

static void kv_cmd_echo(struct kv_ctx *c, const struct kv_arg *v, size_t n,
			struct kv_buf *out)
{
	(void)c;
	(void)n;
	kv_reply_bulk(out, v[1].p, v[1].len);
}

static void kv_cmd_quit(struct kv_ctx *c, const struct kv_arg *v, size_t n,
			struct kv_buf *out)
{
	(void)c;
	(void)v;
	(void)n;
	kv_reply_status(out, "OK");
}

static void kv_cmd_select(struct kv_ctx *c, const struct kv_arg *v, size_t n,
			  struct kv_buf *out)
{
	int64_t id;

	(void)c;
	(void)n;
	if (kv_parse_i64(v[1].p, v[1].len, &id) != 0)
		kv_reply_error(out, KV_ERR_INT);
	else if (id != 0)
		kv_reply_error(out, "DB index is out of range");
	else
		kv_reply_status(out, "OK");
}

static void kv_cmd_command(struct kv_ctx *c, const struct kv_arg *v,
			   size_t n, struct kv_buf *out)
{
	(void)c;
	(void)v;
	(void)n;
	kv_reply_array(out, 0);
}

static void kv_put_u64(struct kv_buf *b, uint64_t x)
{
	char d[KV_I64_MAXLEN + 1];

	kv_buf_put(b, d, kv_fmt_u64(d, x));
}

static void kv_config_value(struct kv_ctx *c, const char *name,
			    struct kv_buf *b)
{
	if (strcmp(name, "appendonly") == 0)
		kv_buf_puts(b, c->log != NULL ? "yes" : "no");
	else if (strcmp(name, "maxclients") == 0)
		kv_put_u64(b, c->info.maxclients);
	else if (strcmp(name, "databases") == 0)
		kv_buf_puts(b, "1");
	else if (strcmp(name, "appendfsync") == 0)
		kv_buf_puts(b, "always");
	else if (strcmp(name, "proto-max-bulk-len") == 0)
		kv_put_u64(b, (uint64_t)KV_MAX_BULK);
	else
		kv_buf_puts(b, name[0] == 's' ? "" : "0"); /* save, maxmemory, timeout */
}

static const char *const kv_config_names[] = {
	"save", "appendonly", "appendfsync", "maxclients", "databases",
	"maxmemory", "timeout", "proto-max-bulk-len",
};

#define KV_NCONFIG (sizeof(kv_config_names) / sizeof(kv_config_names[0]))

static void kv_cmd_config(struct kv_ctx *c, const struct kv_arg *v, size_t n,
			  struct kv_buf *out)
{
	struct kv_buf vals;
	size_t count = 0, i, j;
	uint8_t hit[KV_NCONFIG];

	if (!kv_is(&v[1], "get")) {
		kv_buf_init(&vals, out->a);
		kv_buf_puts(&vals, "unknown subcommand '");
		kv_buf_put(&vals, v[1].p, v[1].len < 128 ? v[1].len : 128);
		kv_buf_puts(&vals, "'. Try CONFIG HELP.");
		if (vals.oom)
			kv_reply_error(out, "unknown subcommand");
		else
			kv_reply_errorn(out, vals.p, vals.len);
		kv_buf_free(&vals);
		return;
	}
	if (n < 3) {
		kv_reply_arity(out, "config|get");
		return;
	}
	memset(hit, 0, sizeof(hit));
	for (j = 2; j < n; j++)
		for (i = 0; i < KV_NCONFIG; i++)
			if (kv_glob(v[j].p, v[j].len,
				    (const uint8_t *)kv_config_names[i],
				    strlen(kv_config_names[i]), 1))
				hit[i] = 1;
	kv_buf_init(&vals, out->a);
	for (i = 0; i < KV_NCONFIG; i++) {
		if (!hit[i])
			continue;
		struct kv_buf one;

		kv_buf_init(&one, out->a);
		kv_config_value(c, kv_config_names[i], &one);
		kv_reply_cbulk(&vals, kv_config_names[i]);
		kv_reply_bulk(&vals, one.p, one.len);
		if (one.oom)
			vals.oom = 1;
		kv_buf_free(&one);
		count += 2;
	}
	kv_reply_array(out, count);
	kv_buf_put(out, vals.p, vals.len);
	if (vals.oom)
		out->oom = 1;
	kv_buf_free(&vals);
}

static void kv_info_line(struct kv_buf *b, const char *k, uint64_t x)
{
	kv_buf_puts(b, k);
	kv_buf_put(b, ":", 1);
	kv_put_u64(b, x);
	kv_buf_put(b, "\r\n", 2);
}

static void kv_info_server(struct kv_ctx *c, struct kv_buf *b)
{
	int64_t up = (c->now - c->info.start_ms) / 1000;

	if (up < 0)
		up = 0;
	kv_buf_puts(b, "# Server\r\nredis_version:" KV_VERSION_STRING
		       "\r\nredis_mode:standalone\r\nos:uvm guest\r\n"
		       "arch_bits:64\r\nmultiplexing_api:uvm-stream\r\n"
		       "server_name:tandem-kvstore\r\n");
	kv_info_line(b, "uptime_in_seconds", (uint64_t)up);
	kv_info_line(b, "uptime_in_days", (uint64_t)up / 86400);
}

static void kv_info_clients(struct kv_ctx *c, struct kv_buf *b)
{
	kv_buf_puts(b, "# Clients\r\n");
	kv_info_line(b, "connected_clients", c->info.connected_clients);
	kv_info_line(b, "maxclients", c->info.maxclients);
}

static void kv_info_memory(struct kv_ctx *c, struct kv_buf *b)
{
	kv_buf_puts(b, "# Memory\r\n");
	kv_info_line(b, "used_memory", c->info.used_memory);
}

static void kv_info_persistence(struct kv_ctx *c, struct kv_buf *b)
{
	kv_buf_puts(b, "# Persistence\r\nloading:0\r\n");
	kv_info_line(b, "aof_enabled", c->log != NULL);
	kv_buf_puts(b, "log_state:");
	kv_buf_puts(b, c->info.log_state ? c->info.log_state : "off");
	kv_buf_puts(b, "\r\n");
	if (c->log == NULL)
		return;
	kv_info_line(b, "log_commits", c->log->st.commits);
	kv_info_line(b, "log_compactions", c->log->st.compactions);
	kv_info_line(b, "log_used_bytes", kv_log_used(c->log) * KV_SECTOR);
	kv_info_line(b, "log_capacity_bytes",
		     kv_log_capacity(c->log) * KV_SECTOR);
	kv_info_line(b, "log_replayed_records", c->log->st.replayed_records);
}

static void kv_info_stats(struct kv_ctx *c, struct kv_buf *b)
{
	kv_buf_puts(b, "# Stats\r\n");
	kv_info_line(b, "total_connections_received",
		     c->info.total_connections);
	kv_info_line(b, "total_commands_processed", c->info.total_commands);
	kv_info_line(b, "rejected_connections", c->info.rejected_connections);
}

static void kv_info_keyspace(struct kv_ctx *c, struct kv_buf *b)
{
	size_t keys = kv_db_size(c->db, c->now);

	kv_buf_puts(b, "# Keyspace\r\n");
	if (keys == 0)
		return;
	kv_buf_puts(b, "db0:keys=");
	kv_put_u64(b, keys);
	kv_buf_puts(b, ",expires=");
	kv_put_u64(b, c->db->nexpires);
	kv_buf_puts(b, ",avg_ttl=0\r\n");
}

static void kv_cmd_info(struct kv_ctx *c, const struct kv_arg *v, size_t n,
			struct kv_buf *out)
{
	static const char *const names[] = {
		"server", "clients", "memory", "persistence", "stats",
		"keyspace",
	};
	void (*const fns[])(struct kv_ctx *, struct kv_buf *) = {
		kv_info_server, kv_info_clients, kv_info_memory,
		kv_info_persistence, kv_info_stats, kv_info_keyspace,
	};
	struct kv_buf b;
	int any = 0;

	kv_buf_init(&b, out->a);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		int want = n == 1;

		for (size_t j = 1; j < n && !want; j++)
			want = kv_is(&v[j], names[i]) || kv_is(&v[j], "all") ||
			       kv_is(&v[j], "default") ||
			       kv_is(&v[j], "everything");
		if (!want)
			continue;
		if (any)
			kv_buf_put(&b, "\r\n", 2);
		fns[i](c, &b);
		any = 1;
	}
	kv_reply_bulk(out, b.p, b.len);
	if (b.oom)
		out->oom = 1;
	kv_buf_free(&b);
}

/* ---- keyspace ------------------------------------------------------------- */

static void kv_cmd_dbsize(struct kv_ctx *c, const struct kv_arg *v, size_t n,
			  struct kv_buf *out)
{
	(void)v;
	(void)n;
	kv_reply_int(out, (int64_t)kv_db_size(c->db, c->now));
}

static void kv_cmd_flushall(struct kv_ctx *c, const struct kv_arg *v,
			    size_t n, struct kv_buf *out)
{
	if (n > 2 || (n == 2 && !kv_is(&v[1], "async") && !kv_is(&v[1], "sync"))) {
		kv_reply_error(out, KV_ERR_SYNTAX);
		return;
	}
	kv_db_flush(c->db);
	kv_op(c, KV_OP_FLUSHALL, NULL, NULL, 0, 0);
	kv_reply_status(out, "OK");
}

static void kv_cmd_del(struct kv_ctx *c, const struct kv_arg *v, size_t n,
		       struct kv_buf *out)
{
	int64_t count = 0;

	for (size_t i = 1; i < n; i++) {
		if (kv_db_del(c->db, v[i].p, v[i].len, c->now)) {
			kv_op(c, KV_OP_DEL, &v[i], NULL, 0, 0);
			count++;
		}
	}
	kv_reply_int(out, count);
}

static void kv_cmd_exists(struct kv_ctx *c, const struct kv_arg *v, size_t n,
			  struct kv_buf *out)
{
	int64_t count = 0;

	for (size_t i = 1; i < n; i++)
		count += kv_lookup(c, &v[i]) != NULL;
	kv_reply_int(out, count);
}

static void kv_cmd_type(struct kv_ctx *c, const struct kv_arg *v, size_t n,
			struct kv_buf *out)
{
	(void)n;
	kv_reply_status(out, kv_lookup(c, &v[1]) ? "string" : "none");
}

struct kv_keys {
	struct kv_ctx *c;
	const struct kv_arg *pat;
	struct kv_buf *b;
	size_t n;
};

static int kv_keys_one(void *ctx, struct kv_entry *e)
{
	struct kv_keys *k = ctx;

	if (e->expire != KV_NO_EXPIRE && e->expire <= k->c->now)
		return 0; /* dead: left for get/dbsize to remove and log */
	if (kv_glob(k->pat->p, k->pat->len, kv_entry_key(e), e->klen, 0)) {
		kv_reply_bulk(k->b, kv_entry_key(e), e->klen);
		k->n++;
	}
	return k->b->oom ? -1 : 0;
}

static void kv_cmd_keys(struct kv_ctx *c, const struct kv_arg *v, size_t n,
			struct kv_buf *out)
{
	struct kv_buf b;
	struct kv_keys k = { c, &v[1], &b, 0 };

	(void)n;
	kv_buf_init(&b, out->a);
	(void)kv_db_foreach(c->db, kv_keys_one, &k);
	kv_reply_array(out, k.n);
	kv_buf_put(out, b.p, b.len);
	if (b.oom)
		out->oom = 1;
	kv_buf_free(&b);
}

/* ---- expiry ------------------------------------------------------------------ */

static void kv_expire_generic(struct kv_ctx *c, const struct kv_arg *v,
			      int seconds, const char *name,
			      struct kv_buf *out)
{
	struct kv_entry *e;
	int64_t at;

	if (kv_expiry(c, &v[2], seconds, 1, name, &at, out) != 0)
		return;
	e = kv_lookup(c, &v[1]);
	if (e == NULL) {
		kv_reply_int(out, 0);
		return;
	}
	if (at <= c->now) {
		(void)kv_db_del(c->db, v[1].p, v[1].len, c->now);
		kv_op(c, KV_OP_DEL, &v[1], NULL, 0, 0);
	} else {
		kv_db_set_expire(c->db, e, at);
		kv_op(c, KV_OP_EXPIRE, &v[1], NULL, 0, at);
	}
	kv_reply_int(out, 1);
}

static void kv_cmd_expire(struct kv_ctx *c, const struct kv_arg *v, size_t n,
			  struct kv_buf *out)
{
	(void)n;
	kv_expire_generic(c, v, 1, "expire", out);
}

static void kv_cmd_pexpire(struct kv_ctx *c, const struct kv_arg *v,
			   size_t n, struct kv_buf *out)
{
	(void)n;
	kv_expire_generic(c, v, 0, "pexpire", out);
}

static void kv_cmd_persist(struct kv_ctx *c, const struct kv_arg *v,
			   size_t n, struct kv_buf *out)
{
	struct kv_entry *e = kv_lookup(c, &v[1]);

	(void)n;
	if (e == NULL || e->expire == KV_NO_EXPIRE) {
		kv_reply_int(out, 0);
		return;
	}
	kv_db_set_expire(c->db, e, KV_NO_EXPIRE);
	kv_op(c, KV_OP_EXPIRE, &v[1], NULL, 0, KV_NO_EXPIRE);
	kv_reply_int(out, 1);
}

static void kv_ttl_generic(struct kv_ctx *c, const struct kv_arg *v,
			   int seconds, struct kv_buf *out)
{
	struct kv_entry *e = kv_lookup(c, &v[1]);
	int64_t left;

	if (e == NULL) {
		kv_reply_int(out, -2);
		return;
	}
	if (e->expire == KV_NO_EXPIRE) {
		kv_reply_int(out, -1);
		return;
	}
	left = e->expire - c->now;
	kv_reply_int(out, seconds ? (left + 500) / 1000 : left);
}

static void kv_cmd_ttl(struct kv_ctx *c, const struct kv_arg *v, size_t n,
		       struct kv_buf *out)
{
	(void)n;
	kv_ttl_generic(c, v, 1, out);
}

static void kv_cmd_pttl(struct kv_ctx *c, const struct kv_arg *v, size_t n,
			struct kv_buf *out)
{
	(void)n;
	kv_ttl_generic(c, v, 0, out);
}

/* ---- strings --------------------------------------------------------------- */

static void kv_cmd_get(struct kv_ctx *c, const struct kv_arg *v, size_t n,
		       struct kv_buf *out)
{
	struct kv_entry *e = kv_lookup(c, &v[1]);

	(void)n;
	if (e == NULL)
		kv_reply_null(out);
	else
		kv_reply_bulk(out, kv_entry_val(e), e->vlen);
}

#define KV_SET_NX      0x1
#define KV_SET_XX      0x2
#define KV_SET_GET     0x4
#define KV_SET_KEEPTTL 0x8

/* SET options from v[3..n): flags, and the EX/PX argument in *exp. */
static int kv_set_opts(const struct kv_arg *v, size_t n, int *flags,
		       const struct kv_arg **exp, int *seconds)
{
	for (size_t j = 3; j < n; j++) {
		const struct kv_arg *o = &v[j];

		if (kv_is(o, "nx") && !(*flags & KV_SET_XX))
			*flags |= KV_SET_NX;
		else if (kv_is(o, "xx") && !(*flags & KV_SET_NX))
			*flags |= KV_SET_XX;
		else if (kv_is(o, "get"))
			*flags |= KV_SET_GET;
		else if (kv_is(o, "keepttl") && *exp == NULL)
			*flags |= KV_SET_KEEPTTL;
		else if ((kv_is(o, "ex") || kv_is(o, "px")) &&
			 !(*flags & KV_SET_KEEPTTL) && *exp == NULL &&
			 j + 1 < n) {
			*seconds = kv_is(o, "ex");
			*exp = &v[++j];
		} else {
			return -1;
		}
	}
	return 0;
}

static void kv_cmd_set(struct kv_ctx *c, const struct kv_arg *v, size_t n,
		       struct kv_buf *out)
{
	const struct kv_arg *exp = NULL;
	int flags = 0, seconds = 0;
	int64_t at = KV_NO_EXPIRE;
	struct kv_entry *e;
	size_t mark = out->len;

	if (kv_set_opts(v, n, &flags, &exp, &seconds) != 0) {
		kv_reply_error(out, KV_ERR_SYNTAX);
		return;
	}
	if (exp != NULL && kv_expiry(c, exp, seconds, 0, "set", &at, out) != 0)
		return;
	e = kv_lookup(c, &v[1]);
	if (flags & KV_SET_GET) {
		if (e != NULL)
			kv_reply_bulk(out, kv_entry_val(e), e->vlen);
		else
			kv_reply_null(out);
	}
	if (((flags & KV_SET_NX) && e != NULL) ||
	    ((flags & KV_SET_XX) && e == NULL)) {
		if (!(flags & KV_SET_GET))
			kv_reply_null(out);
		return;
	}
	if ((flags & KV_SET_KEEPTTL) && e != NULL)
		at = e->expire;
	if (kv_db_set(c->db, v[1].p, v[1].len, v[2].p, v[2].len, at) == NULL) {
		out->len = mark;
		kv_reply_error(out, KV_ERR_OOM);
		return;
	}
	kv_op(c, KV_OP_SET, &v[1], v[2].p, v[2].len, at);
	if (!(flags & KV_SET_GET))
		kv_reply_status(out, "OK");
}

static void kv_cmd_setnx(struct kv_ctx *c, const struct kv_arg *v, size_t n,
			 struct kv_buf *out)
{
	(void)n;
	if (kv_lookup(c, &v[1]) != NULL)
		kv_reply_int(out, 0);
	else if (kv_store(c, &v[1], v[2].p, v[2].len, KV_NO_EXPIRE, out) == 0)
		kv_reply_int(out, 1);
}

static void kv_cmd_getset(struct kv_ctx *c, const struct kv_arg *v, size_t n,
			  struct kv_buf *out)
{
	struct kv_entry *e = kv_lookup(c, &v[1]);
	size_t mark = out->len;

	(void)n;
	if (e != NULL)
		kv_reply_bulk(out, kv_entry_val(e), e->vlen);
	else
		kv_reply_null(out);
	if (kv_db_set(c->db, v[1].p, v[1].len, v[2].p, v[2].len,
		      KV_NO_EXPIRE) == NULL) {
		out->len = mark;
		kv_reply_error(out, KV_ERR_OOM);
		return;
	}
	kv_op(c, KV_OP_SET, &v[1], v[2].p, v[2].len, KV_NO_EXPIRE);
}

static void kv_cmd_getdel(struct kv_ctx *c, const struct kv_arg *v, size_t n,
			  struct kv_buf *out)
{
	struct kv_entry *e = kv_lookup(c, &v[1]);

	(void)n;
	if (e == NULL) {
		kv_reply_null(out);
		return;
	}
	kv_reply_bulk(out, kv_entry_val(e), e->vlen);
	(void)kv_db_del(c->db, v[1].p, v[1].len, c->now);
	kv_op(c, KV_OP_DEL, &v[1], NULL, 0, 0);
}

static void kv_cmd_mget(struct kv_ctx *c, const struct kv_arg *v, size_t n,
			struct kv_buf *out)
{
	kv_reply_array(out, n - 1);
	for (size_t i = 1; i < n; i++) {
		struct kv_entry *e = kv_lookup(c, &v[i]);

		if (e == NULL)
			kv_reply_null(out);
		else
			kv_reply_bulk(out, kv_entry_val(e), e->vlen);
	}
}

static void kv_cmd_mset(struct kv_ctx *c, const struct kv_arg *v, size_t n,
			struct kv_buf *out)
{
	if (n % 2 == 0) {
		kv_reply_arity(out, "mset");
		return;
	}
	for (size_t i = 1; i < n; i += 2)
		if (kv_store(c, &v[i], v[i + 1].p, v[i + 1].len, KV_NO_EXPIRE,
			     out) != 0)
			return;
	kv_reply_status(out, "OK");
}

static void kv_cmd_strlen(struct kv_ctx *c, const struct kv_arg *v, size_t n,
			  struct kv_buf *out)
{
	struct kv_entry *e = kv_lookup(c, &v[1]);

	(void)n;
	kv_reply_int(out, e ? (int64_t)e->vlen : 0);
}

static void kv_cmd_append(struct kv_ctx *c, const struct kv_arg *v, size_t n,
			  struct kv_buf *out)
{
	struct kv_entry *e = kv_lookup(c, &v[1]);
	size_t old = e ? e->vlen : 0;
	int64_t at = e ? e->expire : KV_NO_EXPIRE;
	uint8_t *tmp;

	(void)n;
	if ((long long)old + (long long)v[2].len > KV_MAX_STRING) {
		kv_reply_error(out, "string exceeds maximum allowed size "
				    "(proto-max-bulk-len)");
		return;
	}
	tmp = kv_malloc(c->db->a, old + v[2].len + 1);
	if (tmp == NULL) {
		kv_reply_error(out, KV_ERR_OOM);
		return;
	}
	if (old > 0)
		memcpy(tmp, kv_entry_val(e), old);
	if (v[2].len > 0)
		memcpy(tmp + old, v[2].p, v[2].len);
	if (kv_store(c, &v[1], tmp, old + v[2].len, at, out) == 0)
		kv_reply_int(out, (int64_t)(old + v[2].len));
	kv_free(c->db->a, tmp, old + v[2].len + 1);
}

static void kv_incr_generic(struct kv_ctx *c, const struct kv_arg *k,
			    int64_t by, struct kv_buf *out)
{
	struct kv_entry *e = kv_lookup(c, k);
	int64_t cur = 0, at = KV_NO_EXPIRE;
	char d[KV_I64_MAXLEN + 2];

	if (e != NULL) {
		if (kv_parse_i64(kv_entry_val(e), e->vlen, &cur) != 0) {
			kv_reply_error(out, KV_ERR_INT);
			return;
		}
		at = e->expire;
	}
	if ((by < 0 && cur < 0 && by < INT64_MIN - cur) ||
	    (by > 0 && cur > 0 && by > INT64_MAX - cur)) {
		kv_reply_error(out, KV_ERR_OVERFLOW);
		return;
	}
	cur += by;
	if (kv_store(c, k, (const uint8_t *)d, kv_fmt_i64(d, cur), at, out) == 0)
		kv_reply_int(out, cur);
}

static void kv_cmd_incr(struct kv_ctx *c, const struct kv_arg *v, size_t n,
			struct kv_buf *out)
{
	(void)n;
	kv_incr_generic(c, &v[1], 1, out);
}

static void kv_cmd_decr(struct kv_ctx *c, const struct kv_arg *v, size_t n,
			struct kv_buf *out)
{
	(void)n;
	kv_incr_generic(c, &v[1], -1, out);
}

static void kv_cmd_incrby(struct kv_ctx *c, const struct kv_arg *v, size_t n,
			  struct kv_buf *out)
{
	int64_t by;

	(void)n;
	if (kv_parse_i64(v[2].p, v[2].len, &by) != 0)
		kv_reply_error(out, KV_ERR_INT);
	else
		kv_incr_generic(c, &v[1], by, out);
}

static void kv_cmd_decrby(struct kv_ctx *c, const struct kv_arg *v, size_t n,
			  struct kv_buf *out)
{
	int64_t by;

	(void)n;
	if (kv_parse_i64(v[2].p, v[2].len, &by) != 0)
		kv_reply_error(out, KV_ERR_INT);
	else if (by == INT64_MIN)
		kv_reply_error(out, "decrement would overflow");
	else
		kv_incr_generic(c, &v[1], -by, out);
}

/* ---- table and dispatch ---------------------------------------------------- */

static const struct kv_cmd kv_cmds[] = {
	{ "get", 2, 0, kv_cmd_get },
	{ "set", -3, 1, kv_cmd_set },
	{ "incr", 2, 1, kv_cmd_incr },
	{ "ping", -1, 0, kv_cmd_ping },
	{ "mget", -2, 0, kv_cmd_mget },
	{ "mset", -3, 1, kv_cmd_mset },
	{ "del", -2, 1, kv_cmd_del },
	{ "unlink", -2, 1, kv_cmd_del },
	{ "exists", -2, 0, kv_cmd_exists },
	{ "decr", 2, 1, kv_cmd_decr },
	{ "incrby", 3, 1, kv_cmd_incrby },
	{ "decrby", 3, 1, kv_cmd_decrby },
	{ "setnx", 3, 1, kv_cmd_setnx },
	{ "getset", 3, 1, kv_cmd_getset },
	{ "getdel", 2, 1, kv_cmd_getdel },
	{ "append", 3, 1, kv_cmd_append },
	{ "strlen", 2, 0, kv_cmd_strlen },
	{ "expire", 3, 1, kv_cmd_expire },
	{ "pexpire", 3, 1, kv_cmd_pexpire },
	{ "persist", 2, 1, kv_cmd_persist },
	{ "ttl", 2, 0, kv_cmd_ttl },
	{ "pttl", 2, 0, kv_cmd_pttl },
	{ "type", 2, 0, kv_cmd_type },
	{ "keys", 2, 0, kv_cmd_keys },
	{ "echo", 2, 0, kv_cmd_echo },
	{ "dbsize", 1, 0, kv_cmd_dbsize },
	{ "flushall", -1, 1, kv_cmd_flushall },
	{ "flushdb", -1, 1, kv_cmd_flushall },
	{ "info", -1, 0, kv_cmd_info },
	{ "select", 2, 0, kv_cmd_select },
	{ "command", -1, 0, kv_cmd_command },
	{ "config", -2, 0, kv_cmd_config },
	{ "quit", -1, 0, kv_cmd_quit },
};

#define KV_NCMDS (sizeof(kv_cmds) / sizeof(kv_cmds[0]))

static const struct kv_cmd *kv_find(const struct kv_arg *name)
{
	for (size_t i = 0; i < KV_NCMDS; i++)
		if (kv_is(name, kv_cmds[i].name))
			return &kv_cmds[i];
	return NULL;
}

static void kv_reply_unknown(const struct kv_arg *v, size_t n,
			     struct kv_buf *out)
{
	struct kv_buf m;
	size_t args = 0;

	kv_buf_init(&m, out->a);
	kv_buf_puts(&m, "unknown command '");
	kv_buf_put(&m, v[0].p, v[0].len < 128 ? v[0].len : 128);
	kv_buf_puts(&m, "', with args beginning with: ");
	for (size_t i = 1; i < n && args < 128; i++) {
		size_t k = v[i].len < 128 - args ? v[i].len : 128 - args;

		kv_buf_put(&m, "'", 1);
		kv_buf_put(&m, v[i].p, k);
		kv_buf_put(&m, "' ", 2);
		args += k + 3;
	}
	if (m.oom)
		kv_reply_error(out, "unknown command");
	else
		kv_reply_errorn(out, m.p, m.len);
	kv_buf_free(&m);
}

/* Bytes of ops a write command may append at most: its own ops and a
 * DEL for each argument found expired. */
static size_t kv_op_bound(const struct kv_arg *v, size_t n)
{
	size_t sum = 64;

	for (size_t i = 0; i < n; i++)
		sum += 2 * (v[i].len + 32);
	return sum;
}

static int kv_reserve(struct kv_ctx *c, const struct kv_arg *v, size_t n,
		      struct kv_buf *out)
{
	int r;

	if (c->log == NULL)
		return 0;
	r = kv_log_reserve(c->log, kv_op_bound(v, n), c->now);
	if (r == 0)
		return 0;
	if (r == -KV_ENOMEM)
		kv_reply_error(out, KV_ERR_OOM);
	else if (r == -KV_ENOSPC)
		kv_reply_error(out, "the log device is full: write refused");
	else {
		kv_reply_error(out, "log write failed");
		c->log_failed = 1;
	}
	return -1;
}

/*
 * After a command: log the expiry DELs it left queued.  If the log cannot
 * take them they are dropped (the keys are gone from memory all the same;
 * a replay would at worst bring one back for the rest of its time).
 */
static void kv_flush_expired(struct kv_ctx *c)
{
	int r;

	if (c->nexpired > 0) {
		r = kv_log_reserve(c->log, c->expired.len, c->now);
		if (r == 0)
			kv_move_expired(c);
		else if (r == -KV_EIO)
			c->log_failed = 1;
	}
	c->expired.len = 0;
	c->expired.oom = 0;
	c->nexpired = 0;
	if (c->expired.cap > 65536)
		kv_buf_free(&c->expired);
}

int kv_exec(struct kv_ctx *c, const struct kv_arg *v, size_t n,
	    struct kv_buf *out)
{
	const struct kv_cmd *cmd = kv_find(&v[0]);
	uint32_t ops = 0;

	c->info.total_commands++;
	if (cmd == NULL) {
		kv_reply_unknown(v, n, out);
		return 0;
	}
	if ((cmd->arity > 0 && n != (size_t)cmd->arity) ||
	    (cmd->arity < 0 && n < (size_t)-cmd->arity)) {
		kv_reply_arity(out, cmd->name);
		return 0;
	}
	if (cmd->write && kv_reserve(c, v, n, out) != 0)
		return 0;
	if (c->log != NULL)
		ops = c->log->batch_ops;
	c->db->on_expire = kv_on_expire;
	c->db->on_expire_ctx = c;
	cmd->fn(c, v, n, out);
	c->db->on_expire = NULL;
	kv_flush_expired(c);
	if (cmd->fn == kv_cmd_quit)
		return KV_EXEC_CLOSE;
	return c->log != NULL && c->log->batch_ops != ops ? KV_EXEC_WRITE : 0;
}

void kv_ctx_release(struct kv_ctx *c)
{
	if (c->expired.a != NULL)
		kv_buf_free(&c->expired);
	c->nexpired = 0;
}

/* ---- glob ---------------------------------------------------------------- */

static uint8_t kv_fold(uint8_t ch, int nocase)
{
	return nocase && ch >= 'A' && ch <= 'Z' ? (uint8_t)(ch + 32) : ch;
}

/* [set] at pat[*pi] (after '['), against ch: 1 match, 0 not. */
static int kv_glob_set(const uint8_t *pat, size_t plen, size_t *pi,
		       uint8_t ch, int nocase)
{
	size_t i = *pi;
	int neg = 0, hit = 0;

	if (i < plen && pat[i] == '^') {
		neg = 1;
		i++;
	}
	for (; i < plen && pat[i] != ']'; i++) {
		if (pat[i] == '\\' && i + 1 < plen) {
			i++;
			hit |= kv_fold(pat[i], nocase) == kv_fold(ch, nocase);
		} else if (i + 2 < plen && pat[i + 1] == '-' && pat[i + 2] != ']') {
			uint8_t lo = kv_fold(pat[i], nocase);
			uint8_t hi = kv_fold(pat[i + 2], nocase), x = kv_fold(ch, nocase);

			if (lo > hi) {
				uint8_t t = lo;

				lo = hi;
				hi = t;
			}
			hit |= x >= lo && x <= hi;
			i += 2;
		} else {
			hit |= kv_fold(pat[i], nocase) == kv_fold(ch, nocase);
		}
	}
	*pi = i; /* at ']' or the end */
	return neg ? !hit : hit;
}

int kv_glob(const uint8_t *pat, size_t plen, const uint8_t *s, size_t slen,
	    int nocase)
{
	size_t pi = 0, si = 0, star_p = SIZE_MAX, star_s = 0;

	while (si < slen) {
		if (pi < plen && pat[pi] == '*') {
			star_p = ++pi;
			star_s = si;
			continue;
		}
		if (pi < plen) {
			size_t np = pi + 1;
			int ok;

			if (pat[pi] == '?') {
				ok = 1;
			} else if (pat[pi] == '[') {
				ok = kv_glob_set(pat, plen, &np, s[si], nocase);
				if (np < plen)
					np++;
			} else if (pat[pi] == '\\' && pi + 1 < plen) {
				ok = kv_fold(pat[pi + 1], nocase) == kv_fold(s[si], nocase);
				np = pi + 2;
			} else {
				ok = kv_fold(pat[pi], nocase) == kv_fold(s[si], nocase);
			}
			if (ok) {
				pi = np;
				si++;
				continue;
			}
		}
		if (star_p == SIZE_MAX)
			return 0;
		pi = star_p;
		si = ++star_s;
	}
	while (pi < plen && pat[pi] == '*')
		pi++;
	return pi == plen;
}
