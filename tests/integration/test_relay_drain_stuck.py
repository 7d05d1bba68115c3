"""SIGTERM while a listener does not read: its pongs and close frame cannot
be written, yet the relay must exit by drain_timeout (no spin, no hang)."""
import signal
import socket
import subprocess
import time

from relay import build_request, encode_frame, listener_headers, new_ws_key

PING = encode_frame(0x9, b"p" * 125)  # masked, as a client's must be


def relay_send_q(relay_port, peer_port):
    """Send-Q of the relay's end of our connection (bytes in its kernel)."""
    out = subprocess.run(["ss", "-tnH", "state", "established", "sport", "=", str(relay_port),
                          "dport", "=", str(peer_port)], capture_output=True, text=True).stdout
    fields = out.split()
    return int(fields[1]) if len(fields) > 1 else 0


def test_drain_with_a_listener_that_does_not_read(start_relay):
    relay = start_relay(drain_timeout=2)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)  # tiny window
    s.settimeout(5)
    s.connect(relay.addr)
    s.sendall(build_request("/stuck/", listener_headers(relay.server_key, new_ws_key())))
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101")
    # Fill the relay's kernel send buffer with pongs, then queue ~100 KiB
    # more in the relay itself (well under its 1 MiB limit).
    batch = PING * 400  # ~52 KiB of pings -> ~52 KiB of pongs
    last, stable = -1, 0
    for _ in range(400):
        s.sendall(batch)
        time.sleep(0.02)
        q = relay_send_q(relay.addr[1], s.getsockname()[1])
        stable = stable + 1 if q == last else 0
        last = q
        if stable >= 3:
            break
    assert stable >= 3, "the relay's send queue never filled (last %d)" % last
    s.sendall(batch * 2)
    time.sleep(0.3)
    t0 = time.monotonic()
    relay.signal(signal.SIGTERM)
    rc = relay.wait_exit(10)
    took = time.monotonic() - t0
    assert rc == 0, rc
    assert took < 6, "drain took %.1fs with drain_timeout 2" % took
    s.close()
