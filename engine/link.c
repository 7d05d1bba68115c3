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
 * a FIN may be queued (LF_DRAIN). Shard thread only.
 *
 * Memory: an idle pair is its struct link and nothing else (issue 13). What
 * a direction holds while bytes are in flight lives in a struct link_hold;
 * during a pump the direction borrows the thread's (link_lent), and the
 * pump gives it back before it returns (dir_keep): a heap hold is made only
 * when bytes must wait for the destination. */
#include "engine/link.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/conn.h"
#include "engine/listener.h"
#include "engine/log.h"
#include "engine/shard.h"
#include "engine/upgrade.h"
#include "proto/handover.h"
#include "proto/addr.h"

/* The longest IPv4 peer string, with its NUL: such a link fits 192 bytes. */
#define LINK_PEER_V4_MAX sizeof("255.255.255.255:65535")
#define LINK_TIMEOUT_MAX_S (UINT32_MAX / 1000) /* timeout_ms is 32 bits */
_Static_assert(offsetof(struct link, peer) + LINK_PEER_V4_MAX <= 192,
               "an idle linked pair with an IPv4 peer fits jemalloc's 192-byte class");

/* Small reads land here and are sent at once; bytes the destination cannot
 * take yet move to a buffer of the direction's own (dir_keep), so a pump
 * never returns with the scratch holding anything. Per thread: every shard
 * runs on one thread at a time. */
static _Thread_local char link_scratch[LINK_SMALL_BUF];
/* The holds a pump lends its directions (index: the direction). */
static _Thread_local struct link_hold link_lent[2];

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

static struct shard *link_shard(const struct link *l)
{
    return l->p->sh;
}

static bool has(const struct link *l, unsigned f)
{
    return (l->flags & f) != 0;
}

static void set(struct link *l, unsigned f, bool on)
{
    l->flags = (uint16_t)(on ? l->flags | f : l->flags & ~f);
}

/* Direction di's hold, lending it the thread's when it has none. */
static struct link_hold *dir_hold(struct link *l, int di)
{
    if (!l->hold[di]) {
        link_lent[di] = (struct link_hold){.pipe = {-1, -1}};
        l->hold[di] = &link_lent[di];
    }
    return l->hold[di];
}

/* Let go of a hold with nothing left in it. */
static void hold_drop(struct link *l, int di)
{
    struct link_hold *h = l->hold[di];

    if (h->pipe[0] >= 0 || h->buf || h->head)
        return;
    if (h != &link_lent[di])
        free(h);
    l->hold[di] = NULL;
}

/* Give back what a direction holds when no byte is in flight (force: all
 * of it), so that an idle linked pair holds no pipe, buffer nor hold. */
static void dir_release(struct link *l, int di, bool force)
{
    struct link_hold *h = l->hold[di];

    if (!h)
        return;
    if (h->pipe[0] >= 0 && (h->in_pipe == 0 || force)) {
        pipepool_put(&link_shard(l)->pool, h->pipe, h->in_pipe == 0);
        h->in_pipe = 0;
    }
    if (h->buf == link_scratch) {
        h->buf = NULL;
        h->buf_len = h->buf_off = 0;
    }
    if (h->buf && (h->buf_off == h->buf_len || force)) {
        free(h->buf);
        h->buf = NULL;
        h->buf_len = h->buf_off = 0;
    }
    if (h->head && (h->head_off == h->head_len || force)) {
        free(h->head);
        h->head = NULL;
        h->head_len = h->head_off = 0;
    }
    hold_drop(l, di);
}

/* Get somewhere to put bulk bytes: a pipe when both transports can splice,
 * else a copy buffer. */
static int dir_acquire(struct link *l, int di)
{
    struct link_hold *h = dir_hold(l, di);

    if (h->pipe[0] >= 0 || h->buf)
        return 0;
    if (xconn_can_splice(&l->end[di].c, &l->end[!di].c)) {
        if (pipepool_get(&link_shard(l)->pool, h->pipe) == 0)
            return 0;
        STAT_ADD(link_shard(l)->stats.copy_fallbacks, 1);
    }
    h->buf = malloc(LINK_COPY_BUF);
    return h->buf ? 0 : -ENOMEM;
}

