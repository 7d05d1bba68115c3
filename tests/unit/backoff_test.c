/* Reconnect backoff schedule (sdk/backoff.c). */
#include <criterion/criterion.h>

#include "sdk/backoff.c"

Test(backoff, doubles_from_min_up_to_max)
{
    /* With the random half at its extremes, attempt n waits in
     * [d - d/2, d] where d = min(100 * 2^n, 5000). */
    static const int want[] = {100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000};
    unsigned n;

    for (n = 0; n < sizeof(want) / sizeof(want[0]); n++) {
        int d = want[n];
        cr_expect_eq(backoff_delay_ms(n, 100, 5000, 0), d - d / 2, "attempt %u low", n);
        cr_expect_eq(backoff_delay_ms(n, 100, 5000, (uint32_t)(d / 2)), d, "attempt %u high", n);
        cr_expect_eq(backoff_delay_ms(n, 100, 5000, (uint32_t)(d / 2 + 1)), d - d / 2,
                     "attempt %u wraps", n);
    }
}

Test(backoff, huge_attempt_counts_do_not_overflow)
{
    cr_expect_eq(backoff_delay_ms(1000, 100, 5000, 0), 2500);
    cr_expect_eq(backoff_delay_ms(UINT32_MAX, 100, 30000, 15000), 30000);
}

Test(backoff, degenerate_bounds)
{
    cr_expect_eq(backoff_delay_ms(0, 0, 0, 0), 1);       /* min 0 -> 1 ms */
    cr_expect_eq(backoff_delay_ms(3, 500, 100, 0), 250); /* max < min -> min */
}

Test(backoff, jitter_spreads)
{
    uint32_t st = 12345;
    int seen[5001] = {0}, distinct = 0, i, d;

    for (i = 0; i < 1000; i++) {
        d = backoff_delay_ms(6, 100, 5000, backoff_rand(&st));
        cr_assert(d >= 2500 && d <= 5000, "%d out of range", d);
        distinct += !seen[d]++;
    }
    cr_expect_gt(distinct, 300, "jitter too regular: %d distinct values", distinct);
}

Test(backoff, rand_never_sticks_at_zero)
{
    uint32_t st = 0;

    cr_expect_neq(backoff_rand(&st), 0u);
    cr_expect_neq(st, 0u);
}
