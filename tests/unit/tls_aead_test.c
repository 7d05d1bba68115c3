/* The AES-GCM device against NIST/McGrew-Viega vectors and wolfCrypt's own
 * software, through the public wc_AesGcm* calls with the device id. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tls/aead_accel.h"

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/aes.h>
#include <wolfssl/wolfcrypt/error-crypt.h>

#define MAX_BUF 4096
#define TAG_LEN 16

struct vec {
    const char *key, *iv, *pt, *aad, *ct, *tag;
};

/* The GCM specification's test cases 2, 3, 4, 5, 6, 14, 15, 16 and 18. */
static const struct vec vecs[] = {
    {"00000000000000000000000000000000", "000000000000000000000000",
     "00000000000000000000000000000000", "", "0388dace60b6a392f328c2b971b2fe78",
     "ab6e47d42cec13bdf53a67b21257bddf"},
    {"feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888",
     "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b"
     "5"
     "25b16aedf5aa0de657ba637b391aafd255",
     "",
     "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84a"
     "a"
     "051ba30b396a0aac973d58e091473f5985",
     "4d5c2af327cd64a62cf35abd2ba6fab4"},
    {"feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888",
     "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b"
     "5"
     "25b16aedf5aa0de657ba637b39",
     "feedfacedeadbeeffeedfacedeadbeefabaddad2",
     "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84a"
     "a"
     "051ba30b396a0aac973d58e091",
     "5bc94fbc3221a5db94fae95ae7121a47"},
    {"feffe9928665731c6d6a8f9467308308", "cafebabefacedbad",
     "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b"
     "5"
     "25b16aedf5aa0de657ba637b39",
     "feedfacedeadbeeffeedfacedeadbeefabaddad2",
     "61353b4c2806934a777ff51fa22a4755699b2a714fcdc6f83766e5f97b6c742373806900e49f24b22b097544d4896"
     "b"
     "424989b5e1ebac0f07c23f4598",
     "3612d2e79e3b0785561be14aaca2fccb"},
    {"feffe9928665731c6d6a8f9467308308",
     "9313225df88406e555909c5aff5269aa6a7a9538534f7da1e4c303d2a318a728c3c0c95156809539fcf0e2429a6b5"
     "2"
     "5416aedbf5a0de6a57a637b39b",
     "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b"
     "5"
     "25b16aedf5aa0de657ba637b39",
     "feedfacedeadbeeffeedfacedeadbeefabaddad2",
     "8ce24998625615b603a033aca13fb894be9112a5c3a211a8ba262a3cca7e2ca701e4a9a4fba43c90ccdcb281d48c7"
     "c"
     "6fd62875d2aca417034c34aee5",
     "619cc5aefffe0bfa462af43c1699d050"},
    {"0000000000000000000000000000000000000000000000000000000000000000", "000000000000000000000000",
     "00000000000000000000000000000000", "", "cea7403d4d606b6e074ec5d3baf39d18",
     "d0d1c8a799996bf0265b98b5d48ab919"},
    {"feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888",
     "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b"
     "5"
     "25b16aedf5aa0de657ba637b391aafd255",
     "",
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828"
     "838"
     "c5f61e6393ba7a0abcc9f662898015ad",
     "b094dac5d93471bdec1a502270e3cc6c"},
    {"feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888",
     "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b"
     "5"
     "25b16aedf5aa0de657ba637b39",
     "feedfacedeadbeeffeedfacedeadbeefabaddad2",
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828"
     "838"
     "c5f61e6393ba7a0abcc9f662",
     "76fc6ece0f4e1768cddf8853bb2d551b"},
    {"feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
     "9313225df88406e555909c5aff5269aa6a7a9538534f7da1e4c303d2a318a728c3c0c95156809539fcf0e2429a6b5"
     "2"
     "5416aedbf5a0de6a57a637b39b",
     "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b"
     "5"
     "25b16aedf5aa0de657ba637b39",
     "feedfacedeadbeeffeedfacedeadbeefabaddad2",
     "5a8def2f0c9e53f1f75d7853659e2a20eeb2b22aafde6419a058ab4f6f746bf40fc0c3b780f244452da3ebf1c5d82"
     "cde"
     "a2418997200ef82e44ae7e3f",
     "a44a8266ee1c8eb0c8b5d4cf5ae9f19a"},
};

