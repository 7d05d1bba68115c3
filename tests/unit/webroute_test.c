/* WebRoute tests: accept values, every wr_classify branch, byte-exact answers. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "proto/webroute.h"
#include "tests/unit/guard.h"

#define ID64 "xPlY7xUmNFPxDaOnmmycHuRaAgjWUHlKr2XAzcZjlK6PGMplWyW25H6AWTDiXA5Q"
#define WSKEY "4LdgYw3N/tMd6DDaQv/blg=="

/* Parsed requests live in a guarded copy kept until the test ends. */
struct creq {
    struct guard g;
    struct http1_request req;
    struct http1_header h[HTTP1_MAX_HEADERS];
};

static struct creq CR;

static void cr_teardown(void)
{
    guard_free(&CR.g);
}

static const struct http1_request *req_of(const char *head)
{
    guard_free(&CR.g);
    char *buf = guard_str(&CR.g, head);
    int r = http1_parse_request(buf, strlen(head), 0, &CR.req, CR.h, HTTP1_MAX_HEADERS);
    cr_assert_eq(r, (int)strlen(head), "test request must parse: %s", head);
    return &CR.req;
}

static int classify(const char *head, enum key_role role, struct wr_request *out,
                    struct wr_error *err)
{
    return wr_classify(req_of(head), role, out, err);
}

static void expect_err(const char *head, enum key_role role, int status, const char *code,
                       const char *extra)
{
    struct wr_request out;
    struct wr_error err;

    cr_assert_eq(classify(head, role, &out, &err), -1, "should fail: %s", head);
    cr_assert_eq(err.status, status, "status %d want %d: %s", err.status, status, head);
    cr_assert_str_eq(err.errorcode, code);
    cr_assert_not_null(err.message);
    if (extra)
        cr_assert_str_eq(err.extra_header, extra);
    else
        cr_assert_null(err.extra_header);
}

#define GET "GET /test/path/?x=1 HTTP/1.1\r\nHost: relay.example:37791\r\n"
#define LISTENER_HDRS "Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n"
#define WR_HDRS "Connection: keep-alive, Upgrade\r\nUpgrade: webroute\r\n"

static const char LISTENER[] = GET LISTENER_HDRS "Sec-WebSocket-Key: " WSKEY "\r\n"
                                                 "Sec-WebSocket-Version: 13\r\n\r\n";
static const char CLIENT[] = GET WR_HDRS "WebRoute-Version: 1\r\n"
                                         "WebRoute-ID: " ID64 "\r\n"
                                         "WebRoute-Timeout: 90\r\n\r\n";

TestSuite(webroute, .fini = cr_teardown);

Test(webroute, accept_values)
{
    char out[WEBROUTE_ACCEPT_LEN + 1];
    cr_assert_eq(wr_accept(ID64, strlen(ID64), out), 0);
    cr_assert_str_eq(out, "rXt5egUsfgIKITj0B+ctYDbQWJ4=");
    cr_assert_eq(wr_accept("a", 1, out), 0);
    cr_assert_str_eq(out, "5j9AFl8YbtgDSxOilHkAxDeWEo8=");
    cr_assert_eq(wr_accept("", 0, out), -EINVAL);
    char big[WEBROUTE_ID_MAX + 1];
    memset(big, 'a', sizeof(big));
    cr_assert_eq(wr_accept(big, WEBROUTE_ID_MAX, out), 0);
    cr_assert_eq(wr_accept(big, WEBROUTE_ID_MAX + 1, out), -EINVAL);
}

Test(webroute, listener)
{
    struct wr_request out;
    struct wr_error err;

    cr_assert_eq(classify(LISTENER, KEY_SERVER, &out, &err), 0);
    cr_assert_eq(out.kind, WR_LISTENER);
    cr_assert_eq(out.path_len, strlen("/test/path/"));
    cr_assert(memcmp(out.path, "/test/path/", out.path_len) == 0);
    cr_assert_eq(out.ws_key_len, 24);
    cr_assert(memcmp(out.ws_key, WSKEY, 24) == 0);
    cr_assert_null(out.id);
    cr_assert_eq(out.timeout, -1);
    cr_assert_eq(err.status, 0);
}

