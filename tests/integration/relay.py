"""Helpers for rapi integration tests: run rapi-server, speak its wire protocol.

Everything here is written from docs/PROTOCOL.md, not from the daemon's code, so the
tests built on it are a check of the contract.  Only the Python standard
library is used.  Every wait is bounded: each blocking call takes a timeout
(seconds) and fails the test (AssertionError) instead of hanging.

Main pieces (all importable by other test modules, e.g. the SDK tests):

  Relay         a running rapi-server: start, connect, register listeners,
                link clients, signal, stop, fd counts, stderr checks.
  Conn          a TCP connection with a read buffer and bounded reads
                (read_head, read_response, recv_exact, expect_eof, ...).
  WSConn        the listener side of the relay's WebSocket (RFC 6455 client:
                masked frames out, unmasked frames in).
  Link          a linked client/server pair (two Conn) after the dial-back.
  pump()        move data over many connections at once (selector loop).
  build_request(), listener_headers(), webroute_headers(): request heads
                built byte by byte, so a test controls every byte it sends.
  assert_error(), expect_error(), assert_wr_101(), assert_ws_101(): the exact
                answers docs/PROTOCOL.md prescribes.
"""

import base64
import hashlib
import json
import os
import re
import secrets
import selectors
import signal
import socket
import string
import struct
import subprocess
import time

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WR_GUID = "BE7204BD-47E6-49EE-9B0D-016E370644B2"

# Markers that a sanitizer reported something; any of them fails the test.
SAN_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer")

# Under ASan+UBSan everything is slower: scale the upper bounds of load tests.
SLOW = 3.0 if os.environ.get("RAPI_SAN") else 1.0

DEFAULT_TIMEOUT = 5.0
START_TIMEOUT = 5.0

OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA

ALNUM = string.ascii_letters + string.digits


# ---------------------------------------------------------------- small utils

def random_token(n=64):
    """n random characters of [A-Za-z0-9] (keys and WebRoute-IDs look so)."""
    return "".join(secrets.choice(ALNUM) for _ in range(n))


def new_ws_key():
    """A fresh Sec-WebSocket-Key: base64 of 16 random bytes."""
    return base64.b64encode(os.urandom(16)).decode()


def ws_accept(key):
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 4.2.2)."""
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def wr_accept(wrid):
    """Sec-WebRoute-Accept for a WebRoute-ID (docs/PROTOCOL.md, dial-back)."""
    return base64.b64encode(hashlib.sha1((wrid + WR_GUID).encode()).digest()).decode()


def wait_until(pred, timeout, interval=0.02, what="condition"):
    """Poll pred() until it returns a true value (returned) or fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def write_key_file(path, server_key=None, client_key=None, mode=0o600):
    """Write a key file (`server_key K` / `client_key K` lines) with mode.
    Returns (server_key, client_key)."""
    server_key = server_key or random_token()
    client_key = client_key or random_token()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("# rapi test keys\nserver_key %s\nclient_key %s\n" % (server_key, client_key))
    os.chmod(path, mode)
    return server_key, client_key


# ---------------------------------------------------------------- requests

def build_request(target, headers, method="GET", version="HTTP/1.1", line_end=b"\r\n"):
    """A request head: request line, `Name: value` lines, blank line.
    headers is a list of (name, value) pairs sent in that order and case;
    a bare string item is sent as a raw line (for malformed-header tests)."""
    out = [("%s %s %s" % (method, target, version)).encode()]
    for h in headers:
        if isinstance(h, (str, bytes)):
            out.append(h.encode() if isinstance(h, str) else h)
        else:
            out.append(("%s: %s" % h).encode())
    return line_end.join(out) + line_end + line_end


def listener_headers(key, ws_key=None, host="relay.example:37791"):
    """Headers of a listener registration, as in docs/PROTOCOL.md section 1."""
    return [
        ("Host", host),
        ("Connection", "keep-alive, Upgrade"),
        ("X-Remoted-APIKey", key),
        ("Sec-WebSocket-Key", ws_key or new_ws_key()),
        ("Sec-WebSocket-Version", "13"),
        ("Upgrade", "websocket"),
    ]


