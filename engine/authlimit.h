/* Per-source limit on failed authentications (docs/PROTOCOL.md P-KEY-5):
 * a token bucket per IPv4 address or IPv6 /64, kept as one theoretical
 * arrival time (GCRA), in a fixed table allocated once: a flood from many
 * addresses costs no memory per address, it evicts. Slots are chosen by a
 * SipHash keyed with a per-process random seed, so a remote peer cannot aim
 * its addresses at one slot. The acceptor owns the one table and is its only
 * thread; the clock is passed in (ms), so tests drive it. */
#ifndef RAPI_ENGINE_AUTHLIMIT_H
#define RAPI_ENGINE_AUTHLIMIT_H

#include <stdint.h>
#include <sys/socket.h>

#define AUTHLIMIT_SETS 1024 /* slot sets (a power of two) */
#define AUTHLIMIT_WAYS 8    /* slots per set: a source evicts within its set */
#define AUTHLIMIT_SLOTS (AUTHLIMIT_SETS * AUTHLIMIT_WAYS)

/* A source as the limit sees it: an IPv4 address, or an IPv6 /64 (an
 * IPv4-mapped IPv6 address counts as the IPv4 address). fam 0: not an IP
 * source, never limited. */
struct authlimit_src {
    uint64_t prefix;
    uint32_t fam; /* AF_INET, AF_INET6 or 0 */
};

struct authlimit;

/* The source of a peer address. */
void authlimit_src_of(const struct sockaddr *sa, struct authlimit_src *out);

/* A table with a random seed (getrandom). NULL when out of memory or
 * without randomness. Its size is sizeof(struct authlimit), about
 * AUTHLIMIT_SLOTS * 24 bytes. */
struct authlimit *authlimit_new(void);

/* The same with a given seed (unit tests). */
struct authlimit *authlimit_new_seeded(uint64_t k0, uint64_t k1);

void authlimit_free(struct authlimit *t);

/* 0 when src may try to authenticate at now_ms, else the seconds (>= 1)
 * until it may again (the Retry-After value): it has failed more than
 * burst times faster than rate per second. burst 0 turns the limit off;
 * rate must be >= 1. */
long authlimit_check(const struct authlimit *t, const struct authlimit_src *src, uint64_t now_ms,
                     long rate, long burst);

/* Count one failed authentication of src at now_ms. A source not in the
 * table takes a free slot of its set, or evicts the one nearest to a full
 * bucket (a source being throttled outlives fresh ones). */
void authlimit_fail(struct authlimit *t, const struct authlimit_src *src, uint64_t now_ms,
                    long rate, long burst);

#endif