Test(webroute, client_and_dialback)
{
    struct wr_request out;
    struct wr_error err;

    cr_assert_eq(classify(CLIENT, KEY_CLIENT, &out, &err), 0);
    cr_assert_eq(out.kind, WR_CLIENT);
    cr_assert_eq(out.id_len, 64);
    cr_assert(memcmp(out.id, ID64, 64) == 0);
    cr_assert_eq(out.timeout, 90);
    cr_assert_eq(classify(CLIENT, KEY_SERVER, &out, &err), 0);
    cr_assert_eq(out.kind, WR_DIALBACK);
    cr_assert(memcmp(out.path, "/test/path/", out.path_len) == 0);
}

Test(webroute, header_names_case_insensitive)
{
    struct wr_request out;
    struct wr_error err;
    const char *s = "GET /p HTTP/1.1\r\nhost: h\r\nCONNECTION: upgrade\r\nupgrade: WebRoute\r\n"
                    "webroute-version: 1\r\nwebroute-id: abc\r\n\r\n";
    cr_assert_eq(classify(s, KEY_CLIENT, &out, &err), 0);
    cr_assert_eq(out.kind, WR_CLIENT);
}

Test(webroute, timeout_values)
{
    struct wr_request out;
    struct wr_error err;
    static const struct {
        const char *value;
        long want;
    } cases[] = {
        {"60", 60},
        {"0", 0},
        {"abc", -1},
        {"-5", -1},
        {"6x", -1},
        {"99999999999999999999", WEBROUTE_MAX_TIMEOUT},
        {"86401", WEBROUTE_MAX_TIMEOUT},
        {"1.5", -1},
        {"", -1},
    };
    char buf[512];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(buf, sizeof(buf),
                 GET WR_HDRS
                 "WebRoute-Version: 1\r\nWebRoute-ID: a\r\nWebRoute-Timeout: %s\r\n\r\n",
                 cases[i].value);
        cr_assert_eq(classify(buf, KEY_CLIENT, &out, &err), 0);
        cr_assert_eq(out.timeout, cases[i].want, "case %s", cases[i].value);
    }
    cr_assert_eq(classify(GET WR_HDRS "WebRoute-Version: 1\r\nWebRoute-ID: a\r\n\r\n", KEY_CLIENT,
                          &out, &err),
                 0);
    cr_assert_eq(out.timeout, -1);
}

Test(webroute, method_not_get)
{
    expect_err("POST / HTTP/1.1\r\nHost: h\r\n\r\n", KEY_SERVER, 405, "method_not_allowed", NULL);
    expect_err("get / HTTP/1.1\r\nHost: h\r\n\r\n", KEY_SERVER, 405, "method_not_allowed", NULL);
    /* 405 comes before the key check. */
    expect_err("PUT / HTTP/1.1\r\n\r\n", KEY_NONE, 405, "method_not_allowed", NULL);
}

Test(webroute, host_missing_or_duplicate)
{
    expect_err("GET / HTTP/1.1\r\n" LISTENER_HDRS "\r\n", KEY_SERVER, 400, "invalid_request", NULL);
    expect_err("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", KEY_SERVER, 400, "invalid_request",
               NULL);
    /* Host is checked before the key. */
    expect_err("GET / HTTP/1.1\r\n\r\n", KEY_NONE, 400, "invalid_request", NULL);
}

Test(webroute, no_key)
{
    expect_err(CLIENT, KEY_NONE, 403, "invalid_missing_apikey", NULL);
    expect_err(LISTENER, KEY_NONE, 403, "invalid_missing_apikey", NULL);
    expect_err(LISTENER, (enum key_role)7, 403, "invalid_missing_apikey", NULL);
}

