/*
 * pagetest.c - userspace page writer for the Xen test bed's domU.
 *
 * The Linux-process counterpart of the uvm pagetest guest: it maps N MiB,
 * then forever increments byte 0 of every page in ascending order, one pass
 * after another, and counts the passes.  Before each store it checks that
 * the page still holds the value this program last wrote there (the pass
 * number mod 256), so a save/restore or a migration that loses or mixes up
 * pages shows up as errors, not only as a stall.
 *
 * Every INTERVAL seconds it prints one line on stdout (the domU console,
 * which xenconsoled logs in dom0):
 *
 *     pagetest: pass N errors E
 *
 * and writes the same "pass N errors E" line to STATUSFILE (replaced with
 * rename, so a reader never sees half a line), which the guest's TCP
 * service answers with.
 *
 * usage: pagetest [-m MIB] [-i INTERVAL] [-s STATUSFILE]
 *        defaults: 32 MiB, 2 s, /run/pagetest
 *
 * Built static (tests/xen/build.sh) so the busybox initramfs needs no libc.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PT_MAX_ERROR_LINES 16

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void write_status(const char *path, unsigned long long pass,
			 unsigned long long errors)
{
	char tmp[4096];
	FILE *f;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return;
	f = fopen(tmp, "w");
	if (!f)
		return;
	fprintf(f, "pass %llu errors %llu\n", pass, errors);
	if (fclose(f) == 0)
		rename(tmp, path);
}

static void usage(void)
{
	fprintf(stderr, "usage: pagetest [-m MIB] [-i INTERVAL] [-s STATUSFILE]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	unsigned long mib = 32;
	double interval = 2.0, last;
	const char *status = "/run/pagetest";
	volatile uint8_t *region;
	unsigned long long pass = 0, errors = 0;
	size_t page, pages, i;
	int c;

	while ((c = getopt(argc, argv, "m:i:s:")) != -1) {
		switch (c) {
		case 'm': mib = strtoul(optarg, NULL, 0); break;
		case 'i': interval = strtod(optarg, NULL); break;
		case 's': status = optarg; break;
		default: usage();
		}
	}
	if (mib == 0 || interval <= 0)
		usage();

	page = (size_t)sysconf(_SC_PAGESIZE);
	pages = (size_t)mib * 1024 * 1024 / page;
	region = mmap(NULL, pages * page, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (region == MAP_FAILED) {
		fprintf(stderr, "pagetest: mmap %lu MiB: %s\n", mib, strerror(errno));
		return 1;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("pagetest: start mib %lu pages %zu\n", mib, pages);
	write_status(status, 0, 0);
	last = now_s();

	for (;;) {
		uint8_t cur = (uint8_t)pass;

		for (i = 0; i < pages; i++) {
			uint8_t v = region[i * page];

			if (v != cur) {
				errors++;
				if (errors <= PT_MAX_ERROR_LINES)
					printf("pagetest: pass %llu: page %zu holds %u, "
					       "expected %u\n", pass, i, v, cur);
			}
			region[i * page] = (uint8_t)(cur + 1);
		}
		pass++;
		if (now_s() - last >= interval) {
			last = now_s();
			printf("pagetest: pass %llu errors %llu\n", pass, errors);
			write_status(status, pass, errors);
		}
	}
}
