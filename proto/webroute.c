/* WebRoute v1 handshake and the relay's request classification
 * (see webroute.h and docs/PROTOCOL.md). */
#include "proto/webroute.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/coding.h>
#include <wolfssl/wolfcrypt/hash.h>

#include "proto/json.h"
#include "proto/ws.h"

#define WR_GUID_LEN (sizeof(WEBROUTE_GUID) - 1)
#define WR_SHA1_LEN 20
#define WR_B64_BUF 32
#define WR_ID_MIN_BYTE 0x21
#define WR_ID_MAX_BYTE 0x7e
#define WR_DECIMAL_BASE 10
#define WR_KEY_MAX 256 /* KEY_MAX_LEN in auth/keys.h; proto does not include auth */
#define WR_TIMEOUT_HDR_MAX 48

static int fail(struct wr_error *err, int status, const char *code, const char *msg,
                const char *extra)
{
    err->status = status;
    err->errorcode = code;
    err->message = msg;
    err->extra_header = extra;
    return -1;
}

static int bad_request(struct wr_error *err)
{
    return fail(err, 400, "invalid_request", "Invalid request", NULL);
}

/* The header's value when it is present exactly once, else NULL. */
static const struct http1_header *single(const struct http1_request *req, const char *name)
{
    return http1_find_one(req->headers, req->num_headers, name);
}

const struct http1_header *wr_apikey(const struct http1_request *req)
{
    return single(req, "X-Remoted-APIKey");
}

static bool header_is(const struct http1_request *req, const char *name, const char *want)
{
    const struct http1_header *h = single(req, name);
    size_t n = strlen(want);

    return h != NULL && h->value_len == n && memcmp(h->value, want, n) == 0;
}

/* Upgrade: <proto> with Connection containing "upgrade". */
static bool upgrade_to(const struct http1_request *req, const char *proto)
{
    const struct http1_header *up = http1_find(req->headers, req->num_headers, "Upgrade");
    const struct http1_header *conn = http1_find(req->headers, req->num_headers, "Connection");

    return up != NULL && conn != NULL && http1_has_token(up->value, up->value_len, proto) &&
           http1_has_token(conn->value, conn->value_len, "upgrade");
}

/* Non-negative decimal, saturating at WEBROUTE_MAX_TIMEOUT; -1 otherwise. */
static long parse_timeout(const struct http1_header *h)
{
    long v = 0;

    if (h == NULL || h->value_len == 0)
        return -1;
    for (size_t i = 0; i < h->value_len; i++) {
        char c = h->value[i];
        if (c < '0' || c > '9')
            return -1;
        v = v * WR_DECIMAL_BASE + (c - '0');
        if (v > WEBROUTE_MAX_TIMEOUT)
            v = WEBROUTE_MAX_TIMEOUT;
    }
    return v;
}

static bool id_valid(const struct http1_header *h)
{
    if (h == NULL || h->value_len == 0 || h->value_len > WEBROUTE_ID_MAX)
        return false;
    for (size_t i = 0; i < h->value_len; i++) {
        unsigned char c = (unsigned char)h->value[i];
        if (c < WR_ID_MIN_BYTE || c > WR_ID_MAX_BYTE)
            return false;
    }
    return true;
}

static int classify_listener(const struct http1_request *req, struct wr_request *out,
                             struct wr_error *err)
{
    if (!header_is(req, "Sec-WebSocket-Version", "13"))
        return fail(err, 426, "version_not_supported", "Unsupported WebSocket version",
                    "Sec-WebSocket-Version: 13");
    const struct http1_header *key = single(req, "Sec-WebSocket-Key");
    if (key == NULL || !ws_key_valid(key->value, key->value_len))
        return bad_request(err);
    out->kind = WR_LISTENER;
    out->ws_key = key->value;
    out->ws_key_len = key->value_len;
    return 0;
}

static int classify_webroute(const struct http1_request *req, enum key_role role,
                             struct wr_request *out, struct wr_error *err)
{
    if (!header_is(req, "WebRoute-Version", "1"))
        return fail(err, 426, "version_not_supported", "Unsupported WebRoute version",
                    "WebRoute-Version: 1");
    const struct http1_header *id = single(req, "WebRoute-ID");
    if (!id_valid(id))
        return bad_request(err);
    out->kind = role == KEY_SERVER ? WR_DIALBACK : WR_CLIENT;
    out->id = id->value;
    out->id_len = id->value_len;
    out->timeout = parse_timeout(single(req, "WebRoute-Timeout"));
    return 0;
}

