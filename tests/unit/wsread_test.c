/* Incremental WebSocket reader: every rule of RFC 6455 it enforces, fed
 * whole, byte by byte and split at every point, each piece ending at a
 * PROT_NONE guard page; DATA pieces and assembled messages must agree. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "proto/wsread.h"
#include "tests/unit/guard.h"

#define LOG_MAX 4096
#define BIG 70000

static const uint8_t MASK[4] = {0x11, 0x22, 0x33, 0x44};

/* What a reader reported, as text: "T:Hello;ping:x;close:1000:bye;error:1002;". */
struct log {
    char s[LOG_MAX];
    size_t n;
    uint8_t msg[BIG + 16]; /* DATA pieces of the open message */
    size_t msg_len;
    bool open;
    uint8_t op;
};

static void put(struct log *lg, const char *s)
{
    size_t n = strlen(s);
    cr_assert_lt(lg->n + n, sizeof(lg->s), "log overflow");
    memcpy(lg->s + lg->n, s, n + 1);
    lg->n += n;
}

/* Payload bytes, non-printable ones as \xNN. */
static void put_bytes(struct log *lg, const uint8_t *p, size_t len)
{
    char one[8];
    for (size_t i = 0; i < len; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7f)
            snprintf(one, sizeof(one), "%c", p[i]);
        else
            snprintf(one, sizeof(one), "\\x%02x", p[i]);
        put(lg, one);
    }
}

static void put_num(struct log *lg, const char *fmt, unsigned long v)
{
    char num[32];
    snprintf(num, sizeof(num), fmt, v);
    put(lg, num);
}

static void message(struct log *lg, uint8_t op, const uint8_t *p, size_t len)
{
    put(lg, op == WS_OP_TEXT ? "T:" : "B:");
    if (len > 64) { /* big messages: length and last bytes */
        put_num(lg, "%lu..", len);
        p += len - 4;
        len = 4;
    }
    put_bytes(lg, p, len);
    put(lg, ";");
}

static void record(struct log *lg, const struct wsread_ev *ev)
{
    switch (ev->type) {
    case WSREAD_MORE:
        return;
    case WSREAD_DATA:
        cr_assert(!lg->open || lg->op == ev->opcode, "opcode changed inside a message");
        cr_assert_leq(lg->msg_len + ev->len, sizeof(lg->msg));
        if (ev->len)
            memcpy(lg->msg + lg->msg_len, ev->data, ev->len);
        lg->msg_len += ev->len;
        lg->open = !ev->fin;
        lg->op = ev->opcode;
        if (ev->fin) {
            message(lg, ev->opcode, lg->msg, lg->msg_len);
            lg->msg_len = 0;
        }
        return;
    case WSREAD_MESSAGE:
        message(lg, ev->opcode, ev->data, ev->len);
        return;
    case WSREAD_PING:
    case WSREAD_PONG:
        put(lg, ev->type == WSREAD_PING ? "ping:" : "pong:");
        put_bytes(lg, ev->data, ev->len);
        put(lg, ";");
        return;
    case WSREAD_CLOSE:
        put_num(lg, "close:%lu:", ev->code);
        put_bytes(lg, ev->data, ev->len);
        put(lg, ";");
        return;
    case WSREAD_ERROR:
        put_num(lg, "error:%lu;", ev->code);
        return;
    }
}

/* Feed one piece, placed right before a guard page, until it is consumed. */
static void feed_piece(struct wsread *r, struct log *lg, const uint8_t *src, size_t n)
{
    struct guard g = {0};
    uint8_t *p = (uint8_t *)guard_put(&g, src, n);

    for (;;) {
        struct wsread_ev ev;
        size_t used = wsread_feed(r, p, n, &ev);

        cr_assert_leq(used, n);
        if (ev.type == WSREAD_MORE)
            cr_assert_eq(used, n, "MORE must consume everything");
        else
            cr_assert(used > 0 || ev.type == WSREAD_ERROR, "an event consumed nothing");
        record(lg, &ev);
        p += used;
        n -= used;
        if (ev.type == WSREAD_MORE || n == 0)
            break;
    }
    guard_free(&g);
}

static uint8_t msgbuf[BIG + 16];

