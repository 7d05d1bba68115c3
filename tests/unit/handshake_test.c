/* The handshake machine (sdk/handshake.c) against a scripted relay on the
 * other end of a socketpair: requests, 101 checks, refusals, answers in
 * pieces, bytes after the head left in the socket, connect failures; the
 * failover decision (err_failover) and the relay address helpers. */
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sdk/handshake.c"
#include "sdk/sdktls.c"
#include "sdk/sdkerr.c"
#include "sdk/wire.c"

struct rig {
    struct hsm m;
    struct rapi_url u;
    struct rapi_error e;
    int relay; /* our end playing the relay */
};

/* A machine whose fd is one end of a socketpair (as for the second hop of a
 * chain: no connect), the other end in r->relay. */
static void rig_open(struct rig *r)
{
    static const char url[] = "rwr://127.0.0.1:1/p";
    int sv[2];

    cr_assert_eq(url_parse(url, strlen(url), &r->u), 0);
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    hsm_init(&r->m);
    r->m.fd = sv[0];
    r->relay = sv[1];
    memset(&r->e, 0, sizeof(r->e));
}

static void rig_close(struct rig *r)
{
    hsm_clear(&r->m);
    close(r->relay);
}

/* The request the machine sent, NUL-terminated. */
static void relay_read(struct rig *r, char *buf, size_t cap)
{
    ssize_t n = recv(r->relay, buf, cap - 1, 0);

    cr_assert_gt(n, 0);
    buf[n] = '\0';
}

static void relay_send(struct rig *r, const char *s)
{
    cr_assert_eq(send(r->relay, s, strlen(s), 0), (ssize_t)strlen(s));
}

static void header_value(const char *req, const char *name, char *out, size_t cap)
{
    const char *p = strstr(req, name), *end;

    cr_assert_not_null(p, "no %s in %s", name, req);
    p += strlen(name);
    end = strstr(p, "\r\n");
    cr_assert_not_null(end);
    cr_assert_lt((size_t)(end - p), cap);
    memcpy(out, p, (size_t)(end - p));
    out[end - p] = '\0';
}

static void wr_answer(struct rig *r, const char *id, const char *tail)
{
    char acc[WEBROUTE_ACCEPT_LEN + 1], out[512];

    cr_assert_eq(wr_accept(id, strlen(id), acc), 0);
    snprintf(out, sizeof(out),
             "HTTP/1.1 101 Switching Protocols\r\nUpgrade: webroute\r\n"
             "Connection: Upgrade\r\nSec-WebRoute-Accept: %s\r\n\r\n%s",
             acc, tail);
    relay_send(r, out);
}

Test(handshake, webroute_on_an_open_fd_leaves_the_tunnel_bytes)
{
    struct rig r;
    char req[REQ_MAX], id[WEBROUTE_ID_MAX + 1], tail[8] = "";
    int fd;

    rig_open(&r);
    cr_assert_eq(hsm_wr_request(&r.m, &r.u, "the-key", "ID-1", 30, &r.e), 0);
    cr_expect_eq(r.m.st, HSM_SEND, "an open fd goes on sending at once");
    cr_expect_eq(hsm_events(&r.m), POLLOUT);
    cr_expect_eq(hsm_step(&r.m, &r.e), -EAGAIN, "no answer yet");
    cr_expect_eq(r.m.st, HSM_READ);
    cr_expect_eq(hsm_events(&r.m), POLLIN);
    relay_read(&r, req, sizeof(req));
    header_value(req, "WebRoute-ID: ", id, sizeof(id));
    cr_expect_str_eq(id, "ID-1");
    cr_expect_not_null(strstr(req, "WebRoute-Timeout: 30\r\n"));
    cr_expect_not_null(strstr(req, "X-Remoted-APIKey: the-key\r\n"));
    wr_answer(&r, id, "tail");
    cr_expect_eq(hsm_step(&r.m, &r.e), 0, "%s", r.e.message);
    cr_expect_eq(r.m.st, HSM_DONE);
    cr_expect_eq(hsm_step(&r.m, &r.e), 0, "done stays done");
    fd = hsm_take(&r.m, NULL);
    cr_assert_geq(fd, 0);
    cr_expect_eq(r.m.fd, -1);
    cr_expect_eq(recv(fd, tail, sizeof(tail), 0), 4, "bytes after the 101 are the tunnel's");
    cr_expect_str_eq(tail, "tail");
    close(fd);
    rig_close(&r);
}

