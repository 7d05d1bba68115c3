/* librapi internals shared by the listener, the connector and the CLI's
 * tests: errors, backoff, relay sockets, request heads. Nothing here is
 * exported from librapi (hidden visibility, localized in librapi.a).
 * Pure helpers are thread-safe; a struct hs belongs to one socket. */
#ifndef RAPI_SDK_INT_H
#define RAPI_SDK_INT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "net/anet.h"
#include "proto/addr.h"
#include "proto/url.h"
#include "proto/webroute.h"
#include "proto/ws.h"
#include "sdk/rapi.h"

#define HS_MAX 4096  /* largest answer head + error body we read */
#define REQ_MAX 3072 /* largest request head we build */
#define WR_ID_LEN 64 /* our WebRoute-IDs: 64 chars like the original */
#define RELAY_PORT_STR 8
#define RELAY_ADDRS_MAX 16 /* addresses of one relay host name we use */
#define WHERE_MAX (URL_HOST_MAX + 16 + ADDR_STR_MAX + 4) /* "host:port (addr)" */

/* ---- errors (sdkerr.c) */
void err_set(struct rapi_error *err, int code, int sys_errno, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Fill err from a relay's non-101 answer (head + body). Returns -errno to
 * hand back for it. */
int err_from_answer(struct rapi_error *err, int status, const char *body, size_t body_len);
/* The -errno a code is reported with. */
int err_errno(int code, int sys_errno);
/* Whether a connect that failed with e through one relay may succeed
 * through another: the relay was not reached or did not answer in time
 * (RAPI_E_CONNECT, RAPI_E_TIMEOUT, RAPI_E_CLOSED), had no listener for the
 * path (502) or was unavailable (503). A refusal every relay would repeat
 * (403, any other 4xx, a bad answer) and local failures are final. */
bool err_failover(const struct rapi_error *e);

/* ---- backoff (backoff.c) */
/* Delay before reconnect attempt number `attempt` (0 = first retry):
 * min_ms * 2^attempt capped at max_ms, "equal jitter": half fixed, half
 * random from rnd, so peers restarted together spread out. */
int backoff_delay_ms(unsigned attempt, int min_ms, int max_ms, uint32_t rnd);
/* xorshift32 step; state must be non-zero. */
uint32_t backoff_rand(uint32_t *state);

/* ---- sockets and heads (wire.c) */
/* Sockets, clocks and sends are anet's (net/anet.h). */
/* One TCP address of a relay. */
struct relay_addr {
    struct sockaddr_storage sa;
    socklen_t len; /* 0: none (not resolved) */
};
/* Resolve u's host and port (getaddrinfo, blocking): up to max distinct
 * addresses in the resolver's order. Returns how many (>= 1), or -errno
 * with err filled (RAPI_E_CONNECT "cannot resolve"). */
int wire_resolve(const struct rapi_url *u, struct relay_addr *out, size_t max,
                 struct rapi_error *err);
/* Same address (family, address, port)? */
bool wire_addr_eq(const struct relay_addr *a, const struct relay_addr *b);
/* "host:port" for messages, with " (addr)" after it when the URL's host
 * is a name (a resolves it); just "host:port" when a is NULL or empty. */
void wire_where(const struct rapi_url *u, const struct relay_addr *a, char *out, size_t cap);
/* Start a non-blocking TCP connect to a (close-on-exec, TCP_NODELAY);
 * where names it in err. Returns the fd or -errno with err filled. */
int wire_connect_addr(const struct relay_addr *a, const char *where, struct rapi_error *err);
/* Request heads for u (proto's wr_build_*_request). Return the length,
 * -ENOSPC when too long, -EINVAL for a key or id with a blank or control
 * byte (no header injection). */
int wire_ws_request(char *out, size_t cap, const struct rapi_url *u, const char *key,
                    const char *ws_key);
int wire_wr_request(char *out, size_t cap, const struct rapi_url *u, const char *key,
                    const char *id, long timeout);
/* A fresh WebRoute-ID of WR_ID_LEN chars plus NUL. 0 or -errno. */
int wire_new_id(char out[WR_ID_LEN + 1]);

/* Reads one answer head without consuming a byte past it (those belong to
 * the tunnel or the WebSocket), then, for a non-101 answer, its body. Used
 * by the handshake machine (handshake.h). */
struct hs {
    char buf[HS_MAX];
    size_t len;
    size_t head_len; /* 0 until the head is complete */
    int status;
    size_t body_want; /* Content-Length of an error answer (capped) */
    bool eof;
};

/* ---- for the rapi CLI, which pumps TLS itself (connect.c, listener.c) */
struct tls_conn;
struct rapi_connector;
struct sdktls;
/* rapi_connect_multi, handing out the relay socket (non-blocking) and, for
 * rwrs://, its TLS session in *tc (NULL when plain), both the caller's.
 * tls: a TLS context (and session cache) shared by every call, so that
 * later tunnels resume (NULL: one of its own per call). */
int cn_connect_raw(const char *const *urls, size_t nurls, const char *key,
                   const struct rapi_connect_opts *opts, char *rest, size_t rest_cap,
                   struct rapi_error *err, struct tls_conn **tc, struct sdktls *tls);
int cn_take_raw(struct rapi_connector *c, char *rest, size_t rest_cap, struct tls_conn **tc);
/* rapi_accept, the same way: a blocking socket when plain; a non-blocking
 * one and its TLS session in *tc for rwss://. */
int lst_accept_raw(struct rapi_listener *l, struct rapi_peer *peer, int timeout_ms,
                   struct tls_conn **tc);

#endif
