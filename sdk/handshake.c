/* The client handshake machine (handshake.h) and the answer reader it runs:
 * connect -> request -> 101 -> accept check, once for every user in
 * librapi. Acts on one struct hsm / struct hs and its fd only. */
#define RAPI_BUILDING 1
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/anet.h"
#include "proto/http1.h"
#include "sdk/handshake.h"

#define HS_HEADERS HTTP1_MAX_HEADERS

/* ------------------------------------------------------------ answers */

static void hs_init(struct hs *h)
{
    h->len = 0;
    h->head_len = 0;
    h->status = 0;
    h->body_want = 0;
    h->eof = false;
}

/* Offset just past the blank line ending a head within buf[0..end), looking
 * only at newline positions >= from; 0 when not there yet. */
static size_t head_end(const char *buf, size_t from, size_t end)
{
    size_t i;

    for (i = from; i < end; i++) {
        if (buf[i] != '\n' || i == 0)
            continue;
        if (buf[i - 1] == '\n' || (i >= 2 && buf[i - 1] == '\r' && buf[i - 2] == '\n'))
            return i + 1;
    }
    return 0;
}

static int hs_head_done(struct hs *h, struct rapi_error *err)
{
    struct http1_header hdr[HS_HEADERS];
    struct http1_response res;
    const struct http1_header *cl;
    size_t room = HS_MAX - 1 - h->len;
    long v;

    if (http1_parse_response(h->buf, h->len, 0, &res, hdr, HS_HEADERS) != (int)h->len) {
        err_set(err, RAPI_E_PROTOCOL, 0, "relay sent a malformed answer head");
        return -EPROTO;
    }
    h->head_len = h->len;
    h->status = res.status;
    if (res.status == 101)
        return 0;
    h->body_want = room;
    cl = http1_find(hdr, res.num_headers, "Content-Length");
    if (cl != NULL && cl->value_len > 0 && cl->value_len < 10) {
        v = strtol(cl->value, NULL, 10);
        if (v >= 0 && (size_t)v < room)
            h->body_want = (size_t)v;
    }
    return 0;
}

/* Peek, then consume only up to the end of the head: bytes after it are not
 * ours. While the head is incomplete every peeked byte belongs to it, so we
 * consume them (no busy loop on a level-triggered poll). */
static int hs_read_head(struct hs *h, int fd, struct rapi_error *err)
{
    size_t room = HS_MAX - 1 - h->len, end, take;
    ssize_t n;

    if (room == 0) {
        err_set(err, RAPI_E_PROTOCOL, 0, "relay answer head too large");
        return -EPROTO;
    }
    n = recv(fd, h->buf + h->len, room, MSG_PEEK);
    if (n == -1)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -EAGAIN : -errno;
    if (n == 0)
        return -ECONNRESET;
    end = head_end(h->buf, h->len, h->len + (size_t)n);
    take = end ? end - h->len : (size_t)n;
    n = recv(fd, h->buf + h->len, take, 0);
    if (n != (ssize_t)take)
        return n == -1 ? -errno : -EIO;
    h->len += take;
    h->buf[h->len] = '\0';
    return end ? hs_head_done(h, err) : -EAGAIN;
}

static int hs_read_body(struct hs *h, int fd)
{
    size_t want = h->head_len + h->body_want;
    ssize_t n;

    while (h->len < want && !h->eof) {
        n = recv(fd, h->buf + h->len, want - h->len, 0);
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return -EAGAIN;
        if (n <= 0) {
            h->eof = true; /* an error answer ends with the connection */
            break;
        }
        h->len += (size_t)n;
    }
    h->buf[h->len] = '\0';
    return 0;
}

/* Over TLS there is no peek: the head is read one byte at a time out of
 * the decrypted record (no system call per byte), so that what follows it
 * stays in the session for whoever takes the tunnel. */
static int hs_read_head_tls(struct hs *h, struct tls_conn *tc, unsigned *want,
                            struct rapi_error *err)
{
    ssize_t n;

    while (h->len < HS_MAX - 1) {
        n = tls_conn_read(tc, h->buf + h->len, 1, want);
        if (n == -EAGAIN)
            return -EAGAIN;
        if (n <= 0) {
            err_set(err, RAPI_E_CLOSED, n < 0 && n != -EPROTO ? (int)-n : 0,
                    "relay closed the connection before answering");
            return n < 0 ? (int)n : -ECONNRESET;
        }
        h->len++;
        h->buf[h->len] = '\0';
        if (head_end(h->buf, h->len - 1, h->len))
            return hs_head_done(h, err);
    }
    err_set(err, RAPI_E_PROTOCOL, 0, "relay answer head too large");
    return -EPROTO;
}

