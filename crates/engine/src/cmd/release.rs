//! `release`: a reserved job goes back to ready (to a waiter at once) or delayed.

use sprout_protocol::Reply;

use super::policy::Return;
use crate::{ConnId, Deliveries, Engine, JobId};

impl Engine {
    pub(super) fn release(
        &mut self,
        c: ConnId,
        id: JobId,
        pri: u32,
        delay: u32,
        now: u64,
        out: &mut Deliveries,
    ) -> Reply {
        self.s.cmd.release += 1;
        if !self.take_reserved(c, id) {
            return Reply::NotFound;
        }
        if let Some(j) = self.q.jobs.get_mut(&id) {
            j.pri = pri;
            j.delay = delay;
            j.releases += 1;
        }
        self.return_job(id, Return::Release(delay), now, out);
        Reply::Released
    }
}
