/*
 * kvstore_cmd.h - the kvstore commands: Redis semantics and reply
 * wording for the string subset kvstore serves.  Portable C11
 * (kvstore_sys.h), so the host unit tests drive it with a fake clock.
 *
 * kv_exec() runs one parsed request against ctx->db at time ctx->now
 * (ms) and appends its reply to `out`.  A command that changes the store
 * first reserves room in ctx->log (when there is one) and appends its
 * effects there as ops, all before returning; the caller must commit the
 * log (kv_log_commit) before it lets any reply of the same round out.
 * If the log cannot take the command (full even after compaction, or out
 * of memory) the command is refused with an error and the store is
 * unchanged; if the log device fails, ctx->log_failed is set (the caller
 * must stop serving: the store is then ahead of the disk).
 *
 * A key that any command finds expired is removed and a DEL for it goes
 * into the log with that command's round (as Redis propagates DEL for
 * expired keys to its AOF), ahead of the command's own ops: so no client
 * sees a key expire that a restart would bring back.
 */
#ifndef KVSTORE_CMD_H
#define KVSTORE_CMD_H

#include "kvstore_db.h"
#include "kvstore_log.h"
#include "kvstore_resp.h"

#define KV_VERSION_STRING "7.0.0"

/* Figures INFO reports; the caller keeps them current. */
struct kv_info {
	int64_t start_ms;
	uint64_t connected_clients;
	uint64_t maxclients;
	uint64_t total_connections;
	uint64_t rejected_connections;
	uint64_t total_commands;
	uint64_t used_memory;   /* bytes allocated */
	const char *log_state;  /* e.g. "on", "off (no disk)" */
};

struct kv_ctx {
	struct kv_db *db;
	struct kv_log *log;     /* NULL: no durability */
	int64_t now;            /* ms, the caller's clock */
	struct kv_info info;
	int log_failed;         /* the log device failed: stop serving */
	/* internal: DEL ops for keys found expired, not yet in the log */
	struct kv_buf expired;
	uint32_t nexpired;
};

/* Free what kv_exec keeps in ctx between calls. */
void kv_ctx_release(struct kv_ctx *ctx);

/* kv_exec result bits. */
#define KV_EXEC_CLOSE 0x1   /* close the connection after this reply */
#define KV_EXEC_WRITE 0x2   /* the command appended ops to the log */

/* argc >= 1.  Returns KV_EXEC_* bits. */
int kv_exec(struct kv_ctx *ctx, const struct kv_arg *argv, size_t argc,
	    struct kv_buf *out);

/* Redis-style glob match (* ? [set] [^set] [a-z] \x), case-sensitive
 * unless nocase. */
int kv_glob(const uint8_t *pat, size_t plen, const uint8_t *s, size_t slen,
	    int nocase);

#endif
