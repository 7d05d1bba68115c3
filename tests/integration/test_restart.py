"""An immediate restart on the same ports always succeeds (rapi-server(8),
RESTART): after SIGTERM and after kill -9, on both backends.

With io_uring a poll holds a reference to its socket until the ring's
asynchronous teardown, a few ms after the process is gone: a listening
socket watched that way kept its port bound and the next start failed with
EADDRINUSE. The relay watches listening sockets through an epoll fd instead
(engine/ev_uring.c), so the port is free as soon as the process is."""

import signal
import socket

import pytest

from conftest import DEFAULT_OPTIONS
from relay import Relay, RelayStartError, wait_until

RESTARTS = 20


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(rapi_server, workdir, backend, workers, port, admin_port):
    opts = dict(DEFAULT_OPTIONS, admin="127.0.0.1:%d" % admin_port)
    r = Relay(rapi_server, workdir, backend=backend, options=opts,
              listen=("127.0.0.1:%d" % port,), workers=workers)
    try:
        r.start()
    except RelayStartError as e:
        if backend == "uring" and "uring" in e.stderr.lower() and port == 0:
            pytest.skip("io_uring backend unavailable here")
        raise
    # The admin socket is opened after the listening ones: wait for it too.
    wait_until(lambda: "admin endpoint on" in r.stderr() or not r.alive(), 5.0,
               what="admin endpoint")
    if not r.alive():
        r.err_file.close()
        raise RelayStartError("rapi-server exited:\n" + r.stderr(), r.proc.returncode,
                              r.stderr())
    return r


@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_immediate_restart_on_same_port(rapi_server, backend, shard_workers, tmp_path, how):
    admin_port = _free_port()
    r = _start(rapi_server, tmp_path / "r0", backend, shard_workers, 0, admin_port)
    port = r.addr[1]
    try:
        for i in range(RESTARTS):
            # Some use first: a listener registered, so the ring has more
            # than the listening sockets to tear down.
            lst = r.register("/restart/")
            if how == "sigterm":
                r.signal(signal.SIGTERM)
                assert r.wait_exit(10) == 0
            else:
                r.proc.kill()
                assert r.wait_exit(10) == -signal.SIGKILL
            lst.conn.close()
            r.close_all()
            r.err_file.close()
            # No delay: the next start must find both ports free.
            try:
                r = _start(rapi_server, tmp_path / ("r%d" % (i + 1)), backend, shard_workers,
                           port, admin_port)
            except RelayStartError as e:
                r = None
                pytest.fail("restart %d after %s failed:\n%s" % (i + 1, how, e.stderr))
            assert r.addr == ("127.0.0.1", port)
    finally:
        if r is not None:
            problems = r.finish()
            assert not problems, problems
