"""The packages and the systemd unit (packaging/).

- The unit passes `systemd-analyze verify` and scores at most 1.5 in
  `systemd-analyze security --offline=true` (the score is printed).
- The default configuration shows every keyword of rapi-server.conf(5), and
  with every line uncommented it is a valid configuration (`rapi-server -t`).
- `make deb` builds the four .debs (lintian: no error, no warning, inside
  `make deb`); they are installed on this machine (dpkg -i), their files,
  owners and modes checked; the installed `rapi-server -t` passes; the
  installed daemon is started the way the unit starts it (as the rapi user,
  with the unit's ExecStart, capabilities and LimitNOFILE) and one tunnel is
  carried through it by the installed `rapi expose` / `rapi connect`; a
  reinstall keeps the key file and a local edit of the conffile; purge leaves
  only what policy keeps (the rapi system user).
- `make rpm` builds the RPMs (rpmlint: no error, inside `make rpm`); their file
  lists, scriptlets and dependencies are checked.
- Seamless upgrade (issue 11): the unit's reload is `rapi-server -t` then
  SIGUSR2 (NotifyAccess=main for the MAINPID hand-over), its system-call
  filter admits what starting the new process and passing descriptors need
  (expanded with systemd-analyze); the installed unit's ExecReload, run as the
  unit runs it, hands a relay carrying a tunnel over to a new process. A
  package upgrade does not stop the relay: the .deb's postinst and the RPM's
  posttrans (run here with stubbed systemctl/deb-systemd-invoke in a private
  mount namespace, /run/systemd/system present only there) reload a relay that
  handles SIGUSR2 and restart one that would die of it. This machine's PID 1
  is not systemd, so no real `systemctl reload` runs here.

Installing needs root: without it those tests are SKIPPED, loudly. The
sanitizer pass skips the module: the packages do not use the sanitizer build.

Environment: RAPI_BUILD (unused but for the skip), RAPI_SAN.
"""

import fcntl
import os
import pwd
import re
import resource
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest

from test_tls_client import read_exact

REPO = Path(__file__).resolve().parents[2]
VERSION = (REPO / "VERSION").read_text().strip()
UNIT = REPO / "packaging/systemd/rapi-server.service"
CONF = REPO / "packaging/rapi-server.conf"
CONF_MAN = REPO / "man/rapi-server.conf.5"
PACKAGES = ["rapi-server", "rapi", "librapi0", "librapi-dev"]
BUILD_TIMEOUT = 300
STEP_TIMEOUT = 30
MAX_SECURITY_SCORE = 1.5
DPKG_LOCK_WAIT = 60

if os.environ.get("RAPI_SAN"):
    pytest.skip("sanitizer pass: the packages are built without sanitizers, packaging tests "
                "run in the plain pass only (SKIPPED here)", allow_module_level=True)


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env.update(extra)
    return env


def run(argv, timeout=STEP_TIMEOUT, check=True, **kw):
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                       env=kw.pop("env", None) or clean_env(), **kw)
    out = r.stdout.decode(errors="replace")
    if check:
        assert r.returncode == 0, "%s failed (%d):\n%s" % (" ".join(argv), r.returncode, out[-4000:])
    return r.returncode, out


def unit_keys(text):
    """The unit's Key=value lines (repeated keys joined by newlines)."""
    keys = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z]+)=(.*)$", line)
        if m:
            keys[m.group(1)] = (keys[m.group(1)] + "\n" if m.group(1) in keys else "") + m.group(2)
    return keys


# ---------------------------------------------------------------- the unit
def test_unit_security_score():
    rc, out = run(["systemd-analyze", "security", "--offline=true", "--no-pager", str(UNIT)],
                  check=False)
    m = re.search(r"Overall exposure level for rapi-server.service: ([0-9.]+)", out)
    assert m, out
    score = float(m.group(1))
    print("systemd-analyze security --offline=true: %.1f (at most %.1f)" % (score, MAX_SECURITY_SCORE))
    assert score <= MAX_SECURITY_SCORE, out