Test(webroute, bad_paths)
{
    char buf[2048];
    char path[WEBROUTE_PATH_MAX + 2];

    expect_err("GET ?x HTTP/1.1\r\nHost: h\r\n" WR_HDRS "\r\n", KEY_CLIENT, 400, "invalid_request",
               NULL);
    expect_err("GET * HTTP/1.1\r\nHost: h\r\n" WR_HDRS "\r\n", KEY_CLIENT, 400, "invalid_request",
               NULL);
    expect_err("GET http://h/x HTTP/1.1\r\nHost: h\r\n\r\n", KEY_CLIENT, 400, "invalid_request",
               NULL);
    path[0] = '/';
    memset(path + 1, 'p', WEBROUTE_PATH_MAX);
    path[WEBROUTE_PATH_MAX + 1] = '\0';
    snprintf(buf, sizeof(buf),
             "GET %s HTTP/1.1\r\nHost: h\r\n" WR_HDRS
             "WebRoute-Version: 1\r\nWebRoute-ID: a\r\n\r\n",
             path);
    expect_err(buf, KEY_CLIENT, 400, "invalid_request", NULL);
    path[WEBROUTE_PATH_MAX] = '\0'; /* exactly the limit: fine, query not counted */
    snprintf(buf, sizeof(buf),
             "GET %s?q=1 HTTP/1.1\r\nHost: h\r\n" WR_HDRS
             "WebRoute-Version: 1\r\nWebRoute-ID: a\r\n\r\n",
             path);
    struct wr_request out;
    struct wr_error err;
    cr_assert_eq(classify(buf, KEY_CLIENT, &out, &err), 0);
    cr_assert_eq(out.path_len, WEBROUTE_PATH_MAX);
}

Test(webroute, ws_version)
{
    expect_err(GET LISTENER_HDRS "Sec-WebSocket-Key: " WSKEY "\r\n\r\n", KEY_SERVER, 426,
               "version_not_supported", "Sec-WebSocket-Version: 13");
    expect_err(GET LISTENER_HDRS "Sec-WebSocket-Key: " WSKEY "\r\nSec-WebSocket-Version: 8\r\n\r\n",
               KEY_SERVER, 426, "version_not_supported", "Sec-WebSocket-Version: 13");
    expect_err(GET LISTENER_HDRS "Sec-WebSocket-Key: " WSKEY "\r\nSec-WebSocket-Version: 13\r\n"
                                 "Sec-WebSocket-Version: 13\r\n\r\n",
               KEY_SERVER, 426, "version_not_supported", "Sec-WebSocket-Version: 13");
}

Test(webroute, ws_key_bad)
{
    expect_err(GET LISTENER_HDRS "Sec-WebSocket-Version: 13\r\n\r\n", KEY_SERVER, 400,
               "invalid_request", NULL);
    expect_err(GET LISTENER_HDRS "Sec-WebSocket-Key: short==\r\nSec-WebSocket-Version: 13\r\n\r\n",
               KEY_SERVER, 400, "invalid_request", NULL);
    expect_err(GET LISTENER_HDRS "Sec-WebSocket-Key: " WSKEY "\r\nSec-WebSocket-Key: " WSKEY
                                 "\r\nSec-WebSocket-Version: 13\r\n\r\n",
               KEY_SERVER, 400, "invalid_request", NULL);
}

Test(webroute, upgrade_without_connection)
{
    expect_err(GET "Upgrade: websocket\r\nSec-WebSocket-Key: " WSKEY
                   "\r\nSec-WebSocket-Version: 13\r\n\r\n",
               KEY_SERVER, 400, "invalid_request", NULL);
    expect_err(GET "Upgrade: webroute\r\nConnection: keep-alive\r\nWebRoute-Version: 1\r\n"
                   "WebRoute-ID: a\r\n\r\n",
               KEY_CLIENT, 400, "invalid_request", NULL);
}

Test(webroute, client_key_websocket)
{
    expect_err(LISTENER, KEY_CLIENT, 400, "invalid_request", NULL);
}

Test(webroute, server_key_no_upgrade)
{
    expect_err(GET "\r\n", KEY_SERVER, 400, "invalid_request", NULL);
    expect_err(GET "Connection: Upgrade\r\nUpgrade: h2c\r\n\r\n", KEY_SERVER, 400,
               "invalid_request", NULL);
    expect_err(GET "\r\n", KEY_CLIENT, 400, "invalid_request", NULL);
}

