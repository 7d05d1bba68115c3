"""Signals (SIGTERM drain, SIGHUP reload), fd hygiene, backends, config file."""

import os
import re
import signal
import time

import pytest

from relay import (SLOW, assert_wr_101, build_request, expect_error, listener_headers,
                   random_token, wait_until, webroute_headers)


@pytest.mark.all_modes
def test_sigterm_drains(start_relay):
    relay = start_relay(drain_timeout=5)
    lst = relay.register("/drain/")
    ln = relay.link(lst)
    waiting, _ = relay.client("/drain/")
    lst.notification()
    t0 = time.monotonic()
    relay.signal(signal.SIGTERM)
    # The listener is told the relay goes away (close 1001), so it can move on.
    lst.expect_close(1001, timeout=2.0)
    # The waiting client is refused.
    expect_error(waiting, 503, "shutting_down", timeout=2.0)
    # The linked pair keeps flowing both ways.
    for i in range(3):
        ln.client.send(b"up%d" % i)
        assert ln.server.recv_exact(3, 2.0) == b"up%d" % i
        ln.server.send(b"dn%d" % i)
        assert ln.client.recv_exact(3, 2.0) == b"dn%d" % i
        time.sleep(0.2)
    assert relay.alive(), "relay exited while a linked pair was still open"
    # No new work is taken: a new connection is refused or answered 503.
    try:
        c = relay.connect(timeout=1.0)
    except OSError:
        pass
    else:
        c.send(build_request("/drain/", webroute_headers(relay.client_key, "late")))
        got = c.read_to_eof(2.0)
        assert got == b"" or got.startswith(b"HTTP/1.1 503"), got[:200]
    # When the pair finishes, the relay exits 0 at once (not at drain_timeout).
    t1 = time.monotonic()
    ln.client.close()
    ln.server.close()
    assert relay.wait_exit(3.0 * SLOW) == 0
    assert time.monotonic() - t1 < 2.0, "exit %.2fs after the last pair closed (drain_timeout 5)" \
        % (time.monotonic() - t1)
    assert time.monotonic() - t0 < 5.0


def test_sigterm_drain_timeout_closes_pairs(start_relay):
    relay = start_relay(drain_timeout=1)
    lst = relay.register("/drain2/")
    ln = relay.link(lst)
    t0 = time.monotonic()
    relay.signal(signal.SIGTERM)
    lst.expect_close(1001, timeout=2.0)
    ln.client.send(b"still")
    assert ln.server.recv_exact(5, 1.0) == b"still"
    # Idle pair: closed by the relay at the drain deadline, then exit 0.
    ln.client.read_to_eof(4.0)
    ln.server.read_to_eof(1.0)
    took = time.monotonic() - t0
    assert 0.7 <= took <= 3.0, "pairs closed %.2fs after SIGTERM (drain_timeout 1)" % took
    assert relay.wait_exit(3.0 * SLOW) == 0


def test_sigterm_idle_exits_promptly(relay):
    t0 = time.monotonic()
    relay.signal(signal.SIGTERM)
    assert relay.wait_exit(3.0 * SLOW) == 0
    assert time.monotonic() - t0 < 1.5 * SLOW


@pytest.mark.all_modes
def test_sighup_reloads_keys_keeping_links(start_relay):
    relay = start_relay()
    lst = relay.register("/hup/")
    ln = relay.link(lst)
    old_server, old_client = relay.server_key, relay.client_key
    new_server, new_client = relay.set_keys()
    relay.signal(signal.SIGHUP)

    def reloaded():
        c = relay.request(build_request("/nolistener/", webroute_headers(old_client, "probe")))
        resp = c.read_response()
        c.close()
        assert resp.status in (403, 502), resp
        return resp.status == 403

    wait_until(reloaded, 3.0, interval=0.1, what="new keys in force after SIGHUP")
    assert relay.alive()
    # Old keys are refused for every role ...
    c = relay.request(build_request("/hup2/", listener_headers(old_server)))
    expect_error(c, 403, "invalid_missing_apikey")
    # ... the established link is untouched ...
    ln.client.send(b"after reload")
    assert ln.server.recv_exact(12) == b"after reload"
    ln.server.send(b"ok")
    assert ln.client.recv_exact(2) == b"ok"
    # ... the registered listener stays, and new keys link through it.
    client, wrid = relay.client("/hup/", key=new_client)
    raw, _ = lst.notification()
    assert raw == relay.notification_bytes(client, wrid, 60)
    expect_error(relay.dialback("/hup/", wrid, key=old_server), 403, "invalid_missing_apikey")
    server = relay.dialback("/hup/", wrid, key=new_server)
    assert_wr_101(server.read_head(), wrid)
    assert_wr_101(client.read_head(), wrid)
    # New listeners need the new server key.
    relay.register("/hup3/", key=new_server)


