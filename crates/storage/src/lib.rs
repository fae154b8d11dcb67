//! Persistence: a write-ahead log of checksummed records in segment files, written by a
//! dedicated thread (group commit), compacted in the background, recovered at startup.
//!
//! Flow: the engine reports each change as a [`JournalOp`]; under the engine lock the
//! server turns them into records with [`Binlog::append`], which returns the log position
//! (LSN) the change ends at. The writer thread writes (and, per the fsync policy, syncs)
//! batches and publishes how far it got; a connection holds back a reply that acknowledges
//! a change until its LSN is written (`-f MS`, `-F`) or synced (`-f 0`).

pub mod beanstalkd;
pub mod inspect;
pub mod record;
pub mod recover;

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use record::{Record, Snapshot};
use sprout_engine::{Engine, JobId, JobState, JournalOp};

/// Runs a closure on the locked engine.
pub(crate) type WithEngine<'a> = &'a dyn Fn(&mut dyn FnMut(&mut Engine));

/// When to fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// `-f 0`: before acknowledging anything.
    Always,
    /// `-f MS`: at most every MS ms, and within MS ms of a write.
    Every(u64),
    /// `-F`
    Never,
}

impl SyncPolicy {
    pub fn from_flag(ms: Option<u64>) -> Self {
        match ms {
            Some(0) => SyncPolicy::Always,
            Some(ms) => SyncPolicy::Every(ms),
            None => SyncPolicy::Never,
        }
    }
}

/// What the writer has done. A waiter for position `lsn` appended in `epoch` succeeds when
/// the epoch is unchanged and `written` (or `synced`) reaches `lsn`; it fails when the
/// epoch moved on or `failed_from < lsn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acked {
    pub(crate) epoch: u64,
    pub written: u64,
    pub(crate) synced: u64,
    pub(crate) failed_from: u64,
    /// What the previous epoch got written and synced before it ended (its tickets up to
    /// these positions succeeded even if they are checked late).
    pub(crate) prev_written: u64,
    pub(crate) prev_synced: u64,
}

/// A position in the log that a reply waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    pub(crate) epoch: u64,
    pub(crate) lsn: u64,
}

impl Ticket {
    /// Some(true) when durable enough, Some(false) when it never will be, None to wait.
    pub fn check(&self, a: &Acked, policy: SyncPolicy) -> Option<bool> {
        if a.epoch < self.epoch {
            // The writer has not reached the checkpoint this ticket follows yet.
            return None;
        }
        let always = policy == SyncPolicy::Always;
        if a.epoch > self.epoch {
            let prev = if always {
                a.prev_synced
            } else {
                a.prev_written
            };
            return Some(a.epoch == self.epoch + 1 && self.lsn <= prev);
        }
        if a.failed_from < self.lsn {
            return Some(false);
        }
        let done = if always { a.synced } else { a.written };
        (done >= self.lsn).then_some(true)
    }
}

struct Chunk {
    seq: u32,
    /// Create the segment file before writing.
    create: bool,
    next_id: u64,
    bytes: Vec<u8>,
    end_lsn: u64,
    records: u64,
}

