"""Client arrival, notification, dial-back and linking (docs/PROTOCOL.md 2 and 3)."""

import json
import os
import time

import pytest

from relay import (SLOW, assert_wr_101, build_request, expect_error, ipv6_loopback_available,
                   pump, random_token, replace_header, sha, wait_until, webroute_headers,
                   wr_101_bytes, wr_accept)


def test_client_without_listener_502(relay):
    client, _ = relay.client("/nobody/")
    expect_error(client, 502, "missing_destination")


def test_notification_byte_exact_ipv4(relay):
    lst = relay.register("/test/path/")
    wrid = "xPlY7xUmNFPxDaOnmmycHuRaAgjWUHlKr2XAzcZjlK6PGMplWyW25H6AWTDiXA5Q"
    client, _ = relay.client("/test/path/", wrid, timeout=60)
    f = lst.next_frame()
    assert f.opcode == 0x1 and f.fin, f
    port = client.sock.getsockname()[1]
    assert f.payload == ('{"ipaddr":"127.0.0.1:%d","id":"%s","timeout":60}' % (port, wrid)).encode()
    # The client waits: no answer before the dial-back.
    client.expect_silence(0.2)


def test_notification_byte_exact_ipv6(start_relay):
    if not ipv6_loopback_available():
        pytest.skip("no IPv6 loopback here")
    relay = start_relay(listen=("127.0.0.1:0", "[::1]:0"))
    assert relay.addr6, "no IPv6 `listening on` line"
    lst = relay.register("/six/")
    client, wrid = relay.client("/six/", v6=True)
    raw, _ = lst.notification()
    port = client.sock.getsockname()[1]
    assert raw == ('{"ipaddr":"[::1]:%d","id":"%s","timeout":60}' % (port, wrid)).encode()
    server = relay.dialback("/six/", wrid)
    assert_wr_101(server.read_head(), wrid)
    assert_wr_101(client.read_head(), wrid)
    client.send(b"v6 bytes")
    assert server.recv_exact(8) == b"v6 bytes"


def test_notification_one_per_client_in_order(relay):
    lst = relay.register("/many/")
    clients = [relay.client("/many/") for _ in range(5)]
    for c, wrid in clients:
        raw, note = lst.notification()
        assert raw == relay.notification_bytes(c, wrid, 60)
    lst.expect_no_frame(0.2)


def test_notification_id_is_json(relay):
    # IDs may hold any visible ASCII; the notification must stay valid JSON.
    lst = relay.register("/json/")
    wrid = 'a"b\\c/d{e}'
    client, _ = relay.client("/json/", wrid)
    raw, note = lst.notification()
    assert note == {"ipaddr": client.local_addr(), "id": wrid, "timeout": 60}
    assert list(json.loads(raw)) == ["ipaddr", "id", "timeout"]


@pytest.mark.parametrize("header,expected", [
    (None, 60), ("60", 60), ("120", 120), ("3600", 3600), ("10", 60), ("0", 60),
    ("abc", 60), ("", 60), ("-5", 60), ("120abc", 60),
])
def test_webroute_timeout_in_notification_defaults(relay, header, expected):
    lst = relay.register("/to/")
    client, wrid = relay.client("/to/", timeout=header)
    raw, _ = lst.notification()
    assert raw == relay.notification_bytes(client, wrid, expected)


@pytest.mark.parametrize("header", ["99999999999999999999999999", "-99999999999999999999999",
                                    "9223372036854775807", "4294967296", "+120", " 120 "])
def test_webroute_timeout_odd_values(relay, header):
    # No overflow or crash; a valid notification with an integer >= 60.
    lst = relay.register("/odd/")
    client, wrid = relay.client("/odd/", timeout=header)
    raw, note = lst.notification()
    assert list(note) == ["ipaddr", "id", "timeout"] and note["id"] == wrid, raw
    assert isinstance(note["timeout"], int) and note["timeout"] >= 60, raw
    assert raw == relay.notification_bytes(client, wrid, note["timeout"])
    server = relay.dialback("/odd/", wrid, timeout=header)
    assert_wr_101(server.read_head(), wrid)
    assert_wr_101(client.read_head(), wrid)


def test_webroute_timeout_rule_with_config(start_relay):
    # effective = max(header if numeric, timeout, min_timeout)
    relay = start_relay(timeout=90, min_timeout=30)
    lst = relay.register("/rule/")
    for header, expected in ((None, 90), ("45", 90), ("100", 100), ("x", 90)):
        client, wrid = relay.client("/rule/", timeout=header)
        raw, _ = lst.notification()
        assert raw == relay.notification_bytes(client, wrid, expected), (header, raw)
    relay2 = start_relay(timeout=1, min_timeout=5)
    lst2 = relay2.register("/rule2/")
    for header, expected in ((None, 5), ("2", 5), ("7", 7)):
        client, wrid = relay2.client("/rule2/", timeout=header)
        raw, _ = lst2.notification()
        assert raw == relay2.notification_bytes(client, wrid, expected), (header, raw)