def test_sighup_with_broken_files_keeps_running(start_relay, tmp_path):
    """A reload that fails (key file now group-readable, then a config file
    with an unknown keyword) is refused with a message; the relay keeps
    running on what it had, links included."""
    conf = tmp_path / "rapi-server.conf"
    conf.write_text("timeout 60\n")
    relay = start_relay(config_file=str(conf))
    lst = relay.register("/hupbad/")
    ln = relay.link(lst)
    os.chmod(relay.key_file, 0o644)
    relay.signal(signal.SIGHUP)
    wait_until(lambda: relay.key_file in relay.stderr(), 2.0,
               what="a log line naming the refused key file")
    os.chmod(relay.key_file, 0o600)
    conf.write_text("timeout 60\nno_such_keyword 1\n")
    relay.signal(signal.SIGHUP)
    wait_until(lambda: "no_such_keyword" in relay.stderr(), 2.0,
               what="a log line naming the bad keyword")
    time.sleep(0.1)
    assert relay.alive(), "a failed reload killed the relay"
    ln.client.send(b"alive")
    assert ln.server.recv_exact(5) == b"alive"
    relay.link(lst, notify_timeout=60)


def test_sighup_rereads_config_file(start_relay, tmp_path):
    conf = tmp_path / "rapi-server.conf"
    conf.write_text("max_header 8192\n")
    relay = start_relay(config_file=str(conf))
    lst = relay.register("/conf/")
    padded = webroute_headers(relay.client_key, "pad1") + [("X-Pad", "p" * 3000)]
    c = relay.request(build_request("/conf/", padded))
    lst.notification()
    c.close()
    conf.write_text("max_header 2048\n")
    relay.signal(signal.SIGHUP)
    # A 3000-byte head is now over the limit.
    wait_until(lambda: _probe_431(relay, lst), 3.0, interval=0.1,
               what="max_header 2048 in force after SIGHUP")
    assert relay.alive()
    relay.link(lst)


def _probe_431(relay, lst):
    c = relay.request(build_request("/conf/", webroute_headers(relay.client_key, random_token()) +
                                    [("X-Pad", "p" * 3000)]))
    try:
        lst.notification(0.2)
    except AssertionError:
        pass
    else:
        c.close()
        return False
    resp = c.read_response()
    c.close()
    return resp.status == 431


def test_no_fd_leak_after_mixed_traffic(start_relay):
    # Copy-only data path: no pipe pool, so every fd count must come back.
    relay = start_relay(max_pipes=0, dialback_timeout=1)
    base = relay.baseline
    lst = relay.register("/fd/")
    for _ in range(5):
        ln = relay.link(lst)
        ln.client.send(b"x" * 5000)
        ln.server.recv_exact(5000)
        ln.close()
    for _ in range(5):
        relay.expect_502("/nofd/")
        expect_error(relay.dialback("/fd/", random_token()), 404, "unknown_route")
        c = relay.request(b"BAD\r\n\r\n")
        c.read_to_eof()
    c, wrid = relay.client("/fd/")
    lst.notification()
    expect_error(c, 504, "listener_timeout", timeout=3.0)
    half = relay.connect()
    half.send(b"GET /x HTTP/1.1\r\n")
    half.close()
    lst.close()
    relay.close_all()
    wait_until(lambda: relay.fd_counts()["total"] == base["total"], 3.0,
               what="relay fds back to the %d at start (now %r)" % (base["total"],
                                                                   relay.fd_counts()))


