"""sprout's own command lines under ``sproutd --strict``.

sproutd's extension commands (``flush-tube``, ``reserve-batch``, ``list-jobs``,
``put-unique``, ``reprioritize``, ``move-job``, ``tube-policy``) are turned off by
``--strict``: every such line must then be answered exactly as beanstalkd answers it,
and what follows must be treated alike (a ``put-unique`` body is not a body to
beanstalkd: its lines are commands).  Plain sproutd answers these lines with its own
replies, so every scenario here except the ``ext_lookalike_*`` ones is
``strict_only``: it runs only when the target is ``sproutd --strict``
(``SPROUTD_ARGS=--strict``) or beanstalkd itself, and is skipped otherwise.

The ``ext_lookalike_*`` scenarios run in both modes: their first word only resembles an
extension's name (``flush-tubex``, ``put-unique\\tk``), so even plain sproutd must
answer them as beanstalkd does.
"""

from harness import S, cmd, contains, drip, eof, put, recv, send, silent

BF = "BAD_FORMAT\r\n"
UC = "UNKNOWN_COMMAND\r\n"
USING_DEFAULT = "USING default\r\n"
LIST_DEFAULT = "OK 14\r\n---\n- default\n\r\n"

SCENARIOS = []


def add(name, *steps, **kw):
    SCENARIOS.append(S(name, *steps, strict_only=True, **kw))


def res(i, body="x"):
    return f"RESERVED {i} {len(body)}\r\n{body}\r\n"


def found(i, body="x"):
    return f"FOUND {i} {len(body)}\r\n{body}\r\n"


def unique(key, body, pri=0, delay=0, ttr=60):
    """A put-unique header and its body, as sprout's clients send them."""
    if isinstance(body, str):
        body = body.encode("latin-1")
    return (b"put-unique %s %d %d %d %d\r\n" % (key.encode(), pri, delay, ttr, len(body))
            + body + b"\r\n")


# Every extension command with valid arguments; after each, the state it would have
# changed is read back (nothing may have changed) and the whole stats body compared.
VALID = [
    "flush-tube default",
    "flush-tube t",
    "reserve-batch 1 0",
    "reserve-batch 2 0",
    "reserve-batch 1000 5",
    "list-jobs default ready 0 10",
    "list-jobs t buried 5 1",
    "list-jobs default reserved 0 1000",
    "list-jobs default delayed 18446744073709551615 1",
    "reprioritize 1 0",
    "reprioritize 1 4294967295",
    "move-job 1 other",
    "tube-policy default",
    "tube-policy t max-reserves 3",
    "tube-policy t max-ready 100",
    "tube-policy t on-exhaust bury",
    "tube-policy t on-exhaust delete",
    "tube-policy t on-exhaust tube:dead",
    "tube-policy t retry-backoff none",
    "tube-policy t retry-backoff fixed:5",
    "tube-policy t retry-backoff exp:1,60",
]

# Wrong values, wrong counts, missing arguments, stray spaces.
BAD = [
    "flush-tube",
    "flush-tube ",
    "flush-tube -bad",
    "flush-tube a b",
    "flush-tube bad!",
    "flush-tube  default",
    "reserve-batch",
    "reserve-batch ",
    "reserve-batch 0 0",
    "reserve-batch 1001 0",
    "reserve-batch 2",
    "reserve-batch 2 -1",
    "reserve-batch 2 2147483648",
    "reserve-batch x y",
    "reserve-batch 2 0 ",
    "list-jobs",
    "list-jobs default",
    "list-jobs default ready",
    "list-jobs default ready 0",
    "list-jobs default nosuch 0 10",
    "list-jobs default ready 0 0",
    "list-jobs default ready 0 1001",
    "list-jobs default ready x 10",
    "put-unique",
    "put-unique k",
    "put-unique k 0 0 60",
    "put-unique -k 0 0 60 1",
    "put-unique k 0 0 60 1 x",
    "put-unique k -1 0 60 1",
    "reprioritize",
    "reprioritize 1",
    "reprioritize x 1",
    "reprioritize 1 4294967296",
    "reprioritize 1 1 1",
    "move-job",
    "move-job 1",
    "move-job 1 -bad",
    "move-job x t",
    "move-job 1 t u",
    "tube-policy",
    "tube-policy ",
    "tube-policy -t",
    "tube-policy t bogus 1",
    "tube-policy t max-reserves",
    "tube-policy t max-reserves x",
    "tube-policy t max-reserves 1 2",
    "tube-policy t on-exhaust tube:",
    "tube-policy t on-exhaust elsewhere",
    "tube-policy t retry-backoff exp:0,1",
    "tube-policy t retry-backoff fixed:",
]

