"""trusted_proxies (docs/PROTOCOL.md P-FWD-1..4): the client's address behind
a trusted front end, from a PROXY v1/v2 header on a listen socket marked
proxy_protocol or from X-Forwarded-For / Forwarded, and never from anyone
else.

The relay trusts 127.0.0.1 (and 10.0.0.0/8, for chains with trusted hops
inside); clients bind their source address: 127.0.0.2 is an untrusted peer
forging headers, 127.0.0.1 a trusted front end. The address the relay
settled on shows in the listener's notification (`ipaddr`, P-WS-1).
End to end: HAProxy (packaging/fleet/haproxy.cfg, send-proxy-v2) and nginx
(packaging/fleet/nginx.conf, X-Forwarded-For) in front of the relay, a
client bound to 127.0.0.3 through each; with HAProxy, `rapi expose
--proxy-protocol v2` hands 127.0.0.3 on to the local server.
"""

import os
import re
import signal
import socket
import struct
import threading
import time

import pytest

import fleet
from relay import (SLOW, Conn, build_request, expect_error, random_token, wait_until,
                   webroute_headers)
from sdk_helpers import Proc, build_dir
from test_admin import admin_addr, metrics

TRUSTED = "127.0.0.1"
UNTRUSTED = "127.0.0.2"
CLIENT = "127.0.0.3"
TRUST = "127.0.0.1/32, 10.0.0.0/8"
HEADER_TIMEOUT = 2

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def connect_from(relay, addr, src):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(5)
    s.bind((src, 0))
    s.connect(addr)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c = Conn(s, keys=relay.secrets())
    relay.conns.append(c)
    return c


def peer_of(c):
    return "%s:%d" % c.sock.getsockname()


def client_head(relay, path, headers=()):
    wrid = random_token()
    return build_request(path, webroute_headers(relay.client_key, wrid) + list(headers)), wrid


