/* libFuzzer: WebSocket frame headers, role checks, masking. A parsed header
 * rebuilt with ws_build_header parses back to the same frame. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/ws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) ((c) ? (void)0 : __builtin_trap())

static void check_unmask(const uint8_t *payload, size_t n, const uint8_t mask[4])
{
    uint8_t *whole = malloc(n ? n : 1), *parts = malloc(n ? n : 1);
    if (whole == NULL || parts == NULL)
        goto out;
    memcpy(whole, payload, n);
    memcpy(parts, payload, n);
    ws_unmask(whole, n, mask, 0);
    size_t cut = n / 3;
    ws_unmask(parts, cut, mask, 0);
    ws_unmask(parts + cut, n - cut, mask, cut);
    CHECK(memcmp(whole, parts, n) == 0);
out:
    free(whole);
    free(parts);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = malloc(size ? size : 1);
    struct ws_frame f, g;
    uint8_t hdr[WS_MAX_HEADER];

    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    int r = ws_parse_header(buf, size, &f);
    CHECK(r == -1 || r == -2 || (r >= 2 && r <= WS_MAX_HEADER && (size_t)r <= size));
    if (r > 0) {
        CHECK((size_t)r == f.header_len);
        CHECK(!(f.opcode & 0x8) || (f.fin && f.len <= WS_MAX_CONTROL));
        int c1 = ws_check(&f, true, 1 << 20), c2 = ws_check(&f, false, 1 << 20);
        CHECK(c1 == 0 || c1 == WS_CLOSE_PROTOCOL || c1 == WS_CLOSE_TOO_BIG);
        CHECK(c2 == 0 || c2 == WS_CLOSE_PROTOCOL || c2 == WS_CLOSE_TOO_BIG);
        size_t n = ws_build_header(hdr, f.opcode, f.fin, f.len, f.masked ? f.mask : NULL);
        CHECK(n == (size_t)r); /* both minimal: non-minimal input is refused */
        CHECK(ws_parse_header(hdr, n, &g) == (int)n);
        CHECK(g.fin == f.fin && g.opcode == f.opcode && g.masked == f.masked && g.len == f.len);
        CHECK(!f.masked || memcmp(g.mask, f.mask, 4) == 0);
        check_unmask(buf + r, size - (size_t)r, f.mask);
        for (size_t i = 0; i < (size_t)r; i++)
            CHECK(ws_parse_header(buf, i, &g) == -2 || ws_parse_header(buf, i, &g) == -1);
    }
    char acc[WS_ACCEPT_LEN + 1];
    int a = ws_accept((const char *)buf, size, acc);
    CHECK(a == 0 ? ws_key_valid((const char *)buf, size) : !ws_key_valid((const char *)buf, size));
    free(buf);
    return 0;
}
