//! The queue as a synchronous state machine. No I/O, no clock: every call takes `now` in
//! nanoseconds, and replies for other connections (a waiting reserve served by someone
//! else's put, a timeout) are pushed to a [`Deliveries`] list.
//!
//! With a log, every reply and delivery says what it shows ([`Reveal`], or the position in
//! each [`Delivery`]), so that the server sends it only once the log is durable that far.
//!
//! Every operation costs O(log n) in jobs, tubes and waiting connections, except those
//! that are inherently per watched tube of the calling connection (reserve, disconnect).

pub(crate) mod ages;
pub mod body;
pub(crate) mod check;
pub(crate) mod conn;
pub mod heap;
pub mod job;
pub mod journal;
pub mod metrics;
pub(crate) mod table;
pub mod tube;

use std::collections::BTreeSet;

use bytes::Bytes;
use rustc_hash::FxHashMap;

use body::Body;
use sprout_protocol::command::PutHeader;
use sprout_protocol::reply::{CmdCounts, JobStats, ServerStats, TubeStats};
use sprout_protocol::{Command, Reply};
use table::JobTable;

pub use conn::ConnId;
use conn::{Conn, Wait};
pub use job::{Job, JobId, JobState, URGENT_THRESHOLD};
pub use journal::JournalOp;
use tube::{TubeId, Tubes, DEFAULT_TUBE};

pub const SECOND: u64 = 1_000_000_000;
/// A reserve answers DEADLINE_SOON this long before a reservation ends.
pub(crate) const SAFETY_MARGIN: u64 = SECOND;

/// A reply owed to a connection other than the caller (or to the caller, later).
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub conn: ConnId,
    pub reply: Reply,
    /// The log position of the change it shows (0: none): it leaves once the log is
    /// durable up to here.
    pub lsn: u64,
}

impl PartialEq<(ConnId, Reply)> for Delivery {
    fn eq(&self, o: &(ConnId, Reply)) -> bool {
        self.conn == o.0 && self.reply == o.1
    }
}

/// Replies owed to connections other than the caller (or to the caller, later).
pub type Deliveries = Vec<Delivery>;

/// What the reply to the last command shows, for the commit watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reveal {
    /// Nothing that a crash could take back (or only counters, which may run ahead).
    #[default]
    Nothing,
    /// A job as of its change at this log position.
    Job(u64),
    /// That something is not there (NOT_FOUND): it may have just been deleted, so the
    /// reply waits for the latest delete to be durable.
    Absence,
}

/// The log position of a change made in the current call, not yet appended: whoever
/// appends the call's changes replaces it with the end of what it appended.
pub const LSN_PENDING: u64 = u64::MAX;

/// Ids are taken from the log in blocks of this many (see [`JournalOp::IdLimit`]).
pub const ID_BLOCK: u64 = 1024;

/// Node-local admission, decided before a change is applied (never inside it): drain
/// mode and the `--max-jobs` / `--max-memory` limits.
#[derive(Debug, Default)]
struct Local {
    draining: bool,
    max_jobs: Option<u64>,
    max_body_bytes: Option<u64>,
}

/// A put that was admitted (and, with a log, logged): what applying it needs.
#[derive(Debug, Clone)]
pub struct NewPut {
    pub conn: ConnId,
    pub id: JobId,
    /// The connection's used tube when the put was admitted, and its name (the tube may be
    /// gone by the time the put is applied, if the connection closed meanwhile).
    pub tube: TubeId,
    pub tube_name: std::sync::Arc<str>,
    pub pri: u32,
    pub delay: u32,
    pub ttr: u32,
    pub created: u64,
    pub body: Bytes,
    /// Where its full record is (0 without a log).
    pub file: u32,
    pub lsn: u64,
}

/// The outcome of a command: a reply now, or the connection now waits for a job.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Reply(Reply),
    Wait,
}

#[derive(Debug)]
pub struct Engine {
    jobs: JobTable,
    tubes: Tubes,
    conns: FxHashMap<ConnId, Conn>,
    next_job: JobId,
    /// No id at or above this was handed out (the log knows it).
    id_limit: JobId,
    next_conn: ConnId,
    seq: u64,
    /// All delayed jobs by (ready time, id).
    delayed: BTreeSet<(u64, JobId)>,
    /// All reserved jobs by (deadline, id), with the connection holding each.
    reserved: BTreeSet<(u64, JobId, ConnId)>,
    /// Paused tubes by unpause time.
    paused: BTreeSet<(u64, TubeId)>,
    /// Waiting connections by the time their wait ends (timeout or deadline-soon).
    wait_timers: BTreeSet<(u64, ConnId)>,
    /// For each unpaused tube with a waiter and a ready job: (pri, id) of its best job.
    candidates: BTreeSet<(u32, JobId, TubeId)>,
    ready: u64,
    urgent: u64,
    buried: u64,
    cmd: CmdCounts,
    job_timeouts: u64,
    total_jobs: u64,
    total_connections: u64,
    producers: u64,
    workers: u64,
    waiting: u64,
    local: Local,
    /// What the reply to the current command shows.
    reveal: Reveal,
    /// Changes to persist, when a binlog is in use.
    journal: Option<Vec<JournalOp>>,
    /// The time of the call being run.
    now: u64,
    /// Bytes of job bodies held.
    body_bytes: u64,
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

impl Engine {
    pub fn new() -> Self {
        Engine {
            jobs: JobTable::default(),
            tubes: Tubes::new(),
            conns: FxHashMap::default(),
            next_job: 1,
            id_limit: 1,
            next_conn: 1,
            seq: 0,
            delayed: BTreeSet::new(),
            reserved: BTreeSet::new(),
            paused: BTreeSet::new(),
            wait_timers: BTreeSet::new(),
            candidates: BTreeSet::new(),
            ready: 0,
            urgent: 0,
            buried: 0,
            cmd: CmdCounts::default(),
            job_timeouts: 0,
            total_jobs: 0,
            total_connections: 0,
            producers: 0,
            workers: 0,
            waiting: 0,
            local: Local::default(),
            reveal: Reveal::Nothing,
            journal: None,
            now: 0,
            body_bytes: 0,
        }
    }

