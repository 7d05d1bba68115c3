/* TLS contexts and connections end to end over a socketpair, with
 * certificates this test makes itself (openssl CLI): a private CA, server
 * certificates, an expired one, one for the wrong name, a foreign CA. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tls/tls_ctx.h"
#include "tls/tls_int.h"

#define HS_ROUNDS 400 /* handshake steps before a test gives up */
#define BIG (4u << 20)

static char dir[64];

/* All certificates are EC P-256, valid 2 days, except expired.pem. */
static const char cert_script[] =
    "set -e; cd \"$1\"\n"
    "printf '[srv]\\nsubjectAltName=DNS:localhost,IP:127.0.0.1\\n"
    "[b]\\nsubjectAltName=DNS:b.test\\n[wrong]\\nsubjectAltName=DNS:wrong.test\\n' > ext.cnf\n"
    "ca() { openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $1.key "
    "-out $1.pem -subj /CN=$1 -days 2; }\n"
    "leaf() { openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $1.key "
    "-out $1.csr -subj /CN=$1; openssl x509 -req -in $1.csr -CA ca.pem -CAkey ca.key "
    "-CAcreateserial -out $1.pem -days $3 -extfile ext.cnf -extensions $2; }\n"
    "{ ca ca; ca otherca; leaf srv srv 2; leaf b b 2; leaf wrong wrong 2; leaf expired srv -1; "
    "} >log 2>&1\n"
    "chmod 600 *.key\n";

static void make_certs(void)
{
    strcpy(dir, "/tmp/rapi-tls-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    FILE *f = popen("sh -s", "w");
    cr_assert_not_null(f);
    fprintf(f, "set -- %s\n%s", dir, cert_script);
    cr_assert_eq(pclose(f), 0, "openssl could not make the test certificates");
}

static void rm_certs(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

static char *path(const char *name)
{
    static char buf[8][128];
    static int i;
    char *p = buf[i++ % 8];
    snprintf(p, 128, "%s/%s", dir, name);
    return p;
}

static struct tls_server *server(const char *const *names, size_t n, int min, int max)
{
    struct tls_pair pairs[4];
    char err[TLS_ERR_MAX];
    struct tls_server *s;

    for (size_t i = 0; i < n; i++) {
        char cert[64], key[64];
        snprintf(cert, sizeof(cert), "%s.pem", names[i]);
        snprintf(key, sizeof(key), "%s.key", names[i]);
        pairs[i].cert_file = strdup(path(cert));
        pairs[i].key_file = strdup(path(key));
    }
    struct tls_server_conf conf = {
        .pairs = pairs, .n_pairs = n, .min_version = min, .max_version = max, .accel = true};
    int rc = tls_server_new(&conf, &s, err, sizeof(err));
    cr_assert_eq(rc, 0, "server: %s", err);
    for (size_t i = 0; i < n; i++) {
        free((void *)pairs[i].cert_file);
        free((void *)pairs[i].key_file);
    }
    return s;
}

static struct tls_client *client(const char *ca, int min, int max, bool accel)
{
    struct tls_client_conf conf = {
        .ca_file = ca ? path(ca) : NULL, .min_version = min, .max_version = max, .accel = accel};
    char err[TLS_ERR_MAX];
    struct tls_client *c;
    cr_assert_eq(tls_client_new(&conf, &c, err, sizeof(err)), 0, "client: %s", err);
    return c;
}

struct link {
    int fd[2]; /* [0] server side, [1] client side */
    struct tls_conn *s, *c;
    int src, crc; /* handshake results */
};

static void link_open(struct link *l, struct tls_server *s, struct tls_client *c, const char *host)
{
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, l->fd), 0);
    cr_assert_eq(tls_conn_server(s, l->fd[0], &l->s), 0);
    cr_assert_eq(tls_conn_client(c, l->fd[1], host, &l->c), 0);
}

