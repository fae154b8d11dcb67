//! Engine tests: one unit test (or more) per transition, each checking the exact replies and
//! the state seen through `stats-job` / `stats-tube` / `stats`, plus a property test that runs
//! random command sequences against a small, independent model of beanstalkd's semantics.
//!
//! Every helper runs `check_invariants()` after each engine call.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use sprout_protocol::command::PutHeader;
use sprout_protocol::reply::{CmdCounts, JobStats, ServerStats, TubeStats};
use sprout_protocol::{Backoff, Command, Exhaust, ListState, PolicySet, Reply};

const S: u64 = SECOND;
/// Start the clock well away from 0 so that "deadline - 1 s" never saturates.
const T0: u64 = 1_000 * SECOND;

// ===== harness ==================================================================================

fn body(id: JobId) -> Bytes {
    Bytes::from(format!("job-{id}"))
}

fn hdr(pri: u32, delay: u32, ttr: u32) -> PutHeader {
    PutHeader {
        pri,
        delay,
        ttr,
        bytes: 0,
    }
}

fn reserved(id: JobId) -> Reply {
    Reply::Reserved { id, body: body(id) }
}

fn found(id: JobId) -> Reply {
    Reply::Found { id, body: body(id) }
}

fn using(name: &str) -> Reply {
    Reply::Using(name.into())
}

fn list(names: &[&str]) -> Reply {
    Reply::List(names.iter().map(|&n| n.into()).collect())
}

fn use_(name: &str) -> Command {
    Command::Use(name.into())
}

fn watch(name: &str) -> Command {
    Command::Watch(name.into())
}

fn ignore(name: &str) -> Command {
    Command::Ignore(name.into())
}

fn pause(name: &str, delay: u32) -> Command {
    Command::PauseTube {
        tube: name.into(),
        delay,
    }
}

fn release(id: JobId, pri: u32, delay: u32) -> Command {
    Command::Release { id, pri, delay }
}

fn bury(id: JobId, pri: u32) -> Command {
    Command::Bury { id, pri }
}

/// `stats-job` of a fresh job: everything zero except what is given.
fn js(id: JobId, tube: &str, state: &'static str, pri: u32, ttr: u64) -> JobStats {
    JobStats {
        id,
        tube: tube.into(),
        state,
        pri,
        age: 0,
        delay: 0,
        ttr,
        time_left: 0,
        file: 0,
        reserves: 0,
        timeouts: 0,
        releases: 0,
        buries: 0,
        kicks: 0,
        origin: None,
    }
}

/// `stats-tube` of an empty, unused tube.
fn ts(name: &str) -> TubeStats {
    TubeStats {
        name: name.into(),
        urgent: 0,
        ready: 0,
        reserved: 0,
        delayed: 0,
        buried: 0,
        total_jobs: 0,
        using: 0,
        watching: 0,
        waiting: 0,
        cmd_delete: 0,
        cmd_pause_tube: 0,
        pause: 0,
        pause_time_left: 0,
        policy: None,
    }
}

struct H {
    e: Engine,
    now: u64,
    out: Deliveries,
}

impl H {
    fn new() -> Self {
        H {
            e: Engine::new(),
            now: T0,
            out: Vec::new(),
        }
    }

    fn check(&self) {
        if let Err(m) = self.e.check_invariants() {
            panic!("engine invariants broken: {m}");
        }
    }

    fn conn(&mut self) -> ConnId {
        let c = self.e.connect();
        self.check();
        c
    }

    fn disconnect(&mut self, c: ConnId) {
        self.e.disconnect(c, self.now, &mut self.out);
        self.check();
    }

    /// A whole put (header and body); returns the reply.
    fn put_reply(&mut self, c: ConnId, pri: u32, delay: u32, ttr: u32) -> Reply {
        let id = self.e.put_header(c);
        self.check();
        let r = self.e.put_body(
            c,
            id,
            hdr(pri, delay, ttr),
            body(id),
            self.now,
            &mut self.out,
        );
        self.check();
        r
    }

    /// A whole put that must succeed; returns the id.
    fn put(&mut self, c: ConnId, pri: u32, delay: u32, ttr: u32) -> JobId {
        let id = self.e.put_header(c);
        self.check();
        let r = self.e.put_body(
            c,
            id,
            hdr(pri, delay, ttr),
            body(id),
            self.now,
            &mut self.out,
        );
        self.check();
        assert_eq!(r, Reply::Inserted(id));
        id
    }

    fn exec(&mut self, c: ConnId, cmd: Command) -> Outcome {
        let o = self.e.execute(c, cmd, self.now, &mut self.out);
        self.check();
        o
    }

    /// A command that must answer at once.
    fn cmd(&mut self, c: ConnId, cmd: Command) -> Reply {
        let what = format!("{cmd:?}");
        match self.exec(c, cmd) {
            Outcome::Reply(r) => r,
            Outcome::Wait => panic!("{what}: expected a reply, got Wait"),
        }
    }

    /// A reserve that must block.
    fn wait(&mut self, c: ConnId, cmd: Command) {
        let what = format!("{cmd:?}");
        assert_eq!(self.exec(c, cmd), Outcome::Wait, "{what}");
        assert!(self.e.is_waiting(c));
    }

    fn tick_at(&mut self, t: u64) {
        assert!(t >= self.now, "time goes forward");
        self.now = t;
        self.e.tick(t, &mut self.out);
        self.check();
        if let Some(w) = self.e.next_wakeup() {
            assert!(w > t, "tick({t}) left work due at {w}");
        }
    }

    fn advance(&mut self, dt: u64) {
        self.tick_at(self.now + dt);
    }

    fn take(&mut self) -> Vec<(ConnId, Reply)> {
        std::mem::take(&mut self.out)
            .into_iter()
            .map(|d| (d.conn, d.reply))
            .collect()
    }

    fn stats(&mut self, c: ConnId) -> ServerStats {
        match self.cmd(c, Command::Stats) {
            Reply::Stats(s) => *s,
            r => panic!("stats: {r:?}"),
        }
    }

    fn sj(&mut self, c: ConnId, id: JobId) -> JobStats {
        match self.cmd(c, Command::StatsJob(id)) {
            Reply::StatsJob(s) => *s,
            r => panic!("stats-job {id}: {r:?}"),
        }
    }

    fn state(&mut self, c: ConnId, id: JobId) -> &'static str {
        match self.cmd(c, Command::StatsJob(id)) {
            Reply::StatsJob(s) => s.state,
            Reply::NotFound => "gone",
            r => panic!("stats-job {id}: {r:?}"),
        }
    }

    fn st(&mut self, c: ConnId, name: &str) -> TubeStats {
        match self.cmd(c, Command::StatsTube(name.into())) {
            Reply::StatsTube(s) => *s,
            r => panic!("stats-tube {name}: {r:?}"),
        }
    }

    /// (urgent, ready, reserved, delayed, buried) from `stats`.
    fn counts(&mut self, c: ConnId) -> (u64, u64, u64, u64, u64) {
        let s = self.stats(c);
        (s.urgent, s.ready, s.reserved, s.delayed, s.buried)
    }
}

// ===== put ======================================================================================

#[test]
fn put_ready_job() {
    let mut h = H::new();
    let c = h.conn();
    assert_eq!(h.put_reply(c, 5, 0, 10), Reply::Inserted(1));
    assert!(h.take().is_empty());
    assert_eq!(h.sj(c, 1), js(1, "default", "ready", 5, 10));
    assert_eq!(
        h.st(c, "default"),
        TubeStats {
            urgent: 1,
            ready: 1,
            total_jobs: 1,
            using: 1,
            watching: 1,
            ..ts("default")
        }
    );
    let s = h.stats(c);
    assert_eq!(
        (s.urgent, s.ready, s.reserved, s.delayed, s.buried),
        (1, 1, 0, 0, 0)
    );
    assert_eq!((s.total_jobs, s.producers, s.workers), (1, 1, 0));
    assert_eq!(h.cmd(c, Command::Peek(1)), found(1));
    assert_eq!(h.e.next_wakeup(), None);
    // Age grows, truncated to seconds.
    h.advance(3 * S + S / 2);
    assert_eq!(h.sj(c, 1).age, 3);
}

#[test]
fn put_into_used_tube() {
    let mut h = H::new();
    let c = h.conn();
    assert_eq!(h.cmd(c, use_("foo")), using("foo"));
    let id = h.put(c, 2000, 0, 1);
    assert_eq!(h.sj(c, id), js(id, "foo", "ready", 2000, 1));
    let st = h.st(c, "foo");
    assert_eq!((st.ready, st.urgent, st.total_jobs, st.using), (1, 0, 1, 1));
    assert_eq!(h.st(c, "default").total_jobs, 0);
}

#[test]
fn put_delayed_becomes_ready_exactly_at_its_time() {
    let mut h = H::new();
    let c = h.conn();
    let id = h.put(c, 7, 5, 10);
    assert_eq!(
        h.sj(c, id),
        JobStats {
            delay: 5,
            time_left: 5,
            ..js(id, "default", "delayed", 7, 10)
        }
    );
    assert_eq!(h.counts(c), (0, 0, 0, 1, 0));
    assert_eq!(h.st(c, "default").delayed, 1);
    assert_eq!(h.e.next_wakeup(), Some(T0 + 5 * S));
    // A reserve-with-timeout 0 does not see it.
    assert_eq!(h.cmd(c, Command::ReserveWithTimeout(0)), Reply::TimedOut);

    h.tick_at(T0 + 5 * S - 1);
    assert_eq!(h.state(c, id), "delayed");
    assert_eq!(h.sj(c, id).time_left, 0); // 1 ns left, truncated
    assert_eq!(h.counts(c), (0, 0, 0, 1, 0));

    h.tick_at(T0 + 5 * S);
    assert!(h.take().is_empty());
    assert_eq!(
        h.sj(c, id),
        JobStats {
            delay: 5,
            age: 5,
            ..js(id, "default", "ready", 7, 10)
        }
    );
    assert_eq!(h.counts(c), (1, 1, 0, 0, 0));
    assert_eq!(h.e.next_wakeup(), None);
    assert_eq!(h.cmd(c, Command::Reserve), reserved(id));
}

#[test]
fn delayed_job_is_handed_to_a_waiter_when_it_becomes_ready() {
    let mut h = H::new();
    let p = h.conn();
    let w = h.conn();
    let id = h.put(p, 0, 2, 10);
    h.wait(w, Command::Reserve);
    h.tick_at(T0 + 2 * S - 1);
    assert!(h.take().is_empty());
    h.tick_at(T0 + 2 * S);
    assert_eq!(h.take(), vec![(w, reserved(id))]);
    assert_eq!(h.sj(p, id).reserves, 1);
    assert!(!h.e.is_waiting(w));
}

#[test]
fn ttr_zero_becomes_one_second() {
    let mut h = H::new();
    let c = h.conn();
    let id = h.put(c, 0, 0, 0);
    assert_eq!(h.sj(c, id).ttr, 1);
    assert_eq!(h.cmd(c, Command::Reserve), reserved(id));
    assert_eq!(h.sj(c, id).time_left, 1);
    assert_eq!(h.e.next_wakeup(), Some(T0 + S));
    h.tick_at(T0 + S - 1);
    assert_eq!(h.state(c, id), "reserved");
    h.tick_at(T0 + S);
    assert_eq!(h.state(c, id), "ready");
    assert_eq!(h.sj(c, id).timeouts, 1);
}

#[test]
fn ids_start_at_one_and_are_used_up_by_put_header() {
    let mut h = H::new();
    let c = h.conn();
    // Header only: the body never comes (EXPECTED_CRLF, dropped connection).
    assert_eq!(h.e.put_header(c), 1);
    h.check();
    assert_eq!(h.put(c, 0, 0, 1), 2);
    assert_eq!(h.e.put_header(c), 3);
    assert_eq!(h.e.put_header(c), 4);
    h.check();
    assert_eq!(h.put(c, 0, 0, 1), 5);
    for id in [1, 3, 4] {
        assert_eq!(h.cmd(c, Command::Peek(id)), Reply::NotFound);
        assert_eq!(h.cmd(c, Command::StatsJob(id)), Reply::NotFound);
    }
    let s = h.stats(c);
    assert_eq!(s.total_jobs, 2);
    assert_eq!(s.cmd.put, 5);
    assert_eq!(s.producers, 1);
    assert_eq!(h.e.job_count(), 2);
    // A body for a connection that is gone: no job, id still used.
    let d = h.conn();
    let id = h.e.put_header(d);
    assert_eq!(id, 6);
    h.disconnect(d);
    let r =
        h.e.put_body(d, id, hdr(0, 0, 1), body(id), h.now, &mut h.out);
    h.check();
    assert_eq!(r, Reply::InternalError);
    assert_eq!(h.put(c, 0, 0, 1), 7);
    // count_put: a rejected put (JOB_TOO_BIG) counts but takes no id.
    h.e.count_put();
    assert_eq!(h.stats(c).cmd.put, 8);
    assert_eq!(h.put(c, 0, 0, 1), 8);
}

#[test]
fn producer_is_counted_once_per_connection() {
    let mut h = H::new();
    let a = h.conn();
    let b = h.conn();
    h.put(a, 0, 0, 1);
    h.put(a, 0, 0, 1);
    assert_eq!(h.stats(a).producers, 1);
    let _ = h.e.put_header(b); // header alone makes a producer
    assert_eq!(h.stats(a).producers, 2);
    h.disconnect(b);
    assert_eq!(h.stats(a).producers, 1);
}

// ===== reserve ==================================================================================

#[test]
fn ready_order_is_pri_then_id() {
    let mut h = H::new();
    let c = h.conn();
    for pri in [5, 1, 5, 0, 1] {
        h.put(c, pri, 0, 10);
    }
    assert_eq!(h.cmd(c, Command::PeekReady), found(4));
    let got: Vec<Reply> = (0..5).map(|_| h.cmd(c, Command::Reserve)).collect();
    assert_eq!(
        got,
        vec![
            reserved(4),
            reserved(2),
            reserved(5),
            reserved(1),
            reserved(3)
        ]
    );
    assert_eq!(h.counts(c), (0, 0, 5, 0, 0));
    assert_eq!(h.cmd(c, Command::ReserveWithTimeout(0)), Reply::TimedOut);
}

#[test]
fn ready_order_across_watched_tubes_is_global() {
    let mut h = H::new();
    let p = h.conn();
    let w = h.conn();
    h.cmd(p, use_("a"));
    let a3 = h.put(p, 3, 0, 10);
    let a1 = h.put(p, 1, 0, 10);
    h.cmd(p, use_("b"));
    let b2 = h.put(p, 2, 0, 10);
    let b1 = h.put(p, 1, 0, 10);
    h.cmd(p, use_("c")); // not watched by w
    let c0 = h.put(p, 0, 0, 10);
    h.cmd(p, use_("default"));
    let d3 = h.put(p, 3, 0, 10);
    assert_eq!(h.cmd(w, watch("a")), Reply::Watching(2));
    assert_eq!(h.cmd(w, watch("b")), Reply::Watching(3));
    let got: Vec<Reply> = (0..5).map(|_| h.cmd(w, Command::Reserve)).collect();
    assert_eq!(
        got,
        vec![
            reserved(a1),
            reserved(b1),
            reserved(b2),
            reserved(a3),
            reserved(d3)
        ]
    );
    // The job in the unwatched tube is never handed out.
    assert_eq!(h.cmd(w, Command::ReserveWithTimeout(0)), Reply::TimedOut);
    assert_eq!(h.state(w, c0), "ready");
    assert_eq!(h.st(w, "c").ready, 1);
}

#[test]
fn reserve_immediate() {
    let mut h = H::new();
    let c = h.conn();
    let id = h.put(c, 10, 0, 30);
    assert_eq!(h.cmd(c, Command::Reserve), reserved(id));
    assert!(h.take().is_empty());
    assert_eq!(
        h.sj(c, id),
        JobStats {
            time_left: 30,
            reserves: 1,
            ..js(id, "default", "reserved", 10, 30)
        }
    );
    assert_eq!(h.counts(c), (0, 0, 1, 0, 0));
    let st = h.st(c, "default");
    assert_eq!((st.ready, st.reserved, st.urgent), (0, 1, 0));
    let s = h.stats(c);
    assert_eq!((s.workers, s.waiting, s.cmd.reserve), (1, 0, 1));
    assert_eq!(h.e.next_wakeup(), Some(T0 + 30 * S));
}

#[test]
fn reserve_waits_and_is_woken_by_a_put_on_another_connection() {
    let mut h = H::new();
    let w = h.conn();
    let p = h.conn();
    h.wait(w, Command::Reserve);
    let s = h.stats(p);
    assert_eq!((s.waiting, s.workers), (1, 1));
    assert_eq!(h.st(p, "default").waiting, 1);
    // A reserve without timeout and without reservations sets no timer.
    assert_eq!(h.e.next_wakeup(), None);
    h.advance(100 * S);
    assert!(h.take().is_empty());

    let id = h.put(p, 0, 0, 5);
    assert_eq!(h.take(), vec![(w, reserved(id))]);
    assert!(!h.e.is_waiting(w));
    assert_eq!(h.stats(p).waiting, 0);
    assert_eq!(h.st(p, "default").waiting, 0);
    assert_eq!(h.sj(p, id).state, "reserved");
    assert_eq!(h.sj(p, id).reserves, 1);
    // Only one waiter was served; the next put stays ready.
    let id2 = h.put(p, 0, 0, 5);
    assert!(h.take().is_empty());
    assert_eq!(h.state(p, id2), "ready");
    // The waiter holds the first job: it may delete it, the producer may not.
    assert_eq!(h.cmd(p, Command::Delete(id)), Reply::NotFound);
    assert_eq!(h.cmd(w, Command::Delete(id)), Reply::Deleted);
}

#[test]
fn several_waiters_are_served_in_arrival_order() {
    let mut h = H::new();
    let p = h.conn();
    let ws: Vec<ConnId> = (0..4).map(|_| h.conn()).collect();
    // Arrival order differs from connection order.
    for &i in &[2, 0, 3, 1] {
        h.wait(ws[i], Command::Reserve);
    }
    assert_eq!(h.stats(p).waiting, 4);
    let mut got = Vec::new();
    for _ in 0..4 {
        let id = h.put(p, 0, 0, 5);
        got.extend(h.take().into_iter().map(|(c, r)| (c, r, id)));
    }
    let want: Vec<(ConnId, Reply, JobId)> = [2, 0, 3, 1]
        .iter()
        .zip(1..)
        .map(|(&i, id)| (ws[i], reserved(id), id))
        .collect();
    assert_eq!(got, want);
    assert_eq!(h.stats(p).waiting, 0);
}

#[test]
fn waiter_only_gets_jobs_from_watched_tubes() {
    let mut h = H::new();
    let w = h.conn();
    let p = h.conn();
    h.cmd(w, watch("a"));
    assert_eq!(h.cmd(w, ignore("default")), Reply::Watching(1));
    h.wait(w, Command::Reserve);
    assert_eq!(h.st(p, "a").waiting, 1);
    assert_eq!(h.st(p, "default").waiting, 0);
    h.put(p, 0, 0, 5);
    assert!(h.take().is_empty());
    h.cmd(p, use_("a"));
    let id = h.put(p, 0, 0, 5);
    assert_eq!(h.take(), vec![(w, reserved(id))]);
}

#[test]
fn the_best_job_among_waited_tubes_goes_to_a_waiter_of_its_tube() {
    // Two waiters on different tubes; a kick makes jobs ready in both at once.
    let mut h = H::new();
    let p = h.conn();
    let wa = h.conn();
    let wb = h.conn();
    h.cmd(wa, watch("a"));
    h.cmd(wa, ignore("default"));
    h.cmd(wb, watch("b"));
    h.cmd(wb, ignore("default"));
    h.cmd(p, use_("a"));
    let ja = h.put(p, 5, 3, 5);
    h.cmd(p, use_("b"));
    let jb = h.put(p, 1, 3, 5);
    h.wait(wa, Command::Reserve);
    h.wait(wb, Command::Reserve);
    h.tick_at(T0 + 3 * S);
    // Both become ready in one tick: the better (pri 1) job is handed out first.
    assert_eq!(h.take(), vec![(wb, reserved(jb)), (wa, reserved(ja))]);
}

#[test]
fn reserve_with_timeout_zero() {
    let mut h = H::new();
    let c = h.conn();
    assert_eq!(h.cmd(c, Command::ReserveWithTimeout(0)), Reply::TimedOut);
    assert!(!h.e.is_waiting(c));
    assert!(h.take().is_empty());
    let s = h.stats(c);
    assert_eq!(
        (s.waiting, s.workers, s.cmd.reserve_with_timeout),
        (0, 1, 1)
    );
    assert_eq!(h.e.next_wakeup(), None);
    // A later put is not handed to it.
    let id = h.put(c, 0, 0, 5);
    assert!(h.take().is_empty());
    assert_eq!(h.cmd(c, Command::ReserveWithTimeout(0)), reserved(id));
}

#[test]
fn reserve_with_timeout_times_out_exactly_at_t() {
    let mut h = H::new();
    let c = h.conn();
    h.wait(c, Command::ReserveWithTimeout(3));
    assert_eq!(h.stats(c).waiting, 1);
    assert_eq!(h.e.next_wakeup(), Some(T0 + 3 * S));
    h.tick_at(T0 + 3 * S - 1);
    assert!(h.take().is_empty());
    assert!(h.e.is_waiting(c));
    h.tick_at(T0 + 3 * S);
    assert_eq!(h.take(), vec![(c, Reply::TimedOut)]);
    assert!(!h.e.is_waiting(c));
    assert_eq!(h.stats(c).waiting, 0);
    assert_eq!(h.st(c, "default").waiting, 0);
    assert_eq!(h.e.next_wakeup(), None);
    let id = h.put(c, 0, 0, 5);
    assert!(h.take().is_empty());
    assert_eq!(h.state(c, id), "ready");
}

#[test]
fn reserve_with_timeout_served_before_the_timeout() {
    let mut h = H::new();
    let c = h.conn();
    let p = h.conn();
    h.wait(c, Command::ReserveWithTimeout(3));
    h.advance(S);
    let id = h.put(p, 0, 0, 5);
    assert_eq!(h.take(), vec![(c, reserved(id))]);
    // The timeout is gone: only the reservation's deadline remains.
    assert_eq!(h.e.next_wakeup(), Some(T0 + 6 * S));
    h.tick_at(T0 + 3 * S);
    assert!(h.take().is_empty());
}

