/* libcrypto through dlopen (tls/ossl_dl.h). */
#include "tls/ossl_dl.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>

static struct ossl_dl tab;
static const struct ossl_dl *loaded;
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* POSIX's way to store dlsym()'s answer into a function pointer. */
#define OSSL_SYM(h, name) (*(void **)&tab.name = dlsym((h), #name)) != NULL

static void load(void)
{
    void *h = dlopen(OSSL_DL_NAME, RTLD_NOW | RTLD_LOCAL);

    if (!h)
        return;
    if (OSSL_SYM(h, EVP_CIPHER_fetch) && OSSL_SYM(h, EVP_CIPHER_CTX_new) &&
        OSSL_SYM(h, EVP_CIPHER_CTX_free) && OSSL_SYM(h, EVP_CIPHER_CTX_ctrl) &&
        OSSL_SYM(h, EVP_CipherInit_ex) && OSSL_SYM(h, EVP_CipherUpdate) &&
        OSSL_SYM(h, EVP_CipherFinal_ex) && OSSL_SYM(h, CRYPTO_memcmp) &&
        OSSL_SYM(h, PEM_read_X509) && OSSL_SYM(h, BIO_new_mem_buf) && OSSL_SYM(h, BIO_free) &&
        OSSL_SYM(h, PEM_read_bio_PrivateKey) && OSSL_SYM(h, X509_check_private_key) &&
        OSSL_SYM(h, EVP_PKEY_free) && OSSL_SYM(h, X509_free)) {
        loaded = &tab;
        return; /* kept loaded for the life of the process */
    }
    dlclose(h);
}

const struct ossl_dl *ossl_dl(void)
{
    if (pthread_once(&once, load) != 0)
        return NULL;
    return loaded;
}
