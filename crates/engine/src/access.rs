//! Read-only questions the server asks to enforce per-user access: which tube a job, or a
//! connection's `use`, is in; and `stats` counted over the tubes a predicate accepts. The
//! predicate is an argument of the query: the engine keeps no notion of users or rights.

use sprout_protocol::reply::ServerStats;

use crate::{ConnId, Engine, JobId};

impl Engine {
    /// The tube connection `c` uses (None if there is no such connection).
    pub fn used_tube(&self, c: ConnId) -> Option<&str> {
        let conn = self.s.conns.get(&c)?;
        Some(&self.q.tubes.try_get(conn.use_tube)?.name)
    }

    /// The tube job `id` is in (None if there is no such job).
    pub fn job_tube(&self, id: JobId) -> Option<&str> {
        let j = self.q.jobs.get(&id)?;
        Some(&self.q.tubes.try_get(j.tube)?.name)
    }

    /// `stats` whose job and tube counts (`current-jobs-*`, `total-jobs`,
    /// `current-tubes`) cover only the tubes `visible` accepts; the other fields are the
    /// server's. O(tubes).
    pub fn stats_within(&self, visible: &dyn Fn(&str) -> bool) -> ServerStats {
        let mut s = self.stats();
        s.urgent = 0;
        s.ready = 0;
        s.reserved = 0;
        s.delayed = 0;
        s.buried = 0;
        s.total_jobs = 0;
        s.tubes = 0;
        for &t in self.q.tubes.ids() {
            let tube = self.q.tubes.get(t);
            if !visible(&tube.name) {
                continue;
            }
            s.urgent += tube.urgent;
            s.ready += tube.ready.len() as u64;
            s.reserved += tube.reserved;
            s.delayed += tube.delayed.len() as u64;
            s.buried += tube.buried.len() as u64;
            s.total_jobs += tube.total_jobs;
            s.tubes += 1;
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use crate::{Engine, Input, Output};
    use sprout_protocol::command::PutHeader;
    use sprout_protocol::Command;

    fn conn(e: &mut Engine, fx: &mut crate::Effects) -> u64 {
        e.apply(1, Input::Connect, fx);
        match std::mem::take(&mut fx.output) {
            Output::Conn(c) => c,
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn tubes_of_jobs_and_connections_and_stats_within() {
        let mut e = Engine::new();
        let mut fx = crate::Effects::default();
        let c = conn(&mut e, &mut fx);
        assert_eq!(e.used_tube(c), Some("default"));
        assert_eq!(e.used_tube(c + 100), None);
        let h = PutHeader {
            pri: 0,
            delay: 0,
            ttr: 10,
            bytes: 1,
        };
        let mut ids = vec![];
        for tube in ["a", "b", "b"] {
            e.apply(1, Input::Command(c, Command::Use(tube.into())), &mut fx);
            e.apply(1, Input::PutHeader(c), &mut fx);
            let Output::Job(id) = std::mem::take(&mut fx.output) else {
                panic!("put header")
            };
            let p = e
                .put_admit(c, id, h, bytes::Bytes::from_static(b"x"), 1)
                .expect("admitted");
            e.apply(1, Input::Put(p), &mut fx);
            ids.push(id);
        }
        assert_eq!(e.used_tube(c), Some("b"));
        assert_eq!(e.job_tube(ids[0]), Some("a"));
        assert_eq!(e.job_tube(ids[2]), Some("b"));
        assert_eq!(e.job_tube(ids[2] + 1), None);
        let all = e.stats();
        let only_b = e.stats_within(&|t| t == "b");
        assert_eq!((all.ready, all.tubes, all.total_jobs), (3, 3, 3));
        assert_eq!((only_b.ready, only_b.tubes, only_b.total_jobs), (2, 1, 2));
        assert_eq!(only_b.connections, all.connections);
        assert_eq!(e.stats_within(&|_| true), all);
    }
}
