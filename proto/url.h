/* rapi URLs (docs/PROTOCOL.md "URLs"): rws:// rwss:// (listener), rwr:// rwrs://
 * (client), wr:// wrs:// (dial-back), and space-separated client chains.
 * Pure: no allocation, no globals, thread-safe. */
#ifndef RAPI_PROTO_URL_H
#define RAPI_PROTO_URL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define URL_KEY_MAX 256
#define URL_HOST_MAX 256
#define URL_PATH_MAX 1024

enum url_scheme {
    URL_RWS = 1, /* listener */
    URL_RWSS,
    URL_RWR, /* client */
    URL_RWRS,
    URL_WR, /* dial-back */
    URL_WRS,
};

struct rapi_url {
    enum url_scheme scheme;
    bool tls;                /* rwss, rwrs, wrs */
    char key[URL_KEY_MAX];   /* userinfo before '@', "" when absent */
    char host[URL_HOST_MAX]; /* without brackets for IPv6 literals */
    bool host_is_v6;         /* host was a [bracketed] literal */
    uint16_t port;           /* explicit, or 80 / 443 by scheme */
    char path[URL_PATH_MAX]; /* "/..." including any query; "/" when absent */
};

/* Parse one URL s[0..len). Returns 0, or -EINVAL for: unknown scheme (case-
 * insensitive), empty host, bad or zero port, unterminated '[', characters
 * below 0x21 or above 0x7e anywhere, a key or host or path too long.
 * Details: the authority ends at the first '/' after "://"; the key is what
 * precedes its last '@' and is percent-decoded (%40 for '@', %2F for '/';
 * decoded bytes must be 0x21..0x7e); a host name is [A-Za-z0-9._~-]+, a
 * bracketed literal hex digits, ':' and '.' (no zone ids); the port is 1..5
 * digits, 1..65535. On error u is zeroed (no partial key left behind). */
int url_parse(const char *s, size_t len, struct rapi_url *u);

/* 1 when s[0..len) starts with a client scheme (rwr:// or rwrs://). */
int url_is_client(const char *s, size_t len);

/* Split the next element of a space-separated chain. *pos is the offset to
 * start from (0 first). Returns 1 and sets elem/elem_len (leading spaces
 * skipped) and advances *pos, or 0 when no element is left. Separators are
 * SP, HTAB, CR and LF; runs of them count as one. */
int url_chain_next(const char *chain, size_t len, size_t *pos, const char **elem, size_t *elem_len);

/* "host:port" / "[v6]:port" for the Host header (the port is always
 * written, default or not); NUL-terminated; returns length or -1. */
int url_hostport(const struct rapi_url *u, char *out, size_t cap);

#endif
