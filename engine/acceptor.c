#include "engine/acceptor_int.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine/admin.h"
#include "engine/authlimit.h"
#include "engine/conn.h"
#include "engine/log.h"
#include "engine/notify.h"
#include "engine/peeraddr.h"
#include "engine/shard.h"
#include "engine/timer.h"
#include "engine/xprt_tls.h"
#include "proto/http1.h"
#include "net/anet.h"

#define LISTEN_BACKLOG 4096
#define HEAD_INITIAL 1024
#define ACCEPT_RETRY_MS 100       /* after EMFILE/ENFILE */
#define ADMIN_SNDBUF_MIN 16384    /* answers above this size the send buffer first */
#define RETRY_AFTER_MAX 48        /* "Retry-After: " and a long */
#define TLS_RECORD_HANDSHAKE 0x16 /* first byte of a TLS ClientHello */
#define TLS_SNI_LOG_MAX 253       /* a DNS name's longest text form */

/* Wipe what the keys' page holds: the keys and the admin token. */
static void secrets_wipe(struct acceptor *a)
{
    keys_wipe(a->keys);
    explicit_bzero(a->admin_token, ADMIN_TOKEN_MAX);
}

/* Open spec (or, in an upgrade, take the old process's socket for it:
 * its accept queue comes along). The fd, or -errno with a message. */
static int listen_one(struct acceptor *a, const char *spec, bool admin, unsigned flags, char *err,
                      size_t errlen)
{
    const char *what = admin ? "admin endpoint" : "listening";
    const char *note = flags & LISTEN_F_TLS ? " (tls)" : "";
    struct sockaddr_storage ss;
    socklen_t len;
    char actual[ADDR_STR_MAX];
    int fd;

    if (addr_parse(spec, &ss, &len) < 0) {
        snprintf(err, errlen, "listen %s: not an address:port", spec);
        return -EINVAL;
    }
    fd = upgrade_listen_fd(a, spec, admin, flags);
    if (fd >= 0) {
        len = sizeof(ss);
        (void)getsockname(fd, (struct sockaddr *)&ss, &len);
        note = flags & LISTEN_F_TLS ? " (tls, taken over)" : " (taken over)";
        goto out;
    }
    /* Accepted sockets inherit TCP_NODELAY: one call here, none per accept. */
    fd = anet_tcp_listen(&ss, &len, LISTEN_BACKLOG, ANET_NONBLOCK | ANET_NODELAY | ANET_V6ONLY);
    if (fd < 0) {
        snprintf(err, errlen, "listen %s: %s", spec, strerror(-fd));
        return fd;
    }
out:
    /* Set on a taken-over socket too: the new configuration's value. */
    if (!admin && anet_defer_accept(fd, (int)a->relay->conf.defer_accept) < 0)
        log_warn("listen %s: TCP_DEFER_ACCEPT: %s", spec, strerror(errno));
    addr_format((struct sockaddr *)&ss, actual, sizeof(actual));
    log_notice("%s on %s%s", what, actual, note);
    return fd;
}

int acceptor_listen(struct acceptor *a, char *err, size_t errlen)
{
    const struct conf *c = &a->relay->conf;

    if (STAT_GET(a->relay->stats.started_ms) == 0) /* the status page's uptime */
        STAT_SET(a->relay->stats.started_ms, anet_now_ms());
    if (a->upn.fd >= 0 && upgrade_take_listens(a) < 0) {
        snprintf(err, errlen, "upgrade: no listen sockets from the running process");
        return -EPROTO;
    }
    /* The admin token first: a bad token file fails before anything listens. */
    if (strcmp(c->admin, "off") != 0 && c->admin_token_file[0]) {
        int r = admin_token_load(c->admin_token_file, a->admin_token, ADMIN_TOKEN_MAX,
                                 &a->admin_token_len, err, errlen);

        if (r < 0)
            return r;
    }
    for (int i = 0; i < c->nlisten; i++) {
        int fd;

        if ((c->listen_flags[i] & LISTEN_F_TLS) && !a->tls) {
            int r = xprt_tls_server_new(c, &a->tls, err, errlen);

            if (r < 0)
                return r;
        }
        fd = listen_one(a, c->listen[i], false, c->listen_flags[i], err, errlen);

        if (fd < 0)
            return fd;
        a->ls[a->nls++] = (struct lsock){.a = a, .fd = fd, .flags = c->listen_flags[i]};
    }
    if (strcmp(c->admin, "off") != 0) {
        int fd = listen_one(a, c->admin, true, 0, err, errlen);

        if (fd < 0)
            return fd;
        a->admin = (struct lsock){.a = a, .fd = fd, .admin = true};
    }
    upgrade_close_unused(a);
    return 0;
}

