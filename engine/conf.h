/* rapi-server configuration: embedded defaults, the config file
 * (rapi-server.conf(5)) and overrides. A struct conf is a plain value:
 * copied freely, owned by whoever holds it, read-only once published to the
 * threads. Parsing runs on the main thread only. */
#ifndef RAPI_ENGINE_CONF_H
#define RAPI_ENGINE_CONF_H

#include <limits.h>
#include <stddef.h>

#include "engine/log.h" /* enum log_level */
#include "proto/addr.h"
#include "proto/fwd.h"

#define CONF_DEFAULT_PATH "/etc/rapi/rapi-server.conf"
#define CONF_DEFAULT_KEYS "/etc/rapi/keys"
#define CONF_DEFAULT_LISTEN "127.0.0.1:37791"
#define CONF_MAX_LISTEN 16
#define CONF_LINE_MAX 4096
#define CONF_MAX_HEADERS_MAX 1024 /* highest "max_headers": the acceptor's array */
#define CONF_MAX_TRUSTED 64       /* entries of "trusted_proxies" */

#define CONF_TLS_PAIRS 16         /* tls_cert/tls_key pairs (== TLS_MAX_PAIRS) */
#define CONF_TLS_PATH_MAX 1024    /* a certificate or key file name */
#define CONF_TLS_CIPHERS_MAX 1024 /* a tls_ciphers list */

enum conf_io { IO_AUTO = 0, IO_URING, IO_EPOLL };

/* A repeatable file keyword: tls_cert, tls_key (pairs by position). */
struct conf_files {
    char path[CONF_TLS_PAIRS][CONF_TLS_PATH_MAX];
    int n;
};

/* Options after a listen address ("listen ADDR:PORT [option...]"). */
#define LISTEN_F_TLS 1u   /* "tls": a TLS listener */
#define LISTEN_F_PROXY 2u /* "proxy_protocol": PROXY v1/v2 header from trusted_proxies */

struct conf {
    char listen[CONF_MAX_LISTEN][ADDR_STR_MAX]; /* "listen", repeatable */
    unsigned listen_flags[CONF_MAX_LISTEN];     /* LISTEN_F_* of each listen address */
    int nlisten;
    int listen_explicit;   /* 0 while listen[] holds the default: the next "listen" replaces it */
    char keys[PATH_MAX];   /* "keys": key file path */
    int workers;           /* "workers": shard threads, 0 = one per CPU */
    enum conf_io io;       /* "io": auto | uring | epoll */
    long timeout;          /* "timeout": relay default WebRoute timeout, s (60) */
    long min_timeout;      /* "min_timeout": floor of the WebRoute timeout rule, s (60);
                              effective = max(header, timeout, min_timeout) */
    long header_timeout;   /* "header_timeout": deadline for a whole head, s (10) */
    long defer_accept;     /* "defer_accept": TCP_DEFER_ACCEPT on client listen sockets, s (1) */
    long dialback_timeout; /* "dialback_timeout": client waits this long, s (60) */
    long keepalive;        /* "keepalive": listener ping interval, s, 0 = off (30);
                              a listener silent for 2 x keepalive is dropped */
    long drain_timeout;    /* "drain_timeout": SIGTERM grace for linked pairs, s (30) */
    long upgrade_timeout;  /* "upgrade_timeout": each wait of an upgrade's handover, s (10) */
    size_t max_header;     /* "max_header": request head limit, bytes (8192) */
    size_t max_frame;      /* "max_frame": WebSocket frame/message limit, bytes (65536) */
    int max_headers;       /* "max_headers": header lines in a request head (64) */
    long auth_fail_rate;   /* "auth_fail_rate": failed keys per second a source regains (5) */
    long auth_fail_burst;  /* "auth_fail_burst": failed keys a source may send at once, 0 = off (20)
                            */
    long max_connections;  /* "max_connections": open client+server sockets (100000) */
    long max_waiting;      /* "max_waiting": waiting clients per path (1024) */
    long max_listeners;    /* "max_listeners": registered listeners in all (10000) */
    long listeners_per_path;  /* "listeners_per_path": live listeners on one path (1) */
    long listener_grace;      /* "listener_grace": clients wait this long for a listener to come
                                 back after a path's last one went, s, 0 = off (5) */
    long offer_timeout;       /* "offer_timeout": a notified listener has this long to dial back
                                 before its client goes to another listener of the path, s (5) */
    long max_parked;          /* "max_parked": parked dial-backs per path, 0 = no parking (16) */
    long park_timeout;        /* "park_timeout": a parked dial-back is closed after this, s (60) */
    size_t pipe_size;         /* "pipe_size": splice pipe size, bytes (262144) */
    long max_pipes;           /* "max_pipes": pooled+active pipes per shard, 0 = copy only (4096) */
    enum log_level log_level; /* "log_level": error | warn | info | debug (info) */
    char admin[ADDR_STR_MAX]; /* "admin": /metrics and /healthz listener, "off" (off) */
    long admin_max_connections;      /* "admin_max_connections": open admin sockets (16) */
    char admin_token_file[PATH_MAX]; /* "admin_token_file": bearer token for admin (none) */
    long status_top_paths;      /* "status_top_paths": per-path entries on the status page (20) */
    struct conf_files tls_cert; /* "tls_cert": PEM certificate (+chain), repeatable; the
                                   first is the default, the others chosen by SNI */
    struct conf_files tls_key;  /* "tls_key": PEM private key of the tls_cert at its rank */
    int tls_min_version;        /* "tls_min_version": 1.2 | 1.3, stored 12 | 13 (1.2) */
    char tls_ciphers[CONF_TLS_CIPHERS_MAX]; /* "tls_ciphers": wolfSSL list (built-in) */
    /* "trusted_proxies": front ends whose PROXY header, X-Forwarded-For or
     * Forwarded names the client (none) */
    struct fwd_cidr trusted_proxies[CONF_MAX_TRUSTED];
    int ntrusted;
};