/* A transport answered -EAGAIN: leave end s alone until the readiness its
 * transport waits for (a raw read waits for input, a raw write for room; a
 * TLS read may wait for room, a TLS write for input). */
static void end_blocked(struct link *l, int s)
{
    if (l->end[s].c.want & XPRT_WANT_IN)
        set(l, LF_READABLE(s), false);
    if (l->end[s].c.want & XPRT_WANT_OUT)
        set(l, LF_WRITABLE(s), false);
}

/* Count n bytes delivered on direction di. */
static void dir_account(struct link *l, int di, size_t n)
{
    struct shard *sh = link_shard(l);

    l->bytes[di] += (uint64_t)n;
    if (di == 0)
        STAT_ADD(sh->stats.bytes_up, (uint64_t)n);
    else
        STAT_ADD(sh->stats.bytes_down, (uint64_t)n);
    l->last = (uint32_t)sh->now;
}

/* Write what direction di holds toward its destination. 1: all flushed,
 * 0: the destination is full (wait for EV_OUT), -errno: failure. */
static int dir_flush(struct link *l, int di)
{
    struct link_hold *h = l->hold[di];
    struct xconn *c = &l->end[!di].c;
    ssize_t n;

    while (h && (h->head_off < h->head_len || h->in_pipe || h->buf_off < h->buf_len)) {
        if (!has(l, LF_WRITABLE(!di)))
            return 0;
        if (h->head_off < h->head_len)
            n = c->ops->snd(c, h->head + h->head_off, h->head_len - h->head_off);
        else if (h->in_pipe)
            n = c->ops->snd_pipe(c, h->pipe[0], h->in_pipe);
        else
            n = c->ops->snd(c, h->buf + h->buf_off, h->buf_len - h->buf_off);
        if (n == -EAGAIN) {
            end_blocked(l, !di);
            return 0;
        }
        if (n < 0)
            return (int)n;
        if (h->head_off < h->head_len) {
            h->head_off += (size_t)n;
            continue;
        }
        if (h->in_pipe)
            h->in_pipe -= (size_t)n;
        else
            h->buf_off += (size_t)n;
        dir_account(l, di, (size_t)n);
    }
    return 1;
}

/* Read bulk bytes from end[di] into the pipe or the direction's buffer. */
static ssize_t dir_read_bulk(struct link *l, int di)
{
    struct xconn *c = &l->end[di].c;
    struct link_hold *h;
    int r = dir_acquire(l, di);

    if (r < 0)
        return r;
    h = l->hold[di];
    if (h->pipe[0] >= 0)
        return c->ops->rcv_pipe(c, h->pipe[1], link_shard(l)->conf.pipe_size);
    return c->ops->rcv(c, h->buf, LINK_COPY_BUF);
}

/* Read a small chunk into the scratch (or the buffer the direction kept).
 * A read that fills it turns the direction to bulk for good. On a raw
 * socket a short read took all there was: the next bytes (or the FIN) come
 * with a new edge, so the end waits for it instead of probing for -EAGAIN,
 * unless a FIN or an error may already be queued (drain). */
static ssize_t dir_read_small(struct link *l, int di)
{
    struct link_hold *h = dir_hold(l, di);
    struct xconn *c = &l->end[di].c;
    size_t want = h->buf ? LINK_COPY_BUF : LINK_SMALL_BUF;
    char *to = h->buf ? h->buf : link_scratch;
    ssize_t n = c->ops->rcv(c, to, want);

    if (n <= 0)
        return n;
    h->buf = to;
    if ((size_t)n == want)
        set(l, LF_BULK(di), true);
    else if (c->ops == &xprt_raw && !has(l, LF_DRAIN(di)))
        set(l, LF_READABLE(di), false);
    return n;
}

