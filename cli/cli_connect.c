/* rapi connect: a tunnel to a remoted server for unmodified clients, on a
 * local port (one tunnel per accepted connection) or on stdio, through one
 * relay or one of several (librapi picks and fails over). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli/cli.h"
#include "net/anet.h"
#include "proto/addr.h"
#include "sdk/sdk_int.h"
#include "sdk/sdktls.h"
#include "tls/tls_ctx.h"

#define ACCEPT_ERROR_PAUSE_US 100000

struct connect_cfg {
    const char *const *urls; /* alternatives, each a URL or a chain */
    int nurls;
    char key[CLI_KEY_MAX];
    char safe[1024]; /* the URLs without their keys, for log lines */
    struct rapi_connect_opts o;
    struct sdktls *tls; /* rwrs://: one CA load and session cache for every tunnel */
};

struct connect_conn {
    const struct connect_cfg *cfg;
    int fd;
    char addr[ADDR_STR_MAX];
};

static void connect_usage(FILE *f)
{
    fprintf(f, "usage: rapi connect URL [URL...] [--listen ADDR:PORT] [options]\n"
               "  URL is rwr[s]://[KEY@]relay[:port]/path, or a space-separated chain.\n"
               "  Several URLs are alternatives, tried in random order until one\n"
               "  connects (failing over on no answer, 502 and 503).\n"
               "  Without --listen, stdin/stdout are the tunnel (ssh ProxyCommand).\n"
               "  --listen ADDR:PORT      accept local clients, one tunnel each\n"
               "  --key-file FILE         client key (relay key file or bare key)\n"
               "  --timeout SECONDS       WebRoute-Timeout sent to the relay\n"
               "  --connect-timeout SECS  give up setting a tunnel up after this (75)\n"
               "  --attempt-timeout SECS  move on from a relay silent this long (10)\n"
               "  --ca FILE               CA bundle for rwrs:// (else $RAPI_CA_FILE, system CAs)\n"
               "  -v, -q                  more / less logging\n"
               "  -h                      this help\n"
               "Keys: --key-file, else KEY@ in the URL, else $RAPI_KEY, else $RAPI_KEY_FILE.\n");
}

/* A tunnel: the relay socket, and its TLS session in *tc for rwrs:// (the
 * CLI pumps it itself, see pump_run_tls). */
static int tunnel(const struct connect_cfg *cfg, const char *who, struct tls_conn **tc)
{
    struct rapi_error err;
    char rest[256];
    int fd;

    fd = cn_connect_raw(cfg->urls, (size_t)cfg->nurls, cfg->key[0] ? cfg->key : NULL, &cfg->o, rest,
                        sizeof(rest), &err, tc, cfg->tls);
    if (fd < 0) {
        cli_log(RAPI_LOG_WARN, "%s: %s: %s (%s)", who, cfg->safe, err.message,
                rapi_code_name(err.code));
        return fd;
    }
    if (rest[0])
        cli_log(RAPI_LOG_DEBUG, "%s: chain rest ignored by the CLI", who);
    if (*tc == NULL && anet_set_nonblock(fd, false) < 0) { /* pump_run blocks */
        close(fd);
        return -EIO;
    }
    return fd;
}

/* Bytes between the application side and the tunnel, plain or TLS. */
static void tunnel_pump(int a_rd, int a_wr, int fd, struct tls_conn *tc, bool stop,
                        struct pump_stats *st)
{
    if (tc != NULL) {
        pump_run_tls(a_rd, a_wr, tc, stop, st);
        tls_conn_free(tc);
    } else {
        pump_run(a_rd, a_wr, fd, stop, st);
    }
}

static void *connect_conn_run(void *arg)
{
    struct connect_conn *c = arg;
    struct pump_stats st = {0};
    struct tls_conn *tc = NULL;
    double t0 = cli_now();
    int fd = tunnel(c->cfg, c->addr, &tc);

    if (fd >= 0) {
        tunnel_pump(c->fd, c->fd, fd, tc, false, &st);
        cli_log(RAPI_LOG_INFO, "client %s -> %s: out %llu in %llu bytes, %.3f s%s", c->addr,
                c->cfg->safe, (unsigned long long)st.a_to_b, (unsigned long long)st.b_to_a,
                cli_now() - t0, st.reset ? ", reset" : "");
        close(fd);
    }
    close(c->fd);
    free(c);
    return NULL;
}

static void connect_spawn(const struct connect_cfg *cfg, int fd, const struct sockaddr *sa)
{
    struct connect_conn *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        close(fd);
        return;
    }
    c->cfg = cfg;
    c->fd = fd;
    if (addr_format(sa, c->addr, sizeof(c->addr)) < 0)
        snprintf(c->addr, sizeof(c->addr), "?");
    if (cli_spawn(connect_conn_run, c) < 0) {
        cli_log(RAPI_LOG_ERROR, "client %s: no thread", c->addr);
        close(fd);
        free(c);
    }
}

