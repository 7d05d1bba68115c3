/* Counters behind /metrics and /status.json. A shard's counters have one writer, the shard
 * thread, which updates them with relaxed loads and stores (no locked
 * instruction on the data path); any thread may read them. Error answers
 * are counted from every thread with fetch_add. */
#ifndef RAPI_ENGINE_STATS_H
#define RAPI_ENGINE_STATS_H

#include <stdatomic.h>
#include <stdint.h>

#include "tls/tls_ctx.h" /* TLS_ERR_COUNT */

#define STAT_ADD(x, n)                                                                             \
    atomic_store_explicit(&(x), atomic_load_explicit(&(x), memory_order_relaxed) + (n),            \
                          memory_order_relaxed)
#define STAT_SET(x, v) atomic_store_explicit(&(x), (v), memory_order_relaxed)
#define STAT_GET(x) atomic_load_explicit(&(x), memory_order_relaxed)

struct shard_stats {
    /* gauges, published once per loop turn */
    _Atomic uint64_t links, listeners, waiting, pipes, parked;
    /* counters */
    _Atomic uint64_t links_total, bytes_up, bytes_down, copy_fallbacks, dialback_timeouts,
        clients_left, reoffers, grace_waits, grace_expiries, park_links, park_expiries, park_drops;
};

/* The error answers counted by status; anything else counts as "other". */
#define STATS_STATUSES                                                                             \
    {                                                                                              \
        400, 403, 404, 405, 409, 426, 429, 431, 502, 503, 504                                      \
    }
#define STATS_NSTATUS 12 /* the eleven above and "other" */

#define STATS_TLS_NVERSIONS 2
#define STATS_TLS_TIMEOUT TLS_ERR_COUNT /* a handshake not done by header_timeout */
#define STATS_TLS_NFAILURES (TLS_ERR_COUNT + 1)

struct relay_stats {
    _Atomic uint64_t accepted, header_timeouts;
    /* proxy_protocol sockets: peers outside trusted_proxies closed, and
     * PROXY headers that were not one (acceptor thread) */
    _Atomic uint64_t proxy_untrusted, proxy_bad;
    /* admin connections open: written by the acceptor thread only; they are
     * in relay.nconn too, and the client limit and rapi_connections leave
     * them out */
    _Atomic uint64_t admin_conns;
    _Atomic uint64_t started_ms; /* monotonic, set once when the acceptor listens */
    _Atomic uint64_t rejects[STATS_NSTATUS];
    /* TLS listeners, written by the acceptor thread only */
    _Atomic uint64_t tls_resumed;
    _Atomic uint64_t tls_versions[STATS_TLS_NVERSIONS]; /* TLSv1.2, TLSv1.3 */
    _Atomic uint64_t tls_failures[STATS_TLS_NFAILURES]; /* by enum tls_err, then timeout */
};

/* Index of a status in STATS_STATUSES, or the "other" slot. */
int stats_status_index(int status);

#endif
