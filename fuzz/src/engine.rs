//! The engine target: the engine as a state machine, driven the way the server drives it.
//!
//! The input is an arbitrary (derive) `Script`: jobs restored at startup (as from a binlog),
//! then a sequence of operations over a few connections and tubes: connect/disconnect,
//! `put_header` + `put_body` (together or with other operations in between), every
//! `Command` variant, `tick` with time advances, `cancel_wait`, the put counters, puts
//! whose log write fails (admitted, never applied), draining and memory limits. Time only
//! moves forward.
//!
//! Checks, after every step:
//! - `engine.check_invariants()` is Ok;
//! - replies fit the protocol: `INSERTED` carries the id `put_header` gave, `RESERVED` names
//!   a job now reserved by that connection with that body, replies pushed to other
//!   connections go only to connections blocked in reserve (and are RESERVED, TIMED_OUT or
//!   DEADLINE_SOON), `is_waiting` agrees with what the connection was told, `cancel_wait`
//!   answers whether it was waiting.
//!
//! And at the end, a persistence round trip: the engine's journal, turned into log records
//! the way the binlog writer does, written as a segment and read back with
//! `storage::recover`, restores an engine holding the same jobs (same tube, body, priority,
//! bury order; reserved jobs come back ready, delayed ones keep their deadline).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use bytes::Bytes;
use sprout_engine::journal::Restored;
use sprout_engine::{
    ConnId, Deliveries, Effects, Engine, Input, JobState, JournalOp, Output, SECOND,
};
use sprout_protocol::command::PutHeader;
use sprout_protocol::{Backoff, Exhaust, ListState, PolicySet};
use sprout_protocol::{Command, Reply};
use sprout_storage::record::{self, Record};
use sprout_storage::recover;

const TUBES: [&str; 4] = ["default", "a", "b", "c-d"];
const MAX_CONNS: usize = 6;

fn tube(t: u8) -> String {
    TUBES[t as usize % TUBES.len()].to_string()
}

fn pri(p: u8) -> u32 {
    match p {
        0..=15 => u32::from(p),
        16 => 1023,
        17 => 1024,
        18 => 1025,
        19 => u32::MAX,
        _ => u32::from(p) * 7,
    }
}

/// Seconds, for delays, ttrs and pauses.
fn secs(s: u8) -> u32 {
    match s {
        0..=9 => u32::from(s),
        250 => 3600,
        251 => i32::MAX as u32,
        252 => u32::MAX,
        _ => u32::from(s % 20),
    }
}

fn timeout(s: u8) -> u32 {
    match s {
        250..=255 => i32::MAX as u32,
        _ => u32::from(s % 8),
    }
}

fn advance(a: u16) -> u64 {
    let a = u64::from(a);
    match a % 16 {
        0 => 0,
        1 => 1,
        2 => SECOND - 1,
        3 => SECOND,
        4 => SECOND + 1,
        5 => 2 * SECOND,
        6 => (a >> 4) * SECOND,
        7 => (a >> 4) * 60 * SECOND,
        8 => (a >> 4) * 1_000_000,
        _ => (a >> 4) * (SECOND / 8),
    }
}