static int hs_read_body_tls(struct hs *h, struct tls_conn *tc, unsigned *want)
{
    size_t end = h->head_len + h->body_want;
    ssize_t n;

    while (h->len < end && !h->eof) {
        n = tls_conn_read(tc, h->buf + h->len, end - h->len, want);
        if (n == -EAGAIN)
            return -EAGAIN;
        if (n <= 0)
            h->eof = true;
        else
            h->len += (size_t)n;
    }
    h->buf[h->len] = '\0';
    return 0;
}

static int hs_read_tls(struct hs *h, struct tls_conn *tc, unsigned *want, struct rapi_error *err)
{
    int rc;

    if (h->head_len == 0 && (rc = hs_read_head_tls(h, tc, want, err)) < 0)
        return rc;
    return h->status == 101 ? 0 : hs_read_body_tls(h, tc, want);
}

static int hs_read(struct hs *h, int fd, struct rapi_error *err)
{
    int rc;

    while (h->head_len == 0) {
        rc = hs_read_head(h, fd, err);
        if (rc == -EAGAIN && h->head_len == 0) {
            /* Retry once: the peek above may have been only part of a head. */
            rc = hs_read_head(h, fd, err);
            if (rc == -EAGAIN && h->head_len == 0)
                return -EAGAIN;
        }
        if (rc < 0 && rc != -EAGAIN) {
            if (rc != -EPROTO)
                err_set(err, RAPI_E_CLOSED, -rc, "relay closed the connection before answering");
            return rc;
        }
    }
    if (h->status == 101)
        return 0;
    return hs_read_body(h, fd);
}

static int hs_parse_again(const struct hs *h, struct http1_response *res, struct http1_header *hdr)
{
    return http1_parse_response(h->buf, h->head_len, 0, res, hdr, HS_HEADERS) == (int)h->head_len
               ? 0
               : -EPROTO;
}

static int hs_refused(const struct hs *h, struct rapi_error *err)
{
    return err_from_answer(err, h->status, h->buf + h->head_len, h->len - h->head_len);
}

static int bad_101(struct rapi_error *err, const char *what)
{
    err_set(err, RAPI_E_PROTOCOL, 0, "invalid 101 answer: %s", what);
    return -EPROTO;
}

static int header_is(const struct http1_header *hdr, size_t n, const char *name, const char *want)
{
    const struct http1_header *h = http1_find_one(hdr, n, name);

    return h != NULL && h->value_len == strlen(want) && memcmp(h->value, want, h->value_len) == 0;
}

static int hs_check_ws(const struct hs *h, const char *ws_key, struct rapi_error *err)
{
    struct http1_header hdr[HS_HEADERS];
    struct http1_response res;
    const struct http1_header *x;
    char accept[WS_ACCEPT_LEN + 1];

    if (h->status != 101)
        return hs_refused(h, err);
    if (hs_parse_again(h, &res, hdr) < 0 || res.minor_version != 1)
        return bad_101(err, "not HTTP/1.1");
    x = http1_find(hdr, res.num_headers, "Upgrade");
    if (x == NULL || !http1_has_token(x->value, x->value_len, "websocket"))
        return bad_101(err, "Upgrade is not websocket");
    x = http1_find(hdr, res.num_headers, "Connection");
    if (x == NULL || !http1_has_token(x->value, x->value_len, "upgrade"))
        return bad_101(err, "Connection lacks upgrade");
    if (ws_accept(ws_key, strlen(ws_key), accept) < 0 ||
        !header_is(hdr, res.num_headers, "Sec-WebSocket-Accept", accept))
        return bad_101(err, "wrong Sec-WebSocket-Accept");
    /* RFC 6455 4.1: we asked for no extension and no subprotocol. */
    if (http1_find(hdr, res.num_headers, "Sec-WebSocket-Extensions") != NULL ||
        http1_find(hdr, res.num_headers, "Sec-WebSocket-Protocol") != NULL)
        return bad_101(err, "unrequested extension or subprotocol");
    return 0;
}

