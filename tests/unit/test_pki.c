/*
 * test_pki.c - the PKI helper (transport/pki.c) and `tandem pki`.
 *
 * In a mkdtemp directory, one CA issues host-a (with IP 127.0.0.1), host-b
 * and an already expired "old"; a second CA in other/ issues its own
 * host-a.  Everything is then checked with OpenSSL itself rather than
 * through the helper: chains verify against an X509_STORE of the right CA
 * only, names match their own host only, extensions are what pki.h
 * promises, key files are 0600 whatever the umask, nothing is overwritten
 * without force, bad input is refused quoting the value, the pairs load
 * into an SSL_CTX, and a real TLS 1.3 handshake over a BIO pair succeeds
 * between host-a and host-b and is refused for the wrong name, an expired
 * certificate, another CA's certificate or none at all.  The CLI is run
 * through pkictl_main (included below) for its exit codes and lines.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "pki.h"

/* The CLI is not in the library: build it into this test. */
#include "pkictl.c"

static char g_dir[64];
static char g_err[PKI_ERR_MAX];   /* make_host's last message */

static const char *at(char *buf, const char *name)
{
	snprintf(buf, PKI_PATH_MAX, "%s/%s", g_dir, name);
	return buf;
}

static X509 *load_cert(const char *path)
{
	BIO *b = BIO_new_file(path, "r");
	X509 *x = b != NULL ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;

	BIO_free(b);
	assert_non_null(x);
	return x;
}

static char *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "r");
	char *buf = calloc(1, 65536);

	assert_non_null(f);
	assert_non_null(buf);
	*len = fread(buf, 1, 65535, f);
	fclose(f);
	return buf;
}

static mode_t mode_of(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return st.st_mode & 07777;
}

static bool exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

/* X509_V_OK or the verification error of crt against ca_crt alone. */
static int verify(const char *ca_crt, const char *crt, int purpose,
		  const char *host)
{
	X509_STORE *st = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	X509 *ca = load_cert(ca_crt), *x = load_cert(crt);
	int rc;

	assert_int_equal(X509_STORE_add_cert(st, ca), 1);
	assert_int_equal(X509_STORE_CTX_init(ctx, st, x, NULL), 1);
	assert_int_equal(X509_STORE_CTX_set_purpose(ctx, purpose), 1);
	if (host != NULL)
		X509_VERIFY_PARAM_set1_host(X509_STORE_CTX_get0_param(ctx), host, 0);
	rc = X509_verify_cert(ctx) == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx);
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(st);
	X509_free(ca);
	X509_free(x);
	return rc;
}

static int make_host(const char *dir, const char *name, int start, int days,
		     const char *ip)
{
	const char *ips[1] = { ip };
	struct pki_host_opts o = { .start_days = start, .days = days,
				   .ips = ips, .nr_ips = ip != NULL };

	return pki_host_create(dir, name, &o, NULL, g_err, sizeof(g_err));
}

