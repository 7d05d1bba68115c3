/* The server side of librapi: control WebSockets registered at the relays
 * (one per relay address: every URL given, every address its host name
 * resolves to), dial-backs in flight, and a queue of linked connections.
 * Everything is driven from rapi_accept/rapi_listen on the caller's thread
 * through one epoll set (the pollable fd); a timerfd and an eventfd in that
 * set make it readable for timers and for queued connections. Each control
 * connection has its own backoff; a notification is dialed back to the
 * address it came from. */
#define RAPI_BUILDING 1
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "proto/addr.h"
#include "proto/json.h"
#include "proto/rnd.h"
#include "proto/wsread.h"
#include "sdk/handshake.h"

#define CTL_OUT_MAX 4096
#define CTL_MSG_MAX 4096  /* largest message we accept from the relay */
#define CTL_IN_CHUNK 4096 /* bytes read from the relay per recv */
#define DIAL_RETRIES 3    /* a failed dial-back is retried this many times */
#define DIAL_BACKOFF_MIN 100
#define DIAL_BACKOFF_MAX 1000
#define SILENCE_FACTOR 3 /* keepalive intervals without a byte: relay is gone */
#define STABLE_MS 10000  /* a registration held this long resets the backoff */
#define EP_BATCH 32
#define LOG_MAX 512
#define CTLS_MAX (RAPI_RELAYS_MAX * RELAY_ADDRS_MAX)
#define PARK_MAX 256       /* rapi_listen_opts.park is capped at this */
#define PARK_HOLD_MS 1000  /* a park refused or lost at once: wait before the next */
#define PARK_QUICK_MS 1000 /* a park that ended sooner than this counts as refused */

/* What an epoll tag points at: the first member of struct ctl / dial. */
enum tag_kind { TAG_CTL = 1, TAG_DIAL };

/* An fd in the epoll set and what it is registered for (0: not in it). */
struct epw {
    int fd;
    uint32_t events;
};

/* One URL given to rapi_listen_multi. Lives as long as the listener. */
struct relay {
    struct rapi_url url; /* its key wiped: key holds the one in use */
    char key[URL_KEY_MAX];
};

enum ctl_state {
    CTL_WAIT,      /* waiting out the backoff before the next attempt (no fd) */
    CTL_HANDSHAKE, /* the handshake machine runs: connect, upgrade request, 101 */
    CTL_OPEN,      /* registered: notifications arrive as text frames */
};

struct ctl {
    enum tag_kind tag; /* TAG_CTL */
    struct ctl *next;
    struct relay *r;
    struct relay_addr a;   /* len 0: not resolved yet */
    char where[WHERE_MAX]; /* host:port (address), for logs */
    bool fresh;            /* resolved just now: the next attempt need not */
    struct hsm m;          /* the handshake; m.fd is the control socket, -1 when none */
    enum ctl_state st;
    struct epw ep; /* what is registered in the epoll set */
    char out[CTL_OUT_MAX];
    size_t out_len, out_off;
    struct wsread rd;         /* frames from the relay, set up at CTL_OPEN */
    uint8_t in[CTL_IN_CHUNK]; /* one recv's bytes, unmasked in place */
    uint8_t msg[CTL_MSG_MAX]; /* a notification, reassembled by rd */
    uint64_t deadline;        /* WAIT: next attempt; HANDSHAKE: give up */
    uint64_t last_rx, next_ping;
    uint64_t opened_at; /* when the current registration succeeded */
    bool bye;           /* our close frame is sent: leaving (rapi_listener_leave) */
    bool can_park;      /* [ext] the relay's 101 said X-Rapi-Ext: park */
    unsigned attempt;   /* reconnect attempts since the last stable registration */
    unsigned failures;  /* attempts failed since rapi_listen */
    struct rapi_error last_err;
};

enum dial_state {
    DIAL_WAIT,      /* waiting before a retry (no fd) */
    DIAL_HANDSHAKE, /* the handshake machine runs: connect, WebRoute request, 101 */
};

struct dial {
    enum tag_kind tag; /* TAG_DIAL */
    struct dial *prev, *next;
    const struct relay *r;
    struct relay_addr a; /* the relay address the notification came on */
    struct hsm m;        /* request built once, tried again on each retry */
    enum dial_state st;
    struct epw ep;
    unsigned tries;
    uint64_t deadline;
    bool park;          /* [ext] parked ahead of a client (P-PARK-*) */
    uint64_t parked_at; /* park: when it was sent */
    struct rapi_peer peer;
};

struct ready {
    struct ready *next;
    int fd;
    struct tls_conn *tc; /* rwss://: the session on fd, pumped at rapi_accept */
    struct rapi_peer peer;
};

struct rapi_listener {
    int epfd, tfd, efd;
    struct relay *relays;
    size_t nrelays;
    struct sdktls *tls; /* for rwss:// relays, NULL when none */
    struct rapi_listen_opts o;
    struct ctl *ctls; /* every control connection */
    size_t nctls;
    struct rapi_error last_err; /* the latest control connection failure */
    struct dial *dials;
    size_t ndials;
    struct ready *rq_head, *rq_tail;
    size_t nready;
    uint64_t armed; /* deadline the timerfd is set for, 0 when disarmed */
    uint32_t rng;
    bool leaving;       /* rapi_listener_leave: no more registrations */
    uint64_t park_hold; /* no new park before this (a park was refused) */
};

