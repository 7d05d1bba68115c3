/* The TLS transport (engine/xprt.h over tls/tls_ctx.h): an xconn whose
 * ctx is a struct tls_conn. Reads and writes go through the session (no
 * splice: the socket's bytes are not the stream's), shutw sends
 * close_notify then FIN, close frees the session and closes the fd.
 *
 * The acceptor makes the server context from the configuration
 * (xprt_tls_server_new), starts a session on an accepted socket
 * (xconn_init_tls) and drives its handshake (xprt_tls_handshake) before the
 * request head is read; the session then travels inside the xconn to the
 * shard (one thread at a time). A context is reference counted: each
 * session holds one, so a reload frees the old context with its last
 * connection. */
#ifndef RAPI_ENGINE_XPRT_TLS_H
#define RAPI_ENGINE_XPRT_TLS_H

#include <stddef.h>

#include "engine/conf.h"
#include "engine/xprt.h"
#include "tls/tls_ctx.h"

extern const struct xprt_ops xprt_tls;

/* The server context the configuration asks for (tls_cert/tls_key pairs,
 * tls_min_version, tls_ciphers). 0, or -errno with a message in err (never
 * key bytes); -ENOENT when no pair is configured. */
int xprt_tls_server_new(const struct conf *c, struct tls_server **out, char *err, size_t errlen);

/* Put fd on the TLS transport with a new server session of s. 0 or
 * -ENOMEM (c is left untouched: the caller still owns fd). */
int xconn_init_tls(struct xconn *c, int fd, struct tls_server *s);

/* Advance the handshake: 0 when complete, -EAGAIN (c->want set), -EPROTO
 * (tls_conn_err() of xconn_tls() says why), other -errno. */
int xprt_tls_handshake(struct xconn *c);

/* The session of a TLS xconn, NULL for another transport. */
struct tls_conn *xconn_tls(const struct xconn *c);

#endif
