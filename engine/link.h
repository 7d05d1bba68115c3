/* Linked pairs: a waiting client and its dial-back joined, bytes moved
 * between them through each end's transport: small chunks copied through a
 * per-thread scratch, bulk spliced through a pooled pipe when both
 * transports can, else copied through a buffer. A link belongs to one
 * shard and is touched by that shard's thread only; it owns both
 * connections and frees itself on close. */
#ifndef RAPI_ENGINE_LINK_H
#define RAPI_ENGINE_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/dlist.h"
#include "engine/timer.h"
#include "engine/xprt.h"
#include "proto/addr.h"

#define LINK_COPY_BUF (64u * 1024)  /* copy fallback buffer per busy direction */
#define LINK_SMALL_BUF (16u * 1024) /* a read that fills this turns a direction to bulk */
#define LINK_PUMP_BUDGET 16         /* transfers per direction per wake-up (fairness) */

struct shard;

struct link_end {
    struct xconn c;
    uint64_t tok;
    bool readable, writable;
    bool drain; /* a FIN or error may be queued: read until -EAGAIN or EOF */
};

/* Bytes flowing from end[d] to end[!d]. */
struct link_dir {
    char *head; /* sent first: the 101 answer, then bytes read past the head */
    size_t head_len, head_off;
    int pipe[2]; /* held only while bytes are in flight */
    size_t in_pipe;
    char *buf; /* copy fallback */
    size_t buf_len, buf_off;
    bool bulk; /* a read filled LINK_SMALL_BUF: pipe (or buffer) from now on */
    bool eof;  /* source sent FIN */
    bool shut; /* FIN forwarded to the destination */
    uint64_t bytes;
};

struct link {
    struct shard *sh;
    struct link_end end[2]; /* 0: client, 1: server (dial-back) */
    struct link_dir dir[2];
    struct timer timer;
    uint64_t start, last, timeout_ms;
    struct dlist node;       /* shard's list */
    struct link *ready_next; /* shard's ready list: budget ran out */
    bool queued, closing;
    char peer[ADDR_STR_MAX];
    char path[];
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
    long timeout_s; /* inactivity timeout of the pair */
    const char *path;
    size_t path_len;
    const char *peer; /* the client's address, for logs */
};

/* 0, or -errno: then the caller still owns both connections and the heads,
 * and client_tok is no longer watched. */
int link_new(struct shard *sh, const struct link_args *a);

/* Continue the links whose pump budget ran out (once per loop turn). */
void link_run_ready(struct shard *sh);

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
