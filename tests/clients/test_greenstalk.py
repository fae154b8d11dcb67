"""sproutd against the `greenstalk` client library (pip install greenstalk pytest).

Every public API call of greenstalk 2.x is exercised, and every server error greenstalk
maps to an exception that a server can produce on demand. A few error replies cannot be
reached through greenstalk's public API (EXPECTED_CRLF, UNKNOWN_COMMAND); those use its
private `_send_cmd`, as noted.

Each test that uses `server` (or `server_small_jobs`) runs twice: `[plain]` against the
plain listener, and `[stunnel]` through Debian's stunnel as a TLS client in front of
sproutd's TLS listener (the server certificate verified against the test CA), so the
whole suite also runs over TLS.
"""

import signal
import socket
import threading
import time

import clusterutil
import greenstalk
import pytest


@pytest.fixture(params=["plain", "stunnel"])
def server(request, reached):
    """sproutd, reached directly or through a stunnel TLS client."""
    return reached(request.param)


@pytest.fixture(params=["plain", "stunnel"])
def server_small_jobs(request, reached):
    """sproutd with -z 10 (max job size 10 bytes), directly or through stunnel."""
    return reached(request.param, "-z", "10")


@pytest.fixture
def client(server):
    with greenstalk.Client(server.address) as c:
        yield c


def other(server, **kw):
    return greenstalk.Client(server.address, **kw)


# --- connecting ------------------------------------------------------------------------


def test_connect_with_use_and_watch(server):
    with greenstalk.Client(server.address, use="emails", watch=["emails", "sms"]) as c:
        assert c.using() == "emails"
        # watch emails, watch sms, ignore default: beanstalkd removes from the watch
        # list by swapping the last entry into the hole.
        assert c.watching() == ["sms", "emails"]
        assert repr(c) == f"greenstalk.Client(host='127.0.0.1', port={server.address[1]})"
    with greenstalk.Client(server.address, watch="sms") as c:
        assert c.using() == "default"
        assert c.watching() == ["sms"]


def test_connect_with_a_socket_object(server):
    sock = socket.create_connection(server.address)
    c = greenstalk.Client(sock)
    jid = c.put("via socket")
    assert c.peek(jid).body == "via socket"
    c.close()
    assert sock.fileno() == -1


def test_unix_socket(unix_server):
    path = unix_server.address
    with greenstalk.Client(path) as c, greenstalk.Client(path) as w:
        assert repr(c) == f"greenstalk.Client(socket={path!r})"
        jid = c.put("over unix")
        job = w.reserve(timeout=5)
        assert (job.id, job.body) == (jid, "over unix")
        w.delete(job)
        assert c.stats()["current-jobs-ready"] == 0


def test_server_closing_the_connection_is_a_connection_error(client):
    # `quit` has no public API; the server closes without a reply.
    with pytest.raises(ConnectionError):
        client._send_cmd(b"quit", b"NEVER")


# --- producing and consuming -----------------------------------------------------------


def test_put_reserve_delete(client):
    jid = client.put("hello", priority=7, delay=0, ttr=30)
    job = client.reserve()
    assert isinstance(job, greenstalk.Job)
    assert (job.id, job.body) == (jid, "hello")
    sj = client.stats_job(job)
    assert sj["state"] == "reserved"
    assert (sj["pri"], sj["ttr"], sj["reserves"]) == (7, 30, 1)
    client.delete(job)
    with pytest.raises(greenstalk.NotFoundError):
        client.delete(jid)
    with pytest.raises(greenstalk.NotFoundError):
        client.peek(jid)


def test_default_put_arguments(client):
    jid = client.put("defaults")
    sj = client.stats_job(jid)
    assert (sj["pri"], sj["delay"], sj["ttr"]) == (
        greenstalk.DEFAULT_PRIORITY,
        greenstalk.DEFAULT_DELAY,
        greenstalk.DEFAULT_TTR,
    )
    assert sj["tube"] == "default"