def webroute_headers(key, wrid, timeout=None, host="relay.example:37791"):
    """Headers of a client arrival or a dial-back (docs/PROTOCOL.md sections 2, 3).
    timeout=None leaves WebRoute-Timeout out; any other value is sent as is."""
    h = [
        ("Host", host),
        ("Connection", "keep-alive, Upgrade"),
        ("X-Remoted-APIKey", key),
        ("WebRoute-Version", "1"),
        ("WebRoute-ID", wrid),
    ]
    if timeout is not None:
        h.append(("WebRoute-Timeout", str(timeout)))
    h.append(("Upgrade", "webroute"))
    return h


def replace_header(headers, name, value):
    """Copy of headers with name's value replaced (value None: removed)."""
    out = []
    for h in headers:
        if not isinstance(h, (str, bytes)) and h[0].lower() == name.lower():
            if value is not None:
                out.append((h[0], value))
        else:
            out.append(h)
    return out


# ---------------------------------------------------------------- responses

class Response:
    """A parsed HTTP response head (+ body when read with read_response)."""

    def __init__(self, head, body=b""):
        self.head = head
        self.body = body
        lines = head[:-4].split(b"\r\n") if head.endswith(b"\r\n\r\n") else head.split(b"\n")
        m = re.match(rb"^HTTP/1\.1 (\d{3})(?: (.*))?$", lines[0])
        assert m, "bad status line %r in %r" % (lines[0], head)
        self.status = int(m.group(1))
        self.reason = (m.group(2) or b"").decode("latin-1")
        self.headers = []
        for ln in lines[1:]:
            name, sep, value = ln.partition(b":")
            assert sep, "response header without colon: %r in %r" % (ln, head)
            self.headers.append((name.decode("latin-1"), value.strip().decode("latin-1")))

    def header(self, name):
        """First value of header name (case-insensitive), or None."""
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None

    def header_count(self, name):
        return sum(1 for n, _ in self.headers if n.lower() == name.lower())

    def __repr__(self):
        return "Response(%r + %r)" % (self.head, self.body[:200])


ERROR_BODY_RE = re.compile(
    rb'^\{"success":false,"error":"((?:[^"\\\x00-\x1f]|\\.)+)","errorcode":"([a-z_]+)"\}$')


def assert_error(resp, status, errorcode, extra_header=None):
    """Check an error answer exactly as docs/PROTOCOL.md prescribes."""
    assert resp.status == status, "expected %d %s, got %r" % (status, errorcode, resp)
    assert resp.header("Content-Type") == "application/json", resp
    assert resp.header("Cache-Control") == "no-cache", resp
    assert resp.header("Connection") == "close", resp
    assert resp.header_count("Content-Length") == 1, resp
    assert resp.header("Content-Length") == str(len(resp.body)), resp
    m = ERROR_BODY_RE.match(resp.body)
    assert m, "error body not in the original's form: %r" % resp.body
    assert m.group(2).decode() == errorcode, "expected errorcode %s, got %r" % (errorcode, resp.body)
    doc = json.loads(resp.body)
    assert list(doc) == ["success", "error", "errorcode"] and doc["success"] is False
    assert doc["error"].strip(), "empty human text in %r" % resp.body
    if extra_header is not None:
        name, _, value = extra_header.partition(":")
        assert resp.header(name) == value.strip(), "expected header %r in %r" % (extra_header, resp)


def expect_error(conn, status, errorcode, extra_header=None, timeout=DEFAULT_TIMEOUT):
    """Read an error answer on conn, check it, then check that the relay closes."""
    resp = conn.read_response(timeout)
    assert_error(resp, status, errorcode, extra_header)
    conn.expect_eof(timeout)
    return resp


def wr_101_bytes(wrid):
    """The dial-back answer both sides get, byte for byte (docs/PROTOCOL.md 3)."""
    return ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: webroute\r\nConnection: Upgrade\r\n"
            "Sec-WebRoute-Accept: %s\r\n\r\n" % wr_accept(wrid)).encode()


def assert_wr_101(resp, wrid):
    assert resp.head == wr_101_bytes(wrid), "expected WebRoute 101 for %r, got %r" % (wrid, resp)


