/* Strict incremental UTF-8 validation: whole, byte by byte, every split. */
#include <criterion/criterion.h>
#include <string.h>

#include "proto/utf8.h"
#include "tests/unit/guard.h"

/* 1 valid, 0 invalid, fed every way; each piece before a guard page. */
static int check(const char *s)
{
    size_t n = strlen(s);
    struct guard g = {0};
    const uint8_t *p = (const uint8_t *)guard_put(&g, s, n);
    int whole = utf8_valid(p, n);
    guard_free(&g);

    for (size_t cut = 0; cut <= n; cut++) {
        struct utf8 u;
        utf8_init(&u);
        p = (const uint8_t *)guard_put(&g, s, cut);
        int ok = utf8_feed(&u, p, cut) == 0;
        guard_free(&g);
        p = (const uint8_t *)guard_put(&g, s + cut, n - cut);
        ok = ok && utf8_feed(&u, p, n - cut) == 0 && utf8_complete(&u);
        guard_free(&g);
        cr_assert_eq(ok, whole, "%s split at %zu", s, cut);
    }
    struct utf8 u = {0};
    int ok = 1;
    for (size_t i = 0; i < n && ok; i++)
        ok = utf8_feed(&u, (const uint8_t *)s + i, 1) == 0;
    cr_assert_eq(ok && utf8_complete(&u), whole, "%s byte by byte", s);
    return whole;
}

Test(utf8, valid)
{
    static const char *ok[] = {
        "",
        "plain ascii that is longer than one word, several words long",
        "\xc2\x80",
        "\xdf\xbf",
        "\xe0\xa0\x80",
        "\xed\x9f\xbf",
        "\xee\x80\x80",
        "\xef\xbf\xbf",
        "\xf0\x90\x80\x80",
        "\xf4\x8f\xbf\xbf",
        "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 !",
        "12345678\xc3\xa9-12345678",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        cr_assert_eq(check(ok[i]), 1, "case %zu", i);
}

Test(utf8, invalid)
{
    static const char *bad[] = {
        "\x80", /* lone continuation */
        "\xbf",
        "\xc0\x80",     /* overlong NUL */
        "\xc1\xbf",     /* overlong */
        "\xe0\x80\x80", /* overlong 3 */
        "\xe0\x9f\xbf",
        "\xed\xa0\x80",     /* surrogate D800 */
        "\xed\xbf\xbf",     /* surrogate DFFF */
        "\xf0\x80\x80\x80", /* overlong 4 */
        "\xf0\x8f\xbf\xbf",
        "\xf4\x90\x80\x80", /* above U+10FFFF */
        "\xf5\x80\x80\x80",
        "\xff",
        "\xfe",
        "\xc3", /* truncated */
        "\xe2\x82",
        "\xf0\x9f\x98",
        "\xc3\x28", /* bad continuation */
        "abcdefgh\xc3",
        "abcdefghijklmnop\x80",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(check(bad[i]), 0, "case %zu", i);
}

Test(utf8, incomplete_is_not_invalid_yet)
{
    struct utf8 u;
    utf8_init(&u);
    cr_assert_eq(utf8_feed(&u, (const uint8_t *)"ab\xf0\x9f", 4), 0);
    cr_assert_not(utf8_complete(&u));
    cr_assert_eq(utf8_feed(&u, (const uint8_t *)"\x98", 1), 0);
    cr_assert_eq(utf8_feed(&u, (const uint8_t *)"\x80", 1), 0);
    cr_assert(utf8_complete(&u));
}
