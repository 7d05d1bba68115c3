/* engine/peeraddr.c: the PROXY header phase through a scripted recv (what is
 * in the socket, what a peek sees, exactly what is taken), and the
 * X-Forwarded-For / Forwarded choice over several header lines. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "engine/peeraddr.h"
#include "proto/addr.h"

#define SOCK_MAX 4096

/* The fake socket: bytes waiting in it, and what the phase took. */
static char sock[SOCK_MAX];
static size_t sock_len, taken, peeks;
static int fail_errno, eintr_left;

static ssize_t fake_recv(int fd, void *buf, size_t len, int flags)
{
    size_t n;

    (void)fd;
    if (eintr_left > 0) {
        eintr_left--;
        errno = EINTR;
        return -1;
    }
    if (fail_errno) {
        errno = fail_errno;
        return -1;
    }
    if (sock_len == taken) {
        errno = EAGAIN;
        return -1;
    }
    n = sock_len - taken < len ? sock_len - taken : len;
    memcpy(buf, sock + taken, n);
    if (flags & MSG_PEEK)
        peeks++;
    else
        taken += n;
    return (ssize_t)n;
}

static void put(const void *p, size_t n)
{
    cr_assert_leq(sock_len + n, sizeof(sock));
    memcpy(sock + sock_len, p, n);
    sock_len += n;
}

static void reset(void)
{
    sock_len = taken = peeks = 0;
    fail_errno = eintr_left = 0;
}

TestSuite(peeraddr, .init = reset);

static const char *src_text(const struct proxyproto *pp)
{
    static char txt[ADDR_STR_MAX];

    cr_assert_gt(addr_format((const struct sockaddr *)&pp->src, txt, sizeof(txt)), 0);
    return txt;
}

Test(peeraddr, v1_split_then_exactly_its_bytes_taken)
{
    static const char hdr[] = "PROXY TCP4 203.0.113.7 127.0.0.1 51234 37791\r\n";
    static const char head[] = "GET / HTTP/1.1\r\n";
    struct proxyproto pp;

    put(hdr, 10);
    cr_assert_eq(peeraddr_proxy_read(0, fake_recv, &pp), 0, "partial: wait");
    cr_assert_eq(taken, 0, "nothing taken while waiting");
    put(hdr + 10, sizeof(hdr) - 1 - 10);
    put(head, sizeof(head) - 1);
    eintr_left = 1;
    cr_assert_eq(peeraddr_proxy_read(0, fake_recv, &pp), 1);
    cr_assert_eq(taken, sizeof(hdr) - 1, "the head stays in the socket");
    cr_assert_eq(pp.local, 0);
    cr_assert_str_eq(src_text(&pp), "203.0.113.7:51234");
}

Test(peeraddr, v2_local_and_tlv)
{
    static const unsigned char v2[] = {'\r', '\n', '\r', '\n', 0,    '\r', '\n', 'Q', 'U', 'I',
                                       'T',  '\n', 0x20, 0x00, 0x00, 0x03, 1,    2,   3,   'x'};
    struct proxyproto pp;

    put(v2, sizeof(v2));
    cr_assert_eq(peeraddr_proxy_read(0, fake_recv, &pp), 1);
    cr_assert_eq(pp.local, 1);
    cr_assert_eq(taken, sizeof(v2) - 1);
}

Test(peeraddr, v2_announcing_too_much_refused_at_once)
{
    unsigned char v2[16] = {'\r', '\n', '\r', '\n', 0,    '\r', '\n',
                            'Q',  'U',  'I',  'T',  '\n', 0x21, 0x11};
    struct proxyproto pp;
    size_t body = PEERADDR_PROXY_MAX - PROXYPROTO_V2_HDR;

    v2[14] = (unsigned char)(body >> 8);
    v2[15] = (unsigned char)body;
    put(v2, sizeof(v2));
    cr_assert_eq(peeraddr_proxy_read(0, fake_recv, &pp), 0, "exactly the limit: wait for it");
    body++;
    v2[14] = (unsigned char)(body >> 8);
    v2[15] = (unsigned char)body;
    reset();
    put(v2, sizeof(v2));
    cr_assert_eq(peeraddr_proxy_read(0, fake_recv, &pp), -EPROTO, "one byte over");
    cr_assert_eq(taken, 0);
}

