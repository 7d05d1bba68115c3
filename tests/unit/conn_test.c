/* conn_reject through the transport seam, with a recording fake transport:
 * the answer is written, our side shut, pending input read away (so the
 * close is not a reset), then closed and uncounted. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "engine/conn.h"
#include "engine/relay.h"

#define LOG_MAX 4096

struct rec {
    char log[LOG_MAX]; /* the calls in order: s(nd) w(shutw) r(cv) c(lose) */
    size_t nlog;
    char out[LOG_MAX];
    size_t out_len;
    size_t input; /* bytes the peer sent, read away by rcv */
    bool reset;
};

static void note(struct rec *r, char c)
{
    cr_assert_lt(r->nlog, LOG_MAX - 1);
    r->log[r->nlog++] = c;
}

static ssize_t rec_rcv(struct xconn *c, void *buf, size_t len)
{
    struct rec *r = c->ctx;
    size_t n = r->input < len ? r->input : len;

    note(r, 'r');
    if (n == 0) {
        c->want = XPRT_WANT_IN;
        return -EAGAIN;
    }
    r->input -= n;
    return (ssize_t)n;
}

static ssize_t rec_snd(struct xconn *c, const void *buf, size_t len)
{
    struct rec *r = c->ctx;

    note(r, 's');
    cr_assert_leq(r->out_len + len, sizeof(r->out));
    memcpy(r->out + r->out_len, buf, len);
    r->out_len += len;
    return (ssize_t)len;
}

static int rec_shutw(struct xconn *c)
{
    note(c->ctx, 'w');
    return 0;
}

static void rec_close(struct xconn *c, bool reset)
{
    struct rec *r = c->ctx;

    note(r, 'c');
    r->reset = reset;
    close(c->fd);
    c->fd = -1;
}

static const struct xprt_ops rec_ops = {
    .name = "record",
    .rcv = rec_rcv,
    .snd = rec_snd,
    .shutw = rec_shutw,
    .close = rec_close,
};

static struct xconn rec_conn(struct rec *r)
{
    int fd = eventfd(0, EFD_CLOEXEC);

    cr_assert_geq(fd, 0);
    return (struct xconn){.fd = fd, .ops = &rec_ops, .ctx = r};
}

Test(conn, reject_answers_shuts_drains_then_closes)
{
    static struct relay relay;
    static struct rec r;
    struct xconn c = rec_conn(&r);

    atomic_store(&relay.nconn, 1);
    r.input = 10000; /* the peer pipelined bytes we never read */
    conn_reject(&relay, &c, 404, "unknown_route", "No client waits with this WebRoute-ID");
    cr_assert(r.nlog >= 4);
    cr_assert(memcmp(r.log, "sw", 2) == 0, "answer, then FIN: %.*s", (int)r.nlog, r.log);
    cr_assert_eq(r.log[r.nlog - 1], 'c', "closed last");
    cr_assert_eq(r.input, 0, "pending input read away before the close");
    cr_assert_not(r.reset, "a clean close, not a reset");
    cr_assert_eq(c.fd, -1);
    cr_assert(r.out_len > 0 && memcmp(r.out, "HTTP/1.1 404 ", 13) == 0, "%.*s", (int)r.out_len,
              r.out);
    cr_assert_not_null(memmem(r.out, r.out_len, "unknown_route", 13));
    cr_assert_eq(atomic_load(&relay.nconn), 0);
    cr_assert_eq(atomic_load(&relay.stats.rejects[stats_status_index(404)]), 1);
}

Test(conn, reject_reads_away_at_most_a_bound)
{
    static struct relay relay;
    static struct rec r;
    struct xconn c = rec_conn(&r);

    atomic_store(&relay.nconn, 1);
    r.input = 10u << 20; /* a peer that keeps sending is not read forever */
    conn_reject(&relay, &c, 400, "invalid_request", "Bad request");
    cr_assert_gt(r.input, 0);
    cr_assert_eq(r.log[r.nlog - 1], 'c');
}

Test(conn, close_passes_reset_to_the_transport)
{
    static struct relay relay;
    static struct rec r;
    struct xconn c = rec_conn(&r);

    atomic_store(&relay.nconn, 1);
    conn_close(&relay, &c, true);
    cr_assert(r.reset);
    cr_assert_eq(r.nlog, 1, "nothing but the close");
    cr_assert_eq(atomic_load(&relay.nconn), 0);
}
