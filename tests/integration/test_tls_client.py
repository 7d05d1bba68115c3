"""TLS on the client side (issue 9): librapi, `rapi expose rwss://`, `rapi
connect rwrs://` and `rapi-bench --tls` through nginx terminating TLS in front
of a plain rapi-server, with packaging/nginx/rapi-tls.conf (the documented
example) templated only for its listen port, upstream and certificate paths.

Certificates come from tlscerts.py (openssl CLI, private CA). Each
certificate failure (CA not given, expired, wrong name) must fail with
RAPI_E_TLS and its reason, for connect and for expose.

nginx runs unprivileged with its own prefix, pid and temp directories on a
free 127.0.0.1 port; only that process is stopped, by PID.
"""

import hashlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

from relay import SLOW, wait_until
from sdk_helpers import (PYTHON, REPO, build_dir, manpage_examples, origin, read_all,  # noqa: F401
                         sdk)
from test_bench_smoke import free_port
from tlscerts import make_certs

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
NGINX_CONF = os.path.join(REPO, "packaging", "nginx", "rapi-tls.conf")
# The example values in rapi-tls.conf that the test replaces (and nothing else).
EX_LISTEN = "listen 443 ssl;"
EX_UPSTREAM = "server 127.0.0.1:37791;"
EX_CERT = "/etc/ssl/rapi/fullchain.pem"
EX_KEY = "/etc/ssl/rapi/privkey.pem"

pytestmark = pytest.mark.skipif(not os.access(NGINX, os.X_OK), reason="nginx not installed")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


class Nginx:
    """nginx with rapi-tls.conf in front of relay, serving cert/key."""

    def __init__(self, workdir, relay, cert, key):
        self.dir = os.path.join(str(workdir), "nginx-%d" % time.monotonic_ns())
        os.makedirs(os.path.join(self.dir, "logs"))
        self.port = free_port()
        with open(NGINX_CONF) as f:
            text = f.read()
        subs = [(EX_LISTEN, "listen 127.0.0.1:%d ssl;" % self.port),
                (EX_UPSTREAM, "server %s:%d;" % relay.addr), (EX_CERT, cert), (EX_KEY, key)]
        for old, new in subs:
            assert text.count(old) == 1, "%s no longer holds %r once" % (NGINX_CONF, old)
            text = text.replace(old, new)
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(text)
        self.err = open(os.path.join(self.dir, "stderr"), "wb")
        self.proc = subprocess.Popen(
            [NGINX, "-p", self.dir + "/", "-c", conf, "-e", "stderr",
             "-g", "daemon off; pid %s/nginx.pid;" % self.dir],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.err)
        wait_until(self._up, 10 * SLOW, what="nginx listening")

    def _up(self):
        assert self.proc.poll() is None, "nginx exited:\n%s" % self.stderr()
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def stderr(self):
        with open(os.path.join(self.dir, "stderr"), "rb") as f:
            return f.read().decode("utf-8", "replace")

    def url(self, scheme, path, host="localhost"):
        return "%s://%s:%d%s" % (scheme, host, self.port, path)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # our own nginx master, by PID
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.err.close()


@pytest.fixture
def nginx(relay, tmp_path, certs):
    """Factory: nginx(cert=..., key=...) -> Nginx (server.pem by default)."""
    started = []

    def start(cert=None, key=None):
        n = Nginx(tmp_path, relay, cert or certs.server, key or certs.server_key)
        started.append(n)
        return n
    yield start
    for n in started:
        n.stop()