def test_unit_content():
    k = unit_keys(UNIT.read_text())
    assert k["Type"] == "notify"
    # systemctl reload: check the configuration, then the hand-over (SIGUSR2).
    assert k["ExecReload"].splitlines() == ["/usr/sbin/rapi-server -c /etc/rapi/rapi-server.conf -t",
                                            "/bin/kill -USR2 $MAINPID"]
    # The old main process sends MAINPID=<new>, then the new one READY=1.
    assert k["NotifyAccess"] == "main"
    assert "systemctl kill -s HUP --kill-whom=main rapi-server" in UNIT.read_text()
    assert k["Restart"] == "on-failure"
    assert int(k["LimitNOFILE"]) >= 2 * 1000 * 1000, "a million tunnels need two fds each"
    assert set(k["AmbientCapabilities"].split()) == {"CAP_NET_BIND_SERVICE", "CAP_SYS_RESOURCE"}
    assert set(k["CapabilityBoundingSet"].split()) == {"CAP_NET_BIND_SERVICE", "CAP_SYS_RESOURCE"}
    allow = k["SystemCallFilter"].splitlines()[0].split()
    for sc in ("io_uring_setup", "io_uring_enter", "io_uring_register"):
        assert sc in allow, "SystemCallFilter must admit %s" % sc
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices",
                "MemoryDenyWriteExecute", "ProtectKernelTunables", "ProtectKernelModules",
                "ProtectKernelLogs", "LockPersonality", "RestrictNamespaces"):
        assert k.get(key) == "yes", key
    assert k["ProtectSystem"] == "strict"


def expand_syscalls(group, cache={}):
    """The system calls of a systemd-analyze syscall-filter group, nested
    groups expanded."""
    if group not in cache:
        out = run(["systemd-analyze", "syscall-filter", "--no-pager", group])[1]
        calls = set()
        for ln in out.splitlines()[1:]:
            ln = ln.strip()
            if ln.startswith("@"):
                calls |= expand_syscalls(ln)
            elif ln and not ln.startswith("#"):
                calls.add(ln)
        cache[group] = calls
    return cache[group]


# What the hand-over needs: spawn the new binary (posix_spawn: clone/clone3 or
# vfork, execve, close_range for the fds >= 3), the socketpair and SCM_RIGHTS,
# reaping or killing the child, reading /proc/self/exe.
HANDOVER_SYSCALLS = ["clone", "clone3", "vfork", "execve", "close_range", "socketpair",
                     "sendmsg", "recvmsg", "wait4", "waitid", "kill", "readlink", "dup3",
                     "rt_sigprocmask", "getsockname"]


def test_unit_allows_the_handover():
    """The unit's SystemCallFilter (allow list minus the ~ deny lists) and
    RestrictAddressFamilies let the relay start its successor and pass it
    descriptors."""
    k = unit_keys(UNIT.read_text())
    allowed, denied = set(), set()
    for line in k["SystemCallFilter"].splitlines():
        deny = line.startswith("~")
        for item in line.lstrip("~").split():
            calls = expand_syscalls(item) if item.startswith("@") else {item}
            (denied if deny else allowed).update(calls)
    missing = [c for c in HANDOVER_SYSCALLS if c not in allowed or c in denied]
    assert not missing, "SystemCallFilter refuses what the hand-over needs: %s" % missing
    assert "AF_UNIX" in k["RestrictAddressFamilies"].split()
    print("SystemCallFilter admits %s" % " ".join(HANDOVER_SYSCALLS))


def test_unit_verifies(tmp_path):
    """systemd-analyze verify on the unit as `make install` writes it, with the
    binary it names present (a non-DESTDIR install under tmp_path)."""
    prefix = tmp_path / "p"
    rc, out = run(["make", "--no-print-directory", "-C", str(REPO), "install",
                   "PREFIX=" + str(prefix), "BUILD=" + (os.environ.get("RAPI_BUILD") or
                                                      str(REPO / "build"))], timeout=BUILD_TIMEOUT)
    unit = prefix / "lib/systemd/system/rapi-server.service"
    assert str(prefix / "sbin/rapi-server") in unit.read_text()
    rc, out = run(["systemd-analyze", "verify", "--man=no", str(unit)], check=False)
    # Only the host's own units may complain (this machine may not boot with
    # systemd); nothing about ours.
    ours = [ln for ln in out.splitlines() if "rapi-server" in ln]
    assert rc == 0 and not ours, out


# ---------------------------------------------------------------- default config
def man_keywords():
    text = CONF_MAN.read_text()
    section = text.split(".SH KEYWORDS", 1)[1].split("\n.SH ", 1)[0]
    return re.findall(r"^\.TP\n\.B (\w+)$", section, re.M)


def test_default_config_shows_every_keyword(tmp_path):
    words = man_keywords()
    assert len(words) >= 15, words
    conf = CONF.read_text()
    shown = re.findall(r"^#(\w+) \S", conf, re.M)
    missing = [w for w in words if w not in shown]
    assert not missing, "keywords of rapi-server.conf(5) missing from %s: %s" % (CONF.name, missing)
    unknown = [w for w in shown if w not in words]
    assert not unknown, "keywords not in the man page: %s" % unknown


