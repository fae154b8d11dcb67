//! The queue as a synchronous state machine. No I/O, no clock: every call takes `now` in
//! nanoseconds, and replies for other connections (a waiting reserve served by someone
//! else's put, a timeout) are pushed to a [`Deliveries`] list.
//!
//! With a log, every reply and delivery says what it shows ([`Reveal`], or the position in
//! each [`Delivery`]), so that the server sends it only once the log is durable that far.
//!
//! Every operation costs O(log n) in jobs, tubes and waiting connections, except those
//! that are inherently per watched tube of the calling connection (reserve, disconnect).

mod access;
pub(crate) mod ages;
pub mod body;
pub(crate) mod check;
mod cmd;
pub(crate) mod conn;
pub mod heap;
mod image;
pub mod job;
pub mod journal;
mod machine;
pub mod metrics;
mod queue;
mod session;
pub(crate) mod table;
mod time;
pub mod tube;

use std::collections::BTreeSet;

use bytes::Bytes;
use rustc_hash::FxHashMap;

use sprout_protocol::reply::CmdCounts;
use sprout_protocol::Reply;
use table::JobTable;

pub use cmd::policy::Policy;
use conn::Conn;
pub use conn::ConnId;
pub use job::{Job, JobId, JobState, URGENT_THRESHOLD};
pub use journal::JournalOp;
pub use machine::{Effects, Input, Output};
use tube::{TubeId, Tubes};

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
    /// Which jobs are in which state (`list-jobs`): everything logged so far.
    All,
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
#[derive(Debug, Clone, PartialEq)]
pub struct NewPut {
    pub conn: ConnId,
    pub id: JobId,
    /// The connection's used tube when the put was admitted.
    pub tube: TubeId,
    /// Its name, for a put applied later than it was admitted (after it is logged): the
    /// tube may be gone by then if the connection closed, and is made again. None when the
    /// put is applied under the same lock as its admission.
    pub tube_name: Option<std::sync::Arc<str>>,
    pub pri: u32,
    pub delay: u32,
    pub ttr: u32,
    pub created: u64,
    pub body: Bytes,
    /// `put-unique`: the job's key, unique among the tube's jobs.
    pub key: Option<std::sync::Arc<str>>,
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

/// Queue state: what must survive a restart and, in a cluster, be the same on every node
/// (it is what the log describes). Jobs with their states (a reservation included: which
/// session holds it and until when), tubes with their job sets and pauses, the id counter.
#[derive(Debug)]
pub(crate) struct Queue {
    pub(crate) jobs: JobTable,
    pub(crate) tubes: Tubes,
    pub(crate) next_job: JobId,
    /// No id at or above this was handed out (the log knows it).
    pub(crate) id_limit: JobId,
    /// Orders buried jobs (bury order) and each session's reservations (reserve order).
    pub(crate) seq: u64,
    /// All delayed jobs by (ready time, id).
    pub(crate) delayed: BTreeSet<(u64, JobId)>,
    /// All reserved jobs by (deadline, id), with the session holding each.
    pub(crate) reserved: BTreeSet<(u64, JobId, ConnId)>,
    /// Paused tubes by unpause time.
    pub(crate) paused: BTreeSet<(u64, TubeId)>,
    pub(crate) ready: u64,
    pub(crate) urgent: u64,
    pub(crate) buried: u64,
    pub(crate) job_timeouts: u64,
    pub(crate) total_jobs: u64,
    /// Bytes of job bodies held (of jobs deleted by a flush too, until they are freed).
    pub(crate) body_bytes: u64,
    /// Entries of `delayed` whose jobs a flush deleted (removed as they are freed).
    pub(crate) delayed_dead: u64,
    /// The delayed and buried sets flushed tubes handed over, emptied a few entries at a
    /// time.
    pub(crate) graveyard: Vec<BTreeSet<(u64, JobId)>>,
    /// `put-unique` keys of jobs (each also in its tube's `unique` map).
    pub(crate) keys: FxHashMap<JobId, std::sync::Arc<str>>,
    /// Where dead-lettered jobs came from (`origin-tube` in `stats-job`).
    pub(crate) origins: FxHashMap<JobId, std::sync::Arc<str>>,
}

/// Session state: this node's connections, their used and watched tubes, the reserves
/// waiting for a job, and command counters. Lost with the node, never replicated.
#[derive(Debug)]
pub(crate) struct Sessions {
    pub(crate) conns: FxHashMap<ConnId, Conn>,
    pub(crate) next_conn: ConnId,
    /// Orders waiting reserves (first come, first served).
    pub(crate) wait_seq: u64,
    /// Waiting connections by the time their wait ends (timeout or deadline-soon).
    pub(crate) wait_timers: BTreeSet<(u64, ConnId)>,
    /// For each unpaused tube with a waiter and a ready job: (pri, id) of its best job.
    pub(crate) candidates: BTreeSet<(u32, JobId, TubeId)>,
    pub(crate) cmd: CmdCounts,
    pub(crate) total_connections: u64,
    pub(crate) producers: u64,
    pub(crate) workers: u64,
    pub(crate) waiting: u64,
    /// Counts of sprout's own commands (not in `stats`, which stays beanstalkd's).
    pub(crate) ext: ExtCounts,
}

/// Counts of sprout's own commands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtCounts {
    pub flush_tube: u64,
    pub reserve_batch: u64,
    pub list_jobs: u64,
    pub put_unique: u64,
    pub reprioritize: u64,
    pub move_job: u64,
    pub tube_policy: u64,
}

