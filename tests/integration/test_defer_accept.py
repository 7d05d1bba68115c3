"""defer_accept (rapi-server.conf(5)): TCP_DEFER_ACCEPT on client listen
sockets. A connection that has sent nothing stays in the kernel (not
accepted, not counted); its first bytes bring it in; 0 accepts at once."""
import socket
import time

from relay import wait_until
from test_admin import admin_addr, metrics

SILENT_S = 0.6  # well inside defer_accept 5: the kernel still holds the connection


def connections(relay):
    return metrics(admin_addr(relay))["rapi_connections"]


def test_silent_connection_stays_in_the_kernel(start_relay):
    relay = start_relay(admin="127.0.0.1:0", defer_accept=5, header_timeout=30)
    silent = [socket.create_connection(relay.addr, timeout=3) for _ in range(3)]
    try:
        time.sleep(SILENT_S)
        assert connections(relay) == 0, "a connection that sent nothing was accepted"
        # Its first bytes bring it in at once, and it is served as usual.
        lst = relay.register("/d/")
        ln = relay.link(lst)
        ln.client.send(b"ping")
        assert ln.server.recv_exact(4) == b"ping"
        assert connections(relay) == 3, "listener, client and dial-back only"
    finally:
        for s in silent:
            s.close()


def test_defer_accept_off_accepts_at_once(start_relay):
    relay = start_relay(admin="127.0.0.1:0", defer_accept=0, header_timeout=30)
    silent = [socket.create_connection(relay.addr, timeout=3) for _ in range(3)]
    try:
        wait_until(lambda: connections(relay) == 3, 3, what="3 silent connections accepted")
    finally:
        for s in silent:
            s.close()


def test_silent_connection_is_accepted_in_the_end(start_relay):
    """The kernel gives up deferring: the relay's header_timeout ends it."""
    relay = start_relay(defer_accept=1, header_timeout=1)
    s = socket.create_connection(relay.addr, timeout=10)
    t0 = time.monotonic()
    try:
        s.settimeout(10)
        assert s.recv(1) == b"", "closed without an answer"
        took = time.monotonic() - t0
        assert took >= 1.0, "closed after %.2f s: header_timeout 1 counts from accept" % took
    except ConnectionResetError:
        pass
    finally:
        s.close()
