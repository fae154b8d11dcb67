"""The Prometheus endpoint (`sproutd --metrics ADDR`), scraped over HTTP and parsed with
prometheus_client's text-format parser (pip install prometheus_client).

The workload runs over raw protocol sockets so that every command is counted exactly once
and the tests control when each one reaches the server. Timing checks never rely on sleep
being exact: each measured duration is bracketed by client-side timestamps (the server's
clock and time.monotonic() are both CLOCK_MONOTONIC), and every wait for the server is a
bounded poll.
"""

import http.client
import math
import re
import signal
import socket
import tempfile
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

# Histogram upper bounds (crates/engine/src/metrics.rs BUCKETS).
BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600]
EPS = 0.002  # slack for clock reads at the edges of a bracketed interval, seconds


# --- a minimal beanstalkd client -------------------------------------------------------


class Conn:
    def __init__(self, srv):
        self.s = socket.create_connection(srv.address, timeout=10)
        self.f = self.s.makefile("rb")

    def close(self):
        self.f.close()
        self.s.close()

    def send(self, line, body=None):
        data = line.encode() + b"\r\n"
        if body is not None:
            data += body + b"\r\n"
        self.s.sendall(data)

    def line(self):
        return self.f.readline().decode().rstrip("\r\n")

    def cmd(self, line, body=None):
        self.send(line, body)
        return self.line()

    def data(self, n):
        d = self.f.read(n + 2)
        assert d.endswith(b"\r\n")
        return d[:-2]

    def put(self, body=b"x", pri=0, delay=0, ttr=60):
        r = self.cmd(f"put {pri} {delay} {ttr} {len(body)}", body)
        assert r.startswith("INSERTED "), r
        return int(r.split()[1])

    def use(self, tube):
        assert self.cmd(f"use {tube}") == f"USING {tube}"

    def watch_only(self, tube):
        """Watches `tube` and nothing else."""
        assert self.cmd(f"watch {tube}").startswith("WATCHING ")
        for t in self.yaml("list-tubes-watched"):
            if t != tube:
                assert self.cmd(f"ignore {t}").startswith("WATCHING ")

    def reserve(self, timeout=None):
        r = self.cmd("reserve" if timeout is None else f"reserve-with-timeout {timeout}")
        assert r.startswith("RESERVED "), r
        _, jid, n = r.split()
        self.data(int(n))
        return int(jid)

    def ok(self, line, want):
        r = self.cmd(line)
        assert r == want, (line, r)

    def found(self, line):
        r = self.cmd(line)
        assert r.startswith("FOUND "), (line, r)
        self.data(int(r.split()[2]))

    def yaml(self, line):
        r = self.cmd(line)
        assert r.startswith("OK "), (line, r)
        text = self.data(int(r[3:])).decode()
        if line.startswith("list-"):
            return [x[2:] for x in text.splitlines() if x.startswith("- ")]
        out = {}
        for row in text.splitlines()[1:]:
            k, _, v = row.partition(": ")
            out[k] = yaml_scalar(v)
        return out


def yaml_scalar(v):
    if v.startswith('"') and v.endswith('"'):
        return v[1:-1]
    if v in ("true", "false"):
        return v == "true"
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return v


# --- scraping --------------------------------------------------------------------------


def get(srv, path, method="GET"):
    c = http.client.HTTPConnection(*srv.metrics, timeout=10)
    try:
        c.request(method, path)
        r = c.getresponse()
        return r.status, r.getheader("Content-Type"), r.read().decode()
    except OSError as e:
        code = srv.proc.poll()
        state = "running" if code is None else f"exited with {code}"
        pytest.fail(f"{method} {path} on {srv.metrics}: {e} (sproutd {state})")
    finally:
        c.close()


