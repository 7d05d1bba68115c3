"""Error answers (docs/PROTOCOL.md section 4), keys, and the request-head limits."""

import socket
import time

import pytest

from relay import (build_request, expect_error, listener_headers, random_token, replace_header,
                   webroute_headers)


def _cases(relay):
    """(name, request bytes, status, errorcode, extra header) for every error
    a request head alone can cause."""
    s, c = relay.server_key, relay.client_key
    wr = webroute_headers(c, "id-" + random_token(8))
    ws = listener_headers(s)
    return [
        ("no-key-client", build_request("/p/", replace_header(wr, "X-Remoted-APIKey", None)),
         403, "invalid_missing_apikey", None),
        ("no-key-listener", build_request("/p/", replace_header(ws, "X-Remoted-APIKey", None)),
         403, "invalid_missing_apikey", None),
        ("wrong-key", build_request("/p/", replace_header(wr, "X-Remoted-APIKey", random_token())),
         403, "invalid_missing_apikey", None),
        ("key-prefix", build_request("/p/", replace_header(ws, "X-Remoted-APIKey", s[:-1])),
         403, "invalid_missing_apikey", None),
        ("key-longer", build_request("/p/", replace_header(wr, "X-Remoted-APIKey", c + "x")),
         403, "invalid_missing_apikey", None),
        ("key-empty", build_request("/p/", replace_header(wr, "X-Remoted-APIKey", "")),
         403, "invalid_missing_apikey", None),
        ("post", build_request("/p/", wr, method="POST"), 405, "method_not_allowed", None),
        ("put-listener", build_request("/p/", ws, method="PUT"), 405, "method_not_allowed", None),
        ("malformed-request-line", b"GET /p/\r\nHost: x\r\n\r\n", 400, "invalid_request", None),
        ("garbage-line", b"\x01\x02 garbage\r\n\r\n", 400, "invalid_request", None),
        ("bad-version", build_request("/p/", wr, version="HTTP/9.9"), 400, "invalid_request",
         None),
        ("header-without-colon", build_request("/p/", wr + ["NoColonHere"]), 400,
         "invalid_request", None),
        ("missing-host", build_request("/p/", replace_header(wr, "Host", None)), 400,
         "invalid_request", None),
        ("missing-host-listener", build_request("/p/", replace_header(ws, "Host", None)), 400,
         "invalid_request", None),
        ("client-key-websocket", build_request("/p/", replace_header(ws, "X-Remoted-APIKey", c)),
         400, "invalid_request", None),
        ("server-key-plain-get", build_request("/p/", [("Host", "h"), ("X-Remoted-APIKey", s)]),
         400, "invalid_request", None),
        ("client-key-plain-get", build_request("/p/", [("Host", "h"), ("X-Remoted-APIKey", c)]),
         400, "invalid_request", None),
        ("webroute-version-2", build_request("/p/", replace_header(wr, "WebRoute-Version", "2")),
         426, "version_not_supported", "WebRoute-Version: 1"),
        ("webroute-version-missing",
         build_request("/p/", replace_header(wr, "WebRoute-Version", None)),
         426, "version_not_supported", "WebRoute-Version: 1"),
        ("ws-version-8", build_request("/p/", replace_header(ws, "Sec-WebSocket-Version", "8")),
         426, "version_not_supported", "Sec-WebSocket-Version: 13"),
        ("ws-version-missing",
         build_request("/p/", replace_header(ws, "Sec-WebSocket-Version", None)),
         426, "version_not_supported", "Sec-WebSocket-Version: 13"),
        ("ws-key-missing", build_request("/p/", replace_header(ws, "Sec-WebSocket-Key", None)),
         400, "invalid_request", None),
        ("webroute-id-missing", build_request("/p/", replace_header(wr, "WebRoute-ID", None)),
         400, "invalid_request", None),
    ]


CASE_NAMES = [
    "no-key-client", "no-key-listener", "wrong-key", "key-prefix", "key-longer", "key-empty",
    "post", "put-listener", "malformed-request-line", "garbage-line", "bad-version",
    "header-without-colon", "missing-host", "missing-host-listener", "client-key-websocket",
    "server-key-plain-get", "client-key-plain-get", "webroute-version-2",
    "webroute-version-missing", "ws-version-8", "ws-version-missing", "ws-key-missing",
    "webroute-id-missing",
]


def test_error_answers(relay):
    """Every error answer, each on its own connection, on one relay: exact
    status, headers, JSON body, then the relay closes; nobody is notified and
    nothing is registered by a failed request."""
    lst = relay.register("/p/")  # so that client errors are not 502s
    cases = _cases(relay)
    assert [cs[0] for cs in cases] == CASE_NAMES
    failures = []
    for name, req, status, code, extra in cases:
        c = relay.request(req)
        try:
            expect_error(c, status, code, extra)
        except AssertionError as e:
            failures.append("%s: %s" % (name, e))
        c.close()
    lst.expect_no_frame(0.1)
    assert not failures, "\n".join(failures)
    # The listener is still the only one on /p/ and works.
    relay.link(lst, notify_timeout=60)


