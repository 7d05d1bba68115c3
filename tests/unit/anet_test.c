/* anet: socket, clock and file helpers (net/anet.c), on loopback and in a
 * private temporary directory. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "net/anet.h"

static struct sockaddr_storage loopback(void)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;

    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return ss;
}

/* A listener on 127.0.0.1, port 0; its address in *ss. */
static int listener(struct sockaddr_storage *ss, socklen_t *len)
{
    int fd;

    *ss = loopback();
    *len = sizeof(struct sockaddr_in);
    fd = anet_tcp_listen(ss, len, 8, ANET_NODELAY);
    cr_assert_geq(fd, 0, "listen: %s", strerror(-fd));
    cr_assert_neq(((struct sockaddr_in *)ss)->sin_port, 0, "bound port not reported");
    return fd;
}

static int int_opt(int fd, int level, int name)
{
    int v = -1;
    socklen_t l = sizeof(v);

    cr_assert_eq(getsockopt(fd, level, name, &v, &l), 0);
    return v;
}

Test(anet, clocks_are_monotonic_and_agree)
{
    uint64_t ms = anet_now_ms(), ns = anet_now_ns(), ms2;

    usleep(2000);
    ms2 = anet_now_ms();
    cr_expect_geq(ms2, ms + 2);
    cr_expect_geq(ns / 1000000u, ms);
    cr_expect_leq(ns / 1000000u, ms2);
}

Test(anet, nonblock_set_and_cleared)
{
    int p[2];

    cr_assert_eq(pipe(p), 0);
    cr_expect_eq(anet_set_nonblock(p[0], true), 0);
    cr_expect(fcntl(p[0], F_GETFL) & O_NONBLOCK);
    cr_expect_eq(anet_set_nonblock(p[0], false), 0);
    cr_expect_not(fcntl(p[0], F_GETFL) & O_NONBLOCK);
    cr_expect_eq(anet_set_cloexec(p[1]), 0);
    cr_expect(fcntl(p[1], F_GETFD) & FD_CLOEXEC);
    close(p[0]);
    close(p[1]);
    cr_expect_eq(anet_set_nonblock(p[0], true), -EBADF);
    cr_expect_eq(anet_set_cloexec(p[0]), -EBADF);
}

Test(anet, socket_flags)
{
    int fd = anet_tcp_socket(AF_INET, ANET_NONBLOCK | ANET_NODELAY);

    cr_assert_geq(fd, 0);
    cr_expect(fcntl(fd, F_GETFL) & O_NONBLOCK);
    cr_expect(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    cr_expect_eq(int_opt(fd, IPPROTO_TCP, TCP_NODELAY), 1);
    close(fd);
    fd = anet_tcp_socket(AF_INET, 0);
    cr_assert_geq(fd, 0);
    cr_expect_not(fcntl(fd, F_GETFL) & O_NONBLOCK);
    cr_expect_eq(int_opt(fd, IPPROTO_TCP, TCP_NODELAY), 0);
    close(fd);
    cr_expect_eq(anet_tcp_socket(-1, 0), -EAFNOSUPPORT);
}

Test(anet, linger_zero_makes_close_a_reset)
{
    struct sockaddr_storage ss;
    socklen_t len;
    struct linger lg;
    socklen_t ll = sizeof(lg);
    char b;
    int lfd = listener(&ss, &len), c, s;

    c = anet_tcp_connect_start((struct sockaddr *)&ss, len, 0);
    cr_assert_geq(c, 0, "connect: %s", strerror(-c));
    s = accept(lfd, NULL, NULL);
    cr_assert_geq(s, 0);
    cr_expect_eq(anet_linger_zero(s), 0);
    cr_assert_eq(getsockopt(s, SOL_SOCKET, SO_LINGER, &lg, &ll), 0);
    cr_expect(lg.l_onoff == 1 && lg.l_linger == 0);
    close(s);
    cr_expect_eq(read(c, &b, 1), -1, "a reset, not EOF");
    cr_expect_eq(errno, ECONNRESET);
    close(c);
    close(lfd);
}

Test(anet, nonblocking_connect_wait_and_sock_error)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int lfd = listener(&ss, &len), c;

    c = anet_tcp_connect_start((struct sockaddr *)&ss, len, ANET_NONBLOCK);
    cr_assert_geq(c, 0);
    cr_expect_eq(anet_connect_wait(c, 1000), 0);
    cr_expect_eq(anet_sock_error(c), 0);
    close(c);
    close(lfd);
    /* The port is free now: a connect there is refused. */
    c = anet_tcp_connect_start((struct sockaddr *)&ss, len, ANET_NONBLOCK);
    if (c >= 0) {
        cr_expect_eq(anet_connect_wait(c, 1000), -ECONNREFUSED);
        close(c);
    } else {
        cr_expect_eq(c, -ECONNREFUSED);
    }
    c = anet_tcp_connect_start((struct sockaddr *)&ss, len, 0);
    cr_expect_eq(c, -ECONNREFUSED, "blocking connect: %d", c);
}

