/* Socket address text forms: "127.0.0.1:37791" and "[::1]:37791".
 * Pure (no sockets opened), thread-safe. */
#ifndef RAPI_PROTO_ADDR_H
#define RAPI_PROTO_ADDR_H

#include <stddef.h>
#include <sys/socket.h>

#define ADDR_STR_MAX 64 /* "[ffff:...:ffff]:65535" fits, with NUL */

/* Parse "a.b.c.d:port", "[v6]:port" (numeric only; port 0..65535,
 * 0 meaning "any free port" for a listen address, so callers that connect
 * must refuse it; "*" or
 * "0.0.0.0" allowed as host for any-address). Returns 0 or -EINVAL. */
int addr_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len);

/* Format sa as "a.b.c.d:port" or "[v6]:port" (a v4-mapped v6 address is
 * shown as v4). Returns the length (NUL-terminated) or -1. */
int addr_format(const struct sockaddr *sa, char *out, size_t cap);

#endif
