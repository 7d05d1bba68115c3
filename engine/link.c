/* Linked pairs: two connections joined, bytes moved through each end's
 * transport: small chunks copied (recv/send through a scratch), and once a
 * direction carries bulk, by the kernel with nonblocking splice through a
 * pooled pipe when both transports can splice, else copied through a
 * buffer; driven by edge-triggered readiness. One symmetric pump per
 * direction (nginx's stream proxy): the direction is an argument, never
 * duplicated code. An end stays readable until its transport answers
 * -EAGAIN (which implies nothing is pending inside it, engine/xprt.h), so
 * bytes a TLS session holds are read before the pump waits; a raw socket
 * whose copy read came back short waits for its next edge at once, unless
 * a FIN may be queued (link_end.drain). Shard thread only. */
#include "engine/link.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/conn.h"
#include "engine/log.h"
#include "engine/shard.h"
#include "engine/upgrade.h"
#include "proto/handover.h"

/* Small reads land here and are sent at once; bytes the destination cannot
 * take yet move to a buffer of the direction's own (dir_keep), so a pump
 * never returns with the scratch holding anything. Per thread: every shard
 * runs on one thread at a time. */
static _Thread_local char link_scratch[LINK_SMALL_BUF];

static void link_timer_cb(struct timer *t);
static void link_event(void *arg, uint32_t events, int side);
static void link_pump(struct link *l);

static void link_event0(void *arg, uint32_t events)
{
    link_event(arg, events, 0);
}

static void link_event1(void *arg, uint32_t events)
{
    link_event(arg, events, 1);
}

/* Give back what a direction holds when no byte is in flight, so that an
 * idle linked pair holds no pipe and no buffer. */
static void dir_release(struct shard *sh, struct link_dir *d, bool force)
{
    if (d->pipe[0] >= 0 && (d->in_pipe == 0 || force))
        pipepool_put(&sh->pool, d->pipe, d->in_pipe == 0);
    if (d->buf == link_scratch) {
        d->buf = NULL;
        d->buf_len = d->buf_off = 0;
    }
    if (d->buf && (d->buf_off == d->buf_len || force)) {
        free(d->buf);
        d->buf = NULL;
        d->buf_len = d->buf_off = 0;
    }
    if (d->head && (d->head_off == d->head_len || force)) {
        free(d->head);
        d->head = NULL;
        d->head_len = d->head_off = 0;
    }
}

/* Get somewhere to put bulk bytes: a pipe when both transports can splice,
 * else a copy buffer. */
static int dir_acquire(struct shard *sh, struct link_dir *d, const struct link_end *src,
                       const struct link_end *dst)
{
    if (d->pipe[0] >= 0 || d->buf)
        return 0;
    if (xconn_can_splice(&src->c, &dst->c)) {
        if (pipepool_get(&sh->pool, d->pipe) == 0)
            return 0;
        STAT_ADD(sh->stats.copy_fallbacks, 1);
    }
    d->buf = malloc(LINK_COPY_BUF);
    return d->buf ? 0 : -ENOMEM;
}

/* A transport answered -EAGAIN: leave the end alone until the readiness its
 * transport waits for (a raw read waits for input, a raw write for room; a
 * TLS read may wait for room, a TLS write for input). */
static void end_blocked(struct link_end *e)
{
    if (e->c.want & XPRT_WANT_IN)
        e->readable = false;
    if (e->c.want & XPRT_WANT_OUT)
        e->writable = false;
}

/* Count n bytes delivered on direction d. */
static void dir_account(struct link *l, struct link_dir *d, size_t n)
{
    d->bytes += (uint64_t)n;
    if (d == &l->dir[0])
        STAT_ADD(l->sh->stats.bytes_up, (uint64_t)n);
    else
        STAT_ADD(l->sh->stats.bytes_down, (uint64_t)n);
    l->last = l->sh->now;
}

/* Write what the direction holds toward dst. 1: all flushed, 0: dst is full
 * (wait for EV_OUT), -errno: failure. */
