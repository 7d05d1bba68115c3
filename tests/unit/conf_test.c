/* engine/conf.c: defaults, every keyword's good and bad values, the file
 * syntax and its messages, listen handling, validation, and the keyword
 * table held against man/rapi-server.conf.5 (tests run from the repo root).
 * Includes the .c to reach the keyword table. */
#include "engine/conf.c"

#include <criterion/criterion.h>
#include <sys/stat.h>

#define MANPAGE "man/rapi-server.conf.5"

static struct conf c;
static char err[512];

static void setup(void)
{
    conf_defaults(&c);
    err[0] = '\0';
}

TestSuite(conf, .init = setup);

static int set(const char *k, const char *v)
{
    return conf_set(&c, k, v, err, sizeof err);
}

static int parse(const char *text)
{
    return conf_parse(&c, text, strlen(text), "test.conf", err, sizeof err);
}

Test(conf, defaults)
{
    cr_assert_eq(c.nlisten, 1);
    cr_assert_str_eq(c.listen[0], "127.0.0.1:37791");
    cr_assert_eq(c.listen_explicit, 0);
    cr_assert_str_eq(c.keys, "/etc/rapi/keys");
    cr_assert_eq(c.workers, 0);
    cr_assert_eq(c.io, IO_AUTO);
    cr_assert_eq(c.timeout, 60);
    cr_assert_eq(c.min_timeout, 60);
    cr_assert_eq(c.header_timeout, 10);
    cr_assert_eq(c.dialback_timeout, 60);
    cr_assert_eq(c.keepalive, 30);
    cr_assert_eq(c.drain_timeout, 30);
    cr_assert_eq(c.upgrade_timeout, 10);
    cr_assert_eq(c.max_header, 8192);
    cr_assert_eq(c.max_frame, 65536);
    cr_assert_eq(c.max_headers, 64);
    cr_assert_eq(c.auth_fail_rate, 5);
    cr_assert_eq(c.auth_fail_burst, 20);
    cr_assert_eq(c.max_connections, 100000);
    cr_assert_eq(c.max_waiting, 1024);
    cr_assert_eq(c.max_listeners, 10000);
    cr_assert_eq(c.listeners_per_path, 1);
    cr_assert_eq(c.listener_grace, 5);
    cr_assert_eq(c.offer_timeout, 5);
    cr_assert_eq(c.max_parked, 16);
    cr_assert_eq(c.park_timeout, 60);
    cr_assert_eq(c.pipe_size, 262144);
    cr_assert_eq(c.max_pipes, 4096);
    cr_assert_eq(c.log_level, LOG_INFO);
    cr_assert_eq(c.admin_max_connections, 16);
    cr_assert_eq(c.status_top_paths, 20);
    cr_assert_eq(conf_validate(&c, err, sizeof err), 0, "%s", err);
}

Test(conf, keywords_list_matches_table)
{
    size_t n = 0;

    for (; conf_keywords[n] != NULL; n++)
        cr_assert_str_eq(conf_keywords[n], conf_rows[n].name);
    cr_assert_eq(n, CONF_NROWS);
    cr_assert_eq(n, 37);
}

Test(conf, defaults_in_table_are_what_conf_defaults_sets)
{
    struct conf d;

    /* Every row's default string, applied to a fresh struct, round-trips. */
    memset(&d, 0, sizeof d);
    for (size_t i = 0; i < CONF_NROWS; i++)
        cr_assert_eq(conf_set(&d, conf_rows[i].name, conf_rows[i].def, err, sizeof err), 0,
                     "%s: %s", conf_rows[i].name, err);
    d.listen_explicit = 0;
    cr_assert_eq(memcmp(&d, &c, sizeof d), 0);
}

struct kv {
    const char *k, *v;
    long long want; /* -1: not a number field */
};

static long long field_value(const char *k)
{
    return load_number(&c, conf_row_find(k));
}

Test(conf, good_values)
{
    static const struct kv good[] = {
        {"workers", "0", 0},
        {"workers", "1", 1},
        {"workers", "256", 256},
        {"workers", "007", 7},
        {"timeout", "1", 1},
        {"timeout", "86400", 86400},
        {"min_timeout", "120", 120},
        {"header_timeout", "5", 5},
        {"dialback_timeout", "30", 30},
        {"keepalive", "0", 0},
        {"keepalive", "15", 15},
        {"drain_timeout", "1", 1},
        {"upgrade_timeout", "1", 1},
        {"upgrade_timeout", "60", 60},
        {"max_header", "256", 256},
        {"max_header", "1m", 1048576},
        {"max_header", "16k", 16384},
        {"max_frame", "256", 256},
        {"max_frame", "16M", 16777216},
        {"max_headers", "1", 1},
        {"max_headers", "1024", 1024},
        {"auth_fail_rate", "1", 1},
        {"auth_fail_rate", "1000000", 1000000},
        {"auth_fail_burst", "0", 0},
        {"auth_fail_burst", "1000000", 1000000},
        {"max_connections", "1", 1},
        {"max_connections", "2147483647", 2147483647},
        {"max_waiting", "10", 10},
        {"max_listeners", "5", 5},
        {"listeners_per_path", "1", 1},
        {"listeners_per_path", "256", 256},
        {"listener_grace", "0", 0},
        {"listener_grace", "30", 30},
        {"offer_timeout", "1", 1},
        {"offer_timeout", "86400", 86400},
        {"max_parked", "0", 0},
        {"max_parked", "64", 64},
        {"park_timeout", "1", 1},
        {"pipe_size", "4096", 4096},
        {"pipe_size", "4k", 4096},
        {"pipe_size", "65537", 65537},
        {"pipe_size", "16m", 16777216},
        {"max_pipes", "0", 0},
        {"max_pipes", "100", 100},
    };

    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        cr_assert_eq(set(good[i].k, good[i].v), 0, "%s %s: %s", good[i].k, good[i].v, err);
        cr_assert_eq(field_value(good[i].k), good[i].want, "%s %s", good[i].k, good[i].v);
    }
    cr_assert_eq(conf_validate(&c, err, sizeof err), 0, "%s", err);
}

