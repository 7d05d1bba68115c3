/* The rapi CLI's shared parts: logging, keys, address helpers, the thread
 * spawner (cli_util.c) and the byte pump (cli_pump.c). The CLI (unlike
 * librapi) keeps process-wide settings: the log verbosity, set once in main
 * before any thread starts. Each connection thread owns its fds and closes
 * them. */
#ifndef RAPI_CLI_CLI_H
#define RAPI_CLI_CLI_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "sdk/rapi.h"

#define CLI_KEY_MAX 257              /* KEY_MAX_LEN (auth/keys.h) and a NUL */
#define CLI_CONNECT_TIMEOUT_MS 10000 /* to the local --to server */

extern int cli_verbosity;              /* enum rapi_log_level: messages above are dropped */
extern volatile sig_atomic_t cli_stop; /* set by SIGINT/SIGTERM */
/* A stop signal that lands between the loop's check of cli_stop and its
 * blocking wait is not lost: the waits of the accept loops end this often. */
#define CLI_STOP_POLL_MS 200
/* Handlers without SA_RESTART, so blocking accepts return EINTR. */
void cli_install_stop(void);

void cli_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* librapi's log callback, forwarding to cli_log. */
void cli_lib_log(void *arg, int level, const char *msg);

/* The key for role: --key-file, else the URLs' own keys (out = "", when
 * every one of urls[0..n) has one), else RAPI_KEY, else RAPI_KEY_FILE.
 * Returns 0 (out may be "" when the URLs hold them), or -errno with a
 * message printed. */
int cli_key(enum rapi_role role, const char *key_file, const char *const *urls, int n,
            char out[CLI_KEY_MAX]);

/* The URL's scheme://host:port/path without any key, for log lines. */
void cli_url_safe(const char *url, char *out, size_t cap);
/* The same for urls[0..n), separated by ", " (cut to fit cap). */
void cli_urls_safe(const char *const *urls, int n, char *out, size_t cap);

/* "host:port" / "[v6]:port" / "localhost:port" -> a connected (blocking)
 * TCP socket within timeout_ms, or -errno. */
int cli_tcp_connect(const char *hostport, int timeout_ms);
/* "addr:port" -> a listening socket; the bound address in bound. */
int cli_tcp_listen(const char *addrport, char *bound, size_t cap);

/* "2.5" (seconds, > 0, at most CLI_SECONDS_MAX) -> 2500 ms; -EINVAL for
 * anything else. */
#define CLI_SECONDS_MAX 86400
int cli_seconds_ms(const char *s);

/* Time since an arbitrary epoch, seconds. */
double cli_now(void);

/* The options expose and connect share, as getopt returns them: 'k'
 * (--key-file), 'T' (--timeout: the WebRoute-Timeout), 'v' and 'q'. True
 * when c was one of them and is handled. */
bool cli_common_opt(int c, const char *arg, const char **key_file, long *webroute_timeout);

/* Run fn(arg) on a new detached thread: 0, or -errno when no thread was
 * started (arg is then still the caller's to free). */
int cli_spawn(void *(*fn)(void *), void *arg);

struct pump_stats {
    uint64_t a_to_b, b_to_a;
    bool reset; /* a direction ended in an error, not a FIN */
};

/* Move bytes between endpoint A (a_rd/a_wr, the same fd for a socket) and
 * the socket b until both directions end. EOF on one side is forwarded as
 * shutdown(SHUT_WR) on the other; an error tears both down. Uses splice
 * when it can (pipes, sockets). Blocks; runs one direction on a helper
 * thread. When stop_on_b_eof, returns as soon as b's reading side ends
 * (stdio mode). The caller closes the fds. */
int pump_run(int a_rd, int a_wr, int b, bool stop_on_b_eof, struct pump_stats *st);

/* The same when b is a relay connection with a TLS session (its socket
 * inside): one thread, bytes go through the session (cli_tls.c). The
 * caller frees b and closes the fds. */
struct tls_conn;
int pump_run_tls(int a_rd, int a_wr, struct tls_conn *b, bool stop_on_b_eof, struct pump_stats *st);

int cli_expose(int argc, char **argv);
int cli_connect(int argc, char **argv);

#endif
