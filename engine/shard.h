/* A worker shard: one thread, one event loop, one timer wheel, and
 * everything about the paths that hash to it (listeners, waiting clients,
 * linked pairs, pipes). Nothing here is shared with other threads except the
 * hand-off queue (under qlock) and the relay's atomics. */
#ifndef RAPI_ENGINE_SHARD_H
#define RAPI_ENGINE_SHARD_H

#include <pthread.h>
#include <stdbool.h>

#include "engine/map.h"
#include "engine/pipepool.h"
#include "engine/relay.h"
#include "engine/timer.h"

#define LISTENER_OUT_MAX (1u << 20) /* unsent notifications before a listener is dropped */
#define LINK_COPY_BUF (64u * 1024)  /* copy fallback buffer per busy direction */
#define LINK_PUMP_BUDGET 16         /* transfers per direction per wake-up (fairness) */

struct listener;

/* Intrusive doubly-linked list node; a head is a node pointing at itself. */
struct dlist {
    struct dlist *prev, *next;
};

static inline void dlist_init(struct dlist *h)
{
    h->prev = h->next = h;
}

static inline void dlist_add_tail(struct dlist *h, struct dlist *n)
{
    n->prev = h->prev;
    n->next = h;
    h->prev->next = n;
    h->prev = n;
}

static inline void dlist_del(struct dlist *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

#define CONTAINER(ptr, type, field) ((type *)((char *)(ptr)-offsetof(type, field)))

/* A client waiting for its dial-back. In the shard's waiter map under
 * "path\0id", and on its listener's list. */
struct waiter {
    struct map_entry me;
    struct dlist node; /* listener's list */
    struct listener *l;
    struct shard *sh;
    int fd;
    uint64_t tok; /* watched for the client hanging up while it waits */
    long timeout; /* effective, seconds */
    struct timer timer;
    char peer[ADDR_STR_MAX];
    char *pre; /* bytes the client sent after its head */
    size_t pre_len;
    size_t path_len, id_len;
    char key[]; /* path '\0' id */
};

/* RFC 6455 reader state of a listener's WebSocket. */
struct ws_reader {
    uint8_t hdr[WS_MAX_HEADER];
    size_t hdr_len;
    struct ws_frame f;
    bool in_frame; /* header parsed, payload bytes pending */
    uint64_t got;  /* payload bytes seen of this frame */
    uint8_t ctrl[WS_MAX_CONTROL];
    bool in_message; /* a fragmented data message is open */
    uint64_t msg_len;
};

/* A registered listener (server key + WebSocket). In the shard's listener
 * map under its path. */
struct listener {
    struct map_entry me;
    struct shard *sh;
    int fd;
    uint64_t tok;
    struct dlist waiters;
    long nwaiting;
    struct ws_reader rd;
    char *out; /* unsent bytes: 101, notifications, pongs, pings, close */
    size_t out_len, out_off, out_cap;
    bool writable;
    bool closing; /* close frame queued: close once flushed */
    struct timer ka;
    uint64_t last_rx;
    char peer[ADDR_STR_MAX];
    size_t path_len;
    char path[];
};

struct link_end {
    int fd;
    uint64_t tok;
    bool readable, writable;
};

/* Bytes flowing from end[d] to end[!d]. */
struct link_dir {
    char *head; /* sent first: the 101 answer, then bytes read past the head */
    size_t head_len, head_off;
    int pipe[2]; /* held only while bytes are in flight */
    size_t in_pipe;
    char *buf; /* copy fallback */
    size_t buf_len, buf_off;
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

struct shard {
    int id;
    struct relay *relay;
    pthread_t thread;
    struct conf conf;
    struct ev_loop loop;
    struct wheel wheel;
    uint64_t now; /* ms, refreshed every loop turn */
    int wake_fd;
    uint64_t wake_tok;
    pthread_mutex_t qlock;
    struct handoff *qhead, *qtail;
    struct map listeners;
    struct map waiters;
    struct pipepool pool;
    struct dlist links;
    long nlinks;
    struct link *ready;
    bool draining;
    bool hosted; /* runs in the acceptor's thread, on the acceptor's loop */
    uint64_t drain_deadline;
    struct shard_stats stats;
};

/* A shard's loop, for its own thread or for the acceptor that hosts it
 * (engine/shard.c): set up; how long to wait; the work after each wait
 * (true once a drain is over); tear down. */
int shard_loop_init(struct shard *s);
int shard_wait_ms(const struct shard *s);
bool shard_turn(struct shard *s);
void shard_finish(struct shard *s);

/* engine/listener.c */
void listener_register(struct shard *sh, struct handoff *h);
void listener_close(struct listener *l, const char *why);
void listener_drain(struct listener *l);
void client_arrive(struct shard *sh, struct handoff *h);
void dialback_arrive(struct shard *sh, struct handoff *h);
void waiter_fail(struct waiter *w, int status, const char *code, const char *msg);

/* engine/link.c */
/* Link a waiting client (cfd, watched under ctok, which the link takes
 * over) and its dial-back (sfd). On failure the caller still owns both fds
 * and the heads; ctok is then no longer watched. */
int link_new(struct shard *sh, int cfd, uint64_t ctok, int sfd, char *to_client,
             size_t to_client_len, char *to_server, size_t to_server_len, long timeout_s,
             const char *path, size_t path_len, const char *peer);
void link_run_ready(struct shard *sh);
void link_close(struct link *l, bool reset, const char *why);

#endif