def test_bodies_round_trip(server):
    with greenstalk.Client(server.address, encoding=None) as raw:
        body = b"\x00\r\n\xff\r\nbinary\x00"
        jid = raw.put(body)
        job = raw.reserve(timeout=5)
        assert (job.id, job.body) == (jid, body)
        raw.delete(job)
    with greenstalk.Client(server.address) as text:
        body = "héllo wörld ✓ — 日本語"
        jid = text.put(body)
        assert text.reserve(timeout=5).body == body
        big = "x" * 65535  # the default max-job-size exactly
        jid = text.put(big)
        assert text.peek(jid).body == big


def test_priority_order(client):
    ids = {p: client.put(f"pri {p}", priority=p) for p in (5, 1, 2**32 - 1, 0)}
    got = [client.reserve(timeout=0).id for _ in ids]
    assert got == [ids[0], ids[1], ids[5], ids[2**32 - 1]]


def test_release(client):
    jid = client.put("r", priority=10)
    job = client.reserve()
    client.release(job, priority=3)
    sj = client.stats_job(jid)
    assert (sj["state"], sj["pri"], sj["releases"]) == ("ready", 3, 1)
    job = client.reserve(timeout=0)
    client.release(job, delay=100)
    assert client.stats_job(jid)["state"] == "delayed"
    assert client.peek_delayed().id == jid


def test_bury_and_kick(client):
    jid = client.put("b")
    job = client.reserve()
    client.bury(job, priority=99)
    sj = client.stats_job(job)
    assert (sj["state"], sj["pri"], sj["buries"]) == ("buried", 99, 1)
    assert client.peek_buried().id == jid
    assert client.kick(10) == 1
    assert client.stats_job(jid)["state"] == "ready"
    assert client.kick(10) == 0


def test_kick_prefers_buried_over_delayed(client):
    delayed = client.put("d", delay=100)
    client.put("b")
    buried = client.reserve()
    client.bury(buried)
    assert client.kick(10) == 1
    assert client.stats_job(buried)["state"] == "ready"
    assert client.stats_job(delayed)["state"] == "delayed"
    assert client.kick(10) == 1
    assert client.stats_job(delayed)["state"] == "ready"


def test_kick_job(client):
    delayed = client.put("d", delay=100)
    client.kick_job(delayed)
    sj = client.stats_job(delayed)
    assert (sj["state"], sj["kicks"]) == ("ready", 1)
    job = client.reserve(timeout=0)
    client.bury(job)
    client.kick_job(job)  # a Job works as well as an id
    assert client.stats_job(job)["state"] == "ready"
    with pytest.raises(greenstalk.NotFoundError):
        client.kick_job(job)  # ready: nothing to kick


def test_touch(client):
    jid = client.put("t", ttr=100)
    job = client.reserve()
    client.touch(job)
    assert 99 <= client.stats_job(jid)["time-left"] <= 100
    client.delete(job)
    with pytest.raises(greenstalk.NotFoundError):
        client.touch(job)


def test_only_the_reserver_may_touch_release_bury(server, client):
    jid = client.put("mine")
    job = client.reserve()
    with other(server) as o:
        with pytest.raises(greenstalk.NotFoundError):
            o.touch(job)
        with pytest.raises(greenstalk.NotFoundError):
            o.release(job)
        with pytest.raises(greenstalk.NotFoundError):
            o.bury(job)
        with pytest.raises(greenstalk.NotFoundError):
            o.delete(job)
        with pytest.raises(greenstalk.NotFoundError):
            o.reserve_job(jid)
        assert o.peek(jid).body == "mine"


def test_reserve_job(client):
    first = client.put("first")
    second = client.put("second")
    job = client.reserve_job(second)
    assert (job.id, job.body) == (second, "second")
    assert client.reserve(timeout=0).id == first
    with pytest.raises(greenstalk.NotFoundError):
        client.reserve_job(10**9)
    delayed = client.put("later", delay=100)
    assert client.reserve_job(delayed).body == "later"


# --- peeking ---------------------------------------------------------------------------


