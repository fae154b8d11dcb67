"""Command semantics: use/watch/ignore, reserve & friends, delete, release, bury,
touch, peek*, kick, kick-job, stats*, list-*, pause-tube (no long waits here)."""

from harness import S, cmd, contains, put, recv, send, silent

NF = "NOT_FOUND\r\n"
BF = "BAD_FORMAT\r\n"


def res(i, body="x"):
    return f"RESERVED {i} {len(body)}\r\n{body}\r\n"


def found(i, body="x"):
    return f"FOUND {i} {len(body)}\r\n{body}\r\n"


def puts(*specs, c="a"):
    """Pipelined puts: specs are (pri, delay, body) tuples; replies are read."""
    data = b"".join(b"put %d %d 60 %d\r\n%s\r\n" % (p, d, len(b), b.encode()) for p, d, b in specs)
    return [send(data, c=c), recv(c=c, n=len(specs))]


SCENARIOS = []
add = SCENARIOS.append

# ------------------------------------------------------------------- use
add(S("use_and_list_tube_used",
      cmd("list-tube-used", exp="USING default\r\n"),
      cmd("use foo", exp="USING foo\r\n"),
      cmd("list-tube-used", exp="USING foo\r\n"),
      cmd("use foo", exp="USING foo\r\n"),
      cmd("list-tubes"),
      cmd("stats-tube foo", exp=contains("current-using: 1\n", "current-watching: 0\n")),
      cmd("use default", exp="USING default\r\n"),
      cmd("stats-tube foo", exp=NF)))

# ------------------------------------------------------------ watch/ignore
add(S("watch_ignore_counts",
      cmd("watch a", exp="WATCHING 2\r\n"),
      cmd("watch b", exp="WATCHING 3\r\n"),
      cmd("watch a", exp="WATCHING 3\r\n"),
      cmd("list-tubes-watched", exp="OK 22\r\n---\n- default\n- a\n- b\n\r\n"),
      cmd("ignore a", exp="WATCHING 2\r\n"),
      cmd("ignore nosuch", exp="WATCHING 2\r\n"),
      cmd("ignore default", exp="WATCHING 1\r\n"),
      cmd("ignore b", exp="NOT_IGNORED\r\n"),
      cmd("list-tubes-watched", exp="OK 8\r\n---\n- b\n\r\n"),
      cmd("list-tubes"),
      cmd("stats", exp=contains("cmd-watch: 3\n", "cmd-ignore: 4\n"))))

add(S("ignore_only_default_not_ignored",
      cmd("ignore default", exp="NOT_IGNORED\r\n"),
      cmd("ignore other", exp="WATCHING 1\r\n"),
      cmd("list-tubes", exp="OK 14\r\n---\n- default\n\r\n")))

add(S("list_tubes_watched_swap_remove_order",
      cmd("watch a"), cmd("watch b"), cmd("watch c"),
      cmd("ignore a", exp="WATCHING 3\r\n"),
      cmd("list-tubes-watched"),
      cmd("watch d"),
      cmd("ignore default"),
      cmd("list-tubes-watched"),
      cmd("list-tubes")))

add(S("watch_creates_tube_ignore_destroys",
      cmd("watch w1", exp="WATCHING 2\r\n"),
      cmd("stats-tube w1", exp=contains("current-watching: 1\n")),
      cmd("list-tubes"),
      cmd("ignore w1", exp="WATCHING 1\r\n"),
      cmd("stats-tube w1", exp=NF),
      cmd("list-tubes", exp="OK 14\r\n---\n- default\n\r\n")))

# ----------------------------------------------------------------- reserve
add(S("reserve_order_priority_then_id",
      *puts((5, 0, "a"), (1, 0, "b"), (5, 0, "c"), (0, 0, "d"), (1, 0, "e")),
      cmd("reserve", exp=res(4, "d")),
      cmd("reserve", exp=res(2, "b")),
      cmd("reserve", exp=res(5, "e")),
      cmd("reserve", exp=res(1, "a")),
      cmd("reserve", exp=res(3, "c")),
      cmd("reserve-with-timeout 0", exp="TIMED_OUT\r\n")))