static void ctl_attempt(struct rapi_listener *l, struct ctl *c);
static void dial_attempt(struct rapi_listener *l, struct dial *d);
static int park_peer(struct dial *d);

static void lst_log(struct rapi_listener *l, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void lst_log(struct rapi_listener *l, int level, const char *fmt, ...)
{
    char msg[LOG_MAX];
    va_list ap;

    if (l->o.log == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    l->o.log(l->o.log_arg, level, msg);
}

/* Registers fd (a TLS handshake swaps the machine's fd for a pump's
 * socketpair end: the old one, now the pump's, leaves the set first). */
static int ep_set(struct rapi_listener *l, int fd, void *tag, uint32_t want, struct epw *w)
{
    struct epoll_event ev = {.events = want, .data.ptr = tag};

    if (w->events && w->fd != fd) {
        epoll_ctl(l->epfd, EPOLL_CTL_DEL, w->fd, NULL);
        w->events = 0;
    }
    if (want == w->events)
        return 0;
    if (epoll_ctl(l->epfd, w->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev) == -1)
        return -errno;
    w->events = want;
    w->fd = fd;
    return 0;
}

static void ep_del(struct rapi_listener *l, struct epw *w)
{
    if (w->events)
        epoll_ctl(l->epfd, EPOLL_CTL_DEL, w->fd, NULL);
    w->events = 0;
}

/* ------------------------------------------------------------ control */

/* A control connection for address a of relay r (a NULL: not resolved
 * yet), due for its first attempt at once. NULL when out of memory or at
 * the limit. */
static struct ctl *ctl_new(struct rapi_listener *l, struct relay *r, const struct relay_addr *a)
{
    struct ctl *c;

    if (l->nctls >= CTLS_MAX)
        return NULL;
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->tag = TAG_CTL;
    c->r = r;
    if (a) {
        c->a = *a;
        c->fresh = true;
    }
    wire_where(&r->url, &c->a, c->where, sizeof(c->where));
    hsm_init(&c->m);
    c->m.tls = l->tls;
    c->st = CTL_WAIT;
    c->deadline = anet_now_ms();
    c->next = l->ctls;
    l->ctls = c;
    l->nctls++;
    return c;
}

static void ctl_close_fd(struct rapi_listener *l, struct ctl *c)
{
    ep_del(l, &c->ep);
    hsm_close(&c->m);
    c->out_len = c->out_off = 0;
}

static void ctl_free(struct rapi_listener *l, struct ctl *c)
{
    struct ctl **pp;

    for (pp = &l->ctls; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            l->nctls--;
            break;
        }
    }
    ctl_close_fd(l, c);
    hsm_clear(&c->m);
    free(c);
}

/* The control connection failed or ended: schedule the next attempt. The
 * path stays ours to re-register; dial-backs in flight carry on. */
static void ctl_fail(struct rapi_listener *l, struct ctl *c, const char *what)
{
    int delay;

    if (l->leaving) { /* no next attempt: this registration is over */
        ctl_close_fd(l, c);
        c->st = CTL_WAIT;
        c->deadline = UINT64_MAX;
        lst_log(l, RAPI_LOG_INFO, "relay %s: left (%s)", c->where, what);
        return;
    }
    /* Start the schedule over only after a registration that held: a relay
     * that accepts and drops at once must not be hammered. */
    if (c->st == CTL_OPEN && anet_now_ms() >= c->opened_at + STABLE_MS)
        c->attempt = 0;
    delay = backoff_delay_ms(c->attempt++, l->o.backoff_min_ms, l->o.backoff_max_ms,
                             backoff_rand(&l->rng));

    ctl_close_fd(l, c);
    c->can_park = false; /* learned again from the next 101 */
    c->failures++;
    c->st = CTL_WAIT;
    c->deadline = anet_now_ms() + (uint64_t)delay;
    lst_log(l, RAPI_LOG_WARN, "relay %s: %s; retrying in %d ms", c->where, what, delay);
}

static void ctl_fail_err(struct rapi_listener *l, struct ctl *c)
{
    char what[sizeof(c->last_err.message) + 32];

    l->last_err = c->last_err;
    snprintf(what, sizeof(what), "%s (%s)", c->last_err.message, rapi_code_name(c->last_err.code));
    ctl_fail(l, c, what);
}

static void ctl_want(struct rapi_listener *l, struct ctl *c)
{
    uint32_t ev = EPOLLIN;

    if (c->st == CTL_HANDSHAKE)
        ev = (uint32_t)hsm_events(&c->m);
    else if (c->out_off < c->out_len)
        ev = EPOLLIN | EPOLLOUT;
    if (ep_set(l, c->m.fd, c, ev, &c->ep) < 0)
        ctl_fail(l, c, "epoll_ctl failed");
}

static int ctl_flush(struct ctl *c)
{
    int rc = anet_send_nb(c->m.fd, c->out, c->out_len, &c->out_off);

    if (rc == 0)
        c->out_len = c->out_off = 0;
    return rc == -EAGAIN ? 0 : rc;
}

/* Queue one masked frame (client-to-server frames are always masked). */
static int ctl_frame(struct ctl *c, uint8_t op, const uint8_t *p, size_t len)
{
    uint8_t mask[4];
    size_t n;

    if (ws_mask_new(mask) < 0)
        return -EIO;
    n = ws_build_frame((uint8_t *)c->out + c->out_len, sizeof(c->out) - c->out_len, op, true, p,
                       len, mask);
    if (n == 0)
        return -ENOBUFS;
    c->out_len += n;
    return 0;
}

static bool relay_has(const struct rapi_listener *l, const struct relay *r,
                      const struct relay_addr *a)
{
    const struct ctl *c;

    for (c = l->ctls; c != NULL; c = c->next)
        if (c->r == r && wire_addr_eq(&c->a, a))
            return true;
    return false;
}

/* Resolve c's relay again (DNS may have changed since) and follow it: an
 * address without a control connection gets one, c takes the first such
 * address when it has none. False when c's address is gone from the name
 * (c is then to be dropped); a failed resolution keeps what we know. */
static bool ctl_resolve(struct rapi_listener *l, struct ctl *c)
{
    struct relay_addr got[RELAY_ADDRS_MAX];
    bool kept = false;
    int n, i;

    n = wire_resolve(&c->r->url, got, RELAY_ADDRS_MAX, &c->last_err);
    if (n < 0)
        return true;
    for (i = 0; i < n; i++) {
        if (c->a.len != 0 && wire_addr_eq(&c->a, &got[i])) {
            kept = true;
        } else if (relay_has(l, c->r, &got[i])) {
            continue;
        } else if (c->a.len == 0) {
            c->a = got[i];
            wire_where(&c->r->url, &c->a, c->where, sizeof(c->where));
            kept = true;
        } else {
            (void)ctl_new(l, c->r, &got[i]); /* at the limit: the known ones do */
        }
    }
    return kept;
}

static void ctl_attempt(struct rapi_listener *l, struct ctl *c)
{
    if (!c->fresh && !ctl_resolve(l, c)) {
        lst_log(l, RAPI_LOG_INFO, "relay %s: no longer an address of %s; dropped", c->where,
                c->r->url.host);
        ctl_free(l, c);
        return;
    }
    c->fresh = false;
    if (c->a.len == 0) { /* the name does not resolve (yet) */
        ctl_fail_err(l, c);
        return;
    }
    if (hsm_ws_request(&c->m, &c->r->url, c->r->key, &c->last_err) < 0 ||
        hsm_connect_addr(&c->m, &c->r->url, &c->a, &c->last_err) < 0) {
        ctl_fail_err(l, c);
        return;
    }
    c->st = CTL_HANDSHAKE;
    c->deadline = anet_now_ms() + (uint64_t)l->o.dial_timeout_ms;
    ctl_want(l, c);
}

/* [ext] Whether the relay's 101 offered parked dial-backs (P-PARK-1). */
static bool ctl_advertises_park(const struct ctl *c)
{
    char v[64];
    int n = hsm_header(&c->m, WR_EXT_HEADER, v, sizeof(v));

    return n > 0 && http1_has_token(v, (size_t)n, "park");
}

/* The relay answered a valid 101: the path is ours. */
static void ctl_opened(struct rapi_listener *l, struct ctl *c)
{
    uint64_t now = anet_now_ms();

    c->st = CTL_OPEN;
    wsread_init(&c->rd, WSREAD_CLIENT, CTL_MSG_MAX, c->msg, sizeof(c->msg));
    c->opened_at = now;
    c->last_rx = now;
    c->next_ping = now + (uint64_t)l->o.keepalive_s * 1000u;
    lst_log(l, RAPI_LOG_INFO, "registered %s at %s", c->r->url.path, c->where);
    c->can_park = l->o.park > 0 && ctl_advertises_park(c);
}

/* ------------------------------------------------------------ dial-backs */

static void dial_free(struct rapi_listener *l, struct dial *d)
{
    ep_del(l, &d->ep);
    hsm_clear(&d->m);
    if (d->prev)
        d->prev->next = d->next;
    else
        l->dials = d->next;
    if (d->next)
        d->next->prev = d->prev;
    l->ndials--;
    free(d);
}

static void dial_retry(struct rapi_listener *l, struct dial *d, const char *why)
{
    int delay;

    ep_del(l, &d->ep);
    hsm_close(&d->m);
    if (d->park) { /* not retried: the pool is topped up instead */
        if (anet_now_ms() < d->parked_at + PARK_QUICK_MS)
            l->park_hold = anet_now_ms() + PARK_HOLD_MS;
        lst_log(l, RAPI_LOG_DEBUG, "parked dial-back ended: %s", why);
        dial_free(l, d);
        return;
    }
    if (d->tries >= DIAL_RETRIES) {
        lst_log(l, RAPI_LOG_WARN, "dial-back for %s failed: %s; giving up", d->peer.addr, why);
        dial_free(l, d);
        return;
    }
    delay = backoff_delay_ms(d->tries++, DIAL_BACKOFF_MIN, DIAL_BACKOFF_MAX, backoff_rand(&l->rng));
    lst_log(l, RAPI_LOG_DEBUG, "dial-back for %s failed: %s; retry in %d ms", d->peer.addr, why,
            delay);
    d->st = DIAL_WAIT;
    d->deadline = anet_now_ms() + (uint64_t)delay;
}

static void ready_push(struct rapi_listener *l, struct dial *d)
{
    struct ready *r = malloc(sizeof(*r));
    uint64_t one = 1;

    ep_del(l, &d->ep);
    if (r == NULL || (d->m.tc == NULL && anet_set_nonblock(d->m.fd, false) < 0)) {
        free(r);
        lst_log(l, RAPI_LOG_ERROR, "out of memory: dropping %s", d->peer.addr);
        dial_free(l, d);
        return;
    }
    r->next = NULL;
    r->fd = hsm_take_raw(&d->m, &r->tc);
    r->peer = d->peer;
    if (l->rq_tail)
        l->rq_tail->next = r;
    else
        l->rq_head = r;
    l->rq_tail = r;
    if (l->nready++ == 0 && write(l->efd, &one, sizeof(one)) != sizeof(one))
        lst_log(l, RAPI_LOG_ERROR, "eventfd write failed");
    dial_free(l, d);
}

static void dial_want(struct rapi_listener *l, struct dial *d)
{
    if (ep_set(l, d->m.fd, d, (uint32_t)hsm_events(&d->m), &d->ep) < 0)
        dial_retry(l, d, "epoll_ctl failed");
}

static void dial_attempt(struct rapi_listener *l, struct dial *d)
{
    struct rapi_error e;

    if (hsm_connect_addr(&d->m, &d->r->url, &d->a, &e) < 0) {
        dial_retry(l, d, e.message);
        return;
    }
    d->st = DIAL_HANDSHAKE;
    d->deadline = anet_now_ms() + (uint64_t)l->o.dial_timeout_ms;
    dial_want(l, d);
}

/* Onto the listener's list, and the first attempt. */
static void dial_add(struct rapi_listener *l, struct dial *d)
{
    d->next = l->dials;
    if (l->dials)
        l->dials->prev = d;
    l->dials = d;
    l->ndials++;
    dial_attempt(l, d);
}

/* A notification on control connection c: dial back to c's relay address
 * (not just its name, which may lead to another relay). */
static void dial_start(struct rapi_listener *l, const struct ctl *c, const struct notify *n)
{
    struct rapi_error e;
    struct dial *d;

    if (l->ndials + l->nready >= (size_t)l->o.backlog) {
        lst_log(l, RAPI_LOG_WARN, "backlog full: not answering client %s", n->ipaddr);
        return;
    }
    d = calloc(1, sizeof(*d));
    if (d == NULL)
        return;
    d->tag = TAG_DIAL;
    d->r = c->r;
    d->a = c->a;
    hsm_init(&d->m);
    d->m.tls = l->tls; /* dial-backs follow the listener's scheme */
    snprintf(d->peer.addr, sizeof(d->peer.addr), "%s", n->ipaddr);
    d->peer.timeout = n->timeout;
    if (addr_parse(n->ipaddr, &d->peer.sa, &d->peer.salen) < 0) {
        d->peer.sa.ss_family = AF_UNSPEC;
        d->peer.salen = 0;
    }
    if (hsm_wr_request(&d->m, &c->r->url, c->r->key, n->id, l->o.webroute_timeout, &e) < 0) {
        hsm_clear(&d->m);
        free(d);
        return;
    }
    dial_add(l, d);
}

/* A refused dial-back (4xx: the client is gone, or our key is wrong) will
 * not succeed by retrying; a lost connection or a 5xx may. */
static void dial_io(struct rapi_listener *l, struct dial *d)
{
    struct rapi_error e;
    int rc;

    if (d->st != DIAL_HANDSHAKE)
        return;
    rc = hsm_step(&d->m, &e);
    if (rc == -EAGAIN) {
        if (d->park && d->m.st == HSM_READ)
            d->deadline = UINT64_MAX; /* parked: the relay's park_timeout ends it */
        return dial_want(l, d);
    }
    if (rc == 0 && d->park && park_peer(d) < 0)
        return dial_retry(l, d, "parked 101 without the client's details");
    if (rc == 0)
        return ready_push(l, d);
    if (d->park)
        return dial_retry(l, d, e.message);
    if (d->m.hs.status >= 400 && d->m.hs.status < 500) {
        lst_log(l, RAPI_LOG_WARN, "dial-back for %s refused: %s", d->peer.addr, e.message);
        dial_free(l, d);
        return;
    }
    dial_retry(l, d, e.message);
}

/* ------------------------------------------------------------ parked */

/* The client a parked dial-back was linked to, from its 101 (P-PARK-3). */
static int park_peer(struct dial *d)
{
    char t[24], *end;

    if (hsm_header(&d->m, WR_CLIENT_ADDR_HEADER, d->peer.addr, sizeof(d->peer.addr)) <= 0)
        return -EPROTO;
    if (addr_parse(d->peer.addr, &d->peer.sa, &d->peer.salen) < 0) {
        d->peer.sa.ss_family = AF_UNSPEC;
        d->peer.salen = 0;
    }
    d->peer.timeout = -1;
    if (hsm_header(&d->m, WR_CLIENT_TIMEOUT_HEADER, t, sizeof(t)) > 0) {
        long v = strtol(t, &end, 10);

        if (*end == '\0' && v >= 0)
            d->peer.timeout = v;
    }
    return 0;
}

/* Parked (or being parked) dial-backs to c's relay address. */
static size_t park_count(const struct rapi_listener *l, const struct ctl *c)
{
    size_t n = 0;

    for (const struct dial *d = l->dials; d != NULL; d = d->next)
        if (d->park && d->r == c->r && wire_addr_eq(&d->a, &c->a))
            n++;
    return n;
}

/* One more parked dial-back to c's relay address. 0 or -errno. */
static int park_start(struct rapi_listener *l, const struct ctl *c)
{
    char id[WR_ID_LEN + 1];
    struct rapi_error e;
    struct dial *d = calloc(1, sizeof(*d));

    if (d == NULL)
        return -ENOMEM;
    d->tag = TAG_DIAL;
    d->r = c->r;
    d->a = c->a;
    d->park = true;
    d->parked_at = anet_now_ms();
    hsm_init(&d->m);
    d->m.tls = l->tls;
    snprintf(d->peer.addr, sizeof(d->peer.addr), "parked");
    if (wire_new_id(id) < 0 ||
        hsm_park_request(&d->m, &c->r->url, c->r->key, id, l->o.webroute_timeout, &e) < 0) {
        hsm_clear(&d->m);
        free(d);
        return -EINVAL;
    }
    dial_add(l, d);
    return 0;
}

/* Keep o.park dial-backs parked at every registration whose relay offers
 * it, within the backlog; none while leaving or after a refusal. */
static void park_topup(struct rapi_listener *l)
{
    if (l->o.park <= 0 || l->leaving || anet_now_ms() < l->park_hold)
        return;
    for (const struct ctl *c = l->ctls; c != NULL; c = c->next) {
        if (c->st != CTL_OPEN || !c->can_park || c->bye)
            continue;
        for (size_t n = park_count(l, c); n < (size_t)l->o.park; n++)
            if (l->ndials + l->nready >= (size_t)l->o.backlog || park_start(l, c) < 0)
                return;
    }
}

/* Leaving: parked dial-backs not yet used are closed (the relay drops
 * them; a client linked to one at that instant sees its server hang up). */
static void park_close_all(struct rapi_listener *l)
{
    struct dial *d, *nx;

    for (d = l->dials; d != NULL; d = nx) {
        nx = d->next;
        if (d->park && d->m.st != HSM_DONE)
            dial_free(l, d);
    }
}

/* ------------------------------------------------------------ frames */

static void ctl_message(struct rapi_listener *l, const struct ctl *c, uint8_t op, const uint8_t *p,
                        size_t len)
{
    struct notify n = {0};

    if (op != WS_OP_TEXT) {
        lst_log(l, RAPI_LOG_DEBUG, "ignoring a binary message");
        return;
    }
    if (notify_parse((const char *)p, len, &n) < 0) {
        lst_log(l, RAPI_LOG_WARN, "ignoring a malformed notification");
        return;
    }
    dial_start(l, c, &n);
}

/* Feed one recv's bytes to the reader; returns 0, or the close code to
 * answer before failing (*closed: the relay sent a close frame). */
static int ctl_frames(struct rapi_listener *l, struct ctl *c, uint8_t *p, size_t n, bool *closed)
{
    struct wsread_ev ev;
    size_t used;

    while (n > 0) {
        used = wsread_feed(&c->rd, p, n, &ev);
        p += used;
        n -= used;
        switch (ev.type) {
        case WSREAD_MESSAGE:
            ctl_message(l, c, ev.opcode, ev.data, ev.len);
            break;
        case WSREAD_PING:
            if (ctl_frame(c, WS_OP_PONG, ev.data, ev.len) < 0)
                return WS_CLOSE_GOING_AWAY;
            break;
        case WSREAD_CLOSE:
            *closed = true;
            return WS_CLOSE_NORMAL; /* our side of the closing handshake */
        case WSREAD_ERROR:
            return ev.code;
        default: /* MORE, PONG; DATA does not occur with a message buffer */
            break;
        }
    }
    return 0;
}

static void ctl_close_with(struct ctl *c, int code)
{
    uint8_t frame[WS_MAX_HEADER + WS_MAX_CONTROL];
    uint8_t mask[4] = {0};
    size_t n, off = 0;

    if (ws_mask_new(mask) < 0)
        memset(mask, 0x5a, sizeof(mask)); /* a close frame is still owed */
    n = ws_build_close(frame, (uint16_t)code, "", mask);
    (void)anet_send_nb(c->m.fd, (const char *)frame, n, &off); /* best effort */
}

static void ctl_read(struct rapi_listener *l, struct ctl *c)
{
    bool closed = false;
    ssize_t n;
    int code;

    for (;;) {
        n = recv(c->m.fd, c->in, sizeof(c->in), 0);
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0)
            return ctl_fail(l, c, n == 0 ? "relay closed the connection" : strerror(errno));
        c->last_rx = anet_now_ms();
        code = ctl_frames(l, c, c->in, (size_t)n, &closed);
        if (code != 0) {
            if (!(closed && c->bye)) /* else the relay's answer to our close */
                ctl_close_with(c, code);
            return ctl_fail(l, c,
                            closed ? "relay closed the WebSocket" : "WebSocket protocol error");
        }
    }
}

