/* Listeners (server key + WebSocket), waiting clients and dial-backs: the
 * part of docs/PROTOCOL.md that lives on a shard. Shard thread only. */
#include "engine/listener.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "engine/conn.h"
#include "engine/link.h"
#include "engine/log.h"
#include "engine/shard.h"
#include "engine/upgrade.h"
#include "proto/handover.h"
#include "proto/json.h"

#define WS_READ_CHUNK 4096
#define HEAD_101_MAX 256
#define HEAD_PARK_MAX (HEAD_101_MAX + 3 * 32 + ADDR_STR_MAX + WEBROUTE_ID_MAX)
#define WAITER_TAIL_MAX (16u << 10) /* one TLS record: a hung-up client's last bytes */
#define OUT_FRAME_MAX NOTIFY_MAX    /* the largest frame payload we send */
_Static_assert(OUT_FRAME_MAX >= WS_MAX_CONTROL, "a pong or close frame fits");

static void listener_event(void *arg, uint32_t events);
static void listener_ka_cb(struct timer *t);
static void waiter_timer_cb(struct timer *t);
static void listener_unlive(struct listener *l);
static void lpath_close_parked(struct lpath *p, const char *why);
static void client_link_parked(struct lpath *p, struct handoff *h);

/* ------------------------------------------------------------ output */

static int out_append(struct listener *l, const void *p, size_t n)
{
    if (l->out_off == l->out_len)
        l->out_off = l->out_len = 0;
    if (l->out_len + n > l->out_cap) {
        size_t cap = l->out_cap ? l->out_cap : 512;
        char *o;

        while (cap < l->out_len + n)
            cap *= 2;
        if (cap > LISTENER_OUT_MAX)
            return -ENOBUFS; /* the listener does not read: the caller drops it */
        o = realloc(l->out, cap);
        if (!o)
            return -ENOMEM;
        l->out = o;
        l->out_cap = cap;
    }
    memcpy(l->out + l->out_len, p, n);
    l->out_len += n;
    return 0;
}

/* Queue one unmasked frame. Payloads are notifications, pongs and close
 * frames: at most OUT_FRAME_MAX bytes. */
static int out_frame(struct listener *l, uint8_t opcode, const void *p, size_t n)
{
    uint8_t f[WS_MAX_HEADER + OUT_FRAME_MAX];
    size_t len = ws_build_frame(f, sizeof(f), opcode, true, p, n, NULL);

    return len ? out_append(l, f, len) : -EMSGSIZE;
}

/* Write what is queued. 0 or -errno; closes the listener when a close
 * frame has gone out. */
static int out_flush(struct listener *l)
{
    while (l->out_off < l->out_len && l->writable) {
        ssize_t n = l->c.ops->snd(&l->c, l->out + l->out_off, l->out_len - l->out_off);

        if (n == -EAGAIN) {
            if (l->c.want & XPRT_WANT_OUT)
                l->writable = false; /* else (TLS) any next event retries */
            break;
        }
        if (n < 0)
            return (int)n;
        l->out_off += (size_t)n;
    }
    if (l->out_off == l->out_len) {
        /* Keep an idle listener small: drop a large buffer once flushed. */
        if (l->out_cap > 4096) {
            free(l->out);
            l->out = NULL;
            l->out_cap = 0;
        }
        l->out_off = l->out_len = 0;
    }
    return 0;
}

#define DROP_OUT_FULL "output full: the listener does not read"

/* Our close frame is queued: from now on input is only drained, and the
 * listener is closed once the frame is out, or after LISTENER_CLOSE_WAIT_MS
 * (the keepalive timer is reused for that). */
static void listener_closing(struct listener *l)
{
    listener_unlive(l);
    l->closing = true;
    timer_set(&l->sh->wheel, &l->ka, l->sh->now + LISTENER_CLOSE_WAIT_MS, listener_ka_cb);
}

/* Queue our close frame. 0, or -errno when it does not fit: the listener
 * must then be dropped (l->drop says why). */
static int listener_send_close(struct listener *l, uint16_t code, const char *reason)
{
    uint8_t f[WS_MAX_HEADER + WS_MAX_CONTROL];
    size_t n = ws_build_close(f, code, reason, NULL);
    int r = out_append(l, f, n);

    if (r == 0)
        listener_closing(l);
    else
        l->drop = DROP_OUT_FULL;
    return r;
}

/* ------------------------------------------------------------ paths */

static void grace_cb(struct timer *t);

static struct lpath *lpath_find(struct shard *sh, const char *path, size_t len)
{
    struct map_entry *me = map_get(&sh->paths, path, len);

    return me ? CONTAINER(me, struct lpath, me) : NULL;
}

/* The path's pool, made when missing. NULL when out of memory. */
struct lpath *lpath_get(struct shard *sh, const char *path, size_t len)
{
    struct lpath *p = lpath_find(sh, path, len);

    if (p)
        return p;
    p = calloc(1, sizeof(*p) + len + 1);
    if (!p)
        return NULL;
    p->sh = sh;
    memcpy(p->path, path, len);
    p->path_len = len;
    p->me.key = p->path;
    p->me.key_len = len;
    dlist_init(&p->listeners);
    dlist_init(&p->told);
    dlist_init(&p->queue);
    dlist_init(&p->parked);
    if (map_put(&sh->paths, &p->me) < 0) {
        free(p);
        return NULL;
    }
    return p;
}

/* Free the pool once nothing holds it: no listener, no waiter, no parked
 * dial-back, no linked pair, no grace left, no walk under way. Callers do
 * not touch p afterwards. */
void lpath_put(struct lpath *p)
{
    if (p->pins > 0 || p->nlisteners > 0 || p->nwaiting > 0 || p->nparked > 0 || p->nlinks > 0 ||
        timer_armed(&p->grace))
        return;
    map_del(&p->sh->paths, &p->me);
    free(p);
}

void lpath_link_gone(struct lpath *p)
{
    p->nlinks--;
    lpath_put(p);
}

/* Whether a client arriving now has somewhere to wait: a live listener, or
 * the grace after the last one went. */
static bool lpath_open(const struct lpath *p)
{
    return p && (p->nlive > 0 || timer_armed(&p->grace));
}

/* The live listener a client goes to: the fewest outstanding
 * notifications, ties to the one chosen least recently (round robin).
 * avoid is taken only when no other is live. NULL when none is. */
static struct listener *lpath_pick(struct lpath *p, const struct listener *avoid)
{
    struct listener *best = NULL;

    for (struct dlist *n = p->listeners.next; n != &p->listeners; n = n->next) {
        struct listener *l = CONTAINER(n, struct listener, node);

        if (!l->live || l == avoid)
            continue;
        if (!best || l->nwaiting < best->nwaiting ||
            (l->nwaiting == best->nwaiting && l->picked < best->picked))
            best = l;
    }
    if (!best && avoid && avoid->live)
        return (struct listener *)avoid;
    return best;
}

/* l no longer takes new clients. When it was the path's last live one the
 * grace starts (listener_grace; none while draining), else the path's
 * parked dial-backs are closed (P-PARK-6). */
