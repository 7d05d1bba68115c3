/* librapi: listen and connect through a rapi relay (docs/PROTOCOL.md, man librapi(3)).
 * Ownership: every handle is created by one call and freed by its *_close /
 * *_free; sockets handed out (rapi_accept, rapi_connect, rapi_connector_take)
 * belong to the caller. Threading: no global state; distinct handles may be
 * used from distinct threads at once, one handle from one thread at a time. */
#ifndef RAPI_H
#define RAPI_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(RAPI_BUILDING) && defined(__GNUC__)
#define RAPI_API __attribute__((visibility("default")))
#else
#define RAPI_API
#endif

#define RAPI_VERSION "0.1.0"

/* Most relay URLs one rapi_listen_multi / rapi_connect_multi call takes. */
#define RAPI_RELAYS_MAX 32

/* Named failure codes; every failing call that takes a struct rapi_error
 * fills it (the call itself returns -errno). */
enum rapi_code {
    RAPI_E_NONE = 0,
    RAPI_E_SYSTEM,           /* a system call failed: see sys_errno */
    RAPI_E_URL,              /* malformed URL or chain */
    RAPI_E_KEY,              /* no key given, or a bad key file */
    RAPI_E_UNSUPPORTED,      /* a feature this build lacks */
    RAPI_E_TIMEOUT,          /* our own deadline passed */
    RAPI_E_CONNECT,          /* TCP connection to the relay failed */
    RAPI_E_CLOSED,           /* the relay closed during the handshake */
    RAPI_E_PROTOCOL,         /* bad answer: not HTTP, bad 101, bad accept value */
    RAPI_E_APIKEY,           /* 403 invalid_missing_apikey */
    RAPI_E_NO_LISTENER,      /* 502 missing_destination */
    RAPI_E_LISTENER_TIMEOUT, /* 504 listener_timeout */
    RAPI_E_PATH_IN_USE,      /* 409 path_in_use */
    RAPI_E_DUPLICATE_ID,     /* 409 duplicate_id */
    RAPI_E_UNKNOWN_ROUTE,    /* 404 unknown_route */
    RAPI_E_VERSION,          /* 426 version_not_supported */
    RAPI_E_BAD_REQUEST,      /* 400 invalid_request */
    RAPI_E_METHOD,           /* 405 */
    RAPI_E_TOO_LARGE,        /* 431 */
    RAPI_E_HTTP,             /* any other non-101 status */
    RAPI_E_TLS,              /* TLS failed: the message says why (unknown CA, expired, name...) */
};

struct rapi_error {
    int code;           /* enum rapi_code */
    int sys_errno;      /* errno behind RAPI_E_SYSTEM/CONNECT/CLOSED, else 0 */
    int status;         /* the relay's HTTP status, 0 when it sent none */
    char errorcode[64]; /* the relay's "errorcode", "" when none */
    char message[192];  /* one line of human text, never a key */
};

/* "RAPI_E_NO_LISTENER" etc.; "RAPI_E_?" for an unknown value. */
RAPI_API const char *rapi_code_name(int code);

/* The code for a relay answer: errorcode first, status as fallback. */
RAPI_API int rapi_code_from_http(int status, const char *errorcode);

/* ------------------------------------------------------------------ keys */

enum rapi_role { RAPI_ROLE_SERVER = 1, RAPI_ROLE_CLIENT = 2 };

/* Read a key from a file: a relay key file ("server_key K" / "client_key K"
 * lines; the one for role is taken) or a file holding one bare key, with
 * the relay's rules: keys of 16 to 256 printable characters, a regular
 * file without group or other read/write access (-EPERM). out gets the key
 * and a NUL. Returns the key's length or -errno (-ENOENT: no key for role,
 * -EINVAL: a malformed file, -ENOSPC: cap too small). */
RAPI_API int rapi_key_load(const char *path, enum rapi_role role, char *out, size_t cap);

/* -------------------------------------------------------------- listener */

struct rapi_listener;

/* Called from inside rapi_listen/rapi_accept (the caller's thread). */
typedef void (*rapi_log_fn)(void *arg, int level, const char *msg);
enum rapi_log_level { RAPI_LOG_ERROR = 0, RAPI_LOG_WARN, RAPI_LOG_INFO, RAPI_LOG_DEBUG };

