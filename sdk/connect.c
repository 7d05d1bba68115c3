/* The client side of librapi: a WebRoute connect through one relay or a
 * chain of them, as a non-blocking state machine (rapi_connect_step) with a
 * blocking wrapper (rapi_connect). Given several alternatives, it tries
 * their relays' addresses (the candidates) once each in random order and
 * moves on after a failure another relay may not repeat (err_failover). A
 * connector belongs to one thread. */
#define RAPI_BUILDING 1
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/rnd.h"
#include "sdk/handshake.h"

#define CONNECT_DEFAULT_TIMEOUT_MS 75000 /* the relay gives up at 60 s */
#define CONNECT_DEFAULT_ATTEMPT_MS 10000 /* one relay, while another is left */

enum cn_state {
    CN_HOP,    /* the current hop's handshake runs (connect, request, 101) */
    CN_DONE,   /* tunnel open: the socket can be taken */
    CN_FAILED, /* err holds why */
};

/* One relay address to try: the first hop of alternative alt, at a. */
struct cn_cand {
    size_t alt;
    struct relay_addr a;
};

struct rapi_connector {
    struct hsm m; /* the handshake; its fd is the tunnel */
    enum cn_state st;
    char *alts[RAPI_RELAYS_MAX]; /* each a URL or chain, copied */
    size_t nalts;
    struct cn_cand *cands; /* in the order they are tried */
    size_t ncands, cur;    /* cands[cur] is being tried */
    const char *chain;     /* alts[cands[cur].alt] */
    size_t chain_len, pos;
    struct rapi_url hop;
    char key[URL_KEY_MAX];      /* for hops without their own key */
    struct rapi_connect_opts o; /* o.ca_file points at ca_copy */
    char *ca_copy;
    char id[WR_ID_LEN + 1];
    uint64_t deadline;     /* 0: none */
    uint64_t try_deadline; /* this candidate's, 0: none */
    const char *rest;
    size_t rest_len;
    struct rapi_error err;
    int rc; /* the failure's -errno once CN_FAILED */
};

static int cn_fail(struct rapi_connector *c, int rc)
{
    c->st = CN_FAILED;
    c->rc = rc;
    return rc;
}

static int cn_fail_code(struct rapi_connector *c, int code, const char *msg)
{
    err_set(&c->err, code, 0, "%s", msg);
    return cn_fail(c, err_errno(code, 0));
}

/* Parse the next chain element into c->hop when it is an rwr hop; otherwise
 * record it (and what follows) as the rest. Returns 1 for a hop, 0 for the
 * end of the rwr part, -errno on a bad hop. */
static int cn_next_hop(struct rapi_connector *c)
{
    const char *elem;
    size_t elen;

    if (!url_chain_next(c->chain, c->chain_len, &c->pos, &elem, &elen)) {
        c->rest = c->chain + c->chain_len;
        c->rest_len = 0;
        return 0;
    }
    if (!url_is_client(elem, elen)) {
        c->rest = elem;
        c->rest_len = (size_t)(c->chain + c->chain_len - elem);
        while (c->rest_len > 0 && c->rest[c->rest_len - 1] == ' ')
            c->rest_len--;
        return 0;
    }
    if (url_parse(elem, elen, &c->hop) < 0)
        return cn_fail_code(c, RAPI_E_URL, "malformed rwr:// URL in the chain");
    if (c->hop.tls && c->m.tls == NULL) {
        int rc = sdktls_new(c->o.ca_file, &c->m.tls, &c->err);
        if (rc < 0)
            return cn_fail(c, rc);
    }
    return 1;
}

/* The WebRoute request of the current hop, with a fresh WebRoute-ID: sent
 * on the open tunnel after the first hop. */
static int cn_prepare(struct rapi_connector *c)
{
    const char *key = c->hop.key[0] ? c->hop.key : c->key;
    int rc;

    if (key[0] == '\0')
        return cn_fail_code(c, RAPI_E_KEY, "no client key given");
    if (wire_new_id(c->id) < 0)
        return cn_fail_code(c, RAPI_E_SYSTEM, "no randomness for a WebRoute-ID");
    rc = hsm_wr_request(&c->m, &c->hop, key, c->id, c->o.webroute_timeout, &c->err);
    explicit_bzero(c->hop.key, sizeof(c->hop.key));
    return rc < 0 ? cn_fail(c, rc) : 0;
}

/* The first hop of alternative i, checked and resolved: its addresses are
 * added to the candidates. A bad URL fails the whole connect; a name that
 * does not resolve only leaves this alternative without candidates (its
 * error is kept for when no alternative has any). */