class Scrape:
    """One parsed /metrics body."""

    def __init__(self, text):
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples = {}
        for f in self.families.values():
            for s in f.samples:
                key = (s.name, frozenset(s.labels.items()))
                assert key not in self.samples, f"duplicate series {key}"
                self.samples[key] = s.value

    def value(self, name, **labels):
        key = (name, frozenset(labels.items()))
        assert key in self.samples, f"no series {name}{labels}"
        return self.samples[key]

    def tube(self, name, tube):
        return self.value(name, tube=tube)

    def tubes(self, name):
        """{tube label: value} of one per-tube series."""
        return {
            dict(labels)["tube"]: v
            for (n, labels), v in self.samples.items()
            if n == name and "le" not in dict(labels)
        }

    def hist(self, name, tube):
        """(cumulative [(le, count)] in le order with +Inf last, sum, count)."""
        f = self.families[name]
        buckets = [
            (float(s.labels["le"]), s.value)
            for s in f.samples
            if s.name == name + "_bucket" and s.labels["tube"] == tube
        ]
        return buckets, self.value(name + "_sum", tube=tube), self.value(name + "_count", tube=tube)


def scrape(srv):
    status, ctype, body = get(srv, "/metrics")
    assert status == 200
    assert ctype.startswith("text/plain; version=0.0.4")
    return Scrape(body)


def poll(srv, what, cond, timeout=5.0):
    """Scrapes until cond(scrape) holds (scraping changes no counter); returns that scrape."""
    deadline = time.monotonic() + timeout
    while True:
        m = scrape(srv)
        if cond(m):
            return m
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for: {what}")
        time.sleep(0.01)


def check_histogram(buckets, total, count):
    """Cumulative, monotonic, +Inf == _count, and _sum within what the buckets allow."""
    les = [le for le, _ in buckets]
    assert les == BUCKETS + [math.inf]
    counts = [c for _, c in buckets]
    assert counts == sorted(counts), f"not cumulative: {buckets}"
    assert counts[-1] == count
    assert all(c >= 0 and c == int(c) for c in counts)
    lo = hi = 0.0
    prev_le, prev_c = 0.0, 0
    for le, c in buckets:
        n = c - prev_c
        if n:
            lo += n * prev_le
            hi += n * le
        prev_le, prev_c = le, c
    assert lo - EPS <= total <= hi + EPS, (buckets, total)
    if count == 0:
        assert total == 0


def cum(buckets, le):
    return dict(buckets)[le]


def check_one_observation(hist, lo, hi, expect):
    """The histogram holds exactly one observation, known (bracketed client-side) to lie
    within [lo, hi] seconds, and it is counted consistently with that. `expect` = (a, b):
    the observation is in the bucket (a, b], checked whenever the bracket guarantees it,
    which is always unless the machine stalled for a large fraction of the margin."""
    buckets, total, count = hist
    check_histogram(buckets, total, count)
    assert count == 1
    assert lo - EPS <= total <= hi + EPS, (lo, total, hi)
    le = next(le for le, c in buckets if c == 1)
    i = BUCKETS.index(le) if le != math.inf else len(BUCKETS)
    if i > 0:  # (the first bucket also holds a wait of exactly 0)
        assert BUCKETS[i - 1] < total, (total, buckets)
    assert total <= le, (total, buckets)
    for b, c in buckets:
        if b >= hi + EPS:
            assert c == 1, (b, buckets)
        if b < lo - EPS:
            assert c == 0, (b, buckets)
    a, b = expect
    if (a == 0 or a < lo - EPS) and hi + EPS <= b:
        assert cum(buckets, b) == 1, (expect, buckets)
        assert a == 0 or cum(buckets, a) == 0, (expect, buckets)


# --- format ----------------------------------------------------------------------------


