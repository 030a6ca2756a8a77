/*
 * xen_image_dump.c - prints the structure of an xl save image (the file
 * `xl save` writes and `xl restore` reads), checking it on the way with
 * xen_image_scan() (hypervisor-hooks/xen/xen_image.c; formats in Xen's
 * docs/specs/libxl-migration-stream.pandoc, libxc-migration-stream.pandoc
 * and tools/xl/xl.h).  Used to compare tandem's images with real ones.
 *
 *   xen_image_dump [-v] FILE     FILE may be "-" for stdin
 *
 * One line per record, in file order: layer, type number, name, body
 * length.  Runs of PAGE_DATA are folded into one line (records, pages with
 * data, pfn entries) unless -v is given.  Then a summary of the headers
 * and contents.  Exit status: 0 a well-formed image; 1 a malformed image
 * or a read error (the records up to the fault are printed, then the
 * fault, on stderr, with its offset); 2 bad usage or FILE not readable.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "xen/xen_image.h"

struct dump {
	int verbose;
	uint64_t run_records, run_pages, run_entries; /* PAGE_DATA run */
};

static void flush_run(struct dump *d)
{
	if (d->run_records == 0)
		return;
	printf("libxc  0x%08x %-26s x %" PRIu64 " records, %" PRIu64
	       " pages, %" PRIu64 " pfn entries\n", XEN_LIBXC_PAGE_DATA,
	       "PAGE_DATA", d->run_records, d->run_pages, d->run_entries);
	d->run_records = d->run_pages = d->run_entries = 0;
}

static void on_rec(void *arg, const char *layer, uint32_t type,
		   const char *name, uint64_t len, uint64_t pages)
{
	struct dump *d = arg;
	int page_data = strcmp(layer, "libxc") == 0 &&
			type == XEN_LIBXC_PAGE_DATA;

	if (strcmp(layer, "xl") == 0) {
		printf("xl     header, mandatory flags 0x%08" PRIx32
		       ", config %" PRIu64 " bytes\n", type, len);
		return;
	}
	if (page_data && !d->verbose) {
		d->run_records++;
		d->run_pages += pages;
		d->run_entries += (len - 8 - pages * XEN_IMAGE_PAGE_SIZE) / 8;
		return;
	}
	flush_run(d);
	printf("%-6s 0x%08" PRIx32 " %-26s length %" PRIu64, layer, type,
	       name, len);
	if (page_data)
		printf(", %" PRIu64 " pages", pages);
	printf("\n");
}

static const char *domain_name(uint32_t type)
{
	static const char *const names[] = {
		"reserved", "x86 PV", "x86 HVM", "x86 PVH", "ARM",
	};

	return type < sizeof(names) / sizeof(names[0]) ? names[type] : "?";
}

static void print_counts(const char *layer, const uint64_t *count,
			 unsigned n, const char *(*name)(uint32_t))
{
	printf("  %-8s", layer);
	for (unsigned t = 0; t < n; t++)
		if (count[t])
			printf(" %s %" PRIu64, name(t), count[t]);
	printf("\n");
}

static void summary(const struct xen_image_info *i)
{
	printf("summary:\n");
	printf("  xl       mandatory flags 0x%" PRIx32 "%s%s, optional flags "
	       "0x%" PRIx32 ", optional data %" PRIu32 " bytes, config %"
	       PRIu32 " bytes (%s)\n", i->xl_mandatory_flags,
	       i->xl_mandatory_flags & 2 ? " STREAMv2" : "",
	       i->xl_mandatory_flags & 1 ? " JSON" : "",
	       i->xl_optional_flags, i->xl_optional_len, i->config_len,
	       i->config_json ? "JSON" : "xl text");
	printf("  libxl    version %" PRIu32 ", options 0x%" PRIx32 "\n",
	       i->libxl_version, i->libxl_options);
	printf("  libxc    version %" PRIu32 ", options 0x%" PRIx32 ", domain "
	       "type %" PRIu32 " (%s), page_shift %" PRIu32 ", Xen %" PRIu32
	       ".%" PRIu32 "\n", i->libxc_version, i->libxc_options,
	       i->domain_type, domain_name(i->domain_type), i->page_shift,
	       i->xen_major, i->xen_minor);
	printf("  pages    %" PRIu64 " with data, %" PRIu64 " pfn entries, "
	       "highest pfn with data 0x%" PRIx64 ", largest batch %" PRIu32
	       "\n", i->pages, i->pfn_entries, i->max_pfn, i->max_batch);
	printf("  tsc      mode %" PRIu32 ", %" PRIu32 " kHz, %" PRIu64 " ns, "
	       "incarnation %" PRIu32 "\n", i->tsc.mode, i->tsc.khz,
	       i->tsc.nsec, i->tsc.incarnation);
	printf("  hvm      context %" PRIu64 " bytes, %" PRIu32 " params\n",
	       i->hvm_context_len, i->nr_params);
	printf("  policy   %" PRIu64 " CPUID leaves, %" PRIu64 " MSR entries\n",
	       i->cpuid_leaves, i->msr_entries);
	print_counts("libxl", i->libxl_count, XEN_LIBXL_NTYPES,
		     xen_image_libxl_name);
	print_counts("libxc", i->libxc_count, XEN_LIBXC_NTYPES,
		     xen_image_libxc_name);
	if (i->libxc_optional)
		printf("  optional %" PRIu64 " unknown optional libxc "
		       "records\n", i->libxc_optional);
	printf("  bytes    %" PRIu64 "\n", i->bytes);
}

static int usage(const char *prog)
{
	fprintf(stderr, "usage: %s [-v] FILE   (FILE may be - for stdin)\n",
		prog);
	return 2;
}

int main(int argc, char **argv)
{
	struct dump d = { 0 };
	struct xen_image_info info;
	const char *path;
	char err[512] = "";
	int fd, rc, a = 1;

	if (a < argc && strcmp(argv[a], "-v") == 0) {
		d.verbose = 1;
		a++;
	}
	if (argc - a != 1 || (argv[a][0] == '-' && argv[a][1] != '\0'))
		return usage(argv[0]);
	path = argv[a];
	fd = strcmp(path, "-") == 0 ? STDIN_FILENO : open(path, O_RDONLY);
	if (fd < 0) {
		fprintf(stderr, "xen_image_dump: %s: %s\n", path,
			strerror(errno));
		return 2;
	}
	rc = xen_image_scan(fd, &info, on_rec, &d, err, sizeof(err));
	flush_run(&d);
	if (fd != STDIN_FILENO)
		close(fd);
	if (rc) {
		fflush(stdout);
		fprintf(stderr, "xen_image_dump: %s: %s\n", path, err);
		return 1;
	}
	summary(&info);
	return 0;
}
