/* One round of one workload against one target: start the workers, wait for
 * the tunnels, warm up, measure a window, stop, and turn counters into the
 * mode's figures. Main thread only. */
#include "bench/run.h"

#include <arpa/inet.h>

#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench/procstat.h"

#define TICK_NS 100000000ull      /* main loop period */
#define PROGRESS_NS 1000000000ull /* progress line period */
#define SETTLE_NS 1000000000ull   /* hold: pause before sampling the target */
#define SRC_CONNS_PER_ADDR 20000u /* below the 28k ephemeral ports per address */

enum {
    /* setup */
    S_RATE,
    S_P50,
    S_P90,
    S_P99,
    S_P999,
    S_MAX,
    S_TCPU_TUN,
    S_CAP,
    S_TCPU,
    S_BCPU,
    S_ERR,
    S_N
};
enum { T_GBIT, T_UP, T_DOWN, T_TCPU, T_BCPU, T_LOST, T_ERR, T_N };
enum { L_P50, L_P90, L_P99, L_P999, L_MAX, L_MEAN, L_RATE, L_LATE, L_TCPU, L_BCPU, L_ERR, L_N };
enum {
    H_TUN,
    H_OPEN_S,
    H_RATE,
    H_RSS0,
    H_RSS,
    H_RSS_TUN,
    H_FDS_TUN,
    H_SOCK_TUN,
    H_PIPE_TUN,
    H_LOST,
    H_ERR,
    H_N
};

static const struct metric_def setup_m[S_N] = {
    {"tunnels_per_s", "1/s", 1},
    {"lat_p50_us", "us", 1},
    {"lat_p90_us", "us", 0},
    {"lat_p99_us", "us", 1},
    {"lat_p999_us", "us", 0},
    {"lat_max_us", "us", 0},
    {"target_cpu_us_per_tunnel", "us", 1},
    {"tunnels_per_target_cpu_s", "1/s", 1},
    {"target_cpu_pct", "%", 0},
    {"bench_cpu_pct", "%", 1},
    {"errors", "", 1},
};
static const struct metric_def thr_m[T_N] = {
    {"gbit_s", "Gbit/s", 1},    {"up_gbit_s", "Gbit/s", 0}, {"down_gbit_s", "Gbit/s", 0},
    {"target_cpu_pct", "%", 1}, {"bench_cpu_pct", "%", 1},  {"lost", "", 0},
    {"errors", "", 1},
};
static const struct metric_def lat_m[L_N] = {
    {"rtt_p50_us", "us", 1},         {"rtt_p90_us", "us", 1}, {"rtt_p99_us", "us", 1},
    {"rtt_p999_us", "us", 1},        {"rtt_max_us", "us", 0}, {"rtt_mean_us", "us", 0},
    {"round_trips_per_s", "1/s", 1}, {"late", "", 0},         {"target_cpu_pct", "%", 0},
    {"bench_cpu_pct", "%", 1},       {"errors", "", 1},
};
static const struct metric_def hold_m[H_N] = {
    {"tunnels", "", 1},          {"open_s", "s", 1},
    {"open_per_s", "1/s", 0},    {"rss_idle_kib", "KiB", 1},
    {"rss_kib", "KiB", 0},       {"rss_per_tunnel_b", "B", 1},
    {"fds_per_tunnel", "", 1},   {"sockets_per_tunnel", "", 0},
    {"pipes_per_tunnel", "", 1}, {"lost", "", 1},
    {"errors", "", 1},
};

const struct metric_def *mode_metrics(enum bmode m, unsigned *n)
{
    switch (m) {
    case BM_SETUP:
        *n = S_N;
        return setup_m;
    case BM_THROUGHPUT:
        *n = T_N;
        return thr_m;
    case BM_LATENCY:
        *n = L_N;
        return lat_m;
    case BM_HOLD:
        *n = H_N;
        return hold_m;
    default:
        *n = 0;
        return NULL;
    }
}

const char *mode_name(enum bmode m)
{
    static const char *const names[] = {"setup", "throughput", "latency", "hold", "echo", "sink"};
    return names[m];
}

const char *kind_name(enum tkind k)
{
    static const char *const names[] = {"direct", "tcp-proxy", "relay"};
    return names[k];
}

/* Sum of every worker's counters. */
struct snap {
    uint64_t t, ready, done, up, down, errors, lost, late, self_cpu, target_cpu;
    int target_ok;
};

