"""A listener that sends but never reads is dropped (docs/PROTOCOL.md
P-WS-12, rapi-server(8)): once its unsent output reaches the cap (LISTENER_OUT_MAX, 1 MiB)
the relay closes the connection, its waiting clients get 502, and the path
can be registered again. Before, the relay kept reading and discarding its
input forever and the path stayed taken (409 for a new listener)."""

import shutil
import socket
import subprocess
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


@pytest.mark.relay_options(listener_grace=0)  # 502 at once when it goes
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


CLOSE_WAIT = 5.0  # engine/listener.h LISTENER_CLOSE_WAIT_MS
# Pongs that wait in the relay once the kernel's buffers are full: well
# below the 1 MiB cap, so that the relay's close frame waits behind them.
STUCK_BATCHES = 30  # x 64 pongs of 127 bytes: 244 KB


def _relay_send_queue(relay, s):
    """Bytes the kernel holds in the relay's socket towards s (ss Send-Q)."""
    port = s.getsockname()[1]
    out = subprocess.run(["ss", "-tnH", "state", "established", "( sport = :%d and dport = :%d )"
                          % (relay.addr[1], port)], capture_output=True, text=True,
                         check=True).stdout.split()
    return int(out[1]) if len(out) >= 2 else 0


def _fill_kernel_buffers(relay, s):
    """Ping (never reading) until the relay's socket holds no more."""
    last = -1
    for _ in range(2000):
        for _ in range(8):
            s.sendall(BATCH)
        time.sleep(0.05)
        q = _relay_send_queue(relay, s)
        if q == last:
            return
        last = q
    pytest.fail("the relay's send queue kept growing")


def test_listener_that_does_not_take_the_close_frame_is_closed(relay):
    if not shutil.which("ss"):
        pytest.skip("no ss(8) here")
    path = "/noclose/"
    s, key, head = _register_small_window(relay, path)
    try:
        assert_ws_101(Response(head), key)
        _fill_kernel_buffers(relay, s)
        for _ in range(STUCK_BATCHES):
            s.sendall(BATCH)
        time.sleep(0.2)
        s.sendall(encode_frame(OP_PING, b"x", mask=False))  # P-WS-5: close 1002 queued
        t0 = time.monotonic()
        # (A closing listener takes no client already: P-WS-9.)
        wait_until(lambda: "unregister path=%s" % path in relay.stderr(),
                   CLOSE_WAIT + 2.0 * SLOW, interval=0.05, what="listener closed")
        took = time.monotonic() - t0
    finally:
        s.close()
    assert took >= CLOSE_WAIT - 0.5, "closed after %.2fs, before the close frame's wait" % took
    assert "close frame not taken" in relay.stderr()
    relay.register(path)
