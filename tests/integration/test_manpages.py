"""The man pages are the reference: they must match the programs and render cleanly.

- `rapi-server -h` lists exactly the options documented in the OPTIONS section
  of man/rapi-server.8 (and the SYNOPSIS shows each of them).
- Every man/*.[1358] renders with `groff -man -ww -z` and `man --warnings`
  without a single warning.

The configuration keywords are held against rapi-server.conf(5) by the unit
test tests/unit/conf_test.c, which sees conf.c's keyword table directly.

Environment: RAPI_BUILD = absolute build dir holding rapi-server.
"""

import os
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MAN_DIR = REPO / "man"
SERVER_MAN = MAN_DIR / "rapi-server.8"
MAN_PAGES = sorted(p for p in MAN_DIR.glob("*.[1358]") if p.is_file())

# A single-letter option token: "-c", not part of a word ("rapi-server") nor
# a long option ("--help").
OPTION_RE = re.compile(r"(?<![\w-])-([A-Za-z0-9])(?![\w-])")


def server_binary():
    build = os.environ.get("RAPI_BUILD")
    if not build:
        msg = "RAPI_BUILD is not set: cannot find rapi-server, option check SKIPPED"
    else:
        path = Path(build) / "rapi-server"
        if path.is_file() and os.access(path, os.X_OK):
            return path
        msg = f"{path} does not exist (not built yet): option check SKIPPED"
    warnings.warn(msg)
    pytest.skip(msg)


def man_section(path, name):
    """Source lines of section `.SH name`, up to the next .SH."""
    lines, inside = [], False
    for line in path.read_text().splitlines():
        if line.startswith(".SH"):
            inside = line[3:].strip().strip('"') == name
            continue
        if inside:
            lines.append(line)
    assert lines, f"{path.name} has no .SH {name} section"
    return lines


def man_options(path):
    """Options of the OPTIONS section: a `.TP` followed by `.B \\-x ...`."""
    lines = man_section(path, "OPTIONS")
    found = []
    for tp, tag in zip(lines, lines[1:]):
        if tp.strip() != ".TP":
            continue
        m = re.match(r"\.B[IR]?\s+\\-([A-Za-z0-9])\b", tag)
        assert m, f"{path.name}: .TP in OPTIONS not followed by a '.B \\-x' line: {tag!r}"
        found.append(m.group(1))
    dups = {o for o in found if found.count(o) > 1}
    assert not dups, f"{path.name} documents -{', -'.join(sorted(dups))} more than once"
    return set(found)


def usage_options(binary):
    proc = subprocess.run(
        [str(binary), "-h"], capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"rapi-server -h exited {proc.returncode}:\n{out}"
    assert out.strip(), "rapi-server -h printed nothing"
    return set(OPTION_RE.findall(out)), out


def test_server_man_documents_options():
    """Independent of the binary: the OPTIONS section has the known options."""
    opts = man_options(SERVER_MAN)
    assert {"c", "l", "k", "w", "o", "t", "h", "V"} <= opts, sorted(opts)


def test_server_synopsis_shows_every_option():
    synopsis = "\n".join(man_section(SERVER_MAN, "SYNOPSIS"))
    shown = set(re.findall(r"\\-([A-Za-z0-9])\b", synopsis))
    missing = man_options(SERVER_MAN) - shown
    assert not missing, f"SYNOPSIS of rapi-server.8 lacks -{', -'.join(sorted(missing))}"


def test_usage_matches_man_options():
    binary = server_binary()
    usage, text = usage_options(binary)
    documented = man_options(SERVER_MAN)
    undocumented = usage - documented
    unimplemented = documented - usage
    assert not undocumented, (
        f"rapi-server -h shows -{', -'.join(sorted(undocumented))}, "
        f"missing from the OPTIONS of man/rapi-server.8\n{text}"
    )
    assert not unimplemented, (
        f"man/rapi-server.8 documents -{', -'.join(sorted(unimplemented))}, "
        f"which rapi-server -h does not show\n{text}"
    )


def test_there_are_man_pages():
    assert SERVER_MAN in MAN_PAGES
    assert (MAN_DIR / "rapi-server.conf.5") in MAN_PAGES


@pytest.mark.parametrize("page", MAN_PAGES, ids=lambda p: p.name)
def test_groff_renders_without_warnings(page):
    if shutil.which("groff") is None:
        msg = "groff is not installed (apt install groff-base): render check SKIPPED"
        warnings.warn(msg)
        pytest.skip(msg)
    proc = subprocess.run(
        ["groff", "-man", "-ww", "-z", str(page)], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0 and not proc.stderr.strip(), (
        f"groff -man -ww -z {page.name} (exit {proc.returncode}):\n{proc.stderr}"
    )


@pytest.mark.parametrize("page", MAN_PAGES, ids=lambda p: p.name)
def test_man_renders_without_warnings(page):
    if shutil.which("man") is None:
        msg = "man is not installed (apt install man-db): man --warnings check SKIPPED"
        warnings.warn(msg)
        pytest.skip(msg)
    env = dict(os.environ, MANWIDTH="80", MAN_KEEP_FORMATTING="0")
    proc = subprocess.run(
        ["man", "--warnings", "-l", str(page)],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0 and not proc.stderr.strip(), (
        f"man --warnings -l {page.name} (exit {proc.returncode}):\n{proc.stderr}"
    )
    assert proc.stdout.strip(), f"man -l {page.name} rendered nothing"