# Lines that start like an extension but whose first word is not one.
PREFIXES = [
    "flush-tubex",
    "flush-tubex t",
    "flush-tubes t",
    "reserve-batchx",
    "reserve-batchx 2 0",
    "list-jobsx",
    "list-jobsx t ready 0 10",
    "list-jobs-ready",
    "put-uniquex k 0 0 60 1",
    "reprioritizex 1 1",
    "move-jobx 1 t",
    "tube-policyx",
    "tube-policyx t",
    "tube-policy-t",
    "FLUSH-TUBE t",
    "Reserve-batch 2 0",
    "flush-tube\tt",
    "put-unique\tk 0 0 60 1",
]


def each_line(lines, exp_of=None):
    """One cmd per line, on conn a; exp_of(line) gives the expected reply, if known."""
    return [cmd(ln, exp=exp_of(ln) if exp_of else None) for ln in lines]


def strict_reply(line):
    """What beanstalkd answers to an extension line: BAD_FORMAT where it prefix-matches
    `reserve` (then finds trailing bytes), UNKNOWN_COMMAND for everything else."""
    return BF if line.startswith("reserve") else UC


# ------------------------------------------------------------- valid arguments

add("strict_ext_valid_arguments_change_nothing",
    cmd("use t"), put("a", pri=5), put("b", pri=7, delay=100),
    cmd("reserve-job 1"), cmd("bury 1 5"),
    cmd("use default"), put("c", pri=9),
    *each_line(VALID, strict_reply),
    cmd("stats-job 1", exp=contains("tube: t\n", "state: buried\n", "pri: 5\n")),
    cmd("stats-job 2", exp=contains("tube: t\n", "state: delayed\n", "pri: 7\n")),
    cmd("stats-job 3", exp=contains("tube: default\n", "state: ready\n", "pri: 9\n")),
    cmd("list-tubes", exp="OK 18\r\n---\n- default\n- t\n\r\n"),
    cmd("stats-tube other", exp="NOT_FOUND\r\n"),
    cmd("stats-tube dead", exp="NOT_FOUND\r\n"),
    cmd("stats-tube t", exp=contains("current-jobs-buried: 1\n", "current-jobs-delayed: 1\n")),
    cmd("stats", exp=contains("current-jobs-ready: 1\n", "current-jobs-reserved: 0\n",
                              "cmd-reserve: 0\n", "cmd-reserve-with-timeout: 0\n",
                              "cmd-list-tubes: 1\n")))

add("strict_ext_valid_arguments_pipelined",
    put("x"),
    cmd("".join(ln + "\r\n" for ln in VALID).encode() + b"list-tube-used\r\n",
        n=len(VALID) + 1, exp="".join(strict_reply(ln) for ln in VALID) + USING_DEFAULT),
    cmd("peek-ready", exp=found(1)),
    cmd("stats"))

add("strict_reserve_batch_does_not_reserve",
    put("a"), put("b"),
    cmd("reserve-batch 2 0", exp=BF),
    cmd("reserve-batch 1 0", exp=BF),
    cmd("stats-job 1", exp=contains("state: ready\n", "reserves: 0\n")),
    cmd("stats", exp=contains("current-jobs-ready: 2\n", "current-jobs-reserved: 0\n",
                              "current-workers: 0\n", "cmd-reserve: 0\n")),
    cmd("reserve-with-timeout 0", exp=res(1, "a")))

