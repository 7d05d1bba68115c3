/* The rapi CLI's shared helpers: logging, stop signals, keys, URLs for log
 * lines, local TCP sockets and the connection-thread spawner. */
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "auth/keys.h"
#include "cli/cli.h"
#include "net/anet.h"
#include "proto/addr.h"
#include "proto/url.h"

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

int cli_seconds_ms(const char *s)
{
    char *end;
    double v = strtod(s, &end);

    if (end == s || *end != '\0' || !(v > 0) || v > CLI_SECONDS_MAX)
        return -EINVAL;
    return v * 1000 < 1 ? 1 : (int)(v * 1000);
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

void cli_urls_safe(const char *const *urls, int n, char *out, size_t cap)
{
    char one[URL_HOST_MAX + URL_PATH_MAX + 16];
    size_t len = 0;
    int i;

    if (cap == 0)
        return;
    out[0] = '\0';
    for (i = 0; i < n && len + 1 < cap; i++) {
        cli_url_safe(urls[i], one, sizeof(one));
        len += (size_t)snprintf(out + len, cap - len, "%s%s", i ? ", " : "", one);
    }
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

int cli_key(enum rapi_role role, const char *key_file, const char *const *urls, int n,
            char out[CLI_KEY_MAX])
{
    const char *env;
    int i;

    out[0] = '\0';
    if (key_file)
        return key_from_file(key_file, role, out);
    for (i = 0; i < n && url_has_key(urls[i]); i++)
        ;
    if (n > 0 && i == n)
        return 0;
    env = getenv("RAPI_KEY");
    if (env && *env) {
        /* The key file's rule (auth/keys.h) for a key from the environment. */
        if (strlen(env) >= CLI_KEY_MAX || keys_check(env, strlen(env)) < 0) {
            fprintf(stderr, "rapi: RAPI_KEY is not a key (%d to %d printable characters)\n",
                    KEY_MIN_LEN, KEY_MAX_LEN);
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

int cli_spawn(void *(*fn)(void *), void *arg)
{
    pthread_attr_t attr;
    pthread_t t;
    int rc;

    rc = pthread_attr_init(&attr);
    if (rc != 0)
        return -rc;
    rc = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (rc == 0)
        rc = pthread_create(&t, &attr, fn, arg);
    pthread_attr_destroy(&attr);
    return -rc;
}

bool cli_common_opt(int c, const char *arg, const char **key_file, long *webroute_timeout)
{
    switch (c) {
    case 'k':
        *key_file = arg;
        return true;
    case 'T':
        *webroute_timeout = strtol(arg, NULL, 10);
        return true;
    case 'v':
        cli_verbosity++;
        return true;
    case 'q':
        cli_verbosity--;
        return true;
    default:
        return false;
    }
}
