"""Hostile input end to end: garbage and mutated heads, random WebSocket bytes.
The relay answers with a well-formed error or closes, never crashes (the
sanitizer pass runs these too), and keeps serving."""

import random
import re
import time

from relay import ERROR_BODY_RE, Response, build_request, webroute_headers

SEED = 20261124


def _answer_ok(data):
    """Whatever a bad request got back: nothing, or one well-formed error."""
    if not data:
        return True
    i = data.find(b"\r\n\r\n")
    assert i > 0, "truncated answer %r" % data[:200]
    resp = Response(data[:i + 4])
    assert 400 <= resp.status <= 599, "bad request got %r" % data[:200]
    body = data[i + 4:]
    assert resp.header("Content-Length") == str(len(body)), data[:300]
    assert ERROR_BODY_RE.match(body), body
    return True


def test_garbage_and_mutated_heads(start_relay):
    relay = start_relay(header_timeout=1, max_header=4096)
    rnd = random.Random(SEED)
    good = build_request("/fuzz/", webroute_headers(relay.client_key, "fuzz-id"))
    payloads = []
    for _ in range(60):  # random bytes, with and without a blank line
        n = rnd.randrange(1, 600)
        b = bytes(rnd.randrange(256) for _ in range(n))
        payloads.append(b + (b"\r\n\r\n" if rnd.random() < 0.7 else b""))
    for _ in range(120):  # a valid client head with a few bytes changed
        b = bytearray(good)
        for _ in range(rnd.randrange(1, 4)):
            b[rnd.randrange(len(b) - 4)] = rnd.choice(b"\x00\r\n :/?%\x7f\xff" + b"aZ9")
        payloads.append(bytes(b))
    for _ in range(20):  # heads cut short, or far too long
        cut = good[:rnd.randrange(len(good))]
        payloads.append(cut if rnd.random() < 0.5 else cut + b"X" * 5000)
    conns = []
    for p in payloads:
        c = relay.connect()
        c.try_send(p)
        conns.append(c)
    # No listener on /fuzz/: anything valid gets 502, the rest a 4xx or EOF.
    # Incomplete heads are cut at header_timeout (1 s).
    deadline = time.monotonic() + 4.0
    for p, c in zip(payloads, conns):
        data = c.read_to_eof(max(0.1, deadline - time.monotonic()))
        assert _answer_ok(data), (p, data)
    assert relay.alive()
    relay.link(relay.register("/after/"), notify_timeout=60)


def test_random_bytes_on_listener_websocket(start_relay):
    relay = start_relay(max_frame=4096, listener_grace=0)  # gone: 502 at once
    rnd = random.Random(SEED + 1)
    listeners = []
    for i in range(40):
        lst = relay.register("/wsfuzz/%d" % i)
        n = rnd.randrange(1, 3000)
        lst.conn.try_send(bytes(rnd.randrange(256) for _ in range(n)))
        listeners.append(lst)
    time.sleep(0.3)
    assert relay.alive()
    # Whatever happened to them, a new listener and link work, and every
    # fuzzed path is either still registered or free again.
    relay.link(relay.register("/wsfuzz-ok/"), notify_timeout=60)
    for lst in listeners:
        lst.close()
    for i in range(0, 40, 8):
        path = "/wsfuzz/%d" % i
        deadline = time.monotonic() + 2.0
        while True:
            c = relay.request(build_request(path, webroute_headers(relay.client_key, "x%d" % i)))
            try:
                data = c.read_to_eof(0.5)
            except AssertionError as e:  # waiting on a listener not yet gone
                data = str(e).encode()
            c.close()
            if data.startswith(b"HTTP/1.1 502 "):
                break
            assert time.monotonic() < deadline, "path %s still registered: %r" % (path, data)
            time.sleep(0.05)
    assert re.search(r"listening on", relay.stderr())
