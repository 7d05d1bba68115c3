/* Closing accepted connections and answering errors; any thread. */
#include "engine/conn.h"

#include <stdatomic.h>
#include <unistd.h>

#include "engine/relay.h"
#include "proto/webroute.h"

#define REJECT_MAX 512
#define REJECT_DISCARD 65536 /* bytes of pending input read away before close */
#define REJECT_SINK 4096

void conn_close(struct relay *r, struct xconn *c, bool reset)
{
    c->ops->close(c, reset);
    atomic_fetch_sub(&r->nconn, 1);
}

void conn_handed_over(struct relay *r, struct xconn *c)
{
    conn_close_fd(r, c->fd); /* the socket lives on in the new process: no FIN */
    c->fd = -1;
}

void conn_close_fd(struct relay *r, int fd)
{
    close(fd);
    atomic_fetch_sub(&r->nconn, 1);
}

void conn_reject_err(struct relay *r, struct xconn *c, const struct wr_error *e)
{
    char out[REJECT_MAX], sink[REJECT_SINK];
    int n = wr_build_error(out, sizeof(out), e);
    size_t discarded = 0;

    atomic_fetch_add_explicit(&r->stats.rejects[stats_status_index(e->status)], 1,
                              memory_order_relaxed);
    /* The answer is small and the socket fresh: one nonblocking send; a
     * peer that cannot take a few hundred bytes gets nothing more. */
    if (n > 0)
        (void)c->ops->snd(c, out, (size_t)n);
    (void)c->ops->shutw(c);
    /* Unread input at close() makes the kernel send a reset, which can
     * destroy the answer before the peer reads it. */
    while (discarded < REJECT_DISCARD) {
        ssize_t k = c->ops->rcv(c, sink, sizeof(sink));

        if (k <= 0)
            break;
        discarded += (size_t)k;
    }
    conn_close(r, c, false);
}

void conn_reject(struct relay *r, struct xconn *c, int status, const char *errorcode,
                 const char *message)
{
    struct wr_error e = {.status = status, .errorcode = errorcode, .message = message};

    conn_reject_err(r, c, &e);
}