def test_peeks(client):
    for peek in (client.peek_ready, client.peek_delayed, client.peek_buried):
        with pytest.raises(greenstalk.NotFoundError):
            peek()
    ready = client.put("ready", priority=1)
    client.put("less urgent", priority=2)
    delayed = client.put("delayed", delay=50)
    client.put("delayed longer", delay=100)
    client.put("to bury", priority=0)
    buried = client.reserve()
    client.bury(buried)
    assert (client.peek_ready().id, client.peek_ready().body) == (ready, "ready")
    assert (client.peek_delayed().id, client.peek_delayed().body) == (delayed, "delayed")
    assert (client.peek_buried().id, client.peek_buried().body) == (buried.id, "to bury")
    assert client.peek(buried.id).body == "to bury"
    # peek-* look at the used tube only
    client.use("empty")
    with pytest.raises(greenstalk.NotFoundError):
        client.peek_ready()


# --- tubes -----------------------------------------------------------------------------


def test_use_watch_ignore(server, client):
    assert client.using() == "default"
    client.use("foo")
    assert client.using() == "foo"
    assert client.watching() == ["default"]
    assert client.watch("foo") == 2
    assert client.watch("foo") == 2
    assert client.watching() == ["default", "foo"]
    assert client.ignore("default") == 1
    assert client.watching() == ["foo"]
    assert client.ignore("not-watched") == 1
    with pytest.raises(greenstalk.NotIgnoredError):
        client.ignore("foo")
    assert sorted(client.tubes()) == ["default", "foo"]
    jid = client.put("in foo")
    assert client.stats_job(jid)["tube"] == "foo"
    with other(server) as o:
        with pytest.raises(greenstalk.TimedOutError):
            o.reserve(timeout=0)  # watches default only
        o.watch("foo")
        assert o.reserve(timeout=0).id == jid


def test_tubes_are_garbage_collected(server):
    with other(server) as a:
        a.use("temp")
        assert "temp" in a.tubes()
        a.use("default")
        assert "temp" not in a.tubes()


def test_stats_tube(server, client):
    client.use("st")
    client.put("a", priority=1)
    client.put("b", priority=5000)
    client.put("c", delay=100)
    st = client.stats_tube("st")
    assert st["name"] == "st"
    assert st["current-jobs-urgent"] == 1
    assert st["current-jobs-ready"] == 2
    assert st["current-jobs-delayed"] == 1
    assert st["total-jobs"] == 3
    assert st["current-using"] == 1
    assert st["current-watching"] == 0
    with pytest.raises(greenstalk.NotFoundError):
        client.stats_tube("nope")


def test_pause_tube(server, client):
    client.use("p")
    client.watch("p")
    client.ignore("default")
    jid = client.put("paused")
    client.pause_tube("p", 100)
    st = client.stats_tube("p")
    assert (st["pause"], st["cmd-pause-tube"]) == (100, 1)
    assert 99 <= st["pause-time-left"] <= 100
    with pytest.raises(greenstalk.TimedOutError):
        client.reserve(timeout=0)
    client.pause_tube("p", 0)  # ends the pause
    assert client.reserve(timeout=1).id == jid
    with pytest.raises(greenstalk.NotFoundError):
        client.pause_tube("no-such-tube", 1)


# --- stats -----------------------------------------------------------------------------


def test_stats(server, client):
    jid = client.put("s")
    st = client.stats()
    assert st["pid"] == server.pid
    assert st["current-jobs-ready"] == 1
    assert st["cmd-put"] == 1
    assert st["total-jobs"] == 1
    assert st["max-job-size"] == 65535
    assert st["draining"] == "false"
    assert st["current-connections"] >= 1
    for key in ("version", "id", "hostname", "os", "platform", "rusage-utime"):
        assert isinstance(st[key], str) and st[key] != "", key
    sj = client.stats_job(jid)
    assert set(sj) >= {
        "id", "tube", "state", "pri", "age", "delay", "ttr", "time-left",
        "file", "reserves", "timeouts", "releases", "buries", "kicks",
    }
    assert (sj["id"], sj["state"], sj["file"]) == (jid, "ready", 0)
    with pytest.raises(greenstalk.NotFoundError):
        client.stats_job(jid + 1000)