int wr_classify(const struct http1_request *req, enum key_role role, struct wr_request *out,
                struct wr_error *err)
{
    memset(out, 0, sizeof(*out));
    out->timeout = -1;
    memset(err, 0, sizeof(*err));
    if (req->method_len != 3 || memcmp(req->method, "GET", 3) != 0)
        return fail(err, 405, "method_not_allowed", "Method not allowed", NULL);
    if (single(req, "Host") == NULL)
        return bad_request(err);
    if (role != KEY_SERVER && role != KEY_CLIENT)
        return fail(err, 403, "invalid_missing_apikey", "Invalid or missing API key", NULL);
    size_t path_len = http1_path_len(req->target, req->target_len);
    if (path_len == 0 || req->target[0] != '/' || path_len > WEBROUTE_PATH_MAX)
        return bad_request(err);
    out->path = req->target;
    out->path_len = path_len;
    if (role == KEY_SERVER && upgrade_to(req, "websocket"))
        return classify_listener(req, out, err);
    if (upgrade_to(req, "webroute"))
        return classify_webroute(req, role, out, err);
    return bad_request(err);
}

int wr_accept(const char *id, size_t id_len, char out[WEBROUTE_ACCEPT_LEN + 1])
{
    uint8_t buf[WEBROUTE_ID_MAX + WR_GUID_LEN];
    uint8_t digest[WR_SHA1_LEN];
    byte enc[WR_B64_BUF];
    word32 enc_len = sizeof(enc);

    if (id == NULL || id_len == 0 || id_len > WEBROUTE_ID_MAX)
        return -EINVAL;
    memcpy(buf, id, id_len);
    memcpy(buf + id_len, WEBROUTE_GUID, WR_GUID_LEN);
    if (wc_ShaHash(buf, (word32)(id_len + WR_GUID_LEN), digest) != 0 ||
        Base64_Encode_NoNl(digest, sizeof(digest), enc, &enc_len) != 0 ||
        enc_len != WEBROUTE_ACCEPT_LEN)
        return -EINVAL;
    memcpy(out, enc, WEBROUTE_ACCEPT_LEN);
    out[WEBROUTE_ACCEPT_LEN] = '\0';
    return 0;
}

long wr_effective_timeout(long header_timeout, long relay_default, long floor)
{
    long t = floor;

    if (relay_default > t)
        t = relay_default;
    if (header_timeout >= 0) {
        long h = header_timeout > WEBROUTE_MAX_TIMEOUT ? WEBROUTE_MAX_TIMEOUT : header_timeout;
        if (h > t)
            t = h;
    }
    return t;
}

static int build_101(char *out, size_t cap, const char *proto, const char *accept_name,
                     const char *accept)
{
    int n = snprintf(out, cap,
                     "HTTP/1.1 101 Switching Protocols\r\n"
                     "Upgrade: %s\r\n"
                     "Connection: Upgrade\r\n"
                     "%s: %s\r\n\r\n",
                     proto, accept_name, accept);
    return (n < 0 || (size_t)n >= cap) ? -1 : n;
}

int wr_build_ws_101(char *out, size_t cap, const char *ws_accept)
{
    return build_101(out, cap, "websocket", "Sec-WebSocket-Accept", ws_accept);
}

int wr_build_wr_101(char *out, size_t cap, const char *wr_accept)
{
    return build_101(out, cap, "webroute", "Sec-WebRoute-Accept", wr_accept);
}

int wr_build_ws_101_ext(char *out, size_t cap, const char *ws_accept, const char *ext)
{
    int n;

    if (!ext)
        return wr_build_ws_101(out, cap, ws_accept);
    n = snprintf(out, cap,
                 "HTTP/1.1 101 Switching Protocols\r\n"
                 "Upgrade: websocket\r\n"
                 "Connection: Upgrade\r\n"
                 "Sec-WebSocket-Accept: %s\r\n" WR_EXT_HEADER ": %s\r\n\r\n",
                 ws_accept, ext);
    return (n < 0 || (size_t)n >= cap) ? -1 : n;
}

int wr_build_park_101(char *out, size_t cap, const char *wr_accept, const char *addr,
                      const char *id, size_t id_len, long timeout)
{
    int n =
        snprintf(out, cap,
                 "HTTP/1.1 101 Switching Protocols\r\n"
                 "Upgrade: webroute\r\n"
                 "Connection: Upgrade\r\n"
                 "Sec-WebRoute-Accept: %s\r\n" WR_CLIENT_ADDR_HEADER ": %s\r\n" WR_CLIENT_ID_HEADER
                 ": %.*s\r\n" WR_CLIENT_TIMEOUT_HEADER ": %ld\r\n\r\n",
                 wr_accept, addr, (int)id_len, id, timeout);
    return (n < 0 || (size_t)n >= cap) ? -1 : n;
}