Test(anet, connect_wait_times_out)
{
    /* A descriptor that never becomes writable: a pipe's read end. */
    int p[2];

    cr_assert_eq(pipe(p), 0);
    cr_expect_eq(anet_connect_wait(p[0], 50), -ETIMEDOUT);
    close(p[0]);
    close(p[1]);
}

Test(anet, listen_reuseport_and_v6only)
{
    struct sockaddr_storage ss = loopback(), ss2;
    socklen_t len = sizeof(struct sockaddr_in), len2 = len;
    struct sockaddr_in6 *in6;
    int a, b;

    a = anet_tcp_listen(&ss, &len, 4, ANET_REUSEPORT | ANET_NONBLOCK);
    cr_assert_geq(a, 0);
    ss2 = ss;
    b = anet_tcp_listen(&ss2, &len2, 4, ANET_REUSEPORT);
    cr_expect_geq(b, 0, "second SO_REUSEPORT listener on the same port: %s", strerror(-b));
    cr_expect_eq(int_opt(a, SOL_SOCKET, SO_REUSEPORT), 1);
    cr_expect(fcntl(a, F_GETFL) & O_NONBLOCK);
    close(b);
    /* Without SO_REUSEPORT the port is taken. */
    ss2 = ss;
    cr_expect_eq(anet_tcp_listen(&ss2, &len2, 4, 0), -EADDRINUSE);
    close(a);

    ss = (struct sockaddr_storage){0};
    in6 = (struct sockaddr_in6 *)&ss;
    in6->sin6_family = AF_INET6;
    in6->sin6_addr = in6addr_loopback;
    len = sizeof(*in6);
    a = anet_tcp_listen(&ss, &len, 4, ANET_V6ONLY);
    if (a == -EADDRNOTAVAIL || a == -EAFNOSUPPORT)
        cr_skip_test("no IPv6 loopback here");
    cr_assert_geq(a, 0);
    cr_expect_eq(int_opt(a, IPPROTO_IPV6, IPV6_V6ONLY), 1);
    close(a);
}

Test(anet, write_all_and_send_nb)
{
    static char big[1 << 20];
    char buf[16];
    size_t off = 0;
    int sv[2], rc;

    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    cr_expect_eq(anet_write_all(sv[0], "hello", 5), 0);
    cr_expect_eq(read(sv[1], buf, sizeof(buf)), 5);
    cr_expect_eq(memcmp(buf, "hello", 5), 0);
    /* send_nb on a blocking socket still never blocks: it stops at -EAGAIN
     * with *off telling how far it got. */
    rc = anet_send_nb(sv[0], big, sizeof(big), &off);
    cr_expect_eq(rc, -EAGAIN);
    cr_expect_gt(off, 0);
    cr_expect_lt(off, sizeof(big));
    close(sv[1]);
    signal(SIGPIPE, SIG_IGN);
    cr_expect_eq(anet_write_all(sv[0], "x", 1), -EPIPE);
    off = 0;
    cr_expect_eq(anet_send_nb(sv[0], "x", 1, &off), -EPIPE);
    close(sv[0]);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);

    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    chmod(path, mode);
}

Test(anet, read_file_limits_and_kinds)
{
    char dir[] = "/tmp/anet_test.XXXXXX", path[64], fifo[64], buf[8];
    unsigned mode = 0;
    unsigned long v = 0;

    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/f", dir);
    snprintf(fifo, sizeof(fifo), "%s/p", dir);
    write_file(path, "1234567", 0640);
    cr_expect_eq(anet_read_file(path, buf, sizeof(buf), &mode), 7);
    cr_expect_str_eq(buf, "1234567");
    cr_expect_eq(mode & 0777, 0640);
    write_file(path, "12345678", 0600);
    cr_expect_eq(anet_read_file(path, buf, sizeof(buf), NULL), -EFBIG, "no room for the NUL");
    write_file(path, "", 0600);
    cr_expect_eq(anet_read_file(path, buf, sizeof(buf), NULL), 0);
    cr_expect_str_eq(buf, "");
    cr_expect_eq(anet_read_file(path, buf, 0, NULL), -EINVAL);
    write_file(path, "  42\n", 0600);
    cr_expect_eq(anet_read_ulong(path, &v), 0);
    cr_expect_eq(v, 42);
    write_file(path, "x\n", 0600);
    cr_expect_eq(anet_read_ulong(path, &v), -EINVAL);
    /* A FIFO with no writer would block a plain open(): refused at once. */
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    cr_expect_eq(anet_read_file(fifo, buf, sizeof(buf), NULL), -EINVAL);
    cr_expect_eq(anet_read_file(dir, buf, sizeof(buf), NULL), -EINVAL);
    unlink(fifo);
    unlink(path);
    cr_expect_eq(anet_read_file(path, buf, sizeof(buf), NULL), -ENOENT);
    rmdir(dir);
}

Test(anet, read_ulong_from_proc)
{
    unsigned long v = 0;

    if (access("/proc/sys/fs/nr_open", R_OK) != 0)
        cr_skip_test("no /proc/sys/fs/nr_open");
    cr_expect_eq(anet_read_ulong("/proc/sys/fs/nr_open", &v), 0);
    cr_expect_gt(v, 0);
}
