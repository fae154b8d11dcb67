//! Keeping the directory bounded and healing it: compaction moves the live jobs out of the
//! oldest segment and deletes it; a checkpoint rewrites every job into a new segment (after
//! taking over beanstalkd's files); after write errors, a resume rewrites the jobs whose
//! changes failed. Checkpoints and resumes start a new epoch (see [`crate::ack`]).

use std::time::{Duration, Instant};

use sprout_engine::{Engine, JobId};

use crate::record::{self, Record};
use crate::{Binlog, Inner, Ticket, WithEngine};

impl Binlog {
    /// Writes every job as a full record into a new segment; once that is synced, all
    /// older segments (and beanstalkd's files, after a take-over) are deleted. Holds the
    /// engine lock (the caller's) for the time it takes to encode the jobs.
    pub fn checkpoint(&self, e: &mut Engine) -> Ticket {
        let seg_size = self.inner.seg_size;
        let next_id = e.id_limit();
        let mut p = self.pend();
        let seq = p.new_epoch(seg_size, next_id);
        p.rebase = Some(seq);
        p.live = 0;
        push_policies(&mut p, e, seg_size, next_id);
        let mut ids = e.job_ids();
        ids.sort_unstable();
        for id in ids {
            let Some((s, lsn)) = p.push_full(e, id, seg_size, next_id) else {
                continue;
            };
            p.live += p.last_full;
            e.set_job_file(id, s);
            e.set_job_lsn(id, lsn);
        }
        p.heal_end = p.lsn;
        self.request_sync(p)
    }

    /// After write errors: starts a new segment holding the current state of every job
    /// whose change failed (a full record, or a delete if it is gone). Needs room for those
    /// jobs only, not the whole live set.
    fn resume(&self, e: &mut Engine) -> Ticket {
        let seg_size = self.inner.seg_size;
        let next_id = e.id_limit();
        let mut p = self.pend();
        let mut lost: Vec<JobId> = std::mem::take(&mut p.lost).into_iter().collect();
        lost.sort_unstable();
        let flushes = std::mem::take(&mut p.lost_flushes);
        p.new_epoch(seg_size, next_id);
        // The id limit, in case the failed records held one; flushes that failed, before
        // the current state of the jobs whose changes failed.
        p.push_record(&Record::IdLimit { limit: next_id }, seg_size, next_id);
        for tube in flushes {
            p.push_record(&Record::Flush { tube }, seg_size, next_id);
        }
        // Policies are few: all of them, in case a change of one failed.
        push_policies(&mut p, e, seg_size, next_id);
        for id in lost {
            let new = e.job(id).is_some_and(|j| j.file == 0);
            match p.push_full(e, id, seg_size, next_id) {
                Some((s, lsn)) => {
                    if new {
                        p.live += p.last_full;
                    }
                    e.set_job_file(id, s);
                    e.set_job_lsn(id, lsn);
                }
                None => {
                    p.push_record(&Record::Delete { id }, seg_size, next_id);
                }
            }
        }
        p.heal_end = p.lsn;
        self.request_sync(p)
    }

    /// The oldest segment, if compaction should empty it: the directory holds more than
    /// two segments and more than twice the live bytes.
    fn compaction_target(&self) -> Option<u32> {
        let p = self.pend();
        if p.failed.is_some() || p.rebase.is_some() || p.segs.len() < 3 {
            return None;
        }
        let disk: u64 = p.segs.values().sum();
        if disk <= 2 * p.live {
            return None;
        }
        let (&head, _) = p.segs.iter().next()?;
        (head != p.tail_seq).then_some(head)
    }

