/* systemd service notification (sd_notify): READY=1, RELOADING=1, STOPPING=1,
 * STATUS= and the watchdog. One notifier per process (notify_main), set up
 * by main before any thread starts. Messages are sent only from the
 * acceptor's thread; notify_loop_wait() is called by every event loop (any
 * thread) and only stores its loop's atomic heartbeat. Without NOTIFY_SOCKET
 * every call returns at once, without a syscall. */
#ifndef RAPI_ENGINE_NOTIFY_H
#define RAPI_ENGINE_NOTIFY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "engine/relay.h"
#include "engine/timer.h"

#define NOTIFY_MAX_LOOPS 1025  /* the acceptor and 1024 shards; shards past it are not watched */
#define NOTIFY_STATUS_MS 2000  /* STATUS= refresh period */
#define NOTIFY_STATUS_MAX 256  /* one STATUS= message */
#define NOTIFY_LOOP_ACCEPTOR 0 /* heartbeat slot of the acceptor; shard i is 1 + i */
#define NOTIFY_WAIT_DIVISOR 4  /* an idle loop wakes this often per watchdog interval */

/* Sends one state string ("READY=1", ...); sd_notify() in production, a
 * recorder in the unit test. 0 or -errno. */
typedef int notify_send_fn(const char *state);

struct notify {
    notify_send_fn *send;                    /* NULL: not under a service manager: all off */
    uint64_t watchdog_ms;                    /* WATCHDOG_USEC in ms; 0: no watchdog */
    struct relay *relay;                     /* counts for STATUS=; may be NULL (tests) */
    bool ready, stopping;                    /* READY=1 / STOPPING=1 sent */
    uint64_t next_ping, next_status;         /* ms, monotonic */
    struct timer timer;                      /* wakes the acceptor for the next ping or status */
    _Atomic uint64_t beat[NOTIFY_MAX_LOOPS]; /* last loop turn, ms; 0: never */
};

extern struct notify notify_main;

/* Set n up: send (NULL switches everything off), the watchdog interval in
 * microseconds (0: none) and the relay whose counts STATUS= shows. */
void notify_setup(struct notify *n, notify_send_fn *send, uint64_t watchdog_us, struct relay *r);

/* notify_setup(&notify_main, ...) from the environment: NOTIFY_SOCKET and
 * WATCHDOG_USEC (sd_watchdog_enabled). Call from main before the shards
 * start. */
void notify_from_env(struct relay *r);

/* Loop `loop` (NOTIFY_LOOP_ACCEPTOR, or 1 + shard id) is about to wait
 * wait_ms (-1: no timeout) at time now: stamp its heartbeat, and return the
 * wait capped so that an idle loop still stamps within the watchdog
 * interval. Any thread. */
int notify_loop_wait(struct notify *n, int loop, uint64_t now, int wait_ms);

/* Whether every loop (the acceptor and nshards shards) stamped within the
 * watchdog interval before now. */
bool notify_alive(const struct notify *n, int nshards, uint64_t now);

/* One turn of the acceptor's loop, on the acceptor's thread, wheel w: READY=1
 * the first time, STOPPING=1 once the relay drains, WATCHDOG=1 and STATUS=
 * when due; arms a timer on w for the next one. */
void notify_turn(struct notify *n, struct wheel *w, uint64_t now);

/* The acceptor's loop ended (drained, or failed): STOPPING=1 unless a turn
 * already sent it (a drain with nothing to wait for ends within the turn). */
void notify_stopped(struct notify *n);

/* Around a SIGHUP reload (acceptor thread): RELOADING=1 with MONOTONIC_USEC,
 * then READY=1 once the new configuration is in place or refused. */
void notify_reloading(struct notify *n);
void notify_reloaded(struct notify *n);

/* Upgrade, old process (acceptor thread): MAINPID=pid and STATUS=, then
 * silence: the new process speaks for the service from now on. */
void notify_handed_over(struct notify *n, long pid);

#endif
