/*
 * kvstore_sys.h - what the portable kvstore modules (kvstore_resp.c,
 * kvstore_db.c, kvstore_cmd.c, kvstore_log.c) need from their
 * environment, so the same files build freestanding for the guest (SDK
 * string functions) and hosted for the unit tests and fuzzers (libc).
 *
 * Memory comes only through struct kv_alloc: the guest passes its page-
 * backed heap (kvstore_heap.c), the host tests pass malloc or a failing
 * allocator.  Frees pass the size that was allocated.
 */
#ifndef KVSTORE_SYS_H
#define KVSTORE_SYS_H

#include <stddef.h>
#include <stdint.h>

#if __STDC_HOSTED__
#include <string.h>
#else
#include "sdk.h"
#endif

/* Negative errno values used by the modules (Linux numbers). */
#define KV_EIO    5
#define KV_ENOMEM 12
#define KV_EINVAL 22
#define KV_ENOSPC 28

struct kv_alloc {
	void *(*alloc)(void *ctx, size_t size);          /* NULL when out */
	void (*free)(void *ctx, void *p, size_t size);   /* p may be NULL */
	void *ctx;
};

static inline void *kv_malloc(const struct kv_alloc *a, size_t size)
{
	return a->alloc(a->ctx, size);
}

static inline void kv_free(const struct kv_alloc *a, void *p, size_t size)
{
	if (p != NULL)
		a->free(a->ctx, p, size);
}

static inline const uint8_t *kv_memchr(const uint8_t *s, uint8_t c, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] == c)
			return s + i;
	return NULL;
}

/* ASCII case-insensitive comparison of s (n bytes) with a C string. */
static inline int kv_eq_nocase(const uint8_t *s, size_t n, const char *lit)
{
	size_t i;

	for (i = 0; i < n; i++) {
		uint8_t a = s[i], b = (uint8_t)lit[i];

		if (b == 0)
			return 0;
		if (a >= 'A' && a <= 'Z')
			a = (uint8_t)(a + 32);
		if (b >= 'A' && b <= 'Z')
			b = (uint8_t)(b + 32);
		if (a != b)
			return 0;
	}
	return lit[n] == 0;
}

#endif
