"""Test certificates made with the openssl CLI (issue 9).

make_certs(directory) writes, all EC P-256 (fast), keys mode 0600:

  ca.pem / ca.key            a private CA (CN "rapi test CA")
  server.pem / server.key    signed by the CA for DNS:localhost, IP:127.0.0.1,
                             IP:::1, valid 2 days
  expired.pem / expired.key  same names, not valid after yesterday
  future.pem / future.key    same names, not valid before 2099
  wrong.pem / wrong.key      signed by the CA for DNS:wrong.test only
  other.pem / other.key      signed by the CA for DNS:other.test (SNI tests)
  otherca.pem / otherca.key  an unrelated CA (for "unknown CA" on purpose)

and returns a Certs object whose attributes are the absolute paths (ca,
ca_key, server, server_key, expired, expired_key, future, future_key, wrong,
wrong_key, other, other_key, otherca, otherca_key) plus `dir`.

The `tls_certs` fixture makes one set per test module in a tmp directory.
Nothing here needs network or root; openssl missing skips the test loudly.
"""

import os
import shutil
import subprocess

import pytest

CURVE = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
SERVER_NAMES = "DNS:localhost,IP:127.0.0.1,IP:::1"
VALID_DAYS = "2"

# Extensions for leaf certificates (one section per name set); the CA gets
# basicConstraints from `req -x509`'s defaults.
EXT_CNF = """\
[server]
subjectAltName={server}
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
[wrong]
subjectAltName=DNS:wrong.test
basicConstraints=critical,CA:FALSE
extendedKeyUsage=serverAuth
[other]
subjectAltName=DNS:other.test
basicConstraints=critical,CA:FALSE
extendedKeyUsage=serverAuth
"""

# A minimal `openssl ca` configuration, used only for the not-yet-valid
# certificate (`openssl x509 -req` in 3.0 cannot set notBefore).
CA_CNF = """\
[ca]
default_ca = tca
[tca]
dir = {dir}
database = {dir}/ca.index
new_certs_dir = {dir}/ca.newcerts
serial = {dir}/ca.serial
certificate = {dir}/ca.pem
private_key = {dir}/ca.key
default_md = sha256
policy = pany
copy_extensions = none
unique_subject = no
[pany]
commonName = supplied
"""

NAMES = ("ca", "otherca", "server", "expired", "future", "wrong", "other")


class Certs:
    """Absolute paths of one generated set (see the module docstring)."""

    def __init__(self, directory):
        self.dir = os.path.abspath(directory)
        for name in NAMES:
            setattr(self, name, os.path.join(self.dir, name + ".pem"))
            setattr(self, name + "_key", os.path.join(self.dir, name + ".key"))


def _run(args, cwd):
    res = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (" ".join(args[1:3]), res.stderr[-400:]))


def _ca(d, name):
    _run(["openssl", "req", "-x509", *CURVE, "-keyout", name + ".key", "-out", name + ".pem",
          "-subj", "/CN=rapi test " + name, "-days", VALID_DAYS], d)


def _csr(d, name):
    _run(["openssl", "req", "-new", *CURVE, "-keyout", name + ".key", "-out", name + ".csr",
          "-subj", "/CN=" + name], d)


def _leaf(d, name, section, days):
    _csr(d, name)
    _run(["openssl", "x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
          "-CAcreateserial", "-out", name + ".pem", "-days", days, "-sha256",
          "-extfile", "ext.cnf", "-extensions", section], d)


def _future(d):
    """A server certificate valid from 2099 on (openssl ca -startdate)."""
    _csr(d, "future")
    os.makedirs(os.path.join(d, "ca.newcerts"), exist_ok=True)
    open(os.path.join(d, "ca.index"), "w").close()
    with open(os.path.join(d, "ca.serial"), "w") as f:
        f.write("1000\n")
    with open(os.path.join(d, "ca.cnf"), "w") as f:
        f.write(CA_CNF.format(dir=d))
    _run(["openssl", "ca", "-batch", "-config", "ca.cnf", "-in", "future.csr",
          "-out", "future.pem", "-notext", "-startdate", "20991231000000Z",
          "-enddate", "21000101000000Z", "-extfile", "ext.cnf", "-extensions", "server"], d)


def make_certs(directory):
    """Write the whole set into `directory` (created if needed); returns Certs."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not installed: cannot make test certificates")
    d = os.path.abspath(directory)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write(EXT_CNF.format(server=SERVER_NAMES))
    _ca(d, "ca")
    _ca(d, "otherca")
    _leaf(d, "server", "server", VALID_DAYS)
    _leaf(d, "expired", "server", "-1")
    _leaf(d, "wrong", "wrong", VALID_DAYS)
    _leaf(d, "other", "other", VALID_DAYS)
    _future(d)
    for name in NAMES:
        os.chmod(os.path.join(d, name + ".key"), 0o600)
    return Certs(d)


@pytest.fixture(scope="module")
def tls_certs(tmp_path_factory):
    """One certificate set per test module (see make_certs)."""
    return make_certs(tmp_path_factory.mktemp("tlscerts"))
