"""Print the reference (beanstalkd) recording of scenarios whose name contains ARG.

    python3 tests/diff/dump.py int_delete        # beanstalkd
    python3 tests/diff/dump.py int_delete --target   # $SPROUTD
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from scenarios import ALL  # noqa: E402

pat = sys.argv[1] if len(sys.argv) > 1 else ""
binary = harness.SPROUTD if "--target" in sys.argv else harness.BEANSTALKD
for sc in ALL:
    if pat not in sc.name:
        continue
    res = harness.run_solo(sc, binary)
    print(f"== {sc.name}" + (f"  ERROR {res.error}" if res.error else ""))
    for r in res.records:
        st = sc.steps[r.idx] if r.idx < len(sc.steps) else None
        sent = [s.data for s in sc.steps[:r.idx] if s.c == r.c and s.op in ("send", "drip")]
        last = sent[-1][:70] if sent else b""
        print(f"  {r.idx:3} {r.c} {r.op:8} {last!r:50} -> {r.data[:120]!r} [{r.status}]")