static int connect_listen(const struct connect_cfg *cfg, const char *listen_at)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    char bound[ADDR_STR_MAX] = "?";
    int lfd, fd;

    lfd = cli_tcp_listen(listen_at, bound, sizeof(bound));
    if (lfd < 0) {
        fprintf(stderr, "rapi: connect: cannot listen on %s: %s\n", listen_at, strerror(-lfd));
        return 1;
    }
    cli_log(RAPI_LOG_INFO, "listening on %s for %s", bound, cfg->safe);
    /* Non-blocking: a connection reset between poll and accept must not
     * block the loop (accepted sockets do not inherit it). */
    fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK);
    cli_install_stop();
    while (!cli_stop) {
        struct pollfd pfd = {.fd = lfd, .events = POLLIN};

        if (poll(&pfd, 1, CLI_STOP_POLL_MS) <= 0)
            continue; /* EINTR, or time to look at cli_stop again */
        sl = sizeof(ss);
        fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
        if (fd >= 0) {
            connect_spawn(cfg, fd, (struct sockaddr *)&ss);
            continue;
        }
        if (errno != EINTR && errno != ECONNABORTED && errno != EAGAIN) {
            cli_log(RAPI_LOG_ERROR, "accept: %s", strerror(errno));
            usleep(ACCEPT_ERROR_PAUSE_US);
        }
    }
    close(lfd);
    cli_log(RAPI_LOG_INFO, "stopped");
    return 0;
}

/* stdio mode ends when the tunnel's reading side ends: ssh and similar
 * callers expect EOF from us once the remote side is done. A pipe cannot
 * carry a reset: the exit status does. */
static int connect_stdio(const struct connect_cfg *cfg)
{
    struct pump_stats st = {0};
    struct tls_conn *tc = NULL;
    int fd = tunnel(cfg, "stdio", &tc);

    if (fd < 0)
        return 1;
    tunnel_pump(STDIN_FILENO, STDOUT_FILENO, fd, tc, true, &st);
    cli_log(st.reset ? RAPI_LOG_WARN : RAPI_LOG_DEBUG, "stdio -> %s: in %llu bytes%s", cfg->safe,
            (unsigned long long)st.b_to_a, st.reset ? ", reset" : "");
    close(fd);
    return st.reset ? 1 : 0; /* a truncated stream is not a success */
}

/* With an rwrs:// first hop, one TLS context for the process: the CA
 * bundle is read once (a bad one is an error before any connection) and
 * every tunnel after the first resumes the relay's session. */
static int connect_tls_setup(struct connect_cfg *cfg)
{
    struct rapi_error err;
    int i;

    for (i = 0; i < cfg->nurls; i++)
        if (strncasecmp(cfg->urls[i], "rwrs://", strlen("rwrs://")) == 0)
            break;
    if (i == cfg->nurls || sdktls_new(cfg->o.ca_file, &cfg->tls, &err) == 0)
        return 0;
    fprintf(stderr, "rapi: connect: %s (%s)\n", err.message, rapi_code_name(err.code));
    return -1;
}

int cli_connect(int argc, char **argv)
{
    static const struct option lo[] = {{"listen", required_argument, NULL, 'l'},
                                       {"key-file", required_argument, NULL, 'k'},
                                       {"timeout", required_argument, NULL, 'T'},
                                       {"connect-timeout", required_argument, NULL, 'C'},
                                       {"attempt-timeout", required_argument, NULL, 'A'},
                                       {"ca", required_argument, NULL, 'c'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    static struct connect_cfg cfg; /* shared with the connection threads */
    const char *key_file = NULL, *listen_at = NULL;
    int c, rc;

    while ((c = getopt_long(argc, argv, "l:k:T:C:A:vqh", lo, NULL)) != -1) {
        if (cli_common_opt(c, optarg, &key_file, &cfg.o.webroute_timeout))
            continue;
        switch (c) {
        case 'l':
            listen_at = optarg;
            break;
        case 'c':
            cfg.o.ca_file = optarg;
            break;
        case 'C':
            cfg.o.timeout_ms = (int)(strtol(optarg, NULL, 10) * 1000);
            break;
        case 'A':
            cfg.o.attempt_timeout_ms = cli_seconds_ms(optarg);
            if (cfg.o.attempt_timeout_ms <= 0)
                return fprintf(stderr, "rapi: --attempt-timeout: seconds (> 0)\n"), 2;
            break;
        case 'h':
            connect_usage(stdout);
            return 0;
        default:
            connect_usage(stderr);
            return 2;
        }
    }
    if (optind >= argc || argc - optind > RAPI_RELAYS_MAX)
        return connect_usage(stderr), 2;
    cfg.urls = (const char *const *)argv + optind;
    cfg.nurls = argc - optind;
    if (cli_key(RAPI_ROLE_CLIENT, key_file, cfg.urls, cfg.nurls, cfg.key) < 0)
        return 2;
    cli_urls_safe(cfg.urls, cfg.nurls, cfg.safe, sizeof(cfg.safe));
    if (connect_tls_setup(&cfg) < 0)
        return 2;
    rc = listen_at ? connect_listen(&cfg, listen_at) : connect_stdio(&cfg);
    explicit_bzero(cfg.key, sizeof(cfg.key));
    return rc;
}