add("strict_reserve_batch_does_not_wait",
    cmd("reserve-batch 2 5", c="b", exp=BF),
    cmd("stats", exp=contains("current-waiting: 0\n")),
    put("x", c="a", exp="INSERTED 1\r\n"),
    silent(c="b", t=0.3),
    cmd("peek-ready", c="b", exp=found(1)))

add("strict_tube_policy_and_move_job_create_no_tube",
    put("x"),
    cmd("move-job 1 moved", exp=UC),
    cmd("tube-policy newtube", exp=UC),
    cmd("tube-policy newtube2 max-ready 5", exp=UC),
    cmd("tube-policy t on-exhaust tube:target", exp=UC),
    cmd("list-tubes", exp=LIST_DEFAULT),
    cmd("stats", exp=contains("current-tubes: 1\n")))

add("strict_flush_tube_keeps_jobs",
    cmd("use t"), put("a"), put("b", delay=100), put("c"),
    cmd("reserve-job 3"), cmd("bury 3 0"),
    cmd("flush-tube t", exp=UC),
    cmd("stats-tube t", exp=contains("current-jobs-ready: 1\n", "current-jobs-delayed: 1\n",
                                     "current-jobs-buried: 1\n", "total-jobs: 3\n")),
    cmd("peek 1", exp=found(1, "a")),
    cmd("peek 2", exp=found(2, "b")),
    cmd("peek 3", exp=found(3, "c")))

# ----------------------------------------------------------------- bad arguments

add("strict_ext_bad_arguments",
    put("x"),
    *each_line(BAD, strict_reply),
    cmd("list-tube-used", exp=USING_DEFAULT),
    cmd("stats"))

add("strict_ext_bad_arguments_pipelined",
    cmd("".join(ln + "\r\n" for ln in BAD).encode() + b"list-tube-used\r\n",
        n=len(BAD) + 1, exp="".join(strict_reply(ln) for ln in BAD) + USING_DEFAULT),
    cmd("stats"))

add("strict_ext_overlong_lines",
    cmd("flush-tube " + "a" * 200, exp=UC),
    cmd("flush-tube " + "a" * 201, exp=UC),
    cmd(b"flush-tube " + b"a" * 250 + b"\r\nlist-tube-used\r\n", n=2, exp=BF + USING_DEFAULT),
    cmd(b"reserve-batch " + b"1" * 250 + b"\r\n", exp=BF),
    cmd(b"put-unique k 0 0 60 1" + b" " * 250 + b"\r\nx\r\n", n=2, exp=BF + UC),
    cmd(b"list-jobs " + b"t" * 200 + b" ready 0 10\r\n", exp=UC),
    cmd(b"list-jobs " + b"t" * 210 + b" ready 0 10\r\n", exp=BF),
    cmd("stats"))

add("strict_ext_with_nul_byte",
    cmd(b"flush-tube t\0\r\n", exp=BF),
    cmd(b"put-unique k\x000 0 60 1\r\nx\r\n", n=2, exp=BF + UC),
    cmd(b"tube-policy\0\r\n", exp=BF),
    cmd("stats"))

# ------------------------------------------------------------ prefixes and cases

SCENARIOS.append(S(
    "ext_lookalike_prefixes_plain_or_strict",
    *each_line(PREFIXES, strict_reply),
    cmd("list-tubes", exp=LIST_DEFAULT),
    cmd("stats")))

SCENARIOS.append(S(
    "ext_lookalike_put_unique_tab_body_is_a_command",
    cmd(b"put-unique\tk 0 0 60 8\r\nuse tab1\r\n", n=2, exp=UC + "USING tab1\r\n"),
    cmd("list-tubes", exp="OK 21\r\n---\n- default\n- tab1\n\r\n"),
    cmd("stats")))

# --------------------------------------------------- put-unique: the body after it

add("strict_put_unique_body_is_a_line",
    cmd(unique("k", "hello"), n=2, exp=UC + UC),
    cmd("stats", exp=contains("cmd-put: 0\n", "total-jobs: 0\n", "current-jobs-ready: 0\n")),
    cmd("list-tubes", exp=LIST_DEFAULT),
    cmd("peek-ready", exp="NOT_FOUND\r\n"))

