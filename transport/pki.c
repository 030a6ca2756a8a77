/*
 * pki.c - CA, host certificates, pre-shared keys and their files for the
 * links between tandem hosts (pki.h, docs/pki.md).
 *
 * Certificates are built directly with libcrypto (EVP_PKEY, X509, X509V3
 * extensions); nothing shells out.  Fixed extensions come from constant
 * config strings; the subjectAltName, which carries caller input, is built
 * as GENERAL_NAMEs so no input is ever parsed as extension syntax.
 *
 * Files are staged as ".BASE.tmp-RANDOM" in the target directory, created
 * with O_CREAT|O_EXCL and their final mode, fsynced, then renamed into
 * place (RENAME_NOREPLACE unless forced; link+unlink on file systems
 * without it) and the directory fsynced.  A key pair stages both files
 * before publishing either.  Every failure path unlinks what it staged.
 */
#include "pki.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define PKI_QUOTE_MAX 96      /* a quoted value in a message, escaped */
#define PKI_SERIAL_BYTES 16
#define PKI_STAGE_TRIES 8

/* One file to write: its contents, mode and (once staged) temp name. */
struct pki_blob {
	const char *path;
	const void *data;
	size_t len;
	mode_t mode;
	char tmp[PKI_PATH_MAX];
};

/* ---- messages ------------------------------------------------------------ */

static int pki_fail(int rc, char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Leaves a message in err, empties OpenSSL's error queue, returns rc. */
static int pki_fail(int rc, char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err != NULL && errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	ERR_clear_error();
	return rc;
}

/* The reason of OpenSSL's latest error (a static string), for messages. */
static const char *pki_ssl_reason(void)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;

	return r != NULL ? r : "no detail from OpenSSL";
}

/* s, at most len bytes, printable: other bytes become \xNN; long is cut. */
static const char *pki_quote_n(const char *s, size_t len, char q[PKI_QUOTE_MAX])
{
	size_t o = 0, i;

	for (i = 0; i < len && o + 8 < PKI_QUOTE_MAX; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
			q[o++] = (char)c;
		else
			o += (size_t)snprintf(q + o, PKI_QUOTE_MAX - o, "\\x%02x", c);
	}
	if (i < len)
		o += (size_t)snprintf(q + o, PKI_QUOTE_MAX - o, "...");
	q[o] = '\0';
	return q;
}

static const char *pki_quote(const char *s, char q[PKI_QUOTE_MAX])
{
	return pki_quote_n(s, strlen(s), q);
}

/* ---- checks ---------------------------------------------------------------- */

static int pki_name_char_ok(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '.' || c == '-';
}

int pki_name_check(const char *name, char *err, size_t errlen)
{
	char q[PKI_QUOTE_MAX];
	size_t n = name != NULL ? strlen(name) : 0;

	if (n == 0 || n > PKI_NAME_MAX)
		return pki_fail(-EINVAL, err, errlen, "bad host name \"%s\": "
				"%zu characters (1 to %d)", n ? pki_quote(name, q) : "",
				n, PKI_NAME_MAX);
	if (name[0] == '-' || name[0] == '.')
		return pki_fail(-EINVAL, err, errlen, "bad host name \"%s\": "
				"must not start with '%c'", pki_quote(name, q), name[0]);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];

		if (pki_name_char_ok(name[i]))
			continue;
		if (c > 0x20 && c < 0x7f)
			return pki_fail(-EINVAL, err, errlen, "bad host name \"%s\": "
					"'%c' is not allowed (only A-Z a-z 0-9 . -)",
					pki_quote(name, q), c);
		return pki_fail(-EINVAL, err, errlen, "bad host name \"%s\": byte "
				"0x%02x is not allowed (only A-Z a-z 0-9 . -)",
				pki_quote(name, q), c);
	}
	return 0;
}

static int pki_ca_name_check(const char *name, char *err, size_t errlen)
{
	char q[PKI_QUOTE_MAX];
	size_t n = strlen(name);

	if (n == 0 || n > PKI_CA_NAME_MAX)
		return pki_fail(-EINVAL, err, errlen, "bad CA name \"%s\": %zu "
				"bytes (1 to %d)", pki_quote(name, q), n,
				PKI_CA_NAME_MAX);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
			return pki_fail(-EINVAL, err, errlen, "bad CA name \"%s\": "
					"control characters are not allowed",
					pki_quote(name, q));
	return 0;
}

static int pki_range_check(const char *what, int v, int min, int max,
			   char *err, size_t errlen)
{
	if (v < min || v > max)
		return pki_fail(-EINVAL, err, errlen, "bad %s %d (%d..%d)", what,
				v, min, max);
	return 0;
}

