/*
 * wire.h - the tandem record stream: a versioned, checksummed format for
 * moving a guest's memory, vCPU and device state between hosts.
 *
 * The byte layout is specified in docs/wire-format.md; this codec is its
 * reference implementation.  A stream is a 32-byte stream header followed
 * by records: a 32-byte record header, `length` body bytes, zero padding to
 * a multiple of 8.  Every integer on the wire is big-endian.
 *
 * Invariants:
 *  - Wire bytes are read only through struct wire_cursor, whose getters
 *    check bounds and name their byte order.  Nothing casts a buffer.
 *  - Every length, count and index is checked against a fixed limit before
 *    it is used to size a read, an allocation or a loop.
 *  - Decoders never copy page data or device blobs: they return pointers
 *    into the body they were given, valid as long as that body is.
 *  - Functions that can fail return 0 or a negative errno and, where they
 *    take an err buffer, leave a message in it naming the object and
 *    quoting the bad value.  Nothing here logs; the caller decides.
 */
#ifndef TANDEM_WIRE_H
#define TANDEM_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WIRE_VERSION_MAJOR 1
#define WIRE_VERSION_MINOR 0

#define WIRE_STREAM_HEADER_SIZE 32
#define WIRE_RECORD_HEADER_SIZE 32
#define WIRE_ALIGN 8 /* bodies are zero-padded to this */

#define WIRE_PAGE_SIZE 4096
#define WIRE_PAGE_MAX 1024     /* pages per PAGE_DATA record */
#define WIRE_MAX_VCPUS 64
#define WIRE_XSAVE_MAX 16384
#define WIRE_CMDLINE_MAX 255
#define WIRE_BLOB_MAX 65536
/* The largest body of any record: a full PAGE_DATA record. */
#define WIRE_MAX_BODY (8u + WIRE_PAGE_MAX * 8u + WIRE_PAGE_MAX * WIRE_PAGE_SIZE)

/* Fixed parts of the bodies, before their variable-length tails. */
#define WIRE_DOMAIN_INFO_FIXED 64
#define WIRE_VCPU_STATE_FIXED 184
#define WIRE_DEVICE_STATE_FIXED 16
#define WIRE_END_SIZE 16

/* Features: the low 32 bits are mandatory, the high 32 bits optional. */
#define WIRE_FEATURES_MANDATORY 0x00000000ffffffffULL
#define WIRE_FEATURES_KNOWN 0x0ULL /* none defined in 1.0 */

#define WIRE_ERR_MAX 256

enum wire_stream_type {
	WIRE_STREAM_SNAPSHOT = 1,
	WIRE_STREAM_REPLICATION = 2, /* reserved, not yet readable */
	WIRE_STREAM_LINK = 3,        /* one connection of a transport link */
};

enum wire_record_type {
	WIRE_REC_DOMAIN_INFO = 1,
	WIRE_REC_PAGE_DATA = 2,
	WIRE_REC_VCPU_STATE = 3,
	WIRE_REC_DEVICE_STATE = 4,
	WIRE_REC_END = 5,
	WIRE_REC_PAGE_CODED = 6,     /* pages through the page codecs */
	WIRE_REC_DISK_WRITE = 7,     /* guest disk bytes (disk-sync/) */
	/* Link records (docs/transport.md): only in LINK streams. */
	WIRE_REC_LINK_HELLO = 0x101,
	WIRE_REC_LINK_WELCOME = 0x102,
	WIRE_REC_LINK_JOIN = 0x103,
	WIRE_REC_LINK_JOINED = 0x104,
	WIRE_REC_LINK_PING = 0x105,
	WIRE_REC_LINK_PONG = 0x106,
	WIRE_REC_LINK_SYNC = 0x107,
	WIRE_REC_LINK_BYE = 0x108,
	/* Replication records (docs/replication.md): only in LINK streams. */
	WIRE_REC_REP_HELLO = 0x201,
	WIRE_REC_REP_WELCOME = 0x202,
	WIRE_REC_REP_EPOCH_END = 0x203,
	WIRE_REC_REP_ACK = 0x204,
	WIRE_REC_REP_HEARTBEAT = 0x205,
	WIRE_REC_REP_DRILL = 0x206,
	WIRE_REC_REP_HANDOVER = 0x207,
};

