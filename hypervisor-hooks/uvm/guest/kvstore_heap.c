/*
 * kvstore_heap.c - size-class allocator for the kvstore guest (see
 * kvstore_heap.h).
 *
 * Invariants: every block on kvh_free_list[c] is kvh_class[c] bytes,
 * 16-byte aligned, inside a slab; a size maps to the smallest class that
 * holds it, and a free passes the size the allocation asked for, so both
 * find the same class (or the same page count for large blocks).
 */
#include "kvstore_heap.h"

#define KVH_SLAB_PAGES 16
#define KVH_SLAB_BYTES (KVH_SLAB_PAGES * UVM_PAGE_SIZE)

static const uint32_t kvh_class[] = {
	16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048,
};

#define KVH_NCLASS (sizeof(kvh_class) / sizeof(kvh_class[0]))
#define KVH_SMALL_MAX 2048

struct kvh_block {
	struct kvh_block *next;
};

static struct kvh_block *kvh_free_list[KVH_NCLASS];
static uint8_t *kvh_slab_pos[KVH_NCLASS];
static size_t kvh_slab_left[KVH_NCLASS];
static uint64_t kvh_used;

static unsigned kvh_class_of(size_t n)
{
	unsigned c = 0;

	while (kvh_class[c] < n)
		c++;
	return c;
}

static void *kvh_small(size_t n)
{
	unsigned c = kvh_class_of(n);
	struct kvh_block *b = kvh_free_list[c];

	if (b != NULL) {
		kvh_free_list[c] = b->next;
		return b;
	}
	if (kvh_slab_left[c] < kvh_class[c]) {
		uint8_t *slab = alloc_pages(KVH_SLAB_PAGES);

		if (slab == NULL)
			return NULL;
		kvh_slab_pos[c] = slab;
		kvh_slab_left[c] = KVH_SLAB_BYTES;
	}
	b = (struct kvh_block *)kvh_slab_pos[c];
	kvh_slab_pos[c] += kvh_class[c];
	kvh_slab_left[c] -= kvh_class[c];
	return b;
}

static uint64_t kvh_pages(size_t n)
{
	return ((uint64_t)n + UVM_PAGE_SIZE - 1) / UVM_PAGE_SIZE;
}

static void *kvh_alloc(void *ctx, size_t n)
{
	void *p;

	(void)ctx;
	if (n == 0)
		n = 1;
	p = n <= KVH_SMALL_MAX ? kvh_small(n) : alloc_pages(kvh_pages(n));
	if (p != NULL)
		kvh_used += n;
	return p;
}

static void kvh_free(void *ctx, void *p, size_t n)
{
	(void)ctx;
	if (p == NULL)
		return;
	if (n == 0)
		n = 1;
	kvh_used -= n;
	if (n > KVH_SMALL_MAX) {
		free_pages(p, kvh_pages(n));
		return;
	}
	unsigned c = kvh_class_of(n);
	struct kvh_block *b = p;

	b->next = kvh_free_list[c];
	kvh_free_list[c] = b;
}

const struct kv_alloc kv_heap = { kvh_alloc, kvh_free, NULL };

uint64_t kv_heap_used(void)
{
	return kvh_used;
}