add(S("reserve_order_across_watched_tubes",
      cmd("use t1"), *puts((10, 0, "t1a"), (3, 0, "t1b")),
      cmd("use t2"), *puts((3, 0, "t2a"), (0, 0, "t2b"), (10, 0, "t2c")),
      cmd("use t3"), *puts((0, 0, "t3a")),
      cmd("watch t1"), cmd("watch t2"),
      cmd("reserve", exp=res(4, "t2b")),
      cmd("reserve", exp=res(2, "t1b")),
      cmd("reserve", exp=res(3, "t2a")),
      cmd("reserve", exp=res(1, "t1a")),
      cmd("reserve", exp=res(5, "t2c")),
      cmd("reserve-with-timeout 0", exp="TIMED_OUT\r\n"),
      cmd("stats", exp=contains("current-jobs-ready: 1\n", "current-jobs-reserved: 5\n"))))

add(S("reserve_skips_unwatched_tube",
      cmd("use other"), put("x", exp="INSERTED 1\r\n"),
      cmd("reserve-with-timeout 0", exp="TIMED_OUT\r\n"),
      cmd("watch other"), cmd("ignore default"),
      cmd("reserve-with-timeout 0", exp=res(1))))

add(S("reserve_ignores_buried_and_delayed",
      put("d", delay=100), put("b"),
      cmd("reserve", exp=res(2, "b")), cmd("bury 2 0", exp="BURIED\r\n"),
      cmd("reserve-with-timeout 0", exp="TIMED_OUT\r\n"),
      cmd("stats", exp=contains("current-jobs-delayed: 1\n", "current-jobs-buried: 1\n",
                                "cmd-reserve: 1\n", "cmd-reserve-with-timeout: 1\n"))))

add(S("reserve_blocked_then_pipelined_command_after",
      put("x"),
      cmd(b"reserve\r\nlist-tube-used\r\nreserve-with-timeout 0\r\nlist-tubes-watched\r\n", n=4)))

add(S("reserve_blocking_answered_by_other_conns_put",
      send("reserve", c="b", settle=0.15),
      silent(c="b", t=0.1),
      cmd("stats", c="a", exp=contains("current-waiting: 1\n")),
      put("job", c="a", exp="INSERTED 1\r\n"),
      recv(c="b", exp=res(1, "job")),
      cmd("stats", c="a", exp=contains("current-waiting: 0\n", "current-workers: 1\n",
                                       "current-producers: 1\n"))))

add(S("reserve_waiter_on_other_tube_gets_put",
      cmd("watch jobs", c="b"), cmd("ignore default", c="b"),
      send("reserve", c="b", settle=0.15),
      cmd("stats-tube jobs", c="a", exp=contains("current-watching: 1\n", "current-waiting: 1\n")),
      put("nope", c="a"),
      silent(c="b", t=0.2),
      cmd("use jobs", c="a"),
      put("yes", c="a"),
      recv(c="b", exp=res(2, "yes"))))

add(S("reserve_three_waiters_fifo_like",
      send("reserve", c="w1", settle=0.15),
      send("reserve", c="w2", settle=0.15),
      send("reserve", c="w3", settle=0.15),
      cmd("stats", c="p", exp=contains("current-waiting: 3\n")),
      put("1", c="p"), recv(c="w1", exp=res(1, "1")),
      put("2", c="p"), recv(c="w2", exp=res(2, "2")),
      put("3", c="p"), recv(c="w3", exp=res(3, "3"))))

add(S("reserve_two_waiters_one_job_then_another",
      send("reserve", c="w1", settle=0.15),
      send("reserve", c="w2", settle=0.15),
      put("1", c="p"),
      recv(c="w1", exp=res(1, "1")),
      silent(c="w2", t=0.2),
      cmd("release 1 0 0", c="w1", exp="RELEASED\r\n"),
      recv(c="w2", exp=res(1, "1"))))