/*
 * Bit 31 of a record type marks an optional record.  Optional types do
 * not fit an enum constant (C11 limits those to int), hence the macros.
 */
#define WIRE_REC_OPTIONAL 0x80000000u
#define WIRE_REC_NOTE (WIRE_REC_OPTIONAL | 1u)

enum wire_backend {
	WIRE_BACKEND_UVM = 1,
	WIRE_BACKEND_XEN = 2,
};

/* Order of wire_vcpu_state.gpr[], as on the wire. */
enum wire_gpr {
	WIRE_GPR_RAX, WIRE_GPR_RBX, WIRE_GPR_RCX, WIRE_GPR_RDX,
	WIRE_GPR_RSI, WIRE_GPR_RDI, WIRE_GPR_RBP, WIRE_GPR_RSP,
	WIRE_GPR_R8, WIRE_GPR_R9, WIRE_GPR_R10, WIRE_GPR_R11,
	WIRE_GPR_R12, WIRE_GPR_R13, WIRE_GPR_R14, WIRE_GPR_R15,
	WIRE_NR_GPRS
};

/* ---- reading: bounds-checked cursor ---------------------------------- */

/*
 * A cursor over untrusted bytes.  The first failure is sticky: later
 * getters fail with the same code, zero their outputs and keep the first
 * message, so a decoder may read a run of fields and check once.
 */
struct wire_cursor {
	const uint8_t *p;
	size_t len;
	size_t off;
	int rc; /* 0, or the first error */
	char err[WIRE_ERR_MAX];
};