def test_pipes_bounded_and_sockets_released(start_relay):
    relay = start_relay(max_pipes=2, workers=2)
    base = relay.baseline
    lst = relay.register("/pp/")
    links = [relay.link(lst) for _ in range(6)]
    for ln in links:
        ln.client.send(os.urandom(100000))
    for ln in links:
        ln.server.recv_exact(100000)
    counts = relay.fd_counts()
    # max_pipes is per shard and a pipe is two fds.
    assert counts["pipe"] - base["pipe"] <= 2 * 2 * 2, counts
    for ln in links:
        ln.close()
    lst.close()
    wait_until(lambda: relay.fd_counts()["socket"] == base["socket"], 3.0, what="sockets released")
    assert relay.fd_counts()["pipe"] - base["pipe"] <= 2 * 2 * 2


def test_backend_in_use(start_relay, backend):
    relay = start_relay()
    counts = relay.fd_counts()
    if backend == "uring":
        assert counts["io_uring"] >= 1, "io=uring but no io_uring fd: %r" % counts
    else:
        assert counts["io_uring"] == 0, "io=epoll but an io_uring fd is open: %r" % counts
        assert counts["eventpoll"] >= 1, counts
    # And it relays.
    relay.link(relay.register("/be/"), notify_timeout=60)


def test_config_file_only(start_relay, tmp_path, backend):
    # Everything from a -c file: listen, keys, options.
    keys = tmp_path / "k"
    from relay import write_key_file
    write_key_file(str(keys))
    conf = tmp_path / "c.conf"
    conf.write_text("# test config\nlisten 127.0.0.1:0\n\nkeys %s\nworkers 1\n"
                    "io %s   # trailing comment\ntimeout 90\nlog_level debug\n"
                    % (keys, backend))
    relay = start_relay(config_file=str(conf), key_file=str(keys), cli_flags=False)
    lst = relay.register("/cf/")
    relay.link(lst, notify_timeout=90)


def test_several_listen_addresses(start_relay):
    # Two IPv4 listen addresses: port 0 and a port known free a moment ago.
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    relay = start_relay(listen=("127.0.0.1:0", "127.0.0.1:%d" % port))
    assert ("127.0.0.1", port) in relay.addrs
    assert len(relay.addrs) == 2 and relay.addrs[0] != relay.addrs[1]
    lst = relay.register("/two/")
    # A client on the second address reaches the listener on the first.
    from relay import Conn
    c = Conn.connect(relay.addrs[1], keys=relay.secrets())
    relay.conns.append(c)
    wrid = random_token()
    c.send(build_request("/two/", webroute_headers(relay.client_key, wrid)))
    raw, _ = lst.notification()
    assert raw == relay.notification_bytes(c, wrid, 60)


LOG_LINE_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)? "
                         r"(error|warn|info|debug) \S")


def _some_traffic(relay):
    lst = relay.register("/log/")
    ln = relay.link(lst)
    ln.client.send(b"x")
    ln.server.recv_exact(1)
    ln.close()
    relay.expect_502("/nolog/")
    lst.close()


def test_log_lines_and_levels(start_relay):
    debug = start_relay(log_level="debug")
    _some_traffic(debug)
    info = start_relay(log_level="info")
    _some_traffic(info)
    for r in (debug, info):
        wait_until(lambda: "unregister" in r.stderr() or r.stderr().count("\n") >= 6, 2.0,
                   what="log lines")
    dl = debug.stderr().splitlines()
    il = info.stderr().splitlines()
    for ln in dl + il:
        assert LOG_LINE_RE.match(ln), "log line not `<ISO time> <level> <message>`: %r" % ln
    assert any(" debug " in ln for ln in dl), "log_level debug logged no debug line"
    assert not any(" debug " in ln for ln in il), "log_level info logged debug lines"
    assert len(il) < len(dl)
