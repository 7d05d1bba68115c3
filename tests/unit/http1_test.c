/* http1 parser tests: every input sits right before a PROT_NONE page. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "proto/http1.h"
#include "tests/unit/guard.h"

#define MAXH 8

static const char REQ[] = "GET /test/path/?x=1 HTTP/1.1\r\n"
                          "Host: relay.example:37791\r\n"
                          "Connection: keep-alive, Upgrade\r\n"
                          "X-Remoted-APIKey:  secret \t\r\n"
                          "Empty:\r\n"
                          "\r\n";

static int parse_req(const char *s, size_t len, size_t last_len, struct http1_request *req,
                     struct http1_header *h, size_t maxh)
{
    struct guard g = {0};
    char *buf = guard_put(&g, s, len);
    int r = http1_parse_request(buf, len, last_len, req, h, maxh);
    /* Outputs point into the guarded copy: rebase them onto s for checks. */
    if (r > 0) {
        req->method = s + (req->method - buf);
        req->target = s + (req->target - buf);
        for (size_t i = 0; i < req->num_headers; i++) {
            h[i].name = s + (h[i].name - buf);
            h[i].value = s + (h[i].value - buf);
        }
    }
    guard_free(&g);
    return r;
}

static int req_rc(const char *s, size_t maxh)
{
    struct http1_request req;
    struct http1_header h[MAXH];
    return parse_req(s, strlen(s), 0, &req, h, maxh);
}

static int parse_res(const char *s, size_t len, size_t last_len, struct http1_response *res,
                     struct http1_header *h)
{
    struct guard g = {0};
    char *buf = guard_put(&g, s, len);
    int r = http1_parse_response(buf, len, last_len, res, h, MAXH);
    if (r > 0) {
        res->reason = s + (res->reason - buf);
        for (size_t i = 0; i < res->num_headers; i++) {
            h[i].name = s + (h[i].name - buf);
            h[i].value = s + (h[i].value - buf);
        }
    }
    guard_free(&g);
    return r;
}

static void expect_str(const char *p, size_t n, const char *want)
{
    cr_assert_eq(n, strlen(want), "length %zu, want %zu (%s)", n, strlen(want), want);
    cr_assert(memcmp(p, want, n) == 0, "got %.*s want %s", (int)n, p, want);
}

Test(http1, request_complete)
{
    struct http1_request req;
    struct http1_header h[MAXH];
    int r = parse_req(REQ, strlen(REQ), 0, &req, h, MAXH);

    cr_assert_eq(r, (int)strlen(REQ));
    expect_str(req.method, req.method_len, "GET");
    expect_str(req.target, req.target_len, "/test/path/?x=1");
    cr_assert_eq(req.minor_version, 1);
    cr_assert_eq(req.num_headers, 4);
    cr_assert_eq(req.headers, h);
    expect_str(h[0].name, h[0].name_len, "Host");
    expect_str(h[0].value, h[0].value_len, "relay.example:37791");
    expect_str(h[2].value, h[2].value_len, "secret");
    expect_str(h[3].name, h[3].name_len, "Empty");
    cr_assert_eq(h[3].value_len, 0);
}

Test(http1, request_trailing_bytes_not_consumed)
{
    char buf[sizeof(REQ) + 8];
    snprintf(buf, sizeof(buf), "%sXYZ", REQ);
    cr_assert_eq(req_rc(buf, MAXH), (int)strlen(REQ));
}

Test(http1, request_every_split_point)
{
    size_t n = strlen(REQ);
    struct http1_request req;
    struct http1_header h[MAXH];

    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(parse_req(REQ, i, 0, &req, h, MAXH), -2, "prefix %zu", i);
        if (i > 0)
            cr_assert_eq(parse_req(REQ, i, i - 1, &req, h, MAXH), -2, "prefix %zu last", i);
    }
    /* Growing buffer, last_len from the previous -2 call, byte by byte. */
    for (size_t i = 1; i <= n; i++) {
        int r = parse_req(REQ, i, i - 1, &req, h, MAXH);
        cr_assert_eq(r, i == n ? (int)n : -2, "grow %zu", i);
    }
    /* And in one jump from any earlier length. */
    for (size_t last = 0; last < n; last++)
        cr_assert_eq(parse_req(REQ, n, last, &req, h, MAXH), (int)n, "jump from %zu", last);
}