def test_default_config_uncommented_is_valid(tmp_path):
    server = Path(os.environ.get("RAPI_BUILD") or REPO / "build") / "rapi-server"
    keys = tmp_path / "keys"
    run([str(server), "keygen", str(keys)])
    lines = []
    for ln in CONF.read_text().splitlines():
        m = re.match(r"^#(\w+ \S.*)$", ln)
        if m:
            ln = m.group(1).replace("/etc/rapi/keys", str(keys))
        lines.append(ln)
    conf = tmp_path / "rapi-server.conf"
    conf.write_text("\n".join(lines) + "\n")
    rc, out = run([str(server), "-c", str(conf), "-t"], check=False)
    assert rc == 0 and "configuration ok" in out, out


# ---------------------------------------------------------------- deb
@pytest.fixture(scope="module")
def debs(tmp_path_factory):
    b = tmp_path_factory.mktemp("debbuild")
    t0 = time.monotonic()
    rc, out = run(["make", "--no-print-directory", "-C", str(REPO), "BUILD=" + str(b), "deb"],
                  timeout=BUILD_TIMEOUT)
    print("make deb (with lintian, no error or warning) took %.0f s" % (time.monotonic() - t0))
    arch = run(["dpkg", "--print-architecture"])[1].strip()
    files = {p: b / "pkg" / ("%s_%s_%s.deb" % (p, VERSION, arch)) for p in PACKAGES}
    for p, f in files.items():
        assert f.is_file(), "%s not built:\n%s" % (f.name, out[-3000:])
    return files


def deb_contents(deb):
    """path -> (mode string, owner/group) for each entry of a .deb."""
    out = run(["dpkg-deb", "-c", str(deb)])[1]
    entries = {}
    for ln in out.splitlines():
        f = ln.split()
        path = f[5][1:].rstrip("/") or "/"
        entries[path] = (f[0], f[1])
    return entries


DEB_FILES = {
    "rapi-server": {"/usr/sbin/rapi-server": "-rwxr-xr-x",
                    "/etc/rapi/rapi-server.conf": "-rw-r--r--",
                    "/lib/systemd/system/rapi-server.service": "-rw-r--r--",
                    "/usr/share/man/man8/rapi-server.8.gz": "-rw-r--r--",
                    "/usr/share/man/man5/rapi-server.conf.5.gz": "-rw-r--r--"},
    "rapi": {"/usr/bin/rapi": "-rwxr-xr-x", "/usr/bin/rapi-bench": "-rwxr-xr-x",
             "/usr/share/man/man1/rapi.1.gz": "-rw-r--r--",
             "/usr/share/man/man1/rapi-bench.1.gz": "-rw-r--r--"},
    "librapi0": {"/usr/lib/{ma}/librapi.so.0": "-rw-r--r--"},
    "librapi-dev": {"/usr/include/rapi.h": "-rw-r--r--",
                    "/usr/lib/{ma}/librapi.a": "-rw-r--r--",
                    "/usr/lib/{ma}/librapi.so": "lrwxrwxrwx",
                    "/usr/lib/{ma}/pkgconfig/librapi.pc": "-rw-r--r--",
                    "/usr/share/man/man3/librapi.3.gz": "-rw-r--r--"},
}


def multiarch():
    return run(["dpkg-architecture", "-qDEB_HOST_MULTIARCH"])[1].strip()


def test_deb_file_lists(debs):
    ma = multiarch()
    for pkg, want in DEB_FILES.items():
        got = deb_contents(debs[pkg])
        files = {p: m for p, (m, _) in got.items() if not m.startswith("d")
                 and not p.startswith("/usr/share/doc/")}
        want = {p.format(ma=ma): m for p, m in want.items()}
        assert files == want, "%s: files differ:\n%s" % (pkg, sorted(files.items()))
        assert all(o == "root/root" for _, o in got.values()), "%s: not all root/root" % pkg
        assert "/usr/share/doc/%s/copyright" % pkg in got


def dpkg_installed(pkg):
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL)
    return b"installed" in r.stdout or b"config-files" in r.stdout


def dpkg(args, check=True):
    """dpkg, waiting (bounded) while another dpkg or apt holds its lock."""
    deadline = time.monotonic() + DPKG_LOCK_WAIT
    while True:
        rc, out = run(["dpkg"] + args, timeout=120, check=False,
                      env=clean_env(DEBIAN_FRONTEND="noninteractive"))
        if rc == 0 or "lock" not in out or time.monotonic() > deadline:
            break
        time.sleep(1)
    if check:
        assert rc == 0, "dpkg %s failed (%d):\n%s" % (" ".join(args), rc, out[-4000:])
    return rc, out


