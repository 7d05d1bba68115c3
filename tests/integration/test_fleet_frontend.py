"""Issue 12, topology 1: a front end with path affinity over 3 relays.

HAProxy and nginx run the example configurations of packaging/fleet/ (only
the addresses change, see fleet.py). Three relays on 127.0.0.11-13, two
paths held by each (found at run time: a probe registers candidate paths
through the front end and each relay's log says which it got), one
`rapi expose` per path in front of an identity server, clients in a loop
through the front end. Then:

  1. kill -9 one relay: every path works again within the bound (2 s for
     HAProxy; measured and printed for both), the long-lived tunnels on the
     surviving relays carry bytes before and after, paths of the surviving
     relays never fail, no client ever reaches another path's server;
  2. restart the dead relay: every path keeps working (the listeners that
     moved stay where they are: clients follow them), tunnels undisturbed;
  3. a moved listener that reconnects registers on its hash owner again
     (the restarted relay) and its clients follow it there.

test_front_end_drain does the same with SIGTERM (the victim's tunnel still
carries bytes while it drains; it exits 0), test_front_end_frozen_relay
with SIGSTOP (HAProxy only: its health checks cut the frozen relay's
connections; open-source nginx has no active checks, see
packaging/fleet/README.md). `rapi connect` is checked through each front end.

Each test prints FLEET lines with the figures (run pytest with -s).
"""

import os
import re
import signal
import time

import pytest

import fleet
from fleet import (FleetRelay, HAProxyFront, IdentityServer, NginxFront, Prober, Tunnel,
                   common_free_port, probe_register)
from relay import SLOW, Conn, wait_until, write_key_file
from sdk_helpers import Proc, build_dir

PATHS_PER_RELAY = 2
MAX_CANDIDATES = 60
RECOVERY_BOUND = {"haproxy": 2.0, "nginx": 2.0}
RECOVERY_WAIT = 20.0  # give up waiting for recovery after this (the test then fails)
NGINX_FAIL_TIMEOUT = 5.0  # nginx.conf: registrations skip a failed relay this long


def _front_kind_available(kind):
    binary = fleet.HAPROXY if kind == "haproxy" else fleet.NGINX
    return os.access(binary, os.X_OK)


class Fleet:
    """Relays, front end, identity servers, exposes and tunnels of one run."""

    def __init__(self, kind, rapi_server, tmp_path):
        self.kind, self.tmp = kind, str(tmp_path)
        self.key_file = os.path.join(self.tmp, "keys")
        self.server_key, self.client_key = write_key_file(self.key_file)
        port = common_free_port(fleet.RELAY_HOSTS)
        admin = common_free_port(fleet.RELAY_HOSTS, avoid=(port,))
        self.relays = [FleetRelay(rapi_server, self.tmp, "relay%d" % (i + 1), h, port, admin,
                                  self.key_file, None, proxy_protocol=(kind == "haproxy"))
                       for i, h in enumerate(fleet.RELAY_HOSTS)]
        front_port = common_free_port([fleet.FRONT_HOST])
        self.front = (HAProxyFront if kind == "haproxy" else NginxFront)(self.tmp, front_port)
        self.idents, self.exposes, self.tunnels = {}, {}, []
        self.procs = []  # every rapi expose started, replaced ones included
        self.prober = None
        self.rapi = os.path.join(build_dir(), "rapi")

    def start(self):
        for r in self.relays:
            r.start()
        self.front.start(self.relays)

    def owner(self, path):
        for r in self.relays:
            if path in r.paths():
                return r
        return None

    def choose_paths(self):
        """PATHS_PER_RELAY paths per relay, by probing candidate paths."""
        chosen = {r.name: [] for r in self.relays}
        for i in range(MAX_CANDIDATES):
            path = "/fleet/%s/p%d" % (self.kind, i)
            c = probe_register(self.front.addr, path, self.server_key)
            r = wait_until(lambda: self.owner(path), 5 * SLOW, what="a relay logging %s" % path)
            c.close()
            wait_until(lambda: self.owner(path) is None, 5 * SLOW, what="%s unregistered" % path)
            if len(chosen[r.name]) < PATHS_PER_RELAY:
                chosen[r.name].append(path)
            if all(len(v) == PATHS_PER_RELAY for v in chosen.values()):
                return chosen
        raise AssertionError("%d candidates did not give %d paths per relay: %r"
                             % (MAX_CANDIDATES, PATHS_PER_RELAY, chosen))

    def expose(self, path):
        env = dict(os.environ, RAPI_KEY_FILE=self.key_file)
        env.pop("RAPI_KEY", None)
        url = "rws://%s:%d%s" % (self.front.addr + (path,))
        p = Proc([self.rapi, "expose", url, "--to", "127.0.0.1:%d" % self.idents[path].port],
                 self.tmp, "expose", env=env)
        self.exposes[path] = p
        self.procs.append(p)
        p.wait_log(r"registered %s at" % re.escape(path), timeout=10)
        return p

    def finish(self):
        errs = []
        if self.prober:
            self.prober.stop()
        for t in self.tunnels:
            t.close()
        for p in self.procs:
            rc = p.stop()
            if rc not in (0, None):
                errs.append("rapi expose exited %r: %s" % (rc, p.stderr()[-2000:]))
            errs += p.problems((self.server_key, self.client_key))
        errs += self.front.stop()
        for k in (self.server_key, self.client_key):
            if k in self.front.stderr():
                errs.append("a key appears in %s's log" % self.front.name)
        for r in self.relays:
            errs += r.finish()
        for s in self.idents.values():
            s.stop()
        return errs


