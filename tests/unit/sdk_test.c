/* librapi's public API without a relay: URL and chain use, keys, errors,
 * handshake validation against an in-process fake relay (a thread on
 * 127.0.0.1 that answers WebRoute requests as told). */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proto/http1.h"
#include "proto/webroute.h"
#include "net/anet.h"
#include "sdk/rapi.h"

enum fake_mode {
    FAKE_OK,
    FAKE_BAD_ACCEPT,
    FAKE_502,
    FAKE_SILENT,
    FAKE_503,
    FAKE_403,
    FAKE_CLOSED, /* no fake: a port nobody listens on (fleet_start only) */
};

struct fake {
    int lfd;
    unsigned port;
    enum fake_mode mode;
    int hops;
    const char *trailer; /* sent right after the last 101, same write */
    char heads[4][1024];
    int nheads;
    pthread_t t;
};

static int read_head(int fd, char *buf, size_t cap)
{
    size_t n = 0;

    while (n + 1 < cap) {
        if (read(fd, buf + n, 1) != 1)
            return -1;
        n++;
        buf[n] = '\0';
        if (n >= 4 && memcmp(buf + n - 4, "\r\n\r\n", 4) == 0)
            return (int)n;
    }
    return -1;
}

static void answer(struct fake *f, int fd, const char *head, int last)
{
    struct http1_header hdr[HTTP1_MAX_HEADERS];
    struct http1_request req;
    const struct http1_header *id;
    char acc[WEBROUTE_ACCEPT_LEN + 1], out[1024], idbuf[300];
    int n;

    if (f->mode == FAKE_502 || f->mode == FAKE_503 || f->mode == FAKE_403) {
        n = f->mode == FAKE_502
                ? wr_build_error3(out, sizeof(out), 502, "missing_destination", "No listener")
            : f->mode == FAKE_503
                ? wr_build_error3(out, sizeof(out), 503, "unavailable", "Draining")
                : wr_build_error3(out, sizeof(out), 403, "invalid_missing_apikey", "Bad key");
        (void)!write(fd, out, (size_t)n);
        return;
    }
    http1_parse_request(head, strlen(head), 0, &req, hdr, HTTP1_MAX_HEADERS);
    id = http1_find(hdr, req.num_headers, "WebRoute-ID");
    snprintf(idbuf, sizeof(idbuf), "%.*s", id ? (int)id->value_len : 0, id ? id->value : "");
    wr_accept(idbuf, strlen(idbuf), acc);
    if (f->mode == FAKE_BAD_ACCEPT)
        acc[0] = acc[0] == 'A' ? 'B' : 'A';
    n = wr_build_wr_101(out, sizeof(out), acc);
    if (last && f->trailer)
        n += snprintf(out + n, sizeof(out) - (size_t)n, "%s", f->trailer);
    (void)!write(fd, out, (size_t)n);
}

static void *fake_run(void *arg)
{
    struct fake *f = arg;
    char junk[256];
    int fd = accept(f->lfd, NULL, NULL), i;

    if (fd < 0)
        return NULL;
    for (i = 0; i < f->hops && i < 4; i++) {
        if (read_head(fd, f->heads[i], sizeof(f->heads[i])) < 0)
            break;
        f->nheads++;
        if (f->mode == FAKE_SILENT)
            continue;
        answer(f, fd, f->heads[i], i == f->hops - 1);
        if (f->mode != FAKE_OK)
            break;
    }
    while (read(fd, junk, sizeof(junk)) > 0)
        ;
    close(fd);
    return NULL;
}

static void fake_start(struct fake *f, enum fake_mode mode, int hops, const char *trailer)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);

    memset(f, 0, sizeof(*f));
    f->mode = mode;
    f->hops = hops;
    f->trailer = trailer;
    f->lfd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(f->lfd >= 0);
    cr_assert(bind(f->lfd, (struct sockaddr *)&a, sizeof(a)) == 0);
    cr_assert(listen(f->lfd, 4) == 0);
    getsockname(f->lfd, (struct sockaddr *)&a, &al);
    f->port = ntohs(a.sin_port);
    cr_assert(pthread_create(&f->t, NULL, fake_run, f) == 0);
}

static void fake_join(struct fake *f)
{
    pthread_join(f->t, NULL);
    close(f->lfd);
}