void lsock_close(struct acceptor *a, struct lsock *ls)
{
    if (ls->fd < 0)
        return;
    ev_del(a->loop, ls->tok);
    ls->tok = 0;
    close(ls->fd);
    ls->fd = -1;
}

/* ------------------------------------------------------------ pending */

/* An admin socket closed (acceptor thread: the counter's one writer). */
static void admin_release(struct relay *r)
{
    STAT_SET(r->stats.admin_conns, STAT_GET(r->stats.admin_conns) - 1);
}

void pending_free(struct pending *p, bool close_fd)
{
    struct acceptor *a = p->a;

    ev_del(a->loop, p->tok);
    timer_del(a->wheel, &p->timer);
    if (p->prev)
        p->prev->next = p->next;
    else
        a->pend = p->next;
    if (p->next)
        p->next->prev = p->prev;
    if (close_fd)
        conn_close(a->relay, &p->c, false);
    if (p->admin) /* its socket is closed by now, by us or by a reject */
        admin_release(a->relay);
    /* The head may hold a key. */
    explicit_bzero(p->buf, p->len);
    free(p->buf);
    free(p);
}

static void pending_reject(struct pending *p, int status, const char *code, const char *msg)
{
    log_reject("reject %s: %d %s", p->peer, status, code);
    conn_reject(p->a->relay, &p->c, status, code, msg);
    pending_free(p, false);
}

static struct handoff *handoff_make(struct pending *p, const struct wr_request *wr, size_t head)
{
    size_t early = p->len - head;
    struct handoff *h = calloc(1, sizeof(*h) + wr->path_len + 1 + wr->id_len + 1 + early);

    if (!h)
        return NULL;
    h->type = HO_CONN;
    h->conn = p->c;
    h->kind = wr->kind;
    h->timeout = wr->timeout;
    memcpy(h->peer, p->peer, sizeof(h->peer));
    h->path = h->data;
    memcpy(h->path, wr->path, wr->path_len);
    h->path_len = wr->path_len;
    h->id = h->path + wr->path_len + 1;
    if (wr->id_len)
        memcpy(h->id, wr->id, wr->id_len);
    h->id_len = wr->id_len;
    h->early = h->id + wr->id_len + 1;
    if (early)
        memcpy(h->early, p->buf + head, early);
    h->early_len = early;
    if (wr->kind == WR_LISTENER && ws_accept(wr->ws_key, wr->ws_key_len, h->ws_accept) < 0) {
        free(h);
        return NULL;
    }
    return h;
}

/* The address everything after this sees: the notification's ipaddr,
 * logs, the failed-authentication limit. */
static void pending_set_peer(struct pending *p, const struct sockaddr *sa, const char *how)
{
    char was[ADDR_STR_MAX];

    memcpy(was, p->peer, sizeof(was));
    peeraddr_store(&p->sa, sa);
    addr_format(sa, p->peer, sizeof(p->peer));
    authlimit_src_of(sa, &p->src);
    if (how)
        log_debug("peer %s is client %s (%s)", was, p->peer, how);
}

static bool peer_trusted(const struct conf *c, const struct sockaddr_storage *sa)
{
    return c->ntrusted > 0 &&
           fwd_trusted(c->trusted_proxies, (size_t)c->ntrusted, (const struct sockaddr *)sa);
}

/* From a trusted peer only, X-Forwarded-For / Forwarded name the client
 * (P-FWD-3); anyone else's are ignored (P-FWD-4). */
static void pending_forwarded(struct pending *p, const struct http1_request *req)
{
    const struct conf *c = &p->a->relay->conf;
    struct sockaddr_storage ss;

    if (peer_trusted(c, &p->sa) &&
        peeraddr_forwarded(req, c->trusted_proxies, (size_t)c->ntrusted, &ss) == 0)
        pending_set_peer(p, (struct sockaddr *)&ss, "forwarded header");
}

/* A source over its failed-authentication burst is answered 429 before its
 * key is even looked at (P-KEY-5): otherwise 429 against 403 would still
 * tell a guesser which key is right. Returns true when p is gone. */
