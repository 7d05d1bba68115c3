/* OpenSSL 3's libcrypto, loaded on first use (dlopen): the AES-GCM device
 * (tls/aead_accel.c) and the key/certificate check (tls/tls_keycheck.c)
 * call it through this table, so that a relay without TLS never maps it
 * (1.4 MiB of resident memory at start, issue 13). ossl_dl() is
 * thread-safe (pthread_once); the table is read-only once loaded. Kept
 * apart from tls_int.h: OpenSSL's headers and wolfSSL's compatibility names
 * cannot share a translation unit. */
#ifndef RAPI_TLS_OSSL_DL_H
#define RAPI_TLS_OSSL_DL_H

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#define OSSL_DL_NAME "libcrypto.so.3" /* OpenSSL 3's ABI */

/* Each member has the type of the libcrypto function it names. */
struct ossl_dl {
    __typeof__(EVP_CIPHER_fetch) *EVP_CIPHER_fetch;
    __typeof__(EVP_CIPHER_CTX_new) *EVP_CIPHER_CTX_new;
    __typeof__(EVP_CIPHER_CTX_free) *EVP_CIPHER_CTX_free;
    __typeof__(EVP_CIPHER_CTX_ctrl) *EVP_CIPHER_CTX_ctrl;
    __typeof__(EVP_CipherInit_ex) *EVP_CipherInit_ex;
    __typeof__(EVP_CipherUpdate) *EVP_CipherUpdate;
    __typeof__(EVP_CipherFinal_ex) *EVP_CipherFinal_ex;
    __typeof__(CRYPTO_memcmp) *CRYPTO_memcmp;
    __typeof__(PEM_read_X509) *PEM_read_X509;
    __typeof__(BIO_new_mem_buf) *BIO_new_mem_buf;
    __typeof__(BIO_free) *BIO_free;
    __typeof__(PEM_read_bio_PrivateKey) *PEM_read_bio_PrivateKey;
    __typeof__(X509_check_private_key) *X509_check_private_key;
    __typeof__(EVP_PKEY_free) *EVP_PKEY_free;
    __typeof__(X509_free) *X509_free;
};

/* The table, loading libcrypto the first time; NULL when it cannot be
 * loaded (the reason is logged nowhere: callers say what they miss). */
const struct ossl_dl *ossl_dl(void);

#endif
