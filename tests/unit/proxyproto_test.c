/* PROXY protocol v1/v2 parser; every input sits against a guard page. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <string.h>

#include "guard.h"
#include "proto/proxyproto.h"

static int parse(const void *in, size_t len, struct proxyproto *pp)
{
    struct guard g = {0};
    int rc = proxyproto_parse(guard_put(&g, in, len), len, pp);

    guard_free(&g);
    return rc;
}

static int parse_s(const char *s, struct proxyproto *pp)
{
    return parse(s, strlen(s), pp);
}

static const char V2SIG[] = "\r\n\r\n\0\r\nQUIT\n";

static size_t v2(unsigned char *b, unsigned char cmd, unsigned char fam, size_t alen)
{
    memcpy(b, V2SIG, 12);
    b[12] = cmd;
    b[13] = fam;
    b[14] = (unsigned char)(alen >> 8);
    b[15] = (unsigned char)alen;
    return 16 + alen;
}

Test(proxyproto, v1_tcp4)
{
    struct proxyproto pp;
    const char *s = "PROXY TCP4 192.0.2.7 127.0.0.1 40000 37791\r\nGET /";
    struct sockaddr_in *sin = (struct sockaddr_in *)&pp.src;

    cr_assert_eq(parse_s(s, &pp), (int)(strstr(s, "GET") - s));
    cr_assert_eq(pp.local, 0);
    cr_assert_eq(sin->sin_family, AF_INET);
    cr_assert_eq(ntohs(sin->sin_port), 40000);
    cr_assert_eq(ntohl(sin->sin_addr.s_addr), 0xc0000207);
}

Test(proxyproto, v1_tcp6_unknown)
{
    struct proxyproto pp;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&pp.src;

    cr_assert_eq(parse_s("PROXY TCP6 ::1 ::1 65535 1\r\n", &pp), 28);
    cr_assert_eq(sin6->sin6_family, AF_INET6);
    cr_assert_eq(ntohs(sin6->sin6_port), 65535);
    cr_assert(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
    cr_assert_eq(parse_s("PROXY UNKNOWN\r\n", &pp), 15);
    cr_assert_eq(pp.local, 1);
    cr_assert_eq(parse_s("PROXY UNKNOWN ffff::1 ::1 1 2\r\n", &pp), 31);
    cr_assert_eq(pp.local, 1);
}

Test(proxyproto, v1_incomplete)
{
    struct proxyproto pp;
    const char *s = "PROXY TCP4 192.0.2.7 127.0.0.1 40000 37791\r\n";
    size_t i;

    for (i = 0; i < strlen(s); i++)
        cr_assert_eq(parse(s, i, &pp), -2, "prefix %zu", i);
}

Test(proxyproto, v1_invalid)
{
    static const char *bad[] = {
        "GET / HTTP/1.1\r\n",
        "proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n",
        "PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n",
        "PROXY TCP4 1.2.3.4 1.2.3.4 1 2 \r\n",
        "PROXY TCP4  1.2.3.4 1.2.3.4 1 2\r\n",
        "PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n",
        "PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n",
        "PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n",
        "PROXY TCP4 1.2.3.4 1.2.3.4 01 2\r\n",
        "PROXY TCP4 1.2.3.4 1.2.3.4 1 x\r\n",
        "PROXY TCP4 1.2.3.256 1.2.3.4 1 2\r\n",
        "PROXY TCP4 ::1 ::1 1 2\r\n",
        "PROXY TCP6 1.2.3.4 1.2.3.4 1 2\r\n",
        "PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n",
        "PROXY \r\n",
        "PROXY TCP4 1.2.3.4 1.2.3.4 -1 2\r\n",
    };
    struct proxyproto pp;
    char longline[200];
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(parse_s(bad[i], &pp), -1, "%s", bad[i]);
    memset(longline, 'A', sizeof(longline));
    memcpy(longline, "PROXY ", 6);
    cr_assert_eq(parse(longline, PROXYPROTO_V1_MAX, &pp), -1);
    cr_assert_eq(parse(longline, PROXYPROTO_V1_MAX - 1, &pp), -2);
}

Test(proxyproto, v2_tcp4_tcp6_local)
{
    unsigned char b[128] = {0};
    struct proxyproto pp;
    struct sockaddr_in *sin = (struct sockaddr_in *)&pp.src;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&pp.src;
    size_t n = v2(b, 0x21, 0x11, 12);

    memcpy(b + 16, "\xc0\x00\x02\x07\x7f\x00\x00\x01\x9c\x40\x93\x9f", 12);
    b[n] = 'G';
    cr_assert_eq(parse(b, n + 1, &pp), (int)n);
    cr_assert_eq(pp.local, 0);
    cr_assert_eq(sin->sin_family, AF_INET);
    cr_assert_eq(ntohs(sin->sin_port), 40000);
    cr_assert_eq(ntohl(sin->sin_addr.s_addr), 0xc0000207);

    n = v2(b, 0x21, 0x21, 36 + 5); /* with a TLV tail */
    memset(b + 16, 0, 36);
    b[31] = 1;
    b[48] = 0x12;
    b[49] = 0x34;
    cr_assert_eq(parse(b, n, &pp), (int)n);
    cr_assert_eq(sin6->sin6_family, AF_INET6);
    cr_assert_eq(ntohs(sin6->sin6_port), 0x1234);
    cr_assert(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));

    n = v2(b, 0x20, 0x00, 0);
    cr_assert_eq(parse(b, n, &pp), 16);
    cr_assert_eq(pp.local, 1);
    n = v2(b, 0x21, 0x00, 0); /* PROXY + UNSPEC: keep the peer */
    cr_assert_eq(parse(b, n, &pp), 16);
    cr_assert_eq(pp.local, 1);
}

Test(proxyproto, v2_incomplete_and_invalid)
{
    unsigned char b[128] = {0};
    struct proxyproto pp;
    size_t n = v2(b, 0x21, 0x11, 12), i;

    for (i = 0; i < n; i++)
        cr_assert_eq(parse(b, i, &pp), -2, "prefix %zu", i);
    v2(b, 0x22, 0x11, 12); /* unknown command */
    cr_assert_eq(parse(b, n, &pp), -1);
    cr_assert_eq(parse(b, 13, &pp), -1);
    v2(b, 0x11, 0x11, 12); /* version 1 in binary form */
    cr_assert_eq(parse(b, n, &pp), -1);
    n = v2(b, 0x21, 0x11, 11); /* address block too short */
    cr_assert_eq(parse(b, n, &pp), -1);
    n = v2(b, 0x21, 0x21, 12);
    cr_assert_eq(parse(b, n, &pp), -1);
    memcpy(b, V2SIG, 12);
    b[11] = 'X'; /* broken signature */
    cr_assert_eq(parse(b, 16, &pp), -1);
    cr_assert_eq(parse("", 0, &pp), -2);
}
