/*
 * tls.c - TLS 1.3 contexts and failure messages for TCP links.
 *
 * Certificate mode: both sides present a chain signed by the configured
 * CA and verify the other's, including its name (SSL_set1_host: DNS SAN,
 * else CN) against the configured peer name.  PSK mode: an external PSK
 * with an identity, through the PSK callbacks, which OpenSSL 3 uses for
 * TLS 1.3 with a SHA-256 suite.  Nothing older than TLS 1.3 is offered or
 * accepted, so a downgrade has nothing to land on.
 */
#include "tls.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

static void ssl_err(char *err, size_t errlen, const char *what,
		    const char *file)
{
	unsigned long e = ERR_get_error();
	char buf[200] = "unknown error";

	if (e)
		ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	snprintf(err, errlen, "%s%s%s%s: %s", what, file ? " \"" : "",
		 file ? file : "", file ? "\"" : "", buf);
}

static const struct tp_config *ctx_cfg(SSL *ssl)
{
	return SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
}

static unsigned int psk_client_cb(SSL *ssl, const char *hint, char *identity,
				  unsigned int max_identity_len,
				  unsigned char *psk, unsigned int max_psk_len)
{
	const struct tp_config *cfg = ctx_cfg(ssl);
	size_t n = strlen(cfg->psk_identity);

	(void)hint;
	if (n + 1 > max_identity_len || cfg->psk_len > max_psk_len)
		return 0;
	memcpy(identity, cfg->psk_identity, n + 1);
	memcpy(psk, cfg->psk, cfg->psk_len);
	return (unsigned int)cfg->psk_len;
}

static unsigned int psk_server_cb(SSL *ssl, const char *identity,
				  unsigned char *psk, unsigned int max_psk_len)
{
	const struct tp_config *cfg = ctx_cfg(ssl);

	if (!identity || strcmp(identity, cfg->psk_identity) != 0 ||
	    cfg->psk_len > max_psk_len)
		return 0;
	memcpy(psk, cfg->psk, cfg->psk_len);
	return (unsigned int)cfg->psk_len;
}

static int ctx_load_certs(SSL_CTX *ctx, const struct tp_config *cfg,
			  char *err, size_t errlen)
{
	if (SSL_CTX_load_verify_locations(ctx, cfg->ca_file, NULL) != 1) {
		ssl_err(err, errlen, "cannot load CA", cfg->ca_file);
		return -EINVAL;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, cfg->cert_file) != 1) {
		ssl_err(err, errlen, "cannot load certificate", cfg->cert_file);
		return -EINVAL;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, cfg->key_file,
					SSL_FILETYPE_PEM) != 1) {
		ssl_err(err, errlen, "cannot load key", cfg->key_file);
		return -EINVAL;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		ssl_err(err, errlen, "key does not match certificate",
			cfg->key_file);
		return -EINVAL;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER |
			   SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	return 0;
}

SSL_CTX *tls_ctx_new(const struct tp_config *cfg, bool server,
		     char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method()
					  : TLS_client_method());

	if (!ctx) {
		ssl_err(err, errlen, "SSL_CTX_new", NULL);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_app_data(ctx, (void *)cfg);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(ctx, 0);
	if (cfg->security == TP_SEC_CERT) {
		if (ctx_load_certs(ctx, cfg, err, errlen)) {
			SSL_CTX_free(ctx);
			return NULL;
		}
	} else if (server) {
		SSL_CTX_set_psk_server_callback(ctx, psk_server_cb);
	} else {
		SSL_CTX_set_psk_client_callback(ctx, psk_client_cb);
	}
	return ctx;
}

void tls_ctx_free(SSL_CTX *ctx)
{
	SSL_CTX_free(ctx);
}

SSL *tls_new(SSL_CTX *ctx, const struct tp_config *cfg)
{
	SSL *ssl = SSL_new(ctx);

	if (!ssl)
		return NULL;
	if (cfg->security == TP_SEC_CERT) {
		/* Checked on whichever side this is: the peer's cert name. */
		SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		if (SSL_set1_host(ssl, cfg->peer_name) != 1) {
			SSL_free(ssl);
			return NULL;
		}
	}
	return ssl;
}

void tls_explain(SSL *ssl, unsigned long err_code, char *out, size_t len)
{
	long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
	unsigned long e = err_code ? err_code : ERR_peek_error();
	char buf[200];

	if (vr != X509_V_OK) {
		snprintf(out, len, "peer certificate refused: %s",
			 X509_verify_cert_error_string(vr));
	} else if (e) {
		ERR_error_string_n(e, buf, sizeof(buf));
		snprintf(out, len, "TLS handshake failed: %s%s", buf,
			 ERR_GET_REASON(e) == SSL_R_WRONG_VERSION_NUMBER ?
			 " (plaintext or pre-1.3 peer?)" : "");
	} else {
		snprintf(out, len, "connection closed during the TLS "
			 "handshake");
	}
	ERR_clear_error();
}