    // ----- connections -------------------------------------------------------------

    pub fn connect(&mut self) -> ConnId {
        let id = self.next_conn;
        self.next_conn += 1;
        self.total_connections += 1;
        let t = self.tubes.get_mut(DEFAULT_TUBE);
        t.using += 1;
        t.watching += 1;
        self.conns.insert(id, Conn::new(DEFAULT_TUBE));
        id
    }

    /// The connection is gone: its reservations return to ready, its tubes are released.
    pub fn disconnect(&mut self, c: ConnId, now: u64, out: &mut Deliveries) {
        self.now = now;
        if self.conns.get(&c).is_some_and(|conn| conn.wait.is_some()) {
            self.stop_wait(c);
        }
        let Some(conn) = self.conns.remove(&c) else {
            return;
        };
        // As beanstalkd: each reservation goes back in the order it was made, and is
        // handed to a waiter before the next one returns.
        let mut held: Vec<(u64, u64, JobId)> = conn
            .reserved
            .iter()
            .map(|&(deadline, id)| (self.jobs.get(&id).map_or(0, |j| j.seq), deadline, id))
            .collect();
        held.sort_unstable();
        for (_, deadline, id) in held {
            self.reserved.remove(&(deadline, id, c));
            if let Some(j) = self.jobs.get(&id) {
                self.tubes.get_mut(j.tube).reserved -= 1;
            }
            self.make_ready(id);
            self.process_queue(now, out);
        }
        if conn.producer {
            self.producers -= 1;
        }
        if conn.worker {
            self.workers -= 1;
        }
        // Tubes are released in beanstalkd's order (which decides `list-tubes` order):
        // the watch list by repeatedly removing its first entry (the last one moving into
        // its place), then the used tube.
        let mut watch = conn.watch;
        while !watch.is_empty() {
            let t = watch.swap_remove(0);
            self.tubes.get_mut(t).watching -= 1;
            self.gc_tube(t);
        }
        self.tubes.get_mut(conn.use_tube).using -= 1;
        self.gc_tube(conn.use_tube);
        self.process_queue(now, out);
    }

    /// A waiting connection went away half-way (half-close): if it still waits, it stops
    /// and gets `TIMED_OUT`. Returns false if it was not waiting.
    pub fn cancel_wait(&mut self, c: ConnId) -> bool {
        if self.conns.get(&c).is_some_and(|conn| conn.wait.is_some()) {
            self.stop_wait(c);
            true
        } else {
            false
        }
    }

    pub fn is_waiting(&self, c: ConnId) -> bool {
        self.conns.get(&c).is_some_and(|conn| conn.wait.is_some())
    }

    pub fn set_draining(&mut self) {
        self.local.draining = true;
    }

    #[cfg(test)]
    pub(crate) fn draining(&self) -> bool {
        self.local.draining
    }

    /// What the reply to the last command shows (see [`Reveal`]).
    pub fn reveal(&self) -> Reveal {
        self.reveal
    }

    // ----- put ---------------------------------------------------------------------

    /// A `put` header was accepted: takes the job id (used up even if the body fails).
    pub fn put_header(&mut self, c: ConnId) -> JobId {
        self.cmd.put += 1;
        if let Some(conn) = self.conns.get_mut(&c) {
            if !conn.producer {
                conn.producer = true;
                self.producers += 1;
            }
        }
        // Ids never wrap to 0; at u64::MAX (only from a damaged log) puts are refused.
        let id = self.next_job;
        self.next_job = self.next_job.saturating_add(1);
        // Take the next block while half of this one is left, so that its record is long
        // written before its first id is handed out.
        if self.next_job.saturating_add(ID_BLOCK / 2) >= self.id_limit {
            self.id_limit = self.next_job.saturating_add(ID_BLOCK);
            self.log(JournalOp::IdLimit(self.id_limit));
        }
        id
    }

    /// A `put` that was rejected after its numbers parsed (too big, trailing bytes).
    pub fn count_put(&mut self) {
        self.cmd.put += 1;
    }

    /// A `pause-tube` rejected for its tube name after it parsed (beanstalkd counts it).
    pub fn count_pause_tube(&mut self) {
        self.cmd.pause_tube += 1;
    }

    /// The body of the put whose header got `id` arrived: admits and applies it at once
    /// (without a log; with one, the server logs the put between [`Engine::put_admit`] and
    /// [`Engine::put_apply`]).
    pub fn put_body(
        &mut self,
        c: ConnId,
        id: JobId,
        h: PutHeader,
        body: Bytes,
        now: u64,
        out: &mut Deliveries,
    ) -> Reply {
        match self.put_admit(c, id, h, body, now) {
            Ok(p) => self.put_apply(p, now, out),
            Err(r) => r,
        }
    }