/* Parses an IPv4 or IPv6 address into 4 or 16 bytes; 0 if it is not one. */
static size_t pki_ip_parse(const char *ip, unsigned char out[16])
{
	if (inet_pton(AF_INET, ip, out) == 1)
		return 4;
	if (inet_pton(AF_INET6, ip, out) == 1)
		return 16;
	return 0;
}

static int pki_ips_check(const char *name, const struct pki_host_opts *o,
			 char *err, size_t errlen)
{
	unsigned char buf[16];
	char q[PKI_QUOTE_MAX];

	if (o->nr_ips > PKI_MAX_IPS || (o->nr_ips > 0 && o->ips == NULL))
		return pki_fail(-EINVAL, err, errlen, "host %s: %zu IP addresses "
				"(at most %d)", name, o->nr_ips, PKI_MAX_IPS);
	for (size_t i = 0; i < o->nr_ips; i++)
		if (o->ips[i] == NULL || pki_ip_parse(o->ips[i], buf) == 0)
			return pki_fail(-EINVAL, err, errlen, "host %s: bad IP "
					"address \"%s\"", name, o->ips[i] ?
					pki_quote(o->ips[i], q) : "");
	return 0;
}

/* ---- building certificates ----------------------------------------------- */

/* A random positive serial of up to 127 bits (RFC 5280: at most 20 octets). */
static int pki_set_serial(X509 *x)
{
	unsigned char b[PKI_SERIAL_BYTES];
	BIGNUM *bn = NULL;
	int rc = -EIO;

	do {
		if (RAND_bytes(b, sizeof(b)) != 1)
			return -EIO;
		b[0] &= 0x7f;
		BN_free(bn);
		bn = BN_bin2bn(b, sizeof(b), NULL);
	} while (bn != NULL && BN_is_zero(bn));
	if (bn != NULL && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL)
		rc = 0;
	BN_free(bn);
	return rc;
}

/* not-before = now + start_days - a little slack; not-after = + days. */
static int pki_set_validity(X509 *x, int start_days, int days)
{
	time_t now = time(NULL);

	if (X509_time_adj_ex(X509_getm_notBefore(x), start_days,
			     -PKI_BACKDATE_SECS, &now) == NULL ||
	    X509_time_adj_ex(X509_getm_notAfter(x), start_days + days, 0,
			     &now) == NULL)
		return -EIO;
	return 0;
}

static int pki_set_cn(X509_NAME *n, const char *cn)
{
	return X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8,
					  (const unsigned char *)cn, -1, -1,
					  0) == 1 ? 0 : -EINVAL;
}

/* A v3 certificate for key: serial, validity, subject CN=cn; unsigned. */
static X509 *pki_cert_new(EVP_PKEY *key, const char *cn, int start_days,
			  int days)
{
	X509 *x = X509_new();

	if (x == NULL || X509_set_version(x, X509_VERSION_3) != 1 ||
	    pki_set_serial(x) != 0 || pki_set_validity(x, start_days, days) != 0 ||
	    pki_set_cn(X509_get_subject_name(x), cn) != 0 ||
	    X509_set_pubkey(x, key) != 1) {
		X509_free(x);
		return NULL;
	}
	return x;
}

/* Adds one extension given in OpenSSL's config syntax (constants only). */
static int pki_add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	int ok;

	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (ext == NULL)
		return -EIO;
	ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok == 1 ? 0 : -EIO;
}

static int pki_push_gen(GENERAL_NAMES *gens, int type, ASN1_STRING *value)
{
	GENERAL_NAME *gen = GENERAL_NAME_new();

	if (gen == NULL) {
		ASN1_STRING_free(value);
		return -ENOMEM;
	}
	GENERAL_NAME_set0_value(gen, type, value);
	if (sk_GENERAL_NAME_push(gens, gen) <= 0) {
		GENERAL_NAME_free(gen);
		return -ENOMEM;
	}
	return 0;
}

