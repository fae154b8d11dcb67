//! Persistence: a write-ahead log of checksummed records in segment files, written by a
//! dedicated thread (group commit), compacted in the background, recovered at startup.
//!
//! Flow: the engine reports each change as a [`JournalOp`]; under the engine lock the
//! server turns them into records with [`Binlog::append`] (a put is logged with
//! [`Binlog::append_put`] before the engine applies it), which returns the log position
//! (LSN) the change ends at. The writer thread writes (and, per the fsync policy, syncs)
//! batches and publishes how far it got ([`Acked`]); replies wait on it (see [`ack`]).
//!
//! Where each concept lives:
//! - [`ack`]: fsync policy, tickets, the commit watermark;
//! - [`pending`]: records waiting to be written, the LSN, epochs, segment sizes;
//! - [`writer`]: the writer thread;
//! - [`compact`]: compaction, checkpoints, recovery after write errors;
//! - [`io`]: segment file I/O behind a trait (tests fail it on purpose);
//! - [`record`]: the record format; [`recover`]: reading it back at startup;
//!   [`beanstalkd`]: taking over beanstalkd's binlog; [`inspect`]: `sprout binlog`.

pub mod ack;
pub mod beanstalkd;
mod compact;
mod error;
pub mod inspect;
pub mod io;
mod pending;
pub mod record;
pub mod recover;
mod writer;

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

pub use ack::{Acked, SyncPolicy, Ticket};
pub use error::Error;
pub use io::{FaultIo, FileIo, SegmentIo};
pub use pending::{full_record, snapshot, NewJob};
use pending::{Chunk, Pending};
use record::Record;
use sprout_engine::{Engine, JobId, JournalOp};
use writer::Tail;

/// Runs a closure on the locked engine.
pub type WithEngine<'a> = &'a dyn Fn(&mut dyn FnMut(&mut Engine));

pub(crate) struct Inner {
    seg_size: u64,
    policy: SyncPolicy,
    io: Box<dyn SegmentIo>,
    pend: Mutex<Pending>,
    cv: Condvar,
    acked: watch::Sender<Acked>,
    /// `acked`, relayed inside the runtime (see `acks`).
    relay: std::sync::OnceLock<watch::Receiver<Acked>>,
    /// Wakes the flush task (see `acks`).
    flush: tokio::sync::Notify,
    /// Wakes the maintenance thread (after a rotation) and `wait_synced` callers (after
    /// each batch while there are any): not after every batch, which would cost two context
    /// switches per fsync with `-f 0`.
    compact_cv: Condvar,
    compact_lock: Mutex<bool>,
    /// Threads blocked in `wait_synced`.
    sync_waiters: AtomicUsize,
    /// Wakes connections throttled while compaction catches up.
    compacted: tokio::sync::Notify,
}

impl Inner {
    fn pend(&self) -> MutexGuard<'_, Pending> {
        self.pend.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A handle on the log. Cheap to clone.
#[derive(Clone)]
pub struct Binlog {
    inner: Arc<Inner>,
}

/// Counters for `stats`.
#[derive(Debug, Clone, Copy, Default)]
pub struct BinlogStats {
    pub oldest: u64,
    pub current: u64,
    pub written: u64,
    pub migrated: u64,
    pub live_bytes: u64,
    pub disk_bytes: u64,
}

/// Takes the directory lock (the same `lock` file and fcntl lock beanstalkd uses, so
/// neither can run on a directory the other holds).
pub fn lock_dir(dir: &Path) -> Result<File, Error> {
    let path = dir.join("lock");
    let f = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
    {
        Ok(f) => f,
        Err(source) => {
            return Err(Error::Lock {
                path,
                source,
                held: false,
            })
        }
    };
    // SAFETY: a plain fcntl on an fd we own, with a zeroed flock struct.
    let rc = unsafe {
        let mut fl: libc::flock = std::mem::zeroed();
        fl.l_type = libc::F_WRLCK as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        libc::fcntl(f.as_raw_fd(), libc::F_SETLK, &fl)
    };
    if rc != 0 {
        return Err(Error::Lock {
            path,
            source: std::io::Error::last_os_error(),
            held: true,
        });
    }
    Ok(f)
}

/// Where the log starts after recovery.
#[derive(Debug, Clone, Copy)]
pub struct Start<'a> {
    pub seg_size: u64,
    pub policy: SyncPolicy,
    /// The segments recovery left, by seq, with their sizes (they stay until compaction
    /// removes them).
    pub segments: &'a [(u32, u64)],
    /// Bytes of full records of the live jobs in them.
    pub live: u64,
    /// The engine's id limit (for the first segment's header).
    pub next_id: u64,
}