static void listener_unlive(struct listener *l)
{
    struct lpath *p = l->p;
    struct shard *sh = l->sh;

    if (!l->live)
        return;
    l->live = false;
    if (--p->nlive > 0)
        return;
    if (sh->conf.listener_grace <= 0 || sh->draining) {
        lpath_close_parked(p, "no listener left on the path");
        return;
    }
    timer_set(&sh->wheel, &p->grace, sh->now + (uint64_t)sh->conf.listener_grace * 1000, grace_cb);
}

/* l must go but is not closed here, where a walk of its path may be under
 * way: it takes no client from now on and is closed on the next tick. */
static void listener_doom(struct listener *l, const char *why)
{
    listener_unlive(l);
    l->drop = why;
    timer_set(&l->sh->wheel, &l->ka, l->sh->now, listener_ka_cb);
}

/* ------------------------------------------------------------ waiters */

static void waiter_arm(struct waiter *w)
{
    uint64_t t = w->deadline;

    if (w->st != W_QUEUED && w->offer_end < t)
        t = w->offer_end;
    timer_set(&w->sh->wheel, &w->timer, t, waiter_timer_cb);
}

/* Off its listener or list; it stays a waiter of its path. */
static void waiter_detach(struct waiter *w)
{
    dlist_del(&w->node);
    if (w->st == W_OFFERED)
        w->l->nwaiting--;
    w->l = NULL;
}

/* Out of the path and the map (the path is put by the caller). */
static void waiter_unlink(struct waiter *w)
{
    struct shard *sh = w->sh;

    waiter_detach(w);
    map_del(&sh->waiters, &w->me);
    w->p->nwaiting--;
    timer_del(&sh->wheel, &w->timer);
}

/* Answer a waiting client with an error and free it; its path is freed
 * when that was all it held. */
void waiter_fail(struct waiter *w, int status, const char *code, const char *msg)
{
    struct lpath *p = w->p;

    waiter_unlink(w);
    ev_del_closing(&w->sh->loop, w->tok); /* conn_reject closes it */
    log_info("unlinked path=%.*s client=%s (%s)", (int)w->path_len, w->key, w->peer, code);
    conn_reject(w->sh->relay, &w->c, status, code, msg);
    free(w->early);
    free(w);
    lpath_put(p);
}

/* Send w's notification to l. 0, -ENOBUFS when l does not read (it must
 * go), other -errno. */
static int waiter_notify(struct waiter *w, struct listener *l)
{
    char json[NOTIFY_MAX];
    int n =
        notify_build(json, sizeof(json), w->peer, w->key + w->path_len + 1, w->id_len, w->timeout);

    return n < 0 ? n : out_frame(l, WS_OP_TEXT, json, (size_t)n);
}

#define MSG_GONE "The listener of this path went away"

/* Find w a place: offered to the least busy live listener of its path
 * (another than the one it is offered to, when there is one), else queued
 * while the path's grace lasts, else answered 502 (or 503 when out of
 * memory). w may be gone when this returns; nothing else is: a listener
 * that turned out not to read is only doomed. The caller holds a pin on
 * the path. */
static void waiter_place(struct waiter *w)
{
    struct shard *sh = w->sh;
    struct listener *l;
    int r;

    if (sh->draining)
        return waiter_fail(w, 503, "shutting_down", "The relay is shutting down");
    while ((l = lpath_pick(w->p, w->st == W_OFFERED ? w->l : NULL))) {
        if (w->st == W_OFFERED && l == w->l) { /* no other: keep waiting on it */
            w->offer_end = sh->now + (uint64_t)sh->conf.offer_timeout * 1000;
            waiter_arm(w);
            return;
        }
        r = waiter_notify(w, l);
        if (r == -ENOBUFS) { /* the listener does not read: it goes */
            listener_doom(l, DROP_OUT_FULL);
            continue;
        }
        if (r < 0)
            return waiter_fail(w, 503, "too_many_waiting", "Out of memory");
        if (w->offers++ > 0)
            STAT_ADD(sh->stats.reoffers, 1);
        waiter_detach(w);
        w->st = W_OFFERED;
        w->l = l;
        dlist_add_tail(&l->waiters, &w->node);
        l->nwaiting++;
        l->picked = ++w->p->picks;
        w->offer_end = sh->now + (uint64_t)sh->conf.offer_timeout * 1000;
        waiter_arm(w);
        if (out_flush(l) < 0)
            listener_doom(l, "connection closed"); /* then w is placed again */
        return;
    }
    if (!lpath_open(w->p))
        return waiter_fail(w, 502, "missing_destination", MSG_GONE);
    if (w->st != W_QUEUED) {
        waiter_detach(w);
        w->st = W_QUEUED;
        dlist_add_tail(&w->p->queue, &w->node);
        STAT_ADD(sh->stats.grace_waits, 1);
    }
    waiter_arm(w);
}

/* A waiting client on a transport with its own framing (TLS) hung up: its
 * socket may hold only the close_notify that ended it, or bytes it sent
 * first. Read once to tell: 1 when it sent bytes (kept as early bytes, for
 * the server once linked) or the read cannot tell yet, 0 when it just left. */
static int waiter_read_tail(struct waiter *w)
{
    char buf[WAITER_TAIL_MAX];
    ssize_t n = w->c.ops->rcv(&w->c, buf, sizeof(buf));

    if (n <= 0)
        return n == -EAGAIN;
    w->early = malloc((size_t)n);
    if (!w->early)
        return 0;
    memcpy(w->early, buf, (size_t)n);
    w->early_len = (size_t)n;
    return 1;
}

/* Whether a waiting client that ended its side still has something to
 * deliver: bytes read with its head, in its socket, or in its transport. */
static bool waiter_has_input(struct waiter *w)
{
    int pending = 0;

    if (w->early_len > 0 || xconn_pending(&w->c) > 0)
        return true;
    if (ioctl(w->c.fd, FIONREAD, &pending) != 0 || pending == 0)
        return false;
    return w->c.ops->pending == NULL || waiter_read_tail(w) == 1;
}

/* The client ended its side before its dial-back came. TCP cannot tell a
 * half-close from a full close until something is written, so: a client
 * that sent bytes after its head is kept (they are delivered once linked,
 * then its FIN is forwarded: nothing is dropped); one that sent nothing has
 * nothing to wait for and its place (max_waiting, max_connections) is freed
 * now rather than at the dial-back timeout. (Unread bytes are those in the
 * socket and those inside the transport: a TLS session's; a TLS client's
 * close_notify alone is not input.) */
static void waiter_event(void *arg, uint32_t events)
{
    struct waiter *w = arg;
    struct lpath *p = w->p;

    if (events & (EV_IN | EV_RDHUP | EV_HUP | EV_ERR))
        w->saw_in = true;
    if (!(events & (EV_RDHUP | EV_HUP | EV_ERR)))
        return;
    if (!(events & (EV_HUP | EV_ERR)) && waiter_has_input(w))
        return;
    waiter_unlink(w);
    ev_del_closing(&w->sh->loop, w->tok);
    STAT_ADD(w->sh->stats.clients_left, 1);
    log_info("unlinked path=%.*s client=%s (client left while waiting)", (int)w->path_len, w->key,
             w->peer);
    conn_close(w->sh->relay, &w->c, false);
    free(w->early);
    free(w);
    lpath_put(p);
}