fn body_len(b: u8) -> usize {
    let large = sprout_engine::body::LARGE;
    match b {
        250 => large - 1,
        251 => large,
        252 => large + 1,
        _ => usize::from(b % 40),
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct PutArgs {
    pub pri: u8,
    pub delay: u8,
    pub ttr: u8,
    pub len: u8,
    pub fill: u8,
}

#[derive(Arbitrary, Debug)]
pub enum Cmd {
    Put(PutArgs),
    Use(u8),
    Reserve,
    ReserveWithTimeout(u8),
    ReserveJob(u8),
    Delete(u8),
    Release {
        id: u8,
        pri: u8,
        delay: u8,
    },
    Bury {
        id: u8,
        pri: u8,
    },
    Touch(u8),
    Watch(u8),
    Ignore(u8),
    Peek(u8),
    PeekReady,
    PeekDelayed,
    PeekBuried,
    Kick(u8),
    KickJob(u8),
    StatsJob(u8),
    StatsTube(u8),
    Stats,
    ListTubes,
    ListTubeUsed,
    ListTubesWatched,
    PauseTube {
        tube: u8,
        delay: u8,
    },
    Quit,
    // sprout's own commands.
    FlushTube(u8),
    ReserveBatch {
        max: u8,
        timeout: u8,
    },
    ListJobs {
        tube: u8,
        state: u8,
        after: u8,
        limit: u8,
    },
    PutUnique {
        key: u8,
        args: PutArgs,
    },
    Reprioritize {
        id: u8,
        pri: u8,
    },
    MoveJob {
        id: u8,
        tube: u8,
    },
    TubePolicy {
        tube: u8,
        key: u8,
        value: u8,
    },
}

#[derive(Arbitrary, Debug)]
pub enum Op {
    Connect,
    Disconnect(u8),
    CancelWait(u8),
    /// put_header then put_body at once.
    Put {
        conn: u8,
        args: PutArgs,
    },
    /// put_header only; the body comes with `PutBody` (the connection does nothing else
    /// meanwhile, as it is reading the body).
    PutHeader {
        conn: u8,
        args: PutArgs,
    },
    PutBody(u8),
    /// A put rejected after its numbers parsed (JOB_TOO_BIG, trailing bytes).
    CountPut,
    Cmd {
        conn: u8,
        cmd: Cmd,
    },
    /// Time passes and the timer runs.
    Tick(u16),
    /// Time passes; the timer has not run yet.
    Sleep(u16),
    /// The connection's pending put is admitted but its log write fails: it is never
    /// applied, and its id is marked dead in the log.
    RefusePut(u8),
    SetDraining,
    SetLimits {
        jobs: Option<u8>,
        bytes: Option<u16>,
    },
}

#[derive(Arbitrary, Debug)]
pub struct RestoreArgs {
    pub id: u8,
    pub tube: u8,
    pub state: u8,
    pub pri: u8,
    pub delay: u8,
    pub ttr: u8,
    /// Deadline relative to startup, in 1/4 seconds (negative: already past).
    pub deadline: i8,
    pub bury_seq: u8,
    pub len: u8,
}

#[derive(Arbitrary, Debug)]
pub struct Script {
    /// Startup time in seconds.
    pub start: u32,
    /// Jobs restored at startup, as from a binlog.
    pub restored: [Option<RestoreArgs>; 6],
    pub ops: Vec<Op>,
}

struct Conn {
    id: ConnId,
    waiting: bool,
    put: Option<(u64, PutHeader, Bytes)>,
}

struct Harness {
    e: Engine,
    now: u64,
    conns: Vec<Conn>,
    /// The log, as the binlog writer would have written it.
    log: Vec<u8>,
    ops: Vec<JournalOp>,
}

use sprout_storage::{full_record, snapshot};

/// Every job, as recovery should see it: (tube, body, pri, state, deadline if delayed,
/// bury seq if buried).
type JobView = BTreeMap<u64, (String, Vec<u8>, u32, JobState, u64, u64)>;

fn view(e: &Engine, now: u64) -> JobView {
    let mut v = BTreeMap::new();
    for id in e.job_ids() {
        let j = e.job(id).unwrap();
        let state = match j.state {
            JobState::Reserved => JobState::Ready,
            JobState::Delayed if j.deadline <= now => JobState::Ready,
            s => s,
        };
        let deadline = if state == JobState::Delayed {
            j.deadline
        } else {
            0
        };
        let seq = if state == JobState::Buried { j.seq } else { 0 };
        let body = j.body.as_slice().to_vec();
        v.insert(
            id,
            (
                e.tube_name(j).to_string(),
                body,
                j.pri,
                state,
                deadline,
                seq,
            ),
        );
    }
    v
}

fn scratch_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| crate::scratch_dir("engine"))
}

impl Harness {
    fn conn(&self, r: u8) -> Option<usize> {
        if self.conns.is_empty() {
            None
        } else {
            Some(r as usize % self.conns.len())
        }
    }

    fn job_ref(&self, r: u8) -> u64 {
        match r {
            255 => u64::MAX,
            254 => 0,
            _ => u64::from(r) % (self.e.next_job_id() + 1),
        }
    }

