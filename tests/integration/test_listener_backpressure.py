"""A listener that sends but never reads is dropped (docs/PROTOCOL.md
P-WS-12, rapi-server(8)): once its unsent output reaches the cap (LISTENER_OUT_MAX, 1 MiB)
the relay closes the connection, its waiting clients get 502, and the path
can be registered again. Before, the relay kept reading and discarding its
input forever and the path stayed taken (409 for a new listener)."""

import socket
import time

import pytest

from relay import OP_PING, SLOW, Response, assert_ws_101, build_request, encode_frame, \
    expect_error, listener_headers, new_ws_key, wait_until

PING = encode_frame(OP_PING, b"p" * 125)  # answered with a 127-byte pong
BATCH = PING * 64
# 1 MiB of pongs is ~8300 pings (1.1 MB); kernel buffers add a few MB at most.
SEND_LIMIT = 64 << 20


def _register_small_window(relay, path):
    """A raw listener whose receive buffer is small, so that the relay's
    pongs pile up in the relay rather than in the kernel."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(5.0)
    s.connect(relay.addr)
    key = new_ws_key()
    s.sendall(build_request(path, listener_headers(relay.server_key, key)))
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        assert chunk, "no 101"
        head += chunk
    return s, key, head


def _flood_pings_without_reading(s, deadline):
    """Send pings, never read, until the relay drops us. Bytes sent."""
    sent = 0
    s.settimeout(0.5)
    while time.monotonic() < deadline and sent < SEND_LIMIT:
        try:
            sent += s.send(BATCH)
        except socket.timeout:
            continue  # the relay reads in bursts; go on until it drops us
        except (BrokenPipeError, ConnectionResetError):
            return sent
    pytest.fail("listener not dropped after %d bytes of pings in %.0fs" % (sent, deadline))


def test_listener_that_never_reads_is_dropped(relay):
    path = "/noread/"
    s, key, head = _register_small_window(relay, path)
    try:
        assert_ws_101(Response(head), key)
        waiter, _ = relay.client(path)  # its notification is never read either
        time.sleep(0.2)
        t0 = time.monotonic()
        _flood_pings_without_reading(s, t0 + 20 * SLOW)
        # Dropped as when a listener goes: its waiting client gets 502.
        expect_error(waiter, 502, "missing_destination")
    finally:
        s.close()
    wait_until(lambda: _is_502(relay, path), 5.0 * SLOW, what="path unregistered")
    lst = relay.register(path)  # registered again (not 409)
    relay.link(lst, notify_timeout=60)
    assert "output full" in relay.stderr()


def _is_502(relay, path):
    try:
        relay.expect_502(path)
        return True
    except AssertionError:
        return False