static bool pending_throttled(struct pending *p)
{
    const struct conf *c = &p->a->relay->conf;
    long wait =
        authlimit_check(p->a->authlim, &p->src, *p->a->now, c->auth_fail_rate, c->auth_fail_burst);
    char retry[RETRY_AFTER_MAX];
    struct wr_error err = {429, "too_many_auth_failures", "Too many failed authentications", retry};

    if (wait == 0)
        return false;
    snprintf(retry, sizeof(retry), "Retry-After: %ld", wait);
    log_reject("reject %s: 429 too_many_auth_failures", p->peer);
    conn_reject_err(p->a->relay, &p->c, &err);
    pending_free(p, false);
    return true;
}

/* A whole head is in p->buf[0..head): authenticate, classify, hand off. */
static void pending_dispatch(struct pending *p, const struct http1_request *req, size_t head)
{
    struct acceptor *a = p->a;
    const struct http1_header *k = wr_apikey(req);
    enum key_role role;
    struct wr_request wr;
    struct wr_error err;
    struct handoff *h;

    pending_forwarded(p, req);
    if (pending_throttled(p))
        return;
    role = k ? keys_role(a->keys, k->value, k->value_len) : KEY_NONE;
    if (wr_classify(req, role, &wr, &err) < 0) {
        if (err.status == 403)
            authlimit_fail(a->authlim, &p->src, *a->now, a->relay->conf.auth_fail_rate,
                           a->relay->conf.auth_fail_burst);
        log_reject("reject %s: %d %s", p->peer, err.status, err.errorcode);
        conn_reject_err(a->relay, &p->c, &err);
        pending_free(p, false);
        return;
    }
    /* [ext] A dial-back asking to be parked (P-PARK-1, P-PARK-2). */
    if (a->relay->conf.max_parked > 0 && wr_wants_park(req)) {
        if (wr.kind != WR_DIALBACK) {
            pending_reject(p, 400, "invalid_request", "Only a server key may park");
            return;
        }
        wr.kind = WR_PARK;
    }
    h = handoff_make(p, &wr, head);
    if (!h) {
        pending_reject(p, 400, "invalid_request", "Bad request");
        return;
    }
    pending_free(p, false);
    shard_deliver(relay_shard_for(a->relay, h->path, h->path_len), h);
}

/* The admin endpoint: answer and close; no key, no hand-off. */
static void admin_reply(struct pending *p, const struct http1_request *req)
{
    struct acceptor *a = p->a;
    ssize_t k;
    int n;

    if (a->admin_token_len && !admin_authorized(req, a->admin_token, a->admin_token_len))
        n = admin_unauthorized(a->admin_out, sizeof(a->admin_out));
    else
        n = admin_answer(a->relay, req->method, req->method_len, req->target, req->target_len,
                         a->admin_out, sizeof(a->admin_out));

    /* One nonblocking send: room for the whole answer (the kernel doubles
     * the value and caps it at net.core.wmem_max). */
    if (n > ADMIN_SNDBUF_MIN)
        (void)setsockopt(p->c.fd, SOL_SOCKET, SO_SNDBUF, &n, sizeof(n));
    k = n > 0 ? p->c.ops->snd(&p->c, a->admin_out, (size_t)n) : 0;

    if (k < 0)
        log_debug("admin %s: %s", p->peer, strerror((int)-k));
    pending_free(p, true);
}

/* Read what is there and try to parse. Returns 1 when p is gone (handed
 * off, rejected or closed), 0 when the socket has no more bytes for now. */
static int pending_read(struct pending *p)
{
    const struct conf *conf = &p->a->relay->conf;
    size_t max = conf->max_header;
    struct http1_header hdr[CONF_MAX_HEADERS_MAX];
    struct http1_request req;

    for (;;) {
        ssize_t n;
        int r;

        if (p->len == p->cap) {
            size_t cap = p->cap * 2 > max ? max : p->cap * 2;
            char *b;

            if (p->len >= max) {
                pending_reject(p, 431, "header_too_large", "Request head too large");
                return 1;
            }
            b = realloc(p->buf, cap);
            if (!b) {
                pending_reject(p, 503, "too_many_connections", "Out of memory");
                return 1;
            }
            p->buf = b;
            p->cap = cap;
        }
        n = p->c.ops->rcv(&p->c, p->buf + p->len, p->cap - p->len);
        if (n == -EAGAIN)
            return 0;
        if (n <= 0) {
            log_debug("%s went away before its head was complete", p->peer);
            pending_free(p, true);
            return 1;
        }
        p->len += (size_t)n;
        r = http1_parse_request(p->buf, p->len, p->last_len, &req, hdr, (size_t)conf->max_headers);
        if (r > 0) {
            if (p->admin)
                admin_reply(p, &req);
            else
                pending_dispatch(p, &req, (size_t)r);
            return 1;
        }
        if (r == HTTP1_INVALID) {
            pending_reject(p, 400, "invalid_request", "Malformed request head");
            return 1;
        }
        if (r == HTTP1_TOO_MANY_HEADERS) {
            pending_reject(p, 431, "header_too_large", "Too many header lines");
            return 1;
        }
        p->last_len = p->len;
    }
}