    fn command(&self, cmd: &Cmd) -> Command {
        let j = |r| self.job_ref(r);
        match *cmd {
            Cmd::Put(a) => Command::Put(header(a)),
            Cmd::Use(t) => Command::Use(tube(t)),
            Cmd::Reserve => Command::Reserve,
            Cmd::ReserveWithTimeout(t) => Command::ReserveWithTimeout(timeout(t)),
            Cmd::ReserveJob(id) => Command::ReserveJob(j(id)),
            Cmd::Delete(id) => Command::Delete(j(id)),
            Cmd::Release { id, pri: p, delay } => Command::Release {
                id: j(id),
                pri: pri(p),
                delay: secs(delay),
            },
            Cmd::Bury { id, pri: p } => Command::Bury {
                id: j(id),
                pri: pri(p),
            },
            Cmd::Touch(id) => Command::Touch(j(id)),
            Cmd::Watch(t) => Command::Watch(tube(t)),
            Cmd::Ignore(t) => Command::Ignore(tube(t)),
            Cmd::Peek(id) => Command::Peek(j(id)),
            Cmd::PeekReady => Command::PeekReady,
            Cmd::PeekDelayed => Command::PeekDelayed,
            Cmd::PeekBuried => Command::PeekBuried,
            Cmd::Kick(n) => Command::Kick(match n {
                255 => u32::MAX,
                _ => u32::from(n % 8),
            }),
            Cmd::KickJob(id) => Command::KickJob(j(id)),
            Cmd::StatsJob(id) => Command::StatsJob(j(id)),
            Cmd::StatsTube(t) => Command::StatsTube(tube(t)),
            Cmd::Stats => Command::Stats,
            Cmd::ListTubes => Command::ListTubes,
            Cmd::ListTubeUsed => Command::ListTubeUsed,
            Cmd::ListTubesWatched => Command::ListTubesWatched,
            Cmd::PauseTube { tube: t, delay } => Command::PauseTube {
                tube: tube(t),
                delay: secs(delay),
            },
            Cmd::Quit => Command::Quit,
            Cmd::FlushTube(t) => Command::FlushTube(tube(t)),
            Cmd::ReserveBatch { max, timeout: t } => Command::ReserveBatch {
                max: u32::from(max % 8) + 1,
                timeout: timeout(t),
            },
            Cmd::ListJobs {
                tube: t,
                state,
                after,
                limit,
            } => Command::ListJobs {
                tube: tube(t),
                state: [
                    ListState::Ready,
                    ListState::Delayed,
                    ListState::Buried,
                    ListState::Reserved,
                ][usize::from(state % 4)],
                after: j(after),
                limit: u32::from(limit % 8) + 1,
            },
            Cmd::PutUnique { key, args } => Command::PutUnique {
                key: format!("k{}", key % 4),
                header: header(args),
            },
            Cmd::Reprioritize { id, pri: p } => Command::Reprioritize {
                id: j(id),
                pri: pri(p),
            },
            Cmd::MoveJob { id, tube: t } => Command::MoveJob {
                id: j(id),
                tube: tube(t),
            },
            Cmd::TubePolicy {
                tube: t,
                key,
                value,
            } => Command::TubePolicy {
                tube: tube(t),
                set: match key % 5 {
                    0 => None,
                    1 => Some(PolicySet::MaxReserves(u32::from(value % 4))),
                    2 => Some(PolicySet::OnExhaust(match value % 3 {
                        0 => Exhaust::Bury,
                        1 => Exhaust::Delete,
                        _ => Exhaust::Tube(tube(value / 3)),
                    })),
                    3 => Some(PolicySet::RetryBackoff(match value % 3 {
                        0 => Backoff::None,
                        1 => Backoff::Fixed(u32::from(value % 4)),
                        _ => Backoff::Exp {
                            base: 1,
                            cap: u32::from(value % 8) + 1,
                        },
                    })),
                    _ => Some(PolicySet::MaxReady(u64::from(value % 8))),
                },
            },
        }
    }

