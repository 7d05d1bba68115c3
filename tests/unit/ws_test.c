/* WebSocket codec tests (RFC 6455 examples, lengths, roles, masking). */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "proto/ws.h"
#include "tests/unit/guard.h"

static int parse(const void *bytes, size_t len, struct ws_frame *f)
{
    struct guard g = {0};
    const uint8_t *p = (const uint8_t *)guard_put(&g, bytes, len);
    int r = ws_parse_header(p, len, f);
    guard_free(&g);
    return r;
}

Test(ws, accept_rfc_example)
{
    char out[WS_ACCEPT_LEN + 1];
    cr_assert_eq(ws_accept("dGhlIHNhbXBsZSBub25jZQ==", 24, out), 0);
    cr_assert_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

Test(ws, accept_rejects_bad_keys)
{
    char out[WS_ACCEPT_LEN + 1];
    cr_assert_eq(ws_accept("dGhlIHNhbXBsZSBub25jZQ=", 23, out), -EINVAL);
    cr_assert_eq(ws_accept("dGhlIHNhbXBsZSBub25jZQ===", 25, out), -EINVAL);
    cr_assert_eq(ws_accept("dGhlIHNhbXBsZSBub25jZ!==", 24, out), -EINVAL);
    cr_assert_eq(ws_accept("dGhlIHNhbXBsZSBub25jZQQQ", 24, out), -EINVAL);
}

Test(ws, key_valid)
{
    cr_assert_eq(ws_key_valid("dGhlIHNhbXBsZSBub25jZQ==", 24), 1);
    cr_assert_eq(ws_key_valid("4LdgYw3N/tMd6DDaQv/blg==", 24), 1);
    cr_assert_eq(ws_key_valid("4LdgYw3N+tMd6DDaQv+blg==", 24), 1);
    cr_assert_eq(ws_key_valid("", 0), 0);
    cr_assert_eq(ws_key_valid(NULL, 24), 0);
    cr_assert_eq(ws_key_valid("4LdgYw3N tMd6DDaQv/blg==", 24), 0);
    cr_assert_eq(ws_key_valid("4LdgYw3N/tMd6DDaQv/bl===", 24), 0); /* 15 bytes */
    cr_assert_eq(ws_key_valid("4LdgYw3N/tMd6DDaQv/blgA=", 24), 0); /* 17 bytes */
    /* Length is honoured: a longer buffer with a valid prefix is refused. */
    cr_assert_eq(ws_key_valid("dGhlIHNhbXBsZSBub25jZQ==x", 25), 0);
}

Test(ws, key_new)
{
    char a[WS_KEY_LEN + 1], b[WS_KEY_LEN + 1], acc[WS_ACCEPT_LEN + 1];
    cr_assert_eq(ws_key_new(a), 0);
    cr_assert_eq(ws_key_new(b), 0);
    cr_assert_eq(strlen(a), WS_KEY_LEN);
    cr_assert_eq(ws_key_valid(a, WS_KEY_LEN), 1);
    cr_assert_str_neq(a, b);
    cr_assert_eq(ws_accept(a, WS_KEY_LEN, acc), 0);
    cr_assert_eq(strlen(acc), WS_ACCEPT_LEN);
}

Test(ws, rfc_examples)
{
    static const uint8_t text[] = {0x81, 0x05, 'H', 'e', 'l', 'l', 'o'};
    static const uint8_t masked[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                     0x7f, 0x9f, 0x4d, 0x51, 0x58};
    static const uint8_t ping[] = {0x89, 0x05, 'H', 'e', 'l', 'l', 'o'};
    static const uint8_t frag[] = {0x01, 0x03, 'H', 'e', 'l'};
    struct ws_frame f;

    cr_assert_eq(parse(text, sizeof(text), &f), 2);
    cr_assert(f.fin && f.opcode == WS_OP_TEXT && !f.masked && f.len == 5 && f.header_len == 2);
    cr_assert_eq(parse(masked, sizeof(masked), &f), 6);
    cr_assert(f.masked && f.len == 5);
    uint8_t payload[5];
    memcpy(payload, masked + 6, 5);
    ws_unmask(payload, 5, f.mask, 0);
    cr_assert(memcmp(payload, "Hello", 5) == 0);
    cr_assert_eq(parse(ping, sizeof(ping), &f), 2);
    cr_assert_eq(f.opcode, WS_OP_PING);
    cr_assert_eq(parse(frag, sizeof(frag), &f), 2);
    cr_assert(!f.fin && f.opcode == WS_OP_TEXT);
}

/* Build and parse back, with and without a mask, and at every split. */
static void roundtrip(uint64_t len, size_t want_hlen)
{
    static const uint8_t mask[4] = {1, 2, 3, 4};
    uint8_t hdr[WS_MAX_HEADER];
    struct ws_frame f;

    for (int m = 0; m < 2; m++) {
        size_t n = ws_build_header(hdr, WS_OP_BINARY, true, len, m ? mask : NULL);
        cr_assert_eq(n, want_hlen + (m ? 4 : 0), "len %llu mask %d", (unsigned long long)len, m);
        cr_assert_eq(parse(hdr, n, &f), (int)n);
        cr_assert_eq(f.len, len);
        cr_assert_eq(f.header_len, n);
        cr_assert_eq(f.masked, (bool)m);
        cr_assert(f.fin && f.opcode == WS_OP_BINARY);
        if (m)
            cr_assert(memcmp(f.mask, mask, 4) == 0);
        for (size_t i = 0; i < n; i++)
            cr_assert_eq(parse(hdr, i, &f), -2, "split %zu", i);
    }
}

Test(ws, length_encodings)
{
    roundtrip(0, 2);
    roundtrip(125, 2);
    roundtrip(126, 4);
    roundtrip(65535, 4);
    roundtrip(65536, 10);
    roundtrip(((uint64_t)1 << 63) - 1, 10);
}

Test(ws, non_fin_data_and_cont)
{
    uint8_t hdr[WS_MAX_HEADER];
    struct ws_frame f;
    size_t n = ws_build_header(hdr, WS_OP_CONT, false, 3, NULL);
    cr_assert_eq(hdr[0], 0x00);
    cr_assert_eq(parse(hdr, n, &f), 2);
    cr_assert(!f.fin && f.opcode == WS_OP_CONT);
}

Test(ws, invalid_headers)
{
    static const uint8_t bad[][2] = {
        {0x09, 0x00},               /* fragmented ping */
        {0x08, 0x00},               /* fragmented close */
        {0x0a, 0x00},               /* fragmented pong */
        {0x89, 0x7e},               /* ping with 16-bit length (> 125) */
        {0x88, 0x7f},               /* close with 64-bit length */
        {0xc1, 0x00},               /* RSV1 */
        {0xa1, 0x00},               /* RSV2 */
        {0x91, 0x00},               /* RSV3 */
        {0x83, 0x00},               /* reserved data opcodes */
        {0x87, 0x00}, {0x8b, 0x00}, /* reserved control opcodes */
        {0x8f, 0x00},
    };
    struct ws_frame f;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(parse(bad[i], 2, &f), -1, "case %zu", i);
    /* First-byte errors need no second byte. */
    cr_assert_eq(parse(bad[0], 1, &f), -1);
    cr_assert_eq(parse(bad[5], 1, &f), -1);
}

Test(ws, control_125_ok)
{
    uint8_t hdr[] = {0x89, 0x80 | 125, 0, 0, 0, 0};
    struct ws_frame f;
    cr_assert_eq(parse(hdr, sizeof(hdr), &f), 6);
    cr_assert_eq(f.len, 125);
}

Test(ws, top_bit_length)
{
    uint8_t hdr[] = {0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0};
    struct ws_frame f;
    cr_assert_eq(parse(hdr, sizeof(hdr), &f), -1);
    hdr[2] = 0x7f;
    cr_assert_eq(parse(hdr, sizeof(hdr), &f), 10);
}

Test(ws, check_roles_and_size)
{
    struct ws_frame masked = {.fin = true, .opcode = WS_OP_TEXT, .masked = true, .len = 100};
    struct ws_frame plain = {.fin = true, .opcode = WS_OP_TEXT, .masked = false, .len = 100};

    cr_assert_eq(ws_check(&masked, true, 100), 0);
    cr_assert_eq(ws_check(&plain, false, 100), 0);
    cr_assert_eq(ws_check(&plain, true, 100), WS_CLOSE_PROTOCOL);
    cr_assert_eq(ws_check(&masked, false, 100), WS_CLOSE_PROTOCOL);
    cr_assert_eq(ws_check(&masked, true, 99), WS_CLOSE_TOO_BIG);
    cr_assert_eq(ws_check(&plain, false, 0), WS_CLOSE_TOO_BIG);
    /* Role is checked before size. */
    cr_assert_eq(ws_check(&plain, true, 0), WS_CLOSE_PROTOCOL);
}

Test(ws, unmask_offsets)
{
    static const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    uint8_t orig[64], want[64], got[64];

    for (size_t i = 0; i < sizeof(orig); i++)
        orig[i] = (uint8_t)(i * 7 + 3);
    for (uint64_t off = 0; off < 9; off++) {
        for (size_t len = 0; len <= sizeof(orig); len++) {
            for (size_t i = 0; i < len; i++)
                want[i] = orig[i] ^ mask[(off + i) % 4];
            memcpy(got, orig, len);
            ws_unmask(got, len, mask, off);
            cr_assert(memcmp(got, want, len) == 0, "off %llu len %zu", (unsigned long long)off,
                      len);
        }
    }
}

Test(ws, unmask_in_pieces)
{
    static const uint8_t mask[4] = {9, 8, 7, 6};
    uint8_t whole[50], pieces[50];

    for (size_t i = 0; i < sizeof(whole); i++)
        whole[i] = pieces[i] = (uint8_t)i;
    ws_unmask(whole, sizeof(whole), mask, 0);
    for (size_t cut = 0; cut <= sizeof(pieces); cut++) {
        uint8_t tmp[50];
        memcpy(tmp, pieces, sizeof(tmp));
        ws_unmask(tmp, cut, mask, 0);
        ws_unmask(tmp + cut, sizeof(tmp) - cut, mask, cut);
        cr_assert(memcmp(tmp, whole, sizeof(tmp)) == 0, "cut %zu", cut);
    }
    /* Unmasking twice restores the data. */
    ws_unmask(whole, sizeof(whole), mask, 0);
    cr_assert(memcmp(whole, pieces, sizeof(whole)) == 0);
}

Test(ws, build_close)
{
    uint8_t out[WS_MAX_HEADER + WS_MAX_CONTROL];
    struct ws_frame f;
    size_t n = ws_build_close(out, WS_CLOSE_TOO_BIG, "too big", NULL);

    cr_assert_eq(n, 2 + 2 + 7);
    cr_assert_eq(out[0], 0x88);
    cr_assert_eq(out[1], 9);
    cr_assert_eq(out[2], 0x03);
    cr_assert_eq(out[3], 0xf1);
    cr_assert(memcmp(out + 4, "too big", 7) == 0);
    cr_assert_eq(parse(out, n, &f), 2);
    cr_assert_eq(ws_check(&f, false, WS_MAX_CONTROL), 0);
}

Test(ws, build_close_masked)
{
    static const uint8_t mask[4] = {0xaa, 0xbb, 0xcc, 0xdd};
    uint8_t out[WS_MAX_HEADER + WS_MAX_CONTROL];
    struct ws_frame f;
    size_t n = ws_build_close(out, WS_CLOSE_NORMAL, "", mask);

    cr_assert_eq(n, 2 + 4 + 2);
    cr_assert_eq(parse(out, n, &f), 6);
    cr_assert(f.masked);
    ws_unmask(out + 6, 2, f.mask, 0);
    cr_assert_eq(out[6], 0x03);
    cr_assert_eq(out[7], 0xe8);
}

Test(ws, build_close_long_reason_and_no_code)
{
    uint8_t out[WS_MAX_HEADER + WS_MAX_CONTROL];
    char reason[200];
    struct ws_frame f;

    memset(reason, 'r', sizeof(reason) - 1);
    reason[sizeof(reason) - 1] = '\0';
    size_t n = ws_build_close(out, WS_CLOSE_GOING_AWAY, reason, NULL);
    cr_assert_eq(n, 2 + WS_MAX_CONTROL);
    cr_assert_eq(parse(out, n, &f), 2);
    cr_assert_eq(f.len, WS_MAX_CONTROL);
    n = ws_build_close(out, 0, NULL, NULL);
    cr_assert_eq(n, 2);
    cr_assert_eq(out[1], 0);
}

Test(ws, non_minimal_lengths_refused)
{
    static const uint8_t l16[] = {0x82, 0x7e, 0x00, 0x7d};                   /* 125 in 16 bits */
    static const uint8_t l64[] = {0x82, 0x7f, 0, 0, 0, 0, 0, 0, 0xff, 0xff}; /* 65535 in 64 */
    static const uint8_t ok16[] = {0x82, 0x7e, 0x00, 0x7e};
    static const uint8_t ok64[] = {0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0};
    struct ws_frame f;

    cr_assert_eq(parse(l16, sizeof(l16), &f), -1);
    cr_assert_eq(parse(l64, sizeof(l64), &f), -1);
    cr_assert_eq(parse(ok16, sizeof(ok16), &f), 4);
    cr_assert_eq(f.len, 126);
    cr_assert_eq(parse(ok64, sizeof(ok64), &f), 10);
    cr_assert_eq(f.len, 65536);
}

Test(ws, build_frame)
{
    static const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    static const uint8_t rfc[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    uint8_t out[32];

    cr_assert_eq(ws_build_frame(out, sizeof(out), WS_OP_TEXT, true, "Hello", 5, mask), 11);
    cr_assert(memcmp(out, rfc, sizeof(rfc)) == 0);
    cr_assert_eq(ws_build_frame(out, sizeof(out), WS_OP_PONG, true, "Hello", 5, NULL), 7);
    cr_assert(memcmp(out, "\x8a\x05Hello", 7) == 0);
    cr_assert_eq(ws_build_frame(out, sizeof(out), WS_OP_PING, true, NULL, 0, NULL), 2);
    cr_assert_eq(ws_build_frame(out, 10, WS_OP_TEXT, true, "Hello", 5, mask), 0);
    cr_assert_eq(ws_build_frame(out, 1, WS_OP_TEXT, true, NULL, 0, NULL), 0);
}

Test(ws, mask_new)
{
    uint8_t a[4], b[4], c[4];

    cr_assert_eq(ws_mask_new(a), 0);
    cr_assert_eq(ws_mask_new(b), 0);
    cr_assert_eq(ws_mask_new(c), 0);
    cr_assert(memcmp(a, b, 4) != 0 || memcmp(b, c, 4) != 0);
}