static void ctl_io(struct rapi_listener *l, struct ctl *c)
{
    int rc;

    switch (c->st) {
    case CTL_WAIT:
        return;
    case CTL_HANDSHAKE:
        rc = hsm_step(&c->m, &c->last_err);
        if (rc == -EAGAIN)
            break;
        if (rc < 0 || hsm_pump(&c->m, &c->last_err) < 0)
            return ctl_fail_err(l, c);
        ctl_opened(l, c);
        /* bytes after the 101 may be waiting already */
        /* fall through */
    case CTL_OPEN:
        if (ctl_flush(c) < 0)
            return ctl_fail(l, c, "send failed");
        ctl_read(l, c);
        if (c->st == CTL_OPEN && ctl_flush(c) < 0)
            return ctl_fail(l, c, "send failed");
        break;
    }
    if (c->m.fd >= 0)
        ctl_want(l, c);
}

/* ------------------------------------------------------------ timers */

static void ctl_timer(struct rapi_listener *l, struct ctl *c, uint64_t now)
{
    uint64_t ka = (uint64_t)l->o.keepalive_s * 1000u;

    if (c->st != CTL_OPEN) {
        if (now < c->deadline)
            return;
        if (c->st == CTL_WAIT)
            return ctl_attempt(l, c);
        err_set(&c->last_err, RAPI_E_TIMEOUT, 0, "no answer from the relay in time");
        return ctl_fail_err(l, c);
    }
    if (now >= c->last_rx + SILENCE_FACTOR * ka)
        return ctl_fail(l, c, "relay silent for too long");
    if (now >= c->next_ping) {
        c->next_ping = now + ka;
        if (ctl_frame(c, WS_OP_PING, (const uint8_t *)"rapi", 4) == 0 && ctl_flush(c) < 0)
            return ctl_fail(l, c, "send failed");
        ctl_want(l, c);
    }
}

