"""Linked streams (docs/PROTOCOL.md "Linked streams" and "Timeouts")."""

import os
import socket
import time

import pytest

from relay import SLOW, pump, sha

MiB = 1 << 20

# The data path in its variants: splice through pooled pipes (default), the
# plain-copy path only (max_pipes=0), tiny pipes, and a pool of one pipe per
# shard shared by several links (the rest fall back to copying).
DATA_PATHS = [
    pytest.param({}, id="splice"),
    pytest.param({"max_pipes": 0}, id="copy-only"),
    pytest.param({"pipe_size": 4096}, id="pipe-4k"),
    pytest.param({"max_pipes": 1}, id="pool-of-1"),
]


@pytest.mark.all_modes
@pytest.mark.parametrize("opts", DATA_PATHS)
def test_one_mib_each_way_byte_exact(start_relay, opts):
    relay = start_relay(**opts)
    lst = relay.register("/bulk/")
    links = [relay.link(lst) for _ in range(3)]
    flows, want = [], []
    for ln in links:
        up, down = os.urandom(MiB), os.urandom(MiB)
        flows += [(ln.client, up, MiB, False), (ln.server, down, MiB, False)]
        want += [down, up]
    got = pump(flows, 20 * SLOW)
    for g, w in zip(got, want):
        assert len(g) == len(w) and sha(g) == sha(w), "corrupted stream (%d bytes)" % len(g)
    # Both sides close: each sees EOF, in both directions.
    for ln in links:
        ln.client.shutdown_wr()
        ln.server.shutdown_wr()
        assert ln.server.read_to_eof(3.0) == b""
        assert ln.client.read_to_eof(3.0) == b""


@pytest.mark.all_modes
@pytest.mark.parametrize("first", ["client", "server"])
@pytest.mark.parametrize("opts", [DATA_PATHS[0], DATA_PATHS[1]])
def test_half_close_forwarded(start_relay, first, opts):
    relay = start_relay(**opts)
    lst = relay.register("/half/")
    ln = relay.link(lst)
    a, b = (ln.client, ln.server) if first == "client" else (ln.server, ln.client)
    tail = os.urandom(200000)
    a.send(tail)
    a.shutdown_wr()
    # b gets everything a sent, then EOF ...
    assert b.read_to_eof(3.0) == tail
    # ... while b -> a keeps flowing, in several rounds.
    for i in range(5):
        msg = ("round %d " % i).encode() * 1000
        b.send(msg)
        assert a.recv_exact(len(msg), 3.0) == msg
        time.sleep(0.05)
    big = os.urandom(MiB)
    got = pump([(b, big, 0, True), (a, b"", None, False)], 10 * SLOW)
    assert sha(got[1]) == sha(big)
    assert a.eof


@pytest.mark.all_modes
@pytest.mark.parametrize("side", ["client", "server"])
def test_close_propagates_promptly(relay, side):
    lst = relay.register("/prompt/")
    ln = relay.link(lst)
    gone, other = (ln.client, ln.server) if side == "client" else (ln.server, ln.client)
    gone.send(b"last words")
    t0 = time.monotonic()
    gone.close()
    assert other.read_to_eof(2.0) == b"last words"
    assert time.monotonic() - t0 < 1.0, "EOF took %.2fs" % (time.monotonic() - t0)
    # The other side writing into a closed peer ends up fully closed too:
    # its sends start failing soon (the relay does not keep it half-open).
    deadline = time.monotonic() + 2.0
    while True:
        if not other.try_send(b"x" * 100):
            break
        assert time.monotonic() < deadline, "relay kept the surviving side open"
        time.sleep(0.05)


@pytest.mark.all_modes
@pytest.mark.parametrize("side", ["client", "server"])
def test_reset_propagates(relay, side):
    lst = relay.register("/rst/")
    ln = relay.link(lst)
    gone, other = (ln.client, ln.server) if side == "client" else (ln.server, ln.client)
    gone.set_linger0()
    t0 = time.monotonic()
    gone.close()
    other.read_to_eof(2.0)
    assert time.monotonic() - t0 < 1.0, "reset not propagated promptly"


def _expect_idle_close(ln, last, timeout, slack=1.5):
    """The pair stays open until `timeout` s after the last byte (time.monotonic()
    value `last`), then both sides see EOF within slack s."""
    quiet = last + timeout * 0.9 - time.monotonic()
    if quiet > 0:
        ln.client.expect_silence(quiet)
    assert ln.client.read_to_eof(timeout * 0.1 + slack) == b""
    assert ln.server.read_to_eof(1.0) == b""
    took = time.monotonic() - last
    assert timeout * 0.9 <= took <= timeout + slack, \
        "idle pair closed %.2fs after its last byte (timeout %ds)" % (took, timeout)