Test(webroute, wr_version)
{
    expect_err(GET WR_HDRS "WebRoute-ID: a\r\n\r\n", KEY_CLIENT, 426, "version_not_supported",
               "WebRoute-Version: 1");
    expect_err(GET WR_HDRS "WebRoute-Version: 2\r\nWebRoute-ID: a\r\n\r\n", KEY_SERVER, 426,
               "version_not_supported", "WebRoute-Version: 1");
    expect_err(GET WR_HDRS "WebRoute-Version: 1.0\r\nWebRoute-ID: a\r\n\r\n", KEY_CLIENT, 426,
               "version_not_supported", "WebRoute-Version: 1");
}

Test(webroute, wr_id_bad)
{
    char buf[1024];
    char id[WEBROUTE_ID_MAX + 2];
    struct wr_request out;
    struct wr_error err;

    expect_err(GET WR_HDRS "WebRoute-Version: 1\r\n\r\n", KEY_CLIENT, 400, "invalid_request", NULL);
    expect_err(GET WR_HDRS "WebRoute-Version: 1\r\nWebRoute-ID:\r\n\r\n", KEY_CLIENT, 400,
               "invalid_request", NULL);
    expect_err(GET WR_HDRS "WebRoute-Version: 1\r\nWebRoute-ID: a b\r\n\r\n", KEY_CLIENT, 400,
               "invalid_request", NULL);
    expect_err(GET WR_HDRS "WebRoute-Version: 1\r\nWebRoute-ID: a\tb\r\n\r\n", KEY_CLIENT, 400,
               "invalid_request", NULL);
    expect_err(GET WR_HDRS "WebRoute-Version: 1\r\nWebRoute-ID: caf\xc3\xa9\r\n\r\n", KEY_CLIENT,
               400, "invalid_request", NULL);
    expect_err(GET WR_HDRS "WebRoute-Version: 1\r\nWebRoute-ID: a\r\nWebRoute-ID: a\r\n\r\n",
               KEY_CLIENT, 400, "invalid_request", NULL);
    memset(id, 'i', sizeof(id) - 1);
    id[WEBROUTE_ID_MAX + 1] = '\0';
    snprintf(buf, sizeof(buf), GET WR_HDRS "WebRoute-Version: 1\r\nWebRoute-ID: %s\r\n\r\n", id);
    expect_err(buf, KEY_CLIENT, 400, "invalid_request", NULL);
    id[WEBROUTE_ID_MAX] = '\0';
    snprintf(buf, sizeof(buf), GET WR_HDRS "WebRoute-Version: 1\r\nWebRoute-ID: %s\r\n\r\n", id);
    cr_assert_eq(classify(buf, KEY_CLIENT, &out, &err), 0);
    cr_assert_eq(out.id_len, WEBROUTE_ID_MAX);
}

Test(webroute, apikey)
{
    const struct http1_header *h;

    h = wr_apikey(req_of("GET / HTTP/1.1\r\nx-remoted-apikey: k1\r\n\r\n"));
    cr_assert_not_null(h);
    cr_assert_eq(h->value_len, 2);
    cr_assert(memcmp(h->value, "k1", 2) == 0);
    cr_assert_null(wr_apikey(req_of("GET / HTTP/1.1\r\nHost: h\r\n\r\n")));
    cr_assert_null(
        wr_apikey(req_of("GET / HTTP/1.1\r\nX-Remoted-APIKey: a\r\nX-Remoted-APIKey: a\r\n\r\n")));
}

Test(webroute, effective_timeout)
{
    cr_assert_eq(wr_effective_timeout(-1, 0, WEBROUTE_MIN_TIMEOUT), WEBROUTE_MIN_TIMEOUT);
    cr_assert_eq(wr_effective_timeout(10, 0, WEBROUTE_MIN_TIMEOUT), WEBROUTE_MIN_TIMEOUT);
    cr_assert_eq(wr_effective_timeout(90, 0, WEBROUTE_MIN_TIMEOUT), 90);
    cr_assert_eq(wr_effective_timeout(90, 120, WEBROUTE_MIN_TIMEOUT), 120);
    cr_assert_eq(wr_effective_timeout(-1, 120, WEBROUTE_MIN_TIMEOUT), 120);
    cr_assert_eq(wr_effective_timeout(200, 120, WEBROUTE_MIN_TIMEOUT), 200);
    cr_assert_eq(wr_effective_timeout(WEBROUTE_MAX_TIMEOUT * 10L, 0, WEBROUTE_MIN_TIMEOUT),
                 WEBROUTE_MAX_TIMEOUT);
    cr_assert_eq(wr_effective_timeout(0, 30, WEBROUTE_MIN_TIMEOUT), WEBROUTE_MIN_TIMEOUT);
    /* A relay's own floor (rapi-server's min_timeout). */
    cr_assert_eq(wr_effective_timeout(-1, 1, 1), 1);
    cr_assert_eq(wr_effective_timeout(5, 1, 1), 5);
    cr_assert_eq(wr_effective_timeout(-1, 1, 30), 30);
}