static void snap_take(struct worker **w, unsigned n, pid_t pid, struct snap *s)
{
    memset(s, 0, sizeof(*s));
    for (unsigned i = 0; i < n; i++) {
        struct wstats *st = worker_stats(w[i]);
        s->ready += atomic_load_explicit(&st->ready, memory_order_relaxed);
        s->done += atomic_load_explicit(&st->done, memory_order_relaxed);
        s->up += atomic_load_explicit(&st->up, memory_order_relaxed);
        s->down += atomic_load_explicit(&st->down, memory_order_relaxed);
        s->errors += atomic_load_explicit(&st->errors, memory_order_relaxed);
        s->lost += atomic_load_explicit(&st->lost, memory_order_relaxed);
        s->late += atomic_load_explicit(&st->late, memory_order_relaxed);
    }
    s->t = now_ns();
    s->self_cpu = self_cpu_ns();
    struct pstat ps;
    if (pid > 0 && pstat_read(pid, 0, &ps) == 0) {
        s->target_cpu = ps.cpu_ns;
        s->target_ok = 1;
    }
}

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000ull),
                          .tv_nsec = (long)(ns % 1000000000ull)};
    nanosleep(&ts, NULL);
}

static int run_over(struct run_ctl *ctl)
{
    return g_interrupted || atomic_load(&ctl->fatal);
}

static void progress(const struct opts *o, const struct target *t, unsigned round,
                     const char *phase, const struct snap *a, const struct snap *b, double secs)
{
    if (o->quiet)
        return;
    double dt = (double)(b->t - a->t) / 1e9;
    char what[96];
    switch (o->mode) {
    case BM_SETUP:
        snprintf(what, sizeof(what), "tunnels %llu (%.0f/s)",
                 (unsigned long long)(b->done - a->done),
                 dt > 0 ? (double)(b->done - a->done) / dt : 0.0);
        break;
    case BM_THROUGHPUT:
        snprintf(what, sizeof(what), "%.2f Gbit/s",
                 dt > 0 ? (double)(b->up + b->down - a->up - a->down) * 8 / dt / 1e9 : 0.0);
        break;
    case BM_LATENCY:
        snprintf(what, sizeof(what), "round trips %llu (%.0f/s)",
                 (unsigned long long)(b->done - a->done),
                 dt > 0 ? (double)(b->done - a->done) / dt : 0.0);
        break;
    default:
        snprintf(what, sizeof(what), "open %llu/%u lost %llu", (unsigned long long)b->ready,
                 o->tunnels, (unsigned long long)b->lost);
        break;
    }
    double cpu = dt > 0 ? (double)(b->self_cpu - a->self_cpu) / 1e7 / dt : 0;
    fprintf(stderr, "[%s %u/%u] %s %s %.1fs  %s  errors %llu  bench cpu %.0f%%\n", t->label,
            round + 1, o->rounds, mode_name(o->mode), phase, secs, what,
            (unsigned long long)b->errors, cpu);
}

/* Relay targets: wait until every worker's listener is registered. */
static void wait_listeners(const struct opts *o, struct worker **w, struct run_ctl *ctl)
{
    uint64_t end = now_ns() + (uint64_t)(o->timeout * 1e9);
    while (!run_over(ctl)) {
        uint64_t n = 0;
        for (unsigned i = 0; i < o->threads; i++)
            n += atomic_load(&worker_stats(w[i])->listening);
        if (n == o->threads)
            return;
        if (now_ns() > end) {
            ctl_fail(ctl, "listener: no answer from the relay");
            return;
        }
        sleep_ns(TICK_NS / 100);
    }
}

/* Wait until every tunnel is open (throughput, latency, hold). */
static int wait_ready(const struct opts *o, struct target *t, unsigned round, struct worker **w,
                      struct run_ctl *ctl, uint64_t limit_ns)
{
    struct snap a, b, last;
    snap_take(w, o->threads, 0, &a);
    last = a;
    uint64_t start = a.t, next_print = start + PROGRESS_NS;
    for (;;) {
        sleep_ns(TICK_NS / 10);
        snap_take(w, o->threads, 0, &b);
        if (b.ready >= o->tunnels)
            return 0;
        if (run_over(ctl))
            return -1;
        if (b.t - start > limit_ns) {
            ctl_fail(ctl, "only %llu of %u tunnels open after %.0f s", (unsigned long long)b.ready,
                     o->tunnels, (double)limit_ns / 1e9);
            return -1;
        }
        if (b.t >= next_print) {
            progress(o, t, round, "opening", &last, &b, (double)(b.t - start) / 1e9);
            last = b;
            next_print += PROGRESS_NS;
        }
    }
}

