/* PROXY protocol v2 encoding (sdk/proxyv2.c), byte-exact. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <sys/un.h>

#include "sdk/proxyv2.c"

static const uint8_t sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

static struct sockaddr_in v4(const char *ip, uint16_t port)
{
    struct sockaddr_in s = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, ip, &s.sin_addr);
    return s;
}

static struct sockaddr_in6 v6(const char *ip, uint16_t port)
{
    struct sockaddr_in6 s = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
    inet_pton(AF_INET6, ip, &s.sin6_addr);
    return s;
}

Test(proxyv2, ipv4_exact)
{
    struct sockaddr_in a = v4("192.0.2.1", 57216), b = v4("127.0.0.1", 37791);
    uint8_t out[RAPI_PROXYV2_MAX];
    static const uint8_t want[] = {
        0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, /* signature */
        0x21, 0x11, 0x00, 0x0c,                      /* v2 PROXY, TCP4, 12 */
        192,  0,    2,    1,    127,  0,    0,    1, /* src, dst */
        0xdf, 0x80, 0x93, 0x9f,                      /* 57216, 37791 */
    };

    cr_assert_eq(rapi_proxyv2_build(out, sizeof(out), (struct sockaddr *)&a, (struct sockaddr *)&b),
                 (int)sizeof(want));
    cr_expect_arr_eq(out, want, sizeof(want));
}

Test(proxyv2, ipv6_exact)
{
    struct sockaddr_in6 a = v6("2001:db8::1", 443), b = v6("::1", 8080);
    uint8_t out[RAPI_PROXYV2_MAX], want[52] = {0};

    memcpy(want, sig, 12);
    want[12] = 0x21;
    want[13] = 0x21;
    want[15] = 36;
    want[16] = 0x20;
    want[17] = 0x01;
    want[18] = 0x0d;
    want[19] = 0xb8;
    want[31] = 1;
    want[47] = 1;
    want[48] = 0x01; /* 443 */
    want[49] = 0xbb;
    want[50] = 0x1f; /* 8080 */
    want[51] = 0x90;
    cr_assert_eq(rapi_proxyv2_build(out, sizeof(out), (struct sockaddr *)&a, (struct sockaddr *)&b),
                 52);
    cr_expect_arr_eq(out, want, 52);
}

Test(proxyv2, mixed_families_as_v4_mapped_v6)
{
    struct sockaddr_in a = v4("10.1.2.3", 1);
    struct sockaddr_in6 b = v6("::1", 2);
    uint8_t out[RAPI_PROXYV2_MAX];
    static const uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3};

    cr_assert_eq(rapi_proxyv2_build(out, sizeof(out), (struct sockaddr *)&a, (struct sockaddr *)&b),
                 52);
    cr_expect_eq(out[13], 0x21);
    cr_expect_arr_eq(out + 16, mapped, 16);
}

Test(proxyv2, local_without_source)
{
    uint8_t out[16];

    cr_assert_eq(rapi_proxyv2_build(out, sizeof(out), NULL, NULL), 16);
    cr_expect_arr_eq(out, sig, 12);
    cr_expect_eq(out[12], 0x20);
    cr_expect_eq(out[13], 0x00);
    cr_expect_eq(out[14], 0);
    cr_expect_eq(out[15], 0);
}

Test(proxyv2, rejects)
{
    struct sockaddr_in a = v4("127.0.0.1", 1);
    struct sockaddr_in6 b = v6("::1", 2);
    struct sockaddr_un u = {.sun_family = AF_UNIX};
    uint8_t out[RAPI_PROXYV2_MAX];

    cr_expect_eq(rapi_proxyv2_build(out, 27, (struct sockaddr *)&a, (struct sockaddr *)&a),
                 -ENOSPC);
    cr_expect_eq(rapi_proxyv2_build(out, 51, (struct sockaddr *)&b, (struct sockaddr *)&b),
                 -ENOSPC);
    cr_expect_eq(rapi_proxyv2_build(out, 15, NULL, NULL), -ENOSPC);
    cr_expect_eq(rapi_proxyv2_build(out, sizeof(out), (struct sockaddr *)&u, (struct sockaddr *)&a),
                 -EINVAL);
    cr_expect_eq(rapi_proxyv2_build(out, sizeof(out), (struct sockaddr *)&a, NULL), -EINVAL);
}
