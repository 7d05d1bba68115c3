/* Reconnect backoff: exponential with equal jitter. Pure, thread-safe. */
#include <stdint.h>

#include "sdk/sdk_int.h"

int backoff_delay_ms(unsigned attempt, int min_ms, int max_ms, uint32_t rnd)
{
    int64_t d = min_ms > 0 ? min_ms : 1;
    int half;

    if (max_ms < d)
        max_ms = (int)d;
    while (attempt-- > 0 && d < max_ms)
        d *= 2;
    if (d > max_ms)
        d = max_ms;
    /* Half the delay is fixed so the schedule still grows; the random half
     * keeps many listeners cut off by one relay restart from arriving in
     * lock-step. */
    half = (int)(d / 2);
    return (int)(d - half) + (int)(rnd % (uint32_t)(half + 1));
}

uint32_t backoff_rand(uint32_t *state)
{
    uint32_t x = *state ? *state : 0x9e3779b9u;

    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    return x;
}
