#include "engine/notify.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "engine/log.h"
#include "engine/shard.h"
#include "net/anet.h"

#define NOTIFY_STATE_MAX 64 /* "RELOADING=1\nMONOTONIC_USEC=..." */

struct notify notify_main;

void notify_setup(struct notify *n, notify_send_fn *send, uint64_t watchdog_us, struct relay *r)
{
    memset(n, 0, sizeof(*n));
    n->send = send;
    n->relay = r;
    if (send && watchdog_us) {
        n->watchdog_ms = watchdog_us / 1000;
        if (n->watchdog_ms < 2 * TIMER_TICK_MS)
            n->watchdog_ms = 2 * TIMER_TICK_MS; /* below the timer's resolution */
    }
}

static int sd_send(const char *state)
{
    int r = sd_notify(0, state);

    return r < 0 ? r : 0;
}

void notify_from_env(struct relay *r)
{
    uint64_t usec = 0;

    /* Not under a service manager: no sd_* call, no syscall, ever. */
    if (!getenv("NOTIFY_SOCKET")) {
        notify_setup(&notify_main, NULL, 0, r);
        return;
    }
    if (sd_watchdog_enabled(0, &usec) <= 0)
        usec = 0;
    notify_setup(&notify_main, sd_send, usec, r);
}

static void notify_send(struct notify *n, const char *state)
{
    int e = n->send(state);

    if (e < 0)
        log_debug("sd_notify %.*s: %s", (int)strcspn(state, "="), state, strerror(-e));
}

int notify_loop_wait(struct notify *n, int loop, uint64_t now, int wait_ms)
{
    int cap;

    if (!n->watchdog_ms || loop < 0 || loop >= NOTIFY_MAX_LOOPS)
        return wait_ms;
    atomic_store_explicit(&n->beat[loop], now, memory_order_relaxed);
    cap = (int)(n->watchdog_ms / NOTIFY_WAIT_DIVISOR);
    return wait_ms < 0 || wait_ms > cap ? cap : wait_ms;
}

bool notify_alive(const struct notify *n, int nshards, uint64_t now)
{
    int nloops = 1 + nshards;

    if (nloops > NOTIFY_MAX_LOOPS)
        nloops = NOTIFY_MAX_LOOPS;
    for (int i = 0; i < nloops; i++) {
        uint64_t b = atomic_load_explicit(&n->beat[i], memory_order_relaxed);

        if (b == 0 || (now > b && now - b > n->watchdog_ms))
            return false;
    }
    return true;
}

/* STATUS= with the live counts of every shard. */
static void notify_status(struct notify *n)
{
    uint64_t listeners = 0, waiting = 0, links = 0;
    char msg[NOTIFY_STATUS_MAX];
    struct relay *r = n->relay;
    int nshards = r ? r->nshards : 0;

    for (int i = 0; i < nshards; i++) {
        listeners += STAT_GET(r->shards[i]->stats.listeners);
        waiting += STAT_GET(r->shards[i]->stats.waiting);
        links += STAT_GET(r->shards[i]->stats.links);
    }
    snprintf(msg, sizeof(msg),
             "STATUS=%s%" PRIu64 " listeners, %" PRIu64 " waiting, %" PRIu64 " linked pairs",
             n->stopping ? "draining: " : "", listeners, waiting, links);
    notify_send(n, msg);
}

static void notify_wake(struct timer *t)
{
    (void)t; /* the acceptor's next loop turn calls notify_turn */
}

/* First turn: every loop counts as alive from now on until it stops turning. */
static void notify_ready(struct notify *n, int nshards, uint64_t now)
{
    for (int i = 0; i < 1 + nshards && i < NOTIFY_MAX_LOOPS; i++) {
        uint64_t never = 0;

        atomic_compare_exchange_strong(&n->beat[i], &never, now);
    }
    notify_send(n, "READY=1");
    n->ready = true;
    n->next_ping = now;
    n->next_status = now;
}

void notify_turn(struct notify *n, struct wheel *w, uint64_t now)
{
    int nshards = n->relay ? n->relay->nshards : 0;
    uint64_t next;

    if (!n->send)
        return;
    if (n->watchdog_ms)
        atomic_store_explicit(&n->beat[NOTIFY_LOOP_ACCEPTOR], now, memory_order_relaxed);
    if (!n->ready)
        notify_ready(n, nshards, now);
    if (n->relay && atomic_load(&n->relay->draining))
        notify_stopped(n);
    if (n->watchdog_ms && now >= n->next_ping) {
        /* A wedged loop stops the pings. Draining shards end one by one and
         * stop stamping: from STOPPING=1 on, TimeoutStopSec= bounds the exit. */
        if (n->stopping || notify_alive(n, nshards, now))
            notify_send(n, "WATCHDOG=1");
        n->next_ping = now + n->watchdog_ms / 2;
    }
    if (now >= n->next_status) {
        notify_status(n);
        n->next_status = now + NOTIFY_STATUS_MS;
    }
    next = n->watchdog_ms && n->next_ping < n->next_status ? n->next_ping : n->next_status;
    if (w && (!timer_armed(&n->timer) || n->timer.expires != next))
        timer_set(w, &n->timer, next, notify_wake);
}

void notify_stopped(struct notify *n)
{
    if (!n->send || n->stopping)
        return;
    n->stopping = true;
    notify_send(n, "STOPPING=1");
}

void notify_reloading(struct notify *n)
{
    char msg[NOTIFY_STATE_MAX];

    if (!n->send)
        return;
    snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%" PRIu64, anet_now_ns() / 1000);
    notify_send(n, msg);
}

void notify_reloaded(struct notify *n)
{
    if (n->send)
        notify_send(n, "READY=1");
}

void notify_handed_over(struct notify *n, long pid)
{
    char msg[NOTIFY_STATE_MAX];

    if (!n->send)
        return;
    snprintf(msg, sizeof(msg), "MAINPID=%ld\nSTATUS=handed over to pid %ld", pid, pid);
    notify_send(n, msg);
    n->send = NULL; /* a STOPPING=1 from us now would stop the service */
}
