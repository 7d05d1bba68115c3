/* WebSocket frame codec and handshake helpers (see ws.h). */
#include "proto/ws.h"

#include <errno.h>
#include <string.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/coding.h>
#include <wolfssl/wolfcrypt/hash.h>

#include "proto/rnd.h"

#define WS_FIN 0x80
#define WS_RSV_MASK 0x70
#define WS_OPCODE_MASK 0x0f
#define WS_CONTROL_BIT 0x08
#define WS_MASK_BIT 0x80
#define WS_LEN7_MASK 0x7f
#define WS_LEN16_MARK 126
#define WS_LEN64_MARK 127
#define WS_LEN16_MAX 0xffffu
#define WS_LEN16_LEN 2
#define WS_LEN64_LEN 8
#define WS_MASK_LEN 4
#define WS_CLOSE_CODE_LEN 2
#define WS_CLOSE_CODE_LAST_BASIC 1003 /* 1000-1003: normal .. unsupported data */
#define WS_CLOSE_CODE_LAST_IANA 1014  /* 1007-1014: registered; 1015 is reserved */
#define WS_CLOSE_CODE_APP_FIRST 3000  /* 3000-4999: libraries and applications */
#define WS_CLOSE_CODE_APP_LAST 4999
#define WS_CLOSE_REASON_MAX (WS_MAX_CONTROL - WS_CLOSE_CODE_LEN)
#define WS_GUID_LEN (sizeof(WS_GUID) - 1)
#define WS_NONCE_LEN 16
#define WS_SHA1_LEN 20
#define WS_B64_PAD_LEN 2 /* 16 bytes encode to 22 chars + "==" */
#define WS_B64_BUF 32    /* room for 28 chars; wolfSSL may also write a NUL */

static int opcode_known(uint8_t op)
{
    switch (op) {
    case WS_OP_CONT:
    case WS_OP_TEXT:
    case WS_OP_BINARY:
    case WS_OP_CLOSE:
    case WS_OP_PING:
    case WS_OP_PONG:
        return 1;
    default:
        return 0;
    }
}

static uint64_t read_be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;

    for (size_t i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

static void write_be(uint8_t *p, uint64_t v, size_t n)
{
    for (size_t i = n; i > 0; i--) {
        p[i - 1] = (uint8_t)v;
        v >>= 8;
    }
}

int ws_parse_header(const uint8_t *buf, size_t len, struct ws_frame *f)
{
    if (len < 1)
        return -2;
    uint8_t b0 = buf[0];
    uint8_t op = b0 & WS_OPCODE_MASK;
    bool control = (op & WS_CONTROL_BIT) != 0;
    /* Everything decidable from the first byte fails before waiting for more. */
    if ((b0 & WS_RSV_MASK) || !opcode_known(op) || (control && !(b0 & WS_FIN)))
        return -1;
    if (len < 2)
        return -2;
    uint8_t len7 = buf[1] & WS_LEN7_MASK;
    if (control && len7 > WS_MAX_CONTROL)
        return -1;
    size_t ext = len7 == WS_LEN16_MARK ? WS_LEN16_LEN : len7 == WS_LEN64_MARK ? WS_LEN64_LEN : 0;
    bool masked = (buf[1] & WS_MASK_BIT) != 0;
    size_t need = 2 + ext + (masked ? WS_MASK_LEN : 0);
    if (len < need)
        return -2;
    uint64_t plen = ext ? read_be(buf + 2, ext) : len7;
    if (plen >> 63)
        return -1;
    /* RFC 6455 5.2: "the minimal number of bytes MUST be used". */
    if ((ext == WS_LEN16_LEN && plen <= WS_MAX_CONTROL) ||
        (ext == WS_LEN64_LEN && plen <= WS_LEN16_MAX))
        return -1;
    f->fin = (b0 & WS_FIN) != 0;
    f->opcode = op;
    f->masked = masked;
    memset(f->mask, 0, sizeof(f->mask));
    if (masked)
        memcpy(f->mask, buf + 2 + ext, WS_MASK_LEN);
    f->len = plen;
    f->header_len = need;
    return (int)need;
}

int ws_check(const struct ws_frame *f, bool from_client, uint64_t max_payload)
{
    if (f->masked != from_client)
        return WS_CLOSE_PROTOCOL;
    if (f->len > max_payload)
        return WS_CLOSE_TOO_BIG;
    return 0;
}

void ws_unmask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t offset)
{
    uint8_t rot[sizeof(uint64_t)];
    size_t i = 0;

    /* An 8-byte mask word starting at this offset lets the bulk go by words. */
    for (size_t j = 0; j < sizeof(rot); j++)
        rot[j] = mask[(offset + j) & 3];
    uint64_t word;
    memcpy(&word, rot, sizeof(word));
    for (; i + sizeof(word) <= len; i += sizeof(word)) {
        uint64_t d;
        memcpy(&d, data + i, sizeof(d));
        d ^= word;
        memcpy(data + i, &d, sizeof(d));
    }
    for (; i < len; i++)
        data[i] ^= rot[i & 7];
}

