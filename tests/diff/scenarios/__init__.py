"""Scenario data for the differential suite (see harness.py for the format)."""

import importlib
import pkgutil

ALL = []
for _m in sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name.startswith("s_")):
    ALL.extend(importlib.import_module(f"{__name__}.{_m}").SCENARIOS)

_names = [s.name for s in ALL]
_dups = {n for n in _names if _names.count(n) > 1}
assert not _dups, f"duplicate scenario names: {_dups}"
