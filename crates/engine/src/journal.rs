//! The engine's side of persistence: the changes it reports for the log, read access to a
//! job's persistent fields, and restoring jobs at startup.

use bytes::Bytes;

use super::body::Body;
use super::job::{Job, JobId, JobState};
use super::Engine;

/// One change to write to the log. The log writer reads the job's current fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalOp {
    /// A new job: write a full record.
    Full(JobId),
    /// The job's state or counters changed: write an update record.
    Update(JobId),
    /// The job was deleted. `file` held its full record; `size` is its tube name plus
    /// body length (to account live bytes).
    Delete { id: JobId, file: u32, size: u64 },
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
}

impl Engine {
    /// From now on, record changes for the log.
    pub fn enable_journal(&mut self) {
        self.journal.get_or_insert_with(Vec::new);
    }

    pub(super) fn log(&mut self, op: JournalOp) {
        if let Some(j) = &mut self.journal {
            j.push(op);
        }
    }

    /// Moves the recorded changes into `into` (which is cleared first).
    pub fn take_journal(&mut self, into: &mut Vec<JournalOp>) {
        into.clear();
        if let Some(j) = &mut self.journal {
            std::mem::swap(j, into);
        }
    }

    pub fn set_job_file(&mut self, id: JobId, file: u32) {
        if let Some(j) = self.jobs.get_mut(&id) {
            j.file = file;
        }
    }

    pub fn tube_name(&self, j: &Job) -> &str {
        &self.tubes.get(j.tube).name
    }

    /// Ids of every job (for a full rewrite of the log).
    pub fn job_ids(&self) -> Vec<JobId> {
        self.jobs.keys().copied().collect()
    }

    /// The next job id to hand out.
    pub fn next_job_id(&self) -> JobId {
        self.next_job
    }

    pub fn set_next_job_id(&mut self, id: JobId) {
        self.next_job = self.next_job.max(id);
    }

    /// Drops a job whose put could not be logged (its producer was told OUT_OF_MEMORY),
    /// unless a worker already holds it. Records a delete, in case its put reaches the log
    /// after all.
    pub fn forget_unlogged_put(&mut self, id: JobId) -> bool {
        let Some(state) = self.jobs.get(&id).map(|j| j.state) else {
            return false;
        };
        match state {
            JobState::Ready => self.remove_ready(id),
            JobState::Delayed => self.remove_delayed(id),
            JobState::Buried => self.remove_buried(id),
            JobState::Reserved => return false,
        }
        if let Some(j) = self.jobs.remove(&id) {
            self.body_bytes -= j.body.len() as u64;
            self.total_jobs = self.total_jobs.saturating_sub(1);
            let tube = self.tubes.get_mut(j.tube);
            tube.total_jobs = tube.total_jobs.saturating_sub(1);
            let size = (tube.name.len() + j.body.len()) as u64;
            // Its full record may reach the log later (a retry after write errors): make
            // sure a delete follows it.
            self.log(JournalOp::Delete {
                id,
                file: j.file,
                size,
            });
            self.gc_tube(j.tube);
        }
        true
    }

    /// Puts a job read from the log back in its state: reserved jobs become ready, delayed
    /// jobs whose time has passed become ready, buried jobs keep their order.
    pub fn restore(&mut self, r: Restored, now: u64) {
        self.now = now;
        if self.jobs.contains_key(&r.id) || r.id == 0 {
            return;
        }
        let tube = self.tubes.find_or_make(&r.tube);
        let id = r.id;
        self.body_bytes += r.body.len() as u64;
        self.jobs.insert(
            id,
            Job {
                id,
                created: r.created,
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
        self.next_job = self.next_job.max(id.saturating_add(1));
        match r.state {
            JobState::Delayed if r.deadline > now => self.make_delayed(id, r.deadline),
            JobState::Buried => {
                self.seq = self.seq.max(r.bury_seq);
                let j = self.job_mut(id);
                j.state = JobState::Buried;
                j.seq = r.bury_seq;
                self.tubes.get_mut(tube).buried.insert((r.bury_seq, id));
                self.buried += 1;
            }
            _ => self.make_ready(id),
        }
    }
}
