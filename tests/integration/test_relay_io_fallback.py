"""`io auto` falls back to epoll, and says why, when io_uring is disabled
(here by a seccomp filter, as container runtimes do); `io uring` then
refuses to start with a clear message."""
import os
import subprocess
import time

from relay import LISTEN_RE, write_key_file


def run_noring(build, tmp_path, io, seconds=1.0):
    keys = tmp_path / "keys"
    write_key_file(keys)
    argv = [os.path.join(build, "tests", "noring"), os.path.join(build, "rapi-server"),
            "-k", str(keys), "-l", "127.0.0.1:0", "-o", "io=" + io]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.05)
    if p.poll() is None:
        p.terminate()
    out = p.communicate(timeout=10)[0].decode(errors="replace")
    return p.returncode, out


def test_auto_falls_back_to_epoll_and_logs_why(rapi_build, tmp_path):
    rc, out = run_noring(rapi_build, tmp_path, "auto")
    assert "io_uring unavailable" in out and "using epoll" in out, out
    assert "Operation not permitted" in out, out
    assert "io=epoll" in out, out
    assert LISTEN_RE.search(out), out
    assert rc == 0, (rc, out)  # stopped by SIGTERM, cleanly


def test_uring_forced_but_disabled_refuses_to_start(rapi_build, tmp_path):
    rc, out = run_noring(rapi_build, tmp_path, "uring", seconds=3)
    assert rc == 1, (rc, out)
    assert "io_uring unavailable" in out, out
    assert not LISTEN_RE.search(out), out