Test(conf, bad_values)
{
    static const struct kv bad[] = {
        {"workers", "257", 0},
        {"workers", "-1", 0},
        {"workers", "+1", 0},
        {"workers", "1.5", 0},
        {"workers", "4 ", 0},
        {"workers", " 4", 0},
        {"workers", "4x", 0},
        {"workers", "0x10", 0},
        {"workers", "1k", 0},
        {"timeout", "0", 0},
        {"timeout", "86401", 0},
        {"timeout", "1s", 0},
        {"min_timeout", "0", 0},
        {"header_timeout", "0", 0},
        {"dialback_timeout", "0", 0},
        {"keepalive", "-1", 0},
        {"keepalive", "86401", 0},
        {"drain_timeout", "0", 0},
        {"upgrade_timeout", "0", 0},
        {"upgrade_timeout", "5s", 0},
        {"max_header", "255", 0},
        {"max_header", "1025k", 0},
        {"max_header", "2m", 0},
        {"max_header", "8kb", 0},
        {"max_header", "k", 0},
        {"max_header", "8 k", 0},
        {"max_frame", "255", 0},
        {"max_frame", "17m", 0},
        {"max_headers", "0", 0},
        {"max_headers", "1025", 0},
        {"listeners_per_path", "0", 0},
        {"listeners_per_path", "257", 0},
        {"listener_grace", "-1", 0},
        {"listener_grace", "86401", 0},
        {"offer_timeout", "0", 0},
        {"max_parked", "-1", 0},
        {"park_timeout", "0", 0},
        {"max_headers", "1k", 0},
        {"auth_fail_rate", "0", 0},
        {"auth_fail_rate", "1000001", 0},
        {"auth_fail_burst", "-1", 0},
        {"auth_fail_burst", "1000001", 0},
        {"max_connections", "0", 0},
        {"max_waiting", "0", 0},
        {"max_listeners", "0", 0},
        {"pipe_size", "4095", 0},
        {"pipe_size", "3k", 0},
        {"pipe_size", "16385k", 0},
        {"max_pipes", "-1", 0},
        {"max_connections", "2147483648", 0},
        {"io", "io_uring", 0},
        {"io", "AUTO", 0},
        {"io", "", 0},
        {"log_level", "trace", 0},
        {"log_level", "Info", 0},
        {"listen", "localhost:80", 0},
        {"listen", "1.2.3.4", 0},
        {"listen", "1.2.3.4:65536", 0},
        {"listen", "[::1]", 0},
        {"listen", "::1:80", 0},
        {"listen", "1.2.3.4:-1", 0},
        {"keys", "", 0},
    };
    struct conf before = c;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        cr_assert_eq(set(bad[i].k, bad[i].v), -EINVAL, "%s '%s' accepted", bad[i].k, bad[i].v);
        cr_assert_eq(strncmp(err, bad[i].k, strlen(bad[i].k)), 0, "message '%s'", err);
        cr_assert_eq(err[strlen(bad[i].k)], ':', "message '%s'", err);
    }
    cr_assert_eq(memcmp(&before, &c, sizeof c), 0, "a rejected value changed the conf");
}

Test(conf, enums_and_names)
{
    static const char *const io[] = {"auto", "uring", "epoll"};
    static const char *const lv[] = {"error", "warn", "info", "debug"};

    for (int i = 0; i < 3; i++) {
        cr_assert_eq(set("io", io[i]), 0);
        cr_assert_eq((int)c.io, i);
        cr_assert_str_eq(conf_io_name(c.io), io[i]);
    }
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(set("log_level", lv[i]), 0);
        cr_assert_eq((int)c.log_level, i);
        cr_assert_str_eq(conf_log_level_name(c.log_level), lv[i]);
    }
    cr_assert_str_eq(conf_io_name((enum conf_io)9), "?");
    cr_assert_str_eq(conf_log_level_name((enum log_level) - 1), "?");
    cr_assert_eq(set("io", "kqueue"), -EINVAL);
    cr_assert_str_eq(err, "io: 'kqueue' is not one of auto, uring, epoll");
}

