"""Listener registration and the listener's WebSocket (docs/PROTOCOL.md section 1)."""

import asyncio
import json
import time

import pytest
import websockets

from relay import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, assert_wr_101,
                   assert_ws_101, build_request, encode_frame, expect_error, listener_headers,
                   wait_until, ws_accept)


def test_register_101_with_rfc6455_accept(relay):
    # The example key of docs/PROTOCOL.md and RFC 6455 4.2.2's arithmetic.
    key = "4LdgYw3N/tMd6DDaQv/blg=="
    c = relay.request(build_request("/test/path/", listener_headers(relay.server_key, key)))
    resp = c.read_head()
    assert_ws_101(resp, key)
    assert resp.header("Sec-WebSocket-Accept") == ws_accept(key)
    assert resp.head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    # Nothing else is sent before a client arrives.
    assert not c.buf
    c.expect_silence(0.2)


def test_header_names_case_insensitive(relay):
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    headers = [("hOST", "relay.example"), ("CONNECTION", "keep-alive, Upgrade"),
               ("x-remoted-apikey", relay.server_key), ("SEC-WEBSOCKET-KEY", key),
               ("sec-websocket-version", "13"), ("upgrade", "websocket")]
    lst = relay.register("/case/", headers=headers)
    assert lst.conn  # 101 checked by register
    wrid = "CaseId1234"
    client = relay.request(build_request("/case/", [
        ("HOST", "relay.example"), ("connection", "Upgrade"),
        ("X-REMOTED-APIKEY", relay.client_key), ("webroute-version", "1"),
        ("WEBROUTE-ID", wrid), ("webroute-timeout", "60"), ("UPGRADE", "webroute")]))
    raw, _ = lst.notification()
    assert raw == relay.notification_bytes(client, wrid)
    server = relay.request(build_request("/case/", [
        ("host", "x"), ("Connection", "upgrade"), ("x-Remoted-ApiKey", relay.server_key),
        ("WebRoute-version", "1"), ("webroute-id", wrid), ("Upgrade", "webroute")]))
    assert_wr_101(server.read_head(), wrid)
    assert_wr_101(client.read_head(), wrid)


def test_upgrade_token_values_case_insensitive(relay):
    # RFC 6455 4.2.1: Upgrade "websocket" and Connection "Upgrade" match
    # case-insensitively.
    key = "AQIDBAUGBwgJCgsMDQ4PEA=="
    headers = [("Host", "h"), ("Connection", "UPGRADE"), ("X-Remoted-APIKey", relay.server_key),
               ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13"),
               ("Upgrade", "WebSocket")]
    lst = relay.register("/tokens/", headers=headers)
    relay.link(lst)


def test_path_is_target_without_query(relay):
    lst = relay.register("/q/path/?token=abc&x=1")
    # Client with no query, a different query, and the dial-back with yet another.
    for target in ("/q/path/", "/q/path/?other=2"):
        client, wrid = relay.client(target)
        raw, note = lst.notification()
        assert note["id"] == wrid
        server = relay.dialback("/q/path/?z=%s" % wrid, wrid)
        assert_wr_101(server.read_head(), wrid)
        assert_wr_101(client.read_head(), wrid)
    # Paths compare byte for byte.
    for other in ("/q/path", "/Q/path/", "/q/path//", "/q/path/x"):
        relay.expect_502(other)
    lst.expect_no_frame(0.1)


def test_paths_not_decoded(relay):
    # Byte for byte: no percent-decoding, no case folding of escapes.
    lst = relay.register("/pct%2Fx/a%20b/")
    relay.expect_502("/pct%2fx/a%20b/")
    relay.expect_502("/pct/x/a%20b/")
    client, wrid = relay.client("/pct%2Fx/a%20b/?q=1")
    raw, _ = lst.notification()
    assert raw == relay.notification_bytes(client, wrid, 60)


def test_second_listener_path_in_use(relay):
    first = relay.register("/busy/")
    c = relay.request(build_request("/busy/?q", listener_headers(relay.server_key)))
    expect_error(c, 409, "path_in_use")
    # The first listener is untouched and still gets clients.
    relay.link(first)
    # Another path is free.
    relay.register("/busy2/")


def test_ping_answered_with_pong_same_payload(relay):
    lst = relay.register("/ping/")
    for payload in (b"", b"hello", bytes(range(125))):
        lst.send_frame(OP_PING, payload)
        f = lst.recv_frame()
        assert f.opcode == OP_PONG and f.fin, f
        assert f.payload == payload
    # Still a working listener.
    relay.link(lst)