static int hs_check_wr(const struct hs *h, const char *id, struct rapi_error *err)
{
    struct http1_header hdr[HS_HEADERS];
    struct http1_response res;
    const struct http1_header *x;
    char accept[WEBROUTE_ACCEPT_LEN + 1];

    if (h->status != 101)
        return hs_refused(h, err);
    if (hs_parse_again(h, &res, hdr) < 0)
        return bad_101(err, "unparsable head");
    x = http1_find(hdr, res.num_headers, "Upgrade");
    if (x == NULL || !http1_has_token(x->value, x->value_len, "webroute"))
        return bad_101(err, "Upgrade is not webroute");
    if (wr_accept(id, strlen(id), accept) < 0 ||
        !header_is(hdr, res.num_headers, "Sec-WebRoute-Accept", accept))
        return bad_101(err, "wrong Sec-WebRoute-Accept");
    return 0;
}

/* ------------------------------------------------------------ machine */

/* Start the TLS handshake on the connected fd. */
static int hsm_tls_begin(struct hsm *m, struct rapi_error *err)
{
    int rc;

    if (m->tls == NULL) {
        err_set(err, RAPI_E_UNSUPPORTED, 0, "TLS relay URL without a TLS context");
        return -EPROTONOSUPPORT;
    }
    rc = sdktls_conn(m->tls, m->fd, m->host, m->port, &m->tc);
    if (rc < 0) {
        err_set(err, RAPI_E_SYSTEM, -rc, "TLS: %s", strerror(-rc));
        return rc;
    }
    m->tls_want = TLS_WANT_OUT;
    m->tls_kept = false;
    m->st = HSM_TLS;
    return 0;
}

/* Drive the TLS handshake; the request and the answer then go through the
 * session (hsm_send/hsm_read), on the same fd. */
static int hsm_tls_step(struct hsm *m, struct rapi_error *err)
{
    int rc = tls_conn_handshake(m->tc, &m->tls_want);

    if (rc == -EAGAIN)
        return rc;
    if (rc < 0)
        return sdktls_fail(m->tc, rc, m->where, err);
    m->st = HSM_SEND;
    return 0;
}

static int hsm_send(struct hsm *m)
{
    ssize_t n;

    if (m->tc == NULL)
        return anet_send_nb(m->fd, m->req, m->req_len, &m->req_off);
    while (m->req_off < m->req_len) {
        n = tls_conn_write(m->tc, m->req + m->req_off, m->req_len - m->req_off, &m->tls_want);
        if (n < 0)
            return (int)n;
        m->req_off += (size_t)n;
    }
    return 0;
}

static int hsm_read(struct hsm *m, struct rapi_error *err)
{
    int rc;

    if (m->tc == NULL)
        return hs_read(&m->hs, m->fd, err);
    rc = hs_read_tls(&m->hs, m->tc, &m->tls_want, err);
    if (m->hs.head_len && !m->tls_kept) { /* a ticket, if any, came before the head */
        m->tls_kept = true;
        sdktls_keep(m->tls, m->tc, m->host, m->port);
    }
    return rc;
}

void hsm_init(struct hsm *m)
{
    memset(m, 0, sizeof(*m));
    m->fd = -1;
    m->hold = -1;
    m->st = HSM_IDLE;
}

static int hsm_prepared(struct hsm *m, int n, struct rapi_error *err)
{
    if (n == -EINVAL) {
        err_set(err, RAPI_E_KEY, 0, "key or WebRoute-ID with a blank or control character");
        return n;
    }
    if (n < 0) {
        err_set(err, RAPI_E_URL, 0, "request head too long");
        return n;
    }
    m->req_len = (size_t)n;
    m->req_off = 0;
    hs_init(&m->hs);
    m->st = m->fd >= 0 ? HSM_SEND : HSM_IDLE;
    if (m->fd >= 0 && m->use_tls) { /* the next hop, TLS inside the tunnel */
        int rc = hsm_pump(m, err);  /* an outer TLS session moves behind a pump */
        return rc < 0 ? rc : hsm_tls_begin(m, err);
    }
    return 0;
}

/* The relay u names: TLS or not, and the name to check its certificate against. */
static void hsm_target(struct hsm *m, const struct rapi_url *u)
{
    m->use_tls = u->tls;
    m->port = u->port;
    snprintf(m->host, sizeof(m->host), "%s", u->host);
}

