/* The rapi CLI's helpers (cli/cli_util.c) and its byte pump
 * (cli/cli_pump.c): URLs for logs, key precedence, local sockets, the
 * thread spawner, half-close and reset forwarding over real loopback TCP. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli_pump.c"
#include "cli/cli_util.c"

Test(cli, url_safe_drops_the_key)
{
    char out[128];

    cli_url_safe("rws://s3cret@127.0.0.1:9/p", out, sizeof(out));
    cr_expect_str_eq(out, "rws://127.0.0.1:9/p");
    cli_url_safe("rwr://k@[::1]:8/a rwr://k2@h/b", out, sizeof(out));
    cr_expect_str_eq(out, "rwr://[::1]:8/a ...");
    cli_url_safe("http://x/", out, sizeof(out));
    cr_expect_str_eq(out, "(bad URL)");
}

Test(cli, urls_safe_joins_without_keys)
{
    const char *const urls[] = {"rws://k1@127.0.0.21:9/p", "rws://k2@relay.test/p",
                                "rwr://k@h/a rwr://k2@h/b"};
    char out[256], small[24];

    cli_urls_safe(urls, 3, out, sizeof(out));
    cr_expect_str_eq(out, "rws://127.0.0.21:9/p, rws://relay.test:80/p, rwr://h:80/a ...");
    cli_urls_safe(urls, 3, small, sizeof(small));
    cr_expect_eq(strlen(small), sizeof(small) - 1, "cut to fit");
    cr_expect_null(strstr(out, "k1"));
}

Test(cli, seconds_to_ms)
{
    cr_expect_eq(cli_seconds_ms("2"), 2000);
    cr_expect_eq(cli_seconds_ms("0.25"), 250);
    cr_expect_eq(cli_seconds_ms("0.0001"), 1, "a positive time is at least 1 ms");
    cr_expect_eq(cli_seconds_ms("0"), -EINVAL);
    cr_expect_eq(cli_seconds_ms("-1"), -EINVAL);
    cr_expect_eq(cli_seconds_ms("3s"), -EINVAL);
    cr_expect_eq(cli_seconds_ms(""), -EINVAL);
    cr_expect_eq(cli_seconds_ms("1e9"), -EINVAL);
}

Test(cli, split_hostport_forms)
{
    char host[64];
    const char *port;

    cr_expect_eq(split_hostport("[::1]:80", host, sizeof(host), &port), 0);
    cr_expect_str_eq(host, "::1");
    cr_expect_str_eq(port, "80");
    cr_expect_eq(split_hostport("localhost:8080", host, sizeof(host), &port), 0);
    cr_expect_str_eq(host, "localhost");
    cr_expect_eq(split_hostport("host:", host, sizeof(host), &port), -EINVAL);
    cr_expect_eq(split_hostport(":80", host, sizeof(host), &port), -EINVAL);
    cr_expect_eq(split_hostport("nocolon", host, sizeof(host), &port), -EINVAL);
    cr_expect_eq(split_hostport("toolong:1", host, 4, &port), -EINVAL);
}

static void write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

/* A one-URL list for cli_key. */
#define ONE(url) ((const char *const[]){url})