int wr_wants_park(const struct http1_request *req)
{
    return header_is(req, WR_PARK_HEADER, "1");
}

int wr_build_error(char *out, size_t cap, const struct wr_error *err)
{
    char msg[WR_ERROR_TEXT_MAX];
    char code[WR_ERROR_TEXT_MAX];
    char body[3 * WR_ERROR_TEXT_MAX];
    const char *extra = err->extra_header;

    if (json_escape(msg, sizeof(msg), err->message, strlen(err->message)) < 0 ||
        json_escape(code, sizeof(code), err->errorcode, strlen(err->errorcode)) < 0)
        return -1;
    int blen = snprintf(body, sizeof(body),
                        "{\"success\":false,\"error\":\"%s\",\"errorcode\":\"%s\"}", msg, code);
    if (blen < 0 || (size_t)blen >= sizeof(body))
        return -1;
    int n = snprintf(out, cap,
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: application/json\r\n"
                     "Cache-Control: no-cache\r\n"
                     "Connection: close\r\n"
                     "%s%s"
                     "Content-Length: %d\r\n\r\n"
                     "%s",
                     err->status, http1_reason(err->status), extra ? extra : "",
                     extra ? "\r\n" : "", blen, body);
    return (n < 0 || (size_t)n >= cap) ? -1 : n;
}

int wr_build_error3(char *out, size_t cap, int status, const char *errorcode, const char *message)
{
    struct wr_error err = {status, errorcode, message, NULL};

    return wr_build_error(out, cap, &err);
}

/* 1..max bytes of 0x21..0x7e: nothing that could end a header line. */
static bool token_ok(const char *s, size_t n, size_t max)
{
    if (s == NULL || n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < WR_ID_MIN_BYTE || (unsigned char)s[i] > WR_ID_MAX_BYTE)
            return false;
    }
    return true;
}

static bool str_ok(const char *s, size_t max)
{
    return s != NULL && token_ok(s, strnlen(s, max + 1), max);
}

static bool head_ok(const struct wr_head *h)
{
    return str_ok(h->path, WEBROUTE_PATH_MAX) && h->path[0] == '/' &&
           str_ok(h->host, WEBROUTE_PATH_MAX) && token_ok(h->key, h->key_len, WR_KEY_MAX);
}

/* snprintf's result as this module's contract: length, or -ENOSPC with out
 * wiped (it may hold part of the key). */
static int built(char *out, size_t cap, int n)
{
    if (n >= 0 && (size_t)n < cap)
        return n;
    if (cap > 0)
        explicit_bzero(out, cap);
    return -ENOSPC;
}

int wr_build_ws_request(char *out, size_t cap, const struct wr_head *h)
{
    bool origin = h->origin != NULL;

    if (!head_ok(h) || h->ws_key == NULL || !ws_key_valid(h->ws_key, strlen(h->ws_key)) ||
        (origin && !str_ok(h->origin, WEBROUTE_PATH_MAX))) {
        if (cap > 0)
            explicit_bzero(out, cap);
        return -EINVAL;
    }
    int n = snprintf(out, cap,
                     "GET %s HTTP/1.1\r\n"
                     "Host: %s\r\n"
                     "%s%s%s"
                     "Connection: keep-alive, Upgrade\r\n"
                     "X-Remoted-APIKey: %.*s\r\n"
                     "Sec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "Upgrade: websocket\r\n"
                     "\r\n",
                     h->path, h->host, origin ? "Origin: " : "", origin ? h->origin : "",
                     origin ? "\r\n" : "", (int)h->key_len, h->key, h->ws_key);
    return built(out, cap, n);
}

int wr_build_wr_request(char *out, size_t cap, const struct wr_head *h)
{
    char tmo[WR_TIMEOUT_HDR_MAX] = "";

    if (!head_ok(h) || !str_ok(h->id, WEBROUTE_ID_MAX)) {
        if (cap > 0)
            explicit_bzero(out, cap);
        return -EINVAL;
    }
    if (h->timeout > 0)
        snprintf(tmo, sizeof(tmo), "WebRoute-Timeout: %ld\r\n", h->timeout);
    int n = snprintf(out, cap,
                     "GET %s HTTP/1.1\r\n"
                     "Host: %s\r\n"
                     "Connection: keep-alive, Upgrade\r\n"
                     "X-Remoted-APIKey: %.*s\r\n"
                     "WebRoute-Version: 1\r\n"
                     "WebRoute-ID: %s\r\n"
                     "%s"
                     "Upgrade: webroute\r\n"
                     "\r\n",
                     h->path, h->host, (int)h->key_len, h->key, h->id, tmo);
    return built(out, cap, n);
}
