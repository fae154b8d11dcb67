"""Certificates and a stunnel client for the Python TLS tests (tests/clients, tests/diff).

Certificates come from the openssl command line, with config files written here so that
the result does not depend on the system's openssl.cnf: a CA, a server certificate for
127.0.0.1 and localhost, a client certificate (CN=<client_cn>), and an unrelated CA. All
keys are ECDSA P-256, PKCS#8, unencrypted, valid for 3 days from now.

`Stunnel` runs Debian's stunnel as a TLS *client*: it listens on a plain loopback port
and carries each connection to a TLS listener, verifying the server's certificate
against a CA (verifyChain) and its name (checkHost). Readiness is the listening socket
appearing in /proc/net/tcp (a bounded poll; no probe connection, which the server would
count).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time

OPENSSL = shutil.which("openssl")
STUNNEL = shutil.which("stunnel4") or shutil.which("stunnel")
READY_TIMEOUT = 10.0
# The token of the tests' user (its SHA-256 goes in the config file).
TEST_TOKEN = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

_CA_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = {cn}
[ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
"""

_LEAF_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = {cn}
[ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = {eku}
authorityKeyIdentifier = keyid
{san}"""

_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def _openssl(*args, cwd):
    if OPENSSL is None:
        raise RuntimeError("the openssl command is not installed (apt-get install openssl)")
    r = subprocess.run([OPENSSL, *args], cwd=cwd, capture_output=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {r.stderr.decode(errors='replace')}")


class Pki:
    """The certificates of one test session, under `dir` (removed by `cleanup`)."""

    def __init__(self, client_cn: str = "tester"):
        self.dir = tempfile.mkdtemp(prefix="sprout-pki-")
        self.client_cn = client_cn
        self.ca, self.ca_key = self._ca("ca", "sprout test CA")
        self.other_ca, self.other_ca_key = self._ca("other-ca", "unrelated CA")
        self.server_cert, self.server_key = self._leaf(
            "server", "sproutd", "serverAuth", "IP:127.0.0.1,DNS:localhost", "ca")
        self.client_cert, self.client_key = self._leaf(
            "client", client_cn, "clientAuth", None, "ca")

    def _path(self, name):
        return os.path.join(self.dir, name)

    def _ca(self, name, cn):
        cnf = self._path(f"{name}.cnf")
        with open(cnf, "w") as f:
            f.write(_CA_CNF.format(cn=cn))
        cert, key = self._path(f"{name}.pem"), self._path(f"{name}.key")
        _openssl("req", "-x509", "-config", cnf, "-extensions", "ext", *_EC,
                 "-keyout", key, "-out", cert, "-days", "3", "-sha256", cwd=self.dir)
        return cert, key

    def _leaf(self, name, cn, eku, san, ca):
        cnf = self._path(f"{name}.cnf")
        with open(cnf, "w") as f:
            f.write(_LEAF_CNF.format(cn=cn, eku=eku,
                                     san=f"subjectAltName = {san}\n" if san else ""))
        cert, key, csr = (self._path(f"{name}.pem"), self._path(f"{name}.key"),
                          self._path(f"{name}.csr"))
        _openssl("req", "-new", "-config", cnf, *_EC, "-keyout", key, "-out", csr,
                 cwd=self.dir)
        _openssl("x509", "-req", "-in", csr, "-CA", self._path(f"{ca}.pem"),
                 "-CAkey", self._path(f"{ca}.key"), "-set_serial",
                 str(secrets.randbits(63)), "-days", "3", "-sha256", "-extfile", cnf,
                 "-extensions", "ext", "-out", cert, cwd=self.dir)
        return cert, key

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def sha256_hex(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    """Whether some socket listens on 127.0.0.1:port or 0.0.0.0:port (/proc/net/tcp)."""
    want = {f"0100007F:{port:04X}", f"00000000:{port:04X}"}
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[1] in want and fields[3] == "0A":
                    return True
    except OSError:
        pass
    return False


def wait_listening(port: int, proc: subprocess.Popen | None = None,
                   timeout: float = READY_TIMEOUT) -> bool:
    """Polls until `port` listens; False if `proc` exits first or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if listening(port):
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.005)
    return False


class Stunnel:
    """stunnel in client mode: 127.0.0.1:<free port> (plain) -> `connect` (TLS)."""

    def __init__(self, connect: str, ca: str, check_host: str = "localhost",
                 cert: str | None = None, key: str | None = None):
        if STUNNEL is None:
            raise RuntimeError("stunnel is not installed (apt-get install stunnel4): the "
                               "TLS client tests need it")
        self.dir = tempfile.mkdtemp(prefix="sprout-stunnel-")
        self.proc = None
        for _ in range(5):
            port = free_port()
            conf = os.path.join(self.dir, "stunnel.conf")
            lines = [
                "foreground = yes",
                "pid =",
                "debug = notice",
                "[sprout]",
                "client = yes",
                f"accept = 127.0.0.1:{port}",
                f"connect = {connect}",
                "verifyChain = yes",
                f"CAfile = {ca}",
                f"checkHost = {check_host}",
                "sslVersionMin = TLSv1.2",
                "TIMEOUTclose = 0",
            ]
            if cert:
                lines += [f"cert = {cert}", f"key = {key}"]
            with open(conf, "w") as f:
                f.write("\n".join(lines) + "\n")
            self.log = os.path.join(self.dir, "stunnel.log")
            with open(self.log, "wb") as logf:
                self.proc = subprocess.Popen([STUNNEL, conf], stdin=subprocess.DEVNULL,
                                             stdout=logf, stderr=logf)
            if wait_listening(port, self.proc):
                self.address = ("127.0.0.1", port)
                return
            self.stop()
        raise RuntimeError(f"stunnel did not start; its log:\n{self.read_log()}")

    def read_log(self) -> str:
        try:
            with open(self.log, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