static int dir_flush(struct link *l, struct link_dir *d, struct link_end *dst)
{
    struct xconn *c = &dst->c;
    ssize_t n;

    while (d->head_off < d->head_len || d->in_pipe || d->buf_off < d->buf_len) {
        if (!dst->writable)
            return 0;
        if (d->head_off < d->head_len)
            n = c->ops->snd(c, d->head + d->head_off, d->head_len - d->head_off);
        else if (d->in_pipe)
            n = c->ops->snd_pipe(c, d->pipe[0], d->in_pipe);
        else
            n = c->ops->snd(c, d->buf + d->buf_off, d->buf_len - d->buf_off);
        if (n == -EAGAIN) {
            end_blocked(dst);
            return 0;
        }
        if (n < 0)
            return (int)n;
        if (d->head_off < d->head_len) {
            d->head_off += (size_t)n;
            continue;
        }
        if (d->in_pipe)
            d->in_pipe -= (size_t)n;
        else
            d->buf_off += (size_t)n;
        dir_account(l, d, (size_t)n);
    }
    return 1;
}

/* Read bulk bytes from src into the pipe or the direction's buffer. */
static ssize_t dir_read_bulk(struct link *l, struct link_dir *d, struct link_end *src,
                             const struct link_end *dst)
{
    struct xconn *c = &src->c;
    int r = dir_acquire(l->sh, d, src, dst);

    if (r < 0)
        return r;
    if (d->pipe[0] >= 0)
        return c->ops->rcv_pipe(c, d->pipe[1], l->sh->conf.pipe_size);
    return c->ops->rcv(c, d->buf, LINK_COPY_BUF);
}

/* Read a small chunk into the scratch (or the buffer the direction kept).
 * A read that fills it turns the direction to bulk for good. On a raw
 * socket a short read took all there was: the next bytes (or the FIN) come
 * with a new edge, so the end waits for it instead of probing for -EAGAIN,
 * unless a FIN or an error may already be queued (drain). */
static ssize_t dir_read_small(struct link_dir *d, struct link_end *src)
{
    struct xconn *c = &src->c;
    size_t want = d->buf ? LINK_COPY_BUF : LINK_SMALL_BUF;
    char *to = d->buf ? d->buf : link_scratch;
    ssize_t n = c->ops->rcv(c, to, want);

    if (n <= 0)
        return n;
    d->buf = to;
    if ((size_t)n == want)
        d->bulk = true;
    else if (c->ops == &xprt_raw && !src->drain)
        src->readable = false;
    return n;
}

/* Read from src. 1: got bytes or EOF, 0: src empty, -errno: failure. */
static int dir_fill(struct link *l, struct link_dir *d, struct link_end *src,
                    const struct link_end *dst)
{
    ssize_t n;

    if (d->buf == link_scratch) /* flushed: the scratch is free again */
        d->buf = NULL;
    n = d->bulk ? dir_read_bulk(l, d, src, dst) : dir_read_small(d, src);
    if (n == -EAGAIN) {
        end_blocked(src);
        src->drain = false; /* nothing queued, no FIN: the next edge tells */
        return 0;
    }
    if (n < 0)
        return (int)n;
    if (n == 0) {
        d->eof = true;
    } else if (d->pipe[0] >= 0) {
        d->in_pipe = (size_t)n;
    } else {
        d->buf_len = (size_t)n;
        d->buf_off = 0;
    }
    return 1;
}

/* The pump is leaving with bytes in the scratch: move them to a buffer of
 * the direction's own. 0 or -ENOMEM. */
static int dir_keep(struct link_dir *d)
{
    char *b;

    if (d->buf != link_scratch)
        return 0;
    if (d->buf_off == d->buf_len) {
        d->buf = NULL;
        d->buf_len = d->buf_off = 0;
        return 0;
    }
    b = malloc(LINK_COPY_BUF);
    if (!b)
        return -ENOMEM;
    d->buf_len -= d->buf_off;
    memcpy(b, link_scratch + d->buf_off, d->buf_len);
    d->buf = b;
    d->buf_off = 0;
    return 0;
}

/* Whether the FIN of direction di can be left to close(): the other
 * direction has ended too, so the pair closes right after, with both
 * sockets' input read to the end (a raw socket's close then sends a FIN,
 * not a reset). A transport with its own goodbye (TLS) still says it. */
static bool fin_by_close(const struct link *l, int di)
{
    return l->dir[!di].shut && l->end[!di].c.ops == &xprt_raw;
}