def test_inactivity_timeout_closes_both_sides(start_relay):
    relay = start_relay(timeout=1, min_timeout=1)
    lst = relay.register("/idle/")
    # No byte at all after the link.
    ln = relay.link(lst, notify_timeout=1)
    _expect_idle_close(ln, time.monotonic(), 1)
    # One byte at 0.6 s pushes the deadline to 1.6 s.
    ln = relay.link(lst, notify_timeout=1)
    time.sleep(0.6)
    ln.server.send(b"z")
    assert ln.client.recv_exact(1) == b"z"
    _expect_idle_close(ln, time.monotonic(), 1)


def test_inactivity_timer_reset_by_traffic_either_way(start_relay):
    relay = start_relay(timeout=1, min_timeout=1)
    lst = relay.register("/idle1/")
    ln = relay.link(lst, notify_timeout=1)
    # Activity in either direction keeps the pair alive well past the timeout.
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < 2.2:
        a, b = (ln.client, ln.server) if i % 2 == 0 else (ln.server, ln.client)
        a.send(b"tick")
        assert b.recv_exact(4, 2.0) == b"tick"
        last = time.monotonic()
        time.sleep(0.3)
        i += 1
    # Then silence: closed about 1 s after the last byte.
    _expect_idle_close(ln, last, 1)


def test_inactivity_timeout_uses_smaller_side(start_relay):
    relay = start_relay(timeout=1, min_timeout=1)
    lst = relay.register("/idle2/")
    # Both sides ask for 3 s: still open after 1.8 s of silence.
    both = relay.link(lst, client_timeout=3, server_timeout=3, notify_timeout=3)
    # Client asks 3 s, server nothing (1 s): the pair uses 1 s.
    mixed = relay.link(lst, client_timeout=3, notify_timeout=3)
    t0 = time.monotonic()
    assert mixed.client.read_to_eof(3.0) == b""
    assert mixed.server.read_to_eof(1.0) == b""
    assert time.monotonic() - t0 <= 2.6
    rest = 1.8 - (time.monotonic() - t0)
    if rest > 0:
        both.client.expect_silence(rest)
    both.client.send(b"still here")
    assert both.server.recv_exact(10, 2.0) == b"still here"


@pytest.mark.parametrize("opts", [DATA_PATHS[0], DATA_PATHS[1]])
def test_backpressure_bounded_buffering(start_relay, opts):
    """A reader that stops reading stops the writer: the relay does not
    buffer without bound. (Measured here: 5-8 MiB in flight, nearly all of it
    kernel socket buffers; loopback autotuning allows up to ~40.)"""
    relay = start_relay(**opts)
    lst = relay.register("/bp/")
    ln = relay.link(lst)
    ln.client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    ln.server.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    chunk = os.urandom(65536)
    n = len(chunk)
    sent = 0
    limit = 256 * MiB
    ln.client.sock.setblocking(False)
    last_progress = time.monotonic()
    # The stream is chunk repeated; stop once the writer is stuck for 0.5 s.
    while sent < limit and time.monotonic() - last_progress < 0.5 * SLOW:
        try:
            sent += ln.client.sock.send(chunk[sent % n:])
            last_progress = time.monotonic()
        except BlockingIOError:
            time.sleep(0.01)
    ln.client.sock.setblocking(True)
    assert sent < 48 * MiB, "writer never stalled: %d MiB accepted with nobody reading" % (
        sent // MiB)
    # Everything written arrives once the reader reads.
    got = ln.server.recv_exact(sent, 20 * SLOW)
    assert len(got) == sent
    whole = sent // n
    assert got[:whole * n] == chunk * whole and got[whole * n:] == chunk[:sent - whole * n]
    ln.client.send(b"more")
    assert ln.server.recv_exact(4) == b"more"


@pytest.mark.parametrize("opts", [DATA_PATHS[0], DATA_PATHS[1]])
def test_small_writes_not_delayed(start_relay, opts):
    """write-write-read exchanges stay fast: the relay forwards small segments
    at once (TCP_NODELAY), no Nagle/delayed-ACK stalls (~40 ms each)."""
    relay = start_relay(**opts)
    ln = relay.link(relay.register("/nagle/"))
    t0 = time.monotonic()
    for i in range(20):
        for a, b in ((ln.client, ln.server), (ln.server, ln.client)):
            a.send(b"a")
            a.send(b"b")
            assert b.recv_exact(2, 2.0) == b"ab"
    took = time.monotonic() - t0
    assert took < 0.4 * SLOW, "40 small exchanges took %.2fs: Nagle on relayed sockets?" % took
