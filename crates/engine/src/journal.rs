//! The engine's side of persistence: the changes it reports for the log, read access to a
//! job's persistent fields, and restoring jobs at startup.

use bytes::Bytes;

use super::body::Body;
use super::job::{Job, JobId, JobState};
use super::{Engine, LSN_PENDING};

/// One change to write to the log. The log writer reads the job's current fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalOp {
    /// A new job: write a full record.
    Full(JobId),
    /// The job's state or counters changed: write an update record.
    Update(JobId),
    /// The job was reserved: an update record too, but nothing waits for it to be durable
    /// (after a crash a reserved job comes back ready anyway; only its `reserves` count may
    /// then be one lower than a client saw).
    Reserve(JobId),
    /// The job was deleted. `file` held its full record; `size` is its tube name plus
    /// body length (to account live bytes).
    Delete { id: JobId, file: u32, size: u64 },
    /// From here on no id at or above this is handed out (until the next such op): ids
    /// are taken in blocks, so that none is ever handed out twice, even across crashes.
    IdLimit(JobId),
    /// `flush-tube`: every ready, delayed and buried job of the tube is deleted (one
    /// record for all of them).
    Flush(std::sync::Arc<str>),
    /// The job moved to another tube (its current one): a move record, then an update.
    Move(JobId),
    /// A job deleted by a flush was freed: no record, only the log's count of live bytes
    /// (`file` held its full record; `size` as for `Delete`).
    Freed { file: u32, size: u64 },
    /// The tube's policy changed (a policy record with the whole policy).
    Policy(std::sync::Arc<str>),
}

impl JournalOp {
    /// The job the change is about.
    pub fn job(&self) -> Option<JobId> {
        match *self {
            JournalOp::Full(id)
            | JournalOp::Update(id)
            | JournalOp::Reserve(id)
            | JournalOp::Move(id)
            | JournalOp::Delete { id, .. } => Some(id),
            JournalOp::IdLimit(_)
            | JournalOp::Flush(_)
            | JournalOp::Freed { .. }
            | JournalOp::Policy(_) => None,
        }
    }
}

/// A job read back from the log.
#[derive(Debug, Clone)]
pub struct Restored {
    pub id: JobId,
    pub tube: String,
    pub state: JobState,
    pub pri: u32,
    /// Seconds.
    pub delay: u32,
    /// Seconds.
    pub ttr: u32,
    pub created: u64,
    pub deadline: u64,
    pub bury_seq: u64,
    pub reserves: u32,
    pub timeouts: u32,
    pub releases: u32,
    pub buries: u32,
    pub kicks: u32,
    pub file: u32,
    pub body: Bytes,
    /// What few jobs have (boxed, so that the rest stay small while recovery moves them).
    pub extra: Option<Box<RestoredExtra>>,
}

/// The rarer parts of a [`Restored`] job.
#[derive(Debug, Clone, Default)]
pub struct RestoredExtra {
    /// Its `put-unique` key.
    pub key: Option<String>,
    /// For a dead-lettered job: the tube it came from.
    pub origin: Option<String>,
}

impl Engine {
    /// From now on, record changes for the log.
    pub fn enable_journal(&mut self) {
        self.journal.get_or_insert_with(Vec::new);
    }

    pub(super) fn log(&mut self, op: JournalOp) {
        if let Some(j) = &mut self.journal {
            // Its position is known once the server appends it (see `LSN_PENDING`).
            let pending = match op {
                JournalOp::Full(id) | JournalOp::Update(id) | JournalOp::Move(id) => Some(id),
                _ => None,
            };
            j.push(op);
            if let Some(id) = pending {
                if let Some(job) = self.q.jobs.get_mut(&id) {
                    job.lsn = LSN_PENDING;
                }
            }
        }
    }

    /// Moves the recorded changes into `into` (which is cleared first).
    pub(crate) fn take_journal(&mut self, into: &mut Vec<JournalOp>) {
        into.clear();
        if let Some(j) = &mut self.journal {
            std::mem::swap(j, into);
        }
    }

