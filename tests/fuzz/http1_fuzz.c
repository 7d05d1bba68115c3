/* libFuzzer: HTTP/1.1 request and response heads. Checks invariants beyond
 * "no crash": a parsed head re-parses alone to the same length, one byte
 * less is incomplete, and every output points inside the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/http1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) ((c) ? (void)0 : __builtin_trap())

static int inside(const char *buf, size_t len, const char *p, size_t n)
{
    return p >= buf && n <= len && (size_t)(p - buf) <= len - n;
}

static void check_headers(const char *buf, size_t len, const struct http1_header *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        CHECK(h[i].name_len > 0 && inside(buf, len, h[i].name, h[i].name_len));
        CHECK(inside(buf, len, h[i].value, h[i].value_len));
        CHECK(http1_find(h, n, "x") == NULL || http1_count(h, n, "x") > 0);
        (void)http1_has_token(h[i].value, h[i].value_len, "upgrade");
    }
}

#define FEW_HEADERS 4 /* a small array too, so that -3 is reached */

static int request_max(const char *buf, size_t len, size_t last_len, size_t max)
{
    struct http1_header h[HTTP1_MAX_HEADERS];
    struct http1_request req;
    int r = http1_parse_request(buf, len, last_len, &req, h, max);

    CHECK(r >= HTTP1_TOO_MANY_HEADERS && (r < 0 || (size_t)r <= len));
    CHECK(r != HTTP1_TOO_MANY_HEADERS || req.num_headers == max);
    if (r > 0) {
        CHECK(inside(buf, (size_t)r, req.method, req.method_len));
        CHECK(inside(buf, (size_t)r, req.target, req.target_len));
        CHECK(req.minor_version == 0 || req.minor_version == 1);
        CHECK(req.num_headers <= max);
        check_headers(buf, (size_t)r, h, req.num_headers);
        CHECK(http1_path_len(req.target, req.target_len) <= req.target_len);
    }
    return r;
}

static int request(const char *buf, size_t len, size_t last_len)
{
    int r = request_max(buf, len, last_len, HTTP1_MAX_HEADERS);
    int few = request_max(buf, len, last_len, FEW_HEADERS);

    /* A smaller array changes only "too many"; a larger one never causes it. */
    CHECK(few == r || few == HTTP1_TOO_MANY_HEADERS);
    return r;
}

static int response(const char *buf, size_t len)
{
    struct http1_header h[HTTP1_MAX_HEADERS];
    struct http1_response res;
    int r = http1_parse_response(buf, len, 0, &res, h, HTTP1_MAX_HEADERS);

    CHECK(r >= HTTP1_TOO_MANY_HEADERS && (r < 0 || (size_t)r <= len));
    if (r > 0) {
        CHECK(res.status >= 0 && res.status <= 999);
        CHECK(inside(buf, (size_t)r, res.reason, res.reason_len));
        check_headers(buf, (size_t)r, h, res.num_headers);
        (void)http1_reason(res.status);
    }
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy so ASan sees any read past size. */
    char *buf = malloc(size ? size : 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);

    int r = request(buf, size, 0);
    if (r > 0) {
        CHECK(request(buf, (size_t)r, 0) == r);
        CHECK(request(buf, (size_t)r - 1, 0) == -2);
        CHECK(request(buf, (size_t)r, (size_t)r - 1) == r);
    }
    int s = response(buf, size);
    if (s > 0) {
        CHECK(response(buf, (size_t)s) == s);
        CHECK(response(buf, (size_t)s - 1) == -2);
    }
    free(buf);
    return 0;
}
