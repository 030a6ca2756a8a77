/*
 * pkictl.c - `tandem pki`: make the CA, issue host keys and certificates,
 * make pre-shared keys and describe certificates (docs/pki.md).
 *
 *   tandem pki init [--dir DIR] [--name CA-NAME] [--days N] [--force]
 *   tandem pki host NAME [--dir DIR] [--days N] [--start-days OFFSET]
 *                        [--ip ADDR]... [--force]
 *   tandem pki psk [--out FILE] [--force]
 *   tandem pki show FILE
 *
 * Each command is one call into transport/pki.c plus what it prints.  Exit
 * status: 0 done; 1 the work failed, with one "tandem pki: ..." line on
 * stderr naming the file or value; 2 bad usage.  Nothing is overwritten
 * without --force.  Only the PSK (on stdout without --out) is secret
 * output; keys are never printed.
 */
#include "failover.h"
#include "pki.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/crypto.h>
#include <openssl/x509.h>

#define PKICTL_EXIT_OK 0
#define PKICTL_EXIT_FAIL 1
#define PKICTL_EXIT_USAGE 2

#define PKICTL_USAGE_INIT "init [--dir DIR] [--name CA-NAME] [--days N] [--force]"
#define PKICTL_USAGE_HOST "host NAME [--dir DIR] [--days N] " \
			  "[--start-days OFFSET] [--ip ADDR]... [--force]"
#define PKICTL_USAGE_PSK "psk [--out FILE] [--force]"
#define PKICTL_USAGE_SHOW "show FILE"

struct pkictl_opts {
	const char *dir;
	const char *name;        /* --name: the CA's */
	const char *out;         /* --out: the PSK file */
	int days;                /* 0 = the library's default */
	int start_days;
	const char *ips[PKI_MAX_IPS];
	size_t nr_ips;
	bool force;
};

enum {
	PKICTL_OPT_DIR = 'd',
	PKICTL_OPT_NAME = 'n',
	PKICTL_OPT_OUT = 'o',
	PKICTL_OPT_DAYS = 'D',
	PKICTL_OPT_START = 'S',
	PKICTL_OPT_IP = 'i',
	PKICTL_OPT_FORCE = 'f',
};

static void pkictl_usage(FILE *f)
{
	fprintf(f,
		"usage: tandem pki " PKICTL_USAGE_INIT "\n"
		"       tandem pki " PKICTL_USAGE_HOST "\n"
		"       tandem pki " PKICTL_USAGE_PSK "\n"
		"       tandem pki " PKICTL_USAGE_SHOW "\n"
		"DIR defaults to " PKI_DIR_DEFAULT "; validity defaults to %d "
		"days (CA) and %d days (host).\nSee docs/pki.md.\n",
		PKI_CA_DAYS, PKI_HOST_DAYS);
}

static int pkictl_usage_of(const char *usage)
{
	fprintf(stderr, "usage: tandem pki %s\n", usage);
	return PKICTL_EXIT_USAGE;
}

/* One line for a failed operation; -EEXIST gets the way out. */
static int pkictl_fail(int rc, const char *err)
{
	fprintf(stderr, "tandem pki: %s%s\n", err,
		rc == -EEXIST ? " (use --force to replace it)" : "");
	return PKICTL_EXIT_FAIL;
}

/* ---- options --------------------------------------------------------------- */

static int pkictl_parse_int(const char *opt, const char *s, long min,
			    long max, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
		fprintf(stderr, "tandem pki: bad %s \"%s\" (%ld..%ld)\n", opt, s,
			min, max);
		return -EINVAL;
	}
	*out = (int)v;
	return 0;
}

