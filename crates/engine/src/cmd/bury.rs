//! `bury`: a reserved job goes to the end of its tube's buried list.

use sprout_protocol::Reply;

use crate::{ConnId, Engine, JobId, JournalOp};

impl Engine {
    pub(super) fn bury(&mut self, c: ConnId, id: JobId, pri: u32) -> Reply {
        self.s.cmd.bury += 1;
        if !self.take_reserved(c, id) {
            return Reply::NotFound;
        }
        if let Some(j) = self.q.jobs.get_mut(&id) {
            j.pri = pri;
            j.buries += 1;
            let t = j.tube;
            self.q.tubes.get_mut(t).counters.buries += 1;
        }
        self.make_buried(id);
        self.log(JournalOp::Update(id));
        Reply::Buried
    }
}
