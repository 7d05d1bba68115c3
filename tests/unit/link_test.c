/* The link pump through the transport seam, with a fake transport whose
 * reads and writes are scripted (tests/unit/fake_xprt.h): EAGAIN, short
 * writes, end of stream and errors on demand. The fake cannot splice, so
 * the copy path runs whatever the pipe pool allows. Then the same pump over
 * the raw transport on loopback TCP. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <malloc.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "engine/link.c"
#include "fake_xprt.h"

static struct relay relay;
static struct shard sh;
static struct fake cli, srv; /* the client's and the server's side */
/* The links' path: pinned, so that no link's close frees it (it is in no
 * map here); it counts their references. */
static struct lpath *tpath;

static void setup(void)
{
    fake_reset(&cli);
    fake_reset(&srv);
    memset(&relay, 0, sizeof(relay));
    atomic_store(&relay.nconn, 2);
    memset(&sh, 0, sizeof(sh));
    sh.relay = &relay;
    sh.conf.pipe_size = 64 * 1024;
    sh.now = 1000;
    wheel_init(&sh.wheel, sh.now);
    dlist_init(&sh.links);
    dlist_init(&sh.ready);
    tpath = calloc(1, sizeof(*tpath) + sizeof("/t"));
    cr_assert_not_null(tpath);
    tpath->sh = &sh;
    tpath->pins = 1;
    memcpy(tpath->path, "/t", sizeof("/t"));
    tpath->path_len = 2;
    pipepool_init(&sh.pool, 16, sh.conf.pipe_size); /* splicing allowed */
    cr_assert_eq(ev_init(&sh.loop, &ev_backend_epoll), 0);
}

static void teardown(void)
{
    link_close_all(&sh, "test over");
    cr_assert_eq(tpath->nlinks, 0, "every link let go of its path");
    free(tpath);
    cr_assert_eq(sh.pool.live, 0, "a transport that cannot splice never takes a pipe");
    pipepool_fini(&sh.pool);
    ev_fini(&sh.loop);
}

static void fill(struct fake *f, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        f->in[i] = (char)((i * 7 + i / 251 + seed) & 0xff);
    f->in_len = n;
}

static char *dup_head(const char *s, size_t *len)
{
    *len = strlen(s);
    return strdup(s);
}

/* A link between the fakes with short heads, after the events its watches
 * report when added: both ends writable, the client readable. */
static struct link *make_link(void)
{
    struct link *l;
    struct link_args a = {.client = fake_conn(&cli),
                          .server = fake_conn(&srv),
                          .timeout_s = 60,
                          .p = tpath,
                          .peer = "127.0.0.1:1"};

    a.to_client = dup_head("C101|", &a.to_client_len);
    a.to_server = dup_head("S101|early|", &a.to_server_len);
    cr_assert_eq(link_new(&sh, &a), 0);
    cr_assert_eq(sh.nlinks, 1);
    l = CONTAINER(sh.links.next, struct link, node);
    link_event(l, EV_IN | EV_OUT, 0);
    return l;
}

/* What the event loop would do: run queued pumps until none is left. */
static void settle(void)
{
    for (int i = 0; i < 1000 && !dlist_empty(&sh.ready); i++)
        link_run_ready(&sh);
    cr_assert(dlist_empty(&sh.ready), "the pump settles");
}

static void assert_got(const struct fake *to, const char *head, const struct fake *from, size_t n)
{
    size_t h = strlen(head);

    cr_assert_eq(to->out_len, h + n, "delivered %zu, want %zu", to->out_len, h + n);
    cr_assert(memcmp(to->out, head, h) == 0, "the head goes first");
    cr_assert(memcmp(to->out + h, from->in, n) == 0, "bytes in order, none lost");
}

Test(link, order_and_no_loss_with_short_writes, .init = setup, .fini = teardown)
{
    size_t n = 300 * 1000; /* several copy buffers */

    fill(&cli, n, 1);
    srv.chunk = 999; /* every write short */
    make_link();
    settle();
    assert_got(&srv, "S101|early|", &cli, n);
    cr_assert_eq(cli.out_len, 5, "the client got its 101 only");
    cr_assert_not(srv.shut, "no FIN: the client did not end");
    cr_assert_not(cli.closed);
}