/* subjectAltName DNS:name, IP:each address (checked by pki_ips_check). */
static int pki_add_san(X509 *x, const char *name, const struct pki_host_opts *o)
{
	GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
	unsigned char ip[16];
	ASN1_STRING *s;
	int rc = gens != NULL ? 0 : -ENOMEM;

	s = ASN1_IA5STRING_new();
	if (rc == 0 && (s == NULL || ASN1_STRING_set(s, name, -1) != 1)) {
		ASN1_STRING_free(s);
		rc = -ENOMEM;
	} else if (rc == 0) {
		rc = pki_push_gen(gens, GEN_DNS, s);
	}
	for (size_t i = 0; rc == 0 && i < o->nr_ips; i++) {
		size_t len = pki_ip_parse(o->ips[i], ip);

		s = ASN1_OCTET_STRING_new();
		if (s == NULL || ASN1_OCTET_STRING_set(s, ip, (int)len) != 1) {
			ASN1_OCTET_STRING_free(s);
			rc = -ENOMEM;
			break;
		}
		rc = pki_push_gen(gens, GEN_IPADD, s);
	}
	if (rc == 0 && X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0,
					 X509V3_ADD_DEFAULT) != 1)
		rc = -EIO;
	GENERAL_NAMES_free(gens);
	return rc;
}

static EVP_PKEY *pki_keygen(void)
{
	return EVP_EC_gen("P-256");
}

int pki_ca_make(const struct pki_ca_opts *o, EVP_PKEY **key_out,
		X509 **cert_out, char *err, size_t errlen)
{
	const char *name = o != NULL && o->name != NULL ? o->name
							 : PKI_CA_NAME_DEFAULT;
	int days = o != NULL && o->days != 0 ? o->days : PKI_CA_DAYS;
	EVP_PKEY *key;
	X509 *x;
	int rc;

	rc = pki_ca_name_check(name, err, errlen);
	if (rc == 0)
		rc = pki_range_check("CA validity (days)", days, 1, PKI_DAYS_MAX,
				     err, errlen);
	if (rc != 0)
		return rc;
	key = pki_keygen();
	if (key == NULL)
		return pki_fail(-EIO, err, errlen, "cannot make a P-256 key for "
				"CA \"%s\": %s", name, pki_ssl_reason());
	x = pki_cert_new(key, name, 0, days);
	if (x == NULL || X509_set_issuer_name(x, X509_get_subject_name(x)) != 1 ||
	    pki_add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE") != 0 ||
	    pki_add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") != 0 ||
	    pki_add_ext(x, x, NID_subject_key_identifier, "hash") != 0 ||
	    X509_sign(x, key, EVP_sha256()) <= 0) {
		rc = pki_fail(-EIO, err, errlen, "cannot make the certificate of "
			      "CA \"%s\": %s", name, pki_ssl_reason());
		X509_free(x);
		EVP_PKEY_free(key);
		return rc;
	}
	*key_out = key;
	*cert_out = x;
	ERR_clear_error();
	return 0;
}

static int pki_host_opts_check(const char *name, const struct pki_host_opts *o,
			       int days, char *err, size_t errlen)
{
	int rc = pki_name_check(name, err, errlen);

	if (rc == 0)
		rc = pki_range_check("host validity (days)", days, 1,
				     PKI_DAYS_MAX, err, errlen);
	if (rc == 0)
		rc = pki_range_check("validity start (days from now)",
				     o->start_days, -PKI_DAYS_MAX, PKI_DAYS_MAX,
				     err, errlen);
	if (rc == 0)
		rc = pki_ips_check(name, o, err, errlen);
	return rc;
}

static int pki_ca_check(EVP_PKEY *ca_key, X509 *ca_cert, char *err,
			size_t errlen)
{
	if (X509_check_ca(ca_cert) == 0)
		return pki_fail(-EINVAL, err, errlen, "the CA certificate is not "
				"a CA (no basicConstraints CA:TRUE)");
	if (X509_check_private_key(ca_cert, ca_key) != 1)
		return pki_fail(-EINVAL, err, errlen, "the CA key does not belong "
				"to the CA certificate");
	return 0;
}

