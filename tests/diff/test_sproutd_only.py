"""Checks against the target (sproutd) alone, where sproutd deliberately differs
from Debian's beanstalkd 1.12:

* 1.13 YAML quoting of tube/name/hostname/os/platform;
* 1.13 BAD_FORMAT for out-of-range/non-numeric ``reserve-with-timeout`` values
  (behaviour doc section 1.3 table);
* FIFO hand-out to waiting connections (beanstalkd's ``ms_take`` is not FIFO
  beyond 3 waiters);
* TTR expiry of a job held by an idle connection without any further traffic
  (1.12 sometimes misses it; see scenarios/s_timing.py NUDGE).

When the target *is* beanstalkd 1.12 (``SPROUTD=/usr/bin/beanstalkd``, the
harness self-test) the same scenarios are asserted against the 1.12 behaviour
instead, which validates the scenarios themselves.
"""

import re

import pytest

import harness
from harness import S, cmd, contains, put, recv, send, silent, wait

TUBE_200 = "q" * 200


def run(sc):
    res = harness.run_solo(sc)
    assert res.error is None, f"run error on target: {res.error}"
    return {(r.idx, r.c): r for r in res.records}, res


def yaml_body(reply: bytes) -> bytes:
    m = re.match(rb"OK (\d+)\r\n", reply)
    assert m, f"not an OK reply: {reply!r}"
    n = int(m.group(1))
    body = reply[m.end():]
    assert len(body) == n + 2 and body.endswith(b"\r\n"), \
        f"OK {n} does not match the body length {len(body) - 2}: {reply!r}"
    return body[:-2]


def yaml_value(body: bytes, key: str) -> bytes:
    m = re.search(rb"(?m)^" + re.escape(key.encode()) + rb": (.*)$", body)
    assert m, f"no {key!r} in {body!r}"
    return m.group(1)


# ------------------------------------------------------------------ quoting

def q(flavour, value: str) -> bytes:
    return (f'"{value}"' if flavour == "1.13" else value).encode()


@pytest.mark.parametrize("tube", ["default", "foo", "a-+/;.$_()Z9", TUBE_200])
def test_quoting_stats_job_tube(flavour, tube):
    sc = S("q_stats_job", cmd(f"use {tube}"), put("x"), cmd("stats-job 1"))
    recs, _ = run(sc)
    body = yaml_body(recs[(5, "a")].data)
    assert yaml_value(body, "tube") == q(flavour, tube)
    assert body.startswith(b"---\nid: 1\ntube: ")


@pytest.mark.parametrize("tube", ["default", "foo", TUBE_200])
def test_quoting_stats_tube_name(flavour, tube):
    sc = S("q_stats_tube", cmd(f"use {tube}"), cmd(f"stats-tube {tube}"))
    recs, _ = run(sc)
    body = yaml_body(recs[(3, "a")].data)
    assert body.startswith(b"---\nname: " + q(flavour, tube) + b"\n")


def test_quoting_stats_hostname_os_platform(flavour):
    import os
    u = os.uname()
    sc = S("q_stats", cmd("stats"))
    recs, _ = run(sc)
    body = yaml_body(recs[(1, "a")].data)
    assert yaml_value(body, "hostname") == q(flavour, u.nodename)
    assert yaml_value(body, "os") == q(flavour, u.version)
    assert yaml_value(body, "platform") == q(flavour, u.machine)
    assert re.fullmatch(rb'"[^"\n]+"', yaml_value(body, "version"))
    # the other string-ish values stay bare
    assert re.fullmatch(rb"[0-9a-f]{16}", yaml_value(body, "id"))
    assert yaml_value(body, "draining") == b"false"


def test_quoting_not_applied_to_lists(flavour):
    sc = S("q_lists", cmd("use foo"), cmd("list-tubes"), cmd("list-tubes-watched"),
           cmd("list-tube-used"))
    recs, _ = run(sc)
    assert recs[(3, "a")].data == b"OK 20\r\n---\n- default\n- foo\n\r\n"
    assert recs[(5, "a")].data == b"OK 14\r\n---\n- default\n\r\n"
    assert recs[(7, "a")].data == b"USING foo\r\n"