/* ------------------------------------------------------------ TLS handshake */

/* A TLS listener's socket before its session: its first byte must start a
 * TLS handshake record; plain HTTP gets a plain-text 400 instead of a
 * stall. 2: session started, 0: nothing to read yet, 1: p is gone. */
static int tls_start(struct pending *p)
{
    struct relay_stats *st = &p->a->relay->stats;
    unsigned char b;
    ssize_t n;

    do
        n = recv(p->c.fd, &b, 1, MSG_PEEK);
    while (n == -1 && errno == EINTR);
    if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;
    if (n <= 0) {
        log_debug("%s went away before its TLS handshake", p->peer);
        STAT_ADD(st->tls_failures[n == 0 ? TLS_ERR_CLOSED : TLS_ERR_IO], 1);
        pending_free(p, true);
        return 1;
    }
    if (b != TLS_RECORD_HANDSHAKE) {
        STAT_ADD(st->tls_failures[TLS_ERR_NOT_TLS], 1);
        pending_reject(p, 400, "invalid_request", "This port speaks TLS");
        return 1;
    }
    if (xconn_init_tls(&p->c, p->c.fd, p->a->tls) < 0) {
        pending_free(p, true);
        return 1;
    }
    return 2;
}

/* The client's SNI for a log line: a host name, or "-" (it is the peer's
 * text: nothing else goes into the log). */
static const char *sni_for_log(const char *sni)
{
    if (!sni || !*sni || strlen(sni) > TLS_SNI_LOG_MAX)
        return "-";
    for (const char *q = sni; *q; q++)
        if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') ||
              *q == '.' || *q == '-'))
            return "-";
    return sni;
}

/* Count and log a completed handshake. */
static void tls_done(struct pending *p)
{
    struct relay_stats *st = &p->a->relay->stats;
    struct tls_conn *t = xconn_tls(&p->c);
    const char *v = tls_conn_version(t);
    const char *sni = sni_for_log(tls_conn_sni(t));
    bool v13 = strcmp(v, "TLSv1.3") == 0;

    STAT_ADD(st->tls_versions[v13], 1);
    if (tls_conn_resumed(t))
        STAT_ADD(st->tls_resumed, 1);
    log_debug("tls %s: %s %s sni=%s%s", p->peer, v, tls_conn_cipher(t), sni,
              tls_conn_resumed(t) ? " resumed" : "");
}

/* The handshake phase of a TLS listener's socket, before its head and under
 * the same deadline. 2: done, 0: waits for readiness, 1: p is gone. */
static int pending_handshake(struct pending *p)
{
    struct tls_conn *t;
    int r = xconn_tls(&p->c) ? 2 : tls_start(p);

    if (r != 2)
        return r;
    t = xconn_tls(&p->c);
    r = xprt_tls_handshake(&p->c);
    if (r == -EAGAIN)
        return 0;
    if (r < 0) {
        enum tls_err e = tls_conn_err(t) == TLS_ERR_NONE ? TLS_ERR_OTHER : tls_conn_err(t);

        STAT_ADD(p->a->relay->stats.tls_failures[e], 1);
        log_reject("close %s: TLS handshake failed: %s", p->peer, tls_conn_reason(t));
        pending_free(p, true);
        return 1;
    }
    p->tls_hs = false;
    tls_done(p);
    return 2;
}

/* ------------------------------------------------------------ PROXY header */

/* The PROXY header phase of a proxy_protocol socket (P-FWD-2), first of
 * all, under the head's deadline. 2: done, 0: waits for bytes, 1: p is
 * gone. */
static int pending_proxy(struct pending *p)
{
    struct proxyproto pp;
    int r = peeraddr_proxy_read(p->c.fd, recv, &pp);

    if (r == 0 && p->hup)
        r = -EPIPE; /* a partial header and nothing more will come */
    if (r == 0)
        return 0;
    if (r < 0) {
        if (r == -EPROTO) {
            STAT_ADD(p->a->relay->stats.proxy_bad, 1);
            log_reject("close %s: not a valid PROXY header", p->peer);
        } else {
            log_debug("%s went away before its PROXY header was complete", p->peer);
        }
        pending_free(p, true);
        return 1;
    }
    p->proxy_hdr = false;
    if (!pp.local) /* LOCAL (health checks): the front end speaks for itself */
        pending_set_peer(p, (struct sockaddr *)&pp.src, "PROXY header");
    return 2;
}

