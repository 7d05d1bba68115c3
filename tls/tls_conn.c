/* Non-blocking TLS connections over a plain fd: handshake, read, write,
 * close_notify, and a named reason for every failure. Every wolfSSL call
 * on a connection runs inside the connection's AES-GCM key cache. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "tls/tls_int.h"

#include <wolfssl/error-ssl.h>
#include <wolfssl/wolfcrypt/error-crypt.h>

#define CONN_EOF 1 /* conn_fail: the socket ended without a TLS error */

/* One recv(): > 0, or the wolfSSL callback code. */
static int sock_recv(struct tls_conn *c, void *buf, size_t sz)
{
    ssize_t n;

    do
        n = recv(c->fd, buf, sz, 0);
    while (n == -1 && errno == EINTR);
    if (n > 0)
        return (int)n;
    if (n == 0) {
        c->peer_eof = true;
        return WOLFSSL_CBIO_ERR_CONN_CLOSE;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return WOLFSSL_CBIO_ERR_WANT_READ;
    c->io_errno = errno;
    return errno == ECONNRESET ? WOLFSSL_CBIO_ERR_CONN_RST : WOLFSSL_CBIO_ERR_GENERAL;
}

/* Serve from the read-ahead buffer, freed once empty. */
static int rx_take(struct tls_conn *c, char *buf, int sz)
{
    size_t n = c->rx_len - c->rx_off < (size_t)sz ? c->rx_len - c->rx_off : (size_t)sz;

    memcpy(buf, c->rx + c->rx_off, n);
    c->rx_off += n;
    if (c->rx_off == c->rx_len) {
        free(c->rx);
        c->rx = NULL;
        c->rx_off = c->rx_len = 0;
    }
    return (int)n;
}

/* Small asks (record headers) read ahead into c->rx; large ones go
 * straight into wolfSSL's buffer. */
int tls_io_recv(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
    struct tls_conn *c = ctx;
    int n;

    (void)ssl;
    if (c->rx)
        return rx_take(c, buf, sz);
    if ((size_t)sz >= TLS_RX_AHEAD / 2 || !(c->rx = malloc(TLS_RX_AHEAD)))
        return sock_recv(c, buf, (size_t)sz);
    n = sock_recv(c, c->rx, TLS_RX_AHEAD);
    if (n <= 0) {
        free(c->rx);
        c->rx = NULL;
        return n;
    }
    c->rx_len = (size_t)n;
    return rx_take(c, buf, sz);
}

int tls_io_send(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
    struct tls_conn *c = ctx;
    ssize_t n;

    (void)ssl;
    do
        n = send(c->fd, buf, (size_t)sz, MSG_NOSIGNAL);
    while (n == -1 && errno == EINTR);
    if (n >= 0)
        return (int)n;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return WOLFSSL_CBIO_ERR_WANT_WRITE;
    c->io_errno = errno;
    if (errno == EPIPE)
        return WOLFSSL_CBIO_ERR_CONN_CLOSE;
    return errno == ECONNRESET ? WOLFSSL_CBIO_ERR_CONN_RST : WOLFSSL_CBIO_ERR_GENERAL;
}

static const char *const err_names[TLS_ERR_COUNT] = {
    [TLS_ERR_NONE] = "none",
    [TLS_ERR_UNKNOWN_CA] = "unknown_ca",
    [TLS_ERR_EXPIRED] = "expired",
    [TLS_ERR_NOT_YET_VALID] = "not_yet_valid",
    [TLS_ERR_NAME_MISMATCH] = "name_mismatch",
    [TLS_ERR_BAD_CERT] = "bad_cert",
    [TLS_ERR_VERSION] = "version",
    [TLS_ERR_NO_SHARED_CIPHER] = "no_shared_cipher",
    [TLS_ERR_ALERT] = "alert",
    [TLS_ERR_NOT_TLS] = "not_tls",
    [TLS_ERR_CLOSED] = "closed",
    [TLS_ERR_IO] = "io",
    [TLS_ERR_OTHER] = "other",
};

static const char *const err_text[TLS_ERR_COUNT] = {
    [TLS_ERR_NONE] = "",
    [TLS_ERR_UNKNOWN_CA] = "certificate not signed by a trusted CA",
    [TLS_ERR_EXPIRED] = "certificate has expired",
    [TLS_ERR_NOT_YET_VALID] = "certificate is not valid yet",
    [TLS_ERR_NAME_MISMATCH] = "certificate does not match the host name",
    [TLS_ERR_BAD_CERT] = "bad certificate",
    [TLS_ERR_VERSION] = "no TLS version in common",
    [TLS_ERR_NO_SHARED_CIPHER] = "no cipher suite in common",
    [TLS_ERR_ALERT] = "peer sent a fatal alert",
    [TLS_ERR_NOT_TLS] = "peer does not speak TLS",
    [TLS_ERR_CLOSED] = "peer closed the connection during the handshake",
    [TLS_ERR_IO] = "socket error",
    [TLS_ERR_OTHER] = "TLS error",
};

const char *tls_err_name(enum tls_err e)
{
    return (unsigned)e < TLS_ERR_COUNT ? err_names[e] : "other";
}

static enum tls_err classify(int e)
{
    switch (e) {
    case ASN_NO_SIGNER_E:
    case ASN_SELF_SIGNED_E:
        return TLS_ERR_UNKNOWN_CA;
    case ASN_AFTER_DATE_E:
        return TLS_ERR_EXPIRED;
    case ASN_BEFORE_DATE_E:
        return TLS_ERR_NOT_YET_VALID;
    case DOMAIN_NAME_MISMATCH:
    case IPADDR_MISMATCH:
        return TLS_ERR_NAME_MISMATCH;
    case VERSION_ERROR:
        return TLS_ERR_VERSION;
    case MATCH_SUITE_ERROR:
        return TLS_ERR_NO_SHARED_CIPHER;
    case FATAL_ERROR:
        return TLS_ERR_ALERT;
    case UNKNOWN_RECORD_TYPE:
    case PARSE_ERROR:
    case LENGTH_ERROR:
        return TLS_ERR_NOT_TLS;
    default:
        /* wolfCrypt's certificate-parsing range */
        return e <= ASN_PARSE_E && e >= ASN_NO_PEM_HEADER ? TLS_ERR_BAD_CERT : TLS_ERR_OTHER;
    }
}

/* Record a TLS failure: category, then wolfSSL's own words (never data). */
static int fail_proto(struct tls_conn *c, int e)
{
    WOLFSSL_ALERT_HISTORY h;

    c->err = classify(e);
    if (c->err == TLS_ERR_ALERT && wolfSSL_get_alert_history(c->ssl, &h) == WOLFSSL_SUCCESS)
        snprintf(c->reason, sizeof(c->reason), "%s: %s", err_text[c->err],
                 wolfSSL_alert_desc_string_long(h.last_rx.code));
    else
        snprintf(c->reason, sizeof(c->reason), "%s (wolfSSL %d: %s)", err_text[c->err], e,
                 wolfSSL_ERR_reason_error_string((unsigned long)(long)e));
    return -EPROTO;
}

/* -EAGAIN with *want, -errno of the socket, CONN_EOF, or -EPROTO. */
static int conn_fail(struct tls_conn *c, int r, unsigned *want)
{
    int e = wolfSSL_get_error(c->ssl, r);

    if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE) {
        *want = e == WOLFSSL_ERROR_WANT_READ ? TLS_WANT_IN : TLS_WANT_OUT;
        return -EAGAIN;
    }
    if (c->io_errno) {
        c->err = TLS_ERR_IO;
        snprintf(c->reason, sizeof(c->reason), "%s: %s", err_text[TLS_ERR_IO],
                 strerror(c->io_errno));
        return -c->io_errno;
    }
    if (e == WOLFSSL_ERROR_ZERO_RETURN || c->peer_eof)
        return CONN_EOF;
    return fail_proto(c, e);
}