static int cn_add_alt(struct rapi_connector *c, size_t i, struct rapi_error *resolve_err)
{
    struct relay_addr a[RELAY_ADDRS_MAX];
    int rc, n, k;

    c->chain = c->alts[i];
    c->chain_len = strlen(c->chain);
    c->pos = 0;
    rc = cn_next_hop(c);
    if (rc == 0)
        return cn_fail_code(c, RAPI_E_URL, "not a client URL (rwr://[KEY@]host[:port]/path)");
    if (rc < 0)
        return rc;
    n = wire_resolve(&c->hop, a, RELAY_ADDRS_MAX, resolve_err);
    explicit_bzero(c->hop.key, sizeof(c->hop.key));
    for (k = 0; k < n; k++) {
        c->cands[c->ncands].alt = i;
        c->cands[c->ncands++].a = a[k];
    }
    return 0;
}

/* Fisher-Yates with kernel randomness: every client picks its own order,
 * so clients spread over the relays. */
static void cn_shuffle(struct rapi_connector *c)
{
    struct cn_cand t;
    uint32_t r;
    size_t i, j;

    for (i = c->ncands; i > 1; i--) {
        if (rnd_fill(&r, sizeof(r)) < 0)
            r = (uint32_t)anet_now_ns();
        j = r % i;
        t = c->cands[i - 1];
        c->cands[i - 1] = c->cands[j];
        c->cands[j] = t;
    }
}

static void cn_opts(struct rapi_connector *c, const char *key, const struct rapi_connect_opts *opts)
{
    if (opts)
        c->o = *opts;
    if (c->o.ca_file) /* a chain's later TLS hop needs it after start returns */
        c->o.ca_file = c->ca_copy = strdup(c->o.ca_file);
    if (c->o.timeout_ms == 0)
        c->o.timeout_ms = CONNECT_DEFAULT_TIMEOUT_MS;
    if (c->o.attempt_timeout_ms == 0)
        c->o.attempt_timeout_ms = CONNECT_DEFAULT_ATTEMPT_MS;
    if (c->o.timeout_ms > 0)
        c->deadline = anet_now_ms() + (uint64_t)c->o.timeout_ms;
    snprintf(c->key, sizeof(c->key), "%s", key ? key : "");
}

/* Copy, check and resolve every alternative into the candidates. */
static int cn_alts(struct rapi_connector *c, const char *const *urls, size_t n)
{
    struct rapi_error resolve_err;
    size_t i;
    int rc;

    if (urls == NULL || n == 0 || n > RAPI_RELAYS_MAX) {
        err_set(&c->err, RAPI_E_URL, 0, "from 1 to %d relay URLs", RAPI_RELAYS_MAX);
        return cn_fail(c, -EINVAL);
    }
    c->cands = calloc(n * RELAY_ADDRS_MAX, sizeof(*c->cands));
    if (c->cands == NULL)
        return cn_fail_code(c, RAPI_E_SYSTEM, "out of memory");
    for (i = 0; i < n; i++) {
        c->alts[i] = strdup(urls[i] ? urls[i] : "");
        if (c->alts[i] == NULL)
            return cn_fail_code(c, RAPI_E_SYSTEM, "out of memory");
        c->nalts++;
        if ((rc = cn_add_alt(c, i, &resolve_err)) < 0)
            return rc;
    }
    if (c->ncands == 0) {
        c->err = resolve_err;
        return cn_fail(c, -EHOSTUNREACH);
    }
    cn_shuffle(c);
    return 0;
}

/* Start the attempt on cands[cur]: the whole chain of its alternative,
 * the first hop to the candidate's address. */
static int cn_try(struct rapi_connector *c)
{
    const struct cn_cand *k = &c->cands[c->cur];
    uint64_t now = anet_now_ms();
    int rc;

    hsm_close(&c->m);
    c->chain = c->alts[k->alt];
    c->chain_len = strlen(c->chain);
    c->pos = 0;
    if ((rc = cn_next_hop(c)) <= 0) /* checked by cn_add_alt */
        return rc < 0 ? rc : cn_fail_code(c, RAPI_E_URL, "not a client URL");
    if ((rc = cn_prepare(c)) < 0)
        return rc;
    rc = hsm_connect_addr(&c->m, &c->hop, &k->a, &c->err);
    if (rc < 0)
        return cn_fail(c, rc);
    c->st = CN_HOP;
    c->try_deadline = 0;
    if (c->cur + 1 < c->ncands && c->o.attempt_timeout_ms > 0) {
        c->try_deadline = now + (uint64_t)c->o.attempt_timeout_ms;
        if (c->deadline && c->deadline < c->try_deadline)
            c->try_deadline = c->deadline;
    }
    return 0;
}

