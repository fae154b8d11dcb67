//! `use`, `watch`, `ignore`, `list-tubes`, `list-tube-used`, `list-tubes-watched`.

use sprout_protocol::Reply;

use crate::{ConnId, Engine};

impl Engine {
    pub(super) fn use_tube(&mut self, c: ConnId, name: &str) -> Reply {
        self.s.cmd.use_ += 1;
        let t = self.q.tubes.find_or_make(name);
        self.q.tubes.get_mut(t).sess.using += 1;
        let conn = self.conn_mut(c);
        let old = std::mem::replace(&mut conn.use_tube, t);
        self.q.tubes.get_mut(old).sess.using -= 1;
        self.gc_tube(old);
        Reply::Using(self.q.tubes.get(t).name.clone())
    }

    pub(super) fn watch(&mut self, c: ConnId, name: &str) -> Reply {
        self.s.cmd.watch += 1;
        let t = self.q.tubes.find_or_make(name);
        let conn = self.conn_mut(c);
        if !conn.watch.contains(&t) {
            conn.watch.push(t);
            self.q.tubes.get_mut(t).sess.watching += 1;
        }
        Reply::Watching(self.conn(c).watch.len())
    }

    pub(super) fn ignore(&mut self, c: ConnId, name: &str) -> Reply {
        self.s.cmd.ignore += 1;
        let t = self.q.tubes.find(name);
        let conn = self.conn_mut(c);
        let pos = t.and_then(|t| conn.watch.iter().position(|&w| w == t));
        if let Some(pos) = pos {
            if conn.watch.len() < 2 {
                return Reply::NotIgnored;
            }
            let t = conn.watch.swap_remove(pos);
            self.q.tubes.get_mut(t).sess.watching -= 1;
            self.gc_tube(t);
        }
        Reply::Watching(self.conn(c).watch.len())
    }

    pub(super) fn list_tubes(&mut self) -> Reply {
        self.s.cmd.list_tubes += 1;
        let names = self
            .q
            .tubes
            .ids()
            .iter()
            .map(|&t| self.q.tubes.get(t).name.clone())
            .collect();
        Reply::List(names)
    }

    pub(super) fn list_tube_used(&mut self, c: ConnId) -> Reply {
        self.s.cmd.list_tube_used += 1;
        Reply::Using(self.q.tubes.get(self.conn(c).use_tube).name.clone())
    }

    pub(super) fn list_tubes_watched(&mut self, c: ConnId) -> Reply {
        self.s.cmd.list_tubes_watched += 1;
        let names = self
            .conn(c)
            .watch
            .iter()
            .map(|&t| self.q.tubes.get(t).name.clone())
            .collect();
        Reply::List(names)
    }
}