/* The dial-back limit (504), or the end of an offer: then the client goes
 * to another listener of the path, when there is one. */
static void waiter_timer_cb(struct timer *t)
{
    struct waiter *w = CONTAINER(t, struct waiter, timer);
    struct lpath *p = w->p;

    if (w->sh->now >= w->deadline) {
        STAT_ADD(w->sh->stats.dialback_timeouts, 1);
        waiter_fail(w, 504, "listener_timeout", "The listener did not connect back in time");
        return;
    }
    p->pins++;
    waiter_place(w);
    p->pins--;
    lpath_put(p);
}

/* No listener came back within the grace: the queued clients get 502. */
static void grace_cb(struct timer *t)
{
    struct lpath *p = CONTAINER(t, struct lpath, grace);

    struct dlist *n, *next;

    p->pins++;
    for (n = p->queue.next; n != &p->queue; n = next) {
        next = n->next;
        STAT_ADD(p->sh->stats.grace_expiries, 1);
        waiter_fail(CONTAINER(n, struct waiter, node), 502, "missing_destination",
                    "No listener came back to this path in time");
    }
    if (p->nlive == 0)
        lpath_close_parked(p, "no listener came back to the path");
    p->pins--;
    lpath_put(p);
}

/* Offer the queued clients, oldest first, while a listener takes them. */
static void lpath_serve_queue(struct lpath *p)
{
    struct dlist *n, *next;

    for (n = p->queue.next; n != &p->queue && p->nlive > 0; n = next) {
        next = n->next;
        waiter_place(CONTAINER(n, struct waiter, node));
    }
}

/* ------------------------------------------------------------ listeners */

/* The listener sent a close frame: it leaves. It takes no new client; the
 * clients it was told about stay valid for its dial-backs until their
 * offer ends, then go to another listener. */
static void listener_leave(struct listener *l)
{
    listener_unlive(l);
    while (!dlist_empty(&l->waiters)) {
        struct waiter *w = CONTAINER(l->waiters.next, struct waiter, node);

        waiter_detach(w);
        w->st = W_TOLD;
        dlist_add_tail(&l->p->told, &w->node);
    }
}

void listener_close(struct listener *l, const char *why)
{
    struct shard *sh = l->sh;
    struct lpath *p = l->p;
    struct dlist orphans, *n, *next;

    p->pins++;
    listener_unlive(l);
    dlist_del(&l->node);
    p->nlisteners--;
    sh->nlisteners--;
    /* Its clients were notified by a socket that is gone: offered again. */
    dlist_init(&orphans);
    while (!dlist_empty(&l->waiters)) {
        struct waiter *w = CONTAINER(l->waiters.next, struct waiter, node);

        dlist_del(&w->node);
        dlist_add_tail(&orphans, &w->node);
        w->st = W_NEW;
        w->l = NULL;
    }
    atomic_fetch_sub(&sh->relay->nlisteners, 1);
    ev_del_closing(&sh->loop, l->tok);
    timer_del(&sh->wheel, &l->ka);
    conn_close(sh->relay, &l->c, false);
    log_info("unregister path=%s listener=%s (%s)", p->path, l->peer, why);
    free(l->out);
    free(l);
    for (n = orphans.next; n != &orphans; n = next) {
        next = n->next;
        waiter_place(CONTAINER(n, struct waiter, node));
    }
    p->pins--;
    lpath_put(p);
}

static void fail_list(struct dlist *h, int status, const char *code, const char *msg)
{
    struct dlist *n, *next;

    for (n = h->next; n != h; n = next) {
        next = n->next;
        waiter_fail(CONTAINER(n, struct waiter, node), status, code, msg);
    }
}

/* Queue a WebSocket close 1001 and let it flush (now: close at once). */
static void listener_drain(struct listener *l, bool now)
{
    if (now || listener_send_close(l, WS_CLOSE_GOING_AWAY, "relay shutting down") < 0 ||
        out_flush(l) < 0 || l->out_len == 0)
        listener_close(l, "shutting down");
}

void lpath_drain(struct lpath *p, bool now)
{
    struct shard *sh = p->sh;
    struct dlist *n, *next;

    p->pins++;
    timer_del(&sh->wheel, &p->grace);
    fail_list(&p->queue, 503, "shutting_down", "The relay is shutting down");
    fail_list(&p->told, 503, "shutting_down", "The relay is shutting down");
    lpath_close_parked(p, "shutting down");
    for (n = p->listeners.next; n != &p->listeners; n = n->next)
        fail_list(&CONTAINER(n, struct listener, node)->waiters, 503, "shutting_down",
                  "The relay is shutting down");
    for (n = p->listeners.next; n != &p->listeners; n = next) {
        next = n->next;
        listener_drain(CONTAINER(n, struct listener, node), now);
    }
    p->pins--;
    lpath_put(p);
}

/* The peer's close frame: echo its code (an empty close when it sent
 * none), then close once that is out. 0, or -errno: drop the listener. */
static int ws_close_echo(struct listener *l, uint16_t code)
{
    return listener_send_close(l, code == WS_CLOSE_NO_STATUS ? 0 : code, NULL);
}

/* Feed received bytes (unmasked in place) to the frame reader. Data
 * frames are read and ignored; RFC 6455's rules and our size limit still
 * hold. 0 to go on, -1 after a close frame, WS_FEED_DROP when the listener
 * must go (l->drop says why), or a close code (> 0) for a violation. */
#define WS_FEED_DROP (-2)
static int ws_feed(struct listener *l, uint8_t *p, size_t n)
{
    struct wsread_ev ev;

    while (n > 0) {
        size_t used = wsread_feed(&l->rd, p, n, &ev);

        p += used;
        n -= used;
        switch (ev.type) {
        case WSREAD_PING:
            /* A listener that sends pings but never reads the pongs fills
             * its output: drop it (no close frame would fit either). */
            if (out_frame(l, WS_OP_PONG, ev.data, ev.len) < 0) {
                l->drop = DROP_OUT_FULL;
                return WS_FEED_DROP;
            }
            break;
        case WSREAD_CLOSE:
            listener_leave(l);
            return ws_close_echo(l, ev.code) < 0 ? WS_FEED_DROP : -1;
        case WSREAD_ERROR:
            return ev.code;
        default: /* MORE, DATA, MESSAGE, PONG */
            break;
        }
    }
    return 0;
}

/* The reason sent with our close frame for a violation. */
static const char *ws_close_reason(int code)
{
    switch (code) {
    case WS_CLOSE_TOO_BIG:
        return "frame too big";
    case WS_CLOSE_INVALID_DATA:
        return "invalid UTF-8";
    default:
        return "protocol error";
    }
}

/* Read and handle frames. 0, or -1 when the listener must go. */
static int listener_read(struct listener *l)
{
    uint8_t buf[WS_READ_CHUNK];

    for (;;) {
        ssize_t n = l->c.ops->rcv(&l->c, buf, sizeof(buf));
        int c;

        if (n == -EAGAIN) {
            l->read_wants_out = (l->c.want & XPRT_WANT_OUT) != 0;
            return 0;
        }
        if (n <= 0)
            return -1;
        l->last_rx = l->sh->now;
        if (l->closing)
            continue; /* after our close frame, input is only drained */
        c = ws_feed(l, buf, (size_t)n);
        if (c == WS_FEED_DROP ||
            (c > 0 && listener_send_close(l, (uint16_t)c, ws_close_reason(c)) < 0))
            return -1;
        if (c)
            return 0;
    }
}