impl Binlog {
    /// Starts the log in `dir` after recovery: new records go to a fresh segment after
    /// the recovered ones.
    pub fn start(dir: &Path, s: Start<'_>) -> Binlog {
        Self::start_with_io(Box::new(FileIo::new(dir)), s)
    }

    /// As [`Binlog::start`], with segment I/O of the caller's (tests use [`FaultIo`]).
    pub fn start_with_io(io: Box<dyn SegmentIo>, s: Start<'_>) -> Binlog {
        let tail_seq = s.segments.last().map(|s| s.0).unwrap_or(0) + 1;
        let mut segs: std::collections::BTreeMap<u32, u64> = s.segments.iter().copied().collect();
        segs.insert(tail_seq, s.seg_size);
        let mut chunks = std::collections::VecDeque::new();
        chunks.push_back(Chunk {
            seq: tail_seq,
            create: true,
            next_id: s.next_id,
            bytes: Vec::new(),
            end_lsn: 0,
            records: 0,
        });
        let (acked, _) = watch::channel(Acked::new());
        let inner = Arc::new(Inner {
            seg_size: s.seg_size.max(4096),
            policy: s.policy,
            io,
            pend: Mutex::new(Pending {
                chunks,
                lsn: 0,
                epoch: 0,
                tail_seq,
                tail_used: record::HEADER_LEN as u64,
                segs,
                live: s.live,
                records_written: 0,
                records_migrated: 0,
                failed: None,
                sync_requested: false,
                shutdown: false,
                rebase: None,
                scratch: Vec::new(),
                tail: Tail::Idle,
                used: 0,
                direct_lsn: 0,
                dirty: false,
                writer_waiting: false,
                flush_wanted: false,
                spare: Vec::new(),
                lost: Default::default(),
                heal_end: 0,
                deleted_lsn: 0,
                last_full: 0,
                lost_flushes: Vec::new(),
            }),
            cv: Condvar::new(),
            acked,
            relay: std::sync::OnceLock::new(),
            flush: tokio::sync::Notify::new(),
            compact_cv: Condvar::new(),
            compact_lock: Mutex::new(false),
            sync_waiters: AtomicUsize::new(0),
            compacted: tokio::sync::Notify::new(),
        });
        let w = inner.clone();
        std::thread::Builder::new()
            .name("binlog-writer".into())
            .spawn(move || writer::run(w))
            .unwrap_or_else(|e| panic!("cannot start the binlog writer thread: {e}"));
        Binlog { inner }
    }