    /// Decides whether a put may happen (drain mode, limits, a valid id): the part of a
    /// put that is node-local. Changes nothing.
    pub fn put_admit(
        &self,
        c: ConnId,
        id: JobId,
        h: PutHeader,
        body: Bytes,
        now: u64,
    ) -> Result<NewPut, Reply> {
        if self.local.draining {
            return Err(Reply::Draining);
        }
        let Some(conn) = self.conns.get(&c) else {
            return Err(Reply::InternalError);
        };
        if self.put_would_exceed(body.len() as u64) || id == 0 || self.jobs.contains_key(&id) {
            return Err(Reply::OutOfMemory);
        }
        let tube = conn.use_tube;
        Ok(NewPut {
            conn: c,
            id,
            tube,
            tube_name: self.tubes.get(tube).name.clone(),
            pri: h.pri,
            delay: h.delay,
            ttr: h.ttr.max(1),
            created: now,
            body,
            file: 0,
            lsn: 0,
        })
    }

    /// Applies an admitted put (logged first, with a log). Deterministic: it depends only
    /// on the put and the engine's state.
    pub fn put_apply(&mut self, p: NewPut, now: u64, out: &mut Deliveries) -> Reply {
        self.now = now;
        let id = p.id;
        if id == 0 || self.jobs.contains_key(&id) {
            return Reply::InternalError;
        }
        let tube = if self
            .tubes
            .try_get(p.tube)
            .is_some_and(|t| t.name == p.tube_name)
        {
            p.tube
        } else {
            self.tubes.find_or_make(&p.tube_name)
        };
        self.body_bytes += p.body.len() as u64;
        let delay = u64::from(p.delay) * SECOND;
        let logged = p.lsn != 0;
        let job = Job {
            id,
            created: p.created,
            lsn: p.lsn,
            deadline: 0,
            seq: 0,
            reserves: 0,
            timeouts: 0,
            releases: 0,
            buries: 0,
            kicks: 0,
            pri: p.pri,
            tube,
            delay: p.delay,
            ttr: p.ttr.max(1),
            file: p.file,
            heap_pos: 0,
            state: JobState::Ready,
            body: Body::from_bytes(p.body),
        };
        self.jobs.insert(id, job);
        if !logged {
            self.log(JournalOp::Full(id));
        }
        self.total_jobs += 1;
        self.tubes.get_mut(tube).total_jobs += 1;
        if delay > 0 {
            self.make_delayed(id, p.created.saturating_add(delay));
        } else {
            self.make_ready(id);
            self.process_queue(now, out);
        }
        Reply::Inserted(id)
    }

    // ----- commands ----------------------------------------------------------------

    /// Runs one command (not `put`, whose parts have their own calls, nor `quit`). What
    /// its reply shows is [`Engine::reveal`] afterwards.
    pub fn execute(&mut self, c: ConnId, cmd: Command, now: u64, out: &mut Deliveries) -> Outcome {
        self.reveal = Reveal::Nothing;
        let o = self.run(c, cmd, now, out);
        if o == Outcome::Reply(Reply::NotFound) {
            self.reveal = Reveal::Absence;
        }
        o
    }

