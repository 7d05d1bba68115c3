/* A worker shard: one thread, one event loop, one timer wheel, and
 * everything about the paths that hash to it (listeners, waiting clients,
 * linked pairs, pipes). Nothing here is shared with other threads except the
 * hand-off queue (under qlock) and the relay's atomics. The relay creates
 * and frees shards (the API the acceptor uses is in engine/relay.h); this
 * header is for the shard's own modules and for a loop that hosts a shard. */
#ifndef RAPI_ENGINE_SHARD_H
#define RAPI_ENGINE_SHARD_H

#include <pthread.h>
#include <stdbool.h>

#include "engine/conf.h"
#include "engine/dlist.h"
#include "engine/ev.h"
#include "engine/map.h"
#include "engine/pathstat.h"
#include "engine/pipepool.h"
#include "engine/relay.h"
#include "engine/stats.h"
#include "engine/timer.h"

struct link;

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
    struct map paths; /* struct lpath by path: listeners and waiting clients */
    long nlisteners;
    long nparked; /* parked dial-backs on all its paths */
    struct map waiters;
    struct pipepool pool;
    struct dlist links;
    long nlinks;
    struct dlist ready; /* links whose pump budget ran out (struct link.node) */
    bool draining;
    bool hosted; /* runs in the acceptor's thread, on the acceptor's loop */
    uint64_t drain_deadline;
    struct shard_stats stats;
    struct pathstat pstat; /* per-path snapshot for the admin endpoint */
};

/* A shard's loop, for its own thread or for the acceptor that hosts it
 * (engine/shard.c): set up; how long to wait; the work after each wait
 * (true once a drain is over); tear down. */
int shard_loop_init(struct shard *s);
int shard_wait_ms(const struct shard *s);
bool shard_turn(struct shard *s);
void shard_finish(struct shard *s);

#endif