@pytest.mark.all_modes
def test_dialback_links_with_exact_101_on_both_sides(relay):
    lst = relay.register("/link/")
    client, wrid = relay.client("/link/")
    lst.notification()
    server = relay.dialback("/link/", wrid)
    s101 = server.read_head()
    c101 = client.read_head()
    assert s101.head == wr_101_bytes(wrid)
    assert c101.head == wr_101_bytes(wrid)
    assert c101.header("Sec-WebRoute-Accept") == wr_accept(wrid)
    # Nothing extra arrives after the 101s; then bytes flow both ways.
    assert not server.buf and not client.buf
    client.send(b"hello server")
    assert server.recv_exact(12) == b"hello server"
    server.send(b"hello client")
    assert client.recv_exact(12) == b"hello client"
    # The listener is not told anything about the link.
    lst.expect_no_frame(0.1)


@pytest.mark.all_modes
def test_pipelined_client_bytes_delivered_after_link(relay):
    lst = relay.register("/pipe/")
    early = b"EARLY\x00\xff" + bytes(range(256)) * 40
    client, wrid = relay.client("/pipe/", extra=early)
    lst.notification()
    later = b"-LATER-BEFORE-DIALBACK-"
    client.send(later)
    time.sleep(0.1)
    server = relay.dialback("/pipe/", wrid)
    assert_wr_101(server.read_head(), wrid)
    assert server.recv_exact(len(early) + len(later)) == early + later
    assert_wr_101(client.read_head(), wrid)
    server.send(b"reply")
    assert client.recv_exact(5) == b"reply"


def test_pipelined_server_bytes_after_dialback_head(relay):
    # Bytes the server sends right behind its dial-back head reach the client
    # after the client's 101: nothing is dropped.
    lst = relay.register("/spipe/")
    client, wrid = relay.client("/spipe/")
    lst.notification()
    server = relay.dialback("/spipe/", wrid, extra=b"SERVER-FIRST")
    assert_wr_101(server.read_head(), wrid)
    assert_wr_101(client.read_head(), wrid)
    assert client.recv_exact(12) == b"SERVER-FIRST"


def test_dialback_unknown_id_404(relay):
    lst = relay.register("/unk/")
    s = relay.dialback("/unk/", random_token())
    expect_error(s, 404, "unknown_route")
    # No listener at all: still unknown_route for a dial-back.
    s = relay.dialback("/nolistener/", random_token())
    expect_error(s, 404, "unknown_route")
    # A waiting client on another path is not reachable by ID alone.
    client, wrid = relay.client("/unk/")
    lst.notification()
    s = relay.dialback("/unk2/", wrid)
    expect_error(s, 404, "unknown_route")
    # ... and the client still waits and links on the right path.
    server = relay.dialback("/unk/", wrid)
    assert_wr_101(server.read_head(), wrid)
    assert_wr_101(client.read_head(), wrid)
    # A second dial-back for a used ID: nobody waits any more.
    s = relay.dialback("/unk/", wrid)
    expect_error(s, 404, "unknown_route")


def test_duplicate_client_id_409_and_never_client_to_client(relay):
    lst = relay.register("/dup/")
    first, wrid = relay.client("/dup/")
    lst.notification()
    second, _ = relay.client("/dup/", wrid)
    expect_error(second, 409, "duplicate_id")
    lst.expect_no_frame(0.1)   # the refused client is announced to nobody
    first.expect_silence(0.2)  # the first still waits, not linked to anyone
    # Same ID on another path is another route: fine.
    lst2 = relay.register("/dup2/")
    other, _ = relay.client("/dup2/", wrid)
    lst2.notification()
    # The real server's dial-back links the first client.
    server = relay.dialback("/dup/", wrid)
    assert_wr_101(server.read_head(), wrid)
    assert_wr_101(first.read_head(), wrid)
    first.send(b"first")
    assert server.recv_exact(5) == b"first"
    other.expect_silence(0.1)


def test_dialback_timeout_504(start_relay):
    relay = start_relay(dialback_timeout=1)
    lst = relay.register("/slowsrv/")
    t0 = time.monotonic()
    client, wrid = relay.client("/slowsrv/")
    lst.notification()
    expect_error(client, 504, "listener_timeout", timeout=4.0)
    took = time.monotonic() - t0
    assert 0.8 <= took <= 3.0, "504 after %.2fs with dialback_timeout 1" % took
    # Too late now.
    s = relay.dialback("/slowsrv/", wrid)
    expect_error(s, 404, "unknown_route")
    # The listener stays registered.
    relay.link(lst, notify_timeout=60)


