"""rapi expose / rapi connect / rapi keygen against the real rapi-server,
with unmodified origins (python3 -m http.server, echo) and clients (curl)."""

import hashlib
import os
import signal
import socket
import stat
import struct
import subprocess
import threading
import time

from relay import SLOW, wr_101_bytes
from sdk_helpers import curl, origin, read_all, sdk, stream_sha256, build_dir  # noqa: F401

PP2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def rapi_bin():
    return os.path.join(build_dir(), "rapi")


def test_http_through_tunnel(sdk, origin, tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    files = {"small.txt": b"hello rapi\n", "big.bin": os.urandom(3 << 20), "empty": b""}
    for name, data in files.items():
        (www / name).write_bytes(data)
    _, hport = origin.http(www)
    exp = sdk.expose("/web", "127.0.0.1:%d" % hport)
    con, lport = sdk.connect_listen("/web")
    for name, data in files.items():
        out = tmp_path / ("got-" + name)
        r = curl("http://127.0.0.1:%d/%s" % (lport, name), out)
        assert r.returncode == 0, r.stderr
        assert out.read_bytes() == data, name
    # One log line per connection on each side, with addresses and bytes.
    m = exp.wait_log(r"client (127\.0\.0\.1:\d+) -> 127\.0\.0\.1:%d: in (\d+) out (\d+) bytes, "
                     r"[0-9.]+ s" % hport, count=3)
    assert int(m.group(3)) > 0
    con.wait_log(r"client 127\.0\.0\.1:\d+ -> rwr://127\.0\.0\.1:\d+/web: out \d+ in \d+ bytes",
                 count=3)
    assert "big.bin" not in exp.stderr()  # bytes are not logged, only counted


def test_half_close_both_ways(sdk, origin):
    _, eport = origin.start("echo")
    sdk.expose("/echo", "127.0.0.1:%d" % eport)
    _, lport = sdk.connect_listen("/echo")
    data = os.urandom(1 << 20)
    s = socket.create_connection(("127.0.0.1", lport), timeout=10)
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)  # our FIN reaches the echo server...
    got = read_all(s, 10 * SLOW)  # ...which echoes everything, then closes
    s.close()
    assert got == data


