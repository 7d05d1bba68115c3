/* A listener's WebSocket through the transport seam, with the scripted fake
 * transport (tests/unit/fake_xprt.h): the 101, pings answered, protocol
 * violations answered with the frame reader's close code and the listener
 * closed once that is out, and a transport whose read waits for room. */
#include <criterion/criterion.h>

#include "engine/listener.c"
#include "fake_xprt.h"

#define MAX_FRAME 1024

static struct relay relay;
static struct shard sh;
static struct fake ws; /* the listener's connection */

static void setup(void)
{
    fake_reset(&ws);
    memset(&relay, 0, sizeof(relay));
    atomic_store(&relay.nconn, 1);
    memset(&sh, 0, sizeof(sh));
    sh.relay = &relay;
    conf_defaults(&sh.conf);
    sh.conf.keepalive = 0;
    sh.conf.max_frame = MAX_FRAME;
    sh.now = 1000;
    wheel_init(&sh.wheel, sh.now);
    sh.conf.listener_grace = 0;
    cr_assert_eq(map_init(&sh.paths), 0);
    cr_assert_eq(map_init(&sh.waiters), 0);
    cr_assert_eq(ev_init(&sh.loop, &ev_backend_epoll), 0);
}

static void teardown(void)
{
    struct map_iter it;
    struct map_entry *e;

    sh.draining = true;
    for (map_iter_init(&it, &sh.paths); (e = map_iter_next(&it));)
        lpath_drain(CONTAINER(e, struct lpath, me), true);
    cr_assert_eq(sh.paths.count, 0, "every path freed");
    map_fini(&sh.paths);
    map_fini(&sh.waiters);
    ev_fini(&sh.loop);
}

/* Register a listener on fake f; its 101 has gone out. */
static struct listener *reg_on(struct fake *f)
{
    struct handoff *h = calloc(1, sizeof(*h) + 8);
    struct lpath *p;

    cr_assert_not_null(h);
    h->type = HO_CONN;
    h->kind = WR_LISTENER;
    h->conn = fake_conn(f);
    h->path = h->data;
    memcpy(h->path, "/l", 2);
    h->path_len = 2;
    snprintf(h->ws_accept, sizeof(h->ws_accept), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    snprintf(h->peer, sizeof(h->peer), "127.0.0.1:9");
    listener_register(&sh, h);
    free(h);
    p = lpath_find(&sh, "/l", 2);
    cr_assert_not_null(p, "registered");
    cr_assert(f->out_len > 12 && memcmp(f->out, "HTTP/1.1 101", 12) == 0, "the 101 first");
    f->out_len = 0;
    return CONTAINER(p->listeners.prev, struct listener, node);
}

static struct listener *reg(void)
{
    struct listener *l = reg_on(&ws);