/* Step both handshakes until neither waits. */
static void link_handshake(struct link *l)
{
    unsigned w;

    l->src = l->crc = -EAGAIN;
    for (int i = 0; i < HS_ROUNDS && (l->src == -EAGAIN || l->crc == -EAGAIN); i++) {
        if (l->crc == -EAGAIN)
            l->crc = tls_conn_handshake(l->c, &w);
        if (l->src == -EAGAIN)
            l->src = tls_conn_handshake(l->s, &w);
        if (l->crc != -EAGAIN && l->crc != 0 && l->src == -EAGAIN)
            shutdown(l->fd[1], SHUT_WR); /* a failed client is gone */
    }
}

static void link_close(struct link *l)
{
    tls_conn_free(l->s);
    tls_conn_free(l->c);
    close(l->fd[0]);
    close(l->fd[1]);
}

/* Move n bytes from a to b, stepping both (a is written, b is read). */
static void pump(struct tls_conn *a, struct tls_conn *b, const unsigned char *src, size_t n)
{
    static unsigned char got[64 << 10];
    size_t sent = 0, recvd = 0;
    unsigned w;

    for (int i = 0; recvd < n && i < 1000000; i++) {
        if (sent < n) {
            size_t chunk = n - sent < 100000 ? n - sent : 100000;
            ssize_t k = tls_conn_write(a, src + sent, chunk, &w);
            cr_assert(k > 0 || k == -EAGAIN, "write: %zd %s", k, tls_conn_reason(a));
            if (k > 0)
                sent += (size_t)k;
        }
        ssize_t r = tls_conn_read(b, got, sizeof(got), &w);
        cr_assert(r > 0 || r == -EAGAIN, "read: %zd %s", r, tls_conn_reason(b));
        if (r > 0) {
            cr_assert_arr_eq(got, src + recvd, (size_t)r, "bytes differ at %zu", recvd);
            recvd += (size_t)r;
        }
    }
    cr_assert_eq(recvd, n);
}

static struct tls_server *srv_default(void)
{
    static const char *const names[] = {"srv"};
    return server(names, 1, 0, 0);
}

TestSuite(tls_ctx, .init = make_certs, .fini = rm_certs);

Test(tls_ctx, tls13_handshake_alpn_data_and_device)
{
    struct tls_server *s = srv_default();
    struct tls_client *c = client("ca.pem", 0, 0, true);
    struct aead_accel_stats before, after;
    struct link l;
    unsigned char *data = malloc(BIG);

    for (size_t i = 0; i < BIG; i++)
        data[i] = (unsigned char)(i * 7 + (i >> 11));
    link_open(&l, s, c, "localhost");
    link_handshake(&l);
    cr_assert_eq(l.crc, 0, "client: %s", tls_conn_reason(l.c));
    cr_assert_eq(l.src, 0, "server: %s", tls_conn_reason(l.s));
    cr_assert_str_eq(tls_conn_version(l.c), "TLSv1.3");
    cr_assert_str_eq(tls_conn_alpn(l.s), "http/1.1");
    cr_assert_str_eq(tls_conn_sni(l.s), "localhost");
    cr_assert_not_null(strstr(tls_conn_cipher(l.c), "AES128-GCM"), "%s", tls_conn_cipher(l.c));
    /* X25519 first (the fast key exchange in this wolfSSL, bench/NOTES.md) */
    cr_assert_str_eq(tls_conn_group(l.c), "X25519");
    cr_assert_str_eq(tls_conn_group(l.s), "X25519");
    aead_accel_stats(&before);
    pump(l.c, l.s, data, BIG);
    pump(l.s, l.c, data, 1000);
    aead_accel_stats(&after);
    cr_assert_gt(after.enc - before.enc, BIG / (16 << 10) - 1, "records went through the device");
    cr_assert_gt(after.dec - before.dec, BIG / (16 << 10) - 1);
    cr_assert_lt(after.rekey - before.rekey, 4, "keys expanded once per direction, not per record");
    link_close(&l);
    tls_client_unref(c);
    tls_server_unref(s);
    free(data);
}