@pytest.fixture
def make_fleet(rapi_server, tmp_path):
    made = []

    def make(kind):
        if not _front_kind_available(kind):
            pytest.fail("%s is not installed (make deps)" % kind)
        f = Fleet(kind, rapi_server, tmp_path)
        made.append(f)
        f.start()
        return f

    yield make
    errs = []
    for f in made:
        errs += f.finish()
    if errs:
        pytest.fail("\n".join(errs), pytrace=False)


def _failures(prober, paths, since, until=float("inf")):
    return [a for p in paths for a in prober.attempts(since, until, p) if not a[3]]


def _table_used(front):
    """Entries in the path -> relay stick table of the running worker."""
    m = re.search(r"used:(\d+)", front.command("show table relays"))
    return int(m.group(1)) if m else -1


def _fmt(attempts, n=5):
    return "; ".join("%s %s" % (a[2], a[4]) for a in attempts[:n])


def _expose_backoffs(proc):
    return [int(m) for m in re.findall(r"retrying in (\d+) ms", proc.stderr())]


def _check_cli_clients(f, path):
    """`rapi connect` through the front end: --listen mode, and stdio mode,
    whose end of input is a half-close (nginx 1.22 ends an upgraded
    connection at the first EOF: recorded, not required)."""
    env = dict(os.environ, RAPI_KEY_FILE=f.key_file)
    env.pop("RAPI_KEY", None)
    url = "rwr://%s:%d%s" % (f.front.addr + (path,))
    p = Proc([f.rapi, "connect", url, "--listen", "127.0.0.1:0"], f.tmp, "connect", env=env)
    try:
        port = int(p.wait_log(r"listening on 127\.0\.0\.1:(\d+)").group(1))
        c = Conn.connect(("127.0.0.1", port), 5 * SLOW)
        assert c.read_until(b"\n", 5 * SLOW) == (path + "\n").encode()
        c.send(b"ping\n")
        assert c.recv_exact(5, 5 * SLOW) == b"ping\n"
        c.close()
    finally:
        assert p.stop() == 0, p.stderr()[-2000:]
    out = fleet.cli_roundtrip(f.rapi, f.front.addr, path, env)
    whole = out == (path + "\nping\n").encode()
    print("\nFLEET %s rapi connect stdio, reply after a half-close: %s"
          % (f.kind, "delivered" if whole else "lost (%r)" % out))
    assert whole or f.kind == "nginx", "rapi connect through %s: %r" % (f.kind, out)


def _steady_fleet(f):
    """Paths, exposes, a `rapi connect` check, one long-lived tunnel per
    relay, clients looping on every path without a failure for 2 s.
    Returns (chosen {relay name: paths}, paths, tunnels {relay name: Tunnel})."""
    chosen = f.choose_paths()
    paths = [p for v in chosen.values() for p in v]
    for p in paths:
        f.idents[p] = IdentityServer(p)
        f.expose(p)
        assert f.owner(p).name in [n for n, v in chosen.items() if p in v], p
    _check_cli_clients(f, paths[0])
    tunnels = {r.name: Tunnel(f.front.addr, chosen[r.name][0], f.client_key) for r in f.relays}
    f.tunnels = list(tunnels.values())
    for t in f.tunnels:
        t.exchange()
    f.prober = Prober(f.front.addr, paths, f.client_key).start()
    t_steady = time.monotonic()
    time.sleep(2.0)
    bad = _failures(f.prober, paths, t_steady)
    assert not bad, "failures before any kill: %s" % _fmt(bad)
    return chosen, paths, tunnels


