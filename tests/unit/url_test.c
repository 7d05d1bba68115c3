/* rapi URL parsing, chains and Host formatting. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "proto/url.h"
#include "tests/unit/guard.h"

static int parse(const char *s, struct rapi_url *u)
{
    struct guard g = {0};
    size_t len = strlen(s);
    char *p = guard_put(&g, s, len);
    int r = url_parse(p, len, u);
    guard_free(&g);
    return r;
}

Test(url, schemes_and_default_ports)
{
    static const struct {
        const char *url;
        enum url_scheme scheme;
        bool tls;
        uint16_t port;
    } cases[] = {
        {"rws://h/p", URL_RWS, false, 80}, {"rwss://h/p", URL_RWSS, true, 443},
        {"rwr://h/p", URL_RWR, false, 80}, {"rwrs://h/p", URL_RWRS, true, 443},
        {"wr://h/p", URL_WR, false, 80},   {"wrs://h/p", URL_WRS, true, 443},
        {"RWR://h/p", URL_RWR, false, 80}, {"RwSs://h/p", URL_RWSS, true, 443},
    };
    struct rapi_url u;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cr_assert_eq(parse(cases[i].url, &u), 0, "%s", cases[i].url);
        cr_assert_eq(u.scheme, cases[i].scheme);
        cr_assert_eq(u.tls, cases[i].tls);
        cr_assert_eq(u.port, cases[i].port);
        cr_assert_str_eq(u.host, "h");
        cr_assert_str_eq(u.path, "/p");
        cr_assert_str_eq(u.key, "");
    }
}

Test(url, full)
{
    struct rapi_url u;
    cr_assert_eq(parse("rwr://KEY123@relay.example:37791/test/path/?x=1", &u), 0);
    cr_assert_str_eq(u.key, "KEY123");
    cr_assert_str_eq(u.host, "relay.example");
    cr_assert_eq(u.port, 37791);
    cr_assert_str_eq(u.path, "/test/path/?x=1");
    cr_assert(!u.host_is_v6);
}

Test(url, no_path)
{
    struct rapi_url u;
    cr_assert_eq(parse("rws://h:1", &u), 0);
    cr_assert_str_eq(u.path, "/");
    cr_assert_eq(u.port, 1);
    cr_assert_eq(parse("rws://h", &u), 0);
    cr_assert_str_eq(u.path, "/");
}

Test(url, ipv6)
{
    struct rapi_url u;
    cr_assert_eq(parse("rwss://k@[::1]:8443/x", &u), 0);
    cr_assert_str_eq(u.host, "::1");
    cr_assert(u.host_is_v6);
    cr_assert_eq(u.port, 8443);
    cr_assert_str_eq(u.key, "k");
    cr_assert_eq(parse("rwr://[2001:db8::1]/", &u), 0);
    cr_assert_str_eq(u.host, "2001:db8::1");
    cr_assert_eq(u.port, 80);
    cr_assert_eq(parse("rwr://[::ffff:1.2.3.4]:5/", &u), 0);
    cr_assert_str_eq(u.host, "::ffff:1.2.3.4");
}

Test(url, keys_percent_decoded_and_last_at)
{
    struct rapi_url u;
    cr_assert_eq(parse("rwr://a%40b%2Fc%3a@h/p", &u), 0);
    cr_assert_str_eq(u.key, "a@b/c:");
    cr_assert_eq(parse("rwr://a@b@h/p", &u), 0);
    cr_assert_str_eq(u.key, "a@b");
    cr_assert_str_eq(u.host, "h");
    cr_assert_eq(parse("rwr://@h/p", &u), 0);
    cr_assert_str_eq(u.key, "");
    cr_assert_eq(parse("rwr://h/p@q", &u), 0); /* '@' in the path is path */
    cr_assert_str_eq(u.key, "");
    cr_assert_str_eq(u.path, "/p@q");
}

Test(url, rejects)
{
    static const char *const bad[] = {
        "http://h/p",
        "rwx://h/p",
        "rwr:/h/p",
        "rwr//h/p",
        "rwr://",
        "rwr:///p",
        "rwr://k@/p",
        "rwr://h:/p",
        "rwr://h:0/p",
        "rwr://h:65536/p",
        "rwr://h:123456/p",
        "rwr://h:8x/p",
        "rwr://[::1/p",
        "rwr://[::1]x/p",
        "rwr://[]/p",
        "rwr://[::1]:/p",
        "rwr://h/p q",
        "rwr://h/p\x7f",
        "rwr://h\x80/p",
        "rwr://ho$t/p",
        "rwr://[zz::1]/p",
        "rwr://a%4@h/p",
        "rwr://a%zz@h/p",
        "rwr://a%20@h/p",
        "",
        "rwr",
        " rwr://h/p",
        "rwr://h:-1/p",
    };
    struct rapi_url u;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(parse(bad[i], &u), -EINVAL, "case %zu: %s", i, bad[i]);
        cr_assert_str_eq(u.key, "");
    }
}