Test(handshake, websocket_accept_checked)
{
    struct rig r;
    char req[REQ_MAX], key[64], acc[WS_ACCEPT_LEN + 1], out[512];

    rig_open(&r);
    cr_assert_eq(hsm_ws_request(&r.m, &r.u, "k", &r.e), 0);
    cr_expect_eq(hsm_step(&r.m, &r.e), -EAGAIN);
    relay_read(&r, req, sizeof(req));
    header_value(req, "Sec-WebSocket-Key: ", key, sizeof(key));
    cr_assert_eq(ws_accept(key, strlen(key), acc), 0);
    snprintf(out, sizeof(out),
             "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
             acc);
    relay_send(&r, out);
    cr_expect_eq(hsm_step(&r.m, &r.e), 0, "%s", r.e.message);
    rig_close(&r);
}

Test(handshake, answer_in_single_bytes)
{
    struct rig r;
    char req[REQ_MAX], acc[WEBROUTE_ACCEPT_LEN + 1], out[512];
    size_t i, n;

    rig_open(&r);
    cr_assert_eq(hsm_wr_request(&r.m, &r.u, "k", "ID-2", 0, &r.e), 0);
    cr_expect_eq(hsm_step(&r.m, &r.e), -EAGAIN);
    relay_read(&r, req, sizeof(req));
    cr_expect_null(strstr(req, "WebRoute-Timeout"), "no timeout header for 0");
    cr_assert_eq(wr_accept("ID-2", 4, acc), 0);
    n = (size_t)snprintf(out, sizeof(out),
                         "HTTP/1.1 101 Switching Protocols\r\nUpgrade: webroute\r\n"
                         "Sec-WebRoute-Accept: %s\r\n\r\n",
                         acc);
    for (i = 0; i + 1 < n; i++) {
        cr_assert_eq(send(r.relay, out + i, 1, 0), 1);
        cr_assert_eq(hsm_step(&r.m, &r.e), -EAGAIN, "complete after %zu of %zu bytes", i + 1, n);
    }
    cr_assert_eq(send(r.relay, out + i, 1, 0), 1);
    cr_expect_eq(hsm_step(&r.m, &r.e), 0, "%s", r.e.message);
    rig_close(&r);
}

Test(handshake, wrong_accept_fails)
{
    struct rig r;
    char req[REQ_MAX];

    rig_open(&r);
    cr_assert_eq(hsm_wr_request(&r.m, &r.u, "k", "ID-3", 0, &r.e), 0);
    cr_expect_eq(hsm_step(&r.m, &r.e), -EAGAIN);
    relay_read(&r, req, sizeof(req));
    wr_answer(&r, "some-other-id", "");
    cr_expect_eq(hsm_step(&r.m, &r.e), -EPROTO);
    cr_expect_eq(r.m.st, HSM_FAILED);
    cr_expect_eq(r.e.code, RAPI_E_PROTOCOL);
    cr_expect_eq(hsm_take(&r.m, NULL), -EINVAL, "a failed handshake has no fd to take");
    rig_close(&r);
}