#define RAPI_LISTEN_NOWAIT 0x1 /* do not wait for the first registration */

struct rapi_listen_opts {
    int flags;             /* RAPI_LISTEN_* */
    int timeout_ms;        /* first registration (0: 10000; < 0: none) */
    int dial_timeout_ms;   /* one dial-back attempt (0: 10000) */
    int keepalive_s;       /* our pings; silence for 3x this drops (0: 30) */
    int backoff_min_ms;    /* reconnect backoff (0: 100) */
    int backoff_max_ms;    /* (0: 5000) */
    int backlog;           /* linked connections queued + dialing (0: 128) */
    long webroute_timeout; /* WebRoute-Timeout on dial-backs, 0: none sent */
    rapi_log_fn log;       /* NULL: silent */
    void *log_arg;
    const char *ca_file; /* rwss://: PEM CA bundle to trust (NULL: $RAPI_CA_FILE, else the
                            system store); read by rapi_listen only */
    int park;            /* [ext] dial-backs kept parked at each relay that offers it
                            (X-Rapi-Ext: park): a client links with no round trip to
                            us; 0: none (notifications only); capped at 256 */
};

/* The client behind an accepted connection (from the relay's notification). */
struct rapi_peer {
    char addr[64];              /* "127.0.0.1:57216" or "[::1]:57216" */
    struct sockaddr_storage sa; /* parsed addr; ss_family AF_UNSPEC if not */
    socklen_t salen;
    long timeout; /* the client's effective timeout, -1 if absent */
};

/* Register as the listener of url's path ("rws://[KEY@]host[:port]/path").
 * key overrides the URL's key (NULL: use the URL's). opts may be NULL.
 * Blocks until registered (unless RAPI_LISTEN_NOWAIT). Returns 0 and *out,
 * or -errno with err filled (err may be NULL). */
RAPI_API int rapi_listen(struct rapi_listener **out, const char *url, const char *key,
                         const struct rapi_listen_opts *opts, struct rapi_error *err);

/* The same over several relays: url[0..nurls) (each "rws://..."; every
 * address a host name resolves to counts as one more relay) are all
 * registered, each with its own control connection and backoff, and
 * rapi_accept returns the connections of all of them. Blocks (unless
 * RAPI_LISTEN_NOWAIT) until one registration succeeded, or every relay
 * failed once (the last failure is the answer). At most RAPI_RELAYS_MAX. */
RAPI_API int rapi_listen_multi(struct rapi_listener **out, const char *const *urls, size_t nurls,
                               const char *key, const struct rapi_listen_opts *opts,
                               struct rapi_error *err);

/* A descriptor that polls readable when rapi_accept has work to do (a
 * connection ready, relay traffic, a timer). Valid until rapi_listener_close. */
RAPI_API int rapi_listener_fd(const struct rapi_listener *l);

/* 1 while registered at the relay (at one relay at least), 0 while
 * reconnecting. */
RAPI_API int rapi_listener_registered(const struct rapi_listener *l);

/* How many control connections (one per relay address) are registered now;
 * *total (may be NULL) gets how many there are. */
RAPI_API int rapi_listener_registrations(const struct rapi_listener *l, int *total);

/* Drive the listener and return the next linked connection: a blocking,
 * connected TCP socket (close-on-exec) whose bytes are the client's.
 * timeout_ms: -1 forever, 0 never blocks (the event-loop form: call it when
 * rapi_listener_fd polls readable). Returns the fd, or -EAGAIN when none is
 * ready in time, or another -errno. peer may be NULL. */
RAPI_API int rapi_accept(struct rapi_listener *l, struct rapi_peer *peer, int timeout_ms);

/* Leave gracefully, so that no client is lost (docs/PROTOCOL.md P-LPP-5):
 * send a close frame on every registration (the relay offers no new
 * client, other listeners of the path or its grace take over), keep
 * answering the notifications that still arrive until the relay closes, and
 * finish the dial-backs in flight; their connections are then queued for
 * rapi_accept. Returns 0 once nothing is left, -ETIMEDOUT after timeout_ms
 * (-1: no limit), or another -errno. Call rapi_listener_close afterwards. */