/* Whatever phase the connection is in. 1 when p is gone, 0 when waiting. */
static int pending_step(struct pending *p)
{
    int r = p->proxy_hdr ? pending_proxy(p) : 2; /* the PROXY header comes first */

    if (r == 2 && p->tls_hs)
        r = pending_handshake(p);
    return r == 2 ? pending_read(p) : r; /* bytes may wait in the session: read now */
}

static void pending_event(void *arg, uint32_t events)
{
    struct pending *p = arg;

    if (events & (EV_RDHUP | EV_HUP | EV_ERR))
        p->hup = true;
    (void)pending_step(p);
}

static void pending_timeout(struct timer *t)
{
    struct pending *p = (struct pending *)((char *)t - offsetof(struct pending, timer));

    if (p->tls_hs) {
        log_reject("close %s: TLS handshake not complete in time", p->peer);
        STAT_ADD(p->a->relay->stats.tls_failures[STATS_TLS_TIMEOUT], 1);
    } else {
        log_reject("close %s: request head not complete in time", p->peer);
    }
    STAT_ADD(p->a->relay->stats.header_timeouts, 1);
    pending_free(p, true);
}

/* Counts a new socket in nconn and says whether it is over its limit. Admin
 * sockets have their own (admin_max_connections) and are left out of the
 * client limit, so a flood of clients never locks monitoring out. */
static bool conn_over_limit(struct relay *r, bool admin)
{
    long open = atomic_fetch_add(&r->nconn, 1);
    long nadmin = (long)STAT_GET(r->stats.admin_conns);

    if (admin) {
        if (nadmin >= r->conf.admin_max_connections) {
            log_reject("reject: too many admin connections (%ld)", r->conf.admin_max_connections);
            return true;
        }
        STAT_SET(r->stats.admin_conns, (uint64_t)nadmin + 1);
        return false;
    }
    if (open - nadmin >= r->conf.max_connections) {
        log_reject("reject: too many connections (%ld)", r->conf.max_connections);
        return true;
    }
    return false;
}

/* On a proxy_protocol socket only trusted_proxies may speak (P-FWD-2): a
 * PROXY header from anyone else must never be believed, so the connection
 * is closed before a byte is read. */
static bool proxy_untrusted(struct relay *r, struct xconn *c, const struct sockaddr *sa)
{
    struct sockaddr_storage ss;
    char peer[ADDR_STR_MAX];

    peeraddr_store(&ss, sa);
    if (peer_trusted(&r->conf, &ss))
        return false;
    STAT_ADD(r->stats.proxy_untrusted, 1);
    addr_format(sa, peer, sizeof(peer));
    log_reject("close %s: not in trusted_proxies (proxy_protocol socket)", peer);
    conn_close(r, c, false);
    return true;
}

/* A pending connection on c with a head buffer of cap bytes, not yet on
 * the list. NULL when out of memory (c is then still the caller's). */
static struct pending *pending_alloc(struct acceptor *a, const struct xconn *c,
                                     const struct sockaddr *sa, size_t cap)
{
    struct pending *p = calloc(1, sizeof(*p));

    if (p)
        p->buf = malloc(cap);
    if (!p || !p->buf) {
        free(p);
        return NULL;
    }
    p->a = a;
    p->c = *c;
    p->cap = cap;
    pending_set_peer(p, sa, NULL);
    return p;
}

/* On the list, under the head's deadline; read what is there, then watch
 * with mask when the head is not complete. */
static void pending_start(struct pending *p, uint32_t mask)
{
    struct acceptor *a = p->a;

    p->next = a->pend;
    if (a->pend)
        a->pend->prev = p;
    a->pend = p;
    timer_set(a->wheel, &p->timer, *a->now + (uint64_t)a->relay->conf.header_timeout * 1000,
              pending_timeout);
    /* Most clients send their head right after the connect: try it before
     * paying for a watch, which only slow heads need. */
    if (pending_step(p) == 0 && ev_add(a->loop, p->c.fd, mask, pending_event, p, &p->tok) < 0)
        pending_free(p, true);
}