static uint64_t ctl_next_deadline(const struct rapi_listener *l, const struct ctl *c)
{
    uint64_t silent;

    if (c->st != CTL_OPEN)
        return c->deadline;
    silent = c->last_rx + SILENCE_FACTOR * (uint64_t)l->o.keepalive_s * 1000u;
    return c->next_ping < silent ? c->next_ping : silent;
}

/* The earliest deadline of all, UINT64_MAX when none. */
static uint64_t next_deadline(const struct rapi_listener *l)
{
    uint64_t next = UINT64_MAX, t;
    const struct ctl *c;
    const struct dial *d;

    for (c = l->ctls; c != NULL; c = c->next)
        if ((t = ctl_next_deadline(l, c)) < next)
            next = t;
    for (d = l->dials; d != NULL; d = d->next)
        if (d->deadline < next)
            next = d->deadline;
    return next;
}

static void run_timers(struct rapi_listener *l)
{
    uint64_t now = anet_now_ms(), next;
    struct ctl *c, *cn;
    struct dial *d, *nx;
    struct itimerspec its = {0};

    /* A control connection may drop itself (its address is gone) and add
     * others at the head (due at once: the timer below fires for them). */
    for (c = l->ctls; c != NULL; c = cn) {
        cn = c->next;
        ctl_timer(l, c, now);
    }
    for (d = l->dials; d; d = nx) {
        nx = d->next;
        if (now < d->deadline)
            continue;
        if (d->st == DIAL_WAIT)
            dial_attempt(l, d);
        else
            dial_retry(l, d, "timed out");
    }
    next = next_deadline(l);
    /* A deadline that is already due is armed again even when it equals
     * the one armed: that expiry may have been read already. */
    if (next == l->armed && next > now)
        return;
    l->armed = next;
    if (next == UINT64_MAX) { /* nothing to wait for: disarm */
        timerfd_settime(l->tfd, TFD_TIMER_ABSTIME, &its, NULL);
        return;
    }
    /* Absolute CLOCK_MONOTONIC, the same clock as anet_now_ms. */
    its.it_value.tv_sec = (time_t)(next / 1000u);
    its.it_value.tv_nsec = (long)(next % 1000u) * 1000000L;
    if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
        its.it_value.tv_nsec = 1;
    timerfd_settime(l->tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

/* One round: wait up to timeout_ms for events, handle them, run timers. */
static int lst_poll(struct rapi_listener *l, int timeout_ms)
{
    struct epoll_event ev[EP_BATCH];
    uint64_t junk;
    int n, i;

    n = epoll_wait(l->epfd, ev, EP_BATCH, timeout_ms);
    if (n == -1)
        return -errno;
    for (i = 0; i < n; i++) {
        void *tag = ev[i].data.ptr;
        if (tag == &l->tfd) {
            if (read(l->tfd, &junk, sizeof(junk)) < 0)
                junk = 0;
        } else if (tag == &l->efd) {
            continue; /* cleared when the queue empties */
        } else if (*(const enum tag_kind *)tag == TAG_CTL) {
            if (((struct ctl *)tag)->m.fd >= 0)
                ctl_io(l, tag);
        } else {
            dial_io(l, tag);
        }
    }
    park_topup(l);
    run_timers(l);
    return 0;
}

/* ------------------------------------------------------------ public */

static void opts_defaults(struct rapi_listen_opts *o)
{
    if (o->timeout_ms == 0)
        o->timeout_ms = 10000;
    if (o->dial_timeout_ms <= 0)
        o->dial_timeout_ms = 10000;
    if (o->keepalive_s <= 0)
        o->keepalive_s = 30;
    if (o->backoff_min_ms <= 0)
        o->backoff_min_ms = 100;
    if (o->backoff_max_ms <= 0)
        o->backoff_max_ms = 5000;
    if (o->backlog <= 0)
        o->backlog = 128;
    if (o->park < 0)
        o->park = 0;
    if (o->park > PARK_MAX)
        o->park = PARK_MAX;
}

/* One URL into r: a listener URL with a key (key overrides the URL's). */
static int relay_setup(struct relay *r, const char *url, const char *key, struct rapi_error *err)
{
    if (url == NULL || url_parse(url, strlen(url), &r->url) < 0 ||
        (r->url.scheme != URL_RWS && r->url.scheme != URL_RWSS)) {
        err_set(err, RAPI_E_URL, 0, "not a listener URL (rws://[KEY@]host[:port]/path)");
        return -EINVAL;
    }
    snprintf(r->key, sizeof(r->key), "%s", key && *key ? key : r->url.key);
    explicit_bzero(r->url.key, sizeof(r->url.key));
    if (r->key[0] == '\0') {
        err_set(err, RAPI_E_KEY, 0, "no server key given");
        return -EINVAL;
    }
    return 0;
}

static int lst_relays(struct rapi_listener *l, const char *const *urls, size_t n, const char *key,
                      struct rapi_error *err)
{
    size_t i;
    int rc;

    if (urls == NULL || n == 0 || n > RAPI_RELAYS_MAX) {
        err_set(err, RAPI_E_URL, 0, "from 1 to %d relay URLs", RAPI_RELAYS_MAX);
        return -EINVAL;
    }
    l->relays = calloc(n, sizeof(*l->relays));
    if (l->relays == NULL) {
        err_set(err, RAPI_E_SYSTEM, ENOMEM, "out of memory");
        return -ENOMEM;
    }
    l->nrelays = n;
    for (i = 0; i < n; i++) {
        if ((rc = relay_setup(&l->relays[i], urls[i], key, err)) < 0)
            return rc;
        if (l->relays[i].url.tls && l->tls == NULL &&
            (rc = sdktls_new(l->o.ca_file, &l->tls, err)) < 0)
            return rc;
    }
    return 0;
}

static int lst_setup(struct rapi_listener *l, struct rapi_error *err)
{
    struct epoll_event ev = {.events = EPOLLIN};

    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    l->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l->epfd == -1 || l->tfd == -1 || l->efd == -1)
        goto sys;
    ev.data.ptr = &l->tfd;
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->tfd, &ev) == -1)
        goto sys;
    ev.data.ptr = &l->efd;
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->efd, &ev) == -1)
        goto sys;
    if (rnd_fill(&l->rng, sizeof(l->rng)) < 0 || l->rng == 0)
        l->rng = (uint32_t)anet_now_ms() | 1u;
    return 0;