# --- timeouts and errors ---------------------------------------------------------------


def test_reserve_timeout(client):
    with pytest.raises(greenstalk.TimedOutError):
        client.reserve(timeout=0)
    t0 = time.monotonic()
    with pytest.raises(greenstalk.TimedOutError):
        client.reserve(timeout=1)
    assert 0.95 <= time.monotonic() - t0 <= 1.5


def test_blocking_reserve_is_woken_by_put(server, client, wait_until):
    got = []
    t = threading.Thread(target=lambda: got.append(client.reserve(timeout=10)))
    t.start()
    with other(server) as p:
        wait_until("the reserve is waiting", lambda: p.stats()["current-waiting"] == 1)
        jid = p.put("wake up")
    t.join(timeout=10)
    assert [j.id for j in got] == [jid]


def test_deadline_soon(client):
    jid = client.put("short", ttr=1)
    client.reserve()
    with pytest.raises(greenstalk.DeadlineSoonError):
        client.reserve(timeout=5)
    with pytest.raises(greenstalk.DeadlineSoonError):
        client.reserve()
    client.delete(jid)


def test_ttr_expiry_makes_the_job_ready_again(server, client):
    jid = client.put("slow worker", ttr=1)
    client.reserve()
    with other(server) as o:
        t0 = time.monotonic()
        job = o.reserve(timeout=5)
        elapsed = time.monotonic() - t0
        assert job.id == jid
        # On a cluster node the TTR counts from the reserve's log entry (the leader's
        # clock stamped on it), and the reply comes once that entry is committed: the
        # worker sees up to the log's delay less (COMPAT.md, Cluster mode, row "time").
        lo = 0.6 if clusterutil.ROLE else 0.9
        assert lo <= elapsed <= 1.5
        assert o.stats_job(jid)["timeouts"] == 1


def test_job_too_big(server_small_jobs):
    with greenstalk.Client(server_small_jobs.address) as c:
        assert c.put("x" * 10)
        with pytest.raises(greenstalk.JobTooBigError):
            c.put("x" * 11)
        assert c.using() == "default"  # the connection stays in sync


def test_job_too_big_default_limit(client):
    with pytest.raises(greenstalk.JobTooBigError):
        client.put("x" * 65536)
    assert client.put("ok")


def test_bad_format(client):
    for bad in ("-leading-dash", "x" * 201, "bad name"):
        with pytest.raises(greenstalk.BadFormatError):
            client.use(bad)
    with pytest.raises(greenstalk.BadFormatError):
        client.watch("")
    assert client.using() == "default"


def test_unknown_command_and_expected_crlf(client):
    # Not reachable through greenstalk's public API: use its private command helper.
    with pytest.raises(greenstalk.UnknownCommandError):
        client._send_cmd(b"frobnicate", b"OK")
    # 3 body bytes where 1 was announced: "bc" is not CRLF. The CRLF _send_cmd appends
    # is then an empty command line.
    with pytest.raises(greenstalk.ExpectedCrlfError):
        client._send_cmd(b"put 0 0 10 1\r\nabc", b"INSERTED")
    with pytest.raises(greenstalk.UnknownCommandError):
        greenstalk._parse_response(client._reader.readline(), b"OK")
    assert client.using() == "default"


def test_drain_mode(server, client, wait_until):
    jid = client.put("before drain")
    server.signal(signal.SIGUSR1)
    wait_until("draining", lambda: client.stats()["draining"] == "true")
    with pytest.raises(greenstalk.DrainingError):
        client.put("during drain")
    # Everything but put keeps working.
    job = client.reserve(timeout=1)
    assert job.id == jid
    client.release(job)
    job = client.reserve(timeout=1)
    client.delete(job)
    with pytest.raises(greenstalk.DrainingError):
        client.put("still draining")
    assert client.stats()["current-jobs-ready"] == 0