add(S("reserve_waiter_watching_two_tubes_gets_min_pri",
      cmd("use t1", c="p"), put("hi", pri=5, c="p"),
      cmd("use t2", c="p"), put("lo", pri=1, c="p"),
      cmd("watch t1", c="w"), cmd("watch t2", c="w"),
      cmd("reserve", c="w", exp=res(2, "lo")),
      cmd("reserve", c="w", exp=res(1, "hi"))))

add(S("reserve_with_timeout_counts_worker",
      cmd("reserve-with-timeout 0", exp="TIMED_OUT\r\n"),
      cmd("stats", exp=contains("cmd-reserve-with-timeout: 1\n", "current-workers: 1\n"))))

# ------------------------------------------------------------- reserve-job
add(S("reserve_job_states",
      put("ready"),
      put("delayed", delay=100),
      put("tobury"),
      cmd("reserve-job 3", exp=res(3, "tobury")),
      cmd("bury 3 7", exp="BURIED\r\n"),
      cmd("reserve-job 3", exp=res(3, "tobury")),
      cmd("stats-job 3", exp=contains("state: reserved\n", "pri: 7\n", "reserves: 2\n")),
      cmd("reserve-job 2", exp=res(2, "delayed")),
      cmd("stats-job 2", exp=contains("state: reserved\n", "delay: 100\n", "time-left: 59\n")),
      cmd("reserve-job 1", exp=res(1, "ready")),
      cmd("reserve-job 1", exp=NF),
      cmd("reserve-job 99", exp=NF),
      cmd("stats", exp=contains("cmd-reserve: 0\n", "current-jobs-reserved: 3\n",
                                "current-workers: 1\n"))))

add(S("reserve_job_other_tube_unwatched_and_paused",
      cmd("use hidden"), put("h"),
      cmd("pause-tube hidden 100", exp="PAUSED\r\n"),
      cmd("reserve-job 1", exp=res(1, "h")),
      cmd("stats-tube hidden", exp=contains("current-jobs-reserved: 1\n"))))

add(S("reserve_job_reserved_by_other_conn",
      put("x", c="a"),
      cmd("reserve", c="a", exp=res(1)),
      cmd("reserve-job 1", c="b", exp=NF),
      cmd("delete 1", c="a", exp="DELETED\r\n"),
      cmd("reserve-job 1", c="b", exp=NF)))

add(S("reserve_job_then_release_to_ready",
      put("x", delay=100),
      cmd("reserve-job 1", exp=res(1)),
      cmd("release 1 3 0", exp="RELEASED\r\n"),
      cmd("stats-job 1", exp=contains("state: ready\n", "pri: 3\n", "delay: 0\n",
                                      "releases: 1\n"))))

# ------------------------------------------------------------------ delete
add(S("delete_each_state",
      put("ready"), put("delayed", delay=100), put("buried"), put("reserved"),
      cmd("reserve-job 3"), cmd("bury 3 0"),
      cmd("reserve-job 4"),
      cmd("delete 1", exp="DELETED\r\n"),
      cmd("delete 2", exp="DELETED\r\n"),
      cmd("delete 3", exp="DELETED\r\n"),
      cmd("delete 4", exp="DELETED\r\n"),
      cmd("delete 4", exp=NF),
      cmd("delete 5", exp=NF),
      cmd("stats", exp=contains("cmd-delete: 6\n")),
      cmd("stats-tube default", exp=contains("cmd-delete: 4\n"))))

add(S("delete_reserved_by_other_conn_not_found",
      put("x", c="a"),
      cmd("reserve", c="a", exp=res(1)),
      cmd("delete 1", c="b", exp=NF),
      cmd("stats-job 1", c="b", exp=contains("state: reserved\n")),
      cmd("delete 1", c="a", exp="DELETED\r\n")))

add(S("delete_counts_per_tube",
      cmd("use t"), put("1"), put("2"),
      cmd("delete 1", exp="DELETED\r\n"),
      cmd("delete 1", exp=NF),
      cmd("stats-tube t", exp=contains("cmd-delete: 1\n")),
      cmd("stats", exp=contains("cmd-delete: 2\n"))))

