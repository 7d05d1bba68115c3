"""The documents are part of the tree and are held like code.

- docs/PROTOCOL.md: every rule (a bold `P-AREA-n` in the text) has a row in
  the table "Rules and their tests", every row names at least one test, every
  named test exists (`def name` in a pytest file, `Test(suite, name` in a
  Criterion file), and no row names a rule the text does not define.
- The table of error answers in docs/PROTOCOL.md lists exactly the
  (status, errorcode) pairs that engine/ and proto/ can answer.
- The defaults quoted in docs/*.md as "`keyword` (value" match the embedded
  defaults in engine/conf.c.
- Nothing in the tree points outside it (at the shared notes the project
  started from): README, CONTRIBUTING, docs/, man/ and code comments point
  only inside the repository.
- Every relative link in README.md, CONTRIBUTING.md and docs/*.md resolves.

Needs no build: it reads files only.
"""

import os
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROTOCOL = REPO / "docs" / "PROTOCOL.md"
TABLE_TITLE = "## Rules and their tests"

RULE_ID = r"P-[A-Z]+-\d+"
DEFINED_RE = re.compile(r"\*\*(" + RULE_ID + r")\*\*")
ROW_RE = re.compile(r"^\|\s*(" + RULE_ID + r")\s*\|(.*)\|\s*$")
TEST_REF_RE = re.compile(r"`([^`:]+)::([^`]+)`")

# Built so that this file does not match its own check.
OUTSIDE_POINTERS = ["../" + "shared", "/work/" + "shared"]
TEXT_SUFFIXES = {".c", ".h", ".py", ".md", ".mk", ".sh", ".1", ".3", ".5", ".8", ".txt"}
SKIP_DIRS = {".git", "corpus", "__pycache__"}

LINK_RE = re.compile(r"(?<!\!)\[[^\]]*\]\(([^)\s]+)\)")
DEFAULT_RE = re.compile(r"`([a-z_]+)` \((\d+)[ )]")
CONF_ROW_RE = re.compile(r"X\((\w+),\s*T_\w+,\s*[^,]+,\s*[^,]+,\s*\"([^\"]*)\"\)")


def protocol_text():
    assert PROTOCOL.is_file(), "docs/PROTOCOL.md is missing"
    return PROTOCOL.read_text()


def split_protocol(text):
    """(body, table) around the rule table's title."""
    assert TABLE_TITLE in text, "docs/PROTOCOL.md has no %r section" % TABLE_TITLE
    body, table = text.split(TABLE_TITLE, 1)
    return body, table


def table_rows(table):
    """{rule: [(file, name), ...]} in table order; duplicates fail."""
    rows = {}
    for line in table.splitlines():
        m = ROW_RE.match(line)
        if not m:
            continue
        rule = m.group(1)
        assert rule not in rows, "rule %s has two rows in the table" % rule
        rows[rule] = TEST_REF_RE.findall(m.group(2))
    return rows


def missing_test_reason(path, name):
    """Why (file, name) does not name an existing test, or None."""
    f = REPO / path
    if not f.is_file():
        return "no file %s" % path
    src = f.read_text()
    if path.endswith(".py"):
        if not re.search(r"^\s*(async\s+)?def\s+%s\s*\(" % re.escape(name), src, re.M):
            return "no `def %s` in %s" % (name, path)
        if not name.startswith("test_"):
            return "%s is not a pytest test (name must start with test_)" % name
        return None
    if path.endswith(".c"):
        suite, _, case = name.partition("/")
        if not case or not re.search(r"\bTest\(\s*%s\s*,\s*%s\s*[,)]"
                                     % (re.escape(suite), re.escape(case)), src):
            return "no Test(%s, %s) in %s" % (suite, case, path)
        return None
    return "%s: unknown kind of test file" % path




def test_every_rule_has_a_row_and_a_test():
    body, table = split_protocol(protocol_text())
    defined = DEFINED_RE.findall(body)
    assert defined, "no rule IDs found in docs/PROTOCOL.md"
    dup = sorted({r for r in defined if defined.count(r) > 1})
    assert not dup, "rules defined twice: %s" % dup
    rows = table_rows(table)
    missing = [r for r in defined if r not in rows]
    untested = [r for r, tests in rows.items() if not tests]
    stale = [r for r in rows if r not in defined]
    assert not missing, "rules with no row in the table: %s" % missing
    assert not untested, "rules whose row names no test: %s" % untested
    assert not stale, "rows for rules the text does not define: %s" % stale