def test_keys_never_in_answers_or_logs(relay):
    lst = relay.register("/secret/")
    relay.link(lst)
    # A near miss of the real key (first character changed).
    presented = ("Z" if relay.server_key[0] != "Z" else "Y") + relay.server_key[1:]
    c = relay.request(build_request("/secret/", replace_header(webroute_headers(
        relay.client_key, "id1"), "X-Remoted-APIKey", presented)))
    resp = expect_error(c, 403, "invalid_missing_apikey")
    assert presented.encode() not in resp.head + resp.body
    for key in (relay.server_key, relay.client_key):
        c = relay.request(build_request("/secret/", [("Host", "h"), ("X-Remoted-APIKey", key)],
                                        method="POST"))
        resp = expect_error(c, 405, "method_not_allowed")
        assert key.encode() not in resp.head + resp.body
    text = relay.stderr()
    for k in (relay.server_key, relay.client_key, presented):
        assert k not in text, "key material in stderr (log_level debug)"
    # A prefix long enough to identify the key is not logged either.
    assert relay.server_key[:24] not in text and relay.client_key[:24] not in text


def test_431_complete_head_over_max_header(start_relay):
    relay = start_relay(max_header=1024)
    lst = relay.register("/h/")
    # A head well under the limit is fine.
    ok, wrid = relay.client("/h/")
    lst.notification()
    big = webroute_headers(relay.client_key, "big1") + [("X-Pad", "p" * 1500)]
    c = relay.request(build_request("/h/", big))
    expect_error(c, 431, "header_too_large")
    lst.expect_no_frame(0.1)


def test_431_incomplete_head_over_max_header(start_relay):
    # The relay must not wait for a blank line that would take it past the limit.
    relay = start_relay(max_header=1024)
    c = relay.connect()
    c.send(b"GET /h/ HTTP/1.1\r\nHost: h\r\nX-Pad: " + b"p" * 2000)
    expect_error(c, 431, "header_too_large", timeout=3.0)


def test_header_timeout_is_a_deadline(start_relay):
    relay = start_relay(header_timeout=1)
    t0 = time.monotonic()
    idle = relay.connect()
    trickle = relay.connect()
    head = build_request("/slow/", webroute_headers(relay.client_key, "slow1"))
    closed = {}
    i = 0
    while time.monotonic() - t0 < 3.5 and len(closed) < 2:
        if "trickle" not in closed and i < len(head) - 1:
            if not trickle.try_send(head[i:i + 1]):
                closed["trickle"] = time.monotonic() - t0
            i += 1
        for name, c in (("idle", idle), ("trickle", trickle)):
            if name in closed:
                continue
            try:
                c.sock.settimeout(0.0)
                data = c.sock.recv(4096)
            except (BlockingIOError, socket.timeout):
                continue
            except ConnectionResetError:
                data = b""
            finally:
                c.sock.settimeout(5.0)
            assert not data.startswith(b"HTTP/1.1 101"), data
            if not data:
                closed[name] = time.monotonic() - t0
            else:
                c.buf += data
        time.sleep(0.1)
    assert "idle" in closed, "idle connection not closed within 3.5 s (header_timeout 1)"
    assert "trickle" in closed, \
        "connection trickling a head byte every 0.1 s not closed: the deadline is reset per byte"
    for name, t in closed.items():
        assert 0.7 <= t <= 2.6, "%s closed after %.2fs with header_timeout 1" % (name, t)


def test_complete_head_before_header_timeout_is_served(start_relay):
    relay = start_relay(header_timeout=2)
    c = relay.connect()
    head = build_request("/late/", webroute_headers(relay.client_key, "late1"))
    c.send(head[:20])
    time.sleep(1.0)
    c.send(head[20:])
    expect_error(c, 502, "missing_destination")


def test_unknown_header_and_extension_offers_ignored(relay):
    # Extra headers (as real clients and proxies add) change nothing.
    hs = listener_headers(relay.server_key) + [
        ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),
        ("User-Agent", "test/1.0"), ("X-Forwarded-For", "203.0.113.9")]
    lst = relay.register("/extra/", headers=hs)
    relay.link(lst, notify_timeout=60)


@pytest.mark.parametrize("target", ["", "relative/path", "*"])
def test_bad_target_400(relay, target):
    req = build_request(target, webroute_headers(relay.client_key, "t1"))
    c = relay.request(req)
    expect_error(c, 400, "invalid_request")