int pki_host_make(EVP_PKEY *ca_key, X509 *ca_cert, const char *name,
		  const struct pki_host_opts *o, EVP_PKEY **key_out,
		  X509 **cert_out, char *err, size_t errlen)
{
	static const struct pki_host_opts defaults;
	EVP_PKEY *key;
	X509 *x;
	int days, rc;

	o = o != NULL ? o : &defaults;
	days = o->days != 0 ? o->days : PKI_HOST_DAYS;
	rc = pki_host_opts_check(name, o, days, err, errlen);
	if (rc == 0)
		rc = pki_ca_check(ca_key, ca_cert, err, errlen);
	if (rc != 0)
		return rc;
	key = pki_keygen();
	if (key == NULL)
		return pki_fail(-EIO, err, errlen, "cannot make a P-256 key for "
				"host %s: %s", name, pki_ssl_reason());
	x = pki_cert_new(key, name, o->start_days, days);
	if (x == NULL ||
	    X509_set_issuer_name(x, X509_get_subject_name(ca_cert)) != 1 ||
	    pki_add_ext(x, ca_cert, NID_basic_constraints, "critical,CA:FALSE") ||
	    pki_add_ext(x, ca_cert, NID_key_usage, "critical,digitalSignature") ||
	    pki_add_ext(x, ca_cert, NID_ext_key_usage, "serverAuth,clientAuth") ||
	    pki_add_ext(x, ca_cert, NID_subject_key_identifier, "hash") ||
	    pki_add_ext(x, ca_cert, NID_authority_key_identifier, "keyid:always") ||
	    pki_add_san(x, name, o) != 0 ||
	    X509_sign(x, ca_key, EVP_sha256()) <= 0) {
		rc = pki_fail(-EIO, err, errlen, "cannot make the certificate of "
			      "host %s: %s", name, pki_ssl_reason());
		X509_free(x);
		EVP_PKEY_free(key);
		return rc;
	}
	*key_out = key;
	*cert_out = x;
	ERR_clear_error();
	return 0;
}

/* ---- files ------------------------------------------------------------------ */

/* "DIR/.BASE.tmp-RANDOM" for path "DIR/BASE". */
static int pki_tmp_name(const char *path, char tmp[PKI_PATH_MAX])
{
	const char *slash = strrchr(path, '/');
	int dlen = slash != NULL ? (int)(slash - path + 1) : 0;
	unsigned char r[6];
	int n;

	if (RAND_bytes(r, sizeof(r)) != 1)
		return -EIO;
	n = snprintf(tmp, PKI_PATH_MAX, "%.*s.%s.tmp-%02x%02x%02x%02x%02x%02x",
		     dlen, path, path + dlen, r[0], r[1], r[2], r[3], r[4], r[5]);
	return n > 0 && n < PKI_PATH_MAX ? 0 : -ENAMETOOLONG;
}

static int pki_write_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Creates f->tmp with f->mode (never wider), writes and fsyncs f->data. */
static int pki_stage(struct pki_blob *f, char *err, size_t errlen)
{
	int fd = -1, rc = 0;

	for (int i = 0; fd < 0 && i < PKI_STAGE_TRIES; i++) {
		rc = pki_tmp_name(f->path, f->tmp);
		if (rc != 0)
			return pki_fail(rc, err, errlen, "cannot write %s: %s",
					f->path, strerror(-rc));
		fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
				  O_CLOEXEC, f->mode);
		rc = fd < 0 ? -errno : 0;
		if (rc != -EEXIST)
			break;
	}
	if (fd < 0)
		return pki_fail(rc, err, errlen, "cannot create %s: %s", f->tmp,
				strerror(-rc));
	/* The umask may have narrowed a certificate's 0644: set it exactly. */
	rc = fchmod(fd, f->mode) == 0 ? 0 : -errno;
	if (rc == 0)
		rc = pki_write_all(fd, f->data, f->len);
	if (rc == 0 && fsync(fd) != 0)
		rc = -errno;
	if (close(fd) != 0 && rc == 0)
		rc = -errno;
	if (rc != 0) {
		unlink(f->tmp);
		return pki_fail(rc, err, errlen, "cannot write %s: %s", f->tmp,
				strerror(-rc));
	}
	return 0;
}

/* Renames tmp to path; without force, never replaces an existing path. */
static int pki_publish(const char *tmp, const char *path, bool force)
{
	int rc;

	if (force)
		return rename(tmp, path) == 0 ? 0 : -errno;
	rc = renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE);
	if (rc != 0 && (errno == EINVAL || errno == ENOSYS)) {
		/* No RENAME_NOREPLACE here: link() refuses an existing path. */
		rc = link(tmp, path);
		if (rc == 0)
			unlink(tmp);
	}
	return rc == 0 ? 0 : -errno;
}

static void pki_sync_dir(const char *path)
{
	char dir[PKI_PATH_MAX];
	const char *slash = strrchr(path, '/');
	int fd;

	if (slash == NULL)
		snprintf(dir, sizeof(dir), ".");
	else
		snprintf(dir, sizeof(dir), "%.*s",
			 slash == path ? 1 : (int)(slash - path), path);
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		(void)fsync(fd);
		close(fd);
	}
}

static int pki_check_absent(const char *path, char *err, size_t errlen)
{
	struct stat st;

	if (lstat(path, &st) == 0)
		return pki_fail(-EEXIST, err, errlen, "%s exists", path);
	if (errno != ENOENT)
		return pki_fail(-errno, err, errlen, "cannot check %s: %s", path,
				strerror(errno));
	return 0;
}