def assert_ws_101(resp, key):
    """RFC 6455 4.2.2 server handshake for Sec-WebSocket-Key key."""
    assert resp.status == 101, "expected 101, got %r" % resp
    assert resp.reason == "Switching Protocols", resp
    assert (resp.header("Upgrade") or "").lower() == "websocket", resp
    assert "upgrade" in [t.strip().lower() for t in (resp.header("Connection") or "").split(",")], resp
    assert resp.header("Sec-WebSocket-Accept") == ws_accept(key), resp


# ---------------------------------------------------------------- connections

class Conn:
    """A TCP connection with a read buffer; every read is time-bounded.

    keys: secrets that must never appear in anything the relay sends in an
    HTTP head or error body (checked by read_head/read_response)."""

    def __init__(self, sock, keys=()):
        self.sock = sock
        self.buf = bytearray()
        self.keys = tuple(k.encode() for k in keys if k)
        self.eof = False
        self.reset = False

    @classmethod
    def connect(cls, addr, timeout=DEFAULT_TIMEOUT, keys=()):
        family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(addr)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(s, keys)

    # -- low level
    def fileno(self):
        return self.sock.fileno()

    def local_addr(self):
        """`addr:port` as the relay sees us ([addr]:port for IPv6)."""
        a = self.sock.getsockname()
        return ("[%s]:%d" % (a[0], a[1])) if self.sock.family == socket.AF_INET6 else "%s:%d" % a

    def send(self, data):
        self.sock.settimeout(DEFAULT_TIMEOUT)
        self.sock.sendall(data)

    def try_send(self, data):
        """Send; False when the peer is gone (EPIPE/ECONNRESET)."""
        try:
            self.send(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def _fill(self, deadline):
        """Read more into buf. False on EOF/reset; raises on timeout."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout()
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(262144)
        except ConnectionResetError:
            self.eof = self.reset = True
            return False
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def recv_some(self, timeout=DEFAULT_TIMEOUT):
        """Whatever is buffered or arrives next; b"" at EOF. Raises socket.timeout."""
        if not self.buf:
            self._fill(time.monotonic() + timeout)
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def recv_exact(self, n, timeout=DEFAULT_TIMEOUT):
        deadline = time.monotonic() + timeout
        try:
            while len(self.buf) < n:
                if not self._fill(deadline):
                    raise AssertionError("EOF after %d of %d bytes" % (len(self.buf), n))
        except socket.timeout:
            raise AssertionError("timed out after %d of %d bytes" % (len(self.buf), n)) from None
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_until(self, delim, timeout=DEFAULT_TIMEOUT, limit=1 << 20):
        deadline = time.monotonic() + timeout
        try:
            while delim not in self.buf:
                assert len(self.buf) <= limit, "no %r in %d bytes" % (delim, len(self.buf))
                if not self._fill(deadline):
                    raise AssertionError("EOF before %r; got %r" % (delim, bytes(self.buf[:300])))
        except socket.timeout:
            raise AssertionError("timed out waiting for %r; got %r"
                                 % (delim, bytes(self.buf[:300]))) from None
        i = self.buf.index(delim) + len(delim)
        out = bytes(self.buf[:i])
        del self.buf[:i]
        return out

    def _check_keys(self, data):
        for k in self.keys:
            assert k not in data, "a relay key appears in what the relay sent: %r" % data[:300]

    def read_head(self, timeout=DEFAULT_TIMEOUT):
        """Read one response head (up to CRLFCRLF); bytes past it stay buffered."""
        head = self.read_until(b"\r\n\r\n", timeout, limit=65536)
        self._check_keys(head)
        return Response(head)

    def read_response(self, timeout=DEFAULT_TIMEOUT):
        """Read a head and its Content-Length body."""
        resp = self.read_head(timeout)
        n = resp.header("Content-Length")
        if n is not None:
            resp.body = self.recv_exact(int(n), timeout)
            self._check_keys(resp.body)
        return resp

    def expect_eof(self, timeout=DEFAULT_TIMEOUT, allow_data=False):
        """Wait for EOF (FIN or reset) within timeout. Unless allow_data, any
        byte before it fails. Returns the bytes read before EOF."""
        deadline = time.monotonic() + timeout
        got = bytearray()
        try:
            while self._fill(deadline):
                got += self.buf
                self.buf.clear()
                assert allow_data, "expected EOF, got data %r" % bytes(got[:300])
        except socket.timeout:
            raise AssertionError("connection not closed within %.1fs (got %d bytes)"
                                 % (timeout, len(got))) from None
        got += self.buf
        self.buf.clear()
        return bytes(got)

    def expect_silence(self, duration):
        """Nothing arrives and the connection stays open for duration seconds."""
        deadline = time.monotonic() + duration
        try:
            alive = self._fill(deadline)
        except socket.timeout:
            return
        assert not alive, "unexpected data %r" % bytes(self.buf[:300])
        raise AssertionError("connection closed unexpectedly")

    def read_to_eof(self, timeout=DEFAULT_TIMEOUT):
        return self.expect_eof(timeout, allow_data=True)

    def shutdown_wr(self):
        self.sock.shutdown(socket.SHUT_WR)

    def set_linger0(self):
        """Make close() send a RST."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# ---------------------------------------------------------------- WebSocket

class Frame:
    def __init__(self, fin, rsv, opcode, masked, payload):
        self.fin, self.rsv, self.opcode, self.masked, self.payload = fin, rsv, opcode, masked, payload

    @property
    def close_code(self):
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None

    def __repr__(self):
        return "Frame(fin=%d op=%#x len=%d %r)" % (self.fin, self.opcode, len(self.payload),
                                                  self.payload[:80])


def encode_frame(opcode, payload=b"", fin=True, mask=True, rsv=0, length=None):
    """One frame as a client sends it (masked unless mask=False). length
    overrides the length field (to announce more than is sent)."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    mbit = 0x80 if mask else 0
    if n < 126:
        hdr = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return hdr + payload
    key = os.urandom(4)
    return hdr + key + bytes(b ^ key[i & 3] for i, b in enumerate(payload))


class WSConn:
    """The listener end of the relay's WebSocket, speaking raw RFC 6455."""

    def __init__(self, conn, path):
        self.conn = conn
        self.path = path
        self.pings = []  # payloads of pings received (and answered) so far

    def send_frame(self, opcode, payload=b"", **kw):
        self.conn.send(encode_frame(opcode, payload, **kw))

    def recv_frame(self, timeout=DEFAULT_TIMEOUT):
        """Next frame, or None at EOF. Frames from the relay must be unmasked."""
        c = self.conn
        deadline = time.monotonic() + timeout

        def need(n):
            while len(c.buf) < n:
                try:
                    if not c._fill(deadline):
                        return False
                except socket.timeout:
                    raise AssertionError("no WebSocket frame within %.1fs" % timeout) from None
            return True

        if not need(2):
            assert not c.buf, "EOF inside a frame header: %r" % bytes(c.buf)
            return None
        b0, b1 = c.buf[0], c.buf[1]
        n = b1 & 0x7F
        hl = 2 + {126: 2, 127: 8}.get(n, 0) + (4 if b1 & 0x80 else 0)
        assert need(hl), "EOF inside a frame header"
        if n == 126:
            n = struct.unpack("!H", c.buf[2:4])[0]
        elif n == 127:
            n = struct.unpack("!Q", c.buf[2:10])[0]
        assert need(hl + n), "EOF inside a frame payload"
        payload = bytes(c.buf[hl:hl + n])
        masked = bool(b1 & 0x80)
        if masked:
            key = c.buf[hl - 4:hl]
            payload = bytes(b ^ key[i & 3] for i, b in enumerate(payload))
        del c.buf[:hl + n]
        f = Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, masked, payload)
        assert not f.masked, "relay sent a masked frame (RFC 6455 5.1): %r" % f
        assert f.rsv == 0, "relay set RSV bits: %r" % f
        return f

    def next_frame(self, timeout=DEFAULT_TIMEOUT, answer_pings=True):
        """Next frame other than ping (pings are recorded, and answered with a
        pong unless answer_pings is False). None at EOF."""
        deadline = time.monotonic() + timeout
        while True:
            f = self.recv_frame(max(0.001, deadline - time.monotonic()))
            if f is None or f.opcode != OP_PING:
                return f
            self.pings.append(f.payload)
            if answer_pings:
                self.send_frame(OP_PONG, f.payload)

    def notification(self, timeout=DEFAULT_TIMEOUT):
        """Next notification: (raw payload bytes, decoded dict)."""
        f = self.next_frame(timeout)
        assert f is not None, "listener closed while waiting for a notification"
        assert f.opcode == OP_TEXT and f.fin, "expected a notification text frame, got %r" % f
        return f.payload, json.loads(f.payload)

    def expect_no_frame(self, duration):
        """No frame (except pings, answered) for duration seconds, still open."""
        deadline = time.monotonic() + duration
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                f = self.next_frame(remaining)
            except AssertionError as e:
                if "no WebSocket frame" in str(e):
                    return
                raise
            assert f is not None, "listener connection closed unexpectedly"
            raise AssertionError("unexpected frame %r" % f)

    def expect_close(self, code=None, timeout=DEFAULT_TIMEOUT, reply=True):
        """Expect a close frame (with code, unless None; skipping pings), then
        EOF. With reply, answer the close frame first. Returns the frame."""
        f = self.next_frame(timeout, answer_pings=False)
        assert f is not None, "connection closed without a close frame"
        assert f.opcode == OP_CLOSE, "expected a close frame, got %r" % f
        if code is not None:
            assert f.close_code == code, "expected close code %d, got %r" % (code, f)
        if reply:
            self.conn.try_send(encode_frame(OP_CLOSE, f.payload[:2]))
        rest = self.conn.expect_eof(timeout, allow_data=True)
        assert not rest, "data after close frame: %r" % rest[:100]
        return f

    def expect_closed(self, timeout=DEFAULT_TIMEOUT, code=None):
        """Expect the relay to end the connection: frames other than pings and
        one close frame are a failure; if a close frame comes and code is
        given, it must carry code. Returns the close frame or None."""
        deadline = time.monotonic() + timeout
        close = None
        while True:
            f = self.next_frame(max(0.001, deadline - time.monotonic()), answer_pings=False)
            if f is None:
                return close
            assert f.opcode == OP_CLOSE and close is None, "unexpected frame %r" % f
            close = f
            if code is not None:
                assert f.close_code == code, "expected close code %d, got %r" % (code, f)
            self.conn.try_send(encode_frame(OP_CLOSE, f.payload[:2]))

    def close(self):
        self.conn.close()


