/* A scripted transport for engine unit tests: reads hand out in[] then
 * EAGAIN (or EOF, or an error, or "wants room" as TLS can), writes take at
 * most `room` bytes in `chunk`-sized pieces into out[], and shutw/close are
 * recorded. It cannot splice. Each connection still gets a real fd (an
 * eventfd) so that an event loop can watch it; the fake never touches it
 * except to close it. Include once, from one test file. */
#ifndef RAPI_TESTS_FAKE_XPRT_H
#define RAPI_TESTS_FAKE_XPRT_H

#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "engine/xprt.h"

#define FAKE_MAX (2u * 1024 * 1024)

struct fake {
    char in[FAKE_MAX]; /* what the peer sent: rcv hands it out */
    size_t in_len, in_off;
    bool in_eof;        /* once in[] is consumed, rcv returns 0 */
    int rcv_err;        /* when set, rcv fails with it */
    int rcv_wants_out;  /* this many reads first ask for room (as TLS can) */
    char out[FAKE_MAX]; /* what snd accepted */
    size_t out_len;
    size_t room;  /* bytes snd takes before -EAGAIN */
    size_t chunk; /* at most this much per snd: short writes */
    int snd_err;  /* when set, snd fails with it */
    int rcv_calls;
    bool shut, closed, reset;
};

static ssize_t fake_rcv(struct xconn *c, void *buf, size_t len)
{
    struct fake *f = c->ctx;
    size_t n = f->in_len - f->in_off;

    f->rcv_calls++;
    if (f->rcv_err)
        return f->rcv_err;
    if (f->rcv_wants_out > 0) {
        f->rcv_wants_out--;
        c->want = XPRT_WANT_OUT;
        return -EAGAIN;
    }
    if (n == 0) {
        if (f->in_eof)
            return 0;
        c->want = XPRT_WANT_IN;
        return -EAGAIN;
    }
    n = n < len ? n : len;
    memcpy(buf, f->in + f->in_off, n);
    f->in_off += n;
    return (ssize_t)n;
}

static ssize_t fake_snd(struct xconn *c, const void *buf, size_t len)
{
    struct fake *f = c->ctx;
    size_t n = len;

    if (f->snd_err)
        return f->snd_err;
    if (f->room == 0) {
        c->want = XPRT_WANT_OUT;
        return -EAGAIN;
    }
    n = n < f->room ? n : f->room;
    n = n < f->chunk ? n : f->chunk;
    cr_assert_leq(f->out_len + n, FAKE_MAX);
    memcpy(f->out + f->out_len, buf, n);
    f->out_len += n;
    f->room -= n;
    return (ssize_t)n;
}

static int fake_shutw(struct xconn *c)
{
    struct fake *f = c->ctx;

    cr_assert_not(f->shut, "FIN forwarded once");
    f->shut = true;
    return 0;
}

static void fake_close(struct xconn *c, bool reset)
{
    struct fake *f = c->ctx;

    cr_assert_not(f->closed, "closed once");
    f->closed = true;
    f->reset = reset;
    close(c->fd);
    c->fd = -1;
}

static const struct xprt_ops fake_ops = {
    .name = "fake",
    .rcv = fake_rcv,
    .snd = fake_snd,
    .shutw = fake_shutw,
    .close = fake_close,
};

/* A fresh fake with no input and unlimited room. */
static void fake_reset(struct fake *f)
{
    memset(f, 0, sizeof(*f));
    f->room = SIZE_MAX;
    f->chunk = SIZE_MAX;
}

static struct xconn fake_conn(struct fake *f)
{
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);

    cr_assert_geq(fd, 0);
    return (struct xconn){.fd = fd, .ops = &fake_ops, .ctx = f};
}

#endif
