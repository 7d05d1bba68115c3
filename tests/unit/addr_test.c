/* Socket address text forms. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "proto/addr.h"

Test(addr, parse_v4)
{
    struct sockaddr_storage ss;
    socklen_t len;
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

    cr_assert_eq(addr_parse("127.0.0.1:37791", &ss, &len), 0);
    cr_assert_eq(len, sizeof(struct sockaddr_in));
    cr_assert_eq(sin->sin_family, AF_INET);
    cr_assert_eq(ntohs(sin->sin_port), 37791);
    cr_assert_eq(ntohl(sin->sin_addr.s_addr), 0x7f000001);
    cr_assert_eq(addr_parse("*:80", &ss, &len), 0);
    cr_assert_eq(sin->sin_addr.s_addr, htonl(INADDR_ANY));
    cr_assert_eq(addr_parse("0.0.0.0:65535", &ss, &len), 0);
    cr_assert_eq(ntohs(sin->sin_port), 65535);
}

Test(addr, parse_v6)
{
    struct sockaddr_storage ss;
    socklen_t len;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

    cr_assert_eq(addr_parse("[::1]:37791", &ss, &len), 0);
    cr_assert_eq(len, sizeof(struct sockaddr_in6));
    cr_assert_eq(sin6->sin6_family, AF_INET6);
    cr_assert_eq(ntohs(sin6->sin6_port), 37791);
    cr_assert(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
    cr_assert_eq(addr_parse("[::]:1", &ss, &len), 0);
    cr_assert(IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr));
    cr_assert_eq(addr_parse("[::ffff:10.0.0.1]:2", &ss, &len), 0);
    cr_assert(IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr));
}

Test(addr, port_zero_means_any_port)
{
    struct sockaddr_storage ss;
    socklen_t len;

    cr_assert_eq(addr_parse("127.0.0.1:0", &ss, &len), 0);
    cr_assert_eq(((struct sockaddr_in *)&ss)->sin_port, 0);
    cr_assert_eq(addr_parse("[::1]:0", &ss, &len), 0);
    cr_assert_eq(((struct sockaddr_in6 *)&ss)->sin6_port, 0);
}

Test(addr, parse_rejects)
{
    static const char *const bad[] = {
        "",           "127.0.0.1",   "127.0.0.1:",     "127.0.0.1:65536",
        "1.2.3.4:8x", "1.2.3:80",    "256.0.0.1:80",   "host:80",
        ":80",        "::1:80",      "[::1]",          "[::1]:",
        "[::1]80",    "[::1:80",     "[]:80",          "[1.2.3.4]:80",
        "1.2.3.4:-1", "1.2.3.4:+80", "1.2.3.4:123456", "[fe80::1%lo]:80",
        "**:80",      " 1.2.3.4:80",
    };
    struct sockaddr_storage ss;
    socklen_t len;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(addr_parse(bad[i], &ss, &len), -EINVAL, "case %zu: %s", i, bad[i]);
        cr_assert_eq(len, 0);
    }
    cr_assert_eq(addr_parse(NULL, &ss, &len), -EINVAL);
}

static void roundtrip(const char *in, const char *want)
{
    struct sockaddr_storage ss;
    socklen_t len;
    char out[ADDR_STR_MAX];

    cr_assert_eq(addr_parse(in, &ss, &len), 0, "%s", in);
    cr_assert_eq(addr_format((struct sockaddr *)&ss, out, sizeof(out)), (int)strlen(want));
    cr_assert_str_eq(out, want);
}

Test(addr, format)
{
    roundtrip("127.0.0.1:57216", "127.0.0.1:57216");
    roundtrip("*:80", "0.0.0.0:80");
    roundtrip("[::1]:37791", "[::1]:37791");
    roundtrip("[2001:DB8:0:0:0:0:0:1]:9", "[2001:db8::1]:9");
    roundtrip("[::ffff:10.1.2.3]:4444", "10.1.2.3:4444"); /* v4-mapped shown as v4 */
    roundtrip("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
              "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535");
}

Test(addr, format_limits)
{
    struct sockaddr_storage ss;
    socklen_t len;
    char out[ADDR_STR_MAX];

    cr_assert_eq(addr_parse("10.0.0.1:80", &ss, &len), 0);
    cr_assert_eq(addr_format((struct sockaddr *)&ss, out, 11), -1);
    cr_assert_eq(addr_format((struct sockaddr *)&ss, out, 12), 11);
    memset(&ss, 0, sizeof(ss));
    ss.ss_family = AF_UNIX;
    cr_assert_eq(addr_format((struct sockaddr *)&ss, out, sizeof(out)), -1);
    cr_assert_eq(addr_format(NULL, out, sizeof(out)), -1);
}