/*
 * Writes n files: all are staged before any is published.  If a publish
 * fails, the staged rest is removed and, without force, so are the files
 * already published (they were created here, a moment ago).
 */
static int pki_write_files(struct pki_blob *f, size_t n, bool force,
			   char *err, size_t errlen)
{
	size_t staged = 0, done = 0;
	int rc = 0;

	for (size_t i = 0; rc == 0 && !force && i < n; i++)
		rc = pki_check_absent(f[i].path, err, errlen);
	while (rc == 0 && staged < n) {
		rc = pki_stage(&f[staged], err, errlen);
		if (rc == 0)
			staged++;
	}
	while (rc == 0 && done < staged) {
		rc = pki_publish(f[done].tmp, f[done].path, force);
		if (rc == -EEXIST)
			(void)pki_fail(rc, err, errlen, "%s exists", f[done].path);
		else if (rc != 0)
			(void)pki_fail(rc, err, errlen, "cannot write %s: %s",
				       f[done].path, strerror(-rc));
		else
			done++;
	}
	for (size_t i = done; rc != 0 && i < staged; i++)
		unlink(f[i].tmp);
	for (size_t i = 0; rc != 0 && !force && i < done; i++)
		unlink(f[i].path);
	if (n > 0)
		pki_sync_dir(f[0].path);
	return rc;
}

int pki_file_write(const char *path, const void *data, size_t len,
		   mode_t mode, bool force, char *err, size_t errlen)
{
	struct pki_blob f = { .path = path, .data = data, .len = len,
			      .mode = mode };
	size_t n = strlen(path);

	if (n == 0 || path[n - 1] == '/')
		return pki_fail(-EISDIR, err, errlen, "cannot write \"%s\": not "
				"a file name", path);
	return pki_write_files(&f, 1, force, err, errlen);
}

/* PEM of a key in a BIO that wipes its memory when freed. */
static BIO *pki_key_pem(EVP_PKEY *key)
{
	BIO *b = BIO_new(BIO_s_secmem());

	if (b != NULL && PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL,
						  NULL) != 1) {
		BIO_free(b);
		b = NULL;
	}
	return b;
}

static BIO *pki_cert_pem(X509 *cert)
{
	BIO *b = BIO_new(BIO_s_mem());

	if (b != NULL && PEM_write_bio_X509(b, cert) != 1) {
		BIO_free(b);
		b = NULL;
	}
	return b;
}

static void pki_blob_from_bio(struct pki_blob *f, BIO *b)
{
	char *p = NULL;
	long len = BIO_get_mem_data(b, &p);

	f->data = p;
	f->len = len > 0 ? (size_t)len : 0;
}

/* Writes the PEM in b (NULL: encoding failed) to path; frees b. */
static int pki_pem_save(const char *path, mode_t mode, BIO *b,
			const char *what, bool force, char *err, size_t errlen)
{
	struct pki_blob f = { .path = path, .mode = mode };
	int rc;

	if (b == NULL)
		return pki_fail(-EIO, err, errlen, "cannot encode the %s for %s: "
				"%s", what, path, pki_ssl_reason());
	pki_blob_from_bio(&f, b);
	rc = pki_write_files(&f, 1, force, err, errlen);
	BIO_free(b);
	return rc;
}

int pki_key_save(const char *path, EVP_PKEY *key, bool force, char *err,
		 size_t errlen)
{
	return pki_pem_save(path, 0600, pki_key_pem(key), "key", force, err,
			    errlen);
}

int pki_cert_save(const char *path, X509 *cert, bool force, char *err,
		  size_t errlen)
{
	return pki_pem_save(path, 0644, pki_cert_pem(cert), "certificate",
			    force, err, errlen);
}

/* Key and certificate of one pair, staged together. */
static int pki_save_pair(const struct pki_pair *p, EVP_PKEY *key, X509 *cert,
			 bool force, char *err, size_t errlen)
{
	struct pki_blob f[2] = { { .path = p->key, .mode = 0600 },
				 { .path = p->cert, .mode = 0644 } };
	BIO *kb = pki_key_pem(key), *cb = pki_cert_pem(cert);
	int rc;

	if (kb == NULL || cb == NULL) {
		rc = pki_fail(-EIO, err, errlen, "cannot encode %s: %s",
			      kb == NULL ? p->key : p->cert, pki_ssl_reason());
	} else {
		pki_blob_from_bio(&f[0], kb);
		pki_blob_from_bio(&f[1], cb);
		rc = pki_write_files(f, 2, force, err, errlen);
	}
	BIO_free(kb);
	BIO_free(cb);
	return rc;
}

