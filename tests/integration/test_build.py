"""The build itself: `make install`, the one version source, and the Makefile's
promises (plain `make` needs no Criterion, no pkg-config noise before `make
deps`, fuzz builds honour BUILD and CC).

- `make install DESTDIR=tmp PREFIX=/usr` installs exactly the expected files
  with the expected modes, and a tiny program compiles and links against the
  installed librapi through the installed pkg-config file, then runs.
- VERSION is the one version source: the pkg-config file, every man page's .TH
  line, rapi.h's RAPI_VERSION, the Debian changelog and the RPM spec agree
  with it.

Environment: RAPI_BUILD = absolute build dir (default <repo>/build).
"""

import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VERSION = (REPO / "VERSION").read_text().strip()
MAKE_TIMEOUT = 300


def build_dir():
    return os.environ.get("RAPI_BUILD") or str(REPO / "build")


def clean_env(**extra):
    """The environment for a nested make: without the outer make's flags (the
    sanitizer pass passes CC, SAN and BUILD through MAKEFLAGS)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env.update(extra)
    return env


def make(args, env=None, timeout=MAKE_TIMEOUT):
    r = subprocess.run(["make", "--no-print-directory"] + list(args), cwd=REPO,
                       env=env or clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


# The tree `make install PREFIX=/usr` lays down: path -> mode (None: symlink).
EXPECTED = {
    "usr/sbin/rapi-server": 0o755,
    "usr/bin/rapi": 0o755,
    "usr/bin/rapi-bench": 0o755,
    "usr/lib/librapi.a": 0o644,
    "usr/lib/librapi.so.0": 0o755,
    "usr/lib/librapi.so": None,
    "usr/lib/pkgconfig/librapi.pc": 0o644,
    "usr/include/rapi.h": 0o644,
    "usr/share/man/man1/rapi.1": 0o644,
    "usr/share/man/man1/rapi-bench.1": 0o644,
    "usr/share/man/man3/librapi.3": 0o644,
    "usr/share/man/man5/rapi-server.conf.5": 0o644,
    "usr/share/man/man8/rapi-server.8": 0o644,
    "usr/lib/systemd/system/rapi-server.service": 0o644,
    "etc/rapi/rapi-server.conf": 0o644,
}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    dest = tmp_path_factory.mktemp("destdir")
    rc, out, err = make(["install", "BUILD=" + build_dir(), "DESTDIR=" + str(dest), "PREFIX=/usr"])
    assert rc == 0, "make install failed:\n%s\n%s" % (out[-3000:], err[-3000:])
    return dest


def test_install_lays_down_every_file_with_its_mode(installed):
    found = {}
    for p in installed.rglob("*"):
        if p.is_symlink() or p.is_file():
            rel = str(p.relative_to(installed))
            found[rel] = None if p.is_symlink() else stat.S_IMODE(p.lstat().st_mode)
    assert sorted(found) == sorted(EXPECTED), "installed files differ"
    for rel, mode in EXPECTED.items():
        assert found[rel] == mode, "%s: mode %s, want %s" % (rel, oct(found[rel] or 0), oct(mode or 0))
    assert os.readlink(installed / "usr/lib/librapi.so") == "librapi.so.0"
    unit = (installed / "usr/lib/systemd/system/rapi-server.service").read_text()
    assert "ExecStart=/usr/sbin/rapi-server -c /etc/rapi/rapi-server.conf" in unit
    # Every man page of the tree is installed.
    pages = sorted(p.name for p in (REPO / "man").glob("*.[1-8]"))
    assert pages == sorted(Path(r).name for r in EXPECTED if "/man/man" in r)


def test_installed_pkgconfig_file(installed):
    pc = (installed / "usr/lib/pkgconfig/librapi.pc").read_text()
    assert re.search(r"^prefix=/usr$", pc, re.M), pc
    assert re.search(r"^libdir=/usr/lib$", pc, re.M), pc
    assert re.search(r"^includedir=/usr/include$", pc, re.M), pc
    assert re.search(r"^Version: %s$" % re.escape(VERSION), pc, re.M), pc


PROGRAM = r"""
#include <rapi.h>
#include <stdio.h>
int main(void)
{
    printf("%s %s\n", RAPI_VERSION, rapi_code_name(rapi_code_from_http(404, "unknown_route")));
    return 0;
}
"""


def test_program_links_through_installed_pkgconfig(installed, tmp_path):
    env = clean_env(PKG_CONFIG_SYSROOT_DIR=str(installed),
                    PKG_CONFIG_LIBDIR=str(installed / "usr/lib/pkgconfig"))
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "librapi"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True)
    flags = flags.stdout.decode().split()
    assert "-lrapi" in flags and any(f.startswith("-I" + str(installed)) for f in flags), flags
    src = tmp_path / "hello.c"
    src.write_text(PROGRAM)
    exe = tmp_path / "hello"
    # The sanitizer pass installs its ASan+UBSan librapi: link the program alike.
    cc = ["clang", "-fsanitize=address,undefined"] if os.environ.get("RAPI_SAN") else ["cc"]
    subprocess.run(cc + ["-std=c11", "-Wall", "-Werror", "-o", str(exe), str(src)] + flags,
                   env=env, check=True, timeout=60)
    needed = subprocess.run(["readelf", "-d", str(exe)], stdout=subprocess.PIPE, check=True)
    assert b"librapi.so.0" in needed.stdout, "not linked against the shared librapi"
    run = subprocess.run([str(exe)], env=clean_env(LD_LIBRARY_PATH=str(installed / "usr/lib")),
                         stdout=subprocess.PIPE, check=True, timeout=10)
    words = run.stdout.decode().split()
    assert words[0] == VERSION, words
    assert words[1] == "RAPI_E_UNKNOWN_ROUTE", words


def test_every_man_page_carries_the_version():
    for page in sorted((REPO / "man").glob("*.[1-8]")):
        th = page.read_text().splitlines()[0]
        fields = re.findall(r'"[^"]*"|\S+', th)
        assert fields[0] == ".TH", "%s: first line is not .TH" % page.name
        assert fields[4] == '"rapi %s"' % VERSION, "%s: .TH source %s, want rapi %s" % (
            page.name, fields[4], VERSION)


def test_version_agrees_everywhere():
    h = (REPO / "sdk/rapi.h").read_text()
    assert re.search(r'#define RAPI_VERSION "%s"' % re.escape(VERSION), h), "rapi.h RAPI_VERSION"
    changelog = (REPO / "packaging/debian/changelog").read_text().splitlines()[0]
    assert changelog.startswith("rapi (%s) " % VERSION), changelog
    spec = (REPO / "packaging/rpm/rapi.spec").read_text()
    entry = re.search(r"^%changelog\n\* .* - (\S+)-\d+$", spec, re.M)
    assert entry and entry.group(1) == VERSION, "rapi.spec %changelog version"
    rc, out, _ = make(["-n", "-B", "BUILD=" + build_dir(), build_dir() + "/obj/engine/main.o"])
    assert rc == 0 and "-DRAPI_VERSION='\"%s\"'" % VERSION in out, out


def test_plain_make_needs_no_criterion(tmp_path):
    rc, out, err = make(["-n", "BUILD=" + str(tmp_path / "b")])
    assert rc == 0, err
    assert "criterion" not in out and "tests/unit/" not in out and "noring" not in out, \
        "plain make builds test artifacts"
    rc, out, err = make(["-n", "BUILD=" + str(tmp_path / "b"), "test-unit"])
    assert rc == 0 and "-lcriterion" in out and "tests/unit/" in out, err


def test_no_pkgconfig_noise_before_deps(tmp_path):
    """A pkg-config that fails loudly (as on a fresh machine): parsing the
    Makefile for run, test and fuzz prints none of its noise."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "pkg-config").write_text("#!/bin/sh\necho PKGCONFIG-NOISE >&2\nexit 1\n")
    (fake / "pkg-config").chmod(0o755)
    env = clean_env(PATH="%s:%s" % (fake, os.environ["PATH"]))
    for target in ("deps", "build-all", "test-unit", "fuzz", "lint"):
        rc, out, err = make(["-n", "BUILD=" + str(tmp_path / "b"), target], env=env)
        assert "PKGCONFIG-NOISE" not in out + err, "make %s: pkg-config noise" % target
        assert "pkg-config" not in err, err