Test(webroute, build_101)
{
    char out[256];
    const char *ws = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
                     "\r\n\r\n";
    const char *wr = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: webroute\r\n"
                     "Connection: Upgrade\r\nSec-WebRoute-Accept: rXt5egUsfgIKITj0B+ctYDbQWJ4="
                     "\r\n\r\n";

    cr_assert_eq(wr_build_ws_101(out, sizeof(out), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
                 (int)strlen(ws));
    cr_assert_str_eq(out, ws);
    cr_assert_eq(wr_build_wr_101(out, sizeof(out), "rXt5egUsfgIKITj0B+ctYDbQWJ4="),
                 (int)strlen(wr));
    cr_assert_str_eq(out, wr);
    cr_assert_eq(wr_build_wr_101(out, strlen(wr), "rXt5egUsfgIKITj0B+ctYDbQWJ4="), -1);
    cr_assert_eq(wr_build_wr_101(out, strlen(wr) + 1, "rXt5egUsfgIKITj0B+ctYDbQWJ4="),
                 (int)strlen(wr));
}

/* [ext] P-PARK-1, P-PARK-3: the advertisement and the parked 101. */
Test(webroute, build_park_heads)
{
    char out[512];
    const char *ws = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
                     "\r\nX-Rapi-Ext: park\r\n\r\n";
    const char *pk = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: webroute\r\n"
                     "Connection: Upgrade\r\nSec-WebRoute-Accept: rXt5egUsfgIKITj0B+ctYDbQWJ4="
                     "\r\nX-Rapi-Client-Addr: 127.0.0.1:5000\r\nX-Rapi-Client-Id: abc\r\n"
                     "X-Rapi-Client-Timeout: 90\r\n\r\n";

    cr_assert_eq(wr_build_ws_101_ext(out, sizeof(out), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "park"),
                 (int)strlen(ws));
    cr_assert_str_eq(out, ws);
    cr_assert_eq(wr_build_ws_101_ext(out, sizeof(out), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", NULL),
                 wr_build_ws_101(out, sizeof(out), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    cr_assert_eq(wr_build_park_101(out, sizeof(out), "rXt5egUsfgIKITj0B+ctYDbQWJ4=",
                                   "127.0.0.1:5000", "abcdef", 3, 90),
                 (int)strlen(pk));
    cr_assert_str_eq(out, pk);
    cr_assert_eq(wr_build_park_101(out, strlen(pk),
                                   "rXt5egUsfgIKITj0B+ctYDbQWJ4=", "127.0.0.1:5000", "abc", 3, 90),
                 -1);
}

Test(webroute, build_error_exact)
{
    char out[1024];
    const char *want = "HTTP/1.1 502 Bad Gateway\r\n"
                       "Content-Type: application/json\r\n"
                       "Cache-Control: no-cache\r\n"
                       "Connection: close\r\n"
                       "Content-Length: 81\r\n\r\n"
                       "{\"success\":false,\"error\":\"No listener on path\","
                       "\"errorcode\":\"missing_destination\"}";
    int n = wr_build_error3(out, sizeof(out), 502, "missing_destination", "No listener on path");

    cr_assert_eq(n, (int)strlen(want));
    cr_assert_str_eq(out, want);
    cr_assert_eq(strlen(strstr(out, "\r\n\r\n") + 4), 81);
    for (size_t cap = 0; cap <= strlen(want); cap++)
        cr_assert_eq(wr_build_error3(out, cap, 502, "missing_destination", "No listener on path"),
                     -1, "cap %zu", cap);
}

Test(webroute, build_error_extra_and_escaping)
{
    char out[1024];
    struct wr_error err = {426, "version_not_supported", "say \"1\"\\\n", "WebRoute-Version: 1"};
    const char *want = "HTTP/1.1 426 Upgrade Required\r\n"
                       "Content-Type: application/json\r\n"
                       "Cache-Control: no-cache\r\n"
                       "Connection: close\r\n"
                       "WebRoute-Version: 1\r\n"
                       "Content-Length: 81\r\n\r\n"
                       "{\"success\":false,\"error\":\"say \\\"1\\\"\\\\\\u000a\","
                       "\"errorcode\":\"version_not_supported\"}";

    cr_assert_eq(wr_build_error(out, sizeof(out), &err), (int)strlen(want));
    cr_assert_str_eq(out, want);
    cr_assert_eq(strlen(strstr(out, "\r\n\r\n") + 4), 81);
}

Test(webroute, build_error_from_classify)
{
    struct wr_request out;
    struct wr_error err;
    char buf[1024];

    cr_assert_eq(classify(CLIENT, KEY_NONE, &out, &err), -1);
    int n = wr_build_error(buf, sizeof(buf), &err);
    cr_assert_gt(n, 0);
    cr_assert(strncmp(buf, "HTTP/1.1 403 Forbidden\r\n", 24) == 0);
    cr_assert_not_null(strstr(buf, "\"errorcode\":\"invalid_missing_apikey\"}"));
}

Test(webroute, build_error_message_too_long)
{
    char msg[WR_ERROR_TEXT_MAX + 1];
    char out[4096];
    memset(msg, 'm', sizeof(msg) - 1);
    msg[sizeof(msg) - 1] = '\0';
    cr_assert_eq(wr_build_error3(out, sizeof(out), 400, "invalid_request", msg), -1);
}

/* ------------------------------------------------------------ request heads */

#define SKEY "SSSSSSSSSSSSSSSSSSSSSSSS"

static const char WS_REQ[] = "GET /test/path/ HTTP/1.1\r\n"
                             "Host: relay.example:37791\r\n"
                             "Origin: http://relay.example:37791\r\n"
                             "Connection: keep-alive, Upgrade\r\n"
                             "X-Remoted-APIKey: " SKEY "\r\n"
                             "Sec-WebSocket-Key: " WSKEY "\r\n"
                             "Sec-WebSocket-Version: 13\r\n"
                             "Upgrade: websocket\r\n"
                             "\r\n";

static const char WR_REQ[] = "GET /test/path/ HTTP/1.1\r\n"
                             "Host: relay.example:37791\r\n"
                             "Connection: keep-alive, Upgrade\r\n"
                             "X-Remoted-APIKey: " SKEY "\r\n"
                             "WebRoute-Version: 1\r\n"
                             "WebRoute-ID: " ID64 "\r\n"
                             "WebRoute-Timeout: 90\r\n"
                             "Upgrade: webroute\r\n"
                             "\r\n";

static struct wr_head head(void)
{
    struct wr_head h = {.path = "/test/path/",
                        .host = "relay.example:37791",
                        .key = SKEY "trailing bytes not part of the key",
                        .key_len = strlen(SKEY),
                        .origin = "http://relay.example:37791",
                        .ws_key = WSKEY,
                        .id = ID64,
                        .timeout = 90};
    return h;
}

/* Every cap below the length fails with -ENOSPC and leaves out wiped. */
static void check_caps(int (*build)(char *, size_t, const struct wr_head *),
                       const struct wr_head *h, size_t len)
{
    char out[1024];
    for (size_t cap = 0; cap <= len; cap++) {
        memset(out, 'x', sizeof(out));
        cr_assert_eq(build(out, cap, h), -ENOSPC, "cap %zu", cap);
        for (size_t i = 0; i < cap; i++)
            cr_assert_eq(out[i], 0, "cap %zu: byte %zu not wiped", cap, i);
        cr_assert_eq(out[cap], 'x');
    }
}

Test(webroute, build_ws_request_exact_and_classified)
{
    struct wr_head h = head();
    struct wr_request out;
    struct wr_error err;
    char buf[1024];

    int n = wr_build_ws_request(buf, sizeof(buf), &h);
    cr_assert_eq(n, (int)strlen(WS_REQ));
    cr_assert_str_eq(buf, WS_REQ);
    cr_assert_eq(classify(buf, KEY_SERVER, &out, &err), 0);
    cr_assert_eq(out.kind, WR_LISTENER);
    h.origin = NULL;
    n = wr_build_ws_request(buf, sizeof(buf), &h);
    cr_assert_eq(n, (int)strlen(WS_REQ) - (int)strlen("Origin: http://relay.example:37791\r\n"));
    cr_assert_null(strstr(buf, "Origin"));
    cr_assert_eq(classify(buf, KEY_SERVER, &out, &err), 0);
    check_caps(wr_build_ws_request, &h, (size_t)n);
}

Test(webroute, build_wr_request_exact_and_classified)
{
    struct wr_head h = head();
    struct wr_request out;
    struct wr_error err;
    char buf[1024];

    int n = wr_build_wr_request(buf, sizeof(buf), &h);
    cr_assert_eq(n, (int)strlen(WR_REQ));
    cr_assert_str_eq(buf, WR_REQ);
    cr_assert_eq(classify(buf, KEY_SERVER, &out, &err), 0);
    cr_assert_eq(out.kind, WR_DIALBACK);
    cr_assert_eq(out.timeout, 90);
    cr_assert_eq(classify(buf, KEY_CLIENT, &out, &err), 0);
    cr_assert_eq(out.kind, WR_CLIENT);
    h.timeout = 0;
    n = wr_build_wr_request(buf, sizeof(buf), &h);
    cr_assert_null(strstr(buf, "WebRoute-Timeout"));
    cr_assert_eq(classify(buf, KEY_CLIENT, &out, &err), 0);
    cr_assert_eq(out.timeout, -1);
    check_caps(wr_build_wr_request, &h, (size_t)n);
}

Test(webroute, build_request_refuses_bad_fields)
{
    static const char *bad[] = {"", "a b", "a\r\nX-Evil: 1", "a\n", "\x7f", "caf\xc3\xa9"};
    char buf[1024];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct wr_head h = head();
        h.host = bad[i];
        cr_assert_eq(wr_build_ws_request(buf, sizeof(buf), &h), -EINVAL, "host %zu", i);
        cr_assert_eq(wr_build_wr_request(buf, sizeof(buf), &h), -EINVAL, "host %zu", i);
        h = head();
        h.origin = bad[i];
        cr_assert_eq(wr_build_ws_request(buf, sizeof(buf), &h), -EINVAL, "origin %zu", i);
        h = head();
        h.id = bad[i];
        cr_assert_eq(wr_build_wr_request(buf, sizeof(buf), &h), -EINVAL, "id %zu", i);
        h = head();
        h.key = bad[i];
        h.key_len = strlen(bad[i]);
        cr_assert_eq(wr_build_ws_request(buf, sizeof(buf), &h), -EINVAL, "key %zu", i);
        cr_assert_eq(buf[0], 0);
    }
    struct wr_head h = head();
    h.path = "relative";
    cr_assert_eq(wr_build_wr_request(buf, sizeof(buf), &h), -EINVAL);
    h = head();
    h.ws_key = "not a key";
    cr_assert_eq(wr_build_ws_request(buf, sizeof(buf), &h), -EINVAL);
    h.ws_key = NULL;
    cr_assert_eq(wr_build_ws_request(buf, sizeof(buf), &h), -EINVAL);
    h = head();
    h.id = NULL;
    cr_assert_eq(wr_build_wr_request(buf, sizeof(buf), &h), -EINVAL);
    char longid[WEBROUTE_ID_MAX + 2];
    memset(longid, 'i', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    h.id = longid;
    cr_assert_eq(wr_build_wr_request(buf, sizeof(buf), &h), -EINVAL);
    longid[WEBROUTE_ID_MAX] = '\0';
    cr_assert_gt(wr_build_wr_request(buf, sizeof(buf), &h), 0);
}