/* Feed in chunks of `chunk` bytes (0: whole), or split once at `split`. */
static void run(struct log *lg, enum wsread_role role, uint64_t max, bool assemble,
                const uint8_t *in, size_t len, size_t chunk, size_t split)
{
    struct wsread r;

    memset(lg, 0, sizeof(*lg));
    wsread_init(&r, role, max, assemble ? msgbuf : NULL, assemble ? sizeof(msgbuf) : 0);
    if (split) {
        feed_piece(&r, lg, in, split);
        feed_piece(&r, lg, in + split, len - split);
    } else {
        for (size_t off = 0; off < len || off == 0;) {
            size_t n = chunk && len - off > chunk ? chunk : len - off;
            feed_piece(&r, lg, in + off, n);
            off += n;
            if (n == 0)
                break;
        }
    }
    if (wsread_done(&r)) { /* input after the end is swallowed silently */
        size_t before = lg->n;
        feed_piece(&r, lg, (const uint8_t *)"\x81\x00", 2);
        cr_assert_eq(lg->n, before);
    }
}

/* Every way of feeding `in` reports exactly `want`. */
static void expect(enum wsread_role role, uint64_t max, const uint8_t *in, size_t len,
                   const char *want)
{
    static struct log lg;

    for (int a = 0; a < 2; a++) {
        run(&lg, role, max, a, in, len, 0, 0);
        cr_assert_str_eq(lg.s, want, "whole, assemble=%d: got %s", a, lg.s);
        run(&lg, role, max, a, in, len, 1, 0);
        cr_assert_str_eq(lg.s, want, "byte by byte, assemble=%d", a);
        run(&lg, role, max, a, in, len, 7, 0);
        cr_assert_str_eq(lg.s, want, "7-byte chunks, assemble=%d", a);
        for (size_t s = 1; len < 600 && s < len; s++) {
            run(&lg, role, max, a, in, len, 0, s);
            cr_assert_str_eq(lg.s, want, "split at %zu, assemble=%d", s, a);
        }
    }
}

/* Frame builders for the tests: client frames are masked (MASK). */
struct wire {
    uint8_t b[BIG + 256];
    size_t n;
};

static void add(struct wire *w, uint8_t op, bool fin, bool masked, const void *p, size_t len)
{
    size_t n =
        ws_build_frame(w->b + w->n, sizeof(w->b) - w->n, op, fin, p, len, masked ? MASK : NULL);
    cr_assert_gt(n, 0);
    w->n += n;
}

static void cadd(struct wire *w, uint8_t op, bool fin, const char *s)
{
    add(w, op, fin, true, s, strlen(s));
}

static void expect_srv(const struct wire *w, const char *want)
{
    expect(WSREAD_SERVER, 1 << 20, w->b, w->n, want);
}