Test(conf, suffixes)
{
    cr_assert_eq(set("max_frame", "1k"), 0);
    cr_assert_eq(c.max_frame, 1024);
    cr_assert_eq(set("max_frame", "1K"), 0);
    cr_assert_eq(c.max_frame, 1024);
    cr_assert_eq(set("max_frame", "2m"), 0);
    cr_assert_eq(c.max_frame, 2u << 20);
    cr_assert_eq(set("max_frame", "2M"), 0);
    cr_assert_eq(c.max_frame, 2u << 20);
    cr_assert_eq(set("pipe_size", "256k"), 0);
    cr_assert_eq(c.pipe_size, 262144);
    cr_assert_eq(set("pipe_size", "1g"), -EINVAL);
    cr_assert_eq(set("pipe_size", "1kk"), -EINVAL);
    cr_assert_eq(set("timeout", "1m"), -EINVAL, "seconds take no suffix");
    cr_assert_eq(set("max_waiting", "1k"), -EINVAL, "counts take no suffix");
}

Test(conf, overflow)
{
    static const char *const big[] = {
        "18446744073709551615",    /* ULLONG_MAX: parses, out of range */
        "18446744073709551616",    /* ULLONG_MAX + 1 */
        "99999999999999999999999", /* far beyond */
        "18014398509481984k",      /* 2^54 * 1024 = 2^64 */
        "17592186044416m",         /* 2^44 * 2^20 = 2^64 */
        "9223372036854775808",     /* LLONG_MAX + 1 */
    };

    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
        cr_assert_eq(set("max_frame", big[i]), -EINVAL, "%s accepted", big[i]);
        cr_assert(strstr(err, "out of range") != NULL, "%s: '%s'", big[i], err);
        cr_assert_eq(set("max_connections", big[i]), -EINVAL, "%s accepted", big[i]);
        cr_assert_eq(set("workers", big[i]), -EINVAL, "%s accepted", big[i]);
    }
    cr_assert_eq(c.max_frame, 65536);
    cr_assert_eq(c.workers, 0);
}

Test(conf, messages)
{
    cr_assert_eq(set("workers", "300"), -EINVAL);
    cr_assert_str_eq(err, "workers: '300' is out of range (0..256)");
    cr_assert_eq(set("timeout", "soon"), -EINVAL);
    cr_assert_str_eq(err, "timeout: 'soon' is not a whole number");
    cr_assert_eq(set("max_header", "big"), -EINVAL);
    cr_assert_str_eq(err, "max_header: 'big' is not a whole number (with an optional k/K/m/M "
                          "suffix)");
    cr_assert_eq(set("bogus", "1"), -EINVAL);
    cr_assert_str_eq(err, "unknown keyword 'bogus'");
    cr_assert_eq(set("workers", ""), -EINVAL);
    cr_assert_str_eq(err, "workers: missing value");
    cr_assert_eq(set("workers", NULL), -EINVAL);
    cr_assert_str_eq(err, "workers: missing value");
    /* no err buffer at all is allowed */
    cr_assert_eq(conf_set(&c, "workers", "x", NULL, 0), -EINVAL);
}

Test(conf, keys_path)
{
    char longpath[PATH_MAX + 1];

    cr_assert_eq(set("keys", "/srv/rapi/my keys#1"), 0);
    cr_assert_str_eq(c.keys, "/srv/rapi/my keys#1");
    memset(longpath, 'a', PATH_MAX);
    longpath[PATH_MAX] = '\0';
    cr_assert_eq(set("keys", longpath), -EINVAL);
    cr_assert(strstr(err, "keys: path longer than") == err, "%s", err);
    longpath[PATH_MAX - 1] = '\0';
    cr_assert_eq(set("keys", longpath), 0);
}

Test(conf, listen_options)
{
    cr_assert_eq(set("listen", "127.0.0.1:443 tls"), 0, "%s", err);
    cr_assert_str_eq(c.listen[0], "127.0.0.1:443");
    cr_assert_eq(c.listen_flags[0], LISTEN_F_TLS);
    cr_assert_eq(set("listen", "127.0.0.1:444\tproxy_protocol  tls"), 0, "%s", err);
    cr_assert_str_eq(c.listen[1], "127.0.0.1:444");
    cr_assert_eq(c.listen_flags[1], LISTEN_F_TLS | LISTEN_F_PROXY);
    cr_assert_eq(set("listen", "127.0.0.1:445"), 0, "%s", err);
    cr_assert_eq(c.listen_flags[2], 0);
    cr_assert_eq(set("listen", "127.0.0.1:446 tlsx"), -EINVAL);
    cr_assert(strstr(err, "unknown option 'tlsx'") != NULL, "%s", err);
    cr_assert_eq(set("listen", "127.0.0.1:443 proxy_protocol"), -EINVAL, "a duplicate address");
    cr_assert_eq(c.nlisten, 3);
}