/* Every keyword conf_set() accepts, NULL-terminated (the man page test walks
 * it against rapi-server.conf(5)). */
extern const char *const conf_keywords[];

/* Fill c with the embedded defaults (listen 127.0.0.1:37791, ...). */
void conf_defaults(struct conf *c);

/* Apply one keyword/value. A "listen" adds an address (after the first
 * explicit one replaces the default). Sizes accept a k/K/m/M suffix; seconds
 * are whole numbers. Returns 0, or -EINVAL with a message in err naming the
 * keyword and what is wrong with the value. */
int conf_set(struct conf *c, const char *keyword, const char *value, char *err, size_t errlen);

/* Parse a config file's text: "keyword value" lines, '#' comments (whole line
 * or after whitespace), blank lines. file is the name used in messages.
 * Errors: "FILE:LINE: unknown keyword 'x'", "FILE:LINE: keyword: bad value".
 * Returns 0 or -EINVAL. */
int conf_parse(struct conf *c, const char *text, size_t len, const char *file, char *err,
               size_t errlen);

/* Read and parse a file. Returns 0, -ENOENT when it does not exist (message
 * in err), -EINVAL on a parse error, other -errno. */
int conf_load(struct conf *c, const char *path, char *err, size_t errlen);

/* Apply one "KEYWORD=VALUE" (the -o option). Errors as conf_set(), plus
 * "unknown keyword 'x'" and a missing '='. Returns 0 or -EINVAL. */
int conf_set_assignment(struct conf *c, const char *assignment, char *err, size_t errlen);

/* Forget the listen addresses given so far and put the default back; the
 * next "listen" starts a new list (what -l does to the file's lines). */
void conf_listen_reset(struct conf *c);

/* Cross-field checks after everything is applied (at least one listen,
 * addresses parse, limits positive). 0 or -EINVAL with a message. */
int conf_validate(const struct conf *c, char *err, size_t errlen);

const char *conf_io_name(enum conf_io io);
const char *conf_log_level_name(enum log_level l);

#endif