static void listener_event(void *arg, uint32_t events)
{
    struct listener *l = arg;
    int r = 0;

    if (events & (EV_OUT | EV_HUP | EV_ERR))
        l->writable = true;
    if ((events & (EV_IN | EV_RDHUP | EV_HUP | EV_ERR)) || (l->read_wants_out && (events & EV_OUT)))
        r = listener_read(l);
    if (r == 0)
        r = out_flush(l);
    if (r < 0)
        listener_close(l, l->drop ? l->drop : "connection closed");
    else if (l->closing && l->out_len == 0)
        listener_close(l, "websocket closed");
}

/* Keepalive (docs/PROTOCOL.md P-WS-8): one timer, armed for the next ping
 * or for the moment the listener has been silent for two intervals,
 * whichever comes first, so the drop is on time (to the timer's tick)
 * whatever the ping phase. Input does not re-arm it: when it fires early
 * (input came since), it is just armed again. */
static void listener_ka_arm(struct listener *l, uint64_t ka)
{
    uint64_t silence_end = l->last_rx + 2 * ka;

    timer_set(&l->sh->wheel, &l->ka, l->next_ping < silence_end ? l->next_ping : silence_end,
              listener_ka_cb);
}

static void listener_ka_cb(struct timer *t)
{
    struct listener *l = CONTAINER(t, struct listener, ka);
    uint64_t ka = (uint64_t)l->sh->conf.keepalive * 1000;
    uint64_t now = l->sh->now;

    if (l->drop) {
        listener_close(l, l->drop);
        return;
    }
    if (l->closing) {
        listener_close(l, "close frame not taken in time");
        return;
    }
    if (!ka)
        return;
    if (now - l->last_rx >= 2 * ka) {
        listener_close(l, "keepalive: no answer");
        return;
    }
    if (now >= l->next_ping) {
        if (out_frame(l, WS_OP_PING, "rapi", 4) < 0 || out_flush(l) < 0) {
            listener_close(l, "keepalive: cannot write");
            return;
        }
        l->next_ping = now + ka;
    }
    listener_ka_arm(l, ka);
}

/* A new listener l on p, live; its watch and keepalive. 0, or -1 when l
 * had to go (closed). */
static int listener_start(struct listener *l, const char *early, size_t early_len)
{
    struct shard *sh = l->sh;
    struct lpath *p = l->p;

    dlist_add_tail(&p->listeners, &l->node);
    p->nlisteners++;
    sh->nlisteners++;
    l->live = true;
    p->nlive++;
    timer_del(&sh->wheel, &p->grace);
    if (ev_add(&sh->loop, l->c.fd, EV_IN | EV_OUT | EV_RDHUP, listener_event, l, &l->tok) < 0) {
        listener_close(l, "cannot watch");
        return -1;
    }
    log_info("register path=%s listener=%s (%d on the path)", p->path, l->peer, p->nlive);
    if (sh->conf.keepalive > 0) {
        l->next_ping = sh->now + (uint64_t)sh->conf.keepalive * 1000;
        listener_ka_arm(l, (uint64_t)sh->conf.keepalive * 1000);
    }
    /* Frames the listener pipelined behind its head (or, adopted, the
     * start of a frame header the old process had read). */
    if (early_len) {
        int c = ws_feed(l, (uint8_t *)early, early_len);

        if (c == WS_FEED_DROP ||
            (c > 0 && listener_send_close(l, (uint16_t)c, ws_close_reason(c)) < 0)) {
            listener_close(l, l->drop);
            return -1;
        }
    }
    return 0;
}

void listener_register(struct shard *sh, struct handoff *h)
{
    struct relay *r = sh->relay;
    struct lpath *p = lpath_find(sh, h->path, h->path_len);
    struct listener *l;
    char head[HEAD_101_MAX];
    int n;

    if (p && p->nlive >= sh->conf.listeners_per_path) {
        log_reject("reject %s: path %s in use", h->peer, h->path);
        conn_reject(r, &h->conn, 409, "path_in_use", "This path already has a listener");
        return;
    }
    if (atomic_fetch_add(&r->nlisteners, 1) >= sh->conf.max_listeners) {
        atomic_fetch_sub(&r->nlisteners, 1);
        conn_reject(r, &h->conn, 503, "too_many_listeners", "Too many listeners");
        return;
    }
    p = lpath_get(sh, h->path, h->path_len);
    l = p ? calloc(1, sizeof(*l)) : NULL;
    /* [ext] The 101 advertises parking when the relay allows it (P-PARK-1). */
    n = wr_build_ws_101_ext(head, sizeof(head), h->ws_accept,
                            sh->conf.max_parked > 0 ? "park" : NULL);
    if (!l || n < 0 || out_append(l, head, (size_t)n) < 0) {
        atomic_fetch_sub(&r->nlisteners, 1);
        if (l)
            free(l->out);
        free(l);
        if (p)
            lpath_put(p);
        conn_reject(r, &h->conn, 503, "too_many_listeners", "Out of memory");
        return;
    }
    l->sh = sh;
    l->p = p;
    l->c = h->conn;
    wsread_init(&l->rd, WSREAD_SERVER, sh->conf.max_frame, NULL, 0);
    dlist_init(&l->waiters);
    l->last_rx = sh->now;
    l->writable = true;
    snprintf(l->peer, sizeof(l->peer), "%s", h->peer);
    p->pins++;
    if (listener_start(l, h->early, h->early_len) == 0) {
        /* Frames the transport read with the head (TLS) come with no event. */
        listener_event(l, EV_OUT | (xconn_pending(&l->c) ? EV_IN : 0));
        lpath_serve_queue(p); /* the clients that waited for a listener */
    }
    p->pins--;
    lpath_put(p);
}

/* ------------------------------------------------------------ clients */

/* docs/PROTOCOL.md's timeout rule for one WebRoute side, with this relay's
 * default and floor. */
static long side_timeout(const struct shard *sh, long header)
{
    return wr_effective_timeout(header, sh->conf.timeout, sh->conf.min_timeout);
}

static struct waiter *waiter_new(struct shard *sh, struct handoff *h)
{
    struct waiter *w = calloc(1, sizeof(*w) + h->path_len + 1 + h->id_len + 1);

    if (!w)
        return NULL;
    w->sh = sh;
    w->c = h->conn;
    w->path_len = h->path_len;
    w->id_len = h->id_len;
    memcpy(w->key, h->path, h->path_len);
    memcpy(w->key + h->path_len + 1, h->id, h->id_len);
    w->me.key = w->key;
    w->me.key_len = h->path_len + 1 + h->id_len;
    w->timeout = h->timeout;
    memcpy(w->peer, h->peer, sizeof(w->peer)); /* both ADDR_STR_MAX, terminated */
    if (h->early_len) {
        w->early = malloc(h->early_len);
        if (!w->early) {
            free(w);
            return NULL;
        }
        memcpy(w->early, h->early, h->early_len);
        w->early_len = h->early_len;
    }
    return w;
}