Test(http1, request_bare_lf)
{
    const char *s = "GET / HTTP/1.0\nHost: x\n\n";
    struct http1_request req;
    struct http1_header h[MAXH];

    cr_assert_eq(parse_req(s, strlen(s), 0, &req, h, MAXH), (int)strlen(s));
    cr_assert_eq(req.minor_version, 0);
    cr_assert_eq(req.num_headers, 1);
    expect_str(h[0].value, h[0].value_len, "x");
    cr_assert_eq(req_rc("GET / HTTP/1.1\r\nHost: x\n\r\n", MAXH), 26);
    for (size_t i = 0; i < strlen(s); i++)
        cr_assert_eq(parse_req(s, i, 0, &req, h, MAXH), -2, "prefix %zu", i);
}

Test(http1, request_no_headers)
{
    cr_assert_eq(req_rc("GET / HTTP/1.1\r\n\r\n", 0), 18);
}

Test(http1, request_invalid)
{
    static const char *const bad[] = {
        "G@T / HTTP/1.1\r\n\r\n",      /* bad method token */
        " / HTTP/1.1\r\n\r\n",         /* empty method */
        "GET  / HTTP/1.1\r\n\r\n",     /* empty target */
        "GET /a\x01 HTTP/1.1\r\n\r\n", /* control in target */
        "GET /\x80 HTTP/1.1\r\n\r\n",  /* non-ASCII target */
        "GET /a b HTTP/1.1\r\n\r\n",   /* space in target */
        "GET / HTTP/2.0\r\n\r\n",      /* version */
        "GET / HTTP/1.2\r\n\r\n",
        "GET / http/1.1\r\n\r\n",
        "GET / HTTP/1.1 \r\n\r\n",
        "GET / HTTP/1.1\rX\n\r\n",              /* bare CR in request line */
        "GET / HTTP/1.1\r\nHost\r\n\r\n",       /* no colon */
        "GET / HTTP/1.1\r\n: x\r\n\r\n",        /* empty name */
        "GET / HTTP/1.1\r\nHost : x\r\n\r\n",   /* space before colon */
        "GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", /* obs-fold */
        "GET / HTTP/1.1\r\n\tc\r\n\r\n",
        "GET / HTTP/1.1\r\nA: b\rc\r\n\r\n",  /* bare CR in value */
        "GET / HTTP/1.1\r\nA: b\x01\r\n\r\n", /* control in value */
        "GET / HTTP/1.1\r\nA: b\x7f\r\n\r\n", /* DEL in value */
        "GET / HTTP/1.1\r\nA\x80: b\r\n\r\n", /* non-token name */
        "GET / HTTP/1.1\r\n\rX\r\n",          /* bare CR as blank line */
        "\r\nGET / HTTP/1.1\r\n\r\n",         /* leading blank line */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(req_rc(bad[i], MAXH), -1, "case %zu", i);
}

Test(http1, request_nul_in_value)
{
    static const char s[] = "GET / HTTP/1.1\r\nA: b\0c\r\n\r\n";
    struct http1_request req;
    struct http1_header h[MAXH];
    cr_assert_eq(parse_req(s, sizeof(s) - 1, 0, &req, h, MAXH), -1);
}

Test(http1, request_obs_text_value_ok)
{
    const char *s = "GET / HTTP/1.1\r\nA: caf\xc3\xa9\r\n\r\n";
    cr_assert_eq(req_rc(s, MAXH), (int)strlen(s));
}

Test(http1, request_invalid_detected_early)
{
    /* With last_len == 0 an invalid prefix is refused before the head ends. */
    cr_assert_eq(req_rc("G@T / HT", MAXH), -1);
    cr_assert_eq(req_rc("GET / HTTP/9", MAXH), -1);
    /* With last_len > 0 only completeness is rechecked until the blank line
     * arrives (picohttpparser semantics); then the verdict is the same. */
    struct http1_request req;
    struct http1_header h[MAXH];
    const char *s = "G@T / HTTP/1.1\r\n";
    cr_assert_eq(parse_req(s, strlen(s), 3, &req, h, MAXH), -2);
    cr_assert_eq(req_rc("G@T / HTTP/1.1\r\n\r\n", MAXH), -1);
}

Test(http1, request_header_limit)
{
    const char *two = "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n";
    const char *three = "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    cr_assert_eq(req_rc(two, 2), (int)strlen(two));
    cr_assert_eq(req_rc(three, 2), HTTP1_TOO_MANY_HEADERS);
    cr_assert_eq(req_rc(two, 0), HTTP1_TOO_MANY_HEADERS);
    cr_assert_eq(req_rc("GET / HTTP/1.1\r\n\r\n", 0), 18);
    /* Distinct from malformed: a bad line within the limit is still -1... */
    cr_assert_eq(req_rc("GET / HTTP/1.1\r\nA: 1\r\nB 2\r\n\r\n", 2), HTTP1_INVALID);
    /* ...and lines after the extra one are not looked at. */
    cr_assert_eq(req_rc("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC 3\r\n\r\n", 2),
                 HTTP1_TOO_MANY_HEADERS);
    /* Known as soon as the extra line starts, before the head ends. */
    cr_assert_eq(req_rc("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC", 2), HTTP1_TOO_MANY_HEADERS);
    cr_assert_eq(req_rc("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n", 2), HTTP1_INCOMPLETE);
}

Test(http1, response_header_limit)
{
    struct http1_response res;
    struct http1_header h[2];
    const char *s = "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";

    cr_assert_eq(http1_parse_response(s, strlen(s), 0, &res, h, 2), HTTP1_TOO_MANY_HEADERS);
    cr_assert_eq(http1_parse_response(s, strlen(s) - 2, 0, &res, h, 2), HTTP1_TOO_MANY_HEADERS);
}

Test(http1, request_many_headers_at_max)
{
    char buf[4096];
    size_t n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\n");
    struct http1_header h[HTTP1_MAX_HEADERS];
    struct http1_request req;

    for (int i = 0; i < HTTP1_MAX_HEADERS; i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "H%d: v\r\n", i);
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\r\n");
    cr_assert_eq(parse_req(buf, n, 0, &req, h, HTTP1_MAX_HEADERS), (int)n);
    cr_assert_eq(req.num_headers, HTTP1_MAX_HEADERS);
    cr_assert_eq(parse_req(buf, n, 0, &req, h, HTTP1_MAX_HEADERS - 1), HTTP1_TOO_MANY_HEADERS);
}

/* The array size is the caller's: a proxy-heavy head with more lines than
 * the usual 64 parses with a bigger array. */
Test(http1, request_more_than_64_headers_with_a_bigger_array)
{
    enum { MANY = 3 * HTTP1_MAX_HEADERS };
    static char buf[16384];
    static struct http1_header h[MANY];
    struct http1_request req;
    size_t n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: x\r\n");

    for (int i = 1; i < MANY; i++)
        n +=
            (size_t)snprintf(buf + n, sizeof(buf) - n, "X-Forwarded-%d: 10.0.0.%d\r\n", i, i % 256);
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\r\n");
    cr_assert_eq(parse_req(buf, n, 0, &req, h, HTTP1_MAX_HEADERS), HTTP1_TOO_MANY_HEADERS);
    cr_assert_eq(parse_req(buf, n, 0, &req, h, MANY), (int)n);
    cr_assert_eq(req.num_headers, MANY);
    cr_assert_eq(parse_req(buf, n, 0, &req, h, MANY - 1), HTTP1_TOO_MANY_HEADERS);
}

Test(http1, request_last_len_beyond_len)
{
    /* A caller passing a stale last_len larger than len gets -2, not a crash. */
    struct http1_request req;
    struct http1_header h[MAXH];
    cr_assert_eq(parse_req(REQ, 10, 50, &req, h, MAXH), -2);
}

Test(http1, request_empty_buffer)
{
    struct http1_request req;
    struct http1_header h[MAXH];
    cr_assert_eq(parse_req("", 0, 0, &req, h, MAXH), -2);
}

static const char RES[] = "HTTP/1.1 101 Switching Protocols\r\n"
                          "Upgrade: webroute\r\n"
                          "Connection: Upgrade\r\n"
                          "Sec-WebRoute-Accept: abc=\r\n"
                          "\r\n";

Test(http1, response_complete_and_splits)
{
    struct http1_response res;
    struct http1_header h[MAXH];
    size_t n = strlen(RES);

    cr_assert_eq(parse_res(RES, n, 0, &res, h), (int)n);
    cr_assert_eq(res.status, 101);
    cr_assert_eq(res.minor_version, 1);
    expect_str(res.reason, res.reason_len, "Switching Protocols");
    cr_assert_eq(res.num_headers, 3);
    expect_str(h[2].value, h[2].value_len, "abc=");
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(parse_res(RES, i, 0, &res, h), -2, "prefix %zu", i);
        if (i > 0)
            cr_assert_eq(parse_res(RES, i, i - 1, &res, h), -2, "prefix %zu last", i);
    }
}