Test(wsread, masked_text_to_server_and_plain_to_client)
{
    struct wire w = {0};
    cadd(&w, WS_OP_TEXT, true, "Hello");
    add(&w, WS_OP_BINARY, true, true, "\x00\xff", 2);
    expect_srv(&w, "T:Hello;B:\\x00\\xff;");
    /* The RFC's own masked example. */
    static const uint8_t rfc[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    expect(WSREAD_SERVER, 100, rfc, sizeof(rfc), "T:Hello;");
    struct wire c = {0};
    add(&c, WS_OP_TEXT, true, false, "{\"id\":\"x\"}", 10);
    expect(WSREAD_CLIENT, 100, c.b, c.n, "T:{\"id\":\"x\"};");
}

Test(wsread, mask_bit_must_match_the_role)
{
    struct wire w = {0};
    add(&w, WS_OP_TEXT, true, false, "hi", 2);
    expect_srv(&w, "error:1002;");
    struct wire c = {0};
    cadd(&c, WS_OP_TEXT, true, "hi");
    expect(WSREAD_CLIENT, 100, c.b, c.n, "error:1002;");
    /* Control frames too. */
    struct wire p = {0};
    add(&p, WS_OP_PING, true, false, "x", 1);
    expect_srv(&p, "error:1002;");
}

Test(wsread, fragments_with_control_frames_between)
{
    struct wire w = {0};
    cadd(&w, WS_OP_TEXT, false, "Hel");
    cadd(&w, WS_OP_PING, true, "p1");
    cadd(&w, WS_OP_CONT, false, "");
    cadd(&w, WS_OP_PONG, true, "");
    cadd(&w, WS_OP_CONT, true, "lo");
    cadd(&w, WS_OP_BINARY, false, "ab");
    cadd(&w, WS_OP_CONT, true, "c");
    expect_srv(&w, "ping:p1;pong:;T:Hello;B:abc;");
}

Test(wsread, empty_messages)
{
    struct wire w = {0};
    cadd(&w, WS_OP_TEXT, true, "");
    cadd(&w, WS_OP_BINARY, false, "");
    cadd(&w, WS_OP_CONT, true, "");
    expect_srv(&w, "T:;B:;");
}

Test(wsread, continuation_rules)
{
    struct wire a = {0};
    cadd(&a, WS_OP_CONT, true, "x"); /* no message open */
    expect_srv(&a, "error:1002;");
    struct wire b = {0};
    cadd(&b, WS_OP_TEXT, false, "x");
    cadd(&b, WS_OP_TEXT, true, "y"); /* new message inside one */
    expect_srv(&b, "error:1002;");
    struct wire c = {0};
    cadd(&c, WS_OP_TEXT, false, "x");
    cadd(&c, WS_OP_BINARY, true, "y");
    expect_srv(&c, "error:1002;");
    struct wire d = {0};
    cadd(&d, WS_OP_TEXT, true, "x");
    cadd(&d, WS_OP_CONT, false, "y"); /* after the message ended */
    expect_srv(&d, "T:x;error:1002;");
}

Test(wsread, reserved_bits_and_opcodes)
{
    static const uint8_t first[] = {0xc1, 0xa1, 0x91, 0x83, 0x84, 0x85, 0x86,
                                    0x87, 0x8b, 0x8c, 0x8d, 0x8e, 0x8f};
    for (size_t i = 0; i < sizeof(first); i++) {
        uint8_t f[] = {first[i], 0x80, 1, 2, 3, 4};
        expect(WSREAD_SERVER, 100, f, sizeof(f), "error:1002;");
    }
}

Test(wsread, control_frame_limits)
{
    uint8_t payload[126];
    memset(payload, 'p', sizeof(payload));
    struct wire a = {0};
    add(&a, WS_OP_PING, true, true, payload, 125);
    char want[140] = "ping:";
    memcpy(want + 5, payload, 125);
    memcpy(want + 130, ";", 2);
    expect_srv(&a, want);
    struct wire b = {0};
    add(&b, WS_OP_PING, true, true, payload, 126); /* 16-bit length */
    expect_srv(&b, "error:1002;");
    struct wire c = {0};
    add(&c, WS_OP_PONG, false, true, "x", 1); /* fragmented */
    expect_srv(&c, "error:1002;");
    struct wire d = {0};
    add(&d, WS_OP_CLOSE, false, true, "\x03\xe8", 2);
    expect_srv(&d, "error:1002;");
}

Test(wsread, non_minimal_lengths)
{
    /* 5 bytes in a 16-bit length, 200 in a 64-bit one, top bit set. */
    static const uint8_t l16[] = {0x82, 0xfe, 0x00, 0x05, 1, 2, 3, 4, 'a', 'b', 'c', 'd', 'e'};
    static const uint8_t l64[] = {0x82, 0xff, 0, 0, 0, 0, 0, 0, 0, 200, 1, 2, 3, 4};
    static const uint8_t l64b[] = {0x82, 0xff, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4};
    static const uint8_t top[] = {0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4};
    static const uint8_t l16ok[] = {0x82, 0xfe, 0x00, 0x7e, 1, 2, 3, 4};
    expect(WSREAD_SERVER, 100, l16, sizeof(l16), "error:1002;");
    expect(WSREAD_SERVER, 1000, l64, sizeof(l64), "error:1002;");
    expect(WSREAD_SERVER, 100000, l64b, sizeof(l64b), "error:1002;");
    expect(WSREAD_SERVER, 100, top, sizeof(top), "error:1002;");
    /* 126 in 16 bits is minimal: not an error, only incomplete. */
    expect(WSREAD_SERVER, 1000, l16ok, sizeof(l16ok), "");
}

Test(wsread, close_without_code_and_with_reason)
{
    struct wire a = {0};
    cadd(&a, WS_OP_CLOSE, true, "");
    expect_srv(&a, "close:1005:;");
    struct wire b = {0};
    add(&b, WS_OP_CLOSE, true, true,
        "\x03\xe8"
        "bye",
        5);
    expect_srv(&b, "close:1000:bye;");
    struct wire c = {0};
    add(&c, WS_OP_CLOSE, true, true, "\x03", 1); /* 1-byte payload */
    expect_srv(&c, "error:1002;");
    struct wire d = {0};
    add(&d, WS_OP_CLOSE, true, true,
        "\x03\xe8"
        "\xc3\xa9t\xc3\xa9",
        7); /* UTF-8 reason */
    expect_srv(&d, "close:1000:\\xc3\\xa9t\\xc3\\xa9;");
}

static void close_code(unsigned code, const char *want)
{
    struct wire w = {0};
    uint8_t p[2] = {(uint8_t)(code >> 8), (uint8_t)code};
    add(&w, WS_OP_CLOSE, true, true, p, 2);
    expect_srv(&w, want);
}

Test(wsread, close_codes)
{
    static const unsigned ok[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010,
                                  1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999};
    static const unsigned bad[] = {0,    1,    999,  1004, 1005, 1006, 1015,
                                   1016, 1100, 2000, 2999, 5000, 65535};
    char want[64];
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        snprintf(want, sizeof(want), "close:%u:;", ok[i]);
        close_code(ok[i], want);
        cr_assert(ws_close_code_valid((uint16_t)ok[i]), "%u", ok[i]);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        close_code(bad[i], "error:1002;");
        cr_assert(!ws_close_code_valid((uint16_t)bad[i]), "%u", bad[i]);
    }
}