/* Read from end[di]. 1: got bytes or EOF, 0: it is empty, -errno: failure. */
static int dir_fill(struct link *l, int di)
{
    struct link_hold *h = l->hold[di];
    ssize_t n;

    if (h && h->buf == link_scratch) /* flushed: the scratch is free again */
        h->buf = NULL;
    n = has(l, LF_BULK(di)) ? dir_read_bulk(l, di) : dir_read_small(l, di);
    if (n == -EAGAIN) {
        end_blocked(l, di);
        set(l, LF_DRAIN(di), false); /* nothing queued, no FIN: the next edge tells */
        return 0;
    }
    if (n < 0)
        return (int)n;
    h = l->hold[di];
    if (n == 0) {
        set(l, LF_EOF(di), true);
    } else if (h->pipe[0] >= 0) {
        h->in_pipe = (size_t)n;
    } else {
        h->buf_len = (size_t)n;
        h->buf_off = 0;
    }
    return 1;
}

/* The pump is leaving: bytes still in the scratch move to a buffer of the
 * direction's own, a lent hold still holding something to the heap, an
 * empty one goes. 0 or -ENOMEM. */
static int dir_keep(struct link *l, int di)
{
    struct link_hold *h = l->hold[di], *k;

    if (!h)
        return 0;
    if (h->buf == link_scratch && h->buf_off == h->buf_len) {
        h->buf = NULL;
        h->buf_len = h->buf_off = 0;
    } else if (h->buf == link_scratch) {
        char *b = malloc(LINK_COPY_BUF);

        if (!b)
            return -ENOMEM;
        h->buf_len -= h->buf_off;
        memcpy(b, link_scratch + h->buf_off, h->buf_len);
        h->buf = b;
        h->buf_off = 0;
    }
    hold_drop(l, di);
    if (l->hold[di] != &link_lent[di])
        return 0;
    k = malloc(sizeof(*k));
    if (!k)
        return -ENOMEM;
    *k = *h;
    l->hold[di] = k;
    return 0;
}

/* Whether the FIN of direction di can be left to close(): the other
 * direction has ended too, so the pair closes right after, with both
 * sockets' input read to the end (a raw socket's close then sends a FIN,
 * not a reset). A transport with its own goodbye (TLS) still says it. */
static bool fin_by_close(const struct link *l, int di)
{
    return has(l, LF_SHUT(!di)) && l->end[!di].c.ops == &xprt_raw;
}

/* Put l on its shard's ready list, to continue after the other ready
 * connections. */
static void link_queue(struct link *l)
{
    struct shard *sh = link_shard(l);

    if (has(l, LF_QUEUED))
        return;
    set(l, LF_QUEUED, true);
    dlist_del(&l->node);
    dlist_add_tail(&sh->ready, &l->node);
}

/* Direction di's source ended: forward the FIN. 0 or -errno. */
static int dir_end(struct link *l, int di)
{
    struct xconn *dst = &l->end[!di].c;
    int r = has(l, LF_SHUT(di)) || fin_by_close(l, di) ? 0 : dst->ops->shutw(dst);

    if (r == -EAGAIN) { /* a close_notify waiting for room: again on readiness */
        end_blocked(l, !di);
        return 0;
    }
    if (r < 0 && r != -ENOTCONN)
        return r;
    set(l, LF_SHUT(di), true);
    dir_release(l, di, false);
    return 0;
}

/* Move bytes end[di] -> end[!di] until one side would block, the source
 * ended, or the budget is spent (then the link is queued). 0 or -errno. */
static int dir_pump_budget(struct link *l, int di)
{
    int r;

    for (int budget = LINK_PUMP_BUDGET; budget > 0; budget--) {
        r = dir_flush(l, di);
        if (r <= 0)
            return r;
        if (has(l, LF_EOF(di)))
            return dir_end(l, di);
        /* Bytes inside the source's transport (TLS) come with no event. */
        if (!has(l, LF_READABLE(di)) && xconn_pending(&l->end[di].c) == 0) {
            dir_release(l, di, false);
            return 0;
        }
        r = dir_fill(l, di);
        if (r < 0)
            return r;
        if (r == 0) {
            dir_release(l, di, false);
            return 0;
        }
    }
    link_queue(l);
    return 0;
}

