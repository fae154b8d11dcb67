//! Time: what the engine must do at a given moment, and doing it.

use sprout_protocol::Reply;

use crate::{Deliveries, Delivery, Engine};

impl Engine {
    /// When [`Engine::tick`] next has work to do.
    pub fn next_wakeup(&self) -> Option<u64> {
        if self.has_dead() {
            // Jobs a flush deleted are freed on ticks, a few thousand at a time.
            return Some(self.now);
        }
        [
            self.q.delayed.first().map(|e| e.0),
            self.q.reserved.first().map(|e| e.0),
            self.q.paused.first().map(|e| e.0),
            self.s.wait_timers.first().map(|e| e.0),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs everything due at `now`: delayed jobs become ready, pauses end, reservations
    /// time out, waiting reserves time out or see DEADLINE_SOON.
    pub(crate) fn tick(&mut self, now: u64, out: &mut Deliveries) {
        self.now = now;
        if self.has_dead() {
            self.free_dead(crate::cmd::flush::FREE_PER_TICK);
        }
        while let Some(&(at, id)) = self.q.delayed.first() {
            if at > now {
                break;
            }
            if self.q.jobs.slot(id).is_none() {
                // A job a flush deleted, not freed yet.
                self.q.delayed.pop_first();
                self.q.delayed_dead -= 1;
                continue;
            }
            self.remove_delayed(id);
            self.make_ready(id);
        }
        while let Some(&(at, t)) = self.q.paused.first() {
            if at > now {
                break;
            }
            self.q.paused.pop_first();
            let tube = self.q.tubes.get_mut(t);
            tube.unpause_at = None;
            tube.pause = 0;
            self.refresh_candidate(t);
        }
        self.process_queue(now, out);
        while let Some(&(at, id, c)) = self.q.reserved.first() {
            if at > now {
                break;
            }
            if !self.take_reserved(c, id) {
                self.q.reserved.pop_first();
                continue;
            }
            if let Some(j) = self.q.jobs.get_mut(&id) {
                j.timeouts += 1;
                let t = j.tube;
                self.q.tubes.get_mut(t).counters.timeouts += 1;
            }
            self.q.job_timeouts += 1;
            if self.is_waiting(c) {
                self.schedule_wait_timer(c);
            }
            self.return_job(id, crate::cmd::policy::Return::Timeout, now, out);
            self.process_queue(now, out);
        }
        while let Some(&(at, c)) = self.s.wait_timers.first() {
            if at > now {
                break;
            }
            let reply = if self.deadline_soon(c, now) {
                Reply::DeadlineSoon
            } else {
                Reply::TimedOut
            };
            self.stop_wait(c);
            out.push(Delivery {
                conn: c,
                reply,
                lsn: 0,
            });
        }
    }
}