# ----------------------------------------------------------------- release
add(S("release_with_pri_change_reorders",
      put("a", pri=10), put("b", pri=20),
      cmd("reserve", exp=res(1, "a")),
      cmd("release 1 30 0", exp="RELEASED\r\n"),
      cmd("reserve", exp=res(2, "b")),
      cmd("reserve", exp=res(1, "a")),
      cmd("stats-job 1", exp=contains("pri: 30\n", "reserves: 2\n", "releases: 1\n"))))

add(S("release_with_delay_becomes_delayed",
      put("x"),
      cmd("reserve", exp=res(1)),
      cmd("release 1 5 30", exp="RELEASED\r\n"),
      cmd("stats-job 1", exp=contains("state: delayed\n", "pri: 5\n", "delay: 30\n",
                                      "time-left: 29\n")),
      cmd("peek-delayed", exp=found(1)),
      cmd("reserve-with-timeout 0", exp="TIMED_OUT\r\n"),
      cmd("stats", exp=contains("current-jobs-delayed: 1\n", "cmd-release: 1\n"))))

add(S("release_not_reserved_not_found",
      put("ready"), put("delayed", delay=100), put("buried"),
      cmd("reserve-job 3"), cmd("bury 3 0"),
      cmd("release 1 0 0", exp=NF),
      cmd("release 2 0 0", exp=NF),
      cmd("release 3 0 0", exp=NF),
      cmd("release 9 0 0", exp=NF),
      cmd("stats", exp=contains("cmd-release: 4\n"))))

add(S("release_reserved_by_other_not_found",
      put("x", c="a"),
      cmd("reserve", c="a", exp=res(1)),
      cmd("release 1 0 0", c="b", exp=NF),
      cmd("bury 1 0", c="b", exp=NF),
      cmd("touch 1", c="b", exp=NF),
      cmd("release 1 0 0", c="a", exp="RELEASED\r\n")))

add(S("release_changes_urgent_count",
      put("x", pri=1023), put("y", pri=1024),
      cmd("stats", exp=contains("current-jobs-urgent: 1\n", "current-jobs-ready: 2\n")),
      cmd("stats-tube default", exp=contains("current-jobs-urgent: 1\n")),
      cmd("reserve", exp=res(1)),
      cmd("stats", exp=contains("current-jobs-urgent: 0\n")),
      cmd("release 1 2000 0", exp="RELEASED\r\n"),
      cmd("stats", exp=contains("current-jobs-urgent: 0\n", "current-jobs-ready: 2\n")),
      cmd("reserve", exp=res(2, "y")),
      cmd("release 2 0 0"),
      cmd("stats-tube default", exp=contains("current-jobs-urgent: 1\n"))))

# -------------------------------------------------------------------- bury
add(S("bury_fifo_and_pri",
      *puts((0, 0, "1"), (0, 0, "2"), (0, 0, "3")),
      cmd("reserve-job 3"), cmd("bury 3 9", exp="BURIED\r\n"),
      cmd("reserve-job 1"), cmd("bury 1 8", exp="BURIED\r\n"),
      cmd("reserve-job 2"), cmd("bury 2 7", exp="BURIED\r\n"),
      cmd("peek-buried", exp=found(3, "3")),
      cmd("stats-job 3", exp=contains("state: buried\n", "pri: 9\n", "buries: 1\n")),
      cmd("kick 1", exp="KICKED 1\r\n"),
      cmd("peek-buried", exp=found(1, "1")),
      cmd("kick 5", exp="KICKED 2\r\n"),
      cmd("reserve", exp=res(2, "2")),
      cmd("stats", exp=contains("cmd-bury: 3\n", "cmd-kick: 2\n"))))

add(S("bury_not_reserved_not_found",
      put("x"), put("y", delay=100),
      cmd("bury 1 0", exp=NF), cmd("bury 2 0", exp=NF), cmd("bury 3 0", exp=NF),
      cmd("reserve"), cmd("bury 1 0", exp="BURIED\r\n"), cmd("bury 1 0", exp=NF),
      cmd("stats-tube default", exp=contains("current-jobs-buried: 1\n"))))