Test(conf, trusted_proxies_list)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};

    cr_assert_eq(c.ntrusted, 0, "trust nobody by default");
    cr_assert_eq(set("trusted_proxies", "127.0.0.1/32, 10.0.0.0/8,::1,2001:db8::/32"), 0, "%s",
                 err);
    cr_assert_eq(c.ntrusted, 4);
    cr_assert_eq(c.trusted_proxies[1].prefix, 8);
    cr_assert_eq(c.trusted_proxies[2].family, AF_INET6);
    cr_assert_eq(c.trusted_proxies[2].prefix, 128);
    inet_pton(AF_INET, "10.9.8.7", &sin.sin_addr);
    cr_assert(fwd_trusted(c.trusted_proxies, (size_t)c.ntrusted, (struct sockaddr *)&sin));
    cr_assert_eq(parse("trusted_proxies 192.168.0.0/16\n"), 0, "%s", err);
    cr_assert_eq(c.ntrusted, 1, "a later line replaces the list");
    cr_assert_eq(set("trusted_proxies", ""), 0, "%s", err);
    cr_assert_eq(c.ntrusted, 0);
    cr_assert_eq(conf_validate(&c, err, sizeof err), 0, "%s", err);
}

Test(conf, trusted_proxies_bad_values_keep_the_list)
{
    static const char *const bad[] = {
        "10.0.0.0/33", "::1/129",     "host.example",    "10.0.0.1,", "10.0.0.1,,10.0.0.2",
        "10.0.0.1/",   "10.0.0.1/8x", "1.2.3.4 5.6.7.8", "*"};

    cr_assert_eq(set("trusted_proxies", "10.0.0.1"), 0, "%s", err);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(set("trusted_proxies", bad[i]), -EINVAL, "%s", bad[i]);
        cr_assert(strstr(err, "trusted_proxies: ") == err, "%s", err);
        cr_assert_eq(c.ntrusted, 1, "%s: the list is kept", bad[i]);
    }
}

Test(conf, trusted_proxies_at_most_64)
{
    char v[64 * 16 + 16] = "";

    for (int i = 0; i < 65; i++)
        snprintf(v + strlen(v), sizeof v - strlen(v), "%s10.0.0.%d", i ? "," : "", i);
    cr_assert_eq(set("trusted_proxies", v), -EINVAL);
    *strrchr(v, ',') = '\0';
    cr_assert_eq(set("trusted_proxies", v), 0, "%s", err);
    cr_assert_eq(c.ntrusted, 64);
}

Test(conf, proxy_protocol_needs_trusted_proxies)
{
    cr_assert_eq(set("listen", "127.0.0.1:444 proxy_protocol"), 0, "%s", err);
    cr_assert_eq(conf_validate(&c, err, sizeof err), -EINVAL);
    cr_assert_str_eq(err, "listen: 127.0.0.1:444 has proxy_protocol but trusted_proxies is empty: "
                          "set trusted_proxies to the front ends' addresses");
    cr_assert_eq(set("trusted_proxies", "127.0.0.1"), 0, "%s", err);
    cr_assert_eq(conf_validate(&c, err, sizeof err), 0, "%s", err);
}

Test(conf, listen_replaces_default_then_accumulates)
{
    cr_assert_eq(set("listen", "0.0.0.0:8080"), 0, "%s", err);
    cr_assert_eq(c.nlisten, 1);
    cr_assert_str_eq(c.listen[0], "0.0.0.0:8080");
    cr_assert_eq(set("listen", "[::1]:8080"), 0, "%s", err);
    cr_assert_eq(set("listen", "127.0.0.1:37791"), 0, "%s", err);
    cr_assert_eq(c.nlisten, 3);
    cr_assert_str_eq(c.listen[1], "[::1]:8080");
    cr_assert_str_eq(c.listen[2], "127.0.0.1:37791");
    cr_assert_eq(set("listen", "[::1]:8080"), -EINVAL);
    cr_assert_str_eq(err, "listen: '[::1]:8080' given twice");
    cr_assert_eq(c.nlisten, 3);
    cr_assert_eq(conf_validate(&c, err, sizeof err), 0, "%s", err);
}

Test(conf, listen_default_given_explicitly_then_more)
{
    cr_assert_eq(set("listen", CONF_DEFAULT_LISTEN), 0);
    cr_assert_eq(set("listen", "127.0.0.2:1"), 0);
    cr_assert_eq(c.nlisten, 2);
    cr_assert_str_eq(c.listen[0], CONF_DEFAULT_LISTEN);
}

Test(conf, listen_port_zero_and_any)
{
    cr_assert_eq(set("listen", "127.0.0.1:0"), 0, "%s", err);
    cr_assert_eq(set("listen", "[::]:0"), 0, "%s", err);
    cr_assert_eq(set("listen", "*:80"), 0, "%s", err);
    cr_assert_eq(c.nlisten, 3);
    cr_assert_eq(set("listen", "nohost:0"), -EINVAL);
    cr_assert_eq(set("listen", ":0"), -EINVAL);
    cr_assert_eq(conf_validate(&c, err, sizeof err), 0, "%s", err);
}

