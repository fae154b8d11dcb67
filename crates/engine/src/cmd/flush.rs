//! `flush-tube <tube>`: deletes every ready, delayed and buried job of the tube (reserved
//! jobs stay their workers'), in constant time for the caller: the tube's sets are handed
//! over whole, the jobs become invisible to every lookup at once (the job table's dead
//! set), and their memory is freed a few thousand at a time by the inputs that follow (see
//! [`Engine::free_dead`]). One log record for all of them.

use sprout_protocol::Reply;

use crate::queue::{BURIED, DELAYED, READY};
use crate::{Engine, JobState, JournalOp};

/// Dead jobs freed after each input, and on each tick while some are left.
pub(crate) const FREE_PER_INPUT: usize = 64;
pub(crate) const FREE_PER_TICK: usize = 4096;

impl Engine {
    pub(super) fn flush_tube(&mut self, name: &str) -> Reply {
        self.s.ext.flush_tube += 1;
        let Some(t) = self.q.tubes.find(name) else {
            return Reply::Flushed(0);
        };
        let tube = self.q.tubes.get_mut(t);
        let ready = std::mem::take(&mut tube.ready);
        let delayed = std::mem::take(&mut tube.delayed);
        let buried = std::mem::take(&mut tube.buried);
        let urgent = std::mem::take(&mut tube.urgent);
        tube.ages = Default::default();
        let mut dead = std::mem::take(&mut tube.ids[READY]);
        dead |= std::mem::take(&mut tube.ids[DELAYED]);
        dead |= std::mem::take(&mut tube.ids[BURIED]);
        let n = ready.len() as u64 + delayed.len() as u64 + buried.len() as u64;
        // The tube stays (listed, with its name) until its dead jobs are freed.
        tube.dead_jobs += n;
        let name = tube.name.clone();
        self.q.ready -= ready.len() as u64;
        self.q.urgent -= urgent;
        self.q.buried -= buried.len() as u64;
        self.q.delayed_dead += delayed.len() as u64;
        self.q.jobs.kill(dead);
        // The ready heap is a vector of slots: one deallocation. The ordered sets are
        // emptied a few entries at a time with the jobs.
        drop(ready);
        self.q.graveyard.push(delayed);
        self.q.graveyard.push(buried);
        self.refresh_candidate(t);
        if n > 0 {
            self.log(JournalOp::Flush(name));
        }
        Reply::Flushed(n)
    }

    /// Frees up to `max` jobs that a flush deleted (and as many entries of the sets it
    /// handed over). Deterministic: always the lowest ids first.
    pub(crate) fn free_dead(&mut self, max: usize) {
        let mut budget = max;
        while budget > 0 {
            let Some(set) = self.q.graveyard.last_mut() else {
                break;
            };
            if set.pop_first().is_some() {
                budget -= 1;
            } else {
                self.q.graveyard.pop();
            }
        }
        if self.q.jobs.dead_count() == 0 {
            return;
        }
        let mut jobs = Vec::new();
        self.q.jobs.free_dead(max, &mut jobs);
        for j in jobs {
            if j.state == JobState::Delayed && self.q.delayed.remove(&(j.deadline, j.id)) {
                self.q.delayed_dead -= 1;
            }
            self.q.body_bytes -= j.body.len() as u64;
            self.drop_extras(j.id, j.tube);
            let tube = self.q.tubes.get_mut(j.tube);
            tube.dead_jobs -= 1;
            let size = (tube.name.len() + j.body.len()) as u64;
            if j.file != 0 {
                self.log(JournalOp::Freed { file: j.file, size });
            }
            self.gc_tube(j.tube);
        }
    }

    /// Jobs a flush deleted that are not freed yet, or sets not yet emptied.
    pub(crate) fn has_dead(&self) -> bool {
        self.q.jobs.dead_count() > 0 || !self.q.graveyard.is_empty()
    }
}