def test_whole_body_parses_with_help_type_and_naming_rules(metrics_server):
    srv = metrics_server()
    c = Conn(srv)
    c.use("fmt")
    c.put(b"job")
    m = scrape(srv)
    assert m.text.endswith("\n")
    assert len(m.families) > 50
    for f in m.families.values():
        assert f.name.startswith("sprout_"), f.name
        assert f.type in ("counter", "gauge", "histogram"), (f.name, f.type)
        assert f.documentation.strip(), f"{f.name} has no HELP"
        # sprout_denied_total has one series per user and class, made at the first
        # PERMISSION_DENIED: a server without users has none.
        assert f.samples or f.name == "sprout_denied", f"{f.name} has no samples"
    # The raw text: one HELP and one TYPE per family, counters named *_total, each sample
    # belonging to the family declared just before it.
    helps, types, current = set(), {}, None
    for line in m.text.splitlines():
        if line.startswith("# HELP "):
            name = line.split()[2]
            assert name not in helps
            helps.add(name)
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert name not in types
            assert name in helps, f"TYPE before HELP for {name}"
            types[name] = current = name
            if kind == "counter":
                assert name.endswith("_total"), name
            else:
                assert not name.endswith("_total"), name
            if kind == "histogram":
                current = (name, kind)
        else:
            assert line and not line.startswith("#"), line
            name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
            assert name.startswith("sprout_")
            if isinstance(current, tuple):
                assert name in [current[0] + x for x in ("_bucket", "_sum", "_count")]
            else:
                assert name == current, (name, current)
    assert helps == set(types)
    # Tube series exist for both tubes; the identity is in sprout_info.
    assert set(m.tubes("sprout_tube_current_jobs_ready")) == {"default", "fmt"}
    (info,) = [s for s in m.families["sprout_info"].samples]
    assert info.value == 1
    assert set(info.labels) == {"version", "id", "hostname", "os", "platform"}
    for (name, _), v in m.samples.items():
        assert math.isfinite(v), name


# --- stats and stats-tube after a known workload ---------------------------------------


# `stats` fields whose metric is not just sprout_<field with _>; the rest map to gauges.
SERVER_NAMES = {
    "total-jobs": "sprout_jobs_total",
    "job-timeouts": "sprout_job_timeouts_total",
    "total-connections": "sprout_connections_total",
    "binlog-records-written": "sprout_binlog_records_written_total",
    "binlog-records-migrated": "sprout_binlog_records_migrated_total",
    "rusage-utime": "sprout_rusage_utime_seconds_total",
    "rusage-stime": "sprout_rusage_stime_seconds_total",
    "uptime": "sprout_uptime_seconds",
}
INFO_FIELDS = {"version", "id", "hostname", "os", "platform"}
TUBE_NAMES = {
    "total-jobs": "sprout_tube_jobs_total",
    "cmd-delete": "sprout_tube_cmd_delete_total",
    "cmd-pause-tube": "sprout_tube_cmd_pause_tube_total",
    "pause": "sprout_tube_pause_seconds",
    "pause-time-left": "sprout_tube_pause_time_left_seconds",
}


def server_metric(field):
    if field in SERVER_NAMES:
        return SERVER_NAMES[field]
    if field.startswith("cmd-"):
        return "sprout_" + field.replace("-", "_") + "_total"
    return "sprout_" + field.replace("-", "_")


def tube_metric(field):
    return TUBE_NAMES.get(field) or "sprout_tube_" + field.replace("-", "_")


def compare_stats(stats, m):
    """Every `stats` field against its metric (m scraped right after `stats`)."""
    for field, v in stats.items():
        if field in INFO_FIELDS:
            assert m.families["sprout_info"].samples[0].labels[field] == str(v), field
            continue
        name = server_metric(field)
        got = m.value(name)
        if field in ("rusage-utime", "rusage-stime"):
            assert v - 1e-6 <= got <= v + 1.0, (field, v, got)
        elif field == "uptime":
            assert v <= got <= v + 1, (field, v, got)
        elif field == "draining":
            assert got == (1 if v else 0)
        else:
            assert got == v, (field, name, v, got)


