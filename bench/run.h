/* rapi-bench main-thread side: options, targets, the figures of each round,
 * and the report. Used by the main thread only. */
#ifndef RAPI_BENCH_RUN_H
#define RAPI_BENCH_RUN_H

#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "auth/keys.h"
#include "bench/bench.h"

#define MAX_TARGETS 8
#define MAX_ROUNDS 50
#define MAX_METRICS 16
#define LABEL_MAX 32

struct target {
    enum tkind kind;
    char label[LABEL_MAX];
    char addr[ADDR_STR_MAX]; /* as connected to (direct: the backend) */
    struct sockaddr_storage ss;
    socklen_t len;
    pid_t pid;                         /* 0: unknown */
    double v[MAX_ROUNDS][MAX_METRICS]; /* NAN: not measured */
    int failed[MAX_ROUNDS];
    char err[BENCH_ERR_MAX]; /* first failure */
};

struct opts {
    enum bmode mode;
    struct target t[MAX_TARGETS];
    unsigned nt;
    char backend[ADDR_STR_MAX];
    char path[BENCH_PATH_MAX];
    char server_key[KEY_MAX_LEN + 1];
    size_t server_key_len;
    char client_key[KEY_MAX_LEN + 1];
    size_t client_key_len;
    unsigned threads, tunnels, inflight, size, rounds, nsrc;
    enum bdir dir;
    double rate, duration, warmup, timeout;
    size_t block;
    uint64_t count;
    int json, quiet, cpus, duration_given, trunc, kernel_ports;
    int tls_on;             /* --tls: relay targets are reached over TLS */
    const char *ca_file;    /* --ca */
    const char *tls_name;   /* --tls-name: certificate name (default: the address) */
    struct tls_client *tls; /* made from the above before the runs */
    const char *tls_cert;   /* --tls-cert/--tls-key: the backend serves TLS */
    const char *tls_key;
    struct tls_server *tls_srv; /* made from them */
    int tls_no_resume;          /* --tls-no-resume */
};

struct metric_def {
    const char *name;
    const char *unit;
    int key; /* shown in the table */
};

/* Metrics of a mode, in the order of target.v[round][]. */
const struct metric_def *mode_metrics(enum bmode m, unsigned *n);
const char *mode_name(enum bmode m);
const char *kind_name(enum tkind k);

/* Run round `round` of the workload against target t; fills t->v[round]. */
int run_target(const struct opts *o, struct target *t, unsigned round, const int *backend_fds);

void report_table(const struct opts *o, FILE *out);
void report_json(const struct opts *o, FILE *out);

extern volatile int g_interrupted;

#endif
