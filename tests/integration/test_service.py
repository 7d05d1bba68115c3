"""Running under systemd: sd_notify (READY, RELOADING, STOPPING, STATUS and
the watchdog pings) on a notify socket the test binds itself, and journald
priority prefixes when JOURNAL_STREAM names stderr. rapi-server(8),
RUNNING UNDER SYSTEMD. The watchdog's decision (a wedged loop stops the pings)
is unit-tested with fake clocks in tests/unit/notify_test.c."""

import os
import re
import signal
import socket
import threading
import time

import pytest

from conftest import DEFAULT_OPTIONS
from relay import SLOW, Relay, wait_until

WATCHDOG_MS = 400  # pings every 200 ms


class NotifySocket:
    """An AF_UNIX datagram socket standing in for systemd's notify socket,
    read by a thread at once as systemd does (a full queue would block the
    daemon's sd_notify)."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.05)
        self.messages = []  # (monotonic arrival, text)
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        while not self.done.is_set():
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            with self.lock:
                self.messages.append((time.monotonic(), data.decode()))

    def pump(self, seconds):
        """Let messages arrive for seconds."""
        time.sleep(seconds)

    def wait_for(self, pred, seconds, what, start=0):
        """Wait until some message from index start on satisfies pred; its
        index."""
        end = time.monotonic() + seconds * SLOW
        while True:
            texts = self.texts()
            for i in range(start, len(texts)):
                if pred(texts[i]):
                    return i
            start = len(texts)
            if time.monotonic() > end:
                pytest.fail("no %s within %.1fs; got %r" % (what, seconds * SLOW, self.texts()))
            time.sleep(0.02)

    def texts(self, first=0):
        with self.lock:
            return [m for _, m in self.messages[first:]]

    def times(self, text):
        with self.lock:
            return [t for t, m in self.messages if m == text]

    def close(self):
        self.done.set()
        self.reader.join()
        self.sock.close()


@pytest.fixture
def notify(tmp_path, monkeypatch):
    path = str(tmp_path / "notify.sock")
    n = NotifySocket(path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", str(WATCHDOG_MS * 1000))
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    yield n
    n.close()


def test_notify_sequence_ready_status_watchdog_reload_stopping(start_relay, notify):
    relay = start_relay()
    ready = notify.wait_for(lambda m: m == "READY=1", 3.0, "READY=1")
    status = notify.wait_for(lambda m: m.startswith("STATUS="), 3.0, "STATUS=")
    assert ready < status, notify.texts()
    assert notify.texts()[status] == "STATUS=0 listeners, 0 waiting, 0 linked pairs"
    # Pings at about half the interval while every loop turns.
    t0 = time.monotonic()
    notify.pump(4 * WATCHDOG_MS / 1000.0)
    pings = [t for t in notify.times("WATCHDOG=1") if t >= t0]
    assert len(pings) >= 5 / SLOW, notify.texts()
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    assert max(gaps) < WATCHDOG_MS / 1000.0, gaps  # each within the interval

    # STATUS follows the live counts.
    lst = relay.register("/svc/")
    ln = relay.link(lst)
    notify.wait_for(lambda m: m.startswith("STATUS=1 listeners") and "1 linked pairs" in m,
                    5.0, "STATUS with the listener and the linked pair")

    # SIGHUP: RELOADING=1 with the monotonic time of the reload, then READY=1.
    mark = len(notify.texts())
    before_us = time.monotonic() * 1e6
    relay.signal(signal.SIGHUP)
    i = notify.wait_for(lambda m: m.startswith("RELOADING=1"), 3.0, "RELOADING=1", mark)
    m = re.fullmatch(r"RELOADING=1\nMONOTONIC_USEC=(\d+)", notify.texts()[i])
    assert m, notify.texts()[i]
    assert before_us - 1e6 <= int(m.group(1)) <= time.monotonic() * 1e6 + 1e6
    notify.wait_for(lambda m: m == "READY=1", 3.0, "READY=1 after RELOADING=1", i + 1)
    ln.client.send(b"still linked")
    assert ln.server.recv_exact(12) == b"still linked"
    ln.close()
    lst.close()

    # SIGTERM: STOPPING=1, and exit 0.
    mark = len(notify.texts())
    relay.signal(signal.SIGTERM)
    notify.wait_for(lambda m: m == "STOPPING=1", 3.0, "STOPPING=1", mark)
    assert relay.wait_exit(10 * SLOW) == 0
    notify.pump(0.1)
    assert notify.texts().count("STOPPING=1") == 1
    assert notify.texts().count("READY=1") == 2, notify.texts()


def test_no_watchdog_pings_without_watchdog_usec(start_relay, notify, monkeypatch):
    monkeypatch.delenv("WATCHDOG_USEC")
    start_relay()
    notify.wait_for(lambda m: m == "READY=1", 3.0, "READY=1")
    notify.pump(1.0)
    assert "WATCHDOG=1" not in notify.texts(), notify.texts()


def test_without_notify_socket_nothing_is_sent(start_relay, notify, monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET")
    relay = start_relay()
    notify.pump(0.5)
    assert notify.texts() == []
    assert relay.alive()


def start_with_stderr(rapi_server, backend, shard_workers, tmp_path, monkeypatch, journal):
    """A relay whose stderr file is created first, so that JOURNAL_STREAM can
    name it (journal=True) or name something else (journal=False)."""
    r = Relay(rapi_server, tmp_path / "jrelay", backend=backend, options=dict(DEFAULT_OPTIONS),
              workers=shard_workers)
    open(r.stderr_path, "wb").close()
    st = os.stat(r.stderr_path if journal else str(tmp_path))
    monkeypatch.setenv("JOURNAL_STREAM", "%d:%d" % (st.st_dev, st.st_ino))
    return r.start()


@pytest.mark.parametrize("journal", [True, False], ids=["journald", "file"])
def test_journald_priority_prefixes(rapi_server, backend, shard_workers, tmp_path, monkeypatch,
                                    journal):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    try:
        r = start_with_stderr(rapi_server, backend, shard_workers, tmp_path, monkeypatch,
                              journal)
    except Exception as e:  # io_uring missing: same rule as the fixture
        if backend == "uring" and "uring" in str(e).lower():
            pytest.skip("io_uring backend unavailable here")
        raise
    try:
        wait_until(lambda: "running" in r.stderr(), 2.0 * SLOW, what="the running line")
    finally:
        problems = r.finish()
    assert not problems, problems
    lines = [ln for ln in r.stderr().splitlines() if ln]
    assert lines
    stamp = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (error|warn|info|debug) ")
    if journal:
        assert all(re.match(r"^<[3467]>\S", ln) for ln in lines), lines
        assert not any(stamp.match(ln) for ln in lines), lines
        assert any(ln.startswith("<6>listening on ") for ln in lines), lines
    else:
        assert all(stamp.match(ln) for ln in lines), lines
