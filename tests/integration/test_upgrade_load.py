"""Seamless upgrade under load (issue 11; rapi-server(8) SIGNALS, SIGUSR2;
notes: UPGRADE.md, the engine's contract).

A load runs the whole time through the relay:
  - `rapi connect --listen` ports in front of two `rapi expose` processes (one
    with --park 2) in front of a local echo server: short set-ups (connect,
    bytes, half-close, echo back, EOF);
  - raw WebRoute clients on both exposed paths, so the relay's HTTP answer is
    seen (anything but 101 is a failure: 502/503/504/404 ...);
  - `rapi-bench setup` with its own listeners and dial-backs;
  - long transfers (several MiB through `rapi connect`, echoed, half-closed at
    the end, checked byte-exact), three of them open across every upgrade,
    paced (so mostly idle at a freeze: they move), and one flat out started
    just before each upgrade (bytes in flight: it may stay in the old process,
    which must drain it);
while the relay is upgraded UPGRADES times in a row with SIGUSR2. Before each
upgrade the binary is REPLACED on disk (os.replace of a fresh copy, so the new
process runs a new file) and the configuration file flips `io` and `workers`.

Asserted: every set-up succeeds (zero failed connects, zero non-101 answers,
zero rapi-bench errors), every transfer is byte-exact, no listener ever
re-registers (no tunnel or listener dropped), each old process exits (status
0) within drain_timeout of its hand-over, the listening sockets are the SAME
sockets (same inodes, so their accept queues were kept) in every process, the
new process runs the new file with the new io/workers, and the descriptors are
accounted for: an old process holds no listening socket after the hand-over,
and once the load is over the last relay holds exactly its listening sockets,
the two listeners and their parked dial-backs, no AF_UNIX socket (the
hand-over channel is closed) and the same non-socket descriptors as the earlier
process with the same io/workers; `rapi expose` is back at its baseline. Every
plain listener moves (3 per hand-over).

test_failed_upgrade_under_load_keeps_serving: the same load, first a USR2
whose binary exits at once (a broken package): `upgrade failed`, the child
reaped, nothing changed and nothing failed; then a good upgrade.

The figures are printed (pytest -s shows them; bench/upgrade-run runs this
file with a longer load). Environment (all optional): RAPI_UPGRADE_SECONDS
(load length, default 6), RAPI_UPGRADE_COUNT (upgrades, default 3),
RAPI_UPGRADE_BENCH_C (rapi-bench setup concurrency, default 2),
RAPI_UPGRADE_GAP_MS (pause between two set-ups of one load thread, default
4), RAPI_UPGRADE_JSON (append the figures there as JSON).

The new relay is a child of the old one: its PID comes from the old one's
`upgrade: started pid N` line. This process becomes a child subreaper for the
test so that relays whose parent exited are reparented to it and their exit
status can be read; every relay is stopped by its PID.
"""

import ctypes
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from relay import (SAN_MARKERS, SLOW, Conn, Relay, RelayStartError, build_request, fd_targets,
                   random_token, webroute_headers, wr_101_bytes)
from sdk_helpers import Origins, Sdk, build_dir

UPGRADES = int(os.environ.get("RAPI_UPGRADE_COUNT", "3"))
LOAD_SECONDS = float(os.environ.get("RAPI_UPGRADE_SECONDS", "6"))
BENCH_C = int(os.environ.get("RAPI_UPGRADE_BENCH_C", "2"))
# the relay's drain_timeout (s): the long transfers an old process keeps
# (pairs with bytes in flight at the freeze) must end within it
DRAIN_TIMEOUT = max(8, int(LOAD_SECONDS) + 4)
EXIT_SLACK = 2.0 * SLOW      # an old process exits within drain_timeout + this
HANDOVER_LIMIT = 10.0 * SLOW  # USR2 to `handed over` (upgrade_timeout is 10 s)
PARK = 2                     # rapi expose --park on /pk
LONG_EARLY = 3               # long transfers open across every upgrade
LONG_LATE = 2                # more started after the first upgrade
LONG_SIZE = 8 << 20
LONG_LATE_SIZE = 4 << 20
BURST_SIZE = 16 << 20        # flat out, started just before each USR2
BURST_LEAD = 0.05            # s between a burst's start and the USR2
CHUNK = 64 << 10
SHORT_SIZE = 2048
# Pause between two set-ups of one load thread: each set-up through `rapi
# connect` costs four loopback connections from the shared ephemeral port
# range, each left in TIME_WAIT for a minute; flat out, a run would take tens
# of thousands of them from every other test on the machine.
SETUP_GAP = float(os.environ.get("RAPI_UPGRADE_GAP_MS", "4")) / 1000

