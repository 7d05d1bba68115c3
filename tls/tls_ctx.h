/* TLS contexts and connections over wolfSSL, for the relay and the SDK,
 * independent of the engine: a server context (certificate/key pairs chosen
 * by SNI, the first the default; minimum version; cipher list; ALPN
 * http/1.1; session tickets under in-memory rotated keys), a client context
 * (system CA store or a given CA file; SNI and host-name check), and
 * non-blocking connections over a plain fd shaped for engine/xprt.h: every
 * call returns >= 0 or -errno, -EAGAIN with *want = TLS_WANT_IN/TLS_WANT_OUT
 * (equal to XPRT_WANT_IN/XPRT_WANT_OUT).
 *
 * Ownership and threads: contexts are reference counted (atomic); a
 * connection holds a reference to the context it came from, so a reloaded
 * server context is freed when its last connection is. A context may be
 * used by several threads at once to create connections; one connection is
 * used by one thread at a time (it may move between threads, like a handed
 * off fd). The caller owns the fd: tls_conn_free() never closes it.
 * Keys never appear in errors or logs; key file buffers are wiped. */
#ifndef RAPI_TLS_TLS_CTX_H
#define RAPI_TLS_TLS_CTX_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define TLS_WANT_IN 1u  /* == XPRT_WANT_IN */
#define TLS_WANT_OUT 2u /* == XPRT_WANT_OUT */

#define TLS_V12 12
#define TLS_V13 13
#define TLS_MAX_PAIRS 16            /* certificate/key pairs per server context */
#define TLS_ERR_MAX 256             /* room for a context-creation error message */
#define TLS_REASON_MAX 200          /* room for a connection's failure reason */
#define TLS_KEY_FILE_MAX (64 << 10) /* a larger private key file is refused */
#define TLS_TICKET_ROTATE_SEC 3600  /* a new ticket key each hour; the old one */
                                    /* still opens tickets for one more hour */
#define TLS_SYSTEM_CA "/etc/ssl/certs/ca-certificates.crt"
#define TLS_ALPN_HTTP11 "http/1.1"

/* AES-GCM first (fast through the accelerated device), ChaCha20 last. */
#define TLS_DEFAULT_CIPHERS                                                                        \
    "TLS13-AES128-GCM-SHA256:TLS13-AES256-GCM-SHA384:TLS13-CHACHA20-POLY1305-SHA256:"              \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                   \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

/* Why a handshake (or a later call) failed; names for metrics labels. */
enum tls_err {
    TLS_ERR_NONE = 0,
    TLS_ERR_UNKNOWN_CA,    /* peer's chain does not lead to a trusted CA */
    TLS_ERR_EXPIRED,       /* a certificate is past its notAfter */
    TLS_ERR_NOT_YET_VALID, /* before its notBefore */
    TLS_ERR_NAME_MISMATCH, /* server certificate is not for the host name */
    TLS_ERR_BAD_CERT,      /* other certificate problem */
    TLS_ERR_VERSION,       /* no protocol version in common */
    TLS_ERR_NO_SHARED_CIPHER,
    TLS_ERR_ALERT,   /* the peer sent a fatal alert */
    TLS_ERR_NOT_TLS, /* the bytes are not TLS (plain HTTP to a TLS port) */
    TLS_ERR_CLOSED,  /* the peer closed during the handshake */
    TLS_ERR_IO,      /* socket error (the result carries its errno) */
    TLS_ERR_OTHER,
    TLS_ERR_COUNT
};

struct tls_pair {
    const char *cert_file; /* PEM, leaf first, then the chain */
    const char *key_file;  /* PEM private key; refused if group/other may read it */
};

struct tls_server_conf {
    const struct tls_pair *pairs; /* 1..TLS_MAX_PAIRS; pairs[0] is the default */
    size_t n_pairs;
    int min_version;     /* TLS_V12 (default when 0) or TLS_V13 */
    int max_version;     /* TLS_V13 (default when 0) or TLS_V12 */
    const char *ciphers; /* wolfSSL list, TLS 1.3 and 1.2 names; NULL: default */
    bool accel;          /* AES-GCM through aead_accel when the CPU has AES-NI */
    bool no_tickets;     /* no session tickets (no resumption) */
};

struct tls_client_conf {
    const char *ca_file; /* PEM bundle; NULL: TLS_SYSTEM_CA */
    int min_version;
    int max_version;
    const char *ciphers;
    bool accel;
};

struct tls_server;
struct tls_client;
struct tls_conn;
struct tls_session; /* a client's resumable session (ticket) */

