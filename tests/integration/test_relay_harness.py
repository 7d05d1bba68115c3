"""The harness checks itself: a fake rapi-server that misbehaves on purpose
must make Relay.finish() report each problem the fixture fails tests on
(sanitizer reports, bad exit status, no exit on SIGTERM, socket leaks, keys in
stderr). Runs once, without the real daemon."""

import os
import stat
import sys

import pytest

from relay import Relay, wait_until

FAKE = r'''
import os, signal, socket, sys, time
argv = sys.argv[1:]
opts = {}
keyfile = None
for i, a in enumerate(argv):
    if a == "-o":
        k, _, v = argv[i + 1].partition("=")
        opts[k] = v
    if a == "-k":
        keyfile = argv[i + 1]
mode = opts.get("fake", "clean")
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(16)
sys.stderr.write("2026-01-01T00:00:00.000Z info listening on 127.0.0.1:%d\n" % ls.getsockname()[1])
sys.stderr.flush()
if mode == "key":
    sys.stderr.write("debug key %s\n" % open(keyfile).read().split()[5])
    sys.stderr.flush()
held = []
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
ls.settimeout(0.05)
while not stop:
    try:
        c, _ = ls.accept()
    except socket.timeout:
        continue
    except InterruptedError:
        continue
    if mode == "leak":
        held.append(c)
    else:
        c.close()
if mode == "hang":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(60)
if mode == "asan":
    sys.stderr.write("==1==ERROR: AddressSanitizer: heap-use-after-free on address 0x1\n")
if mode == "ubsan":
    sys.stderr.write("engine/link.c:10:5: runtime error: signed integer overflow\n")
if mode == "lsan":
    sys.stderr.write("==1==ERROR: LeakSanitizer: detected memory leaks\n")
    sys.exit(86)
sys.exit(3 if mode == "exit3" else 0)
'''


@pytest.fixture
def fake(tmp_path):
    path = tmp_path / "fake-rapi-server"
    path.write_text("#!%s\n%s" % (sys.executable, FAKE))
    os.chmod(path, stat.S_IRWXU)
    return str(path)


@pytest.mark.parametrize("mode,expect", [
    ("clean", None),
    ("asan", "sanitizer report"),
    ("ubsan", "sanitizer report"),
    ("lsan", "exited with 86"),
    ("exit3", "exited with 3"),
    ("hang", "did not exit"),
    ("leak", "fd leak"),
    ("key", "key appears"),
])
def test_harness_reports(fake, tmp_path, mode, expect):
    r = Relay(fake, tmp_path / "r", options={"fake": mode, "drain_timeout": 0})
    r.stop_grace = 1.0
    r.start()
    c = r.connect()
    c.send(b"GET / HTTP/1.1\r\n\r\n")
    if mode == "leak":  # let the fake accept (and keep) it first
        wait_until(lambda: r.fd_counts()["socket"] == r.baseline["socket"] + 1, 3.0,
                   what="the fake to accept")
    problems = r.finish()
    text = "\n".join(problems)
    if expect is None:
        assert not problems, text
    else:
        assert expect in text, "harness missed %s: %r" % (mode, problems)
