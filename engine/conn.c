/* Closing accepted sockets and answering errors; any thread. */
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine/relay.h"

#define REJECT_MAX 512
#define REJECT_DISCARD 65536 /* bytes of pending input read away before close */

void conn_close(struct relay *r, int fd)
{
    close(fd);
    atomic_fetch_sub(&r->nconn, 1);
}

void conn_reject_err(struct relay *r, int fd, const struct wr_error *e)
{
    char out[REJECT_MAX], sink[4096];
    int n = wr_build_error(out, sizeof(out), e);
    size_t discarded = 0;

    atomic_fetch_add_explicit(&r->stats.rejects[stats_status_index(e->status)], 1,
                              memory_order_relaxed);
    /* The answer is small and the socket fresh: one nonblocking send; a
     * peer that cannot take a few hundred bytes gets nothing more. */
    if (n > 0)
        (void)send(fd, out, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    shutdown(fd, SHUT_WR);
    /* Unread input at close() makes the kernel send a reset, which can
     * destroy the answer before the peer reads it. */
    while (discarded < REJECT_DISCARD) {
        ssize_t k = recv(fd, sink, sizeof(sink), MSG_DONTWAIT);

        if (k <= 0)
            break;
        discarded += (size_t)k;
    }
    conn_close(r, fd);
}

void conn_reject(struct relay *r, int fd, int status, const char *errorcode, const char *message)
{
    struct wr_error e = {.status = status, .errorcode = errorcode, .message = message};

    conn_reject_err(r, fd, &e);
}