PR_SET_CHILD_SUBREAPER = 36
STARTED_RE = re.compile(r"upgrade: started pid (\d+)")
HANDED_RE = re.compile(r"handed over to pid (\d+)")
FAILED_RE = re.compile(r"upgrade failed: .*")
TOOK_RE = re.compile(r"upgrade: took over from pid (\d+): (\d+) listen sockets, (\d+) listeners, "
                     r"(\d+) waiting clients, (\d+) parked, (\d+) heads, (\d+) links")
STAMP_RE = r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z .*"
TCP_LISTEN = "0A"


# ---------------------------------------------------------------- processes

def set_subreaper(on):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1 if on else 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


class RelayPid:
    """One rapi-server process of the chain. The first is our Popen child;
    the later ones are children of their predecessor and become ours (child
    subreaper) when it exits. exit_status(): None while it runs, else the
    wait status as Popen gives it (negative: signal), or "reaped elsewhere"."""

    def __init__(self, pid, popen=None):
        self.pid = pid
        self.popen = popen
        self.status = None
        self.exited_at = None
        self.usr2_at = None
        self.handed_at = None
        self.fds_after = None

    def exit_status(self):
        if self.status is not None:
            return self.status
        if self.popen is not None:
            rc = self.popen.poll()
            if rc is not None:
                self._exited(rc)
            return self.status
        try:
            pid, st = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                self._exited(os.waitstatus_to_exitcode(st))
            return self.status
        except ChildProcessError:
            pass   # not (yet) our child: its parent reaps it
        try:
            with open("/proc/%d/stat" % self.pid) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            state = None
        if state in (None, "Z", "X"):
            self._exited("reaped elsewhere")
        return self.status

    def _exited(self, status):
        self.status = status
        self.exited_at = time.monotonic()

    def alive(self):
        return self.exit_status() is None

    def stop(self, timeout):
        """SIGTERM by PID, wait (bounded), SIGKILL if it hangs: the status."""
        if self.alive():
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + timeout
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.02)
            if self.alive():
                os.kill(self.pid, signal.SIGKILL)
                deadline = time.monotonic() + 5
                while self.alive() and time.monotonic() < deadline:
                    time.sleep(0.02)
        return self.status


def listening_inodes():
    """Inodes of TCP sockets in LISTEN state (this network namespace)."""
    out = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                for line in f.readlines()[1:]:
                    p = line.split()
                    if p[3] == TCP_LISTEN:
                        out.add(p[9])
        except FileNotFoundError:
            pass
    return out


def unix_inodes():
    with open("/proc/net/unix") as f:
        return {line.split()[6] for line in f.readlines()[1:] if len(line.split()) > 6}


def fd_kinds(pid):
    """Counts of pid's descriptors by kind, and the inodes of its sockets."""
    t = fd_targets(pid)
    socks = {x[8:-1] for x in t if x.startswith("socket:[")}
    listen = socks & listening_inodes()
    unix = socks & unix_inodes()
    return {"total": len(t), "socket": len(socks), "listen": len(listen), "unix": len(unix),
            "tcp": len(socks) - len(listen) - len(unix),
            "pipe": sum(1 for x in t if x.startswith("pipe:")),
            "anon": sum(1 for x in t if x.startswith("anon_inode:")),
            "io_uring": sum(1 for x in t if "io_uring" in x),
            "threads": len(os.listdir("/proc/%d/task" % pid)),
            "listen_inodes": sorted(listen)}


def fds_of(pid):
    try:
        return fd_kinds(pid)
    except (FileNotFoundError, ProcessLookupError):
        return None


def exe_inode(pid):
    return os.stat("/proc/%d/exe" % pid).st_ino


def stamp(line_match):
    """Seconds (float, since midnight) of a log line's timestamp."""
    m = re.match(r"\d{4}-\d\d-\d\dT(\d\d):(\d\d):(\d\d\.\d{3})", line_match)
    return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LogTail:
    """The relay chain's shared stderr, read incrementally: only the lines
    this test waits on or reports are kept (a long load logs two lines per
    tunnel; re-reading all of it while polling would slow the test down)."""

    KEEP = re.compile(r"upgrade|handed over to pid|\bstopp|listening on|admin endpoint|running:"
                      r"| error | warn |runtime error|Sanitizer|^    #\d")

    def __init__(self, path):
        self.path = path
        self.offset = 0
        self.partial = b""
        self.lines = []

    def text(self):
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        *full, self.partial = (self.partial + data).split(b"\n")
        for raw in full:
            line = raw.decode("utf-8", "replace")
            if self.KEEP.search(line):
                self.lines.append(line)
        return "\n".join(self.lines) + "\n"


# ---------------------------------------------------------------- the load

