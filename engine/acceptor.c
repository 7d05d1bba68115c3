#include "engine/acceptor.h"

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
#include "engine/shard.h"
#include "engine/timer.h"
#include "engine/xprt_tls.h"
#include "proto/http1.h"
#include "net/anet.h"

#define LISTEN_BACKLOG 4096
#define HEAD_INITIAL 1024
#define ACCEPT_RETRY_MS 100          /* after EMFILE/ENFILE */
#define ADMIN_ANSWER_MAX (66 * 1024) /* the largest admin body and its head */
#define ADMIN_SNDBUF_MIN 16384       /* answers above this size the send buffer first */
#define STOP_WAIT_MS 50              /* loop wake-up while shards drain */
#define RETRY_AFTER_MAX 48           /* "Retry-After: " and a long */
#define TLS_RECORD_HANDSHAKE 0x16    /* first byte of a TLS ClientHello */

struct pending;

/* A listen socket: fd -1 when closed. */
struct lsock {
    struct acceptor *a;
    int fd;
    bool admin;
    unsigned flags; /* LISTEN_F_* from its listen line */
    uint64_t tok;
};

struct acceptor {
    struct relay *relay;
    /* The loop, timers and clock in use: the acceptor's own, or those of
     * the shard it hosts (one shard: one thread, see shard_host()). */
    struct ev_loop *loop;
    struct wheel *wheel;
    uint64_t *now;
    struct ev_loop own_loop;
    struct wheel own_wheel;
    uint64_t own_now;
    struct shard *host;
    struct keys *keys; /* own page, MADV_DONTDUMP; wiped by acceptor_free() */
    size_t keys_len;
    struct lsock ls[CONF_MAX_LISTEN], admin;
    int nls;
    struct timer retry;
    int sigfd;
    uint64_t sigtok;
    struct pending *pend;      /* list of heads being read */
    struct authlimit *authlim; /* failed authentications per source */
    bool stopping;
    acceptor_reload_fn *reload;
    void *reload_arg;
    char admin_out[ADMIN_ANSWER_MAX];
    char *admin_token; /* ADMIN_TOKEN_MAX bytes on the keys' page; empty: none asked */
    size_t admin_token_len;
    struct tls_server *tls; /* TLS listeners' context (one reference); NULL: none */
};

/* Wipe what the keys' page holds: the keys and the admin token. */
static void secrets_wipe(struct acceptor *a)
{
    keys_wipe(a->keys);
    explicit_bzero(a->admin_token, ADMIN_TOKEN_MAX);
}

/* A connection whose request head is being read. */
struct pending {
    struct acceptor *a;
    struct pending *prev, *next;
    uint64_t tok;
    struct xconn c;
    struct timer timer;
    char *buf;
    size_t len, cap, last_len;
    bool admin;  /* came in on the admin address */
    bool tls_hs; /* a TLS listener's socket whose handshake is not done */
    char peer[ADDR_STR_MAX];
    struct authlimit_src src; /* the peer, for the failed-authentication limit */
};

static int listen_one(const char *spec, const char *what, const char *note, char *err,
                      size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t len;
    char actual[ADDR_STR_MAX];
    int fd;

    if (addr_parse(spec, &ss, &len) < 0) {
        snprintf(err, errlen, "listen %s: not an address:port", spec);
        return -EINVAL;
    }
    /* Accepted sockets inherit TCP_NODELAY: one call here, none per accept. */
    fd = anet_tcp_listen(&ss, &len, LISTEN_BACKLOG, ANET_NONBLOCK | ANET_NODELAY | ANET_V6ONLY);
    if (fd < 0) {
        snprintf(err, errlen, "listen %s: %s", spec, strerror(-fd));
        return fd;
    }
    addr_format((struct sockaddr *)&ss, actual, sizeof(actual));
    log_notice("%s on %s%s", what, actual, note);
    return fd;
}

