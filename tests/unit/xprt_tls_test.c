/* engine/xprt_tls.c: the TLS transport behind the seam, over a socketpair
 * with a wolfSSL client on the other end: the server context from the
 * configuration, the handshake, bytes left inside the session (pending),
 * -EAGAIN with want, close_notify + FIN as a half-close that still lets
 * bytes come the other way, close. Certificates are made by openssl. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/xprt_tls.h"

#define HS_ROUNDS 400

static char dir[64];
static struct conf conf;

static const char cert_script[] =
    "set -e; cd \"$1\"\n"
    "printf '[srv]\\nsubjectAltName=DNS:localhost\\n' > ext.cnf\n"
    "{ openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key "
    "-out ca.pem -subj /CN=ca -days 2\n"
    "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout srv.key "
    "-out srv.csr -subj /CN=srv\n"
    "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem "
    "-days 2 -extfile ext.cnf -extensions srv; } >log 2>&1\n"
    "chmod 600 *.key\n";

static void setup(void)
{
    strcpy(dir, "/tmp/rapi-xprt-tls-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    FILE *f = popen("sh -s", "w");
    cr_assert_not_null(f);
    fprintf(f, "set -- %s\n%s", dir, cert_script);
    cr_assert_eq(pclose(f), 0, "openssl could not make the test certificates");
    conf_defaults(&conf);
    snprintf(conf.tls_cert.path[0], CONF_TLS_PATH_MAX, "%s/srv.pem", dir);
    snprintf(conf.tls_key.path[0], CONF_TLS_PATH_MAX, "%s/srv.key", dir);
    conf.tls_cert.n = conf.tls_key.n = 1;
}

static void teardown(void)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(xprt_tls, .init = setup, .fini = teardown);

struct pair {
    struct tls_server *srv;
    struct tls_client *cli;
    struct xconn x;     /* the relay's side */
    struct tls_conn *c; /* the peer */
    int fd[2];
};

