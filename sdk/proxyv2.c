/* PROXY protocol v2 header (haproxy's proxy-protocol.txt, section 2.2).
 * Pure, thread-safe. */
#define RAPI_BUILDING 1
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "sdk/rapi.h"

#define PP2_SIG "\r\n\r\n\0\r\nQUIT\n"
#define PP2_SIG_LEN 12
#define PP2_HDR_LEN 16
#define PP2_VER_LOCAL 0x20
#define PP2_VER_PROXY 0x21
#define PP2_TCP4 0x11
#define PP2_TCP6 0x21
#define PP2_ADDR4_LEN 12
#define PP2_ADDR6_LEN 36

/* An address as 16 bytes of IPv6 (v4-mapped for IPv4) and a port. */
static int as_v6(const struct sockaddr *sa, uint8_t addr[16], uint16_t *port)
{
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        memcpy(addr, &s6->sin6_addr, 16);
        *port = s6->sin6_port;
        return 0;
    }
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        memset(addr, 0, 10);
        addr[10] = 0xff;
        addr[11] = 0xff;
        memcpy(addr + 12, &s4->sin_addr, 4);
        *port = s4->sin_port;
        return 0;
    }
    return -EINVAL;
}

static void put_header(uint8_t *out, uint8_t ver_cmd, uint8_t fam, uint16_t len)
{
    memcpy(out, PP2_SIG, PP2_SIG_LEN);
    out[12] = ver_cmd;
    out[13] = fam;
    out[14] = (uint8_t)(len >> 8);
    out[15] = (uint8_t)len;
}

RAPI_API int rapi_proxyv2_build(uint8_t *out, size_t cap, const struct sockaddr *src,
                                const struct sockaddr *dst)
{
    uint8_t a[16], b[16];
    uint16_t ap, bp;

    if (out == NULL || cap < PP2_HDR_LEN)
        return -ENOSPC;
    if (src == NULL || src->sa_family == AF_UNSPEC) {
        put_header(out, PP2_VER_LOCAL, 0x00, 0);
        return PP2_HDR_LEN;
    }
    if (dst == NULL || as_v6(src, a, &ap) < 0 || as_v6(dst, b, &bp) < 0)
        return -EINVAL;
    if (src->sa_family == AF_INET && dst->sa_family == AF_INET) {
        if (cap < PP2_HDR_LEN + PP2_ADDR4_LEN)
            return -ENOSPC;
        put_header(out, PP2_VER_PROXY, PP2_TCP4, PP2_ADDR4_LEN);
        memcpy(out + 16, a + 12, 4);
        memcpy(out + 20, b + 12, 4);
        memcpy(out + 24, &ap, 2); /* already network order */
        memcpy(out + 26, &bp, 2);
        return PP2_HDR_LEN + PP2_ADDR4_LEN;
    }
    if (cap < PP2_HDR_LEN + PP2_ADDR6_LEN)
        return -ENOSPC;
    put_header(out, PP2_VER_PROXY, PP2_TCP6, PP2_ADDR6_LEN);
    memcpy(out + 16, a, 16);
    memcpy(out + 32, b, 16);
    memcpy(out + 48, &ap, 2);
    memcpy(out + 50, &bp, 2);
    return PP2_HDR_LEN + PP2_ADDR6_LEN;
}
