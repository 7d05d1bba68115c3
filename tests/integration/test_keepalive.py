"""Keepalive (docs/PROTOCOL.md P-WS-8, rapi-server.conf(5) keepalive): a
listener from which nothing has come for two intervals is dropped then, to
within the timer's resolution, whatever the phase of the pings; not at the
next ping time (which made it up to three intervals)."""

import time

from relay import OP_PING, OP_PONG, SLOW

KEEPALIVE = 1.0
# The wheel's tick (engine/timer.h TIMER_TICK_MS, 50 ms) plus scheduling.
LATE = 0.25 * SLOW
EARLY = 0.1


def _read_until_eof(lst, timeout):
    """Frames until EOF (never answering): their opcodes, and when EOF came."""
    ops = []
    while True:
        f = lst.recv_frame(timeout)
        if f is None:
            return ops, time.monotonic()
        ops.append(f.opcode)


def _assert_dropped_after_silence(relay, lst, path, silent_since):
    ops, closed_at = _read_until_eof(lst, 4 * KEEPALIVE * SLOW)
    silence = closed_at - silent_since
    assert all(op == OP_PING for op in ops), "only pings expected (no close frame): %r" % ops
    assert silence >= 2 * KEEPALIVE - EARLY, "dropped after %.2fs of silence" % silence
    assert silence <= 2 * KEEPALIVE + LATE, \
        "dropped after %.2fs of silence, want 2 x keepalive (%.1fs)" % (silence, 2 * KEEPALIVE)
    relay.expect_502(path)


def test_silent_listener_dropped_at_two_intervals(start_relay):
    relay = start_relay(keepalive=int(KEEPALIVE), listener_grace=0)
    lst = relay.register("/ka-silent/")
    _assert_dropped_after_silence(relay, lst, "/ka-silent/", time.monotonic())


def test_late_pong_then_silence_dropped_two_intervals_after_it(start_relay):
    relay = start_relay(keepalive=int(KEEPALIVE), listener_grace=0)
    lst = relay.register("/ka-late/")
    f = lst.recv_frame(2 * KEEPALIVE * SLOW)
    assert f is not None and f.opcode == OP_PING, f
    # Answer the first ping half an interval late, then never again: the
    # drop is due two intervals after that pong, between two ping times.
    time.sleep(KEEPALIVE / 2)
    lst.send_frame(OP_PONG, f.payload)
    _assert_dropped_after_silence(relay, lst, "/ka-late/", time.monotonic())


def test_listener_answering_pings_stays(start_relay):
    relay = start_relay(keepalive=int(KEEPALIVE))
    lst = relay.register("/ka-alive/")
    lst.expect_no_frame(3.5 * KEEPALIVE)  # answers the pings it gets
    assert len(lst.pings) >= 3, lst.pings
    relay.link(lst, notify_timeout=60)