static void pair_open(struct pair *p)
{
    char err[TLS_ERR_MAX], ca[128];
    struct tls_client_conf cc = {.ca_file = ca};
    unsigned w;
    int sr = -EAGAIN, cr = -EAGAIN;

    snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
    cr_assert_eq(xprt_tls_server_new(&conf, &p->srv, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(tls_client_new(&cc, &p->cli, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, p->fd), 0);
    cr_assert_eq(xconn_init_tls(&p->x, p->fd[0], p->srv), 0);
    cr_assert_eq(tls_conn_client(p->cli, p->fd[1], "localhost", &p->c), 0);
    for (int i = 0; i < HS_ROUNDS && (sr == -EAGAIN || cr == -EAGAIN); i++) {
        if (cr == -EAGAIN)
            cr = tls_conn_handshake(p->c, &w);
        if (sr == -EAGAIN)
            sr = xprt_tls_handshake(&p->x);
    }
    cr_assert_eq(sr, 0);
    cr_assert_eq(cr, 0);
}

static void pair_close(struct pair *p)
{
    p->x.ops->close(&p->x, false);
    tls_conn_free(p->c);
    close(p->fd[1]);
    tls_server_unref(p->srv);
    tls_client_unref(p->cli);
}

Test(xprt_tls, server_from_conf)
{
    struct tls_server *s;
    struct conf c = conf;
    char err[TLS_ERR_MAX];

    cr_assert_eq(xprt_tls_server_new(&conf, &s, err, sizeof(err)), 0, "%s", err);
    tls_server_unref(s);
    c.tls_cert.n = c.tls_key.n = 0;
    cr_assert_eq(xprt_tls_server_new(&c, &s, err, sizeof(err)), -ENOENT);
    cr_assert_null(s);
    cr_assert_str_eq(err, "no tls_cert/tls_key pair configured");
    cr_assert_eq(chmod(conf.tls_key.path[0], 0640), 0);
    cr_assert_eq(xprt_tls_server_new(&conf, &s, err, sizeof(err)), -EPERM);
    cr_assert_null(strstr(err, "PRIVATE"), "%s", err);
}

Test(xprt_tls, no_splice_and_raw_untouched)
{
    struct pair p;
    struct xconn raw;

    pair_open(&p);
    xconn_init_raw(&raw, -1);
    cr_assert_str_eq(p.x.ops->name, "tls");
    cr_assert_not_null(xconn_tls(&p.x));
    cr_assert_null(xconn_tls(&raw));
    cr_assert(!xconn_can_splice(&p.x, &raw));
    cr_assert(!xconn_can_splice(&raw, &p.x));
    cr_assert(xconn_can_splice(&raw, &raw));
    cr_assert_eq(xconn_pending(&raw), 0);
    pair_close(&p);
}

/* Bytes left inside the session after a short read are reported by
 * pending, with no byte left in the socket; reading to -EAGAIN empties it
 * and says the read waits for input. */
Test(xprt_tls, pending_then_eagain_with_want)
{
    struct pair p;
    char msg[3000], got[sizeof(msg) + 100], small[100];
    unsigned w;
    size_t have = 0;
    ssize_t n;
    int inq = -1;

    memset(msg, 'm', sizeof(msg));
    pair_open(&p);
    cr_assert_eq(tls_conn_write(p.c, msg, sizeof(msg), &w), (ssize_t)sizeof(msg));
    n = p.x.ops->rcv(&p.x, small, sizeof(small));
    cr_assert_eq(n, (ssize_t)sizeof(small));
    cr_assert_eq(ioctl(p.x.fd, FIONREAD, &inq), 0);
    cr_assert_eq(inq, 0, "the socket is empty: every byte is in the session");
    cr_assert_eq(xconn_pending(&p.x), sizeof(msg) - sizeof(small));
    memcpy(got, small, sizeof(small));
    have = sizeof(small);
    while ((n = p.x.ops->rcv(&p.x, got + have, sizeof(got) - have)) > 0)
        have += (size_t)n;
    cr_assert_eq(n, -EAGAIN);
    cr_assert_eq(p.x.want, XPRT_WANT_IN);
    cr_assert_eq(have, sizeof(msg));
    cr_assert_eq(memcmp(got, msg, sizeof(msg)), 0);
    cr_assert_eq(xconn_pending(&p.x), 0);
    pair_close(&p);
}

/* shutw: close_notify then FIN; the peer reads a clean end of stream and
 * may still send, which the relay's side still reads. */
Test(xprt_tls, shutw_is_a_half_close)
{
    struct pair p;
    char buf[64];
    unsigned w;
    ssize_t n;

    pair_open(&p);
    cr_assert_eq(p.x.ops->snd(&p.x, "bye", 3), 3);
    cr_assert_eq(p.x.ops->shutw(&p.x), 0);
    cr_assert_eq(tls_conn_read(p.c, buf, sizeof(buf), &w), 3);
    n = tls_conn_read(p.c, buf, sizeof(buf), &w);
    cr_assert_eq(n, 0, "%zd", n);
    cr_assert(!tls_conn_truncated(p.c), "close_notify came before the FIN");
    cr_assert_eq(tls_conn_write(p.c, "still", 5, &w), 5);
    cr_assert_eq(p.x.ops->rcv(&p.x, buf, sizeof(buf)), 5);
    cr_assert_eq(memcmp(buf, "still", 5), 0);
    pair_close(&p);
}

Test(xprt_tls, close_frees_and_closes)
{
    struct pair p;
    int fd;

    pair_open(&p);
    fd = p.x.fd;
    p.x.ops->close(&p.x, true);
    cr_assert_eq(p.x.fd, -1);
    cr_assert_null(p.x.ctx);
    cr_assert_eq(fcntl(fd, F_GETFD), -1, "the fd is closed");
    tls_conn_free(p.c);
    close(p.fd[1]);
    tls_server_unref(p.srv);
    tls_client_unref(p.cli);
}