    fn pend(&self) -> MutexGuard<'_, Pending> {
        self.inner.pend()
    }

    pub fn policy(&self) -> SyncPolicy {
        self.inner.policy
    }

    /// The writer's progress, for threads (not for tasks: see `acks`).
    pub fn subscribe(&self) -> watch::Receiver<Acked> {
        self.inner.acked.subscribe()
    }

    /// The writer's progress, for tasks of the runtime this is first called on. The writer
    /// thread wakes one relay task, which wakes the waiting connections from inside the
    /// runtime: woken from another thread, each connection would cost the runtime a
    /// wake-up syscall, one per connection per batch.
    ///
    /// The first call also starts the flush task: from then on, with `-f MS` or `-F`,
    /// `append` leaves records that it could write itself to that task, which writes all
    /// that the connections ready to run have appended in one write (tasks run in the order
    /// they were woken, so it runs after them) and then acknowledges them.
    pub fn acks(&self) -> watch::Receiver<Acked> {
        self.inner
            .relay
            .get_or_init(|| {
                let mut from = self.inner.acked.subscribe();
                let (to, rx) = watch::channel(*from.borrow_and_update());
                tokio::spawn(async move {
                    while from.changed().await.is_ok() {
                        let a = *from.borrow_and_update();
                        to.send_replace(a);
                    }
                });
                let b = self.clone();
                tokio::spawn(async move {
                    loop {
                        b.inner.flush.notified().await;
                        b.flush_deferred();
                    }
                });
                rx
            })
            .clone()
    }

    /// The flush task's step: writes what `append` left to it, or hands it to the writer if
    /// a direct write is no longer possible (the writer got busy, a segment filled up).
    fn flush_deferred(&self) {
        let mut p = self.pend();
        p.flush_wanted = false;
        // u64::MAX: every record written here was appended earlier and is waited for.
        if self.write_direct(&mut p).is_none() && !p.chunks.is_empty() {
            drop(p);
            self.inner.cv.notify_one();
        }
    }

    /// True while writes are failing: changes are refused until the log recovers.
    pub fn failed(&self) -> bool {
        self.pend().failed.is_some()
    }

    /// Turns the engine's recorded changes into records; each job's position in the log is
    /// set to its record's. Returns the ticket a reply that acknowledges these changes
    /// must wait for. Called under the engine lock.
    pub fn append(&self, e: &mut Engine, ops: &[JournalOp]) -> Option<Ticket> {
        if ops.is_empty() {
            return None;
        }
        let seg_size = self.inner.seg_size;
        let next_id = e.id_limit();
        let mut p = self.pend();
        if p.failed.is_some() {
            // Nothing reaches the disk now: remember what to write once it works again. A
            // change is durable once the resume that rewrites its job is, past this end.
            let end = p.lsn;
            for op in ops {
                if let Some(id) = op.job() {
                    p.lost.insert(id);
                }
                match op {
                    JournalOp::Full(id) | JournalOp::Update(id) | JournalOp::Move(id) => {
                        e.set_job_lsn(*id, end)
                    }
                    JournalOp::Flush(tube) => p.lost_flushes.push(tube.to_string()),
                    JournalOp::Freed { file, size } => p.forget(*file, *size),
                    _ => {}
                }
            }
            return Some(Ticket {
                epoch: p.epoch,
                lsn: u64::MAX,
            });
        }
        for op in ops {
            match *op {
                JournalOp::Flush(ref tube) => {
                    let r = Record::Flush {
                        tube: tube.to_string(),
                    };
                    let (_, lsn) = p.push_record(&r, seg_size, next_id);
                    p.deleted_lsn = lsn;
                }
                JournalOp::Move(id) => {
                    let Some(j) = e.job(id) else { continue };
                    let r = Record::Move {
                        id,
                        tube: e.tube_name(j).to_string(),
                    };
                    p.push_record(&r, seg_size, next_id);
                    // The key goes with the job, or is lost if the new tube has it.
                    let r = Record::Key {
                        id,
                        key: e.job_key(id).unwrap_or("").to_string(),
                    };
                    p.push_record(&r, seg_size, next_id);
                    if let Some(o) = e.job_origin(id) {
                        let r = Record::Origin {
                            id,
                            tube: o.to_string(),
                        };
                        p.push_record(&r, seg_size, next_id);
                    }
                    let r = Record::Update {
                        id,
                        snap: snapshot(j),
                    };
                    let (_, lsn) = p.push_record(&r, seg_size, next_id);
                    e.set_job_lsn(id, lsn);
                }
                JournalOp::Freed { file, size } => p.forget(file, size),
                JournalOp::Policy(ref tube) => {
                    let r = Record::Policy {
                        tube: tube.to_string(),
                        policy: e.policy(tube).cloned().unwrap_or_default(),
                    };
                    p.push_record(&r, seg_size, next_id);
                }
                JournalOp::Full(id) => {
                    let Some((seq, lsn)) = p.push_full(e, id, seg_size, next_id) else {
                        continue;
                    };
                    p.live += p.last_full;
                    e.set_job_file(id, seq);
                    e.set_job_lsn(id, lsn);
                }
                JournalOp::Update(id) | JournalOp::Reserve(id) => {
                    let Some(j) = e.job(id) else { continue };
                    let r = Record::Update {
                        id,
                        snap: snapshot(j),
                    };
                    let (_, lsn) = p.push_record(&r, seg_size, next_id);
                    if let JournalOp::Update(_) = op {
                        e.set_job_lsn(id, lsn);
                    }
                }
                JournalOp::Delete { id, size, file } => {
                    let (_, lsn) = p.push_record(&Record::Delete { id }, seg_size, next_id);
                    p.deleted_lsn = lsn;
                    p.forget(file, size);
                }
                JournalOp::IdLimit(limit) => {
                    p.push_record(&Record::IdLimit { limit }, seg_size, next_id);
                }
            }
        }
        Some(self.appended(p))
    }

    /// Logs a put's job before the engine has it: the put is applied once this is durable
    /// (so nobody can see a job that a crash could take away). Returns the ticket and the
    /// segment holding the record. Called under the engine lock, after the id was taken.
    pub fn append_put(&self, job: &NewJob<'_>, next_id: u64) -> (Ticket, u32) {
        let seg_size = self.inner.seg_size;
        let mut p = self.pend();
        if p.failed.is_some() {
            // Its delete is written once the log works again (see `resume`), in case the
            // record reaches the disk after all.
            p.lost.insert(job.id);
            let t = Ticket {
                epoch: p.epoch,
                lsn: u64::MAX,
            };
            return (t, 0);
        }
        let (seq, _) = p.push_put(job, seg_size, next_id);
        p.live += p.last_full;
        (self.appended(p), seq)
    }

    /// Logs that a put whose record was appended was refused after all (its record may
    /// still reach the disk): the job's id is dead.
    pub fn append_tombstone(&self, id: JobId, next_id: u64) {
        let seg_size = self.inner.seg_size;
        let mut p = self.pend();
        if p.failed.is_some() {
            p.lost.insert(id);
            return;
        }
        // Not a delete anything waits for: the job was never shown to anyone.
        p.push_record(&Record::Delete { id }, seg_size, next_id);
        let _ = self.appended(p);
    }

    /// After records were pushed: has them written (by the flush task, directly, or by the
    /// writer) and returns the ticket for their end.
    fn appended(&self, mut p: MutexGuard<'_, Pending>) -> Ticket {
        let t = Ticket {
            epoch: p.epoch,
            lsn: p.lsn,
        };
        if self.inner.relay.get().is_some() && self.direct_file(&p).is_some() {
            // The flush task writes these with whatever else is appended before it runs.
            if !std::mem::replace(&mut p.flush_wanted, true) {
                drop(p);
                self.inner.flush.notify_one();
            }
            return t;
        }
        if let Some(done) = self.write_direct(&mut p) {
            return done;
        }
        // One notify per wait: the writer may not run until the event loop waits.
        let wake = std::mem::take(&mut p.writer_waiting);
        drop(p);
        if wake {
            self.inner.cv.notify_one();
        }
        t
    }

    /// The end of the log: every record appended so far ends at or before it.
    pub fn end(&self) -> u64 {
        self.pend().lsn
    }

    /// The position of the latest delete: what a reply that shows that a job is not
    /// there (NOT_FOUND) waits for, since the job may just have been deleted.
    pub fn deleted_lsn(&self) -> u64 {
        self.pend().deleted_lsn
    }

    /// The tail segment, if `write_direct` may write the pending records to it now.
    fn direct_file(&self, p: &Pending) -> Option<(u32, Arc<dyn io::SegmentFile>)> {
        if self.inner.policy == SyncPolicy::Always || p.failed.is_some() {
            return None;
        }
        let Tail::Lent(seq, f) = &p.tail else {
            return None;
        };
        if p.chunks.len() != 1 || p.chunks[0].seq != *seq || p.chunks[0].create {
            return None;
        }
        Some((*seq, f.clone()))
    }

    /// With `-f MS` or `-F`, while the writer is idle, writes the pending records straight
    /// to the tail segment. Returns a ticket that is already satisfied (or already failed);
    /// None to leave the records to the writer.
    fn write_direct(&self, p: &mut Pending) -> Option<Ticket> {
        let (seq, f) = self.direct_file(p)?;
        let ch = p.chunks.pop_front()?;
        let ch_start = ch.end_lsn - ch.bytes.len() as u64;
        match f.write_all(&ch.bytes) {
            Ok(()) => {
                p.used += ch.bytes.len() as u64;
                p.direct_lsn = ch.end_lsn;
                // Records of earlier calls may have ridden along, and anything waiting for
                // the watermark waits for these: publish.
                self.inner.acked.send_modify(|a| {
                    if a.epoch == p.epoch {
                        a.written = a.written.max(ch.end_lsn);
                        let w = a.written;
                        a.advance(w);
                    }
                });
                if ch.bytes.capacity() <= 1 << 20 {
                    let mut b = ch.bytes;
                    b.clear();
                    p.spare = b;
                }
                if !p.dirty && self.inner.policy != SyncPolicy::Never {
                    p.dirty = true;
                    if std::mem::take(&mut p.writer_waiting) {
                        self.inner.cv.notify_one();
                    }
                }
                Some(Ticket {
                    epoch: p.epoch,
                    lsn: 0,
                })
            }
            Err(e) => {
                let msg = format!("write {}: {e}", self.inner.io.path(seq).display());
                tracing::error!("binlog: {msg}; changes are refused until writes succeed again");
                p.failed = Some(msg);
                p.tail = Tail::Idle;
                let Pending {
                    lost, lost_flushes, ..
                } = p;
                writer::lost_into(&ch.bytes, lost, lost_flushes);
                // Leave no partial record behind.
                let _ = f.set_len(p.used);
                let epoch = p.epoch;
                self.inner.acked.send_modify(|a| {
                    if a.epoch == epoch {
                        a.failed_from = a.failed_from.min(ch_start);
                    }
                });
                Some(Ticket {
                    epoch,
                    lsn: u64::MAX,
                })
            }
        }
    }

    pub fn stats(&self) -> BinlogStats {
        let p = self.pend();
        BinlogStats {
            oldest: p.segs.keys().next().copied().unwrap_or(0).into(),
            current: p.tail_seq.into(),
            written: p.records_written,
            migrated: p.records_migrated,
            live_bytes: p.live,
            disk_bytes: p.segs.values().sum(),
        }
    }

    /// Asks the writer to write and sync everything pending; the ticket is its end.
    fn request_sync(&self, mut p: MutexGuard<'_, Pending>) -> Ticket {
        p.sync_requested = true;
        let t = Ticket {
            epoch: p.epoch,
            lsn: p.lsn,
        };
        drop(p);
        self.inner.cv.notify_one();
        t
    }

    /// Blocks until `t` is synced (or has failed). For startup, shutdown and maintenance.
    pub fn wait_synced(&self, t: Ticket) -> bool {
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.inner.sync_waiters.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.inner.sync_waiters);
        {
            let mut p = self.pend();
            p.sync_requested = true;
        }
        self.inner.cv.notify_one();
        let mut rx = self.subscribe();
        let (lock, cv) = (&self.inner.compact_lock, &self.inner.compact_cv);
        loop {
            // Checked under the lock the writer notifies under, so no batch is missed.
            let g = lock.lock().unwrap_or_else(|p| p.into_inner());
            let a = *rx.borrow_and_update();
            match t.check(&a, SyncPolicy::Always) {
                Some(ok) => return ok,
                None => {
                    // Not there yet; make sure the writer syncs when it gets there.
                    self.pend().sync_requested = true;
                    self.inner.cv.notify_one();
                }
            }
            // The writer notifies after every batch while we wait; the timeout is a
            // backstop only.
            let _ = cv.wait_timeout(g, Duration::from_millis(50));
        }
    }

    /// Current end of the log.
    pub fn position(&self) -> Ticket {
        let p = self.pend();
        Ticket {
            epoch: p.epoch,
            lsn: p.lsn,
        }
    }

    /// Flushes and syncs everything, then stops the writer.
    pub fn shutdown(&self) {
        let t = self.position();
        self.wait_synced(t);
        self.pend().shutdown = true;
        self.inner.cv.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sprout_engine::{Effects, Engine, Input, Output};
    use sprout_protocol::command::PutHeader;
    use sprout_protocol::Reply;
    use std::sync::atomic::AtomicBool;
    use std::sync::Mutex;
    use std::time::Duration;

    /// With `-f MS`, replies wait for the flush task's direct writes while the writer
    /// thread syncs (and publishes) on its own: what is published as written must never go
    /// back within an epoch, or a reply already covered waits for the next publish.
    #[test]
    fn published_written_never_goes_back() {
        let dir = std::env::temp_dir().join(format!("sprout-acks-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dips = rt.block_on(async {
            let b = Binlog::start(
                &dir,
                Start {
                    seg_size: 1 << 20,
                    policy: SyncPolicy::Every(1),
                    segments: &[],
                    live: 0,
                    next_id: 1,
                },
            );
            let engine = Arc::new(Mutex::new(Engine::new()));
            engine.lock().unwrap().enable_journal();
            let acks = b.acks();
            // Watches every value the writer and the flush task publish.
            let stop = Arc::new(AtomicBool::new(false));
            let dips = Arc::new(AtomicUsize::new(0));
            let watcher = {
                let (mut raw, stop, dips) = (b.subscribe(), stop.clone(), dips.clone());
                std::thread::spawn(move || {
                    let mut last = *raw.borrow_and_update();
                    while !stop.load(Ordering::Relaxed) {
                        let a = *raw.borrow_and_update();
                        if a.epoch == last.epoch && a.written < last.written {
                            dips.fetch_add(1, Ordering::Relaxed);
                        }
                        last = a;
                    }
                })
            };
            let mut tasks = Vec::new();
            for _ in 0..8 {
                let (b, engine, mut acks) = (b.clone(), engine.clone(), acks.clone());
                tasks.push(tokio::spawn(async move {
                    let header = PutHeader {
                        pri: 0,
                        delay: 0,
                        ttr: 60,
                        bytes: 10,
                    };
                    let body = bytes::Bytes::from_static(b"0123456789");
                    let mut fx = Effects::default();
                    for _ in 0..2_000 {
                        let t = {
                            let mut e = engine.lock().unwrap();
                            let mut ops = Vec::new();
                            e.apply(0, Input::Connect, &mut fx);
                            let Output::Conn(c) = fx.output else {
                                panic!("connect")
                            };
                            e.apply(0, Input::PutHeader(c), &mut fx);
                            ops.append(&mut fx.journal);
                            let Output::Job(id) = fx.output else {
                                panic!("put header")
                            };
                            let p = e.put_admit(c, id, header, body.clone(), 0).unwrap();
                            e.apply(0, Input::Put(p), &mut fx);
                            assert!(
                                matches!(fx.output, Output::Reply(Reply::Inserted(_))),
                                "{:?}",
                                fx.output
                            );
                            ops.append(&mut fx.journal);
                            e.apply(0, Input::Disconnect(c), &mut fx);
                            ops.append(&mut fx.journal);
                            b.append(&mut e, &ops).unwrap()
                        };
                        let policy = b.policy();
                        let waited = tokio::time::timeout(
                            Duration::from_secs(10),
                            acks.wait_for(|a| t.check(a, policy).is_some()),
                        )
                        .await;
                        assert!(waited.is_ok(), "a reply waited 10 s for {t:?}");
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            stop.store(true, Ordering::Relaxed);
            watcher.join().unwrap();
            b.shutdown();
            dips.load(Ordering::Relaxed)
        });
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(dips, 0, "published `written` went back {dips} times");
    }
}
