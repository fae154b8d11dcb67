//! `delete`: of a job the caller reserved, or of a ready, delayed or buried job.

use sprout_protocol::Reply;

use crate::{ConnId, Engine, JobId, JobState, JournalOp, SECOND};

impl Engine {
    pub(super) fn delete(&mut self, c: ConnId, id: JobId, now: u64) -> Reply {
        self.s.cmd.delete += 1;
        let Some(j) = self.q.jobs.get(&id) else {
            return Reply::NotFound;
        };
        match j.state {
            JobState::Reserved => {
                if !self.take_reserved(c, id) {
                    return Reply::NotFound;
                }
                if let Some(j) = self.q.jobs.get(&id) {
                    let since = j.deadline.saturating_sub(u64::from(j.ttr) * SECOND);
                    let t = j.tube;
                    self.q
                        .tubes
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
        if let Some(j) = self.q.jobs.remove(&id) {
            self.drop_extras(id, j.tube);
            self.q.body_bytes -= j.body.len() as u64;
            let tube = self.q.tubes.get_mut(j.tube);
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
}