    fn run(&mut self, c: ConnId, cmd: Command, now: u64, out: &mut Deliveries) -> Outcome {
        self.now = now;
        if !self.conns.contains_key(&c) {
            return Outcome::Reply(Reply::InternalError);
        }
        let r = match cmd {
            Command::Put(_) | Command::Quit => Reply::InternalError,
            Command::Reserve => {
                self.cmd.reserve += 1;
                return self.reserve(c, None, now, out);
            }
            Command::ReserveWithTimeout(t) => {
                self.cmd.reserve_with_timeout += 1;
                return self.reserve(c, Some(t), now, out);
            }
            Command::ReserveJob(id) => {
                self.cmd.reserve_job += 1;
                self.set_worker(c);
                match self.jobs.get(&id).map(|j| j.state) {
                    Some(JobState::Ready) => {
                        self.remove_ready(id);
                        self.record_queue_wait(id, now);
                    }
                    Some(JobState::Buried) => self.remove_buried(id),
                    Some(JobState::Delayed) => self.remove_delayed(id),
                    _ => return Outcome::Reply(Reply::NotFound),
                }
                let (r, lsn) = self.reserve_job(c, id, now);
                self.reveal = Reveal::Job(lsn);
                r
            }
            Command::Delete(id) => {
                self.cmd.delete += 1;
                self.delete(c, id, now, out)
            }
            Command::Release { id, pri, delay } => {
                self.cmd.release += 1;
                if !self.take_reserved(c, id) {
                    return Outcome::Reply(Reply::NotFound);
                }
                if let Some(j) = self.jobs.get_mut(&id) {
                    j.pri = pri;
                    j.delay = delay;
                    j.releases += 1;
                }
                self.log(JournalOp::Update(id));
                if delay > 0 {
                    self.make_delayed(id, now.saturating_add(u64::from(delay) * SECOND));
                } else {
                    self.make_ready(id);
                    self.process_queue(now, out);
                }
                Reply::Released
            }
            Command::Bury { id, pri } => {
                self.cmd.bury += 1;
                if !self.take_reserved(c, id) {
                    return Outcome::Reply(Reply::NotFound);
                }
                if let Some(j) = self.jobs.get_mut(&id) {
                    j.pri = pri;
                    j.buries += 1;
                    let t = j.tube;
                    self.tubes.get_mut(t).counters.buries += 1;
                }
                self.make_buried(id);
                self.log(JournalOp::Update(id));
                Reply::Buried
            }
            Command::Touch(id) => {
                self.cmd.touch += 1;
                self.touch(c, id, now)
            }
            Command::Use(name) => {
                self.cmd.use_ += 1;
                let t = self.tubes.find_or_make(&name);
                self.tubes.get_mut(t).using += 1;
                let conn = self.conn_mut(c);
                let old = std::mem::replace(&mut conn.use_tube, t);
                self.tubes.get_mut(old).using -= 1;
                self.gc_tube(old);
                Reply::Using(self.tubes.get(t).name.clone())
            }
            Command::Watch(name) => {
                self.cmd.watch += 1;
                let t = self.tubes.find_or_make(&name);
                let conn = self.conn_mut(c);
                if !conn.watch.contains(&t) {
                    conn.watch.push(t);
                    self.tubes.get_mut(t).watching += 1;
                }
                Reply::Watching(self.conn(c).watch.len())
            }
            Command::Ignore(name) => {
                self.cmd.ignore += 1;
                let t = self.tubes.find(&name);
                let conn = self.conn_mut(c);
                let pos = t.and_then(|t| conn.watch.iter().position(|&w| w == t));
                if let Some(pos) = pos {
                    if conn.watch.len() < 2 {
                        return Outcome::Reply(Reply::NotIgnored);
                    }
                    let t = conn.watch.swap_remove(pos);
                    self.tubes.get_mut(t).watching -= 1;
                    self.gc_tube(t);
                }
                Reply::Watching(self.conn(c).watch.len())
            }
            Command::Peek(id) => {
                self.cmd.peek += 1;
                self.found(Some(id))
            }
            Command::PeekReady => {
                self.cmd.peek_ready += 1;
                let t = self.tubes.get(self.conn(c).use_tube);
                self.found(t.ready.first().map(|&s| self.jobs.at(s).id))
            }
            Command::PeekDelayed => {
                self.cmd.peek_delayed += 1;
                let t = self.tubes.get(self.conn(c).use_tube);
                self.found(t.delayed.first().map(|&(_, id)| id))
            }
            Command::PeekBuried => {
                self.cmd.peek_buried += 1;
                let t = self.tubes.get(self.conn(c).use_tube);
                self.found(t.buried.first().map(|&(_, id)| id))
            }
            Command::Kick(n) => {
                self.cmd.kick += 1;
                let n = self.kick(self.conn(c).use_tube, u64::from(n), now, out);
                Reply::Kicked(n)
            }
            Command::KickJob(id) => {
                self.cmd.kick_job += 1;
                match self.jobs.get(&id).map(|j| j.state) {
                    Some(JobState::Buried) => self.remove_buried(id),
                    Some(JobState::Delayed) => self.remove_delayed(id),
                    _ => return Outcome::Reply(Reply::NotFound),
                }
                if let Some(j) = self.jobs.get_mut(&id) {
                    j.kicks += 1;
                }
                self.make_ready(id);
                self.log(JournalOp::Update(id));
                self.process_queue(now, out);
                Reply::KickedJob
            }
            Command::StatsJob(id) => {
                self.cmd.stats_job += 1;
                match self.job_stats(id, now) {
                    Some(s) => {
                        self.reveal = Reveal::Job(self.jobs.get(&id).map_or(0, |j| j.lsn));
                        Reply::StatsJob(Box::new(s))
                    }
                    None => Reply::NotFound,
                }
            }
            Command::StatsTube(name) => {
                self.cmd.stats_tube += 1;
                match self.tubes.find(&name) {
                    Some(t) => Reply::StatsTube(Box::new(self.tube_stats(t, now))),
                    None => Reply::NotFound,
                }
            }
            Command::Stats => {
                self.cmd.stats += 1;
                Reply::Stats(Box::new(self.stats()))
            }
            Command::ListTubes => {
                self.cmd.list_tubes += 1;
                let names = self
                    .tubes
                    .ids()
                    .iter()
                    .map(|&t| self.tubes.get(t).name.clone())
                    .collect();
                Reply::List(names)
            }
            Command::ListTubeUsed => {
                self.cmd.list_tube_used += 1;
                Reply::Using(self.tubes.get(self.conn(c).use_tube).name.clone())
            }
            Command::ListTubesWatched => {
                self.cmd.list_tubes_watched += 1;
                let names = self
                    .conn(c)
                    .watch
                    .iter()
                    .map(|&t| self.tubes.get(t).name.clone())
                    .collect();
                Reply::List(names)
            }
            Command::PauseTube { tube, delay } => {
                self.cmd.pause_tube += 1;
                match self.tubes.find(&tube) {
                    Some(t) => {
                        self.pause(t, delay, now);
                        Reply::Paused
                    }
                    None => Reply::NotFound,
                }
            }
        };
        Outcome::Reply(r)
    }

