"""Time-dependent behaviour: reserve-with-timeout, DEADLINE_SOON, TTR expiry,
touch, delays, pause expiry.  Waits are 0.2-1.5 s and every bound is generous
(a reply that must come "after ~1 s" is awaited for 3 s; "not before" windows
end >= 0.3 s before the deadline)."""

from harness import S, cmd, contains, put, recv, send, silent, wait

NF = "NOT_FOUND\r\n"
DS = "DEADLINE_SOON\r\n"
TO = "TIMED_OUT\r\n"


def NUDGE(c):
    """beanstalkd 1.12 sometimes misses the TTR deadline of a job reserved by an
    idle (non-waiting) connection: its timer fires a little early, finds nothing
    expired and is not re-armed, so the job stays reserved until that connection
    sends its next command.  A neutral command on the owner after the deadline
    makes the reference deterministic (same reply either way)."""
    return cmd("list-tube-used", c=c, exp="USING default\r\n")


def res(i, body="x"):
    return f"RESERVED {i} {len(body)}\r\n{body}\r\n"


SCENARIOS = [
    S("rwt_1_times_out_after_a_second",
      send("reserve-with-timeout 1"),
      silent(t=0.6),
      recv(exp=TO),
      cmd("stats", exp=contains("cmd-reserve-with-timeout: 1\n", "current-waiting: 0\n"))),

    S("rwt_1_then_pipelined_command_answered_after",
      send(b"reserve-with-timeout 1\r\nlist-tube-used\r\n"),
      silent(t=0.6),
      recv(n=2, exp=TO + "USING default\r\n")),

    S("rwt_2_satisfied_by_put_during_wait",
      send("reserve-with-timeout 2", c="b", settle=0.15),
      silent(c="b", t=0.3),
      put("late", c="a"),
      recv(c="b", exp=res(1, "late"))),

    S("rwt_3_satisfied_by_delayed_job",
      put("d", delay=1),
      send("reserve-with-timeout 3"),
      silent(t=0.5),
      recv(exp=res(1, "d"))),

    S("deadline_soon_while_waiting_then_ttr_expiry",
      put("x", ttr=2),
      cmd("reserve", exp=res(1)),
      send("reserve"),
      silent(t=0.6),
      recv(exp=DS),
      cmd("reserve", exp=DS),
      cmd("stats-job 1", exp=contains("state: reserved\n", "time-left: 0\n")),
      wait(1.3),
      *NUDGE("a"),
      cmd("reserve", exp=res(1)),
      cmd("stats-job 1", exp=contains("reserves: 2\n", "timeouts: 1\n")),
      cmd("stats", exp=contains("job-timeouts: 1\n"))),

    S("deadline_soon_with_reserve_with_timeout",
      put("x", ttr=2),
      cmd("reserve", exp=res(1)),
      send("reserve-with-timeout 10"),
      silent(t=0.6),
      recv(exp=DS),
      cmd("delete 1", exp="DELETED\r\n")),

    S("deadline_soon_immediate_with_ttr_1",
      put("x", ttr=1),
      cmd("reserve", exp=res(1)),
      cmd("reserve", exp=DS),
      cmd("reserve-with-timeout 0", exp=DS),
      cmd("reserve-with-timeout 5", exp=DS),
      cmd("stats-job 1", exp=contains("state: reserved\n"))),

    S("deadline_soon_not_sent_when_job_ready",
      put("1", ttr=1), put("2", ttr=1),
      cmd("reserve", exp=res(1, "1")),
      cmd("reserve", exp=res(2, "2")),
      cmd("reserve", exp=DS)),

    S("deadline_soon_ignores_unwatched_ready_job",
      put("x", ttr=1),
      cmd("use other"), put("y"),
      cmd("reserve", exp=res(1)),
      cmd("reserve", exp=DS)),

    S("ttr_expiry_job_goes_to_other_conn",
      put("x", ttr=1, c="a"),
      cmd("reserve", c="a", exp=res(1)),
      send("reserve", c="b", settle=0.15),
      silent(c="b", t=0.4),
      wait(0.8),
      *NUDGE("a"),
      recv(c="b", exp=res(1)),
      cmd("delete 1", c="a", exp=NF),
      cmd("stats-job 1", c="b", exp=contains("reserves: 2\n", "timeouts: 1\n",
                                             "state: reserved\n")),
      cmd("stats", c="a", exp=contains("job-timeouts: 1\n", "current-jobs-reserved: 1\n"))),

    S("ttr_expiry_back_to_ready_same_pri",
      put("x", pri=42, ttr=1),
      cmd("reserve", exp=res(1)),
      wait(1.5),
      *NUDGE("a"),
      cmd("stats-job 1", exp=contains("state: ready\n", "pri: 42\n", "timeouts: 1\n")),
      cmd("release 1 0 0", exp=NF),
      cmd("peek-ready", exp="FOUND 1 1\r\nx\r\n"),
      cmd("stats-tube default", exp=contains("current-jobs-ready: 1\n",
                                             "current-jobs-reserved: 0\n"))),

    S("touch_extends_ttr",
      put("x", ttr=2, c="a"),
      cmd("reserve", c="a", exp=res(1)),
      wait(1.3),
      cmd("touch 1", c="a", exp="TOUCHED\r\n"),
      cmd("reserve-with-timeout 1", c="b", exp=TO),
      cmd("stats-job 1", c="b", exp=contains("state: reserved\n", "timeouts: 0\n")),
      send("reserve", c="b"),
      wait(1.3),
      *NUDGE("a"),
      recv(c="b", exp=res(1)),
      cmd("stats-job 1", c="b", exp=contains("timeouts: 1\n"))),

    S("delayed_job_becomes_ready_for_waiter",
      put("d", delay=1, c="a"),
      cmd("stats-job 1", c="a", exp=contains("state: delayed\n", "delay: 1\n", "time-left: 0\n")),
      send("reserve", c="b"),
      silent(c="b", t=0.5),
      recv(c="b", exp=res(1, "d")),
      cmd("stats-job 1", c="a", exp=contains("state: reserved\n", "delay: 1\n"))),

    S("delayed_jobs_ready_after_wait_in_pri_order",
      put("lo", pri=9, delay=1), put("hi", pri=1, delay=1),
      cmd("peek-ready", exp=NF),
      wait(1.5),
      cmd("peek-ready", exp="FOUND 2 2\r\nhi\r\n"),
      cmd("peek-delayed", exp=NF),
      cmd("stats", exp=contains("current-jobs-delayed: 0\n", "current-jobs-ready: 2\n",
                                "current-jobs-urgent: 2\n"))),

    S("delayed_jobs_served_in_deadline_order",
      put("late", delay=2), put("early", delay=1),
      send("reserve"),
      recv(exp=res(2, "early")),
      send("reserve"),
      silent(t=0.3),
      recv(exp=res(1, "late"))),

    S("release_with_delay_1_becomes_ready",
      put("x"),
      cmd("reserve", exp=res(1)),
      cmd("release 1 3 1", exp="RELEASED\r\n"),
      cmd("reserve-with-timeout 0", exp=TO),
      wait(1.5),
      cmd("reserve-with-timeout 0", exp=res(1)),
      cmd("stats-job 1", exp=contains("pri: 3\n", "delay: 1\n", "releases: 1\n",
                                      "reserves: 2\n"))),

    S("pause_expiry_wakes_waiter",
      put("x", c="a"),
      cmd("pause-tube default 1", c="a", exp="PAUSED\r\n"),
      cmd("stats-tube default", c="a", exp=contains("pause: 1\n", "pause-time-left: 0\n")),
      send("reserve", c="b"),
      silent(c="b", t=0.4),
      recv(c="b", exp=res(1)),
      cmd("stats-tube default", c="a")),

    S("pause_time_left_counts_down",
      cmd("pause-tube default 3", exp="PAUSED\r\n"),
      cmd("stats-tube default", exp=contains("pause: 3\n", "pause-time-left: 2\n")),
      wait(0.5),
      cmd("stats-tube default", exp=contains("pause: 3\n", "pause-time-left: 2\n")),
      cmd("pause-tube default 2", exp="PAUSED\r\n"),
      cmd("stats-tube default", exp=contains("pause: 2\n", "pause-time-left: 1\n",
                                             "cmd-pause-tube: 2\n"))),

    S("reserve_job_of_delayed_times_out_into_ready",
      put("x", delay=100, ttr=1),
      cmd("reserve-job 1", exp=res(1)),
      wait(1.5),
      *NUDGE("a"),
      cmd("stats-job 1", exp=contains("state: ready\n", "timeouts: 1\n", "delay: 100\n")),
      cmd("stats", exp=contains("current-jobs-delayed: 0\n", "current-jobs-ready: 1\n"))),

    S("ttr_expiry_several_jobs_one_conn",
      put("a", ttr=1), put("b", ttr=1), put("c", ttr=5),
      cmd("reserve", exp=res(1, "a")),
      cmd("reserve", exp=res(2, "b")),
      cmd("reserve", exp=res(3, "c")),
      wait(1.5),
      *NUDGE("a"),
      cmd("stats", exp=contains("current-jobs-ready: 2\n", "current-jobs-reserved: 1\n",
                                "job-timeouts: 2\n")),
      cmd("reserve", exp=res(1, "a"))),
]