void client_arrive(struct shard *sh, struct handoff *h)
{
    struct relay *r = sh->relay;
    struct lpath *p = lpath_find(sh, h->path, h->path_len);
    char key[WEBROUTE_PATH_MAX + 1 + WEBROUTE_ID_MAX];
    struct waiter *w;

    if (!lpath_open(p)) {
        log_reject("reject %s: no listener on %s", h->peer, h->path);
        conn_reject(r, &h->conn, 502, "missing_destination", "No listener on this path");
        return;
    }
    memcpy(key, h->path, h->path_len);
    key[h->path_len] = '\0';
    memcpy(key + h->path_len + 1, h->id, h->id_len);
    if (map_get(&sh->waiters, key, h->path_len + 1 + h->id_len)) {
        log_reject("reject %s: duplicate id on %s", h->peer, h->path);
        conn_reject(r, &h->conn, 409, "duplicate_id", "A client with this WebRoute-ID is waiting");
        return;
    }
    if (p->nparked > 0) {
        client_link_parked(p, h);
        return;
    }
    if (p->nwaiting >= sh->conf.max_waiting) {
        conn_reject(r, &h->conn, 503, "too_many_waiting", "Too many clients waiting on this path");
        return;
    }
    h->timeout = side_timeout(sh, h->timeout);
    w = waiter_new(sh, h);
    if (!w) {
        conn_reject(r, &h->conn, 503, "too_many_waiting", "Out of memory");
        return;
    }
    w->p = p;
    w->st = W_NEW;
    dlist_init(&w->node);
    w->deadline = sh->now + (uint64_t)sh->conf.dialback_timeout * 1000;
    p->nwaiting++;
    map_put(&sh->waiters, &w->me);
    /* Watched with the mask it will need as a link end, so that linking
     * costs no syscall: only the callback changes (ev_rebind). */
    if (ev_add(&sh->loop, w->c.fd, EV_IN | EV_OUT | EV_RDHUP, waiter_event, w, &w->tok) < 0)
        w->tok = 0; /* still served; only an early hang-up goes unnoticed */
    log_debug("waiting path=%s client=%s", h->path, h->peer);
    p->pins++;
    waiter_place(w);
    p->pins--;
    lpath_put(p);
}

/* The 101 for one side followed by the other side's early bytes. */
static char *head_for(const char *accept101, size_t n101, const char *early, size_t early_len,
                      size_t *len)
{
    char *p = malloc(n101 + early_len);

    if (!p)
        return NULL;
    memcpy(p, accept101, n101);
    if (early_len)
        memcpy(p + n101, early, early_len);
    *len = n101 + early_len;
    return p;
}

void dialback_arrive(struct shard *sh, struct handoff *h)
{
    struct relay *r = sh->relay;
    char key[WEBROUTE_PATH_MAX + 1 + WEBROUTE_ID_MAX];
    char acc[WEBROUTE_ACCEPT_LEN + 1], head[HEAD_101_MAX];
    struct map_entry *me;
    struct waiter *w;
    struct lpath *p;
    struct link_args la;
    int n;

    memcpy(key, h->path, h->path_len);
    key[h->path_len] = '\0';
    memcpy(key + h->path_len + 1, h->id, h->id_len);
    me = map_get(&sh->waiters, key, h->path_len + 1 + h->id_len);
    if (!me) {
        log_reject("reject %s: unknown route on %s", h->peer, h->path);
        conn_reject(r, &h->conn, 404, "unknown_route", "No client waits with this WebRoute-ID");
        return;
    }
    w = CONTAINER(me, struct waiter, me);
    if (wr_accept(h->id, h->id_len, acc) < 0 ||
        (n = wr_build_wr_101(head, sizeof(head), acc)) < 0) {
        conn_reject(r, &h->conn, 400, "invalid_request", "Bad WebRoute-ID");
        return;
    }
    la = (struct link_args){.client = w->c,
                            .client_tok = w->tok,
                            .client_input = w->saw_in || w->early_len > 0,
                            .server = h->conn,
                            .p = w->p,
                            .peer = w->peer};
    la.to_client = head_for(head, (size_t)n, h->early, h->early_len, &la.to_client_len);
    la.to_server = head_for(head, (size_t)n, w->early, w->early_len, &la.to_server_len);
    /* The pair's inactivity timeout is the smaller of the two sides'. */
    la.timeout_s = side_timeout(sh, h->timeout);
    if (w->timeout < la.timeout_s)
        la.timeout_s = w->timeout;
    p = w->p;
    waiter_unlink(w);
    log_info("link path=%s client=%s server=%s timeout=%lds", h->path, w->peer, h->peer,
             la.timeout_s);
    if (!la.to_client || !la.to_server || link_new(sh, &la) < 0) {
        free(la.to_client);
        free(la.to_server);
        ev_del_closing(&sh->loop, w->tok); /* no-op when link_new already let go */
        conn_reject(r, &w->c, 503, "too_many_connections", "Out of resources");
        conn_reject(r, &h->conn, 503, "too_many_connections", "Out of resources");
    }
    free(w->early);
    free(w);
    lpath_put(p);
}

/* ------------------------------------------------------------ parked */

/* Close a parked dial-back (its path is put by the caller). */
static void parked_close(struct parked *k, const char *why)
{
    struct shard *sh = k->sh;

    dlist_del(&k->node);
    k->p->nparked--;
    sh->nparked--;
    timer_del(&sh->wheel, &k->timer);
    ev_del_closing(&sh->loop, k->tok);
    conn_close(sh->relay, &k->c, false);
    log_info("unpark path=%s server=%s (%s)", k->p->path, k->peer, why);
    free(k);
}

static void lpath_close_parked(struct lpath *p, const char *why)
{
    struct dlist *n, *next;

    for (n = p->parked.next; n != &p->parked; n = next) {
        next = n->next;
        STAT_ADD(p->sh->stats.park_drops, 1);
        parked_close(CONTAINER(n, struct parked, node), why);
    }
}

void lpath_trim_parked(struct lpath *p, long max)
{
    struct dlist *n, *next;

    for (n = p->parked.next; n != &p->parked && p->nparked > max; n = next) {
        next = n->next;
        STAT_ADD(p->sh->stats.park_drops, 1);
        parked_close(CONTAINER(n, struct parked, node), "max_parked lowered");
    }
    lpath_put(p);
}

/* Bytes or a hang-up before it was linked: it goes (P-PARK-5). */
static void parked_event(void *arg, uint32_t events)
{
    struct parked *k = arg;
    struct lpath *p = k->p;

    if (!(events & (EV_IN | EV_RDHUP | EV_HUP | EV_ERR)))
        return; /* nothing read nor ended: it stays parked */
    STAT_ADD(k->sh->stats.park_drops, 1);
    parked_close(k, (events & EV_IN) && !(events & (EV_RDHUP | EV_HUP | EV_ERR))
                        ? "sent bytes while parked"
                        : "hung up while parked");
    lpath_put(p);
}

static void parked_timer_cb(struct timer *t)
{
    struct parked *k = CONTAINER(t, struct parked, timer);
    struct lpath *p = k->p;

    STAT_ADD(k->sh->stats.park_expiries, 1);
    parked_close(k, "park_timeout");
    lpath_put(p);
}

