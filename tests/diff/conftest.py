"""pytest wiring for the differential suite; the harness itself is harness.py."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import harness  # noqa: E402


def pytest_report_header(config):
    return [f"diff: reference={harness.BEANSTALKD} target={harness.SPROUTD} "
            f"(target flavour {harness.target_flavour()})"]


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