# -------------------------------------------------- reserve-with-timeout 1.13
# (arg, 1.12 behaviour) ; 1.13 answers BAD_FORMAT at once for all of them
RWT_ROWS = [
    ("", "immediate"),            # empty: 1.12 reads 0
    ("abc", "immediate"),
    ("+1", "after1s"),
    ("-1", "forever"),
    ("-5", "forever"),
    ("2147483648", "forever"),    # wraps negative in 1.12
    ("4294967296", "immediate"),  # wraps to 0 in 1.12
]


@pytest.mark.parametrize("arg,old", RWT_ROWS, ids=[a or "empty" for a, _ in RWT_ROWS])
def test_reserve_with_timeout_bad_values(flavour, arg, old):
    line = f"reserve-with-timeout {arg}"
    # The first window tells "at once" from "after 1 s" (1.12); on a cluster node the
    # BAD_FORMAT (1.13) comes through the Raft log, which may take longer than 0.5 s on a
    # loaded machine (COMPAT.md, Cluster mode, row "latency").
    first = 0.9 if harness.clusterutil.ROLE else 0.5
    sc = S("rwt", send(line), recv(timeout=first), recv(timeout=1.2),
           cmd("list-tube-used", timeout=1.0))
    recs, _ = run(sc)
    first, later, after = recs[(1, "a")], recs[(2, "a")], recs[(4, "a")]
    if flavour == "1.13":
        assert (first.data, first.status) == (b"BAD_FORMAT\r\n", "ok"), line
        assert later.data == b""
        assert after.data == b"USING default\r\n"
    elif old == "immediate":
        assert first.data == b"TIMED_OUT\r\n"
        assert later.data == b""
        assert after.data == b"USING default\r\n"
    elif old == "after1s":
        assert first.data == b"" and later.data == b"TIMED_OUT\r\n"
        assert after.data == b"USING default\r\n"
    else:  # waits forever
        assert first.data == b"" and later.data == b"" and after.data == b""


def test_reserve_with_timeout_bad_value_then_job_still_reservable(flavour):
    if flavour != "1.13":
        pytest.skip("1.13 behaviour only (1.12 waits forever on -1)")
    sc = S("rwt_then", put("x"), cmd("reserve-with-timeout -1"),
           cmd("reserve-with-timeout 0"), cmd("stats"))
    recs, _ = run(sc)
    assert recs[(3, "a")].data == b"BAD_FORMAT\r\n"
    assert recs[(5, "a")].data == b"RESERVED 1 1\r\nx\r\n"


def test_reserve_with_timeout_max_int_accepted(flavour):
    sc = S("rwt_max", send("reserve-with-timeout 2147483647", c="b"), silent(c="b", t=0.3),
           put("x"), recv(c="b"))
    recs, _ = run(sc)
    assert recs[(1, "b")].data == b""
    assert recs[(4, "b")].data == b"RESERVED 1 1\r\nx\r\n"


# ---------------------------------------------------------------- waiter order

def ms_take_order(n_waiters, n_jobs):
    """beanstalkd's ms_take: rotating index, removal by swapping in the last."""
    items, last, out = list(range(1, n_waiters + 1)), 0, []
    for _ in range(n_jobs):
        last %= len(items)
        out.append(items[last])
        items[last] = items[-1]
        items.pop()
        last += 1
    return out


def test_ms_take_model_matches_behaviour_doc():
    assert ms_take_order(6, 6) == [1, 2, 3, 6, 5, 4]
    assert ms_take_order(3, 3) == [1, 2, 3]


def expected_order(flavour, n):
    return list(range(1, n + 1)) if flavour == "1.13" else ms_take_order(n, n)