def compare_tube(name, st, m, label=None):
    label = label or name
    for field, v in st.items():
        if field == "name":
            assert v == name
            continue
        got = m.tube(tube_metric(field), label)
        if field == "pause-time-left":
            assert v - 1 <= got <= v, (name, field, v, got)
        else:
            assert got == v, (name, field, v, got)


def test_stats_and_stats_tube_match_metrics_after_a_workload(metrics_server):
    srv = metrics_server()
    p, w, w2, w3 = Conn(srv), Conn(srv), Conn(srv), Conn(srv)

    p.use("alpha")
    a1 = p.put(b"a1", pri=10)
    p.put(b"a2", pri=20)
    p.put(b"a3", pri=2000)  # not urgent; stays ready
    p.use("beta")
    p.put(b"b1", pri=5)
    p.put(b"b2", delay=100)  # stays delayed
    p.put(b"b3", pri=6)
    p.use("gamma")
    p.put(b"g1", ttr=1)
    p.put(b"g2", pri=3000)

    w.watch_only("alpha")
    assert w.reserve() == a1
    w.ok(f"delete {a1}", "DELETED")
    a2 = w.reserve()
    w.ok(f"release {a2} 20 0", "RELEASED")
    assert w.reserve() == a2
    w.ok(f"bury {a2} 20", "BURIED")
    p.use("alpha")
    p.found("peek-buried")
    p.ok("kick 1", "KICKED 1")
    assert w.reserve(timeout=0) == a2
    w.ok(f"touch {a2}", "TOUCHED")
    w.ok(f"delete {a2}", "DELETED")

    w.watch_only("beta")
    b1 = w.reserve()
    w.ok(f"bury {b1} 5", "BURIED")
    w.reserve(timeout=0)  # b3, held to the end

    w2.watch_only("gamma")
    g1 = w2.reserve()
    poll(srv, "the ttr-1 timeout", lambda m: m.value("sprout_job_timeouts_total") == 1)

    p.use("alpha")
    p.found("peek-ready")  # a3
    p.use("beta")
    p.found("peek-delayed")  # b2
    p.found(f"peek {b1}")
    p.yaml(f"stats-job {g1}")
    p.yaml("list-tubes")
    assert p.cmd("list-tube-used") == "USING beta"
    p.yaml("list-tubes-watched")
    p.ok("pause-tube gamma 60", "PAUSED")

    w3.watch_only("idle")
    w3.send("reserve-with-timeout 60")
    poll(srv, "a blocked reserve", lambda m: m.value("sprout_current_waiting") == 1)

    tubes = p.yaml("list-tubes")
    assert set(tubes) == {"default", "alpha", "beta", "gamma", "idle"}
    per_tube = {t: p.yaml(f"stats-tube {t}") for t in tubes}
    stats = p.yaml("stats")
    m = scrape(srv)

    compare_stats(stats, m)
    assert set(m.tubes("sprout_tube_current_jobs_ready")) == set(tubes)
    for t, st in per_tube.items():
        compare_tube(t, st, m)

    # Non-trivial: every command was run, and the numbers are the ones the workload made.
    for (name, _), v in m.samples.items():
        if name.startswith("sprout_cmd_"):
            assert v > 0, name
    assert m.value("sprout_jobs_total") == 8
    assert m.value("sprout_current_jobs_ready") == 3  # a3, g1, g2
    assert m.value("sprout_current_jobs_urgent") == 1  # g1
    assert m.value("sprout_current_jobs_reserved") == 1  # b3
    assert m.value("sprout_current_jobs_delayed") == 1  # b2
    assert m.value("sprout_current_jobs_buried") == 1  # b1
    assert m.value("sprout_pid") == srv.pid
    assert m.value("sprout_draining") == 0
    assert m.tube("sprout_tube_pause_seconds", "gamma") == 60
    assert 58 <= m.tube("sprout_tube_pause_time_left_seconds", "gamma") <= 60
    assert m.tube("sprout_tube_current_waiting", "idle") == 1
    assert m.tubes("sprout_tube_buries_total") == {
        "default": 0, "alpha": 1, "beta": 1, "gamma": 0, "idle": 0,
    }
    assert m.tubes("sprout_tube_timeouts_total") == {
        "default": 0, "alpha": 0, "beta": 0, "gamma": 1, "idle": 0,
    }
    # Reserves per tube = queue-wait observations; deletes of reserved jobs = r2d ones.
    qw = m.tubes("sprout_tube_queue_wait_seconds_count")
    assert qw == {"default": 0, "alpha": 4, "beta": 2, "gamma": 1, "idle": 0}
    r2d = m.tubes("sprout_tube_reserve_to_delete_seconds_count")
    assert r2d == {"default": 0, "alpha": 2, "beta": 0, "gamma": 0, "idle": 0}
    for name in ("sprout_tube_queue_wait_seconds", "sprout_tube_reserve_to_delete_seconds"):
        for t in tubes:
            check_histogram(*m.hist(name, t))
    # Per-tube series add up to the server's.
    for field in ("ready", "reserved", "delayed", "buried", "urgent"):
        total = sum(m.tubes(f"sprout_tube_current_jobs_{field}").values())
        assert total == m.value(f"sprout_current_jobs_{field}")
    timeouts = sum(m.tubes("sprout_tube_timeouts_total").values())
    assert timeouts == m.value("sprout_job_timeouts_total")
    for c in (p, w, w2, w3):
        c.close()


