/* rapi-server: command line, configuration, start-up and shutdown. */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "auth/keys.h"
#include "engine/acceptor.h"
#include "engine/log.h"
#include "engine/notify.h"
#include "engine/relay.h"
#include "engine/upgrade.h"
#include "engine/xprt_tls.h"
#include "net/anet.h"

#define MAX_SETS 64
#define KEYGEN_TEXT_MAX 1024
#define NOFILE_WANT 65536 /* below this many open files, say so at start */

/* jemalloc (linked in release builds): give memory freed after a burst of
 * connections back to the system within seconds, from a background
 * thread, instead of keeping it until the next allocation. Unused when
 * another allocator is in place (the sanitizer builds). */
const char *malloc_conf =
    "background_thread:true,max_background_threads:1,dirty_decay_ms:1000,muzzy_decay_ms:0";

/* What the command line says; kept so that SIGHUP rebuilds the same way. */
struct opts {
    const char *conf_path;
    bool conf_given;
    const char *listen[CONF_MAX_LISTEN];
    int nlisten;
    const char *keys;
    const char *workers;
    const char *sets[MAX_SETS];
    int nsets;
    bool check;
};

static void usage(FILE *f)
{
    fprintf(f, "usage: rapi-server [options]\n"
               "       rapi-server keygen [FILE]\n"
               "\n"
               "  -c FILE         configuration file (default " CONF_DEFAULT_PATH ")\n"
               "  -l ADDR:PORT    listen address, repeatable; replaces the file's listen lines\n"
               "  -k KEYFILE      key file (default " CONF_DEFAULT_KEYS ")\n"
               "  -w N            worker shards (0 = one per CPU)\n"
               "  -o KEYWORD=VALUE  set any configuration keyword, repeatable\n"
               "  -t              check the configuration and the key file, then exit\n"
               "  -h              show this help\n"
               "  -V              show the version\n"
               "\n"
               "keygen [FILE]     write a new key file (mode 0600), or print one\n"
               "See rapi-server(8) and rapi-server.conf(5).\n");
}

/* Defaults, then the file, then -o, then the explicit flags. */
static int build_conf(const struct opts *o, struct conf *c, char *err, size_t errlen)
{
    int r;

    conf_defaults(c);
    r = conf_load(c, o->conf_path, err, errlen);
    if (r == -ENOENT && !o->conf_given)
        r = 0; /* no file at all: embedded defaults */
    for (int i = 0; r == 0 && i < o->nsets; i++)
        r = conf_set_assignment(c, o->sets[i], err, errlen);
    if (r == 0 && o->nlisten)
        conf_listen_reset(c);
    for (int i = 0; r == 0 && i < o->nlisten; i++)
        r = conf_set(c, "listen", o->listen[i], err, errlen);
    if (r == 0 && o->keys)
        r = conf_set(c, "keys", o->keys, err, errlen);
    if (r == 0 && o->workers)
        r = conf_set(c, "workers", o->workers, err, errlen);
    return r == 0 ? conf_validate(c, err, errlen) : r;
}

/* An operator-chosen key shorter than keygen's is easier to guess: say
 * which one (never the key itself), at start and on each reload. */
static void warn_short_keys(const struct keys *k)
{
    unsigned s = keys_short(k);

    if (s & KEYS_NEED_SERVER)
        log_warn("the server key is shorter than the %d characters keygen makes", KEY_LEN);
    if (s & KEYS_NEED_CLIENT)
        log_warn("the client key is shorter than the %d characters keygen makes", KEY_LEN);
}

static int reload(void *arg, struct conf *c, struct keys *k, char *err, size_t errlen)
{
    const struct opts *o = arg;
    int r;

    notify_reloading(&notify_main);
    r = build_conf(o, c, err, errlen);
    if (r == 0)
        r = keys_load(c->keys, k, err, errlen);
    if (r == 0)
        warn_short_keys(k);
    notify_reloaded(&notify_main); /* applied or refused: running either way */
    return r;
}

/* -t: a TLS listener's certificates and keys must load (files, modes,
 * pairs), as they would at start. */