    fn reserve(
        &mut self,
        c: ConnId,
        timeout: Option<u32>,
        now: u64,
        out: &mut Deliveries,
    ) -> Outcome {
        self.set_worker(c);
        if self.deadline_soon(c, now) && !self.any_ready(c) {
            return Outcome::Reply(Reply::DeadlineSoon);
        }
        // A job is there now: no tube holding a ready job has a waiter (it would have been
        // served), so the best one among the watched tubes goes to this connection, as it
        // would after waiting; without registering and unregistering with every tube.
        if let Some(id) = self.best_ready(c) {
            let (r, lsn) = self.hand_out(c, id, now);
            self.reveal = Reveal::Job(lsn);
            return Outcome::Reply(r);
        }
        let timeout_at = timeout.map(|t| now.saturating_add(u64::from(t) * SECOND));
        self.start_wait(c, timeout_at);
        self.process_queue(now, out);
        if let Some(i) = out.iter().position(|d| d.conn == c) {
            let d = out.remove(i);
            self.reveal = Reveal::Job(d.lsn);
            return Outcome::Reply(d.reply);
        }
        if timeout == Some(0) {
            // As the wait timer would at once: DEADLINE_SOON takes precedence.
            self.stop_wait(c);
            if self.deadline_soon(c, now) {
                return Outcome::Reply(Reply::DeadlineSoon);
            }
            return Outcome::Reply(Reply::TimedOut);
        }
        Outcome::Wait
    }

    fn delete(&mut self, c: ConnId, id: JobId, now: u64, out: &mut Deliveries) -> Reply {
        let _ = (now, out);
        let Some(j) = self.jobs.get(&id) else {
            return Reply::NotFound;
        };
        match j.state {
            JobState::Reserved => {
                if !self.take_reserved(c, id) {
                    return Reply::NotFound;
                }
                if let Some(j) = self.jobs.get(&id) {
                    let since = j.deadline.saturating_sub(u64::from(j.ttr) * SECOND);
                    let t = j.tube;
                    self.tubes
                        .get_mut(t)
                        .counters
                        .reserve_to_delete
                        .record(now.saturating_sub(since));
                }
            }
            JobState::Ready => self.remove_ready(id),
            JobState::Buried => self.remove_buried(id),
            JobState::Delayed => self.remove_delayed(id),
        }
        if let Some(j) = self.jobs.remove(&id) {
            self.body_bytes -= j.body.len() as u64;
            let tube = self.tubes.get_mut(j.tube);
            tube.cmd_delete += 1;
            let size = (tube.name.len() + j.body.len()) as u64;
            self.log(JournalOp::Delete {
                id,
                file: j.file,
                size,
            });
            self.gc_tube(j.tube);
        }
        Reply::Deleted
    }

    fn touch(&mut self, c: ConnId, id: JobId, now: u64) -> Reply {
        if !self.holds(c, id) {
            return Reply::NotFound;
        }
        let j = self.job_mut(id);
        let old = j.deadline;
        j.deadline = now.saturating_add(u64::from(j.ttr) * SECOND);
        let new = j.deadline;
        self.reserved.remove(&(old, id, c));
        self.reserved.insert((new, id, c));
        let conn = self.conn_mut(c);
        conn.reserved.remove(&(old, id));
        conn.reserved.insert((new, id));
        Reply::Touched
    }

    fn found(&mut self, id: Option<JobId>) -> Reply {
        match id.and_then(|id| self.jobs.get(&id)) {
            Some(j) => {
                self.reveal = Reveal::Job(j.lsn);
                Reply::Found {
                    id: j.id,
                    body: j.body.to_bytes(),
                }
            }
            None => Reply::NotFound,
        }
    }

    /// Kicks up to `n` jobs of the tube: buried ones if it has any, else delayed ones.
    fn kick(&mut self, t: TubeId, n: u64, now: u64, out: &mut Deliveries) -> u64 {
        let mut kicked = 0;
        let from_buried = !self.tubes.get(t).buried.is_empty();
        while kicked < n {
            let tube = self.tubes.get(t);
            let next = if from_buried {
                tube.buried.first().map(|&(_, id)| id)
            } else {
                tube.delayed.first().map(|&(_, id)| id)
            };
            let Some(id) = next else { break };
            if from_buried {
                self.remove_buried(id);
            } else {
                self.remove_delayed(id);
            }
            if let Some(j) = self.jobs.get_mut(&id) {
                j.kicks += 1;
            }
            self.make_ready(id);
            self.log(JournalOp::Update(id));
            // Each kicked job goes to a waiter before the next one is kicked.
            self.process_queue(now, out);
            kicked += 1;
        }
        kicked
    }

    fn pause(&mut self, t: TubeId, delay: u32, now: u64) {
        // beanstalkd: a zero delay pauses for one nanosecond, which ends any pause.
        let d = (u64::from(delay) * SECOND).max(1);
        let tube = self.tubes.get_mut(t);
        if let Some(at) = tube.unpause_at.take() {
            self.paused.remove(&(at, t));
        }
        let tube = self.tubes.get_mut(t);
        tube.cmd_pause += 1;
        tube.pause = d;
        let at = now.saturating_add(d);
        tube.unpause_at = Some(at);
        self.paused.insert((at, t));
        self.refresh_candidate(t);
    }

    // ----- time --------------------------------------------------------------------