/* "N relays tried; last: " before the last failure's message (cut to fit). */
static void cn_tried_note(struct rapi_connector *c)
{
    char *msg = c->err.message;
    char pre[48];
    size_t n, len;
    int rc = snprintf(pre, sizeof(pre), "%zu relays tried; last: ", c->cur + 1);

    if (rc < 0 || (size_t)rc >= sizeof(pre))
        return;
    n = (size_t)rc;
    len = strnlen(msg, sizeof(c->err.message) - 1);
    if (len > sizeof(c->err.message) - 1 - n)
        len = sizeof(c->err.message) - 1 - n;
    memmove(msg + n, msg, len);
    memcpy(msg, pre, n);
    msg[n + len] = '\0';
}

/* After a failed attempt: the next candidate when the failure allows it
 * and time is left. 0 when an attempt runs again, else the failure. */
static int cn_failover(struct rapi_connector *c)
{
    while (c->st == CN_FAILED && c->cur + 1 < c->ncands && err_failover(&c->err) &&
           (c->deadline == 0 || anet_now_ms() < c->deadline)) {
        c->cur++;
        if (cn_try(c) == 0)
            return 0;
    }
    if (c->st == CN_FAILED && c->cur > 0)
        cn_tried_note(c);
    return c->st == CN_FAILED ? c->rc : 0;
}

static int cn_init(struct rapi_connector *c, const char *const *urls, size_t n, const char *key,
                   const struct rapi_connect_opts *opts, struct sdktls *tls)
{
    int rc;

    hsm_init(&c->m);
    c->m.tls = tls ? sdktls_ref(tls) : NULL;
    cn_opts(c, key, opts);
    if ((rc = cn_alts(c, urls, n)) < 0)
        return rc;
    if (cn_try(c) < 0)
        return cn_failover(c);
    return 0;
}

/* rapi_connect_start_multi with a TLS context to share (NULL: the
 * connector makes its own when a hop needs one). */
static int cn_start(struct rapi_connector **out, const char *const *urls, size_t nurls,
                    const char *key, const struct rapi_connect_opts *opts, struct sdktls *tls,
                    struct rapi_error *err)
{
    struct rapi_connector *c = calloc(1, sizeof(*c));
    int rc;