# ------------------------------------------------------------------- touch
add(S("touch_own_and_others",
      put("x"), put("y"),
      cmd("touch 1", exp=NF),
      cmd("reserve", exp=res(1)),
      cmd("touch 1", exp="TOUCHED\r\n"),
      cmd("touch 2", exp=NF),
      cmd("touch 3", exp=NF),
      cmd("touch 1", c="b", exp=NF),
      cmd("stats-job 1", exp=contains("state: reserved\n", "time-left: 59\n")),
      cmd("stats", exp=contains("cmd-touch: 5\n"))))

# -------------------------------------------------------------------- peek
add(S("peek_any_state_any_tube",
      cmd("use t1"), put("r1"),
      cmd("use t2"), put("d2", delay=100), put("b3"),
      cmd("reserve-job 3", c="b"), cmd("bury 3 0", c="b"),
      put("res4"), cmd("reserve-job 4", c="b"),
      cmd("use default"),
      cmd("peek 1", exp=found(1, "r1")),
      cmd("peek 2", exp=found(2, "d2")),
      cmd("peek 3", exp=found(3, "b3")),
      cmd("peek 4", exp=found(4, "res4")),
      cmd("peek 5", exp=NF),
      cmd("stats", exp=contains("cmd-peek: 5\n"))))

add(S("peek_ready_delayed_buried_used_tube_only",
      put("x"),
      cmd("use other"),
      cmd("peek-ready", exp=NF),
      cmd("peek-delayed", exp=NF),
      cmd("peek-buried", exp=NF),
      cmd("use default"),
      cmd("peek-ready", exp=found(1)),
      cmd("stats", exp=contains("cmd-peek-ready: 2\n", "cmd-peek-delayed: 1\n",
                                "cmd-peek-buried: 1\n"))))

add(S("peek_ready_priority_and_delayed_order",
      *puts((5, 0, "a"), (2, 0, "b"), (2, 0, "c"), (0, 3, "d3"), (0, 2, "d2a"), (0, 2, "d2b")),
      cmd("peek-ready", exp=found(2, "b")),
      cmd("peek-delayed", exp=found(5, "d2a")),
      cmd("delete 5"),
      cmd("peek-delayed", exp=found(6, "d2b")),
      cmd("peek-buried", exp=NF)))

# -------------------------------------------------------------------- kick
add(S("kick_buried_before_delayed",
      put("a"), put("b"), put("c", delay=100),
      cmd("reserve"), cmd("bury 1 0"), cmd("reserve"), cmd("bury 2 0"),
      cmd("kick 10", exp="KICKED 2\r\n"),
      cmd("kick 10", exp="KICKED 1\r\n"),
      cmd("kick 10", exp="KICKED 0\r\n"),
      cmd("stats-job 3", exp=contains("state: ready\n", "delay: 100\n", "kicks: 1\n")),
      cmd("stats-job 1", exp=contains("kicks: 1\n", "buries: 1\n"))))

add(S("kick_delayed_in_deadline_order",
      put("late", delay=300), put("early", delay=100), put("mid", delay=200),
      cmd("kick 1", exp="KICKED 1\r\n"),
      cmd("peek-ready", exp=found(2, "early")),
      cmd("kick 1", exp="KICKED 1\r\n"),
      cmd("reserve", exp=res(2, "early")),
      cmd("reserve", exp=res(3, "mid"))))

add(S("kick_only_used_tube",
      cmd("use t"), put("x"), cmd("reserve-job 1"), cmd("bury 1 0"),
      cmd("use default"),
      cmd("kick 5", exp="KICKED 0\r\n"),
      cmd("use t"),
      cmd("kick 5", exp="KICKED 1\r\n")))