    /// Replies pushed for other connections: each goes to a connection blocked in reserve.
    fn deliver(&mut self, out: &mut Deliveries) {
        for d in out.drain(..) {
            let (to, reply) = (d.conn, d.reply);
            let Some(c) = self.conns.iter_mut().find(|c| c.id == to) else {
                panic!("reply {reply:?} for connection {to}, which is gone");
            };
            assert!(
                c.waiting,
                "reply {reply:?} for connection {to}, which is not waiting"
            );
            c.waiting = false;
            match reply {
                Reply::Reserved { id, ref body } => check_reserved(&self.e, to, id, body),
                Reply::TimedOut | Reply::DeadlineSoon => {}
                r => panic!("unexpected reply {r:?} pushed to connection {to}"),
            }
        }
    }

    /// One input through the engine's entry point: deliveries go to `out`, changes to the
    /// journal kept for the round trip.
    fn apply(&mut self, now: u64, input: Input, out: &mut Deliveries) -> Output {
        let mut fx = Effects::default();
        self.e.apply(now, input, &mut fx);
        out.append(&mut fx.deliveries);
        self.ops.append(&mut fx.journal);
        fx.output
    }

    fn journal(&mut self) {
        for op in std::mem::take(&mut self.ops) {
            let r = match op {
                JournalOp::Full(id) => full_record(&self.e, id),
                JournalOp::Update(id) | JournalOp::Reserve(id) => {
                    self.e.job(id).map(|j| Record::Update {
                        id,
                        snap: snapshot(j),
                    })
                }
                JournalOp::Delete { id, .. } => Some(Record::Delete { id }),
                JournalOp::Flush(t) => Some(Record::Flush {
                    tube: t.to_string(),
                }),
                JournalOp::Move(id) => {
                    if let Some(j) = self.e.job(id) {
                        let tube = self.e.tube_name(j).to_string();
                        record::encode(&mut self.log, &Record::Move { id, tube });
                    }
                    self.e.job(id).map(|j| Record::Update {
                        id,
                        snap: snapshot(j),
                    })
                }
                JournalOp::Freed { .. } => None,
                JournalOp::Policy(t) => Some(Record::Policy {
                    policy: self.e.policy(&t).cloned().unwrap_or_default(),
                    tube: t.to_string(),
                }),
                JournalOp::IdLimit(limit) => Some(Record::IdLimit { limit }),
            };
            if let Some(r) = r {
                record::encode(&mut self.log, &r);
            }
        }
    }

    fn check(&self, what: &dyn std::fmt::Debug) {
        if let Err(e) = self.e.check_invariants() {
            panic!("invariant broken after {what:?}: {e}");
        }
        for c in &self.conns {
            assert_eq!(
                self.e.is_waiting(c.id),
                c.waiting,
                "connection {}: is_waiting disagrees after {what:?}",
                c.id
            );
        }
    }

