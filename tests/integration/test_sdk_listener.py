"""librapi's listener lifecycle: path taken and taken over, a silent relay
dropped by our keepalive, a relay's close frame answered and followed by a
reconnect. The relay side is the real rapi-server where it can be, and a raw
RFC 6455 stub (written here, from the RFC) where a misbehaving relay is
needed."""

import base64
import hashlib
import socket
import struct
import threading
import time

from relay import SLOW, WS_GUID
from sdk_helpers import origin, sdk  # noqa: F401

PROBE = r'''
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <rapi.h>

static void say(void *arg, int level, const char *msg)
{
    (void)arg;
    fprintf(stderr, "log %d %s\n", level, msg);
}

int main(int argc, char **argv)
{
    struct rapi_listen_opts o = {.flags = RAPI_LISTEN_NOWAIT, .backoff_min_ms = 50,
                                 .backoff_max_ms = 200, .log = say};
    struct rapi_listener *l;
    struct rapi_error e;
    struct rapi_peer p;
    int fd;

    if (argc != 3)
        return 2;
    o.keepalive_s = atoi(argv[2]);
    if (rapi_listen(&l, argv[1], getenv("RAPI_KEY"), &o, &e) < 0) {
        fprintf(stderr, "listen: %s\n", e.message);
        return 1;
    }
    for (;;) {
        fd = rapi_accept(l, &p, 200);
        if (fd >= 0) {
            fprintf(stderr, "accepted %s\n", p.addr);
            close(fd);
        } else if (fd != -EAGAIN) {
            break;
        }
    }
    rapi_listener_close(l);
    return 0;
}
'''


def test_path_in_use_then_taken_over(sdk, origin):
    _, eport = origin.start("echo")
    first = sdk.expose("/one", "127.0.0.1:%d" % eport)
    second = sdk.expose("/one", "127.0.0.1:%d" % eport, wait=False)
    second.wait_log(r"409 path_in_use.*retrying in \d+ ms", count=2)
    first.stop()
    t0 = time.monotonic()
    second.wait_log(r"registered /one", timeout=5)
    assert time.monotonic() - t0 < 4 * SLOW
    r = sdk.run(["connect", sdk.url("rwr", "/one")], input=b"second listener")
    assert r.stdout == b"second listener", r.stderr


class RawRelay:
    """Accepts WebSocket upgrades and then misbehaves as told:
    'silent' (never sends a byte after the 101) or 'close' (sends a close
    frame at once). Records each connection's arrival time and frames."""

    def __init__(self, mode):
        self.mode = mode
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.conns = []  # (arrival time, [frames as (opcode, masked, payload)])
        self.stop = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        frames = []
        self.conns.append((time.monotonic(), frames))
        c.settimeout(10)
        head = b""
        while b"\r\n\r\n" not in head:
            d = c.recv(4096)
            if not d:
                return
            head += d
        key = [ln.split(b":", 1)[1].strip() for ln in head.split(b"\r\n")
               if ln.lower().startswith(b"sec-websocket-key:")][0]
        acc = base64.b64encode(hashlib.sha1(key + WS_GUID.encode()).digest())
        c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + acc + b"\r\n\r\n")
        if self.mode == "close":
            c.sendall(b"\x88\x02" + struct.pack("!H", 1001))
        buf = b""
        try:
            while True:
                d = c.recv(4096)
                if not d:
                    break
                buf += d
                while len(buf) >= 2:
                    n = buf[1] & 0x7F
                    masked = bool(buf[1] & 0x80)
                    hl = 2 + (4 if masked else 0)
                    if n > 125 or len(buf) < hl + n:
                        break
                    p = buf[hl:hl + n]
                    if masked:
                        p = bytes(b ^ buf[2 + (i & 3)] for i, b in enumerate(p))
                    frames.append((buf[0] & 0x0F, masked, p))
                    buf = buf[hl + n:]
        except (socket.timeout, ConnectionResetError):
            pass
        c.close()

    def close(self):
        self.stop = True
        self.t.join(5)
        self.sock.close()


def probe(sdk, port, keepalive):
    exe = sdk.cc(PROBE, "listener_probe")
    p = sdk.start([exe, "rws://127.0.0.1:%d/p" % port, str(keepalive)], "probe",
                  env=sdk.env(RAPI_KEY="probe-key-0123456789", RAPI_KEY_FILE=None))
    sdk.expected_exit[p.pid] = (-15,)  # runs until stopped
    return p


def test_silent_relay_is_dropped_and_reconnected(sdk):
    stub = RawRelay("silent")
    try:
        p = probe(sdk, stub.port, 1)
        p.wait_log(r"registered /p")
        p.wait_log(r"relay silent for too long", timeout=8)
        p.wait_log(r"registered /p", count=2, timeout=5)
        (t1, frames), (t2, _) = stub.conns[0], stub.conns[1]
        # Keepalive 1 s: pings every second, and after 3 silent seconds a
        # new connection.
        assert 2.5 <= t2 - t1 <= 6 * SLOW, t2 - t1
        pings = [f for f in frames if f[0] == 0x9]
        assert len(pings) >= 2, frames
        assert all(masked for _, masked, _ in frames), "unmasked frame from a client: %r" % frames
    finally:
        stub.close()


def test_relay_close_frame_answered_then_reconnect(sdk):
    stub = RawRelay("close")
    try:
        p = probe(sdk, stub.port, 30)
        p.wait_log(r"relay closed the WebSocket")
        wait = time.monotonic() + 5
        while len(stub.conns) < 2 and time.monotonic() < wait:
            time.sleep(0.05)
        assert len(stub.conns) >= 2, "no reconnect after the relay's close frame"
        t1, frames = stub.conns[0]
        assert stub.conns[1][0] - t1 < 1.0 * SLOW
        closes = [f for f in frames if f[0] == 0x8]
        assert closes and closes[0][1], "no masked close frame in answer: %r" % frames
        assert struct.unpack("!H", closes[0][2][:2])[0] == 1000
        # A relay that keeps dropping us right away sees the delay grow.
        p.wait_log(r"relay closed the WebSocket; retrying in (1[0-9][0-9]|200) ms", timeout=5)
    finally:
        stub.close()