Test(link, half_close_is_forwarded_and_both_ends_close_cleanly, .init = setup, .fini = teardown)
{
    struct link *l;

    fill(&cli, 1000, 2);
    cli.in_eof = true;
    l = make_link();
    settle();
    assert_got(&srv, "S101|early|", &cli, 1000);
    cr_assert(srv.shut, "the client's FIN reaches the server");
    cr_assert_not(cli.shut, "the other direction stays open");
    cr_assert_not(srv.closed, "a half-closed link lives on");
    /* The server answers after the client's FIN, then ends too. */
    fill(&srv, 5000, 3);
    srv.in_eof = true;
    link_event(l, EV_IN | EV_RDHUP, 1);
    settle();
    assert_got(&cli, "C101|", &srv, 5000);
    cr_assert(cli.shut);
    cr_assert(cli.closed && srv.closed, "both directions ended: closed");
    cr_assert_not(cli.reset || srv.reset, "a clean end is not a reset");
    cr_assert_eq(sh.nlinks, 0);
    cr_assert_eq(atomic_load(&relay.nconn), 0);
}

Test(link, backpressure_no_read_while_the_other_side_is_full, .init = setup, .fini = teardown)
{
    size_t n = 200 * 1000, head = strlen("S101|early|");
    struct link *l;

    fill(&cli, n, 4);
    srv.room = 0; /* the server takes nothing, not even the head */
    l = make_link();
    settle();
    cr_assert_eq(cli.rcv_calls, 0, "nothing read while the head cannot go");
    cr_assert_not_null(l->hold[0], "the unsent head waits in a hold");
    cr_assert(l->hold[0] != &link_lent[0], "of the link's own, not the pump's");
    cr_assert_null(l->hold[1], "the client's 101 went: nothing held");
    srv.room = head + 100;
    link_event(l, EV_OUT, 1);
    settle();
    cr_assert_eq(cli.in_off, LINK_SMALL_BUF, "one buffer read, no more");
    cr_assert_eq(srv.out_len, head + 100);
    /* The client stays readable, but there is nowhere to put bytes. */
    link_event(l, EV_IN, 0);
    settle();
    cr_assert_eq(cli.in_off, LINK_SMALL_BUF, "still no more read");
    cr_assert(l->hold[0] && l->hold[0]->buf && l->hold[0]->buf != link_scratch,
              "the bytes that could not go wait in a buffer of the direction's own");
    srv.room = SIZE_MAX;
    link_event(l, EV_OUT, 1);
    settle();
    assert_got(&srv, "S101|early|", &cli, n);
    cr_assert_null(l->hold[0], "all sent: the buffer and the hold are gone");
}

/* Memory per idle tunnel (issue 13): once the heads are sent and no byte
 * waits, a pair holds its struct link only, in jemalloc's 192-byte class. */
Test(link, an_idle_pair_holds_nothing_but_itself, .init = setup, .fini = teardown)
{
    struct link *l;

    cli.in_len = 0; /* the client sends nothing */
    l = make_link();
    settle();
    cr_assert_eq(srv.out_len, strlen("S101|early|"));
    cr_assert_eq(cli.out_len, strlen("C101|"));
    cr_assert_null(l->hold[0]);
    cr_assert_null(l->hold[1]);
    cr_assert_leq(malloc_usable_size(l), 192, "%zu bytes", malloc_usable_size(l));
    cr_assert_str_eq(l->peer, "127.0.0.1:1");
    cr_assert_eq(tpath->nlinks, 1, "the link holds its path");
}

Test(link, eagain_on_read_waits_for_the_next_event, .init = setup, .fini = teardown)
{
    struct link *l = make_link();

    settle();
    cr_assert_eq(srv.out_len, strlen("S101|early|"));
    cr_assert_geq(cli.rcv_calls, 1);
    cr_assert_not(l->flags & LF_READABLE(0), "EAGAIN ends readability");
    cr_assert_eq(l->end[0].c.want, XPRT_WANT_IN, "and says what it waits for");
    fill(&cli, 10, 5);
    link_event(l, EV_IN, 0);
    settle();
    assert_got(&srv, "S101|early|", &cli, 10);
}

Test(link, write_error_closes_with_a_reset, .init = setup, .fini = teardown)
{
    struct link *l;

    fill(&cli, 100000, 6);
    srv.room = 500;
    l = make_link();
    settle();
    srv.snd_err = -EPIPE;
    srv.room = SIZE_MAX;
    link_event(l, EV_OUT, 1);
    settle();
    cr_assert(cli.closed && srv.closed, "an error closes both ends");
    cr_assert(cli.reset && srv.reset, "as a reset");
    cr_assert_eq(sh.nlinks, 0);
}

