"""Differential test harness: sproutd vs beanstalkd, byte for byte.

Overview
========

Every *scenario* is plain data: a name, a list of *steps*, and optional server
flags.  For each scenario the harness starts two fresh servers on fresh ports
(``/usr/bin/beanstalkd -l 127.0.0.1 -p PORT [flags]`` as the reference, and
``$SPROUTD`` with the same flags (plus ``$SPROUTD_ARGS``, see "Target flags"
below) as the target; ``SPROUTD`` defaults to
``target/debug/sproutd`` of the checkout this file is in (``cargo build --bins``);
set ``SPROUTD=/usr/bin/beanstalkd`` to run the harness against itself), runs the same steps against both at the same time
(one thread per server), records every byte received on every connection, and
compares the two recordings after normalisation.  Both servers are SIGKILLed at
the end of the scenario.

Readiness: after spawning a server the harness polls ``connect()`` in a short
bounded loop (never a fixed sleep).  The first successful *probe* connection
sends an empty line and waits for ``UNKNOWN_COMMAND`` (a reply counted nowhere),
so the server has certainly registered it, and is kept open until the end of the
scenario, on both servers alike.  Counters are therefore deterministic:
``total-connections`` starts at 1 and ``current-connections``,
``current-using``/``current-watching`` of ``default`` include the probe.

Connections
-----------
Steps name connections (``"a"``, ``"b"``, ...).  A connection is opened the
first time a step uses it (or explicitly with ``connect()``), with TCP_NODELAY.
Unix-socket scenarios (``unix=True``) start both servers with
``-l unix:/tmp/.../sock``.

Steps (constructors below)
--------------------------
``send(data, c)``           write bytes (``str`` = one command line, ``\\r\\n``
                            appended; ``bytes`` = sent verbatim).
                            ``settle=T`` sleeps T s afterwards (used after a
                            command that blocks, e.g. ``reserve``, so that the
                            server has registered it before another conn acts).
``drip(data, c)``           write one byte per ``send()`` with a 2 ms gap
                            (commands split byte by byte across packets).
``recv(c, n=1)``            read ``n`` complete replies.  A reply is complete
                            at its first ``\\r\\n``; for ``OK <n>``,
                            ``RESERVED <id> <n>`` and ``FOUND <id> <n>`` also
                            ``n+2`` more bytes.  Bounded by ``timeout``
                            (default 3 s); a timeout/EOF/reset is recorded.
``cmd(data, c, n=1)``       ``send`` + ``recv``.
``put(body, ...)``          ``cmd`` of a well-formed put.
``nbytes(k, c)``            read exactly k bytes (bounded).
``silent(c, t=0.3)``        expect no reply within t s: everything that does
                            arrive in that window is recorded (and compared).
``eof(c)``                  read until EOF (bounded); data + EOF/timeout/reset
                            is recorded.
``wait(t)``                 sleep t s (only where timing matters).
``half_close(c)``           ``shutdown(SHUT_WR)``.
``close(c, settle)``        close the socket (optionally sleep afterwards).
``sig(name)``               send a signal (e.g. ``"USR1"``) to the server
                            process, then settle 0.3 s.

Any reading step can carry ``exp=`` (bytes, or a compiled regex that must
fullmatch): it is checked against the *reference* (beanstalkd) recording, which
validates the scenario itself against the behaviour document.  The target is
always checked against the reference, never against ``exp``.

Recording and comparison
------------------------
Each reading step yields a record ``(step#, conn, op, replies, status)`` where
``replies`` is a tuple of byte strings (one per reply) and ``status`` one of
``ok``, ``timeout``, ``eof``, ``reset``.  At the end, bytes that are already
waiting on any connection (collected for 50 ms) are recorded as ``leftover``.
The two record lists must be identical after normalisation.

Normalisation (only this):
* in the YAML body of ``stats`` (the body with a ``pid`` key) the values of
  ``pid``, ``version``, ``hostname``, ``os``, ``platform``, ``id``, ``uptime``,
  ``rusage-utime``, ``rusage-stime`` are replaced by ``<key>``;
* on the target side only, the 1.13 double quotes around the values of
  ``tube`` (stats-job), ``name`` (stats-tube), ``hostname``, ``os``,
  ``platform`` (stats) are removed;
* on the target side only, the ``cluster-*`` keys of ``stats`` (a cluster node's, see
  COMPAT.md) are removed;
* the ``OK <n>`` header of a rewritten body is recomputed.
Against a node of a three-node cluster (``SPROUTD_CLUSTER_ROLE``, scripts/test-cluster)
a few documented differences are allowed besides, each named in ``CLUSTER_*`` below
with its COMPAT.md row.
Dedicated tests (test_sproutd_only.py) assert that sproutd *does* quote, and
check the 1.13-only ``reserve-with-timeout`` BAD_FORMAT cases and FIFO waiter
order on the target alone.

Target flags and ``--strict``
-----------------------------
``SPROUTD_ARGS`` (split on spaces) holds extra flags for the target only, e.g.
``SPROUTD_ARGS=--strict``: they follow the scenario's own flags on sproutd's
command line, in paired runs (``run_pair``) and target-alone runs (``run_solo``)
alike, and never reach beanstalkd: not the reference, and not the target when the
target is beanstalkd itself (``SPROUTD=/usr/bin/beanstalkd``), where they are
ignored.  ``target_strict()`` says whether the target answers with sprout's own
commands off: sproutd with ``--strict``, or beanstalkd itself.  Scenarios made
with ``S(..., strict_only=True)`` (scenarios/s_strict.py: sprout's extension
command lines, which plain sproutd answers with its own replies) carry the
pytest marker ``strict_only`` and are skipped, saying so, unless
``target_strict()``.

TLS listeners beside the plain one
----------------------------------
With ``SPROUT_DIFF_TLS=1`` every sproutd target also gets three TLS listeners on
loopback ports, from a ``--config`` file written into its temporary directory:
``auth = "none"``, ``auth = "token"`` and ``auth = "mtls"`` (with one user who may do
everything), the certificates made once per session with openssl (tests/tlsutil.py).
The scenario still runs on the plain listener and must match beanstalkd byte for byte;
after its last step, while the server still runs, each TLS listener must complete a
handshake (the server certificate verified; a client certificate for mtls), accept the
token (token) and answer ``list-tube-used`` with ``USING default``, or the scenario
fails. Nothing of this reaches beanstalkd, nor a target that is beanstalkd itself.

Files
-----
``scenarios/s_*.py``   the scenario data (each module exports ``SCENARIOS``);
``test_diff.py``       one pytest test per scenario;
``test_sproutd_only.py`` target-only checks (asserted against 1.12 behaviour
                       when the target is beanstalkd itself);
``dump.py NAME``       print beanstalkd's (or ``--target``) recording of scenarios;
``flaky.py NAME N``    run scenarios N times (beanstalkd vs beanstalkd) and show
                       any outcome that is not stable.

Timing rules: replies expected "after ~1 s" are awaited for 3 s; "nothing
before" windows end well before the deadline; ``age``/``time-left`` are only
read where they are far from an integer boundary.  beanstalkd 1.12 sometimes
misses the TTR deadline of a job held by an idle connection (see ``NUDGE`` in
scenarios/s_timing.py); those scenarios poke the owner first.
"""

