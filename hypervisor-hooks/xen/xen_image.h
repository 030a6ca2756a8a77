/*
 * xen_image.h - write and walk an xl save image (the file `xl save` writes
 * and `xl restore FILE` reads, Xen 4.17), without linking any Xen library.
 *
 * On failover the standby holds the last committed checkpoint of a PVH
 * guest and hands it to Xen's own restore path: xen_image_write() turns it
 * into an image, then `xl restore` runs on it.  xen_image_scan() walks any
 * image, ours or a real `xl save` one, and checks and reports its records.
 *
 * The file is three nested layers (constants are defined in xen_image.c,
 * each with the section or source file it comes from):
 *
 *   xl     tools/xl/xl.h struct save_file_header, then the optional data
 *          (u32 config length + config text); fields in the domain's byte
 *          order (little-endian on x86).
 *   libxl  docs/specs/libxl-migration-stream.pandoc: header (big-endian),
 *          then records; LIBXC_CONTEXT is followed by the whole libxc
 *          stream, and END closes the file.
 *   libxc  docs/specs/libxc-migration-stream.pandoc (v3): image header
 *          (big-endian), domain header and records (little-endian).
 *
 * What xen_image_write() puts out, in order (tools/libs/guest/xg_sr_save.c
 * save() and xg_sr_save_x86_hvm.c; a PVH guest is an HVM domain to libxc
 * and has no device model, so libxl writes no EMULATOR_* record):
 *
 *   xl header + config         (mandatory flags: STREAMv2 only, xl text)
 *   libxl header, LIBXC_CONTEXT
 *     libxc image header (version 3), domain header (x86 HVM, shift 12)
 *     X86_CPUID_POLICY, X86_MSR_POLICY   (each only when given)
 *     STATIC_DATA_END
 *     PAGE_DATA ...            (ascending pfns, at most 1024 a record)
 *     X86_TSC_INFO
 *     HVM_PARAMS               (nonzero values only; omitted if none)
 *     HVM_CONTEXT
 *     END
 *   libxl END
 *
 * HVM_PARAMS comes before HVM_CONTEXT because the spec's Layout section
 * requires it ("HVM_PARAMS must precede HVM_CONTEXT").  Xen 4.17's own
 * saver writes them the other way round; its restorer accepts both, as it
 * keeps the context until END and only then loads it.
 */
#ifndef TANDEM_XEN_IMAGE_H
#define TANDEM_XEN_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define XEN_IMAGE_PAGE_SIZE 4096u
#define XEN_IMAGE_BATCH 1024u          /* pages a PAGE_DATA (MAX_BATCH_SIZE) */
#define XEN_IMAGE_CONFIG_MAX (1u << 20) /* longest xl config accepted */
#define XEN_IMAGE_PARAMS_MAX 64u       /* HVM params; also the index limit */

/* libxl record types (libxl-migration-stream.pandoc, "Record Overview"). */
enum {
	XEN_LIBXL_END = 0,
	XEN_LIBXL_LIBXC_CONTEXT = 1,
	XEN_LIBXL_EMULATOR_XENSTORE_DATA = 2,
	XEN_LIBXL_EMULATOR_CONTEXT = 3,
	XEN_LIBXL_CHECKPOINT_END = 4,
	XEN_LIBXL_CHECKPOINT_STATE = 5,
	XEN_LIBXL_NTYPES
};

/* libxc record types (libxc-migration-stream.pandoc, "Records"). */
enum {
	XEN_LIBXC_END = 0x00,
	XEN_LIBXC_PAGE_DATA = 0x01,
	XEN_LIBXC_X86_PV_INFO = 0x02,
	XEN_LIBXC_X86_PV_P2M_FRAMES = 0x03,
	XEN_LIBXC_X86_PV_VCPU_BASIC = 0x04,
	XEN_LIBXC_X86_PV_VCPU_EXTENDED = 0x05,
	XEN_LIBXC_X86_PV_VCPU_XSAVE = 0x06,
	XEN_LIBXC_SHARED_INFO = 0x07,
	XEN_LIBXC_X86_TSC_INFO = 0x08,
	XEN_LIBXC_HVM_CONTEXT = 0x09,
	XEN_LIBXC_HVM_PARAMS = 0x0a,
	XEN_LIBXC_TOOLSTACK = 0x0b,
	XEN_LIBXC_X86_PV_VCPU_MSRS = 0x0c,
	XEN_LIBXC_VERIFY = 0x0d,
	XEN_LIBXC_CHECKPOINT = 0x0e,
	XEN_LIBXC_CHECKPOINT_DIRTY_PFN_LIST = 0x0f,
	XEN_LIBXC_STATIC_DATA_END = 0x10,
	XEN_LIBXC_X86_CPUID_POLICY = 0x11,
	XEN_LIBXC_X86_MSR_POLICY = 0x12,
	XEN_LIBXC_NTYPES
};