def test_50_parallel_downloads(sdk, origin, tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    data = os.urandom(8 << 20)
    (www / "f.bin").write_bytes(data)
    want = hashlib.sha256(data).hexdigest()
    _, hport = origin.http(www)
    sdk.expose("/par", "127.0.0.1:%d" % hport)
    _, lport = sdk.connect_listen("/par")
    t0 = time.monotonic()
    procs = []
    for i in range(50):
        out = tmp_path / ("out%d" % i)
        procs.append((out, subprocess.Popen(
            ["curl", "-sS", "--fail", "--max-time", str(int(60 * SLOW)), "-o", str(out),
             "http://127.0.0.1:%d/f.bin" % lport], stderr=subprocess.PIPE)))
    for out, p in procs:
        _, err = p.communicate(timeout=70 * SLOW)
        assert p.returncode == 0, err
        assert hashlib.sha256(out.read_bytes()).hexdigest() == want, out
    assert time.monotonic() - t0 < 60 * SLOW


def test_1gib_checksum(sdk, origin):
    total = 1 << 30
    _, sport = origin.start("source", total)
    sdk.expose("/gib", "127.0.0.1:%d" % sport)
    _, lport = sdk.connect_listen("/gib")
    want = stream_sha256(total)
    s = socket.create_connection(("127.0.0.1", lport), timeout=10)
    s.settimeout(30 * SLOW)
    h = hashlib.sha256()
    n = 0
    buf = bytearray(1 << 20)
    t0 = time.monotonic()
    while True:
        k = s.recv_into(buf)
        if k == 0:
            break
        h.update(memoryview(buf)[:k])
        n += k
    dt = time.monotonic() - t0
    s.close()
    assert n == total
    assert h.hexdigest() == want
    print("1 GiB through expose+relay+connect in %.2f s (%.0f MiB/s)" % (dt, total / dt / 2**20))
    assert dt < 120 * SLOW


def test_stdio_mode(sdk, origin):
    _, eport = origin.start("echo")
    sdk.expose("/stdio", "127.0.0.1:%d" % eport)
    data = b"".join(b"line %d over stdio\n" % i for i in range(20000))
    r = sdk.run(["connect", sdk.url("rwr", "/stdio")], input=data)
    assert r.returncode == 0, r.stderr
    assert r.stdout == data


def test_relay_restart_expose_comes_back(sdk, origin, relay, start_relay):
    _, eport = origin.start("echo")
    exp = sdk.expose("/back", "127.0.0.1:%d" % eport)
    port = relay.addr[1]
    relay.signal(signal.SIGTERM)
    assert relay.wait_exit(15 * SLOW) == 0
    exp.wait_log(r"retrying in \d+ ms", count=3)  # a few refused attempts, backing off
    # Hold expose still while the new relay takes its start-up socket count
    # (the fixture's leak check compares against it), then let it go.
    t0 = time.monotonic()
    os.kill(exp.pid, signal.SIGSTOP)
    try:
        start_relay(listen=["127.0.0.1:%d" % port], key_file=relay.key_file)
    finally:
        os.kill(exp.pid, signal.SIGCONT)
    exp.wait_log(r"registered /back", count=2, timeout=5)
    took = time.monotonic() - t0
    assert took < 5 * SLOW, "expose came back after %.1f s" % took
    r = sdk.run(["connect", sdk.url("rwr", "/back")], input=b"after the restart")
    assert r.stdout == b"after the restart", r.stderr
    assert exp.alive()


def test_origin_killed_midtransfer(sdk, origin):
    drip, dport = origin.start("drip")
    sdk.expose("/drip", "127.0.0.1:%d" % dport)
    _, lport = sdk.connect_listen("/drip")
    s = socket.create_connection(("127.0.0.1", lport), timeout=10)
    got = 0
    while got < 64 * 1024:
        d = s.recv(65536)
        assert d, "tunnel closed before the origin was killed"
        got += len(d)
    drip.kill()  # our own process, by PID
    t0 = time.monotonic()
    try:
        read_all(s, 5 * SLOW)
    except ConnectionResetError:
        pass
    took = time.monotonic() - t0
    s.close()
    assert took < 2 * SLOW, "client saw the close only after %.1f s" % took


def test_proxy_protocol_v2(sdk, origin, relay):
    _, pport = origin.start("proxy")
    sdk.expose("/pp", "127.0.0.1:%d" % pport, extra=["--proxy-protocol", "v2"])
    c, wrid = relay.client("/pp")
    assert c.read_head().head == wr_101_bytes(wrid)
    hdr = bytes.fromhex(c.read_until(b"\n").strip().decode())
    src_port = c.sock.getsockname()[1]
    want = (PP2_SIG + b"\x21\x11" + struct.pack("!H", 12) + socket.inet_aton("127.0.0.1") * 2
            + struct.pack("!HH", src_port, relay.addr[1]))
    assert hdr == want, "PROXY v2 header %r, want %r" % (hdr.hex(), want.hex())
    c.send(b"after the header")
    assert c.recv_exact(16) == b"after the header"
    c.close()


def test_keys_env_url_and_files(sdk, origin, relay, tmp_path):
    _, eport = origin.start("echo")
    # Server key from RAPI_KEY (no key file in the environment).
    sdk.expose("/keys", "127.0.0.1:%d" % eport,
               env=sdk.env(RAPI_KEY=relay.server_key, RAPI_KEY_FILE=None))
    # Client key in the URL (compatibility), nothing in the environment.
    env = sdk.env(RAPI_KEY_FILE=None)
    url = sdk.url("rwr", "/keys", key=relay.client_key)
    r = sdk.run(["connect", url], input=b"url key", env=env)
    assert r.stdout == b"url key", r.stderr
    # A bare key file, and a relay key file, via --key-file.
    bare = tmp_path / "client.key"
    bare.write_text("# the client key\n%s\n" % relay.client_key)
    bare.chmod(0o600)
    for kf in (str(bare), relay.key_file):
        r = sdk.run(["connect", "--key-file", kf, sdk.url("rwr", "/keys")], input=b"kf", env=env)
        assert r.stdout == b"kf", r.stderr
    # A key file others can read is refused.
    bare.chmod(0o644)
    r = sdk.run(["connect", "--key-file", str(bare), sdk.url("rwr", "/keys")], env=env)
    assert r.returncode == 2 and b"chmod 600" in r.stderr
    # No key at all.
    r = sdk.run(["connect", sdk.url("rwr", "/keys")], env=env)
    assert r.returncode == 2 and b"no key" in r.stderr


def test_connect_errors_are_named(sdk, relay):
    r = sdk.run(["connect", sdk.url("rwr", "/nobody")])
    assert r.returncode == 1
    assert b"502 missing_destination" in r.stderr and b"RAPI_E_NO_LISTENER" in r.stderr
    env = sdk.env(RAPI_KEY="not-the-key-0123456789", RAPI_KEY_FILE=None)
    r = sdk.run(["connect", sdk.url("rwr", "/nobody")], env=env)
    assert r.returncode == 1
    assert b"403 invalid_missing_apikey" in r.stderr and b"RAPI_E_APIKEY" in r.stderr
    assert b"not-the-key" not in r.stderr


def test_expose_wrong_key_keeps_retrying(sdk, origin):
    _, eport = origin.start("echo")
    bad = "wrong-server-key-0123456789"
    p = sdk.expose("/bad", "127.0.0.1:%d" % eport, wait=False,
                   env=sdk.env(RAPI_KEY=bad, RAPI_KEY_FILE=None))
    p.wait_log(r"403 invalid_missing_apikey.*retrying in \d+ ms", count=2)
    assert p.alive()
    assert bad not in p.stderr()


def test_chain_through_two_relays(sdk, origin, relay, start_relay):
    relay2 = start_relay(key_file=relay.key_file)
    _, eport = origin.start("echo")
    sdk.expose("/svc", "127.0.0.1:%d" % eport, relay=relay2)
    # relay2 itself is remoted through relay: the chain's second hop is
    # opened inside the first tunnel.
    sdk.expose("/relay2", "%s:%d" % relay2.addr)
    chain = sdk.url("rwr", "/relay2") + " " + sdk.url("rwr", "/svc", relay=relay2)
    r = sdk.run(["connect", chain], input=b"through two relays")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"through two relays"


# ---------------------------------------------------------------- no relay

def run(args, **kw):
    return subprocess.run([rapi_bin()] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=10, **kw)


def test_help_everywhere():
    for args in (["-h"], ["expose", "-h"], ["connect", "-h"], ["keygen", "-h"]):
        r = run(args)
        assert r.returncode == 0 and r.stdout.startswith(b"usage: rapi"), args
    assert run([]).returncode == 2
    assert run(["bogus"]).returncode == 2
    assert run(["expose", "rws://127.0.0.1:1/x"]).returncode == 2  # --to missing


def test_keygen(tmp_path):
    r = run(["keygen"])
    assert r.returncode == 0
    keys = dict(ln.split() for ln in r.stdout.decode().splitlines()
                if ln and not ln.startswith("#"))
    assert set(keys) == {"server_key", "client_key"}
    assert all(len(k) == 64 and k.isalnum() for k in keys.values())
    assert keys["server_key"] != keys["client_key"]
    path = tmp_path / "k"
    assert run(["keygen", "-o", str(path)]).returncode == 0
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert run(["keygen", "-o", str(path)]).returncode == 1  # never overwrites




# ------------------------------------------------------------ resets (issue 8, item 7)

LINGER0 = struct.pack("ii", 1, 0)


class OneShot:
    """A local server for one connection, run on a thread of the test: `serve`
    gets the accepted socket. Bounded: every socket has a timeout."""

    def __init__(self, serve):
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1)
        self.lsock.settimeout(10 * SLOW)
        self.port = self.lsock.getsockname()[1]
        self.result = None
        self.t = threading.Thread(target=self._run, args=(serve,), daemon=True)
        self.t.start()

    def _run(self, serve):
        try:
            c, _ = self.lsock.accept()
            c.settimeout(10 * SLOW)
            self.result = serve(c)
        except Exception as e:  # noqa: BLE001 (reported by the test)
            self.result = e
        finally:
            self.lsock.close()

    def join(self):
        self.t.join(15 * SLOW)
        assert not self.t.is_alive(), "backend thread still running"
        return self.result