def test_every_named_test_exists():
    _, table = split_protocol(protocol_text())
    problems = []
    for rule, tests in table_rows(table).items():
        for path, name in tests:
            why = missing_test_reason(path, name)
            if why:
                problems.append("%s: %s" % (rule, why))
    assert not problems, "\n".join(problems)


def test_table_parser_catches_a_missing_test():
    """The checks above can fail: a made-up name is reported."""
    fake = "| P-X-1 | `tests/integration/test_docs.py::test_no_such_thing` |\n"
    rows = table_rows(fake)
    assert rows == {"P-X-1": [("tests/integration/test_docs.py", "test_no_such_thing")]}
    assert missing_test_reason(*rows["P-X-1"][0]) is not None
    this = "tests/integration/test_docs.py"
    assert missing_test_reason(this, "test_every_named_test_exists") is None


ANSWER_ROW_RE = re.compile(r"^\|\s*([1-5]\d\d)\s*\|\s*`([a-z_]+)`", re.M)
CODE_ANSWER_RE = re.compile(r"\b([1-5]\d\d),\s*\"([a-z_]+)\"")


def test_error_table_matches_the_code():
    body, _ = split_protocol(protocol_text())
    documented = set(ANSWER_ROW_RE.findall(body))
    in_code = set()
    for f in sorted(REPO.glob("engine/*.c")) + sorted(REPO.glob("proto/*.c")):
        in_code |= set(CODE_ANSWER_RE.findall(f.read_text()))
    assert in_code, "found no error answers in engine/ and proto/"
    unlisted, unsent = sorted(in_code - documented), sorted(documented - in_code)
    assert not unlisted, "answers the code sends that docs/PROTOCOL.md does not list: %s" % unlisted
    assert not unsent, "answers docs/PROTOCOL.md lists that the code never sends: %s" % unsent


def conf_defaults():
    src = (REPO / "engine" / "conf.c").read_text()
    rows = dict(CONF_ROW_RE.findall(src))
    assert "max_header" in rows, "could not read CONF_ROWS from engine/conf.c"
    return rows


def test_quoted_defaults_match_conf():
    defaults = conf_defaults()
    problems = []
    for md in sorted((REPO / "docs").glob("*.md")):
        for kw, value in DEFAULT_RE.findall(md.read_text()):
            if kw in defaults and defaults[kw] != value:
                problems.append("%s: `%s` (%s), engine/conf.c says %s"
                                % (md.relative_to(REPO), kw, value, defaults[kw]))
    assert not problems, "\n".join(problems)


def tree_text_files():
    for root, dirs, files in os.walk(REPO):
        rel = Path(root).relative_to(REPO)
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not
                   (rel == Path(".") and d.startswith("build"))]
        for f in files:
            p = Path(root) / f
            if p.suffix in TEXT_SUFFIXES or f in ("Makefile", "README", "run"):
                yield p


def test_nothing_points_outside_the_tree():
    hits = []
    for p in tree_text_files():
        try:
            text = p.read_text(errors="replace")
        except OSError:
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if any(s in line for s in OUTSIDE_POINTERS):
                hits.append("%s:%d: %s" % (p.relative_to(REPO), n, line.strip()[:120]))
    assert not hits, "pointers outside the repository (use docs/ or CONTRIBUTING.md):\n" + \
        "\n".join(hits)


def linked_docs():
    docs = [REPO / "README.md", REPO / "CONTRIBUTING.md"] + sorted((REPO / "docs").glob("*.md"))
    return [d for d in docs if d.is_file()]


def test_docs_exist():
    for name in ("README.md", "CONTRIBUTING.md", "docs/PROTOCOL.md", "docs/DESIGN.md"):
        assert (REPO / name).is_file(), "%s is missing" % name


@pytest.mark.parametrize("doc", linked_docs(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(doc):
    broken = []
    for target in LINK_RE.findall(doc.read_text()):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL or an anchor in the same page
        path = target.split("#", 1)[0]
        if not (doc.parent / path).exists():
            broken.append(target)
    assert not broken, "%s: links to missing files: %s" % (doc.relative_to(REPO), broken)