/* For a fake that may never have been contacted: a connection that sends
 * nothing ends its wait for one (a fake already done ignores it). */
static void fake_stop(struct fake *f)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                            .sin_port = htons((uint16_t)f->port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    cr_assert_geq(fd, 0);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    close(fd);
    fake_join(f);
}

/* A loopback port with nothing listening. */
static unsigned closed_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    cr_assert_geq(fd, 0);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    getsockname(fd, (struct sockaddr *)&a, &al);
    close(fd);
    return ntohs(a.sin_port);
}

static const struct rapi_connect_opts quick = {.timeout_ms = 5000};

Test(sdk_connect, chain_hops_inside_the_tunnel_and_rest_returned)
{
    struct fake f;
    struct rapi_error e;
    char url[256], rest[64], buf[16] = {0};
    int fd;

    fake_start(&f, FAKE_OK, 2, "hello");
    snprintf(url, sizeof(url),
             "rwr://KEY1@127.0.0.1:%u/a  rwr://KEY2@[::1]:81/b?x=1 tcp://final:1 more ", f.port);
    fd = rapi_connect(url, NULL, &quick, rest, sizeof(rest), &e);
    cr_assert_geq(fd, 0, "connect failed: %s", e.message);
    cr_expect_eq(e.code, RAPI_E_NONE);
    cr_expect_str_eq(rest, "tcp://final:1 more");
    /* Bytes after the last 101 belong to the tunnel: none was eaten. */
    cr_expect_eq(read(fd, buf, 5), 5);
    cr_expect_str_eq(buf, "hello");
    cr_expect_eq(fcntl(fd, F_GETFL) & O_NONBLOCK, 0, "handed out non-blocking");
    close(fd);
    fake_join(&f);
    cr_assert_eq(f.nheads, 2);
    cr_expect(strncmp(f.heads[0], "GET /a HTTP/1.1\r\n", 17) == 0, "%s", f.heads[0]);
    snprintf(url, sizeof(url), "\r\nHost: 127.0.0.1:%u\r\n", f.port);
    cr_expect(strstr(f.heads[0], url) != NULL, "%s", f.heads[0]);
    cr_expect(strstr(f.heads[0], "\r\nX-Remoted-APIKey: KEY1\r\n") != NULL);
    cr_expect(strstr(f.heads[0], "\r\nWebRoute-Version: 1\r\n") != NULL);
    cr_expect(strstr(f.heads[0], "\r\nUpgrade: webroute\r\n") != NULL);
    cr_expect(strstr(f.heads[0], "\r\nConnection: keep-alive, Upgrade\r\n") != NULL);
    cr_expect(strstr(f.heads[0], "WebRoute-Timeout") == NULL);
    cr_expect(strncmp(f.heads[1], "GET /b?x=1 HTTP/1.1\r\nHost: [::1]:81\r\n", 37) == 0, "%s",
              f.heads[1]);
    cr_expect(strstr(f.heads[1], "\r\nX-Remoted-APIKey: KEY2\r\n") != NULL);
}

Test(sdk_connect, separate_key_and_timeout_option)
{
    struct rapi_connect_opts o = {.timeout_ms = 5000, .webroute_timeout = 120};
    struct fake f;
    struct rapi_error e;
    char url[128];
    int fd;

    fake_start(&f, FAKE_OK, 1, NULL);
    snprintf(url, sizeof(url), "rwr://127.0.0.1:%u/p", f.port);
    fd = rapi_connect(url, "SEPARATEKEY", &o, NULL, 0, &e);
    cr_assert_geq(fd, 0, "%s", e.message);
    close(fd);
    fake_join(&f);
    cr_expect(strstr(f.heads[0], "\r\nX-Remoted-APIKey: SEPARATEKEY\r\n") != NULL);
    cr_expect(strstr(f.heads[0], "\r\nWebRoute-Timeout: 120\r\n") != NULL);
    /* The WebRoute-ID: 64 chars like the original's. */
    cr_expect(strstr(f.heads[0], "\r\nWebRoute-ID: ") != NULL);
}

