/* The AES-GCM crypto-callback device: wolfCrypt asks, libcrypto computes.
 * One EVP_CIPHER_CTX per (Aes, key), kept in a key cache so a record costs
 * an IV set, two updates and a final, never a key expansion. */
#include "tls/aead_accel.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/aes.h>
#include <wolfssl/wolfcrypt/cryptocb.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/wc_port.h>

#include "tls/ossl_dl.h"

#define GCM_STD_IVLEN 12
#define GCM_TAG_MAX 16
#define EVP_CHUNK (1 << 30) /* EVP lengths are int: feed at most this at once */

static const struct ossl_dl *ossl; /* libcrypto, loaded by the registration */
static EVP_CIPHER *gcm_cipher[3];  /* 128, 192, 256: fetched once, read-only after */
static int reg_result = -EIO;
static pthread_once_t reg_once = PTHREAD_ONCE_INIT;
static pthread_key_t tl_key;

static _Thread_local struct aead_keycache *tl_scope; /* entered by a connection */
static _Thread_local struct aead_keycache *tl_own;   /* this thread's fallback */
static _Thread_local struct aead_accel_stats tl_stats;

static void thread_cache_free(void *p)
{
    aead_keycache_free(p);
    free(p);
}

/* The cache for this call: the entered scope, else the thread's own. */
static struct aead_keycache *cur_cache(void)
{
    if (tl_scope)
        return tl_scope;
    if (!tl_own) {
        tl_own = calloc(1, sizeof(*tl_own));
        if (tl_own && pthread_setspecific(tl_key, tl_own) != 0) {
            free(tl_own);
            tl_own = NULL;
        }
    }
    return tl_own;
}

static const EVP_CIPHER *cipher_for(unsigned keylen)
{
    switch (keylen) {
    case 16:
        return gcm_cipher[0];
    case 24:
        return gcm_cipher[1];
    case 32:
        return gcm_cipher[2];
    default:
        return NULL;
    }
}

/* Expand key into the slot's context for direction enc; IV length reset. */
static int slot_rekey(struct aead_slot *s, const Aes *aes, const unsigned char *key,
                      unsigned keylen, int enc)
{
    const EVP_CIPHER *c = cipher_for(keylen);

    if (!c)
        return BAD_FUNC_ARG;
    if (!s->evp && !(s->evp = ossl->EVP_CIPHER_CTX_new()))
        return MEMORY_E;
    if (ossl->EVP_CipherInit_ex(s->evp, c, NULL, key, NULL, enc) != 1) {
        explicit_bzero(s->key, sizeof(s->key));
        s->keylen = 0;
        return WC_HW_E;
    }
    s->aes = aes;
    if (s->key != key)
        memcpy(s->key, key, keylen);
    s->keylen = keylen;
    s->ivlen = GCM_STD_IVLEN;
    s->enc = enc;
    tl_stats.rekey++;
    return 0;
}

static bool slot_matches(const struct aead_slot *s, const unsigned char *key, unsigned keylen)
{
    return s->keylen == keylen && ossl->CRYPTO_memcmp(s->key, key, keylen) == 0;
}

/* The slot serving aes, keyed and turned to direction enc. */
static int slot_get(const Aes *aes, int enc, struct aead_slot **out)
{
    struct aead_keycache *kc = cur_cache();
    const unsigned char *key = (const unsigned char *)aes->devKey;
    unsigned keylen = (unsigned)aes->keylen;
    struct aead_slot *s = NULL;

    if (!kc)
        return MEMORY_E;
    if (keylen > AEAD_KEY_MAX)
        return BAD_FUNC_ARG;
    for (unsigned i = 0; i < AEAD_KEYCACHE_SLOTS && !s; i++)
        if (kc->slot[i].aes == aes)
            s = &kc->slot[i];
    for (unsigned i = 0; i < AEAD_KEYCACHE_SLOTS && !s; i++)
        if (kc->slot[i].keylen == 0)
            s = &kc->slot[i];
    if (!s)
        s = &kc->slot[kc->next++ % AEAD_KEYCACHE_SLOTS];
    *out = s;
    if (s->aes == aes && slot_matches(s, key, keylen) && s->enc == enc)
        return 0;
    return slot_rekey(s, aes, key, keylen, enc);
}

static int set_iv(struct aead_slot *s, const byte *iv, word32 ivSz)
{
    if (ivSz != s->ivlen) {
        if (ossl->EVP_CIPHER_CTX_ctrl(s->evp, EVP_CTRL_GCM_SET_IVLEN, (int)ivSz, NULL) != 1)
            return BAD_FUNC_ARG;
        s->ivlen = ivSz;
    }
    return ossl->EVP_CipherInit_ex(s->evp, NULL, NULL, NULL, iv, -1) == 1 ? 0 : WC_HW_E;
}

/* AAD then data through the context; out may equal in. */
static int run_updates(EVP_CIPHER_CTX *evp, byte *out, const byte *in, word32 sz, const byte *aad,
                       word32 aadSz)
{
    int n;

    for (word32 off = 0; off < aadSz;) {
        int chunk = (int)(aadSz - off > EVP_CHUNK ? EVP_CHUNK : aadSz - off);
        if (ossl->EVP_CipherUpdate(evp, NULL, &n, aad + off, chunk) != 1)
            return WC_HW_E;
        off += (word32)chunk;
    }
    for (word32 off = 0; off < sz;) {
        int chunk = (int)(sz - off > EVP_CHUNK ? EVP_CHUNK : sz - off);
        if (ossl->EVP_CipherUpdate(evp, out + off, &n, in + off, chunk) != 1 || n != chunk)
            return WC_HW_E;
        off += (word32)chunk;
    }
    return 0;
}