int hsm_ws_request(struct hsm *m, const struct rapi_url *u, const char *key, struct rapi_error *err)
{
    char ws_key[WS_KEY_LEN + 1];

    if (ws_key_new(ws_key) < 0) {
        err_set(err, RAPI_E_SYSTEM, EIO, "no randomness for Sec-WebSocket-Key");
        return -EIO;
    }
    m->kind = HSM_WS;
    hsm_target(m, u);
    snprintf(m->proof, sizeof(m->proof), "%s", ws_key);
    return hsm_prepared(m, wire_ws_request(m->req, sizeof(m->req), u, key, ws_key), err);
}

int hsm_wr_request(struct hsm *m, const struct rapi_url *u, const char *key, const char *id,
                   long timeout, struct rapi_error *err)
{
    m->kind = HSM_WR;
    hsm_target(m, u);
    if (strlen(id) >= sizeof(m->proof)) {
        err_set(err, RAPI_E_PROTOCOL, 0, "WebRoute-ID too long");
        return -EINVAL;
    }
    snprintf(m->proof, sizeof(m->proof), "%s", id);
    return hsm_prepared(m, wire_wr_request(m->req, sizeof(m->req), u, key, id, timeout), err);
}

int hsm_park_request(struct hsm *m, const struct rapi_url *u, const char *key, const char *id,
                     long timeout, struct rapi_error *err)
{
    static const char hdr[] = WR_PARK_HEADER ": 1\r\n";
    int rc = hsm_wr_request(m, u, key, id, timeout, err);

    if (rc < 0)
        return rc;
    if (m->req_len < 2 || m->req_len + sizeof(hdr) - 1 > sizeof(m->req)) {
        err_set(err, RAPI_E_PROTOCOL, 0, "request head too long");
        return -ENOSPC;
    }
    /* Before the blank line that ends the head. */
    memmove(m->req + m->req_len - 2 + sizeof(hdr) - 1, m->req + m->req_len - 2, 2);
    memcpy(m->req + m->req_len - 2, hdr, sizeof(hdr) - 1);
    m->req_len += sizeof(hdr) - 1;
    m->park = true;
    return 0;
}

int hsm_connect_addr(struct hsm *m, const struct rapi_url *u, const struct relay_addr *a,
                     struct rapi_error *err)
{
    int fd;

    hsm_close(m);
    wire_where(u, a, m->where, sizeof(m->where));
    fd = wire_connect_addr(a, m->where, err);
    if (fd < 0) {
        m->st = HSM_FAILED;
        return fd;
    }
    m->fd = fd;
    m->req_off = 0;
    hs_init(&m->hs);
    m->st = HSM_CONNECT;
    return 0;
}

int hsm_connect(struct hsm *m, const struct rapi_url *u, struct rapi_error *err)
{
    struct relay_addr a;
    int rc = wire_resolve(u, &a, 1, err);

    if (rc < 0) {
        hsm_close(m);
        m->st = HSM_FAILED;
        return rc;
    }
    return hsm_connect_addr(m, u, &a, err);
}

static int hsm_fail(struct hsm *m, int rc)
{
    m->st = HSM_FAILED;
    return rc;
}

/* CONNECT: SO_ERROR reads 0 while the connect is still in progress, so ask
 * poll first whether it finished. */
static int hsm_connected(struct hsm *m, struct rapi_error *err)
{
    struct pollfd p = {.fd = m->fd, .events = POLLOUT};
    int rc;

    if (poll(&p, 1, 0) == 0)
        return -EAGAIN;
    rc = anet_sock_error(m->fd);
    if (rc < 0) {
        err_set(err, RAPI_E_CONNECT, -rc, "connect to %s: %s", m->where, strerror(-rc));
        return rc;
    }
    return 0;
}

int hsm_header(const struct hsm *m, const char *name, char *out, size_t cap)
{
    struct http1_header hdr[HS_HEADERS];
    struct http1_response res;
    const struct http1_header *x;

    if (m->hs.head_len == 0 || hs_parse_again(&m->hs, &res, hdr) < 0)
        return -EPROTO;
    x = http1_find_one(hdr, res.num_headers, name);
    if (x == NULL)
        return -ENOENT;
    if (x->value_len >= cap)
        return -ENOSPC;
    memcpy(out, x->value, x->value_len);
    out[x->value_len] = '\0';
    return (int)x->value_len;
}