Test(sdk_connect, wrong_accept_is_refused)
{
    struct fake f;
    struct rapi_error e;
    char url[128];

    fake_start(&f, FAKE_BAD_ACCEPT, 1, NULL);
    snprintf(url, sizeof(url), "rwr://K@127.0.0.1:%u/p", f.port);
    cr_expect_eq(rapi_connect(url, NULL, &quick, NULL, 0, &e), -EPROTO);
    cr_expect_eq(e.code, RAPI_E_PROTOCOL);
    cr_expect(strstr(e.message, "Sec-WebRoute-Accept") != NULL, "%s", e.message);
    fake_join(&f);
}

Test(sdk_connect, relay_error_is_named)
{
    struct fake f;
    struct rapi_error e;
    char url[128];

    fake_start(&f, FAKE_502, 1, NULL);
    snprintf(url, sizeof(url), "rwr://K@127.0.0.1:%u/p", f.port);
    cr_expect_eq(rapi_connect(url, NULL, &quick, NULL, 0, &e), -ECONNREFUSED);
    cr_expect_eq(e.code, RAPI_E_NO_LISTENER);
    cr_expect_eq(e.status, 502);
    cr_expect_str_eq(e.errorcode, "missing_destination");
    fake_join(&f);
}

Test(sdk_connect, timeout_is_ours)
{
    struct rapi_connect_opts o = {.timeout_ms = 300};
    struct fake f;
    struct rapi_error e;
    char url[128];

    fake_start(&f, FAKE_SILENT, 1, NULL);
    snprintf(url, sizeof(url), "rwr://K@127.0.0.1:%u/p", f.port);
    cr_expect_eq(rapi_connect(url, NULL, &o, NULL, 0, &e), -ETIMEDOUT);
    cr_expect_eq(e.code, RAPI_E_TIMEOUT);
    fake_join(&f);
}

/* The event-loop form: poll what the connector asks for (the socket may
 * change between steps) until it is done. */
static int step_until_done(struct rapi_connector *c, struct rapi_error *e)
{
    struct pollfd p;
    int rc, rounds = 0;

    while ((rc = rapi_connect_step(c, e)) == -EAGAIN) {
        p.fd = rapi_connector_fd(c);
        p.events = (short)rapi_connector_events(c);
        cr_assert(poll(&p, 1, rapi_connector_timeout(c)) >= 0);
        cr_assert_lt(++rounds, 100);
    }
    return rc;
}

Test(sdk_connect, nonblocking_form)
{
    struct rapi_connector *c;
    struct rapi_error e;
    struct fake f;
    char url[128];
    int rc, fd;

    fake_start(&f, FAKE_OK, 1, NULL);
    snprintf(url, sizeof(url), "rwr://K@127.0.0.1:%u/p", f.port);
    cr_assert_eq(rapi_connect_start(&c, url, NULL, &quick, &e), 0, "%s", e.message);
    cr_expect_eq(rapi_connector_take(c, NULL, 0), -EINVAL, "take before done");
    rc = step_until_done(c, &e);
    cr_assert_eq(rc, 0, "%s", e.message);
    fd = rapi_connector_take(c, NULL, 0);
    cr_expect_geq(fd, 0);
    rapi_connector_free(c);
    close(fd);
    fake_join(&f);
}

Test(sdk_connect, url_rejects)
{
    static const struct {
        const char *url;
        int rc, code;
    } t[] = {
        {"http://k@127.0.0.1/p", -EINVAL, RAPI_E_URL},
        {"rws://k@127.0.0.1/p", -EINVAL, RAPI_E_URL}, /* a listener URL */
        {"", -EINVAL, RAPI_E_URL},
        {"rwr://k@[::1/p", -EINVAL, RAPI_E_URL},
        {"rwr://k@127.0.0.1:0/p", -EINVAL, RAPI_E_URL},
        {"rwr://k@127.0.0.1:65536/p", -EINVAL, RAPI_E_URL},
        {"rwr://k@/p", -EINVAL, RAPI_E_URL},
        {"rwr://127.0.0.1:1/p", -EINVAL, RAPI_E_KEY}, /* no key anywhere */
    };
    struct rapi_error e;
    size_t i;

    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        cr_expect_eq(rapi_connect(t[i].url, NULL, &quick, NULL, 0, &e), t[i].rc, "%s", t[i].url);
        cr_expect_eq(e.code, t[i].code, "%s: %s", t[i].url, rapi_code_name(e.code));
    }
    /* rwrs: a CA file that cannot be read fails before any connection */
    struct rapi_connect_opts o = quick;
    o.ca_file = "/nonexistent/ca.pem";
    cr_expect_lt(rapi_connect("rwrs://k@127.0.0.1:1/p", NULL, &o, NULL, 0, &e), 0);
    cr_expect_eq(e.code, RAPI_E_TLS, "%s", rapi_code_name(e.code));
    cr_expect(strstr(e.message, "/nonexistent/ca.pem") != NULL, "%s", e.message);
}