# --- histograms and ages ---------------------------------------------------------------


def test_histograms_of_known_waits(metrics_server):
    srv = metrics_server()
    p, quick, held, waited = Conn(srv), Conn(srv), Conn(srv), Conn(srv)
    quick.watch_only("quick")
    held.watch_only("held")
    waited.watch_only("waited")

    # Left ready ~1.2 s before its reserve (below).
    p.use("waited")
    t0 = time.monotonic()
    p.put(b"slow")
    t1 = time.monotonic()

    # Reserved immediately, deleted immediately.
    p.use("quick")
    q0 = time.monotonic()
    jid = p.put(b"fast")
    quick_reserve = quick.reserve()
    q1 = time.monotonic()
    assert quick_reserve == jid
    quick.ok(f"delete {jid}", "DELETED")
    q2 = time.monotonic()
    p.ok(f"delete {p.put(b'never reserved')}", "DELETED")  # no reserve-to-delete

    # Reserved immediately, deleted ~0.3 s later.
    p.use("held")
    h0 = time.monotonic()
    p.put(b"held")
    jid = held.reserve()
    h1 = time.monotonic()
    time.sleep(0.3)
    h2 = time.monotonic()
    held.ok(f"delete {jid}", "DELETED")
    h3 = time.monotonic()

    time.sleep(max(0.0, t1 + 1.2 - time.monotonic()))
    t2 = time.monotonic()
    waited.reserve()
    t3 = time.monotonic()

    m = scrape(srv)
    qw, r2d = "sprout_tube_queue_wait_seconds", "sprout_tube_reserve_to_delete_seconds"
    for name, tube, lo, hi, expect in [
        # ready ~1.2 s, then reserved: in (1, 2.5]
        (qw, "waited", t2 - t1, t3 - t0, (1, 2.5)),
        # reserved (and deleted) immediately: within le=0.05
        (qw, "quick", 0.0, q1 - q0, (0, 0.05)),
        (r2d, "quick", 0.0, q2 - q0, (0, 0.05)),
        (qw, "held", 0.0, h1 - h0, (0, 0.05)),
        # deleted ~0.3 s after the reserve: in (0.25, 0.5]
        (r2d, "held", h2 - h1, h3 - h0, (0.25, 0.5)),
    ]:
        check_one_observation(m.hist(name, tube), lo, hi, expect)
    # No reserve-to-delete for a job not deleted yet.
    assert m.hist(r2d, "waited")[2] == 0
    for name in (qw, r2d):
        for t in m.tubes(name + "_count"):
            check_histogram(*m.hist(name, t))
    for c in (p, quick, held, waited):
        c.close()