static int rm_entry(const char *path, const struct stat *st, int flag,
		    struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static int setup(void **state)
{
	char err[PKI_ERR_MAX], p[PKI_PATH_MAX];

	(void)state;
	snprintf(g_dir, sizeof(g_dir), "/tmp/test_pki.XXXXXX");
	if (mkdtemp(g_dir) == NULL)
		return -1;
	if (pki_ca_create(g_dir, NULL, NULL, err, sizeof(err)) != 0 ||
	    pki_ca_create(at(p, "other"), NULL, NULL, err, sizeof(err)) != 0) {
		print_message("pki_ca_create: %s\n", err);
		return -1;
	}
	if (make_host(g_dir, "host-a", 0, 0, "127.0.0.1") != 0 ||
	    make_host(g_dir, "host-b", 0, 0, NULL) != 0 ||
	    make_host(g_dir, "old", -10, 1, NULL) != 0 ||
	    make_host(at(p, "other"), "host-a", 0, 0, NULL) != 0) {
		print_message("pki_host_create: %s\n", g_err);
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	return nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- names ---------------------------------------------------------------- */

static void test_name_check(void **state)
{
	static const char *const good[] = { "a", "host-a", "10.0.0.1", "A.b-C9",
		"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" };
	static const char *const bad[] = { "", "-a", ".a", "a_b", "a/b", "a b",
		"h\xc3\xa4", "a\n", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" };
	char err[PKI_ERR_MAX];

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_int_equal(pki_name_check(good[i], err, sizeof(err)), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(pki_name_check(bad[i], err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "bad host name \""));
	}
	pki_name_check("a_b", err, sizeof(err));
	assert_non_null(strstr(err, "\"a_b\""));
	assert_non_null(strstr(err, "'_'"));
	pki_name_check("a\n", err, sizeof(err));
	assert_non_null(strstr(err, "\"a\\x0a\""));
}

/* ---- certificates ----------------------------------------------------------- */

static bool ext_critical(X509 *x, int nid)
{
	int i = X509_get_ext_by_NID(x, nid, -1);

	assert_true(i >= 0);
	return X509_EXTENSION_get_critical(X509_get_ext(x, i)) == 1;
}

static long days_valid(X509 *x)
{
	int days = 0, secs = 0;

	assert_int_equal(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x),
					X509_get0_notAfter(x)), 1);
	return days;
}

static void test_ca_cert(void **state)
{
	char p[PKI_PATH_MAX];
	X509 *ca = load_cert(at(p, "ca.crt"));
	X509_NAME *subject = X509_get_subject_name(ca);
	char cn[64];

	(void)state;
	assert_int_not_equal(X509_check_ca(ca), 0);
	assert_true(X509_get_extension_flags(ca) & EXFLAG_CA);
	assert_true(ext_critical(ca, NID_basic_constraints));
	assert_int_equal(X509_get_key_usage(ca), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
	assert_non_null(X509_get0_subject_key_id(ca));
	assert_int_equal(X509_NAME_cmp(subject, X509_get_issuer_name(ca)), 0);
	assert_int_equal(X509_verify(ca, X509_get0_pubkey(ca)), 1);
	X509_NAME_get_text_by_NID(subject, NID_commonName, cn, sizeof(cn));
	assert_string_equal(cn, PKI_CA_NAME_DEFAULT);
	assert_int_equal(EVP_PKEY_get_base_id(X509_get0_pubkey(ca)), EVP_PKEY_EC);
	assert_int_equal(days_valid(ca), PKI_CA_DAYS);
	X509_free(ca);
}

static void test_host_verify(void **state)
{
	char ca[PKI_PATH_MAX], a[PKI_PATH_MAX], b[PKI_PATH_MAX];
	X509 *xa, *xb;

	(void)state;
	at(ca, "ca.crt");
	at(a, "host-a.crt");
	at(b, "host-b.crt");
	assert_int_equal(verify(ca, a, X509_PURPOSE_SSL_SERVER, "host-a"), X509_V_OK);
	assert_int_equal(verify(ca, a, X509_PURPOSE_SSL_CLIENT, "host-a"), X509_V_OK);
	assert_int_equal(verify(ca, b, X509_PURPOSE_SSL_SERVER, "host-b"), X509_V_OK);
	assert_int_equal(verify(ca, b, X509_PURPOSE_SSL_CLIENT, "host-b"), X509_V_OK);
	assert_int_equal(verify(ca, a, X509_PURPOSE_SSL_SERVER, "host-b"),
			 X509_V_ERR_HOSTNAME_MISMATCH);
	xa = load_cert(a);
	xb = load_cert(b);
	assert_int_equal(X509_check_host(xa, "host-a", 0, 0, NULL), 1);
	assert_int_equal(X509_check_host(xa, "host-b", 0, 0, NULL), 0);
	assert_int_equal(X509_check_host(xb, "host-b", 0, 0, NULL), 1);
	assert_int_equal(X509_check_host(xb, "host-a", 0, 0, NULL), 0);
	assert_int_equal(X509_check_ip_asc(xa, "127.0.0.1", 0), 1);
	assert_int_equal(X509_check_ip_asc(xb, "127.0.0.1", 0), 0);
	X509_free(xa);
	X509_free(xb);
}

static void check_eku(X509 *x)
{
	EXTENDED_KEY_USAGE *eku = X509_get_ext_d2i(x, NID_ext_key_usage, NULL, NULL);

	assert_non_null(eku);
	assert_int_equal(sk_ASN1_OBJECT_num(eku), 2);
	assert_int_equal(OBJ_obj2nid(sk_ASN1_OBJECT_value(eku, 0)), NID_server_auth);
	assert_int_equal(OBJ_obj2nid(sk_ASN1_OBJECT_value(eku, 1)), NID_client_auth);
	EXTENDED_KEY_USAGE_free(eku);
}

static void check_san(X509 *x, const char *dns, const char *ip4)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	const GENERAL_NAME *g;
	const ASN1_STRING *s;
	int type;

	assert_non_null(gens);
	assert_int_equal(sk_GENERAL_NAME_num(gens), ip4 != NULL ? 2 : 1);
	g = sk_GENERAL_NAME_value(gens, 0);
	s = GENERAL_NAME_get0_value(g, &type);
	assert_int_equal(type, GEN_DNS);
	assert_int_equal(ASN1_STRING_length(s), (int)strlen(dns));
	assert_memory_equal(ASN1_STRING_get0_data(s), dns, strlen(dns));
	if (ip4 != NULL) {
		s = GENERAL_NAME_get0_value(sk_GENERAL_NAME_value(gens, 1), &type);
		assert_int_equal(type, GEN_IPADD);
		assert_int_equal(ASN1_STRING_length(s), 4);
		assert_memory_equal(ASN1_STRING_get0_data(s), ip4, 4);
	}
	GENERAL_NAMES_free(gens);
}

static void test_host_extensions(void **state)
{
	char p[PKI_PATH_MAX], cn[64];
	X509 *ca = load_cert(at(p, "ca.crt"));
	X509 *a = load_cert(at(p, "host-a.crt")), *b = load_cert(at(p, "host-b.crt"));
	const ASN1_INTEGER *sa = X509_get0_serialNumber(a);
	BIGNUM *bn = ASN1_INTEGER_to_BN(sa, NULL);

	(void)state;
	X509_NAME_get_text_by_NID(X509_get_subject_name(a), NID_commonName, cn,
				  sizeof(cn));
	assert_string_equal(cn, "host-a");
	assert_int_equal(X509_get_version(a), X509_VERSION_3);
	assert_int_equal(X509_check_ca(a), 0);
	assert_true(X509_get_extension_flags(a) & EXFLAG_BCONS);
	assert_false(X509_get_extension_flags(a) & EXFLAG_CA);
	assert_int_equal(X509_get_key_usage(a), KU_DIGITAL_SIGNATURE);
	assert_int_equal(X509_get_extended_key_usage(a), XKU_SSL_SERVER | XKU_SSL_CLIENT);
	check_eku(a);
	check_san(a, "host-a", "\x7f\x00\x00\x01");
	check_san(b, "host-b", NULL);
	assert_int_equal(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(a),
					       X509_get0_subject_key_id(ca)), 0);
	assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(a),
				       X509_get_subject_name(ca)), 0);
	assert_int_equal(BN_is_negative(bn), 0);
	assert_true(BN_num_bits(bn) > 64 && BN_num_bits(bn) <= 127);
	assert_int_not_equal(ASN1_INTEGER_cmp(sa, X509_get0_serialNumber(b)), 0);
	assert_int_equal(days_valid(a), PKI_HOST_DAYS);
	BN_free(bn);
	X509_free(ca);
	X509_free(a);
	X509_free(b);
}

