"""A fleet of rapi relays behind a front end (HAProxy or nginx), on loopback.

Used by test_fleet_frontend.py. Each relay gets its own loopback address
(RELAY_HOSTS) with the same relay port and admin port on every one, as
separate hosts would; the front end listens on FRONT_HOST. The front ends
run the example configurations of packaging/fleet/ unchanged except for
addresses: HAProxy reads them from RAPI_* environment variables, nginx's
file gets its example addresses replaced (NGINX_EXAMPLE_* below, each
checked to occur).

Pieces:
  FleetRelay      one rapi-server on a fixed address: start, kill -9, restart,
                  which paths it holds (from its `register path=` log lines).
  HAProxyFront,   the front end process, its readiness and its stderr.
  NginxFront
  IdentityServer  a local TCP server that first sends its own name and a
                  newline, then echoes: what `rapi expose` points at.
  open_tunnel()   a WebRoute client through the front end (no CLI): the
                  tunnel's Conn after the 101 and the identity line.
  Prober          client loops, one thread per path, recording every attempt.

Every wait is bounded; processes are stopped by PID.
"""

import os
import random
import re
import select
import shutil
import signal
import socket
import socketserver
import subprocess
import threading
import time

from relay import (Conn, Relay, SLOW, build_request, listener_headers, new_ws_key, random_token,
                   wait_until, webroute_headers)
from sdk_helpers import Proc

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGING = os.path.join(REPO, "packaging", "fleet")
HAPROXY_CFG = os.path.join(PACKAGING, "haproxy.cfg")
NGINX_CONF = os.path.join(PACKAGING, "nginx.conf")
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

FRONT_HOST = "127.0.0.10"
RELAY_HOSTS = ("127.0.0.11", "127.0.0.12", "127.0.0.13")

# The example addresses in nginx.conf that the test replaces.
NGINX_EXAMPLE_RELAYS = ("10.0.0.11:37791", "10.0.0.12:37791", "10.0.0.13:37791")
NGINX_EXAMPLE_LISTEN = "listen 80;"

# The front end reaches the relays from a loopback address: trust those
# (haproxy.cfg sends a PROXY v2 header, nginx.conf an X-Forwarded-For).
RELAY_OPTIONS = {"log_level": "info", "drain_timeout": 3, "trusted_proxies": "127.0.0.0/8"}


