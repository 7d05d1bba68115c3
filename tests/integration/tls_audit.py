"""testssl.sh against a rapi-server TLS listener (`make tls-audit`, and
test_tls_relay.py::test_testssl_audit).

    tls_audit.py RAPI_SERVER [--min 1.2|1.3]

Makes test certificates (tlscerts.py, openssl CLI) in a temporary
directory, starts RAPI_SERVER with one TLS listener on 127.0.0.1 (port
picked by the kernel), runs testssl.sh's protocol, cipher-category and
vulnerability checks (-p -s -U: the whole run takes well under a minute),
prints its findings and fails when:
  - a finding is rated LOW, MEDIUM, HIGH or CRITICAL (a vulnerability or a
    weak setting);
  - a protocol below the configured minimum is offered (SSLv2, SSLv3, TLS 1,
    TLS 1.1 always; TLS 1.2 too with --min 1.3), or a configured one is not;
  - a cipher category other than strong AEAD suites is offered (NULL,
    anonymous, export, LOW, 3DES/IDEA, obsolete CBC).
Exit status 0 when clean, 1 with the reasons, 2 when it cannot run.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

BAD_SEVERITIES = {"LOW", "MEDIUM", "HIGH", "CRITICAL"}
OLD_PROTOCOLS = ["SSLv2", "SSLv3", "TLS1", "TLS1_1"]
WEAK_CIPHER_LISTS = ["cipherlist_NULL", "cipherlist_aNULL", "cipherlist_EXPORT",
                     "cipherlist_LOW", "cipherlist_3DES_IDEA", "cipherlist_AVERAGE"]
TESTSSL_TIMEOUT = 150  # seconds: the checks take ~25 s here
START_TIMEOUT = 5.0


def testssl_binary():
    return shutil.which("testssl") or shutil.which("testssl.sh")


def start_relay(server, workdir, certs, min_version):
    keys = os.path.join(workdir, "keys")
    subprocess.run([server, "keygen", keys], check=True, capture_output=True)
    log = open(os.path.join(workdir, "relay.log"), "wb")
    proc = subprocess.Popen([server, "-k", keys, "-l", "127.0.0.1:0 tls", "-w", "1",
                             "-o", "tls_cert=" + certs.server, "-o", "tls_key=" + certs.server_key,
                             "-o", "tls_min_version=" + min_version],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        with open(log.name, "rb") as f:
            m = re.search(rb"listening on 127\.0\.0\.1:(\d+)", f.read())
        if m:
            return proc, int(m.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    with open(log.name, "rb") as f:
        raise RuntimeError("rapi-server did not start: %s" % f.read().decode()[-2000:])


def run_testssl(port, workdir):
    out = os.path.join(workdir, "testssl.json")
    cmd = [testssl_binary(), "--quiet", "--color", "0", "--warnings", "off", "--ip", "one",
           "-p", "-s", "-U", "--jsonfile", out, "127.0.0.1:%d" % port]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=TESTSSL_TIMEOUT)
    if not os.path.exists(out):
        raise RuntimeError("testssl.sh wrote no JSON (exit %d): %s" % (r.returncode, r.stdout[-2000:]))
    with open(out) as f:
        return json.load(f)


def judge(findings, min_version):
    """The reasons the findings fail the audit (empty: clean)."""
    by_id = {f.get("id"): f for f in findings}
    bad = []
    for f in findings:
        if f.get("severity") in BAD_SEVERITIES:
            bad.append("%s: %s (%s)" % (f.get("id"), f.get("finding"), f.get("severity")))
    below = OLD_PROTOCOLS + (["TLS1_2"] if min_version == "1.3" else [])
    for pid in below:
        f = by_id.get(pid)
        if not f or not f.get("finding", "").startswith("not offered"):
            bad.append("protocol %s below the minimum %s: %s"
                       % (pid, min_version, f.get("finding") if f else "not tested"))
    wanted = ["TLS1_3"] + (["TLS1_2"] if min_version == "1.2" else [])
    for pid in wanted:
        f = by_id.get(pid)
        if not f or not f.get("finding", "").startswith("offered"):
            bad.append("protocol %s not offered: %s" % (pid, f.get("finding") if f else "missing"))
    for cid in WEAK_CIPHER_LISTS:
        f = by_id.get(cid)
        if not f or f.get("finding") != "not offered":
            bad.append("%s: %s" % (cid, f.get("finding") if f else "not tested"))
    return bad


def summary(findings):
    keep = [f for f in findings if f.get("id") not in ("engine_problem",)]
    return "\n".join("  %-22s %-8s %s" % (f.get("id"), f.get("severity"), f.get("finding"))
                     for f in keep)


def audit(server, min_version="1.2"):
    """Run the whole audit. Returns (reasons, summary text)."""
    from tlscerts import make_certs

    with tempfile.TemporaryDirectory(prefix="rapi-tls-audit-") as d:
        certs = make_certs(os.path.join(d, "certs"))
        proc, port = start_relay(server, d, certs, min_version)
        try:
            findings = run_testssl(port, d)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return judge(findings, min_version), summary(findings)


def main(argv):
    if len(argv) not in (2, 4) or (len(argv) == 4 and argv[2] != "--min"):
        print(__doc__, file=sys.stderr)
        return 2
    min_version = argv[3] if len(argv) == 4 else "1.2"
    if not testssl_binary():
        print("tls-audit: testssl.sh is not installed (make deps)", file=sys.stderr)
        return 2
    bad, text = audit(os.path.abspath(argv[1]), min_version)
    print("testssl.sh -p -s -U against rapi-server (tls_min_version %s):\n%s" % (min_version, text))
    if bad:
        print("tls-audit: FAILED:\n  " + "\n  ".join(bad))
        return 1
    print("tls-audit: no vulnerability, nothing below TLS %s, AEAD suites only" % min_version)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