Test(conf, listen_reset_is_what_dash_l_does)
{
    cr_assert_eq(parse("listen 10.0.0.1:80\nlisten 10.0.0.2:80\n"), 0, "%s", err);
    cr_assert_eq(c.nlisten, 2);
    conf_listen_reset(&c);
    cr_assert_eq(c.nlisten, 1);
    cr_assert_str_eq(c.listen[0], CONF_DEFAULT_LISTEN);
    cr_assert_eq(set("listen", "10.0.0.3:80"), 0);
    cr_assert_eq(c.nlisten, 1);
    cr_assert_str_eq(c.listen[0], "10.0.0.3:80");
}

Test(conf, too_many_listens)
{
    char a[ADDR_STR_MAX];

    for (int i = 0; i < CONF_MAX_LISTEN; i++) {
        snprintf(a, sizeof a, "127.0.0.1:%d", 1000 + i);
        cr_assert_eq(set("listen", a), 0, "%s: %s", a, err);
    }
    cr_assert_eq(c.nlisten, CONF_MAX_LISTEN);
    cr_assert_eq(set("listen", "127.0.0.1:2000"), -EINVAL);
    cr_assert_str_eq(err, "listen: more than 16 addresses");
    cr_assert_eq(c.nlisten, CONF_MAX_LISTEN);
}

Test(conf, listen_too_long)
{
    char a[ADDR_STR_MAX + 8];

    memset(a, '1', sizeof a - 1);
    a[sizeof a - 1] = '\0';
    a[sizeof a - 3] = ':';
    cr_assert_eq(set("listen", a), -EINVAL);
}

Test(conf, file_syntax)
{
    const char *text = "# rapi-server.conf\n"
                       "\n"
                       "   # indented comment\n"
                       "workers 4 # trailing comment\n"
                       "\tio\tepoll\t\n"
                       "keys /etc/rapi/k#1\n"
                       "log_level debug\r\n"
                       "listen 0.0.0.0:80\n"
                       "listen [::]:80   \n"
                       "max_frame 128k#not a comment?\n";

    cr_assert_eq(parse(text), -EINVAL, "'128k#not' must be rejected");
    cr_assert_str_eq(err, "test.conf:10: max_frame: '128k#not a comment?' is not a whole number "
                          "(with an optional k/K/m/M suffix)");
    cr_assert_eq(c.workers, 0, "a failed parse leaves the conf alone");

    cr_assert_eq(conf_parse(&c, text, strlen(text) - 30, "test.conf", err, sizeof err), 0, "%s",
                 err);
    cr_assert_eq(c.workers, 4);
    cr_assert_eq(c.io, IO_EPOLL);
    cr_assert_str_eq(c.keys, "/etc/rapi/k#1");
    cr_assert_eq(c.log_level, LOG_DEBUG);
    cr_assert_eq(c.nlisten, 2);
    cr_assert_str_eq(c.listen[0], "0.0.0.0:80");
    cr_assert_str_eq(c.listen[1], "[::]:80");
}

Test(conf, file_last_line_without_newline)
{
    cr_assert_eq(parse("workers 3\nmax_pipes 7"), 0, "%s", err);
    cr_assert_eq(c.workers, 3);
    cr_assert_eq(c.max_pipes, 7);
    cr_assert_eq(parse(""), 0);
    cr_assert_eq(parse("\n\n#\n"), 0);
}

Test(conf, file_unknown_keyword_names_file_line_keyword)
{
    cr_assert_eq(parse("workers 2\n\nbogus 1\n"), -EINVAL);
    cr_assert_str_eq(err, "test.conf:3: unknown keyword 'bogus'");
    cr_assert_eq(parse("workers=2\n"), -EINVAL);
    cr_assert_str_eq(err, "test.conf:1: unknown keyword 'workers=2'");
    cr_assert_eq(parse("Workers 2\n"), -EINVAL, "keywords are case-sensitive");
}

Test(conf, file_bad_value_names_file_line_keyword)
{
    cr_assert_eq(parse("# x\nworkers 2\ntimeout -5\n"), -EINVAL);
    cr_assert_str_eq(err, "test.conf:3: timeout: '-5' is not a whole number");
    cr_assert_eq(c.workers, 0);
}

Test(conf, file_keyword_without_value)
{
    cr_assert_eq(parse("workers\n"), -EINVAL);
    cr_assert_str_eq(err, "test.conf:1: workers: missing value");
    cr_assert_eq(parse("keys   # nothing\n"), -EINVAL);
    cr_assert_str_eq(err, "test.conf:1: keys: missing value");
}

Test(conf, file_value_with_two_words)
{
    cr_assert_eq(parse("workers 4 5\n"), -EINVAL);
    cr_assert_str_eq(err, "test.conf:1: workers: '4 5' is not a whole number");
}

Test(conf, file_long_lines)
{
    static char text[CONF_LINE_MAX + 16];
    size_t n;

    /* exactly CONF_LINE_MAX bytes: accepted */
    memcpy(text, "keys /", 6);
    memset(text + 6, 'a', CONF_LINE_MAX - 6);
    text[CONF_LINE_MAX] = '\n';
    n = CONF_LINE_MAX + 1;
    cr_assert_eq(conf_parse(&c, text, n, "t", err, sizeof err), 0, "%s", err);
    cr_assert_eq(strlen(c.keys), CONF_LINE_MAX - 5);
    /* one more: refused, and the comment trick does not help */
    text[0] = '#';
    text[CONF_LINE_MAX] = 'a';
    text[CONF_LINE_MAX + 1] = '\n';
    cr_assert_eq(conf_parse(&c, text, n + 1, "t", err, sizeof err), -EINVAL);
    cr_assert_str_eq(err, "t:1: line longer than 4096 bytes");
}

