/* The transport seam (haproxy's xprt_ops, redis's ConnectionType): every
 * byte the engine reads from or writes to an accepted connection goes
 * through the connection's operations table: the raw socket
 * (engine/xprt_raw.c) and TLS (engine/xprt_tls.c). A transport that cannot
 * splice leaves rcv_pipe/snd_pipe NULL (the caller then copies), a read may
 * need the socket writable first (and a write readable: the -EAGAIN answer
 * says which in xconn.want; every watch of a TLS connection includes both
 * EV_IN and EV_OUT, edge-triggered, so either readiness comes back), data
 * may wait inside the transport (pending), and shutw/close have their own
 * work (close_notify).
 *
 * An xconn is owned by whoever owns the connection (acceptor, then the
 * shard it is handed to); it is moved by value. One thread at a time. */
#ifndef RAPI_ENGINE_XPRT_H
#define RAPI_ENGINE_XPRT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* What an -EAGAIN waits for: set in xconn.want by the call that failed. */
#define XPRT_WANT_IN 1u
#define XPRT_WANT_OUT 2u

struct xconn;

/* All return a byte count (> 0), 0 for end of stream (rcv*), or -errno;
 * -EAGAIN when the call would block, with xconn.want saying on what. EINTR
 * is retried inside. Writes never raise SIGPIPE. */
struct xprt_ops {
    const char *name;
    ssize_t (*rcv)(struct xconn *c, void *buf, size_t len);
    ssize_t (*snd)(struct xconn *c, const void *buf, size_t len);
    /* Kernel-side moves between the connection and a pipe; NULL when the
     * transport cannot splice (its bytes are not the socket's bytes). */
    ssize_t (*rcv_pipe)(struct xconn *c, int pipe_wr, size_t len);
    ssize_t (*snd_pipe)(struct xconn *c, int pipe_rd, size_t len);
    /* End our sending side (FIN after what was written). 0 or -errno. */
    int (*shutw)(struct xconn *c);
    /* Release the transport and close the fd; reset: abort (RST) rather
     * than end cleanly. */
    void (*close)(struct xconn *c, bool reset);
    /* Bytes rcv can make progress on without the socket (a TLS session's
     * decrypted or read-ahead data): a reader that stops before -EAGAIN
     * and then waits for readiness must read again first while this is
     * nonzero, since no event will come for them. NULL: none (raw). An
     * -EAGAIN from rcv implies none. */
    size_t (*pending)(struct xconn *c);
};

/* One connection as the engine sees it. */
struct xconn {
    int fd;
    unsigned want; /* XPRT_WANT_*: what the last -EAGAIN waits for */
    const struct xprt_ops *ops;
    void *ctx; /* the transport's own state (a TLS session); NULL for raw */
};

extern const struct xprt_ops xprt_raw;

/* An accepted socket on the raw transport. */
static inline void xconn_init_raw(struct xconn *c, int fd)
{
    c->fd = fd;
    c->want = 0;
    c->ops = &xprt_raw;
    c->ctx = NULL;
}

/* What the transport holds for rcv beyond the socket's own bytes. */
static inline size_t xconn_pending(struct xconn *c)
{
    return c->ops->pending ? c->ops->pending(c) : 0;
}

static inline bool xconn_can_splice(const struct xconn *src, const struct xconn *dst)
{
    return src->ops->rcv_pipe && dst->ops->snd_pipe;
}

#endif