static int dir_pump(struct link *l, int di)
{
    int r = dir_pump_budget(l, di);

    /* On an error the pair closes and dir_release() lets the scratch go. */
    return r < 0 ? r : dir_keep(l, di);
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
    if (has(l, LF_SHUT(0)) && has(l, LF_SHUT(1)))
        link_close(l, false, "closed");
}

static void link_event(void *arg, uint32_t events, int side)
{
    struct link *l = arg;

    if (events & (EV_IN | EV_RDHUP | EV_HUP | EV_ERR))
        set(l, LF_READABLE(side), true);
    if (events & (EV_RDHUP | EV_HUP | EV_ERR))
        set(l, LF_DRAIN(side), true);
    if (events & (EV_OUT | EV_HUP | EV_ERR))
        set(l, LF_WRITABLE(side), true);
    link_pump(l);
}

void link_run_ready(struct shard *sh)
{
    struct dlist todo;

    if (dlist_empty(&sh->ready))
        return;
    /* This turn's list; links queued while it runs wait for the next. */
    todo.next = sh->ready.next;
    todo.prev = sh->ready.prev;
    todo.next->prev = todo.prev->next = &todo;
    dlist_init(&sh->ready);
    while (!dlist_empty(&todo)) {
        struct link *l = CONTAINER(todo.next, struct link, node);

        dlist_del(&l->node);
        if (has(l, LF_CLOSING)) {
            free(l);
            continue;
        }
        set(l, LF_QUEUED, false);
        dlist_add_tail(&sh->links, &l->node);
        link_pump(l);
    }
}

void link_close_all(struct shard *sh, const char *why)
{
    while (!dlist_empty(&sh->links))
        link_close(CONTAINER(sh->links.next, struct link, node), false, why);
    /* Queued links stay on the ready list when closed, freed by its run. */
    for (struct dlist *d = sh->ready.next; d != &sh->ready; d = d->next)
        link_close(CONTAINER(d, struct link, node), false, why);
    link_run_ready(sh);
}

/* The client's watch: taken over from its waiter, or a new one. */
static int link_watch_client(struct shard *sh, struct link *l, const struct link_args *a)
{
    if (!a->client_tok)
        return ev_add(&sh->loop, a->client.fd, EV_IN | EV_OUT | EV_RDHUP, link_event0, l,
                      &l->end[0].tok);
    /* The watch has the link's mask already; the edges its waiter consumed
     * are not reported again: when one said input (or a hang-up), read
     * until -EAGAIN; when none did, the next edge will (a TLS session may
     * hold bytes of its own). */
    ev_rebind(&sh->loop, a->client_tok, link_event0, l);
    l->end[0].tok = a->client_tok;
    if (a->client_input || xconn_pending(&l->end[0].c) > 0)
        set(l, LF_READABLE(0) | LF_DRAIN(0), true);
    return 0;
}

/* Direction di starts with head (taken over; the pump sends it first). */
static void dir_start(struct link *l, int di, char *head, size_t len)
{
    struct link_hold *h = dir_hold(l, di);

    h->head = head;
    h->head_len = len;
}

/* A link for peer, its ends and directions empty, started now with an
 * inactivity timeout of timeout_ms. NULL when out of memory. */
static struct link *link_alloc(const struct shard *sh, const char *peer, uint64_t timeout_ms)
{
    size_t n = strnlen(peer, ADDR_STR_MAX - 1);        /* snprintf cost ~600 instructions */
    size_t size = offsetof(struct link, peer) + n + 1; /* not sizeof: no tail padding */
    struct link *l = calloc(1, size > sizeof(*l) ? size : sizeof(*l));

    if (!l)
        return NULL;
    memcpy(l->peer, peer, n);
    l->start = sh->now;
    l->last = (uint32_t)sh->now;
    l->timeout_ms = (uint32_t)(timeout_ms > (uint64_t)LINK_TIMEOUT_MAX_S * 1000u
                                   ? (uint64_t)LINK_TIMEOUT_MAX_S * 1000u
                                   : timeout_ms);
    return l;
}

/* l, watched, joins path p (a reference) and the shard's list under its
 * inactivity timer; both ends writable (fresh, or to be found out), then
 * pumped once. */