Test(http1, response_variants)
{
    struct http1_response res;
    struct http1_header h[MAXH];
    const char *noreason = "HTTP/1.1 200\r\n\r\n";
    const char *empty = "HTTP/1.0 404 \n\n";

    cr_assert_eq(parse_res(noreason, strlen(noreason), 0, &res, h), (int)strlen(noreason));
    cr_assert_eq(res.status, 200);
    cr_assert_eq(res.reason_len, 0);
    cr_assert_eq(parse_res(empty, strlen(empty), 0, &res, h), (int)strlen(empty));
    cr_assert_eq(res.status, 404);
    cr_assert_eq(res.minor_version, 0);
}

Test(http1, response_invalid)
{
    static const char *const bad[] = {
        "HTTP/1.1 20x OK\r\n\r\n",    "HTTP/1.1 2000 OK\r\n\r\n",     "HTTP/1.1  200 OK\r\n\r\n",
        "HTTP/1.1200 OK\r\n\r\n",     "HTTP/2 200 OK\r\n\r\n",        "HTTP/1.1 200 O\x01K\r\n\r\n",
        "HTTP/1.1 200 OK\rX\r\n\r\n", "HTTP/1.1 200 OK\r\nA\r\n\r\n", "XTTP/1.1 200 OK\r\n\r\n",
    };
    struct http1_response res;
    struct http1_header h[MAXH];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(parse_res(bad[i], strlen(bad[i]), 0, &res, h), -1, "case %zu", i);
}