@pytest.mark.parametrize("n", [4, 5, 6, 8])
def test_waiters_served_in_arrival_order(flavour, n):
    steps = [send("reserve", c=f"w{i}", settle=0.1) for i in range(1, n + 1)]
    steps.append(cmd("stats", c="p", exp=contains(f"current-waiting: {n}\n")))
    for j in range(1, n + 1):
        steps.append(put(f"j{j}", c="p"))
    for i in range(1, n + 1):
        steps.append(recv(c=f"w{i}"))
    sc = S("fifo", *steps)
    recs, res = run(sc)
    got = {}
    for r in res.records:
        m = re.fullmatch(rb"RESERVED (\d+) \d+\r\nj\d+\r\n", r.data)
        if r.c.startswith("w") and m:
            got[int(m.group(1))] = int(r.c[1:])
    order = [got.get(j) for j in range(1, n + 1)]
    assert order == expected_order(flavour, n), \
        f"job i went to waiter order[i-1]; got {order}"


def test_waiters_fifo_with_requeue(flavour):
    """4 waiters; W1 gets job 1 and queues again; jobs 2..5 follow arrival order."""
    steps = [send("reserve", c=f"w{i}", settle=0.1) for i in range(1, 5)]
    steps += [put("j1", c="p"), recv(c="w1"), send("reserve", c="w1", settle=0.1)]
    steps += [put(f"j{j}", c="p") for j in range(2, 6)]
    steps += [recv(c=f"w{i}") for i in (2, 3, 4, 1)]
    recs, res = run(S("fifo_requeue", *steps))
    got = {}
    for r in res.records:
        m = re.fullmatch(rb"RESERVED (\d+) \d+\r\nj\d+\r\n", r.data)
        if m and r.c.startswith("w"):
            got.setdefault(int(r.c[1:]), []).append(int(m.group(1)))
    if flavour == "1.13":
        assert got == {1: [1, 5], 2: [2], 3: [3], 4: [4]}, got
    else:
        assert sorted(sum(got.values(), [])) == [1, 2, 3, 4, 5], got


def test_waiters_fifo_across_tubes(flavour):
    """Four waiters watch both t1 and t2; jobs alternate tubes."""
    if flavour != "1.13":
        pytest.skip("FIFO across tubes is sproutd-only")
    steps = []
    for i in range(1, 5):
        steps += [cmd("watch t1", c=f"w{i}"), cmd("watch t2", c=f"w{i}"),
                  send("reserve", c=f"w{i}", settle=0.1)]
    for j in range(1, 5):
        steps += [cmd(f"use t{1 + j % 2}", c="p"), put(f"j{j}", c="p")]
    steps += [recv(c=f"w{i}") for i in range(1, 5)]
    recs, res = run(S("fifo_tubes", *steps))
    got = {}
    for r in res.records:
        m = re.fullmatch(rb"RESERVED (\d+) \d+\r\nj\d+\r\n", r.data)
        if m and r.c.startswith("w"):
            got[int(m.group(1))] = int(r.c[1:])
    assert [got.get(j) for j in range(1, 5)] == [1, 2, 3, 4], got


# --------------------------------------------------------- timely TTR expiry

def test_ttr_expiry_without_further_traffic(flavour):
    if flavour != "1.13":
        pytest.skip("beanstalkd 1.12 sometimes misses this deadline (see NUDGE)")
    sc = S("ttr_idle", put("x", ttr=1, c="a"), cmd("reserve", c="a"),
           send("reserve", c="b", settle=0.1), silent(c="b", t=0.5),
           recv(c="b", timeout=2.5))
    recs, _ = run(sc)
    assert recs[(5, "b")].data == b""
    assert recs[(6, "b")].data == b"RESERVED 1 1\r\nx\r\n"


def test_ttr_expiry_visible_in_stats_without_traffic(flavour):
    if flavour != "1.13":
        pytest.skip("beanstalkd 1.12 sometimes misses this deadline (see NUDGE)")
    sc = S("ttr_idle2", put("x", ttr=1, c="a"), cmd("reserve", c="a"), wait(1.5),
           cmd("stats-job 1", c="b"))
    recs, _ = run(sc)
    body = yaml_body(recs[(6, "b")].data)
    assert yaml_value(body, "state") == b"ready"
    assert yaml_value(body, "timeouts") == b"1"
