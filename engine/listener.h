/* Paths, their listeners (server key + WebSocket), the clients waiting on
 * them for a dial-back, and the dial-backs that link them: the part of the
 * protocol that lives on a shard. Shard thread only. A path owns its
 * listeners and waiters; a listener's waiters outlive it (they are offered
 * elsewhere); each frees itself on close, a path once empty. */
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
struct lpath;
struct shard;

/* Where a waiting client stands (docs/PROTOCOL.md P-LPP-*, P-GRACE-*). */
enum waiter_state {
    W_NEW,     /* just arrived, or its listener just went: on no list yet */
    W_OFFERED, /* notified by w->l; on its list until the offer time is over */
    W_TOLD,    /* notified by a listener that has left (its Close): on its path's told list */
    W_QUEUED,  /* not notified: no listener takes clients (grace); on its path's queue */
};

/* A client waiting for its dial-back. In the shard's waiter map under
 * "path\0id", and on one list by state. Any dial-back with its ID links
 * it, whichever listener it was offered to. */
struct waiter {
    struct map_entry me;
    struct dlist node; /* listener's list, or its path's told list or queue */
    struct lpath *p;
    struct listener *l; /* W_OFFERED only */
    enum waiter_state st;
    unsigned offers; /* notifications sent for it */
    struct shard *sh;
    struct xconn c;
    uint64_t tok;       /* watched for the client hanging up while it waits */
    bool saw_in;        /* its watch reported input: a link reads it first */
    long timeout;       /* effective, seconds */
    uint64_t deadline;  /* ms: dialback_timeout from its arrival (504) */
    uint64_t offer_end; /* ms: offered or told until then; then offered again */
    struct timer timer; /* the deadline, or the end of the offer when earlier */
    char peer[ADDR_STR_MAX];
    char *early; /* bytes the client sent after its head */
    size_t early_len;
    size_t path_len, id_len;
    char key[]; /* path '\0' id */
};

/* A registered listener (server key + WebSocket), one of its path's. */
struct listener {
    struct dlist node; /* its path's list */
    struct lpath *p;
    struct shard *sh;
    struct xconn c;
    uint64_t tok;
    struct dlist waiters; /* W_OFFERED to it */
    long nwaiting;        /* how busy it is: its outstanding notifications */
    uint64_t picked;      /* its path's pick count when last chosen (round robin on ties) */
    struct wsread rd;     /* the WebSocket frame reader (proto/wsread.h) */
    char *out;            /* unsent bytes: 101, notifications, pongs, pings, close */
    size_t out_len, out_off, out_cap;
    bool writable;
    bool read_wants_out; /* the last read waits for room, not input (TLS) */
    bool live;           /* takes new clients: registered, no close frame either way */
    bool closing;        /* close frame queued: close once flushed */
    const char *drop;    /* why the listener must go, set where it cannot be closed yet */
    struct timer ka;     /* the next ping or the silence deadline, whichever first */
    uint64_t last_rx;    /* ms: the last byte received */
    uint64_t next_ping;  /* ms */
    uint64_t ho_id;      /* upgrade, new side: its id in the old process (its waiters name it) */
    char peer[ADDR_STR_MAX];
};

/* [ext] A parked dial-back (docs/PROTOCOL.md P-PARK-*): a server-side
 * connection held unanswered on its path's list until a client arrives
 * (then linked at once), it sends a byte or hangs up, its path closes, or
 * park_timeout passes. */
struct parked {
    struct dlist node; /* its path's parked list, oldest first */
    struct lpath *p;
    struct shard *sh;
    struct xconn c;
    uint64_t tok;
    long timeout;       /* effective, seconds (its WebRoute-Timeout) */
    struct timer timer; /* park_timeout */
    char peer[ADDR_STR_MAX];
};

/* A path's pool: its listeners (up to listeners_per_path live ones), the
 * clients not offered to one of them, and its parked dial-backs. In the
 * shard's path map under the path; lives while it has a listener, a
 * waiter, a parked dial-back, a linked pair or grace left. */
struct lpath {
    struct map_entry me;
    struct shard *sh;
    struct dlist listeners; /* struct listener.node, oldest first */
    struct dlist told;      /* W_TOLD waiters */
    struct dlist queue;     /* W_QUEUED waiters, in arrival order */
    struct dlist parked;    /* struct parked.node, oldest first */
    long nparked;           /* on the list (max_parked) */
    int nlisteners, nlive;
    long nwaiting; /* all its waiters, whatever their state (max_waiting) */
    uint64_t picks;
    struct timer grace;      /* armed while no listener is live and grace is left */
    int pins;                /* > 0: a walk is under way, do not free */
    long nlinks;             /* linked pairs on it (each holds a reference) */
    struct path_counters ps; /* per-path figures (engine/pathstat.h) */
    size_t path_len;
    char path[];
};

/* Hand-offs by kind; each takes over h->conn (answering and closing it on
 * refusal), never h itself. */
void listener_register(struct shard *sh, struct handoff *h);
void client_arrive(struct shard *sh, struct handoff *h);
void dialback_arrive(struct shard *sh, struct handoff *h);
void park_arrive(struct shard *sh, struct handoff *h);

/* Close now: its waiters go to the path's other listeners, else wait for
 * one within the grace, else get 502; frees l. */
void listener_close(struct listener *l, const char *why);
/* SIGTERM: fail every waiter of the path (503), send each listener close
 * 1001 and close it once flushed (now: close it at once, at exit); the
 * path goes once empty. */
void lpath_drain(struct lpath *p, bool now);
/* The path's pool on sh, made when missing (NULL: out of memory); a
 * caller that ends up holding nothing on it gives it back with
 * lpath_put(), which frees it once nothing holds it. */
struct lpath *lpath_get(struct shard *sh, const char *path, size_t len);
void lpath_put(struct lpath *p);
/* A linked pair on p closed: drop its reference (p may be freed). */
void lpath_link_gone(struct lpath *p);
/* A reload lowered max_parked: close p's oldest parked dial-backs beyond
 * max; p may be freed. */
void lpath_trim_parked(struct lpath *p, long max);
/* Answer a waiting client with an error and free it. */
void waiter_fail(struct waiter *w, int status, const char *code, const char *msg);

/* Upgrade, old side: send on channel fd what of p can move (its grace,
 * plain listeners, waiters, parked dial-backs) and forget what went; the
 * rest (TLS, too big, after an error) stays. 0 or -errno (stop sending). */
int lpath_handover(struct lpath *p, int fd);
/* Upgrade, new side: one decoded GRACE, LISTENER, WAITER or PARKED record
 * and its fd (taken over: adopted, or closed). */
struct ho_rec;
void lpath_adopt(struct shard *sh, const struct ho_rec *r, const int *fds);

#endif