Test(peeraddr, invalid_eof_and_errors)
{
    struct proxyproto pp;
    char junk[PEERADDR_PROXY_MAX + 8];

    put("GET / HTTP/1.1\r\n", 16);
    cr_assert_eq(peeraddr_proxy_read(0, fake_recv, &pp), -EPROTO);
    reset();
    cr_assert_eq(peeraddr_proxy_read(0, fake_recv, &pp), 0, "nothing yet");
    fail_errno = ECONNRESET;
    cr_assert_eq(peeraddr_proxy_read(0, fake_recv, &pp), -ECONNRESET);
    reset();
    /* A v1 line with no end within the limit. */
    memset(junk, 'A', sizeof(junk));
    memcpy(junk, "PROXY ", 6);
    put(junk, sizeof(junk));
    cr_assert_eq(peeraddr_proxy_read(0, fake_recv, &pp), -EPROTO);
}

static ssize_t eof_recv(int fd, void *buf, size_t len, int flags)
{
    (void)fd, (void)buf, (void)len, (void)flags;
    return 0;
}

Test(peeraddr, peer_closed)
{
    struct proxyproto pp;

    cr_assert_eq(peeraddr_proxy_read(0, eof_recv, &pp), -EPIPE);
}

/* ------------------------------------------------------------ headers */

static struct fwd_cidr L[2];
static size_t NL;

static const char *fwd(struct http1_header *h, size_t n)
{
    static char txt[ADDR_STR_MAX];
    struct http1_request req = {.headers = h, .num_headers = n};
    struct sockaddr_storage ss;

    if (NL == 0)
        NL = (size_t)fwd_cidr_list_parse("127.0.0.1, 10.0.0.0/8", L, 2);
    if (peeraddr_forwarded(&req, L, NL, &ss) != 0)
        return "-";
    cr_assert_gt(addr_format((struct sockaddr *)&ss, txt, sizeof(txt)), 0);
    return txt;
}

#define H(n, v)                                                                                    \
    {                                                                                              \
        n, sizeof(n) - 1, v, sizeof(v) - 1                                                         \
    }

Test(peeraddr, xff_lines_joined_in_order)
{
    struct http1_header one[] = {H("Host", "x"), H("X-Forwarded-For", "6.6.6.6, 203.0.113.7")};
    struct http1_header two[] = {H("x-forwarded-for", "203.0.113.8"), H("Host", "x"),
                                 H("X-FORWARDED-FOR", "10.0.0.1, 10.0.0.2")};
    struct http1_header bad_last[] = {H("X-Forwarded-For", "203.0.113.8"),
                                      H("X-Forwarded-For", "junk")};

    cr_assert_str_eq(fwd(one, 2), "203.0.113.7:0");
    cr_assert_str_eq(fwd(two, 3), "203.0.113.8:0");
    cr_assert_str_eq(fwd(bad_last, 2), "-");
}

Test(peeraddr, forwarded_only_without_xff)
{
    struct http1_header fw[] = {H("Forwarded", "for=6.6.6.6"),
                                H("Forwarded", "for=\"[2001:db8::1]:4711\", for=10.0.0.9")};
    struct http1_header both[] = {H("Forwarded", "for=6.6.6.6"), H("X-Forwarded-For", "junk")};
    struct http1_header none[] = {H("Host", "x"), H("X-Forwarded-Host", "1.2.3.4")};

    cr_assert_str_eq(fwd(fw, 2), "[2001:db8::1]:4711");
    cr_assert_str_eq(fwd(both, 2), "-", "a bad X-Forwarded-For does not fall back to Forwarded");
    cr_assert_str_eq(fwd(none, 2), "-");
}