    /// When [`Engine::tick`] next has work to do.
    pub fn next_wakeup(&self) -> Option<u64> {
        [
            self.delayed.first().map(|e| e.0),
            self.reserved.first().map(|e| e.0),
            self.paused.first().map(|e| e.0),
            self.wait_timers.first().map(|e| e.0),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs everything due at `now`: delayed jobs become ready, pauses end, reservations
    /// time out, waiting reserves time out or see DEADLINE_SOON.
    pub fn tick(&mut self, now: u64, out: &mut Deliveries) {
        self.now = now;
        while let Some(&(at, id)) = self.delayed.first() {
            if at > now {
                break;
            }
            self.remove_delayed(id);
            self.make_ready(id);
        }
        while let Some(&(at, t)) = self.paused.first() {
            if at > now {
                break;
            }
            self.paused.pop_first();
            let tube = self.tubes.get_mut(t);
            tube.unpause_at = None;
            tube.pause = 0;
            self.refresh_candidate(t);
        }
        self.process_queue(now, out);
        while let Some(&(at, id, c)) = self.reserved.first() {
            if at > now {
                break;
            }
            if !self.take_reserved(c, id) {
                self.reserved.pop_first();
                continue;
            }
            if let Some(j) = self.jobs.get_mut(&id) {
                j.timeouts += 1;
                let t = j.tube;
                self.tubes.get_mut(t).counters.timeouts += 1;
            }
            self.job_timeouts += 1;
            self.make_ready(id);
            self.log(JournalOp::Update(id));
            if self.is_waiting(c) {
                self.schedule_wait_timer(c);
            }
            self.process_queue(now, out);
        }
        while let Some(&(at, c)) = self.wait_timers.first() {
            if at > now {
                break;
            }
            let reply = if self.deadline_soon(c, now) {
                Reply::DeadlineSoon
            } else {
                Reply::TimedOut
            };
            self.stop_wait(c);
            out.push(Delivery {
                conn: c,
                reply,
                lsn: 0,
            });
        }
    }

    // ----- stats -------------------------------------------------------------------

    pub fn stats(&self) -> ServerStats {
        ServerStats {
            urgent: self.urgent,
            ready: self.ready,
            reserved: self.reserved.len() as u64,
            delayed: self.delayed.len() as u64,
            buried: self.buried,
            cmd: self.cmd.clone(),
            job_timeouts: self.job_timeouts,
            total_jobs: self.total_jobs,
            tubes: self.tubes.len() as u64,
            connections: self.conns.len() as u64,
            producers: self.producers,
            workers: self.workers,
            waiting: self.waiting,
            total_connections: self.total_connections,
            draining: self.local.draining,
        }
    }

    fn job_stats(&self, id: JobId, now: u64) -> Option<JobStats> {
        let j = self.jobs.get(&id)?;
        let secs = |ns: i128| (ns / i128::from(SECOND)) as i64;
        let time_left = match j.state {
            JobState::Reserved | JobState::Delayed => secs(j.deadline as i128 - now as i128),
            _ => 0,
        };
        Some(JobStats {
            id,
            tube: self.tubes.get(j.tube).name.clone(),
            state: j.state.name(),
            pri: j.pri,
            age: secs(now as i128 - j.created as i128),
            delay: u64::from(j.delay),
            ttr: u64::from(j.ttr),
            time_left,
            file: u64::from(j.file),
            reserves: j.reserves,
            timeouts: j.timeouts,
            releases: j.releases,
            buries: j.buries,
            kicks: j.kicks,
        })
    }

    pub(crate) fn tube_stats(&self, t: TubeId, now: u64) -> TubeStats {
        let tube = self.tubes.get(t);
        let pause_time_left = match tube.unpause_at {
            Some(at) if tube.pause > 0 => ((at as i128 - now as i128) / SECOND as i128) as i64,
            _ => 0,
        };
        TubeStats {
            name: tube.name.clone(),
            urgent: tube.urgent,
            ready: tube.ready.len() as u64,
            reserved: tube.reserved,
            delayed: tube.delayed.len() as u64,
            buried: tube.buried.len() as u64,
            total_jobs: tube.total_jobs,
            using: tube.using,
            watching: tube.watching,
            waiting: tube.waiters.len() as u64,
            cmd_delete: tube.cmd_delete,
            cmd_pause_tube: tube.cmd_pause,
            pause: tube.pause / SECOND,
            pause_time_left,
        }
    }

    pub fn job(&self, id: JobId) -> Option<&Job> {
        self.jobs.get(&id)
    }

    /// Limits after which `put` answers OUT_OF_MEMORY (None: no limit).
    pub fn set_limits(&mut self, max_jobs: Option<u64>, max_body_bytes: Option<u64>) {
        self.local.max_jobs = max_jobs;
        self.local.max_body_bytes = max_body_bytes;
    }

    /// Would a put of a body this big be refused for `--max-jobs`/`--max-memory`?
    pub fn put_would_exceed(&self, bytes: u64) -> bool {
        self.local
            .max_jobs
            .is_some_and(|m| self.jobs.len() as u64 >= m)
            || self
                .local
                .max_body_bytes
                .is_some_and(|m| self.body_bytes + bytes > m)
    }

    /// The connection holding job `id`'s reservation.
    pub fn reserver(&self, id: JobId) -> Option<ConnId> {
        let j = self.jobs.get(&id)?;
        if j.state != JobState::Reserved {
            return None;
        }
        self.reserved
            .range((j.deadline, id, 0)..=(j.deadline, id, u64::MAX))
            .next()
            .map(|e| e.2)
    }

    #[cfg(test)]
    pub(crate) fn job_count(&self) -> usize {
        self.jobs.len()
    }

    // ----- internals ---------------------------------------------------------------

    fn conn(&self, c: ConnId) -> &Conn {
        match self.conns.get(&c) {
            Some(conn) => conn,
            None => panic!("engine invariant: connection {c} does not exist"),
        }
    }

    fn conn_mut(&mut self, c: ConnId) -> &mut Conn {
        match self.conns.get_mut(&c) {
            Some(conn) => conn,
            None => panic!("engine invariant: connection {c} does not exist"),
        }
    }

    fn job_mut(&mut self, id: JobId) -> &mut Job {
        match self.jobs.get_mut(&id) {
            Some(j) => j,
            None => panic!("engine invariant: job {id} does not exist"),
        }
    }

    fn set_worker(&mut self, c: ConnId) {
        let conn = self.conn_mut(c);
        if !conn.worker {
            conn.worker = true;
            self.workers += 1;
        }
    }

    fn deadline_soon(&self, c: ConnId, now: u64) -> bool {
        self.conns
            .get(&c)
            .and_then(|conn| conn.soonest_deadline())
            .is_some_and(|d| now.saturating_add(SAFETY_MARGIN) >= d)
    }

    /// The best (pri, id) ready job in the connection's unpaused watched tubes.
    fn best_ready(&self, c: ConnId) -> Option<JobId> {
        let mut best: Option<(u32, JobId)> = None;
        for &t in &self.conn(c).watch {
            if self.tubes.get(t).unpause_at.is_some() {
                continue;
            }
            if let Some(head) = self.ready_head(t) {
                if best.is_none_or(|b| head < b) {
                    best = Some(head);
                }
            }
        }
        best.map(|(_, id)| id)
    }

    /// The tube's best ready job as (pri, id).
    fn ready_head(&self, t: TubeId) -> Option<(u32, JobId)> {
        self.tubes.get(t).ready.first().map(|&s| {
            let j = self.jobs.at(s);
            (j.pri, j.id)
        })
    }

    /// Does any watched tube hold a ready job (pause ignored, as in beanstalkd)?
    fn any_ready(&self, c: ConnId) -> bool {
        self.conn(c)
            .watch
            .iter()
            .any(|&t| !self.tubes.get(t).ready.is_empty())
    }

    fn make_ready(&mut self, id: JobId) {
        let Some(slot) = self.jobs.slot(id) else {
            return;
        };
        let now = self.now;
        let j = self.jobs.at_mut(slot);
        j.state = JobState::Ready;
        // While ready, `deadline` holds when the job became ready (for queue-wait metrics).
        j.deadline = now;
        let (pri, t) = (j.pri, j.tube);
        let tube = self.tubes.get_mut(t);
        heap::push(&mut tube.ready, &mut self.jobs, slot);
        tube.ages.add(now);
        if pri < URGENT_THRESHOLD {
            tube.urgent += 1;
            self.urgent += 1;
        }
        self.ready += 1;
        self.refresh_candidate(t);
    }

    fn remove_ready(&mut self, id: JobId) {
        let Some(slot) = self.jobs.slot(id) else {
            return;
        };
        let j = self.jobs.at(slot);
        let (pri, t, pos, since) = (j.pri, j.tube, j.heap_pos as usize, j.deadline);
        let tube = self.tubes.get_mut(t);
        if j.state == JobState::Ready && tube.ready.get(pos) == Some(&slot) {
            heap::remove(&mut tube.ready, &mut self.jobs, pos);
            tube.ages.remove(since);
            if pri < URGENT_THRESHOLD {
                tube.urgent -= 1;
                self.urgent -= 1;
            }
            self.ready -= 1;
        }
        self.refresh_candidate(t);
    }

    fn make_delayed(&mut self, id: JobId, at: u64) {
        let j = self.job_mut(id);
        j.state = JobState::Delayed;
        j.deadline = at;
        let t = j.tube;
        self.tubes.get_mut(t).delayed.insert((at, id));
        self.delayed.insert((at, id));
    }

    fn remove_delayed(&mut self, id: JobId) {
        let j = self.job_mut(id);
        let (at, t) = (j.deadline, j.tube);
        self.tubes.get_mut(t).delayed.remove(&(at, id));
        self.delayed.remove(&(at, id));
    }

    fn make_buried(&mut self, id: JobId) {
        self.seq += 1;
        let seq = self.seq;
        let j = self.job_mut(id);
        j.state = JobState::Buried;
        j.seq = seq;
        let t = j.tube;
        self.tubes.get_mut(t).buried.insert((seq, id));
        self.buried += 1;
    }

    fn remove_buried(&mut self, id: JobId) {
        let j = self.job_mut(id);
        let (seq, t) = (j.seq, j.tube);
        if self.tubes.get_mut(t).buried.remove(&(seq, id)) {
            self.buried -= 1;
        }
    }

    /// Reserves a job that the caller already took out of its previous state.
    /// Returns the reply and the log position of the job's change before this reserve.
    fn reserve_job(&mut self, c: ConnId, id: JobId, now: u64) -> (Reply, u64) {
        self.seq += 1;
        let seq = self.seq;
        let j = self.job_mut(id);
        let lsn = j.lsn;
        j.seq = seq;
        j.state = JobState::Reserved;
        j.deadline = now.saturating_add(u64::from(j.ttr) * SECOND);
        j.reserves += 1;
        let (deadline, t) = (j.deadline, j.tube);
        let body = j.body.to_bytes();
        self.tubes.get_mut(t).reserved += 1;
        self.reserved.insert((deadline, id, c));
        self.conn_mut(c).reserved.insert((deadline, id));
        self.log(JournalOp::Reserve(id));
        (Reply::Reserved { id, body }, lsn)
    }

    /// Takes a job out of `c`'s reservations; false if `c` does not hold it.
    fn record_queue_wait(&mut self, id: JobId, now: u64) {
        if let Some(j) = self.jobs.get(&id) {
            let (since, t) = (j.deadline, j.tube);
            self.tubes
                .get_mut(t)
                .counters
                .queue_wait
                .record(now.saturating_sub(since));
        }
    }

    /// Does `c` hold the reservation of job `id`?
    fn holds(&self, c: ConnId, id: JobId) -> bool {
        match (self.jobs.get(&id), self.conns.get(&c)) {
            (Some(j), Some(conn)) => {
                j.state == JobState::Reserved && conn.reserved.contains(&(j.deadline, id))
            }
            _ => false,
        }
    }

    fn take_reserved(&mut self, c: ConnId, id: JobId) -> bool {
        if !self.holds(c, id) {
            return false;
        }
        let j = self.job_mut(id);
        let (deadline, t) = (j.deadline, j.tube);
        self.reserved.remove(&(deadline, id, c));
        if let Some(conn) = self.conns.get_mut(&c) {
            conn.reserved.remove(&(deadline, id));
        }
        self.tubes.get_mut(t).reserved -= 1;
        true
    }

    fn start_wait(&mut self, c: ConnId, timeout_at: Option<u64>) {
        self.seq += 1;
        let seq = self.seq;
        let conn = self.conn_mut(c);
        conn.wait = Some(Wait {
            seq,
            timeout_at,
            timer: None,
        });
        let watch = conn.watch.clone();
        for t in watch {
            self.tubes.get_mut(t).waiters.insert((seq, c));
            self.refresh_candidate(t);
        }
        self.waiting += 1;
        self.schedule_wait_timer(c);
    }

    fn stop_wait(&mut self, c: ConnId) {
        let conn = self.conn_mut(c);
        let Some(wait) = conn.wait.take() else {
            return;
        };
        let watch = conn.watch.clone();
        if let Some(at) = wait.timer {
            self.wait_timers.remove(&(at, c));
        }
        for t in watch {
            self.tubes.get_mut(t).waiters.remove(&(wait.seq, c));
            self.refresh_candidate(t);
        }
        self.waiting -= 1;
    }

    fn schedule_wait_timer(&mut self, c: ConnId) {
        let conn = self.conn_mut(c);
        let soon = conn
            .soonest_deadline()
            .map(|d| d.saturating_sub(SAFETY_MARGIN));
        let Some(wait) = conn.wait.as_mut() else {
            return;
        };
        let at = match (wait.timeout_at, soon) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let old = std::mem::replace(&mut wait.timer, at);
        if let Some(old) = old {
            self.wait_timers.remove(&(old, c));
        }
        if let Some(at) = at {
            self.wait_timers.insert((at, c));
        }
    }

    /// Keeps the tube's entry in the candidate set true.
    fn refresh_candidate(&mut self, t: TubeId) {
        let tube = self.tubes.get(t);
        let want = if tube.unpause_at.is_none() && !tube.waiters.is_empty() {
            self.ready_head(t)
        } else {
            None
        };
        let tube = self.tubes.get_mut(t);
        if want == tube.candidate {
            return;
        }
        if let Some((pri, id)) = tube.candidate {
            self.candidates.remove(&(pri, id, t));
        }
        tube.candidate = want;
        if let Some((pri, id)) = want {
            self.candidates.insert((pri, id, t));
        }
    }

    /// Hands ready jobs to waiting connections: the best (pri, id) among tubes with a
    /// waiter goes to that tube's longest-waiting connection.
    fn process_queue(&mut self, now: u64, out: &mut Deliveries) {
        while let Some(&(_, id, t)) = self.candidates.first() {
            let Some(&(_, c)) = self.tubes.get(t).waiters.first() else {
                // Cannot happen: candidates only exist for tubes with waiters.
                self.tubes.get_mut(t).candidate = None;
                self.candidates.pop_first();
                continue;
            };
            self.stop_wait(c);
            let (reply, lsn) = self.hand_out(c, id, now);
            out.push(Delivery {
                conn: c,
                reply,
                lsn,
            });
        }
    }

    /// Gives the ready job `id` to connection `c` (not waiting any more). Returns the
    /// reply and the log position of the job's change that it shows.
    fn hand_out(&mut self, c: ConnId, id: JobId, now: u64) -> (Reply, u64) {
        self.remove_ready(id);
        self.record_queue_wait(id, now);
        self.reserve_job(c, id, now)
    }

    fn gc_tube(&mut self, t: TubeId) {
        if t == DEFAULT_TUBE || !self.tubes.get(t).unreferenced() {
            return;
        }
        if let Some(tube) = self.tubes.remove(t) {
            if let Some(at) = tube.unpause_at {
                self.paused.remove(&(at, t));
            }
            if let Some((pri, id)) = tube.candidate {
                self.candidates.remove(&(pri, id, t));
            }
        }
    }
}

#[cfg(test)]
mod tests;