static void pending_new(struct acceptor *a, int fd, const struct sockaddr *sa,
                        const struct lsock *ls)
{
    struct relay *r = a->relay;
    bool admin = ls->admin, tls = (ls->flags & LISTEN_F_TLS) != 0;
    bool proxy = (ls->flags & LISTEN_F_PROXY) != 0;
    uint32_t mask = EV_IN | EV_RDHUP | (tls ? EV_OUT : 0); /* a handshake may wait for room */
    struct pending *p;
    struct xconn c;

    xconn_init_raw(&c, fd);
    if (!admin)
        STAT_ADD(r->stats.accepted, 1);
    if (conn_over_limit(r, admin)) {
        if (tls) /* no session yet: a plain-text answer would be noise */
            conn_close(r, &c, false);
        else
            conn_reject(r, &c, 503, "too_many_connections", "Too many connections");
        return;
    }
    if (proxy && proxy_untrusted(r, &c, sa))
        return;
    p = pending_alloc(a, &c, sa, HEAD_INITIAL);
    if (!p) {
        conn_close(r, &c, false);
        if (admin)
            admin_release(r);
        return;
    }
    p->admin = admin;
    p->tls_hs = tls;
    p->proxy_hdr = proxy;
    pending_start(p, mask);
}

void pending_adopt(struct acceptor *a, int fd, const struct sockaddr *sa, bool proxy_hdr,
                   const char *bytes, size_t len)
{
    struct pending *p;
    struct xconn c;

    xconn_init_raw(&c, fd);
    atomic_fetch_add(&a->relay->nconn, 1);
    p = pending_alloc(a, &c, sa, len > HEAD_INITIAL ? len : HEAD_INITIAL);
    if (!p) {
        conn_close(a->relay, &c, false);
        return;
    }
    p->proxy_hdr = proxy_hdr;
    if (len)
        memcpy(p->buf, bytes, len);
    p->len = len;
    pending_start(p, EV_IN | EV_RDHUP);
}

/* ------------------------------------------------------------ accept */

static void accept_retry(struct timer *t);

static void accept_all(struct acceptor *a, const struct lsock *ls)
{
    int lfd = ls->fd;

    for (;;) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd = accept4(lfd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd >= 0) {
            pending_new(a, fd, (struct sockaddr *)&ss, ls);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            /* Edge-triggered: nothing wakes us for the backlog we leave. */
            log_reject("accept: %s; retrying", strerror(errno));
            if (!timer_armed(&a->retry))
                timer_set(a->wheel, &a->retry, *a->now + ACCEPT_RETRY_MS, accept_retry);
        }
        return;
    }
}

static void accept_retry(struct timer *t)
{
    struct acceptor *a = (struct acceptor *)((char *)t - offsetof(struct acceptor, retry));

    for (int i = 0; i < a->nls; i++)
        if (a->ls[i].fd >= 0)
            accept_all(a, &a->ls[i]);
    if (a->admin.fd >= 0)
        accept_all(a, &a->admin);
}

void listen_event(void *arg, uint32_t events)
{
    struct lsock *ls = arg;

    accept_all(ls->a, ls);
}

/* ------------------------------------------------------------ signals */

void acceptor_stop(struct acceptor *a)
{
    struct relay *r = a->relay;

    log_notice("stopping: draining (up to %lds)", r->conf.drain_timeout);
    a->stopping = true;
    atomic_store(&r->draining, 1); /* /healthz says so; the admin socket stays */
    for (int i = 0; i < a->nls; i++)
        lsock_close(a, &a->ls[i]);
    a->nls = 0;
    timer_del(a->wheel, &a->retry);
    /* Heads still being read are dropped; admin requests finish. */
    for (struct pending *p = a->pend, *next; p; p = next) {
        next = p->next;
        if (!p->admin)
            pending_free(p, true);
    }
    for (int i = 0; i < r->nshards; i++) {
        struct handoff *h = calloc(1, sizeof(*h));

        if (!h) { /* cannot drain gracefully without memory: just go */
            secrets_wipe(a);
            exit(1);
        }
        h->type = HO_DRAIN;
        shard_deliver(r->shards[i], h);
    }
}

/* New handshakes use the new certificates; sessions keep their context
 * (each holds a reference). A bad new pair keeps the running context and
 * its settings in c. */
static void tls_reload(struct acceptor *a, struct conf *c)
{
    const struct conf *old = &a->relay->conf;
    struct tls_server *s;
    char err[TLS_ERR_MAX];

    if (!a->tls)
        return; /* no TLS listener: a new one needs a restart anyway */
    if (xprt_tls_server_new(c, &s, err, sizeof(err)) < 0) {
        log_error("reload: keeping the running TLS certificates: %s", err);
        c->tls_cert = old->tls_cert;
        c->tls_key = old->tls_key;
        c->tls_min_version = old->tls_min_version;
        memcpy(c->tls_ciphers, old->tls_ciphers, sizeof(c->tls_ciphers));
        return;
    }
    tls_server_unref(a->tls);
    a->tls = s;
    log_info("reloaded TLS certificates (%d pairs)", c->tls_cert.n);
}

