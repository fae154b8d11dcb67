"""pytest wiring for the differential suite; the harness itself is harness.py."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import harness  # noqa: E402


STRICT_ONLY_REASON = ("meaningful only when the target runs with --strict "
                      "(SPROUTD_ARGS=--strict): plain sproutd answers sprout's own "
                      "commands itself")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "strict_only: compares sprout's extension command lines with "
        "beanstalkd; runs only when the target is sproutd --strict (or beanstalkd itself)")


def _target_lines():
    if not harness.SPROUTD_ARGS:
        flags = "target flags: none (SPROUTD_ARGS unset or empty)"
    elif harness.target_args():
        flags = f"target flags: {' '.join(harness.target_args())} (SPROUTD_ARGS)"
    else:
        flags = (f"target flags: none (SPROUTD_ARGS={' '.join(harness.SPROUTD_ARGS)!r} "
                 "ignored: the target is beanstalkd itself)")
    strict = ("run" if harness.target_strict()
              else "skipped (the target is not sproutd --strict)")
    if harness.target_tls_beside():
        tls = ("TLS listeners beside the plain one: none, token, mtls (SPROUT_DIFF_TLS), "
               "each checked after every scenario")
    elif harness.TLS_BESIDE:
        tls = "TLS listeners: none (SPROUT_DIFF_TLS ignored: the target is beanstalkd)"
    else:
        tls = "TLS listeners: none (SPROUT_DIFF_TLS unset)"
    return [f"diff: reference={harness.BEANSTALKD} target={harness.SPROUTD} "
            f"(target flavour {harness.target_flavour()})",
            f"diff: {flags}; strict_only tests: {strict}",
            f"diff: {tls}"]


def pytest_report_header(config):
    return _target_lines()


def pytest_terminal_summary(terminalreporter):
    """The same lines at the end, where `-q` (which hides the header) shows them too."""
    for line in _target_lines():
        terminalreporter.write_line(line)


def _shard():
    """SPROUT_DIFF_SHARD=K/N: this run takes every N-th test from the K-th (0 <= K < N),
    so that N runs side by side (scripts/test-cluster) cover the suite once."""
    v = os.environ.get("SPROUT_DIFF_SHARD", "")
    if not v:
        return None
    k, _, n = v.partition("/")
    k, n = int(k), int(n)
    if not 0 <= k < n:
        raise pytest.UsageError(f"SPROUT_DIFF_SHARD={v!r}: K/N with 0 <= K < N")
    return k, n


def pytest_collection_modifyitems(config, items):
    """SPROUT_DIFF_SHARD keeps this run's share of the tests; tests marked strict_only are
    skipped, with the reason, unless the target is strict."""
    shard = _shard()
    if shard is not None:
        k, n = shard
        keep = [it for i, it in enumerate(items) if i % n == k]
        config.hook.pytest_deselected(items=[it for i, it in enumerate(items) if i % n != k])
        items[:] = keep
    if harness.target_strict():
        return
    skip = pytest.mark.skip(reason=STRICT_ONLY_REASON)
    for item in items:
        if item.get_closest_marker("strict_only") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def both_servers_present():
    """Every test here runs beanstalkd, sproutd or both: without either binary the suite
    fails (it is never skipped), saying what is missing and how to provide it."""
    missing = []
    if not os.access(harness.BEANSTALKD, os.X_OK):
        missing.append(f"the reference server {harness.BEANSTALKD} is not installed "
                       "(install Debian's package: `apt-get install beanstalkd`, "
                       "or point BEANSTALKD at a beanstalkd 1.12 binary)")
    if not os.access(harness.SPROUTD, os.X_OK):
        missing.append(f"the target server {harness.SPROUTD} does not exist "
                       "(build it: `cargo build --bins`, or set SPROUTD)")
    if missing:
        pytest.fail("cannot run: " + "; ".join(missing), pytrace=False)


@pytest.fixture(scope="session")
def flavour():
    """'1.12' if the target is Debian's beanstalkd (harness self-test), else '1.13'."""
    return harness.target_flavour()
