"""pytest wiring for the differential suite; the harness itself is harness.py."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import harness  # noqa: E402


def pytest_report_header(config):
    return [f"diff: reference={harness.BEANSTALKD} target={harness.SPROUTD} "
            f"(target flavour {harness.target_flavour()})"]


@pytest.fixture(scope="session")
def flavour():
    """'1.12' if the target is Debian's beanstalkd (harness self-test), else '1.13'."""
    return harness.target_flavour()