static size_t unhex(const char *h, unsigned char *out)
{
    size_t n = strlen(h) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        cr_assert_eq(sscanf(h + 2 * i, "%2x", &v), 1);
        out[i] = (unsigned char)v;
    }
    return n;
}

static void setup(void)
{
    cr_assert_eq(aead_accel_register(), 0);
}

static void aes_open(Aes *aes, int devid, const unsigned char *key, size_t klen)
{
    cr_assert_eq(wc_AesInit(aes, NULL, devid), 0);
    cr_assert_eq(wc_AesGcmSetKey(aes, key, (word32)klen), 0);
}

static uint64_t enc_count(void)
{
    struct aead_accel_stats st;
    aead_accel_stats(&st);
    return st.enc;
}

/* Encrypt with devid; returns 0 or wolfCrypt's error. */
static int seal(int devid, const unsigned char *key, size_t klen, const unsigned char *iv,
                size_t ivlen, const unsigned char *pt, size_t n, const unsigned char *aad,
                size_t alen, unsigned char *ct, unsigned char *tag, size_t taglen)
{
    Aes aes;
    aes_open(&aes, devid, key, klen);
    int r = wc_AesGcmEncrypt(&aes, ct, pt, (word32)n, iv, (word32)ivlen, tag, (word32)taglen, aad,
                             (word32)alen);
    wc_AesFree(&aes);
    return r;
}

static int open_(int devid, const unsigned char *key, size_t klen, const unsigned char *iv,
                 size_t ivlen, const unsigned char *ct, size_t n, const unsigned char *aad,
                 size_t alen, unsigned char *pt, const unsigned char *tag, size_t taglen)
{
    Aes aes;
    aes_open(&aes, devid, key, klen);
    int r = wc_AesGcmDecrypt(&aes, pt, ct, (word32)n, iv, (word32)ivlen, tag, (word32)taglen, aad,
                             (word32)alen);
    wc_AesFree(&aes);
    return r;
}

struct bufs {
    unsigned char key[32], iv[64], pt[MAX_BUF], aad[64], ct[MAX_BUF], tag[TAG_LEN], out[MAX_BUF];
    unsigned char ct2[MAX_BUF], tag2[TAG_LEN];
    size_t klen, ivlen, n, alen;
};

static void load(const struct vec *v, struct bufs *b)
{
    b->klen = unhex(v->key, b->key);
    b->ivlen = unhex(v->iv, b->iv);
    b->n = unhex(v->pt, b->pt);
    b->alen = unhex(v->aad, b->aad);
    cr_assert_eq(unhex(v->ct, b->ct), b->n);
    cr_assert_eq(unhex(v->tag, b->tag), TAG_LEN);
}

Test(tls_aead, vectors_device_and_software, .init = setup)
{
    for (size_t i = 0; i < sizeof(vecs) / sizeof(vecs[0]); i++) {
        struct bufs b;
        load(&vecs[i], &b);
        for (int dev = 0; dev < 2; dev++) {
            int devid = dev ? AEAD_ACCEL_DEVID : INVALID_DEVID;
            uint64_t before = enc_count();
            cr_assert_eq(seal(devid, b.key, b.klen, b.iv, b.ivlen, b.pt, b.n, b.aad, b.alen, b.ct2,
                              b.tag2, TAG_LEN),
                         0, "vector %zu dev %d", i, dev);
            cr_assert_eq(enc_count() - before, (uint64_t)dev, "device used: vector %zu", i);
            cr_assert_arr_eq(b.ct2, b.ct, b.n, "ciphertext vector %zu dev %d", i, dev);
            cr_assert_arr_eq(b.tag2, b.tag, TAG_LEN, "tag vector %zu dev %d", i, dev);
            cr_assert_eq(open_(devid, b.key, b.klen, b.iv, b.ivlen, b.ct, b.n, b.aad, b.alen, b.out,
                               b.tag, TAG_LEN),
                         0);
            cr_assert_arr_eq(b.out, b.pt, b.n);
        }
    }
}

