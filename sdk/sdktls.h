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
#include <stdint.h>

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

/* Keep c's session (ticket) for host:port, for the next connection's
 * sdktls_conn: call it once data was read (TLS 1.3 tickets follow the
 * handshake). */
void sdktls_keep(struct sdktls *t, struct tls_conn *c, const char *host, unsigned port);

struct sdktls_stats {
    uint64_t up, down; /* bytes app -> relay, relay -> app */
    bool reset;        /* a side failed: ended abortively, not with a FIN */
};

/* Move bytes between the TLS connection c and the application side (app_rd
 * and app_wr: one socket, or two fds such as stdin/stdout, made
 * non-blocking for the run) in this thread, until both directions ended,
 * or with stop_on_relay_eof once the relay's stream ended and was
 * delivered. Half-closes cross both ways (app EOF -> close_notify + FIN;
 * relay EOF -> shutdown(app_wr, SHUT_WR)); an error on either side ends
 * both and leaves SO_LINGER 0 on the sockets (their close is a reset). The
 * caller keeps c and every fd. 0 or -errno (st says what moved). */
int sdktls_pump_run(struct tls_conn *c, int app_rd, int app_wr, bool stop_on_relay_eof,
                    struct sdktls_stats *st);

/* The same on a detached thread that takes c and its fd over: returns the
 * caller's end of a socketpair (close-on-exec, non-blocking) standing for
 * the connection, or -errno with err filled (c and its fd are then still
 * the caller's). */
int sdktls_pump(struct tls_conn *c, struct rapi_error *err);

#endif