// ===== DEADLINE_SOON ============================================================================

#[test]
fn deadline_soon_at_once_when_reservation_ends_within_a_second() {
    let mut h = H::new();
    let c = h.conn();
    let id = h.put(c, 0, 0, 1);
    assert_eq!(h.cmd(c, Command::Reserve), reserved(id));
    assert_eq!(h.cmd(c, Command::Reserve), Reply::DeadlineSoon);
    assert_eq!(
        h.cmd(c, Command::ReserveWithTimeout(5)),
        Reply::DeadlineSoon
    );
    assert_eq!(
        h.cmd(c, Command::ReserveWithTimeout(0)),
        Reply::DeadlineSoon
    );
    assert!(!h.e.is_waiting(c));
    // Nothing changed: the job is still reserved and times out at its deadline.
    assert_eq!(h.sj(c, id).state, "reserved");
    assert_eq!(h.sj(c, id).reserves, 1);
    assert_eq!(h.stats(c).waiting, 0);
    h.tick_at(T0 + S);
    assert!(h.take().is_empty());
    assert_eq!(h.state(c, id), "ready");
}

#[test]
fn deadline_soon_boundary_is_deadline_minus_one_second() {
    let mut h = H::new();
    let c = h.conn();
    let p = h.conn();
    let id = h.put(p, 0, 0, 3);
    assert_eq!(h.cmd(c, Command::Reserve), reserved(id));
    h.tick_at(T0 + 2 * S - 1);
    // Not yet soon: the reserve waits (timer at deadline - 1 s).
    h.wait(c, Command::ReserveWithTimeout(10));
    assert_eq!(h.e.next_wakeup(), Some(T0 + 2 * S));
    assert!(h.e.cancel_wait(c));
    h.tick_at(T0 + 2 * S);
    assert_eq!(h.cmd(c, Command::Reserve), Reply::DeadlineSoon);
}

#[test]
fn deadline_soon_while_waiting_fires_at_deadline_minus_one_second() {
    let mut h = H::new();
    let c = h.conn();
    let id = h.put(c, 0, 0, 3);
    assert_eq!(h.cmd(c, Command::Reserve), reserved(id));
    h.wait(c, Command::Reserve);
    assert_eq!(h.e.next_wakeup(), Some(T0 + 2 * S));
    h.tick_at(T0 + 2 * S - 1);
    assert!(h.take().is_empty());
    h.tick_at(T0 + 2 * S);
    assert_eq!(h.take(), vec![(c, Reply::DeadlineSoon)]);
    assert!(!h.e.is_waiting(c));
    assert_eq!(h.stats(c).waiting, 0);
    assert_eq!(h.state(c, id), "reserved");
    // Asking again answers at once.
    assert_eq!(h.cmd(c, Command::Reserve), Reply::DeadlineSoon);
    assert_eq!(h.e.next_wakeup(), Some(T0 + 3 * S));
    h.tick_at(T0 + 3 * S);
    assert!(h.take().is_empty());
    let j = h.sj(c, id);
    assert_eq!((j.state, j.timeouts), ("ready", 1));
}

#[test]
fn reserve_with_timeout_before_deadline_soon_times_out() {
    let mut h = H::new();
    let c = h.conn();
    let id = h.put(c, 0, 0, 3);
    assert_eq!(h.cmd(c, Command::Reserve), reserved(id));
    h.wait(c, Command::ReserveWithTimeout(1));
    assert_eq!(h.e.next_wakeup(), Some(T0 + S));
    h.tick_at(T0 + S);
    assert_eq!(h.take(), vec![(c, Reply::TimedOut)]);
    // With a longer timeout, DEADLINE_SOON comes first.
    h.wait(c, Command::ReserveWithTimeout(10));
    assert_eq!(h.e.next_wakeup(), Some(T0 + 2 * S));
    h.tick_at(T0 + 2 * S);
    assert_eq!(h.take(), vec![(c, Reply::DeadlineSoon)]);
}

#[test]
fn timeout_and_deadline_soon_at_the_same_instant_is_deadline_soon() {
    let mut h = H::new();
    let c = h.conn();
    let id = h.put(c, 0, 0, 3);
    assert_eq!(h.cmd(c, Command::Reserve), reserved(id));
    h.wait(c, Command::ReserveWithTimeout(2));
    h.tick_at(T0 + 2 * S);
    assert_eq!(h.take(), vec![(c, Reply::DeadlineSoon)]);
}

#[test]
fn a_ready_job_wins_over_deadline_soon() {
    let mut h = H::new();
    let c = h.conn();
    let j1 = h.put(c, 0, 0, 1);
    let j2 = h.put(c, 0, 0, 1);
    assert_eq!(h.cmd(c, Command::Reserve), reserved(j1));
    assert_eq!(h.cmd(c, Command::Reserve), reserved(j2));
    assert_eq!(h.cmd(c, Command::Reserve), Reply::DeadlineSoon);
}

#[test]
fn a_job_put_while_waiting_beats_the_deadline_soon_timer() {
    let mut h = H::new();
    let c = h.conn();
    let p = h.conn();
    let j1 = h.put(p, 0, 0, 3);
    assert_eq!(h.cmd(c, Command::Reserve), reserved(j1));
    h.wait(c, Command::Reserve);
    h.advance(S);
    let j2 = h.put(p, 0, 0, 10);
    assert_eq!(h.take(), vec![(c, reserved(j2))]);
    h.tick_at(T0 + 2 * S);
    assert!(
        h.take().is_empty(),
        "no DEADLINE_SOON for a conn that stopped waiting"
    );
    assert_eq!(h.e.next_wakeup(), Some(T0 + 3 * S));
}

#[test]
fn deadline_soon_ignores_pause_when_looking_for_ready_jobs() {
    // beanstalkd's conn_ready ignores pause: a ready job in a paused watched tube stops the
    // immediate DEADLINE_SOON, the reserve waits, and the due timer answers DEADLINE_SOON.
    let mut h = H::new();
    let c = h.conn();
    let p = h.conn();
    let j1 = h.put(p, 0, 0, 1);
    assert_eq!(h.cmd(c, Command::Reserve), reserved(j1));
    let j2 = h.put(p, 0, 0, 10);
    assert_eq!(h.cmd(p, pause("default", 60)), Reply::Paused);
    h.wait(c, Command::Reserve);
    let w = h.e.next_wakeup();
    assert_eq!(w, Some(T0));
    h.tick_at(T0);
    assert_eq!(h.take(), vec![(c, Reply::DeadlineSoon)]);
    assert_eq!(h.state(c, j2), "ready");
}

#[test]
fn reserve_with_timeout_zero_prefers_deadline_soon() {
    let mut h = H::new();
    let c = h.conn();
    let p = h.conn();
    let j1 = h.put(p, 0, 0, 1);
    assert_eq!(h.cmd(c, Command::Reserve), reserved(j1));
    h.put(p, 0, 0, 10);
    h.cmd(p, pause("default", 60));
    assert_eq!(
        h.cmd(c, Command::ReserveWithTimeout(0)),
        Reply::DeadlineSoon
    );
}

// ===== TTR expiry ===============================================================================

#[test]
fn ttr_expiry_returns_the_job_to_ready() {
    let mut h = H::new();
    let c = h.conn();
    let id = h.put(c, 100, 0, 2);
    assert_eq!(h.cmd(c, Command::Reserve), reserved(id));
    assert_eq!(h.e.next_wakeup(), Some(T0 + 2 * S));
    h.tick_at(T0 + 2 * S - 1);
    assert_eq!(h.state(c, id), "reserved");
    h.tick_at(T0 + 2 * S);
    assert!(h.take().is_empty());
    assert_eq!(
        h.sj(c, id),
        JobStats {
            age: 2,
            reserves: 1,
            timeouts: 1,
            ..js(id, "default", "ready", 100, 2)
        }
    );
    let s = h.stats(c);
    assert_eq!(
        (s.job_timeouts, s.ready, s.urgent, s.reserved),
        (1, 1, 1, 0)
    );
    assert_eq!(h.st(c, "default").reserved, 0);
    // The old holder has lost it.
    // It is an ordinary ready job again: anyone may delete it.
    assert_eq!(h.cmd(c, Command::Delete(id)), Reply::Deleted);
}

#[test]
fn ttr_expiry_hands_the_job_to_a_waiter() {
    let mut h = H::new();
    let c1 = h.conn();
    let c2 = h.conn();
    let id = h.put(c1, 0, 0, 2);
    assert_eq!(h.cmd(c1, Command::Reserve), reserved(id));
    h.wait(c2, Command::Reserve);
    h.tick_at(T0 + 2 * S);
    assert_eq!(h.take(), vec![(c2, reserved(id))]);
    let j = h.sj(c1, id);
    assert_eq!(
        (j.state, j.reserves, j.timeouts, j.time_left),
        ("reserved", 2, 1, 2)
    );
    assert_eq!(h.stats(c1).job_timeouts, 1);
    // Only the new holder may act on it.
    assert_eq!(h.cmd(c1, release(id, 0, 0)), Reply::NotFound);
    assert_eq!(h.cmd(c1, Command::Touch(id)), Reply::NotFound);
    assert_eq!(h.cmd(c1, bury(id, 0)), Reply::NotFound);
    assert_eq!(h.cmd(c1, Command::Delete(id)), Reply::NotFound);
    assert_eq!(h.cmd(c2, Command::Delete(id)), Reply::Deleted);
}

#[test]
fn several_reservations_expire_in_deadline_order() {
    let mut h = H::new();
    let c = h.conn();
    let w = h.conn();
    let a = h.put(c, 5, 0, 3);
    let b = h.put(c, 1, 0, 2);
    assert_eq!(h.cmd(c, Command::Reserve), reserved(b));
    assert_eq!(h.cmd(c, Command::Reserve), reserved(a));
    h.wait(w, Command::Reserve);
    // A late tick: both expire; the earlier deadline (b) goes to the waiter.
    h.tick_at(T0 + 5 * S);
    assert_eq!(h.take(), vec![(w, reserved(b))]);
    assert_eq!(h.state(c, a), "ready");
    assert_eq!(h.stats(c).job_timeouts, 2);
}

// ===== touch ====================================================================================

#[test]
fn touch_restarts_the_ttr() {
    let mut h = H::new();
    let c = h.conn();
    let other = h.conn();
    let id = h.put(c, 0, 0, 5);
    assert_eq!(h.cmd(c, Command::Touch(id)), Reply::NotFound); // ready
    assert_eq!(h.cmd(c, Command::Reserve), reserved(id));
    h.advance(3 * S);
    assert_eq!(h.sj(c, id).time_left, 2);
    assert_eq!(h.cmd(c, Command::Touch(id)), Reply::Touched);
    assert_eq!(h.sj(c, id).time_left, 5);
    assert_eq!(h.e.next_wakeup(), Some(T0 + 8 * S));
    assert_eq!(h.cmd(other, Command::Touch(id)), Reply::NotFound);
    assert_eq!(h.cmd(c, Command::Touch(999)), Reply::NotFound);
    h.tick_at(T0 + 5 * S);
    assert_eq!(h.state(c, id), "reserved");
    h.tick_at(T0 + 8 * S - 1);
    assert_eq!(h.state(c, id), "reserved");
    h.tick_at(T0 + 8 * S);
    assert_eq!(h.state(c, id), "ready");
    assert_eq!(h.stats(c).cmd.touch, 4);
}

#[test]
fn touch_moves_the_deadline_soon_point() {
    let mut h = H::new();
    let c = h.conn();
    let id = h.put(c, 0, 0, 3);
    assert_eq!(h.cmd(c, Command::Reserve), reserved(id));
    h.advance(2 * S);
    assert_eq!(h.cmd(c, Command::Reserve), Reply::DeadlineSoon);
    assert_eq!(h.cmd(c, Command::Touch(id)), Reply::Touched);
    h.wait(c, Command::Reserve);
    assert_eq!(h.e.next_wakeup(), Some(T0 + 4 * S));
    h.tick_at(T0 + 4 * S);
    assert_eq!(h.take(), vec![(c, Reply::DeadlineSoon)]);
}

// ===== release ==================================================================================

#[test]
fn release_changes_pri_and_counts() {
    let mut h = H::new();
    let c = h.conn();
    let other = h.conn();
    let id = h.put(c, 10, 0, 5);
    assert_eq!(h.cmd(c, release(id, 0, 0)), Reply::NotFound); // ready
    assert_eq!(h.cmd(c, Command::Reserve), reserved(id));
    assert_eq!(h.cmd(other, release(id, 0, 0)), Reply::NotFound);
    assert_eq!(h.counts(c), (0, 0, 1, 0, 0));
    assert_eq!(h.cmd(c, release(id, 2000, 0)), Reply::Released);
    assert_eq!(
        h.sj(c, id),
        JobStats {
            reserves: 1,
            releases: 1,
            ..js(id, "default", "ready", 2000, 5)
        }
    );
    assert_eq!(h.counts(c), (0, 1, 0, 0, 0));
    assert_eq!(h.cmd(c, release(id, 1, 0)), Reply::NotFound);
    assert_eq!(h.cmd(c, release(999, 1, 0)), Reply::NotFound);
    // Release to an urgent pri counts as urgent again.
    assert_eq!(h.cmd(c, Command::Reserve), reserved(id));
    assert_eq!(h.cmd(c, release(id, 1023, 0)), Reply::Released);
    assert_eq!(h.counts(c), (1, 1, 0, 0, 0));
    assert_eq!(h.st(c, "default").urgent, 1);
    assert_eq!(h.stats(c).cmd.release, 6);
    assert_eq!(h.e.next_wakeup(), None);
}

#[test]
fn release_with_delay_makes_the_job_delayed() {
    let mut h = H::new();
    let c = h.conn();
    let id = h.put(c, 10, 0, 5);
    assert_eq!(h.cmd(c, Command::Reserve), reserved(id));
    assert_eq!(h.cmd(c, release(id, 3, 2)), Reply::Released);
    assert_eq!(
        h.sj(c, id),
        JobStats {
            delay: 2,
            time_left: 2,
            reserves: 1,
            releases: 1,
            ..js(id, "default", "delayed", 3, 5)
        }
    );
    assert_eq!(h.counts(c), (0, 0, 0, 1, 0));
    assert_eq!(h.e.next_wakeup(), Some(T0 + 2 * S));
    h.tick_at(T0 + 2 * S - 1);
    assert_eq!(h.state(c, id), "delayed");
    h.tick_at(T0 + 2 * S);
    assert_eq!(h.state(c, id), "ready");
    assert_eq!(h.counts(c), (1, 1, 0, 0, 0));
    // A later release with no delay resets the delay field.
    assert_eq!(h.cmd(c, Command::Reserve), reserved(id));
    assert_eq!(h.cmd(c, release(id, 3, 0)), Reply::Released);
    assert_eq!(h.sj(c, id).delay, 0);
}

#[test]
fn release_hands_the_job_to_a_waiter() {
    let mut h = H::new();
    let c = h.conn();
    let w = h.conn();
    let id = h.put(c, 10, 0, 5);
    assert_eq!(h.cmd(c, Command::Reserve), reserved(id));
    h.wait(w, Command::Reserve);
    assert_eq!(h.cmd(c, release(id, 10, 0)), Reply::Released);
    assert_eq!(h.take(), vec![(w, reserved(id))]);
    assert_eq!(h.sj(c, id).reserves, 2);
}

// ===== bury =====================================================================================

#[test]
fn bury_keeps_fifo_order_and_counts() {
    let mut h = H::new();
    let c = h.conn();
    let other = h.conn();
    let ids: Vec<JobId> = (0..3).map(|_| h.put(c, 5, 0, 5)).collect();
    assert_eq!(h.cmd(c, bury(ids[0], 0)), Reply::NotFound); // ready
    for _ in 0..3 {
        h.cmd(c, Command::Reserve);
    }
    assert_eq!(h.cmd(other, bury(ids[1], 0)), Reply::NotFound);
    // Bury in the order 2, 1, 3 with new priorities.
    assert_eq!(h.cmd(c, bury(ids[1], 7)), Reply::Buried);
    assert_eq!(h.cmd(c, bury(ids[0], 1)), Reply::Buried);
    assert_eq!(h.cmd(c, bury(ids[2], 9)), Reply::Buried);
    assert_eq!(h.cmd(c, bury(ids[2], 9)), Reply::NotFound);
    assert_eq!(
        h.sj(c, ids[1]),
        JobStats {
            reserves: 1,
            buries: 1,
            ..js(ids[1], "default", "buried", 7, 5)
        }
    );
    assert_eq!(h.counts(c), (0, 0, 0, 0, 3));
    assert_eq!(h.st(c, "default").buried, 3);
    assert_eq!(h.e.next_wakeup(), None);
    // Oldest buried first, whatever the pri.
    assert_eq!(h.cmd(c, Command::PeekBuried), found(ids[1]));
    assert_eq!(h.cmd(c, Command::Kick(1)), Reply::Kicked(1));
    assert_eq!(h.state(c, ids[1]), "ready");
    assert_eq!(h.cmd(c, Command::PeekBuried), found(ids[0]));
    assert_eq!(h.cmd(c, Command::Kick(1)), Reply::Kicked(1));
    assert_eq!(h.cmd(c, Command::PeekBuried), found(ids[2]));
    // Re-buried jobs go to the back.
    assert_eq!(h.cmd(c, Command::Reserve), reserved(ids[0]));
    assert_eq!(h.cmd(c, bury(ids[0], 1)), Reply::Buried);
    assert_eq!(h.cmd(c, Command::PeekBuried), found(ids[2]));
    assert_eq!(h.sj(c, ids[0]).buries, 2);
    assert_eq!(h.stats(c).cmd.bury, 7);
}

// ===== delete ===================================================================================

#[test]
fn delete_in_every_state() {
    let mut h = H::new();
    let c = h.conn();
    let other = h.conn();
    let ready = h.put(c, 0, 0, 5);
    let mine = h.put(c, 1, 0, 5);
    let theirs = h.put(c, 2, 0, 5);
    let buried = h.put(c, 3, 0, 5);
    let delayed = h.put(c, 4, 9, 5);
    h.cmd(c, Command::ReserveJob(mine));
    h.cmd(other, Command::ReserveJob(theirs));
    h.cmd(c, Command::ReserveJob(buried));
    assert_eq!(h.cmd(c, bury(buried, 3)), Reply::Buried);
    assert_eq!(h.counts(c), (1, 1, 2, 1, 1));

    assert_eq!(h.cmd(c, Command::Delete(theirs)), Reply::NotFound);
    assert_eq!(h.state(c, theirs), "reserved");
    assert_eq!(h.cmd(c, Command::Delete(mine)), Reply::Deleted);
    assert_eq!(h.cmd(c, Command::Delete(ready)), Reply::Deleted);
    assert_eq!(h.cmd(c, Command::Delete(buried)), Reply::Deleted);
    assert_eq!(h.cmd(c, Command::Delete(delayed)), Reply::Deleted);
    assert_eq!(h.cmd(c, Command::Delete(delayed)), Reply::NotFound);
    assert_eq!(h.cmd(c, Command::Delete(999)), Reply::NotFound);
    for id in [mine, ready, buried, delayed] {
        assert_eq!(h.cmd(c, Command::Peek(id)), Reply::NotFound);
    }
    assert_eq!(h.counts(c), (0, 0, 1, 0, 0));
    assert_eq!(h.e.job_count(), 1);
    // The delayed job's timer is gone; only the reservation remains.
    assert_eq!(h.e.next_wakeup(), Some(T0 + 5 * S));
    let st = h.st(c, "default");
    assert_eq!((st.cmd_delete, st.total_jobs, st.reserved), (4, 5, 1));
    assert_eq!(h.stats(c).cmd.delete, 7);
    assert_eq!(h.cmd(other, Command::Delete(theirs)), Reply::Deleted);
    assert_eq!(h.e.next_wakeup(), None);
}

#[test]
fn delete_works_across_tubes() {
    let mut h = H::new();
    let c = h.conn();
    let other = h.conn();
    h.cmd(c, use_("x"));
    let id = h.put(c, 0, 0, 5);
    h.cmd(c, use_("default"));
    // "x" lives on because of its job.
    assert_eq!(h.cmd(other, Command::ListTubes), list(&["default", "x"]));
    assert_eq!(h.cmd(other, Command::Delete(id)), Reply::Deleted);
    // ... and dies with it.
    assert_eq!(h.cmd(other, Command::ListTubes), list(&["default"]));
    assert_eq!(
        h.cmd(other, Command::StatsTube("x".into())),
        Reply::NotFound
    );
}

// ===== kick / kick-job ==========================================================================

#[test]
fn kick_buried_before_delayed_never_both() {
    let mut h = H::new();
    let c = h.conn();
    let b1 = h.put(c, 0, 0, 5);
    let b2 = h.put(c, 0, 0, 5);
    let d = h.put(c, 0, 10, 5);
    for id in [b1, b2] {
        h.cmd(c, Command::ReserveJob(id));
        h.cmd(c, bury(id, 0));
    }
    assert_eq!(h.cmd(c, Command::Kick(10)), Reply::Kicked(2));
    assert_eq!(h.counts(c), (2, 2, 0, 1, 0));
    assert_eq!(h.cmd(c, Command::Kick(10)), Reply::Kicked(1));
    assert_eq!(h.state(c, d), "ready");
    let j = h.sj(c, d);
    assert_eq!(
        (j.kicks, j.delay),
        (1, 10),
        "kick leaves the delay field alone"
    );
    assert_eq!(h.sj(c, b1).kicks, 1);
    assert_eq!(h.cmd(c, Command::Kick(10)), Reply::Kicked(0));
    assert_eq!(h.e.next_wakeup(), None);
    assert_eq!(h.stats(c).cmd.kick, 3);
}

