//! The writer thread: takes the pending chunks in batches, writes them, syncs per policy,
//! and publishes its progress ([`Acked`]), including the commit watermark.
//!
//! Its state is one [`Writer`]; each round is the same four steps: [`Writer::take`] waits
//! for work and takes it, [`Writer::write`] writes it, [`Writer::sync`] syncs if due, and
//! [`Writer::settle`] hands the tail file back (lends it to direct writes while idle,
//! see [`Tail`]) and publishes.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sprout_engine::JobId;

use crate::ack::{Acked, SyncPolicy};
use crate::io::SegmentFile;
use crate::pending::Chunk;
use crate::record;
use crate::Inner;

/// Who may write to the tail segment's file.
#[derive(Default)]
pub(crate) enum Tail {
    /// The writer is writing a batch: `Pending::used` is its to set when done.
    Busy,
    /// Nobody writes now; appends leave their records to the writer.
    #[default]
    Idle,
    /// The writer is idle and has lent the file (segment seq) to appends, which with
    /// `-f MS` or `-F` write their records straight to it (see `Binlog::write_direct`).
    Lent(u32, Arc<dyn SegmentFile>),
}

/// What one round took from `Pending`.
struct Batch {
    chunks: Vec<Chunk>,
    sync_now: bool,
    shutdown: bool,
    rebase: Option<u32>,
}

/// What writing a batch did.
#[derive(Default)]
struct Outcome {
    error: Option<String>,
    /// Jobs whose records could not be written.
    lost: Vec<JobId>,
    /// Flushes whose records could not be written.
    lost_flushes: Vec<String>,
}

pub(crate) struct Writer {
    inner: Arc<Inner>,
    /// The tail segment's file.
    cur: Option<(u32, Arc<dyn SegmentFile>)>,
    /// Bytes in `cur`.
    used: u64,
    /// Finished segments not yet synced.
    to_sync: Vec<Arc<dyn SegmentFile>>,
    /// Progress in this epoch: how far the log is written and synced, and where the first
    /// failed write began (u64::MAX: none).
    written: u64,
    synced: u64,
    failed_from: u64,
    /// What the previous epoch got written and synced.
    prev_written: u64,
    prev_synced: u64,
    last_sync: Instant,
    epoch: u64,
    /// Where this epoch's checkpoint or resume records end.
    heal_end: u64,
    /// The tail segment at the last round (a change means a rotation).
    tail_seen: u32,
}

/// The writer thread's body.
pub(crate) fn run(inner: Arc<Inner>) {
    // Never preempt the event loop on wake-up: run when it waits. On a busy CPU this lets
    // it finish the commands at hand before a batch is taken, so batches (and group
    // commits) are whole rather than one record each.
    batch_priority();
    let mut w = Writer {
        inner,
        cur: None,
        used: 0,
        to_sync: Vec::new(),
        written: 0,
        synced: 0,
        failed_from: u64::MAX,
        prev_written: 0,
        prev_synced: 0,
        last_sync: Instant::now(),
        epoch: 0,
        heal_end: 0,
        tail_seen: 0,
    };
    loop {
        let batch = w.take();
        let mut out = w.write(&batch.chunks);
        w.sync(&batch, &mut out);
        if let (None, Some(seq)) = (&out.error, batch.rebase) {
            // Only a complete checkpoint replaces the old segments.
            if w.failed_from == u64::MAX
                && w.synced >= w.written
                && w.cur.as_ref().is_some_and(|(s, _)| *s >= seq)
            {
                crate::compact::finish_rebase(&w.inner, seq);
            }
        }
        w.settle(&batch, out);
        if batch.shutdown {
            if let Some((_, f)) = w.cur.as_ref() {
                if f.set_len(w.used).is_ok() {
                    let _ = f.sync_all();
                }
            }
            return;
        }
    }
}