/* Move bytes end[di] -> end[!di] until one side would block, the source
 * ended, or the budget is spent (then the link is queued to continue after
 * the other ready connections). Returns 0 or -errno. */
static int dir_pump_budget(struct link *l, int di)
{
    struct link_dir *d = &l->dir[di];
    struct link_end *src = &l->end[di], *dst = &l->end[!di];
    int r;

    for (int budget = LINK_PUMP_BUDGET; budget > 0; budget--) {
        r = dir_flush(l, d, dst);
        if (r <= 0)
            return r;
        if (d->eof) {
            r = d->shut || fin_by_close(l, di) ? 0 : dst->c.ops->shutw(&dst->c);
            if (r == -EAGAIN) { /* a close_notify waiting for room: again on readiness */
                end_blocked(dst);
                return 0;
            }
            if (r < 0 && r != -ENOTCONN)
                return r;
            d->shut = true;
            dir_release(l->sh, d, false);
            return 0;
        }
        /* Bytes inside the source's transport (TLS) come with no event. */
        if (!src->readable && xconn_pending(&src->c) == 0) {
            dir_release(l->sh, d, false);
            return 0;
        }
        r = dir_fill(l, d, src, dst);
        if (r < 0)
            return r;
        if (r == 0) {
            dir_release(l->sh, d, false);
            return 0;
        }
    }
    if (!l->queued) {
        l->queued = true;
        l->ready_next = l->sh->ready;
        l->sh->ready = l;
    }
    return 0;
}

static int dir_pump(struct link *l, int di)
{
    int r = dir_pump_budget(l, di);

    /* On an error the pair closes and dir_release() lets the scratch go. */
    return r < 0 ? r : dir_keep(&l->dir[di]);
}

static void link_pump(struct link *l)
{
    int r = dir_pump(l, 0);

    if (r == 0)
        r = dir_pump(l, 1);
    if (r < 0) {
        link_close(l, true, strerror(-r));
        return;
    }
    if (l->dir[0].shut && l->dir[1].shut)
        link_close(l, false, "closed");
}

static void link_event(void *arg, uint32_t events, int side)
{
    struct link *l = arg;
    struct link_end *e = &l->end[side];

    if (events & (EV_IN | EV_RDHUP | EV_HUP | EV_ERR))
        e->readable = true;
    if (events & (EV_RDHUP | EV_HUP | EV_ERR))
        e->drain = true;
    if (events & (EV_OUT | EV_HUP | EV_ERR))
        e->writable = true;
    link_pump(l);
}

void link_run_ready(struct shard *sh)
{
    struct link *l = sh->ready;

    sh->ready = NULL;
    while (l) {
        struct link *next = l->ready_next;

        l->queued = false;
        l->ready_next = NULL;
        if (!l->closing)
            link_pump(l);
        else
            free(l);
        l = next;
    }
}

/* A link for path and peer, its ends and directions empty. NULL when out
 * of memory. */
static struct link *link_alloc(const char *path, size_t path_len, const char *peer)
{
    struct link *l = calloc(1, sizeof(*l) + path_len + 1);
    size_t n;

    if (!l)
        return NULL;
    memcpy(l->path, path, path_len);
    n = strnlen(peer, sizeof(l->peer) - 1); /* snprintf cost ~600 instructions */
    memcpy(l->peer, peer, n);
    l->peer[n] = '\0';
    for (int i = 0; i < 2; i++)
        l->dir[i].pipe[0] = l->dir[i].pipe[1] = -1;
    return l;
}

/* l, watched, on the shard's list under its inactivity timer; both ends
 * writable (fresh, or to be found out), then pumped once. */
static void link_attach(struct shard *sh, struct link *l)
{
    dlist_add_tail(&sh->links, &l->node);
    sh->nlinks++;
    timer_set(&sh->wheel, &l->timer, l->last + l->timeout_ms, link_timer_cb);
    l->end[0].writable = l->end[1].writable = true;
    link_pump(l);
}

