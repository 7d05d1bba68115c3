"""Helpers and fixtures for the librapi / rapi CLI integration tests.

Import the fixtures explicitly in a test module:

    from sdk_helpers import sdk, origin  # noqa: F401  (pytest fixtures)

  sdk       an Sdk bound to the `relay` fixture (conftest.py): runs `rapi
            expose` / `rapi connect`, builds C programs against librapi, and
            at teardown stops every process it started (SIGTERM, by PID) and
            fails the test on a sanitizer report or a key in any stderr.
  origin    small local servers written with the standard library (HTTP
            file server, echo, data source, PROXY-header recorder), each in
            its own python3 process so it can be killed mid-transfer.

Every wait is bounded; loopback only.
"""

import hashlib
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time

import pytest

from relay import SAN_MARKERS, SLOW, wait_until

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = "/usr/bin/python3"  # Debian's, which has python3-websockets
LISTEN_RE = re.compile(r"listening on (\d+\.\d+\.\d+\.\d+):(\d+)")
SAN = bool(os.environ.get("RAPI_SAN"))
SAN_CFLAGS = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer",
              "-fno-sanitize-recover=undefined"]


def build_dir():
    return os.environ.get("RAPI_BUILD") or os.path.join(REPO, "build")


class Proc:
    """A process started by a test, stderr captured to a file."""

    def __init__(self, argv, workdir, name, env=None, stdin=subprocess.DEVNULL,
                 stdout=subprocess.DEVNULL):
        self.argv = argv
        self.name = name
        self.stderr_path = os.path.join(workdir, "%s-%d.err" % (name, time.monotonic_ns()))
        self.err_file = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=self.err_file,
                                     env=env)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def stderr(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_log(self, pattern, timeout=5.0, count=1):
        """Wait until regex pattern matches count times in stderr; the last match."""
        rx = re.compile(pattern)

        def found():
            ms = list(rx.finditer(self.stderr()))
            if len(ms) >= count:
                return ms[count - 1]
            assert self.alive(), "%s exited (%r) before logging %r:\n%s" % (
                self.name, self.proc.returncode, pattern, self.stderr()[-3000:])
            return None
        return wait_until(found, timeout * SLOW, what="%s logging %r" % (self.name, pattern))

    def stop(self, timeout=10.0):
        """SIGTERM (by PID), wait; SIGKILL if it hangs. Returns the exit code."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout * SLOW)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.err_file.close()
        return self.proc.returncode

    def kill(self):
        if self.alive():
            self.proc.kill()
            self.proc.wait(5)

    def problems(self, secrets=()):
        text = self.stderr()
        errs = []
        for m in SAN_MARKERS:
            if m in text:
                errs.append("sanitizer report in %s stderr:\n%s" % (self.name, text[-6000:]))
                break
        for k in secrets:
            if k and k in text:
                errs.append("a key appears in %s's stderr" % self.name)
                break
        return errs


class Sdk:
    """rapi CLI processes and librapi programs around one relay."""

    def __init__(self, relay, workdir):
        self.relay = relay
        self.workdir = str(workdir)
        self.bin = os.path.join(build_dir(), "rapi")
        if not os.access(self.bin, os.X_OK):
            pytest.fail("no rapi binary at %s" % self.bin)
        self.procs = []
        self.expected_exit = {}

    # -- environment
    def env(self, **extra):
        e = dict(os.environ)
        e.pop("RAPI_KEY", None)
        e["RAPI_KEY_FILE"] = self.relay.key_file
        e.update({k: v for k, v in extra.items() if v is not None})
        for k, v in extra.items():
            if v is None:
                e.pop(k, None)
        return e

    def url(self, scheme, path, relay=None, key=None):
        h, p = (relay or self.relay).addr
        return "%s://%s%s:%d%s" % (scheme, (key + "@") if key else "", h, p, path)

    def spawn(self, args, name, env=None, **kw):
        p = Proc([self.bin] + list(args), self.workdir, name, env=env or self.env(), **kw)
        self.procs.append(p)
        return p

    # -- the CLI
    def expose(self, path, to, extra=(), env=None, wait=True, relay=None):
        """`rapi expose rws://relay/path --to to`; waits for the registration."""
        p = self.spawn(["expose", self.url("rws", path, relay), "--to", to] + list(extra),
                       "expose", env)
        if wait:
            p.wait_log(r"registered %s" % re.escape(path))
        return p

    def connect_listen(self, path, extra=(), env=None, url=None):
        """`rapi connect rwr://relay/path --listen 127.0.0.1:0`: (Proc, port)."""
        p = self.spawn(["connect", url or self.url("rwr", path), "--listen", "127.0.0.1:0"]
                       + list(extra), "connect", env)
        m = p.wait_log(LISTEN_RE.pattern)
        return p, int(m.group(2))

    def run(self, args, input=b"", env=None, timeout=20):
        """Run the CLI to completion: CompletedProcess (stdout, stderr bytes)."""
        r = subprocess.run([self.bin] + list(args), input=input, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=env or self.env(), timeout=timeout * SLOW)
        err = r.stderr.decode("utf-8", "replace")
        for m in SAN_MARKERS:
            assert m not in err, "sanitizer report in rapi %s:\n%s" % (args[:1], err)
        for k in self.relay.secrets():
            assert k not in err, "a key appears in rapi's stderr"
        return r

    # -- librapi programs
    def cc(self, src_text, name, shared=False):
        """Compile a C program against librapi.a (or librapi.so); its path."""
        src = os.path.join(self.workdir, name + ".c")
        out = os.path.join(self.workdir, name)
        with open(src, "w") as f:
            f.write(src_text)
        bd = build_dir()
        cc = "clang" if SAN else (os.environ.get("CC") or "cc")
        argv = [cc, "-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror", "-g",
                "-I" + os.path.join(REPO, "sdk"), "-o", out, src]
        if shared:
            argv += ["-L" + bd, "-lrapi", "-pthread"]
        else:
            argv += [os.path.join(bd, "librapi.a"), "-lwolfssl", "-lcrypto", "-pthread"]
        if SAN:
            argv[1:1] = SAN_CFLAGS
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        assert r.returncode == 0, "compiling %s failed:\n%s" % (name, r.stdout.decode())
        return out

    def start(self, argv, name, env=None, **kw):
        p = Proc(argv, self.workdir, name, env=env or self.env(), **kw)
        self.procs.append(p)
        return p

    def finish(self):
        errs = []
        for p in reversed(self.procs):
            rc = p.stop()
            want = self.expected_exit.get(p.pid, (0,))
            if rc not in want and rc is not None:
                errs.append("%s (pid %d) exited with %r (want %r); stderr tail:\n%s"
                            % (p.name, p.pid, rc, want, p.stderr()[-3000:]))
            errs += p.problems(self.relay.secrets())
        return errs


@pytest.fixture
def sdk(relay, tmp_path):
    s = Sdk(relay, tmp_path)
    yield s
    errs = s.finish()
    if errs:
        pytest.fail("\n".join(errs), pytrace=False)


# ---------------------------------------------------------------- origins

ORIGIN_SCRIPT = r'''
import hashlib, os, socket, socketserver, struct, sys, threading, time
mode = sys.argv[1]
BLOCK = hashlib.shake_256(b"rapi").digest(1 << 20)

def stream_chunks(total):
    i = 0
    sent = 0
    while sent < total:
        chunk = struct.pack("!Q", i) + BLOCK[8:]
        chunk = chunk[:total - sent]
        yield chunk
        sent += len(chunk)
        i += 1

class H(socketserver.BaseRequestHandler):
    def handle(self):
        s = self.request
        if mode == "echo":
            while True:
                d = s.recv(65536)
                if not d:
                    break
                s.sendall(d)
            s.shutdown(socket.SHUT_WR)
        elif mode == "source":
            total = int(sys.argv[3])
            for c in stream_chunks(total):
                s.sendall(c)
        elif mode == "drip":
            while True:
                s.sendall(b"x" * 4096)
                time.sleep(0.01)
        elif mode == "proxy":
            hdr = b""
            while len(hdr) < 16:
                d = s.recv(16 - len(hdr))
                if not d:
                    return
                hdr += d
            n = struct.unpack("!H", hdr[14:16])[0]
            while len(hdr) < 16 + n:
                hdr += s.recv(16 + n - len(hdr))
            s.sendall(hdr.hex().encode() + b"\n")
            while True:
                d = s.recv(65536)
                if not d:
                    break
                s.sendall(d)

class S(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

srv = S(("127.0.0.1", 0), H)
sys.stdout.write("port %d\n" % srv.server_address[1])
sys.stdout.flush()
srv.serve_forever()
'''


def stream_sha256(total):
    """sha256 of the `source` origin's stream of total bytes."""
    block = hashlib.shake_256(b"rapi").digest(1 << 20)
    h = hashlib.sha256()
    sent, i = 0, 0
    while sent < total:
        chunk = (struct.pack("!Q", i) + block[8:])[:total - sent]
        h.update(chunk)
        sent += len(chunk)
        i += 1
    return h.hexdigest()


class Origins:
    def __init__(self, workdir):
        self.workdir = str(workdir)
        self.procs = []
        self.script = os.path.join(self.workdir, "origin.py")
        with open(self.script, "w") as f:
            f.write(ORIGIN_SCRIPT)

    def _start(self, argv, name):
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, cwd=self.workdir)
        self.procs.append(p)
        line = p.stdout.readline().decode()
        m = re.search(r"port (\d+)", line)
        assert m, "%s did not start: %r" % (name, line)
        return p, int(m.group(1))

    def start(self, mode, *args):
        """An origin: (Popen, port). Modes: echo, source (total bytes), drip,
        proxy (answers the PROXY header it got, in hex, then echoes)."""
        return self._start([PYTHON, "-u", self.script, mode, "x"] + [str(a) for a in args], mode)

    def http(self, directory):
        """python3 -m http.server on directory: (Popen, port)."""
        return self._start([PYTHON, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1",
                            "--directory", str(directory)], "http.server")

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
            if p.stdout:
                p.stdout.close()