    *out = NULL;
    if (c == NULL) {
        err_set(err, RAPI_E_SYSTEM, ENOMEM, "out of memory");
        return -ENOMEM;
    }
    rc = cn_init(c, urls, nurls, key, opts, tls);
    if (rc < 0) {
        if (err)
            *err = c->err;
        rapi_connector_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

RAPI_API int rapi_connect_start_multi(struct rapi_connector **out, const char *const *urls,
                                      size_t nurls, const char *key,
                                      const struct rapi_connect_opts *opts, struct rapi_error *err)
{
    return cn_start(out, urls, nurls, key, opts, NULL, err);
}

RAPI_API int rapi_connect_start(struct rapi_connector **out, const char *url, const char *key,
                                const struct rapi_connect_opts *opts, struct rapi_error *err)
{
    return rapi_connect_start_multi(out, &url, 1, key, opts, err);
}

RAPI_API int rapi_connector_fd(const struct rapi_connector *c)
{
    return c->m.fd;
}

RAPI_API int rapi_connector_events(const struct rapi_connector *c)
{
    return hsm_events(&c->m);
}

RAPI_API int rapi_connector_timeout(const struct rapi_connector *c)
{
    uint64_t now = anet_now_ms(), end = c->deadline;

    if (c->try_deadline && (end == 0 || c->try_deadline < end))
        end = c->try_deadline;
    if (end == 0)
        return -1;
    return now >= end ? 0 : (int)(end - now);
}

/* The current hop answered a valid 101: go on with the next hop inside the
 * tunnel, or finish. */
static int cn_hop_done(struct rapi_connector *c)
{
    int rc = cn_next_hop(c);

    if (rc < 0)
        return rc;
    if (rc == 0) {
        c->st = CN_DONE;
        return 0;
    }
    if ((rc = cn_prepare(c)) < 0)
        return rc;
    return 1; /* go on at once with the next hop */
}

static int cn_run(struct rapi_connector *c)
{
    int rc;

    switch (c->st) {
    case CN_HOP:
        rc = hsm_step(&c->m, &c->err);
        if (rc == -EAGAIN)
            return rc;
        if (rc < 0)
            return cn_fail(c, rc);
        return cn_hop_done(c);
    case CN_DONE:
        return 0;
    case CN_FAILED:
        return c->rc;
    }
    return -EINVAL;
}

/* Our deadlines: the whole connect's, then this attempt's (which only
 * ends this candidate: cn_failover may go on with the next). */
static void cn_check_time(struct rapi_connector *c)
{
    uint64_t now = anet_now_ms();

    if (c->st == CN_DONE || c->st == CN_FAILED)
        return;
    if (c->deadline && now >= c->deadline) {
        cn_fail_code(c, RAPI_E_TIMEOUT, "connect timed out");
    } else if (c->try_deadline && now >= c->try_deadline) {
        err_set(&c->err, RAPI_E_TIMEOUT, 0, "no answer from %s within %d ms", c->m.where,
                c->o.attempt_timeout_ms);
        cn_fail(c, -ETIMEDOUT);
    }
}

RAPI_API int rapi_connect_step(struct rapi_connector *c, struct rapi_error *err)
{
    int rc;

    do {
        cn_check_time(c);
        rc = cn_run(c);
        if (rc < 0 && rc != -EAGAIN && cn_failover(c) == 0)
            rc = 1; /* the next relay's attempt runs */
    } while (rc == 1);
    if (rc < 0 && rc != -EAGAIN && err)
        *err = c->err;
    if (rc == 0 && err)
        err_set(err, RAPI_E_NONE, 0, "ok");
    return rc;
}

static int cn_take_rest(struct rapi_connector *c, char *rest, size_t rest_cap)
{
    if (c->st != CN_DONE || c->m.fd < 0)
        return -EINVAL;
    if (rest != NULL && rest_cap > 0) {
        if (c->rest_len >= rest_cap)
            return -ENOSPC;
        memcpy(rest, c->rest, c->rest_len);
        rest[c->rest_len] = '\0';
    }
    return 0;
}

RAPI_API int rapi_connector_take(struct rapi_connector *c, char *rest, size_t rest_cap)
{
    int rc = cn_take_rest(c, rest, rest_cap), fd;

    if (rc < 0)
        return rc;
    fd = hsm_take(&c->m, &c->err); /* over TLS: a pump's socketpair end */
    if (fd < 0)
        return fd;
    rc = anet_set_nonblock(fd, false); /* the user's socket blocks */
    if (rc < 0)
        close(fd);
    return rc < 0 ? rc : fd;
}

int cn_take_raw(struct rapi_connector *c, char *rest, size_t rest_cap, struct tls_conn **tc)
{
    int rc = cn_take_rest(c, rest, rest_cap);

    return rc < 0 ? rc : hsm_take_raw(&c->m, tc);
}

RAPI_API void rapi_connector_free(struct rapi_connector *c)
{
    size_t i;

    if (c == NULL)
        return;
    hsm_clear(&c->m);
    sdktls_unref(c->m.tls);
    free(c->ca_copy);
    for (i = 0; i < c->nalts; i++) {
        explicit_bzero(c->alts[i], strlen(c->alts[i]));
        free(c->alts[i]);
    }
    free(c->cands);
    explicit_bzero(c->key, sizeof(c->key));
    free(c);
}

int cn_connect_raw(const char *const *urls, size_t nurls, const char *key,
                   const struct rapi_connect_opts *opts, char *rest, size_t rest_cap,
                   struct rapi_error *err, struct tls_conn **tc, struct sdktls *tls)
{
    struct rapi_connector *c;
    struct pollfd p;
    int rc;

    rc = cn_start(&c, urls, nurls, key, opts, tls, err);
    if (rc < 0)
        return rc;
    while ((rc = rapi_connect_step(c, err)) == -EAGAIN) {
        p.fd = rapi_connector_fd(c);
        p.events = (short)rapi_connector_events(c);
        if (poll(&p, 1, rapi_connector_timeout(c)) == -1 && errno != EINTR) {
            rc = -errno;
            err_set(err, RAPI_E_SYSTEM, errno, "poll: %s", strerror(errno));
            break;
        }
    }
    if (rc == 0) {
        err_set(&c->err, RAPI_E_NONE, 0, "ok");
        rc = tc ? cn_take_raw(c, rest, rest_cap, tc) : rapi_connector_take(c, rest, rest_cap);
        if (rc == -ENOSPC)
            err_set(err, RAPI_E_SYSTEM, ENOSPC, "rest of the chain does not fit");
        else if (rc < 0 && err)
            *err = c->err; /* the pump could not start */
    }
    rapi_connector_free(c);
    return rc;
}

RAPI_API int rapi_connect_multi(const char *const *urls, size_t nurls, const char *key,
                                const struct rapi_connect_opts *opts, char *rest, size_t rest_cap,
                                struct rapi_error *err)
{
    return cn_connect_raw(urls, nurls, key, opts, rest, rest_cap, err, NULL, NULL);
}

RAPI_API int rapi_connect(const char *url, const char *key, const struct rapi_connect_opts *opts,
                          char *rest, size_t rest_cap, struct rapi_error *err)
{
    return rapi_connect_multi(&url, 1, key, opts, rest, rest_cap, err);
}