sys:
    err_set(err, RAPI_E_SYSTEM, errno, "%s", strerror(errno));
    return -errno;
}

/* One control connection per relay, unresolved: their first attempt
 * resolves the name and adds one for each further address. */
static int lst_start(struct rapi_listener *l, struct rapi_error *err)
{
    struct ctl *c, *cn;
    size_t i;

    for (i = 0; i < l->nrelays; i++) {
        if (ctl_new(l, &l->relays[i], NULL) == NULL) {
            err_set(err, RAPI_E_SYSTEM, ENOMEM, "out of memory");
            return -ENOMEM;
        }
    }
    for (c = l->ctls; c != NULL; c = cn) {
        cn = c->next;
        ctl_attempt(l, c);
    }
    run_timers(l);
    return 0;
}

static int lst_open_count(const struct rapi_listener *l, int *total)
{
    const struct ctl *c;
    int open = 0, all = 0;

    for (c = l->ctls; c != NULL; c = c->next) {
        all++;
        open += c->st == CTL_OPEN;
    }
    if (total)
        *total = all;
    return open;
}

/* Every control connection failed at least once (none registered). */
static bool lst_all_failed(const struct rapi_listener *l)
{
    const struct ctl *c;

    for (c = l->ctls; c != NULL; c = c->next)
        if (c->failures == 0)
            return false;
    return true;
}

