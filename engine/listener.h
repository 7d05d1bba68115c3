/* Listeners (server key + WebSocket), the clients waiting on them for a
 * dial-back, and the dial-backs that link them: the part of the protocol
 * that lives on a shard. Shard thread only; a listener owns its waiters
 * (closing it fails them), and both free themselves on close. */
#ifndef RAPI_ENGINE_LISTENER_H
#define RAPI_ENGINE_LISTENER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/dlist.h"
#include "engine/map.h"
#include "engine/pathstat.h"
#include "engine/timer.h"
#include "engine/xprt.h"
#include "proto/addr.h"
#include "proto/ws.h"
#include "proto/wsread.h"

#define LISTENER_OUT_MAX (1u << 20) /* unsent bytes before a listener is dropped */
/* A listener that does not take our close frame is closed after this. */
#define LISTENER_CLOSE_WAIT_MS 5000

struct handoff;
struct listener;
struct shard;

/* A client waiting for its dial-back. In the shard's waiter map under
 * "path\0id", and on its listener's list. */
struct waiter {
    struct map_entry me;
    struct dlist node; /* listener's list */
    struct listener *l;
    struct shard *sh;
    struct xconn c;
    uint64_t tok; /* watched for the client hanging up while it waits */
    long timeout; /* effective, seconds */
    struct timer timer;
    char peer[ADDR_STR_MAX];
    char *early; /* bytes the client sent after its head */
    size_t early_len;
    size_t path_len, id_len;
    char key[]; /* path '\0' id */
};

/* A registered listener (server key + WebSocket). In the shard's listener
 * map under its path. */
struct listener {
    struct map_entry me;
    struct shard *sh;
    struct xconn c;
    uint64_t tok;
    struct dlist waiters;
    long nwaiting;
    struct wsread rd; /* the WebSocket frame reader (proto/wsread.h) */
    char *out;        /* unsent bytes: 101, notifications, pongs, pings, close */
    size_t out_len, out_off, out_cap;
    bool writable;
    bool read_wants_out; /* the last read waits for room, not input (TLS) */
    bool closing;        /* close frame queued: close once flushed */
    const char *drop;    /* why the listener must go, set where it cannot be closed yet */
    struct timer ka;     /* the next ping or the silence deadline, whichever first */
    uint64_t last_rx;    /* ms: the last byte received */
    uint64_t next_ping;  /* ms */
    char peer[ADDR_STR_MAX];
    struct path_counters ps; /* per-path figures (engine/pathstat.h) */
    size_t path_len;
    char path[];
};

/* Hand-offs by kind; each takes over h->conn (answering and closing it on
 * refusal), never h itself. */
void listener_register(struct shard *sh, struct handoff *h);
void client_arrive(struct shard *sh, struct handoff *h);
void dialback_arrive(struct shard *sh, struct handoff *h);

/* Close now: fails its waiters (502), frees l. */
void listener_close(struct listener *l, const char *why);
/* SIGTERM: fail its waiters (503), send close 1001, close once flushed. */
void listener_drain(struct listener *l);
/* Answer a waiting client with an error and free it. */
void waiter_fail(struct waiter *w, int status, const char *code, const char *msg);

#endif