def test_queue_wait_restarts_at_release_kick_and_timeout(metrics_server):
    """A released, kicked or timed-out job's wait starts again when it becomes ready."""
    srv = metrics_server()
    p, w = Conn(srv), Conn(srv)
    p.use("again")
    w.watch_only("again")

    t0 = time.monotonic()
    jid = p.put(b"j", ttr=1)
    t1 = time.monotonic()
    time.sleep(0.3)
    t2 = time.monotonic()
    w.reserve()  # the first wait, since the put: >= 0.3 s
    t3 = time.monotonic()
    first = (t2 - t1, t3 - t0)
    short = []  # upper bounds of the waits after the release, the kick and the timeout

    r0 = time.monotonic()
    w.ok(f"release {jid} 0 0", "RELEASED")
    w.reserve()
    short.append(time.monotonic() - r0)
    w.ok(f"bury {jid} 0", "BURIED")
    k0 = time.monotonic()
    p.ok("kick 1", "KICKED 1")
    w.reserve()
    short.append(time.monotonic() - k0)
    poll(srv, "the timeout", lambda m: m.tube("sprout_tube_timeouts_total", "again") == 1)
    w.reserve()  # ready again by the timeout, at least 1 s after the reserve above
    short.append(time.monotonic() - (k0 + 1.0))

    m = scrape(srv)
    buckets, total, count = m.hist("sprout_tube_queue_wait_seconds", "again")
    check_histogram(buckets, total, count)
    assert count == 4
    assert first[0] - EPS <= total <= first[1] + sum(short) + 4 * EPS
    assert cum(buckets, 0.25) <= 3  # the first wait is >= 0.3 s
    if max(short) + EPS <= 0.25:  # always, unless the machine stalled
        assert cum(buckets, 0.25) == 3, buckets
    w.close()
    p.close()


def test_oldest_ready_age(metrics_server):
    srv = metrics_server()
    p, w = Conn(srv), Conn(srv)
    p.use("aged")
    t0 = time.monotonic()
    p.put(b"older", pri=100)
    t1 = time.monotonic()
    time.sleep(1.0)
    p.put(b"newer", pri=1)  # the first to be reserved, but not the oldest
    p.use("fresh")
    p.put(b"new")
    s0 = time.monotonic()
    m = scrape(srv)
    s1 = time.monotonic()
    age = m.tube("sprout_tube_oldest_ready_age_seconds", "aged")
    assert s0 - t1 - EPS <= age <= s1 - t0 + EPS
    assert 1.0 <= age < 3.0
    assert m.tube("sprout_tube_oldest_ready_age_seconds", "fresh") < 1.0
    assert m.tube("sprout_tube_oldest_ready_age_seconds", "default") == 0
    # Once both are reserved the tube has no ready job: 0.
    w.watch_only("aged")
    w.reserve()
    w.reserve()
    m = scrape(srv)
    assert m.tube("sprout_tube_oldest_ready_age_seconds", "aged") == 0
    w.close()
    p.close()


# --- timeouts and buries ---------------------------------------------------------------


def test_per_tube_timeouts_and_buries(metrics_server):
    srv = metrics_server()
    p, w, w2 = Conn(srv), Conn(srv), Conn(srv)
    p.use("burying")
    jid = p.put(b"b")
    w.watch_only("burying")
    for _ in range(2):  # the same job buried twice counts twice
        assert w.reserve() == jid
        w.ok(f"bury {jid} 0", "BURIED")
        p.ok("kick 1", "KICKED 1")
    p.use("expiring")
    p.put(b"e1", ttr=1)
    p.put(b"e2", ttr=1)
    w2.watch_only("expiring")
    w2.reserve()
    w2.reserve()
    m = poll(srv, "two timeouts", lambda m: m.value("sprout_job_timeouts_total") == 2)
    assert m.tubes("sprout_tube_timeouts_total") == {"default": 0, "burying": 0, "expiring": 2}
    assert m.tubes("sprout_tube_buries_total") == {"default": 0, "burying": 2, "expiring": 0}
    assert m.value("sprout_cmd_bury_total") == 2
    assert m.tube("sprout_tube_current_jobs_buried", "burying") == 0  # kicked back
    assert m.tube("sprout_tube_current_jobs_ready", "expiring") == 2
    for c in (p, w, w2):
        c.close()


