/* TLS for librapi's relay connections (rwss://, rwrs://, wrs://): one
 * struct sdktls per listener or connector (a wolfSSL client context with the
 * CA store, plus resumable sessions per relay host:port), and the pump that
 * turns a finished TLS connection into a plain descriptor for the caller.
 *
 * Ownership and threads: sdktls is reference counted (atomic); its session
 * cache is locked, so the owner's thread and the pump threads may use it at
 * once. sdktls_pump() takes over the TLS connection and its fd: a detached
 * thread owns them (and a reference to the sdktls) until both directions
 * are closed. The descriptor it returns belongs to the caller. */
#ifndef RAPI_SDK_SDKTLS_H
#define RAPI_SDK_SDKTLS_H

#include <stdbool.h>
#include <stddef.h>

#include "sdk/rapi.h"
#include "tls/tls_ctx.h"

#define SDKTLS_CA_ENV "RAPI_CA_FILE" /* CA file when the options give none */
#define SDKTLS_SESSIONS 8            /* relay host:port sessions kept per sdktls */
#define SDKTLS_BUF (64 << 10)        /* pump buffer per direction */
#define SDKTLS_STACK (128 << 10)     /* pump thread stack (buffers are on the heap) */

struct sdktls;

/* A client context verifying against ca_file (NULL: $RAPI_CA_FILE, else
 * the system store). 0, or -errno with err filled (RAPI_E_TLS). */
int sdktls_new(const char *ca_file, struct sdktls **out, struct rapi_error *err);
struct sdktls *sdktls_ref(struct sdktls *t);
void sdktls_unref(struct sdktls *t); /* NULL is ok */

/* A client connection on fd to host (verified, SNI unless an IP literal),
 * resuming the session kept for host:port when there is one. 0 or -ENOMEM. */
int sdktls_conn(struct sdktls *t, int fd, const char *host, unsigned port, struct tls_conn **out);

/* err for a failed handshake (rc from tls_conn_handshake): RAPI_E_TLS with
 * the reason for a TLS failure, RAPI_E_CLOSED for a lost connection.
 * Returns the -errno to hand back. */
int sdktls_fail(struct tls_conn *c, int rc, const char *where, struct rapi_error *err);

/* Hand a finished connection (and its fd) to a pump thread; the session is
 * kept for host:port once the first bytes arrive. Returns the caller's end
 * of a socketpair (close-on-exec, non-blocking), or -errno with err filled;
 * on failure c and its fd are still the caller's. */
int sdktls_pump(struct sdktls *t, struct tls_conn *c, const char *host, unsigned port,
                struct rapi_error *err);

#endif
