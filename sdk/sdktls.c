/* TLS for librapi (sdktls.h): the client context with its session cache,
 * and the pump thread that carries a TLS connection's bytes to and from a
 * socketpair, so that rapi_accept/rapi_connect keep handing out a plain
 * descriptor. Half-closes cross the pump both ways (our shutdown(SHUT_WR)
 * becomes close_notify + FIN; the relay's becomes EOF on the descriptor);
 * an error on either side ends both at once (the relay side with a reset). */
#define RAPI_BUILDING 1
#include "sdk/sdktls.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/anet.h"
#include "proto/url.h"
#include "sdk/sdk_int.h"

#define SESS_KEY_MAX (URL_HOST_MAX + 8) /* "host:port" */

struct sess_slot {
    char key[SESS_KEY_MAX]; /* "" when free */
    struct tls_session *s;
    uint64_t used; /* anet_now_ms() of the last store, for eviction */
};

struct sdktls {
    atomic_int refs;
    struct tls_client *cl;
    pthread_mutex_t mu; /* guards sess */
    struct sess_slot sess[SDKTLS_SESSIONS];
};

static void sess_key(char out[SESS_KEY_MAX], const char *host, unsigned port)
{
    snprintf(out, SESS_KEY_MAX, "%s:%u", host, port);
}

int sdktls_new(const char *ca_file, struct sdktls **out, struct rapi_error *err)
{
    struct tls_client_conf conf = {.accel = true};
    char msg[TLS_ERR_MAX];
    struct sdktls *t;
    int rc;

    *out = NULL;
    if (ca_file == NULL || *ca_file == '\0')
        ca_file = getenv(SDKTLS_CA_ENV);
    conf.ca_file = ca_file && *ca_file ? ca_file : NULL;
    if ((t = calloc(1, sizeof(*t))) == NULL) {
        err_set(err, RAPI_E_SYSTEM, ENOMEM, "out of memory");
        return -ENOMEM;
    }
    rc = tls_client_new(&conf, &t->cl, msg, sizeof(msg));
    if (rc < 0) {
        err_set(err, RAPI_E_TLS, -rc, "TLS client setup: %s", msg);
        free(t);
        return rc;
    }
    atomic_init(&t->refs, 1);
    pthread_mutex_init(&t->mu, NULL);
    *out = t;
    return 0;
}

struct sdktls *sdktls_ref(struct sdktls *t)
{
    atomic_fetch_add(&t->refs, 1);
    return t;
}

void sdktls_unref(struct sdktls *t)
{
    size_t i;

    if (t == NULL || atomic_fetch_sub(&t->refs, 1) != 1)
        return;
    for (i = 0; i < SDKTLS_SESSIONS; i++)
        tls_session_free(t->sess[i].s);
    pthread_mutex_destroy(&t->mu);
    tls_client_unref(t->cl);
    free(t);
}

/* Keep s (taken over) as host:port's session: its slot, else a free or the
 * oldest one. */
static void sess_store(struct sdktls *t, const char *key, struct tls_session *s)
{
    struct sess_slot *slot = &t->sess[0];
    size_t i;

    pthread_mutex_lock(&t->mu);
    for (i = 0; i < SDKTLS_SESSIONS; i++) {
        if (strcmp(t->sess[i].key, key) == 0) {
            slot = &t->sess[i];
            break;
        }
        if (t->sess[i].used < slot->used)
            slot = &t->sess[i];
    }
    tls_session_free(slot->s);
    snprintf(slot->key, sizeof(slot->key), "%s", key);
    slot->s = s;
    slot->used = anet_now_ms();
    pthread_mutex_unlock(&t->mu);
}

int sdktls_conn(struct sdktls *t, int fd, const char *host, unsigned port, struct tls_conn **out)
{
    char key[SESS_KEY_MAX];
    size_t i;
    int rc = tls_conn_client(t->cl, fd, host, out);

    if (rc < 0)
        return rc;
    sess_key(key, host, port);
    pthread_mutex_lock(&t->mu);
    for (i = 0; i < SDKTLS_SESSIONS; i++)
        if (t->sess[i].s != NULL && strcmp(t->sess[i].key, key) == 0)
            (void)tls_conn_resume(*out, t->sess[i].s); /* a stale one: full handshake */
    pthread_mutex_unlock(&t->mu);
    return 0;
}

int sdktls_fail(struct tls_conn *c, int rc, const char *where, struct rapi_error *err)
{
    if (rc == -EPROTO) {
        err_set(err, RAPI_E_TLS, 0, "TLS with %s: %s [%s]", where, tls_conn_reason(c),
                tls_err_name(tls_conn_err(c)));
        return rc;
    }
    err_set(err, RAPI_E_CLOSED, -rc, "TLS handshake with %s: %s", where, strerror(-rc));
    return rc;
}

/* ------------------------------------------------------------ pump */

/* One direction's buffer: bytes [off, len) wait to be written. */
struct pbuf {
    unsigned char *p;
    size_t len, off;
};

struct pump {
    struct sdktls *t;
    struct tls_conn *c;
    int net, app;          /* the relay's socket (TLS), our socketpair end */
    struct pbuf down, up;  /* relay -> app, app -> relay */
    bool net_eof, app_eof; /* read side ended */
    bool net_shut, app_shut;
    bool kept; /* session stored */
    unsigned rd_want, wr_want;
    short app_ev;
    char key[SESS_KEY_MAX];
};