Test(sdk_connect, refused_connection)
{
    struct rapi_error e;
    struct fake f;
    char url[128];

    fake_start(&f, FAKE_OK, 0, NULL); /* get a free port, then close it */
    close(f.lfd);
    pthread_cancel(f.t);
    pthread_join(f.t, NULL);
    snprintf(url, sizeof(url), "rwr://k@127.0.0.1:%u/p", f.port);
    cr_expect_eq(rapi_connect(url, NULL, &quick, NULL, 0, &e), -ECONNREFUSED);
    cr_expect_eq(e.code, RAPI_E_CONNECT);
    cr_expect_eq(e.sys_errno, ECONNREFUSED);
}

Test(sdk_listen, rejects_before_any_io)
{
    struct rapi_listener *l = (void *)1;
    struct rapi_error e;

    cr_expect_eq(rapi_listen(&l, "rwr://k@127.0.0.1/p", NULL, NULL, &e), -EINVAL);
    cr_expect_eq(e.code, RAPI_E_URL);
    cr_expect_null(l);
    cr_expect_eq(rapi_listen(&l, "rws://127.0.0.1/p", NULL, NULL, &e), -EINVAL);
    cr_expect_eq(e.code, RAPI_E_KEY);
    /* rwss: the CA file is loaded before any I/O; a missing one is a TLS error */
    struct rapi_listen_opts lo = {.ca_file = "/nonexistent/ca.pem"};
    cr_expect_lt(rapi_listen(&l, "rwss://k@127.0.0.1/p", NULL, &lo, &e), 0);
    cr_expect_eq(e.code, RAPI_E_TLS);
    cr_expect(strstr(e.message, "/nonexistent/ca.pem") != NULL, "%s", e.message);
    cr_expect_null(l);
    rapi_listener_close(NULL);
    rapi_connector_free(NULL);
}

Test(sdk_listen, refused_then_nowait_retries)
{
    struct rapi_listen_opts o = {.flags = RAPI_LISTEN_NOWAIT};
    struct rapi_listener *l;
    struct rapi_error e;
    struct fake f;
    char url[128];

    fake_start(&f, FAKE_OK, 0, NULL);
    close(f.lfd);
    pthread_cancel(f.t);
    pthread_join(f.t, NULL);
    snprintf(url, sizeof(url), "rws://k@127.0.0.1:%u/p", f.port);
    cr_expect_eq(rapi_listen(&l, url, NULL, NULL, &e), -ECONNREFUSED);
    cr_expect_eq(e.code, RAPI_E_CONNECT);
    /* NOWAIT: the listener exists and keeps trying on its own. */
    cr_assert_eq(rapi_listen(&l, url, NULL, &o, &e), 0);
    cr_expect_geq(rapi_listener_fd(l), 0);
    cr_expect_eq(rapi_listener_registered(l), 0);
    cr_expect_eq(rapi_accept(l, NULL, 0), -EAGAIN);
    cr_expect_eq(rapi_accept(l, NULL, 250), -EAGAIN);
    rapi_listener_close(l);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *fp = fopen(path, "w");

    cr_assert_not_null(fp);
    fputs(text, fp);
    fclose(fp);
    chmod(path, mode);
}