# --- the tube cap ----------------------------------------------------------------------


def test_tube_cap_keeps_the_fullest_tubes_and_sums_the_rest(metrics_server):
    srv = metrics_server("--metrics-tube-cap", "2")
    p, w = Conn(srv), Conn(srv)
    for tube, n in (("t-four", 4), ("t-three", 3), ("t-two", 3), ("t-one", 2)):
        p.use(tube)
        for i in range(n):
            p.put(b"%d" % i)
    w.watch_only("t-two")
    jid = w.reserve()
    w.ok(f"delete {jid}", "DELETED")
    jid = w.reserve()
    w.ok(f"bury {jid} 0", "BURIED")  # t-two: 1 ready + 1 buried
    w.watch_only("t-one")
    jid = w.reserve()
    w.ok(f"delete {jid}", "DELETED")  # t-one: 1 ready
    p.ok("pause-tube t-one 30", "PAUSED")
    tubes = p.yaml("list-tubes")
    per_tube = {t: p.yaml(f"stats-tube {t}") for t in tubes}
    m = scrape(srv)

    for name in m.families:
        if name.startswith("sprout_tube_"):
            labels = {dict(k[1]).get("tube") for k in m.samples if k[0].startswith(name)}
            assert labels == {"t-four", "t-three", "*other*"}, (name, labels)
    compare_tube("t-four", per_tube["t-four"], m)
    compare_tube("t-three", per_tube["t-three"], m)
    rest = [per_tube[t] for t in ("t-two", "t-one", "default")]
    for field in rest[0]:
        if field == "name":
            continue
        got = m.tube(tube_metric(field), "*other*")
        if field in ("pause", "pause-time-left"):
            assert got == 0, field  # a sum of pauses means nothing
        else:
            assert got == sum(st[field] for st in rest), (field, got)
    qw = m.hist("sprout_tube_queue_wait_seconds", "*other*")
    r2d = m.hist("sprout_tube_reserve_to_delete_seconds", "*other*")
    check_histogram(*qw)
    check_histogram(*r2d)
    assert qw[2] == 3 and r2d[2] == 2
    assert m.tube("sprout_tube_buries_total", "*other*") == 1
    assert m.tube("sprout_tube_oldest_ready_age_seconds", "*other*") > 0
    # Server-wide series are not capped.
    assert m.value("sprout_current_tubes") == 5
    assert m.value("sprout_current_jobs_ready") == 4 + 3 + 1 + 1
    w.close()
    p.close()


def test_tube_cap_ties_go_by_name_and_zero_sums_everything(metrics_server):
    one = metrics_server("--metrics-tube-cap", "1")
    zero = metrics_server("--metrics-tube-cap", "0")
    for srv in (one, zero):
        p = Conn(srv)
        for tube in ("bbb", "aaa", "ccc"):  # one job each: a three-way tie
            p.use(tube)
            p.put(b"j")
        srv.conn = p
    m = scrape(one)
    assert m.tubes("sprout_tube_current_jobs_ready") == {"aaa": 1, "*other*": 2}
    m = scrape(zero)
    assert m.tubes("sprout_tube_current_jobs_ready") == {"*other*": 3}
    assert m.tubes("sprout_tube_jobs_total") == {"*other*": 3}
    for srv in (one, zero):
        srv.conn.close()