int link_new(struct shard *sh, const struct link_args *a)
{
    struct link *l = link_alloc(a->path, a->path_len, a->peer);
    int r = 0;

    if (!l) {
        ev_del(&sh->loop, a->client_tok);
        return -ENOMEM;
    }
    l->sh = sh;
    l->end[0].c = a->client;
    l->end[1].c = a->server;
    /* dir[1] flows server -> client: the client's 101 goes first on it. */
    l->dir[1].head = a->to_client;
    l->dir[1].head_len = a->to_client_len;
    l->dir[0].head = a->to_server;
    l->dir[0].head_len = a->to_server_len;
    l->start = l->last = sh->now;
    l->timeout_ms = (uint64_t)a->timeout_s * 1000;
    /* The client's watch has the link's mask already; the edges its waiter
     * consumed are not reported again: when one said input (or a hang-up),
     * read until -EAGAIN; when none did, the next edge will (a TLS session
     * may hold bytes of its own). */
    if (a->client_tok) {
        ev_rebind(&sh->loop, a->client_tok, link_event0, l);
        l->end[0].tok = a->client_tok;
        l->end[0].readable = a->client_input || xconn_pending(&l->end[0].c) > 0;
        l->end[0].drain = l->end[0].readable;
    } else {
        r = ev_add(&sh->loop, a->client.fd, EV_IN | EV_OUT | EV_RDHUP, link_event0, l,
                   &l->end[0].tok);
    }
    if (r == 0)
        r = ev_add(&sh->loop, a->server.fd, EV_IN | EV_OUT | EV_RDHUP, link_event1, l,
                   &l->end[1].tok);
    if (r < 0) {
        ev_del(&sh->loop, l->end[0].tok);
        free(l);
        return r; /* the caller still owns the connections and heads */
    }
    STAT_ADD(sh->stats.links_total, 1);
    /* Both sockets are fresh: write the 101s and any early bytes now rather
     * than waiting for the first readiness event. Whether they have bytes to
     * read the watch reports at once (it checks readiness when added), so no
     * speculative read here. The dial-back's transport may hold bytes read
     * with its head (TLS), which no readiness event will announce. */
    l->end[1].readable = xconn_pending(&l->end[1].c) > 0;
    link_attach(sh, l);
    return 0;
}

void link_close(struct link *l, bool reset, const char *why)
{
    struct shard *sh = l->sh;
    uint64_t ms = sh->now - l->start;

    if (l->closing)
        return;
    l->closing = true;
    for (int i = 0; i < 2; i++) {
        ev_del_closing(&sh->loop, l->end[i].tok);
        /* A reset is propagated as a reset, not as a clean end of stream. */
        conn_close(sh->relay, &l->end[i].c, reset);
        dir_release(sh, &l->dir[i], true);
    }
    timer_del(&sh->wheel, &l->timer);
    dlist_del(&l->node);
    sh->nlinks--;
    pathstat_link_closed(sh, l->path, l->dir[0].bytes, l->dir[1].bytes);
    log_info("close path=%s client=%s up=%llu down=%llu ms=%llu (%s)", l->path, l->peer,
             (unsigned long long)l->dir[0].bytes, (unsigned long long)l->dir[1].bytes,
             (unsigned long long)ms, why);
    /* A link on the ready list is freed when the list reaches it. */
    if (!l->queued)
        free(l);
}

static void link_timer_cb(struct timer *t)
{
    struct link *l = CONTAINER(t, struct link, timer);
    struct shard *sh = l->sh;

    if (sh->now - l->last >= l->timeout_ms) {
        link_close(l, false, "inactivity timeout");
        return;
    }
    timer_set(&sh->wheel, &l->timer, l->last + l->timeout_ms, link_timer_cb);
}

/* ------------------------------------------------------------ upgrade */

/* Whether l can move: both ends plain, nothing in flight in the relay
 * (heads sent, no byte in a pipe or buffer, every FIN seen forwarded). */
static bool link_movable(const struct link *l)
{
    if (l->closing || l->queued)
        return false;
    for (int i = 0; i < 2; i++) {
        const struct link_dir *d = &l->dir[i];

        if (l->end[i].c.ops != &xprt_raw || d->head_off < d->head_len || d->in_pipe ||
            d->buf_off < d->buf_len || d->eof != d->shut)
            return false;
    }
    return true;
}