Test(sdk_keys, relay_file_bare_file_and_refusals)
{
    char path[] = "/tmp/rapi-sdk-keyXXXXXX", out[300];
    int fd = mkstemp(path);

    cr_assert_geq(fd, 0);
    close(fd);
    write_file(path, "# keys\nserver_key SSSSSSSSSSSSSSSSSSSS\nclient_key CCCCCCCCCCCCCCCCCCCC\n",
               0600);
    cr_expect_eq(rapi_key_load(path, RAPI_ROLE_SERVER, out, sizeof(out)), 20);
    cr_expect_str_eq(out, "SSSSSSSSSSSSSSSSSSSS");
    cr_expect_eq(rapi_key_load(path, RAPI_ROLE_CLIENT, out, sizeof(out)), 20);
    cr_expect_str_eq(out, "CCCCCCCCCCCCCCCCCCCC");
    cr_expect_eq(rapi_key_load(path, RAPI_ROLE_CLIENT, out, 20), -ENOSPC);
    write_file(path, "client_key CCCCCCCCCCCCCCCCCCCC\n", 0600);
    cr_expect_eq(rapi_key_load(path, RAPI_ROLE_SERVER, out, sizeof(out)), -ENOENT);
    write_file(path, "# one bare key\n\n  BAREKEY123456789\r\n", 0600);
    cr_expect_eq(rapi_key_load(path, RAPI_ROLE_SERVER, out, sizeof(out)), 16);
    cr_expect_str_eq(out, "BAREKEY123456789");
    /* The relay's rules for every reader (auth/keys.h): 16 characters at
     * least, so the 1-character key librapi once took is refused. */
    write_file(path, "BAREKEY12345678\n", 0600);
    cr_expect_eq(rapi_key_load(path, RAPI_ROLE_SERVER, out, sizeof(out)), -EINVAL);
    write_file(path, "k\n", 0600);
    cr_expect_eq(rapi_key_load(path, RAPI_ROLE_CLIENT, out, sizeof(out)), -EINVAL);
    write_file(path, "two\nkeys\n", 0600);
    cr_expect_eq(rapi_key_load(path, RAPI_ROLE_SERVER, out, sizeof(out)), -EINVAL);
    write_file(path, "BAREKEY123456789\n", 0640);
    cr_expect_eq(rapi_key_load(path, RAPI_ROLE_SERVER, out, sizeof(out)), -EPERM);
    /* Execute bits alone are not access to the key (the relay's rule). */
    write_file(path, "BAREKEY123456789\n", 0711);
    cr_expect_eq(rapi_key_load(path, RAPI_ROLE_SERVER, out, sizeof(out)), 16);
    unlink(path);
    cr_expect_eq(rapi_key_load(path, RAPI_ROLE_SERVER, out, sizeof(out)), -ENOENT);
    cr_expect_lt(rapi_key_load("/tmp", RAPI_ROLE_SERVER, out, sizeof(out)), 0, "a directory");
}

/* ------------------------------------------------------------ several relays */

#define FLEET_MAX 4

/* Fake relays in the given modes (FAKE_CLOSED: a port nobody listens on)
 * and their URLs. */
struct fleet {
    struct fake f[FLEET_MAX];
    bool up[FLEET_MAX];
    char buf[FLEET_MAX][128];
    const char *urls[FLEET_MAX];
    size_t n;
};

static void fleet_start(struct fleet *x, const enum fake_mode *modes, size_t n)
{
    size_t i;

    memset(x, 0, sizeof(*x));
    x->n = n;
    for (i = 0; i < n; i++) {
        x->up[i] = modes[i] != FAKE_CLOSED;
        if (x->up[i])
            fake_start(&x->f[i], modes[i], 1, NULL);
        snprintf(x->buf[i], sizeof(x->buf[i]), "rwr://K@127.0.0.1:%u/p",
                 x->up[i] ? x->f[i].port : closed_port());
        x->urls[i] = x->buf[i];
    }
}

/* Stop every fake; how many requests they got in all. */
static int fleet_stop(struct fleet *x)
{
    int heads = 0;
    size_t i;

    for (i = 0; i < x->n; i++) {
        if (!x->up[i])
            continue;
        fake_stop(&x->f[i]);
        cr_expect_leq(x->f[i].nheads, 1, "relay %zu tried once at most", i);
        heads += x->f[i].nheads;
    }
    return heads;
}

Test(sdk_multi, fails_over_to_the_relay_that_works)
{
    static const enum fake_mode modes[] = {FAKE_502, FAKE_503, FAKE_CLOSED, FAKE_OK};
    struct fleet x;
    struct rapi_error e;
    int round, fd;

    /* The order is random: a few rounds see several orders. */
    for (round = 0; round < 4; round++) {
        fleet_start(&x, modes, 4);
        fd = rapi_connect_multi(x.urls, x.n, NULL, &quick, NULL, 0, &e);
        cr_assert_geq(fd, 0, "%s", e.message);
        cr_expect_eq(e.code, RAPI_E_NONE);
        close(fd);
        fleet_stop(&x);
        cr_expect_eq(x.f[3].nheads, 1, "the working relay was reached");
    }
}