Test(http1, find_and_count)
{
    struct http1_header h[] = {
        {"Host", 4, "a", 1},
        {"X-Remoted-APIKey", 16, "k1", 2},
        {"x-remoted-apikey", 16, "k2", 2},
    };
    cr_assert_eq(http1_find(h, 3, "host"), &h[0]);
    cr_assert_eq(http1_find(h, 3, "X-REMOTED-APIKEY"), &h[1]);
    cr_assert_null(http1_find(h, 3, "Upgrade"));
    cr_assert_null(http1_find(h, 3, "Hos"));
    cr_assert_null(http1_find(h, 0, "Host"));
    cr_assert_eq(http1_count(h, 3, "x-remoted-apikey"), 2);
    cr_assert_eq(http1_count(h, 3, "host"), 1);
    cr_assert_eq(http1_count(h, 3, "nope"), 0);
}

Test(http1, has_token)
{
    const char *v = "keep-alive, Upgrade";
    cr_assert_eq(http1_has_token(v, strlen(v), "upgrade"), 1);
    cr_assert_eq(http1_has_token(v, strlen(v), "keep-alive"), 1);
    cr_assert_eq(http1_has_token(v, strlen(v), "close"), 0);
    cr_assert_eq(http1_has_token("Upgrade", 7, "upgrade"), 1);
    cr_assert_eq(http1_has_token(" ,\tUPGRADE\t, ", 13, "upgrade"), 1);
    cr_assert_eq(http1_has_token("upgraded", 8, "upgrade"), 0);
    cr_assert_eq(http1_has_token("upgrad", 6, "upgrade"), 0);
    cr_assert_eq(http1_has_token("", 0, "upgrade"), 0);
    cr_assert_eq(http1_has_token(",,,", 3, "upgrade"), 0);
    /* len bounds the value: no read past it. */
    struct guard g = {0};
    char *p = guard_str(&g, "a, upgrade");
    cr_assert_eq(http1_has_token(p, 10, "upgrade"), 1);
    cr_assert_eq(http1_has_token(p, 9, "upgrade"), 0);
    guard_free(&g);
}

Test(http1, path_len)
{
    cr_assert_eq(http1_path_len("/test/path/?x=1", 15), 11);
    cr_assert_eq(http1_path_len("/a#frag", 7), 2);
    cr_assert_eq(http1_path_len("/plain", 6), 6);
    cr_assert_eq(http1_path_len("?q", 2), 0);
    cr_assert_eq(http1_path_len("", 0), 0);
}