@pytest.mark.relay_options(listener_grace=0, offer_timeout=1)
def test_close_answered_with_close(relay):
    lst = relay.register("/close/")
    lst.send_frame(OP_CLOSE, b"\x03\xe8bye")
    f = lst.recv_frame()
    assert f is not None and f.opcode == OP_CLOSE, f
    assert f.payload == b"" or f.close_code == 1000, f
    lst.conn.expect_eof(2.0)
    # The path is unregistered and free again.
    wait_until(lambda: _is_502(relay, "/close/"), 2.0, what="path unregistered")
    relay.register("/close/")


def _is_502(relay, path):
    c, _ = relay.client(path)
    resp = c.read_response()
    c.close()
    return resp.status == 502


def test_data_frames_from_listener_ignored(relay):
    lst = relay.register("/data/")
    lst.send_frame(OP_TEXT, b"hello relay")
    lst.send_frame(OP_BINARY, bytes(range(256)) * 10)
    lst.send_frame(OP_TEXT, b"frag-", fin=False)
    lst.send_frame(OP_PING, b"between")  # control frames may interleave a message
    lst.send_frame(OP_CONT, b"ment")
    f = lst.recv_frame()
    assert f.opcode == OP_PONG and f.payload == b"between", f
    lst.expect_no_frame(0.2)
    relay.link(lst, notify_timeout=60)


@pytest.mark.parametrize("frame", [
    pytest.param(encode_frame(OP_TEXT, b"not masked", mask=False), id="unmasked-text"),
    pytest.param(encode_frame(OP_PING, b"not masked", mask=False), id="unmasked-ping"),
])
@pytest.mark.relay_options(listener_grace=0)
def test_unmasked_frame_closes_1002(relay, frame):
    lst = relay.register("/unmasked/")
    lst.conn.send(frame)
    lst.expect_close(1002, timeout=3.0)
    wait_until(lambda: _is_502(relay, "/unmasked/"), 2.0, what="path unregistered")


@pytest.mark.parametrize("frame", [
    pytest.param(encode_frame(OP_PING, b"x" * 126), id="ping-126"),
    pytest.param(encode_frame(OP_CLOSE, b"\x03\xe8" + b"x" * 124), id="close-126"),
    pytest.param(encode_frame(OP_PING, b"part", fin=False), id="fragmented-ping"),
    pytest.param(encode_frame(OP_PONG, b"part", fin=False), id="fragmented-pong"),
    pytest.param(encode_frame(OP_TEXT, b"x", rsv=4), id="rsv-bit"),
    pytest.param(encode_frame(0x3, b"x"), id="reserved-opcode"),
    pytest.param(encode_frame(OP_CONT, b"x"), id="continuation-without-start"),
])
@pytest.mark.relay_options(listener_grace=0)
def test_bad_frame_closes_connection(relay, frame):
    lst = relay.register("/badframe/")
    lst.conn.send(frame)
    f = lst.expect_closed(3.0, code=1002)
    # Either a close 1002 then EOF, or EOF at once: the listener is gone.
    assert f is None or f.close_code == 1002
    wait_until(lambda: _is_502(relay, "/badframe/"), 2.0, what="path unregistered")


@pytest.mark.parametrize("how", ["one-frame", "fragments"])
def test_frame_or_message_over_max_frame_closes_1009(start_relay, how):
    relay = start_relay(max_frame=1024, listener_grace=0)
    lst = relay.register("/big/")
    # Within the limit: accepted and ignored.
    lst.send_frame(OP_BINARY, b"y" * 1000)
    lst.send_frame(OP_PING, b"ok")
    f = lst.recv_frame()
    assert f.opcode == OP_PONG and f.payload == b"ok", f
    if how == "one-frame":
        lst.conn.try_send(encode_frame(OP_BINARY, b"z" * 2000))
    else:
        lst.conn.try_send(encode_frame(OP_TEXT, b"a" * 600, fin=False))
        lst.conn.try_send(encode_frame(OP_CONT, b"b" * 600, fin=True))
    lst.expect_close(1009, timeout=3.0)
    wait_until(lambda: _is_502(relay, "/big/"), 2.0, what="path unregistered")


def test_keepalive_pings_and_silent_listener_dropped(start_relay):
    relay = start_relay(keepalive=1, listener_grace=0)
    active = relay.register("/alive/")
    silent = relay.register("/silent/")
    t0 = time.monotonic()
    # The active listener answers every ping; the silent one never sends a byte.
    silent_closed_at = None
    silent_frames = []
    while time.monotonic() - t0 < 4.5 and (silent_closed_at is None or len(active.pings) < 3):
        active.expect_no_frame(0.25)  # answers pings, records them
        if silent_closed_at is None:
            try:
                f = silent.recv_frame(0.05)
            except AssertionError as e:
                if "no WebSocket frame" not in str(e):
                    raise
                continue
            if f is None:
                silent_closed_at = time.monotonic() - t0
            else:
                silent_frames.append(f)
    assert len(active.pings) >= 3, "expected a ping per second, got %r" % active.pings
    assert silent_closed_at is not None, "silent listener not dropped after 4.5 s (keepalive 1)"
    assert silent_closed_at >= 1.0, "silent listener dropped too early: %.2fs" % silent_closed_at
    ops = [f.opcode for f in silent_frames]
    assert OP_PING in ops, "silent listener never pinged: %r" % silent_frames
    assert all(op in (OP_PING, OP_CLOSE) for op in ops), silent_frames
    relay.expect_502("/silent/")
    # The active listener is still registered and gets clients.
    relay.link(active, notify_timeout=60)