impl Writer {
    /// Waits until there is something to write or sync, then takes it.
    fn take(&mut self) -> Batch {
        let inner = self.inner.clone();
        let mut p = inner.pend();
        loop {
            self.written = self.written.max(p.direct_lsn);
            let unsynced = self.written > self.synced;
            let due = match inner.policy {
                SyncPolicy::Every(ms) => {
                    unsynced && self.last_sync.elapsed() >= Duration::from_millis(ms)
                }
                _ => false,
            };
            if !p.chunks.is_empty() || p.shutdown || p.sync_requested || due {
                break;
            }
            p.writer_waiting = true;
            p = match inner.policy {
                SyncPolicy::Every(ms) if unsynced => {
                    let left = Duration::from_millis(ms).saturating_sub(self.last_sync.elapsed());
                    inner
                        .cv
                        .wait_timeout(p, left.max(Duration::from_millis(1)))
                        .map(|r| r.0)
                        .unwrap_or_else(|e| e.into_inner().0)
                }
                _ => inner.cv.wait(p).unwrap_or_else(|e| e.into_inner()),
            };
            p.writer_waiting = false;
        }
        if p.epoch != self.epoch {
            // A checkpoint or resume replaced whatever was pending: start clean.
            self.epoch = p.epoch;
            self.heal_end = p.heal_end;
            self.prev_written = self.written.min(self.failed_from);
            self.prev_synced = self.synced.min(self.failed_from);
            self.failed_from = u64::MAX;
            self.written = self.written.max(
                p.chunks
                    .front()
                    .map(|c| c.end_lsn - c.bytes.len() as u64)
                    .unwrap_or(p.lsn),
            );
            self.synced = self.synced.min(self.written);
        }
        let chunks: Vec<Chunk> = p.chunks.drain(..).collect();
        if !chunks.is_empty() {
            p.tail = Tail::Busy;
        }
        self.used = p.used;
        p.dirty = false;
        Batch {
            chunks,
            sync_now: std::mem::take(&mut p.sync_requested),
            shutdown: p.shutdown,
            rebase: p.rebase,
        }
    }

    /// Writes the chunks in order; after a failure, the rest only count as lost.
    fn write(&mut self, chunks: &[Chunk]) -> Outcome {
        let mut out = Outcome::default();
        for ch in chunks {
            if self.failed_from != u64::MAX {
                lost_records(&ch.bytes, &mut out);
                continue;
            }
            let before = self.used;
            if let Err(e) = self.write_chunk(ch) {
                self.failed_from = ch.end_lsn - ch.bytes.len() as u64;
                out.error = Some(e);
                lost_records(&ch.bytes, &mut out);
                // Leave no partial record behind: the file ends where the good data does.
                if let Some((seq, f)) = self.cur.as_ref() {
                    if *seq == ch.seq && !ch.create {
                        self.used = before;
                        let _ = f.set_len(before);
                    }
                }
                continue;
            }
            self.written = ch.end_lsn;
        }
        out
    }

    fn write_chunk(&mut self, ch: &Chunk) -> Result<(), String> {
        let io = &self.inner.io;
        if ch.create || self.cur.as_ref().is_none_or(|(s, _)| *s != ch.seq) {
            if let Some((_, old)) = self.cur.as_ref() {
                // A finished segment keeps only what it holds (no preallocated tail to read).
                let _ = old.set_len(self.used);
            }
            let path = io.path(ch.seq);
            let f = io
                .create(ch.seq, self.inner.seg_size)
                .map_err(|e| format!("allocate {}: {e}", path.display()))?;
            f.write_all(&record::header(ch.seq, ch.next_id))
                .map_err(|e| format!("write {}: {e}", path.display()))?;
            io.sync_dir();
            if let Some((_, old)) = self.cur.take() {
                self.to_sync.push(old);
            }
            self.cur = Some((ch.seq, f));
            self.used = record::HEADER_LEN as u64;
        }
        if let Some((seq, f)) = self.cur.as_ref() {
            self.used += ch.bytes.len() as u64;
            f.write_all(&ch.bytes)
                .map_err(|e| format!("write {}: {e}", io.path(*seq).display()))?;
        }
        Ok(())
    }

    /// Syncs what was written if the policy, a caller or shutdown asks for it.
    fn sync(&mut self, b: &Batch, out: &mut Outcome) {
        let policy_sync = match self.inner.policy {
            SyncPolicy::Always => self.written > self.synced,
            SyncPolicy::Every(ms) => {
                self.written > self.synced && self.last_sync.elapsed() >= Duration::from_millis(ms)
            }
            SyncPolicy::Never => false,
        };
        if out.error.is_some() {
            return;
        }
        if (policy_sync || b.sync_now || b.shutdown) && self.written > self.synced {
            let r = self
                .to_sync
                .drain(..)
                .try_for_each(|f| f.sync_data())
                .and_then(|_| self.cur.as_ref().map_or(Ok(()), |(_, f)| f.sync_data()));
            match r {
                Ok(()) => {
                    self.synced = self.written;
                    self.last_sync = Instant::now();
                }
                Err(e) => {
                    self.failed_from = self.failed_from.min(self.synced);
                    out.error = Some(format!("fsync: {e}"));
                }
            }
        } else if b.sync_now {
            self.synced = self.written;
        }
    }