    fn step(&mut self, op: &Op) {
        let mut out = Deliveries::new();
        let now = self.now;
        match *op {
            Op::Connect => {
                if self.conns.len() < MAX_CONNS {
                    let Output::Conn(id) = self.apply(now, Input::Connect, &mut out) else {
                        panic!("connect gave no connection")
                    };
                    assert!(
                        self.conns.iter().all(|c| c.id != id),
                        "connection id reused"
                    );
                    self.conns.push(Conn {
                        id,
                        waiting: false,
                        put: None,
                    });
                }
            }
            Op::Disconnect(c) => {
                if let Some(i) = self.conn(c) {
                    let c = self.conns.remove(i);
                    self.apply(now, Input::Disconnect(c.id), &mut out);
                    assert!(!self.e.is_waiting(c.id));
                }
            }
            Op::CancelWait(c) => {
                if let Some(i) = self.conn(c) {
                    let was = self.apply(now, Input::CancelWait(self.conns[i].id), &mut out)
                        == Output::Cancelled(true);
                    assert_eq!(was, self.conns[i].waiting, "cancel_wait");
                    self.conns[i].waiting = false;
                }
            }
            Op::Put { conn, args } => {
                if let Some(i) = self.idle_conn(conn) {
                    self.put_header(i, args);
                    self.put_body(i, &mut out);
                }
            }
            Op::PutHeader { conn, args } => {
                if let Some(i) = self.idle_conn(conn) {
                    self.put_header(i, args);
                }
            }
            Op::PutBody(c) => {
                if let Some(i) = self.conn(c) {
                    self.put_body(i, &mut out);
                }
            }
            Op::CountPut => {
                self.apply(now, Input::CountPut, &mut out);
            }
            Op::Cmd { conn, ref cmd } => {
                if let Some(i) = self.idle_conn(conn) {
                    let c = self.conns[i].id;
                    let command = self.command(cmd);
                    let internal = matches!(command, Command::Put(_) | Command::Quit);
                    match self.apply(now, Input::Command(c, command), &mut out) {
                        Output::Wait => {
                            assert!(self.e.is_waiting(c), "Wait but not waiting");
                            self.conns[i].waiting = true;
                        }
                        Output::Reply(r) => {
                            assert!(!self.e.is_waiting(c), "replied {r:?} but waiting");
                            assert!(!internal || r == Reply::InternalError, "{r:?}");
                            if let Reply::Reserved { id, ref body } = r {
                                check_reserved(&self.e, c, id, body);
                            }
                        }
                        o => panic!("a command gave {o:?}"),
                    }
                }
            }
            Op::Tick(a) => {
                self.now = self.now.saturating_add(advance(a));
                self.apply(self.now, Input::Tick, &mut out);
                if let Some(at) = self.e.next_wakeup() {
                    assert!(at > self.now, "tick left work due at {at} <= {}", self.now);
                }
            }
            Op::Sleep(a) => self.now = self.now.saturating_add(advance(a)),
            Op::RefusePut(c) => {
                if let Some(i) = self.conn(c) {
                    if let Some((id, h, body)) = self.conns[i].put.take() {
                        let admitted = self.e.put_admit(self.conns[i].id, id, h, body, self.now);
                        // Whether admitted or not, nothing is applied: the job never exists,
                        // and as far as the log goes its id is dead.
                        drop(admitted);
                        assert!(self.e.job(id).is_none(), "refused put {id} exists");
                        record::encode(&mut self.log, &Record::Delete { id });
                    }
                }
            }
            Op::SetDraining => self.e.set_draining(),
            Op::SetLimits { jobs, bytes } => {
                self.e.set_limits(jobs.map(u64::from), bytes.map(u64::from));
            }
        }
        self.deliver(&mut out);
        self.journal();
        self.check(op);
    }

    /// A connection that can send a command: not blocked in reserve, not sending a body.
    fn idle_conn(&self, c: u8) -> Option<usize> {
        let i = self.conn(c)?;
        let conn = &self.conns[i];
        (!conn.waiting && conn.put.is_none()).then_some(i)
    }

    fn put_header(&mut self, i: usize, a: PutArgs) {
        let h = header(a);
        let body = Bytes::from(vec![a.fill; h.bytes as usize]);
        let before = self.e.next_job_id();
        let mut out = Deliveries::new();
        let Output::Job(id) = self.apply(self.now, Input::PutHeader(self.conns[i].id), &mut out)
        else {
            panic!("put header gave no id")
        };
        assert_eq!(id, before, "put_header id");
        assert_eq!(self.e.next_job_id(), id + 1);
        self.conns[i].put = Some((id, h, body));
    }

    fn put_body(&mut self, i: usize, out: &mut Deliveries) {
        let Some((id, h, body)) = self.conns[i].put.take() else {
            return;
        };
        let c = self.conns[i].id;
        let r = match self.e.put_admit(c, id, h, body.clone(), self.now) {
            Ok(p) => match self.apply(self.now, Input::Put(p), out) {
                Output::Reply(r) => r,
                o => panic!("put gave {o:?}"),
            },
            Err(r) => r,
        };
        match r {
            Reply::Inserted(got) => {
                assert_eq!(got, id, "INSERTED id");
                let used = self.used_tube(c);
                let j = self.e.job(id).expect("inserted job exists");
                assert_eq!(j.body.as_slice(), &body[..]);
                assert_eq!(self.e.tube_name(j), used);
            }
            Reply::Draining | Reply::OutOfMemory => assert!(self.e.job(id).is_none()),
            r => panic!("put_body replied {r:?}"),
        }
    }

    fn used_tube(&mut self, c: ConnId) -> String {
        let mut out = Deliveries::new();
        // list-tube-used moves nothing but a counter.
        match self.apply(self.now, Input::Command(c, Command::ListTubeUsed), &mut out) {
            Output::Reply(Reply::Using(t)) => t.to_string(),
            r => panic!("list-tube-used: {r:?}"),
        }
    }