/* A PEM password callback that refuses: loading never prompts. */
static int pki_no_passphrase(char *buf, int size, int rwflag, void *arg)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)arg;
	return -1;
}

int pki_key_load(const char *path, EVP_PKEY **out, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	int e = errno;

	if (f == NULL)
		return pki_fail(-e, err, errlen, "%s: %s", path, strerror(e));
	*out = PEM_read_PrivateKey(f, NULL, pki_no_passphrase, NULL);
	fclose(f);
	if (*out == NULL)
		return pki_fail(-EINVAL, err, errlen, "%s: not a PEM private key "
				"(or an encrypted one): %s", path, pki_ssl_reason());
	ERR_clear_error();
	return 0;
}

int pki_cert_load(const char *path, X509 **out, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	int e = errno;

	if (f == NULL)
		return pki_fail(-e, err, errlen, "%s: %s", path, strerror(e));
	*out = PEM_read_X509(f, NULL, pki_no_passphrase, NULL);
	fclose(f);
	if (*out == NULL)
		return pki_fail(-EINVAL, err, errlen, "%s: not a PEM certificate: "
				"%s", path, pki_ssl_reason());
	ERR_clear_error();
	return 0;
}

/* ---- a PKI directory ---------------------------------------------------- */

static int pki_join(char out[PKI_PATH_MAX], const char *dir, const char *base,
		    const char *ext, char *err, size_t errlen)
{
	size_t dl = strlen(dir);
	const char *sep = dir[dl - 1] == '/' ? "" : "/";
	int n = snprintf(out, PKI_PATH_MAX, "%s%s%s%s", dir, sep, base, ext);

	if (n < 0 || n >= PKI_PATH_MAX)
		return pki_fail(-ENAMETOOLONG, err, errlen, "PKI directory "
				"\"%.64s...\" : path too long", dir);
	return 0;
}

int pki_pair_paths(const char *dir, const char *base, struct pki_pair *out,
		   char *err, size_t errlen)
{
	int rc;

	if (dir == NULL || dir[0] == '\0')
		return pki_fail(-EINVAL, err, errlen, "empty PKI directory name");
	rc = pki_join(out->key, dir, base, ".key", err, errlen);
	if (rc == 0)
		rc = pki_join(out->cert, dir, base, ".crt", err, errlen);
	return rc;
}

/* mkdir -p: missing parents 0755, the directory itself 0700. */
static int pki_mkdirs(const char *dir, char *err, size_t errlen)
{
	char p[PKI_PATH_MAX];
	size_t n = strlen(dir);
	struct stat st;

	if (n >= sizeof(p))
		return pki_fail(-ENAMETOOLONG, err, errlen, "PKI directory "
				"\"%.64s...\": path too long", dir);
	memcpy(p, dir, n + 1);
	for (size_t i = 1; i <= n; i++) {
		bool leaf = strspn(dir + i, "/") == n - i;
		char c = p[i];

		if ((c != '/' && c != '\0') || p[i - 1] == '/')
			continue;
		p[i] = '\0';
		if (mkdir(p, leaf ? 0700 : 0755) != 0 && errno != EEXIST)
			return pki_fail(-errno, err, errlen, "cannot create "
					"directory %s: %s", p, strerror(errno));
		p[i] = c;
	}
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
		return pki_fail(-ENOTDIR, err, errlen, "%s is not a directory",
				dir);
	return 0;
}

int pki_ca_create(const char *dir, const struct pki_ca_opts *o,
		  struct pki_pair *out, char *err, size_t errlen)
{
	bool force = o != NULL && o->force;
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	struct pki_pair p;
	int rc;

	rc = pki_pair_paths(dir, "ca", &p, err, errlen);
	if (rc == 0 && !force)
		rc = pki_check_absent(p.key, err, errlen);
	if (rc == 0 && !force)
		rc = pki_check_absent(p.cert, err, errlen);
	if (rc == 0)
		rc = pki_ca_make(o, &key, &cert, err, errlen);
	if (rc == 0)
		rc = pki_mkdirs(dir, err, errlen);
	if (rc == 0)
		rc = pki_save_pair(&p, key, cert, force, err, errlen);
	EVP_PKEY_free(key);
	X509_free(cert);
	if (rc == 0 && out != NULL)
		*out = p;
	return rc;
}

