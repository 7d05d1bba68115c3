"""Seamless upgrade (rapi-server(8) UPGRADE, docs/DESIGN.md "Seamless
upgrade"): SIGUSR2 starts the binary again, which takes over the listen
sockets (accept queues kept), the request heads being read, the listeners,
the waiting clients (offered, told, queued), the parked dial-backs and the
idle linked pairs; the old process drains what stays and exits.

The old process is started by the test; the new one is its child, found by
the `upgrade: started pid N` line (both write to the same stderr). This
module makes the test process a child subreaper, so that a new process
whose parent (the old one) exited becomes the test's child: its exit status
is then read with waitpid, and it is stopped by PID at teardown."""

import ctypes
import os
import re
import signal
import socket
import threading
import time

import pytest

from relay import (SLOW, Conn, assert_wr_101, build_request, expect_error, fd_counts,
                   random_token, wait_until, webroute_headers, write_key_file)
from test_admin import admin_addr, metrics
from test_parked import assert_park_101, park, wait_parked

tr = pytest.importorskip("test_tls_relay")
tls_certs = tr.tls_certs  # the fixture

PR_SET_CHILD_SUBREAPER = 36
STARTED_RE = re.compile(r"upgrade: started pid (\d+)")
TOOK_RE = re.compile(r"upgrade: took over from pid (\d+): (\d+) listen sockets, (\d+) listeners, "
                     r"(\d+) waiting clients, (\d+) parked, (\d+) heads, (\d+) links")
UPGRADE_WAIT = 10.0 * SLOW


@pytest.fixture(scope="module", autouse=True)
def subreaper():
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    yield
    libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def _exit_status(pid):
    """The exit status of pid once it is gone (None when it was not our
    child to reap), or False while it runs."""
    try:
        got, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        try:
            with open("/proc/%d/stat" % pid) as f:
                return None if f.read().split(") ")[1].startswith("Z") else False
        except FileNotFoundError:
            return None
    if got == 0:
        return False
    return os.waitstatus_to_exitcode(status)


def wait_gone(pid, timeout):
    """Wait for pid to exit; its exit code (None: not ours to read)."""
    out = {}

    def gone():
        st = _exit_status(pid)
        if st is False:
            return False
        out["st"] = st
        return True
    wait_until(gone, timeout, what="pid %d to exit" % pid)
    return out["st"]


class Upgrades:
    """Send SIGUSR2 and follow the log; remember every new process."""

    def __init__(self, relay):
        self.relay = relay
        self.pids = []

    def count(self, what):
        return self.relay.stderr().count(what)

    def upgrade(self, pid=None, ok=True):
        """SIGUSR2 to pid (default: the newest process); the new pid."""
        pid = pid or (self.pids[-1] if self.pids else self.relay.pid)
        started, done = self.count("upgrade: started pid"), self.count("handed over to pid")
        failed, took = self.count("upgrade failed:"), self.count("upgrade: took over")
        os.kill(pid, signal.SIGUSR2)
        wait_until(lambda: self.count("upgrade: started pid") > started, UPGRADE_WAIT,
                   what="upgrade: started pid")
        new = int(STARTED_RE.findall(self.relay.stderr())[-1])
        if ok:
            wait_until(lambda: self.count("upgrade: took over") > took and
                       self.count("handed over to pid") > done, UPGRADE_WAIT,
                       what="handed over / took over")
            self.pids.append(new)
        else:
            wait_until(lambda: self.count("upgrade failed:") > failed, UPGRADE_WAIT,
                       what="upgrade failed")
        return new

    def took(self):
        """The last "took over" line: (listen sockets, listeners, waiting,
        parked, heads, links)."""
        m = TOOK_RE.findall(self.relay.stderr())
        assert m, self.relay.stderr()
        return tuple(int(x) for x in m[-1][1:])

    def finish(self):
        problems = []
        self.relay.close_all()  # else the links drain for drain_timeout
        if self.pids and self.relay.proc.poll() is None:
            try:  # handed over: it exits once drained
                self.relay.wait_exit(10.0 * SLOW)
            except AssertionError as e:
                problems.append(str(e))
        for pid in self.pids:
            if _exit_status(pid) is False:
                os.kill(pid, signal.SIGTERM)
            try:
                st = wait_gone(pid, 15.0 * SLOW)
            except AssertionError:
                os.kill(pid, signal.SIGKILL)
                problems.append("pid %d did not exit after SIGTERM" % pid)
                continue
            if st not in (0, None):
                problems.append("pid %d exited with %r" % (pid, st))
        return problems


