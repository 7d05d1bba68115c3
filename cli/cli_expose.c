/* rapi expose: register at the relays (one or several, every address of
 * each) and join every linked connection to a fresh connection to the local
 * server, one thread per connection. On SIGTERM/SIGINT it leaves
 * gracefully (rapi_listener_leave): no client is lost in a rolling restart
 * of replicas. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli/cli.h"
#include "sdk/sdk_int.h"
#include "tls/tls_ctx.h"

#define ACCEPT_ERROR_PAUSE_US 100000
#define EXPOSE_BACKOFF_MAX_MS 3000
#define EXPOSE_LEAVE_MS 10000 /* on a stop: the dial-backs in flight finish */
#define EXPOSE_DRAIN_MS 5000  /* then the open connections may finish */
#define EXPOSE_DRAIN_STEP_US 20000
#define EXPOSE_PARK_MAX 256 /* --park: librapi's cap */

static atomic_int expose_active; /* connection threads running */

struct expose_cfg {
    const char *to;
    bool proxy_v2;
};

struct expose_conn {
    const struct expose_cfg *cfg;
    int fd;
    struct tls_conn *tc; /* rwss://: the session on fd, pumped here */
    struct rapi_peer peer;
};

static void expose_usage(FILE *f)
{
    fprintf(f, "usage: rapi expose URL [URL...] --to HOST:PORT [options]\n"
               "  URL is rws[s]://[KEY@]relay[:port]/path; every client of that path is\n"
               "  joined to a new connection to HOST:PORT. Several URLs (and every\n"
               "  address of a relay name) are all registered: no relay is needed alone.\n"
               "  --to HOST:PORT          the local server (required)\n"
               "  --proxy-protocol v2     send a PROXY v2 header with the client's address\n"
               "  --key-file FILE         server key (relay key file or bare key)\n"
               "  --timeout SECONDS       WebRoute-Timeout sent on dial-backs\n"
               "  --park K                keep K dial-backs parked at each relay that offers it\n"
               "  --ca FILE               CA bundle for rwss:// (else $RAPI_CA_FILE, system CAs)\n"
               "  -v, -q                  more / less logging\n"
               "  -h                      this help\n"
               "Keys: --key-file, else KEY@ in the URL, else $RAPI_KEY, else $RAPI_KEY_FILE.\n");
}

static int send_proxy_v2(int local, const struct expose_conn *c)
{
    struct sockaddr_storage dst;
    socklen_t dl = sizeof(dst);
    uint8_t hdr[RAPI_PROXYV2_MAX];
    int n;

    /* The address the client reached is the relay's: our peer on c->fd. */
    if (getpeername(c->fd, (struct sockaddr *)&dst, &dl) == -1)
        return -errno;
    n = rapi_proxyv2_build(hdr, sizeof(hdr),
                           c->peer.salen ? (const struct sockaddr *)&c->peer.sa : NULL,
                           (const struct sockaddr *)&dst);
    if (n < 0)
        return n;
    return send(local, hdr, (size_t)n, MSG_NOSIGNAL) == n ? 0 : -EIO;
}

static void *expose_conn_run(void *arg)
{
    struct expose_conn *c = arg;
    struct pump_stats st = {0};
    double t0 = cli_now();
    int local;

    local = cli_tcp_connect(c->cfg->to, CLI_CONNECT_TIMEOUT_MS);
    if (local < 0) {
        cli_log(RAPI_LOG_WARN, "client %s: cannot reach %s: %s", c->peer.addr, c->cfg->to,
                strerror(-local));
        goto out;
    }
    if (c->cfg->proxy_v2 && send_proxy_v2(local, c) < 0) {
        cli_log(RAPI_LOG_WARN, "client %s: PROXY header not sent", c->peer.addr);
        goto out;
    }
    if (c->tc != NULL)
        pump_run_tls(local, local, c->tc, false, &st);
    else
        pump_run(local, local, c->fd, false, &st);
    /* in: bytes from the client; out: bytes to it. */
    cli_log(RAPI_LOG_INFO, "client %s -> %s: in %llu out %llu bytes, %.3f s%s", c->peer.addr,
            c->cfg->to, (unsigned long long)st.b_to_a, (unsigned long long)st.a_to_b,
            cli_now() - t0, st.reset ? ", reset" : "");
out:
    if (local >= 0)
        close(local);
    tls_conn_free(c->tc);
    close(c->fd);
    free(c);
    atomic_fetch_sub(&expose_active, 1);
    return NULL;
}

static void expose_spawn(const struct expose_cfg *cfg, int fd, struct tls_conn *tc,
                         const struct rapi_peer *peer)
{
    struct expose_conn *c = malloc(sizeof(*c));

    if (c == NULL) {
        tls_conn_free(tc);
        close(fd);
        return;
    }
    c->cfg = cfg;
    c->fd = fd;
    c->tc = tc;
    c->peer = *peer;
    atomic_fetch_add(&expose_active, 1);
    if (cli_spawn(expose_conn_run, c) < 0) {
        atomic_fetch_sub(&expose_active, 1);
        cli_log(RAPI_LOG_ERROR, "client %s: no thread", peer->addr);
        tls_conn_free(tc);
        close(fd);
        free(c);
    }
}