#[test]
fn kick_is_bounded_by_n_and_goes_in_order() {
    let mut h = H::new();
    let c = h.conn();
    let d3 = h.put(c, 0, 3, 5);
    let d2a = h.put(c, 0, 2, 5);
    let d2b = h.put(c, 0, 2, 5);
    assert_eq!(h.cmd(c, Command::PeekDelayed), found(d2a));
    assert_eq!(h.cmd(c, Command::Kick(1)), Reply::Kicked(1));
    assert_eq!(h.state(c, d2a), "ready");
    assert_eq!(h.state(c, d2b), "delayed");
    assert_eq!(h.state(c, d3), "delayed");
    assert_eq!(h.cmd(c, Command::Kick(0)), Reply::Kicked(0));
    assert_eq!(h.cmd(c, Command::Kick(1)), Reply::Kicked(1));
    assert_eq!(h.state(c, d2b), "ready");
    assert_eq!(h.e.next_wakeup(), Some(T0 + 3 * S));
    assert_eq!(h.cmd(c, Command::Kick(u32::MAX)), Reply::Kicked(1));
    assert_eq!(h.e.next_wakeup(), None);
}

#[test]
fn kick_only_touches_the_used_tube() {
    let mut h = H::new();
    let c = h.conn();
    h.cmd(c, use_("a"));
    let id = h.put(c, 0, 0, 5);
    h.cmd(c, Command::ReserveJob(id));
    h.cmd(c, bury(id, 0));
    let d = h.put(c, 0, 5, 5);
    h.cmd(c, use_("default"));
    h.cmd(c, watch("a"));
    assert_eq!(h.cmd(c, Command::Kick(10)), Reply::Kicked(0));
    assert_eq!(h.state(c, id), "buried");
    assert_eq!(h.state(c, d), "delayed");
    h.cmd(c, use_("a"));
    assert_eq!(h.cmd(c, Command::Kick(10)), Reply::Kicked(1));
    assert_eq!(h.state(c, id), "ready");
}

#[test]
fn kick_wakes_a_waiter() {
    let mut h = H::new();
    let c = h.conn();
    let w = h.conn();
    let id = h.put(c, 0, 0, 5);
    h.cmd(c, Command::ReserveJob(id));
    h.cmd(c, bury(id, 0));
    h.wait(w, Command::Reserve);
    assert_eq!(h.cmd(c, Command::Kick(1)), Reply::Kicked(1));
    assert_eq!(h.take(), vec![(w, reserved(id))]);
}

#[test]
fn kick_job_in_any_tube() {
    let mut h = H::new();
    let c = h.conn();
    let other = h.conn();
    h.cmd(c, use_("a"));
    let b = h.put(c, 0, 0, 5);
    let d = h.put(c, 0, 7, 5);
    let r = h.put(c, 0, 0, 5);
    let ready = h.put(c, 0, 0, 5);
    h.cmd(c, Command::ReserveJob(b));
    h.cmd(c, bury(b, 0));
    h.cmd(c, Command::ReserveJob(r));
    // `other` uses and watches only default.
    assert_eq!(h.cmd(other, Command::KickJob(b)), Reply::KickedJob);
    assert_eq!(h.sj(other, b).kicks, 1);
    assert_eq!(h.state(other, b), "ready");
    assert_eq!(h.cmd(other, Command::KickJob(d)), Reply::KickedJob);
    let j = h.sj(other, d);
    assert_eq!((j.state, j.kicks, j.delay), ("ready", 1, 7));
    assert_eq!(h.e.next_wakeup(), Some(T0 + 5 * S)); // only r's deadline
    assert_eq!(h.cmd(other, Command::KickJob(ready)), Reply::NotFound);
    assert_eq!(h.cmd(other, Command::KickJob(r)), Reply::NotFound);
    assert_eq!(h.cmd(c, Command::KickJob(r)), Reply::NotFound);
    assert_eq!(h.cmd(other, Command::KickJob(b)), Reply::NotFound);
    assert_eq!(h.cmd(other, Command::KickJob(999)), Reply::NotFound);
    assert_eq!(h.stats(c).cmd.kick_job, 7);
}

#[test]
fn kick_job_wakes_a_waiter() {
    let mut h = H::new();
    let c = h.conn();
    let w = h.conn();
    let d = h.put(c, 0, 100, 5);
    h.wait(w, Command::Reserve);
    assert_eq!(h.cmd(c, Command::KickJob(d)), Reply::KickedJob);
    assert_eq!(h.take(), vec![(w, reserved(d))]);
}

// ===== peek =====================================================================================

#[test]
fn peek_family() {
    let mut h = H::new();
    let c = h.conn();
    let other = h.conn();
    for cmd in [
        Command::PeekReady,
        Command::PeekDelayed,
        Command::PeekBuried,
        Command::Peek(1),
    ] {
        assert_eq!(h.cmd(c, cmd), Reply::NotFound);
    }
    let r5 = h.put(c, 5, 0, 5);
    let r1 = h.put(c, 1, 0, 5);
    let r1b = h.put(c, 1, 0, 5);
    let d3 = h.put(c, 0, 3, 5);
    let d2 = h.put(c, 0, 2, 5);
    let b1 = h.put(c, 9, 0, 5);
    let b2 = h.put(c, 0, 0, 5);
    h.cmd(other, Command::ReserveJob(b1));
    h.cmd(other, bury(b1, 9));
    h.cmd(other, Command::ReserveJob(b2));
    h.cmd(other, bury(b2, 0));
    let held = h.put(c, 0, 0, 5);
    h.cmd(other, Command::ReserveJob(held));
    assert_eq!(h.cmd(c, Command::PeekReady), found(r1));
    assert_eq!(h.cmd(c, Command::PeekDelayed), found(d2));
    assert_eq!(h.cmd(c, Command::PeekBuried), found(b1));
    // peek <id> sees everything, even jobs reserved by others.
    for id in [r5, r1, r1b, d3, d2, b1, b2, held] {
        assert_eq!(h.cmd(c, Command::Peek(id)), found(id));
    }
    // Peeks change nothing.
    assert_eq!(h.counts(c), (3, 3, 1, 2, 2));
    // Only the used tube.
    h.cmd(c, use_("empty"));
    for cmd in [
        Command::PeekReady,
        Command::PeekDelayed,
        Command::PeekBuried,
    ] {
        assert_eq!(h.cmd(c, cmd), Reply::NotFound);
    }
    assert_eq!(h.cmd(c, Command::Peek(r5)), found(r5));
    // peek-ready ignores pause.
    h.cmd(c, use_("default"));
    h.cmd(c, pause("default", 10));
    assert_eq!(h.cmd(c, Command::PeekReady), found(r1));
    let s = h.stats(c).cmd;
    assert_eq!(
        (s.peek, s.peek_ready, s.peek_delayed, s.peek_buried),
        (10, 4, 3, 3)
    );
}

// ===== reserve-job ==============================================================================

#[test]
fn reserve_job_takes_ready_buried_delayed_from_any_tube() {
    let mut h = H::new();
    let c = h.conn();
    let other = h.conn();
    h.cmd(other, use_("x"));
    let ready = h.put(other, 3, 0, 5);
    let delayed = h.put(other, 3, 30, 4);
    let buried = h.put(other, 3, 0, 5);
    h.cmd(other, Command::ReserveJob(buried));
    h.cmd(other, bury(buried, 3));
    h.cmd(other, pause("x", 100));
    // c watches only default, x is paused: reserve-job does not care.
    assert_eq!(h.cmd(c, Command::ReserveJob(ready)), reserved(ready));
    assert_eq!(h.cmd(c, Command::ReserveJob(buried)), reserved(buried));
    assert_eq!(h.cmd(c, Command::ReserveJob(delayed)), reserved(delayed));
    let j = h.sj(c, delayed);
    assert_eq!(
        (j.state, j.reserves, j.time_left, j.delay),
        ("reserved", 1, 4, 30)
    );
    assert_eq!(h.sj(c, buried).reserves, 2);
    assert_eq!(h.counts(c), (0, 0, 3, 0, 0));
    assert_eq!(h.st(c, "x").reserved, 3);
    // Reserved by anyone: NOT_FOUND.
    assert_eq!(h.cmd(c, Command::ReserveJob(ready)), Reply::NotFound);
    assert_eq!(h.cmd(other, Command::ReserveJob(ready)), Reply::NotFound);
    assert_eq!(h.cmd(other, Command::ReserveJob(999)), Reply::NotFound);
    assert_eq!(h.e.next_wakeup(), Some(T0 + 4 * S));
    // The formerly delayed job times out into ready, not delayed.
    h.tick_at(T0 + 4 * S);
    let j = h.sj(c, delayed);
    assert_eq!((j.state, j.timeouts), ("ready", 1));
    let s = h.stats(c);
    assert_eq!((s.workers, s.cmd.reserve_job), (2, 7));
    // The conn's own jobs are released by it as usual.
    assert_eq!(h.cmd(c, release(ready, 3, 0)), Reply::Released);
}

#[test]
fn reserve_job_with_deadline_soon_does_not_check_it() {
    let mut h = H::new();
    let c = h.conn();
    let a = h.put(c, 0, 0, 1);
    let b = h.put(c, 0, 0, 1);
    assert_eq!(h.cmd(c, Command::ReserveJob(a)), reserved(a));
    assert_eq!(h.cmd(c, Command::ReserveJob(b)), reserved(b));
}

// ===== use / watch / ignore =====================================================================

#[test]
fn use_watch_ignore() {
    let mut h = H::new();
    let c = h.conn();
    assert_eq!(h.cmd(c, Command::ListTubeUsed), using("default"));
    assert_eq!(h.cmd(c, Command::ListTubesWatched), list(&["default"]));
    assert_eq!(h.cmd(c, use_("u")), using("u"));
    assert_eq!(h.cmd(c, Command::ListTubeUsed), using("u"));
    assert_eq!(h.st(c, "u").using, 1);
    assert_eq!(h.st(c, "default").using, 0);

    assert_eq!(h.cmd(c, watch("a")), Reply::Watching(2));
    assert_eq!(h.cmd(c, watch("a")), Reply::Watching(2), "idempotent");
    assert_eq!(h.st(c, "a").watching, 1);
    assert_eq!(h.cmd(c, watch("b")), Reply::Watching(3));
    assert_eq!(h.cmd(c, watch("c")), Reply::Watching(4));
    assert_eq!(
        h.cmd(c, Command::ListTubesWatched),
        list(&["default", "a", "b", "c"])
    );
    // Ignore swaps the last watched tube into the hole.
    assert_eq!(h.cmd(c, ignore("default")), Reply::Watching(3));
    assert_eq!(h.cmd(c, Command::ListTubesWatched), list(&["c", "a", "b"]));
    assert_eq!(h.st(c, "default").watching, 0);
    // Ignoring a tube not watched (existing or not) leaves the count alone and makes no tube.
    assert_eq!(h.cmd(c, ignore("default")), Reply::Watching(3));
    assert_eq!(h.cmd(c, ignore("nosuch")), Reply::Watching(3));
    assert_eq!(
        h.cmd(c, Command::StatsTube("nosuch".into())),
        Reply::NotFound
    );
    assert_eq!(h.cmd(c, ignore("a")), Reply::Watching(2));
    assert_eq!(h.cmd(c, ignore("c")), Reply::Watching(1));
    assert_eq!(h.cmd(c, ignore("b")), Reply::NotIgnored);
    assert_eq!(h.cmd(c, Command::ListTubesWatched), list(&["b"]));
    assert_eq!(h.cmd(c, ignore("zzz")), Reply::Watching(1));
    let s = h.stats(c).cmd;
    assert_eq!((s.use_, s.watch, s.ignore), (1, 4, 7));
    assert_eq!((s.list_tube_used, s.list_tubes_watched), (2, 4));
}

#[test]
fn list_tubes_order_uses_swap_remove() {
    let mut h = H::new();
    let c1 = h.conn();
    let c2 = h.conn();
    for t in ["a", "b", "c", "d"] {
        h.cmd(c1, use_(t));
    }
    assert_eq!(h.cmd(c1, Command::ListTubes), list(&["default", "d"]));
    h.cmd(c2, use_("b"));
    assert_eq!(h.cmd(c1, Command::ListTubes), list(&["default", "d", "b"]));
    h.cmd(c1, use_("zz"));
    assert_eq!(h.cmd(c1, Command::ListTubes), list(&["default", "zz", "b"]));
    assert_eq!(h.stats(c1).tubes, 3);
    assert_eq!(h.stats(c1).cmd.list_tubes, 3);
}

// ===== tube lifetime ============================================================================

#[test]
fn tube_is_collected_when_unused_empty_and_unwatched() {
    let mut h = H::new();
    let c = h.conn();
    let other = h.conn();
    // Used only.
    h.cmd(c, use_("foo"));
    assert_eq!(h.cmd(c, Command::ListTubes), list(&["default", "foo"]));
    h.cmd(c, use_("default"));
    assert_eq!(h.cmd(c, Command::ListTubes), list(&["default"]));
    assert_eq!(h.cmd(c, Command::StatsTube("foo".into())), Reply::NotFound);
    // Watched only.
    h.cmd(c, watch("w"));
    assert_eq!(h.cmd(c, Command::ListTubes), list(&["default", "w"]));
    h.cmd(c, ignore("w"));
    assert_eq!(h.cmd(c, Command::ListTubes), list(&["default"]));
    // Used, watched and holding a job: lives until the last reference goes.
    h.cmd(c, use_("j"));
    h.cmd(other, watch("j"));
    let id = h.put(c, 0, 0, 5);
    h.cmd(c, use_("default"));
    h.cmd(other, ignore("j"));
    assert_eq!(h.cmd(c, Command::ListTubes), list(&["default", "j"]));
    h.cmd(other, Command::ReserveJob(id));
    h.cmd(other, bury(id, 0));
    assert_eq!(h.cmd(c, Command::ListTubes), list(&["default", "j"]));
    assert_eq!(h.cmd(c, Command::Delete(id)), Reply::Deleted);
    assert_eq!(h.cmd(c, Command::ListTubes), list(&["default"]));
    // The default tube is never collected.
    h.cmd(c, use_("x"));
    h.cmd(c, watch("x"));
    h.cmd(c, ignore("default"));
    h.cmd(other, use_("x"));
    h.cmd(other, watch("x"));
    h.cmd(other, ignore("default"));
    assert_eq!(h.cmd(c, Command::ListTubes), list(&["default", "x"]));
    assert_eq!(h.st(c, "default"), ts("default"));
    // Disconnect releases the conn's tubes.
    h.disconnect(c);
    assert_eq!(h.cmd(other, Command::ListTubes), list(&["default", "x"]));
    h.disconnect(other);
    let z = h.conn();
    assert_eq!(h.cmd(z, Command::ListTubes), list(&["default"]));
}

#[test]
fn collected_tube_loses_its_pause_state_and_counters() {
    let mut h = H::new();
    let c = h.conn();
    h.cmd(c, watch("p"));
    assert_eq!(h.cmd(c, pause("p", 100)), Reply::Paused);
    h.cmd(c, use_("p"));
    let id = h.put(c, 0, 0, 5);
    assert_eq!(h.cmd(c, Command::Delete(id)), Reply::Deleted);
    h.cmd(c, use_("default"));
    let st = h.st(c, "p");
    assert_eq!(
        (st.pause, st.cmd_pause_tube, st.cmd_delete, st.total_jobs),
        (100, 1, 1, 1)
    );
    assert_eq!(h.e.next_wakeup(), Some(T0 + 100 * S));
    h.cmd(c, ignore("p"));
    assert_eq!(h.cmd(c, Command::StatsTube("p".into())), Reply::NotFound);
    // The stale pause timer went with the tube.
    assert_eq!(h.e.next_wakeup(), None);
    h.cmd(c, watch("p"));
    assert_eq!(
        h.st(c, "p"),
        TubeStats {
            watching: 1,
            ..ts("p")
        }
    );
    // And a job put there now is handed out at once.
    h.cmd(c, use_("p"));
    let id = h.put(c, 0, 0, 5);
    assert_eq!(h.cmd(c, Command::ReserveWithTimeout(0)), reserved(id));
}

#[test]
fn tube_slots_are_reused_safely() {
    // A collected paused tube's slot is reused by a new tube: no pause leaks into it.
    let mut h = H::new();
    let c = h.conn();
    h.cmd(c, use_("old"));
    h.cmd(c, pause("old", 50));
    h.cmd(c, use_("new"));
    assert_eq!(h.cmd(c, Command::ListTubes), list(&["default", "new"]));
    let st = h.st(c, "new");
    assert_eq!((st.pause, st.pause_time_left), (0, 0));
    let id = h.put(c, 0, 0, 5);
    h.cmd(c, watch("new"));
    assert_eq!(h.cmd(c, Command::Reserve), reserved(id));
    h.tick_at(T0 + 50 * S);
    assert!(h.take().is_empty());
}

// ===== pause ====================================================================================

#[test]
fn pause_tube_blocks_reserve_until_tick_at_unpause() {
    let mut h = H::new();
    let p = h.conn();
    let w = h.conn();
    let id = h.put(p, 0, 0, 5);
    assert_eq!(h.cmd(p, pause("default", 10)), Reply::Paused);
    assert_eq!(
        h.st(p, "default"),
        TubeStats {
            urgent: 1,
            ready: 1,
            total_jobs: 1,
            using: 2,
            watching: 2,
            cmd_pause_tube: 1,
            pause: 10,
            pause_time_left: 10,
            ..ts("default")
        }
    );
    assert_eq!(h.cmd(w, Command::ReserveWithTimeout(0)), Reply::TimedOut);
    h.wait(w, Command::Reserve);
    assert_eq!(h.e.next_wakeup(), Some(T0 + 10 * S));
    h.advance(3 * S + S / 2);
    let st = h.st(p, "default");
    assert_eq!((st.pause, st.pause_time_left, st.waiting), (10, 6, 1));
    h.tick_at(T0 + 10 * S - 1);
    assert!(h.take().is_empty());
    h.tick_at(T0 + 10 * S);
    assert_eq!(h.take(), vec![(w, reserved(id))]);
    let st = h.st(p, "default");
    assert_eq!((st.pause, st.pause_time_left, st.cmd_pause_tube), (0, 0, 1));
    assert_eq!(h.e.next_wakeup(), Some(T0 + 15 * S));
}

#[test]
fn pause_zero_unpauses_at_the_next_tick() {
    let mut h = H::new();
    let p = h.conn();
    let w = h.conn();
    let id = h.put(p, 0, 0, 5);
    h.cmd(p, pause("default", 100));
    h.wait(w, Command::Reserve);
    h.advance(S);
    assert_eq!(h.cmd(p, pause("default", 0)), Reply::Paused);
    let st = h.st(p, "default");
    assert_eq!((st.pause, st.pause_time_left, st.cmd_pause_tube), (0, 0, 2));
    // beanstalkd: 0 means 1 ns, which the very next tick ends.
    assert_eq!(h.e.next_wakeup(), Some(T0 + S + 1));
    h.tick_at(T0 + S + 1);
    assert_eq!(h.take(), vec![(w, reserved(id))]);
    assert_eq!(h.e.next_wakeup(), Some(T0 + S + 1 + 5 * S));
}

#[test]
fn repause_replaces_the_old_pause() {
    let mut h = H::new();
    let c = h.conn();
    h.cmd(c, pause("default", 10));
    h.cmd(c, pause("default", 2));
    assert_eq!(h.e.next_wakeup(), Some(T0 + 2 * S));
    h.tick_at(T0 + 2 * S);
    assert_eq!(h.st(c, "default").pause, 0);
    assert_eq!(h.e.next_wakeup(), None);
    h.cmd(c, pause("default", 5));
    h.advance(S);
    h.cmd(c, pause("default", 30));
    assert_eq!(h.e.next_wakeup(), Some(T0 + 33 * S));
    assert_eq!(h.st(c, "default").pause_time_left, 30);
}

#[test]
fn pause_tube_missing_is_not_found() {
    let mut h = H::new();
    let c = h.conn();
    assert_eq!(h.cmd(c, pause("nosuch", 10)), Reply::NotFound);
    assert_eq!(
        h.cmd(c, Command::StatsTube("nosuch".into())),
        Reply::NotFound
    );
    assert_eq!(h.e.next_wakeup(), None);
    assert_eq!(h.stats(c).cmd.pause_tube, 1);
}

#[test]
fn paused_tube_is_skipped_but_other_tubes_serve() {
    let mut h = H::new();
    let c = h.conn();
    h.cmd(c, watch("a"));
    h.cmd(c, use_("a"));
    let a = h.put(c, 0, 0, 5);
    h.cmd(c, use_("default"));
    let d = h.put(c, 100, 0, 5);
    h.cmd(c, pause("a", 10));
    assert_eq!(h.cmd(c, Command::Reserve), reserved(d));
    // put, peek, kick, delete, reserve-job all still work on the paused tube.
    h.cmd(c, use_("a"));
    let a2 = h.put(c, 0, 0, 5);
    assert_eq!(h.cmd(c, Command::PeekReady), found(a));
    assert_eq!(h.cmd(c, Command::ReserveJob(a2)), reserved(a2));
    assert_eq!(h.cmd(c, bury(a2, 0)), Reply::Buried);
    assert_eq!(h.cmd(c, Command::Kick(1)), Reply::Kicked(1));
    assert_eq!(h.cmd(c, Command::Delete(a2)), Reply::Deleted);
    assert_eq!(h.cmd(c, Command::ReserveWithTimeout(0)), Reply::TimedOut);
    h.tick_at(T0 + 5 * S);
    h.take();
    h.tick_at(T0 + 10 * S);
    assert_eq!(h.cmd(c, Command::ReserveWithTimeout(0)), reserved(a));
}

// ===== disconnect / cancel_wait =================================================================