# ---------------------------------------------------------------- kick-job
add(S("kick_job_states",
      put("ready"), put("delayed", delay=100), put("buried"), put("reserved"),
      cmd("reserve-job 3"), cmd("bury 3 0"), cmd("reserve-job 4"),
      cmd("kick-job 1", exp=NF),
      cmd("kick-job 2", exp="KICKED\r\n"),
      cmd("kick-job 2", exp=NF),
      cmd("kick-job 3", exp="KICKED\r\n"),
      cmd("kick-job 4", exp=NF),
      cmd("kick-job 5", exp=NF),
      cmd("stats-job 2", exp=contains("state: ready\n", "delay: 100\n", "kicks: 1\n")),
      cmd("stats-job 3", exp=contains("state: ready\n", "kicks: 1\n")),
      cmd("stats", exp=contains("cmd-kick: 0\n", "current-jobs-ready: 3\n"))))

add(S("kick_job_any_tube",
      cmd("use far"), put("x", delay=100),
      cmd("use default"),
      cmd("kick-job 1", exp="KICKED\r\n"),
      cmd("stats-tube far", exp=contains("current-jobs-ready: 1\n", "current-jobs-delayed: 0\n"))))

# ------------------------------------------------------------------- stats
add(S("stats_fresh_server", cmd("stats")))

add(S("stats_job_not_found_and_fields",
      cmd("stats-job 1", exp=NF),
      put("x", pri=7, ttr=30),
      cmd("stats-job 1", exp="OK 144\r\n---\nid: 1\ntube: default\nstate: ready\npri: 7\n"
          "age: 0\ndelay: 0\nttr: 30\ntime-left: 0\nfile: 0\nreserves: 0\ntimeouts: 0\n"
          "releases: 0\nburies: 0\nkicks: 0\n\r\n"),
      cmd("reserve"),
      cmd("stats-job 1", exp=contains("state: reserved\n", "time-left: 29\n", "reserves: 1\n")),
      cmd("stats", exp=contains("cmd-stats-job: 3\n"))))

add(S("stats_tube_fields_after_workload",
      cmd("use q", c="p"),
      put("u", pri=1, c="p"), put("n", pri=5000, c="p"), put("d", delay=50, c="p"),
      put("b", c="p"), put("r", c="p"),
      cmd("watch q", c="w"), cmd("reserve-job 4", c="w"), cmd("bury 4 0", c="w"),
      cmd("reserve-job 5", c="w"),
      cmd("delete 1", c="p"),
      cmd("pause-tube q 0", c="p"),
      cmd("stats-tube q", c="p"),
      cmd("stats-tube q", c="w"),
      cmd("stats-tube default", c="w"),
      cmd("stats-tube nosuch", c="w", exp=NF)))

add(S("stats_after_known_workload",
      cmd("use t1"), put("a"), put("b", pri=2000), put("c", delay=100),
      cmd("watch t1", c="w"), cmd("reserve", c="w"),
      cmd("reserve-job 2", c="w"), cmd("bury 2 5", c="w"),
      cmd("peek 1"), cmd("peek-ready"), cmd("peek-delayed"), cmd("peek-buried"),
      cmd("list-tubes"), cmd("list-tube-used"), cmd("list-tubes-watched"),
      cmd("stats-job 1"), cmd("stats-tube t1"), cmd("touch 1", c="w"),
      cmd("release 1 0 0", c="w"), cmd("kick 1"), cmd("kick-job 3"),
      cmd("reserve-with-timeout 0", c="w"), cmd("delete 1", c="w"),
      cmd("pause-tube t1 0"), cmd("ignore default", c="w"),
      cmd(b"put 0 0 0 70000 x\r\n" + b"z" * 70002, exp="JOB_TOO_BIG\r\n"),
      cmd("put 0 0 0 x", exp=BF),
      cmd("stats"),
      cmd("stats", c="w")))

add(S("stats_connection_counters",
      cmd("list-tube-used", c="a"), cmd("list-tube-used", c="b"), cmd("list-tube-used", c="c"),
      put("x", c="b"),
      cmd("reserve", c="c"),
      cmd("stats", c="a", exp=contains("current-connections: 4\n", "current-producers: 1\n",
                                       "current-workers: 1\n", "total-connections: 4\n")),
      send("quit", c="b"), send("quit", c="c"),
      silent(c="a", t=0.3),
      cmd("stats", c="a", exp=contains("current-jobs-ready: 1\n", "current-connections: 2\n",
                                       "current-producers: 0\n", "current-workers: 0\n",
                                       "total-connections: 4\n"))))

