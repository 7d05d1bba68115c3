#include "engine/timer.h"

static void list_init(struct timer *head)
{
    head->next = head->prev = head;
}

static void list_push(struct timer *head, struct timer *t)
{
    t->prev = head->prev;
    t->next = head;
    head->prev->next = t;
    head->prev = t;
}

static void list_unlink(struct timer *t)
{
    t->prev->next = t->next;
    t->next->prev = t->prev;
    t->next = t->prev = NULL;
}

void wheel_init(struct wheel *w, uint64_t now)
{
    for (size_t i = 0; i < TIMER_SLOTS; i++)
        list_init(&w->slot[i]);
    w->tick = now / TIMER_TICK_MS;
    w->count = 0;
}

void timer_set(struct wheel *w, struct timer *t, uint64_t expires, void (*cb)(struct timer *))
{
    uint64_t tick = (expires + TIMER_TICK_MS - 1) / TIMER_TICK_MS;

    timer_del(w, t);
    /* A timer due in the past goes to the next tick, never to one already run. */
    if (tick <= w->tick)
        tick = w->tick + 1;
    t->expires = expires;
    t->cb = cb;
    list_push(&w->slot[tick % TIMER_SLOTS], t);
    w->count++;
}

void timer_del(struct wheel *w, struct timer *t)
{
    if (!t->next)
        return;
    list_unlink(t);
    w->count--;
}

/* Move the due timers of one slot to `due`, so that callbacks can freely
 * disarm others (a timer on `due` is unlinked from there by timer_del). */
static void collect_slot(struct wheel *w, struct timer *head, uint64_t now, struct timer *due)
{
    struct timer *t = head->next;

    while (t != head) {
        struct timer *next = t->next;

        if (t->expires <= now) {
            list_unlink(t);
            list_push(due, t);
        }
        t = next;
    }
}

void wheel_run(struct wheel *w, uint64_t now)
{
    uint64_t target = now / TIMER_TICK_MS;
    uint64_t steps = target - w->tick;
    struct timer due;

    if (target <= w->tick)
        return;
    if (steps > TIMER_SLOTS)
        steps = TIMER_SLOTS;
    list_init(&due);
    for (uint64_t i = 1; i <= steps; i++)
        collect_slot(w, &w->slot[(w->tick + i) % TIMER_SLOTS], now, &due);
    w->tick = target;
    while (due.next != &due) {
        struct timer *t = due.next;

        list_unlink(t);
        w->count--;
        t->cb(t);
    }
}

int wheel_timeout(const struct wheel *w, uint64_t now)
{
    uint64_t next;

    if (!w->count)
        return -1;
    /* Sleep until the first non-empty slot's tick: an idle relay with a few
     * keepalive timers does not wake every tick. The scan is bounded so that
     * a busy loop does not pay for it; past the bound, wake up and look
     * again. */
    for (uint64_t i = 1; i <= TIMER_SCAN_SLOTS; i++) {
        const struct timer *head = &w->slot[(w->tick + i) % TIMER_SLOTS];

        if (head->next != head) {
            next = (w->tick + i) * TIMER_TICK_MS;
            return next > now ? (int)(next - now) : 0;
        }
    }
    next = (w->tick + TIMER_SCAN_SLOTS) * TIMER_TICK_MS;
    return next > now ? (int)(next - now) : 0;
}
