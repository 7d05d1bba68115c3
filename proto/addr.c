/* Socket address text forms (see addr.h). inet_pton/inet_ntop do the
 * numeric work; this file only splits host and port. */
#include "proto/addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#define ADDR_PORT_MAX 65535u
#define ADDR_PORT_DIGITS_MAX 5
#define ADDR_ANY "*"

static int parse_port(const char *s, uint16_t *port)
{
    size_t len = strlen(s);
    unsigned v = 0;

    if (len == 0 || len > ADDR_PORT_DIGITS_MAX)
        return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > ADDR_PORT_MAX)
        return -EINVAL;
    *port = (uint16_t)v;
    return 0;
}

/* Copy s[0..n) into a NUL-terminated host buffer. */
static int copy_host(char host[ADDR_STR_MAX], const char *s, size_t n)
{
    if (n == 0 || n >= ADDR_STR_MAX)
        return -EINVAL;
    memcpy(host, s, n);
    host[n] = '\0';
    return 0;
}

static int parse_v6(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    char host[ADDR_STR_MAX];
    const char *close = strchr(s, ']');
    uint16_t port;

    if (close == NULL || close[1] != ':' || copy_host(host, s + 1, (size_t)(close - s - 1)) != 0 ||
        parse_port(close + 2, &port) != 0 || inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
        return -EINVAL;
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    *len = sizeof(*sin6);
    return 0;
}

static int parse_v4(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    char host[ADDR_STR_MAX];
    const char *colon = strrchr(s, ':');
    uint16_t port;

    if (colon == NULL || copy_host(host, s, (size_t)(colon - s)) != 0 ||
        parse_port(colon + 1, &port) != 0)
        return -EINVAL;
    if (strcmp(host, ADDR_ANY) == 0)
        sin->sin_addr.s_addr = htonl(INADDR_ANY);
    else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
        return -EINVAL;
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    *len = sizeof(*sin);
    return 0;
}

int addr_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
    int r;

    memset(ss, 0, sizeof(*ss));
    *len = 0;
    if (s == NULL)
        return -EINVAL;
    r = s[0] == '[' ? parse_v6(s, ss, len) : parse_v4(s, ss, len);
    if (r != 0) {
        memset(ss, 0, sizeof(*ss));
        *len = 0;
    }
    return r;
}

static int finish(int n, size_t cap)
{
    return (n < 0 || (size_t)n >= cap) ? -1 : n;
}

int addr_format(const struct sockaddr *sa, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN];

    if (sa == NULL || out == NULL)
        return -1;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        if (inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host)) == NULL)
            return -1;
        return finish(snprintf(out, cap, "%s:%u", host, (unsigned)ntohs(sin->sin_port)), cap);
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        unsigned port = ntohs(sin6->sin6_port);
        if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
            /* The last four bytes are the IPv4 address. */
            if (inet_ntop(AF_INET, &sin6->sin6_addr.s6_addr[12], host, sizeof(host)) == NULL)
                return -1;
            return finish(snprintf(out, cap, "%s:%u", host, port), cap);
        }
        if (inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host)) == NULL)
            return -1;
        return finish(snprintf(out, cap, "[%s]:%u", host, port), cap);
    }
    return -1;
}
