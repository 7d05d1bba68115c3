/* Trusted front ends: CIDR lists, and the client address named by
 * X-Forwarded-For / Forwarded (RFC 7239) header values. Pure,
 * zero-allocation, thread-safe; the caller owns every buffer. */
#ifndef RAPI_PROTO_FWD_H
#define RAPI_PROTO_FWD_H

#include <stddef.h>
#include <sys/socket.h>

#define FWD_CIDR_TEXT_MAX 64 /* "ffff:...:ffff/128" fits, with NUL */

struct fwd_cidr {
    sa_family_t family; /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    unsigned prefix; /* 0..32 or 0..128 */
};

/* Parse "a.b.c.d[/n]" or "v6[/n]" (s[0..len)). Returns 0 or -EINVAL. */
int fwd_cidr_parse(const char *s, size_t len, struct fwd_cidr *out);

/* Parse "CIDR[,CIDR...]" (spaces allowed around commas) into out[0..cap).
 * Returns the count, or -EINVAL (bad entry or more than cap). "" gives 0. */
int fwd_cidr_list_parse(const char *s, struct fwd_cidr *out, size_t cap);

/* 1 if sa (AF_INET, AF_INET6; v4-mapped v6 counts as v4) is in the list. */
int fwd_trusted(const struct fwd_cidr *l, size_t n, const struct sockaddr *sa);

/* The right-most address of an X-Forwarded-For value (v[0..len)) that is
 * not itself trusted; port 0 (XFF carries none). Returns 0 and fills *out,
 * or -1 (empty, all trusted, or an element that is not an address: the
 * caller then keeps the peer address). */
int fwd_xff(const char *v, size_t len, const struct fwd_cidr *l, size_t n,
            struct sockaddr_storage *out);

/* Same rule for a Forwarded value's for= parameters; quoted forms
 * "[v6]:port" and "a.b.c.d:port" keep their port, bare ones get port 0. */
int fwd_forwarded(const char *v, size_t len, const struct fwd_cidr *l, size_t n,
                  struct sockaddr_storage *out);

#endif
