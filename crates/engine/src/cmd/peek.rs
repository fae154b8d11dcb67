//! `peek`, `peek-ready`, `peek-delayed`, `peek-buried`.

use sprout_protocol::Reply;

use crate::{ConnId, Engine, JobId, Reveal};

impl Engine {
    pub(super) fn peek(&mut self, id: JobId) -> Reply {
        self.s.cmd.peek += 1;
        self.found(Some(id))
    }

    pub(super) fn peek_ready(&mut self, c: ConnId) -> Reply {
        self.s.cmd.peek_ready += 1;
        let t = self.q.tubes.get(self.conn(c).use_tube);
        self.found(t.ready.first().map(|&s| self.q.jobs.at(s).id))
    }

    pub(super) fn peek_delayed(&mut self, c: ConnId) -> Reply {
        self.s.cmd.peek_delayed += 1;
        let t = self.q.tubes.get(self.conn(c).use_tube);
        self.found(t.delayed.first().map(|&(_, id)| id))
    }

    pub(super) fn peek_buried(&mut self, c: ConnId) -> Reply {
        self.s.cmd.peek_buried += 1;
        let t = self.q.tubes.get(self.conn(c).use_tube);
        self.found(t.buried.first().map(|&(_, id)| id))
    }

    pub(crate) fn found(&mut self, id: Option<JobId>) -> Reply {
        match id.and_then(|id| self.q.jobs.get(&id)) {
            Some(j) => {
                self.reveal = Reveal::Job(j.lsn);
                Reply::Found {
                    id: j.id,
                    body: j.body.to_bytes(),
                }
            }
            None => Reply::NotFound,
        }
    }
}