static int gcm_encrypt(Aes *aes, byte *out, const byte *in, word32 sz, const byte *iv, word32 ivSz,
                       byte *tag, word32 tagSz, const byte *aad, word32 aadSz)
{
    struct aead_slot *s;
    unsigned char fin[GCM_TAG_MAX];
    int n, r;

    if (tagSz > GCM_TAG_MAX || ivSz == 0)
        return BAD_FUNC_ARG;
    if ((r = slot_get(aes, 1, &s)) != 0 || (r = set_iv(s, iv, ivSz)) != 0)
        return r;
    if ((r = run_updates(s->evp, out, in, sz, aad, aadSz)) != 0)
        return r;
    if (ossl->EVP_CipherFinal_ex(s->evp, fin, &n) != 1 ||
        ossl->EVP_CIPHER_CTX_ctrl(s->evp, EVP_CTRL_GCM_GET_TAG, (int)tagSz, tag) != 1)
        return WC_HW_E;
    tl_stats.enc++;
    return 0;
}

/* A failed tag wipes what was written to out (wolfCrypt's contract is
 * AES_GCM_AUTH_E and no plaintext to use). */
static int gcm_decrypt(Aes *aes, byte *out, const byte *in, word32 sz, const byte *iv, word32 ivSz,
                       const byte *tag, word32 tagSz, const byte *aad, word32 aadSz)
{
    struct aead_slot *s;
    unsigned char fin[GCM_TAG_MAX];
    int n, r;

    if (tagSz > GCM_TAG_MAX || tagSz == 0 || ivSz == 0)
        return BAD_FUNC_ARG;
    if ((r = slot_get(aes, 0, &s)) != 0 || (r = set_iv(s, iv, ivSz)) != 0)
        return r;
    tl_stats.dec++;
    if (ossl->EVP_CIPHER_CTX_ctrl(s->evp, EVP_CTRL_GCM_SET_TAG, (int)tagSz, (void *)tag) != 1)
        return WC_HW_E;
    if ((r = run_updates(s->evp, out, in, sz, aad, aadSz)) != 0 ||
        ossl->EVP_CipherFinal_ex(s->evp, fin, &n) != 1) {
        if (sz)
            explicit_bzero(out, sz);
        return r ? r : AES_GCM_AUTH_E;
    }
    return 0;
}

static int accel_cb(int devId, wc_CryptoInfo *info, void *ctx)
{
    (void)devId;
    (void)ctx;
    if (info->algo_type != WC_ALGO_TYPE_CIPHER || info->cipher.type != WC_CIPHER_AES_GCM)
        return CRYPTOCB_UNAVAILABLE;
    if (info->cipher.enc)
        return gcm_encrypt(info->cipher.aesgcm_enc.aes, info->cipher.aesgcm_enc.out,
                           info->cipher.aesgcm_enc.in, info->cipher.aesgcm_enc.sz,
                           info->cipher.aesgcm_enc.iv, info->cipher.aesgcm_enc.ivSz,
                           info->cipher.aesgcm_enc.authTag, info->cipher.aesgcm_enc.authTagSz,
                           info->cipher.aesgcm_enc.authIn, info->cipher.aesgcm_enc.authInSz);
    return gcm_decrypt(info->cipher.aesgcm_dec.aes, info->cipher.aesgcm_dec.out,
                       info->cipher.aesgcm_dec.in, info->cipher.aesgcm_dec.sz,
                       info->cipher.aesgcm_dec.iv, info->cipher.aesgcm_dec.ivSz,
                       info->cipher.aesgcm_dec.authTag, info->cipher.aesgcm_dec.authTagSz,
                       info->cipher.aesgcm_dec.authIn, info->cipher.aesgcm_dec.authInSz);
}

static void do_register(void)
{
    static const char *const names[3] = {"AES-128-GCM", "AES-192-GCM", "AES-256-GCM"};

    ossl = ossl_dl();
    if (!ossl) {
        reg_result = -ENOTSUP; /* no libcrypto: wolfSSL's own AES-GCM */
        return;
    }
    for (int i = 0; i < 3; i++)
        if (!(gcm_cipher[i] = ossl->EVP_CIPHER_fetch(NULL, names[i], NULL))) {
            reg_result = -ENOTSUP;
            return;
        }
    /* wolfCrypt_Init() empties the device table (wolfSSL_Init() calls it
     * too; it counts, so calling it again later is harmless). */
    if (wolfCrypt_Init() != 0 || pthread_key_create(&tl_key, thread_cache_free) != 0) {
        reg_result = -EAGAIN;
        return;
    }
    reg_result = wc_CryptoCb_RegisterDevice(AEAD_ACCEL_DEVID, accel_cb, NULL) == 0 ? 0 : -EIO;
}

int aead_accel_register(void)
{
    if (pthread_once(&reg_once, do_register) != 0)
        return -EAGAIN;
    return reg_result;
}

bool aead_accel_cpu_ok(void)
{
    return __builtin_cpu_supports("aes") && __builtin_cpu_supports("pclmul");
}

struct aead_keycache *aead_keycache_enter(struct aead_keycache *kc)
{
    struct aead_keycache *prev = tl_scope;

    tl_scope = kc;
    return prev;
}

void aead_keycache_leave(struct aead_keycache *prev)
{
    tl_scope = prev;
}

void aead_keycache_free(struct aead_keycache *kc)
{
    for (unsigned i = 0; i < AEAD_KEYCACHE_SLOTS; i++)
        if (kc->slot[i].evp) /* made only once registered: ossl is set */
            ossl->EVP_CIPHER_CTX_free(kc->slot[i].evp);
    explicit_bzero(kc, sizeof(*kc));
}

void aead_accel_stats(struct aead_accel_stats *out)
{
    *out = tl_stats;
}