#[test]
fn disconnect_returns_reservations_and_hands_them_out() {
    let mut h = H::new();
    let c = h.conn();
    let w = h.conn();
    h.cmd(c, use_("x"));
    let x = h.put(c, 1, 0, 5);
    let x2 = h.put(c, 0, 0, 5);
    h.cmd(c, use_("default"));
    let d1 = h.put(c, 5, 0, 5);
    h.cmd(c, Command::ReserveJob(x));
    h.cmd(c, Command::ReserveJob(d1));
    h.cmd(c, Command::ReserveJob(x2));
    h.cmd(c, use_("x"));
    h.wait(w, Command::Reserve);
    assert_eq!(h.stats(w).connections, 2);
    h.disconnect(c);
    // The job in the waiter's tube goes to it; the others are ready again.
    assert_eq!(h.take(), vec![(w, reserved(d1))]);
    assert_eq!(h.state(w, x), "ready");
    assert_eq!(h.state(w, x2), "ready");
    let j = h.sj(w, x);
    assert_eq!((j.reserves, j.timeouts, j.releases), (1, 0, 0));
    let s = h.stats(w);
    assert_eq!(
        (s.connections, s.total_connections, s.reserved, s.ready),
        (1, 2, 1, 2)
    );
    assert_eq!(
        (s.producers, s.workers, s.job_timeouts, s.urgent),
        (0, 1, 0, 2)
    );
    let st = h.st(w, "x");
    assert_eq!((st.using, st.reserved, st.ready), (0, 0, 2));
    assert_eq!(h.e.next_wakeup(), Some(T0 + 5 * S));
    // Disconnecting an unknown or already closed conn is a no-op.
    h.disconnect(c);
    h.disconnect(12345);
    assert!(h.take().is_empty());
}

#[test]
fn disconnect_while_waiting() {
    let mut h = H::new();
    let w = h.conn();
    let p = h.conn();
    h.cmd(w, watch("t"));
    h.wait(w, Command::ReserveWithTimeout(10));
    assert_eq!(h.st(p, "t").waiting, 1);
    h.disconnect(w);
    assert!(h.take().is_empty());
    assert_eq!(h.stats(p).waiting, 0);
    assert_eq!(h.cmd(p, Command::StatsTube("t".into())), Reply::NotFound);
    assert_eq!(h.e.next_wakeup(), None);
    let id = h.put(p, 0, 0, 5);
    assert!(h.take().is_empty());
    assert_eq!(h.state(p, id), "ready");
}

#[test]
fn disconnect_offers_each_returned_job_in_reservation_order() {
    let mut h = H::new();
    let c = h.conn();
    let w = h.conn();
    let d1 = h.put(c, 5, 0, 5);
    let d2 = h.put(c, 2, 0, 5);
    assert_eq!(h.cmd(c, Command::ReserveJob(d1)), reserved(d1));
    assert_eq!(h.cmd(c, Command::ReserveJob(d2)), reserved(d2));
    h.wait(w, Command::Reserve);
    h.disconnect(c);
    assert_eq!(h.take(), vec![(w, reserved(d1))]);
}

#[test]
fn kick_offers_each_job_to_waiters_as_it_is_kicked() {
    let mut h = H::new();
    let c = h.conn();
    let w = h.conn();
    let b1 = h.put(c, 5, 0, 5);
    let b2 = h.put(c, 1, 0, 5);
    for id in [b1, b2] {
        h.cmd(c, Command::ReserveJob(id));
    }
    assert_eq!(h.cmd(c, bury(b1, 5)), Reply::Buried);
    assert_eq!(h.cmd(c, bury(b2, 1)), Reply::Buried);
    h.wait(w, Command::Reserve);
    assert_eq!(h.cmd(c, Command::Kick(2)), Reply::Kicked(2));
    assert_eq!(h.take(), vec![(w, reserved(b1))]);
}

#[test]
fn disconnect_frees_tubes_in_beanstalkd_order() {
    // Watched tubes only.
    let mut h = H::new();
    let x = h.conn();
    let y = h.conn();
    let z = h.conn();
    h.cmd(x, watch("w1"));
    h.cmd(x, watch("w2"));
    h.cmd(y, use_("y"));
    h.cmd(z, use_("z"));
    assert_eq!(
        h.cmd(z, Command::ListTubes),
        list(&["default", "w1", "w2", "y", "z"])
    );
    h.disconnect(x);
    assert_eq!(h.cmd(z, Command::ListTubes), list(&["default", "y", "z"]));

    // A used tube and a watched tube: beanstalkd frees the watched one first.
    let mut h = H::new();
    let x = h.conn();
    let y = h.conn();
    let z = h.conn();
    h.cmd(x, use_("u"));
    h.cmd(x, watch("w"));
    h.cmd(y, use_("y"));
    h.cmd(z, use_("z"));
    h.disconnect(x);
    assert_eq!(h.cmd(z, Command::ListTubes), list(&["default", "y", "z"]));
}

#[test]
fn cancel_wait() {
    let mut h = H::new();
    let w = h.conn();
    let p = h.conn();
    assert!(!h.e.cancel_wait(w));
    h.wait(w, Command::ReserveWithTimeout(5));
    assert!(h.e.cancel_wait(w));
    h.check();
    assert!(!h.e.is_waiting(w));
    assert!(h.take().is_empty(), "the server writes TIMED_OUT itself");
    assert_eq!(h.stats(p).waiting, 0);
    assert_eq!(h.st(p, "default").waiting, 0);
    assert_eq!(h.e.next_wakeup(), None);
    assert!(!h.e.cancel_wait(w));
    let id = h.put(p, 0, 0, 5);
    assert!(h.take().is_empty());
    assert_eq!(h.state(p, id), "ready");
    h.tick_at(T0 + 5 * S);
    assert!(h.take().is_empty());
    assert!(!h.e.cancel_wait(9999));
}

// ===== drain ====================================================================================

#[test]
fn drain_mode_rejects_puts_but_uses_ids() {
    let mut h = H::new();
    let c = h.conn();
    let id = h.put(c, 0, 0, 5);
    h.e.set_draining();
    assert!(h.e.draining());
    assert_eq!(h.put_reply(c, 0, 0, 5), Reply::Draining);
    assert_eq!(h.put_reply(c, 0, 0, 5), Reply::Draining);
    assert_eq!(h.cmd(c, Command::Peek(2)), Reply::NotFound);
    let s = h.stats(c);
    assert!(s.draining);
    assert_eq!((s.total_jobs, s.cmd.put, s.ready), (1, 3, 1));
    // Everything else still works.
    assert_eq!(h.cmd(c, Command::Reserve), reserved(id));
    assert_eq!(h.cmd(c, Command::Delete(id)), Reply::Deleted);
    // The next id is 4: ids 2 and 3 were used up.
    assert_eq!(h.e.put_header(c), 4);
}

// ===== counters =================================================================================

#[test]
fn every_command_counts_itself() {
    let mut h = H::new();
    let c = h.conn();
    let mut want = CmdCounts::default();
    let id = h.put(c, 0, 0, 5);
    want.put += 1;
    type Bump = fn(&mut CmdCounts);
    let steps: Vec<(Command, Bump)> = vec![
        (Command::Peek(id), |w| w.peek += 1),
        (Command::PeekReady, |w| w.peek_ready += 1),
        (Command::PeekDelayed, |w| w.peek_delayed += 1),
        (Command::PeekBuried, |w| w.peek_buried += 1),
        (Command::Reserve, |w| w.reserve += 1),
        (Command::Touch(id), |w| w.touch += 1),
        (release(id, 0, 0), |w| w.release += 1),
        (Command::ReserveWithTimeout(0), |w| {
            w.reserve_with_timeout += 1
        }),
        (bury(id, 0), |w| w.bury += 1),
        (Command::Kick(1), |w| w.kick += 1),
        (Command::ReserveJob(id), |w| w.reserve_job += 1),
        (bury(id, 0), |w| w.bury += 1),
        (Command::KickJob(id), |w| w.kick_job += 1),
        (Command::Delete(id), |w| w.delete += 1),
        (use_("a"), |w| w.use_ += 1),
        (watch("a"), |w| w.watch += 1),
        (ignore("a"), |w| w.ignore += 1),
        (Command::StatsJob(1), |w| w.stats_job += 1),
        (Command::StatsTube("a".into()), |w| w.stats_tube += 1),
        (Command::ListTubes, |w| w.list_tubes += 1),
        (Command::ListTubeUsed, |w| w.list_tube_used += 1),
        (Command::ListTubesWatched, |w| w.list_tubes_watched += 1),
        (pause("a", 0), |w| w.pause_tube += 1),
        // Failing commands count too.
        (Command::Delete(999), |w| w.delete += 1),
        (Command::KickJob(999), |w| w.kick_job += 1),
        (Command::ReserveJob(999), |w| w.reserve_job += 1),
        (release(999, 0, 0), |w| w.release += 1),
        (bury(999, 0), |w| w.bury += 1),
        (Command::Touch(999), |w| w.touch += 1),
        (pause("nosuch", 0), |w| w.pause_tube += 1),
        (Command::StatsTube("nosuch".into()), |w| w.stats_tube += 1),
    ];
    for (cmd, bump) in steps {
        let what = format!("{cmd:?}");
        let r = h.cmd(c, cmd);
        assert_ne!(r, Reply::InternalError, "{what}");
        bump(&mut want);
        let s = h.stats(c);
        want.stats += 1;
        assert_eq!(s.cmd, want, "after {what}");
    }
    // Put header alone and a rejected put count as puts.
    let _ = h.e.put_header(c);
    h.e.count_put();
    want.put += 2;
    want.stats += 1;
    assert_eq!(h.stats(c).cmd, want);
}

#[test]
fn bad_calls_answer_internal_error() {
    let mut h = H::new();
    let c = h.conn();
    assert_eq!(h.cmd(999, Command::Stats), Reply::InternalError);
    assert_eq!(h.cmd(c, Command::Quit), Reply::InternalError);
    assert_eq!(h.cmd(c, Command::Put(hdr(0, 0, 1))), Reply::InternalError);
    assert_eq!(
        h.stats(c).cmd,
        CmdCounts {
            stats: 1,
            ..CmdCounts::default()
        }
    );
}

#[test]
fn connection_and_worker_counters() {
    let mut h = H::new();
    let a = h.conn();
    let b = h.conn();
    let c = h.conn();
    let s = h.stats(a);
    assert_eq!(
        (s.connections, s.total_connections, s.producers, s.workers),
        (3, 3, 0, 0)
    );
    assert_eq!(h.st(a, "default").using, 3);
    assert_eq!(h.st(a, "default").watching, 3);
    h.cmd(a, Command::ReserveWithTimeout(0));
    h.cmd(b, Command::ReserveJob(42));
    h.wait(c, Command::Reserve);
    let s = h.stats(a);
    assert_eq!((s.workers, s.waiting), (3, 1));
    h.disconnect(a);
    h.disconnect(c);
    let d = h.conn();
    let s = h.stats(d);
    assert_eq!(
        (s.connections, s.total_connections, s.workers, s.waiting),
        (2, 4, 1, 0)
    );
    assert_eq!(h.st(d, "default").using, 2);
}

#[test]
fn urgent_counts_ready_jobs_below_1024_only() {
    let mut h = H::new();
    let c = h.conn();
    let u0 = h.put(c, 0, 0, 5);
    let u1023 = h.put(c, 1023, 0, 5);
    let n1024 = h.put(c, 1024, 0, 5);
    let _d = h.put(c, 0, 10, 5);
    assert_eq!(h.counts(c), (2, 3, 0, 1, 0));
    assert_eq!(h.st(c, "default").urgent, 2);
    assert_eq!(h.cmd(c, Command::Reserve), reserved(u0));
    assert_eq!(h.counts(c), (1, 2, 1, 1, 0));
    assert_eq!(h.cmd(c, bury(u0, 5)), Reply::Buried);
    assert_eq!(h.counts(c), (1, 2, 0, 1, 1));
    assert_eq!(h.cmd(c, Command::Kick(1)), Reply::Kicked(1));
    assert_eq!(h.counts(c), (2, 3, 0, 1, 0));
    assert_eq!(h.cmd(c, Command::ReserveJob(u1023)), reserved(u1023));
    assert_eq!(h.cmd(c, release(u1023, 2000, 0)), Reply::Released);
    assert_eq!(h.counts(c), (1, 3, 0, 1, 0));
    assert_eq!(h.cmd(c, Command::ReserveJob(n1024)), reserved(n1024));
    assert_eq!(h.cmd(c, release(n1024, 1, 0)), Reply::Released);
    assert_eq!(h.counts(c), (2, 3, 0, 1, 0));
    h.tick_at(T0 + 10 * S);
    assert_eq!(h.counts(c), (3, 4, 0, 0, 0));
    assert_eq!(h.cmd(c, Command::Delete(n1024)), Reply::Deleted);
    assert_eq!(h.counts(c), (2, 3, 0, 0, 0));
    assert_eq!(h.st(c, "default").urgent, 2);
}

// ===== next_wakeup ==============================================================================

#[test]
fn next_wakeup_is_the_earliest_timer() {
    let mut h = H::new();
    let c = h.conn();
    let w = h.conn();
    assert_eq!(h.e.next_wakeup(), None);
    h.put(c, 0, 50, 5); // delayed until T0+50
    assert_eq!(h.e.next_wakeup(), Some(T0 + 50 * S));
    let r = h.put(c, 0, 0, 40);
    h.cmd(c, Command::Reserve); // deadline T0+40
    assert_eq!(h.e.next_wakeup(), Some(T0 + 40 * S));
    h.cmd(c, use_("p"));
    h.cmd(c, pause("p", 30)); // unpause T0+30
    assert_eq!(h.e.next_wakeup(), Some(T0 + 30 * S));
    h.wait(w, Command::ReserveWithTimeout(20)); // timeout T0+20
    assert_eq!(h.e.next_wakeup(), Some(T0 + 20 * S));
    h.wait(c, Command::Reserve); // c holds r: deadline-soon timer at T0+39
    assert_eq!(h.e.next_wakeup(), Some(T0 + 20 * S));
    let mut seen = Vec::new();
    while let Some(t) = h.e.next_wakeup() {
        h.tick_at(t);
        seen.push(((t - T0) / S, h.take()));
    }
    assert_eq!(
        seen,
        vec![
            (20, vec![(w, Reply::TimedOut)]),
            (30, vec![]),
            (39, vec![(c, Reply::DeadlineSoon)]),
            (40, vec![]),
            (50, vec![]),
        ]
    );
    assert_eq!(h.state(c, r), "ready");
}

#[test]
fn late_tick_runs_everything_due() {
    let mut h = H::new();
    let c = h.conn();
    let d = h.put(c, 0, 3, 5);
    let r = h.put(c, 0, 0, 2);
    h.cmd(c, Command::Reserve);
    h.cmd(c, pause("default", 1));
    h.tick_at(T0 + 100 * S);
    assert_eq!(h.state(c, d), "ready");
    assert_eq!(h.state(c, r), "ready");
    assert_eq!(h.st(c, "default").pause, 0);
    assert_eq!(h.e.next_wakeup(), None);
}

// ===== sprout's own commands: flush-tube, list-jobs, reprioritize, move-job ======================

fn flush(name: &str) -> Command {
    Command::FlushTube(name.into())
}

fn list_jobs(name: &str, state: ListState, after: JobId, limit: u32) -> Command {
    Command::ListJobs {
        tube: name.into(),
        state,
        after,
        limit,
    }
}

fn ids(v: &[JobId]) -> Reply {
    Reply::Ids(v.to_vec())
}

/// A tube `t` holding two ready jobs, one delayed, one buried, and one reserved by `w`.
/// Returns (producer, worker, [ready, ready, delayed, buried, reserved]).
fn flush_setup(h: &mut H) -> (ConnId, ConnId, [JobId; 5]) {
    let c = h.conn();
    let w = h.conn();
    h.cmd(c, use_("t"));
    h.cmd(w, watch("t"));
    h.cmd(w, ignore("default"));
    let held = h.put(c, 0, 0, 60);
    assert_eq!(h.cmd(w, Command::Reserve), reserved(held));
    let buried = h.put(c, 0, 0, 60);
    assert_eq!(h.cmd(w, Command::Reserve), reserved(buried));
    assert_eq!(h.cmd(w, bury(buried, 5)), Reply::Buried);
    let r1 = h.put(c, 1, 0, 60);
    let r2 = h.put(c, 2000, 0, 60);
    let d = h.put(c, 1, 10, 60);
    (c, w, [r1, r2, d, buried, held])
}

#[test]
fn flush_tube_deletes_ready_delayed_and_buried_jobs_not_reserved_ones() {
    let mut h = H::new();
    let (c, w, [r1, r2, d, b, held]) = flush_setup(&mut h);
    let other = h.put(c, 0, 0, 60);
    h.cmd(c, use_("other"));
    let elsewhere = h.put(c, 0, 0, 60);
    assert_eq!(
        h.cmd(c, flush("t")),
        Reply::Flushed(5),
        "r1, r2, d, b and `other`"
    );
    for id in [r1, r2, d, b, other] {
        assert_eq!(h.cmd(c, Command::Peek(id)), Reply::NotFound, "job {id}");
        assert_eq!(h.state(c, id), "gone");
        assert_eq!(h.cmd(c, Command::Delete(id)), Reply::NotFound);
        assert_eq!(h.cmd(c, Command::KickJob(id)), Reply::NotFound);
    }
    let st = h.st(c, "t");
    assert_eq!(
        (st.ready, st.delayed, st.buried, st.reserved, st.urgent),
        (0, 0, 0, 1, 0)
    );
    assert_eq!(
        h.counts(c),
        (1, 1, 1, 0, 0),
        "only `elsewhere` and `held` remain"
    );
    assert_eq!(h.state(c, held), "reserved");
    assert_eq!(h.state(c, elsewhere), "ready");
    // The delayed job's time passes without it coming back.
    h.advance(11 * S);
    assert_eq!(h.st(c, "t").ready, 0);
    // The reserved job stays its worker's, and goes back to the tube as usual.
    assert_eq!(h.cmd(w, release(held, 1, 0)), Reply::Released);
    assert_eq!(h.st(c, "t").ready, 1);
    assert_eq!(h.cmd(c, flush("t")), Reply::Flushed(1));
    assert_eq!(h.cmd(c, flush("t")), Reply::Flushed(0));
    assert_eq!(h.cmd(c, flush("no-such-tube")), Reply::Flushed(0));
}

#[test]
fn flush_tube_is_freed_incrementally_and_the_tube_stays_until_then() {
    let mut h = H::new();
    let c = h.conn();
    h.cmd(c, use_("big"));
    for i in 0..10_000 {
        // Without the invariant check after each put (it is O(jobs)).
        let id = h.e.put_header(c);
        let r = h.e.put_body(
            c,
            id,
            hdr(i % 3, (i % 5 == 0) as u32, 60),
            body(id),
            h.now,
            &mut h.out,
        );
        assert_eq!(r, Reply::Inserted(id));
    }
    h.check();
    h.cmd(c, use_("default"));
    let before = h.e.q.jobs.len();
    assert_eq!(h.cmd(c, flush("big")), Reply::Flushed(10_000));
    // Constant time for the caller: a few dozen jobs freed with the command, the rest
    // later, on ticks.
    let left = h.e.q.jobs.len();
    assert!(
        left > before - 200,
        "{} of {before} freed at once",
        before - left
    );
    assert_eq!(h.counts(c), (0, 0, 0, 0, 0));
    assert!(h.cmd(c, Command::ListTubes) == list(&["default", "big"]));
    assert_eq!(h.e.next_wakeup(), Some(h.now), "freeing is due at once");
    let mut ticks = 0;
    while h.e.next_wakeup() == Some(h.now) {
        h.e.tick(h.now, &mut h.out);
        h.check();
        ticks += 1;
        assert!(ticks < 10, "still freeing after {ticks} ticks");
    }
    assert_eq!(h.e.q.jobs.len(), 0);
    assert_eq!(h.e.q.body_bytes, 0);
    assert!(h.cmd(c, Command::ListTubes) == list(&["default"]));
}

#[test]
fn flush_tube_is_one_logged_change() {
    let mut h = H::new();
    h.e.enable_journal();
    let (c, _, _) = flush_setup(&mut h);
    let mut ops = Vec::new();
    h.e.take_journal(&mut ops);
    assert_eq!(h.cmd(c, flush("t")), Reply::Flushed(4));
    h.e.take_journal(&mut ops);
    assert_eq!(ops, vec![JournalOp::Flush("t".into())]);
}

#[test]
#[ignore = "BUG: a flush that deletes nothing leaves work due at once (next_wakeup() is now: \
            two empty sets are queued to be freed)"]
fn flush_of_nothing_leaves_nothing_due() {
    let mut h = H::new();
    let (c, _, [r1, r2, d, b, _]) = flush_setup(&mut h);
    for id in [r1, r2, d, b] {
        assert_eq!(h.cmd(c, Command::Delete(id)), Reply::Deleted);
    }
    let due = h.e.next_wakeup();
    assert!(
        due > Some(h.now),
        "only the reserved job's deadline: {due:?}"
    );
    assert_eq!(
        h.cmd(c, flush("t")),
        Reply::Flushed(0),
        "the reserved job stays"
    );
    assert_eq!(
        h.e.next_wakeup(),
        due,
        "nothing was deleted, nothing to free"
    );
}

#[test]
fn list_jobs_pages_each_state_by_id() {
    let mut h = H::new();
    let (c, _, [r1, r2, d, b, held]) = flush_setup(&mut h);
    let r3 = h.put(c, 0, 0, 60);
    assert_eq!(
        h.cmd(c, list_jobs("t", ListState::Ready, 0, 10)),
        ids(&[r1, r2, r3])
    );
    assert_eq!(
        h.cmd(c, list_jobs("t", ListState::Ready, 0, 2)),
        ids(&[r1, r2])
    );
    assert_eq!(
        h.cmd(c, list_jobs("t", ListState::Ready, r2, 2)),
        ids(&[r3])
    );
    assert_eq!(h.cmd(c, list_jobs("t", ListState::Ready, r3, 2)), ids(&[]));
    assert_eq!(
        h.cmd(c, list_jobs("t", ListState::Delayed, 0, 10)),
        ids(&[d])
    );
    assert_eq!(
        h.cmd(c, list_jobs("t", ListState::Buried, 0, 10)),
        ids(&[b])
    );
    assert_eq!(
        h.cmd(c, list_jobs("t", ListState::Reserved, 0, 10)),
        ids(&[held])
    );
    assert_eq!(
        h.cmd(c, list_jobs("nope", ListState::Ready, 0, 10)),
        ids(&[])
    );
    assert_eq!(
        h.cmd(c, list_jobs("t", ListState::Ready, u64::MAX, 10)),
        ids(&[])
    );
    // States move with the jobs.
    assert_eq!(h.cmd(c, Command::KickJob(b)), Reply::KickedJob);
    assert_eq!(h.cmd(c, list_jobs("t", ListState::Buried, 0, 10)), ids(&[]));
    assert_eq!(
        h.cmd(c, list_jobs("t", ListState::Ready, 0, 10)),
        ids(&[b, r1, r2, r3]),
        "ascending ids"
    );
}