struct xen_image_param {
	uint64_t index, value;
};

struct xen_image_tsc {
	uint32_t mode, khz;
	uint64_t nsec;
	uint32_t incarnation;
};

struct xen_image_src {
	const char *xl_config;  /* xl text config (not JSON), no NUL bytes */
	size_t xl_config_len;   /* 1..XEN_IMAGE_CONFIG_MAX */
	uint32_t xen_major, xen_minor; /* major 1..0xffff, minor 0..0xffff */
	const void *cpuid;      /* X86_CPUID_POLICY body (24-byte leaves), */
	size_t cpuid_len;       /* or NULL/0: record omitted */
	const void *msrs;       /* X86_MSR_POLICY body (16-byte entries), */
	size_t msrs_len;        /* or NULL/0: record omitted */
	struct xen_image_tsc tsc;
	const void *hvm_context; /* required, 1 byte .. 128 MiB */
	size_t hvm_context_len;
	/* Up to XEN_IMAGE_PARAMS_MAX, indexes below that and distinct.  As
	 * Xen's saver does, params whose value is 0 are not written. */
	const struct xen_image_param *params;
	unsigned nr_params;
	uint64_t nr_pfns;        /* pfn space: bits of `present`, <= 2^52 */
	const uint64_t *present; /* bit i set: pfn i is sent; at least one */
	const void *(*page)(void *arg, uint64_t pfn); /* its 4 KiB, or NULL:
						       * the write fails */
	void *arg;
	/* May be NULL.  Pages done and total, after each PAGE_DATA. */
	void (*progress)(void *arg, uint64_t done, uint64_t total);
};

/*
 * Write a complete xl save image to fd, from its current position, in
 * buffered writes (short writes and EINTR are retried).  0 or -errno, and
 * err names what failed.  Invalid input is -EINVAL before anything is
 * written; after a failed write the file holds a partial image that must
 * be discarded.
 */
int xen_image_write(int fd, const struct xen_image_src *src, char *err,
		    size_t errlen);

/* What xen_image_scan() found. */
struct xen_image_info {
	/* xl header */
	uint32_t xl_mandatory_flags; /* 0x2 STREAMv2 [| 0x1 JSON config] */
	uint32_t xl_optional_flags;
	uint32_t xl_optional_len;    /* optional data bytes */
	uint32_t config_len;         /* config bytes (JSON: with its NUL) */
	bool config_json;
	/* libxl header */
	uint32_t libxl_version, libxl_options;
	/* libxc headers */
	uint32_t libxc_version;      /* 3 for Xen 4.17 */
	uint32_t libxc_options;
	uint32_t domain_type;        /* 2: x86 HVM (PVH guests too) */
	uint32_t page_shift;
	uint32_t xen_major, xen_minor;
	/* records */
	uint64_t libxl_count[XEN_LIBXL_NTYPES];
	uint64_t libxc_count[XEN_LIBXC_NTYPES];
	uint64_t libxc_optional;     /* unknown optional (bit 31) records */
	uint64_t pages;              /* PAGE_DATA entries with data */
	uint64_t pfn_entries;        /* all PAGE_DATA entries */
	uint64_t max_pfn;            /* highest pfn of an entry with data */
	uint32_t max_batch;          /* most entries in one PAGE_DATA */
	/* contents of the last record of each kind */
	struct xen_image_tsc tsc;
	uint32_t nr_params;
	uint64_t hvm_context_len;
	uint64_t cpuid_leaves, msr_entries;
	uint64_t bytes;              /* length of the whole image */
};

/*
 * Walk an image from fd's current position to its end (any fd: files and
 * pipes).  rec, if not NULL, is called once for the xl header (layer "xl",
 * type = mandatory flags, name "header", len = config bytes) and then for
 * every record, in file order: layer "libxl" or "libxc", its type number,
 * its name ("UNKNOWN" for an unknown optional type), body length, and for
 * PAGE_DATA the number of pages with data (0 for other records).  Every
 * length, magic, version, reserved field and padding byte is checked; a
 * malformed image is -EINVAL with err naming the offset and the fault,
 * a read error -errno.  info is filled as far as the walk got.
 */
int xen_image_scan(int fd, struct xen_image_info *info,
		   void (*rec)(void *arg, const char *layer, uint32_t type,
			       const char *name, uint64_t len, uint64_t pages),
		   void *arg, char *err, size_t errlen);

/* Names of record types; "UNKNOWN" outside the tables. */
const char *xen_image_libxl_name(uint32_t type);
const char *xen_image_libxc_name(uint32_t type);

#endif