static int pkictl_opt(struct pkictl_opts *o, int c, const char *arg)
{
	switch (c) {
	case PKICTL_OPT_DIR:
		o->dir = arg;
		return 0;
	case PKICTL_OPT_NAME:
		o->name = arg;
		return 0;
	case PKICTL_OPT_OUT:
		o->out = arg;
		return 0;
	case PKICTL_OPT_DAYS:
		return pkictl_parse_int("--days", arg, 1, PKI_DAYS_MAX, &o->days);
	case PKICTL_OPT_START:
		return pkictl_parse_int("--start-days", arg, -PKI_DAYS_MAX,
					PKI_DAYS_MAX, &o->start_days);
	case PKICTL_OPT_IP:
		if (o->nr_ips == PKI_MAX_IPS) {
			fprintf(stderr, "tandem pki: more than %d --ip addresses\n",
				PKI_MAX_IPS);
			return -E2BIG;
		}
		o->ips[o->nr_ips++] = arg;
		return 0;
	case PKICTL_OPT_FORCE:
		o->force = true;
		return 0;
	}
	return -EINVAL;
}

/* Parses a subcommand's options; leaves optind at its first operand. */
static int pkictl_parse(int argc, char **argv, const struct option *longopts,
			struct pkictl_opts *o)
{
	int c;

	memset(o, 0, sizeof(*o));
	o->dir = PKI_DIR_DEFAULT;
	optind = 0;  /* glibc: start over, argv may differ from the last call */
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
		if (c == '?' || c == ':') {
			fprintf(stderr, c == '?' ? "tandem pki %s: unknown option "
				"\"%s\"\n" : "tandem pki %s: option \"%s\" needs "
				"a value\n", argv[0], argv[optind - 1]);
			return -EINVAL;
		}
		if (pkictl_opt(o, c, optarg) != 0)
			return -EINVAL;
	}
	return 0;
}

#define PKICTL_OPTION(name, arg, val) { name, arg, NULL, val }
#define PKICTL_OPTIONS_END { NULL, 0, NULL, 0 }

/* ---- output ------------------------------------------------------------------ */

static int pkictl_describe_file(const char *path, struct pki_cert_info *info)
{
	char err[PKI_ERR_MAX];
	X509 *x;
	int rc = pki_cert_load(path, &x, err, sizeof(err));

	if (rc == 0) {
		rc = pki_cert_describe(x, info, err, sizeof(err));
		X509_free(x);
	}
	return rc == 0 ? 0 : pkictl_fail(rc, err);
}

static const char *pkictl_validity(const struct pki_cert_info *info)
{
	if (info->expired)
		return " (EXPIRED)";
	if (info->not_yet_valid)
		return " (NOT VALID YET)";
	return "";
}

static void pkictl_print_info(const char *path, const struct pki_cert_info *i)
{
	printf("file:        %s\n", path);
	printf("subject:     %s\n", i->subject);
	printf("issuer:      %s\n", i->issuer);
	printf("serial:      %s\n", i->serial);
	printf("key:         %s\n", i->key);
	printf("usage:       %s\n", i->usage);
	printf("names:       %s\n", i->sans[0] ? i->sans : "(none)");
	printf("not before:  %s\n", i->not_before);
	printf("not after:   %s%s\n", i->not_after, pkictl_validity(i));
	printf("sha256:      %s\n", i->fingerprint);
}

/* A host certificate should not outlive the CA that signed it. */
static void pkictl_check_outlives(const char *ca_path, const char *host_path)
{
	char err[PKI_ERR_MAX];
	X509 *ca = NULL, *host = NULL;

	if (pki_cert_load(ca_path, &ca, err, sizeof(err)) == 0 &&
	    pki_cert_load(host_path, &host, err, sizeof(err)) == 0 &&
	    ASN1_TIME_compare(X509_get0_notAfter(host),
			      X509_get0_notAfter(ca)) > 0)
		printf("note: %s outlives its CA %s; from the CA's expiry on, "
		       "it will not verify\n", host_path, ca_path);
	X509_free(ca);
	X509_free(host);
}

/* Where the files go on the host: DIR if absolute, else the default. */
static const char *pkictl_remote_dir(const char *dir)
{
	return dir[0] == '/' ? dir : PKI_DIR_DEFAULT;
}

