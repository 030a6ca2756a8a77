/*
 * tls.h - TLS 1.3 for TCP links: contexts for the certificate and PSK
 * modes, per-connection objects that check the peer's name, and one-line
 * explanations of handshake failures.  Internal to transport/.
 */
#ifndef TANDEM_TLS_H
#define TANDEM_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

#include "transport.h"

/*
 * A context for one side of a link: TLS 1.3 only; in TP_SEC_CERT mode our
 * chain and key, the CA as the only trust anchor and a required peer
 * certificate; in TP_SEC_PSK mode the external PSK and its identity.  The
 * context keeps a pointer to cfg, which must outlive it.
 */
SSL_CTX *tls_ctx_new(const struct tp_config *cfg, bool server,
		     char *err, size_t errlen);
void tls_ctx_free(SSL_CTX *ctx);
/* A connection object that checks the peer's certificate name. */
SSL *tls_new(SSL_CTX *ctx, const struct tp_config *cfg);
/*
 * Why a handshake failed, in one line: the certificate verification
 * result when there is one, else the first OpenSSL error (err_code, 0 to
 * read the queue), else "connection closed during the TLS handshake".
 */
void tls_explain(SSL *ssl, unsigned long err_code, char *out, size_t len);

#endif
