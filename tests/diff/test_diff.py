"""Differential scenarios: every scenario runs against beanstalkd and sproutd."""

import pytest

import harness
from scenarios import ALL


def _param(sc):
    """Scenarios of sprout's extension command lines carry the strict_only marker
    (conftest.py skips them unless the target is strict)."""
    marks = [pytest.mark.strict_only] if sc.strict_only else []
    return pytest.param(sc, marks=marks, id=sc.name)


@pytest.mark.parametrize("sc", [_param(s) for s in ALL])
def test_scenario(sc):
    harness.check_scenario(sc)