Test(cli, key_precedence)
{
    char dir[] = "/tmp/cli_test.XXXXXX", path[64], out[CLI_KEY_MAX];

    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/keys", dir);
    write_file(path, "server_key sk-0123456789abcdef\nclient_key ck-0123456789abcdef\n");
    unsetenv("RAPI_KEY");
    unsetenv("RAPI_KEY_FILE");
    cr_expect_eq(cli_key(RAPI_ROLE_CLIENT, NULL, ONE("rwr://h/p"), 1, out), -EINVAL,
                 "no key anywhere");
    setenv("RAPI_KEY_FILE", path, 1);
    cr_expect_eq(cli_key(RAPI_ROLE_SERVER, NULL, ONE("rws://h/p"), 1, out), 0);
    cr_expect_str_eq(out, "sk-0123456789abcdef");
    setenv("RAPI_KEY", "env-key-0123456789", 1);
    cr_expect_eq(cli_key(RAPI_ROLE_SERVER, NULL, ONE("rws://h/p"), 1, out), 0);
    cr_expect_str_eq(out, "env-key-0123456789", "RAPI_KEY before RAPI_KEY_FILE");
    setenv("RAPI_KEY", "short", 1);
    cr_expect_eq(cli_key(RAPI_ROLE_SERVER, NULL, ONE("rws://h/p"), 1, out), -EINVAL,
                 "the key file's length rule holds for RAPI_KEY too");
    setenv("RAPI_KEY", "env-key-0123456789", 1);
    cr_expect_eq(cli_key(RAPI_ROLE_CLIENT, NULL, ONE("rwr://urlkey@h/p"), 1, out), 0);
    cr_expect_str_eq(out, "", "the URL's own key before the environment");
    cr_expect_eq(cli_key(RAPI_ROLE_CLIENT, path, ONE("rwr://urlkey@h/p"), 1, out), 0);
    cr_expect_str_eq(out, "ck-0123456789abcdef", "--key-file before everything");
    {
        const char *const both[] = {"rwr://urlkey@h1/p", "rwr://urlkey@h2/p"};
        const char *const one[] = {"rwr://urlkey@h1/p", "rwr://h2/p"};

        cr_expect_eq(cli_key(RAPI_ROLE_CLIENT, NULL, both, 2, out), 0);
        cr_expect_str_eq(out, "", "every URL has its key");
        cr_expect_eq(cli_key(RAPI_ROLE_CLIENT, NULL, one, 2, out), 0);
        cr_expect_str_eq(out, "env-key-0123456789", "a URL without a key: the environment's");
    }
    chmod(path, 0644);
    cr_expect_lt(cli_key(RAPI_ROLE_CLIENT, path, ONE("rwr://h/p"), 1, out), 0, "group-readable");
    unsetenv("RAPI_KEY");
    unsetenv("RAPI_KEY_FILE");
    unlink(path);
    rmdir(dir);
}

static atomic_int spawned;

static void *spawn_fn(void *arg)
{
    atomic_store(&spawned, *(int *)arg);
    return NULL;
}

Test(cli, spawn_runs_detached)
{
    static int v = 42;
    int i;

    cr_assert_eq(cli_spawn(spawn_fn, &v), 0);
    for (i = 0; i < 200 && atomic_load(&spawned) != 42; i++)
        usleep(5000);
    cr_expect_eq(atomic_load(&spawned), 42);
}

Test(cli, tcp_listen_and_connect_on_loopback)
{
    char bound[64], hp[64];
    int lfd, c, s, v = 0;
    socklen_t l = sizeof(v);

    lfd = cli_tcp_listen("127.0.0.1:0", bound, sizeof(bound));
    cr_assert_geq(lfd, 0);
    cr_expect_neq(strcmp(bound, "127.0.0.1:0"), 0, "the bound port is reported: %s", bound);
    snprintf(hp, sizeof(hp), "%s", bound);
    c = cli_tcp_connect(hp, 1000);
    cr_assert_geq(c, 0, "%s", strerror(-c));
    cr_expect_not(fcntl(c, F_GETFL) & O_NONBLOCK, "connected sockets are blocking");
    cr_expect_eq(getsockopt(c, IPPROTO_TCP, TCP_NODELAY, &v, &l), 0);
    cr_expect_eq(v, 1);
    s = accept(lfd, NULL, NULL);
    cr_expect_geq(s, 0);
    close(s);
    close(c);
    close(lfd);
    cr_expect_eq(cli_tcp_connect(bound, 1000), -ECONNREFUSED);
    cr_expect_eq(cli_tcp_connect("nocolon", 1000), -EINVAL);
    cr_expect_eq(cli_tcp_listen("not an address", bound, sizeof(bound)), -EINVAL);
}