#[test]
fn reprioritize_in_every_state() {
    let mut h = H::new();
    let (c, w, [r1, r2, d, b, held]) = flush_setup(&mut h);
    let rp = |id, pri| Command::Reprioritize { id, pri };
    // Ready: the heap order and the urgent count follow.
    assert_eq!(h.st(c, "t").urgent, 1);
    assert_eq!(h.cmd(c, rp(r2, 0)), Reply::Reprioritized);
    assert_eq!(h.st(c, "t").urgent, 2);
    assert_eq!(h.cmd(c, Command::PeekReady), found(r2));
    assert_eq!(h.cmd(c, rp(r2, 5000)), Reply::Reprioritized);
    assert_eq!(h.cmd(c, Command::PeekReady), found(r1));
    assert_eq!(h.cmd(c, rp(r1, 1)), Reply::Reprioritized, "unchanged");
    for (id, pri) in [(d, 7), (b, 8)] {
        assert_eq!(h.cmd(c, rp(id, pri)), Reply::Reprioritized);
        assert_eq!(h.sj(c, id).pri, pri);
    }
    // Reserved: only by its holder.
    assert_eq!(h.cmd(c, rp(held, 9)), Reply::NotFound);
    assert_eq!(h.cmd(w, rp(held, 9)), Reply::Reprioritized);
    assert_eq!(h.sj(c, held).pri, 9);
    assert_eq!(h.cmd(c, rp(12345, 1)), Reply::NotFound);
}

#[test]
fn move_job_keeps_id_state_and_counters() {
    let mut h = H::new();
    let (c, w, [r1, _, d, b, held]) = flush_setup(&mut h);
    let mv = |id, t: &str| Command::MoveJob { id, tube: t.into() };
    let before = h.sj(c, b);
    assert_eq!(h.cmd(c, mv(b, "dlq")), Reply::Moved);
    let after = h.sj(c, b);
    assert_eq!(&*after.tube, "dlq");
    assert_eq!(after.state, "buried");
    assert_eq!(
        (after.buries, after.reserves, after.pri),
        (before.buries, before.reserves, before.pri)
    );
    assert_eq!(h.st(c, "dlq").buried, 1);
    assert_eq!(h.st(c, "t").buried, 0);
    assert_eq!(h.cmd(c, mv(d, "dlq")), Reply::Moved);
    assert_eq!(h.sj(c, d).state, "delayed");
    // A ready job moved to a tube someone waits on is handed out at once.
    let x = h.conn();
    h.cmd(x, watch("dlq"));
    h.cmd(x, ignore("default"));
    h.wait(x, Command::Reserve);
    assert_eq!(h.cmd(c, mv(r1, "dlq")), Reply::Moved);
    assert_eq!(h.take(), vec![(x, reserved(r1))]);
    // A reserved job: only by its holder, and it stays reserved.
    assert_eq!(h.cmd(c, mv(held, "dlq")), Reply::NotFound);
    assert_eq!(h.cmd(w, mv(held, "dlq")), Reply::Moved);
    assert_eq!(h.sj(c, held).state, "reserved");
    assert_eq!(h.st(c, "dlq").reserved, 2);
    assert_eq!(h.cmd(w, Command::Delete(held)), Reply::Deleted);
    assert_eq!(h.cmd(c, mv(999, "dlq")), Reply::NotFound);
    assert_eq!(
        h.cmd(c, mv(d, "dlq")),
        Reply::Moved,
        "to its own tube: nothing to do"
    );
}

// ===== reserve-batch, put-unique ================================================================

impl H {
    /// `put-unique`: header, admission with the key, apply.
    fn put_unique(&mut self, c: ConnId, key: &str, pri: u32) -> Reply {
        let id = self.e.put_header(c);
        let r = match self
            .e
            .put_admit_key(c, id, hdr(pri, 0, 60), body(id), Some(key), self.now)
        {
            Ok(p) => self.e.put_apply(p, self.now, &mut self.out),
            Err(r) => r,
        };
        self.check();
        r
    }
}

fn batch(max: u32, timeout: u32) -> Command {
    Command::ReserveBatch { max, timeout }
}

fn reserved_batch(ids: &[JobId]) -> Reply {
    Reply::ReservedBatch(ids.iter().map(|&id| (id, body(id))).collect())
}

#[test]
fn reserve_batch_takes_what_is_ready_in_reserve_order() {
    let mut h = H::new();
    let c = h.conn();
    let a = h.put(c, 5, 0, 60);
    let b = h.put(c, 1, 0, 60);
    let d = h.put(c, 5, 0, 60);
    let e = h.put(c, 9, 0, 60);
    assert_eq!(h.cmd(c, batch(3, 0)), reserved_batch(&[b, a, d]));
    assert_eq!(h.cmd(c, batch(3, 0)), reserved_batch(&[e]));
    assert_eq!(h.cmd(c, batch(3, 0)), Reply::TimedOut);
    assert_eq!(h.counts(c).2, 4, "all four reserved");
    for id in [a, b, d, e] {
        assert_eq!(h.state(c, id), "reserved");
    }
}

#[test]
fn reserve_batch_waits_for_the_first_job_then_takes_the_rest_at_once() {
    let mut h = H::new();
    let p = h.conn();
    let w = h.conn();
    h.wait(w, batch(10, 5));
    // A put wakes the worker with that job alone: nothing else is ready.
    let a = h.put(p, 0, 0, 60);
    assert_eq!(h.take(), vec![(w, reserved_batch(&[a]))]);
    // Jobs kicked together reach a waiting batch together.
    let x = h.put(p, 0, 0, 60);
    assert_eq!(h.cmd(p, Command::ReserveJob(x)), reserved(x));
    assert_eq!(h.cmd(p, bury(x, 0)), Reply::Buried);
    let y = h.put(p, 0, 0, 60);
    assert_eq!(h.cmd(p, Command::ReserveJob(y)), reserved(y));
    assert_eq!(h.cmd(p, bury(y, 0)), Reply::Buried);
    h.wait(w, batch(10, 5));
    assert_eq!(h.cmd(p, Command::Kick(10)), Reply::Kicked(2));
    let got = h.take();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, w);
    // The first kicked job wakes the worker; the second is kicked after it was served.
    assert_eq!(got[0].1, reserved_batch(&[x]));
    assert_eq!(h.cmd(w, batch(10, 0)), reserved_batch(&[y]));
    // A timeout with nothing ready.
    h.wait(w, batch(2, 1));
    h.advance(S);
    assert_eq!(h.take(), vec![(w, Reply::TimedOut)]);
}

#[test]
fn reserve_batch_answers_deadline_soon_like_reserve() {
    let mut h = H::new();
    let c = h.conn();
    let a = h.put(c, 0, 0, 1);
    assert_eq!(h.cmd(c, batch(5, 0)), reserved_batch(&[a]));
    assert_eq!(h.cmd(c, batch(5, 0)), Reply::DeadlineSoon);
}

#[test]
fn put_unique_refuses_a_key_in_use_until_its_job_is_deleted() {
    let mut h = H::new();
    let c = h.conn();
    let Reply::Inserted(a) = h.put_unique(c, "order-1", 5) else {
        panic!("first put of the key")
    };
    assert_eq!(h.put_unique(c, "order-1", 5), Reply::Exists(a));
    // In any state.
    assert_eq!(h.cmd(c, Command::Reserve), reserved(a));
    assert_eq!(h.put_unique(c, "order-1", 5), Reply::Exists(a));
    assert_eq!(h.cmd(c, bury(a, 1)), Reply::Buried);
    assert_eq!(h.put_unique(c, "order-1", 5), Reply::Exists(a));
    // Keys are per tube.
    h.cmd(c, use_("other"));
    let Reply::Inserted(b) = h.put_unique(c, "order-1", 5) else {
        panic!("same key, other tube")
    };
    h.cmd(c, use_("default"));
    assert_eq!(h.cmd(c, Command::Delete(a)), Reply::Deleted);
    let Reply::Inserted(a2) = h.put_unique(c, "order-1", 5) else {
        panic!("the key is free again")
    };
    assert!(a2 > b);
    // A flush frees the keys of the jobs it deletes at once.
    assert_eq!(h.cmd(c, flush("default")), Reply::Flushed(1));
    assert!(matches!(h.put_unique(c, "order-1", 5), Reply::Inserted(_)));
}

#[test]
fn a_moved_job_keeps_its_key_unless_the_tube_has_it() {
    let mut h = H::new();
    let c = h.conn();
    let Reply::Inserted(a) = h.put_unique(c, "k", 1) else {
        panic!()
    };
    assert_eq!(
        h.cmd(
            c,
            Command::MoveJob {
                id: a,
                tube: "t".into()
            }
        ),
        Reply::Moved
    );
    assert!(
        matches!(h.put_unique(c, "k", 1), Reply::Inserted(_)),
        "free in default"
    );
    h.cmd(c, use_("t"));
    assert_eq!(h.put_unique(c, "k", 1), Reply::Exists(a), "taken in t");
    h.cmd(c, use_("default"));
    // Moving it back: default holds "k" now, so the job loses its key.
    assert_eq!(
        h.cmd(
            c,
            Command::MoveJob {
                id: a,
                tube: "default".into()
            }
        ),
        Reply::Moved
    );
    assert_eq!(h.e.job_key(a), None);
}

// ===== tube policies =============================================================================

fn policy(tube: &str, set: PolicySet) -> Command {
    Command::TubePolicy {
        tube: tube.into(),
        set: Some(set),
    }
}

/// A producer and a worker on tube `t`, which has `sets` as its policy.
fn policy_setup(h: &mut H, sets: Vec<PolicySet>) -> (ConnId, ConnId) {
    let c = h.conn();
    let w = h.conn();
    h.cmd(c, use_("t"));
    h.cmd(w, watch("t"));
    h.cmd(w, ignore("default"));
    for s in sets {
        assert_eq!(h.cmd(c, policy("t", s)), Reply::Ok);
    }
    (c, w)
}

#[test]
fn max_reserves_buries_by_default_on_release_timeout_and_disconnect() {
    let mut h = H::new();
    let (c, w) = policy_setup(&mut h, vec![PolicySet::MaxReserves(2)]);
    let a = h.put(c, 0, 0, 1);
    // Reserve 1, released: ready again. Reserve 2, released: exhausted, buried.
    assert_eq!(h.cmd(w, Command::Reserve), reserved(a));
    assert_eq!(h.cmd(w, release(a, 0, 0)), Reply::Released);
    assert_eq!(h.state(c, a), "ready");
    assert_eq!(h.cmd(w, Command::Reserve), reserved(a));
    assert_eq!(h.cmd(w, release(a, 0, 0)), Reply::Released);
    assert_eq!(h.state(c, a), "buried");
    assert_eq!(h.sj(c, a).buries, 1);
    // TTR timeout.
    let b = h.put(c, 0, 0, 1);
    for _ in 0..2 {
        assert_eq!(h.cmd(w, Command::Reserve), reserved(b));
        h.advance(2 * S);
    }
    assert_eq!(h.state(c, b), "buried");
    // Disconnect.
    let d = h.put(c, 0, 0, 60);
    let w2 = h.conn();
    h.cmd(w2, watch("t"));
    assert_eq!(h.cmd(w2, Command::ReserveJob(d)), reserved(d));
    assert_eq!(h.cmd(w2, release(d, 0, 0)), Reply::Released);
    assert_eq!(h.cmd(w2, Command::ReserveJob(d)), reserved(d));
    h.disconnect(w2);
    assert_eq!(h.state(c, d), "buried");
}

#[test]
fn on_exhaust_delete_and_dead_letter_tube() {
    let mut h = H::new();
    let (c, w) = policy_setup(
        &mut h,
        vec![
            PolicySet::MaxReserves(1),
            PolicySet::OnExhaust(Exhaust::Tube("t-dead".into())),
        ],
    );
    let a = h.put(c, 7, 0, 60);
    assert_eq!(h.cmd(w, Command::Reserve), reserved(a));
    assert_eq!(h.cmd(w, release(a, 7, 0)), Reply::Released);
    let st = h.sj(c, a);
    assert_eq!((&*st.tube, st.state), ("t-dead", "ready"));
    assert_eq!(st.origin.as_deref(), Some("t"));
    assert_eq!(st.reserves, 1, "counters kept");
    let pst = h.st(c, "t").policy.expect("t has a policy");
    assert_eq!(pst.dead_lettered, 1);
    // Redriven with move-job, it goes back to work.
    assert_eq!(
        h.cmd(
            c,
            Command::MoveJob {
                id: a,
                tube: "t".into()
            }
        ),
        Reply::Moved
    );
    assert_eq!(h.state(c, a), "ready");
    // Delete.
    assert_eq!(
        h.cmd(c, policy("t", PolicySet::OnExhaust(Exhaust::Delete))),
        Reply::Ok
    );
    let b = h.put(c, 0, 0, 60);
    assert_eq!(h.cmd(w, Command::ReserveJob(b)), reserved(b));
    assert_eq!(h.cmd(w, release(b, 0, 0)), Reply::Released);
    assert_eq!(h.state(c, b), "gone");
}

#[test]
fn retry_backoff_delays_returns_but_not_releases_with_a_delay() {
    let mut h = H::new();
    let (c, w) = policy_setup(
        &mut h,
        vec![PolicySet::RetryBackoff(Backoff::Exp { base: 2, cap: 10 })],
    );
    let a = h.put(c, 0, 0, 60);
    let mut delays = Vec::new();
    for _ in 0..5 {
        assert_eq!(h.cmd(w, Command::ReserveJob(a)), reserved(a));
        assert_eq!(h.cmd(w, release(a, 0, 0)), Reply::Released);
        let st = h.sj(c, a);
        assert_eq!(st.state, "delayed");
        delays.push(st.delay);
    }
    // base * 2^(n-1), capped at 10, with jitter of up to half.
    for (i, (&d, full)) in delays.iter().zip([2u64, 4, 8, 10, 10]).enumerate() {
        assert!(
            d <= full && d >= full / 2,
            "retry {i}: {d} s against {full} s"
        );
    }
    // The same job and count always get the same delay (replicas agree).
    let p = Policy {
        retry_backoff: Backoff::Exp { base: 2, cap: 10 },
        ..Policy::default()
    };
    assert_eq!(p.backoff_secs(a, 3), p.backoff_secs(a, 3));
    // A release with its own delay keeps it.
    assert_eq!(h.cmd(w, Command::ReserveJob(a)), reserved(a));
    assert_eq!(h.cmd(w, release(a, 0, 30)), Reply::Released);
    assert_eq!(h.sj(c, a).delay, 30);
    assert_eq!(h.st(c, "t").policy.unwrap().retries_delayed, 5);
    // Fixed.
    assert_eq!(
        h.cmd(c, policy("t", PolicySet::RetryBackoff(Backoff::Fixed(3)))),
        Reply::Ok
    );
    assert_eq!(h.cmd(w, Command::ReserveJob(a)), reserved(a));
    assert_eq!(h.cmd(w, release(a, 0, 0)), Reply::Released);
    assert_eq!(h.sj(c, a).delay, 3);
}

#[test]
fn max_ready_refuses_puts_and_policies_keep_a_tube() {
    let mut h = H::new();
    let (c, w) = policy_setup(&mut h, vec![PolicySet::MaxReady(2)]);
    h.put(c, 0, 0, 60);
    h.put(c, 0, 0, 60);
    assert_eq!(h.put_reply(c, 0, 0, 60), Reply::OutOfMemory);
    assert_eq!(h.st(c, "t").ready, 2);
    let Reply::Reserved { .. } = h.cmd(w, Command::Reserve) else {
        panic!()
    };
    assert!(matches!(h.put_reply(c, 0, 0, 60), Reply::Inserted(_)));
    // A tube with a policy stays with no job and nobody on it.
    let p = h.conn();
    assert_eq!(h.cmd(p, policy("idle", PolicySet::MaxReady(5))), Reply::Ok);
    assert!(
        matches!(h.cmd(p, Command::ListTubes), Reply::List(l) if l.iter().any(|t| &**t == "idle"))
    );
    let show = |h: &mut H| {
        h.cmd(
            p,
            Command::TubePolicy {
                tube: "idle".into(),
                set: None,
            },
        )
    };
    assert_eq!(
        show(&mut h),
        Reply::Yaml(
            "---\nmax-reserves: 0\non-exhaust: bury\nretry-backoff: none\nmax-ready: 5\n".into()
        )
    );
    // Back to the defaults: no policy, and the tube goes.
    assert_eq!(h.cmd(p, policy("idle", PolicySet::MaxReady(0))), Reply::Ok);
    assert!(
        matches!(h.cmd(p, Command::ListTubes), Reply::List(l) if !l.iter().any(|t| &**t == "idle"))
    );
    assert_eq!(show(&mut h), Reply::NotFound);
}

// ===== property test against a model ============================================================

/// A small reimplementation of beanstalkd's queue semantics (put and job bodies, reserve
/// with its timeouts and DEADLINE_SOON, job ownership, tube lifetime and pause, counters),
/// as beanstalkd 1.12 behaves, with sprout's FIFO choice among waiting connections (see
/// COMPAT.md), and of sprout's own commands (flush-tube, list-jobs, reprioritize, move-job,
/// reserve-batch, put-unique) and tube policies, as COMPAT.md and the unit tests above
/// describe them.
/// It shares no code with the engine: plain maps, linear scans.
mod model {
    use std::collections::BTreeMap;

    use sprout_protocol::reply::TubePolicyStats;
    use sprout_protocol::{Backoff, Exhaust, ListState, PolicySet};

    use super::{body, ConnId, JobId, Reply, SECOND};

    /// beanstalkd offers each job to the waiters as soon as it becomes ready (enqueue_job
    /// runs process_queue), so `kick` and `disconnect` hand out jobs in kick / reservation
    /// order. The engine makes them all ready first and then hands out the best (see the
    /// ignored unit tests `kick_offers_each_job_to_waiters_as_it_is_kicked` and
    /// `disconnect_offers_each_returned_job_in_reservation_order`). While this is true the
    /// model follows the engine; set it to false once the engine is changed.
    pub(crate) const ENGINE_BATCH_HANDOUT_BUG: bool = false;

    /// A flush of an existing tube that deletes nothing still leaves the engine work due
    /// at once (`next_wakeup()` is now until the next tick; see the ignored unit test
    /// `flush_of_nothing_leaves_nothing_due`). While this is true the model follows the
    /// engine; set it to false once the engine is changed.
    pub(crate) const ENGINE_EMPTY_FLUSH_WAKEUP_BUG: bool = true;

    /// Jobs a flush deleted that one tick frees (the engine frees them lazily; the model
    /// never has more than this many at once, so one tick frees them all).
    const FREED_PER_TICK: u64 = 4096;

    #[derive(Clone, Copy, Debug, PartialEq)]
    pub(crate) enum St {
        Ready,
        Delayed { at: u64 },
        Reserved { by: ConnId, deadline: u64 },
        Buried { seq: u64 },
    }