static void test_file_modes(void **state)
{
	char p[PKI_PATH_MAX];
	mode_t old = umask(077);
	struct dirent *de;
	DIR *d;

	(void)state;
	assert_int_equal(make_host(g_dir, "umask77", 0, 0, NULL), 0);
	umask(0);
	assert_int_equal(make_host(g_dir, "umask0", 0, 0, NULL), 0);
	umask(old);
	assert_int_equal(mode_of(at(p, "ca.key")), 0600);
	assert_int_equal(mode_of(at(p, "ca.crt")), 0644);
	assert_int_equal(mode_of(at(p, "host-a.key")), 0600);
	assert_int_equal(mode_of(at(p, "host-a.crt")), 0644);
	assert_int_equal(mode_of(at(p, "umask77.key")), 0600);
	assert_int_equal(mode_of(at(p, "umask77.crt")), 0644);
	assert_int_equal(mode_of(at(p, "umask0.key")), 0600);
	assert_int_equal(mode_of(at(p, "umask0.crt")), 0644);
	assert_int_equal(mode_of(at(p, "other")), 0700);
	d = opendir(g_dir);
	assert_non_null(d);
	while ((de = readdir(d)) != NULL)   /* no temp file is left behind */
		assert_true(strcmp(de->d_name, ".") == 0 ||
			    strcmp(de->d_name, "..") == 0 || de->d_name[0] != '.');
	closedir(d);
}

