/* Relay sockets and handshake heads shared by the listener and the
 * connector. Functions act on the caller's fd and buffers only. */
#define RAPI_BUILDING 1
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "auth/keys.h"
#include "net/anet.h"
#include "proto/http1.h"
#include "sdk/sdk_int.h"

#define HS_HEADERS HTTP1_MAX_HEADERS

int wire_connect_start(const struct rapi_url *u, struct rapi_error *err)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char port[RELAY_PORT_STR];
    int rc;

    snprintf(port, sizeof(port), "%u", (unsigned)u->port);
    rc = getaddrinfo(u->host, port, &hints, &res);
    if (rc != 0) {
        err_set(err, RAPI_E_CONNECT, EHOSTUNREACH, "cannot resolve %s: %s", u->host,
                gai_strerror(rc));
        return -EHOSTUNREACH;
    }
    rc = anet_tcp_connect_start(res->ai_addr, res->ai_addrlen, ANET_NONBLOCK | ANET_NODELAY);
    if (rc < 0)
        err_set(err, rc == -EMFILE || rc == -ENFILE ? RAPI_E_SYSTEM : RAPI_E_CONNECT, -rc,
                "connect to %s:%u: %s", u->host, (unsigned)u->port, strerror(-rc));
    freeaddrinfo(res);
    return rc;
}

int wire_ws_request(char *out, size_t cap, const struct rapi_url *u, const char *key,
                    const char *ws_key)
{
    char hp[URL_HOST_MAX + 16];
    int n;

    if (url_hostport(u, hp, sizeof(hp)) < 0)
        return -ENOSPC;
    /* Origin: the original PHP relay refuses WebSocket upgrades without it. */
    n = snprintf(out, cap,
                 "GET %s HTTP/1.1\r\n"
                 "Host: %s\r\n"
                 "Origin: %s://%s\r\n"
                 "Connection: keep-alive, Upgrade\r\n"
                 "X-Remoted-APIKey: %s\r\n"
                 "Sec-WebSocket-Key: %s\r\n"
                 "Sec-WebSocket-Version: 13\r\n"
                 "Upgrade: websocket\r\n"
                 "\r\n",
                 u->path, hp, u->tls ? "https" : "http", hp, key, ws_key);
    return n < 0 || (size_t)n >= cap ? -ENOSPC : n;
}

int wire_wr_request(char *out, size_t cap, const struct rapi_url *u, const char *key,
                    const char *id, long timeout)
{
    char hp[URL_HOST_MAX + 16], tmo[48] = "";
    int n;

    if (url_hostport(u, hp, sizeof(hp)) < 0)
        return -ENOSPC;
    if (timeout > 0)
        snprintf(tmo, sizeof(tmo), "WebRoute-Timeout: %ld\r\n", timeout);
    n = snprintf(out, cap,
                 "GET %s HTTP/1.1\r\n"
                 "Host: %s\r\n"
                 "Connection: keep-alive, Upgrade\r\n"
                 "X-Remoted-APIKey: %s\r\n"
                 "WebRoute-Version: 1\r\n"
                 "WebRoute-ID: %s\r\n"
                 "%s"
                 "Upgrade: webroute\r\n"
                 "\r\n",
                 u->path, hp, key, id, tmo);
    return n < 0 || (size_t)n >= cap ? -ENOSPC : n;
}

int wire_new_id(char out[WR_ID_LEN + 1])
{
    int rc = keys_random(out, WR_ID_LEN);

    out[rc < 0 ? 0 : WR_ID_LEN] = '\0';
    return rc;
}

void hs_init(struct hs *h)
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

int hs_read(struct hs *h, int fd, struct rapi_error *err)
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
    const struct http1_header *h = http1_find(hdr, n, name);

    return h != NULL && http1_count(hdr, n, name) == 1 && h->value_len == strlen(want) &&
           memcmp(h->value, want, h->value_len) == 0;
}

int hs_check_ws(const struct hs *h, const char *ws_key, struct rapi_error *err)
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

int hs_check_wr(const struct hs *h, const char *id, struct rapi_error *err)
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