struct Pending {
    chunks: VecDeque<Chunk>,
    lsn: u64,
    epoch: u64,
    tail_seq: u32,
    tail_used: u64,
    /// Segments on disk (or about to be), with their size.
    segs: BTreeMap<u32, u64>,
    /// Bytes of full records of live jobs.
    live: u64,
    records_written: u64,
    records_migrated: u64,
    failed: Option<String>,
    sync_requested: bool,
    shutdown: bool,
    /// After the chunk creating this segment is synced, delete every older segment and
    /// any beanstalkd files.
    rebase: Option<u32>,
    scratch: Vec<u8>,
    /// The tail segment's file, lent by the writer while it is idle: with `-f MS` or `-F`,
    /// `append` writes records straight to it (no thread hand-off per command).
    direct: Option<(u32, Arc<File>)>,
    /// Bytes in the tail segment's file.
    used: u64,
    /// End of what `append` wrote directly.
    direct_lsn: u64,
    /// The writer has taken chunks and is writing them.
    writer_busy: bool,
    /// Direct writes since the writer last synced (it has been told).
    dirty: bool,
    /// The writer is blocked on `cv`: only then do appends notify it (a condvar notify is a
    /// futex syscall even with nobody waiting).
    writer_waiting: bool,
    /// Records wait for the flush task (see `acks`).
    flush_wanted: bool,
    /// The buffer of the last chunk written directly, for the next chunk.
    spare: Vec<u8>,
    /// While writes fail: jobs whose latest change may be missing from the log.
    lost: rustc_hash::FxHashSet<JobId>,
}