/* The measurement window: duration, or until --count operations. */
static void measure(const struct opts *o, struct target *t, unsigned round, struct worker **w,
                    struct run_ctl *ctl, struct snap *a, struct snap *b)
{
    snap_take(w, o->threads, t->pid, a);
    atomic_store(&ctl->measuring, 1);
    struct snap last = *a;
    uint64_t end = a->t + (uint64_t)(o->duration * 1e9), next_print = a->t + PROGRESS_NS;
    for (;;) {
        sleep_ns(TICK_NS);
        snap_take(w, o->threads, 0, b);
        uint64_t ops =
            o->mode == BM_THROUGHPUT ? b->up + b->down - a->up - a->down : b->done - a->done;
        if (b->t >= end || run_over(ctl) || (o->count && ops >= o->count))
            break;
        if (b->t >= next_print) {
            progress(o, t, round, "run", &last, b, (double)(b->t - a->t) / 1e9);
            last = *b;
            next_print += PROGRESS_NS;
        }
    }
    atomic_store(&ctl->measuring, 0);
    snap_take(w, o->threads, t->pid, b);
}

static void warm_up(const struct opts *o, struct run_ctl *ctl)
{
    uint64_t end = now_ns() + (uint64_t)(o->warmup * 1e9);
    while (now_ns() < end && !run_over(ctl))
        sleep_ns(TICK_NS / 2);
}

static double us(uint64_t ns)
{
    return (double)ns / 1e3;
}

static void figures(const struct opts *o, struct target *t, unsigned round, const struct snap *a,
                    const struct snap *b, const struct hist *h)
{
    double *v = t->v[round];
    double dt = (double)(b->t - a->t) / 1e9;
    double bcpu = (double)(b->self_cpu - a->self_cpu) / 1e7 / dt;
    double tcpu =
        a->target_ok && b->target_ok ? (double)(b->target_cpu - a->target_cpu) / 1e7 / dt : NAN;
    double errs = (double)(b->errors - a->errors);
    switch (o->mode) {
    case BM_SETUP: {
        double n = (double)(b->done - a->done);
        v[S_RATE] = n / dt;
        v[S_P50] = us(hist_quantile(h, 0.50));
        v[S_P90] = us(hist_quantile(h, 0.90));
        v[S_P99] = us(hist_quantile(h, 0.99));
        v[S_P999] = us(hist_quantile(h, 0.999));
        v[S_MAX] = us(h->max);
        v[S_TCPU] = tcpu;
        v[S_TCPU_TUN] =
            n > 0 && !isnan(tcpu) ? (double)(b->target_cpu - a->target_cpu) / 1e3 / n : NAN;
        /* what one CPU of the target would sustain: meaningful even when the
         * load, not the target, limits tunnels_per_s */
        v[S_CAP] = v[S_TCPU_TUN] > 0 ? 1e6 / v[S_TCPU_TUN] : NAN;
        v[S_BCPU] = bcpu;
        v[S_ERR] = errs;
        break;
    }
    case BM_THROUGHPUT:
        v[T_UP] = (double)(b->up - a->up) * 8 / dt / 1e9;
        v[T_DOWN] = (double)(b->down - a->down) * 8 / dt / 1e9;
        v[T_GBIT] = v[T_UP] + v[T_DOWN];
        v[T_TCPU] = tcpu;
        v[T_BCPU] = bcpu;
        v[T_LOST] = (double)(b->lost - a->lost);
        v[T_ERR] = errs;
        break;
    case BM_LATENCY:
        v[L_P50] = us(hist_quantile(h, 0.50));
        v[L_P90] = us(hist_quantile(h, 0.90));
        v[L_P99] = us(hist_quantile(h, 0.99));
        v[L_P999] = us(hist_quantile(h, 0.999));
        v[L_MAX] = us(h->max);
        v[L_MEAN] = h->count ? us(h->sum / h->count) : NAN;
        v[L_RATE] = (double)(b->done - a->done) / dt;
        v[L_LATE] = (double)(b->late - a->late);
        v[L_TCPU] = tcpu;
        v[L_BCPU] = bcpu;
        v[L_ERR] = errs;
        break;
    default:
        break;
    }
}