static void link_attach(struct shard *sh, struct link *l, struct lpath *p)
{
    uint32_t idle = (uint32_t)sh->now - l->last;

    l->p = p;
    p->nlinks++;
    dlist_add_tail(&sh->links, &l->node);
    sh->nlinks++;
    timer_set(&sh->wheel, &l->timer, sh->now - idle + l->timeout_ms, link_timer_cb);
    set(l, LF_WRITABLE(0) | LF_WRITABLE(1), true);
    link_pump(l);
}

int link_new(struct shard *sh, const struct link_args *a)
{
    long timeout_s = a->timeout_s < 0 ? 0 : a->timeout_s;
    struct link *l = link_alloc(sh, a->peer, (uint64_t)timeout_s * 1000u);
    int r;

    if (!l) {
        ev_del(&sh->loop, a->client_tok);
        return -ENOMEM;
    }
    l->end[0].c = a->client;
    l->end[1].c = a->server;
    r = link_watch_client(sh, l, a);
    if (r == 0)
        r = ev_add(&sh->loop, a->server.fd, EV_IN | EV_OUT | EV_RDHUP, link_event1, l,
                   &l->end[1].tok);
    if (r < 0) {
        ev_del(&sh->loop, l->end[0].tok);
        free(l);
        return r; /* the caller still owns the connections and heads */
    }
    STAT_ADD(sh->stats.links_total, 1);
    /* dir[1] flows server -> client: the client's 101 goes first on it. */
    dir_start(l, 1, a->to_client, a->to_client_len);
    dir_start(l, 0, a->to_server, a->to_server_len);
    /* Both sockets are fresh: write the 101s and any early bytes now rather
     * than waiting for the first readiness event. Whether they have bytes to
     * read the watch reports at once (it checks readiness when added), so no
     * speculative read here. The dial-back's transport may hold bytes read
     * with its head (TLS), which no readiness event will announce. */
    set(l, LF_READABLE(1), xconn_pending(&l->end[1].c) > 0);
    link_attach(sh, l, a->p);
    return 0;
}

void link_close(struct link *l, bool reset, const char *why)
{
    struct shard *sh;
    uint64_t ms;

    if (has(l, LF_CLOSING))
        return;
    sh = link_shard(l);
    ms = sh->now - l->start;
    set(l, LF_CLOSING, true);
    for (int i = 0; i < 2; i++) {
        ev_del_closing(&sh->loop, l->end[i].tok);
        /* A reset is propagated as a reset, not as a clean end of stream. */
        conn_close(sh->relay, &l->end[i].c, reset);
        dir_release(l, i, true);
    }
    timer_del(&sh->wheel, &l->timer);
    sh->nlinks--;
    pathstat_link_closed(l->p, l->bytes[0], l->bytes[1]);
    log_info("close path=%s client=%s up=%llu down=%llu ms=%llu (%s)", l->p->path, l->peer,
             (unsigned long long)l->bytes[0], (unsigned long long)l->bytes[1],
             (unsigned long long)ms, why);
    lpath_link_gone(l->p); /* may free the path: l->p is not used after */
    /* A link on the ready list is freed when the list reaches it. */
    if (!has(l, LF_QUEUED)) {
        dlist_del(&l->node);
        free(l);
    }
}

static void link_timer_cb(struct timer *t)
{
    struct link *l = CONTAINER(t, struct link, timer);
    struct shard *sh = link_shard(l);
    uint32_t idle = (uint32_t)sh->now - l->last; /* timeouts are far below 2^32 ms */

    if (idle >= l->timeout_ms) {
        link_close(l, false, "inactivity timeout");
        return;
    }
    timer_set(&sh->wheel, &l->timer, sh->now - idle + l->timeout_ms, link_timer_cb);
}

/* ------------------------------------------------------------ upgrade */

/* Whether l can move: both ends plain, nothing in flight in the relay
 * (no hold: heads sent, no byte in a pipe or buffer), every FIN seen
 * forwarded. */
