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

#include "net/anet.h"
#include "proto/url.h"
#include "proto/webroute.h"
#include "proto/ws.h"
#include "sdk/rapi.h"

#define HS_MAX 4096  /* largest answer head + error body we read */
#define REQ_MAX 3072 /* largest request head we build */
#define WR_ID_LEN 64 /* our WebRoute-IDs: 64 chars like the original */
#define RELAY_PORT_STR 8

/* ---- errors (sdkerr.c) */
void err_set(struct rapi_error *err, int code, int sys_errno, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Fill err from a relay's non-101 answer (head + body). Returns -errno to
 * hand back for it. */
int err_from_answer(struct rapi_error *err, int status, const char *body, size_t body_len);
/* The -errno a code is reported with. */
int err_errno(int code, int sys_errno);

/* ---- backoff (backoff.c) */
/* Delay before reconnect attempt number `attempt` (0 = first retry):
 * min_ms * 2^attempt capped at max_ms, "equal jitter": half fixed, half
 * random from rnd, so peers restarted together spread out. */
int backoff_delay_ms(unsigned attempt, int min_ms, int max_ms, uint32_t rnd);
/* xorshift32 step; state must be non-zero. */
uint32_t backoff_rand(uint32_t *state);

/* ---- sockets and heads (wire.c) */
/* Sockets, clocks and sends are anet's (net/anet.h). */
/* Resolve host:port and start a non-blocking TCP connect (close-on-exec,
 * TCP_NODELAY). Returns the fd or -errno with err filled. */
int wire_connect_start(const struct rapi_url *u, struct rapi_error *err);
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

#endif
