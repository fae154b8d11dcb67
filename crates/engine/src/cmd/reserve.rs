//! `reserve`, `reserve-with-timeout`, `reserve-job`.

use sprout_protocol::Reply;

use crate::{ConnId, Deliveries, Engine, JobId, JobState, Outcome, Reveal, SECOND};

impl Engine {
    pub(crate) fn reserve(
        &mut self,
        c: ConnId,
        timeout: Option<u32>,
        now: u64,
        out: &mut Deliveries,
    ) -> Outcome {
        self.reserve_n(c, timeout, 0, now, out)
    }

    /// `reserve-batch <max> <timeout>`: waits as `reserve-with-timeout` does for the first
    /// job, then takes what else is ready at once, up to `max`.
    pub(super) fn reserve_batch(
        &mut self,
        c: ConnId,
        max: u32,
        timeout: u32,
        now: u64,
        out: &mut Deliveries,
    ) -> Outcome {
        self.s.ext.reserve_batch += 1;
        self.reserve_n(c, Some(timeout), max.max(1), now, out)
    }

    /// A reserve of one job (`batch` 0) or of up to `batch` jobs.
    fn reserve_n(
        &mut self,
        c: ConnId,
        timeout: Option<u32>,
        batch: u32,
        now: u64,
        out: &mut Deliveries,
    ) -> Outcome {
        self.set_worker(c);
        if self.deadline_soon(c, now) && !self.any_ready(c) {
            return Outcome::Reply(Reply::DeadlineSoon);
        }
        // A job is there now: no tube holding a ready job has a waiter (it would have been
        // served), so the best one among the watched tubes goes to this connection, as it
        // would after waiting; without registering and unregistering with every tube.
        if let Some(id) = self.best_ready(c) {
            let (r, lsn) = if batch == 0 {
                self.hand_out(c, id, now)
            } else {
                self.hand_out_batch(c, id, batch, now)
            };
            self.reveal = Reveal::Job(lsn);
            return Outcome::Reply(r);
        }
        let timeout_at = timeout.map(|t| now.saturating_add(u64::from(t) * SECOND));
        self.start_wait(c, timeout_at, batch);
        self.process_queue(now, out);
        if let Some(i) = out.iter().position(|d| d.conn == c) {
            let d = out.remove(i);
            self.reveal = Reveal::Job(d.lsn);
            return Outcome::Reply(d.reply);
        }
        if timeout == Some(0) {
            // As the wait timer would at once: DEADLINE_SOON takes precedence.
            self.stop_wait(c);
            if self.deadline_soon(c, now) {
                return Outcome::Reply(Reply::DeadlineSoon);
            }
            return Outcome::Reply(Reply::TimedOut);
        }
        Outcome::Wait
    }

    pub(super) fn reserve_job_cmd(&mut self, c: ConnId, id: JobId, now: u64) -> Reply {
        self.s.cmd.reserve_job += 1;
        self.set_worker(c);
        match self.q.jobs.get(&id).map(|j| j.state) {
            Some(JobState::Ready) => {
                self.remove_ready(id);
                self.record_queue_wait(id, now);
            }
            Some(JobState::Buried) => self.remove_buried(id),
            Some(JobState::Delayed) => self.remove_delayed(id),
            _ => return Reply::NotFound,
        }
        let (r, lsn) = self.reserve_job(c, id, now);
        self.reveal = Reveal::Job(lsn);
        r
    }
}