size_t ws_build_header(uint8_t *out, uint8_t opcode, bool fin, uint64_t len, const uint8_t *mask)
{
    size_t n = 2;

    out[0] = (uint8_t)((fin ? WS_FIN : 0) | (opcode & WS_OPCODE_MASK));
    if (len <= WS_MAX_CONTROL) {
        out[1] = (uint8_t)len;
    } else if (len <= WS_LEN16_MAX) {
        out[1] = WS_LEN16_MARK;
        write_be(out + 2, len, WS_LEN16_LEN);
        n += WS_LEN16_LEN;
    } else {
        out[1] = WS_LEN64_MARK;
        write_be(out + 2, len, WS_LEN64_LEN);
        n += WS_LEN64_LEN;
    }
    if (mask) {
        out[1] |= WS_MASK_BIT;
        memcpy(out + n, mask, WS_MASK_LEN);
        n += WS_MASK_LEN;
    }
    return n;
}

size_t ws_build_frame(uint8_t *out, size_t cap, uint8_t opcode, bool fin, const void *payload,
                      size_t len, const uint8_t *mask)
{
    uint8_t hdr[WS_MAX_HEADER];
    size_t n = ws_build_header(hdr, opcode, fin, len, mask);

    if (cap < n || cap - n < len)
        return 0;
    memcpy(out, hdr, n);
    if (len == 0)
        return n;
    memcpy(out + n, payload, len);
    if (mask)
        ws_unmask(out + n, len, mask, 0);
    return n + len;
}

int ws_mask_new(uint8_t mask[4])
{
    return rnd_fill(mask, WS_MASK_LEN);
}

bool ws_close_code_valid(uint16_t code)
{
    return (code >= WS_CLOSE_NORMAL && code <= WS_CLOSE_CODE_LAST_BASIC) ||
           (code >= WS_CLOSE_INVALID_DATA && code <= WS_CLOSE_CODE_LAST_IANA) ||
           (code >= WS_CLOSE_CODE_APP_FIRST && code <= WS_CLOSE_CODE_APP_LAST);
}

size_t ws_build_close(uint8_t *out, uint16_t code, const char *reason, const uint8_t *mask)
{
    size_t rlen = reason ? strnlen(reason, WS_CLOSE_REASON_MAX) : 0;
    size_t plen = 0;

    if (code != 0)
        plen = WS_CLOSE_CODE_LEN + rlen;
    size_t n = ws_build_header(out, WS_OP_CLOSE, true, plen, mask);
    if (plen == 0)
        return n;
    write_be(out + n, code, WS_CLOSE_CODE_LEN);
    if (rlen)
        memcpy(out + n + WS_CLOSE_CODE_LEN, reason, rlen);
    if (mask)
        ws_unmask(out + n, plen, mask, 0);
    return n + plen;
}

static int is_b64(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

int ws_key_valid(const char *key, size_t key_len)
{
    if (key == NULL || key_len != WS_KEY_LEN)
        return 0;
    for (size_t i = 0; i < WS_KEY_LEN - WS_B64_PAD_LEN; i++) {
        if (!is_b64(key[i]))
            return 0;
    }
    return key[WS_KEY_LEN - 2] == '=' && key[WS_KEY_LEN - 1] == '=';
}

/* base64(bytes) into out: exactly want chars and a NUL, else -EINVAL. */
static int b64_exact(const uint8_t *in, size_t in_len, char *out, size_t want)
{
    byte enc[WS_B64_BUF];
    word32 enc_len = sizeof(enc);

    if (Base64_Encode_NoNl(in, (word32)in_len, enc, &enc_len) != 0 || enc_len != want)
        return -EINVAL;
    memcpy(out, enc, want);
    out[want] = '\0';
    return 0;
}

int ws_accept(const char *key, size_t key_len, char out[WS_ACCEPT_LEN + 1])
{
    uint8_t buf[WS_KEY_LEN + WS_GUID_LEN];
    uint8_t digest[WS_SHA1_LEN];

    if (!ws_key_valid(key, key_len))
        return -EINVAL;
    memcpy(buf, key, WS_KEY_LEN);
    memcpy(buf + WS_KEY_LEN, WS_GUID, WS_GUID_LEN);
    if (wc_ShaHash(buf, (word32)sizeof(buf), digest) != 0)
        return -EINVAL;
    return b64_exact(digest, sizeof(digest), out, WS_ACCEPT_LEN);
}

int ws_key_new(char out[WS_KEY_LEN + 1])
{
    uint8_t nonce[WS_NONCE_LEN];
    int r = rnd_fill(nonce, sizeof(nonce));

    return r < 0 ? r : b64_exact(nonce, sizeof(nonce), out, WS_KEY_LEN);
}
