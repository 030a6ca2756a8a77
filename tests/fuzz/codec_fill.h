/*
 * codec_fill.h - the page generator shared by test_codec.c and
 * fuzz_codec.c.  The fuzz seeds in tests/fuzz/corpus/codec/ are written by
 * test_codec --write-seeds and the harness rebuilds its warm-up record
 * from the same pages, so both must use exactly this generator.
 */
#ifndef TANDEM_CODEC_FILL_H
#define TANDEM_CODEC_FILL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "wire.h"

enum fill { FILL_ZERO, FILL_SPARSE, FILL_TEXT, FILL_RANDOM };

static inline void fill_page(uint8_t *p, enum fill kind, uint32_t seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 1;
	static const char text[] = "the quick brown fox jumps over the lazy dog ";

	memset(p, 0, WIRE_PAGE_SIZE);
	for (size_t i = 0; kind == FILL_SPARSE && i < 64; i++)
		p[(seed * 61 + i) % WIRE_PAGE_SIZE] = (uint8_t)(i + seed + 1);
	for (size_t i = 0; kind == FILL_TEXT && i < WIRE_PAGE_SIZE; i++)
		p[i] = (uint8_t)text[(i + seed) % (sizeof(text) - 1)];
	for (size_t i = 0; kind == FILL_RANDOM && i < WIRE_PAGE_SIZE; i++) {
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		p[i] = (uint8_t)((x * 0x2545f4914f6cdd1dULL) >> 56);
	}
}

#endif
