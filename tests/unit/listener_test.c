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
    cr_assert_eq(map_init(&sh.listeners), 0);
    cr_assert_eq(map_init(&sh.waiters), 0);
    cr_assert_eq(ev_init(&sh.loop, &ev_backend_epoll), 0);
}

static void teardown(void)
{
    struct map_iter it;
    struct map_entry *e;

    for (map_iter_init(&it, &sh.listeners); (e = map_iter_next(&it));)
        listener_close(CONTAINER(e, struct listener, me), "test over");
    map_fini(&sh.listeners);
    map_fini(&sh.waiters);
    ev_fini(&sh.loop);
}

/* Register a listener on the fake; its 101 has gone out. */
static struct listener *reg(void)
{
    struct handoff *h = calloc(1, sizeof(*h) + 8);
    struct map_entry *me;

    cr_assert_not_null(h);
    h->type = HO_CONN;
    h->kind = WR_LISTENER;
    h->conn = fake_conn(&ws);
    h->path = h->data;
    memcpy(h->path, "/l", 2);
    h->path_len = 2;
    snprintf(h->ws_accept, sizeof(h->ws_accept), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    snprintf(h->peer, sizeof(h->peer), "127.0.0.1:9");
    listener_register(&sh, h);
    free(h);
    me = map_get(&sh.listeners, "/l", 2);
    cr_assert_not_null(me, "registered");
    cr_assert(ws.out_len > 12 && memcmp(ws.out, "HTTP/1.1 101", 12) == 0, "the 101 first");
    ws.out_len = 0;
    return CONTAINER(me, struct listener, me);
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
    cr_assert_null(map_get(&sh.listeners, "/l", 2), "and unregistered");
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
