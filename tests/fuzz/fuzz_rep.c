/*
 * fuzz_rep.c - libFuzzer harness for what a replication peer parses from
 * the other host (TESTING S4): every replication record body decoder in
 * replicator/rep_proto.c (REP_HELLO, REP_WELCOME, REP_EPOCH_END, REP_ACK,
 * REP_HEARTBEAT, REP_DRILL, REP_HANDOVER) and the DISK_WRITE body
 * (disk-sync/ds_write.c).
 *
 * The first input byte picks the decoder (low 3 bits); for DISK_WRITE its
 * high bits also pick the size of the disk the body is checked against.
 * The rest is the body.  A decoder that accepts must produce fields
 * within the limits docs/replication.md and docs/disk-sync.md give, which
 * the harness re-checks (a decoder that accepts garbage is a bug even if
 * nothing crashes), and encoding what it decoded must give back exactly
 * the input: every body has one encoding.
 */
#include "disksync.h"
#include "rep_proto.h"
#include "wire.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check(int cond)
{
	if (!cond)
		abort();
}

static void same(const uint8_t *in, size_t n, const uint8_t *out, size_t len)
{
	check(len == n && memcmp(in, out, n) == 0);
}

static int printable(const char *s, size_t max)
{
	size_t n = strnlen(s, max + 1);

	if (n > max)
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
			return 0;
	return 1;
}

static void fuzz_hello(const uint8_t *p, size_t n)
{
	uint8_t buf[REP_BODY_MAX];
	struct rep_hello h;
	char err[WIRE_ERR_MAX];

	if (rep_hello_decode(p, n, &h, err, sizeof(err)) != 0) {
		check(err[0] != '\0');
		return;
	}
	check(h.role <= REP_ROLE_STANDBY && h.mode <= REP_MODE_HYBRID);
	check(printable(h.vm, REP_NAME_MAX));
	same(p, n, buf, rep_hello_encode(&h, buf));
}

static void fuzz_welcome(const uint8_t *p, size_t n)
{
	uint8_t buf[REP_BODY_MAX];
	struct rep_welcome w;
	char err[WIRE_ERR_MAX];

	if (rep_welcome_decode(p, n, &w, err, sizeof(err)) != 0) {
		check(err[0] != '\0');
		return;
	}
	check(w.status <= REP_WELCOME_REFUSED && w.role <= REP_ROLE_STANDBY);
	check(printable(w.reason, REP_REASON_MAX));
	/* the reserved words must have been zero: the encoder writes 0 */
	same(p, n, buf, rep_welcome_encode(&w, buf));
}

static void fuzz_end(const uint8_t *p, size_t n)
{
	uint8_t buf[REP_BODY_MAX];
	struct rep_epoch_end e;

	if (rep_epoch_end_decode(p, n, &e, NULL, 0) != 0)
		return;
	check(e.epoch > 0 && e.base < e.epoch);
	check((e.flags & ~(uint64_t)REP_END_FULL) == 0);
	check(!!(e.flags & REP_END_FULL) == (e.base == 0));
	same(p, n, buf, rep_epoch_end_encode(&e, buf));
}

static void fuzz_small(unsigned which, const uint8_t *p, size_t n)
{
	uint8_t buf[REP_BODY_MAX];
	char err[WIRE_ERR_MAX];

	switch (which) {
	case 3: {
		struct rep_ack a;

		if (rep_ack_decode(p, n, &a, err, sizeof(err)) == 0)
			same(p, n, buf, rep_ack_encode(&a, buf));
		break;
	}
	case 4: {
		struct rep_heartbeat h;

		if (rep_heartbeat_decode(p, n, &h, err, sizeof(err)) == 0) {
			check(h.role <= REP_ROLE_STANDBY);
			same(p, n, buf, rep_heartbeat_encode(&h, buf));
		}
		break;
	}
	case 5: {
		struct rep_drill d;

		if (rep_drill_decode(p, n, &d, err, sizeof(err)) == 0) {
			check(d.phase < REP_PHASE_NR && d.reserved == 0);
			same(p, n, buf, rep_drill_encode(&d, buf));
		}
		break;
	}
	default: {
		struct rep_handover h;

		if (rep_handover_decode(p, n, &h, err, sizeof(err)) == 0)
			same(p, n, buf, rep_handover_encode(&h, buf));
		break;
	}
	}
}

static void fuzz_disk_write(unsigned sel, const uint8_t *p, size_t n)
{
	static const uint64_t disks[] = {
		0, 512, 4096, 1u << 20, 64ull << 20, 1ull << 40,
		UINT64_MAX - 511, UINT64_MAX,
	};
	uint64_t disk_bytes = disks[sel % 8];
	struct ds_write w;
	char err[DS_ERR_MAX];
	uint8_t *buf;
	size_t len = 0;

	if (ds_write_decode(p, n, disk_bytes, &w, err, sizeof(err)) != 0) {
		check(err[0] != '\0');
		return;
	}
	check(w.disk == 0);
	check(w.kind == DS_KIND_EPOCH || w.kind == DS_KIND_BASE);
	check(w.length >= 1 && w.length <= DS_WRITE_MAX);
	check(w.offset % DS_SECTOR == 0 && w.length % DS_SECTOR == 0);
	check(w.length <= disk_bytes && w.offset <= disk_bytes - w.length);
	check(n == (size_t)DS_WRITE_HEADER + w.length);
	check(w.data == p + DS_WRITE_HEADER);
	buf = malloc(n);
	check(buf != NULL);
	check(ds_write_encode(&w, buf, n, &len) == 0);
	same(p, n, buf, len);
	free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data + 1;
	size_t n;

	if (size < 1)
		return 0;
	n = size - 1;
	/* the digest takes any bytes */
	(void)rep_record_digest(data[0], n, p, n);
	switch (data[0] & 7) {
	case 0:
		fuzz_hello(p, n);
		break;
	case 1:
		fuzz_welcome(p, n);
		break;
	case 2:
		fuzz_end(p, n);
		break;
	case 7:
		fuzz_disk_write(data[0] >> 3, p, n);
		break;
	default:
		fuzz_small(data[0] & 7u, p, n);
		break;
	}
	return 0;
}