struct Inner {
    dir: PathBuf,
    seg_size: u64,
    policy: SyncPolicy,
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
pub fn lock_dir(dir: &Path) -> Result<File, String> {
    let path = dir.join("lock");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    // SAFETY: a plain fcntl on an fd we own, with a zeroed flock struct.
    let rc = unsafe {
        let mut fl: libc::flock = std::mem::zeroed();
        fl.l_type = libc::F_WRLCK as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        libc::fcntl(f.as_raw_fd(), libc::F_SETLK, &fl)
    };
    if rc != 0 {
        return Err(format!(
            "{}: {} (is another sproutd or beanstalkd using this directory?)",
            path.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(f)
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// A job's persistent state as a log snapshot.
pub fn snapshot(j: &sprout_engine::Job) -> Snapshot {
    Snapshot {
        state: match j.state {
            JobState::Ready => record::STATE_READY,
            JobState::Reserved => record::STATE_RESERVED,
            JobState::Buried => record::STATE_BURIED,
            JobState::Delayed => record::STATE_DELAYED,
        },
        pri: j.pri,
        delay: j.delay,
        deadline: j.deadline,
        bury_seq: j.seq,
        reserves: j.reserves,
        timeouts: j.timeouts,
        releases: j.releases,
        buries: j.buries,
        kicks: j.kicks,
    }
}

/// The full record of a job as it is now.
pub fn full_record(e: &Engine, id: JobId) -> Option<Record> {
    let j = e.job(id)?;
    Some(Record::Full {
        id,
        snap: snapshot(j),
        ttr: j.ttr,
        created: j.created,
        tube: e.tube_name(j).to_string(),
        body: j.body.to_bytes(),
    })
}

impl Pending {
    /// Drops whatever was pending, clears a failure, and starts a new epoch whose records go
    /// to a new segment. Returns that segment's number.
    fn new_epoch(&mut self, seg_size: u64, next_id: u64) -> u32 {
        self.chunks.clear();
        self.direct = None;
        self.epoch += 1;
        self.failed = None;
        self.tail_seq += 1;
        self.tail_used = record::HEADER_LEN as u64;
        let seq = self.tail_seq;
        self.segs.insert(seq, seg_size);
        self.chunks.push_back(Chunk {
            seq,
            create: true,
            next_id,
            bytes: Vec::new(),
            end_lsn: self.lsn,
            records: 0,
        });
        seq
    }
    /// Encodes job `id`'s full record straight from the engine (no copy of its body before
    /// the one into the log) and appends it; returns the segment, None if there is no such
    /// job. The record stays in `scratch`.
    fn push_full(&mut self, e: &Engine, id: JobId, seg_size: u64, next_id: u64) -> Option<u32> {
        let j = e.job(id)?;
        self.scratch.clear();
        record::encode_full(
            &mut self.scratch,
            id,
            &snapshot(j),
            j.ttr,
            j.created,
            e.tube_name(j),
            j.body.as_slice(),
        );
        Some(self.push(seg_size, next_id).0)
    }

    /// Encodes `r` and appends it to the tail segment; returns (segment, end lsn). The
    /// encoded record stays in `scratch` (its length is what it takes on disk).
    fn push_record(&mut self, r: &Record, seg_size: u64, next_id: u64) -> (u32, u64) {
        self.scratch.clear();
        record::encode(&mut self.scratch, r);
        self.push(seg_size, next_id)
    }

    /// Appends one encoded record (in `scratch`) to the tail segment, rotating first if it
    /// does not fit.
    fn push(&mut self, seg_size: u64, next_id: u64) -> (u32, u64) {
        let n = self.scratch.len() as u64;
        if self.tail_used > record::HEADER_LEN as u64 && self.tail_used + n > seg_size {
            // The writer cuts the finished segment to what it holds.
            let used = self.tail_used;
            if let Some(s) = self.segs.get_mut(&self.tail_seq) {
                *s = used;
            }
            self.tail_seq += 1;
            self.tail_used = record::HEADER_LEN as u64;
            self.segs.insert(self.tail_seq, seg_size);
            self.chunks.push_back(Chunk {
                seq: self.tail_seq,
                create: true,
                next_id,
                bytes: std::mem::take(&mut self.spare),
                end_lsn: self.lsn,
                records: 0,
            });
        }
        if self.chunks.back().is_none_or(|c| c.seq != self.tail_seq) {
            self.chunks.push_back(Chunk {
                seq: self.tail_seq,
                create: false,
                next_id,
                bytes: std::mem::take(&mut self.spare),
                end_lsn: self.lsn,
                records: 0,
            });
        }
        self.tail_used += n;
        if let Some(s) = self.segs.get_mut(&self.tail_seq) {
            *s = (*s).max(self.tail_used);
        }
        self.lsn += n;
        self.records_written += 1;
        let lsn = self.lsn;
        if let Some(c) = self.chunks.back_mut() {
            c.bytes.extend_from_slice(&self.scratch);
            c.end_lsn = lsn;
            c.records += 1;
        }
        (self.tail_seq, lsn)
    }
}

impl Binlog {
    /// Starts the log in `dir` after recovery: new records go to a fresh segment after
    /// `segments` (which stay until compaction removes them).
    pub fn start(
        dir: &Path,
        seg_size: u64,
        policy: SyncPolicy,
        segments: &[(u32, u64)],
        live: u64,
        next_id: u64,
    ) -> Binlog {
        let tail_seq = segments.last().map(|s| s.0).unwrap_or(0) + 1;
        let mut segs: BTreeMap<u32, u64> = segments.iter().copied().collect();
        segs.insert(tail_seq, seg_size);
        let mut chunks = VecDeque::new();
        chunks.push_back(Chunk {
            seq: tail_seq,
            create: true,
            next_id,
            bytes: Vec::new(),
            end_lsn: 0,
            records: 0,
        });
        let (acked, _) = watch::channel(Acked {
            epoch: 0,
            written: 0,
            synced: 0,
            failed_from: u64::MAX,
            prev_written: 0,
            prev_synced: 0,
        });
        let inner = Arc::new(Inner {
            dir: dir.to_path_buf(),
            seg_size: seg_size.max(4096),
            policy,
            pend: Mutex::new(Pending {
                chunks,
                lsn: 0,
                epoch: 0,
                tail_seq,
                tail_used: record::HEADER_LEN as u64,
                segs,
                live,
                records_written: 0,
                records_migrated: 0,
                failed: None,
                sync_requested: false,
                shutdown: false,
                rebase: None,
                scratch: Vec::new(),
                direct: None,
                used: 0,
                direct_lsn: 0,
                writer_busy: false,
                dirty: false,
                writer_waiting: false,
                flush_wanted: false,
                spare: Vec::new(),
                lost: Default::default(),
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
            .spawn(move || writer(w))
            .unwrap_or_else(|e| panic!("cannot start the binlog writer thread: {e}"));
        Binlog { inner }
    }

    fn pend(&self) -> MutexGuard<'_, Pending> {
        self.inner.pend.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn policy(&self) -> SyncPolicy {
        self.inner.policy
    }

    /// The writer's progress, for threads (not for tasks: see `acks`).
    pub(crate) fn subscribe(&self) -> watch::Receiver<Acked> {
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
        if self.write_direct(&mut p, u64::MAX).is_none() && !p.chunks.is_empty() {
            drop(p);
            self.inner.cv.notify_one();
        }
    }

    /// True while writes are failing: changes are refused until the log recovers.
    pub fn failed(&self) -> bool {
        self.pend().failed.is_some()
    }

    /// Turns the engine's recorded changes into records. Returns the ticket a reply that
    /// acknowledges these changes must wait for. Called under the engine lock.
    pub fn append(&self, e: &mut Engine, ops: &[JournalOp]) -> Option<Ticket> {
        if ops.is_empty() {
            return None;
        }
        let seg_size = self.inner.seg_size;
        let next_id = e.next_job_id();
        let mut p = self.pend();
        let start = p.lsn;
        if p.failed.is_some() {
            // Nothing reaches the disk now: remember what to write once it works again.
            for op in ops {
                let id = match *op {
                    JournalOp::Full(id) | JournalOp::Update(id) => id,
                    JournalOp::Delete { id, .. } => id,
                };
                p.lost.insert(id);
            }
            return Some(Ticket {
                epoch: p.epoch,
                lsn: u64::MAX,
            });
        }
        for op in ops {
            match *op {
                JournalOp::Full(id) => {
                    let Some(seq) = p.push_full(e, id, seg_size, next_id) else {
                        continue;
                    };
                    p.live += p.scratch.len() as u64;
                    e.set_job_file(id, seq);
                }
                JournalOp::Update(id) => {
                    let Some(j) = e.job(id) else { continue };
                    let r = Record::Update {
                        id,
                        snap: snapshot(j),
                    };
                    p.push_record(&r, seg_size, next_id);
                }
                JournalOp::Delete { id, size, file } => {
                    p.push_record(&Record::Delete { id }, seg_size, next_id);
                    if file != 0 {
                        let full = record::full_len(0, 0) as u64 + size;
                        p.live = p.live.saturating_sub(full);
                    }
                }
            }
        }
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
            return Some(t);
        }
        if let Some(done) = self.write_direct(&mut p, start) {
            return Some(done);
        }
        // One notify per wait: the writer may not run until the event loop waits.
        let wake = std::mem::take(&mut p.writer_waiting);
        drop(p);
        if wake {
            self.inner.cv.notify_one();
        }
        Some(t)
    }

    /// The tail segment, if `write_direct` may write the pending records to it now.
    fn direct_file(&self, p: &Pending) -> Option<(u32, Arc<File>)> {
        if self.inner.policy == SyncPolicy::Always || p.writer_busy || p.failed.is_some() {
            return None;
        }
        let (seq, f) = p.direct.as_ref()?;
        if p.chunks.len() != 1 || p.chunks[0].seq != *seq || p.chunks[0].create {
            return None;
        }
        Some((*seq, f.clone()))
    }

    /// With `-f MS` or `-F`, while the writer is idle, writes the pending records straight
    /// to the tail segment. Returns a ticket that is already satisfied (or already failed);
    /// None to leave the records to the writer.
    fn write_direct(&self, p: &mut Pending, start: u64) -> Option<Ticket> {
        let (seq, f) = self.direct_file(p)?;
        let ch = p.chunks.pop_front()?;
        let ch_start = ch.end_lsn - ch.bytes.len() as u64;
        match (&*f).write_all(&ch.bytes) {
            Ok(()) => {
                p.used += ch.bytes.len() as u64;
                p.direct_lsn = ch.end_lsn;
                if ch_start < start {
                    // Records of earlier calls rode along: tell whoever waits for them.
                    self.inner.acked.send_modify(|a| {
                        if a.epoch == p.epoch {
                            a.written = a.written.max(ch.end_lsn);
                        }
                    });
                }
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
                let msg = format!(
                    "write {}: {e}",
                    recover::segment_path(&self.inner.dir, seq).display()
                );
                tracing::error!("binlog: {msg}; changes are refused until writes succeed again");
                p.failed = Some(msg);
                p.direct = None;
                p.lost.extend(record_ids(&ch.bytes));
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

    /// Writes every job as a full record into a new segment; once that is synced, all
    /// older segments (and beanstalkd's files, after a take-over) are deleted. Used to take
    /// over a beanstalkd directory and to recover after write errors. Holds the engine lock
    /// (the caller's) for the time it takes to encode the jobs.
    pub fn checkpoint(&self, e: &mut Engine) -> Ticket {
        let seg_size = self.inner.seg_size;
        let next_id = e.next_job_id();
        let mut p = self.pend();
        let seq = p.new_epoch(seg_size, next_id);
        p.rebase = Some(seq);
        p.live = 0;
        let mut ids = e.job_ids();
        ids.sort_unstable();
        for id in ids {
            let Some(s) = p.push_full(e, id, seg_size, next_id) else {
                continue;
            };
            p.live += p.scratch.len() as u64;
            e.set_job_file(id, s);
        }
        self.request_sync(p)
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

    /// After write errors: starts a new segment holding the current state of every job
    /// whose change failed (a full record, or a delete if it is gone). Needs room for those
    /// jobs only, not the whole live set.
    fn resume(&self, e: &mut Engine) -> Ticket {
        let seg_size = self.inner.seg_size;
        let next_id = e.next_job_id();
        let mut p = self.pend();
        let mut lost: Vec<JobId> = std::mem::take(&mut p.lost).into_iter().collect();
        lost.sort_unstable();
        p.new_epoch(seg_size, next_id);
        for id in lost {
            let new = e.job(id).is_some_and(|j| j.file == 0);
            match p.push_full(e, id, seg_size, next_id) {
                Some(s) => {
                    if new {
                        p.live += p.scratch.len() as u64;
                    }
                    e.set_job_file(id, s);
                }
                None => {
                    p.push_record(&Record::Delete { id }, seg_size, next_id);
                }
            }
        }
        self.request_sync(p)
    }

    /// Blocks until `t` is synced (or has failed). For startup and shutdown.
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
    pub(crate) fn position(&self) -> Ticket {
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

    /// The oldest segment, if compaction should empty it: the directory holds more than
    /// two segments and more than twice the live bytes.
    fn compaction_target(&self) -> Option<(u32, PathBuf)> {
        let p = self.pend();
        if p.failed.is_some() || p.rebase.is_some() || p.segs.len() < 3 {
            return None;
        }
        let disk: u64 = p.segs.values().sum();
        if disk <= 2 * p.live {
            return None;
        }
        let (&head, _) = p.segs.iter().next()?;
        (head != p.tail_seq).then(|| (head, recover::segment_path(&self.inner.dir, head)))
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
        let Some((head, path)) = self.compaction_target() else {
            return false;
        };
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("binlog: compaction cannot read {}: {e}", path.display());
                return false;
            }
        };
        // Ids whose full record is in the head segment.
        let mut ids = Vec::new();
        let mut off = record::HEADER_LEN.min(data.len());
        while let record::Next::Record(r, n) = record::decode(&data[off..]) {
            if let Record::Full { id, .. } = r {
                ids.push(id);
            }
            off += n;
        }
        let seg_size = self.inner.seg_size;
        for batch in ids.chunks(256) {
            engine(&mut |e| {
                let next_id = e.next_job_id();
                let mut p = self.pend();
                for &id in batch {
                    if e.job(id).map(|j| j.file) != Some(head) {
                        continue;
                    }
                    let Some(s) = p.push_full(e, id, seg_size, next_id) else {
                        continue;
                    };
                    p.records_migrated += 1;
                    e.set_job_file(id, s);
                }
            });
            self.inner.cv.notify_one();
        }
        let t = self.position();
        if !self.wait_synced(t) {
            return false;
        }
        if std::fs::remove_file(&path).is_ok() {
            sync_dir(&self.inner.dir);
        }
        self.pend().segs.remove(&head);
        self.inner.compacted.notify_waiters();
        true
    }

    /// True when the directory has grown two segments past its bound (twice the live
    /// bytes, at least three segments): writers are outrunning compaction.
    pub(crate) fn over_budget(&self) -> bool {
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

/// The writer thread: writes chunks in order, syncs per policy, publishes progress.
fn writer(inner: Arc<Inner>) {
    // Never preempt the event loop on wake-up: run when it waits. On a busy CPU this lets
    // it finish the commands at hand before a batch is taken, so batches (and group
    // commits) are whole rather than one record each.
    batch_priority();
    let mut cur: Option<(u32, Arc<File>)> = None;
    let mut used: u64;
    let mut to_sync: Vec<Arc<File>> = Vec::new();
    let mut written = 0u64;
    let mut synced = 0u64;
    let mut failed_from = u64::MAX;
    let (mut prev_written, mut prev_synced) = (0u64, 0u64);
    let mut last_sync = Instant::now();
    let mut epoch = 0;
    let mut tail_seen = 0;
    loop {
        let (chunks, sync_now, shutdown, rebase) = {
            let mut p = inner.pend.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                written = written.max(p.direct_lsn);
                let unsynced = written > synced;
                let due = match inner.policy {
                    SyncPolicy::Every(ms) => {
                        unsynced && last_sync.elapsed() >= Duration::from_millis(ms)
                    }
                    _ => false,
                };
                if !p.chunks.is_empty() || p.shutdown || p.sync_requested || due {
                    break;
                }
                p.writer_waiting = true;
                p = match inner.policy {
                    SyncPolicy::Every(ms) if unsynced => {
                        let left = Duration::from_millis(ms).saturating_sub(last_sync.elapsed());
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
            if p.epoch != epoch {
                // A checkpoint replaced whatever was pending: start clean.
                epoch = p.epoch;
                prev_written = written.min(failed_from);
                prev_synced = synced.min(failed_from);
                failed_from = u64::MAX;
                written = written.max(
                    p.chunks
                        .front()
                        .map(|c| c.end_lsn - c.bytes.len() as u64)
                        .unwrap_or(p.lsn),
                );
                synced = synced.min(written);
            }
            let chunks: Vec<Chunk> = p.chunks.drain(..).collect();
            if !chunks.is_empty() {
                p.writer_busy = true;
                p.direct = None;
            }
            used = p.used;
            p.dirty = false;
            let sync_now = std::mem::take(&mut p.sync_requested);
            (chunks, sync_now, p.shutdown, p.rebase)
        };
        let mut error: Option<String> = None;
        let mut lost: Vec<JobId> = Vec::new();
        for ch in &chunks {
            if failed_from != u64::MAX {
                lost.extend(record_ids(&ch.bytes));
                continue;
            }
            let before = used;
            if let Err(e) = write_chunk(&inner, &mut cur, &mut used, &mut to_sync, ch) {
                failed_from = ch.end_lsn - ch.bytes.len() as u64;
                error = Some(e);
                lost.extend(record_ids(&ch.bytes));
                // Leave no partial record behind: the file ends where the good data does.
                if let Some((seq, f)) = cur.as_ref() {
                    if *seq == ch.seq && !ch.create {
                        used = before;
                        let _ = f.set_len(before);
                    }
                }
                continue;
            }
            written = ch.end_lsn;
        }
        let policy_sync = match inner.policy {
            SyncPolicy::Always => written > synced,
            SyncPolicy::Every(ms) => {
                written > synced && last_sync.elapsed() >= Duration::from_millis(ms)
            }
            SyncPolicy::Never => false,
        };
        if error.is_none() && (policy_sync || sync_now || shutdown) && written > synced {
            let r = to_sync
                .drain(..)
                .try_for_each(|f| f.sync_data())
                .and_then(|_| cur.as_ref().map_or(Ok(()), |(_, f)| f.sync_data()));
            match r {
                Ok(()) => {
                    synced = written;
                    last_sync = Instant::now();
                }
                Err(e) => {
                    failed_from = failed_from.min(synced);
                    error = Some(format!("fsync: {e}"));
                }
            }
        } else if error.is_none() && sync_now {
            synced = written;
        }
        if let (None, Some(seq)) = (&error, rebase) {
            // Only a complete checkpoint replaces the old segments.
            if failed_from == u64::MAX
                && synced >= written
                && cur.as_ref().is_some_and(|(s, _)| *s >= seq)
            {
                finish_rebase(&inner, seq);
            }
        }
        let (rotated, direct) = {
            let mut p = inner.pend.lock().unwrap_or_else(|p| p.into_inner());
            if p.writer_busy {
                // Direct writes were off while we wrote: our count is the file's.
                p.used = used;
            } else {
                // Direct writes may have happened meanwhile: theirs is.
                used = p.used;
            }
            p.writer_busy = false;
            p.lost.extend(lost.iter().copied());
            if let Some(e) = &error {
                tracing::error!("binlog: {e}; changes are refused until writes succeed again");
                if p.epoch == epoch {
                    p.failed = Some(e.clone());
                }
                p.direct = None;
                // A segment that could not be created holds nothing.
                let missing: Vec<u32> = p
                    .segs
                    .keys()
                    .copied()
                    .filter(|&s| !recover::segment_path(&inner.dir, s).exists())
                    .collect();
                for s in missing {
                    p.segs.remove(&s);
                }
            } else if shutdown {
                // The file is about to be cut to `used`: nothing may be written past it.
                p.direct = None;
            } else if p.epoch == epoch && p.chunks.is_empty() {
                p.direct = cur.clone();
            }
            let direct = if p.epoch == epoch { p.direct_lsn } else { 0 };
            (
                std::mem::replace(&mut tail_seen, p.tail_seq) != p.tail_seq,
                direct,
            )
        };
        // Published outside `pend` (waking the runtime while holding it would have the event
        // loop block on it at once). Never behind what direct writes published meanwhile.
        let mut was = epoch;
        inner.acked.send_modify(|a| {
            was = a.epoch;
            // A direct-write failure may have been published meanwhile: keep it.
            let (failed, published) = if a.epoch == epoch {
                (a.failed_from.min(failed_from), a.written)
            } else {
                (failed_from, 0)
            };
            *a = Acked {
                epoch,
                written: written.max(published).max(direct),
                synced,
                failed_from: failed,
                prev_written,
                prev_synced,
            };
        });
        if was != epoch {
            // This publish starts the epoch: a direct write made since `direct` was read
            // found the old one and could not publish itself.
            let direct = {
                let p = inner.pend.lock().unwrap_or_else(|p| p.into_inner());
                if p.epoch == epoch {
                    p.direct_lsn
                } else {
                    0
                }
            };
            inner.acked.send_modify(|a| {
                if a.epoch == epoch {
                    a.written = a.written.max(direct);
                }
            });
        }
        if rotated || shutdown || inner.sync_waiters.load(Ordering::SeqCst) > 0 {
            // Under the lock, so a waiter between its check and its wait is not missed.
            let _g = inner.compact_lock.lock().unwrap_or_else(|p| p.into_inner());
            inner.compact_cv.notify_all();
        }
        if shutdown {
            if let Some((_, f)) = cur.as_ref() {
                if error.is_none() && f.set_len(used).is_ok() {
                    let _ = f.sync_all();
                }
            }
            return;
        }
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

/// The job ids of the records in `bytes`.
fn record_ids(bytes: &[u8]) -> Vec<JobId> {
    let mut ids = Vec::new();
    let mut off = 0;
    while let record::Next::Record(r, n) = record::decode(&bytes[off..]) {
        ids.push(r.id());
        off += n;
    }
    ids
}

/// A checkpoint segment is durable: drop everything older.
fn finish_rebase(inner: &Inner, seq: u32) {
    let old: Vec<u32> = {
        let mut p = inner.pend.lock().unwrap_or_else(|p| p.into_inner());
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
        let _ = std::fs::remove_file(recover::segment_path(&inner.dir, s));
    }
    for (_, path) in beanstalkd::files(&inner.dir) {
        let _ = std::fs::remove_file(path);
    }
    sync_dir(&inner.dir);
}

/// Fills a new segment with zeros up to `size`, syncs it, and rewinds.
fn preallocate(f: &mut File, size: u64) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom};
    let zeros = vec![0u8; 64 * 1024];
    let mut left = size;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        f.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    f.sync_all()?;
    f.seek(SeekFrom::Start(0))?;
    Ok(())
}

fn write_chunk(
    inner: &Inner,
    cur: &mut Option<(u32, Arc<File>)>,
    used: &mut u64,
    to_sync: &mut Vec<Arc<File>>,
    ch: &Chunk,
) -> Result<(), String> {
    if ch.create || cur.as_ref().is_none_or(|(s, _)| *s != ch.seq) {
        if let Some((_, old)) = cur.as_ref() {
            // A finished segment keeps only what it holds (no preallocated tail to read).
            let _ = old.set_len(*used);
        }
        let path = recover::segment_path(&inner.dir, ch.seq);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| format!("create {}: {e}", path.display()))?;
        // Reserve the space now, by writing zeros, so that running out of disk shows here
        // and not mid-record, and so that later syncs flush data only (space reserved with
        // fallocate would need its extents converted, a metadata write, on every sync).
        if let Err(e) = preallocate(&mut f, inner.seg_size) {
            drop(f);
            let _ = std::fs::remove_file(&path);
            return Err(format!("allocate {}: {e}", path.display()));
        }
        f.write_all(&record::header(ch.seq, ch.next_id))
            .map_err(|e| format!("write {}: {e}", path.display()))?;
        sync_dir(&inner.dir);
        if let Some((_, old)) = cur.take() {
            to_sync.push(old);
        }
        *cur = Some((ch.seq, Arc::new(f)));
        *used = record::HEADER_LEN as u64;
    }
    if let Some((seq, f)) = cur.as_ref() {
        *used += ch.bytes.len() as u64;
        (&**f).write_all(&ch.bytes).map_err(|e| {
            format!(
                "write {}: {e}",
                recover::segment_path(&inner.dir, *seq).display()
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sprout_engine::{Deliveries, Engine};
    use sprout_protocol::command::PutHeader;
    use sprout_protocol::Reply;
    use std::sync::atomic::AtomicBool;

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
            let b = Binlog::start(&dir, 1 << 20, SyncPolicy::Every(1), &[], 0, 1);
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
                    let mut out = Deliveries::new();
                    for _ in 0..2_000 {
                        let t = {
                            let mut e = engine.lock().unwrap();
                            let c = e.connect();
                            let id = e.put_header(c);
                            let r = e.put_body(c, id, header, body.clone(), 0, &mut out);
                            assert!(matches!(r, Reply::Inserted(_)), "{r:?}");
                            e.disconnect(c, 0, &mut out);
                            let mut ops = Vec::new();
                            e.take_journal(&mut ops);
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