static bool link_movable(const struct link *l)
{
    if (has(l, LF_CLOSING | LF_QUEUED))
        return false;
    for (int i = 0; i < 2; i++) {
        if (l->end[i].c.ops != &xprt_raw || l->hold[i] || has(l, LF_EOF(i)) != has(l, LF_SHUT(i)))
            return false;
    }
    return true;
}

static int link_handover(struct link *l, int fd)
{
    struct shard *sh = link_shard(l);
    int fds[2] = {l->end[0].c.fd, l->end[1].c.fd};
    struct ho_rec r;
    int e;

    ho_rec_init(&r, HO_R_LINK);
    r.num[HO_LK_TIMEOUT_MS] = (int64_t)l->timeout_ms;
    r.num[HO_LK_LAST] = (int64_t)(sh->now - ((uint32_t)sh->now - l->last));
    r.num[HO_LK_START] = (int64_t)l->start;
    r.num[HO_LK_FLAGS] =
        (has(l, LF_EOF(0)) ? HO_LK_F_EOF0 : 0) | (has(l, LF_SHUT(0)) ? HO_LK_F_SHUT0 : 0) |
        (has(l, LF_EOF(1)) ? HO_LK_F_EOF1 : 0) | (has(l, LF_SHUT(1)) ? HO_LK_F_SHUT1 : 0);
    r.num[HO_LK_BYTES0] = (int64_t)l->bytes[0];
    r.num[HO_LK_BYTES1] = (int64_t)l->bytes[1];
    r.str[HO_LK_PATH] = (struct ho_str){l->p->path, l->p->path_len};
    r.str[HO_LK_PEER] = (struct ho_str){l->peer, strlen(l->peer)};
    e = upg_send(fd, &r, fds, 2);
    if (e < 0)
        return e == -EMSGSIZE ? 0 : e;
    for (int i = 0; i < 2; i++) {
        ev_del(&sh->loop, l->end[i].tok);
        conn_handed_over(sh->relay, &l->end[i].c);
    }
    timer_del(&sh->wheel, &l->timer);
    dlist_del(&l->node);
    sh->nlinks--;
    log_info("handed over path=%s client=%s up=%llu down=%llu", l->p->path, l->peer,
             (unsigned long long)l->bytes[0], (unsigned long long)l->bytes[1]);
    lpath_link_gone(l->p); /* may free the path */
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

/* The moved link's flags: half-closes as they were, and every end read
 * until -EAGAIN (the edges the old process saw are not reported again). */
static void link_adopt_flags(struct link *l, uint64_t f)
{
    set(l, LF_READABLE(0) | LF_READABLE(1) | LF_DRAIN(0) | LF_DRAIN(1), true);
    set(l, LF_EOF(0), f & HO_LK_F_EOF0);
    set(l, LF_SHUT(0), f & HO_LK_F_SHUT0);
    set(l, LF_EOF(1), f & HO_LK_F_EOF1);
    set(l, LF_SHUT(1), f & HO_LK_F_SHUT1);
}

void link_adopt(struct shard *sh, const struct ho_rec *r, const int *fds)
{
    struct lpath *p = lpath_get(sh, r->str[HO_LK_PATH].p, r->str[HO_LK_PATH].len);
    char peer[ADDR_STR_MAX];
    struct link *l = NULL;
    int e = -ENOMEM;

    upg_str(r, HO_LK_PEER, peer, sizeof(peer));
    if (p)
        l = link_alloc(sh, peer, (uint64_t)r->num[HO_LK_TIMEOUT_MS]);
    if (l) {
        for (int i = 0; i < 2; i++)
            xconn_init_raw(&l->end[i].c, fds[i]);
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
        if (p)
            lpath_put(p);
        return;
    }
    link_adopt_flags(l, (uint64_t)r->num[HO_LK_FLAGS]);
    l->bytes[0] = (uint64_t)r->num[HO_LK_BYTES0];
    l->bytes[1] = (uint64_t)r->num[HO_LK_BYTES1];
    l->start = (uint64_t)r->num[HO_LK_START];
    l->last = (uint32_t)r->num[HO_LK_LAST];
    log_info("adopted link path=%s client=%s", p->path, l->peer);
    link_attach(sh, l, p);
}