    impl St {
        pub(crate) fn name(self) -> &'static str {
            match self {
                St::Ready => "ready",
                St::Delayed { .. } => "delayed",
                St::Reserved { .. } => "reserved",
                St::Buried { .. } => "buried",
            }
        }
    }

    #[derive(Clone, Debug)]
    pub struct Job {
        pub tube: String,
        pub pri: u32,
        pub ttr: u64,
        pub delay: u64,
        pub created: u64,
        pub(crate) st: St,
        /// When it was last reserved (for beanstalkd's per-conn reservation order).
        pub(crate) rseq: u64,
        pub reserves: u32,
        pub timeouts: u32,
        pub releases: u32,
        pub buries: u32,
        pub kicks: u32,
        /// Its `put-unique` key, while it has one.
        pub key: Option<String>,
        /// The tube a policy dead-lettered it from, last time.
        pub origin: Option<String>,
    }

    /// A connection blocked in a reserve.
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct Wait {
        /// Arrival order.
        pub(crate) seq: u64,
        pub(crate) timeout_at: Option<u64>,
        /// `reserve-batch`'s max; 0 for a plain reserve.
        pub(crate) batch: u32,
    }

    #[derive(Clone, Debug)]
    pub(crate) struct Conn {
        pub(crate) use_: String,
        pub(crate) watch: Vec<String>,
        pub(crate) wait: Option<Wait>,
        pub(crate) producer: bool,
        pub(crate) worker: bool,
    }

    /// A live tube's counters (they go with the tube).
    #[derive(Clone, Copy, Debug, Default, PartialEq)]
    pub(crate) struct Counts {
        pub(crate) total_jobs: u64,
        pub(crate) cmd_delete: u64,
        pub(crate) cmd_pause: u64,
        /// Jobs its policy sent to a dead-letter tube.
        pub(crate) dead_lettered: u64,
        /// Returns its policy's backoff delayed.
        pub(crate) retries_delayed: u64,
    }

    /// A tube policy: all defaults means none.
    #[derive(Clone, Debug, Default, PartialEq)]
    pub(crate) struct Pol {
        pub(crate) max_reserves: u32,
        pub(crate) on_exhaust: Exhaust,
        pub(crate) backoff: Backoff,
        pub(crate) max_ready: u64,
    }

    impl Pol {
        fn exhaust_text(&self) -> String {
            match &self.on_exhaust {
                Exhaust::Bury => "bury".to_string(),
                Exhaust::Delete => "delete".to_string(),
                Exhaust::Tube(t) => format!("tube:{t}"),
            }
        }

        fn backoff_text(&self) -> String {
            match self.backoff {
                Backoff::None => "none".to_string(),
                Backoff::Fixed(s) => format!("fixed:{s}"),
                Backoff::Exp { base, cap } => format!("exp:{base},{cap}"),
            }
        }

        /// What `tube-policy <tube>` shows.
        pub(crate) fn yaml(&self) -> String {
            format!(
                "---\nmax-reserves: {}\non-exhaust: {}\nretry-backoff: {}\nmax-ready: {}\n",
                self.max_reserves,
                self.exhaust_text(),
                self.backoff_text(),
                self.max_ready
            )
        }

        /// `stats-tube`'s policy fields.
        pub(crate) fn stats(&self, c: Counts) -> TubePolicyStats {
            TubePolicyStats {
                max_reserves: self.max_reserves,
                on_exhaust: self.exhaust_text(),
                retry_backoff: self.backoff_text(),
                max_ready: self.max_ready,
                dead_lettered: c.dead_lettered,
                retries_delayed: c.retries_delayed,
            }
        }

        /// Seconds of retry delay for job `id` coming back after its `reserves`-th reserve.
        /// Exponential: the full delay is base * 2^(reserves - 1), at most `cap`, less a
        /// jitter of up to half of it derived from the job (splitmix64's finalizer of
        /// `id ^ (reserves << 40)`, modulo half the full delay plus one), as specified by
        /// `Policy::backoff_secs`.
        fn backoff_secs(&self, id: JobId, reserves: u32) -> u32 {
            match self.backoff {
                Backoff::None => 0,
                Backoff::Fixed(s) => s,
                Backoff::Exp { base, cap } => {
                    let doublings = reserves.saturating_sub(1).min(31);
                    let full = (u64::from(base) << doublings).min(u64::from(cap));
                    let mut h = id ^ (u64::from(reserves) << 40);
                    h = h.wrapping_add(0x9E37_79B9_7F4A_7C15);
                    h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                    h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                    h ^= h >> 31;
                    let d = full - h % (full / 2 + 1);
                    assert!(2 * d >= full && d <= full, "model: backoff {d} of {full}");
                    d as u32
                }
            }
        }
    }

    /// How a reserved job comes back.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Return {
        /// `release` with this delay (seconds).
        Release(u32),
        Timeout,
        Disconnect,
    }

    #[derive(Default, Debug)]
    pub(crate) struct Model {
        pub(crate) now: u64,
        pub(crate) next_id: JobId,
        pub(crate) jobs: BTreeMap<JobId, Job>,
        pub(crate) conns: BTreeMap<ConnId, Conn>,
        /// Paused tubes: (unpause at, requested ns).
        pub(crate) pauses: BTreeMap<String, (u64, u64)>,
        pub seq: u64,
        pub(crate) total_jobs: u64,
        pub(crate) job_timeouts: u64,
        pub(crate) total_connections: u64,
        /// Per live tube.
        pub(crate) tube_counts: BTreeMap<String, Counts>,
        /// Tubes with a policy (which lives as long as it does).
        pub(crate) policies: BTreeMap<String, Pol>,
        /// Jobs a flush deleted, per tube, that the engine has not freed yet: their tube
        /// lives until the next tick frees them.
        pub(crate) dead: BTreeMap<String, u64>,
        /// A flush of an existing tube happened since the last tick: the engine has memory
        /// to free, and its next wakeup is now.
        pub(crate) freeing: bool,
        /// How often each of sprout's paths was taken (for the harness check).
        pub(crate) events: BTreeMap<&'static str, u64>,
    }

    pub(crate) type Out = Vec<(ConnId, Reply)>;

    impl Model {
        pub fn new(now: u64) -> Self {
            Model {
                now,
                next_id: 1,
                ..Model::default()
            }
        }

        fn event(&mut self, what: &'static str) {
            *self.events.entry(what).or_default() += 1;
        }

        // ----- queries ------------------------------------------------------------------

        pub(crate) fn tube_exists(&self, t: &str) -> bool {
            t == "default"
                || self
                    .conns
                    .values()
                    .any(|c| c.use_ == t || c.watch.iter().any(|w| w == t))
                || self.jobs.values().any(|j| j.tube == t)
                || self.policies.contains_key(t)
                || self.dead.contains_key(t)
        }

        pub(crate) fn tubes(&self) -> Vec<String> {
            let mut all: Vec<String> = vec!["default".into()];
            for c in self.conns.values() {
                all.push(c.use_.clone());
                all.extend(c.watch.iter().cloned());
            }
            all.extend(self.jobs.values().map(|j| j.tube.clone()));
            all.extend(self.policies.keys().cloned());
            all.extend(self.dead.keys().cloned());
            all.sort();
            all.dedup();
            all
        }

        pub(crate) fn paused(&self, t: &str) -> bool {
            self.pauses.contains_key(t)
        }

        pub(crate) fn counts(&self, t: &str) -> Counts {
            self.tube_counts.get(t).copied().unwrap_or_default()
        }

        fn counts_mut(&mut self, t: &str) -> &mut Counts {
            self.tube_counts.entry(t.to_string()).or_default()
        }

        pub(crate) fn soonest_deadline(&self, c: ConnId) -> Option<u64> {
            self.jobs
                .values()
                .filter_map(|j| match j.st {
                    St::Reserved { by, deadline } if by == c => Some(deadline),
                    _ => None,
                })
                .min()
        }

        pub(crate) fn deadline_soon(&self, c: ConnId) -> bool {
            self.soonest_deadline(c)
                .is_some_and(|d| self.now + SECOND >= d)
        }

        /// A ready job in a watched tube, paused or not.
        pub(crate) fn any_ready(&self, c: ConnId) -> bool {
            let w = &self.conns[&c].watch;
            self.jobs
                .values()
                .any(|j| j.st == St::Ready && w.contains(&j.tube))
        }

        /// The best (pri, id) ready job in the conn's unpaused watched tubes.
        fn best_ready(&self, c: ConnId) -> Option<JobId> {
            let w = &self.conns[&c].watch;
            self.jobs
                .iter()
                .filter(|(_, j)| j.st == St::Ready && w.contains(&j.tube) && !self.paused(&j.tube))
                .map(|(&id, j)| (j.pri, id))
                .min()
                .map(|(_, id)| id)
        }

        fn ready_in(&self, t: &str) -> u64 {
            self.count(|j| j.tube == t && j.st == St::Ready)
        }

        /// The live job of tube `t` holding `key`.
        fn key_holder(&self, t: &str, key: &str) -> Option<JobId> {
            let mut holders = self
                .jobs
                .iter()
                .filter(|(_, j)| j.tube == t && j.key.as_deref() == Some(key))
                .map(|(&id, _)| id);
            let first = holders.next();
            assert_eq!(holders.next(), None, "model: key {key} held twice in {t}");
            first
        }

        pub(crate) fn wait_timer(&self, c: ConnId) -> Option<u64> {
            let w = self.conns[&c].wait?;
            let soon = self.soonest_deadline(c).map(|d| d - SECOND);
            match (w.timeout_at, soon) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }

        pub fn next_wakeup(&self) -> Option<u64> {
            if self.freeing {
                return Some(self.now);
            }
            self.next_timer()
        }

        /// The next job, pause or wait timer (a flush's freeing aside).
        pub fn next_timer(&self) -> Option<u64> {
            let jobs = self.jobs.values().filter_map(|j| match j.st {
                St::Delayed { at } => Some(at),
                St::Reserved { deadline, .. } => Some(deadline),
                _ => None,
            });
            let pauses = self.pauses.values().map(|p| p.0);
            let waits = self.conns.keys().filter_map(|&c| self.wait_timer(c));
            jobs.chain(pauses).chain(waits).min()
        }

        pub fn count(&self, f: impl Fn(&Job) -> bool) -> u64 {
            self.jobs.values().filter(|j| f(j)).count() as u64
        }

        // ----- transitions --------------------------------------------------------------

        fn reserve_job(&mut self, c: ConnId, id: JobId) -> Reply {
            let now = self.now;
            self.seq += 1;
            let j = self.jobs.get_mut(&id).expect("model job");
            j.st = St::Reserved {
                by: c,
                deadline: now + j.ttr,
            };
            j.rseq = self.seq;
            j.reserves += 1;
            Reply::Reserved { id, body: body(id) }
        }

        fn make_ready(&mut self, id: JobId) {
            if let Some(j) = self.jobs.get_mut(&id) {
                j.st = St::Ready;
            }
        }

        fn bury_now(&mut self, id: JobId) {
            self.seq += 1;
            let seq = self.seq;
            if let Some(j) = self.jobs.get_mut(&id) {
                j.st = St::Buried { seq };
            }
        }

        /// Hands ready jobs to waiters: the best (pri, id) among ready jobs of unpaused tubes
        /// that someone waits on goes to the longest-waiting conn watching its tube; a
        /// `reserve-batch` waiter then takes what else is ready for it, best first.
        pub(crate) fn process_queue(&mut self, out: &mut Out) {
            loop {
                let mut best: Option<(u32, JobId, ConnId)> = None;
                for (&id, j) in &self.jobs {
                    if j.st != St::Ready || self.paused(&j.tube) {
                        continue;
                    }
                    if best.is_some_and(|(p, i, _)| (p, i) < (j.pri, id)) {
                        continue;
                    }
                    let waiter = self
                        .conns
                        .iter()
                        .filter_map(|(&c, conn)| match conn.wait {
                            Some(w) if conn.watch.contains(&j.tube) => Some((w.seq, c)),
                            _ => None,
                        })
                        .min();
                    if let Some((_, c)) = waiter {
                        best = Some((j.pri, id, c));
                    }
                }
                let Some((_, id, c)) = best else { return };
                let batch = self
                    .conns
                    .get_mut(&c)
                    .and_then(|conn| conn.wait.take())
                    .map_or(0, |w| w.batch);
                let r = if batch == 0 {
                    self.reserve_job(c, id)
                } else {
                    self.event("batch-delivered");
                    self.take_batch(c, id, batch)
                };
                out.push((c, r));
            }
        }

        /// `first`, then the best ready jobs for `c`, up to `max` in all.
        fn take_batch(&mut self, c: ConnId, first: JobId, max: u32) -> Reply {
            let mut got = Vec::new();
            let mut next = Some(first);
            while let Some(id) = next {
                self.reserve_job(c, id);
                got.push((id, body(id)));
                next = if got.len() < max as usize {
                    self.best_ready(c)
                } else {
                    None
                };
            }
            if got.len() > 1 {
                self.event("batch-of-several");
            }
            Reply::ReservedBatch(got)
        }

        pub(crate) fn gc(&mut self) {
            let dead: Vec<String> = self
                .pauses
                .keys()
                .filter(|t| !self.tube_exists(t))
                .cloned()
                .collect();
            for t in dead {
                self.pauses.remove(&t);
            }
            let dead: Vec<String> = self
                .tube_counts
                .keys()
                .filter(|t| !self.tube_exists(t))
                .cloned()
                .collect();
            for t in dead {
                self.tube_counts.remove(&t);
            }
        }

        pub fn connect(&mut self, c: ConnId) {
            self.total_connections += 1;
            self.conns.insert(
                c,
                Conn {
                    use_: "default".into(),
                    watch: vec!["default".into()],
                    wait: None,
                    producer: false,
                    worker: false,
                },
            );
        }

        /// The conn's reservations come back one by one, in the order they were made (each
        /// offered to waiters before the next), while the conn still holds its tubes; then
        /// it is gone.
        pub fn disconnect(&mut self, c: ConnId, out: &mut Out) {
            let Some(conn) = self.conns.get_mut(&c) else {
                return;
            };
            conn.wait = None;
            let mut held: Vec<(u64, JobId)> = self
                .jobs
                .iter()
                .filter(|(_, j)| matches!(j.st, St::Reserved { by, .. } if by == c))
                .map(|(&id, j)| (j.rseq, id))
                .collect();
            held.sort();
            for (_, id) in held {
                self.return_job(id, Return::Disconnect, out, !ENGINE_BATCH_HANDOUT_BUG);
            }
            self.conns.remove(&c);
            self.gc();
            self.process_queue(out);
        }

        pub fn cancel_wait(&mut self, c: ConnId) -> bool {
            self.conns
                .get_mut(&c)
                .is_some_and(|conn| conn.wait.take().is_some())
        }

        pub fn put_header(&mut self, c: ConnId) -> JobId {
            if let Some(conn) = self.conns.get_mut(&c) {
                conn.producer = true;
            }
            let id = self.next_id;
            self.next_id += 1;
            id
        }

        /// The body of a `put` (`key` None) or a `put-unique`.
        #[allow(clippy::too_many_arguments)]
        pub fn put_body(
            &mut self,
            c: ConnId,
            id: JobId,
            pri: u32,
            delay: u32,
            ttr: u32,
            key: Option<&str>,
            out: &mut Out,
        ) -> Reply {
            let tube = self.conns[&c].use_.clone();
            if let Some(other) = key.and_then(|k| self.key_holder(&tube, k)) {
                self.event("put-unique-exists");
                return Reply::Exists(other);
            }
            if let Some(p) = self.policies.get(&tube) {
                if p.max_ready > 0 && self.ready_in(&tube) >= p.max_ready {
                    self.event("max-ready-refused");
                    return Reply::OutOfMemory;
                }
            }
            if key.is_some() {
                self.event("put-unique-inserted");
            }
            let delay = u64::from(delay) * SECOND;
            let st = if delay > 0 {
                St::Delayed {
                    at: self.now + delay,
                }
            } else {
                St::Ready
            };
            self.counts_mut(&tube).total_jobs += 1;
            let job = Job {
                tube,
                pri,
                ttr: u64::from(ttr.max(1)) * SECOND,
                delay,
                created: self.now,
                st,
                rseq: 0,
                reserves: 0,
                timeouts: 0,
                releases: 0,
                buries: 0,
                kicks: 0,
                key: key.map(str::to_string),
                origin: None,
            };
            self.jobs.insert(id, job);
            self.total_jobs += 1;
            self.process_queue(out);
            Reply::Inserted(id)
        }

        /// `reserve` (timeout None), `reserve-with-timeout` or `reserve-batch` (`batch` > 0).
        /// `None` means the conn now waits.
        pub(crate) fn reserve(
            &mut self,
            c: ConnId,
            timeout: Option<u32>,
            batch: u32,
        ) -> Option<Reply> {
            self.conns.get_mut(&c)?.worker = true;
            if self.deadline_soon(c) && !self.any_ready(c) {
                return Some(Reply::DeadlineSoon);
            }
            self.seq += 1;
            let timeout_at = timeout.map(|t| self.now + u64::from(t) * SECOND);
            if let Some(conn) = self.conns.get_mut(&c) {
                conn.wait = Some(Wait {
                    seq: self.seq,
                    timeout_at,
                    batch,
                });
            }
            let mut mine = Vec::new();
            self.process_queue(&mut mine);
            // Only this conn can be served: nobody else waits on a tube with a ready job.
            assert!(mine.iter().all(|(to, _)| *to == c), "model: {mine:?}");
            if let Some((_, r)) = mine.into_iter().next() {
                return Some(r);
            }
            if timeout == Some(0) {
                self.cancel_wait(c);
                // As the wait timer would at once: DEADLINE_SOON takes precedence.
                if self.deadline_soon(c) {
                    return Some(Reply::DeadlineSoon);
                }
                return Some(Reply::TimedOut);
            }
            None
        }

        pub(crate) fn reserve_by_id(&mut self, c: ConnId, id: JobId) -> Reply {
            if let Some(conn) = self.conns.get_mut(&c) {
                conn.worker = true;
            }
            match self.jobs.get(&id).map(|j| j.st) {
                Some(St::Ready | St::Buried { .. } | St::Delayed { .. }) => self.reserve_job(c, id),
                _ => Reply::NotFound,
            }
        }

        fn held_by(&self, c: ConnId, id: JobId) -> bool {
            self.jobs
                .get(&id)
                .is_some_and(|j| matches!(j.st, St::Reserved { by, .. } if by == c))
        }

        /// May `c` act on job `id`: it exists, and if reserved, `c` holds it.
        fn may_touch(&self, c: ConnId, id: JobId) -> bool {
            match self.jobs.get(&id).map(|j| j.st) {
                None => false,
                Some(St::Reserved { by, .. }) => by == c,
                Some(_) => true,
            }
        }

        pub(crate) fn delete(&mut self, c: ConnId, id: JobId) -> Reply {
            if !self.may_touch(c, id) {
                return Reply::NotFound;
            }
            if let Some(j) = self.jobs.remove(&id) {
                self.counts_mut(&j.tube).cmd_delete += 1;
            }
            self.gc();
            Reply::Deleted
        }

        /// A job out of its reservation comes back: as its tube's policy says (exhausted,
        /// or delayed by the retry backoff), else ready or delayed by the release's delay.
        /// `offer`: offer a job that became ready to waiters at once.
        fn return_job(&mut self, id: JobId, how: Return, out: &mut Out, offer: bool) {
            let Some(j) = self.jobs.get(&id) else { return };
            let (tube, reserves) = (j.tube.clone(), j.reserves);
            let release_delay = match how {
                Return::Release(d) => d,
                _ => 0,
            };
            let delay = match self.policies.get(&tube).cloned() {
                None => release_delay,
                Some(p) if p.max_reserves > 0 && reserves >= p.max_reserves => {
                    self.exhaust(id, &tube, &p.on_exhaust, out);
                    return;
                }
                Some(_) if release_delay > 0 => release_delay,
                Some(p) => {
                    let d = p.backoff_secs(id, reserves);
                    if d > 0 {
                        self.event(match how {
                            Return::Release(_) => "backoff-after-release",
                            Return::Timeout => "backoff-after-timeout",
                            Return::Disconnect => "backoff-after-disconnect",
                        });
                        if matches!(p.backoff, Backoff::Exp { .. }) {
                            self.event("backoff-exp");
                        }
                        self.counts_mut(&tube).retries_delayed += 1;
                        if let Some(j) = self.jobs.get_mut(&id) {
                            j.delay = u64::from(d) * SECOND;
                        }
                    }
                    d
                }
            };
            let now = self.now;
            let j = self.jobs.get_mut(&id).expect("model job");
            if delay > 0 {
                j.st = St::Delayed {
                    at: now + u64::from(delay) * SECOND,
                };
            } else {
                j.st = St::Ready;
                if offer {
                    self.process_queue(out);
                }
            }
        }

        /// A job out of retries: buried, deleted, or moved ready to a dead-letter tube.
        fn exhaust(&mut self, id: JobId, tube: &str, action: &Exhaust, out: &mut Out) {
            match action {
                Exhaust::Bury => {
                    self.event("exhaust-bury");
                    self.bury_now(id);
                    if let Some(j) = self.jobs.get_mut(&id) {
                        j.buries += 1;
                    }
                }
                Exhaust::Delete => {
                    self.event("exhaust-delete");
                    self.jobs.remove(&id);
                    self.gc();
                }
                Exhaust::Tube(to) => {
                    self.counts_mut(tube).dead_lettered += 1;
                    if to != tube {
                        self.event("exhaust-dead-letter");
                        self.move_key(id, to);
                        if let Some(j) = self.jobs.get_mut(&id) {
                            j.origin = Some(tube.to_string());
                            j.tube = to.clone();
                        }
                    } else {
                        self.event("exhaust-dead-letter-own-tube");
                    }
                    self.make_ready(id);
                    self.process_queue(out);
                    self.gc();
                }
            }
        }

        /// Job `id` is about to move to tube `to`: it keeps its key unless a job of `to`
        /// holds that key.
        fn move_key(&mut self, id: JobId, to: &str) {
            let Some(k) = self.jobs.get(&id).and_then(|j| j.key.clone()) else {
                return;
            };
            if self.key_holder(to, &k).is_some() {
                self.event("key-lost-on-move");
                if let Some(j) = self.jobs.get_mut(&id) {
                    j.key = None;
                }
            } else {
                self.event("key-moved");
            }
        }

        pub(crate) fn release(
            &mut self,
            c: ConnId,
            id: JobId,
            pri: u32,
            delay: u32,
            out: &mut Out,
        ) -> Reply {
            if !self.held_by(c, id) {
                return Reply::NotFound;
            }
            let j = self.jobs.get_mut(&id).expect("held job");
            j.pri = pri;
            j.delay = u64::from(delay) * SECOND;
            j.releases += 1;
            self.return_job(id, Return::Release(delay), out, true);
            Reply::Released
        }

        pub(crate) fn bury(&mut self, c: ConnId, id: JobId, pri: u32) -> Reply {
            if !self.held_by(c, id) {
                return Reply::NotFound;
            }
            self.bury_now(id);
            let j = self.jobs.get_mut(&id).expect("held job");
            j.pri = pri;
            j.buries += 1;
            Reply::Buried
        }

        pub(crate) fn touch(&mut self, c: ConnId, id: JobId) -> Reply {
            if !self.held_by(c, id) {
                return Reply::NotFound;
            }
            let now = self.now;
            let j = self.jobs.get_mut(&id).expect("held job");
            j.st = St::Reserved {
                by: c,
                deadline: now + j.ttr,
            };
            Reply::Touched
        }

        pub(crate) fn kick(&mut self, c: ConnId, n: u32, out: &mut Out) -> Reply {
            let t = self.conns[&c].use_.clone();
            let mut buried: Vec<(u64, JobId)> = Vec::new();
            let mut delayed: Vec<(u64, JobId)> = Vec::new();
            for (&id, j) in &self.jobs {
                if j.tube != t {
                    continue;
                }
                match j.st {
                    St::Buried { seq } => buried.push((seq, id)),
                    St::Delayed { at } => delayed.push((at, id)),
                    _ => {}
                }
            }
            let mut from = if buried.is_empty() { delayed } else { buried };
            from.sort();
            from.truncate(n as usize);
            for &(_, id) in &from {
                self.make_ready(id);
                if let Some(j) = self.jobs.get_mut(&id) {
                    j.kicks += 1;
                }
                if !ENGINE_BATCH_HANDOUT_BUG {
                    self.process_queue(out);
                }
            }
            self.process_queue(out);
            Reply::Kicked(from.len() as u64)
        }

        pub(crate) fn kick_job(&mut self, id: JobId, out: &mut Out) -> Reply {
            match self.jobs.get_mut(&id) {
                Some(j) if matches!(j.st, St::Buried { .. } | St::Delayed { .. }) => {
                    j.st = St::Ready;
                    j.kicks += 1;
                }
                _ => return Reply::NotFound,
            }
            self.process_queue(out);
            Reply::KickedJob
        }

        pub(crate) fn use_(&mut self, c: ConnId, t: &str) -> Reply {
            if let Some(conn) = self.conns.get_mut(&c) {
                conn.use_ = t.into();
            }
            self.gc();
            Reply::Using(t.into())
        }

        pub(crate) fn watch(&mut self, c: ConnId, t: &str) -> Reply {
            let conn = self.conns.get_mut(&c).expect("model conn");
            if !conn.watch.iter().any(|w| w == t) {
                conn.watch.push(t.into());
            }
            Reply::Watching(conn.watch.len())
        }

        pub(crate) fn ignore(&mut self, c: ConnId, t: &str) -> Reply {
            let conn = self.conns.get_mut(&c).expect("model conn");
            if let Some(pos) = conn.watch.iter().position(|w| w == t) {
                if conn.watch.len() < 2 {
                    return Reply::NotIgnored;
                }
                conn.watch.swap_remove(pos);
            }
            let n = conn.watch.len();
            self.gc();
            Reply::Watching(n)
        }

        pub(crate) fn pause(&mut self, t: &str, delay: u32) -> Reply {
            if !self.tube_exists(t) {
                return Reply::NotFound;
            }
            let d = (u64::from(delay) * SECOND).max(1);
            self.pauses.insert(t.into(), (self.now + d, d));
            self.counts_mut(t).cmd_pause += 1;
            Reply::Paused
        }

        fn peek_where(&self, t: &str, key: impl Fn(&Job) -> Option<(u64, u64)>) -> Reply {
            self.jobs
                .iter()
                .filter(|(_, j)| j.tube == t)
                .filter_map(|(&id, j)| key(j).map(|k| (k, id)))
                .min()
                .map_or(Reply::NotFound, |(_, id)| Reply::Found {
                    id,
                    body: body(id),
                })
        }

        pub(crate) fn peek_ready(&self, c: ConnId) -> Reply {
            self.peek_where(&self.conns[&c].use_, |j| {
                (j.st == St::Ready).then_some((u64::from(j.pri), 0))
            })
        }

        pub(crate) fn peek_delayed(&self, c: ConnId) -> Reply {
            self.peek_where(&self.conns[&c].use_, |j| match j.st {
                St::Delayed { at } => Some((at, 0)),
                _ => None,
            })
        }

        pub(crate) fn peek_buried(&self, c: ConnId) -> Reply {
            self.peek_where(&self.conns[&c].use_, |j| match j.st {
                St::Buried { seq } => Some((seq, 0)),
                _ => None,
            })
        }

        // ----- sprout's own commands ----------------------------------------------------

        /// `flush-tube`: the tube's ready, delayed and buried jobs are gone at once (their
        /// keys free); the tube itself lives until the engine has freed them (next tick).
        pub(crate) fn flush(&mut self, t: &str) -> Reply {
            if !self.tube_exists(t) {
                return Reply::Flushed(0);
            }
            let gone: Vec<JobId> = self
                .jobs
                .iter()
                .filter(|(_, j)| j.tube == t && !matches!(j.st, St::Reserved { .. }))
                .map(|(&id, _)| id)
                .collect();
            for id in &gone {
                self.jobs.remove(id);
            }
            let n = gone.len() as u64;
            if n > 0 {
                self.event("flushed-jobs");
                *self.dead.entry(t.to_string()).or_default() += n;
            }
            self.freeing |= n > 0 || ENGINE_EMPTY_FLUSH_WAKEUP_BUG;
            Reply::Flushed(n)
        }

        pub(crate) fn list_jobs(
            &self,
            t: &str,
            state: ListState,
            after: JobId,
            limit: u32,
        ) -> Reply {
            Reply::Ids(
                self.jobs
                    .range(after.saturating_add(1)..)
                    .filter(|&(&id, j)| id > after && j.tube == t && j.st.name() == state.name())
                    .map(|(&id, _)| id)
                    .take(limit as usize)
                    .collect(),
            )
        }

        pub(crate) fn reprioritize(&mut self, c: ConnId, id: JobId, pri: u32) -> Reply {
            if !self.may_touch(c, id) {
                return Reply::NotFound;
            }
            self.event(match self.jobs[&id].st {
                St::Ready => "reprioritized-ready",
                St::Reserved { .. } => "reprioritized-reserved",
                _ => "reprioritized-other",
            });
            if let Some(j) = self.jobs.get_mut(&id) {
                j.pri = pri;
            }
            Reply::Reprioritized
        }

        /// `move-job`: same state in tube `to` (a buried job at the end of its buried
        /// list); a ready one is offered to `to`'s waiters.
        pub(crate) fn move_job(&mut self, c: ConnId, id: JobId, to: &str, out: &mut Out) -> Reply {
            if !self.may_touch(c, id) {
                return Reply::NotFound;
            }
            let (from, st) = {
                let j = &self.jobs[&id];
                (j.tube.clone(), j.st)
            };
            if from == to {
                self.event("moved-to-own-tube");
                return Reply::Moved;
            }
            self.event(match st {
                St::Ready => "moved-ready",
                St::Delayed { .. } => "moved-delayed",
                St::Reserved { .. } => "moved-reserved",
                St::Buried { .. } => "moved-buried",
            });
            self.move_key(id, to);
            if let Some(j) = self.jobs.get_mut(&id) {
                j.tube = to.to_string();
            }
            match st {
                St::Ready => self.process_queue(out),
                St::Buried { .. } => self.bury_now(id),
                St::Delayed { .. } | St::Reserved { .. } => {}
            }
            self.gc();
            Reply::Moved
        }

        /// `tube-policy <tube>`: the policy (all defaults for none) of an existing tube.
        pub(crate) fn show_policy(&self, t: &str) -> Reply {
            if !self.tube_exists(t) {
                return Reply::NotFound;
            }
            Reply::Yaml(self.policies.get(t).cloned().unwrap_or_default().yaml())
        }

        /// `tube-policy <tube> [<key> <value>]`.
        pub(crate) fn tube_policy(&mut self, t: &str, set: Option<PolicySet>) -> Reply {
            let Some(set) = set else {
                return self.show_policy(t);
            };
            let mut p = self.policies.get(t).cloned().unwrap_or_default();
            match set {
                PolicySet::MaxReserves(n) => p.max_reserves = n,
                PolicySet::OnExhaust(e) => p.on_exhaust = e,
                PolicySet::RetryBackoff(b) => p.backoff = b,
                PolicySet::MaxReady(n) => p.max_ready = n,
            }
            if p == Pol::default() {
                if self.policies.remove(t).is_some() {
                    self.event("policy-removed");
                }
            } else {
                self.policies.insert(t.to_string(), p);
            }
            self.gc();
            Reply::Ok
        }

        /// Everything due at `now`, in the engine's documented order for events that fall
        /// in the same tick: memory a flush left is freed, then delayed jobs, pauses,
        /// hand-outs, expired reservations (by deadline, id), then waiting conns' timers (by
        /// time, conn).
        pub fn tick(&mut self, now: u64, out: &mut Out) {
            self.now = now;
            if self.freeing {
                let n: u64 = self.dead.values().sum();
                assert!(n <= FREED_PER_TICK, "model: {n} flushed jobs at once");
                self.dead.clear();
                self.freeing = false;
                self.gc();
            }
            for j in self.jobs.values_mut() {
                if matches!(j.st, St::Delayed { at } if at <= now) {
                    j.st = St::Ready;
                }
            }
            self.pauses.retain(|_, p| p.0 > now);
            self.process_queue(out);
            loop {
                let due = self
                    .jobs
                    .iter()
                    .filter_map(|(&id, j)| match j.st {
                        St::Reserved { deadline, .. } if deadline <= now => Some((deadline, id)),
                        _ => None,
                    })
                    .min();
                let Some((_, id)) = due else { break };
                if let Some(j) = self.jobs.get_mut(&id) {
                    j.timeouts += 1;
                }
                self.job_timeouts += 1;
                self.return_job(id, Return::Timeout, out, true);
                self.process_queue(out);
            }
            let mut due: Vec<(u64, ConnId)> = self
                .conns
                .keys()
                .filter_map(|&c| self.wait_timer(c).filter(|&t| t <= now).map(|t| (t, c)))
                .collect();
            due.sort();
            for (_, c) in due {
                let r = if self.deadline_soon(c) {
                    Reply::DeadlineSoon
                } else {
                    Reply::TimedOut
                };
                self.cancel_wait(c);
                out.push((c, r));
            }
        }
    }
}

