//! The Raft log and vote on disk, under `DIR/raft/`.
//!
//! `log`: one append-only file of frames (see `codec`), each a record: an entry, a
//! truncation ("entries from this index on are gone") or a purge ("entries up to this
//! log id are gone": a snapshot holds them). At open the file is read back into memory
//! (the entries not purged are kept in memory); a torn or corrupt tail, which was never
//! acknowledged, is cut off. Once purged entries (and records they made dead) are most of
//! the file, a purge rewrites it: the purge record and the live entries go to `log.tmp`,
//! which is synced and renamed over `log`, so the file stays within about twice the live
//! log. `vote`: the vote, replaced atomically (written to a
//! temporary file, synced, renamed, the directory synced).
//!
//! All writes go, in order, through one writer thread: it takes every queued request,
//! writes them, syncs once (`fdatasync`) and only then reports the appended entries as
//! flushed (openraft's `LogFlushed`), so that a majority "has it" means on disk.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, LogId, OptionalSend, RaftLogReader, StorageIOError, Vote};
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::{Entry, NodeId, StorageError, TypeConfig};

#[derive(Serialize, Deserialize)]
enum Record {
    Entry(Entry),
    Truncate(u64),
    Purge(LogId<NodeId>),
}

/// [`Record::Entry`] serialized without a copy of the entry.
#[derive(Serialize)]
enum RecordRef<'a> {
    Entry(&'a Entry),
}

#[derive(Default)]
struct Data {
    entries: BTreeMap<u64, Entry>,
    /// Each entry's frame size in the file.
    sizes: BTreeMap<u64, u64>,
    /// The sum of `sizes`.
    live: u64,
    /// The file's length once everything sent to the writer is written.
    file_len: u64,
    last_purged: Option<LogId<NodeId>>,
    vote: Option<Vote<NodeId>>,
}

/// The file is rewritten at a purge once it is over twice the live entries and this.
const REWRITE_MIN: u64 = 256 << 10;

impl Data {
    /// Applies a record whose frame is `size` bytes.
    fn apply(&mut self, r: Record, size: u64) {
        self.file_len += size;
        match r {
            Record::Entry(e) => {
                let i = e.log_id.index;
                self.entries.insert(i, e);
                self.live += size;
                if let Some(old) = self.sizes.insert(i, size) {
                    self.live -= old;
                }
            }
            Record::Truncate(i) => {
                self.entries.split_off(&i);
                let gone = self.sizes.split_off(&i);
                self.live -= gone.values().sum::<u64>();
            }
            Record::Purge(id) => {
                self.entries = self.entries.split_off(&(id.index + 1));
                let kept = self.sizes.split_off(&(id.index + 1));
                let gone = std::mem::replace(&mut self.sizes, kept);
                self.live -= gone.values().sum::<u64>();
                self.last_purged = Some(id);
            }
        }
    }

    /// The whole file anew, if it is due for a rewrite: the last purge, then the entries.
    fn rewrite(&mut self) -> Option<Vec<u8>> {
        if self.file_len <= 2 * self.live + REWRITE_MIN {
            return None;
        }
        let mut bytes = Vec::with_capacity(self.live as usize + 256);
        if let Some(p) = self.last_purged {
            codec::frame(&codec::json(&Record::Purge(p)), &mut bytes);
        }
        for e in self.entries.values() {
            codec::frame(&codec::json(&RecordRef::Entry(e)), &mut bytes);
        }
        self.file_len = bytes.len() as u64;
        Some(bytes)
    }
}

enum Io {
    Records(Vec<u8>, Option<LogFlushed<TypeConfig>>),
    Vote(Vec<u8>, tokio::sync::oneshot::Sender<io::Result<()>>),
    /// The whole file's new contents (see [`Data::rewrite`]).
    Rewrite(Vec<u8>),
}

/// The log store (and, cloned, its reader): the entries in memory, the writer thread
/// behind a channel.
#[derive(Clone)]
pub struct LogStore {
    data: Arc<Mutex<Data>>,
    io: mpsc::Sender<Io>,
    committed: Arc<AtomicU64>,
}

fn write_err(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::write_logs(AnyError::error(e.to_string())).into()
}