add("strict_put_unique_body_in_separate_packets",
    send("put-unique k 0 0 60 5"),
    recv(exp=UC),  # the header was answered before the body is sent
    send(b"hello\r\n"),
    recv(exp=UC),
    cmd("list-tube-used", exp=USING_DEFAULT),
    cmd("stats", exp=contains("cmd-put: 0\n", "total-jobs: 0\n")))

add("strict_put_unique_body_dripped",
    drip(unique("k", "hello")),
    recv(n=2, exp=UC + UC),
    cmd("stats", exp=contains("cmd-put: 0\n")))

add("strict_put_unique_body_is_a_command",
    cmd(unique("k", "use other"), n=2, exp=UC + "USING other\r\n"),
    cmd("list-tube-used", exp="USING other\r\n"),
    cmd("list-tubes", exp="OK 22\r\n---\n- default\n- other\n\r\n"),
    put("x", exp="INSERTED 1\r\n"),
    cmd("stats-job 1", exp=contains("tube: other\n")),
    cmd("stats"))

add("strict_put_unique_body_is_a_put",
    cmd(unique("k", b"put 3 0 60 2", pri=1) + b"hi\r\n", n=2, exp=UC + "INSERTED 1\r\n"),
    cmd("peek 1", exp=found(1, "hi")),
    cmd("stats-job 1", exp=contains("pri: 3\n")),
    cmd("stats", exp=contains("cmd-put: 1\n", "total-jobs: 1\n")))

add("strict_put_unique_body_with_crlf_inside",
    cmd(unique("k", b"stats-tube default\r\nlist-tube-used"), exp=UC),
    recv(exp=contains("current-jobs-ready: 0\n")),
    recv(exp=USING_DEFAULT),
    cmd("stats"))

add("strict_put_unique_empty_body",
    cmd(b"put-unique k 0 0 60 0\r\n\r\n", n=2, exp=UC + UC),
    cmd("stats", exp=contains("cmd-put: 0\n")))

add("strict_put_unique_body_quit",
    cmd(b"put-unique k 0 0 60 4\r\n", exp=UC),
    send(b"quit\r\n"),
    eof(exp=b""))

add("strict_put_unique_too_big_is_not_skipped",
    cmd(b"put-unique k 0 0 60 70000\r\n" + b"z" * 300 + b"\r\nlist-tube-used\r\n", n=3,
        exp=UC + BF + USING_DEFAULT),
    cmd("stats", exp=contains("cmd-put: 0\n")))

add("strict_put_unique_over_z_limit",
    cmd(unique("k", "hello world"), n=2, exp=UC + UC),
    cmd(b"put 0 0 60 11\r\nhello world\r\n", exp="JOB_TOO_BIG\r\n"),
    cmd("stats", exp=contains("cmd-put: 1\n")),
    args=("-z", "10"))

add("strict_put_unique_body_expected_crlf_case",
    cmd(b"put-unique k 0 0 60 1\r\nabc\r\n", n=2, exp=UC + UC),
    cmd(b"put 0 0 60 1\r\nabc\r\n", n=2, exp="EXPECTED_CRLF\r\n" + UC),
    cmd("stats"))

# w's reserve may be registered before or after a's put: w gets job 1 either way.
add("strict_ext_lines_around_a_waiting_reserve",
    cmd("reserve-batch 1 0", c="w", exp=BF),
    send("reserve", c="w"),
    cmd(unique("k", "hello"), n=2, exp=UC + UC),
    cmd("reserve-batch 1 0", exp=BF),
    cmd("flush-tube default", exp=UC),
    silent(c="w", t=0.2),
    put("x", exp="INSERTED 1\r\n"),
    recv(c="w", exp=res(1)),
    cmd("stats", exp=contains("current-jobs-reserved: 1\n")))

add("strict_ext_then_quit",
    cmd("tube-policy t max-ready 1", exp=UC),
    cmd("reserve-batch 1 0", exp=BF),
    send("quit"),
    eof(exp=b""))
