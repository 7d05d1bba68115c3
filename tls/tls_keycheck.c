/* Does a private key belong to a certificate? wolfSSL 5.5.4's
 * wolfSSL_CTX_check_private_key() passes a mismatched EC pair, so the
 * question goes to libcrypto (linked anyway for the AES-GCM device). */
#include "tls/tls_keycheck.h"

#include <errno.h>
#include <stdio.h>

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

int tls_key_matches(const char *cert_file, const unsigned char *key_pem, size_t key_len)
{
    FILE *f = fopen(cert_file, "re");
    X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    BIO *b = BIO_new_mem_buf(key_pem, (int)key_len);
    EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    int rc = -EINVAL;

    if (x && k)
        rc = X509_check_private_key(x, k) == 1 ? 1 : 0;
    EVP_PKEY_free(k); /* clears the key material */
    BIO_free(b);
    X509_free(x);
    if (f)
        fclose(f);
    return rc;
}
