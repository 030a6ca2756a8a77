/*
 * pki.h - the keys, certificates and pre-shared keys that links between
 * tandem hosts authenticate with (docs/pki.md).
 *
 * A PKI directory holds one CA (ca.key, ca.crt) and, for each host NAME,
 * NAME.key and NAME.crt signed by that CA.  Keys are ECDSA P-256, written
 * as unencrypted PKCS#8 PEM; certificates are X.509 v3 PEM, signed with
 * SHA-256.  A host certificate names its host as CN and as a DNS
 * subjectAltName (plus optional IP SANs) and is good for both TLS server
 * and TLS client authentication, since either host may dial the other.
 *
 * Invariants:
 *  - A key file is created with open(O_CREAT|O_EXCL, 0600) under a
 *    temporary name in its final directory, fsynced, then renamed into
 *    place: it is never readable by others, not even briefly, and a crash
 *    leaves either the old file or the whole new one, never half a key.
 *    Certificates go the same way with mode 0644.
 *  - Nothing is overwritten unless force is set: without it, an existing
 *    file is refused (-EEXIST) by the rename itself (RENAME_NOREPLACE), so
 *    a file that appears meanwhile is not clobbered either.
 *  - Host names are 1..PKI_NAME_MAX characters of [A-Za-z0-9.-], not
 *    starting with '-' or '.'; they double as file names in the directory.
 *
 * Errors are 0 or -errno; functions taking err/errlen leave a message
 * there naming the file or object and quoting the bad value.  Nothing here
 * logs or prints.  OpenSSL's error queue is left empty on return.
 */
#ifndef TANDEM_PKI_H
#define TANDEM_PKI_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <openssl/types.h>

#define PKI_DIR_DEFAULT "/etc/tandem/pki"
#define PKI_CA_NAME_DEFAULT "tandem CA"
#define PKI_NAME_MAX 63          /* host names, without the NUL */
#define PKI_CA_NAME_MAX 64       /* X.520 upper bound of a CN */
#define PKI_CA_DAYS 3650         /* default validity of a CA */
#define PKI_HOST_DAYS 825        /* default validity of a host certificate */
#define PKI_DAYS_MAX 36500       /* bound of days and |start_days| */
#define PKI_MAX_IPS 16           /* IP SANs per host certificate */
#define PKI_BACKDATE_SECS 300    /* not-before slack for clocks behind ours */
#define PKI_PSK_BYTES 32
#define PKI_PSK_HEX_LEN (2 * PKI_PSK_BYTES)
#define PKI_PATH_MAX 4096
#define PKI_ERR_MAX 512

struct pki_ca_opts {
	const char *name;        /* CN of the CA; NULL = PKI_CA_NAME_DEFAULT */
	int days;                /* validity; 0 = PKI_CA_DAYS */
	bool force;              /* replace existing files (pki_ca_create) */
};

struct pki_host_opts {
	int start_days;          /* not-before, days from now; may be < 0 */
	int days;                /* not-after minus not-before; 0 = default */
	const char *const *ips;  /* nr_ips IPv4/IPv6 addresses for IP SANs */
	size_t nr_ips;
	bool force;              /* replace existing files (pki_host_create) */
};

/* The two files of one key pair in a PKI directory. */
struct pki_pair {
	char key[PKI_PATH_MAX];
	char cert[PKI_PATH_MAX];
};

/* 0 if name is a valid host name, else -EINVAL quoting it. */
int pki_name_check(const char *name, char *err, size_t errlen);

/* ---- in memory -------------------------------------------------------- */

/* A new P-256 key and self-signed CA certificate (CA:TRUE, keyCertSign). */
int pki_ca_make(const struct pki_ca_opts *o, EVP_PKEY **key, X509 **cert,
		char *err, size_t errlen);
/*
 * A new P-256 key and a certificate for host name signed by the CA:
 * CN=name, SAN DNS:name and IP:each of o->ips, EKU serverAuth+clientAuth,
 * keyUsage digitalSignature, CA:FALSE, authority key id, random serial.
 * ca_key must belong to ca_cert.  o may be NULL for the defaults.
 */
int pki_host_make(EVP_PKEY *ca_key, X509 *ca_cert, const char *name,
		  const struct pki_host_opts *o, EVP_PKEY **key, X509 **cert,
		  char *err, size_t errlen);

/* ---- files ---------------------------------------------------------------- */

/* Writes len bytes to path atomically with exactly mode (see above). */
int pki_file_write(const char *path, const void *data, size_t len,
		   mode_t mode, bool force, char *err, size_t errlen);
int pki_key_save(const char *path, EVP_PKEY *key, bool force,
		 char *err, size_t errlen);                   /* mode 0600 */
int pki_cert_save(const char *path, X509 *cert, bool force,
		  char *err, size_t errlen);                  /* mode 0644 */
/* Reads a PEM key (never prompts: encrypted keys are refused). */
int pki_key_load(const char *path, EVP_PKEY **out, char *err, size_t errlen);
/* Reads the first PEM certificate of path. */
int pki_cert_load(const char *path, X509 **out, char *err, size_t errlen);

/* ---- a PKI directory ---------------------------------------------------- */

/* dir/base.key and dir/base.crt (base is not checked here). */
int pki_pair_paths(const char *dir, const char *base, struct pki_pair *out,
		   char *err, size_t errlen);

/*
 * Makes a CA in dir (created, mode 0700, with missing parents 0755):
 * dir/ca.key and dir/ca.crt.  Refuses (-EEXIST) if either exists, unless
 * o->force.  out (may be NULL) gets the paths.
 */
int pki_ca_create(const char *dir, const struct pki_ca_opts *o,
		  struct pki_pair *out, char *err, size_t errlen);
/* Reads dir/ca.key and dir/ca.crt and checks they belong together. */
int pki_ca_load(const char *dir, EVP_PKEY **key, X509 **cert,
		char *err, size_t errlen);
/*
 * Issues dir/name.key and dir/name.crt with dir's CA.  The name "ca" is
 * refused (those are the CA's files).  Both files are staged before
 * either is published; without force, an existing one refuses both.
 */
int pki_host_create(const char *dir, const char *name,
		    const struct pki_host_opts *o, struct pki_pair *out,
		    char *err, size_t errlen);

/* ---- pre-shared keys ---------------------------------------------------- */

/* PKI_PSK_BYTES from RAND_bytes as lowercase hex, NUL-terminated. */
int pki_psk_new(char out[PKI_PSK_HEX_LEN + 1], char *err, size_t errlen);

/* ---- description -------------------------------------------------------- */

struct pki_cert_info {
	char subject[256];       /* RFC 2253, e.g. "CN=host-a" */
	char issuer[256];
	char serial[80];         /* hex */
	char key[64];            /* e.g. "EC prime256v1" */
	char sans[1024];         /* "DNS:host-a, IP:10.0.0.1"; "" if none */
	char usage[128];         /* "CA" or the extended key usages */
	char not_before[32];     /* "YYYY-MM-DD HH:MM:SS UTC" */
	char not_after[32];
	char fingerprint[96];    /* SHA-256 of the DER, "AB:CD:..." */
	bool is_ca;
	bool expired;            /* not-after is in the past */
	bool not_yet_valid;      /* not-before is in the future */
};

int pki_cert_describe(X509 *cert, struct pki_cert_info *out,
		      char *err, size_t errlen);

#endif