/* Wait for the first registration; when every relay failed once instead,
 * the last failure is the answer. */
static int lst_first(struct rapi_listener *l, struct rapi_error *err)
{
    uint64_t end = anet_now_ms() + (uint64_t)l->o.timeout_ms;
    int rc, wait;

    while (lst_open_count(l, NULL) == 0 && !lst_all_failed(l)) {
        uint64_t now = anet_now_ms();
        if (l->o.timeout_ms > 0 && now >= end) {
            err_set(err, RAPI_E_TIMEOUT, 0, "no registration within %d ms", l->o.timeout_ms);
            return -ETIMEDOUT;
        }
        wait = l->o.timeout_ms > 0 ? (int)(end - now) : -1;
        rc = lst_poll(l, wait);
        if (rc < 0 && rc != -EINTR) {
            err_set(err, RAPI_E_SYSTEM, -rc, "epoll_wait: %s", strerror(-rc));
            return rc;
        }
    }
    if (lst_open_count(l, NULL) > 0)
        return 0;
    if (err)
        *err = l->last_err;
    return err_errno(l->last_err.code, l->last_err.sys_errno);
}

RAPI_API int rapi_listen_multi(struct rapi_listener **out, const char *const *urls, size_t nurls,
                               const char *key, const struct rapi_listen_opts *opts,
                               struct rapi_error *err)
{
    struct rapi_listener *l;
    int rc;

