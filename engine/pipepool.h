/* Per-shard pool of nonblocking pipes for splice. Owned by one shard thread;
 * not thread-safe. A linked pair takes a pipe only while bytes are in
 * flight and gives it back empty; a pipe given back with data in it is
 * closed, never reused. */
#ifndef RAPI_ENGINE_PIPEPOOL_H
#define RAPI_ENGINE_PIPEPOOL_H

#include <stdbool.h>
#include <stddef.h>

#define PIPEPOOL_IDLE_MAX 64 /* empty pipes kept for reuse */

struct pipepool {
    int idle[PIPEPOOL_IDLE_MAX][2];
    int nidle;
    long live;        /* pipes open: idle + in use */
    long max;         /* max_pipes; 0 = never splice */
    size_t size;      /* F_SETPIPE_SZ wish */
    bool size_failed; /* F_SETPIPE_SZ refused once: stop asking */
    unsigned long created, failed;
};

void pipepool_init(struct pipepool *p, long max, size_t size);

/* Close every idle pipe; pipes still in use are the caller's to put back. */
void pipepool_fini(struct pipepool *p);

/* Take a pipe into fds. 0, or -ENOSPC at the max, or -errno from pipe2. */
int pipepool_get(struct pipepool *p, int fds[2]);

/* Give a pipe back; `empty` false means it may hold bytes: close it. */
void pipepool_put(struct pipepool *p, int fds[2], bool empty);

#endif
