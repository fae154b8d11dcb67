"""Differential scenarios: every scenario runs against beanstalkd and sproutd."""

import pytest

import harness
from scenarios import ALL


@pytest.mark.parametrize("sc", ALL, ids=[s.name for s in ALL])
def test_scenario(sc):
    harness.check_scenario(sc)
