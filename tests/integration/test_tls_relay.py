"""TLS listeners of rapi-server (issue 9, docs/PROTOCOL.md "TLS listeners").

A relay listens on a TLS address and a plain one; the WebRoute flow runs with
the client, the dial-back and the listener each over TLS or plain, in every
mix, byte-exact, with half-close (close_notify then FIN), prompt close and
the error answers; certificates chosen by SNI, the version floor, plain HTTP
to the TLS port and TLS to the plain port (bounded), a stalled handshake
closed at header_timeout, SIGHUP certificate swaps, the /metrics counters,
openssl s_client and curl as independent clients, python3-websockets over
wss. Certificates come from tlscerts.py (openssl CLI, tmp directory).

TLS clients here are Python's ssl module over memory BIOs (TLSConn), so a
test controls exactly when close_notify and FIN go out and can pump several
connections from one thread without blocking.
"""

import asyncio
import json
import os
import re
import selectors
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request

import pytest

from relay import (OP_PING, OP_PONG, SLOW, Conn, Link, WSConn, assert_error, encode_frame, assert_wr_101, assert_ws_101,
                   build_request, expect_error, listener_headers, new_ws_key, random_token,
                   sha, wait_until, webroute_headers)
# The certificates (tests/integration/tlscerts.py) come with the SDK's TLS
# work; without that file the module is skipped, loudly.
tls_certs = pytest.importorskip(
    "tlscerts", reason="tests/integration/tlscerts.py (test certificates) missing").tls_certs

MiB = 1 << 20
TLS_LISTEN = ("127.0.0.1:0 tls", "127.0.0.1:0")  # addrs[0]: TLS, addrs[1]: plain
CHUNK = 65536


# ---------------------------------------------------------------- TLS client

def client_ctx(certs, maximum=None, minimum=None):
    ctx = ssl.create_default_context(cafile=certs.ca)
    if maximum:
        ctx.maximum_version = maximum
    if minimum:
        ctx.minimum_version = minimum
    return ctx