class Tally:
    """Counts shared by the load threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.attempted = {}
        self.failed = {}
        self.statuses = {}
        self.errors = []

    def add(self, kind, ok, why=None, status=None):
        with self.lock:
            self.attempted[kind] = self.attempted.get(kind, 0) + 1
            if status is not None:
                self.statuses[status] = self.statuses.get(status, 0) + 1
            if not ok:
                self.failed[kind] = self.failed.get(kind, 0) + 1
                if len(self.errors) < 20:
                    self.errors.append("%s: %s" % (kind, why))


def short_via_port(port, payload):
    """One set-up through a `rapi connect` port: echo, half-close, EOF."""
    c = Conn.connect(("127.0.0.1", port), timeout=10 * SLOW)
    try:
        c.send(payload)
        c.shutdown_wr()
        got = c.read_to_eof(timeout=10 * SLOW)
        if got != payload:
            return "echo of %d bytes came back as %d bytes" % (len(payload), len(got))
        return None
    finally:
        c.close()


def short_raw(relay_addr, path, client_key, payload):
    """A raw WebRoute client on path: (HTTP status, failure or None)."""
    wrid = random_token(32)
    c = Conn.connect(relay_addr, timeout=10 * SLOW)
    try:
        c.send(build_request(path, webroute_headers(client_key, wrid)))
        head = c.read_head(timeout=15 * SLOW)
        if head.status != 101 or head.head != wr_101_bytes(wrid):
            return head.status, "answer %r" % head.head[:120]
        c.send(payload)
        c.shutdown_wr()
        got = c.read_to_eof(timeout=10 * SLOW)
        if got != payload:
            return 101, "echo of %d bytes came back as %d bytes" % (len(payload), len(got))
        return 101, None
    finally:
        c.close()


def setup_loop(stop, tally, kind, fn):
    while not stop.wait(SETUP_GAP):
        payload = os.urandom(SHORT_SIZE)
        try:
            r = fn(payload)
        except (AssertionError, OSError) as e:
            r = (None, "%s: %s" % (type(e).__name__, e))
        status, why = r if isinstance(r, tuple) else (None, r)
        tally.add(kind, why is None, why, status)


class LongTransfer(threading.Thread):
    """size bytes through a `rapi connect` port, paced over `pace` seconds;
    the last chunk waits for `release` (set after the last upgrade), then
    half-close; the echo must come back byte-exact, then EOF."""

    def __init__(self, port, size, pace, release):
        super().__init__(daemon=True)
        self.port, self.size, self.pace, self.release = port, size, pace, release
        self.data = os.urandom(size)
        self.error = None
        self.started_at = self.ended_at = None
        self.received = 0

    def run(self):
        self.started_at = time.monotonic()
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=30 * SLOW)
        except OSError as e:
            self.error = "connect: %s" % e
            return
        reader = threading.Thread(target=self._read, args=(s,), daemon=True)
        reader.start()
        try:
            self._write(s)
        except OSError as e:
            self.error = self.error or "send: %s" % e
        reader.join(60 * SLOW)
        if reader.is_alive():
            self.error = self.error or "echo not complete within 60 s"
        s.close()
        self.ended_at = time.monotonic()

    def _write(self, s):
        chunks = [self.data[i:i + CHUNK] for i in range(0, self.size, CHUNK)]
        gap = self.pace / len(chunks)
        for i, ch in enumerate(chunks):
            if i == len(chunks) - 1:
                self.release.wait(120)
            s.sendall(ch)
            if gap:
                time.sleep(gap)
        s.shutdown(socket.SHUT_WR)

    def _read(self, s):
        h = hashlib.sha256()
        try:
            while True:
                d = s.recv(1 << 20)
                if not d:
                    break
                h.update(d)
                self.received += len(d)
        except OSError as e:
            self.error = "recv after %d bytes: %s" % (self.received, e)
            return
        if self.received != self.size or h.digest() != hashlib.sha256(self.data).digest():
            self.error = "echo differs: %d of %d bytes, sha256 %s" % (
                self.received, self.size,
                "equal" if h.digest() == hashlib.sha256(self.data).digest() else "differs")


# ---------------------------------------------------------------- the rig

class Rig:
    """The relay chain, its config file and binary copy, the expose/connect
    processes and the origin."""

    def __init__(self, tmp_path, backend):
        self.tmp = tmp_path
        self.src_bin = os.path.join(build_dir(), "rapi-server")
        self.bin_dir = tmp_path / "bin"
        self.bin_dir.mkdir()
        self.bin = str(self.bin_dir / "rapi-server")
        shutil.copy2(self.src_bin, self.bin)
        self.conf = str(tmp_path / "rapi-server.conf")
        self.port, self.admin_port = free_port(), free_port()
        self.modes = self.mode_cycle(backend)
        self.relay = Relay(self.bin, tmp_path / "relay", config_file=self.conf, cli_flags=False)
        self.chain = []          # RelayPid, oldest first
        self.failed_starts = 0   # `upgrade: started` lines of failed upgrades
        self.upgrades = []       # figures per upgrade
        self.sdk = None
        self.origins = Origins(tmp_path)

    @staticmethod
    def mode_cycle(backend):
        other = "uring" if backend == "epoll" else "epoll"
        return [(backend, 1), (other, 2)]

    def write_conf(self, i):
        io, workers = self.modes[i % 2]
        with open(self.conf, "w") as f:
            f.write("listen 127.0.0.1:%d\nadmin 127.0.0.1:%d\nkeys %s\nworkers %d\nio %s\n"
                    "drain_timeout %d\n" % (self.port, self.admin_port, self.relay.key_file,
                                            workers, io, DRAIN_TIMEOUT))
        return io, workers

    def start(self):
        self.write_conf(0)
        try:
            self.relay.start()
        except RelayStartError as e:
            if "uring" in e.stderr.lower():
                pytest.skip("io_uring backend unavailable here")
            raise
        self.chain.append(RelayPid(self.relay.pid, self.relay.proc))
        self.sdk = Sdk(self.relay, self.tmp)
        self.tail = LogTail(self.relay.stderr_path)

    def log(self):
        return self.tail.text()

    def current(self):
        return self.chain[-1]

    # -- one upgrade
    def upgrade(self, i):
        """Upgrade number i (1-based): new config, new file, USR2, wait for
        the hand-over. Returns the figures of this upgrade."""
        io, workers = self.write_conf(i)
        fresh = self.bin + ".new"
        shutil.copy2(self.src_bin, fresh)
        os.replace(fresh, self.bin)
        ino = os.stat(self.bin).st_ino
        old = self.current()
        old.usr2_at = time.monotonic()
        wall0 = time.time()
        os.kill(old.pid, signal.SIGUSR2)
        new_pid = self._wait_line(STARTED_RE, i + self.failed_starts, old,
                                  "upgrade: started pid N")
        new = RelayPid(int(new_pid.group(1)))
        self.chain.append(new)
        handed = self._wait_handover(i, old)
        old.handed_at = time.monotonic()
        assert int(handed.group(1)) == new.pid, handed.group(0)
        took = self._wait_line(TOOK_RE, i, new, "upgrade: took over from pid M: ...")
        fig = {"n": i, "old_pid": old.pid, "new_pid": new.pid, "io": io, "workers": workers,
               "usr2_to_handed_over_ms": self._usr2_ms(wall0, i),
               "log_started_to_handed_over_ms": self._log_ms(STARTED_RE, HANDED_RE, i),
               "took_over": dict(zip(("listen", "listeners", "waiting", "parked", "heads",
                                      "links"), map(int, took.groups()[1:])))}
        assert int(took.group(1)) == old.pid, took.group(0)
        assert exe_inode(new.pid) == ino, "the new process does not run the replaced file"
        fig["new_fds"] = fds_of(new.pid)
        self.upgrades.append(fig)
        return fig

    def failed_upgrade(self):
        """USR2 with a binary that exits at once (a broken package): the old
        process must log `upgrade failed: ...` and serve on as before."""
        bad = self.bin + ".new"
        with open(bad, "w") as f:
            f.write("#!/bin/sh\nexit 3\n")
        os.chmod(bad, 0o755)
        os.replace(bad, self.bin)
        old = self.current()
        os.kill(old.pid, signal.SIGUSR2)
        m = self._wait_line(FAILED_RE, 1, old, "upgrade failed: ...")
        started = STARTED_RE.findall(self.log())
        self.failed_starts = len(started)
        time.sleep(0.2)
        assert old.alive() and not HANDED_RE.search(self.log()), (
            "after a failed upgrade the old relay must serve on: %s" % m.group(0))
        for pid in map(int, started):   # reaped by the old one: not even a zombie
            assert not os.path.exists("/proc/%d" % pid), (
                "the failed new process %d was not reaped" % pid)
        print("failed upgrade, as meant: %s" % m.group(0))
        return m.group(0)

    def _wait_line(self, rx, count, proc, what):
        deadline = time.monotonic() + HANDOVER_LIMIT
        while True:
            exited = not proc.alive()   # before reading: it may log, then exit
            ms = list(rx.finditer(self.log()))
            if len(ms) >= count:
                return ms[count - 1]
            if exited:
                self._check_alive(proc, what)
            if time.monotonic() > deadline:
                raise AssertionError("no `%s` line (upgrade %d) within %.0f s; log tail:\n%s"
                                     % (what, count, HANDOVER_LIMIT, self.log()[-3000:]))
            time.sleep(0.01)

    def _wait_handover(self, i, old):
        deadline = time.monotonic() + HANDOVER_LIMIT
        while True:
            exited = not old.alive()   # before reading: it may log, then exit
            text = self.log()
            ms = list(HANDED_RE.finditer(text))
            if len(ms) >= i:
                return ms[i - 1]
            failed = FAILED_RE.findall(text)
            assert len(failed) <= (1 if self.failed_starts else 0), (
                "upgrade %d failed: %s" % (i, failed[-1]))
            if exited:
                self._check_alive(old, "handed over to pid N")
            if time.monotonic() > deadline:
                raise AssertionError("no hand-over (upgrade %d) within %.0f s; log tail:\n%s"
                                     % (i, HANDOVER_LIMIT, text[-3000:]))
            time.sleep(0.01)

    def _check_alive(self, proc, what):
        st = proc.exit_status()
        if st is None:
            return
        if st == -signal.SIGUSR2:
            raise AssertionError(
                "rapi-server (pid %d) was KILLED BY SIGUSR2: this binary has no seamless "
                "upgrade (SIGUSR2 keeps its default action, terminate). Every tunnel and "
                "listener it held is gone." % proc.pid)
        raise AssertionError("rapi-server (pid %d) exited (%r) before logging `%s`; log tail:\n%s"
                             % (proc.pid, st, what, self.log()[-3000:]))

    def _usr2_ms(self, wall0, i):
        """From the kill(2) to the i-th `handed over` line, both on the
        wall clock (the test's polling delay left out)."""
        text = self.log()
        b = list(HANDED_RE.finditer(text))[i - 1]
        lb = text.rfind("\n", 0, b.start()) + 1
        day = time.gmtime(wall0)
        since_midnight = day.tm_hour * 3600 + day.tm_min * 60 + day.tm_sec + wall0 % 1
        return round((stamp(text[lb:lb + 23]) - since_midnight) * 1000, 1)

    def _log_ms(self, rx_a, rx_b, i):
        """ms between upgrade i's `started` line (rx_a) and its rx_b line."""
        text = self.log()
        a, b = list(rx_a.finditer(text)), list(rx_b.finditer(text))
        ia = i + self.failed_starts
        if len(a) < ia or len(b) < i:
            return None
        la = text.rfind("\n", 0, a[ia - 1].start()) + 1
        lb = text.rfind("\n", 0, b[i - 1].start()) + 1
        try:
            return round((stamp(text[lb:lb + 23]) - stamp(text[la:la + 23])) * 1000, 1)
        except AttributeError:
            return None

    # -- teardown
    def stop_all(self):
        """Stop every relay of the chain still running (by PID, newest first):
        the statuses."""
        return [r.stop(DRAIN_TIMEOUT + 10 * SLOW) for r in reversed(self.chain)]


# ---------------------------------------------------------------- the test

def run_bench(rig, seconds, out_path):
    argv = [os.path.join(build_dir(), "rapi-bench"), "setup",
            "--relay", "127.0.0.1:%d" % rig.port, "--server-key-file", rig.relay.key_file,
            "--client-key-file", rig.relay.key_file, "-c", str(BENCH_C), "-t", "1",
            "-d", "%.1f" % seconds, "--warmup", "0", "--timeout", "10", "--json", "-q",
            "--path", "/bench"]
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAPI_SERVER_KEY", "RAPI_CLIENT_KEY", "RAPI_KEY_FILE")}
    return subprocess.Popen(argv, stdout=open(out_path, "wb"), stderr=subprocess.PIPE, env=env)


def bench_figures(proc, out_path):
    try:
        _, err = proc.communicate(timeout=LOAD_SECONDS + 30 * SLOW)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        return None, "rapi-bench did not finish"
    err = err.decode(errors="replace")
    if proc.returncode != 0:
        return None, "rapi-bench exited %d: %s" % (proc.returncode, err[-1500:])
    doc = json.loads(open(out_path).read())
    rd = doc["targets"][0]["rounds"][0]
    dur = doc["params"]["duration_s"]
    return {"tunnels": round(rd["tunnels_per_s"] * dur), "tunnels_per_s": rd["tunnels_per_s"],
            "errors": rd["errors"], "failed": rd["failed"],
            "last_error": doc["targets"][0]["error"]}, None


def monitor_olds(rig, stop):
    """Poll every old relay's exit (their exit time is the point)."""
    while not stop.is_set():
        for r in rig.chain[:-1]:
            r.exit_status()
        time.sleep(0.01)


class Run:
    """One run of the test: the rig, the load and what it counted."""

    def __init__(self, tmp_path, backend, upgrades=UPGRADES, fail_first=False):
        self.tmp = tmp_path
        self.n = upgrades
        self.fail_first = fail_first
        self.rig = Rig(tmp_path, backend)
        self.stop, self.release = threading.Event(), threading.Event()
        self.threads, self.longs, self.bench, self.load = [], [], None, []
        self.tally = Tally()
        self.problems = []
        self.fig = {"backend": backend, "upgrades": self.rig.upgrades, "n": upgrades}

    def setup(self):
        """Relay, echo, two rapi expose (one parked), two rapi connect ports;
        baselines once the parked pool is full (2 listening sockets, 2
        listeners, PARK parked)."""
        rig = self.rig
        rig.start()
        _, eport = rig.origins.start("echo")
        to = "127.0.0.1:%d" % eport
        self.exposes = {"/up": rig.sdk.expose("/up", to),
                        "/pk": rig.sdk.expose("/pk", to, extra=["--park", str(PARK)])}
        self.up_port = rig.sdk.connect_listen("/up")[1]
        self.pk_port = rig.sdk.connect_listen("/pk")[1]
        self.base = wait_fds(rig.current().pid,
                             lambda f: f["listen"] == 2 and f["tcp"] == 2 + PARK,
                             "relay baseline: 2 listening, 2 listeners, %d parked" % PARK)
        self.exp_base = {e.pid: stable(lambda e=e: fds_of(e.pid)) for e in self.exposes.values()}
        self.fig["relay_baseline_fds"] = self.base
        self.fig["expose_baseline_fds"] = list(self.exp_base.values())

    def start_load(self):
        rig, addr, key = self.rig, self.rig.relay.addr, self.rig.relay.client_key
        self.bench_out = self.tmp / "bench.json"
        self.bench = run_bench(rig, LOAD_SECONDS, self.bench_out)
        self.load = [("connect /up", lambda p: short_via_port(self.up_port, p)),
                     ("connect /pk (parked)", lambda p: short_via_port(self.pk_port, p)),
                     ("raw client /up", lambda p: short_raw(addr, "/up", key, p)),
                     ("raw client /pk", lambda p: short_raw(addr, "/pk", key, p))]
        for kind, fn in self.load:
            self.threads.append(threading.Thread(target=setup_loop,
                                                 args=(self.stop, self.tally, kind, fn),
                                                 daemon=True))
        self.threads.append(threading.Thread(target=monitor_olds, args=(rig, self.stop),
                                             daemon=True))
        for t in self.threads:
            t.start()
        for _ in range(LONG_EARLY):
            self.transfer(LONG_SIZE, LOAD_SECONDS * 0.8, self.release)

    def transfer(self, size, pace, release):
        self.longs.append(LongTransfer(self.up_port, size, pace, release))
        self.longs[-1].start()

    def upgrades(self):
        """self.n hand-overs spread over the load (after a failed one, with
        fail_first), a flat-out transfer started just before each; after
        each, the new process must hold the original listening sockets."""
        t_load = time.monotonic()
        slots = self.n + (1 if self.fail_first else 0)
        step = LOAD_SECONDS / (slots + 1)
        now = threading.Event()
        now.set()
        if self.fail_first:
            time.sleep(max(0.0, t_load + step - time.monotonic()))
            self.rig.failed_upgrade()
            t_load += step
        for i in range(1, self.n + 1):
            time.sleep(max(0.0, t_load + i * step - BURST_LEAD - time.monotonic()))
            self.transfer(BURST_SIZE, 0.0, now)
            time.sleep(BURST_LEAD)
            fig = self.rig.upgrade(i)
            print("upgrade %d: pid %d -> %d (io=%s workers=%d) in %.1f ms (log: %s ms); took "
                  "over %s" % (i, fig["old_pid"], fig["new_pid"], fig["io"], fig["workers"],
                               fig["usr2_to_handed_over_ms"],
                               fig["log_started_to_handed_over_ms"], fig["took_over"]))
            if i == 1:
                for _ in range(LONG_LATE):
                    self.transfer(LONG_LATE_SIZE, step, self.release)
            self.check_listen_sockets(i, fig)
        self.release.set()
        time.sleep(max(0.0, t_load - (step if self.fail_first else 0) + LOAD_SECONDS
                       - time.monotonic()))

    def check_listen_sockets(self, i, fig):
        old = self.rig.chain[-2]
        # The old one closes its listening sockets after END (if not gone).
        old.fds_after = wait_fds(old.pid, lambda f: f["listen"] == 0,
                                 "old relay %d without listening sockets" % old.pid,
                                 allow_gone=True)
        fig["old_fds_after"] = old.fds_after
        new_listen = fds_of(self.rig.current().pid)["listen_inodes"]
        assert new_listen == self.base["listen_inodes"], (
            "upgrade %d: the new process's listening sockets %s are not the original ones %s "
            "(a re-opened socket loses its accept queue)" % (i, new_listen,
                                                             self.base["listen_inodes"]))

    def end_load(self):
        self.stop.set()
        for t in self.threads:
            t.join(30 * SLOW)
        for t in self.longs:
            t.join(60 * SLOW)
        self.bfig, self.berr = bench_figures(self.bench, self.bench_out)
        self.bench = None
        self.fig["rapi_bench"] = self.bfig

    def collect(self):
        """Old processes' exits, descriptors once the load is over, counts."""
        rig, fig = self.rig, self.fig
        fig["old_exit_after_handover_s"] = old_exits(rig, self.problems)
        self.final = wait_fds(rig.current().pid,
                              lambda f: f["tcp"] == 2 + PARK and f["listen"] == 2,
                              "last relay back to 2 listening sockets + 2 listeners + %d parked"
                              % PARK, limit=5.0 * SLOW, problems=self.problems)
        fig["relay_final_fds"] = self.final
        fig["expose_final_fds"] = [
            wait_fds(pid, lambda f, b=b: same_fds(f, b), "rapi expose %d back to its baseline %s"
                     % (pid, brief(b)), limit=5.0 * SLOW, problems=self.problems)
            for pid, b in self.exp_base.items()]
        fig["load"] = {"attempted": self.tally.attempted, "failed": self.tally.failed,
                       "statuses": self.tally.statuses}
        self.dropped = [t.error for t in self.longs if t.error]
        fig["long_transfers"] = {"completed": len(self.longs) - len(self.dropped),
                                 "broken": len(self.dropped),
                                 "bytes": sum(t.size for t in self.longs)}
        fig["registrations"] = {path: len(re.findall(r"registered " + path, e.stderr()))
                                for path, e in self.exposes.items()}
        print_figures(fig, self.tally)
        dump_json(fig)

    def verdicts(self):
        tally, bfig, rig = self.tally, self.bfig, self.rig
        # Plain listeners always move (UPGRADE.md): both rapi expose ones and
        # rapi-bench's (one thread, one path).
        moved = [u["took_over"]["listeners"] for u in rig.upgrades]
        if any(n != 3 for n in moved):
            self.problems.append("listeners taken over per upgrade: %s, want 3 each" % moved)
        assert not self.problems, "\n".join(self.problems)
        assert not tally.failed, "failed set-ups %s of %s; first errors:\n%s" % (
            tally.failed, tally.attempted, "\n".join(tally.errors))
        assert set(tally.statuses) <= {101}, "answers other than 101: %s" % tally.statuses
        assert all(tally.attempted.get(k, 0) > 0 for k, _ in self.load), tally.attempted
        assert self.berr is None, self.berr
        assert bfig["errors"] == 0 and not bfig["failed"] and bfig["tunnels"] > 0, bfig
        assert not self.dropped, "long transfers broken: %s" % self.dropped
        for t in self.longs[:LONG_EARLY]:
            assert t.started_at < rig.chain[0].usr2_at and t.ended_at > rig.chain[-2].handed_at, (
                "a long transfer did not span every upgrade")
        regs = self.fig["registrations"]
        assert all(n == 1 for n in regs.values()), (
            "a listener registered again (its WebSocket was dropped): %s" % regs)
        check_final_fds(rig, self.n, self.base, self.final)

    def teardown(self):
        """Stop everything this run started, by PID; the problems found."""
        self.stop.set()
        self.release.set()
        if self.bench is not None and self.bench.poll() is None:
            self.bench.terminate()
            self.bench.wait(10)
        rig = self.rig
        errs = rig.sdk.finish() if rig.sdk else []
        rig.origins.stop()
        statuses = rig.stop_all() or [0]
        if statuses[0] != 0:
            errs.append("the last relay exited %r on SIGTERM" % statuses[0])
        text = rig.relay.stderr()
        if rig.relay.proc is not None:
            rig.relay.err_file.close()
        if any(k in text for k in rig.relay.secrets()):
            errs.append("a key appears in rapi-server's stderr")
        san = [m for m in SAN_MARKERS if m in text]
        if san:
            errs.append("sanitizer report (%s) in rapi-server's stderr:\n%s"
                        % (san, text[text.index(san[0]) - 200:][:6000]))
        return errs


def run_phases(run):
    """Every phase of run in order; teardown always, its problems reported
    (after a failure, printed: the failure wins)."""
    set_subreaper(True)
    try:
        run.setup()
        run.start_load()
        run.upgrades()
        run.end_load()
        run.collect()
        run.verdicts()
    finally:
        errs = run.teardown()
        set_subreaper(False)
        if errs and sys.exc_info()[0] is not None:
            print("\nalso, at teardown:\n" + "\n".join(errs))
    assert not errs, "\n".join(errs)


@pytest.mark.parametrize("backend", ["epoll", "uring"])
def test_upgrade_three_times_under_load(backend, tmp_path):
    """The starting backend; each upgrade flips io and workers (epoll/1 <->
    uring/2), so both backends hand over to both."""
    run_phases(Run(tmp_path, backend))


def test_failed_upgrade_under_load_keeps_serving(tmp_path):
    """A USR2 whose new binary exits at once (a broken package) is logged as
    `upgrade failed` and changes nothing: the load sees no failure, nothing
    is dropped; a good binary then upgrades as usual."""
    run_phases(Run(tmp_path, "epoll", upgrades=1, fail_first=True))


def stable(read, settle=0.1, tries=30):
    prev = read()
    for _ in range(tries):
        time.sleep(settle)
        cur = read()
        if cur == prev:
            return cur
        prev = cur
    return prev


def same_fds(f, base):
    return f is not None and all(f[k] == base[k] for k in ("socket", "tcp", "unix", "listen",
                                                            "anon"))


def wait_fds(pid, pred, what, limit=3.0 * SLOW, allow_gone=False, problems=None):
    """fd_kinds(pid) once pred holds (None if the process is gone and
    allow_gone). After limit seconds: fails with the last reading, or with
    problems given, adds the failure there and returns the last reading."""
    deadline = time.monotonic() + limit
    while True:
        f = fds_of(pid)
        if f is None:
            assert allow_gone, "pid %d is gone while waiting for %s" % (pid, what)
            return None
        if pred(f):
            return f
        if time.monotonic() > deadline:
            msg = "timed out after %.1f s waiting for %s; last: %s" % (limit, what, brief(f))
            if problems is None:
                raise AssertionError(msg)
            problems.append(msg)
            return f
        time.sleep(0.05)


def old_exits(rig, problems):
    """Each old relay must exit 0 within drain_timeout (+ slack) of its
    hand-over. The seconds from hand-over to exit, per old process."""
    out = []
    for r in rig.chain[:-1]:
        limit = r.handed_at + DRAIN_TIMEOUT + EXIT_SLACK
        while r.alive() and time.monotonic() < limit:
            time.sleep(0.02)
        if r.alive():
            problems.append("old relay %d still running %.1f s after its hand-over "
                            "(drain_timeout %d)" % (r.pid, time.monotonic() - r.handed_at,
                                                    DRAIN_TIMEOUT))
            out.append(None)
            continue
        if r.status not in (0, "reaped elsewhere"):
            problems.append("old relay %d exited %r" % (r.pid, r.status))
        # Both are when this test saw them: an old process with nothing to
        # drain may be gone before its `handed over` line is read.
        out.append(round(max(0.0, r.exited_at - r.handed_at), 2))
    return out


def check_final_fds(rig, n, base, final):
    """The last relay, load over: no hand-over channel left, the same
    non-socket descriptors and threads as the earlier process with the same
    io/workers, and the io/workers of the configuration."""
    assert final["unix"] == base["unix"], (
        "the last relay holds %d AF_UNIX sockets (at start: %d): hand-over channel left open"
        % (final["unix"], base["unix"]))
    by_index = [base] + [u["new_fds"] for u in rig.upgrades]
    if n >= 2:
        ref = by_index[n - 2]
        for k in ("anon", "io_uring", "threads"):
            assert final[k] == ref[k], (
                "last relay (io, workers %s) has %s=%d; pid %d with the same io/workers had %d"
                % (rig.modes[n % 2], k, final[k], rig.chain[n - 2].pid, ref[k]))
    io_last = rig.modes[n % 2][0]
    assert (final["io_uring"] > 0) == (io_last == "uring"), (
        "the last relay does not run io=%s: %s" % (io_last, brief(final)))
    if n >= 1:
        assert by_index[1]["threads"] != base["threads"], (
            "workers changed 1 -> 2 but the thread count did not (%d)" % base["threads"])


def print_figures(fig, tally):
    print("\n== seamless upgrade under load (%s start, %d upgrades, %.0f s load)"
          % (fig["backend"], fig["n"], LOAD_SECONDS))
    for k in sorted(tally.attempted):
        print("  %-22s attempted %6d  failed %d" % (k, tally.attempted[k],
                                                    tally.failed.get(k, 0)))
    b = fig.get("rapi_bench") or {}
    print("  %-22s attempted %6s  failed %s" % ("rapi-bench setup", b.get("tunnels"),
                                                b.get("errors")))
    print("  HTTP answers to raw clients: %s" % tally.statuses)
    lt = fig["long_transfers"]
    print("  long transfers: %d completed, %d broken (%.0f MiB echoed)"
          % (lt["completed"], lt["broken"], lt["bytes"] / (1 << 20)))
    print("  listener registrations per rapi expose: %s" % fig["registrations"])
    for u in fig["upgrades"]:
        print("  upgrade %d: %.1f ms USR2 -> handed over (log %s ms); moved %s; old fds after: %s"
              % (u["n"], u["usr2_to_handed_over_ms"], u["log_started_to_handed_over_ms"],
                 u["took_over"], brief(u.get("old_fds_after"))))
    print("  old processes exited %s s after their hand-over" % fig["old_exit_after_handover_s"])
    print("  relay fds at start %s, at the end %s" % (brief(fig["relay_baseline_fds"]),
                                                     brief(fig["relay_final_fds"])))
    print("  rapi expose fds at start %s, at the end %s"
          % ([brief(f) for f in fig["expose_baseline_fds"]],
             [brief(f) for f in fig["expose_final_fds"]]))


def brief(f):
    if not f:
        return f
    return {k: v for k, v in f.items() if k != "listen_inodes"}


def dump_json(fig):
    path = os.environ.get("RAPI_UPGRADE_JSON")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(fig) + "\n")
