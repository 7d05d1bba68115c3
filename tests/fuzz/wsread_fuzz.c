/* libFuzzer: the incremental WebSocket reader. Input byte 0 picks the role,
 * the limit and the piece size; the rest is the byte stream. The same stream
 * is read whole, in pieces, and with message assembly: all three must report
 * the same events, every event must keep the reader's promises (valid close
 * codes, UTF-8 text, sizes within the limit), and MORE must consume all.
 * Needs proto/ sources only. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/utf8.h"
#include "proto/wsread.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) ((c) ? (void)0 : __builtin_trap())
#define FUZZ_MSG_MAX 4096
#define FUZZ_EVENTS 512

/* A digest of what a reader reported, comparable across feeding styles. */
struct trace {
    uint8_t type[FUZZ_EVENTS];
    uint16_t code[FUZZ_EVENTS];
    uint64_t sum[FUZZ_EVENTS]; /* messages: length and a hash of the bytes */
    size_t n;
    uint64_t cur_len, cur_hash; /* DATA pieces of the open message */
    uint8_t text[FUZZ_MSG_MAX]; /* DATA: text message so far, to check UTF-8 */
};

static void push(struct trace *t, uint8_t type, uint16_t code, uint64_t sum)
{
    if (t->n < FUZZ_EVENTS) {
        t->type[t->n] = type;
        t->code[t->n] = code;
        t->sum[t->n] = sum;
        t->n++;
    }
}

static uint64_t hash(uint64_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static void check_event(const struct wsread_ev *ev, uint64_t max)
{
    switch (ev->type) {
    case WSREAD_ERROR:
        CHECK(ev->code == WS_CLOSE_PROTOCOL || ev->code == WS_CLOSE_INVALID_DATA ||
              ev->code == WS_CLOSE_TOO_BIG);
        break;
    case WSREAD_CLOSE:
        CHECK(ev->code == WS_CLOSE_NO_STATUS || ws_close_code_valid(ev->code));
        CHECK(ev->len <= WS_MAX_CONTROL - 2 && utf8_valid(ev->data, ev->len));
        break;
    case WSREAD_PING:
    case WSREAD_PONG:
        CHECK(ev->len <= WS_MAX_CONTROL);
        break;
    case WSREAD_MESSAGE:
        CHECK(ev->len <= max);
        CHECK(ev->opcode != WS_OP_TEXT || utf8_valid(ev->data, ev->len));
        break;
    case WSREAD_DATA:
        CHECK(ev->len <= max);
        CHECK(ev->opcode == WS_OP_TEXT || ev->opcode == WS_OP_BINARY);
        break;
    case WSREAD_MORE:
        break;
    }
}

static void record(struct trace *t, const struct wsread_ev *ev)
{
    if (ev->type == WSREAD_MORE)
        return;
    if (ev->type == WSREAD_DATA) {
        if (ev->opcode == WS_OP_TEXT && t->cur_len + ev->len <= FUZZ_MSG_MAX)
            memcpy(t->text + t->cur_len, ev->data, ev->len);
        t->cur_len += ev->len;
        t->cur_hash = hash(t->cur_hash, ev->data, ev->len);
        if (!ev->fin)
            return;
        CHECK(ev->opcode != WS_OP_TEXT || t->cur_len > FUZZ_MSG_MAX ||
              utf8_valid(t->text, t->cur_len));
        push(t, WSREAD_MESSAGE, ev->opcode, t->cur_hash ^ t->cur_len);
        t->cur_len = 0;
        t->cur_hash = 0;
        return;
    }
    uint64_t sum = hash(0, ev->data, ev->len) ^ ev->len;
    push(t, (uint8_t)ev->type, ev->type == WSREAD_MESSAGE ? ev->opcode : ev->code, sum);
}

static void read_all(struct trace *t, enum wsread_role role, uint64_t max, uint8_t *msg,
                     const uint8_t *in, size_t len, size_t piece)
{
    uint8_t *buf = malloc(len ? len : 1);
    struct wsread r;

    memset(t, 0, sizeof(*t));
    if (buf == NULL)
        abort();
    memcpy(buf, in, len); /* the reader unmasks in place */
    wsread_init(&r, role, max, msg, msg ? FUZZ_MSG_MAX : 0);
    for (size_t off = 0; off < len;) {
        size_t n = len - off < piece ? len - off : piece;
        uint8_t *p = buf + off;
        off += n;
        while (n > 0) {
            struct wsread_ev ev;
            size_t used = wsread_feed(&r, p, n, &ev);
            CHECK(used <= n);
            CHECK(ev.type != WSREAD_MORE || used == n);
            check_event(&ev, msg ? FUZZ_MSG_MAX : max);
            record(t, &ev);
            CHECK(!(ev.type == WSREAD_CLOSE || ev.type == WSREAD_ERROR) || wsread_done(&r));
            p += used;
            n -= used;
        }
    }
    free(buf);
}

static bool same(const struct trace *a, const struct trace *b)
{
    return a->n == b->n && memcmp(a->type, b->type, a->n) == 0 &&
           memcmp(a->code, b->code, a->n * sizeof(a->code[0])) == 0 &&
           memcmp(a->sum, b->sum, a->n * sizeof(a->sum[0])) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct trace whole, pieces, assembled;
    static uint8_t msg[FUZZ_MSG_MAX];

    if (size < 1)
        return 0;
    enum wsread_role role = (data[0] & 1) ? WSREAD_SERVER : WSREAD_CLIENT;
    uint64_t max = (data[0] & 2) ? 200 : FUZZ_MSG_MAX;
    size_t piece = 1 + ((data[0] >> 2) & 15);
    data++;
    size--;
    read_all(&whole, role, max, NULL, data, size, size ? size : 1);
    read_all(&pieces, role, max, NULL, data, size, piece);
    CHECK(same(&whole, &pieces));
    if (max == FUZZ_MSG_MAX) {
        read_all(&assembled, role, max, msg, data, size, piece);
        CHECK(same(&whole, &assembled));
    }
    return 0;
}