Test(handshake, refusal_is_named_with_its_status)
{
    struct rig r;
    char req[REQ_MAX], out[512];
    int n;

    rig_open(&r);
    cr_assert_eq(hsm_wr_request(&r.m, &r.u, "k", "ID-4", 0, &r.e), 0);
    cr_expect_eq(hsm_step(&r.m, &r.e), -EAGAIN);
    relay_read(&r, req, sizeof(req));
    n = wr_build_error3(out, sizeof(out), 403, "invalid_apikey", "Wrong key");
    cr_assert_gt(n, 0);
    cr_assert_eq(send(r.relay, out, (size_t)n, 0), n);
    shutdown(r.relay, SHUT_WR);
    cr_expect_lt(hsm_step(&r.m, &r.e), 0);
    cr_expect_eq(r.m.hs.status, 403, "the listener decides on retries by the status");
    cr_expect_eq(r.e.code, RAPI_E_APIKEY, "%s", r.e.message);
    cr_expect_not_null(strstr(r.e.message, "invalid_apikey"), "%s", r.e.message);
    rig_close(&r);
}

Test(handshake, relay_closes_before_answering)
{
    struct rig r;
    char req[REQ_MAX];

    rig_open(&r);
    cr_assert_eq(hsm_wr_request(&r.m, &r.u, "k", "ID-5", 0, &r.e), 0);
    cr_expect_eq(hsm_step(&r.m, &r.e), -EAGAIN);
    relay_read(&r, req, sizeof(req));
    shutdown(r.relay, SHUT_WR);
    cr_expect_lt(hsm_step(&r.m, &r.e), 0);
    cr_expect_eq(r.e.code, RAPI_E_CLOSED, "%s", r.e.message);
    rig_close(&r);
}

Test(handshake, connect_refused_names_the_relay_and_retry_keeps_the_request)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    socklen_t len = sizeof(*in);
    struct pollfd p;
    struct rig r;
    char url[64], where[32];
    int lfd, rc, tries;

    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    lfd = anet_tcp_listen(&ss, &len, 1, 0);
    cr_assert_geq(lfd, 0);
    close(lfd); /* a free port: connects are refused */
    snprintf(where, sizeof(where), "127.0.0.1:%u", (unsigned)ntohs(in->sin_port));
    snprintf(url, sizeof(url), "rwr://%s/p", where);
    rig_open(&r);
    cr_assert_eq(url_parse(url, strlen(url), &r.u), 0);
    hsm_close(&r.m); /* drop the socketpair end: this machine connects */
    cr_assert_eq(hsm_wr_request(&r.m, &r.u, "k", "ID-6", 0, &r.e), 0);
    cr_expect_eq(r.m.st, HSM_IDLE, "no fd: waits for hsm_connect");
    cr_expect_eq(hsm_step(&r.m, &r.e), -EINVAL);
    for (tries = 0; tries < 2; tries++) {
        cr_assert_eq(hsm_connect(&r.m, &r.u, &r.e), 0);
        cr_expect_eq(hsm_events(&r.m), POLLOUT);
        p = (struct pollfd){.fd = r.m.fd, .events = POLLOUT};
        cr_assert_eq(poll(&p, 1, 2000), 1);
        rc = hsm_step(&r.m, &r.e);
        cr_expect_eq(rc, -ECONNREFUSED, "try %d: %d", tries, rc);
        cr_expect_eq(r.e.code, RAPI_E_CONNECT);
        cr_expect_not_null(strstr(r.e.message, where), "%s", r.e.message);
        cr_expect_gt(r.m.req_len, 0, "the request stays for a retry");
        hsm_close(&r.m);
    }
    rig_close(&r);
}

