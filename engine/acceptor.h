/* The acceptor: runs on the main thread. Accepts on every listen socket,
 * reads one request head per connection without blocking (whole-head
 * deadline, size limit), authenticates, answers errors itself and hands the
 * rest to the shard that owns the path. Also owns the signals: SIGHUP
 * reloads (through the caller's reload function), SIGTERM/SIGINT drain.
 * One acceptor per process, created, run and freed by main's thread; it
 * owns its listen and admin sockets and the key copy. */
#ifndef RAPI_ENGINE_ACCEPTOR_H
#define RAPI_ENGINE_ACCEPTOR_H

#include "auth/keys.h"
#include "engine/relay.h"

/* Build a fresh configuration and key set, as at start-up. 0, or -errno
 * with a message in err (never a key). */
typedef int acceptor_reload_fn(void *arg, struct conf *c, struct keys *k, char *err, size_t errlen);

struct acceptor;

/* The acceptor of relay r, holding its own copy of keys (in pages excluded
 * from core dumps; the caller may wipe its own copy at once). NULL when out
 * of memory. */
struct acceptor *acceptor_new(struct relay *r, const struct keys *keys, acceptor_reload_fn *reload,
                              void *reload_arg);

/* Open the configured listen and admin sockets (logging "listening on ADDR"
 * with the real port); the acceptor owns them. 0 or -errno with a message in
 * err. Call before acceptor_run. */
int acceptor_listen(struct acceptor *a, char *err, size_t errlen);

/* Seamless upgrade, new process (engine/upgrade_run.c): fd is the channel
 * from the running process (engine/upgrade.h); greet it (HELLO). Call
 * before acceptor_listen, which then takes that process's listen sockets
 * for the addresses it still has. */
void acceptor_handover_from(struct acceptor *a, int fd);
/* The shards run: tell the running process to freeze and send its state
 * (acceptor_run takes it before accepting). 0 or -errno (then: a fresh
 * start with the sockets taken). */
int acceptor_handover_ready(struct acceptor *a);

/* Run until drained (the shards are started, or hosted, by then). Closes
 * the sockets and wipes the keys however it ends. 0 or -errno. */
int acceptor_run(struct acceptor *a);

/* Close what is still open, wipe and unmap the keys, free a. NULL is
 * ignored. */
void acceptor_free(struct acceptor *a);

#endif
