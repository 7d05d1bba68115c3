/* engine/authlimit.c: the burst, the refill, Retry-After, sources (IPv4,
 * IPv6 /64, v4-mapped), eviction under a flood of addresses, the seed. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <stdbool.h>
#include <sys/un.h>

#include "engine/authlimit.c"

#define RATE 5   /* per second: one token every 200 ms */
#define BURST 20 /* the defaults */
#define T0 1000000ULL

static struct authlimit *t;

static void setup(void)
{
    t = authlimit_new_seeded(0x0123456789abcdefULL, 0xfedcba9876543210ULL);
    cr_assert_not_null(t);
}

static void teardown(void)
{
    authlimit_free(t);
}

TestSuite(authlimit, .init = setup, .fini = teardown);

/* The source of the address ip (IPv6 when it has a colon). */
static struct authlimit_src src_ip(const char *ip)
{
    struct sockaddr_in in = {.sin_family = AF_INET};
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};
    bool six = strchr(ip, ':') != NULL;
    struct authlimit_src s;

    cr_assert_eq(six ? inet_pton(AF_INET6, ip, &in6.sin6_addr)
                     : inet_pton(AF_INET, ip, &in.sin_addr),
                 1, "%s", ip);
    authlimit_src_of(six ? (struct sockaddr *)&in6 : (struct sockaddr *)&in, &s);
    return s;
}

static void fail_n(const struct authlimit_src *s, int n, uint64_t now)
{
    for (int i = 0; i < n; i++)
        authlimit_fail(t, s, now, RATE, BURST);
}

static long check(const struct authlimit_src *s, uint64_t now)
{
    return authlimit_check(t, s, now, RATE, BURST);
}

Test(authlimit, burst_then_blocked_with_retry_after)
{
    struct authlimit_src a = src_ip("192.0.2.1");

    for (int i = 0; i < BURST; i++) {
        cr_assert_eq(check(&a, T0), 0, "blocked after %d failures", i);
        authlimit_fail(t, &a, T0, RATE, BURST);
    }
    /* 20 failures in one instant: the 21st try waits one interval (200 ms),
     * rounded up to whole seconds. */
    cr_assert_eq(check(&a, T0), 1);
    cr_assert_eq(check(&a, T0 + 199), 1);
    cr_assert_eq(check(&a, T0 + 200), 0);
}

Test(authlimit, refill_allows_one_per_interval)
{
    struct authlimit_src a = src_ip("192.0.2.1");

    fail_n(&a, BURST, T0);
    authlimit_fail(t, &a, T0 + 200, RATE, BURST);
    cr_assert_neq(check(&a, T0 + 200), 0);
    cr_assert_eq(check(&a, T0 + 400), 0);
    /* A second later the unused token and five more are there, no more. */
    fail_n(&a, 5, T0 + 1400);
    cr_assert_eq(check(&a, T0 + 1400), 0);
    authlimit_fail(t, &a, T0 + 1400, RATE, BURST);
    cr_assert_neq(check(&a, T0 + 1400), 0);
    /* After burst / rate seconds of quiet the bucket is full again. */
    cr_assert_eq(check(&a, T0 + 1400 + 4000), 0);
    fail_n(&a, BURST - 1, T0 + 5400);
    cr_assert_eq(check(&a, T0 + 5400), 0);
}

Test(authlimit, long_retry_after_and_cap)
{
    struct authlimit_src a = src_ip("192.0.2.1");

    /* rate 1/s, burst 3: the fourth try waits 1 s; a thousand failures owe
     * no more than the burst. */
    for (int i = 0; i < 1000; i++)
        authlimit_fail(t, &a, T0, 1, 3);
    cr_assert_eq(authlimit_check(t, &a, T0, 1, 3), 1);
    cr_assert_eq(authlimit_check(t, &a, T0 + 1000, 1, 3), 0);
}

Test(authlimit, retry_after_counts_what_is_owed)
{
    struct authlimit_src b = src_ip("192.0.2.2");

    authlimit_fail(t, &b, T0, 1, 1);
    cr_assert_eq(authlimit_check(t, &b, T0, 1, 1), 1);
    authlimit_fail(t, &b, T0, 1, 10); /* owes 2 s now; under burst 1: 2 s */
    cr_assert_eq(authlimit_check(t, &b, T0, 1, 1), 2);
    cr_assert_eq(authlimit_check(t, &b, T0 + 1001, 1, 1), 1);
}