@pytest.fixture
def upgrades():
    made = []

    def make(relay):
        u = Upgrades(relay)
        made.append(u)
        return u
    yield make
    problems = []
    for u in made:
        problems += u.finish()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def _note_id(lst, timeout=5.0):
    return lst.notification(timeout * SLOW)[1]["id"]


def _dial(relay, path, wrid, client):
    s = relay.dialback(path, wrid)
    assert_wr_101(s.read_head(), wrid)
    assert_wr_101(client.read_head(), wrid)
    return s


def _exchange(a, b, n=5000, tag=b"x"):
    data = (tag + bytes(range(256))) * n
    a.send(data)
    assert b.recv_exact(len(data), timeout=10 * SLOW) == data
    b.send(data[::-1])
    assert a.recv_exact(len(data), timeout=10 * SLOW) == data[::-1]


def _old_gone(relay):
    assert relay.wait_exit(10.0 * SLOW) == 0, relay.stderr()[-3000:]
    assert relay.stderr().rstrip().endswith("stopped") or "stopped" in relay.stderr()


def _fds_back(pid, base, what):
    """pid's sockets back to base; every other fd too, but pooled pipes
    (kept for the next bulk transfer)."""
    wait_until(lambda: fd_counts(pid)["socket"] == base["socket"], 5.0 * SLOW,
               what="%s: %d sockets (has %d)" % (what, base["socket"], fd_counts(pid)["socket"]))
    now = fd_counts(pid)
    assert now["total"] - now["pipe"] == base["total"] - base["pipe"], (now, base)


