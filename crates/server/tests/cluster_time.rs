//! Time in cluster mode across a leader change: a delay, a TTR, a reserve timeout and a
//! tube pause begun under one leader end under the next one when they are due, counted
//! from when they began (the deadlines are in the replicated state, stamped with the
//! leader's clock), never early and not restarted by the failover. Ids keep increasing.

mod common;

use std::time::{Duration, Instant};

use common::cluster::Cluster;

/// Seconds every timer here runs: long enough that the leader is killed and a new one
/// elected (about 1 s) while they run.
const T: u64 = 4;
/// How late past its due time a timer may end on this loaded machine (an election is part
/// of it).
const SLACK: Duration = Duration::from_secs(8);

/// A connection on `port` waiting in `reserve-with-timeout 30` on `tube` alone.
fn waiter(cl: &Cluster, i: usize, tube: &str) -> common::Conn {
    let mut w = cl.conn(i);
    w.set_timeout(Duration::from_secs(60));
    assert_eq!(w.cmd(&format!("watch {tube}")), "WATCHING 2");
    assert_eq!(w.cmd("ignore default"), "WATCHING 1");
    w
}

#[test]
fn delays_ttrs_reserve_timeouts_and_pauses_run_on_across_a_leader_change() {
    let mut cl = Cluster::new(3);
    let l = cl.leader();
    let f = (l + 1) % 3;
    let mut c = cl.conn(f);
    c.set_timeout(Duration::from_secs(60));
    // Workers on the follower that survives, one per timer, each in its own tube.
    let mut waiters: Vec<common::Conn> = ["delayed", "ttr", "paused", "empty"]
        .iter()
        .map(|t| waiter(&cl, f, t))
        .collect();
    let reserve = format!("reserve-with-timeout {}\r\n", 3 * T);
    let timeout = format!("reserve-with-timeout {T}\r\n");

    // Under the first leader: a delayed job; a job reserved with a short TTR; a paused
    // tube, then a job put into it; a reserve that will time out. Each start is taken
    // before its command is sent: a bound from below of when it began.
    let mut starts = Vec::new();
    assert_eq!(c.cmd("use delayed"), "USING delayed");
    starts.push(Instant::now());
    let delayed = c.put(0, T as u32, 60, b"delayed");
    waiters[0].send(reserve.as_bytes());
    assert_eq!(c.cmd("use ttr"), "USING ttr");
    let held = c.put(0, 0, T as u32, b"held");
    assert_eq!(c.cmd("watch ttr"), "WATCHING 2");
    starts.push(Instant::now());
    assert_eq!(c.reserve().0, held);
    waiters[1].send(reserve.as_bytes());
    starts.push(Instant::now());
    assert_eq!(c.cmd(&format!("pause-tube paused {T}")), "PAUSED");
    assert_eq!(c.cmd("use paused"), "USING paused");
    let in_paused = c.put(0, 0, 60, b"in a paused tube");
    waiters[2].send(reserve.as_bytes());
    starts.push(Instant::now());
    waiters[3].send(timeout.as_bytes());

    // kill -9 of the leader while they all run; each worker times its own answer.
    std::thread::scope(|s| {
        let answers: Vec<_> = waiters
            .iter_mut()
            .map(|w| {
                s.spawn(move || {
                    let line = w.line();
                    let at = Instant::now();
                    let id = if line == "TIMED_OUT" {
                        None
                    } else {
                        Some(w.job_data(&line, "RESERVED").0)
                    };
                    (id, at)
                })
            })
            .collect();
        cl.kill(l);
        let nl = cl.leader();
        assert_ne!(nl, l);
        let elected = starts[0].elapsed();
        eprintln!("new leader after {elected:?}");
        assert!(
            elected < Duration::from_secs(T),
            "the election took longer than the timers: nothing was tested across it"
        );
        let want = [Some(delayed), Some(held), Some(in_paused), None];
        for (k, a) in answers.into_iter().enumerate() {
            let (id, at) = a.join().unwrap();
            let took = at - starts[k];
            let what = ["delay", "ttr", "pause", "reserve timeout"][k];
            eprintln!("{what} of {T} s ended after {took:?}");
            assert_eq!(id, want[k], "{what}");
            assert!(
                took >= Duration::from_secs(T),
                "{what} ended early: {took:?}"
            );
            assert!(
                took < Duration::from_secs(T) + SLACK,
                "{what} ended late: {took:?}"
            );
            if k < 3 {
                // Not begun again by the new leader: it ends before T counted from the
                // election would.
                let restarted = elected + Duration::from_secs(T);
                assert!(
                    took < restarted,
                    "{what} restarted at the failover: {took:?}"
                );
            }
        }
    });
    // The TTR's job timed out once; ids go on increasing under the new leader.
    let sj = c.yaml(&format!("stats-job {held}"));
    assert_eq!(
        (sj["reserves"].as_str(), sj["timeouts"].as_str()),
        ("2", "1")
    );
    let after = c.put(0, 0, 60, b"after");
    assert!(after > in_paused, "{after} after {in_paused}");
}