impl LogStore {
    /// Opens (or creates) the log under `dir` (the `raft` directory).
    pub fn open(dir: &Path) -> io::Result<LogStore> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("log");
        let mut data = Data::default();
        let mut buf = Vec::new();
        if let Ok(mut f) = File::open(&path) {
            f.read_to_end(&mut buf)?;
        }
        let mut at = 0;
        let mut start = 0;
        while let Some(body) = codec::next(&buf, &mut at) {
            let size = (at - start) as u64;
            start = at;
            let rec = body.and_then(|b| serde_json::from_slice(b).map_err(codec::invalid));
            match rec {
                Ok(r) => data.apply(r, size),
                Err(e) => {
                    tracing::warn!(
                        "{}: bad record at {at} ({e}); cut off there",
                        path.display()
                    );
                    break;
                }
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        if at < buf.len() {
            tracing::warn!(
                "{}: {} bytes of torn tail cut off",
                path.display(),
                buf.len() - at
            );
            file.set_len(at as u64)?;
            file.sync_data()?;
        }
        data.file_len = at as u64;
        data.vote = read_vote(&dir.join("vote"))?;
        let (tx, rx) = mpsc::channel();
        let dir = dir.to_path_buf();
        std::thread::Builder::new()
            .name("raft-log".into())
            .spawn(move || writer(file, dir, rx))?;
        Ok(LogStore {
            data: Arc::new(Mutex::new(data)),
            io: tx,
            committed: Arc::new(AtomicU64::new(0)),
        })
    }

    fn data(&self) -> MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The commit index openraft last reported (0: none yet).
    pub fn committed(&self) -> Arc<AtomicU64> {
        self.committed.clone()
    }

    fn record(
        &self,
        r: Record,
        flushed: Option<LogFlushed<TypeConfig>>,
    ) -> Result<(), StorageError> {
        let mut bytes = Vec::new();
        codec::frame(&codec::json(&r), &mut bytes);
        let mut d = self.data();
        d.apply(r, bytes.len() as u64);
        // Sent under the lock: the writer gets the records in the order they were applied.
        let io = match d.rewrite() {
            Some(all) => {
                tracing::info!(
                    "raft log: rewritten to its {} live entries",
                    d.entries.len()
                );
                Io::Rewrite(all)
            }
            None => Io::Records(bytes, flushed),
        };
        self.io
            .send(io)
            .map_err(|_| write_err("the log writer is gone"))
    }
}

fn read_vote(path: &Path) -> io::Result<Option<Vote<NodeId>>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(codec::invalid),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Replaces `dir/name` atomically and durably.
pub(crate) fn replace(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp: PathBuf = dir.join(format!("{name}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    File::open(dir)?.sync_all()
}

/// The writer thread: takes all that is queued, writes, syncs once, reports.
fn writer(mut file: File, dir: PathBuf, rx: mpsc::Receiver<Io>) {
    let mut failed: Option<String> = None;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        let mut buf = Vec::new();
        let mut done = Vec::new();
        for io in batch {
            match io {
                Io::Records(b, f) => {
                    buf.extend_from_slice(&b);
                    done.extend(f);
                }
                Io::Vote(v, tx) => {
                    // Everything queued before the vote is written first.
                    let r = flush(&mut file, &mut buf, &mut failed)
                        .and_then(|()| replace(&dir, "vote", &v));
                    let _ = tx.send(r);
                }
                Io::Rewrite(all) => {
                    // The new contents hold everything queued before: that is dropped.
                    buf.clear();
                    if failed.is_none() {
                        let r = replace(&dir, "log", &all)
                            .and_then(|()| OpenOptions::new().append(true).open(dir.join("log")));
                        match r {
                            Ok(f) => file = f,
                            Err(e) => {
                                tracing::error!("raft log rewrite failed: {e}");
                                failed = Some(e.to_string());
                            }
                        }
                    }
                }
            }
        }
        let r = flush(&mut file, &mut buf, &mut failed);
        for f in done {
            f.log_io_completed(match &r {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            });
        }
    }
}

/// Writes and syncs `buf`; after one failure every later write fails (the file's tail is
/// unknown: the process must restart and read it back).
fn flush(file: &mut File, buf: &mut Vec<u8>, failed: &mut Option<String>) -> io::Result<()> {
    if let Some(e) = failed {
        return Err(io::Error::other(e.clone()));
    }
    if buf.is_empty() {
        return Ok(());
    }
    let r = file.write_all(buf).and_then(|()| file.sync_data());
    buf.clear();
    if let Err(e) = &r {
        tracing::error!("raft log write failed: {e}");
        *failed = Some(e.to_string());
    }
    r
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(self
            .data()
            .entries
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let d = self.data();
        let last = d.entries.values().next_back().map(|e| e.log_id);
        Ok(LogState {
            last_purged_log_id: d.last_purged,
            last_log_id: last.or(d.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let vote_err =
            |e: String| -> StorageError { StorageIOError::write_vote(AnyError::error(e)).into() };
        self.io
            .send(Io::Vote(codec::json(vote), tx))
            .map_err(|_| vote_err("the log writer is gone".into()))?;
        match rx.await {
            Ok(Ok(())) => {
                self.data().vote = Some(*vote);
                Ok(())
            }
            Ok(Err(e)) => Err(vote_err(e.to_string())),
            Err(_) => Err(vote_err("the log writer is gone".into())),
        }
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        Ok(self.data().vote)
    }

    async fn save_committed(&mut self, c: Option<LogId<NodeId>>) -> Result<(), StorageError> {
        // Kept in memory only, for `stats`: at a restart the state machine is rebuilt from
        // entries the leader reports committed.
        self.committed
            .store(c.map_or(0, |c| c.index), Ordering::Relaxed);
        Ok(())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut bytes = Vec::new();
        {
            let mut d = self.data();
            for e in entries {
                let at = bytes.len();
                codec::frame(&codec::json(&RecordRef::Entry(&e)), &mut bytes);
                d.apply(Record::Entry(e), (bytes.len() - at) as u64);
            }
        }
        self.io
            .send(Io::Records(bytes, Some(callback)))
            .map_err(|_| write_err("the log writer is gone"))
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        self.record(Record::Truncate(log_id.index), None)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        self.record(Record::Purge(log_id), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Batch, Payload};
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(i: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), i),
            payload: EntryPayload::Normal(Batch {
                now: i,
                origin: 1,
                seq: i,
                items: vec![Payload(vec![b'x'; 1000])],
            }),
        }
    }

    /// A purge leaves the file once purged entries are most of it: the file is rewritten
    /// with the live entries only, and reads back the same.
    #[tokio::test]
    async fn a_purge_rewrites_the_file_to_its_live_entries() {
        let dir = std::env::temp_dir().join(format!("sprout-log-purge-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut bytes = Vec::new();
        for i in 1..=2000 {
            codec::frame(&codec::json(&RecordRef::Entry(&entry(i))), &mut bytes);
        }
        std::fs::write(dir.join("log"), &bytes).unwrap();
        let size = |d: &Path| std::fs::metadata(d.join("log")).unwrap().len();
        assert!(size(&dir) > 2_000_000);
        let mut log = LogStore::open(&dir).unwrap();
        let upto = LogId::new(CommittedLeaderId::new(1, 1), 1900);
        log.purge(upto).await.unwrap();
        // The vote goes through the writer after the purge: once it is saved, so is that.
        log.save_vote(&Vote::new(1, 1)).await.unwrap();
        assert!(size(&dir) < 150_000, "log of {} bytes", size(&dir));
        drop(log);
        let mut log = LogStore::open(&dir).unwrap();
        let st = log.get_log_state().await.unwrap();
        assert_eq!(st.last_purged_log_id, Some(upto));
        assert_eq!(st.last_log_id.map(|l| l.index), Some(2000));
        let got = log.try_get_log_entries(0..).await.unwrap();
        assert_eq!(got, (1901..=2000).map(entry).collect::<Vec<_>>());
        // A small purge does not rewrite.
        let before = size(&dir);
        log.purge(LogId::new(CommittedLeaderId::new(1, 1), 1910))
            .await
            .unwrap();
        log.save_vote(&Vote::new(1, 1)).await.unwrap();
        assert!(size(&dir) > before, "a purge record appended");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