static void pump_free(struct pump *p, bool reset)
{
    if (reset)
        (void)anet_linger_zero(p->net);
    tls_conn_free(p->c);
    close(p->net);
    close(p->app);
    sdktls_unref(p->t);
    free(p->down.p);
    free(p->up.p);
    free(p);
}

static void pump_keep_session(struct pump *p)
{
    struct tls_session *s;

    p->kept = true;
    if ((s = tls_conn_session(p->c)) != NULL)
        sess_store(p->t, p->key, s);
}

/* Relay -> app. 1 progress, 0 none (waits set), -errno: give up. */
static int pump_down(struct pump *p)
{
    struct pbuf *b = &p->down;
    ssize_t n;

    if (b->off == b->len && !p->net_eof) {
        n = tls_conn_read(p->c, b->p, SDKTLS_BUF, &p->rd_want);
        if (n == -EAGAIN)
            return 0;
        if (n < 0)
            return (int)n;
        if (n == 0)
            p->net_eof = true;
        b->len = (size_t)n;
        b->off = 0;
        if (n > 0 && !p->kept)
            pump_keep_session(p);
        return 1;
    }
    if (b->off < b->len) {
        n = send(p->app, b->p + b->off, b->len - b->off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
            p->app_ev |= POLLOUT;
            return 0;
        }
        if (n == -1)
            return -errno;
        b->off += (size_t)n;
        return 1;
    }
    if (p->net_eof && !p->app_shut) {
        p->app_shut = true;
        (void)shutdown(p->app, SHUT_WR);
        return 1;
    }
    return 0;
}

/* App -> relay, the same contract. */
static int pump_up(struct pump *p)
{
    struct pbuf *b = &p->up;
    ssize_t n;
    int rc;

    if (b->off == b->len && !p->app_eof) {
        n = recv(p->app, b->p, SDKTLS_BUF, MSG_DONTWAIT);
        if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
            p->app_ev |= POLLIN;
            return 0;
        }
        if (n == -1)
            return -errno;
        p->app_eof = n == 0;
        b->len = (size_t)n;
        b->off = 0;
        return 1;
    }
    if (b->off < b->len) {
        n = tls_conn_write(p->c, b->p + b->off, b->len - b->off, &p->wr_want);
        if (n == -EAGAIN)
            return 0;
        if (n < 0)
            return (int)n;
        b->off += (size_t)n;
        return 1;
    }
    if (p->app_eof && !p->net_shut) {
        rc = tls_conn_shutdown(p->c, &p->wr_want);
        if (rc == -EAGAIN)
            return 0;
        if (rc == 0)
            (void)shutdown(p->net, SHUT_WR);
        p->net_shut = true;
        return 1;
    }
    return 0;
}

/* Wait for what the last round could not do. */
static int pump_wait(struct pump *p)
{
    struct pollfd f[2] = {{.fd = p->app, .events = p->app_ev}, {.fd = p->net}};

    if (p->rd_want)
        f[1].events |= (p->rd_want & TLS_WANT_OUT) ? POLLOUT : POLLIN;
    if (p->wr_want)
        f[1].events |= (p->wr_want & TLS_WANT_IN) ? POLLIN : POLLOUT;
    if (f[1].events == 0)
        f[1].fd = -1;
    if (f[0].events == 0)
        f[0].fd = -1;
    if (poll(f, 2, -1) == -1 && errno != EINTR)
        return -errno;
    return 0;
}

static void *pump_main(void *arg)
{
    struct pump *p = arg;
    int d, u, rc = 0;

    while (!(p->net_shut && p->app_shut)) {
        p->rd_want = p->wr_want = 0;
        p->app_ev = 0;
        d = pump_down(p);
        u = pump_up(p);
        if (d < 0 || u < 0) {
            rc = d < 0 ? d : u;
            break;
        }
        if (d == 0 && u == 0 && (rc = pump_wait(p)) < 0)
            break;
    }
    pump_free(p, rc < 0);
    return NULL;
}

static int pump_start(struct pump *p)
{
    sigset_t all, old;
    pthread_attr_t a;
    pthread_t th;
    int rc;

    if ((rc = pthread_attr_init(&a)) != 0)
        return -rc;
    (void)pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    (void)pthread_attr_setstacksize(&a, SDKTLS_STACK);
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* the pump takes no signal */
    rc = pthread_create(&th, &a, pump_main, p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&a);
    return -rc;
}

int sdktls_pump(struct sdktls *t, struct tls_conn *c, const char *host, unsigned port,
                struct rapi_error *err)
{
    struct pump *p = calloc(1, sizeof(*p));
    int sv[2] = {-1, -1}, rc = -ENOMEM;

    if (p == NULL || (p->down.p = malloc(SDKTLS_BUF)) == NULL ||
        (p->up.p = malloc(SDKTLS_BUF)) == NULL)
        goto fail;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) == -1) {
        rc = -errno;
        goto fail;
    }
    p->c = c;
    p->net = tls_conn_fd(c);
    p->app = sv[1];
    sess_key(p->key, host, port);
    p->t = sdktls_ref(t);
    if ((rc = pump_start(p)) < 0) {
        sdktls_unref(t);
        goto fail;
    }
    return sv[0];
fail:
    err_set(err, RAPI_E_SYSTEM, -rc, "TLS pump: %s", strerror(-rc));
    if (sv[0] >= 0) {
        close(sv[0]);
        close(sv[1]);
    }
    if (p) {
        free(p->down.p);
        free(p->up.p);
    }
    free(p);
    return rc;
}