def purge_all():
    present = [p for p in PACKAGES if dpkg_installed(p)]
    if present:
        dpkg(["--purge"] + present)


def dpkg_install(debs):
    rc, out = dpkg(["-i"] + [str(debs[p]) for p in PACKAGES], check=False)
    if rc != 0:
        # Missing dependencies: let apt bring them in, then configure.
        run(["apt-get", "-o", "DPkg::Lock::Timeout=%d" % DPKG_LOCK_WAIT, "-f", "install", "-y",
             "-qq", "--no-install-recommends"], timeout=300,
            env=clean_env(DEBIAN_FRONTEND="noninteractive"))
    for p in PACKAGES:
        assert dpkg_installed(p), "%s not installed:\n%s" % (p, out)


@pytest.fixture(scope="module")
def installed_debs(debs):
    if os.geteuid() != 0:
        pytest.skip("NOT ROOT: cannot install packages here; the deb install, run and purge "
                    "test is SKIPPED")
    # One packaging test at a time on this machine (other checkouts may run
    # theirs): the packages and /etc/rapi are machine-wide.
    with open("/run/lock/rapi-packaging-test.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        purge_all()
        dpkg_install(debs)
        try:
            yield debs
        finally:
            purge_all()


def mode_owner(path):
    st = os.lstat(path)
    return (stat.S_IMODE(st.st_mode), pwd.getpwuid(st.st_uid).pw_name)


def test_deb_install_state(installed_debs):
    user = pwd.getpwnam("rapi")
    assert user.pw_uid < 1000, "rapi is not a system user"
    assert user.pw_shell in ("/usr/sbin/nologin", "/bin/false"), user.pw_shell
    assert mode_owner("/etc/rapi/keys") == (0o600, "rapi")
    assert mode_owner("/etc/rapi/rapi-server.conf") == (0o644, "root")
    assert mode_owner("/usr/sbin/rapi-server") == (0o755, "root")
    conffiles = Path("/var/lib/dpkg/info/rapi-server.conffiles").read_text().split()
    assert "/etc/rapi/rapi-server.conf" in conffiles
    text = Path("/etc/rapi/keys").read_text()
    assert re.search(r"^server_key \S{64}$", text, re.M) and re.search(r"^client_key \S{64}$",
                                                                       text, re.M)
    rc, out = run(["/usr/sbin/rapi-server", "-t"])
    assert "configuration ok" in out
    rc, out = run(["/usr/sbin/rapi-server", "-V"])
    assert VERSION in out, out


def echo_server(conns=1):
    """A loopback echo server for conns connections, one after the other
    accepted but each served in its own thread."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    srv.settimeout(STEP_TIMEOUT)

    def echo(c):
        with c:
            while True:
                d = c.recv(65536)
                if not d:
                    break
                c.sendall(d)
            c.shutdown(socket.SHUT_WR)

    def serve():
        for _ in range(conns):
            try:
                c, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=echo, args=(c,), daemon=True).start()
    threading.Thread(target=serve, daemon=True).start()
    return srv


def wait_line(path, pattern, proc, timeout=STEP_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, Path(path).read_text(errors="replace"))
        if m:
            return m
        assert proc.poll() is None, "exited %s:\n%s" % (proc.returncode, Path(path).read_text())
        time.sleep(0.05)
    raise AssertionError("no %r within %ds:\n%s" % (pattern, timeout, Path(path).read_text()))


CAP_BITS = {"CAP_NET_BIND_SERVICE": 10, "CAP_SYS_RESOURCE": 24}


def bounding_caps():
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"^CapBnd:\s+([0-9a-f]+)$", status, re.M).group(1), 16)


def unit_command(tmp_path):
    """The installed unit's ExecStart, run as its User with its capabilities
    and LimitNOFILE (clamped to what this machine lets root set: systemd
    raises fs.nr_open at boot, a container may not), on a kernel-chosen
    loopback port instead of the default one."""
    k = unit_keys(Path("/lib/systemd/system/rapi-server.service").read_text())
    caps = ",".join("+" + c[4:].lower() for c in k["AmbientCapabilities"].split()
                    if c in CAP_BITS and bounding_caps() >> CAP_BITS[c] & 1)
    if len(caps.split(",")) < len(k["AmbientCapabilities"].split()):
        print("this machine's bounding set lacks some of %s: running with %s"
              % (k["AmbientCapabilities"], caps or "none"))
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile = min(int(k["LimitNOFILE"]), int(Path("/proc/sys/fs/nr_open").read_text()),
                 hard if hard != resource.RLIM_INFINITY else int(k["LimitNOFILE"]))
    if nofile < int(k["LimitNOFILE"]):
        print("LimitNOFILE %s clamped to %d on this machine" % (k["LimitNOFILE"], nofile))
    return (["prlimit", "--nofile=%d:%d" % (nofile, nofile), "--",
             "setpriv", "--reuid=" + k["User"], "--regid=" + k["Group"], "--init-groups",
             "--inh-caps=" + (caps or "-all"), "--ambient-caps=" + (caps or "-all"),
             "--no-new-privs", "--"]
            + shlex.split(k["ExecStart"]) + ["-l", "127.0.0.1:0"])


def test_deb_daemon_carries_a_tunnel(installed_debs, tmp_path):
    procs = []
    srv = echo_server()
    try:
        log = tmp_path / "server.log"
        relay = subprocess.Popen(unit_command(tmp_path), stdout=subprocess.DEVNULL,
                                 stderr=open(log, "wb"), cwd="/")
        procs.append(relay)
        m = wait_line(log, r"listening on 127\.0\.0\.1:(\d+)", relay)
        port = int(m.group(1))
        status = Path("/proc/%d/status" % relay.pid).read_text()
        assert re.search(r"^Uid:\s+%d\b" % pwd.getpwnam("rapi").pw_uid, status, re.M), status
        amb = int(re.search(r"^CapAmb:\s+([0-9a-f]+)$", status, re.M).group(1), 16)
        assert amb >> CAP_BITS["CAP_NET_BIND_SERVICE"] & 1, "no ambient CAP_NET_BIND_SERVICE"
        env = clean_env(RAPI_KEY_FILE="/etc/rapi/keys")
        elog = tmp_path / "expose.log"
        expose = subprocess.Popen(["/usr/bin/rapi", "expose", "rws://127.0.0.1:%d/pkg" % port,
                                   "--to", "127.0.0.1:%d" % srv.getsockname()[1]],
                                  stdout=subprocess.DEVNULL, stderr=open(elog, "wb"), env=env)
        procs.append(expose)
        wait_line(elog, r"registered /pkg", expose)
        data = b"".join(b"through the packaged relay %d\n" % i for i in range(2000))
        r = subprocess.run(["/usr/bin/rapi", "connect", "rwr://127.0.0.1:%d/pkg" % port],
                           input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                           timeout=STEP_TIMEOUT)
        assert r.returncode == 0, r.stderr
        assert r.stdout == data
        relay.terminate()
        assert relay.wait(STEP_TIMEOUT) == 0, log.read_text()
        keys = Path("/etc/rapi/keys").read_text().split()
        assert not any(k in log.read_text() for k in keys if len(k) == 64), "a key in the log"
    finally:
        srv.close()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_deb_unit_reload_hands_over(installed_debs, tmp_path):
    """The installed unit's ExecReload lines, run as the unit runs them (its
    user, $MAINPID), hand the installed relay over to a new process: an open
    tunnel keeps working across it, a new one works after it, and the old
    process exits."""
    procs, pids = [], []
    srv = echo_server(conns=2)
    try:
        log = tmp_path / "server.log"
        relay = subprocess.Popen(unit_command(tmp_path), stdout=subprocess.DEVNULL,
                                 stderr=open(log, "wb"), cwd="/")
        procs.append(relay)
        port = int(wait_line(log, r"listening on 127\.0\.0\.1:(\d+)", relay).group(1))
        env = clean_env(RAPI_KEY_FILE="/etc/rapi/keys")
        elog, clog = tmp_path / "expose.log", tmp_path / "connect.log"
        procs.append(subprocess.Popen(
            ["/usr/bin/rapi", "expose", "rws://127.0.0.1:%d/pkg" % port, "--to",
             "127.0.0.1:%d" % srv.getsockname()[1]],
            stdout=subprocess.DEVNULL, stderr=open(elog, "wb"), env=env))
        wait_line(elog, r"registered /pkg", procs[-1])
        procs.append(subprocess.Popen(
            ["/usr/bin/rapi", "connect", "rwr://127.0.0.1:%d/pkg" % port, "--listen",
             "127.0.0.1:0"], stdout=subprocess.DEVNULL, stderr=open(clog, "wb"), env=env))
        lport = int(wait_line(clog, r"listening on 127\.0\.0\.1:(\d+)", procs[-1]).group(1))
        tunnel = socket.create_connection(("127.0.0.1", lport), timeout=STEP_TIMEOUT)
        tunnel.sendall(b"before\n")
        assert read_exact(tunnel, 7) == b"before\n"

        k = unit_keys(Path("/lib/systemd/system/rapi-server.service").read_text())
        as_unit = ["setpriv", "--reuid=" + k["User"], "--regid=" + k["Group"], "--init-groups",
                   "--no-new-privs", "--"]
        for line in k["ExecReload"].splitlines():
            argv = [a.replace("$MAINPID", str(relay.pid)) for a in shlex.split(line)]
            run(as_unit + argv)
        new_pid = int(wait_line(log, r"handed over to pid (\d+)", relay).group(1))
        pids.append(new_pid)
        assert Path("/proc/%d/exe" % new_pid).resolve() == Path("/usr/sbin/rapi-server")

        tunnel.sendall(b"after\n")
        assert read_exact(tunnel, 6) == b"after\n"
        tunnel.shutdown(socket.SHUT_WR)
        assert read_exact(tunnel, 1) == b"", "the tunnel did not end with EOF"
        tunnel.close()
        data = b"through the new process\n" * 100
        r = subprocess.run(["/usr/bin/rapi", "connect", "rwr://127.0.0.1:%d/pkg" % port],
                           input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                           timeout=STEP_TIMEOUT)
        assert r.returncode == 0 and r.stdout == data, r.stderr
        assert relay.wait(STEP_TIMEOUT) == 0, "the old relay did not exit 0:\n" + log.read_text()
    finally:
        srv.close()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(STEP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        for pid in pids:
            deadline = time.monotonic() + STEP_TIMEOUT
            while running(pid) and time.monotonic() < deadline:
                time.sleep(0.05)


def running(pid):
    """pid exists and is not a zombie (its new parent may not reap it)."""
    try:
        return Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()[0] not in "ZX"
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_deb_reinstall_keeps_keys_and_conffile_then_purge(installed_debs):
    keys_before = Path("/etc/rapi/keys").read_bytes()
    conf = Path("/etc/rapi/rapi-server.conf")
    conf.write_text(conf.read_text() + "# a local edit\n")
    dpkg_install(installed_debs)
    assert Path("/etc/rapi/keys").read_bytes() == keys_before, "reinstall changed the keys"
    assert conf.read_text().endswith("# a local edit\n"), "reinstall lost the local edit"
    assert mode_owner("/etc/rapi/keys") == (0o600, "rapi")
    owned = run(["dpkg", "-L"] + PACKAGES)[1].split()
    purge_all()
    for p in PACKAGES:
        assert not dpkg_installed(p), p
    left = [f for f in owned if not os.path.isdir(f) and os.path.lexists(f)]
    assert not left, "purge left files: %s" % left
    assert not os.path.exists("/etc/rapi"), "purge left /etc/rapi: %s" % os.listdir("/etc/rapi")
    # Debian policy keeps the system user (files it owned may remain elsewhere).
    assert pwd.getpwnam("rapi")


# ---------------------------------------------------------------- rpm
@pytest.fixture(scope="module")
def rpms(tmp_path_factory):
    if not shutil.which("rpmbuild"):
        pytest.fail("rpmbuild missing: run make deps")
    b = tmp_path_factory.mktemp("rpmbuild")
    t0 = time.monotonic()
    rc, out = run(["make", "--no-print-directory", "-C", str(REPO), "BUILD=" + str(b), "rpm"],
                  timeout=BUILD_TIMEOUT)
    lint = [ln for ln in out.splitlines() if "packages and" in ln and "checked" in ln]
    print("make rpm took %.0f s; rpmlint: %s" % (time.monotonic() - t0, lint))
    assert lint and " 0 errors" in lint[-1], out[-3000:]
    found = {p.name.rsplit("-%s-" % VERSION, 1)[0]: p for p in (b / "pkg").glob("*.rpm")}
    assert sorted(found) == ["librapi-devel", "librapi0", "rapi", "rapi-server"], found
    return found


def rpm_q(args, rpm):
    return run(["rpm", "-qp"] + args + [str(rpm)])[1]


RPM_FILES = {
    "rapi-server": ["/etc/rapi", "/etc/rapi/keys", "/etc/rapi/rapi-server.conf",
                    "/usr/lib/systemd/system/rapi-server.service", "/usr/sbin/rapi-server",
                    "/usr/share/man/man5/rapi-server.conf.5", "/usr/share/man/man8/rapi-server.8"],
    "rapi": ["/usr/bin/rapi", "/usr/bin/rapi-bench", "/usr/share/man/man1/rapi-bench.1",
             "/usr/share/man/man1/rapi.1"],
    "librapi0": ["/usr/lib64/librapi.so.0"],
    "librapi-devel": ["/usr/include/rapi.h", "/usr/lib64/librapi.a", "/usr/lib64/librapi.so",
                      "/usr/lib64/pkgconfig/librapi.pc", "/usr/share/man/man3/librapi.3"],
}


def test_rpm_file_lists(rpms):
    for pkg, want in RPM_FILES.items():
        files = [f for f in rpm_q(["-l"], rpms[pkg]).split()
                 if not f.startswith("/usr/share/licenses/")]
        # man pages may carry the compressor's suffix
        files = sorted(re.sub(r"\.(gz|bz2|xz|zst)$", "", f) for f in files)
        assert files == sorted(want), "%s: %s" % (pkg, files)


def test_rpm_scriptlets_and_dependencies(rpms):
    scripts = rpm_q(["--scripts"], rpms["rapi-server"])
    assert re.search(r"useradd -r -g rapi .* rapi", scripts), scripts
    assert "rapi-server keygen /etc/rapi/keys" in scripts and "[ ! -e /etc/rapi/keys ]" in scripts
    assert "/sbin/ldconfig" in rpm_q(["--scripts"], rpms["librapi0"])
    conf = rpm_q(["-c"], rpms["rapi-server"]).split()
    assert "/etc/rapi/rapi-server.conf" in conf
    req = rpm_q(["-R"], rpms["rapi-server"])
    # jemalloc is linked statically where its PIC archive exists (Makefile).
    for lib in ("libwolfssl", "liburing"):
        assert lib in req, "rapi-server requires no %s:\n%s" % (lib, req)
    dev = rpm_q(["-R"], rpms["librapi-devel"])
    assert re.search(r"^librapi0\(\S+\) = %s-" % re.escape(VERSION), dev, re.M), dev
    assert "librapi.so.0()" in rpm_q(["--provides"], rpms["librapi0"])


# ---------------------------------------------------------------- upgrades
# The maintainer scripts run with stubs: systemctl answers is-active (yes)
# and show -p MainPID (STUB_MAINPID); every call is logged to STUB_LOG.
STUBS = {
    "systemctl": 'echo "systemctl $*" >>"$STUB_LOG"\n'
                 'case "$*" in *"show -p MainPID"*) echo "$STUB_MAINPID";; esac\nexit 0\n',
    "deb-systemd-invoke": 'echo "deb-systemd-invoke $*" >>"$STUB_LOG"\nexit 0\n',
    "deb-systemd-helper": 'echo "deb-systemd-helper $*" >>"$STUB_LOG"\nexit 0\n',
    "getent": "exit 0\n",
    "adduser": "exit 0\n",
    "rapi-server": "exit 0\n",
    "chown": "exit 0\n",
    "chmod": "exit 0\n",
}

# Stand-ins for a running relay: one blocks SIGUSR2 (as a relay that reads it
# from a signalfd), one leaves it at its default action (a relay from before
# the hand-over, which SIGUSR2 would kill).
STAND_IN = ("import signal, sys, time\n"
            "if sys.argv[1] == 'block':\n"
            "    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)\n")


def need_root_namespace():
    if os.geteuid() != 0:
        pytest.skip("NOT ROOT: the maintainer scripts run in a private mount namespace; "
                    "SKIPPED")
    r = subprocess.run(["unshare", "-m", "true"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        pytest.skip("unshare -m refused here (%s): maintainer-script test SKIPPED" % r.stdout)


def run_script(tmp_path, script, args, mainpid):
    """Run a maintainer script as if systemd were PID 1 (a tmpfs /run holding
    /run/systemd/system, in a private mount namespace), with the stubs first
    in PATH. Returns the logged systemctl/deb-systemd-* calls."""
    stubs = tmp_path / "stubs"
    stubs.mkdir(exist_ok=True)
    for name, body in STUBS.items():
        f = stubs / name
        f.write_text("#!/bin/sh\n" + body)
        f.chmod(0o755)
    log = tmp_path / ("calls-%d.log" % time.monotonic_ns())
    log.write_text("")
    env = clean_env(PATH="%s:%s" % (stubs, os.environ["PATH"]), STUB_LOG=str(log),
                    STUB_MAINPID=str(mainpid))
    env.pop("DPKG_ROOT", None)
    inner = ('mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/system && exec sh "$0" "$@"')
    rc, out = run(["unshare", "-m", "sh", "-c", inner, str(script)] + list(args), env=env,
                  check=False)
    assert rc == 0, "%s %s exited %d:\n%s" % (script.name, args, rc, out)
    return log.read_text().splitlines()


def stand_in(mode):
    p = subprocess.Popen(["python3", "-c", STAND_IN, mode], stdout=subprocess.PIPE)
    assert p.stdout.readline().strip() == b"ready"
    return p


def check_handover_choice(tmp_path, script, args, want_reload, want_restart):
    """With a stand-in that handles SIGUSR2 the script reloads, with one that
    does not it restarts; nothing else reloads, restarts or stops."""
    procs = [stand_in("block"), stand_in("default")]
    try:
        for p, want in zip(procs, (want_reload, want_restart)):
            calls = run_script(tmp_path, script, args, p.pid)
            acts = [c for c in calls if re.search(r"\b(reload|restart|try-restart|stop)\b", c)
                    and "daemon-reload" not in c]
            assert acts == [want], "%s %s with pid %d (%s): %s" % (
                script.name, " ".join(args), p.pid, "blocks USR2" if p is procs[0] else
                "default USR2", calls)
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_deb_upgrade_hands_over(debs, tmp_path):
    """rapi-server.deb: an upgrade does not stop the relay (no preinst/prerm
    stop, no debhelper restart); the postinst reloads (hands over) a relay
    that handles SIGUSR2 and restarts one that does not; a fresh install does
    neither."""
    need_root_namespace()
    ctl = tmp_path / "control"
    run(["dpkg-deb", "-e", str(debs["rapi-server"]), str(ctl)])
    postinst = ctl / "postinst"
    text = postinst.read_text()
    assert "_dh_action=restart" not in text and "deb-systemd-invoke restart" not in text, text
    for name in ("preinst", "prerm"):
        if (ctl / name).exists():
            calls = run_script(tmp_path, ctl / name, ["upgrade", VERSION], 1)
            assert not any("stop" in c for c in calls), "%s stops on upgrade: %s" % (name, calls)
    check_handover_choice(tmp_path, postinst, ["configure", "0.0.1"],
                          "deb-systemd-invoke reload rapi-server.service",
                          "deb-systemd-invoke try-restart rapi-server.service")
    p = stand_in("block")
    try:
        calls = run_script(tmp_path, postinst, ["configure", ""], p.pid)
    finally:
        p.kill()
        p.wait()
    assert not any(re.search(r"\b(reload|restart)\b", c) and "daemon-reload" not in c
                   for c in calls), "a fresh install reloads or restarts: %s" % calls


def rpm_scriptlet(rpm, name):
    """The body of one scriptlet (e.g. posttrans) of an RPM."""
    out = rpm_q(["--scripts"], rpm)
    m = re.search(r"^%s scriptlet \(using /bin/sh\):\n(.*?)(?=^\w+ scriptlet \(|\Z)" % name,
                  out, re.S | re.M)
    assert m, "no %s scriptlet:\n%s" % (name, out)
    return m.group(1)


def test_rpm_upgrade_hands_over(rpms, tmp_path):
    """rapi-server.rpm: no restart in %postun; %posttrans reloads a relay
    that handles SIGUSR2 and restarts one that does not."""
    need_root_namespace()
    post_un = [ln for ln in rpm_scriptlet(rpms["rapi-server"], "postuninstall").splitlines()
               if not ln.lstrip().startswith("#")]
    assert not any("restart" in ln for ln in post_un), post_un
    body = rpm_scriptlet(rpms["rapi-server"], "posttrans")
    script = tmp_path / "posttrans.sh"
    script.write_text(body)
    check_handover_choice(tmp_path, script, [], "systemctl reload rapi-server.service",
                          "systemctl try-restart rapi-server.service")


def test_built_relay_handles_usr2(tmp_path):
    """The relay these packages ship handles SIGUSR2 (the scripts above would
    otherwise restart it): its main thread catches or blocks it."""
    server = Path(os.environ.get("RAPI_BUILD") or REPO / "build") / "rapi-server"
    keys = tmp_path / "keys"
    run([str(server), "keygen", str(keys)])
    log = tmp_path / "relay.log"
    p = subprocess.Popen([str(server), "-l", "127.0.0.1:0", "-k", str(keys)],
                         stdout=subprocess.DEVNULL, stderr=open(log, "wb"))
    try:
        wait_line(log, r"listening on", p)
        status = Path("/proc/%d/status" % p.pid).read_text()
        masks = [int(v, 16) for v in re.findall(r"^Sig(?:Cgt|Blk):\s+([0-9a-f]+)$", status, re.M)]
        assert any(m >> (signal.SIGUSR2 - 1) & 1 for m in masks), (
            "rapi-server neither catches nor blocks SIGUSR2: `systemctl reload` would kill it: "
            + " ".join(re.findall(r"^Sig(?:Cgt|Blk):.*$", status, re.M)))
    finally:
        p.terminate()
        p.wait(STEP_TIMEOUT)
