"""Several listeners per path, graceful leave and reconnect grace
(docs/PROTOCOL.md P-LPP-*, P-GRACE-*; rapi-server.conf(5) listeners_per_path,
offer_timeout, listener_grace)."""

import re
import threading
import time

import pytest

from relay import SLOW, assert_wr_101, expect_error, wait_until
from sdk_helpers import origin, sdk  # noqa: F401
from test_admin import admin_addr, metrics

OP_CLOSE = 0x8


def _notified_id(lst, timeout=5.0):
    _, note = lst.notification(timeout=timeout * SLOW)
    return note["id"]


def _which(listeners, wrid, rounds=20):
    """The name of the listener (of the dict) notified of wrid."""
    for _ in range(rounds):
        for name, lst in listeners.items():
            try:
                if _notified_id(lst, 0.1) == wrid:
                    return name
            except AssertionError as e:
                if "no WebSocket frame" not in str(e):
                    raise
    raise AssertionError("no listener was notified of %s" % wrid)


def _dial(relay, path, wrid, client):
    """The server dials back for wrid; both sides get their 101 and a byte
    goes each way."""
    server = relay.dialback(path, wrid)
    assert_wr_101(server.read_head(), wrid)
    assert_wr_101(client.read_head(), wrid)
    client.send(b"ping")
    assert server.recv_exact(4) == b"ping"
    server.send(b"pong")
    assert client.recv_exact(4) == b"pong"


@pytest.mark.all_modes
def test_two_listeners_least_busy_then_round_robin(start_relay):
    """P-LPP-1, P-LPP-2: each client goes to one listener, the least busy,
    ties in turn."""
    relay = start_relay(listeners_per_path=2)
    a, b = relay.register("/lpp/"), relay.register("/lpp/")
    c1, id1 = relay.client("/lpp/")
    assert _notified_id(a) == id1, "tie, neither chosen yet: the first"
    b.expect_no_frame(0.2)
    _dial(relay, "/lpp/", id1, c1)          # a has nothing outstanding again
    c2, id2 = relay.client("/lpp/")
    assert _notified_id(b) == id2, "tie: the one chosen least recently"
    c3, id3 = relay.client("/lpp/")         # b has one outstanding, a none
    assert _notified_id(a) == id3, "the least busy"
    c4, id4 = relay.client("/lpp/")         # one each: a tie, b's turn
    assert _notified_id(b) == id4
    a.expect_no_frame(0.2)
    for c, wrid in ((c2, id2), (c3, id3), (c4, id4)):
        _dial(relay, "/lpp/", wrid, c)
    # Linked at once each time: strictly in turn.
    got = []
    for _ in range(6):
        c, wrid = relay.client("/lpp/")
        got.append(_which({"a": a, "b": b}, wrid))
        _dial(relay, "/lpp/", wrid, c)
    assert got in (["a", "b"] * 3, ["b", "a"] * 3), got


@pytest.mark.all_modes
def test_409_beyond_listeners_per_path(start_relay):
    """P-LPP-1: the N+1th registration gets 409 path_in_use and disturbs no
    one; a listener that left makes room."""
    relay = start_relay(listeners_per_path=2)
    a, b = relay.register("/full/"), relay.register("/full/")
    c = relay.request(b"GET /full/ HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                      b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                      b"Sec-WebSocket-Key: 4LdgYw3N/tMd6DDaQv/blg==\r\n"
                      b"X-Remoted-APIKey: " + relay.server_key.encode() + b"\r\n\r\n")
    expect_error(c, 409, "path_in_use")
    relay.link(a)
    relay.link(b)
    a.send_frame(OP_CLOSE, b"\x03\xe8")
    a.expect_closed()
    relay.link(relay.register("/full/"))


