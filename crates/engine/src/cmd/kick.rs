//! `kick` (buried jobs of the used tube if it has any, else delayed ones) and `kick-job`.

use sprout_protocol::Reply;

use crate::tube::TubeId;
use crate::{ConnId, Deliveries, Engine, JobId, JobState, JournalOp};

impl Engine {
    pub(super) fn kick_cmd(&mut self, c: ConnId, n: u32, now: u64, out: &mut Deliveries) -> Reply {
        self.s.cmd.kick += 1;
        let n = self.kick(self.conn(c).use_tube, u64::from(n), now, out);
        Reply::Kicked(n)
    }

    pub(super) fn kick_job(&mut self, id: JobId, now: u64, out: &mut Deliveries) -> Reply {
        self.s.cmd.kick_job += 1;
        match self.q.jobs.get(&id).map(|j| j.state) {
            Some(JobState::Buried) => self.remove_buried(id),
            Some(JobState::Delayed) => self.remove_delayed(id),
            _ => return Reply::NotFound,
        }
        if let Some(j) = self.q.jobs.get_mut(&id) {
            j.kicks += 1;
        }
        self.make_ready(id);
        self.log(JournalOp::Update(id));
        self.process_queue(now, out);
        Reply::KickedJob
    }

    /// Kicks up to `n` jobs of the tube: buried ones if it has any, else delayed ones.
    pub(crate) fn kick(&mut self, t: TubeId, n: u64, now: u64, out: &mut Deliveries) -> u64 {
        let mut kicked = 0;
        let from_buried = !self.q.tubes.get(t).buried.is_empty();
        while kicked < n {
            let tube = self.q.tubes.get(t);
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
            if let Some(j) = self.q.jobs.get_mut(&id) {
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
}