Test(link, read_error_closes_with_a_reset, .init = setup, .fini = teardown)
{
    struct link *l = make_link();

    settle();
    srv.rcv_err = -ECONNRESET;
    link_event(l, EV_IN, 1);
    settle();
    cr_assert(cli.closed && srv.closed);
    cr_assert(cli.reset && srv.reset);
    cr_assert_eq(atomic_load(&relay.nconn), 0);
}

Test(link, budget_queues_a_busy_link_for_later, .init = setup, .fini = teardown)
{
    size_t n = (LINK_PUMP_BUDGET + 4) * LINK_COPY_BUF;

    fill(&cli, n, 7);
    make_link();
    cr_assert_not(dlist_empty(&sh.ready), "a link that used its budget waits its turn");
    cr_assert_lt(srv.out_len, n, "not all in one turn");
    settle();
    assert_got(&srv, "S101|early|", &cli, n);
}

/* A transport whose read needs the socket writable first (TLS during a
 * renegotiation): the end stays readable and the read is retried on EV_OUT. */
Test(link, read_that_wants_out_is_retried_when_writable, .init = setup, .fini = teardown)
{
    struct link *l;

    fill(&cli, 3000, 8);
    cli.rcv_wants_out = 1;
    l = make_link();
    settle();
    cr_assert_eq(srv.out_len, strlen("S101|early|"), "nothing read yet");
    cr_assert(l->flags & LF_READABLE(0), "still readable: the transport waits for room");
    cr_assert_not(l->flags & LF_WRITABLE(0));
    link_event(l, EV_OUT, 0);
    settle();
    assert_got(&srv, "S101|early|", &cli, 3000);
}

/* ------------------------------------------------------------ raw transport */

/* A connected loopback TCP pair: *a is ours (nonblocking, the link's end),
 * *b the peer's. */
static void tcp_pair(int *a, int *b)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    cr_assert_geq(l, 0);
    cr_assert_eq(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cr_assert_eq(listen(l, 1), 0);
    cr_assert_eq(getsockname(l, (struct sockaddr *)&sa, &len), 0);
    *b = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    cr_assert_geq(*b, 0);
    cr_assert(connect(*b, (struct sockaddr *)&sa, sizeof(sa)) == 0 || errno == EINPROGRESS);
    *a = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    cr_assert_geq(*a, 0);
    close(l);
}

/* Send all of up from peer pa while reading at peer pb, turning the loop in
 * between; then pa's FIN must reach pb. Returns what pb got. */
static size_t relay_through(int pa, int pb, const char *up, size_t n, char *got, size_t cap)
{
    size_t sent = 0, recvd = 0;
    bool fin = false, shut = false;

    for (int turn = 0; turn < 20000 && !fin; turn++) {
        ssize_t k;

        if (sent < n && (k = send(pa, up + sent, n - sent, MSG_NOSIGNAL)) > 0)
            sent += (size_t)k;
        if (sent == n && !shut) {
            cr_assert_eq(shutdown(pa, SHUT_WR), 0);
            shut = true;
        }
        cr_assert_eq(ev_wait(&sh.loop, 5), 0);
        link_run_ready(&sh);
        while ((k = recv(pb, got + recvd, cap - recvd, 0)) > 0)
            recvd += (size_t)k;
        fin = k == 0;
    }
    cr_assert(fin, "the FIN came through");
    return recvd;
}

static void raw_setup(void)
{
    setup();
    sh.loop.clock = &sh.now;
}

static void raw_teardown(void)
{
    link_close_all(&sh, "test over");
    cr_assert_eq(tpath->nlinks, 0, "every link let go of its path");
    free(tpath);
    pipepool_fini(&sh.pool);
    cr_assert_eq(sh.pool.live, 0, "every pipe came back");
    ev_fini(&sh.loop);
}

/* A link over two loopback pairs, heads "C|" and "S|"; *cb is the
 * client's peer, *sb the server's. */
static void raw_link(int *cb, int *sb)
{
    int ca, sa;
    struct link_args a = {.timeout_s = 60, .p = tpath, .peer = "127.0.0.1:2"};

    tcp_pair(&ca, cb);
    tcp_pair(&sa, sb);
    xconn_init_raw(&a.client, ca);
    xconn_init_raw(&a.server, sa);
    a.to_client = dup_head("C|", &a.to_client_len);
    a.to_server = dup_head("S|", &a.to_server_len);
    cr_assert_eq(link_new(&sh, &a), 0);
}

