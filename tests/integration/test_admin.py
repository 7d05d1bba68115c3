"""The admin endpoint (rapi-server.conf(5) `admin`): /healthz and /metrics."""
import os
import re
import signal
import socket
import time

import pytest

from relay import RelayStartError, expect_error, wait_until

ADMIN_RE = re.compile(r"admin endpoint on ([0-9.]+):(\d+)")


def admin_addr(relay):
    m = ADMIN_RE.search(relay.stderr())
    assert m, relay.stderr()
    return m.group(1), int(m.group(2))


def get(addr, path, method="GET", headers=""):
    with socket.create_connection(addr, timeout=3) as s:
        s.sendall(("%s %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (method, path, headers)).encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    return status, body.decode()


def metrics(addr):
    status, body = get(addr, "/metrics")
    assert status == 200
    out = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_admin_off_by_default(start_relay):
    relay = start_relay()
    assert "admin endpoint" not in relay.stderr()


def test_healthz_metrics_and_404(start_relay):
    relay = start_relay(admin="127.0.0.1:0")
    addr = admin_addr(relay)
    assert get(addr, "/healthz") == (200, "ok\n")
    assert get(addr, "/nope")[0] == 404
    assert get(addr, "/metrics", method="POST")[0] == 405
    m = metrics(addr)
    assert m["rapi_links"] == 0 and m["rapi_listeners"] == 0
    # A link, a relayed payload, a 403 and a 502 show in the counters.
    lst = relay.register("/m/")
    ln = relay.link(lst)
    ln.client.send(b"x" * 1000)
    assert ln.server.recv_exact(1000) == b"x" * 1000
    ln.server.send(b"y" * 10)
    assert ln.client.recv_exact(10) == b"y" * 10
    c, _ = relay.client("/m/", key="wrong-key-wrong-key")
    expect_error(c, 403, "invalid_missing_apikey")
    relay.expect_502("/none/")

    def counted():
        m = metrics(addr)
        return (m["rapi_links"] == 1 and m["rapi_listeners"] == 1 and
                m['rapi_bytes_total{direction="client_to_server"}'] == 1000 and
                m['rapi_bytes_total{direction="server_to_client"}'] == 10)
    wait_until(counted, 3, what="metrics to show the link")
    m = metrics(addr)
    assert m["rapi_links_total"] == 1
    assert m['rapi_error_answers_total{status="403"}'] == 1
    assert m['rapi_error_answers_total{status="502"}'] == 1
    assert m["rapi_accepted_total"] >= 5
    assert m["rapi_connections"] >= 3
    ln.close()
    wait_until(lambda: metrics(addr)["rapi_links"] == 0, 3, what="link to close")
    # No key appears in the metrics.
    body = get(addr, "/metrics")[1]
    for k in relay.secrets():
        assert k not in body


def test_healthz_says_draining(start_relay):
    relay = start_relay(admin="127.0.0.1:0", drain_timeout=5)
    addr = admin_addr(relay)
    lst = relay.register("/d/")
    ln = relay.link(lst)
    relay.signal(signal.SIGTERM)
    # The link keeps the relay draining; health checks now fail.
    wait_until(lambda: get(addr, "/healthz")[0] == 503, 3, what="healthz 503")
    ln.client.send(b"still")
    assert ln.server.recv_exact(5) == b"still"
    ln.close()
    relay.wait_exit(10)


def test_admin_not_locked_out_by_flood(start_relay):
    # Issue 8 item 1: idle unauthenticated heads fill max_connections; the
    # admin endpoint still answers and rapi_connections leaves the scrape out.
    relay = start_relay(admin="127.0.0.1:0", max_connections=8, header_timeout=30)
    addr = admin_addr(relay)
    flood = [socket.create_connection(relay.addr, timeout=3) for _ in range(8)]
    try:
        wait_until(lambda: metrics(addr)["rapi_connections"] == 8, 3,
                   what="the flood to be counted")
        extra = socket.create_connection(relay.addr, timeout=3)
        assert extra.recv(4096).startswith(b"HTTP/1.1 503")
        extra.close()
        for _ in range(20):
            assert get(addr, "/healthz") == (200, "ok\n")
            m = metrics(addr)
            assert m["rapi_connections"] == 8
            assert m["rapi_admin_connections"] == 1
    finally:
        for s in flood:
            s.close()


def test_admin_has_its_own_limit(start_relay):
    relay = start_relay(admin="127.0.0.1:0", admin_max_connections=2, header_timeout=30)
    addr = admin_addr(relay)
    idle = [socket.create_connection(addr, timeout=3) for _ in range(2)]
    try:
        wait_until(lambda: _refused(addr), 3,
                   what="the third admin connection to be refused")
    finally:
        for s in idle:
            s.close()
    wait_until(lambda: _answers(addr), 3, what="admin to answer again")
    assert metrics(addr)["rapi_connections"] == 0


def _refused(addr):
    with socket.create_connection(addr, timeout=3) as s:
        return s.recv(4096).startswith(b"HTTP/1.1 503")


def _answers(addr):
    try:
        return get(addr, "/healthz")[0] == 200
    except OSError:
        return False


TOKEN = "adm1n-T0ken-for-the-test-0123456789"


def token_file(tmp_path, mode=0o600, text=TOKEN + "\n"):
    path = tmp_path / "admin.token"
    path.write_text(text)
    os.chmod(path, mode)
    return str(path)


def test_admin_off_loopback_needs_a_token(start_relay):
    # Refused at configuration time: nothing is bound to 0.0.0.0.
    with pytest.raises(RelayStartError) as ei:
        start_relay(admin="0.0.0.0:0")
    assert "admin_token_file" in ei.value.stderr, ei.value.stderr
    assert "admin endpoint on" not in ei.value.stderr


def test_admin_token_required(start_relay, tmp_path):
    relay = start_relay(admin="127.0.0.1:0", admin_token_file=token_file(tmp_path))
    addr = admin_addr(relay)
    with socket.create_connection(addr, timeout=3) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        head = s.recv(4096)
    assert head.startswith(b"HTTP/1.1 401") and b"WWW-Authenticate: Bearer" in head, head
    for bad in ("Authorization: Bearer wrong\r\n",
                "Authorization: Bearer %s\r\n" % TOKEN[:-1],
                "Authorization: Bearer %sx\r\n" % TOKEN,
                "Authorization: Basic %s\r\n" % TOKEN,
                "Authorization: Bearer %s\r\nAuthorization: Bearer %s\r\n" % (TOKEN, TOKEN)):
        for path in ("/healthz", "/metrics", "/", "/status.json", "/nope"):
            assert get(addr, path, headers=bad)[0] == 401, (bad, path)
    good = "Authorization: Bearer %s\r\n" % TOKEN
    assert get(addr, "/healthz", headers=good) == (200, "ok\n")
    assert get(addr, "/healthz", headers="authorization: bearer %s\r\n" % TOKEN)[0] == 200
    for path in ("/metrics", "/", "/status.json"):
        code, body = get(addr, path, headers=good)
        assert code == 200 and TOKEN not in body, path
    assert TOKEN not in relay.stderr()


@pytest.mark.parametrize("mode,text", [(0o640, TOKEN), (0o604, TOKEN), (0o600, "short\n"),
                                       (0o600, "two words in here, not a token\n")])
def test_admin_token_file_checked(start_relay, tmp_path, mode, text):
    path = token_file(tmp_path, mode, text)
    with pytest.raises(RelayStartError) as ei:
        start_relay(admin="127.0.0.1:0", admin_token_file=path)
    assert path in ei.value.stderr, ei.value.stderr
    assert text.strip() not in ei.value.stderr
