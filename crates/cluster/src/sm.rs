//! The state machine adapter: committed entries, in log order, to an [`Apply`]; the
//! per-node sequence numbers that make a retried batch apply once; snapshots as the
//! application's bytes plus those numbers, the last one kept on disk.

use std::collections::BTreeMap;
use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageIOError,
    StoredMembership,
};
use serde::{Deserialize, Serialize};

use crate::{codec, Entry, NodeId, StorageError, TypeConfig};

/// What applies committed items: the same calls in the same order on every node.
pub trait Apply: Send + Sync + 'static {
    /// One item of a committed batch. `now` is the batch's stamp (the leader's clock: it
    /// may be behind an earlier batch's after a leader change; the application keeps its
    /// own time from going back). Called once per item, in log order.
    fn apply(&mut self, index: u64, now: u64, origin: NodeId, item: &[u8]);

    /// The application's state, for a snapshot. Applying is paused while this runs: it
    /// should copy, not encode at length (see [`Apply::encode`]).
    fn snapshot(&mut self) -> Vec<u8>;

    /// Replaces the application's state with a snapshot's. An error stops the node (its
    /// state would no longer be the cluster's).
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String>;
}

/// The snapshot's header: the per-origin sequence numbers. The application's bytes
/// follow it.
#[derive(Serialize, Deserialize, Default)]
struct Header {
    seqs: BTreeMap<NodeId, u64>,
}

/// A snapshot's data: a u32 length, the JSON [`Header`], the application's bytes.
fn encode(seqs: &BTreeMap<NodeId, u64>, app: &[u8]) -> Vec<u8> {
    let h = codec::json(&Header { seqs: seqs.clone() });
    let mut data = Vec::with_capacity(4 + h.len() + app.len());
    data.extend_from_slice(&(h.len() as u32).to_le_bytes());
    data.extend_from_slice(&h);
    data.extend_from_slice(app);
    data
}

/// The header and the application's bytes of a snapshot's data.
fn decode(data: &[u8]) -> io::Result<(Header, &[u8])> {
    let n = data
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or_else(|| codec::invalid("snapshot: no header"))?;
    let h = data
        .get(4..4 + n)
        .ok_or_else(|| codec::invalid("snapshot: short header"))?;
    let h: Header = serde_json::from_slice(h).map_err(codec::invalid)?;
    Ok((h, &data[4 + n..]))
}

#[derive(Clone)]
struct Stored {
    meta: SnapshotMeta<NodeId, openraft::BasicNode>,
    data: Arc<Vec<u8>>,
}

/// Where the last snapshot is kept on disk (`DIR/raft/snapshot`): its metadata and data
/// in one file, replaced atomically; with it, a restart does not need the log it replaced.
/// The file is a u32 length, the JSON metadata, the data, and a CRC32C of all that.
#[derive(Clone)]
struct Disk {
    dir: PathBuf,
    /// The last log index of the snapshot on disk (one writer at a time: a newer one is
    /// never replaced by an older).
    at: Arc<Mutex<Option<u64>>>,
}

const SNAPSHOT_FILE: &str = "snapshot";

impl Disk {
    fn save(&self, s: &Stored) -> io::Result<()> {
        let index = s.meta.last_log_id.map(|l| l.index);
        let mut at = self.at.lock().unwrap_or_else(|p| p.into_inner());
        if at.is_some() && *at >= index {
            return Ok(());
        }
        let m = codec::json(&s.meta);
        let mut b = Vec::with_capacity(8 + m.len() + s.data.len());
        b.extend_from_slice(&(m.len() as u32).to_le_bytes());
        b.extend_from_slice(&m);
        b.extend_from_slice(&s.data);
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        crate::log::replace(&self.dir, SNAPSHOT_FILE, &b)?;
        *at = index;
        Ok(())
    }