class Link:
    """A linked pair: client and server Conn, the WebRoute-ID and path."""

    def __init__(self, client, server, wrid, path):
        self.client, self.server, self.wrid, self.path = client, server, wrid, path

    def close(self):
        self.client.close()
        self.server.close()


# ---------------------------------------------------------------- data pumping

def pump(flows, timeout):
    """Move data over many connections at once, with one selector.

    flows: list of (conn, data_to_send, n_expected, shut_wr). Sends data_to_send
    (then shutdown(SHUT_WR) if shut_wr) while reading until n_expected bytes
    arrived (None: until EOF). Returns the list of received bytes, in order.
    Fails the test if it takes longer than timeout."""
    sel = selectors.DefaultSelector()
    state = []
    for i, (conn, out, n, shut) in enumerate(flows):
        st = {"conn": conn, "out": memoryview(out), "n": n, "shut": shut, "in": bytearray(conn.buf),
              "rdone": False, "wdone": False}
        conn.buf.clear()
        conn.sock.setblocking(False)
        state.append(st)
    for st in state:
        _pump_update(sel, st)
    deadline = time.monotonic() + timeout
    try:
        while any(not (st["rdone"] and st["wdone"]) for st in state):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("pump timed out: %s" % "; ".join(
                    "#%d got %d/%s sent %d left" % (i, len(st["in"]), st["n"], len(st["out"]))
                    for i, st in enumerate(state) if not (st["rdone"] and st["wdone"]))[:2000])
            for key, ev in sel.select(min(remaining, 1.0)):
                st = key.data
                s = st["conn"].sock
                if ev & selectors.EVENT_READ and not st["rdone"]:
                    try:
                        data = s.recv(262144)
                    except (BlockingIOError, InterruptedError):
                        data = None
                    except ConnectionResetError:
                        st["conn"].reset = True
                        data = b""
                    if data == b"":
                        st["conn"].eof = True
                        assert st["n"] is None or len(st["in"]) >= st["n"], \
                            "EOF after %d of %d bytes" % (len(st["in"]), st["n"])
                        st["rdone"] = True
                    elif data:
                        st["in"] += data
                        if st["n"] is not None and len(st["in"]) >= st["n"]:
                            st["rdone"] = True
                if ev & selectors.EVENT_WRITE and not st["wdone"]:
                    try:
                        k = s.send(st["out"][:262144])
                        st["out"] = st["out"][k:]
                    except (BlockingIOError, InterruptedError):
                        pass
                    if not len(st["out"]):
                        if st["shut"]:
                            s.shutdown(socket.SHUT_WR)
                        st["wdone"] = True
                _pump_update(sel, st)
    finally:
        sel.close()
        for st in state:
            st["conn"].sock.setblocking(True)
    out = []
    for st in state:
        data = bytes(st["in"])
        if st["n"] is not None and len(data) > st["n"]:
            st["conn"].buf += data[st["n"]:]
            data = data[:st["n"]]
        out.append(data)
    return out