static int conn_new(WOLFSSL_CTX *ctx, int fd, struct tls_conn **out)
{
    struct tls_conn *c = calloc(1, sizeof(*c));

    *out = NULL;
    if (!c)
        return -ENOMEM;
    if (!(c->ssl = wolfSSL_new(ctx))) {
        free(c);
        return -ENOMEM;
    }
    c->fd = fd;
    wolfSSL_set_ex_data(c->ssl, 0, c);
    wolfSSL_SetIOReadCtx(c->ssl, c);
    wolfSSL_SetIOWriteCtx(c->ssl, c);
    *out = c;
    return 0;
}

static int use_alpn(struct tls_conn *c)
{
    char proto[] = TLS_ALPN_HTTP11;

    return wolfSSL_UseALPN(c->ssl, proto, sizeof(proto) - 1, WOLFSSL_ALPN_CONTINUE_ON_MISMATCH) ==
                   WOLFSSL_SUCCESS
               ? 0
               : -ENOMEM;
}

int tls_conn_server(struct tls_server *s, int fd, struct tls_conn **out)
{
    int rc = conn_new(s->ctx[0], fd, out);

    if (rc)
        return rc;
    (*out)->srv = tls_server_ref(s);
    if ((rc = use_alpn(*out)) != 0) {
        tls_conn_free(*out);
        *out = NULL;
    }
    return rc;
}

