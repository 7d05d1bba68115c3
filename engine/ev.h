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

/* Event bits are epoll's (io_uring's poll uses the same mask). */
#define EV_IN EPOLLIN
#define EV_OUT EPOLLOUT
#define EV_ERR EPOLLERR
#define EV_HUP EPOLLHUP
#define EV_RDHUP EPOLLRDHUP

typedef void ev_cb(void *arg, uint32_t events);

struct ev_slot;
struct ev_backend; /* the table (engine/ev_backend.h): haproxy's `struct poller` */

struct ev_loop {
    const struct ev_backend *be;
    void *priv; /* backend state */
    struct ev_slot *slot;
    uint32_t nslots, free_head;
    uint32_t used; /* slots ever handed out: those past it are untouched memory */
    uint32_t live;
    uint64_t *clock; /* when set, refreshed (ms) after each wait, before callbacks */
};

extern const struct ev_backend ev_backend_epoll;
extern const struct ev_backend ev_backend_uring;

/* Which backend to use: the configuration's "io" maps onto this. */
enum ev_want { EV_WANT_AUTO = 0, EV_WANT_URING, EV_WANT_EPOLL };

/* Pick a backend (EV_WANT_AUTO: io_uring when the kernel allows it).
 * Returns the backend, or NULL with the reason in why (EV_WANT_URING but
 * unusable). With EV_WANT_AUTO falling back, why says why io_uring was not
 * used. */
const struct ev_backend *ev_choose(enum ev_want want, char *why, size_t len);

/* The backend's name ("io_uring", "epoll"). */
const char *ev_backend_name(const struct ev_backend *be);

int ev_init(struct ev_loop *l, const struct ev_backend *be);
void ev_fini(struct ev_loop *l);

/* Watch fd for events (edge-triggered): 0 and *token, or -errno. */
int ev_add(struct ev_loop *l, int fd, uint32_t events, ev_cb *cb, void *arg, uint64_t *token);

/* The same for a listening socket: the loop holds no reference to the
 * socket, so its port is free as soon as the fd is closed, also when the
 * process is killed (io_uring's polls hold a file reference until the ring's
 * asynchronous teardown: the listen fds are watched through an epoll fd
 * that the ring polls instead). */
int ev_add_listen(struct ev_loop *l, int fd, uint32_t events, ev_cb *cb, void *arg,
                  uint64_t *token);

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

#endif
