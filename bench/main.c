/* rapi-bench: command line, keys, targets, the backend echo/sink sockets, and
 * the rounds. See man/rapi-bench.1. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench/run.h"
#include "tls/tls_ctx.h"

#define KEY_ERR_MAX 512
#define BACKLOG 4096
#define MAX_THREADS 64

volatile int g_interrupted;

static void on_signal(int sig)
{
    (void)sig;
    g_interrupted = 1;
}

static void usage(FILE *out)
{
    fputs("usage: rapi-bench setup|throughput|latency|hold [--relay HOST:PORT] [--direct]\n"
          "         [--tcp-proxy HOST:PORT --backend HOST:PORT] [--label NAME] [--pid PID]\n"
          "         [--server-key-file F] [--client-key-file F] [-c N] [-t N] [-d SECS]\n"
          "         [-n COUNT] [--warmup SECS] [--rounds N] [--size BYTES] [--rate N]\n"
          "         [--direction up|down|both] [--block BYTES] [--timeout SECS]\n"
          "         [--inflight N] [--sources N] [--kernel-ports] [--path PREFIX] [--discard]\n"
          "         [--tls [--ca FILE] [--tls-name NAME] [--tls-no-resume]]\n"
          "         [--tls-cert FILE --tls-key FILE] [--json] [-q]\n"
          "       rapi-bench echo|sink --listen HOST:PORT [-t N] [-d SECS]\n"
          "         [--tls-cert FILE --tls-key FILE]\n"
          "See rapi-bench(1).\n",
          out);
}

static void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "rapi-bench: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    exit(2);
}

/* ------------------------------------------------------------ keys */

/* A key from the environment (env), else from a key file: the option's, else
 * $RAPI_KEY_FILE. Files and keys follow auth/keys.h's rules, the relay's. */
static void load_key(const char *file, const char *env, enum keys_need need, char *out, size_t *len)
{
    const char *name = need == KEYS_NEED_SERVER ? "server_key" : "client_key";
    const char *v = getenv(env);
    struct keys k;
    char err[KEY_ERR_MAX];

    if (!file && v) {
        if (keys_check(v, strlen(v)) < 0)
            die("%s holds no usable key (16 to 256 printable characters, no spaces)", env);
        *len = strlen(v);
        memcpy(out, v, *len + 1);
        return;
    }
    if (!file)
        file = getenv("RAPI_KEY_FILE");
    if (!file) {
        fprintf(stderr, "rapi-bench: a relay target needs the %s: --%s-key-file F or %s\n", name,
                need == KEYS_NEED_SERVER ? "server" : "client", env);
        exit(2);
    }
    int r = keys_load_for(file, need, &k, err, sizeof(err));
    if (r == 0)
        r = keys_copy(&k, need, out, KEY_MAX_LEN + 1);
    keys_wipe(&k);
    if (r < 0) {
        /* err names the file for file errors, the line for content errors. */
        if (strncmp(err, file, strlen(file)) == 0)
            fprintf(stderr, "rapi-bench: %s\n", err);
        else
            fprintf(stderr, "rapi-bench: no usable %s in %s: %s\n", name, file,
                    err[0] ? err : strerror(-r));
        exit(2);
    }
    *len = (size_t)r;
}

/* ------------------------------------------------------------ setup */

/* Raise RLIMIT_NOFILE as far as allowed (to nr_open with CAP_SYS_RESOURCE,
 * else to the hard limit) and check that `need` descriptors fit. */
static void raise_nofile(unsigned long need)
{
    struct rlimit rl;
    long want = 1048576;
    FILE *f = fopen("/proc/sys/fs/nr_open", "r");
    if (f) {
        if (fscanf(f, "%ld", &want) != 1)
            want = 1048576;
        fclose(f);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
        return;
    struct rlimit nrl = {(rlim_t)want, (rlim_t)want};
    if (setrlimit(RLIMIT_NOFILE, &nrl) == -1) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    if (need > rl.rlim_cur) {
        fprintf(stderr,
                "rapi-bench: this run needs about %lu descriptors but RLIMIT_NOFILE is %lu "
                "(raising the hard limit needs CAP_SYS_RESOURCE); use fewer tunnels\n",
                need, (unsigned long)rl.rlim_cur);
        exit(2);
    }
}

/* One SO_REUSEPORT listening socket per worker thread on addr; the port of
 * the first (possibly ephemeral) is reused by the others. */
static int backend_open(const char *addr, unsigned n, int *fds, struct sockaddr_storage *ss,
                        socklen_t *len)
{
    if (addr_parse(addr, ss, len) < 0)
        return -EINVAL;
    for (unsigned i = 0; i < n; i++) {
        int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        int one = 1;
        if (fd == -1)
            return -errno;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *)ss, *len) == -1 || listen(fd, BACKLOG) == -1) {
            int err = -errno;
            close(fd);
            return err;
        }
        fds[i] = fd;
        if (i == 0 && getsockname(fd, (struct sockaddr *)ss, len) == -1)
            return -errno;
    }
    return 0;
}