class TLSConn(Conn):
    """Conn over TLS: ssl.SSLObject on memory BIOs above a plain socket
    (self.sock), so that reads, writes, close_notify and FIN are each under
    the test's control and nothing blocks in the pump."""

    def __init__(self, sock, ctx, server_hostname="localhost", keys=(), session=None,
                 timeout=5.0):
        super().__init__(sock, keys)
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname=server_hostname,
                                session=session)
        self.pending_out = bytearray()  # ciphertext not sent yet (pump)
        self.closed_notify = False
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush_blocking()
                if not self._recv_raw(deadline):
                    raise ConnectionResetError("EOF during the TLS handshake")
        self._flush_blocking()

    @classmethod
    def open(cls, addr, ctx, server_hostname="localhost", keys=(), session=None):
        s = socket.create_connection(addr, timeout=5.0)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            return cls(s, ctx, server_hostname, keys, session)
        except BaseException:
            s.close()
            raise

    def _flush_blocking(self):
        data = bytes(self.pending_out) + self.out.read()
        self.pending_out.clear()
        if data:
            self.sock.settimeout(5.0)
            self.sock.sendall(data)

    def _recv_raw(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout()
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(262144)
        except ConnectionResetError:
            self.reset = True
            data = b""
        if data:
            self.inc.write(data)
            return True
        self.inc.write_eof()
        return False

    def _decrypt(self):
        """Plaintext available now (b"" if none); sets eof at close_notify or
        at a TCP end."""
        got = bytearray()
        while True:
            try:
                d = self.obj.read(262144)
            except ssl.SSLWantReadError:
                break
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                self.eof = True
                break
            if not d:
                self.eof = True
                break
            got += d
        return bytes(got)

    def _fill(self, deadline):
        if self.eof and not self.buf:
            return False
        while True:
            d = self._decrypt()
            self._flush_blocking()  # e.g. a key update answer
            if d:
                self.buf += d
                return True
            if self.eof:
                return False
            if not self._recv_raw(deadline):
                d = self._decrypt()
                self.eof = True
                self.buf += d
                return bool(d)

    def send(self, data):
        view = memoryview(data)
        while len(view):
            n = self.obj.write(view[:CHUNK])
            view = view[n:]
            self._flush_blocking()

    def shutdown_wr(self):
        """close_notify, then FIN: a TLS half-close."""
        try:
            self.obj.unwrap()
        except (ssl.SSLWantReadError, ssl.SSLError):
            pass
        self.closed_notify = True
        self._flush_blocking()
        self.sock.shutdown(socket.SHUT_WR)

    def peer_der(self):
        return self.obj.getpeercert(binary_form=True)


def plain_conn(relay, addr=None):
    c = Conn.connect(addr or relay.addrs[1], keys=relay.secrets())
    relay.conns.append(c)
    return c


def tls_conn(relay, ctx, addr=None, server_hostname="localhost", session=None):
    c = TLSConn.open(addr or relay.addrs[0], ctx, server_hostname, relay.secrets(), session)
    relay.conns.append(c)
    return c


def side(relay, tls, ctx):
    return tls_conn(relay, ctx) if tls else plain_conn(relay)


def register(relay, path, conn):
    ws_key = new_ws_key()
    conn.send(build_request(path, listener_headers(relay.server_key, ws_key)))
    assert_ws_101(conn.read_head(), ws_key)
    return WSConn(conn, path)


def link(relay, lst, client, server, extra=b""):
    wrid = random_token()
    client.send(build_request(lst.path, webroute_headers(relay.client_key, wrid)) + extra)
    _, note = lst.notification()
    assert note["id"] == wrid
    server.send(build_request(lst.path, webroute_headers(relay.server_key, wrid)))
    assert_wr_101(server.read_head(), wrid)
    assert_wr_101(client.read_head(), wrid)
    return Link(client, server, wrid, lst.path)


# ---------------------------------------------------------------- pump

class _End:
    """One connection in tpump(): plaintext out/in over a plain or TLS conn."""

    def __init__(self, conn, out, n, shut):
        self.conn, self.out, self.n, self.shut = conn, memoryview(out), n, shut
        self.tls = isinstance(conn, TLSConn)
        self.got = bytearray(conn.buf)
        conn.buf.clear()
        self.rdone = n is not None and len(self.got) >= n
        self.wdone = False
        self.cipher = bytearray()

    def readable(self):
        s = self.conn.sock
        try:
            data = s.recv(262144)
        except (BlockingIOError, InterruptedError):
            return
        except ConnectionResetError:
            self.conn.reset, data = True, b""
        if self.tls:
            if data:
                self.conn.inc.write(data)
            else:
                self.conn.inc.write_eof()
            self.got += self.conn._decrypt()
            self.cipher += self.conn.out.read()
            eof = self.conn.eof or not data
        else:
            self.got += data
            eof = not data
        if eof:
            self.conn.eof = True
            assert self.n is None or len(self.got) >= self.n, \
                "EOF after %d of %d bytes" % (len(self.got), self.n)
            self.rdone = True
        if self.n is not None and len(self.got) >= self.n:
            self.rdone = True

    def writable(self):
        s = self.conn.sock
        if self.tls:
            while len(self.out) and len(self.cipher) < 4 * CHUNK:
                k = self.conn.obj.write(self.out[:CHUNK])
                self.out = self.out[k:]
                self.cipher += self.conn.out.read()
            buf = self.cipher
        else:
            buf = self.out
        try:
            k = s.send(bytes(buf[:262144]))
        except (BlockingIOError, InterruptedError):
            k = 0
        if self.tls:
            del self.cipher[:k]
        else:
            self.out = self.out[k:]
        self.finish_write()

    def finish_write(self):
        if self.wdone or len(self.out) or (self.tls and self.cipher):
            return
        if self.shut:
            if self.tls and not self.conn.closed_notify:
                try:
                    self.conn.obj.unwrap()
                except (ssl.SSLWantReadError, ssl.SSLError):
                    pass
                self.conn.closed_notify = True
                self.cipher += self.conn.out.read()
                return  # the alert goes out first
            self.conn.sock.shutdown(socket.SHUT_WR)
        self.wdone = True

    def events(self):
        return ((0 if self.rdone else selectors.EVENT_READ) |
                (0 if self.wdone else selectors.EVENT_WRITE))


def tpump(flows, timeout):
    """pump() for plain and TLS conns: flows of (conn, data, n_expected or
    None for EOF, shut_wr after data). Returns what each received."""
    ends = [_End(*f) for f in flows]
    sel = selectors.DefaultSelector()
    for e in ends:
        e.conn.sock.setblocking(False)
        e.finish_write()
    deadline = time.monotonic() + timeout
    try:
        while any(not (e.rdone and e.wdone) for e in ends):
            if time.monotonic() > deadline:
                raise AssertionError("tpump timed out: " + "; ".join(
                    "#%d got %d/%s, %d to send" % (i, len(e.got), e.n, len(e.out))
                    for i, e in enumerate(ends) if not (e.rdone and e.wdone)))
            for e in ends:
                try:
                    sel.unregister(e.conn.sock)
                except KeyError:
                    pass
                if e.events():
                    sel.register(e.conn.sock, e.events(), e)
            for key, ev in sel.select(0.5):
                e = key.data
                if ev & selectors.EVENT_READ and not e.rdone:
                    e.readable()
                if ev & selectors.EVENT_WRITE and not e.wdone:
                    e.writable()
    finally:
        sel.close()
        for e in ends:
            e.conn.sock.setblocking(True)
    out = []
    for e in ends:
        data = bytes(e.got)
        if e.n is not None and len(data) > e.n:
            e.conn.buf += data[e.n:]
            data = data[:e.n]
        out.append(data)
    return out


# ---------------------------------------------------------------- helpers

def tls_relay(start_relay, certs, **opts):
    o = {"tls_cert": certs.server, "tls_key": certs.server_key}
    o.update(opts)
    return start_relay(listen=TLS_LISTEN, **o)


def metrics(relay):
    port = relay.admin_port
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        return r.read().decode()


def metric(text, name, labels=""):
    m = re.search(r"^%s%s (\d+)$" % (re.escape(name), re.escape(labels)), text, re.M)
    assert m, "no %s%s in /metrics" % (name, labels)
    return int(m.group(1))


def admin_relay(start_relay, certs, **opts):
    """A TLS relay with the admin endpoint on a free port (learned from its log)."""
    relay = tls_relay(start_relay, certs, admin="127.0.0.1:0", **opts)
    m = wait_until(lambda: re.search(r"admin endpoint on 127\.0\.0\.1:(\d+)", relay.stderr()),
                   3.0, what="admin endpoint")
    relay.admin_port = int(m.group(1))
    return relay


def pem_der(path):
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


MIXES = [
    pytest.param((True, False, False), id="tls-client+plain-dialback"),
    pytest.param((False, True, False), id="plain-client+tls-dialback"),
    pytest.param((True, True, True), id="all-tls"),
]


# ---------------------------------------------------------------- data path

@pytest.mark.all_modes
@pytest.mark.parametrize("mix", MIXES)
def test_tls_mixes_byte_exact(start_relay, tls_certs, mix):
    """Every mix moves several MiB each way byte-exact, then both sides end
    (close_notify + FIN on a TLS side) and each sees EOF."""
    ctls, stls, ltls = mix
    relay = tls_relay(start_relay, tls_certs)
    ctx = client_ctx(tls_certs)
    lst = register(relay, "/tlsmix/", side(relay, ltls, ctx))
    links = [link(relay, lst, side(relay, ctls, ctx), side(relay, stls, ctx)) for _ in range(2)]
    flows, want = [], []
    for i, ln in enumerate(links):
        size = (3 + i) * MiB + 12345
        up, down = os.urandom(size), os.urandom(size + 777)
        flows += [(ln.client, up, len(down), False), (ln.server, down, len(up), False)]
        want += [down, up]
    got = tpump(flows, 40 * SLOW)
    for g, w in zip(got, want):
        assert len(g) == len(w) and sha(g) == sha(w), "corrupted stream (%d bytes)" % len(g)
    for ln in links:
        got = tpump([(ln.client, b"", None, True), (ln.server, b"", None, True)], 5 * SLOW)
        assert got == [b"", b""]


@pytest.mark.all_modes
@pytest.mark.parametrize("first", ["client", "server"])
@pytest.mark.parametrize("mix", [MIXES[0], MIXES[2]])
def test_tls_half_close(start_relay, tls_certs, first, mix):
    """A TLS side's close_notify + FIN is a half-close: the other side gets
    every byte then EOF, and the other direction keeps flowing."""
    ctls, stls, ltls = mix
    relay = tls_relay(start_relay, tls_certs)
    ctx = client_ctx(tls_certs)
    lst = register(relay, "/tlshalf/", side(relay, ltls, ctx))
    ln = link(relay, lst, side(relay, ctls, ctx), side(relay, stls, ctx))
    a, b = (ln.client, ln.server) if first == "client" else (ln.server, ln.client)
    tail = os.urandom(300000)
    got = tpump([(a, tail, 0, True), (b, b"", None, False)], 10 * SLOW)
    assert sha(got[1]) == sha(tail) and b.eof
    for i in range(5):
        msg = ("round %d " % i).encode() * 1000
        b.send(msg)
        assert a.recv_exact(len(msg), 3.0) == msg
    big = os.urandom(2 * MiB)
    got = tpump([(b, big, 0, True), (a, b"", None, False)], 20 * SLOW)
    assert sha(got[1]) == sha(big) and a.eof


@pytest.mark.parametrize("who", ["client", "server"])
def test_tls_close_propagates_promptly(start_relay, tls_certs, who):
    """A TLS side that closes (close_notify + close) ends the pair at once."""
    relay = tls_relay(start_relay, tls_certs)
    ctx = client_ctx(tls_certs)
    lst = register(relay, "/tlsprompt/", tls_conn(relay, ctx))
    ln = link(relay, lst, tls_conn(relay, ctx), tls_conn(relay, ctx))
    gone, other = (ln.client, ln.server) if who == "client" else (ln.server, ln.client)
    gone.send(b"last words")
    t0 = time.monotonic()
    gone.shutdown_wr()
    gone.close()
    assert other.read_to_eof(2.0) == b"last words"
    assert time.monotonic() - t0 < 1.0 * SLOW


@pytest.mark.parametrize("early", [1500, 70000], ids=["in-the-head-record", "many-records"])
def test_tls_pipelined_bytes_after_heads(start_relay, tls_certs, early):
    """Bytes a TLS client and a TLS dial-back send right behind their heads
    are delivered after linking, also when they sit decrypted inside the
    session (one record holds the head and them: no socket event comes)."""
    relay = tls_relay(start_relay, tls_certs)
    ctx = client_ctx(tls_certs)
    lst = register(relay, "/tlspipe/", tls_conn(relay, ctx))
    client, server = tls_conn(relay, ctx), tls_conn(relay, ctx)
    wrid = random_token()
    early_c, early_s = os.urandom(early), os.urandom(early)
    client.send(build_request(lst.path, webroute_headers(relay.client_key, wrid)) + early_c)
    _, note = lst.notification()
    server.send(build_request(lst.path, webroute_headers(relay.server_key, wrid)) + early_s)
    assert_wr_101(server.read_head(), wrid)
    assert_wr_101(client.read_head(), wrid)
    assert server.recv_exact(len(early_c), 3.0) == early_c
    assert client.recv_exact(len(early_s), 3.0) == early_s


# ---------------------------------------------------------------- listeners, errors

def test_tls_listener_pipelined_pings(start_relay, tls_certs):
    """Pings a TLS listener sends in the same record as its registration
    (left decrypted inside the session after the head) are answered."""
    relay = tls_relay(start_relay, tls_certs)
    conn = tls_conn(relay, client_ctx(tls_certs))
    ws_key = new_ws_key()
    pings = b"".join(encode_frame(OP_PING, b"%03d" % i + b"p" * 100) for i in range(12))
    conn.send(build_request("/tlsping/", listener_headers(relay.server_key, ws_key)) + pings)
    assert_ws_101(conn.read_head(), ws_key)
    lst = WSConn(conn, "/tlsping/")
    for i in range(12):
        f = lst.recv_frame(3.0)
        assert f.opcode == OP_PONG and f.payload == b"%03d" % i + b"p" * 100

def test_wss_listener_with_websockets_library(start_relay, tls_certs):
    """python3-websockets registers over wss://, gets the notification of a
    TLS client, and its TLS dial-back links."""
    websockets = pytest.importorskip("websockets")
    relay = tls_relay(start_relay, tls_certs, keepalive=1)
    ctx = client_ctx(tls_certs)
    url = "wss://localhost:%d/wss/path" % relay.addrs[0][1]

    async def main():
        async with websockets.connect(url, ssl=ctx,
                                      extra_headers={"X-Remoted-APIKey": relay.server_key},
                                      ping_interval=None, open_timeout=5,
                                      close_timeout=2) as ws:
            await asyncio.sleep(1.5)  # the relay pings over TLS; the library answers
            client, wrid = tls_conn(relay, ctx), random_token()
            client.send(build_request("/wss/path", webroute_headers(relay.client_key, wrid)))
            msg = await asyncio.wait_for(ws.recv(), 5)
            assert json.loads(msg)["id"] == wrid
            server = tls_conn(relay, ctx)
            server.send(build_request("/wss/path", webroute_headers(relay.server_key, wrid)))
            assert_wr_101(server.read_head(), wrid)
            assert_wr_101(client.read_head(), wrid)
            client.send(b"through TLS both ways")
            assert server.recv_exact(21) == b"through TLS both ways"
            await ws.close()
            assert ws.close_code == 1000
        return True

    assert asyncio.run(asyncio.wait_for(main(), 20))


def test_tls_error_answers(start_relay, tls_certs):
    """Error answers go through TLS: no key (403), no listener (502), unknown
    dial-back (404)."""
    relay = tls_relay(start_relay, tls_certs)
    ctx = client_ctx(tls_certs)
    c = tls_conn(relay, ctx)
    c.send(build_request("/x/", webroute_headers("wrong" * 4, random_token())))
    expect_error(c, 403, "invalid_missing_apikey")
    c = tls_conn(relay, ctx)
    c.send(build_request("/nobody/", webroute_headers(relay.client_key, random_token())))
    expect_error(c, 502, "missing_destination")
    c = tls_conn(relay, ctx)
    c.send(build_request("/nobody/", webroute_headers(relay.server_key, random_token())))
    expect_error(c, 404, "unknown_route")


def test_openssl_s_client_and_curl(start_relay, tls_certs):
    """Independent clients: openssl s_client verifies the chain and agrees
    on ALPN http/1.1; curl --cacert gets the JSON error answer."""
    if not shutil.which("openssl") or not shutil.which("curl"):
        pytest.skip("openssl or curl missing")
    relay = tls_relay(start_relay, tls_certs)
    port = relay.addrs[0][1]
    req = b"GET /sc/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
                        "-servername", "localhost", "-CAfile", tls_certs.ca,
                        "-verify_return_error", "-alpn", "http/1.1", "-ign_eof"],
                       input=req, capture_output=True, timeout=10)
    out = r.stdout.decode("latin-1")
    assert "Verify return code: 0 (ok)" in out, out[-2000:]
    assert "ALPN protocol: http/1.1" in out, out[-2000:]
    assert "HTTP/1.1 403 Forbidden" in out, out[-2000:]
    r = subprocess.run(["curl", "-sS", "--max-time", "5", "--cacert", tls_certs.ca,
                        "-o", "-", "-w", "\n%{http_code} %{ssl_verify_result}",
                        "https://localhost:%d/curl/" % port], capture_output=True, timeout=10)
    out = r.stdout.decode()
    assert out.endswith("\n403 0"), (out, r.stderr)
    assert '"errorcode":"invalid_missing_apikey"' in out


