/* Does a private key belong to a certificate? wolfSSL 5.5.4's
 * wolfSSL_CTX_check_private_key() passes a mismatched EC pair, so the
 * question goes to libcrypto (loaded anyway for the AES-GCM device). */
#include "tls/tls_keycheck.h"

#include <errno.h>
#include <stdio.h>

#include "tls/ossl_dl.h"

int tls_key_matches(const char *cert_file, const unsigned char *key_pem, size_t key_len)
{
    const struct ossl_dl *o = ossl_dl();
    FILE *f = o ? fopen(cert_file, "re") : NULL;
    X509 *x = f ? o->PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    BIO *b = o ? o->BIO_new_mem_buf(key_pem, (int)key_len) : NULL;
    EVP_PKEY *k = b ? o->PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    int rc = -EINVAL;

    if (!o)
        return -ENOTSUP; /* no libcrypto: the pair cannot be checked */
    if (x && k)
        rc = o->X509_check_private_key(x, k) == 1 ? 1 : 0;
    o->EVP_PKEY_free(k); /* clears the key material */
    o->BIO_free(b);
    o->X509_free(x);
    if (f)
        fclose(f);
    return rc;
}
