/* rapi: expose a local TCP server through a relay, connect to one, make
 * keys. Subcommand dispatch and the helpers the subcommands share. */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "auth/keys.h"
#include "net/anet.h"
#include "proto/addr.h"
#include "proto/url.h"
#include "sdk/cli.h"

#define KEYFILE_TEXT_MAX 1024

int cli_verbosity = RAPI_LOG_INFO;
volatile sig_atomic_t cli_stop;

static void on_stop(int sig)
{
    cli_stop = 1;
}

void cli_install_stop(void)
{
    struct sigaction sa = {.sa_handler = on_stop};

    /* No SA_RESTART: the signal must interrupt epoll_wait and accept. */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void cli_log(int level, const char *fmt, ...)
{
    char ts[32], msg[512];
    struct timespec now;
    struct tm tm;
    va_list ap;

    if (level > cli_verbosity)
        return;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* One write per line so lines from connection threads never interleave. */
    fprintf(stderr, "%s rapi[%d] %s: %s\n", ts, (int)getpid(),
            level_names[level < 0   ? 0
                        : level > 3 ? 3
                                    : level],
            msg);
}

void cli_lib_log(void *arg, int level, const char *msg)
{
    cli_log(level, "%s", msg);
}

double cli_now(void)
{
    return (double)anet_now_ns() / 1e9;
}

void cli_url_safe(const char *url, char *out, size_t cap)
{
    struct rapi_url u;
    static const char *const schemes[] = {"?", "rws", "rwss", "rwr", "rwrs", "wr", "wrs"};
    const char *sp = strchr(url, ' ');
    char hp[URL_HOST_MAX + 16];

    if (url_parse(url, sp ? (size_t)(sp - url) : strlen(url), &u) < 0 ||
        url_hostport(&u, hp, sizeof(hp)) < 0) {
        snprintf(out, cap, "(bad URL)");
        return;
    }
    snprintf(out, cap, "%s://%s%s%s", schemes[u.scheme <= URL_WRS ? u.scheme : 0], hp, u.path,
             sp ? " ..." : "");
    explicit_bzero(&u, sizeof(u));
}

static int url_has_key(const char *url)
{
    struct rapi_url u;
    const char *sp = strchr(url, ' ');
    int has;

    if (url_parse(url, sp ? (size_t)(sp - url) : strlen(url), &u) < 0)
        return 0;
    has = u.key[0] != '\0';
    explicit_bzero(&u, sizeof(u));
    return has;
}

static int key_from_file(const char *path, enum rapi_role role, char out[CLI_KEY_MAX])
{
    int rc = rapi_key_load(path, role, out, CLI_KEY_MAX);

    if (rc < 0)
        fprintf(stderr, "rapi: key file %s: %s%s\n", path, strerror(-rc),
                rc == -EPERM    ? " (chmod 600 it)"
                : rc == -ENOENT ? " (no key for this role)"
                                : "");
    return rc < 0 ? rc : 0;
}

int cli_key(enum rapi_role role, const char *key_file, const char *url, char out[CLI_KEY_MAX])
{
    const char *env;

    out[0] = '\0';
    if (key_file)
        return key_from_file(key_file, role, out);
    if (url_has_key(url))
        return 0;
    env = getenv("RAPI_KEY");
    if (env && *env) {
        if (strlen(env) >= CLI_KEY_MAX) {
            fprintf(stderr, "rapi: RAPI_KEY is too long\n");
            return -EINVAL;
        }
        snprintf(out, CLI_KEY_MAX, "%s", env);
        return 0;
    }
    env = getenv("RAPI_KEY_FILE");
    if (env && *env)
        return key_from_file(env, role, out);
    fprintf(stderr, "rapi: no key: use --key-file, RAPI_KEY, RAPI_KEY_FILE or KEY@ in the URL\n");
    return -EINVAL;
}

/* Split "host:port" / "[v6]:port" into host and port strings. */
static int split_hostport(const char *s, char *host, size_t hcap, const char **port)
{
    const char *colon = strrchr(s, ':');
    size_t hl;

    if (colon == NULL || colon[1] == '\0')
        return -EINVAL;
    hl = (size_t)(colon - s);
    if (hl >= 2 && s[0] == '[' && s[hl - 1] == ']') {
        s++;
        hl -= 2;
    }
    if (hl == 0 || hl >= hcap)
        return -EINVAL;
    memcpy(host, s, hl);
    host[hl] = '\0';
    *port = colon + 1;
    return 0;
}

/* One address: connect within timeout_ms, then blocking with TCP_NODELAY. */
static int connect_one(const struct addrinfo *ai, int timeout_ms)
{
    int fd = anet_tcp_connect_start(ai->ai_addr, ai->ai_addrlen, ANET_NONBLOCK | ANET_NODELAY);
    int rc;

    if (fd < 0)
        return fd;
    rc = anet_connect_wait(fd, timeout_ms);
    if (rc == 0)
        rc = anet_set_nonblock(fd, false);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

int cli_tcp_connect(const char *hostport, int timeout_ms)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL, *ai;
    char host[256];
    const char *port;
    int fd = -EINVAL;

    if (split_hostport(hostport, host, sizeof(host), &port) < 0)
        return -EINVAL;
    if (getaddrinfo(host, port, &hints, &res) != 0)
        return -EHOSTUNREACH;
    for (ai = res; ai; ai = ai->ai_next) {
        fd = connect_one(ai, timeout_ms);
        if (fd >= 0)
            break;
    }
    freeaddrinfo(res);
    return fd;
}

int cli_tcp_listen(const char *addrport, char *bound, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int fd;

    if (addr_parse(addrport, &ss, &len) < 0)
        return -EINVAL;
    fd = anet_tcp_listen(&ss, &len, SOMAXCONN, 0);
    if (fd >= 0)
        addr_format((struct sockaddr *)&ss, bound, cap);
    return fd;
}

/* ------------------------------------------------------------ keygen */

static void keygen_usage(FILE *f)
{
    fprintf(f, "usage: rapi keygen [-o FILE]\n"
               "  Print a new key file (server_key and client_key lines) to stdout,\n"
               "  or create FILE with mode 0600 (never overwrites).\n");
}

static int cli_keygen(int argc, char **argv)
{
    static const struct option lo[] = {{"output", required_argument, NULL, 'o'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    char text[KEYFILE_TEXT_MAX];
    const char *out = NULL;
    int c, n;

    while ((c = getopt_long(argc, argv, "o:h", lo, NULL)) != -1) {
        if (c == 'o')
            out = optarg;
        else
            return keygen_usage(c == 'h' ? stdout : stderr), c == 'h' ? 0 : 2;
    }
    if (optind < argc)
        return keygen_usage(stderr), 2;
    if (out) {
        n = keys_create_file(out);
        if (n < 0)
            fprintf(stderr, "rapi: keygen: %s: %s\n", out, strerror(-n));
        return n < 0 ? 1 : 0;
    }
    n = keys_generate_text(text, sizeof(text));
    if (n < 0) {
        fprintf(stderr, "rapi: keygen: %s\n", strerror(-n));
        return 1;
    }
    fwrite(text, 1, (size_t)n, stdout);
    explicit_bzero(text, sizeof(text));
    return fflush(stdout) == 0 ? 0 : 1;
}

/* ------------------------------------------------------------ main */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: rapi COMMAND [OPTIONS]\n"
            "  rapi expose URL --to HOST:PORT [--proxy-protocol v2]   remote a local TCP server\n"
            "  rapi connect URL [--listen ADDR:PORT]                  reach one (stdio without "
            "--listen)\n"
            "  rapi keygen [-o FILE]                                  make a key file\n"
            "  rapi COMMAND -h                                        help on a command\n"
            "Keys: --key-file FILE, else KEY@ in the URL, else $RAPI_KEY, else $RAPI_KEY_FILE.\n"
            "See rapi(1).\n");
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN); /* a closed peer shows up as EPIPE instead */
    if (argc < 2)
        return usage(stderr), 2;
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)
        return usage(stdout), 0;
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0)
        return printf("rapi %s\n", RAPI_VERSION), 0;
    if (strcmp(argv[1], "expose") == 0)
        return cli_expose(argc - 1, argv + 1);
    if (strcmp(argv[1], "connect") == 0)
        return cli_connect(argc - 1, argv + 1);
    if (strcmp(argv[1], "keygen") == 0)
        return cli_keygen(argc - 1, argv + 1);
    fprintf(stderr, "rapi: unknown command '%s'\n", argv[1]);
    return usage(stderr), 2;
}
