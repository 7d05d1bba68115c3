/* Accelerated AES-GCM for wolfSSL: a wolfCrypt crypto-callback device that
 * hands AES-GCM (128/192/256-bit keys, any IV and tag length wolfCrypt
 * accepts) to OpenSSL's libcrypto (AES-NI, PCLMULQDQ, AVX/VAES stitched
 * GCM), keeping wolfSSL as the TLS stack. Debian's libwolfssl 5.5.4 has no
 * AES-NI; its crypto-callback interface (CRYPTO_CB_VER 2) covers AES-GCM but
 * not ChaCha20-Poly1305, so ChaCha stays in wolfSSL's C code.
 *
 * Threading: aead_accel_register() is idempotent and thread-safe
 * (pthread_once). The callback may run on any thread at once: its state is
 * per thread, or per connection through a key cache (below).
 *
 * Key caching: wolfSSL 5.5.4 calls no device hook when it frees an Aes, so
 * nothing may be hung off aes->devCtx (it would leak). The expanded keys
 * (an EVP_CIPHER_CTX each) live instead in a struct aead_keycache: the
 * caller's own (one per TLS connection, entered around every wolfSSL call on
 * it and freed with the connection) or, outside any such scope, one per
 * thread (freed at thread exit). A slot is matched by Aes pointer AND key
 * bytes, so a reused address with a new key is re-keyed, never misused. */
#ifndef RAPI_TLS_AEAD_ACCEL_H
#define RAPI_TLS_AEAD_ACCEL_H

#include <stdbool.h>
#include <stdint.h>

/* The wolfCrypt device id ("RAPI"); any value but INVALID_DEVID (-2). */
#define AEAD_ACCEL_DEVID 0x52415049
#define AEAD_KEYCACHE_SLOTS 4 /* a TLS connection uses two Aes (one per way) */
#define AEAD_KEY_MAX 32

struct aead_slot {
    const void *aes;                 /* the wolfCrypt Aes this slot serves */
    void *evp;                       /* EVP_CIPHER_CTX *, kept across records */
    unsigned char key[AEAD_KEY_MAX]; /* raw key it was expanded from */
    unsigned keylen;                 /* 0: slot unused */
    unsigned ivlen;                  /* IV length the context is set for */
    int enc;                         /* direction the context is set for */
};

/* Zero-initialise ({0}) before first use; owned by one thread at a time. */
struct aead_keycache {
    struct aead_slot slot[AEAD_KEYCACHE_SLOTS];
    unsigned next; /* round-robin victim when all slots are taken */
};

/* Counters of this thread (for tests and tls-speed). */
struct aead_accel_stats {
    uint64_t enc;   /* AES-GCM encryptions done by the device */
    uint64_t dec;   /* decryptions (including failed tags) */
    uint64_t rekey; /* key expansions (cache misses) */
};

/* Register the device with wolfCrypt (once per process; later calls return
 * the first result). 0, -ENOTSUP when libcrypto lacks AES-GCM, or -EIO
 * when wolfCrypt refuses the device. Give AEAD_ACCEL_DEVID to
 * wolfSSL_CTX_SetDevId() / wc_AesInit() afterwards. */
int aead_accel_register(void);

/* Whether the CPU has what makes this worth it (AES-NI and PCLMULQDQ). */
bool aead_accel_cpu_ok(void);

/* Run the callbacks of this thread against kc until the matching leave:
 * returns the previous scope, to be given to aead_keycache_leave(). */
struct aead_keycache *aead_keycache_enter(struct aead_keycache *kc);
void aead_keycache_leave(struct aead_keycache *prev);

/* Free the expanded keys and wipe the raw ones; kc is zeroed (reusable).
 * Only when no callback uses kc (after the TLS object it served is freed,
 * or at least when it is not entered). */
void aead_keycache_free(struct aead_keycache *kc);

/* This thread's counters since it started. */
void aead_accel_stats(struct aead_accel_stats *out);

#endif