static void acceptor_reload(struct acceptor *a)
{
    struct relay *r = a->relay;
    struct conf c;
    struct keys k;
    char err[512];
    bool relisten;

    if (a->reload(a->reload_arg, &c, &k, err, sizeof(err)) < 0) {
        log_error("reload failed, keeping the running configuration: %s", err);
        keys_wipe(&k);
        return;
    }
    relisten = c.nlisten != r->conf.nlisten;
    for (int i = 0; !relisten && i < c.nlisten; i++)
        relisten = strcmp(c.listen[i], r->conf.listen[i]) != 0 ||
                   c.listen_flags[i] != r->conf.listen_flags[i];
    if (relisten || c.workers != r->conf.workers || c.io != r->conf.io)
        log_warn(
            "reload: listen, workers and io changes take effect at restart or upgrade (SIGUSR2)");
    memcpy(c.listen, r->conf.listen, sizeof(c.listen));
    memcpy(c.listen_flags, r->conf.listen_flags, sizeof(c.listen_flags));
    c.nlisten = r->conf.nlisten;
    c.workers = r->conf.workers;
    c.io = r->conf.io;
    /* The sockets kept may need what the new file dropped (trusted_proxies
     * for a proxy_protocol socket). */
    if (conf_validate(&c, err, sizeof(err)) < 0) {
        log_error("reload failed, keeping the running configuration: %s", err);
        keys_wipe(&k);
        return;
    }
    tls_reload(a, &c);
    r->conf = c;
    *a->keys = k;
    keys_wipe(&k);
    atomic_store(&log_level_cur, (int)c.log_level);
    for (int i = 0; i < r->nshards; i++) {
        struct handoff *h = calloc(1, sizeof(*h));

        if (h)
            h->conf = malloc(sizeof(*h->conf));
        if (!h || !h->conf) {
            free(h);
            log_error("reload: out of memory for shard %d", i);
            continue;
        }
        *h->conf = c;
        h->type = HO_CONFIG;
        shard_deliver(r->shards[i], h);
    }
    log_info("reloaded configuration and keys");
}

static void signal_event(void *arg, uint32_t events)
{
    struct acceptor *a = arg;
    struct signalfd_siginfo si;

    while (read(a->sigfd, &si, sizeof(si)) == sizeof(si)) {
        if (si.ssi_signo == SIGUSR2) {
            upgrade_signal(a);
        } else if (si.ssi_signo == SIGHUP) {
            if (!a->stopping)
                acceptor_reload(a);
        } else if (a->up.st == UP_FROZEN) {
            log_warn("signal %u ignored: handing over to pid %ld", si.ssi_signo, (long)a->up.pid);
        } else if (!a->stopping) {
            upgrade_fini(a); /* an upgrade not yet frozen is called off */
            acceptor_stop(a);
        } else {
            log_warn("second signal: exiting without waiting for linked pairs");
            secrets_wipe(a);
            exit(0);
        }
    }
}

/* ------------------------------------------------------------ run */

/* The keys and the admin token live in their own pages, excluded from
 * core dumps: the token right after the keys. */
static struct keys *keys_page(size_t *len)
{
    long pg = sysconf(_SC_PAGESIZE);
    void *p;