/// The queue as a deterministic state machine (see the crate documentation).
#[derive(Debug)]
pub struct Engine {
    q: Queue,
    s: Sessions,
    local: Local,
    /// What the reply to the current command shows.
    reveal: Reveal,
    /// Changes to persist, when a binlog is in use.
    journal: Option<Vec<JournalOp>>,
    /// The time of the call being run.
    now: u64,
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

impl Engine {
    pub fn new() -> Self {
        Engine {
            q: Queue {
                jobs: JobTable::default(),
                tubes: Tubes::new(),
                next_job: 1,
                id_limit: 1,
                seq: 0,
                delayed: BTreeSet::new(),
                reserved: BTreeSet::new(),
                paused: BTreeSet::new(),
                ready: 0,
                urgent: 0,
                buried: 0,
                job_timeouts: 0,
                total_jobs: 0,
                body_bytes: 0,
                delayed_dead: 0,
                graveyard: Vec::new(),
                keys: FxHashMap::default(),
                origins: FxHashMap::default(),
            },
            s: Sessions {
                conns: FxHashMap::default(),
                next_conn: 1,
                wait_seq: 0,
                wait_timers: BTreeSet::new(),
                candidates: BTreeSet::new(),
                cmd: CmdCounts::default(),
                total_connections: 0,
                producers: 0,
                workers: 0,
                waiting: 0,
                ext: ExtCounts::default(),
            },
            local: Local::default(),
            reveal: Reveal::Nothing,
            journal: None,
            now: 0,
        }
    }

    /// What the reply to the last command shows (see [`Reveal`]).
    pub fn reveal(&self) -> Reveal {
        self.reveal
    }

    pub fn job(&self, id: JobId) -> Option<&Job> {
        self.q.jobs.get(&id)
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
            .is_some_and(|m| self.q.jobs.len() as u64 >= m)
            || self
                .local
                .max_body_bytes
                .is_some_and(|m| self.q.body_bytes + bytes > m)
    }

    /// The connection holding job `id`'s reservation.
    pub fn reserver(&self, id: JobId) -> Option<ConnId> {
        let j = self.q.jobs.get(&id)?;
        if j.state != JobState::Reserved {
            return None;
        }
        self.q
            .reserved
            .range((j.deadline, id, 0)..=(j.deadline, id, u64::MAX))
            .next()
            .map(|e| e.2)
    }

    #[cfg(test)]
    pub(crate) fn job_count(&self) -> usize {
        self.q.jobs.len()
    }
}

#[cfg(test)]
mod tests;