    /// Writes the log as one segment, recovers it, and compares.
    fn round_trip(&mut self) {
        let dir = scratch_dir();
        let mut data = record::header(1, 1).to_vec();
        data.extend_from_slice(&self.log);
        data.extend_from_slice(&[0; 64]);
        std::fs::write(recover::segment_path(dir, 1), &data).unwrap();
        let rec = match recover::recover(dir, false) {
            Ok(r) => r,
            Err(e) => panic!("recovering the journal failed: {e}"),
        };
        assert!(rec.notes.is_empty(), "recovery notes: {:?}", rec.notes);
        let mut e2 = Engine::new();
        for j in rec.jobs {
            assert!(j.id < rec.next_id);
            e2.restore(j, self.now);
        }
        e2.set_next_job_id(rec.next_id);
        if let Err(e) = e2.check_invariants() {
            panic!("restored engine: {e}");
        }
        let (want, got) = (view(&self.e, self.now), view(&e2, self.now));
        assert_eq!(want, got, "the journal does not restore the engine's jobs");
        let _ = std::fs::remove_file(recover::segment_path(dir, 1));
    }
}

fn header(a: PutArgs) -> PutHeader {
    PutHeader {
        pri: pri(a.pri),
        delay: secs(a.delay),
        ttr: secs(a.ttr),
        bytes: body_len(a.len) as u32,
    }
}

fn check_reserved(e: &Engine, c: ConnId, id: u64, body: &Bytes) {
    let j = e
        .job(id)
        .unwrap_or_else(|| panic!("RESERVED {id}: no such job"));
    assert_eq!(j.state, JobState::Reserved, "RESERVED {id}");
    assert_eq!(e.reserver(id), Some(c), "RESERVED {id}: holder");
    assert_eq!(j.body.as_slice(), &body[..], "RESERVED {id}: body");
}

/// Fails to compile when `Command` gains a variant the script cannot produce.
#[allow(dead_code)]
fn every_command_is_covered(c: &Command) -> Cmd {
    match c {
        Command::Put(_) => Cmd::Put(PutArgs {
            pri: 0,
            delay: 0,
            ttr: 0,
            len: 0,
            fill: 0,
        }),
        Command::Use(_) => Cmd::Use(0),
        Command::Reserve => Cmd::Reserve,
        Command::ReserveWithTimeout(_) => Cmd::ReserveWithTimeout(0),
        Command::ReserveJob(_) => Cmd::ReserveJob(0),
        Command::Delete(_) => Cmd::Delete(0),
        Command::Release { .. } => Cmd::Release {
            id: 0,
            pri: 0,
            delay: 0,
        },
        Command::Bury { .. } => Cmd::Bury { id: 0, pri: 0 },
        Command::Touch(_) => Cmd::Touch(0),
        Command::Watch(_) => Cmd::Watch(0),
        Command::Ignore(_) => Cmd::Ignore(0),
        Command::Peek(_) => Cmd::Peek(0),
        Command::PeekReady => Cmd::PeekReady,
        Command::PeekDelayed => Cmd::PeekDelayed,
        Command::PeekBuried => Cmd::PeekBuried,
        Command::Kick(_) => Cmd::Kick(0),
        Command::KickJob(_) => Cmd::KickJob(0),
        Command::StatsJob(_) => Cmd::StatsJob(0),
        Command::StatsTube(_) => Cmd::StatsTube(0),
        Command::Stats => Cmd::Stats,
        Command::ListTubes => Cmd::ListTubes,
        Command::ListTubeUsed => Cmd::ListTubeUsed,
        Command::ListTubesWatched => Cmd::ListTubesWatched,
        Command::PauseTube { .. } => Cmd::PauseTube { tube: 0, delay: 0 },
        Command::Quit => Cmd::Quit,
        Command::FlushTube(_) => Cmd::FlushTube(0),
        Command::ReserveBatch { .. } => Cmd::ReserveBatch { max: 0, timeout: 0 },
        Command::ListJobs { .. } => Cmd::ListJobs {
            tube: 0,
            state: 0,
            after: 0,
            limit: 0,
        },
        Command::PutUnique { .. } => Cmd::PutUnique {
            key: 0,
            args: PutArgs {
                pri: 0,
                delay: 0,
                ttr: 0,
                len: 0,
                fill: 0,
            },
        },
        Command::Reprioritize { .. } => Cmd::Reprioritize { id: 0, pri: 0 },
        Command::MoveJob { .. } => Cmd::MoveJob { id: 0, tube: 0 },
        Command::TubePolicy { .. } => Cmd::TubePolicy {
            tube: 0,
            key: 0,
            value: 0,
        },
    }
}