def test_sni_picks_the_pair(start_relay, tls_certs):
    """SNI other.test gets the second pair; localhost and an unknown name get
    the first (the default)."""
    relay = start_relay(listen=TLS_LISTEN, extra_args=[
        "-o", "tls_cert=" + tls_certs.server, "-o", "tls_key=" + tls_certs.server_key,
        "-o", "tls_cert=" + tls_certs.other, "-o", "tls_key=" + tls_certs.other_key])
    ctx = client_ctx(tls_certs)
    assert tls_conn(relay, ctx, server_hostname="other.test").peer_der() == \
        pem_der(tls_certs.other)
    assert tls_conn(relay, ctx).peer_der() == pem_der(tls_certs.server)
    loose = client_ctx(tls_certs)
    loose.check_hostname = False
    assert tls_conn(relay, loose, server_hostname="unknown.test").peer_der() == \
        pem_der(tls_certs.server)


def test_min_version_13_refuses_a_12_client(start_relay, tls_certs):
    relay = admin_relay(start_relay, tls_certs, tls_min_version="1.3")
    with pytest.raises(ssl.SSLError):
        TLSConn.open(relay.addrs[0], client_ctx(tls_certs, maximum=ssl.TLSVersion.TLSv1_2))
    c = tls_conn(relay, client_ctx(tls_certs))
    assert c.obj.version() == "TLSv1.3"
    text = wait_until(lambda: (lambda t: t if metric(
        t, "rapi_tls_handshake_failures_total", '{reason="version"}') >= 1 else None)(
            metrics(relay)), 3.0, what="version failure counted")
    assert metric(text, "rapi_tls_handshakes_total", '{version="TLSv1.3"}') >= 1