static int expose_loop(struct rapi_listener *l, const struct expose_cfg *cfg)
{
    struct rapi_peer peer;
    struct tls_conn *tc;
    int fd;

    while (!cli_stop) {
        fd = lst_accept_raw(l, &peer, CLI_STOP_POLL_MS, &tc);
        if (fd >= 0) {
            expose_spawn(cfg, fd, tc, &peer);
            continue;
        }
        if (fd != -EINTR && fd != -EAGAIN) {
            cli_log(RAPI_LOG_ERROR, "accept: %s", strerror(-fd));
            usleep(ACCEPT_ERROR_PAUSE_US);
        }
    }
    return 0;
}

/* Stopping: leave (close frames; the relay offers our clients elsewhere),
 * serve the dial-backs in flight, then give the open connections
 * EXPOSE_DRAIN_MS to end. */
static void expose_leave(struct rapi_listener *l, const struct expose_cfg *cfg)
{
    struct rapi_peer peer;
    struct tls_conn *tc;
    int fd, waited = 0;

    cli_log(RAPI_LOG_INFO, "leaving: finishing dial-backs");
    if (rapi_listener_leave(l, EXPOSE_LEAVE_MS) < 0)
        cli_log(RAPI_LOG_WARN, "leaving: dial-backs still in flight");
    while ((fd = lst_accept_raw(l, &peer, 0, &tc)) >= 0)
        expose_spawn(cfg, fd, tc, &peer);
    while (atomic_load(&expose_active) > 0 && waited < EXPOSE_DRAIN_MS * 1000) {
        usleep(EXPOSE_DRAIN_STEP_US);
        waited += EXPOSE_DRAIN_STEP_US;
    }
}

/* Options into cfg/o/key_file. Returns -1 to go on, else the exit status. */
static int expose_parse(int argc, char **argv, struct expose_cfg *cfg, struct rapi_listen_opts *o,
                        const char **key_file)
{
    static const struct option lo[] = {{"to", required_argument, NULL, 't'},
                                       {"proxy-protocol", required_argument, NULL, 'p'},
                                       {"key-file", required_argument, NULL, 'k'},
                                       {"timeout", required_argument, NULL, 'T'},
                                       {"ca", required_argument, NULL, 'c'},
                                       {"park", required_argument, NULL, 'P'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    char *end;
    long park;
    int c;

    while ((c = getopt_long(argc, argv, "t:p:k:T:vqh", lo, NULL)) != -1) {
        if (cli_common_opt(c, optarg, key_file, &o->webroute_timeout))
            continue;
        switch (c) {
        case 't':
            cfg->to = optarg;
            break;
        case 'c':
            o->ca_file = optarg;
            break;
        case 'P':
            park = strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || park < 0 || park > EXPOSE_PARK_MAX)
                return fprintf(stderr, "rapi: --park: 0 to %d\n", EXPOSE_PARK_MAX), 2;
            o->park = (int)park;
            break;
        case 'p':
            if (strcmp(optarg, "v2") != 0)
                return fprintf(stderr, "rapi: --proxy-protocol: only v2\n"), 2;
            cfg->proxy_v2 = true;
            break;
        case 'h':
            expose_usage(stdout);
            return 0;
        default:
            expose_usage(stderr);
            return 2;
        }
    }
    if (optind >= argc || argc - optind > RAPI_RELAYS_MAX || cfg->to == NULL)
        return expose_usage(stderr), 2;
    return -1;
}

int cli_expose(int argc, char **argv)
{
    /* Backoff capped at 3 s: after a relay restart, however long it was
     * down, expose is back within about 3 s of the relay. */
    struct rapi_listen_opts o = {
        .flags = RAPI_LISTEN_NOWAIT, .backoff_max_ms = EXPOSE_BACKOFF_MAX_MS, .log = cli_lib_log};
    struct expose_cfg cfg = {0};
    struct rapi_listener *l = NULL;
    struct rapi_error err;
    const char *key_file = NULL;
    const char *const *urls;
    char key[CLI_KEY_MAX], safe[1024];
    int rc, n;

    rc = expose_parse(argc, argv, &cfg, &o, &key_file);
    if (rc >= 0)
        return rc;
    urls = (const char *const *)argv + optind;
    n = argc - optind;
    if (cli_key(RAPI_ROLE_SERVER, key_file, urls, n, key) < 0)
        return 2;
    rc = rapi_listen_multi(&l, urls, (size_t)n, key[0] ? key : NULL, &o, &err);
    explicit_bzero(key, sizeof(key));
    if (rc < 0) {
        fprintf(stderr, "rapi: expose: %s (%s)\n", err.message, rapi_code_name(err.code));
        return 2;
    }
    cli_urls_safe(urls, n, safe, sizeof(safe));
    cli_log(RAPI_LOG_INFO, "exposing %s on %s%s", cfg.to, safe, cfg.proxy_v2 ? " (PROXY v2)" : "");
    cli_install_stop();
    expose_loop(l, &cfg);
    expose_leave(l, &cfg);
    rapi_listener_close(l);
    cli_log(RAPI_LOG_INFO, "stopped");
    return 0;
}
