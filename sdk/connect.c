/* The client side of librapi: a WebRoute connect through one relay or a
 * chain of them, as a non-blocking state machine (rapi_connect_step) with a
 * blocking wrapper (rapi_connect). A connector belongs to one thread. */
#define RAPI_BUILDING 1
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sdk/handshake.h"

#define CONNECT_DEFAULT_TIMEOUT_MS 75000 /* the relay gives up at 60 s */

enum cn_state {
    CN_HOP,    /* the current hop's handshake runs (connect, request, 101) */
    CN_DONE,   /* tunnel open: the socket can be taken */
    CN_FAILED, /* err holds why */
};

struct rapi_connector {
    struct hsm m; /* the handshake; its fd is the tunnel */
    enum cn_state st;
    char *chain;
    size_t chain_len, pos;
    struct rapi_url hop;
    char key[URL_KEY_MAX]; /* for hops without their own key */
    struct rapi_connect_opts o;
    char id[WR_ID_LEN + 1];
    uint64_t deadline; /* 0: none */
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
    if (c->hop.tls)
        return cn_fail_code(c, RAPI_E_UNSUPPORTED, "rwrs:// (TLS) is not supported by this build");
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

static int cn_init(struct rapi_connector *c, const char *url, const char *key,
                   const struct rapi_connect_opts *opts)
{
    int rc;

    hsm_init(&c->m);
    if (opts)
        c->o = *opts;
    if (c->o.timeout_ms == 0)
        c->o.timeout_ms = CONNECT_DEFAULT_TIMEOUT_MS;
    if (c->o.timeout_ms > 0)
        c->deadline = anet_now_ms() + (uint64_t)c->o.timeout_ms;
    snprintf(c->key, sizeof(c->key), "%s", key ? key : "");
    c->chain = strdup(url ? url : "");
    if (c->chain == NULL)
        return cn_fail_code(c, RAPI_E_SYSTEM, "out of memory");
    c->chain_len = strlen(c->chain);
    rc = cn_next_hop(c);
    if (rc == 0)
        return cn_fail_code(c, RAPI_E_URL, "not a client URL (rwr://[KEY@]host[:port]/path)");
    if (rc < 0 || (rc = cn_prepare(c)) < 0)
        return rc;
    rc = hsm_connect(&c->m, &c->hop, &c->err);
    if (rc < 0)
        return cn_fail(c, rc);
    c->st = CN_HOP;
    return 0;
}

RAPI_API int rapi_connect_start(struct rapi_connector **out, const char *url, const char *key,
                                const struct rapi_connect_opts *opts, struct rapi_error *err)
{
    struct rapi_connector *c = calloc(1, sizeof(*c));
    int rc;

    *out = NULL;
    if (c == NULL) {
        err_set(err, RAPI_E_SYSTEM, ENOMEM, "out of memory");
        return -ENOMEM;
    }
    rc = cn_init(c, url, key, opts);
    if (rc < 0) {
        if (err)
            *err = c->err;
        rapi_connector_free(c);
        return rc;
    }
    *out = c;
    return 0;
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
    uint64_t now = anet_now_ms();

    if (c->deadline == 0)
        return -1;
    return now >= c->deadline ? 0 : (int)(c->deadline - now);
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

RAPI_API int rapi_connect_step(struct rapi_connector *c, struct rapi_error *err)
{
    int rc;

    do {
        if (c->st != CN_DONE && c->st != CN_FAILED && c->deadline && anet_now_ms() >= c->deadline)
            cn_fail_code(c, RAPI_E_TIMEOUT, "connect timed out");
        rc = cn_run(c);
    } while (rc == 1);
    if (rc < 0 && rc != -EAGAIN && err)
        *err = c->err;
    if (rc == 0 && err)
        err_set(err, RAPI_E_NONE, 0, "ok");
    return rc;
}

RAPI_API int rapi_connector_take(struct rapi_connector *c, char *rest, size_t rest_cap)
{
    int rc;

    if (c->st != CN_DONE || c->m.fd < 0)
        return -EINVAL;
    if (rest != NULL && rest_cap > 0) {
        if (c->rest_len >= rest_cap)
            return -ENOSPC;
        memcpy(rest, c->rest, c->rest_len);
        rest[c->rest_len] = '\0';
    }
    rc = anet_set_nonblock(c->m.fd, false); /* the user's socket blocks */
    return rc < 0 ? rc : hsm_take(&c->m);
}

RAPI_API void rapi_connector_free(struct rapi_connector *c)
{
    if (c == NULL)
        return;
    hsm_clear(&c->m);
    if (c->chain) {
        explicit_bzero(c->chain, c->chain_len);
        free(c->chain);
    }
    explicit_bzero(c->key, sizeof(c->key));
    free(c);
}

RAPI_API int rapi_connect(const char *url, const char *key, const struct rapi_connect_opts *opts,
                          char *rest, size_t rest_cap, struct rapi_error *err)
{
    struct rapi_connector *c;
    struct pollfd p;
    int rc;

    rc = rapi_connect_start(&c, url, key, opts, err);
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
        rc = rapi_connector_take(c, rest, rest_cap);
        if (rc < 0)
            err_set(err, RAPI_E_SYSTEM, -rc, "rest of the chain does not fit");
    }
    rapi_connector_free(c);
    return rc;
}
