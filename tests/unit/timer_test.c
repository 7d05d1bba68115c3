#include <criterion/criterion.h>

#include "engine/timer.h"

static struct wheel w;
static int fired[8];
static struct timer t[8];

static void cb(struct timer *x)
{
    fired[x - t]++;
}

/* A callback that disarms another timer due in the same run. */
static void cb_del(struct timer *x)
{
    fired[x - t]++;
    timer_del(&w, &t[1]);
}

Test(timer, fires_in_order_of_time_not_before)
{
    wheel_init(&w, 1000);
    memset(fired, 0, sizeof(fired));
    memset(t, 0, sizeof(t));
    timer_set(&w, &t[0], 1100, cb);
    timer_set(&w, &t[1], 1500, cb);
    wheel_run(&w, 1099);
    cr_assert_eq(fired[0], 0, "not before its time");
    wheel_run(&w, 1100);
    cr_assert_eq(fired[0], 1);
    cr_assert_eq(fired[1], 0);
    cr_assert(!timer_armed(&t[0]));
    wheel_run(&w, 1600);
    cr_assert_eq(fired[1], 1);
    cr_assert_eq(w.count, 0);
    cr_assert_eq(wheel_timeout(&w, 1600), -1);
}

Test(timer, beyond_one_turn)
{
    uint64_t far = 1000 + (uint64_t)TIMER_SLOTS * TIMER_TICK_MS * 3 + 77;

    wheel_init(&w, 1000);
    memset(fired, 0, sizeof(fired));
    memset(t, 0, sizeof(t));
    timer_set(&w, &t[0], far, cb);
    for (uint64_t now = 1000; now < far; now += 333)
        wheel_run(&w, now);
    cr_assert_eq(fired[0], 0, "a timer several turns away waits its turn");
    wheel_run(&w, far + TIMER_TICK_MS);
    cr_assert_eq(fired[0], 1);
}

Test(timer, rearm_and_delete)
{
    wheel_init(&w, 0);
    memset(fired, 0, sizeof(fired));
    memset(t, 0, sizeof(t));
    timer_set(&w, &t[0], 100, cb);
    timer_set(&w, &t[0], 5000, cb); /* re-arm moves it */
    cr_assert_eq(w.count, 1);
    wheel_run(&w, 200);
    cr_assert_eq(fired[0], 0);
    timer_del(&w, &t[0]);
    timer_del(&w, &t[0]); /* harmless twice */
    cr_assert_eq(w.count, 0);
    wheel_run(&w, 6000);
    cr_assert_eq(fired[0], 0);
}

Test(timer, callback_may_delete_a_due_timer)
{
    wheel_init(&w, 0);
    memset(fired, 0, sizeof(fired));
    memset(t, 0, sizeof(t));
    timer_set(&w, &t[0], 100, cb_del);
    timer_set(&w, &t[1], 100, cb);
    wheel_run(&w, 1000);
    cr_assert_eq(fired[0], 1);
    cr_assert_eq(fired[1], 0, "deleted by an earlier callback of the same run");
    cr_assert_eq(w.count, 0);
}

Test(timer, timeout_points_at_first_armed_slot)
{
    wheel_init(&w, 0);
    memset(t, 0, sizeof(t));
    timer_set(&w, &t[0], 500, cb);
    cr_assert_geq(wheel_timeout(&w, 0), 450);
    cr_assert_leq(wheel_timeout(&w, 0), 500);
    /* Far timers: the scan is bounded, the loop wakes and looks again. */
    timer_set(&w, &t[0], 20000, cb);
    cr_assert_eq(wheel_timeout(&w, 0), TIMER_SCAN_SLOTS * TIMER_TICK_MS);
}