static void pkictl_print_copy(const char *dir, const char *name,
			      const struct pki_pair *ca,
			      const struct pki_pair *host)
{
	const char *rdir = pkictl_remote_dir(dir);
	struct pki_pair remote;
	char err[PKI_ERR_MAX];

	printf("copy to %s, into %s there:\n", name, rdir);
	printf("  %s\n  %s\n  %s   (secret: keep mode 0600, e.g. install -m "
	       "0600)\n", ca->cert, host->cert, host->key);
	if (pki_pair_paths(rdir, name, &remote, err, sizeof(err)) != 0)
		return;
	printf("config on %s:\n", name);
	printf("  local_name = %s\n", name);
	printf("  security   = cert\n");
	printf("  ca_file    = %s%sca.crt\n", rdir,
	       rdir[strlen(rdir) - 1] == '/' ? "" : "/");
	printf("  cert_file  = %s\n", remote.cert);
	printf("  key_file   = %s\n", remote.key);
	printf("and on %s's peer: peer_name = %s\n", name, name);
}

/* ---- commands ------------------------------------------------------------------ */

static int pkictl_init(int argc, char **argv)
{
	static const struct option longopts[] = {
		PKICTL_OPTION("dir", required_argument, PKICTL_OPT_DIR),
		PKICTL_OPTION("name", required_argument, PKICTL_OPT_NAME),
		PKICTL_OPTION("days", required_argument, PKICTL_OPT_DAYS),
		PKICTL_OPTION("force", no_argument, PKICTL_OPT_FORCE),
		PKICTL_OPTIONS_END,
	};
	struct pkictl_opts o;
	struct pki_ca_opts co;
	struct pki_cert_info info;
	struct pki_pair pair;
	char err[PKI_ERR_MAX];
	int rc;

	if (pkictl_parse(argc, argv, longopts, &o) != 0 || optind != argc)
		return pkictl_usage_of(PKICTL_USAGE_INIT);
	co = (struct pki_ca_opts){ .name = o.name, .days = o.days,
				   .force = o.force };
	rc = pki_ca_create(o.dir, &co, &pair, err, sizeof(err));
	if (rc != 0)
		return pkictl_fail(rc, err);
	if (pkictl_describe_file(pair.cert, &info) != 0)
		return PKICTL_EXIT_FAIL;
	printf("wrote %s (the CA's private key, mode 0600: it stays here)\n",
	       pair.key);
	printf("wrote %s (the CA certificate: every host gets a copy)\n",
	       pair.cert);
	printf("CA %s, valid until %s\n", info.subject, info.not_after);
	printf("CA fingerprint (sha256): %s\n", info.fingerprint);
	if (o.force)
		printf("note: certificates issued by the CA this replaced no "
		       "longer verify; issue them again\n");
	printf("next, for each host: tandem pki host NAME%s%s\n",
	       strcmp(o.dir, PKI_DIR_DEFAULT) != 0 ? " --dir " : "",
	       strcmp(o.dir, PKI_DIR_DEFAULT) != 0 ? o.dir : "");
	return PKICTL_EXIT_OK;
}

static int pkictl_host(int argc, char **argv)
{
	static const struct option longopts[] = {
		PKICTL_OPTION("dir", required_argument, PKICTL_OPT_DIR),
		PKICTL_OPTION("days", required_argument, PKICTL_OPT_DAYS),
		PKICTL_OPTION("start-days", required_argument, PKICTL_OPT_START),
		PKICTL_OPTION("ip", required_argument, PKICTL_OPT_IP),
		PKICTL_OPTION("force", no_argument, PKICTL_OPT_FORCE),
		PKICTL_OPTIONS_END,
	};
	struct pkictl_opts o;
	struct pki_host_opts ho;
	struct pki_cert_info info;
	struct pki_pair pair, ca;
	char err[PKI_ERR_MAX];
	const char *name;
	int rc;

	if (pkictl_parse(argc, argv, longopts, &o) != 0 || optind != argc - 1)
		return pkictl_usage_of(PKICTL_USAGE_HOST);
	name = argv[optind];
	ho = (struct pki_host_opts){ .start_days = o.start_days, .days = o.days,
				     .ips = o.ips, .nr_ips = o.nr_ips,
				     .force = o.force };
	rc = pki_host_create(o.dir, name, &ho, &pair, err, sizeof(err));
	if (rc == 0)
		rc = pki_pair_paths(o.dir, "ca", &ca, err, sizeof(err));
	if (rc != 0)
		return pkictl_fail(rc, err);
	if (pkictl_describe_file(pair.cert, &info) != 0)
		return PKICTL_EXIT_FAIL;
	printf("wrote %s (the private key of %s, mode 0600)\n", pair.key, name);
	printf("wrote %s (%s, signed by %s)\n", pair.cert, info.sans,
	       info.issuer);
	printf("valid %s to %s%s\n", info.not_before, info.not_after,
	       pkictl_validity(&info));
	pkictl_check_outlives(ca.cert, pair.cert);
	pkictl_print_copy(o.dir, name, &ca, &pair);
	return PKICTL_EXIT_OK;
}