@pytest.mark.all_modes
@pytest.mark.parametrize("how", ["tcp-close", "ws-close", "reset"])
@pytest.mark.relay_options(listener_grace=0, offer_timeout=1)
def test_listener_disconnect_closes_waiting_clients(relay, how):
    lst = relay.register("/gone/")
    waiting = []
    for _ in range(3):
        c, wrid = relay.client("/gone/")
        lst.notification()
        waiting.append((c, wrid))
    if how == "ws-close":
        lst.send_frame(0x8, b"\x03\xe8")
    elif how == "reset":
        lst.conn.set_linger0()
    if how != "ws-close":
        lst.close()
    t0 = time.monotonic()
    for c, _ in waiting:
        got = c.expect_eof(2.0, allow_data=True)
        assert not got.startswith(b"HTTP/1.1 101"), got
    assert time.monotonic() - t0 < 1.5, "waiting clients not closed promptly"
    # Unregistered: a new client gets 502; a late dial-back gets 404.
    relay.expect_502("/gone/")
    expect_error(relay.dialback("/gone/", waiting[0][1]), 404, "unknown_route")
    # The path is free for a new listener, which works.
    lst2 = relay.register("/gone/")
    relay.link(lst2, notify_timeout=60)


def test_failed_client_validation_notifies_nobody(relay):
    lst = relay.register("/valid/")
    k = relay.client_key
    bad = [
        (replace_header(webroute_headers(k, "id1"), "WebRoute-ID", None), 400, "invalid_request",
         None),
        (replace_header(webroute_headers(k, "id2"), "WebRoute-ID", ""), 400, "invalid_request",
         None),
        (replace_header(webroute_headers(k, "id3"), "WebRoute-Version", "2"), 426,
         "version_not_supported", "WebRoute-Version: 1"),
        (replace_header(webroute_headers(k, "id4"), "WebRoute-Version", None), 426,
         "version_not_supported", "WebRoute-Version: 1"),
    ]
    for headers, status, code, extra in bad:
        c = relay.request(build_request("/valid/", headers))
        expect_error(c, status, code, extra)
    lst.expect_no_frame(0.2)
    client, wrid = relay.client("/valid/")
    raw, _ = lst.notification()
    assert raw == relay.notification_bytes(client, wrid, 60)


def test_dialback_validation(relay):
    lst = relay.register("/dbv/")
    client, wrid = relay.client("/dbv/")
    lst.notification()
    k = relay.server_key
    c = relay.request(build_request("/dbv/", replace_header(webroute_headers(k, wrid),
                                                            "WebRoute-Version", "3")))
    expect_error(c, 426, "version_not_supported", "WebRoute-Version: 1")
    c = relay.request(build_request("/dbv/", replace_header(webroute_headers(k, wrid),
                                                            "WebRoute-ID", None)))
    expect_error(c, 400, "invalid_request")
    # The waiting client was not disturbed.
    client.expect_silence(0.1)
    server = relay.dialback("/dbv/", wrid)
    assert_wr_101(server.read_head(), wrid)
    assert_wr_101(client.read_head(), wrid)


@pytest.mark.all_modes
def test_waiting_client_that_leaves_is_released(start_relay):
    # A client that gives up while waiting must not keep holding a socket (or a
    # max_waiting slot) until the dial-back timeout.
    relay = start_relay(max_waiting=1)
    lst = relay.register("/leave/")
    base = relay.fd_counts()["socket"]
    client, wrid = relay.client("/leave/")
    lst.notification()
    assert relay.fd_counts()["socket"] == base + 1
    client.close()
    wait_until(lambda: relay.fd_counts()["socket"] == base, 2.0,
               what="the relay to close the departed waiting client's socket")
    # Its slot is free (max_waiting 1) ...
    c2, wrid2 = relay.client("/leave/")
    raw, _ = lst.notification()
    assert raw == relay.notification_bytes(c2, wrid2, 60)
    # ... and a dial-back for the departed client finds nobody.
    expect_error(relay.dialback("/leave/", wrid), 404, "unknown_route")


def test_large_early_data_all_delivered(relay):
    # A client that keeps sending while it waits: the relay may stop reading
    # (backpressure) but drops nothing; all of it reaches the server in order.
    lst = relay.register("/early/")
    client, wrid = relay.client("/early/")
    lst.notification()
    data = os.urandom(1 << 20)
    client.sock.setblocking(False)
    sent = 0
    t0 = time.monotonic()
    while sent < len(data) and time.monotonic() - t0 < 0.5:
        try:
            sent += client.sock.send(data[sent:sent + 65536])
        except BlockingIOError:
            time.sleep(0.01)
    client.sock.setblocking(True)
    server = relay.dialback("/early/", wrid)
    assert_wr_101(server.read_head(), wrid)
    got = pump([(client, data[sent:], 0, False), (server, b"", len(data), False)], 20 * SLOW)
    assert_wr_101(client.read_head(), wrid)
    assert sha(got[1]) == sha(data), "early data corrupted (%d bytes sent before the link)" % sent