    *out = NULL;
    l = calloc(1, sizeof(*l));
    if (l == NULL) {
        err_set(err, RAPI_E_SYSTEM, ENOMEM, "out of memory");
        return -ENOMEM;
    }
    l->epfd = l->tfd = l->efd = -1;
    if (opts)
        l->o = *opts;
    opts_defaults(&l->o);
    if ((rc = lst_relays(l, urls, nurls, key, err)) < 0 || (rc = lst_setup(l, err)) < 0 ||
        (rc = lst_start(l, err)) < 0)
        goto fail;
    if (!(l->o.flags & RAPI_LISTEN_NOWAIT) && (rc = lst_first(l, err)) < 0)
        goto fail;
    err_set(err, RAPI_E_NONE, 0, "ok");
    *out = l;
    return 0;
fail:
    rapi_listener_close(l);
    return rc;
}

RAPI_API int rapi_listen(struct rapi_listener **out, const char *url, const char *key,
                         const struct rapi_listen_opts *opts, struct rapi_error *err)
{
    return rapi_listen_multi(out, &url, 1, key, opts, err);
}

RAPI_API int rapi_listener_fd(const struct rapi_listener *l)
{
    return l->epfd;
}

RAPI_API int rapi_listener_registered(const struct rapi_listener *l)
{
    return lst_open_count(l, NULL) > 0;
}