static int link_handover(struct link *l, int fd)
{
    struct shard *sh = l->sh;
    int fds[2] = {l->end[0].c.fd, l->end[1].c.fd};
    struct ho_rec r;
    int e;

    ho_rec_init(&r, HO_R_LINK);
    r.num[HO_LK_TIMEOUT_MS] = (int64_t)l->timeout_ms;
    r.num[HO_LK_LAST] = (int64_t)l->last;
    r.num[HO_LK_START] = (int64_t)l->start;
    r.num[HO_LK_FLAGS] = (l->dir[0].eof ? HO_LK_F_EOF0 : 0) | (l->dir[0].shut ? HO_LK_F_SHUT0 : 0) |
                         (l->dir[1].eof ? HO_LK_F_EOF1 : 0) | (l->dir[1].shut ? HO_LK_F_SHUT1 : 0);
    r.num[HO_LK_BYTES0] = (int64_t)l->dir[0].bytes;
    r.num[HO_LK_BYTES1] = (int64_t)l->dir[1].bytes;
    r.str[HO_LK_PATH] = (struct ho_str){l->path, strlen(l->path)};
    r.str[HO_LK_PEER] = (struct ho_str){l->peer, strlen(l->peer)};
    e = upg_send(fd, &r, fds, 2);
    if (e < 0)
        return e == -EMSGSIZE ? 0 : e;
    for (int i = 0; i < 2; i++) {
        ev_del(&sh->loop, l->end[i].tok);
        conn_handed_over(sh->relay, &l->end[i].c);
        dir_release(sh, &l->dir[i], true);
    }
    timer_del(&sh->wheel, &l->timer);
    dlist_del(&l->node);
    sh->nlinks--;
    log_info("handed over path=%s client=%s up=%llu down=%llu", l->path, l->peer,
             (unsigned long long)l->dir[0].bytes, (unsigned long long)l->dir[1].bytes);
    free(l);
    return 0;
}

int link_handover_all(struct shard *sh, int fd)
{
    struct dlist *n, *next;
    int e = 0;

    for (n = sh->links.next; e == 0 && n != &sh->links; n = next) {
        struct link *l = CONTAINER(n, struct link, node);

        next = n->next;
        if (link_movable(l))
            e = link_handover(l, fd);
    }
    return e;
}

void link_adopt(struct shard *sh, const struct ho_rec *r, const int *fds)
{
    char peer[ADDR_STR_MAX];
    struct link *l;
    uint64_t f = (uint64_t)r->num[HO_LK_FLAGS];
    int e = -ENOMEM;

    upg_str(r, HO_LK_PEER, peer, sizeof(peer));
    l = link_alloc(r->str[HO_LK_PATH].p, r->str[HO_LK_PATH].len, peer);
    if (l) {
        l->sh = sh;
        for (int i = 0; i < 2; i++) {
            xconn_init_raw(&l->end[i].c, fds[i]);
            /* Edges the old process saw are gone: read until -EAGAIN. */
            l->end[i].readable = l->end[i].drain = true;
        }
        e = ev_add(&sh->loop, fds[0], EV_IN | EV_OUT | EV_RDHUP, link_event0, l, &l->end[0].tok);
    }
    if (e == 0)
        e = ev_add(&sh->loop, fds[1], EV_IN | EV_OUT | EV_RDHUP, link_event1, l, &l->end[1].tok);
    if (e < 0) {
        if (l)
            ev_del(&sh->loop, l->end[0].tok);
        free(l);
        conn_close_fd(sh->relay, fds[0]);
        conn_close_fd(sh->relay, fds[1]);
        return;
    }
    l->dir[0].eof = f & HO_LK_F_EOF0;
    l->dir[0].shut = f & HO_LK_F_SHUT0;
    l->dir[1].eof = f & HO_LK_F_EOF1;
    l->dir[1].shut = f & HO_LK_F_SHUT1;
    l->dir[0].bytes = (uint64_t)r->num[HO_LK_BYTES0];
    l->dir[1].bytes = (uint64_t)r->num[HO_LK_BYTES1];
    l->start = (uint64_t)r->num[HO_LK_START];
    l->last = (uint64_t)r->num[HO_LK_LAST];
    l->timeout_ms = (uint64_t)r->num[HO_LK_TIMEOUT_MS];
    log_info("adopted link path=%s client=%s", l->path, l->peer);
    link_attach(sh, l);
}