def _pump_update(sel, st):
    if len(st["out"]) == 0 and not st["wdone"]:
        if st["shut"]:
            st["conn"].sock.shutdown(socket.SHUT_WR)
        st["wdone"] = True
    if st["n"] is not None and len(st["in"]) >= st["n"]:
        st["rdone"] = True
    ev = (0 if st["rdone"] else selectors.EVENT_READ) | (0 if st["wdone"] else selectors.EVENT_WRITE)
    try:
        sel.unregister(st["conn"].sock)
    except KeyError:
        pass
    if ev:
        sel.register(st["conn"].sock, ev, st)


def sha(data):
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- the daemon

class RelayStartError(Exception):
    def __init__(self, msg, returncode, stderr):
        super().__init__(msg)
        self.returncode = returncode
        self.stderr = stderr


LISTEN_RE = re.compile(r"listening on (\[[0-9a-fA-F:.]+\]|[0-9.]+):(\d+)")


def fd_targets(pid):
    """readlink of every /proc/pid/fd entry (entries that vanish are skipped)."""
    out = []
    d = "/proc/%d/fd" % pid
    for name in os.listdir(d):
        try:
            out.append(os.readlink(os.path.join(d, name)))
        except OSError:
            pass
    return out


def fd_counts(pid):
    """{'total', 'socket', 'pipe', 'io_uring', 'eventpoll'} fd counts of pid."""
    t = fd_targets(pid)
    return {
        "total": len(t),
        "socket": sum(1 for x in t if x.startswith("socket:")),
        "pipe": sum(1 for x in t if x.startswith("pipe:")),
        "io_uring": sum(1 for x in t if "io_uring" in x),
        "eventpoll": sum(1 for x in t if "eventpoll" in x),
    }


