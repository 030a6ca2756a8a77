/*
 * arena.c - guest memory: one anonymous mapping at UVM_GUEST_BASE.
 *
 * The same fixed address on every host is what lets a guest's pointers,
 * page tables of its own and saved registers stay valid after a restore.
 * MAP_FIXED_NOREPLACE refuses to clobber anything already mapped there.
 * MAP_NORESERVE: a 4 GiB guest costs only the pages it touches.
 */
#include "uvm.h"
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define ARENA_MIN (2ULL << 20)
#define ARENA_MAX (64ULL << 30)

int uvm_arena_map(uint64_t size, uint8_t **out)
{
	void *p;

	*out = NULL;
	if (size < ARENA_MIN || size > ARENA_MAX || size % UVM_PAGE_SIZE != 0) {
		log_error("uvm: guest memory of %" PRIu64 " bytes is invalid "
			  "(need a multiple of 4 KiB between 2 MiB and 64 GiB)",
			  size);
		return -EINVAL;
	}
	p = mmap((void *)(uintptr_t)UVM_GUEST_BASE, size,
		 PROT_READ | PROT_WRITE | PROT_EXEC,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE |
			 MAP_FIXED_NOREPLACE,
		 -1, 0);
	if (p == MAP_FAILED) {
		int rc = -errno;

		log_error("uvm: cannot map %" PRIu64 " MiB of guest memory at "
			  "0x%llx: %s%s", size >> 20, UVM_GUEST_BASE,
			  strerror(-rc),
			  rc == -EEXIST ? " (another guest already lives in "
					  "this process)" : "");
		return rc;
	}
	if (p != (void *)(uintptr_t)UVM_GUEST_BASE) {
		/* Kernels before 4.17 ignore NOREPLACE and pick elsewhere. */
		munmap(p, size);
		log_error("uvm: kernel placed guest memory at %p, not 0x%llx",
			  p, UVM_GUEST_BASE);
		return -EEXIST;
	}
	(void)madvise(p, size, MADV_NOHUGEPAGE);
	*out = p;
	return 0;
}

void uvm_arena_unmap(uint8_t *arena, uint64_t size)
{
	if (arena != NULL)
		munmap(arena, size);
}

static bool arena_page_is_zero(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)p;

	for (size_t i = 0; i < UVM_PAGE_SIZE / sizeof(*w); i++)
		if (w[i] != 0)
			return false;
	return true;
}

/* Resident pages that are not all zero.  mincore() first, so pages the
 * guest never touched are not faulted in just to be looked at. */
int uvm_arena_populated(const uint8_t *arena, uint64_t size, uint64_t *bitmap)
{
	uint64_t n = size / UVM_PAGE_SIZE;
	unsigned char *vec = malloc(n);

	if (vec == NULL)
		return -ENOMEM;
	if (mincore((void *)arena, size, vec) != 0) {
		int rc = -errno;

		free(vec);
		return rc;
	}
	memset(bitmap, 0, ((n + 63) / 64) * sizeof(uint64_t));
	for (uint64_t i = 0; i < n; i++)
		if ((vec[i] & 1) &&
		    !arena_page_is_zero(arena + i * UVM_PAGE_SIZE))
			bitmap[i / 64] |= 1ULL << (i % 64);
	free(vec);
	return 0;
}