Test(wsread, close_reason_must_be_utf8)
{
    static const char *bad[] = {"\xff", "\xc3", "\xc0\x80", "\xed\xa0\x80", "ok\xf4\x90\x80\x80"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct wire w = {0};
        uint8_t p[16] = {0x03, 0xe8};
        size_t n = strlen(bad[i]);
        memcpy(p + 2, bad[i], n);
        add(&w, WS_OP_CLOSE, true, true, p, n + 2);
        expect_srv(&w, "error:1007;");
    }
}

Test(wsread, text_must_be_utf8)
{
    struct wire a = {0};
    cadd(&a, WS_OP_TEXT, true, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    expect_srv(&a, "T:caf\\xc3\\xa9 \\xe2\\x82\\xac \\xf0\\x9f\\x98\\x80;");
    /* A character cut between two fragments is fine. */
    struct wire b = {0};
    cadd(&b, WS_OP_TEXT, false, "caf\xc3");
    cadd(&b, WS_OP_PING, true, "");
    cadd(&b, WS_OP_CONT, true, "\xa9");
    expect_srv(&b, "ping:;T:caf\\xc3\\xa9;");
    /* ... but not a message that ends inside one. */
    struct wire c = {0};
    cadd(&c, WS_OP_TEXT, false, "caf");
    cadd(&c, WS_OP_CONT, true, "\xc3");
    expect_srv(&c, "error:1007;");
    /* Binary messages are not checked. */
    struct wire d = {0};
    cadd(&d, WS_OP_BINARY, true, "\xff\xc0\x80");
    expect_srv(&d, "B:\\xff\\xc0\\x80;");
}

Test(wsread, invalid_utf8_fails_before_the_message_ends)
{
    /* An overlong NUL in the first fragment: 1007 at once, no need for FIN. */
    struct wire w = {0};
    cadd(&w, WS_OP_TEXT, false, "ab\xc0\x80");
    expect_srv(&w, "error:1007;");
    static const char *bad[] = {
        "\x80", "\xc1\xbf", "\xe0\x9f\xbf", "\xed\xbf\xbf", "\xf0\x8f\xbf\xbf", "\xf4\x90\x80\x80",
        "\xf5", "\xfe"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct wire v = {0};
        cadd(&v, WS_OP_TEXT, false, bad[i]);
        expect_srv(&v, "error:1007;");
    }
}

Test(wsread, size_limits)
{
    uint8_t p[100];
    memset(p, 'z', sizeof(p));
    struct wire a = {0};
    add(&a, WS_OP_BINARY, true, true, p, 100);
    expect(WSREAD_SERVER, 100, a.b, a.n, "B:100..zzzz;");
    expect(WSREAD_SERVER, 99, a.b, a.n, "error:1009;");
    /* The message counts, not only the frame. */
    struct wire b = {0};
    add(&b, WS_OP_TEXT, false, true, p, 60);
    add(&b, WS_OP_CONT, true, true, p, 40);
    expect(WSREAD_SERVER, 100, b.b, b.n, "T:100..zzzz;");
    expect(WSREAD_SERVER, 99, b.b, b.n, "error:1009;");
    /* A 64-bit length near the top is refused from the header alone. */
    static const uint8_t huge[] = {0x82, 0x7f, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    expect(WSREAD_CLIENT, 1 << 20, huge, sizeof(huge), "error:1009;");
}

Test(wsread, message_buffer_caps_the_limit)
{
    uint8_t small[8], p[9] = "123456789";
    struct wire w = {0};
    struct wsread r;
    struct wsread_ev ev;

    add(&w, WS_OP_TEXT, true, false, p, 9);
    wsread_init(&r, WSREAD_CLIENT, 1000, small, sizeof(small));
    cr_assert_eq(wsread_feed(&r, w.b, w.n, &ev), 2);
    cr_assert_eq(ev.type, WSREAD_ERROR);
    cr_assert_eq(ev.code, WS_CLOSE_TOO_BIG);
    cr_assert(wsread_done(&r));
    w.n = 0;
    add(&w, WS_OP_TEXT, true, false, p, 8);
    wsread_init(&r, WSREAD_CLIENT, 1000, small, sizeof(small));
    cr_assert_eq(wsread_feed(&r, w.b, w.n, &ev), w.n);
    cr_assert_eq(ev.type, WSREAD_MESSAGE);
    cr_assert_eq(ev.data, small);
    cr_assert(memcmp(small, p, 8) == 0);
}

Test(wsread, big_frames_with_64_bit_lengths)
{
    static struct wire w;
    static uint8_t p[BIG];
    for (size_t i = 0; i < BIG; i++)
        p[i] = (uint8_t)('a' + i % 26);
    w.n = 0;
    add(&w, WS_OP_TEXT, true, true, p, BIG);
    cadd(&w, WS_OP_PING, true, "after");
    char want[64];
    snprintf(want, sizeof(want), "T:%d..%.4s;ping:after;", BIG, (const char *)p + BIG - 4);
    expect(WSREAD_SERVER, BIG, w.b, w.n, want);
    expect(WSREAD_SERVER, BIG - 1, w.b, w.n, "error:1009;");
}

Test(wsread, nothing_after_close)
{
    struct wire w = {0};
    cadd(&w, WS_OP_CLOSE, true, "\x03\xe9");
    cadd(&w, WS_OP_TEXT, true, "ignored");
    cadd(&w, WS_OP_PING, true, "ignored");
    expect_srv(&w, "close:1001:;");
}

Test(wsread, event_points_into_the_input_and_unmasks_in_place)
{
    struct wire w = {0};
    struct wsread r;
    struct wsread_ev ev;

    cadd(&w, WS_OP_TEXT, true, "abcdef");
    wsread_init(&r, WSREAD_SERVER, 100, NULL, 0);
    cr_assert_eq(wsread_feed(&r, w.b, 9, &ev), 9); /* header + 3 bytes */
    cr_assert_eq(ev.type, WSREAD_DATA);
    cr_assert_not(ev.fin);
    cr_assert_eq(ev.data, w.b + 6);
    cr_assert(memcmp(w.b + 6, "abc", 3) == 0);
    cr_assert_eq(wsread_feed(&r, w.b + 9, w.n - 9, &ev), 3);
    cr_assert(ev.type == WSREAD_DATA && ev.fin && ev.len == 3 && ev.opcode == WS_OP_TEXT);
    cr_assert(memcmp(ev.data, "def", 3) == 0);
    cr_assert_eq(wsread_feed(&r, w.b, 0, &ev), 0);
    cr_assert_eq(ev.type, WSREAD_MORE);
}
