/* Session-ticket keys: generated in memory (getrandom), rotated every
 * TLS_TICKET_ROTATE_SEC, the previous key still accepted (its tickets are
 * renewed), never written anywhere. One store per process, shared by every
 * server context so a reload keeps resumption working. Tickets are sealed
 * with ChaCha20-Poly1305 (wolfCrypt; a ticket is small) under a 32-byte key,
 * the AAD being key name || IV || length. Thread-safe (a mutex around the
 * key store; sealing runs on a private copy of the key). */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "tls/tls_int.h"

#include <wolfssl/wolfcrypt/chacha20_poly1305.h>

#define TKEY_SECRET 32
#define TKEY_NONCE 12 /* of the 16-byte IV wolfSSL gives room for */
#define TKEY_AAD (WOLFSSL_TICKET_NAME_SZ + WOLFSSL_TICKET_IV_SZ + 2)

struct tkey {
    unsigned char name[WOLFSSL_TICKET_NAME_SZ];
    unsigned char secret[TKEY_SECRET];
    time_t born; /* CLOCK_MONOTONIC seconds; 0: none */
};

static pthread_mutex_t store_mu = PTHREAD_MUTEX_INITIALIZER;
static struct tkey store_cur, store_prev;

static time_t now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1; /* never 0, which means "no key" */
}

static int fill_random(void *p, size_t n)
{
    unsigned char *b = p;

    while (n) {
        ssize_t r = getrandom(b, n, 0);
        if (r == -1 && errno == EINTR)
            continue;
        if (r <= 0)
            return -EIO;
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Under store_mu: make a new current key, keep the old as previous. */
static int rotate_locked(time_t now)
{
    struct tkey fresh;

    if (fill_random(fresh.name, sizeof(fresh.name)) || fill_random(fresh.secret, TKEY_SECRET))
        return -EIO;
    fresh.born = now;
    store_prev = store_cur;
    store_cur = fresh;
    explicit_bzero(&fresh, sizeof(fresh));
    return 0;
}

void tls_tickets_rotate(void)
{
    pthread_mutex_lock(&store_mu);
    (void)rotate_locked(now_sec());
    pthread_mutex_unlock(&store_mu);
}

/* Copy the key to seal with (rotating when due). */
static int key_for_seal(struct tkey *out)
{
    time_t now = now_sec();
    int r = 0;

    pthread_mutex_lock(&store_mu);
    if (store_cur.born == 0 || now - store_cur.born >= TLS_TICKET_ROTATE_SEC)
        r = rotate_locked(now);
    if (r == 0)
        *out = store_cur;
    pthread_mutex_unlock(&store_mu);
    return r;
}

/* Copy the key named name; 1 current, 2 previous (renew), 0 none. */
static int key_for_open(const unsigned char *name, struct tkey *out)
{
    time_t now = now_sec();
    int which = 0;

    pthread_mutex_lock(&store_mu);
    if (store_cur.born && memcmp(store_cur.name, name, WOLFSSL_TICKET_NAME_SZ) == 0) {
        *out = store_cur;
        which = 1;
    } else if (store_prev.born && now - store_prev.born < 2 * TLS_TICKET_ROTATE_SEC &&
               memcmp(store_prev.name, name, WOLFSSL_TICKET_NAME_SZ) == 0) {
        *out = store_prev;
        which = 2;
    }
    pthread_mutex_unlock(&store_mu);
    return which;
}

static void make_aad(unsigned char aad[TKEY_AAD], const unsigned char *name,
                     const unsigned char *iv, int len)
{
    memcpy(aad, name, WOLFSSL_TICKET_NAME_SZ);
    memcpy(aad + WOLFSSL_TICKET_NAME_SZ, iv, WOLFSSL_TICKET_IV_SZ);
    aad[TKEY_AAD - 2] = (unsigned char)(len >> 8);
    aad[TKEY_AAD - 1] = (unsigned char)len;
}

static int seal(unsigned char *name, unsigned char *iv, unsigned char *mac, unsigned char *t,
                int len)
{
    struct tkey k;
    unsigned char aad[TKEY_AAD];
    int r = WOLFSSL_TICKET_RET_FATAL;

    if (key_for_seal(&k) != 0 || fill_random(iv, WOLFSSL_TICKET_IV_SZ) != 0)
        goto out;
    memcpy(name, k.name, WOLFSSL_TICKET_NAME_SZ);
    make_aad(aad, name, iv, len);
    memset(mac, 0, WOLFSSL_TICKET_MAC_SZ);
    if (wc_ChaCha20Poly1305_Encrypt(k.secret, iv, aad, TKEY_AAD, t, (word32)len, t, mac) == 0)
        r = WOLFSSL_TICKET_RET_OK;
out:
    explicit_bzero(&k, sizeof(k));
    return r;
}

static int unseal(const unsigned char *name, const unsigned char *iv, const unsigned char *mac,
                  unsigned char *t, int len)
{
    struct tkey k;
    unsigned char aad[TKEY_AAD];
    int which = key_for_open(name, &k), r = WOLFSSL_TICKET_RET_REJECT;

    if (which == 0)
        return r;
    make_aad(aad, name, iv, len);
    if (wc_ChaCha20Poly1305_Decrypt(k.secret, iv, aad, TKEY_AAD, t, (word32)len, mac, t) == 0)
        r = which == 1 ? WOLFSSL_TICKET_RET_OK : WOLFSSL_TICKET_RET_CREATE;
    explicit_bzero(&k, sizeof(k));
    return r;
}

int tls_ticket_cb(WOLFSSL *ssl, unsigned char name[WOLFSSL_TICKET_NAME_SZ],
                  unsigned char iv[WOLFSSL_TICKET_IV_SZ], unsigned char mac[WOLFSSL_TICKET_MAC_SZ],
                  int enc, unsigned char *ticket, int in_len, int *out_len, void *arg)
{
    (void)ssl;
    (void)arg;
    _Static_assert(TKEY_NONCE <= WOLFSSL_TICKET_IV_SZ, "nonce fits the IV");
    _Static_assert(CHACHA20_POLY1305_AEAD_AUTHTAG_SIZE <= WOLFSSL_TICKET_MAC_SZ, "tag fits");
    if (in_len < 0)
        return WOLFSSL_TICKET_RET_FATAL;
    *out_len = in_len;
    return enc ? seal(name, iv, mac, ticket, in_len) : unseal(name, iv, mac, ticket, in_len);
}