static void test_expired_and_future(void **state)
{
	char ca[PKI_PATH_MAX], p[PKI_PATH_MAX];
	struct pki_cert_info info;
	char err[PKI_ERR_MAX];
	X509 *x;

	(void)state;
	at(ca, "ca.crt");
	assert_int_equal(verify(ca, at(p, "old.crt"), X509_PURPOSE_SSL_CLIENT, "old"),
			 X509_V_ERR_CERT_HAS_EXPIRED);
	x = load_cert(p);
	assert_int_equal(pki_cert_describe(x, &info, err, sizeof(err)), 0);
	assert_true(info.expired);
	assert_false(info.not_yet_valid);
	X509_free(x);
	assert_int_equal(make_host(g_dir, "future", 10, 5, NULL), 0);
	assert_int_equal(verify(ca, at(p, "future.crt"), X509_PURPOSE_SSL_SERVER,
				"future"), X509_V_ERR_CERT_NOT_YET_VALID);
}

static void test_other_ca(void **state)
{
	char ca[PKI_PATH_MAX], p[PKI_PATH_MAX], err[PKI_ERR_MAX];
	EVP_PKEY *k1, *k2, *key = NULL;
	X509 *c1, *c2, *cert = NULL;
	int rc;

	(void)state;
	rc = verify(at(ca, "ca.crt"), at(p, "other/host-a.crt"),
		    X509_PURPOSE_SSL_SERVER, "host-a");
	assert_true(rc == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
		    rc == X509_V_ERR_CERT_SIGNATURE_FAILURE);
	assert_int_equal(verify(at(ca, "other/ca.crt"), p, X509_PURPOSE_SSL_SERVER,
				"host-a"), X509_V_OK);
	/* One CA's key with the other's certificate issues nothing. */
	assert_int_equal(pki_ca_load(g_dir, &k1, &c1, err, sizeof(err)), 0);
	assert_int_equal(pki_ca_load(at(p, "other"), &k2, &c2, err, sizeof(err)), 0);
	assert_int_equal(pki_host_make(k1, c2, "x", NULL, &key, &cert, err,
				       sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "does not belong"));
	assert_null(key);
	assert_null(cert);
	/* A host certificate is no CA. */
	X509_free(c2);
	c2 = load_cert(at(p, "host-b.crt"));
	assert_int_equal(pki_host_make(k1, c2, "x", NULL, &key, &cert, err,
				       sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not a CA"));
	assert_null(cert);
	EVP_PKEY_free(k1);
	EVP_PKEY_free(k2);
	X509_free(c1);
	X509_free(c2);
}

/* ---- files -------------------------------------------------------------------- */

static void test_no_overwrite(void **state)
{
	char key[PKI_PATH_MAX], crt[PKI_PATH_MAX], p[PKI_PATH_MAX], err[PKI_ERR_MAX];
	size_t klen, clen, k2len, c2len;
	char *k1, *c1, *k2, *c2;

	(void)state;
	k1 = read_all(at(key, "ca.key"), &klen);
	c1 = read_all(at(crt, "ca.crt"), &clen);
	assert_int_equal(pki_ca_create(g_dir, NULL, NULL, err, sizeof(err)), -EEXIST);
	assert_non_null(strstr(err, key));
	assert_int_equal(make_host(g_dir, "host-a", 0, 0, NULL), -EEXIST);
	k2 = read_all(key, &k2len);
	c2 = read_all(crt, &c2len);
	assert_int_equal(klen, k2len);
	assert_int_equal(clen, c2len);
	assert_memory_equal(k1, k2, klen);
	assert_memory_equal(c1, c2, clen);
	/* Half a pair present: both are refused, the missing one not made. */
	assert_int_equal(pki_file_write(at(p, "half.crt"), "x", 1, 0644, false,
					err, sizeof(err)), 0);
	assert_int_equal(make_host(g_dir, "half", 0, 0, NULL), -EEXIST);
	assert_false(exists(at(p, "half.key")));
	assert_int_equal(pki_file_write(at(p, "half.crt"), "y", 1, 0644, false,
					err, sizeof(err)), -EEXIST);
	assert_non_null(strstr(err, "half.crt exists"));
	free(k1);
	free(c1);
	free(k2);
	free(c2);
}

static void test_force_replaces(void **state)
{
	struct pki_ca_opts co = { .name = "forced CA", .days = 30, .force = true };
	struct pki_host_opts ho = { .force = true };
	char d[PKI_PATH_MAX], key[PKI_PATH_MAX], err[PKI_ERR_MAX];
	struct pki_pair pair;
	size_t l1, l2;
	char *k1, *k2;

	(void)state;
	at(d, "force");
	assert_int_equal(pki_ca_create(d, NULL, &pair, err, sizeof(err)), 0);
	at(key, "force/ca.key");
	assert_string_equal(pair.key, key);
	k1 = read_all(key, &l1);
	assert_int_equal(pki_ca_create(d, &co, NULL, err, sizeof(err)), 0);
	k2 = read_all(key, &l2);
	assert_false(l1 == l2 && memcmp(k1, k2, l1) == 0);
	assert_int_equal(mode_of(key), 0600);
	free(k1);
	free(k2);
	assert_int_equal(make_host(d, "h", 0, 0, NULL), 0);
	at(key, "force/h.key");
	k1 = read_all(key, &l1);
	assert_int_equal(pki_host_create(d, "h", &ho, NULL, err, sizeof(err)), 0);
	k2 = read_all(key, &l2);
	assert_false(l1 == l2 && memcmp(k1, k2, l1) == 0);
	assert_int_equal(mode_of(key), 0600);
	free(k1);
	free(k2);
}

static void test_bad_input(void **state)
{
	static const char *const bad[] = { "a_b", "-x", "", "ca", "../x", "a/b" };
	const char *ips[] = { "10.0.0.1", "1.2.3" };
	struct pki_host_opts o = { .ips = ips, .nr_ips = 2 };
	struct pki_ca_opts co = { .name = "bad\tname" };
	char p[PKI_PATH_MAX], err[PKI_ERR_MAX];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(pki_host_create(g_dir, bad[i], NULL, NULL, err,
						 sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "bad host name \""));
	}
	assert_false(exists(at(p, "a_b.key")));
	assert_false(exists(at(p, "ca.key.tmp")));
	assert_int_equal(pki_host_create(g_dir, "ipx", &o, NULL, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "\"1.2.3\""));
	assert_false(exists(at(p, "ipx.key")));
	o = (struct pki_host_opts){ .days = -1 };
	assert_int_equal(pki_host_create(g_dir, "d", &o, NULL, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "-1"));
	assert_int_equal(pki_ca_create(at(p, "badca"), &co, NULL, err, sizeof(err)),
			 -EINVAL);
	assert_false(exists(p));   /* nothing made, not even the directory */
	assert_int_equal(pki_host_create(at(p, "nowhere"), "h", NULL, NULL, err,
					 sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "no CA in"));
	assert_int_equal(pki_key_load(at(p, "ca.crt"), &(EVP_PKEY *){ NULL }, err,
				      sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "ca.crt: not a PEM private key"));
	assert_int_equal(ERR_peek_error(), 0);
}

static void test_psk(void **state)
{
	char a[PKI_PSK_HEX_LEN + 1], b[PKI_PSK_HEX_LEN + 1], err[PKI_ERR_MAX];

	(void)state;
	assert_int_equal(pki_psk_new(a, err, sizeof(err)), 0);
	assert_int_equal(pki_psk_new(b, err, sizeof(err)), 0);
	assert_int_equal(strlen(a), 64);
	assert_int_equal(strspn(a, "0123456789abcdef"), 64);
	assert_int_equal(strspn(b, "0123456789abcdef"), 64);
	assert_string_not_equal(a, b);
}

/* ---- TLS ---------------------------------------------------------------------- */

static void test_ssl_ctx(void **state)
{
	char crt[PKI_PATH_MAX], key[PKI_PATH_MAX];
	SSL_CTX *ctx = SSL_CTX_new(TLS_method());

	(void)state;
	assert_non_null(ctx);
	assert_int_equal(SSL_CTX_use_certificate_chain_file(ctx, at(crt, "host-a.crt")), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey_file(ctx, at(key, "host-a.key"),
						     SSL_FILETYPE_PEM), 1);
	assert_int_equal(SSL_CTX_check_private_key(ctx), 1);
	SSL_CTX_free(ctx);
	/* host-a's certificate with host-b's key is not a pair. */
	ctx = SSL_CTX_new(TLS_method());
	assert_int_equal(SSL_CTX_use_certificate_chain_file(ctx, crt), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey_file(ctx, at(key, "host-b.key"),
						     SSL_FILETYPE_PEM), 0);
	SSL_CTX_free(ctx);
	ERR_clear_error();
}

/* A TLS 1.3 context that demands a peer certificate from ca (a path). */
static SSL_CTX *tls_ctx(bool server, const char *ca, const char *dir,
			const char *name)
{
	SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	char crt[PKI_PATH_MAX], key[PKI_PATH_MAX];

	assert_non_null(ctx);
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	assert_int_equal(SSL_CTX_load_verify_locations(ctx, ca, NULL), 1);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
			   NULL);
	if (name != NULL) {
		snprintf(crt, sizeof(crt), "%s/%s.crt", dir, name);
		snprintf(key, sizeof(key), "%s/%s.key", dir, name);
		assert_int_equal(SSL_CTX_use_certificate_chain_file(ctx, crt), 1);
		assert_int_equal(SSL_CTX_use_PrivateKey_file(ctx, key,
							     SSL_FILETYPE_PEM), 1);
	}
	return ctx;
}

