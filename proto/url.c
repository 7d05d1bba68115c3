/* rapi URLs (see url.h). */
#include "proto/url.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define URL_SEP "://"
#define URL_SEP_LEN (sizeof(URL_SEP) - 1)
#define URL_PORT_HTTP 80
#define URL_PORT_HTTPS 443
#define URL_PORT_MAX 65535u
#define URL_PORT_DIGITS_MAX 5
#define URL_PCT_LEN 3 /* %XX */

struct scheme_def {
    const char *name;
    enum url_scheme scheme;
    bool tls;
};

static const struct scheme_def schemes[] = {
    {"rws", URL_RWS, false},  {"rwss", URL_RWSS, true}, {"rwr", URL_RWR, false},
    {"rwrs", URL_RWRS, true}, {"wr", URL_WR, false},    {"wrs", URL_WRS, true},
};

static char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static bool ieq(const char *s, size_t len, const char *lit)
{
    if (strlen(lit) != len)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (lower(s[i]) != lit[i])
            return false;
    }
    return true;
}

/* Scheme before "://"; *pos set past the separator. */
static const struct scheme_def *parse_scheme(const char *s, size_t len, size_t *pos)
{
    for (size_t i = 0; i + URL_SEP_LEN <= len; i++) {
        if (memcmp(s + i, URL_SEP, URL_SEP_LEN) != 0)
            continue;
        for (size_t k = 0; k < sizeof(schemes) / sizeof(schemes[0]); k++) {
            if (ieq(s, i, schemes[k].name)) {
                *pos = i + URL_SEP_LEN;
                return &schemes[k];
            }
        }
        return NULL;
    }
    return NULL;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = lower(c);
    return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}

/* Userinfo is percent-decoded so keys may hold '@', '/' or ':'. */
static int copy_key(char *out, const char *s, size_t len)
{
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '%') {
            if (len - i < URL_PCT_LEN || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0)
                return -EINVAL;
            c = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            if ((unsigned char)c < 0x21 || (unsigned char)c > 0x7e)
                return -EINVAL;
            i += URL_PCT_LEN - 1;
        }
        if (n + 1 >= URL_KEY_MAX)
            return -EINVAL;
        out[n++] = c;
    }
    out[n] = '\0';
    return 0;
}

static int parse_port(const char *s, size_t len, uint16_t *port)
{
    unsigned v = 0;

    if (len == 0 || len > URL_PORT_DIGITS_MAX)
        return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v == 0 || v > URL_PORT_MAX)
        return -EINVAL;
    *port = (uint16_t)v;
    return 0;
}

static bool host_char(char c, bool v6)
{
    if (v6)
        return hexval(c) >= 0 || c == ':' || c == '.';
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

static int copy_host(struct rapi_url *u, const char *s, size_t len, bool v6)
{
    if (len == 0 || len >= URL_HOST_MAX)
        return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        if (!host_char(s[i], v6))
            return -EINVAL;
    }
    memcpy(u->host, s, len);
    u->host[len] = '\0';
    u->host_is_v6 = v6;
    return 0;
}

/* host[:port] or [v6][:port]. */
static int parse_hostport(struct rapi_url *u, const char *s, size_t len)
{
    const char *port = NULL;
    size_t port_len = 0;
    int r;

    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (close == NULL)
            return -EINVAL;
        r = copy_host(u, s + 1, (size_t)(close - s - 1), true);
        size_t rest = len - (size_t)(close - s) - 1;
        if (rest > 0 && close[1] != ':')
            return -EINVAL;
        if (rest > 0) {
            port = close + 2;
            port_len = rest - 1;
        }
    } else {
        const char *colon = memchr(s, ':', len);
        size_t host_len = colon ? (size_t)(colon - s) : len;
        r = copy_host(u, s, host_len, false);
        if (colon) {
            port = colon + 1;
            port_len = len - host_len - 1;
        }
    }
    if (r != 0)
        return r;
    if (port == NULL) {
        u->port = u->tls ? URL_PORT_HTTPS : URL_PORT_HTTP;
        return 0;
    }
    return parse_port(port, port_len, &u->port);
}

int url_parse(const char *s, size_t len, struct rapi_url *u)
{
    size_t pos = 0;

    memset(u, 0, sizeof(*u));
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return -EINVAL;
    }
    const struct scheme_def *def = parse_scheme(s, len, &pos);
    if (def == NULL)
        return -EINVAL;
    u->scheme = def->scheme;
    u->tls = def->tls;
    const char *slash = memchr(s + pos, '/', len - pos);
    size_t auth_end = slash ? (size_t)(slash - s) : len;
    size_t host_start = pos;
    for (size_t i = pos; i < auth_end; i++) {
        if (s[i] == '@')
            host_start = i + 1; /* the last '@' ends the userinfo */
    }
    int r = host_start > pos ? copy_key(u->key, s + pos, host_start - 1 - pos) : 0;
    if (r == 0)
        r = parse_hostport(u, s + host_start, auth_end - host_start);
    if (r == 0 && len - auth_end >= URL_PATH_MAX)
        r = -EINVAL;
    if (r != 0) {
        memset(u, 0, sizeof(*u)); /* leave no partial key behind */
        return r;
    }
    if (auth_end == len) {
        strcpy(u->path, "/");
    } else {
        memcpy(u->path, s + auth_end, len - auth_end);
        u->path[len - auth_end] = '\0';
    }
    return 0;
}

int url_is_client(const char *s, size_t len)
{
    static const char *const prefixes[] = {"rwr://", "rwrs://"};

    for (size_t k = 0; k < sizeof(prefixes) / sizeof(prefixes[0]); k++) {
        size_t n = strlen(prefixes[k]);
        if (len >= n && ieq(s, n, prefixes[k]))
            return 1;
    }
    return 0;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

int url_chain_next(const char *chain, size_t len, size_t *pos, const char **elem, size_t *elem_len)
{
    size_t i = *pos;

    while (i < len && is_space(chain[i]))
        i++;
    if (i >= len) {
        *pos = len;
        return 0;
    }
    size_t start = i;
    while (i < len && !is_space(chain[i]))
        i++;
    *elem = chain + start;
    *elem_len = i - start;
    *pos = i;
    return 1;
}

int url_hostport(const struct rapi_url *u, char *out, size_t cap)
{
    int n = u->host_is_v6 ? snprintf(out, cap, "[%s]:%u", u->host, (unsigned)u->port)
                          : snprintf(out, cap, "%s:%u", u->host, (unsigned)u->port);
    return (n < 0 || (size_t)n >= cap) ? -1 : n;
}
