/* JSON bits: escaping, the notification object, the flat-object reader. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "proto/json.h"
#include "tests/unit/guard.h"

static int parse_notify(const char *s, size_t len, struct notify *n)
{
    struct guard g = {0};
    char *p = guard_put(&g, s, len);
    int r = notify_parse(p, len, n);
    guard_free(&g);
    return r;
}

static int get_string(const char *s, size_t len, const char *name, char *out, size_t cap)
{
    struct guard g = {0};
    char *p = guard_put(&g, s, len);
    int r = json_get_string(p, len, name, out, cap);
    guard_free(&g);
    return r;
}

Test(json, escape)
{
    char out[64];
    cr_assert_eq(json_escape(out, sizeof(out), "plain/path", 10), 10);
    cr_assert_str_eq(out, "plain/path");
    cr_assert_eq(json_escape(out, sizeof(out), "a\"b\\c", 5), 7);
    cr_assert_str_eq(out, "a\\\"b\\\\c");
    cr_assert_eq(json_escape(out, sizeof(out), "\n\x01\x1f", 3), 18);
    cr_assert_str_eq(out, "\\u000a\\u0001\\u001f");
    cr_assert_eq(json_escape(out, sizeof(out), "", 0), 0);
    cr_assert_str_eq(out, "");
    cr_assert_eq(json_escape(out, sizeof(out), "caf\xc3\xa9\x7f", 6), 6);
    /* Embedded NUL is escaped, not a terminator. */
    cr_assert_eq(json_escape(out, sizeof(out), "a\0b", 3), 8);
    cr_assert_str_eq(out, "a\\u0000b");
}

Test(json, escape_cap)
{
    char out[16];
    cr_assert_eq(json_escape(out, 0, "", 0), -1);
    cr_assert_eq(json_escape(out, 1, "", 0), 0);
    cr_assert_eq(json_escape(out, 3, "abc", 3), -1);
    cr_assert_eq(json_escape(out, 4, "abc", 3), 3);
    cr_assert_eq(json_escape(out, 2, "\"", 1), -1);
    cr_assert_eq(json_escape(out, 3, "\"", 1), 2);
    cr_assert_eq(json_escape(out, 6, "\n", 1), -1);
    cr_assert_eq(json_escape(out, 7, "\n", 1), 6);
}

Test(json, notify_build_exact)
{
    char out[NOTIFY_MAX];
    const char *want = "{\"ipaddr\":\"127.0.0.1:57216\",\"id\":\"abc\",\"timeout\":60}";
    cr_assert_eq(notify_build(out, sizeof(out), "127.0.0.1:57216", "abc", 3, 60),
                 (int)strlen(want));
    cr_assert_str_eq(out, want);
    want = "{\"ipaddr\":\"[::1]:9\",\"id\":\"a\\\"b\\\\c\\u0001\",\"timeout\":86400}";
    cr_assert_eq(notify_build(out, sizeof(out), "[::1]:9", "a\"b\\c\x01", 6, 86400),
                 (int)strlen(want));
    cr_assert_str_eq(out, want);
    /* id_len bounds the id. */
    cr_assert_gt(notify_build(out, sizeof(out), "1.2.3.4:5", "abcdef", 2, 61), 0);
    cr_assert_str_eq(out, "{\"ipaddr\":\"1.2.3.4:5\",\"id\":\"ab\",\"timeout\":61}");
}

Test(json, notify_build_cap)
{
    char out[NOTIFY_MAX];
    const char *want = "{\"ipaddr\":\"1.2.3.4:5\",\"id\":\"ab\",\"timeout\":61}";
    size_t n = strlen(want);
    for (size_t cap = 0; cap <= n; cap++)
        cr_assert_eq(notify_build(out, cap, "1.2.3.4:5", "ab", 2, 61), -1, "cap %zu", cap);
    cr_assert_eq(notify_build(out, n + 1, "1.2.3.4:5", "ab", 2, 61), (int)n);
}