from __future__ import annotations

import atexit
import math
import os
import re
import shutil
import signal as _signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Optional, Sequence

# The repository root: this file is tests/diff/harness.py.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BEANSTALKD = os.environ.get("BEANSTALKD", "/usr/bin/beanstalkd")
SPROUTD = os.environ.get("SPROUTD", os.path.join(ROOT, "target", "debug", "sproutd"))
# Extra flags for the target server only (e.g. "--strict"); see target_args().
SPROUTD_ARGS = tuple(os.environ.get("SPROUTD_ARGS", "").split())
# TLS listeners beside the target's plain one; see "TLS listeners beside the plain one".
TLS_BESIDE = os.environ.get("SPROUT_DIFF_TLS", "") not in ("", "0")

sys.path.insert(0, os.path.join(ROOT, "tests"))
import tlsutil  # noqa: E402
import clusterutil  # noqa: E402

DEFAULT_TIMEOUT = 3.0
START_TIMEOUT = 5.0
CLUSTER_START_TIMEOUT = 30.0
LEFTOVER_WINDOW = 0.05


class ServerStartError(RuntimeError):
    pass


# --------------------------------------------------------------------------
# servers
# --------------------------------------------------------------------------

_used_ports: set[int] = set()
_port_lock = threading.Lock()


def free_port() -> int:
    """A port the kernel says is free now, never handed out twice by us."""
    with _port_lock:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            if port not in _used_ports:
                _used_ports.add(port)
                return port
    raise RuntimeError("no free port")