Test(tls_ctx, tls12_handshake_with_and_without_device)
{
    struct tls_server *s = srv_default();

    for (int accel = 0; accel < 2; accel++) {
        struct tls_client *c = client("ca.pem", 0, TLS_V12, accel);
        struct aead_accel_stats before, after;
        unsigned char msg[3000];
        struct link l;

        memset(msg, 'x', sizeof(msg));
        link_open(&l, s, c, "localhost");
        link_handshake(&l);
        cr_assert_eq(l.crc, 0, "client: %s", tls_conn_reason(l.c));
        cr_assert_str_eq(tls_conn_version(l.s), "TLSv1.2");
        aead_accel_stats(&before);
        pump(l.c, l.s, msg, sizeof(msg));
        aead_accel_stats(&after);
        /* the server always has the device: one decryption at least */
        cr_assert_geq(after.dec - before.dec, 1);
        cr_assert_eq(after.enc - before.enc, (uint64_t)accel, "client device: %d", accel);
        link_close(&l);
        tls_client_unref(c);
    }
    tls_server_unref(s);
}

/* Each bad certificate fails on the client with its own named error. */
static void expect_fail(const char *srv_name, const char *ca, const char *host, enum tls_err want,
                        const char *words)
{
    const char *const names[] = {srv_name};
    struct tls_server *s = server(names, 1, 0, 0);
    struct tls_client *c = client(ca, 0, 0, true);
    struct link l;

    link_open(&l, s, c, host);
    link_handshake(&l);
    cr_assert_eq(l.crc, -EPROTO, "%s: client result %d", srv_name, l.crc);
    cr_assert_eq(tls_conn_err(l.c), want, "%s: got %s (%s)", srv_name,
                 tls_err_name(tls_conn_err(l.c)), tls_conn_reason(l.c));
    cr_assert_not_null(strstr(tls_conn_reason(l.c), words), "%s", tls_conn_reason(l.c));
    cr_assert_neq(l.src, 0, "the server must not complete either");
    link_close(&l);
    tls_client_unref(c);
    tls_server_unref(s);
}

Test(tls_ctx, verify_unknown_ca)
{
    expect_fail("srv", "otherca.pem", "localhost", TLS_ERR_UNKNOWN_CA, "trusted CA");
}

Test(tls_ctx, verify_expired)
{
    expect_fail("expired", "ca.pem", "localhost", TLS_ERR_EXPIRED, "expired");
}

Test(tls_ctx, verify_wrong_name)
{
    expect_fail("wrong", "ca.pem", "localhost", TLS_ERR_NAME_MISMATCH, "host name");
}

Test(tls_ctx, verify_system_store_refuses_private_ca)
{
    if (access(TLS_SYSTEM_CA, R_OK) != 0)
        cr_skip_test("no system CA store at " TLS_SYSTEM_CA);
    expect_fail("srv", NULL, "localhost", TLS_ERR_UNKNOWN_CA, "trusted CA");
}

/* SNI picks the pair naming the host; unknown names get the default. */
Test(tls_ctx, sni_selects_pair)
{
    static const char *const names[] = {"srv", "b"};
    static const struct {
        const char *host;
        int pair, ok;
    } cases[] = {{"b.test", 1, 1}, {"localhost", 0, 1}, {"zzz.test", 0, 0}};
    struct tls_server *s = server(names, 2, 0, 0);
    struct tls_client *c = client("ca.pem", 0, 0, true);

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct link l;
        link_open(&l, s, c, cases[i].host);
        link_handshake(&l);
        cr_assert_eq(l.crc == 0, cases[i].ok, "%s: %s", cases[i].host, tls_conn_reason(l.c));
        cr_assert_eq(tls_conn_pair(l.s), cases[i].pair, "%s", cases[i].host);
        if (!cases[i].ok)
            cr_assert_eq(tls_conn_err(l.c), TLS_ERR_NAME_MISMATCH);
        link_close(&l);
    }
    tls_client_unref(c);
    tls_server_unref(s);
}

/* One full handshake, then a resumed one from its session; *got_resumed. */
static void resume_once(struct tls_server *s, struct tls_client *c, bool *got_resumed)
{
    struct tls_session *sess;
    struct link l;

    link_open(&l, s, c, "localhost");
    link_handshake(&l);
    cr_assert_eq(l.crc, 0, "%s", tls_conn_reason(l.c));
    cr_assert(!tls_conn_resumed(l.s));
    pump(l.s, l.c, (const unsigned char *)"tick", 4); /* the TLS 1.3 ticket rides along */
    sess = tls_conn_session(l.c);
    cr_assert_not_null(sess);
    link_close(&l);

    link_open(&l, s, c, "localhost");
    cr_assert_eq(tls_conn_resume(l.c, sess), 0);
    link_handshake(&l);
    cr_assert_eq(l.crc, 0, "%s", tls_conn_reason(l.c));
    *got_resumed = tls_conn_resumed(l.s) && tls_conn_resumed(l.c);
    pump(l.c, l.s, (const unsigned char *)"after", 5);
    link_close(&l);
    tls_session_free(sess);
}