Test(json, notify_build_max_id_fits)
{
    char id[256];
    char out[NOTIFY_MAX];
    struct notify n;
    memset(id, 'Z', sizeof(id));
    int len = notify_build(out, sizeof(out), "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535", id,
                           sizeof(id), 86400);
    cr_assert_gt(len, 0);
    cr_assert_eq(parse_notify(out, (size_t)len, &n), 0);
    cr_assert_eq(strlen(n.id), 256);
}

Test(json, notify_parse_good)
{
    struct notify n;
    const char *s = "{\"ipaddr\":\"127.0.0.1:57216\",\"id\":\"abc\",\"timeout\":60}";
    cr_assert_eq(parse_notify(s, strlen(s), &n), 0);
    cr_assert_str_eq(n.ipaddr, "127.0.0.1:57216");
    cr_assert_str_eq(n.id, "abc");
    cr_assert_eq(n.timeout, 60);

    s = " \n{ \"timeout\" : 90 , \"extra\":[1]} ";
    cr_assert_eq(parse_notify(s, strlen(s), &n), -1); /* arrays are not flat */
    s = "\t{\"x\":true,\"y\":false,\"z\":null,\"w\":-1.5e+3,\"v\":\"s\\\"\",\"id\":\"i\"}\r\n";
    cr_assert_eq(parse_notify(s, strlen(s), &n), 0);
    cr_assert_str_eq(n.id, "i");
    cr_assert_str_eq(n.ipaddr, "");
    cr_assert_eq(n.timeout, -1);
    s = "{\"id\":\"i\",\"timeout\":null}";
    cr_assert_eq(parse_notify(s, strlen(s), &n), 0);
    cr_assert_eq(n.timeout, -1);
    s = "{\"id\":\"i\",\"timeout\":-7}";
    cr_assert_eq(parse_notify(s, strlen(s), &n), 0);
    cr_assert_eq(n.timeout, -7);
}

Test(json, notify_parse_escapes)
{
    struct notify n;
    const char *s = "{\"id\":\"a\\u0041\\u00e9\\u20ac\\ud83d\\ude00\\/\\b\\f\\n\\r\\t\"}";
    cr_assert_eq(parse_notify(s, strlen(s), &n), 0);
    cr_assert_str_eq(n.id, "aA\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80/\b\f\n\r\t");
}

Test(json, notify_parse_malformed)
{
    static const char *const bad[] = {
        "",
        "{}",                                /* no id */
        "{\"ipaddr\":\"1.2.3.4:5\"}",        /* no id */
        "{\"id\":\"\"}",                     /* empty id */
        "{\"id\":1}",                        /* id not a string */
        "{\"id\":\"a\",\"timeout\":\"60\"}", /* timeout not a number */
        "{\"id\":\"a\",\"timeout\":6.5}",    /* not an integer */
        "{\"id\":\"a\",\"timeout\":1e2}",
        "{\"id\":\"a\",\"timeout\":99999999999999999999999}",
        "{\"id\":\"a\",\"timeout\":01}", /* leading zero */
        "{\"id\":\"a\",\"timeout\":-}",
        "{\"id\":\"a\",}",  /* trailing comma */
        "{\"id\":\"a\"} x", /* trailing garbage */
        "{\"id\":\"a\"}}",
        "[\"id\"]",
        "{\"id\":\"a\",\"o\":{}}", /* nested object */
        "{\"id\" \"a\"}",
        "{\"id\":\"a\" \"x\":1}",
        "{'id':'a'}",
        "{\"id\":\"a\nb\"}", /* raw control in string */
        "{\"id\":\"a\\x\"}", /* bad escape */
        "{\"id\":\"a\\u12\"}",
        "{\"id\":\"a\\u12g4\"}",
        "{\"id\":\"a\\u0000\"}", /* NUL refused */
        "{\"id\":\"\\ud83d\"}",  /* lone high surrogate */
        "{\"id\":\"\\ude00\"}",  /* lone low surrogate */
        "{\"id\":\"\\ud83d\\u0041\"}",
        "{\"id\":\"a\",\"t\":tru}",
        "{\"id\":\"a\",\"t\":nul}",
        "{\"id\":\"a\",\"t\":+1}",
        "{\"id\":\"a\",\"t\":1.}",
        "{\"id\":\"a\",\"t\":.5}",
        "{\"id\":\"a\",\"t\":1e}",
        ("{\"ipaddr\":\"0123456789012345678901234567890123456789012345678901234567890123\","
         "\"id\":\"a\"}"), /* ipaddr of 64 does not fit */
    };
    struct notify n;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(parse_notify(bad[i], strlen(bad[i]), &n), -1, "case %zu: %s", i, bad[i]);
        cr_assert_eq(n.timeout, -1);
        cr_assert_str_eq(n.id, "");
    }
}