fn restore(e: &mut Engine, start: u64, r: &RestoreArgs) {
    let state = match r.state % 4 {
        0 => JobState::Ready,
        1 => JobState::Reserved,
        2 => JobState::Buried,
        _ => JobState::Delayed,
    };
    let deadline = start.saturating_add_signed(i64::from(r.deadline) * (SECOND as i64 / 4));
    e.restore(
        Restored {
            key: None,
            origin: None,
            id: u64::from(r.id % 32),
            tube: tube(r.tube),
            state,
            pri: pri(r.pri),
            delay: secs(r.delay),
            ttr: secs(r.ttr),
            created: start.saturating_sub(SECOND),
            deadline,
            bury_seq: u64::from(r.bury_seq),
            reserves: 0,
            timeouts: 0,
            releases: 0,
            buries: 0,
            kicks: 0,
            file: 0,
            body: Bytes::from(vec![r.id; body_len(r.len)]),
        },
        start,
    );
}

/// Runs one script; panics on any failed check.
pub fn run(s: &Script) {
    let start = u64::from(s.start) * SECOND;
    let mut e = Engine::new();
    for r in s.restored.iter().flatten() {
        restore(&mut e, start, r);
    }
    if let Err(err) = e.check_invariants() {
        panic!("invariant broken after restoring {:?}: {err}", s.restored);
    }
    e.enable_journal();
    let mut h = Harness {
        now: start,
        conns: Vec::new(),
        log: Vec::new(),
        ops: Vec::new(),
        e,
    };
    // Startup writes every restored job in full (as the take-over checkpoint does).
    for id in h.e.job_ids() {
        if let Some(r) = full_record(&h.e, id) {
            record::encode(&mut h.log, &r);
        }
    }
    for op in s.ops.iter().take(400) {
        h.step(op);
    }
    h.round_trip();
}

// ----- writing scripts as fuzzer input (for seeds) ---------------------------------------

/// Writes a value in the byte format `arbitrary`'s derive reads it back from (integers
/// little-endian, a bool as one byte, an enum's variant as a u32, a take-rest `Vec` as a
/// continue byte before each element). The seed generator checks the round trip.
pub trait Encode {
    fn encode(&self, out: &mut Vec<u8>);
}

fn variant(out: &mut Vec<u8>, k: u64, n: u64) {
    // The derive picks variant (x * n) >> 32 for a u32 x.
    let x = (k << 32).div_ceil(n);
    out.extend_from_slice(&(x as u32).to_le_bytes());
}

macro_rules! encode_ints {
    ($($t:ty),*) => {$(
        impl Encode for $t {
            fn encode(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}
encode_ints!(u8, i8, u16, u32);

impl<T: Encode> Encode for Option<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                v.encode(out);
            }
        }
    }
}

impl Encode for PutArgs {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.pri, self.delay, self.ttr, self.len, self.fill]);
    }
}

impl Encode for RestoreArgs {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[
            self.id, self.tube, self.state, self.pri, self.delay, self.ttr,
        ]);
        self.deadline.encode(out);
        out.extend_from_slice(&[self.bury_seq, self.len]);
    }
}