add(S("stats_counts_commands_not_bad_format",
      cmd("use x y", exp=BF), cmd("watch ", exp=BF), cmd("peek x", exp=BF),
      cmd("stats-job x", exp=BF), cmd("kick x", exp=BF), cmd("list-tubesx", exp=BF),
      cmd("stats")))

# ------------------------------------------------------------------ lists
add(S("list_tubes_swap_remove_order",
      cmd("use a", c="a"), cmd("use b", c="a"), cmd("use c", c="a"), cmd("use d", c="a"),
      cmd("list-tubes", c="a", exp="OK 18\r\n---\n- default\n- d\n\r\n"),
      cmd("use b", c="b"),
      cmd("use zz", c="a"),
      cmd("list-tubes", c="a", exp="OK 23\r\n---\n- default\n- zz\n- b\n\r\n")))

add(S("list_tubes_creation_order_and_removal_from_middle",
      cmd("watch t1"), cmd("watch t2"), cmd("watch t3"), cmd("watch t4"),
      cmd("list-tubes"),
      cmd("ignore t2"),
      cmd("list-tubes"),
      cmd("list-tubes-watched"),
      cmd("ignore default"),
      cmd("list-tubes"),
      cmd("list-tubes-watched"),
      cmd("stats", exp=contains("current-tubes: 4\n"))))

# ------------------------------------------------------------- pause-tube
add(S("pause_tube_stats_fields_and_blocks_reserve",
      put("x"),
      cmd("pause-tube default 100", exp="PAUSED\r\n"),
      cmd("stats-tube default", exp=contains("cmd-pause-tube: 1\n", "pause: 100\n",
                                             "pause-time-left: 99\n")),
      cmd("reserve-with-timeout 0", exp="TIMED_OUT\r\n"),
      cmd("peek-ready", exp=found(1)),
      put("y"),
      cmd("kick 1", exp="KICKED 0\r\n"),
      cmd("reserve-job 1", exp=res(1)),
      cmd("delete 1", exp="DELETED\r\n"),
      cmd("stats", exp=contains("cmd-pause-tube: 1\n"))))

add(S("pause_tube_zero_unpauses_and_wakes_waiter",
      put("x", c="a"),
      cmd("pause-tube default 100", c="a", exp="PAUSED\r\n"),
      send("reserve", c="b", settle=0.15),
      silent(c="b", t=0.2),
      cmd("pause-tube default 0", c="a", exp="PAUSED\r\n"),
      recv(c="b", timeout=2.0, exp=res(1)),
      cmd("stats-tube default", c="a", exp=contains("cmd-pause-tube: 2\n", "pause: 0\n",
                                                    "pause-time-left: 0\n"))))

add(S("pause_one_of_two_watched_tubes",
      cmd("use p"), put("paused", pri=0),
      cmd("use u"), put("open", pri=100),
      cmd("pause-tube p 100"),
      cmd("watch p", c="w"), cmd("watch u", c="w"),
      cmd("reserve", c="w", exp=res(2, "open")),
      cmd("reserve-with-timeout 0", c="w", exp="TIMED_OUT\r\n")))

add(S("pause_state_dies_with_tube",
      cmd("watch pt"),
      cmd("pause-tube pt 100", exp="PAUSED\r\n"),
      cmd("ignore pt"),
      cmd("stats-tube pt", exp=NF),
      cmd("watch pt"),
      cmd("stats-tube pt", exp=contains("cmd-pause-tube: 0\n", "pause: 0\n"))))

add(S("pause_tube_not_found_for_missing_tube",
      cmd("pause-tube missing 10", exp=NF),
      cmd("list-tubes", exp="OK 14\r\n---\n- default\n\r\n"),
      cmd("stats", exp=contains("cmd-pause-tube: 1\n"))))