RAPI_API int rapi_listener_leave(struct rapi_listener *l, int timeout_ms);

/* Unregister (close frame), close every internal socket, free. NULL is ok. */
RAPI_API void rapi_listener_close(struct rapi_listener *l);

/* ---------------------------------------------------------------- client */

struct rapi_connect_opts {
    int timeout_ms;         /* whole connect (0: 75000; < 0: none) */
    long webroute_timeout;  /* WebRoute-Timeout header in seconds, 0: none sent */
    int attempt_timeout_ms; /* one relay, while another is left (0: 10000; < 0: none) */
    const char *ca_file;    /* rwrs://: PEM CA bundle to trust (NULL: $RAPI_CA_FILE, else the
                               system store) */
};

/* Connect through url ("rwr://[KEY@]host[:port]/path", or a space-separated
 * chain whose rwr:// hops are opened inside the previous tunnel). key is
 * used for hops without a key of their own (NULL: none). The first non-rwr
 * element and what follows it are copied to rest (may be NULL). Returns a
 * blocking connected socket, or -errno with err filled. */
RAPI_API int rapi_connect(const char *url, const char *key, const struct rapi_connect_opts *opts,
                          char *rest, size_t rest_cap, struct rapi_error *err);

/* The same through one of several relays: urls[0..nurls) are
 * alternatives (each a URL or a chain as above; every address the first
 * hop's host name resolves to is one more), tried once each in random order
 * until one connects. A failure another relay may not repeat (no
 * connection, a timeout, a close before the answer, 502, 503) moves on to
 * the next; any other answer (403, other 4xx) is final. Each attempt gets
 * opts->attempt_timeout_ms (the last one what is left of timeout_ms). */
RAPI_API int rapi_connect_multi(const char *const *urls, size_t nurls, const char *key,
                                const struct rapi_connect_opts *opts, char *rest, size_t rest_cap,
                                struct rapi_error *err);

/* The same as a state machine for event loops. */
struct rapi_connector;

/* Validate url, start the TCP connect (resolution may block for host names).
 * Returns 0 and *out, or -errno with err filled. */
RAPI_API int rapi_connect_start(struct rapi_connector **out, const char *url, const char *key,
                                const struct rapi_connect_opts *opts, struct rapi_error *err);

/* The same for rapi_connect_multi: resolves every first hop at once. */
RAPI_API int rapi_connect_start_multi(struct rapi_connector **out, const char *const *urls,
                                      size_t nurls, const char *key,
                                      const struct rapi_connect_opts *opts, struct rapi_error *err);

/* The socket to poll (a new one when the connector moves on to another
 * relay: ask again after each step), and the events (POLLIN/POLLOUT) to poll it for. */
RAPI_API int rapi_connector_fd(const struct rapi_connector *c);
RAPI_API int rapi_connector_events(const struct rapi_connector *c);

/* Milliseconds until the connector's deadline (-1: none). */
RAPI_API int rapi_connector_timeout(const struct rapi_connector *c);

/* Make progress without blocking. 0: connected (take the socket); -EAGAIN:
 * poll again; other -errno: failed (err filled, may be NULL). */
RAPI_API int rapi_connect_step(struct rapi_connector *c, struct rapi_error *err);

/* After rapi_connect_step returned 0: the socket (now blocking, owned by the
 * caller) and the chain's rest. */
RAPI_API int rapi_connector_take(struct rapi_connector *c, char *rest, size_t rest_cap);

/* Free (closing the socket unless taken). NULL is ok. */
RAPI_API void rapi_connector_free(struct rapi_connector *c);

/* ----------------------------------------------------------- PROXY v2 */

#define RAPI_PROXYV2_MAX 52 /* 16-byte header + the IPv6 address block */

/* Build a PROXY protocol v2 header (PROXY command, TCP over IPv4 or IPv6)
 * for a connection from src to dst into out. Mixed families are sent as
 * IPv6 (v4-mapped); src NULL or AF_UNSPEC gives the LOCAL command. Returns
 * the header's length or -EINVAL/-ENOSPC. */
RAPI_API int rapi_proxyv2_build(uint8_t *out, size_t cap, const struct sockaddr *src,
                                const struct sockaddr *dst);

#ifdef __cplusplus
}
#endif

#endif
