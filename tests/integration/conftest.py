"""Fixtures for the rapi integration tests (real processes on loopback).

RAPI_BUILD (absolute path of the build directory; default <repo>/build) says
where rapi-server is. RAPI_SAN=1 marks the ASan+UBSan pass: the same checks
run, with longer upper bounds for the load tests.

Fixtures:
  rapi_server   path of the rapi-server binary (the test errors if missing)
  backend       "epoll" or "uring": every test using it runs on both, epoll with
                one shard hosted in the acceptor's thread, io_uring with two
                shard threads (see shard_workers)
  shard_workers the relay's default -w for the test: 1 with epoll, 2 with
                io_uring. A test marked @pytest.mark.all_modes runs in all four
                combinations instead: epoll and io_uring, each hosted (-w 1)
                and threaded (-w 2), ids epoll, uring, epoll-2shards,
                uring-hosted.
  start_relay   factory: start_relay(listen=[...], workers=None, key_file=None,
                config_file=None, extra_args=[], cli_flags=True, **options)
                -> relay.Relay,
                started with `-o io=<backend>` and `-o keyword=value` for each
                option (on top of DEFAULT_OPTIONS). Skips the test, loudly, when
                io_uring is unavailable. At teardown each relay is checked: test
                sockets closed -> relay back to its start-up socket count, then
                SIGTERM -> exit status 0, and no sanitizer report and no key in
                its stderr; any problem fails the test.
  relay         start_relay() with the defaults, or with the options of the
                test's @pytest.mark.relay_options(keyword=value, ...).
"""

import os
import resource

import pytest

from relay import Relay, RelayStartError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# (backend, default workers). Every test runs the first two pairings: one
# shard hosted in the acceptor's thread with epoll, two shard threads with
# io_uring, so each backend also covers one of the two threading modes.
# Tests marked all_modes run the other two as well.
MODES = [
    pytest.param("epoll", 1, id="epoll"),
    pytest.param("uring", 2, id="uring"),
]
ALL_MODES = MODES + [
    pytest.param("epoll", 2, id="epoll-2shards"),
    pytest.param("uring", 1, id="uring-hosted"),
]

# Defaults for every test relay: debug logging (so the key-leak check sees the
# most output) and a short drain so a forgotten connection cannot stall
# teardown. Everything else keeps the daemon's own defaults unless a test says.
DEFAULT_OPTIONS = {"log_level": "debug", "drain_timeout": 3}


def _raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 8192) if hard != resource.RLIM_INFINITY else 8192
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


_raise_nofile()

# The Makefile exports these for the sanitizer pass; set the same when the
# suite is run by hand with RAPI_SAN=1 (leaks -> exit 86, UB -> exit 87).
if os.environ.get("RAPI_SAN"):
    os.environ.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=86")
    os.environ.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1:exitcode=87")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "all_modes: run on both backends, each hosted (-w 1) and threaded (-w 2)")
    config.addinivalue_line(
        "markers", "relay_options(**options): the relay fixture's options for this test")


def _parametrizes(metafunc, name):
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0]
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",")]
        if name in names:
            return True
    return False


def pytest_generate_tests(metafunc):
    # A test that names its own backend (@pytest.mark.parametrize("backend",
    # ...)) keeps it, with the default workers for it.
    if "backend" not in metafunc.fixturenames or _parametrizes(metafunc, "backend"):
        return
    modes = ALL_MODES if metafunc.definition.get_closest_marker("all_modes") else MODES
    metafunc.parametrize(("backend", "shard_workers"), modes)


@pytest.fixture(scope="session")
def rapi_build():
    return os.environ.get("RAPI_BUILD") or os.path.join(REPO, "build")


@pytest.fixture(scope="session")
def rapi_server(rapi_build):
    path = os.path.join(rapi_build, "rapi-server")
    if not os.access(path, os.X_OK):
        pytest.fail("no rapi-server binary at %s (build it, or set RAPI_BUILD)" % path)
    return path


@pytest.fixture
def shard_workers(backend):
    # Only for a test that parametrizes backend itself: the MODES pairing.
    return 1 if backend == "epoll" else 2


def _uring_unavailable(err):
    text = err.stderr.lower()
    return err.returncode not in (None, 0) and ("uring" in text)


@pytest.fixture
def start_relay(rapi_server, backend, shard_workers, tmp_path):
    started = []

    def start(listen=("127.0.0.1:0",), workers=None, key_file=None, config_file=None,
              extra_args=(), cli_flags=True, **options):
        if workers is None:
            workers = shard_workers
        opts = dict(DEFAULT_OPTIONS) if cli_flags else {}
        opts.update(options)
        r = Relay(rapi_server, tmp_path / ("relay%d" % len(started)), backend=backend,
                  options=opts, listen=listen, workers=workers, key_file=key_file,
                  config_file=config_file, extra_args=extra_args,
                  cli_flags=cli_flags)
        try:
            r.start()
        except RelayStartError as e:
            if backend == "uring" and _uring_unavailable(e):
                line = [ln for ln in e.stderr.splitlines() if "uring" in ln.lower()][:1]
                pytest.skip("io_uring backend unavailable here: %s" % (line[0] if line else e))
            raise
        started.append(r)
        return r

    yield start
    problems = []
    for r in started:
        problems += r.finish()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def relay(start_relay, request):
    # @pytest.mark.relay_options(keyword=value, ...) starts it with those.
    m = request.node.get_closest_marker("relay_options")
    return start_relay(**(m.kwargs if m else {}))