static int pkictl_psk(int argc, char **argv)
{
	static const struct option longopts[] = {
		PKICTL_OPTION("out", required_argument, PKICTL_OPT_OUT),
		PKICTL_OPTION("force", no_argument, PKICTL_OPT_FORCE),
		PKICTL_OPTIONS_END,
	};
	char hex[PKI_PSK_HEX_LEN + 2], err[PKI_ERR_MAX];
	struct pkictl_opts o;
	int rc;

	if (pkictl_parse(argc, argv, longopts, &o) != 0 || optind != argc)
		return pkictl_usage_of(PKICTL_USAGE_PSK);
	rc = pki_psk_new(hex, err, sizeof(err));
	if (rc != 0)
		return pkictl_fail(rc, err);
	strcat(hex, "\n");
	if (o.out == NULL) {
		fputs(hex, stdout);
		fflush(stdout);
	} else {
		rc = pki_file_write(o.out, hex, strlen(hex), 0600, o.force, err,
				    sizeof(err));
	}
	OPENSSL_cleanse(hex, sizeof(hex));
	if (rc != 0)
		return pkictl_fail(rc, err);
	if (o.out != NULL)
		printf("wrote %s (a %d-byte pre-shared key as hex, mode 0600): "
		       "both hosts of the pair use the same one\n", o.out,
		       PKI_PSK_BYTES);
	return PKICTL_EXIT_OK;
}

static int pkictl_show(int argc, char **argv)
{
	static const struct option longopts[] = { PKICTL_OPTIONS_END };
	struct pki_cert_info info;
	struct pkictl_opts o;

	if (pkictl_parse(argc, argv, longopts, &o) != 0 || optind != argc - 1)
		return pkictl_usage_of(PKICTL_USAGE_SHOW);
	if (pkictl_describe_file(argv[optind], &info) != 0)
		return PKICTL_EXIT_FAIL;
	pkictl_print_info(argv[optind], &info);
	return PKICTL_EXIT_OK;
}

int pkictl_main(int argc, char **argv)
{
	const char *sub = argc >= 2 ? argv[1] : "";

	if (strcmp(sub, "init") == 0)
		return pkictl_init(argc - 1, argv + 1);
	if (strcmp(sub, "host") == 0)
		return pkictl_host(argc - 1, argv + 1);
	if (strcmp(sub, "psk") == 0)
		return pkictl_psk(argc - 1, argv + 1);
	if (strcmp(sub, "show") == 0)
		return pkictl_show(argc - 1, argv + 1);
	if (strcmp(sub, "help") == 0 || strcmp(sub, "-h") == 0 ||
	    strcmp(sub, "--help") == 0) {
		pkictl_usage(stdout);
		return PKICTL_EXIT_OK;
	}
	if (sub[0] != '\0')
		fprintf(stderr, "tandem pki: unknown subcommand \"%s\" (init, "
			"host, psk, show)\n", sub);
	pkictl_usage(stderr);
	return PKICTL_EXIT_USAGE;
}
