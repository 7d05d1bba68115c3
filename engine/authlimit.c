/* Failed-authentication limit: a set-associative table of GCRA buckets,
 * keyed by SipHash-2-4 with a random seed. See authlimit.h. */
#include "engine/authlimit.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "proto/rnd.h"

#define US_PER_MS 1000ULL
#define US_PER_S 1000000ULL
#define SIP_ROUNDS_C 2 /* SipHash-2-4 */
#define SIP_ROUNDS_D 4
#define SIP_FINAL 0xffULL
#define V6_PREFIX_BYTES 8 /* a /64 */
#define V4_MAPPED_AT 12   /* ::ffff:a.b.c.d: the IPv4 address's offset */

/* One source. tat is the time (us) at which its bucket is full again: each
 * failure adds one emission interval; fam 0 marks a free slot. */
struct slot {
    uint64_t prefix;
    uint64_t tat;
    uint32_t fam;
};

struct authlimit {
    uint64_t k0, k1;
    struct slot slot[AUTHLIMIT_SLOTS];
};

static uint64_t rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

static void sip_round(uint64_t v[4])
{
    v[0] += v[1];
    v[1] = rotl(v[1], 13) ^ v[0];
    v[0] = rotl(v[0], 32);
    v[2] += v[3];
    v[3] = rotl(v[3], 16) ^ v[2];
    v[0] += v[3];
    v[3] = rotl(v[3], 21) ^ v[0];
    v[2] += v[1];
    v[1] = rotl(v[1], 17) ^ v[2];
    v[2] = rotl(v[2], 32);
}

static void sip_rounds(uint64_t v[4], int n)
{
    for (int i = 0; i < n; i++)
        sip_round(v);
}

/* SipHash-2-4 of n little-endian 64-bit words (8n bytes) under (k0, k1). */
static uint64_t siphash24(uint64_t k0, uint64_t k1, const uint64_t *m, size_t n)
{
    uint64_t v[4] = {k0 ^ 0x736f6d6570736575ULL, k1 ^ 0x646f72616e646f6dULL,
                     k0 ^ 0x6c7967656e657261ULL, k1 ^ 0x7465646279746573ULL};
    uint64_t b = (uint64_t)(n * sizeof(*m)) << 56;

    for (size_t i = 0; i < n; i++) {
        v[3] ^= m[i];
        sip_rounds(v, SIP_ROUNDS_C);
        v[0] ^= m[i];
    }
    v[3] ^= b;
    sip_rounds(v, SIP_ROUNDS_C);
    v[0] ^= b;
    v[2] ^= SIP_FINAL;
    sip_rounds(v, SIP_ROUNDS_D);
    return v[0] ^ v[1] ^ v[2] ^ v[3];
}

/* A keyed pseudo-random function of the source: its slot set cannot be
 * predicted without the seed. */
static uint64_t src_hash(const struct authlimit *t, const struct authlimit_src *s)
{
    uint64_t m[2] = {s->prefix, s->fam};

    return siphash24(t->k0, t->k1, m, 2);
}

static uint64_t be_bytes(const unsigned char *p, int n)
{
    uint64_t x = 0;

    for (int i = 0; i < n; i++)
        x = x << 8 | p[i];
    return x;
}

void authlimit_src_of(const struct sockaddr *sa, struct authlimit_src *out)
{
    memset(out, 0, sizeof(*out));
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

        out->prefix = be_bytes((const unsigned char *)&in->sin_addr, sizeof(in->sin_addr));
        out->fam = AF_INET;
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        const unsigned char *a = in6->sin6_addr.s6_addr;

        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
            out->prefix = be_bytes(a + V4_MAPPED_AT, 4);
            out->fam = AF_INET;
        } else {
            out->prefix = be_bytes(a, V6_PREFIX_BYTES);
            out->fam = AF_INET6;
        }
    }
}

struct authlimit *authlimit_new_seeded(uint64_t k0, uint64_t k1)
{
    struct authlimit *t = calloc(1, sizeof(*t));

    if (!t)
        return NULL;
    t->k0 = k0;
    t->k1 = k1;
    return t;
}

struct authlimit *authlimit_new(void)
{
    uint64_t k[2];

    if (rnd_fill(k, sizeof(k)) < 0)
        return NULL;
    return authlimit_new_seeded(k[0], k[1]);
}

void authlimit_free(struct authlimit *t)
{
    free(t);
}

/* Index of the first slot of s's set. */
static size_t set_at(const struct authlimit *t, const struct authlimit_src *s)
{
    return (size_t)(src_hash(t, s) & (AUTHLIMIT_SETS - 1)) * AUTHLIMIT_WAYS;
}

/* Index of s's slot, or -1. */
static long slot_find(const struct authlimit *t, const struct authlimit_src *s)
{
    size_t at = set_at(t, s);

    for (size_t i = at; i < at + AUTHLIMIT_WAYS; i++)
        if (t->slot[i].fam == s->fam && t->slot[i].prefix == s->prefix)
            return (long)i;
    return -1;
}

/* A slot for s not in the table: a free or refilled one (its bucket full
 * again, so forgetting it changes nothing), else the one nearest to full. */
static struct slot *slot_victim(struct authlimit *t, const struct authlimit_src *s, uint64_t now)
{
    struct slot *set = &t->slot[set_at(t, s)], *v = &set[0];

    for (int i = 0; i < AUTHLIMIT_WAYS; i++) {
        if (set[i].fam == 0 || set[i].tat <= now)
            return &set[i];
        if (set[i].tat < v->tat)
            v = &set[i];
    }
    return v;
}

static uint64_t interval_us(long rate)
{
    return rate > 0 ? US_PER_S / (uint64_t)rate : US_PER_S;
}

long authlimit_check(const struct authlimit *t, const struct authlimit_src *src, uint64_t now_ms,
                     long rate, long burst)
{
    uint64_t now = now_ms * US_PER_MS, allow, wait;
    long i;

    if (burst <= 0 || src->fam == 0)
        return 0;
    i = slot_find(t, src);
    /* Blocked once burst failures are in the bucket: tat - now > (burst-1)T. */
    allow = (uint64_t)(burst - 1) * interval_us(rate);
    if (i < 0 || t->slot[i].tat <= now + allow)
        return 0;
    wait = t->slot[i].tat - allow - now;
    return (long)((wait + US_PER_S - 1) / US_PER_S);
}

void authlimit_fail(struct authlimit *t, const struct authlimit_src *src, uint64_t now_ms,
                    long rate, long burst)
{
    uint64_t now = now_ms * US_PER_MS, T = interval_us(rate);
    long i;
    struct slot *s;

    if (burst <= 0 || src->fam == 0)
        return;
    i = slot_find(t, src);
    s = i >= 0 ? &t->slot[i] : NULL;
    if (!s) {
        s = slot_victim(t, src, now);
        *s = (struct slot){.prefix = src->prefix, .fam = src->fam, .tat = now};
    }
    if (s->tat < now)
        s->tat = now;
    s->tat += T;
    /* Never more than a full burst owed (burst may shrink on reload). */
    if (s->tat > now + (uint64_t)burst * T)
        s->tat = now + (uint64_t)burst * T;
}
