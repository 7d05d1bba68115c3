/* Per-path figures for the status page: each shard publishes, about once a
 * second, its busiest paths (by bytes relayed) and the rest summed, into
 * its own snapshot; the admin endpoint (acceptor thread) copies the
 * snapshots out. The snapshot's mutex is taken once per publication by the
 * shard and once per copy by the admin endpoint, never on the data path.
 * The counters behind it live on each path (struct lpath.ps) and are
 * the shard thread's alone. */
#ifndef RAPI_ENGINE_PATHSTAT_H
#define RAPI_ENGINE_PATHSTAT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PATHSTAT_TOP_MAX 50    /* status_top_paths limit */
#define PATHSTAT_PATH_MAX 128  /* path bytes kept per entry (longer ones cut) */
#define PATHSTAT_PERIOD_MS 500 /* shard publication interval */

struct lpath;
struct shard;

/* One path, or (in rest) the sum over the paths left out. */
struct path_stat {
    char path[PATHSTAT_PATH_MAX];
    uint64_t up, down; /* bytes relayed, client->server and back */
    uint64_t waiting, links;
    uint64_t listeners; /* live listeners of the path (0 for rest) */
    uint64_t paths;     /* 1 for a path; how many in rest */
};

/* A path's counters (shard thread only). */
struct path_counters {
    uint64_t done[2]; /* bytes of this path's closed links */
    uint64_t live[2]; /* scratch: bytes of its open links, per collection */
    uint64_t links;   /* scratch: its open links */
};

struct pathstat {
    pthread_mutex_t lock;
    uint64_t next_ms; /* shard thread: when to publish next */
    bool pending;     /* shard thread: a turn ran since the last publication */
    int n;            /* under lock: entries in top */
    struct path_stat top[PATHSTAT_TOP_MAX];
    struct path_stat rest;
};

int pathstat_init(struct pathstat *ps);
void pathstat_fini(struct pathstat *ps);

/* Shard thread, every loop turn: publish when the period has passed. */
void pathstat_tick(struct shard *s);

/* Shard thread: the loop's wait in ms (-1: none) shortened so that a change
 * since the last publication is published within PATHSTAT_PERIOD_MS. */
int pathstat_wait_ms(const struct shard *s, int t);

/* Shard thread: a link on path p closed after moving up/down bytes. */
void pathstat_link_closed(struct lpath *p, uint64_t up, uint64_t down);

/* Any thread: copy a shard's snapshot; the number of entries in top (room
 * for PATHSTAT_TOP_MAX). */
int pathstat_copy(struct pathstat *ps, struct path_stat *top, struct path_stat *rest);

/* Add p's figures to rest. */
void pathstat_fold(struct path_stat *rest, const struct path_stat *p);

/* Keep the n busiest of all[0..len) at the front, sorted, and fold the others
 * into rest. Returns how many are kept (min(n, len)). */
int pathstat_select(struct path_stat *all, int len, int n, struct path_stat *rest);

#endif