/* The client side of a link to a parked dial-back. */
struct park_client {
    struct xconn c;
    uint64_t tok; /* its watch, taken over; 0: none */
    const char *peer, *id, *early, *path;
    size_t id_len, early_len, path_len;
    long timeout;      /* effective, seconds */
    bool client_input; /* its taken-over watch already reported input */
};

/* Join k (off its path's list, unwatched) and a client: the client gets
 * its 101 as from a dial-back, k a 101 naming the client (P-PARK-3). k is
 * freed; on failure both are answered 503. */
static void park_link(struct parked *k, const struct park_client *pc)
{
    struct shard *sh = k->sh;
    char acc[WEBROUTE_ACCEPT_LEN + 1], hc[HEAD_101_MAX], hs[HEAD_PARK_MAX];
    int nc = -1, ns = -1;
    struct link_args la = {.client = pc->c,
                           .client_tok = pc->tok,
                           .client_input = pc->client_input,
                           .server = k->c,
                           .p = k->p,
                           .peer = pc->peer};

    if (wr_accept(pc->id, pc->id_len, acc) == 0) {
        nc = wr_build_wr_101(hc, sizeof(hc), acc);
        ns = wr_build_park_101(hs, sizeof(hs), acc, pc->peer, pc->id, pc->id_len, pc->timeout);
    }
    if (nc > 0 && ns > 0) {
        la.to_client = head_for(hc, (size_t)nc, NULL, 0, &la.to_client_len);
        la.to_server = head_for(hs, (size_t)ns, pc->early, pc->early_len, &la.to_server_len);
    }
    la.timeout_s = k->timeout < pc->timeout ? k->timeout : pc->timeout;
    log_info("link path=%.*s client=%s server=%s timeout=%lds (parked)", (int)pc->path_len,
             pc->path, pc->peer, k->peer, la.timeout_s);
    if (!la.to_client || !la.to_server || link_new(sh, &la) < 0) {
        free(la.to_client);
        free(la.to_server);
        ev_del_closing(&sh->loop, pc->tok); /* no-op when link_new already let go */
        conn_reject(sh->relay, &la.client, 503, "too_many_connections", "Out of resources");
        conn_reject(sh->relay, &la.server, 503, "too_many_connections", "Out of resources");
    } else {
        STAT_ADD(sh->stats.park_links, 1);
    }
    free(k);
}

/* The oldest parked dial-back of p, off the list and unwatched. */
static struct parked *park_take(struct lpath *p)
{
    struct parked *k = CONTAINER(p->parked.next, struct parked, node);

    dlist_del(&k->node);
    p->nparked--;
    k->sh->nparked--;
    timer_del(&k->sh->wheel, &k->timer);
    ev_del(&k->sh->loop, k->tok);
    k->tok = 0;
    return k;
}

/* A client arriving on a path with a parked dial-back: linked at once, no
 * notification (P-PARK-3). */
static void client_link_parked(struct lpath *p, struct handoff *h)
{
    struct park_client pc = {.c = h->conn,
                             .peer = h->peer,
                             .id = h->id,
                             .id_len = h->id_len,
                             .early = h->early,
                             .early_len = h->early_len,
                             .path = h->path,
                             .path_len = h->path_len,
                             .timeout = side_timeout(p->sh, h->timeout)};

    park_link(park_take(p), &pc);
    lpath_put(p);
}

/* A dial-back parked while a client waits in the queue (grace): linked to
 * the oldest at once (P-PARK-7). */
static void park_link_waiter(struct parked *k, struct waiter *w)
{
    struct lpath *p = w->p;
    struct park_client pc = {.c = w->c,
                             .tok = w->tok,
                             .peer = w->peer,
                             .id = w->key + w->path_len + 1,
                             .id_len = w->id_len,
                             .early = w->early,
                             .early_len = w->early_len,
                             .path = w->key,
                             .path_len = w->path_len,
                             .timeout = w->timeout,
                             .client_input = w->saw_in || w->early_len > 0};

    waiter_unlink(w);
    park_link(k, &pc);
    free(w->early);
    free(w);
    lpath_put(p);
}

static int park_refuse(struct shard *sh, struct handoff *h, int status, const char *code,
                       const char *msg)
{
    log_reject("reject %s: park on %s: %d %s", h->peer, h->path, status, code);
    conn_reject(sh->relay, &h->conn, status, code, msg);
    return -1;
}

/* Whether p takes one more parked dial-back (P-PARK-2, P-PARK-4, P-PARK-5);
 * -1 when h was refused. */
static int park_admit(struct shard *sh, struct lpath *p, struct handoff *h)
{
    if (!lpath_open(p))
        return park_refuse(sh, h, 502, "missing_destination", "No listener on this path");
    if (h->early_len || xconn_pending(&h->conn))
        return park_refuse(sh, h, 400, "invalid_request",
                           "A parked dial-back sends nothing before it is linked");
    if (p->nparked >= sh->conf.max_parked)
        return park_refuse(sh, h, 503, "too_many_connections",
                           "Too many parked dial-backs on this path");
    return 0;
}

void park_arrive(struct shard *sh, struct handoff *h)
{
    struct lpath *p = lpath_find(sh, h->path, h->path_len);
    struct parked *k;

    if (park_admit(sh, p, h) < 0)
        return;
    k = calloc(1, sizeof(*k));
    if (!k) {
        park_refuse(sh, h, 503, "too_many_connections", "Out of memory");
        return;
    }
    k->sh = sh;
    k->p = p;
    k->c = h->conn;
    k->timeout = side_timeout(sh, h->timeout);
    snprintf(k->peer, sizeof(k->peer), "%s", h->peer);
    if (!dlist_empty(&p->queue)) {
        park_link_waiter(k, CONTAINER(p->queue.next, struct waiter, node));
        return;
    }
    if (ev_add(&sh->loop, k->c.fd, EV_IN | EV_RDHUP, parked_event, k, &k->tok) < 0) {
        free(k);
        park_refuse(sh, h, 503, "too_many_connections", "Cannot watch");
        return;
    }
    dlist_add_tail(&p->parked, &k->node);
    p->nparked++;
    sh->nparked++;
    timer_set(&sh->wheel, &k->timer, sh->now + (uint64_t)sh->conf.park_timeout * 1000,
              parked_timer_cb);
    log_debug("park path=%s server=%s (%ld on the path)", p->path, k->peer, p->nparked);
}

/* ------------------------------------------------------------ upgrade */

/* Old side: w on channel fd as st (offered to listener lid), then ours
 * forgotten. 0 (sent, or kept: TLS, too big) or -errno. */