    fn load(&self) -> io::Result<Option<Stored>> {
        let b = match std::fs::read(self.dir.join(SNAPSHOT_FILE)) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let bad = |what: &str| {
            codec::invalid(format!(
                "{}: {what}",
                self.dir.join(SNAPSHOT_FILE).display()
            ))
        };
        if b.len() < 8 {
            return Err(bad("too short"));
        }
        let (body, crc) = b.split_at(b.len() - 4);
        if crc32c::crc32c(body).to_le_bytes() != crc {
            return Err(bad("checksum"));
        }
        let n = u32::from_le_bytes([body[0], body[1], body[2], body[3]]) as usize;
        let m = body.get(4..4 + n).ok_or_else(|| bad("short metadata"))?;
        let meta: SnapshotMeta<NodeId, openraft::BasicNode> =
            serde_json::from_slice(m).map_err(codec::invalid)?;
        *self.at.lock().unwrap_or_else(|p| p.into_inner()) = meta.last_log_id.map(|l| l.index);
        Ok(Some(Stored {
            meta,
            data: Arc::new(body[4 + n..].to_vec()),
        }))
    }
}

/// The state machine storage around an [`Apply`].
pub struct StateMachine<A: Apply> {
    app: A,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, openraft::BasicNode>,
    /// The last applied batch's sequence number, per origin.
    seqs: BTreeMap<NodeId, u64>,
    snapshot: Arc<Mutex<Option<Stored>>>,
    disk: Option<Disk>,
    built: u64,
}

impl<A: Apply> StateMachine<A> {
    /// A state machine that keeps its snapshots in memory only.
    pub fn new(app: A) -> Self {
        StateMachine {
            app,
            last_applied: None,
            membership: StoredMembership::default(),
            seqs: BTreeMap::new(),
            snapshot: Arc::default(),
            disk: None,
            built: 0,
        }
    }

    /// A state machine that keeps its last snapshot in `dir` (the `raft` directory), and
    /// starts from the one there, if any.
    pub fn open(app: A, dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let disk = Disk {
            dir: dir.to_path_buf(),
            at: Arc::default(),
        };
        let mut sm = StateMachine::new(app);
        sm.disk = Some(disk.clone());
        if let Some(s) = disk.load()? {
            let (h, bytes) = decode(&s.data)?;
            sm.app.restore(bytes).map_err(io::Error::other)?;
            tracing::info!(
                "snapshot {} loaded (up to entry {})",
                s.meta.snapshot_id,
                s.meta.last_log_id.map_or(0, |l| l.index)
            );
            sm.seqs = h.seqs;
            sm.last_applied = s.meta.last_log_id;
            sm.membership = s.meta.last_membership.clone();
            *sm.snapshot.lock().unwrap_or_else(|p| p.into_inner()) = Some(s);
        }
        Ok(sm)
    }

