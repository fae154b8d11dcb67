"""Fixtures for the client-library tests: a fresh sproutd per test.

The binary is $SPROUTD, or target/debug/sproutd of this checkout (build it first with
`cargo build`). Each server gets a free port on 127.0.0.1 (or a unix socket in a temp
dir), readiness is a bounded connect+`stats` retry loop, and the process is killed at
teardown.
"""

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

import clusterutil  # noqa: E402
import tlsutil  # noqa: E402
SPROUTD = os.environ.get("SPROUTD", str(ROOT / "target" / "debug" / "sproutd"))
READY_TIMEOUT = 10.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stats_pid(address):
    """Connects to `address` and returns the pid from `stats`, or None."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            s.connect(address)
            s.sendall(b"stats\r\n")
            f = s.makefile("rb")
            head = f.readline()
            if not head.startswith(b"OK "):
                return None
            body = f.read(int(head[3:]) + 2).decode()
            for line in body.splitlines():
                if line.startswith("pid: "):
                    return int(line[5:])
    except (OSError, ValueError):
        pass
    return None


class Server:
    """A running sproutd."""

    def __init__(self, proc, address):
        self.proc = proc
        self.address = address  # (host, port) or a unix socket path

    @property
    def pid(self):
        return self.proc.pid

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


def start(args, address):
    if not os.access(SPROUTD, os.X_OK):
        pytest.fail(f"{SPROUTD} not found: run `cargo build` or set SPROUTD")
    proc = subprocess.Popen(
        [SPROUTD, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + READY_TIMEOUT
    if clusterutil.ROLE:
        # A cluster node (scripts/sproutd-cluster): first a leader, and this node in the
        # role asked for; else a fresh cluster (111: start_tcp tries again).
        try:
            clusterutil.wait_leader_at(address)
        except (clusterutil.WrongRole, OSError, TimeoutError):
            proc.kill()
            proc.wait()
            return None, 111
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return None, proc.returncode
        # The pid check guards against some other server holding the port.
        if _stats_pid(address) == proc.pid:
            return Server(proc, address), None
        time.sleep(0.002)
    proc.kill()
    proc.wait()
    pytest.fail(f"sproutd {args} not ready after {READY_TIMEOUT} s")


def _needs_tls(item) -> bool:
    """Whether a collected test reaches sproutd over TLS: the stunnel half of a fixture
    parametrized plain/stunnel, or the `tls_server` factory."""
    callspec = getattr(item, "callspec", None)
    return ("tls_server" in getattr(item, "fixturenames", ())
            or (callspec is not None and "stunnel" in callspec.params.values()))


def pytest_collection_modifyitems(config, items):
    """Against a cluster node (SPROUTD_CLUSTER_ROLE), the TLS tests are deselected, not
    skipped: a cluster node ignores TLS listeners (COMPAT.md, Cluster mode, row "not
    supported yet in cluster mode"), so they are not part of that run; the summary counts
    them as deselected, and a skip stays what it means elsewhere."""
    if not clusterutil.ROLE:
        return
    kept = [i for i in items if not _needs_tls(i)]
    dropped = [i for i in items if _needs_tls(i)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def start_tcp(*extra):
    # A cluster (scripts/sproutd-cluster) is started afresh when it has no leader in time.
    for _ in range(10 if clusterutil.ROLE else 5):
        port = free_port()
        srv, code = start(["-l", "127.0.0.1", "-p", str(port), *extra], ("127.0.0.1", port))
        if srv:
            return srv
        if code != 111:  # 111: the port was taken meanwhile; try another
            pytest.fail(f"sproutd {extra} exited with {code}")
    pytest.fail("sproutd could not bind a free port 5 times")


@pytest.fixture
def server():
    """sproutd on 127.0.0.1:<free port>."""
    srv = start_tcp()
    yield srv
    srv.stop()


@pytest.fixture
def server_small_jobs():
    """sproutd with -z 10 (max job size 10 bytes)."""
    srv = start_tcp("-z", "10")
    yield srv
    srv.stop()


@pytest.fixture
def unix_server():
    """sproutd on a unix socket."""
    with tempfile.TemporaryDirectory(prefix="sproutd-py-", dir="/tmp") as d:
        path = os.path.join(d, "sock")
        for _ in range(5):
            srv, code = start(["-l", "unix:" + path], path)
            if srv or code != 111:
                break
        if not srv:
            pytest.fail(f"sproutd on {path} exited with {code}")
        yield srv
        srv.stop()


@pytest.fixture
def wait_until():
    def wait(what, cond, timeout=5.0):
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for: {what}")
            time.sleep(0.002)

    return wait



def start_with_metrics(*extra):
    """sproutd on a free port with `--metrics` on another free loopback port; the returned
    Server has `.metrics`, the (host, port) of its HTTP endpoint."""
    for _ in range(5):
        port, mport = free_port(), free_port()
        if port == mport:
            continue
        args = ["-l", "127.0.0.1", "-p", str(port), "--metrics", f"127.0.0.1:{mport}", *extra]
        srv, code = start(args, ("127.0.0.1", port))
        if srv:
            srv.metrics = ("127.0.0.1", mport)
            return srv
        if code != 111:  # 111: a port was taken meanwhile; try others
            pytest.fail(f"sproutd {args} exited with {code}")
    pytest.fail("sproutd with --metrics could not bind free ports 5 times")


@pytest.fixture
def metrics_server():
    """Factory: metrics_server(*extra_flags) starts a sproutd with --metrics (see
    start_with_metrics); every server it started is killed at teardown."""
    servers = []

    def make(*extra):
        srv = start_with_metrics(*extra)
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.stop()


# --- TLS ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pki():
    """A CA, a server certificate for 127.0.0.1/localhost, a client certificate
    (CN=tester) and an unrelated CA, made once per session with openssl."""
    p = tlsutil.Pki()
    yield p
    p.cleanup()


TOKEN = tlsutil.TEST_TOKEN


def write_users(directory, client_cn="tester"):
    """A config file with one user who may do everything: token TOKEN, subject
    CN=<client_cn>."""
    path = os.path.join(directory, "sproutd.toml")
    with open(path, "w") as f:
        f.write("[[user]]\nname = \"tester\"\n"
                f"token-sha256 = \"{tlsutil.sha256_hex(TOKEN)}\"\n"
                f"cert-subject = \"CN={client_cn}\"\n"
                "tubes = [\"*\"]\nmay = [\"produce\", \"consume\", \"inspect\", \"admin\"]\n")
    return path


class TlsServer(Server):
    """sproutd with its plain listener (`address`) and a TLS listener (`tls_address`).
    `address` may be pointed at a stunnel in front of the TLS listener; `stop` stops that
    too."""

    def __init__(self, srv, tls_address, confdir):
        super().__init__(srv.proc, srv.address)
        self.plain_address = srv.address
        self.tls_address = tls_address
        self.confdir = confdir
        self.stunnel = None

    def stop(self):
        if self.stunnel is not None:
            self.stunnel.cleanup()
            self.stunnel = None
        super().stop()
        self.confdir.cleanup()


def start_tls(pki, auth="none", *extra):
    """sproutd on free ports with a TLS listener (`--tls-auth auth`; mtls trusts the
    test CA), knowing the user of `write_users`."""
    confdir = tempfile.TemporaryDirectory(prefix="sproutd-tls-", dir="/tmp")
    conf = write_users(confdir.name, pki.client_cn)
    for _ in range(5):
        tls_port = free_port()
        args = ["--config", conf, "--tls-listen", f"127.0.0.1:{tls_port}",
                "--tls-cert", pki.server_cert, "--tls-key", pki.server_key,
                "--tls-auth", auth]
        if auth == "mtls":
            args += ["--tls-client-ca", pki.ca]
        srv = start_tcp(*args, *extra)
        if tlsutil.wait_listening(tls_port, srv.proc):
            return TlsServer(srv, ("127.0.0.1", tls_port), confdir)
        srv.stop()
    confdir.cleanup()
    pytest.fail("sproutd's TLS listener did not come up 5 times")


def start_via_stunnel(pki, *extra):
    """A TlsServer whose `address` is a stunnel client in front of its TLS listener: a
    plain client there speaks TLS to sproutd, the server certificate verified against
    the test CA and the name localhost."""
    srv = start_tls(pki, "none", *extra)
    try:
        host, port = srv.tls_address
        srv.stunnel = tlsutil.Stunnel(f"{host}:{port}", pki.ca)
    except Exception as e:  # noqa: BLE001 - reported as the test's failure
        srv.stop()
        pytest.fail(f"cannot start stunnel: {e}")
    srv.address = srv.stunnel.address
    return srv


@pytest.fixture
def tls_server(pki):
    """Factory: tls_server(auth="none", *extra_flags) starts a TlsServer; all are stopped
    at teardown."""
    servers = []

    def make(auth="none", *extra):
        if clusterutil.ROLE:
            # Deselected before the run (pytest_collection_modifyitems): reaching here is a bug.
            pytest.fail("a TLS test ran against a cluster node, whose TLS listeners are ignored")
        srv = start_tls(pki, auth, *extra)
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.stop()


@pytest.fixture
def reached(request):
    """Factory: reached(how, *extra_flags) starts sproutd and returns a Server whose
    `address` reaches it `how`: "plain" (its plain listener) or "stunnel" (a stunnel TLS
    client in front of its TLS listener). All are stopped at teardown."""
    servers = []

    def make(how, *extra):
        if how != "plain" and clusterutil.ROLE:
            # Deselected before the run (pytest_collection_modifyitems): reaching here is a bug.
            pytest.fail("a TLS test ran against a cluster node, whose TLS listeners are ignored")
        if how == "plain":
            srv = start_tcp(*extra)
        else:
            srv = start_via_stunnel(request.getfixturevalue("pki"), *extra)
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.stop()