RAPI_API int rapi_listener_registrations(const struct rapi_listener *l, int *total)
{
    return lst_open_count(l, total);
}

static int ready_pop(struct rapi_listener *l, struct rapi_peer *peer, struct tls_conn **tc)
{
    struct ready *r = l->rq_head;
    uint64_t junk;
    int fd = r->fd;

    *tc = r->tc;

    l->rq_head = r->next;
    if (l->rq_head == NULL)
        l->rq_tail = NULL;
    if (--l->nready == 0 && read(l->efd, &junk, sizeof(junk)) < 0)
        junk = 0;
    if (peer)
        *peer = r->peer;
    free(r);
    return fd;
}

RAPI_API int rapi_accept(struct rapi_listener *l, struct rapi_peer *peer, int timeout_ms)
{
    struct tls_conn *tc;
    int fd = lst_accept_raw(l, peer, timeout_ms, &tc), pfd;

    if (fd < 0 || tc == NULL)
        return fd;
    pfd = sdktls_pump(tc, NULL); /* takes tc and fd */
    if (pfd < 0) {
        tls_conn_free(tc);
        close(fd);
        return pfd;
    }
    if (anet_set_nonblock(pfd, false) < 0) {
        close(pfd);
        return -EIO;
    }
    return pfd;
}

int lst_accept_raw(struct rapi_listener *l, struct rapi_peer *peer, int timeout_ms,
                   struct tls_conn **tc)
{
    uint64_t end = anet_now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    uint64_t now;
    int rc, wait;

    for (;;) {
        if (l->rq_head)
            return ready_pop(l, peer, tc);
        now = anet_now_ms();
        wait = timeout_ms < 0 ? -1 : (now >= end ? 0 : (int)(end - now));
        rc = lst_poll(l, wait);
        if (rc < 0)
            return rc;
        if (l->rq_head)
            continue;
        if (timeout_ms >= 0 && anet_now_ms() >= end)
            return -EAGAIN;
    }
}

/* Start leaving: a close frame on every registration, no new attempt. */
static void lst_bye(struct rapi_listener *l)
{
    static const uint8_t normal[2] = {WS_CLOSE_NORMAL >> 8, WS_CLOSE_NORMAL & 0xff};
    struct ctl *c;

    l->leaving = true;
    park_close_all(l);
    for (c = l->ctls; c != NULL; c = c->next) {
        if (c->st != CTL_OPEN || c->m.fd < 0 || ctl_frame(c, WS_OP_CLOSE, normal, 2) < 0 ||
            ctl_flush(c) < 0) {
            ctl_fail(l, c, "leaving");
            continue;
        }
        c->bye = true;
        ctl_want(l, c);
    }
}

RAPI_API int rapi_listener_leave(struct rapi_listener *l, int timeout_ms)
{
    uint64_t end = anet_now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    uint64_t now;
    int rc;

    if (!l->leaving)
        lst_bye(l);
    run_timers(l);
    while (lst_open_count(l, NULL) > 0 || l->dials != NULL) {
        now = anet_now_ms();
        if (timeout_ms >= 0 && now >= end)
            return -ETIMEDOUT;
        rc = lst_poll(l, timeout_ms < 0 ? -1 : (int)(end - now));
        if (rc < 0 && rc != -EINTR)
            return rc;
    }
    return 0;
}

RAPI_API void rapi_listener_close(struct rapi_listener *l)
{
    struct dial *d, *nx;
    struct ready *r;

    if (l == NULL)
        return;
    while (l->ctls != NULL) {
        if (l->ctls->st == CTL_OPEN && l->ctls->m.fd >= 0)
            ctl_close_with(l->ctls, WS_CLOSE_GOING_AWAY);
        ctl_free(l, l->ctls);
    }
    for (d = l->dials; d != NULL; d = nx) {
        nx = d->next;
        hsm_clear(&d->m);
        free(d);
    }
    l->dials = NULL;
    while ((r = l->rq_head) != NULL) {
        l->rq_head = r->next;
        tls_conn_free(r->tc);
        close(r->fd);
        free(r);
    }
    if (l->epfd >= 0)
        close(l->epfd);
    if (l->tfd >= 0)
        close(l->tfd);
    if (l->efd >= 0)
        close(l->efd);
    if (l->relays)
        explicit_bzero(l->relays, l->nrelays * sizeof(*l->relays));
    free(l->relays);
    sdktls_unref(l->tls);
    free(l);
}