static int waiter_handover(int fd, struct waiter *w, enum waiter_state st, uint64_t lid)
{
    struct ho_rec r;
    int e;

    if (w->c.ops != &xprt_raw)
        return 0; /* a TLS session cannot move: it stays and drains */
    ho_rec_init(&r, HO_R_WAITER);
    r.num[HO_W_STATE] = st;
    r.num[HO_W_LISTENER] = (int64_t)lid;
    r.num[HO_W_OFFERS] = w->offers;
    r.num[HO_W_TIMEOUT] = w->timeout;
    r.num[HO_W_DEADLINE] = (int64_t)w->deadline;
    r.num[HO_W_OFFER_END] = (int64_t)w->offer_end;
    r.num[HO_W_SAW_IN] = w->saw_in;
    r.str[HO_W_PATH] = (struct ho_str){w->key, w->path_len};
    r.str[HO_W_ID] = (struct ho_str){w->key + w->path_len + 1, w->id_len};
    r.str[HO_W_PEER] = (struct ho_str){w->peer, strlen(w->peer)};
    r.str[HO_W_EARLY] = (struct ho_str){w->early, w->early_len};
    e = upg_send(fd, &r, &w->c.fd, 1);
    if (e < 0)
        return e == -EMSGSIZE ? 0 : e;
    waiter_unlink(w);
    ev_del(&w->sh->loop, w->tok);
    conn_handed_over(w->sh->relay, &w->c);
    free(w->early);
    free(w);
    return 0;
}

static int waiters_handover(int fd, struct dlist *list, enum waiter_state st, uint64_t lid)
{
    struct dlist *n, *next;
    int e = 0;

    for (n = list->next; e == 0 && n != list; n = next) {
        next = n->next;
        e = waiter_handover(fd, CONTAINER(n, struct waiter, node), st, lid);
    }
    return e;
}

/* Whether l can move: plain, taking clients, between frames. */
static bool listener_movable(const struct listener *l)
{
    return l->c.ops == &xprt_raw && l->live && !l->closing && !l->drop &&
           l->rd.st == WSREAD_HEADER && !l->rd.in_message;
}

static void listener_forget(struct listener *l)
{
    struct shard *sh = l->sh;
    struct lpath *p = l->p;

    if (l->live) { /* no grace: the path lives on in the new process */
        l->live = false;
        p->nlive--;
    }
    dlist_del(&l->node);
    p->nlisteners--;
    sh->nlisteners--;
    atomic_fetch_sub(&sh->relay->nlisteners, 1);
    ev_del(&sh->loop, l->tok);
    timer_del(&sh->wheel, &l->ka);
    conn_handed_over(sh->relay, &l->c);
    log_info("handed over path=%s listener=%s", p->path, l->peer);
    free(l->out);
    free(l);
}

/* The TLS clients offered to l cannot move with it: they stay here as
 * told (their dial-back, landing in the new process, finds no one: the
 * TLS limit of docs/DESIGN.md "Seamless upgrade"). */
static void listener_keep_tls(struct listener *l)
{
    struct dlist *n, *next;

    for (n = l->waiters.next; n != &l->waiters; n = next) {
        struct waiter *w = CONTAINER(n, struct waiter, node);

        next = n->next;
        if (w->c.ops == &xprt_raw)
            continue;
        waiter_detach(w);
        w->st = W_TOLD;
        dlist_add_tail(&l->p->told, &w->node);
    }
}

/* l and the clients offered to it; a listener that cannot move stays (it
 * gets close 1001 at the drain and registers again with the new process)
 * and its clients move as told. 0 or -errno. */
static int listener_handover(int fd, struct listener *l)
{
    uint64_t lid = (uint64_t)(uintptr_t)l;
    struct ho_rec r;
    int e = -EMSGSIZE;

    if (listener_movable(l)) {
        listener_keep_tls(l);
        ho_rec_init(&r, HO_R_LISTENER);
        r.num[HO_LST_ID] = (int64_t)lid;
        r.num[HO_LST_LIVE] = 1;
        r.num[HO_LST_LAST_RX] = (int64_t)l->last_rx;
        r.num[HO_LST_NEXT_PING] = (int64_t)l->next_ping;
        r.str[HO_LST_PATH] = (struct ho_str){l->p->path, l->p->path_len};
        r.str[HO_LST_PEER] = (struct ho_str){l->peer, strlen(l->peer)};
        r.str[HO_LST_IN] = (struct ho_str){(const char *)l->rd.hdr, l->rd.hdr_len};
        r.str[HO_LST_OUT] =
            (struct ho_str){l->out ? l->out + l->out_off : NULL, l->out_len - l->out_off};
        e = upg_send(fd, &r, &l->c.fd, 1);
    }
    if (e < 0 && e != -EMSGSIZE)
        return e;
    if (e == -EMSGSIZE)
        return waiters_handover(fd, &l->waiters, W_TOLD, 0);
    e = waiters_handover(fd, &l->waiters, W_OFFERED, lid);
    if (e == 0 && dlist_empty(&l->waiters))
        listener_forget(l);
    return e;
}

static int parked_handover(int fd, struct parked *k)
{
    struct shard *sh = k->sh;
    struct ho_rec r;
    int e;

    if (k->c.ops != &xprt_raw)
        return 0;
    ho_rec_init(&r, HO_R_PARKED);
    r.num[HO_PK_TIMEOUT] = k->timeout;
    r.num[HO_PK_EXPIRES] = (int64_t)k->timer.expires;
    r.str[HO_PK_PATH] = (struct ho_str){k->p->path, k->p->path_len};
    r.str[HO_PK_PEER] = (struct ho_str){k->peer, strlen(k->peer)};
    e = upg_send(fd, &r, &k->c.fd, 1);
    if (e < 0)
        return e == -EMSGSIZE ? 0 : e;
    dlist_del(&k->node);
    k->p->nparked--;
    sh->nparked--;
    timer_del(&sh->wheel, &k->timer);
    ev_del(&sh->loop, k->tok);
    conn_handed_over(sh->relay, &k->c);
    free(k);
    return 0;
}

static int grace_handover(int fd, struct lpath *p)
{
    struct ho_rec r;
    int e;

    if (!timer_armed(&p->grace))
        return 0;
    ho_rec_init(&r, HO_R_GRACE);
    r.num[HO_GRACE_END] = (int64_t)p->grace.expires;
    r.str[HO_GRACE_PATH] = (struct ho_str){p->path, p->path_len};
    e = upg_send(fd, &r, NULL, 0);
    if (e == 0)
        timer_del(&p->sh->wheel, &p->grace);
    return e;
}

int lpath_handover(struct lpath *p, int fd)
{
    struct dlist *n, *next;
    int e;

    p->pins++;
    e = grace_handover(fd, p); /* first: the new path is open for what follows */
    for (n = p->listeners.next; e == 0 && n != &p->listeners; n = next) {
        next = n->next;
        e = listener_handover(fd, CONTAINER(n, struct listener, node));
    }
    if (e == 0)
        e = waiters_handover(fd, &p->told, W_TOLD, 0);
    if (e == 0)
        e = waiters_handover(fd, &p->queue, W_QUEUED, 0);
    for (n = p->parked.next; e == 0 && n != &p->parked; n = next) {
        next = n->next;
        e = parked_handover(fd, CONTAINER(n, struct parked, node));
    }
    p->pins--;
    lpath_put(p);
    return e;
}

/* New side: clients told or queued on a path with no listener wait for
 * one within a grace (a listener that could not move registers again). */
static void lpath_hold(struct lpath *p)
{
    struct shard *sh = p->sh;

    if (!lpath_open(p) && sh->conf.listener_grace > 0)
        timer_set(&sh->wheel, &p->grace, sh->now + (uint64_t)sh->conf.listener_grace * 1000,
                  grace_cb);
}