@pytest.mark.all_modes
@pytest.mark.parametrize("how", ["tcp-close", "reset"])
def test_dead_listener_clients_reoffered(start_relay, how):
    """P-LPP-3: clients notified by a listener whose socket dies are offered
    to another listener of the path and link through it."""
    relay = start_relay(listeners_per_path=2, admin="127.0.0.1:0")
    a, b = relay.register("/dies/"), relay.register("/dies/")
    clients = [relay.client("/dies/") for _ in range(4)]
    on_a = [_notified_id(a) for _ in range(2)]
    on_b = [_notified_id(b) for _ in range(2)]
    assert sorted(on_a + on_b) == sorted(w for _, w in clients)
    if how == "reset":
        a.conn.set_linger0()
    a.close()
    again = sorted(_notified_id(b) for _ in range(2))
    assert again == sorted(on_a), "a's clients offered to b"
    for c, wrid in clients:
        _dial(relay, "/dies/", wrid, c)
    assert metrics(admin_addr(relay))["rapi_reoffers_total"] == 2


@pytest.mark.all_modes
def test_no_dialback_reoffered_before_504(start_relay):
    """P-LPP-4: a listener that does not dial back within offer_timeout has
    its client offered to another; the first dial-back links, a later one
    gets 404; with no other listener the client waits for its 504."""
    relay = start_relay(listeners_per_path=2, offer_timeout=1, dialback_timeout=4)
    a, b = relay.register("/late/"), relay.register("/late/")
    c, wrid = relay.client("/late/")
    assert _notified_id(a) == wrid
    t0 = time.monotonic()
    assert _notified_id(b, 3.0) == wrid
    assert 0.8 <= time.monotonic() - t0 < 2.0 * SLOW
    _dial(relay, "/late/", wrid, c)
    expect_error(relay.dialback("/late/", wrid), 404, "unknown_route")
    # One listener that never dials back: notified once, then 504.
    b.close()
    c2, wrid2 = relay.client("/late/")
    t0 = time.monotonic()
    assert _notified_id(a) == wrid2
    expect_error(c2, 504, "listener_timeout", timeout=6.0 * SLOW)
    assert time.monotonic() - t0 > 3.5
    a.expect_no_frame(0.1)


@pytest.mark.all_modes
def test_graceful_close_gets_no_new_clients_and_its_dialbacks_link(start_relay):
    """P-LPP-5: a listener that sends a close frame gets no new client; the
    dial-backs for clients it was told about still link."""
    relay = start_relay(listeners_per_path=2)
    a, b = relay.register("/bye/"), relay.register("/bye/")
    c1, id1 = relay.client("/bye/")
    assert _notified_id(a) == id1
    a.send_frame(OP_CLOSE, b"\x03\xe8")
    a.expect_closed()
    later = [relay.client("/bye/") for _ in range(3)]
    assert sorted(_notified_id(b) for _ in later) == sorted(w for _, w in later)
    _dial(relay, "/bye/", id1, c1)   # a's dial-back, after its close
    for c, wrid in later:
        _dial(relay, "/bye/", wrid, c)


@pytest.mark.all_modes
@pytest.mark.parametrize("how", ["tcp-close", "ws-close"])
def test_grace_listener_comes_back(start_relay, how):
    """P-GRACE-1, P-GRACE-2: the path's only listener goes and registers
    again within the grace: a client that arrived in between, and the
    waiting client of the listener that went, are notified to the new one
    and link (no 502)."""
    relay = start_relay(listener_grace=3)
    a = relay.register("/back/")
    c0, id0 = relay.client("/back/")
    assert _notified_id(a) == id0
    if how == "ws-close":
        a.send_frame(OP_CLOSE, b"\x03\xe8")
        a.expect_closed()
    else:
        a.close()
    c1, id1 = relay.client("/back/")
    c1.expect_silence(0.5)
    a2 = relay.register("/back/")
    got = {_notified_id(a2, 3.0)}
    if how == "tcp-close":
        got.add(_notified_id(a2))      # a's client, offered again
        assert got == {id0, id1}
    else:
        assert got == {id1}            # a's client waits for a's own dial-back
    _dial(relay, "/back/", id1, c1)
    _dial(relay, "/back/", id0, c0)


@pytest.mark.all_modes
def test_grace_expires_502(start_relay):
    """P-GRACE-1: no listener within the grace: the waiting client gets 502
    when it ends, not at once."""
    relay = start_relay(listener_grace=1)
    relay.register("/exp/").close()
    time.sleep(0.1)
    t0 = time.monotonic()
    c, _ = relay.client("/exp/")
    expect_error(c, 502, "missing_destination", timeout=3.0 * SLOW)
    assert 0.6 <= time.monotonic() - t0 < 2.0 * SLOW
    # Over: 502 at once again.
    t0 = time.monotonic()
    relay.expect_502("/exp/")
    assert time.monotonic() - t0 < 0.5 * SLOW