impl Encode for Cmd {
    fn encode(&self, out: &mut Vec<u8>) {
        let v = |out: &mut Vec<u8>, k| variant(out, k, 32);
        match *self {
            Cmd::Put(a) => {
                v(out, 0);
                a.encode(out);
            }
            Cmd::Use(t) => {
                v(out, 1);
                out.push(t);
            }
            Cmd::Reserve => v(out, 2),
            Cmd::ReserveWithTimeout(t) => {
                v(out, 3);
                out.push(t);
            }
            Cmd::ReserveJob(j) => {
                v(out, 4);
                out.push(j);
            }
            Cmd::Delete(j) => {
                v(out, 5);
                out.push(j);
            }
            Cmd::Release { id, pri, delay } => {
                v(out, 6);
                out.extend_from_slice(&[id, pri, delay]);
            }
            Cmd::Bury { id, pri } => {
                v(out, 7);
                out.extend_from_slice(&[id, pri]);
            }
            Cmd::Touch(j) => {
                v(out, 8);
                out.push(j);
            }
            Cmd::Watch(t) => {
                v(out, 9);
                out.push(t);
            }
            Cmd::Ignore(t) => {
                v(out, 10);
                out.push(t);
            }
            Cmd::Peek(j) => {
                v(out, 11);
                out.push(j);
            }
            Cmd::PeekReady => v(out, 12),
            Cmd::PeekDelayed => v(out, 13),
            Cmd::PeekBuried => v(out, 14),
            Cmd::Kick(n) => {
                v(out, 15);
                out.push(n);
            }
            Cmd::KickJob(j) => {
                v(out, 16);
                out.push(j);
            }
            Cmd::StatsJob(j) => {
                v(out, 17);
                out.push(j);
            }
            Cmd::StatsTube(t) => {
                v(out, 18);
                out.push(t);
            }
            Cmd::Stats => v(out, 19),
            Cmd::ListTubes => v(out, 20),
            Cmd::ListTubeUsed => v(out, 21),
            Cmd::ListTubesWatched => v(out, 22),
            Cmd::PauseTube { tube, delay } => {
                v(out, 23);
                out.extend_from_slice(&[tube, delay]);
            }
            Cmd::Quit => v(out, 24),
            Cmd::FlushTube(t) => {
                v(out, 25);
                out.push(t);
            }
            Cmd::ReserveBatch { max, timeout } => {
                v(out, 26);
                out.extend_from_slice(&[max, timeout]);
            }
            Cmd::ListJobs {
                tube,
                state,
                after,
                limit,
            } => {
                v(out, 27);
                out.extend_from_slice(&[tube, state, after, limit]);
            }
            Cmd::PutUnique { key, args } => {
                v(out, 28);
                out.push(key);
                args.encode(out);
            }
            Cmd::Reprioritize { id, pri } => {
                v(out, 29);
                out.extend_from_slice(&[id, pri]);
            }
            Cmd::MoveJob { id, tube } => {
                v(out, 30);
                out.extend_from_slice(&[id, tube]);
            }
            Cmd::TubePolicy { tube, key, value } => {
                v(out, 31);
                out.extend_from_slice(&[tube, key, value]);
            }
        }
    }
}

impl Encode for Op {
    fn encode(&self, out: &mut Vec<u8>) {
        let v = |out: &mut Vec<u8>, k| variant(out, k, 13);
        match *self {
            Op::Connect => v(out, 0),
            Op::Disconnect(c) => {
                v(out, 1);
                out.push(c);
            }
            Op::CancelWait(c) => {
                v(out, 2);
                out.push(c);
            }
            Op::Put { conn, args } => {
                v(out, 3);
                out.push(conn);
                args.encode(out);
            }
            Op::PutHeader { conn, args } => {
                v(out, 4);
                out.push(conn);
                args.encode(out);
            }
            Op::PutBody(c) => {
                v(out, 5);
                out.push(c);
            }
            Op::CountPut => v(out, 6),
            Op::Cmd { conn, ref cmd } => {
                v(out, 7);
                out.push(conn);
                cmd.encode(out);
            }
            Op::Tick(a) => {
                v(out, 8);
                a.encode(out);
            }
            Op::Sleep(a) => {
                v(out, 9);
                a.encode(out);
            }
            Op::RefusePut(c) => {
                v(out, 10);
                out.push(c);
            }
            Op::SetDraining => v(out, 11),
            Op::SetLimits { jobs, bytes } => {
                v(out, 12);
                jobs.encode(out);
                bytes.encode(out);
            }
        }
    }
}

impl Encode for Script {
    fn encode(&self, out: &mut Vec<u8>) {
        self.start.encode(out);
        for r in &self.restored {
            r.encode(out);
        }
        for op in &self.ops {
            out.push(1);
            op.encode(out);
        }
        out.push(0);
    }
}