Test(tls_ctx, resumption_by_ticket_tls13_and_tls12)
{
    struct tls_server *s = srv_default();
    int maxv[] = {TLS_V13, TLS_V12};

    for (int i = 0; i < 2; i++) {
        struct tls_client *c = client("ca.pem", 0, maxv[i], true);
        bool resumed = false;
        resume_once(s, c, &resumed);
        cr_assert(resumed, "resumed with TLS max %d", maxv[i]);
        tls_client_unref(c);
    }
    tls_server_unref(s);
}

/* A rotated key still opens old tickets; two rotations later they fail
 * (a full handshake, no error). */
Test(tls_ctx, ticket_keys_rotate)
{
    struct tls_server *s = srv_default();
    struct tls_client *c = client("ca.pem", 0, 0, true);
    struct tls_session *sess;
    struct link l;

    for (int rotations = 0; rotations < 3; rotations++) {
        link_open(&l, s, c, "localhost");
        link_handshake(&l);
        pump(l.s, l.c, (const unsigned char *)"tick", 4);
        sess = tls_conn_session(l.c);
        link_close(&l);
        for (int r = 0; r < rotations; r++)
            tls_tickets_rotate();
        link_open(&l, s, c, "localhost");
        cr_assert_eq(tls_conn_resume(l.c, sess), 0);
        link_handshake(&l);
        cr_assert_eq(l.crc, 0, "%s", tls_conn_reason(l.c));
        cr_assert_eq(tls_conn_resumed(l.s), rotations < 2, "after %d rotations", rotations);
        link_close(&l);
        tls_session_free(sess);
    }
    tls_client_unref(c);
    tls_server_unref(s);
}

Test(tls_ctx, key_file_open_to_others_refused)
{
    struct tls_pair p = {path("srv.pem"), path("srv.key")};
    struct tls_server_conf conf = {.pairs = &p, .n_pairs = 1};
    char err[TLS_ERR_MAX];
    struct tls_server *s = NULL;

    cr_assert_eq(chmod(p.key_file, 0640), 0);
    cr_assert_eq(tls_server_new(&conf, &s, err, sizeof(err)), -EPERM);
    cr_assert_null(s);
    cr_assert_not_null(strstr(err, "0640"), "%s", err);
    cr_assert_null(strstr(err, "PRIVATE"), "no key bytes in errors");
    cr_assert_eq(chmod(p.key_file, 0600), 0);
    cr_assert_eq(tls_server_new(&conf, &s, err, sizeof(err)), 0, "%s", err);
    tls_server_unref(s);
}

Test(tls_ctx, bad_configs_refused)
{
    struct tls_pair mismatch = {path("srv.pem"), path("b.key")};
    struct tls_pair missing = {path("nope.pem"), path("srv.key")};
    struct tls_server_conf conf = {.pairs = &mismatch, .n_pairs = 1};
    char err[TLS_ERR_MAX];
    struct tls_server *s;

    cr_assert_eq(tls_server_new(&conf, &s, err, sizeof(err)), -EINVAL, "%s", err);
    cr_assert_not_null(strstr(err, "does not match"), "%s", err);
    conf.pairs = &missing;
    cr_assert_eq(tls_server_new(&conf, &s, err, sizeof(err)), -ENOENT, "%s", err);
    conf.pairs = &mismatch;
    conf.n_pairs = 0;
    cr_assert_eq(tls_server_new(&conf, &s, err, sizeof(err)), -EINVAL);
    conf.n_pairs = 1;
    conf.min_version = 11;
    cr_assert_eq(tls_server_new(&conf, &s, err, sizeof(err)), -EINVAL);
    conf.min_version = 0;
    conf.pairs = &missing;
    missing.cert_file = path("srv.pem");
    conf.ciphers = "NOT-A-CIPHER";
    cr_assert_eq(tls_server_new(&conf, &s, err, sizeof(err)), -EINVAL);
    cr_assert_not_null(strstr(err, "cipher"), "%s", err);
}

