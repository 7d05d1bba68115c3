/* What the acceptor and the shards share: the relay object, the hand-off
 * message and the shard API the acceptor uses. The relay is created by main
 * before any thread starts; its atomics are touched by every thread,
 * everything else in it belongs to the main (acceptor) thread. */
#ifndef RAPI_ENGINE_RELAY_H
#define RAPI_ENGINE_RELAY_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/conf.h"
#include "engine/ev.h"
#include "engine/stats.h"
#include "engine/xprt.h"
#include "proto/addr.h"
#include "proto/webroute.h"
#include "proto/ws.h"

struct shard;

struct relay {
    struct conf conf; /* acceptor's copy; shards get theirs by hand-off */
    const struct ev_backend *be;
    int nshards;
    struct shard **shards;
    _Atomic long nconn;      /* accepted sockets open, all threads */
    _Atomic long nlisteners; /* registered listeners */
    _Atomic int shards_running;
    _Atomic int draining;
    _Atomic int ho_left;   /* upgrade: shards still sending their state */
    _Atomic int ho_failed; /* upgrade: a shard's send failed (-errno) */
    struct relay_stats stats;
};

enum handoff_type {
    HO_CONN = 1, /* a classified connection: listener, client or dial-back */
    HO_CONFIG,   /* new configuration after SIGHUP */
    HO_DRAIN,    /* SIGTERM: close listeners, fail waiters, let links finish */
    HO_HANDOVER, /* upgrade, old side: send what can move on channel ho_fd */
    HO_ADOPT,    /* upgrade, new side: one record (in data[]) and its fds */
};

/* Acceptor -> shard message. One allocation holding the strings; the shard
 * owns it (and the fd) from shard_push() on and frees it with free(). */
struct handoff {
    struct handoff *next;
    enum handoff_type type;
    struct xconn conn; /* HO_CONN: the connection and its transport */
    enum wr_kind kind;
    long timeout; /* WebRoute-Timeout header, -1 when absent */
    char peer[ADDR_STR_MAX];
    char ws_accept[WS_ACCEPT_LEN + 1];
    struct conf *conf;       /* HO_CONFIG: heap copy, freed by the shard */
    int ho_fd;               /* HO_HANDOVER: the channel (the acceptor's) */
    int fds[2], nfds;        /* HO_ADOPT: the record's fds, owned by the shard */
    size_t rec_len;          /* HO_ADOPT: the record's bytes in data[] */
    char *path, *id, *early; /* point into data[]; early: bytes after the head */
    size_t path_len, id_len, early_len;
    char data[];
};

/* Shard that owns a path. */
struct shard *relay_shard_for(struct relay *r, const char *path, size_t len);

/* Shards (engine/shard.c). */
struct shard *shard_new(struct relay *r, int id);
int shard_start(struct shard *s);
void shard_push(struct shard *s, struct handoff *h); /* any thread; takes h */
/* From the acceptor: shard_push(), or, for a hosted shard, handle h now. */
void shard_deliver(struct shard *s, struct handoff *h);
/* With one shard, run it in the acceptor's thread instead of its own: no
 * hand-off queue, no wake-up, no context switch per connection. Call from
 * the acceptor's thread instead of shard_start(); its loop is then the one
 * the acceptor uses. 0 or -errno. */
int shard_host(struct shard *s);
void shard_join(struct shard *s);
void shard_free(struct shard *s);

#endif