def test_tls12_and_resumption_counted(start_relay, tls_certs):
    """/metrics counts handshakes by version and resumed ones (tickets)."""
    relay = admin_relay(start_relay, tls_certs)
    ctx12 = client_ctx(tls_certs, maximum=ssl.TLSVersion.TLSv1_2)
    c = tls_conn(relay, ctx12)
    assert c.obj.version() == "TLSv1.2"
    ctx = client_ctx(tls_certs)
    first = tls_conn(relay, ctx)
    first.send(build_request("/res/", webroute_headers("bad" * 6, random_token())))
    first.read_response()  # TLS 1.3 tickets come after the handshake
    again = tls_conn(relay, ctx, session=first.obj.session)
    assert again.obj.session_reused
    text = metrics(relay)
    assert metric(text, "rapi_tls_handshakes_total", '{version="TLSv1.2"}') == 1
    assert metric(text, "rapi_tls_handshakes_total", '{version="TLSv1.3"}') == 2
    assert metric(text, "rapi_tls_resumed_total") == 1


# ---------------------------------------------------------------- wrong protocol, slow handshakes

def test_plain_http_to_tls_port_gets_400(start_relay, tls_certs):
    relay = admin_relay(start_relay, tls_certs)
    c = plain_conn(relay, relay.addrs[0])
    t0 = time.monotonic()
    c.send(build_request("/x/", webroute_headers(relay.client_key, random_token())))
    resp = c.read_response(2.0)
    assert_error(resp, 400, "invalid_request")
    assert b"TLS" in resp.body
    c.expect_eof(2.0)
    assert time.monotonic() - t0 < 1.0 * SLOW
    assert metric(metrics(relay), "rapi_tls_handshake_failures_total", '{reason="not_tls"}') == 1


