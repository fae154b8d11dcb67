//! `touch`: a reservation's time to run starts again (not logged: after a restart a
//! reserved job is ready anyway).

use sprout_protocol::Reply;

use crate::{ConnId, Engine, JobId, SECOND};

impl Engine {
    pub(super) fn touch(&mut self, c: ConnId, id: JobId, now: u64) -> Reply {
        self.s.cmd.touch += 1;
        if !self.holds(c, id) {
            return Reply::NotFound;
        }
        let j = self.job_mut(id);
        let old = j.deadline;
        j.deadline = now.saturating_add(u64::from(j.ttr) * SECOND);
        let new = j.deadline;
        self.q.reserved.remove(&(old, id, c));
        self.q.reserved.insert((new, id, c));
        let conn = self.conn_mut(c);
        conn.reserved.remove(&(old, id));
        conn.reserved.insert((new, id));
        Reply::Touched
    }
}
