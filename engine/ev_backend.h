/* What an event-loop backend implements and may call (engine/ev_epoll.c,
 * engine/ev_uring.c), and the slot table behind the tokens of engine/ev.h.
 * Not for the loop's users. Same thread rules as the loop: one thread. */
#ifndef RAPI_ENGINE_EV_BACKEND_H
#define RAPI_ENGINE_EV_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/ev.h"

enum ev_slot_state { SLOT_FREE = 0, SLOT_LIVE, SLOT_DYING };

struct ev_slot {
    ev_cb *cb;
    void *arg;
    int fd;
    uint32_t events;
    uint32_t gen;
    uint8_t state; /* enum ev_slot_state */
    bool noref;    /* ev_add_listen(): the backend keeps no file reference */
    uint32_t next_free;
};

/* A backend: haproxy's `struct poller`, redis's ae_*. */
struct ev_backend {
    const char *name;
    int (*probe)(char *why, size_t len); /* 0 when usable here, else -errno + why */
    int (*init)(struct ev_loop *l);
    void (*fini)(struct ev_loop *l);
    int (*add)(struct ev_loop *l, int fd, uint32_t events, uint64_t token);
    /* ev_add_listen(); NULL when add already holds no reference (epoll). */
    int (*add_noref)(struct ev_loop *l, int fd, uint32_t events, uint64_t token);
    /* Stop watching. Returns 1 when the slot may be reused at once, 0 when the
     * backend frees it later with ev_slot_release(). */
    int (*del)(struct ev_loop *l, int fd, uint64_t token, bool closing);
    int (*wait)(struct ev_loop *l, int timeout_ms); /* calls ev_dispatch() */
};

/* Called when the kernel wait returns, before dispatching. */
void ev_clock(struct ev_loop *l);

void ev_dispatch(struct ev_loop *l, uint64_t token, uint32_t events);
struct ev_slot *ev_slot_of(struct ev_loop *l, uint64_t token);
void ev_slot_release(struct ev_loop *l, uint64_t token);

#endif