def test_keepalive_off(start_relay):
    relay = start_relay(keepalive=0)
    lst = relay.register("/quiet/")
    lst.expect_no_frame(2.2)
    assert not lst.pings, "keepalive 0 but the relay pinged"
    relay.link(lst, notify_timeout=60)


def test_websockets_library_as_listener(start_relay):
    """An independent RFC 6455 client (python3-websockets) registers, gets the
    notification, survives keepalive pings, and its server dials back."""
    relay = start_relay(keepalive=1, listener_grace=0, offer_timeout=1)
    url = "ws://%s:%d/wslib/path?x=1" % relay.addr

    async def main():
        async with websockets.connect(url, extra_headers={"X-Remoted-APIKey": relay.server_key},
                                      ping_interval=None, open_timeout=5,
                                      close_timeout=2) as ws:
            await asyncio.sleep(2.5)  # relay pings at 1 s; the library answers
            assert ws.open
            client, wrid = relay.client("/wslib/path", timeout=120)
            msg = await asyncio.wait_for(ws.recv(), 5)
            assert msg == relay.notification_bytes(client, wrid, 120).decode()
            assert json.loads(msg)["id"] == wrid
            server = relay.dialback("/wslib/path", wrid)
            assert_wr_101(server.read_head(), wrid)
            assert_wr_101(client.read_head(), wrid)
            client.send(b"ping through relay")
            assert server.recv_exact(18) == b"ping through relay"
            await ws.close()
            assert ws.close_code == 1000
        return True

    assert asyncio.run(asyncio.wait_for(main(), 20))
    wait_until(lambda: _is_502(relay, "/wslib/path"), 2.0, what="path unregistered")


def test_listener_over_ipv6(start_relay):
    from relay import ipv6_loopback_available
    if not ipv6_loopback_available():
        pytest.skip("no IPv6 loopback here")
    relay = start_relay(listen=("127.0.0.1:0", "[::1]:0"))
    lst = relay.register("/v6lst/", v6=True)
    relay.link(lst, notify_timeout=60)


# The frame reader's RFC 6455 rules beyond framing (proto/wsread.c): a text
# message must be valid UTF-8 (1007), also across fragments; a close frame's
# code must be one allowed on the wire and its reason valid UTF-8.
@pytest.mark.parametrize("frames,code", [
    pytest.param([encode_frame(OP_TEXT, b"\xff\xfe")], 1007, id="text-not-utf8"),
    pytest.param([encode_frame(OP_TEXT, b"caf\xc3", fin=False),
                  encode_frame(OP_CONT, b"\x28", fin=True)], 1007, id="utf8-broken-across-fragments"),
    pytest.param([encode_frame(OP_CLOSE, b"\x03\xed")], 1002, id="close-code-1005-on-wire"),
    pytest.param([encode_frame(OP_CLOSE, b"\x03\xe8\xff")], 1007, id="close-reason-not-utf8"),
    # 1 byte of payload announced in the 16-bit form: not the minimal encoding.
    pytest.param([bytes([0x80 | OP_TEXT, 0x80 | 126, 0, 1, 0, 0, 0, 0]) + b"x"], 1002,
                 id="non-minimal-length"),
])
@pytest.mark.relay_options(listener_grace=0)
def test_invalid_payload_closes_with_the_readers_code(relay, frames, code):
    lst = relay.register("/utf8/")
    for f in frames:
        lst.conn.try_send(f)
    lst.expect_close(code, timeout=3.0)
    wait_until(lambda: _is_502(relay, "/utf8/"), 2.0, what="path unregistered")


def test_valid_utf8_text_across_fragments_is_accepted(relay):
    lst = relay.register("/utf8ok/")
    lst.send_frame(OP_TEXT, "caf".encode() + b"\xc3", fin=False)
    lst.send_frame(OP_CONT, b"\xa9 \xe2\x82\xac")  # "é €" split inside a character
    lst.send_frame(OP_PING, b"still")
    f = lst.recv_frame()
    assert f.opcode == OP_PONG and f.payload == b"still", f
    relay.link(lst, notify_timeout=60)