@pytest.mark.all_modes
def test_listener_waiter_head_and_link_move(start_relay, upgrades):
    """The same WebSocket keeps working across USR2 and its next client is
    notified by the new process; a client waiting for its dial-back links
    with a dial-back that lands in the new process; a head sent in two
    pieces around the upgrade is finished by the new process; a linked pair
    moves data byte-exact before and after; the old process exits 0 after
    handing over, and the new one holds exactly the sockets the old held at
    start once the test's connections are closed."""
    relay = start_relay()
    up = upgrades(relay)
    base = relay.baseline
    lst = relay.register("/up/")
    link = relay.link(lst)
    _exchange(link.client, link.server, tag=b"a")
    waiting, wid = relay.client("/up/")
    assert _note_id(lst) == wid
    wrid2 = random_token()
    head = build_request("/up/", webroute_headers(relay.client_key, wrid2))
    split = relay.connect()
    split.send(head[:len(head) // 2])
    time.sleep(0.1)  # the old process has read the first piece
    new = up.upgrade()
    assert up.took() == (1, 1, 1, 0, 1, 1)
    _old_gone(relay)
    split.send(head[len(head) // 2:])
    assert _note_id(lst) == wrid2                 # notified by the new process
    _dial(relay, "/up/", wrid2, split)
    s = _dial(relay, "/up/", wid, waiting)         # its dial-back lands in the new one
    _exchange(waiting, s, tag=b"b")
    _exchange(link.client, link.server, tag=b"c")  # the adopted pair
    link.client.shutdown_wr()
    link.server.expect_eof()
    link.server.send(b"tail")
    assert link.client.recv_exact(4) == b"tail"
    later = relay.link(lst)                        # and the next one
    _exchange(later.client, later.server, tag=b"d")
    relay.close_all()
    _fds_back(new, base, "new process")


@pytest.mark.relay_options(listener_grace=5, offer_timeout=1)
def test_told_and_queued_clients_move(relay, upgrades):
    """A client told to a listener that left (close frame) and a client
    queued in a grace move; a listener registering with the new process
    gets the queued one at once and the told one after its offer; both
    link."""
    up = upgrades(relay)
    a = relay.register("/tq/")
    c1, id1 = relay.client("/tq/")
    assert _note_id(a) == id1
    a.send_frame(0x8, b"\x03\xe8")
    a.expect_closed()
    c2, id2 = relay.client("/tq/")               # queued: the grace runs
    c2.expect_silence(0.2)
    up.upgrade()
    assert up.took()[2] == 2
    b = relay.register("/tq/")
    assert _note_id(b) == id2
    assert _note_id(b, 3.0) == id1               # told: offered again at its offer end
    _exchange(c1, _dial(relay, "/tq/", id1, c1), n=10)
    _exchange(c2, _dial(relay, "/tq/", id2, c2), n=10)


@pytest.mark.relay_options(listener_grace=0, admin="127.0.0.1:0")
def test_parked_dialback_moves(relay, upgrades):
    """A parked dial-back moves and is linked at once by a client of the new
    process (no notification); the admin socket moves too."""
    up = upgrades(relay)
    lst = relay.register("/pk/")
    s = park(relay, "/pk/")
    wait_parked(relay, 1)
    up.upgrade()
    assert up.took()[:4] == (2, 1, 0, 1)
    _old_gone(relay)
    assert metrics(admin_addr(relay))["rapi_parked"] == 1  # the new process answers
    client, wrid = relay.client("/pk/", timeout=90)
    assert_wr_101(client.read_head(), wrid)
    assert_park_101(s.read_head(), client, wrid, 90)
    _exchange(client, s, n=100)
    lst.expect_no_frame(0.2)


def _load(relay, lst, stop, result):
    """Client setups one after the other until stop is set: connect,
    notification, dial-back, a byte each way. Every failure is recorded."""
    n = 0
    while not stop.is_set():
        try:
            c, wrid = relay.client("/load/")
            assert _note_id(lst) == wrid
            s = _dial(relay, "/load/", wrid, c)
            c.send(b"q")
            assert s.recv_exact(1) == b"q"
            s.send(b"r")
            assert c.recv_exact(1) == b"r"
            c.close()
            s.close()
            n += 1
        except Exception as e:  # noqa: BLE001 - every failure counts
            result["errors"].append(repr(e))
            return
    result["ok"] = n


@pytest.mark.all_modes
def test_connects_during_upgrade_all_succeed(start_relay, upgrades):
    """Setups run back to back while the relay is upgraded three times:
    every connect is accepted (by the old process, or queued while frozen
    and accepted by the new one), every setup links."""
    relay = start_relay()
    up = upgrades(relay)
    lst = relay.register("/load/")
    stop, result = threading.Event(), {"errors": []}
    t = threading.Thread(target=_load, args=(relay, lst, stop, result), daemon=True)
    t.start()
    try:
        for _ in range(3):
            time.sleep(0.3)
            up.upgrade()
        time.sleep(0.3)
    finally:
        stop.set()
        t.join(20)
    assert not result["errors"], result["errors"]
    assert result["ok"] > 10


def test_three_upgrades_keep_a_transfer_and_fds(start_relay, upgrades):
    """Three upgrades in a row (each to the newest process): one linked
    pair carries data byte-exact across all three; every old process exits
    0; the last one's fds are back to the first one's at the end."""
    relay = start_relay()
    up = upgrades(relay)
    base = relay.baseline
    lst = relay.register("/three/")
    link = relay.link(lst)
    for i in range(3):
        _exchange(link.client, link.server, n=200, tag=bytes([65 + i]))
        up.upgrade()
        assert up.took()[1:] == (1, 0, 0, 0, 1), up.took()
    _exchange(link.client, link.server, n=200, tag=b"z")
    _old_gone(relay)
    for pid in up.pids[:-1]:
        assert wait_gone(pid, 10.0 * SLOW) in (0, None)
    later = relay.link(lst)
    _exchange(later.client, later.server, n=10)
    relay.close_all()
    _fds_back(up.pids[-1], base, "newest process")


def test_failed_new_process_leaves_the_old_serving(start_relay, upgrades):
    """A new process that fails before the freeze (here: a bad key file)
    changes nothing: the old logs `upgrade failed`, keeps its listener and
    waiting client, serves on, holds no more fds than before, and a later
    upgrade (keys fixed) works."""
    relay = start_relay()
    up = upgrades(relay)
    lst = relay.register("/fail/")
    c, wrid = relay.client("/fail/")
    assert _note_id(lst) == wrid
    before = relay.stable_fd_counts()
    good = open(relay.key_file).read()
    with open(relay.key_file, "w") as f:
        f.write("not a key file\n")
    up.upgrade(ok=False)
    assert re.search(r"upgrade failed: .*exited with status 1", relay.stderr()), relay.stderr()
    assert relay.alive()
    _exchange(c, _dial(relay, "/fail/", wrid, c), n=10)
    relay.link(lst)
    # The waiting client's dial-back and the second link's two sockets.
    assert relay.stable_fd_counts()["total"] == before["total"] + 3
    with open(relay.key_file, "w") as f:
        f.write(good)
    up.upgrade()
    relay.link(lst)


def test_usr2_while_stopping_is_ignored(start_relay):
    """USR2 to a relay that drains (SIGTERM) starts nothing."""
    relay = start_relay()
    lst = relay.register("/twice/")
    link = relay.link(lst)
    relay.signal(signal.SIGTERM)
    wait_until(lambda: "stopping: draining" in relay.stderr(), 5.0, what="draining")
    relay.signal(signal.SIGUSR2)
    wait_until(lambda: "SIGUSR2 ignored" in relay.stderr(), 5.0, what="SIGUSR2 ignored")
    assert "upgrade: started pid" not in relay.stderr()
    _exchange(link.client, link.server, n=10)
    link.close()
    assert relay.wait_exit(5.0 * SLOW) == 0


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_listen_workers_io_change_take_effect(start_relay, upgrades, tmp_path, backend):
    """A new configuration read by the new process applies listen, workers
    and io: an added address is opened, a kept one keeps its socket, a
    dropped one is closed; /metrics of the new process says the new
    workers and io."""
    keys = tmp_path / "k"
    write_key_file(str(keys))
    p1, p2, p3 = _free_port(), _free_port(), _free_port()
    conf = tmp_path / "c.conf"
    body = "keys %s\nlog_level debug\ndrain_timeout 3\nadmin 127.0.0.1:%d\n" % (keys, p3)
    conf.write_text(body + "listen 127.0.0.1:%d\nworkers 1\nio %s\n" % (p1, backend))
    relay = start_relay(config_file=str(conf), key_file=str(keys), cli_flags=False)
    up = upgrades(relay)
    lst = relay.register("/cfg/")
    other = "epoll" if backend == "uring" else "uring"
    conf.write_text(body + "listen 127.0.0.1:%d\nworkers 2\nio %s\n" % (p2, other))
    up.upgrade()
    assert up.took()[0] == 1                     # the admin socket; p1 was dropped
    _old_gone(relay)
    info = [k for k in metrics(("127.0.0.1", p3)) if k.startswith("rapi_info")][0]
    assert 'workers="2"' in info and ('io="%s"' % ("io_uring" if other == "uring" else other)
                                      in info or 'io="%s"' % other in info), info
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", p1), timeout=1).close()
    relay.addr = ("127.0.0.1", p2)
    relay.link(lst)                              # the listener moved too
    expect_error(relay.dialback("/cfg/", random_token()), 404, "unknown_route")


def test_tls_listener_reregisters_and_tls_link_drains(start_relay, upgrades, tls_certs):
    """The TLS limit: a TLS listener is not moved: it gets close 1001 from
    the old process and registers again with the new one; a TLS linked pair
    drains in the old process (bytes still flow after the handover), which
    exits 0 once it closes. Both listen sockets (TLS and plain) move."""
    relay = start_relay(listen=tr.TLS_LISTEN, tls_cert=tls_certs.server,
                        tls_key=tls_certs.server_key, listener_grace=5)
    up = upgrades(relay)
    ctx = tr.client_ctx(tls_certs)
    lst = tr.register(relay, "/tls/", tr.tls_conn(relay, ctx))
    link = tr.link(relay, lst, tr.tls_conn(relay, ctx), tr.tls_conn(relay, ctx))
    up.upgrade()
    assert up.took()[:2] == (2, 0), up.took()
    lst.expect_close(1001)
    _exchange(link.client, link.server, n=50)      # drains in the old process
    assert relay.alive()
    lst2 = tr.register(relay, "/tls/", tr.tls_conn(relay, ctx))
    later = tr.link(relay, lst2, tr.tls_conn(relay, ctx), tr.plain_conn(relay))
    _exchange(later.client, later.server, n=50)
    link.close()
    _old_gone(relay)


def test_new_process_that_hangs_is_killed_at_upgrade_timeout(start_relay, upgrades, tmp_path):
    """A new process that does not answer within upgrade_timeout (here it
    blocks opening its configuration file, a FIFO nobody writes) is killed;
    the old one logs `upgrade failed` and serves on."""
    conf = tmp_path / "c.conf"
    conf.write_text("timeout 60\n")
    relay = start_relay(config_file=str(conf), upgrade_timeout=1)
    up = upgrades(relay)
    lst = relay.register("/hang/")
    conf.unlink()
    os.mkfifo(str(conf))
    t0 = time.monotonic()
    new = up.upgrade(ok=False)
    assert 0.8 <= time.monotonic() - t0 < 5.0 * SLOW
    assert re.search(r"upgrade failed: the new process did not answer in time; pid %d killed"
                     % new, relay.stderr()), relay.stderr()
    assert _exit_status(new) is not False or not os.path.exists("/proc/%d" % new)
    relay.link(lst)
    conf.unlink()
    conf.write_text("timeout 60\n")


def test_sd_notify_mainpid_then_ready_and_watchdog(rapi_server, backend, shard_workers, upgrades,
                                                   tmp_path, monkeypatch):
    """Under a service manager: the old process sends MAINPID=N (and
    STATUS=) and then nothing (no STOPPING=1: that would stop the service);
    the new process sends READY=1 after it and keeps the watchdog pinged
    (WATCHDOG_PID, which names the old process as systemd sets it, is not
    passed on)."""
    from conftest import DEFAULT_OPTIONS
    from relay import Relay
    from test_service import NotifySocket
    path = str(tmp_path / "notify.sock")
    notify = NotifySocket(path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "400000")
    wrap = tmp_path / "as-systemd"
    wrap.write_text('#!/bin/sh\nWATCHDOG_PID=$$ exec %s "$@"\n' % rapi_server)
    wrap.chmod(0o755)
    relay = Relay(str(wrap), tmp_path / "r", backend=backend, options=dict(DEFAULT_OPTIONS),
                  workers=shard_workers)
    try:
        relay.start()
        up = upgrades(relay)
        notify.wait_for(lambda m: m == "READY=1", 3.0, "READY=1")
        relay.register("/svc/")
        new = up.upgrade()
        i = notify.wait_for(lambda m: m.startswith("MAINPID=%d\n" % new), 3.0, "MAINPID")
        assert notify.texts()[i] == "MAINPID=%d\nSTATUS=handed over to pid %d" % (new, new)
        notify.wait_for(lambda m: m == "READY=1", 3.0, "READY=1 from the new process", i + 1)
        _old_gone(relay)
        mark = len(notify.texts())
        notify.pump(1.0)
        assert notify.texts()[mark:].count("WATCHDOG=1") >= 2, notify.texts()
        assert "STOPPING=1" not in notify.texts(), notify.texts()
    finally:
        problems = relay.finish()
        notify.close()
    assert not problems, problems


@pytest.mark.all_modes
@pytest.mark.relay_options(listeners_per_path=2)
def test_two_listeners_and_many_paths_move(relay, upgrades):
    """Several paths (on every shard) and two listeners on one path, each
    with clients offered to it: every listener and client moves, every
    dial-back links in the new process, and new clients are shared by both
    listeners of the path again."""
    up = upgrades(relay)
    a, b = relay.register("/two/"), relay.register("/two/")
    others = [relay.register("/m%d/" % i) for i in range(6)]
    waiting = [relay.client("/two/") for _ in range(4)]
    got = {}
    for lst in (a, b, a, b):
        got[_note_id(lst)] = lst
    assert sorted(got) == sorted(w for _, w in waiting)
    side = [relay.client(o.path) for o in others]
    for (c, wrid), o in zip(side, others):
        assert _note_id(o) == wrid
    up.upgrade()
    assert up.took()[1:3] == (8, 10), up.took()
    for c, wrid in waiting:
        _exchange(c, _dial(relay, "/two/", wrid, c), n=5)
    for (c, wrid), o in zip(side, others):
        _exchange(c, _dial(relay, o.path, wrid, c), n=5)
    later = [relay.client("/two/") for _ in range(4)]
    ids = [_note_id(a), _note_id(a), _note_id(b), _note_id(b)]
    assert sorted(ids) == sorted(w for _, w in later)


def test_proxy_protocol_head_moves_mid_header(start_relay, upgrades):
    """A head on a proxy_protocol socket whose PROXY header is half sent at
    the upgrade moves in its PROXY phase: the new process reads the rest,
    and the client is the address the header names. The two listen sockets
    (plain, proxy_protocol: both port 0) go to the lines with their flags."""
    relay = start_relay(listen=["127.0.0.1:0", "127.0.0.1:0 proxy_protocol"],
                        trusted_proxies="127.0.0.1/32")
    up = upgrades(relay)
    plain, proxied = relay.addrs[0], relay.addrs[1]
    lst = relay.register("/pp/")
    wrid = random_token()
    c = Conn.connect(proxied, keys=relay.secrets())
    relay.conns.append(c)
    c.send(b"PROXY TCP4 203.0.113.7 127.0.")
    time.sleep(0.1)
    up.upgrade()
    assert up.took()[4] == 1, up.took()
    c.send(b"0.1 4711 80\r\n" + build_request("/pp/", webroute_headers(relay.client_key, wrid)))
    raw, note = lst.notification(5.0 * SLOW)
    assert note["id"] == wrid and note["ipaddr"] == "203.0.113.7:4711", raw
    _dial(relay, "/pp/", wrid, c)
    assert "listening on %s:%d (taken over)" % plain in relay.stderr()
    assert "listening on %s:%d (taken over)" % proxied in relay.stderr()


def test_half_closed_link_moves(start_relay, upgrades):
    """A linked pair whose client already ended its side (FIN forwarded)
    moves with that state: the server still sends, byte-exact, then ends
    its side, and the pair closes in the new process."""
    relay = start_relay()
    up = upgrades(relay)
    lst = relay.register("/half/")
    link = relay.link(lst)
    _exchange(link.client, link.server, n=20)
    link.client.shutdown_wr()
    link.server.expect_eof()
    time.sleep(0.05)
    up.upgrade()
    assert up.took()[5] == 1, up.took()
    data = bytes(range(256)) * 300
    link.server.send(data)
    assert link.client.recv_exact(len(data), timeout=5 * SLOW) == data
    link.server.shutdown_wr()
    link.client.expect_eof()
    wait_until(lambda: "close path=/half/" in relay.stderr(), 5.0 * SLOW, what="pair closed")


def test_ipv6_listen_socket_moves(start_relay, upgrades):
    """An IPv6 listen socket ([::1]:0) is taken over like an IPv4 one: a
    listener registered over IPv6 keeps working and new IPv6 clients reach
    the new process on the same port."""
    from relay import ipv6_loopback_available
    if not ipv6_loopback_available():
        pytest.skip("no IPv6 loopback here")
    relay = start_relay(listen=("127.0.0.1:0", "[::1]:0"))
    up = upgrades(relay)
    lst = relay.register("/six/", v6=True)
    up.upgrade()
    assert up.took()[:2] == (2, 1), up.took()
    assert "listening on [::1]:%d (taken over)" % relay.addr6[1] in relay.stderr()
    link = relay.link(lst, v6=True)
    _exchange(link.client, link.server, n=10)
