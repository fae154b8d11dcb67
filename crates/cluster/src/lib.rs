//! Replication for sprout on openraft: the Raft log on disk ([`log`]), the state machine
//! adapter around whatever applies committed entries ([`sm`], generic over [`Apply`]), the
//! peer network over TCP ([`net`]) and the node that ties them together ([`node`]).
//!
//! The crate knows nothing of the engine or the protocol: an entry carries opaque items,
//! stamped by the leader with its clock, tagged with the node they came from and a
//! per-node sequence number (so that a batch retried after a leader change is applied
//! once).

// openraft's traits return its (large) `StorageError`; the helpers here return it too.
#![allow(clippy::result_large_err)]

mod codec;
pub mod latency;
pub mod log;
pub mod net;
pub mod node;
pub mod sm;

pub use node::{Node, Role, Status};
pub use sm::Apply;

use serde::{Deserialize, Serialize};

pub type NodeId = u64;

/// Opaque bytes, serialized as a string of chars < 256 (JSON-friendly, about one byte
/// per byte for text).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Payload(pub Vec<u8>);

impl Serialize for Payload {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text: String = self.0.iter().map(|&b| b as char).collect();
        s.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.chars()
            .map(|c| u8::try_from(u32::from(c)).map_err(serde::de::Error::custom))
            .collect::<Result<Vec<u8>, _>>()
            .map(Payload)
    }
}

/// One log entry's application data: items from one node, in the order it submitted them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// The leader's clock when it took the batch (nanoseconds since the Unix epoch).
    pub now: u64,
    /// The node whose clients sent the items.
    pub origin: NodeId,
    /// Increasing per origin (across restarts too): a batch whose sequence number is not
    /// above the last applied one of its origin is a retry, and is skipped.
    pub seq: u64,
    pub items: Vec<Payload>,
}

impl std::fmt::Display for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "batch(origin {} seq {} items {})",
            self.origin,
            self.seq,
            self.items.len()
        )
    }
}

openraft::declare_raft_types!(
    /// sprout's Raft types.
    pub TypeConfig:
        D = Batch,
        R = (),
        NodeId = NodeId,
        Node = openraft::BasicNode,
        SnapshotData = std::io::Cursor<Vec<u8>>,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub(crate) type Entry = openraft::Entry<TypeConfig>;
pub(crate) type StorageError = openraft::StorageError<NodeId>;
