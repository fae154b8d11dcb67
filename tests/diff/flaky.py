"""Developer tool: run scenarios N times against beanstalkd and show outcome variety.

    python3 tests/diff/flaky.py NAME_SUBSTRING [N]
"""
import collections
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from scenarios import ALL  # noqa: E402

pat = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 10
for sc in ALL:
    if pat not in sc.name:
        continue
    outcomes = collections.Counter()
    for _ in range(n):
        for r in harness.run_pair(sc, tgt_bin=harness.BEANSTALKD):
            recs = harness.normalise_records(r.records, False)
            outcomes[tuple((x.idx, x.c, x.replies, x.status) for x in recs)] += 1
    print(f"{sc.name}: {len(outcomes)} distinct outcome(s) in {2 * n} runs")
    if len(outcomes) > 1:
        base = outcomes.most_common(1)[0][0]
        for o, k in outcomes.most_common()[1:]:
            for a, b in zip(base, o):
                if a != b:
                    print(f"   x{k}: step {a[0]} {a[2]!r:.200} {a[3]} vs {b[2]!r:.200} {b[3]}")
