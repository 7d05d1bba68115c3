/* Trusted CIDR lists, X-Forwarded-For and Forwarded; inputs on guard pages. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "guard.h"
#include "proto/addr.h"
#include "proto/fwd.h"

static struct fwd_cidr L[4];
static size_t NL;

static void trust(const char *s)
{
    int n = fwd_cidr_list_parse(s, L, 4);

    cr_assert_geq(n, 0, "%s", s);
    NL = (size_t)n;
}

/* Runs fn on s (guarded); returns the address text or "-" for -1. */
static const char *run(int (*fn)(const char *, size_t, const struct fwd_cidr *, size_t,
                                 struct sockaddr_storage *),
                       const char *s)
{
    static char txt[ADDR_STR_MAX];
    struct sockaddr_storage ss;
    struct guard g = {0};
    int rc = fn(guard_put(&g, s, strlen(s)), strlen(s), L, NL, &ss);

    guard_free(&g);
    if (rc != 0)
        return "-";
    cr_assert_gt(addr_format((struct sockaddr *)&ss, txt, sizeof(txt)), 0);
    return txt;
}

static int trusted(const char *a)
{
    struct sockaddr_storage ss;
    socklen_t len;

    cr_assert_eq(addr_parse(a, &ss, &len), 0, "%s", a);
    return fwd_trusted(L, NL, (struct sockaddr *)&ss);
}

Test(fwd, cidr_parse)
{
    struct fwd_cidr c[4];
    static const char *bad[] = {"x",  "1.2.3.4/33", "::1/129",      "1.2.3.4/",
                                "/8", "1.2.3.4/1a", "1.2.3.4/0008", "1.2.3.4,",
                                ",",  "1.2.3.4, x", "a,b,c,d,e"};
    size_t i;

    cr_assert_eq(fwd_cidr_list_parse("", c, 4), 0);
    cr_assert_eq(fwd_cidr_list_parse("127.0.0.1/32, 10.0.0.0/8 ,::1", c, 4), 3);
    cr_assert_eq(c[1].prefix, 8);
    cr_assert_eq(c[2].family, AF_INET6);
    cr_assert_eq(c[2].prefix, 128);
    cr_assert_eq(fwd_cidr_list_parse("1.1.1.1,1.1.1.2,1.1.1.3,1.1.1.4,1.1.1.5", c, 4), -EINVAL);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(fwd_cidr_list_parse(bad[i], c, 4), -EINVAL, "%s", bad[i]);
}

Test(fwd, trusted_match)
{
    trust("127.0.0.1/32,10.0.0.0/9,fd00::/7");
    cr_assert(trusted("127.0.0.1:1"));
    cr_assert(!trusted("127.0.0.2:1"));
    cr_assert(trusted("10.127.255.255:1"));
    cr_assert(!trusted("10.128.0.0:1"));
    cr_assert(trusted("[fdff::1]:1"));
    cr_assert(!trusted("[fe00::1]:1"));
    cr_assert(trusted("[::ffff:127.0.0.1]:1"));
    trust("");
    cr_assert(!trusted("127.0.0.1:1"));
    trust("0.0.0.0/0");
    cr_assert(trusted("1.2.3.4:1"));
    cr_assert(!trusted("[::1]:1"));
}

Test(fwd, xff)
{
    trust("127.0.0.1/32,10.0.0.0/8");
    cr_assert_str_eq(run(fwd_xff, "192.0.2.1"), "192.0.2.1:0");
    cr_assert_str_eq(run(fwd_xff, "6.6.6.6, 192.0.2.1"), "192.0.2.1:0"); /* forged left */
    cr_assert_str_eq(run(fwd_xff, "192.0.2.1 ,10.1.1.1, 127.0.0.1"), "192.0.2.1:0");
    cr_assert_str_eq(run(fwd_xff, "2001:db8::1"), "[2001:db8::1]:0");
    cr_assert_str_eq(run(fwd_xff, "[2001:db8::1]:5"), "[2001:db8::1]:5");
    cr_assert_str_eq(run(fwd_xff, "192.0.2.1:7"), "192.0.2.1:7");
    cr_assert_str_eq(run(fwd_xff, "127.0.0.1"), "-"); /* all trusted */
    cr_assert_str_eq(run(fwd_xff, ""), "-");
    cr_assert_str_eq(run(fwd_xff, "192.0.2.1,"), "-");
    cr_assert_str_eq(run(fwd_xff, "192.0.2.1, junk"), "-");
    cr_assert_str_eq(run(fwd_xff, "unknown"), "-");
    cr_assert_str_eq(run(fwd_xff, "1.2.3.4:99999"), "-");
    cr_assert_str_eq(run(fwd_xff, "[::1"), "-");
    cr_assert_str_eq(run(fwd_xff, "[::1]x"), "-");
}

Test(fwd, forwarded)
{
    trust("127.0.0.1/32");
    cr_assert_str_eq(run(fwd_forwarded, "for=192.0.2.60;proto=http;by=203.0.113.43"),
                     "192.0.2.60:0");
    cr_assert_str_eq(run(fwd_forwarded, "for=\"[2001:db8:cafe::17]:4711\""),
                     "[2001:db8:cafe::17]:4711");
    cr_assert_str_eq(run(fwd_forwarded, "For=\"[::1]\", for=127.0.0.1"), "[::1]:0");
    cr_assert_str_eq(run(fwd_forwarded, "for=6.6.6.6, proto=https;for=192.0.2.9"), "192.0.2.9:0");
    cr_assert_str_eq(run(fwd_forwarded, "for=unknown"), "-");
    cr_assert_str_eq(run(fwd_forwarded, "for=_hidden"), "-");
    cr_assert_str_eq(run(fwd_forwarded, "proto=http"), "-");
    cr_assert_str_eq(run(fwd_forwarded, "for=\"[::1]:1"), "-");
    cr_assert_str_eq(run(fwd_forwarded, "for=\""), "-");
    cr_assert_str_eq(run(fwd_forwarded, "for="), "-");
    cr_assert_str_eq(run(fwd_forwarded, "for=127.0.0.1"), "-");
}
