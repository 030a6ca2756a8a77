/*
 * fuzz_xen_image.c - libFuzzer harness for the xl save image scanner
 * (hypervisor-hooks/xen/xen_image.c), which reads images tandem did not
 * write (`xen_image_dump` on a real `xl save` file).
 *
 * Input: byte 0 picks the mode.  Even: the rest is scanned as an image.
 * Odd: a valid image (written once, by xen_image_write, from a small
 * synthetic guest) has the rest of the input XORed into it from offset
 * (byte 1 * 64), so mutations land deep in well-formed structure.  The
 * image goes through a memfd.  The scan must return 0 or -EINVAL, with
 * an error message on -EINVAL, and a clean image must scan as written.
 *
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE
 *        -Icommon -Ihypervisor-hooks tests/fuzz/fuzz_xen_image.c
 *        hypervisor-hooks/xen/xen_image.c common/errmsg.c common/log.c
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "xen/xen_image.h"

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)
#define NR_PFNS 2048

static uint8_t g_page[4096];
static uint8_t *g_image;
static size_t g_image_len;

static const void *page_of(void *arg, uint64_t pfn)
{
	(void)arg;
	g_page[0] = (uint8_t)pfn;
	return g_page;
}

/* A small valid image: 5 pages (one near the top), params, context. */
static void make_image(void)
{
	static uint64_t present[NR_PFNS / 64];
	static const struct xen_image_param params[] = { { 1, 2040 },
							 { 17, 2041 } };
	static const char cfg[] = "name = \"f\"\ntype = \"pvh\"\n";
	static uint8_t ctx[64] = { 1 };
	struct xen_image_src src = {
		.xl_config = cfg, .xl_config_len = sizeof(cfg) - 1,
		.xen_major = 4, .xen_minor = 17,
		.tsc = { .mode = 2, .khz = 1000000, .nsec = 5 },
		.hvm_context = ctx, .hvm_context_len = sizeof(ctx),
		.params = params, .nr_params = 2,
		.nr_pfns = NR_PFNS, .present = present, .page = page_of,
	};
	char err[256];
	int fd = memfd_create("img", 0);
	off_t end;

	present[0] = 0x1f;
	present[NR_PFNS / 64 - 1] = 1ULL << 63;
	CHECK(fd >= 0);
	CHECK(xen_image_write(fd, &src, err, sizeof(err)) == 0);
	end = lseek(fd, 0, SEEK_END);
	g_image_len = (size_t)end;
	g_image = malloc(g_image_len);
	CHECK(g_image != NULL);
	CHECK(pread(fd, g_image, g_image_len, 0) == (ssize_t)g_image_len);
	close(fd);
}

static int scan(const uint8_t *b, size_t n, struct xen_image_info *info)
{
	char err[256] = "";
	int fd = memfd_create("scan", 0), rc;

	CHECK(fd >= 0);
	CHECK(n == 0 || write(fd, b, n) == (ssize_t)n);
	lseek(fd, 0, SEEK_SET);
	rc = xen_image_scan(fd, info, NULL, NULL, err, sizeof(err));
	close(fd);
	CHECK(rc == 0 || rc == -EINVAL);
	CHECK(rc == 0 || err[0] != '\0');
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct xen_image_info info;
	uint8_t *b;
	size_t off;

	if (g_image == NULL) {
		make_image();
		CHECK(scan(g_image, g_image_len, &info) == 0);
		CHECK(info.pages == 6 && info.nr_params == 2);
	}
	if (size < 2)
		return 0;
	if (!(data[0] & 1)) {
		scan(data + 1, size - 1, &info);
		return 0;
	}
	b = malloc(g_image_len);
	CHECK(b != NULL);
	memcpy(b, g_image, g_image_len);
	off = (size_t)data[1] * 64;
	for (size_t i = 2; i < size && off < g_image_len; i++, off++)
		b[off] ^= data[i];
	scan(b, g_image_len, &info);
	free(b);
	return 0;
}