def ipaddr_seen(relay, listener, addr, src, headers=(), prefix=b"", chunks=1, pause=0.0):
    """A client from src sends prefix + its head (in chunks pieces, pause
    apart); the notification's ipaddr, and the client's Conn."""
    head, wrid = client_head(relay, listener.path, headers)
    c = connect_from(relay, addr, src)
    data = prefix + head
    step = max(1, -(-len(data) // chunks))
    for i in range(0, len(data), step):
        c.send(data[i:i + step])
        time.sleep(pause)
    raw, note = listener.notification()
    assert note["id"] == wrid, raw
    return note["ipaddr"], c


def v1(fam, src, sport, dst="127.0.0.1", dport=37791):
    return ("PROXY %s %s %s %d %d\r\n" % (fam, src, dst, sport, dport)).encode()


def v2(src=None, sport=0, dst="127.0.0.1", dport=37791, cmd=0x21, tlv=b""):
    if src is None:
        return V2_SIG + bytes([0x20, 0x00]) + struct.pack("!H", len(tlv)) + tlv
    if ":" in src:
        body = (socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
                + struct.pack("!HH", sport, dport))
        fam = 0x21
    else:
        body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
        fam = 0x11
    body += tlv
    return V2_SIG + bytes([cmd, fam]) + struct.pack("!H", len(body)) + body


def expect_closed(c, timeout=5.0):
    """The relay closes without answering anything."""
    deadline = time.monotonic() + timeout * SLOW
    got = b""
    while True:
        try:
            d = c.recv_some(max(0.01, deadline - time.monotonic()))
        except socket.timeout:
            raise AssertionError("still open after %.1fs (got %r)" % (timeout, got)) from None
        if not d:
            assert got == b"", "relay answered %r" % got[:200]
            return
        got += d


def proxy_relay(start_relay, **opts):
    """A plain listen socket (addrs[0]) and a proxy_protocol one (addrs[1])."""
    opts.setdefault("trusted_proxies", TRUST)
    opts.setdefault("header_timeout", HEADER_TIMEOUT)
    r = start_relay(listen=["127.0.0.1:0", "127.0.0.1:0 proxy_protocol"], admin="127.0.0.1:0",
                    **opts)
    assert len(r.addrs) == 2, r.addrs
    return r


def metric(relay, name):
    return metrics(admin_addr(relay)).get(name, 0)


# ------------------------------------------------------------ headers

@pytest.mark.all_modes
def test_untrusted_peer_forged_headers_ignored(start_relay):
    relay = start_relay(trusted_proxies=TRUST)
    lst = relay.register("/tp/untrusted/")
    for hdrs in ([("X-Forwarded-For", "203.0.113.7")],
                 [("Forwarded", "for=203.0.113.7")],
                 [("Forwarded", 'for="[2001:db8::1]:99"'), ("X-Forwarded-For", "10.0.0.1")],
                 [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-For", "127.0.0.1")]):
        ip, c = ipaddr_seen(relay, lst, relay.addr, UNTRUSTED, hdrs)
        assert ip == peer_of(c), (hdrs, ip)
        assert ip.startswith(UNTRUSTED + ":")


@pytest.mark.all_modes
def test_trusted_peer_rightmost_untrusted_hop(start_relay):
    relay = start_relay(trusted_proxies=TRUST)
    lst = relay.register("/tp/xff/")
    cases = [
        ([("X-Forwarded-For", "203.0.113.7")], "203.0.113.7:0"),
        ([("X-Forwarded-For", "6.6.6.6, 203.0.113.7")], "203.0.113.7:0"),
        ([("X-Forwarded-For", "6.6.6.6,203.0.113.7 , 10.1.2.3,10.9.9.9")], "203.0.113.7:0"),
        ([("X-Forwarded-For", "6.6.6.6"), ("x-forwarded-for", "203.0.113.8, 10.0.0.1")],
         "203.0.113.8:0"),
        ([("X-Forwarded-For", "203.0.113.9"), ("X-Forwarded-For", "10.0.0.1")], "203.0.113.9:0"),
        ([("X-Forwarded-For", "2001:db8::1")], "[2001:db8::1]:0"),
        ([("X-Forwarded-For", "[2001:db8::2]:4711, 10.0.0.2")], "[2001:db8::2]:4711"),
        ([("Forwarded", "for=192.0.2.60;proto=http;by=203.0.113.43")], "192.0.2.60:0"),
        ([("Forwarded", 'for="192.0.2.61:8080", for=10.0.0.5')], "192.0.2.61:8080"),
        ([("Forwarded", 'For="[2001:db8:cafe::17]:4711"')], "[2001:db8:cafe::17]:4711"),
        ([("Forwarded", "for=6.6.6.6"), ("Forwarded", "proto=https;for=192.0.2.62")],
         "192.0.2.62:0"),
        # X-Forwarded-For wins: a front end that appends to it passes a
        # client's own Forwarded through untouched.
        ([("Forwarded", "for=6.6.6.6"), ("X-Forwarded-For", "203.0.113.10")], "203.0.113.10:0"),
    ]
    for hdrs, want in cases:
        ip, _ = ipaddr_seen(relay, lst, relay.addr, TRUSTED, hdrs)
        assert ip == want, (hdrs, ip)
    garbage = [
        [("X-Forwarded-For", "not-an-address")],
        [("X-Forwarded-For", "203.0.113.7, junk")],
        [("X-Forwarded-For", "10.0.0.1, 10.0.0.2")],  # every hop trusted
        [("X-Forwarded-For", "203.0.113.7,")],
        [("X-Forwarded-For", "1.2.3.4:99999")],
        [("X-Forwarded-For", "[2001:db8::1")],
        [("X-Forwarded-For", "9" * 3000)],
        [("X-Forwarded-For", ",".join(["10.0.0.%d" % (i % 250) for i in range(400)]))],
        [("Forwarded", "for=unknown")],
        [("Forwarded", 'for="_hidden"')],
        [("Forwarded", 'for="[2001:db8::1]:80')],
        [("Forwarded", "proto=http")],
        [("Forwarded", "for=")],
        [("Forwarded", 'for=""')],
        [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "junk")],
        [("X-Forwarded-For", "junk"), ("Forwarded", "for=203.0.113.7")],
    ]
    for hdrs in garbage:
        ip, c = ipaddr_seen(relay, lst, relay.addr, TRUSTED, hdrs)
        assert ip == peer_of(c), (hdrs, ip)
    assert relay.alive()


def test_auth_limit_counts_the_real_client(start_relay):
    """Behind a trusted front end the failed-authentication limit is per
    client, so one guesser does not lock out everyone behind the proxy."""
    relay = start_relay(trusted_proxies=TRUST, auth_fail_burst=2)
    wrong = random_token(64)

    def send(xff, key):
        c = connect_from(relay, relay.addr, TRUSTED)
        hdrs = [("X-Forwarded-For", xff)] if xff else []
        c.send(build_request("/tp/auth/", webroute_headers(key, random_token()) + hdrs))
        return c
    for _ in range(2):
        expect_error(send("203.0.113.7", wrong), 403, "invalid_missing_apikey")
    expect_error(send("203.0.113.7", relay.client_key), 429, "too_many_auth_failures")
    # Other clients behind the same proxy, and the proxy itself, are not throttled.
    expect_error(send("203.0.113.8", wrong), 403, "invalid_missing_apikey")
    expect_error(send(None, relay.client_key), 502, "missing_destination")
    # An untrusted peer's forged header does not move its failures elsewhere.
    for _ in range(2):
        c = connect_from(relay, relay.addr, UNTRUSTED)
        c.send(build_request("/tp/auth/", webroute_headers(wrong, random_token())
                             + [("X-Forwarded-For", "203.0.113.50")]))
        expect_error(c, 403, "invalid_missing_apikey")
    expect_error(send("203.0.113.50", relay.client_key), 502, "missing_destination")


# ------------------------------------------------------------ PROXY protocol

@pytest.mark.all_modes
def test_proxy_header_gives_the_client(start_relay):
    relay = proxy_relay(start_relay)
    lst = relay.register("/tp/pp/")
    pp = relay.addrs[1]
    cases = [
        (v1("TCP4", "203.0.113.7", 51234), "203.0.113.7:51234"),
        (v1("TCP6", "2001:db8::5", 4242, dst="::1"), "[2001:db8::5]:4242"),
        (v2("203.0.113.8", 1000), "203.0.113.8:1000"),
        (v2("2001:db8::6", 65535, dst="::1"), "[2001:db8::6]:65535"),
        (v2("203.0.113.9", 7, tlv=b"\x04\x00\x03abc"), "203.0.113.9:7"),  # a TLV is skipped
    ]
    for prefix, want in cases:
        for chunks in (1, 7):
            ip, _ = ipaddr_seen(relay, lst, pp, TRUSTED, prefix=prefix, chunks=chunks,
                                pause=0.02 if chunks > 1 else 0)
            assert ip == want, (prefix, chunks, ip)
    # LOCAL (health checks) and v1 UNKNOWN: the front end speaks for itself.
    for prefix in (v2(None), b"PROXY UNKNOWN\r\n", b"PROXY UNKNOWN ffff::1 ::1 1 2\r\n"):
        ip, c = ipaddr_seen(relay, lst, pp, TRUSTED, prefix=prefix, chunks=3, pause=0.02)
        assert ip == peer_of(c), (prefix, ip)
    # The header's client is not trusted: its X-Forwarded-For is ignored.
    ip, _ = ipaddr_seen(relay, lst, pp, TRUSTED, [("X-Forwarded-For", "6.6.6.6")],
                        prefix=v1("TCP4", "203.0.113.7", 5))
    assert ip == "203.0.113.7:5"
    # A chain: the header names another trusted proxy, whose XFF counts.
    ip, _ = ipaddr_seen(relay, lst, pp, TRUSTED, [("X-Forwarded-For", "203.0.113.11")],
                        prefix=v2("10.1.1.1", 5))
    assert ip == "203.0.113.11:0"
    # The plain socket takes no PROXY header.
    c = connect_from(relay, relay.addrs[0], TRUSTED)
    c.send(v1("TCP4", "203.0.113.7", 5) + client_head(relay, lst.path)[0])
    expect_error(c, 400, "invalid_request")


@pytest.mark.all_modes
def test_proxy_socket_refuses_untrusted_and_bad_headers(start_relay):
    relay = proxy_relay(start_relay)
    lst = relay.register("/tp/ppbad/")
    pp = relay.addrs[1]
    head = client_head(relay, lst.path)[0]
    # An untrusted peer is closed, however good its header.
    for prefix in (v1("TCP4", "203.0.113.7", 5), v2("203.0.113.7", 5), b""):
        c = connect_from(relay, pp, UNTRUSTED)
        c.try_send(prefix + head)
        expect_closed(c)
    bad = [
        head,                                                   # no header at all
        b"PROXY TCP4 999.0.0.1 127.0.0.1 1 2\r\n" + head,       # not an address
        b"PROXY TCP4 203.0.113.7 127.0.0.1 1 2\n" + head,       # LF without CR
        b"PROXY TCP4 203.0.113.7 127.0.0.1 01 2\r\n" + head,    # leading zero
        b"PROXY TCP5 203.0.113.7 127.0.0.1 1 2\r\n" + head,
        b"PROXY " + b"A" * 200 + b"\r\n",                       # over the v1 limit
        V2_SIG + b"\x22\x11\x00\x0c" + b"\x00" * 12 + head,     # version 2, command 2
        V2_SIG + b"\x21\x11\x00\x04" + b"\x00" * 4 + head,      # address block too short
        V2_SIG + b"\x21\x11\x07\xd0",                           # 2000 bytes announced: too long
        b"\x16\x03\x01\x02\x00\x01",                            # a TLS ClientHello
    ]
    for data in bad:
        c = connect_from(relay, pp, TRUSTED)
        c.try_send(data)
        expect_closed(c)
    lst.expect_no_frame(0.2)
    m = metrics(admin_addr(relay))
    assert m['rapi_proxy_rejects_total{reason="untrusted"}'] == 3, m
    assert m['rapi_proxy_rejects_total{reason="bad_header"}'] == len(bad), m
    assert relay.alive()


@pytest.mark.all_modes
def test_slow_or_cut_proxy_header_closed(start_relay):
    relay = proxy_relay(start_relay)
    lst = relay.register("/tp/ppslow/")
    pp = relay.addrs[1]
    before = metric(relay, "rapi_header_timeouts_total")
    # Partial headers, then silence: closed at header_timeout, not before.
    conns = []
    for part in (v2("203.0.113.7", 5)[:20], b"PROXY TCP4 203.0.", V2_SIG[:5]):
        c = connect_from(relay, pp, TRUSTED)
        c.send(part)
        conns.append(c)
    t0 = time.monotonic()
    for c in conns:
        expect_closed(c, HEADER_TIMEOUT + 3)
    took = time.monotonic() - t0
    assert HEADER_TIMEOUT - 0.3 <= took <= (HEADER_TIMEOUT + 2) * SLOW, took
    wait_until(lambda: metric(relay, "rapi_header_timeouts_total") == before + 3, 3 * SLOW,
               what="three header timeouts counted")
    # A header complete, then a head trickling past the same deadline.
    c = connect_from(relay, pp, TRUSTED)
    c.send(v1("TCP4", "203.0.113.7", 5) + b"GET /tp/")
    expect_closed(c, HEADER_TIMEOUT + 3)
    # A partial header and a half-close: closed at once.
    c = connect_from(relay, pp, TRUSTED)
    c.send(b"PROXY TCP4 203")
    c.sock.shutdown(socket.SHUT_WR)
    t0 = time.monotonic()
    expect_closed(c, 1.5)
    assert time.monotonic() - t0 < 1.5 * SLOW
    lst.expect_no_frame(0.1)


# ------------------------------------------------------------ front ends

class _Backend:
    """What fleet.HAProxyFront / NginxFront need of a relay."""

    def __init__(self, addr, admin_port):
        self.addr, self.admin_port = "%s:%d" % addr, admin_port


def _local_pp_server():
    """A local TCP server for rapi expose: reads a PROXY v2 header, sends the
    source address it names and a newline. Returns (port, got list, stop)."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(8)
    ls.settimeout(0.2)
    got, stop = [], threading.Event()

    def serve():
        while not stop.is_set():
            try:
                s, _ = ls.accept()
            except socket.timeout:
                continue
            s.settimeout(5)
            try:
                hdr = b""
                while len(hdr) < 16:
                    hdr += s.recv(16 - len(hdr))
                body = b""
                while len(body) < struct.unpack("!H", hdr[14:16])[0]:
                    body += s.recv(struct.unpack("!H", hdr[14:16])[0] - len(body))
                if hdr[13] == 0x11:
                    src = "%s:%d" % (socket.inet_ntoa(body[:4]), struct.unpack("!H", body[8:10])[0])
                else:
                    a = socket.inet_ntop(socket.AF_INET6, body[:16])
                    src = "[%s]:%d" % (a, struct.unpack("!H", body[32:34])[0])
                got.append(src)
                s.sendall(src.encode() + b"\n")
            except OSError:
                pass
            finally:
                s.close()
        ls.close()
    threading.Thread(target=serve, daemon=True).start()
    return ls.getsockname()[1], got, stop


def _tunnel_from(front_addr, relay, path, src):
    """A WebRoute client bound to src through the front end: the Conn after 101."""
    c = connect_from(relay, front_addr, src)
    c.send(client_head(relay, path)[0])
    resp = c.read_head(5 * SLOW)
    assert resp.status == 101, resp
    return c


def _front_end_run(kind, start_relay, tmp_path):
    if not os.access(fleet.HAPROXY if kind == "haproxy" else fleet.NGINX, os.X_OK):
        pytest.fail("%s is not installed (make deps)" % kind)
    if kind == "haproxy":  # PROXY v2 from HAProxy on the proxy_protocol socket
        relay = proxy_relay(start_relay, trusted_proxies="127.0.0.1/32")
        target = relay.addrs[1]
    else:  # X-Forwarded-For from nginx on the plain socket
        relay = start_relay(trusted_proxies="127.0.0.1/32", admin="127.0.0.1:0")
        target = relay.addrs[0]
    admin_port = admin_addr(relay)[1]
    backends = [_Backend(target, admin_port) for _ in range(3)]
    port = fleet.common_free_port([fleet.FRONT_HOST])
    front = (fleet.HAProxyFront if kind == "haproxy" else fleet.NginxFront)(tmp_path, port)
    return relay, front, backends


@pytest.mark.parametrize("kind", ["haproxy", "nginx"])
def test_front_end_passes_the_client_address(start_relay, tmp_path, kind):
    relay, front, backends = _front_end_run(kind, start_relay, tmp_path)
    front.start(backends)
    try:
        lst = relay.register("/tp/front/%s/" % kind)  # directly, on the plain socket
        for src in (CLIENT, UNTRUSTED):
            head, wrid = client_head(relay, lst.path, [("X-Forwarded-For", "6.6.6.6"),
                                                       ("Forwarded", "for=6.6.6.7")])
            c = connect_from(relay, front.addr, src)
            c.send(head)
            raw, note = lst.notification(5 * SLOW)
            assert note["id"] == wrid, raw
            host, port = note["ipaddr"].rsplit(":", 1)
            assert host == src, (kind, note)
            # HAProxy's PROXY header carries the client's port; X-Forwarded-For has none.
            assert int(port) == (c.sock.getsockname()[1] if kind == "haproxy" else 0), note
            c.close()
        if kind == "haproxy":  # the health checks (plain GETs on the admin port) still pass
            assert front.servers_up() == 3
    finally:
        errs = front.stop()
    assert not errs, errs


def test_haproxy_to_rapi_expose_proxy_v2(start_relay, tmp_path):
    """HAProxy (send-proxy-v2) -> relay (proxy_protocol) -> rapi expose
    --proxy-protocol v2 -> local server: the server sees the client."""
    relay, front, backends = _front_end_run("haproxy", start_relay, tmp_path)
    front.start(backends)
    port, got, stop = _local_pp_server()
    env = dict(os.environ, RAPI_KEY_FILE=relay.key_file)
    env.pop("RAPI_KEY", None)
    path = "/tp/expose/"
    url = "rws://%s:%d%s" % (relay.addrs[0] + (path,))
    p = Proc([os.path.join(build_dir(), "rapi"), "expose", url, "--to", "127.0.0.1:%d" % port,
              "--proxy-protocol", "v2"], str(tmp_path), "expose", env=env)
    try:
        p.wait_log(r"registered %s at" % re.escape(path), timeout=10)
        c = _tunnel_from(front.addr, relay, path, CLIENT)
        line = c.read_until(b"\n", 5 * SLOW).decode().strip()
        assert line == "%s:%d" % (CLIENT, c.sock.getsockname()[1]), (line, got)
        c.close()
    finally:
        stop.set()
        rc = p.stop()
        errs = front.stop()
    assert rc in (0, None), p.stderr()[-2000:]
    assert not errs, errs


def test_reload_changes_trust(start_relay, tmp_path):
    """trusted_proxies takes effect on SIGHUP; a reload that would leave a
    proxy_protocol socket with nobody trusted is refused."""
    conf = tmp_path / "rapi-server.conf"
    conf.write_text("trusted_proxies 127.0.0.2\n")
    relay = start_relay(listen=["127.0.0.1:0", "127.0.0.1:0 proxy_protocol"],
                        config_file=str(conf))
    lst = relay.register("/tp/reload/")
    xff = [("X-Forwarded-For", "203.0.113.7")]
    ip, c = ipaddr_seen(relay, lst, relay.addrs[0], TRUSTED, xff)
    assert ip == peer_of(c), ip
    conf.write_text("trusted_proxies 127.0.0.1\n")
    relay.signal(signal.SIGHUP)
    wait_until(lambda: relay.stderr().count("reloaded configuration") == 1, 3 * SLOW,
               what="the reload")
    ip, _ = ipaddr_seen(relay, lst, relay.addrs[0], TRUSTED, xff)
    assert ip == "203.0.113.7:0"
    conf.write_text("# nobody trusted\n")
    relay.signal(signal.SIGHUP)
    wait_until(lambda: "has proxy_protocol but trusted_proxies is empty" in relay.stderr(),
               3 * SLOW, what="the refused reload")
    ip, _ = ipaddr_seen(relay, lst, relay.addrs[1], TRUSTED, prefix=v1("TCP4", "203.0.113.9", 9))
    assert ip == "203.0.113.9:9"
