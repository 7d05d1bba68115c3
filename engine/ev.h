/* Event loop with two backends chosen at start-up: io_uring (multishot,
 * edge-triggered poll; nothing blocking is ever handed to io-wq) and epoll
 * (edge-triggered). One loop per thread; not thread-safe.
 *
 * A watch is named by a 64-bit token (slot << 32 | generation) held in the
 * loop's table, never by a pointer into the owner: after ev_del() the
 * callback is never called again, even for events already fetched or for a
 * poll still in flight in io_uring, so the owner may close the fd and free
 * itself right away. The loop keeps a slot until the backend is done with it
 * (io_uring: the poll's last completion). */
#ifndef RAPI_ENGINE_EV_H
#define RAPI_ENGINE_EV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>

#include "engine/conf.h"

/* Event bits are epoll's (io_uring's poll uses the same mask). */
#define EV_IN EPOLLIN
#define EV_OUT EPOLLOUT
#define EV_ERR EPOLLERR
#define EV_HUP EPOLLHUP
#define EV_RDHUP EPOLLRDHUP

typedef void ev_cb(void *arg, uint32_t events);

enum ev_slot_state { SLOT_FREE = 0, SLOT_LIVE, SLOT_DYING };

struct ev_slot {
    ev_cb *cb;
    void *arg;
    int fd;
    uint32_t events;
    uint32_t gen;
    uint8_t state; /* enum ev_slot_state */
    uint32_t next_free;
};

struct ev_loop;

/* A backend: haproxy's `struct poller`, redis's ae_*. */
struct ev_backend {
    const char *name;
    int (*probe)(char *why, size_t len); /* 0 when usable here, else -errno + why */
    int (*init)(struct ev_loop *l);
    void (*fini)(struct ev_loop *l);
    int (*add)(struct ev_loop *l, int fd, uint32_t events, uint64_t token);
    /* Stop watching. Returns 1 when the slot may be reused at once, 0 when the
     * backend frees it later with ev_slot_release(). */
    int (*del)(struct ev_loop *l, int fd, uint64_t token, bool closing);
    int (*wait)(struct ev_loop *l, int timeout_ms); /* calls ev_dispatch() */
};

struct ev_loop {
    const struct ev_backend *be;
    void *priv; /* backend state */
    struct ev_slot *slot;
    uint32_t nslots, free_head;
    uint32_t live;
    uint64_t *clock; /* when set, refreshed (ms) after each wait, before callbacks */
};

extern const struct ev_backend ev_backend_epoll;
extern const struct ev_backend ev_backend_uring;

/* Pick a backend for `want` (IO_AUTO: io_uring when the kernel allows it).
 * Returns the backend, or NULL with the reason in why (IO_URING forced but
 * unusable). With IO_AUTO falling back, why says why io_uring was not used. */
const struct ev_backend *ev_choose(enum conf_io want, char *why, size_t len);

int ev_init(struct ev_loop *l, const struct ev_backend *be);
void ev_fini(struct ev_loop *l);

/* Watch fd for events (edge-triggered): 0 and *token, or -errno. */
int ev_add(struct ev_loop *l, int fd, uint32_t events, ev_cb *cb, void *arg, uint64_t *token);

/* Stop watching (token 0 is ignored). The callback is never called again. */
void ev_del(struct ev_loop *l, uint64_t token);

/* The same, when the caller closes the fd right after (and never dup()ed
 * it): epoll drops a closed file by itself, so no syscall is spent. */
void ev_del_closing(struct ev_loop *l, uint64_t token);

/* Hand a live watch to another callback, keeping its fd and mask: no
 * syscall. (A waiting client becomes a link end this way.) Edges consumed
 * by the old callback are not reported again: the new owner must assume
 * the fd may be readable. */
void ev_rebind(struct ev_loop *l, uint64_t token, ev_cb *cb, void *arg);

/* Wait up to timeout_ms (-1: forever) and run callbacks. 0 or -errno. */
int ev_wait(struct ev_loop *l, int timeout_ms);

/* For backends: called when the kernel wait returns, before dispatching. */
void ev_clock(struct ev_loop *l);

/* For backends. */
void ev_dispatch(struct ev_loop *l, uint64_t token, uint32_t events);
struct ev_slot *ev_slot_of(struct ev_loop *l, uint64_t token);
void ev_slot_release(struct ev_loop *l, uint64_t token);

#endif