static int cpu_count(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == -1)
        return 1;
    int n = CPU_COUNT(&set);
    return n > 0 ? n : 1;
}

/* ------------------------------------------------------------ options */

enum {
    OPT_RELAY = 256,
    OPT_PROXY,
    OPT_DIRECT,
    OPT_LABEL,
    OPT_PID,
    OPT_BACKEND,
    OPT_PATH,
    OPT_SKF,
    OPT_CKF,
    OPT_WARMUP,
    OPT_ROUNDS,
    OPT_SIZE,
    OPT_DIR,
    OPT_RATE,
    OPT_BLOCK,
    OPT_TIMEOUT,
    OPT_INFLIGHT,
    OPT_SOURCES,
    OPT_JSON,
    OPT_VERSION,
    OPT_TRUNC,
    OPT_KPORTS,
    OPT_TLS,
    OPT_CA,
    OPT_TLS_NAME,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_TLS_NO_RESUME
};

static const struct option longopts[] = {
    {"relay", required_argument, NULL, OPT_RELAY},
    {"tcp-proxy", required_argument, NULL, OPT_PROXY},
    {"direct", no_argument, NULL, OPT_DIRECT},
    {"label", required_argument, NULL, OPT_LABEL},
    {"pid", required_argument, NULL, OPT_PID},
    {"backend", required_argument, NULL, OPT_BACKEND},
    {"listen", required_argument, NULL, OPT_BACKEND},
    {"path", required_argument, NULL, OPT_PATH},
    {"server-key-file", required_argument, NULL, OPT_SKF},
    {"client-key-file", required_argument, NULL, OPT_CKF},
    {"concurrency", required_argument, NULL, 'c'},
    {"tunnels", required_argument, NULL, 'c'},
    {"threads", required_argument, NULL, 't'},
    {"duration", required_argument, NULL, 'd'},
    {"count", required_argument, NULL, 'n'},
    {"warmup", required_argument, NULL, OPT_WARMUP},
    {"rounds", required_argument, NULL, OPT_ROUNDS},
    {"size", required_argument, NULL, OPT_SIZE},
    {"direction", required_argument, NULL, OPT_DIR},
    {"rate", required_argument, NULL, OPT_RATE},
    {"block", required_argument, NULL, OPT_BLOCK},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"inflight", required_argument, NULL, OPT_INFLIGHT},
    {"sources", required_argument, NULL, OPT_SOURCES},
    {"json", no_argument, NULL, OPT_JSON},
    {"discard", no_argument, NULL, OPT_TRUNC},
    {"kernel-ports", no_argument, NULL, OPT_KPORTS},
    {"tls", no_argument, NULL, OPT_TLS},
    {"ca", required_argument, NULL, OPT_CA},
    {"tls-name", required_argument, NULL, OPT_TLS_NAME},
    {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
    {"tls-key", required_argument, NULL, OPT_TLS_KEY},
    {"tls-no-resume", no_argument, NULL, OPT_TLS_NO_RESUME},
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0},
};

/* Number with an optional K/M/G suffix (powers of 1024). */
static double num_arg(const char *s, const char *what, double lo, double hi)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s)
        die("bad number for %s", what);
    if (*end == 'k' || *end == 'K')
        v *= 1024, end++;
    else if (*end == 'm' || *end == 'M')
        v *= 1048576, end++;
    else if (*end == 'g' || *end == 'G')
        v *= 1073741824.0, end++;
    if (*end || isnan(v) || v < lo || v > hi)
        die("%s out of range or malformed", what);
    return v;
}

