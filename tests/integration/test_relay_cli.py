"""rapi-server's command line: keygen, -t, config and key-file errors.

These do not relay traffic, so they run once (not per backend)."""

import os
import re
import stat
import subprocess
import time

import pytest

from relay import Relay, RelayStartError, read_key_file, run_cli, write_key_file

KEY_RE = re.compile(r"^[A-Za-z0-9]{64}$")


def test_keygen_writes_0600_key_file(rapi_server, tmp_path):
    path = tmp_path / "keys"
    rc, out = run_cli(rapi_server, ["keygen", str(path)])
    assert rc == 0, out
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    text = path.read_text()
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert len(lines) == 2, text
    server, client = read_key_file(str(path))
    assert server and KEY_RE.match(server), "bad server_key line"
    assert client and KEY_RE.match(client), "bad client_key line"
    assert server != client
    assert server not in out and client not in out, "keygen printed a key"
    # Fresh keys every time.
    rc, _ = run_cli(rapi_server, ["keygen", str(tmp_path / "keys2")])
    assert rc == 0
    assert read_key_file(str(tmp_path / "keys2")) != (server, client)


def test_keygen_refuses_to_overwrite(rapi_server, tmp_path):
    path = tmp_path / "keys"
    path.write_text("precious\n")
    rc, out = run_cli(rapi_server, ["keygen", str(path)])
    assert rc != 0
    assert path.read_text() == "precious\n"
    assert out.strip(), "no message"


def test_keygen_file_is_usable(rapi_server, tmp_path):
    path = tmp_path / "keys"
    assert run_cli(rapi_server, ["keygen", str(path)])[0] == 0
    r = Relay(rapi_server, tmp_path / "r", key_file=str(path), options={"drain_timeout": 2})
    try:
        r.start()
        lst = r.register("/kg/")
        r.link(lst, notify_timeout=60)
    finally:
        problems = r.finish()
    assert not problems, problems


def _conf(tmp_path, text, keys_mode=0o600):
    keys = tmp_path / "keys"
    write_key_file(str(keys), mode=keys_mode)
    conf = tmp_path / "rapi-server.conf"
    conf.write_text(text.replace("@KEYS@", str(keys)))
    return str(conf), str(keys)


def test_check_config_ok(rapi_server, tmp_path):
    conf, keys = _conf(tmp_path, "# ok\nlisten 127.0.0.1:0\nkeys @KEYS@\nworkers 2\n"
                                  "timeout 120\nmax_frame 64k\nio epoll\n")
    rc, out = run_cli(rapi_server, ["-t", "-c", conf])
    assert rc == 0, out
    assert "configuration ok" in out
    rc, out = run_cli(rapi_server, ["-t", "-c", conf, "-o", "keepalive=0", "-k", keys])
    assert rc == 0 and "configuration ok" in out, out


def test_check_config_unknown_keyword(rapi_server, tmp_path):
    conf, _ = _conf(tmp_path, "# line 1\nlisten 127.0.0.1:0\n\nkeys @KEYS@\nbogus_keyword 5\n")
    rc, out = run_cli(rapi_server, ["-t", "-c", conf])
    assert rc == 1, (rc, out)
    assert "configuration ok" not in out
    assert "%s:5" % conf in out and "bogus_keyword" in out, out


def test_check_config_bad_value(rapi_server, tmp_path):
    conf, _ = _conf(tmp_path, "keys @KEYS@\nworkers many\n")
    rc, out = run_cli(rapi_server, ["-t", "-c", conf])
    assert rc == 1, (rc, out)
    assert "workers" in out and "%s:2" % conf in out, out


@pytest.mark.parametrize("bad", ["bogus_keyword=1", "io=kqueue", "max_frame=-3"])
def test_bad_option_exits_nonzero(rapi_server, tmp_path, bad):
    _, keys = _conf(tmp_path, "")
    rc, out = run_cli(rapi_server, ["-t", "-k", keys, "-o", bad])
    assert rc == 1, (rc, out)
    assert bad.split("=")[0] in out, out
    rc, out = run_cli(rapi_server, ["-k", keys, "-l", "127.0.0.1:0", "-o", bad], timeout=10)
    assert rc != 0, out
    assert bad.split("=")[0] in out, out


def test_unknown_keyword_in_file_refuses_to_start(rapi_server, tmp_path):
    conf, _ = _conf(tmp_path, "listen 127.0.0.1:0\nkeys @KEYS@\nnot_a_keyword yes\n")
    rc, out = run_cli(rapi_server, ["-c", conf], timeout=10)
    assert rc != 0
    assert "%s:3" % conf in out and "not_a_keyword" in out, out
    assert "listening on" not in out


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_key_file_with_group_or_other_access_refused(rapi_server, tmp_path, mode):
    keys = tmp_path / "keys"
    server, client = write_key_file(str(keys), mode=mode)
    r = Relay(rapi_server, tmp_path / "r", key_file=str(keys))
    with pytest.raises(RelayStartError) as ei:
        r.start()
    e = ei.value
    assert e.returncode not in (None, 0), "started with a mode %o key file" % mode
    assert str(keys) in e.stderr, "message does not name the key file: %r" % e.stderr
    assert server not in e.stderr and client not in e.stderr
    r.err_file.close()
    # -t says the same and exits 1.
    rc, out = run_cli(rapi_server, ["-t", "-k", str(keys)])
    assert rc == 1 and str(keys) in out and "configuration ok" not in out, (rc, out)


def test_missing_or_bad_key_file(rapi_server, tmp_path):
    rc, out = run_cli(rapi_server, ["-t", "-k", str(tmp_path / "nope")])
    assert rc == 1 and "nope" in out, (rc, out)
    bad = tmp_path / "bad"
    fd = os.open(str(bad), os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"server_key onlyone_but_long_enough_key\n")
    os.close(fd)
    rc, out = run_cli(rapi_server, ["-t", "-k", str(bad)])
    assert rc == 1 and "onlyone_but_long_enough_key" not in out, (rc, out)


def test_help_and_version(rapi_server):
    for flag in ("-h", "-V"):
        rc, out = run_cli(rapi_server, [flag])
        assert rc == 0, (flag, rc, out)
        assert out.strip(), flag
    rc, out = run_cli(rapi_server, ["-h"])
    assert "-l" in out and "-c" in out and "keygen" in out, out


def test_listen_address_in_use_fails(rapi_server, tmp_path):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    keys = tmp_path / "keys"
    write_key_file(str(keys))
    try:
        p = subprocess.run([rapi_server, "-k", str(keys), "-l", "127.0.0.1:%d" % port],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=10)
    finally:
        s.close()
    assert p.returncode != 0
    assert str(port) in p.stdout.decode(errors="replace")


def test_io_uring_forced_reports_clearly(rapi_server, tmp_path):
    """-o io=uring either runs on io_uring or exits non-zero saying why."""
    keys = tmp_path / "keys"
    write_key_file(str(keys))
    r = Relay(rapi_server, tmp_path / "r", backend="uring", key_file=str(keys),
              options={"drain_timeout": 2})
    try:
        r.start()
    except RelayStartError as e:
        assert e.returncode not in (None, 0)
        assert "uring" in e.stderr.lower(), e.stderr
        r.err_file.close()
        pytest.skip("io_uring unavailable: %s" % e.stderr.strip().splitlines()[-1])
    t0 = time.monotonic()
    problems = r.finish()
    assert not problems, problems
    assert time.monotonic() - t0 < 5