    *len = (sizeof(struct keys) + ADMIN_TOKEN_MAX + (size_t)pg - 1) & ~((size_t)pg - 1);
    p = mmap(NULL, *len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    madvise(p, *len, MADV_DONTDUMP);
    return p;
}

struct acceptor *acceptor_new(struct relay *r, const struct keys *keys, acceptor_reload_fn *reload,
                              void *reload_arg)
{
    struct acceptor *a = calloc(1, sizeof(*a));

    if (!a)
        return NULL;
    a->relay = r;
    a->reload = reload;
    a->reload_arg = reload_arg;
    a->sigfd = -1;
    a->admin.fd = -1;
    a->up.fd = -1;
    a->upn.fd = -1;
    a->authlim = authlimit_new();
    a->keys = a->authlim ? keys_page(&a->keys_len) : NULL;
    if (!a->keys) {
        authlimit_free(a->authlim);
        free(a);
        return NULL;
    }
    *a->keys = *keys;
    a->admin_token = (char *)(a->keys + 1);
    return a;
}

/* Use the hosted shard's loop, wheel and clock, or set up our own. */
static int acceptor_loop_init(struct acceptor *a)
{
    struct relay *r = a->relay;
    int e;

    if (r->nshards == 1 && r->shards[0]->hosted) {
        a->host = r->shards[0];
        a->loop = &a->host->loop;
        a->wheel = &a->host->wheel;
        a->now = &a->host->now;
        return 0;
    }
    a->own_now = anet_now_ms();
    wheel_init(&a->own_wheel, a->own_now);
    e = ev_init(&a->own_loop, r->be);
    if (e < 0)
        return e;
    a->loop = &a->own_loop;
    a->wheel = &a->own_wheel;
    a->now = &a->own_now;
    a->loop->clock = a->now;
    return 0;
}

/* Watch the signals and the listen sockets. 0 or -errno. */
static int acceptor_watch(struct acceptor *a)
{
    sigset_t set;
    int e;

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR2);
    a->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (a->sigfd == -1)
        return -errno;
    e = ev_add(a->loop, a->sigfd, EV_IN, signal_event, a, &a->sigtok);
    for (int i = 0; e == 0 && i < a->nls; i++)
        e = ev_add_listen(a->loop, a->ls[i].fd, EV_IN, listen_event, &a->ls[i], &a->ls[i].tok);
    if (e == 0 && a->admin.fd >= 0)
        e = ev_add_listen(a->loop, a->admin.fd, EV_IN, listen_event, &a->admin, &a->admin.tok);
    return e;
}

/* Turn the loop until stopped and the shards have drained. 0 or -errno. */
static int acceptor_loop(struct acceptor *a)
{
    struct relay *r = a->relay;

    while (!a->stopping || atomic_load(&r->shards_running) > 0) {
        notify_turn(&notify_main, a->wheel, *a->now); /* READY, STOPPING, WATCHDOG, STATUS */
        upgrade_turn(a);
        int t = a->host ? shard_wait_ms(a->host) : wheel_timeout(a->wheel, *a->now);
        int e;

        if (a->stopping && (t < 0 || t > STOP_WAIT_MS))
            t = STOP_WAIT_MS;
        if (a->up.st == UP_FROZEN && (t < 0 || t > UP_FROZEN_WAIT_MS))
            t = UP_FROZEN_WAIT_MS; /* the shards' sends end soon: accept again quickly */
        e = ev_wait(a->loop, t);
        if (e < 0) {
            log_error("acceptor: event loop: %s", strerror(-e));
            return e;
        }
        *a->now = anet_now_ms();
        if (!a->host)
            wheel_run(a->wheel, *a->now);
        else if (a->host->wake_tok && shard_turn(a->host))
            shard_finish(a->host); /* the wheel is shared: shard_turn ran it */
    }
    return 0;
}

int acceptor_run(struct acceptor *a)
{
    int e = acceptor_loop_init(a);

    if (e < 0)
        goto out;
    if (a->upn.fd >= 0)
        upgrade_take_state(a); /* the old process's state, before accepting */
    e = acceptor_watch(a);
    if (e == 0)
        e = acceptor_loop(a);
    if (a->host && a->host->wake_tok)
        shard_finish(a->host); /* the loop failed: close what the shard holds */
    for (struct pending *p = a->pend, *next; p; p = next) {
        next = p->next;
        pending_free(p, true);
    }
    for (int i = 0; i < a->nls; i++)
        lsock_close(a, &a->ls[i]);
    lsock_close(a, &a->admin);
    if (a->sigfd >= 0) {
        ev_del(a->loop, a->sigtok);
        close(a->sigfd);
        a->sigfd = -1;
    }
    upgrade_fini(a);
    ev_fini(a->loop); /* a hosted shard's loop too: it is ours to end */
    a->loop = NULL;
out:
    secrets_wipe(a);
    return e;
}

void acceptor_free(struct acceptor *a)
{
    if (!a)
        return;
    /* Sockets opened but never run (start-up failed after listening). */
    for (int i = 0; i < a->nls; i++)
        if (a->ls[i].fd >= 0)
            close(a->ls[i].fd);
    if (a->admin.fd >= 0)
        close(a->admin.fd);
    upgrade_close_unused(a);
    if (a->upn.fd >= 0)
        close(a->upn.fd);
    secrets_wipe(a);
    tls_server_unref(a->tls);
    munmap(a->keys, a->keys_len);
    authlimit_free(a->authlim);
    free(a);
}
