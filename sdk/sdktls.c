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
#include <sys/stat.h>
#include <unistd.h>
#include <fcntl.h>

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

void sdktls_keep(struct sdktls *t, struct tls_conn *c, const char *host, unsigned port)
{
    struct tls_session *s = tls_conn_session(c);
    char key[SESS_KEY_MAX];

    if (s == NULL)
        return;
    sess_key(key, host, port);
    sess_store(t, key, s);
}

/* ------------------------------------------------------------ pump */

/* One direction's buffer: bytes [off, len) wait to be written. */
struct pbuf {
    unsigned char *p;
    size_t len, off;
};

struct pump {
    struct tls_conn *c;
    int net, app_rd, app_wr; /* the relay's socket (TLS); the application side */
    bool app_sock;           /* app_wr is a socket: send(MSG_NOSIGNAL), shutdown */
    struct pbuf down, up;    /* relay -> app, app -> relay */
    bool net_eof, app_eof;   /* read side ended */
    bool net_shut, app_shut; /* write side ended (FIN / close_notify sent) */
    unsigned rd_want, wr_want;
    short rd_ev, wr_ev; /* poll events wanted on app_rd / app_wr */
    struct sdktls_stats *st;
};

static ssize_t app_write(struct pump *p, const void *b, size_t n)
{
    return p->app_sock ? send(p->app_wr, b, n, MSG_NOSIGNAL | MSG_DONTWAIT)
                       : write(p->app_wr, b, n);
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
        p->net_eof = n == 0;
        b->len = (size_t)n;
        b->off = 0;
        return 1;
    }
    if (b->off < b->len) {
        n = app_write(p, b->p + b->off, b->len - b->off);
        if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
            p->wr_ev = POLLOUT;
            return 0;
        }
        if (n == -1)
            return -errno;
        b->off += (size_t)n;
        p->st->down += (uint64_t)n;
        return 1;
    }
    if (p->net_eof && !p->app_shut) {
        p->app_shut = true;
        if (p->app_sock)
            (void)shutdown(p->app_wr, SHUT_WR);
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
        n = read(p->app_rd, b->p, SDKTLS_BUF);
        if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
            p->rd_ev = POLLIN;
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
        p->st->up += (uint64_t)n;
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
    struct pollfd f[3] = {{.fd = p->app_rd, .events = p->rd_ev},
                          {.fd = p->app_wr, .events = p->wr_ev},
                          {.fd = p->net}};

    if (p->rd_want)
        f[2].events |= (p->rd_want & TLS_WANT_OUT) ? POLLOUT : POLLIN;
    if (p->wr_want)
        f[2].events |= (p->wr_want & TLS_WANT_IN) ? POLLIN : POLLOUT;
    for (size_t i = 0; i < 3; i++)
        if (f[i].events == 0)
            f[i].fd = -1;
    if (poll(f, 3, -1) == -1 && errno != EINTR)
        return -errno;
    return 0;
}

static bool pump_done(const struct pump *p, bool stop_on_relay_eof)
{
    if (stop_on_relay_eof && p->app_shut)
        return true;
    return p->net_shut && p->app_shut;
}

static int pump_loop(struct pump *p, bool stop_on_relay_eof)
{
    int d, u, rc = 0;

    while (!pump_done(p, stop_on_relay_eof)) {
        p->rd_want = p->wr_want = 0;
        p->rd_ev = p->wr_ev = 0;
        d = pump_down(p);
        u = pump_up(p);
        if (d < 0 || u < 0) {
            rc = d < 0 ? d : u;
            break;
        }
        if (d == 0 && u == 0 && (rc = pump_wait(p)) < 0)
            break;
    }
    if (rc < 0) { /* abortive on both sides: no FIN may read as a clean end */
        p->st->reset = true;
        (void)anet_linger_zero(p->net);
        if (p->app_sock)
            (void)anet_linger_zero(p->app_wr);
    }
    return rc;
}

static bool fd_is_sock(int fd)
{
    struct stat st;

    return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

static int set_flags(int fd, int *old)
{
    int fl = fcntl(fd, F_GETFL);

    if (fl == -1)
        return -errno;
    *old = fl;
    return fcntl(fd, F_SETFL, fl | O_NONBLOCK) == -1 ? -errno : 0;
}

int sdktls_pump_run(struct tls_conn *c, int app_rd, int app_wr, bool stop_on_relay_eof,
                    struct sdktls_stats *st)
{
    struct pump p = {.c = c, .net = tls_conn_fd(c), .app_rd = app_rd, .app_wr = app_wr, .st = st};
    int rc = -ENOMEM, fl_rd = -1, fl_wr = -1, fl_net = -1;

    p.app_sock = fd_is_sock(app_wr);
    if ((p.down.p = malloc(SDKTLS_BUF)) == NULL || (p.up.p = malloc(SDKTLS_BUF)) == NULL)
        goto out;
    if ((rc = set_flags(app_rd, &fl_rd)) < 0 || (rc = set_flags(app_wr, &fl_wr)) < 0 ||
        (rc = set_flags(p.net, &fl_net)) < 0)
        goto out;
    rc = pump_loop(&p, stop_on_relay_eof);
out:
    if (fl_rd != -1)
        (void)fcntl(app_rd, F_SETFL, fl_rd); /* stdin/stdout are shared with others */
    if (fl_wr != -1)
        (void)fcntl(app_wr, F_SETFL, fl_wr);
    free(p.down.p);
    free(p.up.p);
    return rc;
}

/* The pump thread's: the connection, its fd and our socketpair end. */
struct pump_job {
    struct tls_conn *c;
    int app;
};

static void *pump_main(void *arg)
{
    struct pump_job *j = arg;
    struct sdktls_stats st = {0};

    (void)sdktls_pump_run(j->c, j->app, j->app, false, &st);
    close(tls_conn_fd(j->c));
    tls_conn_free(j->c);
    close(j->app);
    free(j);
    return NULL;
}

/* A detached thread with no signal and a small stack, running fn(arg);
 * 0 or -errno. */
static int pump_thread(void *(*fn)(void *), void *arg)
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
    rc = pthread_create(&th, &a, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&a);
    return rc == 0 ? 0 : -rc;
}

int sdktls_pump(struct tls_conn *c, struct rapi_error *err)
{
    struct pump_job *j = calloc(1, sizeof(*j));
    int sv[2] = {-1, -1}, rc = -ENOMEM;

    if (j == NULL)
        goto fail;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) == -1) {
        rc = -errno;
        goto fail;
    }
    j->c = c;
    j->app = sv[1];
    if ((rc = pump_thread(pump_main, j)) != 0)
        goto fail;
    /* j belongs to the detached thread now (the analyzer cannot see
     * pthread_create pass it on) */
    return sv[0]; // NOLINT(clang-analyzer-unix.Malloc)
fail:
    err_set(err, RAPI_E_SYSTEM, -rc, "TLS pump: %s", strerror(-rc));
    if (sv[0] >= 0) {
        close(sv[0]);
        close(sv[1]);
    }
    free(j);
    return rc;
}