const TUBES: [&str; 3] = ["default", "a", "b"];
const SLOTS: usize = 4;
const STATES: [ListState; 4] = [
    ListState::Ready,
    ListState::Delayed,
    ListState::Buried,
    ListState::Reserved,
];
const KEYS: [&str; 3] = ["k0", "k1", "k2"];

#[derive(Debug, Clone)]
enum Op {
    Connect(usize),
    Disconnect(usize),
    CancelWait(usize),
    Put {
        slot: usize,
        pri: u32,
        delay: u32,
        ttr: u32,
    },
    /// A put whose body never arrives.
    PutHeader(usize),
    Use(usize, usize),
    Watch(usize, usize),
    Ignore(usize, usize),
    Reserve(usize),
    ReserveTimeout(usize, u32),
    ReserveJob(usize, u16),
    Delete(usize, u16),
    Release {
        slot: usize,
        job: u16,
        pri: u32,
        delay: u32,
    },
    Bury(usize, u16, u32),
    Touch(usize, u16),
    Kick(usize, u32),
    KickJob(usize, u16),
    Pause(usize, usize, u32),
    PeekReady(usize),
    PeekDelayed(usize),
    PeekBuried(usize),
    Advance(u64),
    /// Advance with a single, late tick (the timer task ran late): everything due in
    /// between happens at once.
    AdvanceLate(u64),
    /// Advance to the next wakeup, or 1 ns before it.
    ToWakeup(bool),
    // sprout's own commands
    /// (slot, tube, steps): a tube index past `TUBES` means the slot's used tube; for
    /// `steps` steps, this one included, the Sim leaves the freeing of flushed jobs pending
    /// (as when commands come before the timer task runs).
    FlushTube(usize, usize, u8),
    ListJobs {
        slot: usize,
        tube: usize,
        state: usize,
        /// An id selector (see `Sim::after`).
        after: u16,
        limit: u32,
    },
    Reprioritize(usize, u16, u32),
    MoveJob(usize, u16, usize),
    /// (slot, max, timeout)
    ReserveBatch(usize, u32, u32),
    PutUnique {
        slot: usize,
        key: usize,
        pri: u32,
        delay: u32,
        ttr: u32,
    },
    /// One `tube-policy` command per setting.
    SetPolicy(usize, usize, Vec<PolicySet>),
    ShowPolicy(usize, usize),
    /// Every policy field back to its default, one `tube-policy` each.
    ClearPolicy(usize, usize),
}

fn pri_strategy() -> impl Strategy<Value = u32> {
    prop_oneof![0u32..4, 1022u32..1027, Just(u32::MAX)]
}

