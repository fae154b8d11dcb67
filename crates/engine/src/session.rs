//! Session state at work: connections come and go, reserves wait, and waiting reserves
//! are matched with ready jobs (the candidate set, see ARCHITECTURE.md).

use sprout_protocol::Reply;

use crate::conn::{Conn, Wait};
use crate::tube::{TubeId, DEFAULT_TUBE};
use crate::{ConnId, Deliveries, Delivery, Engine, JobId, SAFETY_MARGIN};

impl Engine {
    pub(crate) fn connect(&mut self) -> ConnId {
        let id = self.s.next_conn;
        self.s.next_conn += 1;
        self.s.total_connections += 1;
        let t = self.q.tubes.get_mut(DEFAULT_TUBE);
        t.sess.using += 1;
        t.sess.watching += 1;
        self.s.conns.insert(id, Conn::new(DEFAULT_TUBE));
        id
    }

    /// The connection is gone: its reservations return to ready, its tubes are released.
    pub(crate) fn disconnect(&mut self, c: ConnId, now: u64, out: &mut Deliveries) {
        self.now = now;
        if self.s.conns.get(&c).is_some_and(|conn| conn.wait.is_some()) {
            self.stop_wait(c);
        }
        let Some(conn) = self.s.conns.remove(&c) else {
            return;
        };
        // As beanstalkd: each reservation goes back in the order it was made, and is
        // handed to a waiter before the next one returns.
        let mut held: Vec<(u64, u64, JobId)> = conn
            .reserved
            .iter()
            .map(|&(deadline, id)| (self.q.jobs.get(&id).map_or(0, |j| j.seq), deadline, id))
            .collect();
        held.sort_unstable();
        for (_, deadline, id) in held {
            self.q.reserved.remove(&(deadline, id, c));
            if let Some(j) = self.q.jobs.get(&id) {
                let tube = self.q.tubes.get_mut(j.tube);
                tube.reserved -= 1;
                tube.ids[crate::queue::RESERVED].remove(id);
            }
            self.return_job(id, crate::cmd::policy::Return::Disconnect, now, out);
            self.process_queue(now, out);
        }
        if conn.producer {
            self.s.producers -= 1;
        }
        if conn.worker {
            self.s.workers -= 1;
        }
        // Tubes are released in beanstalkd's order (which decides `list-tubes` order):
        // the watch list by repeatedly removing its first entry (the last one moving into
        // its place), then the used tube.
        let mut watch = conn.watch;
        while !watch.is_empty() {
            let t = watch.swap_remove(0);
            self.q.tubes.get_mut(t).sess.watching -= 1;
            self.gc_tube(t);
        }
        self.q.tubes.get_mut(conn.use_tube).sess.using -= 1;
        self.gc_tube(conn.use_tube);
        self.process_queue(now, out);
    }

    /// A waiting connection went away half-way (half-close): if it still waits, it stops
    /// and gets `TIMED_OUT`. Returns false if it was not waiting.
    pub(crate) fn cancel_wait(&mut self, c: ConnId) -> bool {
        if self.s.conns.get(&c).is_some_and(|conn| conn.wait.is_some()) {
            self.stop_wait(c);
            true
        } else {
            false
        }
    }

    pub fn is_waiting(&self, c: ConnId) -> bool {
        self.s.conns.get(&c).is_some_and(|conn| conn.wait.is_some())
    }

    pub fn set_draining(&mut self) {
        self.local.draining = true;
    }

    #[cfg(test)]
    pub(crate) fn draining(&self) -> bool {
        self.local.draining
    }

    pub(crate) fn conn(&self, c: ConnId) -> &Conn {
        match self.s.conns.get(&c) {
            Some(conn) => conn,
            None => panic!("engine invariant: connection {c} does not exist"),
        }
    }

    pub(crate) fn conn_mut(&mut self, c: ConnId) -> &mut Conn {
        match self.s.conns.get_mut(&c) {
            Some(conn) => conn,
            None => panic!("engine invariant: connection {c} does not exist"),
        }
    }

    pub(crate) fn set_worker(&mut self, c: ConnId) {
        let conn = self.conn_mut(c);
        if !conn.worker {
            conn.worker = true;
            self.s.workers += 1;
        }
    }

    pub(crate) fn deadline_soon(&self, c: ConnId, now: u64) -> bool {
        self.s
            .conns
            .get(&c)
            .and_then(|conn| conn.soonest_deadline())
            .is_some_and(|d| now.saturating_add(SAFETY_MARGIN) >= d)
    }

    /// The best (pri, id) ready job in the connection's unpaused watched tubes.
    pub(crate) fn best_ready(&self, c: ConnId) -> Option<JobId> {
        let mut best: Option<(u32, JobId)> = None;
        for &t in &self.conn(c).watch {
            if self.q.tubes.get(t).unpause_at.is_some() {
                continue;
            }
            if let Some(head) = self.ready_head(t) {
                if best.is_none_or(|b| head < b) {
                    best = Some(head);
                }
            }
        }
        best.map(|(_, id)| id)
    }

