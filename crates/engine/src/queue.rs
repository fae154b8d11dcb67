//! Queue state at work: the transitions of a job between its states, each keeping every
//! index (the tube's sets, the global time-ordered sets, the counts) true in O(log n).

use sprout_protocol::Reply;

use crate::heap;
use crate::tube::{TubeId, DEFAULT_TUBE};
use crate::{ConnId, Engine, Job, JobId, JobState, JournalOp, SECOND, URGENT_THRESHOLD};

pub(crate) const READY: usize = JobState::Ready as usize;
pub(crate) const RESERVED: usize = JobState::Reserved as usize;
pub(crate) const BURIED: usize = JobState::Buried as usize;
pub(crate) const DELAYED: usize = JobState::Delayed as usize;

impl Engine {
    pub(crate) fn job_mut(&mut self, id: JobId) -> &mut Job {
        match self.q.jobs.get_mut(&id) {
            Some(j) => j,
            None => panic!("engine invariant: job {id} does not exist"),
        }
    }

    /// The tube's best ready job as (pri, id).
    pub(crate) fn ready_head(&self, t: TubeId) -> Option<(u32, JobId)> {
        self.q.tubes.get(t).ready.first().map(|&s| {
            let j = self.q.jobs.at(s);
            (j.pri, j.id)
        })
    }

    pub(crate) fn make_ready(&mut self, id: JobId) {
        let Some(slot) = self.q.jobs.slot(id) else {
            return;
        };
        let now = self.now;
        let j = self.q.jobs.at_mut(slot);
        j.state = JobState::Ready;
        // While ready, `deadline` holds when the job became ready (for queue-wait metrics).
        j.deadline = now;
        let (pri, t) = (j.pri, j.tube);
        let tube = self.q.tubes.get_mut(t);
        heap::push(&mut tube.ready, &mut self.q.jobs, slot);
        tube.ids[READY].insert(id);
        tube.ages.add(now);
        if pri < URGENT_THRESHOLD {
            tube.urgent += 1;
            self.q.urgent += 1;
        }
        self.q.ready += 1;
        self.refresh_candidate(t);
    }

    pub(crate) fn remove_ready(&mut self, id: JobId) {
        let Some(slot) = self.q.jobs.slot(id) else {
            return;
        };
        let j = self.q.jobs.at(slot);
        let (pri, t, pos, since) = (j.pri, j.tube, j.heap_pos as usize, j.deadline);
        let tube = self.q.tubes.get_mut(t);
        if j.state == JobState::Ready && tube.ready.get(pos) == Some(&slot) {
            heap::remove(&mut tube.ready, &mut self.q.jobs, pos);
            tube.ids[READY].remove(id);
            tube.ages.remove(since);
            if pri < URGENT_THRESHOLD {
                tube.urgent -= 1;
                self.q.urgent -= 1;
            }
            self.q.ready -= 1;
        }
        self.refresh_candidate(t);
    }

    pub(crate) fn make_delayed(&mut self, id: JobId, at: u64) {
        let j = self.job_mut(id);
        j.state = JobState::Delayed;
        j.deadline = at;
        let t = j.tube;
        let tube = self.q.tubes.get_mut(t);
        tube.delayed.insert((at, id));
        tube.ids[DELAYED].insert(id);
        self.q.delayed.insert((at, id));
    }

    pub(crate) fn remove_delayed(&mut self, id: JobId) {
        let j = self.job_mut(id);
        let (at, t) = (j.deadline, j.tube);
        let tube = self.q.tubes.get_mut(t);
        tube.delayed.remove(&(at, id));
        tube.ids[DELAYED].remove(id);
        self.q.delayed.remove(&(at, id));
    }

    pub(crate) fn make_buried(&mut self, id: JobId) {
        self.q.seq += 1;
        let seq = self.q.seq;
        let j = self.job_mut(id);
        j.state = JobState::Buried;
        j.seq = seq;
        let t = j.tube;
        let tube = self.q.tubes.get_mut(t);
        tube.buried.insert((seq, id));
        tube.ids[BURIED].insert(id);
        self.q.buried += 1;
    }

    pub(crate) fn remove_buried(&mut self, id: JobId) {
        let j = self.job_mut(id);
        let (seq, t) = (j.seq, j.tube);
        let tube = self.q.tubes.get_mut(t);
        if tube.buried.remove(&(seq, id)) {
            tube.ids[BURIED].remove(id);
            self.q.buried -= 1;
        }
    }

    /// Reserves a job that the caller already took out of its previous state.
    /// Returns the reply and the log position of the job's change before this reserve.
    pub(crate) fn reserve_job(&mut self, c: ConnId, id: JobId, now: u64) -> (Reply, u64) {
        self.q.seq += 1;
        let seq = self.q.seq;
        let j = self.job_mut(id);
        let lsn = j.lsn;
        j.seq = seq;
        j.state = JobState::Reserved;
        j.deadline = now.saturating_add(u64::from(j.ttr) * SECOND);
        j.reserves += 1;
        let (deadline, t) = (j.deadline, j.tube);
        let body = j.body.to_bytes();
        let tube = self.q.tubes.get_mut(t);
        tube.reserved += 1;
        tube.ids[RESERVED].insert(id);
        self.q.reserved.insert((deadline, id, c));
        self.conn_mut(c).reserved.insert((deadline, id));
        self.log(JournalOp::Reserve(id));
        (Reply::Reserved { id, body }, lsn)
    }

    /// Takes a job out of `c`'s reservations; false if `c` does not hold it.
    pub(crate) fn record_queue_wait(&mut self, id: JobId, now: u64) {
        if let Some(j) = self.q.jobs.get(&id) {
            let (since, t) = (j.deadline, j.tube);
            self.q
                .tubes
                .get_mut(t)
                .counters
                .queue_wait
                .record(now.saturating_sub(since));
        }
    }

    /// Does `c` hold the reservation of job `id`?
    pub(crate) fn holds(&self, c: ConnId, id: JobId) -> bool {
        match (self.q.jobs.get(&id), self.s.conns.get(&c)) {
            (Some(j), Some(conn)) => {
                j.state == JobState::Reserved && conn.reserved.contains(&(j.deadline, id))
            }
            _ => false,
        }
    }

    pub(crate) fn take_reserved(&mut self, c: ConnId, id: JobId) -> bool {
        if !self.holds(c, id) {
            return false;
        }
        let j = self.job_mut(id);
        let (deadline, t) = (j.deadline, j.tube);
        self.q.reserved.remove(&(deadline, id, c));
        if let Some(conn) = self.s.conns.get_mut(&c) {
            conn.reserved.remove(&(deadline, id));
        }
        let tube = self.q.tubes.get_mut(t);
        tube.reserved -= 1;
        tube.ids[RESERVED].remove(id);
        true
    }

    pub(crate) fn gc_tube(&mut self, t: TubeId) {
        if t == DEFAULT_TUBE || !self.q.tubes.get(t).unreferenced() {
            return;
        }
        if let Some(tube) = self.q.tubes.remove(t) {
            if let Some(at) = tube.unpause_at {
                self.q.paused.remove(&(at, t));
            }
            if let Some((pri, id)) = tube.sess.candidate {
                self.s.candidates.remove(&(pri, id, t));
            }
        }
    }
}
