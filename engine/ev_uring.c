/* io_uring backend. Readiness comes from multishot poll requests, which are
 * edge-triggered by default (no IORING_POLL_ADD_LEVEL): one completion per
 * wake-up, the poll stays armed (IORING_CQE_F_MORE). Data still moves by
 * nonblocking splice from the shard thread on readiness: IORING_OP_SPLICE is
 * always punted to io-wq here and costs a kernel thread per idle direction
 * (docs/DESIGN.md). The ring is single-issuer with deferred task work, created by
 * the thread that uses it.
 *
 * A poll holds a reference to its file until it ends, and a ring's polls end
 * in the ring's teardown, which the kernel runs asynchronously after exit (a
 * few ms later; after kill -9 too): a listening socket watched by the ring
 * would keep its port bound after the process is gone, and an immediate
 * restart would fail with EADDRINUSE. So listening sockets (ev_add_listen)
 * are watched by an epoll fd, edge-triggered, and the ring polls that epoll
 * fd: epoll holds no reference, the socket closes with its fd. */
#include "engine/ev_backend.h"

#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

/* The ring's pages are resident from its creation (0.4 MiB at 4096 SQEs
 * and 8192 CQEs). Submissions go in batches anyway (ur_sqe() submits when
 * the SQ ring is full), so the SQ ring is small; the CQ ring is larger: a
 * wait can collect one completion per ready socket, and an overflowing CQ
 * ring ends multishot polls, which then cost a new submission each. */
#define URING_ENTRIES 256
#define URING_CQ_ENTRIES 4096
#define URING_BATCH 256
/* user_data of a cancel request: the watch's token with this bit set
 * (tokens never use it: slot indexes stay far below 2^31). */
#define URING_REMOVE_TAG (1ULL << 63)
#define URING_RETRY_INITIAL 64
/* user_data of the poll on the nested epoll fd (no token has this bit). */
#define URING_EPOLL_TAG (1ULL << 62)
#define URING_EPOLL_BATCH 64

struct ur {
    struct io_uring ring;
    struct io_uring_cqe batch[URING_BATCH];
    uint64_t *retry; /* cancels to ask again, after task work has run */
    size_t nretry, cap_retry;
    int epfd; /* listening sockets (ev_add_listen), -1 until the first */
};

static struct io_uring_sqe *ur_sqe(struct ur *u)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);

    if (!sqe) {
        io_uring_submit(&u->ring);
        sqe = io_uring_get_sqe(&u->ring);
    }
    return sqe;
}

/* cq_entries 0: the kernel's default (twice entries). */
static int ur_ring_init(struct io_uring *ring, unsigned entries, unsigned cq_entries)
{
    struct io_uring_params p = {
        .flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
                 (cq_entries ? IORING_SETUP_CQSIZE : 0),
        .cq_entries = cq_entries,
    };
    int r = io_uring_queue_init_params(entries, ring, &p);

    if (r == -EINVAL) { /* kernels before 6.1 */
        p = (struct io_uring_params){.flags = cq_entries ? IORING_SETUP_CQSIZE : 0,
                                     .cq_entries = cq_entries};
        r = io_uring_queue_init_params(entries, ring, &p);
    }
    return r;
}

/* A real check, not a version guess: io_uring may be disabled by sysctl
 * (kernel.io_uring_disabled) or seccomp, or lack multishot poll. */
static int ur_probe(char *why, size_t len)
{
    struct io_uring ring;
    struct io_uring_cqe *cqe;
    int p[2], r;

    r = ur_ring_init(&ring, 8, 0);
    if (r < 0) {
        snprintf(why, len, "io_uring_setup: %s", strerror(-r));
        return r;
    }
    if (pipe(p) == -1) {
        r = -errno;
        snprintf(why, len, "pipe: %s", strerror(errno));
        goto out_ring;
    }
    io_uring_prep_poll_multishot(io_uring_get_sqe(&ring), p[0], POLLIN);
    if (write(p[1], "x", 1) != 1) {
        r = -EIO;
        goto out_pipe;
    }
    r = io_uring_submit_and_wait(&ring, 1);
    if (r >= 0)
        r = io_uring_peek_cqe(&ring, &cqe);
    if (r < 0) {
        snprintf(why, len, "poll: %s", strerror(-r));
    } else if (cqe->res < 0 || !(cqe->flags & IORING_CQE_F_MORE)) {
        snprintf(why, len, "multishot poll not supported (res %d)", cqe->res);
        r = -ENOTSUP;
    }
out_pipe:
    close(p[0]);
    close(p[1]);
out_ring:
    io_uring_queue_exit(&ring);
    return r < 0 ? r : 0;
}