static void raw_pair_test(long max_pipes, bool want_splice, size_t N)
{
    static char up[3 << 20], got[(3 << 20) + 64];
    int cb, sb;
    size_t n;

    sh.pool.max = max_pipes;
    for (size_t i = 0; i < N; i++)
        up[i] = (char)(i * 13 + i / 4093);
    raw_link(&cb, &sb);
    n = relay_through(cb, sb, up, N, got, sizeof(got));
    cr_assert_eq(n, N + 2, "got %zu", n);
    cr_assert(memcmp(got, "S|", 2) == 0 && memcmp(got + 2, up, N) == 0, "in order, none lost");
    cr_assert_eq(sh.pool.created > 0, want_splice, "spliced: %lu pipes", sh.pool.created);
    cr_assert_eq(sh.stats.copy_fallbacks > 0, !want_splice && max_pipes == 0);
    close(cb);
    close(sb);
}

Test(link_raw, splices_between_sockets_and_forwards_fin, .init = raw_setup, .fini = raw_teardown)
{
    raw_pair_test(16, true, 3 << 20);
}

/* Bytes that never fill LINK_SMALL_BUF in one read are copied: no pipe,
 * and the FIN right behind them still comes through. */
Test(link_raw, small_bytes_are_copied_without_a_pipe, .init = raw_setup, .fini = raw_teardown)
{
    raw_pair_test(16, false, 100);
}

Test(link_raw, copies_when_no_pipe_is_allowed, .init = raw_setup, .fini = raw_teardown)
{
    raw_pair_test(0, false, 3 << 20);
}

/* Read what peer fd has until its end; -1 on a reset or a timeout. */
static ssize_t read_to_end(int fd, char *got, size_t cap)
{
    size_t n = 0;

    for (int turn = 0; turn < 2000; turn++) {
        ssize_t k = recv(fd, got + n, cap - n, 0);

        if (k == 0)
            return (ssize_t)n;
        if (k > 0) {
            n += (size_t)k;
            continue;
        }
        if (errno != EAGAIN)
            return -1;
        cr_assert_eq(ev_wait(&sh.loop, 5), 0);
        link_run_ready(&sh);
    }
    return -1;
}

/* Both sides end: the last FIN is left to close(), which must still be a
 * clean end of stream (not a reset) after every byte, on both sides. */
Test(link_raw, both_ends_finish_cleanly, .init = raw_setup, .fini = raw_teardown)
{
    int cb, sb;
    char got[64];

    raw_link(&cb, &sb);
    cr_assert_eq(send(cb, "up", 2, 0), 2);
    cr_assert_eq(shutdown(cb, SHUT_WR), 0);
    cr_assert_eq(read_to_end(sb, got, sizeof(got)), 4, "the server got the head, up and a FIN");
    cr_assert(memcmp(got, "S|up", 4) == 0);
    cr_assert_eq(send(sb, "down", 4, 0), 4);
    cr_assert_eq(shutdown(sb, SHUT_WR), 0);
    cr_assert_eq(read_to_end(cb, got, sizeof(got)), 6, "the client got the head, down and a FIN");
    cr_assert(memcmp(got, "C|down", 6) == 0);
    cr_assert_eq(sh.nlinks, 0, "both ended: closed");
    close(cb);
    close(sb);
}

/* A short read on a raw socket took all there was: the end waits for its
 * next edge with no probe for -EAGAIN (issue 13: syscalls per tunnel), and
 * bytes arriving later still come through. */
Test(link_raw, short_read_needs_no_eagain_probe, .init = raw_setup, .fini = raw_teardown)
{
    int cb, sb;
    char got[64];
    struct link *l;
    size_t n = 0;

    raw_link(&cb, &sb);
    l = CONTAINER(sh.links.next, struct link, node);
    for (int round = 0; round < 2; round++) {
        cr_assert_eq(send(cb, "ping", 4, 0), 4);
        for (int turn = 0; turn < 200 && n < 2 + 4 * (size_t)(round + 1); turn++) {
            ssize_t k;

            cr_assert_eq(ev_wait(&sh.loop, 5), 0);
            while ((k = recv(sb, got + n, sizeof(got) - n, 0)) > 0)
                n += (size_t)k;
        }
        cr_assert_eq(n, 2 + 4 * (size_t)(round + 1), "round %d: got %zu", round, n);
        cr_assert_not(l->flags & LF_READABLE(0), "a short read ends readability");
        cr_assert_eq(l->end[0].c.want, 0, "without a read answered -EAGAIN");
    }
    cr_assert(memcmp(got, "S|pingping", 10) == 0);
    cr_assert_eq(sh.pool.created, 0, "small chunks take no pipe");
    close(cb);
    close(sb);
}