/* ---- the pump between two loopback TCP connections: the CLI's ends a and
 * b, the outside world's a_peer and b_peer. */

struct pump_rig {
    int a, b, a_peer, b_peer;
    struct pump_stats st;
    pthread_t t;
};

static void tcp_pair(int lfd, const char *bound, int *mine, int *peer)
{
    *peer = cli_tcp_connect(bound, 1000);
    cr_assert_geq(*peer, 0);
    *mine = accept(lfd, NULL, NULL);
    cr_assert_geq(*mine, 0);
}

static void *pump_thread(void *arg)
{
    struct pump_rig *r = arg;

    pump_run(r->a, r->a, r->b, false, &r->st);
    close(r->a); /* as the CLI does */
    close(r->b);
    return NULL;
}

static void rig_start(struct pump_rig *r)
{
    char bound[64];
    int lfd = cli_tcp_listen("127.0.0.1:0", bound, sizeof(bound));

    signal(SIGPIPE, SIG_IGN);
    cr_assert_geq(lfd, 0);
    memset(r, 0, sizeof(*r));
    tcp_pair(lfd, bound, &r->a, &r->a_peer);
    tcp_pair(lfd, bound, &r->b, &r->b_peer);
    close(lfd);
    cr_assert_eq(pthread_create(&r->t, NULL, pump_thread, r), 0);
}

static void rig_finish(struct pump_rig *r)
{
    pthread_join(r->t, NULL);
    close(r->a_peer);
    close(r->b_peer);
}

static void reset_close(int fd)
{
    cr_assert_eq(anet_linger_zero(fd), 0);
    close(fd);
}

/* How fd's reading side ends after any data: 0 at EOF, else -errno. */
static int read_end(int fd)
{
    char buf[256];
    ssize_t n;

    while ((n = read(fd, buf, sizeof(buf))) > 0)
        ;
    return n == 0 ? 0 : -errno;
}

Test(cli_pump, half_close_is_forwarded_both_ways)
{
    struct pump_rig r;
    char buf[8] = "";

    rig_start(&r);
    cr_assert_eq(write(r.b_peer, "from b", 6), 6);
    shutdown(r.b_peer, SHUT_WR);
    cr_expect_eq(read(r.a_peer, buf, 6), 6);
    cr_expect_eq(read_end(r.a_peer), 0, "b's FIN reaches a as EOF");
    cr_assert_eq(write(r.a_peer, "late", 4), 4, "a can still send after its EOF");
    shutdown(r.a_peer, SHUT_WR);
    cr_expect_eq(read(r.b_peer, buf, 4), 4);
    cr_expect_eq(memcmp(buf, "late", 4), 0);
    cr_expect_eq(read_end(r.b_peer), 0);
    rig_finish(&r);
    cr_expect_not(r.st.reset);
    cr_expect_eq(r.st.a_to_b, 4);
    cr_expect_eq(r.st.b_to_a, 6);
}

Test(cli_pump, reset_from_b_reaches_a_as_a_reset)
{
    struct pump_rig r;
    char buf[8];

    rig_start(&r);
    cr_assert_eq(write(r.b_peer, "x", 1), 1);
    cr_expect_eq(read(r.a_peer, buf, 1), 1);
    reset_close(r.b_peer);
    r.b_peer = -1;
    cr_expect_eq(read_end(r.a_peer), -ECONNRESET);
    rig_finish(&r);
    cr_expect(r.st.reset);
}

Test(cli_pump, reset_from_a_reaches_b_as_a_reset)
{
    struct pump_rig r;
    char buf[8];

    rig_start(&r);
    cr_assert_eq(write(r.a_peer, "y", 1), 1);
    cr_expect_eq(read(r.b_peer, buf, 1), 1);
    reset_close(r.a_peer);
    r.a_peer = -1;
    cr_expect_eq(read_end(r.b_peer), -ECONNRESET);
    rig_finish(&r);
    cr_expect(r.st.reset);
}