Test(authlimit, other_sources_unaffected)
{
    struct authlimit_src a = src_ip("192.0.2.1"), b = src_ip("192.0.2.2");

    fail_n(&a, BURST, T0);
    cr_assert_neq(check(&a, T0), 0);
    cr_assert_eq(check(&b, T0), 0);
    fail_n(&b, BURST - 1, T0);
    cr_assert_eq(check(&b, T0), 0);
}

Test(authlimit, ipv6_by_64)
{
    struct authlimit_src a = src_ip("2001:db8:1:2::1"), same = src_ip("2001:db8:1:2:ffff::9"),
                         other = src_ip("2001:db8:1:3::1");

    cr_assert_eq(a.fam, AF_INET6);
    cr_assert_eq(a.prefix, same.prefix);
    fail_n(&a, BURST, T0);
    cr_assert_neq(check(&same, T0), 0);
    cr_assert_eq(check(&other, T0), 0);
}

Test(authlimit, v4_mapped_is_v4_and_v4_is_not_v6)
{
    struct authlimit_src a = src_ip("198.51.100.7"), m = src_ip("::ffff:198.51.100.7");
    struct authlimit_src z = src_ip("::c633:6407"); /* same low bits, but IPv6 */

    cr_assert_eq(m.fam, AF_INET);
    cr_assert_eq(m.prefix, a.prefix);
    fail_n(&m, BURST, T0);
    cr_assert_neq(check(&a, T0), 0);
    cr_assert_eq(check(&z, T0), 0);
}

Test(authlimit, off_and_non_ip_sources)
{
    struct authlimit_src a = src_ip("192.0.2.1"), u;
    struct sockaddr_un un = {.sun_family = AF_UNIX};

    for (int i = 0; i < 100; i++)
        authlimit_fail(t, &a, T0, RATE, 0);
    cr_assert_eq(authlimit_check(t, &a, T0, RATE, 0), 0);
    cr_assert_eq(check(&a, T0), 0, "burst 0 recorded nothing");
    authlimit_src_of((struct sockaddr *)&un, &u);
    cr_assert_eq(u.fam, 0);
    fail_n(&u, 100, T0);
    cr_assert_eq(check(&u, T0), 0);
}

/* A flood of failures from many addresses evicts fresh entries first: a
 * source being throttled stays throttled. */
Test(authlimit, flood_of_addresses_keeps_the_throttled_source)
{
    struct authlimit_src a = src_ip("192.0.2.1");

    fail_n(&a, BURST, T0);
    for (uint32_t i = 0; i < 8 * AUTHLIMIT_SLOTS; i++) {
        struct authlimit_src s = {.prefix = 0x0a000000u + i, .fam = AF_INET};

        authlimit_fail(t, &s, T0, RATE, BURST);
    }
    cr_assert_neq(check(&a, T0), 0);
}

/* The table never grows: its size is fixed at creation. */
Test(authlimit, fixed_size)
{
    cr_assert_eq(sizeof(struct slot), 24); /* the memory the man page states */
    cr_assert_lt(sizeof(struct authlimit), 193 * 1024);
    cr_assert_eq(sizeof(t->slot) / sizeof(t->slot[0]), AUTHLIMIT_SLOTS);
}

/* Another seed puts sources in other sets: the placement cannot be worked
 * out without the seed. */
Test(authlimit, seed_decides_the_sets)
{
    struct authlimit *u = authlimit_new_seeded(1, 2);
    struct authlimit *r = authlimit_new();
    int same_u = 0, same_r = 0;

    cr_assert_not_null(u);
    cr_assert_not_null(r);
    for (uint32_t i = 0; i < 64; i++) {
        struct authlimit_src s = {.prefix = 0xc0000200u + i, .fam = AF_INET};

        same_u += set_at(t, &s) == set_at(u, &s);
        same_r += set_at(t, &s) == set_at(r, &s);
    }
    cr_assert_lt(same_u, 8);
    cr_assert_lt(same_r, 8);
    authlimit_free(u);
    authlimit_free(r);
}

/* The keyed hash is SipHash-2-4: the reference vectors for the messages
 * "" and 00..07 under the key 00..0f. */
Test(authlimit, siphash_reference_vectors)
{
    const uint64_t k0 = 0x0706050403020100ULL, k1 = 0x0f0e0d0c0b0a0908ULL;
    const uint64_t m = 0x0706050403020100ULL;

    cr_assert_eq(siphash24(k0, k1, NULL, 0), 0x726fdb47dd0e0e31ULL);
    cr_assert_eq(siphash24(k0, k1, &m, 1), 0x93f5f5799a932462ULL);
}