static struct target *add_target(struct opts *o, enum tkind k, const char *addr)
{
    if (o->nt == MAX_TARGETS)
        die("too many targets (at most %s)", "8");
    struct target *t = &o->t[o->nt++];
    memset(t, 0, sizeof(*t));
    t->kind = k;
    if (addr) {
        if (addr_parse(addr, &t->ss, &t->len) < 0)
            die("bad address %s (numeric HOST:PORT or [V6]:PORT)", addr);
        snprintf(t->addr, sizeof(t->addr), "%s", addr);
    }
    unsigned same = 0;
    for (unsigned i = 0; i + 1 < o->nt; i++)
        same += o->t[i].kind == k;
    if (same)
        snprintf(t->label, sizeof(t->label), "%s-%u", kind_name(k), same + 1);
    else
        snprintf(t->label, sizeof(t->label), "%s", kind_name(k));
    return t;
}

static enum bmode parse_mode(const char *s)
{
    static const char *const names[] = {"setup", "throughput", "latency", "hold", "echo", "sink"};
    for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcmp(s, names[i]))
            return (enum bmode)i;
    die("unknown mode %s", s);
    return BM_SETUP;
}

static void defaults(struct opts *o)
{
    o->threads = (unsigned)o->cpus;
    o->rounds = 1;
    o->duration = o->mode == BM_HOLD ? 2 : 5;
    o->warmup = 1;
    o->timeout = 10;
    o->inflight = 256;
    o->dir = DIR_UP;
    o->block = 128 * 1024;
    o->tunnels = o->mode == BM_SETUP ? 32 : o->mode == BM_HOLD ? 1000 : 1;
    o->size = o->mode == BM_LATENCY ? 64 : 1;
    snprintf(o->path, sizeof(o->path), "/rapi-bench");
}