Test(conf, file_nul_byte)
{
    static const char text[] = "workers 2\nio e\0poll\n";

    cr_assert_eq(conf_parse(&c, text, sizeof text - 1, "t", err, sizeof err), -EINVAL);
    cr_assert_str_eq(err, "t:2: NUL byte in line");
}

Test(conf, assignment)
{
    cr_assert_eq(conf_set_assignment(&c, "max_waiting=5", err, sizeof err), 0, "%s", err);
    cr_assert_eq(c.max_waiting, 5);
    cr_assert_eq(conf_set_assignment(&c, "keys=/a=b", err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(c.keys, "/a=b");
    cr_assert_eq(conf_set_assignment(&c, "max_waiting", err, sizeof err), -EINVAL);
    cr_assert_str_eq(err, "'max_waiting': expected KEYWORD=VALUE");
    cr_assert_eq(conf_set_assignment(&c, "max_waiting=", err, sizeof err), -EINVAL);
    cr_assert_str_eq(err, "max_waiting: missing value");
    cr_assert_eq(conf_set_assignment(&c, "nope=1", err, sizeof err), -EINVAL);
    cr_assert_str_eq(err, "unknown keyword 'nope'");
    cr_assert_eq(
        conf_set_assignment(&c, "a_very_long_keyword_nobody_has_ever_seen=1", err, sizeof err),
        -EINVAL);
    cr_assert_str_eq(err, "unknown keyword 'a_very_long_keyword_nobody_has_ever_seen'");
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

Test(conf, load)
{
    char dir[] = "/tmp/conf_test.XXXXXX", path[64], missing[64];

    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/rapi-server.conf", dir);
    snprintf(missing, sizeof missing, "%s/missing.conf", dir);
    write_file(path, "workers 2\nlisten [::1]:0\n");
    cr_assert_eq(conf_load(&c, path, err, sizeof err), 0, "%s", err);
    cr_assert_eq(c.workers, 2);
    cr_assert_str_eq(c.listen[0], "[::1]:0");

    cr_assert_eq(conf_load(&c, missing, err, sizeof err), -ENOENT);
    cr_assert(strstr(err, missing) == err && strstr(err, ": No such file") != NULL, "%s", err);
    cr_assert_eq(conf_load(&c, dir, err, sizeof err), -EISDIR, "%s", err);

    write_file(path, "workers 2\nworkers x\n");
    cr_assert_eq(conf_load(&c, path, err, sizeof err), -EINVAL);
    cr_assert(strstr(err, ".conf:2: workers: 'x'") != NULL, "%s", err);
    unlink(path);
    rmdir(dir);
}

Test(conf, load_too_large)
{
    char path[] = "/tmp/conf_test_big.XXXXXX";
    int fd = mkstemp(path);

    cr_assert_neq(fd, -1);
    cr_assert_eq(ftruncate(fd, CONF_FILE_MAX + 1), 0);
    close(fd);
    cr_assert_eq(conf_load(&c, path, err, sizeof err), -EFBIG);
    cr_assert(strstr(err, "larger than") != NULL, "%s", err);
    unlink(path);
}

Test(conf, validate)
{
    struct conf v;

    v = c, v.nlisten = 0;
    cr_assert_eq(conf_validate(&v, err, sizeof err), -EINVAL);
    cr_assert_str_eq(err, "listen: 0 addresses (1..16)");
    v = c, strcpy(v.listen[0], "nonsense");
    cr_assert_eq(conf_validate(&v, err, sizeof err), -EINVAL);
    v = c, v.nlisten = 2, strcpy(v.listen[1], v.listen[0]);
    cr_assert_eq(conf_validate(&v, err, sizeof err), -EINVAL);
    cr_assert(strstr(err, "given twice") != NULL, "%s", err);
    v = c, v.workers = -1;
    cr_assert_eq(conf_validate(&v, err, sizeof err), -EINVAL);
    cr_assert_str_eq(err, "workers: -1 is out of range (0..256)");
    v = c, v.workers = 257;
    cr_assert_eq(conf_validate(&v, err, sizeof err), -EINVAL);
    v = c, v.timeout = 0;
    cr_assert_eq(conf_validate(&v, err, sizeof err), -EINVAL);
    v = c, v.keepalive = 0;
    cr_assert_eq(conf_validate(&v, err, sizeof err), 0, "%s", err);
    v = c, v.pipe_size = 100;
    cr_assert_eq(conf_validate(&v, err, sizeof err), -EINVAL);
    v = c, v.max_header = (size_t)-1;
    cr_assert_eq(conf_validate(&v, err, sizeof err), -EINVAL);
    v = c, v.max_connections = -5;
    cr_assert_eq(conf_validate(&v, err, sizeof err), -EINVAL);
    v = c, v.io = (enum conf_io)3;
    cr_assert_eq(conf_validate(&v, err, sizeof err), -EINVAL);
    cr_assert_str_eq(err, "io: invalid value 3");
    v = c, v.log_level = (enum log_level)4;
    cr_assert_eq(conf_validate(&v, err, sizeof err), -EINVAL);
    v = c, v.keys[0] = '\0';
    cr_assert_eq(conf_validate(&v, err, sizeof err), -EINVAL);
    cr_assert_str_eq(err, "keys: empty or unterminated path");
}

Test(conf, tls_keywords)
{
    cr_assert_eq(c.tls_cert.n, 0);
    cr_assert_eq(c.tls_min_version, 12);
    cr_assert_eq(c.tls_ciphers[0], '\0');
    cr_assert_eq(parse("tls_cert /a/one.pem\ntls_key /a/one.key\n"
                       "tls_cert /a/two.pem\ntls_key /a/two.key\n"
                       "tls_min_version 1.3\ntls_ciphers TLS13-AES128-GCM-SHA256\n"),
                 0, "%s", err);
    cr_assert_eq(c.tls_cert.n, 2);
    cr_assert_str_eq(c.tls_cert.path[1], "/a/two.pem");
    cr_assert_str_eq(c.tls_key.path[0], "/a/one.key");
    cr_assert_eq(c.tls_min_version, 13);
    cr_assert_str_eq(c.tls_ciphers, "TLS13-AES128-GCM-SHA256");
    cr_assert_eq(conf_validate(&c, err, sizeof err), 0, "%s", err);
    cr_assert_eq(set("tls_min_version", "1.1"), -EINVAL);
    cr_assert_str_eq(err, "tls_min_version: '1.1' is not one of 1.2, 1.3");
    cr_assert_eq(set("tls_min_version", "1.2"), 0);
    cr_assert_eq(c.tls_min_version, 12);
}

Test(conf, tls_pairs_and_listeners_checked)
{
    cr_assert_eq(set("listen", "127.0.0.1:8443 tls"), 0, "%s", err);
    cr_assert_eq(conf_validate(&c, err, sizeof err), -EINVAL);
    cr_assert_str_eq(err, "listen 127.0.0.1:8443 tls: no certificate (set tls_cert and tls_key)");
    cr_assert_eq(set("tls_cert", "/a/c.pem"), 0);
    cr_assert_eq(conf_validate(&c, err, sizeof err), -EINVAL);
    cr_assert_str_eq(err, "tls_cert/tls_key: 1 certificates but 0 keys (they go by pairs)");
    cr_assert_eq(set("tls_key", "/a/k.pem"), 0);
    cr_assert_eq(conf_validate(&c, err, sizeof err), 0, "%s", err);
    for (int i = 1; i < CONF_TLS_PAIRS; i++)
        cr_assert_eq(set("tls_cert", "/a/c.pem"), 0);
    cr_assert_eq(set("tls_cert", "/a/c.pem"), -EINVAL);
    cr_assert_str_eq(err, "tls_cert: more than 16 files");
}

/* ---- conf_keywords[] against rapi-server.conf(5) ---- */

TestSuite(manpage, .init = setup);

#define MAN_MAX_KEYWORDS 64

struct man_entry {
    char name[64];
    char text[4096]; /* the entry's body, up to the next .TP or .SH */
};

static size_t man_keywords(struct man_entry *out, size_t cap)
{
    FILE *f = fopen(MANPAGE, "r");
    char line[1024];
    bool in_section = false, after_tp = false;
    size_t n = 0;

    cr_assert_not_null(f, "cannot open %s (tests run from the repo root)", MANPAGE);
    while (fgets(line, sizeof line, f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        if (strncmp(line, ".SH", 3) == 0) {
            in_section = strstr(line, "KEYWORDS") != NULL;
            after_tp = false;
            continue;
        }
        if (!in_section)
            continue;
        if (strcmp(line, ".TP") == 0) {
            after_tp = true;
            continue;
        }
        if (after_tp && strncmp(line, ".B ", 3) == 0 && n < cap) {
            snprintf(out[n].name, sizeof out[n].name, "%.63s", line + 3);
            out[n++].text[0] = '\0';
        } else if (n > 0) {
            size_t used = strlen(out[n - 1].text);
            snprintf(out[n - 1].text + used, sizeof out[n - 1].text - used, "%s\n", line);
        }
        after_tp = false;
    }
    fclose(f);
    return n;
}

static const struct man_entry *man_find(const struct man_entry *m, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(m[i].name, name) == 0)
            return &m[i];
    return NULL;
}

/* "needle" occurs in hay, not followed by another digit ("Default: 60" must
 * not be satisfied by "Default: 600"). */
static bool has_phrase(const char *hay, const char *needle)
{
    size_t n = strlen(needle);

    for (const char *p = strstr(hay, needle); p != NULL; p = strstr(p + 1, needle))
        if (p[n] < '0' || p[n] > '9')
            return true;
    return false;
}

Test(manpage, every_keyword_documented_and_every_documented_keyword_exists)
{
    static struct man_entry m[MAN_MAX_KEYWORDS];
    size_t n = man_keywords(m, MAN_MAX_KEYWORDS);

    cr_assert_gt(n, 0, "no '.TP' + '.B keyword' entries under .SH KEYWORDS in %s", MANPAGE);
    for (size_t i = 0; conf_keywords[i] != NULL; i++)
        cr_expect_not_null(man_find(m, n, conf_keywords[i]), "keyword '%s' is not in %s",
                           conf_keywords[i], MANPAGE);
    for (size_t i = 0; i < n; i++)
        cr_expect_not_null(conf_row_find(m[i].name), "%s documents '%s', which conf.c lacks",
                           MANPAGE, m[i].name);
}

Test(manpage, defaults_and_ranges_match_the_table)
{
    static struct man_entry m[MAN_MAX_KEYWORDS];
    size_t n = man_keywords(m, MAN_MAX_KEYWORDS);
    char want[128];

    for (size_t i = 0; i < CONF_NROWS; i++) {
        const struct conf_row *r = &conf_rows[i];
        const struct man_entry *e = man_find(m, n, r->name);

        if (e == NULL)
            continue; /* reported by the test above */
        snprintf(want, sizeof want, "Default: %s", r->def);
        cr_expect(has_phrase(e->text, want), "%s: the man page lacks '%s'", r->name, want);
        if (r->type != T_INT && r->type != T_LONG && r->type != T_SIZE)
            continue;
        snprintf(want, sizeof want, "Range: %lld to %lld", r->min, r->max);
        cr_expect(has_phrase(e->text, want), "%s: the man page lacks '%s'", r->name, want);
    }
}

/* The example configuration in the man page parses and validates. */
Test(manpage, example_parses)
{
    FILE *f = fopen(MANPAGE, "r");
    char line[1024], text[4096] = "";
    bool in_examples = false, in_block = false, done = false;

    cr_assert_not_null(f, "cannot open %s", MANPAGE);
    while (!done && fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, ".SH", 3) == 0)
            in_examples = strstr(line, "EXAMPLES") != NULL;
        else if (in_examples && strncmp(line, ".nf", 3) == 0)
            in_block = true;
        else if (in_block && strncmp(line, ".fi", 3) == 0)
            done = true;
        else if (in_block) {
            size_t used = strlen(text);
            for (const char *p = line; *p != '\0' && used + 1 < sizeof text; p++) {
                if (p[0] == '\\' && p[1] == '-')
                    continue; /* "\-" is a plain '-' */
                text[used++] = *p;
            }
            text[used] = '\0';
        }
    }
    fclose(f);
    cr_assert(done, "no .nf/.fi example block under .SH EXAMPLES in %s", MANPAGE);
    cr_assert_eq(conf_parse(&c, text, strlen(text), MANPAGE, err, sizeof err), 0, "%s", err);
    cr_assert_eq(conf_validate(&c, err, sizeof err), 0, "%s", err);
    cr_assert_eq(c.nlisten, 2);
    cr_assert_eq(c.workers, 4);
    cr_assert_eq(c.max_header, 16384);
}

Test(conf, admin_off_or_one_address)
{
    cr_assert_str_eq(c.admin, "off");
    cr_assert_eq(conf_set(&c, "admin", "127.0.0.1:9100", err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(c.admin, "127.0.0.1:9100");
    cr_assert_eq(conf_set(&c, "admin", "[::1]:0", err, sizeof err), 0, "%s", err);
    cr_assert_eq(conf_set(&c, "admin", "off", err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(c.admin, "off");
    cr_assert_eq(conf_set(&c, "admin", "localhost:9100", err, sizeof err), -EINVAL);
    cr_assert(strstr(err, "admin:") == err, "%s", err);
    cr_assert_eq(conf_set(&c, "admin", "on", err, sizeof err), -EINVAL);
    cr_assert_eq(conf_validate(&c, err, sizeof err), 0, "%s", err);
}

Test(conf, admin_off_loopback_needs_a_token)
{
    struct conf d;

    conf_defaults(&d);
    cr_assert_eq(conf_set(&d, "admin", "127.0.0.2:9100", err, sizeof err), 0);
    cr_assert_eq(conf_validate(&d, err, sizeof err), 0, "%s", err);
    cr_assert_eq(conf_set(&d, "admin", "[::1]:9100", err, sizeof err), 0);
    cr_assert_eq(conf_validate(&d, err, sizeof err), 0, "%s", err);
    cr_assert_eq(conf_set(&d, "admin", "0.0.0.0:9100", err, sizeof err), 0);
    cr_assert_eq(conf_validate(&d, err, sizeof err), -EINVAL);
    cr_assert(strstr(err, "admin_token_file") != NULL, "%s", err);
    cr_assert_eq(conf_set(&d, "admin", "[::]:9100", err, sizeof err), 0);
    cr_assert_eq(conf_validate(&d, err, sizeof err), -EINVAL);
    cr_assert_eq(conf_set(&d, "admin_token_file", "/etc/rapi/admin.token", err, sizeof err), 0);
    cr_assert_eq(conf_validate(&d, err, sizeof err), 0, "%s", err);
}