def echo_roundtrip(port, data, timeout):
    """Send data to 127.0.0.1:port while reading the echo; returns it."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    got = bytearray()

    def reader():
        while len(got) < len(data):
            d = s.recv(1 << 16)
            if not d:
                break
            got.extend(d)
    t = threading.Thread(target=reader)
    t.start()
    s.sendall(data)
    t.join(timeout)
    s.close()
    return bytes(got)


# ------------------------------------------------------------ through nginx

def test_cli_expose_and_connect_through_nginx(sdk, origin, nginx, certs):
    """rapi expose rwss:// (CA from RAPI_CA_FILE) and rapi connect rwrs://
    (--ca) through nginx: several MiB byte-exact both ways, concurrently."""
    ng = nginx()
    _, eport = origin.start("echo")
    exp = sdk.spawn(["expose", ng.url("rwss", "/tls-echo"), "--to", "127.0.0.1:%d" % eport],
                    "expose", env=sdk.env(RAPI_CA_FILE=certs.ca))
    exp.wait_log(r"registered /tls-echo", timeout=10)
    con, lport = sdk.connect_listen("/tls-echo", extra=["--ca", certs.ca],
                                    url=ng.url("rwrs", "/tls-echo"))
    data = os.urandom(6 << 20)
    got = echo_roundtrip(lport, data, 30 * SLOW)
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()
    # Several tunnels at once, each its own TLS session (dial-backs resumed).
    results = [None] * 4

    def one(i):
        results[i] = echo_roundtrip(lport, data[: 1 << 20], 30 * SLOW)
    ts = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60 * SLOW)
    assert all(r == data[: 1 << 20] for r in results)
    exp.wait_log(r"client 127\.0\.0\.1:\d+ -> ", count=5)


def test_download_ends_with_the_origin(sdk, origin, nginx, certs):
    """The origin's end of stream reaches the client after every byte
    (the relay side's EOF crosses the pump as a half-close)."""
    ng = nginx()
    total = 5 << 20
    _, sport = origin.start("source", str(total))
    sdk.spawn(["expose", ng.url("rwss", "/tls-src"), "--to", "127.0.0.1:%d" % sport,
               "--ca", certs.ca], "expose").wait_log(r"registered /tls-src", timeout=10)
    _, lport = sdk.connect_listen("/tls-src", extra=["--ca", certs.ca],
                                  url=ng.url("rwrs", "/tls-src"))
    s = socket.create_connection(("127.0.0.1", lport), timeout=10)
    got = read_all(s, 30 * SLOW)
    s.close()
    assert len(got) == total
    from sdk_helpers import stream_sha256
    assert hashlib.sha256(got).hexdigest() == stream_sha256(total)


def test_connect_stdio_through_nginx(sdk, origin, nginx, certs):
    """stdio mode (ssh ProxyCommand style) over rwrs://."""
    ng = nginx()
    _, eport = origin.start("echo")
    sdk.spawn(["expose", ng.url("rwss", "/tls-stdio"), "--to", "127.0.0.1:%d" % eport,
               "--ca", certs.ca], "expose").wait_log(r"registered /tls-stdio", timeout=10)
    data = os.urandom(1 << 20)
    # stdin stays open until the whole echo is back: nginx 1.22 ends an
    # upgraded connection at the first end of stream (packaging/fleet/README.md).
    p = subprocess.Popen([sdk.bin, "connect", ng.url("rwrs", "/tls-stdio"), "--ca", certs.ca],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=sdk.env())
    t = threading.Thread(target=p.stdin.write, args=(data,))
    t.start()
    got = bytearray()
    while len(got) < len(data):
        d = p.stdout.read1(1 << 16)
        if not d:
            break
        got.extend(d)
    t.join(10)
    p.stdin.close()
    p.wait(20 * SLOW)
    err = p.stderr.read().decode()
    p.stdout.close()
    p.stderr.close()
    assert bytes(got) == data, err
    assert p.returncode == 0, err


def test_expose_pumps_the_tls_socket_itself(sdk, origin, nginx, certs):
    """rapi expose keeps the relay's TCP socket (no local socketpair hop):
    its PROXY v2 header names the TLS front it dialled back to."""
    ng = nginx()
    _, pport = origin.start("proxy")
    sdk.spawn(["expose", ng.url("rwss", "/tls-pp"), "--to", "127.0.0.1:%d" % pport,
               "--proxy-protocol", "v2", "--ca", certs.ca],
              "expose").wait_log(r"registered /tls-pp", timeout=10)
    _, lport = sdk.connect_listen("/tls-pp", extra=["--ca", certs.ca],
                                  url=ng.url("rwrs", "/tls-pp"))
    s = socket.create_connection(("127.0.0.1", lport), timeout=10 * SLOW)
    line = b""
    while not line.endswith(b"\n"):
        d = s.recv(1)
        assert d, "no PROXY header echoed"
        line += d
    hdr = bytes.fromhex(line.strip().decode())
    assert hdr[12:14] == b"\x21\x11"  # PROXY, TCP over IPv4
    assert hdr[16 + 4:16 + 8] == socket.inet_aton("127.0.0.1")
    assert struct.unpack("!H", hdr[16 + 10:16 + 12])[0] == ng.port
    s.sendall(b"after the header")
    assert read_exact(s, 16) == b"after the header"
    s.close()


def read_exact(s, n):
    got = b""
    while len(got) < n:
        d = s.recv(n - len(got))
        if not d:
            break
        got += d
    return got


# A librapi client that does not half-close (nginx 1.22 ends an upgraded
# connection at the first end of stream): sends argv[2] in chunks, reading
# each chunk's echo back before the next, then closes.
PINGPONG_CLIENT = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <rapi.h>

int main(int argc, char **argv)
{
    struct rapi_connect_opts opts = {.timeout_ms = 10000};
    struct rapi_error err;
    const char *msg = argv[2];
    size_t len = strlen(msg), off = 0, chunk = 1000, got, n;
    char buf[1000];
    ssize_t r;
    int fd;

    if (argc != 3)
        return 2;
    fd = rapi_connect(argv[1], getenv("RAPI_KEY"), &opts, NULL, 0, &err);
    if (fd < 0) {
        fprintf(stderr, "connect: %s (%s)\n", err.message, rapi_code_name(err.code));
        return 1;
    }
    while (off < len) {
        n = len - off < chunk ? len - off : chunk;
        if (write(fd, msg + off, n) != (ssize_t)n)
            return 3;
        for (got = 0; got < n; got += (size_t)r)
            if ((r = read(fd, buf + got, n - got)) <= 0)
                return 4;
        fwrite(buf, 1, n, stdout);
        off += n;
    }
    close(fd);
    return 0;
}
"""


def test_librapi_over_tls(sdk, nginx, certs, relay):
    """librapi itself over rwss/rwrs with RAPI_CA_FILE: the librapi(3) example
    server, unchanged, and a client; rapi_accept/rapi_connect hand out plain
    descriptors (the pump behind them)."""
    ex = manpage_examples(os.path.join(REPO, "man", "librapi.3"))
    server, client = sdk.cc(ex["server"], "example_server"), sdk.cc(PINGPONG_CLIENT, "pingpong")
    ng = nginx()
    env_s = sdk.env(RAPI_KEY=relay.server_key, RAPI_KEY_FILE=None, RAPI_CA_FILE=certs.ca)
    env_c = sdk.env(RAPI_KEY=relay.client_key, RAPI_KEY_FILE=None, RAPI_CA_FILE=certs.ca)
    srv = sdk.start([server, ng.url("rwss", "/example")], "example-server", env=env_s)
    sdk.expected_exit[srv.pid] = (-15,)
    srv.wait_log("registered", timeout=10)
    for msg in ("hello over TLS", "y" * 100000):
        r = subprocess.run([client, ng.url("rwrs", "/example"), msg], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30 * SLOW, env=env_c)
        assert r.returncode == 0, r.stderr
        assert r.stdout == msg.encode()
    srv.wait_log(r"client 127\.0\.0\.1:\d+", count=2)
    # Without the CA: the system store does not know it.
    env_c.pop("RAPI_CA_FILE")
    r = subprocess.run([client, ng.url("rwrs", "/example"), "x"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30 * SLOW, env=env_c)
    assert r.returncode == 1
    assert b"RAPI_E_TLS" in r.stderr and b"trusted CA" in r.stderr, r.stderr


# ------------------------------------------------------------ failures

FAILURES = [
    # (nginx cert, give the CA?, URL host, words in the message, tls_err name)
    ("server", False, "localhost", "not signed by a trusted CA", "unknown_ca"),
    ("expired", True, "localhost", "expired", "expired"),
    ("wrong", True, "localhost", "does not match the host name", "name_mismatch"),
    ("other", True, "127.0.0.1", "does not match the host name", "name_mismatch"),
    ("future", True, "localhost", "not valid yet", "not_yet_valid"),
]


@pytest.mark.parametrize("which,give_ca,host,words,name", FAILURES,
                         ids=["unknown_ca", "expired", "wrong_name", "wrong_ip", "not_yet_valid"])
def test_certificate_failures_are_named(sdk, nginx, certs, which, give_ca, host, words, name):
    ng = nginx(getattr(certs, which), getattr(certs, which + "_key"))
    ca = ["--ca", certs.ca] if give_ca else []
    # The system store is the default: make sure no RAPI_CA_FILE leaks in.
    env = sdk.env(RAPI_CA_FILE=None)
    r = sdk.run(["connect", ng.url("rwrs", "/fail", host)] + ca, env=env, timeout=20)
    err = r.stderr.decode()
    assert r.returncode == 1, err
    assert "RAPI_E_TLS" in err and words in err and "[%s]" % name in err, err
    exp = sdk.spawn(["expose", ng.url("rwss", "/fail", host), "--to", "127.0.0.1:1"] + ca,
                    "expose", env=env)
    m = exp.wait_log(r"relay .*: TLS with .*; retrying in \d+ ms", timeout=10)
    assert words in m.group(0) and "RAPI_E_TLS" in m.group(0) and name in m.group(0)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_verified_names_reach_the_relay(sdk, nginx, certs, host):
    """A DNS name and an IP address in the certificate both verify: the
    relay's own answer (502, no listener) comes back through TLS."""
    ng = nginx()
    r = sdk.run(["connect", ng.url("rwrs", "/nobody", host), "--ca", certs.ca])
    assert r.returncode == 1
    assert b"RAPI_E_NO_LISTENER" in r.stderr, r.stderr


def test_bad_ca_file_is_refused_before_any_connection(sdk, tmp_path):
    r = sdk.run(["connect", "rwrs://localhost:1/x", "--ca", str(tmp_path / "nothing.pem")])
    assert r.returncode == 2 and b"RAPI_E_TLS" in r.stderr and b"nothing.pem" in r.stderr
    r = sdk.run(["expose", "rwss://localhost:1/x", "--to", "127.0.0.1:1",
                 "--ca", str(tmp_path / "nothing.pem")])
    assert r.returncode == 2 and b"RAPI_E_TLS" in r.stderr and b"nothing.pem" in r.stderr


# ------------------------------------------------------------ rapi-bench

BENCH_MODES = [
    ("setup", ["-c", "4"], "tunnels_per_s"),
    ("throughput", ["-c", "2", "--direction", "both"], "gbit_s"),
    ("latency", ["-c", "2"], "round_trips_per_s"),
    ("hold", ["-c", "20"], "tunnels"),
]


@pytest.mark.parametrize("mode,args,metric", BENCH_MODES, ids=[m[0] for m in BENCH_MODES])
def test_bench_tls_through_nginx(nginx, certs, relay, mode, args, metric):
    """rapi-bench --tls --ca, every relay mode, through nginx: runs, counts
    something, and a bad CA fails the run with the reason."""
    ng = nginx()
    binary = os.path.join(build_dir(), "rapi-bench")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAPI_")}
    argv = [binary, mode, "--relay", "127.0.0.1:%d" % ng.port, "--tls", "--ca", certs.ca,
            "--server-key-file", relay.key_file, "--client-key-file", relay.key_file,
            "--threads", "1", "-d", "0.6", "--json"] + args
    if mode != "hold":
        argv += ["--warmup", "0.2"]
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                       timeout=60 * SLOW, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    import json
    doc = json.loads(r.stdout)
    m = doc["targets"][0]["median"]
    assert m[metric] > 0, m
    if mode == "setup":  # a wrong CA: the run fails with the reason
        bad = [a if a != certs.ca else certs.otherca for a in argv]
        r = subprocess.run(bad, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                           timeout=60 * SLOW, text=True)
        assert r.returncode != 0
        assert "trusted CA" in r.stdout + r.stderr, r.stderr[-2000:]


# ------------------------------------------------ rapi-server's TLS listener

@pytest.fixture
def tls_relay_sdk(start_relay, certs, tmp_path):
    """(Sdk, relay): a rapi-server listening with TLS only (server.pem)."""
    from sdk_helpers import Sdk
    relay = start_relay(listen=("127.0.0.1:0 tls",), tls_cert=certs.server,
                        tls_key=certs.server_key)
    s = Sdk(relay, tmp_path)
    yield s, relay
    errs = s.finish()
    if errs:
        pytest.fail("\n".join(errs), pytrace=False)


def own_url(relay, scheme, path, host="localhost"):
    return "%s://%s:%d%s" % (scheme, host, relay.addrs[0][1], path)


def test_own_listener_half_close_both_ways(tls_relay_sdk, origin, certs):
    """Against rapi-server's TLS listener (no nginx in between) a client's
    half-close crosses both TLS hops: the echo comes back whole, then EOF."""
    sdk, relay = tls_relay_sdk
    _, eport = origin.start("echo")
    sdk.spawn(["expose", own_url(relay, "rwss", "/hc"), "--to", "127.0.0.1:%d" % eport,
               "--ca", certs.ca], "expose").wait_log(r"registered /hc", timeout=10)
    _, lport = sdk.connect_listen("/hc", extra=["--ca", certs.ca],
                                  url=own_url(relay, "rwrs", "/hc"))
    data = os.urandom(3 << 20)
    s = socket.create_connection(("127.0.0.1", lport), timeout=10 * SLOW)
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    got = read_all(s, 30 * SLOW)
    s.close()
    assert got == data
    # stdio mode: stdin's end is a half-close too
    r = sdk.run(["connect", own_url(relay, "rwrs", "/hc"), "--ca", certs.ca], input=data[:100000])
    assert r.returncode == 0, r.stderr
    assert r.stdout == data[:100000]


def test_own_listener_reset_crosses_tls(tls_relay_sdk, certs):
    """A local server's reset behind rapi expose reaches the client behind
    rapi connect as a reset through two TLS sessions."""
    from test_sdk_cli import ResettingBackend
    sdk, relay = tls_relay_sdk
    backend = ResettingBackend()
    sdk.spawn(["expose", own_url(relay, "rwss", "/rst"), "--to", "127.0.0.1:%d" % backend.port,
               "--ca", certs.ca], "expose").wait_log(r"registered /rst", timeout=10)
    _, lport = sdk.connect_listen("/rst", extra=["--ca", certs.ca],
                                  url=own_url(relay, "rwrs", "/rst"))
    backend.expect_reset_at(lport)


def test_own_listener_librapi_examples(tls_relay_sdk, certs):
    """The librapi(3) examples, unchanged (the client half-closes), over
    rwss/rwrs to rapi-server's TLS listener with RAPI_CA_FILE."""
    sdk, relay = tls_relay_sdk
    ex = manpage_examples(os.path.join(REPO, "man", "librapi.3"))
    server, client = sdk.cc(ex["server"], "example_server"), sdk.cc(ex["client"], "example_client")
    env_s = sdk.env(RAPI_KEY=relay.server_key, RAPI_KEY_FILE=None, RAPI_CA_FILE=certs.ca)
    env_c = sdk.env(RAPI_KEY=relay.client_key, RAPI_KEY_FILE=None, RAPI_CA_FILE=certs.ca)
    srv = sdk.start([server, own_url(relay, "rwss", "/example")], "example-server", env=env_s)
    sdk.expected_exit[srv.pid] = (-15,)
    srv.wait_log("registered", timeout=10)
    for msg in ("hello", "z" * 100000):
        r = subprocess.run([client, own_url(relay, "rwrs", "/example"), msg],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30 * SLOW,
                           env=env_c)
        assert r.returncode == 0, r.stderr
        assert r.stdout == msg.encode()
    srv.wait_log(r"client 127\.0\.0\.1:\d+", count=2)


def test_own_listener_dialbacks_resume(start_relay, certs, tmp_path, origin):
    """rapi expose resumes its TLS session on dial-backs, and rapi connect
    --listen on every tunnel after its first: the relay's /metrics counts
    resumed handshakes."""
    import re
    import urllib.request
    from sdk_helpers import Sdk
    relay = start_relay(listen=("127.0.0.1:0 tls",), tls_cert=certs.server,
                        tls_key=certs.server_key, admin="127.0.0.1:0")
    m = wait_until(lambda: re.search(r"admin endpoint on 127\.0\.0\.1:(\d+)", relay.stderr()),
                   3.0, what="admin endpoint")
    sdk = Sdk(relay, tmp_path)
    try:
        _, eport = origin.start("echo")
        sdk.spawn(["expose", own_url(relay, "rwss", "/res"), "--to", "127.0.0.1:%d" % eport,
                   "--ca", certs.ca], "expose").wait_log(r"registered /res", timeout=10)
        for i in range(3):
            r = sdk.run(["connect", own_url(relay, "rwrs", "/res"), "--ca", certs.ca],
                        input=b"x%d" % i)
            assert r.returncode == 0 and r.stdout == b"x%d" % i, r.stderr
        url = "http://127.0.0.1:%s/metrics" % m.group(1)

        def resumed():
            with urllib.request.urlopen(url, timeout=5) as f:
                text = f.read().decode()
            return int(re.search(r"^rapi_tls_resumed_total (\d+)$", text, re.M).group(1))
        # 3 dial-backs after the registration: each resumes (the clients,
        # one process each, cannot)
        before = resumed()
        assert before >= 3, before
        # one rapi connect --listen, 3 tunnels: the 2nd and 3rd resume too
        _, lport = sdk.connect_listen("/res", extra=["--ca", certs.ca],
                                      url=own_url(relay, "rwrs", "/res"))
        for i in range(3):
            s = socket.create_connection(("127.0.0.1", lport), timeout=10 * SLOW)
            s.sendall(b"y%d" % i)
            assert read_exact(s, 2) == b"y%d" % i
            s.close()
        # 3 more dial-backs + 2 client tunnels
        wait_until(lambda: resumed() >= before + 5, 5 * SLOW, what="resumed handshakes")
    finally:
        errs = sdk.finish()
    assert not errs, errs