/* hold: open, settle, sample the target, hold for the duration. */
static void hold(const struct opts *o, struct target *t, unsigned round, struct worker **w,
                 struct run_ctl *ctl, const struct pstat *idle, uint64_t t_start)
{
    double *v = t->v[round];
    uint64_t limit = (uint64_t)(o->timeout * 1e9) + (uint64_t)o->tunnels * 1000000ull;
    int ok = wait_ready(o, t, round, w, ctl, limit);
    struct snap s;
    snap_take(w, o->threads, 0, &s);
    v[H_TUN] = (double)s.ready;
    v[H_OPEN_S] = (double)(s.t - t_start) / 1e9;
    v[H_RATE] = (double)s.ready / v[H_OPEN_S];
    if (ok < 0 && s.ready == 0)
        return;
    sleep_ns(SETTLE_NS);
    uint64_t end = now_ns() + (uint64_t)(o->duration * 1e9);
    while (now_ns() < end && !g_interrupted) {
        struct snap p;
        sleep_ns(TICK_NS * 5);
        snap_take(w, o->threads, 0, &p);
        progress(o, t, round, "holding", &s, &p, (double)(p.t - s.t) / 1e9);
    }
    snap_take(w, o->threads, 0, &s);
    struct pstat ps;
    double k = (double)s.ready;
    if (t->pid > 0 && idle && pstat_read(t->pid, 1, &ps) == 0 && k > 0) {
        v[H_RSS0] = (double)idle->rss_kib;
        v[H_RSS] = (double)ps.rss_kib;
        v[H_RSS_TUN] = (double)(ps.rss_kib - idle->rss_kib) * 1024 / k;
        v[H_FDS_TUN] = (double)(ps.fds - idle->fds) / k;
        v[H_SOCK_TUN] = (double)(ps.sockets - idle->sockets) / k;
        v[H_PIPE_TUN] = (double)(ps.pipes - idle->pipes) / k;
    }
    v[H_LOST] = (double)s.lost;
    v[H_ERR] = (double)s.errors;
}

static unsigned sources_needed(const struct opts *o, const struct target *t)
{
    if (o->nsrc)
        return o->nsrc;
    if (!o->kernel_ports)
        return 1; /* own ports from 127.0.0.1 suffice (worker.c: own_ports) */
    if (t->ss.ss_family != AF_INET)
        return 1;
    const struct sockaddr_in *in = (const struct sockaddr_in *)&t->ss;
    if ((ntohl(in->sin_addr.s_addr) >> 24) != 127)
        return 1;
    unsigned conns = o->tunnels * (t->kind == TK_RELAY ? 2u : 1u);
    unsigned n = conns / SRC_CONNS_PER_ADDR + 1;
    return n > 250 ? 250 : n;
}

/* The name the relay's certificate must carry: --tls-name, else the
 * target's address without its port (an IP literal, checked against the
 * certificate's IP names). */
static void tls_host(const struct target *t, const char *name, char *out, size_t cap)
{
    const void *a = &((const struct sockaddr_in *)&t->ss)->sin_addr;

    if (name != NULL) {
        snprintf(out, cap, "%s", name);
        return;
    }
    if (t->ss.ss_family == AF_INET6)
        a = &((const struct sockaddr_in6 *)&t->ss)->sin6_addr;
    if (inet_ntop(t->ss.ss_family, a, out, (socklen_t)cap) == NULL)
        snprintf(out, cap, "%s", t->addr);
}