Test(sdk_multi, every_relay_tried_once_then_the_last_failure)
{
    static const enum fake_mode modes[] = {FAKE_502, FAKE_503, FAKE_CLOSED};
    struct fleet x;
    struct rapi_error e;

    fleet_start(&x, modes, 3);
    cr_expect_lt(rapi_connect_multi(x.urls, x.n, NULL, &quick, NULL, 0, &e), 0);
    cr_expect(e.code == RAPI_E_NO_LISTENER || e.code == RAPI_E_HTTP || e.code == RAPI_E_CONNECT,
              "%s", rapi_code_name(e.code));
    cr_expect(strncmp(e.message, "3 relays tried; last: ", 22) == 0, "%s", e.message);
    cr_expect_eq(fleet_stop(&x), 2, "both answering relays asked");
}

Test(sdk_multi, a_403_is_final)
{
    static const enum fake_mode modes[] = {FAKE_403, FAKE_403};
    struct fleet x;
    struct rapi_error e;

    fleet_start(&x, modes, 2);
    cr_expect_eq(rapi_connect_multi(x.urls, x.n, NULL, &quick, NULL, 0, &e), -EACCES);
    cr_expect_eq(e.code, RAPI_E_APIKEY);
    cr_expect_eq(e.status, 403);
    cr_expect(strstr(e.message, "relays tried") == NULL, "%s", e.message);
    cr_expect_eq(fleet_stop(&x), 1, "the other relay is not asked");
}

Test(sdk_multi, a_silent_relay_is_left_after_the_attempt_timeout)
{
    static const enum fake_mode modes[] = {FAKE_SILENT, FAKE_OK};
    struct rapi_connect_opts o = {.timeout_ms = 5000, .attempt_timeout_ms = 200};
    struct fleet x;
    struct rapi_error e;
    uint64_t t0 = anet_now_ms();
    int fd;

    fleet_start(&x, modes, 2);
    fd = rapi_connect_multi(x.urls, x.n, NULL, &o, NULL, 0, &e);
    cr_assert_geq(fd, 0, "%s", e.message);
    cr_expect_lt(anet_now_ms() - t0, 2000, "not the whole timeout");
    close(fd);
    fleet_stop(&x);
    cr_expect_eq(x.f[1].nheads, 1);
}

Test(sdk_multi, the_last_relay_gets_what_is_left_of_the_timeout)
{
    static const enum fake_mode modes[] = {FAKE_SILENT, FAKE_SILENT};
    struct rapi_connect_opts o = {.timeout_ms = 900, .attempt_timeout_ms = 200};
    struct fleet x;
    struct rapi_error e;
    uint64_t t0 = anet_now_ms(), took;

    fleet_start(&x, modes, 2);
    cr_expect_eq(rapi_connect_multi(x.urls, x.n, NULL, &o, NULL, 0, &e), -ETIMEDOUT);
    took = anet_now_ms() - t0;
    cr_expect_eq(e.code, RAPI_E_TIMEOUT);
    cr_expect_geq(took, 850, "took %llu ms", (unsigned long long)took);
    cr_expect_lt(took, 2000, "took %llu ms", (unsigned long long)took);
    cr_expect_eq(fleet_stop(&x), 2, "both relays tried");
}

Test(sdk_multi, chains_are_alternatives_with_their_own_rest)
{
    struct fake f;
    struct rapi_error e;
    char a[160], b[160], rest[64];
    const char *urls[2] = {a, b};
    int fd;

    fake_start(&f, FAKE_OK, 2, NULL);
    snprintf(a, sizeof(a), "rwr://K@127.0.0.1:%u/a rwr://K@[::1]:81/b tcp://via-a", closed_port());
    snprintf(b, sizeof(b), "rwr://K@127.0.0.1:%u/a rwr://K@[::1]:81/b tcp://via-b", f.port);
    fd = rapi_connect_multi(urls, 2, NULL, &quick, rest, sizeof(rest), &e);
    cr_assert_geq(fd, 0, "%s", e.message);
    cr_expect_str_eq(rest, "tcp://via-b");
    close(fd);
    fake_join(&f);
    cr_expect_eq(f.nheads, 2, "both hops through the chain that works");
}