class Relay:
    """One rapi-server process on loopback, started by a test.

    binary: path to rapi-server; workdir: a private directory (key file,
    stderr log, config). options: dict of `-o keyword=value` overrides.
    listen: list of -l addresses (port 0: the daemon picks, and logs it).
    cli_flags=False: pass only -c (and extra_args): listen, keys, io and the
    options must then come from the config file (key_file names the keys).
    The real addresses are in .addrs (list of (host, port)); .addr is the
    first IPv4 one, .addr6 the first IPv6 one (or None).

    Keys: written to workdir/keys (mode 0600) unless key_file is given;
    .server_key / .client_key hold them."""

    def __init__(self, binary, workdir, backend=None, options=None, listen=("127.0.0.1:0",),
                 workers=2, key_file=None, config_file=None, extra_args=(), cli_flags=True):
        self.binary = binary
        self.workdir = str(workdir)
        self.backend = backend
        self.options = dict(options or {})
        self.listen = list(listen)
        self.workers = workers
        self.config_file = config_file
        self.extra_args = list(extra_args)
        self.cli_flags = cli_flags
        os.makedirs(self.workdir, exist_ok=True)
        if key_file is None:
            key_file = os.path.join(self.workdir, "keys")
            self.server_key, self.client_key = write_key_file(key_file)
        else:
            self.server_key, self.client_key = read_key_file(key_file)
        self.key_file = key_file
        self.stderr_path = os.path.join(self.workdir, "stderr-%d.log" % id(self))
        self.proc = None
        self.addrs = []
        self.conns = []
        self.baseline = None
        self.returncode = None
        self.old_keys = []  # keys replaced by set_keys(): must not leak either
        self.stop_grace = 10 * SLOW  # finish(): wait past drain_timeout for the exit

    # -- process
    def argv(self):
        a = [self.binary]
        if self.config_file:
            a += ["-c", self.config_file]
        if not self.cli_flags:  # everything from the config file
            return a + self.extra_args
        for addr in self.listen:
            a += ["-l", addr]
        a += ["-k", self.key_file]
        if self.workers is not None:
            a += ["-w", str(self.workers)]
        if self.backend:
            a += ["-o", "io=%s" % self.backend]
        for k, v in self.options.items():
            a += ["-o", "%s=%s" % (k, v)]
        return a + self.extra_args

    def start(self, timeout=START_TIMEOUT):
        """Start and wait for one `listening on` line per listen address.
        Raises RelayStartError (with returncode and stderr) if it exits."""
        self.err_file = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                     stdout=self.err_file, stderr=self.err_file)
        want = len(self.listen) if self.cli_flags else 1
        deadline = time.monotonic() + timeout
        while True:
            text = self.stderr()
            self.addrs = [(h.strip("[]"), int(p)) for h, p in LISTEN_RE.findall(text)]
            if len(self.addrs) >= want:
                break
            rc = self.proc.poll()
            if rc is not None:
                self.returncode = rc
                raise RelayStartError("rapi-server exited with %d before listening:\n%s"
                                      % (rc, text), rc, text)
            if time.monotonic() > deadline:
                self.kill()
                raise RelayStartError("rapi-server did not log `listening on` within %.0fs:\n%s"
                                      % (timeout, text), None, text)
            time.sleep(0.01)
        v4 = [a for a in self.addrs if ":" not in a[0]]
        v6 = [a for a in self.addrs if ":" in a[0]]
        self.addr = v4[0] if v4 else None
        self.addr6 = v6[0] if v6 else None
        self.baseline = self.stable_fd_counts()
        return self

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stderr(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout):
        """Wait for the process to exit; its return code (negative: signal).
        Fails (after SIGKILL) if it is still running after timeout."""
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("rapi-server (pid %d) still running after %.1fs"
                                 % (self.proc.pid, timeout)) from None
        return self.returncode

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def fd_counts(self):
        return fd_counts(self.proc.pid)

    def stable_fd_counts(self, settle=0.05, tries=40):
        """fd counts once two readings settle apart agree."""
        prev = self.fd_counts()
        for _ in range(tries):
            time.sleep(settle)
            cur = self.fd_counts()
            if cur == prev:
                return cur
            prev = cur
        return prev

    def set_keys(self, server_key=None, client_key=None):
        """Rewrite the key file in place with new keys (mode 0600); the old
        keys are remembered for the leak check. Returns the new keys."""
        self.old_keys += [self.server_key, self.client_key]
        self.server_key, self.client_key = write_key_file(self.key_file, server_key, client_key)
        return self.server_key, self.client_key

    def secrets(self):
        return [self.server_key, self.client_key] + self.old_keys

    # -- connections
    def connect(self, v6=False, timeout=DEFAULT_TIMEOUT):
        """A new tracked TCP connection to the relay (closed by close_all)."""
        addr = self.addr6 if v6 else self.addr
        assert addr, "relay has no %s listen address" % ("IPv6" if v6 else "IPv4")
        c = Conn.connect(addr, timeout, keys=self.secrets())
        self.conns.append(c)
        return c

    def request(self, data, v6=False):
        """Connect and send data (typically a request head). Returns the Conn."""
        c = self.connect(v6)
        c.send(data)
        return c

    def register(self, path, key=None, v6=False, headers=None):
        """Register a listener on path (target may carry a query) and check the
        101. Returns a WSConn."""
        ws_key = new_ws_key()
        h = headers or listener_headers(key or self.server_key, ws_key)
        if headers:
            ws_key = dict((n.lower(), v) for n, v in headers)["sec-websocket-key"]
        c = self.request(build_request(path, h), v6)
        assert_ws_101(c.read_head(), ws_key)
        return WSConn(c, path)

    def client(self, path, wrid=None, timeout=None, extra=b"", v6=False, key=None):
        """Send a client arrival (no answer read). Returns (Conn, wrid)."""
        wrid = wrid or random_token()
        c = self.request(build_request(path, webroute_headers(key or self.client_key, wrid,
                                                              timeout)) + extra, v6)
        return c, wrid

    def dialback(self, path, wrid, timeout=None, extra=b"", key=None):
        """Send a dial-back (no answer read). Returns the Conn."""
        return self.request(build_request(path, webroute_headers(key or self.server_key, wrid,
                                                                 timeout)) + extra)

    def notification_bytes(self, conn, wrid, timeout=60):
        """The exact notification payload expected for client conn."""
        return ('{"ipaddr":"%s","id":"%s","timeout":%d}'
                % (conn.local_addr(), wrid, timeout)).encode()

    def link(self, listener, path=None, wrid=None, client_timeout=None, server_timeout=None,
             client_extra=b"", server_extra=b"", notify_timeout=None, v6=False):
        """Full link: client arrives, listener gets the notification (checked
        byte-exact when notify_timeout is given, else checked for id and
        ipaddr), the server dials back, both get the WebRoute 101."""
        path = path or listener.path
        client, wrid = self.client(path, wrid, client_timeout, client_extra, v6)
        raw, note = listener.notification()
        if notify_timeout is not None:
            assert raw == self.notification_bytes(client, wrid, notify_timeout), raw
        else:
            assert note["id"] == wrid and note["ipaddr"] == client.local_addr(), raw
        server = self.dialback(path, wrid, server_timeout, server_extra)
        assert_wr_101(server.read_head(), wrid)
        assert_wr_101(client.read_head(), wrid)
        return Link(client, server, wrid, path)

    def expect_502(self, path):
        """A client on path gets 502 missing_destination (no listener)."""
        c, _ = self.client(path)
        expect_error(c, 502, "missing_destination")

    def close_all(self):
        for c in self.conns:
            c.close()
        self.conns = []

    # -- end of test
    def check_stderr(self):
        """Problems in stderr: sanitizer reports, keys. List of strings."""
        text = self.stderr()
        errs = []
        for m in SAN_MARKERS:
            if m in text:
                errs.append("sanitizer report (%r) in rapi-server stderr:\n%s" % (m, text[-6000:]))
                break
        for k in self.secrets():
            if k and k in text:
                errs.append("a key appears in rapi-server's stderr")
                break
        return errs

    def finish(self, fd_check=True):
        """End of a test: close the test's connections, check that the relay's
        sockets return to the start-up baseline, stop with SIGTERM, require
        exit status 0 and a clean stderr. Returns a list of problems."""
        errs = []
        self.close_all()
        if self.proc is None:
            return errs
        if self.alive() and fd_check and self.baseline is not None:
            base = self.baseline["socket"]
            try:
                wait_until(lambda: self.fd_counts()["socket"] == base, 3.0 * SLOW,
                           what="relay sockets back to baseline")
            except AssertionError:
                errs.append("fd leak: relay holds %d sockets after the test, %d at start"
                            % (self.fd_counts()["socket"], base))
            except (FileNotFoundError, ProcessLookupError):
                pass
        if self.alive():
            self.signal(signal.SIGTERM)
            limit = float(self.options.get("drain_timeout", 30)) + self.stop_grace
            try:
                self.proc.wait(limit)
            except subprocess.TimeoutExpired:
                errs.append("rapi-server did not exit within %.0fs of SIGTERM" % limit)
                self.kill()
        self.returncode = self.proc.returncode
        if self.returncode != 0:
            errs.append("rapi-server exited with %r (want 0); stderr tail:\n%s"
                        % (self.returncode, self.stderr()[-4000:]))
        errs += self.check_stderr()
        self.err_file.close()
        return errs


def read_key_file(path):
    """(server_key, client_key) from a key file."""
    keys = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2 and parts[0] in ("server_key", "client_key"):
                keys[parts[0]] = parts[1]
    return keys.get("server_key"), keys.get("client_key")


def run_cli(binary, args, timeout=10):
    """Run rapi-server with args to completion: (returncode, stdout+stderr)."""
    p = subprocess.run([binary] + list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def ipv6_loopback_available():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False