Test(tls_aead, tag_and_aad_tampering_detected, .init = setup)
{
    struct bufs b;
    load(&vecs[2], &b);
    unsigned char zero[MAX_BUF] = {0};

    b.tag[5] ^= 1;
    memset(b.out, 0xaa, b.n);
    cr_assert_eq(open_(AEAD_ACCEL_DEVID, b.key, b.klen, b.iv, b.ivlen, b.ct, b.n, b.aad, b.alen,
                       b.out, b.tag, TAG_LEN),
                 AES_GCM_AUTH_E);
    cr_assert_arr_eq(b.out, zero, b.n, "plaintext of a forged record is wiped");
    b.tag[5] ^= 1;
    b.aad[0] ^= 0x80;
    cr_assert_eq(open_(AEAD_ACCEL_DEVID, b.key, b.klen, b.iv, b.ivlen, b.ct, b.n, b.aad, b.alen,
                       b.out, b.tag, TAG_LEN),
                 AES_GCM_AUTH_E);
    b.aad[0] ^= 0x80;
    b.ct[b.n - 1] ^= 1;
    cr_assert_eq(open_(AEAD_ACCEL_DEVID, b.key, b.klen, b.iv, b.ivlen, b.ct, b.n, b.aad, b.alen,
                       b.out, b.tag, TAG_LEN),
                 AES_GCM_AUTH_E);
}

static void fill(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)((seed + i * 131u) ^ (i >> 3));
}

/* Odd lengths, every key size, 12- and 16-byte IVs, short tags, AAD 0..40:
 * the device and the software agree both ways. */
Test(tls_aead, odd_lengths_match_software, .init = setup)
{
    static const size_t klens[] = {16, 24, 32};
    static const size_t ivlens[] = {12, 16};
    static const size_t taglens[] = {16, 12};
    struct bufs b;
    unsigned seed = 1;

    for (size_t n = 0; n < 1100; n += 37 + (n & 7)) {
        for (size_t k = 0; k < 3; k++) {
            size_t iv = ivlens[n & 1], tl = taglens[(n >> 1) & 1], alen = n % 41;
            fill(b.key, klens[k], seed++);
            fill(b.iv, iv, seed++);
            fill(b.pt, n, seed++);
            fill(b.aad, alen, seed++);
            cr_assert_eq(seal(INVALID_DEVID, b.key, klens[k], b.iv, iv, b.pt, n, b.aad, alen, b.ct,
                              b.tag, tl),
                         0);
            cr_assert_eq(seal(AEAD_ACCEL_DEVID, b.key, klens[k], b.iv, iv, b.pt, n, b.aad, alen,
                              b.ct2, b.tag2, tl),
                         0);
            cr_assert_arr_eq(b.ct2, b.ct, n, "n=%zu k=%zu", n, klens[k]);
            cr_assert_arr_eq(b.tag2, b.tag, tl, "n=%zu k=%zu", n, klens[k]);
            cr_assert_eq(open_(AEAD_ACCEL_DEVID, b.key, klens[k], b.iv, iv, b.ct, n, b.aad, alen,
                               b.out, b.tag, tl),
                         0);
            cr_assert_arr_eq(b.out, b.pt, n);
        }
    }
}

/* One Aes object re-keyed (what TLS 1.3 does from handshake to traffic
 * keys), in place, inside a connection's key cache. */
Test(tls_aead, rekey_same_object_in_place_in_scope, .init = setup)
{
    struct aead_keycache kc = {0};
    struct aead_keycache *prev = aead_keycache_enter(&kc);
    struct bufs b;
    Aes aes;

    fill(b.iv, 12, 9);
    cr_assert_eq(wc_AesInit(&aes, NULL, AEAD_ACCEL_DEVID), 0);
    for (unsigned round = 0; round < 3; round++) {
        fill(b.key, 16, 100 + round);
        fill(b.pt, 777, round);
        cr_assert_eq(wc_AesGcmSetKey(&aes, b.key, 16), 0);
        cr_assert_eq(
            seal(INVALID_DEVID, b.key, 16, b.iv, 12, b.pt, 777, NULL, 0, b.ct, b.tag, TAG_LEN), 0);
        memcpy(b.ct2, b.pt, 777);
        cr_assert_eq(wc_AesGcmEncrypt(&aes, b.ct2, b.ct2, 777, b.iv, 12, b.tag2, TAG_LEN, NULL, 0),
                     0);
        cr_assert_arr_eq(b.ct2, b.ct, 777, "round %u", round);
        cr_assert_arr_eq(b.tag2, b.tag, TAG_LEN);
    }
    cr_assert_eq(kc.slot[0].aes, &aes, "the connection's cache served the calls");
    wc_AesFree(&aes);
    aead_keycache_leave(prev);
    aead_keycache_free(&kc);
    cr_assert_null(kc.slot[0].evp);
}

