/*
 * unaligned.h - loads and stores of host-order integers at any address,
 * for host-local formats (signal frames, device state blobs).  Anything
 * that crosses hosts uses the wire format's big-endian cursor instead.
 */
#ifndef TANDEM_UNALIGNED_H
#define TANDEM_UNALIGNED_H

#include <stdint.h>
#include <string.h>

static inline uint32_t get_u32(const void *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static inline uint64_t get_u64(const void *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static inline void put_u16(void *p, uint16_t v)
{
	memcpy(p, &v, sizeof(v));
}

static inline void put_u32(void *p, uint32_t v)
{
	memcpy(p, &v, sizeof(v));
}

static inline void put_u64(void *p, uint64_t v)
{
	memcpy(p, &v, sizeof(v));
}

#endif