def test_tube_cap_with_a_real_tube_named_other(metrics_server):
    srv = metrics_server("--metrics-tube-cap", "1")
    p = Conn(srv)
    p.use("_other")
    p.put(b"1")
    p.put(b"2")
    p.use("small")
    p.put(b"3")
    # Scrape() asserts that no (name, labels) series appears twice.
    scrape(srv)
    p.close()


# --- binlog ----------------------------------------------------------------------------


def test_binlog_bytes(metrics_server):
    without = metrics_server()
    m = scrape(without)
    assert "sprout_binlog_live_bytes" not in m.families
    assert m.value("sprout_binlog_records_written_total") == 0
    with tempfile.TemporaryDirectory(prefix="sproutd-metrics-", dir="/tmp") as d:
        srv = metrics_server("-b", d)
        p = Conn(srv)
        p.use("durable")
        for i in range(5):
            p.put(b"body %d" % i)
        m = poll(srv, "live binlog bytes", lambda m: m.value("sprout_binlog_live_bytes") > 0)
        live = m.value("sprout_binlog_live_bytes")
        disk = m.value("sprout_binlog_disk_bytes")
        dead = m.value("sprout_binlog_dead_bytes")
        assert disk >= live > 0
        assert dead == disk - live
        stats = p.yaml("stats")
        m = scrape(srv)
        for field in ("binlog-oldest-index", "binlog-current-index", "binlog-max-size",
                      "binlog-records-written", "binlog-records-migrated"):
            assert m.value(server_metric(field)) == stats[field], field
        assert m.value("sprout_binlog_records_written_total") >= 5
        assert m.value("sprout_binlog_current_index") >= 1
        p.close()
        srv.stop()


# --- HTTP ------------------------------------------------------------------------------


def test_http_paths_and_methods(metrics_server):
    srv = metrics_server()
    status, _, body = get(srv, "/healthz")
    assert (status, body.strip()) == (200, "ok")
    assert get(srv, "/nope")[0] == 404
    assert get(srv, "/")[0] == 404
    assert get(srv, "/metrics", method="POST")[0] == 405
    assert get(srv, "/healthz", method="POST")[0] == 405
    status, _, body = get(srv, "/metrics?foo=bar")
    assert status == 200 and "sprout_pid" in body
    # The beanstalkd port is unaffected by the HTTP traffic.
    p = Conn(srv)
    assert p.yaml("stats")["pid"] == srv.pid
    p.close()


def test_draining_after_sigusr1(metrics_server):
    srv = metrics_server()
    assert scrape(srv).value("sprout_draining") == 0
    srv.signal(signal.SIGUSR1)
    poll(srv, "sprout_draining 1", lambda m: m.value("sprout_draining") == 1)
    p = Conn(srv)
    assert p.cmd("put 0 0 60 1", b"x") == "DRAINING"
    assert p.yaml("stats")["draining"] is True
    p.close()


# --- labels ----------------------------------------------------------------------------


def test_unusual_tube_names_as_labels(metrics_server):
    names = [
        "a+b",
        "x/y;z",
        "dots.and$dollars",
        "_underscore",
        "(paren)-dash",
        "$",
        "Az09+/;.$_()-",
        "t" * 200,  # the longest name allowed
    ]
    srv = metrics_server()
    p = Conn(srv)
    for i, n in enumerate(names):
        p.use(n)
        for _ in range(i + 1):
            p.put(b"j")
    per_tube = {n: p.yaml(f"stats-tube {n}") for n in names}
    m = scrape(srv)
    assert set(m.tubes("sprout_tube_current_jobs_ready")) == set(names) | {"default"}
    for n in names:
        compare_tube(n, per_tube[n], m)
        assert f'sprout_tube_current_jobs_ready{{tube="{n}"}} ' in m.text
        buckets, total, count = m.hist("sprout_tube_queue_wait_seconds", n)
        assert len(buckets) == len(BUCKETS) + 1 and count == 0
    p.close()