def _watch_front(f, victim, t0, duration):
    """For duration seconds, watch whether HAProxy has marked the victim
    down: seconds from t0 until it did (None: not within the watch, or nginx,
    which has no such state)."""
    end = time.monotonic() + duration
    seen = None
    while time.monotonic() < end:
        if seen is None and f.kind == "haproxy":
            if not f.front.server_states().get(victim.name, "UP").startswith("UP"):
                seen = time.monotonic() - t0
        time.sleep(0.02)
    return seen


def _recover(f, paths, moved, victim, t0, what):
    """Wait until every path worked once since t0, then 2 s more; check
    what the topology promises. Returns (recovery s, per-path s, summary)."""
    prober, regs = f.prober, {}

    def recovered():
        for p in moved:
            if p not in regs and len(re.findall(r"registered %s at" % re.escape(p),
                                                f.exposes[p].stderr())) >= 2:
                regs[p] = time.monotonic() - t0
        return prober.all_ok_once_since(t0)
    wait_until(recovered, RECOVERY_WAIT * SLOW, interval=0.01,
               what="every path working again after %s" % what)
    per_path = {p: prober.first_ok_after(p, t0) - t0 for p in paths}
    recovery = max(per_path.values())
    down = _watch_front(f, victim, t0, 2.0)
    summary = ("every path back in %.3f s; moved paths %s (first ok %s), listeners "
               "re-registered after %s s, expose backoffs (ms) %s; attempts %d, failed %d"
               % (recovery, moved, ["%.3f" % per_path[p] for p in moved],
                  ["%.3f" % regs.get(p, -1) for p in moved],
                  {p: _expose_backoffs(f.exposes[p]) for p in moved},
                  len(prober.attempts(t0)), len(_failures(prober, paths, t0))))
    if f.kind == "haproxy":
        summary += "; HAProxy marked it down after %s" % (
            "%.3f s" % down if down is not None else "more than %.1f s" % (time.monotonic() - t0))
    print("\nFLEET %s %s: %s" % (f.kind, what, summary))
    stayed = [p for p in paths if p not in moved]
    assert not prober.wrong, "clients reached the wrong server: %r" % prober.wrong[:5]
    bad = _failures(prober, stayed, t0)
    assert not bad, "paths of surviving relays failed: %s" % _fmt(bad)
    bad = _failures(prober, paths, t0 + recovery + 0.2)
    assert not bad, "failures after recovery at %.3f s: %s" % (recovery, _fmt(bad))
    return recovery


