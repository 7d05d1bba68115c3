/* epoll backend: edge-triggered readiness, one epoll fd per loop. */
#include "engine/ev_backend.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#define EPOLL_BATCH 256

struct ep {
    int fd;
    struct epoll_event ev[EPOLL_BATCH];
};

static int ep_probe(char *why, size_t len)
{
    return 0;
}

static int ep_init(struct ev_loop *l)
{
    struct ep *e = malloc(sizeof(*e));

    if (!e)
        return -ENOMEM;
    e->fd = epoll_create1(EPOLL_CLOEXEC);
    if (e->fd == -1) {
        int r = -errno;

        free(e);
        return r;
    }
    l->priv = e;
    return 0;
}

static void ep_fini(struct ev_loop *l)
{
    struct ep *e = l->priv;

    if (!e)
        return;
    close(e->fd);
    free(e);
    l->priv = NULL;
}

static int ep_add(struct ev_loop *l, int fd, uint32_t events, uint64_t token)
{
    struct ep *e = l->priv;
    struct epoll_event ev = {.events = events | EPOLLET, .data.u64 = token};

    return epoll_ctl(e->fd, EPOLL_CTL_ADD, fd, &ev) == -1 ? -errno : 0;
}

static int ep_del(struct ev_loop *l, int fd, uint64_t token, bool closing)
{
    struct ep *e = l->priv;

    /* Events of this token already fetched in the current batch are dropped
     * by the generation check in ev_dispatch(), so the slot is free now. A
     * file about to be closed leaves the epoll set by itself. */
    if (!closing)
        epoll_ctl(e->fd, EPOLL_CTL_DEL, fd, NULL);
    return 1;
}

static int ep_wait(struct ev_loop *l, int timeout_ms)
{
    struct ep *e = l->priv;
    int n = epoll_wait(e->fd, e->ev, EPOLL_BATCH, timeout_ms);

    if (n == -1)
        return errno == EINTR ? 0 : -errno;
    ev_clock(l);
    for (int i = 0; i < n; i++)
        ev_dispatch(l, e->ev[i].data.u64, e->ev[i].events);
    return 0;
}

const struct ev_backend ev_backend_epoll = {
    .name = "epoll",
    .probe = ep_probe,
    .init = ep_init,
    .fini = ep_fini,
    .add = ep_add,
    .del = ep_del,
    .wait = ep_wait,
};
