/* The acceptor: runs on the main thread. Accepts on every listen socket,
 * reads one request head per connection without blocking (whole-head
 * deadline, size limit), authenticates, answers errors itself and hands the
 * rest to the shard that owns the path. Also owns the signals: SIGHUP
 * reloads (through the caller's reload function), SIGTERM/SIGINT drain. */
#ifndef RAPI_ENGINE_ACCEPTOR_H
#define RAPI_ENGINE_ACCEPTOR_H

#include "auth/keys.h"
#include "engine/relay.h"

/* Build a fresh configuration and key set, as at start-up. 0, or -errno
 * with a message in err (never a key). */
typedef int acceptor_reload_fn(void *arg, struct conf *c, struct keys *k, char *err, size_t errlen);

/* Open the configured listen sockets (logging "listening on ADDR" with the
 * real port). 0 or -errno with a message in err. Call before acceptor_run. */
int acceptor_listen(struct relay *r, char *err, size_t errlen);

/* Run until drained. keys is the key set in use (the acceptor copies it into
 * memory excluded from core dumps and wipes its copies when done). */
int acceptor_run(struct relay *r, const struct keys *keys, acceptor_reload_fn *reload,
                 void *reload_arg);

#endif
