/* The TLS transport: each operation is one tls_conn call; -EAGAIN carries
 * what the session waits for in xconn.want. */
#include "engine/xprt_tls.h"

#include <errno.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/anet.h"

_Static_assert(TLS_WANT_IN == XPRT_WANT_IN, "one want encoding");
_Static_assert(TLS_WANT_OUT == XPRT_WANT_OUT, "one want encoding");

static ssize_t tls_rcv(struct xconn *c, void *buf, size_t len)
{
    return tls_conn_read(c->ctx, buf, len, &c->want);
}

static ssize_t tls_snd(struct xconn *c, const void *buf, size_t len)
{
    return tls_conn_write(c->ctx, buf, len, &c->want);
}

/* close_notify, then FIN. An -EAGAIN leaves the alert queued in the
 * session: calling again on readiness sends it. */
static int tls_shutw(struct xconn *c)
{
    int r = tls_conn_shutdown(c->ctx, &c->want);

    if (r < 0)
        return r;
    return shutdown(c->fd, SHUT_WR) == -1 ? -errno : 0;
}

static void tls_close(struct xconn *c, bool reset)
{
    tls_conn_free(c->ctx);
    c->ctx = NULL;
    if (reset)
        (void)anet_linger_zero(c->fd);
    close(c->fd);
    c->fd = -1;
}

static size_t tls_pending(struct xconn *c)
{
    return tls_conn_pending(c->ctx);
}

const struct xprt_ops xprt_tls = {
    .name = "tls",
    .rcv = tls_rcv,
    .snd = tls_snd,
    .rcv_pipe = NULL, /* the link copies: a TLS side never splices */
    .snd_pipe = NULL,
    .shutw = tls_shutw,
    .close = tls_close,
    .pending = tls_pending,
};

int xprt_tls_server_new(const struct conf *c, struct tls_server **out, char *err, size_t errlen)
{
    struct tls_pair pairs[TLS_MAX_PAIRS];
    struct tls_server_conf sc = {
        .pairs = pairs,
        .min_version = c->tls_min_version,
        .ciphers = c->tls_ciphers[0] ? c->tls_ciphers : NULL,
        .accel = true,
    };

    *out = NULL;
    if (c->tls_cert.n == 0) {
        snprintf(err, errlen, "no tls_cert/tls_key pair configured");
        return -ENOENT;
    }
    for (int i = 0; i < c->tls_cert.n && i < TLS_MAX_PAIRS; i++)
        pairs[sc.n_pairs++] =
            (struct tls_pair){.cert_file = c->tls_cert.path[i], .key_file = c->tls_key.path[i]};
    return tls_server_new(&sc, out, err, errlen);
}

int xconn_init_tls(struct xconn *c, int fd, struct tls_server *s)
{
    struct tls_conn *t;
    int r = tls_conn_server(s, fd, &t);

    if (r < 0)
        return r;
    c->fd = fd;
    c->want = 0;
    c->ops = &xprt_tls;
    c->ctx = t;
    return 0;
}

int xprt_tls_handshake(struct xconn *c)
{
    return tls_conn_handshake(c->ctx, &c->want);
}

struct tls_conn *xconn_tls(const struct xconn *c)
{
    return c->ops == &xprt_tls ? c->ctx : NULL;
}