int pki_ca_load(const char *dir, EVP_PKEY **key, X509 **cert, char *err,
		size_t errlen)
{
	struct pki_pair p;
	int rc;

	*key = NULL;
	*cert = NULL;
	rc = pki_pair_paths(dir, "ca", &p, err, errlen);
	if (rc == 0) {
		rc = pki_cert_load(p.cert, cert, err, errlen);
		if (rc == -ENOENT)
			return pki_fail(rc, err, errlen, "no CA in %s: %s is "
					"missing (`tandem pki init` makes one)",
					dir, p.cert);
	}
	if (rc == 0) {
		rc = pki_key_load(p.key, key, err, errlen);
		if (rc == -ENOENT)
			rc = pki_fail(rc, err, errlen, "no CA key in %s: %s is "
				      "missing (it stays on the host that ran "
				      "`tandem pki init`)", dir, p.key);
	}
	if (rc == 0 && X509_check_ca(*cert) == 0)
		rc = pki_fail(-EINVAL, err, errlen, "%s is not a CA certificate",
			      p.cert);
	if (rc == 0 && X509_check_private_key(*cert, *key) != 1)
		rc = pki_fail(-EINVAL, err, errlen, "%s does not belong to %s",
			      p.key, p.cert);
	if (rc != 0) {
		EVP_PKEY_free(*key);
		X509_free(*cert);
		*key = NULL;
		*cert = NULL;
	}
	return rc;
}

int pki_host_create(const char *dir, const char *name,
		    const struct pki_host_opts *o, struct pki_pair *out,
		    char *err, size_t errlen)
{
	bool force = o != NULL && o->force;
	EVP_PKEY *ca_key = NULL, *key = NULL;
	X509 *ca_cert = NULL, *cert = NULL;
	struct pki_pair p;
	int rc;

	rc = pki_name_check(name, err, errlen);
	if (rc == 0 && strcmp(name, "ca") == 0)
		rc = pki_fail(-EINVAL, err, errlen, "bad host name \"ca\": it is "
			      "reserved for the CA's own files");
	if (rc == 0)
		rc = pki_pair_paths(dir, name, &p, err, errlen);
	if (rc == 0 && !force)
		rc = pki_check_absent(p.key, err, errlen);
	if (rc == 0 && !force)
		rc = pki_check_absent(p.cert, err, errlen);
	if (rc == 0)
		rc = pki_ca_load(dir, &ca_key, &ca_cert, err, errlen);
	if (rc == 0)
		rc = pki_host_make(ca_key, ca_cert, name, o, &key, &cert, err,
				   errlen);
	if (rc == 0)
		rc = pki_save_pair(&p, key, cert, force, err, errlen);
	EVP_PKEY_free(ca_key);
	X509_free(ca_cert);
	EVP_PKEY_free(key);
	X509_free(cert);
	if (rc == 0 && out != NULL)
		*out = p;
	return rc;
}

/* ---- pre-shared keys ---------------------------------------------------- */

int pki_psk_new(char out[PKI_PSK_HEX_LEN + 1], char *err, size_t errlen)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char b[PKI_PSK_BYTES];

	if (RAND_bytes(b, sizeof(b)) != 1)
		return pki_fail(-EIO, err, errlen, "no random bytes for a PSK: %s",
				pki_ssl_reason());
	for (size_t i = 0; i < sizeof(b); i++) {
		out[2 * i] = hex[b[i] >> 4];
		out[2 * i + 1] = hex[b[i] & 15];
	}
	out[PKI_PSK_HEX_LEN] = '\0';
	OPENSSL_cleanse(b, sizeof(b));
	return 0;
}

/* ---- description -------------------------------------------------------- */

static void pki_name_str(const X509_NAME *n, char *out, size_t len)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *p = NULL;
	long l;

	out[0] = '\0';
	if (b != NULL && X509_NAME_print_ex(b, n, 0, XN_FLAG_RFC2253) >= 0) {
		l = BIO_get_mem_data(b, &p);
		snprintf(out, len, "%.*s", (int)l, p);
	}
	BIO_free(b);
}

static void pki_serial_str(X509 *x, char *out, size_t len)
{
	BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
	char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;

	snprintf(out, len, "%s", hex != NULL ? hex : "?");
	OPENSSL_free(hex);
	BN_free(bn);
}

static void pki_key_str(X509 *x, char *out, size_t len)
{
	EVP_PKEY *pk = X509_get0_pubkey(x);
	char group[32];

	if (pk == NULL)
		snprintf(out, len, "unreadable");
	else if (EVP_PKEY_is_a(pk, "EC") &&
		 EVP_PKEY_get_group_name(pk, group, sizeof(group), NULL) == 1)
		snprintf(out, len, "EC %s", group);
	else
		snprintf(out, len, "%s %d-bit", EVP_PKEY_get0_type_name(pk),
			 EVP_PKEY_get_bits(pk));
}