def reset_close(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
    s.close()


def read_end(s):
    """How a socket's reading side ends: 'eof' or 'reset' (after any data)."""
    try:
        while s.recv(65536):
            pass
        return "eof"
    except ConnectionResetError:
        return "reset"


class ResettingBackend(OneShot):
    """A one-shot local server that sends 64 KiB, waits until the client has
    read them, then resets the connection."""

    def __init__(self):
        self.chunk = os.urandom(64 * 1024)
        self.data_read = threading.Event()
        super().__init__(self._serve)

    def _serve(self, c):
        c.sendall(self.chunk)
        assert self.data_read.wait(10 * SLOW)
        reset_close(c)
        return "reset sent"

    def expect_reset_at(self, lport):
        """As the client on lport: the data byte-exact, then a reset (not a
        clean EOF)."""
        s = socket.create_connection(("127.0.0.1", lport), timeout=10 * SLOW)
        got = b""
        while len(got) < len(self.chunk):
            d = s.recv(65536)
            assert d, "tunnel ended before the data arrived"
            got += d
        assert got == self.chunk
        self.data_read.set()
        end = read_end(s)
        s.close()
        assert self.join() == "reset sent"
        assert end == "reset", "the backend's reset reached the client as a clean EOF"


def test_backend_reset_reaches_the_client_as_a_reset(sdk):
    """The local server behind `rapi expose` resets mid-transfer: the client
    behind `rapi connect` must read ECONNRESET, not a clean EOF."""
    backend = ResettingBackend()
    sdk.expose("/rst", "127.0.0.1:%d" % backend.port)
    _, lport = sdk.connect_listen("/rst")
    backend.expect_reset_at(lport)


def test_client_reset_reaches_the_backend_as_a_reset(sdk):
    """The other direction: the client of `rapi connect` resets, the local
    server behind `rapi expose` must read ECONNRESET, not a clean EOF."""

    def serve(c):
        got = b""
        while len(got) < 5:
            d = c.recv(5 - len(got))
            if not d:
                return "eof before the data"
            got += d
        c.sendall(b"ready")
        end = read_end(c)
        c.close()
        return end

    backend = OneShot(serve)
    sdk.expose("/rst2", "127.0.0.1:%d" % backend.port)
    _, lport = sdk.connect_listen("/rst2")
    s = socket.create_connection(("127.0.0.1", lport), timeout=10 * SLOW)
    s.sendall(b"hello")
    assert s.recv(5) == b"ready"
    reset_close(s)
    assert backend.join() == "reset", "the client's reset reached the backend as a clean EOF"


def test_clean_end_stays_a_half_close(sdk):
    """A FIN is still a FIN: the backend ends its side cleanly, the client
    reads EOF and can still send; the backend reads that, then EOF."""

    def serve(c):
        c.sendall(b"bye")
        c.shutdown(socket.SHUT_WR)
        got = b""
        while True:
            d = c.recv(65536)
            if not d:
                break
            got += d
        c.close()
        return got

    backend = OneShot(serve)
    sdk.expose("/fin", "127.0.0.1:%d" % backend.port)
    _, lport = sdk.connect_listen("/fin")
    s = socket.create_connection(("127.0.0.1", lport), timeout=10 * SLOW)
    assert read_all(s, 10 * SLOW) == b"bye"
    s.sendall(b"after your FIN")
    s.shutdown(socket.SHUT_WR)
    assert backend.join() == b"after your FIN"
    s.close()


def test_stdio_mode_reset_exits_nonzero(sdk):
    """A pipe cannot carry a reset: in stdio mode the exit status does."""

    def serve(c):
        while c.recv(65536):  # the input's end arrives as a half-close
            pass
        c.sendall(b"partial")
        time.sleep(0.2 * SLOW)  # let it leave before the reset
        reset_close(c)
        return "reset sent"

    backend = OneShot(serve)
    sdk.expose("/stdio-rst", "127.0.0.1:%d" % backend.port)
    r = sdk.run(["connect", sdk.url("rwr", "/stdio-rst")], input=b"request")
    assert backend.join() == "reset sent"
    assert r.stdout == b"partial"
    assert r.returncode == 1, "a reset tunnel exited %d: %r" % (r.returncode, r.stderr)