    pub fn set_job_file(&mut self, id: JobId, file: u32) {
        if let Some(j) = self.q.jobs.get_mut(&id) {
            j.file = file;
        }
    }

    /// Sets the log position of job `id`'s latest change.
    pub fn set_job_lsn(&mut self, id: JobId, lsn: u64) {
        if let Some(j) = self.q.jobs.get_mut(&id) {
            j.lsn = lsn;
        }
    }

    /// The name of tube `t` (which must exist), shared.
    pub fn tube_name_of(&self, t: crate::tube::TubeId) -> std::sync::Arc<str> {
        self.q.tubes.get(t).name.clone()
    }

    pub fn tube_name(&self, j: &Job) -> &str {
        &self.q.tubes.get(j.tube).name
    }

    /// Ids of every job (for a full rewrite of the log).
    pub fn job_ids(&self) -> Vec<JobId> {
        self.q.jobs.keys().copied().collect()
    }

    /// The next job id to hand out.
    pub fn next_job_id(&self) -> JobId {
        self.q.next_job
    }

    /// No id at or above this has been handed out: what segment headers record.
    pub fn id_limit(&self) -> JobId {
        self.q.id_limit
    }

    /// At startup: ids below `id` were handed out before.
    pub fn set_next_job_id(&mut self, id: JobId) {
        self.q.next_job = self.q.next_job.max(id);
        self.q.id_limit = self.q.id_limit.max(self.q.next_job);
    }

    /// At a clean shutdown: records the exact next id, so that a restart continues from
    /// it rather than from the end of the current block.
    pub(crate) fn close_ids(&mut self) {
        self.q.id_limit = self.q.next_job;
        self.log(JournalOp::IdLimit(self.q.next_job));
    }

    /// Puts a job read from the log back in its state: reserved jobs become ready, delayed
    /// jobs whose time has passed become ready, buried jobs keep their order.
    pub fn restore(&mut self, r: Restored, now: u64) {
        self.now = now;
        if self.q.jobs.contains_key(&r.id) || r.id == 0 {
            return;
        }
        let tube = self.q.tubes.find_or_make(&r.tube);
        let id = r.id;
        self.q.body_bytes += r.body.len() as u64;
        self.q.jobs.insert(
            id,
            Job {
                id,
                created: r.created,
                lsn: 0,
                deadline: 0,
                seq: 0,
                reserves: r.reserves,
                timeouts: r.timeouts,
                releases: r.releases,
                buries: r.buries,
                kicks: r.kicks,
                pri: r.pri,
                tube,
                delay: r.delay,
                ttr: r.ttr.max(1),
                file: r.file,
                heap_pos: 0,
                state: JobState::Ready,
                body: Body::from_bytes(r.body),
            },
        );
        let (key, origin) = r.extra.map_or((None, None), |e| (e.key, e.origin));
        if let Some(o) = origin {
            self.q.origins.insert(id, o.into());
        }
        if let Some(k) = key {
            // Recovery restores jobs in id order: of two with one key, the first keeps it.
            let k: std::sync::Arc<str> = k.into();
            let t = self.q.tubes.get_mut(tube);
            if !t.unique.contains_key(&k) {
                t.unique.insert(k.clone(), id);
                self.q.keys.insert(id, k);
            }
        }
        self.q.next_job = self.q.next_job.max(id.saturating_add(1));
        self.q.id_limit = self.q.id_limit.max(self.q.next_job);
        match r.state {
            JobState::Delayed if r.deadline > now => self.make_delayed(id, r.deadline),
            JobState::Buried => {
                self.q.seq = self.q.seq.max(r.bury_seq);
                let j = self.job_mut(id);
                j.state = JobState::Buried;
                j.seq = r.bury_seq;
                let t = self.q.tubes.get_mut(tube);
                t.buried.insert((r.bury_seq, id));
                t.ids[crate::queue::BURIED].insert(id);
                self.q.buried += 1;
            }
            _ => self.make_ready(id),
        }
    }
}