static bool hs_step(SSL *ssl, bool *done)
{
	int r, e;

	if (*done)
		return true;
	r = SSL_do_handshake(ssl);
	if (r == 1) {
		*done = true;
		return true;
	}
	e = SSL_get_error(ssl, r);
	return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
}

/*
 * Client (from cdir, certificate cname or none) connects to host-b of the
 * main CA over a BIO pair; each side expects the given peer name.  True if
 * both sides completed; cv and sv get each side's verification result.
 */
static bool handshake(const char *cdir, const char *cname, const char *want_server,
		      const char *want_client, long *cv, long *sv)
{
	char ca[PKI_PATH_MAX];
	SSL_CTX *cctx = tls_ctx(false, at(ca, "ca.crt"), cdir, cname);
	SSL_CTX *sctx = tls_ctx(true, ca, g_dir, "host-b");
	SSL *c = SSL_new(cctx), *s = SSL_new(sctx);
	bool cdone = false, sdone = false, ok = true;
	BIO *bc, *bs;

	assert_int_equal(BIO_new_bio_pair(&bc, 0, &bs, 0), 1);
	SSL_set_bio(c, bc, bc);
	SSL_set_bio(s, bs, bs);
	SSL_set_connect_state(c);
	SSL_set_accept_state(s);
	assert_int_equal(SSL_set1_host(c, want_server), 1);
	assert_int_equal(SSL_set1_host(s, want_client), 1);
	for (int i = 0; ok && i < 64 && !(cdone && sdone); i++)
		ok = hs_step(c, &cdone) && hs_step(s, &sdone);
	*cv = SSL_get_verify_result(c);
	*sv = SSL_get_verify_result(s);
	SSL_free(c);
	SSL_free(s);
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
	ERR_clear_error();
	return ok && cdone && sdone;
}

