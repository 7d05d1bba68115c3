/* The raw-socket transport: each operation is one direct syscall (EINTR
 * retried), no state beyond the fd. */
#include "engine/xprt.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/anet.h"

#define RAW_SPLICE_FLAGS (SPLICE_F_NONBLOCK | SPLICE_F_MOVE)

/* -errno for a failed call; -EAGAIN records what it waits for. */
static ssize_t raw_fail(struct xconn *c, unsigned want)
{
    int e = errno;

    if (e == EAGAIN || e == EWOULDBLOCK) {
        c->want = want;
        return -EAGAIN;
    }
    return -e;
}

static ssize_t raw_rcv(struct xconn *c, void *buf, size_t len)
{
    ssize_t n;

    do
        n = recv(c->fd, buf, len, 0);
    while (n == -1 && errno == EINTR);
    return n >= 0 ? n : raw_fail(c, XPRT_WANT_IN);
}

static ssize_t raw_snd(struct xconn *c, const void *buf, size_t len)
{
    ssize_t n;

    do
        n = send(c->fd, buf, len, MSG_NOSIGNAL);
    while (n == -1 && errno == EINTR);
    return n >= 0 ? n : raw_fail(c, XPRT_WANT_OUT);
}

static ssize_t raw_rcv_pipe(struct xconn *c, int pipe_wr, size_t len)
{
    ssize_t n;

    do
        n = splice(c->fd, NULL, pipe_wr, NULL, len, RAW_SPLICE_FLAGS);
    while (n == -1 && errno == EINTR);
    return n >= 0 ? n : raw_fail(c, XPRT_WANT_IN);
}

static ssize_t raw_snd_pipe(struct xconn *c, int pipe_rd, size_t len)
{
    ssize_t n;

    do
        n = splice(pipe_rd, NULL, c->fd, NULL, len, RAW_SPLICE_FLAGS);
    while (n == -1 && errno == EINTR);
    return n >= 0 ? n : raw_fail(c, XPRT_WANT_OUT);
}

static int raw_shutw(struct xconn *c)
{
    return shutdown(c->fd, SHUT_WR) == -1 ? -errno : 0;
}

static void raw_close(struct xconn *c, bool reset)
{
    if (reset)
        (void)anet_linger_zero(c->fd); /* a reset is passed on as a reset */
    close(c->fd);
    c->fd = -1;
}

const struct xprt_ops xprt_raw = {
    .name = "raw",
    .rcv = raw_rcv,
    .snd = raw_snd,
    .rcv_pipe = raw_rcv_pipe,
    .snd_pipe = raw_snd_pipe,
    .shutw = raw_shutw,
    .close = raw_close,
};
