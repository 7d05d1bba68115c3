/* PROXY protocol v1/v2 parser (see proxyproto.h). */
#include "proto/proxyproto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#define V1_ADDR_MAX 46 /* INET6_ADDRSTRLEN */
#define V2_CMD_LOCAL 0x20
#define V2_CMD_PROXY 0x21
#define V2_FAM_TCP4 0x11
#define V2_FAM_TCP6 0x21
#define V2_ADDR4_LEN 12
#define V2_ADDR6_LEN 36

static const char v2_sig[12] = "\r\n\r\n\0\r\nQUIT\n";
static const char v1_sig[6] = "PROXY ";

/* Copies the token at *p (up to a space or the end e) into out; advances. */
static int v1_token(const char **p, const char *e, char *out, size_t cap)
{
    size_t n = 0;

    while (*p + n < e && (*p)[n] != ' ')
        n++;
    if (n == 0 || n >= cap)
        return -1;
    memcpy(out, *p, n);
    out[n] = '\0';
    *p += n;
    if (*p < e)
        (*p)++; /* the single separating space */
    return 0;
}

int proxyproto_port(const char *s, size_t n, unsigned short *port)
{
    unsigned v = 0;
    size_t i;

    if (n == 0 || n > 5 || (s[0] == '0' && n > 1))
        return -1;
    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return -1;
    *port = (unsigned short)v;
    return 0;
}

static int v1_fill(const char *proto, const char *src, const char *sport, struct proxyproto *out)
{
    unsigned short port;

    if (proxyproto_port(sport, strlen(sport), &port) != 0)
        return -1;
    if (strcmp(proto, "TCP4") == 0) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&out->src;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        out->src_len = sizeof(*sin);
        return inet_pton(AF_INET, src, &sin->sin_addr) == 1 ? 0 : -1;
    }
    if (strcmp(proto, "TCP6") == 0) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->src;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        out->src_len = sizeof(*sin6);
        return inet_pton(AF_INET6, src, &sin6->sin6_addr) == 1 ? 0 : -1;
    }
    return -1;
}

static int parse_v1(const char *buf, size_t len, struct proxyproto *out)
{
    char proto[8], src[V1_ADDR_MAX], dst[V1_ADDR_MAX], sport[8], dport[8];
    size_t lim = len < PROXYPROTO_V1_MAX ? len : PROXYPROTO_V1_MAX;
    const char *e = memchr(buf, '\n', lim);
    const char *p = buf + sizeof(v1_sig);
    unsigned short port;

    if (e == NULL)
        return len < PROXYPROTO_V1_MAX ? -2 : -1;
    if (e == buf || e[-1] != '\r')
        return -1;
    e--; /* at the CR */
    if (v1_token(&p, e, proto, sizeof(proto)) != 0)
        return -1;
    if (strcmp(proto, "UNKNOWN") == 0) { /* rest of line ignored (spec) */
        out->local = 1;
        return (int)(e - buf + 2);
    }
    if (v1_token(&p, e, src, sizeof(src)) != 0 || v1_token(&p, e, dst, sizeof(dst)) != 0 ||
        v1_token(&p, e, sport, sizeof(sport)) != 0 || v1_token(&p, e, dport, sizeof(dport)) != 0 ||
        p != e || e[-1] == ' ' || proxyproto_port(dport, strlen(dport), &port) != 0)
        return -1;
    if (v1_fill(proto, src, sport, out) != 0)
        return -1;
    return (int)(e - buf + 2);
}

static int v2_addr(const unsigned char *b, size_t alen, struct proxyproto *out)
{
    if (b[13] == V2_FAM_TCP4 && alen >= V2_ADDR4_LEN) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&out->src;
        sin->sin_family = AF_INET;
        memcpy(&sin->sin_addr, b + 16, 4);
        memcpy(&sin->sin_port, b + 24, 2);
        out->src_len = sizeof(*sin);
        return 0;
    }
    if (b[13] == V2_FAM_TCP6 && alen >= V2_ADDR6_LEN) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->src;
        sin6->sin6_family = AF_INET6;
        memcpy(&sin6->sin6_addr, b + 16, 16);
        memcpy(&sin6->sin6_port, b + 48, 2);
        out->src_len = sizeof(*sin6);
        return 0;
    }
    if (b[13] == V2_FAM_TCP4 || b[13] == V2_FAM_TCP6)
        return -1;  /* address block too short */
    out->local = 1; /* UNSPEC/UNIX/UDP: spec says use the real peer */
    return 0;
}

static int parse_v2(const char *buf, size_t len, struct proxyproto *out)
{
    const unsigned char *b = (const unsigned char *)buf;
    size_t alen;

    if (len < PROXYPROTO_V2_HDR)
        return (len <= 12 || b[12] == V2_CMD_LOCAL || b[12] == V2_CMD_PROXY) ? -2 : -1;
    if (b[12] != V2_CMD_LOCAL && b[12] != V2_CMD_PROXY)
        return -1;
    alen = (size_t)b[14] << 8 | b[15];
    if (len < PROXYPROTO_V2_HDR + alen)
        return -2;
    if (b[12] == V2_CMD_LOCAL)
        out->local = 1;
    else if (v2_addr(b, alen, out) != 0)
        return -1;
    return (int)(PROXYPROTO_V2_HDR + alen);
}

int proxyproto_parse(const char *buf, size_t len, struct proxyproto *out)
{
    size_t n;

    memset(out, 0, sizeof(*out));
    n = len < sizeof(v2_sig) ? len : sizeof(v2_sig);
    if (len > 0 && memcmp(buf, v2_sig, n) == 0)
        return len < sizeof(v2_sig) ? -2 : parse_v2(buf, len, out);
    n = len < sizeof(v1_sig) ? len : sizeof(v1_sig);
    if (len > 0 && memcmp(buf, v1_sig, n) == 0)
        return len < sizeof(v1_sig) ? -2 : parse_v1(buf, len, out);
    return len == 0 ? -2 : -1;
}