def test_tls_to_plain_port_is_refused_without_a_stall(start_relay, tls_certs):
    relay = tls_relay(start_relay, tls_certs)
    t0 = time.monotonic()
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        TLSConn.open(relay.addrs[1], client_ctx(tls_certs))
    assert time.monotonic() - t0 < 1.0 * SLOW
    # The plain answer, as raw bytes: a 400 then the end.
    c = plain_conn(relay)
    c.send(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + os.urandom(32))
    assert_error(c.read_response(2.0), 400, "invalid_request")


@pytest.mark.parametrize("sent", [b"", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"],
                         ids=["nothing", "half-a-hello"])
def test_stalled_handshake_closed_at_header_timeout(start_relay, tls_certs, sent):
    relay = admin_relay(start_relay, tls_certs, header_timeout=1)
    c = plain_conn(relay, relay.addrs[0])
    t0 = time.monotonic()
    if sent:
        c.send(sent)
    c.expect_eof(3.0 * SLOW)
    took = time.monotonic() - t0
    assert 0.8 < took < 2.5 * SLOW, took
    text = metrics(relay)
    assert metric(text, "rapi_tls_handshake_failures_total", '{reason="timeout"}') == 1
    assert metric(text, "rapi_header_timeouts_total") == 1


def test_garbage_handshakes_do_not_hurt(start_relay, tls_certs):
    """Random bytes after a handshake record byte, and clients that hang up
    mid-handshake: closed, and a real client is still served."""
    relay = tls_relay(start_relay, tls_certs, header_timeout=2)
    conns = []
    for i in range(30):
        c = plain_conn(relay, relay.addrs[0])
        c.send(b"\x16" + os.urandom(200 + i))
        conns.append(c)
    for c in conns:  # refused at once, or (a record still incomplete) at the deadline
        c.read_to_eof(4.0 * SLOW)
        c.close()
    for _ in range(10):
        s = socket.create_connection(relay.addrs[0])
        s.sendall(b"\x16\x03\x01\x00")
        s.close()
    c = tls_conn(relay, client_ctx(tls_certs))
    c.send(build_request("/x/", webroute_headers(relay.client_key, random_token())))
    expect_error(c, 502, "missing_destination")


# ---------------------------------------------------------------- configuration, reload

def test_tls_config_checked(rapi_server, tls_certs, tmp_path):
    """rapi-server -t: a TLS listener without a pair, an odd pair count, a key
    readable by others and a key of another certificate are refused."""
    keys = tmp_path / "keys"
    subprocess.run([rapi_server, "keygen", str(keys)], check=True, capture_output=True)
    base = [rapi_server, "-t", "-k", str(keys), "-l", "127.0.0.1:0 tls"]

    def check(*opts):
        args = list(base)
        for o in opts:
            args += ["-o", o]
        r = subprocess.run(args, capture_output=True, text=True, timeout=10)
        return r.returncode, r.stdout + r.stderr

    rc, out = check()
    assert rc == 1 and "no certificate (set tls_cert and tls_key)" in out, out
    rc, out = check("tls_cert=" + tls_certs.server)
    assert rc == 1 and "go by pairs" in out, out
    loose = tmp_path / "loose.key"
    shutil.copy(tls_certs.server_key, loose)
    os.chmod(loose, 0o640)
    rc, out = check("tls_cert=" + tls_certs.server, "tls_key=%s" % loose)
    assert rc == 1 and "configuration invalid" in out, out
    assert "BEGIN" not in out and "PRIVATE" not in out
    rc, out = check("tls_cert=" + tls_certs.server, "tls_key=" + tls_certs.other_key)
    assert rc == 1 and "configuration invalid" in out, out
    rc, out = check("tls_cert=" + tls_certs.server, "tls_key=" + tls_certs.server_key)
    assert rc == 0 and "configuration ok" in out, out


@pytest.mark.all_modes
def test_sighup_swaps_certificates_keeping_tunnels(start_relay, tls_certs, tmp_path):
    """SIGHUP: new handshakes get the new certificate, an established TLS
    tunnel keeps flowing; a broken new certificate keeps the running one."""
    cert, key = tmp_path / "cur.pem", tmp_path / "cur.key"
    shutil.copy(tls_certs.server, cert)
    shutil.copy(tls_certs.server_key, key)
    os.chmod(key, 0o600)
    relay = start_relay(listen=TLS_LISTEN, tls_cert=str(cert), tls_key=str(key))
    ctx = client_ctx(tls_certs)
    loose = client_ctx(tls_certs)
    loose.check_hostname = False
    lst = register(relay, "/reload/", tls_conn(relay, ctx))
    ln = link(relay, lst, tls_conn(relay, ctx), tls_conn(relay, ctx))
    assert tls_conn(relay, loose).peer_der() == pem_der(tls_certs.server)

    shutil.copy(tls_certs.other, cert)
    shutil.copy(tls_certs.other_key, key)
    relay.signal(signal.SIGHUP)
    wait_until(lambda: "reloaded TLS certificates" in relay.stderr(), 3.0, what="reload")
    assert tls_conn(relay, loose).peer_der() == pem_der(tls_certs.other)
    data = os.urandom(MiB)
    got = tpump([(ln.client, data, len(data), False), (ln.server, data, len(data), False)],
                20 * SLOW)
    assert sha(got[0]) == sha(data) and sha(got[1]) == sha(data)

    with open(cert, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    relay.signal(signal.SIGHUP)
    wait_until(lambda: "keeping the running TLS certificates" in relay.stderr(), 3.0,
               what="refused reload")
    assert tls_conn(relay, loose).peer_der() == pem_der(tls_certs.other)
    ln.client.send(b"still here")
    assert ln.server.recv_exact(10, 3.0) == b"still here"



# ---------------------------------------------------------------- testssl.sh

@pytest.mark.parametrize("min_version", ["1.2", "1.3"])
def test_testssl_audit(rapi_server, min_version):
    """testssl.sh (protocols, cipher categories, vulnerabilities; ~20 s per
    run) finds nothing rated LOW or worse and nothing below the configured
    minimum (the `make tls-audit` check)."""
    import tls_audit
    if not tls_audit.testssl_binary():
        pytest.skip("testssl.sh not installed (make deps)")
    bad, text = tls_audit.audit(rapi_server, min_version)
    assert not bad, "testssl.sh findings:\n%s\n%s" % ("\n".join(bad), text)


def test_tls_audit_judge_can_fail():
    """The audit's verdict fails on a vulnerability and on an old protocol."""
    import tls_audit
    clean = [{"id": p, "severity": "OK", "finding": "not offered"}
             for p in tls_audit.OLD_PROTOCOLS + tls_audit.WEAK_CIPHER_LISTS]
    clean += [{"id": "TLS1_2", "severity": "OK", "finding": "offered"},
              {"id": "TLS1_3", "severity": "OK", "finding": "offered with final"}]
    assert tls_audit.judge(clean, "1.2") == []
    assert tls_audit.judge(clean, "1.3") == ["protocol TLS1_2 below the minimum 1.3: offered"]
    vuln = clean + [{"id": "heartbleed", "severity": "HIGH", "finding": "VULNERABLE"}]
    assert tls_audit.judge(vuln, "1.2") == ["heartbleed: VULNERABLE (HIGH)"]
    weak = [dict(f, finding="offered") if f["id"] == "TLS1" else f for f in clean]
    assert tls_audit.judge(weak, "1.2") == ["protocol TLS1 below the minimum 1.2: offered"]
