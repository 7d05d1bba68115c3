"""A waiting client that ends its side before it is linked (docs/PROTOCOL.md:
nothing the client sent is dropped; a client that sent nothing and left
frees its place at once)."""
import socket

from relay import assert_wr_101, wait_until


def test_halfclosed_waiter_with_data_is_kept_and_delivered(start_relay):
    relay = start_relay()
    lst = relay.register("/hc/")
    client, wrid = relay.client("/hc/", extra=b"request-body")
    client.shutdown_wr()
    raw, note = lst.notification()
    assert note["id"] == wrid
    server = relay.dialback("/hc/", wrid)
    assert_wr_101(server.read_head(), wrid)
    assert_wr_101(client.read_head(), wrid)
    # The early bytes, then the forwarded FIN.
    assert server.read_to_eof(3.0) == b"request-body"
    # The other direction still flows to the half-closed client.
    server.send(b"response")
    server.shutdown_wr()
    assert client.read_to_eof(3.0) == b"response"


def test_waiter_that_sent_nothing_and_left_is_released(start_relay):
    relay = start_relay(max_waiting=1)
    lst = relay.register("/gone/")
    client, wrid = relay.client("/gone/")
    lst.notification()
    client.sock.shutdown(socket.SHUT_RDWR)
    client.close()
    # Its place is free again: a new client on the path is notified.
    def next_client_waits():
        c, w = relay.client("/gone/")
        try:
            raw, note = lst.notification(0.5)
            return note["id"] == w
        except AssertionError:
            return False
    wait_until(next_client_waits, 3, what="the departed client's place to free")
    # The departed client's ID no longer links.
    server = relay.dialback("/gone/", wrid)
    resp = server.read_response()
    assert resp.status == 404
