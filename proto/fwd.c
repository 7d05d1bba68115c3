/* Trusted front ends and forwarded-for headers (see fwd.h). */
#include "proto/fwd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <strings.h>

#include "proto/proxyproto.h"

#define IP_TEXT_MAX 64

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Trims optional whitespace around s[0..*len). */
static const char *trim(const char *s, size_t *len)
{
    while (*len > 0 && is_ows(s[0])) {
        s++;
        (*len)--;
    }
    while (*len > 0 && is_ows(s[*len - 1]))
        (*len)--;
    return s;
}

/* "a.b.c.d", "a.b.c.d:port", "v6", "[v6]", "[v6]:port" -> *ss. */
static int parse_ip(const char *s, size_t n, struct sockaddr_storage *ss)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    const char *end = s + n, *c;
    char buf[IP_TEXT_MAX];
    unsigned short port = 0;

    memset(ss, 0, sizeof(*ss));
    if (n > 0 && s[0] == '[') {
        c = memchr(s, ']', n);
        if (c == NULL ||
            (c + 1 < end &&
             (c[1] != ':' || proxyproto_port(c + 2, (size_t)(end - c - 2), &port) != 0)))
            return -1;
        s++;
        n = (size_t)(c - s);
    } else if ((c = memchr(s, ':', n)) != NULL &&
               memchr(c + 1, ':', (size_t)(end - c - 1)) == NULL) {
        if (proxyproto_port(c + 1, (size_t)(end - c - 1), &port) != 0)
            return -1;
        n = (size_t)(c - s);
    }
    if (n == 0 || n >= sizeof(buf))
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (inet_pton(AF_INET, buf, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        return 0;
    }
    if (inet_pton(AF_INET6, buf, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        return 0;
    }
    return -1;
}

int fwd_cidr_parse(const char *s, size_t len, struct fwd_cidr *out)
{
    const char *slash = memchr(s, '/', len);
    size_t alen = slash != NULL ? (size_t)(slash - s) : len;
    char buf[IP_TEXT_MAX];
    unsigned max, p = 0;
    size_t i;

    memset(out, 0, sizeof(*out));
    if (alen == 0 || alen >= sizeof(buf))
        return -EINVAL;
    memcpy(buf, s, alen);
    buf[alen] = '\0';
    if (inet_pton(AF_INET, buf, out->addr) == 1)
        out->family = AF_INET, max = 32;
    else if (inet_pton(AF_INET6, buf, out->addr) == 1)
        out->family = AF_INET6, max = 128;
    else
        return -EINVAL;
    if (slash == NULL) {
        out->prefix = max;
        return 0;
    }
    for (i = alen + 1; i < len && i < alen + 4; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        p = p * 10 + (unsigned)(s[i] - '0');
    }
    if (i != len || i == alen + 1 || p > max)
        return -EINVAL;
    out->prefix = p;
    return 0;
}

int fwd_cidr_list_parse(const char *s, struct fwd_cidr *out, size_t cap)
{
    size_t n = 0, len;
    const char *e, *item;

    for (;;) {
        e = strchr(s, ',');
        len = e != NULL ? (size_t)(e - s) : strlen(s);
        item = trim(s, &len);
        if (len == 0 && e == NULL && n == 0)
            return 0;
        if (n == cap || fwd_cidr_parse(item, len, &out[n]) != 0)
            return -EINVAL;
        n++;
        if (e == NULL)
            return (int)n;
        s = e + 1;
    }
}

static int cidr_match(const struct fwd_cidr *c, const unsigned char *a)
{
    unsigned full = c->prefix / 8, rest = c->prefix % 8;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));

    if (memcmp(c->addr, a, full) != 0)
        return 0;
    return rest == 0 || ((c->addr[full] ^ a[full]) & mask) == 0;
}

int fwd_trusted(const struct fwd_cidr *l, size_t n, const struct sockaddr *sa)
{
    const unsigned char *a;
    sa_family_t fam = sa->sa_family;
    size_t i;

    if (fam == AF_INET) {
        a = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
    } else if (fam == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        a = a6->s6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a6)) {
            a += 12;
            fam = AF_INET;
        }
    } else {
        return 0;
    }
    for (i = 0; i < n; i++)
        if (l[i].family == fam && cidr_match(&l[i], a))
            return 1;
    return 0;
}

/* Walks v[0..len) right to left over ','-separated elements; get() turns an
 * element into an address. First untrusted address wins. */
static int rightmost(const char *v, size_t len, const struct fwd_cidr *l, size_t n,
                     struct sockaddr_storage *out,
                     int (*get)(const char *, size_t, struct sockaddr_storage *))
{
    size_t end = len, start;

    while (end > 0) {
        start = end;
        while (start > 0 && v[start - 1] != ',')
            start--;
        if (get(v + start, end - start, out) != 0)
            return -1;
        if (!fwd_trusted(l, n, (const struct sockaddr *)out))
            return 0;
        end = start > 0 ? start - 1 : 0;
    }
    return -1;
}

static int xff_get(const char *s, size_t len, struct sockaddr_storage *out)
{
    s = trim(s, &len);
    return parse_ip(s, len, out);
}

int fwd_xff(const char *v, size_t len, const struct fwd_cidr *l, size_t n,
            struct sockaddr_storage *out)
{
    return rightmost(v, len, l, n, out, xff_get);
}

/* One Forwarded element: "k=v;k=v", finds for=, unquotes. */
static int fwd_get(const char *s, size_t len, struct sockaddr_storage *out)
{
    const char *e = s + len, *p = s, *semi;
    size_t plen;

    while (p < e) {
        semi = memchr(p, ';', (size_t)(e - p));
        plen = (semi != NULL ? semi : e) - p;
        p = trim(p, &plen);
        if (plen > 4 && strncasecmp(p, "for=", 4) == 0) {
            p += 4;
            plen -= 4;
            if (p[0] == '"') {
                if (plen < 2 || p[plen - 1] != '"')
                    return -1;
                p++;
                plen -= 2;
            }
            return parse_ip(p, plen, out);
        }
        if (semi == NULL)
            break;
        p = semi + 1;
    }
    return -1;
}

int fwd_forwarded(const char *v, size_t len, const struct fwd_cidr *l, size_t n,
                  struct sockaddr_storage *out)
{
    return rightmost(v, len, l, n, out, fwd_get);
}