Test(tls_ctx, version_floor)
{
    struct tls_server *s;
    static const char *const names[] = {"srv"};
    s = server(names, 1, TLS_V13, 0);
    struct tls_client *c = client("ca.pem", 0, TLS_V12, true);
    struct link l;

    link_open(&l, s, c, "localhost");
    link_handshake(&l);
    cr_assert_neq(l.crc, 0);
    cr_assert_neq(l.src, 0);
    cr_assert(tls_conn_err(l.s) == TLS_ERR_VERSION || tls_conn_err(l.c) == TLS_ERR_VERSION,
              "server %s, client %s", tls_conn_reason(l.s), tls_conn_reason(l.c));
    link_close(&l);
    tls_client_unref(c);
    tls_server_unref(s);
}

/* Plain HTTP to a TLS port fails at once with a named reason. */
Test(tls_ctx, plain_http_to_tls_port)
{
    struct tls_server *s = srv_default();
    static const char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    struct tls_conn *c;
    unsigned w;
    int fd[2];

    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fd), 0);
    cr_assert_eq(tls_conn_server(s, fd[0], &c), 0);
    cr_assert_eq(write(fd[1], req, sizeof(req) - 1), (ssize_t)sizeof(req) - 1);
    cr_assert_eq(tls_conn_handshake(c, &w), -EPROTO);
    cr_assert_eq(tls_conn_err(c), TLS_ERR_NOT_TLS, "%s: %s", tls_err_name(tls_conn_err(c)),
                 tls_conn_reason(c));
    tls_conn_free(c);
    close(fd[0]);
    close(fd[1]);
    tls_server_unref(s);
}

/* close_notify is a half-close: the other way keeps working; a TCP close
 * without it reads as a truncated end. */
Test(tls_ctx, half_close_and_truncation)
{
    struct tls_server *s = srv_default();
    struct tls_client *c = client("ca.pem", 0, 0, true);
    unsigned char b[64];
    unsigned w;
    struct link l;

    link_open(&l, s, c, "localhost");
    link_handshake(&l);
    cr_assert_eq(l.crc, 0);
    cr_assert_eq(tls_conn_shutdown(l.c, &w), 0);
    cr_assert_eq(tls_conn_read(l.s, b, sizeof(b), &w), 0);
    cr_assert(!tls_conn_truncated(l.s));
    pump(l.s, l.c, (const unsigned char *)"still here", 10);
    cr_assert_eq(shutdown(l.fd[0], SHUT_WR), 0);
    cr_assert_eq(tls_conn_read(l.c, b, sizeof(b), &w), 0);
    cr_assert(tls_conn_truncated(l.c));
    link_close(&l);
    tls_client_unref(c);
    tls_server_unref(s);
}

/* A reload swaps in a new context; the old one lives on while a connection
 * uses it (the holder's reference is dropped at once). */
Test(tls_ctx, reload_keeps_old_context_for_its_connections)
{
    struct tls_server *cur = srv_default(), *old;
    struct tls_client *c = client("ca.pem", 0, 0, true);
    struct link l;

    link_open(&l, cur, c, "localhost");
    old = cur;
    cur = srv_default(); /* the reload */
    cr_assert_eq(atomic_load(&old->refs), 2);
    tls_server_unref(old); /* the holder lets go; l.s still holds it */
    cr_assert_eq(atomic_load(&old->refs), 1);
    link_handshake(&l);
    cr_assert_eq(l.crc, 0, "%s", tls_conn_reason(l.c));
    pump(l.c, l.s, (const unsigned char *)"old ctx", 7);
    link_close(&l); /* frees old (ASan's leak check proves it) */
    tls_client_unref(c);
    tls_server_unref(cur);
}

/* Records already off the socket (decrypted, or read ahead) show in
 * tls_conn_pending(), so an event loop calls read again before waiting. */