class Server:
    """One server process (beanstalkd or sproutd) on a fresh port or unix socket."""

    def __init__(self, binary: str, args: Sequence[str] = (), unix: bool = False,
                 label: str = "server", tls_beside: bool = False):
        self.binary = binary
        self.args = list(args)
        self.unix = unix
        self.label = label
        self.tls_beside = tls_beside
        self.tls_listeners: list[tuple[str, int]] = []
        self.proc: Optional[subprocess.Popen] = None
        self.tmpdir: Optional[str] = None
        self.addr: Any = None
        self.probe: Optional[socket.socket] = None
        self.cmdline: list[str] = []

    def _family(self):
        return socket.AF_UNIX if self.unix else socket.AF_INET

    def connect(self, timeout: float = 1.0) -> socket.socket:
        s = socket.socket(self._family(), socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(self.addr)
        except BaseException:
            s.close()
            raise
        if not self.unix:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def start(self, start_timeout: float = START_TIMEOUT) -> "Server":
        last_err = ""
        if self._cluster():
            # Three processes, the two others started first (scripts/sproutd-cluster).
            start_timeout = max(start_timeout, CLUSTER_START_TIMEOUT)
        # A cluster node (SPROUTD_CLUSTER_ROLE) may come up in the wrong role: a fresh
        # cluster is started then (see _cluster_ready).
        for _attempt in range(8 if self._cluster() else 4):
            self.tmpdir = tempfile.mkdtemp(prefix="sdiff-")
            if self.unix:
                self.addr = os.path.join(self.tmpdir, "sock")
                listen = ["-l", "unix:" + self.addr]
            else:
                port = free_port()
                self.addr = ("127.0.0.1", port)
                listen = ["-l", "127.0.0.1", "-p", str(port)]
            config = []
            if self.tls_beside:
                config = ["--config", self._write_tls_config()]
            self.cmdline = [self.binary, *listen, *config, *self.args]
            errpath = os.path.join(self.tmpdir, "stderr")
            with open(errpath, "wb") as errf:
                try:
                    self.proc = subprocess.Popen(
                        self.cmdline, stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL, stderr=errf)
                except OSError as e:
                    self._cleanup_dir()
                    raise ServerStartError(f"{self.label}: cannot exec {self.cmdline}: {e}")
            deadline = time.monotonic() + start_timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    probe = self.connect(timeout=0.5)
                except OSError:
                    time.sleep(0.005)
                    continue
                self.probe = probe
                if self._probe_round_trip():
                    if not self._cluster():
                        return self
                    err = self._cluster_ready()
                    if err is None:
                        return self
                    last_err = err
                    self.stop()
                    self.probe = None
                    break
                last_err = "probe connection got no UNKNOWN_COMMAND reply to an empty line"
                break
            if self.proc is None:  # a cluster node in the wrong role: try again
                continue
            rc = self.proc.poll()
            if self.probe is not None:  # connected, but the probe failed
                self.stop()
                break
            try:
                with open(errpath, "rb") as f:
                    err = f.read()[-2000:]
            except OSError:
                err = b""
            last_err = f"exit={rc} stderr={err!r}"
            self.stop()
            if rc is None:  # hung without listening: no point retrying
                break
        raise ServerStartError(f"{self.label}: {self.cmdline} did not start: {last_err}")

    def _cluster(self) -> bool:
        """Whether this is the target run as a cluster node (SPROUTD_CLUSTER_ROLE)."""
        return bool(clusterutil.ROLE) and self.label == "sproutd" \
            and target_flavour(self.binary) != "1.12"

    def _cluster_ready(self) -> Optional[str]:
        """On the probe connection: waits until the node knows a leader and has the role
        asked for (cluster-status, answered by the node: nothing logged or counted); None
        once it does, else why not."""
        try:
            clusterutil.wait_leader(self.probe)
            return None
        except clusterutil.WrongRole as e:
            return f"cluster node in the wrong role: {e}"
        except (OSError, RuntimeError, TimeoutError) as e:
            return f"cluster node not ready: {type(e).__name__}: {e}"

    def _write_tls_config(self) -> str:
        """The --config file of the TLS listeners beside the plain one (fresh ports)."""
        pki = _pki()
        self.tls_listeners = [(auth, free_port()) for auth in ("none", "token", "mtls")]
        lines = []
        for auth, port in self.tls_listeners:
            ca = f', client-ca = "{pki.ca}"' if auth == "mtls" else ""
            lines += ["[[listener]]", f'addr = "127.0.0.1:{port}"',
                      f'tls = {{ cert = "{pki.server_cert}", key = "{pki.server_key}"{ca} }}',
                      f'auth = "{auth}"', ""]
        lines += ["[[user]]", 'name = "diff"',
                  f'token-sha256 = "{tlsutil.sha256_hex(tlsutil.TEST_TOKEN)}"',
                  f'cert-subject = "CN={pki.client_cn}"', 'tubes = ["*"]',
                  'may = ["produce", "consume", "inspect", "admin"]', ""]
        path = os.path.join(self.tmpdir, "tls.toml")
        with open(path, "w") as f:
            f.write("\n".join(lines))
        return path

    def check_tls_beside(self) -> Optional[str]:
        """Each TLS listener handshakes, takes the token (token listener) and answers
        list-tube-used; a description of the first failure, or None."""
        pki = _pki()
        for auth, port in self.tls_listeners:
            try:
                ctx = ssl.create_default_context(cafile=pki.ca)
                if auth == "mtls":
                    ctx.load_cert_chain(pki.client_cert, pki.client_key)
                raw = socket.create_connection(("127.0.0.1", port), timeout=START_TIMEOUT)
                with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                    if auth == "token":
                        s.sendall(b"auth " + tlsutil.TEST_TOKEN.encode() + b"\r\n")
                        got = _read_line(s)
                        if got != b"AUTHENTICATED\r\n":
                            return f"TLS listener {auth} on port {port}: auth answered {got!r}"
                    s.sendall(b"list-tube-used\r\n")
                    got = _read_line(s)
                    if got != b"USING default\r\n":
                        return (f"TLS listener {auth} on port {port}: list-tube-used "
                                f"answered {got!r}")
            except (OSError, ssl.SSLError) as e:
                return f"TLS listener {auth} on port {port}: {type(e).__name__}: {e}"
        return None

    def _probe_round_trip(self) -> bool:
        """Send an empty line (UNKNOWN_COMMAND; counted nowhere) so that the server
        has certainly registered the probe before the scenario starts."""
        try:
            self.probe.settimeout(START_TIMEOUT)
            self.probe.sendall(b"\r\n")
            buf = b""
            while not buf.endswith(b"\r\n"):
                chunk = self.probe.recv(100)
                if not chunk:
                    return False
                buf += chunk
            return buf == b"UNKNOWN_COMMAND\r\n"
        except OSError:
            return False

    def signal(self, signame: str):
        assert self.proc is not None
        os.kill(self.proc.pid, getattr(_signal, "SIG" + signame))

    def _cleanup_dir(self):
        if self.tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None

    def stop(self):
        if self.probe is not None:
            try:
                self.probe.close()
            except OSError:
                pass
            self.probe = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            self.proc = None
        self._cleanup_dir()


def _read_line(sock) -> bytes:
    line = b""
    while not line.endswith(b"\r\n") and len(line) < 200:
        b = sock.recv(1)
        if not b:
            break
        line += b
    return line


@lru_cache(maxsize=None)
def _pki() -> "tlsutil.Pki":
    """The certificates of the TLS listeners, made once per session."""
    pki = tlsutil.Pki(client_cn="diff-client")
    atexit.register(pki.cleanup)
    return pki


def target_tls_beside(binary=None) -> bool:
    """Whether a target run from `binary` gets TLS listeners beside its plain one
    (SPROUT_DIFF_TLS set, and the target is sproutd)."""
    return TLS_BESIDE and target_flavour(binary) != "1.12"


def _check_beside(srv: Server, res: "RunResult"):
    """After a scenario: the TLS listeners still work (only while the server runs)."""
    if not srv.tls_beside or srv.proc is None or srv.proc.poll() is not None:
        return
    err = srv.check_tls_beside()
    if err:
        res.error = f"{res.error}; {err}" if res.error else err


# --------------------------------------------------------------------------
# reply framing
# --------------------------------------------------------------------------

_BODY_HDR = re.compile(rb"(?:OK|RESERVED \d+|FOUND \d+) (\d+)\r\n")


def reply_length(buf: bytes) -> Optional[int]:
    """Length of the first complete reply in buf, or None if incomplete."""
    i = buf.find(b"\r\n")
    if i < 0:
        return None
    line_end = i + 2
    m = _BODY_HDR.fullmatch(buf[:line_end])
    if m:
        total = line_end + int(m.group(1)) + 2
        return total if len(buf) >= total else None
    return line_end


def split_replies(data: bytes) -> list[bytes]:
    """Split a byte string into complete replies (+ an incomplete tail)."""
    out = []
    while data:
        n = reply_length(data)
        if n is None:
            out.append(data)
            break
        out.append(data[:n])
        data = data[n:]
    return out


class Conn:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""
        self.eof = False
        self.reset = False
        self.closed = False

    def _fill(self, deadline: float) -> bool:
        """Read more bytes.  False on timeout, EOF or reset."""
        if self.eof or self.reset:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(1 << 20)
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            self.reset = True
            return False
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def _status(self) -> str:
        if self.reset:
            return "reset"
        if self.eof:
            return "eof"
        return "timeout"

    def read_replies(self, n: int, timeout: float) -> tuple[tuple[bytes, ...], str]:
        deadline = time.monotonic() + timeout
        replies = []
        while len(replies) < n:
            k = reply_length(self.buf)
            if k is not None:
                replies.append(self.buf[:k])
                self.buf = self.buf[k:]
                continue
            if not self._fill(deadline):
                if self.buf:
                    replies.append(self.buf)
                    self.buf = b""
                return tuple(replies), self._status()
        return tuple(replies), "ok"

    def read_exact(self, k: int, timeout: float) -> tuple[bytes, str]:
        deadline = time.monotonic() + timeout
        while len(self.buf) < k:
            if not self._fill(deadline):
                data, self.buf = self.buf, b""
                return data, self._status()
        data, self.buf = self.buf[:k], self.buf[k:]
        return data, "ok"

    def read_for(self, t: float) -> tuple[bytes, str]:
        deadline = time.monotonic() + t
        while self._fill(deadline):
            pass
        data, self.buf = self.buf, b""
        return data, self._status()

    def read_eof(self, timeout: float) -> tuple[bytes, str]:
        return self.read_for(timeout)

    def send(self, data: bytes):
        self.sock.settimeout(DEFAULT_TIMEOUT)
        self.sock.sendall(data)

    def close(self):
        if not self.closed:
            self.closed = True
            try:
                self.sock.close()
            except OSError:
                pass


# --------------------------------------------------------------------------
# steps
# --------------------------------------------------------------------------

@dataclass
class Step:
    op: str
    c: str = "a"
    data: bytes = b""
    n: int = 1
    t: float = 0.0
    timeout: float = DEFAULT_TIMEOUT
    settle: float = 0.0
    exp: Any = None

    def describe(self) -> str:
        s = f"{self.op}[{self.c}]"
        if self.data:
            d = self.data if len(self.data) <= 80 else self.data[:60] + b"...(%d bytes)" % len(self.data)
            s += f" {d!r}"
        if self.op in ("wait", "silent"):
            s += f" t={self.t}"
        return s


def _b(data) -> bytes:
    if isinstance(data, str):
        return data.encode("latin-1") + b"\r\n"
    return bytes(data)


def _e(exp):
    if isinstance(exp, str):
        return exp.encode("latin-1")
    return exp


def contains(*subs):
    """An exp= matcher: the data contains every given substring (any order)."""
    pat = b"".join(b"(?=.*" + re.escape(_e(x)) + b")" for x in subs)
    return re.compile(b"(?s)" + pat + b".*")


def connect(c="a"):
    return [Step("connect", c)]


def send(data, c="a", settle=0.0):
    return [Step("send", c, _b(data), settle=settle)]


def drip(data, c="a"):
    return [Step("drip", c, _b(data))]


def recv(c="a", n=1, timeout=DEFAULT_TIMEOUT, exp=None):
    return [Step("recv", c, n=n, timeout=timeout, exp=_e(exp))]


def cmd(data, c="a", n=1, timeout=DEFAULT_TIMEOUT, exp=None):
    return send(data, c) + recv(c, n=n, timeout=timeout, exp=exp)


def put(body=b"x", pri=0, delay=0, ttr=60, c="a", exp=None):
    if isinstance(body, str):
        body = body.encode("latin-1")
    return cmd(b"put %d %d %d %d\r\n" % (pri, delay, ttr, len(body)) + body + b"\r\n",
               c, exp=exp)


def nbytes(k, c="a", timeout=DEFAULT_TIMEOUT, exp=None):
    return [Step("nbytes", c, n=k, timeout=timeout, exp=_e(exp))]


def silent(c="a", t=0.3, exp=b""):
    return [Step("silent", c, t=t, exp=_e(exp))]


def eof(c="a", timeout=DEFAULT_TIMEOUT, exp=b""):
    return [Step("eof", c, timeout=timeout, exp=_e(exp))]


def wait(t):
    return [Step("wait", "-", t=t)]


def half_close(c="a"):
    return [Step("half_close", c)]


def close(c="a", settle=0.0):
    return [Step("close", c, settle=settle)]


def sig(name="USR1", settle=0.3):
    return [Step("signal", "-", data=name.encode(), settle=settle)]


def flatten(*parts) -> list[Step]:
    out: list[Step] = []
    for p in parts:
        if isinstance(p, Step):
            out.append(p)
        elif isinstance(p, (list, tuple)):
            out.extend(flatten(*p))
        else:
            raise TypeError(f"not a step: {p!r}")
    return out


@dataclass
class Scenario:
    name: str
    steps: list
    args: tuple = ()
    unix: bool = False
    # Meaningful only when the target runs with sprout's own commands off (--strict):
    # skipped otherwise (see target_strict() and the strict_only marker).
    strict_only: bool = False

    def __post_init__(self):
        self.steps = flatten(*self.steps)


def S(name, *steps, args=(), unix=False, strict_only=False) -> Scenario:
    return Scenario(name, list(steps), tuple(args), unix, strict_only)


# --------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Record:
    idx: int
    c: str
    op: str
    replies: tuple
    status: str

    @property
    def data(self) -> bytes:
        return b"".join(self.replies)


class RunResult:
    def __init__(self):
        self.records: list[Record] = []
        self.error: Optional[str] = None
        self.elapsed = 0.0


def run_steps(server: Server, steps: Sequence[Step]) -> RunResult:
    res = RunResult()
    conns: dict[str, Conn] = {}
    t0 = time.monotonic()

    def get(c) -> Conn:
        if c not in conns:
            conns[c] = Conn(server.connect(timeout=DEFAULT_TIMEOUT))
        return conns[c]

    i = 0
    try:
        for i, st in enumerate(steps):
            op = st.op
            if op == "connect":
                get(st.c)
            elif op == "send":
                get(st.c).send(st.data)
                if st.settle:
                    time.sleep(st.settle)
            elif op == "drip":
                cn = get(st.c)
                for k in range(len(st.data)):
                    cn.send(st.data[k:k + 1])
                    time.sleep(0.002)
            elif op == "recv":
                reps, status = get(st.c).read_replies(st.n, st.timeout)
                res.records.append(Record(i, st.c, op, reps, status))
            elif op == "nbytes":
                data, status = get(st.c).read_exact(st.n, st.timeout)
                res.records.append(Record(i, st.c, op, (data,), status))
            elif op == "silent":
                data, status = get(st.c).read_for(st.t)
                res.records.append(Record(i, st.c, op, (data,), status))
            elif op == "eof":
                data, status = get(st.c).read_eof(st.timeout)
                res.records.append(Record(i, st.c, op, (data,), status))
            elif op == "wait":
                time.sleep(st.t)
            elif op == "half_close":
                get(st.c).sock.shutdown(socket.SHUT_WR)
            elif op == "close":
                get(st.c).close()
                if st.settle:
                    time.sleep(st.settle)
            elif op == "signal":
                server.signal(st.data.decode())
                if st.settle:
                    time.sleep(st.settle)
            else:
                raise ValueError(f"unknown step op {op}")
        # leftover bytes
        live = [(c, cn) for c, cn in conns.items() if not cn.closed and not cn.eof and not cn.reset]
        if live:
            time.sleep(LEFTOVER_WINDOW)
        for c, cn in sorted(conns.items()):
            if cn.closed:
                continue
            if not cn.eof and not cn.reset:
                cn.sock.setblocking(False)
                try:
                    while True:
                        chunk = cn.sock.recv(1 << 20)
                        if not chunk:
                            break
                        cn.buf += chunk
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    pass
            if cn.buf:
                res.records.append(Record(len(steps), c, "leftover", (cn.buf,), "-"))
    except Exception as e:  # noqa: BLE001 - recorded and reported
        where = steps[i].describe() if i < len(steps) else "end"
        res.error = f"step {i} ({where}): {type(e).__name__}: {e}"
    finally:
        for cn in conns.values():
            cn.close()
        res.elapsed = time.monotonic() - t0
    return res


# --------------------------------------------------------------------------
# normalisation
# --------------------------------------------------------------------------

VOLATILE_STATS_KEYS = {b"pid", b"version", b"hostname", b"os", b"platform", b"id",
                       b"uptime", b"rusage-utime", b"rusage-stime"}
QUOTED_113_KEYS = {b"tube", b"name", b"hostname", b"os", b"platform"}
_OK_HDR = re.compile(rb"OK (\d+)\r\n")


def normalise_reply(r: bytes, target_side: bool) -> bytes:
    m = _OK_HDR.match(r)
    if not m:
        return r
    n = int(m.group(1))
    body, rest = r[m.end():m.end() + n], r[m.end() + n:]
    if not body.startswith(b"---\n") or len(body) < n:
        return r
    lines = body[4:].split(b"\n")
    is_stats = any(ln.startswith(b"pid: ") for ln in lines)
    out = []
    for ln in lines:
        k, sep, v = ln.partition(b": ")
        if target_side and is_stats and k.startswith(b"cluster-"):
            # A cluster node's own keys (COMPAT.md, "Cluster mode").
            continue
        if sep:
            if target_side and k in QUOTED_113_KEYS and len(v) >= 2 \
                    and v.startswith(b'"') and v.endswith(b'"'):
                v = v[1:-1]
            if is_stats and k in VOLATILE_STATS_KEYS:
                v = b"<" + k + b">"
            ln = k + sep + v
        out.append(ln)
    nb = b"---\n" + b"\n".join(out)
    return b"OK %d\r\n" % len(nb) + nb + rest


def normalise_records(recs: Sequence[Record], target_side: bool) -> list[Record]:
    out = []
    for r in recs:
        reps = []
        for chunk in r.replies:
            for piece in split_replies(chunk):
                reps.append(normalise_reply(piece, target_side))
        # re-split so that a reply that arrived in one recv vs in pieces compares alike
        out.append(Record(r.idx, r.c, r.op, tuple(reps), r.status))
    return out


# --------------------------------------------------------------------------
# checking
# --------------------------------------------------------------------------

def _fmt_rec(r: Optional[Record]) -> str:
    if r is None:
        return "<no record>"
    return f"{r.data!r} [{r.status}]"


def check_expectations(sc: Scenario, res: RunResult) -> list[str]:
    """Check the exp= annotations against the reference recording."""
    problems = []
    by_idx = {r.idx: r for r in res.records}
    for i, st in enumerate(sc.steps):
        if st.exp is None:
            continue
        r = by_idx.get(i)
        if r is None:
            problems.append(f"step {i} {st.describe()}: no record (run error: {res.error})")
            continue
        ok = (st.exp.fullmatch(r.data) is not None) if isinstance(st.exp, re.Pattern) \
            else (r.data == st.exp)
        if st.op in ("recv", "nbytes") and r.status != "ok":
            ok = False
        if st.op == "eof" and r.status != "eof":
            ok = False
        if not ok:
            exp = st.exp.pattern if isinstance(st.exp, re.Pattern) else st.exp
            problems.append(f"step {i} {st.describe()}:\n    expected {exp!r}\n    got      {_fmt_rec(r)}")
    return problems


def compare(sc: Scenario, ref: RunResult, tgt: RunResult,
            ref_label="beanstalkd", tgt_label="sproutd") -> list[str]:
    problems = []
    if ref.error:
        problems.append(f"{ref_label} run error: {ref.error}")
    if tgt.error:
        problems.append(f"{tgt_label} run error: {tgt.error}")
    a = normalise_records(ref.records, False)
    b = normalise_records(tgt.records, True)
    ia = {(r.idx, r.c, r.op): r for r in a}
    ib = {(r.idx, r.c, r.op): r for r in b}
    keys = sorted(set(ia) | set(ib))
    for k in keys:
        ra, rb = ia.get(k), ib.get(k)
        if ra is not None and rb is not None and ra.replies == rb.replies and ra.status == rb.status:
            continue
        idx, c, op = k
        what = sc.steps[idx].describe() if idx < len(sc.steps) else "end of scenario"
        # show the command(s) that led here on this conn
        sent = [s.data for s in sc.steps[:idx] if s.c == c and s.op in ("send", "drip")]
        last = sent[-1] if sent else b""
        if len(last) > 80:
            last = last[:60] + b"...(%d bytes)" % len(last)
        msg = (f"step {idx} {op} on conn {c} ({what}; last sent {last!r}):\n"
               f"    expected ({ref_label}): {_fmt_rec(ra)}\n"
               f"    got      ({tgt_label}): {_fmt_rec(rb)}")
        if ra is not None and rb is not None and b"\n---\n" in ra.data + rb.data:
            la, lb = ra.data.split(b"\n"), rb.data.split(b"\n")
            diff = [f"      line {k}: {x!r} != {y!r}" for k, (x, y) in enumerate(zip(la, lb)) if x != y]
            if len(la) != len(lb):
                diff.append(f"      line counts {len(la)} != {len(lb)}")
            msg += "\n    differing YAML lines (normalised, expected != got):\n" + "\n".join(diff)
        problems.append(msg)
    return problems


_tgt_start_failures = 0


def run_pair(sc: Scenario, ref_bin=BEANSTALKD, tgt_bin=None):
    """Run a scenario against the reference and the target concurrently."""
    tgt_bin = tgt_bin or SPROUTD
    ref = Server(ref_bin, sc.args, sc.unix, "beanstalkd")
    tgt = Server(tgt_bin, sc.args + target_args(tgt_bin), sc.unix, "sproutd",
                 tls_beside=target_tls_beside(tgt_bin))
    results: dict[str, RunResult] = {}
    try:
        ref.start()
        global _tgt_start_failures
        try:
            # after 3 consecutive failures stop waiting the full 5 s each time
            tgt.start(START_TIMEOUT if _tgt_start_failures < 3 else 0.5)
            _tgt_start_failures = 0
        except ServerStartError as e:
            _tgt_start_failures += 1
            r = RunResult()
            r.error = str(e)
            results["tgt"] = r
        def go(key, srv):
            steps = _cluster_steps(sc) if key == "tgt" and clusterutil.ROLE else sc.steps
            results[key] = run_steps(srv, steps)
        threads = [threading.Thread(target=go, args=("ref", ref))]
        if "tgt" not in results:
            threads.append(threading.Thread(target=go, args=("tgt", tgt)))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if tgt.proc is not None:
            _check_beside(tgt, results["tgt"])
    finally:
        ref.stop()
        tgt.stop()
    return results["ref"], results["tgt"]


# Allowances of a cluster node (SPROUTD_CLUSTER_ROLE set; scripts/test-cluster), each a
# documented difference (COMPAT.md, "Cluster mode"); nothing else is allowed.
# - Scenarios whose replies come later than the default reply window allows through the
#   Raft log (row "latency": every command is answered after a majority's fsync): the
#   target's reading steps get CLUSTER_SLOW_FACTOR times their window. Only the windows
#   of steps that read replies (recv, nbytes, eof) grow, never a `silent` one, so a
#   reply that must not come is still checked as before.
CLUSTER_SLOW = {
    # 500 puts then 500 reserves pipelined: 1000 commands through the log take more
    # than 3 s on a debug build (row "latency").
    "pipeline_500_puts_then_500_reserves": "latency",
}
CLUSTER_SLOW_FACTOR = 10
# - `age` and `time-left` of stats-job, `pause-time-left` of stats-tube, may be off by
#   one second plus the time the target's run took longer than the reference's (row
#   "latency"): every command is applied a majority's fsync after it arrived, so the
#   scenario's clock runs behind beanstalkd's by the sum of those delays (seconds, over
#   30 commands on a loaded machine). Only these keys, only by that much.
CLUSTER_TIME_KEYS = (b"age", b"time-left", b"pause-time-left")


def _cluster_steps(sc: Scenario) -> list[Step]:
    if sc.name not in CLUSTER_SLOW:
        return sc.steps
    return [Step(**{**st.__dict__, "timeout": st.timeout * CLUSTER_SLOW_FACTOR})
            if st.op in ("recv", "nbytes", "eof") else st for st in sc.steps]


def _yaml_keys(r: bytes) -> Optional[list]:
    m = _OK_HDR.match(r)
    if not m:
        return None
    return [ln.partition(b": ") for ln in r[m.end():].split(b"\n")]


def _cluster_tolerated(a: bytes, b: bytes, slack: int = 1) -> bool:
    """Whether reply b (target) differs from a (reference) only in CLUSTER_TIME_KEYS, by
    at most `slack` seconds each."""
    ka, kb = _yaml_keys(a), _yaml_keys(b)
    if ka is None or kb is None or len(ka) != len(kb) \
            or not (b"\nstate: " in a or b"\npause-time-left: " in a):
        return False
    for (k1, s1, v1), (k2, s2, v2) in zip(ka, kb):
        if (k1, s1, v1) == (k2, s2, v2):
            continue
        if k1 != k2 or k1 not in CLUSTER_TIME_KEYS or not (v1.isdigit() and v2.isdigit()):
            return False
        if abs(int(v1) - int(v2)) > slack:
            return False
    return True


def _apply_cluster_tolerance(ref: RunResult, tgt: RunResult):
    """Replaces a target record by the reference's where they differ only as
    _cluster_tolerated allows (the body lengths are equal: one digit either side is not
    guaranteed, so the whole reply, header included, must otherwise match)."""
    ia = {(r.idx, r.c, r.op): r for r in ref.records}
    slack = 1 + math.ceil(max(0.0, tgt.elapsed - ref.elapsed))
    for i, r in enumerate(tgt.records):
        ra = ia.get((r.idx, r.c, r.op))
        if ra is None or ra.replies == r.replies or ra.status != r.status \
                or len(ra.replies) != len(r.replies):
            continue
        a_n = [normalise_reply(x, False) for x in ra.replies]
        b_n = [normalise_reply(x, True) for x in r.replies]
        if all(x == y or _cluster_tolerated(x, y, slack) for x, y in zip(a_n, b_n)):
            tgt.records[i] = Record(r.idx, r.c, r.op, ra.replies, r.status)


def check_scenario(sc: Scenario):
    """Runs the scenario against both servers and fails if the target differs. A cluster
    node's scenario that differs is run once more (both servers afresh), and passes only
    if that run matches: on a loaded machine a timed step can miss its window by the
    Raft log's delay (COMPAT.md, Cluster mode, row "latency"); the first run's differences
    are shown as a warning."""
    try:
        _check_scenario_once(sc)
    except AssertionError as first:
        if not clusterutil.ROLE:
            raise
        _check_scenario_once(sc)
        import warnings
        warnings.warn(f"cluster node ({clusterutil.ROLE}): scenario {sc.name!r} passed "
                      f"on its second run; the first differed: {str(first)[:2000]}")


def _check_scenario_once(sc: Scenario):
    ref, tgt = run_pair(sc)
    if clusterutil.ROLE:
        _apply_cluster_tolerance(ref, tgt)
    msgs = []
    exp_problems = check_expectations(sc, ref)
    if exp_problems:
        msgs.append("REFERENCE (beanstalkd) does not match the scenario's exp= annotations "
                    "(scenario bug or undocumented behaviour):\n  " + "\n  ".join(exp_problems))
    diff = compare(sc, ref, tgt)
    if diff:
        msgs.append(f"sproutd differs from beanstalkd in scenario {sc.name!r} "
                    f"(args {list(sc.args)}, target flags {list(target_args())}):\n  "
                    + "\n  ".join(diff))
    if msgs:
        raise AssertionError("\n".join(msgs))


def run_solo(sc: Scenario, binary=None) -> RunResult:
    """Run a scenario against one server (the target by default); SPROUTD_ARGS are
    added unless that server is beanstalkd."""
    binary = binary or SPROUTD
    srv = Server(binary, sc.args + target_args(binary), sc.unix, "sproutd",
                 tls_beside=target_tls_beside(binary))
    try:
        srv.start()
        res = run_steps(srv, sc.steps)
        _check_beside(srv, res)
        return res
    finally:
        srv.stop()


def target_flavour(binary=None) -> str:
    """'1.12' when the target is Debian's beanstalkd 1.12, else '1.13' (sproutd)."""
    return _flavour(binary or SPROUTD)


@lru_cache(maxsize=None)
def _flavour(binary: str) -> str:
    try:
        if os.path.realpath(binary) == os.path.realpath(BEANSTALKD):
            return "1.12"
        out = subprocess.run([binary, "-v"], capture_output=True, timeout=5).stdout
        if out.strip() == b"beanstalkd 1.12":
            return "1.12"
    except (OSError, subprocess.TimeoutExpired):
        pass
    return "1.13"


def target_args(binary=None) -> tuple:
    """The extra flags (SPROUTD_ARGS) for a target server run from `binary` (default
    $SPROUTD); none when that binary is beanstalkd itself."""
    if target_flavour(binary) == "1.12":
        return ()
    return SPROUTD_ARGS


def target_strict(binary=None) -> bool:
    """True when the target answers every line as beanstalkd does, sprout's own commands
    included: sproutd run with --strict, or beanstalkd itself (the harness self-test,
    which validates the strict-only scenarios' exp= annotations)."""
    return target_flavour(binary) == "1.12" or "--strict" in target_args(binary)
