/* Hashed timer wheel, one per thread (acceptor, each shard); not
 * thread-safe. A struct timer is embedded in its owner, which must
 * timer_del() it before freeing. Resolution TIMER_TICK_MS. */
#ifndef RAPI_ENGINE_TIMER_H
#define RAPI_ENGINE_TIMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TIMER_TICK_MS 50
#define TIMER_SLOTS 1024    /* one turn = 51.2 s; later timers wait for their turn */
#define TIMER_SCAN_SLOTS 20 /* wheel_timeout looks this far ahead (1 s) */

struct timer {
    struct timer *next, *prev; /* NULL when not armed */
    uint64_t expires;          /* ms, monotonic */
    void (*cb)(struct timer *t);
};

struct wheel {
    struct timer slot[TIMER_SLOTS]; /* list heads */
    uint64_t tick;                  /* last tick processed */
    size_t count;                   /* armed timers */
};

void wheel_init(struct wheel *w, uint64_t now);

/* Arm (or re-arm) t to fire at `expires` ms, calling cb. */
void timer_set(struct wheel *w, struct timer *t, uint64_t expires, void (*cb)(struct timer *));

/* Disarm; harmless when not armed. */
void timer_del(struct wheel *w, struct timer *t);

static inline bool timer_armed(const struct timer *t)
{
    return t->next != NULL;
}

/* Fire every timer due at `now`. Callbacks may arm and disarm any timer. */
void wheel_run(struct wheel *w, uint64_t now);

/* Milliseconds until the next tick worth waking for, -1 when nothing armed. */
int wheel_timeout(const struct wheel *w, uint64_t now);

#endif