Test(tls_ctx, pending_reports_buffered_records)
{
    struct tls_server *s = srv_default();
    struct tls_client *c = client("ca.pem", 0, 0, true);
    unsigned char msg[100], got[100];
    unsigned w;
    struct link l;

    memset(msg, 'p', sizeof(msg));
    link_open(&l, s, c, "localhost");
    link_handshake(&l);
    cr_assert_eq(l.crc, 0);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(tls_conn_write(l.s, msg, sizeof(msg), &w), (ssize_t)sizeof(msg));
    cr_assert_eq(tls_conn_pending(l.c), 0);
    for (int i = 0; i < 3; i++) {
        ssize_t n;
        while ((n = tls_conn_read(l.c, got, sizeof(got), &w)) == -EAGAIN && i == 0)
            ;
        cr_assert_eq(n, (ssize_t)sizeof(got), "record %d: %zd", i, n);
        cr_assert_eq(tls_conn_pending(l.c) > 0, i < 2, "after record %d", i);
    }
    cr_assert_eq(tls_conn_read(l.c, got, sizeof(got), &w), -EAGAIN);
    cr_assert_eq(w, TLS_WANT_IN);
    link_close(&l);
    tls_client_unref(c);
    tls_server_unref(s);
}

/* no_tickets: a TLS 1.3 client gets no ticket, so nothing to resume. */
Test(tls_ctx, no_tickets_no_resumption)
{
    struct tls_pair p = {path("srv.pem"), path("srv.key")};
    struct tls_server_conf conf = {.pairs = &p, .n_pairs = 1, .no_tickets = true};
    char err[TLS_ERR_MAX];
    struct tls_server *s;
    struct tls_client *c = client("ca.pem", TLS_V13, 0, true);
    struct tls_session *sess;
    struct link l;

    cr_assert_eq(tls_server_new(&conf, &s, err, sizeof(err)), 0, "%s", err);
    link_open(&l, s, c, "localhost");
    link_handshake(&l);
    cr_assert_eq(l.crc, 0, "%s", tls_conn_reason(l.c));
    pump(l.s, l.c, (const unsigned char *)"tick", 4);
    sess = tls_conn_session(l.c);
    link_close(&l);
    link_open(&l, s, c, "localhost");
    /* wolfSSL refuses a session without a ticket (-EINVAL): fine either way */
    int rc = sess ? tls_conn_resume(l.c, sess) : -EINVAL;
    cr_assert(rc == 0 || rc == -EINVAL);
    link_handshake(&l);
    cr_assert_eq(l.crc, 0, "%s", tls_conn_reason(l.c));
    cr_assert(!tls_conn_resumed(l.s));
    link_close(&l);
    tls_session_free(sess);
    tls_client_unref(c);
    tls_server_unref(s);
}

/* Garbage that looks like a TLS record header ends the handshake with an
 * error (never a crash, never a wait on a closed socket). */
Test(tls_ctx, garbage_handshakes_fail_cleanly)
{
    struct tls_server *s = srv_default();
    unsigned char junk[2048];
    unsigned seed = 12345, w;

    for (int round = 0; round < 60; round++) {
        struct tls_conn *c;
        int fd[2], rc;
        size_t n = 5 + (size_t)(rand_r(&seed) % (sizeof(junk) - 5));

        for (size_t i = 0; i < n; i++)
            junk[i] = (unsigned char)rand_r(&seed);
        junk[0] = 0x16; /* handshake record, TLS 1.0 record version */
        junk[1] = 0x03;
        junk[2] = 0x01;
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fd), 0);
        cr_assert_eq(tls_conn_server(s, fd[0], &c), 0);
        cr_assert_eq(write(fd[1], junk, n), (ssize_t)n);
        shutdown(fd[1], SHUT_WR);
        for (int i = 0; i < HS_ROUNDS && (rc = tls_conn_handshake(c, &w)) == -EAGAIN; i++)
            ;
        cr_assert(rc == -EPROTO || rc == -ECONNRESET, "round %d: %d (%s)", round, rc,
                  tls_conn_reason(c));
        cr_assert_neq(tls_conn_err(c), TLS_ERR_NONE);
        tls_conn_free(c);
        close(fd[0]);
        close(fd[1]);
    }
    tls_server_unref(s);
}
