/* Private key against certificate, through libcrypto. Kept apart from
 * tls_int.h: OpenSSL's headers and wolfSSL's compatibility names (pulled in
 * by wolfssl/ssl.h) cannot share a translation unit. Thread-safe. */
#ifndef RAPI_TLS_TLS_KEYCHECK_H
#define RAPI_TLS_TLS_KEYCHECK_H

#include <stddef.h>

/* 1 when the PEM private key (in memory, not copied) belongs to the first
 * certificate of cert_file, 0 when not, -EINVAL when either cannot be read,
 * -ENOTSUP when libcrypto cannot be loaded (tls/ossl_dl.h). */
int tls_key_matches(const char *cert_file, const unsigned char *key_pem, size_t key_len);

#endif
