"""Many connections at once, and the configured limits (503 answers)."""

import os
import time

from relay import (SLOW, assert_wr_101, build_request, expect_error, listener_headers, pump,
                   wait_until)

N_LINKS = 200
N_SLOW = 200


def test_200_concurrent_links_no_crosstalk(relay):
    t0 = time.monotonic()
    paths = ["/load/%d/" % i for i in range(4)]
    listeners = {p: relay.register(p) for p in paths}
    # 200 clients arrive at once (spread over the paths, so over the shards).
    clients = {}
    for i in range(N_LINKS):
        p = paths[i % len(paths)]
        c, wrid = relay.client(p, wrid="load-%03d-%s" % (i, os.urandom(6).hex()))
        clients[wrid] = (p, c)
    # Every client is announced exactly once, on its own path's listener.
    seen = set()
    for p, lst in listeners.items():
        for _ in range(N_LINKS // len(paths)):
            raw, note = lst.notification(10 * SLOW)
            assert note["id"] in clients and clients[note["id"]][0] == p, raw
            assert note["ipaddr"] == clients[note["id"]][1].local_addr(), raw
            assert note["id"] not in seen, "announced twice: %r" % raw
            seen.add(note["id"])
    assert len(seen) == N_LINKS
    # 200 dial-backs at once.
    servers = {wrid: relay.dialback(p, wrid) for wrid, (p, c) in clients.items()}
    for wrid, s in servers.items():
        assert_wr_101(s.read_head(10 * SLOW), wrid)
        assert_wr_101(clients[wrid][1].read_head(10 * SLOW), wrid)
    # Unique data both ways on every link at the same time.
    flows, want = [], []
    for wrid, s in servers.items():
        c = clients[wrid][1]
        up = (wrid.encode() + b":up:") * 700 + os.urandom(4096)
        down = (wrid.encode() + b":down:") * 600 + os.urandom(4096)
        flows += [(c, up, len(down), True), (s, down, len(up), True)]
        want += [down, up]
    got = pump(flows, 30 * SLOW)
    bad = [i for i, (g, w) in enumerate(zip(got, want)) if g != w]
    assert not bad, "%d of %d streams got someone else's or corrupted bytes" % (len(bad), len(got))
    # Everyone half-closed: each side then sees EOF.
    for wrid, s in servers.items():
        assert s.read_to_eof(5 * SLOW) == b""
        assert clients[wrid][1].read_to_eof(5 * SLOW) == b""
    took = time.monotonic() - t0
    assert took < 30 * SLOW, "200 links took %.1fs" % took


def test_slow_half_requests_do_not_block_others(relay):
    slow = []
    for i in range(N_SLOW):
        c = relay.connect()
        c.send(b"GET /slow/%d HTTP/1.1\r\nHost: relay\r\nX-Remoted-" % i)
        slow.append(c)
    t0 = time.monotonic()
    lst = relay.register("/fast/")
    ln = relay.link(lst, notify_timeout=60)
    ln.client.send(b"quick")
    assert ln.server.recv_exact(5, 2.0) == b"quick"
    ln.server.send(b"reply")
    assert ln.client.recv_exact(5, 2.0) == b"reply"
    took = time.monotonic() - t0
    assert took < 1.0 * SLOW, "a link took %.2fs next to %d slow heads" % (took, N_SLOW)
    # The slow ones are still waiting for their heads (header_timeout 10 s).
    for c in slow[:: 20]:
        c.expect_silence(0.01)


def test_max_waiting_per_path(start_relay):
    relay = start_relay(max_waiting=2)
    lst = relay.register("/mw/")
    waiting = []
    for _ in range(2):
        c, wrid = relay.client("/mw/")
        lst.notification()
        waiting.append((c, wrid))
    third, _ = relay.client("/mw/")
    expect_error(third, 503, "too_many_waiting")
    lst.expect_no_frame(0.1)
    # Per path: another path still takes clients.
    lst2 = relay.register("/mw2/")
    relay.link(lst2)
    # Once one waiting client is linked, there is room again.
    c, wrid = waiting[0]
    s = relay.dialback("/mw/", wrid)
    assert_wr_101(s.read_head(), wrid)
    assert_wr_101(c.read_head(), wrid)
    relay.link(lst)


def test_max_listeners(start_relay):
    relay = start_relay(max_listeners=2)
    a = relay.register("/ml/a")
    relay.register("/ml/b")
    c = relay.request(build_request("/ml/c", listener_headers(relay.server_key)))
    expect_error(c, 503, "too_many_listeners")
    a.close()

    def registered():
        c = relay.request(build_request("/ml/c", listener_headers(relay.server_key)))
        resp = c.read_head()
        if resp.status == 101:
            return c
        c.close()
        return None

    wait_until(registered, 2.0, interval=0.1, what="a freed listener slot")


def test_max_connections(start_relay):
    relay = start_relay(max_connections=2)
    lst = relay.register("/mc/")
    results = []
    conns = []
    for _ in range(4):
        c, wrid = relay.client("/mc/")
        conns.append(c)
        try:
            lst.notification(0.5)
            results.append("waiting")
        except AssertionError:
            expect_error(c, 503, "too_many_connections")
            results.append("503")
    assert "503" in results, "max_connections 2 never refused: %r" % results
    assert 1 <= results.count("waiting") <= 2, results
    assert results.index("503") == results.count("waiting"), results
    for c in conns:
        c.close()
    # Room again once they are gone.

    def accepted():
        c, wrid = relay.client("/mc/")
        try:
            lst.notification(0.3)
            c.close()
            return True
        except AssertionError:
            c.close()
            return False

    wait_until(accepted, 3.0, interval=0.1, what="connections freed")