/* Build a server context. 0, or -errno with a message in err (never key
 * bytes): -EPERM key file open to others, -EINVAL bad config/cert/key,
 * -ENOENT, -EFBIG, -ENOMEM. *out holds one reference. */
int tls_server_new(const struct tls_server_conf *conf, struct tls_server **out, char *err,
                   size_t errlen);
struct tls_server *tls_server_ref(struct tls_server *s);
void tls_server_unref(struct tls_server *s); /* frees on the last reference */

int tls_client_new(const struct tls_client_conf *conf, struct tls_client **out, char *err,
                   size_t errlen);
struct tls_client *tls_client_ref(struct tls_client *c);
void tls_client_unref(struct tls_client *c);

/* A connection on a connected, non-blocking fd (not taken over). 0,
 * -ENOMEM. host: name to verify and send as SNI (an IP literal is verified
 * against the certificate's names but not sent as SNI). */
int tls_conn_server(struct tls_server *s, int fd, struct tls_conn **out);
int tls_conn_client(struct tls_client *cl, int fd, const char *host, struct tls_conn **out);
void tls_conn_free(struct tls_conn *c); /* sends nothing, closes nothing */

/* 0 when the handshake is complete; -EAGAIN (*want set); -EPROTO (TLS
 * failure, see tls_conn_err/reason); -ECONNRESET/-EPIPE/other socket
 * -errno. Call again on readiness until 0. */
int tls_conn_handshake(struct tls_conn *c, unsigned *want);

/* len > 0 (-EINVAL otherwise). Bytes read (> 0); 0 at end of stream (close_notify, or a TCP close
 * without it: tls_conn_truncated() tells which); -EAGAIN; -EPROTO; -errno.
 * Data may stay buffered inside after a read: check tls_conn_pending()
 * before waiting for readiness. */
ssize_t tls_conn_read(struct tls_conn *c, void *buf, size_t len, unsigned *want);

/* Bytes written (all of len up to TLS_WRITE_MAX; 0 when len is 0); -EAGAIN: call again
 * later with the same bytes; -EPROTO; -errno (-EPIPE, -ECONNRESET). */
#define TLS_WRITE_MAX (256 << 10)
ssize_t tls_conn_write(struct tls_conn *c, const void *buf, size_t len, unsigned *want);

/* Send close_notify (our half-close; reading goes on). 0 once sent,
 * -EAGAIN, -errno. The caller then shuts the socket's write side. */
int tls_conn_shutdown(struct tls_conn *c, unsigned *want);

/* Nonzero: tls_conn_read() has bytes to work on without the socket
 * (decrypted data, or read-ahead bytes not yet decrypted): call it again
 * before waiting for readiness. */
size_t tls_conn_pending(struct tls_conn *c);
int tls_conn_fd(const struct tls_conn *c);
/* Go on over fd, a dup() of the same socket (the caller owns both). */
void tls_conn_set_fd(struct tls_conn *c, int fd);
enum tls_err tls_conn_err(const struct tls_conn *c);
const char *tls_conn_reason(const struct tls_conn *c); /* "" when none */
bool tls_conn_truncated(const struct tls_conn *c);     /* EOF without close_notify */
const char *tls_conn_version(struct tls_conn *c);      /* "TLSv1.3", "TLSv1.2" */
const char *tls_conn_cipher(struct tls_conn *c);
const char *tls_conn_group(struct tls_conn *c); /* key exchange: "X25519", ...; "" */
const char *tls_conn_alpn(struct tls_conn *c);  /* NULL when none agreed */
const char *tls_conn_sni(struct tls_conn *c);   /* server: name the client asked for */
bool tls_conn_resumed(struct tls_conn *c);
/* Server: index of the certificate pair used (0 = default). */
int tls_conn_pair(const struct tls_conn *c);

/* Client resumption: take the session after the handshake (and after some
 * data was read, since TLS 1.3 tickets arrive after it); give it to a new
 * connection to the same host before its handshake. NULL when none. */
struct tls_session *tls_conn_session(struct tls_conn *c);
int tls_conn_resume(struct tls_conn *c, struct tls_session *s); /* 0, -EINVAL: not resumable */
void tls_session_free(struct tls_session *s);

const char *tls_err_name(enum tls_err e); /* "unknown_ca", ... for metrics */

/* Start a new ticket key now (the current one becomes the previous one,
 * still accepted); done by itself every TLS_TICKET_ROTATE_SEC. */
void tls_tickets_rotate(void);

#endif
