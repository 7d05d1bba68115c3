/* libFuzzer: the relay's front door. The first input byte picks the key
 * role; the rest is a request head, parsed and classified. Every outcome
 * must produce a well-formed answer, and a request that classifies is
 * rebuilt with our own request builders, which must classify the same. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/http1.h"
#include "proto/json.h"
#include "proto/webroute.h"
#include "proto/ws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) ((c) ? (void)0 : __builtin_trap())
#define ANSWER_MAX 2048
#define HEAD_MAX 4096
#define FUZZ_HOST "relay.example:37791"

/* Our builders, fed what the relay took from a request, make a head the
 * relay classifies the same way. */
static void check_rebuild(const struct wr_request *w, enum key_role role)
{
    char path[WEBROUTE_PATH_MAX + 1], id[WEBROUTE_ID_MAX + 1], wskey[WS_KEY_LEN + 1];
    char out[HEAD_MAX];
    struct http1_header h[HTTP1_MAX_HEADERS];
    struct http1_request req;
    struct wr_request again;
    struct wr_error e;
    struct wr_head hd = {.path = path,
                         .host = FUZZ_HOST,
                         .key = "0123456789abcdef",
                         .key_len = 16,
                         .origin = "http://" FUZZ_HOST,
                         .timeout = w->timeout};
    int n;

    memcpy(path, w->path, w->path_len);
    path[w->path_len] = '\0';
    if (w->kind == WR_LISTENER) {
        memcpy(wskey, w->ws_key, WS_KEY_LEN);
        wskey[WS_KEY_LEN] = '\0';
        hd.ws_key = wskey;
        n = wr_build_ws_request(out, sizeof(out), &hd);
    } else {
        memcpy(id, w->id, w->id_len);
        id[w->id_len] = '\0';
        hd.id = id;
        n = wr_build_wr_request(out, sizeof(out), &hd);
    }
    CHECK(n > 0);
    CHECK(http1_parse_request(out, (size_t)n, 0, &req, h, HTTP1_MAX_HEADERS) == n);
    CHECK(wr_classify(&req, role, &again, &e) == 0);
    CHECK(again.kind == w->kind && again.path_len == w->path_len);
    CHECK(memcmp(again.path, w->path, w->path_len) == 0);
    if (w->kind != WR_LISTENER) {
        CHECK(again.id_len == w->id_len && memcmp(again.id, w->id, w->id_len) == 0);
        CHECK(again.timeout == (w->timeout > 0 ? w->timeout : -1));
    }
}

static void check_ok(const struct wr_request *w, enum key_role role)
{
    char acc[WEBROUTE_ACCEPT_LEN + 1], out[ANSWER_MAX];

    CHECK(w->path_len > 0 && w->path_len <= WEBROUTE_PATH_MAX && w->path[0] == '/');
    if (w->kind == WR_LISTENER) {
        CHECK(role == KEY_SERVER);
        CHECK(ws_accept(w->ws_key, w->ws_key_len, acc) == 0);
        CHECK(wr_build_ws_101(out, sizeof(out), acc) > 0);
        return;
    }
    CHECK(w->kind == (role == KEY_SERVER ? WR_DIALBACK : WR_CLIENT));
    CHECK(w->id_len > 0 && w->id_len <= WEBROUTE_ID_MAX);
    CHECK(w->timeout >= -1 && w->timeout <= WEBROUTE_MAX_TIMEOUT);
    CHECK(wr_accept(w->id, w->id_len, acc) == 0);
    CHECK(wr_build_wr_101(out, sizeof(out), acc) > 0);
    long t = wr_effective_timeout(w->timeout, 0, WEBROUTE_MIN_TIMEOUT);
    CHECK(t >= WEBROUTE_MIN_TIMEOUT && t <= WEBROUTE_MAX_TIMEOUT);
    int n = notify_build(out, sizeof(out), "[::1]:1", w->id, w->id_len, t);
    CHECK(n > 0);
    struct notify nt;
    CHECK(notify_parse(out, (size_t)n, &nt) == 0);
    CHECK(strlen(nt.id) == w->id_len && memcmp(nt.id, w->id, w->id_len) == 0);
}

static void check_err(const struct wr_error *e)
{
    char out[ANSWER_MAX], code[64];

    CHECK(e->status >= 400 && e->status <= 599 && e->errorcode && e->message);
    int n = wr_build_error(out, sizeof(out), e);
    CHECK(n > 0);
    const char *body = strstr(out, "\r\n\r\n");
    CHECK(body != NULL);
    body += 4;
    CHECK(json_get_string(body, strlen(body), "errorcode", code, sizeof(code)) ==
          (int)strlen(e->errorcode));
    CHECK(strcmp(code, e->errorcode) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct http1_header h[HTTP1_MAX_HEADERS];
    struct http1_request req;
    struct wr_request w;
    struct wr_error e;

    if (size < 1)
        return 0;
    enum key_role role = (enum key_role)(data[0] % 3);
    char *buf = malloc(size - 1 ? size - 1 : 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, data + 1, size - 1);
    if (http1_parse_request(buf, size - 1, 0, &req, h, HTTP1_MAX_HEADERS) > 0) {
        (void)wr_apikey(&req);
        if (wr_classify(&req, role, &w, &e) == 0) {
            check_ok(&w, role);
            check_rebuild(&w, role);
        } else
            check_err(&e);
    }
    free(buf);
    return 0;
}