int acceptor_listen(struct acceptor *a, char *err, size_t errlen)
{
    const struct conf *c = &a->relay->conf;

    if (STAT_GET(a->relay->stats.started_ms) == 0) /* the status page's uptime */
        STAT_SET(a->relay->stats.started_ms, anet_now_ms());
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
        fd = listen_one(c->listen[i], "listening",
                        c->listen_flags[i] & LISTEN_F_TLS ? " (tls)" : "", err, errlen);

        if (fd < 0)
            return fd;
        a->ls[a->nls++] = (struct lsock){.a = a, .fd = fd, .flags = c->listen_flags[i]};
    }
    if (strcmp(c->admin, "off") != 0) {
        int fd = listen_one(c->admin, "admin endpoint", "", err, errlen);

        if (fd < 0)
            return fd;
        a->admin = (struct lsock){.a = a, .fd = fd, .admin = true};
    }
    return 0;
}

static void lsock_close(struct acceptor *a, struct lsock *ls)
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

static void pending_free(struct pending *p, bool close_fd)
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

/* Count and log a completed handshake. */
static void tls_done(struct pending *p)
{
    struct relay_stats *st = &p->a->relay->stats;
    struct tls_conn *t = xconn_tls(&p->c);
    const char *v = tls_conn_version(t);
    const char *sni = tls_conn_sni(t);
    bool v13 = strcmp(v, "TLSv1.3") == 0;

    STAT_ADD(st->tls_versions[v13], 1);
    if (tls_conn_resumed(t))
        STAT_ADD(st->tls_resumed, 1);
    log_debug("tls %s: %s %s sni=%s%s", p->peer, v, tls_conn_cipher(t), sni ? sni : "-",
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

/* Whatever phase the connection is in. 1 when p is gone, 0 when waiting. */
static int pending_step(struct pending *p)
{
    int r = p->tls_hs ? pending_handshake(p) : 2;

    return r == 2 ? pending_read(p) : r; /* bytes may wait in the session: read now */
}

static void pending_event(void *arg, uint32_t events)
{
    (void)pending_step(arg);
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

static void pending_new(struct acceptor *a, int fd, const struct sockaddr *sa,
                        const struct lsock *ls)
{
    struct relay *r = a->relay;
    bool admin = ls->admin, tls = (ls->flags & LISTEN_F_TLS) != 0;
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
    p = calloc(1, sizeof(*p));
    if (p)
        p->buf = malloc(HEAD_INITIAL);
    if (!p || !p->buf) {
        free(p);
        conn_close(r, &c, false);
        if (admin)
            admin_release(r);
        return;
    }
    p->a = a;
    p->c = c;
    p->admin = admin;
    p->tls_hs = tls;
    p->cap = HEAD_INITIAL;
    addr_format(sa, p->peer, sizeof(p->peer));
    authlimit_src_of(sa, &p->src);
    p->next = a->pend;
    if (a->pend)
        a->pend->prev = p;
    a->pend = p;
    timer_set(a->wheel, &p->timer, *a->now + (uint64_t)r->conf.header_timeout * 1000,
              pending_timeout);
    /* Most clients send their head right after the connect: try it before
     * paying for a watch, which only slow heads need. */
    if (pending_step(p) == 0 && ev_add(a->loop, fd, mask, pending_event, p, &p->tok) < 0) {
        pending_free(p, true);
        return;
    }
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

static void listen_event(void *arg, uint32_t events)
{
    struct lsock *ls = arg;

    accept_all(ls->a, ls);
}

/* ------------------------------------------------------------ signals */

static void acceptor_stop(struct acceptor *a)
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
        log_warn("reload: listen, workers and io changes take effect at restart");
    memcpy(c.listen, r->conf.listen, sizeof(c.listen));
    memcpy(c.listen_flags, r->conf.listen_flags, sizeof(c.listen_flags));
    c.nlisten = r->conf.nlisten;
    c.workers = r->conf.workers;
    c.io = r->conf.io;
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
        if (si.ssi_signo == SIGHUP) {
            if (!a->stopping)
                acceptor_reload(a);
        } else if (!a->stopping) {
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
        int t = a->host ? shard_wait_ms(a->host) : wheel_timeout(a->wheel, *a->now);
        int e;

        if (a->stopping && (t < 0 || t > STOP_WAIT_MS))
            t = STOP_WAIT_MS;
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
    secrets_wipe(a);
    tls_server_unref(a->tls);
    munmap(a->keys, a->keys_len);
    authlimit_free(a->authlim);
    free(a);
}
