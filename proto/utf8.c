/* Strict incremental UTF-8 validation (see utf8.h). */
#include "proto/utf8.h"

#include <string.h>

#define UTF8_CONT_LO 0x80
#define UTF8_CONT_HI 0xbf
#define UTF8_ASCII_WORD 0x8080808080808080ull

void utf8_init(struct utf8 *u)
{
    u->need = 0;
    u->lo = UTF8_CONT_LO;
    u->hi = UTF8_CONT_HI;
}

/* A lead byte: sets how many continuation bytes follow and the range of the
 * first one (the narrow ranges exclude overlong forms, surrogates and code
 * points above U+10FFFF; RFC 3629 section 4). 0 or -1. */
static int lead(struct utf8 *u, uint8_t b)
{
    u->lo = UTF8_CONT_LO;
    u->hi = UTF8_CONT_HI;
    if (b < 0xc2)
        return -1; /* stray continuation byte, or overlong 2-byte lead */
    if (b < 0xe0) {
        u->need = 1;
    } else if (b < 0xf0) {
        u->need = 2;
        if (b == 0xe0)
            u->lo = 0xa0; /* overlong */
        else if (b == 0xed)
            u->hi = 0x9f; /* surrogates U+D800..U+DFFF */
    } else if (b < 0xf5) {
        u->need = 3;
        if (b == 0xf0)
            u->lo = 0x90; /* overlong */
        else if (b == 0xf4)
            u->hi = 0x8f; /* above U+10FFFF */
    } else {
        return -1;
    }
    return 0;
}

int utf8_feed(struct utf8 *u, const uint8_t *p, size_t n)
{
    size_t i = 0;

    while (i < n) {
        if (u->need == 0) {
            uint64_t w;

            /* ASCII runs go by words. */
            while (i + sizeof(w) <= n) {
                memcpy(&w, p + i, sizeof(w));
                if (w & UTF8_ASCII_WORD)
                    break;
                i += sizeof(w);
            }
            if (i == n)
                break;
            if (p[i] < UTF8_CONT_LO) {
                i++;
                continue;
            }
            if (lead(u, p[i++]) < 0)
                return -1;
            continue;
        }
        if (p[i] < u->lo || p[i] > u->hi)
            return -1;
        i++;
        u->need--;
        u->lo = UTF8_CONT_LO;
        u->hi = UTF8_CONT_HI;
    }
    return 0;
}

bool utf8_complete(const struct utf8 *u)
{
    return u->need == 0;
}

int utf8_valid(const uint8_t *p, size_t n)
{
    struct utf8 u;

    utf8_init(&u);
    return utf8_feed(&u, p, n) == 0 && utf8_complete(&u);
}