Test(http1, eq)
{
    cr_assert_eq(http1_eq("Upgrade", 7, "upgrade"), 1);
    cr_assert_eq(http1_eq("Upgrade", 6, "upgrade"), 0);
    cr_assert_eq(http1_eq("Upgrades", 8, "upgrade"), 0);
    cr_assert_eq(http1_eq("", 0, ""), 1);
    cr_assert_eq(http1_eq("[", 1, "{"), 0);  /* case folding is ASCII letters only */
    cr_assert_eq(http1_eq("@", 1, "`"), 0);  /* 0x40/0x60: one case bit apart, not letters */
    cr_assert_eq(http1_eq("-", 1, "\r"), 0); /* 0x2d/0x0d */
    cr_assert_eq(http1_eq("z", 1, "Z"), 1);
    cr_assert_eq(http1_eq("a", 1, "A"), 1);
    cr_assert_eq(http1_eq("\xc1", 1, "\xe1"), 0); /* obs-text is not folded */
    cr_assert_eq(http1_eq("ab", 2, "abc"), 0);
    cr_assert_eq(http1_eq("a\0c", 3, "a"), 0); /* a NUL in s never matches the literal's end */
}

/* Every byte pair against the old definition: tolower on A-Z only. */
Test(http1, eq_every_byte_pair)
{
    for (int x = 0; x < 256; x++) {
        for (int y = 1; y < 256; y++) {
            char s[1] = {(char)x};
            char lit[2] = {(char)y, '\0'};
            int lx = (x >= 'A' && x <= 'Z') ? x + ('a' - 'A') : x;
            int ly = (y >= 'A' && y <= 'Z') ? y + ('a' - 'A') : y;
            cr_assert_eq(http1_eq(s, 1, lit), lx == ly, "x=%d y=%d", x, y);
        }
    }
}

Test(http1, find_one)
{
    struct http1_header h[] = {
        {"Host", 4, "a", 1},
        {"X-Remoted-APIKey", 16, "k1", 2},
        {"x-remoted-apikey", 16, "k2", 2},
        {"Upgrade", 7, "webroute", 8},
    };
    cr_assert_eq(http1_find_one(h, 4, "HOST"), &h[0]);
    cr_assert_eq(http1_find_one(h, 4, "upgrade"), &h[3]);
    cr_assert_null(http1_find_one(h, 4, "X-Remoted-APIKey")); /* repeated */
    cr_assert_eq(http1_find_one(h, 2, "X-Remoted-APIKey"), &h[1]);
    cr_assert_null(http1_find_one(h, 4, "Hos"));
    cr_assert_null(http1_find_one(h, 4, "Hosts"));
    cr_assert_null(http1_find_one(h, 0, "Host"));
}

/* Method and header-name bytes: exactly RFC 9110's tchar. */
Test(http1, tchar_every_byte)
{
    const char *specials = "!#$%&'*+-.^_`|~";

    for (int c = 0; c < 256; c++) {
        int want = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   (c != 0 && strchr(specials, c) != NULL);
        char head[] = "GET / HTTP/1.1\r\nX?: v\r\n\r\n";
        struct http1_request req;
        struct http1_header h[4];

        if (c == ':')
            continue; /* "X:" ends the name: valid either way */
        head[17] = (char)c;
        int r = parse_req(head, sizeof(head) - 1, 0, &req, h, 4);
        cr_assert_eq(r > 0, want, "c=%d r=%d", c, r);
    }
}

Test(http1, reason)
{
    cr_assert_str_eq(http1_reason(101), "Switching Protocols");
    cr_assert_str_eq(http1_reason(400), "Bad Request");
    cr_assert_str_eq(http1_reason(403), "Forbidden");
    cr_assert_str_eq(http1_reason(404), "Not Found");
    cr_assert_str_eq(http1_reason(405), "Method Not Allowed");
    cr_assert_str_eq(http1_reason(409), "Conflict");
    cr_assert_str_eq(http1_reason(426), "Upgrade Required");
    cr_assert_str_eq(http1_reason(431), "Request Header Fields Too Large");
    cr_assert_str_eq(http1_reason(502), "Bad Gateway");
    cr_assert_str_eq(http1_reason(504), "Gateway Timeout");
    cr_assert_str_eq(http1_reason(299), "Unknown");
}
