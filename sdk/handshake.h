/* The one client handshake of librapi: TCP connect -> request head -> answer
 * head -> 101 check, as a non-blocking state machine. The connector (each
 * hop of a chain), the listener's control WebSocket and its dial-backs all
 * run it. A struct hsm belongs to one thread and owns its fd until
 * hsm_take; the caller drives it when hsm_events says the fd is ready (or
 * at any time: a step that cannot progress returns -EAGAIN). */
#ifndef RAPI_SDK_HANDSHAKE_H
#define RAPI_SDK_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>

#include "proto/webroute.h"
#include "proto/ws.h"
#include "sdk/sdk_int.h"
#include "sdk/sdktls.h"

enum hsm_state {
    HSM_IDLE,    /* no request prepared yet (or taken) */
    HSM_CONNECT, /* TCP connect in progress (poll for writable) */
    HSM_TLS,     /* TLS handshake (rwss/rwrs); request and answer then go through tc */
    HSM_SEND,    /* request head being sent */
    HSM_READ,    /* answer head (and an error answer's body) being read */
    HSM_DONE,    /* a valid 101: the fd is a WebSocket / WebRoute tunnel */
    HSM_FAILED,  /* the error passed to the failing step says why */
};

enum hsm_kind {
    HSM_WS, /* WebSocket upgrade (listener registration), Sec-WebSocket-Accept */
    HSM_WR, /* WebRoute upgrade (client or dial-back), Sec-WebRoute-Accept */
};

struct hsm {
    int fd;              /* -1 when none */
    struct sdktls *tls;  /* set by the owner for TLS URLs (borrowed); NULL: plain */
    struct tls_conn *tc; /* the TLS session on fd (rwss/rwrs), NULL: plain */
    bool tls_kept;       /* its session was stored for resumption */
    unsigned tls_want;   /* TLS_WANT_* while tc is driven here */
    int hold;      /* after hsm_pump: the relay socket's fd (the pump has a dup), kept open until
                      hsm_take/hsm_close so that an owner's epoll entry for it stays valid */
    bool use_tls;  /* the request's URL is rwss/rwrs/wrs */
    unsigned port; /* the relay's port, for the TLS session cache */
    char host[URL_HOST_MAX]; /* the relay's host name: TLS SNI and name check */
    enum hsm_state st;
    enum hsm_kind kind;
    char proof[WEBROUTE_ID_MAX + 1]; /* the WebRoute-ID or Sec-WebSocket-Key sent */
    bool park;                       /* [ext] a parked dial-back: the 101 names the client's ID */
    char where[WHERE_MAX];           /* host:port being connected to, for errors */
    char req[REQ_MAX];
    size_t req_len, req_off;
    struct hs hs; /* the answer; hs.status tells a refusal's HTTP status */
};

void hsm_init(struct hsm *m);
/* Prepare a WebSocket registration (a fresh Sec-WebSocket-Key) or a
 * WebRoute request for id. On an open fd (the next hop of a chain, inside
 * the previous tunnel) the machine goes on sending at once; otherwise
 * hsm_connect starts it. 0 or -errno with err filled. */
int hsm_ws_request(struct hsm *m, const struct rapi_url *u, const char *key,
                   struct rapi_error *err);
int hsm_wr_request(struct hsm *m, const struct rapi_url *u, const char *key, const char *id,
                   long timeout, struct rapi_error *err);
/* [ext] A dial-back to park (docs/PROTOCOL.md P-PARK-*): the WebRoute
 * request with "X-Rapi-Park: 1"; its 101 is checked against the client ID
 * it names (X-Rapi-Client-Id). */
int hsm_park_request(struct hsm *m, const struct rapi_url *u, const char *key, const char *id,
                     long timeout, struct rapi_error *err);
/* A header of the answer head, NUL-terminated into out: its length,
 * -ENOENT when absent or repeated, -ENOSPC, -EPROTO (no head). */
int hsm_header(const struct hsm *m, const char *name, char *out, size_t cap);
/* Start (or start again, closing any previous fd) the TCP connect to u's
 * relay (its first address) for the prepared request. 0 or -errno with err
 * filled. */
int hsm_connect(struct hsm *m, const struct rapi_url *u, struct rapi_error *err);
/* The same to one address of u's relay (resolved by the caller). */
int hsm_connect_addr(struct hsm *m, const struct rapi_url *u, const struct relay_addr *a,
                     struct rapi_error *err);
/* Progress as far as possible without blocking: 0 when HSM_DONE, -EAGAIN
 * when waiting for hsm_events, -errno with err filled on failure. */
int hsm_step(struct hsm *m, struct rapi_error *err);
/* POLLIN or POLLOUT (equal to EPOLLIN/EPOLLOUT) for the current state. */
int hsm_events(const struct hsm *m);
/* The fd of a finished handshake (still non-blocking), handed to the
 * caller; -EINVAL when the handshake is not done. Over TLS, the fd is a
 * pump's socketpair end (sdktls_pump), or -errno with err filled. */
int hsm_take(struct hsm *m, struct rapi_error *err);
/* The same without a pump: the relay socket, and in *tc its TLS session
 * (NULL for a plain relay), both the caller's. */
int hsm_take_raw(struct hsm *m, struct tls_conn **tc);
/* Past the handshake, keep the fd but move a TLS session behind a pump
 * (the listener's control connection, which reads frames with recv): the
 * relay socket's fd number stays open (m->hold) until hsm_close, so an
 * epoll entry for it can still be removed. 0 (also when plain) or -errno. */
int hsm_pump(struct hsm *m, struct rapi_error *err);
/* Close the fd (if any) and go back to HSM_IDLE. The request stays, so
 * hsm_connect can try it again. */
void hsm_close(struct hsm *m);
/* hsm_close and wipe the request (it holds the key): at the end of life. */
void hsm_clear(struct hsm *m);

#endif
