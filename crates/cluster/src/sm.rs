//! The state machine adapter: committed entries, in log order, to an [`Apply`]; the
//! per-node sequence numbers that make a retried batch apply once; snapshots as the
//! application's bytes plus those numbers.

use std::collections::BTreeMap;
use std::io::Cursor;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageIOError,
    StoredMembership,
};
use serde::{Deserialize, Serialize};

use crate::{codec, Entry, NodeId, Payload, StorageError, TypeConfig};

/// What applies committed items: the same calls in the same order on every node.
pub trait Apply: Send + Sync + 'static {
    /// One item of a committed batch. `now` is the batch's stamp (the leader's clock: it
    /// may be behind an earlier batch's after a leader change; the application keeps its
    /// own time from going back). Called once per item, in log order.
    fn apply(&mut self, index: u64, now: u64, origin: NodeId, item: &[u8]);

    /// The application's state, for a snapshot.
    fn snapshot(&mut self) -> Vec<u8>;

    /// Replaces the application's state with a snapshot's.
    fn restore(&mut self, snapshot: &[u8]);
}

/// The snapshot's contents.
#[derive(Serialize, Deserialize, Default)]
struct Image {
    seqs: BTreeMap<NodeId, u64>,
    app: Payload,
}

struct Stored {
    meta: SnapshotMeta<NodeId, openraft::BasicNode>,
    data: Vec<u8>,
}

/// The state machine storage around an [`Apply`].
pub struct StateMachine<A: Apply> {
    app: A,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, openraft::BasicNode>,
    /// The last applied batch's sequence number, per origin.
    seqs: BTreeMap<NodeId, u64>,
    snapshot: Option<Stored>,
    built: u64,
}

impl<A: Apply> StateMachine<A> {
    pub fn new(app: A) -> Self {
        StateMachine {
            app,
            last_applied: None,
            membership: StoredMembership::default(),
            seqs: BTreeMap::new(),
            snapshot: None,
            built: 0,
        }
    }

    fn build(&mut self) -> Stored {
        let image = Image {
            seqs: self.seqs.clone(),
            app: Payload(self.app.snapshot()),
        };
        self.built += 1;
        let id = match self.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, self.built),
            None => format!("none-{}", self.built),
        };
        Stored {
            meta: SnapshotMeta {
                last_log_id: self.last_applied,
                last_membership: self.membership.clone(),
                snapshot_id: id,
            },
            data: codec::json(&image),
        }
    }

    fn apply_entry(&mut self, e: Entry) {
        self.last_applied = Some(e.log_id);
        match e.payload {
            EntryPayload::Blank => {}
            EntryPayload::Membership(m) => {
                self.membership = StoredMembership::new(Some(e.log_id), m);
            }
            EntryPayload::Normal(b) => {
                let last = self.seqs.entry(b.origin).or_insert(0);
                if b.seq <= *last {
                    tracing::debug!("{b} at {} already applied: skipped", e.log_id.index);
                    return;
                }
                *last = b.seq;
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
        snapshot: Box::new(Cursor::new(s.data.clone())),
    }
}

/// Builds snapshots on the state machine itself (it is in memory: building is a copy).
pub struct Builder(Option<Snapshot<TypeConfig>>);

impl RaftSnapshotBuilder<TypeConfig> for Builder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        self.0.take().ok_or_else(|| {
            StorageIOError::write_snapshot(None, AnyError::error("snapshot built twice")).into()
        })
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
        // The state is in memory and applying is paused while this runs: the snapshot is
        // taken here, and the builder only hands it over.
        let s = self.build();
        let snap = to_snapshot(&s);
        self.snapshot = Some(s);
        Builder(Some(snap))
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let image: Image = serde_json::from_slice(&data).map_err(|e| -> StorageError {
            StorageIOError::read_snapshot(Some(meta.signature()), AnyError::error(e.to_string()))
                .into()
        })?;
        self.app.restore(&image.app.0);
        self.seqs = image.seqs;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.snapshot = Some(Stored {
            meta: meta.clone(),
            data,
        });
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self.snapshot.as_ref().map(to_snapshot))
    }
}
