//! `reprioritize <id> <pri>`: a ready, delayed or buried job, or a reserved one by its
//! holder, gets a new priority (a ready job keeps its place in time: its ready age and
//! queue-wait measurement are unchanged).

use sprout_protocol::Reply;

use crate::{heap, ConnId, Engine, JobId, JobState, JournalOp, URGENT_THRESHOLD};

impl Engine {
    pub(super) fn reprioritize(&mut self, c: ConnId, id: JobId, pri: u32) -> Reply {
        self.s.ext.reprioritize += 1;
        let Some(state) = self.q.jobs.get(&id).map(|j| j.state) else {
            return Reply::NotFound;
        };
        match state {
            JobState::Reserved if !self.holds(c, id) => return Reply::NotFound,
            JobState::Ready => self.reprioritize_ready(id, pri),
            _ => self.job_mut(id).pri = pri,
        }
        self.log(JournalOp::Update(id));
        Reply::Reprioritized
    }

    /// Moves a ready job within its tube's heap to its new priority.
    fn reprioritize_ready(&mut self, id: JobId, pri: u32) {
        let Some(slot) = self.q.jobs.slot(id) else {
            return;
        };
        let j = self.q.jobs.at_mut(slot);
        let (old, t, pos) = (j.pri, j.tube, j.heap_pos as usize);
        j.pri = pri;
        let was = old < URGENT_THRESHOLD;
        let is = pri < URGENT_THRESHOLD;
        let tube = self.q.tubes.get_mut(t);
        heap::remove(&mut tube.ready, &mut self.q.jobs, pos);
        heap::push(&mut tube.ready, &mut self.q.jobs, slot);
        if was != is {
            if is {
                tube.urgent += 1;
                self.q.urgent += 1;
            } else {
                tube.urgent -= 1;
                self.q.urgent -= 1;
            }
        }
        self.refresh_candidate(t);
    }
}