static int check_tls(const struct conf *c, char *err, size_t errlen)
{
    struct tls_server *s;
    int r = 0;

    for (int i = 0; i < c->nlisten; i++) {
        if (c->listen_flags[i] & LISTEN_F_TLS) {
            r = xprt_tls_server_new(c, &s, err, errlen);
            tls_server_unref(s);
            break;
        }
    }
    return r;
}

static int keygen(int argc, char **argv)
{
    char text[KEYGEN_TEXT_MAX];
    int r;

    if (argc > 2) {
        fprintf(stderr, "usage: rapi-server keygen [FILE]\n");
        return 2;
    }
    if (argc == 2) {
        r = keys_create_file(argv[1]);
        if (r < 0) {
            fprintf(stderr, "rapi-server: keygen %s: %s\n", argv[1], strerror(-r));
            return 1;
        }
        fprintf(stderr, "rapi-server: wrote new keys to %s (mode 0600)\n", argv[1]);
        return 0;
    }
    r = keys_generate_text(text, sizeof(text));
    if (r < 0) {
        fprintf(stderr, "rapi-server: keygen: %s\n", strerror(-r));
        return 1;
    }
    fwrite(text, 1, (size_t)r, stdout);
    explicit_bzero(text, sizeof(text));
    return 0;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
    int ch;

    o->conf_path = CONF_DEFAULT_PATH;
    while ((ch = getopt(argc, argv, "c:l:k:w:o:thV")) != -1) {
        switch (ch) {
        case 'c':
            o->conf_path = optarg;
            o->conf_given = true;
            break;
        case 'l':
            if (o->nlisten == CONF_MAX_LISTEN) {
                fprintf(stderr, "rapi-server: at most %d -l\n", CONF_MAX_LISTEN);
                return 2;
            }
            o->listen[o->nlisten++] = optarg;
            break;
        case 'k':
            o->keys = optarg;
            break;
        case 'w':
            o->workers = optarg;
            break;
        case 'o':
            if (o->nsets == MAX_SETS) {
                fprintf(stderr, "rapi-server: at most %d -o\n", MAX_SETS);
                return 2;
            }
            o->sets[o->nsets++] = optarg;
            break;
        case 't':
            o->check = true;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        case 'V':
            printf("rapi-server " RAPI_VERSION "\n");
            exit(0);
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "rapi-server: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    return 0;
}

/* 100,000 tunnels are 200,000 sockets: take the whole hard limit, and with
 * CAP_SYS_RESOURCE raise the hard limit itself up to fs.nr_open. */
static void raise_nofile(void)
{
    struct rlimit rl;
    unsigned long nr_open = 0;

    if (anet_read_ulong("/proc/sys/fs/nr_open", &nr_open) < 0)
        nr_open = 0;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (nr_open > rl.rlim_max) {
        struct rlimit want = {.rlim_cur = nr_open, .rlim_max = nr_open};

        if (setrlimit(RLIMIT_NOFILE, &want) == 0)
            return;
    }
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < (rlim_t)NOFILE_WANT)
        log_warn("open files limited to %lu: at most about %lu tunnels", (unsigned long)rl.rlim_cur,
                 (unsigned long)rl.rlim_cur / 2);
}

/* "One per CPU" means the CPUs this process may run on (taskset, cpusets,
 * systemd's CPUAffinity=), not every CPU online: more shards than CPUs only
 * adds context switches. */
static int usable_cpus(void)
{
    cpu_set_t set;

    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    return (int)sysconf(_SC_NPROCESSORS_ONLN);
}

static int start_shards(struct relay *r)
{
    r->nshards = r->conf.workers > 0 ? r->conf.workers : usable_cpus();
    if (r->nshards < 1)
        r->nshards = 1;
    r->shards = calloc((size_t)r->nshards, sizeof(*r->shards));
    if (!r->shards)
        return -ENOMEM;
    for (int i = 0; i < r->nshards; i++) {
        r->shards[i] = shard_new(r, i);
        if (!r->shards[i])
            return -ENOMEM;
    }
    atomic_store(&r->shards_running, r->nshards);
    /* One shard shares the acceptor's thread: no hand-off, no context
     * switch per connection (the single-CPU case). */
    if (r->nshards == 1)
        return shard_host(r->shards[0]);
    for (int i = 0; i < r->nshards; i++) {
        int e = shard_start(r->shards[i]);

        if (e < 0)
            return e;
    }
    return 0;
}

static enum ev_want io_want(enum conf_io io)
{
    switch (io) {
    case IO_URING:
        return EV_WANT_URING;
    case IO_EPOLL:
        return EV_WANT_EPOLL;
    default:
        return EV_WANT_AUTO;
    }
}

/* Listen, start the shards, run the acceptor until drained. The exit
 * status once it ran, or -1 when start-up failed (no shard to join). */
static int serve(struct relay *r, struct acceptor *a)
{
    char why[512];
    int e;

    if (acceptor_listen(a, why, sizeof(why)) < 0) {
        log_error("%s", why);
        return -1;
    }
    notify_from_env(r); /* READY=1 comes from the acceptor's first loop turn */
    e = start_shards(r);
    if (e < 0) {
        log_error("cannot start worker shards: %s", strerror(-e));
        return -1;
    }
    (void)acceptor_handover_ready(a); /* an upgrade: the running process freezes */
    log_notice("rapi-server " RAPI_VERSION " running: io=%s workers=%d", ev_backend_name(r->be),
               r->nshards);
    e = acceptor_run(a);
    notify_stopped(&notify_main);
    if (e < 0)
        log_error("acceptor: %s", strerror(-e));
    return e < 0 ? 1 : 0;
}

static int run(const struct opts *o, struct relay *r, struct keys *k, int handover)
{
    struct acceptor *a;
    char why[512];
    sigset_t set;
    int e;

    a = acceptor_new(r, k, reload, (void *)o);
    keys_wipe(k); /* the acceptor holds the only copy now */
    if (!a) {
        log_error("cannot start: out of memory");
        return 1;
    }
    if (handover >= 0)
        acceptor_handover_from(a, handover); /* takes the channel */
    r->be = ev_choose(io_want(r->conf.io), why, sizeof(why));
    if (!r->be) {
        log_error("%s", why);
        acceptor_free(a);
        return 1;
    }
    if (why[0])
        log_warn("%s", why);
    raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    /* Signals are read from a signalfd by the acceptor: block them in every
     * thread, which inherit this mask. */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    e = serve(r, a);
    acceptor_free(a);
    /* Start-up failed, or the acceptor's loop did: shard threads may still
     * run (nothing told them to drain) and would never be joined; exit
     * takes them down. */
    if (e != 0)
        return 1;
    for (int i = 0; i < r->nshards; i++) {
        shard_join(r->shards[i]);
        shard_free(r->shards[i]);
    }
    free(r->shards);
    log_notice("stopped");
    return e;
}

int main(int argc, char **argv)
{
    static struct relay relay;
    struct opts o = {0};
    struct keys k;
    char err[512];
    int r, handover;

    if (argc >= 2 && strcmp(argv[1], "keygen") == 0)
        return keygen(argc - 1, argv + 1);
    log_setup();
    if (upg_exe_init(argv) < 0)
        log_warn("cannot find our own binary: SIGUSR2 upgrades will fail");
    r = parse_args(argc, argv, &o);
    if (r)
        return r;
    /* No core dumps: they would hold the keys. */
    prctl(PR_SET_DUMPABLE, 0);
    if (build_conf(&o, &relay.conf, err, sizeof(err)) < 0 ||
        keys_load(relay.conf.keys, &k, err, sizeof(err)) < 0) {
        fprintf(stderr, "rapi-server: %s\n", err);
        if (o.check)
            printf("configuration invalid\n");
        return 1;
    }
    warn_short_keys(&k);
    if (o.check && check_tls(&relay.conf, err, sizeof(err)) < 0) {
        keys_wipe(&k);
        fprintf(stderr, "rapi-server: %s\n", err);
        printf("configuration invalid\n");
        return 1;
    }
    if (o.check) {
        keys_wipe(&k);
        printf("configuration ok\n");
        return 0;
    }
    atomic_store(&log_level_cur, (int)relay.conf.log_level);
    /* Started by a running rapi-server for a seamless upgrade? */
    handover = upg_child_channel(relay.conf.upgrade_timeout);
    if (handover < -1) {
        keys_wipe(&k);
        log_error("upgrade: bad %s: %s", UPG_ENV, strerror(-handover));
        return 1;
    }
    return run(&o, &relay, &k, handover);
}
