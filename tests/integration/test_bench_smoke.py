"""Smoke test of rapi-bench: every mode runs for about a second against a relay
started here (both backends) and against --direct, exits 0, and its --json
parses with sane non-zero counts. No timing assertion: the figures themselves
are bench/run's business.

Environment: RAPI_BUILD = absolute build dir holding rapi-server and
rapi-bench; RAPI_SAN=1 in the ASan+UBSan pass.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import time

import pytest

from relay import SLOW, Conn

DURATION = "0.6"
WARMUP = "0.2"
RUN_LIMIT = 60 * SLOW  # wall-clock cap of one rapi-bench run


@pytest.fixture(scope="module")
def rapi_bench():
    build = os.environ.get("RAPI_BUILD") or os.path.join(
        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "build")
    path = os.path.join(build, "rapi-bench")
    if not os.access(path, os.X_OK):
        pytest.fail("no rapi-bench binary at %s (build it, or set RAPI_BUILD)" % path)
    return path


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def bench(binary, relay, mode, *args, env_keys=False):
    """Run rapi-bench against `relay` and --direct; return the parsed JSON."""
    host, port = relay.addrs[0]
    argv = [binary, mode, "--relay", "%s:%d" % (host, port), "--label", "relay",
            "--pid", str(relay.proc.pid), "--direct", "--threads", "2",
            "-d", DURATION, "--json"]
    if mode != "hold":
        argv += ["--warmup", WARMUP]
    env = dict(os.environ)
    env.pop("RAPI_SERVER_KEY", None)
    env.pop("RAPI_CLIENT_KEY", None)
    env.pop("RAPI_KEY_FILE", None)
    if env_keys:
        env["RAPI_SERVER_KEY"] = relay.server_key
        env["RAPI_CLIENT_KEY"] = relay.client_key
    else:
        # one relay key file with both lines serves both flags
        argv += ["--server-key-file", str(relay.key_file),
                 "--client-key-file", str(relay.key_file)]
    r = subprocess.run(argv + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=env, timeout=RUN_LIMIT, text=True)
    for key in (relay.server_key, relay.client_key):
        assert key not in r.stdout and key not in r.stderr, "rapi-bench printed a key"
    assert r.returncode == 0, "rapi-bench %s exited %d:\n%s" % (mode, r.returncode,
                                                                 r.stderr[-3000:])
    doc = json.loads(r.stdout)
    assert doc["tool"] == "rapi-bench" and doc["mode"] == mode
    labels = [t["label"] for t in doc["targets"]]
    assert labels[:2] == ["direct", "relay"], labels
    for t in doc["targets"]:
        assert len(t["rounds"]) == doc["params"]["rounds"]
        assert not any(rd["failed"] for rd in t["rounds"]), t
        assert t["error"] is None or mode == "setup", t["error"]
    return doc


def target(doc, label):
    return next(t for t in doc["targets"] if t["label"] == label)


def test_setup(rapi_bench, relay):
    doc = bench(rapi_bench, relay, "setup", "-c", "8")
    for label in ("direct", "relay"):
        m = target(doc, label)["median"]
        assert m["tunnels_per_s"] > 0, m
        assert 0 < m["lat_p50_us"] <= m["lat_p99_us"] <= m["lat_max_us"], m
        assert m["bench_cpu_pct"] > 0
    relay_m = target(doc, "relay")["median"]
    assert relay_m["target_cpu_us_per_tunnel"] > 0, relay_m
    assert target(doc, "relay")["ratio_direct"]["tunnels_per_s"] > 0


def test_throughput_both_directions(rapi_bench, relay):
    doc = bench(rapi_bench, relay, "throughput", "-c", "2", "--direction", "both",
                env_keys=True)
    for label in ("direct", "relay"):
        m = target(doc, label)["median"]
        assert m["up_gbit_s"] > 0 and m["down_gbit_s"] > 0, m
        assert m["gbit_s"] > 0 and m["lost"] == 0 and m["errors"] == 0, m


def test_latency_flat_out_and_at_a_rate(rapi_bench, relay):
    doc = bench(rapi_bench, relay, "latency", "-c", "2")
    for label in ("direct", "relay"):
        m = target(doc, label)["median"]
        assert m["round_trips_per_s"] > 0, m
        assert 0 < m["rtt_p50_us"] <= m["rtt_p99_us"] <= m["rtt_max_us"], m
    doc = bench(rapi_bench, relay, "latency", "-c", "2", "--rate", "500")
    m = target(doc, "relay")["median"]
    assert m["round_trips_per_s"] > 0 and m["rtt_p50_us"] > 0, m


def test_hold(rapi_bench, relay):
    k = 200
    doc = bench(rapi_bench, relay, "hold", "-c", str(k))
    for label in ("direct", "relay"):
        m = target(doc, label)["median"]
        assert m["tunnels"] == k and m["lost"] == 0, m
    m = target(doc, "relay")["median"]
    assert m["rss_kib"] > 0 and m["rss_idle_kib"] > 0, m
    assert m["fds_per_tunnel"] > 0 and m["sockets_per_tunnel"] > 0, m


@pytest.mark.parametrize("backend", ["epoll"])
def test_tcp_proxy_target_and_count(rapi_bench, relay):
    """--tcp-proxy (pointed at rapi-bench's own backend: no proxy needed here)
    gets a row and ratios; --count ends the window early."""
    port = free_port()
    doc = bench(rapi_bench, relay, "setup", "-c", "4", "--backend", "127.0.0.1:%d" % port,
                "--tcp-proxy", "127.0.0.1:%d" % port, "--label", "proxy", "-n", "50",
                "--rounds", "2")
    proxy = target(doc, "proxy")
    assert proxy["kind"] == "tcp-proxy" and len(proxy["rounds"]) == 2
    assert proxy["median"]["tunnels_per_s"] > 0
    assert target(doc, "relay")["ratio_proxy"]["tunnels_per_s"] > 0


def start_helper(binary, mode):
    p = subprocess.Popen([binary, mode, "--listen", "127.0.0.1:0", "-d", "3"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stderr.readline()
    m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
    assert m, line
    return p, int(m.group(1))


def test_echo_and_sink_helpers(rapi_bench):
    p, port = start_helper(rapi_bench, "echo")
    try:
        c = Conn.connect(("127.0.0.1", port))
        c.send(b"hello bench")
        assert c.recv_exact(11) == b"hello bench"
        c.close()
    finally:
        p.send_signal(2)
        assert p.wait(timeout=10 * SLOW) == 0
    p, port = start_helper(rapi_bench, "sink")
    c = Conn.connect(("127.0.0.1", port))
    c.send(b"x" * 100000)
    c.shutdown_wr()
    c.expect_eof()
    c.close()
    t0 = time.time()
    assert p.wait(timeout=10 * SLOW) == 0  # bounded by -d 3
    assert time.time() - t0 < 10 * SLOW


def test_usage_errors(rapi_bench):
    r = subprocess.run([rapi_bench, "setup"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=10)
    assert r.returncode == 2 and "nothing to measure" in r.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAPI_")}
    r = subprocess.run([rapi_bench, "setup", "--relay", "127.0.0.1:9"], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=10)
    assert r.returncode == 2 and "server_key" in r.stderr


def test_tls_baseline_direct_and_proxy_full_and_resumed(rapi_bench, tmp_path):
    """The TLS baseline (issue 9): the backend serves TLS (--tls-cert/--tls-key),
    a --tcp-proxy target pointed at it and --direct are reached over TLS and
    verified against a private CA; --tls-no-resume runs full handshakes.
    With HAProxy installed, the same through HAProxy terminating TLS on both
    sides (bench/run --tls's setup)."""
    from tlscerts import make_certs
    certs = make_certs(tmp_path / "certs")
    port = free_port()
    tls = ["--tls", "--ca", certs.ca, "--tls-name", "localhost",
           "--tls-cert", certs.server, "--tls-key", certs.server_key]
    base = [rapi_bench, "setup", "--direct", "--threads", "1", "-c", "4", "-d", DURATION,
            "--warmup", WARMUP, "--json", "--backend", "127.0.0.1:%d" % port]
    hp = None
    if shutil.which("haproxy"):
        hp, hport = start_tls_haproxy(tmp_path, certs, port)
        base += ["--tcp-proxy", "127.0.0.1:%d" % hport, "--label", "haproxy"]
    else:  # the proxy row straight at the TLS backend
        base += ["--tcp-proxy", "127.0.0.1:%d" % port, "--label", "haproxy"]
    try:
        for extra in (["--tls-no-resume"], []):
            r = subprocess.run(base + tls + extra, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=RUN_LIMIT, text=True)
            assert r.returncode == 0, r.stderr[-3000:]
            doc = json.loads(r.stdout)
            for t in doc["targets"]:
                assert t["median"]["tunnels_per_s"] > 0, t
                assert not any(rd["failed"] for rd in t["rounds"]), t
        # half a pair, or plain clients to a TLS backend, are refused up front
        for argv, words in ((["--tls-cert", certs.server], "go together"),
                            (["--tls-cert", certs.server, "--tls-key", certs.server_key],
                             "needs --tls")):
            r = subprocess.run([rapi_bench, "setup", "--direct"] + argv, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, timeout=10)
            assert r.returncode == 2 and words in r.stderr, r.stderr
        # a wrong CA fails the TLS tunnels with the reason, not a hang
        bad = tls[:]
        bad[2] = certs.otherca
        r = subprocess.run(base + bad + ["--rounds", "1"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=RUN_LIMIT, text=True)
        assert r.returncode == 1, r.stderr[-3000:]
        for t in json.loads(r.stdout)["targets"]:
            assert all(rd["failed"] for rd in t["rounds"]) and t["error"], t
    finally:
        if hp is not None:
            hp.terminate()
            hp.wait(timeout=10 * SLOW)


def start_tls_haproxy(tmp_path, certs, backend):
    """HAProxy: bind ... ssl crt (front), server ... ssl verify required (back)."""
    bundle = tmp_path / "haproxy.pem"
    bundle.write_text(open(certs.server).read() + open(certs.server_key).read())
    os.chmod(bundle, 0o600)
    port = free_port()
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text("global\n    nbthread 1\ndefaults\n    mode tcp\n    timeout connect 5s\n"
                   "    timeout client 30s\n    timeout server 30s\n"
                   "frontend fe\n    bind 127.0.0.1:%d ssl crt %s\n    default_backend be\n"
                   "backend be\n    server s1 127.0.0.1:%d ssl verify required ca-file %s "
                   "sni str(localhost)\n" % (port, bundle, backend, certs.ca))
    p = subprocess.Popen(["haproxy", "-f", str(cfg), "-db"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    end = time.time() + 10 * SLOW
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return p, port
        except OSError:
            assert p.poll() is None, "haproxy exited"
            time.sleep(0.05)
    p.terminate()
    pytest.fail("haproxy does not listen")


def test_tls_echo_helper(rapi_bench, tmp_path):
    """echo --tls-cert/--tls-key serves TLS (verified by python's ssl)."""
    import ssl
    from tlscerts import make_certs
    certs = make_certs(tmp_path / "certs")
    p = subprocess.Popen([rapi_bench, "echo", "--listen", "127.0.0.1:0", "-d", "5",
                          "--tls-cert", certs.server, "--tls-key", certs.server_key],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", p.stderr.readline())
        assert m
        ctx = ssl.create_default_context(cafile=certs.ca)
        with socket.create_connection(("127.0.0.1", int(m.group(1))), timeout=10 * SLOW) as s:
            with ctx.wrap_socket(s, server_hostname="localhost") as t:
                t.sendall(b"hello tls bench")
                got = b""
                while len(got) < 15:
                    got += t.recv(100)
                assert got == b"hello tls bench"
    finally:
        p.send_signal(2)
        assert p.wait(timeout=10 * SLOW) == 0