@pytest.mark.parametrize("kind", ["haproxy", "nginx"])
def test_front_end_failover_and_rebalance(make_fleet, kind):
    f = make_fleet(kind)
    chosen, paths, tunnels = _steady_fleet(f)
    prober = f.prober
    victim = f.relays[int(time.time()) % len(f.relays)]
    moved = list(chosen[victim.name])
    survivors = [r for r in f.relays if r is not victim]

    # 1. kill -9 the victim.
    t_kill = time.monotonic()
    victim.kill9()
    recovery = _recover(f, paths, moved, victim, t_kill, "kill -9 %s" % victim.name)
    for t in (tunnels[r.name] for r in survivors):
        t.exchange()
    for p in moved:
        assert f.owner(p) in survivors, "%s not re-registered on a survivor" % p
    assert recovery <= RECOVERY_BOUND[kind] * SLOW, \
        "%s: paths back only after %.3f s (bound %.1f s)" % (kind, recovery, RECOVERY_BOUND[kind])

    # 2. restart the victim: nothing moves, everything keeps working.
    t_restart = time.monotonic()
    victim.start()
    if kind == "haproxy":
        wait_until(lambda: f.front.servers_up() == 3, 10 * SLOW, what="HAProxy: victim up again")
    time.sleep(2.0)
    for t in (tunnels[r.name] for r in survivors):
        t.exchange()
    bad = _failures(prober, paths, t_restart)
    assert not bad, "failures after the restart: %s" % _fmt(bad)
    assert not prober.wrong, "clients reached the wrong server: %r" % prober.wrong[:5]
    for p in moved:
        assert f.owner(p) in survivors, "%s moved without reconnecting" % p
    assert not victim.paths(), "restarted relay holds %s" % victim.paths()

    if kind == "haproxy":  # a reload keeps the stick table (peers), so moved paths work
        # The new worker learns the stick table from the old one through the
        # local peer, asynchronously: until it has, a client of a moved path
        # follows the hash and may get 502. That window is measured and
        # printed; from the moment the table is whole nothing may fail.
        want = _table_used(f.front)
        t_reload = time.monotonic()
        f.front.reload()
        wait_until(lambda: _table_used(f.front) >= want, 10 * SLOW,
                   what="HAProxy: the new worker learned the stick table")
        t_synced = time.monotonic()
        time.sleep(2.0)
        early = _failures(prober, paths, t_reload, t_synced)
        print("FLEET haproxy reload: stick table synced after %.3f s, %d failed attempts before"
              % (t_synced - t_reload, len(early)))
        bad = _failures(prober, paths, t_synced)
        assert not bad, "failures after an HAProxy reload: %s" % _fmt(bad)
        print("FLEET haproxy reload: %d attempts after it, 0 failed"
              % len(prober.attempts(t_reload)))

    # 3. a moved listener reconnects: it registers on its hash owner again.
    prober.stop()
    if kind == "nginx":  # the registrations upstream skips the victim until then
        time.sleep(max(0.0, t_kill + NGINX_FAIL_TIMEOUT + 1.5 - time.monotonic()))
    back = moved[0]
    assert f.exposes[back].stop() == 0
    f.expose(back)
    assert f.owner(back) is victim, "%s re-registered on %s, not on its owner %s" % (
        back, f.owner(back) and f.owner(back).name, victim.name)
    f.prober = prober = Prober(f.front.addr, paths, f.client_key).start()
    t_re = time.monotonic()
    time.sleep(2.0)
    links = len(re.findall(r"link path=%s " % re.escape(back), victim.relay.stderr()))
    bad = _failures(prober, paths, t_re)
    assert not bad, "failures after %s moved back: %s" % (back, _fmt(bad))
    assert links > 0, "no client of %s linked on %s" % (back, victim.name)
    for t in (tunnels[r.name] for r in survivors):
        t.exchange()
    assert not prober.wrong, "clients reached the wrong server: %r" % prober.wrong[:5]
    print("FLEET %s restart: %d attempts after the restart, 0 failed; %s back on %s "
          "(%d links there)" % (kind, len(prober.attempts(t_restart)), back, victim.name, links))


@pytest.mark.parametrize("kind", ["haproxy", "nginx"])
def test_front_end_drain(make_fleet, kind):
    """SIGTERM one relay: its listeners move (close 1001), its tunnels carry
    on until drain_timeout, it exits 0; the other paths see nothing."""
    f = make_fleet(kind)
    chosen, paths, tunnels = _steady_fleet(f)
    victim = f.relays[int(time.time()) % len(f.relays)]
    moved = list(chosen[victim.name])
    t_term = time.monotonic()
    victim.relay.signal(signal.SIGTERM)
    tunnels[victim.name].exchange()  # draining: linked pairs still move bytes
    recovery = _recover(f, paths, moved, victim, t_term, "SIGTERM %s" % victim.name)
    assert victim.relay.wait_exit(10 * SLOW) == 0
    for r in f.relays:
        if r is not victim:
            tunnels[r.name].exchange()
    assert recovery <= RECOVERY_BOUND[kind] * SLOW, \
        "%s: paths back only after %.3f s (bound %.1f s)" % (kind, recovery, RECOVERY_BOUND[kind])


FROZEN_BOUND = 6.0  # haproxy.cfg: 2 failed checks (1 s, then 0.2 s apart; 1 s timeout), then cut


def test_front_end_frozen_relay(make_fleet):
    """HAProxy: a relay that stops answering without refusing (SIGSTOP, as a
    host that is down or cut off): the checks mark it down, HAProxy cuts its
    connections (on-marked-down shutdown-sessions), the listeners re-register
    elsewhere; without that they would wait 3 silent keepalives (90 s)."""
    f = make_fleet("haproxy")
    chosen, paths, tunnels = _steady_fleet(f)
    victim = f.relays[int(time.time()) % len(f.relays)]
    moved = list(chosen[victim.name])
    t_stop = time.monotonic()
    victim.relay.signal(signal.SIGSTOP)
    try:
        recovery = _recover(f, paths, moved, victim, t_stop, "SIGSTOP %s" % victim.name)
        for r in f.relays:
            if r is not victim:
                tunnels[r.name].exchange()
    finally:
        victim.relay.signal(signal.SIGCONT)
    assert recovery <= FROZEN_BOUND * SLOW, \
        "frozen relay: paths back only after %.3f s (bound %.1f s)" % (recovery, FROZEN_BOUND)
