/* What an event-loop backend implements and may call (engine/ev_epoll.c,
 * engine/ev_uring.c), and the slot table behind the tokens of engine/ev.h.
 * Not for the loop's users. Same thread rules as the loop: one thread. */
#ifndef RAPI_ENGINE_EV_BACKEND_H
#define RAPI_ENGINE_EV_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/ev.h"

/* One watch in 24 bytes (a linked pair has two: memory per idle tunnel,
 * issue 13). A slot whose token matches is live while cb is set and dying
 * (the backend still holds it) once cb is NULL; a free slot is on the free
 * list, its generation moved on, so no old token matches it. */
struct ev_slot {
    ev_cb *cb;
    void *arg;
    union {
        int fd;             /* live or dying */
        uint32_t next_free; /* free */
    };
    uint32_t bits; /* EV_GEN_BITS of generation, the packed mask, EV_SLOT_NOREF */
};

#define EV_GEN_BITS 24 /* a token's low half; wraps after 16M reuses of one slot */
#define EV_GEN_MASK ((1u << EV_GEN_BITS) - 1)
#define EV_MASK_SHIFT EV_GEN_BITS
#define EV_SLOT_NOREF (1u << 31) /* ev_add_listen(): the backend keeps no file reference */

static inline uint32_t ev_slot_gen(const struct ev_slot *s)
{
    return s->bits & EV_GEN_MASK;
}

/* The epoll mask the slot was added with (engine/ev.c packs it in 6 bits). */
uint32_t ev_slot_events(const struct ev_slot *s);

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