static void test_tls_handshake(void **state)
{
	char other[PKI_PATH_MAX];
	long cv, sv;

	(void)state;
	assert_true(handshake(g_dir, "host-a", "host-b", "host-a", &cv, &sv));
	assert_int_equal(cv, X509_V_OK);
	assert_int_equal(sv, X509_V_OK);
	/* The server is not who the client expects. */
	assert_false(handshake(g_dir, "host-a", "host-c", "host-a", &cv, &sv));
	assert_int_equal(cv, X509_V_ERR_HOSTNAME_MISMATCH);
	/* The client is not who the server expects. */
	assert_false(handshake(g_dir, "host-a", "host-b", "host-c", &cv, &sv));
	assert_int_equal(sv, X509_V_ERR_HOSTNAME_MISMATCH);
	/* Expired client certificate. */
	assert_false(handshake(g_dir, "old", "host-b", "old", &cv, &sv));
	assert_int_equal(sv, X509_V_ERR_CERT_HAS_EXPIRED);
	/* A certificate from another CA. */
	assert_false(handshake(at(other, "other"), "host-a", "host-b", "host-a",
			       &cv, &sv));
	assert_int_not_equal(sv, X509_V_OK);
	/* No certificate at all. */
	assert_false(handshake(g_dir, NULL, "host-b", "host-a", &cv, &sv));
}