static bool is_ip_literal(const char *host)
{
    unsigned char a[sizeof(struct in6_addr)];

    return inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
}

static int client_names(struct tls_conn *c, const char *host)
{
    if (wolfSSL_check_domain_name(c->ssl, host) != WOLFSSL_SUCCESS)
        return -ENOMEM;
    if (!is_ip_literal(host) && wolfSSL_UseSNI(c->ssl, WOLFSSL_SNI_HOST_NAME, host,
                                               (unsigned short)strlen(host)) != WOLFSSL_SUCCESS)
        return -ENOMEM;
    return use_alpn(c);
}

int tls_conn_client(struct tls_client *cl, int fd, const char *host, struct tls_conn **out)
{
    int rc;

    *out = NULL;
    if (!host || !*host || strlen(host) > 255)
        return -EINVAL; /* never connect without a name to verify */
    if ((rc = conn_new(cl->ctx, fd, out)) != 0)
        return rc;
    (*out)->cli = tls_client_ref(cl);
    if ((rc = client_names(*out, host)) != 0) {
        tls_conn_free(*out);
        *out = NULL;
    }
    return rc;
}

void tls_conn_free(struct tls_conn *c)
{
    if (!c)
        return;
    wolfSSL_free(c->ssl);
    free(c->rx);
    aead_keycache_free(&c->keys);
    tls_server_unref(c->srv);
    tls_client_unref(c->cli);
    free(c);
}

int tls_conn_handshake(struct tls_conn *c, unsigned *want)
{
    struct aead_keycache *prev = aead_keycache_enter(&c->keys);
    int r, rc = 0;

    tls_thread_mark();
    r = wolfSSL_negotiate(c->ssl);

    if (r != WOLFSSL_SUCCESS && (rc = conn_fail(c, r, want)) == CONN_EOF) {
        c->err = TLS_ERR_CLOSED;
        snprintf(c->reason, sizeof(c->reason), "%s", err_text[TLS_ERR_CLOSED]);
        rc = -ECONNRESET;
    }
    aead_keycache_leave(prev);
    return rc;
}

ssize_t tls_conn_read(struct tls_conn *c, void *buf, size_t len, unsigned *want)
{
    struct aead_keycache *prev;
    int n, rc;

    if (len == 0)
        return -EINVAL; /* 0 means end of stream */
    prev = aead_keycache_enter(&c->keys);
    n = wolfSSL_read(c->ssl, buf, len > INT_MAX ? INT_MAX : (int)len);

    if (n <= 0 && (rc = conn_fail(c, n, want)) != 0) {
        n = rc;
        if (rc == CONN_EOF) {
            c->truncated = !(wolfSSL_get_shutdown(c->ssl) & WOLFSSL_RECEIVED_SHUTDOWN);
            n = 0;
        }
    }
    aead_keycache_leave(prev);
    return n;
}