@pytest.fixture
def origin(tmp_path):
    o = Origins(tmp_path)
    yield o
    o.stop()


def curl(url, out_path, timeout=60):
    return subprocess.run(["curl", "-sS", "--fail", "-o", str(out_path), "--max-time",
                           str(int(timeout * SLOW)), url], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout * SLOW + 5)


def read_all(sock, timeout):
    """Everything until EOF from a socket, bounded in time."""
    sock.settimeout(timeout)
    out = bytearray()
    while True:
        d = sock.recv(1 << 20)
        if not d:
            return bytes(out)
        out += d


def manpage_examples(path):
    """The C examples in a man page: {name: source} for each block between
    `.\\" example: NAME` and `.\\" end example` (roff escapes undone)."""
    text = open(path).read()
    out = {}
    for m in re.finditer(r'^\.\\" example: (\S+)\n(.*?)^\.\\" end example', text, re.S | re.M):
        body = []
        for ln in m.group(2).splitlines():
            if ln.startswith((".EX", ".EE", ".nf", ".fi", ".in", ".RS", ".RE")):
                continue
            ln = ln.replace("\\e", "\\").replace("\\-", "-").replace("\\(aq", "'")
            ln = ln.replace("\\&", "")
            body.append(ln)
        out[m.group(1)] = textwrap.dedent("\n".join(body)) + "\n"
    return out


def have(tool):
    return shutil.which(tool) is not None


__all__ = ["sdk", "origin", "build_dir", "Sdk", "Proc", "Origins", "stream_sha256", "curl", "read_all",
           "manpage_examples", "have", "PYTHON", "SAN", "sys"]