@pytest.mark.all_modes
def test_never_registered_path_502_at_once(start_relay):
    """P-GRACE-3: a path that had no listener within the grace answers 502
    at once."""
    relay = start_relay(listener_grace=30)
    t0 = time.monotonic()
    relay.expect_502("/never/")
    assert time.monotonic() - t0 < 0.5 * SLOW


@pytest.mark.all_modes
def test_grace_0_is_the_original_behaviour(start_relay):
    """P-GRACE-4: listener_grace 0: the waiting clients of a listener that
    goes get 502 at once, and so does a client arriving after it."""
    relay = start_relay(listener_grace=0)
    a = relay.register("/g0/")
    c, wrid = relay.client("/g0/")
    assert _notified_id(a) == wrid
    a.close()
    t0 = time.monotonic()
    expect_error(c, 502, "missing_destination")
    relay.expect_502("/g0/")
    assert time.monotonic() - t0 < 0.5 * SLOW
    expect_error(relay.dialback("/g0/", wrid), 404, "unknown_route")


@pytest.mark.all_modes
def test_grace_metrics(start_relay):
    """P-GRACE-1: grace waits and expiries are counted on /metrics."""
    relay = start_relay(listener_grace=1, admin="127.0.0.1:0")
    relay.register("/gm/").close()
    c, _ = relay.client("/gm/")
    expect_error(c, 502, "missing_destination", timeout=3.0 * SLOW)
    m = metrics(admin_addr(relay))
    assert m["rapi_grace_waits_total"] == 1 and m["rapi_grace_expiries_total"] == 1
    wait_until(lambda: metrics(admin_addr(relay))["rapi_listeners"] == 0, 2.0,
               what="no listener")


def _client_loop(relay, path, stop, out):
    """Clients one after another until stop: each links and gets its bytes
    echoed; failures are collected."""
    i = 0
    while not stop.is_set():
        c, wrid = relay.client(path)
        stage = "setup"
        try:
            assert_wr_101(c.read_head(timeout=8.0 * SLOW), wrid)
            stage = "exchange"
            msg = b"client %d" % i
            c.send(msg)
            assert c.recv_exact(len(msg), timeout=5.0 * SLOW) == msg
            out["ok"] += 1
        except (AssertionError, OSError) as e:
            out["failed"].append("client %d, %s: %r" % (i, stage, e))
        finally:
            c.close()
        i += 1


def _start_loops(relay, path, n):
    """n client loops on path; returns (stop event, outs, threads)."""
    stop = threading.Event()
    outs = [{"ok": 0, "failed": []} for _ in range(n)]
    threads = [threading.Thread(target=_client_loop, args=(relay, path, stop, o), daemon=True)
               for o in outs]
    for t in threads:
        t.start()
    return stop, outs, threads


@pytest.mark.all_modes
@pytest.mark.relay_options(listeners_per_path=2)
def test_expose_replicas_rolling_restart_loses_no_client(relay, sdk, origin):
    """P-LPP-5: two `rapi expose` on one path share it; each in turn is
    stopped (SIGTERM: it leaves gracefully) and started again while clients
    keep coming: not one client fails."""
    _, port = origin.start("echo")
    to = "127.0.0.1:%d" % port
    reps = [sdk.expose("/rep/", to), sdk.expose("/rep/", to)]
    stop, out = threading.Event(), {"ok": 0, "failed": []}
    t = threading.Thread(target=_client_loop, args=(relay, "/rep/", stop, out), daemon=True)
    t.start()
    try:
        time.sleep(0.5)
        for i in range(len(reps)):
            assert reps[i].stop() == 0
            assert "leaving" in reps[i].stderr()
            reps[i] = sdk.expose("/rep/", to)
            time.sleep(0.5)
        before = out["ok"]
        wait_until(lambda: out["ok"] > before + 5, 5.0 * SLOW, what="clients after the restarts")
    finally:
        stop.set()
        t.join(20.0 * SLOW)
    assert not out["failed"], out["failed"][:5]
    assert out["ok"] > 20, out
    # Both replicas served clients after the restart.
    for r in reps:
        assert "client " in r.stderr() or r.wait_log(r"client .* in \d+ out", 5.0)


