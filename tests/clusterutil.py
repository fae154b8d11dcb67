"""The suites' side of running against a sproutd cluster (scripts/sproutd-cluster,
scripts/test-cluster).

With ``SPROUTD=scripts/sproutd-cluster`` and ``SPROUTD_CLUSTER_ROLE=leader|follower`` the
server a suite starts is one node of a fresh three-node cluster on loopback, in that role.
Once it accepts connections, ``wait_leader`` waits (on a connection of the caller's, with
``cluster-status``, which the node answers itself: nothing is logged, nothing counted)
until it knows a leader, and moves the lead with ``cluster-transfer-leader`` if the node
does not have the role asked for (a split first election, see scripts/sproutd-cluster);
if that fails twice, it says so and the suite starts a fresh cluster.

``ROLE`` is empty when the variable is unset: no cluster, nothing here applies.
``allow(row)`` marks the places where a scenario or test allows a documented difference
of a cluster node (COMPAT.md, "Cluster mode", the row named).
"""

import os
import re
import socket
import time

ROLE = os.environ.get("SPROUTD_CLUSTER_ROLE", "")
if ROLE not in ("", "leader", "follower"):
    raise RuntimeError(f"SPROUTD_CLUSTER_ROLE={ROLE!r}: must be leader or follower")
# How long a fresh cluster gets to elect a leader (a split vote costs an election timeout
# or two: about 1 s; this leaves room for a loaded machine).
LEADER_TIMEOUT = 20.0


class WrongRole(Exception):
    """The node knows a leader, but does not have the role asked for."""


def _read_status(sock) -> dict:
    sock.sendall(b"cluster-status\r\n")
    buf = b""
    while True:
        m = re.match(rb"OK (\d+)\r\n", buf)
        if m and len(buf) >= m.end() + int(m.group(1)) + 2:
            body = buf[m.end():m.end() + int(m.group(1))].decode()
            break
        if b"\r\n" in buf and not buf.startswith(b"OK "):
            raise RuntimeError(f"cluster-status answered {buf!r} (a cluster node, "
                               "without --strict, is needed)")
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("connection closed during cluster-status")
        buf += chunk
    out = {}
    for line in body.splitlines()[1:]:
        k, _, v = line.partition(": ")
        out[k] = v
    return out


def _wanted_leader(st: dict):
    """The node that should lead for ROLE when `st` (a cluster-status with a leader) shows
    the wrong role, else None. scripts/sproutd-cluster: leader role, the node under test is
    node 3; follower role, it is node 1, and node 3 should lead."""
    me, role = st.get("node-id"), st.get("role")
    if ROLE == "leader" and role != "leader":
        return me
    if ROLE == "follower" and role == "leader":
        return "3"
    return None


def _transfer(sock, node):
    """cluster-transfer-leader `node` on `sock`; its reply (TRANSFERRED or CLUSTER_ERROR,
    either way the caller looks at cluster-status again)."""
    old = sock.gettimeout()
    sock.settimeout(15.0)
    try:
        sock.sendall(f"cluster-transfer-leader {node}\r\n".encode())
        buf = b""
        while b"\r\n" not in buf:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("connection closed during cluster-transfer-leader")
            buf += chunk
        return buf
    finally:
        sock.settimeout(old)


def wait_leader(sock, timeout: float = LEADER_TIMEOUT) -> dict:
    """On the open connection `sock`: waits until the node knows a leader (and, asked to be
    the leader, says it is); returns its cluster-status. Raises WrongRole if it does not
    have the role of SPROUTD_CLUSTER_ROLE, TimeoutError if no leader came."""
    old = sock.gettimeout()
    sock.settimeout(5.0)
    try:
        deadline = time.monotonic() + timeout
        transfers = 0
        while True:
            st = _read_status(sock)
            if st.get("leader-id", "0") != "0":
                want = _wanted_leader(st)
                if want is not None and transfers < 2:
                    # A split first election gave the lead to another node: move it
                    # (`cluster-transfer-leader`) rather than start a fresh cluster.
                    transfers += 1
                    _transfer(sock, want)
                    continue
                if ROLE == "leader" and st.get("role") != "leader":
                    raise WrongRole(f"node {st.get('node-id')} is {st.get('role')}, "
                                    f"leader {st.get('leader-id')}")
                if ROLE == "follower" and st.get("role") != "follower":
                    raise WrongRole(f"node {st.get('node-id')} is {st.get('role')}")
                return st
            if time.monotonic() > deadline:
                raise TimeoutError(f"no leader after {timeout} s: {st}")
            time.sleep(0.01)
    finally:
        sock.settimeout(old)


def wait_leader_at(address, timeout: float = LEADER_TIMEOUT) -> dict:
    """wait_leader on a new connection to `address` ((host, port) or a unix socket path),
    retried while the node does not accept yet."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.settimeout(1.0)
                s.connect(address)
                return wait_leader(s, max(0.1, deadline - time.monotonic()))
        except (ConnectionRefusedError, FileNotFoundError, socket.timeout):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def allow(row: str) -> str:
    """The reason of an allowance: a documented difference of a cluster node."""
    return f"cluster node ({ROLE}): COMPAT.md, Cluster mode, row {row!r}"