def test_fuzz_honours_build_and_cc(tmp_path):
    b = str(tmp_path / "fb")
    rc, out, err = make(["-n", "-B", "BUILD=" + b, "CC=gcc", b + "/fuzz/url_fuzz"])
    assert rc == 0, err
    assert re.search(r"^clang .* -o %s/fuzz/url_fuzz " % re.escape(b), out, re.M), out
    rc, out, err = make(["-n", "-B", "BUILD=" + b, "CC=clang-14", b + "/fuzz/url_fuzz"])
    assert rc == 0 and re.search(r"^clang-14 ", out, re.M), out


def test_fuzz_links_per_target_extra_sources(tmp_path):
    """FUZZ_EXTRA_<name> adds sources to one fuzz target's link only."""
    b = str(tmp_path / "fb")
    rc, out, err = make(["-n", "-B", "BUILD=" + b, "FUZZ_EXTRA_url_fuzz=engine/log.c",
                         b + "/fuzz/url_fuzz", b + "/fuzz/json_fuzz"])
    assert rc == 0, err
    links = {m.group(1): m.group(0) for m in re.finditer(r"^.* -o %s/fuzz/(\w+) .*$"
                                                        % re.escape(b), out, re.M)}
    assert "engine/log.c" in links["url_fuzz"], out
    assert "engine/log.c" not in links["json_fuzz"], out


def test_install_elsewhere_points_the_config_at_its_keys(tmp_path):
    """With PREFIX=/opt-like (no DESTDIR) the installed configuration names the
    key file under that prefix, and the installed daemon accepts it."""
    prefix = tmp_path / "p"
    rc, out, err = make(["install", "BUILD=" + build_dir(), "PREFIX=" + str(prefix)])
    assert rc == 0, err
    conf = prefix / "etc/rapi/rapi-server.conf"
    keys = prefix / "etc/rapi/keys"
    assert re.search(r"^keys %s$" % re.escape(str(keys)), conf.read_text(), re.M)
    server = str(prefix / "sbin/rapi-server")
    subprocess.run([server, "keygen", str(keys)], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=10)
    r = subprocess.run([server, "-c", str(conf), "-t"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=10)
    assert r.returncode == 0 and b"configuration ok" in r.stdout, r.stdout
    # A second install keeps the operator's configuration.
    conf.write_text(conf.read_text() + "# local\n")
    assert make(["install", "BUILD=" + build_dir(), "PREFIX=" + str(prefix)])[0] == 0
    assert conf.read_text().endswith("# local\n")