void wire_cursor_init(struct wire_cursor *cur, const void *p, size_t len);
size_t wire_cursor_left(const struct wire_cursor *cur);
int wire_get_be16(struct wire_cursor *cur, uint16_t *out);
int wire_get_be32(struct wire_cursor *cur, uint32_t *out);
int wire_get_be64(struct wire_cursor *cur, uint64_t *out);
int wire_get_bytes(struct wire_cursor *cur, size_t n, const uint8_t **out);
int wire_cursor_fail(struct wire_cursor *cur, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* ---- writing: growable buffer ---------------------------------------- */

/* Also sticky: after a failed put every later put returns the same error. */
struct wire_buf {
	uint8_t *data;
	size_t len, cap;
	int rc;
};

void wire_buf_init(struct wire_buf *buf);
void wire_buf_fini(struct wire_buf *buf);
void wire_buf_reset(struct wire_buf *buf);
int wire_put_be16(struct wire_buf *buf, uint16_t v);
int wire_put_be32(struct wire_buf *buf, uint32_t v);
int wire_put_be64(struct wire_buf *buf, uint64_t v);
int wire_put_bytes(struct wire_buf *buf, const void *p, size_t n);

/* Writes all of p to fd, retrying partial writes and EINTR. */
int wire_write_all(int fd, const void *p, size_t len);

/* ---- checksums -------------------------------------------------------- */

/*
 * Running stream checksum: XXH3-64 over the big-endian 8-byte checksums of
 * the records so far, plus their count.  wire_sum_init allocates (the
 * XXH3 state needs 64-byte alignment); pair it with wire_sum_fini.
 */
struct XXH3_state_s;
struct wire_sum {
	struct XXH3_state_s *state;
	uint64_t count;
};

int wire_sum_init(struct wire_sum *sum);
void wire_sum_fini(struct wire_sum *sum);
void wire_sum_add(struct wire_sum *sum, uint64_t record_checksum);
uint64_t wire_sum_final(const struct wire_sum *sum);

/* ---- stream and record headers --------------------------------------- */

struct wire_stream_header {
	uint16_t version_major;
	uint16_t version_minor;
	uint32_t header_length;
	uint64_t features;
	uint32_t stream_type;
	uint32_t checksum;
};

struct wire_record_header {
	uint32_t type;
	uint32_t flags;
	uint64_t epoch;
	uint32_t length;   /* body bytes, without padding */
	uint32_t seq;      /* LINK streams: per-channel sequence; else reserved */
	uint64_t checksum;
};

const char *wire_record_type_name(uint32_t type);
bool wire_record_known(uint32_t type);
size_t wire_padded_length(uint32_t length);

int wire_stream_header_put(struct wire_buf *buf, uint32_t stream_type,
			   uint64_t features);
int wire_stream_header_decode(const uint8_t hdr[WIRE_STREAM_HEADER_SIZE],
			      struct wire_stream_header *out,
			      char *err, size_t errlen);

/*
 * Raw record framing.  begin writes a header with length and checksum
 * zero and returns its offset in *mark; the caller appends the body; end
 * pads, fills length and checksum, and returns the checksum (may be NULL).
 * If sum is non-NULL, end adds the record to it.
 */
int wire_record_begin(struct wire_buf *buf, uint32_t type, uint64_t epoch,
		      size_t *mark);
int wire_record_end(struct wire_buf *buf, size_t mark, struct wire_sum *sum,
		    uint64_t *checksum_out);

/*
 * Whole-record framing in place, for LINK streams: hdr gets the header
 * fields and the checksum over hdr, body and padding, with XXH3's seed set
 * to seed (0 in SNAPSHOT streams).  body_and_padding holds
 * wire_padded_length(h->length) bytes with zero padding.  Returns the
 * checksum (also stored in hdr).
 */
uint64_t wire_record_seal(uint8_t hdr[WIRE_RECORD_HEADER_SIZE],
			  const struct wire_record_header *h,
			  const uint8_t *body_and_padding, uint64_t seed);
/*
 * The same over a body given in up to WIRE_SEAL_MAX_PARTS pieces (padding
 * implied); -EINVAL if there are more or their lengths do not sum to
 * h->length.
 */
#define WIRE_SEAL_MAX_PARTS 8
int wire_record_seal_iov(uint8_t hdr[WIRE_RECORD_HEADER_SIZE],
			 const struct wire_record_header *h,
			 const void *const *parts, const size_t *lens,
			 unsigned nparts, uint64_t seed);
/* Whether a record type may appear in a stream of the given type. */
bool wire_record_allowed(uint32_t type, uint32_t stream_type);

/* Checks a record header: cap, known mandatory type, per-type length range. */
int wire_record_header_decode(const uint8_t hdr[WIRE_RECORD_HEADER_SIZE],
			      uint32_t body_cap,
			      struct wire_record_header *out,
			      char *err, size_t errlen);
/* Checks checksum and zero padding; body holds wire_padded_length() bytes. */
int wire_record_verify(const uint8_t hdr[WIRE_RECORD_HEADER_SIZE],
		       const uint8_t *body_and_padding,
		       const struct wire_record_header *rh,
		       char *err, size_t errlen);
/* The same with the checksum seeded (LINK streams). */
int wire_record_verify_seeded(const uint8_t hdr[WIRE_RECORD_HEADER_SIZE],
			      const uint8_t *body_and_padding,
			      const struct wire_record_header *rh,
			      uint64_t seed, char *err, size_t errlen);

/* ---- record bodies ---------------------------------------------------- */
/*
 * Each put appends one whole record (header, body, padding) and adds it to
 * sum when sum is non-NULL; it refuses with -EINVAL what the decoder would
 * refuse.  Each decode takes exactly the body (without padding).
 */

struct wire_domain_info {
	uint32_t backend;         /* enum wire_backend */
	uint32_t nr_vcpus;        /* 1..WIRE_MAX_VCPUS */
	uint64_t guest_base;
	uint64_t mem_bytes;       /* nonzero multiple of page_size */
	uint32_t page_size;       /* WIRE_PAGE_SIZE */
	uint64_t xsave_features;  /* XCR0-style mask */
	uint32_t xsave_size;      /* 0..WIRE_XSAVE_MAX */
	uint64_t guest_clock_ns;
	uint32_t cmdline_len;     /* 0..WIRE_CMDLINE_MAX, no NUL inside */
	char cmdline[WIRE_CMDLINE_MAX + 1]; /* decoder NUL-terminates */
};

struct wire_page_data {
	uint32_t count;                /* 1..WIRE_PAGE_MAX */
	uint64_t pfn[WIRE_PAGE_MAX];   /* distinct, each < nr_pages */
	const uint8_t *data;           /* count * WIRE_PAGE_SIZE, in the body */
};

struct wire_vcpu_state {
	uint32_t vcpu_id;              /* < WIRE_MAX_VCPUS */
	uint32_t xsave_len;            /* 0..WIRE_XSAVE_MAX */
	uint64_t gpr[WIRE_NR_GPRS];    /* enum wire_gpr order */
	uint64_t rip;
	uint64_t rflags;
	uint64_t fs_base;
	uint64_t gs_base;
	uint64_t xfeatures;
	uint64_t timer_deadline_ns;
	uint8_t xsave[WIRE_XSAVE_MAX]; /* hardware XSAVE layout, as-is */
};

struct wire_device_state {
	uint32_t index;
	uint32_t type;
	uint32_t port;
	uint32_t blob_len;             /* 0..WIRE_BLOB_MAX */
	const uint8_t *blob;           /* in the body */
};

struct wire_end {
	uint64_t record_count;
	uint64_t stream_checksum;
};

struct wire_note {
	const char *text;              /* in the body, not NUL-terminated */
	uint32_t len;
};

int wire_domain_info_put(struct wire_buf *buf, uint64_t epoch,
			 const struct wire_domain_info *di,
			 struct wire_sum *sum);
int wire_domain_info_decode(const uint8_t *body, size_t len,
			    struct wire_domain_info *out,
			    char *err, size_t errlen);

/* pages[i] points at the WIRE_PAGE_SIZE bytes of page pfn[i]. */
int wire_page_data_put(struct wire_buf *buf, uint64_t epoch, uint32_t count,
		       const uint64_t *pfn, const void *const *pages,
		       struct wire_sum *sum);
/* data holds count pages back to back. */
int wire_page_data_put_contig(struct wire_buf *buf, uint64_t epoch,
			      uint32_t count, const uint64_t *pfn,
			      const void *data, struct wire_sum *sum);
int wire_page_data_decode(const uint8_t *body, size_t len, uint64_t nr_pages,
			  struct wire_page_data *out,
			  char *err, size_t errlen);

int wire_vcpu_state_put(struct wire_buf *buf, uint64_t epoch,
			const struct wire_vcpu_state *vs,
			struct wire_sum *sum);
int wire_vcpu_state_decode(const uint8_t *body, size_t len,
			   struct wire_vcpu_state *out,
			   char *err, size_t errlen);

int wire_device_state_put(struct wire_buf *buf, uint64_t epoch,
			  const struct wire_device_state *ds,
			  struct wire_sum *sum);
int wire_device_state_decode(const uint8_t *body, size_t len,
			     struct wire_device_state *out,
			     char *err, size_t errlen);

/* END closes the stream: fills record_count and checksum from sum. */
int wire_end_put(struct wire_buf *buf, uint64_t epoch,
		 const struct wire_sum *sum);
int wire_end_decode(const uint8_t *body, size_t len, struct wire_end *out,
		    char *err, size_t errlen);

int wire_note_put(struct wire_buf *buf, uint64_t epoch, const char *text,
		  size_t len, struct wire_sum *sum);
int wire_note_decode(const uint8_t *body, size_t len, struct wire_note *out,
		     char *err, size_t errlen);

/* ---- stream reader ---------------------------------------------------- */

/*
 * Reads a SNAPSHOT stream from an fd or from memory, one record per call.
 * It checks framing, checksums, padding, record order, and END's count and
 * stream checksum; it skips unknown optional records.  Bodies of known
 * records are handed out undecoded: run the matching *_decode on them.
 */
struct wire_reader {
	int fd;                    /* -1 when reading memory */
	const uint8_t *mem;        /* memory input */
	size_t mem_len;
	uint64_t offset;           /* bytes of the stream consumed */
	uint8_t *body;             /* body buffer for fd input */
	struct wire_stream_header header;
	uint64_t nr_records;       /* records read, skipped ones included */
	bool seen_domain_info;
	bool done;                 /* END has been returned */
	int rc;                    /* first error; sticky */
	struct wire_sum sum;
	char err[WIRE_ERR_MAX];
};

struct wire_record {
	uint64_t index;            /* 0-based position in the stream */
	uint64_t offset;           /* stream offset of the record header */
	struct wire_record_header hdr;
	const uint8_t *body;       /* hdr.length bytes; valid until next call */
};

/* Both read and check the stream header.  On failure, r->err says why;
 * wire_reader_close is safe either way (it never closes fd). */
int wire_reader_open(struct wire_reader *r, int fd, uint32_t stream_type);
int wire_reader_open_mem(struct wire_reader *r, const void *data, size_t len,
			 uint32_t stream_type);
int wire_reader_next(struct wire_reader *r, struct wire_record *rec);
void wire_reader_close(struct wire_reader *r);

#endif