    /// One round of background maintenance: compacts the oldest segment if due, or, after
    /// write errors, tries to rewrite the log. `engine` runs a closure on the locked engine.
    /// Returns true if it did work (call again at once: more may be due).
    pub fn maintain(&self, engine: WithEngine<'_>) -> bool {
        if self.failed() {
            let mut t = None;
            engine(&mut |e| t = Some(self.resume(e)));
            if t.is_some_and(|t| self.wait_synced(t)) {
                tracing::warn!("binlog: writes work again; the changes that failed are logged");
                return true;
            }
            return false;
        }
        let Some(head) = self.compaction_target() else {
            return false;
        };
        let io = &self.inner.io;
        let data = match io.read(head) {
            Ok(d) => d,
            Err(e) => {
                let path = io.path(head);
                tracing::warn!("binlog: compaction cannot read {}: {e}", path.display());
                return false;
            }
        };
        // Ids whose full record is in the head segment, and tubes whose policy is.
        let mut ids = Vec::new();
        let mut policy_tubes = Vec::new();
        let mut off = record::HEADER_LEN.min(data.len());
        while let record::Next::Record(r, n) = record::decode(&data[off..]) {
            match r {
                Record::Full { id, .. } => ids.push(id),
                Record::Policy { tube, .. } => policy_tubes.push(tube),
                _ => {}
            }
            off += n;
        }
        if !policy_tubes.is_empty() {
            // A policy still in force is written again before its record goes away.
            engine(&mut |e| {
                let next_id = e.id_limit();
                let mut p = self.pend();
                for tube in &policy_tubes {
                    if let Some(policy) = e.policy(tube) {
                        let r = Record::Policy {
                            tube: tube.clone(),
                            policy: policy.clone(),
                        };
                        p.push_record(&r, self.inner.seg_size, next_id);
                    }
                }
            });
        }
        let seg_size = self.inner.seg_size;
        for batch in ids.chunks(256) {
            engine(&mut |e| {
                let next_id = e.id_limit();
                let mut p = self.pend();
                for &id in batch {
                    if e.job(id).map(|j| j.file) != Some(head) {
                        continue;
                    }
                    let Some((s, lsn)) = p.push_full(e, id, seg_size, next_id) else {
                        continue;
                    };
                    p.records_migrated += 1;
                    e.set_job_file(id, s);
                    e.set_job_lsn(id, lsn);
                }
            });
            self.inner.cv.notify_one();
        }
        let t = self.position();
        if !self.wait_synced(t) {
            return false;
        }
        if io.remove(head).is_ok() {
            io.sync_dir();
        }
        self.pend().segs.remove(&head);
        self.inner.compacted.notify_waiters();
        true
    }

    /// True when the directory has grown two segments past its bound (twice the live
    /// bytes, at least three segments): writers are outrunning compaction.
    pub fn over_budget(&self) -> bool {
        let p = self.pend();
        let disk: u64 = p.segs.values().sum();
        let seg = self.inner.seg_size;
        disk > (2 * p.live).max(3 * seg) + 2 * seg
    }

    /// Backpressure: while over budget, waits (in 50 ms steps, at most 2 s) for compaction
    /// to delete segments. Changes keep flowing, only slower, so disk use stays bounded.
    pub async fn wait_for_room(&self) {
        let start = Instant::now();
        while self.over_budget() && start.elapsed() < Duration::from_secs(2) {
            let n = self.inner.compacted.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            if !self.over_budget() {
                return;
            }
            self.inner.compact_cv.notify_all();
            let _ = tokio::time::timeout(Duration::from_millis(50), n).await;
        }
    }

    /// Sleeps until a segment fills up or `timeout` passes.
    pub fn wait_for_rotation(&self, timeout: Duration) {
        let seq = self.pend().tail_seq;
        let (lock, cv) = (&self.inner.compact_lock, &self.inner.compact_cv);
        let g = lock.lock().unwrap_or_else(|p| p.into_inner());
        let _ = cv.wait_timeout_while(g, timeout, |_| self.pend().tail_seq == seq);
    }
}

/// Writes every tube policy (for a checkpoint or a resume).
fn push_policies(p: &mut crate::Pending, e: &Engine, seg_size: u64, next_id: u64) {
    for (tube, policy) in e.policies() {
        let r = Record::Policy {
            tube: tube.to_string(),
            policy,
        };
        p.push_record(&r, seg_size, next_id);
    }
}

/// A checkpoint segment is durable: drop everything older.
pub(crate) fn finish_rebase(inner: &Inner, seq: u32) {
    let old: Vec<u32> = {
        let mut p = inner.pend();
        if p.rebase != Some(seq) {
            return;
        }
        p.rebase = None;
        let old: Vec<u32> = p.segs.range(..seq).map(|(&s, _)| s).collect();
        for s in &old {
            p.segs.remove(s);
        }
        old
    };
    for s in old {
        let _ = inner.io.remove(s);
    }
    if let Some(dir) = inner.io.path(seq).parent() {
        for (_, path) in crate::beanstalkd::files(dir) {
            let _ = std::fs::remove_file(path);
        }
    }
    inner.io.sync_dir();
}
