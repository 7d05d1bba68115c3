#!/usr/bin/python3
"""A tiny PROTOCOL.md relay in asyncio, for developing rapi-bench before
rapi-server exists. Not for results: slow, no timeouts, no limits.

    bench/devrelay.py KEYFILE [PORT]     (prints "listening on 127.0.0.1:PORT")
"""
import asyncio
import base64
import hashlib
import json
import sys

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WR_GUID = b"BE7204BD-47E6-49EE-9B0D-016E370644B2"


def accept(key, guid):
    return base64.b64encode(hashlib.sha1(key + guid).digest())


def error(status, code):
    body = json.dumps({"success": False, "error": code, "errorcode": code}).encode()
    return (b"HTTP/1.1 %d Error\r\nContent-Type: application/json\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n" % (status, len(body))) + body


class Relay:
    def __init__(self, skey, ckey):
        self.skey, self.ckey = skey, ckey
        self.listeners = {}
        self.waiting = {}

    async def pipe(self, r, w):
        try:
            while True:
                d = await r.read(65536)
                if not d:
                    break
                w.write(d)
                await w.drain()
            w.write_eof()
        except Exception:
            w.close()

    async def handle(self, r, w):
        try:
            head = await r.readuntil(b"\r\n\r\n")
        except Exception:
            w.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1].split("?")[0].encode()
        h = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                h[k.strip().lower()] = v.strip()
        key = h.get("x-remoted-apikey", "").encode()
        up = h.get("upgrade", "").lower()
        if key == self.skey and up == "websocket":
            if path in self.listeners:
                w.write(error(409, "path_in_use"))
                w.close()
                return
            w.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Accept: " +
                    accept(h["sec-websocket-key"].encode(), WS_GUID) + b"\r\n\r\n")
            self.listeners[path] = w
            try:
                while await r.read(4096):
                    pass
            finally:
                del self.listeners[path]
                w.close()
            return
        wid = h.get("webroute-id", "").encode()
        if up != "webroute" or not wid or key not in (self.skey, self.ckey):
            w.write(error(400, "invalid_request"))
            w.close()
            return
        ok = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: webroute\r\nConnection: Upgrade\r\n"
              b"Sec-WebRoute-Accept: " + accept(wid, WR_GUID) + b"\r\n\r\n")
        if key == self.ckey:
            lw = self.listeners.get(path)
            if lw is None:
                w.write(error(502, "missing_destination"))
                w.close()
                return
            peer = w.get_extra_info("peername")
            note = b'{"ipaddr":"%s:%d","id":"%s","timeout":60}' % (
                peer[0].encode(), peer[1], wid)
            lw.write(bytes([0x81, len(note)]) + note)
            fut = asyncio.get_running_loop().create_future()
            self.waiting[(path, wid)] = (r, w, fut)
            await fut
            return
        ent = self.waiting.pop((path, wid), None)
        if ent is None:
            w.write(error(404, "unknown_route"))
            w.close()
            return
        cr, cw, fut = ent
        cw.write(ok)
        w.write(ok)
        fut.set_result(None)
        await asyncio.gather(self.pipe(cr, w), self.pipe(r, cw))


async def main():
    keys = {}
    for line in open(sys.argv[1]):
        p = line.split()
        if len(p) == 2:
            keys[p[0]] = p[1].encode()
    relay = Relay(keys["server_key"], keys["client_key"])
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    srv = await asyncio.start_server(relay.handle, "127.0.0.1", port, backlog=4096)
    print("listening on 127.0.0.1:%d" % srv.sockets[0].getsockname()[1], file=sys.stderr,
          flush=True)
    await srv.serve_forever()


asyncio.run(main())