    /// Records the outcome in `Pending` (lending the tail file to appends while idle),
    /// publishes progress, and wakes whoever waits for a rotation or a sync.
    fn settle(&mut self, b: &Batch, out: Outcome) {
        let inner = self.inner.clone();
        let (rotated, direct) = {
            let mut p = inner.pend();
            if matches!(p.tail, Tail::Busy) {
                // Direct writes were off while we wrote: our count is the file's.
                p.used = self.used;
            } else {
                // Direct writes may have happened meanwhile: theirs is.
                self.used = p.used;
            }
            p.lost.extend(out.lost.iter().copied());
            p.lost_flushes.extend(out.lost_flushes);
            if let Some(e) = &out.error {
                tracing::error!("binlog: {e}; changes are refused until writes succeed again");
                if p.epoch == self.epoch {
                    p.failed = Some(e.clone());
                }
                p.tail = Tail::Idle;
                // A segment that could not be created holds nothing.
                let missing: Vec<u32> = p
                    .segs
                    .keys()
                    .copied()
                    .filter(|&s| !inner.io.exists(s))
                    .collect();
                for s in missing {
                    p.segs.remove(&s);
                }
            } else if b.shutdown {
                // The file is about to be cut to `used`: nothing may be written past it.
                p.tail = Tail::Idle;
            } else if p.epoch == self.epoch && p.chunks.is_empty() {
                p.tail = match self.cur.as_ref() {
                    Some((seq, f)) => Tail::Lent(*seq, f.clone()),
                    None => Tail::Idle,
                };
            } else if matches!(p.tail, Tail::Busy) {
                p.tail = Tail::Idle;
            }
            let direct = if p.epoch == self.epoch {
                p.direct_lsn
            } else {
                0
            };
            (
                std::mem::replace(&mut self.tail_seen, p.tail_seq) != p.tail_seq,
                direct,
            )
        };
        // Published outside `pend` (waking the runtime while holding it would have the event
        // loop block on it at once). Never behind what direct writes published meanwhile.
        let was = self.publish(direct);
        if was != self.epoch {
            // This publish starts the epoch: a direct write made since `direct` was read
            // found the old one and could not publish itself.
            let direct = {
                let p = inner.pend();
                if p.epoch == self.epoch {
                    p.direct_lsn
                } else {
                    0
                }
            };
            let epoch = self.epoch;
            let policy = inner.policy;
            inner.acked.send_modify(|a| {
                if a.epoch == epoch {
                    a.written = a.written.max(direct);
                    if policy != SyncPolicy::Always {
                        let w = a.written;
                        a.advance(w);
                    }
                }
            });
        }
        if rotated || b.shutdown || inner.sync_waiters.load(Ordering::SeqCst) > 0 {
            // Under the lock, so a waiter between its check and its wait is not missed.
            let _g = inner.compact_lock.lock().unwrap_or_else(|p| p.into_inner());
            inner.compact_cv.notify_all();
        }
    }

    /// Publishes this epoch's progress; returns the epoch that was published before.
    fn publish(&self, direct: u64) -> u64 {
        let mut was = self.epoch;
        let policy = self.inner.policy;
        self.inner.acked.send_modify(|a| {
            was = a.epoch;
            // A direct-write failure may have been published meanwhile: keep it.
            let (failed, published) = if a.epoch == self.epoch {
                (a.failed_from.min(self.failed_from), a.written)
            } else {
                (self.failed_from, 0)
            };
            *a = Acked {
                epoch: self.epoch,
                written: self.written.max(published).max(direct),
                synced: self.synced,
                failed_from: failed,
                prev_written: self.prev_written,
                prev_synced: self.prev_synced,
                durable: a.durable,
                heal_end: self.heal_end,
            };
            let point = if policy == SyncPolicy::Always {
                a.synced
            } else {
                a.written
            };
            a.advance(point);
        });
        was
    }
}

/// SCHED_BATCH for the calling thread (Linux): no wake-up preemption. Best effort.
fn batch_priority() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: plain syscall on the calling thread (pid 0) with a valid parameter.
        let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
        if rc != 0 {
            tracing::debug!("binlog writer: SCHED_BATCH not set");
        }
    }
}

/// What the records in `bytes` changed, for a resume to write again.
fn lost_records(bytes: &[u8], out: &mut Outcome) {
    lost_into(bytes, &mut out.lost, &mut out.lost_flushes);
}

/// The jobs and the flushes the records in `bytes` are about.
pub(crate) fn lost_into(bytes: &[u8], jobs: &mut impl Extend<JobId>, flushes: &mut Vec<String>) {
    let mut off = 0;
    while let record::Next::Record(r, n) = record::decode(&bytes[off..]) {
        match r {
            record::Record::Flush { tube } => flushes.push(tube),
            r => jobs.extend(r.job_id()),
        }
        off += n;
    }
}
