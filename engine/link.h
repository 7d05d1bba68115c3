/* Linked pairs: a waiting client and its dial-back joined, bytes moved
 * between them through each end's transport: small chunks copied through a
 * per-thread scratch, bulk spliced through a pooled pipe when both
 * transports can, else copied through a buffer. A link belongs to one
 * shard and is touched by that shard's thread only; it owns both
 * connections, holds a reference on its path (struct lpath.nlinks) and
 * frees itself on close. */
#ifndef RAPI_ENGINE_LINK_H
#define RAPI_ENGINE_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/dlist.h"
#include "engine/timer.h"
#include "engine/xprt.h"

#define LINK_COPY_BUF (64u * 1024)  /* copy fallback buffer per busy direction */
#define LINK_SMALL_BUF (16u * 1024) /* a read that fills this turns a direction to bulk */
#define LINK_PUMP_BUDGET 16         /* transfers per direction per wake-up (fairness) */

struct lpath;
struct shard;

struct link_end {
    struct xconn c;
    uint64_t tok;
};

/* What a direction holds while its destination cannot take it yet: the
 * unsent head, bytes in a pipe or a copy buffer. Made when needed (lent
 * from a per-thread pair during a pump, engine/link.c) and freed once
 * empty: an idle direction holds none. */
struct link_hold {
    char *head; /* sent first: the 101 answer, then bytes read past the head */
    size_t head_len, head_off;
    char *buf; /* copy buffer, or the thread's scratch during a pump */
    size_t buf_len, buf_off;
    int pipe[2]; /* held only while bytes are in flight */
    size_t in_pipe;
};

/* Flags of a link (struct link.flags): per end (side s: 0 client, 1
 * server), per direction (d: bytes from end[d] to end[!d]), its own. */
#define LF_READABLE(s) (0x001u << (s))
#define LF_WRITABLE(s) (0x004u << (s))
#define LF_DRAIN(s) (0x010u << (s)) /* a FIN or error may be queued: read to -EAGAIN or EOF */
#define LF_BULK(d) (0x040u << (d))  /* a read filled LINK_SMALL_BUF: pipe (or buffer) from now */
#define LF_EOF(d) (0x100u << (d))   /* source sent FIN */
#define LF_SHUT(d) (0x400u << (d))  /* FIN forwarded to the destination */
#define LF_QUEUED 0x1000u           /* on the shard's ready list: budget ran out */
#define LF_CLOSING 0x2000u

/* An idle linked pair is this, its peer string and two event slots: 192
 * bytes (a jemalloc size class) with an IPv4 peer, 24 per slot. */
struct link {
    struct link_end end[2];    /* 0: client, 1: server (dial-back) */
    struct link_hold *hold[2]; /* per direction; NULL while it holds nothing */
    uint64_t bytes[2];         /* per direction, delivered */
    struct timer timer;        /* inactivity */
    struct dlist node;         /* shard's links list, or its ready list while queued */
    struct lpath *p;           /* its path (a reference: lpath.nlinks), and shard */
    uint64_t start;            /* ms */
    uint32_t last;             /* ms, low 32 bits: the last byte moved */
    uint32_t timeout_ms;       /* inactivity timeout */
    uint16_t flags;            /* LF_* */
    char peer[];               /* the client's address, for logs */
};

/* What link_new joins. The heads are heap buffers the link takes over on
 * success: the 101 answer for that side followed by the other side's bytes
 * that arrived after its request head. */
struct link_args {
    struct xconn client;
    uint64_t client_tok; /* the waiting client's watch, taken over; 0: none */
    bool client_input;   /* that watch reported input (or a hang-up) already */
    struct xconn server; /* the dial-back */
    char *to_client, *to_server;
    size_t to_client_len, to_server_len;
    long timeout_s;   /* inactivity timeout of the pair */
    struct lpath *p;  /* the path (on sh): the link takes a reference */
    const char *peer; /* the client's address, for logs */
};

/* 0, or -errno: then the caller still owns both connections and the heads,
 * and client_tok is no longer watched. */
int link_new(struct shard *sh, const struct link_args *a);

/* Continue the links whose pump budget ran out (once per loop turn). */
void link_run_ready(struct shard *sh);

/* Close every link of the shard (drain deadline, exit) and free them. */
void link_close_all(struct shard *sh, const char *why);

/* Close both ends (reset: as a reset) and free the link, now or, when it is
 * on the ready list, once link_run_ready() reaches it. */
void link_close(struct link *l, bool reset, const char *why);

/* Upgrade, old side: send every idle plain link (nothing in flight in the
 * relay) on channel fd and forget it; the rest stay and drain. 0 or -errno
 * (stop sending). */
int link_handover_all(struct shard *sh, int fd);

/* Upgrade, new side: a decoded LINK record and its two fds (taken over). */
struct ho_rec;
void link_adopt(struct shard *sh, const struct ho_rec *r, const int *fds);

#endif