def _bindable(host, port):
    s = socket.socket()
    try:
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def common_free_port(hosts, avoid=()):
    """A TCP port free on every address of hosts: random, below the kernel's
    ephemeral range, so that no outgoing connection takes it before a
    relay (re)starts on it."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
    for _ in range(200):
        port = random.randint(max(1024, low - 12000), low - 1)
        if port not in avoid and all(_bindable(h, port) for h in hosts):
            return port
    raise AssertionError("no common free port on %s" % (hosts,))


class FleetRelay:
    """One relay of the fleet at host:port, admin endpoint at host:admin_port."""

    def __init__(self, binary, workdir, name, host, port, admin_port, key_file, backend,
                 proxy_protocol=False):
        self.binary, self.workdir, self.name = binary, str(workdir), name
        self.host, self.port, self.admin_port = host, port, admin_port
        self.key_file, self.backend = key_file, backend
        self.proxy_protocol = proxy_protocol  # behind haproxy.cfg (send-proxy-v2)
        self.relay = None
        self.dead = []  # Relay objects killed with -9 (their stderr is still checked)

    @property
    def addr(self):
        return "%s:%d" % (self.host, self.port)

    def start(self):
        opts = dict(RELAY_OPTIONS, admin="%s:%d" % (self.host, self.admin_port))
        r = Relay(self.binary, os.path.join(self.workdir, "%s-%d" % (self.name, len(self.dead))),
                  backend=self.backend, options=opts,
                  listen=[self.addr + (" proxy_protocol" if self.proxy_protocol else "")], workers=1,
                  key_file=self.key_file)
        # The port was free when chosen; a restart reuses it at once.
        deadline = time.monotonic() + 10 * SLOW
        while True:
            try:
                r.start()
                break
            except Exception:
                r.err_file.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.relay = r
        return self

    def kill9(self):
        self.relay.proc.send_signal(signal.SIGKILL)
        self.relay.proc.wait(5)
        self.dead.append(self.relay)
        self.relay = None

    def alive(self):
        return self.relay is not None and self.relay.alive()

    def paths(self):
        """Paths whose listener is registered here now (from the log)."""
        if self.relay is None:
            return set()
        held = set()
        for m in re.finditer(r"\b(register|unregister) path=(\S+) ", self.relay.stderr()):
            (held.add if m.group(1) == "register" else held.discard)(m.group(2))
        return held

    def finish(self):
        errs = []
        for r in self.dead:
            errs += r.check_stderr()
            r.err_file.close()
        if self.relay is not None:
            errs += ["%s: %s" % (self.name, e) for e in self.relay.finish()]
        return errs


# ---------------------------------------------------------------- front ends

class _Front:
    """A front-end process (sdk_helpers.Proc: stderr to a file, stopped by PID)."""

    name = "front"

    def __init__(self, workdir, port):
        self.workdir = str(workdir)
        self.addr = (FRONT_HOST, port)
        self.proc = None

    def _spawn(self, argv, env=None):
        self.proc = Proc(argv, self.workdir, self.name, env=env)

        def up():
            assert self.proc.alive(), "%s exited: %s" % (self.name, self.stderr()[-3000:])
            try:
                socket.create_connection(self.addr, timeout=1).close()
                return True
            except OSError:
                return False
        wait_until(up, 10 * SLOW, what="%s accepting on %s:%d" % ((self.name,) + self.addr))

    def stderr(self):
        return self.proc.stderr() if self.proc else ""

    def stop(self):
        """SIGTERM by PID (SIGKILL after 10 s). Problems found (list)."""
        if self.proc is None:
            return []
        self.proc.stop()
        return self.proc.problems()


class HAProxyFront(_Front):
    """HAProxy running packaging/fleet/haproxy.cfg as shipped."""

    name = "haproxy"

    def start(self, relays):
        env = dict(os.environ)
        peer = common_free_port([FRONT_HOST], avoid=(self.addr[1],))
        env.update({"RAPI_FLEET_BIND": "%s:%d" % self.addr, "RAPI_FLEET_RUNDIR": self.workdir,
                    "RAPI_ADMIN_PORT": str(relays[0].admin_port),
                    "RAPI_FLEET_PEER": "%s:%d" % (FRONT_HOST, peer)})
        for i, r in enumerate(relays):
            env["RAPI_RELAY%d" % (i + 1)] = r.addr
        self.sock_path = os.path.join(self.workdir, "rapi-fleet.sock")
        # Master-worker mode, so that reload() works as under systemd.
        self._spawn([HAPROXY, "-W", "-db", "-f", HAPROXY_CFG], env)
        wait_until(lambda: self.servers_up() == len(relays), 10 * SLOW,
                   what="HAProxy health checks marking every relay up")
        return self

    def worker_pid(self):
        m = re.search(r"^Pid: (\d+)$", self.command("show info"), re.M)
        return int(m.group(1)) if m else None

    def reload(self):
        """Reload (SIGUSR2 to the master, as `systemctl reload` does) and
        wait for the new worker to answer on the stats socket."""
        old = self.worker_pid()
        self.proc.proc.send_signal(signal.SIGUSR2)

        def new_worker():
            try:
                pid = self.worker_pid()
            except OSError:
                return None
            return pid if pid not in (None, old) else None
        return wait_until(new_worker, 10 * SLOW, what="a new HAProxy worker after reload")

    def command(self, cmd):
        """One runtime API command on the stats socket: its answer."""
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(3)
        try:
            s.connect(self.sock_path)
            s.sendall(cmd.encode() + b"\n")
            out = b""
            while True:
                d = s.recv(65536)
                if not d:
                    return out.decode()
                out += d
        finally:
            s.close()

    def server_states(self):
        """{server name: status} from `show stat` (UP, DOWN, ...)."""
        out = {}
        for ln in self.command("show stat").splitlines():
            f = ln.split(",")
            if len(f) > 17 and f[0] == "relays" and f[1] not in ("BACKEND",):
                out[f[1]] = f[17]
        return out

    def servers_up(self):
        return sum(1 for v in self.server_states().values() if v.startswith("UP"))


class NginxFront(_Front):
    """nginx running packaging/fleet/nginx.conf, example addresses replaced."""

    name = "nginx"

    def render(self, relays):
        with open(NGINX_CONF) as f:
            text = f.read()
        subs = [(NGINX_EXAMPLE_LISTEN, "listen %s:%d;" % self.addr)]
        subs += [(ex, r.addr) for ex, r in zip(NGINX_EXAMPLE_RELAYS, relays)]
        for old, new in subs:
            assert old in text, "%s no longer contains %r: update fleet.py" % (NGINX_CONF, old)
            text = text.replace(old, new)
        path = os.path.join(self.workdir, "nginx.conf")
        with open(path, "w") as f:
            f.write(text)
        return path

    def start(self, relays):
        conf = self.render(relays)
        os.makedirs(os.path.join(self.workdir, "logs"), exist_ok=True)
        self._spawn([NGINX, "-p", self.workdir + "/", "-c", conf, "-e", "stderr",
                     "-g", "daemon off; pid %s/nginx.pid;" % self.workdir])
        return self


# ---------------------------------------------------------------- traffic

class IdentityServer:
    """Local TCP server: sends `name\\n`, then echoes until EOF."""

    def __init__(self, name):
        ident = (name + "\n").encode()

        class H(socketserver.BaseRequestHandler):
            def handle(self):
                s = self.request
                try:
                    s.sendall(ident)
                    while True:
                        d = s.recv(65536)
                        if not d:
                            break
                        s.sendall(d)
                except OSError:
                    pass

        class S(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.srv = S(("127.0.0.1", 0), H)
        self.port = self.srv.server_address[1]
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


class TunnelError(Exception):
    """A tunnel could not be opened: .status is the HTTP status or None."""

    def __init__(self, msg, status=None):
        super().__init__(msg)
        self.status = status


def open_tunnel(front, path, client_key, timeout=5.0):
    """A WebRoute client through the front end: (Conn, identity line)."""
    try:
        c = Conn.connect(front, timeout, keys=(client_key,))
    except OSError as e:
        raise TunnelError("connect: %s" % e) from None
    try:
        c.send(build_request(path, webroute_headers(client_key, random_token(), host="fleet")))
        resp = c.read_head(timeout)
        if resp.status != 101:
            raise TunnelError("status %d" % resp.status, resp.status)
        ident = c.read_until(b"\n", timeout).decode().strip()
        return c, ident
    except (AssertionError, OSError) as e:
        c.close()
        raise TunnelError(str(e).splitlines()[0][:200]) from None
    except TunnelError:
        c.close()
        raise


def probe_register(front, path, server_key, timeout=5.0):
    """Register a listener on path through the front end: the Conn (open)."""
    c = Conn.connect(front, timeout, keys=(server_key,))
    c.send(build_request(path, listener_headers(server_key, new_ws_key(), host="fleet")))
    resp = c.read_head(timeout)
    assert resp.status == 101, "probe registration of %s: %r" % (path, resp)
    return c


class Tunnel:
    """A long-lived tunnel to path; exchange() checks the echo."""

    def __init__(self, front, path, client_key):
        self.path = path
        self.conn, ident = open_tunnel(front, path, client_key)
        assert ident == path, "tunnel to %s reached %s" % (path, ident)
        self.n = 0

    def exchange(self, size=4096):
        self.n += 1
        msg = (("%s #%d " % (self.path, self.n)).encode() * (size // 8 + 1))[:size]
        self.conn.send(msg)
        got = self.conn.recv_exact(len(msg), 5 * SLOW)
        assert got == msg, "tunnel %s: echo differs" % self.path

    def close(self):
        self.conn.close()


def cli_roundtrip(rapi, front, path, env, timeout=10.0):
    """`rapi connect rwr://front/path` in stdio mode: sends a line once the
    identity line came back, then closes its input. Returns stdout (bytes).
    (Input closed before the tunnel is up would race the front end: see
    packaging/fleet/README.md.)"""
    q = subprocess.Popen([rapi, "connect", "rwr://%s:%d%s" % (front + (path,))],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=env)
    out = b""
    sent = False
    try:
        deadline = time.monotonic() + timeout * SLOW
        while True:
            if not sent and out.startswith((path + "\n").encode()):
                q.stdin.write(b"ping\n")
                q.stdin.close()
                sent = True
            r, _, _ = select.select([q.stdout], [], [], max(0.0, deadline - time.monotonic()))
            assert r, "rapi connect %s: stuck after %r" % (path, out)
            d = os.read(q.stdout.fileno(), 4096)
            if not d:
                break
            out += d
        rc = q.wait(timeout * SLOW)
        assert rc == 0, "rapi connect %s exited %r: %r" % (path, rc, q.stderr.read()[-500:])
        return out
    finally:
        if q.poll() is None:
            q.kill()
            q.wait(5)


class Prober:
    """One client thread per path, each opening a tunnel, checking the
    identity and an echo, closing, then sleeping `pause`. Every attempt is
    recorded as (start, end, path, ok, detail)."""

    def __init__(self, front, paths, client_key, pause=0.05, timeout=3.0):
        self.front, self.paths, self.key = front, list(paths), client_key
        self.pause, self.timeout = pause, timeout
        self.log = []
        self.wrong = []  # (path, identity) pairs: a client reached another path's server
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(p,), daemon=True)
                        for p in self.paths]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def _once(self, path):
        c, ident = open_tunnel(self.front, path, self.key, self.timeout)
        try:
            if ident != path:
                return False, "WRONG:" + ident
            msg = ("hello %s" % path).encode()
            c.send(msg)
            if c.recv_exact(len(msg), self.timeout) != msg:
                return False, "echo differs"
            return True, ident
        finally:
            c.close()

    def _run(self, path):
        while not self.stop_ev.is_set():
            t0 = time.monotonic()
            try:
                ok, detail = self._once(path)
            except TunnelError as e:
                ok, detail = False, str(e)
            except (AssertionError, OSError) as e:
                ok, detail = False, str(e).splitlines()[0][:200]
            with self.lock:
                self.log.append((t0, time.monotonic(), path, ok, detail))
                if detail.startswith("WRONG:"):
                    self.wrong.append((path, detail[6:]))
            self.stop_ev.wait(self.pause)

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(10)

    def attempts(self, since=0.0, until=float("inf"), path=None):
        with self.lock:
            return [a for a in self.log if since <= a[0] < until and (path is None or a[2] == path)]

    def first_ok_after(self, path, t):
        """End time of the first successful attempt on path started at or after t."""
        oks = [a[1] for a in self.attempts(since=t, path=path) if a[3]]
        return min(oks) if oks else None

    def all_ok_once_since(self, t):
        return all(self.first_ok_after(p, t) is not None for p in self.paths)