ssize_t tls_conn_write(struct tls_conn *c, const void *buf, size_t len, unsigned *want)
{
    struct aead_keycache *prev;
    int n;

    if (len == 0)
        return 0;
    prev = aead_keycache_enter(&c->keys);
    n = wolfSSL_write(c->ssl, buf, len > TLS_WRITE_MAX ? TLS_WRITE_MAX : (int)len);
    if (n <= 0) {
        n = conn_fail(c, n, want);
        if (n == CONN_EOF)
            n = -EPIPE;
    }
    aead_keycache_leave(prev);
    return n;
}

int tls_conn_shutdown(struct tls_conn *c, unsigned *want)
{
    struct aead_keycache *prev = aead_keycache_enter(&c->keys);
    int r = wolfSSL_shutdown(c->ssl), rc = 0;

    if (r != WOLFSSL_SUCCESS && r != WOLFSSL_SHUTDOWN_NOT_DONE) {
        rc = conn_fail(c, r, want);
        if (rc == CONN_EOF)
            rc = -EPIPE;
    }
    aead_keycache_leave(prev);
    return rc;
}

size_t tls_conn_pending(struct tls_conn *c)
{
    int n = wolfSSL_pending(c->ssl);
    return (n > 0 ? (size_t)n : 0) + (c->rx_len - c->rx_off);
}

int tls_conn_fd(const struct tls_conn *c)
{
    return c->fd;
}

void tls_conn_set_fd(struct tls_conn *c, int fd)
{
    c->fd = fd;
}

enum tls_err tls_conn_err(const struct tls_conn *c)
{
    return c->err;
}

const char *tls_conn_reason(const struct tls_conn *c)
{
    return c->reason;
}

bool tls_conn_truncated(const struct tls_conn *c)
{
    return c->truncated;
}

const char *tls_conn_version(struct tls_conn *c)
{
    return wolfSSL_get_version(c->ssl);
}

const char *tls_conn_cipher(struct tls_conn *c)
{
    return wolfSSL_get_cipher_name(c->ssl);
}

const char *tls_conn_group(struct tls_conn *c)
{
    const char *g = wolfSSL_get_curve_name(c->ssl);
    return g ? g : "";
}

const char *tls_conn_alpn(struct tls_conn *c)
{
    char *name = NULL;
    unsigned short len = 0;

    if (wolfSSL_ALPN_GetProtocol(c->ssl, &name, &len) != WOLFSSL_SUCCESS || !name || !len)
        return NULL;
    return len == strlen(TLS_ALPN_HTTP11) && memcmp(name, TLS_ALPN_HTTP11, len) == 0
               ? TLS_ALPN_HTTP11
               : NULL;
}

const char *tls_conn_sni(struct tls_conn *c)
{
    return wolfSSL_get_servername(c->ssl, WOLFSSL_SNI_HOST_NAME);
}

bool tls_conn_resumed(struct tls_conn *c)
{
    return wolfSSL_session_reused(c->ssl) == 1;
}

int tls_conn_pair(const struct tls_conn *c)
{
    return c->pair;
}

struct tls_session *tls_conn_session(struct tls_conn *c)
{
    return (struct tls_session *)wolfSSL_get1_session(c->ssl);
}

int tls_conn_resume(struct tls_conn *c, struct tls_session *s)
{
    return wolfSSL_set_session(c->ssl, (WOLFSSL_SESSION *)s) == WOLFSSL_SUCCESS ? 0 : -EINVAL;
}

void tls_session_free(struct tls_session *s)
{
    if (s)
        wolfSSL_SESSION_free((WOLFSSL_SESSION *)s);
}