static void parse_args(int argc, char **argv, struct opts *o, const char **skf, const char **ckf)
{
    struct target *last = NULL;
    int direct = 0, c;
    o->mode = parse_mode(argv[1]);
    defaults(o);
    optind = 2;
    while ((c = getopt_long(argc, argv, "c:t:d:n:qh", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_RELAY:
            last = add_target(o, TK_RELAY, optarg);
            break;
        case OPT_PROXY:
            last = add_target(o, TK_PROXY, optarg);
            break;
        case OPT_DIRECT:
            direct = 1;
            break;
        case OPT_LABEL:
            if (!last)
                die("%s must follow --relay or --tcp-proxy", "--label");
            snprintf(last->label, sizeof(last->label), "%s", optarg);
            break;
        case OPT_PID:
            if (!last)
                die("%s must follow --relay or --tcp-proxy", "--pid");
            last->pid = (pid_t)num_arg(optarg, "--pid", 1, 4194304);
            break;
        case OPT_BACKEND:
            snprintf(o->backend, sizeof(o->backend), "%s", optarg);
            break;
        case OPT_PATH:
            if (optarg[0] != '/' || strlen(optarg) > 100)
                die("--path must start with / (at most 100 chars): %s", optarg);
            snprintf(o->path, sizeof(o->path), "%s", optarg);
            break;
        case OPT_SKF:
            *skf = optarg;
            break;
        case OPT_CKF:
            *ckf = optarg;
            break;
        case 'c':
            o->tunnels = (unsigned)num_arg(optarg, "--concurrency", 1, 4000000);
            break;
        case 't':
            o->threads = (unsigned)num_arg(optarg, "--threads", 1, MAX_THREADS);
            break;
        case 'd':
            o->duration = num_arg(optarg, "--duration", 0.05, 86400);
            o->duration_given = 1;
            break;
        case 'n':
            o->count = (uint64_t)num_arg(optarg, "--count", 1, 1e18);
            break;
        case OPT_WARMUP:
            o->warmup = num_arg(optarg, "--warmup", 0, 3600);
            break;
        case OPT_ROUNDS:
            o->rounds = (unsigned)num_arg(optarg, "--rounds", 1, MAX_ROUNDS);
            break;
        case OPT_SIZE:
            o->size = (unsigned)num_arg(optarg, "--size", 1, 256);
            break;
        case OPT_RATE:
            o->rate = num_arg(optarg, "--rate", 0, 1e8);
            break;
        case OPT_BLOCK:
            o->block = (size_t)num_arg(optarg, "--block", 1, 1 << 20);
            break;
        case OPT_TIMEOUT:
            o->timeout = num_arg(optarg, "--timeout", 0.1, 3600);
            break;
        case OPT_INFLIGHT:
            o->inflight = (unsigned)num_arg(optarg, "--inflight", 1, 1e6);
            break;
        case OPT_SOURCES:
            o->nsrc = (unsigned)num_arg(optarg, "--sources", 1, 250);
            break;
        case OPT_JSON:
            o->json = 1;
            break;
        case OPT_TRUNC:
            o->trunc = 1;
            break;
        case OPT_KPORTS:
            o->kernel_ports = 1;
            break;
        case OPT_TLS:
            o->tls_on = 1;
            break;
        case OPT_CA:
            o->ca_file = optarg;
            break;
        case OPT_TLS_NAME:
            o->tls_name = optarg;
            break;
        case OPT_TLS_CERT:
            o->tls_cert = optarg;
            break;
        case OPT_TLS_KEY:
            o->tls_key = optarg;
            break;
        case OPT_TLS_NO_RESUME:
            o->tls_no_resume = 1;
            break;
        case 'q':
            o->quiet = 1;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        case OPT_VERSION:
            puts("rapi-bench " RAPI_VERSION);
            exit(0);
        case OPT_DIR:
            if (!strcmp(optarg, "up"))
                o->dir = DIR_UP;
            else if (!strcmp(optarg, "down"))
                o->dir = DIR_DOWN;
            else if (!strcmp(optarg, "both"))
                o->dir = DIR_BOTH;
            else
                die("--direction is up, down or both, not %s", optarg);
            break;
        default:
            usage(stderr);
            exit(2);
        }
    }
    if (optind != argc)
        die("unexpected argument %s", argv[optind]);
    if (o->mode == BM_HOLD && o->count)
        o->tunnels = (unsigned)o->count;
    if (direct) {
        memmove(&o->t[1], &o->t[0], o->nt * sizeof(o->t[0]));
        o->nt++;
        memset(&o->t[0], 0, sizeof(o->t[0]));
        o->t[0].kind = TK_DIRECT;
        snprintf(o->t[0].label, sizeof(o->t[0].label), "direct");
    }
}

/* --tls: one client context for every relay connection (CA file: --ca,
 * else $RAPI_CA_FILE, else the system store), AES-GCM accelerated. */
static void tls_setup(struct opts *o)
{
    struct tls_client_conf conf = {.ca_file = o->ca_file, .accel = true};
    char err[TLS_ERR_MAX];

    if (conf.ca_file == NULL)
        conf.ca_file = getenv("RAPI_CA_FILE");
    if (tls_client_new(&conf, &o->tls, err, sizeof(err)) < 0)
        die("--tls: %s", err);
}

/* --tls-cert/--tls-key: the backend (echo/sink, or what a --tcp-proxy
 * forwards to) serves TLS with this pair, AES-GCM accelerated. */
static void tls_backend_setup(struct opts *o)
{
    struct tls_pair pair = {.cert_file = o->tls_cert, .key_file = o->tls_key};
    struct tls_server_conf conf = {.pairs = &pair, .n_pairs = 1, .accel = true};
    char err[TLS_ERR_MAX];

    if (!o->tls_cert != !o->tls_key)
        die("--tls-cert and --tls-key go together%s", "");
    if (!o->tls_cert)
        return;
    if (tls_server_new(&conf, &o->tls_srv, err, sizeof(err)) < 0)
        die("--tls-cert: %s", err);
}

/* ------------------------------------------------------------ modes */

static int serve(struct opts *o, const int *fds)
{
    struct bench_cfg cfg = {0};
    struct run_ctl ctl = {0};
    struct worker *w[MAX_THREADS] = {0};
    pthread_mutex_init(&ctl.lock, NULL);
    cfg.mode = o->mode;
    cfg.kind = TK_DIRECT;
    cfg.threads = o->threads;
    cfg.block = o->block;
    cfg.trunc = o->trunc;
    cfg.dir = DIR_UP;
    cfg.timeout_ns = (uint64_t)(o->timeout * 1e9);
    cfg.backend_fds = fds;
    cfg.tls_srv = o->tls_srv;
    cfg.inflight = 1;
    ctl.go = 1;
    unsigned i;
    for (i = 0; i < o->threads; i++)
        if (!(w[i] = worker_start(i, &cfg, &ctl)))
            break;
    uint64_t end = o->duration_given ? now_ns() + (uint64_t)(o->duration * 1e9) : UINT64_MAX;
    while (i == o->threads && !g_interrupted && !atomic_load(&ctl.fatal) && now_ns() < end) {
        struct timespec ts = {0, 100000000};
        nanosleep(&ts, NULL);
    }
    atomic_store(&ctl.stop, 1);
    for (unsigned k = 0; k < o->threads && w[k]; k++) {
        worker_join(w[k]);
        worker_free(w[k]);
    }
    if (atomic_load(&ctl.fatal))
        fprintf(stderr, "rapi-bench: %s\n", ctl.fatal_msg);
    return atomic_load(&ctl.fatal) ? 1 : 0;
}

static int bench(struct opts *o, const int *fds)
{
    int failed = 0;
    for (unsigned r = 0; r < o->rounds && !g_interrupted; r++)
        for (unsigned i = 0; i < o->nt && !g_interrupted; i++)
            if (run_target(o, &o->t[i], r, fds) < 0) {
                failed = 1;
                if (!o->quiet)
                    fprintf(stderr, "[%s %u/%u] failed: %s\n", o->t[i].label, r + 1, o->rounds,
                            o->t[i].err);
            }
    if (o->json) {
        report_json(o, stdout);
        if (!o->quiet)
            report_table(o, stderr);
    } else {
        report_table(o, stdout);
    }
    return failed || g_interrupted ? 1 : 0;
}

int main(int argc, char **argv)
{
    static struct opts o;
    const char *skf = NULL, *ckf = NULL;
    int fds[MAX_THREADS];
    int need_backend = 0, need_keys = 0;

    if (argc < 2 || argv[1][0] == '-') {
        if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
            usage(stdout);
            return 0;
        }
        usage(stderr);
        return 2;
    }
    o.cpus = cpu_count();
    parse_args(argc, argv, &o, &skf, &ckf);
    int helper = o.mode == BM_ECHO || o.mode == BM_SINK;
    for (unsigned i = 0; i < o.nt; i++) {
        need_backend |= o.t[i].kind != TK_RELAY;
        need_keys |= o.t[i].kind == TK_RELAY;
    }
    if (helper) {
        if (!o.backend[0])
            die("%s needs --listen HOST:PORT", mode_name(o.mode));
        need_backend = 1;
    } else if (!o.nt) {
        die("nothing to measure: give --relay, --direct and/or --tcp-proxy%s", "");
    }
    if (need_keys) {
        load_key(skf, "RAPI_SERVER_KEY", KEYS_NEED_SERVER, o.server_key, &o.server_key_len);
        load_key(ckf, "RAPI_CLIENT_KEY", KEYS_NEED_CLIENT, o.client_key, &o.client_key_len);
    }
    for (unsigned i = 0; i < o.nt; i++)
        if (o.t[i].kind == TK_PROXY && !o.backend[0])
            die("--tcp-proxy needs --backend HOST:PORT: the address the proxy forwards to%s", "");
    if (!o.backend[0])
        snprintf(o.backend, sizeof(o.backend), "127.0.0.1:0");

    raise_nofile(helper ? 0 : 2ul * o.tunnels + 4ul * o.threads + 64);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    tls_backend_setup(&o);
    if (o.tls_srv && !helper && !o.tls_on && o.nt && o.t[0].kind == TK_DIRECT)
        die("--direct to a TLS backend (--tls-cert) needs --tls%s", "");
    if (need_backend) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int r = backend_open(o.backend, o.threads, fds, &ss, &len);
        if (r < 0) {
            fprintf(stderr, "rapi-bench: cannot listen on %s: %s\n", o.backend, strerror(-r));
            return 1;
        }
        char actual[ADDR_STR_MAX];
        addr_format((struct sockaddr *)&ss, actual, sizeof(actual));
        if (helper) {
            fprintf(stderr, "listening on %s\n", actual);
            int rc = serve(&o, fds);
            tls_server_unref(o.tls_srv);
            return rc;
        }
        if (o.t[0].kind == TK_DIRECT) {
            o.t[0].ss = ss;
            o.t[0].len = len;
            snprintf(o.t[0].addr, sizeof(o.t[0].addr), "%s", actual);
        }
    }
    if (o.tls_on)
        tls_setup(&o);
    int rc = bench(&o, need_backend ? fds : NULL);
    tls_client_unref(o.tls);
    tls_server_unref(o.tls_srv);
    explicit_bzero(o.server_key, sizeof(o.server_key));
    explicit_bzero(o.client_key, sizeof(o.client_key));
    return rc;
}
