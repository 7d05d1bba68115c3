"""Rules of docs/PROTOCOL.md that no other integration test held when the
rule table was first written. Each test names its rule; the table at the end
of docs/PROTOCOL.md points here."""

import os
import signal
import socket
import subprocess

import pytest

from relay import (OP_PING, OP_PONG, WSConn, assert_ws_101, build_request, encode_frame,
                   expect_error, listener_headers, new_ws_key, random_token, replace_header,
                   wait_until, webroute_headers, write_key_file)
from sdk_helpers import build_dir

DEFAULT_LISTEN = ("127.0.0.1", 37791)


def test_repeated_apikey_counts_as_missing(relay):
    """P-KEY-2: two X-Remoted-APIKey headers, even both right, are no key."""
    lst = relay.register("/k2/")
    for key in (relay.client_key, relay.server_key):
        h = webroute_headers(relay.client_key, random_token(16))
        h.insert(2, ("X-Remoted-APIKey", key))
        expect_error(relay.request(build_request("/k2/", h)), 403, "invalid_missing_apikey")
    lst.expect_no_frame(0.1)


def test_http10_and_bare_lf_heads_accepted(relay):
    """P-HEAD-1: HTTP/1.0 request lines and bare LF line ends are heads too."""
    h = webroute_headers(relay.client_key, random_token(16))
    expect_error(relay.request(build_request("/none/", h, version="HTTP/1.0")), 502,
                 "missing_destination")
    expect_error(relay.request(build_request("/none/", h, line_end=b"\n")), 502,
                 "missing_destination")
    key = new_ws_key()
    c = relay.request(build_request("/lf/", listener_headers(relay.server_key, key),
                                    line_end=b"\n"))
    assert_ws_101(c.read_head(), key)
    relay.link(WSConn(c, "/lf/"), notify_timeout=60)


def test_too_many_headers_431(relay):
    """P-HEAD-4: 64 header lines are fine (the default max_headers), 65 are
    answered 431 at once (tests/integration/test_header_limit.py has more)."""
    base = webroute_headers(relay.client_key, random_token(16))
    pad = [("X-Pad-%d" % i, "v") for i in range(64 - len(base))]
    expect_error(relay.request(build_request("/none/", base + pad)), 502, "missing_destination")
    expect_error(relay.request(build_request("/none/", base + pad + [("X-One-More", "v")])),
                 431, "header_too_large", timeout=3.0)


def test_check_order(relay):
    """P-HEAD-7: method, then Host, then key, then path."""
    no_key_no_host = [("Connection", "Upgrade"), ("Upgrade", "webroute")]
    expect_error(relay.request(build_request("/p/", no_key_no_host, method="POST")), 405,
                 "method_not_allowed")
    expect_error(relay.request(build_request("/p/", no_key_no_host)), 400, "invalid_request")
    with_host = [("Host", "h")] + no_key_no_host
    expect_error(relay.request(build_request("relative", with_host)), 403,
                 "invalid_missing_apikey")
    expect_error(relay.request(build_request("/p/", with_host, method="get")), 405,
                 "method_not_allowed")


def test_repeated_host_400(relay):
    """P-HEAD-7: Host must be there exactly once."""
    h = webroute_headers(relay.client_key, random_token(16)) + [("Host", "other")]
    expect_error(relay.request(build_request("/none/", h)), 400, "invalid_request")


def test_path_length_limit(relay):
    """P-PATH-2: a path of 1024 bytes is served, 1025 is refused; the query
    does not count."""
    ok = "/" + "a" * 1023
    lst = relay.register(ok + "?" + "q" * 100)
    relay.link(lst, path=ok)
    h = webroute_headers(relay.client_key, random_token(16))
    expect_error(relay.request(build_request(ok + "b", h)), 400, "invalid_request")
    lst.expect_no_frame(0.1)


def test_upgrade_without_connection_upgrade_400(relay):
    """P-KIND-1: an Upgrade header counts only with `upgrade` in Connection."""
    lst = relay.register("/cu/")
    ws = replace_header(listener_headers(relay.server_key), "Connection", "keep-alive")
    expect_error(relay.request(build_request("/cu2/", ws)), 400, "invalid_request")
    wr = replace_header(webroute_headers(relay.client_key, random_token(16)), "Connection",
                        "keep-alive")
    expect_error(relay.request(build_request("/cu/", wr)), 400, "invalid_request")
    lst.expect_no_frame(0.1)
    relay.expect_502("/cu2/")


@pytest.mark.parametrize("value", ["short", "A" * 24, "AAAAAAAAAAAAAAAAAAAAAA=!", None])
def test_bad_websocket_key_400(relay, value):
    """P-REG-3: Sec-WebSocket-Key is 22 base64 characters and "==", once."""
    h = listener_headers(relay.server_key)
    if value is None:  # present twice
        h.insert(3, ("Sec-WebSocket-Key", new_ws_key()))
    else:
        h = replace_header(h, "Sec-WebSocket-Key", value)
    expect_error(relay.request(build_request("/wk/", h)), 400, "invalid_request")
    relay.expect_502("/wk/")