static void pki_gen_str(const GENERAL_NAME *g, char *out, size_t len)
{
	char q[PKI_QUOTE_MAX], ip[INET6_ADDRSTRLEN];
	const ASN1_STRING *s;
	int type;

	s = GENERAL_NAME_get0_value(g, &type);
	if (type == GEN_DNS || type == GEN_EMAIL || type == GEN_URI) {
		snprintf(out, len, "%s:%s", type == GEN_DNS ? "DNS" :
			 type == GEN_EMAIL ? "email" : "URI",
			 pki_quote_n((const char *)ASN1_STRING_get0_data(s),
				     (size_t)ASN1_STRING_length(s), q));
	} else if (type == GEN_IPADD && (ASN1_STRING_length(s) == 4 ||
					 ASN1_STRING_length(s) == 16)) {
		inet_ntop(ASN1_STRING_length(s) == 4 ? AF_INET : AF_INET6,
			  ASN1_STRING_get0_data(s), ip, sizeof(ip));
		snprintf(out, len, "IP:%s", ip);
	} else {
		snprintf(out, len, "(name of type %d)", type);
	}
}

static void pki_sans_str(X509 *x, char *out, size_t len)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL,
					       NULL);
	char one[PKI_QUOTE_MAX + 16];
	size_t o = 0;

	out[0] = '\0';
	for (int i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
		pki_gen_str(sk_GENERAL_NAME_value(gens, i), one, sizeof(one));
		if (o < len)
			o += (size_t)snprintf(out + o, len - o, "%s%s",
					      i > 0 ? ", " : "", one);
	}
	GENERAL_NAMES_free(gens);
}

static void pki_usage_str(X509 *x, bool is_ca, char *out, size_t len)
{
	uint32_t xku = X509_get_extended_key_usage(x);
	const char *part[3];
	size_t n = 0, o = 0;

	if (is_ca)
		part[n++] = "CA";
	if (xku != UINT32_MAX && (xku & XKU_SSL_SERVER))
		part[n++] = "TLS server";
	if (xku != UINT32_MAX && (xku & XKU_SSL_CLIENT))
		part[n++] = "TLS client";
	if (n == 0)
		part[n++] = xku == UINT32_MAX ? "any (no extended key usage)"
					      : "no TLS use";
	out[0] = '\0';
	for (size_t i = 0; i < n && o < len; i++)
		o += (size_t)snprintf(out + o, len - o, "%s%s", i ? ", " : "",
				      part[i]);
}

static void pki_time_str(const ASN1_TIME *t, char *out, size_t len)
{
	struct tm tm;

	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1 ||
	    strftime(out, len, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
		snprintf(out, len, "(unreadable)");
}

static int pki_fingerprint_str(X509 *x, char *out, size_t len)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	size_t o = 0;

	if (X509_digest(x, EVP_sha256(), md, &n) != 1)
		return -EIO;
	out[0] = '\0';
	for (unsigned int i = 0; i < n && o < len; i++)
		o += (size_t)snprintf(out + o, len - o, "%s%02X", i ? ":" : "",
				      md[i]);
	return 0;
}

int pki_cert_describe(X509 *cert, struct pki_cert_info *out, char *err,
		      size_t errlen)
{
	memset(out, 0, sizeof(*out));
	if (pki_fingerprint_str(cert, out->fingerprint,
				sizeof(out->fingerprint)) != 0)
		return pki_fail(-EIO, err, errlen, "cannot hash the certificate: "
				"%s", pki_ssl_reason());
	out->is_ca = X509_check_ca(cert) != 0;
	pki_name_str(X509_get_subject_name(cert), out->subject,
		     sizeof(out->subject));
	pki_name_str(X509_get_issuer_name(cert), out->issuer,
		     sizeof(out->issuer));
	pki_serial_str(cert, out->serial, sizeof(out->serial));
	pki_key_str(cert, out->key, sizeof(out->key));
	pki_sans_str(cert, out->sans, sizeof(out->sans));
	pki_usage_str(cert, out->is_ca, out->usage, sizeof(out->usage));
	pki_time_str(X509_get0_notBefore(cert), out->not_before,
		     sizeof(out->not_before));
	pki_time_str(X509_get0_notAfter(cert), out->not_after,
		     sizeof(out->not_after));
	out->expired = X509_cmp_current_time(X509_get0_notAfter(cert)) < 0;
	out->not_yet_valid = X509_cmp_current_time(X509_get0_notBefore(cert)) > 0;
	ERR_clear_error();
	return 0;
}
