"""librapi against independent peers, so that neither side is only compatible
with itself:

- the example server and client of librapi(3), extracted from the man page,
  compile and talk through the real rapi-server;
- a listener written with Debian's python3-websockets registers on
  rapi-server, gets byte-exact notifications and pongs, and completes
  dial-backs;
- librapi's WebSocket client (the man page's example server) handshakes with
  and reads frames from a python3-websockets server.
"""

import asyncio
import json
import os
import subprocess

import pytest

from relay import SLOW, assert_wr_101, build_request, wr_101_bytes
from relay import SAN_MARKERS
from sdk_helpers import PYTHON, REPO, manpage_examples, origin, sdk  # noqa: F401


def no_san_report(r):
    err = r.stderr.decode("utf-8", "replace")
    for m in SAN_MARKERS:
        assert m not in err, "sanitizer report:\n%s" % err

MAN3 = os.path.join(REPO, "man", "librapi.3")


def examples(sdk):
    ex = manpage_examples(MAN3)
    assert set(ex) == {"server", "client"}, "librapi(3) examples: %r" % list(ex)
    return sdk.cc(ex["server"], "example_server"), sdk.cc(ex["client"], "example_client")


def test_manpage_examples_compile_and_talk(sdk, relay):
    server, client = examples(sdk)
    srv = sdk.start([server, sdk.url("rws", "/example")], "example-server",
                    env=sdk.env(RAPI_KEY=relay.server_key, RAPI_KEY_FILE=None))
    sdk.expected_exit[srv.pid] = (-15,)  # it runs until killed
    srv.wait_log("registered")
    for msg in ("hello", "x" * 100000):
        r = subprocess.run([client, sdk.url("rwr", "/example"), msg], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=20 * SLOW,
                           env=sdk.env(RAPI_KEY=relay.client_key, RAPI_KEY_FILE=None))
        no_san_report(r)
        assert r.returncode == 0, r.stderr
        assert r.stdout == msg.encode()
    srv.wait_log(r"client 127\.0\.0\.1:\d+", count=2)
    # Named errors reach the application.
    r = subprocess.run([client, sdk.url("rwr", "/nothing"), "x"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=20 * SLOW,
                       env=sdk.env(RAPI_KEY=relay.client_key, RAPI_KEY_FILE=None))
    no_san_report(r)
    assert r.returncode == 1
    assert b'RAPI_E_NO_LISTENER, status 502, errorcode "missing_destination"' in r.stderr


# ------------------------------------------------ python3-websockets listener

def test_websockets_listener_on_rapi_server(relay):
    websockets = pytest.importorskip("websockets", reason="python3-websockets not installed")
    path = "/ws-peer/"

    async def run():
        uri = "ws://%s:%d%s" % (relay.addr[0], relay.addr[1], path)
        async with websockets.connect(uri, extra_headers={"X-Remoted-APIKey": relay.server_key},
                                      origin="http://peer.example", compression=None) as ws:
            # Our ping is answered with a pong carrying the same payload.
            pong = await ws.ping(b"rapi-peer")
            await asyncio.wait_for(pong, 5 * SLOW)
            for i in range(3):
                client, wrid = relay.client(path)
                raw = await asyncio.wait_for(ws.recv(), 5 * SLOW)
                assert isinstance(raw, str)
                assert raw.encode() == relay.notification_bytes(client, wrid, 60), raw
                note = json.loads(raw)
                # The dial-back: a plain socket, as the original SDK does it.
                server = relay.dialback(path, note["id"])
                assert server.read_head().head == wr_101_bytes(wrid)
                assert_wr_101(client.read_head(), wrid)
                msg = b"from the server %d" % i
                server.send(msg)
                assert client.recv_exact(len(msg)) == msg
                client.send(b"from the client")
                assert server.recv_exact(15) == b"from the client"
                client.close()
                server.expect_eof(5 * SLOW)
                server.close()

    asyncio.run(asyncio.wait_for(run(), 30 * SLOW))


# ------------------------------------------------ python3-websockets relay stub

WS_SERVER = r'''
import asyncio, http, json, sys
import websockets

NOTES = [
    '{"ipaddr":"127.0.0.1:57216","id":"ID-one","timeout":60}',
    '{"id":"ID-two","ipaddr":"[::1]:4000","extra":"x","n":null,"timeout":75}',
]
seen = {"ws": None, "dialbacks": [], "pong": False}
done = asyncio.Event()

def process_request(path, headers):
    if headers.get("Upgrade", "").lower() == "webroute":
        seen["dialbacks"].append({"path": path, "headers": dict(headers.raw_items())})
        if len(seen["dialbacks"]) >= 2:
            done.set()
        body = b'{"success":false,"error":"gone","errorcode":"unknown_route"}'
        return (http.HTTPStatus.NOT_FOUND,
                [("Content-Type", "application/json"), ("Connection", "close")], body)
    seen["ws"] = {"path": path, "headers": dict(headers.raw_items())}
    return None

async def handler(ws, path=None):
    if seen.get("sessions"):
        await done.wait()  # a reconnect after our close: nothing more to send
        return
    seen["sessions"] = 1
    await ws.send(NOTES[0])                        # one text frame
    await ws.send(iter(['{"id":"ID-two",', NOTES[1][len('{"id":"ID-two",'):]]))  # fragmented
    await ws.send(b"binary frames are ignored")
    pong = await ws.ping(b"probe")
    await asyncio.wait_for(pong, 10)
    seen["pong"] = True
    await asyncio.wait_for(done.wait(), 20)
    await ws.close()

async def main():
    async with websockets.serve(handler, "127.0.0.1", 0, process_request=process_request,
                                compression=None) as srv:
        print("port %d" % srv.sockets[0].getsockname()[1], flush=True)
        try:
            await asyncio.wait_for(done.wait(), 30)
        except asyncio.TimeoutError:
            pass
        await asyncio.sleep(0.3)
    print(json.dumps(seen), flush=True)

asyncio.run(main())
'''


def test_librapi_against_websockets_server(sdk, tmp_path):
    pytest.importorskip("websockets", reason="python3-websockets not installed")
    server, _ = examples(sdk)
    script = tmp_path / "ws_relay.py"
    script.write_text(WS_SERVER)
    stub = subprocess.Popen([PYTHON, "-u", str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        port = int(stub.stdout.readline().split()[1])
        key = "stub-server-key-0123456789"
        srv = sdk.start([server, "rws://127.0.0.1:%d/stub/path?q=1" % port], "example-server",
                        env=sdk.env(RAPI_KEY=key, RAPI_KEY_FILE=None))
        sdk.expected_exit[srv.pid] = (-15,)
        srv.wait_log("registered")
        out, err = stub.communicate(timeout=40 * SLOW)
    finally:
        if stub.poll() is None:
            stub.kill()
            stub.wait(5)
    assert stub.returncode == 0, err.decode()
    seen = json.loads(out.decode().strip().splitlines()[-1])
    ws = seen["ws"]
    h = {k.lower(): v for k, v in ws["headers"].items()}
    assert ws["path"] == "/stub/path?q=1"
    assert h["host"] == "127.0.0.1:%d" % port
    assert h["origin"] == "http://127.0.0.1:%d" % port
    assert h["x-remoted-apikey"] == key
    assert h["sec-websocket-version"] == "13"
    assert "sec-websocket-extensions" not in h
    assert seen["pong"], "librapi did not answer the server's ping"
    ids = []
    for d in seen["dialbacks"]:
        dh = {k.lower(): v for k, v in d["headers"].items()}
        assert d["path"] == "/stub/path?q=1"
        assert dh["x-remoted-apikey"] == key
        assert dh["webroute-version"] == "1"
        assert dh["upgrade"].lower() == "webroute"
        assert dh["host"] == "127.0.0.1:%d" % port
        ids.append(dh["webroute-id"])
    # Both notifications (one whole, one fragmented) were read and answered;
    # a 404 is final, so each ID is dialed exactly once.
    assert sorted(ids) == ["ID-one", "ID-two"], ids


# ------------------------------------------------ dial-back retries and concurrency

DIAL_STUB = r'''
import asyncio, http, json, sys, time
import websockets

t0 = time.monotonic()
NOTES = ['{"ipaddr":"127.0.0.1:1","id":"ID-slow","timeout":60}',
         '{"ipaddr":"127.0.0.1:2","id":"ID-fast","timeout":60}',
         '{"ipaddr":"127.0.0.1:3","id":"ID-retry","timeout":60}']
seen = {"arrivals": [], "sessions": 0}
done = asyncio.Event()

async def process_request(path, headers):
    if headers.get("Upgrade", "").lower() != "webroute":
        return None
    wrid = headers.get("WebRoute-ID")
    seen["arrivals"].append([wrid, time.monotonic() - t0])
    if sum(1 for a in seen["arrivals"] if a[0] == "ID-retry") >= 4 and \
            any(a[0] == "ID-fast" for a in seen["arrivals"]):
        loop = asyncio.get_running_loop()
        loop.call_later(2.0, done.set)  # time for a 5th attempt, which must not come
    if wrid == "ID-slow":
        await asyncio.sleep(4)  # a relay that is slow to answer this one
        status = http.HTTPStatus.NOT_FOUND
    elif wrid == "ID-retry":
        status = http.HTTPStatus.SERVICE_UNAVAILABLE  # retried: 1 + 3 attempts
    else:
        status = http.HTTPStatus.NOT_FOUND
    return (status, [("Connection", "close")], b"")

async def handler(ws, path=None):
    seen["sessions"] += 1
    if seen["sessions"] == 1:
        for n in NOTES:
            await ws.send(n)
    await done.wait()

async def main():
    async with websockets.serve(handler, "127.0.0.1", 0, process_request=process_request,
                                compression=None) as srv:
        print("port %d" % srv.sockets[0].getsockname()[1], flush=True)
        try:
            await asyncio.wait_for(done.wait(), 30)
        except asyncio.TimeoutError:
            pass
    print(json.dumps(seen), flush=True)

asyncio.run(main())
'''


def test_dialbacks_concurrent_and_retried(sdk, tmp_path):
    pytest.importorskip("websockets", reason="python3-websockets not installed")
    server, _ = examples(sdk)
    script = tmp_path / "dial_stub.py"
    script.write_text(DIAL_STUB)
    stub = subprocess.Popen([PYTHON, "-u", str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        port = int(stub.stdout.readline().split()[1])
        srv = sdk.start([server, "rws://127.0.0.1:%d/d" % port], "example-server",
                        env=sdk.env(RAPI_KEY="stub-server-key-0123456789", RAPI_KEY_FILE=None))
        sdk.expected_exit[srv.pid] = (-15,)
        out, err = stub.communicate(timeout=40 * SLOW)
    finally:
        if stub.poll() is None:
            stub.kill()
            stub.wait(5)
    assert stub.returncode == 0, err.decode()
    seen = json.loads(out.decode().strip().splitlines()[-1])
    arrivals = seen["arrivals"]
    first = {}
    for wrid, t in arrivals:
        first.setdefault(wrid, t)
    # ID-slow's answer takes 4 s; ID-fast was dialed meanwhile, not after.
    assert first["ID-fast"] - first["ID-slow"] < 1.0 * SLOW, arrivals
    # A 503 is retried up to 3 times, then given up; a 404 is final.
    assert sum(1 for w, _ in arrivals if w == "ID-retry") == 4, arrivals
    assert sum(1 for w, _ in arrivals if w == "ID-fast") == 1, arrivals
    assert sum(1 for w, _ in arrivals if w == "ID-slow") == 1, arrivals


# ------------------------------------------------ shared library, IPv6

def test_shared_library_and_ipv6(sdk, relay, start_relay):
    from relay import ipv6_loopback_available
    if not ipv6_loopback_available():
        pytest.skip("no IPv6 loopback here: IPv6 URL check SKIPPED")
    relay6 = start_relay(listen=["[::1]:0"], key_file=relay.key_file)
    ex = manpage_examples(MAN3)
    server = sdk.cc(ex["server"], "example_server")
    client = sdk.cc(ex["client"], "example_client_so", shared=True)
    host, port = relay6.addr6
    url = "rws://[%s]:%d/six" % (host, port)
    srv = sdk.start([server, url], "example-server",
                    env=sdk.env(RAPI_KEY=relay.server_key, RAPI_KEY_FILE=None))
    sdk.expected_exit[srv.pid] = (-15,)
    srv.wait_log("registered")
    env = sdk.env(RAPI_KEY=relay.client_key, RAPI_KEY_FILE=None,
                  LD_LIBRARY_PATH=os.path.dirname(sdk.bin))
    r = subprocess.run([client, "rwr://[%s]:%d/six" % (host, port), "over IPv6"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=20 * SLOW)
    no_san_report(r)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"over IPv6"
    srv.wait_log(r"client \[::1\]:\d+")