/// One `tube-policy` setting, with small values so that limits are reached.
fn policy_set_strategy() -> impl Strategy<Value = PolicySet> {
    let exhaust = prop_oneof![
        1 => Just(Exhaust::Bury),
        1 => Just(Exhaust::Delete),
        3 => (0..TUBES.len()).prop_map(|t| Exhaust::Tube(TUBES[t].into())),
    ];
    let backoff = prop_oneof![
        1 => Just(Backoff::None),
        1 => (0u32..=2).prop_map(Backoff::Fixed),
        2 => (1u32..=2, 0u32..=3).prop_map(|(base, more)| Backoff::Exp {
            base,
            cap: base + more
        }),
    ];
    prop_oneof![
        prop_oneof![1 => Just(0u32), 2 => 1u32..=2, 1 => Just(3)].prop_map(PolicySet::MaxReserves),
        exhaust.prop_map(PolicySet::OnExhaust),
        backoff.prop_map(PolicySet::RetryBackoff),
        prop_oneof![2 => Just(0u64), 1 => 1u64..=3].prop_map(PolicySet::MaxReady),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let slot = 0..SLOTS;
    let tube = 0..TUBES.len();
    let ext = prop_oneof![
        2 => (slot.clone(), 0..TUBES.len() + 2, prop_oneof![Just(0u8), 1u8..=8])
            .prop_map(|(s, t, lazy)| Op::FlushTube(s, t, lazy)),
        1 => (slot.clone(), tube.clone(), 0..STATES.len(), any::<u16>(), prop_oneof![1u32..=3, Just(1000)])
            .prop_map(|(slot, tube, state, after, limit)| Op::ListJobs { slot, tube, state, after, limit }),
        2 => (slot.clone(), any::<u16>(), pri_strategy()).prop_map(|(s, j, p)| Op::Reprioritize(s, j, p)),
        2 => (slot.clone(), any::<u16>(), tube.clone()).prop_map(|(s, j, t)| Op::MoveJob(s, j, t)),
        3 => (slot.clone(), prop_oneof![3 => 1u32..=3, 1 => Just(1000)], 0u32..=3)
            .prop_map(|(s, m, t)| Op::ReserveBatch(s, m, t)),
        3 => (slot.clone(), 0..KEYS.len(), pri_strategy(), prop_oneof![3 => Just(0u32), 1 => 1u32..=3], 0u32..=3)
            .prop_map(|(slot, key, pri, delay, ttr)| Op::PutUnique { slot, key, pri, delay, ttr }),
        3 => (slot.clone(), tube.clone(), prop::collection::vec(policy_set_strategy(), 1..=3))
            .prop_map(|(s, t, p)| Op::SetPolicy(s, t, p)),
        1 => (slot.clone(), tube.clone()).prop_map(|(s, t)| Op::ShowPolicy(s, t)),
        1 => (slot.clone(), tube.clone()).prop_map(|(s, t)| Op::ClearPolicy(s, t)),
    ];
    let base = prop_oneof![
        2 => slot.clone().prop_map(Op::Connect),
        2 => slot.clone().prop_map(Op::Disconnect),
        1 => slot.clone().prop_map(Op::CancelWait),
        8 => (slot.clone(), pri_strategy(), prop_oneof![3 => Just(0u32), 2 => 1u32..=3], 0u32..=3)
            .prop_map(|(slot, pri, delay, ttr)| Op::Put { slot, pri, delay, ttr }),
        1 => slot.clone().prop_map(Op::PutHeader),
        2 => (slot.clone(), tube.clone()).prop_map(|(s, t)| Op::Use(s, t)),
        2 => (slot.clone(), tube.clone()).prop_map(|(s, t)| Op::Watch(s, t)),
        2 => (slot.clone(), tube.clone()).prop_map(|(s, t)| Op::Ignore(s, t)),
        3 => slot.clone().prop_map(Op::Reserve),
        3 => (slot.clone(), 0u32..=3).prop_map(|(s, t)| Op::ReserveTimeout(s, t)),
        2 => (slot.clone(), any::<u16>()).prop_map(|(s, j)| Op::ReserveJob(s, j)),
        3 => (slot.clone(), any::<u16>()).prop_map(|(s, j)| Op::Delete(s, j)),
        3 => (slot.clone(), any::<u16>(), pri_strategy(), prop_oneof![Just(0u32), 1u32..=2])
            .prop_map(|(slot, job, pri, delay)| Op::Release { slot, job, pri, delay }),
        2 => (slot.clone(), any::<u16>(), pri_strategy()).prop_map(|(s, j, p)| Op::Bury(s, j, p)),
        2 => (slot.clone(), any::<u16>()).prop_map(|(s, j)| Op::Touch(s, j)),
        3 => (slot.clone(), 0u32..=3).prop_map(|(s, n)| Op::Kick(s, n)),
        1 => (slot.clone(), any::<u16>()).prop_map(|(s, j)| Op::KickJob(s, j)),
        1 => (slot.clone(), tube.clone(), 0u32..=3).prop_map(|(s, t, d)| Op::Pause(s, t, d)),
        1 => slot.clone().prop_map(Op::PeekReady),
        1 => slot.clone().prop_map(Op::PeekDelayed),
        1 => slot.prop_map(Op::PeekBuried),
        6 => (0u64..2_500_000_000).prop_map(Op::Advance),
        1 => (0u64..4_000_000_000).prop_map(Op::AdvanceLate),
        2 => any::<bool>().prop_map(Op::ToWakeup),
    ];
    // With the longer runs of `engine_matches_model`, beanstalkd's commands get about as
    // many steps per case as before sprout's own were added.
    prop_oneof![55 => base, 18 => ext]
}

/// Drives the engine and the model side by side and compares everything after every step.
struct Sim {
    e: Engine,
    m: model::Model,
    now: u64,
    /// Engine connection per slot.
    slots: [Option<ConnId>; SLOTS],
    /// A connection that only looks (stats, stats-job, stats-tube, list-tubes).
    obs: ConnId,
    out: Deliveries,
    step: usize,
    /// Steps left during which freeing that alone is due is left pending.
    lazy: u8,
}

impl Sim {
    fn new() -> Self {
        let mut e = Engine::new();
        let mut m = model::Model::new(T0);
        let obs = e.connect();
        m.connect(obs);
        let mut slots = [None; SLOTS];
        for s in &mut slots {
            let c = e.connect();
            m.connect(c);
            *s = Some(c);
        }
        Sim {
            e,
            m,
            now: T0,
            slots,
            obs,
            out: Vec::new(),
            step: 0,
            lazy: 0,
        }
    }

    /// A connected slot that is not blocked in a reserve (the server sends nothing else
    /// for a blocked connection).
    fn free(&self, slot: usize) -> Option<ConnId> {
        self.slots[slot].filter(|&c| !self.e.is_waiting(c))
    }

    /// Job id for a selector: mostly an existing job (preferring the slot's own
    /// reservations), sometimes any id ever handed out, or one never used.
    fn pick(&self, c: ConnId, sel: u16) -> JobId {
        let sel = u64::from(sel);
        let ids: Vec<JobId> = self.m.jobs.keys().copied().collect();
        let mine: Vec<JobId> = self
            .m
            .jobs
            .iter()
            .filter(|(_, j)| matches!(j.st, model::St::Reserved { by, .. } if by == c))
            .map(|(&id, _)| id)
            .collect();
        match sel % 4 {
            0 => sel / 4 % (self.m.next_id + 1),
            1 if !mine.is_empty() => mine[(sel / 4) as usize % mine.len()],
            _ if !ids.is_empty() => ids[(sel / 4) as usize % ids.len()],
            _ => sel / 4 % (self.m.next_id + 1),
        }
    }

    /// As `pick`, but mostly one of the slot's own reservations when it holds some (for
    /// the commands that only act on those).
    fn pick_held(&self, c: ConnId, sel: u16) -> JobId {
        let mine: Vec<JobId> = self
            .m
            .jobs
            .iter()
            .filter(|(_, j)| matches!(j.st, model::St::Reserved { by, .. } if by == c))
            .map(|(&id, _)| id)
            .collect();
        if mine.is_empty() || sel.is_multiple_of(4) {
            return self.pick(c, sel / 4);
        }
        mine[usize::from(sel / 4) % mine.len()]
    }

    /// As `pick`, but often a job in a given state (for the commands that act on jobs in
    /// every state).
    fn pick_any_state(&self, c: ConnId, sel: u16) -> JobId {
        let state = ["ready", "delayed", "buried", "reserved"][usize::from(sel % 4)];
        let ids: Vec<JobId> = self
            .m
            .jobs
            .iter()
            .filter(|(_, j)| j.st.name() == state)
            .map(|(&id, _)| id)
            .collect();
        if ids.is_empty() || (sel / 4).is_multiple_of(3) {
            return self.pick(c, sel / 4);
        }
        ids[usize::from(sel / 12) % ids.len()]
    }

    /// An `after` id for `list-jobs`: 0, the largest id, an id near a job's.
    fn after(&self, c: ConnId, sel: u16) -> JobId {
        match sel % 4 {
            0 => 0,
            1 => u64::MAX,
            2 => self.pick(c, sel / 4),
            _ => self.pick(c, sel / 4).saturating_sub(1),
        }
    }

    fn ctx(&self, what: &str) -> String {
        format!("step {} at +{}ns: {what}", self.step, self.now - T0)
    }

    fn engine_check(&self, what: &str) {
        if let Err(m) = self.e.check_invariants() {
            panic!("{}: invariants broken: {m}", self.ctx(what));
        }
    }

    fn compare_out(&mut self, want: model::Out, what: &str) {
        let got = std::mem::take(&mut self.out);
        assert_eq!(got, want, "{}: deliveries", self.ctx(what));
    }

    fn tick(&mut self, t: u64) {
        self.now = t;
        self.e.tick(t, &mut self.out);
        let mut want = Vec::new();
        self.m.tick(t, &mut want);
        self.engine_check("tick");
        self.compare_out(want, "tick");
        if let Some(w) = self.e.next_wakeup() {
            assert!(w > t, "{}: tick left work due at {w}", self.ctx("tick"));
        }
    }

    /// Moves the clock to `target`, ticking at every wakeup on the way (as the server's
    /// timer task does), then at `target`.
    fn advance_to(&mut self, target: u64) {
        for _ in 0..10_000 {
            let w = self.e.next_wakeup();
            assert_eq!(
                w,
                self.m.next_wakeup(),
                "{}: next_wakeup",
                self.ctx("advance")
            );
            match w {
                Some(w) if w <= target => self.tick(w.max(self.now)),
                _ => {
                    self.tick(target);
                    return;
                }
            }
        }
        panic!("{}: tick loop did not settle", self.ctx("advance"));
    }

    fn exec(&mut self, c: ConnId, cmd: Command) -> Outcome {
        self.e.execute(c, cmd, self.now, &mut self.out)
    }

    fn reply(&mut self, c: ConnId, cmd: Command, want: Reply) {
        let what = format!("conn {c} {cmd:?}");
        let got = self.exec(c, cmd);
        self.engine_check(&what);
        assert_eq!(got, Outcome::Reply(want), "{}", self.ctx(&what));
    }

    fn run(&mut self, op: &Op) {
        let mut want: model::Out = Vec::new();
        let what = format!("{op:?}");
        match *op {
            Op::Connect(s) => {
                if self.slots[s].is_none() {
                    let c = self.e.connect();
                    self.m.connect(c);
                    self.slots[s] = Some(c);
                }
            }
            Op::Disconnect(s) => {
                if let Some(c) = self.slots[s].take() {
                    self.e.disconnect(c, self.now, &mut self.out);
                    self.m.disconnect(c, &mut want);
                }
            }
            Op::CancelWait(s) => {
                if let Some(c) = self.slots[s] {
                    let got = self.e.cancel_wait(c);
                    assert_eq!(got, self.m.cancel_wait(c), "{}", self.ctx(&what));
                }
            }
            Op::Put {
                slot,
                pri,
                delay,
                ttr,
            } => {
                if let Some(c) = self.free(slot) {
                    let id = self.e.put_header(c);
                    assert_eq!(id, self.m.put_header(c), "{}: id", self.ctx(&what));
                    self.engine_check(&what);
                    let h = hdr(pri, delay, ttr);
                    let r = self.e.put_body(c, id, h, body(id), self.now, &mut self.out);
                    let w = self.m.put_body(c, id, pri, delay, ttr, None, &mut want);
                    assert_eq!(r, w, "{}", self.ctx(&what));
                }
            }
            Op::PutHeader(s) => {
                if let Some(c) = self.free(s) {
                    let id = self.e.put_header(c);
                    assert_eq!(id, self.m.put_header(c), "{}: id", self.ctx(&what));
                }
            }
            Op::Use(s, t) => {
                if let Some(c) = self.free(s) {
                    let w = self.m.use_(c, TUBES[t]);
                    self.reply(c, use_(TUBES[t]), w);
                }
            }
            Op::Watch(s, t) => {
                if let Some(c) = self.free(s) {
                    let w = self.m.watch(c, TUBES[t]);
                    self.reply(c, watch(TUBES[t]), w);
                }
            }
            Op::Ignore(s, t) => {
                if let Some(c) = self.free(s) {
                    let w = self.m.ignore(c, TUBES[t]);
                    self.reply(c, ignore(TUBES[t]), w);
                }
            }
            Op::Reserve(s) | Op::ReserveTimeout(s, _) => {
                if let Some(c) = self.free(s) {
                    let (cmd, timeout) = match *op {
                        Op::ReserveTimeout(_, t) => (Command::ReserveWithTimeout(t), Some(t)),
                        _ => (Command::Reserve, None),
                    };
                    let got = self.exec(c, cmd);
                    let w = match self.m.reserve(c, timeout, 0) {
                        Some(r) => Outcome::Reply(r),
                        None => Outcome::Wait,
                    };
                    assert_eq!(got, w, "{}", self.ctx(&what));
                }
            }
            Op::ReserveJob(s, j) => {
                if let Some(c) = self.free(s) {
                    let id = self.pick(c, j);
                    let w = self.m.reserve_by_id(c, id);
                    self.reply(c, Command::ReserveJob(id), w);
                }
            }
            Op::Delete(s, j) => {
                if let Some(c) = self.free(s) {
                    let id = self.pick(c, j);
                    let w = self.m.delete(c, id);
                    self.reply(c, Command::Delete(id), w);
                }
            }
            Op::Release {
                slot,
                job,
                pri,
                delay,
            } => {
                if let Some(c) = self.free(slot) {
                    let id = self.pick_held(c, job);
                    let w = self.m.release(c, id, pri, delay, &mut want);
                    self.reply(c, release(id, pri, delay), w);
                }
            }
            Op::Bury(s, j, pri) => {
                if let Some(c) = self.free(s) {
                    let id = self.pick_held(c, j);
                    let w = self.m.bury(c, id, pri);
                    self.reply(c, bury(id, pri), w);
                }
            }
            Op::Touch(s, j) => {
                if let Some(c) = self.free(s) {
                    let id = self.pick_held(c, j);
                    let w = self.m.touch(c, id);
                    self.reply(c, Command::Touch(id), w);
                }
            }
            Op::Kick(s, n) => {
                if let Some(c) = self.free(s) {
                    let w = self.m.kick(c, n, &mut want);
                    self.reply(c, Command::Kick(n), w);
                }
            }
            Op::KickJob(s, j) => {
                if let Some(c) = self.free(s) {
                    let id = self.pick(c, j);
                    let w = self.m.kick_job(id, &mut want);
                    self.reply(c, Command::KickJob(id), w);
                }
            }
            Op::Pause(s, t, d) => {
                if let Some(c) = self.free(s) {
                    let w = self.m.pause(TUBES[t], d);
                    self.reply(c, pause(TUBES[t], d), w);
                }
            }
            Op::PeekReady(s) => {
                if let Some(c) = self.free(s) {
                    let w = self.m.peek_ready(c);
                    self.reply(c, Command::PeekReady, w);
                }
            }
            Op::PeekDelayed(s) => {
                if let Some(c) = self.free(s) {
                    let w = self.m.peek_delayed(c);
                    self.reply(c, Command::PeekDelayed, w);
                }
            }
            Op::PeekBuried(s) => {
                if let Some(c) = self.free(s) {
                    let w = self.m.peek_buried(c);
                    self.reply(c, Command::PeekBuried, w);
                }
            }
            Op::Advance(dt) => {
                let target = self.now + dt;
                self.advance_to(target);
            }
            Op::AdvanceLate(dt) => {
                let target = self.now + dt;
                self.tick(target);
            }
            Op::ToWakeup(exact) => {
                if let Some(w) = self.m.next_wakeup() {
                    let target = if exact { w } else { w.saturating_sub(1) };
                    self.advance_to(target.max(self.now));
                }
            }
            Op::FlushTube(s, t, lazy) => {
                if let Some(c) = self.free(s) {
                    self.lazy = lazy;
                    // Past the tube names: the tube the slot uses (where it puts next).
                    let t = match TUBES.get(t) {
                        Some(t) => t.to_string(),
                        None => self.m.conns[&c].use_.clone(),
                    };
                    let w = self.m.flush(&t);
                    self.reply(c, Command::FlushTube(t), w);
                }
            }
            Op::ListJobs {
                slot,
                tube,
                state,
                after,
                limit,
            } => {
                if let Some(c) = self.free(slot) {
                    let after = self.after(c, after);
                    let w = self.m.list_jobs(TUBES[tube], STATES[state], after, limit);
                    let cmd = Command::ListJobs {
                        tube: TUBES[tube].into(),
                        state: STATES[state],
                        after,
                        limit,
                    };
                    self.reply(c, cmd, w);
                }
            }
            Op::Reprioritize(s, j, pri) => {
                if let Some(c) = self.free(s) {
                    let id = self.pick_any_state(c, j);
                    let w = self.m.reprioritize(c, id, pri);
                    self.reply(c, Command::Reprioritize { id, pri }, w);
                }
            }
            Op::MoveJob(s, j, t) => {
                if let Some(c) = self.free(s) {
                    let id = self.pick_any_state(c, j);
                    let w = self.m.move_job(c, id, TUBES[t], &mut want);
                    let cmd = Command::MoveJob {
                        id,
                        tube: TUBES[t].into(),
                    };
                    self.reply(c, cmd, w);
                }
            }
            Op::ReserveBatch(s, max, timeout) => {
                if let Some(c) = self.free(s) {
                    let got = self.exec(c, Command::ReserveBatch { max, timeout });
                    let w = match self.m.reserve(c, Some(timeout), max) {
                        Some(r) => Outcome::Reply(r),
                        None => Outcome::Wait,
                    };
                    assert_eq!(got, w, "{}", self.ctx(&what));
                }
            }
            Op::PutUnique {
                slot,
                key,
                pri,
                delay,
                ttr,
            } => {
                if let Some(c) = self.free(slot) {
                    let id = self.e.put_header(c);
                    assert_eq!(id, self.m.put_header(c), "{}: id", self.ctx(&what));
                    self.engine_check(&what);
                    let h = hdr(pri, delay, ttr);
                    let k = Some(KEYS[key]);
                    let r = match self.e.put_admit_key(c, id, h, body(id), k, self.now) {
                        Ok(p) => self.e.put_apply(p, self.now, &mut self.out),
                        Err(r) => r,
                    };
                    let w = self.m.put_body(c, id, pri, delay, ttr, k, &mut want);
                    assert_eq!(r, w, "{}", self.ctx(&what));
                }
            }
            Op::SetPolicy(s, t, ref sets) => {
                if let Some(c) = self.free(s) {
                    for set in sets {
                        let w = self.m.tube_policy(TUBES[t], Some(set.clone()));
                        let cmd = Command::TubePolicy {
                            tube: TUBES[t].into(),
                            set: Some(set.clone()),
                        };
                        self.reply(c, cmd, w);
                    }
                }
            }
            Op::ShowPolicy(s, t) => {
                if let Some(c) = self.free(s) {
                    let w = self.m.tube_policy(TUBES[t], None);
                    let cmd = Command::TubePolicy {
                        tube: TUBES[t].into(),
                        set: None,
                    };
                    self.reply(c, cmd, w);
                }
            }
            Op::ClearPolicy(s, t) => {
                if let Some(c) = self.free(s) {
                    for set in [
                        PolicySet::MaxReserves(0),
                        PolicySet::OnExhaust(Exhaust::Bury),
                        PolicySet::RetryBackoff(Backoff::None),
                        PolicySet::MaxReady(0),
                    ] {
                        let w = self.m.tube_policy(TUBES[t], Some(set.clone()));
                        let cmd = Command::TubePolicy {
                            tube: TUBES[t].into(),
                            set: Some(set),
                        };
                        self.reply(c, cmd, w);
                    }
                }
            }
        }
        self.engine_check(&what);
        self.compare_out(want, &what);
        // Before anything due runs (after a flush: its freeing, due at once).
        assert_eq!(
            self.e.next_wakeup(),
            self.m.next_wakeup(),
            "{}: next_wakeup",
            self.ctx(&what)
        );
        // As the server does: a timer already due (a waiter whose deadline-soon point has
        // passed, or a flush's freeing) is run at once; but commands may come first while
        // only freeing is due.
        let lazy = self.lazy > 0 && self.m.next_timer().is_none_or(|w| w > self.now);
        self.lazy = self.lazy.saturating_sub(1);
        if !lazy && self.e.next_wakeup().is_some_and(|w| w <= self.now) {
            self.tick(self.now);
        }
        self.compare_all(&what);
    }

    fn compare_all(&mut self, what: &str) {
        let ctx = self.ctx(what);
        let m = &self.m;
        assert_eq!(self.e.next_wakeup(), m.next_wakeup(), "{ctx}: next_wakeup");

        // Every job: exists with the same state and fields; every other id is unknown.
        // The engine holds flushed jobs until it frees them.
        let held = m.jobs.len() + m.dead.values().sum::<u64>() as usize;
        assert_eq!(self.e.job_count(), held, "{ctx}: job count");
        let mut want_jobs = Vec::new();
        for (&id, j) in &m.jobs {
            let time_left = match j.st {
                model::St::Delayed { at } => ((at - self.now) / S) as i64,
                model::St::Reserved { deadline, .. } => ((deadline - self.now) / S) as i64,
                _ => 0,
            };
            want_jobs.push((
                id,
                Reply::StatsJob(Box::new(JobStats {
                    origin: j.origin.as_deref().map(Into::into),
                    id,
                    tube: j.tube.as_str().into(),
                    state: j.st.name(),
                    pri: j.pri,
                    age: ((self.now - j.created) / S) as i64,
                    delay: j.delay / S,
                    ttr: j.ttr / S,
                    time_left,
                    file: 0,
                    reserves: j.reserves,
                    timeouts: j.timeouts,
                    releases: j.releases,
                    buries: j.buries,
                    kicks: j.kicks,
                })),
            ));
        }
        let keys: Vec<(JobId, Option<String>)> =
            m.jobs.iter().map(|(&id, j)| (id, j.key.clone())).collect();
        let reserved_by: Vec<(JobId, ConnId)> = m
            .jobs
            .iter()
            .filter_map(|(&id, j)| match j.st {
                model::St::Reserved { by, .. } => Some((id, by)),
                _ => None,
            })
            .collect();
        let urgent = m.count(|j| j.st == model::St::Ready && j.pri < 1024);
        let ready = m.count(|j| j.st == model::St::Ready);
        let reserved = m.count(|j| matches!(j.st, model::St::Reserved { .. }));
        let delayed = m.count(|j| matches!(j.st, model::St::Delayed { .. }));
        let buried = m.count(|j| matches!(j.st, model::St::Buried { .. }));
        let waiting = m.conns.values().filter(|c| c.wait.is_some()).count() as u64;
        let producers = m.conns.values().filter(|c| c.producer).count() as u64;
        let workers = m.conns.values().filter(|c| c.worker).count() as u64;
        let tubes = m.tubes();
        let (total_jobs, job_timeouts, total_connections, conns) = (
            m.total_jobs,
            m.job_timeouts,
            m.total_connections,
            m.conns.len() as u64,
        );
        let waiting_conns: Vec<(ConnId, bool)> = m
            .conns
            .iter()
            .map(|(&c, conn)| (c, conn.wait.is_some()))
            .collect();
        let watched: Vec<(ConnId, Vec<String>, String)> = m
            .conns
            .iter()
            .map(|(&c, conn)| (c, conn.watch.clone(), conn.use_.clone()))
            .collect();
        let mut want_tubes = Vec::new();
        let mut want_lists = Vec::new();
        let mut want_policies = Vec::new();
        for t in TUBES {
            for state in STATES {
                want_lists.push((t, state, m.list_jobs(t, state, 0, 1000)));
            }
            want_policies.push((t, m.show_policy(t)));
            if !m.tube_exists(t) {
                want_tubes.push((t, None));
                continue;
            }
            let in_t = |f: &dyn Fn(&model::Job) -> bool| m.count(|j| j.tube == t && f(j));
            let (pause, pause_left) = match m.pauses.get(t) {
                Some(&(at, d)) => (d / S, ((at - self.now) / S) as i64),
                None => (0, 0),
            };
            let counts = m.counts(t);
            let counters = (counts.total_jobs, counts.cmd_delete, counts.cmd_pause);
            let policy = m.policies.get(t).map(|p| Box::new(p.stats(counts)));
            want_tubes.push((
                t,
                Some((
                    in_t(&|j| j.st == model::St::Ready && j.pri < 1024),
                    in_t(&|j| j.st == model::St::Ready),
                    in_t(&|j| matches!(j.st, model::St::Reserved { .. })),
                    in_t(&|j| matches!(j.st, model::St::Delayed { .. })),
                    in_t(&|j| matches!(j.st, model::St::Buried { .. })),
                    m.conns.values().filter(|c| c.use_ == t).count() as u64,
                    m.conns
                        .values()
                        .filter(|c| c.watch.iter().any(|w| w == t))
                        .count() as u64,
                    m.conns
                        .values()
                        .filter(|c| c.wait.is_some() && c.watch.iter().any(|w| w == t))
                        .count() as u64,
                    pause,
                    pause_left,
                    counters,
                    policy,
                )),
            ));
        }
        let next_id = m.next_id;

        // Observations go through the observer connection's commands.
        let obs = self.obs;
        for (id, want) in want_jobs {
            let got = self.exec(obs, Command::StatsJob(id));
            assert_eq!(got, Outcome::Reply(want), "{ctx}: stats-job {id}");
        }
        for id in 0..next_id + 1 {
            if !self.m.jobs.contains_key(&id) {
                let got = self.exec(obs, Command::Peek(id));
                assert_eq!(got, Outcome::Reply(Reply::NotFound), "{ctx}: peek {id}");
            }
        }
        // put-unique keys: each job has the key the model says.
        for (id, key) in keys {
            assert_eq!(self.e.job_key(id), key.as_deref(), "{ctx}: key of job {id}");
        }
        // Reservations belong to the conn the model says.
        for (id, by) in reserved_by {
            let holder = self.e.reserver(id);
            assert_eq!(holder, Some(by), "{ctx}: holder of job {id}");
        }
        let s = match self.exec(obs, Command::Stats) {
            Outcome::Reply(Reply::Stats(s)) => *s,
            o => panic!("{ctx}: stats: {o:?}"),
        };
        assert_eq!(
            (s.urgent, s.ready, s.reserved, s.delayed, s.buried),
            (urgent, ready, reserved, delayed, buried),
            "{ctx}: job counts (urgent, ready, reserved, delayed, buried)"
        );
        assert_eq!(
            (
                s.total_jobs,
                s.job_timeouts,
                s.connections,
                s.total_connections
            ),
            (total_jobs, job_timeouts, conns, total_connections),
            "{ctx}: (total-jobs, job-timeouts, connections, total-connections)"
        );
        assert_eq!(
            (s.waiting, s.producers, s.workers, s.tubes),
            (waiting, producers, workers, tubes.len() as u64),
            "{ctx}: (waiting, producers, workers, tubes)"
        );
        match self.exec(obs, Command::ListTubes) {
            Outcome::Reply(Reply::List(names)) => {
                let mut names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
                names.sort();
                assert_eq!(names, tubes, "{ctx}: list-tubes");
            }
            o => panic!("{ctx}: list-tubes: {o:?}"),
        }
        for (t, want) in want_tubes {
            let got = self.exec(obs, Command::StatsTube(t.into()));
            match (got, want) {
                (Outcome::Reply(Reply::NotFound), None) => {}
                (Outcome::Reply(Reply::StatsTube(s)), Some(w)) => {
                    let g = (
                        s.urgent,
                        s.ready,
                        s.reserved,
                        s.delayed,
                        s.buried,
                        s.using,
                        s.watching,
                        s.waiting,
                        s.pause,
                        s.pause_time_left,
                        (s.total_jobs, s.cmd_delete, s.cmd_pause_tube),
                        s.policy,
                    );
                    assert_eq!(
                        g, w,
                        "{ctx}: stats-tube {t} (urgent, ready, reserved, delayed, buried, \
                         using, watching, waiting, pause, pause-time-left, \
                         (total-jobs, cmd-delete, cmd-pause-tube), policy)"
                    );
                }
                (g, w) => panic!("{ctx}: stats-tube {t}: got {g:?}, model {w:?}"),
            }
        }
        for (t, state, want) in want_lists {
            let cmd = Command::ListJobs {
                tube: t.into(),
                state,
                after: 0,
                limit: 1000,
            };
            let got = self.exec(obs, cmd);
            assert_eq!(
                got,
                Outcome::Reply(want),
                "{ctx}: list-jobs {t} {}",
                state.name()
            );
        }
        for (t, want) in want_policies {
            let cmd = Command::TubePolicy {
                tube: t.into(),
                set: None,
            };
            let got = self.exec(obs, cmd);
            assert_eq!(got, Outcome::Reply(want), "{ctx}: tube-policy {t}");
        }
        for (c, w) in waiting_conns {
            assert_eq!(self.e.is_waiting(c), w, "{ctx}: conn {c} waiting");
        }
        for (c, watch, used) in watched {
            let names: Vec<&str> = watch.iter().map(String::as_str).collect();
            assert_eq!(
                self.exec(c, Command::ListTubesWatched),
                Outcome::Reply(list(&names)),
                "{ctx}: conn {c} list-tubes-watched"
            );
            assert_eq!(
                self.exec(c, Command::ListTubeUsed),
                Outcome::Reply(using(&used)),
                "{ctx}: conn {c} list-tube-used"
            );
        }
        self.engine_check("observations");
        assert!(
            self.out.is_empty(),
            "{ctx}: observations delivered something"
        );
    }
}

// A failing case is saved (its seed) to crates/engine/proptest-regressions/tests.txt, next
// to src/; commit that file: every later run replays the cases in it before new ones.
proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::SourceParallel("proptest-regressions"),
        )),
        max_shrink_iters: 4096,
        // ChaCha, the default, is most of the run time in a debug build.
        rng_algorithm: proptest::test_runner::RngAlgorithm::XorShift,
        ..ProptestConfig::default()
    })]

    #[test]
    fn engine_matches_model(ops in prop::collection::vec(op_strategy(), 260..580)) {
        let mut sim = Sim::new();
        for (i, op) in ops.iter().enumerate() {
            sim.step = i;
            sim.run(op);
        }
    }
}

/// Sanity check of the generator and harness: typical runs do exercise every state.
#[test]
fn property_harness_reaches_every_state() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let mut seen: BTreeSet<&'static str> = BTreeSet::new();
    let mut events: BTreeMap<&'static str, usize> = BTreeMap::new();
    for _ in 0..24 {
        let ops = match prop::collection::vec(op_strategy(), 300).new_tree(&mut runner) {
            Ok(t) => t.current(),
            Err(e) => panic!("generator: {e}"),
        };
        let mut sim = Sim::new();
        for (i, op) in ops.iter().enumerate() {
            sim.step = i;
            let before = sim.m.job_timeouts;
            if !sim.m.dead.is_empty() {
                *events.entry("step-with-flushed-jobs-unfreed").or_default() += 1;
            }
            sim.run(op);
            for j in sim.m.jobs.values() {
                seen.insert(j.st.name());
            }
            if sim.m.job_timeouts > before {
                *events.entry("ttr-expiry").or_default() += 1;
            }
            if sim.m.conns.values().any(|c| c.wait.is_some()) {
                *events.entry("someone-waiting").or_default() += 1;
            }
            if !sim.m.pauses.is_empty() {
                *events.entry("paused-tube").or_default() += 1;
            }
            if !sim.m.policies.is_empty() {
                *events.entry("tube-with-policy").or_default() += 1;
            }
        }
        for (&k, &n) in &sim.m.events {
            *events.entry(k).or_default() += n as usize;
        }
    }
    assert_eq!(
        seen,
        ["buried", "delayed", "ready", "reserved"]
            .into_iter()
            .collect()
    );
    // Events typical runs must see: beanstalkd's, then every path of sprout's own
    // commands and of tube policies.
    for k in [
        "ttr-expiry",
        "someone-waiting",
        "paused-tube",
        "tube-with-policy",
        "policy-removed",
        "flushed-jobs",
        "step-with-flushed-jobs-unfreed",
        "reprioritized-ready",
        "reprioritized-reserved",
        "reprioritized-other",
        "moved-ready",
        "moved-delayed",
        "moved-buried",
        "moved-reserved",
        "moved-to-own-tube",
        "key-moved",
        "key-lost-on-move",
        "batch-delivered",
        "batch-of-several",
        "put-unique-inserted",
        "put-unique-exists",
        "max-ready-refused",
        "exhaust-bury",
        "exhaust-delete",
        "exhaust-dead-letter",
        "exhaust-dead-letter-own-tube",
        "backoff-after-release",
        "backoff-after-timeout",
        "backoff-after-disconnect",
        "backoff-exp",
    ] {
        assert!(
            events.get(k).is_some_and(|&n| n > 0),
            "never saw {k}: {events:?}"
        );
    }
}