@pytest.mark.all_modes
def test_expose_restart_within_grace_loses_no_client(relay, sdk, origin):
    """P-GRACE-1, P-GRACE-2, P-LPP-5 with the defaults (one listener per
    path): the only `rapi expose` of a path is restarted while clients keep
    coming; they wait out the restart and none fails."""
    _, port = origin.start("echo")
    to = "127.0.0.1:%d" % port
    rep = sdk.expose("/one/", to)
    stop, out = threading.Event(), {"ok": 0, "failed": []}
    t = threading.Thread(target=_client_loop, args=(relay, "/one/", stop, out), daemon=True)
    t.start()
    try:
        time.sleep(0.5)
        for _ in range(2):
            assert rep.stop() == 0
            rep = sdk.expose("/one/", to)
            time.sleep(0.5)
        before = out["ok"]
        wait_until(lambda: out["ok"] > before + 5, 5.0 * SLOW, what="clients after the restarts")
    finally:
        stop.set()
        t.join(20.0 * SLOW)
    assert not out["failed"], out["failed"][:5]


@pytest.mark.all_modes
@pytest.mark.relay_options(listeners_per_path=2)
def test_expose_replica_killed_mid_load_no_setup_fails(relay, sdk, origin):
    """P-LPP-2, P-LPP-3: two `rapi expose` replicas share a load (neither is
    idle); one is killed with SIGKILL mid-load: every client still links (the
    killed one's notified clients go to the other); only an exchange that was
    running through the killed one may be cut."""
    _, port = origin.start("echo")
    to = "127.0.0.1:%d" % port
    reps = [sdk.expose("/kill/", to), sdk.expose("/kill/", to)]
    stop, outs, threads = _start_loops(relay, "/kill/", 4)
    try:
        wait_until(lambda: sum(o["ok"] for o in outs) >= 100, 20.0 * SLOW, what="100 clients")
        for r in reps:
            assert "client " in r.stderr(), "a replica was idle"
        sdk.expected_exit[reps[0].pid] = (-9,)
        reps[0].kill()
        before = sum(o["ok"] for o in outs)
        wait_until(lambda: sum(o["ok"] for o in outs) >= before + 100, 20.0 * SLOW,
                   what="100 clients after the kill")
    finally:
        stop.set()
        for t in threads:
            t.join(20.0 * SLOW)
    failed = [f for o in outs for f in o["failed"]]
    assert not [f for f in failed if ", setup:" in f], failed[:5]
    assert len(failed) <= len(outs), failed[:5]


SHARED_CLIENTS = 1000


@pytest.mark.relay_options(listeners_per_path=2)
def test_two_replicas_share_1000_clients(relay, sdk, origin):
    """P-LPP-2: two `rapi expose` replicas on one path share 1,000 clients
    arriving from 8 threads at once: every client links and is echoed, and
    neither replica is idle (each served at least a quarter)."""
    _, port = origin.start("echo")
    to = "127.0.0.1:%d" % port
    reps = [sdk.expose("/share/", to), sdk.expose("/share/", to)]
    stop, outs, threads = _start_loops(relay, "/share/", 8)
    try:
        wait_until(lambda: sum(o["ok"] for o in outs) >= SHARED_CLIENTS, 90.0 * SLOW,
                   what="%d clients" % SHARED_CLIENTS)
    finally:
        stop.set()
        for t in threads:
            t.join(20.0 * SLOW)
    failed = [f for o in outs for f in o["failed"]]
    assert not failed, failed[:5]
    total = sum(o["ok"] for o in outs)
    served = []
    for r in reps:
        r.wait_log(r"client ", 5.0)
        served.append(len(re.findall(r"client \S+ -> \S+: in \d+ out", r.stderr())))
    print("two replicas, %d clients: %s served each" % (total, served))
    assert sum(served) >= SHARED_CLIENTS * 0.95, (served, total)
    assert min(served) >= total // 4, "a replica was (nearly) idle: %s of %d" % (served, total)