def test_frames_pipelined_behind_registration(relay):
    """P-REG-6: frames sent in the same segment as the head are handled."""
    key = new_ws_key()
    head = build_request("/pipe-ws/", listener_headers(relay.server_key, key))
    c = relay.request(head + encode_frame(OP_PING, b"early ping"))
    assert_ws_101(c.read_head(), key)
    lst = WSConn(c, "/pipe-ws/")
    f = lst.recv_frame()
    assert f.opcode == OP_PONG and f.payload == b"early ping", f
    relay.link(lst, notify_timeout=60)


@pytest.mark.parametrize("how", ["tcp-close", "ws-close", "keepalive"])
def test_waiting_clients_get_502_when_listener_goes(start_relay, how):
    """P-WS-10: a waiting client is answered 502 missing_destination when its
    listener goes, whatever the reason (the keepalive drop included)."""
    relay = start_relay(keepalive=1 if how == "keepalive" else 30, listener_grace=0,
                        offer_timeout=1)
    lst = relay.register("/gone502/")
    client, _ = relay.client("/gone502/")
    lst.notification()
    if how == "ws-close":
        lst.send_frame(0x8, b"\x03\xe8")
    elif how == "tcp-close":
        lst.close()
    # keepalive: the listener stays silent (answers no ping) and is dropped
    # after two to three intervals.
    expect_error(client, 502, "missing_destination", timeout=5.0)


def test_webroute_id_rules(relay):
    """P-CLI-2: WebRoute-ID is 1..256 bytes of 0x21..0x7e, present once."""
    lst = relay.register("/ids/")
    longest = "i" * 256
    client, _ = relay.client("/ids/", longest)
    raw, note = lst.notification()
    assert note["id"] == longest
    bad = ["i" * 257, "has space", "caf\u00e9"]
    for wrid in bad:
        h = webroute_headers(relay.client_key, "x")
        h = replace_header(h, "WebRoute-ID", None) + [("WebRoute-ID", wrid)]
        req = build_request("/ids/", h)
        expect_error(relay.request(req), 400, "invalid_request")
    twice = webroute_headers(relay.client_key, "one") + [("WebRoute-ID", "two")]
    expect_error(relay.request(build_request("/ids/", twice)), 400, "invalid_request")
    lst.expect_no_frame(0.1)


def _rapi(args, env_key):
    env = dict(os.environ, RAPI_KEY=env_key)
    env.pop("RAPI_KEY_FILE", None)
    return subprocess.run([os.path.join(build_dir(), "rapi")] + args, env=env,
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=10)


@pytest.mark.parametrize("args", [["connect", "rwrs://127.0.0.1:1/tls"],
                                  ["expose", "rwss://127.0.0.1:1/tls", "--to", "127.0.0.1:1"]])
def test_tls_urls_take_the_tls_path(args, tmp_path):
    """P-URL-1: the TLS schemes parse and go through TLS: a CA file that
    cannot be read is a named TLS error before any connection (the
    handshakes themselves: test_tls_client.py)."""
    key = "k" * 64
    r = _rapi(args + ["--ca", str(tmp_path / "missing-ca.pem")], key)
    assert r.returncode != 0
    assert b"RAPI_E_TLS" in r.stderr and b"missing-ca.pem" in r.stderr, r.stderr
    assert key.encode() not in r.stderr


def _port_free(addr):
    s = socket.socket()
    try:
        s.bind(addr)
        return True
    except OSError:
        return False
    finally:
        s.close()


def test_default_listen_address(rapi_server, tmp_path):
    """P-URL-4: with no listen line and no -l, the relay listens on
    127.0.0.1:37791."""
    if not _port_free(DEFAULT_LISTEN):
        pytest.skip("127.0.0.1:37791 is in use here (another relay?)")
    keys = tmp_path / "keys"
    server_key, _ = write_key_file(keys)
    conf = tmp_path / "empty.conf"
    conf.write_text("# nothing: embedded defaults\n")
    err = open(tmp_path / "stderr", "w+")
    p = subprocess.Popen([rapi_server, "-c", str(conf), "-k", str(keys), "-o", "io=epoll",
                          "-w", "1"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=err)
    try:
        def listening():
            err.seek(0)
            return "listening on 127.0.0.1:37791" in err.read()
        wait_until(listening, 5.0, what="listening on 127.0.0.1:37791")
        s = socket.create_connection(DEFAULT_LISTEN, timeout=5)
        s.sendall(build_request("/def/", listener_headers(server_key)))
        assert s.recv(12) == b"HTTP/1.1 101"
        s.close()
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            assert p.wait(10) == 0
        finally:
            if p.poll() is None:
                p.kill()
            err.close()
