/* rapi-bench: what the main thread and the worker threads share.
 * struct bench_cfg is built by the main thread before a run and is read-only
 * while workers run. struct wstats counters are written by their worker only
 * (relaxed atomics) and read by the main thread for progress; the histogram
 * is read only after the worker is joined. */
#ifndef RAPI_BENCH_BENCH_H
#define RAPI_BENCH_BENCH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "bench/hist.h"
#include "proto/addr.h"

enum bmode { BM_SETUP, BM_THROUGHPUT, BM_LATENCY, BM_HOLD, BM_ECHO, BM_SINK };
enum tkind { TK_DIRECT, TK_PROXY, TK_RELAY };
enum bdir { DIR_UP = 1, DIR_DOWN = 2, DIR_BOTH = 3 };

#define BENCH_ID_PREFIX_LEN 24 /* random part of every WebRoute-ID we make */
#define BENCH_PATH_MAX 200
#define BENCH_ERR_MAX 160

struct tls_client;
struct tls_server;

struct bench_cfg {
    enum bmode mode;
    enum tkind kind;
    struct sockaddr_storage dst; /* where clients (and dial-backs) connect */
    socklen_t dst_len;
    char host[ADDR_STR_MAX]; /* Host header */
    unsigned nsrc;           /* spread sources over 127.0.0.1..nsrc (1: none) */
    const char *server_key;  /* secrets: never printed */
    size_t server_key_len;
    const char *client_key;
    size_t client_key_len;
    const char *path_prefix; /* listener path is <prefix>/<pid>-<run>-<thread>/ */
    unsigned run_id;
    unsigned threads;
    unsigned tunnels;  /* setup: in flight; others: parallel tunnels */
    unsigned inflight; /* handshakes in flight per thread while opening */
    unsigned size;     /* bytes echoed per tunnel (setup) / message (latency) */
    enum bdir dir;
    double rate;                 /* latency: messages/s over all tunnels, 0 = flat out */
    size_t block;                /* throughput write size */
    int trunc;                   /* sinks discard with MSG_TRUNC instead of copying */
    int kernel_ports;            /* let connect() pick source ports */
    uint64_t timeout_ns;         /* handshake limit for one tunnel */
    const int *backend_fds;      /* per-thread listen sockets, or NULL */
    struct tls_client *tls;      /* --tls: every relay connection is TLS; NULL: plain */
    char tls_host[ADDR_STR_MAX]; /* name checked (and SNI) on the relay's certificate */
    struct tls_server *tls_srv;  /* --tls-cert: accepted backend connections are TLS */
    int tls_no_resume;           /* --tls-no-resume: every handshake is a full one */
};

struct run_ctl {
    _Atomic int stop;
    _Atomic int measuring;
    _Atomic int fatal;
    _Atomic int go; /* workers open tunnels only once set */
    char fatal_msg[BENCH_ERR_MAX];
    pthread_mutex_t lock; /* guards fatal_msg */
};

struct wstats {
    _Atomic uint64_t ready;     /* established tunnels now open */
    _Atomic uint64_t done;      /* setup: tunnels completed; latency: round trips */
    _Atomic uint64_t up;        /* bytes received by the server side */
    _Atomic uint64_t down;      /* bytes received by the client side */
    _Atomic uint64_t errors;    /* failed tunnels or handshakes */
    _Atomic uint64_t lost;      /* established tunnels that closed early */
    _Atomic uint64_t late;      /* latency at a rate: sends skipped (queue full) */
    _Atomic uint64_t listening; /* 1 once the relay answered the listener */
    struct hist hist;           /* only while measuring */
    char lasterr[BENCH_ERR_MAX];
};

struct worker;

/* Start worker thread `id` of a run. Returns NULL on failure (message on
 * stderr). worker_join() waits for it; worker_free() releases it and closes
 * every socket it owns except the shared backend listeners. */
struct worker *worker_start(unsigned id, const struct bench_cfg *cfg, struct run_ctl *ctl);
void worker_join(struct worker *w);
struct wstats *worker_stats(struct worker *w);
void worker_free(struct worker *w);

uint64_t now_ns(void);

/* Record a fatal run error (first one wins) and ask every worker to stop. */
void ctl_fail(struct run_ctl *ctl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
