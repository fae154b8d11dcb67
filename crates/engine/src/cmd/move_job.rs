//! `move-job <id> <tube>`: a job goes to another tube in the same state, keeping its id
//! and counters (a ready job to the back of its priority in the new tube, a buried one to
//! the end of its buried list, a delayed one with its time); a reserved job only by its
//! holder.

use sprout_protocol::Reply;

use crate::queue::RESERVED;
use crate::tube::TubeId;
use crate::{ConnId, Deliveries, Engine, JobId, JobState, JournalOp};

impl Engine {
    pub(super) fn move_job(
        &mut self,
        c: ConnId,
        id: JobId,
        name: &str,
        now: u64,
        out: &mut Deliveries,
    ) -> Reply {
        self.s.ext.move_job += 1;
        let Some((state, from)) = self.q.jobs.get(&id).map(|j| (j.state, j.tube)) else {
            return Reply::NotFound;
        };
        if state == JobState::Reserved && !self.holds(c, id) {
            return Reply::NotFound;
        }
        let to = self.q.tubes.find_or_make(name);
        if to != from {
            self.move_key(id, from, to);
            self.move_to(id, to, now, out);
            self.log(JournalOp::Move(id));
            self.gc_tube(from);
        }
        Reply::Moved
    }

    /// A job with a `put-unique` key moves from `from` to `to`: the key goes with it if no
    /// other job of `to` holds it; otherwise the job loses it.
    pub(crate) fn move_key(&mut self, id: JobId, from: TubeId, to: TubeId) {
        let Some(k) = self.q.keys.get(&id).cloned() else {
            return;
        };
        let old = self.q.tubes.get_mut(from);
        if old.unique.get(&k) == Some(&id) {
            old.unique.remove(&k);
        }
        if self.key_holder(to, &k).is_some() {
            self.q.keys.remove(&id);
        } else {
            self.q.tubes.get_mut(to).unique.insert(k, id);
        }
    }

    /// Moves job `id` to tube `to` in its current state.
    pub(crate) fn move_to(&mut self, id: JobId, to: TubeId, now: u64, out: &mut Deliveries) {
        let j = self.job_mut(id);
        let (state, from, at) = (j.state, j.tube, j.deadline);
        match state {
            JobState::Ready => {
                self.remove_ready(id);
                self.job_mut(id).tube = to;
                self.make_ready(id);
                self.process_queue(now, out);
            }
            JobState::Delayed => {
                self.remove_delayed(id);
                self.job_mut(id).tube = to;
                self.make_delayed(id, at);
            }
            JobState::Buried => {
                self.remove_buried(id);
                self.job_mut(id).tube = to;
                self.make_buried(id);
            }
            JobState::Reserved => {
                let old = self.q.tubes.get_mut(from);
                old.reserved -= 1;
                old.ids[RESERVED].remove(id);
                self.job_mut(id).tube = to;
                let new = self.q.tubes.get_mut(to);
                new.reserved += 1;
                new.ids[RESERVED].insert(id);
            }
        }
    }
}
