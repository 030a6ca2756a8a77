/*
 * string.c - the C library string functions gcc may call even in
 * freestanding code (struct copies, large initialisers, loops it
 * recognises).
 *
 * Loops here must never be turned back into calls to themselves, so the
 * whole file is compiled without loop-pattern distribution; the bulk
 * operations use `rep movsb` / `rep stosb`, which are fast on every CPU
 * with ERMS and correct on all others.
 */
#include "sdk.h"

#define STR_NO_LDIST __attribute__((optimize("no-tree-loop-distribute-patterns")))

void *memset(void *s, int c, size_t n)
{
	void *d = s;

	__asm__ volatile("rep stosb"
			 : "+D"(d), "+c"(n)
			 : "a"(c)
			 : "memory");
	return s;
}

void *memcpy(void *restrict d, const void *restrict s, size_t n)
{
	void *dd = d;

	__asm__ volatile("rep movsb"
			 : "+D"(dd), "+S"(s), "+c"(n)
			 :
			 : "memory");
	return d;
}

STR_NO_LDIST void *memmove(void *d, const void *s, size_t n)
{
	unsigned char *dp = d;
	const unsigned char *sp = s;

	if (dp <= sp || dp >= sp + n)
		return memcpy(d, s, n);
	while (n > 0) {
		n--;
		dp[n] = sp[n];
	}
	return d;
}

STR_NO_LDIST int memcmp(const void *a, const void *b, size_t n)
{
	const unsigned char *pa = a, *pb = b;

	for (size_t i = 0; i < n; i++) {
		if (pa[i] != pb[i])
			return pa[i] < pb[i] ? -1 : 1;
	}
	return 0;
}

STR_NO_LDIST size_t strlen(const char *s)
{
	size_t n = 0;

	while (s[n] != '\0')
		n++;
	return n;
}

STR_NO_LDIST int strcmp(const char *a, const char *b)
{
	const unsigned char *pa = (const unsigned char *)a;
	const unsigned char *pb = (const unsigned char *)b;

	while (*pa != '\0' && *pa == *pb) {
		pa++;
		pb++;
	}
	return (*pa > *pb) - (*pa < *pb);
}

STR_NO_LDIST int strncmp(const char *a, const char *b, size_t n)
{
	const unsigned char *pa = (const unsigned char *)a;
	const unsigned char *pb = (const unsigned char *)b;

	for (; n > 0; n--, pa++, pb++) {
		if (*pa != *pb || *pa == '\0')
			return (*pa > *pb) - (*pa < *pb);
	}
	return 0;
}