static int ur_init(struct ev_loop *l)
{
    struct ur *u = calloc(1, sizeof(*u));
    int r;

    if (!u)
        return -ENOMEM;
    r = ur_ring_init(&u->ring, URING_ENTRIES, URING_CQ_ENTRIES);
    if (r < 0) {
        free(u);
        return r;
    }
    u->epfd = -1;
    l->priv = u;
    return 0;
}

static void ur_fini(struct ev_loop *l)
{
    struct ur *u = l->priv;

    if (!u)
        return;
    io_uring_queue_exit(&u->ring);
    if (u->epfd >= 0)
        close(u->epfd);
    free(u->retry);
    free(u);
    l->priv = NULL;
}

static int ur_arm(struct ur *u, int fd, uint32_t events, uint64_t token)
{
    struct io_uring_sqe *sqe = ur_sqe(u);

    if (!sqe)
        return -EBUSY;
    io_uring_prep_poll_multishot(sqe, fd, events);
    io_uring_sqe_set_data64(sqe, token);
    return 0;
}

static int ur_add(struct ev_loop *l, int fd, uint32_t events, uint64_t token)
{
    return ur_arm(l->priv, fd, events, token);
}

/* Watch a listening socket through the nested epoll fd (see the top). */
static int ur_add_noref(struct ev_loop *l, int fd, uint32_t events, uint64_t token)
{
    struct ur *u = l->priv;
    struct epoll_event ev = {.events = events | EPOLLET, .data.u64 = token};
    int r;

    if (u->epfd < 0) {
        u->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (u->epfd == -1)
            return -errno;
        r = ur_arm(u, u->epfd, POLLIN, URING_EPOLL_TAG);
        if (r < 0) {
            close(u->epfd);
            u->epfd = -1;
            return r;
        }
    }
    return epoll_ctl(u->epfd, EPOLL_CTL_ADD, fd, &ev) == -1 ? -errno : 0;
}

/* The nested epoll fd is readable: dispatch what it has. */
static void ur_epoll_run(struct ev_loop *l, struct ur *u)
{
    struct epoll_event ev[URING_EPOLL_BATCH];
    int n;

    do {
        n = epoll_wait(u->epfd, ev, URING_EPOLL_BATCH, 0);
        for (int i = 0; i < n; i++)
            ev_dispatch(l, ev[i].data.u64, ev[i].events);
    } while (n == URING_EPOLL_BATCH);
}

/* Stop a multishot poll. IORING_OP_ASYNC_CANCEL marks the poll cancelled
 * even while a completion of it is pending as task work (POLL_REMOVE answers
 * -EALREADY then and leaves the poll armed); the poll's last CQE (no
 * IORING_CQE_F_MORE) frees the slot. */
static void ur_remove(struct ur *u, uint64_t token)
{
    struct io_uring_sqe *sqe = ur_sqe(u);

    if (!sqe)
        return; /* cannot happen after a submit; the slot just stays dying */
    io_uring_prep_cancel64(sqe, token, 0);
    io_uring_sqe_set_data64(sqe, token | URING_REMOVE_TAG);
}

/* Remember a cancel to ask again on the next wait, once deferred task work
 * has run: asking again at once, from inside the completion batch, can
 * livelock (the answer stays -EALREADY until the thread waits). */
static void ur_retry_later(struct ur *u, uint64_t token)
{
    if (u->nretry == u->cap_retry) {
        size_t cap = u->cap_retry ? u->cap_retry * 2 : URING_RETRY_INITIAL;
        uint64_t *r = realloc(u->retry, cap * sizeof(*r));

        if (!r)
            return; /* the slot stays dying: a leak of one slot, not a hang */
        u->retry = r;
        u->cap_retry = cap;
    }
    u->retry[u->nretry++] = token;
}