/* Many objects through one small cache: eviction keeps results right and
 * re-expands only on a miss. */
Test(tls_aead, eviction_and_rekey_counts, .init = setup)
{
    struct aead_keycache kc = {0};
    struct aead_keycache *prev = aead_keycache_enter(&kc);
    struct aead_accel_stats s0, s1;
    Aes aes[AEAD_KEYCACHE_SLOTS + 2];
    struct bufs b;

    fill(b.iv, 12, 3);
    fill(b.pt, 100, 4);
    for (size_t i = 0; i < sizeof(aes) / sizeof(aes[0]); i++) {
        fill(b.key, 32, (unsigned)i);
        aes_open(&aes[i], AEAD_ACCEL_DEVID, b.key, 32);
    }
    aead_accel_stats(&s0);
    for (unsigned rep = 0; rep < 3; rep++)
        cr_assert_eq(wc_AesGcmEncrypt(&aes[0], b.ct, b.pt, 100, b.iv, 12, b.tag, 16, NULL, 0), 0);
    aead_accel_stats(&s1);
    cr_assert_eq(s1.rekey - s0.rekey, 1, "one expansion for three records");
    for (size_t i = 0; i < sizeof(aes) / sizeof(aes[0]); i++) {
        fill(b.key, 32, (unsigned)i);
        cr_assert_eq(
            seal(INVALID_DEVID, b.key, 32, b.iv, 12, b.pt, 100, NULL, 0, b.ct2, b.tag2, 16), 0);
        cr_assert_eq(wc_AesGcmEncrypt(&aes[i], b.ct, b.pt, 100, b.iv, 12, b.tag, 16, NULL, 0), 0);
        cr_assert_arr_eq(b.ct, b.ct2, 100, "object %zu", i);
        cr_assert_arr_eq(b.tag, b.tag2, 16);
        wc_AesFree(&aes[i]);
    }
    aead_keycache_leave(prev);
    aead_keycache_free(&kc);
}

#define THREADS 4
#define THREAD_ROUNDS 300

static void *worker(void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg;
    struct bufs *b = malloc(sizeof(*b));
    void *bad = (void *)1;

    for (unsigned r = 0; r < THREAD_ROUNDS; r++) {
        size_t n = 1 + (r * 97 + id) % 2000;
        fill(b->key, 16, id * 1000 + r % 7);
        fill(b->iv, 12, r);
        fill(b->pt, n, id + r);
        if (seal(INVALID_DEVID, b->key, 16, b->iv, 12, b->pt, n, NULL, 0, b->ct, b->tag, 16) ||
            seal(AEAD_ACCEL_DEVID, b->key, 16, b->iv, 12, b->pt, n, NULL, 0, b->ct2, b->tag2, 16) ||
            memcmp(b->ct, b->ct2, n) || memcmp(b->tag, b->tag2, 16))
            goto out;
    }
    bad = NULL;
out:
    free(b);
    return bad;
}

Test(tls_aead, threads_concurrently, .init = setup)
{
    pthread_t t[THREADS];
    for (uintptr_t i = 0; i < THREADS; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, worker, (void *)i), 0);
    for (int i = 0; i < THREADS; i++) {
        void *res;
        cr_assert_eq(pthread_join(t[i], &res), 0);
        cr_assert_null(res, "thread %d disagreed with software", i);
    }
}

Test(tls_aead, register_is_idempotent)
{
    cr_assert_eq(aead_accel_register(), 0);
    cr_assert_eq(aead_accel_register(), 0);
}

/* aead_accel_cpu_ok() says what /proc/cpuinfo says. */
Test(tls_aead, cpu_check_matches_cpuinfo)
{
    char cmd[] = "grep -qw aes /proc/cpuinfo && grep -qw pclmulqdq /proc/cpuinfo";
    cr_assert_eq(aead_accel_cpu_ok(), system(cmd) == 0);
}