/* ---- description -------------------------------------------------------------- */

static void test_describe(void **state)
{
	char p[PKI_PATH_MAX], err[PKI_ERR_MAX], fp[96] = "";
	unsigned char md[EVP_MAX_MD_SIZE];
	struct pki_cert_info info;
	unsigned int n;
	X509 *x = load_cert(at(p, "host-a.crt"));

	(void)state;
	assert_int_equal(pki_cert_describe(x, &info, err, sizeof(err)), 0);
	assert_string_equal(info.subject, "CN=host-a");
	assert_string_equal(info.issuer, "CN=" PKI_CA_NAME_DEFAULT);
	assert_string_equal(info.sans, "DNS:host-a, IP:127.0.0.1");
	assert_string_equal(info.key, "EC prime256v1");
	assert_string_equal(info.usage, "TLS server, TLS client");
	assert_false(info.is_ca);
	assert_false(info.expired);
	assert_false(info.not_yet_valid);
	assert_non_null(strstr(info.not_after, " UTC"));
	assert_int_equal(X509_digest(x, EVP_sha256(), md, &n), 1);
	for (unsigned int i = 0; i < n; i++)
		snprintf(fp + strlen(fp), sizeof(fp) - strlen(fp), "%s%02X",
			 i ? ":" : "", md[i]);
	assert_string_equal(info.fingerprint, fp);
	assert_int_equal(strlen(info.fingerprint), 95);
	X509_free(x);
	x = load_cert(at(p, "ca.crt"));
	assert_int_equal(pki_cert_describe(x, &info, err, sizeof(err)), 0);
	assert_true(info.is_ca);
	assert_string_equal(info.usage, "CA");
	assert_string_equal(info.sans, "");
	X509_free(x);
}

/* ---- the CLI -------------------------------------------------------------------- */

/* Runs `tandem pki ARGS...` (NULL-terminated); out gets stdout+stderr. */
static int cli(char *out, size_t outlen, ...)
{
	char *argv[32] = { "pki" };
	int argc = 1, rc, so, se;
	FILE *cap = tmpfile();
	va_list ap;
	size_t n;

	va_start(ap, outlen);
	while ((argv[argc] = va_arg(ap, char *)) != NULL)
		argc++;
	va_end(ap);
	assert_non_null(cap);
	fflush(stdout);
	fflush(stderr);
	so = dup(1);
	se = dup(2);
	dup2(fileno(cap), 1);
	dup2(fileno(cap), 2);
	rc = pkictl_main(argc, argv);
	fflush(stdout);
	fflush(stderr);
	dup2(so, 1);
	dup2(se, 2);
	close(so);
	close(se);
	rewind(cap);
	n = fread(out, 1, outlen - 1, cap);
	out[n] = '\0';
	fclose(cap);
	return rc;
}