    /// Does any watched tube hold a ready job (pause ignored, as in beanstalkd)?
    pub(crate) fn any_ready(&self, c: ConnId) -> bool {
        self.conn(c)
            .watch
            .iter()
            .any(|&t| !self.q.tubes.get(t).ready.is_empty())
    }

    pub(crate) fn start_wait(&mut self, c: ConnId, timeout_at: Option<u64>, batch: u32) {
        self.s.wait_seq += 1;
        let seq = self.s.wait_seq;
        let conn = self.conn_mut(c);
        conn.wait = Some(Wait {
            seq,
            timeout_at,
            timer: None,
            batch,
        });
        let watch = conn.watch.clone();
        for t in watch {
            self.q.tubes.get_mut(t).sess.waiters.insert((seq, c));
            self.refresh_candidate(t);
        }
        self.s.waiting += 1;
        self.schedule_wait_timer(c);
    }

    pub(crate) fn stop_wait(&mut self, c: ConnId) {
        let conn = self.conn_mut(c);
        let Some(wait) = conn.wait.take() else {
            return;
        };
        let watch = conn.watch.clone();
        if let Some(at) = wait.timer {
            self.s.wait_timers.remove(&(at, c));
        }
        for t in watch {
            self.q.tubes.get_mut(t).sess.waiters.remove(&(wait.seq, c));
            self.refresh_candidate(t);
        }
        self.s.waiting -= 1;
    }

    pub(crate) fn schedule_wait_timer(&mut self, c: ConnId) {
        let conn = self.conn_mut(c);
        let soon = conn
            .soonest_deadline()
            .map(|d| d.saturating_sub(SAFETY_MARGIN));
        let Some(wait) = conn.wait.as_mut() else {
            return;
        };
        let at = match (wait.timeout_at, soon) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let old = std::mem::replace(&mut wait.timer, at);
        if let Some(old) = old {
            self.s.wait_timers.remove(&(old, c));
        }
        if let Some(at) = at {
            self.s.wait_timers.insert((at, c));
        }
    }

    /// Keeps the tube's entry in the candidate set true.
    pub(crate) fn refresh_candidate(&mut self, t: TubeId) {
        let tube = self.q.tubes.get(t);
        let want = if tube.unpause_at.is_none() && !tube.sess.waiters.is_empty() {
            self.ready_head(t)
        } else {
            None
        };
        let tube = self.q.tubes.get_mut(t);
        if want == tube.sess.candidate {
            return;
        }
        if let Some((pri, id)) = tube.sess.candidate {
            self.s.candidates.remove(&(pri, id, t));
        }
        tube.sess.candidate = want;
        if let Some((pri, id)) = want {
            self.s.candidates.insert((pri, id, t));
        }
    }

    /// Hands ready jobs to waiting connections: the best (pri, id) among tubes with a
    /// waiter goes to that tube's longest-waiting connection.
    pub(crate) fn process_queue(&mut self, now: u64, out: &mut Deliveries) {
        while let Some(&(_, id, t)) = self.s.candidates.first() {
            let Some(&(_, c)) = self.q.tubes.get(t).sess.waiters.first() else {
                // Cannot happen: candidates only exist for tubes with waiters.
                self.q.tubes.get_mut(t).sess.candidate = None;
                self.s.candidates.pop_first();
                continue;
            };
            let batch = self.conn(c).wait.map_or(0, |w| w.batch);
            self.stop_wait(c);
            let (reply, lsn) = if batch == 0 {
                self.hand_out(c, id, now)
            } else {
                self.hand_out_batch(c, id, batch, now)
            };
            out.push(Delivery {
                conn: c,
                reply,
                lsn,
            });
        }
    }

    /// `reserve-batch`: gives `first` to `c`, then whatever else is ready for it at once,
    /// up to `max` jobs, in the order reserves would take them.
    pub(crate) fn hand_out_batch(
        &mut self,
        c: ConnId,
        first: JobId,
        max: u32,
        now: u64,
    ) -> (Reply, u64) {
        let mut jobs = Vec::new();
        let mut lsn = 0;
        let mut next = Some(first);
        while let Some(id) = next {
            if let (Reply::Reserved { id, body }, l) = self.hand_out(c, id, now) {
                jobs.push((id, body));
                lsn = lsn.max(l);
            }
            next = if jobs.len() < max as usize {
                self.best_ready(c)
            } else {
                None
            };
        }
        (Reply::ReservedBatch(jobs), lsn)
    }

    /// Gives the ready job `id` to connection `c` (not waiting any more). Returns the
    /// reply and the log position of the job's change that it shows.
    pub(crate) fn hand_out(&mut self, c: ConnId, id: JobId, now: u64) -> (Reply, u64) {
        self.remove_ready(id);
        self.record_queue_wait(id, now);
        self.reserve_job(c, id, now)
    }
}