    cr_assert_eq(l->p->nlive, 1);
    return l;
}

/* Queue a frame as a client sends it (masked). */
static void peer_sends(uint8_t opcode, bool fin, const void *p, size_t n)
{
    static const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    size_t k = ws_build_frame((uint8_t *)ws.in + ws.in_len, sizeof(ws.in) - ws.in_len, opcode, fin,
                              p, n, mask);

    cr_assert_gt(k, 0);
    ws.in_len += k;
}

/* The unmasked frame the relay should have written. */
static void assert_sent(uint8_t opcode, const void *p, size_t n)
{
    uint8_t want[WS_MAX_HEADER + WS_MAX_CONTROL];
    size_t k = ws_build_frame(want, sizeof(want), opcode, true, p, n, NULL);

    cr_assert_eq(ws.out_len, k, "wrote %zu bytes, want %zu", ws.out_len, k);
    cr_assert(memcmp(ws.out, want, k) == 0);
}

Test(listener, ping_is_answered_with_the_same_payload, .init = setup, .fini = teardown)
{
    struct listener *l = reg();

    peer_sends(WS_OP_PING, true, "hello", 5);
    listener_event(l, EV_IN);
    assert_sent(WS_OP_PONG, "hello", 5);
    cr_assert_not(ws.closed);
}

Test(listener, data_frames_are_read_and_ignored, .init = setup, .fini = teardown)
{
    struct listener *l = reg();

    peer_sends(WS_OP_TEXT, false, "caf\xc3", 4);
    peer_sends(WS_OP_PING, true, "mid", 3); /* control frames may interleave */
    peer_sends(WS_OP_CONT, true, "\xa9!", 2);
    listener_event(l, EV_IN);
    assert_sent(WS_OP_PONG, "mid", 3);
    cr_assert_not(ws.closed);
}

static void violation(void (*send)(void), uint16_t code)
{
    struct listener *l = reg();
    uint8_t be[2] = {(uint8_t)(code >> 8), (uint8_t)code};

    send();
    listener_event(l, EV_IN);
    cr_assert_geq(ws.out_len, 4, "a close frame went out");
    cr_assert_eq((uint8_t)ws.out[0], 0x80 | WS_OP_CLOSE);
    cr_assert(memcmp(ws.out + 2, be, 2) == 0, "close code %u, got %u", code,
              (unsigned)((uint8_t)ws.out[2] << 8 | (uint8_t)ws.out[3]));
    cr_assert(ws.closed, "closed once the close frame is out");
    cr_assert_null(lpath_find(&sh, "/l", 2), "and unregistered");
    cr_assert_eq(atomic_load(&relay.nconn), 0);
}

static void send_bad_utf8(void)
{
    peer_sends(WS_OP_TEXT, true, "\xff", 1);
}

static void send_too_big(void)
{
    static char big[MAX_FRAME + 1];

    peer_sends(WS_OP_BINARY, true, big, sizeof(big));
}

static void send_unmasked(void)
{
    ws.in_len = ws_build_frame((uint8_t *)ws.in, sizeof(ws.in), WS_OP_PING, true, "x", 1, NULL);
}

Test(listener, invalid_utf8_closes_1007, .init = setup, .fini = teardown)
{
    violation(send_bad_utf8, WS_CLOSE_INVALID_DATA);
}

Test(listener, message_over_max_frame_closes_1009, .init = setup, .fini = teardown)
{
    violation(send_too_big, WS_CLOSE_TOO_BIG);
}

Test(listener, unmasked_frame_closes_1002, .init = setup, .fini = teardown)
{
    violation(send_unmasked, WS_CLOSE_PROTOCOL);
}

Test(listener, close_is_echoed_then_closed, .init = setup, .fini = teardown)
{
    struct listener *l = reg();

    peer_sends(WS_OP_CLOSE, true, "\x03\xe8", 2);
    listener_event(l, EV_IN);
    assert_sent(WS_OP_CLOSE, "\x03\xe8", 2);
    cr_assert(ws.closed);
    cr_assert_null(lpath_find(&sh, "/l", 2), "unregistered (no grace)");
}

/* With listener_grace, the path outlives its last listener until the grace
 * ends; a new registration ends the grace. */
Test(listener, grace_keeps_the_path_open_until_it_ends, .init = setup, .fini = teardown)
{
    struct listener *l;
    struct lpath *p;

    sh.conf.listener_grace = 2;
    l = reg();
    p = l->p;
    listener_close(l, "test");
    cr_assert_eq(lpath_find(&sh, "/l", 2), p, "kept for the grace");
    cr_assert(lpath_open(p) && p->nlive == 0);
    sh.now += 1000;
    wheel_run(&sh.wheel, sh.now);
    cr_assert(lpath_open(lpath_find(&sh, "/l", 2)), "still open after 1 s");
    sh.now += 1100;
    wheel_run(&sh.wheel, sh.now);
    cr_assert_null(lpath_find(&sh, "/l", 2), "gone after 2 s");
}

/* The pick: fewest outstanding notifications, ties to the least recently
 * chosen; only live listeners; the one to avoid only when alone. */
Test(listener, pick_least_busy_then_round_robin)
{
    struct lpath p = {0};
    struct listener a = {.live = true}, b = {.live = true}, c = {.live = false};

    dlist_init(&p.listeners);
    dlist_add_tail(&p.listeners, &a.node);
    dlist_add_tail(&p.listeners, &b.node);
    dlist_add_tail(&p.listeners, &c.node);
    cr_assert_eq(lpath_pick(&p, NULL), &a, "tie, neither chosen yet: the first");
    a.picked = 1;
    cr_assert_eq(lpath_pick(&p, NULL), &b, "tie: the one chosen least recently");
    b.picked = 2;
    cr_assert_eq(lpath_pick(&p, NULL), &a);
    a.nwaiting = 1;
    cr_assert_eq(lpath_pick(&p, NULL), &b, "fewer outstanding wins over round robin");
    cr_assert_eq(lpath_pick(&p, &b), &a, "another than the one to avoid");
    b.live = false;
    cr_assert_eq(lpath_pick(&p, &a), &a, "the one to avoid when no other is live");
    a.live = false;
    cr_assert_null(lpath_pick(&p, NULL), "none live");
}

/* A write that cannot go out waits for EV_OUT; nothing is lost. */
Test(listener, full_socket_holds_output_until_writable, .init = setup, .fini = teardown)
{
    struct listener *l = reg();

    ws.room = 3;
    peer_sends(WS_OP_PING, true, "abcdef", 6);
    listener_event(l, EV_IN);
    cr_assert_eq(ws.out_len, 3);
    cr_assert_not(l->writable);
    ws.room = SIZE_MAX;
    listener_event(l, EV_OUT);
    assert_sent(WS_OP_PONG, "abcdef", 6);
}

/* TLS can make a read wait for room: it is retried on EV_OUT. */
Test(listener, read_that_wants_out_is_retried_when_writable, .init = setup, .fini = teardown)
{
    struct listener *l = reg();

    ws.rcv_wants_out = 1;
    peer_sends(WS_OP_PING, true, "tls", 3);
    listener_event(l, EV_IN);
    cr_assert_eq(ws.out_len, 0, "nothing read yet");
    cr_assert(l->read_wants_out);
    listener_event(l, EV_OUT);
    assert_sent(WS_OP_PONG, "tls", 3);
}

/* A client arrives on "/l" with WebRoute-ID id, on fake f. */
static void client_on(struct fake *f, const char *id)
{
    size_t n = strlen(id);
    struct handoff *h = calloc(1, sizeof(*h) + 3 + n + 1);

    cr_assert_not_null(h);
    h->type = HO_CONN;
    h->kind = WR_CLIENT;
    h->conn = fake_conn(f);
    h->timeout = -1;
    h->path = h->data;
    memcpy(h->path, "/l", 2);
    h->path_len = 2;
    h->id = h->path + 3;
    memcpy(h->id, id, n);
    h->id_len = n;
    snprintf(h->peer, sizeof(h->peer), "127.0.0.1:7");
    client_arrive(&sh, h);
    free(h);
}

static bool sent_id(const struct fake *f, const char *id)
{
    return memmem(f->out, f->out_len, id, strlen(id)) != NULL;
}

/* A notification that does not fit a listener's output (it does not read)
 * goes to another listener of the path; the full one is closed on the next
 * tick, not in the middle of the placement. */
Test(listener, full_listener_is_doomed_and_the_client_goes_elsewhere, .init = setup,
     .fini = teardown)
{
    static struct fake ws2, cl;
    struct listener *a, *b;

    fake_reset(&ws2);
    fake_reset(&cl);
    atomic_store(&relay.nconn, 3);
    sh.conf.listeners_per_path = 2;
    a = reg_on(&ws);
    b = reg_on(&ws2);
    /* a's output is full and its socket takes nothing. */
    a->out = realloc(a->out, LISTENER_OUT_MAX);
    cr_assert_not_null(a->out);
    a->out_cap = LISTENER_OUT_MAX;
    a->out_len = LISTENER_OUT_MAX - 8;
    a->out_off = 0;
    ws.room = 0;
    client_on(&cl, "client-one");
    cr_assert(sent_id(&ws2, "client-one"), "offered to b");
    cr_assert_eq(b->nwaiting, 1);
    cr_assert_not(a->live, "a takes no client");
    cr_assert_not(ws.closed, "not closed in the placement");
    cr_assert_eq(a->p->nlive, 1);
    sh.now += TIMER_TICK_MS * 2;
    wheel_run(&sh.wheel, sh.now);
    cr_assert(ws.closed, "closed on the next tick");
    cr_assert_eq(b->p->nlisteners, 1);
    cr_assert_not_null(map_get(&sh.waiters, "/l\0client-one", 13), "the client still waits");
}

/* offer_timeout: the client goes to the other listener; with one left it
 * stays where it is. */
Test(listener, late_dialback_offers_the_client_to_the_other_listener, .init = setup,
     .fini = teardown)
{
    static struct fake ws2, cl;
    struct listener *a, *b;

    fake_reset(&ws2);
    fake_reset(&cl);
    atomic_store(&relay.nconn, 3);
    sh.conf.listeners_per_path = 2;
    sh.conf.offer_timeout = 1;
    a = reg_on(&ws);
    b = reg_on(&ws2);
    client_on(&cl, "late");
    cr_assert(sent_id(&ws, "late") && !sent_id(&ws2, "late"), "a first");
    sh.now += 1000 + TIMER_TICK_MS;
    wheel_run(&sh.wheel, sh.now);
    cr_assert(sent_id(&ws2, "late"), "then b");
    cr_assert_eq(a->nwaiting, 0);
    cr_assert_eq(b->nwaiting, 1);
    ws.out_len = ws2.out_len = 0;
    sh.now += 1000 + TIMER_TICK_MS;
    wheel_run(&sh.wheel, sh.now);
    cr_assert(sent_id(&ws, "late"), "and back to a");
    ws2.out_len = 0;
    listener_close(a, "test"); /* its client goes to b at once */
    cr_assert(sent_id(&ws2, "late"));
    cr_assert_eq(b->nwaiting, 1);
    ws2.out_len = 0;
    sh.now += 1000 + TIMER_TICK_MS;
    wheel_run(&sh.wheel, sh.now);
    cr_assert_not(sent_id(&ws2, "late"), "b alone: it keeps the client, no new notification");
    cr_assert_eq(b->nwaiting, 1);
}