static void grace_adopt(struct shard *sh, const struct ho_rec *r)
{
    struct lpath *p = lpath_get(sh, r->str[HO_GRACE_PATH].p, r->str[HO_GRACE_PATH].len);

    if (p && p->nlive == 0 && !timer_armed(&p->grace))
        timer_set(&sh->wheel, &p->grace, (uint64_t)r->num[HO_GRACE_END], grace_cb);
    if (p)
        lpath_put(p);
}

static void listener_adopt(struct shard *sh, const struct ho_rec *r, int fd)
{
    const struct ho_str *out = &r->str[HO_LST_OUT], *in = &r->str[HO_LST_IN];
    struct lpath *p = lpath_get(sh, r->str[HO_LST_PATH].p, r->str[HO_LST_PATH].len);
    struct listener *l = p ? calloc(1, sizeof(*l)) : NULL;
    struct xconn c;

    xconn_init_raw(&c, fd);
    if (!l || (out->len && out_append(l, out->p, out->len) < 0)) {
        if (l)
            free(l->out);
        free(l);
        if (p)
            lpath_put(p);
        conn_close(sh->relay, &c, false);
        return;
    }
    atomic_fetch_add(&sh->relay->nlisteners, 1);
    l->sh = sh;
    l->p = p;
    l->c = c;
    l->ho_id = (uint64_t)r->num[HO_LST_ID];
    wsread_init(&l->rd, WSREAD_SERVER, sh->conf.max_frame, NULL, 0);
    dlist_init(&l->waiters);
    l->writable = true;
    upg_str(r, HO_LST_PEER, l->peer, sizeof(l->peer));
    l->last_rx = (uint64_t)r->num[HO_LST_LAST_RX];
    p->pins++;
    if (listener_start(l, in->p, in->len) == 0) {
        if (sh->conf.keepalive > 0) {
            l->next_ping = (uint64_t)r->num[HO_LST_NEXT_PING];
            listener_ka_arm(l, (uint64_t)sh->conf.keepalive * 1000);
        }
        listener_event(l, EV_OUT | EV_IN); /* frames that came during the handover */
    }
    p->pins--;
    lpath_put(p);
}

/* The listener of p the old process called lid, when it moved and is live. */
static struct listener *lpath_find_ho(struct lpath *p, uint64_t lid)
{
    for (struct dlist *n = p->listeners.next; n != &p->listeners; n = n->next) {
        struct listener *l = CONTAINER(n, struct listener, node);

        if (l->ho_id == lid && l->live)
            return l;
    }
    return NULL;
}

/* A waiter adopted, on its list by its old state. */
static void waiter_restore(struct waiter *w, enum waiter_state st, uint64_t lid)
{
    struct lpath *p = w->p;
    struct listener *l = st == W_OFFERED ? lpath_find_ho(p, lid) : NULL;

    if (l) {
        w->st = W_OFFERED;
        w->l = l;
        dlist_add_tail(&l->waiters, &w->node);
        l->nwaiting++;
    } else if (st == W_OFFERED || st == W_TOLD) {
        lpath_hold(p);
        w->st = W_TOLD; /* its dial-back may still come; then offered again */
        dlist_add_tail(&p->told, &w->node);
    } else if (st == W_QUEUED && p->nlive == 0 && (lpath_hold(p), lpath_open(p))) {
        w->st = W_QUEUED;
        dlist_add_tail(&p->queue, &w->node);
    } else {
        waiter_place(w);
        return;
    }
    waiter_arm(w);
}

static void waiter_adopt(struct shard *sh, const struct ho_rec *r, int fd)
{
    const struct ho_str *path = &r->str[HO_W_PATH], *id = &r->str[HO_W_ID];
    struct handoff h = {.path = (char *)path->p,
                        .path_len = path->len,
                        .id = (char *)id->p,
                        .id_len = id->len,
                        .early = (char *)r->str[HO_W_EARLY].p,
                        .early_len = r->str[HO_W_EARLY].len,
                        .timeout = (long)r->num[HO_W_TIMEOUT]};
    char key[WEBROUTE_PATH_MAX + 1 + WEBROUTE_ID_MAX];
    struct lpath *p = NULL;
    struct waiter *w = NULL;

    xconn_init_raw(&h.conn, fd);
    upg_str(r, HO_W_PEER, h.peer, sizeof(h.peer));
    if (path->len <= WEBROUTE_PATH_MAX && id->len <= WEBROUTE_ID_MAX) {
        memcpy(key, path->p, path->len);
        key[path->len] = '\0';
        memcpy(key + path->len + 1, id->p, id->len);
        if (!map_get(&sh->waiters, key, path->len + 1 + id->len))
            p = lpath_get(sh, path->p, path->len);
    }
    w = p ? waiter_new(sh, &h) : NULL;
    if (!w) {
        if (p)
            lpath_put(p);
        conn_close(sh->relay, &h.conn, false);
        return;
    }
    w->p = p;
    dlist_init(&w->node);
    w->st = W_NEW;
    w->offers = (unsigned)r->num[HO_W_OFFERS];
    w->deadline = (uint64_t)r->num[HO_W_DEADLINE];
    w->offer_end = (uint64_t)r->num[HO_W_OFFER_END];
    w->saw_in = r->num[HO_W_SAW_IN] != 0;
    p->nwaiting++;
    map_put(&sh->waiters, &w->me);
    if (ev_add(&sh->loop, fd, EV_IN | EV_OUT | EV_RDHUP, waiter_event, w, &w->tok) < 0)
        w->tok = 0;
    p->pins++;
    waiter_restore(w, (enum waiter_state)r->num[HO_W_STATE], (uint64_t)r->num[HO_W_LISTENER]);
    p->pins--;
    lpath_put(p);
}

static void parked_adopt(struct shard *sh, const struct ho_rec *r, int fd)
{
    const struct ho_str *path = &r->str[HO_PK_PATH];
    struct handoff h = {
        .path = (char *)path->p, .path_len = path->len, .timeout = (long)r->num[HO_PK_TIMEOUT]};
    struct lpath *p = lpath_find(sh, path->p, path->len);
    long before = p ? p->nparked : 0;

    xconn_init_raw(&h.conn, fd);
    upg_str(r, HO_PK_PEER, h.peer, sizeof(h.peer));
    park_arrive(sh, &h);
    p = lpath_find(sh, path->p, path->len);
    if (p && p->nparked > before) /* parked: keep its time left, not a new one */
        timer_set(&sh->wheel, &CONTAINER(p->parked.prev, struct parked, node)->timer,
                  (uint64_t)r->num[HO_PK_EXPIRES], parked_timer_cb);
}

void lpath_adopt(struct shard *sh, const struct ho_rec *r, const int *fds)
{
    switch (r->type) {
    case HO_R_GRACE:
        grace_adopt(sh, r);
        break;
    case HO_R_LISTENER:
        listener_adopt(sh, r, fds[0]);
        break;
    case HO_R_WAITER:
        waiter_adopt(sh, r, fds[0]);
        break;
    case HO_R_PARKED:
        parked_adopt(sh, r, fds[0]);
        break;
    default:
        break;
    }
}