static void test_cli(void **state)
{
	char d[PKI_PATH_MAX], p[PKI_PATH_MAX], out[8192], want[PKI_PATH_MAX + 64];

	(void)state;
	at(d, "cli");
	assert_int_equal(cli(out, sizeof(out), "init", "--dir", d, "--days", "100",
			     NULL), 0);
	assert_non_null(strstr(out, "CA fingerprint (sha256): "));
	assert_int_equal(mode_of(at(p, "cli/ca.key")), 0600);
	assert_int_equal(cli(out, sizeof(out), "init", "--dir", d, NULL), 1);
	snprintf(want, sizeof(want), "tandem pki: %s/ca.key exists (use --force "
		 "to replace it)\n", d);
	assert_string_equal(out, want);
	assert_int_equal(cli(out, sizeof(out), "init", "--dir", d, "--force",
			     "--name", "cli CA", NULL), 0);
	assert_int_equal(cli(out, sizeof(out), "host", "n1", "--dir", d, "--ip",
			     "10.1.2.3", "--ip", "fe80::1", NULL), 0);
	assert_non_null(strstr(out, "DNS:n1, IP:10.1.2.3, IP:fe80::1"));
	assert_non_null(strstr(out, "key_file   = /tmp/test_pki."));
	assert_int_equal(mode_of(at(p, "cli/n1.key")), 0600);
	assert_int_equal(cli(out, sizeof(out), "host", "n2", "--dir", d,
			     "--start-days", "-10", "--days", "1", NULL), 0);
	assert_non_null(strstr(out, "(EXPIRED)"));
	assert_int_equal(cli(out, sizeof(out), "host", "a_b", "--dir", d, NULL), 1);
	assert_string_equal(out, "tandem pki: bad host name \"a_b\": '_' is not "
			    "allowed (only A-Z a-z 0-9 . -)\n");
	assert_int_equal(cli(out, sizeof(out), "host", "n3", "--dir", d, "--ip",
			     "300.1.1.1", NULL), 1);
	assert_int_equal(cli(out, sizeof(out), "host", "n1", "--dir", d, NULL), 1);
	assert_int_equal(cli(out, sizeof(out), "host", "n1", "--dir", d, "--force",
			     NULL), 0);
	assert_int_equal(cli(out, sizeof(out), "host", "n4", "--dir",
			     at(p, "cli/none"), NULL), 1);
	assert_non_null(strstr(out, "no CA in"));
	assert_int_equal(cli(out, sizeof(out), "show", at(p, "cli/n1.crt"), NULL), 0);
	assert_non_null(strstr(out, "subject:     CN=n1\n"));
	assert_non_null(strstr(out, "issuer:      CN=cli CA\n"));
	assert_int_equal(cli(out, sizeof(out), "show", at(p, "cli/n1.key"), NULL), 1);
	assert_int_equal(cli(out, sizeof(out), "show", at(p, "cli/nope"), NULL), 1);
	assert_int_equal(cli(out, sizeof(out), "psk", NULL), 0);
	assert_int_equal(strlen(out), 65);
	assert_int_equal(cli(out, sizeof(out), "psk", "--out", at(p, "cli/psk"),
			     NULL), 0);
	assert_int_equal(mode_of(p), 0600);
	assert_int_equal(cli(out, sizeof(out), "psk", "--out", p, NULL), 1);
	assert_int_equal(cli(out, sizeof(out), "psk", "--out", p, "--force", NULL), 0);
	/* Bad usage. */
	assert_int_equal(cli(out, sizeof(out), NULL), 2);
	assert_int_equal(cli(out, sizeof(out), "bogus", NULL), 2);
	assert_int_equal(cli(out, sizeof(out), "host", NULL), 2);
	assert_int_equal(cli(out, sizeof(out), "host", "a", "b", NULL), 2);
	assert_int_equal(cli(out, sizeof(out), "host", "a", "--days", "0", NULL), 2);
	assert_int_equal(cli(out, sizeof(out), "host", "a", "--days", NULL), 2);
	assert_int_equal(cli(out, sizeof(out), "init", "--bogus", NULL), 2);
	assert_int_equal(cli(out, sizeof(out), "init", "extra", NULL), 2);
	assert_int_equal(cli(out, sizeof(out), "show", NULL), 2);
	assert_int_equal(cli(out, sizeof(out), "psk", "--ip", "1.2.3.4", NULL), 2);
	assert_int_equal(cli(out, sizeof(out), "help", NULL), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_name_check),
		cmocka_unit_test(test_ca_cert),
		cmocka_unit_test(test_host_verify),
		cmocka_unit_test(test_host_extensions),
		cmocka_unit_test(test_file_modes),
		cmocka_unit_test(test_expired_and_future),
		cmocka_unit_test(test_other_ca),
		cmocka_unit_test(test_no_overwrite),
		cmocka_unit_test(test_force_replaces),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_psk),
		cmocka_unit_test(test_ssl_ctx),
		cmocka_unit_test(test_tls_handshake),
		cmocka_unit_test(test_describe),
		cmocka_unit_test(test_cli),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