Test(json, notify_parse_id_limit)
{
    char buf[600];
    char id[258];
    struct notify n;

    memset(id, 'q', sizeof(id) - 1);
    id[257] = '\0';
    snprintf(buf, sizeof(buf), "{\"id\":\"%s\"}", id);
    cr_assert_eq(parse_notify(buf, strlen(buf), &n), -1);
    id[256] = '\0';
    snprintf(buf, sizeof(buf), "{\"id\":\"%s\"}", id);
    cr_assert_eq(parse_notify(buf, strlen(buf), &n), 0);
}

Test(json, notify_parse_truncated_at_every_length)
{
    const char *s = "{\"ipaddr\":\"[::1]:9\",\"id\":\"x\\u00e9\\ud83d\\ude00\",\"timeout\":60,"
                    "\"k\":true}";
    struct notify n;
    size_t len = strlen(s);
    for (size_t i = 0; i < len; i++)
        cr_assert_eq(parse_notify(s, i, &n), -1, "prefix %zu", i);
    cr_assert_eq(parse_notify(s, len, &n), 0);
}

Test(json, get_string)
{
    const char *body = "{\"success\":false,\"error\":\"No \\\"listener\\\"\","
                       "\"errorcode\":\"missing_destination\"}";
    char out[64];

    cr_assert_eq(get_string(body, strlen(body), "errorcode", out, sizeof(out)), 19);
    cr_assert_str_eq(out, "missing_destination");
    cr_assert_eq(get_string(body, strlen(body), "error", out, sizeof(out)), 13);
    cr_assert_str_eq(out, "No \"listener\"");
    cr_assert_eq(get_string(body, strlen(body), "success", out, sizeof(out)), -1);
    cr_assert_eq(get_string(body, strlen(body), "absent", out, sizeof(out)), -1);
    cr_assert_eq(get_string(body, strlen(body), "errorcode", out, 19), -1); /* too long */
    cr_assert_eq(get_string(body, strlen(body), "errorcode", out, 20), 19);
    cr_assert_eq(get_string(body, strlen(body), "errorcode", out, 0), -1);
    cr_assert_eq(get_string("{\"a\":\"\"}", 8, "a", out, 1), 0);
    cr_assert_str_eq(out, "");
}

Test(json, get_string_malformed_and_truncated)
{
    const char *body = "{\"errorcode\":\"duplicate_id\",\"n\":12}";
    char out[64];
    size_t len = strlen(body);

    for (size_t i = 0; i < len; i++)
        cr_assert_eq(get_string(body, i, "errorcode", out, sizeof(out)), -1, "prefix %zu", i);
    cr_assert_eq(get_string(body, len, "errorcode", out, sizeof(out)), 12);
    cr_assert_eq(get_string("{\"errorcode\":\"x\",}", 18, "errorcode", out, sizeof(out)), -1);
    cr_assert_eq(get_string("not json", 8, "errorcode", out, sizeof(out)), -1);
}

Test(json, long_key_is_unknown)
{
    char buf[256];
    char key[100];
    char out[8];
    memset(key, 'k', sizeof(key) - 1);
    key[sizeof(key) - 1] = '\0';
    snprintf(buf, sizeof(buf), "{\"%s\":\"v\",\"id\":\"i\"}", key);
    struct notify n;
    cr_assert_eq(parse_notify(buf, strlen(buf), &n), 0);
    cr_assert_eq(get_string(buf, strlen(buf), key, out, sizeof(out)), -1);
}