/* Which failures a connect moves on to another relay for (err_failover). */
Test(failover, decision_table)
{
    static const struct {
        int code, status;
        bool retry;
    } t[] = {
        {RAPI_E_CONNECT, 0, true},             /* refused, unreachable, no address */
        {RAPI_E_TIMEOUT, 0, true},             /* connect or handshake timeout */
        {RAPI_E_CLOSED, 0, true},              /* relay died before answering */
        {RAPI_E_NO_LISTENER, 502, true},       /* missing_destination */
        {RAPI_E_HTTP, 502, true},              /* a front end's bad gateway */
        {RAPI_E_HTTP, 503, true},              /* unavailable, draining */
        {RAPI_E_APIKEY, 403, false},           /* the same key everywhere */
        {RAPI_E_UNKNOWN_ROUTE, 404, false},    /* other 4xx: every relay says so */
        {RAPI_E_DUPLICATE_ID, 409, false},     /* */
        {RAPI_E_BAD_REQUEST, 400, false},      /* */
        {RAPI_E_VERSION, 426, false},          /* */
        {RAPI_E_TOO_LARGE, 431, false},        /* */
        {RAPI_E_LISTENER_TIMEOUT, 504, false}, /* the listener was told and failed */
        {RAPI_E_HTTP, 500, false},             /* */
        {RAPI_E_PROTOCOL, 0, false},           /* not a relay we understand */
        {RAPI_E_URL, 0, false},                /* ours */
        {RAPI_E_KEY, 0, false},                /* */
        {RAPI_E_SYSTEM, 0, false},             /* out of fds, memory */
        {RAPI_E_UNSUPPORTED, 0, false},        /* */
    };
    struct rapi_error e;
    size_t i;

    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        memset(&e, 0, sizeof(e));
        e.code = t[i].code;
        e.status = t[i].status;
        cr_expect_eq(err_failover(&e), t[i].retry, "%s %d", rapi_code_name(t[i].code), t[i].status);
    }
}

/* A relay's answer, classified as the connector sees it. */
Test(failover, from_relay_answers)
{
    static const char b502[] =
        "{\"success\":false,\"error\":\"x\",\"errorcode\":\"missing_destination\"}";
    static const char b403[] =
        "{\"success\":false,\"error\":\"x\",\"errorcode\":\"invalid_missing_apikey\"}";
    struct rapi_error e;

    err_from_answer(&e, 502, b502, strlen(b502));
    cr_expect(err_failover(&e));
    err_from_answer(&e, 503, "", 0);
    cr_expect(err_failover(&e));
    err_from_answer(&e, 400, b502, strlen(b502)); /* the errorcode decides */
    cr_expect(err_failover(&e));
    err_from_answer(&e, 403, b403, strlen(b403));
    cr_expect_not(err_failover(&e));
    err_from_answer(&e, 404, "", 0);
    cr_expect_not(err_failover(&e));
}

/* Resolution and address helpers behind one connection per relay address. */
Test(failover, resolve_and_where)
{
    struct relay_addr a[RELAY_ADDRS_MAX], b;
    struct rapi_url u;
    struct rapi_error e;
    char where[WHERE_MAX];
    static const char num[] = "rws://127.0.0.21:4000/p", name[] = "rws://localhost:4000/p";

    cr_assert_eq(url_parse(num, strlen(num), &u), 0);
    cr_assert_eq(wire_resolve(&u, a, RELAY_ADDRS_MAX, &e), 1);
    wire_where(&u, &a[0], where, sizeof(where));
    cr_expect_str_eq(where, "127.0.0.21:4000", "a numeric host is not repeated");
    b = a[0];
    cr_expect(wire_addr_eq(&a[0], &b));
    ((struct sockaddr_in *)&b.sa)->sin_port = htons(4001);
    cr_expect_not(wire_addr_eq(&a[0], &b));
    wire_where(&u, NULL, where, sizeof(where));
    cr_expect_str_eq(where, "127.0.0.21:4000");
    cr_assert_eq(url_parse(name, strlen(name), &u), 0);
    cr_assert_geq(wire_resolve(&u, a, RELAY_ADDRS_MAX, &e), 1);
    wire_where(&u, &a[0], where, sizeof(where));
    cr_expect(strncmp(where, "localhost:4000 (", 16) == 0, "%s", where);
}
