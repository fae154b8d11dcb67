//! Records waiting to be written: the tail segment's chunks, the log position (LSN), the
//! epoch, segment sizes and live bytes. Appends encode records here under the engine lock
//! (straight from the engine's job, without copying its body first); the writer thread or
//! the flush task takes the chunks.

use std::collections::{BTreeMap, VecDeque};

use sprout_engine::{Engine, JobId, JobState};

use crate::record::{self, Record, Snapshot};
use crate::writer::Tail;

/// Bytes for one segment, and whether the segment must be created first.
pub(crate) struct Chunk {
    pub(crate) seq: u32,
    /// Create the segment file before writing.
    pub(crate) create: bool,
    pub(crate) next_id: u64,
    pub(crate) bytes: Vec<u8>,
    pub(crate) end_lsn: u64,
    pub(crate) records: u64,
}

pub(crate) struct Pending {
    pub(crate) chunks: VecDeque<Chunk>,
    pub(crate) lsn: u64,
    pub(crate) epoch: u64,
    pub(crate) tail_seq: u32,
    pub(crate) tail_used: u64,
    /// Segments on disk (or about to be), with their size.
    pub(crate) segs: BTreeMap<u32, u64>,
    /// Bytes of full records of live jobs.
    pub(crate) live: u64,
    pub(crate) records_written: u64,
    pub(crate) records_migrated: u64,
    pub(crate) failed: Option<String>,
    pub(crate) sync_requested: bool,
    pub(crate) shutdown: bool,
    /// After the chunk creating this segment is synced, delete every older segment and
    /// any beanstalkd files.
    pub(crate) rebase: Option<u32>,
    pub(crate) scratch: Vec<u8>,
    /// Who may write to the tail segment's file now: while the writer is idle it lends the
    /// file, and with `-f MS` or `-F` appends write records straight to it (no thread
    /// hand-off per command).
    pub(crate) tail: Tail,
    /// Bytes in the tail segment's file.
    pub(crate) used: u64,
    /// End of what `append` wrote directly.
    pub(crate) direct_lsn: u64,
    /// Direct writes since the writer last synced (it has been told).
    pub(crate) dirty: bool,
    /// The writer is blocked on `cv`: only then do appends notify it (a condvar notify is a
    /// futex syscall even with nobody waiting).
    pub(crate) writer_waiting: bool,
    /// Records wait for the flush task (see `acks`).
    pub(crate) flush_wanted: bool,
    /// The buffer of the last chunk written directly, for the next chunk.
    pub(crate) spare: Vec<u8>,
    /// While writes fail: jobs whose latest change may be missing from the log.
    pub(crate) lost: rustc_hash::FxHashSet<JobId>,
    /// Where the records of the current epoch's checkpoint or resume end.
    pub(crate) heal_end: u64,
    /// Where the latest delete record ends.
    pub(crate) deleted_lsn: u64,
    /// The length of the last full record pushed.
    pub(crate) last_full: u64,
    /// While writes fail: flushes whose record may be missing from the log (written again
    /// first by the resume).
    pub(crate) lost_flushes: Vec<String>,
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

/// A put's job as it will be once applied: what its full record holds.
#[derive(Debug, Clone, Copy)]
pub struct NewJob<'a> {
    pub id: JobId,
    pub pri: u32,
    /// Seconds.
    pub delay: u32,
    /// Seconds (at least one).
    pub ttr: u32,
    pub created: u64,
    /// When it becomes ready: `created` plus the delay.
    pub deadline: u64,
    pub tube: &'a str,
    pub body: &'a [u8],
    /// Its `put-unique` key.
    pub key: Option<&'a str>,
}

impl Pending {
    /// A job whose full record was in segment `file` (0: none) is gone: its record no
    /// longer counts as live. `size` is its tube name plus body length.
    pub(crate) fn forget(&mut self, file: u32, size: u64) {
        if file != 0 {
            let full = record::full_len(0, 0) as u64 + size;
            self.live = self.live.saturating_sub(full);
        }
    }

    /// Drops whatever was pending, clears a failure, and starts a new epoch whose records go
    /// to a new segment. Returns that segment's number.
    pub(crate) fn new_epoch(&mut self, seg_size: u64, next_id: u64) -> u32 {
        self.chunks.clear();
        if matches!(self.tail, Tail::Lent(..)) {
            self.tail = Tail::Idle;
        }
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
    /// the one into the log) and appends it, then its key record if it has a `put-unique`
    /// key; returns (segment, end lsn) of the full record, None if there is no such job.
    /// The full record's length is left in `last_full`.
    pub(crate) fn push_full(
        &mut self,
        e: &Engine,
        id: JobId,
        seg_size: u64,
        next_id: u64,
    ) -> Option<(u32, u64)> {
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
        self.last_full = self.scratch.len() as u64;
        let at = self.push(seg_size, next_id);
        if let Some(key) = e.job_key(id) {
            let r = Record::Key {
                id,
                key: key.to_string(),
            };
            self.push_record(&r, seg_size, next_id);
        }
        if let Some(o) = e.job_origin(id) {
            let r = Record::Origin {
                id,
                tube: o.to_string(),
            };
            self.push_record(&r, seg_size, next_id);
        }
        Some(at)
    }

    /// Encodes the full record of a job that is not in the engine yet (a put is logged
    /// before it is applied) and appends it, and its key record; returns (segment, end
    /// lsn) of the full record, its length left in `last_full`.
    pub(crate) fn push_put(&mut self, put: &NewJob<'_>, seg_size: u64, next_id: u64) -> (u32, u64) {
        self.scratch.clear();
        let snap = Snapshot {
            state: if put.delay > 0 {
                record::STATE_DELAYED
            } else {
                record::STATE_READY
            },
            pri: put.pri,
            delay: put.delay,
            deadline: put.deadline,
            ..Snapshot::default()
        };
        record::encode_full(
            &mut self.scratch,
            put.id,
            &snap,
            put.ttr,
            put.created,
            put.tube,
            put.body,
        );
        self.last_full = self.scratch.len() as u64;
        let at = self.push(seg_size, next_id);
        if let Some(key) = put.key {
            let r = Record::Key {
                id: put.id,
                key: key.to_string(),
            };
            self.push_record(&r, seg_size, next_id);
        }
        at
    }

    /// Encodes `r` and appends it to the tail segment; returns (segment, end lsn). The
    /// encoded record stays in `scratch` (its length is what it takes on disk).
    pub(crate) fn push_record(&mut self, r: &Record, seg_size: u64, next_id: u64) -> (u32, u64) {
        self.scratch.clear();
        record::encode(&mut self.scratch, r);
        self.push(seg_size, next_id)
    }

    /// Appends one encoded record (in `scratch`) to the tail segment, rotating first if it
    /// does not fit.
    pub(crate) fn push(&mut self, seg_size: u64, next_id: u64) -> (u32, u64) {
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