Test(url, length_limits)
{
    char buf[URL_PATH_MAX + 64];
    char part[URL_PATH_MAX + 2];
    struct rapi_url u;

    memset(part, 'k', sizeof(part));
    snprintf(buf, sizeof(buf), "rwr://%.*s@h/p", URL_KEY_MAX - 1, part);
    cr_assert_eq(parse(buf, &u), 0);
    cr_assert_eq(strlen(u.key), URL_KEY_MAX - 1);
    snprintf(buf, sizeof(buf), "rwr://%.*s@h/p", URL_KEY_MAX, part);
    cr_assert_eq(parse(buf, &u), -EINVAL);

    snprintf(buf, sizeof(buf), "rwr://%.*s/p", URL_HOST_MAX - 1, part);
    cr_assert_eq(parse(buf, &u), 0);
    snprintf(buf, sizeof(buf), "rwr://%.*s/p", URL_HOST_MAX, part);
    cr_assert_eq(parse(buf, &u), -EINVAL);

    snprintf(buf, sizeof(buf), "rwr://h/%.*s", URL_PATH_MAX - 2, part);
    cr_assert_eq(parse(buf, &u), 0);
    cr_assert_eq(strlen(u.path), URL_PATH_MAX - 1);
    snprintf(buf, sizeof(buf), "rwr://h/%.*s", URL_PATH_MAX - 1, part);
    cr_assert_eq(parse(buf, &u), -EINVAL);
}

Test(url, is_client)
{
    cr_assert_eq(url_is_client("rwr://h/p", 9), 1);
    cr_assert_eq(url_is_client("RWRS://h/p", 10), 1);
    cr_assert_eq(url_is_client("rws://h/p", 9), 0);
    cr_assert_eq(url_is_client("tcp://h:1", 9), 0);
    cr_assert_eq(url_is_client("rwr:/", 5), 0);
    cr_assert_eq(url_is_client("rwr://", 5), 0);
    cr_assert_eq(url_is_client("", 0), 0);
}

Test(url, chain)
{
    const char *chain = "  rwr://a@r1/x rwrs://b@r2:9/y\ttcp://app:80  ";
    size_t len = strlen(chain), pos = 0, elen;
    const char *elem;
    struct rapi_url u;

    cr_assert_eq(url_chain_next(chain, len, &pos, &elem, &elen), 1);
    cr_assert_eq(elen, 12);
    cr_assert(memcmp(elem, "rwr://a@r1/x", elen) == 0);
    cr_assert(url_is_client(elem, elen));
    cr_assert_eq(url_parse(elem, elen, &u), 0);
    cr_assert_str_eq(u.host, "r1");
    cr_assert_eq(url_chain_next(chain, len, &pos, &elem, &elen), 1);
    cr_assert(memcmp(elem, "rwrs://b@r2:9/y", elen) == 0);
    cr_assert_eq(url_parse(elem, elen, &u), 0);
    cr_assert_eq(u.port, 9);
    cr_assert_eq(url_chain_next(chain, len, &pos, &elem, &elen), 1);
    cr_assert(memcmp(elem, "tcp://app:80", elen) == 0);
    cr_assert(!url_is_client(elem, elen));
    cr_assert_eq(url_chain_next(chain, len, &pos, &elem, &elen), 0);
    cr_assert_eq(url_chain_next(chain, len, &pos, &elem, &elen), 0);
    pos = 0;
    cr_assert_eq(url_chain_next("   ", 3, &pos, &elem, &elen), 0);
    pos = 0;
    cr_assert_eq(url_chain_next("", 0, &pos, &elem, &elen), 0);
}

Test(url, hostport)
{
    struct rapi_url u;
    char out[64];
    cr_assert_eq(parse("rwr://k@relay:37791/p", &u), 0);
    cr_assert_eq(url_hostport(&u, out, sizeof(out)), 11);
    cr_assert_str_eq(out, "relay:37791");
    cr_assert_eq(parse("rwrs://[::1]/p", &u), 0);
    cr_assert_eq(url_hostport(&u, out, sizeof(out)), 9);
    cr_assert_str_eq(out, "[::1]:443");
    cr_assert_eq(url_hostport(&u, out, 9), -1);
    cr_assert_eq(url_hostport(&u, out, 10), 9);
}
