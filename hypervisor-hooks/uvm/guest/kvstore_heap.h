/*
 * kvstore_heap.h - the kvstore guest's memory allocator (guest only): a
 * struct kv_alloc over the SDK page allocator.
 *
 * Small sizes (<= 2 KiB) come from size classes carved out of 64 KiB
 * slabs and go back to per-class free lists (slab pages are never
 * returned); larger sizes are whole page runs from alloc_pages().  Not
 * thread-safe: the kvstore runs on one vCPU.
 */
#ifndef KVSTORE_HEAP_H
#define KVSTORE_HEAP_H

#include "kvstore_sys.h"

extern const struct kv_alloc kv_heap;

/* Bytes handed out and not freed (as requested, before rounding). */
uint64_t kv_heap_used(void);

#endif