static int hsm_check(struct hsm *m, struct rapi_error *err)
{
    /* [ext] A parked dial-back's 101 answers the client's ID, which it
     * names (docs/PROTOCOL.md P-PARK-3). */
    if (m->park && m->hs.status == 101 &&
        hsm_header(m, WR_CLIENT_ID_HEADER, m->proof, sizeof(m->proof)) <= 0)
        return bad_101(err, "parked 101 without a client ID");
    return m->kind == HSM_WS ? hs_check_ws(&m->hs, m->proof, err)
                             : hs_check_wr(&m->hs, m->proof, err);
}

int hsm_step(struct hsm *m, struct rapi_error *err)
{
    int rc;

    switch (m->st) {
    case HSM_IDLE:
        return -EINVAL;
    case HSM_CONNECT:
        if ((rc = hsm_connected(m, err)) < 0)
            return rc == -EAGAIN ? rc : hsm_fail(m, rc);
        m->st = HSM_SEND;
        if (m->use_tls && (rc = hsm_tls_begin(m, err)) < 0)
            return hsm_fail(m, rc);
        /* fall through */
    case HSM_TLS:
        if (m->st == HSM_TLS && (rc = hsm_tls_step(m, err)) < 0)
            return rc == -EAGAIN ? rc : hsm_fail(m, rc);
        /* fall through */
    case HSM_SEND:
        rc = hsm_send(m);
        if (rc == -EAGAIN)
            return rc;
        if (rc < 0) {
            err_set(err, RAPI_E_CLOSED, -rc, "send: %s", strerror(-rc));
            return hsm_fail(m, rc);
        }
        m->st = HSM_READ;
        /* fall through */
    case HSM_READ:
        rc = hsm_read(m, err);
        if (rc == -EAGAIN)
            return rc;
        if (rc == 0)
            rc = hsm_check(m, err);
        if (rc < 0)
            return hsm_fail(m, rc);
        m->st = HSM_DONE;
        return 0;
    case HSM_DONE:
        return 0;
    case HSM_FAILED:
        return -EPROTO;
    }
    return -EINVAL;
}

int hsm_events(const struct hsm *m)
{
    if (m->tc != NULL && (m->st == HSM_TLS || m->st == HSM_SEND || m->st == HSM_READ))
        return (m->tls_want & TLS_WANT_OUT) ? POLLOUT : POLLIN;
    return m->st == HSM_CONNECT || m->st == HSM_SEND ? POLLOUT : POLLIN;
}

static void hsm_drop_hold(struct hsm *m)
{
    if (m->hold >= 0)
        close(m->hold);
    m->hold = -1;
}

int hsm_take_raw(struct hsm *m, struct tls_conn **tc)
{
    int fd = m->fd;

    if (m->st != HSM_DONE || fd < 0)
        return -EINVAL;
    *tc = m->tc;
    m->tc = NULL;
    m->fd = -1;
    m->st = HSM_IDLE;
    hsm_drop_hold(m);
    return fd;
}

int hsm_take(struct hsm *m, struct rapi_error *err)
{
    struct tls_conn *tc;
    int fd, pfd;

    if (m->st != HSM_DONE || m->fd < 0)
        return -EINVAL;
    if (m->tc == NULL)
        return hsm_take_raw(m, &tc);
    pfd = sdktls_pump(m->tc, err);
    if (pfd < 0)
        return pfd;
    fd = hsm_take_raw(m, &tc); /* tc and fd are the pump's now */
    (void)fd;
    return pfd;
}

int hsm_pump(struct hsm *m, struct rapi_error *err)
{
    int pfd, dupfd;

    if (m->tc == NULL)
        return 0;
    if ((dupfd = fcntl(m->fd, F_DUPFD_CLOEXEC, 0)) == -1) {
        err_set(err, RAPI_E_SYSTEM, errno, "dup: %s", strerror(errno));
        return -errno;
    }
    tls_conn_set_fd(m->tc, dupfd);
    pfd = sdktls_pump(m->tc, err);
    if (pfd < 0) {
        tls_conn_set_fd(m->tc, m->fd);
        close(dupfd);
        return pfd;
    }
    m->tc = NULL; /* the pump owns it and dupfd now */
    m->hold = m->fd;
    m->fd = pfd;
    return 0;
}

void hsm_close(struct hsm *m)
{
    tls_conn_free(m->tc);
    m->tc = NULL;
    hsm_drop_hold(m);
    if (m->fd >= 0)
        close(m->fd);
    m->fd = -1;
    m->st = HSM_IDLE;
}

void hsm_clear(struct hsm *m)
{
    hsm_close(m);
    explicit_bzero(m->req, sizeof(m->req));
    m->req_len = m->req_off = 0;
}