static int ur_del(struct ev_loop *l, int fd, uint64_t token, bool closing)
{
    struct ur *u = l->priv;
    const struct ev_slot *s = ev_slot_of(l, token);

    if (s && (s->bits & EV_SLOT_NOREF)) {
        /* epoll forgets a closed file by itself; the slot is free now
         * (events already fetched no longer match its generation). */
        if (!closing)
            epoll_ctl(u->epfd, EPOLL_CTL_DEL, fd, NULL);
        return 1;
    }
    ur_remove(u, token);
    /* The poll holds a reference to the file, so a close() by the caller
     * takes effect once this remove is submitted: at the next ev_wait(),
     * right after the current batch of callbacks. */
    return 0;
}

static void ur_complete(struct ev_loop *l, struct ur *u, const struct io_uring_cqe *c)
{
    struct ev_slot *s;

    if (c->user_data & URING_REMOVE_TAG) {
        /* -EALREADY: the poll had a completion in flight and stays armed;
         * ask again after the next wait. (-ENOENT: it had already ended and
         * its last CQE frees the slot.) */
        uint64_t token = c->user_data & ~URING_REMOVE_TAG;

        s = ev_slot_of(l, token);
        if (c->res == -EALREADY && s && !s->cb) /* still dying */
            ur_retry_later(u, token);
        return;
    }
    if (c->user_data == URING_EPOLL_TAG) {
        if (!(c->flags & IORING_CQE_F_MORE) && ur_arm(u, u->epfd, POLLIN, URING_EPOLL_TAG) < 0)
            return; /* cannot happen after a submit */
        ur_epoll_run(l, u);
        return;
    }
    s = ev_slot_of(l, c->user_data);
    if (!s)
        return;
    if (!(c->flags & IORING_CQE_F_MORE)) {
        /* The poll ended: after our remove (slot dying), or on its own
         * (error, overflow), in which case a live watch is armed again. */
        if (!s->cb) { /* dying */
            ev_slot_release(l, c->user_data);
            return;
        }
        if (c->res >= 0 && ur_arm(u, s->fd, ev_slot_events(s), c->user_data) < 0)
            ev_dispatch(l, c->user_data, EV_ERR);
    }
    if (c->res < 0)
        ev_dispatch(l, c->user_data, EV_ERR);
    else if (s->cb)
        ev_dispatch(l, c->user_data, (uint32_t)c->res);
}

static int ur_wait(struct ev_loop *l, int timeout_ms)
{
    struct ur *u = l->priv;
    struct __kernel_timespec ts = {.tv_sec = timeout_ms / 1000,
                                   .tv_nsec = (long long)(timeout_ms % 1000) * 1000000};
    struct io_uring_cqe *cqe;
    unsigned n;
    int r;

    if (u->nretry) {
        /* Run the deferred task work first, so the retried cancels find
         * their polls idle. */
        io_uring_get_events(&u->ring);
        for (size_t i = 0; i < u->nretry; i++)
            ur_remove(u, u->retry[i]);
        u->nretry = 0;
    }
    r = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, timeout_ms >= 0 ? &ts : NULL, NULL);
    if (r < 0 && r != -ETIME && r != -EINTR)
        return r;
    ev_clock(l);
    /* Copy a batch out before dispatching: callbacks queue new requests. */
    for (;;) {
        struct io_uring_cqe *ptrs[URING_BATCH];

        n = io_uring_peek_batch_cqe(&u->ring, ptrs, URING_BATCH);
        if (!n)
            break;
        for (unsigned i = 0; i < n; i++)
            u->batch[i] = *ptrs[i];
        io_uring_cq_advance(&u->ring, n);
        for (unsigned i = 0; i < n; i++)
            ur_complete(l, u, &u->batch[i]);
        if (n < URING_BATCH)
            break;
    }
    return 0;
}

const struct ev_backend ev_backend_uring = {
    .name = "uring",
    .probe = ur_probe,
    .init = ur_init,
    .fini = ur_fini,
    .add = ur_add,
    .add_noref = ur_add_noref,
    .del = ur_del,
    .wait = ur_wait,
};