Test(sdk_multi, url_list_is_checked_before_any_io)
{
    const char *urls[RAPI_RELAYS_MAX + 1];
    struct rapi_connector *c = (void *)1;
    struct rapi_listener *l = (void *)1;
    struct rapi_error e;
    size_t i;

    for (i = 0; i <= RAPI_RELAYS_MAX; i++)
        urls[i] = "rwr://k@127.0.0.1:1/p";
    cr_expect_eq(rapi_connect_multi(urls, 0, NULL, &quick, NULL, 0, &e), -EINVAL);
    cr_expect_eq(e.code, RAPI_E_URL);
    cr_expect_eq(rapi_connect_multi(urls, RAPI_RELAYS_MAX + 1, NULL, &quick, NULL, 0, &e), -EINVAL);
    cr_expect_eq(e.code, RAPI_E_URL);
    cr_expect_eq(rapi_connect_multi(NULL, 1, NULL, &quick, NULL, 0, &e), -EINVAL);
    urls[1] = "rws://k@127.0.0.1:1/p"; /* one bad URL fails the whole list */
    cr_expect_eq(rapi_connect_start_multi(&c, urls, 2, NULL, &quick, &e), -EINVAL);
    cr_expect_eq(e.code, RAPI_E_URL);
    cr_expect_null(c);
    urls[1] = "rwr://k@127.0.0.1:1/p";
    urls[0] = "rws://k@127.0.0.1:1/p";
    cr_expect_eq(rapi_listen_multi(&l, urls, 0, NULL, NULL, &e), -EINVAL);
    cr_expect_eq(e.code, RAPI_E_URL);
    cr_expect_eq(rapi_listen_multi(&l, urls, 2, NULL, NULL, &e), -EINVAL, "a client URL");
    cr_expect_eq(e.code, RAPI_E_URL);
    cr_expect_null(l);
    urls[1] = "rws://127.0.0.1:1/p";
    cr_expect_eq(rapi_listen_multi(&l, urls, 2, NULL, NULL, &e), -EINVAL, "no key for one");
    cr_expect_eq(e.code, RAPI_E_KEY);
}

Test(sdk_multi, nonblocking_form_moves_to_another_socket)
{
    static const enum fake_mode modes[] = {FAKE_CLOSED, FAKE_OK};
    struct rapi_connector *c;
    struct rapi_error e;
    struct fleet x;
    int fd;

    fleet_start(&x, modes, 2);
    cr_assert_eq(rapi_connect_start_multi(&c, x.urls, x.n, NULL, &quick, &e), 0, "%s", e.message);
    cr_assert_eq(step_until_done(c, &e), 0, "%s", e.message);
    fd = rapi_connector_take(c, NULL, 0);
    cr_expect_geq(fd, 0);
    rapi_connector_free(c);
    close(fd);
    cr_expect_eq(fleet_stop(&x), 1);
}

Test(sdk_multi, listener_counts_every_relay)
{
    struct rapi_listen_opts o = {.flags = RAPI_LISTEN_NOWAIT};
    struct rapi_listener *l;
    struct rapi_error e;
    char a[128], b[128];
    const char *urls[2] = {a, b};
    int total = -1;

    snprintf(a, sizeof(a), "rws://k@127.0.0.1:%u/p", closed_port());
    snprintf(b, sizeof(b), "rws://k@127.0.0.1:%u/p", closed_port());
    /* Blocking: the answer once every relay failed once. */
    cr_expect_eq(rapi_listen_multi(&l, urls, 2, NULL, NULL, &e), -ECONNREFUSED);
    cr_expect_eq(e.code, RAPI_E_CONNECT);
    cr_assert_eq(rapi_listen_multi(&l, urls, 2, NULL, &o, &e), 0);
    cr_expect_eq(rapi_listener_registrations(l, &total), 0);
    cr_expect_eq(total, 2, "one control connection per relay");
    cr_expect_eq(rapi_listener_registered(l), 0);
    cr_expect_eq(rapi_accept(l, NULL, 200), -EAGAIN);
    rapi_listener_close(l);
}