static void fill_cfg(const struct opts *o, const struct target *t, const int *backend_fds,
                     struct bench_cfg *cfg)
{
    static unsigned run_id;
    memset(cfg, 0, sizeof(*cfg));
    cfg->mode = o->mode;
    cfg->kind = t->kind;
    cfg->dst = t->ss;
    cfg->dst_len = t->len;
    snprintf(cfg->host, sizeof(cfg->host), "%s", t->addr);
    cfg->nsrc = sources_needed(o, t);
    cfg->server_key = o->server_key;
    cfg->server_key_len = o->server_key_len;
    cfg->client_key = o->client_key;
    cfg->client_key_len = o->client_key_len;
    cfg->path_prefix = o->path;
    cfg->run_id = run_id++;
    cfg->threads = o->threads;
    cfg->tunnels = o->tunnels;
    cfg->inflight = o->mode == BM_SETUP ? o->tunnels : o->inflight;
    cfg->size = o->size;
    cfg->dir = o->dir;
    cfg->rate = o->rate;
    cfg->block = o->block;
    cfg->trunc = o->trunc;
    cfg->kernel_ports = o->kernel_ports;
    cfg->timeout_ns = (uint64_t)(o->timeout * 1e9);
    cfg->backend_fds = backend_fds;
    /* TLS clients: relays and proxies with --tls; direct too when the
     * backend itself serves TLS (--tls-cert) */
    if (o->tls != NULL && (t->kind != TK_DIRECT || o->tls_srv != NULL)) {
        cfg->tls = o->tls;
        tls_host(t, o->tls_name, cfg->tls_host, sizeof(cfg->tls_host));
    }
    if (t->kind != TK_RELAY)
        cfg->tls_srv = o->tls_srv;
    cfg->tls_no_resume = o->tls_no_resume;
}

int run_target(const struct opts *o, struct target *t, unsigned round, const int *backend_fds)
{
    struct bench_cfg cfg;
    struct run_ctl ctl = {0};
    struct worker *w[64] = {0};
    struct pstat idle, *idlep = NULL;
    struct hist h;
    struct snap a = {0}, b = {0};
    int rc = 0;

    for (unsigned i = 0; i < MAX_METRICS; i++)
        t->v[round][i] = NAN;
    fill_cfg(o, t, backend_fds, &cfg);
    pthread_mutex_init(&ctl.lock, NULL);
    for (unsigned i = 0; i < o->threads; i++)
        if (!(w[i] = worker_start(i, &cfg, &ctl))) {
            ctl_fail(&ctl, "cannot start worker %u", i);
            break;
        }
    if (t->kind == TK_RELAY && w[o->threads - 1])
        wait_listeners(o, w, &ctl);
    /* the target's baseline includes our listeners but no tunnel */
    if (o->mode == BM_HOLD && t->pid > 0 && pstat_read(t->pid, 1, &idle) == 0)
        idlep = &idle;
    uint64_t t_start = now_ns();
    atomic_store(&ctl.go, 1);
    if (o->mode == BM_HOLD) {
        if (w[o->threads - 1])
            hold(o, t, round, w, &ctl, idlep, t_start);
    } else if (!atomic_load(&ctl.fatal)) {
        uint64_t limit = (uint64_t)(o->timeout * 1e9) + (uint64_t)o->tunnels * 1000000ull;
        if (o->mode == BM_SETUP || wait_ready(o, t, round, w, &ctl, limit) == 0) {
            warm_up(o, &ctl);
            measure(o, t, round, w, &ctl, &a, &b);
        }
    }
    atomic_store(&ctl.stop, 1);
    hist_reset(&h);
    for (unsigned i = 0; i < o->threads && w[i]; i++)
        worker_join(w[i]);
    for (unsigned i = 0; i < o->threads && w[i]; i++) {
        struct wstats *st = worker_stats(w[i]);
        hist_merge(&h, &st->hist);
        if (st->lasterr[0] && !t->err[0] && !atomic_load(&ctl.fatal))
            snprintf(t->err, sizeof(t->err), "%s", st->lasterr);
        worker_free(w[i]);
    }
    if (o->mode != BM_HOLD && b.t > a.t) {
        figures(o, t, round, &a, &b, &h);
        uint64_t ops = o->mode == BM_THROUGHPUT ? b.up + b.down - a.up - a.down : b.done - a.done;
        if (ops == 0 && !atomic_load(&ctl.fatal))
            ctl_fail(&ctl, "nothing completed%s%s", t->err[0] ? ": " : "", t->err);
    }
    if (atomic_load(&ctl.fatal) || g_interrupted) {
        t->failed[round] = 1;
        if (atomic_load(&ctl.fatal))
            snprintf(t->err, sizeof(t->err), "%s", ctl.fatal_msg);
        else
            snprintf(t->err, sizeof(t->err), "interrupted");
        rc = -1;
    }
    pthread_mutex_destroy(&ctl.lock);
    return rc;
}