    /// Whether this node holds a snapshot (it then belongs to a cluster).
    pub fn has_snapshot(&self) -> bool {
        self.snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    fn apply_entry(&mut self, e: Entry) {
        self.last_applied = Some(e.log_id);
        match e.payload {
            EntryPayload::Blank => {}
            EntryPayload::Membership(m) => {
                self.membership = StoredMembership::new(Some(e.log_id), m);
            }
            EntryPayload::Normal(b) => {
                if b.origin & crate::DECISION == 0 {
                    let last = self.seqs.entry(b.origin).or_insert(0);
                    if b.seq <= *last {
                        tracing::debug!("{b} at {} already applied: skipped", e.log_id.index);
                        return;
                    }
                    *last = b.seq;
                }
                for item in &b.items {
                    self.app.apply(e.log_id.index, b.now, b.origin, &item.0);
                }
            }
        }
    }
}

fn to_snapshot(s: &Stored) -> Snapshot<TypeConfig> {
    Snapshot {
        meta: s.meta.clone(),
        snapshot: Box::new(Cursor::new(s.data.to_vec())),
    }
}

fn snapshot_err(
    meta: Option<&SnapshotMeta<NodeId, openraft::BasicNode>>,
    e: impl ToString,
) -> StorageError {
    StorageIOError::write_snapshot(meta.map(|m| m.signature()), AnyError::error(e.to_string()))
        .into()
}

/// Finishes a snapshot whose application state was copied (while applying was paused):
/// encodes it, writes it to disk (before openraft may purge the log it replaces), and
/// makes it the current one.
pub struct Builder {
    meta: SnapshotMeta<NodeId, openraft::BasicNode>,
    seqs: BTreeMap<NodeId, u64>,
    app: Option<Vec<u8>>,
    current: Arc<Mutex<Option<Stored>>>,
    disk: Option<Disk>,
}

impl RaftSnapshotBuilder<TypeConfig> for Builder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let app = self
            .app
            .take()
            .ok_or_else(|| snapshot_err(None, "snapshot built twice"))?;
        let started = Instant::now();
        let s = Stored {
            meta: self.meta.clone(),
            data: Arc::new(encode(&self.seqs, &app)),
        };
        drop(app);
        if let Some(d) = self.disk.clone() {
            let s2 = s.clone();
            tokio::task::spawn_blocking(move || d.save(&s2))
                .await
                .map_err(|e| snapshot_err(Some(&s.meta), e))?
                .map_err(|e| snapshot_err(Some(&s.meta), e))?;
        }
        tracing::info!(
            "snapshot {} of {} bytes written in {:?}",
            s.meta.snapshot_id,
            s.data.len(),
            started.elapsed()
        );
        let snap = to_snapshot(&s);
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if cur
            .as_ref()
            .is_none_or(|c| c.meta.last_log_id <= s.meta.last_log_id)
        {
            *cur = Some(s);
        }
        Ok(snap)
    }
}

impl<A: Apply> RaftStateMachine<TypeConfig> for StateMachine<A> {
    type SnapshotBuilder = Builder;

    async fn applied_state(
        &mut self,
    ) -> Result<
        (
            Option<LogId<NodeId>>,
            StoredMembership<NodeId, openraft::BasicNode>,
        ),
        StorageError,
    > {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        for e in entries {
            self.apply_entry(e);
            out.push(());
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // Applying is paused while this runs: the application's state is copied here (the
        // time the cluster stalls), and the builder encodes and writes it.
        let started = Instant::now();
        let app = self.app.snapshot();
        tracing::info!(
            "snapshot at entry {}: state copied in {:?}",
            self.last_applied.map_or(0, |l| l.index),
            started.elapsed()
        );
        self.built += 1;
        let id = match self.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, self.built),
            None => format!("none-{}", self.built),
        };
        Builder {
            meta: SnapshotMeta {
                last_log_id: self.last_applied,
                last_membership: self.membership.clone(),
                snapshot_id: id,
            },
            seqs: self.seqs.clone(),
            app: Some(app),
            current: self.snapshot.clone(),
            disk: self.disk.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = Arc::new(snapshot.into_inner());
        let read_err = |e: String| -> StorageError {
            StorageIOError::read_snapshot(Some(meta.signature()), AnyError::error(e)).into()
        };
        let (h, app) = decode(&data).map_err(|e| read_err(e.to_string()))?;
        // On disk first: once it is installed, the log before it may be purged.
        let s = Stored {
            meta: meta.clone(),
            data: data.clone(),
        };
        if let Some(d) = &self.disk {
            d.save(&s).map_err(|e| snapshot_err(Some(meta), e))?;
        }
        self.app.restore(app).map_err(read_err)?;
        tracing::info!(
            "snapshot {} installed (up to entry {})",
            meta.snapshot_id,
            meta.last_log_id.map_or(0, |l| l.index)
        );
        self.seqs = h.seqs;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        *self.snapshot.lock().unwrap_or_else(|p| p.into_inner()) = Some(s);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self
            .snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(to_snapshot))
    }
}
